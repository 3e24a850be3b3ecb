//! Paygress proxy-wasm filter.
