//! A proxy-wasm filter that does nothing: every request and every answer
//! continues untouched. The benchmark (`scripts/bench.sh envoy`) loads it in
//! Envoy as the floor of any Rust wasm filter on the same SDK (VM entry, one
//! HTTP context per request, the host calls of an empty stream), so that the
//! cost of paygress-filter's free path can be split into what any wasm
//! filter costs and what its own code adds.
//!
//! Build: `cargo build -p paygress-filter --example noop_filter --target
//! wasm32-wasip1 --profile wasm-release` →
//! `target/wasm32-wasip1/wasm-release/examples/noop_filter.wasm`.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

/// One per request; answers `Continue` to every callback (the trait's
/// defaults, spelled out for the request headers).
#[derive(Debug)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

/// Registers the HTTP context; the SDK supplies a root context that accepts
/// any configuration. Compiled natively too (clippy checks it); only the
/// wasm build calls it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn start() {
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> {
        Box::new(Noop)
    });
}

/// The VM's entry point (`_initialize`), exported only in the wasm build.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // `proxy_wasm::main!` exports a `#[no_mangle]` function.
mod entry {
    proxy_wasm::main! {{
        crate::start();
    }}
}
