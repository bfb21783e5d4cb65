//! A flow that misbehaves never drops the contact: it is stopped, the fault is recorded, and
//! the customer gets the fallback (an apology and the default queue).

use serde_json::Value;

use crate::support::{Server, guest, queue, spoken};

fn faulting_step(server: &Server, digit: &str) -> (Value, Value) {
    let contact = server.start_contact("chaos", "+15551230001");
    let id = contact["contact"].as_str().unwrap().to_string();
    let report = server.press(&id, digit);
    let (_, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    (report, session)
}

fn assert_fallback(report: &Value, session: &Value, kind: &str) {
    assert_eq!(report["fault"]["kind"], kind, "{report}");
    assert!(spoken(report)[0].starts_with("We're sorry"), "{report}");
    assert_eq!(queue(report).as_deref(), Some("default"));
    assert_eq!(
        session["status"]["state"], "queued",
        "the contact is kept: {session}"
    );
    assert_eq!(session["status"]["queue"], "default");
    assert_eq!(session["faults"], 1);
}

#[test]
fn endless_loop_memory_hog_trap_and_garbage_get_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.deploy("chaos", &guest("chaos")).0, 201);

    let started = std::time::Instant::now();
    let (report, session) = faulting_step(&server, "1");
    assert_fallback(&report, &session, "deadline");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the loop was stopped"
    );

    // Sleeping blocks in a host call, where the epoch cannot interrupt: the host bounds every
    // wait by what is left of the deadline instead.
    let started = std::time::Instant::now();
    let (report, session) = faulting_step(&server, "#");
    assert_fallback(&report, &session, "deadline");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the hour-long sleep was cut"
    );

    let (report, session) = faulting_step(&server, "2");
    assert_fallback(&report, &session, "memory");
    assert_eq!(report["fault"]["cap_mib"], 64);

    let (report, session) = faulting_step(&server, "3");
    assert_fallback(&report, &session, "trap");
    assert!(
        report["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("chaos flow asked to trap")
    );

    let (report, session) = faulting_step(&server, "4");
    assert_fallback(&report, &session, "flow-error");

    let (report, session) = faulting_step(&server, "5");
    assert_fallback(&report, &session, "invalid-output");
    assert!(
        report["fault"]["why"]
            .as_str()
            .unwrap()
            .contains("no queue")
    );

    // The trace keeps the fault and the fallback's actions; the server still serves others.
    let id = session["id"].as_str().unwrap();
    let (_, trace) = server.call("GET", &format!("/v1/contacts/{id}/trace"), None);
    assert_eq!(trace[1]["fault"]["kind"], "invalid-output");
    assert_eq!(trace[1]["actions"][1]["queue"], "default");
    let healthy = server.start_contact("chaos", "+15551239999");
    assert_eq!(spoken(&healthy)[0], "Chaos flow ready.");
    let (_, metrics) = server.call("GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains(r#"outcome="deadline"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"outcome="memory"} 1"#), "{metrics}");
}

#[test]
fn a_hang_up_after_a_fault_ends_the_contact_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.deploy("chaos", &guest("chaos"));
    let contact = server.start_contact("chaos", "+15551230001");
    let id = contact["contact"].as_str().unwrap();
    let (status, report) = server.call(
        "POST",
        &format!("/v1/contacts/{id}/events"),
        Some(serde_json::json!({"type": "hangup"})),
    );
    assert_eq!(status, 200);
    assert_eq!(report["status"]["state"], "ended");
    assert_eq!(report["status"]["reason"], "customer-hangup");
    let (status, err) = server.call(
        "POST",
        &format!("/v1/contacts/{id}/events"),
        Some(serde_json::json!({"type": "input", "digits": "1"})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("contact_ended"))
    );
}

#[test]
fn kv_is_durable_per_flow_and_a_faulted_step_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.deploy("chaos", &guest("chaos"));
    let visit = |server: &Server, digit: &str| {
        let contact = server.start_contact("chaos", "+15551230001");
        server.press(contact["contact"].as_str().unwrap(), digit)
    };
    assert_eq!(spoken(&visit(&server, "6"))[0], "Visit 1.");
    assert_eq!(spoken(&visit(&server, "6"))[0], "Visit 2.");
    assert_eq!(visit(&server, "0")["fault"]["kind"], "trap");
    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        spoken(&visit(&server, "6"))[0],
        "Visit 3.",
        "the trapped step's write was discarded; the others survived a crash"
    );
    // Another flow has its own store.
    server.deploy("other", &guest("chaos"));
    let contact = server.start_contact("other", "+15551230001");
    assert_eq!(
        spoken(&server.press(contact["contact"].as_str().unwrap(), "6"))[0],
        "Visit 1."
    );
}

#[test]
fn a_fuel_budget_stops_a_busy_flow() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[engine]\nfuel = 5000000\nstep_deadline_ms = 10000\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    server.deploy("chaos", &guest("chaos"));
    let contact = server.start_contact("chaos", "+15551230001");
    assert_eq!(
        spoken(&contact)[0],
        "Chaos flow ready.",
        "ordinary steps fit the budget"
    );
    let report = server.press(contact["contact"].as_str().unwrap(), "1");
    assert_eq!(report["fault"]["kind"], "fuel", "{report}");
    assert_eq!(queue(&report).as_deref(), Some("default"));
}
