//! What every feature test needs: the guest components (built once per run with the real
//! toolchain), a real `switchboard serve` process on an ephemeral loopback port, and a small
//! JSON client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The component built from guest crate `name` (`ivr-menu`, `chaos`, `init-trap`), built
/// for wasm32-wasip2 on first use. Cargo keeps it fresh and shares it across test processes.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
        ])
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building guest {name} failed (is the wasm32-wasip2 target installed?)"
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let path = target
        .join("wasm32-wasip2/guest")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not produced", path.display());
    built.insert(name.to_string(), path.clone());
    path
}

/// The backend feature tests run on: the embedded store, or with
/// `SWITCHBOARD_TEST_STORE=postgres` a real PostgreSQL server of the test's own, one database
/// per data directory (kept across restarts of the server on that directory).
pub fn store_args(data_dir: &Path) -> Vec<String> {
    use switchboard::store::local_postgres::LocalPostgres;
    static SERVER: Mutex<Option<(LocalPostgres, HashMap<PathBuf, String>)>> = Mutex::new(None);
    match std::env::var("SWITCHBOARD_TEST_STORE").as_deref() {
        Ok("postgres") => {}
        Ok("sled") | Err(_) => return Vec::new(),
        Ok(other) => panic!("SWITCHBOARD_TEST_STORE={other}: use sled or postgres"),
    }
    let mut server = SERVER.lock().unwrap();
    let (pg, databases) = server.get_or_insert_with(|| {
        let pg = LocalPostgres::start().expect("PostgreSQL starts for the test");
        (pg, HashMap::new())
    });
    if let Some(address) = databases.get(data_dir) {
        return vec!["--store".into(), address.clone()];
    }
    let address = pg
        .database(&format!("node{}", databases.len()))
        .expect("a database for the test");
    databases.insert(data_dir.to_path_buf(), address.clone());
    vec!["--store".into(), address]
}

/// A running `switchboard serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token.
    pub token: String,
    /// The SIP address, when started with `--sip`.
    pub sip: Option<std::net::SocketAddr>,
    /// The SMTP address, when started with `--smtp`.
    pub smtp: Option<std::net::SocketAddr>,
}

impl Server {
    /// Starts a server on `data_dir` with extra `serve` arguments.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// Starts a server with extra `serve` arguments and environment variables (such as a
    /// test-only `SWITCHBOARD_FAILPOINT`).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(if extra.contains(&"--store") {
                Vec::new()
            } else {
                store_args(data_dir)
            })
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env(
                "SWITCHBOARD_LOG",
                std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // A loaded CI machine can pause a step's thread for tens of milliseconds; tests
            // that are not about deadlines must not fault on that.
            .env("SWITCHBOARD_STEP_DEADLINE_MS", "500")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the switchboard binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut sip = None;
        let mut smtp = None;
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("SMTP listening on ") {
                        smtp = addr.split_whitespace().next().and_then(|a| a.parse().ok());
                    }
                    if let Some(addr) = line.strip_prefix("SIP listening on ") {
                        sip = addr.split_whitespace().next().and_then(|a| a.parse().ok());
                    }
                    if let Some(url) = line.strip_prefix("Switchboard listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => {
                    let status = child.wait().unwrap();
                    panic!("switchboard serve exited before listening: {status}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            child,
            url,
            token,
            sip,
            smtp,
        }
    }

    /// The value of an unlabelled Prometheus metric (or one with its labels written out).
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.call_as(None, "GET", "/metrics", None);
        assert_eq!(status, 200);
        text.as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// The server's process id (the SIP benchmark reads its CPU and memory).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to stop (SIGTERM), as an operator or a service manager does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the server to exit by itself; fails after `within`.
    pub fn exit_status(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server the hard way (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request with the admin token; returns the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(&self.token), method, path, body)
    }

    /// A request with any token (or none).
    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_at(&self.url, token, method, path, body)
    }

    /// Sends raw bytes (a component, malformed JSON...).
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", content_type)
            .body(body)
            .unwrap();
        send(request)
    }

    /// Deploys a component file as `flow`.
    pub fn deploy(&self, flow: &str, component: &Path) -> (u16, Value) {
        self.call_raw(
            "POST",
            &format!("/v1/flows/{flow}/versions"),
            "application/wasm",
            std::fs::read(component).unwrap(),
        )
    }

    /// Starts a contact of `flow`; returns the step report.
    pub fn start_contact(&self, flow: &str, from: &str) -> Value {
        let (status, report) = self.call(
            "POST",
            "/v1/contacts",
            Some(serde_json::json!({"channel": "voice", "from": from, "to": "+15550100", "flow": flow})),
        );
        assert_eq!(status, 201, "{report}");
        report
    }

    /// Writes a text message on a contact; returns the step report.
    pub fn message(&self, contact: &str, text: &str) -> Value {
        self.event(
            contact,
            serde_json::json!({"type": "message", "text": text}),
        )
    }

    /// Presses digits on a contact; returns the step report.
    pub fn press(&self, contact: &str, digits: &str) -> Value {
        self.event(
            contact,
            serde_json::json!({"type": "input", "digits": digits}),
        )
    }

    /// Sends an event to a contact; returns the step report.
    pub fn event(&self, contact: &str, event: Value) -> Value {
        let (status, report) = self.call(
            "POST",
            &format!("/v1/contacts/{contact}/events"),
            Some(event),
        );
        assert_eq!(status, 200, "{report}");
        report
    }
}

fn send(request: ureq::http::Request<Vec<u8>>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut response = agent.run(request).expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A request to any base URL (a node, a load balancer) with a token (or none); returns the
/// status and the JSON body.
pub fn call_at(
    url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap()),
        None => request.body(Vec::new()),
    }
    .unwrap();
    send(request)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of every say/send/gather prompt in a step report, in order.
pub fn spoken(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for action in report["actions"].as_array().unwrap() {
        match action["type"].as_str().unwrap() {
            "say" => out.push(action["text"].as_str().unwrap().to_string()),
            "send" => out.push(action["text"].as_str().unwrap().to_string()),
            "gather" => {
                for p in action["prompt"].as_array().unwrap() {
                    if let Some(t) = p["text"].as_str() {
                        out.push(t.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The queue a step report enqueued into.
pub fn queue(report: &Value) -> Option<String> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "enqueue")
        .map(|a| a["queue"].as_str().unwrap().to_string())
}

/// A server with the sample IVR deployed as flow `ivr-menu`, open around the clock (tests
/// must not depend on the hour they run at), plus `extra` serve arguments.
pub fn ivr_server(dir: &Path, extra: &[&str]) -> Server {
    ivr_server_with_env(dir, extra, &[])
}

/// The same with environment variables for the server.
pub fn ivr_server_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let deploy = format!("ivr-menu={}", guest("ivr-menu").display());
    let mut args = vec!["--deploy", deploy.as_str()];
    args.extend(ALWAYS_OPEN);
    args.extend(extra);
    Server::start_with_env(dir, &args, env)
}

/// A server answering SIP on an ephemeral loopback port, the sample IVR bound to
/// `+15550100` with its sales, support and agents queues, plus `extra` serve arguments.
pub fn sip_ivr_server(dir: &Path, extra: &[&str]) -> Server {
    sip_ivr_server_with_env(dir, extra, &[])
}

/// The same with environment variables for the server (such as `SWITCHBOARD_SIP_TRUNK`).
pub fn sip_ivr_server_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut args = vec![
        "--sip",
        "127.0.0.1:0",
        "--bind",
        "+15550100=ivr-menu",
        "--queue",
        "sales",
        "--queue",
        "support",
        "--queue",
        "agents",
    ];
    args.extend(extra);
    let server = ivr_server_with_env(dir, &args, env);
    assert!(server.sip.is_some(), "the server printed its SIP address");
    server
}

/// A server whose `chat:support` address runs the order-status flow, with a `support` queue
/// and an available agent `sara` (3 chats); returns the server and sara's token.
pub fn chat_server(dir: &Path) -> (Server, String) {
    chat_server_with(dir, &[])
}

/// The same with extra `serve` arguments (such as `--store`).
pub fn chat_server_with(dir: &Path, extra: &[&str]) -> (Server, String) {
    let flow = format!("order-status={}", guest("order-status").display());
    let mut args = vec![
        "--deploy",
        &flow,
        "--bind",
        "chat:support=order-status",
        "--setting",
        "order-status:orders=1001:shipped",
    ];
    args.extend(extra);
    let server = Server::start(dir, &args);
    let (status, _) = server.call("PUT", "/v1/queues/support", Some(serde_json::json!({})));
    assert_eq!(status, 200);
    let token = agent(
        &server,
        "sara",
        serde_json::json!({}),
        serde_json::json!({"chat": 3}),
    );
    (server, token)
}

/// An agent's desk socket (`/agent/v1/ws`), reading each push within 10 s.
pub struct Desk(tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>);

impl Desk {
    /// The next message pushed, as JSON.
    pub fn next(&mut self) -> Value {
        let message = self.0.read().expect("a push within 10 s");
        serde_json::from_str(message.to_text().unwrap()).unwrap()
    }
}

/// Opens the desk socket of the agent whose token this is.
pub fn desk(server: &Server, token: &str) -> Desk {
    let url = format!(
        "{}/agent/v1/ws?token={token}",
        server.url.replace("http://", "ws://")
    );
    let (mut socket, _) = tungstenite::connect(url).expect("the agent socket opens");
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
    }
    Desk(socket)
}

/// Creates an available agent; returns their token.
pub fn agent(server: &Server, name: &str, attributes: Value, capacity: Value) -> String {
    let (status, created) = server.call(
        "PUT",
        &format!("/v1/agents/{name}"),
        Some(serde_json::json!({"attributes": attributes, "capacity": capacity})),
    );
    assert_eq!(status, 200, "{created}");
    let token = created["token"]
        .as_str()
        .expect("a new agent gets a token")
        .to_string();
    let (status, _) = server.call_as(
        Some(&token),
        "PUT",
        "/agent/v1/activity",
        Some(serde_json::json!({"activity": "available"})),
    );
    assert_eq!(status, 200);
    token
}

/// Runs the `switchboard` CLI against `server`; returns success and stdout+stderr.
pub fn cli(server: &Server, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(args)
        .args(["--server", &server.url, "--token", &server.token]);
    run_switchboard(&mut command)
}

/// Runs a `switchboard` command; returns success and stdout+stderr.
pub fn run_switchboard(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// In-process (the sessions benchmark): deploys the sample IVR on `rt` and keeps it open
/// around the clock, as [`ALWAYS_OPEN`] does for a server. (The steps benchmark times its
/// deploy alone, so it configures apart.)
#[allow(dead_code)]
pub fn deploy_open_ivr(rt: &switchboard::runtime::Runtime, bytes: &[u8]) {
    rt.admin()
        .flows()
        .deploy("ivr-menu", bytes, "bench")
        .unwrap();
    let settings: Vec<(String, String)> = ALWAYS_OPEN
        .iter()
        .filter_map(|arg| arg.strip_prefix("ivr-menu:"))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    rt.admin()
        .flows()
        .configure("ivr-menu", &settings, "bench")
        .unwrap();
}

/// Settings that keep the sample IVR open whatever the hour the tests run.
pub const ALWAYS_OPEN: [&str; 6] = [
    "--setting",
    "ivr-menu:days=mon-sun",
    "--setting",
    "ivr-menu:open=00:00",
    "--setting",
    "ivr-menu:close=24:00",
];

/// Deploys the `chaos` component as a candidate version of the sample IVR's flow, with the
/// query `query` (`canary=50`, a share of new contacts; or a rule): the status and the body.
#[allow(dead_code)]
pub fn deploy_canary(server: &Server, query: &str) -> (u16, Value) {
    server.call_raw(
        "POST",
        &format!("/v1/flows/ivr-menu/versions?{query}"),
        "application/wasm",
        std::fs::read(guest("chaos")).unwrap(),
    )
}

/// The clock ticks (`USER_HZ`) in a second: the unit of `/proc/PID/stat`'s and
/// `/proc/stat`'s times.
#[allow(dead_code)]
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; it takes no pointers.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The CPU times of process `pid` (a number, or `self`) as `/proc/PID/stat` counts them
/// (Linux): its parent's pid, then its user, system, reaped children's user and reaped
/// children's system time, in seconds. `None` when the process is gone.
#[allow(dead_code)]
pub fn process_times(pid: &str) -> Option<(u32, [f64; 4])> {
    let hz = ticks_per_second();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command (which may hold spaces and parentheses): ppid is field 4 of
    // stat(5), utime, stime, cutime and cstime fields 14-17.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / hz
    };
    let parent = fields.get(1)?.parse().ok()?;
    Some((parent, [seconds(11), seconds(12), seconds(13), seconds(14)]))
}

/// How long a benchmark measures each thing: `BENCH_SECONDS`, 3 by default.
#[allow(dead_code)]
pub fn bench_seconds() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

/// A GET-like request with a bearer token (or none) that keeps what JSON calls drop: the
/// status, the body as text and the `Retry-After` header.
#[allow(dead_code)]
pub fn raw_request(
    url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> (u16, String, Option<String>) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .run(request.body(Vec::<u8>::new()).unwrap())
        .expect("the server answers");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text, retry)
}
