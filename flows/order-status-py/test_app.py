from switchboard_flow import End, Enqueue, spoken
from switchboard_flow.testing import Conversation

from app import OrderStatus


def chat():
    return Conversation(OrderStatus, channel="sms", from_="+15551230001", to="+15550200").with_config(
        "orders", "1001:shipped,1002:being prepared"
    )


def test_answers_by_order_number_and_hands_over_on_request():
    c = chat()
    assert spoken(c.start())[0].startswith("Hi, this is Acme.")
    assert spoken(c.message("where is 1001?")) == ["Order 1001 is shipped."]
    assert spoken(c.message("1002")) == ["Order 1002 is being prepared."]
    assert spoken(c.message("9999"))[0].startswith("We could not find order 9999")
    assert spoken(c.message("hello?")) == ["Please send just your order number, like 1001."]
    handover = c.message("AGENT please")
    assert isinstance(handover[-1], Enqueue) and handover[-1].queue == "support"
    assert handover[-1].attributes == (("channel", "sms"),)
    assert isinstance(c.message("stop")[-1], End)
    assert c.state.asked == ["1001", "1002", "9999"]


def test_a_known_customer_is_greeted_by_name_and_a_crm_outage_is_not_fatal():
    c = chat().with_customer("+15551230001", "Grace Hopper")
    assert spoken(c.start())[0].startswith("Hi Grace, this is Acme.")
    down = chat()
    down.host.crm_down = True
    assert spoken(down.start())[0].startswith("Hi, this is Acme.")
    assert down.host.logs == [("warn", "CRM lookup failed: the CRM is down (test)")]
