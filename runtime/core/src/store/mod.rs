//! Durable storage behind one narrow trait: named trees of ordered byte keys, changed only by
//! atomic batches whose preconditions (compare-and-swap checks) either all hold or change
//! nothing, and read by point lookups and bounded ordered scans. The embedded default is sled
//! ([`SledStore`]); unit tests use [`MemoryStore`]; a cluster puts the same trait over an
//! existing database. Every backend passes one conformance suite (`conformance.rs`).
//!
//! This module owns bytes, atomicity and durability only; it never interprets what it
//! stores. Key formats live in [`keys`], values are JSON ([`StoreExt`]).

pub mod keys;
pub mod local_postgres;
mod memory;
pub mod postgres;
mod postgres_link;
mod sled_store;

#[cfg(test)]
mod conformance;

use std::ops::Bound;

use serde::{Serialize, de::DeserializeOwned};

pub use memory::MemoryStore;
pub use postgres::{PostgresOptions, PostgresStore};
pub use sled_store::SledStore;

/// The trees Switchboard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    Agents,
    /// Task id -> the task.
    Tasks,
    /// A channel's own key (a Twilio CallSid, an SMS conversation) -> the contact.
    ChannelKeys,
    /// `contact/seq` -> news for the contact's flow, waiting for its next step.
    Inbox,
    /// Contact id -> `flow/version` of every contact not yet ended (pins after a restart).
    LiveContacts,
    /// `created/contact` -> contact id: contacts newest last, for bounded listings.
    ContactsByStart,
    /// Task id -> nothing: the tasks not yet finished (loaded at start-up).
    OpenTasks,
    /// `queue/at_ms/task` -> a task answered or abandoned then: the statistics window, read
    /// by time, so a restart keeps it.
    QueueEvents,
    /// Schema version and other facts about the store itself.
    Meta,
    /// Agent name -> the phone it registered (SIP).
    Phones,
    /// sha256 -> a deployed component's bytes.
    Components,
    /// Prompt id -> an uploaded recording, as 8 kHz audio.
    Prompts,
    /// `contact/seq` -> one message between the customer and an agent, in order.
    Transcripts,
    /// `agent/ended_ms/task` -> the task id: the tasks an agent handled, newest last (the
    /// desk's recent contacts).
    AgentHistory,
    /// `created_ms/task` -> the facts of a finished task that reports count (its queue, agent
    /// and times), in the order tasks arrived: historical reports read a period of it.
    TaskLog,
    /// `agent/at_ms` -> the activity an agent took then: the history of agents' states.
    AgentStates,
    /// The e-mail channel's durable state: accepted mail not yet handled (`in/`), the outbox
    /// (`out/`), what was sent (`sent/`), threads (`thread/`, `msgid/`), attachments
    /// (`att/`) and the automatic-reply counts (`auto/`).
    Mail,
}

impl Tree {
    /// Every tree, in the order backends index them.
    /// New trees go at the end: the sled journal names trees by this position.
    pub const ALL: [Tree; 29] = [
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
        Tree::Agents,
        Tree::Tasks,
        Tree::ChannelKeys,
        Tree::Inbox,
        Tree::LiveContacts,
        Tree::ContactsByStart,
        Tree::OpenTasks,
        Tree::QueueEvents,
        Tree::Meta,
        Tree::Phones,
        Tree::Components,
        Tree::Prompts,
        Tree::Transcripts,
        Tree::AgentHistory,
        Tree::TaskLog,
        Tree::AgentStates,
        Tree::Mail,
    ];

    /// The tree's stored name.
    pub fn name(self) -> &'static str {
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
            // The stored name predates "agent" as the one word: renaming it would orphan data.
            Tree::Agents => "workers",
            Tree::Tasks => "tasks",
            Tree::ChannelKeys => "channel_keys",
            Tree::Inbox => "inbox",
            Tree::LiveContacts => "live_contacts",
            Tree::ContactsByStart => "contacts_by_start",
            Tree::OpenTasks => "open_tasks",
            Tree::QueueEvents => "queue_events",
            Tree::Meta => "meta",
            Tree::Phones => "phones",
            Tree::Components => "components",
            Tree::Prompts => "prompts",
            Tree::Transcripts => "transcripts",
            Tree::AgentHistory => "agent_history",
            Tree::TaskLog => "task_log",
            Tree::AgentStates => "agent_states",
            Tree::Mail => "mail",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The storage failed, or a batch's check did not hold.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("the store failed: {0}")]
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
    /// A batch's precondition failed: something changed the value since it was read. Nothing
    /// of the batch was written; read again and retry.
    #[error("{tree}/{key} changed concurrently; nothing was written (read it again and retry)")]
    Conflict {
        /// The tree.
        tree: &'static str,
        /// The key, lossily printed.
        key: String,
    },
}

impl StoreError {
    fn corrupt(tree: Tree, key: &[u8], why: impl ToString) -> StoreError {
        StoreError::Corrupt {
            tree: tree.name(),
            key: String::from_utf8_lossy(key).into_owned(),
            why: why.to_string(),
        }
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// One check or write of a [`Batch`]: a tree, a key, and a value (`None`: absent, or
/// removed).
pub type Entry = (Tree, Vec<u8>, Option<Vec<u8>>);

/// The key range of a [`Scan`].
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Writes that land together or not at all, guarded by checks on what is stored now.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The value stored now must be exactly this (`None`: absent).
    checks: Vec<Entry>,
    /// Store the value (`None`: remove the key), in order.
    writes: Vec<Entry>,
    /// Written once the checks hold, before the writes, and not necessarily atomically with
    /// them: values that mean nothing until the atomic writes land (see [`Batch::put_ahead`]).
    ahead: Vec<Entry>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Store `value` under `key`.
    pub fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push((tree, key.into(), Some(value.into())));
    }

    /// Encode `value` as JSON and store it under `key`.
    pub fn put_json<T: Serialize>(
        &mut self,
        tree: Tree,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put(tree, key, encode(value)?);
        Ok(())
    }

    /// Store `value` under `key` ahead of the batch's atomic writes, which a crash may then
    /// not follow: only for a value that is harmless alone, and which a retry writes again.
    /// Either nothing refers to it until the atomic writes land (a step's trace entry, keyed
    /// by a step number the session has not reached until its own write lands), or its
    /// readers take it alone for what it may be (a task's open-task entry: the task may be
    /// on its way, so a reader drops the entry only on a check that the task is still not
    /// there). Backends may leave it out of what they do to make the rest atomic (the sled
    /// journal does), which saves writing large values twice.
    pub fn put_ahead_json<T: Serialize>(
        &mut self,
        tree: Tree,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put_ahead(tree, key, encode(value)?);
        Ok(())
    }

    /// As [`Batch::put_ahead_json`], for a value already in bytes.
    pub fn put_ahead(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ahead.push((tree, key.into(), Some(value.into())));
    }

    /// Remove `key`.
    pub fn delete(&mut self, tree: Tree, key: impl Into<Vec<u8>>) {
        self.writes.push((tree, key.into(), None));
    }

    /// The batch commits only if `key` holds exactly `value` (`None`: is absent).
    pub fn expect(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: Option<&[u8]>) {
        self.checks
            .push((tree, key.into(), value.map(<[u8]>::to_vec)));
    }

    /// Appends another batch's checks and writes (its writes after this one's).
    pub fn extend(&mut self, other: Batch) {
        self.checks.extend(other.checks);
        self.writes.extend(other.writes);
        self.ahead.extend(other.ahead);
    }

    /// Whether it neither checks nor writes anything.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty() && self.writes.is_empty() && self.ahead.is_empty()
    }

    /// The writes made ahead of the atomic ones, for backends.
    pub fn ahead(&self) -> &[Entry] {
        &self.ahead
    }

    /// The checks, for backends.
    pub fn checks(&self) -> &[Entry] {
        &self.checks
    }

    /// The writes, for backends.
    pub fn writes(&self) -> &[Entry] {
        &self.writes
    }
}

/// A bounded ordered scan: at most `limit` pairs whose keys start with `prefix`, in key order
/// (or reversed), resuming strictly past `after` when given (a cursor: the last key of the
/// previous page).
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    prefix: &'a [u8],
    after: Option<&'a [u8]>,
    limit: usize,
    reverse: bool,
}

impl<'a> Scan<'a> {
    /// The first `limit` keys starting with `prefix`.
    pub fn prefix(prefix: &'a [u8], limit: usize) -> Scan<'a> {
        Scan {
            prefix,
            after: None,
            limit,
            reverse: false,
        }
    }

    /// Resume past `key` (exclusive), in the scan's direction.
    pub fn after(mut self, key: &'a [u8]) -> Scan<'a> {
        self.after = Some(key);
        self
    }

    /// Largest keys first.
    pub fn reversed(mut self) -> Scan<'a> {
        self.reverse = true;
        self
    }

    /// The page size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the scan runs from the largest key down.
    pub fn is_reversed(&self) -> bool {
        self.reverse
    }

    /// The key range to read, or `None` when it is empty.
    pub fn bounds(&self) -> Option<KeyRange> {
        let mut lower = Bound::Included(self.prefix.to_vec());
        let mut upper = match prefix_end(self.prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        if let Some(after) = self.after {
            if self.reverse {
                if below(after, &upper) {
                    upper = Bound::Excluded(after.to_vec());
                }
            } else if after >= self.prefix {
                lower = Bound::Excluded(after.to_vec());
            }
        }
        let empty = match (&lower, &upper) {
            (_, Bound::Unbounded) => false,
            (Bound::Included(l), Bound::Excluded(u)) => l >= u,
            (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        };
        (!empty && self.limit > 0).then_some((lower, upper))
    }
}

/// Whether `key` lies below the upper bound `upper`.
fn below(key: &[u8], upper: &Bound<Vec<u8>>) -> bool {
    match upper {
        Bound::Unbounded => true,
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Included(u) => key <= u.as_slice(),
    }
}

/// The smallest key greater than every key starting with `prefix`; `None` when there is none
/// (an empty prefix, or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// What the rest of Switchboard needs from storage.
pub trait Store: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies every write of `batch` at once when every check holds; otherwise writes
    /// nothing and answers [`StoreError::Conflict`]. Durable after the next [`Store::flush`].
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    /// One page of a bounded ordered scan.
    fn scan(&self, tree: Tree, scan: &Scan<'_>) -> Result<Vec<Pair>, StoreError>;
    /// Make everything committed so far durable. Called before anything is acknowledged.
    fn flush(&self) -> Result<(), StoreError>;
    /// A number never handed out before by this store, greater than any it handed out
    /// before (across restarts too): orders news and other appended records.
    fn next_id(&self) -> Result<u64, StoreError>;
    /// The values under `keys`, in their order (`None` where absent). A backend over the
    /// network reads them in one round trip.
    fn get_many(&self, tree: Tree, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(tree, key)).collect()
    }
}

/// Conveniences over any [`Store`]: single writes, JSON values, whole small trees.
pub trait StoreExt: Store {
    /// Store `value` under `key` (a batch of one).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(tree, key, value);
        self.commit(&batch)
    }

    /// Remove `key` (a batch of one).
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.delete(tree, key);
        self.commit(&batch)
    }

    /// Every pair whose key starts with `prefix`, in key order. Only for trees whose size an
    /// admin decides (flows, queues, agents, settings, tokens): anything that grows with
    /// traffic is read with a bounded [`Scan`].
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.scan(tree, &Scan::prefix(prefix, usize::MAX))
    }

    /// The last pair whose key starts with `prefix`.
    fn last_with_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Option<Pair>, StoreError> {
        Ok(self
            .scan(tree, &Scan::prefix(prefix, 1).reversed())?
            .into_iter()
            .next())
    }

    /// The decoded value under `key`.
    fn get_json<T: DeserializeOwned>(
        &self,
        tree: Tree,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(tree, key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(tree, key.as_bytes(), &bytes).map(Some),
        }
    }

    /// Encode and store `value` under `key`.
    fn put_json<T: Serialize>(&self, tree: Tree, key: &str, value: &T) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_json(tree, key, value)?;
        self.commit(&batch)
    }

    /// Every decoded value whose key starts with `prefix` (see [`StoreExt::scan_prefix`]).
    fn scan_json<T: DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.scan_prefix(tree, prefix.as_bytes())?
            .into_iter()
            .map(|(k, v)| decode(tree, &k, &v))
            .collect()
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Encodes a value to store as JSON.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Decodes a stored JSON value, naming its key when it does not decode.
pub fn decode<T: DeserializeOwned>(tree: Tree, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(tree, key, e))
}

/// Whether any key is written twice. Small batches are compared pairwise, without
/// allocating; large ones (start-up index builds) through a set.
pub(crate) fn repeats_a_key(writes: &[Entry]) -> bool {
    if writes.len() <= 16 {
        return writes.iter().enumerate().any(|(i, (tree, key, _))| {
            writes[i + 1..]
                .iter()
                .any(|(t, k, _)| t == tree && k == key)
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    !writes
        .iter()
        .all(|(tree, key, _)| seen.insert((*tree, key.as_slice())))
}

/// The writes with one per key: each key where it was first written, with its last value
/// (readers that do not take the commit lock see keys appear in the batch's order).
pub(crate) fn last_write_per_key(writes: &[Entry]) -> Vec<Entry> {
    let mut position: std::collections::HashMap<(Tree, &[u8]), usize> =
        std::collections::HashMap::with_capacity(writes.len());
    let mut kept: Vec<Entry> = Vec::with_capacity(writes.len());
    for write in writes {
        match position.entry((write.0, write.1.as_slice())) {
            std::collections::hash_map::Entry::Occupied(at) => kept[*at.get()].2 = write.2.clone(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(kept.len());
                kept.push(write.clone());
            }
        }
    }
    kept
}
