//! CRM lookups served by a connector component: the sample REST connector (`connectors/rest-crm`)
//! against a real HTTP CRM on loopback. The flow (`order-status`) calls `crm.lookup` and never
//! knows which connector answers; the host holds the connector to its allowlist, timeout and
//! response cap, and caches answers per contact.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, cli, guest, run_switchboard, spoken};

const ADA: &str = "+15551230001";
const STRANGER: &str = "+15550000000";
/// A number the CRM never answers for.
const HANGS: &str = "+15559990000";
/// A number the CRM answers with a 2 MiB record.
const HUGE: &str = "+15559990001";

/// A REST CRM on an ephemeral loopback port: `GET /api/customers?phone=...`.
struct Crm {
    port: u16,
    /// Every request line, with its Authorization header.
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Crm {
    fn start() -> Crm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, count, stopping) = (requests.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                let (seen, stopping) = (seen.clone(), stopping.clone());
                std::thread::spawn(move || answer(stream, &seen, &stopping));
            }
        });
        Crm {
            port,
            requests,
            connections,
            stop,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Crm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(stream: TcpStream, seen: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut auth = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            auth = value.trim().to_string();
        }
    }
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    seen.lock().unwrap().push(format!("{target} {auth}"));
    let body = if target.ends_with(&encode(HANGS)) {
        // Hold the connection open without a word until the test ends.
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    } else if target.ends_with(&encode(ADA)) {
        json!([{"id": "c-7", "first_name": "Ada", "last_name": "Lovelace", "phone": ADA, "tier": "vip", "since": 2019}]).to_string()
    } else if target.ends_with(&encode(HUGE)) {
        json!([{"id": "c-9", "name": "Huge", "notes": "x".repeat(2 << 20)}]).to_string()
    } else {
        "[]".to_string()
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn encode(phone: &str) -> String {
    phone.replace('+', "%2B")
}

/// A server running order-status (order 1001 shipped), the CRM connector not yet deployed.
fn server(dir: &std::path::Path) -> Server {
    let flow = format!("order-status={}", guest("order-status").display());
    Server::start(
        dir,
        &[
            "--deploy",
            &flow,
            "--setting",
            "order-status:orders=1001:shipped",
        ],
    )
}

/// Deploys the REST connector as `crm` with the CLI; returns what it printed.
fn deploy_connector(server: &Server, extra: &[&str]) -> String {
    let connector = guest("rest-crm");
    let mut args = vec!["deploy", connector.to_str().unwrap(), "--flow", "crm"];
    args.extend(extra);
    let (ok, out) = cli(server, &args);
    assert!(ok, "{out}");
    out
}

fn configure(server: &Server, crm: &Crm) {
    let (status, body) = server.call(
        "PUT",
        "/v1/flows/crm/settings",
        Some(
            json!({"base_url": format!("http://127.0.0.1:{}/api", crm.port), "api_key": "s3cret"}),
        ),
    );
    assert_eq!(status, 200, "{body}");
}

/// Starts an SMS conversation from `from`; returns the contact id and the greeting.
fn text_in(server: &Server, from: &str) -> (String, Value) {
    let (status, report) = server.call(
        "POST",
        "/v1/contacts",
        Some(json!({"channel": "sms", "from": from, "to": "+15550200", "flow": "order-status"})),
    );
    assert_eq!(status, 201, "{report}");
    (report["contact"].as_str().unwrap().to_string(), report)
}

/// The results of the contact's `crm.lookup` calls, in order.
fn lookups(server: &Server, contact: &str) -> Vec<Value> {
    let (_, trace) = server.call("GET", &format!("/v1/contacts/{contact}/trace"), None);
    trace
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|step| step["host_calls"].as_array().cloned().unwrap_or_default())
        .filter(|call| call["call"] == "crm.lookup")
        .map(|call| call["result"].clone())
        .collect()
}

/// Why the contact's first `crm.lookup` failed.
fn first_lookup_error(server: &Server, contact: &str) -> String {
    let first = &lookups(server, contact)[0];
    first["Err"]
        .as_str()
        .unwrap_or_else(|| panic!("the lookup did not fail: {first}"))
        .to_string()
}

#[test]
fn a_rest_crm_answers_every_lookup_through_the_connector_once_per_contact() {
    let crm = Crm::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let allow = format!("127.0.0.1:{}", crm.port);
    let out = deploy_connector(&server, &["--allow", &allow, "--timeout-ms", "3000"]);
    assert!(out.contains("flow crm: version 1 is live"), "{out}");
    assert!(out.contains(&format!("it may reach {allow} only")), "{out}");
    configure(&server, &crm);

    // Ada is known to the CRM: greeted by name, then addressed by name again. The flow looks
    // her up at both steps; the CRM is asked once.
    let (ada, greeting) = text_in(&server, ADA);
    assert_eq!(greeting["fault"], Value::Null, "{greeting}");
    assert!(
        spoken(&greeting)[0].starts_with("Hi Ada, this is Acme."),
        "{greeting}"
    );
    assert_eq!(
        spoken(&server.message(&ada, "1001")),
        ["Ada, order 1001 is shipped."]
    );
    assert_eq!(
        crm.requests(),
        [format!(
            "/api/customers?phone={} Bearer s3cret",
            encode(ADA)
        )]
    );
    let found = lookups(&server, &ada);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0]["Ok"]["name"], "Ada Lovelace");
    assert_eq!(found[0]["Ok"]["tier"], "vip");
    assert_eq!(found[0]["Ok"]["attributes"], json!([["since", "2019"]]));
    assert_eq!(found[1], found[0]);

    // A stranger: the CRM knows nobody by that number, the flow greets plainly.
    let (stranger, greeting) = text_in(&server, STRANGER);
    assert!(spoken(&greeting)[0].starts_with("Hi, this is Acme."));
    assert_eq!(lookups(&server, &stranger), [json!({"Ok": null})]);
    assert_eq!(crm.requests().len(), 2);

    // Another contact of Ada's asks the CRM again: the cache is per contact.
    text_in(&server, ADA);
    assert_eq!(crm.requests().len(), 3);
    assert_eq!(
        server.metric(r#"switchboard_crm_lookups_total{result="cached"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"switchboard_crm_lookups_total{result="found"}"#),
        2.0
    );

    // The same connector built against contract 0.1.0 (as deployed before 0.2.0) still answers.
    let old = guest("rest-crm-0-1");
    let (ok, out) = cli(
        &server,
        &[
            "deploy",
            old.to_str().unwrap(),
            "--flow",
            "crm",
            "--allow",
            &allow,
        ],
    );
    assert!(ok && out.contains("flow crm: version 2 is live"), "{out}");
    let (_, version) = server.call("GET", "/v1/flows/crm/versions/2", None);
    assert_eq!(version["world"], "switchboard:flow/crm-connector@0.1.0");
    let (ada, greeting) = text_in(&server, ADA);
    assert!(
        spoken(&greeting)[0].starts_with("Hi Ada, this is Acme."),
        "{greeting}"
    );
    assert_eq!(lookups(&server, &ada)[0]["Ok"]["tier"], "vip");
    assert_eq!(crm.requests().len(), 4);
}

/// DNS rebinding defeated: an allowlisted name that resolves to a loopback address is refused
/// before any connection (the error names the address), unless the allowlist names the
/// address too; then the request goes to the address checked.
#[test]
fn an_allowed_name_resolving_to_loopback_is_refused_unless_the_address_is_listed() {
    let crm = Crm::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let by_name = format!("localhost:{}", crm.port);
    deploy_connector(&server, &["--allow", &by_name]);
    let (status, body) = server.call(
        "PUT",
        "/v1/flows/crm/settings",
        Some(json!({"base_url": format!("http://{by_name}/api"), "api_key": "s3cret"})),
    );
    assert_eq!(status, 200, "{body}");
    let (contact, greeting) = text_in(&server, ADA);
    assert_eq!(greeting["fault"], Value::Null, "{greeting}");
    assert!(
        spoken(&greeting)[0].starts_with("Hi, this is Acme."),
        "{greeting}"
    );
    let error = first_lookup_error(&server, &contact);
    assert!(
        error.contains("resolves to") && error.contains("127.0.0.1"),
        "{error}"
    );
    assert_eq!(crm.connections.load(Ordering::Relaxed), 0, "no connection");

    deploy_connector(&server, &["--allow", &by_name, "--allow", "127.0.0.1"]);
    let (_, greeting) = text_in(&server, ADA);
    assert!(spoken(&greeting)[0].starts_with("Hi Ada"), "{greeting}");
    assert!(crm.connections.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_connector_reaches_only_its_allowlist_and_a_hanging_or_flooding_crm_is_cut_off() {
    let crm = Crm::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());

    // Version 1 may reach crm.example.test only: the request to the loopback CRM fails in the
    // host, before any connection, and the flow carries on without a name.
    deploy_connector(&server, &["--allow", "crm.example.test"]);
    configure(&server, &crm);
    let (contact, greeting) = text_in(&server, ADA);
    assert_eq!(greeting["fault"], Value::Null, "{greeting}");
    assert!(spoken(&greeting)[0].starts_with("Hi, this is Acme."));
    let error = first_lookup_error(&server, &contact);
    assert!(
        error.contains("not in the connector's allowlist"),
        "{error}"
    );
    assert!(
        error.contains(&format!("127.0.0.1:{}", crm.port)),
        "{error}"
    );
    assert_eq!(crm.connections.load(Ordering::Relaxed), 0, "no connection");

    // Version 2 may reach it, with a lookup timeout three times the step deadline the test
    // server runs with (500 ms): the time spent waiting on the CRM is not held against the
    // flow, so the step does not fault; the hanging CRM is cut at 1.5 s, not waited for.
    deploy_connector(
        &server,
        &[
            "--allow",
            &format!("127.0.0.1:{}", crm.port),
            "--timeout-ms",
            "1500",
            "--max-response-kib",
            "64",
        ],
    );
    let asked = Instant::now();
    let (contact, greeting) = text_in(&server, HANGS);
    let waited = asked.elapsed();
    assert_eq!(greeting["fault"], Value::Null, "{greeting}");
    assert!(spoken(&greeting)[0].starts_with("Hi, this is Acme."));
    let error = first_lookup_error(&server, &contact);
    assert!(error.contains("did not answer within"), "{error}");
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(10),
        "cut at the timeout, not before and not a stall: {waited:?}"
    );

    // A record over the response cap is refused, the flow carries on.
    let (contact, greeting) = text_in(&server, HUGE);
    assert_eq!(greeting["fault"], Value::Null, "{greeting}");
    let error = first_lookup_error(&server, &contact);
    assert!(error.contains("response cap"), "{error}");

    // Ada through version 2, then rolled back to version 1: its allowlist comes back with it.
    let (_, greeting) = text_in(&server, ADA);
    assert!(spoken(&greeting)[0].starts_with("Hi Ada"), "{greeting}");
    let (ok, out) = cli(&server, &["rollback", "crm", "1"]);
    assert!(ok, "{out}");
    let before = crm.connections.load(Ordering::Relaxed);
    let (contact, greeting) = text_in(&server, ADA);
    assert!(spoken(&greeting)[0].starts_with("Hi, this is Acme."));
    assert!(first_lookup_error(&server, &contact).contains("allowlist"));
    assert_eq!(crm.connections.load(Ordering::Relaxed), before);
    assert_eq!(
        server.metric(r#"switchboard_crm_lookups_total{result="error"}"#),
        4.0
    );
}

#[test]
fn connectors_are_deployed_as_crm_with_an_allowlist_and_flows_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let connector = std::fs::read(guest("rest-crm")).unwrap();
    let flow = std::fs::read(guest("order-status")).unwrap();
    let deploy = |name: &str, query: &str, bytes: &[u8]| {
        server.call_raw(
            "POST",
            &format!("/v1/flows/{name}/versions{query}"),
            "application/wasm",
            bytes.to_vec(),
        )
    };
    let refused = |(status, body): (u16, Value), words: &str| {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_connector", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
    };
    for (name, query, bytes, words) in [
        ("crm", "", &connector, "--allow"),
        (
            "lookups",
            "?allow=crm.example.test",
            &connector,
            "deploy it as the flow named \"crm\"",
        ),
        (
            "crm",
            "?allow=https://crm.example.test/api",
            &connector,
            "without scheme or path",
        ),
        (
            "crm",
            "?allow=crm.example.test&timeout_ms=0",
            &connector,
            "timeout",
        ),
        (
            "crm",
            "?allow=crm.example.test",
            &flow,
            "kept for the CRM connector",
        ),
        (
            "order-status",
            "?allow=crm.example.test",
            &flow,
            "are for CRM connectors",
        ),
    ] {
        refused(deploy(name, query, bytes), words);
    }
    let (status, flows) = server.call("GET", "/v1/flows", None);
    assert_eq!(status, 200);
    assert_eq!(
        flows.as_array().unwrap().len(),
        1,
        "nothing deployed: {flows}"
    );

    let (status, body) = deploy(
        "crm",
        "?allow=crm.example.test,*.acme.test:8443&timeout_ms=800&max_response_kib=16",
        &connector,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["world"], "switchboard:flow/crm-connector@0.2.0");
    refused(
        deploy("crm", "?allow=crm.example.test&canary=10", &connector),
        "without a canary",
    );
    let (_, versions) = server.call("GET", "/v1/flows/crm/versions", None);
    assert_eq!(
        versions["versions"][0]["connector"],
        json!({"allow": ["crm.example.test", "*.acme.test:8443"], "timeout_ms": 800, "max_response_bytes": 16384})
    );
    let (ok, out) = run_switchboard(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["inspect", guest("rest-crm").to_str().unwrap()]),
    );
    assert!(ok, "{out}");
    assert!(out.contains("wasi:http/outgoing-handler"), "{out}");
    assert!(out.contains("crm-connector@0.2.0: deployable"), "{out}");
}
