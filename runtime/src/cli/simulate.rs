//! `switchboard simulate NAME|FILE.wasm`: talks to a flow from the terminal, as a caller
//! would: a deployed flow through the server, or a `.wasm` file in-process on a throwaway
//! store (with its own customers, settings and clock). Answers come from the keyboard or,
//! line by line, from a script or a pipe. A local run never touches a server, and the
//! local-only options are refused for a deployed flow rather than silently ignored.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;

use super::client::Client;
use super::{Remote, parse_pair};
use crate::channels::terminal::{self, Conversation};
use crate::contract::Channel;
use crate::sessions::NewContact;

#[derive(Args)]
pub struct SimulateArgs {
    /// A deployed flow's name, or a .wasm file to run locally without a server.
    target: String,
    /// The caller's address.
    #[arg(long, default_value = "+15551230001")]
    from: String,
    /// The address called (selects the flow through its binding when simulating a name).
    #[arg(long, default_value = "+15550100")]
    to: String,
    /// The channel.
    #[arg(long, value_enum, default_value = "voice")]
    channel: ChannelArg,
    /// Contact attributes (KEY=VALUE, repeatable).
    #[arg(long = "attribute", value_parser = parse_pair)]
    attributes: Vec<(String, String)>,
    /// Read the caller's answers from this file instead of the terminal.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Local runs only: customers for the CRM (CSV or JSON).
    #[arg(long)]
    customers: Option<PathBuf>,
    /// Local runs only: flow settings (KEY=VALUE, repeatable).
    #[arg(long = "setting", value_parser = parse_pair)]
    settings: Vec<(String, String)>,
    /// Local runs only: the time the flow sees, RFC 3339 (2026-11-25T10:00:00-05:00).
    #[arg(long)]
    at: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ChannelArg {
    Voice,
    Sms,
    Chat,
    Email,
}

impl From<ChannelArg> for Channel {
    fn from(c: ChannelArg) -> Channel {
        match c {
            ChannelArg::Voice => Channel::Voice,
            ChannelArg::Sms => Channel::Sms,
            ChannelArg::Chat => Channel::Chat,
            ChannelArg::Email => Channel::Email,
        }
    }
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let local = args.target.ends_with(".wasm") || Path::new(&args.target).is_file();
    let new = NewContact {
        channel: Some(args.channel.into()),
        from: args.from.clone(),
        to: args.to.clone(),
        flow: None,
        attributes: args.attributes.clone(),
        held: false,
    };
    let input: Box<dyn std::io::BufRead> = match &args.script {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .with_context(|| format!("cannot read the script {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let interactive = args.script.is_none() && std::io::stdin().is_terminal();
    let mut out = std::io::stdout().lock();
    if local {
        let driver = terminal::LocalFlow::open(
            Path::new(&args.target),
            args.customers.as_deref(),
            &args.settings,
            args.at.as_deref(),
        )?;
        let new = NewContact {
            flow: Some(terminal::LOCAL_FLOW.into()),
            ..new
        };
        Conversation::new(driver, input, &mut out, interactive).run(new)
    } else {
        if args.customers.is_some() || !args.settings.is_empty() || args.at.is_some() {
            bail!(
                "--customers, --setting and --at apply to local simulations of a .wasm file; for a deployed flow use `switchboard customers` and `switchboard settings`"
            );
        }
        let client = Client::new(&args.remote)?;
        let new = NewContact {
            flow: Some(args.target.clone()),
            ..new
        };
        Conversation::new(client, input, &mut out, interactive).run(new)
    }
}
