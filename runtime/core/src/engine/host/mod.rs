//! The host interfaces a flow may import, one module each: `crm`, `kv`, `config`, `log`,
//! `clock`. Each implements its generated `Host` trait on [`StepState`] and records every call
//! with its result in the step's trace, so a contact can be replayed exactly. Nothing here
//! gives a guest the filesystem, sockets or the environment; CRM connectors alone get
//! outgoing HTTP, through the gate in [`http`].

mod clock;
mod crm;
pub mod http;
mod kv;
mod log;
mod settings;
mod sleep;
mod v0_1;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use clock::Clock;
pub use crm::index_key as crm_index_key;
pub use kv::{KvWrite, stage as stage_kv_writes};
pub use settings::{all as settings_of, key as settings_key};
pub use sleep::add_bounded_clock;

use crate::contract::Customer;
use crate::engine::bindings::LookupKey;
use crate::store::Store;

/// What host calls are served from, shared by every step.
pub struct Services {
    /// The store: customers, kv, settings.
    pub(crate) store: Arc<dyn Store>,
    /// Where time comes from.
    pub clock: Clock,
    /// The deployed CRM connector, when the runtime has one to offer; else `crm.lookup` is
    /// served from the built-in customer store.
    pub crm: OnceLock<Arc<dyn CrmConnector>>,
    /// Flows' settings as recently read, by store key ([`crate::recent`]); the node's
    /// [`crate::flows::Flows`] forgets them when it changes one.
    pub(crate) settings: Arc<Settings>,
}

/// Recent copies of flows' settings, by store key.
pub type Settings = crate::recent::Recent<Vec<u8>, Option<Vec<u8>>>;

impl Services {
    /// Services over `store` and `clock`, with the built-in customer store as the CRM.
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Services {
        Services {
            store,
            clock,
            crm: OnceLock::new(),
            settings: Arc::default(),
        }
    }

    /// The same, reading settings through `settings` (shared with the node's flows).
    pub fn with_settings(mut self, settings: Arc<Settings>) -> Services {
        self.settings = settings;
        self
    }
}

/// A lookup answered by a CRM connector.
pub struct ConnectorAnswer {
    /// The customer, none, or why the CRM could not be asked.
    pub answer: Result<Option<Customer>, String>,
    /// Whether the connector was called (not answered from the contact's cache, nor refused
    /// before calling).
    pub called: bool,
}

/// Connector calls one step may make (answers from the contact's cache are free): each may
/// take up to the connector's timeout, and a flow must not hold a caller for many of them.
pub const MAX_CONNECTOR_CALLS_PER_STEP: u32 = 3;

/// Serves `crm.lookup` from a deployed CRM connector component.
pub trait CrmConnector: Send + Sync {
    /// The answer to `contact`'s lookup of `key`, or `None` when no connector is deployed
    /// (the built-in customer store answers then). With `may_call` false (the step made its
    /// [`MAX_CONNECTOR_CALLS_PER_STEP`] calls) only the contact's cache may answer.
    fn lookup(&self, contact: &str, key: &LookupKey, may_call: bool) -> Option<ConnectorAnswer>;
}

/// One host call a step made, with its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostCall {
    /// `interface.function`, such as `crm.lookup`.
    pub call: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// What it returned.
    pub result: serde_json::Value,
}

/// Everything one step's store holds. Made fresh for each step and dropped after it.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: super::limits::MemoryCap,
    services: Arc<Services>,
    flow: Arc<str>,
    version: u64,
    contact: Arc<str>,
    pub(super) calls: Vec<HostCall>,
    pub(super) kv: kv::Pending,
    log_lines: u32,
    /// When replaying a recorded contact: the recorded calls still unanswered. Host calls are
    /// answered from here instead of the live services.
    pub(super) replay: Option<Vec<HostCall>>,
    /// Calls made during a replay that the recording does not have.
    pub(super) unrecorded: Vec<String>,
    http: WasiHttpCtx,
    /// Where a connector's requests may go (closed for flows).
    pub(super) gate: http::Gate,
    /// The guest's own time budget: the step deadline, or a connector's lookup timeout.
    budget: Duration,
    started: Instant,
    /// Time spent waiting on slow host calls (CRM connectors): not the guest's own time, so
    /// it does not count against its budget.
    pub(super) credited: Duration,
    /// Connector calls made by this step (cache hits excluded).
    connector_calls: u32,
}

/// Where a host call's answer comes from.
enum Source {
    /// The live services.
    Live,
    /// The recording.
    Recorded(serde_json::Value),
    /// A replay whose recording lacks this call: the flow asks what the original did not.
    Missing,
}

impl StepState {
    pub(super) fn new(
        services: Arc<Services>,
        flow: Arc<str>,
        version: u64,
        contact: Arc<str>,
        limits: super::limits::MemoryCap,
        stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
        budget: Duration,
    ) -> Self {
        // No preopened directories, no environment, no arguments, no network: WASI is linked
        // only because toolchains' standard libraries import it; a panic message still reaches
        // us through stderr.
        let wasi = WasiCtx::builder().stderr(stderr).build();
        StepState {
            wasi,
            table: ResourceTable::new(),
            limits,
            services,
            flow,
            version,
            contact,
            calls: Vec::new(),
            kv: kv::Pending::default(),
            log_lines: 0,
            replay: None,
            unrecorded: Vec::new(),
            http: WasiHttpCtx::new(),
            gate: http::Gate::default(),
            budget,
            started: Instant::now(),
            credited: Duration::ZERO,
            connector_calls: 0,
        }
    }

    /// Starts the guest's time budget now.
    pub(super) fn start_clock(&mut self) {
        self.started = Instant::now();
    }

    /// The guest's own time budget, in milliseconds.
    pub(super) fn budget_ms(&self) -> u64 {
        self.budget.as_millis() as u64
    }

    /// What is left of the guest's own time budget: time spent waiting on slow host calls
    /// is given back.
    pub(super) fn time_left(&self) -> Duration {
        let own = self.started.elapsed().saturating_sub(self.credited);
        self.budget.saturating_sub(own)
    }

    /// Where the answer to `call(args)` comes from; consumes the matching recorded call.
    fn source(&mut self, call: &str, args: &serde_json::Value) -> Source {
        let Some(recorded) = self.replay.as_mut() else {
            return Source::Live;
        };
        match recorded
            .iter()
            .position(|c| c.call == call && c.args == *args)
        {
            Some(i) => Source::Recorded(recorded.remove(i).result),
            None => {
                self.unrecorded.push(format!("{call}({args})"));
                Source::Missing
            }
        }
    }

    fn record(&mut self, call: &str, args: serde_json::Value, result: serde_json::Value) {
        self.calls.push(HostCall {
            call: call.to_string(),
            args,
            result,
        });
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

impl super::bindings::switchboard::flow::types::Host for StepState {}
impl super::bindings::router::switchboard::flow::routing::Host for StepState {}
