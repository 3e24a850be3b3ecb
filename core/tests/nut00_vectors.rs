//! The NUT-00 token vectors (cashubtc/nuts `tests/00-tests.md`): every valid
//! V3 and V4 token decodes to its documented mint, unit, memo, amounts,
//! keyset ids, secrets and `C`s; every invalid one is a typed error.
//! Runs natively and on wasm32 (wasm-bindgen-test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use paygress_core::token::{self, TokenVersion};
use paygress_core::TokenLimits;
use serde_json::Value;

fn limits() -> TokenLimits {
    TokenLimits::default()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn valid_vectors_decode_to_their_documented_fields() {
    let data = common::json(common::NUT00);
    let valid = data["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 6, "every valid vector of 00-tests.md");
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let tok = token::decode(v["token"].as_str().unwrap(), &limits())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want_version = match v["version"].as_str().unwrap() {
            "V3" => TokenVersion::V3,
            _ => TokenVersion::V4,
        };
        assert_eq!(tok.version, want_version, "{name}");
        assert_eq!(tok.mint, v["mint"].as_str().unwrap(), "{name}: mint");
        assert_eq!(tok.unit, v["unit"].as_str().unwrap(), "{name}: unit");
        assert_eq!(tok.memo.as_deref(), v["memo"].as_str(), "{name}: memo");
        assert_eq!(tok.total, v["total"].as_u64().unwrap(), "{name}: total");
        let proofs = v["proofs"].as_array().unwrap();
        assert_eq!(tok.proofs.len(), proofs.len(), "{name}: proof count");
        for (got, want) in tok.proofs.iter().zip(proofs) {
            assert_eq!(got.amount, want["amount"].as_u64().unwrap(), "{name}");
            assert_eq!(got.keyset_id, want["keyset_id"].as_str().unwrap(), "{name}");
            assert_eq!(got.secret, want["secret"].as_str().unwrap(), "{name}");
            assert_eq!(got.c, want["C"].as_str().unwrap(), "{name}");
            assert!(!got.has_dleq, "{name}: no DLEQ in the vectors");
            assert!(!got.has_witness, "{name}: no witness in the vectors");
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn invalid_vectors_are_typed_errors() {
    let data = common::json(common::NUT00);
    let invalid = data["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 2);
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let err = token::decode(v["token"].as_str().unwrap(), &limits()).expect_err(name);
        assert_eq!(common::error_kind(&err), v["error"], "{name}: {err}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn padded_and_unpadded_spellings_decode_alike() {
    let data = common::json(common::NUT00);
    let valid = data["valid"].as_array().unwrap();
    let by_name = |prefix: &str| -> &Value {
        valid
            .iter()
            .find(|v| v["name"].as_str().unwrap().starts_with(prefix))
            .unwrap()
    };
    let pairs = [
        ("TokenV3 with padding", "TokenV3 without padding"),
        (
            "TokenV4 multiple keysets (padded",
            "TokenV4 multiple keysets (unpadded",
        ),
    ];
    for (a, b) in pairs {
        let ta = by_name(a)["token"].as_str().unwrap();
        let tb = by_name(b)["token"].as_str().unwrap();
        assert!(ta.ends_with('='), "{a} is padded");
        assert!(!tb.ends_with('='), "{b} is not");
        assert_eq!(
            token::decode(ta, &limits()).unwrap(),
            token::decode(tb, &limits()).unwrap()
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn every_respelling_of_a_valid_vector_decodes_the_same() {
    // Padding added or removed, `cashu:` prefix, surrounding whitespace,
    // standard alphabet: the same token.
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let data = common::json(common::NUT00);
    for v in data["valid"].as_array().unwrap() {
        let s = v["token"].as_str().unwrap();
        let (prefix, body) = s.split_at(6);
        let bytes = URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')).unwrap();
        let want = token::decode(s, &limits()).unwrap();
        for respelled in [
            format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&bytes)),
            format!("{prefix}{}", URL_SAFE.encode(&bytes)),
            format!("{prefix}{}", STANDARD.encode(&bytes)),
            format!("cashu:{s}"),
            format!("Cashu:{s}"),
            format!("  {s}\t\n"),
        ] {
            assert_eq!(
                token::decode(&respelled, &limits()).as_ref(),
                Ok(&want),
                "{respelled}"
            );
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn every_truncation_of_a_valid_vector_is_an_error() {
    // Cutting the string anywhere never yields a token, and never panics.
    let data = common::json(common::NUT00);
    for v in data["valid"].as_array().unwrap() {
        let s = v["token"].as_str().unwrap();
        let body_end = s.trim_end_matches('=').len();
        for cut in 0..body_end {
            let r = token::decode(&s[..cut], &limits());
            // A cut that only removes padding is the same token: excluded by
            // `body_end`; every other cut loses data.
            assert!(r.is_err(), "{} cut at {cut} decoded", v["name"]);
        }
    }
}
