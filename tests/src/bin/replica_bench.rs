//! `bash scripts/bench.sh replicas`: redemptions per second through the
//! verifier's `/auth` with 1, 2 and 3 replicas on one PostgreSQL database
//! and one mint, beside one replica on its SQLite data dir, in the same run
//! on the same mint and PostgreSQL server.
//!
//! Each case pre-mints its tokens (32 sat each, the fixture's default
//! price: one minted proof per token),
//! starts its replicas (PostgreSQL: a fresh database, one mnemonic, replica
//! ids `replica-N`), warms each replica up with a few payments, then sends
//! the tokens concurrently, round robin over the replicas' `/auth/x`,
//! retrying a 503 with the same token as a client would. It measures the
//! wall time (redemptions per second), each token's latency (first send to
//! final answer), each verifier's RSS under the load, and the CPU time
//! (utime + stime from `/proc/<pid>/stat`) that the verifiers, the mint,
//! the PostgreSQL server processes and this driver spent during it, so the
//! table shows which one is saturated. Then it waits for the wallet to
//! hold what was granted.
//!
//! Swaps at one mint are serialised across replicas by a PostgreSQL
//! advisory lock (cdk 0.18's counter ranges), so throughput is not expected
//! to grow with replicas: the table shows how it does. Numbers only, no
//! thresholds.
//!
//! Environment: `PAYGRESS_BENCH_REDEMPTIONS` (300 tokens per case),
//! `PAYGRESS_BENCH_IN_FLIGHT` (32), `PAYGRESS_BENCH_WARMUP` (5 per
//! replica), `PAYGRESS_BENCH_REPLICAS` (`1,2,3`: the PostgreSQL cases),
//! `PAYGRESS_BENCH_REPLICA_ROUNDS` (3: every case once per round, the
//! rounds interleaved so that drift of the machine touches all alike; the
//! table shows medians),
//! `PAYGRESS_BIN` (the verifier; `scripts/bench.sh` gives a release build).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use paygress_tests::fixture::DEFAULT_PRICE;
use paygress_tests::postgres::Postgres;
use paygress_tests::verifier::{
    balance_at, config, describe, paygress_bin, pending_at, run_paygress, Verifier,
};
use paygress_tests::{MintOptions, TestMint, TestWallet};

/// The mnemonic the PostgreSQL replicas share.
const MNEMONIC: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                        abandon abandon about";
/// The verifier's default log filter, as deployed (the harness would ask
/// for debug logs, which cost time under load).
const VERIFIER_LOG: &str = "info,cdk=warn,cdk_common=warn,cdk_sqlite=warn,cdk_sql_common=warn";
/// Proofs minted per mint request when funding the payer.
const FUND_BATCH: u64 = 100;
/// How many times one token is sent again after a 503 or no answer.
const RETRIES: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
struct Case {
    store: Store,
    replicas: usize,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.granted as f64 / self.wall.max(1e-9)
    }

    /// Redemptions per second between the `from` and `to` fractions of the
    /// grants (0.1..0.3 early, 0.7..0.9 late: does it slow down as the
    /// wallet fills?).
    fn rate_between(&self, from: f64, to: f64) -> Option<f64> {
        let mut t = self.done_at.clone();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let (a, b) = ((n as f64 * from) as usize, (n as f64 * to) as usize);
        if n < 10 || b <= a {
            return None;
        }
        let span = t.get(b.min(n - 1))? - t.get(a)?;
        (span > 0.0).then(|| (b.min(n - 1) - a) as f64 / span)
    }
}

impl Case {
    fn name(&self) -> String {
        match self.store {
            Store::Sqlite => format!("sqlite x{}", self.replicas),
            Store::Postgres => format!("postgres x{}", self.replicas),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    name: String,
    tokens: usize,
    granted: usize,
    other: BTreeMap<String, usize>,
    retries: usize,
    retried: BTreeMap<String, usize>,
    wall: f64,
    latencies_ms: Vec<f64>,
    /// When each grant came, in seconds since the load began.
    done_at: Vec<f64>,
    cpu: BTreeMap<&'static str, f64>,
    rss_peak_mib: Vec<f64>,
    per_replica_paid: Vec<u64>,
    wallet: Option<(u64, u64)>,
    /// PostgreSQL: transactions committed in the case's database per
    /// redemption during the load.
    commits_per_redeem: Option<f64>,
    /// PostgreSQL: the case database's non-idle backends by wait event,
    /// averaged over samples taken during the load.
    waits: Vec<(String, f64)>,
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        _ => default,
    }
}

// ---------------------------------------------------------------------------
// /proc

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot say).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (parent pid, utime + stime, cutime + cstime) of a process, in ticks.
fn stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ppid = num(1)? as u32;
    Some((ppid, num(11)? + num(12)?, num(13)? + num(14)?))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The first process whose command line has `a` followed by `b`.
fn pid_with_args(a: &str, b: &str) -> Option<u32> {
    all_pids()
        .into_iter()
        .find(|pid| cmdline(*pid).windows(2).any(|w| w[0] == a && w[1] == b))
}

/// CPU ticks of a process (its own).
fn own_ticks(pid: u32) -> u64 {
    stat(pid).map_or(0, |(_, own, _)| own)
}

/// CPU ticks of a server and its children, including the children it has
/// reaped (PostgreSQL's backends come and go).
fn tree_ticks(parent: u32) -> u64 {
    let Some((_, own, reaped)) = stat(parent) else {
        return 0;
    };
    let children: u64 = all_pids()
        .into_iter()
        .filter_map(stat)
        .filter(|(ppid, _, _)| *ppid == parent)
        .map(|(_, t, _)| t)
        .sum();
    own + reaped + children
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// The payer.

async fn premint(wallet: &TestWallet, count: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count);
    let mut left = count as u64;
    while left > 0 {
        let batch = left.min(FUND_BATCH);
        let proofs = wallet.mint_proofs(DEFAULT_PRICE, batch).await;
        tokens.extend(proofs.into_iter().map(|p| wallet.token_of(vec![p])));
        left -= batch;
    }
    tokens
}

// ---------------------------------------------------------------------------
// One case.

/// Sends `token` to `url` until an answer other than 503 (or no answer):
/// the final status and code, and the answers retried on the way.
async fn redeem(client: &reqwest::Client, url: &str, token: &str) -> (u16, String, Vec<String>) {
    let mut retried = Vec::new();
    loop {
        let (status, code) = match client.get(url).header("x-cashu", token).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let code = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                (status, code)
            }
            Err(e) => (0, format!("no answer: {}", e.without_url())),
        };
        if (status != 503 && status != 0) || retried.len() >= RETRIES as usize {
            return (status, code, retried);
        }
        retried.push(format!("{status} {code}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The case database's non-idle backends (this one excepted) by wait
/// event and state.
const WAITS: &str = "SELECT coalesce(wait_event_type || ':' || wait_event, 'running') || ' (' || state || ')', \
                     count(*)::bigint FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle' \
                     GROUP BY 1";

/// Transactions committed in the client's database so far.
async fn commits(client: &paygress_tests::postgres::tokio_postgres::Client) -> u64 {
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .ok()
        .and_then(|row| row.try_get::<_, i64>(0).ok())
        .map_or(0, |n| n.max(0) as u64)
}

fn metric(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

struct Shared<'a> {
    pg: &'a Postgres,
    mint: &'a TestMint,
    mint_pid: u32,
    wallet: &'a TestWallet,
    client: reqwest::Client,
    tokens: usize,
    in_flight: usize,
    warmup: usize,
    ticks: f64,
}

async fn run_case(case: &Case, s: &Shared<'_>) -> Outcome {
    let name = case.name();
    eprintln!("replica_bench: {name}: minting tokens ...");
    let mut tokens = premint(s.wallet, s.tokens + s.warmup * case.replicas).await;
    let mint_url = s.mint.url();
    let db = match case.store {
        Store::Postgres => Some(s.pg.fresh_database().await),
        Store::Sqlite => None,
    };
    let mut verifiers = Vec::new();
    for i in 0..case.replicas {
        let id = format!("replica-{i}");
        let mut env: Vec<(&str, &str)> = vec![("PAYGRESS_LOG", VERIFIER_LOG)];
        if let Some(db) = &db {
            env.extend([
                ("PAYGRESS_DATABASE_URL", db.as_str()),
                ("PAYGRESS_MNEMONIC", MNEMONIC),
                ("PAYGRESS_REPLICA_ID", id.as_str()),
            ]);
        }
        verifiers.push(Verifier::start_with_env(&config(&mint_url), &env).await);
    }
    let pids: Vec<u32> = verifiers
        .iter()
        .map(|v| {
            pid_with_args("--listen", &v.addr())
                .unwrap_or_else(|| panic!("no process listens on {}", v.addr()))
        })
        .collect();
    let auths: Vec<String> = verifiers.iter().map(|v| v.auth("/x")).collect();

    // Warm-up: each replica's connections and keysets.
    let mut granted_total = 0usize;
    for (i, auth) in auths.iter().enumerate() {
        for _ in 0..s.warmup {
            let token = tokens.pop().unwrap_or_default();
            let (status, code, _) = redeem(&s.client, auth, &token).await;
            assert_eq!(
                status, 200,
                "{name}: warm-up on replica-{i}: {status} {code}"
            );
            granted_total += 1;
        }
    }

    eprintln!(
        "replica_bench: {name}: {} redemptions, {} in flight ...",
        tokens.len(),
        s.in_flight
    );
    let pg_pid = s.pg.pid().unwrap_or(0);
    let me = std::process::id();
    let before = (
        pids.iter().map(|p| own_ticks(*p)).sum::<u64>(),
        own_ticks(s.mint_pid),
        tree_ticks(pg_pid),
        own_ticks(me),
    );
    let sampling = Arc::new(AtomicBool::new(true));
    let db_name = db
        .as_deref()
        .and_then(|url| url.rsplit('/').next())
        .map(str::to_string);
    let pg_watch = match &db_name {
        Some(name) => {
            let client = s.pg.client_for(name).await;
            let commits = commits(&client).await;
            let sampling = sampling.clone();
            Some((
                commits,
                tokio::spawn(async move {
                    let (mut seen, mut samples) = (BTreeMap::<String, f64>::new(), 0u32);
                    while sampling.load(Ordering::Relaxed) {
                        if let Ok(rows) = client.query(WAITS, &[]).await {
                            samples += 1;
                            for row in rows {
                                let (w, n): (String, i64) = (row.get(0), row.get(1));
                                *seen.entry(w).or_default() += n as f64;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    (client, seen, samples)
                }),
            ))
        }
        None => None,
    };
    let peaks = Arc::new(Mutex::new(vec![0u64; pids.len()]));
    let sampler = {
        let (sampling, peaks, pids) = (sampling.clone(), peaks.clone(), pids.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(rss) = rss_kib(*pid) {
                        let mut p = peaks.lock().unwrap_or_else(|e| e.into_inner());
                        p[i] = p[i].max(rss);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let gate = Arc::new(Semaphore::new(s.in_flight));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.into_iter().enumerate() {
        let (url, gate, client) = (
            auths[i % auths.len()].clone(),
            gate.clone(),
            s.client.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await;
            let t0 = Instant::now();
            let (status, code, retried) = redeem(&client, &url, &token).await;
            (status, code, retried, t0.elapsed(), start.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut out = Outcome {
        name: name.clone(),
        ..Outcome::default()
    };
    for t in tasks {
        let (status, code, retried, took, done) =
            t.await.unwrap_or_else(|e| panic!("{name}: a task: {e}"));
        if status == 200 {
            out.done_at.push(done.as_secs_f64());
        }
        out.tokens += 1;
        out.retries += retried.len();
        for kind in retried {
            *out.retried.entry(kind).or_default() += 1;
        }
        latencies.push(took);
        if status == 200 {
            out.granted += 1;
        } else {
            *out.other.entry(format!("{status} {code}")).or_default() += 1;
        }
    }
    out.wall = start.elapsed().as_secs_f64();
    let after = (
        pids.iter().map(|p| own_ticks(*p)).sum::<u64>(),
        own_ticks(s.mint_pid),
        tree_ticks(pg_pid),
        own_ticks(me),
    );
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    if let Some((commits_before, watch)) = pg_watch {
        if let Ok((client, seen, samples)) = watch.await {
            let mut waits: Vec<(String, f64)> = seen
                .into_iter()
                .map(|(w, n)| (w, n / f64::from(samples.max(1))))
                .collect();
            waits.sort_by(|a, b| b.1.total_cmp(&a.1));
            out.waits = waits;
            // Backends report their counts to the statistics within a second.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let done = commits(&client).await;
            out.commits_per_redeem =
                Some(done.saturating_sub(commits_before) as f64 / out.granted.max(1) as f64);
        }
    }
    let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / s.ticks / out.wall * 100.0;
    out.cpu.insert("verifiers", pct(before.0, after.0));
    out.cpu.insert("mint", pct(before.1, after.1));
    out.cpu.insert("postgres", pct(before.2, after.2));
    out.cpu.insert("driver", pct(before.3, after.3));
    out.rss_peak_mib = peaks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|k| *k as f64 / 1024.0)
        .collect();
    out.latencies_ms = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    for v in &verifiers {
        out.per_replica_paid.push(metric(
            &v.metrics().await,
            "paygress_payments_total{outcome=\"paid\"}",
        ));
    }

    // The wallet holds what was granted (settlement included).
    granted_total += out.granted;
    let want = granted_total as u64 * DEFAULT_PRICE;
    let read = || {
        let out = match &db {
            Some(db) => run_paygress(
                &["wallet", "balance", "--database-url", db],
                &[("PAYGRESS_MNEMONIC", MNEMONIC)],
            ),
            None => run_paygress(
                &[
                    "wallet",
                    "balance",
                    "--data-dir",
                    &verifiers[0].data_dir_str(),
                ],
                &[],
            ),
        };
        if !out.status.success() {
            eprintln!("replica_bench: {name}: wallet balance: {}", describe(&out));
            return None;
        }
        let json = String::from_utf8_lossy(&out.stdout).into_owned();
        Some((balance_at(&json, &mint_url), pending_at(&json, &mint_url)))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut wallet = read();
    while wallet != Some((want, 0)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        wallet = read();
    }
    out.wallet = wallet.map(|(b, p)| (b + p, want));
    drop(verifiers);
    out
}

// ---------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let tokens = env_num("PAYGRESS_BENCH_REDEMPTIONS", 300) as usize;
    let in_flight = env_num("PAYGRESS_BENCH_IN_FLIGHT", 32).max(1) as usize;
    let warmup = env_num("PAYGRESS_BENCH_WARMUP", 5) as usize;
    let rounds = env_num("PAYGRESS_BENCH_REPLICA_ROUNDS", 3).max(1);
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let replica_counts: Vec<usize> = std::env::var("PAYGRESS_BENCH_REPLICAS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "1,2,3".to_string())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("PAYGRESS_BENCH_REPLICAS: {n:?} is not a number"))
        })
        .collect();
    let bin = paygress_bin();
    eprintln!("replica_bench: verifier {}", bin.display());

    let pg = Postgres::new().await;
    let mint = TestMint::start(MintOptions::default()).await;
    let mint_pid = pid_with_args("--work-dir", &mint.work_dir().display().to_string())
        .unwrap_or_else(|| panic!("no cdk-mintd process for {}", mint.work_dir().display()));
    let wallet = TestWallet::new(&mint.url()).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(in_flight)
        .build()
        .unwrap_or_else(|e| panic!("an HTTP client: {e}"));
    let shared = Shared {
        pg: &pg,
        mint: &mint,
        mint_pid,
        wallet: &wallet,
        client,
        tokens,
        in_flight,
        warmup,
        ticks: clock_ticks(),
    };
    let mut cases = vec![Case {
        store: Store::Sqlite,
        replicas: 1,
    }];
    cases.extend(replica_counts.iter().map(|n| Case {
        store: Store::Postgres,
        replicas: *n,
    }));
    let mut runs: Vec<Vec<Outcome>> = vec![Vec::new(); cases.len()];
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for (case, into) in cases.iter().zip(runs.iter_mut()) {
            let outcome = run_case(case, &shared).await;
            line.push_str(&format!(" {} {:.1}/s", outcome.name, outcome.rate()));
            into.push(outcome);
        }
        println!("{line}");
    }

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "== Redemptions through /auth: {tokens} tokens per case and round, {in_flight} in flight, round robin over the replicas; \
         {rounds} interleaved round(s), medians; one mint, one PostgreSQL server; {cpus} CPUs, load average {load_before} before"
    );
    println!(
        "{:<22}{:>10}{:>13}{:>8}{:>13}{:>10}{:>9}{:>9}{:>7}   {:>10}{:>7}{:>10}{:>8}   {:<14}paid per replica; wallet",
        "case",
        "redeem/s",
        "min-max",
        "ratio",
        "early/late",
        "ms/redeem",
        "p50 ms",
        "p99 ms",
        "retry",
        "verifiers",
        "mint",
        "postgres",
        "driver",
        "peak RSS MiB",
    );
    let base = runs
        .first()
        .map_or(1.0, |r| median(r.iter().map(Outcome::rate)));
    for r in &runs {
        let Some(first) = r.first() else { continue };
        let rates: Vec<f64> = r.iter().map(Outcome::rate).collect();
        let rate = median(rates.iter().copied());
        let (lo, hi) = (
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        );
        let mut lat: Vec<f64> = r.iter().flat_map(|o| o.latencies_ms.clone()).collect();
        lat.sort_by(f64::total_cmp);
        let cpu = |k: &str| median(r.iter().map(|o| o.cpu.get(k).copied().unwrap_or(0.0)));
        let label = if first.name == "sqlite x1" {
            format!("{} (baseline)", first.name)
        } else {
            first.name.clone()
        };
        let replicas = first.rss_peak_mib.len();
        let rss = (0..replicas)
            .map(|i| {
                let peak = r
                    .iter()
                    .filter_map(|o| o.rss_peak_mib.get(i).copied())
                    .fold(0.0, f64::max);
                format!("{peak:.0}")
            })
            .collect::<Vec<_>>()
            .join("/");
        let paid = (0..replicas)
            .map(|i| {
                r.iter()
                    .filter_map(|o| o.per_replica_paid.get(i))
                    .sum::<u64>()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("/");
        let early = r.iter().filter_map(|o| o.rate_between(0.1, 0.3));
        let late = r.iter().filter_map(|o| o.rate_between(0.7, 0.9));
        let early_late = format!("{:.1}/{:.1}", median(early), median(late));
        let wallets: Vec<Option<(u64, u64)>> = r.iter().map(|o| o.wallet).collect();
        let wallet = if wallets
            .iter()
            .all(|w| w.is_some_and(|(have, want)| have == want))
        {
            let held: u64 = wallets.iter().flatten().map(|w| w.0).sum();
            format!("holds what was granted ({held} sat)")
        } else {
            format!("MISMATCH (held, granted) per round: {wallets:?}")
        };
        println!(
            "{:<22}{:>10.1}{:>13}{:>7.2}x{:>13}{:>10.1}{:>9.1}{:>9.1}{:>7}   {:>9.0}%{:>6.0}%{:>9.0}%{:>7.0}%   {:<14}{paid}; {wallet}",
            label,
            rate,
            format!("{lo:.1}-{hi:.1}"),
            rate / base,
            early_late,
            1000.0 / rate.max(1e-9),
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            r.iter().map(|o| o.retries).sum::<usize>(),
            cpu("verifiers"),
            cpu("mint"),
            cpu("postgres"),
            cpu("driver"),
            rss,
        );
        let mut other: BTreeMap<&str, usize> = BTreeMap::new();
        let mut retried: BTreeMap<&str, usize> = BTreeMap::new();
        for o in r {
            for (k, n) in &o.other {
                *other.entry(k).or_default() += n;
            }
            for (k, n) in &o.retried {
                *retried.entry(k).or_default() += n;
            }
        }
        if !other.is_empty() {
            println!("    not granted: {other:?}");
        }
        if !retried.is_empty() {
            println!("    retried: {retried:?}");
        }
        let commits: Vec<f64> = r.iter().filter_map(|o| o.commits_per_redeem).collect();
        if !commits.is_empty() {
            let mut waits: BTreeMap<&str, f64> = BTreeMap::new();
            for o in r {
                for (w, n) in &o.waits {
                    *waits.entry(w).or_default() += n / r.len() as f64;
                }
            }
            let mut waits: Vec<(&str, f64)> = waits.into_iter().collect();
            waits.sort_by(|a, b| b.1.total_cmp(&a.1));
            let waits = waits
                .iter()
                .take(4)
                .map(|(w, n)| format!("{w} {n:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "    postgres: {:.1} commits per redemption; busy backends (mean): {waits}",
                median(commits.into_iter())
            );
        }
    }
    println!(
        "CPU: CPU time / wall time of the load (100% = one core of {cpus}); verifiers summed over the replicas; \
         postgres = the server and its backends. early/late: redeem/s over the 10-30% and the 70-90% of the grants. ms/redeem = 1000 / redeem/s (what one costs when they go one at a time). \
         retry: 503s (or no answer) retried with the same token. peak RSS: per replica, under the load."
    );
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
