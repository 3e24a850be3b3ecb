//! `paygress token decode`: what a token is, without its secrets; or what a
//! NUT-18 payment request (`creqA…`, a 402's `X-Cashu`) asks for.

use std::str::FromStr;

use cdk::nuts::PaymentRequest;
use paygress_core::token::TokenVersion;
use paygress_core::TokenLimits;
use serde_json::json;

/// Why `token decode` could not read its input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Token(#[from] paygress_core::TokenError),
    #[error("payment request is not valid NUT-18: {0}")]
    Request(String),
}

/// Decodes a token (`cashuA`/`cashuB`) or a payment request (`creqA`).
pub fn decode_any(raw: &str) -> Result<String, DecodeError> {
    let trimmed = raw.trim();
    if trimmed.starts_with(paygress_core::payment_request::PREFIX) {
        return decode_request(trimmed);
    }
    Ok(decode(trimmed)?)
}

/// The payment request as JSON: amount, unit, mints, and whether it names a
/// transport (NUT-24 in-band requests do not).
fn decode_request(raw: &str) -> Result<String, DecodeError> {
    let request = PaymentRequest::from_str(raw).map_err(|e| DecodeError::Request(e.to_string()))?;
    let value = json!({
        "payment_request": "creqA",
        "amount": request.amount.map(u64::from),
        "unit": request.unit.map(|u| u.to_string()),
        "mints": request.mints.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "single_use": request.single_use,
        "description": request.description,
        "in_band": request.transports.is_empty(),
    });
    Ok(serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()))
}

/// The token as JSON: version, mint, unit, memo, per proof its amount and
/// keyset, the amounts and the total. Never a secret or a signature.
pub fn decode(raw: &str) -> Result<String, paygress_core::TokenError> {
    let limits = TokenLimits {
        max_len: 1024 * 1024,
        max_proofs: 10_000,
    };
    let token = paygress_core::token::decode(raw, &limits)?;
    let amounts: Vec<u64> = token.proofs.iter().map(|p| p.amount).collect();
    let proofs: Vec<_> = token
        .proofs
        .iter()
        .map(|p| {
            json!({
                "amount": p.amount,
                "keyset": p.keyset_id,
                "dleq": p.has_dleq,
                "witness": p.has_witness,
            })
        })
        .collect();
    let value = json!({
        "version": match token.version { TokenVersion::V3 => "cashuA", TokenVersion::V4 => "cashuB" },
        "mint": token.mint,
        "unit": token.unit,
        "memo": token.memo,
        "amounts": amounts,
        "total": token.total,
        "proofs": proofs,
    });
    Ok(serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_prints_no_secret() {
        // A V3 token from the cdk documentation.
        let token = "cashuAeyJ0b2tlbiI6W3sicHJvb2ZzIjpbeyJhbW91bnQiOjEsInNlY3JldCI6ImI0ZjVlNDAxMDJhMzhiYjg3NDNiOTkwMzU5MTU1MGYyZGEzZTQxNWEzMzU0OTUyN2M2MmM5ZDc5MGVmYjM3MDUiLCJDIjoiMDIzYmU1M2U4YzYwNTMwZWVhOWIzOTQzZmRhMWEyY2U3MWM3YjNmMGNmMGRjNmQ4NDZmYTc2NWFhZjc3OWZhODFkIiwiaWQiOiIwMDlhMWYyOTMyNTNlNDFlIn1dLCJtaW50IjoiaHR0cHM6Ly90ZXN0bnV0LmNhc2h1LnNwYWNlIn1dLCJ1bml0Ijoic2F0In0=";
        let out = decode(token).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mint"], "https://testnut.cashu.space");
        assert_eq!(v["unit"], "sat");
        assert_eq!(v["total"], 1);
        assert_eq!(v["amounts"][0], 1);
        assert!(!out.contains("b4f5e40102a38bb8"), "{out}");
        assert!(!out.contains("023be53e8c60530e"), "{out}");
        assert!(decode("cashuBnope").is_err());
    }

    #[test]
    fn decoding_a_payment_request_shows_what_it_asks() {
        let mints = vec!["http://127.0.0.1:3338".to_string()];
        let creq = paygress_core::payment_request::encode(1000, "sat", &mints).unwrap();
        let v: serde_json::Value = serde_json::from_str(&decode_any(&creq).unwrap()).unwrap();
        assert_eq!(v["amount"], 1000);
        assert_eq!(v["unit"], "sat");
        assert_eq!(v["mints"][0], "http://127.0.0.1:3338");
        assert_eq!(v["in_band"], true);
        assert!(decode_any("creqAnope").is_err());
    }
}
