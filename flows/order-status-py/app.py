"""An SMS or chat order-status flow, in Python.

- Greets and asks for an order number.
- Answers with the order's status from the ``orders`` setting (``1001:shipped,1002:preparing``).
- "agent" hands the conversation to the ``support`` queue; "stop" ends it.
- Remembers which orders the customer asked about; a known customer is greeted by name.
"""

import re
from dataclasses import dataclass, field
from typing import List

from switchboard_flow import (
    Flow, Message, Started, TaskOutcome, end, enqueue, export, send,
)


@dataclass
class OrderStatus(Flow):
    asked: List[str] = field(default_factory=list)

    def handle(self, ctx, event):
        if isinstance(event, Started):
            customer = ctx.customer_by_phone()
            hello = f"Hi {customer.name.split()[0]}" if customer else "Hi"
            return [send(f"{hello}, this is Acme. Send your order number to get its status, or AGENT to talk to a person.")]
        if isinstance(event, Message):
            return self.answer(ctx, event.text.strip())
        if isinstance(event, TaskOutcome) and event.status == "timed-out":
            return [send("Sorry, nobody is free right now. Please write again later.")]
        return []

    def answer(self, ctx, text):
        lower = text.lower()
        if lower in ("stop", "bye"):
            return [send("Goodbye."), end()]
        if "agent" in lower:
            return [send("Connecting you with an agent."), enqueue("support", attributes={"channel": ctx.contact.channel})]
        number = "".join(re.findall(r"\d", text))
        if not number:
            return [send("Please send just your order number, like 1001.")]
        self.asked.append(number)
        orders = dict(
            entry.split(":", 1) for entry in ctx.config("orders", "").split(",") if ":" in entry
        )
        status = orders.get(number)
        if status is None:
            return [send(f"We could not find order {number}. Check the number, or send AGENT.")]
        return [send(f"Order {number} is {status.strip()}.")]


WitWorld = export(OrderStatus)
