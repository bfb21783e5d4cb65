//! What a flow can ask of the host during a step: the contact, the CRM, its key/value store,
//! its settings, the log and the clock. In a component these are the contract's imports; in
//! `cargo test` they are the [`crate::testing`] harness's fakes.

use crate::{Contact, Customer, Level, LocalTime, LookupKey};

/// The host services a step may use. Implemented by the runtime's imports inside a component
/// and by [`crate::testing::TestHost`] in unit tests.
pub trait Host {
    /// Find a customer in the CRM.
    fn crm_lookup(&mut self, key: &LookupKey) -> Result<Option<Customer>, String>;
    /// Read the flow's durable key/value store.
    fn kv_get(&mut self, key: &str) -> Option<Vec<u8>>;
    /// Write the flow's durable key/value store.
    fn kv_set(&mut self, key: &str, value: &[u8]);
    /// Delete from the flow's durable key/value store.
    fn kv_delete(&mut self, key: &str);
    /// A setting the admin gave the flow.
    fn config(&mut self, key: &str) -> Option<String>;
    /// Write a log line.
    fn log(&mut self, level: Level, message: &str);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> u64;
    /// Wall-clock time in an IANA time zone.
    fn local_time(&mut self, zone: &str) -> Result<LocalTime, String>;
}

/// The contact being handled and the host services, for one step.
///
/// ```
/// use switchboard_sdk::prelude::*;
/// # fn greet(cx: &mut Context<'_>) -> Action {
/// let name = cx.customer_by_phone().map(|c| c.name).unwrap_or_else(|| "there".into());
/// Action::say(&format!("Hello {name}."))
/// # }
/// ```
pub struct Context<'a> {
    contact: &'a Contact,
    host: &'a mut dyn Host,
}

impl<'a> Context<'a> {
    /// A context over `contact` served by `host`.
    pub fn new(contact: &'a Contact, host: &'a mut dyn Host) -> Self {
        Context { contact, host }
    }

    /// The contact this step is for.
    pub fn contact(&self) -> &Contact {
        self.contact
    }

    /// An attribute of the contact (from its entry point or set by the flow).
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.contact
            .attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Look a customer up in the CRM; `Err` says why the CRM could not answer.
    pub fn crm_lookup(&mut self, key: &LookupKey) -> Result<Option<Customer>, String> {
        self.host.crm_lookup(key)
    }

    /// The customer whose phone number (or address) is the contact's `from`, if the CRM
    /// knows them. A CRM failure is logged and treated as unknown, so a flow carries on.
    pub fn customer_by_phone(&mut self) -> Option<Customer> {
        let from = self.contact.from.clone();
        match self.host.crm_lookup(&LookupKey::Phone(from)) {
            Ok(found) => found,
            Err(why) => {
                self.host
                    .log(Level::Warn, &format!("CRM lookup failed: {why}"));
                None
            }
        }
    }

    /// Read the flow's key/value store.
    pub fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.host.kv_get(key)
    }

    /// Write the flow's key/value store (durable once the step returns).
    pub fn kv_set(&mut self, key: &str, value: &[u8]) {
        self.host.kv_set(key, value)
    }

    /// Delete a key from the flow's key/value store.
    pub fn kv_delete(&mut self, key: &str) {
        self.host.kv_delete(key)
    }

    /// A setting given by the admin, or `default` when unset.
    pub fn config_or(&mut self, key: &str, default: &str) -> String {
        self.host.config(key).unwrap_or_else(|| default.to_string())
    }

    /// A setting given by the admin.
    pub fn config(&mut self, key: &str) -> Option<String> {
        self.host.config(key)
    }

    /// Write a log line, tagged by the host with the contact and flow version.
    pub fn log(&mut self, level: Level, message: &str) {
        self.host.log(level, message)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&mut self) -> u64 {
        self.host.now_ms()
    }

    /// The wall-clock time in an IANA time zone such as `America/New_York`.
    pub fn local_time(&mut self, zone: &str) -> Result<LocalTime, String> {
        self.host.local_time(zone)
    }
}

/// The host as seen from inside a component: every call is one of the contract's imports.
#[doc(hidden)]
pub struct WasmHost;

impl Host for WasmHost {
    fn crm_lookup(&mut self, key: &LookupKey) -> Result<Option<Customer>, String> {
        crate::bindings::switchboard::flow::crm::lookup(key)
    }
    fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        crate::bindings::switchboard::flow::kv::get(key)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) {
        crate::bindings::switchboard::flow::kv::set(key, value)
    }
    fn kv_delete(&mut self, key: &str) {
        crate::bindings::switchboard::flow::kv::delete(key)
    }
    fn config(&mut self, key: &str) -> Option<String> {
        crate::bindings::switchboard::flow::config::get(key)
    }
    fn log(&mut self, level: Level, message: &str) {
        crate::bindings::switchboard::flow::log::log(level, message)
    }
    fn now_ms(&mut self) -> u64 {
        crate::bindings::switchboard::flow::clock::now()
    }
    fn local_time(&mut self, zone: &str) -> Result<LocalTime, String> {
        crate::bindings::switchboard::flow::clock::time_in(zone)
    }
}
