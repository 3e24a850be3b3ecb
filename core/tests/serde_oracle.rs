//! core's own JSON and CBOR readers and writers (which keep serde_json and
//! ciborium out of the filter's `.wasm`) against serde_json and ciborium
//! themselves, on generated and mutated documents (native only):
//!
//! * `cashuA` and `cashuB` tokens decode as the serde decoder did (kept in
//!   `oracle/old_token.rs`): the same token or the same error;
//! * pass claims read and write as their serde derives do;
//! * `Reader::skip` accepts what `IgnoredAny` accepts, `Reader::value` and
//!   `Reader::json_value` what `serde_json::Value` accepts, to the same value;
//! * a config reads as `Config::from_json` reads it (the same `Config`, or
//!   an error, with serde's words);
//! * refusal and 402 bodies, pass claims and NUT-18 requests are written
//!   byte for byte as serde_json and ciborium wrote them.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "oracle/old_token.rs"]
mod old_token;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use paygress_core::config::Config;
use paygress_core::json::Reader;
use paygress_core::pass::Claims;
use paygress_core::{outcome, payment_request, token, ErrorCode, TokenLimits};
use serde::Serialize;

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---- JSON generation ------------------------------------------------------

const KEYS: &[&str] = &[
    "token",
    "unit",
    "memo",
    "mint",
    "proofs",
    "amount",
    "id",
    "secret",
    "C",
    "dleq",
    "witness",
    "w",
    "x",
    "l",
    "t",
    "e",
    "u",
    "p",
    "mints",
    "tiers",
    "verifier",
    "code",
    "error",
    "refund",
    "c",
    "\\u0074oken",
    "amount\\u0000",
    "",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "42",
    "1000",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "-9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "1e3",
    "1E+2",
    "1e-2",
    "-0.0",
    "01",
    "1.",
    "1.e5",
    ".5",
    "1e",
    "1e+",
    "1e400",
    "-1e400",
    "1e-400",
    "0e99999999999",
    "1e99999999999",
    "123456789012345678901234567890",
    "123456789012345678901.5e-3",
    "4.9e-324",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "17976931348623157e292",
    "2e308",
    "-",
    "+1",
    "1.0",
    "9007199254740993",
    "-0e0",
    "0.000000000000000000000000001e330",
];

const STRING_PIECES: &[&[u8]] = &[
    b"a",
    b"sat",
    b"http://127.0.0.1:3338",
    "é".as_bytes(),
    "✓".as_bytes(),
    b"\\n",
    b"\\u0041",
    b"\\ud83d\\ude00",
    b"\\ud800",
    b"\\udc00",
    b"\\ud800\\u0041",
    b"\\ud800\\n",
    b"\\ud800x",
    b"\\x",
    b"\\u12",
    b"\\u12zz",
    b"\t",
    b"\x01",
    b"\xff",
    b"\xc3",
    b"\xa9",
    b"\\\"",
    b"\\/",
    b"\\\\",
    b"\\b\\f\\r\\t",
    b" ",
    b"\\uDBFF\\uDFFF",
    b"\\u00e9",
];

/// Pieces valid in any string.
const GOOD_PIECES: &[&[u8]] = &[
    b"a",
    b"sat",
    "é".as_bytes(),
    b"\\n",
    b"\\u0041",
    b"\\ud83d\\ude00",
    b"\\\"",
    b"\\/",
    b" ",
];

fn gen_string(rng: &mut Rng, out: &mut Vec<u8>) {
    out.push(b'"');
    for _ in 0..rng.below(4) {
        if rng.chance(6) {
            out.extend_from_slice(rng.pick(STRING_PIECES));
        } else {
            out.extend_from_slice(rng.pick(GOOD_PIECES));
        }
    }
    if !rng.chance(40) {
        out.push(b'"');
    }
}

fn ws(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.chance(4) {
        out.extend_from_slice(rng.pick::<&[u8]>(&[b" ", b"\n", b"\t", b"\r\n  ", b"\x0c"]));
    }
}

fn gen_value(rng: &mut Rng, out: &mut Vec<u8>, depth: usize) {
    ws(rng, out);
    let kinds = if depth > 6 { 5 } else { 8 };
    match rng.below(kinds) {
        0 => {
            out.extend_from_slice(rng.pick::<&[u8]>(&[b"null", b"true", b"false", b"nul", b"tru"]))
        }
        1 | 2 => {
            if rng.chance(3) {
                out.extend_from_slice(rng.pick(NUMBERS).as_bytes());
            } else {
                out.extend_from_slice(rng.pick(&["0", "7", "-3", "2.5", "1e2"]).as_bytes());
            }
        }
        3 | 4 => gen_string(rng, out),
        5 => {
            out.push(b'[');
            let n = rng.below(4);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                gen_value(rng, out, depth + 1);
            }
            if rng.chance(30) {
                out.push(b',');
            }
            ws(rng, out);
            out.push(b']');
        }
        _ => gen_object(rng, out, depth, &[]),
    }
    ws(rng, out);
}

/// An object with keys from `KEYS` (or `prefer`), each maybe repeated.
fn gen_object(rng: &mut Rng, out: &mut Vec<u8>, depth: usize, prefer: &[&str]) {
    out.push(b'{');
    let n = rng.below(5);
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        ws(rng, out);
        let key = if !prefer.is_empty() && !rng.chance(4) {
            rng.pick(prefer)
        } else {
            rng.pick(KEYS)
        };
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.push(b'"');
        ws(rng, out);
        if !rng.chance(50) {
            out.push(b':');
        }
        gen_value(rng, out, depth + 1);
    }
    if rng.chance(30) {
        out.push(b',');
    }
    out.push(b'}');
}

/// A JSON `String` value, or now and then anything.
fn field_string(rng: &mut Rng, out: &mut Vec<u8>, good: &str) {
    if rng.chance(40) {
        gen_value(rng, out, 3);
    } else if rng.chance(30) {
        gen_string(rng, out);
    } else {
        out.push(b'"');
        out.extend_from_slice(good.as_bytes());
        out.push(b'"');
    }
}

/// A JSON V3 token, mostly well-formed, with every kind of deviation.
fn gen_v3(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let array_form = rng.chance(12);
    out.push(if array_form { b'[' } else { b'{' });
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    // token
    if !rng.chance(15) {
        sep(&mut out);
        if !array_form {
            out.extend_from_slice(b"\"token\":");
        }
        if rng.chance(30) {
            gen_value(rng, &mut out, 2);
        } else {
            out.push(b'[');
            for e in 0..(1 + usize::from(rng.chance(6))) {
                if e > 0 {
                    out.push(b',');
                }
                gen_v3_entry(rng, &mut out);
            }
            out.push(b']');
        }
    }
    for key in ["unit", "memo"] {
        if rng.chance(2) {
            sep(&mut out);
            if !array_form {
                out.extend_from_slice(format!("\"{key}\":").as_bytes());
            }
            if rng.chance(4) {
                out.extend_from_slice(b"null");
            } else {
                let unit = rng_unit(rng);
                field_string(rng, &mut out, unit);
            }
        }
    }
    if !array_form && rng.chance(4) {
        sep(&mut out);
        out.extend_from_slice(format!("\"{}\":", rng.pick(KEYS)).as_bytes());
        gen_value(rng, &mut out, 2);
    }
    if array_form && rng.chance(5) {
        sep(&mut out);
        gen_value(rng, &mut out, 2);
    }
    out.push(if array_form { b']' } else { b'}' });
    out
}

fn rng_unit(rng: &mut Rng) -> &'static str {
    rng.pick(&[
        "sat", "SAT", "ſat", "usd", " sat", "Custom", "ünït", "msat", "K",
    ])
}

fn gen_v3_entry(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.chance(40) {
        gen_value(rng, out, 3);
        return;
    }
    out.extend_from_slice(b"{\"mint\":");
    let mint = rng.pick(&[
        "http://localhost:3338",
        "HTTPS://Mint.Example/",
        "http://localhost:3338",
        "http://MÜNT.example",
        "ftp://x",
    ]);
    field_string(rng, out, mint);
    if !rng.chance(20) {
        out.extend_from_slice(b",\"proofs\":[");
        for p in 0..rng.below(4) {
            if p > 0 {
                out.push(b',');
            }
            gen_v3_proof(rng, out);
        }
        out.push(b']');
    }
    if rng.chance(10) {
        out.extend_from_slice(b",\"mint\":\"x\"");
    }
    out.push(b'}');
}

fn gen_v3_proof(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.chance(15) {
        // The array form of the struct.
        out.extend_from_slice(b"[3");
        for (i, good) in ["\"00ab\"", "\"s9\"", "\"02\"", "null", "{}"]
            .iter()
            .enumerate()
        {
            if i >= 2 && rng.chance(3) {
                break;
            }
            out.push(b',');
            if rng.chance(8) {
                gen_value(rng, out, 4);
            } else {
                out.extend_from_slice(good.as_bytes());
            }
        }
        if rng.chance(8) {
            out.extend_from_slice(b",1");
        }
        out.push(b']');
        return;
    }
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut field = |name: &str, value: Vec<u8>| {
        let mut f = format!("\"{name}\":").into_bytes();
        f.extend(value);
        parts.push(f);
    };
    let mut v = Vec::new();
    if rng.chance(8) {
        v.extend_from_slice(rng.pick(NUMBERS).as_bytes());
    } else {
        v.extend_from_slice(format!("{}", 1 + rng.below(64)).as_bytes());
    }
    if !rng.chance(20) {
        field("amount", v);
    }
    for (name, good) in [("id", "009a1f293253e41e"), ("secret", "s1"), ("C", "02ab")] {
        if !rng.chance(40) {
            let mut v = Vec::new();
            let secrets = ["s1", "s2", "s3", "s4", "s5", "s6"];
            let good = if name == "secret" {
                rng.pick(&secrets)
            } else {
                good
            };
            field_string(rng, &mut v, good);
            field(name, v);
        }
    }
    for name in ["dleq", "witness", "w", "zzz"] {
        if rng.chance(6) {
            let mut v = Vec::new();
            gen_value(rng, &mut v, 3);
            field(name, v);
        }
    }
    // Shuffle.
    for i in (1..parts.len()).rev() {
        let j = rng.below(i + 1);
        parts.swap(i, j);
    }
    out.push(b'{');
    out.extend(parts.join(&b","[..]));
    out.push(b'}');
}

/// Pass claims, mostly well-formed.
fn gen_claims(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(20) {
        let mut out = Vec::new();
        gen_object(rng, &mut out, 0, &["l", "t", "e", "u", "p"]);
        return out;
    }
    let array_form = rng.chance(10);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for (name, good) in [
        ("l", "\"lease\""),
        ("t", "\"tier\""),
        ("e", "1700000000"),
        ("u", "\"payer\""),
        ("p", "\"pod\""),
    ] {
        if rng.chance(15) && !array_form {
            continue;
        }
        let mut f = if array_form {
            Vec::new()
        } else {
            format!("\"{name}\":").into_bytes()
        };
        if rng.chance(10) {
            gen_value(rng, &mut f, 2);
        } else if name == "p" && rng.chance(3) {
            f.extend_from_slice(b"null");
        } else {
            f.extend_from_slice(good.as_bytes());
        }
        parts.push(f);
    }
    if rng.chance(10) {
        parts.push(if array_form {
            b"1".to_vec()
        } else {
            b"\"x\":1".to_vec()
        });
    }
    if !array_form {
        for i in (1..parts.len()).rev() {
            let j = rng.below(i + 1);
            parts.swap(i, j);
        }
    }
    let mut out = vec![if array_form { b'[' } else { b'{' }];
    out.extend(parts.join(&b","[..]));
    out.push(if array_form { b']' } else { b'}' });
    out
}

fn mutate(rng: &mut Rng, doc: &mut Vec<u8>) {
    for _ in 0..(1 + rng.below(3)) {
        if doc.is_empty() {
            return;
        }
        let i = rng.below(doc.len());
        match rng.below(4) {
            0 => {
                doc.remove(i);
            }
            1 => doc.insert(i, rng.pick(b"{}[],:\"\\ 0-e.ntf\xff")),
            2 => doc[i] = rng.pick(b"{}[],:\"\\ 0-e.ntfu"),
            _ => doc.truncate(i),
        }
    }
}

// ---- comparisons ----------------------------------------------------------

fn limits() -> TokenLimits {
    TokenLimits::default()
}

fn old_limits() -> old_token::TokenLimits {
    old_token::TokenLimits::default()
}

/// The new and the old decoder on one token string: the same `Debug`.
/// Whether it decoded.
fn same_token(s: &str) -> bool {
    let decoded = token::decode(s, &limits());
    let new = format!("{decoded:?}");
    let old = format!("{:?}", old_token::decode(s, &old_limits()));
    assert_eq!(new, old, "token {s}");
    decoded.is_ok()
}

fn reader_skip(doc: &[u8]) -> bool {
    let mut r = Reader::new(doc);
    r.skip().and_then(|()| r.end()).is_ok()
}

fn reader_value(doc: &[u8]) -> Option<serde_json::Value> {
    let mut r = Reader::new(doc);
    let checked = r.value().and_then(|()| r.end()).is_ok();
    let mut r = Reader::new(doc);
    let built = r.json_value().and_then(|v| r.end().map(|()| v)).ok();
    assert_eq!(checked, built.is_some(), "{}", String::from_utf8_lossy(doc));
    built
}

fn check_json_doc(doc: &[u8]) {
    let shown = String::from_utf8_lossy(doc);
    assert_eq!(
        reader_skip(doc),
        serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok(),
        "skip: {shown}"
    );
    let want = serde_json::from_slice::<serde_json::Value>(doc).ok();
    assert_eq!(reader_value(doc), want, "value: {shown}");
    assert_eq!(
        Claims::from_json(doc).ok(),
        serde_json::from_slice::<Claims>(doc).ok(),
        "claims: {shown}"
    );
    same_token(&format!("cashuA{}", URL_SAFE_NO_PAD.encode(doc)));
}

/// Whether a document is a decodable V3 body (for counting).
fn v3_decodes(doc: &[u8]) -> bool {
    token::decode(&format!("cashuA{}", URL_SAFE_NO_PAD.encode(doc)), &limits()).is_ok()
}

#[test]
fn json_documents_read_as_serde_json_reads_them() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut tokens, mut values, mut claims) = (0, 0, 0);
    for round in 0..40_000 {
        let mut doc = match round % 3 {
            0 => gen_v3(&mut rng),
            1 => {
                let mut out = Vec::new();
                gen_value(&mut rng, &mut out, 0);
                out
            }
            _ => gen_claims(&mut rng),
        };
        if rng.chance(3) {
            mutate(&mut rng, &mut doc);
        }
        check_json_doc(&doc);
        tokens += usize::from(v3_decodes(&doc));
        values += usize::from(serde_json::from_slice::<serde_json::Value>(&doc).is_ok());
        claims += usize::from(Claims::from_json(&doc).is_ok());
    }
    // The documents reach every outcome, not only refusals.
    assert!(
        tokens > 600 && values > 10_000 && claims > 2_000,
        "{tokens} {values} {claims}"
    );
}

#[test]
fn json_edge_cases_read_as_serde_json_reads_them() {
    let mut docs: Vec<Vec<u8>> = Vec::new();
    for n in NUMBERS {
        docs.push(n.as_bytes().to_vec());
        docs.push(format!("[{n}]").into_bytes());
        docs.push(format!("{{\"e\":{n},\"l\":\"a\",\"t\":\"b\",\"u\":\"c\"}}").into_bytes());
    }
    for p in STRING_PIECES {
        let mut d = b"{\"l\":\"".to_vec();
        d.extend_from_slice(p);
        d.extend_from_slice(b"\",\"t\":\"b\",\"e\":1,\"u\":\"c\"}");
        docs.push(d);
    }
    // Depth: serde_json's limit for values, none for skipped values.
    for depth in [1, 100, 126, 127, 128, 129, 300, 5000] {
        docs.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        docs.push(
            format!(
                "{{\"token\":[],\"x\":{}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes(),
        );
        docs.push(
            format!(
                "{{\"token\":[{{\"mint\":\"http://a\",\"proofs\":[{{\"amount\":1,\"id\":\"a\",\"secret\":\"s\",\"C\":\"c\",\"dleq\":{}{}}}]}}]}}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            )
            .into_bytes(),
        );
    }
    for d in [
        &b""[..],
        b" ",
        b"{}",
        b"{} x",
        b"{},",
        b"[1,]",
        b"{\"a\":1,}",
        b"{\"a\" 1}",
        b"{1:1}",
        b"[1 2]",
        b"\"\\ud800\\udc00\"",
        b"{\"l\":\"a\",\"l\":\"b\",\"t\":\"\",\"e\":1,\"u\":\"\"}",
        b"[\"a\",\"b\",1,\"c\"]",
        b"[\"a\",\"b\",1,\"c\",null]",
        b"[\"a\",\"b\",1,\"c\",null,1]",
        b"[\"a\",\"b\",1]",
        b"{\"token\":[{\"mint\":\"http://a\",\"proofs\":[[1,\"a\",\"s\",\"c\"]]}]}",
        b"{\"token\":[{\"mint\":\"http://a\",\"proofs\":[[1,\"a\",\"s\",\"c\",null,1,2]]}]}",
        b"{\"token\":[{\"mint\":\"http://a\",\"proofs\":[{\"amount\":1,\"id\":\"a\",\"secret\":\"s\",\"C\":\"c\",\"w\":1,\"witness\":2}]}]}",
        b"[[[\"http://a\",[[1,\"a\",\"s\",\"c\"]]]],\"usd\",\"m\"]",
        b"[[[\"http://a\",[[1,\"a\",\"s\",\"c\"]]]],\"usd\",\"m\",4]",
        b"{\"token\":[{\"mint\":\"http://a\",\"proofs\":[{\"amount\":1,\"id\":\"a\",\"secret\":\"s\",\"C\":\"c\",\"x\":\"\xff\\ud800\"}]}]}",
        b"{\"token\":[{\"mint\":\"http://a\",\"proofs\":[{\"amount\":1,\"id\":\"a\",\"secret\":\"\xff\",\"C\":\"c\"}]}]}",
        b"{\"token\":[{\"mint\":\"http://a\",\"proofs\":[{\"amount\":-0,\"id\":\"a\",\"secret\":\"s\",\"C\":\"c\"}]}]}",
    ] {
        docs.push(d.to_vec());
    }
    for doc in docs {
        check_json_doc(&doc);
    }
}

#[test]
fn every_mutation_of_real_tokens_decodes_alike() {
    let data = common::json(common::HOSTILE);
    let mut rng = Rng(0x0ddc_0ffe_e15b_ad5e);
    let mut tokens: Vec<String> = data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(common::build_token)
        .collect();
    let nut00 = common::json(common::NUT00);
    for case in nut00["valid"].as_array().into_iter().flatten() {
        if let Some(t) = case["token"].as_str() {
            tokens.push(t.to_string());
        }
    }
    for t in &tokens {
        same_token(t);
        let body = t.get(6..).unwrap_or_default();
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')) else {
            continue;
        };
        let prefix = t.get(..6).unwrap_or_default();
        for _ in 0..200 {
            let mut b = bytes.clone();
            mutate_bytes(&mut rng, &mut b);
            same_token(&format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&b)));
        }
        for end in 0..bytes.len() {
            same_token(&format!(
                "{prefix}{}",
                URL_SAFE_NO_PAD.encode(&bytes[..end])
            ));
        }
    }
}

fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..(1 + rng.below(3)) {
        if b.is_empty() {
            return;
        }
        let i = rng.below(b.len());
        match rng.below(4) {
            0 => {
                b.remove(i);
            }
            1 => b.insert(i, rng.next() as u8),
            2 => b[i] = rng.next() as u8,
            _ => b[i] ^= 1 << rng.below(8),
        }
    }
}

// ---- CBOR generation ------------------------------------------------------

fn head(out: &mut Vec<u8>, major: u8, n: u64, rng: &mut Rng) {
    // Shortest form, or now and then a longer one (ciborium reads both).
    let m = major << 5;
    let widen = rng.chance(8);
    if n < 24 && !widen {
        out.push(m | n as u8);
    } else if n <= 0xff && !(widen && rng.chance(2)) {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= 0xffff && !(widen && rng.chance(2)) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff && !(widen && rng.chance(2)) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn maybe_tag(out: &mut Vec<u8>, rng: &mut Rng) {
    while rng.chance(12) {
        let tag = rng.pick(&[0u64, 1, 2, 3, 24, 55799, 1_000_000]);
        head(out, 6, tag, rng);
    }
}

/// A text (major 3) or byte (major 2) string, maybe in segments.
fn cbor_str(out: &mut Vec<u8>, major: u8, data: &[u8], rng: &mut Rng) {
    if rng.chance(6) {
        out.push((major << 5) | 31);
        let mut rest = data;
        while !rest.is_empty() {
            let k = 1 + rng.below(rest.len());
            if rng.chance(10) {
                // A nested indefinite segment (ciborium reads those).
                out.push((major << 5) | 31);
                head(out, major, k as u64, rng);
                out.extend_from_slice(&rest[..k]);
                out.push(0xff);
            } else {
                head(out, major, k as u64, rng);
                out.extend_from_slice(&rest[..k]);
            }
            rest = &rest[k..];
        }
        if rng.chance(10) {
            head(out, major, 0, rng);
        }
        out.push(0xff);
    } else {
        head(out, major, data.len() as u64, rng);
        out.extend_from_slice(data);
    }
}

fn cbor_text(out: &mut Vec<u8>, s: &str, rng: &mut Rng) {
    maybe_tag(out, rng);
    if rng.chance(30) {
        cbor_str(out, 3, b"\xffx", rng);
    } else {
        cbor_str(out, 3, s.as_bytes(), rng);
    }
}

fn cbor_key(out: &mut Vec<u8>, k: &str, rng: &mut Rng) {
    maybe_tag(out, rng);
    match rng.below(40) {
        0..=3 => cbor_str(out, 2, k.as_bytes(), rng),
        4 => head(out, 0, 1, rng),
        5 => cbor_str(out, 3, k.as_bytes(), rng),
        _ => {
            head(out, 3, k.len() as u64, rng);
            out.extend_from_slice(k.as_bytes());
        }
    }
}

fn cbor_uint(out: &mut Vec<u8>, n: u64, rng: &mut Rng) {
    maybe_tag(out, rng);
    match rng.below(40) {
        0..=3 => {
            // A bignum of n, maybe with leading zeros.
            head(out, 6, 2, rng);
            let mut bytes = vec![0u8; rng.below(3)];
            bytes.extend_from_slice(&n.to_be_bytes());
            cbor_str(out, 2, &bytes, rng);
        }
        4 => {
            head(out, 6, rng.pick(&[2u64, 3]), rng);
            let len = rng.below(20);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            cbor_str(out, 2, &bytes, rng);
        }
        5 => head(out, 1, n, rng),
        6 => out.extend_from_slice(&[0xf9, 0x3c, 0x00]),
        _ => head(out, 0, n, rng),
    }
}

fn cbor_any(out: &mut Vec<u8>, rng: &mut Rng, depth: usize) {
    maybe_tag(out, rng);
    let kinds = if depth > 5 { 8 } else { 11 };
    match rng.below(kinds) {
        0 => head(out, 0, rng.next() >> rng.below(64), rng),
        1 => head(out, 1, rng.next() >> rng.below(64), rng),
        2 => cbor_str(out, 2, b"\x01\x02", rng),
        3 => cbor_str(out, 3, "é✓".as_bytes(), rng),
        4 => out.push(rng.pick(&[0xf4u8, 0xf5, 0xf6, 0xf7, 0xf0, 0xff, 0xfc])),
        5 => out.extend_from_slice(rng.pick::<&[u8]>(&[
            &[0xf8u8, 0x16],
            &[0xf8, 0x20],
            &[0xf9, 0x7c, 0x00],
            &[0xfa, 0x3f, 0x80, 0, 0],
            &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0],
        ])),
        6 => {
            head(out, 6, rng.pick(&[2u64, 3]), rng);
            let len = rng.below(20);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            cbor_str(out, 2, &bytes, rng);
        }
        7 => cbor_uint(out, rng.next() >> rng.below(64), rng),
        8 => {
            let n = rng.below(4);
            if rng.chance(3) {
                out.push(0x9f);
                for _ in 0..n {
                    cbor_any(out, rng, depth + 1);
                }
                out.push(0xff);
            } else {
                head(out, 4, n as u64, rng);
                for _ in 0..n {
                    cbor_any(out, rng, depth + 1);
                }
            }
        }
        _ => {
            let n = rng.below(3);
            if rng.chance(3) {
                out.push(0xbf);
                for _ in 0..n {
                    cbor_any(out, rng, depth + 1);
                    cbor_any(out, rng, depth + 1);
                }
                out.push(0xff);
            } else {
                head(out, 5, n as u64, rng);
                for _ in 0..n {
                    cbor_any(out, rng, depth + 1);
                    cbor_any(out, rng, depth + 1);
                }
            }
        }
    }
}

/// A map of `fields`, each written by its function, shuffled, maybe
/// indefinite, with now and then an unknown or a repeated key.
type Field<'a> = (&'a str, Box<dyn Fn(&mut Vec<u8>, &mut Rng) + 'a>);

fn cbor_map(out: &mut Vec<u8>, rng: &mut Rng, fields: &[Field<'_>]) {
    maybe_tag(out, rng);
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for (name, write) in fields {
        if rng.chance(50) {
            continue;
        }
        let mut e = Vec::new();
        cbor_key(&mut e, name, rng);
        write(&mut e, rng);
        entries.push(e);
        if rng.chance(40) {
            let mut e = Vec::new();
            cbor_key(&mut e, name, rng);
            write(&mut e, rng);
            entries.push(e);
        }
    }
    if rng.chance(6) {
        let mut e = Vec::new();
        cbor_key(&mut e, rng.pick(&["x", "witness", "w", "d", "zz"]), rng);
        cbor_any(&mut e, rng, 2);
        entries.push(e);
    }
    for i in (1..entries.len()).rev() {
        let j = rng.below(i + 1);
        entries.swap(i, j);
    }
    if rng.chance(5) {
        out.push(0xbf);
        for e in entries {
            out.extend(e);
        }
        out.push(0xff);
    } else {
        head(out, 5, entries.len() as u64, rng);
        for e in entries {
            out.extend(e);
        }
    }
}

fn cbor_bytes_field(out: &mut Vec<u8>, rng: &mut Rng, bytes: &[u8]) {
    maybe_tag(out, rng);
    match rng.below(40) {
        0..=3 => {
            head(out, 4, bytes.len() as u64, rng);
            for b in bytes {
                cbor_uint(out, u64::from(*b), rng);
            }
        }
        4 => cbor_str(out, 2, bytes, rng),
        5 => cbor_any(out, rng, 3),
        _ => {
            head(out, 2, bytes.len() as u64, rng);
            out.extend_from_slice(bytes);
        }
    }
}

fn cbor_seq(out: &mut Vec<u8>, rng: &mut Rng, n: usize, element: &dyn Fn(&mut Vec<u8>, &mut Rng)) {
    maybe_tag(out, rng);
    match rng.below(40) {
        0 => cbor_str(out, 2, b"", rng),
        1 => cbor_str(out, 2, b"\x01", rng),
        2..=5 => {
            out.push(0x9f);
            for _ in 0..n {
                element(out, rng);
            }
            out.push(0xff);
        }
        _ => {
            head(out, 4, n as u64, rng);
            for _ in 0..n {
                element(out, rng);
            }
        }
    }
}

fn gen_v4(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let proof = |out: &mut Vec<u8>, rng: &mut Rng| {
        let secret = format!("s{}", rng.below(8));
        let fields: Vec<Field<'_>> = vec![
            (
                "a",
                Box::new(|o, r| {
                    let n = 1 + r.below(64) as u64;
                    cbor_uint(o, n, r)
                }),
            ),
            ("s", Box::new(move |o, r| cbor_text(o, &secret, r))),
            ("c", Box::new(|o, r| cbor_bytes_field(o, r, &[2, 0xab]))),
            (
                "d",
                Box::new(|o, r| {
                    if r.chance(3) {
                        o.push(r.pick(&[0xf6u8, 0xf7]));
                    } else {
                        cbor_any(o, r, 3)
                    }
                }),
            ),
            ("w", Box::new(|o, r| cbor_any(o, r, 3))),
        ];
        cbor_map(out, rng, &fields);
    };
    let entry = |out: &mut Vec<u8>, rng: &mut Rng| {
        let n = 1 + rng.below(3);
        let fields: Vec<Field<'_>> = vec![
            (
                "i",
                Box::new(|o, r| cbor_bytes_field(o, r, &[0, 0x9a, 0x1f])),
            ),
            ("p", Box::new(move |o, r| cbor_seq(o, r, n, &proof))),
        ];
        cbor_map(out, rng, &fields);
    };
    let n = 1 + usize::from(rng.chance(5));
    let fields: Vec<Field<'_>> = vec![
        (
            "m",
            Box::new(|o, r| {
                let m = r.pick(&[
                    "http://localhost:3338",
                    "HTTP://A/",
                    "http://localhost:3338",
                    "x",
                ]);
                cbor_text(o, m, r)
            }),
        ),
        (
            "u",
            Box::new(|o, r| {
                let u = rng_unit(r);
                cbor_text(o, u, r)
            }),
        ),
        (
            "d",
            Box::new(|o, r| {
                if r.chance(2) {
                    o.push(r.pick(&[0xf6u8, 0xf7, 0xf6, 0xf7, 0xf5]));
                } else {
                    cbor_text(o, "memo", r)
                }
            }),
        ),
        ("t", Box::new(move |o, r| cbor_seq(o, r, n, &entry))),
    ];
    cbor_map(&mut out, rng, &fields);
    if rng.chance(10) {
        out.extend_from_slice(b"trailing");
    }
    out
}

#[test]
fn cbor_tokens_decode_as_ciborium_reads_them() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut decoded = 0;
    for _ in 0..40_000 {
        let mut doc = gen_v4(&mut rng);
        if rng.chance(3) {
            mutate_bytes(&mut rng, &mut doc);
        }
        decoded += usize::from(same_token(&format!(
            "cashuB{}",
            URL_SAFE_NO_PAD.encode(&doc)
        )));
    }
    assert!(decoded > 1_000, "{decoded}");
    // Nesting: ciborium's limit of 256 levels.
    for depth in [200, 250, 251, 252, 255, 256, 257, 400] {
        for inner in [&[0x81u8][..], &[0xa1, 0x00], &[0xc6]] {
            let mut doc = vec![
                0xa3, 0x61, b'm', 0x61, b'x', 0x61, b'u', 0x63, b's', b'a', b't',
            ];
            doc.extend_from_slice(&[
                0x61, b't', 0x81, 0xa2, 0x61, b'i', 0x41, 0x00, 0x61, b'p', 0x81,
            ]);
            doc.extend_from_slice(&[
                0xa4, 0x61, b'a', 0x01, 0x61, b's', 0x61, b's', 0x61, b'c', 0x41, 0x02,
            ]);
            doc.extend_from_slice(&[0x61, b'd']);
            for _ in 0..depth {
                doc.extend_from_slice(inner);
            }
            doc.push(0x00);
            let s = format!("cashuB{}", URL_SAFE_NO_PAD.encode(&doc));
            same_token(&s);
        }
    }
}

// ---- writers ----------------------------------------------------------------

fn gen_text(rng: &mut Rng) -> String {
    let pieces = [
        "a", "é", "✓", "\"", "\\", "/", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1f}",
        "\u{7f}", "\u{2028}", "😀", " ", "<", "&",
    ];
    (0..rng.below(8)).map(|_| rng.pick(&pieces)).collect()
}

#[test]
fn bodies_claims_and_requests_keep_their_bytes() {
    #[derive(Serialize)]
    struct RejectionBody<'a> {
        error: &'a str,
        code: &'static str,
    }
    #[derive(Serialize)]
    struct PaymentRequiredBody<'a> {
        error: &'static str,
        amount: u64,
        unit: &'a str,
        mints: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        tier: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        lease_seconds: Option<u64>,
    }
    #[derive(Serialize)]
    struct Request<'a> {
        a: u64,
        u: &'a str,
        m: &'a [String],
    }
    let mut rng = Rng(0xfeed_beef_1234_5678);
    for _ in 0..5_000 {
        let text = gen_text(&mut rng);
        let code = rng.pick(&ErrorCode::ALL);
        assert_eq!(
            outcome::rejection_body(code, &text),
            serde_json::to_string(&RejectionBody {
                error: &text,
                code: code.as_str()
            })
            .unwrap()
        );
        let mints: Vec<String> = (0..rng.below(4)).map(|_| gen_text(&mut rng)).collect();
        let amount = rng.next() >> rng.below(64);
        let unit = gen_text(&mut rng);
        let tier = rng.chance(2).then(|| gen_text(&mut rng));
        let lease = rng.chance(2).then(|| rng.next() >> rng.below(64));
        assert_eq!(
            outcome::payment_required_body(amount, &unit, &mints, tier.as_deref(), lease),
            serde_json::to_string(&PaymentRequiredBody {
                error: "Payment Required",
                amount,
                unit: &unit,
                mints: &mints,
                tier: tier.as_deref(),
                lease_seconds: lease,
            })
            .unwrap()
        );
        let claims = Claims {
            lease: gen_text(&mut rng),
            tier: gen_text(&mut rng),
            expires_at: rng.next() >> rng.below(64),
            payer: gen_text(&mut rng),
            pod: rng.chance(2).then(|| gen_text(&mut rng)),
        };
        assert_eq!(claims.to_json(), serde_json::to_string(&claims).unwrap());
        assert_eq!(
            Claims::from_json(claims.to_json().as_bytes()).unwrap(),
            claims
        );
        let mut cbor = Vec::new();
        ciborium::ser::into_writer(
            &Request {
                a: amount,
                u: &unit,
                m: &mints,
            },
            &mut cbor,
        )
        .unwrap();
        let mut want = String::from("creqA");
        base64::engine::general_purpose::URL_SAFE.encode_string(&cbor, &mut want);
        assert_eq!(payment_request::encode(amount, &unit, &mints), Some(want));
    }
}

// ---- configs ----------------------------------------------------------------

/// `Config::from_json_without_serde` against `Config::from_json`: the same
/// config, or errors of the same words (serde_json's position aside).
fn same_config(text: &str) {
    let new = Config::from_json_without_serde(text);
    let old = Config::from_json(text);
    match (&new, &old) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
        (Err(a), Err(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            // serde_json's position is left out, and a float is shown as
            // written rather than formatted again (`1e2`, not `100.0`).
            let strip = |m: &str| -> String {
                let mut m = match m.rfind(" at line ") {
                    Some(i) => m[..i].to_string(),
                    None => m.to_string(),
                };
                if let Some(i) = m.find("floating point `") {
                    let start = i + "floating point `".len();
                    if let Some(len) = m[start..].find('`') {
                        m.replace_range(start..start + len, "F");
                    }
                }
                m
            };
            assert_eq!(strip(&a), strip(&b), "{text}");
        }
        _ => panic!("{text}: without serde {new:?}, with serde {old:?}"),
    }
}

#[test]
fn configs_read_as_their_serde_derives_read_them() {
    let data = common::json(common::CONFIGS);
    let mut texts = Vec::new();
    for case in data["valid"]
        .as_array()
        .unwrap()
        .iter()
        .chain(data["invalid"].as_array().unwrap())
    {
        texts.push(config_rules_document(&data, case));
    }
    let mut rng = Rng(0xc0f1_9000_0000_0001);
    let mut all = texts.clone();
    for t in &texts {
        for _ in 0..300 {
            let mut b = t.clone().into_bytes();
            mutate(&mut rng, &mut b);
            if let Ok(s) = String::from_utf8(b) {
                all.push(s);
            }
        }
    }
    for extra in [
        "[\"sat\",[\"http://a\"]]",
        "[\"sat\"]",
        "[\"sat\",[\"http://a\"],1,[],[],{},\"deny\",[],1]",
        "{\"mints\":[\"http://a\"],\"failure_mode\":{\"allow\":null}}",
        "{\"mints\":[\"http://a\"],\"failure_mode\":{\"allow\":1}}",
        "{\"mints\":[\"http://a\"],\"failure_mode\":{}}",
        "{\"mints\":[\"http://a\"],\"failure_mode\":1}",
        "{\"mints\":[\"http://a\"],\"verifier\":null}",
        "{\"mints\":[\"http://a\"],\"unit\":null}",
        "{\"mints\":[\"http://a\"],\"tiers\":[{\"id\":\"a\",\"path_prefix\":\"/a\",\"amount\":1,\"lease\":null,\"pod\":null}]}",
        "{\"mints\":[\"http://a\"],\"tiers\":[{\"id\":\"a\",\"path_prefix\":\"/a\",\"amount\":1,\"pod\":{\"a\":[1,-2,1.5,1e300,\"x\",null,true,{\"b\":{}}],\"a\":2}}]}",
        "{\"mints\":[\"http://a\"],\"pass_keys\":[{\"id\":\"k\",\"secret\":null,\"secret_env\":\"X\"}]}",
        "{\"mints\":[\"http://a\"],\"default_amount\":-0}",
        "{\"mints\":[\"http://a\"],\"default_amount\":1e2}",
        "{\"mints\":[\"http://a\"],\"mints\":[]}",
    ] {
        all.push(extra.to_string());
    }
    for t in &all {
        same_config(t);
    }
}

/// A config document of the test data (as `config_rules.rs` builds it).
fn config_rules_document(data: &serde_json::Value, case: &serde_json::Value) -> String {
    if let Some(text) = case["text"].as_str() {
        return text.to_string();
    }
    let mut doc = data["base"].clone();
    merge(&mut doc, &case["patch"]);
    doc.to_string()
}

fn merge(doc: &mut serde_json::Value, patch: &serde_json::Value) {
    match (doc, patch) {
        (serde_json::Value::Object(d), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}
