//! Why `/auth` did not let a request through, as one typed error.
//!
//! Every variant maps to a paygress-core [`ErrorCode`], and the status comes
//! from [`ErrorCode::status`] only: there is no other place where a refusal
//! becomes an HTTP status. No variant is a 500: failures inside the verifier
//! (its wallet store, a panicked task) are `verifier_unavailable` (503), the
//! code a proxy also uses when it cannot reach the verifier at all.

use cdk::Error as CdkError;
use paygress_core::{ErrorCode, Rejection};
use thiserror::Error;

/// A refusal of `/auth`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    /// A check of paygress-core refused the token before anything was
    /// redeemed: malformed, mint not accepted, unit, amount net of fees.
    #[error("{0}")]
    Precheck(Rejection),
    /// The original request cannot be priced safely (its authority holds
    /// `?`, `#`, `@`, `\` or whitespace).
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// A token header could not be read (not ASCII, repeated, ...).
    #[error("malformed token header: {0}")]
    MalformedHeader(String),
    /// A pass that is forged, altered, under an unknown key or unreadable.
    #[error("invalid pass: {0}")]
    PassInvalid(String),
    /// The mint (or this verifier, a moment ago) already swapped the proofs.
    #[error("token already spent")]
    AlreadySpent,
    /// The mint refused the proofs: bad signature, unknown keyset, a
    /// spending condition we cannot meet, ...
    #[error("token refused by the mint: {0}")]
    TokenInvalid(String),
    /// The swap gave less than the price (the mint's fee changed between the
    /// check and the swap). The proofs were swapped, and their value goes
    /// back to the client in `refund` (a Cashu token).
    #[error("received {received} after the mint's fees, price is {price}")]
    ReceivedLess {
        received: u64,
        price: u64,
        refund: Option<String>,
    },
    /// The lease's pod could not be provisioned after the swap; the value
    /// received goes back to the client in `refund`.
    #[error("provisioning failed: {message}")]
    ProvisioningFailed {
        message: String,
        refund: Option<String>,
    },
    /// This token was refunded before (worth less than the price, or its
    /// pod could not be provisioned): the same answer, the same refund.
    #[error("refunded before")]
    Refunded { code: ErrorCode, refund: String },
    /// The redemption did not finish within the request's deadline (or
    /// could not begin in time). Nothing is lost: the same token presented
    /// again is granted if the swap completed, and stays the client's if
    /// it did not.
    #[error("redemption unfinished: {0}")]
    Unfinished(String),
    /// As many redemptions as allowed are in flight.
    #[error("too many redemptions in flight")]
    Busy,
    /// The mint had signed our swap's outputs already: another verifier
    /// derives the same outputs. Nothing was swapped.
    #[error("the mint has signed these outputs already")]
    OutputsAlreadySigned,
    /// A proof's NUT-12 DLEQ does not verify: forged, refused before any
    /// swap.
    #[error("invalid DLEQ proof")]
    DleqInvalid,
    /// The mint could not be reached or did not answer in time; nothing was
    /// swapped, or the swap is settled later by recovery.
    #[error("mint unavailable: {0}")]
    MintUnavailable(String),
    /// The verifier is shutting down and takes no new redemptions.
    #[error("the verifier is shutting down")]
    ShuttingDown,
    /// The verifier's store (the ledger's database) cannot be reached.
    /// Nothing was swapped, or the swap is settled when it is back.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// The verifier itself failed (wallet store, task).
    #[error("verifier error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The outcome code of the payment contract.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Precheck(r) => r.code,
            AuthError::MalformedHeader(_) => ErrorCode::MalformedToken,
            AuthError::MalformedRequest(_) => ErrorCode::MalformedRequest,
            AuthError::PassInvalid(_) => ErrorCode::PassInvalid,
            AuthError::AlreadySpent => ErrorCode::TokenAlreadySpent,
            AuthError::TokenInvalid(_) => ErrorCode::TokenInvalid,
            AuthError::ReceivedLess { .. } => ErrorCode::InsufficientAmount,
            AuthError::ProvisioningFailed { .. } => ErrorCode::ProvisioningFailed,
            AuthError::Refunded { code, .. } => *code,
            AuthError::DleqInvalid => ErrorCode::TokenInvalid,
            AuthError::MintUnavailable(_) | AuthError::Unfinished(_) => ErrorCode::MintUnavailable,
            AuthError::ShuttingDown
            | AuthError::StoreUnavailable(_)
            | AuthError::Internal(_)
            | AuthError::Busy
            | AuthError::OutputsAlreadySigned => ErrorCode::VerifierUnavailable,
        }
    }

    /// The HTTP status: always [`ErrorCode::status`].
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// The words for the client: what happened, never a token or a secret.
    pub fn client_message(&self) -> String {
        match self {
            AuthError::Precheck(r) => r.message.clone(),
            AuthError::MalformedHeader(m) => m.clone(),
            AuthError::MalformedRequest(m) => m.clone(),
            AuthError::PassInvalid(m) => m.clone(),
            AuthError::AlreadySpent => "token already spent".into(),
            AuthError::TokenInvalid(m) => format!("token refused by the mint: {m}"),
            AuthError::ReceivedLess {
                received,
                price,
                refund,
            } => match refund {
                Some(_) => format!(
                    "the mint gave {received} after its fees, price is {price}; \
                     its value is returned in \"refund\""
                ),
                None => format!("the mint gave {received} after its fees, price is {price}"),
            },
            AuthError::ProvisioningFailed { message, refund } => match refund {
                Some(_) => format!(
                    "the lease's pod could not be provisioned ({message}); the payment is \
                     returned in \"refund\""
                ),
                None => format!("the lease's pod could not be provisioned ({message})"),
            },
            AuthError::Refunded { .. } => {
                "this token was refunded earlier: its value is in \"refund\"".into()
            }
            AuthError::Unfinished(why) => format!(
                "the payment could not be completed in time ({why}); present the same token \
                 again: it is accepted once if the mint redeemed it, and stays yours if not"
            ),
            AuthError::Busy => "too many payments in flight; try again in a moment".into(),
            AuthError::OutputsAlreadySigned => {
                "the verifier cannot redeem right now; the token was not redeemed, try again".into()
            }
            AuthError::DleqInvalid => {
                "a proof's DLEQ does not verify against the mint's key".into()
            }
            AuthError::MintUnavailable(_) => {
                "the mint cannot be reached; the token was not redeemed, try again later".into()
            }
            AuthError::ShuttingDown => "the verifier is shutting down; try again".into(),
            AuthError::StoreUnavailable(_) => {
                "the verifier's store cannot be reached; the token is safe, try again shortly"
                    .into()
            }
            AuthError::Internal(_) => "the verifier cannot redeem tokens right now".into(),
        }
    }

    /// The JSON body `{"error": …, "code": …}`, by paygress-core, with
    /// `refund` when the client's payment is given back.
    pub fn body(&self) -> String {
        let body = paygress_core::outcome::rejection_body(self.code(), &self.client_message());
        match self.refund() {
            Some(refund) => match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Object(mut map)) => {
                    map.insert(
                        "refund".into(),
                        serde_json::Value::String(refund.to_string()),
                    );
                    serde_json::Value::Object(map).to_string()
                }
                _ => body,
            },
            None => body,
        }
    }

    /// The refund token this answer gives back, if any.
    pub fn refund(&self) -> Option<&str> {
        match self {
            AuthError::ReceivedLess {
                refund: Some(refund),
                ..
            }
            | AuthError::ProvisioningFailed {
                refund: Some(refund),
                ..
            }
            | AuthError::Refunded { refund, .. } => Some(refund),
            _ => None,
        }
    }

    /// Seconds after which a retry may succeed (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            AuthError::Busy | AuthError::Unfinished(_) | AuthError::OutputsAlreadySigned => Some(1),
            AuthError::MintUnavailable(_) | AuthError::ShuttingDown => Some(5),
            AuthError::StoreUnavailable(_) => Some(2),
            _ => None,
        }
    }
}

/// What a failed cdk `receive` means for the client.
///
/// * the mint said the proofs are spent (or being spent) → `token_already_spent`;
/// * the mint could not be reached, timed out or failed (5xx, 429) →
///   `mint_unavailable` (the swap did not happen, or recovery settles it);
/// * a local failure of the wallet store → `verifier_unavailable`;
/// * anything else is the mint (or cdk, before the swap) refusing the proofs
///   → `token_invalid`.
pub fn classify_receive_error(err: &CdkError) -> AuthError {
    use CdkError as E;
    match err {
        E::TokenAlreadySpent | E::TokenPending => AuthError::AlreadySpent,
        // cdk-mintd answers an output it signed before with "duplicate
        // outputs" (11008), other mints with "already signed" (11003).
        E::BlindedMessageAlreadySigned | E::DuplicateOutputs => AuthError::OutputsAlreadySigned,
        E::CouldNotVerifyDleq => AuthError::DleqInvalid,
        E::HttpError(None, m) => AuthError::MintUnavailable(m.clone()),
        E::HttpError(Some(status), m) if *status >= 500 || *status == 429 || *status == 408 => {
            AuthError::MintUnavailable(format!("HTTP {status}: {m}"))
        }
        E::Timeout | E::CouldNotGetMintInfo => AuthError::MintUnavailable(err.to_string()),
        // A mint answering 5xx with a Cashu error body whose code cdk does
        // not know, and cdk's own "Internal" (mint code 50000 among others).
        E::Internal => AuthError::MintUnavailable("the mint reported an internal error".into()),
        E::Database(e) => AuthError::StoreUnavailable(format!("wallet store: {e}")),
        E::ConcurrentUpdate
        | E::UnexpectedProofState
        | E::NoActiveKeyset
        | E::SendError(_)
        | E::RecvError(_) => AuthError::Internal(err.to_string()),
        E::UnknownKeySet | E::KeysetUnknown(_) => AuthError::TokenInvalid("unknown keyset".into()),
        _ => AuthError::TokenInvalid(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_come_from_core() {
        for (err, code) in [
            (AuthError::AlreadySpent, "token_already_spent"),
            (AuthError::TokenInvalid("x".into()), "token_invalid"),
            (AuthError::MintUnavailable("x".into()), "mint_unavailable"),
            (AuthError::Internal("x".into()), "verifier_unavailable"),
            (
                AuthError::StoreUnavailable("x".into()),
                "verifier_unavailable",
            ),
            (
                AuthError::ReceivedLess {
                    received: 1,
                    price: 2,
                    refund: Some("cashuBrefund".into()),
                },
                "insufficient_amount",
            ),
            (AuthError::Busy, "verifier_unavailable"),
            (AuthError::Unfinished("x".into()), "mint_unavailable"),
            (AuthError::DleqInvalid, "token_invalid"),
            (
                AuthError::ProvisioningFailed {
                    message: "403".into(),
                    refund: Some("cashuBrefund".into()),
                },
                "provisioning_failed",
            ),
            (
                AuthError::Refunded {
                    code: ErrorCode::ProvisioningFailed,
                    refund: "cashuBrefund".into(),
                },
                "provisioning_failed",
            ),
        ] {
            assert_eq!(err.code().as_str(), code);
            assert_eq!(err.status(), err.code().status());
            assert_ne!(err.status(), 500);
            let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
            assert_eq!(body["code"], code);
            assert_eq!(body["refund"].as_str(), err.refund());
            if !matches!(
                err,
                AuthError::ReceivedLess { .. }
                    | AuthError::ProvisioningFailed { .. }
                    | AuthError::Refunded { .. }
            ) {
                assert!(err.refund().is_none());
            }
        }
    }

    #[test]
    fn cdk_errors_are_classified() {
        assert_eq!(
            classify_receive_error(&CdkError::TokenAlreadySpent),
            AuthError::AlreadySpent
        );
        assert!(matches!(
            classify_receive_error(&CdkError::HttpError(None, "Connection refused".into())),
            AuthError::MintUnavailable(_)
        ));
        assert!(matches!(
            classify_receive_error(&CdkError::HttpError(Some(502), "bad gateway".into())),
            AuthError::MintUnavailable(_)
        ));
        assert!(matches!(
            classify_receive_error(&CdkError::HttpError(Some(400), "bad".into())),
            AuthError::TokenInvalid(_)
        ));
        for collision in [
            CdkError::BlindedMessageAlreadySigned,
            CdkError::DuplicateOutputs,
        ] {
            assert_eq!(
                classify_receive_error(&collision),
                AuthError::OutputsAlreadySigned
            );
        }
        assert!(matches!(
            classify_receive_error(&CdkError::UnknownKeySet),
            AuthError::TokenInvalid(_)
        ));
        assert!(matches!(
            classify_receive_error(&CdkError::DHKE(cdk::dhke::Error::TokenNotVerified)),
            AuthError::TokenInvalid(_)
        ));
    }
}
