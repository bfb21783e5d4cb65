//! One Switchboard instance: the store, the engine, the flows, the sessions and the metrics,
//! wired together once. The HTTP API, the CLI's local commands and the benchmarks all go
//! through this.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::engine::{Clock, Engine, Services};
use crate::flows::{DeployOptions, Deployed, Flows, FlowsError};
use crate::metrics::Metrics;
use crate::replay::{Golden, ReplayReport};
use crate::router::{QueueConfig, Router};
use crate::sessions::ContactError;
use crate::sessions::Sessions;
use crate::store::{SledStore, Store};

/// A running Switchboard.
pub struct Runtime {
    /// The configuration it started with.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The Wasm engine.
    pub engine: Arc<Engine>,
    /// Deployed flows.
    pub flows: Arc<Flows>,
    /// Contact sessions.
    pub sessions: Arc<Sessions>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The task router.
    pub router: Arc<Router>,
    /// Live web chat connections.
    pub chat: Arc<crate::channels::chat::ChatHub>,
    /// What host calls are served from.
    pub services: Arc<Services>,
    /// The CRM connector link (its lookups and cache).
    pub crm: Arc<crate::connector::CrmLink>,
    /// Prompt audio: rendered speech, uploaded recordings, hold music.
    pub prompts: Arc<crate::channels::sip::prompts::Prompts>,
    /// The SIP endpoint, once started.
    pub sip: std::sync::OnceLock<Arc<crate::channels::sip::Endpoint>>,
    /// The scratch directory of an ephemeral runtime, removed with it.
    _scratch: Option<tempfile::TempDir>,
}

impl Runtime {
    /// Opens the runtime on the data directory of `config`.
    pub fn open(config: Config) -> anyhow::Result<Runtime> {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.data_dir)?);
        let dir = config.data_dir.clone();
        Self::assemble(
            config,
            store,
            dir.join("artifacts"),
            dir.join("components"),
            None,
            Clock::System,
        )
    }

    /// A runtime whose store lives in memory and a scratch directory (simulations,
    /// benchmarks). `clock` fixes the time flows see, when given.
    pub fn ephemeral(config: Config, clock: Clock) -> anyhow::Result<Runtime> {
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary()?);
        let scratch = tempfile::Builder::new().prefix("switchboard-").tempdir()?;
        // Compiled artifacts are keyed by content and engine build, so simulations share one
        // cache and a flow is compiled once per machine, not once per run.
        let artifacts = std::env::temp_dir().join("switchboard-artifacts");
        let components = scratch.path().join("components");
        Self::assemble(config, store, artifacts, components, Some(scratch), clock)
    }

    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        artifacts: PathBuf,
        components: PathBuf,
        scratch: Option<tempfile::TempDir>,
        clock: Clock,
    ) -> anyhow::Result<Runtime> {
        let prompts_dir = components.with_file_name("prompts");
        let engine = Arc::new(
            Engine::new(&config.engine, Some(&artifacts))
                .context("cannot start the Wasm engine")?,
        );
        let flows = Arc::new(Flows::new(
            store.clone(),
            engine.clone(),
            components,
            config.canary.clone(),
        )?);
        let metrics = Arc::new(Metrics::default());
        let services = Arc::new(Services::new(store.clone(), clock));
        let crm = Arc::new(crate::connector::CrmLink::new(
            flows.clone(),
            engine.clone(),
            store.clone(),
        ));
        let _ = services.crm.set(crm.clone());
        let router = Arc::new(
            Router::open(store.clone())
                .map_err(|e| anyhow::anyhow!("cannot load the task router: {e}"))?,
        );
        if !router
            .queues()
            .iter()
            .any(|q| q.name == config.fallback.queue)
        {
            // The fallback must always reach a human: its queue exists from the start.
            router
                .define_queue(QueueConfig {
                    name: config.fallback.queue.clone(),
                    members: String::new(),
                    order: Default::default(),
                    sla_secs: 30,
                    reservation_timeout_secs: 30,
                    task_timeout_secs: 3600,
                    wait_event_secs: 0,
                    targets: Vec::new(),
                })
                .map_err(|e| anyhow::anyhow!("cannot define the fallback queue: {e}"))?;
        }
        router.set_planner(planner(flows.clone(), engine.clone(), store.clone()));
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            engine.clone(),
            flows.clone(),
            services.clone(),
            config.fallback.clone(),
            metrics.clone(),
            router.clone(),
        ));
        sessions.restore_pins()?;
        let prompts = Arc::new(crate::channels::sip::prompts::Prompts::new(&prompts_dir));
        Ok(Runtime {
            prompts,
            sip: std::sync::OnceLock::new(),
            config,
            store,
            engine,
            flows,
            sessions,
            metrics,
            router,
            chat: Arc::default(),
            services,
            crm,
            _scratch: scratch,
        })
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

impl Runtime {
    /// Tells flows what happened to their contacts' tasks (assigned, completed, timed out,
    /// canceled, still waiting): one pass of the news dispatcher, whose steps' reports go to
    /// the channels that render them.
    pub fn deliver_news(&self) {
        match self.sessions.deliver_news() {
            Ok(reports) => {
                for report in reports {
                    self.chat.deliver(&report);
                    if let Some(sip) = self.sip.get() {
                        sip.deliver(&report);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the contacts' news; will try again"),
        }
    }

    /// Starts the router's clock: every 250 ms reservations expire, plans escalate, tasks time
    /// out, and flows hear about it. Runs until the process ends.
    pub fn start_router_clock(self: &Arc<Self>) {
        let runtime = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("router-clock".into())
            .spawn(move || {
                while let Some(rt) = runtime.upgrade() {
                    if let Err(e) = rt.router.tick().and_then(|_| rt.router.flush()) {
                        tracing::error!(error = %e, "router tick failed");
                    }
                    rt.deliver_news();
                    drop(rt);
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            })
            .expect("a thread can be started");
    }

    /// A chat visitor wrote: to the agent holding their task, or else to their flow (whose
    /// answer goes back to the visitor).
    pub fn chat_message(&self, contact: &str, text: &str) -> Result<(), ContactError> {
        let session = self.sessions.get(contact)?;
        if let crate::sessions::Status::WithAgent {
            agent: Some(agent), ..
        } = &session.status
        {
            let task = self.router.task_of_contact(contact).map(|t| t.id);
            self.chat.to_agent(agent, serde_json::json!({"type": "message", "task": task, "contact": contact, "text": text}));
            return Ok(());
        }
        let report = self.sessions.send(
            contact,
            crate::contract::Event::Message {
                text: text.to_string(),
            },
        )?;
        self.chat.deliver(&report);
        Ok(())
    }

    /// An agent writes to the customer of a task they hold.
    pub fn agent_message(
        &self,
        agent: &str,
        task: &str,
        text: &str,
    ) -> Result<(), crate::router::RouterError> {
        let task = self.router.task(task)?;
        let contact = match (&task.worker, task.status, &task.contact) {
            (Some(w), crate::router::TaskStatus::Assigned, Some(contact)) if w == agent => {
                contact.clone()
            }
            _ => {
                return Err(crate::router::RouterError::NotYours(format!(
                    "task {} is not an open conversation of {agent}",
                    task.id
                )));
            }
        };
        self.chat.to_visitor(
            &contact,
            serde_json::json!({"type": "message", "from": "agent", "agent": agent, "text": text}),
        );
        Ok(())
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

/// The flow name whose live version, when it is a router component, plans every new task.
pub const ROUTER_FLOW: &str = "router";

/// Plans tasks with the live version of the `router` flow, when there is one. Any failure
/// (no component, a trap, an error, a bad plan) keeps the queue's own plan: a task is never
/// lost to a routing bug.
fn planner(
    flows: Arc<Flows>,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
) -> crate::router::Planner {
    use crate::engine::bindings::router::switchboard::flow::routing as wit;
    let services = Arc::new(Services::new(store, Clock::System));
    Box::new(move |task| {
        let (version, component) = flows
            .live_component(ROUTER_FLOW, crate::engine::ROUTER_WORLD)
            .ok()??;
        let attributes = task
            .attributes
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = wit::Task {
            id: task.id.clone(),
            queue: task.queue.clone(),
            channel: task.channel.into(),
            priority: task.priority,
            attributes,
        };
        match engine.route(&services, &component, &request) {
            Ok(Ok(plan)) => Some(crate::router::Plan {
                queue: plan.queue,
                priority: plan.priority,
                targets: plan
                    .targets
                    .into_iter()
                    .map(|t| crate::router::Target {
                        workers: t.workers,
                        timeout_secs: u64::from(t.timeout_secs),
                    })
                    .collect(),
            }),
            Ok(Err(why)) => {
                tracing::warn!(task = %task.id, version, why, "the router component declined; using the queue's plan");
                None
            }
            Err(fault) => {
                tracing::error!(task = %task.id, version, %fault, "the router component faulted; using the queue's plan");
                None
            }
        }
    })
}
