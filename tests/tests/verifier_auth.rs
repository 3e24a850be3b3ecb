//! End-to-end tests of the verifier's `/auth` (issue 3): the real `paygress`
//! binary in front of a real cdk-mintd, paid with tokens from cdk's wallet.
//!
//! Each test starts its own mint (about a second) and verifier, so tests run
//! in parallel without sharing state.

mod verifier_support;

use std::str::FromStr;
use std::sync::Arc;

use cdk::nuts::{CurrencyUnit, PaymentRequest};
use cdk::wallet::SendOptions;
use cdk::Amount;
use paygress_tests::{MintOptions, TestMint, TestWallet};
use serde_json::{json, Value};
use verifier_support::*;

/// base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A cashuA token from its JSON.
fn cashu_a(value: &Value) -> String {
    format!("cashuA{}", b64url(value.to_string().as_bytes()))
}

/// One way of telling the verifier the original request: a name, the /auth
/// URL, the headers, and the price and tier it must come out at.
type InputCase<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a [u8])>,
    u64,
    Option<&'a str>,
);

/// Asserts a 402 for `amount` (with its tier) whose `X-Cashu` cdk parses.
fn assert_payment_required(a: &Answer, mint_url: &str, amount: u64, tier: Option<&str>) {
    assert_eq!(a.status, 402, "{a:?}");
    let creq = a
        .header("x-cashu")
        .unwrap_or_else(|| panic!("no X-Cashu: {a:?}"));
    assert!(creq.starts_with("creqA"), "{creq}");
    let request = PaymentRequest::from_str(creq).unwrap_or_else(|e| panic!("{creq}: {e}"));
    assert_eq!(request.amount, Some(Amount::from(amount)));
    assert_eq!(request.unit, Some(CurrencyUnit::Sat));
    let mints: Vec<String> = request.mints.iter().map(|m| m.to_string()).collect();
    assert_eq!(mints, vec![mint_url.to_string()]);
    let body = a.json();
    assert_eq!(body["error"], "Payment Required");
    assert_eq!(body["amount"], amount);
    assert_eq!(body["unit"], "sat");
    assert_eq!(body["mints"], json!([mint_url]));
    match tier {
        Some(t) => assert_eq!(body["tier"], t, "{a:?}"),
        None => assert!(body.get("tier").is_none(), "{a:?}"),
    }
}

#[tokio::test]
async fn every_auth_input_style_is_priced_and_paid() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(2000).await;
    let v = Verifier::start(&config(&url)).await;

    // The original request, in every style, priced by the verifier's tiers.
    let cases: Vec<InputCase> = vec![
        (
            "path suffix",
            v.auth("/premium/page?x=1"),
            vec![],
            PREMIUM,
            Some("premium"),
        ),
        (
            "path suffix, longest prefix",
            v.auth("/premium-plus/a"),
            vec![],
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        (
            "path suffix, default price",
            v.auth("/other"),
            vec![],
            DEFAULT_PRICE,
            None,
        ),
        (
            "X-Original-URL",
            v.auth(""),
            vec![
                ("x-original-url", b"https://app.example/premium/x?y=1"),
                ("x-original-method", b"POST"),
            ],
            PREMIUM,
            Some("premium"),
        ),
        (
            "X-Original-URL, a spelling that is not cheaper",
            v.auth(""),
            vec![("x-original-url", b"/free/%2e%2e/premium-plus")],
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        (
            "X-Forwarded-Uri",
            v.auth(""),
            vec![
                ("x-forwarded-uri", b"/premium-plus/y"),
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-host", b"app.example"),
            ],
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        (
            "no original request: /",
            v.auth(""),
            vec![],
            DEFAULT_PRICE,
            None,
        ),
        (
            "the path suffix wins over headers",
            v.auth("/premium"),
            vec![("x-original-url", b"/free")],
            PREMIUM,
            Some("premium"),
        ),
        (
            "X-Required-Amount raises",
            v.auth("/premium"),
            vec![("x-required-amount", b"500")],
            500,
            None,
        ),
        (
            "X-Required-Amount never lowers",
            v.auth("/premium-plus"),
            vec![("x-required-amount", b"1")],
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        (
            "X-Required-Amount on a free path",
            v.auth("/free/x"),
            vec![("x-required-amount", b"7")],
            7,
            None,
        ),
    ];
    for (name, target, headers, amount, tier) in &cases {
        let a = get(target, headers).await;
        eprintln!("{name}: {} {}", a.status, a.body);
        assert_payment_required(&a, &url, *amount, *tier);
    }

    // Free paths go through unpaid, in every style.
    for (target, headers) in [
        (v.auth("/free"), vec![]),
        (v.auth("/free/deep/x"), vec![]),
        (v.auth(""), vec![("x-original-url", b"/free/x".as_slice())]),
        (v.auth(""), vec![("x-forwarded-uri", b"/free".as_slice())]),
    ] {
        let a = get(&target, &headers).await;
        assert_eq!(a.status, 200, "{target}: {a:?}");
        assert_eq!(a.header("x-payment-verified"), None);
    }

    // Paying, in every input style and with every token header.
    let t1 = payer.token(PREMIUM).await;
    let a = pay(&v.auth("/premium/a"), &t1).await;
    assert_eq!(a.assert_paid(), PREMIUM);
    assert_eq!(a.header("x-payment-tier"), Some("premium"));
    let user_1 = a.header("x-user-id").unwrap_or_default().to_string();

    let t2 = payer.token(PREMIUM).await;
    let bearer = format!("Bearer {t2}");
    let a = get(
        &v.auth(""),
        &[
            ("x-original-url", b"/premium"),
            ("x-original-method", b"GET"),
            ("authorization", bearer.as_bytes()),
        ],
    )
    .await;
    assert_eq!(a.assert_paid(), PREMIUM);
    assert_ne!(
        a.header("x-user-id"),
        Some(user_1.as_str()),
        "one payer id per token"
    );

    let t3 = payer.token_v3(PREMIUM_PLUS).await;
    let cashu_auth = format!("Cashu {t3}");
    let a = get(
        &v.auth(""),
        &[
            ("x-forwarded-uri", b"/premium-plus"),
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-host", b"app.example"),
            ("authorization", cashu_auth.as_bytes()),
        ],
    )
    .await;
    assert_eq!(a.assert_paid(), PREMIUM_PLUS);
    assert_eq!(a.header("x-payment-tier"), Some("premium-plus"));

    // The default price (no tier header), a `cashu:` URI and surrounding space.
    let t4 = payer.token(DEFAULT_PRICE).await;
    let a = pay(&v.auth("/anything"), &format!("  cashu:{t4} ")).await;
    assert_eq!(a.assert_paid(), DEFAULT_PRICE);
    assert_eq!(a.header("x-payment-tier"), None);

    // A bearer credential that is not Cashu is the application's: 402.
    let a = get(
        &v.auth("/premium"),
        &[("authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")],
    )
    .await;
    assert_payment_required(&a, &url, PREMIUM, Some("premium"));

    let metrics = v.metrics().await;
    assert!(
        metrics.contains("paygress_payments_total{outcome=\"paid\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "paygress_received_amount_total{{tier=\"premium\",mint=\"{url}\",unit=\"sat\"}} {}",
            2 * PREMIUM
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("paygress_redemption_duration_seconds_count 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn exact_over_and_under_payment() {
    let mint = mint().await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(1000).await;
    let v = Verifier::start(&config(&mint.url())).await;

    let exact = payer.token(PREMIUM).await;
    assert_eq!(
        pay(&v.auth("/premium"), &exact).await.assert_paid(),
        PREMIUM
    );

    // Overpaying is accepted; the whole amount is received.
    let over = payer.token(PREMIUM + 36).await;
    assert_eq!(
        pay(&v.auth("/premium"), &over).await.assert_paid(),
        PREMIUM + 36
    );

    // Underpaying is refused before any swap: the token stays the payer's.
    let under = payer.token(PREMIUM - 1).await;
    let a = pay(&v.auth("/premium"), &under).await;
    a.assert_refused(400, "insufficient_amount");
    assert!(
        payer.is_spendable(&under).await,
        "an underpayment was swapped"
    );
    // ... and it still pays a cheaper path.
    let cheap = json!({"unit":"sat","mints":[mint.url()],"default_amount": PREMIUM - 1});
    let v2 = Verifier::start(&cheap).await;
    assert_eq!(pay(&v2.auth("/x"), &under).await.assert_paid(), PREMIUM - 1);
}

#[tokio::test]
async fn input_fees_are_paid_by_the_token_not_the_seller() {
    let mint = TestMint::start(MintOptions::with_input_fee_ppk(1000)).await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(1000).await;
    let v = Verifier::start(&config(&mint.url())).await;

    // Face value = price: net of the mint's input fee it is short. Refused
    // before any swap, and still spendable.
    let face = payer.token(PREMIUM).await;
    let fee = u64::from(payer.redeem_fee(&face).await);
    assert!(fee > 0, "the mint charges no input fee");
    let a = pay(&v.auth("/premium"), &face).await;
    a.assert_refused(400, "insufficient_amount");
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("fee"),
        "{a:?}"
    );
    assert!(
        payer.is_spendable(&face).await,
        "a refused token was swapped"
    );

    // A token that carries the fee pays; X-Payment-Amount is what was
    // received, net of the fee.
    let prepared = payer
        .inner()
        .prepare_send(
            Amount::from(PREMIUM),
            SendOptions {
                include_fee: true,
                ..SendOptions::default()
            },
        )
        .await
        .expect("prepare send with fee");
    let with_fee = prepared
        .confirm(None)
        .await
        .expect("confirm send")
        .to_string();
    let fee = u64::from(payer.redeem_fee(&with_fee).await);
    let face_value: u64 = {
        let t = cdk::nuts::Token::from_str(&with_fee).expect("token");
        u64::from(t.value().expect("value"))
    };
    let a = pay(&v.auth("/premium"), &with_fee).await;
    let received = a.assert_paid();
    assert_eq!(received, face_value - fee);
    assert!(received >= PREMIUM);
    assert!(!payer.is_spendable(&with_fee).await);
}

#[tokio::test]
async fn a_token_pays_once() {
    let mint = mint().await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(500).await;
    let v = Verifier::start(&config(&mint.url())).await;

    let token = payer.token(PREMIUM).await;
    pay(&v.auth("/premium"), &token).await.assert_paid();
    // Replayed here (in cashuA too), and at another replica that shares no
    // state with this one: the mint says spent.
    pay(&v.auth("/premium"), &token)
        .await
        .assert_refused(400, "token_already_spent");
    let v2 = Verifier::start(&config(&mint.url())).await;
    pay(&v2.auth("/premium"), &token)
        .await
        .assert_refused(400, "token_already_spent");
    pay(&v2.auth("/premium"), &token)
        .await
        .assert_refused(400, "token_already_spent");

    // A token spent elsewhere first is refused as spent too.
    let elsewhere = payer.token(PREMIUM).await;
    TestWallet::new(&mint.url()).await.receive(&elsewhere).await;
    pay(&v.auth("/premium"), &elsewhere)
        .await
        .assert_refused(400, "token_already_spent");

    // Refused replays leave nothing behind in the wallets: the first
    // verifier holds what it was paid, the second nothing, none pending.
    let url = mint.url();
    let first = wallet_balance(&v);
    assert_eq!(
        (balance_at(&first, &url), pending_at(&first, &url)),
        (PREMIUM, 0),
        "{first}"
    );
    let second = wallet_balance(&v2);
    assert_eq!(
        (balance_at(&second, &url), pending_at(&second, &url)),
        (0, 0),
        "{second}"
    );
}

#[tokio::test]
async fn twenty_concurrent_submissions_pay_once() {
    let mint = mint().await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(500).await;
    let v = Arc::new(Verifier::start(&config(&mint.url())).await);
    let v2 = Arc::new(Verifier::start(&config(&mint.url())).await);

    // One replica, twenty at once.
    let token = Arc::new(payer.token(PREMIUM).await);
    let answers = submit_concurrently(std::slice::from_ref(&v), &token, 20).await;
    assert_once(&answers);

    // Two replicas (separate stores), ten each: the mint's swap decides.
    let token = Arc::new(payer.token(PREMIUM).await);
    let answers = submit_concurrently(&[v.clone(), v2.clone()], &token, 20).await;
    assert_once(&answers);

    // Two payments received in all, nothing left pending.
    let url = mint.url();
    let (a, b) = (wallet_balance(&v), wallet_balance(&v2));
    assert_eq!(
        balance_at(&a, &url) + balance_at(&b, &url),
        2 * PREMIUM,
        "{a}\n{b}"
    );
    assert_eq!(pending_at(&a, &url) + pending_at(&b, &url), 0, "{a}\n{b}");
}

async fn submit_concurrently(
    verifiers: &[Arc<Verifier>],
    token: &Arc<String>,
    n: usize,
) -> Vec<Answer> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let v = verifiers[i % verifiers.len()].clone();
        let token = token.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            pay(&v.auth("/premium"), &token).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    answers
}

fn assert_once(answers: &[Answer]) {
    let paid = answers.iter().filter(|a| a.status == 200).count();
    let statuses: Vec<(u16, String)> = answers
        .iter()
        .map(|a| {
            (
                a.status,
                if a.status == 200 {
                    String::new()
                } else {
                    a.code()
                },
            )
        })
        .collect();
    assert_eq!(paid, 1, "{statuses:?}");
    for a in answers.iter().filter(|a| a.status != 200) {
        a.assert_refused(400, "token_already_spent");
    }
}

#[tokio::test]
async fn a_token_of_an_untrusted_mint_is_refused_and_stays_spendable() {
    let trusted = mint().await;
    let untrusted = mint().await;
    let v = Verifier::start(&config(&trusted.url())).await;
    let stranger = TestWallet::new(&untrusted.url()).await;
    stranger.fund(500).await;

    let token = stranger.token(PREMIUM).await;
    let a = pay(&v.auth("/premium"), &token).await;
    a.assert_refused(400, "mint_not_accepted");
    assert!(
        stranger.is_spendable(&token).await,
        "a token of an untrusted mint was swapped"
    );
    // It is still good money at its own mint.
    assert_eq!(
        TestWallet::new(&untrusted.url())
            .await
            .receive(&token)
            .await,
        Amount::from(PREMIUM)
    );
}

#[tokio::test]
async fn malformed_oversized_and_hostile_tokens_are_400() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(500).await;
    let v = Verifier::start(&config(&url)).await;
    let keyset_id = {
        let keysets: Value = reqwest::get(format!("{url}/v1/keysets"))
            .await
            .expect("keysets")
            .json()
            .await
            .expect("keysets json");
        keysets["keysets"][0]["id"]
            .as_str()
            .expect("a keyset id")
            .to_string()
    };
    // A point that is on the curve but no signature of the mint (G).
    let g = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    let proof = |amount: u64, id: &str, secret: &str, c: &str| json!({"amount": amount, "id": id, "secret": secret, "C": c});
    let v3 = |mint: &str, unit: &str, proofs: Vec<Value>| {
        cashu_a(&json!({"token": [{"mint": mint, "proofs": proofs}], "unit": unit}))
    };
    let secret = |i: u64| format!("{:064x}", 0xfeed_0000_u64 + i);

    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("garbage", b"hello".to_vec()),
        ("prefix only", b"cashuB".to_vec()),
        ("bad base64", b"cashuB!!!!****".to_vec()),
        (
            "not CBOR",
            format!("cashuB{}", b64url(b"definitely not cbor")).into_bytes(),
        ),
        (
            "not JSON",
            format!("cashuA{}", b64url(b"{\"token\": [")).into_bytes(),
        ),
        ("no proofs", v3(&url, "sat", vec![]).into_bytes()),
        (
            "zero amount",
            v3(&url, "sat", vec![proof(0, &keyset_id, &secret(1), g)]).into_bytes(),
        ),
        (
            "amount overflow",
            v3(
                &url,
                "sat",
                vec![
                    proof(1 << 63, &keyset_id, &secret(2), g),
                    proof(1 << 63, &keyset_id, &secret(3), g),
                ],
            )
            .into_bytes(),
        ),
        (
            "too many proofs",
            v3(
                &url,
                "sat",
                (0..300)
                    .map(|i| proof(1, &keyset_id, &secret(100 + i), g))
                    .collect(),
            )
            .into_bytes(),
        ),
        (
            "two mints",
            cashu_a(&json!({"token": [
                {"mint": url, "proofs": [proof(64, &keyset_id, &secret(4), g)]},
                {"mint": "http://127.0.0.1:9", "proofs": [proof(64, &keyset_id, &secret(5), g)]}
            ]}))
            .into_bytes(),
        ),
        (
            "oversized (20 KB)",
            format!("cashuB{}", "A".repeat(20 * 1024)).into_bytes(),
        ),
        (
            "oversized (100 KB)",
            format!("cashuB{}", "A".repeat(100 * 1024)).into_bytes(),
        ),
        ("not ASCII", b"cashuB\xff\xfe\xfd".to_vec()),
    ];
    for (name, value) in &malformed {
        let a = get(&v.auth("/premium"), &[("x-cashu", value)]).await;
        eprintln!("{name}: {} {}", a.status, a.body);
        a.assert_refused(400, "malformed_token");
        assert!(!a.json()["error"].as_str().unwrap_or_default().is_empty());
    }
    let a = get(
        &v.auth("/premium"),
        &[("x-cashu", b"cashuBabc"), ("x-cashu", b"cashuBdef")],
    )
    .await;
    a.assert_refused(400, "malformed_token");

    // Well-formed, and refused by the rules or by the mint.
    let refused: Vec<(&str, String, &str)> = vec![
        (
            "a stranger's mint",
            v3(
                "http://127.0.0.1:9",
                "sat",
                vec![proof(64, &keyset_id, &secret(6), g)],
            ),
            "mint_not_accepted",
        ),
        (
            "another unit",
            v3(&url, "usd", vec![proof(64, &keyset_id, &secret(7), g)]),
            "unit_mismatch",
        ),
        (
            "forged signature",
            v3(&url, "sat", vec![proof(64, &keyset_id, &secret(8), g)]),
            "token_invalid",
        ),
        (
            "unknown keyset",
            v3(
                &url,
                "sat",
                vec![proof(64, "00ffffffffffffff", &secret(9), g)],
            ),
            "token_invalid",
        ),
        (
            "an amount the mint never signs",
            v3(&url, "sat", vec![proof(100, &keyset_id, &secret(10), g)]),
            "token_invalid",
        ),
        (
            "C is not a point",
            v3(&url, "sat", vec![proof(64, &keyset_id, &secret(11), "zz")]),
            "token_invalid",
        ),
        (
            "huge face value",
            v3(
                &url,
                "sat",
                vec![proof(1 << 52, &keyset_id, &secret(12), g)],
            ),
            "token_invalid",
        ),
    ];
    for (name, token, code) in &refused {
        let a = pay(&v.auth("/premium"), token).await;
        eprintln!("{name}: {} {}", a.status, a.body);
        assert_eq!(a.status, 400, "{name}: {a:?}");
        if *name == "C is not a point" {
            assert!(
                ["token_invalid", "malformed_token"].contains(&a.code().as_str()),
                "{a:?}"
            );
        } else {
            a.assert_refused(400, code);
        }
    }

    // Malformed original-request headers are refused too, never a 500.
    let a = get(&v.auth(""), &[("x-original-url", b"/premium\xff")]).await;
    a.assert_refused(400, "malformed_token");

    // After all that the verifier is healthy and takes real money.
    assert_eq!(get(&format!("{}/healthz", v.url()), &[]).await.status, 200);
    let token = payer.token(PREMIUM).await;
    pay(&v.auth("/premium"), &token).await.assert_paid();
    // Nothing secret was logged.
    let log = v.log();
    assert!(!log.contains(&token), "a token was logged");
    assert!(!log.contains(&secret(8)), "a secret was logged");
}

#[tokio::test]
async fn nginx_mode_carries_the_real_status_in_a_401() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(500).await;
    let v = Verifier::start(&config(&url)).await;

    for (target, headers) in [
        (v.auth("/premium?mode=nginx"), vec![]),
        (
            v.auth(""),
            vec![
                ("x-paygress-mode", b"nginx".as_slice()),
                ("x-original-url", b"/premium".as_slice()),
            ],
        ),
    ] {
        let a = get(&target, &headers).await;
        assert_eq!(a.status, 401, "{a:?}");
        assert_eq!(a.header("x-paygress-status"), Some("402"));
        let creq = a.header("x-cashu").expect("X-Cashu kept");
        assert_eq!(
            PaymentRequest::from_str(creq).expect("creqA").amount,
            Some(Amount::from(PREMIUM))
        );
        let body: Value = serde_json::from_str(a.header("x-paygress-body").expect("body header"))
            .expect("JSON body header");
        assert_eq!(body["amount"], PREMIUM);
    }

    let a = get(&v.auth("/premium?mode=nginx"), &[("x-cashu", b"garbage")]).await;
    assert_eq!(
        (a.status, a.header("x-paygress-status")),
        (401, Some("400"))
    );
    let body: Value =
        serde_json::from_str(a.header("x-paygress-body").expect("body")).expect("json");
    assert_eq!(body["code"], "malformed_token");

    // A grant is a plain 200.
    let token = payer.token(PREMIUM).await;
    let a = get(
        &v.auth("/premium?mode=nginx"),
        &[("x-cashu", token.as_bytes())],
    )
    .await;
    assert_eq!(a.assert_paid(), PREMIUM);
    assert_eq!(a.header("x-paygress-status"), None);
}
