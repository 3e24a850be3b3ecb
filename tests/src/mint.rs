//! A real Cashu mint (cdk-mintd 0.18.3 with its fake Lightning backend) on a
//! loopback port.
//!
//! cdk-mintd 0.18 keeps its configuration in its database: the work dir is
//! initialised once with `cdk-mintd --work-dir D config init --new-mint --file
//! mint.toml`, then the daemon is `cdk-mintd --work-dir D`. Secrets are never
//! literal in the document: the mnemonic is `env:VAR`, resolved from the
//! environment by `config init` and again at every start, so a restart with
//! the same mnemonic has the same keys (the mint refuses to start with a
//! different one).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::{free_port, loopback_url};
use crate::process::{run_checked, write_file, ChildProcess, LOG_TAIL_LINES};
use crate::tools;

/// The environment variable that carries the mint's mnemonic (the document
/// says `mnemonic = "env:PAYGRESS_TEST_MINT_MNEMONIC"`).
pub const MNEMONIC_VAR: &str = "PAYGRESS_TEST_MINT_MNEMONIC";

/// How long a mint may take to answer `/v1/info` after it is started.
pub const MINT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest amount one mint quote may ask for.
pub const MAX_MINT_AMOUNT: u64 = 10_000_000;

/// Options for [`TestMint::start`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MintOptions {
    /// Input fee in parts per thousand per proof (NUT-02), 0 for none.
    pub input_fee_ppk: u64,
}

impl MintOptions {
    /// A mint that charges `input_fee_ppk` per input proof.
    pub fn with_input_fee_ppk(input_fee_ppk: u64) -> Self {
        Self { input_fee_ppk }
    }
}

/// A running cdk-mintd, stopped on drop.
#[derive(Debug)]
pub struct TestMint {
    options: MintOptions,
    port: u16,
    mnemonic: String,
    process: Option<ChildProcess>,
    log_path: PathBuf,
    work_dir: Option<TempDir>,
}

impl TestMint {
    /// Creates a work dir, initialises a new mint in it and starts it on a
    /// free loopback port; returns once `GET /v1/info` answers 200.
    pub async fn start(options: MintOptions) -> Self {
        let work_dir = tempfile::Builder::new()
            .prefix("paygress-mint-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cdk-mintd: cannot create a work dir: {err}"));
        let port = free_port();
        let mnemonic = new_mnemonic();
        let config_path = work_dir.path().join("mint.toml");
        write_file(&config_path, &config_document(port, &options));

        let mut init = mintd_command(work_dir.path(), &mnemonic);
        init.arg("config")
            .arg("init")
            .arg("--new-mint")
            .arg("--file")
            .arg(&config_path);
        run_checked("cdk-mintd config init", init);

        let log_path = work_dir.path().join("cdk-mintd.log");
        let mut mint = Self {
            options,
            port,
            mnemonic,
            process: None,
            log_path,
            work_dir: Some(work_dir),
        };
        mint.launch().await;
        mint
    }

    /// The mint URL, as wallets and the Paygress config name it:
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        loopback_url(self.port)
    }

    /// The port the mint listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options the mint was started with.
    pub fn options(&self) -> &MintOptions {
        &self.options
    }

    /// The mint's work dir (database, `mint.toml`, `cdk-mintd.log`).
    pub fn work_dir(&self) -> &Path {
        match &self.work_dir {
            Some(dir) => dir.path(),
            None => unreachable!("the work dir lives as long as the mint"),
        }
    }

    /// The log of every run of this mint (stdout and stderr, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the mint's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True while the mint process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// Stops the mint (SIGINT, then SIGKILL after a grace period) and waits
    /// until its port refuses connections. The work dir stays. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if Instant::now() >= deadline {
                panic!(
                    "cdk-mintd: port {} still accepts connections after the mint stopped",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the mint if it runs and starts it again: same port, same work
    /// dir, same mnemonic, so the same keys and the same spent-proof records.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// Starts the daemon on the initialised work dir and waits for `/v1/info`.
    async fn launch(&mut self) {
        assert!(self.process.is_none(), "cdk-mintd: already running");
        let command = mintd_command(self.work_dir(), &self.mnemonic);
        let mut process = ChildProcess::spawn_with_log("cdk-mintd", command, &self.log_path);
        process
            .wait_http_ok(&format!("{}/v1/info", self.url()), MINT_START_TIMEOUT)
            .await;
        self.process = Some(process);
    }
}

impl Drop for TestMint {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- cdk-mintd at {} (log {}), last {LOG_TAIL_LINES} lines ---\n{}\n--- end of cdk-mintd ---",
                self.url(),
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        let keep = std::env::var("PAYGRESS_KEEP_LOGS").is_ok_and(|v| !v.is_empty() && v != "0");
        if keep {
            if let Some(dir) = self.work_dir.take() {
                eprintln!("cdk-mintd: work dir kept in {}", dir.keep().display());
            }
        }
    }
}

/// `cdk-mintd --work-dir D` with a clean environment for it: no inherited
/// `CDK_MINTD_*` overrides, the mnemonic in [`MNEMONIC_VAR`].
fn mintd_command(work_dir: &Path, mnemonic: &str) -> Command {
    let mut command = Command::new(tools::cdk_mintd());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CDK_MINTD_") {
            command.env_remove(key);
        }
    }
    command
        .env(MNEMONIC_VAR, mnemonic)
        .arg("--work-dir")
        .arg(work_dir);
    command
}

/// A fresh 12-word BIP-39 mnemonic.
fn new_mnemonic() -> String {
    let entropy: [u8; 16] = rand::random();
    bip39::Mnemonic::from_entropy(&entropy)
        .unwrap_or_else(|err| panic!("cannot make a mnemonic: {err}"))
        .to_string()
}

/// The cdk-mintd 0.18.3 import document.
fn config_document(port: u16, options: &MintOptions) -> String {
    format!(
        r#"[info]
url = "http://127.0.0.1:{port}"
listen_host = "127.0.0.1"
listen_port = {port}
mnemonic = "env:{MNEMONIC_VAR}"
input_fee_ppk = {fee}
enable_info_page = false

[info.logging]
output = "stderr"
console_level = "info"

[mint_info]
name = "paygress test mint"
description = "A throwaway mint for Paygress end-to-end tests (fake Lightning backend)"

[database]
engine = "sqlite"

[payment_backend]
backend = "fakewallet"
unit = "sat"
min_mint = 1
max_mint = {MAX_MINT_AMOUNT}

[fake_wallet]
supported_units = ["sat"]
min_delay_time = 0
max_delay_time = 0
custom_payment_methods = []
"#,
        fee = options.input_fee_ppk,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_are_twelve_words_and_fresh() {
        let one = new_mnemonic();
        assert_eq!(one.split_whitespace().count(), 12);
        assert_ne!(one, new_mnemonic());
    }

    #[test]
    fn config_names_the_port_and_the_fee() {
        let document = config_document(4242, &MintOptions::with_input_fee_ppk(1000));
        assert!(document.contains("listen_port = 4242"));
        assert!(document.contains("url = \"http://127.0.0.1:4242\""));
        assert!(document.contains("input_fee_ppk = 1000"));
        assert!(document.contains(&format!("mnemonic = \"env:{MNEMONIC_VAR}\"")));
    }
}
