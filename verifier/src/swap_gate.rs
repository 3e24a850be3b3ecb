//! The gate that lets one swap at a time happen at a mint: a mutex in this
//! process and, when the wallet store is shared by replicas, a PostgreSQL
//! session advisory lock per mint that every replica takes too.
//!
//! Why one at a time: cdk 0.18's receive records the NUT-13 counter range
//! of its outputs by reading the keyset counter after deriving them, so two
//! swaps in flight over one store record each other's ranges, and
//! recovering either (after a timeout or a crash) would restore the wrong
//! outputs. Settlement takes the gate too, so what it finds unfinished is
//! never a swap that another replica is still making.
//!
//! The advisory lock lives on a connection of its own, taken from the pool
//! for as long as the gate is held. A wait that is given up (the request's
//! deadline) or a connection that fails closes that connection instead of
//! returning it to the pool, and PostgreSQL drops the session's locks with
//! it: a lock is never left held by a connection nobody uses.

use deadpool_postgres::{Object, Pool};
use thiserror::Error;
use tokio::sync::{Mutex, MutexGuard};

use crate::postgres::{lock_key, PgError};

/// Why the gate could not be taken.
#[derive(Debug, Error)]
#[error("the swap gate shared by the replicas: {0}")]
pub struct GateError(#[from] PgError);

/// A mint's gate.
#[derive(Debug)]
pub struct SwapGate {
    local: Mutex<()>,
    shared: Option<(Pool, i64)>,
}

/// A held gate: released when dropped.
#[derive(Debug)]
pub struct SwapGuard<'a> {
    _local: MutexGuard<'a, ()>,
    shared: Option<SharedLock>,
}

impl SwapGate {
    /// A gate for this process only (the store is not shared).
    pub fn local() -> SwapGate {
        SwapGate {
            local: Mutex::new(()),
            shared: None,
        }
    }

    /// A gate shared by every replica on the database of `pool`, for the
    /// mint (and unit) `name`.
    pub fn shared(pool: Pool, name: &str) -> SwapGate {
        SwapGate {
            local: Mutex::new(()),
            shared: Some((pool, lock_key(&format!("paygress/swap-gate/{name}")))),
        }
    }

    /// Waits for the gate. Cancelling the wait leaves nothing held.
    pub async fn lock(&self) -> Result<SwapGuard<'_>, GateError> {
        let local = self.local.lock().await;
        let shared = match &self.shared {
            None => None,
            Some((pool, key)) => Some(SharedLock::acquire(pool, *key).await?),
        };
        Ok(SwapGuard {
            _local: local,
            shared,
        })
    }
}

/// An advisory lock held (or being waited for) by a pooled connection.
#[derive(Debug)]
struct SharedLock {
    conn: Option<Object>,
    key: i64,
    held: bool,
}

impl SharedLock {
    async fn acquire(pool: &Pool, key: i64) -> Result<SharedLock, GateError> {
        let conn = pool.get().await.map_err(PgError::from)?;
        // Until the lock is ours, dropping `lock` (a cancelled wait, an
        // error) closes the connection rather than pooling it.
        let mut lock = SharedLock {
            conn: Some(conn),
            key,
            held: false,
        };
        let result = match lock.conn.as_ref() {
            Some(conn) => conn.execute("SELECT pg_advisory_lock($1)", &[&key]).await,
            None => return Err(GateError(PgError::Query("no connection".into()))),
        };
        match result {
            Ok(_) => {
                lock.held = true;
                Ok(lock)
            }
            Err(e) => Err(GateError(PgError::from(e))),
        }
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let handle = tokio::runtime::Handle::try_current();
        match (self.held, handle) {
            // Unlocked before the connection goes back to the pool; closed
            // if that fails (which releases the lock as well).
            (true, Ok(handle)) => {
                let key = self.key;
                handle.spawn(async move {
                    if conn
                        .execute("SELECT pg_advisory_unlock($1)", &[&key])
                        .await
                        .is_err()
                    {
                        drop(Object::take(conn));
                    }
                });
            }
            _ => drop(Object::take(conn)),
        }
    }
}

impl SwapGuard<'_> {
    /// Whether this guard holds the lock shared by the replicas too.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}
