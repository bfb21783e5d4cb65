//! The chat widget in a real browser: headless Chromium (Debian's package) driven by
//! Playwright opens the demo page, chats through the order-status flow, gets routed to an agent
//! and sees the agent's reply, which this test sends through the agent API.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::chat_server;

#[test]
fn the_widget_chats_gets_routed_and_shows_the_agents_reply() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test.sh (it runs npm ci in tests/browser)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = chat_server(dir.path());

    // Kept in the target directory for a person to look at after a run.
    let screenshot =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-widget.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut browser = Command::new("node")
        .current_dir(&browser_dir)
        .arg("chat.mjs")
        .arg(&server.url)
        .arg(&screenshot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");

    // Play the agent: accept the reservation when it comes, then answer the customer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut replied = false;
    while !replied && Instant::now() < deadline {
        if let Ok(Some(status)) = browser.try_wait() {
            panic!("the browser script ended early ({status})");
        }
        let (_, me) = server.call_as(Some(&token), "GET", "/agent/v1/me", None);
        if let Some(reservation) = me["reservation"]["id"].as_str() {
            let (status, task) = server.call_as(
                Some(&token),
                "POST",
                &format!("/agent/v1/reservations/{reservation}/accept"),
                Some(json!({})),
            );
            assert_eq!(status, 200, "{task}");
            std::thread::sleep(Duration::from_millis(300));
            let path = format!("/agent/v1/tasks/{}/messages", task["id"].as_str().unwrap());
            let (status, _) = server.call_as(
                Some(&token),
                "POST",
                &path,
                Some(json!({"text": "Hello from the agent desk!"})),
            );
            assert_eq!(status, 200);
            replied = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(replied, "the chat never reached the agent");
    let output = browser.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("widget conversation ok"), "{stdout}");
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(
        &png[..8],
        b"\x89PNG\r\n\x1a\n",
        "a screenshot of the conversation was taken"
    );
}

/// The agent desk in a real browser beside the widget: signed out, the desk sends the agent
/// to the sign-in form; signed in, she goes available, is offered the widget's chat with the
/// customer's name and what the customer wrote in the flow, accepts, exchanges messages,
/// wraps up with a required disposition code and finds the contact in her history, also
/// after a reload. Screenshots of the desk go to `target/`.
#[test]
fn an_agent_signs_in_takes_a_chat_from_the_widget_and_wraps_it_up() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test.sh (it runs npm ci in tests/browser)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = chat_server(dir.path());
    let queue = json!({"dispositions": ["resolved", "follow-up"], "disposition_required": true});
    assert_eq!(server.call("PUT", "/v1/queues/support", Some(queue)).0, 200);
    assert_eq!(
        server.call("PUT", "/v1/queues/billing", Some(json!({}))).0,
        200
    );
    let user = json!({"name": "sara", "role": "agent", "password": "sara's long password"});
    assert_eq!(server.call("POST", "/v1/users", Some(user)).0, 201);
    let offline = json!({"activity": "offline"});
    assert_eq!(
        server
            .call("PUT", "/v1/agents/sara/activity", Some(offline))
            .0,
        200
    );

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for name in [
        "browser-desk.png",
        "browser-desk-offer.png",
        "browser-desk-widget.png",
    ] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let mut browser = Command::new("node")
        .current_dir(&browser_dir)
        .arg("desk.mjs")
        .arg(&server.url)
        .arg(&shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    while browser.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    if browser.try_wait().unwrap().is_none() {
        let _ = browser.kill();
    }
    let output = browser.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("desk ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // What the browser did is what the API says.
    let (status, history) = server.call_as(Some(&token), "GET", "/agent/v1/history", None);
    assert_eq!(status, 200, "{history}");
    let done = &history[0];
    assert_eq!(done["status"], "completed", "{history}");
    assert_eq!(done["disposition"], "resolved", "{history}");
    assert_eq!(done["wrapup"], "Parcel tracking sent.", "{history}");
    let (_, tasks) = server.call("GET", "/v1/tasks", None);
    let moved = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["queue"] == "billing")
        .unwrap_or_else(|| panic!("the transferred chat waits in billing: {tasks}"));
    assert_eq!(moved["status"], "pending", "{moved}");
    assert_eq!(moved["attributes"]["transferred_from"], "sara", "{moved}");
    for name in [
        "browser-desk.png",
        "browser-desk-offer.png",
        "browser-desk-widget.png",
    ] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} was taken");
    }
}

/// The console in a real browser: an agent is refused it (403); a developer, sent to sign in
/// first, deploys a canary from the page and aborts it; a supervisor's wallboard shows a task
/// arrive and leave within 2 s with the API's numbers. Screenshots go to `target/`.
#[test]
fn the_console_deploys_and_aborts_a_canary_and_its_wallboard_follows_the_queue() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    let dir = tempfile::tempdir().unwrap();
    let flow = format!("main={}", crate::support::guest("ivr-menu").display());
    // Open around the clock: the menu's default hours would end a contact at night.
    let server = crate::support::Server::start(
        dir.path(),
        &[
            "--deploy",
            &flow,
            "--setting",
            "main:days=mon-sun",
            "--setting",
            "main:open=00:00",
            "--setting",
            "main:close=24:00",
        ],
    );
    assert_eq!(
        server.call("PUT", "/v1/queues/support", Some(json!({}))).0,
        200
    );
    for (name, role) in [
        ("ann", "agent"),
        ("dee", "developer"),
        ("sam", "supervisor"),
        ("root", "admin"),
    ] {
        let user =
            json!({"name": name, "role": role, "password": format!("{name}'s long password")});
        assert_eq!(server.call("POST", "/v1/users", Some(user)).0, 201);
    }
    let (status, _) = server.call(
        "PUT",
        "/v1/agents/ann",
        Some(json!({"attributes": {}, "capacity": {"chat": 1}})),
    );
    assert_eq!(status, 200);
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let canary = crate::support::guest("ivr-menu-v2");
    let output = Command::new("node")
        .current_dir(&browser_dir)
        .arg("console.mjs")
        .arg(&server.url)
        .arg(&shots)
        .arg(&server.token)
        .arg(&canary)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("console ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, audit) = server.call("GET", "/v1/audit", None);
    let by = |action: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["action"] == action)
            .map(|e| e["who"].clone())
    };
    assert_eq!(by("deploy-canary"), Some(json!("dee")), "{audit}");
    assert_eq!(by("abort"), Some(json!("dee")), "{audit}");
    let (_, kim) = server.call("GET", "/v1/users/kim", None);
    assert_eq!(kim["role"], "developer", "{kim}");
    for name in [
        "browser-console.png",
        "browser-console-canary.png",
        "browser-console-people.png",
        "browser-console-reports.png",
    ] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} was taken");
    }
}
