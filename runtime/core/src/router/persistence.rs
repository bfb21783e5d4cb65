//! The router's persistence: how each change is written (one batch per change: the task,
//! the agent, the contact's news, the statistics event, the open-task index) and how the
//! state is read back at start-up (queues, agents, open tasks by their index, open offers
//! with their deadlines, the statistics window). Never decides who gets what.

use super::*;
use serde::{Deserialize, Serialize};

/// How long a node's statistics windows are kept across reads of the router's state
/// before they are read from the store again (see [`Router::read_state_after`]).
pub(super) const WINDOWS_REREAD_MS: u64 = 5_000;

/// On a shared store, how long a node goes at most without reading the router back, even
/// when its version did not move: a task a contact's step made on another node (written with
/// the step, not counted as a router change until it is offered) is known to every node by
/// then.
pub(super) const READ_BACK_EVERY_MS: u64 = 5_000;

/// Set in [`Tree::Meta`] once [`Tree::OpenTasks`] indexes every open task.
pub(super) const OPEN_TASKS_INDEXED: &[u8] = b"open-tasks-indexed";

/// Stages a task's record. The open-task index changes only when a task opens
/// ([`PreparedTask::stage`]) and when it finishes ([`Router::finish`]).
pub(super) fn stage_task(batch: &mut Batch, task: &Task) -> Result<(), StoreError> {
    batch.put_json(Tree::Tasks, task.id.as_bytes(), task)
}

/// Stages an agent's record.
pub(super) fn stage_agent(batch: &mut Batch, record: &AgentRecord) -> Result<(), StoreError> {
    batch.put_json(Tree::Agents, record.name.as_bytes(), record)
}

/// Stages an agent's new activity in their state history ([`Tree::AgentStates`]), when it
/// changes: the reports' time in each state.
pub(super) fn stage_activity(
    batch: &mut Batch,
    record: &mut AgentRecord,
    activity: &str,
    at: u64,
) -> Result<(), StoreError> {
    if record.activity != activity {
        record.activity = activity.to_string();
        let key = keys::agent_state(&record.name, at);
        batch.put_json(Tree::AgentStates, key.into_bytes(), &activity)?;
    }
    Ok(())
}

/// Stages what reports count of a task that just finished ([`Tree::TaskLog`]).
pub(super) fn stage_task_log(batch: &mut Batch, task: &Task) -> Result<(), StoreError> {
    let key = keys::task_log(task.created_ms, &task.id);
    batch.put_json(
        Tree::TaskLog,
        key.into_bytes(),
        &super::reports::Finished::of(task),
    )
}

/// Stages a statistics event of a queue and adds it to the in-memory window.
pub(super) fn stage_queue_event(
    batch: &mut Batch,
    queue: &mut Queue,
    at: u64,
    task: &str,
    event: QueueEvent,
) -> Result<(), StoreError> {
    let key = keys::queue_event(&queue.config.name, at, task);
    batch.put_json(Tree::QueueEvents, key.into_bytes(), &event)?;
    match event {
        QueueEvent::Answered { waited_ms } => queue.answered.push_back((at, waited_ms)),
        QueueEvent::Abandoned => queue.canceled.push_back(at),
    }
    Ok(())
}

/// Takes back from the in-memory statistics windows the events a refused change staged
/// ([`stage_queue_event`] added them at the back of their window, under the same lock), so a
/// cancel that did not happen is not counted until the windows are next read.
fn unstage_queue_events(state: &mut State, batch: &Batch) {
    for (tree, key, value) in batch.writes().iter().rev() {
        let (Tree::QueueEvents, Some(value)) = (tree, value) else {
            continue;
        };
        let Some((queue, at)) = keys::queue_event_parts(key) else {
            continue;
        };
        let Some(q) = state.queues.get_mut(queue) else {
            continue;
        };
        match crate::store::decode::<QueueEvent>(Tree::QueueEvents, key, value) {
            Ok(QueueEvent::Answered { .. }) if q.answered.back().is_some_and(|(t, _)| *t == at) => {
                q.answered.pop_back();
            }
            Ok(QueueEvent::Abandoned) if q.canceled.back() == Some(&at) => {
                q.canceled.pop_back();
            }
            _ => {}
        }
    }
}

/// Fills a queue's statistics window from its stored events (a bounded scan of the window).
pub(super) fn load_window(
    store: &dyn Store,
    queue: &mut Queue,
    now: u64,
) -> Result<(), StoreError> {
    const PAGE: usize = 4096;
    let prefix = keys::queue_events_of(&queue.config.name);
    let mut cursor =
        keys::queue_events_since(&queue.config.name, now.saturating_sub(STATS_WINDOW_MS))
            .into_bytes();
    loop {
        let page = store.scan(
            Tree::QueueEvents,
            &Scan::prefix(prefix.as_bytes(), PAGE).after(&cursor),
        )?;
        for (key, value) in &page {
            let at = keys::queue_event_time(key);
            match crate::store::decode::<QueueEvent>(Tree::QueueEvents, key, value)? {
                QueueEvent::Answered { waited_ms } => queue.answered.push_back((at, waited_ms)),
                QueueEvent::Abandoned => queue.canceled.push_back(at),
            }
        }
        match page.last() {
            Some((last, _)) if page.len() == PAGE => cursor = last.clone(),
            _ => return Ok(()),
        }
    }
}

/// How a task left the line, as kept for the statistics window ([`Tree::QueueEvents`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub(super) enum QueueEvent {
    /// An agent accepted it after `waited_ms`.
    Answered { waited_ms: u64 },
    /// It was canceled or timed out before anyone accepted it.
    Abandoned,
}

impl Router {
    /// Loads the router's state: queues and agents (admin-sized trees), the open tasks (by
    /// their index, never the whole task history), open reservations with their remaining
    /// time, and the statistics window from the stored queue events.
    pub(super) fn load(&self) -> Result<(), RouterError> {
        self.reload_workflow()?;
        let (state, repairs) = self.read_state()?;
        {
            let mut locked = self.lock();
            *locked = state;
            if self.is_shared() {
                // Another node may have changed the router meanwhile: it repairs them then.
                match self.commit(&mut locked, repairs) {
                    Ok(()) | Err(RouterError::Store(StoreError::Conflict { .. })) => {}
                    Err(e) => return Err(e),
                }
            } else {
                // Refused: a task landed after its entry was read alone; the entry stays.
                match self.store.commit(&repairs) {
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.store.flush()?;
        if self.is_shared() {
            // Another node may offer them first; a refusal here must not stop this node.
            self.assign_after();
        } else {
            self.assign_all()?;
        }
        Ok(())
    }

    /// The router's state as the store has it, and the writes that repair what it finds
    /// stale (offers whose time ran out while nobody ran them, dangling index entries).
    pub(super) fn reload_workflow(&self) -> Result<(), RouterError> {
        if let Some(workflow) = self
            .store
            .get_json::<Workflow>(Tree::Queues, WORKFLOW_KEY)?
        {
            let compiled = compile_workflow(&workflow)?;
            *self.workflow.write().unwrap_or_else(|p| p.into_inner()) = (workflow, compiled);
        }
        Ok(())
    }

    pub(super) fn read_state(&self) -> Result<(State, Batch), RouterError> {
        self.read_state_after(None)
    }

    /// As [`Router::read_state`], keeping `previous`'s statistics windows when they were
    /// read less than [`WINDOWS_REREAD_MS`] ago: a node that reads the router back after each
    /// change of another node does not scan the queues' whole windows each time (this
    /// node's own events are added as it makes them; the other nodes' join at the next
    /// full read).
    pub(super) fn read_state_after(
        &self,
        previous: Option<&State>,
    ) -> Result<(State, Batch), RouterError> {
        let now = (self.clock)();
        let previous = previous.filter(|p| now < p.windows_read_ms + WINDOWS_REREAD_MS);
        // The change counter first: whatever is read after it is at least as new, so a
        // change made on this picture is refused if anything changed since.
        let version_bytes = self
            .store
            .get(Tree::Meta, keys::ROUTER_VERSION.as_bytes())?;
        let mut state = State {
            version_bytes: version_bytes.clone(),
            windows_read_ms: previous.map_or(now, |p| p.windows_read_ms),
            read_ms: now,
            ..State::default()
        };
        for record in self.store.scan_json::<AgentRecord>(Tree::Agents, "")? {
            let agent = Agent::from_record(record, now);
            state.agents.insert(agent.record.name.clone(), agent);
        }
        for (key, bytes) in self.store.scan_prefix(Tree::Queues, b"")? {
            if key == WORKFLOW_KEY.as_bytes() {
                continue;
            }
            let config: QueueConfig = crate::store::decode(Tree::Queues, &key, &bytes)?;
            let mut queue = compile_queue(config)?;
            match previous.and_then(|p| p.queues.get(&queue.config.name)) {
                Some(old) => {
                    queue.answered = old.answered.clone();
                    queue.canceled = old.canceled.clone();
                }
                None => load_window(&*self.store, &mut queue, now)?,
            }
            state.queues.insert(queue.config.name.clone(), queue);
        }
        let names: Vec<String> = state.queues.keys().cloned().collect();
        for name in names {
            refresh_members(&mut state, &name);
        }
        let mut batch = Batch::new();
        let ids = self.open_task_ids()?;
        // One read for them all (one round trip on a database over the network).
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
        let stored = self.store.get_many(Tree::Tasks, &keys)?;
        for (id, bytes) in ids.into_iter().zip(stored) {
            let Some(bytes) = bytes else {
                // The entry is written ahead of its task: one read while the task's commit
                // is under way is not a leftover. It is dropped only if the task is still
                // not there when the repair lands.
                batch.expect(Tree::Tasks, id.as_bytes(), None);
                batch.delete(Tree::OpenTasks, id.as_bytes());
                continue;
            };
            let mut task: Task = crate::store::decode(Tree::Tasks, id.as_bytes(), &bytes)?;
            if task.status.is_final() {
                batch.delete(Tree::OpenTasks, id.as_bytes());
                continue;
            }
            if task.status == TaskStatus::Reserved {
                // The offer stands, with the time it had left; one whose agent is gone, or
                // stored before offers were kept, is made afresh.
                match (&task.reservation, &task.agent, task.reserved_until_ms) {
                    // An offer whose time ran out while the server was down is made afresh
                    // (not counted as missed: the agent could not have answered it).
                    // On a shared store the offer is kept as it is, run out or not: only the
                    // leader's clock ends offers (counting the miss), never a node's re-read.
                    (Some(r), Some(worker), Some(until))
                        if (until > now || self.is_shared())
                            && state
                                .agents
                                .get(worker)
                                .is_some_and(|w| w.reservation.is_none()) =>
                    {
                        let reservation = Reservation {
                            id: r.clone(),
                            task: task.id.clone(),
                            agent: worker.clone(),
                            expires_ms: until,
                        };
                        if let Some(w) = state.agents.get_mut(worker) {
                            w.reservation = Some(r.clone());
                        }
                        state.reservations.insert(r.clone(), reservation);
                    }
                    _ => {
                        task.status = TaskStatus::Pending;
                        task.agent = None;
                        task.clear_offer();
                        batch.put_json(Tree::Tasks, task.id.as_bytes(), &task)?;
                    }
                }
            }
            count_task(&mut state, task);
        }
        let names: Vec<String> = state.agents.keys().cloned().collect();
        for name in names {
            update_idle(&mut state, &name);
        }
        Ok((state, batch))
    }

    /// Brings `state` up to the counter's record `stored` by reading again only what the
    /// changes since it was read wrote (and what a refused change of this node had changed
    /// in memory): the tasks and agents they list. `None` when that cannot be done (more
    /// changes behind than the record lists, a queue or the workflow changed, an agent
    /// deleted, an offer that does not fit): the caller reads everything back. On `None`
    /// `state` may be half brought up: it is replaced.
    pub(super) fn catch_up(
        &self,
        state: &mut State,
        stored: Option<&[u8]>,
    ) -> Result<Option<Vec<Notice>>, RouterError> {
        let now = (self.clock)();
        let version = stored_version(stored);
        if version < state.version() || state.unsure.all {
            return Ok(None);
        }
        let mut touched = state.unsure.clone();
        let changes = stored_changes(stored);
        for v in state.version() + 1..=version {
            let Some(change) = changes.iter().find(|c| c.v == v) else {
                return Ok(None);
            };
            touched.add(&change.touched);
        }
        if touched.all {
            return Ok(None);
        }
        let mut affected: BTreeSet<String> = touched.agents.clone();
        let names: Vec<Vec<u8>> = touched
            .agents
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        for (name, bytes) in touched
            .agents
            .iter()
            .zip(self.store.get_many(Tree::Agents, &names)?)
        {
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let record: AgentRecord = crate::store::decode(Tree::Agents, name.as_bytes(), &bytes)?;
            let fresh = Agent::from_record(record, now);
            match state.agents.get_mut(name) {
                Some(agent) => agent.record = fresh.record,
                None => {
                    state.agents.insert(name.clone(), fresh);
                }
            }
            refresh_membership_of(state, name);
        }
        let ids: Vec<Vec<u8>> = touched
            .tasks
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let mut offered = Vec::new();
        for (id, bytes) in touched
            .tasks
            .iter()
            .zip(self.store.get_many(Tree::Tasks, &ids)?)
        {
            if !reread_task(state, id, bytes.as_deref(), &mut affected, &mut offered)? {
                return Ok(None);
            }
        }
        for name in &affected {
            update_idle(state, name);
        }
        let notices = offered
            .iter()
            .filter_map(|r| offer_notice(state, state.reservations.get(r)?))
            .collect();
        state.version_bytes = stored.map(<[u8]>::to_vec);
        state.stale = false;
        state.unsure = Touched::default();
        Ok(Some(notices))
    }

    /// Reads task `id` again from a shared store (a contact's step on another node made it, and
    /// no router change listed it): the whole router is read at the next look when it does
    /// not fit what this node holds. Whether the task may be open: not when the store has it
    /// finished or has no such task (`false` too on a store of one node, never behind).
    pub fn read_task(&self, id: &str) -> Result<bool, RouterError> {
        if !self.is_shared() {
            return Ok(false);
        }
        let stored = self.store.get(Tree::Tasks, id.as_bytes())?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut affected = BTreeSet::new();
        let mut offered = Vec::new();
        let taken = reread_task(
            &mut state,
            id,
            stored.as_deref(),
            &mut affected,
            &mut offered,
        )?;
        if !taken {
            state.stale = true;
            state.unsure.all = true;
        }
        let may_be_open = !taken || state.tasks.contains_key(id);
        for name in &affected {
            update_idle(&mut state, name);
        }
        let notices: Vec<Notice> = offered
            .iter()
            .filter_map(|r| offer_notice(&state, state.reservations.get(r)?))
            .collect();
        drop(state);
        self.notify(notices);
        Ok(may_be_open)
    }

    /// The ids of every task not yet finished, from their index (built once from the tasks
    /// themselves for a store written before the index existed).
    pub(super) fn open_task_ids(&self) -> Result<Vec<String>, RouterError> {
        const PAGE: usize = 1024;
        let indexed = &self.open_tasks_indexed;
        if !indexed.load(std::sync::atomic::Ordering::Relaxed)
            && self.store.get(Tree::Meta, OPEN_TASKS_INDEXED)?.is_none()
        {
            let mut batch = Batch::new();
            for task in self.store.scan_json::<Task>(Tree::Tasks, "")? {
                if !task.status.is_final() {
                    batch.put(Tree::OpenTasks, task.id.as_bytes(), Vec::new());
                }
            }
            batch.put(Tree::Meta, OPEN_TASKS_INDEXED, b"1".to_vec());
            self.store.commit(&batch)?;
        }
        indexed.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut ids = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let mut scan = Scan::prefix(b"", PAGE);
            if let Some(last) = &cursor {
                scan = scan.after(last);
            }
            let page = self.store.scan(Tree::OpenTasks, &scan)?;
            let full = page.len() == PAGE;
            cursor = page.last().map(|(k, _)| k.clone());
            ids.extend(
                page.into_iter()
                    .map(|(k, _)| String::from_utf8_lossy(&k).into_owned()),
            );
            if !full {
                return Ok(ids);
            }
        }
    }

    /// Stages news for the flow of a task's contact, if it has one: written in the same
    /// commit as the change, heard by the contact's next step.
    pub(super) fn stage_news(
        &self,
        batch: &mut Batch,
        task: &Task,
        news: News,
    ) -> Result<(), RouterError> {
        match &task.contact {
            Some(contact) => {
                self.stage_outcome(batch, contact, &task.queue, news, task.agent.clone())
            }
            None => Ok(()),
        }
    }

    pub(super) fn stage_outcome(
        &self,
        batch: &mut Batch,
        contact: &str,
        queue: &str,
        news: News,
        agent: Option<String>,
    ) -> Result<(), RouterError> {
        let outcome = Outcome {
            contact: contact.to_string(),
            queue: queue.to_string(),
            news,
            agent,
        };
        let key = keys::inbox(contact, self.store.next_id()?);
        batch.put_json(Tree::Inbox, key.into_bytes(), &outcome)?;
        Ok(())
    }

    /// Commits one changed task (and sends what the change told agents).
    pub(super) fn commit_task(&self, state: &mut State, task: Task) -> Result<Task, RouterError> {
        let mut batch = Batch::new();
        stage_task(&mut batch, &task)?;
        self.commit(state, batch)?;
        Ok(task)
    }

    /// Commits a change already made to `state`. When the store refuses it (a database
    /// away, a full disk), `state` is read back from the store, so memory never runs ahead
    /// of what was kept.
    pub(super) fn commit(&self, state: &mut State, batch: Batch) -> Result<(), RouterError> {
        self.commit_as(state, batch, Scope::Router)
    }

    /// As [`Router::commit`], for a change of the given [`Scope`].
    pub(super) fn commit_as(
        &self,
        state: &mut State,
        mut batch: Batch,
        scope: Scope,
    ) -> Result<(), RouterError> {
        if batch.writes().is_empty() && batch.ahead().is_empty() {
            // Checks and nothing to write (a task taken in with no agent to offer it to):
            // no change, no transaction.
            let told = std::mem::take(&mut state.told);
            self.notify(told);
            return Ok(());
        }
        let shared = self.is_shared() && !batch.is_empty();
        let mut next = None;
        if shared {
            // A task finished by a change of one task only (see [`Scope::Task`]) is not
            // counted as a router change: a change on a node that still holds it open is
            // refused by its open-task entry, and never writes it back to life.
            let (opened, finished) = open_task_entries(&batch);
            let open: Vec<Vec<u8>> = batch
                .writes()
                .iter()
                .filter(|(tree, key, value)| {
                    *tree == Tree::Tasks
                        && value.is_some()
                        && !opened.contains(key.as_slice())
                        && (finished.contains(key.as_slice())
                            || state.tasks.contains_key(&*String::from_utf8_lossy(key)))
                })
                .map(|(_, key, _)| key.clone())
                .collect();
            for key in open {
                batch.expect(Tree::OpenTasks, key, Some(&[][..]));
            }
        }
        if shared {
            // Refused if another node changed the router since this state was read. A change
            // of one task does not write the counter, so such changes on several nodes never
            // collide with each other.
            let have = state.version_bytes.as_deref();
            batch.expect(Tree::Meta, keys::ROUTER_VERSION, have);
            if scope == Scope::Router {
                let mut changes = stored_changes(have);
                let v = state.version() + 1;
                changes.push(Change {
                    v,
                    touched: Touched::of(&batch),
                });
                let record = version_record(v, changes);
                batch.put(Tree::Meta, keys::ROUTER_VERSION, record.clone());
                next = Some(record);
            }
        }
        let told = std::mem::take(&mut state.told);
        match self.store.commit(&batch) {
            Ok(()) => {
                if let Some(record) = next {
                    state.version_bytes = Some(record);
                }
                self.notify(told);
                Ok(())
            }
            Err(e @ StoreError::Conflict { .. }) if self.is_shared() => {
                // Another node changed the router first: the next look ([`Router::refresh`],
                // before the change is tried again) reads back what the other nodes changed
                // and what this change had changed in memory, and tells this node's agents of
                // offers made meanwhile.
                state.stale = true;
                state.unsure.add(&Touched::of(&batch));
                unstage_queue_events(state, &batch);
                // A task this node held open was finished elsewhere without a router change
                // (a customer who left): others like it may be held too, so the whole router
                // is read, not one task per refused change.
                if let StoreError::Conflict { tree, .. } = &e
                    && *tree == Tree::OpenTasks.name()
                {
                    state.unsure.all = true;
                }
                Err(e.into())
            }
            Err(e) => {
                match self.read_state() {
                    Ok((fresh, repairs)) => {
                        *state = fresh;
                        if !self.is_shared() {
                            let _ = self.store.commit(&repairs);
                        }
                        tracing::warn!(error = %e, "a router change was not kept; the router read its state back");
                    }
                    Err(again) => {
                        state.stale = true;
                        tracing::error!(error = %e, reread = %again, "a router change was not kept and the state cannot be read back; it will be before the next change");
                    }
                }
                Err(e.into())
            }
        }
    }
}

/// Adds the batch riding along with a change (a contact's last step,
/// [`Router::customer_left_with`]) to the change's own, once: it is committed with it.
pub(super) fn ride(batch: &mut Batch, riding: &mut Option<&Batch>) {
    if let Some(step) = riding.take() {
        batch.extend(step.clone());
    }
}

/// Whether `refused` (a conflict) names one of `batch`'s own checks.
pub(super) fn checked_by(batch: &Batch, refused: &StoreError) -> bool {
    let StoreError::Conflict { tree, key } = refused else {
        return false;
    };
    batch
        .checks()
        .iter()
        .any(|(t, k, _)| t.name() == *tree && String::from_utf8_lossy(k) == key.as_str())
}

/// What a change decides on, on a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The router as a whole (who is free, who waits longest): checked against and counted
    /// in the router's change counter, which every node reads to catch up.
    Router,
    /// One task nobody holds (no agent, no offer): a waiting task canceled because its
    /// customer left. Checked against the counter but not counted in it, so such changes
    /// on several nodes do not take turns on one row; the other nodes learn of it when a
    /// change of theirs touches the task (refused by its open-task entry, then the router
    /// read back) or at their next periodic read ([`READ_BACK_EVERY_MS`]).
    Task,
}

/// The tasks `batch` opens (their open-task entry is written, ahead of the task) and those it
/// finishes (the entry is deleted).
fn open_task_entries(batch: &Batch) -> (HashSet<&[u8]>, HashSet<&[u8]>) {
    let (mut opened, mut finished) = (HashSet::new(), HashSet::new());
    for (tree, key, value) in batch.ahead().iter().chain(batch.writes()) {
        if *tree == Tree::OpenTasks {
            match value {
                Some(_) => opened.insert(key.as_slice()),
                None => finished.insert(key.as_slice()),
            };
        }
    }
    (opened, finished)
}

impl State {
    /// The router's change counter this state was read at (0 before the first change on a
    /// shared store, and always on a store of one node).
    pub(super) fn version(&self) -> u64 {
        stored_version(self.version_bytes.as_deref())
    }
}

/// The router's change counter as stored (0 before the first change on a shared store).
pub(super) fn stored_version(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| b.get(..8))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// How many of the last changes the counter's record lists ([`Change`]).
const KEEP_CHANGES: usize = 16;

/// One change of the router as its counter's record lists it: what it wrote, so a node a few
/// changes behind reads those again instead of the whole router. The record is the counter
/// (8 bytes, big-endian), then the last [`KEEP_CHANGES`] changes as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Change {
    v: u64,
    #[serde(flatten)]
    touched: Touched,
}

/// The tasks and agents a change wrote; `all` when it changed queues or the workflow (read
/// everything again).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Touched {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(super) tasks: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(super) agents: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) all: bool,
}

impl Touched {
    /// What `batch` writes.
    pub(super) fn of(batch: &Batch) -> Touched {
        let mut touched = Touched::default();
        for (tree, key, _) in batch.ahead().iter().chain(batch.writes()) {
            let key = || String::from_utf8_lossy(key).into_owned();
            match tree {
                Tree::Tasks => {
                    touched.tasks.insert(key());
                }
                Tree::Agents => {
                    touched.agents.insert(key());
                }
                Tree::Queues => touched.all = true,
                _ => {}
            }
        }
        touched
    }

    pub(super) fn add(&mut self, other: &Touched) {
        self.tasks.extend(other.tasks.iter().cloned());
        self.agents.extend(other.agents.iter().cloned());
        self.all |= other.all;
    }
}

/// The changes the counter's record lists, oldest first.
fn stored_changes(bytes: Option<&[u8]>) -> Vec<Change> {
    bytes
        .and_then(|b| b.get(8..))
        .filter(|rest| !rest.is_empty())
        .and_then(|rest| serde_json::from_slice(rest).ok())
        .unwrap_or_default()
}

/// The counter's next record: `version`, and `changes` (the last [`KEEP_CHANGES`]).
fn version_record(version: u64, mut changes: Vec<Change>) -> Vec<u8> {
    let extra = changes.len().saturating_sub(KEEP_CHANGES);
    changes.drain(..extra);
    let mut record = version.to_be_bytes().to_vec();
    record.extend(serde_json::to_vec(&changes).expect("changes encode"));
    record
}

/// Replaces task `id` in `state` with `stored` (its record as read now; `None`: gone), noting
/// the agents whose load changed in `affected` and the offers it now makes that it did not
/// before in `offered`. `false` when it does not fit what `state` holds (see [`take_task`]).
fn reread_task(
    state: &mut State,
    id: &str,
    stored: Option<&[u8]>,
    affected: &mut BTreeSet<String>,
    offered: &mut Vec<String>,
) -> Result<bool, RouterError> {
    let before = forget_task(state, id).and_then(|old| {
        affected.extend(agents_of(&old).cloned());
        old.reservation
    });
    let Some(bytes) = stored else { return Ok(true) };
    let task: Task = crate::store::decode(Tree::Tasks, id.as_bytes(), bytes)?;
    if task.status.is_final() {
        return Ok(true);
    }
    affected.extend(agents_of(&task).cloned());
    let offer = (task.status == TaskStatus::Reserved)
        .then(|| task.reservation.clone())
        .flatten()
        .filter(|r| before.as_ref() != Some(r));
    if !take_task(state, task) {
        return Ok(false);
    }
    offered.extend(offer);
    Ok(true)
}

/// The agent holding `task`, and the one consulted about it.
fn agents_of(task: &Task) -> impl Iterator<Item = &String> {
    task.agent
        .iter()
        .chain(task.consult.iter().map(|c| &c.agent))
}

/// What the desk of the agent offered `r` hears.
pub(super) fn offer_notice(state: &State, r: &Reservation) -> Option<Notice> {
    Some(Notice {
        agent: r.agent.clone(),
        kind: NoticeKind::Reservation,
        reservation: Some(r.clone()),
        task: Some(state.tasks.get(&r.task)?.clone()),
        activity: None,
        reason: None,
    })
}

/// Takes a task out of `state` with all it counted for (its agents' load, its queue's line,
/// its offer, its plan); returns it.
fn forget_task(state: &mut State, id: &str) -> Option<Task> {
    let task = state.tasks.remove(id)?;
    for agent in agents_of(&task) {
        if let Some(a) = state.agents.get_mut(agent)
            && let Some(n) = a.busy.get_mut(&task.channel)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                a.busy.remove(&task.channel);
            }
        }
    }
    if let Some(q) = state.queues.get_mut(&task.queue) {
        q.waiting.remove(&waiting_key(q.config.order, &task));
    }
    if let Some(r) = &task.reservation
        && let Some(offer) = state.reservations.remove(r)
        && let Some(a) = state.agents.get_mut(&offer.agent)
        && a.reservation.as_deref() == Some(r.as_str())
    {
        a.reservation = None;
    }
    state.plans.remove(id);
    Some(task)
}

/// Puts an open task into `state` as [`Router::read_state_after`] does; `false` when its
/// offer does not fit what `state` holds (its agent unknown or offered another task).
fn take_task(state: &mut State, task: Task) -> bool {
    if task.status == TaskStatus::Reserved {
        let (Some(r), Some(agent), Some(until)) =
            (&task.reservation, &task.agent, task.reserved_until_ms)
        else {
            return false;
        };
        let Some(a) = state.agents.get_mut(agent) else {
            return false;
        };
        if a.reservation.is_some() {
            return false;
        }
        a.reservation = Some(r.clone());
        state.reservations.insert(
            r.clone(),
            Reservation {
                id: r.clone(),
                task: task.id.clone(),
                agent: agent.clone(),
                expires_ms: until,
            },
        );
    }
    count_task(state, task);
    true
}

/// Puts an open task into `state` with what it counts for besides its offer: its agent's load
/// (and a consulted agent's: busy with the call too), its place in its queue's line, its plan.
fn count_task(state: &mut State, task: Task) {
    for agent in agents_of(&task) {
        if let Some(a) = state.agents.get_mut(agent) {
            *a.busy.entry(task.channel).or_default() += 1;
        }
    }
    if task.status == TaskStatus::Pending
        && let Some(q) = state.queues.get_mut(&task.queue)
    {
        q.waiting.insert(waiting_key(q.config.order, &task));
    }
    if let Some(plan) = &task.plan
        && let Ok(compiled) = compile_targets(plan)
    {
        state.plans.insert(task.id.clone(), compiled);
    }
    state.tasks.insert(task.id.clone(), task);
}
