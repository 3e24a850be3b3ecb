//! The reaper: deletes a lease's pod once the lease has ended.
//!
//! A `kube::runtime` controller watches the pods that carry Paygress's
//! label and reads each one's `paygress.io/expires-at` annotation: an ended
//! lease's pod is deleted (its Service goes with it, by owner reference); a
//! live one is looked at again at its expiry, or sooner when a top-up
//! changes the annotation. It keeps no state of its own: a restart lists
//! the pods again and loses nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Client;
use paygress_core::lease::parse_rfc3339;
use thiserror::Error;

use super::{selector, EXPIRES_AT};
use crate::metrics::Metrics;
use crate::verifier::unix_now;

/// The longest a live pod waits before it is looked at again.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// How soon a failed reconciliation is tried again.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
enum ReapError {
    #[error("cannot delete the pod: {0}")]
    Delete(#[from] kube::Error),
}

struct Context {
    pods: Api<Pod>,
    metrics: Arc<Metrics>,
}

/// Runs the reaper over the pods of `namespace` until the task is dropped.
pub async fn run(client: Client, namespace: String, metrics: Arc<Metrics>) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&selector());
    let context = Arc::new(Context {
        pods: pods.clone(),
        metrics,
    });
    tracing::info!(%namespace, "pod reaper: watching the pods of leases");
    Controller::new(pods, config)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "pod reaper");
            }
        })
        .await;
}

/// What to do with one pod now.
async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, ReapError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPIRES_AT));
    let Some(expires_at) = annotation.and_then(|a| parse_rfc3339(a)) else {
        tracing::warn!(pod = %name, ?annotation, "a Paygress pod without a readable {EXPIRES_AT}: left alone");
        return Ok(Action::await_change());
    };
    let now = unix_now();
    if now < expires_at {
        let wait = Duration::from_secs(expires_at - now).min(MAX_REQUEUE);
        return Ok(Action::requeue(wait));
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Only this pod, as it was read: a pod made again under the same name
    // for a renewed lease is not deleted by a stale event.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match ctx.pods.delete(&name, &params).await {
        Ok(_) => {
            ctx.metrics.pod("reaped");
            tracing::info!(pod = %name, expires_at, "pod reaped: its lease has ended");
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

fn error_policy(pod: Arc<Pod>, error: &ReapError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(pod = ?pod.metadata.name, %error, "pod reaper: will try again");
    Action::requeue(RETRY)
}
