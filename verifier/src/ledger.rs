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

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The swap began and its outcome is not recorded.
    Swapping,
    /// Swapped for `received` (net of fees); nobody was let through yet.
    Credited { received: u64 },
    /// Paid for a request.
    Granted { received: u64 },
    /// Worth less than the price; refunded.
    Refunded { received: u64 },
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
            "refunded" => Ok(Some(Entry::Refunded { received })),
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
            tx.commit()?;
            Ok(received.and_then(|r| u64::try_from(r).ok()))
        })
    }

    /// Claims a credited token for one request: exactly one claim succeeds.
    pub fn claim(&self, key: &[u8; 32]) -> Result<Option<u64>, LedgerError> {
        self.settle_credit(key, "granted")
    }

    /// Marks a credited token refunded.
    pub fn refunded(&self, key: &[u8; 32]) -> Result<Option<u64>, LedgerError> {
        self.settle_credit(key, "refunded")
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
        assert_eq!(l.refunded(&key).unwrap(), Some(5));
        assert_eq!(l.claim(&key).unwrap(), None);
        assert_eq!(l.get(&key).unwrap(), Some(Entry::Refunded { received: 5 }));
    }
}
