//! Cranelift's incremental compilation cache on disk: compiled functions keyed by their body
//! and the compiler's settings. Python and JavaScript flows are mostly the same interpreter, so
//! once one flow of a language was compiled, the next one compiles only what differs.

use std::borrow::Cow;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Entries as files under a directory, sharded by the first byte of the key's hash.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> DiskCache {
        DiskCache { dir }
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = hex::encode(Sha256::digest(key));
        self.dir.join(&name[..2]).join(&name[2..])
    }
}

impl wasmtime::CacheStore for DiskCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        std::fs::read(self.path(key)).ok().map(Cow::Owned)
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
