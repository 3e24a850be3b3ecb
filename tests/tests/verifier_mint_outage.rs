//! The verifier when its mint is down (issue 3): a 503 `mint_unavailable`
//! that leaves the token the client's, and readiness that waits for the mint.

mod verifier_support;

use std::time::{Duration, Instant};

use paygress_tests::TestWallet;
use verifier_support::*;

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
        .env("PAYGRESS_MINT_TIMEOUT_MS", MINT_TIMEOUT_MS.to_string());
    let mut process = paygress_tests::ChildProcess::spawn("paygress-unready", command);
    let url = paygress_tests::loopback_url(port);
    process
        .wait_http_ok(&format!("{url}/healthz"), READY_TIMEOUT)
        .await;
    (url, process, dir)
}
