//! A real headless Chromium, driven over the DevTools protocol (CDP) on one
//! WebSocket: Debian's `chromium`, started headless with its own profile in a
//! temporary directory, stopped (with its process group) on drop.
//!
//! - [`chromium`] finds the browser (`$PAYGRESS_CHROMIUM`, `/usr/bin/chromium`,
//!   `chromium` on `PATH`) and panics, saying to run `just setup`, when there
//!   is none;
//! - [`Chromium::start`] starts it on a DevTools port it picks itself (read
//!   back from the profile's `DevToolsActivePort`, so no port can be taken in
//!   between) and connects;
//! - [`Chromium::new_page`] opens a tab, attached in CDP's flat mode, with
//!   the `Page`, `Runtime`, `Log`, `Network` and `Audits` domains enabled,
//!   and records every event it gets: navigations and their documents
//!   ([`Page::navigate`], [`Page::wait_for_load`]), script results
//!   ([`Page::evaluate`]), screenshots ([`Page::screenshot`]) and what the
//!   browser logged, Content Security Policy violations among it
//!   ([`Page::logged`], [`Page::csp_violations`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::ChildProcess;

/// How long Chromium may take to open its DevTools port.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one DevTools command may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a navigation may take to reach its `load` event.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The width of the window, in CSS pixels (the page's 40rem column and
/// its margins fit).
pub const WINDOW_WIDTH: u32 = 900;
/// The height of the window.
pub const WINDOW_HEIGHT: u32 = 1200;

const INSTALL_HINT: &str = "install it with `just setup` (Debian's `chromium` package: \
                            apt-get install chromium), or point PAYGRESS_CHROMIUM at a \
                            Chromium or Chrome binary";

/// The Chromium binary: `$PAYGRESS_CHROMIUM`, else `/usr/bin/chromium`, else
/// `chromium` on `PATH`. Panics, saying to run `just setup`, when none is
/// there.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("PAYGRESS_CHROMIUM").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            is_executable(&path),
            "PAYGRESS_CHROMIUM={} is not an executable file; {INSTALL_HINT}",
            path.display()
        );
        return path;
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if is_executable(&debian) {
        return debian;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| is_executable(p))
    }) {
        return found;
    }
    panic!("chromium not found (no /usr/bin/chromium, none on PATH): {INSTALL_HINT}")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the browser tests keep their screenshots:
/// `<target dir>/artifacts/browser/` (created).
pub fn artifacts_dir() -> PathBuf {
    let dir = crate::tools::target_dir().join("artifacts").join("browser");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

// ---------------------------------------------------------------------------
// The DevTools connection.

/// One DevTools WebSocket: commands by id, and every event kept in order.
#[derive(Debug)]
struct Cdp {
    out: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<Value>>>,
    event_added: Arc<Notify>,
    next_id: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|err| panic!("chromium: cannot connect to DevTools at {url}: {err}"));
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let event_added = Arc::new(Notify::new());
        let writer = tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        });
        let reader = {
            let (pending, events, event_added) =
                (pending.clone(), events.clone(), event_added.clone());
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = value.get("id").and_then(Value::as_u64) {
                        let waiter = lock(&pending).remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(value);
                        }
                    } else if value.get("method").is_some() {
                        lock(&events).push(value);
                        event_added.notify_waiters();
                    }
                }
                // The browser went away: wake every caller (they time out
                // with a message rather than hang).
                lock(&pending).clear();
                event_added.notify_waiters();
            })
        };
        Self {
            out,
            pending,
            events,
            event_added,
            next_id: AtomicU64::new(1),
            tasks: vec![writer, reader],
        }
    }

    /// Sends `method` (to the tab of `session`, or to the browser) and
    /// returns its `result`; panics on an error answer or after
    /// [`CALL_TIMEOUT`].
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .await
            .unwrap_or_else(|error| panic!("chromium: {method} failed: {error}"))
    }

    /// [`Cdp::call`], with the protocol's error answer as an `Err` (a
    /// script evaluated while its document goes away, say). Panics when no
    /// answer comes within [`CALL_TIMEOUT`].
    async fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        self.out
            .send(message.to_string())
            .unwrap_or_else(|_| panic!("chromium: the DevTools connection is closed ({method})"));
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("chromium: no answer to {method} within {CALL_TIMEOUT:?}"))
            .unwrap_or_else(|_| panic!("chromium: the connection closed before {method} answered"));
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The events of `session` from index `since` of the whole record, with
    /// their indexes.
    fn events_since(&self, session: &str, since: usize) -> Vec<(usize, Value)> {
        lock(&self.events)
            .iter()
            .enumerate()
            .skip(since)
            .filter(|(_, e)| e.get("sessionId").and_then(Value::as_str) == Some(session))
            .map(|(i, e)| (i, e.clone()))
            .collect()
    }

    fn event_count(&self) -> usize {
        lock(&self.events).len()
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------
// The browser.

/// A headless Chromium and its DevTools connection. Stopped on drop.
#[derive(Debug)]
pub struct Chromium {
    cdp: Arc<Cdp>,
    // Dropped after the connection: the process, then its profile.
    process: ChildProcess,
    _profile: TempDir,
}

impl Chromium {
    /// Starts Chromium headless (`--headless=new`, `--no-sandbox`: the tests
    /// run as root), with a fresh profile and DevTools on a port it picks,
    /// and connects to it.
    pub async fn start() -> Self {
        let binary = chromium();
        let profile = tempfile::Builder::new()
            .prefix("paygress-chromium-")
            .tempdir()
            .unwrap_or_else(|err| panic!("chromium: cannot create a profile dir: {err}"));
        let mut command = Command::new(&binary);
        command
            .arg("--headless=new")
            .arg("--no-sandbox")
            .arg("--remote-debugging-address=127.0.0.1")
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}"))
            .args([
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--metrics-recording-only",
                "--mute-audio",
                "--hide-scrollbars",
                "--password-store=basic",
                "--use-mock-keychain",
                "about:blank",
            ]);
        let mut process = ChildProcess::spawn("chromium", command);
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    if port.trim().parse::<u16>().is_ok() && path.starts_with('/') {
                        break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
                    }
                }
            }
            if let Some(status) = process.try_exit_status() {
                process.fail(&format!(
                    "{} exited ({status}) before opening its DevTools port",
                    binary.display()
                ));
            }
            if Instant::now() >= deadline {
                process.fail(&format!(
                    "no DevTools port in {} after {START_TIMEOUT:?}",
                    port_file.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let cdp = Arc::new(Cdp::connect(&ws_url).await);
        Self {
            cdp,
            process,
            _profile: profile,
        }
    }

    /// The browser's version string (`Browser.getVersion`).
    pub async fn version(&self) -> String {
        let v = self.cdp.call(None, "Browser.getVersion", json!({})).await;
        v["product"].as_str().unwrap_or_default().to_string()
    }

    /// Opens a new tab on `about:blank`, attached and with its domains
    /// enabled.
    pub async fn new_page(&self) -> Page {
        let created = self
            .cdp
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target = created["targetId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium: Target.createTarget gave no targetId: {created}"))
            .to_string();
        let attached = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium: Target.attachToTarget gave no sessionId"))
            .to_string();
        let page = Page {
            cdp: self.cdp.clone(),
            session,
            start: self.cdp.event_count(),
        };
        for domain in ["Page", "Runtime", "Log", "Network", "Audits"] {
            page.call(&format!("{domain}.enable"), json!({})).await;
        }
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": WINDOW_WIDTH, "height": WINDOW_HEIGHT,
                "deviceScaleFactor": 1, "mobile": false
            }),
        )
        .await;
        page
    }

    /// The browser's log (its stderr), for messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

// ---------------------------------------------------------------------------
// A tab.

/// The main document a navigation got: its URL, status and headers.
#[derive(Debug, Clone)]
pub struct Document {
    pub url: String,
    pub status: u16,
    /// Header names in lower case; repeated headers joined by `\n`, as
    /// Chromium reports them.
    pub headers: HashMap<String, String>,
}

impl Document {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One tab of a [`Chromium`], attached in flat mode.
#[derive(Debug)]
pub struct Page {
    cdp: Arc<Cdp>,
    session: String,
    /// Where this tab's events start in the connection's record.
    start: usize,
}

impl Page {
    /// A DevTools command to this tab; its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// A mark in the event record: events after it are "since" it.
    pub fn mark(&self) -> usize {
        self.cdp.event_count()
    }

    /// This tab's events since `mark` (each `{"method", "params", …}`).
    pub fn events_since(&self, mark: usize) -> Vec<Value> {
        self.cdp
            .events_since(&self.session, mark)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// Waits for an event `method` of this tab after `mark`; returns it.
    pub async fn wait_for_event(&self, mark: usize, method: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.cdp.event_added.notified();
            if let Some(found) = self
                .events_since(mark)
                .into_iter()
                .find(|e| e["method"] == method)
            {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "chromium: no {method} within {timeout:?}; this tab logged: {:?}",
                    self.logged()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits for the `load` event of a navigation that started after
    /// `mark` (one the page's own script began, say), and returns the main
    /// document it got (`None` for a document that came from no network
    /// answer, such as a `blob:` URL).
    pub async fn wait_for_load(&self, mark: usize) -> Option<Document> {
        self.wait_for_event(mark, "Page.loadEventFired", LOAD_TIMEOUT)
            .await;
        self.documents_since(mark).pop()
    }

    /// Navigates to `url` and waits for its `load` event; returns the main
    /// document's answer. Panics when the navigation fails.
    pub async fn navigate(&self, url: &str) -> Document {
        let mark = self.mark();
        let nav = self.call("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = nav.get("errorText").and_then(Value::as_str) {
            panic!("chromium: navigating to {url} failed: {error}");
        }
        self.wait_for_load(mark)
            .await
            .unwrap_or_else(|| panic!("chromium: navigating to {url} got no document"))
    }

    /// The main documents answered since `mark`, in order.
    pub fn documents_since(&self, mark: usize) -> Vec<Document> {
        self.events_since(mark)
            .into_iter()
            .filter(|e| {
                e["method"] == "Network.responseReceived" && e["params"]["type"] == "Document"
            })
            .map(|e| {
                let response = &e["params"]["response"];
                let headers = response["headers"]
                    .as_object()
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| {
                                (
                                    k.to_ascii_lowercase(),
                                    v.as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Document {
                    url: response["url"].as_str().unwrap_or_default().to_string(),
                    status: response["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(0),
                    headers,
                }
            })
            .collect()
    }

    /// Every request the tab sent since `mark`: `(method, url)`.
    pub fn requests_since(&self, mark: usize) -> Vec<(String, String)> {
        self.events_since(mark)
            .into_iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .map(|e| {
                let r = &e["params"]["request"];
                (
                    r["method"].as_str().unwrap_or_default().to_string(),
                    r["url"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Evaluates `expression` in the page (promises awaited) and returns
    /// its value; panics, with the exception, when it throws.
    pub async fn evaluate(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                    "userGesture": true,
                }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("chromium: {expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true` (through navigations: an
    /// evaluation whose document goes away counts as not yet); panics after
    /// `timeout`.
    pub async fn wait_until(&self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self
                .cdp
                .try_call(
                    Some(&self.session),
                    "Runtime.evaluate",
                    json!({ "expression": expression, "returnByValue": true }),
                )
                .await;
            if value.is_ok_and(|v| v["result"]["value"] == json!(true)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "chromium: `{expression}` not true within {timeout:?}; the page says: {:?}; \
                     logged: {:?}",
                    self.text().await,
                    self.logged()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The document's title.
    pub async fn title(&self) -> String {
        self.evaluate("document.title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The text of the document (`document.body.innerText`; empty without a
    /// body).
    pub async fn text(&self) -> String {
        self.evaluate("document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Sets the tab's viewport to `width` × `height` CSS pixels (scale 1),
    /// for a page wider than [`WINDOW_WIDTH`].
    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width, "height": height,
                "deviceScaleFactor": 1, "mobile": false
            }),
        )
        .await;
    }

    /// The whole page (beyond the window) as a PNG, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(f64::from(WINDOW_WIDTH));
        let height = size["height"].as_f64().unwrap_or(f64::from(WINDOW_HEIGHT));
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {
                        "x": 0, "y": 0,
                        "width": width.max(f64::from(WINDOW_WIDTH)),
                        "height": height.max(1.0),
                        "scale": 1
                    }
                }),
            )
            .await;
        let data = shot["data"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium: Page.captureScreenshot gave no data"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|err| panic!("chromium: the screenshot is not base64: {err}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "chromium: the screenshot is not a PNG"
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        }
        std::fs::write(path, &png)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }

    /// Everything this tab logged since it opened: console messages,
    /// browser log entries (security, network, …), uncaught exceptions and
    /// DevTools issues, one line each (`source: text`).
    pub fn logged(&self) -> Vec<String> {
        self.events_since(self.start)
            .into_iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Log.entryAdded" => Some(format!(
                        "log {} {}: {}",
                        p["entry"]["source"].as_str().unwrap_or_default(),
                        p["entry"]["level"].as_str().unwrap_or_default(),
                        p["entry"]["text"].as_str().unwrap_or_default()
                    )),
                    "Runtime.consoleAPICalled" => Some(format!(
                        "console {}: {}",
                        p["type"].as_str().unwrap_or_default(),
                        p["args"]
                            .as_array()
                            .map(|args| args
                                .iter()
                                .map(|a| a["value"].as_str().map(str::to_string).unwrap_or_else(
                                    || a["description"].as_str().unwrap_or_default().to_string()
                                ))
                                .collect::<Vec<_>>()
                                .join(" "))
                            .unwrap_or_default()
                    )),
                    "Runtime.exceptionThrown" => Some(format!(
                        "exception: {} {}",
                        p["exceptionDetails"]["text"].as_str().unwrap_or_default(),
                        p["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .unwrap_or_default()
                    )),
                    "Audits.issueAdded" => Some(format!(
                        "issue {}: {}",
                        p["issue"]["code"].as_str().unwrap_or_default(),
                        p["issue"]["details"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// What this tab logged about the Content Security Policy: a violation
    /// logged to the console ("… violates the following Content Security
    /// Policy directive …") or a DevTools `ContentSecurityPolicyIssue`.
    pub fn csp_violations(&self) -> Vec<String> {
        self.logged()
            .into_iter()
            .filter(|line| {
                line.contains("Content Security Policy")
                    || line.contains("ContentSecurityPolicyIssue")
            })
            .collect()
    }
}
