//! The 402 page in a real browser: headless Chromium (`paygress_tests::chromium`,
//! driven over the DevTools protocol) against the real stack (Envoy with the
//! filter, the verifier, cdk-mintd, the echo upstream).
//!
//! - A paid URL opens as the 402 page (status, title, heading, price, tier,
//!   mint, the payment request); its QR code, read back from the DOM and
//!   from what Chromium draws of it, is exactly the `X-Cashu` the browser got.
//! - A token pasted into the field and "Pay and continue" clicked bring the
//!   upstream's answer into the tab (a per-request tier: the page's own
//!   request with `X-Cashu`, then the answer shown in place of the page).
//! - On a lease tier, one payment: the page reloads on the pass cookie, and
//!   further navigations under the tier go through with no second payment
//!   (the wallet paid once, the verifier was called once).
//! - Nothing is refused by the page's Content Security Policy (the browser
//!   logs no violation), and the check would see one (an image from another
//!   origin, added to the page, is logged as refused).
//!
//! Screenshots go to `target/artifacts/browser/`; with
//! `PAYGRESS_UPDATE_SCREENSHOTS=1` the 402 page's also replaces
//! `docs/img/402-page.png` (the one README.md and docs/browser.md show).

use std::path::Path;
use std::time::Duration;

use paygress_core::browser::{content_security_policy, TEXT_HTML};
use paygress_tests::chromium::{artifacts_dir, Chromium, Page};
use paygress_tests::contract::repo_file;
use paygress_tests::envoy::{
    assert_counters, Setup, CALLOUTS, CHALLENGED, GRANTED, PASS_ACCEPTED, PREMIUM,
};
use paygress_tests::fixture::{COMPUTE, COMPUTE_LEASE_SECONDS};
use serde_json::Value;

/// How long the page's own payment (the token's swap at the mint, then the
/// next document) may take.
const PAY_TIMEOUT: Duration = Duration::from_secs(30);

/// The QR code of the page as the DOM holds it: the `<svg>`'s `viewBox`
/// and its one path of dark modules, decoded from the modules (`M<x>
/// <y>h<n>v1h-<n>z` runs, in modules).
async fn qr_from_dom(page: &Page) -> String {
    let svg = page
        .evaluate(
            "(() => { const s = document.querySelector('main svg.qr'); \
             const p = s && s.querySelector('path'); \
             return s && p ? { viewBox: s.getAttribute('viewBox'), d: p.getAttribute('d'), \
             shown: s.getBoundingClientRect().width } : null; })()",
        )
        .await;
    assert!(svg.is_object(), "no QR code <svg> in the page");
    assert!(
        svg["shown"].as_f64().is_some_and(|w| w >= 200.0),
        "the QR code is not shown at a scannable size: {svg}"
    );
    let view_box: Vec<usize> = svg["viewBox"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("viewBox {svg}")))
        .collect();
    let [0, 0, side, height] = view_box[..] else {
        panic!("unexpected viewBox: {svg}");
    };
    assert_eq!(side, height, "{svg}");
    let modules = modules_of_path(svg["d"].as_str().unwrap_or_default(), side);
    decode_qr(side, 8, |x, y| modules[y * side + x])
}

/// The dark modules of the page's QR path, on a `side`×`side` grid.
fn modules_of_path(d: &str, side: usize) -> Vec<bool> {
    let mut modules = vec![false; side * side];
    for run in d.split('M').filter(|r| !r.is_empty()) {
        // `<x> <y>h<n>v1h-<n>z`
        let (xy, rest) = run
            .split_once('h')
            .unwrap_or_else(|| panic!("not a run: {run:?}"));
        let (x, y) = xy
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("not a run: {run:?}"));
        let n = rest
            .split_once('v')
            .map(|(n, _)| n)
            .unwrap_or_else(|| panic!("not a run: {run:?}"));
        let (x, y, n): (usize, usize, usize) = (
            x.parse().unwrap_or_else(|_| panic!("{run:?}")),
            y.parse().unwrap_or_else(|_| panic!("{run:?}")),
            n.parse().unwrap_or_else(|_| panic!("{run:?}")),
        );
        assert_eq!(
            rest,
            format!("{n}v1h-{n}z"),
            "a run that is not one row of modules: {run:?}"
        );
        for dx in 0..n {
            modules[y * side + x + dx] = true;
        }
    }
    modules
}

/// A QR code read by rqrr from a grid of `side`×`side` cells drawn at
/// `scale` pixels each (`dark(x, y)`). Panics unless exactly one code is
/// found and decodes.
fn decode_qr(side: usize, scale: usize, dark: impl Fn(usize, usize) -> bool) -> String {
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(side * scale, side * scale, |x, y| {
            if dark(x / scale, y / scale) {
                0
            } else {
                255
            }
        });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "QR codes found: {}", grids.len());
    let (_, text) = grids[0]
        .decode()
        .unwrap_or_else(|err| panic!("the QR code does not decode: {err:?}"));
    text
}

/// The QR code as Chromium draws it: the page's `<svg>`, serialised from
/// the DOM, drawn by the browser into a canvas (a `data:` image, which the
/// page's CSP allows) at 4 pixels a module, and read back pixel by pixel.
async fn qr_as_drawn(page: &Page) -> String {
    let drawn = page
        .evaluate(
            "(async () => { \
               const svg = document.querySelector('main svg.qr'); \
               const side = svg.viewBox.baseVal.width * 4; \
               const text = new XMLSerializer().serializeToString(svg); \
               const img = new Image(side, side); \
               img.src = 'data:image/svg+xml;base64,' + btoa(text); \
               await img.decode(); \
               const canvas = document.createElement('canvas'); \
               canvas.width = side; canvas.height = side; \
               const ctx = canvas.getContext('2d'); \
               ctx.drawImage(img, 0, 0, side, side); \
               const px = ctx.getImageData(0, 0, side, side).data; \
               let dark = ''; \
               for (let i = 0; i < px.length; i += 4) { \
                 dark += (px[i] + px[i + 1] + px[i + 2]) / 3 < 128 ? '1' : '0'; \
               } \
               return { side, dark }; \
             })()",
        )
        .await;
    let side = drawn["side"].as_u64().unwrap_or(0) as usize;
    let dark: Vec<bool> = drawn["dark"]
        .as_str()
        .unwrap_or_default()
        .bytes()
        .map(|b| b == b'1')
        .collect();
    assert!(side > 0 && dark.len() == side * side, "canvas: {side}");
    decode_qr(side, 1, |x, y| dark[y * side + x])
}

/// Pastes `token` into the page's field and clicks "Pay and continue", as a
/// person would (the value set, then a click: the page's own script sends
/// it).
async fn pay_with(page: &Page, token: &str) {
    let token = Value::from(token).to_string();
    let clicked = page
        .evaluate(&format!(
            "(() => {{ const field = document.getElementById('token'); \
             const button = document.querySelector('form#pay button[type=submit]'); \
             if (!field || !button) return false; \
             field.value = {token}; field.dispatchEvent(new Event('input')); \
             button.click(); return true; }})()"
        ))
        .await;
    assert_eq!(clicked, Value::Bool(true), "no token field or pay button");
}

/// The upstream's echo, as the tab shows it (JSON text).
async fn shown_echo(page: &Page) -> Value {
    let text = page.text().await;
    serde_json::from_str(text.trim())
        .unwrap_or_else(|err| panic!("the tab does not show the upstream's JSON ({err}): {text:?}"))
}

/// Asserts the tab shows the 402 page of `amount` sat, for this request or
/// for a lease, and returns the document's `X-Cashu`.
async fn assert_payment_page(
    page: &Page,
    doc: &paygress_tests::chromium::Document,
    amount: u64,
    tier: &str,
    buys: &str,
    mint_url: &str,
) -> String {
    assert_eq!(doc.status, 402, "{doc:?}");
    assert_eq!(doc.header("content-type"), Some(TEXT_HTML), "{doc:?}");
    assert_eq!(
        doc.header("content-security-policy"),
        Some(content_security_policy()),
        "{doc:?}"
    );
    let creq = doc
        .header("x-cashu")
        .unwrap_or_else(|| panic!("a 402 page without X-Cashu: {doc:?}"))
        .to_string();
    assert!(creq.starts_with("creqA"), "{creq}");
    assert_eq!(page.title().await, "Payment required");
    let shown = page
        .evaluate(
            "(() => ({ h1: document.querySelector('h1').innerText, \
             price: document.querySelector('.price').innerText, \
             tier: document.querySelector('main p code').innerText, \
             mints: [...document.querySelectorAll('main ul li')].map(li => li.innerText), \
             creq: document.getElementById('creq').value, \
             lease: document.getElementById('pay').dataset.lease }))()",
        )
        .await;
    assert_eq!(shown["h1"], "Payment required", "{shown}");
    let price = shown["price"].as_str().unwrap_or_default();
    assert!(
        price.starts_with(&format!("{amount} sat {buys}")),
        "the price shown is {price:?}"
    );
    assert_eq!(shown["tier"], tier, "{shown}");
    assert_eq!(shown["mints"], serde_json::json!([mint_url]), "{shown}");
    assert_eq!(shown["creq"], creq.as_str(), "{shown}");
    creq
}

fn assert_no_csp_violation(page: &Page, context: &str) {
    let violations = page.csp_violations();
    assert!(
        violations.is_empty(),
        "{context}: the browser logged CSP violations: {violations:#?}\nall it logged: {:#?}",
        page.logged()
    );
}

/// Writes the 402 page's screenshot into docs/img when asked to.
fn maybe_update_docs_screenshot(shot: &Path) {
    if std::env::var("PAYGRESS_UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let root = paygress_tests::tools::workspace_root();
    let dest = root.join("docs").join("img").join("402-page.png");
    std::fs::create_dir_all(dest.parent().unwrap_or(&root))
        .unwrap_or_else(|err| panic!("cannot create docs/img: {err}"));
    std::fs::copy(shot, &dest).unwrap_or_else(|err| panic!("cannot copy to docs/img: {err}"));
}

/// A per-request tier: the page, its QR code, a pasted token, the paid
/// answer in the tab; no CSP violation on the way.
#[tokio::test]
async fn chromium_pays_the_402_page_with_a_pasted_token() {
    // The browser first: a missing one fails at once, saying what to run.
    let chromium = Chromium::start().await;
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let page = chromium.new_page().await;
    let artifacts = artifacts_dir();

    let url = stack.url("/premium/report?id=7");
    let doc = page.navigate(&url).await;
    let creq = assert_payment_page(
        &page,
        &doc,
        PREMIUM,
        "premium",
        "for this request",
        &stack.mint_url,
    )
    .await;

    // The QR code says exactly what X-Cashu says: as the DOM has it, and
    // as the browser draws it.
    assert_eq!(qr_from_dom(&page).await, creq, "the QR code in the DOM");
    assert_eq!(qr_as_drawn(&page).await, creq, "the QR code as drawn");

    let shot = artifacts.join("402-page.png");
    page.screenshot(&shot).await;
    maybe_update_docs_screenshot(&shot);

    // Paying: the page requests its own URL with X-Cashu, then shows the
    // answer (JSON: from a blob: URL) in place of the page.
    let token = wallet.token(PREMIUM).await;
    let balance = wallet.balance().await;
    let mark = page.mark();
    pay_with(&page, &token).await;
    page.wait_until(
        "location.protocol === 'blob:' && document.readyState === 'complete'",
        PAY_TIMEOUT,
    )
    .await;
    let requests = page.requests_since(mark);
    assert!(
        requests.iter().any(|(m, u)| m == "GET" && *u == url),
        "the page did not request its own URL: {requests:?}"
    );
    let echo = shown_echo(&page).await;
    assert_eq!(echo["upstream"], "echo", "{echo}");
    assert_eq!(echo["path"], "/premium/report?id=7", "{echo}");
    let seen = stack.upstream.last();
    assert_eq!(seen.one("x-payment-verified"), Some("true"), "{seen:?}");
    assert_eq!(seen.one("x-cashu"), None, "the token reached the upstream");
    assert!(
        !wallet.is_spendable(&token).await,
        "the pasted token was not redeemed"
    );
    assert_eq!(wallet.balance().await, balance, "the wallet paid again");
    page.screenshot(&artifacts.join("paid-page.png")).await;

    assert_no_csp_violation(&page, "the 402 page and its payment");

    // The check has teeth: an image from another origin, added to a 402
    // page, is refused and logged.
    let probe = chromium.new_page().await;
    probe.navigate(&stack.url("/premium/probe")).await;
    assert!(probe.csp_violations().is_empty(), "{:?}", probe.logged());
    probe
        .evaluate(
            "(() => { const i = document.createElement('img'); \
             i.src = 'http://127.0.0.1:9/x.png'; document.body.append(i); return true; })()",
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while probe.csp_violations().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an image from another origin was not logged as a CSP violation: {:?}",
            probe.logged()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A lease tier: one payment from the page, then the tier's paths open on
/// the pass cookie (the reload, the same path again, another path) with no
/// second payment.
#[tokio::test]
async fn chromium_buys_a_lease_once_and_browses_on_its_pass() {
    let chromium = Chromium::start().await;
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let page = chromium.new_page().await;
    let artifacts = artifacts_dir();

    let before = stack.counters().await;
    let upstream_before = stack.upstream.count();
    let start = page.mark();
    let doc = page.navigate(&stack.url("/compute/job")).await;
    assert_eq!(
        COMPUTE_LEASE_SECONDS, 3600,
        "the fixture's lease is an hour"
    );
    let hour = "buys 1 hour of access";
    assert_payment_page(&page, &doc, COMPUTE, "compute", hour, &stack.mint_url).await;
    assert_eq!(
        page.evaluate("document.getElementById('pay').dataset.lease")
            .await,
        "1"
    );
    page.screenshot(&artifacts.join("402-lease-page.png")).await;

    let funds = wallet.balance().await;
    let token = wallet.token(COMPUTE).await;
    let mark = page.mark();
    pay_with(&page, &token).await;
    // The answer set the pass cookie; the page reloads, and the reload goes
    // through on it.
    let reloaded = page.wait_for_load(mark).await;
    let Some(reloaded) = reloaded.filter(|d| d.status == 200) else {
        panic!(
            "the reload after paying did not go through: {:?}; the tab shows {:?}",
            page.documents_since(mark),
            page.text().await
        );
    };
    assert!(reloaded.url.ends_with("/compute/job"), "{reloaded:?}");
    let echo = shown_echo(&page).await;
    assert_eq!(echo["path"], "/compute/job", "{echo}");
    let cookies = page.call("Network.getCookies", serde_json::json!({})).await;
    assert!(
        cookies["cookies"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["name"] == "paygress_pass" && c["httpOnly"] == true)),
        "no HttpOnly pass cookie: {cookies}"
    );
    page.screenshot(&artifacts.join("lease-page.png")).await;

    // The same path again, and another one under the tier: no payment.
    for path in ["/compute/job", "/compute/other?x=1"] {
        let doc = page.navigate(&stack.url(path)).await;
        assert_eq!(doc.status, 200, "{path} on the pass: {doc:?}");
        assert_eq!(shown_echo(&page).await["path"], path);
    }
    assert_eq!(
        u64::from(funds) - u64::from(wallet.balance().await),
        COMPUTE,
        "the wallet did not pay exactly once"
    );
    assert!(
        !wallet.is_spendable(&token).await,
        "the token was not redeemed"
    );
    // The page's paid request, the reload, the two navigations.
    assert_eq!(
        stack.upstream.count() - upstream_before,
        4,
        "what reached the upstream"
    );
    // Chromium also asks for /favicon.ico after each page it shows (a 402
    // at the default price here, which it ignores): every other request of
    // the tab is under /compute. Its requests and Envoy's counters are read
    // until they agree (the last favicon may still be on its way).
    let favicon = stack.url("/favicon.ico");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (after, favicons) = loop {
        let requests = page.requests_since(start);
        let after = stack.counters().await;
        let favicons = requests.iter().filter(|(_, url)| *url == favicon).count() as u64;
        assert!(
            requests
                .iter()
                .all(|(_, url)| url.starts_with(&stack.url("/compute/")) || *url == favicon),
            "{requests:#?}"
        );
        if after.get(CHALLENGED) - before.get(CHALLENGED) == 1 + favicons
            || tokio::time::Instant::now() >= deadline
        {
            break (after, favicons);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_counters(
        &before,
        &after,
        &[
            (CHALLENGED, 1 + favicons),
            (CALLOUTS, 1),
            (GRANTED, 1),
            (PASS_ACCEPTED, 3),
        ],
        "one payment, then the pass",
    );
    assert_no_csp_violation(&page, "the lease's 402 page and its payment");
    // The committed docs show the screenshot this test takes.
    assert!(repo_file("docs/browser.md").contains("img/402-page.png"));
}
