//! The harness against the real mint: a cdk-mintd started by the test, and
//! cdk wallets paying each other through it.

use std::time::Instant;

use std::process::Command;

use cdk::Amount;
use paygress_tests::process::run_checked;
use paygress_tests::{tools, MintOptions, TestMint, TestWallet};

/// Every real component the end-to-end tests start is installed and runs
/// (`just setup` installs them; a missing one fails here, naming the fix).
#[test]
fn the_real_components_are_installed() {
    let version = |name: &str, bin: std::path::PathBuf, args: &[&str]| {
        let mut command = Command::new(bin);
        command.args(args);
        let output = run_checked(name, command);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let first = text.lines().find(|line| !line.trim().is_empty());
        eprintln!("{name}: {}", first.unwrap_or_default().trim());
        text
    };
    let mintd = version("cdk-mintd", tools::cdk_mintd(), &["--version"]);
    assert!(mintd.contains(tools::cdk_mintd_version()), "{mintd}");
    let envoy = version("envoy", tools::envoy(), &["--version"]);
    assert!(envoy.contains(tools::envoy_version()), "{envoy}");
    version("traefik", tools::traefik(), &["version"]);
    version("nginx", tools::nginx(), &["-v"]);
}

#[tokio::test]
async fn a_token_is_spendable_until_it_is_received() {
    let started = Instant::now();
    let mint = TestMint::start(MintOptions::default()).await;
    eprintln!("mint up at {} in {:?}", mint.url(), started.elapsed());

    let payer = TestWallet::new(&mint.url()).await;
    assert_eq!(payer.fund(100).await, Amount::from(100));
    assert_eq!(payer.balance().await, Amount::from(100));

    let token = payer.token(21).await;
    assert!(token.starts_with("cashuB"), "{token}");
    assert!(payer.is_spendable(&token).await);
    assert_eq!(payer.balance().await, Amount::from(79));
    assert_eq!(payer.redeem_fee(&token).await, Amount::ZERO);

    let payee = TestWallet::new(&mint.url()).await;
    assert_eq!(payee.receive(&token).await, Amount::from(21));
    assert_eq!(payee.balance().await, Amount::from(21));
    assert!(!payer.is_spendable(&token).await);
    assert!(!payee.is_spendable(&token).await);

    // A token can pay once.
    let again = TestWallet::new(&mint.url()).await;
    assert!(again.try_receive(&token).await.is_err());
    assert_eq!(again.balance().await, Amount::ZERO);
}

#[tokio::test]
async fn v3_tokens_are_cashu_a_and_redeem_too() {
    let mint = TestMint::start(MintOptions::default()).await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(64).await;

    let token = payer.token_v3(13).await;
    assert!(token.starts_with("cashuA"), "{token}");
    assert!(payer.is_spendable(&token).await);

    let payee = TestWallet::new(&mint.url()).await;
    assert_eq!(payee.receive(&token).await, Amount::from(13));
    assert!(!payer.is_spendable(&token).await);
}

#[tokio::test]
async fn a_mint_with_input_fees_charges_the_receiver() {
    let mint = TestMint::start(MintOptions::with_input_fee_ppk(1000)).await;
    let payer = TestWallet::new(&mint.url()).await;
    payer.fund(1000).await;

    // 13 = 8 + 4 + 1: three proofs, 1 sat each to swap at 1000 ppk.
    let token = payer.token(13).await;
    assert!(payer.is_spendable(&token).await);
    let fee = payer.redeem_fee(&token).await;
    assert!(fee > Amount::ZERO, "a 1000 ppk mint charges for inputs");
    // The payer paid any swap fee for exact change from its own balance.
    assert!(payer.balance().await <= Amount::from(1000 - 13));

    let payee = TestWallet::new(&mint.url()).await;
    let received = payee.receive(&token).await;
    eprintln!("13 sat token at 1000 ppk: redeem fee {fee}, received {received}");
    assert_eq!(received, Amount::from(13) - fee, "net of the input fee");
    assert!(!payer.is_spendable(&token).await);
}

#[tokio::test]
async fn a_restarted_mint_keeps_its_keys_and_its_records() {
    let mut mint = TestMint::start(MintOptions::default()).await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(200).await;
    let kept = payer.token(50).await;
    let spent = payer.token(30).await;
    TestWallet::new(&url).await.receive(&spent).await;

    mint.stop();
    assert!(!mint.is_running());
    assert!(paygress_tests::wait_http_ok(
        &format!("{url}/v1/info"),
        std::time::Duration::from_millis(300)
    )
    .await
    .is_err());

    let started = Instant::now();
    mint.restart().await;
    eprintln!("mint restarted in {:?}", started.elapsed());
    assert_eq!(mint.url(), url, "same port after a restart");

    // Same keys: a token signed before the restart is still good, and the
    // spent record survived.
    assert!(payer.is_spendable(&kept).await);
    assert!(!payer.is_spendable(&spent).await);
    let payee = TestWallet::new(&url).await;
    assert_eq!(payee.receive(&kept).await, Amount::from(50));
    assert!(!payee.is_spendable(&kept).await);

    // The payer's wallet keeps working across the restart.
    let after = payer.token(20).await;
    assert_eq!(payee.receive(&after).await, Amount::from(20));
}
