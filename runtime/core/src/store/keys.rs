//! Every key format, in one place. Keys that are scanned in order carry zero-padded numbers,
//! so byte order is numeric order; names in keys (flows, queues) cannot contain the
//! separators (the API refuses such names), and contact ids are UUIDs.

/// `flow/version`: one immutable version of a flow ([`super::Tree::Versions`],
/// [`super::Tree::Health`]).
pub fn version(flow: &str, version: u64) -> String {
    format!("{flow}/{version:010}")
}

/// The prefix of every version of `flow`.
pub fn versions_of(flow: &str) -> String {
    format!("{flow}/")
}

/// The version number of a [`version`] key.
pub fn version_number(key: &[u8]) -> u64 {
    key.rsplit(|b| *b == b'/')
        .next()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `contact/step`: one recorded step ([`super::Tree::Traces`]).
pub fn trace(contact: &str, step: u32) -> String {
    format!("{contact}/{step:06}")
}

/// The prefix of a contact's steps, or of its news.
pub fn of_contact(contact: &str) -> String {
    format!("{contact}/")
}

/// `contact/seq`: news for a contact, in the order it happened ([`super::Tree::Inbox`]).
pub fn inbox(contact: &str, seq: u64) -> String {
    format!("{contact}/{seq:020}")
}

/// `contact/seq`: a message of a contact's conversation with an agent, in the order it was
/// said ([`super::Tree::Transcripts`]).
pub fn transcript(contact: &str, seq: u64) -> String {
    format!("{contact}/{seq:020}")
}

/// The contact an [`inbox`] key belongs to.
pub fn inbox_contact(key: &[u8]) -> Option<&str> {
    let slash = key.iter().rposition(|b| *b == b'/')?;
    std::str::from_utf8(&key[..slash]).ok()
}

/// `started_us/contact`: contacts in the order they started ([`super::Tree::ContactsByStart`]).
pub fn contact_start(started_us: i64, contact: &str) -> String {
    format!("{:020}/{contact}", started_us.max(0))
}

/// `flow\0key`: a flow's durable value ([`super::Tree::Kv`]).
pub fn kv(flow: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(flow.len() + 1 + key.len());
    k.extend_from_slice(flow.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `agent/ended_ms/task`: a task `agent` handled, ended at `ended_ms`
/// ([`super::Tree::AgentHistory`]).
pub fn agent_history(agent: &str, ended_ms: u64, task: &str) -> String {
    format!("{agent}/{ended_ms:013}/{task}")
}

/// The prefix of an agent's [`agent_history`].
pub fn agent_history_of(agent: &str) -> String {
    format!("{agent}/")
}

/// `queue/at_ms/task`: a task answered or abandoned at `at_ms`, for the statistics window
/// ([`super::Tree::QueueEvents`]).
pub fn queue_event(queue: &str, at_ms: u64, task: &str) -> String {
    format!("{queue}/{at_ms:013}/{task}")
}

/// The queue and time of a [`queue_event`] key, read from the right (a task id holds no
/// `/`, a queue's name may).
pub fn queue_event_parts(key: &[u8]) -> Option<(&str, u64)> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.rsplitn(3, '/');
    let (_task, at, queue) = (parts.next()?, parts.next()?, parts.next()?);
    Some((queue, at.parse().ok()?))
}

/// The time of a [`queue_event`] key (0 when it is not one).
pub fn queue_event_time(key: &[u8]) -> u64 {
    queue_event_parts(key).map_or(0, |(_, at)| at)
}

/// A cursor just before the first [`queue_event`] of `queue` at or after `since_ms`.
pub fn queue_events_since(queue: &str, since_ms: u64) -> String {
    format!("{queue}/{since_ms:013}")
}

/// The prefix of a queue's events.
pub fn queue_events_of(queue: &str) -> String {
    format!("{queue}/")
}

/// Where the store's schema version is kept ([`super::Tree::Meta`]).
pub const SCHEMA: &str = "schema";

/// A node's heartbeat record ([`super::Tree::Meta`]).
pub fn node(id: &str) -> String {
    format!("{NODES}{id}")
}

/// The prefix of every node's heartbeat record.
pub const NODES: &str = "node/";

/// The router lease: which node runs the router's clock, until when ([`super::Tree::Meta`]).
pub const ROUTER_LEASE: &str = "router-lease";

/// The router leader's fencing epoch: changes only when another node takes the lease, and
/// every change the leader makes as leader checks it ([`super::Tree::Meta`]).
pub const ROUTER_EPOCH: &str = "router-epoch";

/// The router's change counter: every router change on a shared store checks and bumps it, so
/// a node acting on a stale picture is refused and reads the state back
/// ([`super::Tree::Meta`]).
pub const ROUTER_VERSION: &str = "router-version";

/// `created_ms/task`: a finished task, by when it arrived ([`super::Tree::TaskLog`]).
pub fn task_log(created_ms: u64, task: &str) -> String {
    format!("{created_ms:013}/{task}")
}

/// Where the [`task_log`] of tasks arrived at `ms` or later begins (a scan cursor: every
/// key of those tasks sorts after it, every earlier one before).
pub fn task_log_since(ms: u64) -> String {
    format!("{ms:013}")
}

/// `agent/at_ms`: an agent took an activity then ([`super::Tree::AgentStates`]).
pub fn agent_state(agent: &str, at_ms: u64) -> String {
    format!("{agent}/{at_ms:013}")
}

/// The prefix of an agent's [`agent_state`] entries.
pub fn agent_states_of(agent: &str) -> String {
    format!("{agent}/")
}

/// The time of an [`agent_state`] key (0 when it is not one).
pub fn agent_state_time(key: &[u8]) -> u64 {
    std::str::from_utf8(key)
        .ok()
        .and_then(|key| key.rsplit('/').next())
        .and_then(|at| at.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_keys_sort_numerically() {
        assert!(version("ivr", 9) < version("ivr", 10));
        assert!(inbox("c", 99) < inbox("c", 100));
        assert!(contact_start(999, "z") < contact_start(1000, "a"));
        assert!(queue_event("q", 999, "z") < queue_event("q", 1000, "a"));
        assert_eq!(
            queue_event_time(queue_event("q", 1000, "tk_1").as_bytes()),
            1000
        );
        assert_eq!(
            queue_event_parts(queue_event("sales/fr", 1000, "tk_1").as_bytes()),
            Some(("sales/fr", 1000))
        );
        assert_eq!(agent_state_time(agent_state("ann", 1000).as_bytes()), 1000);
        assert_eq!(version_number(version("ivr", 42).as_bytes()), 42);
        assert_eq!(inbox_contact(inbox("c-1", 7).as_bytes()), Some("c-1"));
    }
}
