//! The verifier's wallet and command line, end to end: the balance
//! survives a restart, `wallet send` moves money to another wallet, a payer
//! funds a wallet and pays with `paygress pay`, `token decode` shows no
//! secret, a bad config stops the process naming the key, SIGTERM is graceful.
//! The data dir is made private (0700, wallet files 0600) at every start.
//! `paygress pay` against a hostile 402: it refuses more than `--max-amount`
//! (fees included), another unit or unknown mints without spending, and
//! never sends the token to another origin than the one that asked for it.

use std::os::unix::fs::PermissionsExt;

use cdk::cdk_database::WalletDatabase as _;
use cdk::Amount;
use paygress_tests::verifier::*;
use paygress_tests::{TestMint, TestWallet};
use serde_json::{json, Value};

#[tokio::test]
async fn a_restart_keeps_the_wallet_balance() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(1000).await;
    let mut v = Verifier::start(&config(&url)).await;

    pay(&v.auth("/premium"), &payer.token(PREMIUM).await)
        .await
        .assert_paid();
    pay(&v.auth("/x"), &payer.token(DEFAULT_PRICE).await)
        .await
        .assert_paid();
    let data_dir = v.data_dir_str();
    let before = balance_at(
        &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
        &url,
    );
    assert_eq!(before, PREMIUM + DEFAULT_PRICE);

    // The seed was generated on first start, private to the owner.
    let seed_mode = std::fs::metadata(v.data_dir().join("seed"))
        .expect("seed file")
        .permissions()
        .mode();
    assert_eq!(seed_mode & 0o777, 0o600);
    let seed_before = std::fs::read_to_string(v.data_dir().join("seed")).expect("seed");

    let status = v.terminate().expect("exit status");
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(v.log().contains("shutting down"), "{}", v.log());
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
            &url
        ),
        before
    );

    // A data dir left open to others (restored from a backup, created by
    // hand) is made private again at start: bearer proofs live there.
    let mode_of = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let open_up = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    open_up(&v.data_dir(), 0o755);
    open_up(&v.data_dir().join("wallet.sqlite"), 0o644);
    open_up(&v.data_dir().join("seed"), 0o644);

    v.restart().await;
    assert_eq!(mode_of(&v.data_dir()), 0o700, "the data dir");
    for file in ["wallet.sqlite", "seed", "redemptions.sqlite", "replica"] {
        assert_eq!(mode_of(&v.data_dir().join(file)), 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(v.data_dir().join("seed")).expect("seed"),
        seed_before
    );
    // Still the same wallet: the old payments are there and new ones add up.
    pay(&v.auth("/premium"), &payer.token(PREMIUM).await)
        .await
        .assert_paid();
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
            &url
        ),
        before + PREMIUM
    );
}

/// A redemption keeps what it received in the fewest proofs: every 64-sat
/// token becomes one 64-sat proof of the verifier's wallet, whatever the
/// payer's token held. cdk's default receive splits toward three proofs of
/// every denomination instead, and reads and decodes every proof of the
/// wallet to do so, which makes each redemption slower the more the
/// verifier holds.
#[tokio::test]
async fn a_redemption_keeps_its_value_in_the_fewest_proofs() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(1000).await;
    let mut v = Verifier::start(&config(&url)).await;
    for _ in 0..3 {
        pay(&v.auth("/premium"), &payer.token(PREMIUM).await)
            .await
            .assert_paid();
    }
    v.stop();
    let store = cdk_sqlite::WalletSqliteDatabase::new(v.data_dir().join("wallet.sqlite"))
        .await
        .unwrap_or_else(|e| panic!("the verifier's wallet store: {e}"));
    let proofs = store
        .get_proofs(None, None, Some(vec![cdk::nuts::State::Unspent]), None)
        .await
        .unwrap_or_else(|e| panic!("the verifier's proofs: {e}"));
    let mut amounts: Vec<u64> = proofs.iter().map(|p| u64::from(p.proof.amount)).collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        vec![PREMIUM; 3],
        "three redemptions of {PREMIUM} sat (no input fee) should leave three proofs of {PREMIUM}"
    );
}

#[tokio::test]
async fn wallet_send_moves_the_funds_to_another_wallet() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(1000).await;
    let v = Verifier::start(&config(&url)).await;
    for _ in 0..3 {
        pay(&v.auth("/premium"), &payer.token(PREMIUM).await)
            .await
            .assert_paid();
    }
    let data_dir = v.data_dir_str();
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
            &url
        ),
        3 * PREMIUM
    );

    // While the verifier runs, the operator takes 100 out ...
    let out = paygress_ok(&[
        "wallet",
        "send",
        "--data-dir",
        &data_dir,
        "--mint",
        &url,
        "--amount",
        "100",
    ]);
    let token = out.trim();
    assert!(token.starts_with("cashuB"), "{out}");
    let decoded: Value =
        serde_json::from_str(&paygress_ok(&["token", "decode", token])).expect("decode JSON");
    assert_eq!(decoded["total"], 100);
    assert_eq!(decoded["mint"], url.as_str());
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
            &url
        ),
        3 * PREMIUM - 100
    );

    // ... and someone else receives it.
    let elsewhere = TestWallet::new(&url).await;
    assert_eq!(elsewhere.receive(token).await, Amount::from(100));
    assert_eq!(elsewhere.balance().await, Amount::from(100));
    assert!(!payer.is_spendable(token).await);

    // Sending more than the balance fails cleanly.
    let out = run_paygress(
        &[
            "wallet",
            "send",
            "--data-dir",
            &data_dir,
            "--mint",
            &url,
            "--amount",
            "100000",
        ],
        &[],
    );
    assert!(!out.status.success(), "{}", describe(&out));
}

#[tokio::test]
async fn wallet_melt_pays_a_lightning_invoice() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(1000).await;
    let v = Verifier::start(&config(&url)).await;
    for _ in 0..4 {
        pay(&v.auth("/premium"), &payer.token(PREMIUM).await)
            .await
            .assert_paid();
    }
    // Someone asks for 100 sat over Lightning: an invoice of another mint
    // (this mint's own invoices are paid by its fake backend already, so it
    // could not settle them internally); the operator pays it from the
    // verifier's wallet, through this mint's (fake) Lightning backend.
    let elsewhere = paygress_tests::verifier::mint().await;
    let receiver = TestWallet::new(&elsewhere.url()).await;
    let quote = receiver
        .inner()
        .mint_quote(
            cdk::nuts::PaymentMethod::BOLT11,
            Some(Amount::from(100)),
            None,
            None,
        )
        .await
        .expect("mint quote");
    let data_dir = v.data_dir_str();
    let out = paygress_ok(&[
        "wallet",
        "melt",
        "--data-dir",
        &data_dir,
        "--mint",
        &url,
        "--invoice",
        &quote.request,
    ]);
    let melted: Value = serde_json::from_str(&out).expect("melt JSON");
    assert_eq!(melted["state"], "PAID", "{out}");
    assert_eq!(melted["amount"], 100, "{out}");
    let fee = melted["fee_paid"].as_u64().expect("fee_paid");
    let left = balance_at(
        &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
        &url,
    );
    assert_eq!(left, 4 * PREMIUM - 100 - fee);
}

#[tokio::test]
async fn a_payer_funds_a_wallet_and_pays_with_paygress_pay() {
    let mint = mint().await;
    let url = mint.url();
    let v = Verifier::start(&config(&url)).await;
    let payer_dir = tempfile::tempdir().expect("temp dir");
    let payer_dir = payer_dir.path().join("payer");
    let payer_dir = payer_dir.display().to_string();

    // `wallet fund`: the fake Lightning backend pays the invoice by itself.
    let out = run_paygress(
        &[
            "wallet",
            "fund",
            "--data-dir",
            &payer_dir,
            "--mint",
            &url,
            "--amount",
            "500",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lnbc"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &payer_dir]),
            &url
        ),
        500
    );

    // `pay`: 402 → pays the creqA → 200 with the verification headers.
    let target = v.auth("/premium-plus/report");
    let out = run_paygress(&["pay", &target, "--data-dir", &payer_dir], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("HTTP 200"), "{printed}");
    assert!(printed.contains("x-payment-verified: true"), "{printed}");
    assert!(
        printed.contains(&format!("x-payment-amount: {PREMIUM_PLUS}")),
        "{printed}"
    );
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &payer_dir]),
            &url
        ),
        500 - PREMIUM_PLUS
    );
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &v.data_dir_str()]),
            &url
        ),
        PREMIUM_PLUS
    );

    // A free path is not paid for.
    let out = run_paygress(&["pay", &v.auth("/free"), "--data-dir", &payer_dir], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &payer_dir]),
            &url
        ),
        500 - PREMIUM_PLUS
    );
}

/// Funds a new payer wallet at `mint` with `wallet fund` (the fake
/// Lightning backend pays the invoice); returns its temp dir and data dir.
fn funded_payer(mint: &str, amount: u64) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("payer").display().to_string();
    let out = run_paygress(
        &[
            "wallet",
            "fund",
            "--data-dir",
            &data_dir,
            "--mint",
            mint,
            "--amount",
            &amount.to_string(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(payer_balance(&data_dir, mint), amount);
    (dir, data_dir)
}

fn payer_balance(data_dir: &str, mint: &str) -> u64 {
    balance_at(
        &paygress_ok(&["wallet", "balance", "--data-dir", data_dir]),
        mint,
    )
}

/// A request one of the two test sites saw.
#[derive(Debug, Clone)]
struct Seen {
    site: &'static str,
    path: String,
    x_cashu: Option<String>,
    authorization: Option<String>,
}

impl Seen {
    /// Whether this request carried a Cashu token, in X-Cashu or in
    /// Authorization.
    fn carries_token(&self) -> bool {
        self.x_cashu.is_some()
            || self
                .authorization
                .as_deref()
                .is_some_and(|a| a.to_ascii_lowercase().contains("cashu"))
    }
}

#[derive(Debug)]
struct SiteState {
    site: &'static str,
    /// The X-Cashu of the 402s (the payee site).
    creq: String,
    /// The base URL of the other site.
    peer: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// Two HTTP servers on two loopback ports, so two origins:
///
/// - the payee answers 402 with `creq` to an unpaid request, and to a paid
///   one (any X-Cashu): `/paid` 200; `/paid-then-away-307` and
///   `/paid-then-away-302` a redirect to the other origin's `/steal`;
///   `/paid-then-here` a 307 to its own `/paid`;
/// - the other origin answers `/start` with a 302 to the payee's `/paid`,
///   anything else 200.
///
/// Every request is recorded with its X-Cashu and Authorization.
#[derive(Debug)]
struct Sites {
    payee: String,
    other: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl Sites {
    async fn start(creq: String) -> Self {
        use axum::http::{HeaderMap, StatusCode, Uri};
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};

        async fn handle(
            axum::extract::State(state): axum::extract::State<Arc<SiteState>>,
            uri: Uri,
            headers: HeaderMap,
        ) -> axum::response::Response {
            let header = |name: &str| {
                headers
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let seen = Seen {
                site: state.site,
                path: uri.path().to_string(),
                x_cashu: header("x-cashu"),
                authorization: header("authorization"),
            };
            let paid = seen.x_cashu.is_some();
            state.seen.lock().expect("seen").push(seen);
            let redirect = |status: StatusCode, to: String| {
                (status, [(axum::http::header::LOCATION, to)], "").into_response()
            };
            match (state.site, uri.path()) {
                ("payee", _) if !paid => (
                    StatusCode::PAYMENT_REQUIRED,
                    [("x-cashu", state.creq.clone())],
                    "pay me",
                )
                    .into_response(),
                ("payee", "/paid") => (StatusCode::OK, "paid content").into_response(),
                ("payee", "/paid-then-away-307") => redirect(
                    StatusCode::TEMPORARY_REDIRECT,
                    format!("{}/steal", state.peer),
                ),
                ("payee", "/paid-then-away-302") => {
                    redirect(StatusCode::FOUND, format!("{}/steal", state.peer))
                }
                ("payee", "/paid-then-here") => {
                    redirect(StatusCode::TEMPORARY_REDIRECT, "/paid".to_string())
                }
                ("other", "/start") => redirect(StatusCode::FOUND, format!("{}/paid", state.peer)),
                _ => (StatusCode::OK, "other content").into_response(),
            }
        }

        let seen = Arc::new(Mutex::new(Vec::new()));
        let payee = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the payee site");
        let other = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the other site");
        let payee_url = format!("http://{}", payee.local_addr().expect("payee addr"));
        let other_url = format!("http://{}", other.local_addr().expect("other addr"));
        for (listener, site, peer) in [
            (payee, "payee", other_url.clone()),
            (other, "other", payee_url.clone()),
        ] {
            let state = Arc::new(SiteState {
                site,
                creq: creq.clone(),
                peer,
                seen: seen.clone(),
            });
            let app = axum::Router::new().fallback(handle).with_state(state);
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, app).await {
                    eprintln!("test site {site}: {err}");
                }
            });
        }
        Self {
            payee: payee_url,
            other: other_url,
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// Panics if the other origin ever saw a token.
    fn assert_other_saw_no_token(&self) {
        let leaked: Vec<Seen> = self
            .seen()
            .into_iter()
            .filter(|s| s.site == "other" && s.carries_token())
            .collect();
        assert!(
            leaked.is_empty(),
            "the token reached another origin: {leaked:?}"
        );
    }
}

fn creq(amount: u64, unit: &str, mints: &[String]) -> String {
    paygress_core::payment_request::encode(amount, unit, mints).expect("creqA")
}

/// The finding: `paygress pay` paid whatever a 402 asked. Now a 402 asking
/// more than `--max-amount` (1000 by default), another unit, or from a mint
/// the wallet does not hold is refused, with a message, and nothing is spent.
/// (The sites run in this process while the test thread waits for the
/// command, hence the multi-threaded runtime.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygress_pay_refuses_more_than_max_amount_and_spends_nothing() {
    let mint = mint().await;
    let url = mint.url();
    let (_dir, payer) = funded_payer(&url, 2000);

    // 1500 sat with the default limit of 1000: refused, nothing spent.
    let sites = Sites::start(creq(1500, "sat", std::slice::from_ref(&url))).await;
    let target = format!("{}/paid", sites.payee);
    let out = run_paygress(&["pay", &target, "--data-dir", &payer], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("asks 1500 sat")
            && stderr.contains("limit of 1000 sat")
            && stderr.contains("--max-amount"),
        "{}",
        describe(&out)
    );
    assert_eq!(payer_balance(&payer, &url), 2000);
    assert!(
        sites.seen().iter().all(|s| !s.carries_token()),
        "{:?}",
        sites.seen()
    );

    // A lower limit, by flag and by environment, names that limit.
    let out = run_paygress(
        &["pay", &target, "--data-dir", &payer, "--max-amount", "100"],
        &[],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("asks 1500 sat, more than the limit of 100 sat"),
        "{}",
        describe(&out)
    );
    let out = run_paygress(
        &["pay", &target, "--data-dir", &payer],
        &[("PAYGRESS_PAY_MAX_AMOUNT", "1499")],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limit of 1499 sat"),
        "{}",
        describe(&out)
    );
    assert_eq!(payer_balance(&payer, &url), 2000);

    // Another unit than the wallet's, or only mints it holds nothing at:
    // refused, nothing spent.
    let usd = Sites::start(creq(10, "usd", std::slice::from_ref(&url))).await;
    let out = run_paygress(
        &["pay", &format!("{}/paid", usd.payee), "--data-dir", &payer],
        &[],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("asks for usd, but this wallet pays in sat"),
        "{}",
        describe(&out)
    );
    let elsewhere = Sites::start(creq(10, "sat", &["http://127.0.0.1:9".to_string()])).await;
    let out = run_paygress(
        &[
            "pay",
            &format!("{}/paid", elsewhere.payee),
            "--data-dir",
            &payer,
        ],
        &[],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("none of the mints the 402 accepts (http://127.0.0.1:9)"),
        "{}",
        describe(&out)
    );
    assert_eq!(payer_balance(&payer, &url), 2000);

    // Up to the limit it pays: the limit is inclusive.
    let out = run_paygress(
        &["pay", &target, "--data-dir", &payer, "--max-amount", "1500"],
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("HTTP 200"),
        "{}",
        describe(&out)
    );
    assert_eq!(payer_balance(&payer, &url), 500);
}

/// The mint's input fee counts toward `--max-amount`: a payment whose token
/// and swap fees would take the wallet over the limit is refused after the
/// fee is known, its proofs released, and nothing is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygress_pay_counts_the_mint_fee_toward_max_amount() {
    let mint = TestMint::start(paygress_tests::MintOptions::with_input_fee_ppk(1000)).await;
    let url = mint.url();
    let (_dir, payer) = funded_payer(&url, 100);
    let sites = Sites::start(creq(10, "sat", std::slice::from_ref(&url))).await;
    let target = format!("{}/paid", sites.payee);

    let out = run_paygress(
        &["pay", &target, "--data-dir", &payer, "--max-amount", "10"],
        &[],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("asks 10 sat, and with the mint's fee")
            && stderr.contains("limit of 10 sat")
            && stderr.contains("--max-amount"),
        "{}",
        describe(&out)
    );
    assert_eq!(payer_balance(&payer, &url), 100);
    let balance = paygress_ok(&["wallet", "balance", "--data-dir", &payer]);
    assert_eq!(pending_at(&balance, &url), 0, "{balance}");
    assert!(sites.seen().iter().all(|s| !s.carries_token()));

    let out = run_paygress(
        &["pay", &target, "--data-dir", &payer, "--max-amount", "30"],
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let spent = 100 - payer_balance(&payer, &url);
    assert!(
        (11..=30).contains(&spent),
        "spent {spent}: {}",
        describe(&out)
    );
}

/// The finding: the paid retry followed redirects with X-Cashu to any host.
/// Now the token goes only to the origin that answered 402: a redirect of
/// the paid request to another origin (another port here) is not followed,
/// one within the origin is; and when the unpaid request was redirected to
/// the payee, the token goes to the payee directly, not back through the
/// first origin, with that origin's credentials dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygress_pay_sends_the_token_only_to_the_origin_that_asked() {
    let mint = mint().await;
    let url = mint.url();
    let (_dir, payer) = funded_payer(&url, 100);
    let sites = Sites::start(creq(10, "sat", std::slice::from_ref(&url))).await;

    // The paid request is answered with a redirect to another origin.
    for (path, status) in [
        ("/paid-then-away-307", "HTTP 307"),
        ("/paid-then-away-302", "HTTP 302"),
    ] {
        let out = run_paygress(
            &[
                "pay",
                &format!("{}{path}", sites.payee),
                "--data-dir",
                &payer,
            ],
            &[],
        );
        sites.assert_other_saw_no_token();
        assert!(!out.status.success(), "{path}: {}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with(status), "{path}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not following the redirect"),
            "{path}: {}",
            describe(&out)
        );
    }

    // The first origin redirects the unpaid request to the payee: the paid
    // request goes to the payee, and the first origin's Authorization does not.
    let out = run_paygress(
        &[
            "pay",
            &format!("{}/start", sites.other),
            "--data-dir",
            &payer,
            "-H",
            "Authorization: Bearer for-the-first-origin",
        ],
        &[],
    );
    sites.assert_other_saw_no_token();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("HTTP 200"),
        "{}",
        describe(&out)
    );
    let seen = sites.seen();
    assert!(
        seen.iter()
            .filter(|s| s.site == "payee")
            .all(|s| s.authorization.is_none()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.site == "payee" && s.path == "/paid" && s.x_cashu.is_some()),
        "{seen:?}"
    );

    // A redirect within the payee's origin is followed with the token.
    let out = run_paygress(
        &[
            "pay",
            &format!("{}/paid-then-here", sites.payee),
            "--data-dir",
            &payer,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("paid content"),
        "{}",
        describe(&out)
    );
    sites.assert_other_saw_no_token();
    assert_eq!(payer_balance(&payer, &url), 100 - 4 * 10);
}

#[test]
fn token_decode_prints_no_secret() {
    // A cashuA token with a known secret and signature.
    let secret = "407915bc212be61a77e3e6d2aeb4c727980bda51cd06a6afc29e2861768a7837";
    let c = "02bc9097997d81afb2cc7346b5e4345a9346bd2a506eb7958598a72f0cf85163ea";
    let token = json!({
        "token": [{"mint": "https://Mint.Example/", "proofs": [
            {"amount": 2, "id": "009a1f293253e41e", "secret": secret, "C": c},
            {"amount": 8, "id": "009a1f293253e41e", "secret": "s2", "C": c}
        ]}],
        "unit": "sat",
        "memo": "thanks"
    });
    let encoded = paygress_core::test_util::cashu_a(&token);
    let out = paygress_ok(&["token", "decode", &encoded]);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["mint"], "https://mint.example");
    assert_eq!(v["unit"], "sat");
    assert_eq!(v["amounts"], json!([2, 8]));
    assert_eq!(v["total"], 10);
    assert!(
        !out.contains(secret) && !out.contains(c) && !out.contains("\"s2\""),
        "{out}"
    );

    let out = run_paygress(&["token", "decode", "cashuBnotatoken"], &[]);
    assert!(!out.status.success());
}

#[test]
fn a_bad_config_stops_the_verifier_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data").display().to_string();
    for (name, text, key) in [
        (
            "unknown key",
            r#"{"mints":["http://127.0.0.1:3338"],"colour":"red"}"#,
            "colour",
        ),
        (
            "bad tier",
            r#"{"mints":["http://127.0.0.1:3338"],"tiers":[{"id":"a","path_prefix":"premium","amount":1}]}"#,
            "tiers[0].path_prefix",
        ),
        ("no mints", r#"{"mints":[]}"#, "mints"),
        (
            "bad unit",
            "unit: 'SAT!'\nmints: ['http://127.0.0.1:3338']\n",
            "unit",
        ),
    ] {
        let path = dir.path().join(if name == "bad unit" {
            "c.yaml"
        } else {
            "c.json"
        });
        std::fs::write(&path, text).expect("write");
        let out = run_paygress(
            &[
                "serve",
                "--config",
                &path.display().to_string(),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
            ],
            &[],
        );
        assert!(!out.status.success(), "{name}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{name}: {stderr}");
    }
    // An environment override that is not a number names the variable.
    let path = dir.path().join("ok.json");
    std::fs::write(&path, r#"{"mints":["http://127.0.0.1:3338"]}"#).expect("write");
    let out = run_paygress(
        &[
            "serve",
            "--config",
            &path.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
        ],
        &[("DEFAULT_PAYMENT_AMOUNT", "a lot")],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEFAULT_PAYMENT_AMOUNT"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn environment_overrides_reprice_and_name_the_mints() {
    let mint = mint().await;
    let url = mint.url();
    // A config file naming a mint that does not exist; the environment
    // replaces it, and the default price.
    let v = Verifier::start_with_env(
        &json!({"mints": ["http://127.0.0.1:9"], "default_amount": 5}),
        &[
            ("PAYGRESS_MINTS", url.as_str()),
            ("DEFAULT_PAYMENT_AMOUNT", "21"),
        ],
    )
    .await;
    let a = get(&v.auth("/anything"), &[]).await;
    assert_eq!(a.status, 402);
    assert_eq!(a.json()["amount"], 21);
    assert_eq!(a.json()["mints"], json!([url]));
    let log = v.log();
    assert!(
        log.contains("default=21") && log.contains(&url),
        "no start summary: {log}"
    );
}

/// `wallet backup` while the verifier serves, then the data dir wiped and
/// the backup copied in: the balance is back, the redemptions it granted
/// are still known (a replay is still refused), and the wallet spends.
#[tokio::test]
async fn a_backup_taken_while_serving_restores_the_balance() {
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(1000).await;
    let mut v = Verifier::start(&config(&url)).await;
    let spent = payer.token(PREMIUM).await;
    pay(&v.auth("/premium"), &spent).await.assert_paid();
    pay(&v.auth("/x"), &payer.token(DEFAULT_PRICE).await)
        .await
        .assert_paid();
    let data_dir = v.data_dir_str();
    let balance = || {
        balance_at(
            &paygress_ok(&["wallet", "balance", "--data-dir", &data_dir]),
            &url,
        )
    };
    assert_eq!(balance(), PREMIUM + DEFAULT_PRICE);

    let out = tempfile::tempdir().expect("temp dir");
    let to = out.path().join("backup");
    let to_str = to.display().to_string();
    let printed = paygress_ok(&["wallet", "backup", "--data-dir", &data_dir, "--to", &to_str]);
    let files: Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(
        files["files"].as_array().map(Vec::len),
        Some(4),
        "{printed}"
    );
    // Never over an earlier backup.
    let again = run_paygress(
        &["wallet", "backup", "--data-dir", &data_dir, "--to", &to_str],
        &[],
    );
    assert!(!again.status.success(), "{}", describe(&again));

    // The data dir is lost; the backup is copied into a new one.
    let status = v.terminate().expect("exit status");
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(v.data_dir()).expect("wipe");
    let gone = run_paygress(&["wallet", "balance", "--data-dir", &data_dir], &[]);
    assert!(
        !gone.status.success(),
        "the wipe left a wallet: {}",
        describe(&gone)
    );
    std::fs::create_dir_all(v.data_dir()).expect("data dir");
    for entry in std::fs::read_dir(&to).expect("backup dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), v.data_dir().join(entry.file_name())).expect("copy");
    }
    assert_eq!(
        balance(),
        PREMIUM + DEFAULT_PRICE,
        "the balance did not come back"
    );

    // The restored verifier serves, still knows what it granted, and its
    // wallet spends what came back.
    v.start_again().await;
    let replay = pay(&v.auth("/premium"), &spent).await;
    replay.assert_refused(400, "token_already_spent");
    let token = paygress_ok(&[
        "wallet",
        "send",
        "--data-dir",
        &data_dir,
        "--mint",
        &url,
        "--amount",
        "16",
    ]);
    assert_eq!(u64::from(payer.receive(token.trim()).await), 16);
    assert_eq!(balance(), PREMIUM + DEFAULT_PRICE - 16);
}
