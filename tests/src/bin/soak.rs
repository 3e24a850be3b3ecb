//! `just soak [MINUTES]`: the whole product under a steady, mixed load for a
//! while, looking for what only time shows: memory or descriptors that
//! grow, errors that come and go, money that does not add up.
//!
//! It starts a real PostgreSQL, one cdk-mintd (fake Lightning), two
//! verifier replicas on one database (one mnemonic, `replica-0` and
//! `replica-1`, settling every 10 s), Envoy with the filter whose verifier
//! cluster holds both replicas (Envoy's round robin), and a small upstream
//! that counts what reaches it (and any token or pass that does). Envoy's
//! per-client rate limits, when its config has them, are set not to enforce
//! (admin runtime key): the soak is one client address. Then it sends
//! requests at a fixed rate (open loop), in a fixed mix:
//!
//! - `free` 20%: `/free/soak`, `/healthz` (200);
//! - `unpaid` 15%: paid paths without a token (402);
//! - `paid` 20%: a fresh token of 32 (`/soak/paid/…`) or 64 sat
//!   (`/premium/soak/…`) from a pool that a background task fills with
//!   freshly minted proofs (200; a 503, or no answer, is retried with the
//!   same token after `Retry-After`, as a client does, up to 10 times);
//! - `replay` 10%: a token already granted, on its own path (400
//!   `token_already_spent`);
//! - `hostile` 15%: a malformed `X-Cashu`, an oversized one (20 KiB), a
//!   garbage `Authorization: Cashu`, a garbage pass and an oversized pass
//!   (400 `malformed_token` / `pass_invalid`);
//! - `lease` 20%: the pass of a lease on the fixture's `/compute` tier,
//!   bought with a token at the start (and again before it ends), in each
//!   carrier: header, Bearer, cookie (200).
//!
//! Every minute it prints each verifier's (and Envoy's) RSS and open file
//! descriptors; it samples them every `--sample-secs`, and once more after
//! `--cooldown-secs` idle at the end. Then every fresh token that was not
//! granted is presented once more (a swap that completed after its client
//! was refused must be granted now). At the end: unexpected answers by
//! request class, tokens paid vs granted, the shared wallet's balance
//! (`paygress wallet balance --database-url`) vs the sum of what was
//! granted, the mint's state of every token never granted, the verifiers'
//! and the filter's counters, the WARN/ERROR lines of the verifiers' logs,
//! and the RSS and descriptor slopes (least squares, per minute; also over
//! the second half of the samples). The report goes to
//! `target/soak/soak-<unix time>.json` (and `target/soak/last.json`), the
//! logs beside it. The exit status is 1 when a money invariant fails.
//!
//! ```text
//! soak [--minutes N (30)] [--rate REQ_PER_SEC (50)] [--sample-secs S (10)]
//!      [--cooldown-secs S (30)] [--out DIR (target/soak)] [--enforce-rate-limits]
//! ```
//!
//! The verifier is `PAYGRESS_BIN`, else the workspace's debug `paygress`;
//! `just soak` gives it a release build (without LTO), as deployed: the
//! debug build cannot keep up with 50 requests a second on a small machine.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::HeaderMap;
use cdk::nuts::{Proofs, State as ProofState};
use futures::StreamExt as _;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use paygress_tests::contract::repo_file;
use paygress_tests::envoy::{plugin_config, wasm_path, Template, ENVOY_READY_TIMEOUT};
use paygress_tests::fixture::{COMPUTE, DEFAULT_PRICE, PASS_KEY_ENV, PASS_KEY_SECRET, PREMIUM};
use paygress_tests::postgres::Postgres;
use paygress_tests::render::render;
use paygress_tests::verifier::{balance_at, describe, pending_at, run_paygress, Verifier};
use paygress_tests::{free_port, loopback_url, tools, ChildProcess, MintOptions, TestMint};
use paygress_tests::{verifier::paygress_bin, TestWallet};

/// The mnemonic the replicas share, as the Secret would give it.
const MNEMONIC: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                        abandon abandon about";

/// The verifier's default log filter (`paygress serve` without
/// `PAYGRESS_LOG`), as deployed.
const VERIFIER_LOG: &str = "info,cdk=warn,cdk_common=warn,cdk_sqlite=warn,cdk_sql_common=warn";

/// How many times a paid request is sent again after a 503 or no answer.
const PAID_RETRIES: u32 = 10;
/// Most requests in flight at once (beyond it, a tick is dropped and
/// counted: the stack is that far behind).
const MAX_IN_FLIGHT: usize = 512;
/// Tokens kept ready in the pool.
const POOL_SIZE: usize = 400;
/// Proofs of 32 sat minted at a time for the pool (a token of 32 holds
/// one, a token of 64 two).
const FUND_BATCH: u64 = 100;
/// Granted tokens kept for replays.
const REPLAY_KEEP: usize = 2000;

const USAGE: &str = "soak [--minutes N (30)] [--rate REQ_PER_SEC (50)] \
                     [--sample-secs S (10)] [--cooldown-secs S (30)] [--out DIR (target/soak)] [--enforce-rate-limits]";

#[derive(Debug, Clone)]
struct Args {
    minutes: f64,
    rate: f64,
    sample_secs: f64,
    /// Idle time after the load, before the last sample.
    cooldown_secs: f64,
    out_dir: PathBuf,
    /// Keep Envoy's per-client rate limits enforced (every request of the
    /// soak comes from one address, so they would refuse most of it).
    enforce_rate_limits: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        minutes: 30.0,
        rate: 50.0,
        sample_secs: 10.0,
        cooldown_secs: 30.0,
        out_dir: tools::target_dir().join("soak"),
        enforce_rate_limits: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--minutes" => args.minutes = positive(&value(), "--minutes"),
            "--rate" => args.rate = positive(&value(), "--rate"),
            "--sample-secs" => args.sample_secs = positive(&value(), "--sample-secs"),
            "--cooldown-secs" => args.cooldown_secs = positive(&value(), "--cooldown-secs"),
            "--out" => args.out_dir = PathBuf::from(value()),
            "--enforce-rate-limits" => args.enforce_rate_limits = true,
            "-h" | "--help" => {
                println!("usage: {USAGE}");
                std::process::exit(0);
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn positive(text: &str, name: &str) -> f64 {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => v,
        _ => usage(&format!("{name}: {text:?} is not a positive number")),
    }
}

fn usage(message: &str) -> ! {
    eprintln!("soak: {message}\nusage: {USAGE}");
    std::process::exit(2)
}

// ---------------------------------------------------------------------------
// The request classes.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Free,
    Unpaid,
    Paid,
    Replay,
    Hostile,
    Lease,
}

impl Class {
    const ALL: [Class; 6] = [
        Class::Free,
        Class::Unpaid,
        Class::Paid,
        Class::Replay,
        Class::Hostile,
        Class::Lease,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Free => "free",
            Class::Unpaid => "unpaid",
            Class::Paid => "paid",
            Class::Replay => "replay",
            Class::Hostile => "hostile",
            Class::Lease => "lease",
        }
    }

    /// Its share of the requests, in percent.
    fn weight(self) -> u32 {
        match self {
            Class::Free => 20,
            Class::Unpaid => 15,
            Class::Paid => 20,
            Class::Replay => 10,
            Class::Hostile => 15,
            Class::Lease => 20,
        }
    }

    fn pick(rng: &mut impl Rng) -> Class {
        let total: u32 = Class::ALL.iter().map(|c| c.weight()).sum();
        let mut roll = rng.gen_range(0..total);
        for class in Class::ALL {
            if roll < class.weight() {
                return class;
            }
            roll -= class.weight();
        }
        Class::Free
    }
}

// ---------------------------------------------------------------------------
// What happened.

#[derive(Debug, Default)]
struct ClassStats {
    sent: u64,
    expected: u64,
    /// Final answers other than the expected one, by "status code".
    unexpected: BTreeMap<String, u64>,
    /// Answers that were retried (503, no answer), by "status code".
    retried: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

#[derive(Debug, Default)]
struct Stats {
    classes: BTreeMap<&'static str, ClassStats>,
    /// Ticks that sent nothing, by reason.
    skipped: BTreeMap<String, u64>,
    tokens_paid: u64,
    tokens_paid_value: u64,
    tokens_granted: u64,
    tokens_granted_value: u64,
    granted_after_retry: u64,
    /// Fresh tokens not granted during the load that were granted when
    /// presented again after it (the contract: a swap that completed after
    /// the client was refused is granted to the next presentation).
    granted_late: u64,
    granted_late_value: u64,
    /// Fresh tokens that were not granted: token, amount, last answer.
    not_granted: Vec<NotGranted>,
    replays_granted: u64,
    leases_bought: u64,
    lease_value: u64,
}

impl Stats {
    fn class(&mut self, class: Class) -> &mut ClassStats {
        self.classes.entry(class.name()).or_default()
    }
}

/// A fresh token that was not granted.
#[derive(Debug, Clone)]
struct NotGranted {
    token: String,
    amount: u64,
    path: String,
    /// The final answer.
    kind: String,
    /// Every attempt: UTC time of day, and the answer.
    history: Vec<String>,
}

/// The UTC time of day, `HH:MM:SS.mmm` (to find a moment in the logs).
fn utc_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    )
}

/// One answer, as much of it as the soak reads.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    code: String,
    pass: Option<String>,
    retry_after: Option<u64>,
    from_upstream: bool,
}

impl Reply {
    fn kind(&self) -> String {
        if self.code.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {}", self.status, self.code)
        }
    }
}

/// What the upstream saw.
#[derive(Debug, Default)]
struct UpstreamStats {
    requests: AtomicU64,
    /// Requests that carried a token or a pass (never allowed).
    leaked: AtomicU64,
}

#[derive(Debug)]
struct Ctx {
    client: reqwest::Client,
    base: String,
    stats: Mutex<Stats>,
    pool: tokio::sync::Mutex<mpsc::Receiver<(String, u64)>>,
    /// Granted tokens and the path each paid for (a replay goes there).
    granted: Mutex<VecDeque<(String, String)>>,
    pass: Mutex<String>,
}

impl Ctx {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, path: &str, headers: &[(&str, String)]) -> Result<Reply, String> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let pass = header("x-paygress-pass");
        let retry_after = header("retry-after").and_then(|v| v.trim().parse().ok());
        let body = response
            .text()
            .await
            .map_err(|e| format!("no answer: reading the body: {e}"))?;
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v["code"].as_str())
            .unwrap_or_default()
            .to_string();
        let from_upstream = parsed.as_ref().is_some_and(|v| v["upstream"] == "soak");
        Ok(Reply {
            status,
            code,
            pass,
            retry_after,
            from_upstream,
        })
    }

    /// Sends once and records the answer against what `class` expects.
    async fn expect(
        &self,
        class: Class,
        path: &str,
        headers: &[(&str, String)],
        status: u16,
        code: Option<&str>,
    ) -> Option<Reply> {
        let start = Instant::now();
        let reply = self.send(path, headers).await;
        let took = start.elapsed();
        let mut stats = self.stats();
        let c = stats.class(class);
        c.sent += 1;
        c.latencies_us.push(took.as_micros() as u64);
        match &reply {
            Ok(r) if r.status == status && code.is_none_or(|code| r.code == code) => {
                if status == 200 && !r.from_upstream {
                    *c.unexpected
                        .entry("200 not from the upstream".into())
                        .or_default() += 1;
                } else {
                    c.expected += 1;
                }
            }
            Ok(r) => *c.unexpected.entry(r.kind()).or_default() += 1,
            Err(e) => *c.unexpected.entry(short(e)).or_default() += 1,
        }
        reply.ok()
    }
}

/// An error message without the URL's port numbers (so they group).
fn short(error: &str) -> String {
    let text: String = error.chars().take(120).collect();
    match text.find("http://") {
        Some(at) => format!("{}<url>", &text[..at]),
        None => text,
    }
}

// ---------------------------------------------------------------------------
// The requests.

async fn one(ctx: Arc<Ctx>, class: Class, n: u64) {
    match class {
        Class::Free => {
            let path = if n.is_multiple_of(2) {
                "/free/soak"
            } else {
                "/healthz"
            };
            ctx.expect(class, path, &[], 200, None).await;
        }
        Class::Unpaid => {
            let path = ["/soak/unpaid", "/premium/soak", "/compute/soak"][(n % 3) as usize];
            ctx.expect(class, path, &[], 402, None).await;
        }
        Class::Paid => {
            let next = ctx.pool.lock().await.try_recv().ok();
            match next {
                Some((token, amount)) => pay_fresh(&ctx, token, amount, n).await,
                None => skip(&ctx, "paid: the token pool was empty"),
            }
        }
        Class::Replay => {
            let token = {
                let granted = ctx.granted.lock().unwrap_or_else(|p| p.into_inner());
                if granted.is_empty() {
                    None
                } else {
                    granted.get((n as usize) % granted.len()).cloned()
                }
            };
            let Some((token, path)) = token else {
                return skip(&ctx, "replay: nothing granted yet");
            };
            let reply = ctx
                .expect(
                    class,
                    &path,
                    &[("x-cashu", token)],
                    400,
                    Some("token_already_spent"),
                )
                .await;
            if reply.is_some_and(|r| r.status == 200) {
                ctx.stats().replays_granted += 1;
            }
        }
        Class::Hostile => {
            let (path, header, value, code) = match n % 5 {
                0 => (
                    "/soak/x",
                    "x-cashu",
                    "cashuBnot-a-token".to_string(),
                    "malformed_token",
                ),
                1 => (
                    "/soak/x",
                    "x-cashu",
                    format!("cashuB{}", "A".repeat(20 * 1024)),
                    "malformed_token",
                ),
                2 => (
                    "/soak/x",
                    "authorization",
                    "Cashu cashuA%%%garbage".to_string(),
                    "malformed_token",
                ),
                3 => (
                    "/compute/soak",
                    "x-paygress-pass",
                    "p1.k2.bm90LWNsYWltcw.bm90LWEtc2lnbmF0dXJl".to_string(),
                    "pass_invalid",
                ),
                _ => (
                    "/compute/soak",
                    "x-paygress-pass",
                    format!("p1.k2.{}.c2ln", "A".repeat(2000)),
                    "pass_invalid",
                ),
            };
            ctx.expect(class, path, &[(header, value)], 400, Some(code))
                .await;
        }
        Class::Lease => {
            let pass = ctx.pass.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let header = match n % 3 {
                0 => ("x-paygress-pass", pass),
                1 => ("authorization", format!("Bearer {pass}")),
                _ => ("cookie", format!("theme=dark; paygress_pass={pass}")),
            };
            ctx.expect(class, "/compute/soak", &[header], 200, None)
                .await;
        }
    }
}

fn skip(ctx: &Ctx, why: &str) {
    *ctx.stats().skipped.entry(why.to_string()).or_default() += 1;
}

/// Pays with a fresh token; a 503 or no answer is retried with the same
/// token (after `Retry-After`, at most 2 s), as the contract asks of a
/// client. Returns the final answer.
async fn pay_fresh(ctx: &Ctx, token: String, amount: u64, n: u64) {
    let path = if amount == PREMIUM {
        format!("/premium/soak/{n}")
    } else {
        format!("/soak/paid/{n}")
    };
    let class = Class::Paid;
    {
        let mut stats = ctx.stats();
        stats.tokens_paid += 1;
        stats.tokens_paid_value += amount;
    }
    let start = Instant::now();
    let mut retried = false;
    let mut last = Err(String::new());
    let mut history = Vec::new();
    for attempt in 0..=PAID_RETRIES {
        let at = utc_now();
        last = ctx.send(&path, &[("x-cashu", token.clone())]).await;
        history.push(match &last {
            Ok(r) => format!(
                "{at} {}{}",
                r.kind(),
                r.retry_after
                    .map(|s| format!(" (Retry-After {s})"))
                    .unwrap_or_default()
            ),
            Err(e) => format!("{at} {}", short(e)),
        });
        let again = match &last {
            Ok(r) => r.status == 503,
            Err(_) => true,
        };
        if !again || attempt == PAID_RETRIES {
            break;
        }
        retried = true;
        let kind = match &last {
            Ok(r) => r.kind(),
            Err(e) => short(e),
        };
        *ctx.stats().class(class).retried.entry(kind).or_default() += 1;
        let wait = match &last {
            Ok(r) => Duration::from_secs(r.retry_after.unwrap_or(1).min(2)),
            Err(_) => Duration::from_millis(500),
        };
        tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
    }
    let took = start.elapsed();
    let mut stats = ctx.stats();
    let c = stats.class(class);
    c.sent += 1;
    c.latencies_us.push(took.as_micros() as u64);
    match &last {
        Ok(r) if r.status == 200 && r.from_upstream => {
            c.expected += 1;
            stats.tokens_granted += 1;
            stats.tokens_granted_value += amount;
            if retried {
                stats.granted_after_retry += 1;
            }
            drop(stats);
            let mut granted = ctx.granted.lock().unwrap_or_else(|p| p.into_inner());
            granted.push_back((token, path.clone()));
            if granted.len() > REPLAY_KEEP {
                granted.pop_front();
            }
        }
        other => {
            let kind = match other {
                Ok(r) if r.status == 200 => "200 not from the upstream".to_string(),
                Ok(r) => r.kind(),
                Err(e) => short(e),
            };
            *c.unexpected.entry(kind.clone()).or_default() += 1;
            stats.not_granted.push(NotGranted {
                token,
                amount,
                path,
                kind,
                history,
            });
        }
    }
}

/// Buys a lease on `/compute` with a fresh token: its pass and expiry.
async fn buy_lease(ctx: &Ctx, wallet: &TestWallet) -> (String, u64) {
    let token = wallet.token_of(wallet.mint_proofs(COMPUTE, 1).await);
    let reply = ctx
        .send("/compute/soak", &[("x-cashu", token.clone())])
        .await
        .unwrap_or_else(|e| panic!("buying a lease: {e}"));
    assert_eq!(reply.status, 200, "buying a lease: {reply:?}");
    let pass = reply
        .pass
        .clone()
        .unwrap_or_else(|| panic!("buying a lease: no X-Paygress-Pass: {reply:?}"));
    let (_, claims) = paygress_core::pass::decode_unverified(&pass)
        .unwrap_or_else(|e| panic!("the lease's pass cannot be read ({e}): {pass}"));
    let mut stats = ctx.stats();
    stats.tokens_paid += 1;
    stats.tokens_paid_value += COMPUTE;
    stats.tokens_granted += 1;
    stats.tokens_granted_value += COMPUTE;
    stats.leases_bought += 1;
    stats.lease_value += COMPUTE;
    drop(stats);
    ctx.granted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push_back((token, "/compute/soak".to_string()));
    (pass, claims.expires_at)
}

// ---------------------------------------------------------------------------
// The payer: a wallet funded in 32-sat proofs, and a pool of tokens.

/// Fills the pool with tokens of 32 and 64 sat until `stop`.
async fn produce(
    wallet: TestWallet,
    tx: mpsc::Sender<(String, u64)>,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut stash = Proofs::new();
    while !stop.load(Ordering::Relaxed) {
        let amount = if rng.gen_bool(0.5) {
            DEFAULT_PRICE
        } else {
            PREMIUM
        };
        let want = (amount / DEFAULT_PRICE) as usize;
        if stash.len() < want {
            stash.extend(wallet.mint_proofs(DEFAULT_PRICE, FUND_BATCH).await);
        }
        let token = wallet.token_of(stash.split_off(stash.len() - want));
        made.fetch_add(1, Ordering::Relaxed);
        if tx.send((token, amount)).await.is_err() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// The upstream.

async fn upstream(State(stats): State<Arc<UpstreamStats>>, headers: HeaderMap) -> String {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let carries = headers.iter().any(|(name, value)| {
        let value = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
        name == "x-cashu"
            || name == "x-paygress-pass"
            || value.contains("cashua")
            || value.contains("cashub")
            || value.contains("paygress_pass=")
            || (name == "authorization" && value.contains("p1."))
    });
    if carries {
        stats.leaked.fetch_add(1, Ordering::Relaxed);
    }
    json!({"upstream": "soak"}).to_string()
}

async fn start_upstream() -> (u16, Arc<UpstreamStats>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap_or_else(|e| panic!("upstream: cannot bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("upstream: no address: {e}"))
        .port();
    let stats = Arc::new(UpstreamStats::default());
    let app = axum::Router::new()
        .fallback(upstream)
        .with_state(stats.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("soak upstream stopped: {e}");
        }
    });
    (port, stats)
}

// ---------------------------------------------------------------------------
// Envoy, with the verifier cluster over every replica.

/// `envoy/envoy.yaml` rendered with one endpoint per verifier port in the
/// `paygress-verifier` cluster (Envoy's default round robin spreads the
/// callouts over them).
fn envoy_yaml(
    listen: u16,
    admin: u16,
    verifiers: &[u16],
    upstream: u16,
    plugin_config: &str,
) -> String {
    let first = verifiers[0];
    let rendered = render(
        &repo_file("envoy/envoy.yaml"),
        &[
            ("LISTEN_PORT", listen.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("VERIFIER_PORT", first.to_string()),
            ("UPSTREAM_PORT", upstream.to_string()),
            ("WASM_PATH", wasm_path().display().to_string()),
            ("PLUGIN_CONFIG", plugin_config.to_string()),
        ],
    );
    let lines: Vec<&str> = rendered.lines().collect();
    let needle = format!("port_value: {first} }}");
    let at: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("socket_address:") && l.contains(&needle))
        .map(|(i, _)| i)
        .collect();
    assert!(
        at.len() == 1
            && at[0] >= 2
            && lines[at[0] - 1].trim() == "address:"
            && lines[at[0] - 2].trim() == "- endpoint:",
        "envoy/envoy.yaml: cannot find the verifier's endpoint to add the others to"
    );
    let block: Vec<&str> = lines[at[0] - 2..=at[0]].to_vec();
    let mut out: Vec<String> = lines[..=at[0]].iter().map(|l| l.to_string()).collect();
    for port in &verifiers[1..] {
        for line in &block {
            out.push(line.replace(&needle, &format!("port_value: {port} }}")));
        }
    }
    out.extend(lines[at[0] + 1..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

async fn start_envoy(
    verifiers: &[u16],
    upstream: u16,
    plugin_config: &Value,
    dir: &std::path::Path,
) -> (ChildProcess, u16, u16) {
    let listen = free_port();
    let admin = free_port();
    let yaml = envoy_yaml(
        listen,
        admin,
        verifiers,
        upstream,
        &plugin_config.to_string(),
    );
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut command = Command::new(tools::envoy());
    command
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--concurrency")
        .arg("1")
        .arg("--log-level")
        .arg("warn")
        .arg("--component-log-level")
        .arg("wasm:warn")
        .env(PASS_KEY_ENV, PASS_KEY_SECRET);
    let mut process = ChildProcess::spawn_with_log("envoy", command, &dir.join("envoy.log"));
    process
        .wait_http_ok(
            &format!("{}/ready", loopback_url(admin)),
            ENVOY_READY_TIMEOUT,
        )
        .await;
    (process, listen, admin)
}

// ---------------------------------------------------------------------------
// Processes seen from /proc.

/// The pid of the `paygress serve` listening on `127.0.0.1:port`.
fn verifier_pid(port: u16) -> Option<u32> {
    let listen = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            args.contains(&b"serve".as_slice())
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes())
        })
}

/// VmRSS in KiB and the number of open descriptors.
fn rss_and_fds(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

#[derive(Debug, Clone)]
struct Sample {
    minutes: f64,
    rss_kib: u64,
    fds: u64,
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
}

// ---------------------------------------------------------------------------
// Reading the verifiers.

fn metric_sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `paygress wallet balance --database-url URL`: (balance, pending).
fn shared_balance(db_url: &str, mint: &str) -> Result<(u64, u64), String> {
    let out = run_paygress(
        &["wallet", "balance", "--database-url", db_url],
        &[("PAYGRESS_MNEMONIC", MNEMONIC)],
    );
    if !out.status.success() {
        return Err(describe(&out));
    }
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((balance_at(&json, mint), pending_at(&json, mint)))
}

/// The WARN and ERROR lines of a verifier's log, by message (fields cut).
fn log_problems(log: &str) -> BTreeMap<String, u64> {
    let mut found = BTreeMap::new();
    for line in log.lines() {
        let line = strip_ansi(line);
        let line = line.as_str();
        let level = if line.contains(" ERROR ") || line.contains("\"level\":\"ERROR\"") {
            "ERROR"
        } else if line.contains(" WARN ") || line.contains("\"level\":\"WARN\"") {
            "WARN"
        } else {
            continue;
        };
        let at = line.find(level).unwrap_or(0);
        let message: String = line[at..]
            .split('=')
            .next()
            .unwrap_or_default()
            .chars()
            .take(140)
            .collect();
        *found.entry(message.trim().to_string()).or_default() += 1;
    }
    found
}

/// `line` without ANSI colour sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    let code = run(args).await;
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let _ = wasm_path();
    let bin = paygress_bin();
    println!(
        "soak: {} min at {} req/s; verifier {}",
        args.minutes,
        args.rate,
        bin.display()
    );
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    // --- the stack --------------------------------------------------------
    let pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = TestMint::start(MintOptions::default()).await;
    let mint_url = mint.url();
    let config = plugin_config(Template::Plain, &mint_url, "deny");
    let mut replicas = Vec::new();
    for i in 0..2 {
        let id = format!("replica-{i}");
        replicas.push(
            Verifier::start_with_env(
                &config,
                &[
                    ("PAYGRESS_DATABASE_URL", db.as_str()),
                    ("PAYGRESS_MNEMONIC", MNEMONIC),
                    ("PAYGRESS_REPLICA_ID", id.as_str()),
                    ("PAYGRESS_RECOVERY_INTERVAL_SECS", "10"),
                    // The verifier's own default (the harness asks for debug).
                    ("PAYGRESS_LOG", VERIFIER_LOG),
                ],
            )
            .await,
        );
    }
    let (upstream_port, upstream_stats) = start_upstream().await;
    let envoy_dir = tempfile::Builder::new()
        .prefix("paygress-soak-envoy-")
        .tempdir()
        .unwrap_or_else(|e| panic!("a temp dir: {e}"));
    let ports: Vec<u16> = replicas.iter().map(Verifier::port).collect();
    let (envoy, listen, admin) =
        start_envoy(&ports, upstream_port, &config, envoy_dir.path()).await;
    // Envoy's rate limits (when its config has them) key on the client's
    // address, and the soak is one client: stop enforcing them (they still
    // count), unless asked to keep them.
    let rate_limits = if args.enforce_rate_limits {
        "enforced".to_string()
    } else {
        let answer = reqwest::Client::builder().no_proxy().build().ok().map(|c| {
            c.post(format!(
                "{}/runtime_modify?paygress_rate_limit.enforced=0",
                loopback_url(admin)
            ))
            .send()
        });
        match answer {
            Some(send) => match send.await {
                Ok(r) if r.status().is_success() => {
                    "not enforced (runtime key set to 0)".to_string()
                }
                Ok(r) => format!(
                    "left as configured (runtime_modify answered {})",
                    r.status()
                ),
                Err(e) => format!("left as configured (runtime_modify: {e})"),
            },
            None => "left as configured".to_string(),
        }
    };
    println!("soak: Envoy's rate limits: {rate_limits}");
    let mut watched: Vec<(String, u32)> = Vec::new();
    for (i, v) in replicas.iter().enumerate() {
        let pid = verifier_pid(v.port())
            .unwrap_or_else(|| panic!("replica-{i}: no process listens on {}", v.addr()));
        watched.push((format!("replica-{i}"), pid));
    }
    if let Some(pid) = envoy.pid() {
        watched.push(("envoy".to_string(), pid));
    }

    // --- the payer and its pool --------------------------------------------
    let wallet = TestWallet::new(&mint_url).await;
    let (tx, rx) = mpsc::channel(POOL_SIZE);
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap_or_else(|e| panic!("an HTTP client: {e}"));
    let ctx = Arc::new(Ctx {
        client,
        base: loopback_url(listen),
        stats: Mutex::default(),
        pool: tokio::sync::Mutex::new(rx),
        granted: Mutex::default(),
        pass: Mutex::default(),
    });
    let (pass, mut lease_expiry) = buy_lease(&ctx, &wallet).await;
    *ctx.pass.lock().unwrap_or_else(|p| p.into_inner()) = pass;
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(produce(wallet.clone(), tx, stop.clone(), made.clone()));
    // A head start for the pool: a few seconds of paid requests.
    let want = ((args.rate * f64::from(Class::Paid.weight()) / 100.0) * 10.0).min(POOL_SIZE as f64);
    let fill_deadline = Instant::now() + Duration::from_secs(60);
    while (made.load(Ordering::Relaxed) as f64) < want && Instant::now() < fill_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "soak: stack up (PostgreSQL, mint {mint_url}, replicas on :{} and :{}, Envoy :{listen}); {} tokens in the pool; load starts",
        ports[0],
        ports[1],
        made.load(Ordering::Relaxed)
    );

    // --- the load ----------------------------------------------------------
    let load_start = Instant::now();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut idle_samples: BTreeMap<String, Sample> = BTreeMap::new();
    let mut take_samples = |at: Duration, print: bool, idle: bool| {
        let minutes = at.as_secs_f64() / 60.0;
        for (name, pid) in &watched {
            match rss_and_fds(*pid) {
                Some((rss, fds)) => {
                    if print {
                        println!(
                            "[{:>3}:{:02}] {name:<9} pid {pid:<7} RSS {:>7.1} MiB  open fds {fds}",
                            at.as_secs() / 60,
                            at.as_secs() % 60,
                            rss as f64 / 1024.0
                        );
                    }
                    let sample = Sample {
                        minutes,
                        rss_kib: rss,
                        fds,
                    };
                    if idle {
                        idle_samples.insert(name.clone(), sample);
                    } else {
                        samples.entry(name.clone()).or_default().push(sample);
                    }
                }
                None => println!("[{minutes:>6.2}] {name}: pid {pid} is gone"),
            }
        }
    };
    take_samples(Duration::ZERO, true, false);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sample_every = Duration::from_secs_f64(args.sample_secs);
    let mut next_sample = sample_every;
    let mut next_minute = Duration::from_secs(60);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut ticks = 0u64;
    let mut rebuying: Option<tokio::task::JoinHandle<(String, u64)>> = None;
    loop {
        ticker.tick().await;
        let now = load_start.elapsed();
        if now >= duration {
            break;
        }
        ticks += 1;
        let class = Class::pick(&mut rng);
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    one(ctx, class, ticks).await;
                    drop(permit);
                });
            }
            Err(_) => skip(&ctx, "the driver had MAX_IN_FLIGHT requests in flight"),
        }
        if now >= next_sample {
            let minute = now >= next_minute;
            if minute {
                next_minute += Duration::from_secs(60);
            }
            take_samples(now, minute, false);
            if minute {
                let stats = ctx.stats();
                let unexpected: u64 = stats
                    .classes
                    .values()
                    .map(|c| c.unexpected.values().sum::<u64>())
                    .sum();
                println!(
                    "[{:>3}:{:02}] {} requests, {unexpected} unexpected; tokens paid {}, granted {}",
                    now.as_secs() / 60,
                    now.as_secs() % 60,
                    ticks,
                    stats.tokens_paid,
                    stats.tokens_granted
                );
            }
            next_sample += sample_every;
        }
        // A lease runs out after an hour: buy the next one before.
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if rebuying.is_none() && now_unix + 120 >= lease_expiry {
            let (ctx, wallet) = (ctx.clone(), wallet.clone());
            rebuying = Some(tokio::spawn(async move { buy_lease(&ctx, &wallet).await }));
        }
        if rebuying.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(handle) = rebuying.take() {
                let (pass, expiry) = handle
                    .await
                    .unwrap_or_else(|e| panic!("buying the next lease: {e}"));
                *ctx.pass.lock().unwrap_or_else(|p| p.into_inner()) = pass;
                lease_expiry = expiry;
            }
        }
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    // Let what is in flight finish.
    let drained = tokio::time::timeout(
        Duration::from_secs(120),
        in_flight.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await
    .is_ok();
    take_samples(load_start.elapsed(), true, false);
    stop.store(true, Ordering::Relaxed);
    ctx.pool.lock().await.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), producer).await;
    // Idle for a while: what load holds (connections, buffers) is given
    // back; what leaked stays.
    println!("soak: load stopped; idle for {} s ...", args.cooldown_secs);
    tokio::time::sleep(Duration::from_secs_f64(args.cooldown_secs)).await;
    take_samples(load_start.elapsed(), true, true);
    if let Some(handle) = rebuying.take() {
        let _ = handle.await;
    }

    // --- the money -----------------------------------------------------------
    let mut stats = std::mem::take(&mut *ctx.stats());
    // Every fresh token that was not granted during the load is presented
    // once more, as a patient client would: a swap that completed after its
    // client was refused must be granted now.
    if !stats.not_granted.is_empty() {
        println!(
            "soak: presenting the {} fresh tokens that were not granted once more ...",
            stats.not_granted.len()
        );
    }
    let late: Vec<(NotGranted, bool)> =
        futures::stream::iter(std::mem::take(&mut stats.not_granted))
            .map(|mut t| {
                let ctx = ctx.clone();
                async move {
                    for _ in 0..10 {
                        let at = utc_now();
                        let reply = ctx.send(&t.path, &[("x-cashu", t.token.clone())]).await;
                        let (kind, again, granted) = match &reply {
                            Ok(r) if r.status == 200 && r.from_upstream => {
                                ("200".to_string(), false, true)
                            }
                            Ok(r) => (r.kind(), r.status == 503, false),
                            Err(e) => (short(e), true, false),
                        };
                        t.history.push(format!("after the load: {at} {kind}"));
                        t.kind = kind;
                        if granted {
                            return (t, true);
                        }
                        if !again {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    (t, false)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    for (t, granted) in late {
        if granted {
            stats.tokens_granted += 1;
            stats.tokens_granted_value += t.amount;
            stats.granted_late += 1;
            stats.granted_late_value += t.amount;
        } else {
            stats.not_granted.push(t);
        }
    }
    let expected_value = stats.tokens_granted_value;
    let mut settled = shared_balance(&db, &mint_url);
    let settle_deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < settle_deadline {
        if matches!(settled, Ok((b, 0)) if b == expected_value) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        settled = shared_balance(&db, &mint_url);
    }
    let (balance, pending) = settled.clone().unwrap_or((0, 0));
    // Fresh tokens that were not granted: spent at the mint means the payer
    // lost its money.
    let mut spent_not_granted = Vec::new();
    for t in &stats.not_granted {
        let states = wallet.proof_states(&t.token).await;
        if states.iter().any(|s| *s != ProofState::Unspent) {
            spent_not_granted.push(json!({
                "path": t.path,
                "amount": t.amount,
                "answer": t.kind,
                "states": format!("{states:?}"),
                "attempts": t.history,
            }));
        }
    }
    let mut per_replica = Vec::new();
    let (mut paid_sum, mut received_sum) = (0, 0);
    for (i, v) in replicas.iter().enumerate() {
        let m = v.metrics().await;
        let paid = metric_sum(&m, "paygress_payments_total{outcome=\"paid\"}");
        let received = metric_sum(&m, "paygress_received_amount_total{");
        let mut outcomes = BTreeMap::new();
        for line in m
            .lines()
            .filter(|l| l.starts_with("paygress_payments_total{"))
        {
            if let Some((label, value)) = line.rsplit_once(' ') {
                outcomes.insert(label.to_string(), value.to_string());
            }
        }
        let problems = log_problems(&v.log());
        paid_sum += paid;
        received_sum += received;
        per_replica.push(json!({
            "replica": format!("replica-{i}"),
            "paid": paid,
            "received_sat": received,
            "payments_total": outcomes,
            "log_warn_error": problems,
            "redemptions_unclaimed": metric_sum(&m, "paygress_redemptions_unclaimed"),
            "mint_errors": metric_sum(&m, "paygress_mint_errors_total"),
        }));
    }
    let filter_counters: BTreeMap<String, u64> =
        match reqwest::get(format!("{}/stats/prometheus", loopback_url(admin))).await {
            Ok(r) => r
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("paygress_"))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((
                        name.trim_end_matches("{}").to_string(),
                        value.parse::<f64>().ok()? as u64,
                    ))
                })
                .collect(),
            Err(_) => BTreeMap::new(),
        };
    let leaked = upstream_stats.leaked.load(Ordering::Relaxed);

    let invariants = vec![
        (
            "the shared wallet holds the sum of what was granted, nothing pending",
            settled.is_ok() && balance == expected_value && pending == 0,
            format!(
                "balance {balance} sat, pending {pending} sat, granted {expected_value} sat{}",
                settled
                    .as_ref()
                    .err()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        ),
        (
            "no fresh token was spent without a grant",
            spent_not_granted.is_empty(),
            format!(
                "{} not granted, {} of them spent at the mint",
                stats.not_granted.len(),
                spent_not_granted.len()
            ),
        ),
        (
            "no replayed token was granted",
            stats.replays_granted == 0,
            format!("{} replays granted", stats.replays_granted),
        ),
        (
            "the verifiers counted each grant once",
            paid_sum == stats.tokens_granted,
            format!(
                "paygress_payments_total{{outcome=\"paid\"}} {paid_sum}, grants seen {}",
                stats.tokens_granted
            ),
        ),
        (
            "the verifiers received what was granted",
            received_sum == expected_value,
            format!(
                "paygress_received_amount_total {received_sum} sat, granted {expected_value} sat"
            ),
        ),
        (
            "no token or pass reached the upstream",
            leaked == 0,
            format!("{leaked} upstream requests carried one"),
        ),
    ];

    // --- the report ----------------------------------------------------------
    println!();
    println!(
        "== soak report: {:.1} min, {} requests ({:.1} req/s asked {}), 2 replicas on PostgreSQL behind Envoy with the filter",
        load_secs / 60.0,
        ticks,
        ticks as f64 / load_secs,
        args.rate
    );
    if !drained {
        println!("NOTE: requests still in flight 120 s after the load stopped");
    }
    println!(
        "{:<9}{:>8}{:>10}{:>12}{:>10}{:>10}",
        "class", "sent", "expected", "unexpected", "p50 ms", "p99 ms"
    );
    let mut classes_json = serde_json::Map::new();
    for class in Class::ALL {
        let Some(c) = stats.classes.get(class.name()) else {
            continue;
        };
        let mut lat = c.latencies_us.clone();
        lat.sort_unstable();
        let unexpected: u64 = c.unexpected.values().sum();
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        println!(
            "{:<9}{:>8}{:>10}{:>12}{:>10.1}{:>10.1}",
            class.name(),
            c.sent,
            c.expected,
            unexpected,
            p50.unwrap_or(0.0),
            p99.unwrap_or(0.0)
        );
        classes_json.insert(
            class.name().to_string(),
            json!({
                "sent": c.sent,
                "expected": c.expected,
                "unexpected": c.unexpected,
                "retried": c.retried,
                "p50_ms": p50,
                "p99_ms": p99,
            }),
        );
    }
    println!("errors by kind (final answers other than the expected one):");
    let mut any = false;
    for (name, c) in &stats.classes {
        for (kind, n) in &c.unexpected {
            println!("  {name}: {kind} x{n}");
            any = true;
        }
    }
    if !any {
        println!("  none");
    }
    for (name, c) in &stats.classes {
        for (kind, n) in &c.retried {
            println!("  (retried) {name}: {kind} x{n}");
        }
    }
    for (why, n) in &stats.skipped {
        println!("  (not sent) {why} x{n}");
    }
    println!("money:");
    println!(
        "  tokens paid {} ({} sat), granted {} ({} sat; {} after a retry, {} ({} sat) only when presented again after the load); leases bought {} ({} sat)",
        stats.tokens_paid,
        stats.tokens_paid_value,
        stats.tokens_granted,
        stats.tokens_granted_value,
        stats.granted_after_retry,
        stats.granted_late,
        stats.granted_late_value,
        stats.leases_bought,
        stats.lease_value
    );
    let mut failed = 0;
    for (what, ok, detail) in &invariants {
        println!("  [{}] {what}: {detail}", if *ok { "ok" } else { "FAILED" });
        if !ok {
            failed += 1;
        }
    }
    for r in &per_replica {
        println!(
            "  {}: paid {}, received {} sat, answers {}",
            r["replica"].as_str().unwrap_or_default(),
            r["paid"],
            r["received_sat"],
            r["payments_total"]
        );
    }
    println!(
        "  filter: {}",
        filter_counters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "resources (least-squares slope per minute; 'late' = the second half of the samples):"
    );
    let mut resources = serde_json::Map::new();
    for (name, s) in &samples {
        let rss: Vec<(f64, f64)> = s
            .iter()
            .map(|x| (x.minutes, x.rss_kib as f64 / 1024.0))
            .collect();
        let fds: Vec<(f64, f64)> = s.iter().map(|x| (x.minutes, x.fds as f64)).collect();
        let half = s.len() / 2;
        let (rss_slope, rss_late) = (slope(&rss), slope(&rss[half..]));
        let (fd_slope, fd_late) = (slope(&fds), slope(&fds[half..]));
        let first = s.first().cloned();
        let last = s.last().cloned();
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:+.2}"));
        let idle = idle_samples.get(name);
        let idle_text = idle.map_or(String::new(), |x| {
            format!(
                "; idle after: RSS {:.1} MiB, fds {}",
                x.rss_kib as f64 / 1024.0,
                x.fds
            )
        });
        println!(
            "  {name:<9} RSS {:.1} -> {:.1} MiB, {} MiB/min (late {}); fds {} -> {}, {}/min (late {}); {} samples{idle_text}",
            first.as_ref().map_or(0.0, |x| x.rss_kib as f64 / 1024.0),
            last.as_ref().map_or(0.0, |x| x.rss_kib as f64 / 1024.0),
            fmt(rss_slope),
            fmt(rss_late),
            first.as_ref().map_or(0, |x| x.fds),
            last.as_ref().map_or(0, |x| x.fds),
            fmt(fd_slope),
            fmt(fd_late),
            s.len()
        );
        resources.insert(
            name.clone(),
            json!({
                "rss_mib_per_min": rss_slope,
                "rss_mib_per_min_late": rss_late,
                "fds_per_min": fd_slope,
                "fds_per_min_late": fd_late,
                "samples": s.iter().map(|x| json!([x.minutes, x.rss_kib, x.fds])).collect::<Vec<_>>(),
                "idle_after": idle.map(|x| json!({"seconds": args.cooldown_secs, "rss_kib": x.rss_kib, "fds": x.fds})),
            }),
        );
    }
    if stats.not_granted.len() > 10 {
        println!(
            "  ({} fresh tokens not granted; the first 10, every attempt each; all in the report)",
            stats.not_granted.len()
        );
    }
    for t in stats.not_granted.iter().take(10) {
        println!(
            "  not granted ({} {} sat, {}): {}",
            t.path,
            t.amount,
            t.kind,
            t.history.join(" | ")
        );
    }
    for r in &per_replica {
        let problems = r["log_warn_error"].as_object().cloned().unwrap_or_default();
        let total: u64 = problems.values().filter_map(Value::as_u64).sum();
        println!(
            "  {} log: {total} WARN/ERROR lines",
            r["replica"].as_str().unwrap_or_default()
        );
        let mut top: Vec<(String, u64)> = problems
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        top.sort_by_key(|b| std::cmp::Reverse(b.1));
        for (message, n) in top.iter().take(5) {
            println!("      x{n} {message}");
        }
    }

    let report = json!({
        "started_at_unix": started_at,
        "minutes": load_secs / 60.0,
        "rate_asked": args.rate,
        "requests": ticks,
        "rate_sent": ticks as f64 / load_secs,
        "verifier_binary": bin.display().to_string(),
        "rate_limits": rate_limits,
        "replicas": 2,
        "store": "postgres",
        "classes": classes_json,
        "skipped": stats.skipped,
        "money": {
            "tokens_paid": stats.tokens_paid,
            "tokens_paid_sat": stats.tokens_paid_value,
            "tokens_granted": stats.tokens_granted,
            "tokens_granted_sat": stats.tokens_granted_value,
            "granted_after_retry": stats.granted_after_retry,
            "granted_late": stats.granted_late,
            "granted_late_sat": stats.granted_late_value,
            "leases_bought": stats.leases_bought,
            "shared_wallet_balance_sat": balance,
            "shared_wallet_pending_sat": pending,
            "not_granted": stats.not_granted.iter().map(|t| json!({"path": t.path, "amount": t.amount, "answer": t.kind, "attempts": t.history})).collect::<Vec<_>>(),
            "spent_not_granted": spent_not_granted,
            "replays_granted": stats.replays_granted,
            "upstream_requests": upstream_stats.requests.load(Ordering::Relaxed),
            "upstream_leaked": leaked,
        },
        "invariants": invariants.iter().map(|(w, ok, d)| json!({"invariant": w, "ok": ok, "detail": d})).collect::<Vec<_>>(),
        "verifiers": per_replica,
        "filter_counters": filter_counters,
        "resources": resources,
    });
    std::fs::create_dir_all(&args.out_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", args.out_dir.display()));
    let path = args.out_dir.join(format!("soak-{started_at}.json"));
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = std::fs::write(args.out_dir.join("last.json"), &text);
    println!("report: {}", path.display());
    // The logs, to look into what the report shows.
    for (i, v) in replicas.iter().enumerate() {
        let log = args
            .out_dir
            .join(format!("soak-{started_at}-replica-{i}.log"));
        let _ = std::fs::write(&log, v.log());
    }
    let _ = std::fs::copy(
        envoy_dir.path().join("envoy.log"),
        args.out_dir.join(format!("soak-{started_at}-envoy.log")),
    );
    println!(
        "logs: {}",
        args.out_dir
            .join(format!("soak-{started_at}-*.log"))
            .display()
    );
    drop(envoy);
    if failed > 0 {
        println!("soak: {failed} money invariant(s) FAILED");
        1
    } else {
        println!("soak: every money invariant holds");
        0
    }
}
