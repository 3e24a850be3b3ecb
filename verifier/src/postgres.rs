//! PostgreSQL, the store that many replicas share: the connection pool of
//! the redemption ledger, the cross-replica swap gate, and the checks a
//! replica makes before it joins the others.
//!
//! cdk's own Postgres wallet store (`cdk-postgres`) keeps the wallet in the
//! same database, over its own connections; this module's pool uses the same
//! driver (`tokio-postgres`) and the same TLS library.
//!
//! `sslmode` follows libpq: `disable`; `prefer` and `require` encrypt without
//! checking the server's certificate; `verify-ca` checks it against the
//! system's roots, `verify-full` the host name too.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// How many connections a replica's ledger pool opens at most (cdk's wallet
/// store keeps a pool of its own, 20 by default).
pub const POOL_SIZE: usize = 16;
/// How long a request waits for a pooled connection, or for a new one.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Why PostgreSQL could not be used.
#[derive(Debug, Error)]
pub enum PgError {
    #[error("database URL: {0}")]
    Url(String),
    #[error("database TLS: {0}")]
    Tls(String),
    #[error("database {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("database: {0}")]
    Query(String),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Query(describe(&e))
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::Query(describe(&e)),
            other => PgError::Query(format!("no connection: {other}")),
        }
    }
}

/// A driver error with the server's message, when there is one.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    // The driver's own words are terse ("error connecting to server"): add
    // the causes (connection refused, a TLS failure, ...).
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Whether a URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparsed database URL]".into();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let path = tail.split('?').next().unwrap_or("");
    format!("{scheme}://{host}{path}")
}

/// The pool of a replica's own connections (the ledger's and the gates').
pub fn pool(url: &str, max_size: usize) -> Result<Pool, PgError> {
    if !is_postgres_url(url) {
        return Err(PgError::Url(format!(
            "{} is not a postgres:// URL",
            redact(url)
        )));
    }
    let (url_for_driver, verify) = tls_policy(url)?;
    let config: tokio_postgres::Config = url_for_driver
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Url(format!("{}: {e}", redact(url))))?;
    let mut tls = native_tls::TlsConnector::builder();
    match verify {
        Verify::Nothing => {
            tls.danger_accept_invalid_certs(true);
            tls.danger_accept_invalid_hostnames(true);
        }
        Verify::Ca => {
            tls.danger_accept_invalid_hostnames(true);
        }
        Verify::Full => {}
    }
    let tls = tls.build().map_err(|e| PgError::Tls(e.to_string()))?;
    let manager = Manager::from_config(
        config,
        postgres_native_tls::MakeTlsConnector::new(tls),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size.max(2))
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| PgError::Url(e.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Ca,
    Full,
}

/// The driver knows `disable`, `prefer` and `require`; `verify-ca` and
/// `verify-full` are `require` plus the certificate checks done here.
fn tls_policy(url: &str) -> Result<(String, Verify), PgError> {
    let mut verify = Verify::Nothing;
    let mut out = url.to_string();
    for (mode, level) in [
        ("sslmode=verify-full", Verify::Full),
        ("sslmode=verify-ca", Verify::Ca),
    ] {
        if out.contains(mode) {
            out = out.replace(mode, "sslmode=require");
            verify = level;
        }
    }
    if out.contains("sslmode=allow") {
        out = out.replace("sslmode=allow", "sslmode=prefer");
    }
    Ok((out, verify))
}

/// A connection from the pool, or why there is none.
pub async fn connection(pool: &Pool) -> Result<Object, PgError> {
    Ok(pool.get().await?)
}

/// Checks that the database answers, for a clear error at start.
pub async fn check(pool: &Pool, url: &str) -> Result<(), PgError> {
    let conn = pool.get().await.map_err(|e| PgError::Unreachable {
        url: redact(url),
        reason: match e {
            deadpool_postgres::PoolError::Backend(e) => describe(&e),
            other => other.to_string(),
        },
    })?;
    conn.simple_query("SELECT 1").await?;
    Ok(())
}

/// A 64-bit advisory-lock key for a name (the first 8 bytes of its SHA-256).
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The lock every replica takes while it creates or migrates the tables.
pub const MIGRATION_LOCK: &str = "paygress/migrations";

/// Runs `f` while holding the migration lock (a session advisory lock on a
/// connection of its own): replicas starting at once migrate one at a time.
pub async fn with_migration_lock<T, F>(pool: &Pool, f: F) -> Result<T, PgError>
where
    F: std::future::Future<Output = Result<T, PgError>>,
{
    let conn = pool.get().await?;
    let key = lock_key(MIGRATION_LOCK);
    conn.execute("SELECT pg_advisory_lock($1)", &[&key]).await?;
    let result = f.await;
    // On failure the connection is closed, which releases the lock.
    if conn
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .is_err()
    {
        drop(Object::take(conn));
    }
    result
}

/// Records the wallet seed's fingerprint in the shared database on the
/// first start, and refuses a replica whose seed differs: replicas on one
/// store must derive the same outputs (one mnemonic), or a survivor could
/// not settle what a lost replica left unfinished.
pub async fn check_seed(pool: &Pool, seed: &[u8; 64]) -> Result<(), PgError> {
    let fingerprint = seed_fingerprint(seed);
    let conn = pool.get().await?;
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS paygress_meta (
             key   TEXT PRIMARY KEY,
             value TEXT NOT NULL
         )",
    )
    .await?;
    conn.execute(
        "INSERT INTO paygress_meta (key, value) VALUES ('seed_fingerprint', $1)
         ON CONFLICT (key) DO NOTHING",
        &[&fingerprint],
    )
    .await?;
    let row = conn
        .query_one(
            "SELECT value FROM paygress_meta WHERE key = 'seed_fingerprint'",
            &[],
        )
        .await?;
    let recorded: String = row.try_get(0)?;
    if recorded != fingerprint {
        return Err(PgError::Query(format!(
            "this database's wallet belongs to another mnemonic (seed fingerprint {recorded}, \
             ours {fingerprint}): every replica on one database needs the same PAYGRESS_MNEMONIC"
        )));
    }
    Ok(())
}

/// A short public fingerprint of a seed (a hash of a hash, never the seed).
pub fn seed_fingerprint(seed: &[u8; 64]) -> String {
    let mut h = Sha256::new();
    h.update(b"paygress/seed-fingerprint/v1/");
    h.update(Sha256::digest(seed));
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_redacted() {
        assert!(is_postgres_url("postgres://u:p@h/db"));
        assert!(is_postgres_url("PostgreSQL://h/db"));
        assert!(!is_postgres_url("sqlite:///x"));
        assert_eq!(
            redact("postgres://paygress:s3cret@db.internal:5432/paygress?sslmode=require"),
            "postgres://paygress:***@db.internal:5432/paygress"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert!(!redact("postgres://u:pa:ss@h/db").contains("pa"));
    }

    #[test]
    fn verify_modes_become_require_plus_checks() {
        assert_eq!(
            tls_policy("postgres://h/db?sslmode=verify-full").unwrap(),
            ("postgres://h/db?sslmode=require".to_string(), Verify::Full)
        );
        assert_eq!(
            tls_policy("postgres://h/db?sslmode=verify-ca").unwrap().1,
            Verify::Ca
        );
        assert_eq!(tls_policy("postgres://h/db").unwrap().1, Verify::Nothing);
        assert!(pool("mysql://h/db", 2).is_err());
    }

    #[test]
    fn lock_keys_differ_by_name_and_fingerprints_by_seed() {
        assert_ne!(lock_key("a"), lock_key("b"));
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(seed_fingerprint(&[1; 64]), seed_fingerprint(&[2; 64]));
        assert_eq!(seed_fingerprint(&[1; 64]).len(), 16);
    }
}
