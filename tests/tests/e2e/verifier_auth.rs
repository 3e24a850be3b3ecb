//! End-to-end tests of the verifier's `/auth`: the real `paygress`
//! binary in front of a real cdk-mintd, paid with tokens from cdk's wallet.
//!
//! Each test starts its own mint (about a second) and verifier, so tests run
//! in parallel without sharing state.

use std::str::FromStr;
use std::sync::Arc;

use cdk::nuts::{CurrencyUnit, PaymentRequest};
use cdk::wallet::SendOptions;
use cdk::Amount;
use paygress_core::test_util::{base64url, cashu_a};
use paygress_tests::counting_proxy::CountingProxy;
use paygress_tests::verifier::*;
use paygress_tests::{MintOptions, TestMint, TestWallet};
use serde_json::{json, Value};

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
            format!("cashuB{}", base64url(b"definitely not cbor")).into_bytes(),
        ),
        (
            "not JSON",
            format!("cashuA{}", base64url(b"{\"token\": [")).into_bytes(),
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

/// The value of one Prometheus series (`name{labels}` exactly as written),
/// or `None` when the verifier does not export it.
fn metric(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The mint's keysets, as it lists them on `/v1/keysets`.
async fn keyset_infos(wallet: &TestWallet) -> Vec<cdk::nuts::KeySetInfo> {
    wallet
        .inner()
        .mint_connector()
        .get_mint_keysets()
        .await
        .expect("the mint's keysets")
        .keysets
}

/// `token` made again (cashuB) after `change` altered its first proof.
fn forge(
    token: &str,
    keysets: &[cdk::nuts::KeySetInfo],
    change: impl FnOnce(&mut cdk::nuts::Proof),
) -> String {
    let parsed = cdk::nuts::Token::from_str(token).expect("a cdk token");
    let mut proofs = parsed.proofs(keysets).expect("the token's proofs");
    change(proofs.first_mut().expect("a proof"));
    cdk::nuts::Token::new(
        parsed.mint_url().expect("one mint"),
        proofs,
        None,
        parsed.unit().unwrap_or(CurrencyUnit::Sat),
    )
    .to_string()
}

/// The generator G: a valid curve point that is no signature of any mint.
const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

#[tokio::test]
async fn a_proof_whose_dleq_does_not_verify_is_refused_before_any_swap() {
    let mint = mint().await;
    // Everything the verifier (and the payer) asks the mint passes a proxy
    // that counts the swaps.
    let proxy = CountingProxy::start(&mint.url());
    let url = proxy.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(500).await;
    let v = Verifier::start(&config(&url)).await;

    let token = payer.token(PREMIUM).await;
    let keysets = keyset_infos(&payer).await;
    let proofs = cdk::nuts::Token::from_str(&token)
        .expect("token")
        .proofs(&keysets)
        .expect("proofs");
    assert!(
        proofs.iter().all(|p| p.dleq.is_some()),
        "cdk sent a token without NUT-12 DLEQ proofs: the test has nothing to forge"
    );
    let g = cdk::nuts::PublicKey::from_hex(G).expect("G");
    let forgeries = [
        (
            "C replaced by another curve point, its DLEQ kept",
            forge(&token, &keysets, |p| p.c = g),
        ),
        (
            "the DLEQ's s replaced",
            forge(&token, &keysets, |p| {
                if let Some(dleq) = p.dleq.as_mut() {
                    dleq.s = cdk::nuts::SecretKey::generate();
                }
            }),
        ),
        (
            "the DLEQ's e replaced",
            forge(&token, &keysets, |p| {
                if let Some(dleq) = p.dleq.as_mut() {
                    dleq.e = cdk::nuts::SecretKey::generate();
                }
            }),
        ),
    ];

    let swaps = proxy.count("POST /v1/swap");
    for (name, forged) in &forgeries {
        assert_ne!(forged, &token);
        let a = pay(&v.auth("/premium"), forged).await;
        eprintln!("{name}: {} {}", a.status, a.body);
        a.assert_refused(400, "token_invalid");
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap_or_default()
                .contains("DLEQ"),
            "{name}: {a:?}"
        );
    }
    // Not one swap reached the mint, nothing was refused there, nothing
    // waits in the verifier's wallet, and the payer's token is untouched.
    assert_eq!(
        proxy.count("POST /v1/swap"),
        swaps,
        "a forged token was sent to the mint: {:?}",
        proxy.requests()
    );
    assert_eq!(proxy.unreadable(), 0);
    let metrics = v.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            &format!("paygress_mint_errors_total{{mint=\"{url}\",kind=\"refused\"}}")
        ),
        None,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "paygress_payments_total{outcome=\"token_invalid\"}"
        ),
        Some(3),
        "{metrics}"
    );
    let balance = wallet_balance(&v);
    assert_eq!(
        (balance_at(&balance, &url), pending_at(&balance, &url)),
        (0, 0),
        "{balance}"
    );
    assert!(payer.is_spendable(&token).await);

    // A forged proof that carries no DLEQ can only be judged by the mint:
    // it goes to the swap, and the mint refuses it.
    let bare = forge(&token, &keysets, |p| {
        p.c = g;
        p.dleq = None;
    });
    let a = pay(&v.auth("/premium"), &bare).await;
    a.assert_refused(400, "token_invalid");
    assert_eq!(proxy.count("POST /v1/swap"), swaps + 1);
    let metrics = v.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            &format!("paygress_mint_errors_total{{mint=\"{url}\",kind=\"refused\"}}")
        ),
        Some(1),
        "{metrics}"
    );

    // The genuine token, sharing the forgeries' secrets, still pays, once.
    assert_eq!(
        pay(&v.auth("/premium"), &token).await.assert_paid(),
        PREMIUM
    );
    assert_eq!(proxy.count("POST /v1/swap"), swaps + 2);
    let balance = wallet_balance(&v);
    assert_eq!(
        (balance_at(&balance, &url), pending_at(&balance, &url)),
        (PREMIUM, 0),
        "{balance}"
    );
}

/// Sets an existing keyset's `input_fee_ppk` in a stopped cdk-mintd's
/// SQLite database (python3's sqlite3, as the project's scripts use python3).
fn set_keyset_fee_in_place(database: &std::path::Path, keyset_id: &str, input_fee_ppk: u64) {
    let script = "import sqlite3, sys\n\
                  db = sqlite3.connect(sys.argv[1])\n\
                  n = db.execute('UPDATE keyset SET input_fee_ppk = ? WHERE id = ?',\n\
                  \x20   (int(sys.argv[3]), sys.argv[2])).rowcount\n\
                  db.commit()\n\
                  print(n)\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(database)
        .arg(keyset_id)
        .arg(input_fee_ppk.to_string())
        .output()
        .unwrap_or_else(|err| panic!("cannot run python3 (install python3): {err}"));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "keyset {keyset_id} not found: {}",
        describe(&out)
    );
}

#[tokio::test]
async fn a_swap_worth_less_than_the_price_is_refunded() {
    let mut mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(500).await;
    // The wallet the refund goes to: empty, and knowing the mint's keys
    // from before the change (see below).
    let receiver = TestWallet::new(&url).await;
    receiver
        .inner()
        .fetch_mint_info()
        .await
        .expect("receiver: mint info");
    // No periodic keyset refresh during the test: the verifier keeps the
    // fee table it loads at start.
    let v = Verifier::start_with_env(
        &config(&url),
        &[("PAYGRESS_RECOVERY_INTERVAL_SECS", "86400")],
    )
    .await;
    let token = payer.token(PREMIUM).await;
    let second = payer.token(PREMIUM).await;
    let before = keyset_infos(&payer).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let (k1, proofs) = {
        let k = &before[0];
        assert!(k.active && k.input_fee_ppk == 0, "{k:?}");
        let proofs = cdk::nuts::Token::from_str(&token)
            .expect("token")
            .proofs(&before)
            .expect("proofs");
        (k.id, proofs)
    };
    assert!(proofs.iter().all(|p| p.keyset_id == k1));

    // The fee of the keyset the token is in goes from 0 to 1000 ppk. A
    // configured fee change cannot do that: cdk-mintd 0.18 rotates to a new
    // keyset with the new fee and keeps the old keyset's fee. So the mint is
    // stopped, the keyset's fee changed in its database, and the mint
    // started again (same port, keys and records): it now lists that keyset
    // inactive with fee 1000 and a new active keyset with the configured 0.
    mint.stop();
    set_keyset_fee_in_place(
        &mint.work_dir().join("cdk-mintd.sqlite"),
        &k1.to_string(),
        1000,
    );
    mint.restart().await;
    let after = keyset_infos(&payer).await;
    let old = after.iter().find(|k| k.id == k1).expect("the old keyset");
    assert!(!old.active && old.input_fee_ppk == 1000, "{after:?}");
    assert!(
        after.iter().any(|k| k.active && k.input_fee_ppk == 0),
        "{after:?}"
    );

    // The verifier still holds fee 0 for the token's keyset: the token
    // passes its checks, the swap takes the mint's fee (1 sat per proof at
    // 1000 ppk), and what arrives is less than the price. The client gets
    // it back as a refund token, and nothing is granted.
    let fee = proofs.len() as u64;
    let received = PREMIUM - fee;
    let a = pay(&v.auth("/premium"), &token).await;
    a.assert_refused(400, "insufficient_amount");
    assert_eq!(a.header("x-payment-verified"), None);
    let body = a.json();
    let refund = body["refund"]
        .as_str()
        .unwrap_or_else(|| panic!("no refund in the body: {a:?}"))
        .to_string();
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("gave {received} after its fees")),
        "{a:?}"
    );
    assert!(
        !payer.is_spendable(&token).await,
        "the token was not swapped"
    );
    // The refund is a token of this mint worth what was received less the
    // mint's fee for making it: the verifier's proofs are in the new
    // keyset, which charges nothing, so nothing.
    let decoded = cdk::nuts::Token::from_str(&refund).expect("the refund is a Cashu token");
    assert_eq!(decoded.mint_url().expect("one mint").to_string(), url);
    assert_eq!(decoded.unit(), Some(CurrencyUnit::Sat));
    assert_eq!(
        u64::from(decoded.value().expect("refund value")),
        received,
        "{refund}"
    );
    // The verifier kept nothing: what it received is the refund's, held as
    // pending (a send not settled) until the mint says it is spent.
    let balance = wallet_balance(&v);
    assert_eq!(
        (balance_at(&balance, &url), pending_at(&balance, &url)),
        (0, received),
        "{balance}"
    );
    let metrics = v.metrics().await;
    assert_eq!(
        metric(&metrics, "paygress_refunds_total"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "paygress_payments_total{outcome=\"insufficient_amount\"}"
        ),
        Some(1),
        "{metrics}"
    );

    // The same token again: refused (its keyset's fee is known now), and
    // no second refund.
    let a = pay(&v.auth("/premium"), &token).await;
    a.assert_refused(400, "insufficient_amount");
    assert!(a.json().get("refund").is_none(), "{a:?}");
    assert_eq!(
        metric(&v.metrics().await, "paygress_refunds_total"),
        Some(1)
    );

    // Making the refund reloaded the verifier's fee table: another token of
    // the old keyset is now refused before any swap, and stays the payer's.
    let a = pay(&v.auth("/premium"), &second).await;
    a.assert_refused(400, "insufficient_amount");
    assert!(a.json().get("refund").is_none(), "{a:?}");
    assert!(
        payer.is_spendable(&second).await,
        "a refused token was swapped"
    );

    // The payer redeems the refund. (A wallet that had never seen the mint
    // would not get this far: the old keyset's v2 id commits to its old fee,
    // so the listing no longer verifies for a wallet fetching its keys
    // anew. That is the database edit's doing, not the verifier's.)
    receiver
        .inner()
        .fetch_mint_info()
        .await
        .expect("receiver: the mint's new keyset");
    assert_eq!(receiver.receive(&refund).await, Amount::from(received));
    assert!(
        matches!(
            receiver.try_receive(&refund).await,
            Err(cdk::Error::TokenAlreadySpent)
        ),
        "a refund pays once"
    );
}

/// A token of `mint_url`'s in sat naming a keyset the mint never had.
fn unknown_keyset_token(mint_url: &str) -> String {
    let id = format!("00{:014x}", rand::random::<u64>() >> 8);
    let secret = format!("{:064x}", rand::random::<u128>());
    cashu_a(&json!({
        "token": [{"mint": mint_url, "proofs": [
            {"amount": PREMIUM, "id": id, "secret": secret, "C": G}
        ]}],
        "unit": "sat"
    }))
}

/// Sends `n` different unknown-keyset tokens at once; returns the answers,
/// how many keyset requests reached the mint meanwhile, and the time the
/// flood took.
async fn flood_unknown_keysets(
    v: &Arc<Verifier>,
    proxy: &CountingProxy,
    mint_url: &str,
    n: usize,
) -> (Vec<Answer>, usize, std::time::Duration) {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let before = proxy.count(KEYSETS);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let v = v.clone();
        let token = unknown_keyset_token(mint_url);
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
    (answers, proxy.count(KEYSETS) - before, started.elapsed())
}

const KEYSETS: &str = "GET /v1/keysets";
/// The verifier's interval between keyset refreshes caused by unknown
/// keysets (`KEYSET_REFRESH_MIN_INTERVAL` in verifier/src/wallet.rs).
const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The most keyset refreshes the rate limit allows in a flood that took
/// `took`, `since_last` after the last one: one per interval begun.
fn refreshes_allowed(since_last: std::time::Duration, took: std::time::Duration) -> usize {
    let until_due = REFRESH_INTERVAL.saturating_sub(since_last);
    if took < until_due {
        0
    } else {
        1 + ((took - until_due).as_millis() / REFRESH_INTERVAL.as_millis()) as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_keysets_cost_the_mint_one_keysets_request_per_interval() {
    let mint = mint().await;
    let proxy = CountingProxy::start(&mint.url());
    let url = proxy.url();
    let v = Arc::new(
        Verifier::start_with_env(
            &config(&url),
            &[("PAYGRESS_RECOVERY_INTERVAL_SECS", "86400")],
        )
        .await,
    );
    assert!(proxy.count(KEYSETS) >= 1, "{:?}", proxy.requests());
    let flood = 64;

    // Right after the verifier's initial load: tokens naming keysets nobody
    // knows are refused, and the mint is not asked again.
    let loaded = proxy.last(KEYSETS).expect("the initial load");
    let since_load = loaded.elapsed();
    let (answers, fetched, took) = flood_unknown_keysets(&v, &proxy, &url, flood).await;
    for a in &answers {
        a.assert_refused(400, "token_invalid");
    }
    assert!(
        fetched <= refreshes_allowed(since_load, took),
        "{fetched} keyset requests in a flood of {took:?}, {since_load:?} after the last"
    );

    // Once the interval is over, a flood makes exactly one refresh: the mint
    // is slow to list its keysets, so the flood's requests wait for that one
    // refresh together instead of asking again.
    proxy.hold(KEYSETS, std::time::Duration::from_millis(500));
    let mut refreshed = false;
    for _ in 0..3 {
        let last = proxy.last(KEYSETS).expect("a keyset request");
        // The verifier counts the interval from the end of its last load,
        // a little after the request the proxy saw.
        let due = last + REFRESH_INTERVAL + std::time::Duration::from_secs(2);
        tokio::time::sleep(due.saturating_duration_since(std::time::Instant::now())).await;
        let since_last = last.elapsed();
        let (answers, fetched, took) = flood_unknown_keysets(&v, &proxy, &url, flood).await;
        for a in &answers {
            a.assert_refused(400, "token_invalid");
        }
        assert!(
            fetched <= refreshes_allowed(since_last, took),
            "{fetched} keyset requests in a flood of {took:?}, {since_last:?} after the last"
        );
        if fetched >= 1 {
            refreshed = true;
            // ... and straight after it, another flood asks nothing.
            let last = proxy.last(KEYSETS).expect("the refresh");
            let since_last = last.elapsed();
            let (answers, fetched, took) = flood_unknown_keysets(&v, &proxy, &url, flood).await;
            for a in &answers {
                a.assert_refused(400, "token_invalid");
            }
            assert!(
                fetched <= refreshes_allowed(since_last, took),
                "{fetched} keyset requests in a flood of {took:?}, {since_last:?} after the last"
            );
            break;
        }
    }
    assert!(
        refreshed,
        "no flood after the interval refreshed the keysets: {:?}",
        proxy.requests()
    );
    // None of it reached a swap, and the verifier still takes real money.
    assert_eq!(proxy.count("POST /v1/swap"), 0, "{:?}", proxy.requests());
    assert_eq!(proxy.unreadable(), 0);
    let payer = TestWallet::new(&url).await;
    payer.fund(100).await;
    let token = payer.token(PREMIUM).await;
    assert_eq!(
        pay(&v.auth("/premium"), &token).await.assert_paid(),
        PREMIUM
    );
}
