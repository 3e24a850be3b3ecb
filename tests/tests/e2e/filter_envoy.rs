//! The paygress filter in a real Envoy (1.40, V8 runtime) loading the real
//! release `.wasm` (`just build`), with the committed `envoy/*.yaml`
//! templates rendered on free ports, in front of the real verifier
//! (`paygress serve`), a real cdk-mintd (fake Lightning) and an echo upstream
//! that records every request that reaches it.
//!
//! Each test starts its own processes (about 2 s of start-up each), so the
//! filter's counters (Envoy's `/stats/prometheus`) and the upstream's
//! records are exact: every test checks that only the counters it expects
//! moved, by exactly what it expects. One test replaces the verifier with a
//! stand-in that fails on purpose (500, 403, a closed connection, no
//! answer), which the real one cannot be made to do on demand.
//!
//! The filter also runs the table of checks that every ingress runs
//! (`common::check_table`), and the catalogue of path and host spellings
//! (`common::spellings`).

use std::str::FromStr;
use std::time::{Duration, Instant};

use cdk::nuts::{CurrencyUnit, TokenV3};
use paygress_core::pass::{self, Claims};
use paygress_tests::contract::leases::{self, lease_journey, LeaseExpect};
use paygress_tests::contract::spellings::check_catalogue;
use paygress_tests::contract::{check_table, get, send, Expect};
use paygress_tests::envoy::{
    assert_counters, assert_no_verification_headers, assert_paid_upstream, assert_payment_required,
    assert_refusal, assert_token_not_upstream, head_header, plugin_config, seen_in_answer,
    EnvoyProcess, FaultyVerifier, Setup, Template, ALLOWED_ON_FAILURE, CALLOUTS, CALLOUT_FAILURES,
    CHALLENGED, DEFAULT_PRICE, FREE, GRANTED, ISTIO_CLUSTER, PASS_ACCEPTED, PASS_EXPIRED,
    PASS_REFUSED, PLAIN_PRICES, PREMIUM, PREMIUM_PLUS, REJECTED, SPOOFED, VERIFIER_REFUSED,
};
use paygress_tests::fixture;
use paygress_tests::verifier::{balance_at, describe, paygress_ok, run_paygress};
use paygress_tests::{free_port, loopback_url, MintOptions, TestMint, TestWallet};

/// How long Envoy may take to refuse an invalid plugin configuration.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A free path goes straight to the upstream, answered without the verifier
/// (none runs here: a callout would be a 503), with a token the client sent
/// anyway removed, and the application's own `Authorization` kept.
#[tokio::test]
async fn free_path_reaches_the_upstream() {
    let stack = Setup::proxy_only().start().await;
    let before = stack.counters().await;

    let answer = get(&stack.url("/free/page?x=1"), &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["upstream"], "echo", "{answer:?}");
    assert_eq!(stack.upstream.count(), 1);
    let seen = stack.upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/free/page?x=1");

    // Every free prefix, whole segments, the query not part of the path.
    for path in ["/healthz", "/free", "/free?next=/premium"] {
        let answer = get(&stack.url(path), &[]).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(stack.upstream.last().path, path);
    }
    assert_eq!(stack.upstream.count(), 4);

    // A token sent on a free path does not go upstream (in X-Cashu or in a
    // Cashu Authorization); a non-Cashu Authorization does.
    let token = "cashuBo2FteBpodHRwOi8vZXhhbXBsZS5jb20vbm90LWEtbWludA";
    let answer = get(
        &stack.url("/free/with-token"),
        &[
            ("X-Cashu", token),
            ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.app.sig"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/free/with-token");
    assert_token_not_upstream(&seen, token, "free path with X-Cashu");
    assert_eq!(
        seen.one("authorization"),
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.app.sig"),
        "{seen:?}"
    );
    let answer = get(
        &stack.url("/free/with-cashu-authorization"),
        &[("Authorization", &format!("Cashu {token}"))],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_token_not_upstream(&seen, token, "free path with Authorization: Cashu");
    assert_eq!(seen.one("authorization"), None, "{seen:?}");

    assert_eq!(stack.upstream.count(), 6);
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(FREE, 6)], "free paths");
}

/// A paid path without a token: a 402 made in the proxy, per tier (longest
/// prefix, whole segments, query ignored), whose `X-Cashu` cdk parses to the
/// tier's amount, unit sat and the accepted mint, with the contract's JSON;
/// nothing reaches the upstream and the verifier is not needed (none runs).
#[tokio::test]
async fn paid_paths_get_a_402_per_tier() {
    let stack = Setup::proxy_only().start().await;
    let before = stack.counters().await;
    let cases: [(&str, u64, Option<&str>); 8] = [
        ("/premium", PREMIUM, Some("premium")),
        ("/premium/data?next=/free", PREMIUM, Some("premium")),
        ("/premium-plus", PREMIUM_PLUS, Some("premium-plus")),
        (
            "/premium-plus/report/2026",
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        ("/premiumx", DEFAULT_PRICE, None),
        ("/freebie", DEFAULT_PRICE, None),
        ("/", DEFAULT_PRICE, None),
        ("/other/thing?tier=premium", DEFAULT_PRICE, None),
    ];
    for (path, amount, tier) in cases {
        let answer = get(&stack.url(path), &[]).await;
        assert_payment_required(&answer, &stack.mint_url, amount, tier, path);
    }
    // Another method, and an application's own (non-Cashu) bearer token: no
    // Cashu token, so a 402 too.
    let answer = send("POST", &stack.url("/premium/upload"), &[], Some("data")).await;
    assert_payment_required(&answer, &stack.mint_url, PREMIUM, Some("premium"), "POST");
    let answer = get(
        &stack.url("/premium-plus/x"),
        &[("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.app.sig")],
    )
    .await;
    assert_payment_required(
        &answer,
        &stack.mint_url,
        PREMIUM_PLUS,
        Some("premium-plus"),
        "application bearer token",
    );

    assert_eq!(stack.upstream.count(), 0, "a 402 reached the upstream");
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(CHALLENGED, 10)], "402s");
}

/// Paying with `X-Cashu` (cashuB): 200; the upstream sees the verifier's
/// `X-Payment-Verified`, `X-Payment-Amount` and `X-User-ID`, and not the
/// token; the token is spent at the mint; the callout went to the
/// `paygress-verifier` cluster.
#[tokio::test]
async fn paying_with_x_cashu_reaches_the_upstream_verified() {
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let token = wallet.token(PREMIUM).await;
    let before = stack.counters().await;

    let answer = get(&stack.url("/premium/data?id=7"), &[("X-Cashu", &token)]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["upstream"], "echo", "{answer:?}");
    assert_eq!(stack.upstream.count(), 1);
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium/data?id=7");
    assert_paid_upstream(&seen, PREMIUM, Some("premium"), "X-Cashu");
    assert_token_not_upstream(&seen, &token, "X-Cashu");
    assert!(
        !wallet.is_spendable(&token).await,
        "the token was not redeemed"
    );

    let after = stack.counters().await;
    assert_counters(&before, &after, &[(CALLOUTS, 1), (GRANTED, 1)], "X-Cashu");
    assert_eq!(
        stack
            .envoy
            .stat("cluster.paygress-verifier.upstream_rq_200")
            .await,
        1
    );
}

/// Paying with `Authorization: Bearer` (the seed's form, here a cashuA
/// token): 200 on the premium-plus tier; the upstream sees the verification headers
/// and no `Authorization` at all.
#[tokio::test]
async fn paying_with_authorization_bearer_reaches_the_upstream_verified() {
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let token = wallet.token_v3(PREMIUM_PLUS).await;
    let before = stack.counters().await;

    let answer = get(
        &stack.url("/premium-plus/report"),
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(stack.upstream.count(), 1);
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium-plus/report");
    assert_paid_upstream(&seen, PREMIUM_PLUS, Some("premium-plus"), "Bearer");
    assert_token_not_upstream(&seen, &token, "Bearer");
    assert_eq!(seen.one("authorization"), None, "{seen:?}");
    assert!(
        !wallet.is_spendable(&token).await,
        "the token was not redeemed"
    );

    let after = stack.counters().await;
    assert_counters(&before, &after, &[(CALLOUTS, 1), (GRANTED, 1)], "Bearer");
}

/// Paying with `X-Cashu` while the application's own bearer token rides in
/// `Authorization`: that one reaches the upstream unchanged; a paid `POST`
/// keeps its method and body across the callout.
#[tokio::test]
async fn a_paid_request_keeps_its_own_authorization_method_and_body() {
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let token = wallet.token(PREMIUM).await;

    let answer = send(
        "POST",
        &stack.url("/premium/upload"),
        &[
            ("X-Cashu", &token),
            ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.app.sig"),
            ("Content-Type", "text/plain"),
        ],
        Some("the request body"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/premium/upload");
    assert_eq!(seen.body, "the request body");
    assert_eq!(
        seen.one("authorization"),
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.app.sig"),
        "{seen:?}"
    );
    assert_paid_upstream(&seen, PREMIUM, Some("premium"), "POST");
    assert_token_not_upstream(&seen, &token, "POST");
}

/// The same token twice: the first pays, the second (in either header) is a
/// 400 `token_already_spent` relayed from the verifier, and nothing more
/// reaches the upstream.
#[tokio::test]
async fn a_replayed_token_is_400_token_already_spent() {
    let stack = Setup::default().start().await;
    let token = stack.wallet().token(PREMIUM).await;

    let first = get(&stack.url("/premium/a"), &[("X-Cashu", &token)]).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(stack.upstream.count(), 1);

    let before = stack.counters().await;
    let replay = get(&stack.url("/premium/a"), &[("X-Cashu", &token)]).await;
    assert_refusal(&replay, 400, "token_already_spent", "replay in X-Cashu");
    let replay = get(
        &stack.url("/premium/b"),
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_refusal(&replay, 400, "token_already_spent", "replay in Bearer");
    assert_eq!(stack.upstream.count(), 1, "a replay reached the upstream");
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[(CALLOUTS, 2), (VERIFIER_REFUSED, 2)],
        "replays",
    );
}

/// The third form of the contract, `Authorization: Cashu <token>`, and a
/// token written with a leading `cashu:` pay too; neither reaches the
/// upstream.
#[tokio::test]
async fn paying_with_authorization_cashu_and_a_cashu_uri_prefix() {
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let one = wallet.token(PREMIUM).await;
    let two = wallet.token_v3(PREMIUM).await;
    let before = stack.counters().await;

    let answer = get(
        &stack.url("/premium/cashu-scheme"),
        &[("Authorization", &format!("Cashu {one}"))],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium/cashu-scheme");
    assert_paid_upstream(&seen, PREMIUM, Some("premium"), "Authorization: Cashu");
    assert_token_not_upstream(&seen, &one, "Authorization: Cashu");
    assert_eq!(seen.one("authorization"), None, "{seen:?}");

    let answer = get(
        &stack.url("/premium/uri-prefix"),
        &[("X-Cashu", &format!("cashu:{two}"))],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium/uri-prefix");
    assert_paid_upstream(&seen, PREMIUM, Some("premium"), "cashu: prefix");
    assert_token_not_upstream(&seen, &two, "cashu: prefix");

    assert!(
        !wallet.is_spendable(&one).await,
        "the token was not redeemed"
    );
    assert!(
        !wallet.is_spendable(&two).await,
        "the token was not redeemed"
    );
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[(CALLOUTS, 2), (GRANTED, 2)],
        "Cashu forms",
    );
}

/// Paid requests in flight side by side, each waiting for its own callout:
/// every one gets its own verifier answer (its path, its amount upstream),
/// and a token sent three times at once pays once.
///
/// Each fresh token is of its own mint (three accepted mints): cdk-mintd
/// 0.18.3 on SQLite stalls for 10 s and fails ("database is locked") now and
/// then when one mint gets concurrent swaps, which is the mint's problem and
/// not what this test is about.
#[tokio::test]
async fn concurrent_paid_requests_each_get_their_own_answer() {
    let stack = Setup {
        extra_mints: 2,
        ..Setup::default()
    }
    .start()
    .await;
    let wallets: Vec<&TestWallet> = std::iter::once(stack.wallet())
        .chain(stack.extra.iter().map(|(_, w)| w))
        .collect();
    // Different amounts, so that an answer given to the wrong request shows.
    let plan: [(&str, u64); 3] = [
        ("/premium/c0", PREMIUM),
        ("/premium-plus/c1", PREMIUM_PLUS),
        ("/c2", DEFAULT_PRICE + 50),
    ];
    let mut tokens = Vec::new();
    for ((_, amount), wallet) in plan.iter().zip(&wallets) {
        tokens.push(wallet.token(*amount).await);
    }
    // (path, token index): the first token three times over.
    let mut requests: Vec<(String, usize)> = plan
        .iter()
        .enumerate()
        .map(|(i, (path, _))| ((*path).to_string(), i))
        .collect();
    requests.push(("/premium/c0-again".to_string(), 0));
    requests.push(("/premium/c0-once-more".to_string(), 0));
    let before = stack.counters().await;

    let answers = futures::future::join_all(requests.iter().map(|(path, i)| {
        let url = stack.url(path);
        let token = tokens[*i].as_str();
        async move { get(&url, &[("X-Cashu", token)]).await }
    }))
    .await;

    let summary: Vec<String> = requests
        .iter()
        .zip(&answers)
        .map(|((path, _), a)| format!("{path} → {} {}", a.status, a.body))
        .collect();
    let mut paid_with_first = 0;
    for ((path, i), answer) in requests.iter().zip(&answers) {
        if *i == 0 && answer.status != 200 {
            assert_refusal(answer, 400, "token_already_spent", &format!("{summary:#?}"));
            continue;
        }
        assert_eq!(answer.status, 200, "{path}: {summary:#?}");
        paid_with_first += usize::from(*i == 0);
        let seen = seen_in_answer(answer);
        assert_eq!(&seen.path, path, "an answer went to another request");
        let (_, amount) = plan[*i];
        assert_paid_upstream(&seen, amount, None, path);
        assert_token_not_upstream(&seen, &tokens[*i], path);
    }
    assert_eq!(
        paid_with_first, 1,
        "the token sent three times paid {paid_with_first} times"
    );
    assert_eq!(stack.upstream.count(), 3);
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[(CALLOUTS, 5), (GRANTED, 3), (VERIFIER_REFUSED, 2)],
        "concurrent requests",
    );
    for (wallet, token) in wallets.iter().zip(&tokens) {
        assert!(
            !wallet.is_spendable(token).await,
            "a token was not redeemed"
        );
    }
}

/// Tokens that cannot be decoded: 400 `malformed_token` from the proxy, and
/// no callout (the verifier runs, so a callout would have been counted).
#[tokio::test]
async fn a_malformed_token_is_refused_in_the_proxy() {
    let stack = Setup::default().start().await;
    let before = stack.counters().await;
    let cases: [(&str, String); 5] = [
        ("X-Cashu", "cashuBnot-a-token".to_string()),
        ("X-Cashu", "cashuA".to_string() + "eyJ0b2tlbiI6W3siYnJva2Vu"),
        ("X-Cashu", "cashu:cashuB%%%%".to_string()),
        ("Authorization", "Bearer cashuBAAAA".to_string()),
        ("Authorization", "Cashu cashuAe30".to_string()),
    ];
    for (header, value) in &cases {
        let answer = get(&stack.url("/premium/data"), &[(header, value)]).await;
        assert_refusal(
            &answer,
            400,
            "malformed_token",
            &format!("{header}: {value}"),
        );
    }
    assert_eq!(stack.upstream.count(), 0);
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(REJECTED, 5)], "malformed tokens");
    assert_eq!(
        stack
            .envoy
            .stat("cluster.paygress-verifier.upstream_rq_total")
            .await,
        0,
        "the verifier was called"
    );
}

/// A real token from a second mint that is not accepted: 400
/// `mint_not_accepted` from the proxy, no callout, the token still the
/// payer's.
#[tokio::test]
async fn a_token_of_a_foreign_mint_is_refused_in_the_proxy() {
    let stack = Setup::default().start().await;
    let foreign = TestMint::start(MintOptions::default()).await;
    let foreign_wallet = TestWallet::new(&foreign.url()).await;
    foreign_wallet.fund(2 * PREMIUM).await;
    let token = foreign_wallet.token(PREMIUM).await;
    let token_v3 = foreign_wallet.token_v3(PREMIUM).await;
    let before = stack.counters().await;

    let answer = get(&stack.url("/premium/data"), &[("X-Cashu", &token)]).await;
    assert_refusal(&answer, 400, "mint_not_accepted", "foreign cashuB");
    let answer = get(
        &stack.url("/premium/data"),
        &[("Authorization", &format!("Bearer {token_v3}"))],
    )
    .await;
    assert_refusal(&answer, 400, "mint_not_accepted", "foreign cashuA");

    assert_eq!(stack.upstream.count(), 0);
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(REJECTED, 2)], "foreign-mint tokens");
    assert!(
        foreign_wallet.is_spendable(&token).await,
        "the foreign token was spent"
    );
    assert!(
        foreign_wallet.is_spendable(&token_v3).await,
        "the foreign token was spent"
    );
}

/// Real tokens of the accepted mint whose face value is below the price
/// (and one of the wrong unit): 400 from the proxy, no callout, nothing
/// redeemed; the same tokens then pay a cheaper tier, so they were good.
#[tokio::test]
async fn a_short_or_wrong_unit_token_is_refused_in_the_proxy() {
    let stack = Setup::default().start().await;
    let wallet = stack.wallet();
    let short = wallet.token(PREMIUM - 1).await;
    let exact = wallet.token(PREMIUM).await;
    let mut usd = TokenV3::from_str(&wallet.token_v3(PREMIUM).await)
        .unwrap_or_else(|err| panic!("cdk cannot read its own cashuA token: {err}"));
    usd.unit = Some(CurrencyUnit::Usd);
    let usd = usd.to_string();
    let before = stack.counters().await;

    let answer = get(&stack.url("/premium/data"), &[("X-Cashu", &short)]).await;
    assert_refusal(&answer, 400, "insufficient_amount", "one short of /premium");
    let answer = get(&stack.url("/premium-plus/data"), &[("X-Cashu", &exact)]).await;
    assert_refusal(
        &answer,
        400,
        "insufficient_amount",
        "/premium's price for /premium-plus",
    );
    let answer = get(&stack.url("/premium/data"), &[("X-Cashu", &usd)]).await;
    assert_refusal(&answer, 400, "unit_mismatch", "usd for sat");

    assert_eq!(stack.upstream.count(), 0);
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(REJECTED, 3)], "short tokens");
    assert!(
        wallet.is_spendable(&short).await,
        "a refused token was redeemed"
    );
    assert!(
        wallet.is_spendable(&exact).await,
        "a refused token was redeemed"
    );

    // Good tokens: the short one pays the default price, the exact one /premium.
    let answer = get(&stack.url("/elsewhere"), &[("X-Cashu", &short)]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_paid_upstream(
        &stack.upstream.last(),
        PREMIUM - 1,
        None,
        "the short token at the default price",
    );
    let answer = get(&stack.url("/premium/data"), &[("X-Cashu", &exact)]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_paid_upstream(
        &stack.upstream.last(),
        PREMIUM,
        Some("premium"),
        "the exact price",
    );
}

/// A client's own verification headers never reach the upstream: not on a
/// free path, not on a paid path (where the upstream sees the verifier's
/// values only), and they do not make a paid path free.
#[tokio::test]
async fn spoofed_verification_headers_never_reach_the_upstream() {
    let stack = Setup::default().start().await;
    let token = stack.wallet().token(PREMIUM).await;

    let answer = get(&stack.url("/free/spoof"), &SPOOFED).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/free/spoof");
    assert_no_verification_headers(&seen, "free path");

    let answer = get(&stack.url("/premium/spoof"), &SPOOFED).await;
    assert_payment_required(
        &answer,
        &stack.mint_url,
        PREMIUM,
        Some("premium"),
        "spoofed headers, no token",
    );
    assert_eq!(
        stack.upstream.count(),
        1,
        "spoofed headers went through unpaid"
    );

    let mut headers = SPOOFED.to_vec();
    headers.push(("X-Cashu", &token));
    let answer = get(&stack.url("/premium/spoof"), &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(stack.upstream.count(), 2);
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium/spoof");
    // One value each, the verifier's: a client's copy would show as a second
    // value, or as its own value.
    assert_paid_upstream(
        &seen,
        PREMIUM,
        Some("premium"),
        "paid path with spoofed headers",
    );
    assert_token_not_upstream(&seen, &token, "paid path with spoofed headers");
}

/// The verifier unreachable (its cluster points at a closed port) with
/// `failure_mode: deny`: a request with a token is a 503
/// `verifier_unavailable`, nothing goes upstream, the token stays the
/// payer's; free paths and 402s do not need the verifier.
#[tokio::test]
async fn verifier_down_with_failure_mode_deny_is_503() {
    let stack = Setup {
        verifier: false,
        ..Setup::default()
    }
    .start()
    .await;
    let token = stack.wallet().token(PREMIUM).await;
    let before = stack.counters().await;

    let answer = get(
        &stack.url("/premium/data"),
        &[("X-Cashu", &token), ("X-Payment-Verified", "true")],
    )
    .await;
    assert_refusal(&answer, 503, "verifier_unavailable", "deny");
    assert_eq!(
        stack.upstream.count(),
        0,
        "an unverified request reached the upstream"
    );
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[(CALLOUTS, 1), (CALLOUT_FAILURES, 1)],
        "verifier down, deny",
    );
    assert!(
        stack.wallet().is_spendable(&token).await,
        "the token was spent though the verifier was down"
    );

    let answer = get(&stack.url("/premium/data"), &[]).await;
    assert_payment_required(
        &answer,
        &stack.mint_url,
        PREMIUM,
        Some("premium"),
        "deny, no token",
    );
    let answer = get(&stack.url("/free/x"), &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// The verifier unreachable with `failure_mode: allow`: the request goes
/// upstream unpaid (no `X-Payment-Verified`, no token, no client copies of
/// the headers) and `paygress_allowed_on_failure_total` says so; a request
/// without a token is still a 402.
#[tokio::test]
async fn verifier_down_with_failure_mode_allow_lets_the_request_through() {
    let stack = Setup {
        verifier: false,
        failure_mode: "allow",
        ..Setup::default()
    }
    .start()
    .await;
    let token = stack.wallet().token(PREMIUM).await;
    let before = stack.counters().await;

    let mut headers = SPOOFED.to_vec();
    headers.push(("X-Cashu", &token));
    let answer = get(&stack.url("/premium/data"), &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(stack.upstream.count(), 1);
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium/data");
    assert_no_verification_headers(&seen, "allowed on failure");
    assert_token_not_upstream(&seen, &token, "allowed on failure");
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[
            (CALLOUTS, 1),
            (CALLOUT_FAILURES, 1),
            (ALLOWED_ON_FAILURE, 1),
        ],
        "verifier down, allow",
    );
    assert!(
        stack.wallet().is_spendable(&token).await,
        "the token was spent"
    );

    let answer = get(&stack.url("/premium/data"), &[]).await;
    assert_payment_required(
        &answer,
        &stack.mint_url,
        PREMIUM,
        Some("premium"),
        "allow, no token",
    );
    assert_eq!(stack.upstream.count(), 1);
}

/// A verifier that answers 500, or 403 (outside the contract), or closes
/// the connection, or does not answer within `verifier.timeout_ms`: a
/// callout failure each time, 503 `verifier_unavailable` with `deny`, and
/// nothing upstream. The stand-in also shows the callout as a verifier gets
/// it: `GET /auth` to the configured authority, with the token and the
/// original request in `X-Forwarded-*`, and the price in `X-Required-Amount`.
#[tokio::test]
async fn a_failing_or_silent_verifier_is_503_with_failure_mode_deny() {
    let faulty = FaultyVerifier::start().await;
    let stack = Setup {
        verifier: false,
        stand_in: Some(faulty.port()),
        timeout_ms: 1000,
        ..Setup::default()
    }
    .start()
    .await;
    let wallet = stack.wallet();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(wallet.token(PREMIUM).await);
    }
    let before = stack.counters().await;

    for (case, token) in ["500", "403", "close", "hang"].iter().zip(&tokens) {
        let started = Instant::now();
        let answer = get(
            &stack.url(&format!("/premium/{case}?q=1")),
            &[("X-Cashu", token)],
        )
        .await;
        let took = started.elapsed();
        assert_refusal(&answer, 503, "verifier_unavailable", case);
        assert!(
            took < Duration::from_secs(4),
            "{case}: answered after {took:?}; the callout timeout is 1 s"
        );
        if *case == "hang" {
            assert!(
                took >= Duration::from_millis(900),
                "{case}: answered after {took:?}"
            );
        }
    }
    assert_eq!(stack.upstream.count(), 0, "a request reached the upstream");
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[(CALLOUTS, 4), (CALLOUT_FAILURES, 4)],
        "failing verifier",
    );

    let heads = faulty.heads();
    let head = heads
        .iter()
        .find(|h| head_header(h, "x-forwarded-uri").is_some_and(|u| u.starts_with("/premium/500")))
        .unwrap_or_else(|| panic!("the stand-in got no callout for /premium/500: {heads:?}"));
    assert!(head.starts_with("GET /auth HTTP/1.1\r\n"), "{head}");
    assert_eq!(
        head_header(head, "host"),
        Some("paygress-verifier"),
        "{head}"
    );
    assert_eq!(
        head_header(head, "x-cashu"),
        Some(tokens[0].as_str()),
        "{head}"
    );
    let uri = head_header(head, "x-forwarded-uri").unwrap_or_default();
    assert_eq!(uri.split('?').next(), Some("/premium/500"), "{head}");
    assert_eq!(
        head_header(head, "x-forwarded-method"),
        Some("GET"),
        "{head}"
    );
    let client_host = stack.url("").trim_start_matches("http://").to_string();
    assert_eq!(
        head_header(head, "x-forwarded-host"),
        Some(client_host.as_str()),
        "{head}"
    );
    let required = PREMIUM.to_string();
    assert_eq!(
        head_header(head, "x-required-amount"),
        Some(required.as_str()),
        "{head}"
    );
}

/// Starts Envoy on `envoy/envoy.yaml` with `plugin_config` and expects it to
/// refuse to start, its log naming `key` in the filter's refusal.
async fn assert_envoy_refuses(plugin_config: &serde_json::Value, key: &str) {
    let mut envoy = EnvoyProcess::spawn(
        Template::Plain,
        free_port(),
        free_port(),
        &plugin_config.to_string(),
    );
    let status = envoy.expect_exit(REFUSAL_TIMEOUT).await;
    let log = envoy.process.log();
    assert!(
        !status.success(),
        "Envoy exited {status} on an invalid plugin config\n{log}"
    );
    let refusal = log
        .lines()
        .find(|line| line.contains("plugin configuration rejected"))
        .unwrap_or_else(|| panic!("the filter did not log its refusal:\n{log}"));
    assert!(
        refusal.contains(key),
        "the filter's refusal does not name {key}: {refusal}"
    );
}

/// An unknown key in the plugin configuration: Envoy does not start, and the
/// filter's log line names the key.
#[tokio::test]
async fn envoy_refuses_a_plugin_config_with_an_unknown_key() {
    let mint = loopback_url(free_port());
    let mut config = plugin_config(Template::Plain, &mint, "deny");
    config["price_per_request"] = serde_json::json!(10);
    assert_envoy_refuses(&config, "price_per_request").await;
}

/// A tier priced 0: Envoy does not start, and the log names the tier's key.
#[tokio::test]
async fn envoy_refuses_a_plugin_config_with_a_zero_amount() {
    let mint = loopback_url(free_port());
    let mut config = plugin_config(Template::Plain, &mint, "deny");
    config["tiers"][1]["amount"] = serde_json::json!(0);
    assert_envoy_refuses(&config, "tiers[1].amount").await;
}

/// `envoy/envoy-istio-cluster-name.yaml` with `envoy/plugin-config-istio.json`:
/// the callout goes through the cluster named as Istio names it, and a paid
/// request succeeds end to end.
#[tokio::test]
async fn the_istio_named_verifier_cluster_works_end_to_end() {
    let stack = Setup {
        template: Template::Istio,
        ..Setup::default()
    }
    .start()
    .await;
    let price = stack.config["tiers"]
        .as_array()
        .and_then(|tiers| tiers.iter().find(|t| t["id"] == "premium"))
        .and_then(|t| t["amount"].as_u64())
        .unwrap_or_else(|| panic!("no premium tier in {}", stack.config));
    let token = stack.wallet().token(price).await;
    let before = stack.counters().await;

    let answer = get(&stack.url("/premium/istio"), &[("X-Cashu", &token)]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/premium/istio");
    assert_paid_upstream(&seen, price, Some("premium"), "Istio cluster name");
    assert_token_not_upstream(&seen, &token, "Istio cluster name");
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(CALLOUTS, 1), (GRANTED, 1)], "Istio");
    assert_eq!(
        stack
            .envoy
            .stat(&format!("cluster.{ISTIO_CLUSTER}.upstream_rq_200"))
            .await,
        1,
        "the callout did not go through {ISTIO_CLUSTER}"
    );
}

/// The table every ingress runs (`common::check_table`: free path, 402s,
/// repricing headers, malformed token, pay and replay, Bearer, the
/// application's own Authorization, a paid POST, underscore aliases),
/// through the filter with the real verifier behind it.
#[tokio::test]
async fn the_filter_passes_the_table_every_ingress_passes() {
    let stack = Setup::default().start().await;
    // The filter removes every client X-Payment-* (by prefix).
    let expect = Expect {
        strips_payment_prefix: true,
        verifier_down_status: 503,
        verifier_down_json: true,
        mint_down_json: true,
    };
    check_table("envoy-filter", &stack.envoy.url(), &stack, &expect).await;
    lease_journey(
        "envoy-filter",
        &stack.envoy.url(),
        &stack,
        &LeaseExpect { pass_header: true },
    )
    .await;
}

/// A lease bought once, then used on its pass with no callout at all: the
/// filter's counters and the verifier's cluster stats move by exactly what
/// the passes account for. An expired pass is a 402 and a forged one a 400,
/// both answered in the proxy; a top-up is one callout.
#[tokio::test]
async fn a_pass_goes_through_in_the_proxy_with_no_callout() {
    let stack = Setup::default().start().await;
    let url = stack.url("/compute/job");
    let expect = LeaseExpect { pass_header: true };
    let (pass, claims) = leases::buy("envoy-filter", &url, &stack, None, &expect).await;
    let verifier_calls = || {
        stack
            .envoy
            .stat("cluster.paygress-verifier.upstream_rq_total")
    };
    let calls_before = verifier_calls().await;
    let upstream_before = stack.upstream.count();
    let before = stack.counters().await;

    const USES: u64 = 20;
    for i in 0..USES {
        let answer = get(&format!("{url}?n={i}"), &[("X-Paygress-Pass", &pass)]).await;
        assert_eq!(answer.status, 200, "use {i}: {answer:?}");
        let seen = stack.upstream.last();
        assert_eq!(seen.one("x-paygress-lease"), Some(claims.lease.as_str()));
        assert_eq!(seen.one("x-paygress-pass"), None, "{seen:?}");
    }
    get(&url, &[("X-Paygress-Pass", &pass[..pass.len() - 2])])
        .await
        .assert_refused(400, "pass_invalid");

    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[(PASS_ACCEPTED, USES), (PASS_REFUSED, 1), (REJECTED, 1)],
        "passes",
    );
    assert_eq!(
        verifier_calls().await,
        calls_before,
        "a pass made a callout"
    );
    assert_eq!(stack.upstream.count(), upstream_before + USES as usize);

    // An expired pass: the verifier is asked whether its lease runs on.
    // One that ended gets the 402; the real one, stale but with its lease
    // running, a fresh pass and no payment. One callout each.
    let key = fixture::pass_key(fixture::PASS_KEY_ID, fixture::PASS_KEY_SECRET);
    let ended = Claims {
        lease: "0000000000000000".into(),
        expires_at: leases::unix_now() - 1,
        ..claims.clone()
    };
    let before = stack.counters().await;
    let answer = get(&url, &[("X-Paygress-Pass", &pass::sign(&ended, &key))]).await;
    assert_eq!(answer.status, 402, "{answer:?}");
    let expired = Claims {
        expires_at: leases::unix_now() - 1,
        ..claims.clone()
    };
    let expired = pass::sign(&expired, &key);
    let answer = get(&url, &[("X-Paygress-Pass", &expired)]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let fresh = answer.header("x-paygress-pass").expect("a fresh pass");
    assert_eq!(
        pass::decode_unverified(fresh).map(|(_, c)| c),
        Ok(claims.clone())
    );
    let after = stack.counters().await;
    assert_counters(
        &before,
        &after,
        &[
            (PASS_EXPIRED, 2),
            (CALLOUTS, 2),
            (VERIFIER_REFUSED, 1),
            (GRANTED, 1),
        ],
        "expired passes",
    );
    let calls_before = calls_before + 2;
    assert_eq!(verifier_calls().await, calls_before);

    // Topping up the expired pass: one callout, one grant, the same lease.
    let before = stack.counters().await;
    let (_, after_top_up) =
        leases::buy("envoy-filter", &url, &stack, Some(&expired), &expect).await;
    assert_eq!(after_top_up.lease, claims.lease);
    assert_eq!(
        after_top_up.expires_at,
        claims.expires_at + fixture::COMPUTE_LEASE_SECONDS
    );
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(CALLOUTS, 1), (GRANTED, 1)], "top-up");
    assert_eq!(verifier_calls().await, calls_before + 1);
}

/// `paygress pay` through the filter: it buys a lease once, keeps the pass
/// and goes through on it the next time (no payment, no callout);
/// `paygress lease show` reads the pass offline and through GET /lease.
/// (Multi-threaded: the commands block their thread while the echo
/// upstream, in this process, answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygress_pay_keeps_its_pass_and_lease_show_reads_it() {
    let stack = Setup::default().start().await;
    let payer = tempfile::tempdir().expect("temp dir");
    let payer_dir = payer.path().join("payer").display().to_string();
    let funded = run_paygress(
        &[
            "wallet",
            "fund",
            "--data-dir",
            &payer_dir,
            "--mint",
            &stack.mint_url,
            "--amount",
            "100",
        ],
        &[],
    );
    assert!(funded.status.success(), "{}", describe(&funded));
    let balance = || {
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &payer_dir]),
            &stack.mint_url,
        )
    };
    let url = stack.url("/compute/job");

    let bought = run_paygress(&["pay", &url, "--data-dir", &payer_dir], &[]);
    assert!(bought.status.success(), "{}", describe(&bought));
    let stderr = String::from_utf8_lossy(&bought.stderr);
    assert!(
        stderr.contains("stored a new pass"),
        "{}",
        describe(&bought)
    );
    assert_eq!(balance(), 100 - fixture::COMPUTE);
    let stored =
        std::fs::read_to_string(payer.path().join("payer/passes.json")).expect("passes.json");
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("passes.json is JSON");
    let pass = stored["passes"][0]["pass"]
        .as_str()
        .unwrap_or_else(|| panic!("no pass stored: {stored}"))
        .to_string();

    let before = stack.counters().await;
    let again = run_paygress(&["pay", &url, "--data-dir", &payer_dir], &[]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("using the pass"),
        "{}",
        describe(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("HTTP 200"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        balance(),
        100 - fixture::COMPUTE,
        "the pass was paid for again"
    );
    let after = stack.counters().await;
    assert_counters(&before, &after, &[(PASS_ACCEPTED, 1)], "pay on a pass");

    let offline: serde_json::Value =
        serde_json::from_str(&paygress_ok(&["lease", "show", &pass])).expect("JSON");
    assert_eq!(offline["tier"], "compute", "{offline}");
    assert_eq!(offline["signature_checked"], false, "{offline}");
    assert_eq!(offline["expired"], false, "{offline}");
    let checked: serde_json::Value = serde_json::from_str(&paygress_ok(&[
        "lease",
        "show",
        &pass,
        "--verifier",
        &stack.verifier_url(),
    ]))
    .expect("JSON");
    assert_eq!(checked["signature_checked"], true, "{checked}");
    assert_eq!(checked["lease"], offline["lease"], "{checked}");
    let left = checked["seconds_left"].as_u64().unwrap_or_default();
    assert!(
        left > fixture::COMPUTE_LEASE_SECONDS - 60 && left <= fixture::COMPUTE_LEASE_SECONDS,
        "{checked}"
    );
    // A forged pass is refused by the verifier, with its reason.
    let forged = format!("{}AAAA", &pass[..pass.len() - 4]);
    let refused = run_paygress(
        &[
            "lease",
            "show",
            &forged,
            "--verifier",
            &stack.verifier_url(),
        ],
        &[],
    );
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("pass_invalid"),
        "{}",
        describe(&refused)
    );

    // A kept pass under a key the gateway has retired: `pay` forgets it
    // and spends nothing (the next run buys a new lease), rather than
    // failing on it until it expires.
    let (_, claims) = pass::decode_unverified(&pass).expect("the kept pass reads");
    let retired = pass::sign(
        &claims,
        &fixture::pass_key(
            fixture::RETIRED_PASS_KEY_ID,
            fixture::RETIRED_PASS_KEY_SECRET,
        ),
    );
    let store_path = payer.path().join("payer/passes.json");
    let text = std::fs::read_to_string(&store_path).expect("passes.json");
    std::fs::write(&store_path, text.replace(&pass, &retired)).expect("passes.json");
    let refused = run_paygress(&["pay", &url, "--data-dir", &payer_dir], &[]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the kept pass"),
        "{}",
        describe(&refused)
    );
    assert_eq!(balance(), 100 - fixture::COMPUTE, "paid on a refused pass");
    let text = std::fs::read_to_string(&store_path).expect("passes.json");
    assert!(
        !text.contains(&retired),
        "the retired pass is still kept: {text}"
    );
    let renewed = run_paygress(&["pay", &url, "--data-dir", &payer_dir], &[]);
    assert!(renewed.status.success(), "{}", describe(&renewed));
    assert!(
        String::from_utf8_lossy(&renewed.stderr).contains("stored a new pass"),
        "{}",
        describe(&renewed)
    );
    assert_eq!(balance(), 100 - 2 * fixture::COMPUTE);
}

/// Every spelling of the catalogue (`common::spellings`), sent byte for byte
/// without a token: the filter prices the `:path` Envoy hands it (whatever
/// normalisation the committed `envoy/envoy.yaml` asks of Envoy), and
/// answers the 402 itself.
#[tokio::test]
async fn the_filter_prices_every_spelling_at_its_highest_reading() {
    let stack = Setup::proxy_only().start().await;
    check_catalogue("envoy-filter", &stack.addr(), &stack, PLAIN_PRICES).await;
}
