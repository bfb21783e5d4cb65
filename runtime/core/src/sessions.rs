//! Contact sessions: one per contact, pinned to the flow version it started on, carrying the
//! flow's opaque state between events. Owns running a contact's steps in order, applying
//! their actions to the session, the fallback when a step faults, and the per-step trace.
//! One step is one atomic commit (the session guarded by what was read, its trace, kv writes,
//! the version's health, a new task, the news it consumed), durable before its result is
//! returned. Task news waits in the contact's inbox until a step hears it: exactly once, in
//! order, across crashes ([`Sessions::deliver_news`]). Never decides which version is live,
//! and never talks to a channel: channels read step reports.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::FallbackConfig;
use crate::contract::{Action, Channel, Contact, Enqueue, Event, Gather, Say};
use crate::engine::{Engine, Fault, HostCall, Services, StepTarget};
use crate::flows::{Flows, FlowsError};
use crate::metrics::Metrics;
use crate::router::{NewTask, Outcome, PreparedTask, Router, RouterError, Settled};
use crate::store::{Batch, Pair, Scan, Store, StoreError, StoreExt, Tree, keys};

/// Set in [`Tree::Meta`] once the contact indexes cover every stored session.
const CONTACTS_INDEXED: &[u8] = b"contacts-indexed";
/// Sessions read at most to answer one listing of recent contacts.
const MAX_LISTING_SCAN: usize = 20_000;
/// Contacts with news served by one pass of the dispatcher; the rest wait for the next.
const MAX_NEWS_CONTACTS: usize = 1_000;

/// Where a contact stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Status {
    /// The flow is talking with the customer.
    Active,
    /// Waiting in a queue for an agent.
    Queued {
        /// The queue.
        queue: String,
        /// Its priority.
        priority: i32,
    },
    /// Talking with an agent.
    WithAgent {
        /// The queue the task came through.
        queue: String,
        /// The agent.
        agent: Option<String>,
    },
    /// Over.
    Ended {
        /// `hangup`, `end`, `transferred`, `customer-hangup`, `finished`.
        reason: String,
    },
}

/// What the session waits for next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Awaiting {
    /// The answer to this gather.
    Input(Gather),
    /// A text message.
    Message,
}

/// A contact's session, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    /// Contact id.
    pub id: String,
    /// Channel.
    pub channel: Channel,
    /// Customer address.
    pub from: String,
    /// Address reached.
    pub to: String,
    /// Attributes, keys unique.
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
    /// The flow.
    pub flow: String,
    /// The version it is pinned to.
    pub version: u64,
    /// The flow's state after the last step.
    #[serde(with = "base64_bytes")]
    #[schema(value_type = String, content_encoding = "base64")]
    pub state: Vec<u8>,
    /// Where it stands.
    pub status: Status,
    /// What it waits for.
    pub awaiting: Option<Awaiting>,
    /// Steps run.
    pub steps: u32,
    /// Steps that faulted.
    pub faults: u32,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last step.
    pub updated_at: String,
    /// The node the contact started on, in a cluster: it holds the contact's live channel
    /// (a SIP call, a chat socket) and hears its news first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The task made the last time the contact entered a queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

impl Session {
    fn contact(&self) -> Contact {
        Contact {
            id: self.id.clone(),
            channel: self.channel,
            from: self.from.clone(),
            to: self.to.clone(),
            attributes: self.attributes.clone(),
        }
    }

    fn set_attribute(&mut self, key: &str, value: &str) {
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.attributes.push((key.to_string(), value.to_string())),
        }
    }

    /// Applies a step's actions: attributes, queueing, the end of the flow, what to await.
    /// Applies a task outcome before the flow's step: the contact is with an agent, or back
    /// with the flow (which decides what follows: a survey, a callback offer, goodbye).
    fn hear(&mut self, event: &Event) {
        if let Event::TaskOutcome {
            queue,
            status,
            agent,
        } = event
        {
            self.status = match status {
                crate::contract::TaskStatus::Assigned => Status::WithAgent {
                    queue: queue.clone(),
                    agent: agent.clone(),
                },
                _ => Status::Active,
            };
        }
    }

    fn apply(&mut self, actions: &[Action]) {
        self.awaiting = None;
        for action in actions {
            if matches!(self.status, Status::Ended { .. }) {
                break;
            }
            match action {
                Action::SetAttribute { key, value } => self.set_attribute(key, value),
                Action::Gather(g) => self.awaiting = Some(Awaiting::Input(g.clone())),
                Action::Enqueue(e) => {
                    self.status = Status::Queued {
                        queue: e.queue.clone(),
                        priority: e.priority,
                    }
                }
                Action::Transfer { .. } => self.end("transferred"),
                Action::Callback { .. } => self.end("callback"),
                Action::Hangup => self.end("hangup"),
                Action::End => self.end("end"),
                Action::Say(_) | Action::Play { .. } | Action::Send { .. } => {}
            }
        }
        if self.status == Status::Active && self.awaiting.is_none() {
            if self.channel.is_text() {
                self.awaiting = Some(Awaiting::Message);
            } else {
                // A call with nothing more to play or collect is over, as in TwiML.
                self.end("finished");
            }
        }
    }

    fn end(&mut self, reason: &str) {
        self.status = Status::Ended {
            reason: reason.to_string(),
        };
        self.awaiting = None;
    }
}

/// One message between a contact's customer and an agent, as kept with the contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Said {
    /// When (RFC 3339).
    pub at: String,
    /// `customer` or `agent`.
    pub from: String,
    /// The agent who wrote it, or who held the conversation when the customer did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The task of the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The text.
    pub text: String,
}

/// One step of a contact, as recorded: everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceEntry {
    /// Step number, from 1.
    pub step: u32,
    /// RFC 3339 time.
    pub at: String,
    /// The version that ran it.
    pub version: u64,
    /// The contact's attributes when the step started.
    #[serde(default)]
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
    /// The event.
    pub event: Event,
    /// The actions carried out (the fallback's when the step faulted).
    pub actions: Vec<Action>,
    /// Why the flow's own actions were not used.
    pub fault: Option<Fault>,
    /// Host calls and their results.
    pub host_calls: Vec<HostCall>,
    /// The state after the step.
    #[serde(with = "base64_bytes")]
    #[schema(value_type = String, content_encoding = "base64")]
    pub state: Vec<u8>,
    /// Microseconds the step took in the engine.
    pub elapsed_us: u64,
}

/// The result of a step, as channels and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepReport {
    /// Contact id.
    pub contact: String,
    /// The flow.
    pub flow: String,
    /// The version that ran the step.
    pub version: u64,
    /// Step number.
    pub step: u32,
    /// What to do.
    pub actions: Vec<Action>,
    /// Where the contact stands now.
    pub status: Status,
    /// What it waits for.
    pub awaiting: Option<Awaiting>,
    /// Set when the flow faulted and the fallback ran.
    pub fault: Option<Fault>,
}

/// A new contact.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewContact {
    /// Channel; guessed from `to` when absent.
    pub channel: Option<Channel>,
    /// Customer address.
    pub from: String,
    /// Address reached; selects the flow through its entry point.
    pub to: String,
    /// Run this flow instead of the entry point's.
    pub flow: Option<String>,
    /// Extra attributes.
    #[serde(default)]
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
    /// Whether a connection on this node carries the contact (a SIP call, a chat
    /// WebSocket). In a cluster such a contact is this node's: it hears the contact's task
    /// news, and the contact ends (`node-lost`) if the node is lost. Contacts driven by
    /// requests (the HTTP API, Twilio's webhooks) belong to no node: any node serves them.
    #[serde(skip)]
    pub held: bool,
}

/// Why an event could not be handled. The session is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// No flow for the address.
    #[error(
        "no flow answers {0:?}: bind it with `switchboard bind {0} --flow NAME` or pass a flow"
    )]
    NoFlow(String),
    /// No such contact.
    #[error("there is no contact {0:?}")]
    UnknownContact(String),
    /// The contact is over.
    #[error("contact {0:?} has ended; start a new contact")]
    Ended(String),
    /// An event that makes no sense.
    #[error("{0}")]
    BadEvent(String),
    /// A flow problem.
    #[error(transparent)]
    Flows(#[from] FlowsError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task router refused the contact's task.
    #[error("routing failed: {0}")]
    Routing(String),
}

/// Runs contacts' steps.
pub struct Sessions {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    flows: Arc<Flows>,
    services: Arc<Services>,
    fallback: FallbackConfig,
    metrics: Arc<Metrics>,
    router: Arc<Router>,
    /// Steps of one contact run one at a time; contacts hash onto these stripes.
    stripes: Vec<Mutex<()>>,
    /// Where the reports of the steps the news dispatcher ran go: one unbounded queue per
    /// channel that renders them, so a busy channel falls behind but loses none.
    subscribers: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<StepReport>>>,
    /// Test-only: `SWITCHBOARD_FAILPOINT=hold-news` keeps news in the inbox undelivered, so a
    /// test can kill the server between a router change and the step that hears it.
    hold_news: bool,
    /// In a cluster: this node, and which contacts' news it hears (by the node that owns
    /// each contact).
    cluster: std::sync::OnceLock<Cluster>,
}

/// Whether this node hears the news of a contact held by the given node (`None`: held by
/// none).
pub type Hears = Box<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// A node's part in hearing news, in a cluster.
struct Cluster {
    node: String,
    hears: Hears,
}

/// What a step's commit checks besides its session's step count.
enum Guard<'a> {
    /// Nothing else.
    None,
    /// The news item the step hears: it must still be in the inbox, and goes with the step.
    News(&'a Pair),
    /// A record that must be as given (a lost node's tombstone).
    Unchanged(Tree, &'a Pair),
}

/// Why a contact ended whose call went with its node ([`Sessions::end_lost`]): its task is
/// canceled, not wrapped up.
pub const NODE_LOST: &str = "node-lost";

/// For how long a step refused because another node stepped the contact first is read back
/// and run again, after a short random pause that grows with each try up to 5 ms (so two
/// nodes that keep colliding on one busy contact fall out of step rather than lose in turn).
/// Bounded by time, not by a count of tries: a node whose events queue up on one contact
/// can win many times in a row while the other node waits, and that is not a failure. The
/// contact's stripe stays held meanwhile (its events on this node keep their order), so
/// other contacts of the stripe wait too: the bound is short.
const STEP_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Sessions {
    /// Sessions kept in `store`, run by `engine`.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        flows: Arc<Flows>,
        services: Arc<Services>,
        fallback: FallbackConfig,
        metrics: Arc<Metrics>,
        router: Arc<Router>,
    ) -> Sessions {
        Sessions {
            store,
            engine,
            flows,
            services,
            fallback,
            metrics,
            router,
            stripes: (0..256).map(|_| Mutex::new(())).collect(),
            subscribers: Mutex::new(Vec::new()),
            hold_news: {
                let hold = std::env::var("SWITCHBOARD_FAILPOINT").is_ok_and(|f| f == "hold-news");
                if hold {
                    tracing::warn!(
                        "SWITCHBOARD_FAILPOINT=hold-news: task news is NOT delivered to flows (a test setting; unset it)"
                    );
                }
                hold
            },
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// In a cluster: contacts started here are this node's (`node`), and this node hears
    /// the news of the contacts whose owner `hears` accepts (its own; a leader also those of
    /// lost nodes and of nobody).
    pub fn join_cluster(&self, node: String, hears: Hears) {
        let _ = self.cluster.set(Cluster { node, hears });
    }

    fn stripe(&self, id: &str) -> std::sync::MutexGuard<'_, ()> {
        let hash = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        self.stripes[hash as usize % self.stripes.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an entry point is bound to `address`.
    pub fn answers(&self, address: &str) -> Result<bool, FlowsError> {
        Ok(self.flows.entry_point(address)?.is_some())
    }

    /// Starts a contact on the live version of its flow and runs its `started` step.
    pub fn start(&self, new: NewContact) -> Result<StepReport, ContactError> {
        let new_held = new.held;
        // A contact that names its flow takes nothing from the entry point: not read.
        let (flow, mut attributes) = match &new.flow {
            Some(flow) => (flow.clone(), Vec::new()),
            None => match self.flows.entry_point(&new.to)? {
                Some(entry) => (entry.flow, entry.attributes),
                None => return Err(ContactError::NoFlow(new.to.clone())),
            },
        };
        for (k, v) in new.attributes {
            attributes.retain(|(key, _)| *key != k);
            attributes.push((k, v));
        }
        let arrival = crate::flows::Arrival {
            from: &new.from,
            to: &new.to,
            attributes: &attributes,
        };
        let version = self.flows.version_for(&flow, &arrival)?;
        let now = chrono::Utc::now().to_rfc3339();
        let mut session = Session {
            id: uuid::Uuid::new_v4().to_string(),
            channel: new
                .channel
                .unwrap_or_else(|| crate::flows::channel_of(&new.to)),
            from: new.from,
            to: new.to,
            attributes,
            flow,
            version,
            state: Vec::new(),
            status: Status::Active,
            awaiting: None,
            steps: 0,
            faults: 0,
            created_at: now.clone(),
            updated_at: now,
            node: self
                .cluster
                .get()
                .filter(|_| new_held)
                .map(|c| c.node.clone()),
            task: None,
        };
        let _turn = self.stripe(&session.id);
        self.metrics.contact_started();
        self.flows.pin(&session.flow, session.version);
        let report = self.run(
            &mut session,
            None,
            Event::Started,
            Guard::None,
            "customer-hangup",
        );
        if report.is_err() {
            self.flows.unpin(&session.flow, session.version);
        }
        report
    }

    /// Sends an event to a contact and runs the step on its pinned version.
    pub fn send(&self, id: &str, event: Event) -> Result<StepReport, ContactError> {
        if event == Event::Started {
            return Err(ContactError::BadEvent("`started` is sent by Switchboard when a contact starts; send input, no-input, message, task-outcome or hangup".into()));
        }
        let _turn = self.stripe(id);
        // Set at the first conflict: the step that commits the first time reads no clock.
        let mut retry_until: Option<std::time::Instant> = None;
        let mut attempt: u64 = 1;
        loop {
            let (mut session, stored) = self.load(id)?;
            if matches!(session.status, Status::Ended { .. }) {
                return Err(ContactError::Ended(id.to_string()));
            }
            match self.run(
                &mut session,
                Some(&stored),
                event.clone(),
                Guard::None,
                "customer-hangup",
            ) {
                // Another node stepped this contact first: run the step again on what it
                // left (host calls are reads, so the step may run twice).
                Err(ContactError::Store(StoreError::Conflict { .. }))
                    if std::time::Instant::now()
                        < *retry_until
                            .get_or_insert_with(|| std::time::Instant::now() + STEP_RETRY_FOR) =>
                {
                    std::thread::sleep(std::time::Duration::from_micros(rand::random_range(
                        0..=500 * attempt.min(10),
                    )));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Ends a contact whose call was lost with its node (`node-lost`): its flow hears the
    /// hang-up and its task is canceled. `None` when it had already ended.
    /// The step commits only while `unchanged` (a record of [`Tree::Meta`]: the lost node's
    /// tombstone, [`crate::cluster::Membership::let_go`]) is as given, so a node that came
    /// back meanwhile keeps the calls it still holds. A conflict means: look again.
    pub fn end_lost(&self, id: &str, unchanged: &Pair) -> Result<Option<StepReport>, ContactError> {
        let _turn = self.stripe(id);
        let (mut session, stored) = self.load(id)?;
        if matches!(session.status, Status::Ended { .. }) {
            return Ok(None);
        }
        let guard = Guard::Unchanged(Tree::Meta, unchanged);
        self.run(&mut session, Some(&stored), Event::Hangup, guard, NODE_LOST)
            .map(Some)
    }

    /// Live contacts held by `node` (see [`NewContact::held`]) on `channel`.
    pub fn live_contacts_of(
        &self,
        node: &str,
        channel: Channel,
    ) -> Result<Vec<String>, ContactError> {
        let mut found = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let mut scan = Scan::prefix(b"", 1024);
            if let Some(c) = &cursor {
                scan = scan.after(c);
            }
            let page = self.store.scan(Tree::LiveContacts, &scan)?;
            let Some((last, _)) = page.last() else {
                return Ok(found);
            };
            cursor = Some(last.clone());
            for (key, _) in page {
                let id = String::from_utf8_lossy(&key).into_owned();
                if let Ok((session, _)) = self.load(&id)
                    && session.node.as_deref() == Some(node)
                    && session.channel == channel
                    && !matches!(session.status, Status::Ended { .. })
                {
                    found.push(id);
                }
            }
        }
    }

    /// One pass of the news dispatcher: every contact with news in its inbox hears it, oldest
    /// first, each item in the step that consumes it (so exactly once, also across a crash).
    /// Publishes the reports of those steps to subscribers ([`Sessions::subscribe`]) and
    /// returns them. Safe to run from
    /// several threads at once: a contact's steps take turns, and consumed news is gone.
    pub fn deliver_news(&self) -> Result<Vec<StepReport>, ContactError> {
        if self.hold_news {
            return Ok(Vec::new());
        }
        let mut contacts: Vec<String> = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        while contacts.len() < MAX_NEWS_CONTACTS {
            let mut scan = Scan::prefix(b"", 256);
            if let Some(c) = &cursor {
                scan = scan.after(c);
            }
            let page = self.store.scan(Tree::Inbox, &scan)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (key, _) in &page {
                if let Some(contact) = keys::inbox_contact(key)
                    && contacts.last().is_none_or(|c| c != contact)
                {
                    contacts.push(contact.to_string());
                }
            }
            // Past the last contact's news, however much of it there is: a contact with a
            // long inbox does not fill the pass.
            if let Some(contact) = contacts.last() {
                let mut past = keys::of_contact(contact).into_bytes();
                past.push(0xff);
                cursor = Some(past);
            }
        }
        let mut reports = Vec::new();
        for contact in contacts {
            match self.deliver_news_of(&contact) {
                Ok(mut heard) => reports.append(&mut heard),
                Err(e) => {
                    tracing::error!(contact, error = %e, "cannot tell the flow about its task; will try again")
                }
            }
        }
        if !reports.is_empty() {
            // Nobody subscribed (no channel running) is fine: the steps are stored.
            let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subscribers.retain(|channel| {
                reports
                    .iter()
                    .all(|report| channel.send(report.clone()).is_ok())
            });
        }
        Ok(reports)
    }

    /// The reports of every step the news dispatcher runs from now on: what channels render
    /// for steps they did not ask for.
    pub fn subscribe(&self) -> tokio::sync::mpsc::UnboundedReceiver<StepReport> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Runs one step per item of news waiting for `contact`, in order.
    fn deliver_news_of(&self, contact: &str) -> Result<Vec<StepReport>, ContactError> {
        let _turn = self.stripe(contact);
        let prefix = keys::of_contact(contact);
        let mut reports = Vec::new();
        loop {
            let Some(item) = self
                .store
                .scan(Tree::Inbox, &Scan::prefix(prefix.as_bytes(), 1))?
                .pop()
            else {
                return Ok(reports);
            };
            let outcome = crate::store::decode::<Outcome>(Tree::Inbox, &item.0, &item.1);
            let loaded = self.load(contact);
            if let (Some(cluster), Ok((session, _))) = (self.cluster.get(), &loaded)
                && !(cluster.hears)(session.node.as_deref())
            {
                // Another node holds this contact's channel and hears its news.
                return Ok(reports);
            }
            let (outcome, (mut session, stored)) = match (outcome, loaded) {
                (Ok(outcome), Ok(loaded)) if !matches!(loaded.0.status, Status::Ended { .. }) => {
                    (outcome, loaded)
                }
                (outcome, loaded) => {
                    // Nobody left to hear it (the contact ended, or is unknown), or it cannot
                    // be read: drop it, once, and say so.
                    match (&outcome, &loaded) {
                        (Err(e), _) => {
                            tracing::error!(contact, error = %e, "dropping unreadable news")
                        }
                        (_, Err(e)) => {
                            tracing::warn!(contact, error = %e, "dropping news for a contact that is gone")
                        }
                        _ => tracing::debug!(contact, "news for an ended contact dropped"),
                    }
                    let mut batch = Batch::new();
                    batch.expect(Tree::Inbox, item.0.clone(), Some(&item.1));
                    batch.delete(Tree::Inbox, item.0.clone());
                    self.store.commit(&batch)?;
                    continue;
                }
            };
            let event = outcome.event();
            match self.run(
                &mut session,
                Some(&stored),
                event,
                Guard::News(&item),
                "customer-hangup",
            ) {
                Ok(report) => reports.push(report),
                Err(e) => {
                    // Steps already committed keep their reports; this item stays in the
                    // inbox for the next pass.
                    tracing::error!(contact, error = %e, "cannot tell the flow about its task; will try again");
                    return Ok(reports);
                }
            }
        }
    }

    /// Pins the versions of every contact still in progress (after a restart), so their
    /// versions stay loaded until they end. Reads the live-contact index, never every
    /// session (the index is built once for a store written before it existed).
    pub fn restore_pins(&self) -> Result<usize, ContactError> {
        self.index_contacts_once()?;
        let mut n = 0;
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let mut scan = Scan::prefix(b"", 4096);
            if let Some(c) = &cursor {
                scan = scan.after(c);
            }
            let page = self.store.scan(Tree::LiveContacts, &scan)?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            cursor = Some(last.clone());
            for (_, pin) in &page {
                let pin = String::from_utf8_lossy(pin);
                if let Some((flow, version)) = pin.rsplit_once('/')
                    && let Ok(version) = version.parse()
                {
                    self.flows.pin(flow, version);
                    n += 1;
                }
            }
        }
    }

    /// Settles the open tasks of contacts that ended with their task left open (the router
    /// could not settle it in the contact's last step, or the step was stored by an older
    /// Switchboard that settled tasks after the step): canceled, or kept as the callback the
    /// flow asked for. Run at start-up.
    pub fn settle_ended_contacts(&self) -> Result<usize, ContactError> {
        let mut settled = 0;
        for (_, contact) in self.router.open_tasks_of_contacts() {
            let session = match self.get(&contact) {
                Ok(session) => session,
                Err(ContactError::UnknownContact(_)) => continue,
                Err(e) => return Err(e),
            };
            if !matches!(session.status, Status::Ended { .. }) {
                continue;
            }
            let last_actions = self
                .trace(&contact)?
                .pop()
                .map(|step| step.actions)
                .unwrap_or_default();
            self.settle_task(&session, &last_actions, false)?;
            settled += 1;
        }
        if settled > 0 {
            tracing::info!(
                settled,
                "settled the tasks of contacts that ended before a crash"
            );
        }
        Ok(settled)
    }

    /// Builds the contact indexes from the sessions themselves, once per store.
    fn index_contacts_once(&self) -> Result<(), ContactError> {
        if self.store.get(Tree::Meta, CONTACTS_INDEXED)?.is_some() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for (key, bytes) in self.store.scan_prefix(Tree::Sessions, b"")? {
            let Ok(session) = serde_json::from_slice::<Session>(&bytes) else {
                tracing::warn!(contact = %String::from_utf8_lossy(&key), "an unreadable session is left out of the contact index");
                continue;
            };
            index_contact(&mut batch, &session, true);
        }
        batch.put(Tree::Meta, CONTACTS_INDEXED, b"1".to_vec());
        self.store.commit(&batch)?;
        Ok(())
    }

    /// A contact's session.
    pub fn get(&self, id: &str) -> Result<Session, ContactError> {
        Ok(self.load(id)?.0)
    }

    /// A contact's session and its stored bytes (what its next commit expects to replace).
    fn load(&self, id: &str) -> Result<(Session, Vec<u8>), ContactError> {
        let bytes = self
            .store
            .get(Tree::Sessions, id.as_bytes())?
            .ok_or_else(|| ContactError::UnknownContact(id.to_string()))?;
        let session = crate::store::decode(Tree::Sessions, id.as_bytes(), &bytes)?;
        Ok((session, bytes))
    }

    /// The `n` most recently started contacts that `keep` accepts, newest first. Reads the
    /// start-time index newest first and stops after `n` matches (or after reading
    /// `MAX_LISTING_SCAN` sessions for a filter that rarely matches).
    pub fn recent(
        &self,
        n: usize,
        keep: impl Fn(&Session) -> bool,
    ) -> Result<Vec<Session>, ContactError> {
        let mut sessions = Vec::new();
        let mut read = 0;
        let mut cursor: Option<Vec<u8>> = None;
        while sessions.len() < n && read < MAX_LISTING_SCAN {
            let mut scan = Scan::prefix(b"", 256).reversed();
            if let Some(c) = &cursor {
                scan = scan.after(c);
            }
            let page = self.store.scan(Tree::ContactsByStart, &scan)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (_, id) in page {
                read += 1;
                let id = String::from_utf8_lossy(&id).into_owned();
                match self.get(&id) {
                    Ok(session) if keep(&session) => sessions.push(session),
                    Ok(_) | Err(ContactError::UnknownContact(_)) => {}
                    Err(e) => return Err(e),
                }
                if sessions.len() == n {
                    break;
                }
            }
        }
        Ok(sessions)
    }

    /// Keeps a message of a contact's conversation with an agent, durably, before it is
    /// delivered: what the other side reads is in the transcript.
    pub fn record_said(
        &self,
        id: &str,
        from: &str,
        agent: Option<&str>,
        task: Option<&str>,
        text: &str,
    ) -> Result<Said, ContactError> {
        let said = Said {
            at: chrono::Utc::now().to_rfc3339(),
            from: from.to_string(),
            agent: agent.map(str::to_string),
            task: task.map(str::to_string),
            text: text.to_string(),
        };
        let mut batch = Batch::new();
        batch.put_json(
            Tree::Transcripts,
            keys::transcript(id, self.store.next_id()?),
            &said,
        )?;
        self.store.commit(&batch)?;
        self.store.flush()?;
        Ok(said)
    }

    /// A contact's conversation with agents, in the order it was said.
    pub fn transcript(&self, id: &str) -> Result<Vec<Said>, ContactError> {
        self.get(id)?;
        Ok(self
            .store
            .scan_json(Tree::Transcripts, &keys::of_contact(id))?)
    }

    /// A contact's recorded steps, in order.
    pub fn trace(&self, id: &str) -> Result<Vec<TraceEntry>, ContactError> {
        let session = self.get(id)?;
        let mut trace: Vec<TraceEntry> =
            self.store.scan_json(Tree::Traces, &keys::of_contact(id))?;
        // A step whose commit a crash cut short may have left its trace entry (written
        // ahead of the step's atomic writes): it did not happen.
        trace.retain(|step| step.step <= session.steps);
        Ok(trace)
    }

    /// Runs one step and commits everything it changed at once: `stored` is the session as
    /// read (`None` for a new contact), `consumed` the inbox item the step hears.
    fn run(
        &self,
        session: &mut Session,
        stored: Option<&[u8]>,
        event: Event,
        guard: Guard<'_>,
        hangup_reason: &str,
    ) -> Result<StepReport, ContactError> {
        let component = self.flows.component(&session.flow, session.version)?;
        let flow: Arc<str> = session.flow.as_str().into();
        let target = StepTarget {
            flow: &flow,
            version: session.version,
            component: &component,
        };
        let result = self.engine.step(
            &self.services,
            &target,
            &session.contact(),
            &session.state,
            &event,
        );
        let elapsed = result.elapsed;

        let attributes_before = session.attributes.clone();
        let customer_left = event == Event::Hangup;
        let first_step = event == Event::Started;
        let mut batch = Batch::new();
        batch.expect(Tree::Sessions, session.id.as_bytes(), stored);
        match guard {
            Guard::None => {}
            Guard::News((key, value)) => {
                batch.expect(Tree::Inbox, key.clone(), Some(value));
                batch.delete(Tree::Inbox, key.clone());
            }
            Guard::Unchanged(tree, (key, value)) => {
                batch.expect(tree, key.clone(), Some(value));
            }
        }
        let (actions, fault) = match result.outcome {
            Ok((actions, state)) => {
                crate::engine::host::stage_kv_writes(&mut batch, &session.flow, result.kv_writes);
                session.state = state;
                (actions, None)
            }
            Err(fault) => {
                tracing::warn!(contact = %session.id, flow = %session.flow, version = session.version,
                    fault = %fault, "step faulted; running the fallback");
                session.faults += 1;
                let actions = if customer_left {
                    Vec::new()
                } else {
                    self.fallback_actions(&fault)
                };
                (actions, Some(fault))
            }
        };
        let was_queued = matches!(session.status, Status::Queued { .. });
        if customer_left {
            session.end(hangup_reason);
        } else {
            session.hear(&event);
            session.apply(&actions);
        }
        let new_task = self.prepare_task(session, &actions, was_queued)?;
        if let Some(task) = &new_task {
            task.stage(&mut batch)?;
            session.task = Some(task.task().id.clone());
        }
        session.steps += 1;
        session.updated_at = chrono::Utc::now().to_rfc3339();

        let entry = TraceEntry {
            step: session.steps,
            at: session.updated_at.clone(),
            version: session.version,
            attributes: attributes_before,
            event,
            actions: actions.clone(),
            fault: fault.clone(),
            host_calls: result.host_calls,
            state: session.state.clone(),
            elapsed_us: elapsed.as_micros() as u64,
        };
        batch.put_ahead_json(
            Tree::Traces,
            keys::trace(&session.id, session.steps),
            &entry,
        )?;
        batch.put_json(Tree::Sessions, session.id.as_bytes(), session)?;
        index_contact(&mut batch, session, first_step);
        // A contact that ended with an open task: its task is settled in the step's commit.
        let committed = match self.task_to_settle(session, &actions, was_queued) {
            Some(settle) => self.commit_settling(&batch, session, &settle),
            None => self.store.commit(&batch),
        };
        if let Err(e) = committed {
            self.landed_anyway(session, e)?;
        }
        self.store.flush()?;

        // Counted once it happened: a step refused (another node stepped the contact first)
        // and run again counts once, as it ran once.
        self.metrics
            .step(&session.flow, session.version, elapsed, fault.as_ref());
        let faulted = fault.is_some();
        if let Err(e) = self.flows.record_step(
            &session.flow,
            session.version,
            faulted,
            first_step,
            faulted && session.faults == 1,
        ) {
            tracing::warn!(contact = %session.id, error = %e, "cannot count the step in its version's health");
        }

        // Committed and durable: the step happened, whatever follows. What follows brings
        // memory and the router in line; each part that fails is logged, none skips another,
        // and a restart finishes what a crash here interrupted (`settle_ended_contacts`, the
        // router loading the stored task).
        if let Some(task) = new_task
            && let Err(e) = self.router.admit(task)
        {
            tracing::error!(contact = %session.id, error = %e, "the contact's task is stored but not offered yet; it will be after a restart");
        }
        if matches!(session.status, Status::Ended { .. }) {
            self.flows.unpin(&session.flow, session.version);
        }

        Ok(StepReport {
            contact: session.id.clone(),
            flow: session.flow.clone(),
            version: session.version,
            step: session.steps,
            actions,
            status: session.status.clone(),
            awaiting: session.awaiting.clone(),
            fault,
        })
    }

    /// A step whose commit failed: `Ok` when it landed all the same (the link broke after
    /// the database had committed it, so the session now stored is the one this step wrote),
    /// the commit's error otherwise. A step that landed must go on as one that did (its
    /// task offered, its contact settled), or its contact would wait unseen until a restart.
    fn landed_anyway(&self, session: &Session, error: StoreError) -> Result<(), ContactError> {
        if matches!(error, StoreError::Conflict { .. }) {
            return Err(error.into());
        }
        let id = session.id.as_str();
        // Encoded again only on this rare path: the step does not keep a copy of its bytes.
        let written = crate::store::encode(session)?;
        match self.store.get(Tree::Sessions, id.as_bytes()) {
            Ok(Some(stored)) if stored == written => {
                tracing::warn!(contact = %id, error = %error, "the step's commit was reported failed but it landed; going on");
                // The router read itself back when the commit failed, perhaps before it
                // landed; what it settled of the contact's task is read again.
                self.router.mark_stale();
                Ok(())
            }
            Ok(_) => Err(error.into()),
            Err(read) => {
                // Still unknown: the router reads the store back before its next operation,
                // so a task this step may have written is not left unseen.
                tracing::warn!(contact = %id, error = %read, "cannot tell whether the step's commit landed");
                self.router.mark_stale();
                Err(error.into())
            }
        }
    }

    /// The task of a contact that just entered a queue, checked and planned, to be written in
    /// the step's commit.
    fn prepare_task(
        &self,
        session: &Session,
        actions: &[Action],
        was_queued: bool,
    ) -> Result<Option<PreparedTask>, ContactError> {
        let entered = matches!(session.status, Status::Queued { .. }) && !was_queued;
        if entered
            && let Some(Action::Enqueue(e)) = actions
                .iter()
                .rev()
                .find(|a| matches!(a, Action::Enqueue(_)))
        {
            let mut attributes = serde_json::Map::new();
            for (k, v) in session.attributes.iter().chain(e.attributes.iter()) {
                attributes.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            attributes.insert("from".into(), session.from.clone().into());
            attributes.insert("to".into(), session.to.clone().into());
            let mut new = NewTask {
                queue: e.queue.clone(),
                channel: session.channel,
                priority: e.priority,
                attributes: serde_json::Value::Object(attributes),
                timeout_secs: u64::from(e.timeout_secs),
                contact: Some(session.id.clone()),
            };
            return match self.router.prepare_task(new.clone()) {
                Ok(task) => Ok(Some(task)),
                Err(RouterError::UnknownQueue(queue)) => {
                    // The flow named a queue nobody defined: the contact still reaches a human.
                    tracing::error!(contact = %session.id, flow = %session.flow, queue, "the flow enqueued into an undefined queue; using the fallback queue");
                    new.queue = self.fallback.queue.clone();
                    self.router
                        .prepare_task(new)
                        .map(Some)
                        .map_err(|e| ContactError::Routing(e.to_string()))
                }
                Err(e) => Err(ContactError::Routing(e.to_string())),
            };
        }
        Ok(None)
    }

    /// The open task a contact that ended leaves to settle: canceled, or kept as the
    /// callback its flow asked for.
    fn task_to_settle(
        &self,
        session: &Session,
        actions: &[Action],
        was_queued: bool,
    ) -> Option<ToSettle> {
        let Status::Ended { reason } = &session.status else {
            return None;
        };
        // A contact that waited in a queue has its task named in the session: the router
        // looks for it (on a cluster it may have been made by a step on another node), with
        // no search through every open task.
        let task = match session.task.as_deref() {
            Some(id) if was_queued => id.to_string(),
            _ => self.router.task_of_contact(&session.id)?.id,
        };
        let callback = actions.iter().find_map(|a| match a {
            Action::Callback { number } => Some(number.clone()),
            _ => None,
        });
        Some(ToSettle {
            task,
            callback,
            lost_with_node: reason == NODE_LOST,
        })
    }

    /// Commits a contact's last step with its task settled, in one commit; the step alone
    /// when the task needs nothing (it ended meanwhile: timed out, canceled, in wrap-up) or
    /// cannot be settled now (then it is at the next start, `settle_ended_contacts`).
    fn commit_settling(
        &self,
        batch: &Batch,
        session: &Session,
        settle: &ToSettle,
    ) -> Result<(), StoreError> {
        match self.router.customer_left_with(
            batch,
            &settle.task,
            &session.id,
            settle.callback.as_deref(),
            settle.lost_with_node,
        ) {
            Ok(Settled::Together) => return Ok(()),
            Ok(Settled::Failed(e)) => return Err(e),
            Ok(Settled::Apart) | Err(RouterError::UnknownTask(_) | RouterError::Conflict(_)) => {}
            Err(e) => {
                tracing::error!(contact = %session.id, task = %settle.task, error = %e, "cannot settle the task of a contact that ended; it will be at the next start");
            }
        }
        self.store.commit(batch)
    }

    /// Settles the open task of a contact that ended in an earlier run (see
    /// [`Sessions::settle_ended_contacts`]).
    fn settle_task(
        &self,
        session: &Session,
        actions: &[Action],
        was_queued: bool,
    ) -> Result<(), ContactError> {
        let Some(settle) = self.task_to_settle(session, actions, was_queued) else {
            return Ok(());
        };
        match self.router.customer_left(
            &settle.task,
            &session.id,
            settle.callback.as_deref(),
            settle.lost_with_node,
        ) {
            // Ended meanwhile (timed out, canceled, completed in wrap-up): nothing to settle.
            Ok(_) | Err(RouterError::UnknownTask(_)) | Err(RouterError::Conflict(_)) => Ok(()),
            Err(e) => Err(ContactError::Routing(e.to_string())),
        }
    }

    fn fallback_actions(&self, fault: &Fault) -> Vec<Action> {
        vec![
            Action::Say(Say {
                text: self.fallback.message.clone(),
                voice: None,
                language: None,
            }),
            Action::Enqueue(Enqueue {
                queue: self.fallback.queue.clone(),
                priority: 0,
                attributes: vec![("fallback".into(), fault.kind().into())],
                timeout_secs: 0,
            }),
        ]
    }
}

/// The task a contact that ended leaves open, and what becomes of it.
struct ToSettle {
    task: String,
    callback: Option<String>,
    lost_with_node: bool,
}

/// Keeps the contact indexes in step with a session: listed by start time from its first
/// step, and among the live contacts (with its pinned version) until it ends.
fn index_contact(batch: &mut Batch, session: &Session, first_step: bool) {
    let id = session.id.as_bytes();
    if matches!(session.status, Status::Ended { .. }) {
        batch.delete(Tree::LiveContacts, id);
    } else if first_step {
        batch.put(
            Tree::LiveContacts,
            id,
            format!("{}/{}", session.flow, session.version),
        );
    }
    if first_step {
        let started_us = chrono::DateTime::parse_from_rfc3339(&session.created_at)
            .map(|t| t.timestamp_micros())
            .unwrap_or_default();
        batch.put(
            Tree::ContactsByStart,
            keys::contact_start(started_us, &session.id),
            id,
        );
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
