"""The bridge between the generated ``wit_world`` bindings (present only when building the
component) and the SDK's own types."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, config, crm, kv, log, types

from . import actions as a
from . import events as e
from .context import Contact, CrmError, Customer, LocalTime
from .flow import FlowError, run_step

_CHANNELS = {
    types.Channel.VOICE: "voice",
    types.Channel.SMS: "sms",
    types.Channel.CHAT: "chat",
    types.Channel.EMAIL: "email",
}
_STATUS = {
    types.TaskStatus.ASSIGNED: "assigned",
    types.TaskStatus.COMPLETED: "completed",
    types.TaskStatus.TIMED_OUT: "timed-out",
    types.TaskStatus.CANCELED: "canceled",
}
_LEVELS = {
    "trace": log.Level.TRACE,
    "debug": log.Level.DEBUG,
    "info": log.Level.INFO,
    "warn": log.Level.WARN,
    "error": log.Level.ERROR,
}


class _WasmHost:
    def crm_lookup(self, kind, value):
        key = {"phone": crm.LookupKey_Phone, "email": crm.LookupKey_Email, "id": crm.LookupKey_Id}[kind](value)
        try:
            found = crm.lookup(key)
        except Err as err:
            raise CrmError(str(err.value)) from None
        if found is None:
            return None
        return Customer(found.id, found.name, found.phone, found.email, found.tier, dict(found.attributes))

    def kv_get(self, key):
        return kv.get(key)

    def kv_set(self, key, value):
        kv.set(key, bytes(value))

    def kv_delete(self, key):
        kv.delete(key)

    def config(self, key):
        return config.get(key)

    def log(self, level, message):
        log.log(_LEVELS.get(level, log.Level.INFO), message)

    def now_ms(self):
        return clock.now()

    def time_in(self, zone):
        try:
            t = clock.time_in(zone)
        except Err as err:
            raise ValueError(str(err.value)) from None
        return LocalTime(t.year, t.month, t.day, t.weekday.value, t.hour, t.minute, t.second, t.utc_offset_secs)


def _event(event):
    if isinstance(event, types.Event_Started):
        return e.Started()
    if isinstance(event, types.Event_Input):
        return e.Input(event.value.digits, event.value.speech)
    if isinstance(event, types.Event_NoInput):
        return e.NoInput()
    if isinstance(event, types.Event_Message):
        return e.Message(event.value)
    if isinstance(event, types.Event_Mail):
        m = event.value
        attachments = tuple(e.Attachment(f.name, f.content_type, f.size) for f in m.attachments)
        return e.Mail(m.subject, m.from_, m.text, m.from_name, attachments)
    if isinstance(event, types.Event_TaskOutcome):
        o = event.value
        return e.TaskOutcome(o.queue, _STATUS[o.status], o.agent)
    if isinstance(event, types.Event_QueueWait):
        w = event.value
        return e.QueueWait(w.queue, w.waited_secs, w.position)
    return e.HungUp()


def _say(s):
    return types.Say(s.text, s.voice, s.language)


def _action(action):
    if isinstance(action, a.Say):
        return types.Action_Say(_say(action))
    if isinstance(action, a.Play):
        return types.Action_Play(action.prompt)
    if isinstance(action, a.Gather):
        prompt = [types.Prompt_Say(_say(p)) if isinstance(p, a.Say) else types.Prompt_Play(p.prompt) for p in action.prompt]
        return types.Action_Gather(types.Gather(prompt, action.max_digits, action.timeout_ms, action.finish_on_key, action.retries, action.flush))
    if isinstance(action, a.Send):
        return types.Action_Send(action.text)
    if isinstance(action, a.Enqueue):
        return types.Action_Enqueue(types.Enqueue(action.queue, action.priority, [tuple(kv) for kv in action.attributes], action.timeout_secs))
    if isinstance(action, a.Transfer):
        return types.Action_Transfer(action.target)
    if isinstance(action, a.Callback):
        return types.Action_Callback(action.number)
    if isinstance(action, a.SetAttribute):
        return types.Action_SetAttribute((action.key, action.value))
    if isinstance(action, a.Hangup):
        return types.Action_Hangup()
    if isinstance(action, a.End):
        return types.Action_End()
    raise FlowError(f"not an action: {action!r}")


def world(flow_class):
    host = _WasmHost()

    class WitWorld(wit_world.WitWorld):
        def handle(self, contact, state, event):
            c = Contact(contact.id, _CHANNELS[contact.channel], contact.from_, contact.to, dict(contact.attributes))
            try:
                actions, new_state = run_step(flow_class, c, host, bytes(state), _event(event))
            except FlowError as err:
                kind = {
                    "invalid-state": types.FlowError_InvalidState,
                    "unexpected-event": types.FlowError_UnexpectedEvent,
                }.get(err.kind, types.FlowError_Internal)
                raise Err(kind(str(err)))
            return types.Step([_action(x) for x in actions], new_state)

    return WitWorld
