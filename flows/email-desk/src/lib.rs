//! An e-mail flow.
//!
//! - Every new mail gets a ticket number in its acknowledgement (`T-` and the first eight
//!   characters of the contact id, unique per conversation).
//! - A mail asking for an order's status ("order status", "where is my order") with an order
//!   number is answered by the flow from the `orders` setting (`1001:shipped,1002:preparing`);
//!   without a number it asks for one.
//! - Anything else goes to the `support` queue; further mails while it waits are added to the
//!   ticket. Once an agent holds it, mails go to the agent, not here.
//!
//! The host never answers robots (auto-replies, bounces, lists) and caps automatic answers per
//! sender; a new contact started by a robot's mail has the `email_robot` attribute, and this
//! flow ends it without a ticket or a task.

use switchboard_sdk::prelude::*;

switchboard_sdk::export_flow!(EmailDesk);

/// What the flow remembers of a conversation.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EmailDesk {
    /// The ticket number, given with the first answer.
    pub ticket: Option<String>,
    /// Whether the conversation waits for (or went to) an agent.
    pub handed_over: bool,
}

impl Flow for EmailDesk {
    fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
        Ok(match event {
            // An auto-reply, a bounce or a list's mail: kept on the contact, no ticket, no task.
            Event::Mail(_) if cx.attribute("email_robot").is_some() => vec![Action::End],
            Event::Mail(mail) => self.answer(cx, &mail.subject, &mail.text, mail.from_name),
            // A contact of contract 0.1.0's kind: a message is a mail without a subject.
            Event::Message(text) => self.answer(cx, "", &text, None),
            Event::TaskOutcome(outcome) if outcome.status == TaskStatus::TimedOut => {
                self.handed_over = false;
                vec![Action::send(&format!(
                    "We are sorry: nobody could take ticket {} yet. Reply to this mail and we will try again.",
                    self.ticket_of(cx)
                ))]
            }
            _ => vec![],
        })
    }
}

impl EmailDesk {
    fn ticket_of(&mut self, cx: &Context<'_>) -> String {
        self.ticket
            .get_or_insert_with(|| {
                let id: String = cx
                    .contact()
                    .id
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(8)
                    .collect();
                format!("T-{}", id.to_ascii_uppercase())
            })
            .clone()
    }

    fn answer(
        &mut self,
        cx: &mut Context<'_>,
        subject: &str,
        text: &str,
        name: Option<String>,
    ) -> Vec<Action> {
        let first = self.ticket.is_none();
        let ticket = self.ticket_of(cx);
        let hello = match name.as_deref().and_then(|n| n.split_whitespace().next()) {
            Some(first_name) => format!("Hello {first_name},"),
            None => "Hello,".to_string(),
        };
        let asked = format!("{subject}\n{text}").to_ascii_lowercase();
        if is_order_question(&asked) {
            let number = order_number(&asked);
            let orders = cx.config_or("orders", "");
            let reply = match number {
                None => {
                    "Please reply with your order number (such as 1001) and we will look it up."
                        .to_string()
                }
                Some(number) => match orders
                    .split(',')
                    .filter_map(|entry| entry.split_once(':'))
                    .find(|(n, _)| n.trim() == number)
                {
                    Some((_, status)) => format!("Order {number} is {}.", status.trim()),
                    None => format!(
                        "We could not find order {number}. Please check the number and reply to this mail."
                    ),
                },
            };
            return vec![Action::send(&format!(
                "{hello}\n\nThank you for writing to Acme (ticket {ticket}).\n\n{reply}\n\nAcme Support"
            ))];
        }
        if self.handed_over {
            return vec![Action::send(&format!(
                "{hello}\n\nWe have added your message to ticket {ticket}. An agent will answer you soon.\n\nAcme Support"
            ))];
        }
        self.handed_over = true;
        let opening = if first {
            format!("Thank you for writing to Acme. Your ticket number is {ticket}.")
        } else {
            format!("Thank you for your message on ticket {ticket}.")
        };
        vec![
            Action::send(&format!(
                "{hello}\n\n{opening} An agent will answer you soon.\n\nAcme Support"
            )),
            Action::enqueue_with("support", 0, &[("channel", "email"), ("ticket", &ticket)]),
        ]
    }
}

/// Whether a mail asks where an order stands.
fn is_order_question(text: &str) -> bool {
    text.contains("order status")
        || text.contains("where is my order")
        || (text.contains("order") && text.contains("status"))
}

/// The first number of three or more digits in the mail.
fn order_number(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|n| n.len() >= 3)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sdk::testing::{Conversation, spoken};

    fn mailbox() -> Conversation<EmailDesk> {
        Conversation::new(Channel::Email, "jane@example.com", "support@acme.test")
            .with_config("orders", "1001:shipped,1002:being prepared")
    }

    #[test]
    fn order_status_is_answered_by_the_flow() {
        let mut mail = mailbox();
        assert!(mail.start().is_empty());
        let answer = mail.mail("jane@example.com", "Order status", "Where is order 1001?");
        assert_eq!(answer.len(), 1);
        let text = &spoken(&answer)[0];
        assert!(text.contains("ticket T-TESTCONT"), "{text}");
        assert!(text.contains("Order 1001 is shipped."), "{text}");
        let again = mail.mail(
            "jane@example.com",
            "Re: Order status",
            "and order status of 4242?",
        );
        assert!(spoken(&again)[0].contains("could not find order 4242"));
        assert!(!mail.state().handed_over);
    }

    #[test]
    fn a_robots_mail_gets_no_ticket_and_no_task() {
        let mut mail = mailbox().with_attribute("email_robot", "bounce");
        mail.start();
        assert_eq!(
            mail.mail("mailer-daemon@mx.test", "Undelivered", "failed"),
            vec![Action::End]
        );
    }

    #[test]
    fn other_mail_gets_a_ticket_and_goes_to_support_once() {
        let mut mail = mailbox();
        mail.start();
        let answer = mail.mail("jane@example.com", "Broken kettle", "It leaks.");
        assert!(spoken(&answer)[0].contains("Your ticket number is T-TESTCONT."));
        assert!(matches!(answer.last(), Some(Action::Enqueue(e)) if e.queue == "support"));
        let more = mail.mail("jane@example.com", "Re: Broken kettle", "A photo.");
        assert!(spoken(&more)[0].contains("added your message to ticket T-TESTCONT"));
        assert!(!more.iter().any(|a| matches!(a, Action::Enqueue(_))));
        let later = mail.task("support", TaskStatus::TimedOut);
        assert!(spoken(&later)[0].contains("nobody could take ticket T-TESTCONT"));
        let retry = mail.mail("jane@example.com", "Re: Broken kettle", "Still leaking.");
        assert!(matches!(retry.last(), Some(Action::Enqueue(_))));
    }
}
