//! The wallet seed: a BIP-39 mnemonic, from `PAYGRESS_MNEMONIC` or from the
//! file `seed` in the data dir (created on first start, mode 0600).
//!
//! The wallet store and the seed belong together (NUT-13 counters, restore),
//! so a data dir whose `seed` file differs from `PAYGRESS_MNEMONIC` is refused
//! rather than silently mixed.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bip39::Mnemonic;
use thiserror::Error;

/// The name of the seed file in the data dir.
pub const SEED_FILE: &str = "seed";
/// The environment variable that gives the mnemonic instead of the file.
pub const MNEMONIC_VAR: &str = "PAYGRESS_MNEMONIC";

/// Why the seed could not be loaded.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or write the seed file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not a valid BIP-39 mnemonic: {reason}")]
    Invalid { origin: String, reason: String },
    #[error(
        "{MNEMONIC_VAR} differs from the seed in {path}: this data dir belongs to another \
         seed; use a new data dir or unset {MNEMONIC_VAR}"
    )]
    Mismatch { path: PathBuf },
}

/// Where the seed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOrigin {
    Environment,
    File,
    Generated,
}

/// Creates the data dir (0700) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<(), SeedError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|source| SeedError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            SeedError::DataDir {
                path: dir.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// The 64-byte wallet seed for a data dir. `env_mnemonic` is the value of
/// `PAYGRESS_MNEMONIC`, if set. Without either, a new 24-word mnemonic is
/// generated and written to `<dir>/seed` with mode 0600.
pub fn load_or_create(
    dir: &Path,
    env_mnemonic: Option<&str>,
) -> Result<([u8; 64], SeedOrigin), SeedError> {
    ensure_data_dir(dir)?;
    let path = dir.join(SEED_FILE);
    let from_file = match fs::read_to_string(&path) {
        Ok(text) => Some(parse(&text, &path.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(SeedError::Io { path, source }),
    };
    if let Some(words) = env_mnemonic {
        let from_env = parse(words, MNEMONIC_VAR)?;
        if let Some(file) = &from_file {
            if file != &from_env {
                return Err(SeedError::Mismatch { path });
            }
        }
        return Ok((from_env.to_seed_normalized(""), SeedOrigin::Environment));
    }
    if let Some(file) = from_file {
        return Ok((file.to_seed_normalized(""), SeedOrigin::File));
    }
    let entropy: [u8; 32] = rand::random();
    let mnemonic = Mnemonic::from_entropy(&entropy).map_err(|e| SeedError::Invalid {
        origin: "generated entropy".into(),
        reason: e.to_string(),
    })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| SeedError::Io {
            path: path.clone(),
            source,
        })?;
    file.write_all(format!("{mnemonic}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| SeedError::Io {
            path: path.clone(),
            source,
        })?;
    Ok((mnemonic.to_seed_normalized(""), SeedOrigin::Generated))
}

fn parse(text: &str, origin: &str) -> Result<Mnemonic, SeedError> {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Mnemonic::parse_normalized(&words).map_err(|e| SeedError::Invalid {
        origin: origin.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_writes_a_private_seed_that_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (seed, origin) = load_or_create(&data, None).unwrap();
        assert_eq!(origin, SeedOrigin::Generated);
        let mode = fs::metadata(data.join(SEED_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, origin) = load_or_create(&data, None).unwrap();
        assert_eq!(origin, SeedOrigin::File);
        assert_eq!(seed, again);

        let words = fs::read_to_string(data.join(SEED_FILE)).unwrap();
        let (from_env, origin) = load_or_create(&data, Some(&words)).unwrap();
        assert_eq!(origin, SeedOrigin::Environment);
        assert_eq!(from_env, seed);
    }

    #[test]
    fn a_different_mnemonic_for_an_existing_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), None).unwrap();
        let other = Mnemonic::from_entropy(&[7u8; 16]).unwrap().to_string();
        let err = load_or_create(dir.path(), Some(&other)).unwrap_err();
        assert!(matches!(err, SeedError::Mismatch { .. }), "{err}");
        let err = load_or_create(dir.path(), Some("not a mnemonic")).unwrap_err();
        assert!(err.to_string().contains(MNEMONIC_VAR), "{err}");
    }
}
