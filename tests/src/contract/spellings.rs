//! The catalogue of path and host spellings, and the checks that run it
//! through every ingress and against the verifier's `/auth` directly.
//!
//! The rule (docs/contract.md, "Pricing: spelling cannot lower a price"): a
//! path is priced at the highest price among its readings, (a) as sent
//! (query dropped, no dot-segment resolution, no percent-decoding:
//! `/premium/../free/x` reads as under `/premium`), (b) with percent-escapes
//! decoded (`/premium%2f..%2ffree` is `/premium/../free`), (c) with escapes
//! decoded and dot segments resolved (`\` read as `/`, `;` path parameters
//! kept and dropped), and (d) each of those ASCII case-folded; it is free
//! only when every reading is free. The authority of an `X-Original-URL`
//! ends at the first `/`, and one that holds `?`, `#`, `@`, `\` or
//! whitespace is a `400 malformed_request`.
//!
//! Each spelling carries the tier of its highest reading under the test
//! configs (`/free`, `/healthz` free; `/premium`; `/premium-plus`; anything
//! else the default price), written out by hand; [`model_tier`] is an
//! independent reading of the rule that checks the hand-written tiers, and
//! decides whether a path that reached an upstream was really free.
//!
//! Through a proxy, a spelling sent without a token must end in one of:
//! - a `402` whose amount (JSON body and `X-Cashu`) is at least the price
//!   of the spelling, with nothing upstream;
//! - a `400` (the verifier's `malformed_request`, or the proxy's own refusal
//!   of the request), or the proxy's redirect to another spelling, with
//!   nothing upstream;
//! - the upstream reached by a request whose target is free under the rule
//!   (the proxy normalised the spelling to a really free path, and priced
//!   that): no unpaid request reaches the upstream on a priced path.
//!
//! What reached the upstream is read from the bytes on its connections
//! ([`EchoUpstream::raw_heads_since`]), so a target the upstream's HTTP
//! server would not even parse still counts.

use std::fmt::Write as _;
use std::str::FromStr;

use cdk::nuts::PaymentRequest;
use serde_json::Value;

use super::{head_target, raw_get, Answer, Site};

/// The tiers of the test configs, cheapest first (the default price is at
/// most the `/premium` price in every config the tests use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Free,
    Default,
    Premium,
    PremiumPlus,
}

/// What each tier costs in one config.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    pub default: u64,
    pub premium: u64,
    pub premium_plus: u64,
}

impl Tier {
    pub fn amount(self, prices: Prices) -> u64 {
        match self {
            Tier::Free => 0,
            Tier::Default => prices.default,
            Tier::Premium => prices.premium,
            Tier::PremiumPlus => prices.premium_plus,
        }
    }
}

/// One spelling: the request target exactly as sent, the `Host` header
/// (`None`: the proxy's own `127.0.0.1:port`), the tier of its highest
/// reading, and why it is in the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Spelling {
    pub target: &'static str,
    pub host: Option<&'static str>,
    pub tier: Tier,
    pub why: &'static str,
}

const fn s(target: &'static str, tier: Tier, why: &'static str) -> Spelling {
    Spelling {
        target,
        host: None,
        tier,
        why,
    }
}

const fn h(host: &'static str, target: &'static str, tier: Tier, why: &'static str) -> Spelling {
    Spelling {
        target,
        host: Some(host),
        tier,
        why,
    }
}

use Tier::{Default as D, Free as F, Premium as P, PremiumPlus as PP};

/// The catalogue.
pub const CATALOGUE: &[Spelling] = &[
    // Plain spellings: what the rest is measured against.
    s("/free/x", F, "a free path"),
    s("/healthz", F, "the other free prefix"),
    s("/premium/x", P, "a paid path"),
    s("/premium-plus/x", PP, "the dearest tier"),
    s("/premiumx", D, "prefixes match whole segments"),
    s("/free?/premium", F, "the query is not the path"),
    s("/free/a/../b", F, "dot segments that stay under /free"),
    s("/free/./x", F, "a . segment under /free"),
    // Dot segments, raw.
    s("/free/../premium/x", P, "resolved: /premium/x"),
    s("/free/../premium-plus/x", PP, "resolved: /premium-plus/x"),
    s(
        "/premium/../free/x",
        P,
        "as sent: under /premium (resolved: /free/x)",
    ),
    s(
        "/premium-plus/../free/x",
        PP,
        "as sent: under /premium-plus",
    ),
    s("/premium/./x", P, "a . segment"),
    s("/./premium/x", P, "a leading . segment"),
    s("/../premium/x", P, ".. above the root"),
    s("/free/../../premium-plus/x", PP, "two .. from /free"),
    s("/premium/x/../../free/y", P, "as sent: under /premium"),
    s(
        "/free//../premium/x",
        P,
        "RFC 3986 keeps the empty segment (/free/premium/x), merged slashes give /premium/x",
    ),
    // Dot segments, percent-encoded.
    s("/free/%2e%2e/premium/x", P, "%2e%2e is .."),
    s("/free/%2E%2E/premium-plus/x", PP, "%2E%2E is .."),
    s("/free/.%2e/premium/x", P, ".%2e is .."),
    s("/free/%2e./premium/x", P, "%2e. is .."),
    s("/premium/%2e%2e/free/x", P, "as sent: under /premium"),
    s(
        "/premium-plus/%2E%2E/free/x",
        PP,
        "as sent: under /premium-plus",
    ),
    s(
        "/premium/%252e%252e/free/x",
        P,
        "double-encoded: decoded once it is %2e%2e, not ..",
    ),
    // Slashes, literal and encoded.
    s("//premium/x", P, "a doubled leading slash"),
    s("/premium//x", P, "a doubled inner slash"),
    s("///premium-plus///x", PP, "tripled slashes"),
    s("/free%2F..%2Fpremium/x", P, "%2F is / once decoded"),
    s(
        "/premium%2f..%2ffree",
        P,
        "decoded: /premium/../free (under /premium); resolved: /free",
    ),
    s(
        "/free%2f%2e%2e%2fpremium-plus/x",
        PP,
        "every separator encoded",
    ),
    // Backslashes, literal and encoded.
    s("/free\\..\\premium\\x", P, "\\ read as /"),
    s("/free/..\\premium-plus/x", PP, "..\\ read as ../"),
    s("/free%5C..%5Cpremium/x", P, "%5C is \\ once decoded"),
    s("/free%5c..%5cpremium-plus/x", PP, "%5c is \\ once decoded"),
    s(
        "/premium\\..\\free\\x",
        D,
        "as sent: one segment (default price); resolved: /free/x",
    ),
    // Case.
    s("/PREMIUM/x", P, "case-folded: /premium/x"),
    s("/Premium-Plus/x", PP, "case-folded: /premium-plus/x"),
    s("/pReMiUm-PlUs", PP, "case-folded: /premium-plus"),
    s(
        "/FREE/x",
        D,
        "free only case-folded; as sent it is not free: the default price",
    ),
    s("/HEALTHZ", D, "free only case-folded"),
    s(
        "/%50REMIUM/x",
        P,
        "decoded /PREMIUM/x, case-folded /premium/x",
    ),
    s("/%70remium-plus/x", PP, "%70 is p"),
    s("/free/../PREMIUM-PLUS/x", PP, "resolved and case-folded"),
    s(
        "/Free/../Premium/x",
        P,
        "resolved /Premium/x, case-folded /premium/x",
    ),
    // `;` path parameters.
    s(
        "/free/..;/premium/x",
        P,
        "..; is .. where servers drop ;params",
    ),
    s("/premium;x/y", P, "a ;param on the tier's segment"),
    s("/premium;jsessionid=1", P, "a session ;param"),
    s("/free;x/../premium-plus/x", PP, "a ;param before .."),
    s(
        "/free/..;x/premium-plus/r",
        PP,
        "..;x is .. without the param",
    ),
    s("/free/%3b/../premium/x", P, "an encoded ; segment"),
    s("/premium/..;/free/x", P, "as sent: under /premium"),
    // Query and fragment.
    s(
        "/premium/x?/../../free",
        P,
        "dot segments in the query are not the path",
    ),
    s(
        "/premium/x#/../../free",
        P,
        "a fragment in the request target",
    ),
    // Absolute-form request targets.
    s("http://h/premium/x", P, "absolute-form"),
    s(
        "http://h/free/../premium-plus/x",
        PP,
        "absolute-form with dot segments",
    ),
    s("http://h/PREMIUM/x", P, "absolute-form, upper case"),
    s("http://h//premium/x", P, "absolute-form, doubled slash"),
    s("http://h/free/x", F, "absolute-form, free"),
    // Hosts: NGINX writes X-Original-URL as http://$http_host$request_uri.
    h(
        "x?",
        "/premium-plus/r",
        PP,
        "X-Original-URL http://x?/premium-plus/r",
    ),
    h(
        "x#",
        "/premium-plus/r",
        PP,
        "X-Original-URL http://x#/premium-plus/r",
    ),
    h("a@b", "/premium-plus/r", PP, "userinfo in the authority"),
    h(
        "x\\y",
        "/premium-plus/r",
        PP,
        "a backslash in the authority",
    ),
    h("a b", "/premium-plus/r", PP, "whitespace in the authority"),
    h("app.example.com.", "/premium-plus/r", PP, "a trailing dot"),
    h(
        "app.example.com..",
        "/premium-plus/r",
        PP,
        "two trailing dots",
    ),
    h("", "/premium-plus/r", PP, "an empty Host"),
    h("x?", "/free/x", F, "a free path behind a Host with ?"),
];

/// Whether an authority makes an `X-Original-URL` malformed.
pub fn bad_authority(authority: &str) -> bool {
    authority
        .chars()
        .any(|c| matches!(c, '?' | '#' | '@' | '\\') || c.is_whitespace())
}

// ---------------------------------------------------------------------------
// The rule, as a model.

/// The path part of a request target: an absolute-form target loses its
/// scheme and authority (which ends at the first `/`).
fn path_part(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    match target.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        _ => target,
    }
}

/// The path as sent: no query, no fragment, nothing decoded or resolved.
fn raw_reading(target: &str) -> String {
    let path = path_part(target);
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].to_string()
}

fn decode_once(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escape {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path with percent-escapes decoded once, `\` as `/`, empty and `.`
/// segments dropped and `..` resolved (never above the root); with
/// `drop_params`, `;…` taken off every segment first.
fn resolved_reading(target: &str, drop_params: bool) -> String {
    let decoded = decode_once(&raw_reading(target));
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = if drop_params {
            segment.split(';').next().unwrap_or("")
        } else {
            segment
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Every reading of a target under the rule.
pub fn readings(target: &str) -> Vec<String> {
    let mut all = vec![
        raw_reading(target),
        decode_once(&raw_reading(target)),
        resolved_reading(target, false),
        resolved_reading(target, true),
    ];
    let folded: Vec<String> = all.iter().map(|r| r.to_ascii_lowercase()).collect();
    all.extend(folded);
    all
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The tier of one reading under the test configs.
fn tier_of_reading(path: &str) -> Tier {
    if under(path, "/free") || under(path, "/healthz") {
        Tier::Free
    } else if under(path, "/premium-plus") {
        Tier::PremiumPlus
    } else if under(path, "/premium") {
        Tier::Premium
    } else {
        Tier::Default
    }
}

/// The tier of a target under the rule: its dearest reading.
pub fn model_tier(target: &str) -> Tier {
    readings(target)
        .iter()
        .map(|r| tier_of_reading(r))
        .max()
        .unwrap_or(Tier::Default)
}

/// Whether every reading of a target has the same tier: then any
/// implementation of the rule must give exactly that price.
pub fn readings_agree(target: &str) -> bool {
    let tiers: Vec<Tier> = readings(target)
        .iter()
        .map(|r| tier_of_reading(r))
        .collect();
    tiers.windows(2).all(|w| w[0] == w[1])
}

// ---------------------------------------------------------------------------
// Reading answers.

/// The amount of a 402: its JSON body's `amount`, which must equal the
/// amount of the NUT-18 request in `X-Cashu`.
fn amount_of_402(answer: &Answer) -> Result<u64, String> {
    let body: Value = serde_json::from_str(&answer.body)
        .map_err(|err| format!("the 402 body is not JSON ({err}): {:?}", answer.body))?;
    let amount = body["amount"]
        .as_u64()
        .ok_or_else(|| format!("the 402 body has no amount: {body}"))?;
    let creq = answer
        .header("x-cashu")
        .ok_or_else(|| "the 402 has no X-Cashu".to_string())?;
    let request = PaymentRequest::from_str(creq)
        .map_err(|err| format!("cdk cannot parse X-Cashu {creq:?}: {err}"))?;
    let creq_amount = request.amount.map(u64::from);
    if creq_amount != Some(amount) {
        return Err(format!(
            "X-Cashu asks {creq_amount:?}, the body {amount}: {answer:?}"
        ));
    }
    Ok(amount)
}

/// The `code` of a JSON refusal, if the body is one.
fn json_code(answer: &Answer) -> Option<String> {
    serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
}

fn describe(spelling: &Spelling) -> String {
    match spelling.host {
        Some(host) => format!("{} (Host: {host:?})", spelling.target),
        None => spelling.target.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Through a proxy.

/// Sends every spelling of [`CATALOGUE`] without a token through the proxy
/// at `addr` (`127.0.0.1:port`), and panics listing every spelling that
/// ended otherwise than the module's rules allow. Prints one line per
/// spelling.
pub async fn check_catalogue(name: &str, addr: &str, site: &impl Site, prices: Prices) {
    let mut failures = Vec::new();
    let mut report = String::new();
    for spelling in CATALOGUE {
        let line = check_one(addr, site, prices, spelling).await;
        let _ = writeln!(
            report,
            "[{name}] {:<44} {}",
            describe(spelling),
            match &line {
                Ok(ok) => format!("ok: {ok}"),
                Err(err) => format!("FAIL: {err}"),
            }
        );
        if let Err(err) = line {
            failures.push(format!("{}: {err} [{}]", describe(spelling), spelling.why));
        }
    }
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "[{name}] {} of {} spellings broke the rule:\n{}",
        failures.len(),
        CATALOGUE.len(),
        failures.join("\n")
    );
}

/// One spelling, and where the proxy redirects it (once): the target of a
/// redirect is priced on its own reading.
async fn check_one(
    addr: &str,
    site: &impl Site,
    prices: Prices,
    spelling: &Spelling,
) -> Result<String, String> {
    let sent = check_sent(
        addr,
        site,
        prices,
        spelling.target,
        spelling.host,
        spelling.tier,
    )
    .await?;
    let (status, location) = match sent {
        Sent::Done(ok) => return Ok(ok),
        Sent::Redirect(status, location) => (status, location),
    };
    // Only a redirect within this server can be followed here.
    let target = location
        .strip_prefix("http://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(&location);
    if !target.starts_with('/') {
        return Err(format!("a {status} redirect to {location:?}"));
    }
    let tier = model_tier(target);
    match check_sent(addr, site, prices, target, spelling.host, tier).await? {
        Sent::Done(ok) => Ok(format!("{status} redirect to {target}, then {ok}")),
        Sent::Redirect(again, location) => Err(format!(
            "{status} redirect to {target}, then {again} to {location}"
        )),
    }
}

/// How one request ended, when it kept the rule.
#[derive(Debug)]
enum Sent {
    Done(String),
    /// The proxy's redirect: its status and `Location`.
    Redirect(u16, String),
}

/// Sends `GET target` with `Host: host` (the proxy's address when `None`),
/// no token, and judges the outcome for a target of price `tier`.
async fn check_sent(
    addr: &str,
    site: &impl Site,
    prices: Prices,
    target: &str,
    host: Option<&str>,
    tier: Tier,
) -> Result<Sent, String> {
    let want = tier.amount(prices);
    let upstream = site.upstream();
    let mark = upstream.wire_mark();
    let parsed_before = upstream.count();
    let answer = raw_get(addr, target, host.unwrap_or(addr), &[]).await;
    let reached = upstream.raw_heads_since(&mark);
    let parsed = upstream.count() - parsed_before;
    if parsed > reached.len() {
        return Err(format!(
            "the upstream handled {parsed} requests but its wire shows {}",
            reached.len()
        ));
    }

    if !reached.is_empty() {
        // Only a request for a really free path may reach the upstream
        // without a token, and without any verification header.
        let mut seen = Vec::new();
        for head in &reached {
            let got = head_target(head);
            let got_tier = model_tier(got);
            if got_tier != Tier::Free {
                return Err(format!(
                    "UNPAID: the upstream got {got:?} (priced {got_tier:?}, {} sat) without a payment; answer {}",
                    got_tier.amount(prices),
                    answer.as_ref().map_or(0, |a| a.status)
                ));
            }
            let verified = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("x-payment-verified")
                        && v.trim().eq_ignore_ascii_case("true")
                })
            });
            if verified {
                return Err(format!(
                    "the upstream got X-Payment-Verified: true without a payment: {head}"
                ));
            }
            seen.push(got.to_string());
        }
        return Ok(Sent::Done(format!("upstream got free {seen:?}")));
    }

    let Some(answer) = answer else {
        return Ok(Sent::Done(
            "the proxy closed the connection without an answer".into(),
        ));
    };
    let odd_host = host.is_some_and(bad_authority);
    match answer.status {
        402 => {
            if tier == Tier::Free {
                return Err(format!("a free spelling was charged: {answer:?}"));
            }
            let amount = amount_of_402(&answer)?;
            if amount < want {
                return Err(format!(
                    "UNDERPRICED: 402 for {amount}, the spelling costs {want} ({tier:?})"
                ));
            }
            Ok(Sent::Done(format!("402 for {amount} (≥ {want})")))
        }
        400 => match json_code(&answer) {
            Some(code) if code == "malformed_request" => {
                if tier == Tier::Free && !odd_host {
                    Err(format!("a free spelling was refused: {answer:?}"))
                } else {
                    Ok(Sent::Done("400 malformed_request".into()))
                }
            }
            Some(code) => Err(format!(
                "400 {code} without a token (expected malformed_request): {answer:?}"
            )),
            None => Ok(Sent::Done("400 from the proxy".into())),
        },
        // A proxy that sends the client to another spelling (Envoy's
        // UNESCAPE_AND_REDIRECT) let nothing through: the next request is
        // priced on its own.
        status @ (301 | 302 | 307 | 308) if json_code(&answer).is_none() => {
            match answer.header("location") {
                Some(location) => Ok(Sent::Redirect(status, location.to_string())),
                None => Err(format!("a {status} without Location: {answer:?}")),
            }
        }
        _ => Err(format!("unexpected answer: {answer:?}")),
    }
}

// ---------------------------------------------------------------------------
// The verifier's /auth, directly.

/// The three ways a proxy hands the original request to `/auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `GET /auth<target>` (Envoy ext_authz `path_prefix`).
    Path,
    /// `X-Original-URL: http://<host><target>` (NGINX).
    OriginalUrl,
    /// `X-Forwarded-Uri: <target>`, `X-Forwarded-Host: <host>` (Traefik,
    /// the filter's callout).
    ForwardedUri,
}

/// Asks the verifier at `addr` (`127.0.0.1:port`) about every spelling of
/// [`CATALOGUE`] through each [`Source`], without a token, and panics
/// listing every answer that breaks the rule: a priced spelling is a 402 for
/// at least its price (exactly its price when all its readings agree); a
/// free one is a 200; an `X-Original-URL` whose authority holds `?`, `#`,
/// `@`, `\` or whitespace is a 400 `malformed_request`.
pub async fn check_catalogue_at_verifier(addr: &str, prices: Prices) {
    let mut failures = Vec::new();
    let mut report = String::new();
    for spelling in CATALOGUE {
        for source in [Source::Path, Source::OriginalUrl, Source::ForwardedUri] {
            let Some(result) = verifier_one(addr, prices, spelling, source).await else {
                continue;
            };
            let _ = writeln!(
                report,
                "[verifier {source:?}] {:<44} {}",
                describe(spelling),
                match &result {
                    Ok(ok) => format!("ok: {ok}"),
                    Err(err) => format!("FAIL: {err}"),
                }
            );
            if let Err(err) = result {
                failures.push(format!(
                    "{source:?} {}: {err} [{}]",
                    describe(spelling),
                    spelling.why
                ));
            }
        }
    }
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "[verifier] {} answers broke the rule:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn verifier_one(
    addr: &str,
    prices: Prices,
    spelling: &Spelling,
    source: Source,
) -> Option<Result<String, String>> {
    let host = spelling.host.unwrap_or("app.example.com");
    let origin_form = spelling.target.starts_with('/');
    let answer = match source {
        Source::Path => {
            if !origin_form || spelling.host.is_some() {
                return None;
            }
            let target = format!("/auth{}", spelling.target);
            raw_get(addr, &target, addr, &[]).await
        }
        Source::OriginalUrl => {
            let url = if origin_form {
                format!("http://{host}{}", spelling.target)
            } else {
                spelling.target.to_string()
            };
            raw_get(
                addr,
                "/auth",
                addr,
                &[("X-Original-URL", &url), ("X-Original-Method", "GET")],
            )
            .await
        }
        Source::ForwardedUri => {
            let mut headers = vec![
                ("X-Forwarded-Uri", spelling.target),
                ("X-Forwarded-Method", "GET"),
            ];
            if let Some(host) = spelling.host {
                headers.push(("X-Forwarded-Host", host));
            }
            raw_get(addr, "/auth", addr, &headers).await
        }
    };
    let Some(answer) = answer else {
        return Some(Err("the verifier closed the connection".into()));
    };
    // The verifier's HTTP server may refuse a request target it cannot
    // parse (a 400 that is not the verifier's JSON): not a grant.
    if source == Source::Path && answer.status == 400 && json_code(&answer).is_none() {
        return Some(Ok(format!(
            "400 from the verifier's HTTP server: {}",
            answer.body
        )));
    }
    let malformed_authority = source == Source::OriginalUrl && origin_form && bad_authority(host);
    let expected = expected_at_verifier(spelling, prices);
    Some(judge_verifier_answer(
        &answer,
        expected,
        malformed_authority,
        spelling.host.is_some_and(bad_authority),
    ))
}

/// What the verifier must answer about a spelling (no token).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// 0: a 200.
    pub amount: u64,
    /// Whether the amount is exact (all readings agree) or a lower bound.
    pub exact: bool,
}

pub fn expected_at_verifier(spelling: &Spelling, prices: Prices) -> Expected {
    Expected {
        amount: spelling.tier.amount(prices),
        exact: readings_agree(spelling.target),
    }
}

/// Judges one `/auth` answer. `malformed`: it must be a 400
/// `malformed_request`; `may_be_malformed`: a 400 `malformed_request` is
/// acceptable too (an odd host in a header the rule says nothing of).
pub fn judge_verifier_answer(
    answer: &Answer,
    expected: Expected,
    malformed: bool,
    may_be_malformed: bool,
) -> Result<String, String> {
    if malformed || (may_be_malformed && answer.status == 400) {
        return match (answer.status, json_code(answer).as_deref()) {
            (400, Some("malformed_request")) => Ok("400 malformed_request".into()),
            _ => Err(format!(
                "expected 400 malformed_request, got {} {}",
                answer.status, answer.body
            )),
        };
    }
    match (answer.status, expected.amount) {
        (200, 0) => Ok("200".into()),
        (status, 0) => Err(format!(
            "a free spelling got {status} {} (expected 200)",
            answer.body
        )),
        (402, want) => {
            let amount = amount_of_402(answer)?;
            if amount < want {
                Err(format!("UNDERPRICED: 402 for {amount}, it costs {want}"))
            } else if expected.exact && amount != want {
                Err(format!(
                    "402 for {amount}; every reading costs {want} (overpriced)"
                ))
            } else {
                Ok(format!("402 for {amount}"))
            }
        }
        (status, want) => Err(format!(
            "{status} {} where a 402 for {want} was due",
            answer.body
        )),
    }
}

/// Checks the hand-written tiers of the catalogue against the model of the
/// rule, and the catalogue's breadth.
pub fn check_catalogue_against_the_model() {
    assert!(
        CATALOGUE.len() >= 40,
        "the catalogue has {} spellings",
        CATALOGUE.len()
    );
    let mut wrong = Vec::new();
    for spelling in CATALOGUE {
        let model = model_tier(spelling.target);
        if model != spelling.tier {
            wrong.push(format!(
                "{}: written {:?}, the rule gives {model:?} (readings {:?})",
                spelling.target,
                spelling.tier,
                readings(spelling.target)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every tier, every kind of spelling.
    for tier in [Tier::Free, Tier::Default, Tier::Premium, Tier::PremiumPlus] {
        assert!(
            CATALOGUE.iter().any(|s| s.tier == tier),
            "no {tier:?} spelling"
        );
    }
    for needle in [
        "%2e%2e", "%2E%2E", ".%2e", "//", "%2F", "%5C", "\\", ";", "/../", "/./", "http://",
    ] {
        assert!(
            CATALOGUE.iter().any(|s| s.target.contains(needle)),
            "no spelling with {needle:?}"
        );
    }
    // The model itself, on the examples of docs/contract.md.
    assert_eq!(model_tier("/premium/../free/x"), Tier::Premium);
    assert_eq!(model_tier("/PREMIUM/x"), Tier::Premium);
    assert_eq!(model_tier("/free/x?/premium"), Tier::Free);
    assert_eq!(model_tier("/free/x"), Tier::Free);
    assert_eq!(model_tier("/premium%2f..%2ffree"), Tier::Premium);
    assert_eq!(model_tier("/free/..;/premium"), Tier::Premium);
    assert!(readings_agree("/premium/x"));
    assert!(!readings_agree("/premium/../free/x"));
    assert!(bad_authority("x?") && bad_authority("a b") && !bad_authority("h.example."));
}

/// One `/auth` request: the path after `/auth` (`""` for none) and the
/// original-request headers.
#[derive(Debug, Clone, Copy)]
pub struct AuthCase {
    pub path: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    /// The price due (0: a 200); `None`: a 400 `malformed_request`.
    pub due: Option<Tier>,
}

/// More than one source of the original request: when they disagree, the
/// higher price applies; when they agree on a free path, it is free.
pub const DISAGREEING_SOURCES: &[AuthCase] = &[
    AuthCase {
        path: "/free",
        headers: &[("X-Forwarded-Uri", "/premium")],
        due: Some(Tier::Premium),
    },
    AuthCase {
        path: "/free/x",
        headers: &[("X-Original-URL", "http://app.example.com/premium-plus/x")],
        due: Some(Tier::PremiumPlus),
    },
    AuthCase {
        path: "",
        headers: &[
            ("X-Original-URL", "http://app.example.com/free/x"),
            ("X-Forwarded-Uri", "/premium-plus/x"),
        ],
        due: Some(Tier::PremiumPlus),
    },
    AuthCase {
        path: "",
        headers: &[
            ("X-Original-URL", "http://app.example.com/premium/x"),
            ("X-Forwarded-Uri", "/free/x"),
        ],
        due: Some(Tier::Premium),
    },
    AuthCase {
        path: "/premium-plus/x",
        headers: &[("X-Forwarded-Uri", "/free")],
        due: Some(Tier::PremiumPlus),
    },
    AuthCase {
        path: "/free/x",
        headers: &[("X-Forwarded-Uri", "/premium/../free/x")],
        due: Some(Tier::Premium),
    },
    AuthCase {
        path: "/free/x",
        headers: &[
            ("X-Forwarded-Uri", "/free/y"),
            ("X-Original-URL", "http://app.example.com/free/z"),
        ],
        due: Some(Tier::Free),
    },
];

/// `X-Original-URL` authorities: the authority ends at the first `/`; one
/// with `?`, `#`, `@`, `\` or whitespace is a 400 `malformed_request`,
/// whatever the path; ordinary ones price by the path.
pub const AUTHORITIES: &[AuthCase] = &[
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://x?/premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://x#/premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://a@b/premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "https://user:pw@h/free/x")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://x\\y/premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://a b/premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://a\tb/premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://x?/free/x")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://x?y/free/../premium-plus/r")],
        due: None,
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://app.example.com./premium-plus/r")],
        due: Some(Tier::PremiumPlus),
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://[::1]:8080/premium/x")],
        due: Some(Tier::Premium),
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://h:80/free/x?next=/premium")],
        due: Some(Tier::Free),
    },
    AuthCase {
        path: "",
        headers: &[("X-Original-URL", "http://h")],
        due: Some(Tier::Default),
    },
];

/// Sends each case to the verifier at `addr` and panics listing the ones
/// answered otherwise than due (exact prices: these readings agree).
pub async fn check_auth_cases(label: &str, addr: &str, prices: Prices, cases: &[AuthCase]) {
    let mut failures = Vec::new();
    for case in cases {
        let target = format!("/auth{}", case.path);
        let Some(answer) = raw_get(addr, &target, addr, case.headers).await else {
            failures.push(format!("{case:?}: the verifier closed the connection"));
            continue;
        };
        let result = match case.due {
            None => judge_verifier_answer(
                &answer,
                Expected {
                    amount: 0,
                    exact: true,
                },
                true,
                true,
            ),
            Some(tier) => judge_verifier_answer(
                &answer,
                Expected {
                    amount: tier.amount(prices),
                    exact: true,
                },
                false,
                false,
            ),
        };
        eprintln!(
            "[{label}] {target} {:?} → {}",
            case.headers,
            match &result {
                Ok(ok) => format!("ok: {ok}"),
                Err(err) => format!("FAIL: {err}"),
            }
        );
        if let Err(err) = result {
            failures.push(format!("{target} {:?}: {err}", case.headers));
        }
    }
    assert!(
        failures.is_empty(),
        "[{label}] {} of {} cases broke the rule:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
