//! `paygress error-pages`: the default backend of ingress-nginx's custom
//! errors (`custom-http-errors`), so that a browser behind ingress-nginx
//! gets the same 402 page as behind Envoy or Traefik (docs/browser.md).
//!
//! ingress-nginx sends an intercepted error to its default backend with
//! the original status in `X-Code`, the client's `Accept` in `X-Format` and
//! the request target in `X-Original-URI` (and `X-Namespace`,
//! `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`, `X-Request-ID`),
//! the path rewritten to `/`. The answer here, with that status:
//!
//! * `X-Code: 402`: the 402 of the price of `X-Original-URI` under the
//!   config (the verifier's own config file, so the same tiers): the tier's
//!   page, or its JSON body when `X-Format` does not prefer `text/html`,
//!   with the tier's `X-Cashu`, exactly as `/auth` answers. A price that a
//!   caller's `X-Required-Amount` raised is not known here: the tier's
//!   price is shown.
//! * any other `X-Code` (400-599): a page of the status from the same
//!   template, or `{"error":"<reason>","status":<code>}`.
//! * no `X-Code`: `GET /healthz` is `200 ok`; anything else is a 404 (the
//!   default backend also answers hosts that no Ingress names).
//!
//! No wallet, no mint, no secret: the config's `pass_keys[].secret_env`
//! are compiled with a stand-in secret (these pages never sign or check a
//! pass), so the pod needs neither the pass key Secret nor a data dir.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use paygress_core::browser::{self, Format};
use paygress_core::{CompiledConfig, Price};
use tokio::net::TcpListener;

use crate::config::{self, EnvSource, ProcessEnv, SettingsError};
use crate::decision::Decision;
use crate::ingress;

/// The header that carries the intercepted status.
pub const X_CODE: &str = "x-code";
/// The header that carries the client's `Accept`.
pub const X_FORMAT: &str = "x-format";
/// The header that carries the request target (path and query).
pub const X_ORIGINAL_URI: &str = "x-original-uri";

/// The secret a `secret_env` pass key is compiled with here: 32 bytes of
/// zeros, never used to sign or check anything.
const STAND_IN_SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Loads the config as `paygress serve` does (file, then the environment
/// overrides), with every `pass_keys[].secret_env` given a stand-in secret
/// instead of the variable's value.
pub fn load(path: Option<&Path>) -> Result<CompiledConfig, SettingsError> {
    let names = secret_env_names(path, &ProcessEnv);
    let env = move |name: &str| {
        if names.iter().any(|n| n == name) {
            Some(STAND_IN_SECRET.to_string())
        } else {
            ProcessEnv.var(name)
        }
    };
    Ok(config::load(path, &env)?.config)
}

/// The `secret_env` names of the pass keys, from `PAYGRESS_PASS_KEYS` when
/// set, else from the file. A document that cannot be read names none
/// (`config::load` then says what is wrong with it).
fn secret_env_names(path: Option<&Path>, env: &dyn EnvSource) -> Vec<String> {
    let keys: Option<serde_json::Value> = match env.var("PAYGRESS_PASS_KEYS") {
        Some(text) => serde_json::from_str(&text).ok(),
        None => path
            .and_then(|p| std::fs::read_to_string(p).ok())
            // YAML reads JSON too.
            .and_then(|text| serde_yaml::from_str::<serde_json::Value>(&text).ok())
            .and_then(|doc| doc.get("pass_keys").cloned()),
    };
    keys.as_ref()
        .and_then(serde_json::Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("secret_env")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The router: every path and method; `X-Code` decides.
pub fn router(config: Arc<CompiledConfig>) -> Router {
    Router::new().fallback(any(handler)).with_state(config)
}

async fn handler(
    State(config): State<Arc<CompiledConfig>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    answer(&config, uri.path(), &headers)
}

/// The answer to one request of ingress-nginx (see the module's doc).
pub fn answer(config: &CompiledConfig, path: &str, headers: &HeaderMap) -> Response {
    let code = header_str(headers, X_CODE).and_then(|v| v.trim().parse::<u16>().ok());
    let status = match code {
        Some(code) => match StatusCode::from_u16(code) {
            Ok(s) if (400..=599).contains(&code) => s,
            _ => StatusCode::BAD_GATEWAY,
        },
        None if path == "/healthz" => return plain(StatusCode::OK, "ok\n"),
        None => StatusCode::NOT_FOUND,
    };
    let format = match headers.get(X_FORMAT) {
        // ingress-nginx always sends it (empty when the client sent no
        // Accept); the client's own Accept only when it is missing.
        Some(_) => Format::negotiate(all_str(headers, X_FORMAT)),
        None => Format::negotiate(all_str(headers, header::ACCEPT.as_str())),
    };
    let mut response = match (status, paid_tier(config, headers)) {
        (StatusCode::PAYMENT_REQUIRED, Some((amount, tier_index))) => ingress::respond(
            &Decision::PaymentRequired { amount, tier_index },
            config,
            false,
            format,
        ),
        _ => status_response(status, format),
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static(browser::VARY_ACCEPT));
    response
}

/// The price of `X-Original-URI`: amount and tier index; `None` when it is
/// missing or free.
fn paid_tier(config: &CompiledConfig, headers: &HeaderMap) -> Option<(u64, usize)> {
    let target = header_str(headers, X_ORIGINAL_URI).filter(|t| !t.is_empty())?;
    match config.price(target) {
        Price::Paid(tier) => Some((tier.amount, tier.index)),
        Price::Free => None,
    }
}

/// A status that is not the verifier's 402: a page or JSON.
fn status_response(status: StatusCode, format: Format) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut r = match format {
        Format::Html => {
            let mut r = Response::new(Body::from(status_page(status.as_u16(), reason)));
            for (name, value) in browser::html_headers() {
                if let Ok(v) = HeaderValue::from_str(value) {
                    r.headers_mut().insert(HeaderName::from_static(name), v);
                }
            }
            r
        }
        Format::Json => {
            let body = serde_json::json!({ "error": reason, "status": status.as_u16() });
            let mut r = Response::new(Body::from(body.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    *r.status_mut() = status;
    r
}

/// The page of a status, in the template of the 402 page: its one inline
/// style (allowed by the CSP's hash), no script.
pub fn status_page(status: u16, reason: &str) -> String {
    let reason = browser::escape(reason);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>{reason}</title><style>{style}</style></head><body><main>\
         <h1>{reason}</h1><p class=\"bad\">Error {status}.</p>\
         <p><a href=\"\">Try again</a></p></main></body></html>\n",
        style = browser::STYLE,
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn all_str<'h>(headers: &'h HeaderMap, name: &str) -> impl Iterator<Item = &'h str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

/// Runs the error pages until SIGTERM/SIGINT.
pub async fn serve(config: CompiledConfig, listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(
        listen = %local,
        tiers = config.tier_count(),
        "paygress {}: serving error pages (X-Code, X-Format, X-Original-URI)",
        env!("CARGO_PKG_VERSION")
    );
    axum::serve(listener, router(Arc::new(config)))
        .with_graceful_shutdown(crate::server::wait_for_signal())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CompiledConfig {
        CompiledConfig::from_json(
            r#"{"mints":["https://mint.example.com"],"default_amount":7,
                "free_paths":["/free"],
                "tiers":[{"id":"premium","path_prefix":"/premium","amount":64}]}"#,
        )
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

    #[tokio::test]
    async fn a_402_is_the_tiers_page_or_its_json() {
        let c = config();
        let tier = c.tier_by_id("premium").unwrap();
        let r = answer(
            &c,
            "/",
            &headers(&[
                ("x-code", "402"),
                ("x-format", BROWSER),
                ("x-original-uri", "/premium/a?b=1"),
            ]),
        );
        assert_eq!(r.status(), 402);
        assert_eq!(
            r.headers()["x-cashu"],
            tier.challenge.payment_request.as_str()
        );
        assert_eq!(r.headers()["content-type"], browser::TEXT_HTML);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(Some(body(r).await), tier.challenge.html);

        let r = answer(
            &c,
            "/",
            &headers(&[
                ("x-code", "402"),
                ("x-format", "*/*"),
                ("accept", BROWSER),
                ("x-original-uri", "/other"),
            ]),
        );
        assert_eq!(r.status(), 402);
        assert_eq!(r.headers()["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(json["amount"], 7);
    }

    #[tokio::test]
    async fn other_codes_and_health() {
        let c = config();
        let r = answer(
            &c,
            "/",
            &headers(&[("x-code", "403"), ("x-format", BROWSER)]),
        );
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.headers()["content-security-policy"],
            browser::content_security_policy()
        );
        assert!(body(r).await.contains("<h1>Forbidden</h1>"));

        // A 402 on a free path (the upstream's own): no payment request.
        let r = answer(
            &c,
            "/",
            &headers(&[("x-code", "402"), ("x-original-uri", "/free/x")]),
        );
        assert_eq!(r.status(), 402);
        assert!(r.headers().get("x-cashu").is_none());
        assert_eq!(
            body(r).await,
            r#"{"error":"Payment Required","status":402}"#
        );

        let r = answer(&c, "/healthz", &HeaderMap::new());
        assert_eq!(r.status(), 200);
        let r = answer(&c, "/anything", &headers(&[("accept", BROWSER)]));
        assert_eq!(r.status(), 404);
        assert!(body(r).await.contains("Error 404."));
        let r = answer(&c, "/", &headers(&[("x-code", "200")]));
        assert_eq!(r.status(), 502);
    }

    #[test]
    fn secret_env_keys_get_a_stand_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"mints":["https://mint.example.com"],
                "tiers":[{"id":"c","path_prefix":"/c","amount":5,"lease":{"seconds":60}}],
                "pass_keys":[{"id":"k1","secret_env":"PAYGRESS_TEST_UNSET_PASS_KEY_VAR"}]}"#,
        )
        .unwrap();
        let names = secret_env_names(Some(&path), &|_: &str| None::<String>);
        assert_eq!(names, vec!["PAYGRESS_TEST_UNSET_PASS_KEY_VAR".to_string()]);
        let c = load(Some(&path)).unwrap();
        assert_eq!(c.tier_by_id("c").unwrap().lease_seconds, Some(60));
    }
}
