//! The payment contract around a token: where it is found in the headers
//! (`extract`), the checks before anything is redeemed (`precheck`: mint,
//! unit, amount, input fee), the 402 and 400 bodies and statuses
//! (`outcome`), and the header names (`headers`). Runs natively and on wasm32.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use paygress_core::extract::{self, FoundToken, TokenSource};
use paygress_core::outcome::{self, ErrorCode, Rejection};
use paygress_core::precheck::{self, FeeSumError};
use paygress_core::token::{self, Token};
use paygress_core::{headers, payment_request, CompiledConfig, TokenLimits};
use serde_json::{json, Value};

// ---- extract ----------------------------------------------------------------

type Found = Option<(TokenSource, String)>;

fn found(x_cashu: Option<&str>, auth: Option<&str>) -> Found {
    extract::find_token(x_cashu, auth).map(|f| (f.source, f.token.to_string()))
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn tokens_are_found_where_the_contract_says() {
    use TokenSource::*;
    let t = |s: TokenSource, v: &str| Some((s, v.to_string()));
    let table: &[(Option<&str>, Option<&str>, Found)] = &[
        (Some("cashuBabc"), None, t(XCashu, "cashuBabc")),
        (Some("  cashuBabc \t"), None, t(XCashu, "cashuBabc")),
        (Some("cashu:cashuAabc"), None, t(XCashu, "cashu:cashuAabc")),
        // X-Cashu wins over Authorization.
        (
            Some("cashuBx"),
            Some("Bearer cashuAy"),
            t(XCashu, "cashuBx"),
        ),
        (Some("cashuBx"), Some("Cashu cashuAy"), t(XCashu, "cashuBx")),
        // An empty X-Cashu is found (and fails to decode): a 400, not a 402.
        (Some(""), None, t(XCashu, "")),
        (Some("   "), Some("Cashu cashuAy"), t(XCashu, "")),
        // Authorization: Cashu <token>, any case, any token.
        (
            None,
            Some("Cashu cashuBabc"),
            t(AuthorizationCashu, "cashuBabc"),
        ),
        (
            None,
            Some("cashu cashuBabc"),
            t(AuthorizationCashu, "cashuBabc"),
        ),
        (
            None,
            Some("CASHU   cashuBabc  "),
            t(AuthorizationCashu, "cashuBabc"),
        ),
        (
            None,
            Some("Cashu garbage"),
            t(AuthorizationCashu, "garbage"),
        ),
        (
            None,
            Some("Cashu\tcashuBabc"),
            t(AuthorizationCashu, "cashuBabc"),
        ),
        // Authorization: Bearer <token> only when it is a Cashu token.
        (
            None,
            Some("Bearer cashuBabc"),
            t(AuthorizationBearer, "cashuBabc"),
        ),
        (
            None,
            Some("bearer cashuAabc"),
            t(AuthorizationBearer, "cashuAabc"),
        ),
        (
            None,
            Some("BEARER cashu:cashuBabc"),
            t(AuthorizationBearer, "cashu:cashuBabc"),
        ),
        (
            None,
            Some("Bearer CASHU:cashuBabc"),
            t(AuthorizationBearer, "CASHU:cashuBabc"),
        ),
        (
            None,
            Some("Bearer\tcashuBabc"),
            t(AuthorizationBearer, "cashuBabc"),
        ),
        (
            None,
            Some("  Bearer   cashuBabc  "),
            t(AuthorizationBearer, "cashuBabc"),
        ),
        (None, Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"), None),
        (None, Some("Bearer cashuCabc"), None),
        (None, Some("Bearer cashubabc"), None),
        (None, Some("Bearer creqAabc"), None),
        (None, Some("Basic dXNlcjpwYXNz"), None),
        (None, Some("Digest username=\"cashuBabc\""), None),
        (None, Some("Cashu"), None),
        (None, Some("Bearer"), None),
        (None, Some(""), None),
        (None, Some("cashuBabc"), None),
        (None, None, None),
    ];
    let mut failures = Vec::new();
    for (x, auth, want) in table {
        let got = found(*x, *auth);
        if &got != want {
            failures.push(format!("{x:?} {auth:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn cashu_authorization_is_recognised_for_stripping() {
    for v in [
        "Cashu cashuBabc",
        "cashu x",
        "Bearer cashuAabc",
        "Bearer cashu:cashuBabc",
        "Bearer\tcashuBabc",
    ] {
        assert!(extract::is_cashu_authorization(v), "{v:?}");
    }
    for v in ["Bearer eyJ", "Basic abc", "", "Cashu", "cashuBabc"] {
        assert!(!extract::is_cashu_authorization(v), "{v:?}");
    }
    assert!(extract::looks_like_cashu("cashuAx"));
    assert!(extract::looks_like_cashu(" cashu:cashuBx "));
    assert!(!extract::looks_like_cashu("cashu:"));
    assert!(!extract::looks_like_cashu("cashuC"));
    assert!(!extract::looks_like_cashu(""));
    // Multi-byte characters around the prefix are not a problem.
    assert!(!extract::looks_like_cashu("cashé:cashuB"));
    assert!(!extract::looks_like_cashu("\u{1F4A9}"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_found_vector_token_decodes() {
    let data = common::json(common::NUT00);
    let s = data["valid"][3]["token"].as_str().unwrap();
    for (x, auth) in [
        (Some(s.to_string()), None),
        (None, Some(format!("Bearer {s}"))),
        (None, Some(format!("Cashu cashu:{s}"))),
    ] {
        let FoundToken { token, .. } = extract::find_token(x.as_deref(), auth.as_deref()).unwrap();
        let tok = token::decode(token, &TokenLimits::default()).unwrap();
        assert_eq!(tok.total, 1);
    }
}

// ---- precheck ---------------------------------------------------------------

fn config() -> CompiledConfig {
    CompiledConfig::from_json(
        r#"{"unit":"sat","mints":["http://localhost:3338","https://8333.space:3338"],
            "tiers":[{"id":"p","path_prefix":"/p","amount":4}]}"#,
    )
    .unwrap()
}

/// The NUT-00 V4 multi-keyset vector: 4 sat at http://localhost:3338, keysets
/// 00ffd48b8f5ecf80 (1 proof) and 00ad268c4d1f5826 (2 proofs).
fn four_sat_token() -> Token {
    let data = common::json(common::NUT00);
    let s = data["valid"][5]["token"].as_str().unwrap();
    token::decode(s, &TokenLimits::default()).unwrap()
}

fn code(r: Result<(), Rejection>) -> Option<ErrorCode> {
    r.err().map(|e| e.code)
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn precheck_mint_unit_amount() {
    let c = config();
    let tok = four_sat_token();
    assert_eq!(tok.total, 4);
    assert_eq!(code(precheck::precheck(&tok, &c, 4, 0)), None);
    assert_eq!(code(precheck::precheck(&tok, &c, 3, 0)), None);
    assert_eq!(code(precheck::precheck(&tok, &c, 0, 0)), None);
    assert_eq!(
        code(precheck::precheck(&tok, &c, 5, 0)),
        Some(ErrorCode::InsufficientAmount)
    );

    let mut other_mint = tok.clone();
    other_mint.mint = "http://localhost:3339".into();
    assert_eq!(
        code(precheck::precheck(&other_mint, &c, 1, 0)),
        Some(ErrorCode::MintNotAccepted)
    );
    // The mint is checked first, then the unit, then the amount.
    let mut all_wrong = other_mint.clone();
    all_wrong.unit = "usd".into();
    assert_eq!(
        code(precheck::precheck(&all_wrong, &c, 100, 0)),
        Some(ErrorCode::MintNotAccepted)
    );
    let mut usd = tok.clone();
    usd.unit = "usd".into();
    assert_eq!(
        code(precheck::precheck(&usd, &c, 100, 0)),
        Some(ErrorCode::UnitMismatch)
    );
    // The other accepted mint is accepted.
    let mut second = tok.clone();
    second.mint = "https://8333.space:3338".into();
    assert_eq!(code(precheck::precheck(&second, &c, 4, 0)), None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn precheck_with_a_mint_fee_compares_the_net_amount() {
    let c = config();
    let tok = four_sat_token();
    assert_eq!(code(precheck::precheck(&tok, &c, 3, 1)), None);
    assert_eq!(code(precheck::precheck(&tok, &c, 0, 4)), None);
    let r = precheck::precheck(&tok, &c, 4, 1).unwrap_err();
    assert_eq!(r.code, ErrorCode::InsufficientAmount);
    assert!(r.message.contains("fee"), "{}", r.message);
    // A fee larger than the token is insufficient, whatever the price.
    assert_eq!(
        code(precheck::precheck(&tok, &c, 0, 5)),
        Some(ErrorCode::InsufficientAmount)
    );
    assert_eq!(
        code(precheck::precheck(&tok, &c, 0, u64::MAX)),
        Some(ErrorCode::InsufficientAmount)
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn input_fee_is_per_proof_ppk_rounded_up() {
    let tok = four_sat_token();
    let fee = |ppk_a: u64, ppk_b: u64| {
        precheck::input_fee(&tok, |id| match id {
            "00ffd48b8f5ecf80" => Some(ppk_a),
            "00ad268c4d1f5826" => Some(ppk_b),
            _ => None,
        })
    };
    assert_eq!(fee(0, 0), Ok(0));
    assert_eq!(fee(1, 0), Ok(1));
    assert_eq!(fee(100, 100), Ok(1));
    assert_eq!(fee(400, 300), Ok(1));
    assert_eq!(fee(400, 301), Ok(2));
    assert_eq!(fee(1000, 1000), Ok(3));
    assert_eq!(fee(1000, 1001), Ok(4));
    assert_eq!(fee(u64::MAX, 0), Err(FeeSumError::Overflow));
    assert_eq!(fee(u64::MAX / 2, u64::MAX / 4), Err(FeeSumError::Overflow));
    // An unknown keyset names itself.
    let r = precheck::input_fee(&tok, |id| (id == "00ffd48b8f5ecf80").then_some(1));
    assert_eq!(
        r,
        Err(FeeSumError::UnknownKeyset("00ad268c4d1f5826".to_string()))
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn precheck_decode_maps_every_error_to_malformed_token() {
    let data = common::json(common::HOSTILE);
    for case in data["cases"].as_array().unwrap() {
        if case["expect"].get("error").is_none() {
            continue;
        }
        let r = precheck::decode(&common::build_token(case), &TokenLimits::default());
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedToken, "{}", case["name"]);
        assert_eq!(e.status(), 400);
        assert!(!e.message.is_empty());
    }
}

// ---- bodies and statuses ----------------------------------------------------

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn codes_and_statuses_are_those_of_the_contract() {
    let want = [
        ("malformed_token", 400),
        ("mint_not_accepted", 400),
        ("unit_mismatch", 400),
        ("insufficient_amount", 400),
        ("token_already_spent", 400),
        ("token_invalid", 400),
        ("mint_unavailable", 503),
        ("verifier_unavailable", 503),
        ("malformed_request", 400),
        ("pass_invalid", 400),
        ("provisioning_failed", 503),
    ];
    assert_eq!(ErrorCode::ALL.len(), want.len());
    for (code, (name, status)) in ErrorCode::ALL.iter().zip(want) {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(code.status(), status, "{name}");
        assert_eq!(ErrorCode::parse(name), Some(*code));
    }
    assert_eq!(ErrorCode::parse("Malformed_Token"), None);
    assert_eq!(ErrorCode::parse(""), None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_400_body_is_error_and_code_only() {
    for code in ErrorCode::ALL {
        for words in [
            "",
            "plain",
            "quote \" backslash \\ newline \n nul \0 é \u{1F4A9}",
        ] {
            let r = Rejection::new(code, words);
            let v: Value = serde_json::from_str(&r.body()).unwrap();
            assert_eq!(v, json!({"error": words, "code": code.as_str()}));
            assert_eq!(r.body(), outcome::rejection_body(code, words));
            assert_eq!(r.status(), code.status());
            assert!(r.to_string().starts_with(code.as_str()));
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_402_body_carries_amount_unit_and_mints() {
    let mints = vec![
        "http://127.0.0.1:3338".to_string(),
        "https://mint.example.com/Cashu".to_string(),
    ];
    let body = outcome::payment_required_body(1000, "sat", &mints, None, None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"error": "Payment Required", "amount": 1000, "unit": "sat", "mints": mints})
    );
    let body = outcome::payment_required_body(5000, "sat", &mints, Some("premium-plus"), None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["amount"], 5000);
    assert_eq!(v["tier"], "premium-plus");
    // The largest price a config allows survives JSON exactly.
    let body = outcome::payment_required_body(paygress_core::MAX_AMOUNT, "sat", &mints, None, None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["amount"].as_u64(), Some(paygress_core::MAX_AMOUNT));
    assert_eq!(v["amount"].as_f64(), Some(9_007_199_254_740_992.0));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_402_of_every_tier_agrees_with_its_payment_request() {
    // The body and the X-Cashu request of a 402 say the same thing.
    let c = CompiledConfig::from_json(
        r#"{"mints":["http://127.0.0.1:3338","https://Mint.Example.com/"],
            "tiers":[{"id":"premium","path_prefix":"/premium","amount":21}]}"#,
    )
    .unwrap();
    for tier in c.price_tiers() {
        let body = outcome::payment_required_body(
            tier.amount,
            &c.unit,
            &c.mints,
            tier.id.as_deref(),
            tier.lease_seconds,
        );
        let body: Value = serde_json::from_str(&body).unwrap();
        let creq = payment_request::encode(tier.amount, &c.unit, &c.mints).unwrap();
        let req = common::cbor_to_json(&common::decode_creq_a(&creq));
        assert_eq!(req["a"], body["amount"]);
        assert_eq!(req["u"], body["unit"]);
        assert_eq!(req["m"], body["mints"]);
        assert_eq!(req["m"][1], "https://mint.example.com");
    }
}

// ---- header names -----------------------------------------------------------

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn header_names_are_lower_case_and_reserved_ones_are_stripped() {
    let all = [
        headers::X_CASHU,
        headers::AUTHORIZATION,
        headers::X_PAYMENT_VERIFIED,
        headers::X_PAYMENT_AMOUNT,
        headers::X_PAYMENT_TIER,
        headers::X_USER_ID,
        headers::X_PROVISIONED_POD,
        headers::X_REQUIRED_AMOUNT,
        headers::X_ORIGINAL_URL,
        headers::X_ORIGINAL_METHOD,
        headers::X_FORWARDED_URI,
        headers::X_FORWARDED_METHOD,
        headers::X_FORWARDED_HOST,
        headers::X_PAYGRESS_STATUS,
        headers::X_PAYGRESS_BODY,
        headers::X_PAYGRESS_PASS,
        headers::X_PAYGRESS_LEASE,
    ];
    for h in all {
        assert_eq!(h, h.to_ascii_lowercase());
        assert!(
            h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{h}"
        );
    }
    assert_eq!(headers::X_CASHU, "x-cashu");
    assert_eq!(headers::X_PAYMENT_VERIFIED, "x-payment-verified");
    assert_eq!(headers::X_PAYMENT_AMOUNT, "x-payment-amount");
    assert_eq!(headers::X_USER_ID, "x-user-id");
    assert_eq!(headers::X_PROVISIONED_POD, "x-provisioned-pod");
    assert_eq!(headers::X_PAYGRESS_PASS, "x-paygress-pass");
    assert_eq!(headers::X_PAYGRESS_LEASE, "x-paygress-lease");
    // Every header the verifier grants is one a client may not send.
    for h in headers::GRANT_HEADERS {
        assert!(headers::is_reserved(h), "{h}");
        assert!(headers::is_reserved(&h.to_ascii_uppercase()), "{h}");
    }
    for h in [
        "X-Payment-Verified",
        "x-payment-",
        "X-PAYMENT-ANYTHING",
        "X-User-Id",
    ] {
        assert!(headers::is_reserved(h), "{h}");
    }
    for h in [
        "x-cashu",
        "authorization",
        "x-paymentx",
        "x-user",
        "x-user-id2",
        "",
    ] {
        assert!(!headers::is_reserved(h), "{h}");
    }
}
