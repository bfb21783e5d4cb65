//! Switchboard's core: everything a contact goes through between a channel and a person, and
//! nothing of how it arrives.
//!
//! The data path, in the order of these modules: a channel (outside this crate) brings an
//! event of a contact -> [`sessions`] runs one step of the contact's pinned flow version in
//! the [`engine`] against the [`contract`] -> the step's actions are reported back to the
//! channel, or become a task in the [`router`], whose news comes back to the contact's next
//! step. [`flows`] decides which version is live; [`store`] keeps everything durable; a
//! [`node::Node`] wires them together, and entry points reach it only through its
//! [`handles`]: contacts (channels), desk (agents), admin (admins, supervisors, developers)
//! and the channels' own trees.
//!
//! Owns the contract, configuration, storage, the Wasm engine, flows, sessions, the router,
//! replay, audit and metrics. Never depends on an HTTP server, a SIP stack, a terminal or the
//! CLI (`cargo tree -p switchboard-core -e normal` shows no axum and no clap): entry points
//! sit above it.
#![deny(missing_docs)]

pub mod audit;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod connector;
pub use switchboard_contract as contract;
pub mod customers;
pub mod engine;
pub mod flows;
pub mod handles;
pub mod metrics;
pub mod node;
pub mod phones;
pub mod recent;
pub mod replay;
pub mod router;
pub mod sessions;
pub mod store;
pub mod tokens;
pub mod users;
