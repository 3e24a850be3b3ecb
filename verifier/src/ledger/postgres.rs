//! The ledger in PostgreSQL, shared by every replica on the database.
//!
//! Each state change is one statement, or one transaction, whose `WHERE`
//! clause names the state it leaves: of two replicas that claim one token
//! at once, PostgreSQL's row lock lets the first move it and the second
//! find it moved. A lease's top-ups are serialised by a transaction-scoped
//! advisory lock on the lease, so that racing top-ups on different replicas
//! all add their time.

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::{now, to_sql, Entry, LeasePurchase, LeaseRecord, LedgerError};
use crate::postgres::{lock_key, with_migration_lock, PgError};

/// The tables, created when missing (under the migration lock).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS paygress_redemptions (
        token_key  BYTEA PRIMARY KEY,
        state      TEXT NOT NULL,
        received   BIGINT NOT NULL DEFAULT 0,
        mint       TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS paygress_redemptions_state
        ON paygress_redemptions (state, updated_at);
    CREATE TABLE IF NOT EXISTS paygress_refunds (
        token_key  BYTEA PRIMARY KEY,
        code       TEXT NOT NULL,
        refund     TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS paygress_leases (
        id         TEXT PRIMARY KEY,
        tier       TEXT NOT NULL,
        payer      TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        pod        TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS paygress_leases_expiry ON paygress_leases (expires_at);
";

/// The ledger in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: Pool,
}

impl PgLedger {
    /// Opens the ledger, creating its tables if needed.
    pub async fn open(pool: Pool) -> Result<PgLedger, LedgerError> {
        with_migration_lock(&pool, async {
            pool.get().await?.batch_execute(SCHEMA).await?;
            Ok::<_, PgError>(())
        })
        .await?;
        Ok(PgLedger { pool })
    }

    pub async fn get(&self, key: &[u8; 32]) -> Result<Option<Entry>, LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        let row = conn
            .query_opt(
                "SELECT r.state, r.received, f.code, f.refund
                 FROM paygress_redemptions r
                 LEFT JOIN paygress_refunds f ON f.token_key = r.token_key
                 WHERE r.token_key = $1",
                &[&key.as_slice()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get(0)?;
        let received: i64 = row.try_get(1)?;
        let code: Option<String> = row.try_get(2)?;
        let refund: Option<String> = row.try_get(3)?;
        Entry::from_row(&state, received, code.zip(refund)).map(Some)
    }

    pub async fn begin(&self, key: &[u8; 32], mint: &str) -> Result<(), LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        conn.execute(
            "INSERT INTO paygress_redemptions (token_key, state, received, mint, updated_at)
             VALUES ($1, 'swapping', 0, $2, $3)
             ON CONFLICT (token_key) DO UPDATE SET updated_at = $3
             WHERE paygress_redemptions.state = 'swapping'",
            &[&key.as_slice(), &mint, &now()],
        )
        .await?;
        Ok(())
    }

    pub async fn credit(
        &self,
        key: &[u8; 32],
        mint: &str,
        received: u64,
    ) -> Result<(), LedgerError> {
        let received =
            i64::try_from(received).map_err(|_| LedgerError("amount too large".into()))?;
        let conn = self.pool.get().await.map_err(PgError::from)?;
        conn.execute(
            "INSERT INTO paygress_redemptions (token_key, state, received, mint, updated_at)
             VALUES ($1, 'credited', $2, $3, $4)
             ON CONFLICT (token_key) DO UPDATE SET state = 'credited', received = $2,
                 updated_at = $4
             WHERE paygress_redemptions.state = 'swapping'",
            &[&key.as_slice(), &received, &mint, &now()],
        )
        .await?;
        Ok(())
    }

    pub async fn claim(&self, key: &[u8; 32]) -> Result<Option<u64>, LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        let row = conn
            .query_opt(SETTLE, &[&key.as_slice(), &"granted", &now()])
            .await?;
        received_of(row)
    }

    pub async fn claim_lease(
        &self,
        key: &[u8; 32],
        purchase: &LeasePurchase,
    ) -> Result<Option<(u64, LeaseRecord)>, LedgerError> {
        let mut conn = self.pool.get().await.map_err(PgError::from)?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(SETTLE, &[&key.as_slice(), &"granted", &now()])
            .await?;
        let Some(received) = received_of(row)? else {
            tx.rollback().await?;
            return Ok(None);
        };
        // One top-up of a lease at a time, on every replica: the lock is
        // held until the transaction ends.
        let lock = lock_key(&format!("paygress/lease/{}", purchase.id));
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
            .await?;
        let recorded = tx
            .query_opt(
                "SELECT id, tier, payer, expires_at, pod FROM paygress_leases WHERE id = $1",
                &[&purchase.id],
            )
            .await?
            .map(|r| lease_of(&r))
            .transpose()?;
        let record = purchase.applied(received, recorded);
        tx.execute(
            "INSERT INTO paygress_leases (id, tier, payer, expires_at, pod, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (id) DO UPDATE SET expires_at = $4, pod = $5, updated_at = $6",
            &[
                &record.id,
                &record.tier,
                &record.payer,
                &to_sql(record.expires_at),
                &record.pod,
                &now(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((received, record)))
    }

    pub async fn lease(&self, id: &str) -> Result<Option<LeaseRecord>, LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        conn.query_opt(
            "SELECT id, tier, payer, expires_at, pod FROM paygress_leases WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| lease_of(&r))
        .transpose()
    }

    pub async fn prune_leases(&self, age_secs: u64) -> Result<u64, LedgerError> {
        let cutoff = now().saturating_sub(to_sql(age_secs));
        let conn = self.pool.get().await.map_err(PgError::from)?;
        Ok(conn
            .execute(
                "DELETE FROM paygress_leases WHERE expires_at < $1",
                &[&cutoff],
            )
            .await?)
    }

    pub async fn live_leases(&self, now: u64) -> Result<u64, LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        let row = conn
            .query_one(
                "SELECT COUNT(*) FROM paygress_leases WHERE expires_at > $1",
                &[&to_sql(now)],
            )
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn refunded(
        &self,
        key: &[u8; 32],
        code: &str,
        refund: &str,
    ) -> Result<Option<u64>, LedgerError> {
        let mut conn = self.pool.get().await.map_err(PgError::from)?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(SETTLE, &[&key.as_slice(), &"refunded", &now()])
            .await?;
        let received = received_of(row)?;
        if received.is_some() {
            tx.execute(
                "INSERT INTO paygress_refunds (token_key, code, refund) VALUES ($1, $2, $3)
                 ON CONFLICT (token_key) DO UPDATE SET code = $2, refund = $3",
                &[&key.as_slice(), &code, &refund],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(received)
    }

    pub async fn forget(&self, key: &[u8; 32]) -> Result<(), LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        conn.execute(
            "DELETE FROM paygress_redemptions WHERE token_key = $1 AND state = 'swapping'",
            &[&key.as_slice()],
        )
        .await?;
        Ok(())
    }

    pub async fn prune(&self, age_secs: u64) -> Result<u64, LedgerError> {
        let cutoff = now().saturating_sub(to_sql(age_secs));
        let mut conn = self.pool.get().await.map_err(PgError::from)?;
        let tx = conn.transaction().await?;
        tx.execute(
            "DELETE FROM paygress_refunds WHERE token_key IN (
                 SELECT token_key FROM paygress_redemptions
                 WHERE state = 'refunded' AND updated_at < $1)",
            &[&cutoff],
        )
        .await?;
        let n = tx
            .execute(
                "DELETE FROM paygress_redemptions
                 WHERE state IN ('granted', 'refunded') AND updated_at < $1",
                &[&cutoff],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn unclaimed(&self) -> Result<u64, LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        let row = conn
            .query_one(
                "SELECT COUNT(*) FROM paygress_redemptions WHERE state = 'credited'",
                &[],
            )
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    #[cfg(test)]
    pub(crate) async fn backdate(&self, secs: i64) -> Result<(), LedgerError> {
        let conn = self.pool.get().await.map_err(PgError::from)?;
        conn.execute(
            "UPDATE paygress_redemptions SET updated_at = updated_at - $1",
            &[&secs],
        )
        .await?;
        Ok(())
    }
}

/// Moves a credited token to the state `$2` (one statement: the row lock
/// makes it one winner), returning what was received.
const SETTLE: &str = "UPDATE paygress_redemptions SET state = $2, updated_at = $3
                      WHERE token_key = $1 AND state = 'credited'
                      RETURNING received";

fn received_of(row: Option<Row>) -> Result<Option<u64>, LedgerError> {
    match row {
        None => Ok(None),
        Some(row) => {
            let received: i64 = row.try_get(0)?;
            Ok(Some(u64::try_from(received).unwrap_or(0)))
        }
    }
}

fn lease_of(row: &Row) -> Result<LeaseRecord, LedgerError> {
    let expires_at: i64 = row.try_get(3)?;
    Ok(LeaseRecord {
        id: row.try_get(0)?,
        tier: row.try_get(1)?,
        payer: row.try_get(2)?,
        expires_at: u64::try_from(expires_at).unwrap_or(0),
        pod: row.try_get(4)?,
    })
}
