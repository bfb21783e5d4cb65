//! Switchboard's promises, one module per feature. Every test runs the real `switchboard`
//! binary on an ephemeral loopback port against components built by the real toolchain.

mod load;
mod sipp;
mod support;

mod api_contract;
mod auth;
mod browser;
mod canary;
mod chat;
mod cli;
mod cluster;
mod contract;
mod crm;
mod deploy;
mod durability;
mod email;
mod hot_swap;
mod js_sdk;
mod people;
mod postgres;
mod projects;
mod python_sdk;
mod replay;
mod reports;
mod restart;
mod rollback;
mod router;
mod sandbox;
mod simulate;
mod sip;
mod twilio;
