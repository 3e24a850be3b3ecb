//! The 402 page a browser can pay, end to end: a browser's `Accept` gets
//! HTML (the tier's page: price, mints, the payment request as an inline
//! SVG QR code and as text, a form), with `Content-Security-Policy` and
//! `Vary: Accept`; curl's gets the contract's JSON, as before. Through the
//! real Envoy with the filter (the 402 made in the proxy, a 400 made in the
//! proxy, a 400 relayed from the verifier, and the page's own retry with
//! `X-Cashu`), through the verifier's `/auth` directly, and through Envoy's
//! ext_authz with the client's `Accept` passed to the verifier and the
//! page's headers back to the client.
//!
//! What the page's script does is exercised here as the requests it makes
//! (a `GET` of the same URL with `X-Cashu` and fetch's `Accept: */*`, then
//! on a lease tier a reload with the pass cookie); a headless browser test
//! of the script itself is left to a follow-up.

use std::process::Command;

use paygress_core::browser::{content_security_policy, TEXT_HTML};
use paygress_tests::contract::{
    get, proxy_dir, render, repo_file, write_in, Answer, Proxy, Stack as IngressStack,
};
use paygress_tests::envoy::{
    assert_counters, assert_payment_required, Setup, CALLOUTS, CHALLENGED, GRANTED, PREMIUM,
    REJECTED, VERIFIER_REFUSED,
};
use paygress_tests::fixture::COMPUTE;
use paygress_tests::{free_port, tools};

/// Chrome's `Accept` on a navigation.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                       image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
/// curl's, and `fetch()`'s by default.
const CURL: &str = "*/*";

/// A page: status, `text/html; charset=utf-8`, the CSP of core, `Vary:
/// Accept`, and a document.
fn assert_page(answer: &Answer, status: u16, context: &str) {
    assert_eq!(answer.status, status, "{context}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some(TEXT_HTML),
        "{context}: {answer:?}"
    );
    assert_eq!(
        answer.header("content-security-policy"),
        Some(content_security_policy()),
        "{context}: {answer:?}"
    );
    assert_vary_accept(answer, context);
    assert!(
        answer
            .body
            .starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{context}: {answer:?}"
    );
}

fn assert_vary_accept(answer: &Answer, context: &str) {
    assert!(
        answer
            .headers
            .get("vary")
            .is_some_and(|v| v.iter().any(|v| v.eq_ignore_ascii_case("accept"))),
        "{context}: no Vary: Accept: {answer:?}"
    );
}

/// A 402 page: the payment request of `X-Cashu` in the text field, the QR
/// code as inline SVG, the form, the price.
fn assert_payment_page(answer: &Answer, amount: u64, context: &str) -> String {
    assert_page(answer, 402, context);
    let creq = answer
        .header("x-cashu")
        .unwrap_or_else(|| panic!("{context}: a 402 page without X-Cashu: {answer:?}"))
        .to_string();
    assert!(creq.starts_with("creqA"), "{context}: {creq}");
    let body = &answer.body;
    assert!(
        body.contains(&format!(">{creq}</textarea>")),
        "{context}: the payment request is not in the page"
    );
    assert!(
        body.contains("<svg class=\"qr\"") && body.contains("<path fill=\"#000\" d=\"M"),
        "{context}: no QR code"
    );
    assert!(body.contains("<form id=\"pay\""), "{context}: no form");
    assert!(
        body.contains(&format!("<strong>{amount} sat</strong>")),
        "{context}: no price"
    );
    creq
}

/// The filter in Envoy: a browser's 402 is the page, curl's the JSON; a
/// token the proxy refuses and one the verifier refuses are pages for a
/// browser; the page's retry (same URL, `X-Cashu`, `Accept: */*`) pays; on
/// a lease tier, the reload with the pass cookie goes through.
#[tokio::test]
async fn the_filter_answers_a_browser_with_pages() {
    let stack = Setup::default().start().await;
    let before = stack.counters().await;

    let page = get(&stack.url("/premium/report?id=7"), &[("Accept", BROWSER)]).await;
    let creq = assert_payment_page(&page, PREMIUM, "filter 402, browser");
    assert!(
        !page.body.contains("/premium/report"),
        "the page echoes the URL"
    );
    assert!(!page.body.contains("id=7"), "the page echoes the query");

    let json = get(&stack.url("/premium/report?id=7"), &[("Accept", CURL)]).await;
    assert_payment_required(&json, &stack.mint_url, PREMIUM, Some("premium"), "curl");
    assert_vary_accept(&json, "filter 402, curl");
    assert_eq!(json.header("x-cashu"), Some(creq.as_str()));

    // Refused in the proxy: a token that is not one.
    let refused = get(
        &stack.url("/premium/report"),
        &[("Accept", BROWSER), ("X-Cashu", "cashuBnot<a>token")],
    )
    .await;
    assert_page(&refused, 400, "filter 400, browser");
    assert!(refused.body.contains("<code>malformed_token</code>"));

    // The page's retry: fetch(location.href, {headers: {'X-Cashu': …}}).
    let wallet = stack.wallet();
    let token = wallet.token(PREMIUM).await;
    let paid = get(
        &stack.url("/premium/report?id=7"),
        &[("Accept", CURL), ("X-Cashu", &token)],
    )
    .await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(paid.json()["upstream"], "echo", "{paid:?}");

    // The same token again, from a browser: the verifier's refusal as a
    // page.
    let spent = get(
        &stack.url("/premium/report"),
        &[("Accept", BROWSER), ("X-Cashu", &token)],
    )
    .await;
    assert_page(&spent, 400, "verifier 400 relayed, browser");
    assert!(
        spent.body.contains("<code>token_already_spent</code>"),
        "{spent:?}"
    );

    // A lease tier: the page says so; the retry sets the pass cookie, and
    // the browser's reload with it goes through.
    let page = get(&stack.url("/compute/job"), &[("Accept", BROWSER)]).await;
    assert_payment_page(&page, COMPUTE, "filter 402, lease tier");
    assert!(page.body.contains("data-lease=\"1\""));
    let token = wallet.token(COMPUTE).await;
    let bought = get(
        &stack.url("/compute/job"),
        &[("Accept", CURL), ("X-Cashu", &token)],
    )
    .await;
    assert_eq!(bought.status, 200, "{bought:?}");
    let cookie = bought
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no pass cookie: {bought:?}"))
        .to_string();
    let reload = get(
        &stack.url("/compute/job"),
        &[("Accept", BROWSER), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(reload.status, 200, "the reload with the pass: {reload:?}");

    assert_eq!(stack.upstream.count(), 3);
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[
            (CHALLENGED, 3),
            (REJECTED, 1),
            (CALLOUTS, 3),
            (GRANTED, 2),
            (VERIFIER_REFUSED, 1),
            (paygress_tests::envoy::PASS_ACCEPTED, 1),
        ],
        "browser pages",
    );
}

/// The verifier's `/auth`, asked directly (as Traefik's forwardAuth asks,
/// with the client's headers): a browser's 402 and 400 are pages, curl's
/// JSON; NGINX's mode stays JSON.
#[tokio::test]
async fn the_verifier_answers_a_browser_with_pages() {
    let stack = IngressStack::start(1_000).await;
    let v = &stack.verifier;

    let page = get(&v.auth("/premium/x"), &[("Accept", BROWSER)]).await;
    assert_payment_page(&page, PREMIUM, "/auth 402, browser");

    let json = get(&v.auth("/premium/x"), &[("Accept", CURL)]).await;
    assert_payment_required(
        &json,
        &stack.mint.url(),
        PREMIUM,
        Some("premium"),
        "/auth 402, curl",
    );
    assert_vary_accept(&json, "/auth 402, curl");
    assert_eq!(json.header("x-cashu"), page.header("x-cashu"));

    let refused = get(
        &v.auth("/premium/x"),
        &[("Accept", BROWSER), ("X-Cashu", "cashuBnot<a>token")],
    )
    .await;
    assert_page(&refused, 400, "/auth 400, browser");
    assert!(refused.body.contains("<code>malformed_token</code>"));

    let nginx = get(
        &v.auth("/premium/x"),
        &[("Accept", BROWSER), ("X-Paygress-Mode", "nginx")],
    )
    .await;
    assert_eq!(nginx.status, 401, "{nginx:?}");
    assert_eq!(nginx.header("x-paygress-status"), Some("402"));
    assert!(nginx
        .header("x-paygress-body")
        .is_some_and(|b| b.starts_with('{')));
}

/// Envoy's ext_authz in front of the verifier, with the committed config
/// plus what a page needs: the client's `Accept` sent to the verifier, and
/// `Content-Security-Policy` and `Vary` let back to the client.
#[tokio::test]
async fn ext_authz_passes_the_page_through() {
    let stack = IngressStack::start(1_000).await;
    let port = free_port();
    let dir = proxy_dir("envoy-ext-authz-browser");
    let config = render(
        &repo_file("envoy/envoy-ext-authz.yaml"),
        &[
            ("LISTEN_PORT", port.to_string()),
            ("ADMIN_PORT", free_port().to_string()),
            ("VERIFIER_PORT", stack.verifier.port().to_string()),
            ("UPSTREAM_PORT", stack.upstream.port().to_string()),
        ],
    );
    let path = write_in(dir.path(), "envoy.yaml", &config);
    let mut command = Command::new(tools::envoy());
    command
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warn");
    let envoy = Proxy::start("envoy-ext-authz-browser", port, command, dir).await;

    let page = get(
        &format!("{}/premium/x", envoy.url()),
        &[("Accept", BROWSER)],
    )
    .await;
    assert_payment_page(&page, PREMIUM, "ext_authz 402, browser");
    let json = get(&format!("{}/premium/x", envoy.url()), &[("Accept", CURL)]).await;
    assert_payment_required(
        &json,
        &stack.mint.url(),
        PREMIUM,
        Some("premium"),
        "ext_authz 402, curl",
    );
}
