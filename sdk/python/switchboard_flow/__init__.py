"""Write Switchboard contact flows in Python.

A flow is a dataclass whose fields are the state it keeps between events, with a
``handle(ctx, event)`` method returning the actions of one step::

    from dataclasses import dataclass, field
    from switchboard_flow import Flow, Started, Message, say, send, enqueue, end

    @dataclass
    class Hello(Flow):
        greeted: int = 0

        def handle(self, ctx, event):
            if isinstance(event, Started):
                self.greeted += 1
                return [send("Hi! Send AGENT to talk to a person.")]
            if isinstance(event, Message) and "agent" in event.text.lower():
                return [send("Connecting you."), enqueue("support")]
            return [send("Sorry?")]

    WitWorld = export(Hello)

``WitWorld = export(Hello)`` makes the module a component when built with
``python -m switchboard_flow build app.py``; in plain Python (tests) it is ``None``.
``switchboard_flow.testing.Conversation`` drives a flow natively with a fake host.
"""

from .actions import (
    Action,
    Callback,
    End,
    Enqueue,
    Gather,
    Hangup,
    Play,
    Say,
    Send,
    SetAttribute,
    Transfer,
    callback,
    end,
    enqueue,
    gather,
    hangup,
    play,
    say,
    send,
    set_attribute,
    spoken,
    transfer,
)
from .context import Context, Contact, Customer, Host, LocalTime
from .events import (
    Attachment,
    Event,
    HungUp,
    Input,
    Mail,
    Message,
    NoInput,
    QueueWait,
    Started,
    TaskOutcome,
)
from .flow import Flow, FlowError, InvalidState, UnexpectedEvent, export

__all__ = [
    "Action", "Callback", "End", "Enqueue", "Gather", "Hangup", "Play", "Say", "Send",
    "SetAttribute", "Transfer", "callback", "end", "enqueue", "gather", "hangup", "play",
    "say", "send", "set_attribute", "spoken", "transfer", "Context", "Contact", "Customer",
    "Host", "LocalTime", "Attachment", "Event", "HungUp", "Input", "Mail", "Message", "NoInput", "QueueWait",
    "Started", "TaskOutcome", "Flow", "FlowError", "InvalidState", "UnexpectedEvent", "export",
]
