//! The configuration schema (shared by the filter's plugin configuration and
//! the verifier's `--config` file), its validation and its compiled form.
//!
//! ```json
//! {
//!   "unit": "sat",
//!   "mints": ["http://127.0.0.1:3338"],
//!   "default_amount": 1000,
//!   "free_paths": ["/free", "/healthz"],
//!   "tiers": [ { "id": "premium", "path_prefix": "/premium", "amount": 1000 } ],
//!   "verifier": { "cluster": "paygress-verifier", "authority": "paygress-verifier",
//!                 "timeout_ms": 3000 },
//!   "failure_mode": "deny"
//! }
//! ```
//!
//! A tier may sell time instead of single requests (`"lease": {"seconds":
//! 3600}`, with `pass_keys` at the top level; see [`crate::lease`]) and come
//! with a pod (`"pod"`, read by the verifier only; the filter accepts and
//! ignores it).
//!
//! Unknown keys are an error that names the key. Every other error names the
//! key (as a path such as `tiers[1].path_prefix`) and the offending value.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use std::borrow::Cow;

use crate::challenge::Challenge;
use crate::lease::{self, EnvLookup, LeaseTerms, PassKeyConfig};
use crate::pass::PassKey;
use crate::pricing::{Price, PriceTier};
use crate::{json, mint_url, path, MAX_AMOUNT};

/// The default price of a paid path that no tier matches.
pub const DEFAULT_AMOUNT: u64 = 1000;
/// The default unit.
pub const DEFAULT_UNIT: &str = "sat";

/// The configuration, as written by an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_unit")]
    pub unit: String,
    pub mints: Vec<String>,
    #[serde(default = "default_amount")]
    pub default_amount: u64,
    #[serde(default)]
    pub free_paths: Vec<String>,
    #[serde(default)]
    pub tiers: Vec<Tier>,
    #[serde(default)]
    pub verifier: VerifierRef,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// The keys that sign and check passes (the first signs, all verify);
    /// required when a tier has a `lease`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_keys: Vec<PassKeyConfig>,
}

/// A price tier: every path under `path_prefix` costs `amount`, or, with
/// `lease`, `amount` buys `lease.seconds` of access to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub id: String,
    pub path_prefix: String,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseTerms>,
    /// The pod a lease of this tier gets (the verifier's business).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<serde_json::Value>,
}

/// Where the filter finds the verifier (read by the filter only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierRef {
    /// The Envoy cluster of the verifier.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The `:authority` of the callout.
    #[serde(default = "default_cluster")]
    pub authority: String,
    /// The callout's timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The verifier's auth path.
    #[serde(default = "default_auth_path")]
    pub path: String,
}

impl Default for VerifierRef {
    fn default() -> Self {
        VerifierRef {
            cluster: default_cluster(),
            authority: default_cluster(),
            timeout_ms: default_timeout_ms(),
            path: default_auth_path(),
        }
    }
}

/// What the filter does when the verifier cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Answer 503 `verifier_unavailable` (the default: fail closed).
    #[default]
    Deny,
    /// Let the request through unpaid, and count it.
    Allow,
}

fn default_unit() -> String {
    DEFAULT_UNIT.to_string()
}
fn default_amount() -> u64 {
    DEFAULT_AMOUNT
}
fn default_cluster() -> String {
    "paygress-verifier".to_string()
}
fn default_timeout_ms() -> u64 {
    3000
}
fn default_auth_path() -> String {
    "/auth".to_string()
}

/// The longest callout timeout accepted.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The document is not JSON of the schema (an unknown key, a wrong type,
    /// a missing required key); serde's message names the key.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value broke a rule.
    #[error("invalid config: `{key}` = {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// What a JSON value is, in words (for an error).
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub(crate) fn invalid(
    key: impl Into<String>,
    value: impl core::fmt::Debug,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

impl Config {
    /// Parses a JSON document (no validation beyond the schema's shape).
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// [`Config::from_json`] without serde: the same schema, the same
    /// documents accepted and refused, and serde's words in a
    /// [`ConfigError::Parse`] (without serde_json's position for errors
    /// of a value's type or a field). The filter parses its plugin
    /// configuration with it, so that its `.wasm` carries no serde_json.
    pub fn from_json_without_serde(text: &str) -> Result<Config, ConfigError> {
        let mut r = json::Reader::new(text.as_bytes());
        let config = read_config(&mut r).and_then(|c| r.end().map(|()| c));
        config.map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Parses an already-parsed JSON value (for YAML front ends).
    pub fn from_value(value: serde_json::Value) -> Result<Config, ConfigError> {
        serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Validates and compiles the config into its matcher, with no
    /// environment (a `pass_keys[].secret_env` is refused as unset).
    pub fn compile(&self) -> Result<CompiledConfig, ConfigError> {
        self.compile_with_env(&|_| None)
    }

    /// Validates and compiles the config, reading `pass_keys[].secret_env`
    /// through `env`.
    pub fn compile_with_env(&self, env: EnvLookup<'_>) -> Result<CompiledConfig, ConfigError> {
        validate_unit(&self.unit)?;
        let mints = self.compile_mints()?;
        validate_amount("default_amount", self.default_amount)?;

        let mut free_paths: Vec<String> = Vec::with_capacity(self.free_paths.len());
        for (i, p) in self.free_paths.iter().enumerate() {
            let key = format!("free_paths[{i}]");
            let norm = validate_prefix(&key, p)?;
            if free_paths.contains(&norm) {
                return Err(invalid(key, p, "duplicate free path"));
            }
            free_paths.push(norm);
        }

        let mut tiers: Vec<PriceTier> = Vec::with_capacity(self.tiers.len() + 1);
        for (i, t) in self.tiers.iter().enumerate() {
            validate_tier_id(&format!("tiers[{i}].id"), &t.id)?;
            if tiers.iter().any(|c| c.id.as_deref() == Some(t.id.as_str())) {
                return Err(invalid(
                    format!("tiers[{i}].id"),
                    &t.id,
                    "duplicate tier id",
                ));
            }
            let key = format!("tiers[{i}].path_prefix");
            let prefix = validate_prefix(&key, &t.path_prefix)?;
            if let Some(other) = tiers.iter().find(|c| c.prefix == prefix) {
                let other = other.id.as_deref().unwrap_or_default();
                return Err(invalid(
                    key,
                    &t.path_prefix,
                    format!("same path prefix as tier {other:?}"),
                ));
            }
            if free_paths.contains(&prefix) {
                return Err(invalid(
                    key,
                    &t.path_prefix,
                    "also listed in free_paths: a path cannot be both free and paid",
                ));
            }
            validate_amount(&format!("tiers[{i}].amount"), t.amount)?;
            let lease_seconds = match &t.lease {
                Some(terms) => Some(lease::validate_terms(
                    &format!("tiers[{i}].lease.seconds"),
                    terms,
                )?),
                None => None,
            };
            if let Some(pod) = &t.pod {
                if t.lease.is_none() {
                    return Err(invalid(
                        format!("tiers[{i}].pod"),
                        &t.id,
                        "a pod is provisioned for a lease: give the tier a `lease` too",
                    ));
                }
                if !pod.is_object() {
                    // The value's kind, not the value: its `Debug` would
                    // bring float formatting into the filter's `.wasm`.
                    return Err(invalid(
                        format!("tiers[{i}].pod"),
                        json_kind(pod),
                        "must be an object",
                    ));
                }
            }
            let challenge =
                Challenge::new(t.amount, Some(&t.id), lease_seconds, &self.unit, &mints)
                    .ok_or_else(|| {
                        invalid(
                            format!("tiers[{i}].amount"),
                            t.amount,
                            "cannot be encoded in a NUT-18 payment request",
                        )
                    })?;
            tiers.push(PriceTier {
                index: i + 1,
                id: Some(t.id.clone()),
                prefix,
                amount: t.amount,
                lease_seconds,
                challenge,
            });
        }
        // Longest prefix first, so the first match is the most specific one.
        tiers.sort_by_key(|t| core::cmp::Reverse(t.prefix.len()));

        let v = &self.verifier;
        if v.cluster.trim().is_empty() {
            return Err(invalid("verifier.cluster", &v.cluster, "must not be empty"));
        }
        if v.authority.trim().is_empty() || v.authority.chars().any(char::is_whitespace) {
            return Err(invalid(
                "verifier.authority",
                &v.authority,
                "must be a host name without spaces",
            ));
        }
        if v.timeout_ms == 0 || v.timeout_ms > MAX_TIMEOUT_MS {
            return Err(invalid(
                "verifier.timeout_ms",
                v.timeout_ms,
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        if !v.path.starts_with('/') || v.path.contains(['?', '#', ' ']) {
            return Err(invalid(
                "verifier.path",
                &v.path,
                "must be a path starting with /",
            ));
        }

        let pass_keys = lease::compile_keys(&self.pass_keys, env)?;
        if let Some(i) = self.tiers.iter().position(|t| t.lease.is_some()) {
            if pass_keys.is_empty() {
                return Err(invalid(
                    "pass_keys",
                    &self.pass_keys,
                    format!("at least one key is required: tiers[{i}] sells a lease"),
                ));
            }
        }

        let default_challenge = Challenge::new(self.default_amount, None, None, &self.unit, &mints)
            .ok_or_else(|| {
                invalid(
                    "default_amount",
                    self.default_amount,
                    "cannot be encoded in a NUT-18 payment request",
                )
            })?;
        Ok(CompiledConfig {
            unit: self.unit.clone(),
            mints,
            free_paths,
            tiers,
            default_tier: PriceTier {
                index: 0,
                id: None,
                prefix: "/".to_string(),
                amount: self.default_amount,
                lease_seconds: None,
                challenge: default_challenge,
            },
            verifier: self.verifier.clone(),
            failure_mode: self.failure_mode,
            pass_keys,
        })
    }

    fn compile_mints(&self) -> Result<Vec<String>, ConfigError> {
        if self.mints.is_empty() {
            return Err(invalid(
                "mints",
                &self.mints,
                "at least one accepted mint is required",
            ));
        }
        let mut mints: Vec<String> = Vec::with_capacity(self.mints.len());
        for (i, m) in self.mints.iter().enumerate() {
            let key = format!("mints[{i}]");
            let norm = mint_url::normalize(m).map_err(|e| invalid(&key, m, e.to_string()))?;
            if mints.contains(&norm) {
                return Err(invalid(key, m, "duplicate mint (after normalisation)"));
            }
            mints.push(norm);
        }
        Ok(mints)
    }
}

// ---- reading a config without serde ------------------------------------------
//
// What the derives above read, field for field (`Config::from_json_without_serde`).

fn read_config(r: &mut json::Reader<'_>) -> json::Result<Config> {
    const FIELDS: &[&[&str]] = &[
        &["unit"],
        &["mints"],
        &["default_amount"],
        &["free_paths"],
        &["tiers"],
        &["verifier"],
        &["failure_mode"],
        &["pass_keys"],
    ];
    let mut c = Config {
        unit: default_unit(),
        mints: Vec::new(),
        default_amount: default_amount(),
        free_paths: Vec::new(),
        tiers: Vec::new(),
        verifier: VerifierRef::default(),
        failure_mode: FailureMode::default(),
        pass_keys: Vec::new(),
    };
    let seen = r.structure("Config", FIELDS, true, |r, i| {
        match i {
            0 => c.unit = r.string()?,
            1 => c.mints = read_strings(r)?,
            2 => c.default_amount = r.u64()?,
            3 => c.free_paths = read_strings(r)?,
            4 => r.seq(|r| {
                c.tiers.push(read_tier(r)?);
                Ok(())
            })?,
            5 => c.verifier = read_verifier(r)?,
            6 => {
                c.failure_mode = match r.unit_variant(&["deny", "allow"])? {
                    0 => FailureMode::Deny,
                    _ => FailureMode::Allow,
                }
            }
            _ => r.seq(|r| {
                c.pass_keys.push(lease::read_pass_key(r)?);
                Ok(())
            })?,
        }
        Ok(())
    })?;
    seen.require(1, "mints", "Config", FIELDS.len())?;
    Ok(c)
}

fn read_strings(r: &mut json::Reader<'_>) -> json::Result<Vec<String>> {
    let mut out = Vec::new();
    r.seq(|r| {
        out.push(r.string()?);
        Ok(())
    })?;
    Ok(out)
}

fn read_tier(r: &mut json::Reader<'_>) -> json::Result<Tier> {
    const FIELDS: &[&[&str]] = &[&["id"], &["path_prefix"], &["amount"], &["lease"], &["pod"]];
    let mut t = Tier {
        id: String::new(),
        path_prefix: String::new(),
        amount: 0,
        lease: None,
        pod: None,
    };
    let seen = r.structure("Tier", FIELDS, true, |r, i| {
        match i {
            0 => t.id = r.string()?,
            1 => t.path_prefix = r.string()?,
            2 => t.amount = r.u64()?,
            3 => t.lease = r.option(lease::read_terms)?,
            _ => t.pod = r.option(json::Reader::json_value)?,
        }
        Ok(())
    })?;
    for (i, name) in ["id", "path_prefix", "amount"].into_iter().enumerate() {
        seen.require(i, name, "Tier", FIELDS.len())?;
    }
    Ok(t)
}

fn read_verifier(r: &mut json::Reader<'_>) -> json::Result<VerifierRef> {
    const FIELDS: &[&[&str]] = &[&["cluster"], &["authority"], &["timeout_ms"], &["path"]];
    let mut v = VerifierRef::default();
    r.structure("VerifierRef", FIELDS, true, |r, i| {
        match i {
            0 => v.cluster = r.string()?,
            1 => v.authority = r.string()?,
            2 => v.timeout_ms = r.u64()?,
            _ => v.path = r.string()?,
        }
        Ok(())
    })?;
    Ok(v)
}

fn validate_unit(unit: &str) -> Result<(), ConfigError> {
    let ok = !unit.is_empty()
        && unit.len() <= 32
        && unit
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "unit",
            unit,
            "must be 1-32 lower-case ASCII letters, digits or _ (e.g. \"sat\")",
        ))
    }
}

fn validate_amount(key: &str, amount: u64) -> Result<(), ConfigError> {
    if amount == 0 || amount > MAX_AMOUNT {
        Err(invalid(
            key,
            amount,
            format!("must be between 1 and {MAX_AMOUNT} (2^53)"),
        ))
    } else {
        Ok(())
    }
}

fn validate_tier_id(key: &str, id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            id,
            "must be 1-63 ASCII letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A prefix must start with `/` and already be in normal form (a trailing
/// `/` is tolerated): no `.`/`..`/empty segments, no query, no escapes.
fn validate_prefix(key: &str, prefix: &str) -> Result<String, ConfigError> {
    if !prefix.starts_with('/') {
        return Err(invalid(key, prefix, "must start with /"));
    }
    if prefix.contains(['?', '#', '%', '\\'])
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            key,
            prefix,
            "must be a plain path: no query, fragment, escapes, backslashes or spaces",
        ));
    }
    let norm = path::normalize(prefix);
    let expected = if prefix == "/" {
        "/"
    } else {
        prefix.trim_end_matches('/')
    };
    if norm != expected {
        return Err(invalid(
            key,
            prefix,
            format!("must be in normal form (no empty, . or .. segments): did you mean {norm:?}?"),
        ));
    }
    Ok(norm)
}

/// A validated config, compiled for matching. Built once (in `on_configure`
/// or at start) and then only read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledConfig {
    /// The unit every price is in.
    pub unit: String,
    /// The accepted mints, normalised.
    pub mints: Vec<String>,
    free_paths: Vec<String>,
    /// Longest prefix first.
    tiers: Vec<PriceTier>,
    default_tier: PriceTier,
    pub verifier: VerifierRef,
    pub failure_mode: FailureMode,
    pass_keys: Vec<PassKey>,
}

impl CompiledConfig {
    /// Parses, validates and compiles a JSON config.
    pub fn from_json(text: &str) -> Result<CompiledConfig, ConfigError> {
        Config::from_json(text)?.compile()
    }

    /// The price of a request target (origin-form or absolute), the highest
    /// among its readings (see [`path`]): as sent, decoded, resolved (with
    /// and without `;` parameters), each also ASCII case-folded. It is free
    /// only when every reading is free. A target whose authority cannot be
    /// read one way is refused.
    pub fn try_price(&self, target: &str) -> Result<Price<'_>, path::TargetError> {
        let mut best = Price::Free;
        self.each_reading_price(target, |candidate| {
            if candidate.amount() > best.amount() {
                best = candidate;
            }
        })?;
        Ok(best)
    }

    /// Whether a pass for the tier `tier_id` opens a request target: every
    /// reading of it is free or under that tier, and at least one is under
    /// it. (A reading under another tier, however priced, keeps it shut: a
    /// pass opens its own tier's paths only.)
    pub fn pass_opens(&self, target: &str, tier_id: &str) -> bool {
        let (mut paid, mut other) = (false, false);
        let read = self.each_reading_price(target, |price| {
            if let Price::Paid(tier) = price {
                if tier.id.as_deref() == Some(tier_id) && tier.lease_seconds.is_some() {
                    paid = true;
                } else {
                    other = true;
                }
            }
        });
        read.is_ok() && paid && !other
    }

    /// Calls `f` with the price of every reading of a target (see
    /// [`path`]): as sent, decoded, resolved (with and without `;`
    /// parameters), each also ASCII case-folded; a plain path has one.
    fn each_reading_price<'s>(
        &'s self,
        target: &str,
        mut f: impl FnMut(Price<'s>),
    ) -> Result<(), path::TargetError> {
        let raw = path::raw_path(target)?;
        if path::is_plain(raw) {
            f(self.price_of_path(raw, false));
            return Ok(());
        }
        // The resolved reading first: of equal prices, its tier names the
        // answer.
        let resolved = path::normalize(raw);
        let mut consider = |reading: &str| {
            for fold in [false, true] {
                if fold && !path::has_upper(reading) {
                    continue;
                }
                f(self.price_of_path(reading, fold));
            }
        };
        consider(&resolved);
        consider(raw);
        let decoded = path::decoded_path(raw);
        consider(&decoded);
        if decoded.contains('\\') {
            // IIS and Windows servers read `\` as `/` without resolving `..`.
            consider(&decoded.replace('\\', "/"));
        }
        if path::has_params(raw) {
            consider(&path::normalize_without_params(raw));
        }
        Ok(())
    }

    /// [`CompiledConfig::try_price`], for a target already known to be
    /// well-formed: a bad authority is priced as the highest tier, never as
    /// free.
    pub fn price(&self, target: &str) -> Price<'_> {
        match self.try_price(target) {
            Ok(price) => price,
            Err(_) => self.highest_price(),
        }
    }

    /// The price tier with this [`PriceTier::index`]; the default tier for
    /// an index out of range.
    pub fn tier(&self, index: usize) -> &PriceTier {
        self.tiers
            .iter()
            .find(|t| t.index == index)
            .unwrap_or(&self.default_tier)
    }

    /// The 402 answer for `amount`: the tier's own when the amount is its
    /// price, else encoded now (a caller's `X-Required-Amount` raised it).
    pub fn challenge_for<'a>(
        &self,
        tier: &'a PriceTier,
        amount: u64,
    ) -> Option<Cow<'a, Challenge>> {
        if amount == tier.amount {
            return Some(Cow::Borrowed(&tier.challenge));
        }
        Challenge::without_page(amount, None, None, &self.unit, &self.mints).map(Cow::Owned)
    }

    /// The browser's 402 page for `amount`: the tier's own, built with the
    /// config, when the amount is its price; else (a caller's
    /// `X-Required-Amount` raised it) built now, for the default terms.
    /// `None` only when no payment request can carry the amount.
    pub fn payment_page<'a>(&self, tier: &'a PriceTier, amount: u64) -> Option<Cow<'a, str>> {
        if amount == tier.amount {
            if let Some(html) = &tier.challenge.html {
                return Some(Cow::Borrowed(html.as_str()));
            }
        }
        let challenge = Challenge::without_page(amount, None, None, &self.unit, &self.mints)?;
        Some(Cow::Owned(crate::browser::payment_page(
            amount,
            &self.unit,
            &self.mints,
            None,
            None,
            &challenge.payment_request,
        )))
    }

    /// The most expensive price tier.
    fn highest_price(&self) -> Price<'_> {
        let tier = self.tiers.iter().fold(&self.default_tier, |best, t| {
            if t.amount > best.amount {
                t
            } else {
                best
            }
        });
        Price::Paid(tier)
    }

    /// The price of one reading of a path; `fold` compares ASCII letters
    /// case-insensitively.
    fn price_of_path(&self, path: &str, fold: bool) -> Price<'_> {
        let under = |prefix: &str| {
            if fold {
                path::has_prefix_folded(path, prefix)
            } else {
                path::has_prefix(path, prefix)
            }
        };
        if self.free_paths.iter().any(|p| under(p)) {
            return Price::Free;
        }
        let tier = self
            .tiers
            .iter()
            .find(|t| under(&t.prefix))
            .unwrap_or(&self.default_tier);
        Price::Paid(tier)
    }

    /// Whether a (normalised) mint URL is accepted.
    pub fn accepts_mint(&self, mint: &str) -> bool {
        self.mints.iter().any(|m| m == mint)
    }

    /// Every price tier, the default (index 0) first, then the configured
    /// tiers in the order of the config (index 1..).
    pub fn price_tiers(&self) -> Vec<&PriceTier> {
        let mut all: Vec<&PriceTier> = Vec::with_capacity(self.tiers.len() + 1);
        all.push(&self.default_tier);
        all.extend(self.tiers.iter());
        all.sort_by_key(|t| t.index);
        all
    }

    /// The number of price tiers, the default one included.
    pub fn tier_count(&self) -> usize {
        self.tiers.len() + 1
    }

    /// The default price (paths that no tier matches).
    pub fn default_amount(&self) -> u64 {
        self.default_tier.amount
    }

    /// Normalised free path prefixes.
    pub fn free_paths(&self) -> &[String] {
        &self.free_paths
    }

    /// The keys that sign (the first) and check (all) passes; empty when
    /// no tier sells a lease and none were configured.
    pub fn pass_keys(&self) -> &[PassKey] {
        &self.pass_keys
    }

    /// The price tier with this id.
    pub fn tier_by_id(&self, id: &str) -> Option<&PriceTier> {
        self.tiers.iter().find(|t| t.id.as_deref() == Some(id))
    }
}
