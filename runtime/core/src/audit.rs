//! The audit trail: who changed what, when. Every deploy, rollback, binding and settings
//! change is appended here in time order; nothing ever edits or deletes an entry.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, StoreExt, Tree};

/// One change, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// RFC 3339 time.
    pub at: String,
    /// The token name that made the change.
    pub who: String,
    /// What was done: `deploy`, `rollback`, `bind`, `configure`, `load-customers`.
    pub action: String,
    /// The flow (or entry point) concerned.
    pub subject: String,
    /// Details: versions before and after, counts.
    pub detail: serde_json::Value,
}

/// Appends an entry (flushed with the change it records).
pub fn record(
    store: &dyn Store,
    who: &str,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let key = format!(
        "{:020}-{}",
        now.timestamp_nanos_opt().unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    );
    let entry = AuditEntry {
        at: now.to_rfc3339(),
        who: who.to_string(),
        action: action.to_string(),
        subject: subject.to_string(),
        detail,
    };
    store.put_json(Tree::Audit, &key, &entry)
}

/// The whole trail, oldest first.
pub fn all(store: &dyn Store) -> Result<Vec<AuditEntry>, StoreError> {
    store.scan_json(Tree::Audit, "")
}
