//! Passes whose signature was checked already, so that a client presenting
//! the same pass on every request costs one HMAC, not one per request.
//!
//! A [`PassCache`] belongs to one set of pass keys (a compiled
//! configuration): a new configuration, with keys added or removed, comes
//! with a new, empty cache. It remembers only passes whose signature
//! verified, by their whole text (compared in constant time), with their
//! claims; expiry is checked against the time of each request, as
//! [`pass::verify`] does. It holds [`SLOTS`] passes at most (direct-mapped:
//! a pass evicts the one in its slot), so its size is bounded whatever
//! clients send. It is not `Sync`: one per proxy-wasm VM, which runs one
//! request at a time.

use core::cell::RefCell;

use crate::pass::{self, Claims, PassError, PassKey};

/// How many verified passes a cache remembers.
pub const SLOTS: usize = 128;

/// A remembered pass: its text and its claims.
type Entry = Option<(Box<str>, Claims)>;

/// Verified passes of one set of keys.
#[derive(Debug, Clone)]
pub struct PassCache {
    keys: Vec<PassKey>,
    slots: RefCell<Vec<Entry>>,
}

impl PassCache {
    /// An empty cache for passes signed by `keys`.
    pub fn new(keys: Vec<PassKey>) -> PassCache {
        PassCache {
            keys,
            slots: RefCell::new(vec![None; SLOTS]),
        }
    }

    /// The keys it verifies with.
    pub fn keys(&self) -> &[PassKey] {
        &self.keys
    }

    /// [`pass::verify`] against the cache's keys at `now`, with the same
    /// answer for every input; the signature of a pass seen before is not
    /// checked again.
    pub fn verify(&self, pass: &str, now: u64) -> Result<Claims, PassError> {
        let pass = pass.trim();
        let slot = slot_of(pass);
        if let Some(claims) = self.cached(slot, pass) {
            return pass::unexpired(claims, now);
        }
        let claims = pass::verify_signature(pass, &self.keys)?;
        if let Ok(mut slots) = self.slots.try_borrow_mut() {
            if let Some(entry) = slots.get_mut(slot) {
                *entry = Some((pass.into(), claims.clone()));
            }
        }
        pass::unexpired(claims, now)
    }

    /// How many passes it holds (for tests).
    pub fn len(&self) -> usize {
        self.slots
            .try_borrow()
            .map_or(0, |slots| slots.iter().flatten().count())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cached(&self, slot: usize, pass: &str) -> Option<Claims> {
        let slots = self.slots.try_borrow().ok()?;
        match slots.get(slot)? {
            Some((seen, claims)) if pass::constant_time_eq(seen.as_bytes(), pass.as_bytes()) => {
                Some(claims.clone())
            }
            _ => None,
        }
    }
}

/// FNV-1a of the pass, folded onto the slots.
fn slot_of(pass: &str) -> usize {
    let hash = pass.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::sign;

    fn key(id: &str, byte: u8) -> PassKey {
        PassKey::new(id, &[byte; 32]).unwrap()
    }

    fn claims(lease: &str, expires_at: u64) -> Claims {
        Claims {
            lease: lease.into(),
            tier: "compute".into(),
            expires_at,
            payer: "payer-1".into(),
            pod: None,
        }
    }

    /// Genuine, expired, tampered, foreign-key, unknown-key and malformed
    /// passes.
    fn passes() -> Vec<String> {
        let k1 = key("k1", 1);
        let other = key("k1", 2);
        let k9 = key("k9", 9);
        let genuine = sign(&claims("a", 2_000), &k1);
        let mut tampered = genuine.clone();
        tampered.pop();
        tampered.push(if genuine.ends_with('A') { 'B' } else { 'A' });
        vec![
            genuine.clone(),
            format!("  {genuine} "),
            sign(&claims("b", 1_000), &k1),
            tampered,
            sign(&claims("c", 2_000), &other),
            sign(&claims("d", 2_000), &k9),
            "p1.k1.not-base64!.x".into(),
            String::new(),
            "p1".into(),
        ]
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn answers_as_verify_does_first_and_every_time_after() {
        let keys = vec![key("k1", 1)];
        let cache = PassCache::new(keys.clone());
        for round in 0..3 {
            for now in [0, 999, 1_000, 1_999, 2_000, u64::MAX] {
                for p in passes() {
                    assert_eq!(
                        cache.verify(&p, now),
                        pass::verify(&p, &keys, now),
                        "round {round}, now {now}, pass {p:?}"
                    );
                }
            }
        }
        // Only the two genuine passes were remembered (the padded copy is
        // the same pass).
        assert_eq!(cache.len(), 2);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn a_pass_cached_under_one_key_set_is_not_genuine_for_another() {
        let old = key("k1", 1);
        let genuine = sign(&claims("a", 2_000), &old);
        let before = PassCache::new(vec![old]);
        assert!(before.verify(&genuine, 10).is_ok());
        // The key is rotated away: the new configuration's cache refuses.
        let after = PassCache::new(vec![key("k2", 2)]);
        assert_eq!(after.verify(&genuine, 10), Err(PassError::UnknownKey));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn it_holds_at_most_its_slots_and_keeps_answering_right() {
        let k = key("k1", 1);
        let cache = PassCache::new(vec![k.clone()]);
        let many: Vec<String> = (0..4 * SLOTS)
            .map(|i| sign(&claims(&format!("lease-{i}"), 5_000), &k))
            .collect();
        for p in &many {
            assert_eq!(
                cache.verify(p, 10).map(|c| c.lease),
                pass::verify(p, core::slice::from_ref(&k), 10).map(|c| c.lease)
            );
        }
        assert!(cache.len() <= SLOTS);
        assert!(
            cache.len() > SLOTS / 2,
            "the slots are used: {}",
            cache.len()
        );
        for p in &many {
            assert!(cache.verify(p, 10).is_ok());
            assert!(matches!(cache.verify(p, 5_000), Err(PassError::Expired(_))));
        }
    }
}
