//! `switchboard rollback NAME VERSION`: makes an existing version of a flow live again.
//! New contacts get it; contacts already talking stay on the version they started on.

use clap::Args;

use super::Remote;
use super::client::Client;

#[derive(Args)]
pub struct RollbackArgs {
    /// The flow.
    flow: String,
    /// The version to make live.
    version: u64,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: RollbackArgs) -> anyhow::Result<()> {
    let RollbackArgs {
        flow,
        version,
        remote,
    } = args;
    Client::new(&remote)?.post_json(
        &format!("/v1/flows/{flow}/rollback"),
        &serde_json::json!({"version": version}),
    )?;
    println!("flow {flow}: version {version} is live again");
    Ok(())
}
