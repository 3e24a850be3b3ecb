//! Shared by the verifier's end-to-end tests (`verifier_*.rs`): their config
//! and small helpers to ask the verifier's `/auth` (the process itself is
//! `paygress_tests::verifier`).

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use paygress_tests::process::loopback_http_client;
use paygress_tests::TestMint;
use serde_json::{json, Value};

pub use paygress_tests::verifier::{
    paygress_bin, paygress_ok, run_paygress, Verifier, MINT_TIMEOUT_MS, READY_TIMEOUT,
};

/// Prices of the test config.
pub const DEFAULT_PRICE: u64 = 100;
pub const PREMIUM: u64 = 64;
pub const PREMIUM_PLUS: u64 = 128;

/// The test config for one accepted mint.
pub fn config(mint_url: &str) -> Value {
    json!({
        "unit": "sat",
        "mints": [mint_url],
        "default_amount": DEFAULT_PRICE,
        "free_paths": ["/free"],
        "tiers": [
            { "id": "premium-plus", "path_prefix": "/premium-plus", "amount": PREMIUM_PLUS },
            { "id": "premium", "path_prefix": "/premium", "amount": PREMIUM }
        ]
    })
}

/// An answer of the verifier.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {:?}", self.body))
    }

    /// The refusal code of a 4xx/5xx JSON body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }

    /// Asserts a refusal with this status and code.
    pub fn assert_refused(&self, status: u16, code: &str) {
        // Not `code()`: an answer without a JSON body (a 200) must fail
        // this assertion with the answer, not a parse error.
        let found = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        assert_eq!(
            (self.status, found.as_str()),
            (status, code),
            "unexpected answer: {self:?}"
        );
    }

    /// Asserts a refusal with this status and code that says when to try
    /// again (`Retry-After` in whole seconds); returns those seconds.
    pub fn assert_retry_later(&self, status: u16, code: &str) -> u64 {
        self.assert_refused(status, code);
        self.header("retry-after")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After in seconds: {self:?}"))
    }

    /// Asserts a paid 200 and returns the amount received.
    pub fn assert_paid(&self) -> u64 {
        assert_eq!(self.status, 200, "not a 200: {self:?}");
        assert_eq!(self.header("x-payment-verified"), Some("true"), "{self:?}");
        let user = self.header("x-user-id").unwrap_or_default();
        assert_eq!(user.len(), 16, "X-User-ID: {self:?}");
        self.header("x-payment-amount")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Payment-Amount: {self:?}"))
    }
}

/// `GET url` with these headers (raw bytes allowed).
pub async fn get(url: &str, headers: &[(&str, &[u8])]) -> Answer {
    try_get(url, headers)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

/// `GET url` with these headers; `Err` when no answer came (the connection
/// was refused or broke: a verifier killed mid-request, say).
pub async fn try_get(url: &str, headers: &[(&str, &[u8])]) -> Result<Answer, String> {
    let client = loopback_http_client();
    let mut request = client.get(url);
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value)
            .unwrap_or_else(|err| panic!("header {name}: {err}"));
        request = request.header(*name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|err| format!("GET {url}: {err}"))?;
    Ok(Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response
            .text()
            .await
            .map_err(|err| format!("GET {url}: reading the body: {err}"))?,
    })
}

/// `GET url` with `X-Cashu: token`.
pub async fn pay(url: &str, token: &str) -> Answer {
    get(url, &[("x-cashu", token.as_bytes())]).await
}

/// `GET url` with `X-Cashu: token` and `X-Paygress-Deadline-Ms: deadline_ms`
/// (what the filter sends: its callout timeout).
pub async fn pay_within(url: &str, token: &str, deadline_ms: u64) -> Answer {
    let deadline = deadline_ms.to_string();
    get(
        url,
        &[
            ("x-cashu", token.as_bytes()),
            ("x-paygress-deadline-ms", deadline.as_bytes()),
        ],
    )
    .await
}

/// Starts a fee-less mint (the most common stack).
pub async fn mint() -> TestMint {
    TestMint::start(paygress_tests::MintOptions::default()).await
}

/// The stdout of a finished command, for messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses `paygress wallet balance` output: the balance at `mint`.
pub fn balance_at(balance_json: &str, mint: &str) -> u64 {
    let v: Value = serde_json::from_str(balance_json)
        .unwrap_or_else(|err| panic!("balance is not JSON ({err}): {balance_json}"));
    v["mints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mint"] == mint && m["unit"] == "sat")
        .filter_map(|m| m["balance"].as_u64())
        .sum()
}

/// Parses `paygress wallet balance` output: what is pending at `mint`
/// (inputs of unfinished redemptions).
pub fn pending_at(balance_json: &str, mint: &str) -> u64 {
    let v: Value = serde_json::from_str(balance_json)
        .unwrap_or_else(|err| panic!("balance is not JSON ({err}): {balance_json}"));
    v["mints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mint"] == mint && m["unit"] == "sat")
        .filter_map(|m| m["pending"].as_u64())
        .sum()
}

/// `paygress wallet balance --data-dir DIR` of a verifier.
pub fn wallet_balance(v: &Verifier) -> String {
    paygress_ok(&["wallet", "balance", "--data-dir", &v.data_dir_str()])
}

/// Whether a path exists (for messages).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
