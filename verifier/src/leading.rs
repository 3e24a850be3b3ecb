//! Which replica does the work that one replica should do, and starting and
//! stopping that work as leadership comes and goes.
//!
//! * [`elect`] picks how this replica learns whether it leads, from
//!   `PAYGRESS_LEADER_ELECTION` and where the store is (see
//!   [`crate::config::LeaderSettings`]): a Kubernetes Lease
//!   ([`crate::leader::Leadership::kube`]) or always
//!   ([`crate::leader::Leadership::solo`]);
//! * [`while_leading`] runs a long-lived task (the pod reaper) only while
//!   this replica leads, and aborts it as soon as it does not;
//! * the `paygress_replica_leader` gauge follows the state.
//!
//! Settlement and ledger pruning follow the same state in
//! [`crate::background`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderElection;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::verifier::Verifier;

/// How long a leader's Lease lasts without a renewal (default).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// Why leader election could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "PAYGRESS_LEADER_ELECTION=kube but no Kubernetes API to talk to ({0}); run in a pod with \
     a service account, set KUBECONFIG, or set PAYGRESS_LEADER_ELECTION=off"
)]
pub struct ElectionError(String);

/// How this replica learns whether it leads.
pub async fn elect(
    state: &Verifier,
    shutdown: CancellationToken,
) -> Result<Leadership, ElectionError> {
    let settings = &state.settings.leader;
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let campaign = match settings.mode {
        LeaderElection::Off => false,
        LeaderElection::Kube => true,
        LeaderElection::Auto => state.location.is_shared() && in_cluster,
    };
    if !campaign {
        tracing::info!(
            replica = %state.replica,
            "leader election off: this replica settles and reaps"
        );
        return Ok(Leadership::solo());
    }
    let config = kube::Config::infer()
        .await
        .map_err(|e| ElectionError(e.to_string()))?;
    let namespace = settings
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| ElectionError(e.to_string()))?;
    let ttl = std::env::var("PAYGRESS_LEADER_TTL_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .map_or(DEFAULT_LEASE_TTL, Duration::from_secs);
    tracing::info!(
        replica = %state.replica,
        lease = %settings.lease,
        namespace = %namespace,
        ttl_secs = ttl.as_secs(),
        "leader election: campaigning"
    );
    Ok(Leadership::kube(
        client,
        &namespace,
        &settings.lease,
        &state.replica,
        ttl,
        ttl / 3,
        shutdown,
    ))
}

/// Keeps the `paygress_replica_leader` gauge and the log in step with the
/// leading state, until the campaign ends.
pub fn track(
    metrics: Arc<Metrics>,
    mut leading: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = *leading.borrow_and_update();
            metrics.set_leader(now);
            tracing::info!(leading = now, "leadership");
            if leading.changed().await.is_err() {
                metrics.set_leader(false);
                return;
            }
        }
    })
}

/// Runs `work()` while this replica leads: started when it comes to lead,
/// aborted as soon as it does not (or the campaign ends).
pub fn while_leading<F, Fut>(
    name: &'static str,
    mut leading: watch::Receiver<bool>,
    work: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            if leading.wait_for(|l| *l).await.is_err() {
                return;
            }
            tracing::info!(work = name, "leading: started");
            let task = tokio::spawn(work());
            let lost = leading.wait_for(|l| !*l).await.is_err();
            task.abort();
            tracing::info!(work = name, "no longer leading: stopped");
            if lost {
                return;
            }
        }
    })
}
