"""Drive a flow natively, with a fake host, as a conversation (works with pytest)::

    from switchboard_flow.testing import Conversation
    chat = Conversation(OrderStatus, channel="sms").with_config("orders", "1001:shipped")
    chat.start()
    assert spoken(chat.message("1001")) == ["Order 1001 is shipped."]
"""

import datetime
from typing import Dict, List, Optional

from .actions import Action
from .context import Contact, Customer, LocalTime
from .events import HungUp, Input, Mail, Message, NoInput, QueueWait, Started, TaskOutcome
from .flow import run_step


class FakeHost:
    """Customers, key/value pairs, settings and a clock that the test chooses."""

    def __init__(self):
        self.customers: List[Customer] = []
        self.kv: Dict[str, bytes] = {}
        self.settings: Dict[str, str] = {}
        self.logs: List[tuple] = []
        self.now = datetime.datetime(2026, 1, 5, 10, 0, tzinfo=datetime.timezone.utc)  # a Monday
        self.crm_down = False

    def crm_lookup(self, kind, value):
        if self.crm_down:
            from .context import CrmError
            raise CrmError("the CRM is down (test)")
        for c in self.customers:
            if {"phone": c.phone, "email": c.email, "id": c.id}[kind] == value:
                return c
        return None

    def kv_get(self, key):
        return self.kv.get(key)

    def kv_set(self, key, value):
        self.kv[key] = bytes(value)

    def kv_delete(self, key):
        self.kv.pop(key, None)

    def config(self, key):
        return self.settings.get(key)

    def log(self, level, message):
        self.logs.append((level, message))

    def now_ms(self):
        return int(self.now.timestamp() * 1000)

    def time_in(self, zone):
        t = self.now
        return LocalTime(t.year, t.month, t.day, t.weekday(), t.hour, t.minute, t.second, 0)


class Conversation:
    """One contact with a flow, event by event; the state is kept as the host keeps it
    (serialised between steps)."""

    def __init__(self, flow_class, channel: str = "voice", from_: str = "+15551230001",
                 to: str = "+15550100", attributes: Optional[Dict[str, str]] = None):
        self.flow_class = flow_class
        self.host = FakeHost()
        self.contact = Contact("test-contact", channel, from_, to, dict(attributes or {}))
        self._state = b""

    def with_config(self, key: str, value: str) -> "Conversation":
        self.host.settings[key] = value
        return self

    def with_customer(self, phone: str, name: str, tier: str = "standard") -> "Conversation":
        self.host.customers.append(Customer(f"c{len(self.host.customers) + 1}", name, phone, None, tier))
        return self

    def send(self, event) -> List[Action]:
        actions, self._state = run_step(self.flow_class, self.contact, self.host, self._state, event)
        return actions

    def start(self):
        return self.send(Started())

    def message(self, text: str):
        return self.send(Message(text))

    def mail(self, sender: str, subject: str, text: str):
        return self.send(Mail(subject, sender, text))

    def press(self, digits: str):
        return self.send(Input(digits))

    def silence(self):
        return self.send(NoInput())

    def task(self, queue: str, status: str, agent: Optional[str] = None):
        return self.send(TaskOutcome(queue, status, agent))

    def waiting(self, queue: str, waited_secs: int, position: int):
        return self.send(QueueWait(queue, waited_secs, position))

    def hang_up(self):
        return self.send(HungUp())

    @property
    def state(self):
        """The flow's state after the last step, as the next step will load it."""
        return self.flow_class.load(self._state)
