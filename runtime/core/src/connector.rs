//! The CRM connector in service: when the live version of the flow named `crm` is a connector
//! component, it answers every flow's `crm.lookup` (else the built-in customer store does).
//! Answers are cached per contact, so a flow that looks the caller up at every step costs the
//! CRM one request per contact; errors are never cached, but a connector that keeps failing is
//! paused for a few seconds so a CRM outage does not hold every caller for the timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::contract::Customer;
use crate::engine::bindings::LookupKey;
use crate::engine::host::crm_index_key;
use crate::engine::{
    Clock, ConnectorAnswer, ConnectorPolicy, CrmConnector, Engine, MAX_CONNECTOR_CALLS_PER_STEP,
    Services,
};
use crate::flows::{CRM_FLOW, Flows};
use crate::store::Store;

/// How long a cached answer serves its contact.
const CACHE_TTL: Duration = Duration::from_secs(15 * 60);
/// Cached answers kept at most (about 1 KiB each).
const CACHE_CAPACITY: usize = 50_000;

/// (contact, connector version, lookup key).
type CacheKey = (String, u64, String);

/// Serves `crm.lookup` from the live `crm` connector.
pub struct CrmLink {
    flows: Arc<Flows>,
    engine: Arc<Engine>,
    /// What the connector's own host calls (its settings, its log) are served from.
    services: Arc<Services>,
    /// The policy of the version last used.
    policy: Mutex<Option<(u64, Arc<ConnectorPolicy>)>>,
    cache: Mutex<HashMap<CacheKey, (Instant, Option<Customer>)>>,
    breaker: Breaker,
    counts: Counts,
}

struct Counts {
    cached: AtomicU64,
    found: AtomicU64,
    not_found: AtomicU64,
    failed: AtomicU64,
    /// How long connector calls (cache misses) took, registered as
    /// `switchboard_crm_connector_seconds`.
    seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            cached: AtomicU64::new(0),
            found: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 12),
            ),
        }
    }
}

impl CrmLink {
    /// A link over the deployed flows; the connector's settings come from `store`.
    pub fn new(flows: Arc<Flows>, engine: Arc<Engine>, store: Arc<dyn Store>) -> CrmLink {
        let services =
            Arc::new(Services::new(store, Clock::System).with_settings(flows.settings_copies()));
        CrmLink {
            flows,
            engine,
            services,
            policy: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            breaker: Breaker::default(),
            counts: Counts::default(),
        }
    }

    fn policy_of(&self, version: u64) -> Result<Arc<ConnectorPolicy>, String> {
        let mut last = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, policy)) = &*last
            && *v == version
        {
            return Ok(policy.clone());
        }
        let record = self
            .flows
            .version(CRM_FLOW, version)
            .map_err(|e| format!("the CRM connector's version {version} cannot be read: {e}"))?;
        let policy = Arc::new(record.connector.ok_or_else(|| {
            format!("the CRM connector's version {version} was deployed without a policy; deploy it again with --allow")
        })?);
        *last = Some((version, policy.clone()));
        Ok(policy)
    }

    fn remember(&self, key: CacheKey, answer: Option<Customer>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), answer));
    }

    /// Adds the lookups served and the connector's call times to `metrics`.
    pub fn register_metrics(self: &Arc<Self>, metrics: &crate::metrics::Metrics) {
        metrics.register(
            "switchboard_crm_connector_seconds",
            "Time spent in connector calls (cache misses)",
            self.counts.seconds.clone(),
        );
        let link = self.clone();
        metrics.sample(move |samples| {
            let c = &link.counts;
            let values = [
                ("cached", &c.cached),
                ("found", &c.found),
                ("not_found", &c.not_found),
                ("error", &c.failed),
            ]
            .into_iter()
            .map(|(result, n)| {
                (
                    crate::metrics::labels(&[("result", result)]),
                    n.load(Ordering::Relaxed),
                )
            })
            .collect();
            samples.counters(
                "switchboard_crm_lookups",
                "CRM lookups answered by the connector, by result (cached: from the contact's cache)",
                values,
            );
        });
    }
}

impl CrmConnector for CrmLink {
    fn lookup(&self, contact: &str, key: &LookupKey, may_call: bool) -> Option<ConnectorAnswer> {
        let (version, component) = match self
            .flows
            .live_component(CRM_FLOW, crate::engine::World::Connector)
        {
            Ok(live) => live?,
            Err(e) => {
                return Some(self.failed(format!("the CRM connector cannot be loaded: {e}")));
            }
        };
        let cache_key = (contact.to_string(), version, crm_index_key(key));
        if let Some((at, answer)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            && at.elapsed() < CACHE_TTL
        {
            self.counts.cached.fetch_add(1, Ordering::Relaxed);
            return Some(ConnectorAnswer {
                answer: Ok(answer.clone()),
                called: false,
            });
        }
        if !may_call {
            return Some(self.failed(format!(
                "not asked: this step already made the {MAX_CONNECTOR_CALLS_PER_STEP} CRM lookups a step may make past the contact's cache"
            )));
        }
        if let Some(why) = self.breaker.refuses(version) {
            return Some(self.failed(why));
        }
        let answer = self.policy_of(version).and_then(|policy| {
            let started = Instant::now();
            let answer =
                self.engine
                    .crm_lookup(&self.services, &component, version, &policy, contact, key);
            self.counts.seconds.observe(started.elapsed().as_secs_f64());
            answer
        });
        self.breaker.record(version, answer.is_ok());
        match &answer {
            Ok(found) => {
                let counter = if found.is_some() {
                    &self.counts.found
                } else {
                    &self.counts.not_found
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.remember(cache_key, found.clone());
            }
            Err(why) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "connector", contact, version, key = %crm_index_key(key), error = %why, "CRM lookup failed; the flow carries on without");
            }
        }
        Some(ConnectorAnswer {
            answer,
            called: true,
        })
    }
}

impl CrmLink {
    /// A lookup refused without calling the connector.
    fn failed(&self, why: String) -> ConnectorAnswer {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        ConnectorAnswer {
            answer: Err(why),
            called: false,
        }
    }
}

/// Stops calling a connector that keeps failing (a CRM that is down or hangs would otherwise
/// hold every step that looks a caller up for the whole timeout): after [`TRIP_AFTER`]
/// failures in a row, lookups fail at once for [`PAUSE`], then the connector is tried again.
#[derive(Default)]
struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    version: u64,
    failures: u32,
    paused_until: Option<Instant>,
}

/// Failures in a row that pause calls to the connector.
const TRIP_AFTER: u32 = 5;
/// How long calls pause.
const PAUSE: Duration = Duration::from_secs(10);

impl Breaker {
    /// Why the connector is not called now, if it is paused.
    fn refuses(&self, version: u64) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = state.paused_until.filter(|_| state.version == version)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "not asked: the CRM connector failed {} times in a row; it is tried again in {} s",
            state.failures,
            left.as_secs() + 1
        ))
    }

    fn record(&self, version: u64, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.version != version || ok {
            *state = BreakerState {
                version,
                ..Default::default()
            };
        }
        if !ok {
            state.failures += 1;
            if state.failures >= TRIP_AFTER {
                if state.paused_until.is_none() {
                    tracing::error!(target: "connector", version, failures = state.failures, "the CRM connector keeps failing; lookups fail at once for {} s", PAUSE.as_secs());
                }
                state.paused_until = Some(Instant::now() + PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connector_failing_in_a_row_is_paused_and_a_success_or_new_version_resets() {
        let breaker = Breaker::default();
        for _ in 0..TRIP_AFTER - 1 {
            breaker.record(1, false);
        }
        assert_eq!(breaker.refuses(1), None, "not yet");
        breaker.record(1, true);
        for _ in 0..TRIP_AFTER - 1 {
            breaker.record(1, false);
        }
        assert_eq!(
            breaker.refuses(1),
            None,
            "a success started the count again"
        );
        breaker.record(1, false);
        let why = breaker.refuses(1).expect("paused");
        assert!(why.contains("failed 5 times in a row"), "{why}");
        assert_eq!(breaker.refuses(2), None, "a new version is tried");
        breaker.record(2, true);
        assert_eq!(breaker.refuses(1), None);
    }
}
