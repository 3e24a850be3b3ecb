//! `paygress wallet balance|send|melt|fund`: operators get their money out
//! (and payers put money in).
//!
//! The commands open the same store the verifier uses (`<data dir>/wallet.sqlite`
//! and the seed beside it, or `PAYGRESS_MNEMONIC`; or the replicas' shared
//! PostgreSQL store with `--database-url`, where a send or a melt takes the
//! replicas' swap gate); they never run saga recovery, which belongs to the
//! running verifier.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cdk::amount::SplitTarget;
use cdk::nuts::{MintQuoteState, PaymentMethod, State};
use cdk::wallet::SendOptions;
use cdk::Amount;
use serde_json::json;

use crate::seed;
use crate::store::{self, Location};
use crate::wallet::{build_mint_wallet, open_store, MintWallet, STORE_FILE};

/// Opens the wallet of one mint in the data dir. `create` allows a new data
/// dir (and seed); otherwise the store must exist.
pub async fn open_wallet(
    data_dir: &Path,
    mint: &str,
    unit: &str,
    create: bool,
) -> Result<MintWallet> {
    open_wallet_at(
        &Location::DataDir(data_dir.to_path_buf()),
        mint,
        unit,
        create,
    )
    .await
}

/// Opens the wallet of one mint wherever it lives.
pub async fn open_wallet_at(
    location: &Location,
    mint: &str,
    unit: &str,
    create: bool,
) -> Result<MintWallet> {
    let env = mnemonic_from_env();
    let (store, seed, _, pool) = store::open_for_command(location, env.as_deref(), create).await?;
    Ok(build_mint_wallet(&store, pool.as_ref(), mint, unit, seed)?)
}

fn mnemonic_from_env() -> Option<String> {
    std::env::var(seed::MNEMONIC_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// `wallet balance`: per mint and unit, the unspent balance and what is
/// pending (inputs of redemptions or sends not settled yet), as JSON.
pub async fn balance(location: &Location) -> Result<String> {
    let store = match location {
        Location::DataDir(dir) => {
            if !dir.join(STORE_FILE).exists() {
                bail!("no wallet in {} (no {STORE_FILE})", dir.display());
            }
            let store: store::WalletStore = open_store(dir).await?;
            store
        }
        Location::Postgres(_) => {
            let env = mnemonic_from_env();
            store::open_for_command(location, env.as_deref(), false)
                .await?
                .0
        }
    };
    let proofs = store
        .get_proofs(None, None, None, None)
        .await
        .context("reading the wallet's proofs")?;
    // (balance, pending) per (mint, unit)
    let mut per_mint: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for p in proofs {
        let amount = u64::from(p.proof.amount);
        let unit = p.unit.to_string();
        let entry = per_mint
            .entry((p.mint_url.to_string(), unit.clone()))
            .or_default();
        match p.state {
            State::Unspent => {
                entry.0 = entry.0.saturating_add(amount);
                let t = totals.entry(unit).or_default();
                *t = t.saturating_add(amount);
            }
            State::Pending | State::Reserved | State::PendingSpent => {
                entry.1 = entry.1.saturating_add(amount);
            }
            State::Spent => {}
        }
    }
    let mints: Vec<_> = per_mint
        .into_iter()
        .map(|((mint, unit), (balance, pending))| {
            json!({"mint": mint, "unit": unit, "balance": balance, "pending": pending})
        })
        .collect();
    Ok(serde_json::to_string_pretty(
        &json!({"mints": mints, "total": totals}),
    )?)
}

/// `wallet send`: a cashuB token of `amount` from `mint`'s proofs.
pub async fn send(location: &Location, mint: &str, unit: &str, amount: u64) -> Result<String> {
    let w = open_wallet_at(location, mint, unit, false).await?;
    let _gate = w.swap_gate().await?;
    send_token(&w, amount, false).await
}

/// A cashuB token of `amount`; with `include_fee`, large enough that the
/// receiver nets `amount` after the mint's input fee.
pub async fn send_token(w: &MintWallet, amount: u64, include_fee: bool) -> Result<String> {
    let options = SendOptions {
        include_fee,
        ..SendOptions::default()
    };
    let prepared = w
        .wallet
        .prepare_send(Amount::from(amount), options)
        .await
        .with_context(|| format!("cannot send {amount} from {} (balance too low?)", w.url))?;
    let token = prepared
        .confirm(None)
        .await
        .context("confirming the send")?;
    Ok(token.to_string())
}

/// `wallet melt`: pays a BOLT11 invoice.
pub async fn melt(location: &Location, mint: &str, unit: &str, invoice: &str) -> Result<String> {
    let w = open_wallet_at(location, mint, unit, false).await?;
    let _gate = w.swap_gate().await?;
    let quote = w
        .wallet
        .melt_quote(PaymentMethod::BOLT11, invoice.trim(), None, None)
        .await
        .context("asking the mint for a melt quote")?;
    let prepared = w
        .wallet
        .prepare_melt(&quote.id, Default::default())
        .await
        .context("preparing the melt")?;
    let done = prepared.confirm().await.context("paying the invoice")?;
    Ok(serde_json::to_string_pretty(&json!({
        "mint": w.url,
        "quote": done.quote_id(),
        "state": done.state().to_string(),
        "amount": u64::from(done.amount()),
        "fee_paid": u64::from(done.fee_paid()),
        "preimage": done.payment_proof(),
    }))?)
}

/// `wallet restore`: recovers from the mint, with the mnemonic (the data
/// dir's `seed` or `PAYGRESS_MNEMONIC`), every proof that the replica
/// `replica_id` derived (NUT-13), into this store. Without an id, the data
/// dir's own replica. Run it once per replica id that ever used the mnemonic
/// (each data dir lists its ids in its `replica` file, and the verifier logs
/// its id at start). On a shared PostgreSQL store every replica derives from
/// the mnemonic's own seed: one restore per mint recovers them all.
pub async fn restore(
    location: &Location,
    mint: &str,
    unit: &str,
    replica_id: Option<&str>,
) -> Result<String> {
    let env = mnemonic_from_env();
    if let Location::DataDir(dir) = location {
        if env.is_none() && !dir.join(seed::SEED_FILE).exists() {
            bail!(
                "no seed in {} and {} is not set: restoring needs the mnemonic",
                dir.display(),
                seed::MNEMONIC_VAR
            );
        }
    }
    let (store, own_seed, own_id, pool) =
        store::open_for_command(location, env.as_deref(), true).await?;
    let (id, wallet_seed) = match (replica_id.map(str::trim), location) {
        (None, _) => (own_id, own_seed),
        (Some(id), Location::Postgres(_)) => {
            let words = env.as_deref().unwrap_or_default();
            (
                id.to_string(),
                seed::replica_seed(&seed::from_mnemonic(words)?, id),
            )
        }
        (Some(id), Location::DataDir(dir)) => {
            let (base, _) = seed::load_or_create(dir, env.as_deref())?;
            (id.to_string(), seed::replica_seed(&base, id))
        }
    };
    let w = build_mint_wallet(&store, pool.as_ref(), mint, unit, wallet_seed)?;
    let _gate = w.swap_gate().await?;
    let restored = w
        .wallet
        .restore()
        .await
        .with_context(|| format!("restoring replica {id:?} from {}", w.url))?;
    Ok(serde_json::to_string_pretty(&json!({
        "mint": w.url,
        "unit": unit,
        "replica": id,
        "unspent": u64::from(restored.unspent),
        "spent": u64::from(restored.spent),
        "pending": u64::from(restored.pending),
    }))?)
}

/// `wallet fund`: a mint quote, its invoice printed, waited for, minted.
pub async fn fund(
    data_dir: &Path,
    mint: &str,
    unit: &str,
    amount: u64,
    timeout: Duration,
    mut print_invoice: impl FnMut(&str),
) -> Result<String> {
    let w = open_wallet(data_dir, mint, unit, true).await?;
    let quote = w
        .wallet
        .mint_quote(
            PaymentMethod::BOLT11,
            Some(Amount::from(amount)),
            None,
            None,
        )
        .await
        .context("asking the mint for a mint quote")?;
    print_invoice(&quote.request);
    let deadline = Instant::now() + timeout;
    loop {
        let status = w
            .wallet
            .check_mint_quote_status(&quote.id)
            .await
            .context("checking the mint quote")?;
        match status.state {
            MintQuoteState::Paid => break,
            MintQuoteState::Issued => bail!("mint quote {} was already issued", quote.id),
            MintQuoteState::Unpaid => {}
        }
        if Instant::now() >= deadline {
            bail!("the invoice was not paid within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let proofs = w
        .wallet
        .mint(&quote.id, SplitTarget::default(), None)
        .await
        .context("minting")?;
    let minted: u64 = proofs.iter().map(|p| u64::from(p.amount)).sum();
    Ok(serde_json::to_string_pretty(&json!({
        "mint": w.url,
        "unit": unit,
        "minted": minted,
    }))?)
}
