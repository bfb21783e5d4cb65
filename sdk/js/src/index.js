// Write Switchboard contact flows in JavaScript or TypeScript. A flow is
// `defineFlow({ initial, handle })`: `initial()` is the state of a new contact, `handle(ctx,
// event, state)` returns the actions of one step and may change `state`, which is kept as JSON
// between events. Events and actions have the same shapes as in Switchboard's HTTP API.

/** A flow definition (see index.d.ts). */
export function defineFlow(definition) {
  if (typeof definition?.handle !== 'function') {
    throw new TypeError('defineFlow needs { handle(ctx, event, state) }');
  }
  return { initial: () => ({}), ...definition };
}

/** A step the flow refuses: the host runs its fallback (an apology and a human). */
export class FlowError extends Error {
  constructor(message, kind = 'internal') {
    super(message);
    this.kind = kind; // 'invalid-state' | 'unexpected-event' | 'internal'
  }
}

export const say = (text, { voice, language } = {}) => ({ type: 'say', text, voice, language });
export const play = (prompt) => ({ type: 'play', prompt });
export const send = (text) => ({ type: 'send', text });
// `flush: true` drops digits pressed while the step's earlier prompts played; by default they
// answer the gather at once (type-ahead).
export const gather = (prompt, { maxDigits = 1, timeoutMs = 5000, finishOnKey, retries = 0, flush = false } = {}) => {
  if (finishOnKey !== undefined && !/^[0-9*#]$/.test(finishOnKey)) {
    throw new TypeError(`finishOnKey must be a phone key (0-9, * or #), not ${JSON.stringify(finishOnKey)}`);
  }
  const parts = (Array.isArray(prompt) ? prompt : [prompt]).map((p) => (typeof p === 'string' ? say(p) : p));
  return { type: 'gather', prompt: parts, maxDigits, timeoutMs, finishOnKey, retries, flush };
};
export const enqueue = (queue, { priority = 0, attributes = {}, timeoutSecs = 0 } = {}) => ({
  type: 'enqueue', queue, priority, attributes, timeoutSecs,
});
export const transfer = (target) => ({ type: 'transfer', target });
export const callback = (number) => ({ type: 'callback', number });
export const setAttribute = (key, value) => ({ type: 'set-attribute', key, value });
export const hangup = () => ({ type: 'hangup' });
export const end = () => ({ type: 'end' });

/** The texts a step says or sends (gather prompts included), in order. */
export function spoken(actions) {
  const out = [];
  for (const a of actions) {
    if (a.type === 'say' || a.type === 'send') out.push(a.text);
    if (a.type === 'gather') for (const p of a.prompt) if (p.type === 'say') out.push(p.text);
  }
  return out;
}

/** What a step can see and ask, over a host (the component's imports, or a fake in tests). */
export class Context {
  constructor(contact, host) {
    this.contact = contact;
    this.host = host;
  }
  attribute(key) { return this.contact.attributes[key]; }
  /** A customer by { phone } | { email } | { id }; throws when the CRM cannot answer. */
  crmLookup(key) { return this.host.crmLookup(key); }
  /** The customer whose number is the contact's `from`; a CRM failure is logged, not thrown. */
  customerByPhone() {
    try {
      return this.host.crmLookup({ phone: this.contact.from });
    } catch (e) {
      this.log('warn', `CRM lookup failed: ${e.message ?? e}`);
      return undefined;
    }
  }
  config(key, fallback) { return this.host.config(key) ?? fallback; }
  kvGet(key) { return this.host.kvGet(key); }
  kvSet(key, value) { this.host.kvSet(key, value); }
  kvDelete(key) { this.host.kvDelete(key); }
  log(level, message) { this.host.log(level, message); }
  nowMs() { return this.host.nowMs(); }
  timeIn(zone) { return this.host.timeIn(zone); }
}

// UTF-8 by hand: the QuickJS backend has no TextEncoder.
export function utf8Encode(text) {
  const out = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

export function utf8Decode(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    let c;
    let n;
    if (b < 0x80) { c = b; n = 1; }
    else if (b < 0xe0) { c = b & 31; n = 2; }
    else if (b < 0xf0) { c = b & 15; n = 3; }
    else { c = b & 7; n = 4; }
    for (let k = 1; k < n; k++) c = (c << 6) | (bytes[i + k] & 63);
    out += String.fromCodePoint(c);
    i += n;
  }
  return out;
}

/** One step: load the state, handle the event, save the state. */
export function runStep(flow, contact, host, stateBytes, event) {
  let state;
  if (stateBytes && stateBytes.length > 0) {
    try {
      state = JSON.parse(utf8Decode(stateBytes));
    } catch (e) {
      throw new FlowError(`the stored state is not JSON: ${e.message}`, 'invalid-state');
    }
  } else {
    state = flow.initial();
  }
  const actions = flow.handle(new Context(contact, host), event, state) ?? [];
  return { actions, state: utf8Encode(JSON.stringify(state)) };
}
