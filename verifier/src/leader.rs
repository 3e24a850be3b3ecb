//! Leader election among the verifier's replicas, for the background work
//! that one replica should do at a time (periodic wallet settlement, the
//! pod reaper).
//!
//! [`Leadership::kube`] campaigns for a Kubernetes `Lease`
//! (coordination.k8s.io/v1) as client-go's leader election does, with
//! optimistic concurrency alone: every write of the Lease is a replace
//! (`PUT`) that carries the `resourceVersion` it was based on, so of two
//! replicas that read the same version only one write succeeds (the other
//! gets `409 Conflict`), and a write delayed in the network cannot land
//! over a newer holder. No server-side apply, no clock comparison between
//! replicas:
//!
//! * the holder renews every `renew` interval (`spec.renewTime`); it stops
//!   leading as soon as no renewal has succeeded for three quarters of the
//!   TTL (counted from the start of the last successful attempt, on its own
//!   monotonic clock), or when it sees another holder — before any other
//!   replica can take over;
//! * another replica takes over a held Lease only once the Lease has not
//!   changed for its `leaseDurationSeconds` (the TTL, rounded up to whole
//!   seconds) by *its* clock, counted from when it first saw that version;
//! * a Lease without a holder (released, or new) is taken at once;
//! * when the campaign stops (the shutdown token), the holder stops leading
//!   first and then releases the Lease (clears `holderIdentity`), so a
//!   successor takes over at its next attempt, within a `renew` interval,
//!   without waiting for the TTL.
//!
//! The verbs it needs on `leases` in its namespace (RBAC): `get`, `create`,
//! `update`.
//!
//! Deleting a held Lease by hand lets another replica create it afresh
//! while the old holder still leads until its next renewal (at most one
//! `renew` interval): don't.
//!
//! A work loop follows [`Leadership::watch`]: it waits for `true`, works
//! while the value stays `true`, and stops at once on `false` or when the
//! channel closes (the campaign is over):
//!
//! ```no_run
//! # async fn settle_once() {}
//! # async fn example(leadership: &paygress_verifier::leader::Leadership) {
//! let mut leading = leadership.watch();
//! // Until the campaign is over:
//! while leading.wait_for(|lead| *lead).await.is_ok() {
//!     tokio::select! {
//!         // Lost (or the campaign ended): stop working at once.
//!         _ = leading.wait_for(|lead| !*lead) => {}
//!         _ = async {
//!             let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
//!             loop {
//!                 tick.tick().await;
//!                 settle_once().await;
//!             }
//!         } => {}
//!     }
//! }
//! # }
//! ```

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Whether this replica leads now, and the campaign that decides it.
#[derive(Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    /// [`Leadership::solo`]'s sender (a campaign's task owns its own): the
    /// channel stays open while the `Leadership` lives.
    solo: Option<watch::Sender<bool>>,
    campaign: Option<JoinHandle<()>>,
}

impl Leadership {
    /// This replica always leads (no Kubernetes, or a single replica).
    pub fn solo() -> Leadership {
        let (sender, leading) = watch::channel(true);
        Leadership {
            leading,
            solo: Some(sender),
            campaign: None,
        }
    }

    /// Campaigns for the Kubernetes Lease `name` in `namespace` as
    /// `identity` (unique among the replicas: the pod's name), renewing
    /// every `renew` and giving up when `ttl` passes without a renewal
    /// (precisely: after three quarters of `ttl`, so that it has stopped
    /// before any other replica can take over); runs until `shutdown` is
    /// cancelled (or every receiver of [`Leadership::watch`] and this
    /// `Leadership` are dropped), then stops leading and releases the lease
    /// so that a successor takes over at once.
    ///
    /// `ttl` is at least a second (the Lease counts whole seconds; it is
    /// rounded up there); `renew` is at most three eighths of `ttl`, so
    /// that a failed renewal is retried before the holder gives up. Other
    /// values are corrected, with a warning. Needs a Tokio runtime: outside
    /// one it logs an error and never leads.
    pub fn kube(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        ttl: Duration,
        renew: Duration,
        shutdown: CancellationToken,
    ) -> Leadership {
        let (sender, leading) = watch::channel(false);
        let campaign = Campaign::new(
            Api::namespaced(client, namespace),
            name,
            identity,
            ttl,
            renew,
        );
        let campaign = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(runtime.spawn(campaign.run(sender, shutdown))),
            Err(err) => {
                tracing::error!(lease = %name, error = %err, "leader election: no Tokio runtime; this replica will not lead");
                None
            }
        };
        Leadership {
            leading,
            solo: None,
            campaign,
        }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// The leading state, for work loops: run while it is `true`, stop
    /// promptly when it turns `false` or the channel closes (the campaign
    /// ended: after shutdown, the last value is `false`).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Waits until the campaign has ended after the shutdown token was
    /// cancelled: this replica no longer leads and has released the lease
    /// (or given up trying, after three quarters of the TTL). At once for
    /// `solo`; never, if the shutdown token is not cancelled. Await
    /// it before the process exits, so that a successor need not wait for
    /// the TTL.
    pub async fn stopped(mut self) {
        drop(self.solo.take());
        if let Some(campaign) = self.campaign.take() {
            if let Err(err) = campaign.await {
                tracing::error!(error = %err, "leader election: the campaign task failed");
            }
        }
    }
}

/// What one attempt to take or renew the lease found.
#[derive(Debug)]
enum Outcome {
    /// This replica holds the lease: the attempt wrote it.
    Held,
    /// Another replica holds it, and its hold has not run out.
    Taken(String),
    /// Could not tell (an API error, a conflict, a timeout): try again
    /// soon; a leader goes on leading until its renewal deadline.
    Unknown,
}

/// One replica's campaign for the lease.
struct Campaign {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// `spec.leaseDurationSeconds`: the TTL, rounded up to whole seconds.
    lease_seconds: i32,
    /// How often the holder renews, and the others look.
    renew: Duration,
    /// The holder stops leading when no renewal has succeeded for this
    /// long (three quarters of the TTL).
    renew_deadline: Duration,
    /// The lease as this replica last wrote it: the next renewal replaces
    /// it directly (one request); a conflict means someone wrote since.
    ours: Option<Lease>,
    /// Another holder's lease as last seen: its resourceVersion and when
    /// (by this replica's clock) that version was first seen.
    seen: Option<(String, Instant)>,
    /// Failed attempts in a row (logged at the first only, as followers).
    failures: u32,
    /// Whether this replica leads now (what the channel says).
    leading: bool,
}

impl Campaign {
    fn new(
        api: Api<Lease>,
        name: &str,
        identity: &str,
        ttl: Duration,
        renew: Duration,
    ) -> Campaign {
        let identity = if identity.is_empty() {
            let random: u64 = rand::thread_rng().gen();
            let identity = format!("paygress-{random:016x}");
            tracing::warn!(lease = %name, %identity, "leader election: empty identity; using a random one");
            identity
        } else {
            identity.to_string()
        };
        let min_ttl = Duration::from_secs(1);
        if ttl < min_ttl {
            tracing::warn!(lease = %name, ?ttl, "leader election: the TTL is at least a second");
        }
        let ttl = ttl.max(min_ttl);
        let renew_deadline = ttl * 3 / 4;
        let max_renew = renew_deadline / 2;
        let min_renew = Duration::from_millis(10);
        if renew > max_renew || renew < min_renew {
            tracing::warn!(lease = %name, ?renew, ?ttl, "leader election: the renew interval must be between 10 ms and 3/8 of the TTL; corrected");
        }
        let renew = renew.clamp(min_renew, max_renew);
        let whole_seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        Campaign {
            api,
            name: name.to_string(),
            identity,
            lease_seconds: i32::try_from(whole_seconds).unwrap_or(i32::MAX),
            renew,
            renew_deadline,
            ours: None,
            seen: None,
            failures: 0,
            leading: false,
        }
    }

    fn set_leading(&mut self, channel: &watch::Sender<bool>, leading: bool, why: &str) {
        self.leading = leading;
        let was = channel.send_replace(leading);
        if was != leading {
            if leading {
                tracing::info!(lease = %self.name, identity = %self.identity, "leader election: this replica leads");
            } else {
                tracing::warn!(lease = %self.name, identity = %self.identity, why, "leader election: this replica no longer leads");
            }
        }
    }

    async fn run(mut self, channel: watch::Sender<bool>, shutdown: CancellationToken) {
        // While leading: when leadership ends unless a renewal succeeds.
        let mut valid_until: Option<Instant> = None;
        loop {
            if valid_until.is_some_and(|until| Instant::now() >= until) {
                valid_until = None;
                self.set_leading(&channel, false, "no renewal succeeded in time");
            }
            let start = Instant::now();
            let budget = valid_until.map_or(self.renew_deadline, |until| {
                until.saturating_duration_since(start)
            });
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = channel.closed() => break,
                outcome = tokio::time::timeout(budget, self.attempt()) => match outcome {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        self.failed(valid_until.is_some(), &format!("no answer within {budget:?}"));
                        Outcome::Unknown
                    }
                },
            };
            let pause = match outcome {
                Outcome::Held => {
                    self.failures = 0;
                    valid_until = Some(start + self.renew_deadline);
                    self.set_leading(&channel, true, "");
                    self.renew
                }
                Outcome::Taken(holder) => {
                    self.failures = 0;
                    valid_until = None;
                    self.set_leading(&channel, false, &format!("the lease is held by {holder}"));
                    self.jittered(self.renew)
                }
                Outcome::Unknown => self.jittered(self.renew / 2),
            };
            let wake = Instant::now() + pause;
            let wake = valid_until.map_or(wake, |until| wake.min(until));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = channel.closed() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        if self.leading {
            tracing::info!(lease = %self.name, identity = %self.identity, "leader election: shutting down; this replica no longer leads");
        }
        self.leading = false;
        channel.send_replace(false);
        self.release().await;
    }

    /// `pause` plus up to a fifth of it, so that followers do not move in
    /// step.
    fn jittered(&self, pause: Duration) -> Duration {
        let extra = u64::try_from(pause.as_millis() / 5).unwrap_or(0);
        pause + Duration::from_millis(rand::thread_rng().gen_range(0..=extra))
    }

    fn failed(&mut self, leading: bool, error: &str) {
        self.failures = self.failures.saturating_add(1);
        if leading || self.failures == 1 {
            tracing::warn!(lease = %self.name, identity = %self.identity, error, "leader election: cannot reach the lease");
        } else {
            tracing::debug!(lease = %self.name, identity = %self.identity, error, "leader election: cannot reach the lease");
        }
    }

    /// One attempt to renew the lease, or to take it if it is free or its
    /// holder's hold ran out.
    async fn attempt(&mut self) -> Outcome {
        let leading = self.leading;
        if let Some(ours) = self.ours.clone() {
            match self.write(ours).await {
                Ok(lease) => {
                    self.ours = Some(lease);
                    return Outcome::Held;
                }
                // Someone wrote it since (or deleted it): read it afresh.
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                    tracing::debug!(lease = %self.name, identity = %self.identity, reason = %status.reason, "leader election: the lease changed since this replica wrote it");
                    self.ours = None;
                }
                Err(err) => {
                    self.failed(leading, &err.to_string());
                    return Outcome::Unknown;
                }
            }
        }
        let lease = match self.api.get_opt(&self.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return self.create().await,
            Err(err) => {
                self.failed(leading, &err.to_string());
                return Outcome::Unknown;
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if let Some(holder) = holder.filter(|h| *h != self.identity) {
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let now = Instant::now();
            let since = match &self.seen {
                Some((seen, at)) if *seen == version => *at,
                _ => {
                    self.seen = Some((version, now));
                    now
                }
            };
            let seconds = spec.lease_duration_seconds.unwrap_or(self.lease_seconds);
            let hold = Duration::from_secs(u64::try_from(seconds.max(1)).unwrap_or(1));
            if now < since + hold {
                return Outcome::Taken(holder);
            }
            tracing::info!(lease = %self.name, identity = %self.identity, %holder, ?hold, "leader election: the holder has not renewed in time; taking over");
        }
        match self.write(lease).await {
            Ok(lease) => {
                self.ours = Some(lease);
                self.seen = None;
                Outcome::Held
            }
            // Another replica wrote it between the read and the write.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(lease = %self.name, identity = %self.identity, "leader election: lost a race for the lease");
                Outcome::Unknown
            }
            Err(err) => {
                self.failed(leading, &err.to_string());
                Outcome::Unknown
            }
        }
    }

    /// Replaces `lease` (at its resourceVersion) with this replica as the
    /// holder, renewed now.
    async fn write(&self, mut lease: Lease) -> Result<Lease, kube::Error> {
        let now = Some(MicroTime(Timestamp::now()));
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = now.clone();
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.renew_time = now;
        spec.lease_duration_seconds = Some(self.lease_seconds);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
    }

    /// Creates the lease, held by this replica.
    async fn create(&mut self) -> Outcome {
        let now = Some(MicroTime(Timestamp::now()));
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                acquire_time: now.clone(),
                renew_time: now,
                lease_duration_seconds: Some(self.lease_seconds),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(lease) => {
                self.ours = Some(lease);
                self.seen = None;
                Outcome::Held
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(lease = %self.name, identity = %self.identity, "leader election: another replica created the lease first");
                Outcome::Unknown
            }
            Err(err) => {
                let leading = self.leading;
                self.failed(leading, &err.to_string());
                Outcome::Unknown
            }
        }
    }

    /// Clears the holder of the lease this replica wrote, so that a
    /// successor takes it at once: the version it last wrote, or (if that
    /// is stale: a write of its own that was cut short by the shutdown may
    /// have landed) the current one while it still names this replica.
    /// Gives up after the renew deadline.
    async fn release(&mut self) {
        let Some(ours) = self.ours.take() else {
            return;
        };
        match tokio::time::timeout(self.renew_deadline, self.clear(ours)).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %self.name, identity = %self.identity, "leader election: released the lease");
            }
            Ok(Ok(false)) => {
                tracing::info!(lease = %self.name, identity = %self.identity, "leader election: the lease is no longer this replica's; nothing to release");
            }
            Ok(Err(err)) => {
                tracing::warn!(lease = %self.name, identity = %self.identity, error = %err, "leader election: cannot release the lease; a successor waits for its TTL");
            }
            Err(_) => {
                tracing::warn!(lease = %self.name, identity = %self.identity, "leader election: releasing the lease timed out; a successor waits for its TTL");
            }
        }
    }

    /// Replaces `ours` with a holderless lease; on a conflict, reads the
    /// lease and does the same if it still names this replica. `false`:
    /// it no longer does (or is gone).
    async fn clear(&self, ours: Lease) -> Result<bool, kube::Error> {
        let params = PostParams::default();
        let mut lease = ours;
        for _ in 0..2 {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            spec.lease_duration_seconds = Some(1);
            match self.api.replace(&self.name, &params, &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
                Err(err) => return Err(err),
            }
            match self.api.get_opt(&self.name).await? {
                Some(current)
                    if current
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        == Some(self.identity.as_str()) =>
                {
                    lease = current;
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}

/// The election against the Kubernetes API stand-in
/// (`paygress_tests::kube_api`), which enforces resourceVersions on Lease
/// writes and can cut one client off: `cargo test -p paygress-verifier
/// --lib leader`. The stand-in's own Lease semantics are checked in the
/// end-to-end suite (`tests/tests/e2e/leader.rs`).
#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use k8s_openapi::api::coordination::v1::Lease;
    use paygress_tests::kube_api::FakeApiServer;

    use super::*;

    const NS: &str = "default";
    const LEASE: &str = "paygress-background";
    const RENEW: Duration = Duration::from_millis(500);
    const SAMPLE: Duration = Duration::from_millis(10);

    /// One replica: its campaign and its shutdown token.
    struct Contender {
        name: &'static str,
        leadership: Leadership,
        shutdown: CancellationToken,
    }

    fn contenders(server: &FakeApiServer, names: &[&'static str], ttl: Duration) -> Vec<Contender> {
        names
            .iter()
            .map(|&name| {
                let shutdown = CancellationToken::new();
                let leadership = Leadership::kube(
                    server.client_named(name),
                    NS,
                    LEASE,
                    name,
                    ttl,
                    RENEW,
                    shutdown.clone(),
                );
                Contender {
                    name,
                    leadership,
                    shutdown,
                }
            })
            .collect()
    }

    fn leaders(contenders: &[Contender]) -> Vec<&'static str> {
        contenders
            .iter()
            .filter(|c| c.leadership.is_leader())
            .map(|c| c.name)
            .collect()
    }

    fn lease(server: &FakeApiServer) -> Lease {
        let mut leases = server.leases(NS);
        assert_eq!(leases.len(), 1, "one Lease: {leases:?}");
        leases.remove(0)
    }

    fn holder(server: &FakeApiServer) -> Option<String> {
        lease(server).spec.and_then(|s| s.holder_identity)
    }

    /// Samples the contenders every 10 ms, failing at once if two lead at
    /// the same time, until `done` holds of the leaders (then returns
    /// them) or `within` has passed (then fails, saying `what`).
    async fn sample_until(
        contenders: &[Contender],
        within: Duration,
        what: &str,
        done: impl Fn(&[&'static str]) -> bool,
    ) -> Vec<&'static str> {
        let deadline = Instant::now() + within;
        loop {
            let now = leaders(contenders);
            assert!(now.len() <= 1, "two leaders at once: {now:?}");
            if done(&now) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within {within:?}: leaders {now:?}"
            );
            tokio::time::sleep(SAMPLE).await;
        }
    }

    /// Samples for `period`, failing if two lead at once; the leaders
    /// seen, in order, each once per stretch of leading.
    async fn sample_for(contenders: &[Contender], period: Duration) -> Vec<&'static str> {
        let mut seen: Vec<&'static str> = Vec::new();
        let deadline = Instant::now() + period;
        while Instant::now() < deadline {
            let now = leaders(contenders);
            assert!(now.len() <= 1, "two leaders at once: {now:?}");
            if let Some(&leader) = now.first() {
                if seen.last() != Some(&leader) {
                    seen.push(leader);
                }
            }
            tokio::time::sleep(SAMPLE).await;
        }
        seen
    }

    /// Stops the followers, then the leader (so that nobody takes the
    /// lease it releases).
    async fn stop_all(mut contenders: Vec<Contender>) {
        contenders.sort_by_key(|c| c.leadership.is_leader());
        for c in contenders {
            c.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(5), c.leadership.stopped())
                .await
                .unwrap_or_else(|_| panic!("{} did not stop", c.name));
        }
    }

    #[tokio::test]
    async fn solo_always_leads() {
        let solo = Leadership::solo();
        assert!(solo.is_leader());
        let mut leading = solo.watch();
        assert!(*leading.borrow_and_update());
        // The channel stays open while the Leadership lives.
        let open = tokio::time::timeout(Duration::from_millis(100), leading.changed()).await;
        assert!(
            open.is_err(),
            "the channel of a solo Leadership closed early"
        );
        solo.stopped().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_of_three_contenders_leads_and_keeps_leading() {
        let server = FakeApiServer::start().await;
        let all = contenders(&server, &["a", "b", "c"], Duration::from_secs(2));
        let first = sample_until(&all, Duration::from_secs(10), "a leader", |l| l.len() == 1).await;
        // Over several TTLs the same one leads without a gap: it renews,
        // and nobody takes a lease that is renewed.
        let seen = sample_for(&all, Duration::from_secs(5)).await;
        assert_eq!(seen, first, "the leadership moved or lapsed");
        assert_eq!(leaders(&all), first);
        assert_eq!(holder(&server).as_deref(), Some(first[0]));
        let spec = lease(&server).spec.unwrap_or_default();
        assert_eq!(spec.lease_duration_seconds, Some(2));
        assert_eq!(spec.lease_transitions, Some(0), "nobody took over");
        assert!(
            server.requests("update", "leases") >= 8,
            "the leader renews every {RENEW:?}"
        );
        stop_all(all).await;
        // The last one to stop released it.
        assert_eq!(holder(&server), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_leader_that_stops_releases_the_lease_to_a_successor_at_once() {
        // A TTL far longer than the wait below: a successor that leads in
        // time did not wait for the lease to run out.
        let ttl = Duration::from_secs(20);
        let server = FakeApiServer::start().await;
        let mut all = contenders(&server, &["a", "b", "c"], ttl);
        let first =
            sample_until(&all, Duration::from_secs(10), "a leader", |l| l.len() == 1).await[0];
        let index = all.iter().position(|c| c.name == first).unwrap_or_default();
        let old = all.remove(index);
        let mut old_leading = old.leadership.watch();
        old.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), old.leadership.stopped())
            .await
            .expect("the leader stops");
        assert!(
            !*old_leading.borrow_and_update(),
            "a stopped replica does not lead"
        );
        let next = sample_until(&all, Duration::from_secs(5), "a successor", |l| {
            l.len() == 1
        })
        .await[0];
        assert_ne!(next, first);
        assert_eq!(holder(&server).as_deref(), Some(next));
        let spec = lease(&server).spec.unwrap_or_default();
        assert_eq!(spec.lease_transitions, Some(1));
        // And it keeps it.
        assert_eq!(sample_for(&all, Duration::from_secs(2)).await, [next]);
        stop_all(all).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_leader_cut_off_from_the_api_steps_down_before_its_lease_runs_out() {
        let ttl = Duration::from_secs(3);
        let server = FakeApiServer::start().await;
        let all = contenders(&server, &["a", "b", "c"], ttl);
        let cut =
            sample_until(&all, Duration::from_secs(10), "a leader", |l| l.len() == 1).await[0];
        // Let it renew a few times, then cut it alone off: its renewals get
        // no answer (they hang, as across a partition) and do not land.
        sample_for(&all, Duration::from_secs(1)).await;
        server.partition(cut);
        let cut_at = SystemTime::now();
        let stepped_down = sample_until(&all, ttl * 2, "the cut-off leader steps down", |l| {
            l.is_empty()
        })
        .await;
        assert!(stepped_down.is_empty());
        let down_at = SystemTime::now();
        // Its last renewal that reached the server: the others count the
        // TTL from when they saw it, so it must have stopped before then.
        let spec = lease(&server).spec.unwrap_or_default();
        assert_eq!(spec.holder_identity.as_deref(), Some(cut));
        let renewed = spec
            .renew_time
            .map(|t| SystemTime::from(t.0))
            .expect("a renewTime");
        assert!(renewed <= cut_at);
        assert!(
            down_at < renewed + ttl,
            "it led until {:?} after its last renewal (TTL {ttl:?})",
            down_at.duration_since(renewed).unwrap_or_default()
        );
        // Another one takes over once the lease has run out for it, never
        // while the old one still leads.
        let next = sample_until(&all, ttl * 3, "a successor", |l| l.len() == 1).await[0];
        assert_ne!(next, cut);
        assert_eq!(holder(&server).as_deref(), Some(next));
        // The partition ends: the cut-off one's held renewals arrive late,
        // each based on a version that is no longer the lease's, and are
        // refused; it follows, the successor keeps leading.
        assert!(server.held() >= 1, "its renewals were held");
        server.reconnect(cut);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.held() > 0 {
            assert!(Instant::now() < deadline, "held requests did not arrive");
            tokio::time::sleep(SAMPLE).await;
        }
        assert_eq!(sample_for(&all, RENEW * 4).await, [next]);
        assert_eq!(holder(&server).as_deref(), Some(next));
        stop_all(all).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn nobody_leads_while_the_api_server_is_down() {
        let ttl = Duration::from_secs(2);
        let server = FakeApiServer::start().await;
        let all = contenders(&server, &["a", "b"], ttl);
        sample_until(&all, Duration::from_secs(10), "a leader", |l| l.len() == 1).await;
        // Connections refused: the leader's renewals fail at once.
        server.stop().await;
        sample_until(&all, ttl * 2, "the leader steps down", |l| l.is_empty()).await;
        let seen = sample_for(&all, ttl).await;
        assert!(seen.is_empty(), "{seen:?} led without the API server");
        server.start_again().await;
        sample_until(&all, ttl * 3, "a leader again", |l| l.len() == 1).await;
        stop_all(all).await;
    }
}
