//! The store conformance suite: what every backend must do, run against each of them. A new
//! backend is added to `backends!` below and must pass every case unchanged.

use std::sync::Arc;

use super::{Batch, Scan, Store, StoreError, StoreExt, Tree};

/// One test per case per backend.
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $case() { super::$case(std::sync::Arc::new(crate::store::MemoryStore::new())) } )*
        }
        mod sled {
            $( #[test] fn $case() { super::$case(std::sync::Arc::new(crate::store::SledStore::temporary().unwrap())) } )*
        }
        mod postgres {
            $( #[test] fn $case() { super::on_postgres(super::$case) } )*
        }
    };
}

backends!(
    a_batch_lands_whole_across_trees,
    a_failed_check_changes_nothing,
    checks_see_deletes_and_absent_keys,
    many_checks_of_one_value_hold_only_together,
    a_refused_batch_names_the_check_that_failed,
    scans_are_ordered_bounded_and_resumable,
    scans_respect_prefix_edges,
    concurrent_compare_and_swap_loses_no_update,
    ids_only_grow,
    many_keys_are_read_in_their_order,
);

/// Runs a case against a PostgreSQL server of its own.
fn on_postgres(case: fn(Arc<dyn Store>)) {
    let pg = super::local_postgres::LocalPostgres::start().unwrap();
    let store = super::PostgresStore::connect(&pg.address(), &Default::default()).unwrap();
    case(Arc::new(store));
}

fn many_keys_are_read_in_their_order(store: Arc<dyn Store>) {
    let mut batch = Batch::new();
    for i in 0..50u32 {
        batch.put(Tree::Tasks, format!("t{i:03}"), vec![i as u8]);
    }
    batch.put(Tree::Sessions, "t001", b"other tree".to_vec());
    store.commit(&batch).unwrap();
    // Out of order, with absent keys, a repeat, and a key of another tree.
    let keys: Vec<Vec<u8>> = ["t049", "nope", "t001", "t000", "t049", "t050"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    assert_eq!(
        store.get_many(Tree::Tasks, &keys).unwrap(),
        vec![
            Some(vec![49]),
            None,
            Some(vec![1]),
            Some(vec![0]),
            Some(vec![49]),
            None
        ]
    );
    assert!(store.get_many(Tree::Tasks, &[]).unwrap().is_empty());
}

fn get(store: &dyn Store, tree: Tree, key: &str) -> Option<String> {
    store
        .get(tree, key.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn a_batch_lands_whole_across_trees(store: Arc<dyn Store>) {
    store.put(Tree::Kv, b"old", b"x").unwrap();
    let mut batch = Batch::new();
    batch.put(Tree::Sessions, "c1", "session");
    batch.put(Tree::Traces, "c1/000001", "step");
    batch.put(Tree::Kv, "k", "1");
    batch.put(Tree::Kv, "k", "2");
    batch.delete(Tree::Kv, "old");
    batch
        .put_ahead_json(Tree::Traces, "c1/000002", &"ahead")
        .unwrap();
    store.commit(&batch).unwrap();
    assert_eq!(
        get(&*store, Tree::Traces, "c1/000002").as_deref(),
        Some("\"ahead\"")
    );
    assert_eq!(
        get(&*store, Tree::Sessions, "c1").as_deref(),
        Some("session")
    );
    assert_eq!(
        get(&*store, Tree::Traces, "c1/000001").as_deref(),
        Some("step")
    );
    assert_eq!(
        get(&*store, Tree::Kv, "k").as_deref(),
        Some("2"),
        "writes apply in order"
    );
    assert_eq!(get(&*store, Tree::Kv, "old"), None);
    store.commit(&Batch::new()).unwrap();
}

fn a_failed_check_changes_nothing(store: Arc<dyn Store>) {
    store.put(Tree::Sessions, b"c1", b"v1").unwrap();
    let mut batch = Batch::new();
    batch.expect(Tree::Sessions, "c1", Some(b"v0"));
    batch.put(Tree::Sessions, "c1", "v2");
    batch.put(Tree::Traces, "c1/000002", "step");
    batch
        .put_ahead_json(Tree::Traces, "c1/000003", &"ahead")
        .unwrap();
    batch.delete(Tree::Kv, "anything");
    let err = store.commit(&batch).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("sessions/c1"), "{err}");
    assert_eq!(get(&*store, Tree::Sessions, "c1").as_deref(), Some("v1"));
    assert_eq!(get(&*store, Tree::Traces, "c1/000002"), None);
    assert_eq!(
        get(&*store, Tree::Traces, "c1/000003"),
        None,
        "nothing is written ahead of a batch whose checks fail"
    );

    // The same batch with the right expectation lands.
    let mut batch = Batch::new();
    batch.expect(Tree::Sessions, "c1", Some(b"v1"));
    batch.put(Tree::Sessions, "c1", "v2");
    batch.put(Tree::Traces, "c1/000002", "step");
    store.commit(&batch).unwrap();
    assert_eq!(get(&*store, Tree::Sessions, "c1").as_deref(), Some("v2"));
    // ...once: replaying it conflicts, since the value moved on.
    assert!(matches!(
        store.commit(&batch),
        Err(StoreError::Conflict { .. })
    ));
}

/// Many checks of one tree expecting the same value (a backend may send them as one): the
/// batch lands only when every one holds, whichever fails; repeated checks are fine.
fn many_checks_of_one_value_hold_only_together(store: Arc<dyn Store>) {
    let ids: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
    for id in &ids {
        store.put(Tree::OpenTasks, id.as_bytes(), b"").unwrap();
    }
    let offer_all = |tag: &str| {
        let mut batch = Batch::new();
        for id in ids.iter().chain(&ids[..3]) {
            batch.expect(Tree::OpenTasks, id.as_str(), Some(b""));
            batch.put(Tree::Tasks, id.as_str(), tag);
        }
        batch.expect(Tree::Inbox, "c1/1", None);
        batch.expect(Tree::Inbox, "c1/2", None);
        batch
    };
    store.commit(&offer_all("offered")).unwrap();
    assert_eq!(get(&*store, Tree::Tasks, "t49").as_deref(), Some("offered"));

    // One of them finished meanwhile (its entry gone), then one with another value.
    store.delete(Tree::OpenTasks, b"t31").unwrap();
    let err = store.commit(&offer_all("again")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(get(&*store, Tree::Tasks, "t00").as_deref(), Some("offered"));
    store.put(Tree::OpenTasks, b"t31", b"x").unwrap();
    let err = store.commit(&offer_all("again")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    store.put(Tree::OpenTasks, b"t31", b"").unwrap();

    // An expected absence that no longer holds fails the batch too.
    store.put(Tree::Inbox, b"c1/2", b"news").unwrap();
    let err = store.commit(&offer_all("again")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(get(&*store, Tree::Tasks, "t10").as_deref(), Some("offered"));
    store.delete(Tree::Inbox, b"c1/2").unwrap();
    store.commit(&offer_all("again")).unwrap();
    assert_eq!(get(&*store, Tree::Tasks, "t10").as_deref(), Some("again"));
}

/// A batch with checks on several trees: the conflict names the tree and key whose check
/// failed (a router change retries on its own checks, and hands a step's back to the step).
fn a_refused_batch_names_the_check_that_failed(store: Arc<dyn Store>) {
    store.put(Tree::Sessions, b"c1", b"step 3").unwrap();
    store.put(Tree::Meta, b"router", b"7").unwrap();
    store.put(Tree::OpenTasks, b"t1", b"").unwrap();
    let change = |session: &str, counter: &str| {
        let mut batch = Batch::new();
        batch.expect(Tree::Sessions, "c1", Some(session.as_bytes()));
        batch.expect(Tree::Meta, "router", Some(counter.as_bytes()));
        batch.expect(Tree::OpenTasks, "t1", Some(b""));
        batch.put(Tree::Sessions, "c1", "step 4");
        batch.put(Tree::Meta, "router", "8");
        batch.delete(Tree::OpenTasks, "t1");
        batch
    };
    let named = |err: StoreError| match err {
        StoreError::Conflict { tree, key } => (tree, key),
        other => panic!("a conflict, not {other}"),
    };
    let err = store.commit(&change("step 3", "6")).unwrap_err();
    assert_eq!(named(err), ("meta", "router".to_string()));
    let err = store.commit(&change("step 2", "7")).unwrap_err();
    assert_eq!(named(err), ("sessions", "c1".to_string()));
    store.delete(Tree::OpenTasks, b"t1").unwrap();
    let err = store.commit(&change("step 3", "7")).unwrap_err();
    assert_eq!(named(err), ("open_tasks", "t1".to_string()));
    assert_eq!(
        get(&*store, Tree::Sessions, "c1").as_deref(),
        Some("step 3")
    );
    assert_eq!(get(&*store, Tree::Meta, "router").as_deref(), Some("7"));
    store.put(Tree::OpenTasks, b"t1", b"").unwrap();
    store.commit(&change("step 3", "7")).unwrap();
    assert_eq!(
        get(&*store, Tree::Sessions, "c1").as_deref(),
        Some("step 4")
    );
    assert_eq!(get(&*store, Tree::OpenTasks, "t1"), None);
}

fn checks_see_deletes_and_absent_keys(store: Arc<dyn Store>) {
    let mut create = Batch::new();
    create.expect(Tree::Inbox, "c1/1", None);
    create.put(Tree::Inbox, "c1/1", "news");
    store.commit(&create).unwrap();
    assert!(
        matches!(store.commit(&create), Err(StoreError::Conflict { .. })),
        "a create-if-absent runs once"
    );
    let mut consume = Batch::new();
    consume.expect(Tree::Inbox, "c1/1", Some(b"news"));
    consume.delete(Tree::Inbox, "c1/1");
    consume.put(Tree::Sessions, "c1", "heard it");
    store.commit(&consume).unwrap();
    assert!(
        matches!(store.commit(&consume), Err(StoreError::Conflict { .. })),
        "consumed news cannot be consumed again"
    );
    assert_eq!(get(&*store, Tree::Inbox, "c1/1"), None);
}

fn scans_are_ordered_bounded_and_resumable(store: Arc<dyn Store>) {
    let mut batch = Batch::new();
    // Written out of order, with neighbours on both sides of the prefix.
    for i in (0..100u32).rev() {
        batch.put(Tree::Traces, format!("c1/{i:06}"), i.to_string());
    }
    batch.put(Tree::Traces, "c0/000001", "before");
    batch.put(Tree::Traces, "c2/000001", "after");
    store.commit(&batch).unwrap();

    let first = store.scan(Tree::Traces, &Scan::prefix(b"c1/", 10)).unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].0, b"c1/000000");
    assert_eq!(first[9].0, b"c1/000009");

    // Paging with a cursor visits every key exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let mut scan = Scan::prefix(b"c1/", 7);
        if let Some(c) = &cursor {
            scan = scan.after(c);
        }
        let page = store.scan(Tree::Traces, &scan).unwrap();
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        seen.extend(page.into_iter().map(|(_, v)| v));
    }
    let expected: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(seen, expected);

    // Reversed, newest first, and paged the same way.
    let last = store
        .scan(Tree::Traces, &Scan::prefix(b"c1/", 3).reversed())
        .unwrap();
    let keys: Vec<&[u8]> = last.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [&b"c1/000099"[..], b"c1/000098", b"c1/000097"]);
    let next = store
        .scan(
            Tree::Traces,
            &Scan::prefix(b"c1/", 2).reversed().after(b"c1/000097"),
        )
        .unwrap();
    assert_eq!(next[0].0, b"c1/000096");
    assert_eq!(
        store
            .last_with_prefix(Tree::Traces, b"c1/")
            .unwrap()
            .unwrap()
            .0,
        b"c1/000099"
    );
    assert!(
        store
            .scan(Tree::Traces, &Scan::prefix(b"c1/", 0))
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan(Tree::Traces, &Scan::prefix(b"c9/", 5))
            .unwrap()
            .is_empty()
    );
}

fn scans_respect_prefix_edges(store: Arc<dyn Store>) {
    let mut batch = Batch::new();
    for key in [
        &b"a"[..],
        b"a\xff",
        b"a\xff\xff",
        b"b",
        b"\xff",
        b"\xff\xff",
    ] {
        batch.put(Tree::Kv, key, key);
    }
    store.commit(&batch).unwrap();
    let keys = |scan: Scan<'_>| -> Vec<Vec<u8>> {
        store
            .scan(Tree::Kv, &scan)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        keys(Scan::prefix(b"a\xff", 10)),
        [&b"a\xff"[..], b"a\xff\xff"]
    );
    assert_eq!(keys(Scan::prefix(b"\xff", 10)), [&b"\xff"[..], b"\xff\xff"]);
    assert_eq!(keys(Scan::prefix(b"", 10)).len(), 6);
    assert_eq!(
        keys(Scan::prefix(b"", 2).reversed()),
        [&b"\xff\xff"[..], b"\xff"]
    );
    // A cursor outside the prefix does not widen the scan.
    assert_eq!(keys(Scan::prefix(b"b", 10).after(b"a")), [b"b".to_vec()]);
    assert!(keys(Scan::prefix(b"a", 10).after(b"b")).is_empty());
}

fn concurrent_compare_and_swap_loses_no_update(store: Arc<dyn Store>) {
    const THREADS: usize = 4;
    const EACH: usize = 100;
    store.put(Tree::Meta, b"counter", b"0").unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for i in 0..EACH {
                    loop {
                        let now = store.get(Tree::Meta, b"counter").unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&now).unwrap().parse().unwrap();
                        let mut batch = Batch::new();
                        batch.expect(Tree::Meta, "counter", Some(&now));
                        batch.put(Tree::Meta, "counter", (n + 1).to_string());
                        batch.put(Tree::Audit, format!("{t}/{i:04}"), (n + 1).to_string());
                        match store.commit(&batch) {
                            Ok(()) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let total = (THREADS * EACH) as u64;
    assert_eq!(get(&*store, Tree::Meta, "counter"), Some(total.to_string()));
    let mut values: Vec<u64> = store
        .scan_prefix(Tree::Audit, b"")
        .unwrap()
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).unwrap().parse().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(values, (1..=total).collect::<Vec<_>>(), "each value once");
}

fn ids_only_grow(store: Arc<dyn Store>) {
    let mut last = store.next_id().unwrap();
    for _ in 0..1000 {
        let id = store.next_id().unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
    }
}

/// The sled backend on disk: what was flushed survives reopening, and ids keep growing.
#[test]
fn sled_keeps_flushed_batches_and_ids_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = super::SledStore::open(dir.path()).unwrap();
        let mut batch = Batch::new();
        batch.put(Tree::Flows, "ivr", "{\"live\":2}");
        batch.put(Tree::Versions, "ivr/0000000002", "{}");
        store.commit(&batch).unwrap();
        store.flush().unwrap();
        store.next_id().unwrap()
    };
    let store = reopen(dir.path());
    assert_eq!(
        get(&store, Tree::Flows, "ivr").as_deref(),
        Some("{\"live\":2}")
    );
    assert!(store.next_id().unwrap() > id);
}

/// PostgreSQL: what was committed survives the server's crash (`pg_ctl stop -m immediate`)
/// and a new connection; ids keep growing.
#[test]
fn postgres_keeps_committed_batches_and_ids_across_a_crash() {
    let pg = super::local_postgres::LocalPostgres::start().unwrap();
    let id = {
        let store = super::PostgresStore::connect(&pg.address(), &Default::default()).unwrap();
        let mut batch = Batch::new();
        batch.put(Tree::Flows, "ivr", "{\"live\":2}");
        batch.put(Tree::Versions, "ivr/0000000002", "{}");
        store.commit(&batch).unwrap();
        store.next_id().unwrap()
    };
    pg.stop_immediately().unwrap();
    pg.start_again().unwrap();
    let store = super::PostgresStore::connect(&pg.address(), &Default::default()).unwrap();
    assert_eq!(
        get(&store, Tree::Flows, "ivr").as_deref(),
        Some("{\"live\":2}")
    );
    assert!(store.next_id().unwrap() > id);
}

/// Opens the store in `dir` again in this process (`SledStore::open` waits for sled's
/// background writes to let go of the lock).
fn reopen(dir: &std::path::Path) -> super::SledStore {
    super::SledStore::open(dir).expect("the store reopens")
}

const CHILD: &str = "SWITCHBOARD_CONFORMANCE_CHILD_DIR";

/// A process SIGKILLed while committing step-shaped batches (session, trace and kv in three
/// trees, guarded by the session's step count) leaves each batch whole or absent: after
/// reopening, the three trees agree.
#[test]
fn a_commit_cut_by_sigkill_lands_whole_or_not_at_all() {
    if let Ok(dir) = std::env::var(CHILD) {
        commit_steps_forever(std::path::Path::new(&dir));
    }
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::conformance::a_commit_cut_by_sigkill_lands_whole_or_not_at_all",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it commit a while: a few thousand steps, with flushes among them.
        let started = std::time::Instant::now();
        while !dir.path().join("started").exists() {
            assert!(started.elapsed().as_secs() < 30, "the child did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(150 + 100 * round));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = reopen(dir.path());
        let session = get(&store, Tree::Sessions, "c1").expect("flushed steps survive");
        let steps: u32 = session.parse().unwrap();
        assert!(
            steps >= 20,
            "the child flushed at least 20 steps before it was killed"
        );
        let last_trace = store
            .last_with_prefix(Tree::Traces, b"c1/")
            .unwrap()
            .unwrap();
        assert_eq!(
            last_trace.0,
            super::keys::trace("c1", steps).into_bytes(),
            "the trace ends at the session's step"
        );
        assert_eq!(
            get(&store, Tree::Kv, "c1").as_deref(),
            Some(session.as_str()),
            "the kv write landed with its step"
        );
    }
}

fn commit_steps_forever(dir: &std::path::Path) -> ! {
    let store = super::SledStore::open(dir).unwrap();
    let mut steps = 0u32;
    loop {
        let before = (steps > 0).then(|| steps.to_string());
        steps += 1;
        let mut batch = Batch::new();
        batch.expect(Tree::Sessions, "c1", before.as_deref().map(str::as_bytes));
        batch.put(Tree::Sessions, "c1", steps.to_string());
        batch.put(
            Tree::Traces,
            super::keys::trace("c1", steps),
            vec![b'x'; 512],
        );
        batch.put(Tree::Kv, "c1", steps.to_string());
        store.commit(&batch).unwrap();
        if steps.is_multiple_of(10) {
            store.flush().unwrap();
        }
        if steps == 20 {
            std::fs::write(dir.join("started"), b"").unwrap();
        }
    }
}
