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

/// The config (the verifier's file, the filter's plugin configuration
/// without its `verifier` and `failure_mode`) for one accepted mint:
/// `/free` and `/healthz` free, the tiers above, anything else
/// [`DEFAULT_PRICE`]. The shorter prefix is listed first, so that a wrong
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
            { "id": "reports-annual", "path_prefix": "/reports/annual", "amount": REPORTS_ANNUAL }
        ]
    })
}
