//! The redemption ledger: what became of every token this verifier began to
//! redeem, kept on disk (`redemptions.sqlite` in the data dir) so that a
//! payment survives a timeout or a crash.
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
//! The same file keeps the leases (`leases`: id, tier, payer, expiry, pod).
//! A payment on a lease tier is claimed and adds its time to the lease in
//! one transaction ([`Ledger::claim_lease`]), so that a token buys time
//! exactly once and top-ups racing each other add up.

use std::path::Path;
use std::sync::{Arc, Mutex};

use paygress_core::lease;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use thiserror::Error;

/// The ledger's file name in the data dir.
pub const LEDGER_FILE: &str = "redemptions.sqlite";

/// Why the ledger could not be read or written.
#[derive(Debug, Error)]
#[error("redemption ledger: {0}")]
pub struct LedgerError(String);

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError(e.to_string())
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

/// The ledger (one SQLite connection; every call is short).
#[derive(Debug, Clone)]
pub struct Ledger {
    conn: Arc<Mutex<Connection>>,
}

impl Ledger {
    /// Opens (or creates) the ledger in `data_dir`, mode 0600.
    pub fn open(data_dir: &Path) -> Result<Ledger, LedgerError> {
        let path = data_dir.join(LEDGER_FILE);
        let conn = Connection::open(&path)?;
        crate::files::restrict_file(&path).map_err(|e| LedgerError(e.to_string()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS redemptions (
                 token_key  BLOB PRIMARY KEY,
                 state      TEXT NOT NULL,
                 received   INTEGER NOT NULL DEFAULT 0,
                 mint       TEXT NOT NULL,
                 updated_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS refunds (
                 token_key  BLOB PRIMARY KEY,
                 code       TEXT NOT NULL,
                 refund     TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS leases (
                 id         TEXT PRIMARY KEY,
                 tier       TEXT NOT NULL,
                 payer      TEXT NOT NULL,
                 expires_at INTEGER NOT NULL,
                 pod        TEXT,
                 created_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL
             );",
        )?;
        Ok(Ledger {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Where a token stands, if it has a row.
    pub fn get(&self, key: &[u8; 32]) -> Result<Option<Entry>, LedgerError> {
        let row: Option<(String, i64)> = self.with(|c| {
            c.query_row(
                "SELECT state, received FROM redemptions WHERE token_key = ?1",
                params![key.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        let Some((state, received)) = row else {
            return Ok(None);
        };
        let received = u64::try_from(received).unwrap_or(0);
        match state.as_str() {
            "swapping" => Ok(Some(Entry::Swapping)),
            "credited" => Ok(Some(Entry::Credited { received })),
            "granted" => Ok(Some(Entry::Granted { received })),
            "refunded" => {
                let refund: Option<(String, String)> = self.with(|c| {
                    c.query_row(
                        "SELECT code, refund FROM refunds WHERE token_key = ?1",
                        params![key.as_slice()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                })?;
                Ok(Some(Entry::Refunded { received, refund }))
            }
            other => Err(LedgerError(format!("unknown state {other:?}"))),
        }
    }

    /// Records that the swap of a token begins (durably, before the swap).
    pub fn begin(&self, key: &[u8; 32], mint: &str) -> Result<(), LedgerError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO redemptions (token_key, state, received, mint, updated_at)
                 VALUES (?1, 'swapping', 0, ?2, ?3)
                 ON CONFLICT(token_key) DO UPDATE SET state = 'swapping', updated_at = ?3
                 WHERE state = 'swapping'",
                params![key.as_slice(), mint, now()],
            )
        })?;
        Ok(())
    }

    /// Records that the mint swapped the token for `received`.
    pub fn credit(&self, key: &[u8; 32], mint: &str, received: u64) -> Result<(), LedgerError> {
        let received =
            i64::try_from(received).map_err(|_| LedgerError("amount too large".into()))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO redemptions (token_key, state, received, mint, updated_at)
                 VALUES (?1, 'credited', ?2, ?3, ?4)
                 ON CONFLICT(token_key) DO UPDATE SET state = 'credited', received = ?2,
                     updated_at = ?4
                 WHERE state = 'swapping'",
                params![key.as_slice(), received, mint, now()],
            )
        })?;
        Ok(())
    }

    /// Moves a credited token to `state` (`granted` or `refunded`); returns
    /// what was received when this call made the move, `None` when the token
    /// was not (or no longer) credited.
    fn settle_credit(&self, key: &[u8; 32], state: &str) -> Result<Option<u64>, LedgerError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let received = settle_in(&tx, key, state)?;
            tx.commit()?;
            Ok(received)
        })
    }

    /// Claims a credited token for a lease and adds the time it bought, in
    /// one transaction: `None` when the token was not (or no longer)
    /// credited (nothing changes), else what was received and the lease as
    /// it now stands. The new expiry is `max(now, the known expiry, the
    /// recorded expiry) + paid × seconds ÷ amount`.
    pub fn claim_lease(
        &self,
        key: &[u8; 32],
        purchase: &LeasePurchase,
    ) -> Result<Option<(u64, LeaseRecord)>, LedgerError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let Some(received) = settle_in(&tx, key, "granted")? else {
                return Ok(None);
            };
            let recorded = lease_in(&tx, &purchase.id)?;
            let known = purchase
                .known_expiry
                .max(recorded.as_ref().map_or(0, |r| r.expires_at));
            let bought = lease::bought_seconds(received, purchase.seconds, purchase.amount);
            let expires_at = lease::extended(purchase.now, Some(known), bought);
            let record = LeaseRecord {
                id: purchase.id.clone(),
                tier: recorded
                    .as_ref()
                    .map_or_else(|| purchase.tier.clone(), |r| r.tier.clone()),
                payer: recorded
                    .as_ref()
                    .map_or_else(|| purchase.payer.clone(), |r| r.payer.clone()),
                expires_at,
                pod: purchase.pod.clone().or(recorded.and_then(|r| r.pod)),
            };
            tx.execute(
                "INSERT INTO leases (id, tier, payer, expires_at, pod, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT(id) DO UPDATE SET expires_at = ?4, pod = ?5, updated_at = ?6",
                params![
                    record.id,
                    record.tier,
                    record.payer,
                    to_sql(expires_at),
                    record.pod,
                    now()
                ],
            )?;
            tx.commit()?;
            Ok(Some((received, record)))
        })
    }

    /// The expiry a purchase would give its lease if `received` were
    /// claimed now (what [`Ledger::claim_lease`] will compute, barring a
    /// top-up in between): for the pod's annotation, written first.
    pub fn expiry_after(
        &self,
        purchase: &LeasePurchase,
        received: u64,
    ) -> Result<u64, LedgerError> {
        let recorded = self.lease(&purchase.id)?.map_or(0, |r| r.expires_at);
        let bought = lease::bought_seconds(received, purchase.seconds, purchase.amount);
        Ok(lease::extended(
            purchase.now,
            Some(purchase.known_expiry.max(recorded)),
            bought,
        ))
    }

    /// A lease as recorded here, if it is.
    pub fn lease(&self, id: &str) -> Result<Option<LeaseRecord>, LedgerError> {
        self.with(|c| lease_in(c, id))
    }

    /// Forgets leases that ended more than `age_secs` ago; returns how many.
    pub fn prune_leases(&self, age_secs: u64) -> Result<usize, LedgerError> {
        let cutoff = now().saturating_sub(i64::try_from(age_secs).unwrap_or(i64::MAX));
        self.with(|c| c.execute("DELETE FROM leases WHERE expires_at < ?1", params![cutoff]))
    }

    /// How many leases have not ended at `now` (for metrics).
    pub fn live_leases(&self, now: u64) -> Result<u64, LedgerError> {
        let n: i64 = self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM leases WHERE expires_at > ?1",
                params![to_sql(now)],
                |r| r.get(0),
            )
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Claims a credited token for one request: exactly one claim succeeds.
    pub fn claim(&self, key: &[u8; 32]) -> Result<Option<u64>, LedgerError> {
        self.settle_credit(key, "granted")
    }

    /// Marks a credited token refunded, keeping the answer's code and the
    /// refund token so that the same request retried gets the same refund.
    pub fn refunded(
        &self,
        key: &[u8; 32],
        code: &str,
        refund: &str,
    ) -> Result<Option<u64>, LedgerError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let received = settle_in(&tx, key, "refunded")?;
            if received.is_some() {
                tx.execute(
                    "INSERT OR REPLACE INTO refunds (token_key, code, refund) VALUES (?1, ?2, ?3)",
                    params![key.as_slice(), code, refund],
                )?;
            }
            tx.commit()?;
            Ok(received)
        })
    }

    /// Forgets a token whose swap did not happen (it stays the client's).
    pub fn forget(&self, key: &[u8; 32]) -> Result<(), LedgerError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM redemptions WHERE token_key = ?1 AND state = 'swapping'",
                params![key.as_slice()],
            )
        })?;
        Ok(())
    }

    /// Forgets granted and refunded tokens last touched more than `age_secs`
    /// ago; returns how many. Safe: a forgotten token presented again is
    /// swapped, and the mint refuses it as spent. Credited and swapping rows
    /// are never forgotten (one is owed a grant, the other a settlement).
    pub fn prune(&self, age_secs: u64) -> Result<usize, LedgerError> {
        let cutoff = now().saturating_sub(i64::try_from(age_secs).unwrap_or(i64::MAX));
        self.with(|c| {
            c.execute(
                "DELETE FROM refunds WHERE token_key IN (SELECT token_key FROM redemptions
                 WHERE state = 'refunded' AND updated_at < ?1)",
                params![cutoff],
            )?;
            c.execute(
                "DELETE FROM redemptions
                 WHERE state IN ('granted', 'refunded') AND updated_at < ?1",
                params![cutoff],
            )
        })
    }

    /// How many tokens are swapped but not yet claimed (for metrics).
    pub fn unclaimed(&self) -> Result<u64, LedgerError> {
        let n: i64 = self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM redemptions WHERE state = 'credited'",
                [],
                |r| r.get(0),
            )
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
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

/// Moves a credited token to `state` within a transaction.
fn settle_in(tx: &Transaction<'_>, key: &[u8; 32], state: &str) -> rusqlite::Result<Option<u64>> {
    let received: Option<i64> = tx
        .query_row(
            "SELECT received FROM redemptions WHERE token_key = ?1 AND state = 'credited'",
            params![key.as_slice()],
            |r| r.get(0),
        )
        .optional()?;
    if received.is_some() {
        tx.execute(
            "UPDATE redemptions SET state = ?2, updated_at = ?3 WHERE token_key = ?1",
            params![key.as_slice(), state, now()],
        )?;
    }
    Ok(received.and_then(|r| u64::try_from(r).ok()))
}

fn lease_in(c: &Connection, id: &str) -> rusqlite::Result<Option<LeaseRecord>> {
    c.query_row(
        "SELECT id, tier, payer, expires_at, pod FROM leases WHERE id = ?1",
        params![id],
        |r| {
            Ok(LeaseRecord {
                id: r.get(0)?,
                tier: r.get(1)?,
                payer: r.get(2)?,
                expires_at: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                pod: r.get(4)?,
            })
        },
    )
    .optional()
}

/// A Unix time as SQLite's INTEGER (times past `i64::MAX` are clamped).
fn to_sql(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credited_token_is_claimed_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = [3u8; 32];
        {
            let l = Ledger::open(dir.path()).unwrap();
            assert_eq!(l.get(&key).unwrap(), None);
            l.begin(&key, "http://m").unwrap();
            assert_eq!(l.get(&key).unwrap(), Some(Entry::Swapping));
            l.credit(&key, "http://m", 64).unwrap();
        }
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.get(&key).unwrap(), Some(Entry::Credited { received: 64 }));
        assert_eq!(l.unclaimed().unwrap(), 1);
        assert_eq!(l.claim(&key).unwrap(), Some(64));
        assert_eq!(l.claim(&key).unwrap(), None);
        assert_eq!(l.get(&key).unwrap(), Some(Entry::Granted { received: 64 }));
        // A granted token cannot go back to swapping, nor be forgotten.
        l.begin(&key, "http://m").unwrap();
        l.forget(&key).unwrap();
        assert_eq!(l.get(&key).unwrap(), Some(Entry::Granted { received: 64 }));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(LEDGER_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn pruning_forgets_only_settled_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let (granted, credited, swapping) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        for key in [&granted, &credited, &swapping] {
            l.begin(key, "http://m").unwrap();
        }
        l.credit(&granted, "http://m", 1).unwrap();
        l.claim(&granted).unwrap();
        l.credit(&credited, "http://m", 2).unwrap();
        // Nothing is old enough yet.
        assert_eq!(l.prune(3600).unwrap(), 0);
        // Everything is older than "0 seconds ago" once a second passed;
        // backdate instead of sleeping.
        l.with(|c| c.execute("UPDATE redemptions SET updated_at = updated_at - 10", []))
            .unwrap();
        assert_eq!(l.prune(5).unwrap(), 1);
        assert_eq!(l.get(&granted).unwrap(), None);
        assert_eq!(
            l.get(&credited).unwrap(),
            Some(Entry::Credited { received: 2 })
        );
        assert_eq!(l.get(&swapping).unwrap(), Some(Entry::Swapping));
        assert_eq!(l.unclaimed().unwrap(), 1);
    }

    fn credited(l: &Ledger, byte: u8, received: u64) -> [u8; 32] {
        let key = [byte; 32];
        l.begin(&key, "http://m").unwrap();
        l.credit(&key, "http://m", received).unwrap();
        key
    }

    fn purchase(id: &str, known_expiry: u64, now: u64) -> LeasePurchase {
        LeasePurchase {
            id: id.into(),
            tier: "compute".into(),
            payer: "payer-of-this-token".into(),
            seconds: 3600,
            amount: 1000,
            known_expiry,
            now,
            pod: None,
        }
    }

    #[test]
    fn a_payment_buys_time_once_and_top_ups_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let now = 1_000_000;
        // A new lease: 1500 paid at 1000 per hour is 90 minutes.
        let first = credited(&l, 1, 1500);
        let (received, lease) = l
            .claim_lease(&first, &purchase("L", 0, now))
            .unwrap()
            .unwrap();
        assert_eq!(received, 1500);
        assert_eq!(lease.expires_at, now + 5400);
        assert_eq!(lease.payer, "payer-of-this-token");
        // The same token cannot buy time twice.
        assert_eq!(l.claim_lease(&first, &purchase("L", 0, now)).unwrap(), None);
        // Two top-ups from the same (now old) pass: both add their time.
        let (a, b) = (credited(&l, 2, 1000), credited(&l, 3, 1000));
        let shown = now + 5400;
        let after_a = l
            .claim_lease(&a, &purchase("L", shown, now + 10))
            .unwrap()
            .unwrap()
            .1;
        let after_b = l
            .claim_lease(&b, &purchase("L", shown, now + 20))
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(after_a.expires_at, now + 5400 + 3600);
        assert_eq!(after_b.expires_at, now + 5400 + 7200);
        // A top-up keeps the lease's payer, not the new token's.
        assert_eq!(after_b.payer, "payer-of-this-token");
        assert_eq!(l.lease("L").unwrap(), Some(after_b.clone()));
        // After the lease ended, time starts from now, not from the expiry.
        let late = credited(&l, 4, 1000);
        let later = now + 100_000;
        let renewed = l
            .claim_lease(&late, &purchase("L", 0, later))
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(renewed.expires_at, later + 3600);
        // A pass showing a later expiry than the record (another replica
        // sold it) is not cut short.
        let other = credited(&l, 5, 1000);
        let far = later + 50_000;
        let kept = l
            .claim_lease(&other, &purchase("M", far, later))
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(kept.expires_at, far + 3600);
        assert_eq!(l.live_leases(later).unwrap(), 2);
        assert_eq!(l.live_leases(far + 3600).unwrap(), 0);
        // A token that was never credited buys nothing.
        assert_eq!(
            l.claim_lease(&[9; 32], &purchase("N", 0, now)).unwrap(),
            None
        );
        assert_eq!(l.lease("N").unwrap(), None);
    }

    #[test]
    fn a_swap_that_did_not_happen_leaves_no_row() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let key = [9u8; 32];
        l.begin(&key, "http://m").unwrap();
        l.forget(&key).unwrap();
        assert_eq!(l.get(&key).unwrap(), None);
        l.begin(&key, "http://m").unwrap();
        l.credit(&key, "http://m", 5).unwrap();
        assert_eq!(
            l.refunded(&key, "provisioning_failed", "cashuBr").unwrap(),
            Some(5)
        );
        assert_eq!(l.claim(&key).unwrap(), None);
        assert_eq!(
            l.get(&key).unwrap(),
            Some(Entry::Refunded {
                received: 5,
                refund: Some(("provisioning_failed".into(), "cashuBr".into()))
            })
        );
        // Refunded once: a second refund of the same token is not recorded.
        assert_eq!(l.refunded(&key, "x", "cashuBother").unwrap(), None);
    }
}
