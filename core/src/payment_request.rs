//! NUT-18 payment requests, as NUT-24 puts them in a 402's `X-Cashu` header:
//! `creqA` + base64url(CBOR) of the amount `a`, the unit `u` and the accepted
//! mints `m`. No transport: the token is sent in-band, on the retried request.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use serde::Serialize;

/// The prefix of a version-A (CBOR) payment request.
pub const PREFIX: &str = "creqA";

#[derive(Serialize)]
struct Request<'a> {
    a: u64,
    u: &'a str,
    m: &'a [String],
}

/// Encodes the payment request of a price. Returns `None` only if CBOR
/// serialisation fails, which it does not for these field types.
pub fn encode(amount: u64, unit: &str, mints: &[String]) -> Option<String> {
    let mut cbor = Vec::with_capacity(64 + mints.iter().map(String::len).sum::<usize>());
    ciborium::ser::into_writer(
        &Request {
            a: amount,
            u: unit,
            m: mints,
        },
        &mut cbor,
    )
    .ok()?;
    let mut out = String::with_capacity(PREFIX.len() + cbor.len() * 4 / 3 + 4);
    out.push_str(PREFIX);
    URL_SAFE.encode_string(&cbor, &mut out);
    Some(out)
}
