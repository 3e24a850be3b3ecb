//! The latency of one redemption: through Envoy with the filter (its callout
//! to the verifier included), through the verifier's `/auth`, and by a bare
//! cdk `receive` against the same mint (the baseline: the swap itself).
//!
//! A real cdk-mintd (fake Lightning, no input fee), the real `paygress`
//! binary named by `PAYGRESS_BIN` (`bash scripts/bench.sh redeem` builds the
//! release one and names it), the real Envoy with the filter; tokens of one
//! proof of the `/premium` price each. The three ways run interleaved, one
//! token each per step and in a rotating order, after a warm-up, so that a
//! drift of the machine touches all three alike. The bare receive uses the
//! kind of wallet the verifier uses (file-backed SQLite store) and the
//! verifier's receive options (the fewest outputs), so that the ratios are
//! what the verifier adds to the same swap.
//!
//! Then, with `PAYGRESS_BENCH_FILL` (default 0) more tokens redeemed through
//! `/auth` one after another, how the time per redemption moves as the
//! verifier's wallet fills: the median of each eighth of them, and the last
//! eighth against the first.
//!
//! With `BENCH_PARTS` set (by `scripts/bench.sh`), the rows also go to
//! `$BENCH_PARTS/redeem.json` for the bench's table and JSON.
//!
//! ```text
//! bash scripts/bench.sh redeem
//! PAYGRESS_BENCH_N=200 PAYGRESS_BENCH_FILL=2000 bash scripts/bench.sh redeem
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use paygress_tests::envoy::Setup;
use paygress_tests::fixture::PREMIUM;
use paygress_tests::process::loopback_http_client;
use paygress_verifier::wallet::receive_options;
use serde_json::{json, Value};

const WARMUP: usize = 5;
/// Outputs per mint request when minting the tokens.
const MINT_BATCH: u64 = 200;

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not,
    // and should not start a stack and time hundreds of redemptions.
    if !std::env::args().any(|a| a == "--bench") {
        println!("redeem_latency: run it with `bash scripts/bench.sh redeem`");
        return;
    }
    let n = env_usize("PAYGRESS_BENCH_N", 100);
    let fill = env_usize("PAYGRESS_BENCH_FILL", 0);
    let bin = std::env::var("PAYGRESS_BIN").unwrap_or_default();
    assert!(
        !bin.is_empty(),
        "set PAYGRESS_BIN to the verifier to measure (an optimised build: \
         `bash scripts/bench.sh redeem` builds and names it)"
    );

    let stack = Setup {
        funds: 100,
        verifier_env: vec![("PAYGRESS_LOG".into(), "warn".into())],
        ..Setup::default()
    }
    .start()
    .await;
    // A load of tokens from one client is what the shipped limits cut off.
    stack
        .envoy
        .runtime_modify("paygress_rate_limit.enforced", "0")
        .await;
    let payer = stack.wallet();
    let steps = n + WARMUP;
    let wanted = 3 * steps + fill;
    eprintln!("minting {wanted} tokens of {PREMIUM} sat ...");
    let mut tokens = Vec::with_capacity(wanted);
    while tokens.len() < wanted {
        let count = MINT_BATCH.min((wanted - tokens.len()) as u64);
        for proof in payer.mint_proofs(PREMIUM, count).await {
            tokens.push(payer.token_of(vec![proof]));
        }
    }

    // The bare receiver: cdk's wallet over the verifier's kind of store.
    let dir = tempfile::tempdir().expect("temp dir");
    let bare = bare_wallet(dir.path(), &stack.mint_url).await;
    let client = loopback_http_client();
    let filter_url = stack.url("/premium/bench");
    let auth_url = format!("{}/auth/premium/bench", stack.verifier_url());

    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut tokens = tokens.into_iter();
    for step in 0..steps {
        for k in 0..3 {
            let way = (step + k) % 3;
            let token = tokens.next().expect("minted enough tokens");
            let took = match way {
                0 => timed_get(&client, &filter_url, &token).await,
                1 => timed_get(&client, &auth_url, &token).await,
                _ => {
                    let started = Instant::now();
                    let received = bare
                        .wallet
                        .receive(&token, receive_options())
                        .await
                        .expect("bare receive");
                    assert_eq!(u64::from(received), PREMIUM);
                    started.elapsed()
                }
            };
            if step >= WARMUP {
                times[way].push(took);
            }
        }
    }
    let [filter, auth, bare_times] = times.map(|mut t| Stats::of(&mut t));
    // What Envoy and the upstream add on their own: a free path, no payment.
    let mut free_times = Vec::with_capacity(n);
    let free_url = stack.url("/free/bench");
    for _ in 0..n {
        let started = Instant::now();
        let response = client
            .get(&free_url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {free_url}: {e}"));
        assert!(response.status().is_success(), "GET {free_url}");
        let _ = response.bytes().await;
        free_times.push(started.elapsed());
    }
    let free = Stats::of(&mut free_times);
    println!(
        "redemption latency over {n} tokens of {PREMIUM} sat each way (cdk-mintd 0.18.3, loopback):"
    );
    println!("  through Envoy + filter + callout: {filter}");
    println!("  through /auth:                    {auth}");
    println!("  bare cdk receive (baseline):      {bare_times}");
    println!("  Envoy + upstream, a free path:    {free}");
    let ratio = |s: &Stats| s.p50.as_secs_f64() / bare_times.p50.as_secs_f64();
    println!(
        "  p50 ratios: filter {:.2}x (goal <= 1.15x), /auth {:.2}x (goal <= 1.10x)",
        ratio(&filter),
        ratio(&auth)
    );
    let mut rows = vec![
        row("bare cdk receive (baseline)", &bare_times, 0.5, None, None),
        row("bare cdk receive p99", &bare_times, 0.99, None, None),
        row(
            "through /auth",
            &auth,
            0.5,
            Some((ratio(&auth), "bare cdk receive (baseline)")),
            Some(("<= 1.10x", ratio(&auth) <= 1.10)),
        ),
        row("through /auth p99", &auth, 0.99, None, None),
        row(
            "through Envoy + filter + callout",
            &filter,
            0.5,
            Some((ratio(&filter), "bare cdk receive (baseline)")),
            Some(("<= 1.15x", ratio(&filter) <= 1.15)),
        ),
        row(
            "through Envoy + filter + callout p99",
            &filter,
            0.99,
            None,
            None,
        ),
        row(
            "Envoy + upstream alone (a free path)",
            &free,
            0.5,
            None,
            None,
        ),
    ];

    if fill > 0 {
        let mut filled = Vec::with_capacity(fill);
        for token in tokens.by_ref().take(fill) {
            filled.push(timed_get(&client, &auth_url, &token).await);
        }
        let eighth = fill.div_ceil(8);
        let medians: Vec<Duration> = filled
            .chunks(eighth)
            .map(|c| Stats::of(&mut c.to_vec()).p50)
            .collect();
        println!(
            "as the wallet fills: p50 per {eighth} redemptions through /auth after {} earlier ones:",
            3 * steps
        );
        let text: Vec<String> = medians
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64() * 1e3))
            .collect();
        println!("  {} ms", text.join(", "));
        if let (Some(first), Some(last)) = (medians.first(), medians.last()) {
            let growth = last.as_secs_f64() / first.as_secs_f64();
            println!("  last / first: {growth:.2}x");
            rows.push(json!({
                "section": "redemption", "case": format!("/auth p50, first {eighth} of {fill} more"),
                "unit": "ms", "median": ms(*first), "min": null, "max": null,
                "samples": eighth, "baseline": null, "ratio": null, "goal": null, "met": null,
            }));
            rows.push(json!({
                "section": "redemption", "case": format!("/auth p50, last {eighth} of {fill} more"),
                "unit": "ms", "median": ms(*last), "min": null, "max": null,
                "samples": eighth, "baseline": format!("/auth p50, first {eighth} of {fill} more"),
                "ratio": growth, "goal": null, "met": null,
            }));
        }
    }

    if let Some(parts) = std::env::var_os("BENCH_PARTS") {
        let path = Path::new(&parts).join("redeem.json");
        std::fs::write(&path, Value::Array(rows).to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a count: {e}")),
        Err(_) => default,
    }
}

async fn bare_wallet(dir: &Path, mint_url: &str) -> paygress_verifier::wallet::MintWallet {
    let (seed, _) = paygress_verifier::seed::load_or_create(dir, None).expect("seed");
    let store: paygress_verifier::wallet::Store = paygress_verifier::wallet::open_store(dir)
        .await
        .expect("store");
    let bare = paygress_verifier::wallet::build_mint_wallet(&store, None, mint_url, "sat", seed)
        .expect("wallet");
    bare.load_metadata().await.expect("mint metadata");
    bare
}

/// One paid GET, timed; it must be granted.
async fn timed_get(client: &reqwest::Client, url: &str, token: &str) -> Duration {
    let started = Instant::now();
    let response = client
        .get(url)
        .header("x-cashu", token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let took = started.elapsed();
    assert_eq!(
        status.as_u16(),
        200,
        "GET {url} with a fresh token: {}",
        String::from_utf8_lossy(&body)
    );
    took
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A row of the bench's JSON: the `q` quantile of `stats`.
fn row(
    case: &str,
    stats: &Stats,
    q: f64,
    ratio: Option<(f64, &str)>,
    goal: Option<(&str, bool)>,
) -> Value {
    json!({
        "section": "redemption",
        "case": case,
        "unit": "ms",
        "median": ms(stats.at(q)),
        "min": ms(stats.min()),
        "max": ms(stats.max()),
        "samples": stats.sorted.len(),
        "baseline": ratio.map(|(_, b)| b),
        "ratio": ratio.map(|(r, _)| r),
        "goal": goal.map(|(g, _)| g),
        "met": goal.map(|(_, m)| m),
    })
}

struct Stats {
    sorted: Vec<Duration>,
    p50: Duration,
}

impl Stats {
    fn of(times: &mut [Duration]) -> Stats {
        times.sort();
        let sorted = times.to_vec();
        let p50 = quantile(&sorted, 0.5);
        Stats { sorted, p50 }
    }

    fn at(&self, q: f64) -> Duration {
        quantile(&self.sorted, q)
    }

    fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({} tokens)",
            ms(self.p50),
            ms(self.at(0.9)),
            ms(self.at(0.99)),
            self.sorted.len()
        )
    }
}
