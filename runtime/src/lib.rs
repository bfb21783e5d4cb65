//! Switchboard: a contact-center runtime whose contact flows are WebAssembly components.
//!
//! This crate holds the entry points, built on the core (`switchboard-core`, re-exported
//! here module by module): the [`channels`] (SIP, Twilio, web chat, the terminal) and the
//! HTTP [`api`] bring contacts' events in and render step reports out; the [`cli`] is the
//! `switchboard` binary; [`runtime`] joins one core node to the channels' live state. The
//! core never depends on anything here.
#![deny(missing_docs)]

/// The allocator of every program built on this crate (the `switchboard` binary, its tests
/// and benches): mimalloc, not the system's. A node's threads (async workers, steps, store
/// connections) allocate on one thread and free on another, where glibc's malloc took about a
/// tenth of a node's CPU under load (perf, three nodes on PostgreSQL).
/// (Not under Miri, which checks allocations through its own.)
#[cfg(not(miri))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod channels;
pub mod cli;
pub mod rate;
pub mod runtime;

pub use switchboard_core::{
    audit, bus, cluster, config, connector, contract, customers, engine, flows, metrics, node,
    phones, replay, router, sessions, store, tokens, users,
};
