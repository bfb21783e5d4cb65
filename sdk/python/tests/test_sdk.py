"""The SDK's own promises: state round-trips as JSON, actions build as documented, the
harness behaves like the host (kv kept, settings read, errors raised)."""

from dataclasses import dataclass, field
from typing import List

import pytest

from switchboard_flow import (
    Enqueue, Flow, Gather, InvalidState, Input, Message, Say, Started, UnexpectedEvent,
    enqueue, export, gather, say, send, spoken,
)
from switchboard_flow.testing import Conversation


@dataclass
class Counter(Flow):
    seen: int = 0
    words: List[str] = field(default_factory=list)

    def handle(self, ctx, event):
        if isinstance(event, Started):
            return [gather("Pick a number.", max_digits=2, finish_on_key="#", retries=1)]
        if isinstance(event, Input):
            self.seen += 1
            ctx.kv_set("last", event.digits.encode())
            return [say(f"You picked {event.digits}.", language="en-GB")]
        if isinstance(event, Message):
            self.words.append(event.text)
            return [send(ctx.config("reply", "ok"))]
        raise UnexpectedEvent(f"{type(event).__name__} is not handled")


def test_state_is_kept_between_steps_as_json():
    c = Conversation(Counter)
    first = c.start()
    assert first == [Gather((Say("Pick a number."),), 2, 5000, "#", 1)]
    assert spoken(c.press("42")) == ["You picked 42."]
    c.press("7")
    assert c.state.seen == 2
    assert c.host.kv["last"] == b"7"
    assert Counter.load(b'{"seen": 3, "words": ["a"], "removed_field": 1}') == Counter(3, ["a"])
    with pytest.raises(InvalidState):
        Counter.load(b"not json")


def test_settings_messages_and_errors():
    c = Conversation(Counter, channel="chat").with_config("reply", "thanks")
    assert spoken(c.message("hi")) == ["thanks"]
    with pytest.raises(UnexpectedEvent):
        c.silence()


def test_builders_check_what_they_can():
    assert enqueue("vip", 10, {"tier": "vip"}) == Enqueue("vip", 10, (("tier", "vip"),), 0)
    with pytest.raises(ValueError):
        gather("x", finish_on_key="x")


def test_export_is_none_outside_a_component_build():
    assert export(Counter) is None
