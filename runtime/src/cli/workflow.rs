//! `switchboard workflow FILE.json`: replaces the routing workflow (the filters that send
//! new tasks to queues) with the one in a file, and prints it as the server stored it.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Remote;
use super::client::Client;
use super::output::print_json;

#[derive(Args)]
pub struct WorkflowArgs {
    /// The workflow file.
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: WorkflowArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let workflow: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    print_json(&Client::new(&args.remote)?.put_json("/v1/workflow", &workflow)?)
}
