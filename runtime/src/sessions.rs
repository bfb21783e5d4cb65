//! Contact sessions: one per contact, pinned to the flow version it started on, carrying the
//! flow's opaque state between events. Owns running a contact's steps in order, applying
//! their actions to the session, the fallback when a step faults, and the per-step trace.
//! Every step is durable (session, trace, kv writes flushed) before its result is returned.
//! Never decides which version is live, and never talks to a channel.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::FallbackConfig;
use crate::contract::{Action, Channel, Contact, Enqueue, Event, Gather, Say};
use crate::engine::{Engine, Fault, HostCall, Services, StepTarget};
use crate::flows::{Flows, FlowsError};
use crate::metrics::Metrics;
use crate::router::{NewTask, Router, RouterError};
use crate::store::{Store, StoreError, StoreExt, Tree};

/// Where a contact stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Awaiting {
    /// The answer to this gather.
    Input(Gather),
    /// A text message.
    Message,
}

/// A contact's session, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub attributes: Vec<(String, String)>,
    /// The flow.
    pub flow: String,
    /// The version it is pinned to.
    pub version: u64,
    /// The flow's state after the last step.
    #[serde(with = "base64_bytes")]
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

/// One step of a contact, as recorded: everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Step number, from 1.
    pub step: u32,
    /// RFC 3339 time.
    pub at: String,
    /// The version that ran it.
    pub version: u64,
    /// The contact's attributes when the step started.
    #[serde(default)]
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
    pub state: Vec<u8>,
    /// Microseconds the step took in the engine.
    pub elapsed_us: u64,
}

/// The result of a step, as channels and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
    pub attributes: Vec<(String, String)>,
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
}

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
        }
    }

    fn stripe(&self, id: &str) -> std::sync::MutexGuard<'_, ()> {
        let hash = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        self.stripes[hash as usize % self.stripes.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a contact on the live version of its flow and runs its `started` step.
    pub fn start(&self, new: NewContact) -> Result<StepReport, ContactError> {
        let entry = self.flows.entry_point(&new.to)?;
        let (flow, mut attributes) = match (&new.flow, entry) {
            (Some(flow), _) => (flow.clone(), Vec::new()),
            (None, Some(entry)) => (entry.flow, entry.attributes),
            (None, None) => return Err(ContactError::NoFlow(new.to.clone())),
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
        };
        let _turn = self.stripe(&session.id);
        self.metrics.contact_started();
        self.flows.pin(&session.flow, session.version);
        let report = self.run(&mut session, Event::Started);
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
        let mut session = self.get(id)?;
        if matches!(session.status, Status::Ended { .. }) {
            return Err(ContactError::Ended(id.to_string()));
        }
        self.run(&mut session, event)
    }

    /// Pins the versions of every contact still in progress (after a restart), so their
    /// versions stay loaded until they end.
    pub fn restore_pins(&self) -> Result<usize, ContactError> {
        let mut n = 0;
        for (_, bytes) in self.store.scan_prefix(Tree::Sessions, b"")? {
            let Ok(session) = serde_json::from_slice::<Session>(&bytes) else {
                continue;
            };
            if !matches!(session.status, Status::Ended { .. }) {
                self.flows.pin(&session.flow, session.version);
                n += 1;
            }
        }
        Ok(n)
    }

    /// A contact's session.
    pub fn get(&self, id: &str) -> Result<Session, ContactError> {
        self.store
            .get_json(Tree::Sessions, id)?
            .ok_or_else(|| ContactError::UnknownContact(id.to_string()))
    }

    /// The `n` most recently started contacts that `keep` accepts, newest first.
    pub fn recent(
        &self,
        n: usize,
        keep: impl Fn(&Session) -> bool,
    ) -> Result<Vec<Session>, ContactError> {
        let mut sessions: Vec<Session> = self
            .store
            .scan_json::<Session>(Tree::Sessions, "")?
            .into_iter()
            .filter(|s| keep(s))
            .collect();
        sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        sessions.truncate(n);
        Ok(sessions)
    }

    /// A contact's recorded steps, in order.
    pub fn trace(&self, id: &str) -> Result<Vec<TraceEntry>, ContactError> {
        self.get(id)?;
        Ok(self.store.scan_json(Tree::Traces, &format!("{id}/"))?)
    }

    fn run(&self, session: &mut Session, event: Event) -> Result<StepReport, ContactError> {
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
        self.metrics.step(
            &session.flow,
            session.version,
            result.elapsed,
            result.outcome.as_ref().err(),
        );

        let attributes_before = session.attributes.clone();
        let customer_left = event == Event::Hangup;
        let first_step = event == Event::Started;
        let (actions, fault) = match result.outcome {
            Ok((actions, state)) => {
                crate::engine::host::apply_kv_writes(
                    &*self.store,
                    &session.flow,
                    &result.kv_writes,
                )?;
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
            session.end("customer-hangup");
        } else {
            session.hear(&event);
            session.apply(&actions);
        }
        self.route(session, &actions, was_queued)?;
        let faulted = fault.is_some();
        self.flows.record_step(
            &session.flow,
            session.version,
            faulted,
            first_step,
            faulted && session.faults == 1,
        )?;
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
            elapsed_us: result.elapsed.as_micros() as u64,
        };
        self.store.put_json(
            Tree::Traces,
            &format!("{}/{:06}", session.id, session.steps),
            &entry,
        )?;
        self.store.put_json(Tree::Sessions, &session.id, session)?;
        self.store.flush()?;
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

    /// Creates the task of a contact that just entered a queue, and cancels the open task of
    /// one that ended. Written with the session, so both are durable together.
    fn route(
        &self,
        session: &Session,
        actions: &[Action],
        was_queued: bool,
    ) -> Result<(), ContactError> {
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
            match self.router.create_task(new.clone()) {
                Ok(_) => {}
                Err(RouterError::UnknownQueue(queue)) => {
                    // The flow named a queue nobody defined: the contact still reaches a human.
                    tracing::error!(contact = %session.id, flow = %session.flow, queue, "the flow enqueued into an undefined queue; using the fallback queue");
                    new.queue = self.fallback.queue.clone();
                    self.router
                        .create_task(new)
                        .map_err(|e| ContactError::Routing(e.to_string()))?;
                }
                Err(e) => return Err(ContactError::Routing(e.to_string())),
            }
        }
        if matches!(session.status, Status::Ended { .. })
            && let Some(task) = self.router.task_of_contact(&session.id)
        {
            let callback = actions.iter().find_map(|a| match a {
                Action::Callback { number } => Some(number.clone()),
                _ => None,
            });
            match callback {
                // The caller keeps their place: the task stays, now a call to make.
                Some(number) => {
                    self.router
                        .keep_for_callback(&task.id, &number)
                        .map_err(|e| ContactError::Routing(e.to_string()))?;
                }
                None => {
                    let _ = self.router.cancel(&task.id, "the customer left");
                }
            }
        }
        Ok(())
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
