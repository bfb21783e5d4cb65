//! `crm`: customer lookups, served by the built-in customer store (loaded by admins from CSV
//! or JSON). Keys: `id/<id>` holds the record, `phone/<e164>` and `email/<addr>` point to it.

use serde_json::json;

use super::{Source, StepState};
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

fn lookup(state: &StepState, key: &LookupKey) -> Result<Option<contract::Customer>, String> {
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

impl Host for StepState {
    fn lookup(&mut self, key: LookupKey) -> Result<Option<Customer>, String> {
        let args = json!(index_key(&key));
        let found = match self.source("crm.lookup", &args) {
            Source::Live => lookup(self, &key),
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
