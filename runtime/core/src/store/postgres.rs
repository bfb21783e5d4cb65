//! The PostgreSQL backend: the same trees as tables of one database, so several nodes can
//! share one truth (`serve --store postgres://...`).
//!
//! Each tree is a table `sb_<tree>` of `bytea` keys (ordered bytewise, as sled orders them)
//! and `bytea` values. A batch is one `SERIALIZABLE` transaction: its checks are read first
//! and, when one fails, nothing is written; a serialization failure (40001) or deadlock
//! (40P01) re-runs the whole transaction, so two nodes racing for one key cannot both win.
//! Acknowledged means committed: a node refuses a server running with `fsync` or
//! `synchronous_commit` off unless told to accept the risk.
//!
//! Migrations run at start inside one transaction that holds the row lock of
//! `switchboard_schema` (no advisory locks: CockroachDB and YugabyteDB do not have them), so
//! nodes starting together take turns and a failed migration leaves nothing half-done. A
//! database migrated by a newer Switchboard is refused rather than written with an older
//! idea of its schema.
//!
//! The store trait is synchronous: callers are the blocking step and router threads. A call
//! runs on the caller's thread over a pooled connection that thread drives itself
//! ([`super::postgres_link`]); start-up (checks, migrations) and the bus's listening
//! connection run on this store's own small Tokio runtime.

use std::future::Future;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};

use super::postgres_link::{Held, Links, Statements, prepared};
use super::{Batch, Pair, Scan, Store, StoreError, Tree, last_write_per_key};

/// Connections a node keeps open at most for its calls.
const CONNECTIONS: usize = 16;

/// The schema version this build writes; each entry of [`MIGRATIONS`] moves one step up.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The migrations, in order: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sb_flows (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_versions (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_sessions (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_traces (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_kv (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_settings (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_customers (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_entry_points (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_tokens (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_audit (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_health (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_queues (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_agents (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_tasks (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_channel_keys (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_inbox (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_live_contacts (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_contacts_by_start (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_open_tasks (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_queue_events (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_meta (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_phones (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_components (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_prompts (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE SEQUENCE sb_ids;
"#,
    r#"
CREATE TABLE sb_transcripts (key bytea PRIMARY KEY, value bytea NOT NULL);
"#,
    r#"
CREATE TABLE sb_agent_history (key bytea PRIMARY KEY, value bytea NOT NULL);
"#,
    r#"
CREATE TABLE sb_task_log (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sb_agent_states (key bytea PRIMARY KEY, value bytea NOT NULL);
"#,
    r#"
CREATE TABLE sb_mail (key bytea PRIMARY KEY, value bytea NOT NULL);
"#,
    r#"
CREATE TABLE sb_events (seq bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), node text NOT NULL, topic text NOT NULL, body bytea NOT NULL);
CREATE INDEX sb_events_at ON sb_events (at);
"#,
    r#"
ALTER TABLE sb_events ADD COLUMN id text;
CREATE UNIQUE INDEX sb_events_id ON sb_events (id);
"#,
    // A batch's checks run in its transaction, sent with its writes: one that does not hold
    // fails there (SQLSTATE SB409), so the transaction is aborted without another round trip.
    r#"
CREATE FUNCTION sb_held(held boolean) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT held THEN
        RAISE EXCEPTION 'a checked value changed' USING ERRCODE = 'SB409';
    END IF;
    RETURN true;
END
$$;
"#,
];

/// How long a call waits for the database to come back (a restart, a failover) before it
/// fails.
const RECONNECT_FOR: Duration = Duration::from_secs(15);

/// How a node connects.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Accept a server whose `fsync` or `synchronous_commit` is off (acknowledged writes may
    /// be lost in a crash).
    pub unsafe_durability: bool,
}

/// The PostgreSQL backend.
pub struct PostgresStore {
    /// Runs start-up and the bus's listening connection; shut down in the background on drop
    /// (a runtime cannot be dropped from inside another).
    runtime: Option<tokio::runtime::Runtime>,
    inner: std::sync::Arc<Inner>,
    /// The connections the store's calls run over, each driven by its caller's thread.
    links: Links,
}

/// What the store's calls run with, on its runtime.
struct Inner {
    pool: Pool,
    /// How to connect, for the bus's listening connection (outside the pool).
    config: tokio_postgres::Config,
    /// Where the database is, without the password, for messages.
    place: String,
}

/// The table of a tree.
fn table(tree: Tree) -> &'static str {
    match tree {
        Tree::Flows => "sb_flows",
        Tree::Versions => "sb_versions",
        Tree::Sessions => "sb_sessions",
        Tree::Traces => "sb_traces",
        Tree::Kv => "sb_kv",
        Tree::Settings => "sb_settings",
        Tree::Customers => "sb_customers",
        Tree::EntryPoints => "sb_entry_points",
        Tree::Tokens => "sb_tokens",
        Tree::Audit => "sb_audit",
        Tree::Health => "sb_health",
        Tree::Queues => "sb_queues",
        Tree::Agents => "sb_agents",
        Tree::Tasks => "sb_tasks",
        Tree::ChannelKeys => "sb_channel_keys",
        Tree::Inbox => "sb_inbox",
        Tree::LiveContacts => "sb_live_contacts",
        Tree::ContactsByStart => "sb_contacts_by_start",
        Tree::OpenTasks => "sb_open_tasks",
        Tree::QueueEvents => "sb_queue_events",
        Tree::Meta => "sb_meta",
        Tree::Phones => "sb_phones",
        Tree::Components => "sb_components",
        Tree::Prompts => "sb_prompts",
        Tree::Transcripts => "sb_transcripts",
        Tree::AgentHistory => "sb_agent_history",
        Tree::TaskLog => "sb_task_log",
        Tree::AgentStates => "sb_agent_states",
        Tree::Mail => "sb_mail",
    }
}

/// Whether `address` names a PostgreSQL database (a `postgres://` or `postgresql://` URL, or
/// `key=value` settings such as `host=/run/postgresql dbname=switchboard`).
pub fn is_postgres_address(address: &str) -> bool {
    address.starts_with("postgres://")
        || address.starts_with("postgresql://")
        || address.contains("host=")
        || address.contains("dbname=")
}

/// A database error's text with its SQLSTATE, or the client's own error.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("PostgreSQL: {}", describe(&e)))
}

/// Whether the server ended the session (a restart, a crash, a failover) or the link broke:
/// before COMMIT, running the work again on a new connection is safe.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08")
        })
        || (e.as_db_error().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()))
}

/// Whether re-running the transaction may succeed: it lost a race, not an argument.
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    })
}

/// Why a transaction ended without committing.
enum Failed {
    /// A check did not hold.
    Conflict(StoreError),
    /// The database refused or the connection broke before COMMIT was sent: safe to re-run.
    Before(tokio_postgres::Error),
    /// COMMIT itself failed: re-run only when PostgreSQL says the transaction rolled back.
    AtCommit(tokio_postgres::Error),
}

impl PostgresStore {
    /// Connects to the database at `address`, checks that it keeps what it acknowledges,
    /// and brings its schema up to [`SCHEMA_VERSION`]. Each failure says what to do.
    pub fn connect(address: &str, options: &PostgresOptions) -> anyhow::Result<PostgresStore> {
        let mut config = tokio_postgres::Config::from_str(address).map_err(|e| {
            anyhow::anyhow!(
                "the store address is not a PostgreSQL connection string ({e}); write it as postgres://USER:PASSWORD@HOST:5432/DATABASE or as host=... dbname=..."
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("switchboard");
        // A peer that vanishes (a partition) fails a call in seconds, not when TCP gives up.
        config.keepalives_idle(Duration::from_secs(5));
        config.tcp_user_timeout(Duration::from_secs(10));
        let place = place(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(RECONNECT_FOR))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let store = PostgresStore {
            runtime: Some(runtime),
            links: Links::new(config.clone(), CONNECTIONS),
            inner: std::sync::Arc::new(Inner {
                pool,
                config,
                place,
            }),
        };
        let unsafe_durability = options.unsafe_durability;
        store.wait(move |inner| async move { inner.prepare(unsafe_durability).await })?;
        Ok(store)
    }

    /// Runs `work` on this store's runtime and waits for its answer. Works from any thread,
    /// also from inside another runtime's task (where `block_on` would panic).
    fn wait<T, F>(&self, work: impl FnOnce(std::sync::Arc<Inner>) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let work = work(self.inner.clone());
        runtime.spawn(async move {
            let _ = answer.send(work.await);
        });
        answered
            .recv()
            .expect("a store call finishes unless the store is dropped")
    }
}

impl PostgresStore {
    /// A connection for a call, waiting up to [`RECONNECT_FOR`] for the database to come back.
    fn link(&self) -> Result<Held<'_>, StoreError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self.links.take(RECONNECT_FOR) {
                Ok(link) => return Ok(link),
                Err(e) if started.elapsed() < RECONNECT_FOR => {
                    tracing::warn!(place = %self.inner.place, error = %e, "PostgreSQL unreachable; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot reach PostgreSQL at {}: {e}; check that it runs",
                        self.inner.place
                    )));
                }
            }
        }
    }

    /// Runs `call` on a connection, again on a fresh one when the one it had broke.
    fn again_if_lost<T>(
        &self,
        mut call: impl FnMut(&mut Held<'_>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        loop {
            let mut link = self.link()?;
            match call(&mut link) {
                Ok(out) => return Ok(out),
                Err(e) if connection_lost(&e) && started.elapsed() < RECONNECT_FOR => {
                    link.discard();
                    drop(link);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// Runs a read.
    fn read<T>(
        &self,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        rows: impl Fn(Vec<tokio_postgres::Row>) -> T,
    ) -> Result<T, StoreError> {
        self.again_if_lost(|link| {
            link.run(async |client, statements| {
                let statement = prepared(client, statements, query).await?;
                client.query(&statement, params).await
            })
        })
        .map(rows)
    }

    /// Runs a statement that returns no rows.
    fn execute(
        &self,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.again_if_lost(|link| {
            link.run(async |client, statements| {
                let statement = prepared(client, statements, query).await?;
                client.execute(&statement, params).await
            })
        })
    }

    fn commit_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut writes: Vec<_> = batch.ahead().to_vec();
        writes.extend_from_slice(batch.writes());
        let writes = last_write_per_key(&writes);
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let mut link = self.link()?;
            let result = link.run(async |client, statements| {
                try_commit(client, statements, batch, &writes).await
            });
            match result {
                Ok(()) => return Ok(()),
                Err(Failed::Conflict(e)) => return Err(e),
                Err(Failed::Before(e)) | Err(Failed::AtCommit(e))
                    if retryable(&e) && started.elapsed() < RECONNECT_FOR =>
                {
                    // Lost a race with another writer: back off a little, at random, and
                    // run the transaction again (its checks are read afresh).
                    drop(link);
                    let jitter = Duration::from_micros(rand::random::<u64>() % 2000);
                    std::thread::sleep(pause + jitter);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(Failed::Before(e))
                    if connection_lost(&e) && started.elapsed() < RECONNECT_FOR =>
                {
                    link.discard();
                    drop(link);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(Failed::Before(e)) => return Err(backend(e)),
                // The server answered COMMIT with an error: the transaction rolled back.
                Err(Failed::AtCommit(e)) if !connection_lost(&e) => return Err(backend(e)),
                Err(Failed::AtCommit(e)) => {
                    link.discard();
                    return Err(StoreError::Backend(format!(
                        "PostgreSQL: the connection failed while committing ({}); the change may or may not have landed: read it back before trying again",
                        describe(&e)
                    )));
                }
            }
        }
    }
}

impl Inner {
    async fn prepare(&self, unsafe_durability: bool) -> anyhow::Result<()> {
        let client = self.pool.get().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {}: {}; check that it runs and accepts this user (pg_isready), and the address",
                self.place,
                pool_error(&e)
            )
        })?;
        if !unsafe_durability {
            for setting in ["fsync", "synchronous_commit"] {
                let row = client
                    .query_one(&format!("SHOW {setting}"), &[])
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot read {setting}: {}", describe(&e)))?;
                let value: String = row.get(0);
                if value == "off" {
                    anyhow::bail!(
                        "PostgreSQL at {} runs with {setting}=off: a step it acknowledges could be lost in a crash. Turn it on (ALTER SYSTEM SET {setting} = on; SELECT pg_reload_conf()), or start with --unsafe-durability to accept the risk",
                        self.place
                    );
                }
            }
        }
        drop(client);
        self.migrate().await
    }

    /// Brings the schema to [`SCHEMA_VERSION`] under the row lock of `switchboard_schema`.
    async fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self.pool.get().await?;
        // Three nodes creating the version table at once may collide on the catalog: the
        // loser tries again and finds it there.
        for attempt in 0.. {
            let made = client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS switchboard_schema (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL);
                     INSERT INTO switchboard_schema VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
                )
                .await;
            match made {
                Ok(()) => break,
                Err(e)
                    if attempt < 5
                        && e.code().is_some_and(|c| {
                            *c == SqlState::UNIQUE_VIOLATION
                                || *c == SqlState::DUPLICATE_TABLE
                                || *c == SqlState::DUPLICATE_OBJECT
                        }) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    anyhow::bail!(
                        "cannot create the schema table in PostgreSQL at {}: {}; the user needs the right to create tables in the database's schema (GRANT CREATE ON SCHEMA public TO ...)",
                        self.place,
                        describe(&e)
                    )
                }
            }
        }
        // READ COMMITTED whatever the database's default: the second node waits on the row
        // lock, then reads the version the first one wrote.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await?;
        let version: i32 = tx
            .query_one(
                "SELECT version FROM switchboard_schema WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?
            .get(0);
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "the database at {} has schema version {version}, newer than this Switchboard's ({SCHEMA_VERSION}); run a Switchboard at least as new as the one that migrated it (nothing was changed)",
                self.place
            );
        }
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(migration).await.map_err(|e| {
                anyhow::anyhow!(
                    "migrating the database at {} from schema version {from} failed: {}; nothing was changed",
                    self.place,
                    describe(&e)
                )
            })?;
        }
        if version < SCHEMA_VERSION {
            tx.execute(
                "UPDATE switchboard_schema SET version = $1 WHERE id = 1",
                &[&SCHEMA_VERSION],
            )
            .await?;
            tracing::info!(from = version, to = SCHEMA_VERSION, place = %self.place, "database schema migrated");
        }
        tx.commit().await.map_err(|e| {
            anyhow::anyhow!(
                "migrating the database at {} failed at commit: {}; nothing was changed",
                self.place,
                describe(&e)
            )
        })?;
        Ok(())
    }
}

/// Where a configuration points, without its password.
fn place(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// Checks sent as one statement: their tree, the value they expect, their keys.
type CheckGroup<'a> = (Tree, &'a Option<Vec<u8>>, Vec<&'a [u8]>);

/// One attempt at a batch: checks, then every write, in one serializable transaction, in one
/// round trip. The statements are prepared first (cached per connection, so no round trip
/// once warm); then `BEGIN`, every check, the writes (one statement) and `COMMIT` are sent at once. A check
/// is a query the server fails ([`CHECK_FAILED`]) when the value is not the one expected, so
/// a check that does not hold aborts the transaction there and the `COMMIT` behind it rolls it
/// back, as does any write the server refuses: any failure means nothing landed, except a
/// broken connection, after which the batch may or may not have landed.
async fn try_commit(
    client: &tokio_postgres::Client,
    statements: &mut Statements,
    batch: &Batch,
    writes: &[super::Entry],
) -> Result<(), Failed> {
    use futures_util::future::join_all;
    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

    // Checks of one tree expecting one value (a thousand offers each checking its task is
    // still open) are one statement; the meta tree's (the router's counter and epoch, each
    // told apart when refused) are one each.
    let mut groups: Vec<CheckGroup<'_>> = Vec::new();
    for (tree, key, want) in batch.checks() {
        let grouped = (*tree != Tree::Meta)
            .then(|| groups.iter_mut().find(|(t, w, _)| t == tree && *w == want))
            .flatten();
        match grouped {
            Some((_, _, keys)) if keys.contains(&key.as_slice()) => {}
            Some((_, _, keys)) => keys.push(key.as_slice()),
            None => groups.push((*tree, want, vec![key.as_slice()])),
        }
    }
    let mut checks = Vec::with_capacity(groups.len());
    for (tree, want, keys) in &groups {
        let query = match (keys.len(), want) {
            (1, _) => format!(
                "SELECT sb_held((SELECT value FROM {} WHERE key = $1) IS NOT DISTINCT FROM $2::bytea)",
                table(*tree)
            ),
            (_, Some(_)) => format!(
                "SELECT sb_held((SELECT count(*) FROM {} WHERE key = ANY($1::bytea[]) AND value = $2::bytea) = $3::bigint)",
                table(*tree)
            ),
            (_, None) => format!(
                "SELECT sb_held(NOT EXISTS (SELECT 1 FROM {} WHERE key = ANY($1::bytea[])))",
                table(*tree)
            ),
        };
        let statement = prepared(client, statements, &query)
            .await
            .map_err(Failed::Before)?;
        checks.push((statement, *tree, keys[0], keys.len() as i64));
    }
    // Every write in one statement, whatever the trees: keys and values as arrays, one
    // data-modifying part per tree and kind (a step writes five trees; the server parses,
    // plans and runs one statement instead of five). A key is written once per batch
    // (`last_write_per_key`), so no two parts touch one row.
    let mut trees: Vec<Tree> = writes.iter().map(|(t, _, _)| *t).collect();
    trees.sort_by_key(|t| table(*t));
    trees.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut arrays: Vec<Vec<&[u8]>> = Vec::new();
    for tree in trees {
        let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (_, key, value) in writes.iter().filter(|(t, _, _)| *t == tree) {
            match value {
                Some(v) => {
                    keys.push(key.as_slice());
                    values.push(v.as_slice());
                }
                None => gone.push(key.as_slice()),
            }
        }
        if !keys.is_empty() {
            parts.push(format!(
                "INSERT INTO {} (key, value) SELECT * FROM unnest(${}::bytea[], ${}::bytea[]) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                table(tree),
                arrays.len() + 1,
                arrays.len() + 2
            ));
            arrays.push(keys);
            arrays.push(values);
        }
        if !gone.is_empty() {
            parts.push(format!(
                "DELETE FROM {} WHERE key = ANY(${}::bytea[])",
                table(tree),
                arrays.len() + 1
            ));
            arrays.push(gone);
        }
    }
    let write = match parts.len() {
        0 => None,
        1 => Some(parts.remove(0)),
        _ => {
            let named: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, part)| format!("w{i} AS ({part})"))
                .collect();
            Some(format!("WITH {} SELECT 1", named.join(", ")))
        }
    };
    let write = match write {
        Some(query) => Some(
            prepared(client, statements, &query)
                .await
                .map_err(Failed::Before)?,
        ),
        None => None,
    };
    // One round trip: futures first polled in order are sent in order.
    let check_params: Vec<Vec<Param<'_>>> = checks
        .iter()
        .zip(&groups)
        .map(|((_, _, key, n), (_, want, keys))| match (*n, want) {
            (1, _) => vec![key as Param<'_>, *want as Param<'_>],
            (_, Some(value)) => vec![keys as Param<'_>, value as Param<'_>, n as Param<'_>],
            (_, None) => vec![keys as Param<'_>],
        })
        .collect();
    let write_params: Vec<Param<'_>> = arrays.iter().map(|a| a as Param<'_>).collect();
    let begin = client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE");
    let checked = join_all(
        checks
            .iter()
            .zip(&check_params)
            .map(|((statement, _, _, _), params)| client.execute(statement, &params[..])),
    );
    let written = join_all(
        write
            .iter()
            .map(|statement| client.execute(statement, &write_params[..])),
    );
    let commit = client.batch_execute("COMMIT");
    let (begun, checked, written, committed) = tokio::join!(begin, checked, written, commit);
    // The first failure, in the order sent, says what happened.
    let first = begun
        .err()
        .map(|e| (None, e))
        .into_iter()
        .chain(
            checked
                .into_iter()
                .zip(&checks)
                .filter_map(|(r, (_, tree, key, _))| r.err().map(|e| (Some((*tree, *key)), e))),
        )
        .chain(
            written
                .into_iter()
                .filter_map(|r| r.err().map(|e| (None, e))),
        )
        .next();
    match first {
        None => committed.map_err(Failed::AtCommit),
        Some((Some((tree, key)), e)) if e.code().is_some_and(|c| c.code() == CHECK_FAILED) => {
            Err(Failed::Conflict(StoreError::Conflict {
                tree: tree.name(),
                key: String::from_utf8_lossy(key).into_owned(),
            }))
        }
        // The server refused a statement: the transaction was aborted there, and the COMMIT
        // behind it rolled it back.
        Some((_, e)) if e.as_db_error().is_some() => Err(Failed::Before(e)),
        // The link broke with COMMIT on its way: it may have landed.
        Some((_, e)) => Err(Failed::AtCommit(committed.err().unwrap_or(e))),
    }
}

/// The SQLSTATE `sb_held` raises when a batch's check does not hold.
const CHECK_FAILED: &str = "SB409";

impl Store for PostgresStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let query = format!("SELECT value FROM {} WHERE key = $1", table(tree));
        self.read(&query, &[&key], |rows| {
            rows.into_iter().next().map(|row| row.get(0))
        })
    }

    fn get_many(&self, tree: Tree, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let query = format!(
            "SELECT key, value FROM {} WHERE key = ANY($1::bytea[])",
            table(tree)
        );
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            self.read(&query, &[&keys], |rows| {
                rows.into_iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect()
            })?;
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.commit_batch(batch)
    }

    fn scan(&self, tree: Tree, scan: &Scan<'_>) -> Result<Vec<Pair>, StoreError> {
        use std::ops::Bound;
        let Some((lower, upper)) = scan.bounds() else {
            return Ok(Vec::new());
        };
        let mut conditions = Vec::new();
        let mut params: Vec<Vec<u8>> = Vec::new();
        let mut bound = |op: &str, key: Vec<u8>| {
            params.push(key);
            conditions.push(format!("key {op} ${}", params.len()));
        };
        match lower {
            Bound::Included(k) => bound(">=", k),
            Bound::Excluded(k) => bound(">", k),
            Bound::Unbounded => {}
        }
        match upper {
            Bound::Included(k) => bound("<=", k),
            Bound::Excluded(k) => bound("<", k),
            Bound::Unbounded => {}
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if scan.is_reversed() { "DESC" } else { "ASC" };
        let limit = i64::try_from(scan.limit()).unwrap_or(i64::MAX);
        let query = format!(
            "SELECT key, value FROM {} {filter} ORDER BY key {order} LIMIT ${}",
            table(tree),
            params.len() + 1
        );
        let mut refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as _).collect();
        refs.push(&limit);
        self.read(&query, &refs, |rows| {
            rows.into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect()
        })
    }

    /// Every commit is durable when acknowledged (`synchronous_commit`): nothing to flush.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.read("SELECT nextval('sb_ids')", &[], |rows| {
            rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64)
        })
    }
}

/// The bus's log is the table `sb_events`; a post is one insert, then one `NOTIFY sb_events`
/// sent after it committed (never inside another transaction: NOTIFY serialises commits).
impl crate::bus::Relay for PostgresStore {
    fn post(&self, node: &str, messages: &[crate::bus::Message]) -> Result<(), StoreError> {
        let node = node.to_string();
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        let topics: Vec<String> = messages.iter().map(|m| m.topic.clone()).collect();
        let bodies: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| serde_json::to_vec(&m.body).unwrap_or_default())
            .collect();
        self.execute(
            "INSERT INTO sb_events (node, id, topic, body) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[]) ON CONFLICT (id) DO NOTHING",
            &[&node, &ids, &topics, &bodies],
        )?;
        // The others read every 250 ms anyway: a lost wake-up only delays.
        let _ = self.execute("NOTIFY sb_events", &[]);
        Ok(())
    }

    fn after(&self, seq: i64, limit: usize) -> Result<Vec<crate::bus::Posted>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(
            "SELECT seq, node, topic, body, coalesce(id, '') FROM sb_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&seq, &limit],
            |rows| {
                rows.into_iter()
                    .map(|row| crate::bus::Posted {
                        seq: row.get(0),
                        node: row.get(1),
                        message: crate::bus::Message {
                            id: row.get(4),
                            topic: row.get(2),
                            body: serde_json::from_slice(row.get::<_, &[u8]>(3))
                                .unwrap_or_default(),
                        },
                    })
                    .collect()
            },
        )
    }

    fn head(&self) -> Result<i64, StoreError> {
        // From the sequence, not the rows: after a quiet spell every row may be pruned, and
        // the next message would otherwise wait out a gap.
        self.read(
            "SELECT greatest((SELECT coalesce(max(seq), 0) FROM sb_events), (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sb_events_seq_seq))",
            &[],
            |rows| rows.first().map_or(0, |row| row.get::<_, i64>(0)),
        )
    }

    fn prune(&self, age: Duration) -> Result<(), StoreError> {
        let secs = age.as_secs_f64();
        self.execute(
            "DELETE FROM sb_events WHERE at < now() - make_interval(secs => $1)",
            &[&secs],
        )?;
        Ok(())
    }

    /// One connection of its own (outside the pool) `LISTEN`s, again after it breaks.
    fn on_post(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let Some(runtime) = &self.runtime else { return };
        let inner = self.inner.clone();
        let wake: std::sync::Arc<dyn Fn() + Send + Sync> = wake.into();
        runtime.spawn(async move {
            loop {
                if let Ok((client, mut connection)) = inner.config.connect(NoTls).await {
                    let (ended, gone) = tokio::sync::oneshot::channel::<()>();
                    let heard = wake.clone();
                    tokio::spawn(async move {
                        while let Some(Ok(message)) =
                            std::future::poll_fn(|cx| connection.poll_message(cx)).await
                        {
                            if matches!(message, tokio_postgres::AsyncMessage::Notification(_)) {
                                heard();
                            }
                        }
                        let _ = ended.send(());
                    });
                    if client.batch_execute("LISTEN sb_events").await.is_ok() {
                        // What was posted while nobody listened is read now.
                        wake();
                        let _ = gone.await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tree_has_a_table_in_the_migrations() {
        let schema = MIGRATIONS.concat();
        for tree in Tree::ALL {
            assert!(
                schema.contains(&format!("CREATE TABLE {} ", table(tree))),
                "no migration creates the table of {}",
                tree.name()
            );
        }
    }

    #[test]
    fn addresses_are_told_apart_from_directories() {
        assert!(is_postgres_address("postgres://sb@db:5432/sb"));
        assert!(is_postgres_address("postgresql://sb@db/sb"));
        assert!(is_postgres_address("host=/run/postgresql dbname=sb"));
        assert!(!is_postgres_address("/var/lib/switchboard"));
    }
}

/// Start-up against real servers: every bad case is a clear error and changes nothing.
#[cfg(test)]
mod start_up {
    use super::*;
    use crate::store::StoreExt as _;
    use crate::store::local_postgres::LocalPostgres;

    fn connect(address: &str) -> anyhow::Result<PostgresStore> {
        PostgresStore::connect(address, &PostgresOptions::default())
    }

    #[test]
    fn a_malformed_address_says_how_to_write_one() {
        let err = connect("postgres://sb@db:notaport/x")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a PostgreSQL connection string"), "{err}");
        assert!(
            err.contains("postgres://USER:PASSWORD@HOST:5432/DATABASE"),
            "{err}"
        );
    }

    #[test]
    fn an_unreachable_database_is_named_with_what_to_check() {
        let err = connect("host=127.0.0.1 port=1 user=sb dbname=sb connect_timeout=2")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cannot reach PostgreSQL at 127.0.0.1:1/sb"),
            "{err}"
        );
        assert!(err.contains("pg_isready"), "{err}");
    }

    #[test]
    fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
        let pg = LocalPostgres::start().unwrap();
        let address = pg.database("fresh").unwrap();
        let nodes: Vec<_> = (0..3)
            .map(|_| {
                let address = address.clone();
                std::thread::spawn(move || connect(&address).map(|_| ()))
            })
            .collect();
        for node in nodes {
            node.join().unwrap().unwrap();
        }
        assert_eq!(
            pg.psql("fresh", "SELECT version FROM switchboard_schema")
                .unwrap(),
            SCHEMA_VERSION.to_string()
        );
        let store = connect(&address).unwrap();
        store.put(Tree::Flows, b"ivr", b"{}").unwrap();
        drop(store);

        let newer = SCHEMA_VERSION + 1;
        pg.psql(
            "fresh",
            &format!("UPDATE switchboard_schema SET version = {newer}"),
        )
        .unwrap();
        let err = connect(&address).err().unwrap().to_string();
        assert!(
            err.contains(&format!(
                "schema version {newer}, newer than this Switchboard's"
            )),
            "{err}"
        );
        assert_eq!(
            pg.psql(
                "fresh",
                "SELECT encode(value, 'escape') FROM sb_flows WHERE key = 'ivr'"
            )
            .unwrap(),
            "{}",
            "nothing was touched"
        );
    }

    #[test]
    fn a_failed_migration_leaves_nothing_half_done() {
        let pg = LocalPostgres::start().unwrap();
        let address = pg.database("clash").unwrap();
        // A table in the way of the migration's last statement: the migration fails there.
        pg.psql("clash", "CREATE TABLE sb_prompts (x int)").unwrap();
        let err = connect(&address).err().unwrap().to_string();
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(
            pg.psql("clash", "SELECT version FROM switchboard_schema")
                .unwrap(),
            "0"
        );
        assert_eq!(
            pg.psql(
                "clash",
                "SELECT count(*) FROM pg_tables WHERE tablename = 'sb_flows'"
            )
            .unwrap(),
            "0",
            "the tables created before the failure are gone with it"
        );
    }

    /// A post whose answer was lost is tried again: the log keeps each message once.
    #[test]
    fn a_message_posted_again_is_in_the_log_once() {
        use crate::bus::{Message, Relay as _};
        let pg = LocalPostgres::start().unwrap();
        let store = connect(&pg.address()).unwrap();
        let message = |id: &str| Message {
            id: id.into(),
            topic: "chat.visitor".into(),
            body: serde_json::json!({"text": id}),
        };
        store.post("a", &[message("m1"), message("m2")]).unwrap();
        store.post("a", &[message("m2"), message("m3")]).unwrap();
        let ids: Vec<String> = store
            .after(0, 10)
            .unwrap()
            .into_iter()
            .map(|p| p.message.id)
            .collect();
        assert_eq!(ids, ["m1", "m2", "m3"]);
    }

    #[test]
    fn connections_the_server_ended_while_idle_are_not_used_for_a_batch() {
        let pg = LocalPostgres::start().unwrap();
        let store = connect(&pg.address()).unwrap();
        let batch = |n: &str| {
            let mut batch = Batch::new();
            batch.put(Tree::Kv, format!("k{n}").into_bytes(), b"v".to_vec());
            batch.put(Tree::Settings, format!("s{n}").into_bytes(), b"v".to_vec());
            batch
        };
        // Several connections open and idle in the pool, their statements prepared...
        std::thread::scope(|s| {
            for i in 0..4 {
                let (store, batch) = (&store, &batch);
                s.spawn(move || {
                    for j in 0..20 {
                        store.commit(&batch(&format!("{i}-{j}"))).unwrap();
                    }
                });
            }
        });
        // ...then the server ends every session but one (as a restart or an idle timeout
        // would).
        let admin = connect(&pg.address()).unwrap();
        let ended = admin
            .read(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'switchboard'",
                &[],
                |rows| rows.first().map_or(0, |row| row.get::<_, i64>(0)),
            )
            .unwrap();
        assert!(ended >= 1, "sessions ended: {ended}");
        std::thread::sleep(Duration::from_millis(200));
        // A batch lands, on a connection opened afresh: not refused as one that may or may
        // not have landed.
        store.commit(&batch("after")).unwrap();
        assert_eq!(
            store.get(Tree::Settings, b"safter").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(
            store.get(Tree::Kv, b"k3-19").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn a_server_that_does_not_sync_is_refused_unless_told() {
        let pg = LocalPostgres::start().unwrap();
        pg.psql("postgres", "ALTER SYSTEM SET synchronous_commit = off")
            .unwrap();
        pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
        // The server rereads its configuration a moment after the signal.
        for _ in 0..100 {
            if pg.psql("postgres", "SHOW synchronous_commit").unwrap() == "off" {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let err = connect(&pg.address()).err().unwrap().to_string();
        assert!(err.contains("synchronous_commit=off"), "{err}");
        assert!(err.contains("--unsafe-durability"), "{err}");
        PostgresStore::connect(
            &pg.address(),
            &PostgresOptions {
                unsafe_durability: true,
            },
        )
        .unwrap();
    }
}
