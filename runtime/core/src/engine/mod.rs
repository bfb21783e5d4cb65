//! The one way Switchboard uses wasmtime: the component model only; one `wasmtime::Engine`
//! with the pooling allocator and epoch interruption; one pre-linked `FlowPre` (an
//! `InstancePre`) per flow version; a fresh `Store` and instance for every step, dropped after
//! it; a wall-clock deadline, a memory cap and optionally a fuel budget on every step.
//! Components of three worlds: flows, routers and CRM connectors (each with its own linker:
//! only connectors get `wasi:http`, and only through the gate of their deploy policy).
//!
//! It owns compiling, validating and running components. It never keeps an instance between
//! steps, never touches sessions, and never gives a guest ambient authority.

pub mod bindings;
pub mod host;
mod incremental;
mod limits;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::config::EngineConfig;
use crate::contract::{Action, Contact, Event};
use bindings::{Flow, FlowPre};
pub use host::http::ConnectorPolicy;
pub use host::{
    Clock, ConnectorAnswer, CrmConnector, HostCall, KvWrite, MAX_CONNECTOR_CALLS_PER_STEP,
    Services, StepState,
};

/// How often the epoch advances; step deadlines are whole multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Bytes of each linear memory and table kept mapped between steps (see `Engine::new`).
const KEEP_RESIDENT: usize = 1 << 20;
/// The world every flow component must target (the current contract; 0.1.0 is still served).
pub const FLOW_WORLD: &str = "switchboard:flow/flow@0.2.0";
/// The world of routing components.
pub const ROUTER_WORLD: &str = "switchboard:flow/router@0.2.0";
/// The world of CRM connectors.
pub const CONNECTOR_WORLD: &str = "switchboard:flow/crm-connector@0.2.0";
/// The interface a CRM connector exports.
const CRM_INTERFACE: &str = "switchboard:flow/crm@0.2.0";
/// The worlds of contract 0.1.0, whose components still run.
const FLOW_WORLD_0_1: &str = "switchboard:flow/flow@0.1.0";
const ROUTER_WORLD_0_1: &str = "switchboard:flow/router@0.1.0";
const CONNECTOR_WORLD_0_1: &str = "switchboard:flow/crm-connector@0.1.0";
const CRM_INTERFACE_0_1: &str = "switchboard:flow/crm@0.1.0";

/// What a component is, whichever contract version it was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// A contact flow (`flow`).
    Flow,
    /// A routing decision (`router`).
    Router,
    /// A CRM connector (`crm-connector`).
    Connector,
}

impl World {
    /// The kind of a world named as [`FlowComponent::world`] names it (stored with versions).
    pub fn of(world: &str) -> Option<World> {
        match world.split('@').next()? {
            "switchboard:flow/flow" => Some(World::Flow),
            "switchboard:flow/router" => Some(World::Router),
            "switchboard:flow/crm-connector" => Some(World::Connector),
            _ => None,
        }
    }
}

/// Why a component cannot become a flow version. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Not Wasm at all.
    #[error(
        "not a WebAssembly binary (it does not start with \\0asm): deploy the .wasm file your build produced"
    )]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component: build with `cargo build --target wasm32-wasip2`, componentize-py or jco, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// Malformed or unsupported Wasm.
    #[error("the component does not compile: {0}")]
    Invalid(String),
    /// A component, but of another world.
    #[error(
        "not a flow component: {0}. A flow targets the `flow` world of {FLOW_WORLD} (see wit/flow.wit): it may import only crm, kv, config, log, clock and WASI, and must export `handle`"
    )]
    WrongWorld(String),
    /// It exports `crm` but does not fit the connector world.
    #[error(
        "not a CRM connector: {0}. A connector targets the `crm-connector` world of {CONNECTOR_WORLD} (see wit/connector.wit): it may import only wasi:http/outgoing-handler, config, log and WASI, and must export `crm`"
    )]
    NotAConnector(String),
    /// It traps while being instantiated.
    #[error("the component traps while being instantiated: {0}")]
    InstantiationTrapped(String),
}

/// Why a step produced no usable result. The contact then gets the fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The step ran past its deadline (an endless loop, or far too much work).
    #[error("the step ran past its {deadline_ms} ms deadline")]
    Deadline {
        /// The deadline.
        deadline_ms: u64,
    },
    /// The flow tried to use more memory than its cap.
    #[error("the flow exceeded its memory cap of {cap_mib} MiB")]
    Memory {
        /// The cap.
        cap_mib: u64,
    },
    /// The step used up its instruction budget.
    #[error("the step used up its fuel budget of {fuel}")]
    Fuel {
        /// The budget.
        fuel: u64,
    },
    /// The guest trapped (a panic, an out-of-bounds access...).
    #[error("the flow trapped: {message}")]
    Trap {
        /// The trap and what the guest printed to stderr.
        message: String,
    },
    /// The flow returned an error.
    #[error("the flow returned an error: {message}")]
    FlowError {
        /// The flow's message.
        message: String,
    },
    /// The flow returned something the host cannot carry out.
    #[error("the flow returned an invalid step: {why}")]
    InvalidOutput {
        /// What is wrong with it.
        why: String,
    },
    /// No instance could be made (the pool is exhausted or the component is broken).
    #[error("the flow could not be instantiated: {message}")]
    Instantiate {
        /// Why.
        message: String,
    },
}

/// What a step did: its actions and new state, or a fault; plus what it asked of the host.
#[derive(Debug)]
pub struct StepResult {
    /// Actions and the new state, or why there are none.
    pub outcome: Result<(Vec<Action>, Vec<u8>), Fault>,
    /// Host calls made, in order.
    pub host_calls: Vec<HostCall>,
    /// `kv` writes to apply (empty when the step faulted).
    pub kv_writes: Vec<KvWrite>,
    /// In a replay: host calls the recording did not have.
    pub unrecorded: Vec<String>,
    /// Wall time of the step, instantiation included.
    pub elapsed: Duration,
}

/// A compiled flow version, ready to instantiate.
#[derive(Clone)]
pub struct FlowComponent {
    pre: Pre,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
}

/// The world a component serves, pre-linked.
#[derive(Clone)]
enum Pre {
    Flow(FlowPre<StepState>),
    Flow01(bindings::v0_1::FlowPre<StepState>),
    Router(bindings::router::RouterPre<StepState>),
    Router01(bindings::v0_1::router::RouterPre<StepState>),
    Connector(bindings::connector::CrmConnectorPre<StepState>),
    Connector01(bindings::v0_1::connector::CrmConnectorPre<StepState>),
}

impl FlowComponent {
    /// The world it targets, with its contract version: [`FLOW_WORLD`], [`ROUTER_WORLD`],
    /// [`CONNECTOR_WORLD`] or one of contract 0.1.0.
    pub fn world(&self) -> &'static str {
        match self.pre {
            Pre::Flow(_) => FLOW_WORLD,
            Pre::Flow01(_) => FLOW_WORLD_0_1,
            Pre::Router(_) => ROUTER_WORLD,
            Pre::Router01(_) => ROUTER_WORLD_0_1,
            Pre::Connector(_) => CONNECTOR_WORLD,
            Pre::Connector01(_) => CONNECTOR_WORLD_0_1,
        }
    }

    /// What it is, whatever its contract version.
    pub fn kind(&self) -> World {
        match self.pre {
            Pre::Flow(_) | Pre::Flow01(_) => World::Flow,
            Pre::Router(_) | Pre::Router01(_) => World::Router,
            Pre::Connector(_) | Pre::Connector01(_) => World::Connector,
        }
    }
}

/// The identity of the step being run, for logs and kv.
pub struct StepTarget<'a> {
    /// Flow name.
    pub flow: &'a Arc<str>,
    /// Version sequence number.
    pub version: u64,
    /// The compiled version.
    pub component: &'a FlowComponent,
}

/// A counting semaphore bounding concurrent steps to the instance pool's size, so a burst
/// waits for a slot instead of failing on pool exhaustion.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The Wasm engine: compiles, validates and runs flow components.
pub struct Engine {
    wasmtime: wasmtime::Engine,
    linker: Linker<StepState>,
    connector_linker: Linker<StepState>,
    incremental: Option<Arc<incremental::DiskCache>>,
    config: EngineConfig,
    artifacts: Option<PathBuf>,
    compat: String,
    slots: Slots,
    /// Host services for deploy-time instantiation checks: an empty throwaway store.
    check_services: Arc<Services>,
    ticker_stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.ticker_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Engine {
    /// An engine with `config`'s limits. Compiled artifacts are cached in `artifacts` when
    /// given (keyed by component hash and by this wasmtime build's compatibility hash).
    pub fn new(config: &EngineConfig, artifacts: Option<&Path>) -> anyhow::Result<Engine> {
        let instances = config.max_concurrent_steps.max(1);
        // Every step may have one CRM connector instance beside it (a lookup runs inside the
        // flow's step), so the pool holds twice the step slots: a lookup never waits for, or
        // fails on, a slot its own step holds.
        let pooled = instances * 2;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(pooled)
            .total_core_instances(pooled * 16)
            .total_memories(pooled * 4)
            .total_tables(pooled * 8)
            .total_stacks(pooled)
            .max_memory_size((config.memory_cap_mib as usize) << 20)
            // Reset a finished step's memory by rewriting the pages it dirtied instead of
            // unmapping them: unmapping costs TLB shootdowns across cores and page faults on
            // the next step, which dominated the step time when measured.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            // PAGEMAP_SCAN (Linux 6.7+) finds the pages a step dirtied so only those are
            // reset: measured 15 us per step with it, 25-38 us with plain memset.
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(config.fuel.is_some())
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let incremental =
            artifacts.map(|dir| Arc::new(incremental::DiskCache::new(dir.join("incremental"))));
        if let Some(cache) = &incremental {
            wasm.enable_incremental_compilation(cache.clone())
                .map_err(wasm_error)?;
        }
        let wasmtime = wasmtime::Engine::new(&wasm)
            .map_err(wasm_error)
            .context("cannot create the Wasm engine")?;

        let mut linker = wasi_linker(&wasmtime)?;
        bindings::router::switchboard::flow::routing::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(wasm_error)?;
        Flow::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(wasm_error)?;
        bindings::v0_1::router::switchboard::flow::routing::add_to_linker::<
            StepState,
            HasSelf<StepState>,
        >(&mut linker, |s| s)
        .map_err(wasm_error)?;
        bindings::v0_1::Flow::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(wasm_error)?;

        let mut connector_linker = wasi_linker(&wasmtime)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut connector_linker)
            .map_err(wasm_error)?;
        bindings::switchboard::flow::config::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut connector_linker,
            |s| s,
        )
        .map_err(wasm_error)?;
        bindings::switchboard::flow::log::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut connector_linker,
            |s| s,
        )
        .map_err(wasm_error)?;
        bindings::v0_1::switchboard::flow::config::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut connector_linker,
            |s| s,
        )
        .map_err(wasm_error)?;
        bindings::v0_1::switchboard::flow::log::add_to_linker::<StepState, HasSelf<StepState>>(
            &mut connector_linker,
            |s| s,
        )
        .map_err(wasm_error)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        wasmtime.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        if let Some(dir) = artifacts {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }

        let ticker_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = wasmtime.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                // One epoch per EPOCH_TICK of wall time: a late wake-up (sleeps overshoot, a
                // loaded machine stalls the thread) catches up, so deadlines are wall-clock.
                let start = Instant::now();
                let mut epochs: u128 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    let Some(engine) = weak.upgrade() else { break };
                    let due = start.elapsed().as_micros() / EPOCH_TICK.as_micros();
                    while epochs < due {
                        engine.increment_epoch();
                        epochs += 1;
                    }
                }
            })?;

        Ok(Engine {
            wasmtime,
            linker,
            connector_linker,
            incremental,
            config: config.clone(),
            artifacts: artifacts.map(Path::to_path_buf),
            compat,
            slots: Slots {
                free: Mutex::new(instances),
                freed: Condvar::new(),
            },
            check_services: Arc::new(Services::new(
                Arc::new(crate::store::SledStore::temporary()?),
                Clock::System,
            )),
            ticker_stop,
        })
    }

    /// An empty throwaway store, for steps whose host calls are all answered elsewhere
    /// (replays).
    pub fn scratch_services(&self, clock: Clock) -> Arc<Services> {
        Arc::new(Services::new(self.check_services.store.clone(), clock))
    }

    /// The engine's limits.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Validates and compiles a component for deployment: is it Wasm, a component, of the
    /// flow world, and does it instantiate? The compiled artifact is cached on success.
    pub fn compile(&self, bytes: &[u8]) -> Result<FlowComponent, Rejection> {
        let flow = self.prepare(bytes)?;
        self.check_instantiates(&flow)?;
        Ok(flow)
    }

    /// Checks a component's binary and world and compiles it (or loads its cached artifact),
    /// without instantiating it.
    fn prepare(&self, bytes: &[u8]) -> Result<FlowComponent, Rejection> {
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(Rejection::CoreModule),
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            Some([0, b'a', b's', b'm', ..]) => {
                return Err(Rejection::Invalid(
                    "unknown WebAssembly binary version".into(),
                ));
            }
            _ => return Err(Rejection::NotWasm),
        }
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        let component = match self.cached(&sha256) {
            Some(component) => component,
            None => {
                let started = Instant::now();
                let component = Component::new(&self.wasmtime, bytes)
                    .map_err(|e| Rejection::Invalid(format!("{e:#}")))?;
                let compiled = started.elapsed();
                self.store_artifact(&sha256, &component);
                if let Some(cache) = &self.incremental {
                    let (reused, fresh) = cache.take_counts();
                    tracing::info!(
                        sha256,
                        compile_ms = compiled.as_millis() as u64,
                        store_ms = (started.elapsed() - compiled).as_millis() as u64,
                        functions_reused = reused,
                        functions_compiled = fresh,
                        "compiled a component"
                    );
                }
                component
            }
        };
        let not_connector = |e: wasmtime::Error| Rejection::NotAConnector(format!("{e:#}"));
        let pre = if component.get_export_index(None, CRM_INTERFACE).is_some() {
            let pre = self
                .connector_linker
                .instantiate_pre(&component)
                .map_err(not_connector)?;
            Pre::Connector(bindings::connector::CrmConnectorPre::new(pre).map_err(not_connector)?)
        } else if component
            .get_export_index(None, CRM_INTERFACE_0_1)
            .is_some()
        {
            let pre = self
                .connector_linker
                .instantiate_pre(&component)
                .map_err(not_connector)?;
            Pre::Connector01(
                bindings::v0_1::connector::CrmConnectorPre::new(pre).map_err(not_connector)?,
            )
        } else {
            let pre = self
                .linker
                .instantiate_pre(&component)
                .map_err(|e| Rejection::WrongWorld(format!("{e:#}")))?;
            // The contract version is in the names of the interfaces it imports (its types at
            // least); the world, in what its export's types fit. A router's types did not
            // change in 0.2.0, so the names must decide.
            let old = component
                .component_type()
                .imports(&self.wasmtime)
                .any(|(name, _)| name.starts_with("switchboard:flow/") && name.ends_with("@0.1.0"));
            let (as_flow, as_router) = if old {
                (
                    bindings::v0_1::FlowPre::new(pre.clone()).map(Pre::Flow01),
                    bindings::v0_1::router::RouterPre::new(pre).map(Pre::Router01),
                )
            } else {
                (
                    FlowPre::new(pre.clone()).map(Pre::Flow),
                    bindings::router::RouterPre::new(pre).map(Pre::Router),
                )
            };
            match (as_flow, as_router) {
                (Ok(flow), _) => flow,
                (_, Ok(router)) => router,
                (Err(why), Err(_)) => return Err(Rejection::WrongWorld(format!("{why:#}"))),
            }
        };
        Ok(FlowComponent { pre, sha256 })
    }

    /// What a component imports and exports (interfaces with their functions), without
    /// validating it against the flow world: `switchboard inspect`.
    pub fn describe(&self, bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), Rejection> {
        use wasmtime::component::types::ComponentItem;
        if bytes.get(..4) != Some(b"\0asm") {
            return Err(Rejection::NotWasm);
        }
        let component = Component::new(&self.wasmtime, bytes)
            .map_err(|e| Rejection::Invalid(format!("{e:#}")))?;
        let ty = component.component_type();
        let describe = |name: &str, item: ComponentItem| match item {
            ComponentItem::ComponentInstance(instance) => {
                let funcs: Vec<&str> = instance.exports(&self.wasmtime).map(|(n, _)| n).collect();
                format!("{name} {{ {} }}", funcs.join(", "))
            }
            ComponentItem::ComponentFunc(_) => format!("func {name}"),
            _ => name.to_string(),
        };
        let imports = ty
            .imports(&self.wasmtime)
            .map(|(n, item)| describe(n, item.ty))
            .collect();
        let exports = ty
            .exports(&self.wasmtime)
            .map(|(n, item)| describe(n, item.ty))
            .collect();
        Ok((imports, exports))
    }

    /// Loads a version that was validated when it was deployed (server start, pinned
    /// contacts, the CRM connector inside a step): from the artifact cache when possible, else
    /// compiled again. It is not instantiated here: that would take a step slot, and a lookup
    /// loading the connector already runs inside its flow's step.
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<FlowComponent> {
        self.prepare(bytes).map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        self.artifacts
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}-{}.cwasm", self.compat)))
    }

    fn cached(&self, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store_artifact` from a component this engine
        // compiled, and its name carries this engine's compatibility hash.
        match unsafe { Component::deserialize_file(&self.wasmtime, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable compiled artifact; compiling again");
                None
            }
        }
    }

    fn store_artifact(&self, sha256: &str, component: &Component) {
        let Some(path) = self.artifact_path(sha256) else {
            return;
        };
        let write = || -> anyhow::Result<()> {
            let bytes = component.serialize().map_err(wasm_error)?;
            // A name of its own: steps loading the same component at once each write one,
            // and the last rename wins (the contents are the same).
            let tmp = path.with_extension(format!("{}.tmp", rand::random::<u64>()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled artifact; the next load compiles again");
        }
    }

    fn new_store(&self, mut state: StepState) -> Store<StepState> {
        // The budget runs from here: waiting for a pool slot is not the guest's time.
        state.start_clock();
        let ticks = |left: Duration| {
            (left.as_micros() as u64)
                .max(1)
                .div_ceil(EPOCH_TICK.as_micros() as u64)
        };
        let first = ticks(state.time_left());
        let mut store = Store::new(&self.wasmtime, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(first);
        // At the deadline, time the guest spent waiting on slow host calls (CRM lookups) is
        // given back; otherwise the step is interrupted.
        store.epoch_deadline_callback(move |store| {
            let left = store.data().time_left();
            if left.is_zero() {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(wasmtime::UpdateDeadline::Continue(ticks(left)))
            }
        });
        if let Some(fuel) = self.config.fuel {
            // Fuel is enabled on the engine whenever a budget is configured.
            let _ = store.set_fuel(fuel);
        }
        store
    }

    fn step_state(
        &self,
        services: Arc<Services>,
        flow: Arc<str>,
        version: u64,
        contact: Arc<str>,
    ) -> (StepState, MemoryOutputPipe) {
        let budget = Duration::from_millis(self.config.step_deadline_ms.max(1));
        self.guest_state(services, flow, version, contact, budget)
    }

    fn guest_state(
        &self,
        services: Arc<Services>,
        flow: Arc<str>,
        version: u64,
        contact: Arc<str>,
        budget: Duration,
    ) -> (StepState, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(4096);
        let cap = (self.config.memory_cap_mib as usize) << 20;
        let state = StepState::new(
            services,
            flow,
            version,
            contact,
            limits::MemoryCap::new(cap),
            stderr.clone(),
            budget,
        );
        (state, stderr)
    }

    fn check_instantiates(&self, flow: &FlowComponent) -> Result<(), Rejection> {
        let (state, stderr) = self.step_state(
            self.check_services.clone(),
            "deploy-check".into(),
            0,
            "deploy-check".into(),
        );
        let _slot = self.slots.acquire();
        let mut store = self.new_store(state);
        let instantiated = match &flow.pre {
            Pre::Flow(pre) => pre.instantiate(&mut store).map(|_| ()),
            Pre::Flow01(pre) => pre.instantiate(&mut store).map(|_| ()),
            Pre::Router(pre) => pre.instantiate(&mut store).map(|_| ()),
            Pre::Router01(pre) => pre.instantiate(&mut store).map(|_| ()),
            Pre::Connector(pre) => pre.instantiate(&mut store).map(|_| ()),
            Pre::Connector01(pre) => pre.instantiate(&mut store).map(|_| ()),
        };
        instantiated.map_err(|e| {
            Rejection::InstantiationTrapped(self.classify(&store, e, &stderr).to_string())
        })
    }

    /// Runs one step: a fresh instance of `target`, one call to `handle`, then the instance
    /// is dropped. Never panics on guest misbehaviour: every failure is a [`Fault`].
    pub fn step(
        &self,
        services: &Arc<Services>,
        target: &StepTarget<'_>,
        contact: &Contact,
        state: &[u8],
        event: &Event,
    ) -> StepResult {
        self.run_step(services, target, contact, state, event, None)
    }

    /// Runs one step with host calls answered from `recorded` (a recorded contact's calls for
    /// this step) instead of the live services. Calls the recording lacks are listed in
    /// [`StepResult::unrecorded`]; `kv` writes are returned but never applied.
    pub fn replay_step(
        &self,
        services: &Arc<Services>,
        target: &StepTarget<'_>,
        contact: &Contact,
        state: &[u8],
        event: &Event,
        recorded: Vec<HostCall>,
    ) -> StepResult {
        self.run_step(services, target, contact, state, event, Some(recorded))
    }

    fn run_step(
        &self,
        services: &Arc<Services>,
        target: &StepTarget<'_>,
        contact: &Contact,
        state: &[u8],
        event: &Event,
        replay: Option<Vec<HostCall>>,
    ) -> StepResult {
        let started = Instant::now();
        let (mut step_state, stderr) = self.step_state(
            services.clone(),
            target.flow.clone(),
            target.version,
            contact.id.as_str().into(),
        );
        step_state.replay = replay;
        let _slot = self.slots.acquire();
        let mut store = self.new_store(step_state);
        let outcome = self.call(&mut store, target.component, contact, state, event, &stderr);
        let data = store.into_data();
        let kv_writes = if outcome.is_ok() {
            data.kv.into_writes()
        } else {
            Vec::new()
        };
        StepResult {
            outcome,
            host_calls: data.calls,
            kv_writes,
            unrecorded: data.unrecorded,
            elapsed: started.elapsed(),
        }
    }

    /// Asks a router component for a task's plan: a fresh instance, one call to `route`.
    pub fn route(
        &self,
        services: &Arc<Services>,
        component: &FlowComponent,
        task: &bindings::router::switchboard::flow::routing::Task,
    ) -> Result<Result<bindings::router::switchboard::flow::routing::Plan, String>, Fault> {
        if component.kind() != World::Router {
            return Err(Fault::Instantiate {
                message: format!(
                    "this version is a component of {}, not of {ROUTER_WORLD}",
                    component.world()
                ),
            });
        }
        let (state, stderr) = self.step_state(
            services.clone(),
            "router".into(),
            0,
            task.id.as_str().into(),
        );
        let _slot = self.slots.acquire();
        let mut store = self.new_store(state);
        let planned = match &component.pre {
            Pre::Router01(pre) => pre
                .instantiate(&mut store)
                .and_then(|router| router.call_route(&mut store, &bindings::v0_1_task(task)))
                .map(|plan| plan.map(bindings::plan_from_v0_1)),
            Pre::Router(pre) => pre
                .instantiate(&mut store)
                .and_then(|router| router.call_route(&mut store, task)),
            _ => unreachable!("checked above"),
        };
        planned.map_err(|e| self.classify(&store, e, &stderr))
    }

    /// Asks the CRM connector `component` (version `version`) for a customer on behalf of
    /// `contact`: a fresh instance, one call to `lookup`, its requests through the policy's
    /// gate, its run time, response waits, body reads and sleeps cut at the policy's timeout.
    /// Every failure is a readable `Err` for the flow. (A connector that blocks writing a
    /// request body larger than the host buffers is the one wait the timeout cannot cut.)
    pub fn crm_lookup(
        &self,
        services: &Arc<Services>,
        component: &FlowComponent,
        version: u64,
        policy: &Arc<ConnectorPolicy>,
        contact: &str,
        key: &bindings::LookupKey,
    ) -> Result<Option<crate::contract::Customer>, String> {
        if component.kind() != World::Connector {
            return Err(format!(
                "the crm flow's version {version} is a component of {}, not a CRM connector",
                component.world()
            ));
        }
        let budget = Duration::from_millis(policy.timeout_ms);
        let (mut state, stderr) = self.guest_state(
            services.clone(),
            "crm".into(),
            version,
            contact.into(),
            budget,
        );
        state.gate = host::http::Gate::open(policy.clone(), Instant::now() + budget);
        let mut store = self.new_store(state);
        let answer = match &component.pre {
            Pre::Connector(pre) => pre.instantiate(&mut store).and_then(|connector| {
                connector
                    .switchboard_flow_crm()
                    .call_lookup(&mut store, &key.into())
            }),
            Pre::Connector01(pre) => pre.instantiate(&mut store).and_then(|connector| {
                connector
                    .switchboard_flow_crm()
                    .call_lookup(&mut store, &key.into())
                    .map(|found| found.map(|c| c.map(Into::into)))
            }),
            _ => unreachable!("checked above"),
        }
        .map_err(|e| self.classify(&store, e, &stderr));
        let denied = store.data().gate.refused();
        let refused = if denied.is_empty() {
            String::new()
        } else {
            format!(" (refused by its allowlist: {})", denied.join(", "))
        };
        match answer {
            Ok(Ok(Some(found))) if customer_size(&found) > MAX_CUSTOMER_BYTES => Err(format!(
                "the CRM connector returned a customer of {} bytes; {MAX_CUSTOMER_BYTES} at most",
                customer_size(&found)
            )),
            Ok(Ok(found)) => Ok(found.map(Into::into)),
            Ok(Err(why)) => Err(format!(
                "the CRM connector says: {}{refused}",
                clip(&why, MAX_CONNECTOR_ERROR)
            )),
            Err(Fault::Deadline { .. }) => Err(format!(
                "the CRM connector did not answer within its {} ms timeout{refused}",
                policy.timeout_ms
            )),
            Err(Fault::Trap { message }) => {
                Err(format!("the CRM connector trapped: {message}{refused}"))
            }
            Err(fault) => Err(format!("the CRM connector failed: {fault}{refused}")),
        }
    }

    fn call(
        &self,
        store: &mut Store<StepState>,
        component: &FlowComponent,
        contact: &Contact,
        state: &[u8],
        event: &Event,
        stderr: &MemoryOutputPipe,
    ) -> Result<(Vec<Action>, Vec<u8>), Fault> {
        let instantiate_failed = |store: &Store<StepState>, e| match self.classify(store, e, stderr)
        {
            Fault::Trap { message } => Fault::Instantiate { message },
            other => other,
        };
        // The two contract versions differ only in their types: one call, converted.
        macro_rules! handle {
            ($pre:expr, $describe:path) => {{
                let instance = $pre
                    .instantiate(&mut *store)
                    .map_err(|e| instantiate_failed(store, e))?;
                match instance.call_handle(&mut *store, &contact.into(), state, &event.into()) {
                    Ok(Ok(step)) => (
                        step.actions
                            .into_iter()
                            .map(Action::from)
                            .collect::<Vec<_>>(),
                        step.state,
                    ),
                    Ok(Err(e)) => {
                        return Err(Fault::FlowError {
                            message: $describe(&e),
                        });
                    }
                    Err(e) => return Err(self.classify(store, e, stderr)),
                }
            }};
        }
        let (actions, new_state) = match &component.pre {
            Pre::Flow(pre) => handle!(pre, bindings::describe_flow_error),
            Pre::Flow01(pre) => handle!(pre, bindings::describe_flow_error_0_1),
            _ => {
                return Err(Fault::Instantiate {
                    message: format!(
                        "this version is a component of {}, not a flow",
                        component.world()
                    ),
                });
            }
        };
        let step = Step {
            actions,
            state: new_state,
        };
        if step.state.len() > self.config.max_state_bytes {
            return Err(Fault::InvalidOutput {
                why: format!(
                    "its state is {} bytes, over the limit of {} bytes",
                    step.state.len(),
                    self.config.max_state_bytes
                ),
            });
        }
        if step.actions.len() > self.config.max_actions {
            return Err(Fault::InvalidOutput {
                why: format!(
                    "it returned {} actions, over the limit of {}",
                    step.actions.len(),
                    self.config.max_actions
                ),
            });
        }
        let actions = step.actions;
        if let Some(why) = actions.iter().find_map(Action::defect) {
            return Err(Fault::InvalidOutput { why });
        }
        Ok((actions, step.state))
    }

    fn classify(
        &self,
        store: &Store<StepState>,
        error: wasmtime::Error,
        stderr: &MemoryOutputPipe,
    ) -> Fault {
        if store.data().limits.exceeded {
            return Fault::Memory {
                cap_mib: self.config.memory_cap_mib,
            };
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Fault::Deadline {
                deadline_ms: store.data().budget_ms(),
            },
            Some(wasmtime::Trap::OutOfFuel) => Fault::Fuel {
                fuel: self.config.fuel.unwrap_or_default(),
            },
            trap => {
                // The trap's own words (not the wasm backtrace), then what the guest printed
                // before dying: for Rust that is the panic message and its location.
                let trap = trap.map_or_else(|| format!("{error}"), |t| t.to_string());
                let printed = String::from_utf8_lossy(&stderr.contents())
                    .lines()
                    .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_string();
                Fault::Trap {
                    message: if printed.is_empty() {
                        trap
                    } else {
                        format!("{trap}; the flow printed: {printed}")
                    },
                }
            }
        }
    }
}

impl Fault {
    /// A short name of the kind of fault, for metrics and task attributes.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Deadline { .. } => "deadline",
            Fault::Memory { .. } => "memory",
            Fault::Fuel { .. } => "fuel",
            Fault::Trap { .. } => "trap",
            Fault::FlowError { .. } => "flow-error",
            Fault::InvalidOutput { .. } => "invalid-output",
            Fault::Instantiate { .. } => "instantiate",
        }
    }
}

/// A step's outcome in the host's types, whichever contract version produced it.
struct Step {
    actions: Vec<Action>,
    state: Vec<u8>,
}

/// Largest customer record a connector may return (it is kept in traces and the cache).
const MAX_CUSTOMER_BYTES: usize = 16 << 10;
/// Longest error message of a connector kept.
const MAX_CONNECTOR_ERROR: usize = 500;

fn customer_size(c: &bindings::connector::exports::switchboard::flow::crm::Customer) -> usize {
    c.id.len()
        + c.name.len()
        + c.phone.as_ref().map_or(0, String::len)
        + c.email.as_ref().map_or(0, String::len)
        + c.tier.len()
        + c.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// `text` cut to at most `max` bytes, on a character boundary, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// A linker with WASI (no files, sockets or environment are granted to it) and the monotonic
/// clock whose waits end at the guest's deadline: the base of every world's linker.
fn wasi_linker(wasmtime: &wasmtime::Engine) -> anyhow::Result<Linker<StepState>> {
    let mut linker = Linker::new(wasmtime);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm_error)?;
    host::add_bounded_clock(&mut linker).map_err(wasm_error)?;
    Ok(linker)
}

/// wasmtime has its own error type; the application edges speak anyhow.
fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}
