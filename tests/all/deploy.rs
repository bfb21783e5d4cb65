//! Deploying: good components go live; bad ones are refused with a clear reason and the live
//! version does not change.

use crate::support::{Server, guest};

fn live_version(server: &Server, flow: &str) -> u64 {
    let (status, versions) = server.call("GET", &format!("/v1/flows/{flow}/versions"), None);
    assert_eq!(status, 200, "{versions}");
    versions["live"].as_u64().unwrap()
}

fn refused(server: &Server, bytes: Vec<u8>) -> String {
    let (status, body) =
        server.call_raw("POST", "/v1/flows/main/versions", "application/wasm", bytes);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "deploy_rejected");
    body["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn bad_components_are_refused_and_the_live_version_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, v1) = server.deploy("main", &guest("ivr-menu"));
    assert_eq!(status, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(live_version(&server, "main"), 1);

    let not_wasm = refused(&server, b"#!/bin/sh\necho hello\n".to_vec());
    assert!(not_wasm.contains("not a WebAssembly binary"), "{not_wasm}");

    let core = refused(
        &server,
        wat::parse_str("(module (func (export \"handle\")))").unwrap(),
    );
    assert!(
        core.contains("core WebAssembly module, not a component"),
        "{core}"
    );

    let other_export = wat::parse_str(
        r#"(component
            (core module $m (func (export "charge")))
            (core instance $i (instantiate $m))
            (func $charge (canon lift (core func $i "charge")))
            (export "charge" (func $charge)))"#,
    )
    .unwrap();
    let message = refused(&server, other_export);
    assert!(
        message.contains("not a flow component") && message.contains("handle"),
        "{message}"
    );

    let other_import = wat::parse_str(
        r#"(component (import "acme:billing/ledger" (instance (export "charge" (func)))))"#,
    )
    .unwrap();
    let message = refused(&server, other_import);
    assert!(
        message.contains("not a flow component") && message.contains("acme:billing/ledger"),
        "{message}"
    );

    let message = refused(&server, std::fs::read(guest("init-trap")).unwrap());
    assert!(
        message.contains("traps while being instantiated"),
        "{message}"
    );
    assert!(
        message.contains("failing during instantiation on purpose"),
        "the guest's panic message is shown: {message}"
    );

    let truncated = std::fs::read(guest("ivr-menu")).unwrap()[..2000].to_vec();
    let message = refused(&server, truncated);
    assert!(message.contains("does not compile"), "{message}");

    assert_eq!(
        live_version(&server, "main"),
        1,
        "no rejected deploy changed the live version"
    );
    let (_, versions) = server.call("GET", "/v1/flows/main/versions", None);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "no rejected deploy created a version"
    );
    let contact = server.start_contact("main", "+15551230001");
    assert_eq!(contact["version"], 1);
}

#[test]
fn versions_are_numbered_hashed_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (_, v1) = server.deploy("main", &guest("ivr-menu"));
    let (_, v2) = server.deploy("main", &guest("chaos"));
    assert_eq!(
        (v1["version"].as_u64(), v2["version"].as_u64()),
        (Some(1), Some(2))
    );
    assert_ne!(v1["sha256"], v2["sha256"]);
    assert_eq!(v2["world"], "switchboard:flow/flow@0.2.0");
    assert_eq!(v2["deployed_by"], "admin");
    let (status, one) = server.call("GET", "/v1/flows/main/versions/1", None);
    assert_eq!((status, &one["sha256"]), (200, &v1["sha256"]));
    let (status, missing) = server.call("GET", "/v1/flows/main/versions/9", None);
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "unknown_version");
    let (status, bad_name) = server.deploy("Main_Flow", &guest("ivr-menu"));
    assert_eq!(status, 400);
    assert_eq!(bad_name["error"]["code"], "invalid_flow_name");
    let (_, audit) = server.call("GET", "/v1/audit", None);
    let deploys: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "deploy")
        .collect();
    assert_eq!(deploys.len(), 2);
    assert_eq!(deploys[1]["detail"]["from"], 1);
    assert_eq!(deploys[1]["detail"]["to"], 2);
}
