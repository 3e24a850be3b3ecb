//! A real PostgreSQL server on a loopback port, started by the test.
//!
//! [`Postgres::new`] runs Debian's `initdb` into a fresh temporary directory
//! (trust authentication, superuser [`USER`]), starts the `postgres` server
//! binary itself as a [`ChildProcess`] (not `pg_ctl`, which would daemonize:
//! the harness owns the postmaster's pid), waits until a real query works
//! over TCP and creates the database [`DEFAULT_DB`]. It listens only on
//! 127.0.0.1, on a port picked with [`free_port`], and keeps its Unix socket
//! in its own directory.
//!
//! The server refuses to run as root: when the harness is root, `initdb` and
//! the server run as the `postgres` user (the uid and gid are set on the
//! command, which is what `runuser -u postgres` does without a supervising
//! parent process in between), in a directory under `/tmp` that is owned by
//! that user with mode 0700.
//!
//! `fsync` stays on (the tests exercise crash safety). [`Postgres::stop`] is
//! a fast shutdown (SIGINT to the postmaster), [`Postgres::kill`] a crash
//! (SIGKILL to the postmaster and every server process), and
//! [`Postgres::start`] starts it again on the same data directory and port.
//! Drop stops the server and removes the directory (`PAYGRESS_KEEP_LOGS=1`
//! keeps it).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;
pub use tokio_postgres;
use tokio_postgres::{Client, NoTls};

use crate::ports::free_port;
use crate::process::{run_checked, ChildProcess, LOG_TAIL_LINES};
use crate::tools;

/// The superuser `initdb` creates, and the user every URL names.
pub const USER: &str = "paygress";

/// The database [`Postgres::new`] creates and [`Postgres::url`] names.
pub const DEFAULT_DB: &str = "paygress";

/// Most connections the server accepts: tests run several verifiers, each
/// with a pool of about 20.
pub const MAX_CONNECTIONS: u32 = 300;

/// How long the server may take to answer a query after it is started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fast shutdown may take before the server is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The user the server runs as when the harness is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running PostgreSQL server, stopped (and its directory removed) on drop.
#[derive(Debug)]
pub struct Postgres {
    bin_dir: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    settings: Vec<(String, String)>,
    process: Option<ChildProcess>,
    log_path: PathBuf,
    /// Holds `data/` (the cluster), `sock/` (the Unix socket) and
    /// `postgres.log`.
    dir: Option<TempDir>,
    databases_made: AtomicU32,
}

impl Postgres {
    /// Initialises a new cluster, starts the server on a free loopback port
    /// and creates [`DEFAULT_DB`]. Panics (with the install command, or the
    /// server's log) when PostgreSQL is missing or does not come up.
    pub async fn new() -> Self {
        Self::with_settings(&[]).await
    }

    /// Like [`Postgres::new`], with extra server settings (`-c name=value`),
    /// applied after the harness's own and kept across restarts.
    pub async fn with_settings(settings: &[(&str, &str)]) -> Self {
        let bin_dir = tools::postgres_bin_dir();
        let run_as = if rustix::process::geteuid().is_root() {
            Some(postgres_user())
        } else {
            None
        };
        let dir = match run_as {
            // Under /tmp, which every user can traverse (TMPDIR might not be).
            Some(_) => tempfile::Builder::new()
                .prefix("paygress-pg-")
                .tempdir_in("/tmp"),
            None => tempfile::Builder::new().prefix("paygress-pg-").tempdir(),
        }
        .unwrap_or_else(|err| panic!("postgres: cannot create a directory: {err}"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|err| panic!("postgres: cannot chmod {}: {err}", dir.path().display()));
        let sock_dir = dir.path().join("sock");
        std::fs::create_dir(&sock_dir)
            .unwrap_or_else(|err| panic!("postgres: cannot create {}: {err}", sock_dir.display()));
        if let Some(user) = run_as {
            for path in [dir.path(), sock_dir.as_path()] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap_or_else(
                    |err| {
                        panic!(
                            "postgres: cannot chown {} to postgres: {err}",
                            path.display()
                        )
                    },
                );
            }
        }

        let mut postgres = Self {
            bin_dir,
            port: free_port(),
            run_as,
            settings: settings
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            process: None,
            log_path: dir.path().join("postgres.log"),
            dir: Some(dir),
            databases_made: AtomicU32::new(0),
        };
        let mut initdb = postgres.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(postgres.data_dir())
            .arg("--auth=trust")
            .arg(format!("--username={USER}"))
            .arg("--encoding=UTF8")
            .arg("--locale=C")
            // Only initdb's own files skip the fsync (it is much faster);
            // the server itself runs with fsync on.
            .arg("--no-sync");
        run_checked("initdb", initdb);
        postgres.start().await;
        postgres.create_database(DEFAULT_DB).await;
        postgres
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://paygress@127.0.0.1:<port>/paygress`
    pub fn url(&self) -> String {
        self.url_for(DEFAULT_DB)
    }

    /// `postgres://paygress@127.0.0.1:<port>/<db>`
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The directory holding the cluster, the socket directory and the log.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Some(dir) => dir.path(),
            None => unreachable!("the directory lives as long as the server"),
        }
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir().join("sock")
    }

    /// The server's log, one file across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's whole log so far (every run).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True while the postmaster runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ChildProcess::pid)
    }

    /// Starts the server on the existing data directory and port, and waits
    /// until a query works over TCP. Panics, with the log, when it does not.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "postgres: already running");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir());
        let harness_settings = [
            ("listen_addresses", "127.0.0.1".to_string()),
            ("max_connections", MAX_CONNECTIONS.to_string()),
            ("fsync", "on".to_string()),
            ("synchronous_commit", "on".to_string()),
            ("full_page_writes", "on".to_string()),
            ("logging_collector", "off".to_string()),
            ("log_destination", "stderr".to_string()),
            ("log_line_prefix", "%m [%p] %q%u@%d ".to_string()),
        ];
        let settings = harness_settings
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .chain(
                self.settings
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
        for (name, value) in settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        let mut process = ChildProcess::spawn_with_log("postgres", command, &self.log_path);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.try_exit_status() {
                process.fail(&format!("exited ({status}) before accepting queries"));
            }
            let last = match self.try_query_i64_in("postgres", "SELECT 1").await {
                Ok(1) => break,
                Ok(other) => format!("SELECT 1 answered {other}"),
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                process.fail(&format!(
                    "no query worked on port {} within {START_TIMEOUT:?}, last: {last}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.process = Some(process);
    }

    /// Fast shutdown (`pg_ctl stop -m fast`): SIGINT to the postmaster, which
    /// ends every session, checkpoints and exits; SIGKILL for everything when
    /// it takes longer than [`STOP_TIMEOUT`]. The data directory stays.
    /// Idempotent.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        if let Some(pid) = process_pid(&process) {
            let _ = kill_process(pid, Signal::INT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while process.try_exit_status().is_none() {
            if Instant::now() >= deadline {
                eprintln!("postgres: no fast shutdown within {STOP_TIMEOUT:?}, killing it");
                if let Err(survivor) = kill_server(&mut process) {
                    eprintln!("postgres: server process {survivor} survived SIGKILL");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Reaps it (and kills anything left in its process group).
        process.stop();
    }

    /// A crash: SIGKILL to the postmaster and every server process at once,
    /// and waits until they are gone. The next [`Postgres::start`] recovers
    /// from the write-ahead log. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            if let Err(survivor) = kill_server(&mut process) {
                panic!("postgres: server process {survivor} survived SIGKILL");
            }
        }
    }

    /// Stops the server (fast shutdown) and starts it again.
    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    /// A client connected to `db` over TCP, or why not.
    pub async fn try_client_for(&self, db: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .dbname(db)
            .application_name("paygress-tests")
            .connect_timeout(CONNECT_TIMEOUT);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A client connected to `db`; panics with the log when it cannot connect.
    pub async fn client_for(&self, db: &str) -> Client {
        match self.try_client_for(db).await {
            Ok(client) => client,
            Err(err) => self.fail(&format!("cannot connect to {}: {err}", self.url_for(db))),
        }
    }

    /// A client connected to [`DEFAULT_DB`].
    pub async fn client(&self) -> Client {
        self.client_for(DEFAULT_DB).await
    }

    /// Creates the database `name` (letters, digits and `_`) and returns its
    /// URL. Panics when it cannot (it exists already, the server is down).
    pub async fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "postgres: {name:?} is not a plain database name"
        );
        self.execute_in("postgres", &format!("CREATE DATABASE \"{name}\""))
            .await;
        self.url_for(name)
    }

    /// Creates a new, empty database with a name unused on this server
    /// (`paygress_1`, `paygress_2`, …) and returns its URL: one per scenario.
    pub async fn fresh_database(&self) -> String {
        let n = self.databases_made.fetch_add(1, Ordering::Relaxed) + 1;
        self.create_database(&format!("{DEFAULT_DB}_{n}")).await
    }

    /// Runs `sql` (one or more statements) in [`DEFAULT_DB`]; panics when it
    /// fails.
    pub async fn execute(&self, sql: &str) {
        self.execute_in(DEFAULT_DB, sql).await;
    }

    /// Runs `sql` (one or more statements) in `db`; panics when it fails.
    pub async fn execute_in(&self, db: &str, sql: &str) {
        if let Err(err) = self.try_execute_in(db, sql).await {
            self.fail(&format!("`{sql}` in {db} failed: {}", describe(&err)));
        }
    }

    /// Runs `sql` (one or more statements) in `db`, or says why not.
    pub async fn try_execute_in(&self, db: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.try_client_for(db).await?.batch_execute(sql).await
    }

    /// The first column of the one row `sql` returns in [`DEFAULT_DB`]
    /// (`smallint`, `integer` or `bigint`; cast a `numeric` such as `sum`'s
    /// with `::bigint`). Panics when the query fails.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        self.query_i64_in(DEFAULT_DB, sql).await
    }

    /// [`Postgres::query_i64`] in `db`.
    pub async fn query_i64_in(&self, db: &str, sql: &str) -> i64 {
        match self.try_query_i64_in(db, sql).await {
            Ok(value) => value,
            Err(err) => self.fail(&format!("`{sql}` in {db} failed: {}", describe(&err))),
        }
    }

    /// [`Postgres::query_i64`], or why it failed (the server is down, the
    /// query is wrong).
    pub async fn try_query_i64(&self, sql: &str) -> Result<i64, tokio_postgres::Error> {
        self.try_query_i64_in(DEFAULT_DB, sql).await
    }

    /// [`Postgres::try_query_i64`] in `db`.
    pub async fn try_query_i64_in(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<i64, tokio_postgres::Error> {
        let row = self.try_client_for(db).await?.query_one(sql, &[]).await?;
        row.try_get::<_, i64>(0)
            .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
            .or_else(|_| row.try_get::<_, i16>(0).map(i64::from))
    }

    /// Panics with `message` and the tail of the server's log.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "postgres on 127.0.0.1:{}: {message}\n--- last {LOG_TAIL_LINES} lines of {} ---\n{}\n--- end of log ---",
            self.port,
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// `bin_dir/program`, as the `postgres` user when the harness is root,
    /// in the server's directory, with no `PG*` variables inherited.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                command.env_remove(key);
            }
        }
        command.env("LC_ALL", "C").current_dir(self.dir());
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            // Quickly, and without a second panic: a failed test needs no
            // clean checkpoint.
            if let Some(mut process) = self.process.take() {
                if let Err(survivor) = kill_server(&mut process) {
                    eprintln!("postgres: server process {survivor} survived SIGKILL");
                }
            }
        } else {
            self.stop();
        }
        if panicking {
            eprintln!(
                "--- postgres on 127.0.0.1:{} (log {}), last {LOG_TAIL_LINES} lines ---\n{}\n--- end of postgres ---",
                self.port,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        let keep = std::env::var("PAYGRESS_KEEP_LOGS").is_ok_and(|v| !v.is_empty() && v != "0");
        if keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("postgres: directory kept in {}", dir.keep().display());
            }
        }
    }
}

/// The `postgres` user's uid and gid (Debian's `postgresql` package creates
/// it). Panics with the install command when there is none.
fn postgres_user() -> RunAs {
    let output = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .unwrap_or_else(|err| panic!("postgres: cannot run `getent passwd postgres`: {err}"));
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    parse_passwd_ids(&line).unwrap_or_else(|| {
        panic!(
            "the harness runs as root, PostgreSQL refuses to, and there is no `postgres` user to \
             run it as: {}",
            tools::POSTGRES_INSTALL_HINT
        )
    })
}

/// The uid and gid of a `passwd` line (`name:x:uid:gid:...`).
fn parse_passwd_ids(line: &str) -> Option<RunAs> {
    let mut fields = line.trim().split(':').skip(2);
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some(RunAs { uid, gid })
}

fn process_pid(process: &ChildProcess) -> Option<Pid> {
    process
        .pid()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)
}

/// SIGKILL to the postmaster and all its children, then waits until they are
/// gone; `Err` names one that is still there after 10 s. Every server process is a session leader of its own (so not in the
/// postmaster's process group), and one left behind would keep the shared
/// memory attached and stop the next start: the postmaster is frozen first
/// (SIGSTOP) so that it forks nothing new while its children are collected.
fn kill_server(process: &mut ChildProcess) -> Result<(), i32> {
    let mut doomed = Vec::new();
    if let Some(pid) = process_pid(process) {
        if process.try_exit_status().is_none() {
            let _ = kill_process(pid, Signal::STOP);
            doomed = children_of(pid.as_raw_nonzero().get());
            for child in &doomed {
                if let Some(child) = Pid::from_raw(*child) {
                    let _ = kill_process(child, Signal::KILL);
                }
            }
        }
    }
    process.stop_with(Signal::KILL, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = doomed.iter().find(|pid| is_alive(**pid)) {
        if Instant::now() >= deadline {
            return Err(*left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The pids whose parent is `parent` (from `/proc/*/stat`).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(_, ppid)| ppid == parent)
        })
        .collect()
}

/// The state and the parent pid of a `/proc/<pid>/stat` line: the fields after
/// the command name, which is in parentheses and may hold anything.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True while `pid` exists and is no zombie (a killed orphan is reaped by
/// init, or left a zombie that holds nothing).
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// A server error's message and code, else the error itself.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_uid_and_gid() {
        assert_eq!(
            parse_passwd_ids(
                "postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n"
            ),
            Some(RunAs { uid: 101, gid: 104 })
        );
        assert_eq!(parse_passwd_ids(""), None);
        assert_eq!(parse_passwd_ids("postgres:x:abc:1"), None);
    }

    #[test]
    fn stat_lines_give_state_and_parent() {
        assert_eq!(
            parse_stat("1234 (postgres: paygress) idle) S 1200 1234 1234 0 -1"),
            Some(('S', 1200))
        );
        assert_eq!(parse_stat("garbage"), None);
    }
}
