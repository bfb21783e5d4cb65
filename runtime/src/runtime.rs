//! The runtime of the `switchboard` binary: one [`Node`] plus the live parts of the channels
//! (web chat connections, prompt audio, the SIP endpoint); it runs the news dispatcher, whose
//! step reports the channels follow.

use std::ops::Deref;
use std::sync::Arc;

use crate::config::Config;
use crate::engine::Clock;
use crate::sessions::ContactError;

pub use switchboard_core::node::{CheckedDeployError, Node, ROUTER_FLOW};

/// A running Switchboard: the core node and the channels' live state.
pub struct Runtime {
    /// The core (shared with the channels, which depend on it and not on this runtime).
    pub node: Arc<Node>,
    /// Live web chat connections.
    pub chat: Arc<crate::channels::chat::ChatHub>,
    /// Prompt audio: rendered speech, uploaded recordings, hold music.
    pub prompts: Arc<crate::channels::sip::prompts::Prompts>,
    /// The SIP endpoint, once started.
    pub sip: std::sync::OnceLock<Arc<crate::channels::sip::Endpoint>>,
    /// Set once the node drains (SIGTERM): readiness fails, sockets close with 1001 (going
    /// away) so clients reconnect elsewhere, new calls are turned away.
    pub draining: tokio::sync::watch::Sender<bool>,
    /// The e-mail channel: accepted mail, threads, the outbox.
    pub email: Arc<crate::channels::email::Mailroom>,
    /// Twilio's REST API, when the account is configured.
    pub twilio: Option<Arc<crate::channels::twilio::rest::Rest>>,
    clock: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    clock_stopped: std::sync::atomic::AtomicBool,
}

/// The core's parts (store, flows, sessions, router...) are reached through the node.
impl Deref for Runtime {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Runtime {
    /// Opens the runtime on the data directory of `config`.
    pub fn open(config: Config) -> anyhow::Result<Runtime> {
        Ok(Runtime::around(Node::open(config)?))
    }

    /// A runtime whose store lives in memory and a scratch directory (simulations,
    /// benchmarks). `clock` fixes the time flows see, when given.
    pub fn ephemeral(config: Config, clock: Clock) -> anyhow::Result<Runtime> {
        Ok(Runtime::around(Node::ephemeral(config, clock)?))
    }

    fn around(node: Node) -> Runtime {
        let prompts = Arc::new(crate::channels::sip::prompts::Prompts::new(
            &node.files().join("prompts"),
            Arc::new(node.channel_store().clone()),
        ));
        let twilio =
            crate::channels::twilio::rest::Rest::from_config(&node.config().twilio).map(Arc::new);
        let email = Arc::new(crate::channels::email::Mailroom::new(
            Arc::new(node.channel_store().clone()),
            node.config().email.clone(),
        ));
        let chat = crate::channels::chat::ChatHub::new(node.bus().clone());
        Runtime {
            email,
            twilio,
            node: Arc::new(node),
            chat,
            prompts,
            sip: std::sync::OnceLock::new(),
            draining: tokio::sync::watch::channel(false).0,
            clock: std::sync::Mutex::new(None),
            clock_stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Starts draining: readiness fails, WebSockets close with 1001, SIP turns new calls
    /// away. Calls up go on; the caller decides how long to wait for them.
    pub fn drain(&self) {
        self.draining.send_replace(true);
        if let Some(sip) = self.sip.get() {
            sip.drain();
        }
    }

    /// Calls still up on this node.
    pub fn active_calls(&self) -> usize {
        self.sip.get().map_or(0, |sip| sip.active_calls())
    }

    /// Resolves once the node drains (at once if it already does).
    pub async fn drained(&self) {
        let mut watch = self.draining.subscribe();
        let _ = watch.wait_for(|draining| *draining).await;
    }

    /// Tells flows what happened to their contacts' tasks (assigned, completed, timed out,
    /// canceled, still waiting): one pass of the news dispatcher, whose steps' reports go to
    /// the channels that render them.
    pub fn deliver_news(&self) {
        // The channels render the reports: they follow the sessions' published reports.
        self.node.deliver_news();
    }

    /// Starts the router's clock: every 250 ms reservations expire, plans escalate, tasks time
    /// out, and flows hear about it. Runs until the process ends.
    pub fn start_router_clock(self: &Arc<Self>) {
        let runtime = Arc::downgrade(self);
        let clock = std::thread::Builder::new()
            .name("router-clock".into())
            .spawn(move || {
                let mut let_go = 0;
                while let Some(rt) = runtime.upgrade() {
                    if rt.clock_stopped.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    rt.node.tick();
                    // Back after the cluster let this node go: the calls it ended are hung up.
                    if let Some(times) = rt.node.membership().map(|m| m.times_let_go())
                        && times != let_go
                    {
                        let_go = times;
                        if let Some(sip) = rt.sip.get() {
                            let calls = sip.hang_up_ended();
                            tracing::warn!(calls, "hung up the calls the cluster ended while this node was unreachable");
                        }
                    }
                    drop(rt);
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            })
            .expect("a thread can be started");
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock);
    }

    /// Stops the router's clock and waits for its last turn, so the node is let go (its
    /// counters written, its claim released) by the caller, not by a thread cut short when
    /// the process exits.
    pub fn stop_router_clock(&self) {
        self.clock_stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(clock) = self.clock.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = clock.join();
        }
    }

    /// A chat visitor wrote: to the agent holding their task, or else to their flow (whose
    /// answer goes back to the visitor).
    pub fn chat_message(&self, contact: &str, text: &str) -> Result<(), ContactError> {
        let session = self.contacts().get(contact)?;
        if let crate::sessions::Status::WithAgent {
            agent: Some(agent), ..
        } = &session.status
        {
            return self.customer_to_agent(contact, agent, text);
        }
        let report = self.contacts().send(
            contact,
            crate::contract::Event::Message {
                text: text.to_string(),
            },
        )?;
        self.chat.deliver(&report);
        Ok(())
    }

    /// A customer (chat, SMS) wrote to the agent holding their conversation: kept in the
    /// transcript, then pushed to the agent's desk.
    pub fn customer_to_agent(
        &self,
        contact: &str,
        agent: &str,
        text: &str,
    ) -> Result<(), ContactError> {
        let task = self.contacts().task_of(contact);
        // The agent holding the task now: after a transfer, none until the next one accepts
        // (who reads what was said meanwhile in the conversation).
        let holder = match &task {
            Some(t) if t.status == crate::router::TaskStatus::Assigned => t.agent.clone(),
            Some(_) => None,
            None => Some(agent.to_string()),
        };
        let task = task.map(|t| t.id);
        // Kept before it is shown: what the agent reads is in the transcript.
        self.contacts().record_said(
            contact,
            "customer",
            holder.as_deref(),
            task.as_deref(),
            text,
        )?;
        if let Some(holder) = holder {
            self.chat.to_agent(
                &holder,
                serde_json::json!({"type": "message", "task": task, "contact": contact, "text": text}),
            );
        }
        Ok(())
    }

    /// The open conversation `task` of `agent` (assigned to them, with a contact), and its
    /// contact; refused as not theirs otherwise.
    fn conversation_of(
        &self,
        agent: &str,
        task: &str,
    ) -> Result<(crate::router::Task, String), crate::api::ApiError> {
        let task = self.desk().task(task)?;
        match (&task.agent, task.status, &task.contact) {
            (Some(w), crate::router::TaskStatus::Assigned, Some(contact)) if w == agent => {
                let contact = contact.clone();
                Ok((task, contact))
            }
            _ => Err(crate::router::RouterError::NotYours(format!(
                "task {} is not an open conversation of {agent}",
                task.id
            ))
            .into()),
        }
    }

    /// An agent is typing to the customer of a chat task they hold: the widget shows it. A
    /// task that is not theirs, not open or not a chat is refused.
    pub fn agent_typing(&self, agent: &str, task: &str) -> Result<(), crate::api::ApiError> {
        let (task, contact) = self.conversation_of(agent, task)?;
        if task.channel != crate::contract::Channel::Chat {
            return Err(crate::router::RouterError::Conflict(format!(
                "task {} is not a chat: typing is shown on the chat widget only",
                task.id
            ))
            .into());
        }
        self.chat.to_visitor(
            &contact,
            serde_json::json!({"type": "typing", "agent": agent}),
        );
        Ok(())
    }

    /// An agent writes to the customer of a task they hold: on the chat widget, or by SMS
    /// through Twilio's REST API. Kept in the transcript once it was handed over.
    pub fn agent_message(
        &self,
        agent: &str,
        task: &str,
        text: &str,
    ) -> Result<(), crate::api::ApiError> {
        use crate::api::ApiError;
        use axum::http::StatusCode;
        let (task, contact) = self.conversation_of(agent, task)?;
        let session = self.contacts().get(&contact)?;
        if session.channel == crate::contract::Channel::Sms {
            let Some(rest) = &self.twilio else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "sms_not_configured",
                    "replying by SMS needs the Twilio account: set twilio.account_sid and twilio.auth_token in switchboard.toml (or SWITCHBOARD_TWILIO_ACCOUNT_SID and SWITCHBOARD_TWILIO_AUTH_TOKEN)",
                ));
            };
            // Our number to the customer's: the reverse of how they wrote in.
            rest.send_sms(&session.to, &session.from, text)
                .map_err(|e| match e {
                    crate::channels::twilio::rest::RestError::Refused { .. } => ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "sms_refused",
                        e.to_string(),
                    ),
                    crate::channels::twilio::rest::RestError::InDoubt { .. } => {
                        ApiError::new(StatusCode::BAD_GATEWAY, "sms_in_doubt", e.to_string())
                    }
                    _ => ApiError::new(StatusCode::BAD_GATEWAY, "sms_unavailable", e.to_string()),
                })?;
            // Sent: a transcript that cannot be written now is logged, not reported as a
            // failure (the agent would send it again, and the customer get it twice).
            if let Err(e) =
                self.contacts()
                    .record_said(&contact, "agent", Some(agent), Some(&task.id), text)
            {
                tracing::error!(contact, task = %task.id, error = %e, "an SMS the agent sent is missing from the transcript");
            }
            return Ok(());
        }
        if session.channel == crate::contract::Channel::Email {
            // Queued durably first: the outbox sends it (and again until the relay takes it).
            let mail = self.email.agent_reply(&contact, text).map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "mail_not_queued",
                    format!("the reply could not be queued: {e}; send it again"),
                )
            })?;
            if let Err(e) =
                self.contacts()
                    .record_said(&contact, "agent", Some(agent), Some(&task.id), text)
            {
                tracing::error!(contact, task = %task.id, message_id = %mail.message_id, error = %e, "a mail the agent sent is missing from the transcript");
            }
            return Ok(());
        }
        // Kept before it is shown: what the customer reads is in the transcript.
        let said =
            self.contacts()
                .record_said(&contact, "agent", Some(agent), Some(&task.id), text)?;
        self.chat.to_visitor(
            &contact,
            serde_json::json!({"type": "message", "from": "agent", "agent": agent, "text": text,
                "id": crate::channels::chat::said_line(&said)}),
        );
        Ok(())
    }

    /// Twilio's REST API for steps no webhook asked for (the news dispatcher's), in order, on
    /// one sender thread, when the account is configured: what a flow says to an SMS
    /// customer (a task's outcome, queue-wait news) is sent as SMS; a Twilio caller waiting
    /// in `<Enqueue>` whose task an agent accepted is sent to the agent at once (the call is
    /// given a `<Dial>`; without `twilio.public_url`, or when the API fails, the caller's next
    /// wait-URL request does it).
    pub fn follow_twilio_reports(self: &Arc<Self>) {
        if self.twilio.is_none() {
            return;
        }
        crate::channels::twilio::callback::start(self);
        let (tx, rx) = std::sync::mpsc::channel::<crate::sessions::StepReport>();
        crate::channels::follow_reports(self.contacts().subscribe(), move |report| {
            let says = !crate::channels::chat::texts(&report.actions).is_empty();
            let answered = matches!(report.status, crate::sessions::Status::WithAgent { .. });
            if says || answered {
                let _ = tx.send(report.clone());
            }
        });
        let runtime = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("twilio-out".into())
            .spawn(move || {
                while let Ok(report) = rx.recv() {
                    let Some(rt) = runtime.upgrade() else { return };
                    rt.send_to_twilio(&report);
                }
            });
    }

    fn send_to_twilio(&self, report: &crate::sessions::StepReport) {
        let Some(rest) = &self.twilio else { return };
        let Ok(session) = self.contacts().get(&report.contact) else {
            return;
        };
        match session.channel {
            crate::contract::Channel::Sms => {
                for text in crate::channels::chat::texts(&report.actions) {
                    if let Err(e) = rest.send_sms(&session.to, &session.from, &text) {
                        tracing::error!(contact = %report.contact, error = %e, "a flow's SMS was not sent");
                    }
                }
            }
            crate::contract::Channel::Voice => {
                let crate::sessions::Status::WithAgent {
                    agent: Some(agent), ..
                } = &report.status
                else {
                    return;
                };
                let (Some(call_sid), Some(base)) = (
                    session
                        .attributes
                        .iter()
                        .find(|(k, _)| k == "twilio_call_sid")
                        .map(|(_, v)| v),
                    self.config().twilio.public_url.clone(),
                ) else {
                    return;
                };
                // Only the step that heard `assigned`: the call is sent to the agent once.
                let assigned = self.contacts().trace(&report.contact).is_ok_and(|trace| {
                    trace.iter().any(|s| {
                        s.step == report.step
                            && matches!(
                                s.event,
                                crate::contract::Event::TaskOutcome {
                                    status: crate::contract::TaskStatus::Assigned,
                                    ..
                                }
                            )
                    })
                });
                let Some(endpoint) =
                    crate::channels::twilio::endpoint_of(&self.node, agent).filter(|_| assigned)
                else {
                    return;
                };
                let mut twiml = crate::channels::twilio::twiml::TwiML::new();
                twiml.dial_agent(&endpoint, &crate::channels::twilio::urls(&base));
                match rest.redirect_call(call_sid, &twiml.finish()) {
                    Ok(()) => {
                        tracing::info!(contact = %report.contact, agent, "Twilio call sent to the agent")
                    }
                    Err(e) => {
                        tracing::error!(contact = %report.contact, error = %e, "the Twilio call could not be sent to the agent now; its next wait-URL request will")
                    }
                }
            }
            _ => {}
        }
    }
}
