//! `cargo bench -p switchboard --bench router`: task assignments per second with 1,000 agents
//! and 100 queues, on the real store (every change written; flushed in groups as the API does),
//! first on sled (one node), then on PostgreSQL as a cluster's router runs (a server of its
//! own in a temp dir; every change one serializable transaction checked against the router's
//! change counter), side by side with the ratio.
//!
//! Each agent has ten skills out of a hundred and a voice capacity of one; each queue takes
//! the agents with its skill (a CEL expression). A cycle creates a task in a random queue
//! (the router picks the longest-idle eligible agent: the decision measured), the agent
//! accepts, then completes it. BENCH_SECONDS (default 5) per store; BENCH_STORES=sled skips
//! PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng as _;
use serde_json::json;
use switchboard::contract::Channel;
use switchboard::router::{NewTask, QueueConfig, Router, TaskStatus};
use switchboard::store::local_postgres::LocalPostgres;
use switchboard::store::{PostgresOptions, PostgresStore, SledStore, Store};

const AGENTS: usize = 1_000;
const QUEUES: usize = 100;
const SKILLS_PER_AGENT: usize = 10;

fn main() {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let sled = measure("sled, one node", Router::open(store).unwrap(), seconds);
    if std::env::var("BENCH_STORES").is_ok_and(|s| s == "sled") {
        return;
    }
    let pg = LocalPostgres::start().expect("PostgreSQL starts (Debian package postgresql)");
    let store: Arc<dyn Store> =
        Arc::new(PostgresStore::connect(&pg.address(), &PostgresOptions::default()).unwrap());
    let shared = measure(
        "PostgreSQL, a cluster's router",
        Router::open_shared(store).unwrap(),
        seconds,
    );
    println!();
    println!(
        "assignments/s: sled {sled:.0}, PostgreSQL {shared:.0}, ratio {:.3}",
        shared / sled
    );
}

/// Sets the router up and runs cycles for `seconds`; prints and returns assignments/s.
fn measure(name: &str, router: Router, seconds: f64) -> f64 {
    let setup = Instant::now();
    for q in 0..QUEUES {
        router
            .define_queue(QueueConfig {
                members: format!("\"s{q}\" in worker.skills"),
                ..QueueConfig::named(&format!("q{q}"))
            })
            .unwrap();
    }
    for a in 0..AGENTS {
        let skills: Vec<String> = (0..SKILLS_PER_AGENT)
            .map(|k| format!("s{}", (a * 7 + k * 13) % QUEUES))
            .collect();
        let capacity = BTreeMap::from([(Channel::Voice, 1)]);
        router
            .upsert_agent(
                &format!("agent{a}"),
                json!({"skills": skills, "level": a % 5}),
                capacity,
            )
            .unwrap();
        router
            .set_activity(&format!("agent{a}"), "available")
            .unwrap();
    }
    router.flush().unwrap();
    eprintln!(
        "{name}: {AGENTS} agents, {QUEUES} queues set up in {:.1} s; measuring for {seconds} s ...",
        setup.elapsed().as_secs_f64()
    );

    let mut rng = rand::rng();
    let mut decision = Histogram::<u64>::new(3).unwrap();
    let mut cycle = Histogram::<u64>::new(3).unwrap();
    let mut assignments = 0u64;
    let mut waited = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        let t0 = Instant::now();
        let task = router
            .create_task(NewTask {
                queue: format!("q{}", rng.random_range(0..QUEUES)),
                channel: Channel::Voice,
                priority: rng.random_range(0..3),
                attributes: json!({}),
                timeout_secs: 0,
                contact: None,
            })
            .unwrap();
        decision.record(t0.elapsed().as_nanos() as u64).unwrap();
        if task.status != TaskStatus::Reserved {
            waited += 1;
            continue;
        }
        assignments += 1;
        let worker = task.agent.clone().unwrap();
        router
            .accept(&worker, task.reservation.as_deref().unwrap())
            .unwrap();
        router.complete(&worker, &task.id, None, None).unwrap();
        if assignments.is_multiple_of(64) {
            router.flush().unwrap();
        }
        cycle.record(t0.elapsed().as_nanos() as u64).unwrap();
    }
    router.flush().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!();
    println!(
        "router on {name}: {AGENTS} agents, {QUEUES} queues, {SKILLS_PER_AGENT} skills per agent"
    );
    println!(
        "assignments/s (create -> reserve, accept, complete; one thread): {:.0}   (target >= 10,000)",
        assignments as f64 / elapsed
    );
    println!(
        "assignment decision (create_task incl. matching and store write): p50 {:.1} us, p99 {:.1} us, max {:.1} us   (target p99 <= 1 ms)",
        us(&decision, 0.5),
        us(&decision, 0.99),
        decision.max() as f64 / 1000.0
    );
    println!(
        "full cycle: p50 {:.1} us, p99 {:.1} us",
        us(&cycle, 0.5),
        us(&cycle, 0.99)
    );
    println!("tasks that found no free agent at once: {waited}");

    // Batched: 1,000 tasks wait in a queue nobody belongs to; redefining it to take every
    // agent has the router offer them all in one go (one commit per queue). Three rounds, each
    // round's tasks canceled after it: a round's time varies with the memory it touches for
    // the first time (the allocator asks for transparent huge pages; each new 2 MiB page is
    // zeroed at its first touch, and on a virtual machine the host may have to back it then).
    const WAITING: usize = 1_000;
    let bulk = |members: &str| QueueConfig {
        members: members.into(),
        ..QueueConfig::named("bulk")
    };
    for round in 1..=3 {
        router.define_queue(bulk("false")).unwrap();
        let ids: Vec<String> = (0..WAITING)
            .map(|_| {
                router
                    .create_task(NewTask {
                        queue: "bulk".into(),
                        channel: Channel::Voice,
                        priority: 0,
                        attributes: json!({}),
                        timeout_secs: 0,
                        contact: None,
                    })
                    .unwrap()
                    .id
            })
            .collect();
        router.flush().unwrap();
        let t0 = Instant::now();
        router.define_queue(bulk("true")).unwrap();
        let committed = t0.elapsed().as_secs_f64();
        router.flush().unwrap();
        let took = t0.elapsed().as_secs_f64();
        let offered = ids
            .iter()
            .filter(|id| router.task(id).unwrap().status == TaskStatus::Reserved)
            .count();
        println!(
            "batched, round {round}: {offered} of {WAITING} waiting tasks offered in {:.1} ms: {:.0} offers/s (matched and committed in {:.1} ms, then flushed in {:.1} ms)",
            took * 1000.0,
            offered as f64 / took,
            committed * 1000.0,
            (took - committed) * 1000.0
        );
        for id in &ids {
            router.cancel(id, "bench round over").unwrap();
        }
        router.flush().unwrap();
    }
    assignments as f64 / elapsed
}
