//! Shared by the verifier's end-to-end tests (`verifier_*.rs`): their config
//! and small helpers to ask the verifier's `/auth` (the process itself is
//! `paygress_tests::verifier`).

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use paygress_tests::TestMint;
use serde_json::Value;

pub use paygress_tests::verifier::{
    paygress_bin, paygress_ok, run_paygress, Verifier, MINT_TIMEOUT_MS, READY_TIMEOUT,
};

pub use paygress_tests::fixture::{config, DEFAULT_PRICE, PREMIUM, PREMIUM_PLUS};

pub use paygress_tests::http::Answer;

/// `GET url` with these headers (raw bytes allowed).
pub async fn get(url: &str, headers: &[(&str, &[u8])]) -> Answer {
    paygress_tests::http::send("GET", url, headers, None).await
}

/// `GET url` with these headers; `Err` when no answer came (the connection
/// was refused or broke: a verifier killed mid-request, say).
pub async fn try_get(url: &str, headers: &[(&str, &[u8])]) -> Result<Answer, String> {
    paygress_tests::http::try_send("GET", url, headers, None).await
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
