//! The 402 answer of a price: the NUT-18 payment request for `X-Cashu`, the
//! JSON body and the browser's page, encoded once per tier when the config
//! is compiled, and shared by the filter and the verifier.

use crate::browser;
use crate::outcome::payment_required_body;
use crate::payment_request;

/// A `402 Payment Required` answer, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The price.
    pub amount: u64,
    /// The `X-Cashu` header value: a NUT-18 `creqA` payment request
    /// (amount, unit, accepted mints; no transport).
    pub payment_request: String,
    /// The JSON body:
    /// `{"error":"Payment Required","amount":…,"unit":…,"mints":[…]}`, with
    /// `"tier"` when a tier set the price and `"lease_seconds"` on a lease
    /// tier.
    pub body: String,
    /// The page for a browser ([`browser::payment_page`]: price, mints, the
    /// payment request as a QR code and as text, a form to pay with a
    /// token), sent instead of `body` when `Accept` prefers `text/html`.
    /// `Some` for every tier's answer (built with the config); `None` for an
    /// answer encoded at request time for a raised price
    /// ([`CompiledConfig::challenge_for`](crate::CompiledConfig::challenge_for)),
    /// whose page [`CompiledConfig::payment_page`](crate::CompiledConfig::payment_page)
    /// builds only when a browser asks.
    pub html: Option<String>,
}

impl Challenge {
    /// Encodes the answer for `amount` (`None` when no payment request can
    /// carry it: an amount or a mint list out of NUT-18's range).
    /// `lease_seconds` is what the price buys on a lease tier.
    pub fn new(
        amount: u64,
        tier: Option<&str>,
        lease_seconds: Option<u64>,
        unit: &str,
        mints: &[String],
    ) -> Option<Challenge> {
        let mut challenge = Challenge::without_page(amount, tier, lease_seconds, unit, mints)?;
        challenge.html = Some(browser::payment_page(
            amount,
            unit,
            mints,
            tier,
            lease_seconds,
            &challenge.payment_request,
        ));
        Some(challenge)
    }

    /// [`Challenge::new`] without the browser's page (`html` is `None`):
    /// for an answer encoded per request, whose page is built only if a
    /// browser asks.
    pub fn without_page(
        amount: u64,
        tier: Option<&str>,
        lease_seconds: Option<u64>,
        unit: &str,
        mints: &[String],
    ) -> Option<Challenge> {
        Some(Challenge {
            amount,
            payment_request: payment_request::encode(amount, unit, mints)?,
            body: payment_required_body(amount, unit, mints, tier, lease_seconds),
            html: None,
        })
    }
}
