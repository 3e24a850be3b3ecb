//! Redeeming a token: the swap at the mint through cdk's `receive`, once.
//!
//! * Submissions of one token are serialised in this process by a lock keyed
//!   by the hash of its secrets; the proofs of every token this process
//!   redeemed (or the mint said were spent) are remembered, so the second of
//!   twenty concurrent submissions is answered `token_already_spent` without
//!   a round trip. Across replicas the mint's swap is the arbiter: a proof can
//!   be swapped once.
//! * A redemption waits at most the mint timeout; the swap is then abandoned
//!   and the next settlement pass gives the proofs back if the mint never saw
//!   them (see [`crate::wallet::MintWallet::settle`]).
//! * The amount `receive` returns (net of the mint's input fees) is compared
//!   with the price.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdk::nuts::PublicKey;
use cdk::wallet::ReceiveOptions;
use paygress_core::Token;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::error::{classify_receive_error, AuthError};
use crate::ids;
use crate::metrics::Metrics;
use crate::wallet::MintWallet;

/// How many proof secrets the replay cache remembers.
pub const SPENT_CACHE_CAPACITY: usize = 200_000;

type LockMap = Arc<Mutex<HashMap<[u8; 32], Arc<AsyncMutex<()>>>>>;

/// Per-token locks, removed when nobody holds or waits for them.
#[derive(Debug, Default)]
pub struct TokenLocks {
    map: LockMap,
}

/// A held per-token lock.
#[derive(Debug)]
pub struct TokenLockGuard {
    key: [u8; 32],
    map: LockMap,
    guard: Option<OwnedMutexGuard<()>>,
}

impl TokenLocks {
    pub async fn lock(&self, key: [u8; 32]) -> TokenLockGuard {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        TokenLockGuard {
            key,
            map: self.map.clone(),
            guard: Some(guard),
        }
    }

    /// The number of tokens locked or waited for (for tests).
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for TokenLockGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// The secrets of proofs this process redeemed or saw refused as spent:
/// a bounded set, oldest forgotten first (the mint still refuses them).
#[derive(Debug, Default)]
pub struct SpentCache {
    inner: Mutex<SpentSet>,
}

/// The remembered secrets, and their order of arrival.
#[derive(Debug, Default)]
struct SpentSet {
    keys: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl SpentCache {
    pub fn contains_any(&self, token: &Token) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        token
            .proofs
            .iter()
            .any(|p| inner.keys.contains(&ids::secret_key(&p.secret)))
    }

    pub fn insert(&self, token: &Token) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for p in &token.proofs {
            let key = ids::secret_key(&p.secret);
            if inner.keys.insert(key) {
                inner.order.push_back(key);
            }
        }
        while inner.order.len() > SPENT_CACHE_CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.keys.remove(&old);
            }
        }
    }
}

/// Redeems tokens at their mint.
#[derive(Debug)]
pub struct Redeemer {
    locks: TokenLocks,
    spent: SpentCache,
    metrics: Arc<Metrics>,
    mint_timeout: Duration,
}

impl Redeemer {
    pub fn new(metrics: Arc<Metrics>, mint_timeout: Duration) -> Self {
        Redeemer {
            locks: TokenLocks::default(),
            spent: SpentCache::default(),
            metrics,
            mint_timeout,
        }
    }

    /// Swaps the token's proofs into `mint`'s wallet; returns the amount
    /// received, net of the mint's fees, which must cover `price`.
    ///
    /// `raw` is the token as the client sent it, `token` its decoding (whose
    /// mint, unit and value were checked already).
    pub async fn redeem(
        &self,
        mint: &MintWallet,
        raw: &str,
        token: &Token,
        price: u64,
    ) -> Result<u64, AuthError> {
        let _lock = self.locks.lock(ids::token_key(token)).await;
        if self.spent.contains_any(token) {
            return Err(AuthError::AlreadySpent);
        }

        let ys = proof_ys(token)?;
        self.settle_earlier_attempt(mint, &ys).await?;

        let _in_flight = self.metrics.in_flight();
        let _gate = mint.redemption_gate().await;
        let started = Instant::now();
        let encoded = canonical_token(raw);
        let outcome = tokio::time::timeout(
            self.mint_timeout,
            mint.wallet.receive(&encoded, ReceiveOptions::default()),
        )
        .await;
        let took = started.elapsed();
        let received = match outcome {
            Err(_elapsed) => {
                self.metrics.mint_error(&mint.url, "timeout");
                return Err(AuthError::MintUnavailable(format!(
                    "no answer from the mint within {:?}",
                    self.mint_timeout
                )));
            }
            Ok(Err(err)) => {
                let refusal = classify_receive_error(&err);
                match &refusal {
                    AuthError::AlreadySpent => {
                        self.spent.insert(token);
                        if let Err(e) = mint.discard_refused_receive(&ys).await {
                            tracing::warn!(mint = %mint.url, error = %e, "cannot discard a refused redemption; settlement will");
                        }
                    }
                    AuthError::MintUnavailable(_) => {
                        self.metrics.mint_error(&mint.url, "unreachable")
                    }
                    AuthError::Internal(_) => self.metrics.mint_error(&mint.url, "store"),
                    _ => self.metrics.mint_error(&mint.url, "refused"),
                }
                tracing::info!(
                    mint = %mint.url,
                    token = %ids::log_id(token),
                    error = %err,
                    code = %refusal.code(),
                    "redemption refused"
                );
                return Err(refusal);
            }
            Ok(Ok(amount)) => u64::from(amount),
        };
        self.spent.insert(token);
        self.metrics.redemption(took);
        tracing::info!(
            mint = %mint.url,
            token = %ids::log_id(token),
            face = token.total,
            received,
            price,
            ms = took.as_millis() as u64,
            "token redeemed"
        );
        if received < price {
            tracing::warn!(
                mint = %mint.url,
                token = %ids::log_id(token),
                received,
                price,
                "the swap gave less than the price (did the mint's fee change?)"
            );
            // The fee table was stale: reload it for the next token.
            if let Err(e) = mint.load_metadata().await {
                tracing::warn!(mint = %mint.url, error = %e, "cannot reload the mint's keysets");
            }
            return Err(AuthError::ReceivedLess { received, price });
        }
        Ok(received)
    }

    /// If an earlier redemption of these proofs did not finish (the wallet
    /// holds them as pending), settle with the mint first: released proofs
    /// are redeemed afresh, swapped ones end as `token_already_spent`.
    async fn settle_earlier_attempt(
        &self,
        mint: &MintWallet,
        ys: &[PublicKey],
    ) -> Result<(), AuthError> {
        let pending = mint
            .has_pending(ys)
            .await
            .map_err(|e| AuthError::Internal(format!("wallet store: {e}")))?;
        if !pending {
            return Ok(());
        }
        tracing::info!(mint = %mint.url, "an earlier redemption of this token is unfinished: settling it first");
        match tokio::time::timeout(self.mint_timeout, mint.settle()).await {
            Ok(Ok(s)) => tracing::info!(mint = %mint.url, ?s, "settled"),
            Ok(Err(e)) => tracing::warn!(mint = %mint.url, error = %e, "settling failed"),
            Err(_) => tracing::warn!(mint = %mint.url, "settling timed out"),
        }
        let still = mint
            .has_pending(ys)
            .await
            .map_err(|e| AuthError::Internal(format!("wallet store: {e}")))?;
        if still {
            self.metrics.mint_error(&mint.url, "unreachable");
            return Err(AuthError::MintUnavailable(
                "an earlier redemption of this token is not settled yet".into(),
            ));
        }
        Ok(())
    }
}

/// The proofs' `Y = hash_to_curve(secret)`, as the mint and the wallet store
/// know them.
fn proof_ys(token: &Token) -> Result<Vec<PublicKey>, AuthError> {
    token
        .proofs
        .iter()
        .map(|p| {
            cdk::dhke::hash_to_curve(p.secret.as_bytes())
                .map_err(|e| AuthError::TokenInvalid(format!("proof secret: {e}")))
        })
        .collect()
}

/// The token as cdk parses it: trimmed, without a `cashu:` prefix, in
/// base64url (paygress-core also accepts standard base64).
pub fn canonical_token(raw: &str) -> String {
    let s = raw.trim();
    let s = match s.get(..6) {
        Some(head) if head.eq_ignore_ascii_case("cashu:") => s.get(6..).unwrap_or(""),
        _ => s,
    };
    match (s.get(..6), s.get(6..)) {
        (Some(prefix), Some(body)) => {
            let body: String = body
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{prefix}{body}")
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_token_strips_the_uri_scheme_and_fixes_the_alphabet() {
        assert_eq!(canonical_token(" cashu:cashuBab+c/d== "), "cashuBab-c_d==");
        assert_eq!(canonical_token("CASHU:cashuAxyz"), "cashuAxyz");
        assert_eq!(canonical_token("cashuB"), "cashuB");
        assert_eq!(canonical_token("x"), "x");
    }

    #[tokio::test]
    async fn token_locks_serialise_and_clean_up() {
        let locks = Arc::new(TokenLocks::default());
        let first = locks.lock([1; 32]).await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock([1; 32]).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
        assert!(locks.is_empty());
    }
}
