//! Leases: time that a tier sells instead of single requests, the keys that
//! sign their passes, and the arithmetic of buying and extending one.
//!
//! ```json
//! { "id": "compute", "path_prefix": "/compute", "amount": 1000,
//!   "lease": { "seconds": 3600 } }
//! ```
//! with, at the top level, `"pass_keys": [{"id": "k1", "secret": "<base64>"}]`
//! or `{"id": "k1", "secret_env": "PAYGRESS_PASS_KEY_K1"}` (the secret read
//! from the environment of the process or the wasm VM, so that it need not
//! sit in a resource that every tenant can read). The first key signs, every
//! key verifies.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::{invalid, ConfigError};
use crate::pass::{PassKey, MIN_KEY_LEN};

/// The longest lease one payment of a tier's price may buy: ten years.
pub const MAX_LEASE_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A tier's lease: paying `amount` buys `seconds` of access to its paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseTerms {
    pub seconds: u64,
}

/// A pass key as configured: an id and the secret, inline (base64) or named
/// by an environment variable.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassKeyConfig {
    pub id: String,
    /// The secret, base64 (standard or URL-safe, padded or not), 32 bytes
    /// or more once decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The name of an environment variable that holds the secret (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

impl core::fmt::Debug for PassKeyConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the secret.
        f.debug_struct("PassKeyConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

/// Reads [`LeaseTerms`] as its derive does (for
/// [`Config::from_json_without_serde`](crate::Config::from_json_without_serde)).
pub(crate) fn read_terms(r: &mut crate::json::Reader<'_>) -> crate::json::Result<LeaseTerms> {
    const FIELDS: &[&[&str]] = &[&["seconds"]];
    let mut seconds = 0;
    let seen = r.structure("LeaseTerms", FIELDS, true, |r, _| {
        seconds = r.u64()?;
        Ok(())
    })?;
    seen.require(0, "seconds", "LeaseTerms", FIELDS.len())?;
    Ok(LeaseTerms { seconds })
}

/// Reads a [`PassKeyConfig`] as its derive does.
pub(crate) fn read_pass_key(r: &mut crate::json::Reader<'_>) -> crate::json::Result<PassKeyConfig> {
    const FIELDS: &[&[&str]] = &[&["id"], &["secret"], &["secret_env"]];
    let mut k = PassKeyConfig {
        id: String::new(),
        secret: None,
        secret_env: None,
    };
    let seen = r.structure("PassKeyConfig", FIELDS, true, |r, i| {
        match i {
            0 => k.id = r.string()?,
            1 => k.secret = r.option(crate::json::Reader::string)?,
            _ => k.secret_env = r.option(crate::json::Reader::string)?,
        }
        Ok(())
    })?;
    seen.require(0, "id", "PassKeyConfig", FIELDS.len())?;
    Ok(k)
}

/// Reads environment variables for `secret_env` (the filter passes the wasm
/// VM's environment, the verifier its process's; tests a table).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Validates the configured keys and decodes their secrets.
pub fn compile_keys(
    keys: &[PassKeyConfig],
    env: EnvLookup<'_>,
) -> Result<Vec<PassKey>, ConfigError> {
    let mut compiled: Vec<PassKey> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let id_key = format!("pass_keys[{i}].id");
        if compiled.iter().any(|c| c.id == k.id) {
            return Err(invalid(id_key, &k.id, "duplicate key id"));
        }
        let (key, encoded) = match (&k.secret, &k.secret_env) {
            (Some(secret), None) => (format!("pass_keys[{i}].secret"), secret.clone()),
            (None, Some(var)) => {
                let key = format!("pass_keys[{i}].secret_env");
                let value = env(var)
                    .ok_or_else(|| invalid(&key, var, "the environment variable is not set"))?;
                (key, value)
            }
            _ => {
                return Err(invalid(
                    format!("pass_keys[{i}]"),
                    &k.id,
                    "give exactly one of `secret` (base64) and `secret_env`",
                ))
            }
        };
        // What an operator sees of a secret in an error: its length only.
        let shown = format!("<{} characters>", encoded.trim().len());
        let secret = decode_secret(&encoded)
            .ok_or_else(|| invalid(&key, &shown, "must be base64 (standard or URL-safe)"))?;
        if secret.len() < MIN_KEY_LEN {
            return Err(invalid(
                &key,
                &shown,
                format!(
                    "decodes to {} bytes; at least {MIN_KEY_LEN} are required",
                    secret.len()
                ),
            ));
        }
        let pass_key = PassKey::new(&k.id, &secret).ok_or_else(|| {
            invalid(
                &id_key,
                &k.id,
                "must be 1-32 ASCII letters, digits, '-' or '_'",
            )
        })?;
        compiled.push(pass_key);
    }
    Ok(compiled)
}

fn decode_secret(encoded: &str) -> Option<Vec<u8>> {
    let text = encoded.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Validates a tier's lease terms.
pub fn validate_terms(key: &str, terms: &LeaseTerms) -> Result<u64, ConfigError> {
    if terms.seconds == 0 || terms.seconds > MAX_LEASE_SECONDS {
        return Err(invalid(
            key,
            terms.seconds,
            format!("must be between 1 and {MAX_LEASE_SECONDS} (ten years)"),
        ));
    }
    Ok(terms.seconds)
}

/// The seconds that `paid` buys on a tier that sells `seconds` for
/// `amount`: `paid × seconds ÷ amount`, rounded down (exact, in 128 bits;
/// at most `u64::MAX`).
pub fn bought_seconds(paid: u64, seconds: u64, amount: u64) -> u64 {
    if amount == 0 {
        return 0;
    }
    let exact = u128::from(paid) * u128::from(seconds) / u128::from(amount);
    u64::try_from(exact).unwrap_or(u64::MAX)
}

/// A lease's new expiry once `bought` seconds are added at `now`: from
/// `max(now, expires_at)`, so that time left is never lost and time past is
/// never sold twice.
pub fn extended(now: u64, expires_at: Option<u64>, bought: u64) -> u64 {
    now.max(expires_at.unwrap_or(0)).saturating_add(bought)
}

/// A Unix time as RFC 3339 in UTC (`2026-11-30T13:09:13Z`), for the pod
/// annotation and for people. Times past the year 9999 are shown as its end.
pub fn rfc3339(secs: u64) -> String {
    const MAX: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = secs.min(MAX);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant), for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Unix time of an RFC 3339 UTC time as [`rfc3339`] writes it
/// (`2026-11-30T13:09:13Z`); `None` for any other shape.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b.get(19) != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        let part = text.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|(i, c)| b.get(*i) != Some(c)) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days from civil (H. Hinnant), the inverse of `rfc3339`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    // A day that does not exist (30 February) does not round-trip.
    (rfc3339(secs) == text).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: Option<&str>, env: Option<&str>) -> PassKeyConfig {
        PassKeyConfig {
            id: id.into(),
            secret: secret.map(str::to_string),
            secret_env: env.map(str::to_string),
        }
    }

    const SECRET_32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn keys_come_inline_or_from_the_environment() {
        let env = |name: &str| (name == "K2").then(|| format!(" {SECRET_32}\n"));
        let keys = compile_keys(
            &[
                key("k1", Some(SECRET_32), None),
                key("k2", None, Some("K2")),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].id, "k1");
        // The same secret, read either way, signs alike.
        let claims = crate::pass::Claims {
            lease: "l".into(),
            tier: "t".into(),
            expires_at: 9,
            payer: "u".into(),
            pod: None,
        };
        let a = crate::pass::sign(&claims, &keys[0]);
        let b = crate::pass::sign(&claims, &keys[1]);
        assert_eq!(crate::pass::verify(&a, &keys, 0), Ok(claims.clone()));
        assert_eq!(crate::pass::verify(&b, &keys, 0), Ok(claims.clone()));
        // The environment's secret is the inline one: a pass made with it
        // under the id k1 is the inline key's pass.
        let k2_secret = PassKeyConfig {
            id: "k1".into(),
            ..key("", None, Some("K2"))
        };
        let as_k1 = compile_keys(&[k2_secret], &env).unwrap();
        assert_eq!(crate::pass::sign(&claims, &as_k1[0]), a);
        // URL-safe, unpadded.
        let url = SECRET_32
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        assert!(compile_keys(&[key("k", Some(&url), None)], &env).is_ok());
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn bad_keys_are_refused_with_the_key_named_and_the_secret_hidden() {
        let env = |_: &str| None;
        let err = |keys: &[PassKeyConfig]| compile_keys(keys, &env).unwrap_err().to_string();
        let short = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="; // 31 bytes
        let e = err(&[key("k1", Some(short), None)]);
        assert!(
            e.contains("pass_keys[0].secret") && e.contains("31 bytes"),
            "{e}"
        );
        assert!(!e.contains("AAEC"), "the secret leaked: {e}");
        let e = err(&[key("k1", Some("not base64!"), None)]);
        assert!(e.contains("pass_keys[0].secret"), "{e}");
        let e = err(&[key("k1", None, Some("NOPE"))]);
        assert!(
            e.contains("pass_keys[0].secret_env") && e.contains("NOPE"),
            "{e}"
        );
        let e = err(&[key("k1", None, None)]);
        assert!(
            e.contains("pass_keys[0]") && e.contains("exactly one"),
            "{e}"
        );
        let e = err(&[key("k1", Some(SECRET_32), Some("X"))]);
        assert!(e.contains("exactly one"), "{e}");
        let e = err(&[
            key("k1", Some(SECRET_32), None),
            key("k1", Some(SECRET_32), None),
        ]);
        assert!(
            e.contains("pass_keys[1].id") && e.contains("duplicate"),
            "{e}"
        );
        let e = err(&[key("k 1", Some(SECRET_32), None)]);
        assert!(e.contains("pass_keys[0].id"), "{e}");
        assert!(!format!("{:?}", key("k1", Some(SECRET_32), None)).contains("AAEC"));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn unix_times_read_as_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_051_353), "2026-11-30T15:09:13Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        for secs in [
            0,
            951_782_400,
            1_796_051_353,
            4_102_444_799,
            253_402_300_799,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{secs}");
        }
        for bad in [
            "",
            "2026-11-30T15:09:13",
            "2026-11-30 15:09:13Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-11-30T15:09:13+01:00",
            "+026-11-30T15:09:13Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn time_is_bought_in_proportion_and_extended_from_the_later_of_now_and_expiry() {
        assert_eq!(bought_seconds(1000, 3600, 1000), 3600);
        assert_eq!(bought_seconds(1500, 3600, 1000), 5400);
        // Rounded down, never up.
        assert_eq!(bought_seconds(1, 3600, 7), 514);
        assert_eq!(bought_seconds(0, 3600, 7), 0);
        assert_eq!(
            bought_seconds(1 << 53, MAX_LEASE_SECONDS, 1 << 20),
            ((1u128 << 33) * u128::from(MAX_LEASE_SECONDS)) as u64
        );
        assert_eq!(bought_seconds(1 << 53, MAX_LEASE_SECONDS, 1), u64::MAX);
        assert_eq!(bought_seconds(u64::MAX, u64::MAX, 1), u64::MAX);
        assert_eq!(bought_seconds(5, 5, 0), 0);
        // Time left is kept; time past is not sold again.
        assert_eq!(extended(100, Some(160), 60), 220);
        assert_eq!(extended(100, Some(40), 60), 160);
        assert_eq!(extended(100, None, 60), 160);
        assert_eq!(extended(u64::MAX - 1, None, 60), u64::MAX);
        assert!(validate_terms("tiers[0].lease.seconds", &LeaseTerms { seconds: 0 }).is_err());
        assert!(validate_terms(
            "k",
            &LeaseTerms {
                seconds: MAX_LEASE_SECONDS + 1
            }
        )
        .is_err());
        assert_eq!(validate_terms("k", &LeaseTerms { seconds: 60 }), Ok(60));
    }
}
