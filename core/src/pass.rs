//! Passes: what a client that paid for time (a lease) presents instead of a
//! token, checked in the proxy with no callout and by the verifier with no
//! mint contact.
//!
//! A pass is a compact, versioned, HMAC-SHA256-signed value:
//!
//! ```text
//! p1.<key id>.<claims, base64url>.<signature, base64url>
//! ```
//!
//! The claims name the lease, the tier, the expiry (Unix seconds) and the
//! payer id; the signature is HMAC-SHA256 over `p1.<key id>.<claims>` with
//! the key the id names. Keys rotate: the first key signs, every key
//! verifies. Signatures are compared in constant time.
//!
//! This module is pure: no clock (the caller passes `now`), no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::hmac::hmac_sha256;
use crate::json;

/// The version prefix of a pass.
pub const VERSION: &str = "p1";
/// The longest pass read, in bytes (a pass is about 200).
pub const MAX_PASS_LEN: usize = 1024;
/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// A key that signs or verifies passes.
#[derive(Clone, PartialEq, Eq)]
pub struct PassKey {
    /// Its id, named in every pass it signs: 1-32 ASCII letters, digits,
    /// `-` or `_`.
    pub id: String,
    secret: Vec<u8>,
}

impl core::fmt::Debug for PassKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the secret.
        f.debug_struct("PassKey").field("id", &self.id).finish()
    }
}

impl PassKey {
    /// A key from its id and secret; `None` for an id out of shape or a
    /// secret shorter than [`MIN_KEY_LEN`].
    pub fn new(id: &str, secret: &[u8]) -> Option<PassKey> {
        let id_ok = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (id_ok && secret.len() >= MIN_KEY_LEN).then(|| PassKey {
            id: id.to_string(),
            secret: secret.to_vec(),
        })
    }
}

/// What a pass says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The lease id.
    #[serde(rename = "l")]
    pub lease: String,
    /// The tier whose paths the pass opens.
    #[serde(rename = "t")]
    pub tier: String,
    /// When the lease ends, in Unix seconds.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// The pseudonymous payer id.
    #[serde(rename = "u")]
    pub payer: String,
    /// The lease's pod, where one was provisioned.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Why a pass was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassError {
    /// Not a pass of this version, or too long, or its parts do not decode.
    Malformed,
    /// It names a key that is not (or no longer) configured.
    UnknownKey,
    /// Its signature does not verify: forged or altered.
    BadSignature,
    /// Genuine, but its lease has ended (the claims, for a top-up).
    Expired(Claims),
}

impl core::fmt::Display for PassError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PassError::Malformed => f.write_str("the pass cannot be read"),
            PassError::UnknownKey => f.write_str("the pass names an unknown key"),
            PassError::BadSignature => f.write_str("the pass's signature does not verify"),
            PassError::Expired(_) => f.write_str("the pass has expired"),
        }
    }
}

/// Signs `claims` with `key`: the pass to hand to the client.
pub fn sign(claims: &Claims, key: &PassKey) -> String {
    let signed = format!(
        "{VERSION}.{}.{}",
        key.id,
        URL_SAFE_NO_PAD.encode(claims.to_json())
    );
    let mac = hmac_sha256(&key.secret, signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// The parts of a pass, split but not checked.
struct Parts<'a> {
    /// `p1.<key id>.<claims>`: what the signature covers.
    signed: &'a str,
    key_id: &'a str,
    claims: &'a str,
    mac: &'a str,
}

fn split(pass: &str) -> Result<Parts<'_>, PassError> {
    if pass.len() > MAX_PASS_LEN {
        return Err(PassError::Malformed);
    }
    let mut parts = pass.split('.');
    let (Some(version), Some(key_id), Some(claims), Some(mac), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PassError::Malformed);
    };
    if version != VERSION {
        return Err(PassError::Malformed);
    }
    let signed_len = version.len() + key_id.len() + claims.len() + 2;
    let signed = pass.get(..signed_len).ok_or(PassError::Malformed)?;
    Ok(Parts {
        signed,
        key_id,
        claims,
        mac,
    })
}

fn decode_claims(claims: &str) -> Result<Claims, PassError> {
    let json = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| PassError::Malformed)?;
    Claims::from_json(&json).map_err(|_| PassError::Malformed)
}

impl Claims {
    /// The claims as JSON, as serde_json writes the derived `Serialize`:
    /// `{"l":…,"t":…,"e":…,"u":…}`, then `"p"` when there is a pod.
    pub fn to_json(&self) -> String {
        let mut out =
            String::with_capacity(64 + self.lease.len() + self.tier.len() + self.payer.len());
        out.push_str("{\"l\":");
        json::write_str(&mut out, &self.lease);
        out.push_str(",\"t\":");
        json::write_str(&mut out, &self.tier);
        out.push_str(",\"e\":");
        out.push_str(&self.expires_at.to_string());
        out.push_str(",\"u\":");
        json::write_str(&mut out, &self.payer);
        if let Some(pod) = &self.pod {
            out.push_str(",\"p\":");
            json::write_str(&mut out, pod);
        }
        out.push('}');
        out
    }

    /// Reads claims as `serde_json::from_slice` reads the derived
    /// `Deserialize` (unknown keys refused, `p` optional).
    pub fn from_json(bytes: &[u8]) -> json::Result<Claims> {
        const FIELDS: &[&[&str]] = &[&["l"], &["t"], &["e"], &["u"], &["p"]];
        let mut r = json::Reader::new(bytes);
        let mut c = Claims {
            lease: String::new(),
            tier: String::new(),
            expires_at: 0,
            payer: String::new(),
            pod: None,
        };
        let seen = r.structure("Claims", FIELDS, true, |r, i| {
            match i {
                0 => c.lease = r.string()?,
                1 => c.tier = r.string()?,
                2 => c.expires_at = r.u64()?,
                3 => c.payer = r.string()?,
                _ => c.pod = r.option(json::Reader::string)?,
            }
            Ok(())
        })?;
        for (i, name) in ["l", "t", "e", "u"].into_iter().enumerate() {
            seen.require(i, name, "Claims", FIELDS.len())?;
        }
        r.end()?;
        Ok(c)
    }
}

/// Checks a pass against `keys` at time `now` (Unix seconds): its claims
/// when it is genuine and unexpired.
pub fn verify(pass: &str, keys: &[PassKey], now: u64) -> Result<Claims, PassError> {
    unexpired(verify_signature(pass, keys)?, now)
}

/// A genuine pass's claims at time `now`: themselves while `expires_at` is
/// ahead, [`PassError::Expired`] from then on.
pub fn unexpired(claims: Claims, now: u64) -> Result<Claims, PassError> {
    if claims.expires_at <= now {
        return Err(PassError::Expired(claims));
    }
    Ok(claims)
}

/// Checks a pass's signature against `keys`, whatever its expiry: its
/// claims when it is genuine. [`verify`] is this and then [`unexpired`].
pub fn verify_signature(pass: &str, keys: &[PassKey]) -> Result<Claims, PassError> {
    let parts = split(pass.trim())?;
    let key = keys
        .iter()
        .find(|k| k.id == parts.key_id)
        .ok_or(PassError::UnknownKey)?;
    let mac = URL_SAFE_NO_PAD
        .decode(parts.mac)
        .map_err(|_| PassError::Malformed)?;
    if !constant_time_eq(&hmac_sha256(&key.secret, parts.signed.as_bytes()), &mac) {
        return Err(PassError::BadSignature);
    }
    decode_claims(parts.claims)
}

/// What a pass says and the id of the key it names, **without checking its
/// signature**: for showing a pass to its holder (`paygress lease show`),
/// never for letting a request through.
pub fn decode_unverified(pass: &str) -> Result<(String, Claims), PassError> {
    let parts = split(pass.trim())?;
    Ok((parts.key_id.to_string(), decode_claims(parts.claims)?))
}

/// Whether two byte strings are equal, in time that depends only on their
/// lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> PassKey {
        PassKey::new(id, &[byte; 32]).unwrap()
    }

    fn claims(expires_at: u64) -> Claims {
        Claims {
            lease: "3f2a9c0d1e4b5a6f".into(),
            tier: "compute".into(),
            expires_at,
            payer: "444537d0ea3bff3e".into(),
            pod: None,
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn a_signed_pass_verifies_until_it_expires() {
        let k1 = key("k1", 1);
        let pass = sign(&claims(1_000), &k1);
        assert!(pass.starts_with("p1.k1."), "{pass}");
        assert!(pass.len() < 200, "{}", pass.len());
        assert_eq!(
            verify(&pass, std::slice::from_ref(&k1), 999),
            Ok(claims(1_000))
        );
        assert_eq!(
            verify(&pass, std::slice::from_ref(&k1), 1_000),
            Err(PassError::Expired(claims(1_000)))
        );
        assert_eq!(verify(&format!(" {pass}\n"), &[k1], 10), Ok(claims(1_000)));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn keys_rotate_the_first_signs_and_all_verify() {
        let (old, new) = (key("old", 1), key("new", 2));
        let by_old = sign(&claims(50), &old);
        let by_new = sign(&claims(50), &new);
        let rotated = [new.clone(), old.clone()];
        assert_eq!(verify(&by_old, &rotated, 0), Ok(claims(50)));
        assert_eq!(verify(&by_new, &rotated, 0), Ok(claims(50)));
        // Once the old key is dropped, its passes stop working.
        assert_eq!(verify(&by_old, &[new], 0), Err(PassError::UnknownKey));
        // A key id cannot be borrowed: the other key's secret does not verify.
        let forged = by_old.replacen("p1.old.", "p1.new.", 1);
        assert_eq!(verify(&forged, &rotated, 0), Err(PassError::BadSignature));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn an_altered_or_malformed_pass_is_refused() {
        let k = key("k1", 7);
        let pass = sign(&claims(100), &k);
        let keys = [k.clone()];
        // Another tier or a later expiry, re-encoded with the old signature.
        let parts: Vec<&str> = pass.split('.').collect();
        for altered in [
            Claims {
                tier: "other".into(),
                ..claims(100)
            },
            claims(u64::MAX),
        ] {
            let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered).unwrap());
            let forged = format!("p1.k1.{body}.{}", parts[3]);
            assert_eq!(verify(&forged, &keys, 0), Err(PassError::BadSignature));
        }
        // Every single-character change of the signature.
        let sig_start = pass.rfind('.').unwrap() + 1;
        for i in sig_start..pass.len() {
            let mut bytes = pass.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != pass {
                assert!(verify(&changed, &keys, 0).is_err(), "{changed}");
            }
        }
        for bad in [
            "",
            "p1",
            "p1.k1",
            "p1.k1.e30",
            "p2.k1.e30.AAAA",
            "p1.k1.e30.AAAA.x",
            "p1.k1.!!.AAAA",
            &"p1.k1.".repeat(300),
        ] {
            assert!(
                matches!(
                    verify(bad, &keys, 0),
                    Err(PassError::Malformed | PassError::BadSignature)
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify("p1.zz.e30.AAAA", &keys, 0),
            Err(PassError::UnknownKey)
        );
    }

    /// A small deterministic generator, so that the properties below run
    /// alike natively and on wasm32 (where proptest does not build).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn text(&mut self, max: u64) -> String {
            const CHARS: [char; 10] = ['a', 'Z', '0', '-', '.', '"', '\\', 'é', '✓', '\u{0}'];
            (0..self.below(max + 1))
                .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
                .collect()
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn property_every_pass_round_trips_and_every_change_is_refused() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..64 {
            let secret: Vec<u8> = (0..32 + rng.below(32)).map(|_| rng.next() as u8).collect();
            let k = PassKey::new(&format!("k{round}"), &secret).unwrap();
            let keys = [key("other", 9), k.clone()];
            let claims = Claims {
                lease: rng.text(24),
                tier: rng.text(24),
                expires_at: rng.next() >> rng.below(64),
                payer: rng.text(24),
                pod: (rng.below(2) == 1).then(|| rng.text(24)),
            };
            let pass = sign(&claims, &k);
            assert!(pass.len() <= MAX_PASS_LEN);
            let now = claims.expires_at.saturating_sub(1);
            if claims.expires_at > 0 {
                assert_eq!(verify(&pass, &keys, now), Ok(claims.clone()));
            }
            assert_eq!(
                verify(&pass, &keys, claims.expires_at),
                Err(PassError::Expired(claims.clone()))
            );
            assert_eq!(decode_unverified(&pass), Ok((k.id.clone(), claims.clone())));
            // Any one byte changed, anywhere: refused.
            let bytes = pass.as_bytes();
            for _ in 0..24 {
                let i = rng.below(bytes.len() as u64) as usize;
                let mut changed = bytes.to_vec();
                changed[i] = b"A.x_-9="[rng.below(7) as usize];
                if changed == bytes {
                    continue;
                }
                let changed = String::from_utf8(changed).unwrap();
                assert!(
                    !matches!(
                        verify(&changed, &keys, 0),
                        Ok(_) | Err(PassError::Expired(_))
                    ),
                    "{changed}"
                );
            }
            // Any truncation: refused.
            for end in 0..pass.len() {
                assert!(
                    !matches!(
                        verify(&pass[..end], &keys, 0),
                        Ok(_) | Err(PassError::Expired(_))
                    ),
                    "{}",
                    &pass[..end]
                );
            }
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn keys_must_be_long_and_named_plainly() {
        assert!(PassKey::new("k1", &[0; 31]).is_none());
        assert!(PassKey::new("", &[0; 32]).is_none());
        assert!(PassKey::new("k 1", &[0; 32]).is_none());
        assert!(PassKey::new(&"k".repeat(33), &[0; 32]).is_none());
        let k = PassKey::new("k-1_a", &[0; 64]).unwrap();
        assert!(!format!("{k:?}").contains('0'), "{k:?} shows the secret");
    }
}
