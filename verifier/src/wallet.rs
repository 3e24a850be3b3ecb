//! The verifier's wallets: one cdk wallet per accepted mint, all in one
//! store (SQLite under the data dir, or PostgreSQL shared by replicas: see
//! [`crate::store`]), built without client-side rate limiting.
//!
//! Each mint's keysets (with their `input_fee_ppk`) are loaded at start and
//! kept in a table, so that the input fee of a token is known before anything
//! is swapped. A swap holds its mint's gate, and so does settling unfinished
//! redemptions ([`MintWallet::settle`]): one at a time per mint, across
//! replicas too (see [`crate::swap_gate`]).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cdk::mint_url::MintUrl;
use cdk::nuts::{CheckStateRequest, CurrencyUnit, KeySetInfo, PublicKey, State};
use cdk::wallet::types::{
    TransactionDirection, TransactionId, TransactionStatus, WalletSaga, WalletSagaState,
};
use cdk::wallet::{SendOptions, Wallet, WalletBuilder};
use cdk::Amount;
use cdk_sqlite::WalletSqliteDatabase;
use paygress_core::precheck::FeeSumError;
use paygress_core::Token;
use thiserror::Error;
use tokio::sync::Mutex as AsyncMutex;

use crate::swap_gate::{GateError, SwapGate, SwapGuard};

/// The wallet store's file name in the data dir.
pub const STORE_FILE: &str = "wallet.sqlite";

/// How often an unknown keyset may trigger a refresh of a mint's keysets.
const KEYSET_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The wallet store shared by every mint's wallet.
pub type Store = crate::store::WalletStore;

/// Why the wallets could not be opened.
#[derive(Debug, Error)]
pub enum WalletError {
    #[error("cannot open the wallet store {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("mint URL {url:?}: {reason}")]
    MintUrl { url: String, reason: String },
    #[error("unit {0:?} is not a Cashu currency unit")]
    Unit(String),
    #[error("cannot build the wallet for {mint}: {reason}")]
    Build { mint: String, reason: String },
}

/// Why a token's DLEQ proofs were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DleqError {
    #[error("the token cannot be read: {0}")]
    Token(String),
    #[error("the mint's keys are not loaded: {0}")]
    Mint(String),
    #[error("a proof's DLEQ does not verify against the mint's key: the proof is forged")]
    Invalid,
}

/// Why the input fee of a token could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FeeError {
    #[error("the mint has not answered yet")]
    NotLoaded,
    #[error("unknown keyset {0}")]
    UnknownKeyset(String),
    #[error("keyset {keyset} is in {unit}, not {expected}")]
    WrongUnit {
        keyset: String,
        unit: String,
        expected: String,
    },
    #[error("keyset id {0} matches more than one of the mint's keysets")]
    Ambiguous(String),
    #[error("keyset {keyset} has no key for amount {amount}")]
    NoKeyForAmount { keyset: String, amount: u64 },
    #[error("the input fee overflows")]
    Overflow,
}

#[derive(Debug, Clone)]
struct KeysetFee {
    unit: String,
    input_fee_ppk: u64,
    /// The amounts the keyset has keys for: a proof of any other amount
    /// cannot be genuine (and a huge one would make the swap's outputs
    /// explode), so it is refused before any swap.
    amounts: BTreeSet<u64>,
}

/// One accepted mint and its wallet.
#[derive(Debug)]
pub struct MintWallet {
    /// The mint URL, normalised as paygress-core (and cdk) compare them.
    pub url: String,
    pub wallet: Wallet,
    unit: String,
    keysets: RwLock<Option<Arc<HashMap<String, KeysetFee>>>>,
    ready: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
    /// One keyset load at a time: concurrent callers wait for it and reuse
    /// its result instead of asking the mint again.
    refresh: AsyncMutex<()>,
    gate: SwapGate,
    /// This wallet, for the settlement task it spawns.
    me: std::sync::OnceLock<std::sync::Weak<MintWallet>>,
    /// The settlement under way, which every caller waits for.
    settling: Mutex<Option<SharedSettlement>>,
}

/// A settlement task's outcome, awaited by however many callers.
type SharedSettlement =
    futures::future::Shared<futures::future::BoxFuture<'static, Result<Settlement, String>>>;

/// What a settlement pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Unfinished redemptions whose proofs the mint says are unspent: given
    /// back (the client keeps its token).
    pub released: usize,
    /// Unfinished operations that cdk's saga recovery completed.
    pub recovered: usize,
    /// ... that cdk rolled back.
    pub compensated: usize,
    /// ... that could not be settled now (mint unreachable).
    pub skipped: usize,
}

impl MintWallet {
    /// Whether the mint has answered `/v1/info` and `/v1/keysets`.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Fetches the mint's info and keysets (with their fees).
    pub async fn load_metadata(&self) -> Result<(), cdk::Error> {
        self.wallet.fetch_mint_info().await?;
        let keysets = self
            .wallet
            .keysets(cdk::wallet::types::KeysetLoadPolicy::CacheOnly)
            .await?;
        let table: HashMap<String, KeysetFee> = keysets
            .into_iter()
            .map(|k| {
                (
                    k.id.to_string().to_ascii_lowercase(),
                    KeysetFee {
                        unit: k.unit.to_string().to_ascii_lowercase(),
                        input_fee_ppk: k.input_fee_ppk,
                        amounts: k
                            .keys
                            .iter()
                            .map(|(amount, _)| u64::from(*amount))
                            .collect(),
                    },
                )
            })
            .collect();
        tracing::debug!(mint = %self.url, keysets = table.len(), "mint keysets loaded");
        *self.keysets.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(table));
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(Instant::now());
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Loads the keysets unless loaded already, single-flight: of many
    /// concurrent callers one asks the mint and the others wait for it.
    pub async fn ensure_loaded(&self) -> Result<(), cdk::Error> {
        if self.keysets_loaded() {
            return Ok(());
        }
        let _one = self.refresh.lock().await;
        if self.keysets_loaded() {
            return Ok(());
        }
        self.load_metadata().await
    }

    fn keysets_loaded(&self) -> bool {
        self.keysets.read().map(|k| k.is_some()).unwrap_or(false)
    }

    /// Refreshes the keysets when a token names one we do not know, at most
    /// once per [`KEYSET_REFRESH_MIN_INTERVAL`] and single-flight (a flood of
    /// tokens naming unknown keysets costs the mint one request per
    /// interval). Returns whether it refreshed.
    pub async fn refresh_keysets_if_stale(&self) -> Result<bool, cdk::Error> {
        let due = || match self.last_refresh.lock() {
            Ok(last) => last.is_none_or(|t| t.elapsed() >= KEYSET_REFRESH_MIN_INTERVAL),
            Err(_) => true,
        };
        if !due() {
            return Ok(false);
        }
        let _one = self.refresh.lock().await;
        if !due() {
            return Ok(false);
        }
        // Counted as a refresh even when it fails: a failing mint is not
        // asked again before the interval is over.
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(Instant::now());
        }
        self.load_metadata().await?;
        Ok(true)
    }

    /// Checks the NUT-12 DLEQ proofs that a token carries against the mint's
    /// keys, without contacting the mint: a forged proof that carries a DLEQ
    /// is refused before any swap. Proofs without a DLEQ are left to the
    /// mint's swap.
    pub async fn check_dleq(&self, canonical: &str) -> Result<(), DleqError> {
        let token =
            cdk::nuts::Token::from_str(canonical).map_err(|e| DleqError::Token(e.to_string()))?;
        let keysets = self
            .wallet
            .keysets(cdk::wallet::types::KeysetLoadPolicy::CacheOnly)
            .await
            .map_err(|e| DleqError::Mint(e.to_string()))?;
        let infos: Vec<KeySetInfo> = keysets
            .iter()
            .map(|k| KeySetInfo {
                id: k.id,
                unit: k.unit.clone(),
                active: k.active.unwrap_or(false),
                input_fee_ppk: k.input_fee_ppk,
                final_expiry: k.final_expiry,
            })
            .collect();
        let proofs = token
            .proofs(&infos)
            .map_err(|e| DleqError::Token(e.to_string()))?;
        for proof in proofs.iter().filter(|p| p.dleq.is_some()) {
            let key = keysets
                .iter()
                .find(|k| k.id == proof.keyset_id)
                .and_then(|k| k.keys.amount_key(proof.amount))
                .ok_or_else(|| DleqError::Token("no key for a proof's amount".into()))?;
            proof.verify_dleq(key).map_err(|_| DleqError::Invalid)?;
        }
        Ok(())
    }

    /// What an earlier receive of exactly these proofs brought in, when cdk
    /// recorded it and it did not fail (after a timeout or a crash, settled
    /// by saga recovery, or stopped after its outputs were stored): the
    /// amount received, net of fees. Ask only when none of the proofs is
    /// pending in the wallet.
    pub async fn completed_receive(&self, ys: &[PublicKey]) -> Result<Option<u64>, cdk::Error> {
        let mut want = ys.to_vec();
        want.sort();
        let txs = self
            .wallet
            .localstore
            .list_transactions(
                Some(self.wallet.mint_url.clone()),
                Some(TransactionDirection::Incoming),
                Some(self.wallet.unit.clone()),
            )
            .await
            .map_err(cdk::Error::Database)?;
        // A receive stopped after its outputs were stored (a timeout, a
        // crash) leaves its record `Pending` with no pending proofs: the
        // callers ask only once no proof of the token is pending, so such a
        // record is a swap that happened. `Failed` ones did not.
        Ok(txs
            .into_iter()
            .filter(|t| t.status != TransactionStatus::Failed)
            .find(|t| {
                let mut have = t.ys.clone();
                have.sort();
                have == want
            })
            .map(|t| u64::from(t.amount)))
    }

    /// After the mint said our outputs were signed already (another wallet
    /// derives the same NUT-13 outputs: replicas sharing a mnemonic and a
    /// replica id), skips the active keyset's counter ahead so the next
    /// swap derives fresh outputs.
    pub async fn skip_counter(&self, by: u32) -> Result<(), cdk::Error> {
        let keyset = self.wallet.active_keyset().await?;
        self.wallet
            .localstore
            .increment_keyset_counter(&keyset.id, by)
            .await
            .map_err(cdk::Error::Database)?;
        Ok(())
    }

    /// A token worth `amount` less the mint's fee for making it, from this
    /// wallet, for a client whose payment cannot be kept.
    pub async fn make_refund(&self, amount: u64) -> Result<String, cdk::Error> {
        let prepared = self
            .wallet
            .prepare_send(Amount::from(amount), SendOptions::default())
            .await?;
        let swap_fee = u64::from(prepared.swap_fee());
        let prepared = if swap_fee > 0 {
            prepared.cancel().await?;
            let net = amount.saturating_sub(swap_fee);
            if net == 0 {
                return Err(cdk::Error::InsufficientFunds);
            }
            self.wallet
                .prepare_send(Amount::from(net), SendOptions::default())
                .await?
        } else {
            prepared
        };
        Ok(prepared.confirm(None).await?.to_string())
    }

    /// The input fee the mint charges to swap `token`'s proofs (NUT-02: the
    /// sum of the keysets' `input_fee_ppk`, rounded up to a whole unit).
    /// Every proof must name a keyset of the mint, in our unit, with a key
    /// for the proof's amount.
    pub fn input_fee(&self, token: &Token) -> Result<u64, FeeError> {
        let table = self
            .keysets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(FeeError::NotLoaded)?;
        for p in &token.proofs {
            let keyset = lookup(&table, &p.keyset_id, &self.unit)?;
            if !keyset.amounts.contains(&p.amount) {
                return Err(FeeError::NoKeyForAmount {
                    keyset: p.keyset_id.clone(),
                    amount: p.amount,
                });
            }
        }
        let mut problem: Option<FeeError> = None;
        let fee =
            paygress_core::precheck::input_fee(token, |id| match lookup(&table, id, &self.unit) {
                Ok(keyset) => Some(keyset.input_fee_ppk),
                Err(e) => {
                    problem = Some(e);
                    None
                }
            });
        match (fee, problem) {
            (_, Some(problem)) => Err(problem),
            (Ok(fee), None) => Ok(fee),
            (Err(FeeSumError::UnknownKeyset(id)), None) => Err(FeeError::UnknownKeyset(id)),
            (Err(FeeSumError::Overflow), None) => Err(FeeError::Overflow),
        }
    }

    /// Holds the mint's gate for one swap: swaps and settlement at one mint
    /// run one at a time, on every replica of a shared store (see
    /// [`crate::swap_gate`] for why).
    pub async fn swap_gate(&self) -> Result<SwapGuard<'_>, GateError> {
        self.gate.lock().await
    }

    /// The wallet's unspent balance at this mint, in its unit.
    pub async fn balance(&self) -> Result<u64, cdk::Error> {
        let proofs = self
            .wallet
            .localstore
            .get_proofs(
                Some(self.wallet.mint_url.clone()),
                Some(self.wallet.unit.clone()),
                Some(vec![State::Unspent]),
                None,
            )
            .await
            .map_err(cdk::Error::Database)?;
        Ok(proofs
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(u64::from(p.proof.amount))))
    }

    /// Whether any of these proofs sits in the wallet as pending: an earlier
    /// redemption of them did not finish (the mint was unreachable, say).
    pub async fn has_pending(&self, ys: &[PublicKey]) -> Result<bool, cdk::Error> {
        let found = self
            .wallet
            .localstore
            .get_proofs_by_ys(ys.to_vec())
            .await
            .map_err(cdk::Error::Database)?;
        Ok(found
            .iter()
            .any(|p| matches!(p.state, State::Pending | State::Reserved)))
    }

    /// Settles unfinished operations with the mint (see
    /// [`MintWallet::settle_now`]), in a task of its own that runs to its
    /// end whoever stops waiting for it: cdk's saga recovery stopped half-way
    /// (a request's deadline, a timeout) could leave a saga that no later
    /// pass recovers. One settlement at a time per mint: a caller that comes
    /// while one runs waits for that one.
    pub async fn settle(&self) -> Result<Settlement, cdk::Error> {
        use futures::FutureExt as _;
        let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) else {
            return self.settle_now().await;
        };
        let run = {
            let mut slot = self.settling.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(run) if run.peek().is_none() => run.clone(),
                _ => {
                    let task =
                        tokio::spawn(
                            async move { me.settle_now().await.map_err(|e| e.to_string()) },
                        );
                    let run = async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("the settlement task failed: {e}")))
                    }
                    .boxed()
                    .shared();
                    *slot = Some(run.clone());
                    run
                }
            }
        };
        run.await.map_err(cdk::Error::Custom)
    }

    /// Settles unfinished operations with the mint, exclusive of redemptions.
    ///
    /// First, every unfinished redemption whose proofs the mint says are all
    /// unspent is released: the swap never happened, so the token stays the
    /// client's (cdk's own recovery would replay the swap and take it). Then
    /// cdk's `recover_incomplete_sagas` settles the rest (a swap that did
    /// happen is completed, from the mint's NUT-19 cache or by restore).
    pub async fn settle_now(&self) -> Result<Settlement, cdk::Error> {
        let _exclusive = self
            .gate
            .lock()
            .await
            .map_err(|e| cdk::Error::Custom(e.to_string()))?;
        let released = self.release_unswapped_receives().await?;
        let report = self.wallet.recover_incomplete_sagas().await?;
        Ok(Settlement {
            released,
            recovered: report.recovered,
            compensated: report.compensated,
            skipped: report.skipped,
        })
    }

    /// Forgets the unfinished redemption of exactly these proofs after the
    /// mint refused it as spent (cdk keeps such a receive pending, since
    /// "spent" is not a definitive failure to it; settling it later would
    /// book a phantom incoming payment). The mint did not sign our outputs,
    /// so there is nothing to recover. Call with the token's lock held.
    pub async fn discard_refused_receive(&self, ys: &[PublicKey]) -> Result<usize, cdk::Error> {
        let store = &self.wallet.localstore;
        let sagas = store
            .get_incomplete_sagas()
            .await
            .map_err(cdk::Error::Database)?;
        let mut discarded = 0;
        for saga in sagas {
            if saga.mint_url != self.wallet.mint_url
                || !matches!(saga.state, WalletSagaState::Receive(_))
            {
                continue;
            }
            let reserved = store
                .get_reserved_proofs(&saga.id)
                .await
                .map_err(cdk::Error::Database)?;
            if reserved.is_empty() || !reserved.iter().all(|p| ys.contains(&p.y)) {
                continue;
            }
            self.forget_receive(&saga, reserved.iter().map(|p| p.y).collect())
                .await?;
            discarded += 1;
        }
        Ok(discarded)
    }

    /// Removes a receive saga and its pending input proofs, and marks its
    /// transaction failed.
    async fn forget_receive(
        &self,
        saga: &WalletSaga,
        ys: Vec<PublicKey>,
    ) -> Result<(), cdk::Error> {
        let store = &self.wallet.localstore;
        store
            .update_proofs(vec![], ys)
            .await
            .map_err(cdk::Error::Database)?;
        if let Some(mut tx) = store
            .get_transaction(TransactionId::from_saga_id(saga.id))
            .await
            .map_err(cdk::Error::Database)?
        {
            tx.status = TransactionStatus::Failed;
            store
                .add_transaction(tx)
                .await
                .map_err(cdk::Error::Database)?;
        }
        store
            .delete_saga(&saga.id)
            .await
            .map_err(cdk::Error::Database)
    }

    async fn release_unswapped_receives(&self) -> Result<usize, cdk::Error> {
        let store = &self.wallet.localstore;
        let sagas = store
            .get_incomplete_sagas()
            .await
            .map_err(cdk::Error::Database)?;
        let mut released = 0;
        for saga in sagas {
            if saga.mint_url != self.wallet.mint_url
                || saga.unit != self.wallet.unit
                || !matches!(saga.state, WalletSagaState::Receive(_))
            {
                continue;
            }
            let reserved = store
                .get_reserved_proofs(&saga.id)
                .await
                .map_err(cdk::Error::Database)?;
            if reserved.is_empty() {
                continue;
            }
            let ys: Vec<PublicKey> = reserved.iter().map(|p| p.y).collect();
            let states = self
                .wallet
                .mint_connector()
                .post_check_state(CheckStateRequest { ys: ys.clone() })
                .await?;
            let all_unspent = ys.iter().all(|y| {
                states
                    .states
                    .iter()
                    .any(|s| s.y == *y && s.state == State::Unspent)
            });
            if !all_unspent {
                continue;
            }
            self.forget_receive(&saga, ys).await?;
            tracing::info!(mint = %self.url, saga = %saga.id, "released an unfinished redemption: the mint never swapped it");
            released += 1;
        }
        Ok(released)
    }
}

/// How the verifier receives a token: its value (net of the fee) in the
/// fewest outputs, the plain power-of-two split.
///
/// cdk's default (`SplitTarget::None`) splits toward a target count of
/// proofs of each denomination, which it finds by loading and parsing every
/// unspent proof in the wallet, on every receive: a redemption then costs
/// more the more tokens the verifier holds (3x slower after 2,500
/// redemptions, nearly all of it in decoding the wallet's proofs). An empty
/// `Values` list leaves the whole amount to the plain split and never reads
/// the wallet's proofs; it also asks the mint for no more signatures than
/// the amount needs.
pub fn receive_options() -> cdk::wallet::ReceiveOptions {
    cdk::wallet::ReceiveOptions {
        amount_split_target: cdk::amount::SplitTarget::Values(Vec::new()),
        ..cdk::wallet::ReceiveOptions::default()
    }
}

impl crate::mint::MintOps for MintWallet {
    fn url(&self) -> &str {
        &self.url
    }

    async fn swap_gate(&self) -> Result<SwapGuard<'_>, GateError> {
        MintWallet::swap_gate(self).await
    }

    async fn receive(&self, token: &str) -> Result<u64, cdk::Error> {
        self.wallet
            .receive(token, receive_options())
            .await
            .map(u64::from)
    }

    async fn has_pending(&self, ys: &[PublicKey]) -> Result<bool, cdk::Error> {
        MintWallet::has_pending(self, ys).await
    }

    async fn settle(&self) -> Result<Settlement, cdk::Error> {
        MintWallet::settle(self).await
    }

    async fn discard_refused_receive(&self, ys: &[PublicKey]) -> Result<usize, cdk::Error> {
        MintWallet::discard_refused_receive(self, ys).await
    }

    async fn skip_counter(&self, by: u32) -> Result<(), cdk::Error> {
        MintWallet::skip_counter(self, by).await
    }

    async fn completed_receive(&self, ys: &[PublicKey]) -> Result<Option<u64>, cdk::Error> {
        MintWallet::completed_receive(self, ys).await
    }

    async fn reload_fees(&self) -> Result<(), cdk::Error> {
        self.load_metadata().await
    }

    async fn make_refund(&self, amount: u64) -> Result<String, cdk::Error> {
        MintWallet::make_refund(self, amount).await
    }
}

/// Finds a keyset's fee by its id: the full id, or (V4 tokens) a prefix of
/// at least 8 bytes that names exactly one keyset.
fn lookup<'t>(
    table: &'t HashMap<String, KeysetFee>,
    id: &str,
    expected_unit: &str,
) -> Result<&'t KeysetFee, FeeError> {
    let id = id.to_ascii_lowercase();
    let found = match table.get(&id) {
        Some(k) => k,
        None => {
            if id.len() < 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FeeError::UnknownKeyset(id));
            }
            let mut matches = table.iter().filter(|(full, _)| full.starts_with(&id));
            match (matches.next(), matches.next()) {
                (Some((_, k)), None) => k,
                (None, _) => return Err(FeeError::UnknownKeyset(id)),
                (Some(_), Some(_)) => return Err(FeeError::Ambiguous(id)),
            }
        }
    };
    if found.unit != expected_unit {
        return Err(FeeError::WrongUnit {
            keyset: id,
            unit: found.unit.clone(),
            expected: expected_unit.to_string(),
        });
    }
    Ok(found)
}

/// Every accepted mint's wallet, over one store.
#[derive(Debug)]
pub struct Wallets {
    store: Store,
    mints: Vec<Arc<MintWallet>>,
}

impl Wallets {
    /// Builds one wallet per mint over `store`. With `shared` (the pool of a
    /// database that replicas share), each mint's swap gate is shared by
    /// them too. No network.
    pub fn new(
        store: Store,
        shared: Option<&deadpool_postgres::Pool>,
        mints: &[String],
        unit: &str,
        seed: [u8; 64],
    ) -> Result<Wallets, WalletError> {
        let mut built = Vec::with_capacity(mints.len());
        for url in mints {
            built.push(with_self(build_mint_wallet(
                &store, shared, url, unit, seed,
            )?));
        }
        Ok(Wallets {
            store,
            mints: built,
        })
    }

    /// The wallet of an accepted mint (URL normalised as paygress-core does).
    pub fn get(&self, mint: &str) -> Option<&Arc<MintWallet>> {
        self.mints.iter().find(|m| m.url == mint)
    }

    /// Every mint's wallet, in the config's order.
    pub fn all(&self) -> &[Arc<MintWallet>] {
        &self.mints
    }

    /// Whether every mint has answered.
    pub fn all_ready(&self) -> bool {
        self.mints.iter().all(|m| m.is_ready())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// A wallet in an `Arc` that knows itself (for its settlement task).
fn with_self(wallet: MintWallet) -> Arc<MintWallet> {
    let wallet = Arc::new(wallet);
    let _ = wallet.me.set(Arc::downgrade(&wallet));
    wallet
}

/// Opens (or creates) the SQLite wallet store in `data_dir`.
pub async fn open_store(data_dir: &Path) -> Result<Arc<WalletSqliteDatabase>, WalletError> {
    let path = data_dir.join(STORE_FILE);
    let store = WalletSqliteDatabase::new(path.clone())
        .await
        .map_err(|e| WalletError::Store {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    // Bearer proofs: readable by this user only (SQLite gives the -wal and
    // -shm files the same mode).
    crate::files::restrict_file(&path).map_err(|e| WalletError::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(store))
}

/// Builds the wallet of one mint over the store; with `shared`, its swap
/// gate is shared by the replicas on that database.
pub fn build_mint_wallet(
    store: &Store,
    shared: Option<&deadpool_postgres::Pool>,
    url: &str,
    unit: &str,
    seed: [u8; 64],
) -> Result<MintWallet, WalletError> {
    let normalised = paygress_core::mint_url::normalize(url).map_err(|e| WalletError::MintUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let mint_url = MintUrl::from_str(&normalised).map_err(|e| WalletError::MintUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let currency = CurrencyUnit::from_str(unit).map_err(|_| WalletError::Unit(unit.into()))?;
    let localstore = store.clone();
    let gate = match shared {
        Some(pool) => SwapGate::shared(pool.clone(), &format!("{normalised}/{unit}")),
        None => SwapGate::local(),
    };
    let wallet = WalletBuilder::new()
        .mint_url(mint_url)
        .unit(currency)
        .localstore(localstore)
        .seed(seed)
        .without_rate_limiting()
        .build()
        .map_err(|e| WalletError::Build {
            mint: normalised.clone(),
            reason: e.to_string(),
        })?;
    Ok(MintWallet {
        url: normalised,
        wallet,
        unit: unit.to_ascii_lowercase(),
        keysets: RwLock::new(None),
        ready: AtomicBool::new(false),
        last_refresh: Mutex::new(None),
        refresh: AsyncMutex::new(()),
        gate,
        me: std::sync::OnceLock::new(),
        settling: Mutex::new(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HashMap<String, KeysetFee> {
        let mut t = HashMap::new();
        t.insert(
            "01aabbccddeeff00112233".to_string(),
            KeysetFee {
                unit: "sat".into(),
                input_fee_ppk: 100,
                amounts: [1, 2, 4].into_iter().collect(),
            },
        );
        t.insert(
            "00ffeeddccbbaa99".to_string(),
            KeysetFee {
                unit: "usd".into(),
                input_fee_ppk: 0,
                amounts: [1].into_iter().collect(),
            },
        );
        t
    }

    #[test]
    fn keysets_are_found_by_full_id_or_long_prefix() {
        let t = table();
        let fee = |id: &str| lookup(&t, id, "sat").map(|k| k.input_fee_ppk);
        assert_eq!(fee("01AABBCCDDEEFF00112233"), Ok(100));
        assert_eq!(fee("01aabbccddeeff00"), Ok(100));
        assert!(matches!(
            lookup(&t, "01aabb", "sat"),
            Err(FeeError::UnknownKeyset(_))
        ));
        assert!(matches!(
            lookup(&t, "00ffeeddccbbaa99", "sat"),
            Err(FeeError::WrongUnit { .. })
        ));
        assert!(matches!(
            lookup(&t, "0123456789abcdef", "sat"),
            Err(FeeError::UnknownKeyset(_))
        ));
    }
}
