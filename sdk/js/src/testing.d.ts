import type { Action, Customer, Flow } from './index.js';

export declare class FakeHost {
  customers: Customer[];
  kv: Map<string, Uint8Array>;
  settings: Map<string, string>;
  logs: Array<[string, string]>;
  now: number;
  crmDown: boolean;
}

export declare class Conversation<S> {
  constructor(flow: Flow<S>, options?: { channel?: 'voice' | 'sms' | 'chat' | 'email'; from?: string; to?: string; attributes?: Record<string, string> });
  readonly host: FakeHost;
  withConfig(key: string, value: string): this;
  withCustomer(phone: string, name: string, tier?: string): this;
  start(): Action[];
  message(text: string): Action[];
  mail(from: string, subject: string, text: string): Action[];
  press(digits: string): Action[];
  silence(): Action[];
  task(queue: string, status: 'assigned' | 'completed' | 'timed-out' | 'canceled', agent?: string): Action[];
  waiting(queue: string, waitedSecs: number, position: number): Action[];
  hangUp(): Action[];
  readonly state: S;
}
