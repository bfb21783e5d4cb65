//! The outbox: mail waits in the store under `out/DUE/ID` (DUE: the time of its next attempt,
//! so the sender reads only the front and stops at the first mail not yet due), indexed by
//! `waiting/CONTACT/ID`; it is retried with backoff while the relay is down or answers a
//! temporary failure. Once taken it moves to `sent/CONTACT/ID`; refused for good, to
//! `failed/CONTACT/ID`. Sent with `lettre` over SMTP (STARTTLS, TLS and AUTH as the relay URL
//! says). A crash between the relay's answer and the move sends the mail again, with the same
//! Message-ID, which receivers use to drop the copy.

use std::sync::Arc;
use std::time::Duration;

use lettre::Transport as _;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::extension::ClientId;
use serde::{Deserialize, Serialize};

use crate::runtime::Runtime;
use crate::store::{Batch, Scan, Tree};

/// Where a mail is: waiting in the outbox, taken by the relay, or refused by it for good.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In the outbox, to be tried at `next_ms`.
    #[default]
    Waiting,
    /// The relay took it at `sent_ms`.
    Sent,
    /// The relay refused it for good (`last_error` says why); not tried again.
    Failed,
}

/// A mail to send, or sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Outgoing {
    /// Its id (the last part of its keys).
    pub id: String,
    /// Waiting, sent or failed.
    #[serde(default)]
    pub state: State,
    /// The contact it belongs to.
    pub contact: String,
    /// Our mailbox.
    pub from: String,
    /// Where replies go: our mailbox's plus-address naming the contact.
    pub reply_to: String,
    /// The customer.
    pub to: String,
    /// `Re: ` and the thread's subject.
    pub subject: String,
    /// The body, plain text.
    pub text: String,
    /// Its Message-ID, without brackets.
    pub message_id: String,
    /// The mail it answers.
    pub in_reply_to: Option<String>,
    /// The thread's References, oldest first.
    pub references: Vec<String>,
    /// A flow's answer (`Auto-Submitted: auto-replied`), not a person's.
    pub auto: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the relay took it.
    pub sent_ms: Option<u64>,
}

/// `Auto-Submitted` (RFC 3834).
#[derive(Debug, Clone)]
struct AutoSubmitted(String);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(s.trim().to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl Outgoing {
    /// Its key in the outbox: due time first, so a scan reads the mail due soonest first.
    pub fn key(&self) -> String {
        format!("out/{:013}/{}", self.next_ms, self.id)
    }

    /// Its entry in the contact's index of waiting mail, or under `sent/`, `failed/`.
    pub fn index(&self) -> String {
        let place = match self.state {
            State::Waiting => "waiting",
            State::Sent => "sent",
            State::Failed => "failed",
        };
        format!("{place}/{}/{}", self.contact, self.id)
    }

    /// Puts it in the outbox (with its index entry) in `batch`.
    pub fn stage(&self, batch: &mut Batch) -> Result<(), crate::store::StoreError> {
        batch.put_json(Tree::Mail, self.key(), self)?;
        batch.put(Tree::Mail, self.index(), self.key().into_bytes());
        Ok(())
    }

    /// The message as it goes out.
    pub fn message(&self) -> anyhow::Result<Message> {
        let mailbox = |a: &str| -> anyhow::Result<Mailbox> {
            a.parse()
                .map_err(|e| anyhow::anyhow!("{a:?} is not a mail address: {e}"))
        };
        let mut builder = Message::builder()
            .from(mailbox(&self.from)?)
            .reply_to(mailbox(&self.reply_to)?)
            .to(mailbox(&self.to)?)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{}>", self.message_id)))
            .date_now();
        if let Some(id) = &self.in_reply_to {
            builder = builder.in_reply_to(format!("<{id}>"));
        }
        if !self.references.is_empty() {
            let refs: Vec<String> = self.references.iter().map(|r| format!("<{r}>")).collect();
            builder = builder.references(refs.join(" "));
        }
        if self.auto {
            builder = builder.header(AutoSubmitted("auto-replied".into()));
        }
        Ok(builder
            .header(ContentType::TEXT_PLAIN)
            .body(self.text.clone())?)
    }
}

/// Seconds before attempt `n + 1` (after `n` failures): 1, 2, 4... up to 32.
fn backoff(attempts: u32) -> u64 {
    super::backoff_secs(attempts, 32)
}

/// Starts the sender thread.
pub fn start(rt: &Arc<Runtime>) {
    let (tx, rx) = std::sync::mpsc::channel();
    *rt.email.wake_out.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    let weak = Arc::downgrade(rt);
    let _ = std::thread::Builder::new()
        .name("mail-out".into())
        .spawn(move || {
            let mut relay: Option<SmtpTransport> = None;
            let mut told = false;
            loop {
                let Some(rt) = weak.upgrade() else { return };
                let mailroom = &rt.email;
                match (&relay, &mailroom.config.relay) {
                    (None, Some(url)) => match SmtpTransport::from_url(url) {
                        Ok(builder) => {
                            relay = Some(
                                builder
                                    .hello_name(ClientId::Domain(mailroom.config.domain.clone()))
                                    .timeout(Some(Duration::from_secs(20)))
                                    .build(),
                            )
                        }
                        Err(e) => {
                            if !told {
                                tracing::error!(error = %e, "email.relay is not a relay URL such as smtp://relay.example.com:587?tls=required; mail waits in the outbox");
                                told = true;
                            }
                        }
                    },
                    (None, None) if !told && mailroom.waiting().unwrap_or(0) > 0 => {
                        tracing::warn!("mail waits in the outbox: set email.relay in switchboard.toml (or SWITCHBOARD_EMAIL_RELAY) to send it");
                        told = true;
                    }
                    _ => {}
                }
                if let Some(relay) = &relay
                    && super::leads(&rt)
                {
                    mailroom.send_due(relay);
                }
                drop(rt);
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
}

impl super::Mailroom {
    /// Mail waiting in the outbox (at most 1,000 counted).
    pub fn waiting(&self) -> Result<usize, crate::store::StoreError> {
        Ok(self
            .store
            .scan(Tree::Mail, &Scan::prefix(b"out/", 1000))?
            .len())
    }

    /// Sends what is due, soonest due first; stops at the first mail not yet due.
    fn send_due(&self, relay: &SmtpTransport) {
        let front = match self.store.scan(Tree::Mail, &Scan::prefix(b"out/", 64)) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the outbox cannot be read; trying again");
                return;
            }
        };
        for (key, value) in front {
            let Ok(mut mail) = crate::store::decode::<Outgoing>(Tree::Mail, &key, &value) else {
                tracing::error!(key = %String::from_utf8_lossy(&key), "a mail in the outbox does not decode; left there");
                continue;
            };
            if mail.next_ms > crate::router::now_ms() {
                break;
            }
            let result = mail
                .message()
                .and_then(|m| relay.send(&m).map_err(anyhow::Error::from));
            let mut batch = Batch::new();
            batch.expect(Tree::Mail, key.clone(), Some(&value));
            batch.delete(Tree::Mail, key);
            let waiting = mail.index();
            mail.attempts += 1;
            let staged = match result {
                Ok(_) => {
                    mail.state = State::Sent;
                    mail.sent_ms = Some(crate::router::now_ms());
                    self.counters.sent.inc();
                    tracing::info!(contact = %mail.contact, to = %mail.to, message_id = %mail.message_id, "mail sent");
                    batch.delete(Tree::Mail, waiting);
                    batch.put_json(Tree::Mail, mail.index(), &mail)
                }
                Err(e) => {
                    self.counters.send_failures.inc();
                    let permanent = e
                        .downcast_ref::<lettre::transport::smtp::Error>()
                        .is_some_and(|e| e.is_permanent());
                    mail.last_error = Some(e.to_string());
                    if permanent || mail.message().is_err() {
                        tracing::error!(contact = %mail.contact, to = %mail.to, error = %e, "the relay refused a mail for good; it is kept under failed/ (see the contact's mail)");
                        mail.state = State::Failed;
                        batch.delete(Tree::Mail, waiting);
                        batch.put_json(Tree::Mail, mail.index(), &mail)
                    } else {
                        mail.next_ms = crate::router::now_ms() + backoff(mail.attempts) * 1000;
                        tracing::warn!(contact = %mail.contact, to = %mail.to, attempt = mail.attempts, error = %e, "the relay did not take a mail; trying again later");
                        mail.stage(&mut batch)
                    }
                }
            };
            if let Err(e) = staged
                .and_then(|()| self.store.commit(&batch))
                .and_then(|()| self.store.flush())
            {
                tracing::error!(error = %e, "the outbox could not be updated after an attempt");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_carries_its_thread_and_says_it_was_automatic() {
        let mail = Outgoing {
            id: "1".into(),
            state: State::Waiting,
            contact: "c1".into(),
            from: "support@acme.test".into(),
            reply_to: "support+c1@acme.test".into(),
            to: "jane@example.com".into(),
            subject: "Re: Where is it".into(),
            text: "Your ticket is T-1.".into(),
            message_id: "c1.1@acme.test".into(),
            in_reply_to: Some("m1@example.com".into()),
            references: vec!["m0@example.com".into(), "m1@example.com".into()],
            auto: true,
            attempts: 0,
            next_ms: 0,
            last_error: None,
            sent_ms: None,
        };
        let text = String::from_utf8(mail.message().unwrap().formatted()).unwrap();
        for want in [
            "Message-ID: <c1.1@acme.test>",
            "In-Reply-To: <m1@example.com>",
            "References: <m0@example.com> <m1@example.com>",
            "Auto-Submitted: auto-replied",
            "Subject: Re: Where is it",
            "Reply-To: support+c1@acme.test",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let by_hand = Outgoing {
            auto: false,
            ..mail
        };
        let text = String::from_utf8(by_hand.message().unwrap().formatted()).unwrap();
        assert!(!text.contains("Auto-Submitted"), "{text}");
    }

    #[test]
    fn retries_back_off_up_to_half_a_minute() {
        assert_eq!(backoff(1), 1);
        assert_eq!(backoff(2), 2);
        assert_eq!(backoff(3), 4);
        assert_eq!(backoff(50), 32);
    }
}
