//! `cargo bench -p switchboard --bench steps`: what one flow step costs.
//!
//! The sample IVR (greeting with a CRM lookup, business hours, menu; then the caller's "1")
//! runs three ways in the same process and run, so the ratios hold on a noisy machine:
//! - **wasm**: the real component, a fresh pooled instance per step (`Engine::step`), as the
//!   server runs it (session persistence excluded);
//! - **native**: the same Rust flow compiled natively and called directly: the floor;
//! - **webhook**: the same native flow behind an HTTP endpoint on loopback, called with a
//!   keep-alive client: the Twilio/jambonz model of running customer logic.

#[allow(dead_code)]
#[path = "../../tests/all/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use switchboard::config::Config;
use switchboard::contract::{Channel, Contact, Event};
use switchboard::engine::StepTarget;
use switchboard::runtime::Runtime;
use switchboard_sdk::testing::TestHost;

const WARMUP: usize = 2_000;

fn contact() -> Contact {
    Contact {
        id: "bench".into(),
        channel: Channel::Voice,
        from: "+15551230001".into(),
        to: "+15550100".into(),
        attributes: vec![],
    }
}

struct Report {
    name: &'static str,
    hist: Histogram<u64>,
    per_sec: f64,
}

impl Report {
    fn p(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `step(i)` (returns nothing; i alternates started/input) in a loop for the bench time.
fn measure(name: &'static str, mut step: impl FnMut(usize)) -> Report {
    for i in 0..WARMUP {
        step(i);
    }
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let deadline = support::bench_seconds();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < deadline {
        let t = Instant::now();
        step(n);
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
        n += 1;
    }
    let per_sec = n as f64 / started.elapsed().as_secs_f64();
    Report {
        name,
        hist,
        per_sec,
    }
}

fn native_step(
    state: &mut Vec<u8>,
    host: &mut TestHost,
    sdk_contact: &switchboard_sdk::Contact,
    i: usize,
) {
    let event = if i.is_multiple_of(2) {
        state.clear();
        switchboard_sdk::Event::Started
    } else {
        switchboard_sdk::Event::Input(switchboard_sdk::Input {
            digits: "1".into(),
            speech: None,
        })
    };
    let step = switchboard_sdk::run_step::<ivr_menu::IvrMenu>(host, sdk_contact, state, event)
        .expect("the flow steps");
    *state = step.state;
}

fn test_host() -> TestHost {
    let mut host = TestHost::default();
    host.config.insert("days".into(), "mon-sun".into());
    host.config.insert("open".into(), "00:00".into());
    host.config.insert("close".into(), "24:00".into());
    host
}

fn sdk_contact() -> switchboard_sdk::Contact {
    switchboard_sdk::Contact {
        id: "bench".into(),
        channel: switchboard_sdk::Channel::Voice,
        from: "+15551230001".into(),
        to: "+15550100".into(),
        attributes: vec![],
    }
}

/// A minimal webhook server doing the same logic natively: POST body = `{"state": "...",
/// "event": "started"|"1"}`, answer = `{"actions": n, "state": "..."}`.
fn webhook_server() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/step",
                axum::routing::post(
                    |axum::Json(body): axum::Json<serde_json::Value>| async move {
                        let mut state = body["state"]
                            .as_str()
                            .unwrap_or_default()
                            .as_bytes()
                            .to_vec();
                        let mut host = test_host();
                        let i = if body["event"] == "started" { 0 } else { 1 };
                        native_step(&mut state, &mut host, &sdk_contact(), i);
                        axum::Json(serde_json::json!({"state": String::from_utf8_lossy(&state)}))
                    },
                ),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), handle)
}

fn main() {
    let wasm = support::guest("ivr-menu");
    let bytes = std::fs::read(&wasm).unwrap();
    eprintln!(
        "component: {} ({} KB); {:.1} s per measurement (BENCH_SECONDS)",
        wasm.display(),
        bytes.len() / 1024,
        support::bench_seconds().as_secs_f64()
    );

    // A fresh data directory, so the deploy below really compiles (no cached artifact).
    let data = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    let rt = Runtime::open(config).unwrap();
    let deploy_started = Instant::now();
    rt.admin()
        .flows()
        .deploy("ivr-menu", &bytes, "bench")
        .unwrap();
    let deploy = deploy_started.elapsed();
    rt.admin()
        .flows()
        .configure(
            "ivr-menu",
            &[
                ("days".into(), "mon-sun".into()),
                ("open".into(), "00:00".into()),
                ("close".into(), "24:00".into()),
            ],
            "bench",
        )
        .unwrap();
    let customers =
        switchboard::customers::parse(include_str!("../../examples/customers.csv")).unwrap();
    rt.admin().load_customers(&customers, "bench").unwrap();
    let component = rt.admin().flows().component("ivr-menu", 1).unwrap();
    let flow: Arc<str> = "ivr-menu".into();
    let target = StepTarget {
        flow: &flow,
        version: 1,
        component: &component,
    };
    let contact = contact();

    let mut state = Vec::new();
    let wasm_report = measure("wasm (fresh instance per step)", |i| {
        let event = if i.is_multiple_of(2) {
            state.clear();
            Event::Started
        } else {
            Event::Input {
                digits: "1".into(),
                speech: None,
            }
        };
        let result =
            rt.admin()
                .engine()
                .step(rt.admin().services(), &target, &contact, &state, &event);
        let (actions, new_state) = result.outcome.expect("the sample flow does not fault");
        assert!(!actions.is_empty());
        state = new_state;
    });

    if std::env::var("BENCH_ONLY").as_deref() == Ok("wasm") {
        println!(
            "wasm p50 {:.1} us, p99 {:.1} us, {:.0} steps/s",
            wasm_report.p(0.5),
            wasm_report.p(0.99),
            wasm_report.per_sec
        );
        return;
    }

    let mut native_state = Vec::new();
    let mut host = test_host();
    let sdk_contact = sdk_contact();
    let native_report = measure("native Rust, same flow", |i| {
        native_step(&mut native_state, &mut host, &sdk_contact, i)
    });

    let (addr, _server) = webhook_server();
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let url = format!("http://{addr}/step");
    let mut hook_state = String::new();
    let webhook_report = measure("webhook on loopback, same flow", |i| {
        let body = if i.is_multiple_of(2) {
            serde_json::json!({"state": "", "event": "started"})
        } else {
            serde_json::json!({"state": hook_state, "event": "1"})
        };
        let answer: serde_json::Value = agent
            .post(&url)
            .send_json(&body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        hook_state = answer["state"].as_str().unwrap().to_string();
    });

    // Throughput with every core stepping fresh instances.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let deadline = support::bench_seconds();
    let started = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n: usize = 0;
                    let mut state = Vec::new();
                    while started.elapsed() < deadline {
                        let event = if n.is_multiple_of(2) {
                            state.clear();
                            Event::Started
                        } else {
                            Event::Input {
                                digits: "1".into(),
                                speech: None,
                            }
                        };
                        state = rt
                            .admin()
                            .engine()
                            .step(rt.admin().services(), &target, &contact, &state, &event)
                            .outcome
                            .unwrap()
                            .1;
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let parallel = total as f64 / started.elapsed().as_secs_f64();

    println!();
    println!("flow step: sample IVR (started with CRM lookup + business hours, then input \"1\")");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>12}",
        "", "p50 us", "p99 us", "max us", "steps/s 1t"
    );
    for r in [&wasm_report, &native_report, &webhook_report] {
        println!(
            "{:<34} {:>9.1} {:>9.1} {:>9.1} {:>12.0}",
            r.name,
            r.p(0.5),
            r.p(0.99),
            r.hist.max() as f64 / 1000.0,
            r.per_sec
        );
    }
    println!();
    println!(
        "wasm throughput, {threads} threads:        {parallel:>9.0} steps/s   (target >= 50,000)"
    );
    println!(
        "wasm p50 / p99:                     {:>6.1} / {:.1} us   (target <= 20 / 100 us)",
        wasm_report.p(0.5),
        wasm_report.p(0.99)
    );
    println!(
        "webhook / wasm, p50:                {:>9.1}x      (target >= 10x)",
        webhook_report.p(0.5) / wasm_report.p(0.5)
    );
    println!(
        "webhook / wasm, p99:                {:>9.1}x",
        webhook_report.p(0.99) / wasm_report.p(0.99)
    );
    println!(
        "wasm / native, p50:                 {:>9.1}x      (sandbox + fresh instance overhead)",
        wasm_report.p(0.5) / native_report.p(0.5)
    );
    println!(
        "deploy to live ({} KB, compile incl.): {:>6.0} ms   (target <= 2,000 ms)",
        bytes.len() / 1024,
        deploy.as_secs_f64() * 1000.0
    );
}
