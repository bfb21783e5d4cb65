//! `switchboard serve`: opens the store, creates the admin token on first start, applies the
//! optional start-up deploys and bindings (so one command brings up a working demo), and
//! serves the HTTP API until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use sha2::Digest;

use crate::config::Config;
use crate::flows::EntryPoint;
use crate::runtime::Runtime;

/// Who start-up changes are recorded as in the audit trail.
const SEED: &str = "serve";

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./switchboard.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (store, components, compiled artifacts, admin token).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep everything in this PostgreSQL database instead of the data directory
    /// (postgres://USER:PASSWORD@HOST:5432/DATABASE): nodes sharing one database form a
    /// cluster.
    #[arg(long, env = "SWITCHBOARD_STORE", value_name = "URL")]
    store: Option<String>,
    /// Start even when the database does not sync what it acknowledges (fsync or
    /// synchronous_commit off): a crash may lose acknowledged steps.
    #[arg(long)]
    unsafe_durability: bool,
    /// On SIGTERM, how long calls up may go on before the node stops (default 30).
    #[arg(long, value_name = "SECONDS")]
    drain_secs: Option<u64>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Deploy FLOW=FILE at start-up, unless that exact component is already live (repeatable).
    #[arg(long = "deploy", value_parser = super::parse_pair)]
    deploys: Vec<(String, String)>,
    /// A host the CRM connector deployed at start-up (`--deploy crm=FILE`) may reach, as
    /// crm.example.com, crm.example.com:8443 or *.example.com (repeatable).
    #[arg(long = "crm-allow", value_name = "HOST")]
    crm_allow: Vec<String>,
    /// Bind ADDRESS=FLOW at start-up (repeatable).
    #[arg(long = "bind", value_parser = super::parse_pair)]
    binds: Vec<(String, String)>,
    /// Set FLOW:KEY=VALUE at start-up (repeatable).
    #[arg(long = "setting", value_parser = super::parse_pair)]
    settings: Vec<(String, String)>,
    /// Define queue NAME at start-up when it does not exist yet (every agent a member;
    /// change it later with `switchboard queue`). Repeatable.
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Answer SIP calls on this address, UDP and TCP (such as 0.0.0.0:5060; port 0 picks a
    /// free port, printed at start).
    #[arg(long, env = "SWITCHBOARD_SIP_LISTEN")]
    sip: Option<SocketAddr>,
    /// Receive mail by SMTP on this address (such as 0.0.0.0:25; port 0 picks a free port,
    /// printed at start). Mail is taken for bound addresses only (`switchboard bind
    /// support@acme.test --flow NAME`).
    #[arg(long, env = "SWITCHBOARD_SMTP_LISTEN")]
    smtp: Option<SocketAddr>,
    /// Load customers from a CSV or JSON file at start-up.
    #[arg(long)]
    customers: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SWITCHBOARD_LOG_JSON")]
    log_json: bool,
}

fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    raise_file_limit();
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.store {
        config.store.url = Some(url.clone());
    }
    if args.unsafe_durability {
        config.store.unsafe_durability = true;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(secs) = args.drain_secs {
        config.drain_secs = secs;
    }
    if let Some(sip) = args.sip {
        config.sip.listen = Some(sip);
    }
    if let Some(smtp) = args.smtp {
        config.email.listen = Some(smtp);
    }
    let listen = config.listen;
    let runtime = Arc::new(Runtime::open(config)?);
    first_start(&runtime)?;
    runtime.start_router_clock();
    seed(&runtime, &args)?;
    load_live(&runtime);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let serving = runtime.clone();
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}: is another server using it? pass --listen 127.0.0.1:PORT"))?;
        let bound = listener.local_addr()?;
        {
            let chat = runtime.chat.clone();
            crate::channels::follow_reports(runtime.contacts().subscribe(), move |report| {
                chat.deliver(report)
            });
        }
        runtime.follow_twilio_reports();
        if runtime.config().sip.listen.is_some() {
            let sip =
                crate::channels::sip::Endpoint::start(&runtime.node, runtime.prompts.clone())
                    .await?;
            println!("SIP listening on {} (UDP and TCP)", sip.local_addr());
            let _ = runtime.sip.set(sip);
        }
        crate::channels::email::Mailroom::start(&runtime);
        if let Some(smtp) = runtime.config().email.listen {
            let tls = crate::channels::email::smtp::tls_acceptor(&runtime.config().email)?;
            let listener = tokio::net::TcpListener::bind(smtp).await.with_context(|| {
                format!("cannot receive mail on {smtp}: is another server using it? pass --smtp 127.0.0.1:PORT")
            })?;
            println!(
                "SMTP listening on {}{}",
                listener.local_addr()?,
                if tls.is_some() { " (STARTTLS offered)" } else { "" }
            );
            tokio::spawn(crate::channels::email::smtp::serve(runtime.clone(), listener, tls));
        }
        println!("Switchboard listening on http://{bound}");
        std::io::stdout().flush()?;
        tracing::info!(address = %bound, data_dir = %runtime.config().data_dir.display(), "serving");
        let drain = std::time::Duration::from_secs(runtime.config().drain_secs);
        crate::api::serve(runtime.clone(), listener, drain_on_signal(runtime, drain)).await
    });
    // Every task holding the runtime ends with the async runtime; then the clock's last
    // turn; the node is let go here, on the main thread, before the process exits.
    drop(rt);
    serving.stop_router_clock();
    drop(serving);
    served
}

/// Every call leg holds a socket: lift the soft limit on open files to the hard one, so a
/// thousand calls do not stop at a default of 1,024.
fn raise_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                    tracing::warn!(
                        soft = limit.rlim_cur,
                        "cannot raise the open-file limit; calls beyond it will be refused"
                    );
                }
            }
        }
    }
}

/// On SIGTERM (or Ctrl-C) the node drains: readiness fails, sockets close with 1001 so
/// clients reconnect elsewhere, new calls are turned away; the calls up go on until they end
/// or `drain` runs out. Then the server stops and the node lets go of its store.
async fn drain_on_signal(runtime: Arc<Runtime>, drain: std::time::Duration) {
    shutdown_signal().await;
    runtime.drain();
    let started = std::time::Instant::now();
    tracing::info!(
        calls = runtime.active_calls(),
        drain_secs = drain.as_secs(),
        "draining: not ready, sockets closed, new calls turned away; calls up go on"
    );
    // Time for load balancers to see readiness fail (HAProxy checks every 2 s by default)
    // before the listener closes.
    tokio::time::sleep(std::time::Duration::from_secs(2).min(drain)).await;
    while runtime.active_calls() > 0 && started.elapsed() < drain {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let left = runtime.active_calls();
    if left > 0 {
        tracing::warn!(calls = left, "drain time is up: the calls still up end now");
    }
    tracing::info!("shutting down");
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

/// Creates the `admin` user and its token when the store has no token: printed once, saved
/// for the local CLI in `<data-dir>/admin.token` (mode 0600), stored only as a hash.
fn first_start(runtime: &Runtime) -> anyhow::Result<()> {
    let Some(token) = runtime.admin().people().first_admin()? else {
        return Ok(());
    };
    let path = runtime.config().data_dir.join("admin.token");
    write_private(&path, &token)?;
    eprintln!(
        "Created the admin API token (shown once; saved for local CLI use in {}):\n\n    {token}\n",
        path.display()
    );
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{text}")?;
    Ok(())
}

/// Loads every flow's live version and canary before the node takes contacts, so that none
/// waits for one to compile: a node joining a cluster, or started with an empty artifact
/// cache, would otherwise compile them at its first contacts' expense (a second or more each
/// on a busy machine). A version that does not load is named and left to load on first use,
/// where its contacts get the error they always did.
fn load_live(runtime: &Runtime) {
    let flows = runtime.admin().flows();
    let records = match flows.list() {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the flows to load them now; each loads at its first contact");
            return;
        }
    };
    let versions: Vec<(String, u64)> = records
        .iter()
        .flat_map(|r| r.in_use().map(|version| (r.name.clone(), version)))
        .collect();
    if versions.is_empty() {
        return;
    }
    let label = match versions.len() {
        1 => "loading the flow version in use".to_string(),
        n => format!("loading the {n} flow versions in use (live and canary)"),
    };
    let failed = crate::channels::terminal::with_progress(&label, || {
        let mut failed = 0;
        for (flow, version) in &versions {
            if let Err(e) = flows.component(flow, *version) {
                tracing::warn!(flow, version, error = %e, "cannot load this version now; it loads at first use, and its contacts say why if it still cannot");
                failed += 1;
            }
        }
        Ok(failed)
    });
    if let Ok(failed @ 1..) = failed {
        eprintln!("{failed} of them did not load (the log above says why); the others are ready");
    }
}

fn seed(runtime: &Runtime, args: &ServeArgs) -> anyhow::Result<()> {
    for (flow, file) in &args.deploys {
        let bytes = std::fs::read(file).with_context(|| {
            format!("--deploy {flow}={file}: cannot read {file} (build it first)")
        })?;
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let live = runtime
            .admin()
            .flows()
            .live(flow)
            .ok()
            .and_then(|v| runtime.admin().flows().version(flow, v).ok());
        let is_connector = flow == crate::flows::CRM_FLOW;
        let allow = if is_connector {
            args.crm_allow.clone()
        } else {
            Vec::new()
        };
        // A connector's allowlist is part of what is live: the same file with other hosts is
        // deployed again (normalised as a deploy would store it).
        let wanted_allow = is_connector
            .then(|| crate::engine::ConnectorPolicy::new(allow.clone(), None, None).ok())
            .flatten()
            .map(|p| p.allow);
        if live.as_ref().is_some_and(|v| {
            v.sha256 == sha256 && v.connector.as_ref().map(|p| &p.allow) == wanted_allow.as_ref()
        }) {
            eprintln!(
                "flow {flow}: {file} is already live (version {})",
                live.map(|v| v.version).unwrap_or_default()
            );
            continue;
        }
        let label = format!("deploying {file} as flow {flow}");
        let version = crate::channels::terminal::with_progress(&label, || {
            let options = crate::flows::DeployOptions {
                allow: allow.clone(),
                ..Default::default()
            };
            runtime
                .admin().flows()
                .deploy_with(flow, &bytes, SEED, &options)
                .map_err(|e| match e {
                    crate::flows::FlowsError::BadConnector(why) if is_connector => {
                        anyhow::anyhow!("--deploy {flow}={file}: {why}; at start-up, give the hosts with --crm-allow HOST")
                    }
                    other => anyhow::Error::from(other),
                })
        })?;
        eprintln!("flow {flow}: version {} is live", version.version.version);
    }
    if let Some(path) = &args.customers {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let customers = crate::customers::parse(&text)?;
        let n = runtime.admin().load_customers(&customers, SEED)?;
        eprintln!("loaded {n} customers from {}", path.display());
    }
    for (target, value) in &args.settings {
        let Some((flow, key)) = target.split_once(':') else {
            bail!(
                "--setting {target}={value}: write FLOW:KEY=VALUE, such as ivr-menu:timezone=Europe/Paris"
            );
        };
        runtime
            .admin()
            .flows()
            .configure(flow, &[(key.to_string(), value.clone())], SEED)?;
    }
    let existing: Vec<String> = runtime
        .admin()
        .queues()
        .into_iter()
        .map(|q| q.name)
        .collect();
    for name in args.queues.iter().filter(|q| !existing.contains(q)) {
        let config: crate::router::QueueConfig =
            serde_json::from_value(serde_json::json!({"name": name}))?;
        runtime
            .admin()
            .define_queue(config)
            .map_err(|e| anyhow::anyhow!("--queue {name}: {e}"))?;
        eprintln!("queue {name} defined");
    }
    runtime
        .admin()
        .flush()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (address, flow) in &args.binds {
        runtime.admin().flows().bind(
            EntryPoint {
                address: address.clone(),
                flow: flow.clone(),
                attributes: Vec::new(),
            },
            SEED,
        )?;
        eprintln!("{address} starts flow {flow}");
    }
    Ok(())
}
