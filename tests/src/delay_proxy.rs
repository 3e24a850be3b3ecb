//! A TCP proxy on loopback that can hold back what the server behind it
//! answers: a slow mint, made from a real one.
//!
//! [`DelayProxy`] accepts connections, opens one to the upstream port for
//! each, and forwards bytes both ways. Requests pass at once; each chunk of
//! the upstream's answer waits the response delay (switchable at any time,
//! also for chunks already waiting: lowering it releases them) before it is
//! forwarded. So a request reaches the server and is acted on, and only its
//! answer is late, as when a mint is slow to answer a swap it has made.
//!
//! The proxy runs on its own thread and runtime, so it keeps forwarding
//! while the test blocks (waiting for a process, say). It stops, with every
//! connection, on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ports::loopback_url;
use crate::proxy::ProxyThread;

/// A delaying proxy in front of `127.0.0.1:<upstream>`, stopped on drop.
#[derive(Debug)]
pub struct DelayProxy {
    upstream: u16,
    shared: Arc<Shared>,
    proxy: ProxyThread,
}

#[derive(Debug)]
struct Shared {
    /// The current response delay.
    delay: watch::Sender<Duration>,
    /// Answer chunks waiting now.
    held: AtomicUsize,
    /// Answer chunks that have waited, ever.
    delayed: AtomicUsize,
}

impl DelayProxy {
    /// Starts a proxy on a free loopback port in front of
    /// `127.0.0.1:<upstream>`, without delay.
    pub fn start(upstream: u16) -> Self {
        let shared = Arc::new(Shared {
            delay: watch::Sender::new(Duration::ZERO),
            held: AtomicUsize::new(0),
            delayed: AtomicUsize::new(0),
        });
        let relay_shared = shared.clone();
        let proxy = ProxyThread::start(
            "delay-proxy",
            SocketAddr::from((Ipv4Addr::LOCALHOST, upstream)),
            move |client, server| connection(client, server, relay_shared.clone()),
        );
        Self {
            upstream,
            shared,
            proxy,
        }
    }

    /// `http://127.0.0.1:<port>`: the address to give clients instead of the
    /// upstream's.
    pub fn url(&self) -> String {
        loopback_url(self.proxy.port())
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.proxy.port()
    }

    /// The upstream port.
    pub fn upstream(&self) -> u16 {
        self.upstream
    }

    /// Sets how long each chunk of an answer waits before it is forwarded.
    /// Chunks waiting already wait the new delay from their arrival (so
    /// `Duration::ZERO` releases them all).
    pub fn set_response_delay(&self, delay: Duration) {
        self.shared.delay.send_replace(delay);
    }

    /// The current response delay.
    pub fn response_delay(&self) -> Duration {
        *self.shared.delay.borrow()
    }

    /// How many answer chunks are waiting now (one at most per connection).
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// How many answer chunks have been delayed since the start.
    pub fn delayed(&self) -> usize {
        self.shared.delayed.load(Ordering::SeqCst)
    }

    /// How many connections the proxy has accepted since the start.
    pub fn accepted(&self) -> usize {
        self.proxy.accepted()
    }
}

/// One client connection and its connection upstream: requests pass at
/// once, answers after the delay.
async fn connection(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_read, client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let requests = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let answers = delayed_copy(server_read, client_write, shared);
    tokio::join!(requests, answers);
}

/// Copies the upstream's answers to the client, each chunk after the delay.
async fn delayed_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: Arc<Shared>) {
    let mut delay = shared.delay.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let arrived = Instant::now();
        if !delay.borrow_and_update().is_zero() {
            let _held = Held::new(&shared);
            hold(arrived, &mut delay).await;
        }
        let Some(chunk) = buf.get(..n) else { break };
        if to.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Waits until the chunk that arrived at `arrived` has waited the current
/// delay, following changes of the delay.
async fn hold(arrived: Instant, delay: &mut watch::Receiver<Duration>) {
    loop {
        let until = arrived + *delay.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep_until(until) => return,
            changed = delay.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(until).await;
                    return;
                }
            }
        }
    }
}

/// Counts a chunk as held while it lives.
struct Held<'a>(&'a Shared);

impl<'a> Held<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.delayed.fetch_add(1, Ordering::SeqCst);
        shared.held.fetch_add(1, Ordering::SeqCst);
        Held(shared)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener as StdListener;
    use tokio::net::TcpListener;

    /// An upstream that echoes every connection's bytes.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    }

    #[tokio::test]
    async fn answers_are_held_until_the_delay_is_lifted() {
        let proxy = DelayProxy::start(echo_server().await);
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .unwrap();
        assert_eq!(round_trip(&mut stream, b"first").await, b"first");
        assert_eq!((proxy.held(), proxy.delayed()), (0, 0));

        // An hour's delay: the answer waits until the delay is lifted.
        proxy.set_response_delay(Duration::from_secs(3600));
        let mut waiting = tokio::spawn(async move {
            let back = round_trip(&mut stream, b"second").await;
            (stream, back)
        });
        while proxy.held() == 0 {
            tokio::select! {
                _ = &mut waiting => panic!("the answer was not held"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        proxy.set_response_delay(Duration::ZERO);
        let (mut stream, back) = waiting.await.unwrap();
        assert_eq!(back, b"second");
        assert_eq!((proxy.held(), proxy.delayed(), proxy.accepted()), (0, 1, 1));
        assert_eq!(round_trip(&mut stream, b"third").await, b"third");
    }

    #[tokio::test]
    async fn a_stopped_upstream_closes_the_client_connection() {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let proxy = DelayProxy::start(port);
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        let read = stream.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
