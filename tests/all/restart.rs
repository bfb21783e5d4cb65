//! A contact in progress survives a server crash and restart, and continues on the version it
//! was pinned to even when a newer version went live meanwhile.

use crate::support::{Server, deploy_canary, guest, ivr_server, queue, spoken};

#[test]
fn session_survives_sigkill_and_stays_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let ivr = guest("ivr-menu");
    let deploy = format!("ivr-menu={}", ivr.display());
    let server = ivr_server(dir.path(), &[]);
    let contact = server.start_contact("ivr-menu", "+15551230001");
    let id = contact["contact"].as_str().unwrap().to_string();
    assert_eq!(contact["version"], 1);
    let invalid = server.press(&id, "7");
    assert_eq!(spoken(&invalid)[0], "Sorry, that is not a valid choice.");

    // The compiled artifact is cached under the component's hash and the engine's
    // compatibility hash, so a restart does not compile again.
    let sha = contact_version_sha(&server);
    let cached: Vec<String> = std::fs::read_dir(dir.path().join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached
            .iter()
            .any(|name| name.starts_with(&format!("{sha}-")) && name.ends_with(".cwasm")),
        "{cached:?}"
    );

    // A new version goes live, then the server dies without warning.
    assert_eq!(server.deploy("ivr-menu", &guest("chaos")).0, 201);
    server.kill();

    let server = Server::start(dir.path(), &[]);
    let (status, session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["version"], 1);
    assert_eq!(session["steps"], 2);

    // Its flow state survived too: two more invalid keys make three, and the menu gives up.
    server.press(&id, "8");
    let third = server.press(&id, "9");
    assert_eq!(
        third["version"], 1,
        "the contact stays on its pinned version"
    );
    assert_eq!(queue(&third).as_deref(), Some("agents"));

    let fresh = server.start_contact("ivr-menu", "+15551230002");
    assert_eq!(fresh["version"], 2, "new contacts take the live version");
    assert_eq!(spoken(&fresh)[0], "Chaos flow ready.");

    // Deploying at start-up is idempotent: a component that is already live is not
    // deployed again.
    drop(server);
    let server = Server::start(dir.path(), &["--deploy", deploy.as_str()]);
    drop(server);
    let server = Server::start(dir.path(), &["--deploy", deploy.as_str()]);
    let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        3,
        "{versions}"
    );
    assert_eq!(versions["live"], 3);
}

#[test]
fn a_second_server_on_the_same_data_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start(dir.path(), &[]);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another switchboard process"),
        "{stderr}"
    );
}

/// A server loads every flow's live version and canary before it listens: the first contacts
/// after a start (or on a node joining a cluster) never wait for a compile. The artifact cache
/// is removed first, so loading them is a real compile.
#[test]
fn live_and_canary_versions_are_loaded_before_the_server_listens() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    let (status, canary) = deploy_canary(&server, "canary=10");
    assert_eq!(status, 201, "{canary}");
    server.kill();
    std::fs::remove_dir_all(dir.path().join("artifacts")).unwrap();

    let server = Server::start(dir.path(), &[]);
    let (status, list) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(status, 200, "{list}");
    let loaded: Vec<(u64, bool)> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["loaded"] == true))
        .collect();
    assert_eq!(loaded, [(1, true), (2, true)], "{list}");
    assert_eq!(list["live"], 1, "{list}");
}

fn contact_version_sha(server: &Server) -> String {
    let (_, version) = server.call("GET", "/v1/flows/ivr-menu/versions/1", None);
    version["sha256"].as_str().unwrap().to_string()
}
