//! Outcome codes of the payment contract, their HTTP statuses and JSON bodies.
//!
//! This is the one place where a refusal becomes a status code: the filter and
//! the verifier both answer through [`ErrorCode::status`].

use crate::json;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The token could not be decoded, or is over a limit.
    MalformedToken,
    /// The token's mint is not one of the accepted mints.
    MintNotAccepted,
    /// The token's unit is not the configured unit.
    UnitMismatch,
    /// The token (net of the mint's input fees) is worth less than the price.
    InsufficientAmount,
    /// The mint says the token was already spent.
    TokenAlreadySpent,
    /// The mint refused the token (bad signature, unknown keyset, ...).
    TokenInvalid,
    /// The mint could not be reached; nothing was redeemed.
    MintUnavailable,
    /// The filter could not reach the verifier (`failure_mode: deny`).
    VerifierUnavailable,
    /// The request itself cannot be priced safely (an authority holding
    /// `?`, `#`, `@`, `\` or whitespace).
    MalformedRequest,
    /// A pass that is forged, altered, under an unknown key or unreadable.
    PassInvalid,
    /// The lease's pod could not be provisioned after the token was
    /// redeemed; its value goes back to the client as a refund.
    ProvisioningFailed,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::MalformedToken,
        ErrorCode::MintNotAccepted,
        ErrorCode::UnitMismatch,
        ErrorCode::InsufficientAmount,
        ErrorCode::TokenAlreadySpent,
        ErrorCode::TokenInvalid,
        ErrorCode::MintUnavailable,
        ErrorCode::VerifierUnavailable,
        ErrorCode::MalformedRequest,
        ErrorCode::PassInvalid,
        ErrorCode::ProvisioningFailed,
    ];

    /// The code as it appears in the JSON body.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedToken => "malformed_token",
            ErrorCode::MintNotAccepted => "mint_not_accepted",
            ErrorCode::UnitMismatch => "unit_mismatch",
            ErrorCode::InsufficientAmount => "insufficient_amount",
            ErrorCode::TokenAlreadySpent => "token_already_spent",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::MintUnavailable => "mint_unavailable",
            ErrorCode::VerifierUnavailable => "verifier_unavailable",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::PassInvalid => "pass_invalid",
            ErrorCode::ProvisioningFailed => "provisioning_failed",
        }
    }

    /// Parses a code from its JSON form.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status this outcome is answered with.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::MalformedToken
            | ErrorCode::MintNotAccepted
            | ErrorCode::UnitMismatch
            | ErrorCode::InsufficientAmount
            | ErrorCode::TokenAlreadySpent
            | ErrorCode::TokenInvalid
            | ErrorCode::MalformedRequest
            | ErrorCode::PassInvalid => 400,
            ErrorCode::MintUnavailable
            | ErrorCode::VerifierUnavailable
            | ErrorCode::ProvisioningFailed => 503,
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a code and the words that explain it to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body: `{"error": "<words>", "code": "<code>"}`.
    pub fn body(&self) -> String {
        rejection_body(self.code, &self.message)
    }
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The JSON body of a refusal: `{"error": "<words>", "code": "<code>"}`.
pub fn rejection_body(code: ErrorCode, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 48);
    out.push_str("{\"error\":");
    json::write_str(&mut out, message);
    out.push_str(",\"code\":");
    json::write_str(&mut out, code.as_str());
    out.push('}');
    out
}

/// The JSON body of a 402:
/// `{"error":"Payment Required","amount":1000,"unit":"sat","mints":[…]}`
/// (plus `"tier"` when a tier priced the path, and `"lease_seconds"` when
/// the price buys that much time rather than one request).
pub fn payment_required_body(
    amount: u64,
    unit: &str,
    mints: &[String],
    tier: Option<&str>,
    lease_seconds: Option<u64>,
) -> String {
    let mut out = String::with_capacity(96 + mints.iter().map(|m| m.len() + 3).sum::<usize>());
    out.push_str("{\"error\":\"Payment Required\",\"amount\":");
    out.push_str(&amount.to_string());
    out.push_str(",\"unit\":");
    json::write_str(&mut out, unit);
    out.push_str(",\"mints\":[");
    for (i, mint) in mints.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_str(&mut out, mint);
    }
    out.push(']');
    if let Some(tier) = tier {
        out.push_str(",\"tier\":");
        json::write_str(&mut out, tier);
    }
    if let Some(seconds) = lease_seconds {
        out.push_str(",\"lease_seconds\":");
        out.push_str(&seconds.to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn codes_round_trip_and_map_to_statuses() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::TokenAlreadySpent.status(), 400);
        assert_eq!(ErrorCode::MintUnavailable.status(), 503);
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn bodies_are_json_with_the_contract_fields() {
        let body = rejection_body(ErrorCode::UnitMismatch, "unit \"usd\" is not \"sat\"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "unit_mismatch");
        assert_eq!(v["error"], "unit \"usd\" is not \"sat\"");

        let mints = vec!["http://127.0.0.1:3338".to_string()];
        let body = payment_required_body(1000, "sat", &mints, None, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "Payment Required");
        assert_eq!(v["amount"], 1000);
        assert_eq!(v["unit"], "sat");
        assert_eq!(v["mints"][0], "http://127.0.0.1:3338");
        assert!(v.get("tier").is_none());
    }
}
