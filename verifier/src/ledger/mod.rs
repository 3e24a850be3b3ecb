//! The redemption ledger: what became of every token the verifier began to
//! redeem, kept durably so that a payment survives a timeout or a crash.
//!
//! A row is written *before* the swap (`swapping`) and moved on when its
//! outcome is known:
//!
//! * `credited` — the mint swapped the token into our wallet, and no client
//!   has been let through for it yet (the client gave up waiting, or the
//!   verifier died before answering). The next presentation of the same token
//!   claims it;
//! * `granted` — a request was let through for it: the token has paid;
//! * `refunded` — it was worth less than the price once swapped, and its
//!   value went back to the client as a refund token.
//!
//! A token whose swap did not happen has no row (it stays the client's). A
//! `swapping` row found later is settled with the mint before anything else
//! (see `crate::redeem`). Exactly one claim moves a row from `credited` to
//! `granted`: one grant per token.
//!
//! The ledger keeps the leases too (id, tier, payer, expiry, pod). A payment
//! on a lease tier is claimed and adds its time to the lease in one
//! transaction ([`Ledger::claim_lease`]), so that a token buys time exactly
//! once and top-ups racing each other add up.
//!
//! Two stores hold it: SQLite in the data dir (`redemptions.sqlite`, one
//! verifier), or PostgreSQL shared by every replica (tables
//! `paygress_redemptions`, `paygress_refunds`, `paygress_leases`), where
//! the same guarantees hold across replicas.

mod postgres;
mod sqlite;

use paygress_core::lease;
use thiserror::Error;

pub use postgres::PgLedger;
pub use sqlite::{SqliteLedger, LEDGER_FILE};

/// Why the ledger could not be read or written.
#[derive(Debug, Error)]
#[error("redemption ledger: {0}")]
pub struct LedgerError(pub(crate) String);

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError(e.to_string())
    }
}

impl From<crate::postgres::PgError> for LedgerError {
    fn from(e: crate::postgres::PgError) -> Self {
        LedgerError(e.to_string())
    }
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(e: tokio_postgres::Error) -> Self {
        crate::postgres::PgError::from(e).into()
    }
}

/// Where a token's redemption stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The swap began and its outcome is not recorded.
    Swapping,
    /// Swapped for `received` (net of fees); nobody was let through yet.
    Credited { received: u64 },
    /// Paid for a request.
    Granted { received: u64 },
    /// Worth less than the price, or its pod could not be provisioned:
    /// refunded (with the answer's code and the refund token, when kept).
    Refunded {
        received: u64,
        refund: Option<(String, String)>,
    },
}

impl Entry {
    /// An entry from its stored state.
    fn from_row(
        state: &str,
        received: i64,
        refund: Option<(String, String)>,
    ) -> Result<Entry, LedgerError> {
        let received = u64::try_from(received).unwrap_or(0);
        match state {
            "swapping" => Ok(Entry::Swapping),
            "credited" => Ok(Entry::Credited { received }),
            "granted" => Ok(Entry::Granted { received }),
            "refunded" => Ok(Entry::Refunded { received, refund }),
            other => Err(LedgerError(format!("unknown state {other:?}"))),
        }
    }
}

/// A payment on a lease tier, about to be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasePurchase {
    /// The lease: a new one (named after the token) or the one a pass names.
    pub id: String,
    pub tier: String,
    /// The payer of a new lease (a top-up keeps the lease's).
    pub payer: String,
    /// The tier's terms: `amount` buys `seconds`.
    pub seconds: u64,
    pub amount: u64,
    /// The expiry the client's pass shows (0 for a new lease).
    pub known_expiry: u64,
    /// Now, in Unix seconds.
    pub now: u64,
    /// The lease's pod, when one was provisioned for it.
    pub pod: Option<String>,
}

impl LeasePurchase {
    /// The lease once `received` is claimed for it, given what is recorded:
    /// its expiry is `max(now, the known expiry, the recorded expiry) +
    /// paid × seconds ÷ amount`; a top-up keeps the lease's tier and payer.
    pub fn applied(&self, received: u64, recorded: Option<LeaseRecord>) -> LeaseRecord {
        let known = self
            .known_expiry
            .max(recorded.as_ref().map_or(0, |r| r.expires_at));
        let bought = lease::bought_seconds(received, self.seconds, self.amount);
        let expires_at = lease::extended(self.now, Some(known), bought);
        match recorded {
            Some(r) => LeaseRecord {
                expires_at,
                pod: self.pod.clone().or(r.pod),
                ..r
            },
            None => LeaseRecord {
                id: self.id.clone(),
                tier: self.tier.clone(),
                payer: self.payer.clone(),
                expires_at,
                pod: self.pod.clone(),
            },
        }
    }
}

/// A lease as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: String,
    pub tier: String,
    pub payer: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub pod: Option<String>,
}

/// The ledger, in whichever store holds it.
#[derive(Debug, Clone)]
pub enum Ledger {
    Sqlite(SqliteLedger),
    Postgres(PgLedger),
}

/// Calls the same method on whichever store holds the ledger.
macro_rules! on_store {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Ledger::Sqlite(l) => l.$method($($arg),*),
            Ledger::Postgres(l) => l.$method($($arg),*).await,
        }
    };
}

impl Ledger {
    /// Opens (or creates) the SQLite ledger in `data_dir`, mode 0600.
    pub fn open(data_dir: &std::path::Path) -> Result<Ledger, LedgerError> {
        Ok(Ledger::Sqlite(SqliteLedger::open(data_dir)?))
    }

    /// Where a token stands, if it has a row.
    pub async fn get(&self, key: &[u8; 32]) -> Result<Option<Entry>, LedgerError> {
        on_store!(self.get(key))
    }

    /// Records that the swap of a token begins (durably, before the swap).
    pub async fn begin(&self, key: &[u8; 32], mint: &str) -> Result<(), LedgerError> {
        on_store!(self.begin(key, mint))
    }

    /// Records that the mint swapped the token for `received`.
    pub async fn credit(
        &self,
        key: &[u8; 32],
        mint: &str,
        received: u64,
    ) -> Result<(), LedgerError> {
        on_store!(self.credit(key, mint, received))
    }

    /// Claims a credited token for one request: exactly one claim succeeds.
    pub async fn claim(&self, key: &[u8; 32]) -> Result<Option<u64>, LedgerError> {
        on_store!(self.claim(key))
    }

    /// Claims a credited token for a lease and adds the time it bought, in
    /// one transaction: `None` when the token was not (or no longer)
    /// credited (nothing changes), else what was received and the lease as
    /// it now stands (see [`LeasePurchase::applied`]).
    pub async fn claim_lease(
        &self,
        key: &[u8; 32],
        purchase: &LeasePurchase,
    ) -> Result<Option<(u64, LeaseRecord)>, LedgerError> {
        on_store!(self.claim_lease(key, purchase))
    }

    /// The expiry a purchase would give its lease if `received` were
    /// claimed now (what [`Ledger::claim_lease`] will compute, barring a
    /// top-up in between): for the pod's annotation, written first.
    pub async fn expiry_after(
        &self,
        purchase: &LeasePurchase,
        received: u64,
    ) -> Result<u64, LedgerError> {
        let recorded = self.lease(&purchase.id).await?;
        Ok(purchase.applied(received, recorded).expires_at)
    }

    /// A lease as recorded, if it is.
    pub async fn lease(&self, id: &str) -> Result<Option<LeaseRecord>, LedgerError> {
        on_store!(self.lease(id))
    }

    /// Forgets leases that ended more than `age_secs` ago; returns how many.
    pub async fn prune_leases(&self, age_secs: u64) -> Result<u64, LedgerError> {
        on_store!(self.prune_leases(age_secs))
    }

    /// How many leases have not ended at `now` (for metrics).
    pub async fn live_leases(&self, now: u64) -> Result<u64, LedgerError> {
        on_store!(self.live_leases(now))
    }

    /// Marks a credited token refunded, keeping the answer's code and the
    /// refund token so that the same request retried gets the same refund.
    pub async fn refunded(
        &self,
        key: &[u8; 32],
        code: &str,
        refund: &str,
    ) -> Result<Option<u64>, LedgerError> {
        on_store!(self.refunded(key, code, refund))
    }

    /// Forgets a token whose swap did not happen (it stays the client's).
    pub async fn forget(&self, key: &[u8; 32]) -> Result<(), LedgerError> {
        on_store!(self.forget(key))
    }

    /// Forgets granted and refunded tokens last touched more than `age_secs`
    /// ago; returns how many. Safe: a forgotten token presented again is
    /// swapped, and the mint refuses it as spent. Credited and swapping rows
    /// are never forgotten (one is owed a grant, the other a settlement).
    pub async fn prune(&self, age_secs: u64) -> Result<u64, LedgerError> {
        on_store!(self.prune(age_secs))
    }

    /// How many tokens are swapped but not yet claimed (for metrics).
    pub async fn unclaimed(&self) -> Result<u64, LedgerError> {
        on_store!(self.unclaimed())
    }

    /// Moves every row last touched at or after `age_secs` ago back by
    /// `age_secs` (tests of pruning, instead of sleeping).
    #[cfg(test)]
    pub(crate) async fn backdate(&self, secs: i64) -> Result<(), LedgerError> {
        on_store!(self.backdate(secs))
    }
}

/// A Unix time as a signed 64-bit column (times past `i64::MAX` are clamped).
pub(crate) fn to_sql(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Now, in Unix seconds, as stored.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
