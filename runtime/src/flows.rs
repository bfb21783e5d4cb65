//! Flow versions and entry points. Owns which version of each flow is live: deploy (validate,
//! compile, store immutably, then make live atomically), list, show, roll back; and which
//! flow an address (a phone number, a chat widget, a mailbox) starts. Never runs a step.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit;
use crate::contract::Channel;
use crate::engine::{Engine, FLOW_WORLD, FlowComponent, Rejection};
use crate::store::{Store, StoreError, StoreExt, Tree};

/// An immutable deployed version of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// What a deploy did, with its timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The flow's name.
    pub name: String,
    /// The version new contacts get.
    pub live: u64,
    /// RFC 3339 time the live version last changed.
    pub updated_at: String,
}

/// An address that starts a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryPoint {
    /// The address: `+15550100`, `chat:support-widget`, `help@acme.test`.
    pub address: String,
    /// The flow it starts.
    pub flow: String,
    /// Attributes every contact through it starts with (such as `brand=acme`).
    #[serde(default)]
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
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A component file could not be written or read.
    #[error("component storage failed: {0} (check the data directory)")]
    Io(String),
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
    engine: Arc<Engine>,
    components_dir: PathBuf,
    loaded: RwLock<HashMap<(String, u64), Arc<FlowComponent>>>,
    /// Deploys and rollbacks of all flows are serialised: they are rare and must not race
    /// for sequence numbers or the live pointer.
    changes: Mutex<()>,
}

fn version_key(flow: &str, version: u64) -> String {
    format!("{flow}/{version:010}")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
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
    /// The flows kept in `store`, with component files under `components_dir`.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        components_dir: PathBuf,
    ) -> anyhow::Result<Flows> {
        std::fs::create_dir_all(&components_dir)?;
        Ok(Flows {
            store,
            engine,
            components_dir,
            loaded: RwLock::new(HashMap::new()),
            changes: Mutex::new(()),
        })
    }

    /// Validates, compiles and stores `bytes` as the next version of `flow` and makes it live.
    /// On any error nothing changed and the live version is untouched.
    pub fn deploy(&self, flow: &str, bytes: &[u8], who: &str) -> Result<Deployed, FlowsError> {
        check_name(flow)?;
        let compiling = std::time::Instant::now();
        let component = self.engine.compile(bytes)?;
        let compile_ms = compiling.elapsed().as_secs_f64() * 1000.0;
        let _changing = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        self.write_component(&component.sha256, bytes)?;
        let swapping = std::time::Instant::now();
        let previous = self.record(flow)?;
        let version = match self
            .store
            .last_with_prefix(Tree::Versions, format!("{flow}/").as_bytes())?
        {
            Some((key, _)) => parse_version_key(&key) + 1,
            None => 1,
        };
        let record = FlowVersion {
            flow: flow.to_string(),
            version,
            sha256: component.sha256.clone(),
            size: bytes.len() as u64,
            world: FLOW_WORLD.to_string(),
            deployed_at: now(),
            deployed_by: who.to_string(),
        };
        self.store
            .put_json(Tree::Versions, &version_key(flow, version), &record)?;
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((flow.to_string(), version), Arc::new(component));
        self.set_live(flow, version)?;
        audit::record(
            &*self.store,
            who,
            "deploy",
            flow,
            json!({"from": previous.map(|r| r.live), "to": version, "sha256": record.sha256, "size": record.size}),
        )?;
        self.store.flush()?;
        let swap_us = swapping.elapsed().as_micros() as u64;
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
        Ok(record)
    }

    fn set_live(&self, flow: &str, version: u64) -> Result<FlowRecord, FlowsError> {
        let record = FlowRecord {
            name: flow.to_string(),
            live: version,
            updated_at: now(),
        };
        self.store.put_json(Tree::Flows, flow, &record)?;
        Ok(record)
    }

    fn write_component(&self, sha256: &str, bytes: &[u8]) -> Result<(), FlowsError> {
        let path = self.components_dir.join(format!("{sha256}.wasm"));
        if path.exists() {
            return Ok(());
        }
        let io = |e: std::io::Error| FlowsError::Io(format!("{}: {e}", path.display()));
        let tmp = path.with_extension("wasm.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
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
        let versions: Vec<FlowVersion> =
            self.store.scan_json(Tree::Versions, &format!("{flow}/"))?;
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

    /// The compiled component of a version, loaded on first use (from the artifact cache).
    pub fn component(&self, flow: &str, version: u64) -> Result<Arc<FlowComponent>, FlowsError> {
        let key = (flow.to_string(), version);
        if let Some(found) = self
            .loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let record = self.version(flow, version)?;
        let path = self.components_dir.join(format!("{}.wasm", record.sha256));
        let bytes =
            std::fs::read(&path).map_err(|e| FlowsError::Io(format!("{}: {e}", path.display())))?;
        let component = Arc::new(self.engine.load(&bytes).map_err(|e| {
            FlowsError::Io(format!("version {version} of {flow} no longer loads: {e}"))
        })?);
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, component.clone());
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
        for (key, value) in settings {
            let k = crate::engine::host::settings_key(flow, key);
            if value.is_empty() {
                self.store.delete(Tree::Settings, &k)?;
            } else {
                self.store.put(Tree::Settings, &k, value.as_bytes())?;
            }
        }
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
    let text = String::from_utf8_lossy(key);
    text.rsplit('/')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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
