//! `switchboard new` + `switchboard build` + `switchboard deploy` from a clean directory, for
//! each language, as the README documents; and what `build` says when a tool is missing.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{Server, cli, run_switchboard, spoken};

fn switchboard(dir: &Path, args: &[&str]) -> (bool, String) {
    run_switchboard(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .current_dir(dir)
            .args(args),
    )
}

/// Creates, builds and deploys project `name` in `lang`, then talks to it over chat.
fn new_build_deploy_talk(lang: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = switchboard(dir.path(), &["new", name, "--lang", lang]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("switchboard build {name}")), "{out}");
    // Builds land where the user's cargo puts them: a shared CARGO_TARGET_DIR (common in
    // shells and CI) is honoured, not guessed around.
    let target = tempfile::tempdir().unwrap();
    let (ok, out) = run_switchboard(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .current_dir(dir.path())
            .env("CARGO_TARGET_DIR", target.path())
            .args(["build", name]),
    );
    assert!(ok, "{out}");
    let component = dir.path().join(name).join(format!("{name}.wasm"));
    assert!(component.exists(), "{out}");

    let server = Server::start(&dir.path().join("data"), &["--queue", "support"]);
    let (ok, out) = cli(
        &server,
        &["deploy", component.to_str().unwrap(), "--flow", name],
    );
    assert!(ok, "{out}");
    let (status, report) = server.call(
        "POST",
        "/v1/contacts",
        Some(json!({"channel": "chat", "from": "visitor", "to": "chat:web", "flow": name})),
    );
    assert_eq!(status, 201, "{report}");
    assert_eq!(spoken(&report), ["Hello! Reply AGENT to talk to a person."]);
    let contact = report["contact"].as_str().unwrap();
    let report = server.message(contact, "AGENT please");
    assert_eq!(report["status"]["queue"], "support", "{report}");
}

#[test]
fn a_new_python_project_builds_deploys_and_talks() {
    new_build_deploy_talk("python", "hello-py");
}

#[test]
fn a_new_rust_project_builds_deploys_and_talks() {
    new_build_deploy_talk("rust", "hello-rs");
}

#[test]
fn a_new_typescript_project_builds_deploys_and_talks() {
    new_build_deploy_talk("js", "hello-ts");
}

#[test]
fn build_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = switchboard(dir.path(), &["build"]);
    assert!(!ok);
    assert!(out.contains("not a flow project"), "{out}");
    let (ok, out) = switchboard(dir.path(), &["new", "Bad_Name"]);
    assert!(!ok);
    assert!(out.contains("is not a flow name"), "{out}");

    let (ok, _) = switchboard(dir.path(), &["new", "lonely", "--lang", "python"]);
    assert!(ok);
    let (ok, out) = switchboard(dir.path(), &["new", "lonely", "--lang", "python"]);
    assert!(!ok && out.contains("already exists"), "{out}");
    // Without componentize-py on the PATH.
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .args(["build", "lonely"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("componentize-py not found: pip install componentize-py=="),
        "{text}"
    );
}
