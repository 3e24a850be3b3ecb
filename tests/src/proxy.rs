//! The plumbing the test proxies share: a loopback listener on a free port,
//! served on a thread and runtime of its own (so it keeps forwarding while a
//! test blocks), one connection to the upstream per client connection, and
//! a stop, with every connection, on drop. What passes between the two
//! connections is the caller's `relay`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running proxy's listener and thread, stopped on drop.
#[derive(Debug)]
pub(crate) struct ProxyThread {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyThread {
    /// Listens on a free loopback port; for each client connection, connects
    /// to `upstream` and runs `relay(client, server)`. A client whose
    /// upstream cannot be reached sees its connection closed, as a stopped
    /// server's would be. `name` names the thread and the panics.
    pub(crate) fn start<F, Fut>(name: &str, upstream: SocketAddr, relay: F) -> Self
    where
        F: Fn(TcpStream, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|err| panic!("{name}: cannot bind a loopback port: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("{name}: cannot read its port: {err}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|err| panic!("{name}: cannot make the listener async: {err}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let thread_accepted = accepted.clone();
        let thread_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|err| panic!("{thread_name}: no runtime: {err}"));
                runtime.block_on(serve(
                    &thread_name,
                    listener,
                    upstream,
                    thread_accepted,
                    Arc::new(relay),
                    stopped,
                ));
                runtime.shutdown_background();
            })
            .unwrap_or_else(|err| panic!("{name}: cannot start its thread: {err}"));
        ProxyThread {
            port,
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// How many client connections it has accepted since the start.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ProxyThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve<F, Fut>(
    name: &str,
    listener: StdListener,
    upstream: SocketAddr,
    accepted: Arc<AtomicUsize>,
    relay: Arc<F>,
    mut stopped: oneshot::Receiver<()>,
) where
    F: Fn(TcpStream, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::from_std(listener)
        .unwrap_or_else(|err| panic!("{name}: cannot register the listener: {err}"));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted_now = listener.accept() => {
                let Ok((client, _)) = accepted_now else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let relay = relay.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    relay(client, server).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}
