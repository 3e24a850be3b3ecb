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
//!   [`crate::wallet::MintWallet::settle`]). Swaps at one mint run one at a
//!   time ([`crate::wallet::MintWallet::swap_gate`]).
//! * The mint is reached through [`MintOps`]: cdk's wallet in production,
//!   an in-memory mint in the unit tests below.
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
use paygress_core::{ErrorCode, Token};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::error::{classify_receive_error, AuthError};
use crate::ids;
use crate::ledger::{Entry, LeasePurchase, LeaseRecord, Ledger};
use crate::metrics::Metrics;
use crate::mint::MintOps;

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
    pub async fn redeem<M: MintOps>(
        &self,
        mint: &M,
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
        match self.ledger.get(&key).await.map_err(store_error)? {
            Some(Entry::Refunded {
                refund: Some((code, refund)),
                ..
            }) => {
                // The same request again: the same answer, the same refund.
                let code = ErrorCode::parse(&code).unwrap_or(ErrorCode::InsufficientAmount);
                return Err(AuthError::Refunded { code, refund });
            }
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
        let _gate = match tokio::time::timeout_at(deadline.into(), mint.swap_gate()).await {
            Ok(Ok(gate)) => gate,
            Ok(Err(e)) => {
                tracing::warn!(mint = %mint.url(), error = %e, "cannot take the swap gate");
                return Err(AuthError::StoreUnavailable(e.to_string()));
            }
            Err(_) => {
                return Err(AuthError::Unfinished(
                    "the mint's earlier swaps did not finish in time".into(),
                ))
            }
        };
        // The time left once it is our turn: no swap that could not finish.
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_SWAP_WINDOW {
            self.metrics.mint_error(mint.url(), "deadline");
            return Err(AuthError::Unfinished(format!(
                "{} ms left of the request's deadline, too little to redeem",
                left.as_millis()
            )));
        }
        let budget = left.min(self.mint_timeout);
        self.ledger
            .begin(&key, mint.url())
            .await
            .map_err(store_error)?;
        let started = Instant::now();
        let encoded = canonical_token(raw);
        let outcome = tokio::time::timeout(budget, mint.receive(&encoded)).await;
        let took = started.elapsed();
        let received = match outcome {
            Err(_elapsed) => {
                self.metrics.mint_error(mint.url(), "timeout");
                self.forget_if_not_pending(mint, &key, &ys).await;
                return Err(AuthError::Unfinished(format!(
                    "no answer from the mint within {budget:?}"
                )));
            }
            Ok(Err(err)) => {
                let refusal = classify_receive_error(&err);
                match &refusal {
                    AuthError::AlreadySpent => {
                        self.metrics.mint_answered(mint.url());
                        self.spent.insert(token);
                        if let Err(e) = mint.discard_refused_receive(&ys).await {
                            tracing::warn!(mint = %mint.url(), error = %e, "cannot discard a refused redemption; settlement will");
                        }
                    }
                    AuthError::OutputsAlreadySigned => {
                        tracing::error!(
                            mint = %mint.url(),
                            "the mint has signed our outputs already: another verifier derives the \
                             same outputs (same mnemonic and replica id); give each replica its own \
                             PAYGRESS_REPLICA_ID. Skipping the counter ahead."
                        );
                        self.metrics.mint_error(mint.url(), "outputs_signed");
                        if let Err(e) = mint.discard_refused_receive(&ys).await {
                            tracing::warn!(mint = %mint.url(), error = %e, "cannot discard a refused redemption; settlement will");
                        }
                        if let Err(e) = mint.skip_counter(COUNTER_SKIP_ON_COLLISION).await {
                            tracing::warn!(mint = %mint.url(), error = %e, "cannot skip the counter");
                        }
                    }
                    AuthError::MintUnavailable(_) => {
                        self.metrics.mint_error(mint.url(), "unreachable")
                    }
                    AuthError::Internal(_) | AuthError::StoreUnavailable(_) => {
                        self.metrics.mint_error(mint.url(), "store")
                    }
                    _ => self.metrics.mint_error(mint.url(), "refused"),
                }
                self.forget_if_not_pending(mint, &key, &ys).await;
                tracing::info!(
                    mint = %mint.url(),
                    token = %ids::log_id(token),
                    error = %err,
                    code = %refusal.code(),
                    "redemption refused"
                );
                return Err(refusal);
            }
            Ok(Ok(amount)) => amount,
        };
        self.spent.insert(token);
        if let Err(e) = self.ledger.credit(&key, mint.url(), received).await {
            // The money is in the wallet; the row stays `swapping` and the
            // next presentation settles it from cdk's transaction record.
            tracing::error!(mint = %mint.url(), token = %ids::log_id(token), error = %e, "cannot record a redemption");
            return Err(store_error(e));
        }
        self.metrics.redemption(took);
        self.metrics.mint_answered(mint.url());
        tracing::info!(
            mint = %mint.url(),
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
    pub async fn claim(&self, token: &Token) -> Result<u64, AuthError> {
        match self
            .ledger
            .claim(&ids::token_key(token))
            .await
            .map_err(store_error)?
        {
            Some(received) => Ok(received),
            None => Err(AuthError::AlreadySpent),
        }
    }

    /// Claims the credit of a redeemed token for a lease, adding the time
    /// it bought in the same transaction: for exactly one caller.
    pub async fn claim_lease(
        &self,
        token: &Token,
        purchase: &LeasePurchase,
    ) -> Result<(u64, LeaseRecord), AuthError> {
        self.ledger
            .claim_lease(&ids::token_key(token), purchase)
            .await
            .map_err(store_error)?
            .ok_or(AuthError::AlreadySpent)
    }

    /// Gives a redeemed token's value back as a refund token: it was worth
    /// less than the price once swapped, or its lease's pod could not be
    /// provisioned. Until the refund is made the credit stays, so a failure
    /// here loses nothing: the next presentation of the token tries again;
    /// once made, the same token presented again gets the same refund.
    pub async fn refund<M: MintOps>(
        &self,
        mint: &M,
        token: &Token,
        received: u64,
        why: RefundWhy,
    ) -> AuthError {
        let key = ids::token_key(token);
        let Ok(_lock) = tokio::time::timeout(self.mint_timeout, self.locks.lock(key)).await else {
            return AuthError::Unfinished("another redemption of this token is in progress".into());
        };
        if !matches!(
            self.ledger.get(&key).await,
            Ok(Some(Entry::Credited { .. }))
        ) {
            return AuthError::AlreadySpent;
        }
        if matches!(why, RefundWhy::Short { .. }) {
            // The fee table was stale: reload it for the next token.
            if let Err(e) = mint.reload_fees().await {
                tracing::warn!(mint = %mint.url(), error = %e, "cannot reload the mint's keysets");
            }
        }
        // Making the refund is a swap too: one at a time per mint.
        let refund = async {
            let _gate = mint
                .swap_gate()
                .await
                .map_err(|e| cdk::Error::Custom(e.to_string()))?;
            mint.make_refund(received).await
        };
        match tokio::time::timeout(self.mint_timeout, refund).await {
            Ok(Ok(refund)) => {
                let answer = why.answer(received, refund);
                if let Some(refund) = answer.refund() {
                    if let Err(e) = self
                        .ledger
                        .refunded(&key, answer.code().as_str(), refund)
                        .await
                    {
                        tracing::error!(error = %e, "cannot record a refund");
                    }
                }
                self.metrics.refund();
                tracing::warn!(mint = %mint.url(), token = %ids::log_id(token), received, reason = %answer, "refunded");
                answer
            }
            Ok(Err(e)) => {
                tracing::warn!(mint = %mint.url(), error = %e, "cannot make a refund now");
                AuthError::Unfinished("the refund could not be made yet".into())
            }
            Err(_) => AuthError::Unfinished("the refund could not be made in time".into()),
        }
    }

    /// Settles a redemption that began and whose outcome was not recorded
    /// (the request gave up, or the verifier died): `Some(received)` when the
    /// mint swapped it into our wallet, `None` when it did not (the token is
    /// the client's; the caller may swap it now).
    async fn resolve_unfinished<M: MintOps>(
        &self,
        mint: &M,
        key: &[u8; 32],
        ys: &[PublicKey],
        deadline: Instant,
    ) -> Result<Option<u64>, AuthError> {
        self.settle_earlier_attempt(mint, ys, deadline).await?;
        let completed = mint
            .completed_receive(ys)
            .await
            .map_err(|e| AuthError::StoreUnavailable(format!("wallet store: {e}")))?;
        match completed {
            Some(received) => {
                self.ledger
                    .credit(key, mint.url(), received)
                    .await
                    .map_err(store_error)?;
                tracing::info!(mint = %mint.url(), received, "an unfinished redemption had completed: credited");
                Ok(Some(received))
            }
            None => {
                self.ledger.forget(key).await.map_err(store_error)?;
                Ok(None)
            }
        }
    }

    /// After a swap that failed or was stopped: when nothing of it is left
    /// pending in the wallet, either it completed before it was stopped
    /// (cdk recorded the receive: the row is credited, and the token's next
    /// presentation is granted) or it did not happen (the row is dropped:
    /// the token is still the client's). Forgetting a swap that completed
    /// would leave its value in the wallet and the client refused as spent.
    async fn forget_if_not_pending<M: MintOps>(&self, mint: &M, key: &[u8; 32], ys: &[PublicKey]) {
        match mint.has_pending(ys).await {
            Ok(false) => match mint.completed_receive(ys).await {
                Ok(Some(received)) => {
                    if let Err(e) = self.ledger.credit(key, mint.url(), received).await {
                        tracing::warn!(error = %e, "cannot update the ledger");
                    } else {
                        tracing::info!(mint = %mint.url(), received, "a stopped redemption had completed: credited");
                    }
                }
                Ok(None) => {
                    if let Err(e) = self.ledger.forget(key).await {
                        tracing::warn!(error = %e, "cannot update the ledger");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the wallet store"),
            },
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the wallet store"),
        }
    }

    /// If an earlier redemption of these proofs did not finish (the wallet
    /// holds them as pending), settle with the mint first: released proofs
    /// are redeemed afresh, swapped ones are found in cdk's records.
    async fn settle_earlier_attempt<M: MintOps>(
        &self,
        mint: &M,
        ys: &[PublicKey],
        deadline: Instant,
    ) -> Result<(), AuthError> {
        let pending = mint
            .has_pending(ys)
            .await
            .map_err(|e| AuthError::StoreUnavailable(format!("wallet store: {e}")))?;
        if !pending {
            return Ok(());
        }
        tracing::info!(mint = %mint.url(), "an earlier redemption of this token is unfinished: settling it first");
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(self.mint_timeout);
        match tokio::time::timeout(budget, mint.settle()).await {
            Ok(Ok(s)) => tracing::info!(mint = %mint.url(), ?s, "settled"),
            Ok(Err(e)) => tracing::warn!(mint = %mint.url(), error = %e, "settling failed"),
            Err(_) => tracing::warn!(mint = %mint.url(), "settling timed out"),
        }
        let still = mint
            .has_pending(ys)
            .await
            .map_err(|e| AuthError::StoreUnavailable(format!("wallet store: {e}")))?;
        if still {
            self.metrics.mint_error(mint.url(), "unreachable");
            return Err(AuthError::Unfinished(
                "an earlier redemption of this token is not settled yet".into(),
            ));
        }
        Ok(())
    }
}

fn store_error(e: crate::ledger::LedgerError) -> AuthError {
    AuthError::StoreUnavailable(e.to_string())
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

/// Why a redeemed token's value goes back to its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundWhy {
    /// Worth less than `price` once swapped (the mint's fee changed).
    Short { price: u64 },
    /// Its lease's pod could not be provisioned.
    Provisioning(String),
}

impl RefundWhy {
    /// The answer that carries the refund.
    fn answer(self, received: u64, refund: String) -> AuthError {
        match self {
            RefundWhy::Short { price } => AuthError::ReceivedLess {
                received,
                price,
                refund: Some(refund),
            },
            RefundWhy::Provisioning(message) => AuthError::ProvisioningFailed {
                message,
                refund: Some(refund),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::swap_gate::{GateError, SwapGate, SwapGuard};
    use crate::wallet::Settlement;
    use paygress_core::test_util::{cashu_a, KEYSET_ID, POINT};
    use paygress_core::TokenLimits;

    /// How the fake mint answers a swap.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        /// Swaps, taking this input fee.
        Swap { fee: u64 },
        /// Swaps after this long (a slow mint); a swap abandoned half-way
        /// is completed by the next settlement, as cdk's recovery does.
        Slow(Duration),
        /// Cannot be reached.
        Down,
    }

    /// A mint and its wallet, in memory: what a swap did, by the proofs'
    /// `Y`s. It stands in for cdk and cdk-mintd in these unit tests only.
    #[derive(Debug)]
    struct FakeMint {
        gate: SwapGate,
        mode: Mutex<Mode>,
        swapped: Mutex<HashMap<Vec<PublicKey>, u64>>,
        pending: Mutex<HashMap<Vec<PublicKey>, u64>>,
        swaps: AtomicUsize,
    }

    impl FakeMint {
        fn new(mode: Mode) -> Self {
            FakeMint {
                gate: SwapGate::local(),
                mode: Mutex::new(mode),
                swapped: Mutex::default(),
                pending: Mutex::default(),
                swaps: AtomicUsize::new(0),
            }
        }

        fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }

        fn key(ys: &[PublicKey]) -> Vec<PublicKey> {
            let mut ys = ys.to_vec();
            ys.sort();
            ys
        }
    }

    impl MintOps for FakeMint {
        fn url(&self) -> &str {
            "http://fake.mint"
        }

        async fn swap_gate(&self) -> Result<SwapGuard<'_>, GateError> {
            self.gate.lock().await
        }

        async fn receive(&self, raw: &str) -> Result<u64, cdk::Error> {
            let token = paygress_core::token::decode(raw, &TokenLimits::default())
                .map_err(|e| cdk::Error::Custom(e.to_string()))?;
            let ys =
                FakeMint::key(&proof_ys(&token).map_err(|e| cdk::Error::Custom(e.to_string()))?);
            if self.swapped.lock().unwrap().contains_key(&ys) {
                return Err(cdk::Error::TokenAlreadySpent);
            }
            let mode = *self.mode.lock().unwrap();
            self.swaps.fetch_add(1, Ordering::SeqCst);
            match mode {
                Mode::Down => Err(cdk::Error::HttpError(None, "connection refused".into())),
                Mode::Swap { fee } => {
                    let got = token.total - fee;
                    self.swapped.lock().unwrap().insert(ys, got);
                    Ok(got)
                }
                Mode::Slow(delay) => {
                    self.pending.lock().unwrap().insert(ys.clone(), token.total);
                    tokio::time::sleep(delay).await;
                    self.pending.lock().unwrap().remove(&ys);
                    self.swapped.lock().unwrap().insert(ys, token.total);
                    Ok(token.total)
                }
            }
        }

        async fn has_pending(&self, ys: &[PublicKey]) -> Result<bool, cdk::Error> {
            Ok(self
                .pending
                .lock()
                .unwrap()
                .contains_key(&FakeMint::key(ys)))
        }

        async fn settle(&self) -> Result<Settlement, cdk::Error> {
            // The mint did swap what was in flight: recovery completes it.
            let done: Vec<_> = self.pending.lock().unwrap().drain().collect();
            let recovered = done.len();
            self.swapped.lock().unwrap().extend(done);
            Ok(Settlement {
                recovered,
                ..Settlement::default()
            })
        }

        async fn discard_refused_receive(&self, _ys: &[PublicKey]) -> Result<usize, cdk::Error> {
            Ok(0)
        }

        async fn skip_counter(&self, _by: u32) -> Result<(), cdk::Error> {
            Ok(())
        }

        async fn completed_receive(&self, ys: &[PublicKey]) -> Result<Option<u64>, cdk::Error> {
            Ok(self
                .swapped
                .lock()
                .unwrap()
                .get(&FakeMint::key(ys))
                .copied())
        }

        async fn reload_fees(&self) -> Result<(), cdk::Error> {
            Ok(())
        }

        async fn make_refund(&self, amount: u64) -> Result<String, cdk::Error> {
            Ok(format!("cashuBrefund{amount}"))
        }
    }

    fn token(name: &str, amount: u64) -> (String, Token) {
        let raw = cashu_a(&serde_json::json!({
            "token": [{"mint": "http://fake.mint", "proofs": [
                {"amount": amount, "id": KEYSET_ID, "secret": name, "C": POINT}
            ]}],
            "unit": "sat"
        }));
        let decoded = paygress_core::token::decode(&raw, &TokenLimits::default()).unwrap();
        (raw, decoded)
    }

    fn redeemer(dir: &std::path::Path, max: usize) -> Redeemer {
        Redeemer::new(
            Arc::new(Metrics::new()),
            Duration::from_secs(5),
            Ledger::open(dir).unwrap(),
            max,
        )
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_token_is_granted_once_however_many_present_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = Arc::new(redeemer(dir.path(), 64));
        let mint = Arc::new(FakeMint::new(Mode::Swap { fee: 1 }));
        let (raw, t) = token("once", 64);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (r, mint, raw, t) = (r.clone(), mint.clone(), raw.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                let received = r.redeem(mint.as_ref(), &raw, &t, soon(2000)).await?;
                assert_eq!(received, 63, "net of the mint's fee");
                r.claim(&t).await
            }));
        }
        let mut granted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(63) => granted += 1,
                Err(AuthError::AlreadySpent) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(granted, 1);
        assert_eq!(mint.swaps.load(Ordering::SeqCst), 1, "one swap");
    }

    #[tokio::test]
    async fn a_swap_that_outlives_the_deadline_is_granted_on_the_next_presentation() {
        let dir = tempfile::tempdir().unwrap();
        let r = redeemer(dir.path(), 64);
        let mint = FakeMint::new(Mode::Slow(Duration::from_millis(400)));
        let (raw, t) = token("slow", 64);
        let first = r.redeem(&mint, &raw, &t, soon(250)).await;
        assert!(matches!(first, Err(AuthError::Unfinished(_))), "{first:?}");
        // The mint swapped it meanwhile (the fake's settlement completes it).
        mint.set(Mode::Swap { fee: 0 });
        assert_eq!(r.redeem(&mint, &raw, &t, soon(2000)).await, Ok(64));
        assert_eq!(r.claim(&t).await, Ok(64));
        assert_eq!(
            r.redeem(&mint, &raw, &t, soon(2000)).await,
            Err(AuthError::AlreadySpent)
        );
        assert_eq!(r.claim(&t).await, Err(AuthError::AlreadySpent));
        assert_eq!(mint.swaps.load(Ordering::SeqCst), 1, "never swapped twice");
    }

    #[tokio::test]
    async fn no_swap_begins_without_time_to_finish_it_and_the_token_stays_the_clients() {
        let dir = tempfile::tempdir().unwrap();
        let r = redeemer(dir.path(), 64);
        let mint = FakeMint::new(Mode::Swap { fee: 0 });
        let (raw, t) = token("late", 64);
        let late = r
            .redeem(
                &mint,
                &raw,
                &t,
                soon(MIN_SWAP_WINDOW.as_millis() as u64 / 2),
            )
            .await;
        assert!(matches!(late, Err(AuthError::Unfinished(_))), "{late:?}");
        assert_eq!(mint.swaps.load(Ordering::SeqCst), 0);
        assert_eq!(r.ledger().get(&ids::token_key(&t)).await.unwrap(), None);
        // Down: refused as unavailable, nothing kept; then it pays.
        mint.set(Mode::Down);
        let down = r.redeem(&mint, &raw, &t, soon(2000)).await;
        assert!(
            matches!(down, Err(AuthError::MintUnavailable(_))),
            "{down:?}"
        );
        assert_eq!(r.ledger().get(&ids::token_key(&t)).await.unwrap(), None);
        mint.set(Mode::Swap { fee: 0 });
        assert_eq!(r.redeem(&mint, &raw, &t, soon(2000)).await, Ok(64));
        assert_eq!(r.claim(&t).await, Ok(64));
    }

    #[tokio::test]
    async fn a_swap_worth_less_than_the_price_is_refunded_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = redeemer(dir.path(), 64);
        let mint = FakeMint::new(Mode::Swap { fee: 2 });
        let (raw, t) = token("short", 64);
        let received = r.redeem(&mint, &raw, &t, soon(2000)).await.unwrap();
        assert_eq!(received, 62);
        match r
            .refund(&mint, &t, received, RefundWhy::Short { price: 64 })
            .await
        {
            AuthError::ReceivedLess {
                received: 62,
                price: 64,
                refund: Some(refund),
            } => assert_eq!(refund, "cashuBrefund62"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.refund(&mint, &t, received, RefundWhy::Short { price: 64 })
                .await,
            AuthError::AlreadySpent
        );
        assert_eq!(
            r.claim(&t).await,
            Err(AuthError::AlreadySpent),
            "no grant either"
        );
        // The same token presented again: the same answer and refund, and
        // no second refund made.
        assert_eq!(
            r.redeem(&mint, &raw, &t, soon(2000)).await,
            Err(AuthError::Refunded {
                code: ErrorCode::InsufficientAmount,
                refund: "cashuBrefund62".into()
            })
        );
    }

    #[tokio::test]
    async fn a_token_whose_pod_failed_gets_one_refund_however_often_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let r = redeemer(dir.path(), 64);
        let mint = FakeMint::new(Mode::Swap { fee: 0 });
        let (raw, t) = token("podless", 64);
        let received = r.redeem(&mint, &raw, &t, soon(2000)).await.unwrap();
        let why = RefundWhy::Provisioning("403 exceeded quota".into());
        let first = r.refund(&mint, &t, received, why).await;
        assert_eq!(first.code(), ErrorCode::ProvisioningFailed);
        assert_eq!(first.refund(), Some("cashuBrefund64"));
        for _ in 0..3 {
            let again = r.redeem(&mint, &raw, &t, soon(2000)).await.unwrap_err();
            assert_eq!(again.code(), ErrorCode::ProvisioningFailed);
            assert_eq!(again.refund(), Some("cashuBrefund64"));
            assert_eq!(again.status(), 503);
        }
    }

    #[tokio::test]
    async fn beyond_the_limit_a_redemption_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let r = redeemer(dir.path(), 1);
        let slot = r.try_slot().unwrap();
        assert!(matches!(r.try_slot(), Err(AuthError::Busy)));
        drop(slot);
        assert!(r.try_slot().is_ok());
    }

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
