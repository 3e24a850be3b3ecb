//! `paygress serve`: the axum routes (`/auth`, `/auth/*`, `/lease`, `/healthz`,
//! `/readyz`, `/metrics`) over an `Arc<Verifier>`, and a graceful shutdown.
//!
//! On SIGTERM (or SIGINT) the verifier stops accepting connections and
//! refuses new redemptions (503 `verifier_unavailable`, `/readyz` 503), lets
//! the redemptions in flight finish (at most the shutdown grace), then exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::background;
use crate::config::{self, Settings};
use crate::decision::{Decision, Grant};
use crate::ingress;
use crate::lease_status;
use crate::verifier::{OpenError, Verifier};

/// Why `serve` stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Election(#[from] crate::leading::ElectionError),
}

/// The router.
pub fn router(state: Arc<Verifier>) -> Router {
    Router::new()
        .route("/auth", any(auth_handler))
        .route("/auth/", any(auth_handler))
        .route("/auth/{*rest}", any(auth_handler))
        .route("/lease", get(lease))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn auth_handler(
    State(state): State<Arc<Verifier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let nginx = ingress::wants_nginx_mode(&uri, &headers);
    let (decision, original) = match ingress::read_request(
        &method,
        &uri,
        &headers,
        state.settings.deadline,
        bearer_passes(&state),
    ) {
        Ok(request) => (state.decide(&request).await, Some(request.original)),
        Err(e) => (Decision::Refuse(e), None),
    };
    let outcome = match &decision {
        Decision::Allow(g) if g.payment.is_some() => "paid",
        Decision::Allow(g) if g.lease.is_some() => "pass",
        Decision::Allow(_) => "free",
        Decision::PaymentRequired { .. } => "payment_required",
        Decision::Refuse(e) => e.code().as_str(),
    };
    state.metrics.payment(outcome);
    if let Decision::Allow(Grant {
        payment: Some(p), ..
    }) = &decision
    {
        state.metrics.received(
            p.tier.as_deref().unwrap_or("default"),
            &p.mint,
            &state.settings.config.unit,
            p.amount,
        );
    }
    let (target, source, orig_method) = original
        .as_ref()
        .map(|o| (o.target.as_str(), o.source, o.method.as_str()))
        .unwrap_or(("-", "-", "-"));
    // The path only (a query string may carry an application's secrets).
    let target: String = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    match &decision {
        Decision::Refuse(e) => tracing::info!(
            %outcome, %target, %source, method = %orig_method, reason = %e,
            ms = started.elapsed().as_millis() as u64, "auth"
        ),
        _ => tracing::debug!(
            %outcome, %target, %source, method = %orig_method,
            ms = started.elapsed().as_millis() as u64, "auth"
        ),
    }
    // `Accept` is read only for a refusal: a page for a browser, else JSON.
    let format = match decision {
        Decision::Allow(_) => paygress_core::browser::Format::Json,
        _ => ingress::refusal_format(&headers, nginx),
    };
    let mut response = ingress::respond(&decision, &state.settings.config, nginx, format);
    if matches!(decision, Decision::Allow(_)) {
        ingress::keep_credentials_from_upstream(
            response.headers_mut(),
            &headers,
            bearer_passes(&state),
        );
    }
    response
}

async fn lease(State(state): State<Arc<Verifier>>, headers: HeaderMap) -> Response {
    let now = crate::verifier::unix_now();
    let found = ingress::find_pass(&headers, bearer_passes(&state));
    let answer = match found {
        Ok(p) => lease_status::lease_status(&state, p.as_deref(), now).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((mut status, fresh)) => {
            if let (Some(pods), Some(_)) = (&state.pods, &status.pod) {
                let deadline = Instant::now() + std::time::Duration::from_secs(2);
                status.pod_phase = Some(match pods.status(&status.lease, deadline).await {
                    Ok(Some(pod)) => pod.phase,
                    Ok(None) => "Gone".into(),
                    Err(e) => format!("Unknown ({e})"),
                });
            }
            let mut r = axum::Json(status).into_response();
            if let Some(v) = fresh.and_then(|p| HeaderValue::from_str(&p).ok()) {
                r.headers_mut()
                    .insert(paygress_core::headers::X_PAYGRESS_PASS, v);
            }
            r
        }
        Err(e) => ingress::decision_response(&Decision::Refuse(e), &state.settings.config),
    }
}

/// Whether `Authorization: Bearer p1.…` is a pass here (the config has pass
/// keys) rather than the application's own.
fn bearer_passes(state: &Verifier) -> bool {
    !state.settings.config.pass_keys().is_empty()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<Verifier>>) -> Response {
    let waiting: Vec<&str> = state
        .wallets
        .all()
        .iter()
        .filter(|m| !m.is_ready())
        .map(|m| m.url.as_str())
        .collect();
    let body = serde_json::json!({
        "ready": waiting.is_empty() && !state.is_draining(),
        "draining": state.is_draining(),
        "mints_waiting": waiting,
    })
    .to_string();
    let status = if waiting.is_empty() && !state.is_draining() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn metrics(State(state): State<Arc<Verifier>>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Runs the verifier until SIGTERM/SIGINT.
pub async fn serve(
    settings: Settings,
    listen: SocketAddr,
    location: crate::store::Location,
    data_dir: PathBuf,
    env_mnemonic: Option<String>,
) -> Result<(), ServeError> {
    tracing::info!(
        "paygress {}: {}",
        env!("CARGO_PKG_VERSION"),
        config::summary(&settings)
    );
    let state = Verifier::open(settings, &location, &data_dir, env_mnemonic.as_deref()).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %local, "serving /auth, /healthz, /readyz, /metrics");

    let campaign_stop = tokio_util::sync::CancellationToken::new();
    let leadership = crate::leading::elect(&state, campaign_stop.clone()).await?;
    let tracking = crate::leading::track(state.metrics.clone(), leadership.watch());
    let background = background::spawn(state.clone(), leadership.watch());
    let reaper = state.pods.as_ref().map(|pods| {
        let (client, namespace, metrics) = (
            pods.client(),
            pods.namespace().to_string(),
            state.metrics.clone(),
        );
        crate::leading::while_leading("pod reaper", leadership.watch(), move || {
            crate::pods::reaper::run(client.clone(), namespace.clone(), metrics.clone())
        })
    });
    let grace = state.settings.shutdown_grace;
    let signal_state = state.clone();
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        wait_for_signal().await;
        signal_state.start_draining();
        tracing::info!(
            in_flight = signal_state.metrics.redemptions_in_flight(),
            "shutting down: no new redemptions; waiting for those in flight"
        );
        let _ = stopped_tx.send(true);
    };
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(shutdown);
    let mut stopped = stopped_rx;
    tokio::select! {
        result = server => result.map_err(ServeError::Serve)?,
        () = async {
            // Once draining starts, give connections the grace period at most.
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("shutdown grace expired with connections still open"),
    }
    background.abort();
    if let Some(reaper) = reaper {
        reaper.abort();
    }
    // Hand the lead over at once rather than after the Lease's TTL.
    campaign_stop.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(5), leadership.stopped())
        .await
        .is_err()
    {
        tracing::warn!("leader election: the lease was not released in time");
    }
    tracking.abort();
    state.tracker.close();
    if tokio::time::timeout(grace, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown grace expired with redemptions in flight; they are settled at the next start"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
