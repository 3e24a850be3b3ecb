//! Round trips against cdk 0.18.3 itself (native only; no mint needed):
//!
//! * tokens that cdk encodes (`Token::new` → V4, `TokenV3::new` → V3, and
//!   `to_v3_string`) decode with core to the same mint, unit, memo, total and
//!   per-proof amount, keyset id, secret, `C`, DLEQ and witness presence;
//! * whatever core decodes from the hostile cases and the NUT-00 vectors, cdk
//!   decodes to the same mint, unit and total (core may refuse more, never
//!   read differently);
//! * every `creqA` that core encodes is parsed by cdk's `PaymentRequest` to
//!   the same amount, unit and mints;
//! * mint URLs normalise as cdk's `MintUrl` does.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use cdk::mint_url::MintUrl;
use cdk::nuts::nut02::ShortKeysetId;
use cdk::nuts::{
    CurrencyUnit, Id, P2PKWitness, PaymentRequest, Proof, ProofDleq, PublicKey, SecretKey, Token,
    TokenV3, Witness,
};
use cdk::secret::Secret;
use cdk::Amount;
use paygress_core::token::{self as core_token, TokenVersion};
use paygress_core::{mint_url, payment_request, TokenLimits};

/// secp256k1 points from the NUT-00 vectors.
const POINTS: [&str; 6] = [
    "02bc9097997d81afb2cc7346b5e4345a9346bd2a506eb7958598a72f0cf85163ea",
    "029e8e5050b890a7d6c0968db16bc1d5d5fa040ea1de284f6ec69d61299f671059",
    "038618543ffb6b8695df4ad4babcde92a34a96bdcd97dcee0d7ccf98d472126792",
    "0244538319de485d55bed3b29a642bee5879375ab9e7a620e11e48ba482421f3cf",
    "023456aa110d84b4ac747aebd82c3b005aca50bf457ebd5737a4414fac3ae7d94d",
    "0273129c5719e599379a974a626363c333c56cafc0e6d01abe46d5808280789c63",
];

const KEYSETS: [&str; 3] = [
    "009a1f293253e41e",
    "00ad268c4d1f5826",
    // A version-01 (NUT-02 v2) keyset id: 33 bytes; tokens carry its short form.
    "01adc013fa9d85171586660abab27579888611659d357bc86bc09cb26eee8bc035",
];

const MINTS: [&str; 6] = [
    "http://127.0.0.1:3338",
    "http://localhost:3338/",
    "HTTPS://Mint.Example.COM/",
    "https://mint.example.com/Cashu/API",
    "https://mint.example.com//double",
    "http://[::1]:3338",
];

fn units() -> Vec<CurrencyUnit> {
    vec![
        CurrencyUnit::Sat,
        CurrencyUnit::Msat,
        CurrencyUnit::Usd,
        CurrencyUnit::Eur,
        CurrencyUnit::Auth,
        CurrencyUnit::custom("points"),
        CurrencyUnit::custom("My_Unit2"),
    ]
}

/// A proof; `k` picks keyset, point, amount and the optional parts.
fn proof(k: usize, amount: u64) -> Proof {
    let id = Id::from_str(KEYSETS[k % KEYSETS.len()]).unwrap();
    let c = if k % 4 == 3 {
        SecretKey::generate().public_key()
    } else {
        PublicKey::from_hex(POINTS[k % POINTS.len()]).unwrap()
    };
    let mut p = Proof::new(
        Amount::from(amount),
        id,
        Secret::new(format!("secret-{k}-{amount}")),
        c,
    );
    if k % 3 == 1 {
        p.dleq = Some(ProofDleq::new(
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        ));
    }
    if k % 5 == 2 {
        p.witness = Some(Witness::P2PKWitness(P2PKWitness {
            signatures: vec![format!("sig{k}")],
        }));
    }
    p
}

/// The per-proof facts core reports, sorted (cdk groups V4 proofs by keyset
/// in a `HashMap`, so the order is not kept).
fn core_facts(t: &core_token::Token) -> Vec<(u64, String, String, String, bool, bool)> {
    let mut v: Vec<_> = t
        .proofs
        .iter()
        .map(|p| {
            (
                p.amount,
                p.keyset_id.clone(),
                p.secret.clone(),
                p.c.clone(),
                p.has_dleq,
                p.has_witness,
            )
        })
        .collect();
    v.sort();
    v
}

fn cdk_facts(proofs: &[Proof]) -> Vec<(u64, String, String, String, bool, bool)> {
    let mut v: Vec<_> = proofs
        .iter()
        .map(|p| {
            (
                u64::from(p.amount),
                ShortKeysetId::from(p.keyset_id).to_string(),
                p.secret.to_string(),
                p.c.to_hex(),
                p.dleq.is_some(),
                p.witness.is_some(),
            )
        })
        .collect();
    v.sort();
    v
}

fn check(encoded: &str, cdk_token: &Token, proofs: &[Proof], version: TokenVersion) {
    let got = core_token::decode(encoded, &TokenLimits::default())
        .unwrap_or_else(|e| panic!("core refused a cdk token: {e}\n{encoded}"));
    assert_eq!(got.version, version);
    assert_eq!(got.mint, cdk_token.mint_url().unwrap().to_string(), "mint");
    assert_eq!(got.unit, cdk_token.unit().unwrap().to_string(), "unit");
    assert_eq!(&got.memo, cdk_token.memo(), "memo");
    assert_eq!(got.total, u64::from(cdk_token.value().unwrap()), "total");
    assert_eq!(core_facts(&got), cdk_facts(proofs), "proofs");
}

fn amounts_for(case: usize) -> Vec<u64> {
    match case % 6 {
        0 => vec![1],
        1 => vec![1, 2, 4, 8, 16, 32, 64, 128],
        2 => vec![1000],
        3 => vec![u64::MAX / 2, u64::MAX / 2],
        4 => (1..=40).collect(),
        _ => vec![1 << 40, 3, 1 << 20],
    }
}

#[test]
fn tokens_encoded_by_cdk_decode_alike() {
    let mut checked = 0;
    for (case, mint) in MINTS.iter().cycle().take(42).enumerate() {
        let unit = units()[case % units().len()].clone();
        let memo = (case % 2 == 0).then(|| format!("memo {case} ünïcode"));
        let proofs: Vec<Proof> = amounts_for(case)
            .into_iter()
            .enumerate()
            .map(|(i, a)| proof(case + i, a))
            .collect();
        let mint_url = MintUrl::from_str(mint).unwrap();

        // V4 (cashuB), as cdk's wallet sends.
        let v4 = Token::new(mint_url.clone(), proofs.clone(), memo.clone(), unit.clone());
        let s = v4.to_string();
        assert!(s.starts_with("cashuB"));
        check(&s, &v4, &proofs, TokenVersion::V4);

        // V3 (cashuA) from the same proofs.
        let v3 = Token::TokenV3(
            TokenV3::new(
                mint_url.clone(),
                proofs.clone(),
                memo.clone(),
                Some(unit.clone()),
            )
            .unwrap(),
        );
        let s = v3.to_string();
        assert!(s.starts_with("cashuA"));
        check(&s, &v3, &proofs, TokenVersion::V3);

        // cdk's conversion of the V4 token to a V3 string.
        let s = v4.to_v3_string();
        let back = Token::from_str(&s).unwrap();
        check(&s, &back, &proofs, TokenVersion::V3);
        checked += 3;
    }
    assert_eq!(checked, 126);
}

#[test]
fn a_v3_token_without_unit_is_sat_for_both() {
    let proofs = vec![proof(0, 8)];
    let v3 = TokenV3::new(
        MintUrl::from_str("http://localhost:3338").unwrap(),
        proofs,
        None,
        None,
    )
    .unwrap();
    let s = Token::TokenV3(v3).to_string();
    let cdk = Token::from_str(&s).unwrap();
    assert_eq!(cdk.unit(), None);
    // cdk's wallet reads a missing unit as its default, sat.
    assert_eq!(cdk.unit().unwrap_or_default(), CurrencyUnit::Sat);
    let core = core_token::decode(&s, &TokenLimits::default()).unwrap();
    assert_eq!(core.unit, "sat");
}

/// What cdk's wallet would make of a token string: the mint, the unit (as its
/// `CurrencyUnit`), the value; `Err` where `receive` would stop before the mint.
fn cdk_reading(s: &str) -> Result<(String, CurrencyUnit, u64), String> {
    let t = Token::from_str(s).map_err(|e| e.to_string())?;
    if let Token::TokenV3(v3) = &t {
        if v3.is_multi_mint() {
            return Err("multi-mint".into());
        }
    }
    let mint = t.mint_url().map_err(|e| e.to_string())?.to_string();
    let unit = t.unit().unwrap_or_default();
    let value = t.value().map_err(|e| e.to_string())?;
    Ok((mint, unit, value.into()))
}

/// The token string without what core tolerates and cdk does not: a
/// `cashu:` prefix, surrounding whitespace, the standard base64 alphabet.
fn as_cdk_expects(s: &str) -> String {
    let s = s.trim();
    let s = if s.len() > 6 && s[..6].eq_ignore_ascii_case("cashu:") {
        &s[6..]
    } else {
        s
    };
    let (prefix, body) = s.split_at(6);
    let body: String = body
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    format!("{prefix}{body}")
}

#[test]
fn what_core_decodes_cdk_reads_the_same() {
    // Differential test over every token of the test data that core accepts.
    let hostile = common::json(common::HOSTILE);
    let nut00 = common::json(common::NUT00);
    let mut inputs: Vec<(String, String)> = hostile["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                common::build_token(c),
            )
        })
        .collect();
    inputs.extend(nut00["valid"].as_array().unwrap().iter().map(|v| {
        (
            v["name"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }));
    // Cases where cdk refuses what core accepts, and why that is fine: core
    // does no crypto and does not parse witnesses or DLEQ proofs (the mint
    // checks them when it swaps), so made-up ones pass its decoding.
    let cdk_stricter = [
        // cdk wants a witness as a JSON string holding JSON.
        "V3 witness as an object",
        // The DLEQ's e/s/r are not valid secret keys.
        "V3 DLEQ proof",
        // `pe` (NUT-28 P2BK) is a key cdk knows, and 02…02 is not a point.
        "V4 unknown keys ignored at every level",
    ];
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut refused_by_cdk = Vec::new();
    for (name, s) in &inputs {
        let Ok(core) = core_token::decode(s, &TokenLimits::default()) else {
            continue;
        };
        match cdk_reading(&as_cdk_expects(s)) {
            Ok((mint, unit, value)) => {
                compared += 1;
                let core_unit = CurrencyUnit::from_str(&core.unit).unwrap();
                if (mint.as_str(), &unit, value) != (core.mint.as_str(), &core_unit, core.total) {
                    failures.push(format!(
                        "{name}: cdk ({mint}, {unit:?}, {value}) core ({}, {:?}, {})",
                        core.mint, core.unit, core.total
                    ));
                }
            }
            Err(_) if cdk_stricter.contains(&name.as_str()) => {
                refused_by_cdk.push(name.as_str());
            }
            Err(e) => failures.push(format!("{name}: core accepts, cdk refuses: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The list of known differences is exact: no stale entries.
    assert_eq!(refused_by_cdk, cdk_stricter);
    assert!(compared >= 30, "only {compared} compared");
}

#[test]
fn payment_requests_encoded_by_core_parse_in_cdk() {
    let mint_lists: Vec<Vec<&str>> = vec![
        vec![],
        vec!["http://127.0.0.1:3338"],
        vec!["https://mint1.example.com", "https://mint2.example.com"],
        vec![
            "https://mint.example.com/Cashu/API",
            "http://[::1]:3338",
            "https://a.example",
            "https://b.example",
        ],
        (0..16)
            .map(|i| Box::leak(format!("https://m{i}.example").into_boxed_str()) as &str)
            .collect(),
    ];
    let mut amounts: Vec<u64> = vec![0, 1, 2, 10, 23, 24, 100, 255, 256, 1000, 4096];
    amounts.extend([65_535, 65_536, 1 << 31, 1 << 32, (1 << 53) - 1, 1 << 53]);
    amounts.extend([u64::MAX / 3, u64::MAX - 1, u64::MAX]);
    let mut n = 0;
    for mints in &mint_lists {
        let mints: Vec<String> = mints
            .iter()
            .map(|m| mint_url::normalize(m).unwrap())
            .collect();
        for &a in &amounts {
            for unit in ["sat", "msat", "usd", "eur", "my_unit2"] {
                let s = payment_request::encode(a, unit, &mints).unwrap();
                let pr =
                    PaymentRequest::from_str(&s).unwrap_or_else(|e| panic!("cdk refused {s}: {e}"));
                assert_eq!(pr.amount, Some(Amount::from(a)), "{s}");
                assert_eq!(pr.unit, Some(CurrencyUnit::from_str(unit).unwrap()), "{s}");
                let want: Vec<MintUrl> = mints
                    .iter()
                    .map(|m| MintUrl::from_str(m).unwrap())
                    .collect();
                assert_eq!(pr.mints, want, "{s}");
                assert_eq!(
                    pr.mints.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    mints
                );
                // In-band: no transport, no id, no locking.
                assert!(pr.transports.is_empty());
                assert_eq!(pr.payment_id, None);
                assert_eq!(pr.nut10, None);
                assert_eq!(pr.description, None);
                n += 1;
            }
        }
    }
    assert_eq!(n, 5 * 20 * 5);
}

#[test]
fn payment_requests_also_parse_unpadded() {
    // cdk accepts a creqA with or without base64 padding; core writes it
    // padded (as cdk's own `Display` does). Check both spellings anyway.
    for a in 1..=300u64 {
        let mints = vec!["http://127.0.0.1:3338".to_string()];
        let s = payment_request::encode(a, "sat", &mints).unwrap();
        let body = &s[5..];
        let bytes = URL_SAFE.decode(body).unwrap();
        assert_eq!(body, URL_SAFE.encode(&bytes), "canonical padded base64url");
        let unpadded = format!("creqA{}", body.trim_end_matches('='));
        for s in [s.clone(), unpadded] {
            let pr = PaymentRequest::from_str(&s).unwrap();
            assert_eq!(pr.amount, Some(Amount::from(a)));
        }
    }
}

#[test]
fn mint_urls_normalise_as_cdk_does() {
    let table = [
        "http://127.0.0.1:3338",
        "http://127.0.0.1:3338/",
        "http://127.0.0.1:3338////",
        "HTTP://LOCALHOST:3338",
        "Http://LocalHost:3338/",
        "https://Mint.Example.COM/",
        "https://mint.example.com/Cashu/API/",
        "https://mint.example.com/Cashu/API",
        "https://mint.example.com/a//b",
        "https://mint.example.com//a",
        "https://mint.example.com/a/b/c/d/",
        "http://[::1]:3338",
        "http://[::FFFF:7F00:1]:3338/",
        "https://User:Pass@Host.Example/",
        "https://MÏNT.example/",
        "https://mÏnt.example/PÄTH",
        "https://xn--mnt-ela.example",
        "https://mint.example.com/path%20x",
        "https://mint.example.com/%7Euser",
        "HtTpS://a",
        "https://\u{212A}elvin.example",
        "https://\u{130}.example",
        "https://\u{17F}.example",
        "http://a:80",
        "http://A.B.C.D.E/F/G/H/",
        "http://localhost:3338/v1",
        "https://mint.example.com/a/./b/../c",
        "https://mint.example.com:443",
        "http://x",
        "https://a.b/c;d=e",
        "https://a.b/c:d@e",
    ];
    let mut compared = 0;
    for input in table {
        let ours = mint_url::normalize(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let theirs = MintUrl::from_str(input).unwrap().to_string();
        assert_eq!(ours, theirs, "{input}");
        // Normalising twice changes nothing, for both.
        assert_eq!(mint_url::normalize(&ours).unwrap(), ours);
        assert_eq!(MintUrl::from_str(&theirs).unwrap().to_string(), theirs);
        compared += 1;
    }
    assert_eq!(compared, table.len());

    // What core refuses on purpose (cdk would accept most of these, reading
    // them in ways no mint can be reached at, or differently from a URL
    // parser): refusing is the safe side.
    for input in [
        "",
        "/",
        "mint.example.com",
        "ftp://mint.example.com",
        "https:///path",
        "https://",
        "https://a b",
        " https://a",
        "https://a\t",
        "https://a/?x=1",
        "https://a/#f",
        "https://a/b://c",
        "javascript://x",
    ] {
        assert!(mint_url::normalize(input).is_err(), "{input:?}");
    }
}
