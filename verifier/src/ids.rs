//! Fingerprints of a token, derived from its proofs' secrets: what the
//! verifier logs, locks on and hands upstream instead of the token itself.
//!
//! Every fingerprint is a SHA-256 over the sorted secrets (so the same proofs
//! in cashuA or cashuB, in any order, give the same value) with a domain
//! separator per use, so that one cannot be derived from another.

use paygress_core::Token;
use sha2::{Digest, Sha256};

/// The full 32-byte key of a token's proof set: the per-token lock key.
pub fn token_key(token: &Token) -> [u8; 32] {
    digest(b"paygress/token-key/v1", token)
}

/// The pseudonymous payer id sent upstream as `X-User-ID`: 16 hex digits,
/// stable for one token, revealing nothing about the secrets.
pub fn user_id(token: &Token) -> String {
    let d = digest(b"paygress/user-id/v1", token);
    hex::encode(d.get(..8).unwrap_or_default())
}

/// The id of the lease a token buys when it buys a new one: 16 hex digits,
/// the same for the same proofs, so that a retried payment names the same
/// lease (and, with pods, the same pod).
pub fn lease_id(token: &Token) -> String {
    let d = digest(b"paygress/lease-id/v1", token);
    hex::encode(d.get(..8).unwrap_or_default())
}

/// A short id to name a token in logs (12 hex digits).
pub fn log_id(token: &Token) -> String {
    let d = digest(b"paygress/log-id/v1", token);
    hex::encode(d.get(..6).unwrap_or_default())
}

/// A short id to name any secret-bearing string in logs (12 hex digits).
pub fn log_id_of_str(text: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"paygress/log-id/v1");
    h.update(text.as_bytes());
    hex::encode(h.finalize().get(..6).unwrap_or_default())
}

/// The key of one proof secret in the replay cache.
pub fn secret_key(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"paygress/secret/v1");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn digest(domain: &[u8], token: &Token) -> [u8; 32] {
    let mut secrets: Vec<&str> = token.proofs.iter().map(|p| p.secret.as_str()).collect();
    secrets.sort_unstable();
    secrets.dedup();
    let mut h = Sha256::new();
    h.update(domain);
    for s in secrets {
        // Length-prefixed, so that no two lists hash alike by concatenation.
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use paygress_core::token::{Proof, TokenVersion};

    fn token(secrets: &[&str]) -> Token {
        Token {
            version: TokenVersion::V4,
            mint: "http://127.0.0.1:1".into(),
            unit: "sat".into(),
            memo: None,
            proofs: secrets
                .iter()
                .map(|s| Proof {
                    amount: 1,
                    keyset_id: "00".into(),
                    secret: (*s).into(),
                    c: "02".into(),
                    has_dleq: false,
                    has_witness: false,
                })
                .collect(),
            total: secrets.len() as u64,
        }
    }

    #[test]
    fn ids_are_stable_under_reordering_and_differ_by_use() {
        let a = token(&["s1", "s2"]);
        let b = token(&["s2", "s1"]);
        assert_eq!(user_id(&a), user_id(&b));
        assert_eq!(token_key(&a), token_key(&b));
        assert_eq!(user_id(&a).len(), 16);
        assert_ne!(user_id(&a), log_id(&a));
        assert_ne!(user_id(&a), user_id(&token(&["s1"])));
        // No concatenation ambiguity.
        assert_ne!(
            token_key(&token(&["ab", "c"])),
            token_key(&token(&["a", "bc"]))
        );
    }
}
