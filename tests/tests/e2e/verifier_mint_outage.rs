//! The verifier when its mint is down, slow or shared, and when it dies
//! mid-swap: never a lost payment, never two grants for one token.
//!
//! - A stopped mint is a 503 `mint_unavailable` that leaves the token the
//!   client's, and readiness waits for the mint.
//! - Replicas sharing one mnemonic (distinct `PAYGRESS_REPLICA_ID`s) redeem
//!   in turn and race for the same tokens; `paygress wallet restore` gets
//!   each replica's funds back from the mnemonic. Two verifiers given the
//!   same replica id by mistake lose no token: the collision is a 503 and the
//!   retry pays.
//! - Behind a proxy that holds the mint's answers back (a real mint, made
//!   slow): a swap that outlives the request's deadline is a 503, and the
//!   same token presented again is granted once; a verifier killed (SIGKILL)
//!   with twelve swaps in flight grants each of them once after its restart;
//!   beyond `PAYGRESS_MAX_REDEMPTIONS` a token is refused with a 503 before
//!   anything is swapped.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdk::nuts::nut00::ProofsMethods;
use cdk::nuts::{CheckStateRequest, State, Token};
use paygress_tests::verifier::*;
use paygress_tests::{DelayProxy, TestMint, TestWallet};
use serde_json::Value;
use tokio::sync::Barrier;

#[tokio::test]
async fn a_stopped_mint_is_503_and_the_token_stays_spendable() {
    let mut mint = mint().await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(500).await;
    let v = Verifier::start(&config(&mint.url())).await;

    let token = payer.token(PREMIUM).await;
    mint.stop();
    let started = Instant::now();
    let a = pay(&v.auth("/premium"), &token).await;
    a.assert_refused(503, "mint_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(MINT_TIMEOUT_MS) + Duration::from_secs(3),
        "the 503 took {:?}",
        started.elapsed()
    );
    // No 402, no 200 while the mint is away, however often the client asks.
    pay(&v.auth("/premium"), &token)
        .await
        .assert_refused(503, "mint_unavailable");

    mint.restart().await;
    assert!(
        payer.is_spendable(&token).await,
        "the token was consumed although the answer was 503"
    );
    // Once the mint is back, the same token pays.
    let a = pay(&v.auth("/premium"), &token).await;
    assert_eq!(a.assert_paid(), PREMIUM, "{}", v.log());
    assert!(!payer.is_spendable(&token).await);
    pay(&v.auth("/premium"), &token)
        .await
        .assert_refused(400, "token_already_spent");
    let balance = wallet_balance(&v);
    assert_eq!(
        (
            balance_at(&balance, &mint.url()),
            pending_at(&balance, &mint.url())
        ),
        (PREMIUM, 0),
        "{balance}"
    );

    let metrics = v.metrics().await;
    assert!(
        metrics.contains("paygress_payments_total{outcome=\"mint_unavailable\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paygress_mint_errors_total{mint="),
        "{metrics}"
    );
}

#[tokio::test]
async fn readiness_waits_for_the_mint() {
    let mut mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(200).await;
    mint.stop();

    // The verifier serves (healthz) before its mint answers, but is not ready.
    let v = start_unready(&config(&url)).await;
    assert_eq!(get(&format!("{}/healthz", v.0), &[]).await.status, 200);
    let ready = get(&format!("{}/readyz", v.0), &[]).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.json()["mints_waiting"][0], url.as_str());
    // A paid request without a token is still a 402 (no mint needed) ...
    assert_eq!(get(&format!("{}/auth/premium", v.0), &[]).await.status, 402);
    // ... and a token is a 503.
    let token = payer.token(PREMIUM).await;
    pay(&format!("{}/auth/premium", v.0), &token)
        .await
        .assert_refused(503, "mint_unavailable");

    mint.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if get(&format!("{}/readyz", v.0), &[]).await.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the mint came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pay(&format!("{}/auth/premium", v.0), &token)
            .await
            .assert_paid(),
        PREMIUM
    );
}

/// Starts the verifier without waiting for `/readyz` (its mint is down):
/// returns its URL and the process.
async fn start_unready(
    config: &serde_json::Value,
) -> (String, paygress_tests::ChildProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let port = paygress_tests::free_port();
    let mut command = std::process::Command::new(paygress_bin());
    command
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("PAYGRESS_MNEMONIC")
        .env("PAYGRESS_LOG", "info,paygress=debug")
        .env("PAYGRESS_MINT_TIMEOUT_MS", MINT_TIMEOUT_MS.to_string())
        .env(
            paygress_tests::fixture::PASS_KEY_ENV,
            paygress_tests::fixture::PASS_KEY_SECRET,
        );
    let mut process = paygress_tests::ChildProcess::spawn("paygress-unready", command);
    let url = paygress_tests::loopback_url(port);
    process
        .wait_http_ok(&format!("{url}/healthz"), READY_TIMEOUT)
        .await;
    (url, process, dir)
}

// ---------------------------------------------------------------------------
// Replicas sharing one mnemonic.
// ---------------------------------------------------------------------------

/// Two verifiers with one `PAYGRESS_MNEMONIC`, separate data dirs and their
/// own replica ids, in front of one mint. (Before replica ids both derived
/// the same NUT-13 outputs, and the second one's first swap was refused:
/// `400 token_invalid` for a valid token.)
#[tokio::test]
async fn replicas_sharing_a_mnemonic_redeem_in_turn_race_fairly_and_restore_their_funds() {
    const ALTERNATE: usize = 10;
    const RACED: usize = 10;
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(PREMIUM * (ALTERNATE + RACED + 2) as u64).await;
    let words = new_mnemonic();
    let replica = |id: &'static str| {
        [
            ("PAYGRESS_MNEMONIC", words.clone()),
            ("PAYGRESS_REPLICA_ID", id.to_string()),
        ]
    };
    let r1 = Arc::new(start_with(&config(&url), &replica("r1")).await);
    let r2 = Arc::new(start_with(&config(&url), &replica("r2")).await);
    let replicas = [r1.clone(), r2.clone()];

    // In turn: every token pays, whichever replica it reaches.
    for i in 0..ALTERNATE {
        let v = &replicas[i % 2];
        let token = payer.token(PREMIUM).await;
        let answer = pay(&v.auth("/premium"), &token).await;
        assert_eq!(
            answer.status,
            200,
            "token {i} at replica r{}: {answer:?}",
            i % 2 + 1
        );
        assert_eq!(answer.assert_paid(), PREMIUM);
    }

    // A race: each token sent to both replicas at once pays exactly once;
    // the other replica hears from the mint that it is spent.
    let mut tokens = Vec::new();
    for _ in 0..RACED {
        tokens.push(Arc::new(payer.token(PREMIUM).await));
    }
    let barrier = Arc::new(Barrier::new(2 * RACED));
    let mut tasks = Vec::new();
    for token in &tokens {
        for v in &replicas {
            let (v, token, barrier) = (v.clone(), token.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                pay(&v.auth("/premium"), &token).await
            }));
        }
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("race task"));
    }
    let mut won = [0u64; 2];
    for (i, pair) in answers.chunks(2).enumerate() {
        let paid: Vec<usize> = (0..pair.len()).filter(|&k| pair[k].status == 200).collect();
        assert_eq!(paid.len(), 1, "raced token {i}: {pair:?}");
        let (winner, loser) = (paid[0], 1 - paid[0]);
        assert_eq!(pair[winner].assert_paid(), PREMIUM);
        pair[loser].assert_refused(400, "token_already_spent");
        won[winner] += 1;
    }

    // Every payment is in one replica's wallet, none pending.
    let balances = [wallet_balance(&r1), wallet_balance(&r2)];
    for (k, balance) in balances.iter().enumerate() {
        let expected = (ALTERNATE as u64 / 2 + won[k]) * PREMIUM;
        assert_eq!(
            (balance_at(balance, &url), pending_at(balance, &url)),
            (expected, 0),
            "replica r{}: {balance}",
            k + 1
        );
    }

    // The mnemonic and a replica id give that replica's funds back, and
    // only those.
    for (k, id) in ["r1", "r2"].into_iter().enumerate() {
        let fresh = tempfile::tempdir().expect("temp dir");
        let data = fresh.path().join("data").display().to_string();
        let out = run_paygress(
            &[
                "wallet",
                "restore",
                "--data-dir",
                &data,
                "--mint",
                &url,
                "--replica-id",
                id,
            ],
            &[("PAYGRESS_MNEMONIC", &words)],
        );
        assert!(out.status.success(), "restore {id}: {}", describe(&out));
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
        assert_eq!(report["replica"], id, "{report}");
        assert_eq!(
            report["unspent"].as_u64(),
            Some(balance_at(&balances[k], &url)),
            "restore {id}: {report}\noriginal: {}",
            balances[k]
        );
        let restored = paygress_ok(&["wallet", "balance", "--data-dir", &data]);
        assert_eq!(
            json(&restored),
            json(&balances[k]),
            "replica {id}: restored balance\n{restored}\noriginal\n{}",
            balances[k]
        );
    }
}

/// Two verifiers given the same mnemonic AND the same replica id (a
/// mistake): the second one's first swap asks the mint to sign outputs it
/// signed for the first one. The mint refuses it before spending anything;
/// the verifier answers 503 (`verifier_unavailable`, `Retry-After`), skips
/// its NUT-13 counter ahead, and the same token pays on the retry.
#[tokio::test]
async fn a_replica_id_shared_by_mistake_is_a_503_and_the_token_pays_on_retry() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(PREMIUM * 6).await;
    let words = new_mnemonic();
    let same = [
        ("PAYGRESS_MNEMONIC", words.clone()),
        ("PAYGRESS_REPLICA_ID", "twin".to_string()),
    ];
    let first = start_with(&config(&url), &same).await;
    let second = start_with(&config(&url), &same).await;

    let t1 = payer.token(PREMIUM).await;
    assert_eq!(
        pay(&first.auth("/premium"), &t1).await.assert_paid(),
        PREMIUM
    );

    let t2 = payer.token(PREMIUM).await;
    let collided = pay(&second.auth("/premium"), &t2).await;
    assert_eq!(
        collided.assert_retry_later(503, "verifier_unavailable"),
        1,
        "{collided:?}"
    );
    assert!(
        payer.is_spendable(&t2).await,
        "the collision took the token although the answer was 503"
    );
    assert!(
        second.log().contains("signed our outputs already"),
        "the verifier does not tell the operator why: {}",
        second.log()
    );

    // The retry pays, once.
    assert_eq!(
        pay(&second.auth("/premium"), &t2).await.assert_paid(),
        PREMIUM
    );
    assert!(!payer.is_spendable(&t2).await);
    for v in [&second, &first] {
        pay(&v.auth("/premium"), &t2)
            .await
            .assert_refused(400, "token_already_spent");
    }

    // Both go on redeeming.
    for v in [&first, &second] {
        let t = payer.token(PREMIUM).await;
        assert_eq!(pay(&v.auth("/premium"), &t).await.assert_paid(), PREMIUM);
    }
    for v in [&first, &second] {
        let balance = wallet_balance(v);
        assert_eq!(
            (balance_at(&balance, &url), pending_at(&balance, &url)),
            (2 * PREMIUM, 0),
            "{balance}"
        );
    }
}

// ---------------------------------------------------------------------------
// A slow mint (a real one behind a proxy that holds its answers back), and a
// verifier that dies mid-swap.
// ---------------------------------------------------------------------------

/// The mint swaps at once but its answer arrives after the request's
/// deadline (`X-Paygress-Deadline-Ms: 1000`, answers held 1500 ms, the
/// verifier's mint timeout 5000 ms): the client gets 503 with `Retry-After`.
/// Presented again once the mint is fast, the same token is granted exactly
/// once (the redemption ledger), or, had the swap not happened, it is still
/// the payer's. Never lost. (Before deadlines and the ledger, the verifier
/// granted the token after its caller had given up on the answer, and the
/// client's retry was `token_already_spent`: paid for, never served.)
#[tokio::test]
async fn a_swap_that_outlives_the_deadline_is_granted_once_on_the_next_presentation() {
    const TOKENS: usize = 3;
    let mint = mint().await;
    let proxy = DelayProxy::start(mint.port());
    let direct = TestWallet::new(&mint.url()).await;
    let payer = TestWallet::new(&proxy.url()).await;
    payer.fund(PREMIUM * TOKENS as u64 + 100).await;
    // Started without delay: it learns the mint's keysets through the proxy.
    let v = start_with(
        &config(&proxy.url()),
        &[("PAYGRESS_MINT_TIMEOUT_MS", "5000".to_string())],
    )
    .await;

    let mut granted = 0u64;
    let mut swapped_while_refused = 0;
    for i in 0..TOKENS {
        let token = payer.token(PREMIUM).await;
        proxy.set_response_delay(Duration::from_millis(1500));
        let first = pay_within(&v.auth("/premium"), &token, 1000).await;
        first.assert_retry_later(503, "mint_unavailable");
        if mint_states(&direct, &token)
            .await
            .iter()
            .all(|s| *s == State::Spent)
        {
            swapped_while_refused += 1;
        }
        proxy.set_response_delay(Duration::ZERO);

        let second = pay(&v.auth("/premium"), &token).await;
        if second.status == 200 {
            assert_eq!(second.assert_paid(), PREMIUM, "token {i}");
            granted += 1;
            pay(&v.auth("/premium"), &token)
                .await
                .assert_refused(400, "token_already_spent");
        } else {
            assert_still_the_payers(&proxy.url(), &token, &format!("token {i}: {second:?}")).await;
        }
    }
    // The scenario happened: the mint swapped while the client was refused.
    assert!(
        swapped_while_refused > 0,
        "no swap reached the mint before the deadline; the test proved nothing\n{}",
        v.log()
    );
    assert!(proxy.delayed() > 0);
    let balance = wallet_balance(&v);
    assert_eq!(
        (
            balance_at(&balance, &proxy.url()),
            pending_at(&balance, &proxy.url())
        ),
        (granted * PREMIUM, 0),
        "{balance}"
    );
}

/// Twelve tokens presented at once to a verifier whose mint is slow (its
/// answers held 60 s; `PAYGRESS_DEADLINE_MS=5000`): every client gets a 503
/// with `Retry-After`, and the mint has swapped tokens whose answers the
/// verifier never read. Presented again once the mint is fast, each token is
/// granted exactly once or is still its payer's; and the verifier's wallet
/// holds every payment it granted.
#[tokio::test]
async fn concurrent_swaps_that_outlive_their_deadline_are_granted_once_and_kept() {
    const TOKENS: usize = 12;
    let mut mint = mint().await;
    let proxy = DelayProxy::start(mint.port());
    let direct = TestWallet::new(&mint.url()).await;
    let payer = TestWallet::new(&proxy.url()).await;
    payer.fund(PREMIUM * TOKENS as u64 + 100).await;
    let v = start_with(
        &config(&proxy.url()),
        &[
            ("PAYGRESS_DEADLINE_MS", "5000".to_string()),
            ("PAYGRESS_MINT_TIMEOUT_MS", "8000".to_string()),
        ],
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..TOKENS {
        tokens.push(payer.token(PREMIUM).await);
    }

    proxy.set_response_delay(Duration::from_secs(60));
    let auth = v.auth("/premium");
    let tasks: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move { pay(&auth, &token).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let answer = task.await.expect("request task");
        assert_eq!(answer.status, 503, "token {i}: {answer:?}");
        answer.assert_retry_later(503, "mint_unavailable");
    }
    let swapped = swapped_at_mint(&direct, &tokens).await;
    proxy.set_response_delay(Duration::ZERO);
    assert!(
        swapped > 0,
        "no swap reached the mint before the deadline; the test proved nothing\n{}",
        v.log()
    );

    let mut grants = vec![0usize; TOKENS];
    settle_every_token(
        &mut mint,
        &direct,
        &proxy.url(),
        &auth,
        &tokens,
        &mut grants,
    )
    .await;
    assert_wallet_holds_the_grants(&v, &proxy.url(), &grants);
}

/// Twelve redemptions in flight when the verifier is killed with SIGKILL:
/// the mint answers each swap 2 s late, so some tokens were granted, one
/// swap is done at the mint with its answer unread, and the rest wait their
/// turn (their swaps recorded as begun in the ledger and in cdk's store).
/// Restarted on the same data dir, the verifier settles each unfinished
/// swap with the mint when its token is presented again: every token is
/// granted exactly once (before or after the kill) or is still its payer's;
/// none is lost, none is granted twice, and the wallet holds every payment
/// it granted.
#[tokio::test]
async fn a_verifier_killed_mid_swap_grants_each_token_once_after_its_restart() {
    const TOKENS: usize = 12;
    let mut mint = mint().await;
    let proxy = DelayProxy::start(mint.port());
    let direct = TestWallet::new(&mint.url()).await;
    let payer = TestWallet::new(&proxy.url()).await;
    payer.fund(PREMIUM * TOKENS as u64 + 100).await;
    let mut v = start_with(
        &config(&proxy.url()),
        &[
            ("PAYGRESS_MINT_TIMEOUT_MS", "60000".to_string()),
            ("PAYGRESS_DEADLINE_MS", "60000".to_string()),
        ],
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..TOKENS {
        tokens.push(payer.token(PREMIUM).await);
    }

    proxy.set_response_delay(Duration::from_secs(2));
    let auth = v.auth("/premium");
    let in_flight: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move { try_get(&auth, &[("x-cashu", token.as_bytes())]).await })
        })
        .collect();
    // The kill comes when the mint has swapped at least two tokens and an
    // answer is held: a swap done at the mint that the verifier has not
    // heard of, and no swap half-done at the mint.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if swapped_at_mint(&direct, &tokens).await >= 2 && proxy.held() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the swaps did not reach the mint\n{}",
            v.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = v.kill();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the verifier was not killed: {status:?}"
    );
    proxy.set_response_delay(Duration::ZERO);

    let mut grants = vec![0usize; TOKENS];
    for (i, task) in in_flight.into_iter().enumerate() {
        // Granted before the kill, or no answer (the connection died).
        if let Ok(answer) = task.await.expect("request task") {
            if answer.status == 200 {
                assert_eq!(answer.assert_paid(), PREMIUM, "token {i}");
                grants[i] += 1;
            }
        }
    }
    assert!(
        grants.iter().sum::<usize>() < TOKENS,
        "every token was granted before the kill; the test proved nothing"
    );

    v.start_again().await;
    settle_every_token(
        &mut mint,
        &direct,
        &proxy.url(),
        &auth,
        &tokens,
        &mut grants,
    )
    .await;
    assert_wallet_holds_the_grants(&v, &proxy.url(), &grants);
}

/// With `PAYGRESS_MAX_REDEMPTIONS=1` and a slow mint, of two tokens
/// presented at once one is redeemed and the other refused before any swap:
/// 503 `verifier_unavailable` with `Retry-After: 1`, the token still the
/// payer's, and it pays once a slot is free.
#[tokio::test]
async fn beyond_max_redemptions_is_503_and_the_refused_token_stays_spendable() {
    let mint = mint().await;
    let proxy = DelayProxy::start(mint.port());
    let payer = TestWallet::new(&proxy.url()).await;
    payer.fund(PREMIUM * 2 + 100).await;
    let v = Arc::new(
        start_with(
            &config(&proxy.url()),
            &[
                ("PAYGRESS_MAX_REDEMPTIONS", "1".to_string()),
                ("PAYGRESS_MINT_TIMEOUT_MS", "10000".to_string()),
                ("PAYGRESS_DEADLINE_MS", "10000".to_string()),
            ],
        )
        .await,
    );
    let tokens = [
        Arc::new(payer.token(PREMIUM).await),
        Arc::new(payer.token(PREMIUM).await),
    ];

    proxy.set_response_delay(Duration::from_secs(2));
    let barrier = Arc::new(Barrier::new(tokens.len()));
    let tasks: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (v, token, barrier) = (v.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                pay(&v.auth("/premium"), &token).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    proxy.set_response_delay(Duration::ZERO);

    let paid: Vec<usize> = (0..2).filter(|&k| answers[k].status == 200).collect();
    assert_eq!(paid.len(), 1, "{answers:?}");
    let (granted, refused) = (paid[0], 1 - paid[0]);
    assert_eq!(answers[granted].assert_paid(), PREMIUM);
    assert_eq!(
        answers[refused].assert_retry_later(503, "verifier_unavailable"),
        1
    );
    assert!(proxy.delayed() > 0, "the mint's answer was not held");
    assert!(
        payer.is_spendable(&tokens[refused]).await,
        "the refused token was swapped"
    );

    // A slot is free again: the refused token pays, each token once.
    assert_eq!(
        pay(&v.auth("/premium"), &tokens[refused])
            .await
            .assert_paid(),
        PREMIUM
    );
    for token in &tokens {
        pay(&v.auth("/premium"), token)
            .await
            .assert_refused(400, "token_already_spent");
    }
    let balance = wallet_balance(&v);
    assert_eq!(
        (
            balance_at(&balance, &proxy.url()),
            pending_at(&balance, &proxy.url())
        ),
        (2 * PREMIUM, 0),
        "{balance}"
    );
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// Starts a verifier with this environment (values owned).
async fn start_with(config: &Value, env: &[(&str, String)]) -> Verifier {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Verifier::start_with_env(config, &env).await
}

/// A fresh 12-word BIP-39 mnemonic.
fn new_mnemonic() -> String {
    let entropy: [u8; 16] = rand::random();
    bip39::Mnemonic::from_entropy(&entropy)
        .expect("mnemonic")
        .to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The mint's state of each proof of `token` (NUT-07), asked straight at the
/// mint through `direct` (a wallet of the mint's own URL), whatever URL the
/// token names: the proxy may be holding answers back.
async fn mint_states(direct: &TestWallet, token: &str) -> Vec<State> {
    let token = Token::from_str(token.trim()).expect("a Cashu token");
    let connector = direct.inner().mint_connector();
    let keysets = connector
        .get_mint_keysets()
        .await
        .expect("the mint's keysets")
        .keysets;
    let ys = token
        .proofs(&keysets)
        .expect("the token's proofs")
        .ys()
        .expect("the proofs' Ys");
    let states = connector
        .post_check_state(CheckStateRequest { ys: ys.clone() })
        .await
        .expect("NUT-07 check state")
        .states;
    ys.iter()
        .map(|y| {
            states
                .iter()
                .find(|s| s.y == *y)
                .map(|s| s.state)
                .expect("a state for every proof")
        })
        .collect()
}

/// Asserts that a token that was not granted is still its payer's: a fresh
/// wallet receives it (a swap at the mint).
async fn assert_still_the_payers(mint_url: &str, token: &str, context: &str) {
    let fresh = TestWallet::new(mint_url).await;
    match fresh.try_receive(token).await {
        Ok(amount) => assert!(amount > cdk::Amount::ZERO, "{context}"),
        Err(err) => panic!("a payment was lost: not granted, and the payer cannot receive it back ({err}); {context}"),
    }
}

/// How many of `tokens` the mint has swapped (every proof spent).
async fn swapped_at_mint(direct: &TestWallet, tokens: &[String]) -> usize {
    let mut swapped = 0;
    for token in tokens {
        if mint_states(direct, token)
            .await
            .iter()
            .all(|s| *s == State::Spent)
        {
            swapped += 1;
        }
    }
    swapped
}

/// Presents every token again, once, counting the grants in `grants`; a
/// token granted (now or before) is then refused as spent. A token not
/// granted must still be its payer's: unspent at the mint, and a fresh
/// wallet receives it. One the mint holds as pending (a swap the mint began
/// and did not finish: a client that went away mid-swap leaves one, and
/// cdk-mintd settles them when it starts) is presented again after the mint
/// restarts. Panics on a lost token or a second grant.
async fn settle_every_token(
    mint: &mut TestMint,
    direct: &TestWallet,
    token_mint: &str,
    auth: &str,
    tokens: &[String],
    grants: &mut [usize],
) {
    let mut stuck = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if grants[i] == 0 && !present_once_more(direct, token_mint, auth, token, i, grants).await {
            stuck.push(i);
        }
        if grants[i] > 0 {
            pay(auth, token)
                .await
                .assert_refused(400, "token_already_spent");
        }
    }
    if !stuck.is_empty() {
        eprintln!(
            "tokens {stuck:?} are pending at the mint (a swap it began and did not finish): \
             restarting the mint, which settles them"
        );
        mint.restart().await;
        for i in stuck {
            let settled = present_once_more(direct, token_mint, auth, &tokens[i], i, grants).await;
            assert!(
                settled,
                "token {i} is still pending at the mint after its restart"
            );
            if grants[i] > 0 {
                pay(auth, &tokens[i])
                    .await
                    .assert_refused(400, "token_already_spent");
            }
        }
    }
    assert!(
        grants.iter().all(|&g| g <= 1),
        "a token was granted twice: {grants:?}"
    );
}

/// Presents token `i` again: a grant is counted; a refusal is fine only if
/// the token is still its payer's (a fresh wallet receives it). Returns
/// false when the mint holds the token as pending (neither).
async fn present_once_more(
    direct: &TestWallet,
    token_mint: &str,
    auth: &str,
    token: &str,
    i: usize,
    grants: &mut [usize],
) -> bool {
    let answer = pay(auth, token).await;
    if answer.status == 200 {
        assert_eq!(answer.assert_paid(), PREMIUM, "token {i}");
        grants[i] += 1;
        return true;
    }
    let states = mint_states(direct, token).await;
    if states.contains(&State::Pending) {
        return false;
    }
    assert_still_the_payers(
        token_mint,
        token,
        &format!("token {i}: {answer:?}, at the mint {states:?}"),
    )
    .await;
    true
}

/// Asserts that the verifier's wallet holds what it granted (one price per
/// grant), nothing pending.
fn assert_wallet_holds_the_grants(v: &Verifier, mint_url: &str, grants: &[usize]) {
    let granted = grants.iter().sum::<usize>() as u64;
    let balance = wallet_balance(v);
    assert_eq!(
        (
            balance_at(&balance, mint_url),
            pending_at(&balance, mint_url)
        ),
        (granted * PREMIUM, 0),
        "the wallet does not hold the {granted} payments granted: {balance}\n{}",
        v.log()
    );
}
