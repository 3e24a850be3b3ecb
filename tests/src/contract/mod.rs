//! Shared by the ingress tests (`ingress_nginx`, `ingress_traefik`,
//! `ingress_ext_authz`): the real verifier in front of a real cdk-mintd, an
//! echo upstream that reports what reached it, config templates rendered with
//! free ports, and the table of checks that every ingress must pass.
//!
//! The contract table: a free path goes through; a paid path without a token
//! is a 402 whose `X-Cashu` cdk parses and whose body is the JSON of the
//! contract; a token pays once (200, the upstream sees the verification
//! headers and not the token), the second time is a 400
//! `token_already_spent`; client-sent verification headers never reach the
//! upstream; a client cannot make a paid path free with its own
//! `X-Original-URL` / `X-Forwarded-Uri`; with the verifier down the answer is
//! a 5xx, never a 200, and the upstream is not reached.
//!
//! `spellings` holds the catalogue of path and host spellings (dot segments,
//! escapes, slashes, case, `;` parameters, absolute-form targets, odd
//! Hosts), each with the price of its dearest reading, and the checks that
//! send them, byte for byte, through a proxy or straight to `/auth`.

pub mod leases;
pub mod spellings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::process::write_file;
use crate::{loopback_url, tools, ChildProcess, MintOptions, TestMint, TestWallet};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Json;
use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, PaymentRequest};
use cdk::Amount;
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long the verifier may take to be ready (its mint answered).
pub const VERIFIER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a proxy may take to serve its first request.
pub const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::fixture::{DEFAULT_PRICE, PREMIUM, PREMIUM_PLUS};

// ---------------------------------------------------------------------------
// Rendering the committed config templates.

/// The file at `relative` from the repository root, as text.
pub fn repo_file(relative: &str) -> String {
    let path = tools::workspace_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The one template renderer (the rule of `scripts/render.py`).
pub use crate::render::{placeholders, render};

// ---------------------------------------------------------------------------
// The echo upstream.

/// What one request looked like when it reached the upstream.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lower-case names, in arrival order (repeats kept).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of header `name`, `None` when absent; panics when
    /// it came more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let values = self.all(name);
        assert!(
            values.len() <= 1,
            "the upstream got {name} {} times: {values:?}",
            values.len()
        );
        values.first().copied()
    }

    /// The names of the headers that start with `prefix` (lower case).
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// A loopback HTTP server that answers every request with 200 and a JSON
/// description of it, and records it twice: as the HTTP server read it
/// ([`Seen`]), and as the bytes that arrived on each connection, so that a
/// request the HTTP server would refuse to parse (and a request target
/// exactly as the proxy wrote it) still shows ([`EchoUpstream::raw_heads`]).
#[derive(Debug)]
pub struct EchoUpstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    wire: Wire,
    task: tokio::task::JoinHandle<()>,
}

/// The bytes received on every connection of the upstream, in accept order.
type Wire = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// Where the upstream's wire record stood at one moment (the number of
/// complete request heads on each connection).
#[derive(Debug, Clone)]
pub struct WireMark(Vec<usize>);

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|err| panic!("echo upstream: cannot bind: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("echo upstream: no local address: {err}"))
            .port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let wire: Wire = Arc::default();
        let app = axum::Router::new().fallback(echo).with_state(seen.clone());
        let listener = RecordingListener {
            inner: listener,
            wire: wire.clone(),
        };
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("echo upstream stopped: {err}");
            }
        });
        Self {
            port,
            seen,
            wire,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        loopback_url(self.port)
    }

    /// How many requests reached the upstream so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The last request that reached the upstream.
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no request reached the upstream"))
    }

    /// The complete request heads (request line and headers, as text) that
    /// arrived on each connection so far, whether or not the HTTP server
    /// could parse them.
    fn heads_by_connection(&self) -> Vec<Vec<String>> {
        let connections: Vec<Arc<Mutex<Vec<u8>>>> =
            self.wire.lock().unwrap_or_else(|p| p.into_inner()).clone();
        connections
            .iter()
            .map(|bytes| request_heads(&bytes.lock().unwrap_or_else(|p| p.into_inner())))
            .collect()
    }

    /// Every request head that arrived on the wire so far.
    pub fn raw_heads(&self) -> Vec<String> {
        self.heads_by_connection().concat()
    }

    /// Where the wire record stands now.
    pub fn wire_mark(&self) -> WireMark {
        WireMark(self.heads_by_connection().iter().map(Vec::len).collect())
    }

    /// The request heads that arrived on the wire since `mark`.
    pub fn raw_heads_since(&self, mark: &WireMark) -> Vec<String> {
        self.heads_by_connection()
            .into_iter()
            .enumerate()
            .flat_map(|(i, heads)| {
                let skip = mark.0.get(i).copied().unwrap_or(0);
                heads.into_iter().skip(skip)
            })
            .collect()
    }
}

/// The request target of a request head (`GET /a/b?c HTTP/1.1` → `/a/b?c`).
pub fn head_target(head: &str) -> &str {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    parts.next();
    parts.next().unwrap_or_default()
}

/// Splits what a client wrote on one connection into request heads,
/// stepping over each request's body (`Content-Length` or chunked).
fn request_heads(bytes: &[u8]) -> Vec<String> {
    let mut heads = Vec::new();
    let mut rest = bytes;
    loop {
        while let Some(after) = rest.strip_prefix(b"\r\n") {
            rest = after;
        }
        let Some(end) = find(rest, b"\r\n\r\n") else {
            return heads;
        };
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let header = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            rest = skip_chunked(rest);
        } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            rest = &rest[len.min(rest.len())..];
        }
        heads.push(head);
    }
}

/// The bytes after a chunked body that starts `bytes` (none while the body
/// is incomplete).
fn skip_chunked(bytes: &[u8]) -> &[u8] {
    chunked_end(bytes).map_or(&[], |end| &bytes[end..])
}

/// Where a chunked body that starts `bytes` ends (the offset just past its
/// last chunk, trailers and empty line); `None` while it is incomplete.
fn chunked_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&bytes[at..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            loop {
                let end = at + find(&bytes[at..], b"\r\n")?;
                if end == at {
                    return Some(at + 2);
                }
                at = end + 2;
            }
        }
        at += size + 2;
        if at > bytes.len() {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Accepts the upstream's connections and records what arrives on each.
#[derive(Debug)]
struct RecordingListener {
    inner: tokio::net::TcpListener,
    wire: Wire,
}

impl axum::serve::Listener for RecordingListener {
    type Io = RecordingStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (inner, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
        self.wire
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes.clone());
        (RecordingStream { inner, bytes }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of the upstream that keeps a copy of every byte read.
#[derive(Debug)]
struct RecordingStream {
    inner: tokio::net::TcpStream,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for RecordingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            this.bytes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&buf.filled()[before..]);
        }
        poll
    }
}

impl tokio::io::AsyncWrite for RecordingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let record = Seen {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| uri.path().to_string()),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let answer = json!({
        "upstream": "echo",
        "method": record.method,
        "path": record.path,
        "headers": record.headers,
    });
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    Json(answer)
}

// ---------------------------------------------------------------------------
// The verifier.

/// The verifier process (shared with every test).
pub use crate::verifier::Verifier;

// ---------------------------------------------------------------------------
// The stack every ingress test runs against.

/// A real mint, a funded payer wallet, the verifier and the echo upstream.
#[derive(Debug)]
pub struct Stack {
    pub mint: TestMint,
    pub wallet: TestWallet,
    pub verifier: Verifier,
    pub upstream: EchoUpstream,
}

impl Stack {
    /// What each tier of [`Stack::config`] costs.
    pub const PRICES: spellings::Prices = spellings::Prices {
        default: DEFAULT_PRICE,
        premium: PREMIUM,
        premium_plus: PREMIUM_PLUS,
    };

    /// The verifier's tier table: the one fixture.
    pub fn config(mint_url: &str) -> Value {
        crate::fixture::config(mint_url)
    }

    /// Starts everything; the payer wallet holds `funds` sat.
    pub async fn start(funds: u64) -> Self {
        let mint = TestMint::start(MintOptions::default()).await;
        let wallet = TestWallet::new(&mint.url()).await;
        wallet.fund(funds).await;
        let verifier = Verifier::start(&Self::config(&mint.url())).await;
        let upstream = EchoUpstream::start().await;
        Self {
            mint,
            wallet,
            verifier,
            upstream,
        }
    }
}

/// What the table of checks needs of a stack: the payer wallet, the
/// upstream that records what reaches it, and the accepted mint. The
/// ingress stacks here and the filter's stack (`filter_support`) both have
/// them.
pub trait Site {
    fn wallet(&self) -> &TestWallet;
    fn upstream(&self) -> &EchoUpstream;
    fn mint_url(&self) -> String;
}

impl Site for Stack {
    fn wallet(&self) -> &TestWallet {
        &self.wallet
    }

    fn upstream(&self) -> &EchoUpstream {
        &self.upstream
    }

    fn mint_url(&self) -> String {
        self.mint.url()
    }
}

// ---------------------------------------------------------------------------
// A proxy process.

/// A proxy started by a test, with the directory holding its rendered config.
#[derive(Debug)]
pub struct Proxy {
    pub name: String,
    pub port: u16,
    pub process: ChildProcess,
    pub dir: TempDir,
}

impl Proxy {
    /// Starts `command` (already pointing at files in `dir`) and waits until
    /// `GET /free` through it answers 200.
    pub async fn start(name: &str, port: u16, command: Command, dir: TempDir) -> Self {
        let mut process = ChildProcess::spawn(name, command);
        process
            .wait_http_ok(
                &format!("{}/free/ready", loopback_url(port)),
                PROXY_READY_TIMEOUT,
            )
            .await;
        Self {
            name: name.to_string(),
            port,
            process,
            dir,
        }
    }

    pub fn url(&self) -> String {
        loopback_url(self.port)
    }

    /// `127.0.0.1:<port>`, for raw requests.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A fresh directory for a proxy's rendered config.
pub fn proxy_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("paygress-{name}-"))
        .tempdir()
        .unwrap_or_else(|err| panic!("{name}: cannot create a temp dir: {err}"))
}

/// Writes `text` to `dir/file` and returns the path.
pub fn write_in(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    write_file(&path, text);
    path
}

// ---------------------------------------------------------------------------
// The table of checks.

/// What differs between ingresses, as documented in docs/ingress/.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Whether every client-sent `X-Payment-*` is removed (Traefik, Envoy),
    /// or only the names Paygress sets (NGINX: it cannot match a prefix).
    pub strips_payment_prefix: bool,
    /// The status when the verifier cannot be reached.
    pub verifier_down_status: u16,
    /// Whether that answer carries `{"code":"verifier_unavailable"}`.
    pub verifier_down_json: bool,
    /// Whether the verifier's 503 `mint_unavailable` reaches the client
    /// with its JSON body (Envoy's ext_authz turns any 5xx of the check
    /// into `status_on_error` without a body).
    pub mint_down_json: bool,
}

pub use crate::http::Answer;

/// Sends `method url` with text `headers` (and `body`).
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    crate::http::send(method, url, &headers, body).await
}

/// `GET url` with text `headers`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    send("GET", url, headers, None).await
}

/// `GET target HTTP/1.1` written byte for byte on a fresh connection to
/// `addr` (`127.0.0.1:port`), with `Host: host` as given, `Connection:
/// close` and `headers`: no client library in between to resolve dot
/// segments or re-encode the target. `None` when the peer closed the
/// connection without an answer.
pub async fn raw_get(
    addr: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Option<Answer> {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    raw_exchange(addr, request.as_bytes()).await
}

/// Writes `request` on a fresh connection to `addr` and reads the answer
/// until the peer closes the connection. `None` when it closed (or reset)
/// the connection without answering.
pub async fn raw_exchange(addr: &str, request: &[u8]) -> Option<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|err| panic!("{addr}: cannot connect: {err}"));
        stream
            .write_all(request)
            .await
            .unwrap_or_else(|err| panic!("{addr}: cannot write the request: {err}"));
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        // Until the answer is complete (a proxy may hold the connection
        // open a while after a local reply, as Envoy's delayed close does),
        // or the peer closes.
        while !answer_complete(&bytes) {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                // A reset after an answer still leaves the answer.
                Err(_) => break,
            }
        }
        bytes
    };
    let bytes = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{addr}: no end of the answer within 30 s to {:?}",
                String::from_utf8_lossy(request)
            )
        });
    parse_answer(&bytes)
}

/// Whether `bytes` hold a whole answer: its head, and a body framed by
/// `Content-Length` or chunked encoding (an unframed body ends with the
/// connection).
fn answer_complete(bytes: &[u8]) -> bool {
    let Some(end) = find(bytes, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let rest = &bytes[end + 4..];
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        return chunked_end(rest).is_some();
    }
    match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) => rest.len() >= length,
        None => false,
    }
}

/// An HTTP/1.1 answer from its bytes; `None` when there is none.
fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let rest = &bytes[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_string());
        }
    }
    let chunked = headers.get("transfer-encoding").is_some_and(|v| {
        v.iter()
            .any(|te| te.to_ascii_lowercase().contains("chunked"))
    });
    let length = headers
        .get("content-length")
        .and_then(|v| v.first())
        .and_then(|v| v.parse::<usize>().ok());
    let body = if chunked {
        dechunk(rest)
    } else if let Some(length) = length {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Some(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The payload of a chunked body.
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(bytes, b"\r\n") {
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&bytes[..size.min(bytes.len())]);
        bytes = &bytes[(size + 2).min(bytes.len())..];
    }
    out
}

/// Runs the whole table through the proxy at `base` (the verifier up).
pub async fn check_table(name: &str, base: &str, stack: &impl Site, expect: &Expect) {
    eprintln!("[{name}] free path");
    free_path_goes_through(name, base, stack).await;
    eprintln!("[{name}] 402 on a paid path without a token");
    payment_required(
        name,
        &format!("{base}/premium/data"),
        stack,
        PREMIUM,
        Some("premium"),
    )
    .await;
    payment_required(
        name,
        &format!("{base}/premium-plus/x"),
        stack,
        PREMIUM_PLUS,
        Some("premium-plus"),
    )
    .await;
    eprintln!("[{name}] a client cannot reprice a paid path");
    client_cannot_reprice(name, base, stack).await;
    eprintln!("[{name}] a malformed token is a 400");
    malformed_token(name, base, stack).await;
    eprintln!("[{name}] paying with X-Cashu, then replaying the token");
    pay_with_x_cashu_then_replay(name, base, stack, expect).await;
    eprintln!("[{name}] paying with Authorization: Bearer");
    pay_with_bearer(name, base, stack).await;
    eprintln!("[{name}] an application's own Authorization goes through");
    own_authorization_kept(name, base, stack).await;
    eprintln!("[{name}] a paid POST keeps its method and body");
    paid_post_keeps_its_body(name, base, stack).await;
    eprintln!("[{name}] an underscore alias of a verification header is dropped");
    underscore_alias_dropped(name, base, stack).await;
}

/// `X_Payment_Verified` is not `X-Payment-Verified` to the proxy, but CGI,
/// WSGI, PHP and NGINX-style upstreams read both as `HTTP_X_PAYMENT_VERIFIED`:
/// it must not reach the upstream.
pub async fn underscore_alias_dropped(name: &str, base: &str, stack: &impl Site) {
    let answer = get(
        &format!("{base}/free/alias"),
        &[("X_Payment_Verified", "true"), ("X_User_ID", "mallory")],
    )
    .await;
    assert_eq!(answer.status, 200, "[{name}] {answer:?}");
    let seen = stack.upstream().last();
    assert_eq!(seen.path, "/free/alias", "[{name}]");
    assert_eq!(seen.one("x_payment_verified"), None, "[{name}] {seen:?}");
    assert_eq!(seen.one("x_user_id"), None, "[{name}] {seen:?}");
}

/// `GET /free/...` with spoofed verification headers: 200, and the upstream
/// sees none of them.
pub async fn free_path_goes_through(name: &str, base: &str, stack: &impl Site) {
    let before = stack.upstream().count();
    let answer = get(
        &format!("{base}/free/page?x=1"),
        &[
            ("X-Payment-Verified", "true"),
            ("X-Payment-Amount", "1000000"),
            ("X-Payment-Tier", "premium"),
            ("X-User-ID", "mallory"),
            ("X-Provisioned-Pod", "someone-elses-pod"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "[{name}] free path: {answer:?}");
    assert_eq!(
        stack.upstream().count(),
        before + 1,
        "[{name}] free path did not reach the upstream"
    );
    let seen = stack.upstream().last();
    assert_eq!(seen.path, "/free/page?x=1", "[{name}]");
    for header in [
        "x-payment-verified",
        "x-payment-amount",
        "x-payment-tier",
        "x-user-id",
        "x-provisioned-pod",
    ] {
        assert_eq!(
            seen.one(header),
            None,
            "[{name}] a client's {header} reached the upstream on a free path"
        );
    }
}

/// A paid path without a token: 402, `X-Cashu` is a NUT-18 request (parsed
/// by cdk) for `amount` sat at the stack's mint, the body is the contract's
/// JSON; the upstream is not reached.
pub async fn payment_required(
    name: &str,
    url: &str,
    stack: &impl Site,
    amount: u64,
    tier: Option<&str>,
) {
    let before = stack.upstream().count();
    let answer = get(url, &[]).await;
    assert_eq!(answer.status, 402, "[{name}] {url}: {answer:?}");
    assert_eq!(
        stack.upstream().count(),
        before,
        "[{name}] a 402 reached the upstream"
    );
    let creq = answer
        .header("x-cashu")
        .unwrap_or_else(|| panic!("[{name}] {url}: 402 without X-Cashu: {answer:?}"));
    assert!(creq.starts_with("creqA"), "[{name}] X-Cashu is {creq}");
    let request = PaymentRequest::from_str(creq)
        .unwrap_or_else(|err| panic!("[{name}] cdk cannot parse X-Cashu {creq}: {err}"));
    assert_eq!(request.amount, Some(Amount::from(amount)), "[{name}] {url}");
    assert_eq!(request.unit, Some(CurrencyUnit::Sat), "[{name}] {url}");
    let mint = MintUrl::from_str(&stack.mint_url()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(request.mints, vec![mint], "[{name}] {url}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "[{name}] {url}: the 402 is not JSON: {answer:?}"
    );
    let body = answer.json();
    assert_eq!(body["error"], "Payment Required", "[{name}] {body}");
    assert_eq!(body["amount"], json!(amount), "[{name}] {body}");
    assert_eq!(body["unit"], "sat", "[{name}] {body}");
    assert_eq!(body["mints"], json!([stack.mint_url()]), "[{name}] {body}");
    if let Some(tier) = tier {
        if let Some(found) = body.get("tier") {
            assert_eq!(found, tier, "[{name}] {body}");
        }
    }
}

/// A client's own `X-Original-URL` / `X-Forwarded-Uri` / `-Method` naming a
/// free path do not make a paid path free.
pub async fn client_cannot_reprice(name: &str, base: &str, stack: &impl Site) {
    let before = stack.upstream().count();
    let answer = get(
        &format!("{base}/premium/data"),
        &[
            ("X-Original-URL", "/free"),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-Uri", "/free"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Host", "elsewhere.example"),
        ],
    )
    .await;
    assert_eq!(
        answer.status, 402,
        "[{name}] a client's X-Original-URL/X-Forwarded-Uri repriced a paid path: {answer:?}"
    );
    assert_eq!(
        stack.upstream().count(),
        before,
        "[{name}] reached the upstream unpaid"
    );
    let body = answer.json();
    assert_eq!(body["amount"], json!(PREMIUM), "[{name}] {body}");
}

/// A token that is not a token: 400 `malformed_token`, nothing upstream.
pub async fn malformed_token(name: &str, base: &str, stack: &impl Site) {
    let before = stack.upstream().count();
    let answer = get(
        &format!("{base}/premium/data"),
        &[("X-Cashu", "cashuBnot-a-token")],
    )
    .await;
    assert_eq!(answer.status, 400, "[{name}] {answer:?}");
    assert_eq!(
        answer.json()["code"],
        "malformed_token",
        "[{name}] {answer:?}"
    );
    assert_eq!(
        stack.upstream().count(),
        before,
        "[{name}] a 400 reached the upstream"
    );
}

/// Pays `/premium` with `X-Cashu` while sending spoofed verification
/// headers; the upstream sees the verifier's values, not the client's, and
/// not the token. The same token again: 400 `token_already_spent`.
pub async fn pay_with_x_cashu_then_replay(
    name: &str,
    base: &str,
    stack: &impl Site,
    expect: &Expect,
) {
    let token = stack.wallet().token(PREMIUM).await;
    let url = format!("{base}/premium/data");
    let before = stack.upstream().count();
    let answer = get(
        &url,
        &[
            ("X-Cashu", token.as_str()),
            ("X-Payment-Verified", "false"),
            ("X-Payment-Amount", "999999"),
            ("X-Payment-Custom", "spoofed"),
            ("X-User-ID", "mallory"),
            ("X-Provisioned-Pod", "someone-elses-pod"),
        ],
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "[{name}] paying with X-Cashu: {answer:?}"
    );
    assert_eq!(
        stack.upstream().count(),
        before + 1,
        "[{name}] the paid request did not reach the upstream"
    );
    let seen = stack.upstream().last();
    assert_eq!(seen.path, "/premium/data", "[{name}]");
    assert_eq!(
        seen.one("x-payment-verified"),
        Some("true"),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-payment-amount"),
        Some(PREMIUM.to_string().as_str()),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-payment-tier"),
        Some("premium"),
        "[{name}] {seen:?}"
    );
    let user = seen
        .one("x-user-id")
        .unwrap_or_else(|| panic!("[{name}] no X-User-ID upstream: {seen:?}"));
    assert!(
        !user.is_empty() && user != "mallory",
        "[{name}] X-User-ID {user}"
    );
    assert_eq!(seen.one("x-provisioned-pod"), None, "[{name}] {seen:?}");
    assert_eq!(
        seen.one("x-cashu"),
        None,
        "[{name}] the token reached the upstream: {seen:?}"
    );
    if expect.strips_payment_prefix {
        assert_eq!(
            seen.one("x-payment-custom"),
            None,
            "[{name}] a client's X-Payment-Custom reached the upstream"
        );
    }
    assert!(
        !stack.wallet().is_spendable(&token).await,
        "[{name}] the token was not redeemed"
    );

    let before = stack.upstream().count();
    let replay = get(&url, &[("X-Cashu", token.as_str())]).await;
    assert_eq!(replay.status, 400, "[{name}] replay: {replay:?}");
    assert_eq!(
        replay.json()["code"],
        "token_already_spent",
        "[{name}] {replay:?}"
    );
    assert_eq!(
        stack.upstream().count(),
        before,
        "[{name}] a replay reached the upstream"
    );
}

/// Pays with `Authorization: Bearer <token>` (the seed's form): 200, and
/// that Authorization does not reach the upstream.
pub async fn pay_with_bearer(name: &str, base: &str, stack: &impl Site) {
    let token = stack.wallet().token(PREMIUM).await;
    let bearer = format!("Bearer {token}");
    let answer = get(
        &format!("{base}/premium/bearer"),
        &[("Authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "[{name}] paying with Bearer: {answer:?}"
    );
    let seen = stack.upstream().last();
    assert_eq!(seen.path, "/premium/bearer", "[{name}]");
    assert_eq!(
        seen.one("x-payment-verified"),
        Some("true"),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("authorization"),
        None,
        "[{name}] the token reached the upstream in Authorization"
    );
}

/// Pays with `X-Cashu` while the application's own bearer token rides in
/// `Authorization`: the upstream gets the application's token.
pub async fn own_authorization_kept(name: &str, base: &str, stack: &impl Site) {
    let token = stack.wallet().token(PREMIUM).await;
    let answer = get(
        &format!("{base}/premium/app"),
        &[
            ("X-Cashu", token.as_str()),
            ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.app.sig"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "[{name}] {answer:?}");
    let seen = stack.upstream().last();
    assert_eq!(
        seen.one("authorization"),
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.app.sig"),
        "[{name}] the application's own Authorization was lost: {seen:?}"
    );
    assert_eq!(seen.one("x-cashu"), None, "[{name}] {seen:?}");
}

/// A paid `POST` with a body: the verifier is asked (whatever method the
/// proxy uses for the check), and the upstream gets the method and the body.
pub async fn paid_post_keeps_its_body(name: &str, base: &str, stack: &impl Site) {
    let token = stack.wallet().token(PREMIUM).await;
    let answer = send(
        "POST",
        &format!("{base}/premium/upload"),
        &[("X-Cashu", token.as_str()), ("Content-Type", "text/plain")],
        Some("the request body"),
    )
    .await;
    assert_eq!(answer.status, 200, "[{name}] paid POST: {answer:?}");
    let seen = stack.upstream().last();
    assert_eq!(seen.method, "POST", "[{name}] {seen:?}");
    assert_eq!(seen.path, "/premium/upload", "[{name}] {seen:?}");
    assert_eq!(seen.body, "the request body", "[{name}] {seen:?}");
    assert_eq!(
        seen.one("x-payment-verified"),
        Some("true"),
        "[{name}] {seen:?}"
    );
    assert_eq!(seen.one("x-cashu"), None, "[{name}] {seen:?}");
}

/// With the mint stopped: a paid request is a 503 (never a 200, nothing
/// upstream), and the token is still the payer's once the mint is back.
pub async fn mint_down(name: &str, base: &str, stack: &mut Stack, expect: &Expect) {
    let token = stack.wallet().token(PREMIUM).await;
    let before = stack.upstream().count();
    stack.mint.stop();
    let answer = get(
        &format!("{base}/premium/data"),
        &[("X-Cashu", token.as_str())],
    )
    .await;
    stack.mint.restart().await;
    assert_eq!(answer.status, 503, "[{name}] mint down: {answer:?}");
    if expect.mint_down_json {
        assert_eq!(
            answer.json()["code"],
            "mint_unavailable",
            "[{name}] {answer:?}"
        );
    }
    assert_eq!(
        stack.upstream().count(),
        before,
        "[{name}] reached the upstream with the mint down"
    );
    assert!(
        stack.wallet().is_spendable(&token).await,
        "[{name}] the token was lost while the mint was down"
    );
}

/// With the verifier stopped: a paid request (with a token) and a free one
/// are answered with a 5xx, never a 200, and nothing reaches the upstream.
pub async fn verifier_down(name: &str, base: &str, stack: &Stack, expect: &Expect) {
    let token = stack.wallet().token(PREMIUM).await;
    let before = stack.upstream().count();
    for (path, headers) in [
        ("/premium/data", vec![("X-Cashu", token.as_str())]),
        ("/premium/data", vec![]),
    ] {
        let answer = get(&format!("{base}{path}"), &headers).await;
        assert_ne!(
            answer.status, 200,
            "[{name}] verifier down, {path}: {answer:?}"
        );
        assert_eq!(
            answer.status, expect.verifier_down_status,
            "[{name}] verifier down, {path}: {answer:?}"
        );
        assert!(
            (500..600).contains(&answer.status),
            "[{name}] verifier down, {path}: {answer:?}"
        );
        if expect.verifier_down_json {
            assert_eq!(
                answer.json()["code"],
                "verifier_unavailable",
                "[{name}] {answer:?}"
            );
        }
    }
    assert_eq!(
        stack.upstream().count(),
        before,
        "[{name}] a request reached the upstream while the verifier was down"
    );
    assert!(
        stack.wallet().is_spendable(&token).await,
        "[{name}] the token was spent while the verifier was down"
    );
}
