//! Free loopback ports for the processes a test starts.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports already handed out in this test process, so that two tests running
/// in parallel never get the same one (the kernel may hand a port that was
/// just released straight back).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now and that this
/// test process has not handed out before.
///
/// The port is released before it is returned, so the program the test
/// starts can bind it; another process could take it in between, which is
/// unlikely on loopback with ephemeral ports.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("cannot read a bound port: {err}"))
            .port();
        drop(listener);
        let mut ports = handed_out()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ports.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found after 1000 tries")
}

/// `http://127.0.0.1:<port>`
pub fn loopback_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports.iter().take(5) {
            TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).expect("port is free");
        }
    }
}
