//! Prometheus metrics: contacts, steps by outcome, step latency. Counters are plain atomics
//! and a small map so recording a step costs no allocation on the common path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::Fault;

/// Upper bounds of the step latency histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.25,
];

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    contacts: AtomicU64,
    /// (flow, version, outcome) -> steps.
    steps: Mutex<BTreeMap<(String, u64, &'static str), u64>>,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// A contact started.
    pub fn contact_started(&self) {
        self.contacts.fetch_add(1, Ordering::Relaxed);
    }

    /// A step ran.
    pub fn step(&self, flow: &str, version: u64, elapsed: Duration, fault: Option<&Fault>) {
        let outcome = fault.map_or("ok", Fault::kind);
        *self
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((flow.to_string(), version, outcome))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP switchboard_contacts_started_total Contacts started."
        );
        let _ = writeln!(out, "# TYPE switchboard_contacts_started_total counter");
        let _ = writeln!(
            out,
            "switchboard_contacts_started_total {}",
            self.contacts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_steps_total Flow steps by flow, version and outcome (ok or the fault kind)."
        );
        let _ = writeln!(out, "# TYPE switchboard_steps_total counter");
        for ((flow, version, outcome), n) in
            self.steps.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "switchboard_steps_total{{flow=\"{flow}\",version=\"{version}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_step_seconds Flow step latency, instantiation included."
        );
        let _ = writeln!(out, "# TYPE switchboard_step_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "switchboard_step_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "switchboard_step_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "switchboard_step_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "switchboard_step_seconds_count {cumulative}");
        out
    }
}
