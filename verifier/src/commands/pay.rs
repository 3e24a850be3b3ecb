//! `paygress pay URL`: a client that pays. Requests URL; on a 402 carrying a
//! NUT-18 payment request in `X-Cashu`, picks an accepted mint the wallet
//! holds, sends a cashuB token of the asked amount (plus the mint's input
//! fee, since the request's amount is net of fees) in `X-Cashu`, and retries
//! once. Prints the final status, headers and body.

use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use cdk::cdk_database::WalletDatabase as _;
use cdk::nuts::{CurrencyUnit, PaymentRequest, State};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::commands::wallet_cmd::{open_wallet, send_token};
use crate::ids;
use crate::wallet::{open_store, STORE_FILE};

/// What `pay` got back.
#[derive(Debug)]
pub struct PayOutcome {
    pub status: u16,
    /// Status line, headers, blank line, body.
    pub printed: String,
    /// The amount paid (face value of the token sent), if a payment was made.
    pub paid: Option<u64>,
}

/// Runs `pay`.
pub async fn pay(url: &str, data_dir: &Path, method: &str, extra: &[String]) -> Result<PayOutcome> {
    let client = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let method = reqwest::Method::from_str(&method.to_ascii_uppercase())
        .map_err(|_| anyhow!("invalid method {method:?}"))?;
    let headers = parse_headers(extra)?;

    let first = client
        .request(method.clone(), url)
        .headers(headers.clone())
        .send()
        .await
        .with_context(|| format!("requesting {url}"))?;
    if first.status().as_u16() != 402 {
        return print(first, None).await;
    }
    let creq = first
        .headers()
        .get("x-cashu")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("402 without an X-Cashu payment request"))?
        .to_string();
    let request = PaymentRequest::from_str(creq.trim())
        .map_err(|e| anyhow!("the X-Cashu payment request cannot be decoded: {e}"))?;
    let amount = request
        .amount
        .map(u64::from)
        .ok_or_else(|| anyhow!("the payment request names no amount"))?;
    let unit = request
        .unit
        .clone()
        .unwrap_or(CurrencyUnit::Sat)
        .to_string();
    let accepted: Vec<String> = request
        .mints
        .iter()
        .filter_map(|m| paygress_core::mint_url::normalize(&m.to_string()).ok())
        .collect();

    let mint = pick_mint(data_dir, &accepted, &unit, amount).await?;
    let wallet = open_wallet(data_dir, &mint, &unit, false).await?;
    let token = send_token(&wallet, amount, true).await?;
    eprintln!(
        "paygress pay: paying {amount} {unit} from {mint} (token {})",
        ids::log_id_of_str(&token)
    );
    let mut retry_headers = headers;
    retry_headers.insert(
        HeaderName::from_static("x-cashu"),
        HeaderValue::from_str(&token).context("the token is not a header value")?,
    );
    let second = client
        .request(method, url)
        .headers(retry_headers)
        .send()
        .await;
    match second {
        Ok(resp) => {
            let ok = resp.status().is_success();
            let outcome = print(resp, Some(amount)).await?;
            if !ok {
                eprintln!(
                    "paygress pay: the payment was refused; if the token was not redeemed, \
                     it is still yours:\n{token}"
                );
            }
            Ok(outcome)
        }
        Err(e) => {
            eprintln!("paygress pay: the paid request failed ({e}); the token, which may still be yours:\n{token}");
            Err(e.into())
        }
    }
}

/// The first accepted mint (in the request's order) whose unspent balance
/// in the wallet covers the amount; any mint when the request names none.
async fn pick_mint(
    data_dir: &Path,
    accepted: &[String],
    unit: &str,
    amount: u64,
) -> Result<String> {
    if !data_dir.join(STORE_FILE).exists() {
        bail!(
            "no wallet in {}; fund one with `paygress wallet fund`",
            data_dir.display()
        );
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
    let candidates: Vec<&(String, u64)> = if accepted.is_empty() {
        balances.iter().collect()
    } else {
        accepted
            .iter()
            .filter_map(|a| balances.iter().find(|(m, _)| m == a))
            .collect()
    };
    candidates
        .into_iter()
        .find(|(_, b)| *b >= amount)
        .map(|(m, _)| m.clone())
        .ok_or_else(|| {
            anyhow!(
                "no accepted mint ({}) holds {amount} {unit} in this wallet (it holds: {})",
                accepted.join(", "),
                balances
                    .iter()
                    .map(|(m, b)| format!("{m}={b}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn parse_headers(extra: &[String]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for h in extra {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("header {h:?} is not `Name: value`"))?;
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
    let mut out = format!(
        "HTTP {} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in resp.headers() {
        out.push_str(&format!(
            "{}: {}\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out.push('\n');
    let body = resp.text().await.context("reading the body")?;
    out.push_str(&body);
    if !body.ends_with('\n') && !body.is_empty() {
        out.push('\n');
    }
    Ok(PayOutcome {
        status: status.as_u16(),
        printed: out,
        paid,
    })
}
