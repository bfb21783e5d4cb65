import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  FlowError, defineFlow, enqueue, gather, runStep, say, send, spoken, utf8Decode, utf8Encode,
} from '../src/index.js';
import { Conversation } from '../src/testing.js';

const counter = defineFlow({
  initial: () => ({ seen: 0 }),
  handle(ctx, event, state) {
    if (event.type === 'started') return [gather('Pick a number.', { maxDigits: 2, finishOnKey: '#', retries: 1 })];
    if (event.type === 'input') {
      state.seen += 1;
      ctx.kvSet('last', utf8Encode(event.digits));
      return [say(`You picked ${event.digits}.`, { language: 'en-GB' })];
    }
    if (event.type === 'message') return [send(ctx.config('reply', 'ok'))];
    throw new FlowError(`${event.type} is not handled`, 'unexpected-event');
  },
});

test('state is kept between steps as JSON', () => {
  const c = new Conversation(counter);
  assert.deepEqual(c.start(), [{
    type: 'gather', prompt: [{ type: 'say', text: 'Pick a number.', voice: undefined, language: undefined }],
    maxDigits: 2, timeoutMs: 5000, finishOnKey: '#', retries: 1, flush: false,
  }]);
  assert.deepEqual(spoken(c.press('42')), ['You picked 42.']);
  c.press('7');
  assert.equal(c.state.seen, 2);
  assert.equal(utf8Decode(c.host.kv.get('last')), '7');
  assert.throws(() => runStep(counter, c.contact, c.host, utf8Encode('not json'), { type: 'started' }), /not JSON/);
});

test('settings, messages and flow errors', () => {
  const c = new Conversation(counter, { channel: 'chat' }).withConfig('reply', 'thanks');
  assert.deepEqual(spoken(c.message('hi')), ['thanks']);
  assert.throws(() => c.silence(), (e) => e instanceof FlowError && e.kind === 'unexpected-event');
});

test('builders and UTF-8 without TextEncoder', () => {
  assert.deepEqual(enqueue('vip', { priority: 10, attributes: { tier: 'vip' } }),
    { type: 'enqueue', queue: 'vip', priority: 10, attributes: { tier: 'vip' }, timeoutSecs: 0 });
  assert.throws(() => gather('x', { finishOnKey: 'x' }), TypeError);
  for (const text of ['plain', 'Grüße', '你好', 'emoji 📞']) {
    assert.deepEqual(utf8Encode(text), new TextEncoder().encode(text));
    assert.equal(utf8Decode(new TextEncoder().encode(text)), text);
  }
});
