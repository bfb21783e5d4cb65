//! The embedded default: one sled database in the data directory. A batch is one sled
//! transaction over the trees it touches (sled serialises transactions against every other
//! access), so its checks and writes land together or not at all, also across a crash.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Batch, Pair, Scan, Store, StoreError, Tree};

/// The sled backend.
pub struct SledStore {
    db: sled::Db,
    /// Group commit: tickets taken after writes, and the highest ticket made durable.
    flush_tickets: AtomicU64,
    flushed: Mutex<u64>,
    /// Opened once, indexed as [`Tree::ALL`]: `open_tree` is a map lookup and a clone, too
    /// costly on every host call.
    trees: Vec<sled::Tree>,
}

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
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
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
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<_, _>>()?;
        Ok(SledStore {
            db,
            trees,
            flush_tickets: AtomicU64::new(0),
            flushed: Mutex::new(0),
        })
    }

    /// A throwaway store that lives in memory only (simulations, benchmarks).
    pub fn temporary() -> anyhow::Result<SledStore> {
        Self::with_trees(sled::Config::new().temporary(true).open()?)
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let touched = batch.trees();
        if touched.is_empty() {
            return Ok(());
        }
        let trees: Vec<sled::Tree> = touched.iter().map(|t| self.tree(*t).clone()).collect();
        let slot = |tree: &Tree| {
            touched
                .iter()
                .position(|t| t == tree)
                .expect("every tree of the batch is in `touched`")
        };
        let result = trees.as_slice().transaction(|views| {
            for (tree, key, want) in batch.checks() {
                let have = views[slot(tree)].get(key)?;
                if have.as_deref() != want.as_deref() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict {
                        tree: tree.name(),
                        key: String::from_utf8_lossy(key).into_owned(),
                    }));
                }
            }
            for (tree, key, value) in batch.writes() {
                let view = &views[slot(tree)];
                match value {
                    Some(v) => view.insert(key.as_slice(), v.as_slice())?,
                    None => view.remove(key.as_slice())?,
                };
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn scan(&self, tree: Tree, scan: &Scan<'_>) -> Result<Vec<Pair>, StoreError> {
        let Some(range) = scan.bounds() else {
            return Ok(Vec::new());
        };
        let iter = self.tree(tree).range(range);
        let pairs = |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend)
        };
        if scan.is_reversed() {
            iter.rev().take(scan.limit()).map(pairs).collect()
        } else {
            iter.take(scan.limit()).map(pairs).collect()
        }
    }

    /// Concurrent callers share one fsync: a caller whose writes were already covered by a
    /// flush that started after them returns at once.
    fn flush(&self) -> Result<(), StoreError> {
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

    fn next_id(&self) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreExt;

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
