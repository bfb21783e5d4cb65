//! `switchboard queue NAME`: defines or redefines a queue: who belongs (CEL over `agent`),
//! the order tasks are offered in, the service level, how long an agent has to accept, and
//! the targets tried in turn. Prints the queue as the server stored it.

use anyhow::Context as _;
use clap::Args;

use super::Remote;
use super::client::{self, Client};
use super::output::print_json;

#[derive(Args)]
pub struct QueueArgs {
    /// The queue's name.
    name: String,
    /// CEL over `agent`: who belongs (default: every agent), such as
    /// '"billing" in agent.skills && agent.level >= 2'.
    #[arg(long, default_value = "")]
    members: String,
    /// `priority` (higher first, then oldest) or `fifo`.
    #[arg(long, default_value = "priority")]
    order: String,
    /// Seconds within which an answer counts toward the service level.
    #[arg(long, default_value_t = 30)]
    sla: u64,
    /// Seconds an agent has to accept an offer.
    #[arg(long, default_value_t = 30)]
    reservation_timeout: u64,
    /// Targets as a JSON list, such as '[{"agents": "agent.level >= 3", "timeout_secs": 30}, {}]'.
    #[arg(long)]
    targets: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: QueueArgs) -> anyhow::Result<()> {
    let targets: serde_json::Value = match &args.targets {
        Some(text) => serde_json::from_str(text)
            .context("--targets is not a JSON list of {\"agents\": ..., \"timeout_secs\": ...}")?,
        None => serde_json::json!([]),
    };
    let body = serde_json::json!({"members": args.members, "order": args.order, "sla_secs": args.sla, "reservation_timeout_secs": args.reservation_timeout, "targets": targets});
    let queue = Client::new(&args.remote)?.put_json(
        &format!("/v1/queues/{}", client::encode_path(&args.name)),
        &body,
    )?;
    print_json(&queue)
}
