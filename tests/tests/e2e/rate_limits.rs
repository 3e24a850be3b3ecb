//! The rate limits of the shipped proxy configs (docs/rate-limits.md),
//! through each real proxy the harness starts: Envoy with the filter
//! (`envoy/envoy.yaml`), Envoy ext_authz (`envoy/envoy-ext-authz.yaml`),
//! NGINX (`nginx/paygress.conf.template`), the ingress-nginx rendering of
//! `k8s/nginx-ingress-paygress.yaml` with its `limit-*` annotations (alone,
//! and with the token snippets of docs/rate-limits.md), and Traefik
//! (`traefik/*.template`), each in front of the real verifier and a real
//! mint.
//!
//! The shipped limits are per second (bursts of 20 to 200): too many to
//! cross and count exactly in a test. So each config is rendered as
//! shipped, and then only the numbers of its buckets are set smaller (a
//! burst of a few requests, refilled once a minute), in the same places an
//! operator tunes them; what the buckets key on, which requests fall in
//! which class and how a refusal looks are the shipped ones.
//!
//! Every client of a test has an address of its own on loopback
//! (127.0.0.x), as clients on the Internet have, and the checks are:
//! - a flood of spent tokens (each one would be a callout, and a swap at the
//!   mint) gets 429 once the client's token bucket is empty, and the
//!   requests that reached the verifier's `/auth` (counted by a proxy in
//!   front of it) are bounded by that bucket, while another client's
//!   payments, sent meanwhile, get 200;
//! - a flood without a token (402s) gets 429 likewise, and the same client
//!   can still pay and use its lease's pass: paid traffic is not in the
//!   unpaid bucket (ingress-nginx has one bucket per client for everything:
//!   there another client's pass is checked instead);
//! - a flood of forged passes is bounded by the pass bucket, while a real
//!   pass of another client gets through;
//! - tokens from many clients at once empty the bucket shared by all
//!   clients (the mint's own protection);
//! - the 429 is JSON `{"code":"rate_limited"}` with `Retry-After` (Traefik:
//!   its own text answer, with `Retry-After`).
//!
//! No wall-clock threshold: how many requests may get through is computed
//! from how long each flood took (a refill a minute, so a few seconds add
//! at most one).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use paygress_tests::contract::{proxy_dir, render, repo_file, write_in, Answer, Proxy, Stack};
use paygress_tests::counting_proxy::CountingProxy;
use paygress_tests::envoy::{plugin_config, Template};
use paygress_tests::fixture::{COMPUTE, PASS_KEY_ENV, PASS_KEY_SECRET, PREMIUM};
use paygress_tests::{free_port, loopback_url, tools};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::ingress_nginx::{ingress_nginx_config, start_nginx};

// ---------------------------------------------------------------------------
// The clients.

/// Spends tokens that were spent already (each a callout and a swap).
const SPENT_FLOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Sends no token (402s), then pays and shows a pass.
const UNPAID_FLOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Buys a lease.
const LEASE_BUYER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// Shows forged passes.
const PASS_FLOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// Shows a real pass while others flood (ingress-nginx).
const PASS_USER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
/// Pays while others flood.
const PAYER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
/// The many clients that empty the bucket shared by all: 127.0.1.x.
fn many_clients() -> impl Iterator<Item = Ipv4Addr> {
    (1..=24).map(|i| Ipv4Addr::new(127, 0, 1, i))
}

/// How many requests a flood sends.
const FLOOD: usize = 12;

/// A client whose connections come from `ip`.
fn client(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(ip))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|err| panic!("cannot build an HTTP client on {ip}: {err}"))
}

/// `GET url` from `client` with `headers`.
async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status().as_u16();
    let mut map = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in response.headers() {
        map.entry(name.as_str().to_ascii_lowercase())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = response
        .text()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: reading the body: {err}"));
    Answer {
        status,
        headers: map,
        body,
    }
}

/// The pass a grant handed back in its `paygress_pass` cookie (every proxy
/// passes that one; Traefik only that one).
fn pass_cookie(name: &str, answer: &Answer) -> String {
    answer
        .headers
        .get("set-cookie")
        .and_then(|all| all.iter().find_map(|c| c.strip_prefix("paygress_pass=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("[{name}] the lease's grant has no pass cookie: {answer:?}"))
}

// ---------------------------------------------------------------------------
// The limits the tests render.

/// One bucket as a test renders it: `at_once` requests from a standing
/// start, then `per_minute` more each minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    at_once: u32,
    per_minute: u32,
}

impl Bucket {
    /// The most requests this bucket lets through in `elapsed` from full.
    fn most(self, elapsed: Duration) -> usize {
        let refilled = (f64::from(self.per_minute) * elapsed.as_secs_f64() / 60.0).ceil();
        self.at_once as usize + refilled as usize + 1
    }
}

/// A token's bucket per client.
const TOKEN: Bucket = Bucket {
    at_once: 3,
    per_minute: 1,
};
/// The bucket of all clients' tokens together: more than the per-client
/// ones, fewer than [`many_clients`] (the earlier checks take at most 8).
const TOKEN_ALL: Bucket = Bucket {
    at_once: 12,
    per_minute: 12,
};
/// The unpaid bucket per client.
const UNPAID: Bucket = Bucket {
    at_once: 4,
    per_minute: 1,
};
/// The pass bucket per client.
const PASS: Bucket = Bucket {
    at_once: 5,
    per_minute: 1,
};

/// How a proxy's 429 looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `{"error":"Too Many Requests","code":"rate_limited"}`, `Retry-After: 1`.
    Json,
    /// Traefik's own: a text body, `Retry-After` in seconds.
    Text,
}

/// What differs between the proxies: the buckets as the test renders them.
#[derive(Debug, Clone, Copy)]
struct Shape {
    refusal: Refusal,
    token: Bucket,
    unpaid: Bucket,
    pass: Bucket,
    /// A bucket every request of a client counts in too, whatever it
    /// carries (ingress-nginx's annotations): a client out of it is out of
    /// everything.
    per_client: Option<Bucket>,
    /// The bucket of all clients' tokens, when there is one.
    token_all: Option<Bucket>,
}

impl Shape {
    /// The proxies that class requests: token, unpaid and pass buckets per
    /// client, and one for all clients' tokens.
    fn classes(refusal: Refusal) -> Self {
        Self {
            refusal,
            token: TOKEN,
            unpaid: UNPAID,
            pass: PASS,
            per_client: None,
            token_all: Some(TOKEN_ALL),
        }
    }
}

// ---------------------------------------------------------------------------
// The checks, the same for every proxy.

/// What one flood did.
struct Flood {
    answers: Vec<Answer>,
    elapsed: Duration,
    /// Requests that reached the verifier's `/auth` meanwhile.
    auth_calls: usize,
}

/// Sends [`FLOOD`] requests one after another from `ip` to
/// `base/<path>-<i>` with `headers`, counting what reached `/auth`.
async fn flood(
    base: &str,
    path: &str,
    ip: Ipv4Addr,
    headers: &[(&str, &str)],
    auth: &CountingProxy,
) -> Flood {
    let client = client(ip);
    let before = auth.count("GET /auth");
    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0..FLOOD {
        answers.push(get(&client, &format!("{base}{path}-{i}"), headers).await);
    }
    Flood {
        answers,
        elapsed: started.elapsed(),
        auth_calls: auth.count("GET /auth") - before,
    }
}

/// A 429 of the rate limiter, as this proxy answers it.
fn assert_rate_limited(name: &str, answer: &Answer, shape: Shape) {
    assert_eq!(answer.status, 429, "[{name}] {answer:?}");
    let retry = answer
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("[{name}] a 429 without Retry-After in seconds: {answer:?}"));
    assert!(retry >= 1, "[{name}] Retry-After {retry}: {answer:?}");
    match shape.refusal {
        Refusal::Json => {
            assert!(
                answer
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "[{name}] the 429 is not JSON: {answer:?}"
            );
            let body: Json = answer.json();
            assert_eq!(body["code"], "rate_limited", "[{name}] {answer:?}");
            assert_eq!(body["error"], "Too Many Requests", "[{name}] {answer:?}");
        }
        Refusal::Text => {
            assert!(
                answer.body.contains("Too Many Requests"),
                "[{name}] {answer:?}"
            );
        }
    }
}

/// The flood's answers: at least the bucket's `at_once` got through (it
/// was full), each with an answer `through` accepts, at most what the
/// bucket allows in the flood's time; every other one is the rate
/// limiter's 429. Returns how many got through.
fn assert_bounded(
    name: &str,
    what: &str,
    flood: &Flood,
    bucket: Bucket,
    shape: Shape,
    through: impl Fn(&Answer) -> bool,
) -> usize {
    // Every request counts in its class's bucket, and in the client's own
    // bucket when there is one: the smaller of the two bounds it.
    let buckets: Vec<Bucket> = std::iter::once(bucket).chain(shape.per_client).collect();
    let least = buckets
        .iter()
        .map(|b| b.at_once as usize)
        .min()
        .unwrap_or(0);
    let mut passed = 0;
    for answer in &flood.answers {
        if answer.status == 429 {
            assert_rate_limited(name, answer, shape);
        } else {
            assert!(through(answer), "[{name}] {what}: {answer:?}");
            passed += 1;
        }
    }
    let most = buckets
        .iter()
        .map(|b| b.most(flood.elapsed))
        .min()
        .unwrap_or(0);
    let statuses: Vec<u16> = flood.answers.iter().map(|a| a.status).collect();
    eprintln!(
        "[{name}] {what}: {statuses:?} in {:?}, {} at /auth",
        flood.elapsed, flood.auth_calls
    );
    assert!(
        passed >= least && passed <= most,
        "[{name}] {what}: {passed} of {FLOOD} got through in {:?}, the buckets allow {least} to {most}: {statuses:?}",
        flood.elapsed
    );
    passed
}

fn refused(answer: &Answer, status: u16, code: &str) -> bool {
    answer.status == status
        && serde_json::from_str::<Json>(&answer.body)
            .is_ok_and(|body| body["code"].as_str() == Some(code))
}

/// Every check of the module doc through the proxy at `base`.
async fn check_rate_limits(
    name: &str,
    base: &str,
    stack: &Stack,
    auth: &CountingProxy,
    shape: Shape,
) {
    let wallet = &stack.wallet;

    // A token spent at the verifier directly: well formed, of the accepted
    // mint, enough for /premium, so every proxy (the filter too) asks the
    // verifier about it.
    let spent = wallet.token(PREMIUM).await;
    let spend = paygress_tests::verifier::pay(&stack.verifier.auth("/premium/spend"), &spent).await;
    assert_eq!(spend.status, 200, "[{name}] spending the token: {spend:?}");
    let payments = [wallet.token(PREMIUM).await, wallet.token(PREMIUM).await];

    eprintln!("[{name}] spent tokens from one client, payments from another meanwhile");
    let payer = client(PAYER);
    let paying = async {
        let mut answers = Vec::new();
        for (i, token) in payments.iter().enumerate() {
            answers.push(
                get(
                    &payer,
                    &format!("{base}/premium/paid-{i}"),
                    &[("X-Cashu", token)],
                )
                .await,
            );
        }
        answers
    };
    let spent_headers = [("X-Cashu", spent.as_str())];
    let (spent_flood, paid) = tokio::join!(
        flood(base, "/premium/spent", SPENT_FLOOD, &spent_headers, auth),
        paying
    );
    for answer in &paid {
        assert_eq!(
            answer.status, 200,
            "[{name}] a payment while another client floods: {answer:?}"
        );
    }
    let passed = assert_bounded(
        name,
        "spent tokens",
        &spent_flood,
        shape.token,
        shape,
        |a| refused(a, 400, "token_already_spent"),
    );
    // What reached /auth: the flood's requests that got through, and the
    // two payments.
    assert!(
        spent_flood.auth_calls <= passed + paid.len(),
        "[{name}] {} requests reached /auth for {passed} spent tokens let through and {} payments",
        spent_flood.auth_calls,
        paid.len()
    );

    eprintln!("[{name}] no token from one client; then it pays and shows a pass");
    let unpaid = flood(base, "/premium/unpaid", UNPAID_FLOOD, &[], auth).await;
    let passed = assert_bounded(name, "no token", &unpaid, shape.unpaid, shape, |a| {
        a.status == 402 && a.header("x-cashu").is_some_and(|c| c.starts_with("creqA"))
    });
    assert!(
        unpaid.auth_calls <= passed,
        "[{name}] {} requests reached /auth for {passed} let through",
        unpaid.auth_calls
    );

    // A lease, bought by another client.
    let lease_token = wallet.token(COMPUTE).await;
    let bought = get(
        &client(LEASE_BUYER),
        &format!("{base}/compute/buy"),
        &[("X-Cashu", &lease_token)],
    )
    .await;
    assert_eq!(bought.status, 200, "[{name}] buying a lease: {bought:?}");
    let pass = pass_cookie(name, &bought);

    let flooder = client(UNPAID_FLOOD);
    if shape.per_client.is_none() {
        // The same client, its unpaid bucket empty: a free path is unpaid
        // too (the proxy cannot know it is free before asking).
        let free = get(&flooder, &format!("{base}/free/after"), &[]).await;
        assert_rate_limited(name, &free, shape);
        // Paying, and showing a pass, are not in the unpaid bucket.
        let token = wallet.token(PREMIUM).await;
        let answer = get(
            &flooder,
            &format!("{base}/premium/after"),
            &[("X-Cashu", &token)],
        )
        .await;
        assert_eq!(
            answer.status, 200,
            "[{name}] a payment after the client's own 402 flood: {answer:?}"
        );
        let answer = get(
            &flooder,
            &format!("{base}/compute/after"),
            &[("X-Paygress-Pass", &pass)],
        )
        .await;
        assert_eq!(
            answer.status, 200,
            "[{name}] a pass after the client's own 402 flood: {answer:?}"
        );
    } else {
        // One bucket per client for everything: that client is out of it.
        let answer = get(
            &flooder,
            &format!("{base}/compute/after"),
            &[("X-Paygress-Pass", &pass)],
        )
        .await;
        assert_rate_limited(name, &answer, shape);
    }

    eprintln!("[{name}] forged passes from one client, a real one from another meanwhile");
    let (kid, rest) = pass
        .strip_prefix("p1.")
        .and_then(|p| p.split_once('.'))
        .unwrap_or_else(|| panic!("[{name}] not a pass: {pass}"));
    let (claims, _) = rest
        .split_once('.')
        .unwrap_or_else(|| panic!("[{name}] not a pass: {pass}"));
    let forged = format!("p1.{kid}.{claims}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let user = client(if shape.per_client.is_none() {
        UNPAID_FLOOD
    } else {
        PASS_USER
    });
    let forged_headers = [("X-Paygress-Pass", forged.as_str())];
    let real_headers = [("X-Paygress-Pass", pass.as_str())];
    let meanwhile = format!("{base}/compute/meanwhile");
    let (forged_flood, real) = tokio::join!(
        flood(base, "/compute/forged", PASS_FLOOD, &forged_headers, auth),
        get(&user, &meanwhile, &real_headers)
    );
    assert_eq!(
        real.status, 200,
        "[{name}] a real pass while another client floods forged ones: {real:?}"
    );
    let passed = assert_bounded(
        name,
        "forged passes",
        &forged_flood,
        shape.pass,
        shape,
        |a| refused(a, 400, "pass_invalid"),
    );
    assert!(
        forged_flood.auth_calls <= passed + 1,
        "[{name}] {} requests reached /auth for {passed} forged passes let through and one real one",
        forged_flood.auth_calls
    );

    if let Some(token_all) = shape.token_all {
        eprintln!("[{name}] spent tokens from many clients: the bucket of all clients");
        let before = auth.count("GET /auth");
        let started = Instant::now();
        let mut answers = Vec::new();
        for ip in many_clients() {
            answers.push(
                get(
                    &client(ip),
                    &format!("{base}/premium/many"),
                    &[("X-Cashu", &spent)],
                )
                .await,
            );
        }
        let elapsed = started.elapsed();
        let calls = auth.count("GET /auth") - before;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        eprintln!("[{name}] many clients: {statuses:?} in {elapsed:?}, {calls} at /auth");
        let mut passed = 0;
        for answer in &answers {
            if answer.status == 429 {
                assert_rate_limited(name, answer, shape);
            } else {
                assert!(
                    refused(answer, 400, "token_already_spent"),
                    "[{name}] {answer:?}"
                );
                passed += 1;
            }
        }
        // Every client is new, each within its own bucket: only the shared
        // one stops them, after what the earlier checks left in it.
        assert!(
            passed < answers.len() && passed <= token_all.most(elapsed),
            "[{name}] {passed} of {} tokens of new clients got through: {statuses:?}",
            answers.len()
        );
        assert!(calls <= passed, "[{name}] {calls} at /auth for {passed}");
    }
}

// ---------------------------------------------------------------------------
// The stack: the verifier behind a counting proxy.

/// The stack, and a counting proxy in front of its verifier: the proxies
/// under test are pointed at the counting proxy.
async fn stack() -> (Stack, CountingProxy) {
    let stack = Stack::start(20_000).await;
    let auth = CountingProxy::start(&stack.verifier.url());
    (stack, auth)
}

// ---------------------------------------------------------------------------
// Envoy (both configs): the local_ratelimit filter's descriptors.

/// The local_ratelimit filter of a rendered Envoy config (the first
/// listener's connection manager).
fn local_ratelimit(config: &mut Yaml) -> &mut Yaml {
    let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_sequence_mut()
        .unwrap_or_else(|| panic!("no http_filters"));
    let first = filters
        .first_mut()
        .unwrap_or_else(|| panic!("no http filter"));
    assert_eq!(
        first["name"].as_str(),
        Some("envoy.filters.http.local_ratelimit"),
        "the rate limits must come first"
    );
    &mut first["typed_config"]
}

/// The descriptor of `class` (per client, or all clients together).
fn descriptor<'a>(filter: &'a mut Yaml, class: &str, per_client: bool) -> &'a mut Yaml {
    let descriptors = filter["descriptors"]
        .as_sequence_mut()
        .unwrap_or_else(|| panic!("no descriptors"));
    let mut found = descriptors.iter_mut().filter(|d| {
        let entries = d["entries"].as_sequence().cloned().unwrap_or_default();
        entries
            .iter()
            .any(|e| e["key"] == "paygress_class" && e["value"].as_str() == Some(class))
            && entries.len() == if per_client { 2 } else { 1 }
    });
    let one = found
        .next()
        .unwrap_or_else(|| panic!("no descriptor for {class} (per client: {per_client})"));
    assert!(found.next().is_none(), "two descriptors for {class}");
    one
}

/// Sets the bucket of a descriptor.
fn set_bucket(descriptor: &mut Yaml, bucket: Bucket) {
    let text = format!(
        "{{ max_tokens: {}, tokens_per_fill: {}, fill_interval: 60s }}",
        bucket.at_once, bucket.per_minute
    );
    descriptor["token_bucket"] =
        serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
}

/// `relative` rendered with `values`, its buckets set to the test's.
fn envoy_config(relative: &str, values: &[(&str, String)]) -> String {
    let rendered = render(&repo_file(relative), values);
    let mut config: Yaml =
        serde_yaml::from_str(&rendered).unwrap_or_else(|err| panic!("{relative}: {err}"));
    let filter = local_ratelimit(&mut config);
    for (class, per_client, bucket) in [
        ("token", true, TOKEN),
        ("token", false, TOKEN_ALL),
        ("unpaid", true, UNPAID),
        ("pass", true, PASS),
    ] {
        set_bucket(descriptor(filter, class, per_client), bucket);
    }
    serde_yaml::to_string(&config).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// Starts Envoy on `config`; returns it and its admin port.
async fn start_envoy(name: &str, config: &str, port: u16) -> Proxy {
    let dir = proxy_dir(name);
    let path = write_in(dir.path(), "envoy.yaml", config);
    let mut command = Command::new(tools::envoy());
    command
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        // Buckets are per Envoy process, shared by its worker threads.
        .arg("--concurrency")
        .arg("2")
        .arg("--log-level")
        .arg("warn")
        .env(PASS_KEY_ENV, PASS_KEY_SECRET);
    Proxy::start(name, port, command, dir).await
}

/// An Envoy admin stat (`/stats`, text), 0 when absent.
async fn envoy_stat(admin: u16, stat: &str) -> u64 {
    let text = get(
        &client(Ipv4Addr::LOCALHOST),
        &format!("{}/stats", loopback_url(admin)),
        &[],
    )
    .await
    .body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{stat}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// After the checks: the limiter counted its refusals, said so in its
/// headers, and its runtime key turns enforcement off without a restart
/// (what a benchmark from one address needs).
async fn check_envoy_runtime(name: &str, base: &str, admin: u16) {
    let limited = envoy_stat(
        admin,
        "paygress_rate_limit.http_local_rate_limit.rate_limited",
    )
    .await;
    assert!(limited > 0, "[{name}] the limiter counted no refusal");
    // The unpaid client's bucket is empty (a refill since is spent at once).
    let flooder = client(UNPAID_FLOOD);
    let mut answers = Vec::new();
    while answers.len() < 10 {
        let answer = get(&flooder, &format!("{base}/premium/still"), &[]).await;
        let limited = answer.status == 429;
        answers.push(answer);
        if limited {
            break;
        }
    }
    let last = answers
        .last()
        .unwrap_or_else(|| panic!("[{name}] no answer"));
    assert_eq!(last.status, 429, "[{name}] {answers:?}");
    assert_eq!(
        last.header("x-ratelimit-remaining"),
        Some("0"),
        "[{name}] {last:?}"
    );
    let modify = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|err| panic!("{err}"))
        .post(format!(
            "{}/runtime_modify?paygress_rate_limit.enforced=0",
            loopback_url(admin)
        ))
        .send()
        .await
        .unwrap_or_else(|err| panic!("[{name}] runtime_modify: {err}"));
    assert!(
        modify.status().is_success(),
        "[{name}] runtime_modify: {modify:?}"
    );
    let answer = get(&flooder, &format!("{base}/premium/unenforced"), &[]).await;
    assert_eq!(
        answer.status, 402,
        "[{name}] with paygress_rate_limit.enforced=0: {answer:?}"
    );
}

#[tokio::test]
async fn envoy_with_the_filter_limits_tokens_unpaid_requests_and_passes() {
    let (stack, auth) = stack().await;
    let port = free_port();
    let admin = free_port();
    let plugin = plugin_config(Template::Plain, &stack.mint.url(), "deny");
    let config = envoy_config(
        "envoy/envoy.yaml",
        &[
            ("LISTEN_PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("VERIFIER_PORT", auth.port().to_string()),
            ("UPSTREAM_PORT", stack.upstream.port().to_string()),
            (
                "WASM_PATH",
                paygress_tests::envoy::wasm_path().display().to_string(),
            ),
            ("PLUGIN_CONFIG", plugin.to_string()),
        ],
    );
    let envoy = start_envoy("envoy-filter-limits", &config, port).await;
    let shape = Shape::classes(Refusal::Json);
    check_rate_limits("envoy", &envoy.url(), &stack, &auth, shape).await;
    check_envoy_runtime("envoy", &envoy.url(), admin).await;
}

#[tokio::test]
async fn envoy_ext_authz_limits_tokens_unpaid_requests_and_passes() {
    let (stack, auth) = stack().await;
    let port = free_port();
    let admin = free_port();
    let config = envoy_config(
        "envoy/envoy-ext-authz.yaml",
        &[
            ("LISTEN_PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("VERIFIER_PORT", auth.port().to_string()),
            ("UPSTREAM_PORT", stack.upstream.port().to_string()),
        ],
    );
    let envoy = start_envoy("envoy-ext-authz-limits", &config, port).await;
    let shape = Shape::classes(Refusal::Json);
    check_rate_limits("envoy-ext-authz", &envoy.url(), &stack, &auth, shape).await;
    check_envoy_runtime("envoy-ext-authz", &envoy.url(), admin).await;
}

/// Every Envoy config, and the Istio gateway's EnvoyFilter, carry the same
/// rate limits (so that what runs above is what Istio gets): the same
/// local_ratelimit filter, first, and the same JSON 429.
#[test]
fn every_envoy_config_and_the_istio_gateway_have_the_same_rate_limits() {
    let hcm_of = |relative: &str| -> Json {
        let template = repo_file(relative);
        let mut names: Vec<&str> = paygress_tests::render::placeholders(&template);
        names.sort_unstable();
        names.dedup();
        let values: Vec<(&str, String)> = names
            .iter()
            .map(|n| {
                let value = match *n {
                    "PLUGIN_CONFIG" => "{}".to_string(),
                    n if n.ends_with("_PORT") => "1".to_string(),
                    _ => "/x".to_string(),
                };
                (*n, value)
            })
            .collect();
        let yaml: Yaml = serde_yaml::from_str(&render(&template, &values))
            .unwrap_or_else(|err| panic!("{relative}: {err}"));
        let json = serde_json::to_value(yaml).unwrap_or_else(|err| panic!("{relative}: {err}"));
        json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            .clone()
    };
    let reference = hcm_of("envoy/envoy.yaml");
    let filter = reference["http_filters"][0].clone();
    assert_eq!(filter["name"], "envoy.filters.http.local_ratelimit");
    assert!(reference["local_reply_config"].is_object());
    assert_eq!(reference["use_remote_address"], true);
    for relative in [
        "envoy/envoy-ext-authz.yaml",
        "envoy/envoy-istio-cluster-name.yaml",
    ] {
        let hcm = hcm_of(relative);
        assert_eq!(
            hcm["http_filters"][0], filter,
            "{relative}: another rate limit filter"
        );
        assert_eq!(
            hcm["local_reply_config"], reference["local_reply_config"],
            "{relative}: another 429"
        );
        assert_eq!(hcm["use_remote_address"], true, "{relative}");
    }

    let text = repo_file("k8s/istio-rate-limits.yaml");
    let docs: Vec<Json> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|err| panic!("k8s/istio-rate-limits.yaml: {err}"));
            serde_json::to_value(yaml).unwrap_or_else(|err| panic!("{err}"))
        })
        .filter(|d| !d.is_null())
        .collect();
    let envoy_filter = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyFilter")
        .unwrap_or_else(|| panic!("k8s/istio-rate-limits.yaml has no EnvoyFilter"));
    assert_eq!(
        envoy_filter["spec"]["workloadSelector"]["labels"]["istio"],
        "ingressgateway"
    );
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .unwrap_or_else(|| panic!("no configPatches"));
    let insert = patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_FILTER")
        .unwrap_or_else(|| panic!("no HTTP_FILTER patch"));
    assert_eq!(insert["patch"]["operation"], "INSERT_FIRST");
    assert_eq!(insert["match"]["context"], "GATEWAY");
    assert_eq!(
        insert["patch"]["value"], filter,
        "k8s/istio-rate-limits.yaml: not envoy/envoy.yaml's rate limit filter"
    );
    let merge = patches
        .iter()
        .find(|p| p["applyTo"] == "NETWORK_FILTER")
        .unwrap_or_else(|| panic!("no NETWORK_FILTER patch"));
    assert_eq!(merge["patch"]["operation"], "MERGE");
    assert_eq!(
        merge["patch"]["value"]["typed_config"]["local_reply_config"],
        reference["local_reply_config"],
        "k8s/istio-rate-limits.yaml: not envoy/envoy.yaml's 429"
    );
}

// ---------------------------------------------------------------------------
// NGINX: limit_req zones, set in the rendered text.

/// Sets `rate=` of the `limit_req_zone` of `zone` and `burst=` of its
/// `limit_req`, in NGINX text: `at_once` from a standing start is the
/// burst plus one.
fn set_zone(conf: &str, zone: &str, bucket: Bucket) -> String {
    let mut zone_lines = 0;
    let mut limit_lines = 0;
    let lines: Vec<String> = conf
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let names_zone = |prefix: &str| words.iter().any(|w| w.starts_with(prefix));
            if words.first() == Some(&"limit_req_zone") && names_zone(&format!("zone={zone}:")) {
                zone_lines += 1;
                replace_word(line, "rate=", &format!("rate={}r/m", bucket.per_minute))
            } else if words.first() == Some(&"limit_req")
                && words.contains(&format!("zone={zone}").as_str())
            {
                limit_lines += 1;
                replace_word(line, "burst=", &format!("burst={}", bucket.at_once - 1))
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!((zone_lines, limit_lines), (1, 1), "zone {zone} in:\n{conf}");
    lines.join("\n")
}

/// `line` with its word starting with `prefix` replaced by `with` (a
/// trailing `;` kept).
fn replace_word(line: &str, prefix: &str, with: &str) -> String {
    let word = line
        .split_whitespace()
        .find(|w| w.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {line}"));
    let end = if word.ends_with(';') { ";" } else { "" };
    line.replacen(word, &format!("{with}{end}"), 1)
}

#[tokio::test]
async fn nginx_limits_tokens_unpaid_requests_and_passes() {
    let (stack, auth) = stack().await;
    let port = free_port();
    let mut conf = render(
        &repo_file("nginx/paygress.conf.template"),
        &[
            ("LISTEN_PORT", port.to_string()),
            ("VERIFIER_ADDR", format!("127.0.0.1:{}", auth.port())),
            ("UPSTREAM_ADDR", stack.upstream.addr()),
        ],
    );
    for (zone, bucket) in [
        ("paygress_token", TOKEN),
        ("paygress_token_all", TOKEN_ALL),
        ("paygress_unpaid", UNPAID),
        ("paygress_pass", PASS),
    ] {
        conf = set_zone(&conf, zone, bucket);
    }
    let nginx = start_nginx("nginx-limits", port, &conf).await;
    let shape = Shape::classes(Refusal::Json);
    check_rate_limits("nginx", &nginx.url(), &stack, &auth, shape).await;
}

// ---------------------------------------------------------------------------
// ingress-nginx: the limit annotations, rendered as the controller does.

/// The `limit-*` annotations of the protected Ingress.
fn limit_annotations() -> Vec<(String, u32)> {
    let text = repo_file("k8s/nginx-ingress-paygress.yaml");
    let ingress: Yaml = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|err| panic!("k8s/nginx-ingress-paygress.yaml: {err}"))
        })
        .find(|d| d["kind"] == "Ingress" && d["metadata"]["name"] == "my-app-paid")
        .unwrap_or_else(|| panic!("no Ingress my-app-paid"));
    let annotations = ingress["metadata"]["annotations"]
        .as_mapping()
        .unwrap_or_else(|| panic!("my-app-paid has no annotations"));
    annotations
        .iter()
        .filter_map(|(k, v)| {
            let key = k
                .as_str()?
                .strip_prefix("nginx.ingress.kubernetes.io/limit-")?;
            let value = v
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("limit-{key} is not a number: {v:?}"));
            Some((key.to_string(), value))
        })
        .collect()
}

/// What ingress-nginx (v1.x `nginx.tmpl`) writes for the `limit-rps`,
/// `limit-burst-multiplier` and `limit-connections` annotations, with the
/// controller ConfigMap's `limit-req-status-code` and
/// `limit-conn-status-code` at 429: (http block, location block).
fn ingress_nginx_limits(annotations: &[(String, u32)]) -> (String, String) {
    let value = |key: &str| annotations.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    let id = "paygress_demo_my_app_paid_0";
    let mut http = format!(
        "    geo $remote_addr $allowlist_{id} {{ default 0; }}\n    map $allowlist_{id} $limit_{id} {{ 0 $binary_remote_addr; 1 \"\"; }}\n    limit_req_status 429;\n    limit_conn_status 429;\n"
    );
    let mut location = String::new();
    if let Some(connections) = value("connections") {
        http.push_str(&format!(
            "    limit_conn_zone $limit_{id} zone={id}_conn:5m;\n"
        ));
        location.push_str(&format!(
            "            limit_conn {id}_conn {connections};\n"
        ));
    }
    if let Some(rps) = value("rps") {
        let burst = rps * value("burst-multiplier").unwrap_or(5);
        http.push_str(&format!(
            "    limit_req_zone $limit_{id} zone={id}_rps:5m rate={rps}r/s;\n"
        ));
        location.push_str(&format!(
            "            limit_req zone={id}_rps burst={burst} nodelay;\n"
        ));
    }
    (http, location)
}

/// The code block (```nginx) between `<!-- {marker}: begin -->` and
/// `<!-- {marker}: end -->` in docs/rate-limits.md.
fn doc_block(marker: &str) -> String {
    let doc = repo_file("docs/rate-limits.md");
    let begin = format!("<!-- {marker}: begin -->");
    let end = format!("<!-- {marker}: end -->");
    let section = doc
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(section, _)| section)
        .unwrap_or_else(|| panic!("docs/rate-limits.md has no {begin} … {end}"));
    section
        .split_once("```nginx\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_else(|| panic!("docs/rate-limits.md: no nginx block in {marker}"))
}

/// ingress-nginx's rendering of the protected Ingress with its `limit-*`
/// annotations (the shipped connections, one request a second and a burst
/// of 3: the smallest `limit-rps` ingress-nginx takes is one a second),
/// and, `with_snippets`, the controller `http-snippet` and the
/// `configuration-snippet` lines of docs/rate-limits.md for the token
/// buckets.
async fn ingress_nginx_limits_run(name: &str, with_snippets: bool) {
    let (stack, auth) = stack().await;
    let shipped = limit_annotations();
    for key in ["rps", "burst-multiplier", "connections"] {
        assert!(
            shipped.iter().any(|(k, v)| k == key && *v > 0),
            "my-app-paid has no limit-{key}: {shipped:?}"
        );
    }
    let annotations: Vec<(String, u32)> = shipped
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "rps" => (k, 1),
            "burst-multiplier" => (k, 3),
            _ => (k, v),
        })
        .collect();
    let per_client = Bucket {
        at_once: 4,
        per_minute: 60,
    };
    let (mut http, mut location) = ingress_nginx_limits(&annotations);
    if with_snippets {
        http.push_str(&doc_block("ingress-nginx http-snippet"));
        location.push_str(&doc_block("ingress-nginx configuration-snippet"));
    }
    let port = free_port();
    let generated = ingress_nginx_config(port, &stack);
    let verifier = format!("http://{}/auth", stack.verifier.addr());
    assert!(generated.contains(&verifier), "{generated}");
    let counted = format!("http://127.0.0.1:{}/auth", auth.port());
    let mut conf = generated
        .replace(&verifier, &counted)
        .replacen("http {\n", &format!("http {{\n{http}"), 1)
        .replacen(
            "        location / {\n",
            &format!("        location / {{\n{location}"),
            1,
        );
    assert!(conf.contains("limit_req zone="), "{conf}");
    if with_snippets {
        for (zone, bucket) in [("paygress_token", TOKEN), ("paygress_token_all", TOKEN_ALL)] {
            conf = set_zone(&conf, zone, bucket);
        }
    }
    let nginx = start_nginx(name, port, &conf).await;
    let shape = Shape {
        refusal: Refusal::Json,
        token: if with_snippets { TOKEN } else { per_client },
        unpaid: per_client,
        pass: per_client,
        per_client: Some(per_client),
        token_all: with_snippets.then_some(TOKEN_ALL),
    };
    check_rate_limits(name, &nginx.url(), &stack, &auth, shape).await;
}

/// The annotations alone: one bucket per client for every request.
#[tokio::test]
async fn ingress_nginx_limits_every_request_per_client() {
    ingress_nginx_limits_run("ingress-nginx", false).await;
}

/// With the snippets of docs/rate-limits.md: the token buckets too.
#[tokio::test]
async fn ingress_nginx_with_the_token_snippets_limits_tokens_harder() {
    ingress_nginx_limits_run("ingress-nginx-snippets", true).await;
}

// ---------------------------------------------------------------------------
// Traefik: the RateLimit middlewares of the dynamic config.

/// The dynamic config's `http.middlewares`.
fn middlewares(config: &mut Yaml) -> &mut Yaml {
    &mut config["http"]["middlewares"]
}

#[tokio::test]
async fn traefik_limits_tokens_unpaid_requests_and_passes() {
    let (stack, auth) = stack().await;
    let port = free_port();
    let dir = proxy_dir("traefik-limits");
    let rendered = render(
        &repo_file("traefik/dynamic.yml.template"),
        &[
            ("VERIFIER_ADDR", format!("127.0.0.1:{}", auth.port())),
            ("UPSTREAM_URL", stack.upstream.url()),
        ],
    );
    let mut dynamic: Yaml =
        serde_yaml::from_str(&rendered).unwrap_or_else(|err| panic!("dynamic.yml: {err}"));
    for (name, bucket) in [
        ("paygress-rate-limit-token", TOKEN),
        ("paygress-rate-limit-token-all", TOKEN_ALL),
        ("paygress-rate-limit-unpaid", UNPAID),
        ("paygress-rate-limit-pass", PASS),
    ] {
        let limit = &mut middlewares(&mut dynamic)[name]["rateLimit"];
        assert!(limit.is_mapping(), "no rateLimit middleware {name}");
        limit["average"] = Yaml::from(bucket.per_minute);
        limit["period"] = Yaml::from("1m");
        limit["burst"] = Yaml::from(bucket.at_once);
    }
    let dynamic = serde_yaml::to_string(&dynamic).unwrap_or_else(|err| panic!("{err}"));
    let dynamic_path = write_in(dir.path(), "dynamic.yml", &dynamic);
    let static_config = render(
        &repo_file("traefik/traefik.yml.template"),
        &[
            ("LISTEN_PORT", port.to_string()),
            ("DYNAMIC_FILE", dynamic_path.display().to_string()),
        ],
    );
    let static_path = write_in(dir.path(), "traefik.yml", &static_config);
    let mut command = Command::new(tools::traefik());
    command
        .arg(format!("--configFile={}", static_path.display()))
        .current_dir(dir.path());
    let traefik = Proxy::start("traefik-limits", port, command, dir).await;
    let shape = Shape::classes(Refusal::Text);
    check_rate_limits("traefik", &traefik.url(), &stack, &auth, shape).await;
}

/// The Kubernetes IngressRoute of `k8s/traefik-middleware.yaml` routes and
/// limits as the dynamic config the test above runs: the same rules (the
/// Host in place of the catch-all path), the same middlewares in the same
/// order, the same rateLimit numbers.
#[test]
fn the_traefik_ingress_route_has_the_tested_rate_limits() {
    let rendered = render(
        &repo_file("traefik/dynamic.yml.template"),
        &[
            ("VERIFIER_ADDR", "verifier:8080".to_string()),
            ("UPSTREAM_URL", "http://app".to_string()),
        ],
    );
    let local: Json = serde_json::to_value(
        serde_yaml::from_str::<Yaml>(&rendered).unwrap_or_else(|err| panic!("{err}")),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let text = repo_file("k8s/traefik-middleware.yaml");
    let docs: Vec<Json> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|err| panic!("k8s/traefik-middleware.yaml: {err}"));
            serde_json::to_value(yaml).unwrap_or_else(|err| panic!("{err}"))
        })
        .filter(|d| !d.is_null())
        .collect();

    // The routers, by priority, as (rule without its host part, middlewares).
    let mut routers: Vec<(i64, String, Vec<String>)> = local["http"]["routers"]
        .as_object()
        .unwrap_or_else(|| panic!("no routers"))
        .values()
        .map(|r| {
            let rule = r["rule"].as_str().unwrap_or_default();
            let rule = rule
                .strip_prefix("PathPrefix(`/`)")
                .unwrap_or_else(|| panic!("a router that is not on every path: {rule}"));
            let names = r["middlewares"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (r["priority"].as_i64().unwrap_or(0), rule.to_string(), names)
        })
        .collect();
    routers.sort_by_key(|(p, _, _)| -p);
    let route = docs
        .iter()
        .find(|d| d["kind"] == "IngressRoute")
        .unwrap_or_else(|| panic!("no IngressRoute"));
    let mut routes: Vec<(i64, String, Vec<String>)> = route["spec"]["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("no routes"))
        .iter()
        .map(|r| {
            let rule = r["match"].as_str().unwrap_or_default();
            let rule = rule
                .strip_prefix("Host(`app.example.com`)")
                .unwrap_or_else(|| panic!("a route not on the app's host: {rule}"));
            let names = r["middlewares"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|n| n["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (r["priority"].as_i64().unwrap_or(0), rule.to_string(), names)
        })
        .collect();
    routes.sort_by_key(|(p, _, _)| -p);
    let strip = |v: &[(i64, String, Vec<String>)]| -> Vec<(String, Vec<String>)> {
        v.iter().map(|(_, r, m)| (r.clone(), m.clone())).collect()
    };
    assert_eq!(
        strip(&routes),
        strip(&routers),
        "k8s/traefik-middleware.yaml routes otherwise than traefik/dynamic.yml.template"
    );

    for (name, middleware) in local["http"]["middlewares"]
        .as_object()
        .unwrap_or_else(|| panic!("no middlewares"))
    {
        let Some(limit) = middleware.get("rateLimit") else {
            continue;
        };
        let k8s = docs
            .iter()
            .find(|d| d["kind"] == "Middleware" && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("k8s/traefik-middleware.yaml has no Middleware {name}"));
        assert_eq!(
            &k8s["spec"]["rateLimit"], limit,
            "{name}: k8s/traefik-middleware.yaml limits otherwise"
        );
    }
}
