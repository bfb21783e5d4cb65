// Drive a flow natively (node), with a fake host, as a conversation:
//   const chat = new Conversation(flow, { channel: 'chat' }).withConfig('orders', '1001:shipped');
//   chat.start(); assert.deepEqual(spoken(chat.message('1001')), ['Order 1001 is shipped.']);
import { runStep } from './index.js';

export class FakeHost {
  constructor() {
    this.customers = [];
    this.kv = new Map();
    this.settings = new Map();
    this.logs = [];
    this.now = Date.UTC(2026, 0, 5, 10, 0); // a Monday, 10:00 UTC
    this.crmDown = false;
  }
  crmLookup(key) {
    if (this.crmDown) throw new Error('the CRM is down (test)');
    return this.customers.find((c) => (key.phone !== undefined && c.phone === key.phone)
      || (key.email !== undefined && c.email === key.email) || (key.id !== undefined && c.id === key.id));
  }
  kvGet(key) { return this.kv.get(key); }
  kvSet(key, value) { this.kv.set(key, value); }
  kvDelete(key) { this.kv.delete(key); }
  config(key) { return this.settings.get(key); }
  log(level, message) { this.logs.push([level, message]); }
  nowMs() { return this.now; }
  timeIn() {
    const d = new Date(this.now);
    return {
      year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(),
      weekday: ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'][d.getUTCDay()],
      hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds(), utcOffsetSecs: 0,
    };
  }
}

export class Conversation {
  constructor(flow, { channel = 'voice', from = '+15551230001', to = '+15550100', attributes = {} } = {}) {
    this.flow = flow;
    this.host = new FakeHost();
    this.contact = { id: 'test-contact', channel, from, to, attributes };
    this.stateBytes = new Uint8Array();
  }
  withConfig(key, value) { this.host.settings.set(key, value); return this; }
  withCustomer(phone, name, tier = 'standard') {
    this.host.customers.push({ id: `c${this.host.customers.length + 1}`, name, phone, tier, attributes: {} });
    return this;
  }
  send(event) {
    const step = runStep(this.flow, this.contact, this.host, this.stateBytes, event);
    this.stateBytes = step.state;
    return step.actions;
  }
  start() { return this.send({ type: 'started' }); }
  message(text) { return this.send({ type: 'message', text }); }
  mail(from, subject, text) { return this.send({ type: 'mail', from, subject, text, attachments: [] }); }
  press(digits) { return this.send({ type: 'input', digits }); }
  silence() { return this.send({ type: 'no-input' }); }
  task(queue, status, agent) { return this.send({ type: 'task-outcome', queue, status, agent }); }
  waiting(queue, waitedSecs, position) { return this.send({ type: 'queue-wait', queue, waitedSecs, position }); }
  hangUp() { return this.send({ type: 'hangup' }); }
  /** The flow's state after the last step, as the next step will see it. */
  get state() { return JSON.parse(new TextDecoder().decode(this.stateBytes)); }
}
