//! The one metrics registry, over `prometheus-client` (the official Rust client) and its one
//! exposition writer ([`Metrics::render`], the Prometheus text format 0.0.4). The core's own
//! metrics (contacts, steps by outcome, step latency) live in it; every other part adds its
//! metrics at start-up, either as live metrics ([`Metrics::register`]) or as values read from
//! its own state when scraped ([`Metrics::sample`]: queue numbers, SIP counters).
//! Never renders text by hand.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::engine::Fault;

/// Upper bounds of the step latency histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.25,
];

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    flow: String,
    version: String,
    outcome: &'static str,
}

/// The registry and the core's own metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    contacts: Counter,
    steps: Family<StepLabels, Counter>,
    step_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let contacts = Counter::default();
        let steps = Family::<StepLabels, Counter>::default();
        let step_seconds = Histogram::new(BUCKETS);
        let mut registry = Registry::default();
        registry.register(
            "switchboard_contacts_started",
            "Contacts started",
            contacts.clone(),
        );
        registry.register(
            "switchboard_steps",
            "Flow steps by flow, version and outcome (ok or the fault kind)",
            steps.clone(),
        );
        registry.register(
            "switchboard_step_seconds",
            "Flow step latency, instantiation included",
            step_seconds.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            contacts,
            steps,
            step_seconds,
        }
    }
}

impl Metrics {
    /// A contact started.
    pub fn contact_started(&self) {
        self.contacts.inc();
    }

    /// A step ran.
    pub fn step(&self, flow: &str, version: u64, elapsed: Duration, fault: Option<&Fault>) {
        let labels = StepLabels {
            flow: flow.to_string(),
            version: version.to_string(),
            outcome: fault.map_or("ok", Fault::kind),
        };
        self.steps.get_or_create(&labels).inc();
        self.step_seconds.observe(elapsed.as_secs_f64());
    }

    /// Adds a live metric (a counter, a histogram...) kept by its owner. A counter's name
    /// is given without `_total`, which the exposition adds.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(name, help, metric);
    }

    /// Adds metrics whose values `sample` reads from their owner's state at each scrape.
    pub fn sample(&self, sample: impl Fn(&mut Samples) + Send + Sync + 'static) {
        self.lock()
            .register_collector(Box::new(Sampled(Box::new(sample))));
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.lock())
        {
            tracing::error!(error = %e, "cannot render the metrics");
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Values read at scrape time, grouped in families of one name.
#[derive(Default)]
pub struct Samples {
    families: Vec<SampledFamily>,
}

struct SampledFamily {
    name: &'static str,
    help: &'static str,
    values: Vec<(Vec<(String, String)>, Value)>,
}

/// A counter's count or a gauge's level.
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Level(f64),
}

impl Samples {
    /// A counter (its name without `_total`).
    pub fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.counters(name, help, vec![(Vec::new(), value)]);
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.gauges(name, help, vec![(Vec::new(), value)]);
    }

    /// A counter per label set (its name without `_total`).
    pub fn counters(
        &mut self,
        name: &'static str,
        help: &'static str,
        values: Vec<(Vec<(String, String)>, u64)>,
    ) {
        let values = values
            .into_iter()
            .map(|(l, v)| (l, Value::Count(v)))
            .collect();
        self.families.push(SampledFamily { name, help, values });
    }

    /// A gauge per label set.
    pub fn gauges(
        &mut self,
        name: &'static str,
        help: &'static str,
        values: Vec<(Vec<(String, String)>, f64)>,
    ) {
        let values = values
            .into_iter()
            .map(|(l, v)| (l, Value::Level(v)))
            .collect();
        self.families.push(SampledFamily { name, help, values });
    }
}

/// Labels written out, for [`Samples`]: `labels(&[("queue", "sales")])`.
pub fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

type Sampler = Box<dyn Fn(&mut Samples) + Send + Sync>;

struct Sampled(Sampler);

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampled")
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut samples = Samples::default();
        (self.0)(&mut samples);
        for family in samples.families {
            let kind = match family.values.first() {
                Some((_, Value::Count(_))) => MetricType::Counter,
                _ => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, value) in &family.values {
                let encoder = metric.encode_family(labels)?;
                match *value {
                    Value::Count(n) => ConstCounter::new(n).encode(encoder)?,
                    Value::Level(x) => ConstGauge::new(x).encode(encoder)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_renders_live_and_sampled_metrics_under_their_names() {
        let metrics = Metrics::default();
        metrics.contact_started();
        metrics.step("ivr", 2, Duration::from_micros(30), None);
        metrics.sample(|s| {
            s.counter("switchboard_sip_calls", "Calls offered over SIP", 7);
            s.gauges(
                "switchboard_queue_sla_percent",
                "Share answered within the SLA",
                vec![(labels(&[("queue", "sales")]), 50.0)],
            );
        });
        let text = metrics.render();
        for line in [
            "switchboard_contacts_started_total 1",
            "switchboard_steps_total{flow=\"ivr\",version=\"2\",outcome=\"ok\"} 1",
            "switchboard_step_seconds_count 1",
            "switchboard_sip_calls_total 7",
            "switchboard_queue_sla_percent{queue=\"sales\"} 50.0",
            "# TYPE switchboard_sip_calls_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }
}
