//! `switchboard deploy FILE --flow NAME`: uploads a component as the next version of a flow,
//! which makes it live, or a canary with `--canary` / `--canary-match`. With
//! `--check-against-recent N` the server first replays recent contacts against it and
//! refuses a component that behaves differently (the diffs are shown). A CRM connector is
//! deployed as flow `crm` with the hosts it may reach. Never deploys anything the server has
//! not validated and compiled: the upload is the whole deploy.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Remote;
use super::client::{self, Client};
use super::output::human_size;
use crate::channels::terminal;

#[derive(Args)]
pub struct DeployArgs {
    /// The component (.wasm).
    file: PathBuf,
    /// The flow's name.
    #[arg(long)]
    flow: String,
    /// Deploy as a canary taking this percentage (0-100) of new contacts; the live version
    /// stays live until `switchboard canary promote`.
    #[arg(long)]
    canary: Option<u32>,
    /// Canary rule FIELD=VALUE (from, to or a contact attribute): matching contacts go to
    /// the canary whatever the percentage (repeatable).
    #[arg(long = "canary-match")]
    canary_matches: Vec<String>,
    /// First replay the N most recent contacts of the live version against the new
    /// component; refuse to deploy if any behaves differently.
    #[arg(long, value_name = "N", default_value_t = 0)]
    check_against_recent: usize,
    /// Deploy even when --check-against-recent finds changed behaviour.
    #[arg(long)]
    force: bool,
    /// CRM connectors (deployed as flow `crm`): a host the connector may reach, as
    /// crm.example.com, crm.example.com:8443 or *.example.com (repeatable). Requests to
    /// any other host fail without a connection.
    #[arg(long = "allow", value_name = "HOST")]
    allow: Vec<String>,
    /// CRM connectors: cut each lookup after this many milliseconds [default: 2000].
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// CRM connectors: refuse response bodies larger than this [default: 1024].
    #[arg(long, value_name = "KIB")]
    max_response_kib: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: DeployArgs) -> anyhow::Result<()> {
    let DeployArgs {
        file,
        flow,
        canary,
        canary_matches,
        check_against_recent,
        force,
        allow,
        timeout_ms,
        max_response_kib,
        remote,
    } = args;
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let client = Client::new(&remote)?;
    let label = format!(
        "deploying {} ({}) as flow {flow}: validating and compiling",
        file.display(),
        human_size(bytes.len())
    );
    let mut query = Vec::new();
    if let Some(percent) = canary {
        query.push(format!("canary={percent}"));
    }
    if !canary_matches.is_empty() {
        query.push(format!(
            "canary_match={}",
            client::encode_path(&canary_matches.join(","))
        ));
    }
    if check_against_recent > 0 {
        query.push(format!("check_recent={check_against_recent}&force={force}"));
    }
    if !allow.is_empty() {
        query.push(format!("allow={}", client::encode_path(&allow.join(","))));
    }
    if let Some(ms) = timeout_ms {
        query.push(format!("timeout_ms={ms}"));
    }
    if let Some(kib) = max_response_kib {
        query.push(format!("max_response_kib={kib}"));
    }
    let version =
        terminal::with_progress(&label, || client.deploy(&flow, bytes, &query.join("&")))?;
    if let Some(checked) = version["checked_contacts"].as_u64() {
        let changed = version["changed_contacts"].as_array().map_or(0, Vec::len);
        println!(
            "replayed the {checked} most recent contacts of the live version: {changed} behave differently"
        );
        for report in version["changed_contacts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Ok(report) = serde_json::from_value::<crate::replay::ReplayReport>(report) {
                print!("{}", crate::replay::render(&report));
            }
        }
    }
    let sha = version["sha256"].as_str().unwrap_or_default();
    let role = if canary.is_some() || !canary_matches.is_empty() {
        "is the canary"
    } else {
        "is live"
    };
    println!(
        "flow {flow}: version {} {role} (sha256 {}…, compiled in {:.0} ms, swapped in {} us)",
        version["version"],
        sha.get(..12).unwrap_or(sha),
        version["compile_ms"].as_f64().unwrap_or_default(),
        version["swap_us"]
    );
    if let Some(policy) = version["connector"].as_object() {
        let hosts: Vec<&str> = policy["allow"]
            .as_array()
            .map(|a| a.iter().filter_map(|h| h.as_str()).collect())
            .unwrap_or_default();
        println!(
            "it answers every flow's crm.lookup; it may reach {} only; each lookup is cut at {} ms; responses up to {} KiB",
            hosts.join(", "),
            policy["timeout_ms"],
            policy["max_response_bytes"].as_u64().unwrap_or_default() / 1024
        );
    }
    Ok(())
}
