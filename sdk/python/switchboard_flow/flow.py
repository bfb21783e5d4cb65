"""The flow base class, its state between steps, and the bridge to the component."""

import dataclasses
import json
from typing import List, Optional

from .actions import Action
from .context import Context, Contact
from .events import Event


class FlowError(Exception):
    """A step that cannot be handled: the host runs its fallback (an apology and a human)."""

    kind = "internal"


class InvalidState(FlowError):
    kind = "invalid-state"


class UnexpectedEvent(FlowError):
    kind = "unexpected-event"


class Flow:
    """Subclass as a ``@dataclass``: its fields are the state kept between events (as JSON,
    readable in the contact's trace). Fields need defaults: a contact's first step starts
    from ``YourFlow()``."""

    def handle(self, ctx: Context, event: Event) -> List[Action]:
        raise NotImplementedError("a flow implements handle(ctx, event)")

    @classmethod
    def load(cls, state: bytes):
        if not state:
            return cls()
        try:
            fields = json.loads(state)
        except ValueError as e:
            raise InvalidState(f"the stored state is not JSON: {e}") from e
        known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        return cls(**{k: v for k, v in fields.items() if k in known})

    def save(self) -> bytes:
        if not dataclasses.is_dataclass(self):
            raise InvalidState(f"{type(self).__name__} must be a @dataclass to keep state")
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()


def run_step(flow_class, contact: Contact, host, state: bytes, event: Event):
    """One step: load the state, handle the event, save the state. Returns (actions, state)."""
    flow = flow_class.load(state)
    actions = flow.handle(Context(contact, host), event)
    if actions is None:
        actions = []
    return list(actions), flow.save()


def export(flow_class) -> Optional[type]:
    """The component's export for ``flow_class``: assign it to ``WitWorld`` in the app module.
    Outside a component build (plain Python, tests) it returns ``None``."""
    try:
        from . import component
    except ImportError:
        return None
    return component.world(flow_class)
