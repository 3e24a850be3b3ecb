//! Many verifiers on one PostgreSQL store and one real mint: a token raced
//! across replicas is granted once, hundreds of tokens spread across them
//! all pay and add up, a replica killed mid-load loses nothing (the
//! survivors settle what it left), the database restarted mid-load gives
//! 503s and then recovery with nothing lost, and a backup-free restore from
//! the mnemonic brings the funds back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use paygress_tests::postgres::Postgres;
use paygress_tests::verifier::*;
use paygress_tests::{TestMint, TestWallet};

/// A valid BIP-39 mnemonic, shared by the replicas as the Secret would be.
const MNEMONIC: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                        abandon abandon about";

/// Starts `n` verifiers on the database `db_url`, settling every second,
/// all at once (as a Deployment's pods do: they race to create the tables).
async fn replicas(n: usize, mint: &str, db_url: &str) -> Vec<Verifier> {
    let config = config(mint);
    let envs: Vec<Vec<(&str, String)>> = (0..n)
        .map(|i| {
            vec![
                ("PAYGRESS_DATABASE_URL", db_url.to_string()),
                ("PAYGRESS_MNEMONIC", MNEMONIC.to_string()),
                ("PAYGRESS_REPLICA_ID", format!("replica-{i}")),
                ("PAYGRESS_RECOVERY_INTERVAL_SECS", "1".to_string()),
            ]
        })
        .collect();
    let envs: Vec<Vec<(&str, &str)>> = envs
        .iter()
        .map(|e| e.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let starts = envs
        .iter()
        .map(|env| Verifier::start_with_env(&config, env));
    futures::future::join_all(starts).await
}

/// `paygress wallet ARGS --database-url URL` with the mnemonic.
fn wallet_pg(args: &[&str], db_url: &str) -> String {
    let mut all: Vec<&str> = vec!["wallet"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--database-url", db_url]);
    let out = run_paygress(&all, &[("PAYGRESS_MNEMONIC", MNEMONIC)]);
    assert!(out.status.success(), "paygress {all:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shared_balance(db_url: &str, mint: &str) -> (u64, u64) {
    let json = wallet_pg(&["balance"], db_url);
    (balance_at(&json, mint), pending_at(&json, mint))
}

/// Waits until the shared wallet holds `want` and nothing is pending (the
/// survivors' settlement runs every second).
async fn settled_balance(db_url: &str, mint: &str, want: u64) {
    let mut last = (0, 0);
    for _ in 0..60 {
        last = shared_balance(db_url, mint);
        if last == (want, 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the shared wallet holds {} with {} pending, expected {want}",
        last.0, last.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_token_raced_across_three_replicas_is_granted_once() {
    let pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(PREMIUM * 2).await;
    let vs = replicas(3, &url, &db).await;
    let token = payer.token(PREMIUM).await;

    let mut tasks = Vec::new();
    for i in 0..30 {
        let (auth, token) = (vs[i % 3].auth("/premium"), token.clone());
        tasks.push(tokio::spawn(async move { pay(&auth, &token).await }));
    }
    let mut granted = 0;
    let mut answers: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for t in tasks {
        let a = t.await.expect("task");
        if a.status == 200 {
            granted += 1;
        } else {
            *answers.entry((a.status, a.code())).or_default() += 1;
        }
    }
    assert_eq!(granted, 1, "exactly one grant; the others: {answers:?}");
    for (status, code) in answers.keys() {
        assert!(
            (*status == 400 && code == "token_already_spent") || *status == 503,
            "a refused copy of the token got {status} {code}"
        );
    }
    // Retried anywhere afterwards, the token is spent, never granted again.
    for v in &vs {
        pay(&v.auth("/premium"), &token)
            .await
            .assert_refused(400, "token_already_spent");
    }
    settled_balance(&db, &url, PREMIUM).await;
    // Every replica names itself and its store.
    for (i, v) in vs.iter().enumerate() {
        let m = v.metrics().await;
        assert!(
            m.contains(&format!(
                "paygress_replica_info{{replica=\"replica-{i}\",store=\"postgres\"}} 1"
            )),
            "{m}"
        );
        assert!(
            m.contains("paygress_replica_leader 1"),
            "no Kubernetes: each leads"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_tokens_across_two_replicas_all_pay_and_add_up() {
    let pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    let n = 300u64;
    payer.fund(n * DEFAULT_PRICE).await;
    let mut tokens = Vec::new();
    for _ in 0..n {
        tokens.push(payer.token(DEFAULT_PRICE).await);
    }
    let vs = replicas(2, &url, &db).await;
    let auths: Vec<String> = vs.iter().map(|v| v.auth("/x")).collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (auth, gate) = (auths[i % 2].clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.expect("semaphore");
            // A client retries a 503 (Retry-After), as the contract says:
            // swaps queue behind one another at the mint, and on a loaded
            // machine some wait past their deadline.
            let until = std::time::Instant::now() + Duration::from_secs(90);
            loop {
                let a = pay(&auth, &token).await;
                if a.status != 503 || std::time::Instant::now() > until {
                    return a;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    let mut paid = 0u64;
    for t in tasks {
        let a = t.await.expect("task");
        assert_eq!(a.status, 200, "{} {}", a.status, a.body);
        paid += 1;
    }
    assert_eq!(paid, n);
    settled_balance(&db, &url, n * DEFAULT_PRICE).await;
    let m0 = vs[0].metrics().await;
    let m1 = vs[1].metrics().await;
    let paid_on = |m: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with("paygress_payments_total{outcome=\"paid\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        paid_on(&m0) + paid_on(&m1),
        n,
        "each replica counts its own"
    );
    assert!(paid_on(&m0) > 0 && paid_on(&m1) > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_load_loses_nothing() {
    let pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    let n = 60u64;
    payer.fund(n * DEFAULT_PRICE).await;
    let mut tokens = Vec::new();
    for _ in 0..n {
        tokens.push(payer.token(DEFAULT_PRICE).await);
    }
    let mut vs = replicas(2, &url, &db).await;
    let (victim, survivor) = (vs[0].auth("/x"), vs[1].auth("/x"));
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (first, survivor) = (
            if i % 2 == 0 {
                victim.clone()
            } else {
                survivor.clone()
            },
            survivor.clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            // A load balancer sends a request that found no replica (or
            // whose replica died) to another one: so do we, with the same
            // token, until an answer other than 503.
            let mut url = first;
            let mut broke = false;
            for _ in 0..40 {
                match try_get(&url, &[("x-cashu", token.as_bytes())]).await {
                    Ok(a) if a.status != 503 => return (a, broke),
                    Ok(_) => {}
                    Err(_) => {
                        broke = true;
                        url = survivor.clone();
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            panic!("no final answer for a token");
        }));
    }
    // Kill the first replica while it redeems.
    tokio::time::sleep(Duration::from_millis(250)).await;
    vs[0].kill();
    let mut granted = 0u64;
    let mut spent_after_break = 0u64;
    for t in tasks {
        let (a, broke) = t.await.expect("task");
        match (a.status, broke) {
            (200, _) => granted += 1,
            // The killed replica had granted it, but died before the
            // client heard: the ledger says it paid.
            (400, true) if a.code() == "token_already_spent" => spent_after_break += 1,
            _ => panic!("{} {} (broke: {broke})", a.status, a.body),
        }
    }
    assert_eq!(granted + spent_after_break, n);
    assert!(
        spent_after_break <= 2,
        "{spent_after_break} payments lost in one kill"
    );
    // All the money is in the shared wallet: what the killed replica left
    // unfinished was settled by the survivor.
    settled_balance(&db, &url, n * DEFAULT_PRICE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_restarted_mid_load_gives_503s_then_recovers_with_nothing_lost() {
    let mut pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = mint().await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    let n = 12u64;
    payer.fund(n * DEFAULT_PRICE).await;
    let mut tokens = Vec::new();
    for _ in 0..n {
        tokens.push(payer.token(DEFAULT_PRICE).await);
    }
    let vs = replicas(2, &url, &db).await;
    pay(&vs[0].auth("/x"), &tokens[0]).await.assert_paid();

    pg.stop();
    let mut during = Vec::new();
    for (i, token) in tokens.iter().enumerate().skip(1).take(4) {
        let a = pay(&vs[i % 2].auth("/x"), token).await;
        assert_eq!(
            a.status, 503,
            "with the database down: {} {}",
            a.status, a.body
        );
        assert!(a.header("retry-after").is_some(), "{:?}", a.headers);
        during.push(token.clone());
    }
    // Free paths and 402s need no database.
    assert_eq!(get(&vs[0].auth("/x"), &[]).await.status, 402);
    pg.start().await;

    // Every token pays now, on either replica, including those refused
    // while the database was down.
    for (i, token) in tokens.iter().enumerate().skip(1) {
        let mut last = None;
        for _ in 0..30 {
            let a = pay(&vs[(i + 1) % 2].auth("/x"), token).await;
            if a.status != 503 {
                last = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let a = last.expect("still 503 after the database came back");
        assert_eq!(a.status, 200, "{} {}", a.status, a.body);
    }
    settled_balance(&db, &url, n * DEFAULT_PRICE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_shared_store_is_restored_from_the_mnemonic() {
    let pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = TestMint::start(paygress_tests::MintOptions::default()).await;
    let url = mint.url();
    let payer = TestWallet::new(&url).await;
    payer.fund(PREMIUM * 3).await;
    let mut vs = replicas(2, &url, &db).await;
    for i in 0..3 {
        pay(&vs[i % 2].auth("/premium"), &payer.token(PREMIUM).await)
            .await
            .assert_paid();
    }
    settled_balance(&db, &url, PREMIUM * 3).await;
    for v in &mut vs {
        v.terminate();
    }
    // The database is lost: a new, empty one.
    let fresh = pg.fresh_database().await;
    assert_eq!(shared_balance(&fresh, &url), (0, 0));
    let restored = wallet_pg(&["restore", "--mint", &url], &fresh);
    assert!(
        restored.contains(&format!("\"unspent\": {}", PREMIUM * 3)),
        "{restored}"
    );
    assert_eq!(shared_balance(&fresh, &url), (PREMIUM * 3, 0));
    // Another mnemonic cannot join that database.
    let other = run_paygress(
        &["wallet", "balance", "--database-url", &fresh],
        &[(
            "PAYGRESS_MNEMONIC",
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
        )],
    );
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("another mnemonic"),
        "{}",
        describe(&other)
    );
}

/// Whether a verifier's metrics say it leads.
async fn leads(v: &Verifier) -> bool {
    v.metrics()
        .await
        .lines()
        .any(|l| l.trim() == "paygress_replica_leader 1")
}

/// The holder of the leader Lease in the stand-in.
fn holder(api: &paygress_tests::kube_api::FakeApiServer) -> Option<String> {
    api.leases("default")
        .into_iter()
        .find(|l| l.metadata.name.as_deref() == Some("paygress-verifier-leader"))
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_replicas_elect_one_leader_and_hand_over_when_it_stops() {
    let api = paygress_tests::kube_api::FakeApiServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path()).display().to_string();
    let pg = Postgres::new().await;
    let db = pg.fresh_database().await;
    let mint = mint().await;
    let config = config(&mint.url());
    let mut vs = Vec::new();
    for i in 0..2 {
        let id = format!("replica-{i}");
        vs.push(
            Verifier::start_with_env(
                &config,
                &[
                    ("PAYGRESS_DATABASE_URL", db.as_str()),
                    ("PAYGRESS_MNEMONIC", MNEMONIC),
                    ("PAYGRESS_REPLICA_ID", id.as_str()),
                    ("PAYGRESS_LEADER_ELECTION", "kube"),
                    ("PAYGRESS_LEADER_TTL_SECS", "3"),
                    ("KUBECONFIG", kubeconfig.as_str()),
                ],
            )
            .await,
        );
    }
    // One leader, and it is the Lease's holder.
    let mut leader = None;
    for _ in 0..100 {
        let states = [leads(&vs[0]).await, leads(&vs[1]).await];
        assert!(!(states[0] && states[1]), "two leaders at once");
        if let Some(i) = states.iter().position(|l| *l) {
            leader = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = leader.expect("no replica came to lead");
    assert_eq!(holder(&api), Some(format!("replica-{leader}")));
    // It stays one leader.
    for _ in 0..20 {
        let states = [leads(&vs[0]).await, leads(&vs[1]).await];
        assert_eq!(states.iter().filter(|l| **l).count(), 1, "{states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The leader stops (SIGTERM): it releases the Lease and the other takes
    // over without waiting for the TTL to run out.
    let other = 1 - leader;
    vs[leader].terminate();
    let mut took_over = false;
    for _ in 0..100 {
        if leads(&vs[other]).await {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(took_over, "no handover: {}", vs[other].log());
    assert_eq!(holder(&api), Some(format!("replica-{other}")));
    assert!(
        vs[leader].log().contains("leadership") && vs[other].log().contains("leadership"),
        "the replicas log their leadership"
    );
    // A new replica joins as a follower.
    vs[leader].start_again().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !leads(&vs[leader]).await,
        "the restarted replica took the lead from a live holder"
    );
    assert!(leads(&vs[other]).await);
}
