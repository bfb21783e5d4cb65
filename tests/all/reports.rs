//! Historical reports over HTTP: a scripted day in a queue, its figures (JSON and CSV) equal
//! to what the test computes from the tasks' own times, before and after a restart; who may
//! read them; what a bad query is told.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, agent};

fn ok(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = server.call(method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Accepts the reservation offered to the agent of `token`, then completes its task after
/// `talk_ms`.
fn answer(server: &Server, token: &str, task: &str, talk_ms: u64) {
    let (_, me) = server.call_as(Some(token), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("an offer")
        .to_string();
    let (status, accepted) = server.call_as(
        Some(token),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{accepted}");
    pause(talk_ms);
    let (status, done) = server.call_as(
        Some(token),
        "POST",
        &format!("/agent/v1/tasks/{task}/complete"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{done}");
}

/// What the report must say of the tasks that arrived in `[start, end)`, from their times.
fn expected(tasks: &[Value], start: u64, end: u64) -> Value {
    let mine: Vec<&Value> = tasks
        .iter()
        .filter(|t| {
            let c = t["created_ms"].as_u64().unwrap();
            c >= start && c < end
        })
        .collect();
    let n = |v: &Value, k: &str| v[k].as_u64();
    let answered: Vec<&&Value> = mine
        .iter()
        .filter(|t| n(t, "assigned_ms").is_some())
        .collect();
    let abandoned_waits: Vec<u64> = mine
        .iter()
        .filter(|t| n(t, "assigned_ms").is_none() && n(t, "ended_ms").is_some())
        .map(|t| n(t, "ended_ms").unwrap() - n(t, "created_ms").unwrap())
        .collect();
    let short = abandoned_waits.iter().filter(|w| **w < 1_000).count() as u64;
    let abandoned = abandoned_waits.len() as u64 - short;
    let waits: Vec<u64> = answered
        .iter()
        .map(|t| n(t, "assigned_ms").unwrap() - n(t, "created_ms").unwrap())
        .collect();
    let handles: Vec<u64> = answered
        .iter()
        .map(|t| n(t, "ended_ms").unwrap() - n(t, "assigned_ms").unwrap())
        .collect();
    let in_sl = waits.iter().filter(|w| **w <= 1_000).count() as u64;
    let count = answered.len() as u64;
    let mean =
        |v: &[u64]| (count > 0).then(|| v.iter().sum::<u64>() as f64 / 1000.0 / count as f64);
    json!({
        "offered": mine.len(),
        "answered": count,
        "abandoned": abandoned,
        "short_abandoned": short,
        "waiting": mine.iter().filter(|t| n(t, "ended_ms").is_none() && n(t, "assigned_ms").is_none()).count(),
        "answered_in_sl": in_sl,
        "service_level_percent": (count + abandoned > 0).then(|| in_sl as f64 * 100.0 / (count + abandoned) as f64),
        "asa_secs": mean(&waits),
        "aht_secs": mean(&handles),
        "handled": count,
    })
}

fn same(got: &Value, want: &Value) -> bool {
    want.as_object()
        .unwrap()
        .iter()
        .all(|(k, w)| match (got[k].as_f64(), w.as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() < 1e-6,
            _ => got[k] == *w,
        })
}

fn check_queue_report(server: &Server, ids: &[String], query: &str, when: &str) {
    let tasks: Vec<Value> = ids
        .iter()
        .map(|id| ok(server, "GET", &format!("/v1/tasks/{id}"), None))
        .collect();
    let report = ok(server, "GET", &format!("/v1/reports/queues?{query}"), None);
    let rows: Vec<&Value> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["queue"] == "desk")
        .collect();
    assert!(!rows.is_empty(), "{when}: {report}");
    let mut offered = 0;
    for row in &rows {
        let start = row["start_ms"].as_u64().unwrap();
        let want = expected(&tasks, start, start + 86_400_000);
        assert!(same(row, &want), "{when}: got {row}\nwant {want}");
        offered += row["offered"].as_u64().unwrap();
    }
    assert_eq!(offered, 5, "{when}: every task is counted once: {report}");
}

#[test]
fn a_days_figures_match_the_tasks_before_and_after_a_restart_and_export_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ok(
        &server,
        "PUT",
        "/v1/queues/desk",
        Some(json!({"sla_secs": 1, "short_abandon_secs": 1})),
    );
    let ann = agent(&server, "ann", json!({}), json!({"chat": 1}));
    let new_task = || {
        ok(
            &server,
            "POST",
            "/v1/tasks",
            Some(json!({"queue": "desk", "channel": "chat", "attributes": {}})),
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut ids = Vec::new();
    // Answered at once (within the 1 s service level), then one answered late.
    ids.push(new_task());
    pause(200);
    answer(&server, &ann, &ids[0], 400);
    ids.push(new_task());
    pause(1_500);
    answer(&server, &ann, &ids[1], 300);
    // Ann takes a break: one caller gives up after 1.2 s, one at once (a short abandon), one
    // is still waiting.
    let (status, _) = server.call_as(
        Some(&ann),
        "PUT",
        "/agent/v1/activity",
        Some(json!({"activity": "break"})),
    );
    assert_eq!(status, 200);
    ids.push(new_task());
    pause(1_200);
    ok(
        &server,
        "POST",
        &format!("/v1/tasks/{}/cancel", ids[2]),
        Some(json!({"reason": "hung up"})),
    );
    ids.push(new_task());
    ok(
        &server,
        "POST",
        &format!("/v1/tasks/{}/cancel", ids[3]),
        Some(json!({"reason": "hung up"})),
    );
    ids.push(new_task());

    let from = chrono::Utc::now() - chrono::Duration::hours(1);
    let to = chrono::Utc::now() + chrono::Duration::hours(1);
    let query = format!(
        "from={}&to={}&interval=1d&tz=UTC",
        from.format("%Y-%m-%dT%H:%M:%SZ"),
        to.format("%Y-%m-%dT%H:%M:%SZ")
    );
    check_queue_report(&server, &ids, &query, "before the restart");

    // The agent: two tasks handled, their mean handle time, time on break.
    let agents = ok(
        &server,
        "GET",
        &format!("/v1/reports/agents?{query}&agent=ann"),
        None,
    );
    let rows = agents["rows"].as_array().unwrap();
    let handled: u64 = rows.iter().map(|r| r["handled"].as_u64().unwrap()).sum();
    assert_eq!(handled, 2, "{agents}");
    assert!(
        rows.iter()
            .any(|r| r["states"]["break"].as_f64().unwrap_or(0.0) > 0.0),
        "{agents}"
    );
    assert!(
        rows.iter()
            .any(|r| r["states"]["available"].as_f64().unwrap_or(0.0) >= 2.0),
        "{agents}"
    );
    let occupancy = rows
        .iter()
        .find_map(|r| r["occupancy_percent"].as_f64())
        .unwrap();
    assert!(occupancy > 0.0 && occupancy <= 100.0, "{agents}");

    // The CSV export: the same figures.
    let (status, csv) = server.call(
        "GET",
        &format!("/v1/reports/queues?{query}&format=csv"),
        None,
    );
    assert_eq!(status, 200);
    let csv = csv.as_str().expect("CSV text").to_string();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..5],
        [
            "queue",
            "interval_start",
            "offered",
            "answered",
            "abandoned"
        ]
    );
    let desk: Vec<Vec<&str>> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[0] == "desk")
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let total = |name: &str| -> u64 {
        desk.iter()
            .map(|r| r[column(name)].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        (
            total("offered"),
            total("answered"),
            total("abandoned"),
            total("short_abandoned"),
            total("waiting")
        ),
        (5, 2, 1, 1, 1),
        "{csv}"
    );

    // A restart: the same figures, from what the store kept.
    server.terminate();
    server.exit_status(Duration::from_secs(20));
    let server = Server::start(dir.path(), &[]);
    check_queue_report(&server, &ids, &query, "after the restart");
    let again = ok(
        &server,
        "GET",
        &format!("/v1/reports/agents?{query}&agent=ann"),
        None,
    );
    let handled: u64 = again["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["handled"].as_u64().unwrap())
        .sum();
    assert_eq!(handled, 2, "{again}");
}

#[test]
fn reports_are_for_supervisors_and_a_bad_query_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ok(&server, "PUT", "/v1/queues/desk", Some(json!({})));
    let ann = agent(&server, "ann", json!({}), json!({"chat": 1}));
    let (status, refused) = server.call_as(Some(&ann), "GET", "/v1/reports/queues", None);
    assert_eq!(
        status, 401,
        "an agent's desk token is no API token: {refused}"
    );
    ok(
        &server,
        "POST",
        "/v1/users",
        Some(json!({"name": "ann", "role": "agent", "password": "ann's long password"})),
    );
    ok(
        &server,
        "POST",
        "/v1/users",
        Some(json!({"name": "sam", "role": "supervisor", "password": "sam's long password"})),
    );
    ok(
        &server,
        "POST",
        "/v1/users",
        Some(json!({"name": "dee", "role": "developer", "password": "dee's long password"})),
    );
    let token_of = |name: &str| {
        ok(
            &server,
            "POST",
            &format!("/v1/users/{name}/tokens"),
            Some(json!({"label": "t"})),
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (name, want) in [("ann", 403), ("dee", 403), ("sam", 200)] {
        let token = token_of(name);
        let (status, body) = server.call_as(Some(&token), "GET", "/v1/reports/agents", None);
        assert_eq!(status, want, "{name}: {body}");
    }
    for (query, words) in [
        ("interval=2h", "15m, 1h, 1d"),
        ("tz=Mars/Olympus", "IANA"),
        ("from=yesterday", "2026-06-01"),
        ("from=2026-06-02&to=2026-06-01", "after"),
        ("format=xml", "json or csv"),
        (
            "from=2020-01-01&to=2026-01-01&interval=15m",
            "shorter period",
        ),
        ("short_abandon_secs=-1", "whole number"),
    ] {
        let (status, body) = server.call("GET", &format!("/v1/reports/queues?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{query}: {message}");
    }
    let (status, body) = server.call("GET", "/v1/reports/queues?queue=nowhere", None);
    assert_eq!(status, 404, "{body}");
}
