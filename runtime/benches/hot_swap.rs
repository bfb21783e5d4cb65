//! `cargo bench -p switchboard --bench hot_swap`: multi-step contacts through the HTTP API of
//! a real `switchboard serve` while a new version (new bytes, full compile) is deployed every
//! few seconds. Reports steps/s, failures, contacts that mixed versions, deploy-to-live
//! latency (API call to first contact on the new version) and the swap itself.
//! BENCH_SECONDS (default 20), BENCH_THREADS (default 8), BENCH_DEPLOY_EVERY_MS (default 3000).

#[path = "../../tests/all/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../../tests/all/support.rs"]
mod support;

use std::time::Duration;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = env("BENCH_SECONDS", 20);
    let threads = env("BENCH_THREADS", 8) as usize;
    let every = env("BENCH_DEPLOY_EVERY_MS", 3000);
    let dir = tempfile::tempdir().unwrap();
    let server = support::ivr_server(dir.path(), &[]);
    let ivr = support::guest("ivr-menu");
    let components = [
        std::fs::read(&ivr).unwrap(),
        std::fs::read(support::guest("chaos")).unwrap(),
    ];
    eprintln!("{threads} client threads for {seconds} s, a deploy every {every} ms ...");
    let r = load::run(
        &server.url,
        &server.token,
        "ivr-menu",
        &components,
        threads,
        Duration::from_secs(seconds),
        Duration::from_millis(every),
        0,
    );

    let mut lat = r.latencies_us.clone();
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!();
    println!(
        "hot swap under load: {} contacts, {} steps in {:.1} s",
        r.contacts,
        r.steps,
        r.elapsed.as_secs_f64()
    );
    println!(
        "steps/s (HTTP, each step durable before it is answered): {:.0}   (target >= 1,000)",
        r.steps as f64 / r.elapsed.as_secs_f64()
    );
    println!(
        "step latency seen by clients: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    println!(
        "failed steps: {}   contacts on two versions: {}   contacts started after a deploy on an older version: {}",
        r.failed.len(),
        r.mixed.len(),
        r.stale.len()
    );
    println!(
        "{:>8} {:>12} {:>10} {:>22}",
        "version", "compile ms", "swap us", "call -> first contact"
    );
    for (version, compile, swap, first) in &r.deploys {
        let first = first.map_or("-".to_string(), |ms| format!("{ms:.1} ms"));
        println!("{version:>8} {compile:>12.1} {swap:>10} {first:>22}");
    }
    for f in r.failed.iter().take(5) {
        println!("failure: {f}");
    }
}
