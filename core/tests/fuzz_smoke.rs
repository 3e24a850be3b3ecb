//! A small deterministic no-panic fuzz loop (xorshift PRNG, the same inputs on
//! every target): random strings, random base64 behind `cashuA`/`cashuB`,
//! mutations of the NUT-00 vectors and of valid CBOR/JSON, random paths,
//! configs, headers and mint URLs go through every core function. It exists
//! for wasm32, where proptest does not run: a panic there takes down the VM.
//! The iteration count is `PAYGRESS_FUZZ_ITERS` when set (native only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::XorShift;
use paygress_core::{extract, mint_url, path, payment_request, precheck, token};
use paygress_core::{CompiledConfig, Config, TokenLimits};

fn iterations() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(n) = std::env::var("PAYGRESS_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return n;
    }
    4000
}

const ALPHABET: &[&str] = &[
    "a",
    "Z",
    "0",
    "/",
    "\\",
    ".",
    "..",
    "%",
    "%2e",
    "%2F",
    "%5c",
    "%zz",
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
    "+",
    "-",
    "_",
    ":",
    "://",
    "cashu",
    "cashuA",
    "cashuB",
    "cashu:",
    "Bearer ",
    "Cashu ",
    "http",
    "https://",
    "[",
    "]",
    "{",
    "}",
    "\"",
    ";",
    "..;",
    "%3B",
];

fn random_string(rng: &mut XorShift, max_parts: usize) -> String {
    let n = rng.below(max_parts + 1);
    (0..n).map(|_| *rng.pick(ALPHABET)).collect()
}

fn valid_bodies() -> Vec<(String, Vec<u8>)> {
    let data = common::json(common::NUT00);
    data["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = v["token"].as_str().unwrap();
            let (prefix, body) = s.split_at(6);
            (
                prefix.to_string(),
                URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')).unwrap(),
            )
        })
        .collect()
}

fn mutate(rng: &mut XorShift, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..=rng.below(4) {
        if out.is_empty() {
            out.push(rng.next_u64() as u8);
            continue;
        }
        let i = rng.below(out.len());
        match rng.below(6) {
            0 => out[i] = rng.next_u64() as u8,
            1 => out[i] ^= 1 << rng.below(8),
            2 => {
                out.remove(i);
            }
            3 => out.insert(i, rng.next_u64() as u8),
            4 => out.truncate(i),
            _ => {
                // Interesting CBOR heads: huge lengths, indefinite, break, tags.
                let heads = [0x1b, 0x5b, 0x7b, 0x9b, 0xbb, 0x9f, 0xbf, 0xff, 0xc0, 0xf7];
                out[i] = *rng.pick(&heads);
            }
        }
    }
    out
}

fn exercise_token(s: &str) {
    let limits = TokenLimits::default();
    if let Ok(tok) = token::decode(s, &limits) {
        // Whatever decodes is consistent.
        assert!(!tok.proofs.is_empty());
        assert_eq!(
            tok.proofs
                .iter()
                .try_fold(0u64, |a, p| a.checked_add(p.amount)),
            Some(tok.total)
        );
        assert!(tok.proofs.len() <= limits.max_proofs);
        assert_eq!(
            mint_url::normalize(&tok.mint).as_deref(),
            Ok(tok.mint.as_str())
        );
        let c = CompiledConfig::from_json(r#"{"mints":["http://localhost:3338"]}"#).unwrap();
        let _ = precheck::precheck(&tok, &c, 1, 0);
        let _ = precheck::input_fee(&tok, |_| Some(1000));
    }
    let _ = precheck::decode(
        s,
        &TokenLimits {
            max_len: 64,
            max_proofs: 1,
        },
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn no_input_makes_core_panic() {
    let mut rng = XorShift::new(0x5eed_2024_c0de_cafe);
    let bodies = valid_bodies();
    let config = CompiledConfig::from_json(
        r#"{"mints":["http://m"],"free_paths":["/free"],"tiers":[
            {"id":"p","path_prefix":"/premium","amount":2},
            {"id":"pp","path_prefix":"/premium/plus","amount":3}]}"#,
    )
    .unwrap();
    let mut decoded = 0usize;
    for _ in 0..iterations() {
        // 1. Token strings of many shapes.
        let s = match rng.below(6) {
            0 => random_string(&mut rng, 12),
            1 => {
                let prefix = *rng.pick(&["cashuA", "cashuB"]);
                let len = rng.below(200);
                format!("{prefix}{}", URL_SAFE_NO_PAD.encode(rng.bytes(len)))
            }
            2 | 3 => {
                let (prefix, body) = rng.pick(&bodies).clone();
                format!(
                    "{prefix}{}",
                    URL_SAFE_NO_PAD.encode(mutate(&mut rng, &body))
                )
            }
            4 => {
                let (prefix, body) = rng.pick(&bodies).clone();
                let enc = STANDARD.encode(mutate(&mut rng, &body));
                let cut = rng.below(enc.len() + 1);
                format!("cashu:{prefix}{}", enc.get(..cut).unwrap_or(""))
            }
            _ => {
                let (prefix, body) = rng.pick(&bodies).clone();
                let mut s = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&body));
                let i = rng.below(s.len());
                let replacement = *rng.pick(ALPHABET);
                if s.is_char_boundary(i) {
                    s.replace_range(i..=i, replacement);
                }
                s
            }
        };
        if token::decode(&s, &TokenLimits::default()).is_ok() {
            decoded += 1;
        }
        exercise_token(&s);

        // 2. Paths and prices.
        let target = random_string(&mut rng, 10);
        let normal = path::normalize(&target);
        assert!(normal.starts_with('/'), "{target:?}");
        let _ = path::has_prefix(&normal, &random_string(&mut rng, 3));
        let _ = config.price(&target);
        let _ = config.price(&normal);

        // 3. Headers.
        let x = random_string(&mut rng, 4);
        let a = random_string(&mut rng, 4);
        let _ = extract::find_token(Some(&x), Some(&a));
        let _ = extract::find_token(None, Some(&a));
        let _ = extract::is_cashu_authorization(&a);
        let _ = extract::looks_like_cashu(&x);

        // 4. Mint URLs: a normalised URL is a fixed point.
        let u = random_string(&mut rng, 6);
        if let Ok(n) = mint_url::normalize(&u) {
            assert_eq!(mint_url::normalize(&n), Ok(n.clone()), "{u:?}");
        }

        // 5. Configs: random edits of a valid document.
        let doc = format!(
            r#"{{"unit":{},"mints":[{}],"default_amount":{},"free_paths":[{}],
                "tiers":[{{"id":{},"path_prefix":{},"amount":{}}}]}}"#,
            serde_json::Value::from(random_string(&mut rng, 2)),
            serde_json::Value::from(format!("http://{}", random_string(&mut rng, 2))),
            rng.next_u64() >> rng.below(64),
            serde_json::Value::from(random_string(&mut rng, 3)),
            serde_json::Value::from(random_string(&mut rng, 2)),
            serde_json::Value::from(random_string(&mut rng, 3)),
            rng.next_u64() >> rng.below(64),
        );
        if let Ok(c) = Config::from_json(&doc) {
            if let Ok(compiled) = c.compile() {
                let _ = compiled.price(&target);
                let _ = compiled.price_tiers();
            }
        }
        let mut bytes = doc.into_bytes();
        let cut = rng.below(bytes.len());
        bytes.truncate(cut);
        let _ = CompiledConfig::from_json(&String::from_utf8_lossy(&bytes));

        // 6. Payment requests never fail for any amount, unit or mints.
        let mints = vec![random_string(&mut rng, 3)];
        assert!(
            payment_request::encode(rng.next_u64(), &random_string(&mut rng, 2), &mints).is_some()
        );
    }
    // The loop reached the decoders' success paths too, not only errors.
    assert!(decoded > 0, "no mutation decoded");
}
