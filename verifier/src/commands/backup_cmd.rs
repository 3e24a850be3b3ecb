//! `paygress wallet backup --to DIR`: a consistent copy of a data dir, taken
//! while the verifier runs.
//!
//! The SQLite stores (the wallet's proofs and counters in `wallet.sqlite`,
//! the redemption ledger and leases in `redemptions.sqlite`) are copied with
//! SQLite's `VACUUM INTO`, which reads one snapshot of each store, so a
//! backup taken mid-redemption is a store as it was at one moment, never a
//! torn file. The seed and the replica file are copied as they are. `DIR`
//! is made `0700` and every file `0600`: a backup holds the wallet's money.
//!
//! To restore: stop the verifier, copy the files into an empty data dir
//! (`cp -p DIR/* DATA_DIR/`), start it. The wallet's proofs are back as they
//! were at the backup; what was redeemed after it is recovered from the
//! mint with `paygress wallet restore` (NUT-13, from the seed).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

use crate::files::restrict_file;
use crate::ledger::LEDGER_FILE;
use crate::seed::{ensure_data_dir, REPLICA_FILE, SEED_FILE};
use crate::wallet::STORE_FILE;

/// Copies `data_dir`'s stores, seed and replica file into `to` (which must
/// not hold any of them yet); the files written.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    if !data_dir.join(STORE_FILE).exists() {
        bail!(
            "{} holds no wallet store ({STORE_FILE}): nothing to back up",
            data_dir.display()
        );
    }
    if to.exists() && fs::canonicalize(to)? == fs::canonicalize(data_dir)? {
        bail!("the backup must go somewhere else than the data dir");
    }
    ensure_data_dir(to).with_context(|| format!("creating {}", to.display()))?;
    let mut written = Vec::new();
    for name in [STORE_FILE, LEDGER_FILE, SEED_FILE, REPLICA_FILE] {
        let from = data_dir.join(name);
        if !from.exists() {
            continue;
        }
        let dest = to.join(name);
        if dest.exists() {
            bail!("{} exists: a backup never overwrites", dest.display());
        }
        if name.ends_with(".sqlite") {
            snapshot(&from, &dest)?;
        } else {
            fs::copy(&from, &dest)
                .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        }
        restrict_file(&dest).with_context(|| format!("restricting {}", dest.display()))?;
        written.push(dest);
    }
    Ok(written)
}

/// One consistent copy of a SQLite store, taken while others write to it.
fn snapshot(from: &Path, to: &Path) -> Result<()> {
    let conn = Connection::open(from).with_context(|| format!("opening {}", from.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let target = to
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", to.display()))?;
    conn.execute("VACUUM INTO ?1", [target])
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_backup_is_a_private_consistent_copy_that_never_overwrites() {
        let data = tempfile::tempdir().unwrap();
        let store = Connection::open(data.path().join(STORE_FILE)).unwrap();
        store
            .execute_batch("CREATE TABLE proof (y TEXT); INSERT INTO proof VALUES ('a'), ('b');")
            .unwrap();
        fs::write(data.path().join(SEED_FILE), "seed words").unwrap();
        let out = tempfile::tempdir().unwrap();
        let to = out.path().join("backup");
        let files = backup(data.path(), &to).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        // Written while the store is open (and written to) elsewhere.
        store.execute("INSERT INTO proof VALUES ('c')", []).unwrap();
        let copy = Connection::open(to.join(STORE_FILE)).unwrap();
        let n: i64 = copy
            .query_row("SELECT COUNT(*) FROM proof", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            fs::read_to_string(to.join(SEED_FILE)).unwrap(),
            "seed words"
        );
        for f in &files {
            assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(
            fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Never over an earlier backup, never into the data dir, never of
        // nothing.
        assert!(backup(data.path(), &to).is_err());
        assert!(backup(data.path(), data.path()).is_err());
        assert!(backup(out.path(), &out.path().join("x")).is_err());
    }
}
