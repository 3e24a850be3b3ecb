use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use paygress_core::pass::{sign, Claims, PassKey};

use super::*;

/// The lease tier's index in [`lease_config_json`].
const COMPUTE: usize = 3;
/// When the test leases end.
const EXPIRES: u64 = NOW + 600;

fn lease_plugin() -> Plugin {
    plugin_with(&lease_config_json())
}

/// The configured keys: `k1` (signs) and `old`.
fn keys(p: &Plugin) -> (PassKey, PassKey) {
    let keys = p.config().pass_keys();
    (keys[0].clone(), keys[1].clone())
}

fn claims(tier: &str, expires_at: u64) -> Claims {
    Claims {
        lease: "lease-7f3a".into(),
        tier: tier.into(),
        expires_at,
        payer: "payer-444537".into(),
        pod: None,
    }
}

/// A pass for `tier`, signed with the configured signing key.
fn pass_for(p: &Plugin, tier: &str, expires_at: u64) -> String {
    sign(&claims(tier, expires_at), &keys(p).0)
}

/// The grant headers among the edits' additions.
fn grants(edits: &HeaderEdits) -> Vec<(&str, &str)> {
    edits
        .add
        .iter()
        .filter(|(n, _)| paygress_core::headers::GRANT_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| (n.as_str(), core::str::from_utf8(v).unwrap()))
        .collect()
}

/// The additions that are not grant headers (values put back).
fn put_back(edits: &HeaderEdits) -> Vec<(&str, &str)> {
    edits
        .add
        .iter()
        .filter(|(n, _)| !paygress_core::headers::GRANT_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| (n.as_str(), core::str::from_utf8(v).unwrap()))
        .collect()
}

fn removes(edits: &HeaderEdits, name: &str) -> bool {
    edits.remove.iter().any(|n| n == name)
}

fn compute_grants() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-payment-verified", "true"),
        ("x-user-id", "payer-444537"),
        ("x-paygress-lease", "lease-7f3a"),
        ("x-payment-tier", "compute"),
    ]
}

/// Asserts a 400 `pass_invalid` counted as a refused pass.
fn assert_pass_invalid(v: &Verdict, what: &str) {
    assert_eq!(
        v.counters,
        &[Counter::Rejected, Counter::PassRefused],
        "{what}"
    );
    let r = local_reply(v);
    assert_eq!(r.status, 400, "{what}");
    assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
    let body = body_json(r);
    assert_eq!(body["code"], "pass_invalid", "{what}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("pass")));
}

/// Asserts the 402 of the tier with this index.
fn assert_challenge(p: &Plugin, v: &Verdict, tier_index: usize, counters: &[Counter], what: &str) {
    assert_eq!(v.counters, counters, "{what}");
    let r = local_reply(v);
    assert_eq!(r.status, 402, "{what}");
    assert_eq!(
        header(&r.headers, "x-cashu"),
        Some(p.challenge(tier_index).unwrap().payment_request.as_str()),
        "{what}"
    );
}

// ---- configuration --------------------------------------------------------

#[test]
fn a_pass_key_from_an_unset_variable_is_refused_with_the_key_named() {
    let mut c = lease_config_json();
    c["pass_keys"] = json!([{ "id": "k1", "secret_env": "PAYGRESS_FILTER_TEST_UNSET_KEY" }]);
    let err = Plugin::from_json(c.to_string().as_bytes()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("pass_keys[0].secret_env"), "{text}");
    assert!(text.contains("PAYGRESS_FILTER_TEST_UNSET_KEY"), "{text}");

    // The same key, read from the VM's environment, is the inline one.
    let env = |name: &str| {
        (name == "PAYGRESS_FILTER_TEST_UNSET_KEY")
            .then(|| "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string())
    };
    let from_env = Plugin::from_json_with_env(c.to_string().as_bytes(), &env).unwrap();
    let inline = lease_plugin();
    assert_eq!(from_env.config().pass_keys()[0], keys(&inline).0);

    // A lease tier needs a key.
    c["pass_keys"] = json!([]);
    let err = Plugin::from_json(c.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("pass_keys"), "{err}");
}

#[test]
fn a_lease_tier_with_a_pod_is_accepted() {
    let mut c = lease_config_json();
    c["tiers"][2]["pod"] = json!({ "image": "ghcr.io/example/worker:1", "port": 8080 });
    let p = plugin_with(&c);
    assert_eq!(p.config().tier(COMPUTE).lease_seconds, Some(3600));
}

// ---- requests with a pass ---------------------------------------------------

#[test]
fn a_valid_pass_in_each_carrier_opens_its_tier_with_no_callout() {
    let p = lease_plugin();
    let pass = pass_for(&p, "compute", EXPIRES);
    let bearer = format!("Bearer {pass}");
    let cookie = format!("a=1; paygress_pass={pass}; b=2");
    let app = ("authorization", "Bearer eyJ.app.jwt");
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "header",
            vec![("x-paygress-pass", &pass), app, ("cookie", "a=1")],
        ),
        (
            "bearer",
            vec![app, ("authorization", &bearer), ("cookie", "a=1")],
        ),
        ("cookie", vec![app, ("cookie", &cookie), ("cookie", "c=3")]),
    ];
    for (carrier, extra) in cases {
        let v = p.on_request_headers(&request("/compute/jobs?x=1", &extra), NOW);
        assert_eq!(v.counters, &[Counter::PassAccepted], "{carrier}");
        let Decision::Continue {
            edits,
            response_headers,
        } = &v.decision
        else {
            panic!("{carrier}: expected continue, got {:?}", v.decision);
        };
        assert!(response_headers.is_empty(), "{carrier}");
        assert_eq!(grants(edits), compute_grants(), "{carrier}");
        // No grant header came from the client: none is removed (each
        // removal is a host call), only added.
        for name in paygress_core::headers::GRANT_HEADERS {
            assert!(!removes(edits, name), "{carrier}: {name}");
        }
        match carrier {
            "header" => {
                assert!(removes(edits, "x-paygress-pass"));
                assert!(!removes(edits, "authorization") && !removes(edits, "cookie"));
                assert!(put_back(edits).is_empty());
            }
            "bearer" => {
                assert!(removes(edits, "authorization") && !removes(edits, "cookie"));
                assert_eq!(
                    put_back(edits),
                    vec![("authorization", "Bearer eyJ.app.jwt")]
                );
            }
            _ => {
                assert!(removes(edits, "cookie") && !removes(edits, "authorization"));
                assert_eq!(
                    put_back(edits),
                    vec![("cookie", "a=1; b=2"), ("cookie", "c=3")]
                );
            }
        }
    }

    // A pass of a lease with a pod names it upstream.
    let with_pod = sign(
        &Claims {
            pod: Some("pod-9".into()),
            ..claims("compute", EXPIRES)
        },
        &keys(&p).0,
    );
    let v = p.on_request_headers(&request("/compute", &[("x-paygress-pass", &with_pod)]), NOW);
    let mut expected = compute_grants();
    expected.push(("x-provisioned-pod", "pod-9"));
    assert_eq!(grants(continued(&v)), expected);
}

#[test]
fn passes_of_every_configured_key_verify_and_others_are_invalid() {
    let p = lease_plugin();
    let by_old = sign(&claims("compute", EXPIRES), &keys(&p).1);
    assert!(by_old.starts_with("p1.old."));
    let v = p.on_request_headers(&request("/compute", &[("x-paygress-pass", &by_old)]), NOW);
    assert_eq!(v.counters, &[Counter::PassAccepted]);
    assert_eq!(grants(continued(&v)), compute_grants());

    let retired = PassKey::new("k0", &[7; 32]).unwrap();
    let by_retired = sign(&claims("compute", EXPIRES), &retired);
    let v = p.on_request_headers(
        &request(
            "/compute",
            &[("authorization", &format!("Bearer {by_retired}"))],
        ),
        NOW,
    );
    assert_pass_invalid(&v, "unknown key");
    assert!(body_json(local_reply(&v))["error"]
        .as_str()
        .unwrap()
        .contains("unknown key"));
}

#[test]
fn forged_truncated_or_missigned_passes_are_invalid() {
    let p = lease_plugin();
    let pass = pass_for(&p, "compute", EXPIRES);
    let signature = pass.rsplit('.').next().unwrap();
    // Claims changed (a later expiry, another payer), the signature kept.
    let mut forged = Vec::new();
    for altered in [
        claims("compute", u64::MAX),
        Claims {
            payer: "someone-else".into(),
            ..claims("compute", EXPIRES)
        },
    ] {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered).unwrap());
        forged.push(format!("p1.k1.{body}.{signature}"));
    }
    // Signed under the right key id with the wrong secret.
    let impostor = PassKey::new("k1", &[9; 32]).unwrap();
    let missigned = sign(&claims("compute", EXPIRES), &impostor);
    let cases = [
        ("forged expiry", forged[0].clone()),
        ("forged payer", forged[1].clone()),
        ("missigned", missigned),
        ("truncated signature", pass[..pass.len() - 4].to_string()),
        ("truncated claims", pass[..pass.len() / 2].to_string()),
        ("empty", String::new()),
        ("not a pass", "hello".to_string()),
    ];
    for (what, bad) in &cases {
        let v = p.on_request_headers(&request("/compute", &[("x-paygress-pass", bad)]), NOW);
        assert_pass_invalid(&v, what);
    }
    // None of them clears a cookie it did not come in.
    let v = p.on_request_headers(
        &request("/compute", &[("x-paygress-pass", &forged[0])]),
        NOW,
    );
    let Decision::LocalReply(reply) = &v.decision else {
        panic!("{v:?}")
    };
    assert!(!reply.headers.iter().any(|(n, _)| n == "set-cookie"));
    // In the cookie too: then the answer tells the browser to drop it (on
    // the path it was set for), or it would come back until it expired.
    let cookie = format!("paygress_pass={}", forged[0]);
    for (path, scheme, want) in [
        (
            "/compute/job",
            "http",
            "paygress_pass=; Path=/compute; Max-Age=0; HttpOnly; SameSite=Lax",
        ),
        (
            "/compute",
            "https",
            "paygress_pass=; Path=/compute; Max-Age=0; HttpOnly; SameSite=Lax; Secure",
        ),
    ] {
        let mut headers = request(path, &[("cookie", &cookie)]);
        for (name, value) in headers.iter_mut() {
            if name == ":scheme" {
                *value = scheme.as_bytes().to_vec();
            }
        }
        let v = p.on_request_headers(&headers, NOW);
        assert_pass_invalid(&v, "forged cookie");
        // TLS ended by a load balancer in front: Secure all the same.
        let mut behind = request(path, &[("cookie", &cookie), ("x-forwarded-proto", "https")]);
        behind.retain(|(n, _)| n != ":scheme");
        if let Decision::LocalReply(reply) = &p.on_request_headers(&behind, NOW).decision {
            let cookie = header(&reply.headers, "set-cookie").unwrap_or_default();
            assert!(cookie.ends_with("; Secure"), "{cookie}");
        } else {
            panic!("not a local reply");
        }
        let Decision::LocalReply(reply) = &v.decision else {
            panic!("{v:?}")
        };
        assert_eq!(header(&reply.headers, "set-cookie"), Some(want), "{path}");
    }
}

#[test]
fn expired_passes_ask_the_verifier_and_passes_of_another_tier_get_the_tiers_402() {
    let p = lease_plugin();
    let pass = pass_for(&p, "compute", EXPIRES);
    // Expired: the verifier's ledger may know the lease to run on (a top-up
    // made with another pass), so it is asked, with the pass and no token;
    // its answer (a fresh pass, or the 402) is what the client gets.
    for now in [EXPIRES, EXPIRES + 1, u64::MAX] {
        let v = p.on_request_headers(&request("/compute", &[("x-paygress-pass", &pass)]), now);
        assert_eq!(
            v.counters,
            &[Counter::PassExpired, Counter::Callouts],
            "{now}"
        );
        let (edits, call, pending) = callout(&v);
        assert_eq!(
            header(&call.headers, "x-paygress-pass"),
            Some(pass.as_str())
        );
        assert_eq!(header(&call.headers, "x-cashu"), None);
        assert_eq!(header(&call.headers, "x-forwarded-uri"), Some("/compute"));
        assert!(edits.add.is_empty());
        assert!(pending
            .credential_edits
            .remove
            .contains(&"x-paygress-pass".to_string()));
        // The verifier's 402 is relayed with the tier's payment request.
        let v = answer(&p, pending, "402", &[], r#"{"error":"Payment Required"}"#);
        let r = local_reply(&v);
        assert_eq!(r.status, 402);
        assert_eq!(
            header(&r.headers, "x-cashu"),
            Some(p.challenge(COMPUTE).unwrap().payment_request.as_str())
        );
    }
    // An expired pass of another tier is not worth a callout.
    let other = pass_for(&p, "compute", EXPIRES);
    let v = p.on_request_headers(
        &request("/premium/x", &[("x-paygress-pass", &other)]),
        EXPIRES + 1,
    );
    assert_challenge(
        &p,
        &v,
        2,
        &[Counter::Challenged, Counter::PassExpired],
        "expired, other tier",
    );
    // One second before the end, it still opens.
    let v = p.on_request_headers(
        &request("/compute", &[("x-paygress-pass", &pass)]),
        EXPIRES - 1,
    );
    assert_eq!(v.counters, &[Counter::PassAccepted]);

    // A compute pass opens no other tier's paths, however they are spelt.
    let refused = [Counter::Challenged, Counter::PassRefused];
    for (path, tier) in [
        ("/premium/x", 2),
        ("/compute/../premium", 2),
        ("/compute/%2e%2e/premium-plus", 1),
        ("/other", 0),
    ] {
        let v = p.on_request_headers(&request(path, &[("x-paygress-pass", &pass)]), NOW);
        assert_challenge(&p, &v, tier, &refused, path);
    }
    // A pass naming a tier that sells no lease opens nothing.
    let premium = pass_for(&p, "premium", EXPIRES);
    let v = p.on_request_headers(&request("/premium", &[("x-paygress-pass", &premium)]), NOW);
    assert_challenge(&p, &v, 2, &refused, "premium pass");
}

#[test]
fn a_pass_replaces_spoofed_grant_headers() {
    let p = lease_plugin();
    let pass = pass_for(&p, "compute", EXPIRES);
    let v = p.on_request_headers(
        &request(
            "/compute",
            &[
                ("x-paygress-pass", &pass),
                ("X-Payment-Verified", "true"),
                ("x-user-id", "attacker"),
                ("X-Paygress-Lease", "someone-elses-lease"),
                ("x_paygress_lease", "underscored"),
                ("x-payment-tier", "premium"),
                ("x-provisioned-pod", "pod-of-another"),
            ],
        ),
        NOW,
    );
    let edits = continued(&v);
    for name in [
        "x-payment-verified",
        "x-user-id",
        "x-paygress-lease",
        "x_paygress_lease",
        "x-payment-tier",
        "x-provisioned-pod",
    ] {
        assert!(removes(edits, name), "{name}");
    }
    assert_eq!(grants(edits), compute_grants());
    assert!(put_back(edits).is_empty());
}

#[test]
fn pass_carriers_are_removed_on_free_paths_with_no_grant() {
    let p = lease_plugin();
    let pass = pass_for(&p, "compute", EXPIRES);
    let v = p.on_request_headers(
        &request(
            "/free/page",
            &[
                ("x-paygress-pass", &pass),
                ("authorization", &format!("bearer\t{pass}")),
                ("cookie", &format!("Paygress_Pass=\"{pass}\"; theme=dark")),
                ("cookie", &format!("paygress_pass={pass}")),
            ],
        ),
        NOW,
    );
    assert_eq!(v.counters, &[Counter::Free]);
    let edits = continued(&v);
    for name in ["x-paygress-pass", "authorization", "cookie"] {
        assert!(removes(edits, name), "{name}");
    }
    assert!(grants(edits).is_empty());
    assert_eq!(put_back(edits), vec![("cookie", "theme=dark")]);
}

#[test]
fn without_pass_keys_a_bearer_pass_is_the_applications() {
    let p = plugin();
    let pass = sign(
        &claims("premium", EXPIRES),
        &PassKey::new("k1", &[1; 32]).unwrap(),
    );
    let bearer = format!("Bearer {pass}");
    // Left to the application, on a free path and on a paid one.
    let v = p.on_request_headers(&request("/free", &[("authorization", &bearer)]), NOW);
    assert_eq!(continued(&v), &HeaderEdits::default());
    let v = p.on_request_headers(&request("/premium", &[("authorization", &bearer)]), NOW);
    assert_challenge(&p, &v, 2, &[Counter::Challenged], "bearer");
    // The header and the cookie are still stripped, and refused when paid.
    let cookie = format!("paygress_pass={pass}");
    let v = p.on_request_headers(
        &request("/free", &[("x-paygress-pass", &pass), ("cookie", &cookie)]),
        NOW,
    );
    let edits = continued(&v);
    assert!(removes(edits, "x-paygress-pass") && removes(edits, "cookie"));
    assert!(edits.add.is_empty());
    for extra in [
        ("x-paygress-pass", pass.as_str()),
        ("cookie", cookie.as_str()),
    ] {
        let v = p.on_request_headers(&request("/premium", &[extra]), NOW);
        assert_pass_invalid(&v, extra.0);
    }
}

// ---- a pass and a token: the verifier tops the lease up ----------------------

fn https(mut h: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    for (name, value) in &mut h {
        if name == ":scheme" {
            *value = b"https".to_vec();
        }
    }
    h
}

#[test]
fn a_pass_with_a_token_goes_to_the_verifier_and_the_new_pass_comes_back() {
    let p = lease_plugin();
    let pass = pass_for(&p, "compute", EXPIRES);
    let token = token_a(MINT, "sat", &[1024]);
    let extra = [
        ("x-cashu", token.as_str()),
        ("cookie", &format!("paygress_pass={pass}; a=1")),
    ];
    let v = p.on_request_headers(&request("/compute/run", &extra), NOW);
    assert_eq!(v.counters, &[Counter::Callouts]);
    let (_, call, pending) = callout(&v);
    assert_eq!(
        header(&call.headers, "x-paygress-pass"),
        Some(pass.as_str())
    );
    assert_eq!(header(&call.headers, "x-cashu"), Some(token.as_str()));
    assert_eq!(pending.tier_index, COMPUTE);
    assert!(!pending.secure);
    assert_eq!(
        pending.credential_edits.remove,
        vec!["x-cashu".to_string(), "cookie".to_string()]
    );
    assert_eq!(
        pending.credential_edits.add,
        vec![("cookie".to_string(), b"a=1".to_vec())]
    );

    // The verifier extends the lease: a new pass, until an hour later.
    let renewed = pass_for(&p, "compute", EXPIRES + 3600);
    let granted = |pending: &Pending, new_pass: &str| {
        answer(
            &p,
            pending,
            "200",
            &[
                ("x-payment-verified", "true"),
                ("x-payment-tier", "compute"),
                ("x-paygress-lease", "lease-7f3a"),
                ("x-paygress-pass", new_pass),
            ],
            "",
        )
    };
    let v = granted(pending, &renewed);
    assert_eq!(v.counters, &[Counter::Granted]);
    let Decision::Continue {
        edits,
        response_headers,
    } = &v.decision
    else {
        panic!("expected continue, got {:?}", v.decision);
    };
    // The pass goes to the client, never upstream.
    assert!(!edits.add.iter().any(|(n, _)| n == "x-paygress-pass"));
    assert!(edits
        .add
        .contains(&("x-paygress-lease".to_string(), b"lease-7f3a".to_vec())));
    assert!(edits.add.contains(&("cookie".to_string(), b"a=1".to_vec())));
    let max_age = EXPIRES + 3600 - NOW;
    assert_eq!(
        response_headers,
        &vec![
            ("x-paygress-pass".to_string(), renewed.clone()),
            (
                "set-cookie".to_string(),
                format!(
                    "paygress_pass={renewed}; Path=/compute; Max-Age={max_age}; HttpOnly; SameSite=Lax"
                )
            ),
        ]
    );

    // Over https the cookie is Secure.
    let v = p.on_request_headers(&https(request("/compute/run", &extra)), NOW);
    let secure = callout(&v).2.clone();
    assert!(secure.secure);
    let v = granted(&secure, &renewed);
    let Decision::Continue {
        response_headers, ..
    } = &v.decision
    else {
        panic!("expected continue, got {:?}", v.decision);
    };
    let cookie = header(response_headers, "set-cookie").unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(cookie.contains("; Path=/compute;"), "{cookie}");

    // The verifier sold the lease: a pass this proxy cannot check (a key it
    // lacks mid-rotation, a clock behind the verifier's) still goes to the
    // client who paid.
    let forged = format!("{}x", &renewed[..renewed.len() - 1]);
    let stale = pass_for(&p, "compute", NOW);
    for unchecked in [forged.as_str(), stale.as_str()] {
        let v = granted(pending, unchecked);
        let Decision::Continue {
            response_headers, ..
        } = &v.decision
        else {
            panic!("expected continue, got {:?}", v.decision);
        };
        assert_eq!(
            header(response_headers, "x-paygress-pass"),
            Some(unchecked),
            "{unchecked}"
        );
    }
    // One that cannot be read, or names a tier this proxy does not know,
    // is not handed out; the grant itself stands.
    let unknown_tier = pass_for(&p, "gone", EXPIRES);
    for bad in [unknown_tier.as_str(), "", "p1.k1.not-json.AAAA"] {
        let v = granted(pending, bad);
        assert_eq!(v.counters, &[Counter::Granted], "{bad}");
        let Decision::Continue {
            edits,
            response_headers,
        } = &v.decision
        else {
            panic!("expected continue, got {:?}", v.decision);
        };
        assert!(response_headers.is_empty(), "{bad}");
        assert!(!edits.add.iter().any(|(n, _)| n == "x-paygress-pass"));
    }
}

#[test]
fn a_pass_that_is_no_pass_is_not_sent_to_the_verifier() {
    let p = lease_plugin();
    let token = token_a(MINT, "sat", &[1024]);
    for junk in ["", "hello", "p1.k1.a", "p1.k1.a.b\u{fffd}"] {
        let v = p.on_request_headers(
            &request(
                "/compute",
                &[("x-cashu", &token), ("x-paygress-pass", junk)],
            ),
            NOW,
        );
        let (_, call, pending) = callout(&v);
        assert_eq!(header(&call.headers, "x-paygress-pass"), None, "{junk}");
        assert!(pending
            .credential_edits
            .remove
            .contains(&"x-paygress-pass".to_string()));
    }
}
