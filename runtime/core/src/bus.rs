//! Messages between the nodes of a cluster: what one node's connections must tell sockets
//! held by another (a chat visitor's message for an agent whose desk is elsewhere, an
//! agent's answer for a widget connected to another node, typing).
//!
//! A node posts a message ([`Bus::tell_others`], never blocking its caller); a sender thread
//! appends what waits to the shared log in one write and wakes the other nodes
//! (PostgreSQL: rows of `sb_events`, then one `NOTIFY` sent after the commit, never inside a
//! hot transaction). Each node's reader follows the log from where it started, woken by the
//! notification and every 250 ms regardless (a lost notification delays, never loses), and
//! hands the other nodes' messages to its subscribers ([`Bus::from_others`]). A sequence
//! number a slower writer has not committed yet is waited for up to [`GAP_WAIT`] before it is
//! passed over, so a message committed late is not skipped.
//!
//! The log is a relay, not the truth: what a message says is kept elsewhere (a transcript, a
//! task) and a socket that missed it reads that again when it reconnects. Messages older than
//! [`KEEP`] are deleted. On one node (sled) nothing crosses: [`Bus::local`].
//!
//! Owns the sender and reader threads and the reader's cursor; never interprets a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// How long a gap in the log's sequence is waited for before the reader passes it over (a
/// writer that took a number and has not committed yet; or one that rolled back).
pub const GAP_WAIT: Duration = Duration::from_secs(2);
/// How often the reader looks at the log without being woken.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long messages stay in the log.
pub const KEEP: Duration = Duration::from_secs(600);
/// How many messages the reader takes at a time.
const PAGE: usize = 500;
/// How long a message waits to be posted while the store is unreachable before it is
/// dropped (what it says is kept elsewhere; a socket that reconnects reads it there).
const POST_FOR: Duration = Duration::from_secs(30);
/// How many messages may wait to be posted; more are dropped (and said in the log) rather
/// than held in memory while the store is unreachable.
const OUTBOX: usize = 10_000;

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Made when it is told: a post tried again (its first answer was lost) is kept once.
    pub id: String,
    /// What it is about, for example `chat.visitor`.
    pub topic: String,
    /// What it says.
    pub body: serde_json::Value,
}

/// One message in the shared log.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    /// Its place in the log (increasing; gaps are possible).
    pub seq: i64,
    /// The node that posted it.
    pub node: String,
    /// The message.
    pub message: Message,
}

/// The shared log a backend keeps (PostgreSQL: the `sb_events` table).
pub trait Relay: Send + Sync {
    /// Appends `messages` from `node` in one write, then wakes the readers. A message whose
    /// id is in the log already is not appended again.
    fn post(&self, node: &str, messages: &[Message]) -> Result<(), StoreError>;
    /// The messages after `seq`, oldest first, at most `limit`.
    fn after(&self, seq: i64, limit: usize) -> Result<Vec<Posted>, StoreError>;
    /// The last sequence number posted (0 when none).
    fn head(&self) -> Result<i64, StoreError>;
    /// Deletes messages older than `age`.
    fn prune(&self, age: Duration) -> Result<(), StoreError>;
    /// Calls `wake` whenever another node may have posted (best effort: the reader polls
    /// anyway).
    fn on_post(&self, wake: Box<dyn Fn() + Send + Sync>);
}

/// This node's end of the bus.
pub struct Bus {
    outbox: Option<std::sync::mpsc::SyncSender<(Instant, Message)>>,
    inbound: tokio::sync::broadcast::Sender<Message>,
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<()>>,
}

impl Bus {
    /// A bus on which nothing crosses: one node.
    pub fn local() -> Bus {
        Bus {
            outbox: None,
            inbound: tokio::sync::broadcast::channel(1).0,
            stop: Arc::new(AtomicBool::new(false)),
            sender: None,
        }
    }

    /// The bus of node `node` on a shared log; starts its sender and reader threads, which
    /// stop when the bus is dropped. Reads from the log's current end.
    pub fn shared(node: String, relay: Arc<dyn Relay>) -> Result<Bus, StoreError> {
        let head = relay.head()?;
        let (outbox, waiting) = std::sync::mpsc::sync_channel::<(Instant, Message)>(OUTBOX);
        let inbound = tokio::sync::broadcast::channel(4096).0;
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (relay, node, stop) = (relay.clone(), node.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bus-send".into())
                .spawn(move || send(&*relay, &node, &waiting, &stop))
                .map_err(|e| StoreError::Backend(format!("cannot start the bus: {e}")))?
        };
        {
            let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
            relay.on_post(Box::new(move || {
                let _ = wake.try_send(());
            }));
            let (inbound, stop) = (inbound.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bus-read".into())
                .spawn(move || read(&*relay, &node, head, &woken, &inbound, &stop))
                .map_err(|e| StoreError::Backend(format!("cannot start the bus: {e}")))?;
        }
        Ok(Bus {
            outbox: Some(outbox),
            inbound,
            stop,
            sender: Some(sender),
        })
    }

    /// Tells the other nodes `body` about `topic`; returns at once. Nothing happens on one
    /// node (`body` is not even made).
    pub fn tell_others(&self, topic: &str, body: impl FnOnce() -> serde_json::Value) {
        if let Some(outbox) = &self.outbox {
            let message = Message {
                id: uuid::Uuid::new_v4().simple().to_string(),
                topic: topic.to_string(),
                body: body(),
            };
            if let Err(std::sync::mpsc::TrySendError::Full(_)) =
                outbox.try_send((Instant::now(), message))
            {
                tracing::warn!(
                    topic,
                    "a message for the other nodes was dropped: {OUTBOX} wait already (is the store reachable?)"
                );
            }
        }
    }

    /// What the other nodes tell, as it comes.
    pub fn from_others(&self) -> tokio::sync::broadcast::Receiver<Message> {
        self.inbound.subscribe()
    }

    /// Hands what the other nodes tell to `handle`, from a thread of its own named `name`,
    /// until `handle` answers `false` or the bus is dropped. Nothing on one node.
    pub fn follow(&self, name: &str, handle: impl FnMut(Message) -> bool + Send + 'static) {
        self.follow_from(self.from_others(), name, handle);
    }

    /// The same from a subscription taken earlier ([`Bus::from_others`]): what it holds is
    /// handed on first.
    pub fn follow_from(
        &self,
        mut others: tokio::sync::broadcast::Receiver<Message>,
        name: &str,
        mut handle: impl FnMut(Message) -> bool + Send + 'static,
    ) {
        if !self.is_shared() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                loop {
                    match others.blocking_recv() {
                        Ok(message) => {
                            if !handle(message) {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "messages from the other nodes were missed (sockets read the conversation again when they reconnect)");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
    }

    /// Whether messages cross to other nodes.
    pub fn is_shared(&self) -> bool {
        self.outbox.is_some()
    }
}

/// How long a bus being dropped (the node stopping) gives its sender to post what waits.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

impl Drop for Bus {
    /// Stops the reader; the sender posts what was told before (a line an agent wrote just
    /// before the node stopped still reaches the other nodes), for at most [`CLOSE_WITHIN`].
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.outbox = None;
        if let Some(sender) = self.sender.take() {
            let deadline = Instant::now() + CLOSE_WITHIN;
            while !sender.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !sender.is_finished() {
                tracing::warn!(
                    "messages for the other nodes were still waiting when this node stopped (is the store reachable?)"
                );
            }
        }
    }
}

/// The sender: posts what waits, all of it in one write, until the bus is dropped and what
/// was told before is posted. Once the bus is dropped (`stop`), a post that fails is not
/// tried again.
fn send(
    relay: &dyn Relay,
    node: &str,
    waiting: &std::sync::mpsc::Receiver<(Instant, Message)>,
    stop: &AtomicBool,
) {
    loop {
        let first = match waiting.recv() {
            Ok(m) => m,
            Err(std::sync::mpsc::RecvError) => return,
        };
        let mut messages = vec![first];
        while messages.len() < PAGE {
            match waiting.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(100);
        loop {
            // Each message waits at most POST_FOR from when it was told, not per try: after
            // an outage, stale typing and lines are not delivered late.
            let before = messages.len();
            messages.retain(|(told, _)| told.elapsed() < POST_FOR);
            if messages.len() < before {
                tracing::error!(
                    dropped = before - messages.len(),
                    "messages for the other nodes waited too long and were dropped (their sockets read the conversation again when they reconnect)"
                );
            }
            if messages.is_empty() {
                break;
            }
            let batch: Vec<Message> = messages.iter().map(|(_, m)| m.clone()).collect();
            match relay.post(node, &batch) {
                Ok(()) => break,
                Err(e) if stop.load(Ordering::SeqCst) => {
                    tracing::warn!(error = %e, dropped = batch.len(), "this node is stopping and cannot post its last messages for the other nodes (their sockets read the conversation again when they reconnect)");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot post messages for the other nodes; trying again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// The reader: follows the log, hands other nodes' messages on.
fn read(
    relay: &dyn Relay,
    node: &str,
    head: i64,
    woken: &std::sync::mpsc::Receiver<()>,
    inbound: &tokio::sync::broadcast::Sender<Message>,
    stop: &AtomicBool,
) {
    let mut cursor = Cursor::at(head);
    let mut pruned = Instant::now();
    // Test-only: messages are handed on 2 s late, as a slow reader would.
    let late = std::env::var("SWITCHBOARD_FAILPOINT").is_ok_and(|f| f == "bus-late");
    if late {
        tracing::warn!(
            "SWITCHBOARD_FAILPOINT=bus-late: messages from the other nodes are handed on 2 s late (a test setting; unset it)"
        );
    }
    while !stop.load(Ordering::SeqCst) {
        let _ = woken.recv_timeout(POLL_EVERY);
        loop {
            let page = match relay.after(cursor.seq, PAGE) {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the other nodes' messages; will try again");
                    break;
                }
            };
            let full = page.len() == PAGE;
            let before = cursor.seq;
            if late && !page.is_empty() {
                std::thread::sleep(Duration::from_secs(2));
            }
            for posted in cursor.take(page, Instant::now()) {
                if posted.node != node {
                    // Nobody listening is fine.
                    let _ = inbound.send(posted.message);
                }
            }
            if !full || cursor.seq == before {
                break;
            }
        }
        if pruned.elapsed() > Duration::from_secs(60) {
            pruned = Instant::now();
            if let Err(e) = relay.prune(KEEP) {
                tracing::warn!(error = %e, "cannot delete old messages between nodes; will try again");
            }
        }
    }
}

/// Where a reader is in the log, and the gap it is waiting on.
#[derive(Debug)]
struct Cursor {
    seq: i64,
    /// Since when the message after `seq` has been missing while later ones were there.
    gap_since: Option<Instant>,
}

impl Cursor {
    fn at(seq: i64) -> Cursor {
        Cursor {
            seq,
            gap_since: None,
        }
    }

    /// The messages of `page` (read after `self.seq`, in order) that can be handed on now,
    /// in order: up to the first gap, or past it once it has been waited for long enough.
    fn take(&mut self, page: Vec<Posted>, now: Instant) -> Vec<Posted> {
        let mut out = Vec::new();
        for posted in page {
            if posted.seq != self.seq + 1 {
                let since = *self.gap_since.get_or_insert(now);
                if now.duration_since(since) < GAP_WAIT {
                    break;
                }
            }
            self.gap_since = None;
            self.seq = posted.seq;
            out.push(posted);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn posted(seq: i64) -> Posted {
        Posted {
            seq,
            node: "a".into(),
            message: Message {
                id: seq.to_string(),
                topic: "t".into(),
                body: serde_json::json!(seq),
            },
        }
    }

    fn seqs(page: &[Posted]) -> Vec<i64> {
        page.iter().map(|p| p.seq).collect()
    }

    #[test]
    fn a_reader_waits_at_a_gap_then_takes_the_late_message_in_order() {
        let t0 = Instant::now();
        let mut cursor = Cursor::at(10);
        assert_eq!(seqs(&cursor.take(vec![posted(11), posted(13)], t0)), [11]);
        // 12 is still missing a second later: 13 waits.
        let t1 = t0 + Duration::from_secs(1);
        assert!(cursor.take(vec![posted(13)], t1).is_empty());
        // 12 commits: both go, in order.
        assert_eq!(
            seqs(&cursor.take(vec![posted(12), posted(13)], t1)),
            [12, 13]
        );
        assert_eq!(cursor.seq, 13);
        assert!(cursor.gap_since.is_none());
    }

    #[test]
    fn a_gap_that_never_fills_is_passed_over_after_the_wait() {
        let t0 = Instant::now();
        let mut cursor = Cursor::at(0);
        assert!(cursor.take(vec![posted(2), posted(3)], t0).is_empty());
        let later = t0 + GAP_WAIT + Duration::from_millis(1);
        assert_eq!(
            seqs(&cursor.take(vec![posted(2), posted(3)], later)),
            [2, 3]
        );
        // A new gap is waited for afresh.
        assert!(cursor.take(vec![posted(5)], later).is_empty());
    }

    /// A log in memory, as a backend keeps it.
    #[derive(Default)]
    struct Log {
        rows: Mutex<Vec<Posted>>,
        wake: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    }

    impl Relay for Log {
        fn post(&self, node: &str, messages: &[Message]) -> Result<(), StoreError> {
            {
                let mut rows = self.rows.lock().unwrap();
                for m in messages {
                    if rows.iter().any(|r| r.message.id == m.id) {
                        continue;
                    }
                    let seq = rows.len() as i64 + 1;
                    rows.push(Posted {
                        seq,
                        node: node.into(),
                        message: m.clone(),
                    });
                }
            }
            for wake in self.wake.lock().unwrap().iter() {
                wake();
            }
            Ok(())
        }
        fn after(&self, seq: i64, limit: usize) -> Result<Vec<Posted>, StoreError> {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.seq > seq)
                .take(limit)
                .cloned()
                .collect())
        }
        fn head(&self) -> Result<i64, StoreError> {
            Ok(self.rows.lock().unwrap().len() as i64)
        }
        fn prune(&self, _age: Duration) -> Result<(), StoreError> {
            Ok(())
        }
        fn on_post(&self, wake: Box<dyn Fn() + Send + Sync>) {
            self.wake.lock().unwrap().push(wake);
        }
    }

    #[test]
    fn each_node_hears_the_others_messages_in_order_and_never_its_own() {
        let log: Arc<dyn Relay> = Arc::new(Log::default());
        // Posted before the nodes started: not theirs to hear.
        log.post(
            "old",
            &[Message {
                id: "m0".into(),
                topic: "t".into(),
                body: serde_json::json!("before"),
            }],
        )
        .unwrap();
        let a = Bus::shared("a".into(), log.clone()).unwrap();
        let b = Bus::shared("b".into(), log.clone()).unwrap();
        let (mut at_a, mut at_b) = (a.from_others(), b.from_others());
        for i in 0..100 {
            a.tell_others("t", || serde_json::json!(i));
        }
        b.tell_others("t", || serde_json::json!("from b"));
        let next = |rx: &mut tokio::sync::broadcast::Receiver<Message>| {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match rx.try_recv() {
                    Ok(m) => return m.body,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("no message: {e}"),
                }
            }
        };
        for i in 0..100 {
            assert_eq!(next(&mut at_b), serde_json::json!(i));
        }
        assert_eq!(next(&mut at_a), serde_json::json!("from b"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(at_a.try_recv().is_err(), "a hears none of its own");
        assert!(at_b.try_recv().is_err(), "b hears its own not at all");
    }

    #[test]
    fn what_was_told_before_a_node_stops_is_posted() {
        let log = Arc::new(Log::default());
        let bus = Bus::shared("a".into(), log.clone()).unwrap();
        for i in 0..50 {
            bus.tell_others("t", || serde_json::json!(i));
        }
        drop(bus);
        let bodies: Vec<_> = log
            .rows
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.message.body.clone())
            .collect();
        assert_eq!(
            bodies,
            (0..50).map(|i| serde_json::json!(i)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn nothing_crosses_on_one_node() {
        let bus = Bus::local();
        let mut rx = bus.from_others();
        bus.tell_others("t", || serde_json::json!(1));
        assert!(!bus.is_shared());
        assert!(rx.try_recv().is_err());
    }
}
