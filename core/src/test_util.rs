//! Token builders for tests (feature `test-util`): tokens whose shape is
//! right and whose proofs are not real, for the checks made before any mint
//! is asked. Never built into the filter or the verifier.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// A keyset id of the shape mints use (version 00, 8 bytes).
pub const KEYSET_ID: &str = "00ad268c4d1f5826";
/// A point on the curve, compressed (not a real signature).
pub const POINT: &str = "02bc9097997d81afb2cc7346b5e4345a9346bd2a506eb7958598a72f0cf85163ea";

/// base64url without padding, as tokens are written.
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A `cashuA` token of a JSON document.
pub fn cashu_a(document: &Value) -> String {
    format!("cashuA{}", base64url(document.to_string().as_bytes()))
}

/// A `cashuA` (V3 JSON) token of `mint` and `unit`, one proof per amount
/// (secrets `secret-0`, `secret-1`, …).
pub fn token_a(mint: &str, unit: &str, amounts: &[u64]) -> String {
    let proofs: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, amount)| {
            json!({ "amount": amount, "id": KEYSET_ID, "secret": format!("secret-{i}"), "C": POINT })
        })
        .collect();
    cashu_a(&json!({ "token": [ { "mint": mint, "proofs": proofs } ], "unit": unit }))
}

/// A `cashuB` (V4 CBOR) token of `mint` and `unit` with one proof of
/// `amount` (secret `secret-b`).
pub fn token_b(mint: &str, unit: &str, amount: u64) -> String {
    use ciborium::Value as C;
    let keyset: Vec<u8> = (0..KEYSET_ID.len() / 2)
        .filter_map(|i| u8::from_str_radix(KEYSET_ID.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let proof = C::Map(vec![
        (C::Text("a".into()), C::Integer(amount.into())),
        (C::Text("s".into()), C::Text("secret-b".into())),
        (C::Text("c".into()), C::Bytes(vec![2; 33])),
    ]);
    let entry = C::Map(vec![
        (C::Text("i".into()), C::Bytes(keyset)),
        (C::Text("p".into()), C::Array(vec![proof])),
    ]);
    let token = C::Map(vec![
        (C::Text("m".into()), C::Text(mint.into())),
        (C::Text("u".into()), C::Text(unit.into())),
        (C::Text("t".into()), C::Array(vec![entry])),
    ]);
    let mut cbor = Vec::new();
    // Writing CBOR into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&token, &mut cbor);
    format!("cashuB{}", base64url(&cbor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{token, TokenLimits};

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn the_builders_make_tokens_core_reads() {
        let a = token::decode(
            &token_a("http://m", "sat", &[1, 2]),
            &TokenLimits::default(),
        )
        .unwrap();
        assert_eq!(
            (a.mint.as_str(), a.unit.as_str(), a.total),
            ("http://m", "sat", 3)
        );
        let b = token::decode(&token_b("http://m", "usd", 8), &TokenLimits::default()).unwrap();
        assert_eq!((b.unit.as_str(), b.total), ("usd", 8));
        assert_eq!(b.proofs[0].keyset_id, KEYSET_ID);
    }
}
