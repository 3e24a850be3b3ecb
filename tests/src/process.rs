//! Child processes that clean up after themselves.
//!
//! [`ChildProcess`] starts a program in its own process group with its stdout
//! and stderr going to a log file, stops the whole group on drop (SIGINT, then
//! SIGKILL after a grace period, then reaps it), and puts the tail of that log
//! into every panic it raises, so a test that fails because a component did
//! not come up says why.
//!
//! Set `PAYGRESS_KEEP_LOGS=1` to keep the log directories after the test.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};
use tempfile::TempDir;

/// How long a process gets to exit after SIGINT before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many log lines a panic message carries.
pub const LOG_TAIL_LINES: usize = 40;

/// A running child process, stopped (with its process group) on drop.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Option<std::process::Child>,
    log_path: PathBuf,
    log_dir: Option<TempDir>,
}

impl ChildProcess {
    /// Starts `command`, logging its stdout and stderr to a file in a new
    /// temporary directory. Panics when it cannot be started.
    pub fn spawn(name: &str, command: Command) -> Self {
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("paygress-{}-", sanitize(name)))
            .tempdir()
            .unwrap_or_else(|err| panic!("{name}: cannot create a log directory: {err}"));
        let log_path = log_dir.path().join(format!("{}.log", sanitize(name)));
        let mut process = Self::spawn_with_log(name, command, &log_path);
        process.log_dir = Some(log_dir);
        process
    }

    /// Starts `command`, appending its stdout and stderr to `log_path` (which
    /// outlives the process: a restarted component can keep one log). Panics
    /// when it cannot be started.
    pub fn spawn_with_log(name: &str, mut command: Command, log_path: &Path) -> Self {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|err| panic!("{name}: cannot open log {}: {err}", log_path.display()));
        // A header line, so a log shared by restarts shows where each run starts.
        let _ = writeln!(log, "==> {name}: {}", describe(&command));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|err| panic!("{name}: cannot duplicate the log handle: {err}"));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        // Its own process group: stopping it stops whatever it started too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "{name}: cannot start {}: {err}",
                command.get_program().to_string_lossy()
            )
        });
        Self {
            name: name.to_string(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
            log_dir: None,
        }
    }

    /// The name given at spawn time (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while the process has not been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The log file that receives the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    /// Panics with `message`, the process's name and the tail of its log.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{}: {message}\n--- last {LOG_TAIL_LINES} lines of {} ---\n{}\n--- end of log ---",
            self.name,
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// Waits until `GET url` answers 2xx. Panics, with the log tail, when the
    /// process exits first or `timeout` passes.
    pub async fn wait_http_ok(&mut self, url: &str, timeout: Duration) {
        let result = poll_http_ok(url, timeout, || match self.try_exit_status() {
            Some(status) => Err(format!("exited ({status})")),
            None if self.child.is_none() => Err("was stopped".to_string()),
            None => Ok(()),
        })
        .await;
        if let Err(reason) = result {
            self.fail(&format!("not ready at {url}: {reason}"));
        }
    }

    /// Waits until the log contains `needle`. Panics, with the log tail, when
    /// the process exits first or `timeout` passes.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Some(status) = self.try_exit_status() {
                self.fail(&format!("exited ({status}) before logging {needle:?}"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not log {needle:?} within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process group: SIGINT, then SIGKILL after [`STOP_GRACE`],
    /// then reaps the process. Returns its exit status (None when it was
    /// already stopped). Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_with(Signal::INT, STOP_GRACE)
    }

    /// Like [`ChildProcess::stop`] with a chosen first signal and grace period.
    pub fn stop_with(&mut self, signal: Signal, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let group = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let status = match child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => {
                if let Some(group) = group {
                    let _ = kill_process_group(group, signal);
                }
                let deadline = Instant::now() + grace;
                let mut status = None;
                while Instant::now() < deadline {
                    if let Ok(Some(exited)) = child.try_wait() {
                        status = Some(exited);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                match status {
                    Some(status) => Some(status),
                    None => {
                        let _ = child.kill();
                        child.wait().ok()
                    }
                }
            }
        };
        // Whatever the process started and left behind in its group goes too.
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::KILL);
        }
        status
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.stop();
        if std::thread::panicking() && was_running {
            eprintln!(
                "--- {} (log {}), last {LOG_TAIL_LINES} lines ---\n{}\n--- end of {} ---",
                self.name,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES),
                self.name
            );
        }
        if keep_logs() {
            if let Some(dir) = self.log_dir.take() {
                let kept = dir.keep();
                eprintln!("{}: log kept in {}", self.name, kept.display());
            }
        }
    }
}

/// Runs `command` to completion and returns its output. Panics with the
/// command line, the status and both streams when it fails.
pub fn run_checked(name: &str, mut command: Command) -> Output {
    command.stdin(Stdio::null());
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{name}: cannot run {}: {err}", describe(&command)));
    if !output.status.success() {
        panic!(
            "{name}: `{}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe(&command),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Waits until `GET url` answers 2xx; `Err` says what it answered last (a
/// status or a connection error) when `timeout` passes.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<(), String> {
    poll_http_ok(url, timeout, || Ok(())).await
}

/// An HTTP client for talking to loopback test servers: no proxy from the
/// environment, short timeouts.
pub fn loopback_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|err| panic!("cannot build an HTTP client: {err}"))
}

async fn poll_http_ok(
    url: &str,
    timeout: Duration,
    mut still_alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let client = loopback_http_client();
    let deadline = Instant::now() + timeout;
    loop {
        still_alive()?;
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = client
            .get(url)
            .timeout(left.clamp(Duration::from_millis(100), Duration::from_secs(2)))
            .send()
            .await;
        let last = match attempt {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("answered {}", response.status()),
            Err(err) => format!("request failed: {err}"),
        };
        if Instant::now() >= deadline {
            return Err(format!("no 2xx within {timeout:?}, last: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn keep_logs() -> bool {
    std::env::var("PAYGRESS_KEEP_LOGS").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// Creates (or truncates) a file and writes `contents` to it; panics with the
/// path on failure. For the config files that tests generate.
pub fn write_file(path: &Path, contents: &str) {
    let mut file =
        File::create(path).unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
    file.write_all(contents.as_bytes())
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[tokio::test]
    async fn a_process_that_exits_early_fails_with_its_log() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo about to fail; exit 3"]);
        let mut process = ChildProcess::spawn("early-exit", command);
        let port = crate::ports::free_port();
        let url = crate::ports::loopback_url(port);
        let waited = tokio::spawn(async move {
            process.wait_http_ok(&url, Duration::from_secs(10)).await;
        })
        .await;
        let panic = waited.expect_err("the wait panics");
        let message = panic
            .into_panic()
            .downcast::<String>()
            .map(|message| *message)
            .unwrap_or_default();
        assert!(message.contains("exited"), "{message}");
        assert!(message.contains("about to fail"), "{message}");
    }

    #[test]
    fn drop_stops_the_whole_process_group() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 300 & echo child $!; wait"]);
        let mut process = ChildProcess::spawn("group", command);
        let deadline = Instant::now() + Duration::from_secs(5);
        let grandchild = loop {
            if let Some(pid) = process
                .log()
                .lines()
                .find_map(|line| line.strip_prefix("child "))
                .and_then(|pid| pid.trim().parse::<i32>().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "no child pid logged");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(process.is_running());
        drop(process);
        // The grandchild is not ours to reap; give init a moment to.
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !Path::new(&format!("/proc/{grandchild}")).exists()
                || read_lossy(Path::new(&format!("/proc/{grandchild}/stat"))).contains(") Z ")
        });
        assert!(gone, "grandchild {grandchild} survived");
    }
}
