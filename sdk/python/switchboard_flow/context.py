"""What a step can see and ask: the contact, the CRM, the flow's key/value store, the
admin's settings, the log and the clock, all through a ``Host`` (the real one inside the
component, a fake one in tests)."""

from dataclasses import dataclass, field
from typing import Dict, Optional, Protocol


@dataclass(frozen=True)
class Contact:
    """Who is contacting whom."""

    id: str
    channel: str  # voice, sms, chat, email
    from_: str
    to: str
    attributes: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Customer:
    """A customer as the CRM knows them."""

    id: str
    name: str
    phone: Optional[str] = None
    email: Optional[str] = None
    tier: str = ""
    attributes: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalTime:
    """A wall-clock time in some zone; weekday 0 is Monday."""

    year: int
    month: int
    day: int
    weekday: int
    hour: int
    minute: int
    second: int
    utc_offset_secs: int = 0


class Host(Protocol):
    """The host interfaces of the contract."""

    def crm_lookup(self, kind: str, value: str) -> Optional[Customer]: ...
    def kv_get(self, key: str) -> Optional[bytes]: ...
    def kv_set(self, key: str, value: bytes) -> None: ...
    def kv_delete(self, key: str) -> None: ...
    def config(self, key: str) -> Optional[str]: ...
    def log(self, level: str, message: str) -> None: ...
    def now_ms(self) -> int: ...
    def time_in(self, zone: str) -> LocalTime: ...


class CrmError(Exception):
    """The CRM could not be asked."""


class Context:
    """One step's view of the world."""

    def __init__(self, contact: Contact, host: Host):
        self.contact = contact
        self._host = host

    def attribute(self, key: str) -> Optional[str]:
        return self.contact.attributes.get(key)

    def crm_lookup(self, *, phone: Optional[str] = None, email: Optional[str] = None,
                   id: Optional[str] = None) -> Optional[Customer]:
        """A customer by phone, e-mail or id; raises ``CrmError`` when the CRM cannot answer."""
        for kind, value in (("phone", phone), ("email", email), ("id", id)):
            if value is not None:
                return self._host.crm_lookup(kind, value)
        raise ValueError("crm_lookup needs phone=, email= or id=")

    def customer_by_phone(self) -> Optional[Customer]:
        """The customer whose number is the contact's ``from_``; a CRM failure is logged and
        treated as unknown, so the flow carries on."""
        try:
            return self._host.crm_lookup("phone", self.contact.from_)
        except CrmError as e:
            self.log("warn", f"CRM lookup failed: {e}")
            return None

    def config(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """A setting the admin gave this flow (``switchboard settings FLOW KEY=VALUE``)."""
        value = self._host.config(key)
        return default if value is None else value

    def kv_get(self, key: str) -> Optional[bytes]:
        return self._host.kv_get(key)

    def kv_set(self, key: str, value: bytes) -> None:
        """Durable once the step returns (discarded if the step fails)."""
        self._host.kv_set(key, value)

    def kv_delete(self, key: str) -> None:
        self._host.kv_delete(key)

    def log(self, level: str, message: str) -> None:
        """level: trace, debug, info, warn or error."""
        self._host.log(level, message)

    def now_ms(self) -> int:
        return self._host.now_ms()

    def time_in(self, zone: str) -> LocalTime:
        """The wall-clock time in an IANA zone such as ``America/New_York``."""
        return self._host.time_in(zone)
