//! What a crash must not lose: the news a flow is owed about its task, the queue statistics,
//! an open offer with its remaining time, and which agent has waited longest.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ALWAYS_OPEN, Server, agent, guest};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reservation(server: &Server, token: &str) -> Value {
    let (status, me) = server.call_as(Some(token), "GET", "/agent/v1/me", None);
    assert_eq!(status, 200, "{me}");
    me["reservation"].clone()
}

fn outcomes(server: &Server, contact: &str, status: &str) -> usize {
    let (_, trace) = server.call("GET", &format!("/v1/contacts/{contact}/trace"), None);
    trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["event"]["type"] == "task-outcome" && s["event"]["status"] == status)
        .count()
}

/// The server dies after the agent's accept was acknowledged and before the flow heard of it
/// (the test-only failpoint holds the news back): after the restart the flow hears
/// `assigned` once, and only once.
#[test]
fn the_flow_hears_assigned_exactly_once_across_a_sigkill_after_the_accept() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = format!("ivr-menu={}", guest("ivr-menu").display());
    let mut args = vec!["--deploy", deploy.as_str(), "--queue", "sales"];
    args.extend(ALWAYS_OPEN);
    let server =
        Server::start_with_env(dir.path(), &args, &[("SWITCHBOARD_FAILPOINT", "hold-news")]);
    let sara = agent(&server, "sara", json!({}), json!({"voice": 1}));
    let contact = server.start_contact("ivr-menu", "+15551230004");
    let id = contact["contact"].as_str().unwrap().to_string();
    assert_eq!(server.press(&id, "1")["status"]["state"], "queued");
    let offer = reservation(&server, &sara);
    let (status, accepted) = server.call_as(
        Some(&sara),
        "POST",
        &format!(
            "/agent/v1/reservations/{}/accept",
            offer["id"].as_str().unwrap()
        ),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "assigned");
    let (_, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(
        session["status"]["state"], "queued",
        "the news is held back: the flow has not heard yet"
    );
    server.kill();

    let server = Server::start(dir.path(), &[]);
    wait_until("the flow to hear `assigned`", || {
        outcomes(&server, &id, "assigned") > 0
    });
    // A few dispatcher passes later it still heard it once.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(outcomes(&server, &id, "assigned"), 1);
    let (_, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(session["status"]["state"], "with-agent", "{session}");
    assert_eq!(session["status"]["agent"], "sara");
    let (_, task) = server.call(
        "GET",
        &format!("/v1/tasks/{}", accepted["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(task["status"], "assigned", "{task}");
}

/// A restart keeps the queue's service level and answered/abandoned counts, the open offer
/// with its deadline, and the agents' idle order.
#[test]
fn a_restart_keeps_statistics_offers_and_the_idle_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, _) = server.call(
        "PUT",
        "/v1/queues/q",
        Some(json!({"sla_secs": 30, "reservation_timeout_secs": 300})),
    );
    assert_eq!(status, 200);
    let mut tokens = Vec::new();
    for name in ["ann", "bob", "cat"] {
        tokens.push(agent(&server, name, json!({}), json!({"voice": 1})));
        // Distinct idle times, in this order.
        std::thread::sleep(Duration::from_millis(20));
    }
    let new_task = |server: &Server| -> Value {
        let (status, task) = server.call(
            "POST",
            "/v1/tasks",
            Some(json!({"queue": "q", "channel": "voice"})),
        );
        assert_eq!(status, 201, "{task}");
        task
    };

    // Ann, idle longest, answers and completes the first task: she becomes the most recent.
    let first = new_task(&server);
    assert_eq!(first["agent"], "ann");
    let r = first["reservation"].as_str().unwrap();
    let (status, _) = server.call_as(
        Some(&tokens[0]),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    let (status, _) = server.call_as(
        Some(&tokens[0]),
        "POST",
        &format!("/agent/v1/tasks/{}/complete", first["id"].as_str().unwrap()),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    // The second is offered to Bob and abandoned before he answers.
    let second = new_task(&server);
    assert_eq!(second["agent"], "bob");
    let (status, _) = server.call(
        "POST",
        &format!("/v1/tasks/{}/cancel", second["id"].as_str().unwrap()),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(20));
    // The third is offered to Cat, who has not answered when the server dies.
    let third = new_task(&server);
    assert_eq!(third["agent"], "cat");
    let offer = reservation(&server, &tokens[2]);
    let (_, before) = server.call("GET", "/v1/queues/q/stats", None);
    assert_eq!(before["tasks"]["answered-in-window"], 1, "{before}");
    assert_eq!(before["tasks"]["canceled-in-window"], 1, "{before}");
    assert_eq!(before["sla_percent"], 50.0, "{before}");
    server.kill();

    let server = Server::start(dir.path(), &[]);
    let (_, after) = server.call("GET", "/v1/queues/q/stats", None);
    assert_eq!(after["tasks"]["answered-in-window"], 1, "{after}");
    assert_eq!(after["tasks"]["canceled-in-window"], 1, "{after}");
    assert_eq!(after["sla_percent"], before["sla_percent"], "{after}");
    let kept = reservation(&server, &tokens[2]);
    assert_eq!(kept["id"], offer["id"], "the same offer, still open");
    assert_eq!(
        kept["expires_ms"], offer["expires_ms"],
        "with the time it had left"
    );
    let (_, task) = server.call(
        "GET",
        &format!("/v1/tasks/{}", third["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(task["status"], "reserved");

    // Ann finished a task before Bob's offer was withdrawn: she has waited longer than Bob.
    assert_eq!(new_task(&server)["agent"], "ann");
    assert_eq!(new_task(&server)["agent"], "bob");
}

/// Deployed components and uploaded recordings live in the store, not in files beside it: a
/// node whose local files are gone (a new machine with the same database, a restored backup)
/// still runs every version and plays every recording.
#[test]
fn components_and_recordings_are_in_the_store_not_in_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = format!("ivr-menu={}", guest("ivr-menu").display());
    let mut args = vec!["--deploy", deploy.as_str()];
    args.extend(ALWAYS_OPEN);
    let server = Server::start(dir.path(), &args);
    let wav = dir.path().join("hello.wav");
    let made = std::process::Command::new("sox")
        .args(["-n", "-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .args(["synth", "0.5", "sine", "440"])
        .status()
        .unwrap();
    assert!(made.success());
    let (status, uploaded) = server.call_raw(
        "PUT",
        "/v1/prompts/hello",
        "audio/wav",
        std::fs::read(&wav).unwrap(),
    );
    assert_eq!(status, 201, "{uploaded}");
    server.kill();

    // Everything but the store goes: components, compiled artifacts, prompt files.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name();
        if name != "store" && name != "admin.token" && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    let server = Server::start(dir.path(), &[]);
    let contact = server.start_contact("ivr-menu", "+15551230004");
    assert!(
        !crate::support::spoken(&contact).is_empty(),
        "the flow ran from the stored component: {contact}"
    );
    assert_eq!(
        server.press(contact["contact"].as_str().unwrap(), "1")["status"]["state"],
        "queued"
    );
    let (_, list) = server.call("GET", "/v1/prompts", None);
    assert_eq!(list, json!([{"id": "hello", "millis": 500}]));
    let served = ureq::get(&format!("{}/prompts/hello", server.url))
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    assert_eq!(served.len(), 44 + 500 * 16, "8 kHz 16-bit mono WAV");
}
