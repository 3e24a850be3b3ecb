//! Property tests (native only): no input string or byte sequence makes any
//! core function panic, and what decodes is consistent.
//!
//! Case counts: when `PROPTEST_CASES` is set, every property runs that many
//! cases. By default each property has its own count (cheap properties many,
//! the ones that build deep CBOR fewer), 10^5 cases and more in all, which
//! runs in a few seconds in the debug profile. Strings are built from a table
//! of interesting fragments (`cashuB`, `%2e`, `://`, `..`, multi-byte
//! characters …) mixed with arbitrary characters: far more likely to reach
//! the interesting branches than uniform Unicode, and much cheaper to draw.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use paygress_core::{extract, mint_url, path, payment_request, precheck, token};
use paygress_core::{CompiledConfig, Config, TokenLimits};
use proptest::prelude::*;

/// The cases of a property: `PROPTEST_CASES` when set, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Regressions are reported in the failure message; no files are
        // written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The default case counts, per property; their sum is checked below.
const CASES: [(&str, u32); 11] = [
    ("token_decode_never_panics_on_any_string", 25_000),
    ("token_decode_never_panics_on_base64_of_any_bytes", 15_000),
    ("token_decode_never_panics_on_any_cbor", 1_500),
    ("token_decode_never_panics_on_near_v4_tokens", 1_500),
    ("token_decode_never_panics_on_near_v3_tokens", 2_000),
    ("token_decode_never_panics_on_mutated_vectors", 6_000),
    ("path_and_price_never_panic", 20_000),
    ("config_never_panics", 3_000),
    ("extract_never_panics", 20_000),
    ("mint_url_never_panics_and_is_idempotent", 10_000),
    ("payment_request_always_encodes", 2_000),
];

const fn cases(name: &str) -> u32 {
    let mut i = 0;
    while i < CASES.len() {
        if const_eq(CASES[i].0, name) {
            return CASES[i].1;
        }
        i += 1;
    }
    panic!("no case count")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[test]
fn default_case_counts_add_up_to_at_least_100_000() {
    let total: u32 = CASES.iter().map(|(_, n)| n).sum();
    assert!(total >= 100_000, "{total}");
}

/// Fragments that steer random strings into the interesting branches.
const FRAGMENTS: &[&str] = &[
    "a",
    "Z",
    "0",
    "/",
    "\\",
    ".",
    "..",
    "%",
    "%2e",
    "%2E",
    "%2f",
    "%5c",
    "%zz",
    "%",
    "?",
    "#",
    " ",
    "\t",
    "\n",
    "\0",
    "é",
    "\u{1F4A9}",
    "\u{fffd}",
    "=",
    "==",
    "+",
    "-",
    "_",
    ":",
    "://",
    "cashu",
    "cashuA",
    "cashuB",
    "cashu:",
    "CASHU:",
    "creqA",
    "Bearer ",
    "Cashu ",
    "bearer\t",
    "http",
    "https://",
    "HTTP://",
    "[::1]",
    "localhost:3338",
    "/premium",
    "/free",
    "eyJ",
    "o2F0",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ";",
    "..;",
    "%3b",
    ";x=1",
];

/// A string of up to `max` parts, each a fragment or an arbitrary character.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u32>(), 0..=max).prop_map(|parts| {
        let mut out = String::new();
        for x in parts {
            match x % 4 {
                0 | 1 => out.push_str(FRAGMENTS[(x >> 2) as usize % FRAGMENTS.len()]),
                2 => out.push(char::from((x >> 2) as u8 & 0x7f)),
                _ => out.push(char::from_u32(x >> 11).unwrap_or('\u{fffd}')),
            }
        }
        out
    })
}

static COMPILED: std::sync::LazyLock<CompiledConfig> = std::sync::LazyLock::new(|| {
    CompiledConfig::from_json(
        r#"{"mints":["http://localhost:3338"],"free_paths":["/free","/healthz"],"tiers":[
            {"id":"p","path_prefix":"/premium","amount":2000},
            {"id":"pp","path_prefix":"/premium/plus","amount":5000}]}"#,
    )
    .unwrap()
});

/// The bodies of the NUT-00 valid vectors: (prefix, decoded bytes).
static VECTOR_BODIES: std::sync::LazyLock<Vec<(String, Vec<u8>)>> =
    std::sync::LazyLock::new(|| {
        let data = common::json(common::NUT00);
        data["valid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let (prefix, body) = v["token"].as_str().unwrap().split_at(6);
                (
                    prefix.to_string(),
                    URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')).unwrap(),
                )
            })
            .collect()
    });

/// Decodes and checks what every decoded token must satisfy.
fn decode_checked(s: &str) -> Result<(), TestCaseError> {
    let limits = TokenLimits::default();
    if let Ok(t) = token::decode(s, &limits) {
        prop_assert!(!t.proofs.is_empty());
        prop_assert!(t.proofs.len() <= limits.max_proofs);
        let sum = t
            .proofs
            .iter()
            .try_fold(0u64, |a, p| a.checked_add(p.amount));
        prop_assert_eq!(sum, Some(t.total));
        prop_assert!(t.proofs.iter().all(|p| p.amount > 0));
        prop_assert_eq!(mint_url::normalize(&t.mint), Ok(t.mint.clone()));
        let _ = precheck::precheck(&t, &COMPILED, 1000, 1);
        let _ = precheck::input_fee(&t, |_| Some(u64::MAX));
    }
    Ok(())
}

/// Arbitrary CBOR-ish values: the shapes a V4 token has, with wrong types.
fn cbor_value() -> impl Strategy<Value = ciborium::Value> {
    use ciborium::Value as C;
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| C::Integer(n.into())),
        any::<i64>().prop_map(|n| C::Integer(n.into())),
        any::<f64>().prop_map(C::Float),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(C::Bytes),
        prop_oneof![
            Just("m"),
            Just("u"),
            Just("t"),
            Just("i"),
            Just("p"),
            Just("a"),
            Just("s"),
            Just("c"),
            Just("d"),
            Just("w"),
            Just("witness"),
            Just("sat"),
            Just("http://localhost:3338"),
            Just("")
        ]
        .prop_map(|s| C::Text(s.to_string())),
        text(6).prop_map(C::Text),
        any::<bool>().prop_map(C::Bool),
        Just(C::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(C::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("m"),
                        Just("u"),
                        Just("t"),
                        Just("i"),
                        Just("p"),
                        Just("a"),
                        Just("s"),
                        Just("c"),
                        Just("d"),
                        Just("w"),
                        Just("witness"),
                        Just("x")
                    ]
                    .prop_map(|k| C::Text(k.to_string())),
                    inner.clone()
                ),
                0..6
            )
            .prop_map(C::Map),
            (any::<u64>(), inner).prop_map(|(t, v)| C::Tag(t, Box::new(v))),
        ]
    })
}

/// A V4 token close to valid: right keys, arbitrary values.
fn near_v4() -> impl Strategy<Value = ciborium::Value> {
    use ciborium::Value as C;
    use ciborium::Value as W;
    let extra = prop_oneof![
        Just(W::Null),
        text(3).prop_map(W::Text),
        any::<u64>().prop_map(|n| W::Integer(n.into())),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(W::Bytes),
    ];
    let proof = (
        any::<u64>(),
        text(4),
        proptest::collection::vec(any::<u8>(), 0..34),
        extra,
    )
        .prop_map(|(a, s, c, extra)| {
            C::Map(vec![
                (C::Text("a".into()), C::Integer(a.into())),
                (C::Text("s".into()), C::Text(s)),
                (C::Text("c".into()), C::Bytes(c)),
                (C::Text("w".into()), extra),
            ])
        });
    let entry = (
        proptest::collection::vec(any::<u8>(), 0..9),
        proptest::collection::vec(proof, 0..5),
    )
        .prop_map(|(i, p)| {
            C::Map(vec![
                (C::Text("i".into()), C::Bytes(i)),
                (C::Text("p".into()), C::Array(p)),
            ])
        });
    (
        prop_oneof![Just("http://localhost:3338".to_string()), text(6)],
        prop_oneof![Just("sat".to_string()), text(3)],
        proptest::collection::vec(entry, 0..4),
    )
        .prop_map(|(m, u, t)| {
            C::Map(vec![
                (C::Text("m".into()), C::Text(m)),
                (C::Text("u".into()), C::Text(u)),
                (C::Text("t".into()), C::Array(t)),
            ])
        })
}

/// JSON-ish text: V3-shaped documents with arbitrary values.
fn near_v3() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        text(5).prop_map(|s| serde_json::Value::from(s).to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"http://localhost:3338\"".to_string()),
    ];
    (
        value.clone(),
        value.clone(),
        value.clone(),
        value.clone(),
        value,
        0usize..4,
    )
        .prop_map(|(amount, id, secret, c, mint, n)| {
            let proof = format!(r#"{{"amount":{amount},"id":{id},"secret":{secret},"C":{c}}}"#);
            let proofs = vec![proof; n].join(",");
            format!(r#"{{"token":[{{"mint":{mint},"proofs":[{proofs}]}}],"unit":"sat"}}"#)
        })
}

fn b64_any(bytes: &[u8], style: u8) -> String {
    match style % 3 {
        0 => URL_SAFE_NO_PAD.encode(bytes),
        1 => URL_SAFE.encode(bytes),
        _ => STANDARD.encode(bytes),
    }
}

proptest! {
    #![proptest_config(config(cases("token_decode_never_panics_on_any_string")))]
    #[test]
    fn token_decode_never_panics_on_any_string(s in text(24)) {
        decode_checked(&s)?;
        decode_checked(&format!("cashuA{s}"))?;
        decode_checked(&format!("cashuB{s}"))?;
    }
}

proptest! {
    #![proptest_config(config(cases("token_decode_never_panics_on_base64_of_any_bytes")))]
    #[test]
    fn token_decode_never_panics_on_base64_of_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..96),
        v4 in any::<bool>(),
        style in any::<u8>(),
    ) {
        let prefix = if v4 { "cashuB" } else { "cashuA" };
        decode_checked(&format!("{prefix}{}", b64_any(&bytes, style)))?;
    }
}

proptest! {
    #![proptest_config(config(cases("token_decode_never_panics_on_any_cbor")))]
    #[test]
    fn token_decode_never_panics_on_any_cbor(v in cbor_value(), style in any::<u8>()) {
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&v, &mut bytes).unwrap();
        decode_checked(&format!("cashuB{}", b64_any(&bytes, style)))?;
    }
}

proptest! {
    #![proptest_config(config(cases("token_decode_never_panics_on_near_v4_tokens")))]
    #[test]
    fn token_decode_never_panics_on_near_v4_tokens(v in near_v4(), cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&v, &mut bytes).unwrap();
        decode_checked(&format!("cashuB{}", URL_SAFE_NO_PAD.encode(&bytes)))?;
        // And a truncation of it.
        let n = cut.index(bytes.len() + 1);
        decode_checked(&format!("cashuB{}", URL_SAFE_NO_PAD.encode(&bytes[..n])))?;
    }
}

proptest! {
    #![proptest_config(config(cases("token_decode_never_panics_on_near_v3_tokens")))]
    #[test]
    fn token_decode_never_panics_on_near_v3_tokens(text in near_v3(), cut in any::<prop::sample::Index>()) {
        decode_checked(&format!("cashuA{}", URL_SAFE_NO_PAD.encode(text.as_bytes())))?;
        let n = cut.index(text.len() + 1);
        decode_checked(&format!("cashuA{}", URL_SAFE_NO_PAD.encode(&text.as_bytes()[..n])))?;
    }
}

proptest! {
    #![proptest_config(config(cases("token_decode_never_panics_on_mutated_vectors")))]
    #[test]
    fn token_decode_never_panics_on_mutated_vectors(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let (prefix, body) = which.get(&VECTOR_BODIES);
        let mut bytes = body.clone();
        for (at, b, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, b),
            }
        }
        decode_checked(&format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&bytes)))?;
    }
}

proptest! {
    #![proptest_config(config(cases("path_and_price_never_panic")))]
    #[test]
    fn path_and_price_never_panic(target in text(24), prefix in text(4)) {
        let c = &*COMPILED;
        let n = path::normalize(&target);
        prop_assert!(n.starts_with('/'));
        prop_assert!(n == "/" || !n.ends_with('/'));
        prop_assert!(!n.contains("//"));
        prop_assert!(n.split('/').all(|s| s != "." && s != ".."));
        let _ = path::has_prefix(&n, &prefix);
        let price = c.price(&target);
        // Never cheaper than the default unless free, whatever the spelling.
        if price.amount() == 0 {
            // Free only if free in both readings.
            let stripped = path::normalize_without_params(&target);
            prop_assert!(c.free_paths().iter().any(|f| path::has_prefix(&n, f)));
            prop_assert!(c.free_paths().iter().any(|f| path::has_prefix(&stripped, f)));
        } else {
            prop_assert!(price.amount() >= c.default_amount());
        }
    }
}

proptest! {
    #![proptest_config(config(cases("config_never_panics")))]
    #[test]
    fn config_never_panics(doc in text(30), unit in text(2), prefix in text(4),
                           amount in any::<u64>(), mint in text(4)) {
        let _ = Config::from_json(&doc).map(|c| c.compile());
        let json = serde_json::json!({
            "unit": unit, "mints": [mint, "http://m"], "default_amount": amount,
            "free_paths": [prefix.clone()],
            "tiers": [{"id": "t", "path_prefix": prefix, "amount": amount}],
        });
        if let Ok(compiled) = CompiledConfig::from_json(&json.to_string()) {
            let _ = compiled.price(&doc);
            prop_assert!(compiled.price_tiers().len() == compiled.tier_count());
        }
    }
}

proptest! {
    #![proptest_config(config(cases("extract_never_panics")))]
    #[test]
    fn extract_never_panics(x in proptest::option::of(text(6)), a in proptest::option::of(text(6))) {
        if let Some(f) = extract::find_token(x.as_deref(), a.as_deref()) {
            // What is found is a part of what was given.
            let given = x.as_deref().or(a.as_deref()).unwrap();
            prop_assert!(given.contains(f.token));
        }
        if let Some(a) = &a {
            let _ = extract::is_cashu_authorization(a);
            let _ = extract::looks_like_cashu(a);
        }
    }
}

proptest! {
    #![proptest_config(config(cases("mint_url_never_panics_and_is_idempotent")))]
    #[test]
    fn mint_url_never_panics_and_is_idempotent(u in text(8), host in text(3), path in text(4)) {
        for url in [u, format!("https://{host}/{path}"), format!("HTTP://{host}{path}//")] {
            if let Ok(n) = mint_url::normalize(&url) {
                prop_assert_eq!(mint_url::normalize(&n), Ok(n.clone()));
                prop_assert!(!n.ends_with('/'));
                prop_assert!(n.starts_with("http://") || n.starts_with("https://"));
            }
        }
    }
}

proptest! {
    #![proptest_config(config(cases("payment_request_always_encodes")))]
    #[test]
    fn payment_request_always_encodes(a in any::<u64>(), u in text(3), m in proptest::collection::vec(text(5), 0..4)) {
        let s = payment_request::encode(a, &u, &m);
        prop_assert!(s.as_deref().is_some_and(|s| s.starts_with("creqA")));
        let v = common::cbor_to_json(&common::decode_creq_a(&s.unwrap()));
        prop_assert_eq!(v, serde_json::json!({"a": a, "u": u, "m": m}));
    }
}
