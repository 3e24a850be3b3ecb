//! `GET /lease`: where the lease of the pass it is given stands, with no
//! mint contact.
//!
//! The answer is JSON: `lease`, `tier`, `payer`, `expires_at` (Unix
//! seconds), `expires_at_rfc3339`, `seconds_left`, `expired`, `pod` (or
//! null) and, with pod provisioning on, `pod_phase` (`Pending`, `Running`,
//! …, or `Gone` when the pod no longer exists: deleted by hand, or reaped). An expired pass is answered too (a top-up extends it); a pass that
//! is not genuine gets `400 pass_invalid`. When this verifier knows the lease
//! to run later than the pass says (a top-up made with another pass), the
//! answer carries a fresh `X-Paygress-Pass` for the later expiry.

use paygress_core::lease::rfc3339;
use paygress_core::pass::{self, Claims, PassError};
use serde::Serialize;

use crate::error::AuthError;
use crate::verifier::Verifier;

/// What `GET /lease` answers about a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseStatus {
    pub lease: String,
    pub tier: String,
    pub payer: String,
    pub expires_at: u64,
    pub expires_at_rfc3339: String,
    pub seconds_left: u64,
    pub expired: bool,
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_phase: Option<String>,
}

impl LeaseStatus {
    /// The status of a lease from its claims, at `now`.
    pub fn of(claims: &Claims, now: u64) -> LeaseStatus {
        LeaseStatus {
            lease: claims.lease.clone(),
            tier: claims.tier.clone(),
            payer: claims.payer.clone(),
            expires_at: claims.expires_at,
            expires_at_rfc3339: rfc3339(claims.expires_at),
            seconds_left: claims.expires_at.saturating_sub(now),
            expired: claims.expires_at <= now,
            pod: claims.pod.clone(),
            pod_phase: None,
        }
    }
}

/// The lease of a pass at `now`, and a fresh pass when the lease runs later
/// than this one says.
pub async fn lease_status(
    verifier: &Verifier,
    presented: Option<&str>,
    now: u64,
) -> Result<(LeaseStatus, Option<String>), AuthError> {
    let presented = presented.ok_or_else(|| {
        AuthError::PassInvalid(
            "no pass: send it in X-Paygress-Pass, Authorization: Bearer or the paygress_pass cookie"
                .into(),
        )
    })?;
    let keys = verifier.settings.config.pass_keys();
    let mut claims = match pass::verify(presented, keys, now) {
        Ok(claims) | Err(PassError::Expired(claims)) => claims,
        Err(e) => return Err(AuthError::PassInvalid(e.to_string())),
    };
    let recorded = verifier
        .redeemer
        .ledger()
        .lease(&claims.lease)
        .await
        .map_err(|e| AuthError::StoreUnavailable(e.to_string()))?;
    let mut fresh = None;
    if let Some(record) = recorded.filter(|r| r.tier == claims.tier) {
        if record.pod.is_some() {
            claims.pod = record.pod;
        }
        if record.expires_at > claims.expires_at {
            claims.expires_at = record.expires_at;
            fresh = keys.first().map(|key| pass::sign(&claims, key));
        }
    }
    Ok((LeaseStatus::of(&claims, now), fresh))
}
