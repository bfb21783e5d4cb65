//! Replay: a recorded contact re-run against another version with its host calls fed back;
//! golden files as regression tests; deploys that check recent contacts first.

use std::process::Command;

use serde_json::json;

use crate::support::{cli, guest, ivr_server, queue};

#[test]
fn golden_contact_passes_on_its_version_and_shows_exactly_what_v2_changed() {
    let dir = tempfile::tempdir().unwrap();
    let customers = format!("{}/../examples/customers.csv", env!("CARGO_MANIFEST_DIR"));
    let server = ivr_server(dir.path(), &["--customers", customers.as_str()]);

    // A real contact on version 1: Grace calls and presses 2 for support.
    let contact = server.start_contact("ivr-menu", "+15551230002");
    let id = contact["contact"].as_str().unwrap().to_string();
    assert_eq!(queue(&server.press(&id, "2")).as_deref(), Some("support"));
    let v2 = guest("ivr-menu-v2");
    let (status, _) = server.call_raw(
        "POST",
        "/v1/flows/ivr-menu/versions?canary=0",
        "application/wasm",
        std::fs::read(&v2).unwrap(),
    );
    assert_eq!(status, 201);

    // Against its own version: identical, with the CRM answer taken from the recording.
    let (status, same) = server.call(
        "POST",
        &format!("/v1/contacts/{id}/replay"),
        Some(json!({"version": 1})),
    );
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["identical"], true, "{same}");

    // Against version 2: the menu prompt and the routing of "2" changed, nothing else.
    let (_, diff) = server.call(
        "POST",
        &format!("/v1/contacts/{id}/replay"),
        Some(json!({"version": 2})),
    );
    assert_eq!(diff["identical"], false);
    assert_eq!(diff["steps"][0]["same"], false);
    assert_eq!(diff["steps"][1]["same"], false);
    let (ok, text) = cli(&server, &["replay", &id, "--against", "2"]);
    assert!(ok, "{text}");
    let removed: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    let added: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("+ "))
        .collect();
    assert!(
        removed.iter().any(|l| l.contains("For support, press 2")),
        "{text}"
    );
    assert!(
        added
            .iter()
            .any(|l| l.contains("For billing and support, press 2")),
        "{text}"
    );
    assert!(
        removed.iter().any(|l| l.contains(r#""queue":"support""#)),
        "{text}"
    );
    assert!(
        added.iter().any(|l| l.contains(r#""queue":"billing""#)),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("Hello Grace") && (l.contains("- ") || l.contains("+ "))),
        "the unchanged greeting is not in the diff:\n{text}"
    );

    // Saved as a golden file, it is a test a flow author can run without a server.
    let golden = dir.path().join("grace-support.json");
    let (ok, text) = cli(
        &server,
        &[
            "replay",
            &id,
            "--against",
            "1",
            "--save",
            golden.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let test = |component: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "test",
                component.to_str().unwrap(),
                golden.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = test(&guest("ivr-menu"));
    assert!(ok, "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    let (ok, out) = test(&v2);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL") && out.contains("billing"), "{out}");
}

#[test]
fn deploy_checked_against_recent_contacts_refuses_changed_behaviour_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    for from in ["+15551230005", "+15551230006"] {
        let c = server.start_contact("ivr-menu", from);
        server.press(c["contact"].as_str().unwrap(), "1");
    }
    let v2 = guest("ivr-menu-v2");

    // The same component again passes the check.
    let (ok, text) = cli(
        &server,
        &[
            "deploy",
            guest("ivr-menu").to_str().unwrap(),
            "--flow",
            "ivr-menu",
            "--check-against-recent",
            "5",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "replayed the 2 most recent contacts of the live version: 0 behave differently"
        ),
        "{text}"
    );
    for from in ["+15551230005", "+15551230006", "+15551230008"] {
        let c = server.start_contact("ivr-menu", from);
        assert_eq!(c["version"], 2);
        server.press(c["contact"].as_str().unwrap(), "2");
    }
    // The changed menu is refused, with the diffs, and nothing changes.
    let (ok, text) = cli(
        &server,
        &[
            "deploy",
            v2.to_str().unwrap(),
            "--flow",
            "ivr-menu",
            "--check-against-recent",
            "2",
        ],
    );
    assert!(!ok);
    assert!(text.contains("409 behaviour_changed"), "{text}");
    assert!(
        text.contains("on 2 of the 2 most recent contacts"),
        "{text}"
    );
    assert!(text.contains("For billing and support, press 2"), "{text}");
    let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(versions["live"], 2);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    // --force deploys it anyway, and still shows what changed.
    let (ok, text) = cli(
        &server,
        &[
            "deploy",
            v2.to_str().unwrap(),
            "--flow",
            "ivr-menu",
            "--check-against-recent",
            "5",
            "--force",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("3 behave differently"), "{text}");
    let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(versions["live"], 3);

    // Bad input: an unknown contact, an unknown version.
    let (status, err) = server.call(
        "POST",
        "/v1/contacts/nope/replay",
        Some(json!({"version": 1})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_contact"))
    );
    let c = server.start_contact("ivr-menu", "+15551230007");
    let id = c["contact"].as_str().unwrap();
    let (status, err) = server.call(
        "POST",
        &format!("/v1/contacts/{id}/replay"),
        Some(json!({"version": 42})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_version"))
    );
    let (ok, text) = cli(&server, &["replay", "nope", "--against", "1"]);
    assert!(!ok && text.contains("there is no contact"), "{text}");
}
