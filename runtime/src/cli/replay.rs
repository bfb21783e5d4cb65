//! `switchboard replay CONTACT --against VERSION`: re-runs a recorded contact on another
//! version of its flow, host calls answered from the recording, and prints what changed
//! step by step; `--save FILE` also keeps the recording as a golden file for
//! `switchboard test`. Never changes the contact: a replay runs beside it.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Remote;
use super::client::Client;

#[derive(Args)]
pub struct ReplayArgs {
    /// The contact id.
    contact: String,
    /// The version to replay against.
    #[arg(long)]
    against: u64,
    /// Also save the recorded contact as a golden file for `switchboard test`.
    #[arg(long)]
    save: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplayArgs {
        contact,
        against,
        save,
        remote,
    } = args;
    let client = Client::new(&remote)?;
    if let Some(path) = save {
        let golden = client.get(&format!("/v1/contacts/{contact}/golden"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&golden)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("saved the recorded contact to {}", path.display());
    }
    let report = client.post_json(
        &format!("/v1/contacts/{contact}/replay"),
        &serde_json::json!({"version": against}),
    )?;
    let report: crate::replay::ReplayReport =
        serde_json::from_value(report).context("the replay report does not decode")?;
    print!("{}", crate::replay::render(&report));
    Ok(())
}
