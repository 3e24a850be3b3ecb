//! What a path costs.

use crate::challenge::Challenge;

/// A price tier after compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTier {
    /// 0 for the default price, `i + 1` for `tiers[i]` of the config: a
    /// stable index for tables precomputed per tier (such as 402 answers).
    pub index: usize,
    /// The tier's id; `None` for the default price.
    pub id: Option<String>,
    /// The normalised path prefix (`/` for the default price).
    pub prefix: String,
    /// The price, in the config's unit.
    pub amount: u64,
    /// On a lease tier: the seconds that `amount` buys.
    pub lease_seconds: Option<u64>,
    /// The tier's 402 answer, encoded once.
    pub challenge: Challenge,
}

/// The price of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Price<'a> {
    /// Under a free path: let through, no payment.
    Free,
    /// Paid, at this tier's price.
    Paid(&'a PriceTier),
}

impl Price<'_> {
    /// The amount to pay (0 when free).
    pub fn amount(&self) -> u64 {
        match self {
            Price::Free => 0,
            Price::Paid(t) => t.amount,
        }
    }
}
