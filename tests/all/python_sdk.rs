//! A flow written in Python with the SDK (`sdk/python`), built by componentize-py, deployed
//! into a running server and driven through a conversation like any other flow.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::support::{Server, spoken};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds flows/order-status-py with the SDK's build command.
fn build_order_status(out: &std::path::Path) -> PathBuf {
    let root = workspace();
    let output = out.join("order_status_py.wasm");
    let result = Command::new("python3")
        .current_dir(root.join("flows/order-status-py"))
        .env("PYTHONPATH", root.join("sdk/python"))
        .args(["-m", "switchboard_flow", "build", "app.py", "-o"])
        .arg(&output)
        .output()
        .expect("python3 runs");
    assert!(
        result.status.success(),
        "building the Python flow failed (is componentize-py installed? ./scripts/test.sh installs it):\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    output
}

#[test]
fn a_python_flow_is_built_deployed_and_holds_a_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let component = build_order_status(dir.path());
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, _) = server.call("PUT", "/v1/queues/support", Some(json!({})));
    assert_eq!(status, 200);
    let started = Instant::now();
    let (status, deployed) = server.deploy("order-status-py", &component);
    assert_eq!(status, 201, "{deployed}");
    eprintln!(
        "deployed the Python flow ({} bytes) in {:.1} s (compile {} ms)",
        std::fs::metadata(&component).unwrap().len(),
        started.elapsed().as_secs_f64(),
        deployed["compile_ms"]
    );
    let (status, _) = server.call(
        "PUT",
        "/v1/flows/order-status-py/settings",
        Some(json!({"orders": "1001:shipped,1002:being prepared"})),
    );
    assert_eq!(status, 200);

    let (status, report) = server.call(
        "POST",
        "/v1/contacts",
        Some(json!({"channel": "sms", "from": "+15551230001", "to": "+15550200", "flow": "order-status-py"})),
    );
    assert_eq!(status, 201, "{report}");
    assert!(
        spoken(&report)[0].starts_with("Hi, this is Acme."),
        "{report}"
    );
    let contact = report["contact"].as_str().unwrap().to_string();
    let say = |text: &str| server.message(&contact, text);
    assert_eq!(spoken(&say("where is 1001?")), ["Order 1001 is shipped."]);
    assert_eq!(spoken(&say("1002")), ["Order 1002 is being prepared."]);
    let handover = say("AGENT");
    assert_eq!(handover["status"]["state"], "queued", "{handover}");
    assert_eq!(handover["status"]["queue"], "support");
    // The flow's state is its dataclass, as JSON, readable in the trace.
    let (_, trace) = server.call("GET", &format!("/v1/contacts/{contact}/trace"), None);
    let last_state = trace.as_array().unwrap().last().unwrap()["state"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let state = base64::engine::general_purpose::STANDARD
        .decode(last_state)
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state, json!({"asked": ["1001", "1002"]}));
    let (_, session) = server.call("GET", &format!("/v1/contacts/{contact}"), None);
    assert_eq!(session["faults"], 0, "{session}");
}
