//! One node's core, wired together once: the store, the engine, the flows, the sessions, the
//! router and the metrics, and what takes several of them (checked deploys, replays, the
//! router component's planner, one pass of the news dispatcher). Owns no connection and no
//! channel: entry points build on a [`Node`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::engine::{Clock, Engine, Services};
use crate::flows::{DeployOptions, Deployed, Flows, FlowsError};
use crate::metrics::Metrics;
use crate::replay::{Golden, ReplayReport};
use crate::router::{QueueConfig, Router};
use crate::sessions::{ContactError, Sessions, StepReport};
use crate::store::{SledStore, Store};

/// One Switchboard node's core: the store, the engine, the flows, the sessions, the router
/// and the metrics, wired together once. Channels, the HTTP API and the CLI are built on it.
pub struct Node {
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
    /// What host calls are served from.
    pub services: Arc<Services>,
    /// The CRM connector link (its lookups and cache).
    pub crm: Arc<crate::connector::CrmLink>,
    /// Where this node keeps local files of its own (uploaded and rendered prompts).
    pub files: PathBuf,
    /// The scratch directory of an ephemeral node, removed with it.
    _scratch: Option<tempfile::TempDir>,
}

impl Node {
    /// Opens the node on the data directory of `config`.
    pub fn open(config: Config) -> anyhow::Result<Node> {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.data_dir)?);
        let dir = config.data_dir.clone();
        Self::assemble(
            config,
            store,
            dir.join("artifacts"),
            dir.clone(),
            None,
            Clock::System,
        )
    }

    /// A node whose store lives in memory and a scratch directory (simulations,
    /// benchmarks). `clock` fixes the time flows see, when given.
    pub fn ephemeral(config: Config, clock: Clock) -> anyhow::Result<Node> {
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary()?);
        let scratch = tempfile::Builder::new().prefix("switchboard-").tempdir()?;
        // Compiled artifacts are keyed by content and engine build, so simulations share one
        // cache and a flow is compiled once per machine, not once per run.
        let artifacts = std::env::temp_dir().join("switchboard-artifacts");
        let files = scratch.path().to_path_buf();
        Self::assemble(config, store, artifacts, files, Some(scratch), clock)
    }

    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        artifacts: PathBuf,
        files: PathBuf,
        scratch: Option<tempfile::TempDir>,
        clock: Clock,
    ) -> anyhow::Result<Node> {
        let components = files.join("components");
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
                .define_queue(QueueConfig::named(&config.fallback.queue))
                .map_err(|e| anyhow::anyhow!("cannot define the fallback queue: {e}"))?;
        }
        router.set_planner(planner(flows.clone(), engine.clone(), store.clone()));
        crm.register_metrics(&metrics);
        {
            let router = router.clone();
            metrics.sample(move |samples| router.sample_metrics(samples));
        }
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
        if let Err(e) = sessions.settle_ended_contacts() {
            tracing::error!(error = %e, "cannot settle the tasks of contacts that ended before the restart");
        }
        Ok(Node {
            config,
            store,
            engine,
            flows,
            sessions,
            metrics,
            router,
            services,
            crm,
            files,
            _scratch: scratch,
        })
    }

    /// One pass of the news dispatcher: flows hear what happened to their contacts' tasks.
    /// Returns the reports of the steps that heard it, for the channels to render.
    pub fn deliver_news(&self) -> Vec<StepReport> {
        match self.sessions.deliver_news() {
            Ok(reports) => reports,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the contacts' news; will try again");
                Vec::new()
            }
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
                        agents: t.workers,
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
