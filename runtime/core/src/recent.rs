//! Short-lived copies of records read on nearly every request and changed rarely (who an API
//! token is, a flow's settings): one read of the store per key and second instead of one per
//! request. On a shared store each read is a round trip to the database, and these were a
//! third of a step's.
//!
//! A change made on this node is seen at once (its writer forgets the copies); one made on
//! another node is seen within [`FRESH_FOR`].
//!
//! Owns the copies only; never decides what a record means.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a copy is used before the store is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// More keys than this and every copy is dropped (a flood of distinct keys, such as wrong
/// tokens, costs reads, not memory).
const MOST: usize = 10_000;

/// Copies of values by key, each used for [`FRESH_FOR`] after it was read.
pub struct Recent<K, V> {
    copies: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            copies: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Recent<K, V> {
    /// The copy of `key` read less than [`FRESH_FOR`] ago, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies
            .get(key)
            .filter(|(_, read)| read.elapsed() < FRESH_FOR)
            .map(|(value, _)| value.clone())
    }

    /// Keeps `value` as the copy of `key`, read at `read` (taken before the read: a change
    /// that landed meanwhile and forgot the copies is not undone by this late one).
    pub fn keep(&self, key: K, value: V, read: Instant) {
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        if copies.len() >= MOST {
            copies.clear();
        }
        copies.insert(key, (value, read));
    }

    /// The copy of `key`, or `load`'s answer (kept when it is `Ok`).
    pub fn get_or<E>(&self, key: &K, load: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let read = Instant::now();
        let value = load()?;
        self.keep(key.clone(), value.clone(), read);
        Ok(value)
    }

    /// Forgets every copy (after a change on this node).
    pub fn forget(&self) {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_used_until_it_is_a_second_old_or_forgotten() {
        let recent: Recent<&str, u32> = Recent::default();
        let mut reads = 0;
        let mut read = || -> Result<u32, ()> {
            reads += 1;
            Ok(reads)
        };
        assert_eq!(recent.get_or(&"a", &mut read), Ok(1));
        assert_eq!(recent.get_or(&"a", &mut read), Ok(1), "the copy");
        recent.forget();
        assert_eq!(recent.get_or(&"a", &mut read), Ok(2), "read again");
        // A copy read before a change that forgot everything is older than the change.
        recent.keep("b", 7, Instant::now() - FRESH_FOR);
        assert_eq!(recent.get(&"b"), None);
    }
}
