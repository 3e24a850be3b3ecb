//! The data dir's permissions: it holds bearer proofs (the wallet store),
//! the seed, and the redemption ledger, so it is `0700` and each of those
//! files `0600`, checked (and tightened) at every start.
//!
//! SQLite creates a database's `-wal` and `-shm` files with the database
//! file's own mode, so restricting the database files covers them too.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The files of a data dir that must be private to the verifier's user.
pub const PRIVATE_FILES: &[&str] = &[
    crate::seed::SEED_FILE,
    crate::seed::REPLICA_FILE,
    crate::wallet::STORE_FILE,
    "wallet.sqlite-wal",
    "wallet.sqlite-shm",
    crate::ledger::LEDGER_FILE,
    "redemptions.sqlite-wal",
    "redemptions.sqlite-shm",
    crate::commands::lease_cmd::PASSES_FILE,
];

/// A permission that could not be made private.
#[derive(Debug, Error)]
#[error("cannot make {path} private (mode {mode:o}): {source}")]
pub struct PermissionError {
    pub path: PathBuf,
    pub mode: u32,
    source: std::io::Error,
}

/// Sets `path` to `mode` when it allows more; returns whether it changed.
fn restrict(path: &Path, mode: u32) -> Result<bool, PermissionError> {
    let err = |source| PermissionError {
        path: path.to_path_buf(),
        mode,
        source,
    };
    let current = match fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    if current & !mode == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(true)
}

/// Makes one file `0600` (when it exists).
pub fn restrict_file(path: &Path) -> Result<bool, PermissionError> {
    restrict(path, 0o600)
}

/// Makes the data dir `0700` and its private files `0600`, logging what it
/// had to tighten.
pub fn secure_data_dir(dir: &Path) -> Result<(), PermissionError> {
    if restrict(dir, 0o700)? {
        tracing::warn!(path = %dir.display(), "the data dir was readable by others: now 0700");
    }
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        if restrict_file(&path)? {
            tracing::warn!(path = %path.display(), "a wallet file was readable by others: now 0600");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_dir_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["wallet.sqlite", "seed", "other.txt"] {
            fs::write(data.join(name), "x").unwrap();
            fs::set_permissions(data.join(name), fs::Permissions::from_mode(0o644)).unwrap();
        }
        secure_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("wallet.sqlite")), 0o600);
        assert_eq!(mode(&data.join("seed")), 0o600);
        assert_eq!(mode(&data.join("other.txt")), 0o644, "not ours to change");
        // Stricter modes are left alone.
        fs::set_permissions(data.join("seed"), fs::Permissions::from_mode(0o400)).unwrap();
        secure_data_dir(&data).unwrap();
        assert_eq!(mode(&data.join("seed")), 0o400);
    }
}
