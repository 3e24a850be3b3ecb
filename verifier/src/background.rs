//! The verifier's background work, one task per accepted mint: load the
//! mint's info and keysets (retrying until it answers), then refresh the
//! keysets every recovery interval, on every replica; and, on the replica
//! that leads (see [`crate::leader`]), settle unfinished redemptions and
//! prune the ledger when it comes to lead and every recovery interval after.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::verifier::Verifier;
use crate::wallet::MintWallet;

/// Loads every mint's metadata (retrying until it answers), then refreshes
/// keysets every recovery interval; settles while `leading` says so.
pub fn spawn(state: Arc<Verifier>, leading: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for mint in state.wallets.all() {
            let mint = mint.clone();
            let state = state.clone();
            let leading = leading.clone();
            tasks.spawn(async move { mint_loop(state, mint, leading).await });
        }
        while tasks.join_next().await.is_some() {}
    })
}

async fn mint_loop(
    state: Arc<Verifier>,
    mint: Arc<MintWallet>,
    mut leading: watch::Receiver<bool>,
) {
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
    state.metrics.mint_answered(&mint.url);
    tracing::info!(mint = %mint.url, "mint ready");
    let mut interval = tokio::time::interval(state.settings.recovery_interval);
    interval.tick().await;
    loop {
        // Coming to lead settles at once (what a lost leader left); then
        // every interval, while leading.
        let leads = *leading.borrow_and_update();
        if leads {
            settle(&state, &mint).await;
        } else {
            count(&state).await;
        }
        match mint.balance().await {
            Ok(amount) => state
                .metrics
                .set_balance(&mint.url, &state.settings.config.unit, amount),
            Err(e) => {
                tracing::warn!(mint = %mint.url, error = %e, "cannot read the wallet's balance")
            }
        }
        tokio::select! {
            _ = interval.tick() => {
                match tokio::time::timeout(timeout, mint.load_metadata()).await {
                    Ok(Ok(())) => state.metrics.mint_answered(&mint.url),
                    Ok(Err(e)) => {
                        tracing::warn!(mint = %mint.url, error = %e, "cannot refresh the mint's keysets");
                        state.metrics.mint_error(&mint.url, "unreachable");
                    }
                    Err(_) => state.metrics.mint_error(&mint.url, "timeout"),
                }
            }
            changed = leading.changed() => {
                if changed.is_err() {
                    // The campaign ended (shutdown): wait for the interval
                    // rather than spin on a closed channel.
                    let _ = interval.tick().await;
                }
            }
        }
    }
}

/// The ledger's counts, for the metrics of a replica that does not lead.
async fn count(state: &Verifier) {
    let ledger = state.redeemer.ledger();
    if let Ok(n) = ledger.unclaimed().await {
        state.metrics.set_unclaimed(n);
    }
    if let Ok(n) = ledger.live_leases(crate::verifier::unix_now()).await {
        state.metrics.set_leases_live(n);
    }
}

/// How long the ledger remembers a token that paid (or was refunded).
/// Afterwards a replay is refused by the mint instead (a swap attempt).
pub const LEDGER_RETENTION_SECS: u64 = 30 * 24 * 3600;

async fn settle(state: &Verifier, mint: &MintWallet) {
    let ledger = state.redeemer.ledger();
    match ledger.prune(LEDGER_RETENTION_SECS).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(forgotten = n, "ledger: forgot tokens settled long ago"),
        Err(e) => tracing::warn!(error = %e, "ledger: cannot prune"),
    }
    match ledger.unclaimed().await {
        Ok(n) => state.metrics.set_unclaimed(n),
        Err(e) => tracing::warn!(error = %e, "ledger: cannot count unclaimed redemptions"),
    }
    if let Err(e) = ledger.prune_leases(LEDGER_RETENTION_SECS).await {
        tracing::warn!(error = %e, "ledger: cannot prune leases");
    }
    match ledger.live_leases(crate::verifier::unix_now()).await {
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
