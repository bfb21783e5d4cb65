//! One node's core, wired together once: the store, the engine, the flows, the sessions, the
//! router and the metrics, and what takes several of them (checked deploys, replays, the
//! router component's planner, one pass of the news dispatcher). Owns no connection and no
//! channel: entry points build on a [`Node`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::bus::Bus;
use crate::cluster::Membership;
use crate::config::Config;
use crate::engine::{Clock, Engine, Services};
use crate::flows::Flows;
use crate::handles::{Admin, ChannelStore, Contacts, Desk};
use crate::metrics::Metrics;
use crate::router::{QueueConfig, Router};
use crate::sessions::{Sessions, StepReport};
use crate::store::{PostgresOptions, PostgresStore, SledStore, Store};

pub use crate::handles::CheckedDeployError;

/// One Switchboard node's core: the store, the engine, the flows, the sessions, the router
/// and the metrics, wired together once. Entry points reach it through its handles
/// ([`Node::contacts`], [`Node::desk`], [`Node::admin`], [`Node::channel_store`]), never
/// through its parts.
pub struct Node {
    config: Config,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    router: Arc<Router>,
    contacts: Contacts,
    desk: Desk,
    admin: Admin,
    channel_store: ChannelStore,
    files: PathBuf,
    /// The scratch directory of an ephemeral node, removed with it.
    _scratch: Option<tempfile::TempDir>,
    /// This node's membership of the cluster on a shared store, let go before the data
    /// directory's lock (so the same node restarting never finds its record deleted under
    /// it).
    membership: Option<Arc<Membership>>,
    /// Messages to and from the other nodes' connections (nothing crosses on one node).
    bus: Arc<Bus>,
    /// This node's hold on its data directory (its caches and admin token are its own).
    _lock: Option<std::fs::File>,
}

/// The last counts are kept when a node stops.
impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = self.admin.flows.flush_health() {
            tracing::warn!(error = %e, "cannot write the versions' health counters at stop");
        }
    }
}

/// Takes the data directory for this process: two nodes never share one, whatever their
/// store.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot make the data directory {}", dir.display()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("node.lock"))
        .with_context(|| format!("cannot open {}", dir.join("node.lock").display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the data directory {} is in use by another switchboard process; stop it or pass another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!(
            "cannot lock the data directory {}: {e}",
            dir.display()
        )),
    }
}

impl Node {
    /// Opens the node on the data directory of `config`.
    pub fn open(config: Config) -> anyhow::Result<Node> {
        let lock = lock_data_dir(&config.data_dir)?;
        // A shared database also carries the messages between nodes.
        let mut relay: Option<Arc<dyn crate::bus::Relay>> = None;
        let store: Arc<dyn Store> = match &config.store.url {
            Some(url) => {
                anyhow::ensure!(
                    crate::store::postgres::is_postgres_address(url),
                    "the store address is not a PostgreSQL address; write postgres://USER:PASSWORD@HOST:5432/DATABASE, or leave it unset for the embedded store in the data directory"
                );
                let postgres = Arc::new(PostgresStore::connect(
                    url,
                    &PostgresOptions {
                        unsafe_durability: config.store.unsafe_durability,
                    },
                )?);
                relay = Some(postgres.clone());
                postgres
            }
            None => Arc::new(SledStore::open(&config.data_dir)?),
        };
        let dir = config.data_dir.clone();
        // sled is one process's (its directory is locked); a shared database is the
        // cluster's: this node joins it. It follows the bus before its heartbeat makes it
        // live to the others, and its flow loader's subscription holds what they ask until
        // the loader runs: a deploy made while this node starts is answered, not waited
        // out.
        let cluster = match relay {
            Some(relay) => {
                let me = crate::cluster::node_id(&config.data_dir)?;
                let bus =
                    Bus::shared(me, relay).context("cannot follow the messages between nodes")?;
                let asked = bus.from_others();
                let membership = Arc::new(Membership::join(store.clone(), &config.data_dir)?);
                if std::env::var("SWITCHBOARD_FAILPOINT").is_ok_and(|f| f == "slow-join") {
                    tracing::warn!(
                        "SWITCHBOARD_FAILPOINT=slow-join: this node waits 3 s after joining the cluster (a test setting; unset it)"
                    );
                    std::thread::sleep(std::time::Duration::from_secs(3));
                }
                Some(Joined {
                    membership,
                    bus,
                    asked,
                })
            }
            None => None,
        };
        let mut node = Self::assemble(
            config,
            store,
            dir.join("artifacts"),
            dir.clone(),
            None,
            Clock::System,
            cluster,
        )?;
        node._lock = Some(lock);
        Ok(node)
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
        Self::assemble(config, store, artifacts, files, Some(scratch), clock, None)
    }

    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        artifacts: PathBuf,
        files: PathBuf,
        scratch: Option<tempfile::TempDir>,
        clock: Clock,
        cluster: Option<Joined>,
    ) -> anyhow::Result<Node> {
        let (membership, bus, asked) = match cluster {
            Some(j) => (Some(j.membership), j.bus, Some(j.asked)),
            None => (None, Bus::local(), None),
        };
        let bus = Arc::new(bus);
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
        let services =
            Arc::new(Services::new(store.clone(), clock).with_settings(flows.settings_copies()));
        let crm = Arc::new(crate::connector::CrmLink::new(
            flows.clone(),
            engine.clone(),
            store.clone(),
        ));
        let _ = services.crm.set(crm.clone());
        let router = Arc::new(
            match &membership {
                Some(_) => Router::open_shared(store.clone()),
                None => Router::open(store.clone()),
            }
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
        if let (Some(membership), Some(asked)) = (&membership, asked) {
            let me = membership.node().to_string();
            flows.join_cluster(
                me.clone(),
                loaded_everywhere(bus.clone(), Arc::downgrade(membership)),
            );
            load_when_asked(&bus, asked, Arc::downgrade(&flows), me.clone());
            let membership = Arc::downgrade(membership);
            sessions.join_cluster(
                me.clone(),
                Box::new(move |owner| {
                    let Some(membership) = membership.upgrade() else {
                        return false;
                    };
                    match owner {
                        Some(node) if node == me => true,
                        Some(node) if membership.holds(node) => false,
                        // Nobody's, or a lost node's: the leader's.
                        _ => membership.fence().is_some(),
                    }
                }),
            );
        }
        sessions.restore_pins()?;
        if let Err(e) = sessions.settle_ended_contacts() {
            tracing::error!(error = %e, "cannot settle the tasks of contacts that ended before the restart");
        }
        Ok(Node {
            config,
            contacts: Contacts {
                sessions: sessions.clone(),
                router: router.clone(),
            },
            desk: Desk {
                router: router.clone(),
                store: store.clone(),
            },
            admin: Admin {
                principals: Arc::default(),
                flows,
                router: router.clone(),
                sessions: sessions.clone(),
                engine,
                services,
                store: store.clone(),
            },
            channel_store: ChannelStore { store },
            sessions,
            metrics,
            router,
            files,
            _scratch: scratch,
            membership,
            bus,
            _lock: None,
        })
    }

    /// The configuration the node started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What channels do with contacts.
    pub fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// What agents do.
    pub fn desk(&self) -> &Desk {
        &self.desk
    }

    /// What admins, supervisors and developers do.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The trees channels keep their own state in.
    pub fn channel_store(&self) -> &ChannelStore {
        &self.channel_store
    }

    /// Messages to and from the connections other nodes hold (chat sockets, agent desks).
    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// The metrics registry (channels add their own samples).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where this node keeps local files of its own (rendered prompts).
    pub fn files(&self) -> &std::path::Path {
        &self.files
    }

    /// One turn of the router's clock: reservations expire, plans escalate, tasks time out,
    /// and the news dispatcher tells the flows.
    pub fn tick(&self) {
        let leads = match &self.membership {
            Some(membership) => {
                let fence = membership.fence();
                let leads = fence.is_some();
                self.router.set_fence(fence);
                // What the other nodes changed: read back, offers made there told here.
                if let Err(e) = self.router.refresh() {
                    tracing::warn!(error = %e, "cannot read the router's state back; will try again");
                }
                leads
            }
            None => true,
        };
        // In a cluster the leader alone runs the router's clock and lets lost nodes go.
        if leads {
            if let Err(e) = self.router.tick().and_then(|_| self.router.flush()) {
                tracing::error!(error = %e, "router tick failed");
            }
            self.settle_lost_nodes();
        }
        self.deliver_news();
        if let Err(e) = self.admin.flows.flush_health() {
            tracing::warn!(error = %e, "cannot write the versions' health counters; will try again");
        }
    }

    /// This node's membership of the cluster, when its store is shared.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_deref()
    }

    /// The leader ends the calls of nodes whose heartbeat ran out (`node-lost`: the flow
    /// hears the hang-up, the task is canceled; the call itself went with its node), then
    /// lets the node go. Their other contacts (chat, API) carry on: the leader hears their
    /// news until their customer comes back through another node.
    fn settle_lost_nodes(&self) {
        let Some(membership) = &self.membership else {
            return;
        };
        for node in membership.lost() {
            // Let go first, then end its calls against the tombstone: a node that comes back
            // midway knows it was let go, and keeps the calls not ended yet.
            let tombstone = match membership.let_go(&node) {
                Ok(Some(tombstone)) => tombstone,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(node, error = %e, "cannot let a lost node go; will try again");
                    continue;
                }
            };
            let calls = match self
                .sessions
                .live_contacts_of(&node, crate::contract::Channel::Voice)
            {
                Ok(calls) => calls,
                Err(e) => {
                    tracing::warn!(node, error = %e, "cannot list a lost node's calls; will try again");
                    continue;
                }
            };
            let mut settled = true;
            for contact in &calls {
                if let Err(e) = self.sessions.end_lost(contact, &tombstone) {
                    // Also a node that came back: its record is no longer the tombstone.
                    tracing::warn!(node, contact, error = %e, "cannot end a lost node's call; will look again");
                    settled = false;
                    break;
                }
            }
            if !settled {
                continue;
            }
            // Callback attempts it was dialing went with it: recorded as interrupted, never
            // dialed again; the next attempt follows the retry interval, from any node.
            match self.router.interrupted_callbacks(&node) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    node,
                    attempts = n,
                    "a lost node's callback attempts are recorded as interrupted"
                ),
                Err(e) => {
                    tracing::warn!(node, error = %e, "cannot close a lost node's callback attempts; will try again");
                    continue;
                }
            }
            tracing::warn!(
                node,
                calls = calls.len(),
                "a node was lost: its calls ended (node-lost)"
            );
            if let Err(e) = membership.forget(&node, &tombstone) {
                tracing::warn!(node, error = %e, "cannot delete a lost node's record; will try again");
            }
        }
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
}

/// A node's place in the cluster, made before the rest of it: its membership, its bus, and
/// the subscription its flow loader reads (taken before the node joined).
struct Joined {
    membership: Arc<Membership>,
    bus: Bus,
    asked: tokio::sync::broadcast::Receiver<crate::bus::Message>,
}

/// The bus topic asking the other nodes to load a new version: `{"flow", "version"}`.
const LOAD: &str = "flows.load";
/// The bus topic of a node's answer: `{"flow", "version", "node", "error"}`.
const LOADED: &str = "flows.loaded";
/// How long a deploy waits for the other live nodes to load its version; one that has not
/// answered by then loads it at its first contact (and is named in the log).
const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks every other live node to load a new version, and waits for their answers: `Ok` when
/// all loaded it (or stopped being live, or did not answer within [`LOAD_WAIT`]); the first
/// node that cannot load it fails the deploy.
fn loaded_everywhere(
    bus: Arc<Bus>,
    membership: std::sync::Weak<Membership>,
) -> crate::flows::LoadedEverywhere {
    Box::new(move |flow, version| {
        let Some(membership) = membership.upgrade() else {
            return Ok(());
        };
        let me = membership.node().to_string();
        let live_others = || -> Result<std::collections::BTreeSet<String>, String> {
            Ok(membership
                .live_now()
                .map_err(|e| format!("cannot read which nodes are live ({e})"))?
                .into_iter()
                .filter(|n| *n != me)
                .collect())
        };
        let mut waiting = live_others()?;
        if waiting.is_empty() {
            return Ok(());
        }
        // Listening before asking: no answer can come first.
        let mut answers = bus.from_others();
        bus.tell_others(
            LOAD,
            || serde_json::json!({"flow": flow, "version": version}),
        );
        let deadline = std::time::Instant::now() + LOAD_WAIT;
        let mut looked = std::time::Instant::now();
        while !waiting.is_empty() {
            use tokio::sync::broadcast::error::TryRecvError;
            match answers.try_recv() {
                Ok(m)
                    if m.topic == LOADED
                        && m.body["flow"] == flow
                        && m.body["version"] == version =>
                {
                    let node = m.body["node"].as_str().unwrap_or_default().to_string();
                    if let Some(error) = m.body["error"].as_str() {
                        return Err(format!("node {node} cannot load it ({error})"));
                    }
                    waiting.remove(&node);
                }
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Closed) => return Ok(()),
                Err(TryRecvError::Empty) => {
                    if looked.elapsed() > std::time::Duration::from_millis(500) {
                        // A node that died meanwhile is not waited for.
                        looked = std::time::Instant::now();
                        if let Ok(live) = live_others() {
                            waiting.retain(|n| live.contains(n));
                        }
                    }
                    if std::time::Instant::now() > deadline {
                        tracing::warn!(flow, version, nodes = ?waiting, "these live nodes did not say they loaded the new version in time; they load it at their first contact");
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
        Ok(())
    })
}

/// Loads the versions other nodes deploy as they ask, from a thread of its own, and answers
/// whether it could, as node `me`.
fn load_when_asked(
    bus: &Arc<Bus>,
    asked: tokio::sync::broadcast::Receiver<crate::bus::Message>,
    flows: std::sync::Weak<Flows>,
    me: String,
) {
    let answers = Arc::downgrade(bus);
    bus.follow_from(asked, "flow-loader", move |m| {
        if m.topic != LOAD {
            return true;
        }
        let (Some(flows), Some(bus)) = (flows.upgrade(), answers.upgrade()) else {
            return false;
        };
        let (Some(flow), Some(version)) = (m.body["flow"].as_str(), m.body["version"].as_u64())
        else {
            return true;
        };
        let error = match flows.component(flow, version) {
            Ok(_) => serde_json::Value::Null,
            Err(e) => {
                tracing::error!(flow, version, error = %e, "cannot load a version another node deploys");
                e.to_string().into()
            }
        };
        bus.tell_others(LOADED, || {
            serde_json::json!({"flow": flow, "version": version, "node": me, "error": error})
        });
        true
    });
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
    let services =
        Arc::new(Services::new(store, Clock::System).with_settings(flows.settings_copies()));
    Box::new(move |task| {
        let (version, component) = flows
            .live_component(ROUTER_FLOW, crate::engine::World::Router)
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
