// The bridge between the component's imports and exports (jco's WIT shapes) and the SDK's
// own (the HTTP API's shapes). Only the build's entry module imports this.
import { lookup } from 'switchboard:flow/crm@0.2.0';
import { get as kvGet, set as kvSet, delete as kvDelete } from 'switchboard:flow/kv@0.2.0';
import { get as configGet } from 'switchboard:flow/config@0.2.0';
import { log } from 'switchboard:flow/log@0.2.0';
import { now, timeIn } from 'switchboard:flow/clock@0.2.0';
import { FlowError, runStep } from './index.js';

const host = {
  crmLookup(key) {
    const [tag, val] = key.phone !== undefined ? ['phone', key.phone] : key.email !== undefined ? ['email', key.email] : ['id', key.id];
    const c = lookup({ tag, val });
    if (c === undefined || c === null) return undefined;
    return { ...c, attributes: Object.fromEntries(c.attributes) };
  },
  kvGet: (key) => kvGet(key),
  kvSet: (key, value) => kvSet(key, value),
  kvDelete: (key) => kvDelete(key),
  config: (key) => configGet(key),
  log: (level, message) => log(level, message),
  nowMs: () => Number(now()),
  timeIn: (zone) => timeIn(zone),
};

function event(e) {
  switch (e.tag) {
    case 'input': return { type: 'input', digits: e.val.digits, speech: e.val.speech };
    case 'message': return { type: 'message', text: e.val };
    case 'mail': return {
      type: 'mail', subject: e.val.subject, from: e.val.from, fromName: e.val.fromName, text: e.val.text,
      attachments: e.val.attachments.map((a) => ({ name: a.name, contentType: a.contentType, size: a.size })),
    };
    case 'task-outcome': return { type: 'task-outcome', queue: e.val.queue, status: e.val.status, agent: e.val.agent };
    case 'queue-wait': return { type: 'queue-wait', queue: e.val.queue, waitedSecs: e.val.waitedSecs, position: e.val.position };
    default: return { type: e.tag };
  }
}

const sayOf = (a) => ({ text: a.text, voice: a.voice, language: a.language });

function action(a) {
  switch (a.type) {
    case 'say': return { tag: 'say', val: sayOf(a) };
    case 'play': return { tag: 'play', val: a.prompt };
    case 'send': return { tag: 'send', val: a.text };
    case 'gather': return {
      tag: 'gather',
      val: {
        prompt: a.prompt.map((p) => (p.type === 'say' ? { tag: 'say', val: sayOf(p) } : { tag: 'play', val: p.prompt })),
        maxDigits: a.maxDigits, timeoutMs: a.timeoutMs, finishOnKey: a.finishOnKey, retries: a.retries,
        flush: a.flush ?? false,
      },
    };
    case 'enqueue': return {
      tag: 'enqueue',
      val: { queue: a.queue, priority: a.priority, attributes: Object.entries(a.attributes ?? {}).map(([k, v]) => [k, String(v)]), timeoutSecs: a.timeoutSecs },
    };
    case 'transfer': return { tag: 'transfer', val: a.target };
    case 'callback': return { tag: 'callback', val: a.number };
    case 'set-attribute': return { tag: 'set-attribute', val: [a.key, a.value] };
    case 'hangup': return { tag: 'hangup' };
    case 'end': return { tag: 'end' };
    default: throw new FlowError(`not an action: ${JSON.stringify(a)}`);
  }
}

/** The component's `handle` export for a flow definition. */
export function component(flow) {
  return function handle(contact, state, e) {
    const c = { id: contact.id, channel: contact.channel, from: contact.from, to: contact.to, attributes: Object.fromEntries(contact.attributes) };
    try {
      const step = runStep(flow, c, host, state, event(e));
      return { actions: step.actions.map(action), state: step.state };
    } catch (err) {
      if (err instanceof FlowError) {
        // A result's error: jco turns a thrown { payload } into `err(payload)`.
        const failure = new Error(err.message);
        failure.payload = { tag: err.kind, val: err.message };
        throw failure;
      }
      throw err;
    }
  };
}
