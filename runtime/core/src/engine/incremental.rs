//! Cranelift's incremental compilation cache on disk: compiled functions keyed by their body
//! and the compiler's settings. Python and JavaScript flows are mostly the same interpreter, so
//! once one flow of a language was compiled, the next one compiles only what differs.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Entries as files under a directory, sharded by the first byte of the key's hash.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl DiskCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> DiskCache {
        DiskCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Functions found in the cache and compiled anew since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.hits.swap(0, Ordering::Relaxed),
            self.misses.swap(0, Ordering::Relaxed),
        )
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = hex::encode(Sha256::digest(key));
        self.dir.join(&name[..2]).join(&name[2..])
    }
}

impl wasmtime::CacheStore for DiskCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let found = std::fs::read(self.path(key)).ok().map(Cow::Owned);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        let Some(parent) = path.parent() else {
            return false;
        };
        if std::fs::create_dir_all(parent).is_err() {
            return false;
        }
        // Write then rename: a reader never sees half an entry, concurrent writers agree.
        let tmp = path.with_extension(format!(
            "tmp{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, &value).is_ok() && std::fs::rename(&tmp, &path).is_ok()
    }
}
