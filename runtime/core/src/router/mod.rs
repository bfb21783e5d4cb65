//! The task router (ACD): queues with routing plans, agents with capacity and activity, tasks
//! offered to the longest-idle eligible agent as reservations that time out and move on.
//! Owns matching and every task state change; each change is written to the store before the
//! caller is answered (the API flushes). Never runs a flow: what happens to a task of a
//! contact is written to the contact's inbox in the same commit as the change that caused it,
//! and the sessions deliver it to the flow's next step.

mod matching;
pub mod model;
mod persistence;
mod presentation;
pub mod reports;

use matching::*;
use persistence::*;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::RngCore as _;
use serde_json::Value;
use sha2::Digest;

pub use model::{
    AgentRecord, AttemptEnd, Callback, CallbackAttempt, Consult, ConsultStage,
    DEFAULT_SHORT_ABANDON_SECS, Filter, Order, Plan, QueueConfig, QueueStats, Reservation, Target,
    Task, TaskStatus, TransferTo, Workflow,
};
pub use reports::{AgentRow, Interval, QueueRow, ReportQuery, Zone};
pub use switchboard_expression::Expression;

/// Decides a new task's plan (a router component); `None` keeps the queue's own plan.
pub type Planner = Box<dyn Fn(&Task) -> Option<Plan> + Send + Sync>;

use crate::contract::Channel;
use crate::store::{Batch, Scan, Store, StoreError, StoreExt, Tree, keys};

/// Where the workflow is kept (a key no queue name can take).
const WORKFLOW_KEY: &str = "\u{0}workflow";

/// Reservations an agent may let time out in a row before being made `unavailable`.
const MAX_MISSED: u32 = 3;
/// How long finished tasks count in the queue statistics.
const STATS_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Why a router request was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A bad expression, name or value.
    #[error("{0}")]
    Invalid(String),
    /// No such queue.
    #[error("there is no queue {0:?}: define it with PUT /v1/queues/{0}")]
    UnknownQueue(String),
    /// No such agent.
    #[error("there is no agent {0:?}")]
    UnknownAgent(String),
    /// No such task.
    #[error("there is no task {0:?}")]
    UnknownTask(String),
    /// No such reservation (or it expired).
    #[error("there is no open reservation {0:?} (it may have timed out and moved on)")]
    UnknownReservation(String),
    /// Someone else's reservation or task.
    #[error("{0}")]
    NotYours(String),
    /// The task is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a contact's last step and the settling of its task were committed
/// ([`Router::customer_left_with`]).
#[derive(Debug)]
pub enum Settled {
    /// In one commit.
    Together,
    /// The task needed no change (it is in wrap-up already): the step is not committed.
    Apart,
    /// The commit carrying the step failed: refused by one of the step's own checks (another
    /// node stepped the contact first), or the link failed with it under way (it may have
    /// landed).
    Failed(StoreError),
}

/// What happened to a task that came from a contact; its flow hears about it. Stored in the
/// contact's inbox ([`Tree::Inbox`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The contact.
    pub contact: String,
    /// The queue.
    pub queue: String,
    /// What happened.
    pub news: News,
    /// The agent.
    pub agent: Option<String>,
}

/// What a contact's flow is told about its task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "news", rename_all = "kebab-case")]
pub enum News {
    /// `assigned`, `completed`, `timed-out` or `canceled`.
    Status {
        /// The new status.
        status: crate::contract::TaskStatus,
    },
    /// Still waiting.
    Waiting {
        /// Seconds waited.
        waited_secs: u32,
        /// Place in line, from 1.
        position: u32,
    },
}

impl Outcome {
    /// The event the contact's flow hears.
    pub fn event(&self) -> crate::contract::Event {
        match &self.news {
            News::Status { status } => crate::contract::Event::TaskOutcome {
                queue: self.queue.clone(),
                status: *status,
                agent: self.agent.clone(),
            },
            News::Waiting {
                waited_secs,
                position,
            } => crate::contract::Event::QueueWait {
                queue: self.queue.clone(),
                waited_secs: *waited_secs,
                position: *position,
            },
        }
    }
}

impl News {
    /// News of a task's new status.
    pub fn of(status: crate::contract::TaskStatus) -> News {
        News::Status { status }
    }
}

/// A new task.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct NewTask {
    /// Queue.
    pub queue: String,
    /// Channel.
    #[serde(default = "voice")]
    pub channel: Channel,
    /// Higher first.
    #[serde(default)]
    pub priority: i32,
    /// Attributes (a JSON object).
    #[serde(default = "empty_object")]
    pub attributes: Value,
    /// Seconds before giving up; 0 uses the queue's default.
    #[serde(default)]
    pub timeout_secs: u64,
    /// The contact it comes from.
    #[serde(default)]
    pub contact: Option<String>,
}

/// A checked and planned task, not stored yet (see [`Router::prepare_task`]).
#[derive(Clone)]
pub struct PreparedTask {
    task: Task,
    targets: Option<Vec<(Expression, u64)>>,
}

impl PreparedTask {
    /// Adds the task's writes to `batch`.
    pub fn stage(&self, batch: &mut Batch) -> Result<(), StoreError> {
        stage_task(batch, &self.task)?;
        // Its entry in the open-task index means nothing without the task (start-up drops an
        // entry whose task is not there), so it goes ahead: a task created by the router
        // alone is then a single write, with no journal record on sled.
        batch.put_ahead(Tree::OpenTasks, self.task.id.as_bytes(), Vec::new());
        Ok(())
    }

    /// The task as it will be stored.
    pub fn task(&self) -> &Task {
        &self.task
    }
}

fn voice() -> Channel {
    Channel::Voice
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Something an agent's desktop should hear at once: a change to the agent's world.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Notice {
    /// The agent.
    pub agent: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: NoticeKind,
    /// The offer, for `reservation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
    /// The task concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// The new activity, for `activity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Why, when the agent did not do it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an agent's desk is told happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// A new offer.
    Reservation,
    /// An offer withdrawn: the task was moved, canceled, or its customer left.
    Rescinded,
    /// An offer not answered in time.
    TimedOut,
    /// A task the agent held was canceled.
    Canceled,
    /// Its conversation ended (on its channel): wrap-up began.
    Wrapping,
    /// Completed by the channel or the clock (not by the agent, who is answered).
    Completed,
    /// The agent's activity changed (by a supervisor, the router after missed offers, or
    /// the agent).
    Activity,
    /// Another agent consults them about a call they hold (a warm transfer): their phone
    /// rings, their capacity is taken.
    Consulted,
    /// Their transfer of a call to a number failed (the reason says why): the caller is
    /// back with them.
    TransferFailed,
    /// A warm transfer they were consulted on ended: the call is now theirs (the task names
    /// them), or it went back (the reason says why).
    ConsultOver,
}

/// The task router.
pub struct Router {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    notices: tokio::sync::broadcast::Sender<Notice>,
    planner: std::sync::RwLock<Option<Planner>>,
    workflow: std::sync::RwLock<(Workflow, Vec<Expression>)>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Set on a store other nodes write too: every change checks and bumps the router's
    /// change counter ([`keys::ROUTER_VERSION`]), and a refused change is made again on the
    /// state read back.
    shared: std::sync::atomic::AtomicBool,
    /// The leader's fencing epoch record ([`keys::ROUTER_EPOCH`]) while this node leads: the
    /// clock's changes check it.
    fence: Mutex<Option<Vec<u8>>>,
    /// Whether the open-task index is known to be built (it is never unbuilt): not read
    /// again at each read-back.
    open_tasks_indexed: std::sync::atomic::AtomicBool,
}

/// How many times a change refused because another node changed the router first is made
/// again on the state read back (after a random pause that doubles with each try, up to
/// [`MAX_PAUSE_MS`]: nodes that keep colliding fall out of step).
const ATTEMPTS: usize = 24;

/// The longest pause between two tries of a refused change.
const MAX_PAUSE_MS: u64 = 64;

/// Wall-clock now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The realm agents' phones authenticate in (SIP digest, RFC 3261 §22).
pub const SIP_REALM: &str = "switchboard";

/// What the router keeps of an agent's token for their phone: the SIP digest's HA1,
/// MD5(name:realm:token), with which a phone proves it holds the token without the router
/// keeping the token itself.
pub fn phone_secret(name: &str, token: &str) -> String {
    use md5::{Digest as _, Md5};
    hex::encode(Md5::digest(
        format!("{name}:{SIP_REALM}:{token}").as_bytes(),
    ))
}

fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn check_name(kind: &str, name: &str) -> Result<(), RouterError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RouterError::Invalid(format!(
            "{name:?} is not a valid {kind} name: use 1-64 letters, digits, '-', '_', '.' or '@'"
        )))
    }
}

impl Router {
    /// The router over `store`, with every queue, agent and open task loaded. An offer open
    /// when the server stopped still stands with the time it had left (one whose time ran
    /// out meanwhile is made afresh); agents keep their idle order; the statistics window is
    /// read back.
    pub fn open(store: Arc<dyn Store>) -> Result<Router, RouterError> {
        Self::with_clock(store, Box::new(now_ms))
    }

    /// The router with a clock of its own (tests and benchmarks step time by hand).
    pub fn with_clock(
        store: Arc<dyn Store>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Router, RouterError> {
        Self::build(store, clock, false)
    }

    /// The router over a store other nodes write too: every change checks and bumps the
    /// router's change counter, and [`Router::refresh`] picks up the others' changes.
    pub fn open_shared(store: Arc<dyn Store>) -> Result<Router, RouterError> {
        Self::build(store, Box::new(now_ms), true)
    }

    fn build(
        store: Arc<dyn Store>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
        shared: bool,
    ) -> Result<Router, RouterError> {
        let router = Router {
            store,
            state: Mutex::new(State::default()),
            notices: tokio::sync::broadcast::channel(1024).0,
            planner: std::sync::RwLock::new(None),
            workflow: std::sync::RwLock::new((Workflow::default(), Vec::new())),
            clock,
            shared: std::sync::atomic::AtomicBool::new(shared),
            fence: Mutex::new(None),
            open_tasks_indexed: std::sync::atomic::AtomicBool::new(false),
        };
        router.load()?;
        Ok(router)
    }

    /// The state, read back from the store first when a refused change left it stale.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // What an operation that failed before its commit meant to tell is not news.
        state.told.clear();
        if state.stale
            && let Ok((fresh, repairs)) = self.read_state()
        {
            *state = fresh;
            if !self.is_shared() {
                let _ = self.store.commit(&repairs);
            }
        }
        state
    }

    fn is_shared(&self) -> bool {
        self.shared.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets (or clears) the leader's fencing epoch record, which the clock's changes check.
    pub fn set_fence(&self, fence: Option<Vec<u8>>) {
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = fence;
    }

    /// On a shared store: reads the state back when another node changed it since this node
    /// last looked, and tells this node's agents of offers made elsewhere. One read when
    /// nothing changed.
    pub fn refresh(&self) -> Result<(), RouterError> {
        if !self.is_shared() {
            return Ok(());
        }
        let stored = self
            .store
            .get(Tree::Meta, keys::ROUTER_VERSION.as_bytes())?;
        let notices = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            // Versions only grow: one read before this node's own latest change is older
            // than what this node holds, not news.
            if !state.stale
                && stored_version(stored.as_deref()) <= state.version()
                && (self.clock)() < state.read_ms + READ_BACK_EVERY_MS
            {
                return Ok(());
            }
            // A few changes behind, within the periodic look at everything: only what they
            // wrote is read again.
            if (self.clock)() < state.read_ms + READ_BACK_EVERY_MS
                && let Some(notices) = self.catch_up(&mut state, stored.as_deref())?
            {
                drop(state);
                self.notify(notices);
                return Ok(());
            }
            self.reload_workflow()?;
            let (fresh, repairs) = self.read_state_after(Some(&state))?;
            let notices: Vec<Notice> = fresh
                .reservations
                .values()
                .filter(|r| !state.reservations.contains_key(&r.id))
                .filter_map(|r| offer_notice(&fresh, r))
                .collect();
            *state = fresh;
            // Offers whose time ran out while nobody ran the clock: kept if nobody changed
            // the router meanwhile, else the next look repairs them again.
            if !repairs.is_empty() {
                let _ = self.commit(&mut state, repairs);
            }
            notices
        };
        self.notify(notices);
        Ok(())
    }

    /// Reads the state back from the store before the next operation: a change written
    /// outside the router (a task in a contact's step) may have landed unseen.
    pub fn mark_stale(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).stale = true;
    }

    /// Reads the whole router back from the store (on a shared store), not only what the
    /// changes since the last look wrote: a task a contact's step wrote on another node and
    /// no change offered yet is found too.
    pub fn read_everything(&self) -> Result<(), RouterError> {
        if !self.is_shared() {
            return Ok(());
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.stale = true;
            state.unsure.all = true;
        }
        self.refresh()
    }

    /// On a shared store, before looking for task `id` this node does not hold (a contact's
    /// step on another node may have made it): in the first `round` that task is read, in
    /// the next the whole router.
    /// Whether it may yet be found open: not when the store has it finished, or has no
    /// such task (reading everything would not find it either).
    fn look_again(&self, id: &str, round: u32) -> Result<bool, RouterError> {
        match round {
            1 => self.read_task(id),
            _ => self.read_everything().map(|()| true),
        }
    }

    /// Makes a change, again on the state read back when another node changed the router
    /// first (on a shared store). A change's first commit is its only one that can be
    /// refused so: what follows it (offers to waiting tasks) never fails it.
    fn changing<T>(
        &self,
        mut change: impl FnMut() -> Result<T, RouterError>,
    ) -> Result<T, RouterError> {
        if !self.is_shared() {
            return change();
        }
        self.refresh()?;
        let mut attempt = 1;
        let mut looked = 0;
        loop {
            match change() {
                // The leader's epoch moved on: this node no longer leads; not tried again.
                Err(RouterError::Store(StoreError::Conflict { ref key, .. }))
                    if key.as_str() == keys::ROUTER_EPOCH =>
                {
                    self.set_fence(None);
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).stale = true;
                    return Err(RouterError::Invalid(
                        "this node no longer leads the router (another node took the lease)".into(),
                    ));
                }
                // Perhaps made by a contact's step on another node since this node last
                // read the router: catch up and look once more, then read everything.
                Err(RouterError::UnknownTask(id)) if looked < 2 => {
                    looked += 1;
                    if !self.look_again(&id, looked)? {
                        return Err(RouterError::UnknownTask(id));
                    }
                }
                Err(RouterError::Store(StoreError::Conflict { .. })) if attempt < ATTEMPTS => {
                    attempt += 1;
                    let most = (1u64 << attempt.min(6)).min(MAX_PAUSE_MS);
                    std::thread::sleep(std::time::Duration::from_millis(rand::random_range(
                        1..=most,
                    )));
                    self.refresh()?;
                }
                other => return other,
            }
        }
    }

    /// Offers waiting tasks after a change was kept. A failure here does not undo the change
    /// (and is not the caller's): the next change or clock turn offers them.
    fn assign_after(&self) {
        if let Err(e) = self.assign_all() {
            tracing::warn!(error = %e, "cannot offer waiting tasks now; the next turn of the clock will");
        }
    }

    /// Replaces the workflow. Every condition and target is compiled and every queue checked
    /// first: a bad workflow changes nothing.
    pub fn set_workflow(&self, workflow: Workflow) -> Result<Workflow, RouterError> {
        self.changing(|| self.set_workflow_once(workflow.clone()))
    }

    /// Replaces the workflow. Every condition and target is compiled and every queue checked
    /// first: a bad workflow changes nothing.
    fn set_workflow_once(&self, workflow: Workflow) -> Result<Workflow, RouterError> {
        let compiled = compile_workflow(&workflow)?;
        {
            let mut state = self.lock();
            for f in &workflow.filters {
                if !state.queues.contains_key(&f.queue) {
                    return Err(RouterError::Invalid(format!(
                        "filter {:?} sends tasks to queue {:?}, which does not exist: define it first",
                        f.name, f.queue
                    )));
                }
                compile_targets(&f.targets)?;
            }
            let mut batch = Batch::new();
            batch.put_json(Tree::Queues, WORKFLOW_KEY, &workflow)?;
            self.commit(&mut state, batch)?;
        }
        *self.workflow.write().unwrap_or_else(|p| p.into_inner()) = (workflow.clone(), compiled);
        Ok(workflow)
    }

    /// The workflow.
    pub fn workflow(&self) -> Workflow {
        self.workflow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The workflow's plan for a new task: its first matching filter's.
    fn workflow_plan(&self, new: &NewTask) -> Option<Plan> {
        let workflow = self.workflow.read().unwrap_or_else(|p| p.into_inner());
        let mut view = new.attributes.clone();
        if let Value::Object(map) = &mut view {
            map.insert("priority".into(), Value::from(new.priority));
            map.insert("queue".into(), Value::from(new.queue.clone()));
            map.insert(
                "channel".into(),
                serde_json::to_value(new.channel).unwrap_or_default(),
            );
        }
        let (workflow, conditions) = &*workflow;
        workflow
            .filters
            .iter()
            .zip(conditions)
            .find(|(_, when)| when.matches(&Value::Null, &view))
            .map(|(f, _)| Plan {
                queue: f.queue.clone(),
                priority: f.priority.unwrap_or(new.priority),
                targets: f.targets.clone(),
            })
    }

    /// Lets `planner` decide the plan of every new task.
    pub fn set_planner(&self, planner: Planner) {
        *self.planner.write().unwrap_or_else(|p| p.into_inner()) = Some(planner);
    }

    /// New reservations as they are made, for agents' live connections.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Defines (or redefines) a queue. Expressions are compiled first: a bad one changes
    /// nothing.
    pub fn define_queue(&self, config: QueueConfig) -> Result<QueueConfig, RouterError> {
        self.changing(|| self.define_queue_once(config.clone()))
    }

    /// Defines (or redefines) a queue. Expressions are compiled first: a bad one changes
    /// nothing.
    fn define_queue_once(&self, mut config: QueueConfig) -> Result<QueueConfig, RouterError> {
        check_name("queue", &config.name)?;
        if config.reservation_timeout_secs == 0 {
            return Err(RouterError::Invalid(
                "reservation_timeout_secs must be at least 1".into(),
            ));
        }
        let mut seen = HashSet::new();
        for code in &config.dispositions {
            if code.trim().is_empty() || code.len() > 64 || !seen.insert(code.as_str()) {
                return Err(RouterError::Invalid(format!(
                    "disposition {code:?}: each code is 1-64 characters and named once"
                )));
            }
        }
        if config.disposition_required && config.dispositions.is_empty() {
            return Err(RouterError::Invalid(
                "disposition_required needs the codes to choose from: list them in \"dispositions\"".into(),
            ));
        }
        if config.targets.is_empty() {
            config.targets.push(Target {
                agents: String::new(),
                timeout_secs: 0,
            });
        }
        let mut queue = compile_queue(config.clone())?;
        {
            let mut state = self.lock();
            if let Some(old) = state.queues.remove(&config.name) {
                queue.waiting = old.waiting;
                queue.answered = old.answered;
                queue.canceled = old.canceled;
            }
            state.queues.insert(config.name.clone(), queue);
            refresh_members(&mut state, &config.name);
            let mut batch = Batch::new();
            batch.put_json(Tree::Queues, config.name.as_bytes(), &config)?;
            self.commit(&mut state, batch)?;
        }
        self.assign_after();
        Ok(config)
    }

    /// All queues.
    pub fn queues(&self) -> Vec<QueueConfig> {
        let mut out: Vec<QueueConfig> = self
            .lock()
            .queues
            .values()
            .map(|q| q.config.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Creates or updates an agent. Returns the agent's token when one was created (the only
    /// time it is shown).
    pub fn upsert_agent(
        &self,
        name: &str,
        attributes: Value,
        capacity: std::collections::BTreeMap<Channel, u32>,
    ) -> Result<(AgentRecord, Option<String>), RouterError> {
        self.changing(|| self.upsert_agent_once(name, attributes.clone(), capacity.clone()))
    }

    fn upsert_agent_once(
        &self,
        name: &str,
        attributes: Value,
        capacity: std::collections::BTreeMap<Channel, u32>,
    ) -> Result<(AgentRecord, Option<String>), RouterError> {
        check_name("agent", name)?;
        if !attributes.is_object() {
            return Err(RouterError::Invalid("an agent's attributes are a JSON object, such as {\"skills\": [\"billing\"], \"level\": 2}".into()));
        }
        let (record, token) = {
            let mut state = self.lock();
            let token = if state.agents.contains_key(name) {
                None
            } else {
                let mut secret = [0u8; 24];
                rand::rng().fill_bytes(&mut secret);
                Some(format!("sbw_{}", hex::encode(secret)))
            };
            let now = (self.clock)();
            let worker = state.agents.entry(name.to_string()).or_insert_with(|| {
                let record = AgentRecord {
                    name: name.to_string(),
                    attributes: Value::Null,
                    activity: "offline".into(),
                    capacity: Default::default(),
                    token_sha256: token.as_deref().map(token_hash).unwrap_or_default(),
                    sip_ha1: token
                        .as_deref()
                        .map(|t| phone_secret(name, t))
                        .unwrap_or_default(),
                    missed_in_a_row: 0,
                    idle_since_ms: now,
                };
                Agent::from_record(record, now)
            });
            worker.record.attributes = attributes;
            worker.record.capacity = capacity;
            let record = worker.record.clone();
            refresh_membership_of(&mut state, name);
            update_idle(&mut state, name);
            let mut batch = Batch::new();
            stage_agent(&mut batch, &record)?;
            self.commit(&mut state, batch)?;
            (record, token)
        };
        self.assign_after();
        Ok((record, token))
    }

    /// The agent whose token this is.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        if !token.starts_with("sbw_") {
            return None;
        }
        let hash = token_hash(token);
        let find = || {
            self.lock()
                .agents
                .values()
                .find(|w| w.record.token_sha256 == hash)
                .map(|w| w.record.name.clone())
        };
        // An agent just made on another node is read back once.
        find().or_else(|| {
            (self.is_shared() && self.refresh().is_ok())
                .then(find)
                .flatten()
        })
    }

    /// The SIP digest secret of an agent's phone (empty for agents created before SIP).
    pub fn sip_ha1(&self, name: &str) -> Option<String> {
        let find = || {
            self.lock()
                .agents
                .get(name)
                .map(|w| w.record.sip_ha1.clone())
        };
        find().or_else(|| {
            (self.is_shared() && self.refresh().is_ok())
                .then(find)
                .flatten()
        })
    }

    /// Changes an agent's activity; `available` makes them eligible at once.
    pub fn set_activity(&self, name: &str, activity: &str) -> Result<AgentRecord, RouterError> {
        self.changing(|| self.set_activity_once(name, activity))
    }

    /// Changes an agent's activity; `available` makes them eligible at once.
    fn set_activity_once(&self, name: &str, activity: &str) -> Result<AgentRecord, RouterError> {
        check_name("activity", activity)?;
        let record = {
            let mut state = self.lock();
            let now = (self.clock)();
            let w = state
                .agents
                .get_mut(name)
                .ok_or_else(|| RouterError::UnknownAgent(name.into()))?;
            if w.record.activity != "available" && activity == "available" {
                w.record.idle_since_ms = now;
                w.record.missed_in_a_row = 0;
            }
            let mut batch = Batch::new();
            stage_activity(&mut batch, &mut w.record, activity, now)?;
            let record = w.record.clone();
            update_idle(&mut state, name);
            state.tell(name, NoticeKind::Activity, None, None);
            stage_agent(&mut batch, &record)?;
            self.commit(&mut state, batch)?;
            record
        };
        self.assign_after();
        Ok(record)
    }

    /// Creates a task and offers it at once if an agent is free.
    pub fn create_task(&self, new: NewTask) -> Result<Task, RouterError> {
        self.changing(|| self.create_task_once(new.clone()))
    }

    /// Creates a task and offers it at once if an agent is free.
    fn create_task_once(&self, new: NewTask) -> Result<Task, RouterError> {
        let prepared = self.prepare_task(new)?;
        let mut batch = Batch::new();
        prepared.stage(&mut batch)?;
        // The task and its first offer land in one commit.
        self.admit_with(prepared, batch)
    }

    /// Checks and plans a new task without changing anything: stage it in a batch
    /// ([`PreparedTask::stage`]) and, once that batch is committed, [`Router::admit`] it.
    /// This is how a contact's step creates its task in the step's own commit.
    pub fn prepare_task(&self, mut new: NewTask) -> Result<PreparedTask, RouterError> {
        if !new.attributes.is_object() {
            return Err(RouterError::Invalid(
                "a task's attributes are a JSON object".into(),
            ));
        }
        if !self.lock().queues.contains_key(&new.queue) {
            // Perhaps defined on another node a moment ago: look once more.
            let _ = self.refresh();
            if !self.lock().queues.contains_key(&new.queue) {
                return Err(RouterError::UnknownQueue(new.queue.clone()));
            }
        }
        let id = new_id("tk_");
        // The planner may run a Wasm component: never while holding the router's lock.
        let planned = self.plan(&id, &new).or_else(|| self.workflow_plan(&new));
        let compiled = match planned {
            Some(plan) if self.lock().queues.contains_key(&plan.queue) => {
                new.queue = plan.queue.clone();
                new.priority = plan.priority;
                match compile_targets(&plan.targets) {
                    Ok(targets) if !targets.is_empty() => Some((plan.targets, targets)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::error!(task = %id, error = %e, "the router component's plan has a bad expression; using the queue's plan");
                        None
                    }
                }
            }
            Some(plan) => {
                tracing::error!(task = %id, queue = %plan.queue, "the router component chose an undefined queue; keeping the task's queue");
                None
            }
            None => None,
        };
        let state = self.lock();
        let now = (self.clock)();
        let queue = state
            .queues
            .get(&new.queue)
            .ok_or_else(|| RouterError::UnknownQueue(new.queue.clone()))?;
        let timeout = if new.timeout_secs > 0 {
            new.timeout_secs
        } else {
            queue.config.task_timeout_secs
        };
        let task = Task {
            id: id.clone(),
            queue: new.queue.clone(),
            channel: new.channel,
            priority: new.priority,
            attributes: new.attributes,
            status: TaskStatus::Pending,
            created_ms: now,
            target: 0,
            target_since_ms: now,
            timeout_ms: now + timeout * 1000,
            agent: None,
            reservation: None,
            passed_by: Vec::new(),
            contact: new.contact,
            assigned_ms: None,
            wrapup: None,
            disposition: None,
            wrapping_since_ms: None,
            wrapup_until_ms: None,
            ended_ms: None,
            reason: None,
            last_wait_ms: now,
            plan: compiled.as_ref().map(|(targets, _)| targets.clone()),
            reserved_until_ms: None,
            only: None,
            transfer_to: None,
            callback: None,
            consult: None,
            held_since_ms: None,
            hold_ms: 0,
            first_assigned_ms: None,
        };
        Ok(PreparedTask {
            task,
            targets: compiled.map(|(_, targets)| targets),
        })
    }

    /// Takes in a task whose [`PreparedTask::stage`] batch was committed, and offers it.
    pub fn admit(&self, prepared: PreparedTask) -> Result<Task, RouterError> {
        let mut again = false;
        self.changing(|| {
            // Tried again after a refusal: a task another node ended meanwhile (its customer
            // hung up there) is not taken in again.
            if std::mem::replace(&mut again, true)
                && self.is_shared()
                && self
                    .store
                    .get(Tree::OpenTasks, prepared.task.id.as_bytes())?
                    .is_none()
            {
                return self.task(&prepared.task.id);
            }
            self.admit_once(prepared.clone())
        })
    }

    /// Takes in a task whose [`PreparedTask::stage`] batch was committed, and offers it.
    fn admit_once(&self, prepared: PreparedTask) -> Result<Task, RouterError> {
        let mut batch = Batch::new();
        if self.is_shared() {
            // Another node may have ended the task since the step wrote it (its customer
            // hung up there): an offer of it is refused then, not made to a departed
            // customer.
            batch.expect(Tree::OpenTasks, prepared.task.id.as_bytes(), Some(&[][..]));
        }
        self.admit_with(prepared, batch)
    }

    /// Takes in a task and offers it, committing `batch` with the offer.
    fn admit_with(&self, prepared: PreparedTask, batch: Batch) -> Result<Task, RouterError> {
        let id = prepared.task.id.clone();
        let queue = prepared.task.queue.clone();
        // One lock hold from taking the task in to committing its writes: no other change
        // can offer it in between and then be overwritten by this commit.
        let notices = {
            let mut state = self.lock();
            // Already known when the router read its state back from the store after the
            // task was committed (and it may be on offer already): taken in once only.
            if !state.tasks.contains_key(&id) {
                if let Some(q) = state.queues.get_mut(&queue) {
                    q.waiting
                        .insert(waiting_key(q.config.order, &prepared.task));
                }
                if let Some(targets) = prepared.targets {
                    state.plans.insert(id.clone(), targets);
                }
                state.tasks.insert(id.clone(), prepared.task);
            }
            // On a shared store a task a step wrote is not a router change by itself: the
            // other nodes learn of it when it is offered (a change), when they look for it
            // ([`Router::read_back`]) or at their next periodic read.
            self.assign_locked(&mut state, &queue, batch)?
        };
        self.notify(notices);
        self.task(&id)
    }

    /// The planner's plan for a new task, if a planner is set and decides.
    fn plan(&self, id: &str, new: &NewTask) -> Option<Plan> {
        let planner = self.planner.read().unwrap_or_else(|p| p.into_inner());
        let planner = planner.as_ref()?;
        let draft = Task {
            id: id.to_string(),
            queue: new.queue.clone(),
            channel: new.channel,
            priority: new.priority,
            attributes: new.attributes.clone(),
            status: TaskStatus::Pending,
            created_ms: 0,
            target: 0,
            target_since_ms: 0,
            timeout_ms: 0,
            agent: None,
            reservation: None,
            passed_by: Vec::new(),
            contact: new.contact.clone(),
            assigned_ms: None,
            wrapup: None,
            disposition: None,
            wrapping_since_ms: None,
            wrapup_until_ms: None,
            ended_ms: None,
            reason: None,
            last_wait_ms: 0,
            plan: None,
            reserved_until_ms: None,
            only: None,
            transfer_to: None,
            callback: None,
            consult: None,
            held_since_ms: None,
            hold_ms: 0,
            first_assigned_ms: None,
        };
        planner(&draft)
    }

    /// A task (open or recently finished).
    pub fn task(&self, id: &str) -> Result<Task, RouterError> {
        if let Some(task) = self.lock().tasks.get(id) {
            return Ok(task.clone());
        }
        self.store
            .get_json::<Task>(Tree::Tasks, id)?
            .ok_or_else(|| RouterError::UnknownTask(id.into()))
    }

    /// Every open task that came from a contact: (task, contact).
    pub fn open_tasks_of_contacts(&self) -> Vec<(String, String)> {
        self.lock()
            .tasks
            .values()
            .filter_map(|t| Some((t.id.clone(), t.contact.clone()?)))
            .collect()
    }

    /// The open task of a contact, if any.
    pub fn task_of_contact(&self, contact: &str) -> Option<Task> {
        // On a shared store the task may have been made on another node a moment ago.
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "cannot look for changes from other nodes; using what this node knows");
        }
        self.lock()
            .tasks
            .values()
            .find(|t| t.contact.as_deref() == Some(contact) && !t.status.is_final())
            .cloned()
    }

    /// The agent accepts their reservation: the task is theirs.
    pub fn accept(&self, worker: &str, reservation: &str) -> Result<Task, RouterError> {
        self.changing(|| self.accept_once(worker, reservation))
    }

    /// The agent accepts their reservation: the task is theirs.
    fn accept_once(&self, worker: &str, reservation: &str) -> Result<Task, RouterError> {
        let mut state = self.lock();
        let r = open_reservation(&state, worker, reservation)?;
        let now = (self.clock)();
        state.reservations.remove(reservation);
        let w = state
            .agents
            .get_mut(worker)
            .ok_or_else(|| RouterError::UnknownAgent(worker.into()))?;
        w.reservation = None;
        // The agent's record changes only when it had missed offers in a row.
        let record = (w.record.missed_in_a_row > 0).then(|| {
            w.record.missed_in_a_row = 0;
            w.record.clone()
        });
        let task = state
            .tasks
            .get_mut(&r.task)
            .ok_or_else(|| RouterError::UnknownTask(r.task.clone()))?;
        task.status = TaskStatus::Assigned;
        task.clear_offer();
        task.assigned_ms = Some(now);
        task.first_assigned_ms.get_or_insert(now);
        let task = task.clone();
        let mut batch = Batch::new();
        if let Some(q) = state.queues.get_mut(&task.queue) {
            let waited_ms = now.saturating_sub(task.created_ms);
            stage_queue_event(
                &mut batch,
                q,
                now,
                &task.id,
                QueueEvent::Answered { waited_ms },
            )?;
        }
        update_idle(&mut state, worker);
        if let Some(record) = &record {
            stage_agent(&mut batch, record)?;
        }
        stage_task(&mut batch, &task)?;
        self.stage_news(
            &mut batch,
            &task,
            News::of(crate::contract::TaskStatus::Assigned),
        )?;
        self.commit(&mut state, batch)?;
        drop(state);
        self.assign_after();
        Ok(task)
    }

    /// The agent turns their reservation down: the task is offered to someone else.
    pub fn reject(&self, worker: &str, reservation: &str) -> Result<Task, RouterError> {
        self.changing(|| self.reject_once(worker, reservation))
    }

    /// The agent turns their reservation down: the task is offered to someone else.
    fn reject_once(&self, worker: &str, reservation: &str) -> Result<Task, RouterError> {
        let task = {
            let mut state = self.lock();
            let r = open_reservation(&state, worker, reservation)?;
            let mut batch = Batch::new();
            let task = release_reservation(&mut batch, &mut state, &r)?;
            self.commit(&mut state, batch)?;
            task
        };
        self.assign_after();
        Ok(task)
    }
}

/// Withdraws an offer: the task waits again, the agent is free again.
fn release_reservation(
    batch: &mut Batch,
    state: &mut State,
    r: &Reservation,
) -> Result<Task, RouterError> {
    {
        state.reservations.remove(&r.id);
        let task = state
            .tasks
            .get_mut(&r.task)
            .ok_or_else(|| RouterError::UnknownTask(r.task.clone()))?;
        task.status = TaskStatus::Pending;
        task.clear_offer();
        task.agent = None;
        task.passed_by.push(r.agent.clone());
        // A transfer to them by name that they passed on goes to the queue from now on.
        if task.only.as_deref() == Some(r.agent.as_str()) {
            task.only = None;
        }
        let task = task.clone();
        if let Some(q) = state.queues.get_mut(&task.queue) {
            q.waiting.insert(waiting_key(q.config.order, &task));
        }
        if let Some(w) = state.agents.get_mut(&r.agent) {
            w.reservation = None;
            if let Some(n) = w.busy.get_mut(&task.channel) {
                *n = n.saturating_sub(1);
            }
        }
        update_idle(state, &r.agent);
        stage_task(batch, &task)?;
        Ok(task)
    }
}

impl Router {
    /// The agent finished the task, with wrap-up notes and, where the queue has codes, a
    /// disposition. From `assigned` (the conversation ends here too: the contact's flow hears
    /// `completed`) or from `wrapping`. The agent's capacity is freed.
    pub fn complete(
        &self,
        worker: &str,
        task: &str,
        wrapup: Option<String>,
        disposition: Option<String>,
    ) -> Result<Task, RouterError> {
        self.changing(|| self.complete_once(worker, task, wrapup.clone(), disposition.clone()))
    }

    fn complete_once(
        &self,
        worker: &str,
        task: &str,
        wrapup: Option<String>,
        disposition: Option<String>,
    ) -> Result<Task, RouterError> {
        let done = {
            let mut state = self.lock();
            let t = state
                .tasks
                .get(task)
                .ok_or_else(|| RouterError::UnknownTask(task.into()))?;
            if t.agent.as_deref() != Some(worker)
                || !matches!(t.status, TaskStatus::Assigned | TaskStatus::Wrapping)
            {
                return Err(RouterError::NotYours(format!(
                    "task {task} is not assigned to {worker}"
                )));
            }
            let talking = t.status == TaskStatus::Assigned;
            if let Some(q) = state.queues.get(&t.queue) {
                q.config
                    .check_disposition(disposition.as_deref())
                    .map_err(RouterError::Invalid)?;
            }
            let wrapup = wrapup.or_else(|| t.wrapup.clone());
            if let Some(t) = state.tasks.get_mut(task) {
                t.disposition = disposition;
            }
            let mut batch = Batch::new();
            let done = self.finish(
                &mut batch,
                &mut state,
                task,
                TaskStatus::Completed,
                wrapup,
                None,
            )?;
            if talking {
                self.stage_news(
                    &mut batch,
                    &done,
                    News::of(crate::contract::TaskStatus::Completed),
                )?;
            }
            self.commit(&mut state, batch)?;
            done
        };
        self.assign_after();
        Ok(done)
    }

    /// The agent ends the conversation of a task they hold (the contact's flow hears
    /// `completed` and goes on): the task goes to `wrapping` when its queue has wrap-up, and
    /// completes at once when it has none.
    pub fn wrap(&self, worker: &str, task: &str) -> Result<Task, RouterError> {
        self.changing(|| self.wrap_once(&mut None, Some(worker), task, None, true))
    }

    /// The conversation of an assigned task ended on its channel (the call's legs hung up,
    /// the customer left): as [`Router::wrap`], with why it ended kept as the task's notes
    /// until the agent writes theirs. `tell`: whether the contact's flow is still there to
    /// hear `completed`. A task not assigned is left as it is.
    pub fn conversation_ended(
        &self,
        task: &str,
        why: &str,
        tell: bool,
    ) -> Result<Task, RouterError> {
        self.changing(|| self.wrap_once(&mut None, None, task, Some(why.to_string()), tell))
    }

    fn wrap_once(
        &self,
        riding: &mut Option<&Batch>,
        worker: Option<&str>,
        task: &str,
        why: Option<String>,
        tell: bool,
    ) -> Result<Task, RouterError> {
        let done = {
            let mut state = self.lock();
            let now = (self.clock)();
            let t = state
                .tasks
                .get(task)
                .ok_or_else(|| RouterError::UnknownTask(task.into()))?;
            if let Some(worker) = worker
                && t.agent.as_deref() != Some(worker)
            {
                return Err(RouterError::NotYours(format!(
                    "task {task} is not assigned to {worker}"
                )));
            }
            match t.status {
                TaskStatus::Assigned => {}
                TaskStatus::Wrapping if worker.is_none() => return Ok(t.clone()),
                other => {
                    return Err(RouterError::Conflict(format!(
                        "task {task} is {}, not in a conversation",
                        serde_json::to_value(other)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    )));
                }
            }
            let config = state.queues.get(&t.queue).map(|q| q.config.clone());
            let mut batch = Batch::new();
            let done = if config.as_ref().is_some_and(QueueConfig::wraps_up) {
                let wrapup_secs = config.map_or(0, |c| c.wrapup_secs);
                let t = state
                    .tasks
                    .get_mut(task)
                    .ok_or_else(|| RouterError::UnknownTask(task.into()))?;
                t.status = TaskStatus::Wrapping;
                t.end_hold(now);
                t.wrapping_since_ms = Some(now);
                t.wrapup_until_ms = (wrapup_secs > 0).then(|| now + wrapup_secs * 1000);
                if t.wrapup.is_none() {
                    t.wrapup = why.clone();
                }
                stage_task(&mut batch, t)?;
                let t = t.clone();
                // The agent's own `wrap` is answered; one the channel made is pushed.
                if let Some(agent) = &t.agent
                    && worker.is_none()
                {
                    state.tell(agent, NoticeKind::Wrapping, Some(&t), why);
                }
                t
            } else {
                let done = self.finish(
                    &mut batch,
                    &mut state,
                    task,
                    TaskStatus::Completed,
                    why.clone(),
                    None,
                )?;
                if let Some(agent) = &done.agent
                    && worker.is_none()
                {
                    state.tell(agent, NoticeKind::Completed, Some(&done), why);
                }
                done
            };
            if tell {
                self.stage_news(
                    &mut batch,
                    &done,
                    News::of(crate::contract::TaskStatus::Completed),
                )?;
            }
            persistence::ride(&mut batch, riding);
            self.commit(&mut state, batch)?;
            done
        };
        self.assign_after();
        Ok(done)
    }

    /// The agent hands a conversation they hold to another queue or agent, blind: they are
    /// free at once, the task waits (not offered back to them) with its attributes and
    /// `transferred_from`, and the contact's flow hears `assigned` again when the next agent
    /// accepts; its conversation goes with the contact. Or, for a call, to a number or SIP URI:
    /// the task keeps the agent until the call's channel has placed that leg.
    pub fn transfer(&self, worker: &str, task: &str, to: &TransferTo) -> Result<Task, RouterError> {
        self.changing(|| self.transfer_once(worker, task, to))
    }

    fn transfer_once(&self, worker: &str, id: &str, to: &TransferTo) -> Result<Task, RouterError> {
        let moved = {
            let mut state = self.lock();
            let now = (self.clock)();
            let t = open_conversation(&state.tasks, worker, id)?;
            if let Some(c) = &t.consult {
                return Err(RouterError::Conflict(format!(
                    "task {id} is consulting {}: complete or cancel that first",
                    c.agent
                )));
            }
            if let Some(pending) = &t.transfer_to {
                return Err(RouterError::Conflict(format!(
                    "task {id} is already being transferred to {pending}"
                )));
            }
            if t.callback.is_some() {
                return Err(RouterError::Conflict(format!(
                    "task {id} is a callback: its call cannot be transferred yet"
                )));
            }
            let (queue, only) = match to {
                TransferTo::Queue(queue) => (queue.clone(), None),
                TransferTo::Agent(agent) if agent == worker => {
                    return Err(RouterError::Invalid(format!(
                        "{worker} already holds task {id}: transfer it to another agent"
                    )));
                }
                TransferTo::Agent(agent) if !state.agents.contains_key(agent) => {
                    return Err(RouterError::UnknownAgent(agent.clone()));
                }
                TransferTo::Agent(agent) if !state.agents[agent].available() => {
                    return Err(RouterError::Conflict(format!(
                        "{agent} is not available ({}): transfer to a queue, or to someone who is",
                        state.agents[agent].record.activity
                    )));
                }
                TransferTo::Agent(agent) => (t.queue.clone(), Some(agent.clone())),
                TransferTo::Number(number) => {
                    if t.channel != crate::contract::Channel::Voice {
                        return Err(RouterError::Conflict(format!(
                            "task {id} is a {:?} conversation: only a call goes to a number",
                            t.channel
                        )));
                    }
                    let task = state.tasks.get_mut(id).expect("checked above");
                    task.transfer_to = Some(number.clone());
                    let snapshot = task.clone();
                    return self.commit_task(&mut state, snapshot);
                }
            };
            let mut batch = Batch::new();
            let snapshot = requeue(
                &mut batch,
                &mut state,
                id,
                &queue,
                only,
                now,
                |attributes, from| {
                    attributes.insert("transferred_from".into(), worker.into());
                    attributes.insert("transferred_from_queue".into(), from.into());
                },
            )?;
            self.commit(&mut state, batch)?;
            snapshot
        };
        self.assign_after();
        Ok(self.task(&moved.id).unwrap_or(moved))
    }

    /// The call's channel placed the leg of a transfer to a number, or could not (`failed`
    /// says why, kept in the task's `transfer_failed` attribute): the request is cleared, so
    /// the agent may ask again.
    pub fn transfer_placed(&self, task: &str, failed: Option<&str>) -> Result<Task, RouterError> {
        self.changing(|| {
            let mut state = self.lock();
            let task = state
                .tasks
                .get_mut(task)
                .ok_or_else(|| RouterError::UnknownTask(task.into()))?;
            task.transfer_to = None;
            if let Value::Object(map) = &mut task.attributes {
                match failed {
                    Some(why) => map.insert("transfer_failed".into(), why.into()),
                    None => map.remove("transfer_failed"),
                };
            }
            let told = task.agent.clone().zip(failed);
            let snapshot = task.clone();
            if let Some((agent, why)) = told {
                let reason = format!("{why}; the caller is back with you");
                state.tell(
                    &agent,
                    NoticeKind::TransferFailed,
                    Some(&snapshot),
                    Some(reason),
                );
            }
            self.commit_task(&mut state, snapshot)
        })
    }

    /// Moves a waiting task to another queue (a supervisor's decision), optionally with a new
    /// priority. A reserved task's offer is withdrawn first.
    pub fn move_task(
        &self,
        id: &str,
        queue: &str,
        priority: Option<i32>,
    ) -> Result<Task, RouterError> {
        self.changing(|| self.move_task_once(id, queue, priority))
    }

    fn move_task_once(
        &self,
        id: &str,
        queue: &str,
        priority: Option<i32>,
    ) -> Result<Task, RouterError> {
        let moved = {
            let mut state = self.lock();
            if !state.queues.contains_key(queue) {
                return Err(RouterError::UnknownQueue(queue.into()));
            }
            let task = state
                .tasks
                .get(id)
                .cloned()
                .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
            let mut batch = Batch::new();
            match task.status {
                TaskStatus::Pending => {}
                TaskStatus::Reserved => {
                    if let Some(r) = task
                        .reservation
                        .as_ref()
                        .and_then(|r| state.reservations.get(r))
                        .cloned()
                    {
                        let task = release_reservation(&mut batch, &mut state, &r)?;
                        state.tell(
                            &r.agent,
                            NoticeKind::Rescinded,
                            Some(&task),
                            Some(format!("moved to queue {queue}")),
                        );
                    }
                }
                other => {
                    return Err(RouterError::Conflict(format!(
                        "task {id} is {other:?}; only waiting tasks can be moved"
                    )));
                }
            }
            let now = (self.clock)();
            let order = state_order(&state, &task.queue);
            let task = state.tasks.get_mut(id).expect("checked above");
            let old_key = waiting_key(order, task);
            let old_queue = std::mem::replace(&mut task.queue, queue.to_string());
            if let Some(p) = priority {
                task.priority = p;
            }
            task.target = 0;
            task.target_since_ms = now;
            task.passed_by.clear();
            // A supervisor's move replaces a router component's plan with the queue's.
            task.plan = None;
            let snapshot = task.clone();
            state.plans.remove(id);
            if let Some(q) = state.queues.get_mut(&old_queue) {
                q.waiting.remove(&old_key);
            }
            let q = state.queues.get_mut(queue).expect("checked above");
            q.waiting.insert(waiting_key(q.config.order, &snapshot));
            stage_task(&mut batch, &snapshot)?;
            self.commit(&mut state, batch)?;
            snapshot
        };
        self.assign_after();
        Ok(self.task(&moved.id).unwrap_or(moved))
    }

    /// [`Router::keep_for_callback_once`] as a change of its own (tests: a contact that ends
    /// goes through [`Router::customer_left`]).
    #[cfg(test)]
    pub(crate) fn keep_for_callback(&self, id: &str, number: &str) -> Result<Task, RouterError> {
        self.changing(|| self.keep_for_callback_once(&mut None, id, number))
    }

    /// The caller asked to be called back: the task keeps its place, records the number, and
    /// no longer reports to the (ended) contact.
    fn keep_for_callback_once(
        &self,
        riding: &mut Option<&Batch>,
        id: &str,
        number: &str,
    ) -> Result<Task, RouterError> {
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(id)
            .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
        if let Value::Object(map) = &mut task.attributes {
            map.insert("callback".into(), Value::from(number));
        }
        task.callback = Some(Callback {
            number: number.to_string(),
            contact: task.contact.clone(),
            attempts: Vec::new(),
            next_at_ms: 0,
        });
        task.contact = None;
        let snapshot = task.clone();
        let mut batch = Batch::new();
        stage_task(&mut batch, &snapshot)?;
        persistence::ride(&mut batch, riding);
        self.commit(&mut state, batch)?;
        Ok(snapshot)
    }

    /// The agent holding a call puts the caller on hold (`on`) or takes them back: the call's
    /// channel plays music to the caller meanwhile; the time on hold is kept on the task.
    /// Asking for the state the call is already in changes nothing.
    pub fn hold(&self, worker: &str, id: &str, on: bool) -> Result<Task, RouterError> {
        self.changing(|| {
            let mut state = self.lock();
            let now = (self.clock)();
            let t = open_conversation(&state.tasks, worker, id)?;
            if t.channel != Channel::Voice {
                return Err(RouterError::Conflict(format!(
                    "task {id} is not a call: only a caller can be put on hold"
                )));
            }
            if t.consult.is_some() {
                return Err(RouterError::Conflict(format!(
                    "task {id} is consulting another agent: the caller already hears music"
                )));
            }
            if t.callback.is_some() {
                return Err(RouterError::Conflict(format!(
                    "task {id} is a callback: hold the customer on your phone"
                )));
            }
            if on == t.held_since_ms.is_some() {
                return Ok(t.clone());
            }
            let t = state.tasks.get_mut(id).expect("checked above");
            if on {
                t.held_since_ms = Some(now);
            } else {
                t.end_hold(now);
            }
            let snapshot = t.clone();
            self.commit_task(&mut state, snapshot)
        })
    }

    /// The agent holding a call starts a warm transfer to `agent`: the consulted agent's
    /// capacity is taken at once (no other offer reaches them meanwhile) and the call's
    /// channel rings their phone.
    pub fn consult(&self, worker: &str, id: &str, agent: &str) -> Result<Task, RouterError> {
        self.changing(|| {
            let mut state = self.lock();
            let t = open_conversation(&state.tasks, worker, id)?;
            if t.channel != Channel::Voice {
                return Err(RouterError::Conflict(format!(
                    "task {id} is not a call: a warm transfer consults on the phone; transfer it instead"
                )));
            }
            if let Some(c) = &t.consult {
                return Err(RouterError::Conflict(format!(
                    "task {id} is already consulting {} ({:?})",
                    c.agent, c.stage
                )));
            }
            if t.callback.is_some() || t.transfer_to.is_some() {
                return Err(RouterError::Conflict(format!(
                    "task {id} is a callback, or being transferred: it cannot consult"
                )));
            }
            if agent == worker {
                return Err(RouterError::Invalid(format!(
                    "{worker} holds task {id}: consult another agent"
                )));
            }
            let channel = t.channel;
            let w = state
                .agents
                .get_mut(agent)
                .ok_or_else(|| RouterError::UnknownAgent(agent.into()))?;
            if !w.available() || !w.has_room(channel) || w.reservation.is_some() {
                return Err(RouterError::Conflict(format!(
                    "{agent} is not free to take a call ({}): consult someone who is",
                    w.record.activity
                )));
            }
            *w.busy.entry(channel).or_default() += 1;
            update_idle(&mut state, agent);
            let now = (self.clock)();
            let task = state.tasks.get_mut(id).expect("checked above");
            // The consult's music replaces a hold.
            task.end_hold(now);
            task.consult = Some(Consult {
                agent: agent.to_string(),
                stage: ConsultStage::Ringing,
            });
            let snapshot = task.clone();
            state.tell(
                agent,
                NoticeKind::Consulted,
                Some(&snapshot),
                Some(format!("{worker} consults you about a call: your phone rings")),
            );
            self.commit_task(&mut state, snapshot)
        })
    }

    /// Moves a warm transfer on: the agent asks to complete or cancel it (`by` is them), or
    /// the call's channel says the two agents talk (`by` is `None`).
    pub fn consult_stage(
        &self,
        by: Option<&str>,
        id: &str,
        stage: ConsultStage,
    ) -> Result<Task, RouterError> {
        self.changing(|| {
            let mut state = self.lock();
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
            if by.is_some_and(|by| task.agent.as_deref() != Some(by)) {
                return Err(RouterError::NotYours(format!(
                    "task {id} is not a call held by {}",
                    by.unwrap_or_default()
                )));
            }
            let Some(consult) = task.consult.as_mut() else {
                return Err(RouterError::Conflict(format!(
                    "task {id} has no warm transfer under way: start one with POST /agent/v1/tasks/{id}/consult"
                )));
            };
            if matches!(consult.stage, ConsultStage::Completing | ConsultStage::Canceling) {
                return Err(RouterError::Conflict(format!(
                    "the warm transfer of task {id} is already {:?}",
                    consult.stage
                )));
            }
            consult.stage = stage;
            let snapshot = task.clone();
            self.commit_task(&mut state, snapshot)
        })
    }

    /// The call's channel ended a warm transfer: handed over (the consulted agent now holds
    /// the task, its flow hears `assigned` with them, the first agent is free), or not
    /// (`failed` says why, kept in `consult_failed`; the consulted agent is free again).
    pub fn consult_done(&self, id: &str, failed: Option<&str>) -> Result<Task, RouterError> {
        let done = self.changing(|| {
            let mut state = self.lock();
            let now = (self.clock)();
            let t = state
                .tasks
                .get(id)
                .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
            let Some(consult) = t.consult.clone() else {
                return Ok(t.clone());
            };
            let (channel, holder) = (t.channel, t.agent.clone());
            // Whoever is no longer on the call gets their capacity back.
            let freed = match failed {
                None => holder.clone(),
                Some(_) => Some(consult.agent.clone()),
            };
            let mut batch = Batch::new();
            if let Some(freed) = &freed
                && let Some(w) = state.agents.get_mut(freed)
            {
                if let Some(n) = w.busy.get_mut(&channel) {
                    *n = n.saturating_sub(1);
                }
                w.record.idle_since_ms = now;
                stage_agent(&mut batch, &w.record)?;
                update_idle(&mut state, freed);
            }
            let task = state.tasks.get_mut(id).expect("checked above");
            task.consult = None;
            if let Value::Object(map) = &mut task.attributes {
                match failed {
                    Some(why) => {
                        map.insert("consult_failed".into(), why.into());
                    }
                    None => {
                        map.remove("consult_failed");
                        map.insert("transferred_from".into(), holder.unwrap_or_default().into());
                    }
                }
            }
            if failed.is_none() {
                task.agent = Some(consult.agent.clone());
            }
            let snapshot = task.clone();
            state.tell(
                &consult.agent,
                NoticeKind::ConsultOver,
                Some(&snapshot),
                Some(match failed {
                    None => "the call is yours".to_string(),
                    Some(why) => format!("the call went back: {why}"),
                }),
            );
            stage_task(&mut batch, &snapshot)?;
            if failed.is_none() {
                self.stage_news(
                    &mut batch,
                    &snapshot,
                    News::of(crate::contract::TaskStatus::Assigned),
                )?;
            }
            self.commit(&mut state, batch)?;
            Ok(snapshot)
        })?;
        self.assign_after();
        Ok(done)
    }

    /// Callback tasks an agent holds whose next attempt is due: none under way, the customer
    /// not reached yet, the retry interval over.
    pub fn callbacks_due(&self) -> Vec<Task> {
        let now = (self.clock)();
        self.lock()
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Assigned)
            .filter(|t| {
                t.callback.as_ref().is_some_and(|c| {
                    c.open_attempt().is_none() && !c.reached() && c.next_at_ms <= now
                })
            })
            .cloned()
            .collect()
    }

    /// Starts the next attempt of a due callback on `node`, durably, before anything is
    /// dialed: `None` when it is not due (any more), as when another node took it.
    pub fn begin_callback_attempt(
        &self,
        id: &str,
        node: &str,
    ) -> Result<Option<(Task, u32)>, RouterError> {
        self.changing(|| {
            let mut state = self.lock();
            let now = (self.clock)();
            let Some(task) = state.tasks.get_mut(id) else {
                return Ok(None);
            };
            let Some(callback) = task.callback.as_mut() else {
                return Ok(None);
            };
            let due = task.status == TaskStatus::Assigned
                && callback.open_attempt().is_none()
                && !callback.reached()
                && callback.next_at_ms <= now;
            if !due {
                return Ok(None);
            }
            let n = callback.attempts.len() as u32 + 1;
            callback.attempts.push(CallbackAttempt {
                n,
                node: node.to_string(),
                started_ms: now,
                ended_ms: None,
                result: None,
                answered: false,
                agent_missed: false,
            });
            let snapshot = task.clone();
            let mut batch = Batch::new();
            stage_task(&mut batch, &snapshot)?;
            self.commit(&mut state, batch)?;
            Ok(Some((snapshot, n)))
        })
        .and_then(|claimed| {
            // On disk before anything is dialed: a node stopping now finds it after restart.
            self.flush()?;
            Ok(claimed)
        })
    }

    /// Records how attempt `n` of a callback went: answered, or why not. After the customer
    /// was missed the next attempt waits for the queue's `callback_retry_secs`; after the
    /// last of its `callback_attempts` the task is canceled with the reason, freeing the
    /// agent. An agent's phone that failed costs the customer no attempt (see
    /// [`AttemptEnd::AgentMissed`]).
    pub fn end_callback_attempt(
        &self,
        id: &str,
        n: u32,
        end: AttemptEnd,
    ) -> Result<Task, RouterError> {
        let outcome = match end {
            AttemptEnd::Answered => Ok(()),
            AttemptEnd::Missed(why) => Err(why),
            AttemptEnd::AgentMissed(why) => {
                let done = self.changing(|| self.callback_agent_missed(id, n, why.clone()))?;
                self.flush()?;
                self.assign_after();
                return Ok(self.task(id).unwrap_or(done));
            }
        };
        let done = self.changing(|| {
            let mut state = self.lock();
            let now = (self.clock)();
            let (retry_secs, max) = {
                let t = state
                    .tasks
                    .get(id)
                    .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
                state.queues.get(&t.queue).map_or((60, 3), |q| {
                    (q.config.callback_retry_secs, q.config.callback_attempts)
                })
            };
            let task = state.tasks.get_mut(id).expect("checked above");
            let Some(callback) = task.callback.as_mut() else {
                return Err(RouterError::Conflict(format!(
                    "task {id} is not a callback"
                )));
            };
            let Some(attempt) = callback.attempts.iter_mut().find(|a| a.n == n) else {
                return Err(RouterError::Conflict(format!(
                    "callback {id} has no attempt {n}"
                )));
            };
            if attempt.ended_ms.is_some() {
                // Told twice (a webhook sent again, two reports of one end): the first stands.
                return Ok(task.clone());
            }
            attempt.ended_ms = Some(now);
            attempt.answered = outcome.is_ok();
            attempt.result = Some(match &outcome {
                Ok(()) => "answered".into(),
                Err(why) => why.clone(),
            });
            callback.next_at_ms = now + retry_secs * 1000;
            let attempts = callback.customer_attempts();
            let give_up = match &outcome {
                Err(why) if attempts >= max && task.status == TaskStatus::Assigned => {
                    Some(format!(
                        "the customer could not be reached after {attempts} attempts (last: {why})"
                    ))
                }
                _ => None,
            };
            let snapshot = task.clone();
            let mut batch = Batch::new();
            let snapshot = match give_up {
                Some(reason) => self.finish(
                    &mut batch,
                    &mut state,
                    id,
                    TaskStatus::Canceled,
                    None,
                    Some(reason),
                )?,
                None => {
                    stage_task(&mut batch, &snapshot)?;
                    snapshot
                }
            };
            self.commit(&mut state, batch)?;
            Ok(snapshot)
        })?;
        self.flush()?;
        self.assign_after();
        Ok(done)
    }

    /// The agent's phone failed on attempt `n` of a callback, before the customer was dialed:
    /// the attempt is recorded without counting against the customer, the agent is made
    /// unavailable (their phone is not answering) and the task goes back to its queue for the
    /// next agent, dialed as soon as one accepts.
    fn callback_agent_missed(&self, id: &str, n: u32, why: String) -> Result<Task, RouterError> {
        let mut state = self.lock();
        let now = (self.clock)();
        let task = state
            .tasks
            .get_mut(id)
            .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
        let agent = task.agent.clone();
        let Some(attempt) = task
            .callback
            .as_mut()
            .and_then(|c| c.attempts.iter_mut().find(|a| a.n == n))
        else {
            return Err(RouterError::Conflict(format!(
                "callback {id} has no attempt {n}"
            )));
        };
        if attempt.ended_ms.is_some() {
            return Ok(task.clone());
        }
        attempt.ended_ms = Some(now);
        attempt.agent_missed = true;
        attempt.result = Some(why.clone());
        let mut batch = Batch::new();
        let (Some(agent), TaskStatus::Assigned) = (agent, task.status) else {
            let snapshot = task.clone();
            stage_task(&mut batch, &snapshot)?;
            self.commit(&mut state, batch)?;
            return Ok(snapshot);
        };
        if let Some(c) = task.callback.as_mut() {
            c.next_at_ms = now;
        }
        let queue = task.queue.clone();
        let snapshot = requeue(&mut batch, &mut state, id, &queue, None, now, |_, _| {})?;
        if let Some(w) = state.agents.get_mut(&agent) {
            tracing::warn!(
                agent,
                task = id,
                why,
                "the agent's phone failed a callback; made unavailable"
            );
            stage_activity(&mut batch, &mut w.record, "unavailable", now)?;
            stage_agent(&mut batch, &w.record)?;
            update_idle(&mut state, &agent);
        }
        state.tell(
            &agent,
            NoticeKind::Activity,
            Some(&snapshot),
            Some(format!(
                "your phone did not take a callback ({why}): you are unavailable, and the callback went back to {queue}"
            )),
        );
        self.commit(&mut state, batch)?;
        Ok(snapshot)
    }

    /// Ends the attempts `node` had under way when it stopped: recorded as interrupted and
    /// never dialed again (the next attempt follows the retry interval). Returns how many.
    pub fn interrupted_callbacks(&self, node: &str) -> Result<usize, RouterError> {
        let open: Vec<(String, u32)> = self
            .lock()
            .tasks
            .values()
            .filter_map(|t| {
                let attempt = t.callback.as_ref()?.open_attempt()?;
                (attempt.node == node).then(|| (t.id.clone(), attempt.n))
            })
            .collect();
        for (id, n) in &open {
            let why = "interrupted: the node stopped during this attempt (not dialed again)";
            self.end_callback_attempt(id, *n, AttemptEnd::Missed(why.into()))?;
        }
        Ok(open.len())
    }

    /// Cancels an open task (a supervisor, a timeout); the contact's flow hears `canceled`.
    pub fn cancel(&self, task: &str, reason: &str) -> Result<Task, RouterError> {
        self.changing(|| self.cancel_once(task, reason))
    }

    /// Cancels an open task (a supervisor, a timeout); the contact's flow hears `canceled`.
    fn cancel_once(&self, task: &str, reason: &str) -> Result<Task, RouterError> {
        self.cancel_and_tell(&mut None, task, reason, true)
    }

    /// The contact of open task `task` ended: its customer hung up or left (`lost_with_node`:
    /// the call went with the node that carried it). Decided on the task as it stands once
    /// this node has caught up with the others, in one change: a callback the flow asked for
    /// keeps the task's place as a call to make; a conversation under way ends (wrap-up
    /// follows), or is cut off, freeing the agent at once, when the node was lost; a task
    /// waiting or on offer is canceled. `None` when the task is not that contact's.
    pub fn customer_left(
        &self,
        task: &str,
        contact: &str,
        callback: Option<&str>,
        lost_with_node: bool,
    ) -> Result<Option<Task>, RouterError> {
        self.changing(|| {
            self.customer_left_once(&mut None, task, contact, callback, lost_with_node)
        })
    }

    /// As [`Router::customer_left`], in one commit with `step` (the contact's last step):
    /// the contact never ends with its task left open, and the two cost one transaction.
    /// `step` is committed only when the answer is [`Settled::Together`] (or, perhaps,
    /// [`Settled::Failed`]); it is the caller's to commit alone otherwise.
    pub fn customer_left_with(
        &self,
        step: &Batch,
        task: &str,
        contact: &str,
        callback: Option<&str>,
        lost_with_node: bool,
    ) -> Result<Settled, RouterError> {
        self.changing(|| {
            let mut riding = Some(step);
            let done =
                self.customer_left_once(&mut riding, task, contact, callback, lost_with_node);
            let tried = riding.is_none();
            match done {
                Ok(_) if tried => Ok(Settled::Together),
                Ok(_) => Ok(Settled::Apart),
                // Refused by one of the step's own checks (another node stepped the contact
                // first): the caller runs the step again; this change is not tried again.
                Err(RouterError::Store(e @ StoreError::Conflict { .. }))
                    if tried && persistence::checked_by(step, &e) =>
                {
                    Ok(Settled::Failed(e))
                }
                // The link failed with the commit under way: whether it landed is for the
                // caller to find out (the router reads itself back before its next change).
                Err(RouterError::Store(e))
                    if tried && !matches!(e, StoreError::Conflict { .. }) =>
                {
                    Ok(Settled::Failed(e))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn customer_left_once(
        &self,
        riding: &mut Option<&Batch>,
        task: &str,
        contact: &str,
        callback: Option<&str>,
        lost_with_node: bool,
    ) -> Result<Option<Task>, RouterError> {
        let status = match self.lock().tasks.get(task) {
            Some(t) if t.contact.as_deref() == Some(contact) => t.status,
            Some(_) => return Ok(None),
            None => return Err(RouterError::UnknownTask(task.into())),
        };
        let done = match (callback, status) {
            (Some(number), _) => self.keep_for_callback_once(riding, task, number)?,
            (None, TaskStatus::Assigned) if lost_with_node => self.withdraw_once(
                riding,
                task,
                "node-lost: the call was lost with the node that carried it",
            )?,
            (None, TaskStatus::Assigned | TaskStatus::Wrapping) => {
                self.wrap_once(riding, None, task, Some("the customer left".into()), false)?
            }
            (None, _) => self.withdraw_once(riding, task, "the customer left")?,
        };
        Ok(Some(done))
    }

    /// [`Router::withdraw_once`] as a change of its own (tests: a contact that ends goes
    /// through [`Router::customer_left`]).
    #[cfg(test)]
    pub(crate) fn withdraw(&self, task: &str, reason: &str) -> Result<Task, RouterError> {
        self.changing(|| self.withdraw_once(&mut None, task, reason))
    }

    /// Cancels the open task of a contact that has ended: nobody is left to tell.
    fn withdraw_once(
        &self,
        riding: &mut Option<&Batch>,
        task: &str,
        reason: &str,
    ) -> Result<Task, RouterError> {
        self.cancel_and_tell(riding, task, reason, false)
    }

    fn cancel_and_tell(
        &self,
        riding: &mut Option<&Batch>,
        task: &str,
        reason: &str,
        tell: bool,
    ) -> Result<Task, RouterError> {
        let done = {
            let mut state = self.lock();
            let t = state
                .tasks
                .get(task)
                .ok_or_else(|| RouterError::UnknownTask(task.into()))?;
            if t.status.is_final() {
                return Err(RouterError::Conflict(format!(
                    "task {task} is already {:?}",
                    t.status
                )));
            }
            if t.status == TaskStatus::Wrapping {
                // Its conversation happened and its flow heard `completed`.
                return Err(RouterError::Conflict(format!(
                    "task {task} is in wrap-up (its conversation is over): the agent completes it, or the wrap-up time does"
                )));
            }
            // A waiting task nobody was offered, whose customer left: its end changes
            // nothing else (a cancel someone asked for is a router change, seen at once by
            // every node).
            let scope = if !tell
                && t.status == TaskStatus::Pending
                && t.agent.is_none()
                && t.reservation.is_none()
                && t.consult.is_none()
            {
                persistence::Scope::Task
            } else {
                persistence::Scope::Router
            };
            let mut batch = Batch::new();
            let done = self.finish(
                &mut batch,
                &mut state,
                task,
                TaskStatus::Canceled,
                None,
                Some(reason.to_string()),
            )?;
            if tell {
                let news = News::of(crate::contract::TaskStatus::Canceled);
                self.stage_news(&mut batch, &done, news)?;
            }
            persistence::ride(&mut batch, riding);
            self.commit_as(&mut state, batch, scope)?;
            done
        };
        self.assign_after();
        Ok(done)
    }

    fn finish(
        &self,
        batch: &mut Batch,
        state: &mut State,
        id: &str,
        status: TaskStatus,
        wrapup: Option<String>,
        reason: Option<String>,
    ) -> Result<Task, RouterError> {
        let now = (self.clock)();
        let mut task = state
            .tasks
            .remove(id)
            .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
        state.plans.remove(id);
        task.end_hold(now);
        let was = task.status;
        let reservation = task.clear_offer();
        if let Some(r) = &reservation {
            state.reservations.remove(r);
        }
        if let Some(q) = state.queues.get_mut(&task.queue) {
            q.waiting.remove(&waiting_key(q.config.order, &task));
            if status == TaskStatus::Canceled {
                stage_queue_event(batch, q, now, &task.id, QueueEvent::Abandoned)?;
            }
        }
        if let Some(name) = task.agent.clone()
            && let Some(w) = state.agents.get_mut(&name)
        {
            if reservation.is_some() && w.reservation == reservation {
                w.reservation = None;
            }
            if let Some(n) = w.busy.get_mut(&task.channel) {
                *n = n.saturating_sub(1);
            }
            w.record.idle_since_ms = now;
            stage_agent(batch, &w.record)?;
            update_idle(state, &name);
        }
        // A warm transfer that never ended: the consulted agent is free again.
        if let Some(consult) = task.consult.take()
            && let Some(w) = state.agents.get_mut(&consult.agent)
        {
            if let Some(n) = w.busy.get_mut(&task.channel) {
                *n = n.saturating_sub(1);
            }
            update_idle(state, &consult.agent);
        }
        task.status = status;
        task.wrapup = wrapup;
        task.reason = reason;
        task.wrapup_until_ms = None;
        task.ended_ms = Some(now);
        stage_task(batch, &task)?;
        stage_task_log(batch, &task)?;
        batch.delete(Tree::OpenTasks, task.id.as_bytes());
        if was != TaskStatus::Reserved
            && let Some(agent) = &task.agent
        {
            let key = crate::store::keys::agent_history(agent, now, &task.id);
            batch.put_json(Tree::AgentHistory, key.into_bytes(), &task.id)?;
        }
        // The agent's own completion is answered, not pushed; one the clock made is pushed.
        if let Some(agent) = &task.agent
            && (status != TaskStatus::Completed || task.reason.is_some())
        {
            let kind = match (was, status) {
                (TaskStatus::Reserved, _) => NoticeKind::Rescinded,
                (_, TaskStatus::Canceled) => NoticeKind::Canceled,
                _ => NoticeKind::Completed,
            };
            state.tell(agent, kind, Some(&task), task.reason.clone());
        }
        Ok(task)
    }

    /// Moves time on: expires reservations (the task goes to the next agent; an agent who
    /// misses three in a row is made `unavailable`), escalates tasks whose target timed out,
    /// and gives up tasks past their timeout.
    pub fn tick(&self) -> Result<(), RouterError> {
        self.changing(|| self.tick_once())
    }

    fn tick_once(&self) -> Result<(), RouterError> {
        let now = (self.clock)();
        let mut timed_out = Vec::new();
        {
            let mut state = self.lock();
            let mut batch = Batch::new();
            let expired: Vec<Reservation> = state
                .reservations
                .values()
                .filter(|r| r.expires_ms <= now)
                .cloned()
                .collect();
            for r in expired {
                let task = release_reservation(&mut batch, &mut state, &r)?;
                state.tell(
                    &r.agent,
                    NoticeKind::TimedOut,
                    Some(&task),
                    Some("the offer was not answered in time".into()),
                );
                let mut unavailable = false;
                if let Some(w) = state.agents.get_mut(&r.agent) {
                    w.record.missed_in_a_row += 1;
                    if w.record.missed_in_a_row >= MAX_MISSED {
                        tracing::warn!(agent = %r.agent, "agent let {MAX_MISSED} reservations time out in a row; made unavailable");
                        stage_activity(&mut batch, &mut w.record, "unavailable", now)?;
                        unavailable = true;
                    }
                    stage_agent(&mut batch, &w.record)?;
                    update_idle(&mut state, &r.agent);
                }
                if unavailable {
                    state.tell(
                        &r.agent,
                        NoticeKind::Activity,
                        None,
                        Some(format!("{MAX_MISSED} offers in a row were not answered")),
                    );
                }
            }
            let mut waits = Vec::new();
            for task in state.tasks.values() {
                let Some(contact) = &task.contact else {
                    continue;
                };
                let Some(queue) = state.queues.get(&task.queue) else {
                    continue;
                };
                let every = queue.config.wait_event_secs * 1000;
                if every > 0
                    && matches!(task.status, TaskStatus::Pending | TaskStatus::Reserved)
                    && now >= task.last_wait_ms + every
                {
                    let key = waiting_key(queue.config.order, task);
                    let position = queue.waiting.range(..=key).count().max(1) as u32;
                    waits.push((
                        task.id.clone(),
                        contact.clone(),
                        task.queue.clone(),
                        ((now - task.created_ms) / 1000) as u32,
                        position,
                    ));
                }
            }
            for (id, contact, queue, waited_secs, position) in waits {
                if let Some(task) = state.tasks.get_mut(&id) {
                    task.last_wait_ms = now;
                    stage_task(&mut batch, task)?;
                }
                let news = News::Waiting {
                    waited_secs,
                    position,
                };
                self.stage_outcome(&mut batch, &contact, &queue, news, None)?;
            }
            let mut escalate = Vec::new();
            // Wrap-up whose time ran out: the task completes by itself, the agent is free.
            let mut wrapped = Vec::new();
            for task in state.tasks.values() {
                if task.status == TaskStatus::Wrapping
                    && task.wrapup_until_ms.is_some_and(|until| until <= now)
                {
                    wrapped.push(task.id.clone());
                }
                if task.status == TaskStatus::Pending {
                    if task.timeout_ms <= now {
                        timed_out.push(task.id.clone());
                        continue;
                    }
                    let Some(targets) = targets_of(&state, task) else {
                        continue;
                    };
                    if let Some((_, timeout)) = targets.get(task.target)
                        && *timeout > 0
                        && task.target + 1 < targets.len()
                        && now >= task.target_since_ms + timeout * 1000
                    {
                        escalate.push(task.id.clone());
                    }
                }
            }
            for id in escalate {
                if let Some(task) = state.tasks.get_mut(&id) {
                    task.target += 1;
                    task.target_since_ms = now;
                    task.passed_by.clear();
                    stage_task(&mut batch, task)?;
                }
            }
            for id in &wrapped {
                let notes = state.tasks.get(id).and_then(|t| t.wrapup.clone());
                self.finish(
                    &mut batch,
                    &mut state,
                    id,
                    TaskStatus::Completed,
                    notes,
                    Some("wrap-up time ran out".into()),
                )?;
            }
            for id in &timed_out {
                let task = self.finish(
                    &mut batch,
                    &mut state,
                    id,
                    TaskStatus::Canceled,
                    None,
                    Some("timed out waiting for an agent".into()),
                )?;
                let news = News::of(crate::contract::TaskStatus::TimedOut);
                self.stage_news(&mut batch, &task, news)?;
            }
            if !batch.is_empty()
                && let Some(fence) = &*self.fence.lock().unwrap_or_else(|p| p.into_inner())
            {
                // Only the leader runs the clock: refused if another node took over.
                batch.expect(Tree::Meta, keys::ROUTER_EPOCH, Some(fence));
            }
            self.commit(&mut state, batch)?;
        }
        self.assign_after();
        Ok(())
    }

    fn assign_all(&self) -> Result<(), RouterError> {
        // Only queues with a task waiting, and none while no agent is idle: this runs after
        // every change, and most changes leave nothing to offer.
        let names: Vec<String> = {
            let state = self.lock();
            if state.idle.is_empty() {
                return Ok(());
            }
            state
                .queues
                .iter()
                .filter(|(_, q)| !q.waiting.is_empty())
                .map(|(name, _)| name.clone())
                .collect()
        };
        for name in names {
            self.assign_queue(&name)?;
        }
        Ok(())
    }

    /// Offers the queue's waiting tasks, best first, to the longest-idle eligible agents.
    fn assign_queue(&self, queue: &str) -> Result<(), RouterError> {
        self.assign_queue_with(queue, Batch::new())
    }

    /// [`Router::assign_queue`], committing `batch` with the offers made.
    fn assign_queue_with(&self, queue: &str, batch: Batch) -> Result<(), RouterError> {
        let notices = self.assign_locked(&mut self.lock(), queue, batch)?;
        self.notify(notices);
        Ok(())
    }

    /// Tells agents' live connections of new offers. Nobody listening is fine: the agent
    /// sees them on the next poll.
    fn notify(&self, notices: Vec<Notice>) {
        for notice in notices {
            let _ = self.notices.send(notice);
        }
    }

    /// Offers `queue`'s waiting tasks and commits `batch` with the offers, under the lock
    /// the caller holds; returns the notices to send once the lock is released.
    fn assign_locked(
        &self,
        state: &mut State,
        queue: &str,
        mut batch: Batch,
    ) -> Result<Vec<Notice>, RouterError> {
        let idle = match state.queues.get(queue) {
            Some(q) => !q.waiting.is_empty() && !state.idle.is_empty(),
            None => false,
        };
        if !idle {
            self.commit(state, batch)?;
            return Ok(Vec::new());
        }
        // Read the clock only when there is work: this runs for every queue after each change.
        let now = (self.clock)();
        let waiting: Vec<String> = state.queues[queue]
            .waiting
            .iter()
            .map(|(_, _, id)| id.clone())
            .collect();
        let mut notices = Vec::new();
        for id in waiting {
            if state.idle.is_empty() {
                break;
            }
            let Some(worker) = pick_agent(state, queue, &id) else {
                continue;
            };
            let reservation_timeout = state.queues[queue].config.reservation_timeout_secs;
            let reservation = Reservation {
                id: new_id("rs_"),
                task: id.clone(),
                agent: worker.clone(),
                expires_ms: now + reservation_timeout * 1000,
            };
            let key = waiting_key(state_order(state, queue), &state.tasks[&id]);
            let task = state.tasks.get_mut(&id).expect("waiting tasks exist");
            task.status = TaskStatus::Reserved;
            task.agent = Some(worker.clone());
            task.reservation = Some(reservation.id.clone());
            task.reserved_until_ms = Some(reservation.expires_ms);
            let snapshot = task.clone();
            let channel = snapshot.channel;
            state
                .queues
                .get_mut(queue)
                .expect("queue exists")
                .waiting
                .remove(&key);
            let w = state.agents.get_mut(&worker).expect("picked workers exist");
            w.reservation = Some(reservation.id.clone());
            *w.busy.entry(channel).or_default() += 1;
            update_idle(state, &worker);
            stage_task(&mut batch, &snapshot)?;
            state
                .reservations
                .insert(reservation.id.clone(), reservation.clone());
            notices.push(Notice {
                agent: worker,
                kind: NoticeKind::Reservation,
                reservation: Some(reservation),
                task: Some(snapshot),
                activity: None,
                reason: None,
            });
        }
        self.commit(state, batch)?;
        Ok(notices)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), RouterError> {
        Ok(self.store.flush()?)
    }
}

/// Puts an assigned task back in `queue` (its own or another), freeing its agent's capacity:
/// pending again, offered only to `only` when given (until they pass), not again to the agent
/// who held it. `note` adds to its attributes what the move should leave on it (it gets the
/// queue the task came from). Returns the task.
/// Task `id`, when it is an open conversation (assigned, not wrapping) of `worker`.
fn open_conversation<'a>(
    tasks: &'a HashMap<String, Task>,
    worker: &str,
    id: &str,
) -> Result<&'a Task, RouterError> {
    let t = tasks
        .get(id)
        .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
    if t.agent.as_deref() != Some(worker) || t.status != TaskStatus::Assigned {
        return Err(RouterError::NotYours(format!(
            "task {id} is not an open conversation of {worker}"
        )));
    }
    Ok(t)
}

fn requeue(
    batch: &mut Batch,
    state: &mut State,
    id: &str,
    queue: &str,
    only: Option<String>,
    now: u64,
    note: impl FnOnce(&mut serde_json::Map<String, Value>, &str),
) -> Result<Task, RouterError> {
    let timeout_secs = state
        .queues
        .get(queue)
        .ok_or_else(|| RouterError::UnknownQueue(queue.into()))?
        .config
        .task_timeout_secs;
    let t = state
        .tasks
        .get(id)
        .ok_or_else(|| RouterError::UnknownTask(id.into()))?;
    let (channel, holder) = (t.channel, t.agent.clone());
    if let Some(holder) = &holder {
        if let Some(w) = state.agents.get_mut(holder) {
            if let Some(n) = w.busy.get_mut(&channel) {
                *n = n.saturating_sub(1);
            }
            w.record.idle_since_ms = now;
            stage_agent(batch, &w.record)?;
        }
        update_idle(state, holder);
    }
    let task = state.tasks.get_mut(id).expect("checked above");
    task.end_hold(now);
    let from = std::mem::replace(&mut task.queue, queue.to_string());
    task.status = TaskStatus::Pending;
    task.agent = None;
    task.target = 0;
    task.target_since_ms = now;
    task.timeout_ms = now + timeout_secs * 1000;
    task.passed_by = holder.into_iter().collect();
    task.plan = None;
    task.only = only;
    task.transfer_to = None;
    if let Value::Object(map) = &mut task.attributes {
        note(map, &from);
    }
    let snapshot = task.clone();
    state.plans.remove(id);
    let q = state.queues.get_mut(queue).expect("checked above");
    q.waiting.insert(waiting_key(q.config.order, &snapshot));
    stage_task(batch, &snapshot)?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests;
