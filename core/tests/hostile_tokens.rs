//! Hostile and edge-case tokens: the cases of `data/hostile_tokens.json`
//! (encodings, witness keys, unknown keys, wrong CBOR/JSON types, overflow,
//! multi-mint, empty, duplicates) and generated ones (oversized, too many
//! proofs, deep nesting, every truncation of CBOR and JSON bodies).
//! Runs natively and on wasm32 (wasm-bindgen-test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use paygress_core::token::{self, TokenVersion};
use paygress_core::{TokenError, TokenLimits};
use serde_json::{json, Value};

fn limits() -> TokenLimits {
    TokenLimits::default()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn every_data_case_gives_its_expected_outcome() {
    let data = common::json(common::HOSTILE);
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() > 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let s = common::build_token(case);
        let got = token::decode(&s, &limits());
        let expect = &case["expect"];
        match (got, expect.get("ok"), expect.get("error")) {
            (Ok(tok), Some(fields), None) => common::check_fields(name, fields, &tok),
            (Err(e), None, Some(kind)) if common::error_kind(&e) == kind => {
                // The message is words for a client, never empty.
                assert!(!e.to_string().is_empty());
            }
            (got, _, _) => failures.push(format!("{name}: expected {expect}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A V4 token of `n` proofs with short secrets, so that many fit in 16 KiB.
fn v4_with_proofs(n: usize, amount: u64) -> String {
    let proofs: Vec<Value> = (0..n)
        .map(|i| json!({"a": amount, "s": format!("{i:x}"), "c": {"$bytes": "02"}}))
        .collect();
    let v = json!({"m": "http://localhost:3338", "u": "sat",
                   "t": [{"i": {"$bytes": "00ad268c4d1f5826"}, "p": proofs}]});
    format!(
        "cashuB{}",
        URL_SAFE_NO_PAD.encode(common::cbor_bytes(&common::to_cbor(&v)))
    )
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn proof_count_limit_is_256_by_default() {
    let at = v4_with_proofs(256, 1);
    assert!(at.len() <= TokenLimits::DEFAULT_MAX_LEN, "{}", at.len());
    let tok = token::decode(&at, &limits()).unwrap();
    assert_eq!((tok.proofs.len(), tok.total), (256, 256));

    let over = v4_with_proofs(257, 1);
    assert!(over.len() <= TokenLimits::DEFAULT_MAX_LEN);
    assert_eq!(
        token::decode(&over, &limits()),
        Err(TokenError::TooManyProofs {
            count: 257,
            max: 256
        })
    );
    // A custom limit is honoured both ways.
    let small = TokenLimits {
        max_proofs: 3,
        ..TokenLimits::default()
    };
    assert!(token::decode(&v4_with_proofs(3, 1), &small).is_ok());
    assert!(matches!(
        token::decode(&v4_with_proofs(4, 1), &small),
        Err(TokenError::TooManyProofs { count: 4, max: 3 })
    ));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn too_many_proofs_in_v3_across_entries() {
    let proofs: Vec<Value> = (0..257)
        .map(|i| json!({"amount": 1, "id": "00", "secret": format!("{i}"), "C": "02"}))
        .collect();
    let v = json!({"token": [{"mint": "http://m", "proofs": proofs}]});
    let s = format!(
        "cashuA{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    );
    assert!(s.len() <= TokenLimits::DEFAULT_MAX_LEN, "{}", s.len());
    assert!(matches!(
        token::decode(&s, &limits()),
        Err(TokenError::TooManyProofs { count: 257, .. })
    ));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn length_limit_is_16_kib_by_default_and_checked_first() {
    // A valid token over 16 KiB (a long memo) is refused before decoding.
    let memo = "x".repeat(13_000);
    let v = json!({"m": "http://localhost:3338", "u": "sat", "d": memo,
                   "t": [{"i": {"$bytes": "00ad268c4d1f5826"},
                          "p": [{"a": 1, "s": "s", "c": {"$bytes": "02"}}]}]});
    let s = format!(
        "cashuB{}",
        URL_SAFE_NO_PAD.encode(common::cbor_bytes(&common::to_cbor(&v)))
    );
    assert!(s.len() > 16 * 1024);
    assert_eq!(
        token::decode(&s, &limits()),
        Err(TokenError::TooLong {
            len: s.len(),
            max: 16 * 1024
        })
    );
    // The same token is fine under a larger limit.
    let roomy = TokenLimits {
        max_len: s.len(),
        ..TokenLimits::default()
    };
    assert_eq!(
        token::decode(&s, &roomy).unwrap().memo.as_deref(),
        Some(&*memo)
    );
    let tight = TokenLimits {
        max_len: s.len() - 1,
        ..TokenLimits::default()
    };
    assert!(matches!(
        token::decode(&s, &tight),
        Err(TokenError::TooLong { .. })
    ));
    // Garbage over the limit is TooLong too, whatever it is.
    let junk = "\u{1F4A9}".repeat(5000);
    assert!(matches!(
        token::decode(&junk, &limits()),
        Err(TokenError::TooLong { .. })
    ));
    // Surrounding whitespace does not count against the limit.
    let small = v4_with_proofs(1, 1);
    let padded = format!("{}{small}{}", " ".repeat(20_000), "\n".repeat(20_000));
    assert!(token::decode(&padded, &limits()).is_ok());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn amounts_are_summed_with_checked_addition() {
    let half = u64::MAX / 2 + 1;
    let v = json!({"m": "http://m", "u": "sat", "t": [{"i": {"$bytes": "00"}, "p": [
        {"a": half, "s": "1", "c": {"$bytes": "02"}},
        {"a": half, "s": "2", "c": {"$bytes": "02"}}]}]});
    let s = format!(
        "cashuB{}",
        URL_SAFE_NO_PAD.encode(common::cbor_bytes(&common::to_cbor(&v)))
    );
    assert_eq!(
        token::decode(&s, &limits()),
        Err(TokenError::AmountOverflow)
    );
    // u64::MAX split over many proofs sums exactly.
    let v = json!({"m": "http://m", "u": "sat", "t": [{"i": {"$bytes": "00"}, "p": [
        {"a": u64::MAX - 2, "s": "1", "c": {"$bytes": "02"}},
        {"a": 1, "s": "2", "c": {"$bytes": "02"}},
        {"a": 1, "s": "3", "c": {"$bytes": "02"}}]}]});
    let s = format!(
        "cashuB{}",
        URL_SAFE_NO_PAD.encode(common::cbor_bytes(&common::to_cbor(&v)))
    );
    assert_eq!(token::decode(&s, &limits()).unwrap().total, u64::MAX);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn deep_nesting_never_overflows_the_stack() {
    // 10 000 nested CBOR arrays as a witness, within the length limit:
    // {"m": "http://m", "u": "sat", "t": [{"i": h'00', "p": [{"a": 1, "s": "1",
    //  "c": h'02', "w": [[[[…0…]]]]}]}]}
    let mut body: Vec<u8> = vec![0xa3, 0x61, b'm', 0x68];
    body.extend_from_slice(b"http://m");
    body.extend_from_slice(&[0x61, b'u', 0x63, b's', b'a', b't']);
    body.extend_from_slice(&[0x61, b't', 0x81, 0xa2, 0x61, b'i', 0x41, 0x00]);
    body.extend_from_slice(&[0x61, b'p', 0x81, 0xa4, 0x61, b'a', 0x01]);
    body.extend_from_slice(&[0x61, b's', 0x61, b'1', 0x61, b'c', 0x41, 0x02]);
    body.extend_from_slice(&[0x61, b'w']);
    // Sanity: with a shallow witness this is a valid token.
    let mut shallow = body.clone();
    shallow.extend_from_slice(&[0x81, 0x00]);
    let ok = format!("cashuB{}", URL_SAFE_NO_PAD.encode(&shallow));
    assert!(token::decode(&ok, &limits()).unwrap().proofs[0].has_witness);
    body.extend(std::iter::repeat_n(0x81u8, 10_000));
    body.push(0x00);
    let s = format!("cashuB{}", URL_SAFE_NO_PAD.encode(&body));
    assert!(s.len() <= TokenLimits::DEFAULT_MAX_LEN);
    assert_eq!(
        token::decode(&s, &limits()),
        Err(TokenError::Syntax("CBOR"))
    );

    // And as JSON: 5 000 nested arrays as a V3 witness, and as an unknown
    // key. serde_json skips ignored values without recursing, so this is a
    // token (with a witness the mint will judge), not a crash.
    for (key, want_witness) in [("witness", true), ("unknown", false)] {
        let text = format!(
            "{{\"token\":[{{\"mint\":\"http://m\",\"proofs\":[{{\"amount\":1,\"id\":\"00\",\
             \"secret\":\"1\",\"C\":\"02\",\"{key}\":{}1{}}}]}}]}}",
            "[".repeat(5_000),
            "]".repeat(5_000)
        );
        let s = format!("cashuA{}", URL_SAFE_NO_PAD.encode(text.as_bytes()));
        assert!(s.len() <= TokenLimits::DEFAULT_MAX_LEN);
        let tok = token::decode(&s, &limits()).unwrap();
        assert_eq!(tok.proofs[0].has_witness, want_witness);
    }
    // Deep nesting where a value is read (the proofs list) is refused.
    let text = format!("{{\"token\":{}{}}}", "[".repeat(5_000), "]".repeat(5_000));
    let s = format!("cashuA{}", URL_SAFE_NO_PAD.encode(text.as_bytes()));
    assert_eq!(
        token::decode(&s, &limits()),
        Err(TokenError::Syntax("JSON"))
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn every_truncation_of_a_body_is_a_syntax_error() {
    let data = common::json(common::NUT00);
    for v in data["valid"].as_array().unwrap() {
        let s = v["token"].as_str().unwrap();
        let (prefix, body) = s.split_at(6);
        let bytes = URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')).unwrap();
        for cut in 1..bytes.len() {
            let t = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&bytes[..cut]));
            let err = token::decode(&t, &limits()).unwrap_err();
            assert!(
                matches!(err, TokenError::Syntax(_)),
                "{} cut at byte {cut}: {err:?}",
                v["name"]
            );
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn version_is_reported() {
    let v4 = v4_with_proofs(1, 5);
    assert_eq!(
        token::decode(&v4, &limits()).unwrap().version,
        TokenVersion::V4
    );
}
