//! A flow written in TypeScript with the JavaScript SDK (`sdk/js`), built by jco's QuickJS
//! backend, deployed into a running server and driven through a chat like any other flow.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::support::{Server, spoken};

#[test]
fn a_typescript_flow_is_built_deployed_and_triages_a_chat() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let sample = root.join("flows/chat-triage-ts");
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("chat_triage.wasm");
    let built = Command::new("node")
        .current_dir(&sample)
        .arg(root.join("sdk/js/bin/switchboard-flow.js"))
        .args(["build", "flow.ts", "-o"])
        .arg(&component)
        .output()
        .expect("node runs");
    assert!(
        built.status.success(),
        "building the TypeScript flow failed (./scripts/test.sh runs npm ci in sdk/js and flows/chat-triage-ts):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let server = Server::start(&dir.path().join("data"), &["--queue", "billing"]);
    let started = Instant::now();
    let (status, deployed) = server.deploy("chat-triage", &component);
    assert_eq!(status, 201, "{deployed}");
    eprintln!(
        "deployed the TypeScript flow ({} bytes) in {:.1} s",
        std::fs::metadata(&component).unwrap().len(),
        started.elapsed().as_secs_f64()
    );
    let (status, report) = server.call(
        "POST",
        "/v1/contacts",
        Some(json!({"channel": "chat", "from": "ada@example.com", "to": "chat:web", "flow": "chat-triage"})),
    );
    assert_eq!(status, 201, "{report}");
    assert!(
        spoken(&report)[0].starts_with("Hi! What can we help you with"),
        "{report}"
    );
    let contact = report["contact"].as_str().unwrap().to_string();
    let report = server.message(&contact, "hello");
    assert!(
        spoken(&report)[0].starts_with("Sorry, I did not get that"),
        "{report}"
    );
    let report = server.message(&contact, "Refund for my invoice, urgent");
    assert_eq!(report["status"]["queue"], "billing", "{report}");
    assert_eq!(report["status"]["priority"], 5, "{report}");
    let (_, session) = server.call("GET", &format!("/v1/contacts/{contact}"), None);
    assert!(
        session["attributes"]
            .to_string()
            .contains("\"topic\",\"billing\""),
        "{session}"
    );
    assert_eq!(session["faults"], 0);
}
