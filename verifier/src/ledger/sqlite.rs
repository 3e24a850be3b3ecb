//! The ledger in SQLite: `redemptions.sqlite` in the data dir, one
//! connection (every call is short), for a single verifier.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{now, to_sql, Entry, LeasePurchase, LeaseRecord, LedgerError};

/// The ledger's file name in the data dir.
pub const LEDGER_FILE: &str = "redemptions.sqlite";

/// The ledger in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteLedger {
    /// Opens (or creates) the ledger in `data_dir`, mode 0600.
    pub fn open(data_dir: &Path) -> Result<SqliteLedger, LedgerError> {
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
        Ok(SqliteLedger {
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
        self.with(|c| {
            let row: Option<(String, i64)> = c
                .query_row(
                    "SELECT state, received FROM redemptions WHERE token_key = ?1",
                    params![key.as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((state, received)) = row else {
                return Ok(None);
            };
            let refund: Option<(String, String)> = if state == "refunded" {
                c.query_row(
                    "SELECT code, refund FROM refunds WHERE token_key = ?1",
                    params![key.as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
            } else {
                None
            };
            Ok(Some((state, received, refund)))
        })?
        .map(|(state, received, refund)| Entry::from_row(&state, received, refund))
        .transpose()
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
    /// one transaction.
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
            let record = purchase.applied(received, lease_in(&tx, &purchase.id)?);
            tx.execute(
                "INSERT INTO leases (id, tier, payer, expires_at, pod, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT(id) DO UPDATE SET expires_at = ?4, pod = ?5, updated_at = ?6",
                params![
                    record.id,
                    record.tier,
                    record.payer,
                    to_sql(record.expires_at),
                    record.pod,
                    now()
                ],
            )?;
            tx.commit()?;
            Ok(Some((received, record)))
        })
    }

    /// A lease as recorded here, if it is.
    pub fn lease(&self, id: &str) -> Result<Option<LeaseRecord>, LedgerError> {
        self.with(|c| lease_in(c, id))
    }

    /// Forgets leases that ended more than `age_secs` ago; returns how many.
    pub fn prune_leases(&self, age_secs: u64) -> Result<u64, LedgerError> {
        let cutoff = now().saturating_sub(to_sql(age_secs));
        let n =
            self.with(|c| c.execute("DELETE FROM leases WHERE expires_at < ?1", params![cutoff]))?;
        Ok(n as u64)
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
    pub fn prune(&self, age_secs: u64) -> Result<u64, LedgerError> {
        let cutoff = now().saturating_sub(to_sql(age_secs));
        let n = self.with(|c| {
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
        })?;
        Ok(n as u64)
    }

    /// Moves every row's last touch back by `secs` (tests of pruning).
    #[cfg(test)]
    pub(crate) fn backdate(&self, secs: i64) -> Result<(), LedgerError> {
        self.with(|c| {
            c.execute(
                "UPDATE redemptions SET updated_at = updated_at - ?1",
                params![secs],
            )
        })?;
        Ok(())
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
