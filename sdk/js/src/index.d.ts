// Types of the Switchboard flow contract (wit/flow.wit) as the JavaScript SDK presents them:
// the same shapes as Switchboard's HTTP API.

export type Channel = 'voice' | 'sms' | 'chat' | 'email';

export interface Contact {
  id: string;
  channel: Channel;
  from: string;
  to: string;
  attributes: Record<string, string>;
}

export type Event =
  | { type: 'started' }
  | { type: 'input'; digits: string; speech?: string }
  | { type: 'no-input' }
  | { type: 'message'; text: string }
  | Mail
  | { type: 'task-outcome'; queue: string; status: 'assigned' | 'completed' | 'timed-out' | 'canceled'; agent?: string }
  | { type: 'queue-wait'; queue: string; waitedSecs: number; position: number }
  | { type: 'hangup' };

/** An e-mail on an e-mail contact. */
export interface Mail {
  type: 'mail';
  subject: string;
  from: string;
  fromName?: string;
  text: string;
  attachments: Array<{ name: string; contentType: string; size: number }>;
}

export interface Say { type: 'say'; text: string; voice?: string; language?: string }
export interface Play { type: 'play'; prompt: string }
export interface Gather {
  type: 'gather';
  prompt: Array<Say | Play>;
  maxDigits: number;
  timeoutMs: number;
  finishOnKey?: string;
  retries: number;
  /** Drop digits pressed ahead of the gather instead of answering with them. */
  flush: boolean;
}
export type Action =
  | Say
  | Play
  | Gather
  | { type: 'send'; text: string }
  | { type: 'enqueue'; queue: string; priority: number; attributes: Record<string, string>; timeoutSecs: number }
  | { type: 'transfer'; target: string }
  | { type: 'callback'; number: string }
  | { type: 'set-attribute'; key: string; value: string }
  | { type: 'hangup' }
  | { type: 'end' };

export interface Customer {
  id: string;
  name: string;
  phone?: string;
  email?: string;
  tier: string;
  attributes: Record<string, string>;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface LocalTime {
  year: number; month: number; day: number;
  weekday: 'monday' | 'tuesday' | 'wednesday' | 'thursday' | 'friday' | 'saturday' | 'sunday';
  hour: number; minute: number; second: number; utcOffsetSecs: number;
}

export declare class Context {
  readonly contact: Contact;
  attribute(key: string): string | undefined;
  /** Throws when the CRM cannot answer. */
  crmLookup(key: { phone: string } | { email: string } | { id: string }): Customer | undefined;
  /** A CRM failure is logged and treated as unknown. */
  customerByPhone(): Customer | undefined;
  config(key: string): string | undefined;
  config(key: string, fallback: string): string;
  kvGet(key: string): Uint8Array | undefined;
  kvSet(key: string, value: Uint8Array): void;
  kvDelete(key: string): void;
  log(level: LogLevel, message: string): void;
  nowMs(): number;
  timeIn(zone: string): LocalTime;
}

export interface FlowDefinition<S> {
  /** The state of a new contact. */
  initial?: () => S;
  /** One step: the actions to take; change `state` in place to remember things. */
  handle(ctx: Context, event: Event, state: S): Action[];
}

export interface Flow<S> {
  initial: () => S;
  handle(ctx: Context, event: Event, state: S): Action[];
}

export declare function defineFlow<S = Record<string, unknown>>(definition: FlowDefinition<S>): Flow<S>;

export declare class FlowError extends Error {
  constructor(message: string, kind?: 'invalid-state' | 'unexpected-event' | 'internal');
  kind: 'invalid-state' | 'unexpected-event' | 'internal';
}

export declare function say(text: string, options?: { voice?: string; language?: string }): Say;
export declare function play(prompt: string): Play;
export declare function send(text: string): Action;
export declare function gather(
  prompt: string | Say | Play | Array<string | Say | Play>,
  options?: { maxDigits?: number; timeoutMs?: number; finishOnKey?: string; retries?: number; flush?: boolean },
): Gather;
export declare function enqueue(
  queue: string,
  options?: { priority?: number; attributes?: Record<string, string>; timeoutSecs?: number },
): Action;
export declare function transfer(target: string): Action;
export declare function callback(number: string): Action;
export declare function setAttribute(key: string, value: string): Action;
export declare function hangup(): Action;
export declare function end(): Action;
export declare function spoken(actions: Action[]): string[];
