//! `switchboard flows`: every flow with its live version and since when.

use clap::Args;

use super::Remote;
use super::client::Client;

#[derive(Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: FlowsArgs) -> anyhow::Result<()> {
    let flows = Client::new(&args.remote)?.get("/v1/flows")?;
    let flows = flows.as_array().cloned().unwrap_or_default();
    if flows.is_empty() {
        println!("no flows yet: deploy one with `switchboard deploy FILE --flow NAME`");
    }
    for f in flows {
        println!(
            "{:<24} live: version {:<4} since {}",
            f["name"].as_str().unwrap_or("?"),
            f["live"],
            f["updated_at"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
