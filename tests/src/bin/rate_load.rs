//! A fixed-rate HTTP load generator for `scripts/bench.sh envoy` (the
//! verifier's `/auth` at 100, 250, 500 requests per second): wrk holds a
//! number of connections busy, not a rate.
//!
//! ```text
//! rate_load --rate 500 --duration 5s [--connections 16] [--timeout 10s]
//!           --request 'EXPECT|URL[|Name: value]...' [--request ...]
//! ```
//!
//! Open loop: request `i` is due at `start + i / rate`, whatever the answers
//! before it did; the requests cycle through the `--request`s in order.
//! `--connections` workers share one keep-alive client (at most that many
//! connections); each takes the next due request, waits for its time and
//! sends it. A request a worker takes late (all were busy) counts its wait:
//! latency runs from the time it was due to the end of its answer's body,
//! so a server that falls behind shows in p99 rather than in a lower rate.
//!
//! Prints one JSON line on stdout: `target_rate`, `duration_s`, `sent`,
//! `answered`, `errors` (no answer: connection error or timeout; the first
//! one's text in `first_error`), `achieved_rate` (answers per second from
//! the first due time to the last answer), `statuses` (count per status),
//! `unexpected` (answers whose status is not their request's EXPECT),
//! `p50_ms`, `p99_ms`, `max_ms`, and `requests`: per `--request` its URL,
//! EXPECT and status counts. The exit code is 0 whenever the run completed
//! (the caller judges the numbers), 2 on bad arguments.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use tokio::time::Instant;

/// One `--request`: what it sends and the status it must get.
#[derive(Debug, Clone)]
struct Spec {
    expect: u16,
    url: String,
    headers: HeaderMap,
}

#[derive(Debug)]
struct Args {
    rate: f64,
    duration: Duration,
    connections: usize,
    timeout: Duration,
    requests: Vec<Spec>,
}

/// What the workers record.
#[derive(Debug, Default)]
struct Tally {
    /// Per spec: status → count.
    statuses: Vec<BTreeMap<u16, u64>>,
    latencies_ms: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
    last_answer: Option<Instant>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "rate_load: {problem}\nusage: rate_load --rate PER_SECOND --duration 5s \
         [--connections 16] [--timeout 10s] --request 'EXPECT|URL[|Name: value]...' ..."
    );
    std::process::exit(2);
}

/// `5s`, `500ms`, `1.5` (seconds).
fn parse_duration(text: &str, flag: &str) -> Duration {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Duration::from_secs_f64(n * scale),
        _ => usage(&format!("{flag}: not a duration: {text}")),
    }
}

fn parse_spec(text: &str) -> Spec {
    let mut parts = text.split('|');
    let expect = parts
        .next()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or_else(|| usage(&format!("--request {text}: no EXPECT status first")));
    let url = parts
        .next()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .unwrap_or_else(|| usage(&format!("--request {text}: no URL after EXPECT")))
        .to_string();
    let mut headers = HeaderMap::new();
    for header in parts {
        let (name, value) = header
            .split_once(':')
            .unwrap_or_else(|| usage(&format!("--request {text}: header {header} has no ':'")));
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .unwrap_or_else(|_| usage(&format!("--request {text}: bad header name {name}")));
        let value = HeaderValue::from_str(value.trim())
            .unwrap_or_else(|_| usage(&format!("--request {text}: bad header value")));
        headers.append(name, value);
    }
    Spec {
        expect,
        url,
        headers,
    }
}

fn parse_args() -> Args {
    let mut rate = None;
    let mut duration = None;
    let mut connections = 16;
    let mut timeout = Duration::from_secs(10);
    let mut requests = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        let value = inline
            .or_else(|| it.next())
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--rate" => {
                rate = Some(
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0 && r.is_finite())
                        .unwrap_or_else(|| {
                            usage(&format!("--rate: not a positive number: {value}"))
                        }),
                )
            }
            "--duration" => duration = Some(parse_duration(&value, "--duration")),
            "--timeout" => timeout = parse_duration(&value, "--timeout"),
            "--connections" => {
                connections = value
                    .parse::<usize>()
                    .ok()
                    .filter(|c| *c > 0)
                    .unwrap_or_else(|| usage(&format!("--connections: not a count: {value}")))
            }
            "--request" => requests.push(parse_spec(&value)),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if requests.is_empty() {
        usage("at least one --request is needed");
    }
    Args {
        rate: rate.unwrap_or_else(|| usage("--rate is needed")),
        duration: duration.unwrap_or_else(|| usage("--duration is needed")),
        connections,
        timeout,
        requests,
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .pool_idle_timeout(None)
        .timeout(args.timeout)
        .build()
        .unwrap_or_else(|err| usage(&format!("cannot build the HTTP client: {err}")));
    let total = (args.rate * args.duration.as_secs_f64()).round().max(1.0) as u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let specs = Arc::new(args.requests);
    let tally = Arc::new(Mutex::new(Tally {
        statuses: vec![BTreeMap::new(); specs.len()],
        latencies_ms: Vec::with_capacity(total as usize),
        ..Tally::default()
    }));
    let next = Arc::new(AtomicU64::new(0));
    // A little ahead, so that every worker is ready when the first is due.
    let start = Instant::now() + Duration::from_millis(50);

    let mut workers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (client, specs, tally, next) =
            (client.clone(), specs.clone(), tally.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = start + period.mul_f64(i as f64);
                tokio::time::sleep_until(due).await;
                let which = (i % specs.len() as u64) as usize;
                let Some(spec) = specs.get(which) else { break };
                let answer = client
                    .get(&spec.url)
                    .headers(spec.headers.clone())
                    .send()
                    .await;
                let outcome = match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        response.bytes().await.map(|_| status)
                    }
                    Err(err) => Err(err),
                };
                let done = Instant::now();
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(status) => {
                        if let Some(counts) = t.statuses.get_mut(which) {
                            *counts.entry(status).or_default() += 1;
                        }
                        t.latencies_ms
                            .push(done.duration_since(due).as_secs_f64() * 1000.0);
                        t.last_answer = Some(done);
                    }
                    Err(err) => {
                        t.errors += 1;
                        if t.first_error.is_none() {
                            t.first_error = Some(err.to_string());
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        if let Err(err) = worker.await {
            eprintln!("rate_load: a worker failed: {err}");
            std::process::exit(1);
        }
    }

    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    let answered = t.latencies_ms.len() as u64;
    t.latencies_ms.sort_by(f64::total_cmp);
    let elapsed = t
        .last_answer
        .map(|last| last.saturating_duration_since(start).as_secs_f64())
        .unwrap_or(0.0);
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexpected = 0;
    let mut per_request = Vec::new();
    for (spec, counts) in specs.iter().zip(&t.statuses) {
        for (status, n) in counts {
            *statuses.entry(status.to_string()).or_default() += n;
            if *status != spec.expect {
                unexpected += n;
            }
        }
        let counts: BTreeMap<String, u64> =
            counts.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        per_request.push(json!({ "url": spec.url, "expect": spec.expect, "statuses": counts }));
    }
    let report = json!({
        "target_rate": args.rate,
        "duration_s": args.duration.as_secs_f64(),
        "connections": args.connections,
        "sent": total,
        "answered": answered,
        "errors": t.errors,
        "first_error": t.first_error,
        "achieved_rate": if elapsed > 0.0 { round3(answered as f64 / elapsed) } else { 0.0 },
        "statuses": statuses,
        "unexpected": unexpected,
        "p50_ms": quantile(&t.latencies_ms, 0.50).map(round3),
        "p99_ms": quantile(&t.latencies_ms, 0.99).map(round3),
        "max_ms": t.latencies_ms.last().copied().map(round3),
        "requests": per_request,
    });
    println!("{report}");
}
