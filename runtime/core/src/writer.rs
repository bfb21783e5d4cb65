//! One writer per store. The router, flows and sessions of a node keep indexes of the store in
//! memory (open tasks, agents' order, live versions), so two nodes writing one shared
//! database would each act on a stale picture. Until nodes coordinate, a node claims the
//! store with a renewed, expiring record ([`keys::WRITER`]) and another node refuses to start
//! while the claim is fresh. The same node restarting (same node id, kept in its data
//! directory, which it locks) takes its own claim back at once.
//!
//! This guards against a second node started by mistake, not against every failure: the
//! claim's expiry is judged by wall clocks, and a node cut off from the database for longer
//! than the claim may still commit what it had in flight when it comes back (it stops at its
//! next renewal). Fenced leadership is the cluster mode's.
//!
//! Owns the claim record only; never decides anything else about the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Batch, Store, StoreError, Tree, keys};

/// How long a claim holds without renewal.
const CLAIM_MS: u64 = 10_000;
/// How often a claim is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// A node's claim on the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Claim {
    /// The node's id, kept in its data directory (`node.id`).
    node: String,
    host: String,
    data_dir: String,
    pid: u32,
    until_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// This node's id: made once, kept in its data directory.
fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id).map_err(|e| {
                anyhow::anyhow!("cannot write this node's id to {}: {e}", path.display())
            })?;
            Ok(id)
        }
    }
}

/// This node's claim, renewed until dropped (then released).
pub struct Writer {
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
    /// The claim as last written.
    mine: Arc<std::sync::Mutex<Claim>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Claims `store` for the node on `data_dir`, or says which node holds it.
    pub fn claim(store: Arc<dyn Store>, data_dir: &std::path::Path) -> anyhow::Result<Writer> {
        let node = node_id(data_dir)?;
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf())
            .display()
            .to_string();
        let mine = Claim {
            node,
            host: host(),
            data_dir,
            pid: std::process::id(),
            until_ms: now_ms() + CLAIM_MS,
        };
        let held = store.get(Tree::Meta, keys::WRITER.as_bytes())?;
        if let Some(bytes) = &held {
            let other: Claim = crate::store::decode(Tree::Meta, keys::WRITER.as_bytes(), bytes)?;
            let same_node = other.node == mine.node;
            if !same_node && other.until_ms > now_ms() {
                anyhow::bail!(
                    "another Switchboard node (pid {} on {}, data directory {}) is using this database; several nodes on one database are not supported yet. Stop it first, or give this node a database of its own (its claim expires {} s after it stops)",
                    other.pid,
                    other.host,
                    other.data_dir,
                    CLAIM_MS / 1000
                );
            }
        }
        let mut batch = Batch::new();
        batch.expect(Tree::Meta, keys::WRITER, held.as_deref());
        batch.put_json(Tree::Meta, keys::WRITER, &mine)?;
        store.commit(&batch).map_err(|e| match e {
            StoreError::Conflict { .. } => anyhow::anyhow!(
                "another Switchboard node claimed this database at the same moment; start one node per database"
            ),
            other => other.into(),
        })?;
        store.flush()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mine = Arc::new(std::sync::Mutex::new(mine));
        let renewer = {
            let (store, stop, mine) = (store.clone(), stop.clone(), mine.clone());
            std::thread::Builder::new()
                .name("store-claim".into())
                .spawn(move || renew(&*store, &mine, &stop))?
        };
        Ok(Writer {
            store,
            stop,
            mine,
            renewer: Some(renewer),
        })
    }

    /// Stops renewing without releasing, as a crash would (tests).
    #[cfg(test)]
    fn abandon(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        std::mem::forget(self);
    }
}

/// Renews the claim until told to stop. A claim taken by another node is fatal: two writers
/// would corrupt each other's indexes, so this process stops. A renewal whose outcome was
/// unknown (the connection broke at COMMIT) is settled by reading the record back.
fn renew(store: &dyn Store, mine: &std::sync::Mutex<Claim>, stop: &AtomicBool) {
    let mut since = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if since.elapsed() < RENEW_EVERY {
            continue;
        }
        since = std::time::Instant::now();
        let current = mine.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let held = serde_json::to_vec(&current).expect("a claim encodes");
        let next = Claim {
            until_ms: now_ms() + CLAIM_MS,
            ..current.clone()
        };
        let mut batch = Batch::new();
        batch.expect(Tree::Meta, keys::WRITER, Some(&held));
        if batch.put_json(Tree::Meta, keys::WRITER, &next).is_err() {
            continue;
        }
        match store.commit(&batch) {
            Ok(()) => *mine.lock().unwrap_or_else(|p| p.into_inner()) = next,
            Err(StoreError::Conflict { .. }) => {
                // Ours after all (an earlier renewal landed though its answer was lost)?
                let stored = store
                    .get(Tree::Meta, keys::WRITER.as_bytes())
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<Claim>(&b).ok());
                match stored {
                    Some(claim) if claim.node == current.node && claim.pid == current.pid => {
                        *mine.lock().unwrap_or_else(|p| p.into_inner()) = claim;
                    }
                    _ => {
                        tracing::error!(
                            "another Switchboard node took this node's database; stopping so that two nodes never write it at once"
                        );
                        eprintln!(
                            "error: another Switchboard node took this node's database; stopping so that two nodes never write it at once"
                        );
                        std::process::exit(3);
                    }
                }
            }
            // The database is away: keep trying.
            Err(e) => tracing::warn!(error = %e, "cannot renew this node's claim on the store"),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        // Released, so another node may start at once; only if it is still ours.
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut batch = Batch::new();
        batch.expect(
            Tree::Meta,
            keys::WRITER,
            Some(&serde_json::to_vec(&mine).expect("a claim encodes")),
        );
        batch.delete(Tree::Meta, keys::WRITER);
        let _ = self.store.commit(&batch);
        let _ = self.store.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_second_node_is_refused_while_the_claim_is_fresh_and_the_same_node_takes_it_back() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = Writer::claim(store.clone(), a.path()).unwrap();
        let err = Writer::claim(store.clone(), b.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another Switchboard node"), "{err}");
        assert!(err.contains("not supported yet"), "{err}");
        // The same node restarting after a crash (its claim left behind) takes it back.
        first.abandon();
        let again = Writer::claim(store.clone(), a.path()).unwrap();
        drop(again);
        // Released on a clean stop: another node starts at once.
        Writer::claim(store, b.path()).unwrap();
    }
}
