//! Durable storage behind one narrow trait: named trees of ordered byte keys. The embedded
//! default is sled; a cluster deployment can put the same trait over an existing database.
//! This module owns bytes and durability only; it never interprets what it stores.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

/// The trees Switchboard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Flow name -> its record (live version).
    Flows,
    /// `flow/seq` -> an immutable flow version.
    Versions,
    /// Contact id -> its session.
    Sessions,
    /// `contact/step` -> one recorded step.
    Traces,
    /// `flow\0key` -> a flow's durable value.
    Kv,
    /// `flow\0key` -> a flow's setting.
    Settings,
    /// Customer records and their lookup indexes.
    Customers,
    /// Entry-point address -> the flow it starts.
    EntryPoints,
    /// Token name -> its hash and role.
    Tokens,
    /// Time-ordered audit entries.
    Audit,
    /// `flow/seq` -> how a version has been doing.
    Health,
    /// Queue name -> its configuration and routing plan.
    Queues,
    /// Agent name -> the agent.
    Workers,
    /// Task id -> the task.
    Tasks,
    /// A channel's own key (a Twilio CallSid, an SMS conversation) -> the contact.
    ChannelKeys,
}

impl Tree {
    fn name(self) -> &'static str {
        match self {
            Tree::Flows => "flows",
            Tree::Versions => "versions",
            Tree::Sessions => "sessions",
            Tree::Traces => "traces",
            Tree::Kv => "kv",
            Tree::Settings => "settings",
            Tree::Customers => "customers",
            Tree::EntryPoints => "entry_points",
            Tree::Tokens => "tokens",
            Tree::Audit => "audit",
            Tree::Health => "health",
            Tree::Queues => "queues",
            Tree::Workers => "workers",
            Tree::Tasks => "tasks",
            Tree::ChannelKeys => "channel_keys",
        }
    }
}

/// The storage failed; the caller should retry later or check the disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("the store failed: {0} (check the data directory's disk space and permissions)")]
    Backend(String),
    /// A stored value does not decode: a bug or a damaged store.
    #[error("a stored value in {tree} under {key:?} does not decode: {why}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The key, lossily printed.
        key: String,
        /// The decoder's complaint.
        why: String,
    },
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// What the rest of Switchboard needs from storage.
pub trait Store: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store `value` under `key` (durable after the next [`Store::flush`]).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Remove `key`.
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError>;
    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Pair>, StoreError>;
    /// The last pair whose key starts with `prefix`.
    fn last_with_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// Make everything written so far durable. Called before anything is acknowledged.
    fn flush(&self) -> Result<(), StoreError>;
}

/// Typed access over any [`Store`]: values are JSON, readable with any sled tool.
pub trait StoreExt: Store {
    /// The decoded value under `key`.
    fn get_json<T: DeserializeOwned>(
        &self,
        tree: Tree,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(tree, key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        tree: tree.name(),
                        key: key.to_string(),
                        why: e.to_string(),
                    })
            }
        }
    }

    /// Encode and store `value` under `key`.
    fn put_json<T: Serialize>(&self, tree: Tree, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.put(tree, key.as_bytes(), &bytes)
    }

    /// Every decoded value whose key starts with `prefix`.
    fn scan_json<T: DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.scan_prefix(tree, prefix.as_bytes())?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    tree: tree.name(),
                    key: String::from_utf8_lossy(&k).into_owned(),
                    why: e.to_string(),
                })
            })
            .collect()
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// The embedded default: one sled database in the data directory.
pub struct SledStore {
    db: sled::Db,
    /// Group commit: tickets taken after writes, and the highest ticket made durable.
    flush_tickets: std::sync::atomic::AtomicU64,
    flushed: std::sync::Mutex<u64>,
    /// Opened once: `open_tree` is a map lookup and a clone, too costly on every host call.
    trees: Vec<sled::Tree>,
}

const TREES: [Tree; 15] = [
    Tree::Flows,
    Tree::Versions,
    Tree::Sessions,
    Tree::Traces,
    Tree::Kv,
    Tree::Settings,
    Tree::Customers,
    Tree::EntryPoints,
    Tree::Tokens,
    Tree::Audit,
    Tree::Health,
    Tree::Queues,
    Tree::Workers,
    Tree::Tasks,
    Tree::ChannelKeys,
];

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Fails clearly if another server holds it.
    pub fn open(dir: &Path) -> anyhow::Result<SledStore> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir.join("store"))
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock") =>
                {
                    anyhow::anyhow!(
                    "the store in {} is in use by another switchboard process; stop it or pass another --data-dir",
                        dir.display()
                    )
                }
                other => anyhow::anyhow!("cannot open the store in {}: {other}", dir.display()),
            })?;
        Self::with_trees(db)
    }

    fn with_trees(db: sled::Db) -> anyhow::Result<SledStore> {
        let trees = TREES
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<_, _>>()?;
        Ok(SledStore {
            db,
            trees,
            flush_tickets: std::sync::atomic::AtomicU64::new(0),
            flushed: std::sync::Mutex::new(0),
        })
    }

    /// A throwaway store that lives in memory only (simulations, benchmarks).
    pub fn temporary() -> anyhow::Result<SledStore> {
        Self::with_trees(sled::Config::new().temporary(true).open()?)
    }

    fn tree(&self, tree: Tree) -> Result<&sled::Tree, StoreError> {
        Ok(&self.trees[tree as usize])
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.insert(key, value).map_err(backend)?;
        Ok(())
    }

    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.remove(key).map_err(backend)?;
        Ok(())
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn last_with_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .next_back()
            .transpose()
            .map(|o| o.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .map_err(backend)
    }

    /// Concurrent callers share one fsync: a caller whose writes were already covered by a
    /// flush that started after them returns at once.
    fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.flush_tickets.fetch_add(1, SeqCst) + 1;
        let mut flushed = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        if *flushed >= ticket {
            return Ok(());
        }
        // Every ticket taken so far belongs to writes that finished before it was taken, so
        // the flush below covers them all.
        let covered = self.flush_tickets.load(SeqCst);
        self.db.flush().map_err(backend)?;
        *flushed = covered;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .put_json(Tree::Flows, "ivr", &serde_json::json!({"live": 2}))
                .unwrap();
            store.put(Tree::Versions, b"ivr/00000001", b"{}").unwrap();
            store.put(Tree::Versions, b"ivr/00000002", b"{}").unwrap();
            store.put(Tree::Versions, b"ivrx/00000009", b"{}").unwrap();
            store.flush().unwrap();
        }
        // sled's background flusher lets go of the directory lock a moment after the drop (a
        // restart is a new process, where this never shows); reopen as a restarting server would.
        let store = (0..50)
            .find_map(|_| {
                SledStore::open(dir.path()).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    None
                })
            })
            .expect("the store reopens");
        let flow: serde_json::Value = store.get_json(Tree::Flows, "ivr").unwrap().unwrap();
        assert_eq!(flow["live"], 2);
        let (last, _) = store
            .last_with_prefix(Tree::Versions, b"ivr/")
            .unwrap()
            .unwrap();
        assert_eq!(last, b"ivr/00000002");
        assert_eq!(store.scan_prefix(Tree::Versions, b"ivr/").unwrap().len(), 2);
    }

    #[test]
    fn corrupt_values_are_reported_with_their_key() {
        let store = SledStore::temporary().unwrap();
        store.put(Tree::Sessions, b"c1", b"not json").unwrap();
        let err = store
            .get_json::<serde_json::Value>(Tree::Sessions, "c1")
            .unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
    }
}
