//! `switchboard settings NAME [KEY=VALUE...]`: shows a flow's settings, or changes some (an
//! empty value removes one). Flows read them on their next step: no rebuild, no redeploy.

use clap::Args;

use super::client::Client;
use super::output::print_json;
use super::{Remote, parse_pair};

#[derive(Args)]
pub struct SettingsArgs {
    /// The flow.
    flow: String,
    /// Settings to change.
    #[arg(value_parser = parse_pair)]
    changes: Vec<(String, String)>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: SettingsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote)?;
    let path = format!("/v1/flows/{}/settings", args.flow);
    let settings = if args.changes.is_empty() {
        client.get(&path)?
    } else {
        let map: serde_json::Map<String, serde_json::Value> = args
            .changes
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        client.put_json(&path, &serde_json::Value::Object(map))?
    };
    print_json(&settings)
}
