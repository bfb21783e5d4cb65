//! `kv`: a durable key/value store private to each flow (shared by its versions). Writes are
//! held until the step succeeds, so a step that faults leaves no half-done writes behind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Source, StepState};
use crate::engine::bindings::switchboard::flow::kv::Host;
use crate::store::{Batch, Tree};

/// Longest key a flow may use.
const MAX_KEY: usize = 256;
/// Largest value a flow may store.
const MAX_VALUE: usize = 64 * 1024;

/// The writes of one step, applied when it succeeds.
#[derive(Default)]
pub struct Pending(BTreeMap<String, Option<Vec<u8>>>);

/// One write a step made: a value, or `None` for a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KvWrite {
    /// The key.
    pub key: String,
    /// The value, `None` when deleted.
    pub value: Option<Vec<u8>>,
}

fn store_key(flow: &str, key: &str) -> Vec<u8> {
    crate::store::keys::kv(flow, key)
}

impl Pending {
    /// The writes, in key order.
    pub fn into_writes(self) -> Vec<KvWrite> {
        self.0
            .into_iter()
            .map(|(key, value)| KvWrite { key, value })
            .collect()
    }
}

/// Stages a successful step's writes for `flow` in the step's batch: they land with the
/// session or not at all.
pub fn stage(batch: &mut Batch, flow: &str, writes: Vec<KvWrite>) {
    for w in writes {
        match w.value {
            Some(v) => batch.put(Tree::Kv, store_key(flow, &w.key), v),
            None => batch.delete(Tree::Kv, store_key(flow, &w.key)),
        }
    }
}

impl Host for StepState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let value = match self.kv.0.get(&key) {
            Some(pending) => pending.clone(),
            None => match self.source("kv.get", &json!(key)) {
                Source::Live => self
                    .services
                    .store
                    .get(Tree::Kv, &store_key(&self.flow, &key))
                    .unwrap_or_else(|e| {
                        tracing::error!(flow = %self.flow, error = %e, "kv read failed; the flow sees no value");
                        None
                    }),
                Source::Recorded(answer) => serde_json::from_value(answer).unwrap_or_default(),
                Source::Missing => None,
            },
        };
        self.record("kv.get", json!(key), json!(value));
        value
    }

    fn set(&mut self, key: String, value: Vec<u8>) {
        // Oversized writes are dropped and logged rather than trapping the contact.
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            tracing::warn!(flow = %self.flow, key_len = key.len(), value_len = value.len(),
                "kv.set refused: keys are limited to {MAX_KEY} bytes and values to {MAX_VALUE}");
            self.record(
                "kv.set",
                json!([key, value.len()]),
                json!("refused: too large"),
            );
            return;
        }
        self.record("kv.set", json!([key, value.len()]), json!(null));
        self.kv.0.insert(key, Some(value));
    }

    fn delete(&mut self, key: String) {
        self.record("kv.delete", json!(key), json!(null));
        self.kv.0.insert(key, None);
    }
}
