//! `crm`: customer lookups. Served by the deployed CRM connector when there is one (see
//! `wit/connector.wit`), else by the built-in customer store (loaded by admins from CSV or
//! JSON), where `id/<id>` holds the record and `phone/<e164>` and `email/<addr>` point to it.

use std::time::Instant;

use serde_json::json;

use super::{MAX_CONNECTOR_CALLS_PER_STEP, Source, StepState};
use crate::contract;
use crate::engine::bindings::switchboard::flow::crm::{Customer, Host, LookupKey};
use crate::store::{StoreExt, Tree};

/// The store key of the index entry (or record) a lookup starts from.
pub fn index_key(key: &LookupKey) -> String {
    match key {
        LookupKey::Phone(p) => format!("phone/{p}"),
        LookupKey::Email(e) => format!("email/{}", e.to_ascii_lowercase()),
        LookupKey::Id(id) => format!("id/{id}"),
    }
}

fn built_in(state: &StepState, key: &LookupKey) -> Result<Option<contract::Customer>, String> {
    let store = &state.services.store;
    let id = match key {
        LookupKey::Id(id) => id.clone(),
        other => match store.get_json::<String>(Tree::Customers, &index_key(other)) {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        },
    };
    store
        .get_json::<contract::Customer>(Tree::Customers, &format!("id/{id}"))
        .map_err(|e| e.to_string())
}

impl StepState {
    fn live_lookup(&mut self, key: &LookupKey) -> Result<Option<contract::Customer>, String> {
        let Some(connector) = self.services.crm.get().cloned() else {
            return built_in(self, key);
        };
        let may_call = self.connector_calls < MAX_CONNECTOR_CALLS_PER_STEP;
        let asked = Instant::now();
        let Some(found) = connector.lookup(&self.contact, key, may_call) else {
            return built_in(self, key);
        };
        if found.called {
            self.connector_calls += 1;
        }
        // The wait was the CRM's, not the flow's: it does not count against the step deadline.
        self.credited += asked.elapsed();
        found.answer
    }
}

impl Host for StepState {
    fn lookup(&mut self, key: LookupKey) -> Result<Option<Customer>, String> {
        let args = json!(index_key(&key));
        let found = match self.source("crm.lookup", &args) {
            Source::Live => self.live_lookup(&key),
            Source::Recorded(answer) => {
                serde_json::from_value(answer).map_err(|e| format!("unreadable recording: {e}"))?
            }
            Source::Missing => Err("this lookup is not in the recorded contact".to_string()),
        };
        self.record(
            "crm.lookup",
            args,
            serde_json::to_value(&found).unwrap_or_default(),
        );
        found.map(|c| c.map(Customer::from))
    }
}
