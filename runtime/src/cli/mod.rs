//! The `switchboard` command line: `serve` runs the server; the admin commands talk to a
//! running server over its HTTP API; `simulate` talks to a flow from the terminal, either a
//! deployed flow (through the server) or a `.wasm` file (in-process, no server needed).

mod client;
mod project;
mod serve;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::channels::terminal::{self, Conversation};
use crate::contract::Channel;
use client::Client;

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
    New {
        /// The flow's name (lowercase letters, digits, '-').
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: project::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the flow project in DIR (default: here) into NAME.wasm with its toolchain
    /// (cargo, componentize-py or jco).
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Deploy a component as the next version of a flow and make it live (or a canary).
    Deploy {
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
    },
    /// List flows and their live versions.
    Flows {
        #[command(flatten)]
        remote: Remote,
    },
    /// List the versions of a flow.
    Versions {
        /// The flow.
        flow: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replay a recorded contact against another version of its flow and show what changed.
    Replay {
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
    },
    /// Run golden contacts against a component, locally: fails when any behaves differently.
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// Golden files saved with `switchboard replay --save`.
        #[arg(required = true)]
        golden: Vec<PathBuf>,
    },
    /// List queues with their live numbers.
    Queues {
        #[command(flatten)]
        remote: Remote,
    },
    /// Define (or redefine) a queue and its routing plan.
    Queue {
        /// The queue's name.
        name: String,
        /// CEL over `worker`: who belongs (default: every agent), such as
        /// '"billing" in worker.skills && worker.level >= 2'.
        #[arg(long, default_value = "")]
        members: String,
        /// `priority` (higher first, then oldest) or `fifo`.
        #[arg(long, default_value = "priority")]
        order: String,
        /// Seconds within which an answer counts toward the service level.
        #[arg(long, default_value_t = 30)]
        sla: u64,
        /// Seconds an agent has to accept an offer.
        #[arg(long, default_value_t = 30)]
        reservation_timeout: u64,
        /// Targets as a JSON list, such as '[{"workers": "worker.level >= 3", "timeout_secs": 30}, {}]'.
        #[arg(long)]
        targets: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create or update an agent; prints the agent's token when it is created.
    Agent {
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
    },
    /// Replace the routing workflow with the one in a JSON file ({"filters": [...]}).
    Workflow {
        /// The workflow file.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show what a component imports and exports, and whether it is a flow.
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Promote or abort a flow's canary.
    Canary {
        #[command(subcommand)]
        action: CanaryAction,
    },
    /// Make an existing version of a flow live again.
    Rollback {
        /// The flow.
        flow: String,
        /// The version to make live.
        version: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Bind an address (phone number, chat widget, mailbox) to a flow.
    Bind {
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
    },
    /// Show a flow's settings, or set some (KEY=VALUE; an empty value removes one).
    Settings {
        /// The flow.
        flow: String,
        /// Settings to change.
        #[arg(value_parser = parse_pair)]
        changes: Vec<(String, String)>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Load customers into the built-in CRM from a CSV or JSON file.
    Customers {
        /// The file: CSV with an id,name[,phone,email,tier,...] header, or a JSON array.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a contact's session.
    Contact {
        /// The contact id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show every recorded step of a contact.
    Trace {
        /// The contact id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show the audit trail.
    Audit {
        #[command(flatten)]
        remote: Remote,
    },
    /// Talk to a flow from the terminal, as a caller would. Reads your answers from the
    /// keyboard, or line by line from a file or a pipe.
    Simulate(SimulateArgs),
}

#[derive(Subcommand)]
enum CanaryAction {
    /// Make the canary the live version.
    Promote {
        /// The flow.
        flow: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// End the canary; new contacts all get the live version again.
    Abort {
        /// The flow.
        flow: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args)]
struct SimulateArgs {
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

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(args),
        Command::New { name, lang, dir } => project::new(&name, lang, dir),
        Command::Build { dir } => project::build(&dir).map(|_| ()),
        Command::Deploy {
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
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
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
                    if let Ok(report) =
                        serde_json::from_value::<crate::replay::ReplayReport>(report)
                    {
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
                &sha[..12.min(sha.len())],
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
        Command::Replay {
            contact,
            against,
            save,
            remote,
        } => {
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
        Command::Test { component, golden } => run_golden(&component, &golden),
        Command::Queues { remote } => {
            let stats = Client::new(&remote)?.get("/v1/stats")?;
            println!(
                "{:<20} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>7}",
                "queue",
                "pending",
                "reserved",
                "assigned",
                "longest s",
                "average s",
                "agents",
                "SLA %"
            );
            for q in stats["queues"].as_array().cloned().unwrap_or_default() {
                let n = |k: &str| q["tasks"][k].as_u64().unwrap_or(0);
                println!(
                    "{:<20} {:>8} {:>8} {:>8} {:>10.1} {:>10.1} {:>4}/{:<4} {:>7.1}",
                    q["queue"].as_str().unwrap_or("?"),
                    n("pending"),
                    n("reserved"),
                    n("assigned"),
                    q["longest_wait_secs"].as_f64().unwrap_or(0.0),
                    q["average_wait_secs"].as_f64().unwrap_or(0.0),
                    q["available_agents"],
                    q["eligible_agents"],
                    q["sla_percent"].as_f64().unwrap_or(0.0)
                );
            }
            Ok(())
        }
        Command::Queue {
            name,
            members,
            order,
            sla,
            reservation_timeout,
            targets,
            remote,
        } => {
            let targets: serde_json::Value = match targets {
                Some(text) => serde_json::from_str(&text).context(
                    "--targets is not a JSON list of {\"workers\": ..., \"timeout_secs\": ...}",
                )?,
                None => serde_json::json!([]),
            };
            let body = serde_json::json!({"members": members, "order": order, "sla_secs": sla, "reservation_timeout_secs": reservation_timeout, "targets": targets});
            let queue = Client::new(&remote)?
                .put_json(&format!("/v1/queues/{}", client::encode_path(&name)), &body)?;
            print_json(&queue);
            Ok(())
        }
        Command::Agent {
            name,
            attributes,
            capacity,
            remote,
        } => {
            let attributes: serde_json::Value =
                serde_json::from_str(&attributes).context("--attributes is not a JSON object")?;
            let mut caps = serde_json::Map::new();
            for (channel, n) in capacity {
                let n: u32 = n.parse().with_context(|| {
                    format!("--capacity {channel}={n}: the capacity is a whole number")
                })?;
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
        Command::Workflow { file, remote } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let workflow: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            print_json(&Client::new(&remote)?.put_json("/v1/workflow", &workflow)?);
            Ok(())
        }
        Command::Inspect { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let engine = crate::engine::Engine::new(&crate::config::EngineConfig::default(), None)?;
            let (imports, exports) = engine.describe(&bytes)?;
            println!("{} ({})", file.display(), human_size(bytes.len()));
            println!("imports:");
            for i in &imports {
                println!("  {i}");
            }
            println!("exports:");
            for e in &exports {
                println!("  {e}");
            }
            match engine.compile(&bytes) {
                Ok(component) => println!("a component of {}: deployable", component.world()),
                Err(why) => println!("not deployable: {why}"),
            }
            Ok(())
        }
        Command::Canary { action } => {
            let (flow, remote, path, body) = match action {
                CanaryAction::Promote { flow, remote } => {
                    let path = format!("/v1/flows/{flow}/canary/promote");
                    (flow, remote, path, serde_json::json!({}))
                }
                CanaryAction::Abort {
                    flow,
                    reason,
                    remote,
                } => {
                    let path = format!("/v1/flows/{flow}/canary/abort");
                    (flow, remote, path, serde_json::json!({"reason": reason}))
                }
            };
            let record = Client::new(&remote)?.post_json(&path, &body)?;
            println!("flow {flow}: version {} is live; no canary", record["live"]);
            Ok(())
        }
        Command::Flows { remote } => {
            let flows = Client::new(&remote)?.get("/v1/flows")?;
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
        Command::Versions { flow, remote } => {
            let answer = Client::new(&remote)?.get(&format!("/v1/flows/{flow}/versions"))?;
            if let Some(canary) = answer["canary"].as_object() {
                println!(
                    "canary: version {} takes {}% of new contacts {}",
                    canary["version"], canary["percent"], canary["matches"]
                );
            }
            println!(
                "{:>4}  {:<7}  {:<12}  {:>9}  {:>7}  {:>6}  {:>6}  {:<32}  by",
                "ver", "role", "sha256", "size", "steps", "faults", "pinned", "deployed"
            );
            for v in answer["versions"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:>4}  {:<7}  {:<12}  {:>9}  {:>7}  {:>6}  {:>6}  {:<32}  {}",
                    v["version"],
                    v["role"].as_str().unwrap_or("?"),
                    &v["sha256"].as_str().unwrap_or_default()[..12],
                    human_size(v["size"].as_u64().unwrap_or(0) as usize),
                    v["health"]["steps"],
                    v["health"]["faults"],
                    v["pinned_contacts"],
                    v["deployed_at"].as_str().unwrap_or("?"),
                    v["deployed_by"].as_str().unwrap_or("?")
                );
                if let Some(aborted) = v["health"]["aborted"].as_object() {
                    println!(
                        "      aborted by {} at {}: {}",
                        aborted["by"],
                        aborted["at"].as_str().unwrap_or("?"),
                        aborted["reason"].as_str().unwrap_or("?")
                    );
                }
            }
            Ok(())
        }
        Command::Rollback {
            flow,
            version,
            remote,
        } => {
            Client::new(&remote)?.post_json(
                &format!("/v1/flows/{flow}/rollback"),
                &serde_json::json!({"version": version}),
            )?;
            println!("flow {flow}: version {version} is live again");
            Ok(())
        }
        Command::Bind {
            address,
            flow,
            attributes,
            remote,
        } => {
            let path = format!("/v1/entry-points/{}", client::encode_path(&address));
            Client::new(&remote)?.put_json(
                &path,
                &serde_json::json!({"flow": flow, "attributes": attributes}),
            )?;
            println!("{address} now starts flow {flow}");
            Ok(())
        }
        Command::Settings {
            flow,
            changes,
            remote,
        } => {
            let client = Client::new(&remote)?;
            let path = format!("/v1/flows/{flow}/settings");
            let settings = if changes.is_empty() {
                client.get(&path)?
            } else {
                let map: serde_json::Map<String, serde_json::Value> = changes
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                client.put_json(&path, &serde_json::Value::Object(map))?
            };
            print_json(&settings);
            Ok(())
        }
        Command::Customers { file, remote } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let answer = Client::new(&remote)?.post_text("/v1/customers", text)?;
            println!("loaded {} customers", answer["loaded"]);
            Ok(())
        }
        Command::Contact { id, remote } => {
            print_json(&Client::new(&remote)?.get(&format!("/v1/contacts/{id}"))?);
            Ok(())
        }
        Command::Trace { id, remote } => {
            print_json(&Client::new(&remote)?.get(&format!("/v1/contacts/{id}/trace"))?);
            Ok(())
        }
        Command::Audit { remote } => {
            for e in Client::new(&remote)?
                .get("/v1/audit")?
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                println!(
                    "{}  {:<10} {:<15} {:<20} {}",
                    e["at"].as_str().unwrap_or("?"),
                    e["who"].as_str().unwrap_or("?"),
                    e["action"].as_str().unwrap_or("?"),
                    e["subject"].as_str().unwrap_or("?"),
                    e["detail"]
                );
            }
            Ok(())
        }
        Command::Simulate(args) => simulate(args),
    }
}

/// Replays golden files against a local component; an error when any changed.
fn run_golden(component: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let runtime = crate::runtime::Runtime::ephemeral(
        crate::config::Config::default(),
        crate::engine::Clock::System,
    )?;
    let label = format!(
        "compiling {} ({})",
        component.display(),
        human_size(bytes.len())
    );
    let compiled = terminal::with_progress(&label, || {
        runtime.engine.compile(&bytes).map_err(anyhow::Error::from)
    })?;
    let mut changed = 0;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let golden: crate::replay::Golden = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a golden contact (save one with `switchboard replay CONTACT --against N --save FILE`)", file.display())
        })?;
        let report = crate::replay::replay(
            &runtime.engine,
            &golden,
            &compiled,
            0,
            &component.display().to_string(),
        );
        if report.identical {
            println!("PASS {}", file.display());
        } else {
            changed += 1;
            println!("FAIL {}", file.display());
            print!("{}", crate::replay::render(&report));
        }
    }
    println!("{} passed, {changed} failed", files.len() - changed);
    if changed > 0 {
        bail!(
            "{changed} of {} golden contacts behave differently",
            files.len()
        );
    }
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let local = args.target.ends_with(".wasm") || Path::new(&args.target).is_file();
    let new = crate::sessions::NewContact {
        channel: Some(args.channel.into()),
        from: args.from.clone(),
        to: args.to.clone(),
        flow: None,
        attributes: args.attributes.clone(),
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
        let new = crate::sessions::NewContact {
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
        let new = crate::sessions::NewContact {
            flow: Some(args.target.clone()),
            ..new
        };
        Conversation::new(client, input, &mut out, interactive).run(new)
    }
}

pub(crate) use terminal::with_progress as terminal_progress;

/// `177 KB`, `18.3 MB`.
pub fn human_size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}
