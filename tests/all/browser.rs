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
