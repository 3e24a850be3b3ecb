//! Everything ingress-specific, in one place: how each proxy hands the
//! verifier the request it asks about, and how each wants the answer.
//!
//! **Reading** ([`read_request`]): the original request comes from the path
//! after `/auth` (Envoy ext_authz `path_prefix`), `X-Original-URL` /
//! `X-Original-Method` (NGINX), and `X-Forwarded-Uri` / `-Method` / `-Host`
//! (Traefik, the filter's callout); every source present is priced. The
//! token from `X-Cashu`, `Authorization: Cashu` or `Authorization: Bearer`
//! (paygress-core's `extract`); a lease's pass from `X-Paygress-Pass`,
//! `Authorization: Bearer p1.…` or the `paygress_pass` cookie
//! (paygress-core's `pass_carrier`); `X-Required-Amount`; the deadline from
//! `X-Paygress-Deadline-Ms`.
//!
//! **Answering**: statuses come from paygress-core only
//! ([`paygress_core::ErrorCode::status`] through [`AuthError::status`]; 402
//! for a missing payment).
//!
//! * **NGINX mode** (`X-Paygress-Mode: nginx` or `?mode=nginx` on the
//!   `/auth` request): NGINX's `auth_request` turns every status but
//!   2xx/401/403 into 500, so any answer but 200 is sent as `401` carrying
//!   the real status in `X-Paygress-Status` and the JSON body in
//!   `X-Paygress-Body` (non-ASCII escaped as `\uXXXX`), with `X-Cashu` kept;
//!   an `error_page` location turns it back into the real 402 or 400.
//! * **Envoy ext_authz**: a grant names the token and pass headers in
//!   `x-envoy-auth-headers-to-remove`, so neither goes upstream.
//! * **Browsers** (every mode but NGINX's): a refusal (402, 400, 503) to a
//!   request whose `Accept` prefers `text/html` is a page
//!   ([`paygress_core::browser`]): the tier's 402 page, built with the
//!   config, or the error page; with `Content-Security-Policy`. Every
//!   refusal carries `Vary: Accept`. NGINX's mode stays JSON (its body
//!   travels in a header).
//! * **Every proxy**: a grant to a request that sent cookies answers with
//!   `Cookie`: its cookies without the pass's, for the proxy to put on the
//!   upstream request in place of the client's (ext_authz
//!   `allowed_upstream_headers`, Traefik `authResponseHeaders`, NGINX
//!   `auth_request_set`). A grant that sold or extended a lease carries
//!   `X-Paygress-Pass` and `Set-Cookie`, for the proxy to hand to the
//!   client.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use paygress_core::browser::{self, Format};
use paygress_core::extract::{self, FoundToken};
use paygress_core::headers as h;
use paygress_core::outcome::payment_required_body;
use paygress_core::{pass_carrier, CompiledConfig, TokenLimits};

use crate::decision::{AuthRequest, Decision, Grant, OriginalRequest};
use crate::error::AuthError;

/// The longest `X-Original-URL` / `X-Forwarded-Uri` read, in bytes.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// Reads an `/auth` request. `default_deadline` applies when the caller
/// names none.
/// `bearer_passes`: whether an `Authorization: Bearer p1.…` is a pass (the
/// config has pass keys) or the application's own.
pub fn read_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    default_deadline: Duration,
    bearer_passes: bool,
) -> Result<AuthRequest, AuthError> {
    Ok(AuthRequest {
        original: original_request(method, uri, headers)?,
        token: find_token(headers),
        pass: find_pass(headers, bearer_passes)?,
        secure: headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")),
        required_amount: required_amount(headers),
        deadline: deadline_of(headers, default_deadline),
    })
}

/// The longest pass header read, in bytes.
const MAX_PASS_HEADER_LEN: usize = 8 * 1024;

/// Finds a lease's pass: `X-Paygress-Pass`, a `Bearer` pass (when
/// `bearer_passes`), or the cookie.
pub fn find_pass(headers: &HeaderMap, bearer_passes: bool) -> Result<Option<String>, AuthError> {
    let header = header_str(headers, h::X_PAYGRESS_PASS, MAX_PASS_HEADER_LEN)
        .map_err(|e| AuthError::PassInvalid(e.client_message()))?;
    let text = |name: &'static str| {
        headers
            .get_all(name)
            .iter()
            .filter(|v| v.len() <= MAX_PASS_HEADER_LEN)
            .filter_map(|v| v.to_str().ok())
    };
    let authorizations = text(h::AUTHORIZATION).filter(|_| bearer_passes);
    Ok(
        pass_carrier::find_pass(header, authorizations, text(h::COOKIE))
            .map(|found| found.pass.to_string()),
    )
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

/// The header that asks for the NGINX mode.
pub const X_PAYGRESS_MODE: &str = "x-paygress-mode";

/// The format of a refusal to an `/auth` request: a page when the
/// request's `Accept` prefers `text/html` (the client's, which Traefik and
/// ext_authz pass along), JSON otherwise and always in NGINX's mode. Read
/// only for a refusal.
pub fn refusal_format(headers: &HeaderMap, nginx: bool) -> Format {
    if nginx {
        return Format::Json;
    }
    Format::negotiate(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// The response to an `/auth` decision, JSON (as `/lease` answers too).
pub fn decision_response(decision: &Decision, config: &CompiledConfig) -> Response {
    match decision {
        Decision::Allow(grant) => grant_response(grant),
        Decision::PaymentRequired { amount, tier_index } => {
            match config.challenge_for(config.tier(*tier_index), *amount) {
                Some(challenge) => {
                    let mut r = json_response(StatusCode::PAYMENT_REQUIRED, challenge.body.clone());
                    insert(r.headers_mut(), h::X_CASHU, &challenge.payment_request);
                    r
                }
                None => json_response(
                    StatusCode::PAYMENT_REQUIRED,
                    payment_required_body(*amount, &config.unit, &config.mints, None, None),
                ),
            }
        }
        Decision::Refuse(err) => {
            let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = json_response(status, err.body());
            if let Some(seconds) = err.retry_after() {
                if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            r
        }
    }
}

fn grant_response(grant: &Grant) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::OK;
    let headers = r.headers_mut();
    if let Some(p) = &grant.payment {
        insert(headers, h::X_PAYMENT_VERIFIED, "true");
        insert(headers, h::X_PAYMENT_AMOUNT, &p.amount.to_string());
        if let Some(tier) = &p.tier {
            insert(headers, h::X_PAYMENT_TIER, tier);
        }
        insert(headers, h::X_USER_ID, &p.user_id);
    }
    if let Some(lease) = &grant.lease {
        let c = &lease.claims;
        insert(headers, h::X_PAYMENT_VERIFIED, "true");
        insert(headers, h::X_PAYMENT_TIER, &c.tier);
        insert(headers, h::X_USER_ID, &c.payer);
        insert(headers, h::X_PAYGRESS_LEASE, &c.lease);
        if let Some(pod) = &c.pod {
            insert(headers, h::X_PROVISIONED_POD, pod);
        }
        if let Some(issued) = &lease.issued {
            insert(headers, h::X_PAYGRESS_PASS, &issued.pass);
            insert(headers, h::SET_COOKIE, &issued.set_cookie);
        }
    }
    r
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Whether the `/auth` request asks for the NGINX mode.
pub fn wants_nginx_mode(uri: &Uri, headers: &HeaderMap) -> bool {
    let by_header = headers
        .get(X_PAYGRESS_MODE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("nginx"));
    let by_query = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.eq_ignore_ascii_case("mode=nginx")));
    by_header || by_query
}

/// The NGINX mode: any answer but 200 becomes a 401 that carries the real
/// status and body in headers (and keeps `X-Cashu`).
pub fn nginx_mode(response: Response) -> Response {
    if response.status() == StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let real = parts.status;
    parts.status = StatusCode::UNAUTHORIZED;
    insert(&mut parts.headers, h::X_PAYGRESS_STATUS, real.as_str());
    Response::from_parts(parts, body)
}

/// Adds the body, made header-safe, as `X-Paygress-Body` (the body is known
/// here as text, before it becomes a stream).
pub fn with_body_header(mut response: Response, body_text: &str) -> Response {
    insert(
        response.headers_mut(),
        h::X_PAYGRESS_BODY,
        &ascii_json(body_text),
    );
    response
}

/// The body text of a decision's response (what `X-Paygress-Body` carries).
pub fn decision_body(decision: &Decision, config: &CompiledConfig) -> String {
    match decision {
        Decision::Allow(_) => String::new(),
        Decision::PaymentRequired { amount, tier_index } => {
            match config.challenge_for(config.tier(*tier_index), *amount) {
                Some(challenge) => challenge.body.clone(),
                None => payment_required_body(*amount, &config.unit, &config.mints, None, None),
            }
        }
        Decision::Refuse(err) => err.body(),
    }
}

/// JSON text with every non-ASCII or control character as a `\uXXXX` escape
/// (still the same JSON value), so that it fits in a header.
pub fn ascii_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Envoy's ext_authz removes the request headers that an OK check response
/// names in this header before the request goes upstream.
pub const X_ENVOY_AUTH_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// On a grant, names the request's token headers (`X-Cashu`, and a Cashu
/// `Authorization`) in `x-envoy-auth-headers-to-remove`, so that Envoy and
/// Istio ext_authz keep the token from the upstream without any route
/// configuration. Other proxies ignore the header.
pub fn keep_credentials_from_upstream(
    response: &mut HeaderMap,
    request: &HeaderMap,
    bearer_passes: bool,
) {
    let mut names: Vec<&str> = Vec::with_capacity(4);
    for name in [h::X_CASHU, h::X_PAYGRESS_PASS] {
        if request.contains_key(name) {
            names.push(name);
        }
    }
    let credential_auth = request
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            paygress_core::extract::is_cashu_authorization(v)
                || (bearer_passes && pass_carrier::bearer_pass(v).is_some())
        });
    if credential_auth {
        names.push(h::AUTHORIZATION);
    }
    if upstream_cookie(response, request) == Some(false) {
        names.push(h::COOKIE);
    }
    if !names.is_empty() {
        insert(response, X_ENVOY_AUTH_HEADERS_TO_REMOVE, &names.join(","));
    }
}

/// Puts on a grant the request's cookies without the pass cookie, as
/// `Cookie`, for the proxy to send upstream instead of the client's:
/// `Some(true)` when there are cookies to send, `Some(false)` when only the
/// pass was there (the proxy must drop the header), `None` when the request
/// had no cookies.
fn upstream_cookie(response: &mut HeaderMap, request: &HeaderMap) -> Option<bool> {
    let values: Vec<&str> = request
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    let kept: Vec<String> = values
        .iter()
        .map(|v| pass_carrier::without_pass_cookie(v).unwrap_or_else(|| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .collect();
    if kept.is_empty() {
        return Some(false);
    }
    insert(response, h::COOKIE, &kept.join("; "));
    Some(true)
}

/// The `/auth` response for a decision, in NGINX mode when asked; a
/// refusal in `format` ([`refusal_format`]), with `Vary: Accept` outside
/// NGINX's mode.
pub fn respond(
    decision: &Decision,
    config: &CompiledConfig,
    nginx: bool,
    format: Format,
) -> Response {
    if nginx {
        let response = decision_response(decision, config);
        return if response.status() != StatusCode::OK {
            let body = decision_body(decision, config);
            with_body_header(nginx_mode(response), &body)
        } else {
            response
        };
    }
    let mut response = match (format, decision) {
        (Format::Html, Decision::PaymentRequired { .. } | Decision::Refuse(_)) => {
            page_response(decision, config).unwrap_or_else(|| decision_response(decision, config))
        }
        _ => decision_response(decision, config),
    };
    if response.status() != StatusCode::OK {
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static(browser::VARY_ACCEPT));
    }
    response
}

/// A refusal as a page (`None` for a grant, or a 402 whose amount no
/// payment request can carry): the tier's 402 page (built with the config;
/// for a price a caller raised, built now), or the error page of the
/// refusal's code, words and refund, with `Retry-After` as in JSON.
fn page_response(decision: &Decision, config: &CompiledConfig) -> Option<Response> {
    let (status, page, creq, retry_after) = match decision {
        Decision::Allow(_) => return None,
        Decision::PaymentRequired { amount, tier_index } => {
            let tier = config.tier(*tier_index);
            let challenge = config.challenge_for(tier, *amount)?;
            let page = config.payment_page(tier, *amount)?.into_owned();
            (
                StatusCode::PAYMENT_REQUIRED,
                page,
                Some(challenge.payment_request.clone()),
                None,
            )
        }
        Decision::Refuse(err) => (
            StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST),
            browser::error_page(err.code(), &err.client_message(), err.refund()),
            None,
            err.retry_after(),
        ),
    };
    let mut r = Response::new(Body::from(page));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    for (name, value) in browser::html_headers() {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    if let Some(creq) = creq {
        insert(headers, h::X_CASHU, &creq);
    }
    if let Some(seconds) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            headers.insert(header::RETRY_AFTER, v);
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::price_of;
    use paygress_core::pricing::Price;

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
    fn a_pass_is_read_from_each_carrier_and_kept_from_the_upstream() {
        let pass = "p1.k1.e30.c2ln";
        for (pairs, want) in [
            (vec![("x-paygress-pass", pass)], Some(pass)),
            (vec![("authorization", "Bearer p1.k1.e30.c2ln")], Some(pass)),
            (
                vec![
                    ("cookie", "a=1"),
                    ("cookie", "paygress_pass=p1.k1.e30.c2ln; b=2"),
                ],
                Some(pass),
            ),
            (vec![("authorization", "Bearer eyJ.a.b")], None),
            (vec![], None),
        ] {
            let request = headers(&pairs);
            assert_eq!(
                find_pass(&request, true).unwrap().as_deref(),
                want,
                "{pairs:?}"
            );
        }
        // Two X-Paygress-Pass headers: refused as a bad pass, not ignored.
        let two = headers(&[("x-paygress-pass", pass), ("x-paygress-pass", pass)]);
        assert_eq!(
            find_pass(&two, true).unwrap_err().code(),
            paygress_core::ErrorCode::PassInvalid
        );

        // On a grant: every carrier named for Envoy to remove, and the
        // cookies without the pass's handed back for the upstream.
        let request = headers(&[
            ("x-paygress-pass", pass),
            ("authorization", "Bearer p1.k1.e30.c2ln"),
            ("cookie", "a=1; paygress_pass=x"),
            ("cookie", "b=2"),
        ]);
        let mut response = HeaderMap::new();
        keep_credentials_from_upstream(&mut response, &request, true);
        assert_eq!(
            response[X_ENVOY_AUTH_HEADERS_TO_REMOVE],
            "x-paygress-pass,authorization"
        );
        assert_eq!(response[h::COOKIE], "a=1; b=2");
        // Only the pass cookie: the header is to be dropped.
        let mut response = HeaderMap::new();
        keep_credentials_from_upstream(
            &mut response,
            &headers(&[("cookie", "paygress_pass=x")]),
            true,
        );
        assert_eq!(response[X_ENVOY_AUTH_HEADERS_TO_REMOVE], "cookie");
        assert!(response.get(h::COOKIE).is_none());
        // Without pass keys, a Bearer that looks like a pass is the
        // application's own: neither read nor removed.
        let own = headers(&[("authorization", "Bearer p1.k1.e30.c2ln")]);
        assert_eq!(find_pass(&own, false).unwrap(), None);
        let mut response = HeaderMap::new();
        keep_credentials_from_upstream(&mut response, &own, false);
        assert!(response.is_empty());
        // No credentials, no cookies: nothing to say.
        let mut response = HeaderMap::new();
        keep_credentials_from_upstream(
            &mut response,
            &headers(&[("authorization", "Basic x")]),
            true,
        );
        assert!(response.is_empty());
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

    fn config() -> CompiledConfig {
        CompiledConfig::from_json(r#"{"mints":["http://127.0.0.1:3338"]}"#).unwrap()
    }

    #[test]
    fn nginx_mode_carries_the_real_answer_in_headers() {
        let c = config();
        let d = Decision::PaymentRequired {
            amount: 1000,
            tier_index: 0,
        };
        let plain = respond(&d, &c, false, Format::Json);
        assert_eq!(plain.status(), StatusCode::PAYMENT_REQUIRED);
        let creq = plain.headers().get("x-cashu").unwrap().clone();
        assert!(creq.to_str().unwrap().starts_with("creqA"));

        let wrapped = respond(&d, &c, true, Format::Html);
        assert_eq!(wrapped.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(wrapped.headers()["x-paygress-status"], "402");
        assert_eq!(wrapped.headers()["x-cashu"], creq);
        let body = wrapped.headers()["x-paygress-body"].to_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["amount"], 1000);

        let refused = Decision::Refuse(AuthError::TokenInvalid("ünïcode".into()));
        let wrapped = respond(&refused, &c, true, Format::Json);
        assert_eq!(wrapped.headers()["x-paygress-status"], "400");
        let body = wrapped.headers()["x-paygress-body"].to_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "token_invalid");
        assert!(v["error"].as_str().unwrap().contains("ünïcode"));

        let ok = Decision::Allow(Grant::default());
        assert_eq!(
            respond(&ok, &c, true, Format::Json).status(),
            StatusCode::OK
        );
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_refusal_is_a_page_only_for_a_browser_outside_nginx_mode() {
        for (accept, nginx, format) in [
            (Some(BROWSER), false, Format::Html),
            (Some(BROWSER), true, Format::Json),
            (Some("*/*"), false, Format::Json),
            (Some("application/json"), false, Format::Json),
            (None, false, Format::Json),
        ] {
            let pairs: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            assert_eq!(
                refusal_format(&headers(&pairs), nginx),
                format,
                "{accept:?} {nginx}"
            );
        }
    }

    #[tokio::test]
    async fn a_browser_gets_the_tiers_page_and_curl_the_json() {
        let c = CompiledConfig::from_json(
            r#"{"mints":["http://127.0.0.1:3338"],
                "tiers":[{"id":"premium","path_prefix":"/premium","amount":50}]}"#,
        )
        .unwrap();
        let tier = c.tier_by_id("premium").unwrap();
        let d = Decision::PaymentRequired {
            amount: 50,
            tier_index: tier.index,
        };

        let page = respond(&d, &c, false, Format::Html);
        assert_eq!(page.status(), StatusCode::PAYMENT_REQUIRED);
        let hd = page.headers().clone();
        assert_eq!(hd[header::CONTENT_TYPE], browser::TEXT_HTML);
        assert_eq!(hd[header::VARY], "Accept");
        assert_eq!(
            hd["content-security-policy"],
            browser::content_security_policy()
        );
        assert_eq!(hd[h::X_CASHU], tier.challenge.payment_request.as_str());
        let body = body_text(page).await;
        assert_eq!(Some(&body), tier.challenge.html.as_ref());
        assert!(body.contains(&tier.challenge.payment_request));
        assert!(body.contains("<svg class=\"qr\""));

        // JSON: the body and headers as before, with Vary.
        let json = respond(&d, &c, false, Format::Json);
        let hd = json.headers().clone();
        assert_eq!(hd[header::CONTENT_TYPE], "application/json");
        assert_eq!(hd[header::VARY], "Accept");
        assert_eq!(hd[h::X_CASHU], tier.challenge.payment_request.as_str());
        assert!(hd.get("content-security-policy").is_none());
        assert_eq!(body_text(json).await, tier.challenge.body);

        // A price a caller raised: its page, built for the asking.
        let raised = Decision::PaymentRequired {
            amount: 70,
            tier_index: tier.index,
        };
        let page = respond(&raised, &c, false, Format::Html);
        let creq = page.headers()[h::X_CASHU].to_str().unwrap().to_string();
        assert_ne!(creq, tier.challenge.payment_request);
        let body = body_text(page).await;
        assert!(body.contains("<strong>70 sat</strong>"));
        assert!(body.contains(&creq));

        // A grant is never a page, and has no Vary.
        let ok = respond(&Decision::Allow(Grant::default()), &c, false, Format::Html);
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get(header::VARY).is_none());
    }

    #[tokio::test]
    async fn refusals_are_pages_with_their_words_refund_and_retry_after() {
        let c = config();
        let refused = Decision::Refuse(AuthError::ProvisioningFailed {
            message: "<b>403</b>".into(),
            refund: Some("cashuBrefund".into()),
        });
        let page = respond(&refused, &c, false, Format::Html);
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.headers()[header::CONTENT_TYPE], browser::TEXT_HTML);
        assert_eq!(page.headers()[header::VARY], "Accept");
        let body = body_text(page).await;
        assert!(body.contains("<code>provisioning_failed</code>"), "{body}");
        assert!(body.contains("&lt;b&gt;403&lt;/b&gt;"), "{body}");
        assert!(body.contains(">cashuBrefund</textarea>"), "{body}");

        let busy = Decision::Refuse(AuthError::MintUnavailable("down".into()));
        let page = respond(&busy, &c, false, Format::Html);
        assert_eq!(page.headers()[header::RETRY_AFTER], "5");
        assert!(body_text(page)
            .await
            .contains("<code>mint_unavailable</code>"));

        // JSON: the body as before.
        let json = respond(&refused, &c, false, Format::Json);
        assert_eq!(json.headers()[header::VARY], "Accept");
        assert_eq!(body_text(json).await, decision_body(&refused, &c));
    }

    #[test]
    fn grants_name_the_token_headers_for_envoy_to_remove() {
        let mut req = HeaderMap::new();
        req.insert("x-cashu", HeaderValue::from_static("cashuBxyz"));
        req.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer cashuAabc"),
        );
        let mut out = HeaderMap::new();
        keep_credentials_from_upstream(&mut out, &req, true);
        assert_eq!(out[X_ENVOY_AUTH_HEADERS_TO_REMOVE], "x-cashu,authorization");

        // An application's own bearer token is not ours to remove.
        let mut req = HeaderMap::new();
        req.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer eyJhbGciOi.x.y"),
        );
        let mut out = HeaderMap::new();
        keep_credentials_from_upstream(&mut out, &req, true);
        assert!(out.get(X_ENVOY_AUTH_HEADERS_TO_REMOVE).is_none());
    }

    #[test]
    fn mode_is_asked_by_header_or_query() {
        let mut headers = HeaderMap::new();
        assert!(!wants_nginx_mode(&"/auth".parse().unwrap(), &headers));
        assert!(wants_nginx_mode(
            &"/auth?a=1&mode=nginx".parse().unwrap(),
            &headers
        ));
        headers.insert(X_PAYGRESS_MODE, HeaderValue::from_static("NGINX"));
        assert!(wants_nginx_mode(&"/auth".parse().unwrap(), &headers));
    }
}
