//! A payer's Cashu wallet for tests, on cdk 0.18.3 (the same library the
//! verifier redeems with), in memory, unit sat, without client-side rate
//! limiting (cdk's default paces a wallet to about 20 requests a minute per
//! mint, far too slow for tests).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdk::amount::SplitTarget;
use cdk::mint_url::MintUrl;
use cdk::nuts::nut00::ProofsMethods;
use cdk::nuts::{
    CheckStateRequest, CurrencyUnit, KeySetInfo, MintQuoteState, PaymentMethod, Proofs, State,
    Token,
};
use cdk::wallet::{ReceiveOptions, SendOptions, Wallet, WalletBuilder};
use cdk::Amount;

/// How long [`TestWallet::fund`] waits for the fake Lightning backend to pay
/// a mint quote.
pub const FUND_TIMEOUT: Duration = Duration::from_secs(30);

/// A cdk wallet for one mint, unit sat. Clones share the same store.
#[derive(Debug, Clone)]
pub struct TestWallet {
    wallet: Wallet,
}

impl TestWallet {
    /// A `cashuB` token of `proofs` from this wallet's mint, in sat (for
    /// proofs from [`TestWallet::mint_proofs`]).
    pub fn token_of(&self, proofs: Proofs) -> String {
        Token::new(
            self.inner().mint_url.clone(),
            proofs,
            None,
            CurrencyUnit::Sat,
        )
        .to_string()
    }

    /// Mints `count` proofs of `value` sat (fake Lightning) and returns
    /// them, without making a token: a load driver makes its tokens from
    /// them itself, faster than the wallet's send. The proofs stay listed
    /// as the wallet's.
    pub async fn mint_proofs(&self, value: u64, count: u64) -> Proofs {
        let w = self.inner();
        let amount = count * value;
        let quote = w
            .mint_quote(
                PaymentMethod::BOLT11,
                Some(Amount::from(amount)),
                None,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("payer: mint quote for {amount}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = w
                .check_mint_quote_status(&quote.id)
                .await
                .unwrap_or_else(|e| panic!("payer: mint quote status: {e}"));
            if status.state == MintQuoteState::Paid {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "payer: the mint quote was not paid"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let split = SplitTarget::Values(vec![Amount::from(value); count as usize]);
        let proofs = w
            .mint(&quote.id, split, None)
            .await
            .unwrap_or_else(|e| panic!("payer: minting {amount}: {e}"));
        assert_eq!(proofs.len() as u64, count, "payer: minted {proofs:?}");
        proofs
    }

    /// A new empty wallet (fresh random seed, in-memory SQLite store) for the
    /// mint at `mint_url`, with `recover_incomplete_sagas` run as cdk asks.
    /// Panics when the wallet cannot be built.
    pub async fn new(mint_url: &str) -> Self {
        let url = MintUrl::from_str(mint_url)
            .unwrap_or_else(|err| panic!("wallet: bad mint url {mint_url:?}: {err}"));
        let store = cdk_sqlite::wallet::memory::empty()
            .await
            .unwrap_or_else(|err| panic!("wallet: cannot open an in-memory store: {err}"));
        let seed: [u8; 64] = random_seed();
        let wallet = WalletBuilder::new()
            .mint_url(url)
            .unit(CurrencyUnit::Sat)
            .localstore(Arc::new(store))
            .seed(seed)
            .without_rate_limiting()
            .build()
            .unwrap_or_else(|err| panic!("wallet: cannot build for {mint_url}: {err}"));
        wallet
            .recover_incomplete_sagas()
            .await
            .unwrap_or_else(|err| panic!("wallet: recover_incomplete_sagas failed: {err}"));
        Self { wallet }
    }

    /// The cdk wallet underneath, for anything this helper does not cover.
    pub fn inner(&self) -> &Wallet {
        &self.wallet
    }

    /// The wallet's mint URL (cdk-normalised: no trailing `/`).
    pub fn mint_url(&self) -> String {
        self.wallet.mint_url.to_string()
    }

    /// Mints `amount` sat into the wallet: a BOLT11 mint quote, which the
    /// mint's fake Lightning backend pays by itself, polled until paid, then
    /// minted. Returns the amount minted.
    pub async fn fund(&self, amount: u64) -> Amount {
        let quote = self
            .wallet
            .mint_quote(
                PaymentMethod::BOLT11,
                Some(Amount::from(amount)),
                None,
                None,
            )
            .await
            .unwrap_or_else(|err| panic!("wallet: mint quote for {amount} failed: {err}"));
        let deadline = Instant::now() + FUND_TIMEOUT;
        loop {
            let status = self
                .wallet
                .check_mint_quote_status(&quote.id)
                .await
                .unwrap_or_else(|err| panic!("wallet: mint quote {} status: {err}", quote.id));
            match status.state {
                MintQuoteState::Paid => break,
                MintQuoteState::Issued => {
                    panic!("wallet: mint quote {} already issued", quote.id)
                }
                MintQuoteState::Unpaid => {}
            }
            if Instant::now() >= deadline {
                panic!(
                    "wallet: mint quote {} for {amount} not paid within {FUND_TIMEOUT:?} \
                     (is the mint's payment backend the fake wallet?)",
                    quote.id
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let proofs = self
            .wallet
            .mint(&quote.id, SplitTarget::default(), None)
            .await
            .unwrap_or_else(|err| panic!("wallet: minting quote {} failed: {err}", quote.id));
        let minted = proofs
            .total_amount()
            .unwrap_or_else(|err| panic!("wallet: minted proofs do not add up: {err}"));
        assert_eq!(
            minted,
            Amount::from(amount),
            "wallet: minted {minted} for a quote of {amount}"
        );
        minted
    }

    /// A `cashuB` (V4) token worth exactly `amount` sat at face value. Any
    /// swap fee needed to make exact change is paid from the wallet's
    /// balance; the redeem fee (the mint's input fee on the token's proofs)
    /// is the receiver's, as usual: see [`TestWallet::redeem_fee`].
    pub async fn token(&self, amount: u64) -> String {
        let token = self.send_token(amount).await;
        let encoded = token.to_string();
        assert!(
            encoded.starts_with("cashuB"),
            "wallet: cdk made {encoded:.10}… where a cashuB token was expected"
        );
        encoded
    }

    /// A `cashuA` (V3, JSON) token worth exactly `amount` sat at face value,
    /// as cdk writes one: its proofs carry keyset ids in the short form (for
    /// cdk-mintd's v2 keysets, the first 8 bytes: `01` + 14 hex digits).
    pub async fn token_v3(&self, amount: u64) -> String {
        let encoded = self.send_token(amount).await.to_v3_string();
        assert!(
            encoded.starts_with("cashuA"),
            "wallet: cdk made {encoded:.10}… where a cashuA token was expected"
        );
        encoded
    }

    /// The wallet's spendable balance.
    pub async fn balance(&self) -> Amount {
        self.wallet
            .total_balance()
            .await
            .unwrap_or_else(|err| panic!("wallet: balance: {err}"))
    }

    /// Asks the mint (NUT-07 check state) about every proof of `token`: true
    /// iff all are unspent. `token` must be from this wallet's mint.
    pub async fn is_spendable(&self, token: &str) -> bool {
        self.proof_states(token)
            .await
            .iter()
            .all(|state| *state == State::Unspent)
    }

    /// The mint's state for each proof of `token` (NUT-07), in token order.
    pub async fn proof_states(&self, token: &str) -> Vec<State> {
        let token = self.parse_own_token(token);
        let proofs = self.token_proofs(&token).await;
        let ys = proofs
            .ys()
            .unwrap_or_else(|err| panic!("wallet: cannot hash the token's proofs: {err}"));
        let response = self
            .wallet
            .mint_connector()
            .post_check_state(CheckStateRequest { ys: ys.clone() })
            .await
            .unwrap_or_else(|err| panic!("wallet: NUT-07 check state failed: {err}"));
        ys.iter()
            .map(|y| {
                response
                    .states
                    .iter()
                    .find(|state| state.y == *y)
                    .map(|state| state.state)
                    .unwrap_or_else(|| panic!("wallet: the mint gave no state for a proof"))
            })
            .collect()
    }

    /// The input fee the mint charges to swap `token`'s proofs (what a
    /// receiver loses: net amount = face value - this).
    pub async fn redeem_fee(&self, token: &str) -> Amount {
        let token = self.parse_own_token(token);
        let proofs = self.token_proofs(&token).await;
        self.wallet
            .get_proofs_fee(&proofs)
            .await
            .unwrap_or_else(|err| panic!("wallet: fee for the token's proofs: {err}"))
            .total
    }

    /// Redeems `token` into this wallet (a swap at the mint) and returns the
    /// amount received, net of the mint's input fees. Panics on failure.
    pub async fn receive(&self, token: &str) -> Amount {
        self.try_receive(token)
            .await
            .unwrap_or_else(|err| panic!("wallet: receive failed: {err}"))
    }

    /// Like [`TestWallet::receive`], returning cdk's error (for a spent
    /// token, say) instead of panicking.
    pub async fn try_receive(&self, token: &str) -> Result<Amount, cdk::Error> {
        self.wallet.receive(token, ReceiveOptions::default()).await
    }

    /// prepare_send/confirm for exactly `amount`, checked at face value.
    async fn send_token(&self, amount: u64) -> Token {
        let wanted = Amount::from(amount);
        let prepared = self
            .wallet
            .prepare_send(wanted, SendOptions::default())
            .await
            .unwrap_or_else(|err| {
                panic!("wallet: cannot prepare a send of {amount} (balance too low?): {err}")
            });
        let token = prepared
            .confirm(None)
            .await
            .unwrap_or_else(|err| panic!("wallet: cannot confirm a send of {amount}: {err}"));
        let value = token
            .value()
            .unwrap_or_else(|err| panic!("wallet: token value: {err}"));
        assert_eq!(
            value, wanted,
            "wallet: cdk made a token of {value} for a send of {amount}"
        );
        token
    }

    fn parse_own_token(&self, token: &str) -> Token {
        let token = Token::from_str(token.trim())
            .unwrap_or_else(|err| panic!("wallet: not a Cashu token: {err}"));
        let mint = token
            .mint_url()
            .unwrap_or_else(|err| panic!("wallet: token has no single mint: {err}"));
        assert_eq!(
            mint, self.wallet.mint_url,
            "wallet: the token is from another mint than this wallet's"
        );
        token
    }

    /// The token's proofs with full keyset ids (V4 tokens carry short ones).
    async fn token_proofs(&self, token: &Token) -> Proofs {
        let keysets: Vec<KeySetInfo> = self
            .wallet
            .mint_connector()
            .get_mint_keysets()
            .await
            .unwrap_or_else(|err| panic!("wallet: cannot fetch the mint's keysets: {err}"))
            .keysets;
        token
            .proofs(&keysets)
            .unwrap_or_else(|err| panic!("wallet: cannot read the token's proofs: {err}"))
    }
}

fn random_seed() -> [u8; 64] {
    let mut seed = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut seed);
    seed
}
