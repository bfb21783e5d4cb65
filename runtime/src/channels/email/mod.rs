//! E-mail: mail in (the SMTP receiver, [`smtp`], and the inbound-parse webhook), each mail a
//! `mail` event of a contact; what flows and agents answer goes out from a durable outbox
//! through the relay ([`outbox`]).
//!
//! Everything durable lives in the channel's own tree, [`Tree::Mail`]:
//! - `in/ID`: a mail accepted (written before the SMTP 250) and not yet handed to its
//!   contact. Handling it records its progress in the entry itself (the contact it went to,
//!   the step it found the contact at), so a restart half-way neither loses the mail nor runs
//!   the flow twice on it, and an answer is queued once.
//! - `out/DUE/ID`: a mail to send, indexed by `waiting/CONTACT/ID`; `sent/CONTACT/ID` once
//!   the relay took it, `failed/CONTACT/ID` if it refused it for good, so the conversation
//!   stays with the contact.
//! - `thread/CONTACT`: the contact's thread (customer, subject, last Message-ID and its
//!   References); `msgid/MESSAGE-ID`: the contact a Message-ID belongs to (mail in and out), so
//!   a reply's In-Reply-To or References finds it.
//! - `att/CONTACT/ID/N`: an attachment's bytes (up to `email.max_attachment_bytes`).
//! - `auto/SENDER/HOUR`: automatic replies sent to a sender in an hour (RFC 3834 says answer
//!   robots never, and people rarely: `email.auto_replies_per_hour`).

pub mod outbox;
pub mod smtp;

/// What is read of a received mail.
pub use switchboard_mail as parse;

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::contract::{Attachment, Channel, Event, Mail};
use crate::router::now_ms;
use crate::runtime::Runtime;
use crate::sessions::{NewContact, Status};
use crate::store::{Batch, Scan, StoreError, StoreExt as _, Tree};

use parse::{Incoming, Robot};

/// A mail accepted and not yet handed to its contact (`in/ID`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    /// The raw message, base64.
    pub raw: String,
    /// The envelope sender (empty: the null sender of a bounce).
    pub mail_from: String,
    /// The recipient this copy is for (one entry per bound recipient).
    pub to: String,
    /// When it was accepted.
    pub received_ms: u64,
    /// How it came: `smtp` or `webhook`.
    pub via: String,
    /// The contact it went to, once known.
    #[serde(default)]
    pub contact: Option<String>,
    /// The contact's step count before this mail's step.
    #[serde(default)]
    pub steps_before: Option<u32>,
    /// What the flow said in a new contact's first step, sent with the answer to the mail.
    #[serde(default)]
    pub said: Vec<String>,
    /// Its contact is being started (set just before): a run after a crash looks for it.
    #[serde(default)]
    pub starting: bool,
    /// Failed attempts to hand it over, and when to try again (ms since the epoch).
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time.
    #[serde(default)]
    pub next_ms: u64,
}

/// A contact's thread (`thread/CONTACT`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thread {
    /// The customer's address.
    pub customer: String,
    /// Their display name.
    pub customer_name: Option<String>,
    /// Our mailbox they wrote to.
    pub mailbox: String,
    /// The subject of the first mail.
    pub subject: String,
    /// The Message-ID of the customer's last mail.
    pub last_message_id: Option<String>,
    /// Its References plus itself, oldest first.
    pub references: Vec<String>,
    /// Its text (quoted in an agent's reply).
    pub last_text: String,
}

/// Refusals of mail on the way in.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No flow is bound to any recipient.
    #[error("no flow answers {0}: bind the address with `switchboard bind ADDRESS --flow NAME`")]
    UnknownRecipient(String),
    /// Larger than `email.max_message_bytes`.
    #[error("the message is {size} bytes, more than the {max} this server accepts")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The store failed: nothing was accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The e-mail channel of a runtime.
pub struct Mailroom {
    store: Arc<dyn crate::store::Store>,
    config: crate::config::EmailConfig,
    wake_in: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    wake_out: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    counters: Counters,
}

impl Mailroom {
    /// The channel over the node's channel store.
    pub fn new(store: Arc<dyn crate::store::Store>, config: crate::config::EmailConfig) -> Self {
        Mailroom {
            store,
            config,
            wake_in: std::sync::Mutex::new(None),
            wake_out: std::sync::Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// The channel's configuration.
    pub fn config(&self) -> &crate::config::EmailConfig {
        &self.config
    }

    /// Whether mail to `address` is taken: a flow is bound to it (or to the mailbox of its
    /// plus-address).
    pub fn takes(&self, rt: &Runtime, address: &str) -> bool {
        let (mailbox, _) = parse::plus_address(address);
        rt.contacts().answers(&mailbox).unwrap_or(false)
    }

    /// Accepts a mail for `recipients` (each bound: see [`Mailroom::takes`]): written
    /// durably, one entry per recipient, before this returns; handled right after. Returns
    /// the ids of the entries.
    pub fn accept(
        &self,
        raw: &[u8],
        mail_from: &str,
        recipients: &[String],
        via: &str,
    ) -> Result<Vec<String>, MailError> {
        if raw.len() > self.config.max_message_bytes {
            return Err(MailError::TooLarge {
                size: raw.len(),
                max: self.config.max_message_bytes,
            });
        }
        let mut batch = Batch::new();
        let mut ids = Vec::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        for to in recipients {
            let id = format!("{:020}", self.store.next_id()?);
            let entry = Received {
                raw: encoded.clone(),
                mail_from: mail_from.to_string(),
                to: to.to_ascii_lowercase(),
                received_ms: now_ms(),
                via: via.to_string(),
                contact: None,
                steps_before: None,
                said: Vec::new(),
                starting: false,
                attempts: 0,
                next_ms: 0,
            };
            batch.put_json(Tree::Mail, format!("in/{id}"), &entry)?;
            ids.push(id);
        }
        self.store.commit(&batch)?;
        self.store.flush()?;
        self.wake(&self.wake_in);
        Ok(ids)
    }

    fn wake(&self, which: &std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>) {
        if let Some(tx) = &*which.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(());
        }
    }

    /// Starts the channel's two workers: one hands accepted mail to contacts (first what a
    /// restart left), one sends the outbox through the relay. Also renders, as mail, what
    /// flows say to e-mail contacts in steps of task news.
    pub fn start(rt: &Arc<Runtime>) {
        let mailroom = rt.email.clone();
        mailroom.counters.register(rt.metrics());
        let (tx, rx) = std::sync::mpsc::channel();
        *mailroom.wake_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let weak = Arc::downgrade(rt);
        let _ = std::thread::Builder::new()
            .name("mail-in".into())
            .spawn(move || {
                loop {
                    let Some(rt) = weak.upgrade() else { return };
                    if leads(&rt) {
                        rt.email.handle_accepted(&rt);
                    }
                    drop(rt);
                    match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        outbox::start(rt);
        let weak = Arc::downgrade(rt);
        crate::channels::follow_reports(rt.contacts().subscribe(), move |report| {
            let Some(rt) = weak.upgrade() else { return };
            let said = crate::channels::chat::texts(&report.actions);
            if said.is_empty() {
                return;
            }
            if rt
                .contacts()
                .get(&report.contact)
                .is_ok_and(|s| s.channel == Channel::Email)
                && let Err(e) = rt.email.flow_said(&report.contact, &said)
            {
                tracing::error!(contact = %report.contact, error = %e, "what a flow said could not be queued as mail");
            }
        });
    }

    /// Hands every accepted mail to its contact, oldest first. A mail that cannot be handed
    /// over now is put off; the ones after it go on.
    fn handle_accepted(&self, rt: &Runtime) {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let scan = Scan::prefix(b"in/", 256);
            let scan = match &after {
                Some(key) => scan.after(key),
                None => scan,
            };
            let pending = match self.store.scan(Tree::Mail, &scan) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "accepted mail cannot be read; trying again");
                    return;
                }
            };
            let full = pending.len() == 256;
            after = pending.last().map(|(key, _)| key.clone());
            for (key, value) in pending {
                let entry: Received = match crate::store::decode(Tree::Mail, &key, &value) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "an accepted mail does not decode; set aside under bad/");
                        let mut batch = Batch::new();
                        batch.delete(Tree::Mail, key.clone());
                        batch.put(Tree::Mail, [b"bad/".as_slice(), &key[3..]].concat(), value);
                        let _ = self.store.commit(&batch);
                        continue;
                    }
                };
                if entry.next_ms > now_ms() {
                    continue;
                }
                if let Err(e) = self.handle(rt, &key, entry) {
                    // Kept and tried again later; the mails after it go on meanwhile.
                    self.later(&key, &e);
                }
            }
            if !full {
                return;
            }
        }
    }

    /// Puts off a mail that could not be handed over, with backoff (up to 5 minutes). What
    /// the failed run got done (the contact, its step) is in the stored entry, which is kept.
    fn later(&self, key: &[u8], error: &anyhow::Error) {
        let Ok(Some(stored)) = self.store.get(Tree::Mail, key) else {
            return;
        };
        let Ok(mut entry) = serde_json::from_slice::<Received>(&stored) else {
            return;
        };
        entry.attempts += 1;
        entry.next_ms = now_ms() + 1000 * backoff_secs(entry.attempts, 300);
        tracing::error!(key = %String::from_utf8_lossy(key), attempt = entry.attempts, error = %error, "a mail could not be handed to its contact; it is kept and tried again");
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            let _ = self.store.put(Tree::Mail, key, &bytes);
        }
    }

    /// Hands one accepted mail to its contact. Safe to run again after a crash at any point.
    fn handle(&self, rt: &Runtime, key: &[u8], mut entry: Received) -> anyhow::Result<()> {
        let raw = base64::engine::general_purpose::STANDARD.decode(&entry.raw)?;
        let mail = parse::read(&raw, entry.mail_from.is_empty());
        let customer = mail
            .from
            .clone()
            .unwrap_or_else(|| entry.mail_from.to_ascii_lowercase());
        let (mailbox, tag) = parse::plus_address(&entry.to);
        if entry.contact.is_none() {
            // The plus-address's contact, else the first the mail answers.
            let answered = mail.answers.iter().filter_map(|id| {
                self.store
                    .get_json::<String>(Tree::Mail, &format!("msgid/{id}"))
                    .ok()
                    .flatten()
            });
            let earlier = tag
                .into_iter()
                .chain(answered)
                .find_map(|c| rt.contacts().get(&c).ok());
            match earlier {
                Some(session) if !matches!(session.status, Status::Ended { .. }) => {
                    entry.steps_before = Some(session.steps);
                    entry.contact = Some(session.id);
                }
                earlier => {
                    let id = String::from_utf8_lossy(&key[3..]).into_owned();
                    // A run cut short between starting the contact and noting it here: the
                    // contact is among the newest, marked with this mail's id.
                    let started = if entry.starting {
                        rt.contacts()
                            .recent(256, |s| {
                                s.channel == Channel::Email
                                    && s.attributes
                                        .iter()
                                        .any(|(k, v)| k == "email_mail" && *v == id)
                            })?
                            .into_iter()
                            .next()
                    } else {
                        None
                    };
                    if let Some(session) = started {
                        entry.said = said_in_step(rt, &session.id, 1)?;
                        entry.steps_before = Some(1);
                        entry.contact = Some(session.id);
                    } else {
                        entry.starting = true;
                        self.store
                            .put(Tree::Mail, key, &serde_json::to_vec(&entry)?)?;
                        self.start_contact(
                            rt, &mut entry, &mail, &customer, &mailbox, earlier, id,
                        )?;
                        // Test-only: the process dies between starting the contact and noting it (the window a
                        // restart must close), once the sender has its 250 (the worker can get here first).
                        if std::env::var("SWITCHBOARD_FAILPOINT").is_ok_and(|f| f == "mail-started")
                        {
                            let until =
                                std::time::Instant::now() + std::time::Duration::from_secs(10);
                            while !smtp::ACKNOWLEDGED.load(std::sync::atomic::Ordering::SeqCst)
                                && std::time::Instant::now() < until
                            {
                                std::thread::sleep(std::time::Duration::from_millis(5));
                            }
                            std::process::abort();
                        }
                    }
                }
            }
            self.store
                .put(Tree::Mail, key, &serde_json::to_vec(&entry)?)?;
        }
        let contact = entry.contact.clone().unwrap_or_default();
        let steps_before = entry.steps_before.unwrap_or(0);
        let id = String::from_utf8_lossy(&key[3..]).into_owned();

        // The attachments, kept with the contact (idempotent: same keys on a retry).
        let mut batch = Batch::new();
        let mut attachments = Vec::new();
        for (n, part) in mail.attachments.iter().enumerate() {
            let kept = part.bytes.len() <= self.config.max_attachment_bytes;
            if kept {
                batch.put(
                    Tree::Mail,
                    format!("att/{contact}/{id}/{n:03}"),
                    part.bytes.clone(),
                );
            }
            batch.put_json(
                Tree::Mail,
                format!("attinfo/{contact}/{id}/{n:03}"),
                &AttachmentInfo {
                    mail: id.clone(),
                    n: n as u32,
                    name: part.name.clone(),
                    content_type: part.content_type.clone(),
                    size: part.bytes.len() as u64,
                    kept,
                },
            )?;
            attachments.push(Attachment {
                name: part.name.clone(),
                content_type: part.content_type.clone(),
                size: u32::try_from(part.bytes.len()).unwrap_or(u32::MAX),
            });
        }
        if !batch.is_empty() {
            self.store.commit(&batch)?;
        }

        // The mail's step, unless a run before this one got that far.
        let session = rt.contacts().get(&contact)?;
        let mut said = std::mem::take(&mut entry.said);
        let for_agent = format_for_agent(&mail, &attachments);
        if session.steps > steps_before {
            said.extend(said_in_step(rt, &contact, steps_before + 1)?);
        } else if let Status::WithAgent {
            agent: Some(agent), ..
        } = &session.status
        {
            rt.customer_to_agent(&contact, agent, &for_agent)?;
        } else {
            rt.contacts()
                .record_said(&contact, "customer", None, None, &for_agent)?;
            let report = rt.contacts().send(
                &contact,
                Event::Mail(Mail {
                    subject: mail.subject.clone(),
                    from: customer.clone(),
                    from_name: mail.from_name.clone(),
                    text: mail.text.clone(),
                    attachments,
                }),
            )?;
            said.extend(crate::channels::chat::texts(&report.actions));
        }

        // One commit: the thread, the Message-ID, the answer (if any) and the entry's end.
        let mut thread: Thread = self
            .store
            .get_json(Tree::Mail, &format!("thread/{contact}"))?
            .unwrap_or_default();
        if thread.customer.is_empty() {
            thread.customer = customer.clone();
            thread.mailbox = mailbox.clone();
            thread.subject = mail.subject.clone();
        }
        // A robot's mail (an out-of-office, a bounce) joins the contact but not the thread
        // answers follow: an agent answers the customer's last own mail.
        if mail.robot.is_none() || thread.last_message_id.is_none() {
            if mail.from_name.is_some() {
                thread.customer_name = mail.from_name.clone();
            }
            thread.last_text = mail.text.clone();
            thread.references = mail.references.clone();
            if let Some(mid) = &mail.message_id {
                thread.references.push(mid.clone());
                thread.last_message_id = Some(mid.clone());
            }
        }
        let mut batch = Batch::new();
        if let Some(mid) = &mail.message_id {
            // The first contact a Message-ID was seen on keeps it: a later mail reusing the id
            // (a copy, or a forgery) does not move another customer's thread.
            let key = format!("msgid/{mid}");
            if self.store.get(Tree::Mail, key.as_bytes())?.is_none() {
                batch.put_json(Tree::Mail, key, &contact)?;
            }
        }
        if !said.is_empty() {
            match refusal(&mail, &customer) {
                Some(why) => {
                    self.counters.suppressed(why);
                    tracing::info!(contact, why, "no automatic answer to this mail");
                }
                None => {
                    if let Some(mail) = self.auto_reply(&contact, &thread, &said, &mut batch)? {
                        tracing::info!(contact, to = %mail.to, "an answer is queued");
                    }
                }
            }
        }
        batch.put_json(Tree::Mail, format!("thread/{contact}"), &thread)?;
        batch.delete(Tree::Mail, key.to_vec());
        self.commit_durably(batch)?;
        self.counters.received(&entry.via);
        self.wake(&self.wake_out);
        Ok(())
    }

    /// Starts the contact a new mail opens (its `started` step).
    #[allow(clippy::too_many_arguments)]
    fn start_contact(
        &self,
        rt: &Runtime,
        entry: &mut Received,
        mail: &Incoming,
        customer: &str,
        mailbox: &str,
        earlier: Option<crate::sessions::Session>,
        id: String,
    ) -> anyhow::Result<()> {
        let mut attributes = vec![
            ("email_subject".to_string(), mail.subject.clone()),
            ("email_mail".to_string(), id),
        ];
        // Flows may leave a robot's mail be (the host answers it nothing anyway).
        if let Some(robot) = mail.robot {
            attributes.push(("email_robot".into(), robot.as_str().into()));
        }
        if let Some(old) = earlier {
            attributes.push(("previous_contact".into(), old.id));
        }
        let report = rt.contacts().start(NewContact {
            channel: Some(Channel::Email),
            from: customer.to_string(),
            to: mailbox.to_string(),
            flow: None,
            attributes,
            held: false,
        })?;
        entry.steps_before = Some(report.step);
        entry.said = crate::channels::chat::texts(&report.actions);
        entry.contact = Some(report.contact.clone());
        Ok(())
    }

    fn commit_durably(&self, batch: Batch) -> Result<(), StoreError> {
        self.store.commit(&batch)?;
        self.store.flush()
    }

    /// Stages an automatic answer (`Auto-Submitted: auto-replied`) to the thread's customer,
    /// unless they had `auto_replies_per_hour` of them this hour. Returns the mail staged.
    fn auto_reply(
        &self,
        contact: &str,
        thread: &Thread,
        said: &[String],
        batch: &mut Batch,
    ) -> Result<Option<outbox::Outgoing>, StoreError> {
        let hour = now_ms() / 3_600_000;
        let key = format!("auto/{}/{hour}", thread.customer);
        let raw = self.store.get(Tree::Mail, key.as_bytes())?;
        let sent: u32 = raw
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(0);
        if sent >= self.config.auto_replies_per_hour {
            self.counters.suppressed("rate-limit");
            tracing::warn!(contact, customer = %thread.customer, sent, "no automatic answer: the sender had their automatic answers for this hour (a mail loop?)");
            return Ok(None);
        }
        batch.expect(Tree::Mail, key.clone(), raw.as_deref());
        batch.put_json(Tree::Mail, key, &(sent + 1))?;
        let mail = self.compose(contact, thread, said.join("\n\n"), true)?;
        self.stage(&mail, batch)?;
        Ok(Some(mail))
    }

    /// A reply on the contact's thread.
    fn compose(
        &self,
        contact: &str,
        thread: &Thread,
        text: String,
        auto: bool,
    ) -> Result<outbox::Outgoing, StoreError> {
        let id = self.store.next_id()?;
        let (local, domain) = thread
            .mailbox
            .rsplit_once('@')
            .unwrap_or((thread.mailbox.as_str(), self.config.domain.as_str()));
        Ok(outbox::Outgoing {
            id: format!("{id:020}"),
            state: outbox::State::Waiting,
            contact: contact.to_string(),
            from: thread.mailbox.clone(),
            reply_to: format!("{local}+{contact}@{domain}"),
            to: thread.customer.clone(),
            subject: parse::reply_subject(&thread.subject),
            text,
            message_id: format!("{contact}.{id}@{}", self.config.domain),
            in_reply_to: thread.last_message_id.clone(),
            references: thread.references.clone(),
            auto,
            attempts: 0,
            next_ms: 0,
            last_error: None,
            sent_ms: None,
        })
    }

    fn stage(&self, mail: &outbox::Outgoing, batch: &mut Batch) -> Result<(), StoreError> {
        mail.stage(batch)?;
        batch.put_json(
            Tree::Mail,
            format!("msgid/{}", mail.message_id),
            &mail.contact,
        )?;
        Ok(())
    }

    /// What a flow said outside a mail's step (task news) goes to the customer as an
    /// automatic answer on the thread.
    fn flow_said(&self, contact: &str, said: &[String]) -> anyhow::Result<()> {
        let Some(thread) = self
            .store
            .get_json::<Thread>(Tree::Mail, &format!("thread/{contact}"))?
        else {
            return Ok(());
        };
        let mut batch = Batch::new();
        self.auto_reply(contact, &thread, said, &mut batch)?;
        self.commit_durably(batch)?;
        self.wake(&self.wake_out);
        Ok(())
    }

    /// An agent's answer: queued on the contact's thread with the customer's last mail
    /// quoted. Returns the mail queued.
    pub fn agent_reply(&self, contact: &str, text: &str) -> anyhow::Result<outbox::Outgoing> {
        let thread = self
            .store
            .get_json::<Thread>(Tree::Mail, &format!("thread/{contact}"))?
            .ok_or_else(|| anyhow::anyhow!("contact {contact} has no e-mail thread"))?;
        let who = thread
            .customer_name
            .clone()
            .unwrap_or_else(|| thread.customer.clone());
        let mut body = text.trim_end().to_string();
        if !thread.last_text.is_empty() {
            body.push_str("\n\n");
            body.push_str(&parse::quote(&thread.last_text, &who));
        }
        let mail = self.compose(contact, &thread, body, false)?;
        let mut batch = Batch::new();
        self.stage(&mail, &mut batch)?;
        self.commit_durably(batch)?;
        self.wake(&self.wake_out);
        Ok(mail)
    }

    /// The mail of a contact, oldest first: sent (and when), refused for good, or waiting
    /// in the outbox (with the last error).
    pub fn of_contact(&self, contact: &str) -> Result<Vec<outbox::Outgoing>, StoreError> {
        let mut all: Vec<outbox::Outgoing> = self
            .store
            .scan_json(Tree::Mail, &format!("sent/{contact}/"))?;
        all.extend(
            self.store
                .scan_json::<outbox::Outgoing>(Tree::Mail, &format!("failed/{contact}/"))?,
        );
        for (_, key) in self
            .store
            .scan_prefix(Tree::Mail, format!("waiting/{contact}/").as_bytes())?
        {
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(mail) = self.store.get_json::<outbox::Outgoing>(Tree::Mail, &key)? {
                all.push(mail);
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }
}

/// An attachment kept with a contact (`attinfo/CONTACT/MAIL/N`; its bytes under `att/`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentInfo {
    /// The mail it came with (the id of its accepted entry).
    pub mail: String,
    /// Its place in the mail, from 0.
    pub n: u32,
    /// The file name.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether its bytes were kept (no larger than `email.max_attachment_bytes`).
    pub kept: bool,
}

impl Mailroom {
    /// The attachments of a contact's mails, in order.
    pub fn attachments(&self, contact: &str) -> Result<Vec<AttachmentInfo>, StoreError> {
        self.store
            .scan_json(Tree::Mail, &format!("attinfo/{contact}/"))
    }

    /// One attachment and its bytes, when kept.
    pub fn attachment(
        &self,
        contact: &str,
        mail: &str,
        n: u32,
    ) -> Result<Option<(AttachmentInfo, Vec<u8>)>, StoreError> {
        if mail.is_empty() || !mail.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let Some(info) = self
            .store
            .get_json::<AttachmentInfo>(Tree::Mail, &format!("attinfo/{contact}/{mail}/{n:03}"))?
        else {
            return Ok(None);
        };
        let bytes = self.store.get(
            Tree::Mail,
            format!("att/{contact}/{mail}/{n:03}").as_bytes(),
        )?;
        Ok(bytes.map(|b| (info, b)))
    }
}

/// Whether this node hands accepted mail over and sends the outbox: on its own, always; in a
/// cluster, only while it leads (any node accepts mail into the shared store, one handles it,
/// so a mail is not handed over or sent twice).
pub fn leads(rt: &Runtime) -> bool {
    rt.membership().is_none_or(|m| m.fence().is_some())
}

/// What the flow of `contact` said in step `n`, as recorded in its trace.
fn said_in_step(rt: &Runtime, contact: &str, n: u32) -> anyhow::Result<Vec<String>> {
    Ok(rt
        .contacts()
        .trace(contact)?
        .iter()
        .find(|s| s.step == n)
        .map(|s| crate::channels::chat::texts(&s.actions))
        .unwrap_or_default())
}

/// Seconds to wait after `attempts` failures: 1, 2, 4... up to `max`.
fn backoff_secs(attempts: u32, max: u64) -> u64 {
    (1u64 << attempts.saturating_sub(1).min(20)).min(max)
}

/// Why a mail gets no automatic answer, if it gets none.
fn refusal(mail: &Incoming, customer: &str) -> Option<&'static str> {
    if let Some(robot) = mail.robot {
        return Some(robot.as_str());
    }
    let local = customer.split('@').next().unwrap_or_default();
    if customer.is_empty()
        || [
            "mailer-daemon",
            "postmaster",
            "noreply",
            "no-reply",
            "donotreply",
        ]
        .iter()
        .any(|r| local.eq_ignore_ascii_case(r))
    {
        return Some(Robot::Bounce.as_str());
    }
    None
}

/// A mail as an agent reads it in the conversation.
fn format_for_agent(mail: &Incoming, attachments: &[Attachment]) -> String {
    let mut text = String::new();
    if !mail.subject.is_empty() {
        text.push_str(&format!("Subject: {}\n\n", mail.subject));
    }
    text.push_str(&mail.text);
    if !attachments.is_empty() {
        let names: Vec<_> = attachments.iter().map(|a| a.name.as_str()).collect();
        text.push_str(&format!("\n\n[attached: {}]", names.join(", ")));
    }
    text
}

type Labels = Vec<(String, String)>;

/// The channel's counters, registered with the node's metrics when the channel starts.
#[derive(Default)]
pub struct Counters {
    received: prometheus_client::metrics::family::Family<
        Labels,
        prometheus_client::metrics::counter::Counter,
    >,
    suppressed: prometheus_client::metrics::family::Family<
        Labels,
        prometheus_client::metrics::counter::Counter,
    >,
    sent: prometheus_client::metrics::counter::Counter,
    send_failures: prometheus_client::metrics::counter::Counter,
}

impl Counters {
    fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(
            "switchboard_email_received",
            "Mails handed to their contacts, by how they came (smtp, webhook)",
            self.received.clone(),
        );
        metrics.register(
            "switchboard_email_answers_suppressed",
            "Automatic answers not sent: to robots, bounces and lists, or over the hourly limit",
            self.suppressed.clone(),
        );
        metrics.register(
            "switchboard_email_sent",
            "Mails the relay accepted",
            self.sent.clone(),
        );
        metrics.register(
            "switchboard_email_send_failures",
            "Attempts to hand a mail to the relay that failed (each is retried)",
            self.send_failures.clone(),
        );
    }

    fn received(&self, via: &str) {
        self.received
            .get_or_create(&crate::metrics::labels(&[("via", via)]))
            .inc();
    }

    fn suppressed(&self, why: &str) {
        self.suppressed
            .get_or_create(&crate::metrics::labels(&[("reason", why)]))
            .inc();
    }
}
