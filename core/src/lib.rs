//! Paygress core: the rules that the proxy-wasm filter and the verifier share.
//!
//! Pure functions only: no I/O, no async, and no panics on any input. The crate
//! builds for the host and for `wasm32-wasip1` / `wasm32-unknown-unknown`.
//!
//! * [`config`] — the configuration schema, its validation and the compiled form.
//! * [`challenge`] — the 402 answer of a price, encoded once per tier.
//! * [`browser`] — `Accept` negotiation and the pages a browser gets: the
//!   402 page (QR code, payment form) and the 400/503 pages, with their CSP.
//! * [`pricing`] — path → [`pricing::Price`], by the tier table.
//! * [`path`] — request-target readings used for pricing.
//! * [`lease`] — lease terms, pass keys, and the arithmetic of buying time.
//! * [`pass`] — signed passes for leases (HMAC-SHA256), checked with no I/O.
//! * [`pass_carrier`] — where a pass comes from in a request, and the cookie.
//! * [`mint_url`] — mint URL normalisation, as cdk does it.
//! * [`token`] — Cashu token decoding (cashuA / cashuB) without crypto.
//! * [`extract`] — where a token comes from in a request's headers.
//! * [`payment_request`] — NUT-18 `creqA` encoding.
//! * [`outcome`] — outcome codes, their HTTP statuses and the JSON bodies.
//! * [`precheck`] — the checks made before anything is redeemed.
//! * [`headers`] — header names, in one place.
//! * [`hmac`] — HMAC-SHA256 (passes) and HMAC-SHA512 (replica seeds).
//! * [`json`], [`cbor`] — small readers and writers with serde_json's and
//!   ciborium's rules for the documents above, so that the filter's `.wasm`
//!   carries neither (see docs/performance.md).

pub mod browser;
pub mod cbor;
pub mod challenge;
pub mod config;
pub mod extract;
pub mod headers;
pub mod hmac;
pub mod json;
pub mod lease;
pub mod mint_url;
pub mod outcome;
pub mod pass;
pub mod pass_cache;
pub mod pass_carrier;
pub mod path;
pub mod payment_request;
pub mod precheck;
pub mod pricing;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod token;

pub use challenge::Challenge;
pub use config::{CompiledConfig, Config, ConfigError, FailureMode};
pub use outcome::{ErrorCode, Rejection};
pub use pricing::Price;
pub use token::{Token, TokenError, TokenLimits};

/// The largest amount a config or a token may carry: 2^53, so that every
/// amount survives a round trip through JSON numbers (IEEE doubles) exactly.
pub const MAX_AMOUNT: u64 = 1 << 53;
