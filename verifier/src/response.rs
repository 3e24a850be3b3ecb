//! `/auth` decisions as HTTP responses, and the NGINX mode.
//!
//! Statuses come from paygress-core only ([`paygress_core::ErrorCode::status`]
//! through [`AuthError::status`]; 402 for a missing payment).
//!
//! **NGINX mode** (`X-Paygress-Mode: nginx` or `?mode=nginx` on the `/auth`
//! request): NGINX's `auth_request` turns every status but 2xx/401/403 into
//! 500, so any answer but 200 is sent as `401` carrying the real status in
//! `X-Paygress-Status` and the JSON body in `X-Paygress-Body` (non-ASCII
//! escaped as `\uXXXX`), with `X-Cashu` kept; an `error_page` location turns
//! it back into the real 402 or 400.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use paygress_core::headers as h;
use paygress_core::outcome::payment_required_body;
use paygress_core::CompiledConfig;

use crate::auth::{Decision, Grant};

/// The header that asks for the NGINX mode.
pub const X_PAYGRESS_MODE: &str = "x-paygress-mode";

/// The response to an `/auth` decision.
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
                    payment_required_body(*amount, &config.unit, &config.mints, None),
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
    if let Some(p) = &grant.payment {
        let headers = r.headers_mut();
        insert(headers, h::X_PAYMENT_VERIFIED, "true");
        insert(headers, h::X_PAYMENT_AMOUNT, &p.amount.to_string());
        if let Some(tier) = &p.tier {
            insert(headers, h::X_PAYMENT_TIER, tier);
        }
        insert(headers, h::X_USER_ID, &p.user_id);
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
                None => payment_required_body(*amount, &config.unit, &config.mints, None),
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
pub fn ask_envoy_to_remove_token(response: &mut HeaderMap, request: &HeaderMap) {
    let mut names: Vec<&str> = Vec::with_capacity(2);
    if request.contains_key(h::X_CASHU) {
        names.push(h::X_CASHU);
    }
    let cashu_auth = request
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(paygress_core::extract::is_cashu_authorization);
    if cashu_auth {
        names.push(h::AUTHORIZATION);
    }
    if !names.is_empty() {
        insert(response, X_ENVOY_AUTH_HEADERS_TO_REMOVE, &names.join(","));
    }
}

/// The `/auth` response for a decision, in NGINX mode when asked.
pub fn respond(decision: &Decision, config: &CompiledConfig, nginx: bool) -> Response {
    let response = decision_response(decision, config);
    if nginx && response.status() != StatusCode::OK {
        let body = decision_body(decision, config);
        with_body_header(nginx_mode(response), &body)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AuthError;

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
        let plain = respond(&d, &c, false);
        assert_eq!(plain.status(), StatusCode::PAYMENT_REQUIRED);
        let creq = plain.headers().get("x-cashu").unwrap().clone();
        assert!(creq.to_str().unwrap().starts_with("creqA"));

        let wrapped = respond(&d, &c, true);
        assert_eq!(wrapped.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(wrapped.headers()["x-paygress-status"], "402");
        assert_eq!(wrapped.headers()["x-cashu"], creq);
        let body = wrapped.headers()["x-paygress-body"].to_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["amount"], 1000);

        let refused = Decision::Refuse(AuthError::TokenInvalid("ünïcode".into()));
        let wrapped = respond(&refused, &c, true);
        assert_eq!(wrapped.headers()["x-paygress-status"], "400");
        let body = wrapped.headers()["x-paygress-body"].to_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "token_invalid");
        assert!(v["error"].as_str().unwrap().contains("ünïcode"));

        let ok = Decision::Allow(Grant { payment: None });
        assert_eq!(respond(&ok, &c, true).status(), StatusCode::OK);
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
        ask_envoy_to_remove_token(&mut out, &req);
        assert_eq!(out[X_ENVOY_AUTH_HEADERS_TO_REMOVE], "x-cashu,authorization");

        // An application's own bearer token is not ours to remove.
        let mut req = HeaderMap::new();
        req.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer eyJhbGciOi.x.y"),
        );
        let mut out = HeaderMap::new();
        ask_envoy_to_remove_token(&mut out, &req);
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
