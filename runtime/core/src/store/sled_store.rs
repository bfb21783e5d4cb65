//! The embedded default: one sled database in the data directory.
//!
//! A batch is made atomic by a journal rather than by sled's transactions: sled serialises a
//! transaction (and `apply_batch`) against every flush in progress, so each step commit
//! waited for another thread's fsync; measured with `cargo bench --bench sessions` and
//! `--bench router`, transactions cut durable steps/s by half and router assignments/s by
//! five. Instead, commits take one process-wide lock, check their preconditions, write the
//! batch's writes as the journal record (one key, overwritten by each batch of two or more
//! writes: a single-key insert is atomic in sled), then apply them with plain inserts. A
//! single write (with what is written ahead of it) that touches a key of the record first
//! removes the record; one that touches none leaves it, so the record present at start-up
//! belongs to the last batch of two or more writes, and nothing written after it touched its
//! keys (but the ahead-writes of a batch whose own record did not land, which it then
//! undoes: that batch did not land either). sled recovers a prefix of its log after a crash,
//! so either the record survives (and [`SledStore::open`] applies it again: its writes are
//! absolute values, and its keys still hold them or the crash cut the batch short) or neither
//! it nor any write after it does. Readers may see a batch's writes land one by one while it
//! commits; a crash never leaves part of one.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use super::{Batch, Entry, Pair, Scan, Store, StoreError, Tree, last_write_per_key, repeats_a_key};

/// The sled backend.
pub struct SledStore {
    db: sled::Db,
    /// Group commit: tickets taken after writes, and the highest ticket made durable.
    flush_tickets: AtomicU64,
    flushed: Mutex<u64>,
    /// Opened once, indexed as [`Tree::ALL`]: `open_tree` is a map lookup and a clone, too
    /// costly on every host call.
    trees: Vec<sled::Tree>,
    /// The last batch's writes, under [`JOURNAL_KEY`] (see the module header).
    journal: sled::Tree,
    /// Commits take turns: a batch's checks and writes are not interleaved with another's.
    /// Holds the journal's record while it holds one.
    commit_lock: Mutex<Option<sled::IVec>>,
    /// Set when applying a batch failed half-way: its record must not be removed by a later
    /// write, so nothing more is written until a restart applies it again.
    interrupted: std::sync::atomic::AtomicBool,
}

const JOURNAL_KEY: &[u8] = b"last-batch";

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(format!(
        "{e} (check the data directory's disk space and permissions)"
    ))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Fails clearly if another server holds it.
    ///
    /// sled's own file lock outlives the last handle by a moment: its background writes hold
    /// the file until they finish. A store closed and opened again in the same process (a
    /// restart in a test) waits for them, up to `LOCK_WAIT`, before it calls the store in use.
    /// (Another process never meets that lock once the server has exited, and a running
    /// server is refused sooner by the node's lock on the data directory.)
    pub fn open(dir: &Path) -> anyhow::Result<SledStore> {
        const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
        std::fs::create_dir_all(dir)?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(dir.join("store"))
                .mode(sled::Mode::HighThroughput)
                .open()
            {
                Ok(db) => break db,
                // sled says so in its own words (an `io::Error` of kind `Other`).
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() < deadline {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    }
                    anyhow::bail!(
                        "the store in {} is in use by another switchboard process; stop it or pass another --data-dir",
                        dir.display()
                    )
                }
                Err(other) => {
                    anyhow::bail!("cannot open the store in {}: {other}", dir.display())
                }
            }
        };
        Self::with_trees(db)
    }

    fn with_trees(db: sled::Db) -> anyhow::Result<SledStore> {
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<_, _>>()?;
        let journal = db.open_tree("journal")?;
        let store = SledStore {
            db,
            trees,
            journal,
            commit_lock: Mutex::new(None),
            interrupted: std::sync::atomic::AtomicBool::new(false),
            flush_tickets: AtomicU64::new(0),
            flushed: Mutex::new(0),
        };
        store.recover()?;
        Ok(store)
    }

    /// Applies again the last batch written before the store was closed (or crashed), and
    /// empties the journal.
    fn recover(&self) -> anyhow::Result<()> {
        if let Some(record) = self.journal.get(JOURNAL_KEY)? {
            let writes = decode_writes(&record).ok_or_else(|| {
                anyhow::anyhow!(
                    "the store's journal holds a damaged record; restore the data directory from a backup"
                )
            })?;
            self.apply(&writes)?;
            self.journal.remove(JOURNAL_KEY)?;
            self.db.flush()?;
            tracing::debug!(writes = writes.len(), "the last batch applied again");
        }
        Ok(())
    }

    fn apply(&self, writes: &[Entry]) -> Result<(), StoreError> {
        for (tree, key, value) in writes {
            let tree = self.tree(*tree);
            match value {
                Some(v) => tree.insert(key.as_slice(), v.as_slice()).map_err(backend)?,
                None => tree.remove(key.as_slice()).map_err(backend)?,
            };
        }
        Ok(())
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
        if batch.is_empty() {
            return Ok(());
        }
        let mut journaled = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.interrupted.load(SeqCst) {
            return Err(StoreError::Backend(
                "an earlier write failed half-way; restart the server to finish it (nothing else is written until then)".into(),
            ));
        }
        for (tree, key, want) in batch.checks() {
            let have = self.tree(*tree).get(key).map_err(backend)?;
            if have.as_deref() != want.as_deref() {
                return Err(StoreError::Conflict {
                    tree: tree.name(),
                    key: String::from_utf8_lossy(key).into_owned(),
                });
            }
        }
        let deduplicated;
        let mut writes = batch.writes();
        if repeats_a_key(writes) {
            // A key written twice in one batch (a task staged, then offered) is written once,
            // with its last value. Most batches (every step's) repeat none and are not copied.
            deduplicated = last_write_per_key(writes);
            writes = &deduplicated;
        }
        if writes.len() < 2 {
            // A single-key write is atomic in sled on its own. The record of an earlier batch
            // is applied again after a crash: it must not hold a key written after it, or it
            // would undo that write.
            if journaled
                .as_ref()
                .is_some_and(|record| touches(record, batch.ahead(), writes))
            {
                self.journal.remove(JOURNAL_KEY).map_err(backend)?;
                *journaled = None;
            }
            // Ahead-writes mean nothing until the atomic writes land: plain inserts, no journal.
            self.apply(batch.ahead())?;
            return self.apply(writes);
        }
        // Ahead of the record: a crash before it lands may leave them under the previous
        // record, applied again over them at start-up, which is harmless as the batch did not
        // land.
        self.apply(batch.ahead())?;
        let record = sled::IVec::from(encode_writes(writes));
        self.journal
            .insert(JOURNAL_KEY, record.clone())
            .map_err(backend)?;
        *journaled = Some(record);
        self.apply(writes)
            .inspect_err(|_| self.interrupted.store(true, SeqCst))
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

/// A journal record: per write, the tree's index, the key, and the value or its absence.
fn encode_writes(writes: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tree, key, value) in writes {
        out.push(tree.index() as u8);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        match value {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
    }
    out
}

/// One write of a record, read without copying, with what follows it.
type RecordEntry<'a> = (Tree, &'a [u8], Option<&'a [u8]>);

fn next_entry(mut bytes: &[u8]) -> Option<(RecordEntry<'_>, &[u8])> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn len(bytes: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
    }
    let tree = *Tree::ALL.get(usize::from(take(&mut bytes, 1)?[0]))?;
    let n = len(&mut bytes)?;
    let key = take(&mut bytes, n)?;
    let value = match take(&mut bytes, 1)?[0] {
        0 => None,
        _ => {
            let n = len(&mut bytes)?;
            Some(take(&mut bytes, n)?)
        }
    };
    Some(((tree, key, value), bytes))
}

fn decode_writes(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut writes = Vec::new();
    while !bytes.is_empty() {
        let ((tree, key, value), rest) = next_entry(bytes)?;
        writes.push((tree, key.to_vec(), value.map(<[u8]>::to_vec)));
        bytes = rest;
    }
    Some(writes)
}

/// Whether a record holds one of `ahead`'s or `writes`' keys. A record of many writes (a
/// thousand offers) is taken to hold them all rather than read through on every later write.
fn touches(mut record: &[u8], ahead: &[Entry], writes: &[Entry]) -> bool {
    const READ_THROUGH: usize = 64;
    for _ in 0..READ_THROUGH {
        if record.is_empty() {
            return false;
        }
        let Some(((tree, key, _), rest)) = next_entry(record) else {
            return true;
        };
        if ahead
            .iter()
            .chain(writes)
            .any(|(t, k, _)| *t == tree && k.as_slice() == key)
        {
            return true;
        }
        record = rest;
    }
    !record.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreExt;

    #[test]
    fn a_key_written_twice_in_a_batch_keeps_its_last_value() {
        let writes = vec![
            (Tree::Tasks, b"t1".to_vec(), Some(b"pending".to_vec())),
            (Tree::OpenTasks, b"t1".to_vec(), Some(Vec::new())),
            (Tree::Tasks, b"t1".to_vec(), Some(b"reserved".to_vec())),
        ];
        assert!(repeats_a_key(&writes));
        assert!(!repeats_a_key(&writes[1..]));
        let kept = last_write_per_key(&writes);
        assert_eq!(
            kept,
            vec![
                (Tree::Tasks, b"t1".to_vec(), Some(b"reserved".to_vec())),
                (Tree::OpenTasks, b"t1".to_vec(), Some(Vec::new())),
            ]
        );
    }

    #[test]
    fn journal_records_round_trip() {
        let writes = vec![
            (Tree::Sessions, b"c1".to_vec(), Some(b"{}".to_vec())),
            (Tree::Inbox, b"c1/7".to_vec(), None),
            (Tree::Meta, Vec::new(), Some(Vec::new())),
        ];
        assert_eq!(decode_writes(&encode_writes(&writes)), Some(writes));
        assert_eq!(
            decode_writes(&[0, 0, 0, 0, 9]),
            None,
            "a cut record is refused"
        );
    }

    #[test]
    fn a_journal_record_left_by_a_crash_is_applied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("store")).unwrap();
            let writes = vec![
                (Tree::Sessions, b"c1".to_vec(), Some(b"2".to_vec())),
                (Tree::Traces, b"c1/000002".to_vec(), Some(b"step".to_vec())),
            ];
            let journal = db.open_tree("journal").unwrap();
            journal.insert(JOURNAL_KEY, encode_writes(&writes)).unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(Tree::Sessions, b"c1").unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(
            store.get(Tree::Traces, b"c1/000002").unwrap(),
            Some(b"step".to_vec())
        );
        assert!(store.journal.is_empty());
    }

    /// The record of the last batch stays through single writes of other keys (applied
    /// again at open, it changes nothing), and goes before a single write of one of its
    /// keys, direct or ahead (applied again, it would undo that write).
    #[test]
    fn a_record_applied_again_never_undoes_a_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let reopen = |store: SledStore| {
            store.flush().unwrap();
            drop(store);
            SledStore::open(dir.path()).unwrap()
        };
        let text = |store: &SledStore, tree, key: &[u8]| {
            store
                .get(tree, key)
                .unwrap()
                .map(|v| String::from_utf8(v).unwrap())
        };
        let pair = |session: &str| {
            let mut batch = Batch::new();
            batch.put(Tree::Sessions, "c1", session);
            batch.put(Tree::Traces, "c1/000001", "trace");
            batch
        };
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&pair("one")).unwrap();
        store.put(Tree::Tasks, b"t1", b"other key").unwrap();
        assert!(
            !store.journal.is_empty(),
            "a write of another key leaves it"
        );
        let store = reopen(store);
        assert_eq!(text(&store, Tree::Sessions, b"c1").as_deref(), Some("one"));
        assert_eq!(
            text(&store, Tree::Tasks, b"t1").as_deref(),
            Some("other key")
        );

        store.commit(&pair("two")).unwrap();
        store.put(Tree::Sessions, b"c1", b"three").unwrap();
        assert!(
            store.journal.is_empty(),
            "a write of one of its keys removes it"
        );
        let store = reopen(store);
        assert_eq!(
            text(&store, Tree::Sessions, b"c1").as_deref(),
            Some("three")
        );

        store.commit(&pair("four")).unwrap();
        let mut ahead = Batch::new();
        ahead
            .put_ahead_json(Tree::Traces, "c1/000001", &"ahead")
            .unwrap();
        ahead.put(Tree::Tasks, "t2", "single");
        store.commit(&ahead).unwrap();
        let store = reopen(store);
        assert_eq!(
            text(&store, Tree::Traces, b"c1/000001").as_deref(),
            Some("\"ahead\"")
        );
        assert_eq!(text(&store, Tree::Sessions, b"c1").as_deref(), Some("four"));

        // A delete of one of its keys is a write of that key.
        store.commit(&pair("five")).unwrap();
        store.delete(Tree::Traces, b"c1/000001").unwrap();
        assert!(store.journal.is_empty());
        let store = reopen(store);
        assert_eq!(text(&store, Tree::Traces, b"c1/000001"), None);

        // A record of many writes is not read through: any single write removes it.
        let mut many = Batch::new();
        for i in 0..65 {
            many.put(Tree::Tasks, format!("t{i:02}"), "offered");
        }
        store.commit(&many).unwrap();
        store.put(Tree::Agents, b"ann", b"other key").unwrap();
        assert!(store.journal.is_empty());
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
