//! Cashu token decoding without crypto or network: `cashuA` (V3, JSON) and
//! `cashuB` (V4, CBOR), padded or unpadded base64url (standard base64 is
//! tolerated too), with an optional `cashu:` prefix.
//!
//! Decoding yields what a proxy needs to decide before anything is redeemed:
//! the mint (normalised), the unit, the memo, and per proof its amount, keyset
//! id, secret, `C`, and whether it carries a DLEQ proof or a witness. The total
//! is computed with checked addition. Limits that bound the work are typed
//! errors, checked before the expensive steps.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use thiserror::Error;

use crate::{cbor, json, mint_url};

/// Bounds on what a token may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// The longest token string accepted, in bytes.
    pub max_len: usize,
    /// The most proofs a token may carry.
    pub max_proofs: usize,
}

impl TokenLimits {
    pub const DEFAULT_MAX_LEN: usize = 16 * 1024;
    pub const DEFAULT_MAX_PROOFS: usize = 256;
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits {
            max_len: Self::DEFAULT_MAX_LEN,
            max_proofs: Self::DEFAULT_MAX_PROOFS,
        }
    }
}

/// The serialisation a token came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    /// `cashuA`: base64url JSON.
    V3,
    /// `cashuB`: base64url CBOR.
    V4,
}

/// A decoded token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub version: TokenVersion,
    /// The mint URL, normalised as cdk does.
    pub mint: String,
    /// The unit, read as cdk reads it (see `normalize_unit`); a V3 token
    /// without one is in `sat`.
    pub unit: String,
    pub memo: Option<String>,
    pub proofs: Vec<Proof>,
    /// The sum of the proofs' amounts (face value, before mint fees).
    pub total: u64,
}

/// One proof of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub amount: u64,
    /// The keyset id, as hex (or as given, for legacy V3 ids).
    pub keyset_id: String,
    pub secret: String,
    /// The unblinded signature `C`, as hex.
    pub c: String,
    pub has_dleq: bool,
    pub has_witness: bool,
}

/// Why a token could not be decoded. Every one of these is a
/// `malformed_token` to the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("token is empty")]
    Empty,
    #[error("token is {len} bytes, more than the {max} accepted")]
    TooLong { len: usize, max: usize },
    #[error("token does not start with cashuA or cashuB")]
    UnknownPrefix,
    #[error("token is not valid base64url")]
    Base64,
    #[error("token body is not valid {0}")]
    Syntax(&'static str),
    #[error("token has no proofs")]
    NoProofs,
    #[error("token has {count} proofs, more than the {max} accepted")]
    TooManyProofs { count: usize, max: usize },
    /// A V3 token with more than one `token` entry (the count of entries):
    /// cdk refuses those (`is_multi_mint`), even when the entries name the
    /// same mint.
    #[error("token has {0} mint entries; only single-mint tokens are accepted")]
    MultiMint(usize),
    #[error("token mint URL is invalid: {0}")]
    MintUrl(String),
    #[error("token has a proof of amount 0")]
    ZeroAmount,
    #[error("token amounts overflow")]
    AmountOverflow,
    #[error("token has a proof with an empty {0}")]
    EmptyField(&'static str),
    /// Two proofs carry the same secret (cdk's `DuplicateProofs`): the total
    /// would count one proof twice.
    #[error("token carries the same proof twice")]
    DuplicateProof,
}

/// Decodes a token string (surrounding whitespace and a `cashu:` prefix are
/// tolerated).
pub fn decode(input: &str, limits: &TokenLimits) -> Result<Token, TokenError> {
    let s = input.trim();
    if s.len() > limits.max_len {
        return Err(TokenError::TooLong {
            len: s.len(),
            max: limits.max_len,
        });
    }
    let s = strip_prefix_ignore_case(s, "cashu:").unwrap_or(s);
    if s.is_empty() {
        return Err(TokenError::Empty);
    }
    if let Some(body) = s.strip_prefix("cashuA") {
        let bytes = decode_base64(body)?;
        decode_v3(&bytes, limits)
    } else if let Some(body) = s.strip_prefix("cashuB") {
        let bytes = decode_base64(body)?;
        decode_v4(&bytes, limits)
    } else {
        Err(TokenError::UnknownPrefix)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn decode_base64(body: &str) -> Result<Vec<u8>, TokenError> {
    let unpadded = body.trim_end_matches('=');
    if unpadded.is_empty() {
        return Err(TokenError::Empty);
    }
    let normalised: String = unpadded
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normalised.as_bytes())
        .map_err(|_| TokenError::Base64)
}

// ---- V3 (JSON) --------------------------------------------------------------
//
// Read as serde would read these structs from `serde_json::from_slice` (see
// `crate::json`):
//
// ```text
// V3Token { token: Vec<V3Entry>, #[serde(default)] unit: Option<String>,
//           #[serde(default)] memo: Option<String> }
// V3Entry { mint: String, proofs: Vec<V3Proof> }
// V3Proof { amount: u64, id: String, secret: String, #[serde(rename = "C")] c: String,
//           #[serde(default)] dleq: Option<IgnoredAny>,
//           #[serde(default, alias = "w")] witness: Option<IgnoredAny> }
// ```

/// One V3 `token` entry: the mint and its proofs.
struct V3Entry {
    mint: String,
    proofs: Vec<Proof>,
}

fn decode_v3(bytes: &[u8], limits: &TokenLimits) -> Result<Token, TokenError> {
    let syntax = |_| TokenError::Syntax("JSON");
    let mut r = json::Reader::new(bytes);
    let (entries, unit, memo) = read_v3_token(&mut r).map_err(syntax)?;
    r.end().map_err(syntax)?;

    let mut mints: Vec<String> = Vec::with_capacity(entries.len());
    let mut count: usize = 0;
    for entry in &entries {
        let norm =
            mint_url::normalize(&entry.mint).map_err(|e| TokenError::MintUrl(e.to_string()))?;
        mints.push(norm);
        count = count.saturating_add(entry.proofs.len());
    }
    check_proof_count(count, limits)?;
    // As cdk's wallet (`TokenV3::is_multi_mint`): one entry, or refused, even
    // if two entries name the same mint.
    let mint = match mints.len() {
        1 => mints.pop().unwrap_or_default(),
        0 => return Err(TokenError::NoProofs),
        n => return Err(TokenError::MultiMint(n)),
    };
    let proofs = entries.into_iter().flat_map(|e| e.proofs).collect();
    finish(
        TokenVersion::V3,
        mint,
        unit.unwrap_or_else(|| "sat".to_string()),
        memo,
        proofs,
    )
}

type V3Parts = (Vec<V3Entry>, Option<String>, Option<String>);

fn read_v3_token(r: &mut json::Reader<'_>) -> json::Result<V3Parts> {
    const FIELDS: &[&[&str]] = &[&["token"], &["unit"], &["memo"]];
    let (mut entries, mut unit, mut memo) = (Vec::new(), None, None);
    let seen = r.structure("V3Token", FIELDS, false, |r, i| {
        match i {
            0 => r.seq(|r| {
                entries.push(read_v3_entry(r)?);
                Ok(())
            })?,
            1 => unit = r.option(json::Reader::string)?,
            _ => memo = r.option(json::Reader::string)?,
        }
        Ok(())
    })?;
    seen.require(0, "token", "V3Token", FIELDS.len())?;
    Ok((entries, unit, memo))
}

fn read_v3_entry(r: &mut json::Reader<'_>) -> json::Result<V3Entry> {
    const FIELDS: &[&[&str]] = &[&["mint"], &["proofs"]];
    let (mut mint, mut proofs) = (String::new(), Vec::new());
    let seen = r.structure("V3Entry", FIELDS, false, |r, i| {
        match i {
            0 => mint = r.string()?,
            _ => r.seq(|r| {
                proofs.push(read_v3_proof(r)?);
                Ok(())
            })?,
        }
        Ok(())
    })?;
    seen.require(0, "mint", "V3Entry", FIELDS.len())?;
    seen.require(1, "proofs", "V3Entry", FIELDS.len())?;
    Ok(V3Entry { mint, proofs })
}

fn read_v3_proof(r: &mut json::Reader<'_>) -> json::Result<Proof> {
    const FIELDS: &[&[&str]] = &[
        &["amount"],
        &["id"],
        &["secret"],
        &["C"],
        &["dleq"],
        &["witness", "w"],
    ];
    let mut p = Proof {
        amount: 0,
        keyset_id: String::new(),
        secret: String::new(),
        c: String::new(),
        has_dleq: false,
        has_witness: false,
    };
    let seen = r.structure("V3Proof", FIELDS, false, |r, i| {
        match i {
            0 => p.amount = r.u64()?,
            1 => p.keyset_id = r.string()?,
            2 => p.secret = r.string()?,
            3 => p.c = r.string()?,
            4 => p.has_dleq = r.option(json::Reader::skip)?.is_some(),
            _ => p.has_witness = r.option(json::Reader::skip)?.is_some(),
        }
        Ok(())
    })?;
    for (i, name) in ["amount", "id", "secret", "C"].into_iter().enumerate() {
        seen.require(i, name, "V3Proof", FIELDS.len())?;
    }
    Ok(p)
}

// ---- V4 (CBOR) --------------------------------------------------------------
//
// Read as serde would read these structs from `ciborium::de::from_reader`
// (see `crate::cbor`):
//
// ```text
// V4Token { m: String, u: String, #[serde(default)] d: Option<String>, t: Vec<V4Entry> }
// V4Entry { i: Bytes, p: Vec<V4Proof> }
// V4Proof { a: u64, s: String, c: Bytes, #[serde(default)] d: Option<ciborium::Value>,
//           #[serde(default, alias = "witness")] w: Option<ciborium::Value> }
// ```

fn decode_v4(bytes: &[u8], limits: &TokenLimits) -> Result<Token, TokenError> {
    let (m, u, d, entries) =
        read_v4_token(&mut cbor::Reader::new(bytes)).map_err(|_| TokenError::Syntax("CBOR"))?;
    let count = entries
        .iter()
        .fold(0usize, |n, (_, p)| n.saturating_add(p.len()));
    check_proof_count(count, limits)?;
    let mint = mint_url::normalize(&m).map_err(|e| TokenError::MintUrl(e.to_string()))?;
    let mut proofs = Vec::with_capacity(count);
    for (keyset_id, entry_proofs) in entries {
        let keyset_id = to_hex(&keyset_id);
        for mut p in entry_proofs {
            p.keyset_id = keyset_id.clone();
            proofs.push(p);
        }
    }
    finish(TokenVersion::V4, mint, u, d, proofs)
}

/// A V4 entry: the keyset id's bytes and its proofs (their `keyset_id`
/// filled in later).
type V4Entry = (Vec<u8>, Vec<Proof>);
type V4Parts = (String, String, Option<String>, Vec<V4Entry>);

fn read_v4_token(r: &mut cbor::Reader<'_>) -> cbor::Result<V4Parts> {
    const FIELDS: &[&[&str]] = &[&["m"], &["u"], &["d"], &["t"]];
    let (mut m, mut u, mut d, mut t) = (String::new(), String::new(), None, Vec::new());
    let seen = r.structure(FIELDS, |r, i| {
        match i {
            0 => m = r.string()?,
            1 => u = r.string()?,
            2 => d = r.option(cbor::Reader::string)?,
            _ => r.seq(|r| {
                t.push(read_v4_entry(r)?);
                Ok(())
            })?,
        }
        Ok(())
    })?;
    // m, u and t are required.
    if seen & 0b1011 != 0b1011 {
        return Err(cbor::Error);
    }
    Ok((m, u, d, t))
}

fn read_v4_entry(r: &mut cbor::Reader<'_>) -> cbor::Result<V4Entry> {
    const FIELDS: &[&[&str]] = &[&["i"], &["p"]];
    let (mut id, mut proofs) = (Vec::new(), Vec::new());
    let seen = r.structure(FIELDS, |r, i| {
        match i {
            0 => id = r.bytes()?,
            _ => r.seq(|r| {
                proofs.push(read_v4_proof(r)?);
                Ok(())
            })?,
        }
        Ok(())
    })?;
    if seen & 0b11 != 0b11 {
        return Err(cbor::Error);
    }
    Ok((id, proofs))
}

fn read_v4_proof(r: &mut cbor::Reader<'_>) -> cbor::Result<Proof> {
    const FIELDS: &[&[&str]] = &[&["a"], &["s"], &["c"], &["d"], &["w", "witness"]];
    let mut p = Proof {
        amount: 0,
        keyset_id: String::new(),
        secret: String::new(),
        c: String::new(),
        has_dleq: false,
        has_witness: false,
    };
    let seen = r.structure(FIELDS, |r, i| {
        match i {
            0 => p.amount = r.u64()?,
            1 => p.secret = r.string()?,
            2 => p.c = to_hex(&r.bytes()?),
            3 => p.has_dleq = r.option(cbor::Reader::any)?.is_some(),
            _ => p.has_witness = r.option(cbor::Reader::any)?.is_some(),
        }
        Ok(())
    })?;
    if seen & 0b111 != 0b111 {
        return Err(cbor::Error);
    }
    Ok(p)
}

// ---- shared -----------------------------------------------------------------

fn check_proof_count(count: usize, limits: &TokenLimits) -> Result<(), TokenError> {
    if count == 0 {
        return Err(TokenError::NoProofs);
    }
    if count > limits.max_proofs {
        return Err(TokenError::TooManyProofs {
            count,
            max: limits.max_proofs,
        });
    }
    Ok(())
}

fn finish(
    version: TokenVersion,
    mint: String,
    unit: String,
    memo: Option<String>,
    proofs: Vec<Proof>,
) -> Result<Token, TokenError> {
    let mut total: u64 = 0;
    for p in &proofs {
        if p.amount == 0 {
            return Err(TokenError::ZeroAmount);
        }
        if p.keyset_id.is_empty() {
            return Err(TokenError::EmptyField("keyset id"));
        }
        if p.secret.is_empty() {
            return Err(TokenError::EmptyField("secret"));
        }
        if p.c.is_empty() {
            return Err(TokenError::EmptyField("C"));
        }
        total = total
            .checked_add(p.amount)
            .ok_or(TokenError::AmountOverflow)?;
    }
    let unit = normalize_unit(&unit);
    if unit.is_empty() {
        return Err(TokenError::EmptyField("unit"));
    }
    let mut secrets: Vec<&str> = proofs.iter().map(|p| p.secret.as_str()).collect();
    secrets.sort_unstable();
    if secrets.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(TokenError::DuplicateProof);
    }
    Ok(Token {
        version,
        mint,
        unit,
        memo,
        proofs,
        total,
    })
}

/// The unit as cdk's `CurrencyUnit::from_str` reads it, so that a token's
/// unit equals the configured unit exactly when cdk's wallet would take it:
///
/// * a known unit (`sat`, `msat`, `usd`, `eur`, `auth`) is recognised by
///   Unicode upper case, untrimmed (`SAT`, `Sat`, `ſat` are all `sat`);
/// * any other unit is a custom unit: surrounding spaces, tabs, CR and LF
///   trimmed, lower case by Unicode rules (cdk also applies NFC, which never
///   turns a non-ASCII unit into one of the ASCII units a config allows);
/// * a custom unit that would read as a known one (`" sat"`) is a different
///   unit to cdk (`Custom("sat") != Sat`), so it is kept as it came, which
///   matches no configured unit.
fn normalize_unit(unit: &str) -> String {
    const KNOWN: [&str; 5] = ["sat", "msat", "usd", "eur", "auth"];
    let upper = unit.to_uppercase();
    if let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(&upper)) {
        return (*known).to_string();
    }
    let custom = unit.trim_matches([' ', '\t', '\r', '\n']).to_lowercase();
    if KNOWN.contains(&custom.as_str()) {
        unit.to_string()
    } else {
        custom
    }
}

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}
