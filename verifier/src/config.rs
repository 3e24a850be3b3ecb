//! The verifier's settings: the shared config file (JSON, or YAML), the
//! environment overrides, and the verifier-only knobs.
//!
//! The document is parsed into a `serde_json::Value`, the overrides are
//! applied to that value, and paygress-core validates and compiles the result
//! (so every error names the key, or the environment variable, at fault).
//!
//! Environment overrides (each replaces the file's value):
//!
//! | variable | key / meaning |
//! |---|---|
//! | `DEFAULT_PAYMENT_AMOUNT`, `PAYGRESS_DEFAULT_AMOUNT` | `default_amount` |
//! | `PAYGRESS_MINTS` | `mints`, comma-separated |
//! | `PAYGRESS_UNIT` | `unit` |
//! | `PAYGRESS_FREE_PATHS` | `free_paths`, comma-separated |
//! | `PAYGRESS_TIERS` | `tiers`, as a JSON array |
//! | `PAYGRESS_PASS_KEYS` | `pass_keys`, as a JSON array (a key's `secret_env` names another variable) |
//! | `ENABLE_POD_PROVISIONING` | pods are provisioned (`true`/`false`) |
//! | `POD_NAMESPACE` | the namespace of provisioned pods |
//! | `PAYGRESS_MINT_TIMEOUT_MS` | the longest a redemption waits for the mint |
//! | `PAYGRESS_RECOVERY_INTERVAL_SECS` | how often unfinished redemptions are settled |
//! | `PAYGRESS_SHUTDOWN_GRACE_SECS` | how long SIGTERM waits for in-flight redemptions |
//! | `PAYGRESS_DEADLINE_MS` | a request's deadline when its caller names none |
//! | `PAYGRESS_MAX_REDEMPTIONS` | redemptions in flight at once (more: `503`, `Retry-After`) |
//! | `PAYGRESS_REPLICA_ID` | this replica's id (default: the data dir's, then `HOSTNAME`) |
//! | `PAYGRESS_LEADER_ELECTION` | `auto` (a Kubernetes Lease when the store is PostgreSQL and the verifier runs in a cluster), `kube`, or `off` (this replica leads) |
//! | `PAYGRESS_LEADER_LEASE` | the Lease's name (default `paygress-verifier-leader`) |
//! | `PAYGRESS_LEADER_NAMESPACE` | the Lease's namespace (default: the verifier's own, from its service account) |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paygress_core::{CompiledConfig, Config, ConfigError};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::pods::PodTemplate;

/// The default namespace of provisioned pods.
pub const DEFAULT_POD_NAMESPACE: &str = "default";
/// The default longest wait for the mint during one redemption. It stays
/// below the filter's default callout timeout (`verifier.timeout_ms`, 3000),
/// so that the filter hears the verifier's answer rather than timing out
/// while a swap may still complete. Raise both together.
pub const DEFAULT_MINT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default interval of the settlement of unfinished redemptions.
pub const DEFAULT_RECOVERY_INTERVAL: Duration = Duration::from_secs(60);
/// The default deadline of an `/auth` request whose caller names none (the
/// filter names its callout timeout in `X-Paygress-Deadline-Ms`): below
/// the usual auth-subrequest timeouts of NGINX and Traefik.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(2500);
/// The default number of redemptions in flight at once.
pub const DEFAULT_MAX_REDEMPTIONS: usize = 64;
/// The default time SIGTERM waits for in-flight redemptions.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The default name of the leader election's Lease.
pub const DEFAULT_LEADER_LEASE: &str = "paygress-verifier-leader";

/// How a replica learns whether it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderElection {
    /// A Kubernetes Lease when the store is shared and the verifier runs in
    /// a cluster; else this replica leads.
    Auto,
    /// Always a Kubernetes Lease (in-cluster config, or `KUBECONFIG`).
    Kube,
    /// This replica leads (a single replica, or work done elsewhere).
    Off,
}

/// Leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    pub mode: LeaderElection,
    pub lease: String,
    /// `None`: the verifier's own namespace (its service account's).
    pub namespace: Option<String>,
}

/// Pod provisioning settings (used by a later part of the verifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSettings {
    pub enabled: bool,
    pub namespace: String,
}

/// Everything `paygress serve` runs with, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The shared config, compiled by paygress-core.
    pub config: CompiledConfig,
    /// The pods of the tiers that have one (by tier id), validated and
    /// completed; provisioned only with `ENABLE_POD_PROVISIONING=true`.
    pub pod_templates: HashMap<String, PodTemplate>,
    pub pods: PodSettings,
    /// The longest a redemption waits for the mint before answering 503.
    pub mint_timeout: Duration,
    /// How often unfinished redemptions are settled with the mint.
    pub recovery_interval: Duration,
    /// How long SIGTERM waits for in-flight redemptions.
    pub shutdown_grace: Duration,
    /// A request's deadline when its caller names none.
    pub deadline: Duration,
    /// Redemptions in flight at once.
    pub max_redemptions: usize,
    pub leader: LeaderSettings,
}

/// Why the settings could not be loaded. Every variant names the file, the
/// key or the environment variable at fault.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is neither JSON nor YAML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: the document must be an object")]
    NotAnObject { path: PathBuf },
    #[error("environment variable {var}={value:?}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pod(#[from] crate::pods::TemplateError),
}

/// A source of environment variables (the process environment, or a map in
/// tests).
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment; empty values count as unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> EnvSource for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Loads the config file (when given), applies the environment overrides
/// and validates the result.
pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<Settings, SettingsError> {
    let mut doc = match path {
        Some(path) => read_document(path)?,
        None => Map::new(),
    };
    apply_overrides(&mut doc, env)?;
    let parsed = Config::from_value(Value::Object(doc))?;
    let config = parsed.compile_with_env(&|name| env.var(name))?;
    let mut pod_templates = HashMap::new();
    for (i, tier) in parsed.tiers.iter().enumerate() {
        if let Some(pod) = &tier.pod {
            pod_templates.insert(tier.id.clone(), PodTemplate::from_config(i, &tier.id, pod)?);
        }
    }
    Ok(Settings {
        config,
        pod_templates,
        pods: PodSettings {
            enabled: env_bool(env, "ENABLE_POD_PROVISIONING")?.unwrap_or(false),
            namespace: env
                .var("POD_NAMESPACE")
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| DEFAULT_POD_NAMESPACE.to_string()),
        },
        mint_timeout: env_u64(env, "PAYGRESS_MINT_TIMEOUT_MS", 1, 600_000)?
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_MINT_TIMEOUT),
        recovery_interval: env_u64(env, "PAYGRESS_RECOVERY_INTERVAL_SECS", 1, 86_400)?
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_RECOVERY_INTERVAL),
        shutdown_grace: env_u64(env, "PAYGRESS_SHUTDOWN_GRACE_SECS", 0, 3_600)?
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        deadline: env_u64(env, "PAYGRESS_DEADLINE_MS", 100, 600_000)?
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_DEADLINE),
        max_redemptions: env_u64(env, "PAYGRESS_MAX_REDEMPTIONS", 1, 100_000)?
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_REDEMPTIONS),
        leader: leader_settings(env)?,
    })
}

fn leader_settings(env: &dyn EnvSource) -> Result<LeaderSettings, SettingsError> {
    let var = "PAYGRESS_LEADER_ELECTION";
    let mode = match env.var(var).map(|v| v.trim().to_ascii_lowercase()) {
        None => LeaderElection::Auto,
        Some(v) => match v.as_str() {
            "" | "auto" => LeaderElection::Auto,
            "kube" | "kubernetes" => LeaderElection::Kube,
            "off" | "none" | "false" => LeaderElection::Off,
            _ => {
                return Err(SettingsError::Env {
                    var,
                    value: v,
                    reason: "expected auto, kube or off".into(),
                })
            }
        },
    };
    let non_empty = |name: &str| {
        env.var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Ok(LeaderSettings {
        mode,
        lease: non_empty("PAYGRESS_LEADER_LEASE").unwrap_or_else(|| DEFAULT_LEADER_LEASE.into()),
        namespace: non_empty("PAYGRESS_LEADER_NAMESPACE"),
    })
}

/// Reads a JSON or YAML document: `.yaml`/`.yml` files are YAML, everything
/// else is tried as JSON first and then as YAML.
fn read_document(path: &Path) -> Result<Map<String, Value>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let is_yaml = matches!(ext.as_deref(), Some("yaml" | "yml"));
    let parsed: Result<Value, String> = if is_yaml {
        serde_yaml::from_str(&text).map_err(|e| format!("YAML: {e}"))
    } else {
        match serde_json::from_str(&text) {
            Ok(v) => Ok(v),
            Err(json_err) if ext.as_deref() != Some("json") => {
                serde_yaml::from_str(&text).map_err(|_| format!("JSON: {json_err}"))
            }
            Err(json_err) => Err(format!("JSON: {json_err}")),
        }
    };
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SettingsError::NotAnObject {
            path: path.to_path_buf(),
        }),
        Err(message) => Err(SettingsError::Syntax {
            path: path.to_path_buf(),
            message,
        }),
    }
}

fn apply_overrides(doc: &mut Map<String, Value>, env: &dyn EnvSource) -> Result<(), SettingsError> {
    let max = paygress_core::MAX_AMOUNT;
    for var in ["DEFAULT_PAYMENT_AMOUNT", "PAYGRESS_DEFAULT_AMOUNT"] {
        if let Some(amount) = env_u64(env, var, 1, max)? {
            doc.insert("default_amount".into(), Value::from(amount));
        }
    }
    if let Some(mints) = env.var("PAYGRESS_MINTS") {
        doc.insert("mints".into(), comma_list(&mints));
    }
    if let Some(unit) = env.var("PAYGRESS_UNIT") {
        doc.insert("unit".into(), Value::from(unit.trim()));
    }
    if let Some(paths) = env.var("PAYGRESS_FREE_PATHS") {
        doc.insert("free_paths".into(), comma_list(&paths));
    }
    if let Some(tiers) = env.var("PAYGRESS_TIERS") {
        let value: Value = serde_json::from_str(&tiers).map_err(|e| SettingsError::Env {
            var: "PAYGRESS_TIERS",
            value: tiers.clone(),
            reason: format!("must be a JSON array of tiers: {e}"),
        })?;
        doc.insert("tiers".into(), value);
    }
    if let Some(keys) = env.var("PAYGRESS_PASS_KEYS") {
        // Never echo this one: it may hold secrets.
        let value: Value = serde_json::from_str(&keys).map_err(|e| SettingsError::Env {
            var: "PAYGRESS_PASS_KEYS",
            value: format!("<{} characters>", keys.len()),
            reason: format!(
                "must be a JSON array of {{\"id\", \"secret\" or \"secret_env\"}}: line {} column {}",
                e.line(),
                e.column()
            ),
        })?;
        doc.insert("pass_keys".into(), value);
    }
    Ok(())
}

fn comma_list(text: &str) -> Value {
    Value::Array(
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Value::from)
            .collect(),
    )
}

fn env_u64(
    env: &dyn EnvSource,
    var: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, SettingsError> {
    let Some(value) = env.var(var) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(SettingsError::Env {
            var,
            value,
            reason: format!("must be a whole number between {min} and {max}"),
        }),
    }
}

fn env_bool(env: &dyn EnvSource, var: &'static str) -> Result<Option<bool>, SettingsError> {
    let Some(value) = env.var(var) else {
        return Ok(None);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(SettingsError::Env {
            var,
            value,
            reason: "must be true or false".into(),
        }),
    }
}

/// One line that says what the verifier charges: tiers, free paths, mints.
pub fn summary(settings: &Settings) -> String {
    let c = &settings.config;
    let tiers: Vec<String> = c
        .price_tiers()
        .iter()
        .map(|t| match &t.id {
            Some(id) => format!("{id}={}@{}", t.amount, t.prefix),
            None => format!("default={}", t.amount),
        })
        .collect();
    format!(
        "unit={} tiers=[{}] free=[{}] mints=[{}] pods={}{}",
        c.unit,
        tiers.join(", "),
        c.free_paths().join(", "),
        c.mints.join(", "),
        if settings.pods.enabled { "on" } else { "off" },
        if settings.pods.enabled {
            format!(" namespace={}", settings.pods.namespace)
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn file(ext: &str, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn json_and_yaml_give_the_same_config() {
        let json = file(
            ".json",
            r#"{"mints":["http://127.0.0.1:3338/"],"tiers":[{"id":"p","path_prefix":"/p","amount":5}]}"#,
        );
        let yaml = file(
            ".yaml",
            "mints: [\"http://127.0.0.1:3338\"]\ntiers:\n  - id: p\n    path_prefix: /p\n    amount: 5\n",
        );
        let a = load(Some(json.path()), &env(&[])).unwrap();
        let b = load(Some(yaml.path()), &env(&[])).unwrap();
        assert_eq!(a.config, b.config);
        assert_eq!(a.config.price("/p/x").amount(), 5);
        assert_eq!(a.config.default_amount(), 1000);
    }

    #[test]
    fn environment_overrides_the_file() {
        let json = file(".json", r#"{"mints":["http://a:1"],"default_amount":7}"#);
        let s = load(
            Some(json.path()),
            &env(&[
                ("DEFAULT_PAYMENT_AMOUNT", "42"),
                ("PAYGRESS_MINTS", "http://b:2, http://c:3"),
                ("ENABLE_POD_PROVISIONING", "true"),
                ("POD_NAMESPACE", "pods"),
                ("PAYGRESS_MINT_TIMEOUT_MS", "1500"),
            ]),
        )
        .unwrap();
        assert_eq!(s.config.default_amount(), 42);
        assert_eq!(s.config.mints, vec!["http://b:2", "http://c:3"]);
        assert!(s.pods.enabled);
        assert_eq!(s.pods.namespace, "pods");
        assert_eq!(s.mint_timeout, Duration::from_millis(1500));
        assert!(summary(&s).contains("default=42"));
    }

    #[test]
    fn errors_name_the_key_or_the_variable() {
        let unknown = file(".json", r#"{"mints":["http://a:1"],"colour":"red"}"#);
        let err = load(Some(unknown.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");

        let bad_tier = file(
            ".json",
            r#"{"mints":["http://a:1"],"tiers":[{"id":"x","path_prefix":"nope","amount":1}]}"#,
        );
        let err = load(Some(bad_tier.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tiers[0].path_prefix"), "{err}");

        let ok = file(".json", r#"{"mints":["http://a:1"]}"#);
        let err = load(Some(ok.path()), &env(&[("DEFAULT_PAYMENT_AMOUNT", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DEFAULT_PAYMENT_AMOUNT"), "{err}");

        let err = load(None, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("mints"), "{err}");

        let garbage = file(".conf", "{{{ not: [a config");
        let err = load(Some(garbage.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither JSON nor YAML"), "{err}");
    }
}
