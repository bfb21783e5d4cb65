//! Flow versions and entry points. Owns which version of each flow a new contact gets: deploy
//! (validate, compile, store immutably, then make live atomically), canaries (promote, abort,
//! and the automatic abort of a failing one), roll back; which versions stay loaded (the live
//! one, the canary, and any a contact is pinned to); and which flow an address starts.
//! Never runs a step.

mod canary;
mod health;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;

pub use canary::{Arrival, Canary, Match};
pub use health::{Aborted, Health};

use crate::audit;
use crate::config::CanaryConfig;
use crate::contract::Channel;
use crate::engine::{CONNECTOR_WORLD, ConnectorPolicy, Engine, FlowComponent, Rejection, World};

/// The flow name under which a CRM connector is deployed: its live version answers every
/// flow's `crm.lookup`.
pub const CRM_FLOW: &str = "crm";
use crate::store::{Batch, Store, StoreError, StoreExt, Tree, keys};

/// An immutable deployed version of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlowVersion {
    /// The flow's name.
    pub flow: String,
    /// Sequence number, from 1.
    pub version: u64,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Component size in bytes.
    pub size: u64,
    /// The contract world it targets.
    pub world: String,
    /// RFC 3339 time of the deploy.
    pub deployed_at: String,
    /// Token name that deployed it.
    pub deployed_by: String,
    /// For a CRM connector: the hosts it may reach, its timeout and response cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorPolicy>,
}

/// What a deploy did, with its timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployed {
    /// The new live version.
    #[serde(flatten)]
    pub version: FlowVersion,
    /// Validation and compilation, in milliseconds (near zero for a cached artifact).
    pub compile_ms: f64,
    /// The swap itself: storing the version, moving the live pointer and flushing, in
    /// microseconds. Steps of running contacts never wait on it.
    pub swap_us: u64,
}

/// A flow and its live version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlowRecord {
    /// The flow's name.
    pub name: String,
    /// The version new contacts get.
    pub live: u64,
    /// RFC 3339 time the live version last changed.
    pub updated_at: String,
    /// The candidate taking part of the new contacts, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

impl FlowRecord {
    /// The versions new contacts can get: the live one, then the canary's if there is one.
    /// They stay loaded on every node.
    pub fn in_use(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.live).chain(self.canary.as_ref().map(|c| c.version))
    }
}

/// How to deploy.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Deploy as a canary taking this share (0-100) of new contacts instead of going live.
    pub canary_percent: Option<u32>,
    /// Canary rules: matching contacts go to the candidate.
    pub canary_matches: Vec<Match>,
    /// For a CRM connector: the hosts it may reach (`host`, `host:port`, `*.domain`).
    pub allow: Vec<String>,
    /// For a CRM connector: the lookup timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// For a CRM connector: the response body cap in bytes.
    pub max_response_bytes: Option<u64>,
}

impl DeployOptions {
    fn has_connector_options(&self) -> bool {
        !self.allow.is_empty() || self.timeout_ms.is_some() || self.max_response_bytes.is_some()
    }
}

/// A version with how it is doing and its role, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionStatus {
    /// The version.
    #[serde(flatten)]
    pub version: FlowVersion,
    /// `live`, `canary`, `aborted` or `idle`.
    pub role: String,
    /// Its counters.
    pub health: Health,
    /// Contacts pinned to it right now.
    pub pinned_contacts: u64,
    /// Whether it is compiled and in memory.
    pub loaded: bool,
}

/// An address that starts a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryPoint {
    /// The address: `+15550100`, `chat:support-widget`, `help@acme.test`.
    pub address: String,
    /// The flow it starts.
    pub flow: String,
    /// Attributes every contact through it starts with (such as `brand=acme`).
    #[serde(default)]
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
}

/// Why a flow operation failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum FlowsError {
    /// The component was refused.
    #[error("deploy rejected: {0}")]
    Rejected(Rejection),
    /// A flow name that cannot be used.
    #[error("{0:?} is not a valid flow name: use 1-64 lowercase letters, digits, '-' or '_'")]
    BadName(String),
    /// No such flow.
    #[error("there is no flow named {0:?}: see `switchboard flows`")]
    UnknownFlow(String),
    /// No such version.
    #[error("flow {flow:?} has no version {version}: see `switchboard versions {flow}`")]
    UnknownVersion {
        /// Flow.
        flow: String,
        /// Version.
        version: u64,
    },
    /// An entry point that cannot be used.
    #[error("{0}")]
    BadEntryPoint(String),
    /// Canary options that cannot be used.
    #[error("{0}")]
    BadCanary(String),
    /// A CRM connector deployed the wrong way, or connector options on a flow.
    #[error("{0}")]
    BadConnector(String),
    /// No canary to promote or abort.
    #[error(
        "flow {0:?} has no canary; deploy one with `switchboard deploy FILE --flow {0} --canary PERCENT`"
    )]
    NoCanary(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A component file could not be written or read.
    #[error("component storage failed: {0} (check the data directory)")]
    Io(String),
    /// Another node of the cluster could not load the new version: it was not made live.
    #[error("{0}")]
    NotLoaded(String),
}

// By hand rather than `#[from]`, which would also make the rejection the error's source and
// print its message twice in `{:#}` chains.
impl From<Rejection> for FlowsError {
    fn from(r: Rejection) -> Self {
        FlowsError::Rejected(r)
    }
}

/// The deployed flows.
pub struct Flows {
    store: Arc<dyn Store>,
    /// Settings as flows' steps recently read them: forgotten when one changes here.
    settings: Arc<crate::engine::host::Settings>,
    /// Flows found absent by [`Flows::live_component`] (the router and CRM flows, looked up
    /// at every task and lookup and usually not deployed), for a second.
    absent: crate::recent::Recent<String, ()>,
    engine: Arc<Engine>,
    /// Components of data directories from before they were kept in the store.
    legacy_components_dir: PathBuf,
    loaded: RwLock<HashMap<(String, u64), Arc<FlowComponent>>>,
    /// Held while a version is loaded into [`Flows::loaded`]: two callers needing the same
    /// version (a node's start-up load and a contact) compile it once, not side by side.
    /// Loads of different versions take turns too; on a cache miss each is a compile that
    /// would share the same cores anyway, and loads happen at start-up and first use only.
    loading: Mutex<()>,
    /// Contacts in progress per version: a version stays loaded while any is pinned to it.
    pins: Mutex<HashMap<(String, u64), u64>>,
    /// Health counters: counted here with each step, written to the store by
    /// [`Flows::flush_health`] (every clock tick), never on the step path, where one shared
    /// row per version would serialise every step of the node.
    health: Mutex<HashMap<(String, u64), Health>>,
    /// The versions whose counters changed since the last flush (taken under `health`).
    dirty_health: Mutex<std::collections::HashSet<(String, u64)>>,
    canary_config: CanaryConfig,
    /// In a cluster, this node: each node keeps its own counters (a row per node, so nodes
    /// never overwrite each other's), and a version's health is their sum.
    node: std::sync::OnceLock<String>,
    /// Deploys and rollbacks of all flows are serialised: they are rare and must not race
    /// for sequence numbers or the live pointer.
    changes: Mutex<()>,
    /// In a cluster: has every other live node load a new version before it takes contacts
    /// (the error says which node could not).
    loaded_everywhere: std::sync::OnceLock<LoadedEverywhere>,
}

/// Has every other live node of a cluster load version `.1` of flow `.0`; the error says which
/// node could not, and why.
pub type LoadedEverywhere = Box<dyn Fn(&str, u64) -> Result<(), String> + Send + Sync>;

/// The versions of `flow` other than `version` in `loaded`.
fn others_loaded<'a>(
    loaded: &'a HashMap<(String, u64), Arc<FlowComponent>>,
    flow: &'a str,
    version: u64,
) -> impl Iterator<Item = u64> + 'a {
    loaded
        .keys()
        .filter(move |(f, v)| f == flow && *v != version)
        .map(|(_, v)| *v)
}

impl Flows {
    /// In a cluster: this node's health counters are kept apart from the other nodes'.
    pub fn join_cluster(&self, node: String, loaded_everywhere: LoadedEverywhere) {
        let _ = self.node.set(node);
        let _ = self.loaded_everywhere.set(loaded_everywhere);
    }

    /// Where this node's counters of a version are kept.
    fn health_key(&self, flow: &str, version: u64) -> String {
        match self.node.get() {
            Some(node) => format!("{}/{node}", version_key(flow, version)),
            None => version_key(flow, version),
        }
    }

    /// A version's health over the whole cluster: this node's counters (`own`) plus the
    /// other nodes' as they last wrote them.
    fn cluster_health(&self, flow: &str, version: u64, own: &Health) -> Result<Health, FlowsError> {
        let mut total = own.clone();
        if let Some(node) = self.node.get() {
            let prefix = format!("{}/", version_key(flow, version));
            for (key, bytes) in self.store.scan_prefix(Tree::Health, prefix.as_bytes())? {
                if key.ends_with(format!("/{node}").as_bytes()) {
                    continue;
                }
                let other: Health = crate::store::decode(Tree::Health, &key, &bytes)?;
                total.add(&other);
            }
        }
        Ok(total)
    }
}

fn version_key(flow: &str, version: u64) -> String {
    keys::version(flow, version)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// The policy a CRM connector is deployed with; `None` for flows and routers. Refuses a
/// connector under another name than [`CRM_FLOW`], a flow under that name, a connector canary
/// and connector options on anything but a connector.
fn connector_policy(
    flow: &str,
    component: &FlowComponent,
    options: &DeployOptions,
    canary: bool,
) -> Result<Option<ConnectorPolicy>, FlowsError> {
    let is_connector = component.kind() == World::Connector;
    match (is_connector, flow == CRM_FLOW) {
        (true, false) => Err(FlowsError::BadConnector(format!(
            "this is a CRM connector: deploy it as the flow named {CRM_FLOW:?} (--flow {CRM_FLOW}), whose live version answers every flow's crm.lookup"
        ))),
        (false, true) => Err(FlowsError::BadConnector(format!(
            "the name {CRM_FLOW:?} is kept for the CRM connector (a component of {CONNECTOR_WORLD}); this component targets {}: deploy it under another name",
            component.world()
        ))),
        (true, true) if canary => Err(FlowsError::BadConnector(
            "a CRM connector goes live at once, without a canary; roll back with `switchboard rollback crm VERSION` if it misbehaves".into(),
        )),
        (true, true) => ConnectorPolicy::new(
            options.allow.clone(),
            options.timeout_ms,
            options.max_response_bytes,
        )
        .map(Some)
        .map_err(FlowsError::BadConnector),
        (false, false) if options.has_connector_options() => Err(FlowsError::BadConnector(
            "--allow, --timeout-ms and --max-response-kib are for CRM connectors; this component is a flow".into(),
        )),
        (false, false) => Ok(None),
    }
}

/// Checks a flow name.
pub fn check_name(name: &str) -> Result<(), FlowsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FlowsError::BadName(name.to_string()))
    }
}

impl Flows {
    /// The flows kept in `store`. `legacy_components_dir` is where data directories written
    /// before components were kept in the store have theirs (read once, then copied in).
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        legacy_components_dir: PathBuf,
        canary_config: CanaryConfig,
    ) -> anyhow::Result<Flows> {
        Ok(Flows {
            store,
            settings: Arc::default(),
            absent: crate::recent::Recent::default(),
            engine,
            legacy_components_dir,
            loaded: RwLock::new(HashMap::new()),
            loading: Mutex::new(()),
            pins: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            dirty_health: Mutex::default(),
            node: std::sync::OnceLock::new(),
            canary_config,
            changes: Mutex::new(()),
            loaded_everywhere: std::sync::OnceLock::new(),
        })
    }

    /// The copies of settings flows' steps read: for the [`crate::engine::Services`] that run
    /// them, so a change made here is seen at once.
    pub fn settings_copies(&self) -> Arc<crate::engine::host::Settings> {
        self.settings.clone()
    }

    /// Validates, compiles and stores `bytes` as the next version of `flow` and makes it live.
    /// On any error nothing changed and the live version is untouched.
    pub fn deploy(&self, flow: &str, bytes: &[u8], who: &str) -> Result<Deployed, FlowsError> {
        self.deploy_with(flow, bytes, who, &DeployOptions::default())
    }

    /// Deploys with options: as a canary taking a share of new contacts, the live version
    /// staying live until the canary is promoted.
    pub fn deploy_with(
        &self,
        flow: &str,
        bytes: &[u8],
        who: &str,
        options: &DeployOptions,
    ) -> Result<Deployed, FlowsError> {
        check_name(flow)?;
        let canary_percent = match options.canary_percent {
            Some(p) if p > 100 => {
                return Err(FlowsError::BadCanary(format!(
                    "a canary takes 0 to 100 percent of new contacts, not {p}"
                )));
            }
            Some(p) => Some(p as u8),
            None if !options.canary_matches.is_empty() => Some(0),
            None => None,
        };
        if canary_percent.is_some() && self.record(flow)?.is_none() {
            return Err(FlowsError::BadCanary(format!(
                "flow {flow:?} has no live version for a canary to run beside; deploy its first version without --canary"
            )));
        }
        let compiling = std::time::Instant::now();
        let component = self.engine.compile(bytes)?;
        let compile_ms = compiling.elapsed().as_secs_f64() * 1000.0;
        let connector = connector_policy(flow, &component, options, canary_percent.is_some())?;
        let _changing = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        self.write_component(&component.sha256, bytes)?;
        let swapping = std::time::Instant::now();
        let previous = self.record(flow)?;
        if let Some(live) = &previous
            && let Ok(live_version) = self.version(flow, live.live)
            && World::of(&live_version.world) != Some(component.kind())
        {
            return Err(FlowsError::Rejected(Rejection::WrongWorld(format!(
                "{flow:?} serves {}, and this component targets {}; deploy it under another name",
                live_version.world,
                component.world()
            ))));
        }
        // The next number, taken only if nobody took it meanwhile: the `changes` lock is this
        // process's, and another node of a cluster may be deploying the same flow.
        let mut attempts = 0;
        let record = loop {
            let version = match self
                .store
                .last_with_prefix(Tree::Versions, keys::versions_of(flow).as_bytes())?
            {
                Some((key, _)) => parse_version_key(&key) + 1,
                None => 1,
            };
            let record = FlowVersion {
                flow: flow.to_string(),
                version,
                sha256: component.sha256.clone(),
                size: bytes.len() as u64,
                world: component.world().to_string(),
                deployed_at: now(),
                deployed_by: who.to_string(),
                connector: connector.clone(),
            };
            let key = version_key(flow, version);
            let mut batch = Batch::new();
            batch.expect(Tree::Versions, key.clone(), None);
            batch.put_json(Tree::Versions, key, &record)?;
            match self.store.commit(&batch) {
                Ok(()) => break record,
                Err(StoreError::Conflict { .. }) if attempts < 10 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        };
        let version = record.version;
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((flow.to_string(), version), Arc::new(component));
        // Acknowledged once every node can run it: none compiles it at a customer's expense,
        // and none that cannot load it ever starts a contact on it.
        if let Some(loaded_everywhere) = self.loaded_everywhere.get() {
            let waiting = std::time::Instant::now();
            loaded_everywhere(flow, version).map_err(|why| {
                FlowsError::NotLoaded(format!(
                    "version {version} of {flow} was stored but not made live: {why}; the live version is unchanged"
                ))
            })?;
            tracing::info!(
                flow,
                version,
                waited_ms = waiting.elapsed().as_millis() as u64,
                "every live node loaded the new version"
            );
        }
        let previous_live = previous.as_ref().map(|r| r.live);
        match (canary_percent, previous) {
            (Some(percent), Some(mut flow_record)) => {
                if let Some(replaced) = flow_record.canary.take() {
                    self.mark_aborted(
                        flow,
                        replaced.version,
                        who,
                        &format!("replaced by canary version {version}"),
                    )?;
                }
                flow_record.canary = Some(Canary {
                    version,
                    percent,
                    matches: options.canary_matches.clone(),
                    started_at: now(),
                });
                self.store.put_json(Tree::Flows, flow, &flow_record)?;
                audit::record(
                    &*self.store,
                    who,
                    "deploy-canary",
                    flow,
                    json!({"live": flow_record.live, "canary": version, "percent": percent, "matches": options.canary_matches, "sha256": record.sha256}),
                )?;
            }
            _ => {
                self.set_live(flow, version)?;
                audit::record(
                    &*self.store,
                    who,
                    "deploy",
                    flow,
                    json!({"from": previous_live, "to": version, "sha256": record.sha256, "size": record.size}),
                )?;
            }
        }
        self.store.flush()?;
        let swap_us = swapping.elapsed().as_micros() as u64;
        if let Some(old) = previous_live {
            self.unload_if_unused(flow, old);
        }
        tracing::info!(flow, version, sha256 = %record.sha256, size = record.size, compile_ms, swap_us, "deployed and live");
        Ok(Deployed {
            version: record,
            compile_ms,
            swap_us,
        })
    }

    /// Makes an older (or newer) existing version live again.
    pub fn rollback(&self, flow: &str, version: u64, who: &str) -> Result<FlowRecord, FlowsError> {
        let _changing = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self
            .record(flow)?
            .ok_or_else(|| FlowsError::UnknownFlow(flow.to_string()))?;
        self.version(flow, version)?;
        // Load it before switching, so a component that no longer loads is refused here.
        self.component(flow, version)?;
        let record = self.set_live(flow, version)?;
        audit::record(
            &*self.store,
            who,
            "rollback",
            flow,
            json!({"from": previous.live, "to": version}),
        )?;
        self.store.flush()?;
        tracing::info!(flow, from = previous.live, to = version, "rolled back");
        self.unload_if_unused(flow, previous.live);
        Ok(record)
    }

    /// Makes the canary the live version.
    pub fn promote(&self, flow: &str, who: &str) -> Result<FlowRecord, FlowsError> {
        let _changing = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self
            .record(flow)?
            .ok_or_else(|| FlowsError::UnknownFlow(flow.to_string()))?;
        let canary = previous
            .canary
            .clone()
            .ok_or_else(|| FlowsError::NoCanary(flow.to_string()))?;
        let record = self.set_live(flow, canary.version)?;
        audit::record(
            &*self.store,
            who,
            "promote",
            flow,
            json!({"from": previous.live, "to": canary.version}),
        )?;
        self.store.flush()?;
        tracing::info!(
            flow,
            from = previous.live,
            to = canary.version,
            "canary promoted"
        );
        self.unload_if_unused(flow, previous.live);
        Ok(record)
    }

    /// Ends the canary: new contacts all get the live version again. Contacts already on
    /// the candidate finish there.
    pub fn abort(&self, flow: &str, who: &str, reason: &str) -> Result<FlowRecord, FlowsError> {
        let _changing = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = self
            .record(flow)?
            .ok_or_else(|| FlowsError::UnknownFlow(flow.to_string()))?;
        let canary = record
            .canary
            .take()
            .ok_or_else(|| FlowsError::NoCanary(flow.to_string()))?;
        self.store.put_json(Tree::Flows, flow, &record)?;
        self.mark_aborted(flow, canary.version, who, reason)?;
        audit::record(
            &*self.store,
            who,
            "abort",
            flow,
            json!({"live": record.live, "canary": canary.version, "reason": reason}),
        )?;
        self.store.flush()?;
        tracing::warn!(
            flow,
            canary = canary.version,
            live = record.live,
            who,
            reason,
            "canary aborted"
        );
        self.unload_if_unused(flow, canary.version);
        Ok(record)
    }

    fn mark_aborted(
        &self,
        flow: &str,
        version: u64,
        who: &str,
        reason: &str,
    ) -> Result<(), FlowsError> {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.health_entry(&mut health, flow, version)?;
        entry.aborted = Some(Aborted {
            at: now(),
            by: who.to_string(),
            reason: reason.to_string(),
        });
        let snapshot = entry.clone();
        self.store
            .put_json(Tree::Health, &self.health_key(flow, version), &snapshot)?;
        Ok(())
    }

    fn health_entry<'m>(
        &self,
        health: &'m mut HashMap<(String, u64), Health>,
        flow: &str,
        version: u64,
    ) -> Result<&'m mut Health, FlowsError> {
        let key = (flow.to_string(), version);
        if !health.contains_key(&key) {
            let stored = self
                .store
                .get_json(Tree::Health, &self.health_key(flow, version))?
                .unwrap_or_default();
            health.insert(key.clone(), stored);
        }
        Ok(health.get_mut(&key).expect("inserted above"))
    }

    /// The version a new contact of `flow` gets: the canary's when it takes this arrival,
    /// else the live one.
    pub fn version_for(&self, flow: &str, arrival: &Arrival<'_>) -> Result<u64, FlowsError> {
        let record = self
            .record(flow)?
            .ok_or_else(|| FlowsError::UnknownFlow(flow.to_string()))?;
        Ok(match &record.canary {
            Some(canary) if canary.takes(flow, arrival) => canary.version,
            _ => record.live,
        })
    }

    /// Writes the counters that changed since the last flush, in one batch, under their lock
    /// (so a later flush never writes older counts). Returns how many versions it wrote. A
    /// crash loses at most the counts since the last flush.
    pub fn flush_health(&self) -> Result<usize, FlowsError> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let dirty: Vec<(String, u64)> = self
            .dirty_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        if dirty.is_empty() {
            return Ok(0);
        }
        let mut batch = Batch::new();
        for key in &dirty {
            if let Some(entry) = health.get(key) {
                batch.put_json(
                    Tree::Health,
                    self.health_key(&key.0, key.1).into_bytes(),
                    entry,
                )?;
            }
        }
        if let Err(e) = self.store.commit(&batch) {
            // Written at the next flush.
            self.dirty_health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(dirty);
            return Err(e.into());
        }
        Ok(dirty.len())
    }

    /// Counts a step of `version` (and a new contact, or its first fallback), once the step
    /// is committed; the counters are kept under their lock, so they never go back, and
    /// written by [`Flows::flush_health`]. When
    /// the version is a canary whose fault rate is over the threshold, aborts it: the
    /// contact that tipped it over has already had its fallback, and new contacts go to the
    /// live version from the next arrival on.
    pub fn record_step(
        &self,
        flow: &str,
        version: u64,
        faulted: bool,
        new_contact: bool,
        first_fallback: bool,
    ) -> Result<(), FlowsError> {
        let snapshot = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let entry = self.health_entry(&mut health, flow, version)?;
            entry.steps += 1;
            entry.faults += u64::from(faulted);
            entry.contacts += u64::from(new_contact);
            entry.fallback_contacts += u64::from(first_fallback);
            let snapshot = entry.clone();
            self.dirty_health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((flow.to_string(), version));
            snapshot
        };
        // The other nodes' counts are read outside the lock (a store read in a cluster).
        let verdict = if faulted && snapshot.aborted.is_none() {
            self.cluster_health(flow, version, &snapshot)?.verdict(
                self.canary_config.max_fault_rate,
                self.canary_config.min_steps,
            )
        } else {
            None
        };
        if let Some(reason) = verdict {
            let is_canary = self
                .record(flow)?
                .and_then(|r| r.canary)
                .is_some_and(|c| c.version == version);
            if is_canary {
                match self.abort(flow, "auto-rollback", &reason) {
                    Ok(_) | Err(FlowsError::NoCanary(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// A contact started on `version` and stays pinned to it.
    pub fn pin(&self, flow: &str, version: u64) {
        *self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((flow.to_string(), version))
            .or_default() += 1;
    }

    /// A contact pinned to `version` ended; the version is unloaded when nothing needs it.
    /// While it is the only version of its flow loaded on this node, it is the one new
    /// contacts get (a deploy, a rollback or a canary loads another first), so it stays and
    /// the flow's record is not read at every contact's end.
    pub fn unpin(&self, flow: &str, version: u64) {
        {
            let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = pins.get_mut(&(flow.to_string(), version)) {
                *n = n.saturating_sub(1);
            }
        }
        let another_loaded = others_loaded(
            &self.loaded.read().unwrap_or_else(|p| p.into_inner()),
            flow,
            version,
        )
        .next()
        .is_some();
        if another_loaded {
            self.unload_if_unused(flow, version);
        }
    }

    fn pinned(&self, flow: &str, version: u64) -> u64 {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(flow.to_string(), version))
            .copied()
            .unwrap_or(0)
    }

    /// Drops a version's compiled code from memory when it is neither live nor the canary
    /// and no contact is pinned to it. The version itself stays stored and can be loaded
    /// again (rollback, replay).
    fn unload_if_unused(&self, flow: &str, version: u64) {
        if self.pinned(flow, version) > 0 {
            return;
        }
        let Ok(Some(record)) = self.record(flow) else {
            return;
        };
        if record.in_use().any(|v| v == version) {
            return;
        }
        if self
            .loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(flow.to_string(), version))
            .is_some()
        {
            tracing::info!(
                flow,
                version,
                "unloaded: not live, not a canary, no contact pinned"
            );
        }
    }

    /// Versions of `flow` with their role, health and pins.
    pub fn statuses(&self, flow: &str) -> Result<(FlowRecord, Vec<VersionStatus>), FlowsError> {
        let record = self
            .record(flow)?
            .ok_or_else(|| FlowsError::UnknownFlow(flow.to_string()))?;
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = Vec::new();
        for version in self.versions(flow)? {
            let own: Health = {
                let mut cache = self.health.lock().unwrap_or_else(|p| p.into_inner());
                self.health_entry(&mut cache, flow, version.version)?
                    .clone()
            };
            let health = self.cluster_health(flow, version.version, &own)?;
            let role = if version.version == record.live {
                "live"
            } else if record
                .canary
                .as_ref()
                .is_some_and(|c| c.version == version.version)
            {
                "canary"
            } else if health.aborted.is_some() {
                "aborted"
            } else {
                "idle"
            };
            out.push(VersionStatus {
                role: role.to_string(),
                health,
                pinned_contacts: self.pinned(flow, version.version),
                loaded: loaded.contains_key(&(flow.to_string(), version.version)),
                version,
            });
        }
        Ok((record, out))
    }

    fn set_live(&self, flow: &str, version: u64) -> Result<FlowRecord, FlowsError> {
        let canary = self
            .record(flow)?
            .and_then(|r| r.canary)
            .filter(|c| c.version != version);
        let record = FlowRecord {
            name: flow.to_string(),
            live: version,
            updated_at: now(),
            canary,
        };
        self.store.put_json(Tree::Flows, flow, &record)?;
        Ok(record)
    }

    /// Keeps a component's bytes in the store, by content: every node (and a restored
    /// backup) has what it needs to load any version. Written on its own, before the version
    /// that names it, so a crash between the two leaves at most unreferenced bytes.
    fn write_component(&self, sha256: &str, bytes: &[u8]) -> Result<(), FlowsError> {
        self.store.put(Tree::Components, sha256.as_bytes(), bytes)?;
        self.store.flush()?;
        Ok(())
    }

    /// A component's bytes: from the store, or from the components directory of a data
    /// directory written before components were kept in the store (then copied in).
    fn read_component(&self, sha256: &str) -> Result<Vec<u8>, FlowsError> {
        if let Some(bytes) = self.store.get(Tree::Components, sha256.as_bytes())? {
            return Ok(bytes);
        }
        let path = self.legacy_components_dir.join(format!("{sha256}.wasm"));
        let bytes = std::fs::read(&path).map_err(|e| {
            FlowsError::Io(format!(
                "the component {sha256} is neither in the store nor in {}: {e}",
                path.display()
            ))
        })?;
        self.write_component(sha256, &bytes)?;
        Ok(bytes)
    }

    fn record(&self, flow: &str) -> Result<Option<FlowRecord>, FlowsError> {
        Ok(self.store.get_json(Tree::Flows, flow)?)
    }

    /// All flows.
    pub fn list(&self) -> Result<Vec<FlowRecord>, FlowsError> {
        Ok(self.store.scan_json(Tree::Flows, "")?)
    }

    /// All versions of `flow`, oldest first.
    pub fn versions(&self, flow: &str) -> Result<Vec<FlowVersion>, FlowsError> {
        let versions: Vec<FlowVersion> = self
            .store
            .scan_json(Tree::Versions, &keys::versions_of(flow))?;
        if versions.is_empty() {
            return Err(FlowsError::UnknownFlow(flow.to_string()));
        }
        Ok(versions)
    }

    /// One version.
    pub fn version(&self, flow: &str, version: u64) -> Result<FlowVersion, FlowsError> {
        match self
            .store
            .get_json(Tree::Versions, &version_key(flow, version))?
        {
            Some(v) => Ok(v),
            None if self.record(flow)?.is_none() => Err(FlowsError::UnknownFlow(flow.to_string())),
            None => Err(FlowsError::UnknownVersion {
                flow: flow.to_string(),
                version,
            }),
        }
    }

    /// The live version of `flow`.
    pub fn live(&self, flow: &str) -> Result<u64, FlowsError> {
        Ok(self
            .record(flow)?
            .ok_or_else(|| FlowsError::UnknownFlow(flow.to_string()))?
            .live)
    }

    /// The live version of `flow` and its compiled component, when `flow` exists and its
    /// component targets `world` (the router and the CRM connector are found this way).
    pub fn live_component(
        &self,
        flow: &str,
        world: World,
    ) -> Result<Option<(u64, Arc<FlowComponent>)>, FlowsError> {
        // Absent a moment ago, and no version of it loaded since: this node was not asked to
        // load one (a deploy of it asks every node first), so it is still absent.
        if self.absent.get(&flow.to_string()).is_some() && !self.has_loaded(flow) {
            return Ok(None);
        }
        let read = std::time::Instant::now();
        let Some(record) = self.record(flow)? else {
            self.absent.keep(flow.to_string(), (), read);
            return Ok(None);
        };
        let component = self.component(flow, record.live)?;
        Ok((component.kind() == world).then_some((record.live, component)))
    }

    /// Whether a version of `flow` is loaded on this node.
    fn has_loaded(&self, flow: &str) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|(f, _)| f == flow)
    }

    /// The compiled component of a version, loaded on first use (from the artifact cache).
    pub fn component(&self, flow: &str, version: u64) -> Result<Arc<FlowComponent>, FlowsError> {
        let key = (flow.to_string(), version);
        let found = || {
            self.loaded
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(found) = found() {
            return Ok(found);
        }
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        // Loaded by whoever held the lock before.
        if let Some(found) = found() {
            return Ok(found);
        }
        let record = self.version(flow, version)?;
        let bytes = self.read_component(&record.sha256)?;
        let component = Arc::new(self.engine.load(&bytes).map_err(|e| {
            FlowsError::Io(format!("version {version} of {flow} no longer loads: {e}"))
        })?);
        let others: Vec<u64> = {
            let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
            loaded.insert(key, component.clone());
            others_loaded(&loaded, flow, version).collect()
        };
        // Another version loaded here may have been left by a rollback, a promotion or an
        // abort made on another node (only a deploy asks every node): [`Flows::unpin`] looks
        // no further while one version is loaded, so it is looked at now.
        for other in others {
            self.unload_if_unused(flow, other);
        }
        Ok(component)
    }

    /// Binds `address` to a flow (replacing any earlier binding).
    pub fn bind(&self, entry: EntryPoint, who: &str) -> Result<(), FlowsError> {
        if entry.address.trim().is_empty() {
            return Err(FlowsError::BadEntryPoint(
                "an entry point needs an address, such as +15550100".into(),
            ));
        }
        self.live(&entry.flow)?;
        self.store
            .put_json(Tree::EntryPoints, &entry.address, &entry)?;
        audit::record(
            &*self.store,
            who,
            "bind",
            &entry.address,
            json!({"flow": entry.flow}),
        )?;
        self.store.flush()?;
        Ok(())
    }

    /// The entry point for `address`.
    pub fn entry_point(&self, address: &str) -> Result<Option<EntryPoint>, FlowsError> {
        Ok(self.store.get_json(Tree::EntryPoints, address)?)
    }

    /// All entry points.
    pub fn entry_points(&self) -> Result<Vec<EntryPoint>, FlowsError> {
        Ok(self.store.scan_json(Tree::EntryPoints, "")?)
    }

    /// Sets settings of `flow` (an empty value removes the setting).
    pub fn configure(
        &self,
        flow: &str,
        settings: &[(String, String)],
        who: &str,
    ) -> Result<(), FlowsError> {
        self.live(flow)?;
        self.settings.forget();
        for (key, value) in settings {
            let k = crate::engine::host::settings_key(flow, key);
            if value.is_empty() {
                self.store.delete(Tree::Settings, &k)?;
            } else {
                self.store.put(Tree::Settings, &k, value.as_bytes())?;
            }
        }
        self.settings.forget();
        audit::record(&*self.store, who, "configure", flow, json!(settings))?;
        self.store.flush()?;
        Ok(())
    }

    /// The settings of `flow`.
    pub fn settings(&self, flow: &str) -> Result<Vec<(String, String)>, FlowsError> {
        self.live(flow)?;
        Ok(crate::engine::host::settings_of(&*self.store, flow)?)
    }
}

fn parse_version_key(key: &[u8]) -> u64 {
    keys::version_number(key)
}

/// The channel a contact to `address` arrives on when the caller does not say.
pub fn channel_of(address: &str) -> Channel {
    if address.starts_with("chat:") {
        Channel::Chat
    } else if address.contains('@') {
        Channel::Email
    } else {
        Channel::Voice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn health_counts_reach_the_store_at_the_flush_not_on_the_step_path() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let engine = Arc::new(Engine::new(&crate::config::EngineConfig::default(), None).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let flows = Flows::new(
            store.clone(),
            engine,
            dir.path().to_path_buf(),
            CanaryConfig::default(),
        )
        .unwrap();
        for _ in 0..3 {
            flows.record_step("ivr", 1, false, true, false).unwrap();
        }
        let key = version_key("ivr", 1);
        assert!(
            store.get(Tree::Health, key.as_bytes()).unwrap().is_none(),
            "a step writes no shared row"
        );
        assert_eq!(flows.flush_health().unwrap(), 1);
        let kept: Health = store.get_json(Tree::Health, &key).unwrap().unwrap();
        assert_eq!((kept.steps, kept.contacts), (3, 3));
        assert_eq!(flows.flush_health().unwrap(), 0, "nothing changed since");
    }
}
