//! Redeeming a token: the swap at the mint through cdk's `receive`, once.
//!
//! * Submissions of one token are serialised in this process by a lock keyed
//!   by the hash of its secrets; the proofs of every token this process
//!   redeemed (or the mint said were spent) are remembered, so the second of
//!   twenty concurrent submissions is answered `token_already_spent` without
//!   a round trip. Across replicas the mint's swap is the arbiter: a proof can
//!   be swapped once.
//! * Every redemption runs against the request's deadline: every wait is
//!   bounded by it, and no swap begins with less than [`MIN_SWAP_WINDOW`]
//!   left. A swap abandoned half-way is settled with the mint later (see
//!   [`crate::wallet::MintWallet::settle`]).
//! * Each swap is written to the [`Ledger`] before it begins and when it
//!   completes, so that a swap that completed after the client was refused
//!   (a timeout, a crash) is granted to the same token's next presentation:
//!   exactly one grant per token, and no payment lost.
//! * The amount `receive` returns (net of the mint's input fees) is compared
//!   with the price by the caller; a swapped token worth less is refunded.
//! * At most a configured number of redemptions run at once
//!   ([`Redeemer::try_slot`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdk::nuts::PublicKey;
use cdk::wallet::ReceiveOptions;
use paygress_core::Token;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::error::{classify_receive_error, AuthError};
use crate::ids;
use crate::ledger::{Entry, Ledger};
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

/// The shortest time left before a request's deadline in which a swap is
/// still begun: a swap takes milliseconds to tens of milliseconds; one that
/// could not finish in time is not started (the token stays the client's).
pub const MIN_SWAP_WINDOW: Duration = Duration::from_millis(150);

/// How far the NUT-13 counter skips after the mint said our outputs were
/// signed already.
const COUNTER_SKIP_ON_COLLISION: u32 = 1000;

/// Redeems tokens at their mint.
#[derive(Debug)]
pub struct Redeemer {
    locks: TokenLocks,
    spent: SpentCache,
    ledger: Ledger,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    mint_timeout: Duration,
}

impl Redeemer {
    pub fn new(
        metrics: Arc<Metrics>,
        mint_timeout: Duration,
        ledger: Ledger,
        max_concurrent: usize,
    ) -> Self {
        Redeemer {
            locks: TokenLocks::default(),
            spent: SpentCache::default(),
            ledger,
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            metrics,
            mint_timeout,
        }
    }

    /// A slot for one redemption, if fewer than the configured maximum are
    /// in flight; held until the redemption ends.
    pub fn try_slot(&self) -> Result<OwnedSemaphorePermit, AuthError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuthError::Busy)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Swaps the token's proofs into `mint`'s wallet, or finds that an
    /// earlier attempt did; returns the amount credited (net of the mint's
    /// fees) and leaves it in the ledger for [`Redeemer::claim`]. Begins no
    /// swap that could not finish before `deadline`.
    ///
    /// `raw` is the token as the client sent it, `token` its decoding (whose
    /// mint, unit and value were checked already).
    pub async fn redeem(
        &self,
        mint: &MintWallet,
        raw: &str,
        token: &Token,
        deadline: Instant,
    ) -> Result<u64, AuthError> {
        let key = ids::token_key(token);
        let Ok(_lock) = tokio::time::timeout_at(deadline.into(), self.locks.lock(key)).await else {
            return Err(AuthError::Unfinished(
                "another redemption of this token is in progress".into(),
            ));
        };
        let ys = proof_ys(token)?;
        match self.ledger.get(&key).map_err(store_error)? {
            Some(Entry::Granted { .. } | Entry::Refunded { .. }) => {
                return Err(AuthError::AlreadySpent)
            }
            Some(Entry::Credited { received }) => return Ok(received),
            Some(Entry::Swapping) => {
                if let Some(received) = self.resolve_unfinished(mint, &key, &ys, deadline).await? {
                    return Ok(received);
                }
            }
            None => {
                if self.spent.contains_any(token) {
                    return Err(AuthError::AlreadySpent);
                }
                self.settle_earlier_attempt(mint, &ys, deadline).await?;
            }
        }

        // One swap at a time per mint: cdk 0.18 records the NUT-13 counter
        // range of a receive by reading the keyset counter after deriving its
        // outputs, so concurrent receives record each other's ranges and a
        // later recovery (after a timeout or a crash) restores the wrong
        // outputs. cdk talks to a mint over one connection, one request at a
        // time, so this costs little.
        let _in_flight = self.metrics.in_flight();
        let Ok(_gate) = tokio::time::timeout_at(deadline.into(), mint.swap_gate()).await else {
            return Err(AuthError::Unfinished(
                "the mint's earlier swaps did not finish in time".into(),
            ));
        };
        // The time left once it is our turn: no swap that could not finish.
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_SWAP_WINDOW {
            self.metrics.mint_error(&mint.url, "deadline");
            return Err(AuthError::Unfinished(format!(
                "{} ms left of the request's deadline, too little to redeem",
                left.as_millis()
            )));
        }
        let budget = left.min(self.mint_timeout);
        self.ledger.begin(&key, &mint.url).map_err(store_error)?;
        let started = Instant::now();
        let encoded = canonical_token(raw);
        let outcome = tokio::time::timeout(
            budget,
            mint.wallet.receive(&encoded, ReceiveOptions::default()),
        )
        .await;
        let took = started.elapsed();
        let received = match outcome {
            Err(_elapsed) => {
                self.metrics.mint_error(&mint.url, "timeout");
                self.forget_if_not_pending(mint, &key, &ys).await;
                return Err(AuthError::Unfinished(format!(
                    "no answer from the mint within {budget:?}"
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
                    AuthError::OutputsAlreadySigned => {
                        tracing::error!(
                            mint = %mint.url,
                            "the mint has signed our outputs already: another verifier derives the \
                             same outputs (same mnemonic and replica id); give each replica its own \
                             PAYGRESS_REPLICA_ID. Skipping the counter ahead."
                        );
                        self.metrics.mint_error(&mint.url, "outputs_signed");
                        if let Err(e) = mint.discard_refused_receive(&ys).await {
                            tracing::warn!(mint = %mint.url, error = %e, "cannot discard a refused redemption; settlement will");
                        }
                        if let Err(e) = mint.skip_counter(COUNTER_SKIP_ON_COLLISION).await {
                            tracing::warn!(mint = %mint.url, error = %e, "cannot skip the counter");
                        }
                    }
                    AuthError::MintUnavailable(_) => {
                        self.metrics.mint_error(&mint.url, "unreachable")
                    }
                    AuthError::Internal(_) => self.metrics.mint_error(&mint.url, "store"),
                    _ => self.metrics.mint_error(&mint.url, "refused"),
                }
                self.forget_if_not_pending(mint, &key, &ys).await;
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
        if let Err(e) = self.ledger.credit(&key, &mint.url, received) {
            // The money is in the wallet; the row stays `swapping` and the
            // next presentation settles it from cdk's transaction record.
            tracing::error!(mint = %mint.url, token = %ids::log_id(token), error = %e, "cannot record a redemption");
            return Err(store_error(e));
        }
        self.metrics.redemption(took);
        tracing::info!(
            mint = %mint.url,
            token = %ids::log_id(token),
            face = token.total,
            received,
            ms = took.as_millis() as u64,
            "token redeemed"
        );
        Ok(received)
    }

    /// Claims the credit of a redeemed token for one request: `Ok(received)`
    /// for exactly one caller, `AlreadySpent` for every other.
    pub fn claim(&self, token: &Token) -> Result<u64, AuthError> {
        match self
            .ledger
            .claim(&ids::token_key(token))
            .map_err(store_error)?
        {
            Some(received) => Ok(received),
            None => Err(AuthError::AlreadySpent),
        }
    }

    /// Gives a redeemed token's value back as a refund token (it was worth
    /// less than the price once swapped). Until the refund is made the
    /// credit stays, so a failure here loses nothing: the next presentation
    /// of the token tries again.
    pub async fn refund(
        &self,
        mint: &MintWallet,
        token: &Token,
        received: u64,
        price: u64,
    ) -> AuthError {
        let key = ids::token_key(token);
        let Ok(_lock) = tokio::time::timeout(self.mint_timeout, self.locks.lock(key)).await else {
            return AuthError::Unfinished("another redemption of this token is in progress".into());
        };
        if !matches!(self.ledger.get(&key), Ok(Some(Entry::Credited { .. }))) {
            return AuthError::AlreadySpent;
        }
        // The fee table was stale: reload it for the next token.
        if let Err(e) = mint.load_metadata().await {
            tracing::warn!(mint = %mint.url, error = %e, "cannot reload the mint's keysets");
        }
        // Making the refund is a swap too: one at a time per mint.
        let refund = async {
            let _gate = mint.swap_gate().await;
            mint.make_refund(received).await
        };
        match tokio::time::timeout(self.mint_timeout, refund).await {
            Ok(Ok(refund)) => {
                if let Err(e) = self.ledger.refunded(&key) {
                    tracing::error!(error = %e, "cannot record a refund");
                }
                self.metrics.refund();
                tracing::warn!(mint = %mint.url, token = %ids::log_id(token), received, price, "the swap gave less than the price: refunded");
                AuthError::ReceivedLess {
                    received,
                    price,
                    refund: Some(refund),
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(mint = %mint.url, error = %e, "cannot make a refund now");
                AuthError::Unfinished("the refund could not be made yet".into())
            }
            Err(_) => AuthError::Unfinished("the refund could not be made in time".into()),
        }
    }

    /// Settles a redemption that began and whose outcome was not recorded
    /// (the request gave up, or the verifier died): `Some(received)` when the
    /// mint swapped it into our wallet, `None` when it did not (the token is
    /// the client's; the caller may swap it now).
    async fn resolve_unfinished(
        &self,
        mint: &MintWallet,
        key: &[u8; 32],
        ys: &[PublicKey],
        deadline: Instant,
    ) -> Result<Option<u64>, AuthError> {
        self.settle_earlier_attempt(mint, ys, deadline).await?;
        let completed = mint
            .completed_receive(ys)
            .await
            .map_err(|e| AuthError::Internal(format!("wallet store: {e}")))?;
        match completed {
            Some(received) => {
                self.ledger
                    .credit(key, &mint.url, received)
                    .map_err(store_error)?;
                tracing::info!(mint = %mint.url, received, "an unfinished redemption had completed: credited");
                Ok(Some(received))
            }
            None => {
                self.ledger.forget(key).map_err(store_error)?;
                Ok(None)
            }
        }
    }

    /// Drops the ledger row of a swap that left nothing pending (the mint
    /// refused it, or it never left): the token is still the client's.
    async fn forget_if_not_pending(&self, mint: &MintWallet, key: &[u8; 32], ys: &[PublicKey]) {
        match mint.has_pending(ys).await {
            Ok(false) => {
                if let Err(e) = self.ledger.forget(key) {
                    tracing::warn!(error = %e, "cannot update the ledger");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the wallet store"),
        }
    }

    /// If an earlier redemption of these proofs did not finish (the wallet
    /// holds them as pending), settle with the mint first: released proofs
    /// are redeemed afresh, swapped ones are found in cdk's records.
    async fn settle_earlier_attempt(
        &self,
        mint: &MintWallet,
        ys: &[PublicKey],
        deadline: Instant,
    ) -> Result<(), AuthError> {
        let pending = mint
            .has_pending(ys)
            .await
            .map_err(|e| AuthError::Internal(format!("wallet store: {e}")))?;
        if !pending {
            return Ok(());
        }
        tracing::info!(mint = %mint.url, "an earlier redemption of this token is unfinished: settling it first");
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(self.mint_timeout);
        match tokio::time::timeout(budget, mint.settle()).await {
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
            return Err(AuthError::Unfinished(
                "an earlier redemption of this token is not settled yet".into(),
            ));
        }
        Ok(())
    }
}

fn store_error(e: crate::ledger::LedgerError) -> AuthError {
    AuthError::Internal(e.to_string())
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
