//! The narrow ways into a node. Entry points hold these, never the node's parts:
//! - [`Contacts`]: what a channel does with a contact (start it, send it events, read it,
//!   follow its step reports, find its task);
//! - [`Desk`]: what an agent does (sign in, set an activity, accept, reject, complete), directly
//!   or through their phone;
//! - [`Admin`]: what admins, supervisors and developers do (flows and deploys, queues, agents
//!   and tasks, the workflow, tokens, customers, the audit trail, replays);
//! - [`ChannelStore`]: the trees channels keep their own state in (their keys, prompt audio,
//!   agents' phones) and nothing else.
//!
//! Each handle is cheap to clone. None renders anything or knows a channel: a handle is where
//! an operation enters the core, so it is also where a cluster will route it.

use std::sync::Arc;

use crate::audit::AuditEntry;
use crate::contract::Event;
use crate::engine::Engine;
use crate::flows::{DeployOptions, Deployed, Flows, FlowsError};
use crate::replay::{Golden, ReplayReport};
use crate::router::{
    AgentRecord, NewTask, Notice, QueueConfig, QueueStats, Reservation, Router, RouterError, Task,
    Workflow,
};
use crate::sessions::{ContactError, NewContact, Said, Session, Sessions, StepReport, TraceEntry};
use crate::store::{Batch, Pair, Scan, Store, StoreError, Tree};
use crate::tokens::TokenView;
use crate::users::{self, Principal, Refusal, Role, UserChange, UserError, UserView};
use serde_json::json;

/// What a channel does with contacts.
#[derive(Clone)]
pub struct Contacts {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) router: Arc<Router>,
}

impl Contacts {
    /// Starts a contact: its flow's first step.
    pub fn start(&self, new: NewContact) -> Result<StepReport, ContactError> {
        self.sessions.start(new)
    }

    /// Sends a contact an event: one step of its flow.
    pub fn send(&self, id: &str, event: Event) -> Result<StepReport, ContactError> {
        self.sessions.send(id, event)
    }

    /// A contact's session.
    pub fn get(&self, id: &str) -> Result<Session, ContactError> {
        self.sessions.get(id)
    }

    /// A contact's recorded steps.
    pub fn trace(&self, id: &str) -> Result<Vec<TraceEntry>, ContactError> {
        self.sessions.trace(id)
    }

    /// Keeps a message between the contact's customer (`from` = `customer`) or an agent
    /// (`agent`) and the other side, before it is delivered.
    pub fn record_said(
        &self,
        id: &str,
        from: &str,
        agent: Option<&str>,
        task: Option<&str>,
        text: &str,
    ) -> Result<Said, ContactError> {
        self.sessions.record_said(id, from, agent, task, text)
    }

    /// The contact's conversation with agents, in order.
    pub fn transcript(&self, id: &str) -> Result<Vec<Said>, ContactError> {
        self.sessions.transcript(id)
    }

    /// The `n` most recently started contacts that pass `keep`, newest first.
    pub fn recent(
        &self,
        n: usize,
        keep: impl Fn(&Session) -> bool,
    ) -> Result<Vec<Session>, ContactError> {
        self.sessions.recent(n, keep)
    }

    /// The reports of steps this handle did not run (news delivered by the dispatcher), for
    /// the channel to render.
    pub fn subscribe(&self) -> tokio::sync::mpsc::UnboundedReceiver<StepReport> {
        self.sessions.subscribe()
    }

    /// The open task of a contact, if it has one.
    pub fn task_of(&self, contact: &str) -> Option<Task> {
        self.router.task_of_contact(contact)
    }

    /// Whether a flow answers `address` (an entry point is bound to it).
    pub fn answers(&self, address: &str) -> Result<bool, ContactError> {
        Ok(self.sessions.answers(address)?)
    }
}

/// What an agent does, from their desk or their phone.
#[derive(Clone)]
pub struct Desk {
    pub(crate) router: Arc<Router>,
    pub(crate) store: Arc<dyn Store>,
}

impl Desk {
    /// The agent a desk token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        self.router.authenticate(token)
    }

    /// Whether an agent of this name exists.
    pub fn agent_exists(&self, name: &str) -> bool {
        self.router.agent(name).is_ok()
    }

    /// The last `limit` tasks `agent` handled, newest first (a bounded scan of their
    /// history, then one read per task).
    pub fn history(&self, agent: &str, limit: usize) -> Result<Vec<Task>, RouterError> {
        use crate::store::StoreExt as _;
        let prefix = crate::store::keys::agent_history_of(agent);
        let found = self.store.scan(
            Tree::AgentHistory,
            &crate::store::Scan::prefix(prefix.as_bytes(), limit).reversed(),
        )?;
        let mut tasks = Vec::with_capacity(found.len());
        for (_, value) in found {
            let id: String = crate::store::decode(Tree::AgentHistory, b"", &value)?;
            if let Some(task) = self.store.get_json::<Task>(Tree::Tasks, &id)? {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    /// What an agent needs to know of a task offered to them or theirs: who the customer is
    /// (as the CRM answered the flow, else the name the contact gave), what they did in the
    /// flow (keys pressed, messages written), the contact's attributes, and the queue's
    /// disposition codes. Refused for a task that is neither offered to nor held by `agent`.
    pub fn context(&self, agent: &str, task: &str) -> Result<TaskContext, RouterError> {
        let t = self.router.task(task)?;
        let offered = self
            .router
            .reservations_of(agent)
            .iter()
            .any(|r| r.task == task);
        if !offered && t.agent.as_deref() != Some(agent) {
            return Err(RouterError::NotYours(format!(
                "task {task} is neither offered to nor held by {agent}"
            )));
        }
        let queue = self.router.queues().into_iter().find(|q| q.name == t.queue);
        let mut context = TaskContext {
            task: t.id.clone(),
            queue: t.queue.clone(),
            channel: t.channel,
            waited_secs: 0,
            customer: None,
            name: None,
            inputs: Vec::new(),
            attributes: Vec::new(),
            dispositions: queue
                .as_ref()
                .map(|q| q.dispositions.clone())
                .unwrap_or_default(),
            disposition_required: queue.is_some_and(|q| q.disposition_required),
        };
        context.waited_secs = (crate::router::now_ms().saturating_sub(t.created_ms) / 1000) as u32;
        let Some(contact) = &t.contact else {
            return Ok(context);
        };
        use crate::store::StoreExt as _;
        let trace: Vec<TraceEntry> = self
            .store
            .scan_json(Tree::Traces, &crate::store::keys::of_contact(contact))?;
        for step in &trace {
            match &step.event {
                Event::Input { digits, .. } if !digits.is_empty() => {
                    context.inputs.push(format!("pressed {digits}"))
                }
                Event::Input {
                    speech: Some(said), ..
                } => context.inputs.push(format!("said {said:?}")),
                Event::Message { text } => context.inputs.push(format!("wrote {text:?}")),
                Event::Mail(mail) => context.inputs.push(format!("mailed {:?}", mail.subject)),
                _ => {}
            }
            if context.customer.is_none() {
                context.customer = step
                    .host_calls
                    .iter()
                    .filter(|c| c.call == "crm.lookup")
                    .find_map(|c| c.result.get("Ok").filter(|v| !v.is_null()).cloned());
            }
        }
        if let Some(last) = trace.last() {
            context.attributes = last.attributes.clone();
        }
        context.name = context
            .customer
            .as_ref()
            .and_then(|c| c["name"].as_str())
            .or_else(|| {
                context
                    .attributes
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.as_str())
            })
            .map(str::to_string);
        Ok(context)
    }

    /// The SIP digest secret (HA1) of an agent's phone.
    pub fn sip_ha1(&self, agent: &str) -> Option<String> {
        self.router.sip_ha1(agent)
    }

    /// The secret that signs the digest challenges of agents' phones (one per store, so any
    /// node checks a nonce another handed out).
    pub fn phone_nonce_key(&self) -> Result<Vec<u8>, StoreError> {
        crate::phones::nonce_key(&*self.store)
    }

    /// An agent as the API shows them.
    pub fn agent(&self, agent: &str) -> Result<serde_json::Value, RouterError> {
        self.router.agent(agent)
    }

    /// An agent's open reservations.
    pub fn reservations_of(&self, agent: &str) -> Vec<Reservation> {
        self.router.reservations_of(agent)
    }

    /// A task, for an agent who holds it.
    pub fn task(&self, id: &str) -> Result<Task, RouterError> {
        self.router.task(id)
    }

    /// Sets an agent's activity (available, break, unavailable, ...).
    pub fn set_activity(&self, agent: &str, activity: &str) -> Result<AgentRecord, RouterError> {
        self.router.set_activity(agent, activity)
    }

    /// Accepts a reservation offered to the agent.
    pub fn accept(&self, agent: &str, reservation: &str) -> Result<Task, RouterError> {
        self.router.accept(agent, reservation)
    }

    /// Rejects a reservation offered to the agent.
    pub fn reject(&self, agent: &str, reservation: &str) -> Result<Task, RouterError> {
        self.router.reject(agent, reservation)
    }

    /// Completes a task the agent holds, with its wrap-up notes and disposition.
    pub fn complete(
        &self,
        agent: &str,
        task: &str,
        wrapup: Option<String>,
        disposition: Option<String>,
    ) -> Result<Task, RouterError> {
        self.router.complete(agent, task, wrapup, disposition)
    }

    /// The agent hands a conversation they hold to another queue or agent (blind), or a
    /// call to a number.
    pub fn transfer(
        &self,
        agent: &str,
        task: &str,
        to: &crate::router::TransferTo,
    ) -> Result<Task, RouterError> {
        self.router.transfer(agent, task, to)
    }

    /// The agent puts the caller of a call they hold on hold (`on`) or takes them back.
    pub fn hold(&self, agent: &str, task: &str, on: bool) -> Result<Task, RouterError> {
        self.router.hold(agent, task, on)
    }

    /// The agent starts a warm transfer of a call they hold to another agent.
    pub fn consult(&self, agent: &str, task: &str, to: &str) -> Result<Task, RouterError> {
        self.router.consult(agent, task, to)
    }

    /// Moves a warm transfer on (the agent completes or cancels it; the channel says the
    /// agents talk).
    pub fn consult_stage(
        &self,
        by: Option<&str>,
        task: &str,
        stage: crate::router::ConsultStage,
    ) -> Result<Task, RouterError> {
        self.router.consult_stage(by, task, stage)
    }

    /// The call's channel ended a warm transfer: handed over, or not (why).
    pub fn consult_done(&self, task: &str, failed: Option<&str>) -> Result<Task, RouterError> {
        self.router.consult_done(task, failed)
    }

    /// Callback tasks whose next attempt is due.
    pub fn callbacks_due(&self) -> Vec<Task> {
        self.router.callbacks_due()
    }

    /// Starts the next attempt of a due callback (durably, before dialing).
    pub fn begin_callback_attempt(
        &self,
        task: &str,
        node: &str,
    ) -> Result<Option<(Task, u32)>, RouterError> {
        self.router.begin_callback_attempt(task, node)
    }

    /// Records how a callback attempt went.
    pub fn end_callback_attempt(
        &self,
        task: &str,
        n: u32,
        end: crate::router::AttemptEnd,
    ) -> Result<Task, RouterError> {
        self.router.end_callback_attempt(task, n, end)
    }

    /// Ends the callback attempts `node` had under way when it stopped.
    pub fn interrupted_callbacks(&self, node: &str) -> Result<usize, RouterError> {
        self.router.interrupted_callbacks(node)
    }

    /// A call's transfer to a number was placed, or failed (why): the request is cleared.
    pub fn transfer_placed(&self, task: &str, failed: Option<&str>) -> Result<Task, RouterError> {
        self.router.transfer_placed(task, failed)
    }

    /// The agent ends the conversation of a task they hold: wrap-up begins (or the task
    /// completes, in a queue without wrap-up).
    pub fn wrap(&self, agent: &str, task: &str) -> Result<Task, RouterError> {
        self.router.wrap(agent, task)
    }

    /// The conversation of an assigned task ended on its channel (both legs of a call hung
    /// up): wrap-up begins, and the contact's flow hears `completed`.
    pub fn conversation_ended(&self, task: &str, why: &str) -> Result<Task, RouterError> {
        self.router.conversation_ended(task, why, true)
    }

    /// Gives up a task whose contact cannot reach the agent (the agent's phone failed).
    pub fn cancel(&self, task: &str, reason: &str) -> Result<Task, RouterError> {
        self.router.cancel(task, reason)
    }

    /// Router notices (offers, assignments) as they happen.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.router.subscribe()
    }

    /// Makes the router's recent changes durable.
    pub fn flush(&self) -> Result<(), RouterError> {
        self.router.flush()
    }
}

/// What admins, supervisors and developers do.
#[derive(Clone)]
pub struct Admin {
    /// Who recent API tokens are ([`People::by_token`]).
    pub(crate) principals: Arc<crate::recent::Recent<String, Principal>>,
    pub(crate) flows: Arc<Flows>,
    pub(crate) router: Arc<Router>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) services: Arc<crate::engine::Services>,
    pub(crate) store: Arc<dyn Store>,
}

impl Admin {
    /// Flows, their versions, deploys, canaries, settings and entry points.
    pub fn flows(&self) -> &Flows {
        &self.flows
    }

    /// The Wasm engine (compiling a component to check it, running golden files).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What host calls are served from (running a component directly, outside a contact).
    pub fn services(&self) -> &Arc<crate::engine::Services> {
        &self.services
    }

    /// Defines (or redefines) a queue.
    pub fn define_queue(&self, config: QueueConfig) -> Result<QueueConfig, RouterError> {
        self.router.define_queue(config)
    }

    /// Every queue.
    pub fn queues(&self) -> Vec<QueueConfig> {
        self.router.queues()
    }

    /// A queue's statistics.
    pub fn stats(&self, queue: &str) -> Result<QueueStats, RouterError> {
        self.router.stats(queue)
    }

    /// Historical figures of each queue per interval (see [`crate::router::reports`]).
    pub fn queue_report(
        &self,
        query: &crate::router::ReportQuery,
    ) -> Result<Vec<crate::router::QueueRow>, RouterError> {
        self.router.queue_report(query)
    }

    /// Historical figures of each agent per interval (see [`crate::router::reports`]).
    pub fn agent_report(
        &self,
        query: &crate::router::ReportQuery,
    ) -> Result<Vec<crate::router::AgentRow>, RouterError> {
        self.router.agent_report(query)
    }

    /// Every queue's statistics.
    pub fn all_stats(&self) -> Vec<QueueStats> {
        self.router.all_stats()
    }

    /// Every agent as the API shows them.
    pub fn agents(&self) -> Vec<serde_json::Value> {
        self.router.agents()
    }

    /// The tasks not yet finished, oldest first.
    pub fn open_tasks(&self) -> Vec<Task> {
        self.router.open_tasks()
    }

    /// An agent as the API shows them.
    pub fn agent(&self, name: &str) -> Result<serde_json::Value, RouterError> {
        self.router.agent(name)
    }

    /// Creates or changes an agent; returns the agent and, when one was made, their token.
    pub fn upsert_agent(
        &self,
        name: &str,
        attributes: serde_json::Value,
        capacity: std::collections::BTreeMap<crate::contract::Channel, u32>,
    ) -> Result<(AgentRecord, Option<String>), RouterError> {
        self.router.upsert_agent(name, attributes, capacity)
    }

    /// Sets an agent's activity.
    pub fn set_activity(&self, agent: &str, activity: &str) -> Result<AgentRecord, RouterError> {
        self.router.set_activity(agent, activity)
    }

    /// Creates a task.
    pub fn create_task(&self, new: NewTask) -> Result<Task, RouterError> {
        self.router.create_task(new)
    }

    /// A task.
    pub fn task(&self, id: &str) -> Result<Task, RouterError> {
        self.router.task(id)
    }

    /// Cancels a task; its contact hears `canceled`.
    pub fn cancel(&self, task: &str, reason: &str) -> Result<Task, RouterError> {
        self.router.cancel(task, reason)
    }

    /// Moves a task to another queue.
    pub fn move_task(
        &self,
        task: &str,
        queue: &str,
        priority: Option<i32>,
    ) -> Result<Task, RouterError> {
        self.router.move_task(task, queue, priority)
    }

    /// The routing workflow.
    pub fn workflow(&self) -> Workflow {
        self.router.workflow()
    }

    /// Replaces the routing workflow.
    pub fn set_workflow(&self, workflow: Workflow) -> Result<Workflow, RouterError> {
        self.router.set_workflow(workflow)
    }

    /// Makes the router's recent changes durable.
    pub fn flush(&self) -> Result<(), RouterError> {
        self.router.flush()
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        crate::audit::all(&*self.store)
    }

    /// Records a change `who` made (queues, agents, tasks, the workflow, prompts) in the audit
    /// trail, durably.
    pub fn note(
        &self,
        who: &str,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        crate::audit::record(&*self.store, who, action, subject, detail)?;
        self.store.flush()
    }

    /// Loads customer records; returns how many.
    pub fn load_customers(
        &self,
        customers: &[crate::contract::Customer],
        who: &str,
    ) -> Result<usize, crate::customers::CustomersError> {
        crate::customers::load(&self.store, customers, who)
    }

    /// People and their credentials: users, API tokens, browser sessions.
    pub fn people(&self) -> People<'_> {
        People {
            store: &self.store,
            principals: &self.principals,
        }
    }

    /// A contact's recording, ready to save as a golden file.
    pub fn golden(&self, contact: &str) -> Result<Golden, ContactError> {
        let session = self.sessions.get(contact)?;
        let trace = self.sessions.trace(contact)?;
        Ok(Golden::of(&session, trace))
    }

    /// Replays a recorded contact against `version` of its flow.
    pub fn replay(&self, contact: &str, version: u64) -> Result<ReplayReport, ContactError> {
        let golden = self.golden(contact)?;
        let component = self.flows.component(&golden.flow, version)?;
        Ok(crate::replay::replay(
            &self.engine,
            &golden,
            &component,
            version,
            &format!("version {version}"),
        ))
    }

    /// The `n` most recently started contacts of `flow` that ran on `version`.
    pub fn recent_goldens(
        &self,
        flow: &str,
        version: u64,
        n: usize,
    ) -> Result<Vec<Golden>, ContactError> {
        self.sessions
            .recent(n, |s| s.flow == flow && s.version == version)?
            .into_iter()
            .map(|s| Ok(Golden::of(&s, self.sessions.trace(&s.id)?)))
            .collect()
    }

    /// Deploys, first replaying the `check_recent` most recent contacts of the live version
    /// against the candidate; refuses when any behaves differently, unless `force`.
    pub fn deploy_checked(
        &self,
        flow: &str,
        bytes: &[u8],
        who: &str,
        options: &DeployOptions,
        check_recent: usize,
        force: bool,
    ) -> Result<(Deployed, usize, Vec<ReplayReport>), CheckedDeployError> {
        let mut changed = Vec::new();
        let mut checked = 0;
        if check_recent > 0
            && let Ok(live) = self.flows.live(flow)
        {
            let candidate = self.engine.compile(bytes).map_err(FlowsError::from)?;
            for golden in self.recent_goldens(flow, live, check_recent)? {
                checked += 1;
                let report =
                    crate::replay::replay(&self.engine, &golden, &candidate, 0, "the candidate");
                if !report.identical {
                    changed.push(report);
                }
            }
        }
        if !changed.is_empty() && !force {
            return Err(CheckedDeployError::BehaviourChanged {
                changed: changed.len(),
                checked,
                reports: changed,
            });
        }
        Ok((
            self.flows.deploy_with(flow, bytes, who, options)?,
            checked,
            changed,
        ))
    }
}

/// Why a checked deploy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CheckedDeployError {
    /// The deploy itself failed.
    #[error(transparent)]
    Flows(#[from] FlowsError),
    /// Recorded contacts could not be read.
    #[error(transparent)]
    Contacts(#[from] ContactError),
    /// The candidate behaves differently on recent real contacts.
    #[error(
        "the candidate behaves differently from the live version on {changed} of the {checked} most recent contacts; nothing was deployed. Inspect the diffs, then deploy again with --force to accept the change"
    )]
    BehaviourChanged {
        /// Contacts whose replay differed.
        changed: usize,
        /// Contacts replayed.
        checked: usize,
        /// The replays that differed.
        reports: Vec<ReplayReport>,
    },
}

/// The trees channels keep their own state in; any other tree is refused. A channel reaches
/// contacts, tasks and flows only through the other handles.
#[derive(Clone)]
pub struct ChannelStore {
    pub(crate) store: Arc<dyn Store>,
}

/// The trees a channel may read and write through a [`ChannelStore`].
pub const CHANNEL_TREES: [Tree; 4] = [Tree::ChannelKeys, Tree::Prompts, Tree::Phones, Tree::Mail];

impl ChannelStore {
    fn allowed(tree: Tree) -> Result<(), StoreError> {
        if CHANNEL_TREES.contains(&tree) {
            Ok(())
        } else {
            Err(StoreError::Backend(format!(
                "the {} tree belongs to the core: a channel reaches it through the contacts, desk or admin handle",
                tree.name()
            )))
        }
    }
}

impl Store for ChannelStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Self::allowed(tree)?;
        self.store.get(tree, key)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        for (tree, _, _) in batch
            .checks()
            .iter()
            .chain(batch.ahead())
            .chain(batch.writes())
        {
            Self::allowed(*tree)?;
        }
        self.store.commit(batch)
    }

    fn scan(&self, tree: Tree, scan: &Scan<'_>) -> Result<Vec<Pair>, StoreError> {
        Self::allowed(tree)?;
        self.store.scan(tree, scan)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.store.next_id()
    }
}

/// What an agent's desk shows of a task: see [`Desk::context`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TaskContext {
    /// The task.
    pub task: String,
    /// Its queue.
    pub queue: String,
    /// Its channel.
    pub channel: crate::contract::Channel,
    /// Seconds since it was created.
    pub waited_secs: u32,
    /// The customer as the CRM answered the flow.
    pub customer: Option<serde_json::Value>,
    /// The customer's name: the CRM's, else the one the contact gave.
    pub name: Option<String>,
    /// What the customer did in the flow, in order: `pressed 1`, `wrote "1001"`.
    pub inputs: Vec<String>,
    /// The contact's attributes.
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
    /// The queue's disposition codes.
    pub dispositions: Vec<String>,
    /// Whether completing needs one.
    pub disposition_required: bool,
}

/// People and their credentials: users with roles, their API tokens and browser sessions.
/// Every change is in the audit trail under the person who made it.
pub struct People<'a> {
    store: &'a Arc<dyn Store>,
    /// Who recent API tokens are, by the token's hash; forgotten at every change here.
    principals: &'a crate::recent::Recent<String, Principal>,
}

impl People<'_> {
    /// Every user.
    pub fn list(&self) -> Result<Vec<UserView>, StoreError> {
        users::list(&**self.store)
    }

    /// One user.
    pub fn get(&self, name: &str) -> Result<Option<UserView>, StoreError> {
        Ok(users::get(&**self.store, name)?
            .as_ref()
            .map(UserView::from))
    }

    /// Creates a user.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
        who: &str,
    ) -> Result<UserView, UserError> {
        self.principals.forget();
        let user = users::create(&**self.store, name, role, password)?;
        let detail = json!({"role": role, "password": password.is_some()});
        crate::audit::record(&**self.store, who, "create-user", name, detail)?;
        self.store.flush()?;
        Ok(user)
    }

    /// Changes a user's role, password or whether they are disabled.
    pub fn change(
        &self,
        name: &str,
        change: &UserChange,
        who: &str,
    ) -> Result<UserView, UserError> {
        self.principals.forget();
        let user = users::change(&**self.store, name, change)?;
        self.principals.forget();
        let detail = json!({
            "role": change.role,
            "disabled": change.disabled,
            "password_changed": change.password.is_some(),
        });
        crate::audit::record(&**self.store, who, "change-user", name, detail)?;
        self.store.flush()?;
        Ok(user)
    }

    /// Deletes a user with their tokens and sessions.
    pub fn delete(&self, name: &str, who: &str) -> Result<(), UserError> {
        self.principals.forget();
        users::delete(&**self.store, name)?;
        self.principals.forget();
        crate::audit::record(&**self.store, who, "delete-user", name, json!({}))?;
        self.store.flush()?;
        Ok(())
    }

    /// API tokens: every one, or `user`'s.
    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenView>, StoreError> {
        match user {
            Some(user) => crate::tokens::of_user(&**self.store, user),
            None => crate::tokens::all(&**self.store),
        }
    }

    /// A new API token of `user`: its id and secret (shown once).
    pub fn create_token(
        &self,
        user: &str,
        label: &str,
        expires_at: Option<String>,
        who: &str,
    ) -> Result<(String, String), UserError> {
        if users::get(&**self.store, user)?.is_none() {
            return Err(UserError::UnknownUser(user.into()));
        }
        if let Some(at) = &expires_at
            && chrono::DateTime::parse_from_rfc3339(at).is_err()
        {
            return Err(UserError::Invalid(format!(
                "expires_at {at:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z"
            )));
        }
        let (id, token) = crate::tokens::create_for(&**self.store, user, label, expires_at)?;
        let detail = json!({"token": id, "label": label});
        crate::audit::record(&**self.store, who, "create-token", user, detail)?;
        self.store.flush()?;
        Ok((id, token))
    }

    /// Revokes an API token by its id.
    pub fn revoke_token(&self, id: &str, who: &str) -> Result<(), UserError> {
        let owner = self
            .tokens(None)?
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.user);
        self.principals.forget();
        let revoked = crate::tokens::revoke(&**self.store, id)?;
        self.principals.forget();
        if !revoked {
            return Err(UserError::UnknownToken(id.into()));
        }
        let detail = json!({"token": id});
        crate::audit::record(
            &**self.store,
            who,
            "revoke-token",
            &owner.unwrap_or_default(),
            detail,
        )?;
        self.store.flush()?;
        Ok(())
    }

    /// Who presents the API token `presented`.
    /// Kept for a second ([`crate::recent`]): a token revoked or a user changed on this node
    /// is refused at once, on another node within a second; a token about to run out is not
    /// kept past its time.
    pub fn by_token(&self, presented: &str) -> Result<Result<Principal, Refusal>, StoreError> {
        let key = crate::tokens::hash(presented);
        if let Some(who) = self.principals.get(&key) {
            return Ok(Ok(who));
        }
        let read = std::time::Instant::now();
        let (who, until) = match users::by_token_until(&**self.store, presented)? {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let lasts = until.is_none_or(|at| {
            at > chrono::Utc::now()
                + chrono::Duration::from_std(crate::recent::FRESH_FOR).unwrap_or_default()
        });
        if lasts {
            self.principals.keep(key, who.clone(), read);
        }
        Ok(Ok(who))
    }

    /// Checks a name and password.
    pub fn sign_in(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Result<Principal, Refusal>, StoreError> {
        users::sign_in(&**self.store, name, password)
    }

    /// Opens a browser session of `user` for `lasts_ms`: the cookie's value and its CSRF token.
    pub fn open_session(&self, user: &str, lasts_ms: u64) -> Result<(String, String), StoreError> {
        users::open_session(&**self.store, user, lasts_ms)
    }

    /// Who a browser session is, and its CSRF token.
    pub fn by_session(&self, cookie: &str) -> Result<Option<users::SessionFound>, StoreError> {
        users::by_session(&**self.store, cookie)
    }

    /// Ends a browser session.
    pub fn close_session(&self, cookie: &str) -> Result<(), StoreError> {
        users::close_session(&**self.store, cookie)
    }

    /// On a store with no API token yet: the `admin` user and its first token (returned, to
    /// be shown once). `None` when tokens exist.
    pub fn first_admin(&self) -> Result<Option<String>, UserError> {
        if crate::tokens::any(&**self.store)? {
            return Ok(None);
        }
        if users::get(&**self.store, "admin")?.is_none() {
            users::create(&**self.store, "admin", Role::Admin, None)?;
        }
        let (_, token) = crate::tokens::create_for(&**self.store, "admin", "first start", None)?;
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, StoreExt};

    #[test]
    fn a_channel_store_refuses_the_cores_trees() {
        let channels = ChannelStore {
            store: Arc::new(MemoryStore::default()),
        };
        channels.put(Tree::ChannelKeys, b"CA1", b"c1").unwrap();
        assert_eq!(
            channels.get(Tree::ChannelKeys, b"CA1").unwrap(),
            Some(b"c1".to_vec())
        );
        let refused = channels.put(Tree::Sessions, b"c1", b"{}").unwrap_err();
        assert!(
            refused.to_string().contains("belongs to the core"),
            "{refused}"
        );
        let mut batch = Batch::new();
        batch.put(Tree::ChannelKeys, b"CA2".to_vec(), b"c2".to_vec());
        batch.put(Tree::Tasks, b"t1".to_vec(), b"{}".to_vec());
        assert!(channels.commit(&batch).is_err());
        assert_eq!(
            channels.get(Tree::ChannelKeys, b"CA2").unwrap(),
            None,
            "a batch touching a core tree writes nothing"
        );
        assert!(channels.get(Tree::Tasks, b"t1").is_err());
    }
}
