//! Helpers shared by the integration tests of paygress-core (native and
//! wasm32): building token strings from the JSON test data, naming token
//! errors, and a base64/CBOR reader of payment requests that accepts what
//! cdk's `PaymentRequest::from_str` accepts.
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use paygress_core::token::{Token, TokenVersion};
use paygress_core::TokenError;
use serde_json::Value;

/// The NUT-00 token vectors.
pub const NUT00: &str = include_str!("../data/nut00_tokens.json");
/// The NUT-18 payment request vectors.
pub const NUT18: &str = include_str!("../data/nut18_requests.json");
/// Hostile and edge-case tokens.
pub const HOSTILE: &str = include_str!("../data/hostile_tokens.json");
/// Config documents, valid and invalid.
pub const CONFIGS: &str = include_str!("../data/configs.json");

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The name of a token error's variant, as the test data spells it.
pub fn error_kind(e: &TokenError) -> &'static str {
    match e {
        TokenError::Empty => "Empty",
        TokenError::TooLong { .. } => "TooLong",
        TokenError::UnknownPrefix => "UnknownPrefix",
        TokenError::Base64 => "Base64",
        TokenError::Syntax(_) => "Syntax",
        TokenError::NoProofs => "NoProofs",
        TokenError::TooManyProofs { .. } => "TooManyProofs",
        TokenError::MultiMint(_) => "MultiMint",
        TokenError::MintUrl(_) => "MintUrl",
        TokenError::ZeroAmount => "ZeroAmount",
        TokenError::AmountOverflow => "AmountOverflow",
        TokenError::EmptyField(_) => "EmptyField",
        TokenError::DuplicateProof => "DuplicateProof",
    }
}

pub fn version_name(v: TokenVersion) -> &'static str {
    match v {
        TokenVersion::V3 => "V3",
        TokenVersion::V4 => "V4",
    }
}

/// Base64 in one of the four spellings the data names.
pub fn b64(bytes: &[u8], style: &str) -> String {
    match style {
        "url_nopad" => URL_SAFE_NO_PAD.encode(bytes),
        "url_pad" => URL_SAFE.encode(bytes),
        "std_pad" => STANDARD.encode(bytes),
        "std_nopad" => STANDARD_NO_PAD.encode(bytes),
        other => panic!("unknown base64 style {other}"),
    }
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with escapes (`$bytes`, `$tag`, `$float`, `$map`) to a CBOR value.
pub fn to_cbor(v: &Value) -> ciborium::Value {
    use ciborium::Value as C;
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                C::Integer(u.into())
            } else if let Some(i) = n.as_i64() {
                C::Integer(i.into())
            } else {
                C::Float(n.as_f64().unwrap())
            }
        }
        Value::String(s) => C::Text(s.clone()),
        Value::Array(a) => C::Array(a.iter().map(to_cbor).collect()),
        Value::Object(o) => {
            if let Some(h) = o.get("$bytes") {
                return C::Bytes(hex_decode(h.as_str().unwrap()));
            }
            if let Some(t) = o.get("$tag") {
                let t = t.as_array().unwrap();
                return C::Tag(t[0].as_u64().unwrap(), Box::new(to_cbor(&t[1])));
            }
            if let Some(f) = o.get("$float") {
                return C::Float(f.as_f64().unwrap());
            }
            if let Some(m) = o.get("$map") {
                return C::Map(
                    m.as_array()
                        .unwrap()
                        .iter()
                        .map(|kv| {
                            let kv = kv.as_array().unwrap();
                            (to_cbor(&kv[0]), to_cbor(&kv[1]))
                        })
                        .collect(),
                );
            }
            C::Map(
                o.iter()
                    .map(|(k, v)| (C::Text(k.clone()), to_cbor(v)))
                    .collect(),
            )
        }
    }
}

pub fn cbor_bytes(v: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

/// The token string a hostile case describes.
pub fn build_token(case: &Value) -> String {
    if let Some(raw) = case.get("raw") {
        return raw.as_str().unwrap().to_string();
    }
    let (default_prefix, body): (&str, Vec<u8>) = if let Some(v) = case.get("v3") {
        ("cashuA", serde_json::to_vec(v).unwrap())
    } else if let Some(t) = case.get("v3_text") {
        ("cashuA", t.as_str().unwrap().as_bytes().to_vec())
    } else if let Some(v) = case.get("v4") {
        ("cashuB", cbor_bytes(&to_cbor(v)))
    } else if let Some(h) = case.get("body_hex") {
        ("cashuA", hex_decode(h.as_str().unwrap()))
    } else {
        panic!("case without a body: {case}")
    };
    let prefix = case
        .get("prefix")
        .and_then(Value::as_str)
        .unwrap_or(default_prefix);
    let style = case
        .get("b64")
        .and_then(Value::as_str)
        .unwrap_or("url_nopad");
    let encoded = b64(&body, style);
    if style.starts_with("std") {
        assert!(
            encoded.contains(['+', '/']),
            "case {} must exercise + or /",
            case["name"]
        );
    }
    let token = format!("{prefix}{encoded}");
    match case.get("wrap").and_then(Value::as_str) {
        Some(w) => w.replace("{}", &token),
        None => token,
    }
}

/// Compares the fields an expectation names with a decoded token.
pub fn check_fields(name: &str, want: &Value, got: &Token) {
    let want = want.as_object().unwrap();
    for (k, w) in want {
        match k.as_str() {
            "version" => assert_eq!(version_name(got.version), w, "{name}: version"),
            "mint" => assert_eq!(got.mint, w.as_str().unwrap(), "{name}: mint"),
            "unit" => assert_eq!(got.unit, w.as_str().unwrap(), "{name}: unit"),
            "memo" => assert_eq!(got.memo.as_deref(), w.as_str(), "{name}: memo"),
            "total" => assert_eq!(got.total, w.as_u64().unwrap(), "{name}: total"),
            "amounts" => {
                let got: Vec<u64> = got.proofs.iter().map(|p| p.amount).collect();
                let want: Vec<u64> = w
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_u64().unwrap())
                    .collect();
                assert_eq!(got, want, "{name}: amounts");
            }
            "keyset_ids" => {
                let got: Vec<&str> = got.proofs.iter().map(|p| p.keyset_id.as_str()).collect();
                let want: Vec<&str> = w
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert_eq!(got, want, "{name}: keyset ids");
            }
            "has_dleq" => {
                let got: Vec<bool> = got.proofs.iter().map(|p| p.has_dleq).collect();
                let want: Vec<bool> = w
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_bool().unwrap())
                    .collect();
                assert_eq!(got, want, "{name}: has_dleq");
            }
            "has_witness" => {
                let got: Vec<bool> = got.proofs.iter().map(|p| p.has_witness).collect();
                let want: Vec<bool> = w
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_bool().unwrap())
                    .collect();
                assert_eq!(got, want, "{name}: has_witness");
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    // Whatever else holds of every decoded token.
    assert!(!got.proofs.is_empty(), "{name}: no proofs");
    let sum = got
        .proofs
        .iter()
        .try_fold(0u64, |s, p| s.checked_add(p.amount))
        .unwrap();
    assert_eq!(sum, got.total, "{name}: total is the sum of the amounts");
}

/// Decodes a `creqA` string the way cdk 0.18's `PaymentRequest::from_str`
/// does: base64url, else standard base64, padding optional; then CBOR.
pub fn decode_creq_a(s: &str) -> ciborium::Value {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let body = s.strip_prefix("creqA").expect("creqA prefix");
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let bytes = GeneralPurpose::new(&alphabet::URL_SAFE, cfg)
        .decode(body)
        .or_else(|_| GeneralPurpose::new(&alphabet::STANDARD, cfg).decode(body))
        .expect("base64");
    ciborium::de::from_reader(bytes.as_slice()).expect("CBOR")
}

/// A CBOR value as JSON (bytes as hex, `undefined` as null) for comparisons.
pub fn cbor_to_json(v: &ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Integer(i) => {
            let i: i128 = (*i).into();
            if i >= 0 {
                Value::from(u64::try_from(i).unwrap())
            } else {
                Value::from(i64::try_from(i).unwrap())
            }
        }
        C::Bytes(b) => Value::String(hex_encode(b)),
        C::Float(f) => Value::from(*f),
        C::Text(s) => Value::String(s.clone()),
        C::Bool(b) => Value::Bool(*b),
        C::Null => Value::Null,
        C::Tag(_, inner) => cbor_to_json(inner),
        C::Array(a) => Value::Array(a.iter().map(cbor_to_json).collect()),
        C::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_text().unwrap().to_string(), cbor_to_json(v)))
                .collect(),
        ),
        // `undefined` (simple value 23) and any other simple value.
        _ => Value::Null,
    }
}

/// A small deterministic PRNG (xorshift64*), the same on every target.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
