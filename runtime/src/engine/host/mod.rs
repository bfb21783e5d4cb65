//! The host interfaces a flow may import, one module each: `crm`, `kv`, `config`, `log`,
//! `clock`. Each implements its generated `Host` trait on [`StepState`] and records every call
//! with its result in the step's trace, so a contact can be replayed exactly. Nothing here
//! gives a guest the filesystem, sockets or the environment.

mod clock;
mod crm;
mod kv;
mod log;
mod settings;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use clock::Clock;
pub use crm::index_key as crm_index_key;
pub use kv::{KvWrite, apply as apply_kv_writes};
pub use settings::{all as settings_of, key as settings_key};

use crate::store::Store;

/// What host calls are served from, shared by every step.
pub struct Services {
    /// The store: customers, kv, settings.
    pub store: Arc<dyn Store>,
    /// Where time comes from.
    pub clock: Clock,
}

/// One host call a step made, with its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl StepState {
    pub(super) fn new(
        services: Arc<Services>,
        flow: Arc<str>,
        version: u64,
        contact: Arc<str>,
        limits: super::limits::MemoryCap,
        stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
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

impl super::bindings::switchboard::flow::types::Host for StepState {}
