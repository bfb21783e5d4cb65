//! A node on PostgreSQL: it rides out a database crash under load without losing anything it
//! acknowledged; a second node on its database joins it as a cluster, and a leader stopped
//! gracefully hands the router over at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::store::local_postgres::LocalPostgres;

use crate::support::{Server, ivr_server};

#[test]
fn a_database_crash_under_load_loses_nothing_acknowledged() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(ivr_server(
        dir.path(),
        &["--store", &address, "--queue", "sales"],
    ));
    // Contact id -> the steps the server acknowledged for it.
    let acknowledged: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let (server, acknowledged, refused, stop) = (
                server.clone(),
                acknowledged.clone(),
                refused.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let (status, report) = server.call(
                        "POST",
                        "/v1/contacts",
                        Some(json!({"channel": "voice", "from": format!("+1555{t}{n:06}"), "to": "+15550100", "flow": "ivr-menu"})),
                    );
                    if status != 201 {
                        refused.lock().unwrap().push(format!("{status} {report}"));
                        continue;
                    }
                    let id = report["contact"].as_str().unwrap().to_string();
                    let (status, report) = server.call(
                        "POST",
                        &format!("/v1/contacts/{id}/events"),
                        Some(json!({"type": "input", "digits": "1"})),
                    );
                    let steps = if status == 200 { 2 } else {
                        refused.lock().unwrap().push(format!("{status} {report}"));
                        1
                    };
                    acknowledged.lock().unwrap().push((id, steps));
                }
            })
        })
        .collect();

    let count = || acknowledged.lock().unwrap().len();
    // The load runs before the crash: some contacts acknowledged, then a moment more.
    let started = Instant::now();
    while count() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the load did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before_crash = count();
    assert!(before_crash > 0, "the load runs before the crash");
    pg.stop_immediately().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    pg.start_again().unwrap();
    let restarted = Instant::now();
    let at_restart = count();
    // The node reconnects by itself: contacts are acknowledged again.
    while count() < at_restart + 20 {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no contact acknowledged within 30 s of the database's restart (refused: {:?})",
            refused.lock().unwrap().iter().take(3).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for caller in callers {
        caller.join().unwrap();
    }

    // Every acknowledged step is there, with its task for those who pressed 1.
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "{} contacts acknowledged ({before_crash} before the crash, {at_restart} when the database was back), {} requests refused",
        acknowledged.len(),
        refused.lock().unwrap().len()
    );
    let mut queued = 0u64;
    for (id, steps) in &acknowledged {
        let (status, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
        assert_eq!(status, 200, "acknowledged contact {id} is gone: {session}");
        assert!(
            session["steps"].as_u64().unwrap() >= *steps,
            "contact {id}: {steps} steps acknowledged, {} kept",
            session["steps"]
        );
        if *steps == 2 {
            assert_eq!(session["status"]["state"], "queued", "{session}");
        }
        if session["status"]["state"] == "queued" {
            queued += 1;
        }
    }
    // A step that waited for the database past its deadline took the fallback (to the
    // fallback queue): count waiting tasks over every queue.
    let (_, stats) = server.call("GET", "/v1/stats", None);
    let waiting: u64 = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["tasks"]["pending"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        waiting, queued,
        "one waiting task per queued contact: {stats}"
    );
    // What the database refused while it was down was said clearly, as JSON errors.
    for refusal in refused.lock().unwrap().iter() {
        assert!(refusal.starts_with('5'), "{refusal}");
        assert!(refusal.contains("\"error\""), "{refusal}");
    }

    // A restart of the node finds the deploy and every contact.
    drop(Arc::into_inner(server).unwrap());
    let server = Server::start(dir.path(), &["--store", &address]);
    let (status, _) = server.call("GET", "/v1/flows/ivr-menu/versions/1", None);
    assert_eq!(status, 200);
    let (id, _) = acknowledged.last().unwrap();
    let (status, _) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(status, 200);
}

#[test]
fn a_second_node_on_the_same_database_joins_and_a_stopped_leader_hands_over() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let first_dir = tempfile::tempdir().unwrap();
    let first = Server::start(first_dir.path(), &["--store", &address]);
    // The admin token lives in the database; the second node's CLI finds it in its directory.
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::write(second_dir.path().join("admin.token"), &first.token).unwrap();
    let second = Server::start(second_dir.path(), &["--store", &address]);
    let view = |server: &Server| server.call("GET", "/v1/cluster", None).1;
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let (a, b) = (view(&first), view(&second));
        if a["nodes"].as_array().map(Vec::len) == Some(2)
            && b["nodes"].as_array().map(Vec::len) == Some(2)
            && a["leader"].is_string()
            && a["leader"] == b["leader"]
        {
            break a["leader"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not form one cluster: {a} {b}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (first_id, second_id) = (
        view(&first)["node"].as_str().unwrap().to_string(),
        view(&second)["node"].as_str().unwrap().to_string(),
    );
    assert_ne!(first_id, second_id);
    // The leader is stopped the graceful way: it hands the lease over as it leaves, so the
    // other node leads well before the lease (5 s from its last renewal) would have run out.
    let (leaving, staying) = if leader == first_id {
        (first, second)
    } else {
        (second, first)
    };
    leaving.terminate();
    assert!(leaving.exit_status(Duration::from_secs(20)).success());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = view(&staying);
        if v["leader"] == v["node"] && v["nodes"].as_array().map(Vec::len) == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped leader did not hand over: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
