//! `cargo bench -p switchboard --bench guests`: what flows written in Python and TypeScript
//! cost, next to the Rust sample, with the server's engine (pooling allocator, precompiled
//! artifacts, a fresh instance per step).
//!
//! Builds the samples with the real toolchains (componentize-py, jco's QuickJS backend; needs
//! what ./scripts/test.sh installs), plus one `switchboard new` project per language, then on a
//! fresh data directory: deploy-to-live of the first flow of each language (the interpreter
//! compiled from scratch) and of the next one (Cranelift's incremental cache warm), and the
//! step latency of each sample (a chat: started, then a message), p50 and p99.

#[allow(dead_code)]
#[path = "../../tests/all/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use switchboard::config::Config;
use switchboard::contract::{Channel, Contact, Event};
use switchboard::engine::StepTarget;
use switchboard::runtime::Runtime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_python(dir: &Path, app_dir: &Path, sdk: &Path, out: &str) -> PathBuf {
    let output = dir.join(out);
    run(
        Command::new("python3")
            .current_dir(app_dir)
            .env("PYTHONPATH", sdk)
            .args(["-m", "switchboard_flow", "build", "app.py", "-o"])
            .arg(&output),
        "componentize-py",
    );
    output
}

fn build_js(dir: &Path, flow_dir: &Path, bin: &Path, out: &str) -> PathBuf {
    let output = dir.join(out);
    run(
        Command::new("node")
            .current_dir(flow_dir)
            .arg(bin)
            .args(["build", "flow.ts", "-o"])
            .arg(&output),
        "jco",
    );
    output
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let root = root();
    let switchboard = env!("CARGO_BIN_EXE_switchboard");
    eprintln!("building the samples and two new projects with the real toolchains...");
    let py = build_python(
        dir,
        &root.join("flows/order-status-py"),
        &root.join("sdk/python"),
        "order_status_py.wasm",
    );
    let js_bin = root.join("sdk/js/bin/switchboard-flow.js");
    let ts = build_js(
        dir,
        &root.join("flows/chat-triage-ts"),
        &js_bin,
        "chat_triage.wasm",
    );
    run(
        Command::new(switchboard)
            .current_dir(dir)
            .args(["new", "next-py", "--lang", "python"]),
        "switchboard new",
    );
    let py_next = build_python(
        dir,
        &dir.join("next-py"),
        &dir.join("next-py"),
        "next_py.wasm",
    );
    run(
        Command::new(switchboard)
            .current_dir(dir)
            .args(["new", "next-ts", "--lang", "js"]),
        "switchboard new",
    );
    // What `npm install` would link: the project's vendored SDK as @switchboard/flow.
    let modules = dir.join("next-ts/node_modules/@switchboard");
    std::fs::create_dir_all(&modules).unwrap();
    std::os::unix::fs::symlink("../../switchboard-flow", modules.join("flow")).unwrap();
    let ts_next = build_js(dir, &dir.join("next-ts"), &js_bin, "next_ts.wasm");
    let rust = support::guest("order-status");

    let data = tempfile::tempdir().unwrap();
    let rt = Runtime::open(Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    })
    .unwrap();
    let deploy = |flow: &str, path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let started = Instant::now();
        rt.admin().flows().deploy(flow, &bytes, "bench").unwrap();
        (bytes.len(), started.elapsed())
    };
    println!("deploy to live (compile included), fresh data directory:");
    for (label, flow, path) in [
        ("Rust order-status", "rust", &rust),
        ("Python order-status, first Python flow", "py", &py),
        (
            "Python `switchboard new` flow, next Python flow",
            "py-next",
            &py_next,
        ),
        ("TypeScript chat-triage, first JS flow", "ts", &ts),
        (
            "TypeScript `switchboard new` flow, next JS flow",
            "ts-next",
            &ts_next,
        ),
    ] {
        let (size, took) = deploy(flow, path);
        println!(
            "  {label:<50} {:>6.1} MB  {:>7.2} s",
            size as f64 / 1e6,
            took.as_secs_f64()
        );
    }
    for flow in ["rust", "py"] {
        rt.admin()
            .flows()
            .configure(flow, &[("orders".into(), "1001:shipped".into())], "bench")
            .unwrap();
    }

    println!(
        "\nstep latency, fresh instance per step (a chat: started, then a message), {:.0} s each:",
        support::bench_seconds().as_secs_f64()
    );
    let contact = Contact {
        id: "bench".into(),
        channel: Channel::Chat,
        from: "+15551230001".into(),
        to: "chat:web".into(),
        attributes: vec![],
    };
    let mut results = Vec::new();
    for (label, flow, message) in [
        ("Rust order-status", "rust", "1001"),
        ("Python order-status", "py", "1001"),
        ("TypeScript chat-triage", "ts", "my invoice is wrong"),
    ] {
        let component = rt.admin().flows().component(flow, 1).unwrap();
        let name: Arc<str> = flow.into();
        let target = StepTarget {
            flow: &name,
            version: 1,
            component: &component,
        };
        let mut hist = Histogram::<u64>::new(3).unwrap();
        let mut state = Vec::new();
        let started = Instant::now();
        let mut i = 0usize;
        while started.elapsed() < support::bench_seconds() || i < 20 {
            let event = if i.is_multiple_of(2) {
                state.clear();
                Event::Started
            } else {
                Event::Message {
                    text: message.into(),
                }
            };
            let t = Instant::now();
            let result =
                rt.admin()
                    .engine()
                    .step(rt.admin().services(), &target, &contact, &state, &event);
            let (actions, new_state) = result.outcome.expect("the sample does not fault");
            if i >= 10 {
                hist.record(t.elapsed().as_nanos() as u64).unwrap();
            }
            assert!(!actions.is_empty());
            state = new_state;
            i += 1;
        }
        let p = |q: f64| hist.value_at_quantile(q) as f64 / 1e6;
        println!(
            "  {label:<24} p50 {:>6.3} ms  p99 {:>6.3} ms  ({} steps)",
            p(0.5),
            p(0.99),
            hist.len()
        );
        results.push((label, p(0.99)));
    }
    let rust_p99 = results[0].1;
    for (label, p99) in &results[1..] {
        println!(
            "  {label}: p99 {:.2}x the Rust flow's; goal p99 <= 2 ms: {}",
            p99 / rust_p99,
            if *p99 <= 2.0 { "met" } else { "NOT met" }
        );
    }
}
