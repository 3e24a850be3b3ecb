//! The wallet seed: a BIP-39 mnemonic, from `PAYGRESS_MNEMONIC` or from the
//! file `seed` in the data dir (created on first start, mode 0600).
//!
//! The wallet store and the seed belong together (NUT-13 counters, restore),
//! so a data dir whose `seed` file differs from `PAYGRESS_MNEMONIC` is refused
//! rather than silently mixed.
//!
//! **Replicas.** Replicas that share one mnemonic (one Secret) but keep
//! separate stores must not derive the same NUT-13 outputs: the mint signs
//! an output once, and the second replica's swap would be refused. Each
//! replica therefore derives its wallet seed from the mnemonic's seed and its
//! replica id ([`replica_seed`]): `PAYGRESS_REPLICA_ID`, else the id this data
//! dir recorded when it was created, else `HOSTNAME` (the pod name in
//! Kubernetes). The empty id is the mnemonic's own seed (a single verifier,
//! or a data dir created before replica ids). Every id a data dir has used
//! is kept in its `replica` file, and a replica's funds are recovered from
//! the mnemonic with `paygress wallet restore --replica-id ID`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bip39::Mnemonic;
use paygress_core::hmac::hmac_sha512;
use thiserror::Error;

/// The name of the seed file in the data dir.
pub const SEED_FILE: &str = "seed";
/// The environment variable that gives the mnemonic instead of the file.
pub const MNEMONIC_VAR: &str = "PAYGRESS_MNEMONIC";

/// The file in the data dir that lists the replica ids it has used, one per
/// line, the current one last.
pub const REPLICA_FILE: &str = "replica";
/// The environment variable that names the replica.
pub const REPLICA_VAR: &str = "PAYGRESS_REPLICA_ID";
/// The longest replica id (a DNS name).
pub const MAX_REPLICA_ID_LEN: usize = 253;

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
    #[error(
        "replica id {id:?} (from {origin}) must be at most {MAX_REPLICA_ID_LEN} ASCII letters, \
         digits, '.', '-' or '_'"
    )]
    ReplicaId { id: String, origin: String },
}

/// Which replica this process is, and every id its data dir has used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The replica id ("" for the mnemonic's own seed).
    pub id: String,
    /// Where the id came from: `PAYGRESS_REPLICA_ID`, `data dir`, `HOSTNAME`
    /// or `none`.
    pub origin: &'static str,
    /// Every id the data dir has used, oldest first (the current one last).
    pub history: Vec<String>,
}

/// Settles the replica id of a data dir: `explicit` (`PAYGRESS_REPLICA_ID`)
/// first, else the last id the dir recorded, else `hostname`, else "" when
/// the dir already holds a wallet store from before replica ids. A new id is
/// appended to the dir's `replica` file (mode 0600) so that restores know it.
pub fn resolve_replica(
    dir: &Path,
    explicit: Option<&str>,
    hostname: Option<&str>,
    store_exists: bool,
) -> Result<Replica, SeedError> {
    ensure_data_dir(dir)?;
    let path = dir.join(REPLICA_FILE);
    let history: Vec<String> = match fs::read_to_string(&path) {
        Ok(text) => text.lines().map(|l| l.trim().to_string()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(SeedError::Io { path, source }),
    };
    let explicit = explicit.map(str::trim).filter(|s| !s.is_empty());
    let hostname = hostname.map(str::trim).filter(|s| !s.is_empty());
    let (id, origin) = match (explicit, history.last(), hostname) {
        (Some(id), _, _) => (id.to_string(), REPLICA_VAR),
        (None, Some(last), _) => (last.clone(), "data dir"),
        (None, None, _) if store_exists => (String::new(), "none"),
        (None, None, Some(host)) => (host.to_string(), "HOSTNAME"),
        (None, None, None) => (String::new(), "none"),
    };
    validate_replica_id(&id, origin)?;
    let mut history = history;
    if history.last() != Some(&id) {
        history.push(id.clone());
        write_private(&path, &format!("{}\n", history.join("\n")))?;
    }
    Ok(Replica {
        id,
        origin,
        history,
    })
}

/// [`resolve_replica`] with `PAYGRESS_REPLICA_ID` and `HOSTNAME` from the
/// process environment.
pub fn replica_from_env(dir: &Path) -> Result<Replica, SeedError> {
    let explicit = std::env::var(REPLICA_VAR).ok();
    let hostname = std::env::var("HOSTNAME").ok();
    let store_exists = dir.join(crate::wallet::STORE_FILE).exists();
    resolve_replica(dir, explicit.as_deref(), hostname.as_deref(), store_exists)
}

/// The identity of a replica on a shared store (its name in metrics and in
/// leader election; its seed is the mnemonic's own): `PAYGRESS_REPLICA_ID`,
/// else `HOSTNAME` (the pod name), else `paygress`. Nothing is written.
pub fn replica_identity() -> Result<Replica, SeedError> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (id, origin) = match (env(REPLICA_VAR), env("HOSTNAME")) {
        (Some(id), _) => (id, REPLICA_VAR),
        (None, Some(host)) => (host, "HOSTNAME"),
        (None, None) => ("paygress".to_string(), "none"),
    };
    validate_replica_id(&id, origin)?;
    Ok(Replica {
        id,
        origin,
        history: Vec::new(),
    })
}

/// The 64-byte seed of a mnemonic (`PAYGRESS_MNEMONIC`'s words).
pub fn from_mnemonic(words: &str) -> Result<[u8; 64], SeedError> {
    Ok(parse(words, MNEMONIC_VAR)?.to_seed_normalized(""))
}

fn validate_replica_id(id: &str, origin: &str) -> Result<(), SeedError> {
    let ok = id.len() <= MAX_REPLICA_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SeedError::ReplicaId {
            id: id.to_string(),
            origin: origin.to_string(),
        })
    }
}

/// The wallet seed of a replica: the mnemonic's seed itself for the empty
/// id, else HMAC-SHA512 keyed by that seed over a domain tag and the id.
/// Distinct ids give unrelated NUT-13 derivations.
pub fn replica_seed(seed: &[u8; 64], replica_id: &str) -> [u8; 64] {
    if replica_id.is_empty() {
        return *seed;
    }
    hmac_sha512(seed, format!("paygress/replica/v1/{replica_id}").as_bytes())
}

/// Writes a file only its owner can read (0600), replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<(), SeedError> {
    let tmp = path.with_extension("tmp");
    let io = |source| SeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
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
    fn replica_ids_give_distinct_seeds_and_are_recorded() {
        let base = [7u8; 64];
        assert_eq!(replica_seed(&base, ""), base);
        let a = replica_seed(&base, "paygress-0");
        let b = replica_seed(&base, "paygress-1");
        assert_ne!(a, base);
        assert_ne!(a, b);
        assert_eq!(a, replica_seed(&base, "paygress-0"));
        // The derivation is HMAC-SHA512 keyed by the mnemonic's seed.
        assert_eq!(a, hmac_sha512(&base, b"paygress/replica/v1/paygress-0"));

        let dir = tempfile::tempdir().unwrap();
        let r = resolve_replica(dir.path(), None, Some("pod-a"), false).unwrap();
        assert_eq!((r.id.as_str(), r.origin), ("pod-a", "HOSTNAME"));
        // A restarted pod has a new HOSTNAME: the data dir keeps its id.
        let r = resolve_replica(dir.path(), None, Some("pod-b"), true).unwrap();
        assert_eq!((r.id.as_str(), r.origin), ("pod-a", "data dir"));
        // An explicit id wins, and the history keeps both.
        let r = resolve_replica(dir.path(), Some("r1"), Some("pod-b"), true).unwrap();
        assert_eq!(r.id, "r1");
        assert_eq!(r.history, vec!["pod-a".to_string(), "r1".to_string()]);
        let mode = fs::metadata(dir.path().join(REPLICA_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(resolve_replica(dir.path(), Some("bad id"), None, true).is_err());

        // A data dir with a store from before replica ids keeps the mnemonic's seed.
        let old = tempfile::tempdir().unwrap();
        let r = resolve_replica(old.path(), None, Some("pod-a"), true).unwrap();
        assert_eq!(r.id, "");
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
