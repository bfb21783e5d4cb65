//! The task router's records, as stored and as the API shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::Channel;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RouterTaskStatus)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// Waiting for an agent.
    Pending,
    /// Offered to one agent, who has not answered yet.
    Reserved,
    /// An agent took it.
    Assigned,
    /// Done; the agent is wrapping up.
    Wrapping,
    /// Finished.
    Completed,
    /// Given up: canceled, or nobody took it before its timeout.
    Canceled,
}

impl TaskStatus {
    /// Whether the task is over.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Canceled)
    }
}

/// Order of a queue's waiting tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Higher priority first, then the oldest.
    #[default]
    Priority,
    /// The oldest first, whatever the priority.
    Fifo,
}

/// One step of a queue's routing plan: who may take the task, for how long, before the
/// plan escalates to the next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Target {
    /// CEL over `agent` and `task`; empty means every member of the queue. Read also as
    /// `workers`, the name it had before.
    #[serde(default, alias = "workers")]
    pub agents: String,
    /// Seconds before escalating to the next target; 0 means stay here.
    #[serde(default)]
    pub timeout_secs: u64,
}

/// A queue and its routing plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueConfig {
    /// The queue's name.
    #[serde(default)]
    pub name: String,
    /// CEL over `worker`: who belongs to the queue. Empty means every worker.
    #[serde(default)]
    pub members: String,
    /// Order of waiting tasks.
    #[serde(default)]
    pub order: Order,
    /// A task answered within this many seconds counts as within the service level.
    #[serde(default = "default_sla")]
    pub sla_secs: u64,
    /// How long an agent has to accept a reservation.
    #[serde(default = "default_reservation_timeout")]
    pub reservation_timeout_secs: u64,
    /// A task waiting longer than this is given up (its flow hears `timed-out`).
    #[serde(default = "default_task_timeout")]
    pub task_timeout_secs: u64,
    /// Every this many seconds a waiting contact's flow hears `queue-wait` (its place in line,
    /// the time waited), to speak to the caller or offer a callback. 0: never.
    #[serde(default)]
    pub wait_event_secs: u64,
    /// The routing plan: targets tried in order. Empty means one target: every member.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// After-contact work: once the conversation ends, the agent has this many seconds of
    /// wrap-up (the task `wrapping`, the agent's capacity still taken) before the task
    /// completes by itself. 0: no wrap-up time (unless a disposition is required, the task
    /// completes when the conversation ends).
    #[serde(default)]
    pub wrapup_secs: u64,
    /// The disposition codes an agent picks from when completing a task of this queue
    /// (`sale`, `refund`, ...). Empty: no codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dispositions: Vec<String>,
    /// Whether completing a task of this queue needs a disposition (then a task whose
    /// conversation ended waits in `wrapping` for the agent's code: without a limit when
    /// `wrapup_secs` is 0, else until the wrap-up time runs out, when it completes without
    /// one).
    #[serde(default)]
    pub disposition_required: bool,
    /// Callbacks of this queue: how many times the customer's number is dialed before the
    /// task is given up (canceled, with why).
    #[serde(default = "default_callback_attempts")]
    pub callback_attempts: u32,
    /// Callbacks of this queue: seconds between a failed attempt (busy, no answer) and the
    /// next.
    #[serde(default = "default_callback_retry")]
    pub callback_retry_secs: u64,
    /// Reports: a task abandoned after waiting less than this many seconds is a short
    /// abandon (a misdial, a caller who changed their mind), counted apart and not against
    /// the service level.
    #[serde(default = "default_short_abandon")]
    pub short_abandon_secs: u64,
}

impl QueueConfig {
    /// A queue every agent belongs to, with the defaults the API gives.
    pub fn named(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.to_string(),
            members: String::new(),
            order: Order::default(),
            sla_secs: default_sla(),
            reservation_timeout_secs: default_reservation_timeout(),
            task_timeout_secs: default_task_timeout(),
            wait_event_secs: 0,
            targets: Vec::new(),
            wrapup_secs: 0,
            dispositions: Vec::new(),
            disposition_required: false,
            callback_attempts: default_callback_attempts(),
            callback_retry_secs: default_callback_retry(),
            short_abandon_secs: default_short_abandon(),
        }
    }

    /// Whether a task of this queue whose conversation ended waits in `wrapping`.
    pub fn wraps_up(&self) -> bool {
        self.wrapup_secs > 0 || self.disposition_required
    }

    /// Checks an agent's disposition against the queue's codes.
    pub fn check_disposition(&self, disposition: Option<&str>) -> Result<(), String> {
        match disposition {
            None if self.disposition_required => Err(format!(
                "queue {} needs a disposition to complete a task: send \"disposition\" with one of {}",
                self.name,
                self.dispositions.join(", ")
            )),
            Some(code) if !self.dispositions.iter().any(|d| d == code) => {
                Err(if self.dispositions.is_empty() {
                    format!(
                        "queue {} has no disposition codes: define them with the queue (\"dispositions\") or complete without one",
                        self.name
                    )
                } else {
                    format!(
                        "{code:?} is not a disposition of queue {}: use one of {}",
                        self.name,
                        self.dispositions.join(", ")
                    )
                })
            }
            _ => Ok(()),
        }
    }
}

/// Abandons shorter than this many seconds are short unless a queue says otherwise.
pub const DEFAULT_SHORT_ABANDON_SECS: u64 = 5;

fn default_short_abandon() -> u64 {
    DEFAULT_SHORT_ABANDON_SECS
}

fn default_sla() -> u64 {
    30
}

fn default_reservation_timeout() -> u64 {
    30
}

fn default_task_timeout() -> u64 {
    3600
}

fn default_callback_attempts() -> u32 {
    3
}

fn default_callback_retry() -> u64 {
    60
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRecord {
    /// Unique name (login).
    pub name: String,
    /// Skills, languages, level...: what expressions see as `worker`.
    pub attributes: serde_json::Value,
    /// `available` takes tasks; any other activity (`break`, `offline`, `unavailable`) does not.
    pub activity: String,
    /// How many tasks of each channel at once (voice 1, chat 3...).
    pub capacity: BTreeMap<Channel, u32>,
    /// SHA-256 of the agent's token.
    pub token_sha256: String,
    /// The SIP digest secret of the agent's phone: MD5 of `name:switchboard:token` (RFC 2617
    /// HA1), so a phone registers with the agent's name and token and the token itself is
    /// stored nowhere.
    #[serde(default)]
    pub sip_ha1: String,
    /// Reservations let time out in a row; at 3 the agent is made `unavailable`.
    #[serde(default)]
    pub missed_in_a_row: u32,
    /// Since when (ms) the agent has been idle: the longest-idle agent is offered first, and
    /// a restart keeps the order.
    #[serde(default)]
    pub idle_since_ms: u64,
}

/// A callback the customer asked for: the number, and every attempt to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Callback {
    /// The number (or SIP URI) to call.
    pub number: String,
    /// The contact that asked for it (its trace shows what the customer did before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Every attempt so far, in order.
    #[serde(default)]
    pub attempts: Vec<CallbackAttempt>,
    /// No attempt before this time (ms): the retry interval after a failed one.
    #[serde(default)]
    pub next_at_ms: u64,
}

impl Callback {
    /// The attempt under way (started, not ended), if any.
    pub fn open_attempt(&self) -> Option<&CallbackAttempt> {
        self.attempts.last().filter(|a| a.ended_ms.is_none())
    }

    /// Whether an attempt reached the customer.
    pub fn reached(&self) -> bool {
        self.attempts.iter().any(|a| a.answered)
    }

    /// The attempts that dialed the customer (those the agent's phone failed do not count).
    pub fn customer_attempts(&self) -> u32 {
        self.attempts.iter().filter(|a| !a.agent_missed).count() as u32
    }
}

/// One dial of a callback: written before the number is dialed, so a node that stops in the
/// middle never dials the same attempt again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallbackAttempt {
    /// 1 for the first.
    pub n: u32,
    /// The node that dials it.
    pub node: String,
    /// When it started (ms).
    pub started_ms: u64,
    /// When it ended (ms); none while under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// How it went: `answered`, or why not (`busy (486 Busy Here)`, `no answer within 30 s`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The customer answered.
    #[serde(default)]
    pub answered: bool,
    /// The agent's phone failed before the customer was dialed: not one of the customer's
    /// attempts (the task went back to the queue for another agent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent_missed: bool,
}

/// How a callback attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    /// The customer answered.
    Answered,
    /// The customer was dialed and not reached (busy, no answer, a failure): counts against
    /// the queue's `callback_attempts`.
    Missed(String),
    /// The agent's phone did not answer (or the agent has none): the customer was not
    /// dialed. The agent is made unavailable and the task offered to the next agent.
    AgentMissed(String),
}

/// A warm transfer: the caller waits with music while the agent holding the call talks to
/// another agent on a consult leg, then hands the call over (complete) or takes it back
/// (cancel). The consulted agent's capacity is taken for it from the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consult {
    /// The agent consulted.
    pub agent: String,
    /// Where it stands.
    pub stage: ConsultStage,
}

/// Where a warm transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsultStage {
    /// Asked by the agent; the call's channel rings the consulted agent's phone.
    Ringing,
    /// The two agents talk; the caller hears music.
    Talking,
    /// The agent asked to hand the call over.
    Completing,
    /// The agent asked to take the call back.
    Canceling,
}

/// Where an agent transfers a conversation they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTo {
    /// Another queue: the task waits there.
    Queue(String),
    /// A named agent: the task is offered to them (then, if they pass, to its queue).
    Agent(String),
    /// A number or SIP URI (calls only): the call's channel places the leg.
    Number(String),
}

/// A contact (or any work item) waiting for, or handled by, a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// Channel (for capacity).
    pub channel: Channel,
    /// Higher first.
    pub priority: i32,
    /// What expressions see as `task`.
    pub attributes: serde_json::Value,
    /// Status.
    pub status: TaskStatus,
    /// Milliseconds since the epoch when it was created.
    pub created_ms: u64,
    /// Index of the current target of the plan.
    pub target: usize,
    /// When it reached the current target.
    pub target_since_ms: u64,
    /// Give up at this time.
    pub timeout_ms: u64,
    /// The agent it is reserved for or assigned to (read also as `worker`, the name it had
    /// before).
    #[serde(alias = "worker")]
    pub agent: Option<String>,
    /// The open reservation.
    pub reservation: Option<String>,
    /// Agents who refused it or let it time out: not offered again.
    #[serde(default)]
    pub passed_by: Vec<String>,
    /// The contact session it came from, whose flow hears what happens.
    pub contact: Option<String>,
    /// When an agent accepted it (the last one, after a transfer).
    pub assigned_ms: Option<u64>,
    /// When the first agent accepted it: the end of the customer's wait, whatever transfers
    /// followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_assigned_ms: Option<u64>,
    /// The agent's wrap-up notes.
    pub wrapup: Option<String>,
    /// The disposition code the agent gave when completing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// When its conversation ended and wrap-up began (ms), once `wrapping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping_since_ms: Option<u64>,
    /// When wrap-up ends by itself (ms), if the queue limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_until_ms: Option<u64>,
    /// When it completed or was canceled (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Why it was canceled, or completed without the agent (wrap-up time ran out).
    pub reason: Option<String>,
    /// When the contact's flow last heard `queue-wait`.
    #[serde(default)]
    pub last_wait_ms: u64,
    /// The routing plan a router component gave this task, replacing the queue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<Target>>,
    /// When the open reservation times out (ms), while the task is reserved: a restart keeps
    /// the offer and its remaining time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_until_ms: Option<u64>,
    /// Offered only to this agent (a transfer to them by name), until they pass on it; then
    /// to the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<String>,
    /// A number or SIP URI the agent holding this call asked to transfer it to: the call's
    /// channel places that leg, then clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<String>,
    /// A callback the customer asked for (the task is then a call to make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
    /// A warm transfer under way: the agent holding the call consults another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consult: Option<Consult>,
    /// Since when (ms) the agent has had the caller on hold, while they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since_ms: Option<u64>,
    /// Time (ms) the caller spent on hold so far (reports: the hold part of handle time).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hold_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Task {
    /// Ends a hold under way at `now`, adding it to the task's hold time.
    pub fn end_hold(&mut self, now: u64) {
        if let Some(since) = self.held_since_ms.take() {
            self.hold_ms += now.saturating_sub(since);
        }
    }

    /// Ends the task's open offer, if any: its id and its deadline go together.
    pub fn clear_offer(&mut self) -> Option<String> {
        self.reserved_until_ms = None;
        self.reservation.take()
    }
}

/// A router component's decision for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// Queue.
    pub queue: String,
    /// Priority.
    pub priority: i32,
    /// Targets; empty keeps the queue's.
    pub targets: Vec<Target>,
}

/// An offer of a task to one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reservation {
    /// Id.
    pub id: String,
    /// The task.
    pub task: String,
    /// The agent (read also as `worker`, the name it had before).
    #[serde(alias = "worker")]
    pub agent: String,
    /// Expiry, milliseconds since the epoch.
    pub expires_ms: u64,
}

/// A queue's live numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Queue.
    pub queue: String,
    /// Tasks by status (final ones over the stats window).
    pub tasks: BTreeMap<String, u64>,
    /// Seconds the oldest waiting task has waited.
    pub longest_wait_secs: f64,
    /// Average wait of the tasks assigned in the window.
    pub average_wait_secs: f64,
    /// Members available with free capacity.
    pub available_agents: u64,
    /// Members, whatever their activity.
    pub eligible_agents: u64,
    /// Share of tasks assigned in the window within the SLA, 0-100.
    pub sla_percent: f64,
}

/// The declarative workflow every new task goes through before it reaches a queue: the first
/// filter whose condition matches decides the queue, priority and targets; no match keeps the
/// queue the task asked for. (A router component, when deployed, decides first.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Workflow {
    /// Filters, tried in order.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// One filter of the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Filter {
    /// A name for logs and stats.
    pub name: String,
    /// CEL over `task` (its attributes, `priority`, `queue`, `channel`).
    pub when: String,
    /// The queue matching tasks go to.
    pub queue: String,
    /// Their priority (unchanged when absent).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Their targets (the queue's when empty).
    #[serde(default)]
    pub targets: Vec<Target>,
}
