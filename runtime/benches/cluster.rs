//! `cargo bench -p switchboard --bench cluster`: durable steps over HTTP, as callers reach a
//! real `switchboard serve`, on each store configuration side by side in one run: one node on
//! sled, one node on PostgreSQL (a server of its own in a temp dir, Debian's `postgresql`),
//! three nodes on one PostgreSQL (each client sends its requests to the nodes in turn, as a
//! round-robin load balancer would: a contact's steps run on different nodes). Then the leader
//! of the three is killed (SIGKILL) and the time until another node leads is printed.
//! Each step is the sample IVR's: a new contact's greeting, the caller's "1" (a task is
//! created) and the hang-up (the task is canceled); every answer is committed before it is
//! sent. BENCH_CLIENTS client threads (16) with keep-alive connections, BENCH_SECONDS each
//! (3), after BENCH_WARMUP seconds (1) of the same load that are not counted: by then every
//! node has compiled the flow, opened its connections to the store and prepared its
//! statements, so what is measured is a cluster's steady state, not its first second. Prints
//! steps/s, p50 and p99 per configuration and the ratios to sled.
//!
//! Then, per configuration, where the CPU went while it ran (from `/proc`): milliseconds per
//! 1,000 steps in the nodes, in PostgreSQL and in the bench's own clients, how many of the
//! machine's cores were busy, and the steps/s this machine could reach if its cores did
//! nothing else (its cores divided by the CPU a step costs): when that ceiling is near what
//! was measured, the configuration is bound by this machine's CPU, not by waiting.
//!
//! The router's assignments on PostgreSQL, as the leader makes them (one at a time, and
//! batched), are measured by `--bench router` (in-process), not here.

#[allow(dead_code)]
#[path = "../../tests/all/support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use switchboard::store::local_postgres::LocalPostgres;

struct Measured {
    name: &'static str,
    steps_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    steps: u64,
    /// How long the measured load ran (wall clock).
    seconds: f64,
    cpu: Cpu,
}

/// CPU time spent, in seconds, as `/proc` counts it (Linux).
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// The `switchboard serve` processes measured.
    nodes: f64,
    /// The PostgreSQL server: its main process with the backends it has reaped, and the
    /// backends still running.
    postgres: f64,
    /// This process: the client threads.
    client: f64,
    /// The whole machine, busy (not idle, not waiting for I/O, not taken by the hypervisor).
    busy: f64,
}

impl Cpu {
    /// Now, for the node processes `nodes` and the PostgreSQL server whose main process is
    /// `postgres`.
    fn now(nodes: &[u32], postgres: Option<u32>) -> Cpu {
        let times = support::process_times;
        let mut cpu = Cpu::default();
        for pid in nodes {
            if let Some((_, t)) = times(&pid.to_string()) {
                cpu.nodes += t[0] + t[1];
            }
        }
        if let Some((_, t)) = times("self") {
            cpu.client = t[0] + t[1];
        }
        if let Some(server) = postgres {
            // A backend that ended is counted in its parent's cutime and cstime.
            if let Some((_, t)) = times(&server.to_string()) {
                cpu.postgres += t.iter().sum::<f64>();
            }
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let name = entry.file_name();
                let pid = name.to_string_lossy();
                if !pid.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                if let Some((parent, t)) = times(&pid)
                    && parent == server
                {
                    cpu.postgres += t[0] + t[1];
                }
            }
        }
        let hz = support::ticks_per_second();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().next()
        {
            // cpu user nice system idle iowait irq softirq steal, summed over the CPUs
            let ticks: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|f| f.parse::<f64>().unwrap_or(0.0) / hz)
                .collect();
            cpu.busy = [0, 1, 2, 5, 6]
                .iter()
                .map(|&i| ticks.get(i).copied().unwrap_or(0.0))
                .sum();
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            nodes: self.nodes - before.nodes,
            postgres: self.postgres - before.postgres,
            client: self.client - before.client,
            busy: self.busy - before.busy,
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: Value) -> (u16, Value) {
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .expect("the server answers");
    let status = response.status().as_u16();
    let value = response.body_mut().read_json().unwrap_or(Value::Null);
    (status, value)
}

fn measure(
    name: &'static str,
    servers: &[&support::Server],
    postgres: Option<&LocalPostgres>,
    clients: usize,
) -> Measured {
    let seconds = support::bench_seconds();
    let warmup = Duration::from_secs_f64(
        std::env::var("BENCH_WARMUP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    eprintln!(
        "{name}: {clients} clients, {:.1} s after {:.1} s of warm-up ...",
        seconds.as_secs_f64(),
        warmup.as_secs_f64()
    );
    let urls: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| s.url.clone()).collect());
    let token = Arc::new(servers[0].token.clone());
    let pids: Vec<u32> = servers.iter().map(|s| s.pid()).collect();
    let postgres = postgres.and_then(|pg| pg.pid());
    // The clock starts after the warm-up; the load stops `seconds` later.
    let started = Instant::now() + warmup;
    let until = started + seconds;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (urls, token) = (urls.clone(), token.clone());
            std::thread::spawn(move || {
                // Round robin over the nodes, one request after the other.
                let mut turn = c;
                let mut next_url = move || {
                    turn += 1;
                    urls[turn % urls.len()].clone()
                };
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into();
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let (mut steps, mut errors, mut n) = (0u64, 0u64, 0u64);
                let mut timed = |f: &mut dyn FnMut() -> bool| {
                    let t0 = Instant::now();
                    let ok = f();
                    if t0 < started {
                        return ok;
                    }
                    hist.record(t0.elapsed().as_micros() as u64).unwrap();
                    if ok {
                        steps += 1;
                    } else {
                        errors += 1;
                    }
                    ok
                };
                while Instant::now() < until {
                    n += 1;
                    let mut id = String::new();
                    let url = next_url();
                    let started_contact = timed(&mut || {
                        let (status, report) = post(
                            &agent,
                            &format!("{url}/v1/contacts"),
                            &token,
                            json!({"channel": "voice", "from": format!("+1555{c:03}{n:06}"), "to": "+15550100", "flow": "ivr-menu"}),
                        );
                        id = report["contact"].as_str().unwrap_or_default().to_string();
                        status == 201
                    });
                    if !started_contact {
                        continue;
                    }
                    for event in [json!({"type": "input", "digits": "1"}), json!({"type": "hangup"})] {
                        let url = next_url();
                        timed(&mut || {
                            let (status, _) =
                                post(&agent, &format!("{url}/v1/contacts/{id}/events"), &token, event.clone());
                            status == 200
                        });
                    }
                }
                (hist, steps, errors)
            })
        })
        .collect();
    std::thread::sleep(started.saturating_duration_since(Instant::now()));
    let before = Cpu::now(&pids, postgres);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let (mut steps, mut errors) = (0, 0);
    for t in threads {
        let (h, s, e) = t.join().unwrap();
        hist.add(h).unwrap();
        steps += s;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = Cpu::now(&pids, postgres).since(before);
    Measured {
        name,
        steps_per_sec: steps as f64 / elapsed,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
        steps,
        seconds: elapsed,
        cpu,
    }
}

fn main() {
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16);
    support::guest("ivr-menu");
    let queue = [
        "--queue", "sales", "--queue", "support", "--queue", "agents",
    ];
    let mut results = Vec::new();
    {
        let dir = tempfile::tempdir().unwrap();
        let server = support::ivr_server(dir.path(), &queue);
        results.push(measure("one node, sled", &[&server], None, clients));
    }
    {
        let pg = LocalPostgres::start().unwrap();
        let address = pg.address();
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--store", address.as_str()];
        args.extend(queue);
        let server = support::ivr_server(dir.path(), &args);
        results.push(measure(
            "one node, PostgreSQL",
            &[&server],
            Some(&pg),
            clients,
        ));
    }
    let failover = {
        let pg = LocalPostgres::start().unwrap();
        let address = pg.address();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut args = vec!["--store", address.as_str()];
        args.extend(queue);
        let first = support::ivr_server(dirs[0].path(), &args);
        for dir in &dirs[1..] {
            std::fs::write(dir.path().join("admin.token"), &first.token).unwrap();
        }
        let mut nodes = vec![first];
        for dir in &dirs[1..] {
            nodes.push(support::ivr_server(dir.path(), &args));
        }
        let refs: Vec<&support::Server> = nodes.iter().collect();
        results.push(measure(
            "three nodes, PostgreSQL",
            &refs,
            Some(&pg),
            clients,
        ));
        leader_failover(nodes)
    };
    let sled = results[0].steps_per_sec;
    println!();
    println!(
        "{:<24} {:>10} {:>9} {:>9} {:>8} {:>13}",
        "configuration", "steps/s", "p50 ms", "p99 ms", "errors", "ratio to sled"
    );
    for r in &results {
        println!(
            "{:<24} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>13.2}",
            r.name,
            r.steps_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.steps_per_sec / sled
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!("where the CPU went, in ms per 1,000 steps ({cores} cores):");
    println!(
        "{:<24} {:>7} {:>11} {:>8} {:>7} {:>11} {:>16}",
        "configuration", "nodes", "PostgreSQL", "clients", "total", "cores busy", "ceiling steps/s"
    );
    for r in &results {
        let per = |seconds: f64| seconds * 1e6 / r.steps.max(1) as f64;
        let cpu = r.cpu;
        let total = per(cpu.nodes + cpu.postgres + cpu.client);
        let busy = cpu.busy / r.seconds.max(f64::MIN_POSITIVE);
        println!(
            "{:<24} {:>7.0} {:>11.0} {:>8.0} {:>7.0} {:>11.2} {:>16.0}",
            r.name,
            per(cpu.nodes),
            per(cpu.postgres),
            per(cpu.client),
            total,
            busy,
            cores as f64 * 1e6 / total.max(f64::MIN_POSITIVE)
        );
    }
    println!();
    match failover {
        Some(took) => println!(
            "leader failover after SIGKILL: {:.2} s (router lease {} s, renewed every 1 s)",
            took.as_secs_f64(),
            switchboard::cluster::LEASE_MS / 1000
        ),
        None => println!("leader failover after SIGKILL: no other node took over within 30 s"),
    }
}

/// Kills the leader of `nodes` and returns how long until another node leads.
fn leader_failover(mut nodes: Vec<support::Server>) -> Option<Duration> {
    let leader_of = |node: &support::Server| -> Option<(String, String)> {
        let (_, view) = node.call("GET", "/v1/cluster", None);
        Some((
            view["node"].as_str()?.to_string(),
            view["leader"].as_str()?.to_string(),
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let index = loop {
        let ids: Vec<_> = nodes.iter().map(leader_of).collect();
        if let Some(i) = ids
            .iter()
            .position(|v| v.as_ref().is_some_and(|(node, leader)| node == leader))
        {
            break i;
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (old, _) = leader_of(&nodes[index])?;
    eprintln!("killing the leader {old} ...");
    let killed = Instant::now();
    nodes.remove(index).kill();
    let deadline = killed + Duration::from_secs(30);
    while Instant::now() < deadline {
        if nodes
            .iter()
            .filter_map(leader_of)
            .any(|(node, leader)| node == leader && leader != old)
        {
            return Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
