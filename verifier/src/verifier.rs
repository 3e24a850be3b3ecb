//! The verifier: its state and the `/auth` decision, with no HTTP in it
//! (the ingress-specific reading and answering is in `crate::ingress`, the
//! routes in `crate::server`).
//!
//! [`Verifier::decide`]:
//! 1. prices the original request by the verifier's own tier table (every
//!    reading of every source; see [`crate::decision::price_of`]), raised
//!    (never lowered) by a caller's `X-Required-Amount`;
//! 2. no token on a paid path: 402;
//! 3. before any swap: decode, mint accepted, unit, face value minus the
//!    mint's real input fee ≥ price (paygress-core's `precheck`), and the
//!    NUT-12 DLEQ proofs the token carries;
//! 4. the swap (see [`crate::redeem`]) within the request's deadline, the
//!    amount received against the price, and exactly one grant per token.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use paygress_core::pass::{self, Claims, PassError};
use paygress_core::pricing::{Price, PriceTier};
use paygress_core::{pass_carrier, precheck, Token, TokenLimits};
use thiserror::Error;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::decision::{price_of, AuthRequest, Decision, Grant, IssuedPass, LeaseGrant, Payment};
use crate::error::AuthError;
use crate::ids;
use crate::ledger::{LeasePurchase, LeaseRecord, Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::pods::Pods;
use crate::redeem::{Redeemer, RefundWhy};
use crate::seed;
use crate::store::{self, Location};
use crate::wallet::{DleqError, FeeError, MintWallet, WalletError, Wallets};

/// The verifier: settings, the mints' wallets, the redeemer and metrics.
#[derive(Debug)]
pub struct Verifier {
    pub settings: Settings,
    /// The pods of leases, when `ENABLE_POD_PROVISIONING=true`.
    pub pods: Option<Pods>,
    pub wallets: Wallets,
    pub redeemer: Redeemer,
    pub metrics: Arc<Metrics>,
    /// The redemption tasks (shutdown waits for them).
    pub tracker: TaskTracker,
    /// This replica's id (its name in metrics and in leader election).
    pub replica: String,
    /// Where the wallet and the ledger live.
    pub location: Location,
    draining: AtomicBool,
}

/// Why the verifier could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Permissions(#[from] crate::files::PermissionError),
    #[error(
        "ENABLE_POD_PROVISIONING=true but no Kubernetes API to talk to ({0}); run in a pod with \
         a service account, or set KUBECONFIG"
    )]
    Kube(String),
}

impl Verifier {
    pub fn new(settings: Settings, wallets: Wallets, ledger: Ledger) -> Self {
        let metrics = Arc::new(Metrics::new());
        for m in wallets.all() {
            metrics.mint_ready(&m.url, false);
        }
        Verifier {
            redeemer: Redeemer::new(
                metrics.clone(),
                settings.mint_timeout,
                ledger,
                settings.max_redemptions,
            ),
            settings,
            pods: None,
            wallets,
            metrics,
            tracker: TaskTracker::new(),
            replica: String::new(),
            location: Location::DataDir(std::path::PathBuf::new()),
            draining: AtomicBool::new(false),
        }
    }

    /// Whether shutdown has begun (no new redemptions).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins the shutdown.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Opens the seed, the wallets and the ledger at `location` (the data
    /// dir, or a PostgreSQL database that replicas share).
    pub async fn open(
        settings: Settings,
        location: &Location,
        data_dir: &Path,
        env_mnemonic: Option<&str>,
    ) -> Result<Arc<Verifier>, OpenError> {
        let opened = store::open(location, data_dir, env_mnemonic).await?;
        tracing::info!(
            store = %location.describe(),
            seed = ?opened.seed_origin,
            replica = %opened.replica.id,
            replica_from = opened.replica.origin,
            replica_history = ?opened.replica.history,
            "wallet seed"
        );
        let wallets = Wallets::new(
            opened.wallet,
            opened.pool.as_ref(),
            &settings.config.mints,
            &settings.config.unit,
            opened.seed,
        )?;
        let ledger = opened.ledger;
        crate::files::secure_data_dir(data_dir)?;
        let pods = if settings.pods.enabled {
            let mut config = kube::Config::infer()
                .await
                .map_err(|e| OpenError::Kube(e.to_string()))?;
            // No retries inside the client: a request has a deadline, and a
            // provisioning that cannot finish in it is refunded at once
            // rather than retried until the client has given up. (The
            // reaper's controller retries on its own.)
            config.default_retry = false;
            let client =
                kube::Client::try_from(config).map_err(|e| OpenError::Kube(e.to_string()))?;
            tracing::info!(
                namespace = %settings.pods.namespace,
                tiers = ?settings.pod_templates.keys().collect::<Vec<_>>(),
                "pods for leases: provisioning on"
            );
            Some(Pods::new(
                client,
                settings.pods.namespace.clone(),
                settings.pod_templates.clone(),
            ))
        } else {
            None
        };
        let mut verifier = Verifier::new(settings, wallets, ledger);
        verifier.pods = pods;
        verifier
            .metrics
            .set_replica(&opened.replica.id, location.kind());
        verifier.replica = opened.replica.id;
        verifier.location = location.clone();
        Ok(Arc::new(verifier))
    }

    /// Decides an `/auth` request now.
    pub async fn decide(self: &Arc<Self>, request: &AuthRequest) -> Decision {
        self.decide_at(request, unix_now()).await
    }

    /// Decides an `/auth` request at `now` (Unix seconds: passes expire by
    /// it, leases are extended from it).
    pub async fn decide_at(self: &Arc<Self>, request: &AuthRequest, now: u64) -> Decision {
        let config = &self.settings.config;
        let own = match price_of(config, &request.original) {
            Ok(Price::Paid(tier)) => Some(tier),
            Ok(Price::Free) => None,
            Err(e) => return Decision::Refuse(e),
        };
        let own_amount = own.map_or(0, |t| t.amount);
        // A caller's X-Required-Amount raises the price (then no tier set
        // it), on a free path too.
        let (price, tier) = match request.required_amount {
            Some(required) if required > own_amount => (required, None),
            _ => (own_amount, own.and_then(|t| t.id.clone())),
        };
        if price == 0 {
            return Decision::Allow(Grant::default());
        }
        let tier_index = own.map_or(0, |t| t.index);
        // A lease is sold (and a pass accepted) at the tier's own price only.
        let lease_tier = own.filter(|t| t.lease_seconds.is_some() && price == t.amount);
        let pass = request
            .pass
            .as_deref()
            .map(|p| pass::verify(p, config.pass_keys(), now));
        let raw = match &request.token {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                return self
                    .on_pass(request, pass, lease_tier, price, tier_index, now)
                    .await;
            }
            Err(e) => return Decision::Refuse(e.clone()),
        };
        let lease = lease_tier.and_then(|t| {
            // A genuine pass of this tier, valid or expired, is topped up;
            // any other pass beside a token is set aside: the token buys a
            // new lease.
            let existing = match pass {
                Some(Ok(claims) | Err(PassError::Expired(claims)))
                    if Some(claims.tier.as_str()) == t.id.as_deref() =>
                {
                    Some(claims)
                }
                _ => None,
            };
            Some(LeaseBasis {
                tier: t.id.clone()?,
                prefix: t.prefix.clone(),
                seconds: t.lease_seconds?,
                amount: t.amount,
                existing,
                now,
                secure: request.secure,
            })
        });
        let deadline = Instant::now() + request.deadline;
        match self.pay(raw, price, tier, deadline, lease).await {
            Ok(grant) => Decision::Allow(grant),
            Err(e) => Decision::Refuse(e),
        }
    }

    /// Decides on a paid path with no token: a valid pass of the path's
    /// lease tier lets it through; any other answer is a 402, or a 400 for
    /// a pass that is not genuine.
    async fn on_pass(
        &self,
        request: &AuthRequest,
        pass: Option<Result<Claims, PassError>>,
        lease_tier: Option<&PriceTier>,
        amount: u64,
        tier_index: usize,
        now: u64,
    ) -> Decision {
        let required = Decision::PaymentRequired { amount, tier_index };
        let Some(checked) = pass else {
            return required;
        };
        let config = &self.settings.config;
        let opens = |claims: &Claims| {
            lease_tier.is_some()
                && request
                    .original
                    .targets()
                    .all(|t| config.pass_opens(t, &claims.tier))
        };
        match checked {
            Ok(claims) if opens(&claims) => {
                self.metrics.pass("accepted");
                Decision::Allow(Grant {
                    payment: None,
                    lease: Some(LeaseGrant {
                        claims,
                        issued: None,
                    }),
                })
            }
            Ok(_) => {
                self.metrics.pass("refused");
                required
            }
            Err(PassError::Expired(claims)) => {
                // A lease topped up with another pass runs on: this pass
                // is stale, not the lease. A fresh pass, no payment.
                let refreshed = match lease_tier.filter(|_| opens(&claims)) {
                    Some(tier) => self.refreshed(&claims, tier, request.secure, now).await,
                    None => None,
                };
                match refreshed {
                    Some(lease) => {
                        self.metrics.pass("refreshed");
                        Decision::Allow(Grant {
                            payment: None,
                            lease: Some(lease),
                        })
                    }
                    None => {
                        self.metrics.pass("expired");
                        required
                    }
                }
            }
            Err(e) => {
                self.metrics.pass("refused");
                Decision::Refuse(AuthError::PassInvalid(e.to_string()))
            }
        }
    }

    /// A fresh pass for a lease whose pass has expired but which this
    /// verifier's ledger knows to run on (a top-up made with another pass).
    async fn refreshed(
        &self,
        claims: &Claims,
        tier: &PriceTier,
        secure: bool,
        now: u64,
    ) -> Option<LeaseGrant> {
        let record = self.redeemer.ledger().lease(&claims.lease).await.ok()??;
        if record.tier != claims.tier || record.expires_at <= now {
            return None;
        }
        let basis = LeaseBasis {
            tier: record.tier.clone(),
            prefix: tier.prefix.clone(),
            seconds: tier.lease_seconds.unwrap_or(0),
            amount: tier.amount,
            existing: None,
            now,
            secure,
        };
        self.issue(&record, &basis).ok()
    }

    /// Provisions (or extends) the pod of the lease a payment is about to
    /// buy, before the payment is claimed: on failure, the value received
    /// goes back to the client (and the same token retried gets the same
    /// refund), nothing is granted.
    async fn provision(
        &self,
        pods: &Pods,
        purchase: &LeasePurchase,
        received: u64,
        deadline: Instant,
        mint: &MintWallet,
        token: &Token,
    ) -> Result<(String, u64), AuthError> {
        let expires_at = self
            .redeemer
            .ledger()
            .expiry_after(purchase, received)
            .await
            .map_err(|e| AuthError::StoreUnavailable(e.to_string()))?;
        // A third of the time left is kept for a refund, should it be
        // needed: the client must hear of it before its proxy gives up.
        let now = Instant::now();
        let budget = deadline.saturating_duration_since(now) * 2 / 3;
        match pods
            .ensure(&purchase.id, &purchase.tier, expires_at, now + budget)
            .await
        {
            Ok(name) => {
                self.metrics.pod("provisioned");
                Ok((name, expires_at))
            }
            Err(e) => {
                self.metrics.pod("failed");
                if purchase.known_expiry == 0 {
                    // A new lease's pod may have been made before the step
                    // that failed: nobody paid for it.
                    let (pods, lease) = (pods.clone(), purchase.id.clone());
                    self.tracker.spawn(async move { pods.remove(&lease).await });
                }
                tracing::warn!(lease = %purchase.id, tier = %purchase.tier, error = %e, "provisioning failed after the swap: refunding");
                let answer = self
                    .redeemer
                    .refund(
                        mint,
                        token,
                        received,
                        RefundWhy::Provisioning(e.to_string()),
                    )
                    .await;
                if answer.refund().is_some() {
                    self.metrics.pod("refunded");
                }
                Err(answer)
            }
        }
    }

    /// A top-up that raced another ends later than the annotation written
    /// before it: move the annotation on, in the background (the reaper
    /// would otherwise end the pod early).
    fn follow_up_annotation(&self, pods: &Pods, record: &LeaseRecord) {
        let (pods, record) = (pods.clone(), record.clone());
        self.tracker.spawn(async move {
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            if let Err(e) = pods
                .ensure(&record.id, &record.tier, record.expires_at, deadline)
                .await
            {
                tracing::warn!(lease = %record.id, error = %e, "cannot move the pod's expiry on");
            }
        });
    }

    /// Signs a pass for a lease as it now stands.
    fn issue(&self, record: &LeaseRecord, basis: &LeaseBasis) -> Result<LeaseGrant, AuthError> {
        let key = self
            .settings
            .config
            .pass_keys()
            .first()
            .ok_or_else(|| AuthError::Internal("no pass key configured".into()))?;
        let claims = Claims {
            lease: record.id.clone(),
            tier: record.tier.clone(),
            expires_at: record.expires_at,
            payer: record.payer.clone(),
            pod: record.pod.clone(),
        };
        let issued = pass::sign(&claims, key);
        let max_age = record.expires_at.saturating_sub(basis.now);
        Ok(LeaseGrant {
            issued: Some(IssuedPass {
                set_cookie: pass_carrier::set_cookie(&issued, &basis.prefix, max_age, basis.secure),
                pass: issued,
            }),
            claims,
        })
    }

    /// Checks and redeems a token for `price`, within `deadline`.
    /// On a lease tier, `lease` says what the payment buys; the grant then
    /// carries the lease and its new pass.
    async fn pay(
        self: &Arc<Self>,
        raw: &str,
        price: u64,
        tier: Option<String>,
        deadline: Instant,
        lease: Option<LeaseBasis>,
    ) -> Result<Grant, AuthError> {
        let config = &self.settings.config;
        let token = precheck::decode(raw, &TokenLimits::default()).map_err(AuthError::Precheck)?;
        // Mint, unit and face value first: no network for a token that cannot pay.
        precheck::precheck(&token, config, price, 0).map_err(AuthError::Precheck)?;
        let mint = self.wallets.get(&token.mint).cloned().ok_or_else(|| {
            AuthError::Internal(format!("no wallet for accepted mint {}", token.mint))
        })?;
        if self.is_draining() {
            return Err(AuthError::ShuttingDown);
        }
        let fee = self.input_fee(&mint, &token, deadline).await?;
        precheck::precheck(&token, config, price, fee).map_err(AuthError::Precheck)?;
        // NUT-12: only proofs that carry a DLEQ can be checked before the
        // swap; a token with none is not parsed again here.
        if token.proofs.iter().any(|p| p.has_dleq) {
            match mint.check_dleq(&crate::redeem::canonical_token(raw)).await {
                Ok(()) => {}
                Err(DleqError::Invalid) => return Err(AuthError::DleqInvalid),
                Err(e) => return Err(AuthError::TokenInvalid(e.to_string())),
            }
        }
        let slot = self.redeemer.try_slot()?;

        let user_id = ids::user_id(&token);
        let mint_url = mint.url.clone();
        let task_state = self.clone();
        let task_raw = raw.to_string();
        let task_token = token.clone();
        let task_mint = mint.clone();
        // The redemption runs as its own task: a client that hangs up does
        // not cancel a swap half-way, and shutdown waits for it. A swap still
        // in flight at the deadline is abandoned; the ledger keeps its row
        // and the next presentation settles it with the mint.
        let task = self.tracker.spawn(async move {
            let _slot = slot;
            task_state
                .redeemer
                .redeem(task_mint.as_ref(), &task_raw, &task_token, deadline)
                .await
        });
        let received = match tokio::time::timeout_at(deadline.into(), task).await {
            Err(_) => {
                return Err(AuthError::Unfinished(
                    "the mint did not answer before the request's deadline".into(),
                ))
            }
            Ok(Err(e)) => return Err(AuthError::Internal(format!("redemption task: {e}"))),
            Ok(Ok(result)) => result?,
        };
        if received < price {
            // Swapped, but worth less than the price (the mint's fee changed):
            // the client gets its value back, and nothing is granted.
            return Err(self
                .redeemer
                .refund(mint.as_ref(), &token, received, RefundWhy::Short { price })
                .await);
        }
        let Some(basis) = lease else {
            let received = self.redeemer.claim(&token).await?;
            return Ok(Grant {
                payment: Some(Payment {
                    amount: received,
                    tier,
                    user_id,
                    mint: mint_url,
                }),
                lease: None,
            });
        };
        let mut purchase = basis.purchase(&token, user_id);
        let pods = self.pods.as_ref().filter(|p| p.serves(&basis.tier));
        let mut annotated = 0;
        if let Some(pods) = pods {
            let (name, expires_at) = self
                .provision(pods, &purchase, received, deadline, &mint, &token)
                .await?;
            purchase.pod = Some(name);
            annotated = expires_at;
        }
        let (received, record) = self.redeemer.claim_lease(&token, &purchase).await?;
        if let Some(pods) = pods.filter(|_| record.expires_at > annotated) {
            self.follow_up_annotation(pods, &record);
        }
        self.metrics.lease(if basis.existing.is_some() {
            "extended"
        } else {
            "sold"
        });
        tracing::info!(
            lease = %record.id,
            tier = %record.tier,
            received,
            expires_at = record.expires_at,
            "lease {}",
            if basis.existing.is_some() { "extended" } else { "sold" }
        );
        let lease = self.issue(&record, &basis)?;
        Ok(Grant {
            payment: Some(Payment {
                amount: received,
                tier,
                user_id: record.payer,
                mint: mint_url,
            }),
            lease: Some(lease),
        })
    }

    /// The mint's input fee for the token, loading or refreshing the mint's
    /// keysets when needed.
    async fn input_fee(
        &self,
        mint: &MintWallet,
        token: &paygress_core::Token,
        deadline: Instant,
    ) -> Result<u64, AuthError> {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .min(self.settings.mint_timeout);
        match mint.input_fee(token) {
            Ok(fee) => return Ok(fee),
            Err(FeeError::NotLoaded) => {
                match tokio::time::timeout(timeout, mint.ensure_loaded()).await {
                    Ok(Ok(())) => self.metrics.mint_ready(&mint.url, true),
                    Ok(Err(e)) => {
                        self.metrics.mint_error(&mint.url, "unreachable");
                        return Err(AuthError::MintUnavailable(e.to_string()));
                    }
                    Err(_) => {
                        self.metrics.mint_error(&mint.url, "timeout");
                        return Err(AuthError::MintUnavailable("keysets: timeout".into()));
                    }
                }
            }
            Err(FeeError::UnknownKeyset(_)) => {
                match tokio::time::timeout(timeout, mint.refresh_keysets_if_stale()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        self.metrics.mint_error(&mint.url, "unreachable");
                        return Err(AuthError::MintUnavailable(e.to_string()));
                    }
                    Err(_) => {
                        self.metrics.mint_error(&mint.url, "timeout");
                        return Err(AuthError::MintUnavailable("keysets: timeout".into()));
                    }
                }
            }
            Err(e) => return Err(AuthError::TokenInvalid(e.to_string())),
        }
        mint.input_fee(token)
            .map_err(|e| AuthError::TokenInvalid(e.to_string()))
    }
}

/// What a payment on a lease tier buys, known before the token is redeemed.
#[derive(Debug, Clone)]
struct LeaseBasis {
    tier: String,
    /// The tier's path prefix: the pass cookie's `Path`.
    prefix: String,
    seconds: u64,
    amount: u64,
    /// The lease a genuine pass of this tier names (a top-up).
    existing: Option<Claims>,
    now: u64,
    secure: bool,
}

impl LeaseBasis {
    /// The purchase: the pass's lease for a top-up, else a new lease named
    /// after the token (so that a retried payment names the same lease).
    fn purchase(&self, token: &Token, payer: String) -> LeasePurchase {
        let (id, payer, known_expiry) = match &self.existing {
            Some(c) => (c.lease.clone(), c.payer.clone(), c.expires_at),
            None => (ids::lease_id(token), payer, 0),
        };
        LeasePurchase {
            id,
            tier: self.tier.clone(),
            payer,
            seconds: self.seconds,
            amount: self.amount,
            known_expiry,
            now: self.now,
            pod: None,
        }
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decision::OriginalRequest;
    use paygress_core::pass::PassKey;
    use paygress_core::ErrorCode;

    const MINT: &str = "http://127.0.0.1:9";

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    /// A verifier over a fresh store whose mint is never contacted: every
    /// decision below is made before any network.
    async fn verifier(dir: &Path) -> Arc<Verifier> {
        let env = |name: &str| {
            match name {
            "PAYGRESS_MINTS" => Some(MINT.to_string()),
            "PAYGRESS_FREE_PATHS" => Some("/free".to_string()),
            "PAYGRESS_TIERS" => Some(
                r#"[{"id":"premium","path_prefix":"/premium","amount":64},
                    {"id":"compute","path_prefix":"/compute","amount":1000,"lease":{"seconds":3600}},
                    {"id":"gpu","path_prefix":"/gpu","amount":1000,"lease":{"seconds":60}}]"#
                    .to_string(),
            ),
            "PAYGRESS_PASS_KEYS" => {
                Some(r#"[{"id":"new","secret_env":"KEY_NEW"},{"id":"old","secret":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]"#.to_string())
            }
            "KEY_NEW" => Some(KEY.replace("AAEC", "BBEC")),
            "DEFAULT_PAYMENT_AMOUNT" => Some("10".to_string()),
            _ => None,
        }
        };
        let settings = crate::config::load(None, &env).unwrap();
        let store = crate::wallet::open_store(dir).await.unwrap();
        let wallets = Wallets::new(store, None, &settings.config.mints, "sat", [1; 64]).unwrap();
        let ledger = Ledger::open(dir).unwrap();
        Arc::new(Verifier::new(settings, wallets, ledger))
    }

    fn request(target: &str, token: Option<&str>, required: Option<u64>) -> AuthRequest {
        AuthRequest {
            original: OriginalRequest {
                method: "GET".into(),
                target: target.into(),
                host: None,
                source: "x-forwarded-uri",
                others: vec![],
            },
            token: Ok(token.map(str::to_string)),
            pass: None,
            secure: false,
            required_amount: required,
            deadline: Duration::from_secs(2),
        }
    }

    fn with_pass(target: &str, pass: &str) -> AuthRequest {
        AuthRequest {
            pass: Some(pass.to_string()),
            ..request(target, None, None)
        }
    }

    fn claims(tier: &str, expires_at: u64) -> Claims {
        Claims {
            lease: "0123456789abcdef".into(),
            tier: tier.into(),
            expires_at,
            payer: "payer".into(),
            pod: None,
        }
    }

    #[tokio::test]
    async fn a_pass_opens_its_lease_tier_until_it_expires_with_no_mint() {
        let dir = tempfile::tempdir().unwrap();
        let v = verifier(dir.path()).await;
        let keys = v.settings.config.pass_keys().to_vec();
        let (now, until) = (1_000_000, 1_003_600);
        let pass = pass::sign(&claims("compute", until), &keys[0]);
        let by_old_key = pass::sign(&claims("compute", until), &keys[1]);

        for p in [&pass, &by_old_key] {
            match v.decide_at(&with_pass("/compute/job", p), now).await {
                Decision::Allow(Grant {
                    payment: None,
                    lease: Some(lease),
                }) => {
                    assert_eq!(lease.claims, claims("compute", until));
                    assert_eq!(lease.issued, None);
                }
                other => panic!("{other:?}"),
            }
        }
        // At the expiry and after: a 402 for the tier's price.
        for at in [until, until + 1] {
            assert!(matches!(
                v.decide_at(&with_pass("/compute/job", &pass), at).await,
                Decision::PaymentRequired { amount: 1000, .. }
            ));
        }
        // Another tier's path, or a spelling that leaves the tier: a 402.
        for target in [
            "/gpu/x",
            "/premium/x",
            "/compute/../premium/x",
            "/COMPUTE/x",
        ] {
            assert!(
                matches!(
                    v.decide_at(&with_pass(target, &pass), now).await,
                    Decision::PaymentRequired { .. }
                ),
                "{target}"
            );
        }
        // A caller that raised the price is not answered by a pass.
        let mut raised = with_pass("/compute/job", &pass);
        raised.required_amount = Some(5000);
        assert!(matches!(
            v.decide_at(&raised, now).await,
            Decision::PaymentRequired { amount: 5000, .. }
        ));
        // Free paths need no pass; a bad one there is not even read.
        assert_eq!(
            v.decide_at(&with_pass("/free/x", "garbage"), now).await,
            Decision::Allow(Grant::default())
        );

        // Forged, truncated, re-signed, under a retired key: 400 pass_invalid.
        let parts: Vec<&str> = pass.split('.').collect();
        // The claims of a longer lease, under the signature of the real one.
        let longer_pass = pass::sign(&claims("compute", u64::MAX), &keys[0]);
        let longer = longer_pass.split('.').nth(2).unwrap();
        let retired = PassKey::new("older", &[9; 32]).unwrap();
        let rogue = PassKey::new("new", &[9; 32]).unwrap();
        for bad in [
            format!("{}.{}.{longer}.{}", parts[0], parts[1], parts[3]),
            pass[..pass.len() - 3].to_string(),
            pass::sign(&claims("compute", until), &rogue),
            pass::sign(&claims("compute", until), &retired),
            String::new(),
        ] {
            match v.decide_at(&with_pass("/compute/job", &bad), now).await {
                Decision::Refuse(e) => assert_eq!(e.code(), ErrorCode::PassInvalid, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let metrics = v.metrics.render();
        assert!(
            metrics.contains("paygress_passes_total{result=\"accepted\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("paygress_passes_total{result=\"expired\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("paygress_passes_total{result=\"refused\"} 10"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_stale_pass_of_a_lease_that_runs_on_gets_a_fresh_one_and_no_402() {
        let dir = tempfile::tempdir().unwrap();
        let v = verifier(dir.path()).await;
        let keys = v.settings.config.pass_keys().to_vec();
        let now = 2_000_000;
        // The ledger knows the lease to run an hour on (topped up with
        // another pass); the client shows its old, expired one.
        let ledger = v.redeemer.ledger();
        let key = [7u8; 32];
        ledger.begin(&key, MINT).await.unwrap();
        ledger.credit(&key, MINT, 1000).await.unwrap();
        let purchase = LeasePurchase {
            id: "0123456789abcdef".into(),
            tier: "compute".into(),
            payer: "payer".into(),
            seconds: 3600,
            amount: 1000,
            known_expiry: 0,
            now,
            pod: None,
        };
        let (_, record) = ledger.claim_lease(&key, &purchase).await.unwrap().unwrap();
        let stale = pass::sign(&claims("compute", now - 5), &keys[0]);
        match v.decide_at(&with_pass("/compute/job", &stale), now).await {
            Decision::Allow(Grant {
                payment: None,
                lease: Some(lease),
            }) => {
                assert_eq!(lease.claims.expires_at, record.expires_at);
                let issued = lease.issued.expect("a fresh pass");
                assert_eq!(
                    pass::verify(&issued.pass, &keys, now),
                    Ok(lease.claims.clone())
                );
                assert!(
                    issued.set_cookie.contains("Path=/compute"),
                    "{}",
                    issued.set_cookie
                );
            }
            other => panic!("{other:?}"),
        }
        // Once the lease itself has ended: the 402.
        assert!(matches!(
            v.decide_at(&with_pass("/compute/job", &stale), record.expires_at)
                .await,
            Decision::PaymentRequired { .. }
        ));
        // A stale pass is refreshed on its own tier's paths only.
        assert!(matches!(
            v.decide_at(&with_pass("/gpu/x", &stale), now).await,
            Decision::PaymentRequired { .. }
        ));
        let metrics = v.metrics.render();
        assert!(
            metrics.contains("paygress_passes_total{result=\"refreshed\"} 1"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn decisions_made_before_the_mint() {
        let dir = tempfile::tempdir().unwrap();
        let v = verifier(dir.path()).await;

        // Free, whatever the token header says.
        let mut free = request("/free/x", None, None);
        free.token = Err(AuthError::MalformedHeader("two X-Cashu".into()));
        assert_eq!(v.decide(&free).await, Decision::Allow(Grant::default()));

        // Paid, no token: the tier's 402; a caller may raise the price only.
        match v.decide(&request("/PREMIUM/../free", None, Some(5))).await {
            Decision::PaymentRequired { amount, tier_index } => {
                assert_eq!(amount, 64);
                assert_eq!(
                    v.settings.config.tier(tier_index).id.as_deref(),
                    Some("premium")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            v.decide(&request("/premium", None, Some(500))).await,
            Decision::PaymentRequired { amount: 500, .. }
        ));
        assert!(matches!(
            v.decide(&request("/free/x", None, Some(7))).await,
            Decision::PaymentRequired { amount: 7, .. }
        ));

        // A bad authority, an unreadable token header, a token that cannot
        // pay: refused, with the mint never asked (it does not exist).
        let refused = |d: Decision| match d {
            Decision::Refuse(e) => e.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(v.decide(&request("http://x?/premium", None, None)).await),
            ErrorCode::MalformedRequest
        );
        let mut bad = request("/premium", None, None);
        bad.token = Err(AuthError::MalformedHeader("two X-Cashu".into()));
        assert_eq!(refused(v.decide(&bad).await), ErrorCode::MalformedToken);
        assert_eq!(
            refused(
                v.decide(&request("/premium", Some("cashuBnotatoken"), None))
                    .await
            ),
            ErrorCode::MalformedToken
        );
        // While draining, nothing new is redeemed.
        v.start_draining();
        assert!(v.is_draining());
    }
}
