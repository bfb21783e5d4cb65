//! SIP load: sipp places calls at a fixed rate against a real `switchboard serve` running the
//! sample IVR (greeting and menu spoken, "1" pressed by RFC 4733 events, the caller waits on
//! hold music, then hangs up). For each rate it reports calls completed and failed, the
//! highest number of calls up at once, prompt RTP timing (the server's pacer lateness and the
//! jitter measured where the packets arrive), the server's CPU and memory.
//!
//! `cargo bench -p switchboard --bench sip` (rates: `SIP_BENCH_RATES=50,100`; seconds of
//! calling per rate: `SIP_BENCH_SECS=20`; seconds each call stays: `SIP_BENCH_HOLD_SECS=10`).
//! Needs sipp, espeak-ng and sox (Debian: sip-tester espeak-ng sox); runs in a private
//! network namespace when it may.

#[path = "../../tests/all/sipp.rs"]
mod sipp;
#[allow(dead_code)]
#[path = "../../tests/all/support.rs"]
mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipp::Caller;

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Per-stream interarrival jitter (RFC 3550, section 6.4.1), in milliseconds.
#[derive(Default)]
struct Jitter {
    streams: HashMap<u32, (f64, f64, f64)>, // ssrc -> (last transit, jitter, packets)
    packets: u64,
}

fn listen(socket: UdpSocket, stop: Arc<AtomicBool>) -> Arc<Mutex<Jitter>> {
    let jitter = Arc::new(Mutex::new(Jitter::default()));
    let out = jitter.clone();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        let mut local: HashMap<u32, (f64, f64, f64)> = HashMap::new();
        let mut packets = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 || buf[1] & 0x7f > 8 {
                continue;
            }
            packets += 1;
            let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let arrival_ms = start.elapsed().as_secs_f64() * 1000.0;
            let transit = arrival_ms - f64::from(ts) / 8.0;
            let entry = local.entry(ssrc).or_insert((transit, 0.0, 0.0));
            let d = (transit - entry.0).abs();
            // Timestamps restart per prompt; a jump of more than a second is a new prompt.
            if d < 1000.0 && entry.2 > 0.0 {
                entry.1 += (d - entry.1) / 16.0;
            }
            entry.0 = transit;
            entry.2 += 1.0;
        }
        let mut j = out.lock().unwrap();
        j.streams = local;
        j.packets = packets;
    });
    jitter
}

fn proc_stat(pid: u32) -> (f64, u64) {
    let cpu = support::process_times(&pid.to_string()).map_or(0.0, |(_, t)| t[0] + t[1]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss_kb)
}

fn metric(server: &support::Server, name: &str) -> f64 {
    server.metric(name)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let isolated = sipp::private_network();
    let rates = env_list("SIP_BENCH_RATES", "50,100");
    let secs = env_list("SIP_BENCH_SECS", "20")[0];
    let hold = env_list("SIP_BENCH_HOLD_SECS", "10")[0];
    println!(
        "SIP load: sample IVR, each call hears greeting + menu, presses 1 (RFC 4733), waits on hold, hangs up after ~{hold} s; {secs} s of calling per rate; {}",
        if isolated {
            "private network namespace"
        } else {
            "host loopback"
        }
    );
    let mut best: Option<(u64, f64)> = None;
    for rate in rates {
        let dir = tempfile::tempdir().unwrap();
        // sipp is the trunk: listed, so the per-source limit of an open port does not apply.
        let server = support::sip_ivr_server_with_env(
            dir.path(),
            &[],
            &[("SWITCHBOARD_SIP_TRUSTED", "127.0.0.1")],
        );
        let pid = server.pid();
        let sip = server.sip.expect("SIP address");
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp_port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let jitter = listen(socket, stop.clone());
        let scenario = Caller::dial(rtp_port, "+15551234")
            .answered()
            .pause(2500)
            .press_rfc4733("1")
            .pause(hold.saturating_sub(3) * 1000)
            .hang_up()
            .write(dir.path(), "load");
        // Warm the prompt cache with one call, as a running server would be.
        sipp::sipp(dir.path(), &scenario, sip, "+15550100", &["-m", "1"]).succeeds();

        let calls = rate * secs;
        let (cpu0, _) = proc_stat(pid);
        let started = Instant::now();
        let run = sipp::sipp(
            dir.path(),
            &scenario,
            sip,
            "+15550100",
            &[
                "-r",
                &rate.to_string(),
                "-l",
                &(rate * (hold + 5)).to_string(),
                "-m",
                &calls.to_string(),
                "-trace_stat",
                "-stf",
                &dir.path().join("stats.csv").display().to_string(),
            ],
        );
        let mut peak = 0.0f64;
        let mut rss_peak = 0u64;
        let watcher = std::thread::spawn(move || run.wait());
        while !watcher.is_finished() {
            peak = peak.max(metric(&server, "switchboard_sip_calls_active"));
            rss_peak = rss_peak.max(proc_stat(pid).1);
            std::thread::sleep(Duration::from_millis(250));
        }
        let status = watcher.join().unwrap();
        let wall = started.elapsed().as_secs_f64();
        let (cpu1, _) = proc_stat(pid);
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let stats = std::fs::read_to_string(dir.path().join("stats.csv")).unwrap_or_default();
        let (ok, failed) = sipp_totals(&stats);
        let digits = metric(&server, "switchboard_rtp_dtmf_digits_total") - 1.0;
        let lateness_p50 = metric(
            &server,
            "switchboard_rtp_pacer_lateness_us{quantile=\"0.5\"}",
        );
        let lateness_p99 = metric(
            &server,
            "switchboard_rtp_pacer_lateness_us{quantile=\"0.99\"}",
        );
        let lateness_max = metric(&server, "switchboard_rtp_pacer_lateness_us_max");
        let j = jitter.lock().unwrap();
        let mut jitters: Vec<f64> = j
            .streams
            .values()
            .filter(|s| s.2 > 50.0)
            .map(|s| s.1)
            .collect();
        jitters.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            jitters
                .get(((jitters.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "\nrate {rate} calls/s, {calls} calls, up to {} at once allowed:",
            rate * (hold + 5)
        );
        println!(
            "  calls: {ok} completed, {failed} failed (sipp exit: {status}); digits heard {digits:.0}"
        );
        println!("  peak concurrent calls: {peak:.0}");
        println!(
            "  prompt RTP: {} packets received; jitter per stream (RFC 3550) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} streams",
            j.packets,
            pct(0.5),
            pct(0.99),
            jitters.last().copied().unwrap_or(0.0),
            jitters.len()
        );
        println!(
            "  pacer lateness (server, whole run incl. warm-up): p50 {lateness_p50:.0} us, p99 {lateness_p99:.0} us, max {lateness_max:.0} us"
        );
        println!(
            "  server CPU {:.0}% of one core ({:.1} s over {wall:.1} s), peak RSS {:.0} MiB",
            (cpu1 - cpu0) / wall * 100.0,
            cpu1 - cpu0,
            rss_peak as f64 / 1024.0
        );
        if status.success() && failed == 0 {
            best = Some((rate, peak));
        }
        drop(j);
        server.kill();
    }
    match best {
        Some((rate, peak)) => println!(
            "\nhighest rate with no failed call: {rate} calls/s (goal 100: {:.2}x), {peak:.0} concurrent calls (goal 1,000: {:.2}x)",
            rate as f64 / 100.0,
            peak / 1000.0
        ),
        None => println!("\nno rate ran without failed calls"),
    }
}

/// Successful and failed calls from sipp's statistics file (its last line).
fn sipp_totals(csv: &str) -> (u64, u64) {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = csv.lines().last() else {
        return (0, 0);
    };
    let names: Vec<&str> = header.split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i)?.parse().ok())
            .unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}
