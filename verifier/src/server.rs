//! `paygress serve`: the axum service (`/auth`, `/auth/*`, `/healthz`,
//! `/readyz`, `/metrics`), its background work, and a graceful shutdown.
//!
//! On SIGTERM (or SIGINT) the verifier stops accepting connections and
//! refuses new redemptions (503 `verifier_unavailable`, `/readyz` 503), lets
//! the redemptions in flight finish (at most the shutdown grace), then exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Decision};
use crate::config::{self, Settings};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::redeem::Redeemer;
use crate::response;
use crate::seed;
use crate::wallet::{MintWallet, WalletError, Wallets};

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub wallets: Wallets,
    pub redeemer: Redeemer,
    pub metrics: Arc<Metrics>,
    pub tracker: TaskTracker,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(settings: Settings, wallets: Wallets, ledger: Ledger) -> Self {
        let metrics = Arc::new(Metrics::new());
        for m in wallets.all() {
            metrics.mint_ready(&m.url, false);
        }
        AppState {
            redeemer: Redeemer::new(
                metrics.clone(),
                settings.mint_timeout,
                ledger,
                settings.max_redemptions,
            ),
            settings,
            wallets,
            metrics,
            tracker: TaskTracker::new(),
            draining: AtomicBool::new(false),
        }
    }

    /// Whether shutdown has begun (no new redemptions).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins the shutdown.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Why `serve` stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Permissions(#[from] crate::files::PermissionError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/auth", any(auth_handler))
        .route("/auth/", any(auth_handler))
        .route("/auth/{*rest}", any(auth_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn auth_handler(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let nginx = response::wants_nginx_mode(&uri, &headers);
    let (decision, original) = auth::decide(&state, &method, &uri, &headers).await;
    let outcome = match &decision {
        Decision::Allow(g) if g.payment.is_some() => "paid",
        Decision::Allow(_) => "free",
        Decision::PaymentRequired { .. } => "payment_required",
        Decision::Refuse(e) => e.code().as_str(),
    };
    state.metrics.payment(outcome);
    if let Decision::Allow(auth::Grant { payment: Some(p) }) = &decision {
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
    let mut response = response::respond(&decision, &state.settings.config, nginx);
    if matches!(decision, Decision::Allow(_)) {
        response::ask_envoy_to_remove_token(response.headers_mut(), &headers);
    }
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Opens the seed and the wallets for `serve`.
pub async fn build_state(
    settings: Settings,
    data_dir: &std::path::Path,
    env_mnemonic: Option<&str>,
) -> Result<Arc<AppState>, ServeError> {
    let (seed, origin) = seed::load_or_create(data_dir, env_mnemonic)?;
    let replica = seed::replica_from_env(data_dir)?;
    tracing::info!(
        data_dir = %data_dir.display(),
        seed = ?origin,
        replica = %replica.id,
        replica_from = replica.origin,
        replica_history = ?replica.history,
        "wallet seed"
    );
    let seed = seed::replica_seed(&seed, &replica.id);
    let wallets = Wallets::open(
        data_dir,
        &settings.config.mints,
        &settings.config.unit,
        seed,
    )
    .await?;
    let ledger = Ledger::open(data_dir)?;
    crate::files::secure_data_dir(data_dir)?;
    Ok(Arc::new(AppState::new(settings, wallets, ledger)))
}

/// Runs the verifier until SIGTERM/SIGINT.
pub async fn serve(
    settings: Settings,
    listen: SocketAddr,
    data_dir: PathBuf,
    env_mnemonic: Option<String>,
) -> Result<(), ServeError> {
    tracing::info!(
        "paygress {}: {}",
        env!("CARGO_PKG_VERSION"),
        config::summary(&settings)
    );
    let state = build_state(settings, &data_dir, env_mnemonic.as_deref()).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %local, "serving /auth, /healthz, /readyz, /metrics");

    let background = spawn_background(state.clone());
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

async fn wait_for_signal() {
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

/// Loads every mint's metadata (retrying until it answers), settles
/// unfinished redemptions at start, then settles and refreshes keysets
/// every recovery interval.
pub fn spawn_background(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for mint in state.wallets.all() {
            let mint = mint.clone();
            let state = state.clone();
            tasks.spawn(async move { mint_loop(state, mint).await });
        }
        while tasks.join_next().await.is_some() {}
    })
}

async fn mint_loop(state: Arc<AppState>, mint: Arc<MintWallet>) {
    let timeout = state.settings.mint_timeout.max(Duration::from_secs(5));
    let mut backoff = Duration::from_millis(250);
    loop {
        if !mint.is_ready() {
            match tokio::time::timeout(timeout, mint.load_metadata()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(mint = %mint.url, error = %e, "mint not answering yet");
                    state.metrics.mint_error(&mint.url, "unreachable");
                }
                Err(_) => {
                    tracing::warn!(mint = %mint.url, "mint not answering yet (timeout)");
                    state.metrics.mint_error(&mint.url, "timeout");
                }
            }
        }
        if mint.is_ready() {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    state.metrics.mint_ready(&mint.url, true);
    tracing::info!(mint = %mint.url, "mint ready");
    settle(&state, &mint).await;
    let mut interval = tokio::time::interval(state.settings.recovery_interval);
    interval.tick().await;
    loop {
        interval.tick().await;
        settle(&state, &mint).await;
        if let Ok(Err(e)) = tokio::time::timeout(timeout, mint.load_metadata()).await {
            tracing::warn!(mint = %mint.url, error = %e, "cannot refresh the mint's keysets");
            state.metrics.mint_error(&mint.url, "unreachable");
        }
    }
}

async fn settle(state: &AppState, mint: &MintWallet) {
    let timeout = state.settings.mint_timeout.max(Duration::from_secs(5)) * 4;
    match tokio::time::timeout(timeout, mint.settle()).await {
        Ok(Ok(s)) if s.released > 0 || s.compensated > 0 => {
            tracing::info!(mint = %mint.url, ?s, "settled unfinished operations")
        }
        Ok(Ok(s)) => tracing::debug!(mint = %mint.url, ?s, "settlement pass"),
        Ok(Err(e)) => {
            tracing::warn!(mint = %mint.url, error = %e, "cannot settle unfinished operations");
            state.metrics.mint_error(&mint.url, "unreachable");
        }
        Err(_) => tracing::warn!(mint = %mint.url, "settling unfinished operations timed out"),
    }
}
