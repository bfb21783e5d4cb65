//! The router's matching state, in memory and pure: queues with their waiting tasks in
//! order, agents with their capacity, the idle index (longest idle first), open offers, and
//! the choice of who is offered what. Never writes to the store and never reads the clock:
//! times come in as arguments.

use super::*;

pub(super) struct Queue {
    pub(super) config: QueueConfig,
    pub(super) members_expr: Expression,
    pub(super) targets: Vec<(Expression, u64)>,
    pub(super) members: HashSet<String>,
    /// Waiting tasks: (priority key, created, id).
    pub(super) waiting: BTreeSet<(Reverse<i32>, u64, String)>,
    /// (answered at, waited ms) of tasks answered in the stats window; a cache of
    /// [`Tree::QueueEvents`], rebuilt from it at start-up.
    pub(super) answered: VecDeque<(u64, u64)>,
    /// When tasks were abandoned (canceled or timed out) in the stats window; as `answered`.
    pub(super) canceled: VecDeque<u64>,
}

pub(super) struct Agent {
    pub(super) record: AgentRecord,
    pub(super) busy: HashMap<Channel, u32>,
    pub(super) reservation: Option<String>,
    /// Its entry in the idle index, when it has one.
    pub(super) idle_key: Option<(u64, String)>,
}

impl Agent {
    /// An agent as their stored record has them, holding nothing yet (the tasks they hold
    /// count when those are taken in); one never idle counts as idle since `now`.
    pub(super) fn from_record(mut record: AgentRecord, now: u64) -> Agent {
        if record.idle_since_ms == 0 {
            record.idle_since_ms = now;
        }
        Agent {
            record,
            busy: HashMap::new(),
            reservation: None,
            idle_key: None,
        }
    }

    pub(super) fn available(&self) -> bool {
        self.record.activity == "available" && self.reservation.is_none()
    }

    pub(super) fn has_room(&self, channel: Channel) -> bool {
        let cap = self.record.capacity.get(&channel).copied().unwrap_or(0);
        self.busy.get(&channel).copied().unwrap_or(0) < cap
    }

    pub(super) fn has_any_room(&self) -> bool {
        self.record.capacity.keys().any(|c| self.has_room(*c))
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queues: HashMap<String, Queue>,
    pub(super) agents: HashMap<String, Agent>,
    /// Available workers with room, longest idle first.
    pub(super) idle: BTreeSet<(u64, String)>,
    pub(super) tasks: HashMap<String, Task>,
    pub(super) reservations: HashMap<String, Reservation>,
    /// Compiled plans of tasks planned by a router component.
    pub(super) plans: HashMap<String, Vec<(Expression, u64)>>,
    /// Set when a change the store refused could not be undone by reading the store back:
    /// the next operation reads it back first.
    pub(super) stale: bool,
    /// The router's change counter's record as this state was read at (shared stores only;
    /// what the next change must find): its version is [`State::version`].
    pub(super) version_bytes: Option<Vec<u8>>,
    /// What a change refused by the store had changed in memory: read again with the next
    /// look ([`super::persistence::Touched`]).
    pub(super) unsure: super::persistence::Touched,
    /// When the queues' statistics windows were last read from the store (ms).
    pub(super) windows_read_ms: u64,
    /// When this state was read from the store (ms).
    pub(super) read_ms: u64,
    /// What agents' desks hear once the change being made is committed.
    pub(super) told: Vec<super::Notice>,
}

impl State {
    /// Tells `agent`'s desk of a change to their world, once it is committed.
    pub(super) fn tell(
        &mut self,
        agent: &str,
        kind: super::NoticeKind,
        task: Option<&Task>,
        reason: Option<String>,
    ) {
        let activity = (kind == super::NoticeKind::Activity)
            .then(|| self.agents.get(agent).map(|w| w.record.activity.clone()))
            .flatten();
        self.told.push(super::Notice {
            agent: agent.to_string(),
            kind,
            reservation: None,
            task: task.cloned(),
            activity,
            reason,
        });
    }
}

/// The open reservation `id`, if it is offered to `worker`.
pub(super) fn open_reservation(
    state: &State,
    worker: &str,
    id: &str,
) -> Result<Reservation, RouterError> {
    let r = state
        .reservations
        .get(id)
        .cloned()
        .ok_or_else(|| RouterError::UnknownReservation(id.into()))?;
    if r.agent != worker {
        return Err(RouterError::NotYours(format!(
            "reservation {id} is offered to another agent"
        )));
    }
    Ok(r)
}

pub(super) fn state_order(state: &State, queue: &str) -> Order {
    state
        .queues
        .get(queue)
        .map(|q| q.config.order)
        .unwrap_or_default()
}

pub(super) fn waiting_key(order: Order, task: &Task) -> (Reverse<i32>, u64, String) {
    let priority = match order {
        Order::Priority => task.priority,
        Order::Fifo => 0,
    };
    (Reverse(priority), task.created_ms, task.id.clone())
}

pub(super) fn compile_workflow(workflow: &Workflow) -> Result<Vec<Expression>, RouterError> {
    workflow
        .filters
        .iter()
        .map(|f| {
            Expression::compile(&f.when)
                .map_err(|e| RouterError::Invalid(format!("filter {:?}: {e}", f.name)))
        })
        .collect()
}

pub(super) fn compile_targets(targets: &[Target]) -> Result<Vec<(Expression, u64)>, RouterError> {
    targets
        .iter()
        .map(|t| {
            Ok((
                Expression::compile(&t.agents).map_err(RouterError::Invalid)?,
                t.timeout_secs,
            ))
        })
        .collect()
}

/// A task's targets: its own plan's, else its queue's.
pub(super) fn targets_of<'s>(state: &'s State, task: &Task) -> Option<&'s [(Expression, u64)]> {
    match state.plans.get(&task.id) {
        Some(plan) => Some(plan),
        None => state.queues.get(&task.queue).map(|q| q.targets.as_slice()),
    }
}

pub(super) fn compile_queue(config: QueueConfig) -> Result<Queue, RouterError> {
    let members_expr = Expression::compile(&config.members).map_err(RouterError::Invalid)?;
    let targets = if config.targets.is_empty() {
        vec![(Expression::compile("").map_err(RouterError::Invalid)?, 0)]
    } else {
        config
            .targets
            .iter()
            .map(|t| {
                Ok((
                    Expression::compile(&t.agents).map_err(RouterError::Invalid)?,
                    t.timeout_secs,
                ))
            })
            .collect::<Result<Vec<_>, RouterError>>()?
    };
    Ok(Queue {
        config,
        members_expr,
        targets,
        members: HashSet::new(),
        waiting: BTreeSet::new(),
        answered: VecDeque::new(),
        canceled: VecDeque::new(),
    })
}

/// Re-evaluates which workers belong to `queue` (on a queue or worker change, never per task).
pub(super) fn refresh_members(state: &mut State, queue: &str) {
    let Some(q) = state.queues.get(queue) else {
        return;
    };
    let members: HashSet<String> = state
        .agents
        .values()
        .filter(|w| q.members_expr.matches(&w.record.attributes, &Value::Null))
        .map(|w| w.record.name.clone())
        .collect();
    state.queues.get_mut(queue).expect("present").members = members;
}

/// Re-evaluates which queues one worker belongs to (after their attributes changed).
pub(super) fn refresh_membership_of(state: &mut State, name: &str) {
    let Some(w) = state.agents.get(name) else {
        return;
    };
    let attributes = w.record.attributes.clone();
    for q in state.queues.values_mut() {
        if q.members_expr.matches(&attributes, &Value::Null) {
            q.members.insert(name.to_string());
        } else {
            q.members.remove(name);
        }
    }
}

/// Puts a worker in (or takes them out of) the idle index.
pub(super) fn update_idle(state: &mut State, name: &str) {
    let Some(w) = state.agents.get_mut(name) else {
        return;
    };
    let eligible = w.available() && w.has_any_room();
    let key = eligible.then(|| (w.record.idle_since_ms, name.to_string()));
    if w.idle_key == key {
        return;
    }
    let old = std::mem::replace(&mut w.idle_key, key.clone());
    if let Some(old) = old {
        state.idle.remove(&old);
    }
    if let Some(key) = key {
        state.idle.insert(key);
    }
}

/// The longest-idle available member of `queue` with room for the task's channel, matching the
/// task's current target and not having passed on it.
pub(super) fn pick_agent(state: &State, queue: &str, task_id: &str) -> Option<String> {
    let q = state.queues.get(queue)?;
    let task = state.tasks.get(task_id)?;
    let targets = targets_of(state, task)?;
    let (target, _) = targets.get(task.target).or_else(|| targets.last())?;
    let task_view = (!target.always()).then(|| task_view(task));
    // A task transferred to a named agent goes to them (member of the queue or not) until
    // they pass on it.
    let only = task.only.as_ref().filter(|o| !task.passed_by.contains(o));
    state
        .idle
        .iter()
        .map(|(_, name)| name)
        .filter(|name| match only {
            Some(only) => *name == only,
            None => q.members.contains(*name) && !task.passed_by.contains(name),
        })
        .filter_map(|name| state.agents.get(name))
        .find(|w| {
            w.available()
                && w.has_room(task.channel)
                && (only.is_some()
                    || task_view
                        .as_ref()
                        .is_none_or(|t| target.matches(&w.record.attributes, t)))
        })
        .map(|w| w.record.name.clone())
}

pub(super) fn task_view(task: &Task) -> Value {
    let mut view = task.attributes.clone();
    if let Value::Object(map) = &mut view {
        map.insert("priority".into(), Value::from(task.priority));
        map.insert("queue".into(), Value::from(task.queue.clone()));
        map.insert(
            "channel".into(),
            serde_json::to_value(task.channel).unwrap_or_default(),
        );
    }
    view
}
