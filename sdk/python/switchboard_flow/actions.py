"""What a step asks Switchboard to do, in order."""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union


@dataclass(frozen=True)
class Say:
    """Speak text (voice) or show it (text channels)."""

    text: str
    voice: Optional[str] = None
    language: Optional[str] = None


@dataclass(frozen=True)
class Play:
    """Play an uploaded prompt (its id) or an audio URL."""

    prompt: str


@dataclass(frozen=True)
class Gather:
    """Ask for input: prompts (Say or Play) then up to ``max_digits`` digits (0: no limit)."""

    prompt: Tuple[Union[Say, Play], ...] = ()
    max_digits: int = 1
    timeout_ms: int = 5000
    finish_on_key: Optional[str] = None
    retries: int = 0
    #: Drop digits pressed while the step's earlier prompts played; by default they answer
    #: this gather at once (type-ahead).
    flush: bool = False


@dataclass(frozen=True)
class Send:
    """Send a text message."""

    text: str


@dataclass(frozen=True)
class Enqueue:
    """Hand the contact to a human: a task in ``queue``."""

    queue: str
    priority: int = 0
    attributes: Tuple[Tuple[str, str], ...] = ()
    timeout_secs: int = 0


@dataclass(frozen=True)
class Transfer:
    """Transfer to a number or SIP URI; ends the flow."""

    target: str


@dataclass(frozen=True)
class Callback:
    """Keep the place in line and call back this number; ends the call."""

    number: str


@dataclass(frozen=True)
class SetAttribute:
    """Set a contact attribute (routing and reporting see it)."""

    key: str
    value: str


@dataclass(frozen=True)
class Hangup:
    """Hang up; ends the flow."""


@dataclass(frozen=True)
class End:
    """End the flow."""


Action = Union[Say, Play, Gather, Send, Enqueue, Transfer, Callback, SetAttribute, Hangup, End]

# The builders that only construct: the dataclasses themselves, under the SDK's lowercase names.
say = Say
play = Play
send = Send
transfer = Transfer
callback = Callback
set_attribute = SetAttribute
hangup = Hangup
end = End




def gather(
    *prompt: Union[str, Say, Play],
    max_digits: int = 1,
    timeout_ms: int = 5000,
    finish_on_key: Optional[str] = None,
    retries: int = 0,
    flush: bool = False,
) -> Gather:
    """A gather; plain strings in ``prompt`` are spoken."""
    parts = tuple(Say(p) if isinstance(p, str) else p for p in prompt)
    if finish_on_key is not None and finish_on_key not in "0123456789*#":
        raise ValueError(f"finish_on_key must be a phone key (0-9, * or #), not {finish_on_key!r}")
    return Gather(parts, max_digits, timeout_ms, finish_on_key, retries, flush)



def enqueue(
    queue: str,
    priority: int = 0,
    attributes: Optional[dict] = None,
    timeout_secs: int = 0,
) -> Enqueue:
    return Enqueue(queue, priority, tuple((attributes or {}).items()), timeout_secs)







def spoken(actions: Sequence[Action]) -> List[str]:
    """The texts a step says or sends (gather prompts included), in order."""
    out: List[str] = []
    for a in actions:
        if isinstance(a, (Say, Send)):
            out.append(a.text)
        elif isinstance(a, Gather):
            out.extend(p.text for p in a.prompt if isinstance(p, Say))
    return out
