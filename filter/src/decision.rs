//! The filter's decisions, apart from any proxy: plain data in (the plugin
//! configuration, a request's headers, the time, the verifier's answer), a
//! [`Verdict`] out. Nothing here calls the host, so all of it is tested
//! natively; the proxy-wasm glue (`host`) only reads headers and the clock,
//! applies verdicts and counts.
//!
//! Per request ([`Plugin::on_request_headers`]):
//!
//! 1. client-sent `X-Payment-*`, `X-User-ID`, `X-Provisioned-Pod` and
//!    `X-Paygress-Lease` are removed, on every path;
//! 2. a free path goes on without any credential: no Cashu token headers
//!    and no pass carrier (`X-Paygress-Pass`, the `paygress_pass` cookie,
//!    and, when the config has pass keys, an `Authorization: Bearer p1.…`);
//! 3. a paid path without a token but with a pass is decided here, with no
//!    callout: a genuine pass of the path's lease tier goes on with the
//!    pass's grant headers, an expired pass or one of another tier is
//!    answered with the tier's 402, any other pass 400 `pass_invalid`;
//! 4. a paid path with neither is answered 402 with the tier's payment
//!    request, precomputed at configure time (the JSON body, or for a
//!    browser whose `Accept` prefers `text/html` the tier's page, also built
//!    at configure time by core's [`browser`]);
//! 5. a token is decoded and pre-checked (mint, unit, face value against the
//!    price, no fee): a refusal is answered 400 here, without a callout;
//! 6. otherwise the verifier is called (with the pass too, if one came, so
//!    that the payment tops its lease up), and the request waits.
//!
//! The verifier's answer ([`Plugin::on_callout_response`]): 2xx grants (its
//! payment headers go upstream, the credentials do not; a pass it sold or
//! extended goes back to the client as `X-Paygress-Pass` and a cookie),
//! 400/402 and a 503 `mint_unavailable` are relayed, anything else is a
//! callout failure, which `failure_mode` turns into a 503
//! `verifier_unavailable` (deny) or lets the request through unpaid (allow).
//!
//! Every 402, 400 and 503 is JSON, or a page for a browser: `Accept` is read
//! only on the way to one of those answers (never on a free path or a
//! grant), and they all carry `Vary: Accept`.

use core::time::Duration;
use std::borrow::Cow;

use log::warn;
use paygress_core::browser::{self, Format};
use paygress_core::config::ConfigError;
use paygress_core::extract::{self, FoundToken};
use paygress_core::headers as h;
use paygress_core::json;
use paygress_core::lease::EnvLookup;
use paygress_core::outcome::{self, ErrorCode, Rejection};
use paygress_core::pass::{self, Claims, PassError};
use paygress_core::pass_cache::PassCache;
use paygress_core::pass_carrier::{self, PassSource};
use paygress_core::precheck;
use paygress_core::pricing::{Price, PriceTier};
use paygress_core::{Challenge, CompiledConfig, Config, FailureMode, TokenLimits};
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
const ACCEPT: &str = "accept";

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
    /// The passes whose signature this VM checked already.
    passes: PassCache,
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
    /// The edits that keep the credentials from the upstream (remove
    /// `X-Cashu`, a Cashu `Authorization`, every pass carrier), applied when
    /// the request goes on.
    pub credential_edits: HeaderEdits,
    /// Whether the request came over `https` (a pass cookie is then
    /// `Secure`).
    pub secure: bool,
    /// The request's `Accept` values, unread: negotiated only if the answer
    /// is a refusal (JSON or a page).
    pub accept: Vec<String>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request go upstream after `edits`, and add `response_headers`
    /// to the upstream's answer (a pass the verifier handed out).
    Continue {
        edits: HeaderEdits,
        response_headers: Vec<(String, String)>,
    },
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

impl Decision {
    /// Let the request go upstream after `edits`, its answer untouched.
    pub fn forward(edits: HeaderEdits) -> Decision {
        Decision::Continue {
            edits,
            response_headers: Vec::new(),
        }
    }
}

/// A decision and the counters it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub counters: &'static [Counter],
}

/// The time, in Unix seconds, for checking a pass: a value, or a function
/// called only when a pass is checked (the host's clock is a host call that
/// most requests do not need).
pub trait Clock {
    fn now(self) -> u64;
}

impl Clock for u64 {
    fn now(self) -> u64 {
        self
    }
}

impl<F: FnOnce() -> u64> Clock for F {
    fn now(self) -> u64 {
        self()
    }
}

/// A pass-only request on a paid path, as [`Plugin::on_pass`] reads it.
#[derive(Debug, Clone, Copy)]
struct PassRequest<'p, 'r> {
    presented: Presented<'p>,
    request: &'p RequestView<'r>,
    target: &'p str,
    tier: &'p PriceTier,
}

/// A pass as the request presented it.
#[derive(Debug, Clone, Copy)]
struct Presented<'a> {
    pass: &'a str,
    /// Whether it came in the `paygress_pass` cookie.
    from_cookie: bool,
    /// Whether the request came over `https`.
    secure: bool,
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
    /// docs/contract.md, JSON), and precomputes each tier's 402 answer. A
    /// `pass_keys[].secret_env` is read from the VM's environment (Envoy's
    /// `vm_config.environment_variables`, Istio's `vmConfig.env`).
    pub fn from_json(bytes: &[u8]) -> Result<Plugin, PluginError> {
        Plugin::from_json_with_env(bytes, &|name| std::env::var(name).ok())
    }

    /// [`Plugin::from_json`], reading `pass_keys[].secret_env` through `env`.
    pub fn from_json_with_env(bytes: &[u8], env: EnvLookup<'_>) -> Result<Plugin, PluginError> {
        let text = core::str::from_utf8(bytes).map_err(|_| PluginError::NotUtf8)?;
        Plugin::new(Config::from_json_without_serde(text)?.compile_with_env(env)?)
    }

    /// The plugin for a compiled config.
    pub fn new(config: CompiledConfig) -> Result<Plugin, PluginError> {
        Ok(Plugin {
            passes: PassCache::new(config.pass_keys().to_vec()),
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

    /// Decides on a request from its headers (pseudo-headers included);
    /// `now` gives the time (Unix seconds), read only when a pass is to be
    /// checked.
    pub fn on_request_headers(&self, headers: &Headers, now: impl Clock) -> Verdict {
        // Reserved headers go first, whatever happens next.
        let mut edits = reserved_edits(headers);
        let request = RequestView::new(headers);
        let bearer_passes = !self.config.pass_keys().is_empty();
        let credential_edits = request.credential_edits(bearer_passes);

        let path = request.first(":path").unwrap_or(Cow::Borrowed("/"));
        let price = match self.config.try_price(&path) {
            Ok(price) => price,
            Err(e) => {
                let rejection = Rejection::new(ErrorCode::MalformedRequest, e.to_string());
                return Verdict {
                    decision: Decision::LocalReply(refusal_reply(&rejection, request.format())),
                    counters: &[Counter::Rejected],
                };
            }
        };
        let tier = match price {
            Price::Free => {
                edits.extend(&credential_edits);
                return Verdict {
                    decision: Decision::forward(edits),
                    counters: &[Counter::Free],
                };
            }
            Price::Paid(tier) => tier,
        };

        let pass = request.find_pass(bearer_passes);
        let x_cashu = request.first(h::X_CASHU);
        let authorization = request.cashu_authorization();
        let Some(found) = extract::find_token(x_cashu.as_deref(), authorization.as_deref()) else {
            return match pass {
                Some((pass, source)) => {
                    let secure = request.is_https();
                    let presented = Presented {
                        pass: &pass,
                        from_cookie: source == PassSource::Cookie,
                        secure,
                    };
                    let asked = PassRequest {
                        presented,
                        request: &request,
                        target: &path,
                        tier,
                    };
                    self.on_pass(asked, edits, credential_edits, now.now())
                }
                None => Verdict {
                    decision: Decision::LocalReply(
                        self.payment_required(tier.index, request.format()),
                    ),
                    counters: &[Counter::Challenged],
                },
            };
        };

        if let Err(rejection) = self.precheck(&found, tier.amount) {
            return Verdict {
                decision: Decision::LocalReply(refusal_reply(&rejection, request.format())),
                counters: &[Counter::Rejected],
            };
        }

        let mut call = self.callout(&request, Some(found.token), &path, tier.amount);
        if let Some((pass, _)) = pass.filter(|(p, _)| forwardable_pass(p)) {
            call.headers.push((h::X_PAYGRESS_PASS.into(), pass));
        }
        Verdict {
            decision: Decision::Callout {
                edits,
                call,
                pending: Pending {
                    tier_index: tier.index,
                    credential_edits,
                    secure: request.is_https(),
                    accept: request.accept(),
                },
            },
            counters: &[Counter::Callouts],
        }
    }

    /// Decides on a paid request that presents a pass and no token: a
    /// genuine pass of the path's lease tier goes on with its grant headers,
    /// with no callout; an expired one of that tier is asked about.
    fn on_pass(
        &self,
        asked: PassRequest<'_, '_>,
        mut edits: HeaderEdits,
        credential_edits: HeaderEdits,
        now: u64,
    ) -> Verdict {
        let PassRequest {
            presented,
            request,
            target,
            tier,
        } = asked;
        let challenge =
            || Decision::LocalReply(self.payment_required(tier.index, request.format()));
        match self.passes.verify(presented.pass, now) {
            Ok(claims) if self.config.pass_opens(target, &claims.tier) => {
                edits.extend(&credential_edits);
                grant(&mut edits, pass_grant(&claims));
                Verdict {
                    decision: Decision::forward(edits),
                    counters: &[Counter::PassAccepted],
                }
            }
            Ok(_) => Verdict {
                decision: challenge(),
                counters: &[Counter::Challenged, Counter::PassRefused],
            },
            // Expired, of this path's lease tier: the verifier's ledger may
            // know the lease to run on (a top-up made with another pass),
            // and then answers with a fresh pass and no payment; otherwise
            // its 402 is relayed.
            Err(PassError::Expired(claims))
                if self.config.pass_opens(target, &claims.tier)
                    && forwardable_pass(presented.pass) =>
            {
                let mut call = self.callout(request, None, target, tier.amount);
                call.headers
                    .push((h::X_PAYGRESS_PASS.into(), presented.pass.to_string()));
                Verdict {
                    decision: Decision::Callout {
                        edits,
                        call,
                        pending: Pending {
                            tier_index: tier.index,
                            credential_edits,
                            secure: presented.secure,
                            accept: request.accept(),
                        },
                    },
                    counters: &[Counter::PassExpired, Counter::Callouts],
                }
            }
            Err(PassError::Expired(_)) => Verdict {
                decision: challenge(),
                counters: &[Counter::Challenged, Counter::PassExpired],
            },
            // Without keys every pass is unknown: refused alike.
            Err(e @ (PassError::Malformed | PassError::UnknownKey | PassError::BadSignature)) => {
                let mut reply = refusal_reply(
                    &Rejection::new(ErrorCode::PassInvalid, e.to_string()),
                    request.format(),
                );
                if presented.from_cookie {
                    // A browser would send it again until it expires.
                    let path = self.cookie_path(presented.pass, tier);
                    reply.headers.push((
                        h::SET_COOKIE.into(),
                        pass_carrier::clear_cookie(path, presented.secure),
                    ));
                }
                Verdict {
                    decision: Decision::LocalReply(reply),
                    counters: &[Counter::Rejected, Counter::PassRefused],
                }
            }
        }
    }

    /// The `Path` of a pass cookie: its lease tier's prefix when the pass
    /// names a configured tier, else that of the tier the request is under
    /// (a browser sent the cookie for this path).
    fn cookie_path<'s>(&'s self, pass: &str, tier: &'s PriceTier) -> &'s str {
        pass::decode_unverified(pass)
            .ok()
            .and_then(|(_, claims)| self.config.tier_by_id(&claims.tier))
            .map_or(tier.prefix.as_str(), |t| t.prefix.as_str())
    }

    /// The call to the verifier for a token on `target`, priced `amount`.
    fn callout(
        &self,
        request: &RequestView<'_>,
        token: Option<&str>,
        target: &str,
        amount: u64,
    ) -> Callout {
        let verifier = &self.config.verifier;
        let mut headers: Vec<(String, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), verifier.path.clone()),
            (":authority".into(), verifier.authority.clone()),
            (h::X_FORWARDED_URI.into(), target.to_string()),
            (
                h::X_FORWARDED_METHOD.into(),
                request
                    .first(":method")
                    .map(Cow::into_owned)
                    .unwrap_or_else(|| "GET".into()),
            ),
            (h::X_REQUIRED_AMOUNT.into(), amount.to_string()),
            (
                h::X_PAYGRESS_DEADLINE_MS.into(),
                verifier.timeout_ms.to_string(),
            ),
        ];
        if let Some(token) = token {
            headers.push((h::X_CASHU.into(), token.to_string()));
        }
        if let Some(host) = request.first(":authority") {
            headers.push((h::X_FORWARDED_HOST.into(), host.into_owned()));
        }
        if let Some(id) = request.first(X_REQUEST_ID) {
            headers.push((X_REQUEST_ID.into(), id.into_owned()));
        }
        Callout {
            cluster: verifier.cluster.clone(),
            headers,
            timeout: Duration::from_millis(verifier.timeout_ms),
        }
    }

    /// Decides on the verifier's answer at `now` (Unix seconds, for the
    /// pass it may hand out); `None` when there was none (reset, timeout, no
    /// headers).
    pub fn on_callout_response(
        &self,
        pending: &Pending,
        response: Option<&CalloutResponse<'_>>,
        now: u64,
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
                let mut edits = pending.credential_edits.clone();
                grant(
                    &mut edits,
                    h::GRANT_HEADERS
                        .into_iter()
                        .flat_map(|name| answer.all(name).map(move |v| (name, v.to_vec()))),
                );
                Verdict {
                    decision: Decision::Continue {
                        edits,
                        response_headers: self.handed_pass(&answer, pending.secure, now),
                    },
                    counters: &[Counter::Granted],
                }
            }
            Some(status @ (400 | 402)) => Verdict {
                decision: Decision::LocalReply(self.relay(pending, status, &answer, response)),
                counters: &[Counter::VerifierRefused],
            },
            // The verifier answered: a mint it cannot reach, a verifier too
            // busy (with `Retry-After`), or a pod it could not provision
            // (with the client's refund in the body) is relayed, not a
            // failure.
            Some(503)
                if matches!(
                    relayable_body(response).and_then(body_code),
                    Some(
                        ErrorCode::MintUnavailable
                            | ErrorCode::VerifierUnavailable
                            | ErrorCode::ProvisioningFailed
                    )
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
                decision: Decision::LocalReply(refusal_reply(
                    &Rejection::new(
                        ErrorCode::VerifierUnavailable,
                        "the payment verifier is unavailable",
                    ),
                    pending.format(),
                )),
                counters: &[Counter::CalloutFailures],
            },
            FailureMode::Allow => Verdict {
                decision: Decision::forward(pending.credential_edits.clone()),
                counters: &[Counter::CalloutFailures, Counter::AllowedOnFailure],
            },
        }
    }

    /// The client's answer headers for a pass in the verifier's grant (a
    /// lease bought or extended): `X-Paygress-Pass` and a `Set-Cookie`
    /// scoped to the tier's paths until the lease ends. Nothing for no pass,
    /// or for one that does not verify here.
    fn handed_pass(
        &self,
        answer: &RequestView<'_>,
        secure: bool,
        now: u64,
    ) -> Vec<(String, String)> {
        let Some(pass) = answer.first_utf8(h::X_PAYGRESS_PASS).map(str::trim) else {
            return Vec::new();
        };
        // The verifier, which sold the lease, is the authority: a pass this
        // filter cannot check (a key it lacks during a rotation) still goes
        // to the client who paid for it, with a warning.
        let claims = match self.passes.verify(pass, now) {
            Ok(claims) | Err(PassError::Expired(claims)) => claims,
            Err(e) => match pass::decode_unverified(pass) {
                Ok((key_id, claims)) => {
                    warn!(
                        "the verifier's pass (key {key_id:?}) does not verify here ({e}): \
                         handed out; give this proxy the verifier's keys"
                    );
                    claims
                }
                Err(e) => {
                    warn!("the verifier's pass cannot be read ({e}): not handed out");
                    return Vec::new();
                }
            },
        };
        let Some(tier) = self.config.tier_by_id(&claims.tier) else {
            warn!(
                "the verifier's pass names tier {:?}, which is not configured",
                claims.tier
            );
            return Vec::new();
        };
        let max_age = claims.expires_at.saturating_sub(now);
        vec![
            (h::X_PAYGRESS_PASS.into(), pass.to_string()),
            (
                h::SET_COOKIE.into(),
                pass_carrier::set_cookie(pass, &tier.prefix, max_age, secure),
            ),
        ]
    }

    /// Decodes and pre-checks a token against the price, without fees.
    fn precheck(&self, found: &FoundToken<'_>, price: u64) -> Result<(), Rejection> {
        let token = precheck::decode(found.token, &self.limits)?;
        precheck::precheck(&token, &self.config, price, 0)
    }

    /// The 402 answer of a tier, in `format`: its JSON body, or its page
    /// (both encoded once, with the config).
    fn payment_required(&self, tier_index: usize, format: Format) -> LocalReply {
        let challenge = &self.config.tier(tier_index).challenge;
        match (format, &challenge.html) {
            (Format::Html, Some(page)) => {
                let mut headers = vec![(h::X_CASHU.into(), challenge.payment_request.clone())];
                headers.extend(html_headers());
                LocalReply {
                    status: PAYMENT_REQUIRED,
                    headers,
                    body: page.clone(),
                }
            }
            _ => LocalReply {
                status: PAYMENT_REQUIRED,
                headers: vec![
                    (h::X_CASHU.into(), challenge.payment_request.clone()),
                    (CONTENT_TYPE.into(), APPLICATION_JSON.into()),
                    (browser::VARY.into(), browser::VARY_ACCEPT.into()),
                ],
                body: challenge.body.clone(),
            },
        }
    }

    /// Relays a verifier refusal: its status, its JSON body and its
    /// `X-Cashu` (a 402 without one gets the tier's payment request). For a
    /// browser, the same answer as a page: the tier's own 402 page, or the
    /// refusal's code, words and refund in the error page.
    fn relay(
        &self,
        pending: &Pending,
        status: u16,
        answer: &RequestView<'_>,
        response: &CalloutResponse<'_>,
    ) -> LocalReply {
        let reply = self.relay_json(pending, status, answer, response);
        match pending.format() {
            Format::Json => reply,
            Format::Html => self.relay_html(pending, reply),
        }
    }

    /// A relayed refusal, made a page: a 402 whose payment request is the
    /// tier's gets the tier's page; a 400 or 503 the error page of its
    /// body's code, words and refund. Anything else stays JSON.
    fn relay_html(&self, pending: &Pending, reply: LocalReply) -> LocalReply {
        let creq = reply
            .headers
            .iter()
            .find(|(n, _)| n == h::X_CASHU)
            .map(|(_, v)| v.as_str());
        if reply.status == PAYMENT_REQUIRED {
            let tier = self.config.tier(pending.tier_index);
            return if creq == Some(tier.challenge.payment_request.as_str()) {
                let mut page = self.payment_required(pending.tier_index, Format::Html);
                page.headers
                    .extend(reply.headers.into_iter().filter(|(n, _)| n == RETRY_AFTER));
                page
            } else {
                reply
            };
        }
        let Some(refusal) = Refusal::parse(&reply.body) else {
            return reply;
        };
        if refusal.code.status() != reply.status {
            return reply;
        }
        let mut headers: Vec<(String, String)> = reply
            .headers
            .into_iter()
            .filter(|(n, _)| n != CONTENT_TYPE && n != browser::VARY)
            .collect();
        headers.extend(html_headers());
        LocalReply {
            status: reply.status,
            headers,
            body: browser::error_page(refusal.code, &refusal.message, refusal.refund.as_deref()),
        }
    }

    /// [`Plugin::relay`] for a JSON client.
    fn relay_json(
        &self,
        pending: &Pending,
        status: u16,
        answer: &RequestView<'_>,
        response: &CalloutResponse<'_>,
    ) -> LocalReply {
        let mut headers: Vec<(String, String)> = vec![
            (CONTENT_TYPE.into(), APPLICATION_JSON.into()),
            (browser::VARY.into(), browser::VARY_ACCEPT.into()),
        ];
        let challenge = (status == PAYMENT_REQUIRED)
            .then(|| self.payment_required(pending.tier_index, Format::Json));
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

/// The edits that remove every client-sent reserved header.
fn reserved_edits(headers: &Headers) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    for (name, _) in headers {
        if is_reserved(name) {
            edits.remove(name);
        }
    }
    edits
}

/// Sets the grant headers to `values`, replacing an earlier addition of any
/// of them in `edits`. The client's copies are gone already: every grant
/// header is reserved, so [`reserved_edits`] removed those present before
/// any grant (on the request itself, or before its callout). The host is
/// not asked to remove headers that are not there: each removal is a host
/// call on every granted request.
fn grant(edits: &mut HeaderEdits, values: impl IntoIterator<Item = (&'static str, Vec<u8>)>) {
    edits.add.retain(|(name, _)| {
        !h::GRANT_HEADERS
            .iter()
            .any(|g| g.eq_ignore_ascii_case(name))
    });
    edits.add.extend(
        values
            .into_iter()
            .map(|(name, value)| (name.to_string(), value)),
    );
}

/// The grant headers of a genuine pass.
fn pass_grant(claims: &Claims) -> Vec<(&'static str, Vec<u8>)> {
    let mut values = vec![
        (h::X_PAYMENT_VERIFIED, b"true".to_vec()),
        (h::X_USER_ID, claims.payer.as_bytes().to_vec()),
        (h::X_PAYGRESS_LEASE, claims.lease.as_bytes().to_vec()),
        (h::X_PAYMENT_TIER, claims.tier.as_bytes().to_vec()),
    ];
    if let Some(pod) = &claims.pod {
        values.push((h::X_PROVISIONED_POD, pod.as_bytes().to_vec()));
    }
    values
}

/// Whether a pass presented with a token goes to the verifier (to be topped
/// up): pass-shaped, printable ASCII, not too long. Anything else is no pass
/// of ours and is only kept from the upstream.
fn forwardable_pass(pass: &str) -> bool {
    pass.len() <= pass::MAX_PASS_LEN
        && pass.bytes().all(|b| b.is_ascii_graphic())
        && pass_carrier::is_pass_shaped(pass)
}

/// The JSON refusal: status from [`ErrorCode::status`], body from core.
pub fn rejection_reply(rejection: &Rejection) -> LocalReply {
    LocalReply {
        status: rejection.status(),
        headers: vec![(CONTENT_TYPE.into(), APPLICATION_JSON.into())],
        body: rejection.body(),
    }
}

/// A refusal in `format`: the JSON of [`rejection_reply`], or core's error
/// page; either with `Vary: Accept`, as the body depends on it.
pub fn refusal_reply(rejection: &Rejection, format: Format) -> LocalReply {
    match format {
        Format::Json => {
            let mut reply = rejection_reply(rejection);
            reply
                .headers
                .push((browser::VARY.into(), browser::VARY_ACCEPT.into()));
            reply
        }
        Format::Html => LocalReply {
            status: rejection.status(),
            headers: html_headers(),
            body: browser::error_page(rejection.code, &rejection.message, None),
        },
    }
}

/// The headers of a page: `Content-Type`, the CSP, `Vary: Accept`.
fn html_headers() -> Vec<(String, String)> {
    browser::html_headers()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A JSON refusal body, read back: its code, words and refund.
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    message: String,
    refund: Option<String>,
}

impl Refusal {
    fn parse(body: &str) -> Option<Refusal> {
        let [code, error, refund] = object_strings(body, ["code", "error", "refund"])?;
        Some(Refusal {
            code: ErrorCode::parse(code.as_deref()?)?,
            message: error.unwrap_or_default(),
            refund,
        })
    }
}

/// The string members `keys` of a JSON object (the last of a repeated key;
/// `None` for one that is missing or not a string), or `None` when `text`
/// is not a JSON object, as `serde_json::Value` reads one.
fn object_strings<const N: usize>(text: &str, keys: [&str; N]) -> Option<[Option<String>; N]> {
    let mut r = json::Reader::new(text.as_bytes());
    if !r.peek_object() {
        return None;
    }
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    r.value_with(&mut |r, key| match keys.iter().position(|k| *k == key) {
        Some(i) => {
            let value = r.value_string()?;
            if let Some(slot) = found.get_mut(i) {
                *slot = value;
            }
            Ok(true)
        }
        None => Ok(false),
    })
    .ok()?;
    r.end().ok()?;
    Some(found)
}

impl Pending {
    /// The format of a refusal to this request.
    fn format(&self) -> Format {
        Format::negotiate(self.accept.iter().map(String::as_str))
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
    object_strings(text, []).map(|[]| text)
}

/// The `code` of a JSON refusal body.
fn body_code(body: &str) -> Option<ErrorCode> {
    let [code] = object_strings(body, ["code"])?;
    ErrorCode::parse(code.as_deref()?)
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

    /// The format of a refusal (a 402, 400 or 503) to this request, by its
    /// `Accept` (values that are not UTF-8 are skipped). Read only on the
    /// way to such an answer.
    fn format(&self) -> Format {
        Format::negotiate(
            self.all(ACCEPT)
                .filter_map(|v| core::str::from_utf8(v).ok()),
        )
    }

    /// The request's `Accept` values, kept for a refusal that the
    /// verifier's answer may bring.
    fn accept(&self) -> Vec<String> {
        self.all(ACCEPT)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The first `Authorization` value that carries a Cashu token.
    fn cashu_authorization(&self) -> Option<Cow<'a, str>> {
        self.all(h::AUTHORIZATION)
            .map(String::from_utf8_lossy)
            .find(|v| extract::is_cashu_authorization(v))
    }

    /// Whether the client came over `https` (`:scheme`, or a load
    /// balancer's `X-Forwarded-Proto`).
    fn is_https(&self) -> bool {
        // Behind a load balancer that ends TLS, Envoy sees `http` and the
        // balancer says `X-Forwarded-Proto: https`. A client that sends it
        // over plain HTTP only gets a cookie its browser will not send back.
        [":scheme", "x-forwarded-proto"].into_iter().any(|name| {
            self.first(name)
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("https"))
        })
    }

    /// The pass the request presents (not checked yet): `X-Paygress-Pass`,
    /// then, when `bearer_passes`, an `Authorization: Bearer p1.…`, then
    /// the `paygress_pass` cookie.
    fn find_pass(&self, bearer_passes: bool) -> Option<(String, PassSource)> {
        let header = self.first(h::X_PAYGRESS_PASS);
        let authorizations: Vec<Cow<'a, str>> = if bearer_passes {
            self.all(h::AUTHORIZATION)
                .map(String::from_utf8_lossy)
                .collect()
        } else {
            Vec::new()
        };
        let cookies: Vec<Cow<'a, str>> = self.all(h::COOKIE).map(String::from_utf8_lossy).collect();
        pass_carrier::find_pass(
            header.as_deref(),
            authorizations.iter().map(AsRef::as_ref),
            cookies.iter().map(AsRef::as_ref),
        )
        .map(|found| (found.pass.to_string(), found.source))
    }

    /// The edits that keep every credential from the upstream: every
    /// `X-Cashu` and `X-Paygress-Pass`, every `Authorization` that carries a
    /// Cashu token or (when `bearer_passes`) a pass, and the `paygress_pass`
    /// cookie out of every `Cookie` (the other values and cookies are put
    /// back).
    fn credential_edits(&self, bearer_passes: bool) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        for name in [h::X_CASHU, h::X_PAYGRESS_PASS] {
            if self.all(name).next().is_some() {
                edits.remove(name);
            }
        }
        self.rewrite(&mut edits, h::AUTHORIZATION, |v| {
            let is_pass = bearer_passes && pass_carrier::bearer_pass(v).is_some();
            if is_pass || extract::is_cashu_authorization(v) {
                Rewrite::Drop
            } else {
                Rewrite::Keep
            }
        });
        self.rewrite(
            &mut edits,
            h::COOKIE,
            |v| match pass_carrier::without_pass_cookie(v) {
                None => Rewrite::Keep,
                Some(rest) if rest.is_empty() => Rewrite::Drop,
                Some(rest) => Rewrite::Replace(rest.into_bytes()),
            },
        );
        edits
    }

    /// Rewrites every value of a header by `f` (which reads it as text,
    /// invalid UTF-8 replaced): when any is not kept as it is, the header is
    /// removed and the kept (raw) and replaced values are added back, in
    /// their order.
    fn rewrite(&self, edits: &mut HeaderEdits, name: &'static str, f: impl Fn(&str) -> Rewrite) {
        let values: Vec<(&[u8], Rewrite)> = self
            .all(name)
            .map(|v| (v, f(&String::from_utf8_lossy(v))))
            .collect();
        if values.iter().all(|(_, r)| *r == Rewrite::Keep) {
            return;
        }
        edits.remove(name);
        for (raw, rewrite) in values {
            let value = match rewrite {
                Rewrite::Keep => raw.to_vec(),
                Rewrite::Replace(value) => value,
                Rewrite::Drop => continue,
            };
            edits.add.push((name.to_string(), value));
        }
    }
}

/// What becomes of one header value on the way upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rewrite {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

// Native only: the property tests' dependencies do not build for wasm32.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
