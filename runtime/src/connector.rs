//! The CRM connector in service: when the live version of the flow named `crm` is a connector
//! component, it answers every flow's `crm.lookup` (else the built-in customer store does).
//! Answers are cached per contact, so a flow that looks the caller up at every step costs the
//! CRM one request per contact; errors are never cached.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::contract::Customer;
use crate::engine::bindings::LookupKey;
use crate::engine::host::crm_index_key;
use crate::engine::{
    CONNECTOR_WORLD, Clock, ConnectorAnswer, ConnectorPolicy, CrmConnector, Engine, Services,
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
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    cached: AtomicU64,
    found: AtomicU64,
    not_found: AtomicU64,
    failed: AtomicU64,
    /// Connector calls (cache misses), and their total time in microseconds.
    calls: AtomicU64,
    call_us: AtomicU64,
}

impl CrmLink {
    /// A link over the deployed flows; the connector's settings come from `store`.
    pub fn new(flows: Arc<Flows>, engine: Arc<Engine>, store: Arc<dyn Store>) -> CrmLink {
        CrmLink {
            flows,
            engine,
            services: Arc::new(Services::new(store, Clock::System)),
            policy: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
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

    /// Prometheus text for the lookups served.
    pub fn render_metrics(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP switchboard_crm_lookups_total CRM lookups answered by the connector, by result (cached: from the contact's cache)."
        );
        let _ = writeln!(out, "# TYPE switchboard_crm_lookups_total counter");
        for (result, n) in [
            ("cached", &c.cached),
            ("found", &c.found),
            ("not_found", &c.not_found),
            ("error", &c.failed),
        ] {
            let _ = writeln!(
                out,
                "switchboard_crm_lookups_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_crm_connector_seconds Time spent in connector calls (cache misses)."
        );
        let _ = writeln!(out, "# TYPE switchboard_crm_connector_seconds summary");
        let _ = writeln!(
            out,
            "switchboard_crm_connector_seconds_count {}",
            c.calls.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "switchboard_crm_connector_seconds_sum {}",
            c.call_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        out
    }
}

impl CrmConnector for CrmLink {
    fn lookup(&self, contact: &str, key: &LookupKey) -> Option<ConnectorAnswer> {
        let version = self.flows.live(CRM_FLOW).ok()?;
        let component = match self.flows.component(CRM_FLOW, version) {
            Ok(component) => component,
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                return Some(ConnectorAnswer {
                    answer: Err(format!("the CRM connector cannot be loaded: {e}")),
                    cached: false,
                });
            }
        };
        if component.world() != CONNECTOR_WORLD {
            return None;
        }
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
                cached: true,
            });
        }
        let answer = self.policy_of(version).and_then(|policy| {
            let started = Instant::now();
            let answer =
                self.engine
                    .crm_lookup(&self.services, &component, version, &policy, contact, key);
            self.counts.calls.fetch_add(1, Ordering::Relaxed);
            self.counts
                .call_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            answer
        });
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
            cached: false,
        })
    }
}
