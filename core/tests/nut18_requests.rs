//! NUT-18 payment requests: the vectors of cashubtc/nuts `tests/18-tests.md`
//! read with the same rules as cdk's `PaymentRequest::from_str` give the JSON
//! they document, and every `creqA` that `payment_request::encode` writes
//! reads back, by those rules, as exactly `{a, u, m}` with the same values and
//! the same CBOR types as the vectors use. Runs natively and on wasm32.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use paygress_core::payment_request::{self, PREFIX};
use serde_json::{json, Value};

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn vectors_decode_to_their_documented_json() {
    let data = common::json(common::NUT18);
    let reqs = data["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 7);
    for r in reqs {
        let name = r["name"].as_str().unwrap();
        let got = common::cbor_to_json(&common::decode_creq_a(r["encoded"].as_str().unwrap()));
        let want = r["json"].clone();
        // The vectors write an absent transport tag list as CBOR `undefined`.
        let mut got = got;
        if let Some(ts) = got.get_mut("t").and_then(Value::as_array_mut) {
            for t in ts {
                if t.get("g") == Some(&Value::Null) {
                    t.as_object_mut().unwrap().remove("g");
                }
            }
        }
        assert_eq!(got, want, "{name}");
    }
}

/// Encodes with core and reads back with the cdk rules.
fn round_trip(amount: u64, unit: &str, mints: &[String]) -> Value {
    let s = payment_request::encode(amount, unit, mints).unwrap();
    assert!(s.starts_with(PREFIX), "{s}");
    let body = &s[PREFIX.len()..];
    // URL-safe alphabet only: an HTTP header value never needs escaping.
    assert!(
        body.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=')),
        "{s}"
    );
    common::cbor_to_json(&common::decode_creq_a(&s))
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn encode_writes_exactly_amount_unit_and_mints() {
    let data = common::json(common::NUT18);
    // For every vector with an amount: core's request for the same amount,
    // unit and mints is the vector's `{a, u, m}` and nothing else (no id, no
    // transport: in-band payment, NUT-24).
    for r in data["requests"].as_array().unwrap() {
        let j = &r["json"];
        let Some(a) = j["a"].as_u64() else { continue };
        let u = j["u"].as_str().unwrap();
        let m: Vec<String> = j["m"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        let got = round_trip(a, u, &m);
        assert_eq!(got, json!({"a": a, "u": u, "m": m}), "{}", r["name"]);
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn encode_uses_the_cbor_types_of_the_vectors() {
    // The vectors' `a` is an unsigned integer, `u` text, `m` an array of text:
    // the raw CBOR of core's request must be the same kinds.
    let s =
        payment_request::encode(1000, "sat", &["https://mint.example.com".to_string()]).unwrap();
    let v = common::decode_creq_a(&s);
    let map = v.as_map().unwrap();
    assert_eq!(map.len(), 3);
    for (k, v) in map {
        match k.as_text().unwrap() {
            "a" => assert!(v.is_integer()),
            "u" => assert!(v.is_text()),
            "m" => assert!(v.as_array().unwrap().iter().all(|m| m.is_text())),
            other => panic!("unexpected key {other}"),
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn encode_round_trips_many_amounts_units_and_mint_lists() {
    let mint_lists: Vec<Vec<String>> = vec![
        vec![],
        vec!["http://127.0.0.1:3338".into()],
        vec![
            "https://mint1.example.com".into(),
            "https://mint2.example.com/path/Case".into(),
            "http://[::1]:3338".into(),
        ],
        (0..20).map(|i| format!("https://m{i}.example")).collect(),
    ];
    let mut amounts: Vec<u64> = vec![0, 1, 23, 24, 255, 256, 65_535, 65_536, 1 << 32];
    amounts.extend([(1 << 53) - 1, 1 << 53, u64::MAX - 1, u64::MAX]);
    let mut n = 0;
    for m in &mint_lists {
        for &a in &amounts {
            for u in ["sat", "msat", "usd", "my_unit2"] {
                assert_eq!(
                    round_trip(a, u, m),
                    json!({"a": a, "u": u, "m": m}),
                    "{a} {u} {m:?}"
                );
                n += 1;
            }
        }
    }
    assert_eq!(n, 4 * 13 * 4);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn encode_is_deterministic() {
    let m = vec!["https://a.example".to_string()];
    assert_eq!(
        payment_request::encode(21, "sat", &m),
        payment_request::encode(21, "sat", &m)
    );
    assert_ne!(
        payment_request::encode(21, "sat", &m),
        payment_request::encode(22, "sat", &m)
    );
}
