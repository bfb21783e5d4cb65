//! Switchboard: a contact-center runtime whose contact flows are WebAssembly components.
//!
//! The data path, in the order of these modules: a channel brings an event of a contact ->
//! [`sessions`] runs one step of the contact's pinned flow version in the [`engine`] -> the
//! step's actions go back to the channel (or to a queue). [`flows`] decides which version is
//! live; [`store`] keeps everything durable; [`api`] and [`cli`] are the doors in.
#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod channels;
pub mod cli;
pub mod config;
pub mod connector;
pub mod contract;
pub mod customers;
pub mod engine;
pub mod flows;
pub mod metrics;
pub mod replay;
pub mod router;
pub mod runtime;
pub mod sessions;
pub mod store;
pub mod tokens;
