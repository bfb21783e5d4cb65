//! `switchboard customers FILE`: loads customers (CSV with an `id,name[,phone,email,tier,...]`
//! header, or a JSON array) into the built-in CRM that flows' `crm.lookup` reads when no
//! connector is deployed.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Remote;
use super::client::Client;

#[derive(Args)]
pub struct CustomersArgs {
    /// The file: CSV with an id,name[,phone,email,tier,...] header, or a JSON array.
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: CustomersArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let answer = Client::new(&args.remote)?.post_text("/v1/customers", text)?;
    println!("loaded {} customers", answer["loaded"]);
    Ok(())
}
