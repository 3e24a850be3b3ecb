//! The latency of one redemption through the verifier's `/auth`, beside a
//! bare cdk `receive` against the same mint.
//!
//! A real cdk-mintd (fake Lightning, no input fee) and the real `paygress`
//! binary of this build profile; 100 tokens of 64 sat each way, interleaved,
//! after a warm-up. The bare receive uses the same kind of wallet the
//! verifier uses (file-backed SQLite store, no rate limiting).
//!
//! ```text
//! cargo bench -p paygress-verifier --bench redeem_latency          # release profile
//! PAYGRESS_BENCH_N=200 cargo bench -p paygress-verifier --bench redeem_latency
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use cdk::wallet::ReceiveOptions;
use paygress_tests::process::{loopback_http_client, write_file};
use paygress_tests::{free_port, loopback_url, ChildProcess, MintOptions, TestMint, TestWallet};

const PRICE: u64 = 64;
const WARMUP: usize = 5;

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not,
    // and should not start a mint and time 200 redemptions.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "redeem_latency: run it with `cargo bench -p paygress-verifier --bench redeem_latency`"
        );
        return;
    }
    let n: usize = std::env::var("PAYGRESS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    let mint = TestMint::start(MintOptions::default()).await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    let total = (n + WARMUP) as u64 * 2 * PRICE;
    payer.fund(total + 100).await;
    eprintln!("minting {} tokens of {PRICE} sat ...", 2 * (n + WARMUP));
    let mut auth_tokens = Vec::with_capacity(n + WARMUP);
    let mut bare_tokens = Vec::with_capacity(n + WARMUP);
    for _ in 0..n + WARMUP {
        auth_tokens.push(payer.token(PRICE).await);
        bare_tokens.push(payer.token(PRICE).await);
    }

    // The verifier, as deployed: the binary of this profile.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.json");
    write_file(
        &config,
        &format!(r#"{{"unit":"sat","mints":["{url}"],"default_amount":{PRICE}}}"#),
    );
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_paygress"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("verifier"))
        .env_remove("PAYGRESS_MNEMONIC")
        .env("PAYGRESS_LOG", "warn");
    let mut verifier = ChildProcess::spawn("paygress", command);
    let base = loopback_url(port);
    verifier
        .wait_http_ok(&format!("{base}/readyz"), Duration::from_secs(60))
        .await;
    let client = loopback_http_client();

    // The bare receiver: cdk's wallet over the same kind of store.
    let (seed, _) =
        paygress_verifier::seed::load_or_create(&dir.path().join("bare"), None).expect("seed");
    let store: paygress_verifier::wallet::Store =
        paygress_verifier::wallet::open_store(&dir.path().join("bare"))
            .await
            .expect("store");
    let bare = paygress_verifier::wallet::build_mint_wallet(&store, None, &url, "sat", seed)
        .expect("wallet");
    bare.load_metadata().await.expect("mint metadata");

    let mut auth_times = Vec::with_capacity(n);
    let mut bare_times = Vec::with_capacity(n);
    for (i, (a, b)) in auth_tokens.iter().zip(&bare_tokens).enumerate() {
        let started = Instant::now();
        let response = client
            .get(format!("{base}/auth/paid"))
            .header("x-cashu", a)
            .send()
            .await
            .expect("GET /auth");
        let status = response.status();
        let took_auth = started.elapsed();
        assert_eq!(status.as_u16(), 200, "{}", verifier.log_tail(20));

        let started = Instant::now();
        let received = bare
            .wallet
            .receive(b, ReceiveOptions::default())
            .await
            .expect("bare receive");
        let took_bare = started.elapsed();
        assert_eq!(u64::from(received), PRICE);

        if i >= WARMUP {
            auth_times.push(took_auth);
            bare_times.push(took_bare);
        }
    }

    let auth = Stats::of(&mut auth_times);
    let bare = Stats::of(&mut bare_times);
    println!("redemption latency over {n} tokens of {PRICE} sat (cdk-mintd 0.18.3, loopback):");
    println!("  through /auth (paygress binary): {auth}");
    println!("  bare cdk receive:                {bare}");
    println!(
        "  p50 ratio /auth / bare receive:  {:.2}",
        auth.p50.as_secs_f64() / bare.p50.as_secs_f64()
    );
}

struct Stats {
    p50: Duration,
    p90: Duration,
    mean: Duration,
}

impl Stats {
    fn of(times: &mut [Duration]) -> Stats {
        times.sort();
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        let sum: Duration = times.iter().sum();
        Stats {
            p50: at(0.5),
            p90: at(0.9),
            mean: sum / times.len() as u32,
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, mean {:.2} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p90.as_secs_f64() * 1e3,
            self.mean.as_secs_f64() * 1e3
        )
    }
}
