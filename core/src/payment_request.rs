//! NUT-18 payment requests, as NUT-24 puts them in a 402's `X-Cashu` header:
//! `creqA` + base64url(CBOR) of the amount `a`, the unit `u` and the accepted
//! mints `m`. No transport: the token is sent in-band, on the retried request.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;

use crate::cbor;

/// The prefix of a version-A (CBOR) payment request.
pub const PREFIX: &str = "creqA";

/// Encodes the payment request of a price: the CBOR map `{"a": amount,
/// "u": unit, "m": [mints]}`, byte for byte as ciborium serialises the
/// struct. Always `Some` (kept an `Option` for callers that handle a
/// request that cannot be encoded).
pub fn encode(amount: u64, unit: &str, mints: &[String]) -> Option<String> {
    let mut cbor = Vec::with_capacity(64 + mints.iter().map(String::len).sum::<usize>());
    cbor::write_map(&mut cbor, 3);
    cbor::write_text(&mut cbor, "a");
    cbor::write_u64(&mut cbor, amount);
    cbor::write_text(&mut cbor, "u");
    cbor::write_text(&mut cbor, unit);
    cbor::write_text(&mut cbor, "m");
    cbor::write_array(&mut cbor, mints.len());
    for mint in mints {
        cbor::write_text(&mut cbor, mint);
    }
    let mut out = String::with_capacity(PREFIX.len() + cbor.len() * 4 / 3 + 4);
    out.push_str(PREFIX);
    URL_SAFE.encode_string(&cbor, &mut out);
    Some(out)
}
