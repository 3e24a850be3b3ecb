//! What `/auth` decides, with no HTTP in it: the request as the verifier
//! reads it ([`AuthRequest`]), the answer ([`Decision`]) and the price of
//! the original request ([`price_of`]).

use std::time::Duration;

use paygress_core::pass::Claims;
use paygress_core::pricing::Price;
use paygress_core::CompiledConfig;

use crate::error::AuthError;

/// An `/auth` request, read from whatever ingress sent it
/// (`crate::ingress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The request the proxy asks about.
    pub original: OriginalRequest,
    /// The token, if one was sent. A token header that cannot be read is an
    /// error, answered only when the path is paid.
    pub token: Result<Option<String>, AuthError>,
    /// A lease's pass, if one was presented (`X-Paygress-Pass`, `Bearer`,
    /// or the `paygress_pass` cookie).
    pub pass: Option<String>,
    /// Whether the client came over HTTPS (`X-Forwarded-Proto`): the pass
    /// cookie is then `Secure`.
    pub secure: bool,
    /// A caller's `X-Required-Amount`: raises the price, never lowers it.
    pub required_amount: Option<u64>,
    /// How long the caller waits for the answer.
    pub deadline: Duration,
}

/// The request that the proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: String,
    /// The request target (origin-form or absolute); priced after
    /// paygress-core's normalisation.
    pub target: String,
    pub host: Option<String>,
    /// Which input style named it: `path`, `x-original-url`,
    /// `x-forwarded-uri` or `none`.
    pub source: &'static str,
    /// The targets named by the other input styles present, if any: when
    /// the sources disagree, the highest price among them all applies.
    pub others: Vec<String>,
}

impl OriginalRequest {
    /// Every target its sources name: the first, then the others.
    pub fn targets(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.target).chain(self.others.iter())
    }
}

/// What `/auth` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let through: a free path, a paid one whose token was redeemed, or a
    /// lease tier's path with a valid pass.
    Allow(Grant),
    /// No token on a paid path.
    PaymentRequired {
        amount: u64,
        /// The [`PriceTier::index`](paygress_core::pricing::PriceTier) of
        /// the tier that priced the path (its 402 is encoded once).
        tier_index: usize,
    },
    /// A token that cannot pay, or a mint or verifier that cannot redeem.
    Refuse(AuthError),
}

/// A request let through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// The payment redeemed for it, if any.
    pub payment: Option<Payment>,
    /// The lease it went through on (a pass), or bought or extended.
    pub lease: Option<LeaseGrant>,
}

/// A request let through on a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease as it now stands.
    pub claims: Claims,
    /// A new pass, when this request bought or extended the lease, with its
    /// `Set-Cookie` value.
    pub issued: Option<IssuedPass>,
}

/// A pass handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedPass {
    pub pass: String,
    pub set_cookie: String,
}

/// A redeemed payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Received, net of the mint's input fees.
    pub amount: u64,
    /// The tier that priced the path (none when the default price or a
    /// caller's `X-Required-Amount` did).
    pub tier: Option<String>,
    /// The pseudonymous payer id (a short hash of the proofs' secrets).
    pub user_id: String,
    pub mint: String,
}

/// The price of the original request: the highest among the prices of every
/// target its sources name (each at its highest reading); free only when
/// every target is. A target whose authority cannot be read one way is
/// refused.
pub fn price_of<'c>(
    config: &'c CompiledConfig,
    original: &OriginalRequest,
) -> Result<Price<'c>, AuthError> {
    let mut best = Price::Free;
    for target in original.targets() {
        let price = config
            .try_price(target)
            .map_err(|e| AuthError::MalformedRequest(e.to_string()))?;
        if price.amount() > best.amount() {
            best = price;
        }
    }
    Ok(best)
}
