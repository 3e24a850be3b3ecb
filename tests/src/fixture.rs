//! The one fixture every end-to-end test prices against: one tier table,
//! one set of prices. Small amounts, so that tokens are cheap to mint, and
//! distinct, so that a request priced by the wrong tier shows.

use serde_json::{json, Value};

/// The price of a paid path that no tier matches (`default_amount`).
pub const DEFAULT_PRICE: u64 = 32;
/// The price of `/premium` (tier `premium`).
pub const PREMIUM: u64 = 64;
/// The price of `/premium-plus` (tier `premium-plus`).
pub const PREMIUM_PLUS: u64 = 128;
/// The price of `/reports/annual` (tier `reports-annual`): above the
/// `X-Required-Amount: 2000` that `nginx/paygress.conf.template` asks under
/// `/reports/`, so that the verifier's own price stands there.
pub const REPORTS_ANNUAL: u64 = 5000;

/// The price of a lease of `/compute` (tier `compute`): it buys
/// [`COMPUTE_LEASE_SECONDS`].
pub const COMPUTE: u64 = 16;
/// What [`COMPUTE`] buys on `/compute`.
pub const COMPUTE_LEASE_SECONDS: u64 = 3600;

/// The environment variable that holds the signing pass key, for the
/// verifier and for Envoy (`vm_config.environment_variables`); every
/// process the harness starts gets it.
pub const PASS_KEY_ENV: &str = "PAYGRESS_PASS_KEY";
/// The signing key's id and secret (base64 of 32 bytes).
pub const PASS_KEY_ID: &str = "k2";
pub const PASS_KEY_SECRET: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// An older key, still accepted (the rotation in progress).
pub const OLD_PASS_KEY_ID: &str = "k1";
pub const OLD_PASS_KEY_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A key no longer configured: its passes are refused.
pub const RETIRED_PASS_KEY_ID: &str = "k0";
pub const RETIRED_PASS_KEY_SECRET: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

/// A pass key of the fixture, to sign passes as the verifier would (or as
/// a forger would, with the retired key).
pub fn pass_key(id: &str, secret_b64: &str) -> paygress_core::pass::PassKey {
    let keys = paygress_core::lease::compile_keys(
        &[paygress_core::lease::PassKeyConfig {
            id: id.to_string(),
            secret: Some(secret_b64.to_string()),
            secret_env: None,
        }],
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("fixture pass key: {e}"));
    keys.into_iter()
        .next()
        .unwrap_or_else(|| panic!("fixture pass key: none"))
}

/// The config (the verifier's file, the filter's plugin configuration
/// without its `verifier` and `failure_mode`) for one accepted mint:
/// `/free` and `/healthz` free, the tiers above (`/compute` selling a
/// lease), anything else [`DEFAULT_PRICE`]. The shorter prefix is listed first, so that a wrong
/// tier choice (not the longest match) shows.
pub fn config(mint_url: &str) -> Value {
    json!({
        "unit": "sat",
        "mints": [mint_url],
        "default_amount": DEFAULT_PRICE,
        "free_paths": ["/free", "/healthz"],
        "tiers": [
            { "id": "premium", "path_prefix": "/premium", "amount": PREMIUM },
            { "id": "premium-plus", "path_prefix": "/premium-plus", "amount": PREMIUM_PLUS },
            { "id": "reports-annual", "path_prefix": "/reports/annual", "amount": REPORTS_ANNUAL },
            { "id": "compute", "path_prefix": "/compute", "amount": COMPUTE,
              "lease": { "seconds": COMPUTE_LEASE_SECONDS } }
        ],
        // The signing key from the environment, as an operator would give
        // it; the older one inline.
        "pass_keys": [
            { "id": PASS_KEY_ID, "secret_env": PASS_KEY_ENV },
            { "id": OLD_PASS_KEY_ID, "secret": OLD_PASS_KEY_SECRET }
        ]
    })
}
