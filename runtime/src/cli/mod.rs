//! The `switchboard` command line: `serve` runs the server; the admin commands talk to a
//! running server over its HTTP API; `simulate` talks to a flow from the terminal, either a
//! deployed flow (through the server) or a `.wasm` file (in-process, no server needed).
//! One file per command, each with its arguments and its `run`; this module only parses
//! the command line and hands it to the command. What is shared lives in `client` (the
//! HTTP client) and `output` (`--json`, sizes, times).

mod agent;
mod audit;
mod bind;
mod canary;
mod client;
mod contact;
mod customers;
mod deploy;
mod flows;
mod inspect;
mod output;
mod project;
mod queue;
mod queues;
mod replay;
mod rollback;
mod serve;
mod settings;
mod simulate;
mod test;
mod trace;
mod users;
mod versions;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use output::human_size;

/// Switchboard: contact flows as WebAssembly components, deployed in seconds.
#[derive(Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the admin commands reach the server.
#[derive(Args, Clone)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API token. Defaults to the admin token the server saved in its data directory.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The server's data directory, where its admin token is saved.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = ".switchboard")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API, flows, sessions) on the embedded store.
    Serve(serve::ServeArgs),
    /// Create a flow project from a template (the SDK and the contract included).
    New(project::NewArgs),
    /// Build the flow project in DIR (default: here) into NAME.wasm with its toolchain
    /// (cargo, componentize-py or jco).
    Build(project::BuildArgs),
    /// Deploy a component as the next version of a flow and make it live (or a canary).
    Deploy(deploy::DeployArgs),
    /// List flows and their live versions.
    Flows(flows::FlowsArgs),
    /// List the versions of a flow.
    Versions(versions::VersionsArgs),
    /// Replay a recorded contact against another version of its flow and show what changed.
    Replay(replay::ReplayArgs),
    /// Run golden contacts against a component, locally: fails when any behaves differently.
    Test(test::TestArgs),
    /// List queues with their live numbers.
    Queues(queues::QueuesArgs),
    /// Define (or redefine) a queue and its routing plan.
    Queue(queue::QueueArgs),
    /// Create or update an agent; prints the agent's token when it is created.
    Agent(agent::AgentArgs),
    /// Replace the routing workflow with the one in a JSON file ({"filters": [...]}).
    Workflow(workflow::WorkflowArgs),
    /// Show what a component imports and exports, and whether it is a flow.
    Inspect(inspect::InspectArgs),
    /// Promote or abort a flow's canary.
    Canary(canary::CanaryArgs),
    /// Make an existing version of a flow live again.
    Rollback(rollback::RollbackArgs),
    /// Bind an address (phone number, chat widget, mailbox) to a flow.
    Bind(bind::BindArgs),
    /// Show a flow's settings, or set some (KEY=VALUE; an empty value removes one).
    Settings(settings::SettingsArgs),
    /// Load customers into the built-in CRM from a CSV or JSON file.
    Customers(customers::CustomersArgs),
    /// Show a contact's session.
    Contact(contact::ContactArgs),
    /// Show every recorded step of a contact.
    Trace(trace::TraceArgs),
    /// Show the audit trail.
    Audit(audit::AuditArgs),
    /// People and their roles: list, add, set, disable, enable, remove.
    Users(users::UsersArgs),
    /// API tokens of people: list, create, revoke.
    Tokens(users::TokensArgs),
    /// Talk to a flow from the terminal, as a caller would. Reads your answers from the
    /// keyboard, or line by line from a file or a pipe.
    Simulate(simulate::SimulateArgs),
}

/// Parses `KEY=VALUE`.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Runs the command line; the exit code is 1 on any error, with the error on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`simulate ... | head`) is the reader's choice, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(args),
        Command::New(args) => project::run_new(args),
        Command::Build(args) => project::run_build(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Flows(args) => flows::run(args),
        Command::Versions(args) => versions::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Test(args) => test::run(args),
        Command::Queues(args) => queues::run(args),
        Command::Queue(args) => queue::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Workflow(args) => workflow::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Canary(args) => canary::run(args),
        Command::Rollback(args) => rollback::run(args),
        Command::Bind(args) => bind::run(args),
        Command::Settings(args) => settings::run(args),
        Command::Customers(args) => customers::run(args),
        Command::Contact(args) => contact::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Users(args) => users::run_users(args),
        Command::Tokens(args) => users::run_tokens(args),
        Command::Simulate(args) => simulate::run(args),
    }
}
