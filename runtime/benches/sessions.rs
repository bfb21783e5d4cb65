//! `cargo bench -p switchboard --bench sessions`: durable contact steps on the embedded store,
//! as the server runs them: the sample IVR's greeting, the caller's "1" (which enqueues, so
//! the step creates a task), and the caller's hang-up (which cancels it). Each step is
//! committed and flushed (group commit) before it returns. BENCH_THREADS threads (2),
//! BENCH_SECONDS each. `BENCH_STORE=postgres` runs the same on a PostgreSQL server of its
//! own, started in a temp dir (Debian's `postgresql` package).

#[allow(dead_code)]
#[path = "../../tests/all/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use switchboard::config::Config;
use switchboard::contract::Event;
use switchboard::router::QueueConfig;
use switchboard::runtime::Runtime;
use switchboard::sessions::NewContact;

fn main() {
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let bytes = std::fs::read(support::guest("ivr-menu")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    let postgres = match std::env::var("BENCH_STORE").as_deref() {
        Ok("postgres") => {
            let pg = switchboard::store::local_postgres::LocalPostgres::start().unwrap();
            config.store.url = Some(pg.address());
            Some(pg)
        }
        _ => None,
    };
    let store = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "sled"
    };
    let rt = Arc::new(Runtime::open(config).unwrap());
    support::deploy_open_ivr(&rt, &bytes);
    for queue in ["sales", "support", "agents"] {
        rt.admin().define_queue(QueueConfig::named(queue)).unwrap();
    }
    let seconds = support::bench_seconds();
    eprintln!(
        "durable steps of the sample IVR on {store}, {threads} threads, {:.1} s ...",
        seconds.as_secs_f64()
    );
    let started = Instant::now();
    let threads: Vec<_> = (0..threads)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let mut n = 0u64;
                let mut timed = |f: &mut dyn FnMut()| {
                    let t0 = Instant::now();
                    f();
                    hist.record(t0.elapsed().as_nanos() as u64).unwrap();
                };
                while started.elapsed() < seconds {
                    let mut id = String::new();
                    timed(&mut || {
                        let report = rt
                            .contacts()
                            .start(NewContact {
                                channel: None,
                                from: format!("+1555{t}{n:07}"),
                                to: "+15550100".into(),
                                flow: Some("ivr-menu".into()),
                                attributes: Vec::new(),
                                held: false,
                            })
                            .unwrap();
                        id = report.contact;
                    });
                    timed(&mut || {
                        let press = Event::Input {
                            digits: "1".into(),
                            speech: None,
                        };
                        rt.contacts().send(&id, press).unwrap();
                    });
                    timed(&mut || {
                        rt.contacts().send(&id, Event::Hangup).unwrap();
                    });
                    n += 1;
                }
                (hist, n)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut contacts = 0;
    for t in threads {
        let (h, n) = t.join().unwrap();
        hist.add(h).unwrap();
        contacts += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!();
    println!(
        "durable steps/s: {:.0} ({contacts} contacts of 3 steps in {elapsed:.1} s)",
        hist.len() as f64 / elapsed
    );
    println!(
        "step incl. commit and flush: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        us(0.5),
        us(0.99),
        hist.max() as f64 / 1000.0
    );
}
