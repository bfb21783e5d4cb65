//! `switchboard agent NAME`: creates or updates an agent (attributes the queues' CEL reads,
//! capacity per channel). Prints the new agent's token once, when the agent is created: the
//! server keeps only its hash and never shows it again.

use anyhow::Context as _;
use clap::Args;

use super::client::{self, Client};
use super::{Remote, parse_pair};

#[derive(Args)]
pub struct AgentArgs {
    /// The agent's name (login).
    name: String,
    /// Attributes as a JSON object, such as '{"skills": ["billing"], "languages": ["en"], "level": 2}'.
    #[arg(long, default_value = "{}")]
    attributes: String,
    /// Capacity per channel, such as voice=1 chat=3 (repeatable).
    #[arg(long = "capacity", value_parser = parse_pair)]
    capacity: Vec<(String, String)>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let AgentArgs {
        name,
        attributes,
        capacity,
        remote,
    } = args;
    let attributes: serde_json::Value =
        serde_json::from_str(&attributes).context("--attributes is not a JSON object")?;
    let mut caps = serde_json::Map::new();
    for (channel, n) in capacity {
        let n: u32 = n
            .parse()
            .with_context(|| format!("--capacity {channel}={n}: the capacity is a whole number"))?;
        caps.insert(channel, n.into());
    }
    let body = serde_json::json!({"attributes": attributes, "capacity": caps});
    let agent = Client::new(&remote)?
        .put_json(&format!("/v1/agents/{}", client::encode_path(&name)), &body)?;
    match agent["token"].as_str() {
        Some(token) => println!("agent {name} created; their token (shown once): {token}"),
        None => println!("agent {name} updated"),
    }
    Ok(())
}
