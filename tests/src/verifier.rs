//! The real `paygress` verifier as a process: built from this workspace
//! once per test binary (unless `PAYGRESS_BIN` names one), started with
//! `paygress serve` on a free loopback port, stopped (SIGTERM), killed
//! (SIGKILL) and started again on the same data dir; and its command line.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use tempfile::TempDir;

use crate::fixture;
use crate::process::{loopback_http_client, write_file};
use crate::{free_port, loopback_url, tools, ChildProcess, TestMint};

/// How long the verifier may take to answer `/readyz` 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The mint timeout the tests run the verifier with (a stopped mint answers
/// 503 within it).
pub const MINT_TIMEOUT_MS: u64 = 2000;

/// The `paygress` binary, built from this workspace once per test binary.
pub fn paygress_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if std::env::var_os("PAYGRESS_BIN").is_none_or(|v| v.is_empty()) {
                let mut cargo = Command::new(env!("CARGO"));
                cargo
                    .args(["build", "-p", "paygress-verifier", "--bin", "paygress"])
                    .current_dir(tools::workspace_root())
                    .stdin(Stdio::null());
                // Cargo gives a test process the variables of the package
                // under test (CARGO_PKG_NAME, ...); some build scripts track
                // them, so inheriting them would make this build and the
                // outer one rebuild each other's dependencies every time.
                for (key, _) in std::env::vars_os() {
                    let key = key.to_string_lossy().into_owned();
                    let from_cargo_test = key.starts_with("CARGO_PKG_")
                        || key.starts_with("CARGO_MANIFEST_")
                        || key.starts_with("CARGO_BIN_")
                        || matches!(
                            key.as_str(),
                            "CARGO_CRATE_NAME"
                                | "CARGO_PRIMARY_PACKAGE"
                                | "CARGO_TARGET_TMPDIR"
                                | "CARGO_RUSTC_CURRENT_DIR"
                                | "OUT_DIR"
                        );
                    if from_cargo_test {
                        cargo.env_remove(&key);
                    }
                }
                let status = cargo
                    .status()
                    .unwrap_or_else(|err| panic!("cannot run cargo to build paygress: {err}"));
                assert!(
                    status.success(),
                    "`cargo build -p paygress-verifier --bin paygress` failed ({status}); build it by hand \
                     from the repository root, or point PAYGRESS_BIN at a binary"
                );
            }
            tools::paygress_bin()
        })
        .clone()
}

/// Runs `paygress ARGS` to completion.
pub fn run_paygress(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(paygress_bin());
    command
        .args(args)
        .stdin(Stdio::null())
        .env_remove("PAYGRESS_MNEMONIC")
        .env(fixture::PASS_KEY_ENV, fixture::PASS_KEY_SECRET);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot run paygress {args:?}: {err}"))
}

/// Runs `paygress ARGS`, panicking with its output unless it succeeds;
/// returns stdout.
pub fn paygress_ok(args: &[&str]) -> String {
    let out = run_paygress(args, &[]);
    assert!(
        out.status.success(),
        "paygress {args:?} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `paygress serve` on a free loopback port. Its data dir outlives restarts.
#[derive(Debug)]
pub struct Verifier {
    port: u16,
    process: Option<ChildProcess>,
    dir: TempDir,
    log_path: PathBuf,
    env: Vec<(String, String)>,
}

impl Verifier {
    /// Writes `config` and starts the verifier; returns once `/readyz` is 200.
    pub async fn start(config: &Value) -> Self {
        Self::start_with_env(config, &[]).await
    }

    /// Like [`Verifier::start`], with extra environment.
    pub async fn start_with_env(config: &Value, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("paygress-verifier-")
            .tempdir()
            .unwrap_or_else(|err| panic!("verifier: cannot create a temp dir: {err}"));
        write_file(&dir.path().join("config.json"), &config.to_string());
        let log_path = dir.path().join("verifier.log");
        let mut verifier = Self {
            port: free_port(),
            process: None,
            dir,
            log_path,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        };
        verifier.launch().await;
        verifier
    }

    async fn launch(&mut self) {
        assert!(self.process.is_none(), "verifier: already running");
        let mut command = Command::new(paygress_bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("config.json"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("PAYGRESS_MNEMONIC")
            .env_remove("RUST_LOG")
            .env("PAYGRESS_LOG", "info,paygress=debug")
            .env("PAYGRESS_MINT_TIMEOUT_MS", MINT_TIMEOUT_MS.to_string())
            .env(fixture::PASS_KEY_ENV, fixture::PASS_KEY_SECRET);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut process = ChildProcess::spawn_with_log("paygress", command, &self.log_path);
        process
            .wait_http_ok(&format!("{}/readyz", self.url()), READY_TIMEOUT)
            .await;
        self.process = Some(process);
    }

    pub fn url(&self) -> String {
        loopback_url(self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory of its config, log and data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops it (SIGTERM, then waits until its port refuses connections).
    pub fn stop(&mut self) {
        self.terminate();
    }

    /// The `/auth` URL with `suffix` (e.g. `/premium` for the path style).
    pub fn auth(&self, suffix: &str) -> String {
        format!("{}/auth{suffix}", self.url())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn data_dir_str(&self) -> String {
        self.data_dir().display().to_string()
    }

    /// The verifier's log (every run).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let status = self
            .process
            .take()
            .and_then(|mut p| p.stop_with(Signal::TERM, Duration::from_secs(20)));
        wait_port_closed(self.port);
        status
    }

    /// Stops and starts again on the same port and data dir.
    pub async fn restart(&mut self) {
        self.terminate();
        self.launch().await;
    }

    /// Kills the verifier with SIGKILL, as a crash or an OOM kill would:
    /// no draining, no settlement, nothing flushed but what was written
    /// already. Waits until its port is closed; returns the exit status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let status = self
            .process
            .take()
            .and_then(|mut p| p.stop_with(Signal::KILL, Duration::from_secs(5)));
        wait_port_closed(self.port);
        status
    }

    /// Starts the verifier again after [`Verifier::kill`] or
    /// [`Verifier::terminate`]: same port, config, environment and data dir;
    /// returns once `/readyz` is 200.
    pub async fn start_again(&mut self) {
        self.launch().await;
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        loopback_http_client()
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET /metrics: {err}"))
            .text()
            .await
            .unwrap_or_default()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- paygress verifier log (last 60 lines) ---\n{}\n--- end ---",
                tail.join("\n")
            );
        }
    }
}

fn wait_port_closed(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("verifier: port {port} still open after stop");
}

// ---------------------------------------------------------------------------
// Asking it, and reading its wallet.

pub use crate::fixture::{config, DEFAULT_PRICE, PREMIUM, PREMIUM_PLUS};
pub use crate::http::Answer;

/// `GET url` with these headers (raw bytes allowed).
pub async fn get(url: &str, headers: &[(&str, &[u8])]) -> Answer {
    crate::http::send("GET", url, headers, None).await
}

/// `GET url` with these headers; `Err` when no answer came (the connection
/// was refused or broke: a verifier killed mid-request, say).
pub async fn try_get(url: &str, headers: &[(&str, &[u8])]) -> Result<Answer, String> {
    crate::http::try_send("GET", url, headers, None).await
}

/// `GET url` with `X-Cashu: token`.
pub async fn pay(url: &str, token: &str) -> Answer {
    get(url, &[("x-cashu", token.as_bytes())]).await
}

/// `GET url` with `X-Cashu: token` and `X-Paygress-Deadline-Ms: deadline_ms`
/// (what the filter sends: its callout timeout).
pub async fn pay_within(url: &str, token: &str, deadline_ms: u64) -> Answer {
    let deadline = deadline_ms.to_string();
    get(
        url,
        &[
            ("x-cashu", token.as_bytes()),
            ("x-paygress-deadline-ms", deadline.as_bytes()),
        ],
    )
    .await
}

/// Starts a fee-less mint (the most common stack).
pub async fn mint() -> TestMint {
    TestMint::start(crate::MintOptions::default()).await
}

/// The stdout of a finished command, for messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses `paygress wallet balance` output: the balance at `mint`.
pub fn balance_at(balance_json: &str, mint: &str) -> u64 {
    sat_field_at(balance_json, mint, "balance")
}

/// Parses `paygress wallet balance` output: what is pending at `mint`
/// (inputs of unfinished redemptions).
pub fn pending_at(balance_json: &str, mint: &str) -> u64 {
    sat_field_at(balance_json, mint, "pending")
}

/// The sum of `field` over the `sat` entries of `mint` in `paygress wallet
/// balance` output.
fn sat_field_at(balance_json: &str, mint: &str, field: &str) -> u64 {
    let v: Value = serde_json::from_str(balance_json)
        .unwrap_or_else(|err| panic!("balance is not JSON ({err}): {balance_json}"));
    v["mints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mint"] == mint && m["unit"] == "sat")
        .filter_map(|m| m[field].as_u64())
        .sum()
}

/// `paygress wallet balance --data-dir DIR` of a verifier.
pub fn wallet_balance(v: &Verifier) -> String {
    paygress_ok(&["wallet", "balance", "--data-dir", &v.data_dir_str()])
}

/// Whether a path exists (for messages).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
