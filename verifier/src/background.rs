//! The verifier's background work, one task per accepted mint: load the
//! mint's info and keysets (retrying until it answers), settle unfinished
//! redemptions at start, then settle and refresh the keysets every recovery
//! interval.

use std::sync::Arc;
use std::time::Duration;

use crate::verifier::Verifier;
use crate::wallet::MintWallet;

/// Loads every mint's metadata (retrying until it answers), settles
/// unfinished redemptions at start, then settles and refreshes keysets
/// every recovery interval.
pub fn spawn(state: Arc<Verifier>) -> tokio::task::JoinHandle<()> {
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

async fn mint_loop(state: Arc<Verifier>, mint: Arc<MintWallet>) {
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

/// How long the ledger remembers a token that paid (or was refunded).
/// Afterwards a replay is refused by the mint instead (a swap attempt).
pub const LEDGER_RETENTION_SECS: u64 = 30 * 24 * 3600;

async fn settle(state: &Verifier, mint: &MintWallet) {
    let ledger = state.redeemer.ledger();
    match ledger.prune(LEDGER_RETENTION_SECS) {
        Ok(0) => {}
        Ok(n) => tracing::info!(forgotten = n, "ledger: forgot tokens settled long ago"),
        Err(e) => tracing::warn!(error = %e, "ledger: cannot prune"),
    }
    match ledger.unclaimed() {
        Ok(n) => state.metrics.set_unclaimed(n),
        Err(e) => tracing::warn!(error = %e, "ledger: cannot count unclaimed redemptions"),
    }
    if let Err(e) = ledger.prune_leases(LEDGER_RETENTION_SECS) {
        tracing::warn!(error = %e, "ledger: cannot prune leases");
    }
    match ledger.live_leases(crate::verifier::unix_now()) {
        Ok(n) => state.metrics.set_leases_live(n),
        Err(e) => tracing::warn!(error = %e, "ledger: cannot count live leases"),
    }
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
