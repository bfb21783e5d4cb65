//! `config`: settings an admin gives a flow (time zone, opening hours...) without a rebuild.
//! Stored per flow under `flow\0key`; shared by all versions of the flow.

use serde_json::json;

use super::{Source, StepState};
use crate::engine::bindings::switchboard::flow::config::Host;
use crate::store::{Store, StoreError, StoreExt, Tree};

/// The store key of setting `key` of `flow`.
pub fn key(flow: &str, key: &str) -> Vec<u8> {
    let mut k = flow.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// All settings of `flow`, in key order.
pub fn all(store: &dyn Store, flow: &str) -> Result<Vec<(String, String)>, StoreError> {
    let prefix = key(flow, "");
    Ok(store
        .scan_prefix(Tree::Settings, &prefix)?
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect())
}

impl Host for StepState {
    fn get(&mut self, name: String) -> Option<String> {
        let value = match self.source("config.get", &json!(name)) {
            Source::Live => {
                let key = key(&self.flow, &name);
                self.services
                    .settings
                    .get_or(&key, || self.services.store.get(Tree::Settings, &key))
                    .unwrap_or_else(|e| {
                    tracing::error!(flow = %self.flow, error = %e, "settings read failed; the flow sees no value");
                    None
                })
                .map(|v| String::from_utf8_lossy(&v).into_owned())
            }
            Source::Recorded(answer) => serde_json::from_value(answer).unwrap_or_default(),
            Source::Missing => None,
        };
        self.record("config.get", json!(name), json!(value));
        value
    }
}
