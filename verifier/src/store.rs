//! Where the wallet and the ledger live: SQLite files in the data dir (the
//! embedded default, one verifier), or a PostgreSQL database that any number
//! of replicas share (`--database-url` / `PAYGRESS_DATABASE_URL`).
//!
//! On PostgreSQL every replica uses the mnemonic's own seed
//! (`PAYGRESS_MNEMONIC`, required): the store's NUT-13 counters are shared,
//! swaps at a mint take a gate shared by all replicas
//! ([`crate::swap_gate`]), and whichever replica settles an unfinished swap
//! derives the same outputs as the replica that began it. The database
//! records the seed's fingerprint at the first start and refuses a replica
//! with another mnemonic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deadpool_postgres::Pool;
use thiserror::Error;

use crate::ledger::{Ledger, LedgerError, PgLedger};
use crate::postgres::{self, PgError};
use crate::seed::{self, SeedError, SeedOrigin};
use crate::wallet::{self, WalletError};

/// The environment variable that selects PostgreSQL.
pub const DATABASE_URL_VAR: &str = "PAYGRESS_DATABASE_URL";

/// The wallet store, whichever database holds it.
pub type WalletStore =
    Arc<dyn cdk::cdk_database::WalletDatabase<cdk::cdk_database::Error> + Send + Sync>;

/// Where the wallet store and the ledger live.
#[derive(Debug, Clone)]
pub enum Location {
    /// SQLite files in the data dir.
    DataDir(PathBuf),
    /// A PostgreSQL database shared by replicas (the URL, with its secret).
    Postgres(String),
}

/// Why the store could not be opened.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error(
        "{DATABASE_URL_VAR} is set: every replica on a shared database needs the same wallet \
         seed, so PAYGRESS_MNEMONIC must be set too (the words of the mnemonic Secret)"
    )]
    MnemonicRequired,
    #[error("cannot open cdk's Postgres wallet store at {url}: {reason}")]
    WalletStore { url: String, reason: String },
}

impl Location {
    /// The location the arguments name: PostgreSQL when a database URL is
    /// given (and not blank), else the data dir.
    pub fn new(data_dir: &Path, database_url: Option<&str>) -> Location {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Location::Postgres(url.to_string()),
            None => Location::DataDir(data_dir.to_path_buf()),
        }
    }

    /// For logs: the kind and where, without secrets.
    pub fn describe(&self) -> String {
        match self {
            Location::DataDir(dir) => format!("sqlite in {}", dir.display()),
            Location::Postgres(url) => format!("postgres at {}", postgres::redact(url)),
        }
    }

    /// `sqlite` or `postgres` (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Location::DataDir(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }

    /// Whether replicas share it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// What a verifier opens at start.
#[derive(Debug)]
pub struct Opened {
    pub wallet: WalletStore,
    pub ledger: Ledger,
    /// The pool of the shared database (for the swap gates).
    pub pool: Option<Pool>,
    /// The wallet seed.
    pub seed: [u8; 64],
    /// This replica's id, and where it came from.
    pub replica: seed::Replica,
    pub seed_origin: SeedOrigin,
}

/// The seed, the wallet store and the ledger at `location`. `data_dir` is
/// created either way (it holds the seed and the replica file on SQLite).
pub async fn open(
    location: &Location,
    data_dir: &Path,
    env_mnemonic: Option<&str>,
) -> Result<Opened, StoreError> {
    match location {
        Location::DataDir(dir) => {
            let (base, seed_origin) = seed::load_or_create(dir, env_mnemonic)?;
            let replica = seed::replica_from_env(dir)?;
            let seed = seed::replica_seed(&base, &replica.id);
            let wallet: WalletStore = wallet::open_store(dir).await?;
            let ledger = Ledger::open(dir)?;
            Ok(Opened {
                wallet,
                ledger,
                pool: None,
                seed,
                replica,
                seed_origin,
            })
        }
        Location::Postgres(url) => {
            seed::ensure_data_dir(data_dir)?;
            let words = env_mnemonic.ok_or(StoreError::MnemonicRequired)?;
            let seed = seed::from_mnemonic(words)?;
            let replica = seed::replica_identity()?;
            let pool = postgres::pool(url, postgres::POOL_SIZE)?;
            postgres::check(&pool, url).await?;
            postgres::with_migration_lock(&pool, postgres::check_seed(&pool, &seed)).await?;
            let wallet = open_pg_wallet_store(&pool, url).await?;
            let ledger = Ledger::Postgres(PgLedger::open(pool.clone()).await?);
            Ok(Opened {
                wallet,
                ledger,
                pool: Some(pool),
                seed,
                replica,
                seed_origin: SeedOrigin::Environment,
            })
        }
    }
}

/// cdk's Postgres wallet store, created (migrated) under the migration lock
/// so that replicas starting together do not race on its tables.
async fn open_pg_wallet_store(pool: &Pool, url: &str) -> Result<WalletStore, StoreError> {
    let store = postgres::with_migration_lock(pool, async {
        cdk_postgres::new_wallet_pg_database(url)
            .await
            .map_err(|e| PgError::Query(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::WalletStore {
        url: postgres::redact(url),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(store))
}

/// What the wallet commands open: the store, its seed, and the pool of a
/// shared database. `create` allows a new SQLite data dir (and seed).
pub async fn open_for_command(
    location: &Location,
    env_mnemonic: Option<&str>,
    create: bool,
) -> anyhow::Result<(WalletStore, [u8; 64], String, Option<Pool>)> {
    use anyhow::bail;
    match location {
        Location::DataDir(dir) => {
            if !create && !dir.join(wallet::STORE_FILE).exists() {
                bail!(
                    "no wallet in {} (no {}); pass --data-dir or set PAYGRESS_DATA_DIR, or \
                     --database-url for a shared PostgreSQL store",
                    dir.display(),
                    wallet::STORE_FILE
                );
            }
            if !create && env_mnemonic.is_none() && !dir.join(seed::SEED_FILE).exists() {
                bail!(
                    "no seed in {} and {} is not set",
                    dir.display(),
                    seed::MNEMONIC_VAR
                );
            }
            let (base, _) = seed::load_or_create(dir, env_mnemonic)?;
            let replica = seed::replica_from_env(dir)?;
            let store: WalletStore = wallet::open_store(dir).await?;
            Ok((
                store,
                seed::replica_seed(&base, &replica.id),
                replica.id,
                None,
            ))
        }
        Location::Postgres(url) => {
            let words = env_mnemonic.ok_or(StoreError::MnemonicRequired)?;
            let seed = seed::from_mnemonic(words)?;
            let pool = postgres::pool(url, 4)?;
            postgres::check(&pool, url).await?;
            postgres::with_migration_lock(&pool, postgres::check_seed(&pool, &seed)).await?;
            let store = open_pg_wallet_store(&pool, url).await?;
            Ok((store, seed, String::new(), Some(pool)))
        }
    }
}
