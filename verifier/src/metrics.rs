//! Prometheus metrics, in the text exposition format.
//!
//! * `paygress_payments_total{outcome}` — `/auth` answers by outcome: `paid`,
//!   `free`, `payment_required`, or the refusal's code;
//! * `paygress_received_amount_total{tier,mint,unit}` — the amount received
//!   (net of mint fees);
//! * `paygress_redemption_duration_seconds` — histogram of one redemption
//!   (the swap at the mint and the wallet bookkeeping);
//! * `paygress_mint_errors_total{mint,kind}` — failures talking to a mint;
//! * `paygress_refunds_total` — swapped tokens worth less than the price,
//!   whose value went back to the client;
//! * `paygress_redemptions_unclaimed` — tokens swapped into the wallet whose
//!   client was never told (a timeout, a crash), as of the last settlement
//!   pass: each is granted when presented again;
//! * `paygress_passes_total{result}` — passes presented without a token:
//!   `accepted`, `expired`, `refreshed` (expired, but its lease runs on: a
//!   fresh pass was handed out), or `refused` (not genuine, or not for the
//!   path);
//! * `paygress_leases_total{kind}` — leases `sold` and `extended`;
//! * `paygress_leases_live` — leases not yet ended, as of the last
//!   settlement pass;
//! * `paygress_pods_total{event}` — lease pods `provisioned`, `failed`
//!   (provisioning failed after the swap), `refunded` (the client got its
//!   value back) and `reaped`;
//! * `paygress_replica_info{replica,store}` — this replica's id and its store
//!   (`sqlite` or `postgres`), always 1;
//! * `paygress_replica_leader` — 1 while this replica does the work one
//!   replica does (settlement, pruning, the pod reaper), else 0;
//! * `paygress_mint_up{mint}` — 1 when the mint's last contact (a keyset
//!   refresh, a swap) succeeded, 0 when it failed to answer: unlike
//!   `paygress_mint_ready` it goes back to 0 during an outage;
//! * `paygress_wallet_balance{mint,unit}` — the wallet's unspent balance per
//!   mint, as of the last background pass (every recovery interval);
//! * `paygress_redemptions_in_flight`, `paygress_mint_ready{mint}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the redemption latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    payments: BTreeMap<String, u64>,
    received: BTreeMap<(String, String, String), u64>,
    mint_errors: BTreeMap<(String, String), u64>,
    mint_ready: BTreeMap<String, bool>,
    mint_up: BTreeMap<String, bool>,
    balances: BTreeMap<(String, String), u64>,
    latency: Histogram,
    refunds: u64,
    unclaimed: u64,
    passes: BTreeMap<&'static str, u64>,
    leases: BTreeMap<&'static str, u64>,
    leases_live: u64,
    pods: BTreeMap<&'static str, u64>,
    replica: Option<(String, &'static str)>,
    leader: bool,
}

/// The verifier's metrics. Cheap to update from many tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    in_flight: AtomicI64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Counts one `/auth` answer.
    pub fn payment(&self, outcome: &str) {
        self.with(|i| *i.payments.entry(outcome.to_string()).or_default() += 1);
    }

    /// Counts one pass presented without a token, by result.
    pub fn pass(&self, result: &'static str) {
        self.with(|i| *i.passes.entry(result).or_default() += 1);
    }

    /// Counts one lease sold or extended.
    pub fn lease(&self, kind: &'static str) {
        self.with(|i| *i.leases.entry(kind).or_default() += 1);
    }

    /// Counts one pod event (provisioned, failed, refunded, reaped).
    pub fn pod(&self, event: &'static str) {
        self.with(|i| *i.pods.entry(event).or_default() += 1);
    }

    /// Records how many leases have not ended.
    /// Names this replica and its store.
    pub fn set_replica(&self, id: &str, store: &'static str) {
        self.with(|i| i.replica = Some((id.to_string(), store)));
    }

    /// Whether this replica leads now.
    pub fn set_leader(&self, leading: bool) {
        self.with(|i| i.leader = leading);
    }

    pub fn set_leases_live(&self, n: u64) {
        self.with(|i| i.leases_live = n);
    }

    /// Adds an amount received.
    pub fn received(&self, tier: &str, mint: &str, unit: &str, amount: u64) {
        self.with(|i| {
            let v = i
                .received
                .entry((tier.to_string(), mint.to_string(), unit.to_string()))
                .or_default();
            *v = v.saturating_add(amount);
        });
    }

    /// Counts one failure talking to a mint; one that did not answer
    /// (`unreachable`, `timeout`) marks it down.
    pub fn mint_error(&self, mint: &str, kind: &str) {
        self.with(|i| {
            *i.mint_errors
                .entry((mint.to_string(), kind.to_string()))
                .or_default() += 1;
            if matches!(kind, "unreachable" | "timeout") {
                i.mint_up.insert(mint.to_string(), false);
            }
        });
    }

    /// Records that a mint answered (a keyset refresh, a swap).
    pub fn mint_answered(&self, mint: &str) {
        self.with(|i| {
            i.mint_up.insert(mint.to_string(), true);
        });
    }

    /// The wallet's unspent balance at a mint, in a unit.
    pub fn set_balance(&self, mint: &str, unit: &str, amount: u64) {
        self.with(|i| {
            i.balances
                .insert((mint.to_string(), unit.to_string()), amount);
        });
    }

    /// Records whether a mint has answered `/v1/info` and `/v1/keysets`.
    pub fn mint_ready(&self, mint: &str, ready: bool) {
        self.with(|i| {
            i.mint_ready.insert(mint.to_string(), ready);
        });
    }

    /// Records the duration of one redemption.
    pub fn redemption(&self, took: Duration) {
        let secs = took.as_secs_f64();
        self.with(|i| {
            let h = &mut i.latency;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts.iter_mut()) {
                if secs <= *bound {
                    *count += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        });
    }

    /// Records how many swapped tokens wait for their client.
    pub fn set_unclaimed(&self, n: u64) {
        self.with(|i| i.unclaimed = n);
    }

    /// Counts one refund.
    pub fn refund(&self) {
        self.with(|i| i.refunds = i.refunds.saturating_add(1));
    }

    /// A redemption started; the returned guard ends it.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// The number of redemptions running now.
    pub fn redemptions_in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let in_flight = self.redemptions_in_flight();
        self.with(|i| {
            let mut out = String::with_capacity(2048);
            header(
                &mut out,
                "paygress_payments_total",
                "counter",
                "/auth answers by outcome (paid, free, payment_required or the refusal code).",
            );
            for (outcome, n) in &i.payments {
                let _ = writeln!(
                    out,
                    "paygress_payments_total{{outcome=\"{}\"}} {n}",
                    escape(outcome)
                );
            }
            header(
                &mut out,
                "paygress_received_amount_total",
                "counter",
                "Amount received, net of mint fees, by price tier and mint.",
            );
            for ((tier, mint, unit), n) in &i.received {
                let _ = writeln!(
                    out,
                    "paygress_received_amount_total{{tier=\"{}\",mint=\"{}\",unit=\"{}\"}} {n}",
                    escape(tier),
                    escape(mint),
                    escape(unit)
                );
            }
            header(
                &mut out,
                "paygress_redemption_duration_seconds",
                "histogram",
                "Duration of one redemption (swap at the mint and wallet bookkeeping).",
            );
            let h = &i.latency;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "paygress_redemption_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "paygress_redemption_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "paygress_redemption_duration_seconds_sum {}", h.sum);
            let _ = writeln!(
                out,
                "paygress_redemption_duration_seconds_count {}",
                h.count
            );
            header(
                &mut out,
                "paygress_mint_errors_total",
                "counter",
                "Failures talking to a mint, by kind (unreachable, timeout, refused, store).",
            );
            for ((mint, kind), n) in &i.mint_errors {
                let _ = writeln!(
                    out,
                    "paygress_mint_errors_total{{mint=\"{}\",kind=\"{}\"}} {n}",
                    escape(mint),
                    escape(kind)
                );
            }
            header(
                &mut out,
                "paygress_mint_ready",
                "gauge",
                "1 once the mint has answered /v1/info and /v1/keysets.",
            );
            for (mint, ready) in &i.mint_ready {
                let _ = writeln!(
                    out,
                    "paygress_mint_ready{{mint=\"{}\"}} {}",
                    escape(mint),
                    u8::from(*ready)
                );
            }
            header(
                &mut out,
                "paygress_mint_up",
                "gauge",
                "1 when the mint's last contact (keyset refresh, swap) succeeded, 0 when it did not answer.",
            );
            for (mint, up) in &i.mint_up {
                let _ = writeln!(
                    out,
                    "paygress_mint_up{{mint=\"{}\"}} {}",
                    escape(mint),
                    u8::from(*up)
                );
            }
            header(
                &mut out,
                "paygress_wallet_balance",
                "gauge",
                "The wallet's unspent balance per mint and unit, as of the last background pass.",
            );
            for ((mint, unit), amount) in &i.balances {
                let _ = writeln!(
                    out,
                    "paygress_wallet_balance{{mint=\"{}\",unit=\"{}\"}} {amount}",
                    escape(mint),
                    escape(unit)
                );
            }
            header(
                &mut out,
                "paygress_redemptions_in_flight",
                "gauge",
                "Redemptions running now.",
            );
            let _ = writeln!(out, "paygress_redemptions_in_flight {in_flight}");
            header(
                &mut out,
                "paygress_refunds_total",
                "counter",
                "Swapped tokens worth less than the price, refunded to the client.",
            );
            let _ = writeln!(out, "paygress_refunds_total {}", i.refunds);
            header(
                &mut out,
                "paygress_redemptions_unclaimed",
                "gauge",
                "Tokens swapped whose client was never told; granted when presented again.",
            );
            let _ = writeln!(out, "paygress_redemptions_unclaimed {}", i.unclaimed);
            header(
                &mut out,
                "paygress_passes_total",
                "counter",
                "Passes presented without a token, by result (accepted, expired, refreshed, refused).",
            );
            for (result, n) in &i.passes {
                let _ = writeln!(out, "paygress_passes_total{{result=\"{result}\"}} {n}");
            }
            header(
                &mut out,
                "paygress_leases_total",
                "counter",
                "Leases sold and extended.",
            );
            for (kind, n) in &i.leases {
                let _ = writeln!(out, "paygress_leases_total{{kind=\"{kind}\"}} {n}");
            }
            header(
                &mut out,
                "paygress_leases_live",
                "gauge",
                "Leases not yet ended, as of the last settlement pass.",
            );
            let _ = writeln!(out, "paygress_leases_live {}", i.leases_live);
            if let Some((id, store)) = &i.replica {
                header(
                    &mut out,
                    "paygress_replica_info",
                    "gauge",
                    "This replica's id and its store (sqlite or postgres).",
                );
                let _ = writeln!(
                    out,
                    "paygress_replica_info{{replica=\"{}\",store=\"{store}\"}} 1",
                    escape(id)
                );
            }
            header(
                &mut out,
                "paygress_replica_leader",
                "gauge",
                "1 while this replica does the work one replica does (settlement, pruning, the pod reaper).",
            );
            let _ = writeln!(out, "paygress_replica_leader {}", u8::from(i.leader));
            header(
                &mut out,
                "paygress_pods_total",
                "counter",
                "Lease pods provisioned, failed, refunded and reaped.",
            );
            for (event, n) in &i.pods {
                let _ = writeln!(out, "paygress_pods_total{{event=\"{event}\"}} {n}");
            }
            out
        })
    }
}

/// Ends an in-flight redemption on drop.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.payment("paid");
        m.payment("paid");
        m.payment("token_already_spent");
        m.received("premium", "http://m:1", "sat", 1000);
        m.redemption(Duration::from_millis(20));
        m.mint_error("http://m:1", "unreachable");
        m.mint_ready("http://m:1", true);
        {
            let _g = m.in_flight();
            assert_eq!(m.redemptions_in_flight(), 1);
        }
        let text = m.render();
        assert!(text.contains("paygress_payments_total{outcome=\"paid\"} 2"));
        assert!(text.contains(
            "paygress_received_amount_total{tier=\"premium\",mint=\"http://m:1\",unit=\"sat\"} 1000"
        ));
        assert!(text.contains("paygress_redemption_duration_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("paygress_redemption_duration_seconds_bucket{le=\"0.01\"} 0"));
        assert!(text.contains("paygress_redemption_duration_seconds_count 1"));
        assert!(
            text.contains("paygress_mint_errors_total{mint=\"http://m:1\",kind=\"unreachable\"} 1")
        );
        assert!(text.contains("paygress_redemptions_in_flight 0"));
        // An outage marks the mint down (ready stays: it answered once);
        // the next answer marks it up again.
        assert!(text.contains("paygress_mint_up{mint=\"http://m:1\"} 0"));
        assert!(text.contains("paygress_mint_ready{mint=\"http://m:1\"} 1"));
        m.mint_answered("http://m:1");
        m.mint_error("http://m:1", "refused");
        m.set_balance("http://m:1", "sat", 1234);
        let text = m.render();
        assert!(text.contains("paygress_mint_up{mint=\"http://m:1\"} 1"));
        assert!(text.contains("paygress_wallet_balance{mint=\"http://m:1\",unit=\"sat\"} 1234"));
        assert!(text.contains("paygress_replica_leader 0"));
    }
}
