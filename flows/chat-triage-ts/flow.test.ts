import assert from 'node:assert/strict';
import { test } from 'node:test';

import { spoken } from '@switchboard/flow';
import { Conversation } from '@switchboard/flow/testing';

import triage from './flow.ts';

test('routes by topic with what it learnt, urgent first', () => {
  const chat = new Conversation(triage, { channel: 'chat', from: 'ada@example.com', to: 'chat:web' });
  assert.match(spoken(chat.start())[0], /^Hi! What can we help you with/);
  const actions = chat.message('My invoice is wrong, urgent please');
  assert.deepEqual(actions.at(-1), {
    type: 'enqueue', queue: 'billing', priority: 5,
    attributes: { topic: 'billing', reason: 'My invoice is wrong, urgent please' }, timeoutSecs: 0,
  });
  assert.equal(chat.state.topic, 'billing');
});

test('twice not understood, or asking for a person, reaches support', () => {
  const chat = new Conversation(triage, { channel: 'chat' });
  chat.start();
  assert.match(spoken(chat.message('hello'))[0], /^Sorry, I did not get that/);
  const second = chat.message('hmm');
  assert.equal(second.at(-1)?.type, 'enqueue');
  assert.deepEqual((second.at(-1) as { queue: string }).queue, 'support');
  const direct = new Conversation(triage, { channel: 'chat' });
  direct.start();
  assert.equal((direct.message('can I talk to a human?').at(-1) as { queue: string }).queue, 'support');
});

test('a known visitor is greeted by name; bye ends', () => {
  const chat = new Conversation(triage, { channel: 'chat', from: '+15551230002' })
    .withCustomer('+15551230002', 'Grace Hopper');
  assert.match(spoken(chat.start())[0], /^Hi Grace!/);
  assert.deepEqual(chat.message('bye').at(-1), { type: 'end' });
});
