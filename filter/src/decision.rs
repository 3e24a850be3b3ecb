//! The filter's decisions, apart from any proxy: plain data in (the plugin
//! configuration, a request's headers, the verifier's answer), a [`Verdict`]
//! out. Nothing here calls the host, so all of it is tested natively; the
//! proxy-wasm glue (`host`) only reads headers, applies verdicts and counts.
//!
//! Per request ([`Plugin::on_request_headers`]):
//!
//! 1. client-sent `X-Payment-*`, `X-User-ID` and `X-Provisioned-Pod` are
//!    removed, on every path;
//! 2. a free path goes on (without any Cashu token headers);
//! 3. a paid path without a token is answered 402 with the tier's payment
//!    request, precomputed at configure time;
//! 4. a token is decoded and pre-checked (mint, unit, face value against the
//!    price, no fee): a refusal is answered 400 here, without a callout;
//! 5. otherwise the verifier is called, and the request waits.
//!
//! The verifier's answer ([`Plugin::on_callout_response`]): 2xx grants (its
//! payment headers go upstream, the token does not), 400/402 and a 503
//! `mint_unavailable` are relayed, anything else is a callout failure, which
//! `failure_mode` turns into a 503 `verifier_unavailable` (deny) or lets the
//! request through unpaid (allow).

use core::time::Duration;
use std::borrow::Cow;

use paygress_core::config::ConfigError;
use paygress_core::extract::{self, FoundToken};
use paygress_core::headers as h;
use paygress_core::outcome::{self, ErrorCode, Rejection};
use paygress_core::precheck;
use paygress_core::pricing::Price;
use paygress_core::{Challenge, CompiledConfig, FailureMode, TokenLimits};
use thiserror::Error;

use crate::metrics::Counter;

/// The status of a payment challenge. (Refusals get theirs from
/// [`ErrorCode::status`].)
pub const PAYMENT_REQUIRED: u16 = 402;

/// The largest verifier response body that is relayed to a client; a larger
/// one is replaced by a body of our own.
pub const MAX_RELAYED_BODY: usize = 16 * 1024;

/// The content type of every body the filter answers with.
pub const APPLICATION_JSON: &str = "application/json";

const CONTENT_TYPE: &str = "content-type";
const RETRY_AFTER: &str = "retry-after";
const X_REQUEST_ID: &str = "x-request-id";

/// A header list as the host hands it over: names (lower case in Envoy, but
/// compared without regard to case here) and raw byte values, which need not
/// be UTF-8.
pub type Headers = [(String, Vec<u8>)];

/// Why a plugin configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PluginError {
    /// The configuration is not UTF-8 text.
    #[error("invalid config: the plugin configuration is not UTF-8 text")]
    NotUtf8,
    /// The configuration broke the schema or a rule; the message names the
    /// key (a tier whose 402 cannot be encoded included).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The compiled plugin: the config (with each tier's 402 answer, encoded
/// once by core) and the token limits.
#[derive(Debug, Clone)]
pub struct Plugin {
    config: CompiledConfig,
    limits: TokenLimits,
}

/// Edits of a header map: every header named in `remove` is removed (all its
/// values), then every pair of `add` is added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub remove: Vec<String>,
    pub add: Vec<(String, Vec<u8>)>,
}

impl HeaderEdits {
    fn remove(&mut self, name: &str) {
        if !self.remove.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.remove.push(name.to_ascii_lowercase());
        }
    }

    fn extend(&mut self, other: &HeaderEdits) {
        for name in &other.remove {
            self.remove(name);
        }
        self.add.extend(other.add.iter().cloned());
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// An answer made by the proxy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The HTTP call to the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// The Envoy cluster of the verifier.
    pub cluster: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) and headers.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// What a request waiting for the verifier needs when the answer comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The price tier's [`index`](paygress_core::pricing::PriceTier).
    pub tier_index: usize,
    /// The edits that keep the token from the upstream (remove `X-Cashu`, a
    /// Cashu `Authorization`), applied when the request goes on.
    pub token_edits: HeaderEdits,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request go upstream after these edits.
    Continue(HeaderEdits),
    /// Answer the client from the proxy; nothing goes upstream.
    LocalReply(LocalReply),
    /// Apply `edits` (the reserved headers are stripped at once), call the
    /// verifier and wait; `pending` goes with the answer to
    /// [`Plugin::on_callout_response`].
    Callout {
        edits: HeaderEdits,
        call: Callout,
        pending: Pending,
    },
}

/// A decision and the counters it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub counters: &'static [Counter],
}

/// The verifier's answer, as the host hands it over.
#[derive(Debug, Clone, Copy)]
pub struct CalloutResponse<'a> {
    /// Response headers, `:status` included.
    pub headers: &'a Headers,
    /// The body, or its first bytes.
    pub body: &'a [u8],
    /// The body's full size, as the host reported it.
    pub body_size: usize,
}

impl Plugin {
    /// Parses, validates and compiles a plugin configuration (the schema of
    /// docs/contract.md, JSON), and precomputes each tier's 402 answer.
    pub fn from_json(bytes: &[u8]) -> Result<Plugin, PluginError> {
        let text = core::str::from_utf8(bytes).map_err(|_| PluginError::NotUtf8)?;
        Plugin::new(CompiledConfig::from_json(text)?)
    }

    /// The plugin for a compiled config.
    pub fn new(config: CompiledConfig) -> Result<Plugin, PluginError> {
        Ok(Plugin {
            config,
            limits: TokenLimits::default(),
        })
    }

    /// The compiled config.
    pub fn config(&self) -> &CompiledConfig {
        &self.config
    }

    /// The 402 answer of a tier, by its index (core encodes it once).
    pub fn challenge(&self, tier_index: usize) -> Option<&Challenge> {
        (tier_index < self.config.tier_count()).then(|| &self.config.tier(tier_index).challenge)
    }

    /// Decides on a request from its headers (pseudo-headers included).
    pub fn on_request_headers(&self, headers: &Headers) -> Verdict {
        // Reserved headers go first, whatever happens next.
        let mut edits = HeaderEdits::default();
        for (name, _) in headers {
            if is_reserved(name) {
                edits.remove(name);
            }
        }
        let request = RequestView::new(headers);
        let token_edits = request.token_edits();

        let path = request.first(":path").unwrap_or(Cow::Borrowed("/"));
        let price = match self.config.try_price(&path) {
            Ok(price) => price,
            Err(e) => {
                let rejection = Rejection::new(ErrorCode::MalformedRequest, e.to_string());
                return Verdict {
                    decision: Decision::LocalReply(rejection_reply(&rejection)),
                    counters: &[Counter::Rejected],
                };
            }
        };
        let tier = match price {
            Price::Free => {
                edits.extend(&token_edits);
                return Verdict {
                    decision: Decision::Continue(edits),
                    counters: &[Counter::Free],
                };
            }
            Price::Paid(tier) => tier,
        };

        let x_cashu = request.first(h::X_CASHU);
        let authorization = request.cashu_authorization();
        let Some(found) = extract::find_token(x_cashu.as_deref(), authorization.as_deref()) else {
            return Verdict {
                decision: Decision::LocalReply(self.payment_required(tier.index)),
                counters: &[Counter::Challenged],
            };
        };

        if let Err(rejection) = self.precheck(&found, tier.amount) {
            return Verdict {
                decision: Decision::LocalReply(rejection_reply(&rejection)),
                counters: &[Counter::Rejected],
            };
        }

        let verifier = &self.config.verifier;
        let mut call_headers: Vec<(String, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), verifier.path.clone()),
            (":authority".into(), verifier.authority.clone()),
            (h::X_CASHU.into(), found.token.to_string()),
            (h::X_FORWARDED_URI.into(), path.into_owned()),
            (
                h::X_FORWARDED_METHOD.into(),
                request
                    .first(":method")
                    .map(Cow::into_owned)
                    .unwrap_or_else(|| "GET".into()),
            ),
            (h::X_REQUIRED_AMOUNT.into(), tier.amount.to_string()),
            (
                h::X_PAYGRESS_DEADLINE_MS.into(),
                verifier.timeout_ms.to_string(),
            ),
        ];
        if let Some(host) = request.first(":authority") {
            call_headers.push((h::X_FORWARDED_HOST.into(), host.into_owned()));
        }
        if let Some(id) = request.first(X_REQUEST_ID) {
            call_headers.push((X_REQUEST_ID.into(), id.into_owned()));
        }
        Verdict {
            decision: Decision::Callout {
                edits,
                call: Callout {
                    cluster: verifier.cluster.clone(),
                    headers: call_headers,
                    timeout: Duration::from_millis(verifier.timeout_ms),
                },
                pending: Pending {
                    tier_index: tier.index,
                    token_edits,
                },
            },
            counters: &[Counter::Callouts],
        }
    }

    /// Decides on the verifier's answer; `None` when there was none (reset,
    /// timeout, no headers).
    pub fn on_callout_response(
        &self,
        pending: &Pending,
        response: Option<&CalloutResponse<'_>>,
    ) -> Verdict {
        let Some(response) = response else {
            return self.on_callout_failure(pending);
        };
        let answer = RequestView::new(response.headers);
        let status = answer
            .first(":status")
            .and_then(|s| s.trim().parse::<u16>().ok());
        match status {
            Some(200..=299) => {
                let mut edits = pending.token_edits.clone();
                for name in h::GRANT_HEADERS {
                    edits.remove(name);
                    for value in answer.all(name) {
                        edits.add.push((name.to_string(), value.to_vec()));
                    }
                }
                Verdict {
                    decision: Decision::Continue(edits),
                    counters: &[Counter::Granted],
                }
            }
            Some(status @ (400 | 402)) => Verdict {
                decision: Decision::LocalReply(self.relay(pending, status, &answer, response)),
                counters: &[Counter::VerifierRefused],
            },
            // The verifier answered: a mint it cannot reach, or a verifier
            // too busy (with `Retry-After`), is relayed, not a failure.
            Some(503)
                if matches!(
                    relayable_body(response).and_then(body_code),
                    Some(ErrorCode::MintUnavailable | ErrorCode::VerifierUnavailable)
                ) =>
            {
                Verdict {
                    decision: Decision::LocalReply(self.relay(pending, 503, &answer, response)),
                    counters: &[Counter::VerifierRefused],
                }
            }
            _ => self.on_callout_failure(pending),
        }
    }

    /// Decides when the verifier could not be used (dispatch error, no
    /// answer, or an answer that is not one of the contract's).
    pub fn on_callout_failure(&self, pending: &Pending) -> Verdict {
        match self.config.failure_mode {
            FailureMode::Deny => Verdict {
                decision: Decision::LocalReply(rejection_reply(&Rejection::new(
                    ErrorCode::VerifierUnavailable,
                    "the payment verifier is unavailable",
                ))),
                counters: &[Counter::CalloutFailures],
            },
            FailureMode::Allow => Verdict {
                decision: Decision::Continue(pending.token_edits.clone()),
                counters: &[Counter::CalloutFailures, Counter::AllowedOnFailure],
            },
        }
    }

    /// Decodes and pre-checks a token against the price, without fees.
    fn precheck(&self, found: &FoundToken<'_>, price: u64) -> Result<(), Rejection> {
        let token = precheck::decode(found.token, &self.limits)?;
        precheck::precheck(&token, &self.config, price, 0)
    }

    /// The 402 answer of a tier.
    fn payment_required(&self, tier_index: usize) -> LocalReply {
        let challenge = &self.config.tier(tier_index).challenge;
        LocalReply {
            status: PAYMENT_REQUIRED,
            headers: vec![
                (h::X_CASHU.into(), challenge.payment_request.clone()),
                (CONTENT_TYPE.into(), APPLICATION_JSON.into()),
            ],
            body: challenge.body.clone(),
        }
    }

    /// Relays a verifier refusal: its status, its JSON body and its
    /// `X-Cashu` (a 402 without one gets the tier's payment request).
    fn relay(
        &self,
        pending: &Pending,
        status: u16,
        answer: &RequestView<'_>,
        response: &CalloutResponse<'_>,
    ) -> LocalReply {
        let mut headers: Vec<(String, String)> =
            vec![(CONTENT_TYPE.into(), APPLICATION_JSON.into())];
        let challenge =
            (status == PAYMENT_REQUIRED).then(|| self.payment_required(pending.tier_index));
        match answer.first_utf8(h::X_CASHU) {
            Some(creq) => headers.push((h::X_CASHU.into(), creq.to_string())),
            None => {
                if let Some((_, creq)) = challenge
                    .as_ref()
                    .and_then(|c| c.headers.iter().find(|(n, _)| n == h::X_CASHU))
                {
                    headers.push((h::X_CASHU.into(), creq.clone()));
                }
            }
        }
        if let Some(after) = answer.first_utf8(RETRY_AFTER) {
            headers.push((RETRY_AFTER.into(), after.to_string()));
        }
        let body = match relayable_body(response) {
            Some(body) => body.to_string(),
            None => match (status, challenge) {
                (PAYMENT_REQUIRED, Some(c)) => c.body,
                (503, _) => outcome::rejection_body(
                    ErrorCode::MintUnavailable,
                    "the mint is unavailable; nothing was redeemed",
                ),
                _ => outcome::rejection_body(
                    ErrorCode::TokenInvalid,
                    "the payment verifier refused the token",
                ),
            },
        };
        LocalReply {
            status,
            headers,
            body,
        }
    }
}

/// The JSON refusal: status from [`ErrorCode::status`], body from core.
pub fn rejection_reply(rejection: &Rejection) -> LocalReply {
    LocalReply {
        status: rejection.status(),
        headers: vec![(CONTENT_TYPE.into(), APPLICATION_JSON.into())],
        body: rejection.body(),
    }
}

/// Whether a client-sent header must be stripped: core's reserved names, and
/// their spellings with `_` for `-` (`X_Payment_Verified`), which CGI/WSGI
/// style upstreams read as the dashed name. (Envoy's
/// `headers_with_underscores_action: DROP_HEADER` drops those before the
/// filter sees them; Istio's default lets them through.)
pub fn is_reserved(name: &str) -> bool {
    h::is_reserved(name) || (name.contains('_') && h::is_reserved(&name.replace('_', "-")))
}

/// The verifier's body, when it can be relayed as it is: complete, within
/// [`MAX_RELAYED_BODY`], UTF-8 and a JSON object.
fn relayable_body<'a>(response: &CalloutResponse<'a>) -> Option<&'a str> {
    if response.body_size > MAX_RELAYED_BODY || response.body.len() != response.body_size {
        return None;
    }
    let text = core::str::from_utf8(response.body).ok()?;
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.is_object().then_some(text)
}

/// The `code` of a JSON refusal body.
fn body_code(body: &str) -> Option<ErrorCode> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    ErrorCode::parse(value.get("code")?.as_str()?)
}

/// Read access to a header list.
#[derive(Debug, Clone, Copy)]
struct RequestView<'a> {
    headers: &'a Headers,
}

impl<'a> RequestView<'a> {
    fn new(headers: &'a Headers) -> Self {
        RequestView { headers }
    }

    /// Every value of a header, raw.
    fn all(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of a header, as text (invalid UTF-8 replaced).
    fn first(&self, name: &'a str) -> Option<Cow<'a, str>> {
        self.all(name).next().map(String::from_utf8_lossy)
    }

    /// The first value of a header, only if it is UTF-8.
    fn first_utf8(&self, name: &'a str) -> Option<&'a str> {
        self.all(name)
            .next()
            .and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The first `Authorization` value that carries a Cashu token.
    fn cashu_authorization(&self) -> Option<Cow<'a, str>> {
        self.all(h::AUTHORIZATION)
            .map(String::from_utf8_lossy)
            .find(|v| extract::is_cashu_authorization(v))
    }

    /// The edits that keep the token from the upstream: every `X-Cashu`,
    /// and every `Authorization` that carries a Cashu token (the others are
    /// put back).
    fn token_edits(&self) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        if self.all(h::X_CASHU).next().is_some() {
            edits.remove(h::X_CASHU);
        }
        let auth: Vec<&[u8]> = self.all(h::AUTHORIZATION).collect();
        let is_cashu = |v: &&[u8]| extract::is_cashu_authorization(&String::from_utf8_lossy(v));
        if auth.iter().any(is_cashu) {
            edits.remove(h::AUTHORIZATION);
            for v in auth.into_iter().filter(|v| !is_cashu(v)) {
                edits.add.push((h::AUTHORIZATION.to_string(), v.to_vec()));
            }
        }
        edits
    }
}

// Native only: the property tests' dependencies do not build for wasm32.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
