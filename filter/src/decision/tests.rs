use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use paygress_core::test_util::{token_a, token_b};

const MINT: &str = "http://127.0.0.1:3338";
/// The time of every request, in Unix seconds.
const NOW: u64 = 1_700_000_000;

fn config_json() -> Value {
    json!({
        "unit": "sat",
        "mints": [MINT],
        "default_amount": 1000,
        "free_paths": ["/free", "/healthz"],
        "tiers": [
            { "id": "premium-plus", "path_prefix": "/premium-plus", "amount": 5000 },
            { "id": "premium", "path_prefix": "/premium", "amount": 2000 }
        ],
        "verifier": { "cluster": "paygress-verifier", "authority": "verifier.local",
                      "timeout_ms": 1500 },
        "failure_mode": "deny"
    })
}

/// [`config_json`] with a lease tier (`compute`, index 3) and two pass keys
/// (`k1` signs, `old` still verifies).
fn lease_config_json() -> Value {
    let mut c = config_json();
    c["tiers"].as_array_mut().unwrap().push(json!({
        "id": "compute", "path_prefix": "/compute", "amount": 1000,
        "lease": { "seconds": 3600 }
    }));
    c["pass_keys"] = json!([
        { "id": "k1", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
        { "id": "old", "secret": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" }
    ]);
    c
}

fn plugin_with(config: &Value) -> Plugin {
    Plugin::from_json(config.to_string().as_bytes()).unwrap()
}

fn plugin() -> Plugin {
    plugin_with(&config_json())
}

fn allow_plugin() -> Plugin {
    let mut c = config_json();
    c["failure_mode"] = json!("allow");
    plugin_with(&c)
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn request(path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = headers(&[
        (":method", "POST"),
        (":path", path),
        (":authority", "api.example.com"),
        (":scheme", "http"),
    ]);
    h.extend(headers(extra));
    h
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn local_reply(v: &Verdict) -> &LocalReply {
    match &v.decision {
        Decision::LocalReply(r) => r,
        other => panic!("expected a local reply, got {other:?}"),
    }
}

fn continued(v: &Verdict) -> &HeaderEdits {
    match &v.decision {
        Decision::Continue { edits, .. } => edits,
        other => panic!("expected continue, got {other:?}"),
    }
}

fn callout(v: &Verdict) -> (&HeaderEdits, &Callout, &Pending) {
    match &v.decision {
        Decision::Callout {
            edits,
            call,
            pending,
        } => (edits, call, pending),
        other => panic!("expected a callout, got {other:?}"),
    }
}

fn body_json(r: &LocalReply) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

/// Decodes a `creqA` into its CBOR map, as a wallet would.
fn decode_creq(creq: &str) -> ciborium::Value {
    let b64 = creq.strip_prefix("creqA").expect("creqA prefix");
    let bytes = URL_SAFE.decode(b64).unwrap();
    ciborium::de::from_reader(bytes.as_slice()).unwrap()
}

fn creq_field<'a>(creq: &'a ciborium::Value, key: &str) -> &'a ciborium::Value {
    creq.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in payment request"))
}

// ---- configuration --------------------------------------------------------

#[test]
fn invalid_configs_are_refused_with_the_key_named() {
    let mut unknown = config_json();
    unknown["surprise"] = json!(1);
    let err = Plugin::from_json(unknown.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("surprise"), "{err}");

    let mut bad = config_json();
    bad["tiers"][1]["path_prefix"] = json!("premium");
    let err = Plugin::from_json(bad.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("tiers[1].path_prefix"), "{err}");

    let mut bad = config_json();
    bad["verifier"]["timeout_ms"] = json!(0);
    let err = Plugin::from_json(bad.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("verifier.timeout_ms"), "{err}");

    assert_eq!(
        Plugin::from_json(b"\xff\xfe{}").unwrap_err(),
        PluginError::NotUtf8
    );
    assert!(Plugin::from_json(b"").is_err());
    assert!(Plugin::from_json(b"{}")
        .unwrap_err()
        .to_string()
        .contains("mints"));
}

#[test]
fn every_tier_has_its_402_precomputed_by_index() {
    let p = plugin();
    let tiers = p.config().price_tiers();
    assert_eq!(tiers.len(), 3);
    for tier in tiers {
        let c = p.challenge(tier.index).unwrap();
        assert_eq!(c.amount, tier.amount);
        let creq = decode_creq(&c.payment_request);
        assert_eq!(
            creq_field(&creq, "a").as_integer().map(u64::try_from),
            Some(Ok(tier.amount))
        );
        assert_eq!(creq_field(&creq, "u").as_text(), Some("sat"));
        let mints = creq_field(&creq, "m").as_array().unwrap();
        assert_eq!(mints.len(), 1);
        assert_eq!(mints[0].as_text(), Some(MINT));
        let body: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(body["error"], "Payment Required");
        assert_eq!(body["amount"], tier.amount);
        assert_eq!(body["unit"], "sat");
        assert_eq!(body["mints"], json!([MINT]));
    }
    assert!(p.challenge(3).is_none());
}

// ---- requests ---------------------------------------------------------------

#[test]
fn free_paths_go_on_without_reserved_or_token_headers() {
    let p = plugin();
    let v = p.on_request_headers(
        &request(
            "/free/x?y=1",
            &[
                ("x-payment-verified", "true"),
                ("X-Payment-Amount", "1000000"),
                ("x-user-id", "someone-else"),
                ("x-provisioned-pod", "pod-1"),
                ("X_Payment_Verified", "true"),
                ("x_user_id", "u"),
                ("x_forwarded_for", "kept"),
                ("x-cashu", "cashuBxyz"),
                ("authorization", "Bearer eyJ.jwt.sig"),
                ("accept", "*/*"),
            ],
        ),
        NOW,
    );
    assert_eq!(v.counters, &[Counter::Free]);
    let edits = continued(&v);
    for name in [
        "x-payment-verified",
        "x-payment-amount",
        "x-user-id",
        "x-provisioned-pod",
        "x_payment_verified",
        "x_user_id",
        "x-cashu",
    ] {
        assert!(edits.remove.iter().any(|n| n == name), "{name} not removed");
    }
    // A non-Cashu Authorization and other headers are the application's.
    assert!(!edits.remove.iter().any(|n| n == "authorization"));
    assert!(!edits.remove.iter().any(|n| n == "accept"));
    assert!(!edits.remove.iter().any(|n| n == "x_forwarded_for"));
    assert!(edits.add.is_empty());

    let v = p.on_request_headers(&request("/healthz", &[]), NOW);
    assert_eq!(continued(&v), &HeaderEdits::default());
}

#[test]
fn paid_paths_without_a_token_get_their_tiers_402() {
    let p = plugin();
    for (path, amount, tier) in [
        ("/premium", 2000, Some("premium")),
        ("/premium/a/b?q=1", 2000, Some("premium")),
        ("/premium-plus/x", 5000, Some("premium-plus")),
        ("/premiumx", 1000, None),
        ("/", 1000, None),
        ("/free/../premium", 2000, Some("premium")),
        ("/free/%2e%2e/premium-plus", 5000, Some("premium-plus")),
        // Every reading counts: as sent, case-folded.
        ("/premium/../free/x", 2000, Some("premium")),
        ("/premium/%2E%2E/free/x", 2000, Some("premium")),
        ("/PREMIUM/x", 2000, Some("premium")),
        ("/Premium-Plus", 5000, Some("premium-plus")),
        ("/FREE", 1000, None),
    ] {
        let v = p.on_request_headers(&request(path, &[("x-payment-verified", "true")]), NOW);
        assert_eq!(v.counters, &[Counter::Challenged], "{path}");
        let r = local_reply(&v);
        assert_eq!(r.status, 402, "{path}");
        assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
        let creq = decode_creq(header(&r.headers, "x-cashu").unwrap());
        assert_eq!(
            creq_field(&creq, "a").as_integer().map(u64::try_from),
            Some(Ok(amount)),
            "{path}"
        );
        let body = body_json(r);
        assert_eq!(body["amount"], amount, "{path}");
        assert_eq!(body["tier"].as_str(), tier, "{path}");
    }
    // An application's own bearer token is not a payment.
    let v = p.on_request_headers(
        &request("/premium", &[("authorization", "Bearer eyJ.x.y")]),
        NOW,
    );
    assert_eq!(local_reply(&v).status, 402);
}

#[test]
fn a_target_whose_authority_hides_the_path_is_refused() {
    let p = plugin();
    let v = p.on_request_headers(&request("http://x?/premium-plus/r", &[]), NOW);
    assert_eq!(v.counters, &[Counter::Rejected]);
    let r = local_reply(&v);
    assert_eq!(r.status, 400);
    assert_eq!(body_json(r)["code"], "malformed_request");
}

#[test]
fn tokens_that_cannot_pay_are_refused_in_the_proxy() {
    let p = plugin();
    for (token, code) in [
        ("cashuBnotbase64!!".to_string(), "malformed_token"),
        ("".to_string(), "malformed_token"),
        ("hello".to_string(), "malformed_token"),
        (
            token_a("http://evil.example", "sat", &[2048]),
            "mint_not_accepted",
        ),
        (token_a(MINT, "usd", &[2048]), "unit_mismatch"),
        (token_a(MINT, "sat", &[1024, 512]), "insufficient_amount"),
        (token_b(MINT, "sat", 1999), "insufficient_amount"),
        (
            token_b("https://other.example", "sat", 4096),
            "mint_not_accepted",
        ),
    ] {
        let v = p.on_request_headers(&request("/premium", &[("x-cashu", &token)]), NOW);
        assert_eq!(v.counters, &[Counter::Rejected], "{code}");
        let r = local_reply(&v);
        assert_eq!(r.status, 400, "{code}");
        assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
        let body = body_json(r);
        assert_eq!(body["code"], code, "{token}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // The same token through Authorization.
    let short = token_a(MINT, "sat", &[1000]);
    for auth in [format!("Bearer {short}"), format!("Cashu {short}")] {
        let v = p.on_request_headers(&request("/premium", &[("authorization", &auth)]), NOW);
        assert_eq!(body_json(local_reply(&v))["code"], "insufficient_amount");
    }
}

#[test]
fn a_token_that_may_pay_is_sent_to_the_verifier() {
    let p = plugin();
    let token = token_a("HTTP://127.0.0.1:3338/", "sat", &[2048]);
    let v = p.on_request_headers(
        &request(
            "/premium/data?x=1",
            &[
                ("x-cashu", &format!("  {token} ")),
                ("x-payment-verified", "true"),
                ("x-request-id", "req-1"),
            ],
        ),
        NOW,
    );
    assert_eq!(v.counters, &[Counter::Callouts]);
    let (edits, call, pending) = callout(&v);
    assert_eq!(edits.remove, vec!["x-payment-verified".to_string()]);
    assert!(edits.add.is_empty());
    assert_eq!(call.cluster, "paygress-verifier");
    assert_eq!(call.timeout, Duration::from_millis(1500));
    let hd = &call.headers;
    assert_eq!(header(hd, ":method"), Some("GET"));
    assert_eq!(header(hd, ":path"), Some("/auth"));
    assert_eq!(header(hd, ":authority"), Some("verifier.local"));
    assert_eq!(header(hd, "x-cashu"), Some(token.as_str()));
    assert_eq!(header(hd, "x-forwarded-uri"), Some("/premium/data?x=1"));
    assert_eq!(header(hd, "x-forwarded-method"), Some("POST"));
    assert_eq!(header(hd, "x-forwarded-host"), Some("api.example.com"));
    assert_eq!(header(hd, "x-required-amount"), Some("2000"));
    assert_eq!(header(hd, "x-request-id"), Some("req-1"));
    assert_eq!(pending.tier_index, 2);
    assert_eq!(pending.credential_edits.remove, vec!["x-cashu".to_string()]);

    // Bearer and Cashu schemes, V4 tokens, the `cashu:` prefix.
    let b = token_b(MINT, "sat", 5000);
    for auth in [format!("Bearer {b}"), format!("cashu cashu:{b}")] {
        let v = p.on_request_headers(
            &request(
                "/premium-plus",
                &[
                    ("authorization", "Bearer eyJ.app.jwt"),
                    ("authorization", &auth),
                ],
            ),
            NOW,
        );
        let (_, call, pending) = callout(&v);
        assert!(header(&call.headers, "x-cashu").unwrap().ends_with(&b));
        assert_eq!(header(&call.headers, "x-required-amount"), Some("5000"));
        // The Cashu Authorization goes, the application's one is put back.
        assert_eq!(
            pending.credential_edits.remove,
            vec!["authorization".to_string()]
        );
        assert_eq!(
            pending.credential_edits.add,
            vec![("authorization".to_string(), b"Bearer eyJ.app.jwt".to_vec())]
        );
    }
}

#[test]
fn non_utf8_header_values_do_not_break_anything() {
    let p = plugin();
    let mut h = request("/premium", &[]);
    h.push(("x-cashu".into(), b"cashuA\xff\xfe".to_vec()));
    h.push(("x-payment-verified".into(), b"\xff".to_vec()));
    let v = p.on_request_headers(&h, NOW);
    assert_eq!(body_json(local_reply(&v))["code"], "malformed_token");

    let mut h = headers(&[(":method", "GET"), (":authority", "a")]);
    h.push((":path".into(), b"/free/\xff".to_vec()));
    h.push(("authorization".into(), b"Bearer \xff".to_vec()));
    assert_eq!(p.on_request_headers(&h, NOW).counters, &[Counter::Free]);

    // No :path at all (CONNECT) prices as the root.
    let v = p.on_request_headers(&headers(&[(":method", "CONNECT")]), NOW);
    assert_eq!(local_reply(&v).status, 402);
}

// ---- the verifier's answer --------------------------------------------------

fn pending_for(p: &Plugin, path: &str, extra: &[(&str, &str)]) -> Pending {
    let v = p.on_request_headers(&request(path, extra), NOW);
    callout(&v).2.clone()
}

fn answer(
    p: &Plugin,
    pending: &Pending,
    status: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Verdict {
    let mut h = headers(&[(":status", status)]);
    h.extend(headers(extra));
    p.on_callout_response(
        pending,
        Some(&CalloutResponse {
            headers: &h,
            body: body.as_bytes(),
            body_size: body.len(),
        }),
        NOW,
    )
}

#[test]
fn a_grant_copies_the_payment_headers_and_drops_the_token() {
    let p = plugin();
    let t = token_a(MINT, "sat", &[2048]);
    let pending = pending_for(
        &p,
        "/premium",
        &[("x-cashu", &t), ("authorization", &format!("Bearer {t}"))],
    );
    let v = answer(
        &p,
        &pending,
        "200",
        &[
            ("x-payment-verified", "true"),
            ("x-payment-amount", "2046"),
            ("x-payment-tier", "premium"),
            ("x-user-id", "u-1234"),
            ("x-provisioned-pod", "pod-abc"),
            ("set-cookie", "not=copied"),
            ("content-length", "0"),
        ],
        "",
    );
    assert_eq!(v.counters, &[Counter::Granted]);
    let edits = continued(&v);
    assert!(edits.remove.contains(&"x-cashu".to_string()));
    assert!(edits.remove.contains(&"authorization".to_string()));
    // The client's copies of grant headers went with the reserved ones
    // before the callout; the host is not asked to remove absent ones.
    for name in paygress_core::headers::GRANT_HEADERS {
        assert!(!edits.remove.contains(&name.to_string()), "{name}");
    }
    let added: Vec<(&str, &[u8])> = edits
        .add
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    assert_eq!(
        added,
        vec![
            ("x-payment-verified", &b"true"[..]),
            ("x-payment-amount", b"2046"),
            ("x-payment-tier", b"premium"),
            ("x-user-id", b"u-1234"),
            ("x-provisioned-pod", b"pod-abc"),
        ]
    );
}

#[test]
fn refusals_of_the_verifier_are_relayed() {
    let p = plugin();
    let pending = pending_for(
        &p,
        "/premium",
        &[("x-cashu", &token_a(MINT, "sat", &[2048]))],
    );

    let spent = r#"{"error":"token already spent","code":"token_already_spent"}"#;
    let v = answer(
        &p,
        &pending,
        "400",
        &[("content-type", "text/plain")],
        spent,
    );
    assert_eq!(v.counters, &[Counter::VerifierRefused]);
    let r = local_reply(&v);
    assert_eq!((r.status, r.body.as_str()), (400, spent));
    assert_eq!(header(&r.headers, "content-type"), Some("application/json"));

    let body = r#"{"error":"Payment Required","amount":3000,"unit":"sat","mints":[]}"#;
    let v = answer(&p, &pending, "402", &[("x-cashu", "creqAverifier")], body);
    let r = local_reply(&v);
    assert_eq!((r.status, r.body.as_str()), (402, body));
    assert_eq!(header(&r.headers, "x-cashu"), Some("creqAverifier"));

    // A 402 without a payment request or body gets the tier's.
    let v = answer(&p, &pending, "402", &[], "");
    let r = local_reply(&v);
    assert_eq!(r.status, 402);
    assert_eq!(
        header(&r.headers, "x-cashu"),
        Some(p.challenge(2).unwrap().payment_request.as_str())
    );
    assert_eq!(body_json(r)["amount"], 2000);

    // A body that is not JSON, or too big, is not relayed.
    let v = answer(&p, &pending, "400", &[], "<html>nope</html>");
    assert_eq!(body_json(local_reply(&v))["code"], "token_invalid");
    let huge = format!(
        r#"{{"error":"{}","code":"token_invalid"}}"#,
        "x".repeat(MAX_RELAYED_BODY)
    );
    let v = answer(&p, &pending, "400", &[], &huge);
    assert!(local_reply(&v).body.len() < MAX_RELAYED_BODY);

    let mint_down = r#"{"error":"mint unreachable","code":"mint_unavailable"}"#;
    let v = answer(&p, &pending, "503", &[("retry-after", "5")], mint_down);
    assert_eq!(v.counters, &[Counter::VerifierRefused]);
    let r = local_reply(&v);
    assert_eq!((r.status, r.body.as_str()), (503, mint_down));
    assert_eq!(header(&r.headers, "retry-after"), Some("5"));

    // A pod that could not be provisioned: the client's refund is in the
    // body, which must reach it as it is.
    let refunded = r#"{"error":"the pod could not be created","code":"provisioning_failed","refund":"cashuBrefund"}"#;
    let v = answer(&p, &pending, "503", &[], refunded);
    assert_eq!(v.counters, &[Counter::VerifierRefused]);
    let r = local_reply(&v);
    assert_eq!((r.status, r.body.as_str()), (503, refunded));
}

#[test]
fn verifier_failures_follow_the_failure_mode() {
    let t = token_a(MINT, "sat", &[2048]);
    let cases: Vec<(&str, &str)> = vec![
        ("500", ""),
        ("503", r#"{"error":"overloaded","code":"verifier_busy"}"#),
        ("503", "upstream connect error"),
        ("502", ""),
        ("504", ""),
        ("401", ""),
        ("403", ""),
        ("404", ""),
        ("302", ""),
        ("abc", ""),
    ];

    let deny = plugin();
    let pending = pending_for(&deny, "/premium", &[("x-cashu", &t)]);
    let check_deny = |v: &Verdict| {
        assert_eq!(v.counters, &[Counter::CalloutFailures]);
        let r = local_reply(v);
        assert_eq!(r.status, 503);
        assert_eq!(body_json(r)["code"], "verifier_unavailable");
    };
    for (status, body) in &cases {
        check_deny(&answer(&deny, &pending, status, &[], body));
    }
    check_deny(&deny.on_callout_response(&pending, None, NOW));
    check_deny(&deny.on_callout_failure(&pending));
    let no_status = headers(&[("content-type", "application/json")]);
    check_deny(&deny.on_callout_response(
        &pending,
        Some(&CalloutResponse {
            headers: &no_status,
            body: b"",
            body_size: 0,
        }),
        NOW,
    ));

    let allow = allow_plugin();
    let pending = pending_for(
        &allow,
        "/premium",
        &[("x-cashu", &t), ("x-payment-verified", "true")],
    );
    let check_allow = |v: &Verdict| {
        assert_eq!(
            v.counters,
            &[Counter::CalloutFailures, Counter::AllowedOnFailure]
        );
        // Through unpaid, but still without the token.
        let edits = continued(v);
        assert_eq!(edits.remove, vec!["x-cashu".to_string()]);
        assert!(edits.add.is_empty());
    };
    for (status, body) in &cases {
        check_allow(&answer(&allow, &pending, status, &[], body));
    }
    check_allow(&allow.on_callout_response(&pending, None, NOW));
    check_allow(&allow.on_callout_failure(&pending));
}

// ---- properties -------------------------------------------------------------

/// Whether a header value carries a pass: as a `Bearer` credential or in the
/// pass cookie.
/// Whether a header, as it would go upstream, carries a pass: an
/// `Authorization: Bearer p1.…` or a `paygress_pass` cookie. (A `Bearer
/// p1.…` in a Cookie header, or a cookie-shaped Authorization, is no
/// carrier: no upstream reads a pass there.)
fn carries_pass(name: &str, value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    match name.to_ascii_lowercase().as_str() {
        "authorization" => paygress_core::pass_carrier::bearer_pass(&text).is_some(),
        "cookie" => paygress_core::pass_carrier::cookie_pass(&text).is_some(),
        _ => false,
    }
}

fn any_header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        Just(":path".to_string()),
        Just(":method".to_string()),
        Just(":authority".to_string()),
        Just("x-cashu".to_string()),
        Just("authorization".to_string()),
        Just("X-Payment-Verified".to_string()),
        Just("x-payment-other".to_string()),
        Just("x-user-id".to_string()),
        Just("x-provisioned-pod".to_string()),
        Just("x-paygress-lease".to_string()),
        Just("x-paygress-pass".to_string()),
        Just("cookie".to_string()),
        "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "(/free|/premium|/x|/premium-plus)(/[a-z.%/]{0,10})?(\\?.{0,5})?"
            .prop_map(String::into_bytes),
        "(Bearer |Cashu |)(cashu:)?cashu[AB][A-Za-z0-9_-]{0,40}".prop_map(String::into_bytes),
        "(Bearer |bearer\t|)p1\\.(k1|old|x)\\.[A-Za-z0-9_-]{0,12}\\.[A-Za-z0-9_-]{0,8}"
            .prop_map(String::into_bytes),
        "([a-z]{1,3}=[a-z]{0,3}; ?){0,2}(PayGress_Pass|paygress_pass)=\"?p1\\.k1\\.[a-z]{0,5}\\.[a-z]{0,5}\"?(; [a-z]{1,3}=1)?"
            .prop_map(String::into_bytes),
    ];
    (name, value)
}

proptest! {
    #[test]
    fn no_request_panics_and_reserved_headers_never_survive(
        h in proptest::collection::vec(any_header(), 0..10)
    ) {
        let mut config = lease_config_json();
        config["failure_mode"] = json!("allow");
        let p = plugin_with(&config);
        let verdict = p.on_request_headers(&h, NOW);
        let edits = match &verdict.decision {
            Decision::Continue { edits, .. } => Some(edits),
            Decision::Callout { edits, .. } => Some(edits),
            Decision::LocalReply(r) => {
                prop_assert!(matches!(r.status, 400 | 402));
                None
            }
        };
        if let Some(edits) = edits {
            for (name, _) in &h {
                if is_reserved(name) {
                    prop_assert!(edits.remove.contains(&name.to_ascii_lowercase()));
                }
            }
            prop_assert!(edits.add.iter().all(|(n, _)| n == "authorization" || n == "cookie"));
            prop_assert!(!edits.add.iter().any(|(n, v)| carries_pass(n, v)));
        }
        if let Decision::Callout { pending, .. } = &verdict.decision {
            prop_assert!(!pending.credential_edits.add.iter().any(|(n, v)| carries_pass(n, v)));
            // Whatever the verifier says, the token never goes upstream.
            for status in ["200", "500"] {
                let resp = headers(&[(":status", status), ("x-cashu", "leak")]);
                let v = p.on_callout_response(pending, Some(&CalloutResponse {
                    headers: &resp, body: b"", body_size: 0,
                }), NOW);
                let e = continued(&v);
                for (name, value) in &h {
                    let lower = name.to_ascii_lowercase();
                    if lower == "x-cashu" || lower == "x-paygress-pass" {
                        prop_assert!(e.remove.contains(&lower));
                    }
                    if lower == "authorization"
                        && paygress_core::extract::is_cashu_authorization(
                            &String::from_utf8_lossy(value))
                    {
                        prop_assert!(e.remove.contains(&lower));
                        prop_assert!(!e.add.iter().any(|(n, v)| n == "authorization" && v == value));
                    }
                }
                prop_assert!(!e.add.iter().any(|(n, _)| n == "x-cashu"));
            }
        }
    }
}

// Leases' passes: their carriers, their checks, and the pass handed back.
mod passes;

// A browser's pages.
mod browser;
