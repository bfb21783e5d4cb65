//! A throwaway PostgreSQL server in a temporary directory, for tests and benchmarks: the
//! real server from the machine's packages (Debian's `postgresql`), started as the
//! `postgres` user when running as root (`initdb` and `postgres` refuse root), listening only
//! on a unix socket in its own directory so parallel tests never share a port. Stopped and
//! removed on drop. Not used by a running Switchboard.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// A PostgreSQL server of its own, in a temporary directory.
pub struct LocalPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Whether commands run as the `postgres` user (this process is root).
    as_postgres: bool,
}

impl LocalPostgres {
    /// Makes and starts a new server (about a second). Fails with what to install when the
    /// PostgreSQL binaries are missing.
    pub fn start() -> anyhow::Result<LocalPostgres> {
        let bin = binaries()?;
        // Short path: the socket's path must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("sbpg")
            .tempdir_in("/tmp")
            .context("cannot make a directory for PostgreSQL")?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path()))
            .context("cannot hand the directory to the postgres user")?;
        }
        let pg = LocalPostgres {
            dir,
            bin,
            as_postgres,
        };
        let data = pg.data();
        run(pg
            .command("initdb")
            .args(["-N", "-A", "trust", "-U", "switchboard", "-E", "UTF8", "-D"])
            .arg(&data))
        .context("initdb failed")?;
        pg.start_again()?;
        pg.stop_when_process_ends()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the server (again, after [`LocalPostgres::stop_immediately`]).
    pub fn start_again(&self) -> anyhow::Result<()> {
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-D")
            .arg(self.data())
            .arg("start"))
        .with_context(|| {
            format!(
                "PostgreSQL did not start; see {}",
                self.log_path().display()
            )
        })
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&self) -> anyhow::Result<()> {
        run(self
            .command("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop"))
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The server's main process (its `postmaster.pid`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The connection string of database `postgres` as the superuser `switchboard`.
    pub fn address(&self) -> String {
        format!(
            "host={} user=switchboard dbname=postgres",
            self.dir.path().display()
        )
    }

    /// A new empty database on this server; returns its connection string.
    pub fn database(&self, name: &str) -> anyhow::Result<String> {
        run(self
            .command("createdb")
            .args(["-h"])
            .arg(self.dir.path())
            .args(["-U", "switchboard", name]))?;
        Ok(format!(
            "host={} user=switchboard dbname={name}",
            self.dir.path().display()
        ))
    }

    /// Makes sure the server stops when this process ends, however it ends (a fixture kept
    /// in a static is never dropped; a test process may be killed): a watchdog then stops
    /// the server and removes its directory. Every server started here has one.
    fn stop_when_process_ends(&self) -> anyhow::Result<()> {
        let pid = std::process::id();
        let dir = self.dir.path().to_path_buf();
        let stop = format!(
            "{} -m immediate -D {} stop",
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        };
        use std::os::unix::process::CommandExt as _;
        std::process::Command::new("sh")
            // Its own process group: a test runner that kills the test's group spares it.
            .process_group(0)
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {}",
                dir.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start the PostgreSQL watchdog")?;
        Ok(())
    }

    /// Runs one SQL command with `psql` (tests that break things on purpose).
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-U", "switchboard", "-d", database, "-At", "-c", sql])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}{}",
        command.get_program(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The newest PostgreSQL's binaries: `/usr/lib/postgresql/N/bin` (Debian), else `pg_config
/// --bindir`.
fn binaries() -> anyhow::Result<PathBuf> {
    let debian = Path::new("/usr/lib/postgresql");
    if let Ok(entries) = std::fs::read_dir(debian) {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((v, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").exists() {
            return Ok(bin);
        }
    }
    anyhow::bail!(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; on Debian: apt-get install postgresql"
    )
}
