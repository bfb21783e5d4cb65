//! People and roles: users with a role, their own API tokens, browser sessions with CSRF
//! protection, refusals that say why and change nothing, and the person in the audit trail.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, guest};

/// A request with any headers; the status, the `Set-Cookie` and `Retry-After` headers, and
/// the JSON body.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Option<String>, Option<String>, Value) {
    raw(
        server,
        method,
        path,
        headers,
        "application/json",
        body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    )
}

fn raw(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Option<String>, Option<String>, Value) {
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url))
        .header("Content-Type", content_type);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent
        .run(builder.body(body).unwrap())
        .expect("the server answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (cookie, retry) = (header("set-cookie"), header("retry-after"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        cookie,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Signs `name` in; returns the `Cookie` header to send and the session's CSRF token.
fn sign_in(server: &Server, name: &str, password: &str) -> (String, String) {
    let (status, cookie, _, body) = request(
        server,
        "POST",
        "/auth/sign-in",
        &[],
        Some(json!({"name": name, "password": password})),
    );
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    (pair, body["csrf"].as_str().unwrap().to_string())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn create_user(server: &Server, name: &str, role: &str, password: Option<&str>) {
    let (status, body) = server.call(
        "POST",
        "/v1/users",
        Some(json!({"name": name, "role": role, "password": password})),
    );
    assert_eq!(status, 201, "{body}");
    assert!(body.get("password").is_none(), "never the hash: {body}");
}

fn queues(server: &Server) -> Vec<String> {
    let (_, queues) = server.call("GET", "/v1/queues", None);
    queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_role_reaches_its_own_routes_and_the_audit_names_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (_, me) = server.call("GET", "/v1/me", None);
    assert_eq!(me, json!({"person": "admin", "role": "admin"}));
    create_user(&server, "sam", "supervisor", Some("sam's long password"));
    create_user(&server, "dee", "developer", None);
    let (status, made) = server.call(
        "POST",
        "/v1/users/dee/tokens",
        Some(json!({"label": "laptop"})),
    );
    assert_eq!(status, 201, "{made}");
    let dee = made["token"].as_str().unwrap().to_string();
    let dee_auth = format!("Bearer {dee}");

    // The developer deploys; may not define a queue nor see users.
    let bytes = std::fs::read(guest("ivr-menu")).unwrap();
    let (status, _, _, deployed) = raw(
        &server,
        "POST",
        "/v1/flows/main/versions",
        &[("Authorization", &dee_auth)],
        "application/wasm",
        bytes.clone(),
    );
    assert_eq!(status, 201, "{deployed}");
    let (status, _, _, refused) = request(
        &server,
        "PUT",
        "/v1/queues/sales",
        &[("Authorization", &dee_auth)],
        Some(json!({})),
    );
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dee is a developer"),
        "{refused}"
    );
    let (status, _, _, refused) = request(
        &server,
        "GET",
        "/v1/users",
        &[("Authorization", &dee_auth)],
        None,
    );
    assert_eq!(status, 403, "{refused}");
    let had = queues(&server);
    assert!(
        !had.contains(&"sales".to_string()),
        "nothing refused was changed"
    );

    // The supervisor signs in; their changes carry the CSRF token, or are refused.
    let (cookie, csrf) = sign_in(&server, "sam", "sam's long password");
    let with_cookie = [("Cookie", cookie.as_str())];
    let (status, _, _, refused) = request(
        &server,
        "PUT",
        "/v1/queues/sales",
        &with_cookie,
        Some(json!({})),
    );
    assert_eq!((status, code(&refused)), (403, "csrf"), "{refused}");
    assert_eq!(queues(&server), had);
    let full = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let (status, _, _, body) = request(&server, "PUT", "/v1/queues/sales", &full, Some(json!({})));
    assert_eq!(status, 200, "{body}");
    let (status, _, _, _) = request(&server, "GET", "/v1/flows", &with_cookie, None);
    assert_eq!(status, 200, "a supervisor reads flows");
    let (status, _, _, refused) = raw(
        &server,
        "POST",
        "/v1/flows/main/versions",
        &full,
        "application/wasm",
        // Refused before the body is read: a small one, so the refusal is heard whole.
        bytes[..8].to_vec(),
    );
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");

    let (_, audit) = server.call("GET", "/v1/audit", None);
    let by = |action: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .map(|e| e["who"].as_str().unwrap().to_string())
    };
    assert_eq!(by("create-user").as_deref(), Some("admin"));
    assert_eq!(by("deploy").as_deref(), Some("dee"));
    assert_eq!(by("define-queue").as_deref(), Some("sam"));

    // Signed out, the cookie opens nothing.
    let (status, _, _, _) = request(&server, "POST", "/auth/sign-out", &with_cookie, None);
    assert_eq!(status, 200);
    let (status, _, _, over) = request(&server, "GET", "/v1/queues", &with_cookie, None);
    assert_eq!((status, code(&over)), (401, "session_over"), "{over}");
}

#[test]
fn wrong_passwords_disabled_users_and_dead_tokens_are_refused_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_user(&server, "dee", "developer", Some("dee's long password"));

    // Five wrong passwords, then even the right one waits.
    for _ in 0..5 {
        let (status, _, _, body) = request(
            &server,
            "POST",
            "/auth/sign-in",
            &[],
            Some(json!({"name": "dee", "password": "not the password"})),
        );
        assert_eq!((status, code(&body)), (401, "wrong_password"), "{body}");
    }
    let (status, _, retry, body) = request(
        &server,
        "POST",
        "/auth/sign-in",
        &[],
        Some(json!({"name": "dee", "password": "dee's long password"})),
    );
    assert_eq!((status, code(&body)), (429, "too_many_failures"), "{body}");
    assert!(retry.unwrap().parse::<u64>().unwrap() > 0);

    // A token revoked, a token expired, a user disabled.
    let token = |label: &str, expires: Option<&str>| {
        let (status, made) = server.call(
            "POST",
            "/v1/users/dee/tokens",
            Some(json!({"label": label, "expires_at": expires})),
        );
        assert_eq!(status, 201, "{made}");
        (
            made["id"].as_str().unwrap().to_string(),
            made["token"].as_str().unwrap().to_string(),
        )
    };
    let (id, revoked) = token("old laptop", None);
    // Used just before: refused at once all the same (nothing remembers it as good).
    let (status, body) = server.call_as(Some(&revoked), "GET", "/v1/flows", None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.call("DELETE", &format!("/v1/tokens/{id}"), None);
    assert_eq!(status, 200);
    let (status, body) = server.call_as(Some(&revoked), "GET", "/v1/flows", None);
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (_, expired) = token("ci", Some("2020-01-01T00:00:00Z"));
    let (status, body) = server.call_as(Some(&expired), "GET", "/v1/flows", None);
    assert_eq!((status, code(&body)), (401, "token_expired"), "{body}");
    let (_, live) = token("desk", None);
    let (status, listed) = server.call("GET", "/v1/users/dee/tokens", None);
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains(&live[4..]),
        "secrets are never listed"
    );
    let (status, body) = server.call_as(Some(&live), "GET", "/v1/flows", None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.call("PATCH", "/v1/users/dee", Some(json!({"disabled": true})));
    assert_eq!(status, 200);
    let (status, body) = server.call_as(
        Some(&live),
        "PUT",
        "/v1/flows/main/settings",
        Some(json!({"x": "1"})),
    );
    assert_eq!((status, code(&body)), (403, "user_disabled"), "{body}");
    let (status, settings) = server.call("GET", "/v1/flows/main/settings", None);
    assert!(
        status == 404 || settings.get("x").is_none(),
        "nothing changed: {settings}"
    );

    // The last admin cannot lock everyone out.
    let (status, body) = server.call("PATCH", "/v1/users/admin", Some(json!({"role": "agent"})));
    assert_eq!((status, code(&body)), (409, "last_admin"), "{body}");
    let (status, body) = server.call(
        "POST",
        "/v1/users",
        Some(json!({"name": "eve", "role": "root"})),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn an_agent_works_their_own_desk_and_no_one_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        server.call("PUT", "/v1/queues/support", Some(json!({}))).0,
        200
    );
    let (status, _) = server.call(
        "PUT",
        "/v1/agents/ann",
        Some(json!({"attributes": {}, "capacity": {"chat": 1}})),
    );
    assert_eq!(status, 200);
    create_user(&server, "ann", "agent", Some("ann's long password"));
    create_user(&server, "sam", "supervisor", Some("sam's long password"));
    let (ann, ann_csrf) = sign_in(&server, "ann", "ann's long password");
    let (sam, sam_csrf) = sign_in(&server, "sam", "sam's long password");

    let (status, _, _, me) = request(&server, "GET", "/agent/v1/me", &[("Cookie", &ann)], None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "ann", "{me}");
    // The session from another site's page (the desk's socket included) is refused; from
    // this server's own pages it works.
    let own = server.url.clone();
    for path in ["/agent/v1/me", "/agent/v1/ws"] {
        let (status, _, _, refused) = request(
            &server,
            "GET",
            path,
            &[("Cookie", &ann), ("Origin", "http://shop.example.test")],
            None,
        );
        assert_eq!(
            (status, code(&refused)),
            (403, "cross_origin"),
            "{path}: {refused}"
        );
    }
    let (status, _, _, me) = request(
        &server,
        "GET",
        "/agent/v1/me",
        &[("Cookie", &ann), ("Origin", &own)],
        None,
    );
    assert_eq!(status, 200, "{me}");
    let available = json!({"activity": "available"});
    let (status, _, _, refused) = request(
        &server,
        "PUT",
        "/agent/v1/activity",
        &[("Cookie", &ann)],
        Some(available.clone()),
    );
    assert_eq!((status, code(&refused)), (403, "csrf"), "{refused}");
    let (status, _, _, body) = request(
        &server,
        "PUT",
        "/agent/v1/activity",
        &[("Cookie", &ann), ("X-CSRF-Token", &ann_csrf)],
        Some(available),
    );
    assert_eq!(status, 200, "{body}");

    // A task is offered to ann; sam's session cannot accept it for her.
    let (status, task) = server.call(
        "POST",
        "/v1/tasks",
        Some(json!({"queue": "support", "channel": "chat", "attributes": {}})),
    );
    assert_eq!(status, 201, "{task}");
    let (_, _, _, me) = request(&server, "GET", "/agent/v1/me", &[("Cookie", &ann)], None);
    let reservation = me["reservation"]["id"].as_str().unwrap().to_string();
    let accept = format!("/agent/v1/reservations/{reservation}/accept");
    let (status, _, _, refused) = request(
        &server,
        "POST",
        &accept,
        &[("Cookie", &sam), ("X-CSRF-Token", &sam_csrf)],
        Some(json!({})),
    );
    assert_eq!((status, code(&refused)), (403, "not_an_agent"), "{refused}");
    let (status, _, _, refused) = request(
        &server,
        "POST",
        &accept,
        &[("Cookie", &ann), ("X-CSRF-Token", &sam_csrf)],
        Some(json!({})),
    );
    assert_eq!(
        (status, code(&refused)),
        (403, "csrf"),
        "another session's CSRF token: {refused}"
    );
    let (_, task_now) = server.call(
        "GET",
        &format!("/v1/tasks/{}", task["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(
        task_now["status"], "reserved",
        "nothing changed: {task_now}"
    );

    // The agent may not reach the supervisor's API.
    let (status, _, _, refused) = request(&server, "GET", "/v1/queues", &[("Cookie", &ann)], None);
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");
    let (status, _, _, accepted) = request(
        &server,
        "POST",
        &accept,
        &[("Cookie", &ann), ("X-CSRF-Token", &ann_csrf)],
        Some(json!({})),
    );
    assert_eq!(status, 200, "{accepted}");
}

#[test]
fn the_cli_manages_users_and_their_tokens() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    add.args([
        "users",
        "add",
        "kim",
        "--role",
        "developer",
        "--password-stdin",
    ])
    .args(["--server", &server.url, "--token", &server.token])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = add.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"kim's long password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("kim") && said.contains("developer") && said.contains("signs in"),
        "{said}"
    );
    sign_in(&server, "kim", "kim's long password");

    let (ok, made) = crate::support::cli(
        &server,
        &["tokens", "create", "--user", "kim", "--label", "ci"],
    );
    assert!(ok, "{made}");
    let token = made
        .split_whitespace()
        .find(|w| w.starts_with("sbt_"))
        .unwrap()
        .to_string();
    assert_eq!(
        server.call_as(Some(&token), "GET", "/v1/flows", None).0,
        200
    );
    let (ok, listed) = crate::support::cli(&server, &["tokens", "list", "--user", "kim"]);
    assert!(ok && listed.contains("ci"), "{listed}");
    let id = listed.split_whitespace().next().unwrap().to_string();
    let (ok, out) = crate::support::cli(&server, &["tokens", "revoke", &id]);
    assert!(ok, "{out}");
    assert_eq!(
        server.call_as(Some(&token), "GET", "/v1/flows", None).0,
        401
    );

    let (ok, out) = crate::support::cli(&server, &["users", "disable", "kim"]);
    assert!(ok && out.contains("disabled"), "{out}");
    let (status, _, _, body) = request(
        &server,
        "POST",
        "/auth/sign-in",
        &[],
        Some(json!({"name": "kim", "password": "kim's long password"})),
    );
    assert_eq!((status, code(&body)), (403, "user_disabled"), "{body}");
    let (ok, out) = crate::support::cli(&server, &["users", "add", "Kim!", "--role", "agent"]);
    assert!(!ok && out.contains("invalid user name"), "{out}");
    let (ok, out) = crate::support::cli(&server, &["users", "list"]);
    assert!(ok && out.contains("admin") && out.contains("kim"), "{out}");
}
