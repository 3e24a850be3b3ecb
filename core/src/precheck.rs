//! The checks made on a decoded token before anything is redeemed: the mint
//! is accepted, the unit is the configured one, and the value covers the price.
//!
//! The filter calls [`precheck`] with no fee (it does not know the mint's
//! keysets); the verifier passes the input fee the mint will charge, so the
//! price is met net of fees.

use crate::config::CompiledConfig;
use crate::outcome::{ErrorCode, Rejection};
use crate::token::{self, Token, TokenLimits};

/// Decodes a token, mapping every decoding error to `malformed_token`.
pub fn decode(raw: &str, limits: &TokenLimits) -> Result<Token, Rejection> {
    token::decode(raw, limits).map_err(|e| Rejection::new(ErrorCode::MalformedToken, e.to_string()))
}

/// Checks mint, unit and value against the price. `fee` is the mint's input
/// fee for these proofs (0 when unknown).
pub fn precheck(
    token: &Token,
    config: &CompiledConfig,
    price: u64,
    fee: u64,
) -> Result<(), Rejection> {
    if !config.accepts_mint(&token.mint) {
        return Err(Rejection::new(
            ErrorCode::MintNotAccepted,
            format!("mint {} is not accepted here", token.mint),
        ));
    }
    if token.unit != config.unit {
        return Err(Rejection::new(
            ErrorCode::UnitMismatch,
            format!("token unit {:?} is not {:?}", token.unit, config.unit),
        ));
    }
    let net = token.total.saturating_sub(fee);
    if token.total < fee || net < price {
        let words = if fee > 0 {
            format!(
                "token is worth {} {} minus {} input fee = {}, price is {}",
                token.total, config.unit, fee, net, price
            )
        } else {
            format!(
                "token is worth {} {}, price is {}",
                token.total, config.unit, price
            )
        };
        return Err(Rejection::new(ErrorCode::InsufficientAmount, words));
    }
    Ok(())
}

/// Why the input fee of a set of proofs cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeeSumError {
    /// A proof names a keyset the fee table does not know.
    UnknownKeyset(String),
    /// The sum of the fees overflows.
    Overflow,
}

impl core::fmt::Display for FeeSumError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FeeSumError::UnknownKeyset(id) => write!(f, "unknown keyset {id}"),
            FeeSumError::Overflow => f.write_str("the input fee overflows"),
        }
    }
}

/// The input fee the mint charges for a set of proofs: the sum of each
/// proof's keyset `input_fee_ppk`, in parts per thousand, rounded up
/// (NUT-02). `fee_ppk` maps a keyset id to its fee; `None` means the keyset
/// is unknown.
pub fn input_fee<F>(token: &Token, mut fee_ppk: F) -> Result<u64, FeeSumError>
where
    F: FnMut(&str) -> Option<u64>,
{
    let mut sum: u64 = 0;
    for p in &token.proofs {
        let ppk =
            fee_ppk(&p.keyset_id).ok_or_else(|| FeeSumError::UnknownKeyset(p.keyset_id.clone()))?;
        sum = sum.checked_add(ppk).ok_or(FeeSumError::Overflow)?;
    }
    sum.checked_add(999)
        .map(|s| s / 1000)
        .ok_or(FeeSumError::Overflow)
}
