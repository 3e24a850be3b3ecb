//! Paygress proxy-wasm filter: answers 402, refuses bad tokens and checks
//! leases' passes inside the proxy, and redeems good tokens by one HTTP
//! callout to the verifier.
//!
//! * [`decision`] — what to do with a request and with the verifier's answer:
//!   pure Rust over [`paygress_core`], tested natively.
//! * [`metrics`] — the counters and their names in Envoy's stats.
//! * `host` — the proxy-wasm glue (root and HTTP contexts); the only module
//!   that talks to the host.
//!
//! Build: `cargo build -p paygress-filter --target wasm32-wasip1 --profile
//! wasm-release` → `target/wasm32-wasip1/wasm-release/paygress_filter.wasm`.

pub mod decision;
pub mod metrics;

// Compiled natively too (so that clippy and rustc check it); only the wasm
// build calls it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod host;

/// The VM's entry point (`_initialize`), exported only in the wasm build.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // `proxy_wasm::main!` exports a `#[no_mangle]` function.
mod entry {
    proxy_wasm::main! {{
        crate::host::start();
    }}
}
