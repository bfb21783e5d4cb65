//! Several nodes on one shared store (PostgreSQL). Each node keeps a heartbeat record
//! ([`keys::node`]), renewed every second; a node whose record is older than
//! [`NODE_TTL_MS`] is lost. One node, elected by a lease row ([`keys::ROUTER_LEASE`], renewed
//! every second, held [`LEASE_MS`]), is the leader: it runs the router's clock (offers that
//! time out, plans that escalate, tasks that give up), hears news nobody else will, and ends
//! the calls of lost nodes. Taking the lease writes a new fencing epoch
//! ([`keys::ROUTER_EPOCH`]); the leader's writes check it, so a leader that lost its lease
//! without knowing (paused, cut off) has every such write refused.
//!
//! Lease and heartbeat expiry are judged by the nodes' wall clocks: keep them in sync (NTP).
//!
//! Owns the heartbeat and lease records only; never decides anything about contacts or tasks:
//! the node acts on what it reports ([`Membership::fence`], [`Membership::lost`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Batch, Pair, Scan, Store, StoreError, Tree, keys};

/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL_MS: u64 = 5_000;
/// How long the router lease holds without renewal.
pub const LEASE_MS: u64 = 5_000;
/// How often heartbeats and the lease are renewed.
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// A node's heartbeat record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeRecord {
    /// The node's id, kept in its data directory (`node.id`).
    pub node: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process.
    pub pid: u32,
    /// Its data directory.
    pub data_dir: String,
    /// When it joined (ms since the epoch).
    pub started_ms: u64,
    /// Alive until (ms since the epoch), unless renewed.
    pub until_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
struct Lease {
    holder: String,
    epoch: u64,
    until_ms: u64,
}

/// Written when a node takes the lease; changes only then.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
struct Epoch {
    holder: String,
    epoch: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// This node's id: made once, kept in its data directory.
pub fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
            std::fs::write(&path, &id).map_err(|e| {
                anyhow::anyhow!("cannot write this node's id to {}: {e}", path.display())
            })?;
            Ok(id)
        }
    }
}

/// What the heartbeat thread last learned.
#[derive(Default)]
struct View {
    /// The lease as this node last wrote it, while it holds it.
    lease: Option<Vec<u8>>,
    /// The epoch record written when this node took the lease (what its writes check).
    fence: Option<Vec<u8>>,
    /// When the lease was last renewed by this node (ms), to step down in time when the
    /// store cannot be reached.
    renewed_ms: u64,
    /// Nodes alive at the last look.
    live: Vec<NodeRecord>,
    /// Nodes whose heartbeat ran out, with their records as stored.
    lost: Vec<(String, Vec<u8>)>,
    /// The lease's holder at the last look, while its lease held.
    leader: Option<String>,
    /// This node's heartbeat record as it last wrote it: the next beat writes only over it,
    /// so a node the cluster let go of (record deleted) knows it.
    written: Option<Vec<u8>>,
    /// How many times the cluster let this node go (it was unreachable past its TTL, its
    /// calls were ended) and it came back.
    let_go: u64,
}

/// This node's membership of the cluster: its heartbeat, and the lease when it holds it.
pub struct Membership {
    store: Arc<dyn Store>,
    me: NodeRecord,
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    /// Heartbeats skipped while set, as if the process were stopped (tests).
    #[cfg(test)]
    paused: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// Joins the cluster on `store` as the node of `data_dir`: writes its heartbeat, tries for
    /// the lease once, then keeps both up from a thread of its own until dropped.
    pub fn join(store: Arc<dyn Store>, data_dir: &std::path::Path) -> anyhow::Result<Membership> {
        let me = NodeRecord {
            node: node_id(data_dir)?,
            host: host(),
            pid: std::process::id(),
            data_dir: data_dir
                .canonicalize()
                .unwrap_or_else(|_| data_dir.to_path_buf())
                .display()
                .to_string(),
            started_ms: now_ms(),
            until_ms: 0,
        };
        refuse_a_twin(&*store, &me)?;
        let view = Arc::new(Mutex::new(View::default()));
        beat(&*store, &me, &view).map_err(|e| {
            anyhow::anyhow!("cannot join the cluster (write this node's heartbeat): {e}")
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let beat = {
            let (store, me, view, stop, paused) = (
                store.clone(),
                me.clone(),
                view.clone(),
                stop.clone(),
                paused.clone(),
            );
            std::thread::Builder::new()
                .name("cluster-heartbeat".into())
                .spawn(move || {
                    let mut last = std::time::Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                        if last.elapsed() < BEAT_EVERY || paused.load(Ordering::SeqCst) {
                            continue;
                        }
                        last = std::time::Instant::now();
                        if let Err(e) = beat(&*store, &me, &view) {
                            tracing::warn!(error = %e, "cannot renew this node's heartbeat; will try again");
                        }
                    }
                })?
        };
        tracing::info!(node = %me.node, "joined the cluster");
        Ok(Membership {
            store,
            me,
            view,
            stop,
            #[cfg(test)]
            paused,
            beat: Some(beat),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.me.node
    }

    /// The fencing epoch record when this node leads (what its leader writes must check),
    /// `None` when another node does. A leader that could not renew its lease for longer
    /// than the lease steps down here, before another node may take over.
    pub fn fence(&self) -> Option<Vec<u8>> {
        let view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = now_ms() < view.renewed_ms + LEASE_MS - 1_000;
        view.fence.clone().filter(|_| fresh)
    }

    /// The node that held the router lease at the last look (`None` while nobody does).
    pub fn leader(&self) -> Option<String> {
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leader
            .clone()
    }

    /// Whether `node` is alive (had a heartbeat in the last [`NODE_TTL_MS`]).
    pub fn is_live(&self, node: &str) -> bool {
        node == self.me.node
            || self
                .view
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .live
                .iter()
                .any(|n| n.node == node)
    }

    /// Whether `node` still holds its contacts: alive at the last look, or not seen yet but
    /// with a fresh heartbeat in the store (it joined since). A lost node, or one let go
    /// (no record), holds nothing.
    pub fn holds(&self, node: &str) -> bool {
        if self.is_live(node) {
            return true;
        }
        if self
            .view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lost
            .iter()
            .any(|(n, _)| n == node)
        {
            return false;
        }
        match self.store.get(Tree::Meta, keys::node(node).as_bytes()) {
            Ok(Some(bytes)) => {
                serde_json::from_slice::<NodeRecord>(&bytes).is_ok_and(|r| r.until_ms > now_ms())
            }
            Ok(None) => false,
            // Cannot tell: leave it to its node rather than risk hearing news twice.
            Err(_) => true,
        }
    }

    /// The nodes alive at the last look, this one included.
    pub fn live(&self) -> Vec<NodeRecord> {
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .clone()
    }

    /// The ids of the nodes alive now, as the store says (not as of the last look: a node
    /// that joined a moment ago is among them).
    pub fn live_now(&self) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let mut live = Vec::new();
        for (_, bytes) in self
            .store
            .scan(Tree::Meta, &Scan::prefix(keys::NODES.as_bytes(), 1024))?
        {
            if let Ok(node) = serde_json::from_slice::<NodeRecord>(&bytes)
                && (node.until_ms > now || node.node == self.me.node)
            {
                live.push(node.node);
            }
        }
        Ok(live)
    }

    /// How many times the cluster let this node go while it was unreachable (and ended its
    /// calls); it counts up when this node comes back.
    pub fn times_let_go(&self) -> u64 {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).let_go
    }

    /// Nodes whose heartbeat ran out and that nobody has let go of yet.
    pub fn lost(&self) -> Vec<String> {
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lost
            .iter()
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// Lets go of a lost node, before its contacts are ended: its record becomes a tombstone
    /// (`until_ms` 0) unless it came back meanwhile. Returns the tombstone (key and bytes),
    /// which every write ending the node's contacts must find unchanged
    /// ([`crate::sessions::Sessions::end_lost`]):
    /// - a node that comes back finds the tombstone instead of its record, so it knows it was
    ///   let go and hangs up what was ended before its return;
    /// - writes after its return find its new record and are refused, so it keeps the calls
    ///   it still holds.
    ///
    /// `None` when the node came back.
    pub fn let_go(&self, node: &str) -> Result<Option<Pair>, StoreError> {
        let key = keys::node(node).into_bytes();
        let record = {
            let view = self.view.lock().unwrap_or_else(|p| p.into_inner());
            view.lost
                .iter()
                .find(|(n, _)| n == node)
                .map(|(_, r)| r.clone())
        };
        let Some(record) = record else {
            return Ok(None);
        };
        let Ok(lost) = serde_json::from_slice::<NodeRecord>(&record) else {
            return Ok(None);
        };
        if is_tombstone(&lost) {
            return Ok(Some((key, record)));
        }
        let tombstone = crate::store::encode(&NodeRecord {
            until_ms: 0,
            ..lost
        })?;
        let mut batch = Batch::new();
        batch.expect(Tree::Meta, key.clone(), Some(&record));
        batch.put(Tree::Meta, key.clone(), tombstone.clone());
        match self.store.commit(&batch) {
            Ok(()) => Ok(Some((key, tombstone))),
            // Back, or let go by another leader a moment ago: as the store says now.
            Err(StoreError::Conflict { .. }) => Ok(self
                .store
                .get(Tree::Meta, &key)?
                .filter(|now| {
                    serde_json::from_slice::<NodeRecord>(now).is_ok_and(|r| is_tombstone(&r))
                })
                .map(|now| (key, now))),
            Err(e) => Err(e),
        }
    }

    /// Deletes a let-go node's tombstone once its contacts are ended (only if it did not
    /// come back meanwhile).
    pub fn forget(&self, node: &str, tombstone: &Pair) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.expect(Tree::Meta, tombstone.0.clone(), Some(&tombstone.1));
        batch.delete(Tree::Meta, tombstone.0.clone());
        match self.store.commit(&batch) {
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lost
            .retain(|(n, _)| n != node);
        Ok(())
    }

    /// Stops or starts renewing again, as SIGSTOP and SIGCONT would (tests).
    #[cfg(test)]
    fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// Stops renewing without letting go, as a crash would (tests).
    #[cfg(test)]
    fn abandon(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
        std::mem::forget(self);
    }
}

/// A node record the leader wrote when it let the node go (its contacts are being ended).
fn is_tombstone(record: &NodeRecord) -> bool {
    record.until_ms == 0
}

/// Refuses to join as a node id a live node elsewhere uses: two nodes started from copies of
/// one data directory would both think they lead. The same node restarting (same machine and
/// data directory, which its lock keeps to one process) takes its id back at once.
fn refuse_a_twin(store: &dyn Store, me: &NodeRecord) -> anyhow::Result<()> {
    let Some(bytes) = store
        .get(Tree::Meta, keys::node(&me.node).as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot read the cluster's nodes: {e}"))?
    else {
        return Ok(());
    };
    let Ok(other) = serde_json::from_slice::<NodeRecord>(&bytes) else {
        return Ok(());
    };
    if other.until_ms > now_ms() && (other.host != me.host || other.data_dir != me.data_dir) {
        anyhow::bail!(
            "node id {} is already in use by a live node on {} (pid {}, data directory {}): this data directory was copied from it; delete {}/node.id here so this node makes an id of its own",
            me.node,
            other.host,
            other.pid,
            other.data_dir,
            me.data_dir
        );
    }
    Ok(())
}

/// One heartbeat: renews this node's record, looks at the others, and takes or renews the
/// lease.
fn beat(store: &dyn Store, me: &NodeRecord, view: &Mutex<View>) -> Result<(), StoreError> {
    let now = now_ms();
    let record = NodeRecord {
        until_ms: now + NODE_TTL_MS,
        ..me.clone()
    };
    let written = view
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .written
        .clone();
    let mut batch = Batch::new();
    if let Some(written) = &written {
        batch.expect(Tree::Meta, keys::node(&me.node), Some(written));
    }
    batch.put_json(Tree::Meta, keys::node(&me.node), &record)?;
    match store.commit(&batch) {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            // Not what this node last wrote: let go of by the cluster (deleted), or a write
            // whose answer was lost. Written again either way.
            let gone = store
                .get(Tree::Meta, keys::node(&me.node).as_bytes())?
                .is_none_or(|now| {
                    serde_json::from_slice::<NodeRecord>(&now).is_ok_and(|r| is_tombstone(&r))
                });
            let mut batch = Batch::new();
            batch.put_json(Tree::Meta, keys::node(&me.node), &record)?;
            store.commit(&batch)?;
            if gone {
                tracing::error!(
                    node = %me.node,
                    "this node was unreachable past its heartbeat and the cluster let it go: its calls were ended (node-lost); it hangs them up and carries on"
                );
                view.lock().unwrap_or_else(|p| p.into_inner()).let_go += 1;
            }
        }
        Err(e) => return Err(e),
    }
    view.lock().unwrap_or_else(|p| p.into_inner()).written = Some(crate::store::encode(&record)?);
    let mut live = Vec::new();
    let mut lost = Vec::new();
    for (_, bytes) in store.scan(Tree::Meta, &Scan::prefix(keys::NODES.as_bytes(), 1024))? {
        let Ok(other) = serde_json::from_slice::<NodeRecord>(&bytes) else {
            continue;
        };
        if other.node == me.node {
            live.push(record.clone());
        } else if other.until_ms > now {
            live.push(other);
        } else {
            lost.push((other.node, bytes));
        }
    }
    {
        let mut view = view.lock().unwrap_or_else(|p| p.into_inner());
        view.live = live;
        view.lost = lost;
    }
    let stored = store.get(Tree::Meta, keys::ROUTER_LEASE.as_bytes())?;
    let current: Option<Lease> = stored
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    // Ours, also when a renewal landed though its answer was lost, or when this node held it
    // before a restart (its data directory, hence its id, is this process's alone).
    let ours = current.as_ref().is_some_and(|l| l.holder == me.node);
    let free = current.as_ref().is_none_or(|l| l.until_ms <= now);
    if !ours && !free {
        // Another node leads.
        let mut view = view.lock().unwrap_or_else(|p| p.into_inner());
        view.leader = current.map(|l| l.holder);
        if view.fence.take().is_some() {
            tracing::warn!("this node lost the router lease");
        }
        view.lease = None;
        return Ok(());
    }
    let epoch = match (&current, ours) {
        (Some(lease), true) => lease.epoch,
        // A takeover: past every epoch so far, also when the last leader let go (deleting
        // the lease) and only the epoch record remembers it.
        _ => {
            let last = store
                .get(Tree::Meta, keys::ROUTER_EPOCH.as_bytes())?
                .and_then(|b| serde_json::from_slice::<Epoch>(&b).ok())
                .map_or(0, |e| e.epoch);
            last.max(current.as_ref().map_or(0, |l| l.epoch)) + 1
        }
    };
    let lease = Lease {
        holder: me.node.clone(),
        epoch,
        until_ms: now + LEASE_MS,
    };
    let lease_bytes = serde_json::to_vec(&lease).expect("a lease encodes");
    let mut batch = Batch::new();
    batch.expect(Tree::Meta, keys::ROUTER_LEASE, stored.as_deref());
    batch.put(Tree::Meta, keys::ROUTER_LEASE, lease_bytes.clone());
    let fence = serde_json::to_vec(&Epoch {
        holder: me.node.clone(),
        epoch,
    })
    .expect("an epoch encodes");
    if !ours {
        batch.put(Tree::Meta, keys::ROUTER_EPOCH, fence.clone());
    }
    match store.commit(&batch) {
        Ok(()) => {
            let mut view = view.lock().unwrap_or_else(|p| p.into_inner());
            if !ours {
                tracing::info!(node = %me.node, epoch, "this node took the router lease");
            }
            view.lease = Some(lease_bytes);
            view.fence = Some(fence);
            view.renewed_ms = now;
            view.leader = Some(me.node.clone());
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => {
            // Another node took it first.
            let mut view = view.lock().unwrap_or_else(|p| p.into_inner());
            view.lease = None;
            view.fence = None;
            view.leader = None;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
        // Let go at once: the others need not wait for the records to run out.
        let view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Batch::new();
        if let Some(lease) = &view.lease {
            batch.expect(Tree::Meta, keys::ROUTER_LEASE, Some(lease));
            batch.delete(Tree::Meta, keys::ROUTER_LEASE);
        }
        batch.delete(Tree::Meta, keys::node(&self.me.node));
        let _ = self.store.commit(&batch);
        let _ = self.store.flush();
        tracing::info!(node = %self.me.node, "left the cluster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn one_node_leads_and_another_takes_over_when_its_lease_runs_out() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = Membership::join(store.clone(), a.path()).unwrap();
        let second = Membership::join(store.clone(), b.path()).unwrap();
        let fence = first.fence().expect("the first node leads");
        assert!(second.fence().is_none(), "one leader at a time");
        assert!(second.is_live(first.node()));
        // The first node sees the second at its next heartbeat.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !first.is_live(second.node()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the second node is not seen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let first_node = first.node().to_string();
        first.abandon();
        // The lease and the heartbeat run out; the second node takes over with a new epoch.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let taken = loop {
            if let Some(f) = second.fence() {
                break f;
            }
            assert!(std::time::Instant::now() < deadline, "no takeover");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_ne!(taken, fence, "a takeover writes a new epoch");
        assert_eq!(
            store
                .get(Tree::Meta, keys::ROUTER_EPOCH.as_bytes())
                .unwrap(),
            Some(taken)
        );
        // Its heartbeat stopped too: lost, then let go.
        while !second.lost().contains(&first_node) {
            assert!(std::time::Instant::now() < deadline, "not seen lost");
            std::thread::sleep(Duration::from_millis(100));
        }
        let tombstone = second.let_go(&first_node).unwrap().expect("let go");
        assert!(!second.holds(&first_node));
        second.forget(&first_node, &tombstone).unwrap();
        assert!(!second.is_live(&first_node));
        assert!(
            store
                .get(Tree::Meta, keys::node(&first_node).as_bytes())
                .unwrap()
                .is_none()
        );
    }

    /// The leader lets a lost node go, and the node comes back before its calls are all
    /// ended: it learns it was let go (so it hangs up what was ended), and the writes ending
    /// the rest are refused.
    #[test]
    fn a_node_back_while_it_is_being_let_go_knows_it_and_the_rest_is_refused() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let paused = Membership::join(store.clone(), a.path()).unwrap();
        let leader = Membership::join(store.clone(), b.path()).unwrap();
        let node = paused.node().to_string();
        paused.pause(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !leader.lost().contains(&node) {
            assert!(std::time::Instant::now() < deadline, "not seen lost");
            std::thread::sleep(Duration::from_millis(100));
        }
        let tombstone = leader.let_go(&node).unwrap().expect("let go");
        // A write ending one of its calls lands.
        let mut ending = Batch::new();
        ending.expect(Tree::Meta, tombstone.0.clone(), Some(&tombstone.1));
        ending.put(Tree::Sessions, b"c1".to_vec(), b"ended".to_vec());
        store.commit(&ending).unwrap();
        // Then it comes back.
        paused.pause(false);
        while paused.times_let_go() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the node does not learn it was let go"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut ending = Batch::new();
        ending.expect(Tree::Meta, tombstone.0.clone(), Some(&tombstone.1));
        ending.put(Tree::Sessions, b"c2".to_vec(), b"ended".to_vec());
        assert!(matches!(
            store.commit(&ending),
            Err(StoreError::Conflict { .. })
        ));
        // Deleting the tombstone leaves its new record alone: it is live again.
        leader.forget(&node, &tombstone).unwrap();
        assert!(leader.live_now().unwrap().contains(&node));
        assert!(leader.holds(&node));
    }

    #[test]
    fn a_copied_data_directory_is_refused_while_its_twin_lives() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = Membership::join(store.clone(), a.path()).unwrap();
        std::fs::copy(a.path().join("node.id"), b.path().join("node.id")).unwrap();
        let refused = Membership::join(store.clone(), b.path())
            .err()
            .unwrap()
            .to_string();
        assert!(refused.contains("already in use"), "{refused}");
        assert!(refused.contains("node.id"), "{refused}");
        // The same directory joins again at once after its node stopped.
        let id = first.node().to_string();
        first.abandon();
        let again = Membership::join(store.clone(), a.path()).unwrap();
        assert_eq!(again.node(), id);
    }

    #[test]
    fn a_node_that_stops_cleanly_hands_the_lease_over_at_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = Membership::join(store.clone(), a.path()).unwrap();
        let second = Membership::join(store.clone(), b.path()).unwrap();
        assert!(first.fence().is_some());
        drop(first);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while second.fence().is_none() {
            assert!(std::time::Instant::now() < deadline, "no handover");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(second.live().len(), 1);
        // The epoch still moved on: a fence is never issued twice.
        let epoch: Epoch = serde_json::from_slice(&second.fence().unwrap()).unwrap();
        assert_eq!(epoch.epoch, 2);
    }
}
