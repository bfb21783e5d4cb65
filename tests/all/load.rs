//! Multi-step contacts through the HTTP API from several client threads while another thread
//! deploys a new version of the same flow every few seconds. Shared by the `hot_swap` test
//! (which asserts correctness) and the `hot_swap` benchmark (which reports the numbers).
//!
//! Each contact: start, press 7, press 8: invalid keys for the IVR (it re-prompts), echoed by
//! the chaos flow, so every deployed component keeps the contact going for three steps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What the run saw.
#[derive(Default)]
pub struct LoadReport {
    /// Steps answered without error or fault.
    pub steps: u64,
    /// Contacts completed (all three steps).
    pub contacts: u64,
    /// Steps that failed (HTTP error or fault), with why.
    pub failed: Vec<String>,
    /// Contacts whose steps ran on more than one version.
    pub mixed: Vec<String>,
    /// Contacts started after a deploy returned but not on that version (or newer).
    pub stale: Vec<String>,
    /// Per deploy: version, compile ms, swap us, ms from the API call to the first contact
    /// seen on it.
    pub deploys: Vec<(u64, f64, u64, Option<f64>)>,
    /// Step latencies as seen by clients, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

struct Start {
    sent: Instant,
    answered: Instant,
    version: u64,
    contact: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> Result<Value, String> {
    let mut response = agent
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .send_json(body)
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    if !body["fault"].is_null() {
        return Err(format!("fault: {}", body["fault"]));
    }
    Ok(body)
}

/// Appends a custom section so every deploy has new bytes (new hash, full compile).
pub fn with_marker(component: &[u8], marker: u64) -> Vec<u8> {
    let name = b"switchboard-load";
    let payload = marker.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // fits in one LEB128 byte
    out.extend_from_slice(&section);
    out
}

/// Runs the load: `threads` clients for `duration`, a deploy of the next component (cycling
/// through `components`) every `deploy_every`. Each deploy compiles afresh, which a loaded
/// machine can make take seconds: the traffic goes on past `duration` (for at most a minute)
/// until `deploys_at_least` deploys were made under it.
#[allow(clippy::too_many_arguments)]
pub fn run(
    base: &str,
    token: &str,
    flow: &str,
    components: &[Vec<u8>],
    threads: usize,
    duration: Duration,
    deploy_every: Duration,
    deploys_at_least: usize,
) -> LoadReport {
    let stop = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(Mutex::new(Vec::<Start>::new()));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let began = Instant::now();

    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, starts, report) = (stop.clone(), starts.clone(), report.clone());
            let (base, token, flow) = (base.to_string(), token.to_string(), flow.to_string());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let from = format!("+1555{t:02}{n:06}");
                    let mut latencies = Vec::with_capacity(3);
                    let sent = Instant::now();
                    let first = match post(
                        &agent,
                        &format!("{base}/v1/contacts"),
                        &token,
                        &json!({"channel": "voice", "from": from, "to": "+15550100", "flow": flow}),
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            report.lock().unwrap().failed.push(format!("start: {e}"));
                            continue;
                        }
                    };
                    let answered = Instant::now();
                    latencies.push((answered - sent).as_micros() as u64);
                    let id = first["contact"].as_str().unwrap().to_string();
                    let version = first["version"].as_u64().unwrap();
                    starts.lock().unwrap().push(Start {
                        sent,
                        answered,
                        version,
                        contact: id.clone(),
                    });
                    let mut versions = vec![version];
                    let mut ok = 1;
                    for digits in ["7", "8"] {
                        let t = Instant::now();
                        match post(
                            &agent,
                            &format!("{base}/v1/contacts/{id}/events"),
                            &token,
                            &json!({"type": "input", "digits": digits}),
                        ) {
                            Ok(r) => {
                                latencies.push(t.elapsed().as_micros() as u64);
                                versions.push(r["version"].as_u64().unwrap());
                                ok += 1;
                            }
                            Err(e) => report
                                .lock()
                                .unwrap()
                                .failed
                                .push(format!("contact {id} step: {e}")),
                        }
                    }
                    let mut r = report.lock().unwrap();
                    r.steps += ok;
                    r.latencies_us.extend(latencies);
                    if ok == 3 {
                        r.contacts += 1;
                    }
                    if versions.iter().any(|v| *v != versions[0]) {
                        r.mixed
                            .push(format!("contact {id} ran on versions {versions:?}"));
                    }
                }
            })
        })
        .collect();

    // Deploys: (version, call started, call returned, compile ms, swap us).
    let mut deploys = Vec::new();
    let agent = agent();
    let mut marker = 0u64;
    let longest = duration.max(Duration::from_secs(60));
    while began.elapsed() + deploy_every < duration
        || (deploys.len() < deploys_at_least && began.elapsed() + deploy_every < longest)
    {
        std::thread::sleep(deploy_every);
        marker += 1;
        let bytes = with_marker(&components[marker as usize % components.len()], marker);
        let called = Instant::now();
        let mut response = agent
            .post(format!("{base}/v1/flows/{flow}/versions"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/wasm")
            .send(&bytes[..])
            .expect("the deploy request is answered");
        let returned = Instant::now();
        let body: Value = response.body_mut().read_json().unwrap();
        assert!(response.status().is_success(), "deploy failed: {body}");
        deploys.push((
            body["version"].as_u64().unwrap(),
            called,
            returned,
            body["compile_ms"].as_f64().unwrap_or(0.0),
            body["swap_us"].as_u64().unwrap_or(0),
        ));
    }
    // Contacts started after the last deploy show that it went live.
    let left = duration.saturating_sub(began.elapsed()).max(deploy_every);
    std::thread::sleep(left);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let mut report = Arc::try_unwrap(report).ok().unwrap().into_inner().unwrap();
    report.elapsed = began.elapsed();
    let starts = starts.lock().unwrap();
    for (version, called, returned, compile_ms, swap_us) in &deploys {
        for s in starts
            .iter()
            .filter(|s| s.sent > *returned && s.version < *version)
        {
            report.stale.push(format!(
                "contact {} started after version {version} went live but ran on {}",
                s.contact, s.version
            ));
        }
        let first_seen = starts
            .iter()
            .filter(|s| s.version == *version)
            .map(|s| s.answered)
            .min()
            .map(|t| (t.max(*called) - *called).as_secs_f64() * 1000.0);
        report
            .deploys
            .push((*version, *compile_ms, *swap_us, first_seen));
    }
    report
}
