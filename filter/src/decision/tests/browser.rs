//! A browser's answers: the 402 page, and the 400 and 503 pages, made in
//! the proxy and from the verifier's refusals; JSON for everyone else.

use paygress_core::browser::{content_security_policy, TEXT_HTML};

use super::*;

/// Chrome's navigation `Accept`.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                       image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

/// A page answer: the HTML headers, and `Vary: Accept` once.
fn assert_page(r: &LocalReply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(header(&r.headers, "content-type"), Some(TEXT_HTML));
    assert_eq!(
        header(&r.headers, "content-security-policy"),
        Some(content_security_policy())
    );
    let vary: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(vary, ["Accept"], "{r:?}");
    assert!(r.body.starts_with("<!DOCTYPE html>"), "{}", r.body);
}

/// A JSON answer, as before, with `Vary: Accept`.
fn assert_json(r: &LocalReply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
    assert_eq!(header(&r.headers, "vary"), Some("Accept"));
    assert!(header(&r.headers, "content-security-policy").is_none());
    body_json(r);
}

#[test]
fn a_browser_gets_the_tiers_page_built_at_configure_time() {
    let p = plugin();
    for (path, index, amount) in [
        ("/premium/x", 2, 2000),
        ("/premium-plus", 1, 5000),
        ("/other", 0, 1000),
    ] {
        let v = p.on_request_headers(&request(path, &[("accept", BROWSER)]), NOW);
        assert_eq!(v.counters, &[Counter::Challenged], "{path}");
        let r = local_reply(&v);
        assert_page(r, 402);
        let challenge = p.challenge(index).unwrap();
        // The same X-Cashu as for JSON, and the page encoded with the
        // config, byte for byte.
        assert_eq!(
            header(&r.headers, "x-cashu"),
            Some(challenge.payment_request.as_str())
        );
        assert_eq!(Some(&r.body), challenge.html.as_ref(), "{path}");
        assert!(r
            .body
            .contains(&format!(">{}</textarea>", challenge.payment_request)));
        assert!(r.body.contains("<svg class=\"qr\""));
        assert!(r.body.contains(&format!("<strong>{amount} sat</strong>")));
        // Nothing of the request is in it.
        assert!(!r.body.contains(path), "{path}");
        assert!(!r.body.contains("api.example.com"));
    }
}

#[test]
fn every_other_client_gets_the_json_402_as_before() {
    let p = plugin();
    let json_402 = |accept: Option<&str>| {
        let extra: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let v = p.on_request_headers(&request("/premium", &extra), NOW);
        local_reply(&v).clone()
    };
    let challenge = p.challenge(2).unwrap();
    for accept in [
        None,
        Some("*/*"),
        Some("application/json"),
        Some("application/json, text/plain, */*"),
        Some("text/html;q=0.5, application/json"),
        Some("text/html, application/json"),
    ] {
        let r = json_402(accept);
        assert_json(&r, 402);
        assert_eq!(r.body, challenge.body, "{accept:?}");
        assert_eq!(
            r.headers,
            vec![
                ("x-cashu".to_string(), challenge.payment_request.clone()),
                ("content-type".to_string(), "application/json".to_string()),
                ("vary".to_string(), "Accept".to_string()),
            ]
        );
    }
    // Two Accept headers are one list; one that is not UTF-8 is skipped.
    let mut h = request("/premium", &[("accept", "application/json;q=0.1")]);
    h.push(("accept".into(), b"text/html".to_vec()));
    assert_page(local_reply(&p.on_request_headers(&h, NOW)), 402);
    let mut h = request("/premium", &[]);
    h.push(("accept".into(), b"text/html\xff".to_vec()));
    assert_json(local_reply(&p.on_request_headers(&h, NOW)), 402);
}

#[test]
fn a_free_path_and_a_callout_do_not_depend_on_accept() {
    let p = plugin();
    let v = p.on_request_headers(&request("/free/x", &[("accept", BROWSER)]), NOW);
    assert_eq!(v.counters, &[Counter::Free]);
    let token = token_b(MINT, "sat", 2048);
    let v = p.on_request_headers(
        &request("/premium", &[("accept", BROWSER), ("x-cashu", &token)]),
        NOW,
    );
    let (_, call, pending) = callout(&v);
    // Not sent to the verifier: the filter makes the page itself.
    assert!(header(&call.headers, "accept").is_none());
    assert_eq!(pending.accept, vec![BROWSER.to_string()]);
}

#[test]
fn refusals_in_the_proxy_are_pages_for_a_browser() {
    let p = plugin();
    // A token that cannot pay, whose mint is hostile text: escaped.
    let evil = "http://evil.example/<script>alert(1)</script>";
    let token = token_a(evil, "sat", &[2048]);
    let v = p.on_request_headers(
        &request("/premium", &[("accept", BROWSER), ("x-cashu", &token)]),
        NOW,
    );
    assert_eq!(v.counters, &[Counter::Rejected]);
    let r = local_reply(&v);
    assert_page(r, 400);
    assert!(
        r.body.contains("code <code>mint_not_accepted</code>"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    // The same refusal for curl: the JSON, unchanged.
    let v = p.on_request_headers(&request("/premium", &[("x-cashu", &token)]), NOW);
    let r = local_reply(&v);
    assert_json(r, 400);
    assert_eq!(body_json(r)["code"], "mint_not_accepted");

    // A target whose authority hides its path.
    let v = p.on_request_headers(
        &request("http://x?/premium-plus/r", &[("accept", BROWSER)]),
        NOW,
    );
    let r = local_reply(&v);
    assert_page(r, 400);
    assert!(r.body.contains("<code>malformed_request</code>"));
}

#[test]
fn a_bad_pass_cookie_is_a_page_that_still_clears_the_cookie() {
    let p = plugin_with(&lease_config_json());
    let v = p.on_request_headers(
        &request(
            "/compute/x",
            &[
                ("accept", BROWSER),
                ("cookie", "paygress_pass=p1.k9.e30.c2ln"),
            ],
        ),
        NOW,
    );
    let r = local_reply(&v);
    assert_page(r, 400);
    assert!(r.body.contains("<code>pass_invalid</code>"));
    assert!(header(&r.headers, "set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    // The lease tier's page says what the price buys, and reloads after
    // paying (the pass cookie then opens the path).
    let v = p.on_request_headers(&request("/compute/x", &[("accept", BROWSER)]), NOW);
    let r = local_reply(&v);
    assert_page(r, 402);
    assert!(r.body.contains("data-lease=\"1\""));
    assert!(r.body.contains("buys 1 hour of access"));
}

#[test]
fn the_verifiers_refusals_become_pages_for_a_browser() {
    let p = plugin();
    let token = token_b(MINT, "sat", 2048);
    let pending = pending_for(&p, "/premium", &[("accept", BROWSER), ("x-cashu", &token)]);

    let spent = r#"{"error":"token <already> spent","code":"token_already_spent"}"#;
    let r = local_reply(&answer(&p, &pending, "400", &[], spent)).clone();
    assert_page(&r, 400);
    assert!(r.body.contains("<code>token_already_spent</code>"));
    assert!(r.body.contains("token &lt;already&gt; spent"));

    // A 402 with the tier's payment request: the tier's own page.
    let creq = p.challenge(2).unwrap().payment_request.clone();
    let body = r#"{"error":"Payment Required","amount":2000,"unit":"sat","mints":[]}"#;
    let r = local_reply(&answer(&p, &pending, "402", &[("x-cashu", &creq)], body)).clone();
    assert_page(&r, 402);
    assert_eq!(Some(&r.body), p.challenge(2).unwrap().html.as_ref());
    assert_eq!(header(&r.headers, "x-cashu"), Some(creq.as_str()));
    // Another payment request (not this tier's): relayed as JSON.
    let r = local_reply(&answer(
        &p,
        &pending,
        "402",
        &[("x-cashu", "creqAother")],
        body,
    ))
    .clone();
    assert_json(&r, 402);
    assert_eq!(header(&r.headers, "x-cashu"), Some("creqAother"));

    // A 503 with a refund: the page shows the refund, Retry-After stays.
    let refunded = r#"{"error":"the pod could not be created","code":"provisioning_failed","refund":"cashuBrefund"}"#;
    let r = local_reply(&answer(
        &p,
        &pending,
        "503",
        &[("retry-after", "5")],
        refunded,
    ))
    .clone();
    assert_page(&r, 503);
    assert_eq!(header(&r.headers, "retry-after"), Some("5"));
    assert!(r.body.contains(">cashuBrefund</textarea>"), "{}", r.body);

    // A body that cannot be read: the fallback refusal, as a page.
    let r = local_reply(&answer(&p, &pending, "400", &[], "<html>nope</html>")).clone();
    assert_page(&r, 400);
    assert!(r.body.contains("<code>token_invalid</code>"));
    assert!(!r.body.contains("nope"));

    // The verifier unreachable: the 503 page.
    let r = local_reply(&p.on_callout_failure(&pending)).clone();
    assert_page(&r, 503);
    assert!(r.body.contains("<code>verifier_unavailable</code>"));

    // The same answers for curl stay JSON, byte for byte.
    let pending = pending_for(&p, "/premium", &[("x-cashu", &token)]);
    let r = local_reply(&answer(&p, &pending, "400", &[], spent)).clone();
    assert_json(&r, 400);
    assert_eq!(r.body, spent);
    let r = local_reply(&answer(&p, &pending, "503", &[], refunded)).clone();
    assert_json(&r, 503);
    assert_eq!(r.body, refunded);
    assert_json(local_reply(&p.on_callout_failure(&pending)), 503);
}

proptest! {
    /// Whatever the `Accept`, a 402 is answered, as a page or as JSON, and
    /// nothing panics.
    #[test]
    fn any_accept_gets_an_answer(accept in proptest::collection::vec(any::<u8>(), 0..300)) {
        let p = plugin();
        let mut h = request("/premium", &[]);
        h.push(("accept".into(), accept));
        let v = p.on_request_headers(&h, NOW);
        let r = local_reply(&v);
        prop_assert_eq!(r.status, 402);
        let html = header(&r.headers, "content-type") == Some(TEXT_HTML);
        prop_assert_eq!(html, r.body.starts_with("<!DOCTYPE html>"));
    }
}
