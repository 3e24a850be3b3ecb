//! A real Prometheus for the monitoring tests (`tests/tests/e2e/monitoring.rs`),
//! and `promtool`: the Debian package `prometheus` (`/usr/bin/prometheus`,
//! `/usr/bin/promtool`), which `just setup` installs.
//!
//! [`Prometheus::start`] writes a `prometheus.yml` that scrapes the given
//! loopback targets every second and evaluates the given rules files every
//! second, starts Prometheus on a free loopback port with its TSDB in a temp
//! dir, and waits until it is ready. Its HTTP API is read through
//! [`Prometheus::query`], [`Prometheus::alerts`], [`Prometheus::targets`]
//! and [`Prometheus::rules`].
//!
//! A missing binary is a failed test, never a skipped one: the locators
//! panic with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::process::{loopback_http_client, write_file};
use crate::{free_port, loopback_url, ChildProcess};

/// How long Prometheus may take to answer `/-/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "run `just setup` from the repository root (it installs the Debian \
     package `prometheus`, which provides /usr/bin/prometheus and /usr/bin/promtool; by hand: \
     `sudo apt-get install -y prometheus`)";

/// The `prometheus` binary: `$PAYGRESS_PROMETHEUS`, else
/// `/usr/bin/prometheus`, else `prometheus` on `PATH`.
pub fn prometheus_bin() -> PathBuf {
    locate("prometheus", "PAYGRESS_PROMETHEUS")
}

/// The `promtool` binary: `$PAYGRESS_PROMTOOL`, else `/usr/bin/promtool`,
/// else `promtool` on `PATH`.
pub fn promtool_bin() -> PathBuf {
    locate("promtool", "PAYGRESS_PROMTOOL")
}

fn locate(bin: &str, override_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            is_executable(&path),
            "{override_var}={} is not an executable file: {INSTALL_HINT}, or unset {override_var}",
            path.display()
        );
        return path;
    }
    let system = Path::new("/usr/bin").join(bin);
    if is_executable(&system) {
        return system;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(bin))
            .find(|candidate| is_executable(candidate))
    }) {
        return found;
    }
    panic!(
        "{bin} is not installed (looked at {}, and on PATH): {INSTALL_HINT}",
        system.display()
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `promtool ARGS` in `dir` to completion.
pub fn promtool(args: &[&str], dir: &Path) -> Output {
    Command::new(promtool_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run promtool {args:?}: {err}"))
}

/// Runs `promtool ARGS` in `dir`; panics with its output unless it
/// succeeds. Returns stdout and stderr together.
pub fn promtool_ok(args: &[&str], dir: &Path) -> String {
    let out = promtool(args, dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`promtool {}` (in {}) failed ({}):\n{text}",
        args.join(" "),
        dir.display(),
        out.status
    );
    text
}

/// One scrape job of the generated `prometheus.yml`: `job_name`, the
/// `host:port` it scrapes and the path.
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    pub job: String,
    pub target: String,
    pub path: String,
}

impl ScrapeJob {
    pub fn new(job: &str, target: &str, path: &str) -> Self {
        Self {
            job: job.to_string(),
            target: target.to_string(),
            path: path.to_string(),
        }
    }
}

/// The `prometheus.yml` of [`Prometheus::start`]: every job scraped and
/// every rule evaluated each second.
pub fn config_yaml(jobs: &[ScrapeJob], rule_files: &[&str]) -> String {
    let mut out = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    out.push_str("rule_files:\n");
    for file in rule_files {
        out.push_str(&format!("  - {file}\n"));
    }
    out.push_str("scrape_configs:\n");
    for job in jobs {
        out.push_str(&format!(
            "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [\"{}\"]\n",
            job.job, job.path, job.target
        ));
    }
    out
}

/// A running Prometheus, stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    process: ChildProcess,
    dir: TempDir,
}

impl Prometheus {
    /// Writes the rules files (`(file name, contents)`) and a
    /// `prometheus.yml` scraping `jobs` into a temp dir, checks the config
    /// with `promtool check config`, starts Prometheus on a free loopback
    /// port and waits until `/-/ready` answers 200.
    pub async fn start(jobs: &[ScrapeJob], rules: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("paygress-prometheus-")
            .tempdir()
            .unwrap_or_else(|err| panic!("prometheus: cannot create a temp dir: {err}"));
        for (name, text) in rules {
            write_file(&dir.path().join(name), text);
        }
        let names: Vec<&str> = rules.iter().map(|(name, _)| *name).collect();
        let config = dir.path().join("prometheus.yml");
        write_file(&config, &config_yaml(jobs, &names));
        promtool_ok(&["check", "config", "prometheus.yml"], dir.path());
        let data = dir.path().join("data");
        let port = free_port();
        let mut command = Command::new(prometheus_bin());
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path());
        let mut process = ChildProcess::spawn("prometheus", command);
        process
            .wait_http_ok(&format!("{}/-/ready", loopback_url(port)), READY_TIMEOUT)
            .await;
        Self { port, process, dir }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        loopback_url(self.port)
    }

    /// The directory of its config, rules and TSDB.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tail of Prometheus's log, for messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }

    /// `GET /api/v1/<path>` with `params`: the `data` of a `success`
    /// answer; panics otherwise.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/v1/{path}", self.url());
        let response = loopback_http_client()
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|err| panic!("prometheus {url}: {err}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("prometheus {url}: {err}"));
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("prometheus {url} {params:?}: not JSON ({err}): {text}"));
        assert!(
            status.is_success() && body["status"] == "success",
            "prometheus {url} {params:?}: {status}: {text}"
        );
        body["data"].clone()
    }

    /// An instant query: the result's samples (`[{metric, value}]`); for a
    /// scalar or a string result, one element holding it.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        match &data["result"] {
            Value::Array(samples) if data["resultType"] == "vector" => samples.clone(),
            Value::Array(_) => vec![data["result"].clone()],
            other => panic!("query {expr:?}: unexpected result {other}"),
        }
    }

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        self.api("alerts", &[]).await["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The active scrape targets (`/api/v1/targets`).
    pub async fn targets(&self) -> Vec<Value> {
        self.api("targets", &[]).await["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every rule of every group loaded (`/api/v1/rules`), flattened.
    pub async fn rules(&self) -> Vec<Value> {
        let data = self.api("rules", &[]).await;
        data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until every scrape target is up; panics with the targets after
    /// `timeout`.
    pub async fn wait_targets_up(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.targets().await;
            if targets.len() == count && targets.iter().all(|t| t["health"] == "up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: the {count} targets are not all up after {timeout:?}: {targets:#?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `check` (every 200 ms) until it returns `Some`; panics with
    /// `what` and the last thing it saw after `timeout`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check().await {
                Ok(value) => return value,
                Err(last) => last,
            };
            assert!(
                Instant::now() < deadline,
                "prometheus: {what}: not within {timeout:?}; last: {last}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The value of an instant-vector sample (`value[1]`) as a number (NaN
/// when it is `"NaN"`).
pub fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("not a sample: {sample}"))
}
