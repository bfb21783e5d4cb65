//! `switchboard queues`: every queue's live numbers (tasks pending, reserved and assigned,
//! waits, agents available of those eligible, service level), one line each.

use clap::Args;

use super::Remote;
use super::client::Client;

#[derive(Args)]
pub struct QueuesArgs {
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: QueuesArgs) -> anyhow::Result<()> {
    let stats = Client::new(&args.remote)?.get("/v1/stats")?;
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>7}",
        "queue", "pending", "reserved", "assigned", "longest s", "average s", "agents", "SLA %"
    );
    for q in stats["queues"].as_array().cloned().unwrap_or_default() {
        let n = |k: &str| q["tasks"][k].as_u64().unwrap_or(0);
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>10.1} {:>10.1} {:>4}/{:<4} {:>7.1}",
            q["queue"].as_str().unwrap_or("?"),
            n("pending"),
            n("reserved"),
            n("assigned"),
            q["longest_wait_secs"].as_f64().unwrap_or(0.0),
            q["average_wait_secs"].as_f64().unwrap_or(0.0),
            q["available_agents"],
            q["eligible_agents"],
            q["sla_percent"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
