//! The task router: skills, priority, capacity, reservation timeouts, escalation, durability,
//! agents over REST and WebSocket, and flows that hear what happened to their task.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, agent, ivr_server};

fn put(server: &Server, path: &str, body: Value) -> Value {
    let (status, answer) = server.call("PUT", path, Some(body));
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

fn task(server: &Server, queue: &str, channel: &str, priority: i32, attributes: Value) -> Value {
    let (status, task) = server.call("POST", "/v1/tasks", Some(json!({"queue": queue, "channel": channel, "priority": priority, "attributes": attributes})));
    assert_eq!(status, 201, "{task}");
    task
}

fn me(server: &Server, token: &str) -> Value {
    let (status, me) = server.call_as(Some(token), "GET", "/agent/v1/me", None);
    assert_eq!(status, 200, "{me}");
    me
}

fn reservation_of(server: &Server, token: &str) -> Option<String> {
    me(server, token)["reservation"]["id"]
        .as_str()
        .map(str::to_string)
}

fn act(server: &Server, token: &str, path: &str) -> (u16, Value) {
    server.call_as(Some(token), "POST", path, Some(json!({})))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn skills_priority_and_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(
        &server,
        "/v1/queues/billing",
        json!({"members": r#""billing" in worker.skills && worker.level >= 2"#}),
    );
    let sales = agent(
        &server,
        "sam",
        json!({"skills": ["sales"], "level": 3}),
        json!({"voice": 1}),
    );
    let junior = agent(
        &server,
        "jo",
        json!({"skills": ["billing"], "level": 1}),
        json!({"voice": 1}),
    );
    let billing = agent(
        &server,
        "bea",
        json!({"skills": ["billing"], "level": 2}),
        json!({"voice": 1, "chat": 3}),
    );
    let (_, stats) = server.call("GET", "/v1/queues/billing/stats", None);
    assert_eq!(stats["eligible_agents"], 1, "{stats}");

    // Skills: only bea qualifies.
    let first = task(&server, "billing", "voice", 0, json!({}));
    assert_eq!(first["status"], "reserved");
    assert_eq!(first["agent"], "bea");
    assert!(
        reservation_of(&server, &sales).is_none() && reservation_of(&server, &junior).is_none()
    );

    // Capacity: busy on voice, bea can still take three chats, one reservation at a time.
    let r = reservation_of(&server, &billing).unwrap();
    assert_eq!(
        act(
            &server,
            &billing,
            &format!("/agent/v1/reservations/{r}/accept")
        )
        .0,
        200
    );
    let voice2 = task(&server, "billing", "voice", 0, json!({}));
    assert_eq!(voice2["status"], "pending", "no second voice task for bea");
    let mut chats = Vec::new();
    for _ in 0..4 {
        chats.push(task(&server, "billing", "chat", 0, json!({})));
        if let Some(r) = reservation_of(&server, &billing) {
            assert_eq!(
                act(
                    &server,
                    &billing,
                    &format!("/agent/v1/reservations/{r}/accept")
                )
                .0,
                200
            );
        }
    }
    let mine = me(&server, &billing);
    assert_eq!(mine["busy"]["chat"], 3, "{mine}");
    assert_eq!(mine["busy"]["voice"], 1);
    assert_eq!(chats[3]["status"], "pending");

    // Priority overtakes age: when bea frees the voice slot, the urgent newer task goes first.
    let urgent = task(&server, "billing", "voice", 10, json!({}));
    let (status, done) = server.call_as(
        Some(&billing),
        "POST",
        &format!("/agent/v1/tasks/{}/complete", first["id"].as_str().unwrap()),
        Some(json!({"wrapup": "refund issued"})),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["wrapup"], "refund issued");
    let next = me(&server, &billing)["reservation"]["task"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        next,
        urgent["id"].as_str().unwrap(),
        "priority 10 before the older priority 0 task {}",
        voice2["id"]
    );
}

#[test]
fn reservation_timeout_moves_on_and_escalation_reaches_the_second_target() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(
        &server,
        "/v1/queues/support",
        json!({
            "reservation_timeout_secs": 1,
            // Written with the names queues had before `agent` (still read).
            "targets": [
                // Long enough that the offer moves (after 1 s) and the seniors reject it
                // before escalation, on a busy machine too.
                {"workers": "worker.level >= 3", "timeout_secs": 5},
                {"workers": "worker.level >= 1"}
            ]
        }),
    );
    let senior_a = agent(&server, "ann", json!({"level": 3}), json!({"voice": 1}));
    let senior_b = agent(&server, "ben", json!({"level": 3}), json!({"voice": 1}));
    let t = task(&server, "support", "voice", 0, json!({}));
    let first = t["agent"].as_str().unwrap().to_string();
    let (first_token, second_token) = if first == "ann" {
        (&senior_a, &senior_b)
    } else {
        (&senior_b, &senior_a)
    };
    // The first agent ignores it: after the timeout it is offered to the other senior.
    wait_until("the reservation to move", || {
        reservation_of(&server, second_token).is_some()
    });
    assert!(reservation_of(&server, first_token).is_none());
    let (_, task_now) = server.call(
        "GET",
        &format!("/v1/tasks/{}", t["id"].as_str().unwrap()),
        None,
    );
    assert!(
        task_now["passed_by"]
            .as_array()
            .unwrap()
            .contains(&json!(first))
    );

    // Both seniors reject everything; a junior arrives; escalation reaches the second target.
    let r = reservation_of(&server, second_token).unwrap();
    assert_eq!(
        act(
            &server,
            second_token,
            &format!("/agent/v1/reservations/{r}/reject")
        )
        .0,
        200
    );
    let junior = agent(&server, "jay", json!({"level": 1}), json!({"voice": 1}));
    assert!(
        reservation_of(&server, &junior).is_none(),
        "juniors are not in the first target"
    );
    wait_until("escalation to the second target", || {
        reservation_of(&server, &junior).is_some()
    });
    let r = reservation_of(&server, &junior).unwrap();
    let (status, assigned) = act(
        &server,
        &junior,
        &format!("/agent/v1/reservations/{r}/accept"),
    );
    assert_eq!(
        (status, assigned["status"].as_str()),
        (200, Some("assigned"))
    );
    assert_eq!(assigned["target"], 1);
}

#[test]
fn an_agent_who_keeps_missing_reservations_is_made_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(
        &server,
        "/v1/queues/q",
        json!({"reservation_timeout_secs": 1}),
    );
    let sleepy = agent(&server, "zed", json!({}), json!({"voice": 1}));
    for _ in 0..3 {
        task(&server, "q", "voice", 0, json!({}));
    }
    wait_until("three missed reservations", || {
        me(&server, &sleepy)["activity"] == "unavailable"
    });
    assert_eq!(me(&server, &sleepy)["missed_in_a_row"], 3);
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, err) = server.call(
        "PUT",
        "/v1/queues/bad",
        Some(json!({"members": "skills HAS \"billing\" AND"})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid expression")
    );
    let (_, queues) = server.call("GET", "/v1/queues", None);
    assert!(
        !queues
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "bad")
    );
    let (status, err) = server.call("POST", "/v1/tasks", Some(json!({"queue": "nowhere"})));
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_queue"))
    );

    put(&server, "/v1/queues/q", json!({}));
    let alice = agent(&server, "alice", json!({}), json!({"voice": 1}));
    let bob = agent(&server, "bob", json!({}), json!({"voice": 1}));
    let t = task(&server, "q", "voice", 0, json!({}));
    let (owner, other) = if t["agent"] == "alice" {
        (&alice, &bob)
    } else {
        (&bob, &alice)
    };
    let r = reservation_of(&server, owner).unwrap();
    let (status, err) = act(
        &server,
        other,
        &format!("/agent/v1/reservations/{r}/accept"),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("not_yours"))
    );
    assert_eq!(
        act(
            &server,
            owner,
            &format!("/agent/v1/reservations/{r}/accept")
        )
        .0,
        200
    );
    let (status, err) = act(
        &server,
        owner,
        &format!("/agent/v1/reservations/{r}/accept"),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_reservation")),
        "a double accept"
    );
    let (status, _) = server.call_as(Some("sbw_wrong"), "GET", "/agent/v1/me", None);
    assert_eq!(status, 401);
    let (status, err) = server.call_as(Some(&server.token), "GET", "/agent/v1/me", None);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("not_an_agent")),
        "the admin is no agent"
    );
    let (_, stats) = server.call("GET", "/v1/queues/q/stats", None);
    assert_eq!(
        stats["tasks"]["assigned"], 1,
        "exactly one assignment: {stats}"
    );
}

#[test]
fn tasks_survive_sigkill_and_reserved_ones_are_offered_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(&server, "/v1/queues/q", json!({}));
    let pending = task(&server, "q", "voice", 0, json!({"note": "nobody yet"}));
    assert_eq!(pending["status"], "pending");
    let amy = agent(&server, "amy", json!({}), json!({"voice": 1}));
    assert!(
        reservation_of(&server, &amy).is_some(),
        "amy was offered the waiting task"
    );
    server.kill();

    let server = Server::start(dir.path(), &[]);
    let (_, t) = server.call(
        "GET",
        &format!("/v1/tasks/{}", pending["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(t["attributes"]["note"], "nobody yet");
    // The reservation open at the crash still stands after the restart.
    let r = reservation_of(&server, &amy).expect("offered again after the restart");
    let (status, assigned) = act(&server, &amy, &format!("/agent/v1/reservations/{r}/accept"));
    assert_eq!(
        (status, assigned["id"].clone()),
        (200, pending["id"].clone())
    );
}

#[test]
fn a_caller_pressing_1_reaches_an_agent_and_the_flow_hears_how_it_went() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    put(
        &server,
        "/v1/queues/sales",
        json!({"members": r#""sales" in worker.skills"#}),
    );
    let token = agent(
        &server,
        "sara",
        json!({"skills": ["sales"]}),
        json!({"voice": 1}),
    );

    // The agent's desktop is connected before the call comes in.
    let url = format!(
        "{}/agent/v1/ws?token={token}",
        server.url.replace("http://", "ws://")
    );
    let (mut socket, _) = tungstenite::connect(url).expect("the agent socket opens");
    let snapshot: Value = serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(snapshot["type"], "snapshot");

    let contact = server.start_contact("ivr-menu", "+15551230004");
    let id = contact["contact"].as_str().unwrap().to_string();
    let queued = server.press(&id, "1");
    assert_eq!(queued["status"]["state"], "queued");

    let pushed: Value = serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(pushed["type"], "reservation", "{pushed}");
    assert_eq!(pushed["task"]["contact"], json!(id));
    assert_eq!(pushed["task"]["attributes"]["department"], "sales");
    let reservation = pushed["reservation"]["id"].as_str().unwrap();
    socket
        .send(tungstenite::Message::text(
            json!({"type": "accept", "reservation": reservation}).to_string(),
        ))
        .unwrap();
    let ack: Value = serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(ack["type"], "ok", "{ack}");
    let (_, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(session["status"]["state"], "with-agent", "{session}");
    assert_eq!(session["status"]["agent"], "sara");

    let task_id = ack["task"]["id"].as_str().unwrap();
    socket
        .send(tungstenite::Message::text(
            json!({"type": "complete", "task": task_id, "wrapup": "sold"}).to_string(),
        ))
        .unwrap();
    let ack: Value = serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(ack["task"]["status"], "completed");
    let (_, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(session["status"]["state"], "ended", "{session}");
    let (_, trace) = server.call("GET", &format!("/v1/contacts/{id}/trace"), None);
    let events: Vec<&Value> = trace
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["event"])
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "task-outcome" && e["status"] == "assigned"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "task-outcome" && e["status"] == "completed"),
        "{events:?}"
    );

    // A caller who hangs up while waiting takes their task with them.
    let contact = server.start_contact("ivr-menu", "+15551230005");
    let id = contact["contact"].as_str().unwrap().to_string();
    let (status, _) = server.call_as(
        Some(&token),
        "PUT",
        "/agent/v1/activity",
        Some(json!({"activity": "break"})),
    );
    assert_eq!(status, 200);
    server.press(&id, "1");
    server.call(
        "POST",
        &format!("/v1/contacts/{id}/events"),
        Some(json!({"type": "hangup"})),
    );
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(stats["tasks"].get("pending"), None, "{stats}");
    assert_eq!(stats["tasks"]["canceled-in-window"], 1, "{stats}");
}

#[test]
fn supervisor_moves_tasks_and_watches_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(
        &server,
        "/v1/queues/french",
        json!({"members": r#""fr" in worker.languages"#, "sla_secs": 20}),
    );
    put(
        &server,
        "/v1/queues/general",
        json!({"members": r#""en" in worker.languages"#}),
    );
    let pierre = agent(
        &server,
        "pierre",
        json!({"languages": ["fr"]}),
        json!({"voice": 1}),
    );
    let waiting = task(&server, "general", "voice", 0, json!({"language": "fr"}));
    assert_eq!(waiting["status"], "pending", "nobody speaks English today");
    let (_, stats) = server.call("GET", "/v1/stats", None);
    let general = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "general")
        .unwrap()
        .clone();
    assert_eq!(general["tasks"]["pending"], 1, "{general}");
    assert_eq!(general["eligible_agents"], 0);

    // The supervisor moves it where pierre can take it.
    let (status, moved) = server.call(
        "POST",
        &format!("/v1/tasks/{}/move", waiting["id"].as_str().unwrap()),
        Some(json!({"queue": "french", "priority": 5})),
    );
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (
            moved["queue"].as_str(),
            moved["status"].as_str(),
            moved["priority"].as_i64()
        ),
        (Some("french"), Some("reserved"), Some(5))
    );
    assert_eq!(me(&server, &pierre)["reservation"]["task"], waiting["id"]);
    let (status, err) = server.call(
        "POST",
        &format!("/v1/tasks/{}/move", waiting["id"].as_str().unwrap()),
        Some(json!({"queue": "nowhere"})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_queue"))
    );

    // Dashboards: a stream of numbers, and Prometheus.
    let agent_http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent_http
        .get(format!("{}/v1/stats/stream", server.url))
        .header("Authorization", format!("Bearer {}", server.token))
        .call()
        .unwrap();
    let mut reader = std::io::BufReader::new(response.body_mut().as_reader());
    let mut event = String::new();
    while !event.contains("\ndata:") || !event.ends_with("\n\n") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0);
        event.push_str(&line);
    }
    assert!(event.starts_with("event: stats"), "{event}");
    let data: Value = serde_json::from_str(event.split("data:").nth(1).unwrap().trim()).unwrap();
    let french = data["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "french")
        .unwrap();
    assert_eq!(french["tasks"]["reserved"], 1, "{french}");
    let (_, metrics) = server.call_as(None, "GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(r#"switchboard_queue_tasks{queue="french",status="reserved"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchboard_queue_available_agents{queue="general"} 0"#),
        "{metrics}"
    );
}

#[test]
fn a_router_component_changes_routing_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(&server, "/v1/queues/support", json!({}));
    // Ed has waited longest, so the queue's own plan offers him everything.
    let ed = agent(
        &server,
        "ed",
        json!({"languages": ["en"]}),
        json!({"voice": 1}),
    );
    std::thread::sleep(Duration::from_millis(20));
    let fifi = agent(
        &server,
        "fifi",
        json!({"languages": ["fr", "en"]}),
        json!({"voice": 1}),
    );
    let before = task(&server, "support", "voice", 0, json!({"language": "fr"}));
    assert_eq!(before["agent"], "ed");
    let r = reservation_of(&server, &ed).unwrap();
    act(&server, &ed, &format!("/agent/v1/reservations/{r}/reject"));
    let r = reservation_of(&server, &fifi).unwrap();
    act(
        &server,
        &fifi,
        &format!("/agent/v1/reservations/{r}/accept"),
    );
    let (status, _) = server.call_as(
        Some(&fifi),
        "POST",
        &format!(
            "/agent/v1/tasks/{}/complete",
            before["id"].as_str().unwrap()
        ),
        Some(json!({})),
    );
    assert_eq!(status, 200);

    // The routing component goes live as the flow `router`: French speakers first, VIPs ahead.
    let (status, deployed) = server.deploy("router", &crate::support::guest("language-router"));
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["world"], "switchboard:flow/router@0.2.0");
    let after = task(
        &server,
        "support",
        "voice",
        0,
        json!({"language": "fr", "tier": "vip"}),
    );
    assert_eq!(after["agent"], "fifi", "{after}");
    assert_eq!(after["priority"], 10);
    assert_eq!(after["plan"][0]["agents"], "\"fr\" in worker.languages");
    let english = task(&server, "support", "voice", 0, json!({"language": "en"}));
    assert_eq!(
        english["agent"], "ed",
        "English keeps the queue's plan: {english}"
    );

    // A router component cannot replace a flow, nor a flow the router.
    let (status, err) = server.deploy("router", &crate::support::guest("ivr-menu"));
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("serves switchboard:flow/router@0.2.0"),
        "{err}"
    );

    // The same router built against contract 0.1.0 (as deployed before 0.2.0) still plans.
    let (status, old) = server.deploy("router", &crate::support::guest("language-router-0-1"));
    assert_eq!(status, 201, "{old}");
    assert_eq!(old["world"], "switchboard:flow/router@0.1.0");
    let planned = task(
        &server,
        "support",
        "voice",
        0,
        json!({"language": "fr", "tier": "vip"}),
    );
    assert_eq!(planned["priority"], 10, "{planned}");
    assert_eq!(planned["plan"][0]["agents"], "\"fr\" in worker.languages");
}

#[test]
fn the_workflow_sends_tasks_by_their_attributes_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    put(&server, "/v1/queues/general", json!({}));
    put(&server, "/v1/queues/escalations", json!({}));
    let workflow = json!({"filters": [
        {"name": "angry", "when": "task.sentiment == \"angry\" || task.priority >= 50", "queue": "escalations", "priority": 100}
    ]});
    put(&server, "/v1/workflow", workflow.clone());

    let calm = task(&server, "general", "voice", 0, json!({"sentiment": "calm"}));
    assert_eq!(
        (calm["queue"].as_str(), calm["priority"].as_i64()),
        (Some("general"), Some(0))
    );
    let angry = task(
        &server,
        "general",
        "voice",
        0,
        json!({"sentiment": "angry"}),
    );
    assert_eq!(
        (angry["queue"].as_str(), angry["priority"].as_i64()),
        (Some("escalations"), Some(100))
    );

    // A filter naming a missing queue, or a bad condition, is refused; the old one stays.
    let (status, err) = server.call(
        "PUT",
        "/v1/workflow",
        Some(json!({"filters": [{"name": "x", "when": "true", "queue": "nowhere"}]})),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"nowhere\", which does not exist"),
        "{err}"
    );
    let (status, _) = server.call(
        "PUT",
        "/v1/workflow",
        Some(json!({"filters": [{"name": "x", "when": "task.a ==", "queue": "general"}]})),
    );
    assert_eq!(status, 400);
    server.kill();

    let server = Server::start(dir.path(), &[]);
    let (_, kept) = server.call("GET", "/v1/workflow", None);
    assert_eq!(kept["filters"][0]["when"], workflow["filters"][0]["when"]);
    assert_eq!(kept["filters"][0]["queue"], "escalations");
    let urgent = task(&server, "general", "voice", 60, json!({}));
    assert_eq!(urgent["queue"], "escalations");
}

#[test]
fn a_waiting_caller_hears_their_place_and_keeps_it_with_a_callback() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    put(&server, "/v1/queues/sales", json!({"wait_event_secs": 1}));
    let contact = server.start_contact("ivr-menu", "+15551230006");
    let id = contact["contact"].as_str().unwrap().to_string();
    server.press(&id, "1");

    // Nobody is free: after a second the flow hears `queue-wait` and speaks to the caller.
    let mut offer = Value::Null;
    wait_until("a queue-wait step", || {
        let (_, trace) = server.call("GET", &format!("/v1/contacts/{id}/trace"), None);
        offer = trace
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["event"]["type"] == "queue-wait")
            .cloned()
            .unwrap_or(Value::Null);
        !offer.is_null()
    });
    assert_eq!(offer["event"]["position"], 1);
    assert_eq!(
        offer["actions"][0]["prompt"][0]["text"],
        "You are number 1 in line. To be called back instead of waiting, press 1."
    );
    let (_, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(
        session["status"]["state"], "queued",
        "still waiting: {session}"
    );

    // The caller takes the callback: the call ends, the task keeps its place.
    let ended = server.press(&id, "1");
    assert_eq!(ended["status"]["reason"], "callback", "{ended}");
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(stats["tasks"]["pending"], 1, "{stats}");
    let token = agent(&server, "cal", json!({}), json!({"voice": 1}));
    let offered = me(&server, &token);
    let (_, task) = server.call(
        "GET",
        &format!(
            "/v1/tasks/{}",
            offered["reservation"]["task"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(task["attributes"]["callback"], "+15551230006");
    assert_eq!(task["callback"]["number"], "+15551230006");
    assert_eq!(
        task["callback"]["contact"],
        id.as_str(),
        "the caller's contact is linked"
    );
    assert!(task["contact"].is_null());
    // This server has no SIP to dial with: accepting is refused, and the offer stays.
    let reservation = offered["reservation"]["id"].as_str().unwrap();
    let (status, refused) = server.call_as(
        Some(&token),
        "POST",
        &format!("/agent/v1/reservations/{reservation}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("set sip.listen"), "{refused}");
    assert_eq!(me(&server, &token)["reservation"]["id"], reservation);
}

#[test]
fn wrap_up_keeps_the_agent_busy_needs_its_code_and_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, refused) = server.call(
        "PUT",
        "/v1/queues/sales",
        Some(json!({"disposition_required": true})),
    );
    assert_eq!(status, 400, "a required code with no codes: {refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dispositions"),
        "{refused}"
    );
    put(
        &server,
        "/v1/queues/sales",
        // Long enough for the requests below to come before the wrap-up runs out.
        json!({"wrapup_secs": 5, "dispositions": ["sale", "no-sale"], "disposition_required": true}),
    );
    let ann = agent(&server, "ann", json!({}), json!({"voice": 1}));
    let first = task(&server, "sales", "voice", 0, json!({}));
    let first = first["id"].as_str().unwrap();
    let r = reservation_of(&server, &ann).unwrap();
    assert_eq!(
        act(&server, &ann, &format!("/agent/v1/reservations/{r}/accept")).0,
        200
    );
    let second = task(&server, "sales", "voice", 0, json!({}));
    let second = second["id"].as_str().unwrap();

    // The conversation ends: wrapping, and Ann is still busy with it.
    let (status, wrapping) = act(&server, &ann, &format!("/agent/v1/tasks/{first}/wrap"));
    assert_eq!(status, 200, "{wrapping}");
    assert_eq!(wrapping["status"], "wrapping");
    let mine = me(&server, &ann);
    assert_eq!(mine["busy"]["voice"], 1, "{mine}");
    assert_eq!(mine["tasks"][0]["status"], "wrapping", "{mine}");
    assert!(
        mine["reservation"].is_null(),
        "no offer while wrapping up: {mine}"
    );

    // Completing needs one of the queue's codes.
    let (status, missing) = act(&server, &ann, &format!("/agent/v1/tasks/{first}/complete"));
    assert_eq!(status, 400, "{missing}");
    let message = missing["error"]["message"].as_str().unwrap();
    assert!(message.contains("sale, no-sale"), "{missing}");
    let (status, wrong) = server.call_as(
        Some(&ann),
        "POST",
        &format!("/agent/v1/tasks/{first}/complete"),
        Some(json!({"disposition": "maybe"})),
    );
    assert_eq!(status, 400, "{wrong}");
    let (status, done) = server.call_as(
        Some(&ann),
        "POST",
        &format!("/agent/v1/tasks/{first}/complete"),
        Some(json!({"disposition": "sale", "wrapup": "two seats"})),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["disposition"], "sale");
    let (_, stored) = server.call("GET", &format!("/v1/tasks/{first}"), None);
    assert_eq!(stored["disposition"], "sale", "{stored}");

    // Free again: the waiting task is offered. Its wrap-up is left to run out.
    let r = reservation_of(&server, &ann).expect("offered once the wrap-up is done");
    assert_eq!(
        act(&server, &ann, &format!("/agent/v1/reservations/{r}/accept")).0,
        200
    );
    assert_eq!(
        act(&server, &ann, &format!("/agent/v1/tasks/{second}/wrap")).0,
        200
    );
    wait_until("the wrap-up time to run out", || {
        server.call("GET", &format!("/v1/tasks/{second}"), None).1["status"] == "completed"
    });
    let (_, ended) = server.call("GET", &format!("/v1/tasks/{second}"), None);
    assert_eq!(ended["reason"], "wrap-up time ran out", "{ended}");
    assert_eq!(me(&server, &ann)["busy"]["voice"], 0);
}

#[test]
fn the_agent_socket_hears_every_change_of_the_agents_world() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    put(
        &server,
        "/v1/queues/sales",
        json!({"members": r#""sales" in worker.skills"#, "reservation_timeout_secs": 30, "wrapup_secs": 1}),
    );
    // The offer left unanswered has a queue of its own with a short timeout: the offers the
    // test answers have time to be answered on a busy machine.
    put(
        &server,
        "/v1/queues/quick",
        json!({"members": r#""sales" in worker.skills"#, "reservation_timeout_secs": 1}),
    );
    put(
        &server,
        "/v1/queues/vip",
        json!({"members": r#""vip" in worker.skills"#}),
    );
    let token = agent(
        &server,
        "sara",
        json!({"skills": ["sales"]}),
        json!({"voice": 1}),
    );
    let mut desk = crate::support::desk(&server, &token);
    let mut next = || desk.next();
    assert_eq!(next()["type"], "snapshot");

    // An offer a supervisor withdraws by moving its task.
    let moved = task(&server, "sales", "voice", 0, json!({}));
    assert_eq!(next()["type"], "reservation");
    let (status, _) = server.call(
        "POST",
        &format!("/v1/tasks/{}/move", moved["id"].as_str().unwrap()),
        Some(json!({"queue": "vip"})),
    );
    assert_eq!(status, 200);
    let pushed = next();
    assert_eq!(pushed["type"], "rescinded", "{pushed}");
    assert_eq!(pushed["reason"], "moved to queue vip");
    assert_eq!(pushed["task"]["id"], moved["id"]);

    // An offer left unanswered.
    let missed = task(&server, "quick", "voice", 0, json!({}));
    assert_eq!(next()["type"], "reservation");
    let pushed = next();
    assert_eq!(pushed["type"], "timed-out", "{pushed}");
    assert_eq!(pushed["task"]["id"], missed["id"]);
    let (status, _) = server.call(
        "POST",
        &format!("/v1/tasks/{}/cancel", missed["id"].as_str().unwrap()),
        Some(json!({})),
    );
    assert_eq!(status, 200);

    // A supervisor changes Sara's activity.
    put(
        &server,
        "/v1/agents/sara/activity",
        json!({"activity": "break"}),
    );
    let pushed = next();
    assert_eq!(pushed["type"], "activity", "{pushed}");
    assert_eq!(pushed["activity"], "break");
    put(
        &server,
        "/v1/agents/sara/activity",
        json!({"activity": "available"}),
    );
    assert_eq!(next()["activity"], "available");

    // A task she holds is canceled by a supervisor.
    let held = task(&server, "sales", "voice", 0, json!({}));
    let offer = next();
    assert_eq!(offer["task"]["id"], held["id"], "{offer}");
    let r = offer["reservation"]["id"].as_str().unwrap();
    assert_eq!(
        act(
            &server,
            &token,
            &format!("/agent/v1/reservations/{r}/accept")
        )
        .0,
        200
    );
    let (status, _) = server.call(
        "POST",
        &format!("/v1/tasks/{}/cancel", held["id"].as_str().unwrap()),
        Some(json!({"reason": "duplicate ticket"})),
    );
    assert_eq!(status, 200);
    let pushed = next();
    assert_eq!(pushed["type"], "canceled", "{pushed}");
    assert_eq!(pushed["reason"], "duplicate ticket");

    // A caller she talks to hangs up: wrap-up begins, and the clock ends it.
    let contact = server.start_contact("ivr-menu", "+15551230077");
    let id = contact["contact"].as_str().unwrap().to_string();
    server.press(&id, "1");
    let offer = next();
    assert_eq!(offer["task"]["contact"], json!(id), "{offer}");
    let r = offer["reservation"]["id"].as_str().unwrap();
    assert_eq!(
        act(
            &server,
            &token,
            &format!("/agent/v1/reservations/{r}/accept")
        )
        .0,
        200
    );
    server.call(
        "POST",
        &format!("/v1/contacts/{id}/events"),
        Some(json!({"type": "hangup"})),
    );
    let pushed = next();
    assert_eq!(pushed["type"], "wrapping", "{pushed}");
    assert_eq!(pushed["reason"], "the customer left");
    let pushed = next();
    assert_eq!(pushed["type"], "completed", "{pushed}");
    assert_eq!(pushed["reason"], "wrap-up time ran out");
    // Answered, then ended by the caller: not abandoned.
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(stats["tasks"]["answered-in-window"], 2, "{stats}");
}
