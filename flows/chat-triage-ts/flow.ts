// A web chat triage flow in TypeScript: finds out what the visitor needs and hands them to
// the right queue with what it learnt.
//
// - Greets (by name when the CRM knows the visitor's e-mail or number) and asks what it is about.
// - "bill", "invoice", "refund" -> billing; "bug", "error", "broken" -> technical (priority 5
//   when the visitor says it is urgent); "buy", "price", "plan" -> sales.
// - "human" / "agent" -> support straight away; twice not understood -> support too.
// - "bye" ends the chat. While waiting, the visitor hears their place in line.
import { defineFlow, end, enqueue, send, setAttribute, type Action } from '@switchboard/flow';

interface Triage {
  misses: number;
  topic?: string;
}

const TOPICS: Array<[string, RegExp]> = [
  ['billing', /\b(bill|billing|invoice|refund|charge)/i],
  ['technical', /\b(bug|error|broken|crash|down)/i],
  ['sales', /\b(buy|price|pricing|plan|quote)/i],
];

function handOver(queue: string, reason: string, urgent: boolean): Action[] {
  return [
    setAttribute('topic', queue),
    send(`Thanks. I am passing you to our ${queue === 'support' ? 'support' : queue} team.`),
    enqueue(queue, { priority: urgent ? 5 : 0, attributes: { topic: queue, reason } }),
  ];
}

export default defineFlow<Triage>({
  initial: () => ({ misses: 0 }),
  handle(ctx, event, state) {
    switch (event.type) {
      case 'started': {
        const who = ctx.customerByPhone();
        const hello = who ? `Hi ${who.name.split(' ')[0]}!` : 'Hi!';
        return [send(`${hello} What can we help you with today? (billing, a technical problem, or buying)`)];
      }
      case 'message': {
        const text = event.text.trim();
        if (/^(bye|stop)$/i.test(text)) return [send('Goodbye!'), end()];
        if (/\b(human|agent|person)\b/i.test(text)) return handOver('support', 'asked for a person', false);
        const urgent = /\b(urgent|asap|emergency)\b/i.test(text);
        const topic = TOPICS.find(([, pattern]) => pattern.test(text))?.[0];
        if (topic) {
          state.topic = topic;
          return handOver(topic, text.slice(0, 200), urgent);
        }
        state.misses += 1;
        if (state.misses >= 2) return handOver('support', 'not understood', urgent);
        return [send('Sorry, I did not get that. Is it about billing, a technical problem, or buying?')];
      }
      case 'queue-wait':
        return [send(`You are number ${event.position} in line. Thanks for waiting.`)];
      case 'task-outcome':
        return event.status === 'timed-out'
          ? [send('Sorry, everyone is busy. We will e-mail you instead.'), end()]
          : [];
      default:
        return [];
    }
  },
});
