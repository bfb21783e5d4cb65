//! A store in one process's memory, for unit tests of the parts above the store: the same
//! semantics as every other backend (it passes the conformance suite), no disk, no threads.
//! Nothing survives the value being dropped; `flush` has nothing to do.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use super::{Batch, Pair, Scan, Store, StoreError, Tree};

/// The in-memory backend.
pub struct MemoryStore {
    trees: Mutex<Vec<BTreeMap<Vec<u8>, Vec<u8>>>>,
    ids: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            trees: Mutex::new(vec![BTreeMap::new(); Tree::ALL.len()]),
            ids: AtomicU64::new(0),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn trees(&self) -> std::sync::MutexGuard<'_, Vec<BTreeMap<Vec<u8>, Vec<u8>>>> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.trees()[tree.index()].get(key).cloned())
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut trees = self.trees();
        for (tree, key, want) in batch.checks() {
            if trees[tree.index()].get(key) != want.as_ref() {
                return Err(StoreError::Conflict {
                    tree: tree.name(),
                    key: String::from_utf8_lossy(key).into_owned(),
                });
            }
        }
        for (tree, key, value) in batch.ahead().iter().chain(batch.writes()) {
            let map = &mut trees[tree.index()];
            match value {
                Some(v) => map.insert(key.clone(), v.clone()),
                None => map.remove(key),
            };
        }
        Ok(())
    }

    fn scan(&self, tree: Tree, scan: &Scan<'_>) -> Result<Vec<Pair>, StoreError> {
        let Some(range) = scan.bounds() else {
            return Ok(Vec::new());
        };
        let trees = self.trees();
        let iter = trees[tree.index()].range::<Vec<u8>, _>(range);
        let pair = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if scan.is_reversed() {
            iter.rev().take(scan.limit()).map(pair).collect()
        } else {
            iter.take(scan.limit()).map(pair).collect()
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.ids.fetch_add(1, SeqCst) + 1)
    }
}
