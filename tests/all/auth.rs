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

/// With `api.requests_per_second`, one person's burst gets 429 with `Retry-After` and a JSON
/// error, while another person's requests go on; with `api.metrics_token`, `/metrics` needs
/// it.
#[test]
fn a_person_over_their_rate_waits_and_others_do_not_and_metrics_can_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[
            ("SWITCHBOARD_API_REQUESTS_PER_SECOND", "5"),
            ("SWITCHBOARD_METRICS_TOKEN", "m3trics-secret"),
        ],
    );
    let (status, _) = server.call(
        "POST",
        "/v1/users",
        Some(serde_json::json!({"name": "sam", "role": "supervisor"})),
    );
    assert_eq!(status, 201);
    let (status, made) = server.call(
        "POST",
        "/v1/users/sam/tokens",
        Some(serde_json::json!({"label": "t"})),
    );
    assert_eq!(status, 201, "{made}");
    let sam = made["token"].as_str().unwrap().to_string();

    // The body and the Retry-After header are read from the same refusal: the bucket refills
    // while the test runs, so a second request could already pass.
    let mut limited = None;
    for _ in 0..40 {
        let (status, text, retry) =
            crate::support::raw_request(&server.url, Some(&server.token), "GET", "/v1/queues");
        if status == 429 {
            limited = Some((text, retry));
            break;
        }
        assert_eq!(status, 200, "{text}");
    }
    let (text, retry) = limited.expect("the burst ran out");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in"),
        "{body}"
    );
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    let (status, body) = server.call_as(Some(&sam), "GET", "/v1/queues", None);
    assert_eq!(status, 200, "another person is not slowed: {body}");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (status, body) = server.call("GET", "/v1/queues", None);
    assert_eq!(status, 200, "after waiting: {body}");

    // A body over the cap of a JSON route is refused (components and prompts have their own).
    std::thread::sleep(std::time::Duration::from_millis(400));
    // The server reads up to the cap (2 MiB), then answers and closes. The test declares
    // 3 MiB and sends one byte past the cap: a client still writing when the server closes
    // can have the connection reset under it before it reads the answer (a timing of the
    // machine, not something the server decides).
    let (status, body) = post_partly(&server, "/v1/contacts", 3 << 20, (2 << 20) + 1);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");

    let (status, _, _) = crate::support::raw_request(&server.url, None, "GET", "/metrics");
    assert_eq!(status, 401);
    let (status, _, _) =
        crate::support::raw_request(&server.url, Some("m3trics-secret"), "GET", "/metrics");
    assert_eq!(status, 200);
}

/// POSTs to `path` the headers of a JSON body of `length` bytes, sends `sent` bytes of it
/// (spaces), and reads the answer (status and JSON body).
fn post_partly(
    server: &Server,
    path: &str,
    length: usize,
    sent: usize,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let host = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let wait = Some(std::time::Duration::from_secs(30));
    stream.set_read_timeout(wait).unwrap();
    stream.set_write_timeout(wait).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        server.token
    )
    .unwrap();
    stream.write_all(&vec![b' '; sent]).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("the server answers");
        assert!(
            n > 0,
            "closed before a whole answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_string();
        let answer_len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length");
        let body = &got[end + 4..];
        if body.len() >= answer_len {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, serde_json::from_slice(&body[..answer_len]).unwrap());
        }
    }
}
