//! `switchboard canary promote|abort NAME`: ends a flow's canary, by making it the live
//! version or by sending every new contact to the live version again (with a reason for
//! the audit trail). Contacts already on the canary finish there either way.

use clap::{Args, Subcommand};

use super::Remote;
use super::client::Client;

#[derive(Args)]
pub struct CanaryArgs {
    #[command(subcommand)]
    action: CanaryAction,
}

#[derive(Subcommand)]
enum CanaryAction {
    /// Make the canary the live version.
    Promote {
        /// The flow.
        flow: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// End the canary; new contacts all get the live version again.
    Abort {
        /// The flow.
        flow: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn run(args: CanaryArgs) -> anyhow::Result<()> {
    let (flow, remote, path, body) = match args.action {
        CanaryAction::Promote { flow, remote } => {
            let path = format!("/v1/flows/{flow}/canary/promote");
            (flow, remote, path, serde_json::json!({}))
        }
        CanaryAction::Abort {
            flow,
            reason,
            remote,
        } => {
            let path = format!("/v1/flows/{flow}/canary/abort");
            (flow, remote, path, serde_json::json!({"reason": reason}))
        }
    };
    let record = Client::new(&remote)?.post_json(&path, &body)?;
    println!("flow {flow}: version {} is live; no canary", record["live"]);
    Ok(())
}
