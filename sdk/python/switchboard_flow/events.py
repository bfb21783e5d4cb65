"""What happens to a contact: each event starts one step of the flow."""

from dataclasses import dataclass
from typing import Optional, Tuple, Union


@dataclass(frozen=True)
class Started:
    """The first event of every contact."""


@dataclass(frozen=True)
class Input:
    """The answer to a gather: digits pressed (without the finish key), or speech."""

    digits: str = ""
    speech: Optional[str] = None


@dataclass(frozen=True)
class NoInput:
    """The gather got nothing, after its prompt replays."""


@dataclass(frozen=True)
class Message:
    """A text message (SMS, chat)."""

    text: str


@dataclass(frozen=True)
class Attachment:
    """A file attached to an e-mail: its name, MIME type and size in bytes."""

    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Mail:
    """An e-mail on an e-mail contact."""

    subject: str
    sender: str
    text: str
    sender_name: Optional[str] = None
    attachments: Tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class TaskOutcome:
    """A task the flow created changed status: assigned, completed, timed-out or canceled."""

    queue: str
    status: str
    agent: Optional[str] = None


@dataclass(frozen=True)
class QueueWait:
    """Still waiting in a queue: seconds waited and place in line (from 1)."""

    queue: str
    waited_secs: int
    position: int


@dataclass(frozen=True)
class HungUp:
    """The customer hung up or left."""


Event = Union[Started, Input, NoInput, Message, Mail, TaskOutcome, QueueWait, HungUp]
