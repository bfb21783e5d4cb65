//! The API refuses requests without the right bearer token, with a JSON error that says what
//! to send; health and metrics stay open for probes.

use crate::support::Server;

#[test]
fn admin_api_refuses_missing_and_wrong_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for token in [None, Some("sbt_0000"), Some("not-even-a-token"), Some("")] {
        for (method, path) in [
            ("GET", "/v1/flows"),
            ("POST", "/v1/flows/main/versions"),
            ("POST", "/v1/contacts"),
            ("GET", "/v1/audit"),
        ] {
            let (status, body) = server.call_as(token, method, path, None);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Authorization: Bearer")
            );
        }
    }
    let (status, _) = server.call_as(None, "GET", "/healthz", None);
    assert_eq!(status, 200);
    let (status, flows) = server.call("GET", "/v1/flows", None);
    assert_eq!((status, flows), (200, serde_json::json!([])));

    // Only the token's hash is on disk, in the store.
    let store = std::fs::read_dir(dir.path().join("store")).unwrap();
    for file in store.flatten() {
        if file.path().is_file() {
            let bytes = std::fs::read(file.path()).unwrap();
            let needle = server.token.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the plain token is in {}",
                file.path().display()
            );
        }
    }
}

#[test]
fn malformed_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, body) = server.call_raw(
        "POST",
        "/v1/contacts",
        "application/json",
        b"{not json".to_vec(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, body) = server.call(
        "POST",
        "/v1/contacts",
        Some(serde_json::json!({"from": "+1", "to": "+15550100"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_flow"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("switchboard bind")
    );
    let (status, body) = server.call(
        "POST",
        "/v1/contacts/nope/events",
        Some(serde_json::json!({"type": "no-input"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_contact"))
    );
    let (status, body) = server.call(
        "POST",
        "/v1/contacts/nope/events",
        Some(serde_json::json!({"type": "teleport"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, body) = server.call("GET", "/v2/whatever", None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = server.call_raw(
        "POST",
        "/v1/flows/main/versions",
        "application/wasm",
        Vec::new(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("empty_body"))
    );
    let (status, body) = server.call_raw(
        "POST",
        "/v1/customers",
        "text/csv",
        b"name,phone\nAda,+1\n".to_vec(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_customers"))
    );
}
