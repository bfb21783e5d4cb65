//! An SMS (or chat) order-status flow.
//!
//! - Greets and asks for an order number; a customer the CRM knows is greeted by first name.
//! - Answers with the order's status from the `orders` setting (`1001:shipped,1002:preparing`),
//!   addressing a known customer by name. The name is looked up again rather than kept in the
//!   state: the host caches lookups per contact, so the CRM is asked once per conversation.
//! - "agent" hands the conversation to the `support` queue; "stop" ends it.

use switchboard_sdk::prelude::*;

switchboard_sdk::export_flow!(OrderStatus);

/// What the flow remembers.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OrderStatus {
    /// Order numbers asked about.
    pub asked: Vec<String>,
}

impl Flow for OrderStatus {
    fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
        Ok(match event {
            Event::Started => {
                let hello = match first_name(cx) {
                    Some(name) => format!("Hi {name}"),
                    None => "Hi".to_string(),
                };
                vec![Action::send(&format!(
                    "{hello}, this is Acme. Send your order number to get its status, or AGENT to talk to a person."
                ))]
            }
            Event::Message(text) => self.answer(cx, text.trim()),
            Event::TaskOutcome(outcome) if outcome.status == TaskStatus::TimedOut => {
                vec![Action::send(
                    "Sorry, nobody is free right now. Please write again later.",
                )]
            }
            _ => vec![],
        })
    }
}

impl OrderStatus {
    fn answer(&mut self, cx: &mut Context<'_>, text: &str) -> Vec<Action> {
        let lower = text.to_ascii_lowercase();
        if lower == "stop" || lower == "bye" {
            return vec![Action::send("Goodbye."), Action::End];
        }
        if lower.contains("agent") {
            return vec![
                Action::send("Connecting you with an agent."),
                Action::enqueue_with("support", 0, &[("channel", "sms")]),
            ];
        }
        let number: String = text.chars().filter(char::is_ascii_digit).collect();
        if number.is_empty() {
            return vec![Action::send(
                "Please send just your order number, like 1001.",
            )];
        }
        self.asked.push(number.clone());
        let orders = cx.config_or("orders", "");
        let status = orders
            .split(',')
            .filter_map(|entry| entry.split_once(':'))
            .find(|(n, _)| n.trim() == number)
            .map(|(_, s)| s.trim().to_string());
        match status {
            Some(status) => vec![Action::send(&match first_name(cx) {
                Some(name) => format!("{name}, order {number} is {status}."),
                None => format!("Order {number} is {status}."),
            })],
            None => vec![Action::send(&format!(
                "We could not find order {number}. Check the number, or send AGENT."
            ))],
        }
    }
}

/// The first name of the customer writing, when the CRM knows their number.
fn first_name(cx: &mut Context<'_>) -> Option<String> {
    let customer = cx.customer_by_phone()?;
    customer.name.split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sdk::testing::{Conversation, spoken};

    fn chat() -> Conversation<OrderStatus> {
        Conversation::new(Channel::Sms, "+15551230001", "+15550200")
            .with_config("orders", "1001:shipped,1002:being prepared")
    }

    #[test]
    fn answers_by_order_number_and_hands_over_on_request() {
        let mut chat = chat();
        assert!(spoken(&chat.start())[0].starts_with("Hi, this is Acme."));
        assert_eq!(
            spoken(&chat.message("where is 1001?")),
            vec!["Order 1001 is shipped."]
        );
        assert_eq!(
            spoken(&chat.message("1002")),
            vec!["Order 1002 is being prepared."]
        );
        assert!(spoken(&chat.message("9999"))[0].starts_with("We could not find order 9999"));
        assert_eq!(
            spoken(&chat.message("hello?")),
            vec!["Please send just your order number, like 1001."]
        );
        let handover = chat.message("AGENT please");
        assert!(matches!(handover.last(), Some(Action::Enqueue(e)) if e.queue == "support"));
        assert_eq!(chat.message("stop").last(), Some(&Action::End));
        assert_eq!(chat.state().asked, vec!["1001", "1002", "9999"]);
    }

    #[test]
    fn known_customers_are_addressed_by_name() {
        let mut chat = chat().with_customer("+15551230001", "Ada Lovelace", "vip");
        assert!(spoken(&chat.start())[0].starts_with("Hi Ada, this is Acme."));
        assert_eq!(
            spoken(&chat.message("1001")),
            vec!["Ada, order 1001 is shipped."]
        );
    }
}
