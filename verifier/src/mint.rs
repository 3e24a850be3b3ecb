//! What the redeemer needs of a mint's wallet, as a trait: the real one is
//! [`crate::wallet::MintWallet`] (cdk, over the wallet store); the unit
//! tests of the redeemer use a fake that stands in for the mint.

use std::future::Future;

use cdk::nuts::PublicKey;

use crate::swap_gate::{GateError, SwapGuard};
use crate::wallet::Settlement;

/// One accepted mint's wallet, as the redeemer uses it.
pub trait MintOps: Send + Sync {
    /// The mint URL, normalised.
    fn url(&self) -> &str;
    /// One swap (or settlement) at a time per mint (across replicas on a
    /// shared store).
    fn swap_gate(&self) -> impl Future<Output = Result<SwapGuard<'_>, GateError>> + Send;
    /// Swaps a token (as cdk parses it) into the wallet; the amount
    /// received, net of the mint's input fees.
    fn receive(&self, token: &str) -> impl Future<Output = Result<u64, cdk::Error>> + Send;
    /// Whether any of these proofs is pending in the wallet (an earlier
    /// swap of them did not finish).
    fn has_pending(
        &self,
        ys: &[PublicKey],
    ) -> impl Future<Output = Result<bool, cdk::Error>> + Send;
    /// Settles unfinished operations with the mint.
    fn settle(&self) -> impl Future<Output = Result<Settlement, cdk::Error>> + Send;
    /// Forgets a receive of exactly these proofs that the mint refused.
    fn discard_refused_receive(
        &self,
        ys: &[PublicKey],
    ) -> impl Future<Output = Result<usize, cdk::Error>> + Send;
    /// Skips the NUT-13 counter ahead (after the mint said our outputs were
    /// signed already).
    fn skip_counter(&self, by: u32) -> impl Future<Output = Result<(), cdk::Error>> + Send;
    /// What a completed receive of exactly these proofs brought in.
    fn completed_receive(
        &self,
        ys: &[PublicKey],
    ) -> impl Future<Output = Result<Option<u64>, cdk::Error>> + Send;
    /// Reloads the mint's keysets and fees.
    fn reload_fees(&self) -> impl Future<Output = Result<(), cdk::Error>> + Send;
    /// A token worth `amount` less the mint's fee for making it.
    fn make_refund(&self, amount: u64) -> impl Future<Output = Result<String, cdk::Error>> + Send;
}
