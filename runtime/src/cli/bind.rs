//! `switchboard bind ADDRESS --flow NAME`: routes contacts reaching an address (a phone
//! number, `chat:widget`, a mailbox) to a flow, with attributes every such contact starts
//! with.

use clap::Args;

use super::client::{self, Client};
use super::{Remote, parse_pair};

#[derive(Args)]
pub struct BindArgs {
    /// The address, such as +15550100.
    address: String,
    /// The flow it starts.
    #[arg(long)]
    flow: String,
    /// Attributes every contact through it starts with (KEY=VALUE, repeatable).
    #[arg(long = "attribute", value_parser = parse_pair)]
    attributes: Vec<(String, String)>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: BindArgs) -> anyhow::Result<()> {
    let BindArgs {
        address,
        flow,
        attributes,
        remote,
    } = args;
    let path = format!("/v1/entry-points/{}", client::encode_path(&address));
    Client::new(&remote)?.put_json(
        &path,
        &serde_json::json!({"flow": flow, "attributes": attributes}),
    )?;
    println!("{address} now starts flow {flow}");
    Ok(())
}
