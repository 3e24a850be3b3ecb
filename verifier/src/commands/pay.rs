//! `paygress pay URL`: a client that pays. Requests URL; on a 402 carrying a
//! NUT-18 payment request in `X-Cashu` (NUT-24), checks what it asks against
//! the payer's limits, picks an accepted mint the wallet holds, sends a
//! cashuB token of the asked amount (plus the mint's input fee, since the
//! request's amount is net of fees) in `X-Cashu` to the URL that answered
//! 402, and retries once. Prints the final status, headers and body.
//!
//! What it refuses, before anything is spent: an amount above
//! `--max-amount` (fees included), another unit than `--unit`, a request
//! without amount, unit or mints (NUT-24 requires all three), a NUT-10
//! locking condition, and a request none of whose mints the wallet holds
//! enough at.
//!
//! Where the token goes: only to the origin (scheme, host, port) that
//! answered 402. Redirects are followed by hand (the client's own policy is
//! `none`): the unpaid request follows them across origins but drops its
//! credential headers when it leaves one; the paid request follows them
//! within the 402's origin only and stops at a redirect to another origin,
//! which is printed, not followed.
//!
//! Leases: a pass an answer hands over (`X-Paygress-Pass`, or the
//! `paygress_pass` cookie) is kept in the data dir's `passes.json` for its
//! origin and cookie path, and sent in `X-Paygress-Pass` to the URLs under
//! that path until it expires. A request carrying a pass that gets 402 is
//! paid as any other, the token going together with the pass: that tops the
//! lease up, and the answer's new pass is kept. A pass is a credential: it
//! is dropped, like the others, at a redirect to another origin.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use cdk::cdk_database::WalletDatabase as _;
use cdk::nuts::{CurrencyUnit, PaymentRequest, State};
use cdk::wallet::SendOptions;
use cdk::Amount;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use thiserror::Error;

use crate::cli::PayOptions;
use crate::commands::lease_cmd::{self, PassStore, PASSES_FILE};
use crate::commands::wallet_cmd::open_wallet;
use crate::ids;
use crate::wallet::{open_store, STORE_FILE};

/// The default of `--max-amount`: 1000 in the wallet's unit (1000 sat by
/// default). It is Paygress's own default price (`default_amount`) and the
/// demo's `/premium` tier, so ordinary paid paths go through, while a
/// hostile or mistaken 402 can take at most that much per run.
pub const DEFAULT_MAX_AMOUNT: u64 = 1000;

/// How many redirects one request follows.
pub const MAX_REDIRECTS: usize = 10;

/// What `pay` got back.
#[derive(Debug)]
pub struct PayOutcome {
    pub status: u16,
    /// Status line, headers, blank line, body.
    pub printed: String,
    /// What left the wallet (the asked amount plus the mint's fees), if a
    /// payment was made.
    pub paid: Option<u64>,
}

/// Why `pay` did not pay, or could not get an answer. Every refusal here is
/// decided before anything is spent.
#[derive(Debug, Error)]
pub enum PayError {
    #[error("invalid method {0:?}")]
    Method(String),
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("header {0:?} is not `Name: value`")]
    Header(String),
    #[error("{url} answered 402 without an X-Cashu payment request")]
    NoPaymentRequest { url: String },
    #[error("the X-Cashu payment request cannot be decoded: {0}")]
    BadPaymentRequest(String),
    #[error("the payment request names no amount; nothing was paid")]
    NoAmount,
    #[error("the payment request asks for 0; nothing was paid")]
    ZeroAmount,
    #[error("the payment request names no unit (NUT-24 requires one); nothing was paid")]
    NoUnit,
    #[error("the payment request names no mint (NUT-24 requires at least one); nothing was paid")]
    NoMints,
    #[error(
        "the payment request asks for {unit}, but this wallet pays in {wallet_unit}; \
         nothing was paid (choose the unit with --unit)"
    )]
    UnitMismatch { unit: String, wallet_unit: String },
    #[error(
        "the payment request asks for proofs locked by a NUT-10 condition, which `paygress pay` \
         cannot make; nothing was paid"
    )]
    LockingCondition,
    #[error(
        "the 402 asks {asked} {unit}, more than the limit of {limit} {unit}; nothing was paid \
         (raise the limit with --max-amount or PAYGRESS_PAY_MAX_AMOUNT)"
    )]
    OverLimit {
        asked: u64,
        unit: String,
        limit: u64,
    },
    #[error(
        "the 402 asks {asked} {unit}, and with the mint's fee of {fee} {unit} the payment would \
         take {total} {unit}, more than the limit of {limit} {unit}; nothing was paid \
         (raise the limit with --max-amount or PAYGRESS_PAY_MAX_AMOUNT)"
    )]
    OverLimitWithFee {
        asked: u64,
        fee: u64,
        total: u64,
        unit: String,
        limit: u64,
    },
    #[error("no wallet in {0}; fund one with `paygress wallet fund`")]
    NoWallet(String),
    #[error(
        "none of the mints the 402 accepts ({accepted}) is one this wallet holds {unit} at \
         (it holds: {held}); nothing was paid"
    )]
    NoAcceptedMint {
        accepted: String,
        unit: String,
        held: String,
    },
    #[error(
        "the 402 asks {asked} {unit}, but this wallet holds only {held} at the accepted mints \
         ({accepted}); nothing was paid"
    )]
    InsufficientFunds {
        asked: u64,
        unit: String,
        held: String,
        accepted: String,
    },
    #[error("{url} redirects to {location:?}, which is not an http(s) URL")]
    BadRedirect { url: String, location: String },
    #[error("more than {MAX_REDIRECTS} redirects from {0}")]
    TooManyRedirects(String),
}

/// Runs `pay`: requests `url` with `method` and `options.headers`; on 402,
/// pays within `options`' limits from the wallet in `data_dir`.
pub async fn pay(
    url: &str,
    data_dir: &Path,
    method: &str,
    options: &PayOptions,
) -> Result<PayOutcome> {
    // Redirects are followed by hand (`send_following`), so that a token or
    // a credential never follows one to another origin.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let method = Method::from_str(&method.to_ascii_uppercase())
        .map_err(|_| PayError::Method(method.to_string()))?;
    let mut headers = parse_headers(&options.headers)?;
    let start = Url::parse(url).map_err(|e| PayError::Url {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let wallet_unit = canonical_unit(&options.unit);
    // A pass given with -H is used as it is; else a kept one, if any.
    let mut kept = None;
    if !presents_pass(&headers) {
        if let Some((value, message)) = kept_pass_for(data_dir, &start) {
            eprintln!("{message}");
            headers.insert(X_PAYGRESS_PASS, value.clone());
            kept = Some(value);
        }
    }

    let first = send_following(
        &client,
        method,
        start,
        headers,
        CrossOrigin::DropCredentials,
    )
    .await
    .with_context(|| format!("requesting {url}"))?;
    if let Some(value) = kept {
        if first.response.status() == StatusCode::BAD_REQUEST {
            // A kept pass under a key the gateway retired is refused as
            // pass_invalid: forget it and ask again without it. (Any other
            // 400 is printed as it came.)
            let status = first.response.status();
            let answer_headers = first.response.headers().clone();
            let body = first.response.text().await.context("reading the body")?;
            if body_code(&body).as_deref() != Some("pass_invalid") {
                return Ok(render(status, &answer_headers, &body, None));
            }
            // Forgotten, and nothing spent: a gateway that refuses a pass its
            // own verifier handed out (a key it lacks) would otherwise sell
            // a new lease on every run.
            forget_pass(data_dir, &String::from_utf8_lossy(value.as_bytes()));
            eprintln!(
                "paygress pay: the gateway refused the kept pass as invalid (pass_invalid): it \
                 is forgotten and nothing was paid; run again to buy a new lease (if a pass \
                 it just sold is refused, the proxy lacks the verifier's pass key)"
            );
            return Ok(render(status, &answer_headers, &body, None));
        }
    }
    keep_pass(data_dir, &first.url, first.response.headers());
    if first.response.status() != StatusCode::PAYMENT_REQUIRED {
        return print(first.response, None).await;
    }
    // The origin that asked for the payment, and the headers as they
    // reached it (credentials already dropped if a redirect left the URL's
    // origin): the paid request goes there, and only there.
    let payee = first.url.clone();
    let creq = first
        .response
        .headers()
        .get("x-cashu")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| PayError::NoPaymentRequest {
            url: payee.to_string(),
        })?
        .to_string();
    let asked = check_request(&creq, &wallet_unit, options.max_amount)?;
    if let Some(pass) = first.headers.get(X_PAYGRESS_PASS) {
        // The paid request carries the same pass (`first.headers`): the
        // payment tops its lease up instead of buying a new one.
        let lease = lease_cmd::lease_of(&String::from_utf8_lossy(pass.as_bytes()));
        eprintln!(
            "paygress pay: the pass for lease {lease} was not accepted (402); paying, with the \
             pass, to top the lease up"
        );
    }

    let mint = pick_mint(data_dir, &asked.mints, &wallet_unit, asked.amount).await?;
    let wallet = open_wallet(data_dir, &mint, &wallet_unit, false).await?;
    let send = SendOptions {
        include_fee: true,
        ..SendOptions::default()
    };
    let prepared = wallet
        .wallet
        .prepare_send(Amount::from(asked.amount), send)
        .await
        .with_context(|| format!("cannot send {} from {mint}", asked.amount))?;
    let fee = u64::from(prepared.fee());
    let total = asked.amount.saturating_add(fee);
    if total > options.max_amount {
        prepared
            .cancel()
            .await
            .context("releasing the proofs of the refused payment")?;
        return Err(PayError::OverLimitWithFee {
            asked: asked.amount,
            fee,
            total,
            unit: wallet_unit,
            limit: options.max_amount,
        }
        .into());
    }
    let token = prepared
        .confirm(None)
        .await
        .context("confirming the send")?
        .to_string();
    eprintln!(
        "paygress pay: paying {} {wallet_unit} (fee {fee}) from {mint} to {} (token {})",
        asked.amount,
        origin_of(&payee),
        ids::log_id_of_str(&token)
    );
    let mut retry_headers = first.headers;
    retry_headers.insert(
        HeaderName::from_static("x-cashu"),
        HeaderValue::from_str(&token).context("the token is not a header value")?,
    );
    let second = send_following(
        &client,
        first.method,
        payee,
        retry_headers,
        CrossOrigin::Stop,
    )
    .await;
    match second {
        Ok(answer) => {
            keep_pass(data_dir, &answer.url, answer.response.headers());
            let ok = answer.response.status().is_success();
            if let Some(to) = &answer.stopped_at {
                eprintln!(
                    "paygress pay: not following the redirect to {to}: the token goes only to {}, \
                     which asked for it",
                    origin_of(&answer.url)
                );
            }
            let outcome = print(answer.response, Some(total)).await?;
            if !ok {
                eprintln!(
                    "paygress pay: the payment was refused; if the token was not redeemed, \
                     it is still yours:\n{token}"
                );
            }
            Ok(outcome)
        }
        Err(e) => {
            eprintln!(
                "paygress pay: the paid request failed ({e:#}); the token, which may still be \
                 yours:\n{token}"
            );
            Err(e)
        }
    }
}

/// The header a pass is presented in.
const X_PAYGRESS_PASS: HeaderName =
    HeaderName::from_static(paygress_core::headers::X_PAYGRESS_PASS);

/// Whether the request headers already present a pass, in any carrier
/// the proxy reads (`X-Paygress-Pass`, `Authorization: Bearer p1.…`, the
/// `paygress_pass` cookie).
fn presents_pass(headers: &HeaderMap) -> bool {
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    headers.contains_key(X_PAYGRESS_PASS)
        || headers
            .get_all(AUTHORIZATION)
            .iter()
            .any(|v| paygress_core::pass_carrier::bearer_pass(&text(v)).is_some())
        || headers
            .get_all(COOKIE)
            .iter()
            .any(|v| paygress_core::pass_carrier::cookie_pass(&text(v)).is_some())
}

/// The kept pass for `url`, as a header value, and the line saying so.
fn kept_pass_for(data_dir: &Path, url: &Url) -> Option<(HeaderValue, String)> {
    let store = match PassStore::load(data_dir) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("paygress pay: no kept pass used: {e}");
            return None;
        }
    };
    let now = lease_cmd::unix_now();
    let kept = store.find(url, now)?;
    let value = HeaderValue::from_str(&kept.pass).ok()?;
    let message = format!(
        "paygress pay: using the pass for lease {}, {} left",
        kept.lease,
        lease_cmd::duration_words(kept.expires_at.saturating_sub(now))
    );
    Some((value, message))
}

/// Keeps the pass an answer from `url` hands over, if any, in the data
/// dir's pass store, replacing the one kept for the same origin and path.
/// A failure is said on stderr and does not fail the command.
fn keep_pass(data_dir: &Path, url: &Url, headers: &HeaderMap) {
    let entry = match lease_cmd::pass_from_answer(url, headers) {
        Ok(Some(entry)) => entry,
        Ok(None) => return,
        Err(e) => {
            eprintln!(
                "paygress pay: the pass {} handed over is not kept: {e}",
                origin_of(url)
            );
            return;
        }
    };
    let now = lease_cmd::unix_now();
    if entry.expires_at <= now {
        eprintln!(
            "paygress pay: the pass for lease {} is not kept: it has expired",
            entry.lease
        );
        return;
    }
    // Read again: another run may have kept a pass meanwhile.
    let mut store = PassStore::load(data_dir).unwrap_or_else(|e| {
        eprintln!("paygress pay: replacing {PASSES_FILE}, which cannot be used: {e}");
        PassStore::default()
    });
    let said = format!(
        "paygress pay: stored a new pass for lease {}, {} left (for {}{})",
        entry.lease,
        lease_cmd::duration_words(entry.expires_at - now),
        entry.origin,
        entry.path
    );
    if !store.insert(entry) {
        return;
    }
    match store.save(data_dir, now) {
        Ok(()) => eprintln!("{said}"),
        Err(e) => eprintln!("paygress pay: the new pass is not kept: {e}"),
    }
}

/// What a payment request asks, once checked against the payer's limits.
#[derive(Debug)]
struct Asked {
    amount: u64,
    /// The accepted mints, normalised; never empty.
    mints: Vec<String>,
}

/// Decodes `creq` and refuses what this wallet must not pay: no amount, no
/// unit or another one than `wallet_unit`, no mint, a locking condition, or
/// more than `max_amount`.
fn check_request(creq: &str, wallet_unit: &str, max_amount: u64) -> Result<Asked, PayError> {
    let request = PaymentRequest::from_str(creq.trim())
        .map_err(|e| PayError::BadPaymentRequest(e.to_string()))?;
    let amount = request.amount.map(u64::from).ok_or(PayError::NoAmount)?;
    let unit = request.unit.as_ref().ok_or(PayError::NoUnit)?.to_string();
    if unit != wallet_unit {
        return Err(PayError::UnitMismatch {
            unit,
            wallet_unit: wallet_unit.to_string(),
        });
    }
    if request.nut10.is_some() {
        return Err(PayError::LockingCondition);
    }
    if amount == 0 {
        return Err(PayError::ZeroAmount);
    }
    if amount > max_amount {
        return Err(PayError::OverLimit {
            asked: amount,
            unit,
            limit: max_amount,
        });
    }
    let mut mints: Vec<String> = Vec::new();
    for m in &request.mints {
        if let Ok(m) = paygress_core::mint_url::normalize(&m.to_string()) {
            if !mints.contains(&m) {
                mints.push(m);
            }
        }
    }
    if mints.is_empty() {
        return Err(PayError::NoMints);
    }
    Ok(Asked { amount, mints })
}

/// A unit as cdk writes it (lower case), for comparisons.
fn canonical_unit(unit: &str) -> String {
    match CurrencyUnit::from_str(unit) {
        Ok(u) => u.to_string(),
        Err(_) => unit.trim().to_ascii_lowercase(),
    }
}

/// The first accepted mint (in the request's order) whose unspent balance
/// in the wallet covers the amount.
async fn pick_mint(
    data_dir: &Path,
    accepted: &[String],
    unit: &str,
    amount: u64,
) -> Result<String> {
    if !data_dir.join(STORE_FILE).exists() {
        return Err(PayError::NoWallet(data_dir.display().to_string()).into());
    }
    let store = open_store(data_dir).await?;
    let proofs = store
        .get_proofs(None, None, Some(vec![State::Unspent]), None)
        .await
        .context("reading the wallet")?;
    let mut balances: Vec<(String, u64)> = Vec::new();
    for p in proofs.iter().filter(|p| p.unit.to_string() == unit) {
        let Ok(mint) = paygress_core::mint_url::normalize(&p.mint_url.to_string()) else {
            continue;
        };
        let amount = u64::from(p.proof.amount);
        match balances.iter_mut().find(|(m, _)| *m == mint) {
            Some((_, b)) => *b = b.saturating_add(amount),
            None => balances.push((mint, amount)),
        }
    }
    let candidates: Vec<&(String, u64)> = accepted
        .iter()
        .filter_map(|a| balances.iter().find(|(m, _)| m == a))
        .collect();
    let list = |items: &[&(String, u64)]| {
        if items.is_empty() {
            "nothing".to_string()
        } else {
            items
                .iter()
                .map(|(m, b)| format!("{b} at {m}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if candidates.is_empty() {
        return Err(PayError::NoAcceptedMint {
            accepted: accepted.join(", "),
            unit: unit.to_string(),
            held: list(&balances.iter().collect::<Vec<_>>()),
        }
        .into());
    }
    match candidates.iter().find(|(_, b)| *b >= amount) {
        Some((m, _)) => Ok(m.clone()),
        None => Err(PayError::InsufficientFunds {
            asked: amount,
            unit: unit.to_string(),
            held: list(&candidates),
            accepted: accepted.join(", "),
        }
        .into()),
    }
}

/// What to do with a redirect to another origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrossOrigin {
    /// Follow it without the credential headers (the unpaid request).
    DropCredentials,
    /// Do not follow it: the answer is the redirect (the paid request).
    Stop,
}

/// The last answer of a request and its redirects.
#[derive(Debug)]
struct Followed {
    response: reqwest::Response,
    /// The URL that gave `response`.
    url: Url,
    /// The method and headers the last request was sent with.
    method: Method,
    headers: HeaderMap,
    /// The origin of a redirect not followed ([`CrossOrigin::Stop`]).
    stopped_at: Option<String>,
}

/// Sends the request and follows up to [`MAX_REDIRECTS`] redirects, never
/// carrying a credential header to another origin than the one it was
/// given for.
async fn send_following(
    client: &reqwest::Client,
    mut method: Method,
    mut url: Url,
    mut headers: HeaderMap,
    cross_origin: CrossOrigin,
) -> Result<Followed> {
    let mut hops = 0;
    loop {
        let response = client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .send()
            .await
            .with_context(|| format!("requesting {url}"))?;
        let status = response.status();
        let is_redirect = matches!(
            status,
            StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT
        );
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let (true, Some(location)) = (is_redirect, location) else {
            return Ok(Followed {
                response,
                url,
                method,
                headers,
                stopped_at: None,
            });
        };
        let next = url
            .join(location.trim())
            .ok()
            .filter(|n| matches!(n.scheme(), "http" | "https"))
            .ok_or_else(|| PayError::BadRedirect {
                url: url.to_string(),
                location: location.clone(),
            })?;
        if next.origin() != url.origin() {
            match cross_origin {
                CrossOrigin::Stop => {
                    return Ok(Followed {
                        response,
                        stopped_at: Some(origin_of(&next)),
                        url,
                        method,
                        headers,
                    })
                }
                CrossOrigin::DropCredentials => drop_credentials(&mut headers),
            }
        }
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(PayError::TooManyRedirects(url.to_string()).into());
        }
        // As browsers and reqwest do: 303 always, and 301/302 after a POST,
        // become a GET (there is never a body to carry here).
        let to_get = (status == StatusCode::SEE_OTHER && method != Method::HEAD)
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && method == Method::POST);
        if to_get {
            method = Method::GET;
        }
        url = next;
    }
}

/// Removes the headers that must not reach another origin: credentials,
/// and anything carrying a Cashu token.
fn drop_credentials(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .iter()
        .filter(|(name, value)| is_credential(name, value))
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

fn is_credential(name: &HeaderName, value: &HeaderValue) -> bool {
    const NAMES: [&str; 5] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-cashu",
        paygress_core::headers::X_PAYGRESS_PASS,
    ];
    if NAMES.contains(&name.as_str()) {
        return true;
    }
    let value = String::from_utf8_lossy(value.as_bytes());
    if value
        .split([' ', ',', ';', '='])
        .any(|word| paygress_core::pass_carrier::is_pass_shaped(word.trim()))
    {
        return true;
    }
    let value = value.to_ascii_lowercase();
    value.contains("cashua") || value.contains("cashub")
}

/// `scheme://host[:port]` of a URL, for messages.
fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn parse_headers(extra: &[String]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for h in extra {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| PayError::Header(h.clone()))?;
        map.append(
            HeaderName::from_str(name.trim()).with_context(|| format!("header name {name:?}"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("header value of {name}"))?,
        );
    }
    Ok(map)
}

async fn print(resp: reqwest::Response, paid: Option<u64>) -> Result<PayOutcome> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.context("reading the body")?;
    Ok(render(status, &headers, &body, paid))
}

/// An answer as `pay` prints it: status line, headers, blank line, body.
fn render(status: StatusCode, headers: &HeaderMap, body: &str, paid: Option<u64>) -> PayOutcome {
    let mut out = format!(
        "HTTP {} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in headers {
        out.push_str(&format!(
            "{}: {}\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out.push('\n');
    out.push_str(body);
    if !body.ends_with('\n') && !body.is_empty() {
        out.push('\n');
    }
    PayOutcome {
        status: status.as_u16(),
        printed: out,
        paid,
    }
}

/// The `code` of a JSON refusal body.
fn body_code(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("code")?.as_str().map(str::to_string)
}

/// Forgets a kept pass; a failure is said on stderr.
fn forget_pass(data_dir: &Path, pass: &str) {
    let result = PassStore::load(data_dir).and_then(|mut store| {
        if store.forget(pass) {
            store.save(data_dir, lease_cmd::unix_now())
        } else {
            Ok(())
        }
    });
    if let Err(e) = result {
        eprintln!("paygress pay: cannot forget the refused pass: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creq(amount: u64, unit: &str, mints: &[&str]) -> String {
        let mints: Vec<String> = mints.iter().map(|m| (*m).to_string()).collect();
        paygress_core::payment_request::encode(amount, unit, &mints).unwrap_or_default()
    }

    #[test]
    fn a_request_over_the_limit_is_refused_naming_both_amounts_and_the_flag() {
        let err = check_request(&creq(1500, "sat", &["http://m"]), "sat", 1000)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("1500 sat") && err.contains("1000 sat") && err.contains("--max-amount"),
            "{err}"
        );
        let ok = check_request(&creq(1000, "sat", &["http://m/"]), "sat", 1000);
        assert_eq!(
            ok.map(|a| (a.amount, a.mints)).ok(),
            Some((1000, vec!["http://m".to_string()]))
        );
    }

    #[test]
    fn another_unit_no_mint_and_nothing_asked_are_refused() {
        assert!(matches!(
            check_request(
                &creq(10, "usd", &["http://m"]),
                &canonical_unit("SAT"),
                1000
            ),
            Err(PayError::UnitMismatch { .. })
        ));
        assert!(check_request(
            &creq(10, "USD", &["http://m"]),
            &canonical_unit("usd"),
            1000
        )
        .is_ok());
        assert!(matches!(
            check_request(&creq(10, "sat", &[]), "sat", 1000),
            Err(PayError::NoMints)
        ));
        assert!(matches!(
            check_request(&creq(0, "sat", &["http://m"]), "sat", 1000),
            Err(PayError::ZeroAmount)
        ));
        assert!(matches!(
            check_request("creqAnotarequest", "sat", 1000),
            Err(PayError::BadPaymentRequest(_))
        ));
    }

    #[test]
    fn credentials_and_tokens_are_dropped_other_headers_kept() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Cashu cashuBxyz"),
            ("proxy-authorization", "Basic abc"),
            ("cookie", "a=b"),
            ("x-cashu", "cashuBxyz"),
            ("x-custom", "carries cashuAabc"),
            ("x-paygress-pass", "p1.k1.e30.c2ln"),
            ("x-other", "session=p1.k1.e30.c2ln"),
            ("x-version", "p1.2"),
            ("accept", "application/json"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        drop_credentials(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-version"]);
    }

    /// Two origins: A sells a pass under /compute (to any request without
    /// one: no payment in this stand-in) and redirects /compute/away to B;
    /// both say whether a request came with a pass.
    async fn pass_servers() -> (String, String) {
        use axum::http::HeaderMap as AxumHeaders;
        use axum::response::{IntoResponse, Redirect, Response};
        use paygress_core::pass::{sign, Claims, PassKey};
        async fn listen(app: axum::Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}")
        }
        fn said(headers: &AxumHeaders) -> String {
            match headers.get("x-paygress-pass") {
                Some(p) => format!("pass {}", String::from_utf8_lossy(p.as_bytes())),
                None => "no pass".to_string(),
            }
        }
        async fn compute(headers: AxumHeaders) -> Response {
            if headers.contains_key("x-paygress-pass") {
                return said(&headers).into_response();
            }
            let claims = Claims {
                lease: "lease1".into(),
                tier: "compute".into(),
                expires_at: lease_cmd::unix_now() + 3_600,
                payer: "payer".into(),
                pod: None,
            };
            let pass = sign(&claims, &PassKey::new("k1", &[7u8; 32]).unwrap());
            (
                [
                    ("x-paygress-pass", pass.clone()),
                    (
                        "set-cookie",
                        paygress_core::pass_carrier::set_cookie(&pass, "/compute", 3_600, false),
                    ),
                ],
                "sold",
            )
                .into_response()
        }
        let b = listen(axum::Router::new().route(
            "/echo",
            axum::routing::get(|h: AxumHeaders| async move { said(&h) }),
        ))
        .await;
        let to_b = format!("{b}/echo");
        let a = listen(
            axum::Router::new()
                .route(
                    "/compute/away",
                    axum::routing::get(move || async move { Redirect::temporary(&to_b) }),
                )
                .route("/compute/{*rest}", axum::routing::get(compute))
                .route(
                    "/computex",
                    axum::routing::get(|h: AxumHeaders| async move { said(&h) }),
                ),
        )
        .await;
        (a, b)
    }

    fn body_of(outcome: &PayOutcome) -> &str {
        outcome
            .printed
            .split_once("\n\n")
            .map_or("", |(_, body)| body.trim())
    }

    #[test]
    fn a_pass_given_in_any_carrier_is_seen() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            presents_pass(&h)
        };
        assert!(with("x-paygress-pass", "p1.k1.e30.c2ln"));
        assert!(with("authorization", "Bearer p1.k1.e30.c2ln"));
        assert!(with("cookie", "a=1; paygress_pass=p1.k1.e30.c2ln"));
        assert!(!with("authorization", "Bearer a.b.c"));
        assert!(!with("cookie", "a=1"));
        assert!(!presents_pass(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_pass_is_kept_and_sent_only_under_its_path_and_origin() {
        use std::os::unix::fs::PermissionsExt;
        let (a, _b) = pass_servers().await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let options = PayOptions {
            headers: vec![],
            max_amount: DEFAULT_MAX_AMOUNT,
            unit: "sat".into(),
        };
        let run = |path: &str| {
            let url = format!("{a}{path}");
            let (data, options) = (data.clone(), options.clone());
            async move { pay(&url, &data, "GET", &options).await.unwrap() }
        };
        let sold = run("/compute/x").await;
        assert_eq!(body_of(&sold), "sold");
        let store = PassStore::load(&data).unwrap();
        assert_eq!(store.passes.len(), 1);
        assert_eq!(store.passes[0].path, "/compute");
        assert_eq!(store.passes[0].origin, a);
        assert_eq!(store.passes[0].lease, "lease1");
        let mode = std::fs::metadata(data.join(PASSES_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pass = store.passes[0].pass.clone();

        let again = run("/compute/y").await;
        assert_eq!(body_of(&again), format!("pass {pass}"));
        assert_eq!(body_of(&run("/computex").await), "no pass");
        // A redirect to another origin leaves the pass behind.
        assert_eq!(body_of(&run("/compute/away").await), "no pass");
        // A pass given with -H is the one sent.
        let mine = PayOptions {
            headers: vec!["X-Paygress-Pass: p1.mine.e30.c2ln".into()],
            ..options.clone()
        };
        let url = format!("{a}/compute/z");
        let out = pay(&url, &data, "GET", &mine).await.unwrap();
        assert_eq!(body_of(&out), "pass p1.mine.e30.c2ln");
        assert_eq!(PassStore::load(&data).unwrap().passes.len(), 1);
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let parse = |u: &str| Url::parse(u).ok().map(|u| u.origin());
        assert_eq!(parse("http://a:80/x"), parse("http://a/y"));
        assert_ne!(parse("http://a/x"), parse("https://a/x"));
        assert_ne!(parse("http://a:8080/"), parse("http://a:8081/"));
        assert_ne!(parse("http://a/"), parse("http://b/"));
    }
}
