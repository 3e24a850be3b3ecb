//! `GET /auth` and `/auth/*`: the one verification path, for every proxy.
//!
//! 1. The original request: the path after `/auth` (Envoy ext_authz
//!    `path_prefix`), else `X-Original-URL`/`X-Original-Method` (NGINX), else
//!    `X-Forwarded-Uri`/`-Method`/`-Host` (Traefik, the filter's callout),
//!    else `/`.
//! 2. The price, from the verifier's own tier table, raised (never lowered)
//!    by a caller's `X-Required-Amount`.
//! 3. The token, from `X-Cashu`, `Authorization: Cashu` or `Authorization:
//!    Bearer` (paygress-core's `extract`). None on a paid path: 402.
//! 4. Before any swap: decode, mint accepted, unit, and face value minus the
//!    mint's real input fee ≥ price (paygress-core's `precheck`).
//! 5. The swap (see [`crate::redeem`]), and the amount received against the
//!    price.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use paygress_core::extract::{self, FoundToken};
use paygress_core::headers as h;
use paygress_core::pricing::Price;
use paygress_core::{precheck, CompiledConfig, TokenLimits};

use crate::error::AuthError;
use crate::ids;
use crate::server::AppState;
use crate::wallet::{DleqError, FeeError, MintWallet};

/// The longest `X-Original-URL` / `X-Forwarded-Uri` read, in bytes.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// The request that the proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: String,
    /// The request target (origin-form or absolute); priced after
    /// paygress-core's normalisation.
    pub target: String,
    pub host: Option<String>,
    /// Which input style named it: `path`, `x-original-url`,
    /// `x-forwarded-uri` or `none`.
    pub source: &'static str,
    /// The targets named by the other input styles present, if any: when
    /// the sources disagree, the highest price among them all applies.
    pub others: Vec<String>,
}

/// What `/auth` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let through: a free path, or a paid one whose token was redeemed.
    Allow(Grant),
    /// No token on a paid path.
    PaymentRequired {
        amount: u64,
        /// The [`PriceTier::index`](paygress_core::pricing::PriceTier) of
        /// the tier that priced the path (its 402 is encoded once).
        tier_index: usize,
    },
    /// A token that cannot pay, or a mint or verifier that cannot redeem.
    Refuse(AuthError),
}

/// A request let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None` for a free path; the payment otherwise.
    pub payment: Option<Payment>,
}

/// A redeemed payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Received, net of the mint's input fees.
    pub amount: u64,
    /// The tier that priced the path (none when the default price or a
    /// caller's `X-Required-Amount` did).
    pub tier: Option<String>,
    /// The pseudonymous payer id (a short hash of the proofs' secrets).
    pub user_id: String,
    pub mint: String,
}

/// Reads the original request from the `/auth` request.
pub fn original_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<OriginalRequest, AuthError> {
    let host = header_str(headers, h::X_FORWARDED_HOST, MAX_TARGET_LEN)?.map(str::to_string);
    // Every source present, in order of precedence: the path after /auth,
    // NGINX's pair, then Traefik's (and the filter's callout).
    let mut found: Vec<(&'static str, String, String)> = Vec::new();
    if let Some(suffix) = uri.path().strip_prefix("/auth") {
        if suffix.starts_with('/') && suffix.len() > 1 {
            found.push(("path", suffix.to_string(), method.as_str().to_string()));
        }
    }
    for (target_header, method_header) in [
        (h::X_ORIGINAL_URL, h::X_ORIGINAL_METHOD),
        (h::X_FORWARDED_URI, h::X_FORWARDED_METHOD),
    ] {
        if let Some(target) = header_str(headers, target_header, MAX_TARGET_LEN)? {
            let method = header_str(headers, method_header, 64)?
                .unwrap_or(method.as_str())
                .to_string();
            found.push((target_header, target.to_string(), method));
        }
    }
    let mut found = found.into_iter();
    let Some((source, target, method)) = found.next() else {
        return Ok(OriginalRequest {
            method: method.as_str().to_string(),
            target: "/".into(),
            host,
            source: "none",
            others: Vec::new(),
        });
    };
    Ok(OriginalRequest {
        method,
        target,
        host,
        source,
        others: found.map(|(_, target, _)| target).collect(),
    })
}

/// The price of the original request: the highest among the prices of every
/// target its sources name (each at its highest reading); free only when
/// every target is. A target whose authority cannot be read one way is
/// refused.
pub fn price_of<'c>(
    config: &'c CompiledConfig,
    original: &OriginalRequest,
) -> Result<Price<'c>, AuthError> {
    let mut best = Price::Free;
    for target in std::iter::once(&original.target).chain(original.others.iter()) {
        let price = config
            .try_price(target)
            .map_err(|e| AuthError::MalformedRequest(e.to_string()))?;
        if price.amount() > best.amount() {
            best = price;
        }
    }
    Ok(best)
}

/// A header as text: `None` when absent, 400 when it is not printable ASCII,
/// too long, or repeated.
fn header_str<'a>(
    headers: &'a HeaderMap,
    name: &str,
    max_len: usize,
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedHeader(format!(
            "more than one {name} header"
        )));
    }
    readable(name, first, max_len).map(Some)
}

fn readable<'a>(name: &str, value: &'a HeaderValue, max_len: usize) -> Result<&'a str, AuthError> {
    if value.len() > max_len {
        return Err(AuthError::MalformedHeader(format!(
            "{name} header is {} bytes, more than the {max_len} accepted",
            value.len()
        )));
    }
    value
        .to_str()
        .map_err(|_| AuthError::MalformedHeader(format!("{name} header is not printable ASCII")))
}

/// A caller's `X-Required-Amount`, if it is a valid amount (an invalid one
/// is ignored: it could only have raised the price).
fn required_amount(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(h::X_REQUIRED_AMOUNT)?;
    match value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(n) if n <= paygress_core::MAX_AMOUNT => Some(n),
        _ => {
            tracing::warn!("ignoring an X-Required-Amount that is not an amount");
            None
        }
    }
}

/// Finds the token: `X-Cashu` first, then a Cashu `Authorization`.
fn find_token(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let limit = TokenLimits::DEFAULT_MAX_LEN.saturating_mul(4);
    let x_cashu = header_str(headers, h::X_CASHU, limit)?;
    let mut auth_token: Option<&str> = None;
    for value in headers.get_all(h::AUTHORIZATION) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        if extract::is_cashu_authorization(text) {
            if auth_token.is_some() {
                return Err(AuthError::MalformedHeader(
                    "more than one Cashu Authorization header".into(),
                ));
            }
            readable(h::AUTHORIZATION, value, limit)?;
            auth_token = Some(text);
        }
    }
    Ok(extract::find_token(x_cashu, auth_token).map(|FoundToken { token, .. }| token.to_string()))
}

/// Decides an `/auth` request.
pub async fn decide(
    state: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> (Decision, Option<OriginalRequest>) {
    let original = match original_request(method, uri, headers) {
        Ok(o) => o,
        Err(e) => return (Decision::Refuse(e), None),
    };
    let decision = decide_for(state, &original, headers).await;
    (decision, Some(original))
}

async fn decide_for(
    state: &Arc<AppState>,
    original: &OriginalRequest,
    headers: &HeaderMap,
) -> Decision {
    let config = &state.settings.config;
    let own = match price_of(config, original) {
        Ok(Price::Paid(tier)) => tier,
        Ok(Price::Free) => return Decision::Allow(Grant { payment: None }),
        Err(e) => return Decision::Refuse(e),
    };
    // A caller's X-Required-Amount raises the price (then no tier set it).
    let (price, tier) = match required_amount(headers) {
        Some(required) if required > own.amount => (required, None),
        _ => (own.amount, own.id.clone()),
    };

    let raw = match find_token(headers) {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Decision::PaymentRequired {
                amount: price,
                tier_index: own.index,
            }
        }
        Err(e) => return Decision::Refuse(e),
    };
    let deadline = Instant::now() + deadline_of(headers, state.settings.deadline);
    match pay(state, &raw, price, tier, deadline).await {
        Ok(payment) => Decision::Allow(Grant {
            payment: Some(payment),
        }),
        Err(e) => Decision::Refuse(e),
    }
}

/// The deadline of an `/auth` request: what the caller says it waits
/// (`X-Paygress-Deadline-Ms`, the filter's callout timeout), less a margin
/// for the answer's way back, else the configured default.
pub fn deadline_of(headers: &HeaderMap, default: Duration) -> Duration {
    let named = headers
        .get(h::X_PAYGRESS_DEADLINE_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(600_000)));
    match named {
        Some(d) => {
            let margin = (d / 10).max(Duration::from_millis(100));
            d.saturating_sub(margin)
        }
        None => default,
    }
}

/// Checks and redeems a token for `price`, within `deadline`.
async fn pay(
    state: &Arc<AppState>,
    raw: &str,
    price: u64,
    tier: Option<String>,
    deadline: Instant,
) -> Result<Payment, AuthError> {
    let config = &state.settings.config;
    let token = precheck::decode(raw, &TokenLimits::default()).map_err(AuthError::Precheck)?;
    // Mint, unit and face value first: no network for a token that cannot pay.
    precheck::precheck(&token, config, price, 0).map_err(AuthError::Precheck)?;
    let mint = state.wallets.get(&token.mint).cloned().ok_or_else(|| {
        AuthError::Internal(format!("no wallet for accepted mint {}", token.mint))
    })?;
    if state.is_draining() {
        return Err(AuthError::ShuttingDown);
    }
    let fee = input_fee(state, &mint, &token, deadline).await?;
    precheck::precheck(&token, config, price, fee).map_err(AuthError::Precheck)?;
    let canonical = crate::redeem::canonical_token(raw);
    match mint.check_dleq(&canonical).await {
        Ok(()) => {}
        Err(DleqError::Invalid) => return Err(AuthError::DleqInvalid),
        Err(e) => return Err(AuthError::TokenInvalid(e.to_string())),
    }
    let slot = state.redeemer.try_slot()?;

    let user_id = ids::user_id(&token);
    let mint_url = mint.url.clone();
    let task_state = state.clone();
    let task_raw = raw.to_string();
    let task_token = token.clone();
    let task_mint = mint.clone();
    // The redemption runs as its own task: a client that hangs up, or a
    // deadline that passes, does not cancel a swap half-way (its outcome
    // goes to the ledger), and shutdown waits for it.
    let task = state.tracker.spawn(async move {
        let _slot = slot;
        task_state
            .redeemer
            .redeem(&task_mint, &task_raw, &task_token, deadline)
            .await
    });
    let received = match tokio::time::timeout_at(deadline.into(), task).await {
        Err(_) => {
            return Err(AuthError::Unfinished(
                "the mint did not answer before the request's deadline".into(),
            ))
        }
        Ok(Err(e)) => return Err(AuthError::Internal(format!("redemption task: {e}"))),
        Ok(Ok(result)) => result?,
    };
    if received < price {
        // Swapped, but worth less than the price (the mint's fee changed):
        // the client gets its value back, and nothing is granted.
        return Err(state.redeemer.refund(&mint, &token, received, price).await);
    }
    let received = state.redeemer.claim(&token)?;
    Ok(Payment {
        amount: received,
        tier,
        user_id,
        mint: mint_url,
    })
}

/// The mint's input fee for the token, loading or refreshing the mint's
/// keysets when needed.
async fn input_fee(
    state: &Arc<AppState>,
    mint: &MintWallet,
    token: &paygress_core::Token,
    deadline: Instant,
) -> Result<u64, AuthError> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(state.settings.mint_timeout);
    match mint.input_fee(token) {
        Ok(fee) => return Ok(fee),
        Err(FeeError::NotLoaded) => {
            match tokio::time::timeout(timeout, mint.ensure_loaded()).await {
                Ok(Ok(())) => state.metrics.mint_ready(&mint.url, true),
                Ok(Err(e)) => {
                    state.metrics.mint_error(&mint.url, "unreachable");
                    return Err(AuthError::MintUnavailable(e.to_string()));
                }
                Err(_) => {
                    state.metrics.mint_error(&mint.url, "timeout");
                    return Err(AuthError::MintUnavailable("keysets: timeout".into()));
                }
            }
        }
        Err(FeeError::UnknownKeyset(_)) => {
            match tokio::time::timeout(timeout, mint.refresh_keysets_if_stale()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    state.metrics.mint_error(&mint.url, "unreachable");
                    return Err(AuthError::MintUnavailable(e.to_string()));
                }
                Err(_) => {
                    state.metrics.mint_error(&mint.url, "timeout");
                    return Err(AuthError::MintUnavailable("keysets: timeout".into()));
                }
            }
        }
        Err(e) => return Err(AuthError::TokenInvalid(e.to_string())),
    }
    mint.input_fee(token)
        .map_err(|e| AuthError::TokenInvalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_original_request_comes_from_the_first_style_present() {
        let get = Method::GET;
        let o = original_request(
            &get,
            &"/auth/premium/x?q=1".parse().unwrap(),
            &headers(&[("x-original-url", "/free")]),
        )
        .unwrap();
        assert_eq!((o.source, o.target.as_str()), ("path", "/premium/x"));

        let o = original_request(
            &get,
            &"/auth".parse().unwrap(),
            &headers(&[
                ("x-original-url", "https://h/premium?x"),
                ("x-original-method", "POST"),
                ("x-forwarded-uri", "/free"),
            ]),
        )
        .unwrap();
        assert_eq!(o.source, "x-original-url");
        assert_eq!(o.method, "POST");

        let o = original_request(
            &get,
            &"/auth/".parse().unwrap(),
            &headers(&[
                ("x-forwarded-uri", "/premium"),
                ("x-forwarded-method", "PUT"),
                ("x-forwarded-host", "example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(o.source, "x-forwarded-uri");
        assert_eq!(o.host.as_deref(), Some("example.com"));
        assert_eq!(o.method, "PUT");

        let o = original_request(&get, &"/auth".parse().unwrap(), &HeaderMap::new()).unwrap();
        assert_eq!((o.source, o.target.as_str()), ("none", "/"));
    }

    #[test]
    fn disagreeing_sources_pay_the_higher_price_and_bad_authorities_are_refused() {
        let config = CompiledConfig::from_json(
            r#"{"mints":["http://m"],"free_paths":["/free"],"default_amount":10,
                "tiers":[{"id":"premium","path_prefix":"/premium","amount":50}]}"#,
        )
        .unwrap();
        let get = Method::GET;
        let price = |uri: &str, pairs: &[(&str, &str)]| {
            let o = original_request(&get, &uri.parse().unwrap(), &headers(pairs)).unwrap();
            price_of(&config, &o).map(|p| match p {
                Price::Free => (0, None),
                Price::Paid(t) => (t.amount, t.id.clone()),
            })
        };
        assert_eq!(price("/auth/free", &[]), Ok((0, None)));
        assert_eq!(
            price("/auth/free", &[("x-forwarded-uri", "/premium/x")]),
            Ok((50, Some("premium".into())))
        );
        assert_eq!(
            price(
                "/auth",
                &[
                    ("x-original-url", "http://h/free"),
                    ("x-forwarded-uri", "/other")
                ]
            ),
            Ok((10, None))
        );
        assert_eq!(
            price("/auth", &[("x-original-url", "http://h/PREMIUM/../free")]),
            Ok((50, Some("premium".into())))
        );
        let refused = price("/auth", &[("x-original-url", "http://x?/premium/r")]).unwrap_err();
        assert_eq!(refused.code(), paygress_core::ErrorCode::MalformedRequest);
        assert_eq!(refused.status(), 400);
    }

    #[test]
    fn token_headers_are_read_strictly() {
        assert_eq!(
            find_token(&headers(&[("authorization", "Bearer cashuBxyz")])).unwrap(),
            Some("cashuBxyz".into())
        );
        assert_eq!(
            find_token(&headers(&[("authorization", "Bearer eyJhbGci")])).unwrap(),
            None
        );
        assert!(find_token(&headers(&[("x-cashu", "a"), ("x-cashu", "b")])).is_err());
        let mut bad = HeaderMap::new();
        bad.insert("x-cashu", HeaderValue::from_bytes(b"cashuB\xff").unwrap());
        assert!(matches!(
            find_token(&bad),
            Err(AuthError::MalformedHeader(_))
        ));
    }

    #[test]
    fn required_amount_only_parses_amounts() {
        assert_eq!(
            required_amount(&headers(&[("x-required-amount", " 5 ")])),
            Some(5)
        );
        assert_eq!(
            required_amount(&headers(&[("x-required-amount", "-5")])),
            None
        );
        assert_eq!(
            required_amount(&headers(&[("x-required-amount", "9007199254740993")])),
            None
        );
    }
}
