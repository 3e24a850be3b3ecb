//! A TCP proxy on loopback that counts the HTTP requests passing through it:
//! how many times the verifier asked the mint for its keysets, or for a
//! swap, seen from outside both.
//!
//! [`CountingProxy`] accepts connections, opens one to the upstream for each,
//! and forwards bytes both ways unchanged. It reads the client's side as an
//! HTTP/1.1 request stream (request line, headers, a `Content-Length` or
//! chunked body, then the next request on the same connection) and records
//! every request line with the time it arrived. Requests whose line starts
//! with a held prefix ([`CountingProxy::hold`]) wait before they are
//! forwarded: a slow answer, so that concurrent callers overlap.
//!
//! A client stream it cannot read as HTTP/1.1 is still forwarded, and
//! counted in [`CountingProxy::unreadable`] so a test does not trust counts
//! it could not make.
//!
//! The proxy runs on its own thread and runtime, so it keeps forwarding
//! while the test blocks. It stops, with every connection, on drop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::ports::loopback_url;
use crate::proxy::ProxyThread;

/// The longest request head read before a stream counts as unreadable.
const MAX_HEAD: usize = 64 * 1024;

/// A counting proxy in front of an upstream, stopped on drop.
#[derive(Debug)]
pub struct CountingProxy {
    upstream: SocketAddr,
    shared: Arc<Shared>,
    proxy: ProxyThread,
}

#[derive(Debug, Default)]
struct Shared {
    /// Every request line seen, with when it arrived, in order of arrival.
    seen: Mutex<Vec<(Instant, String)>>,
    /// Prefixes whose requests wait before they are forwarded.
    holds: Mutex<Vec<(String, Duration)>>,
    /// Client streams that could not be read as HTTP/1.1.
    unreadable: AtomicUsize,
}

/// A request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// When its head had arrived.
    pub at: Instant,
    /// The request line, e.g. `GET /v1/keysets HTTP/1.1`.
    pub line: String,
}

impl CountingProxy {
    /// Starts a proxy on a free loopback port in front of `upstream_url`
    /// (`http://127.0.0.1:<port>`, as [`crate::TestMint::url`] gives it).
    pub fn start(upstream_url: &str) -> Self {
        let authority = upstream_url
            .strip_prefix("http://")
            .unwrap_or(upstream_url)
            .trim_end_matches('/');
        let upstream: SocketAddr = authority.parse().unwrap_or_else(|err| {
            panic!("counting proxy: upstream {upstream_url:?} is not http://IP:PORT: {err}")
        });
        let shared = Arc::new(Shared::default());
        let relay_shared = shared.clone();
        let proxy = ProxyThread::start("counting-proxy", upstream, move |client, server| {
            relay(client, server, relay_shared.clone())
        });
        Self {
            upstream,
            shared,
            proxy,
        }
    }

    /// `http://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        loopback_url(self.proxy.port())
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.proxy.port()
    }

    /// The upstream it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Every request seen so far, in order of arrival.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(at, line)| SeenRequest {
                at: *at,
                line: line.clone(),
            })
            .collect()
    }

    /// How many requests seen so far have a line starting with `prefix`
    /// (e.g. `GET /v1/keysets`).
    pub fn count(&self, prefix: &str) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, line)| matches_prefix(line, prefix))
            .count()
    }

    /// When the last request with a line starting with `prefix` arrived.
    pub fn last(&self, prefix: &str) -> Option<Instant> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|(_, line)| matches_prefix(line, prefix))
            .map(|(at, _)| *at)
    }

    /// From now on, requests whose line starts with `prefix` wait `delay`
    /// before they are forwarded (`Duration::ZERO` to stop holding them).
    pub fn hold(&self, prefix: &str, delay: Duration) {
        let mut holds = self.shared.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.retain(|(p, _)| p != prefix);
        if !delay.is_zero() {
            holds.push((prefix.to_string(), delay));
        }
    }

    /// How many client streams could not be read as HTTP/1.1 (their
    /// requests are forwarded but not counted).
    pub fn unreadable(&self) -> usize {
        self.shared.unreadable.load(Ordering::SeqCst)
    }
}

/// Whether a request line starts with `prefix` and the prefix ends at a
/// boundary of the target (`GET /v1/keys` matches `GET /v1/keys/01ab…` but
/// not `GET /v1/keysets`).
fn matches_prefix(line: &str, prefix: &str) -> bool {
    match line.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('/') || rest.is_empty() || rest.starts_with([' ', '/', '?', '#'])
        }
        None => false,
    }
}

/// One client connection and its connection upstream.
async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        requests(client_read, server_write, shared),
        answers(server_read, client_write)
    );
}

/// Client to upstream: reads the request stream, records each request line,
/// holds what must wait, forwards every byte.
async fn requests(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: Arc<Shared>) {
    let mut scanner = RequestScanner::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let was_readable = !scanner.is_opaque();
        let lines = scanner.feed(&buf[..n]);
        if was_readable && scanner.is_opaque() {
            shared.unreadable.fetch_add(1, Ordering::SeqCst);
        }
        let mut wait = Duration::ZERO;
        if !lines.is_empty() {
            let now = Instant::now();
            let holds = shared
                .holds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for line in &lines {
                for (prefix, delay) in &holds {
                    if matches_prefix(line, prefix) {
                        wait = wait.max(*delay);
                    }
                }
            }
            shared
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(lines.into_iter().map(|line| (now, line)));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Upstream to client: forwarded as is.
async fn answers(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Where the scanner is in an HTTP/1.1 request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Scan {
    /// Reading a request head.
    #[default]
    Head,
    /// Skipping this many bytes of a `Content-Length` body.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping this many bytes of chunk data (with its CRLF).
    ChunkData(u64),
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// Not HTTP/1.1 as understood here: forwarded, not read.
    Opaque,
}

/// Reads request lines out of an HTTP/1.1 request stream fed in pieces.
#[derive(Debug, Default)]
struct RequestScanner {
    state: Scan,
    pending: Vec<u8>,
}

impl RequestScanner {
    fn is_opaque(&self) -> bool {
        self.state == Scan::Opaque
    }

    /// Feeds bytes; returns the request lines whose heads completed.
    fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        if self.state == Scan::Opaque {
            return lines;
        }
        self.pending.extend_from_slice(data);
        loop {
            match self.state {
                Scan::Opaque => {
                    self.pending.clear();
                    break;
                }
                Scan::Head => {
                    // Blank lines between requests are allowed (RFC 9112 2.2).
                    while self.pending.starts_with(b"\r\n") {
                        self.pending.drain(..2);
                    }
                    let Some(end) = find(&self.pending, b"\r\n\r\n") else {
                        if self.pending.len() > MAX_HEAD {
                            self.state = Scan::Opaque;
                            continue;
                        }
                        break;
                    };
                    let head: Vec<u8> = self.pending.drain(..end + 4).collect();
                    match parse_head(&head[..end]) {
                        Some((line, framing)) => {
                            lines.push(line);
                            self.state = framing;
                        }
                        None => self.state = Scan::Opaque,
                    }
                }
                Scan::Body(left) | Scan::ChunkData(left) => {
                    let take = left.min(self.pending.len() as u64);
                    self.pending.drain(..take as usize);
                    let left = left - take;
                    self.state = match (self.state, left) {
                        (Scan::Body(_), 0) => Scan::Head,
                        (Scan::Body(_), n) => Scan::Body(n),
                        (_, 0) => Scan::ChunkSize,
                        (_, n) => Scan::ChunkData(n),
                    };
                    if left > 0 {
                        break;
                    }
                }
                Scan::ChunkSize => {
                    let Some(end) = find(&self.pending, b"\r\n") else {
                        if self.pending.len() > MAX_HEAD {
                            self.state = Scan::Opaque;
                            continue;
                        }
                        break;
                    };
                    let line: Vec<u8> = self.pending.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&line[..end]);
                    let size = text.split(';').next().unwrap_or("").trim();
                    self.state = match u64::from_str_radix(size, 16) {
                        Ok(0) => Scan::Trailers,
                        Ok(n) => Scan::ChunkData(n.saturating_add(2)),
                        Err(_) => Scan::Opaque,
                    };
                }
                Scan::Trailers => {
                    let Some(end) = find(&self.pending, b"\r\n") else {
                        break;
                    };
                    self.pending.drain(..end + 2);
                    if end == 0 {
                        self.state = Scan::Head;
                    }
                }
            }
        }
        lines
    }
}

/// The request line of a head and how its body is framed; `None` when it is
/// not an HTTP/1.x request head.
fn parse_head(head: &[u8]) -> Option<(String, Scan)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut length: u64 = 0;
    let mut chunked = false;
    for header in lines {
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let framing = if chunked {
        Scan::ChunkSize
    } else if length > 0 {
        Scan::Body(length)
    } else {
        Scan::Head
    };
    Some((request_line.to_string(), framing))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    #[test]
    fn request_lines_are_read_across_pieces_and_bodies() {
        let stream = b"GET /v1/keysets HTTP/1.1\r\nhost: m\r\n\r\n\
            POST /v1/swap HTTP/1.1\r\ncontent-length: 26\r\n\r\n\
            GET /v1/keysets HTTP/1.1\r\n\
            POST /v1/swap HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
            5\r\nGET /\r\n0\r\n\r\n\
            GET /v1/info HTTP/1.1\r\n\r\n";
        // One byte at a time and all at once read the same.
        for piece in [1, 7, stream.len()] {
            let mut scanner = RequestScanner::default();
            let mut lines = Vec::new();
            for chunk in stream.chunks(piece) {
                lines.extend(scanner.feed(chunk));
            }
            assert_eq!(
                lines,
                vec![
                    "GET /v1/keysets HTTP/1.1",
                    "POST /v1/swap HTTP/1.1",
                    "POST /v1/swap HTTP/1.1",
                    "GET /v1/info HTTP/1.1"
                ],
                "piece {piece}"
            );
            assert!(!scanner.is_opaque());
        }
    }

    #[test]
    fn a_stream_that_is_not_http_is_opaque() {
        let mut scanner = RequestScanner::default();
        assert!(scanner.feed(b"\x16\x03\x01 tls hello\r\n\r\n").is_empty());
        assert!(scanner.is_opaque());
        assert!(scanner.feed(b"GET / HTTP/1.1\r\n\r\n").is_empty());
    }

    #[test]
    fn prefixes_match_at_a_boundary() {
        assert!(matches_prefix(
            "GET /v1/keysets HTTP/1.1",
            "GET /v1/keysets"
        ));
        assert!(!matches_prefix("GET /v1/keysets HTTP/1.1", "GET /v1/keys"));
        assert!(matches_prefix("GET /v1/keys/01ab HTTP/1.1", "GET /v1/keys"));
        assert!(matches_prefix("POST /v1/swap HTTP/1.1", "POST /v1/swap"));
        assert!(!matches_prefix("GET /v1/swap HTTP/1.1", "POST /v1/swap"));
    }

    #[tokio::test]
    async fn it_forwards_and_counts() {
        // A tiny upstream answering every request with a fixed response.
        let upstream = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let upstream_port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut scanner = RequestScanner::default();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        for _ in scanner.feed(&buf[..n]) {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await;
                        }
                    }
                });
            }
        });
        let proxy = CountingProxy::start(&loopback_url(upstream_port));
        proxy.hold("GET /slow", Duration::from_millis(50));
        let client = crate::process::loopback_http_client();
        for path in ["/v1/keysets", "/v1/keysets", "/slow", "/v1/info"] {
            let answer = client
                .get(format!("{}{path}", proxy.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.text().await.unwrap(), "ok");
        }
        let answer = client
            .post(format!("{}/v1/swap", proxy.url()))
            .body("{\"inputs\":[]}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
        assert_eq!(proxy.count("GET /v1/keysets"), 2);
        assert_eq!(proxy.count("POST /v1/swap"), 1);
        assert_eq!(proxy.count("GET /slow"), 1);
        assert_eq!(proxy.requests().len(), 5);
        assert_eq!(proxy.unreadable(), 0);
    }
}
