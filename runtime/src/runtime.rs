//! One Switchboard instance: the store, the engine, the flows, the sessions and the metrics,
//! wired together once. The HTTP API, the CLI's local commands and the benchmarks all go
//! through this.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::engine::{Clock, Engine, Services};
use crate::flows::Flows;
use crate::metrics::Metrics;
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
    /// What host calls are served from.
    pub services: Arc<Services>,
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
        let services = Arc::new(Services {
            store: store.clone(),
            clock,
        });
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            engine.clone(),
            flows.clone(),
            services.clone(),
            config.fallback.clone(),
            metrics.clone(),
        ));
        sessions.restore_pins()?;
        Ok(Runtime {
            config,
            store,
            engine,
            flows,
            sessions,
            metrics,
            services,
            _scratch: scratch,
        })
    }
}
