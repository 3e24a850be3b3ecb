//! The ledger's contract, run against SQLite and against a real PostgreSQL
//! (started by the test harness): both stores must keep the same promises.

use super::*;
use paygress_tests::postgres::Postgres;

async fn sqlite() -> (Ledger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Ledger::open(dir.path()).unwrap(), dir)
}

async fn postgres(pg: &Postgres, db: &str) -> Ledger {
    pg.create_database(db).await;
    let pool = crate::postgres::pool(&pg.url_for(db), 8).unwrap();
    Ledger::Postgres(PgLedger::open(pool).await.unwrap())
}

#[tokio::test]
async fn the_contract_holds_in_sqlite() {
    let (l, dir) = sqlite().await;
    contract(&l).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join(LEDGER_FILE))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_credited_token_survives_a_reopen_of_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let key = [3u8; 32];
    {
        let l = Ledger::open(dir.path()).unwrap();
        l.begin(&key, "http://m").await.unwrap();
        l.credit(&key, "http://m", 64).await.unwrap();
    }
    let l = Ledger::open(dir.path()).unwrap();
    assert_eq!(
        l.get(&key).await.unwrap(),
        Some(Entry::Credited { received: 64 })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_holds_in_postgres_across_connections() {
    let pg = Postgres::new().await;
    let a = postgres(&pg, "ledger_contract").await;
    contract(&a).await;
    // A second replica's ledger on the same database sees the same rows,
    // and the claim races between them give one winner per token.
    let b = {
        let pool = crate::postgres::pool(&pg.url_for("ledger_contract"), 8).unwrap();
        Ledger::Postgres(PgLedger::open(pool).await.unwrap())
    };
    let mut keys = Vec::new();
    for byte in 100..130u8 {
        keys.push(credited(&a, byte, 7).await);
    }
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for ledger in [&a, &b, &a, &b] {
            let (ledger, key) = (ledger.clone(), *key);
            tasks.push(tokio::spawn(async move {
                (i, ledger.claim(&key).await.unwrap())
            }));
        }
    }
    let mut wins = vec![0; keys.len()];
    for t in tasks {
        let (i, won) = t.await.unwrap();
        if let Some(received) = won {
            assert_eq!(received, 7);
            wins[i] += 1;
        }
    }
    assert!(
        wins.iter().all(|&w| w == 1),
        "one claim per token: {wins:?}"
    );
    // Top-ups of one lease racing on both replicas all add up.
    let first = credited(&a, 200, 1000).await;
    let now = 2_000_000;
    let (_, lease) = a
        .claim_lease(&first, &purchase("R", 0, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.expires_at, now + 3600);
    let mut tops = Vec::new();
    for byte in 201..221u8 {
        let key = credited(&a, byte, 1000).await;
        let ledger = if byte % 2 == 0 { a.clone() } else { b.clone() };
        tops.push(tokio::spawn(async move {
            ledger
                .claim_lease(&key, &purchase("R", now + 3600, now))
                .await
                .unwrap()
                .unwrap()
                .1
                .expires_at
        }));
    }
    let mut max = 0;
    for t in tops {
        max = max.max(t.await.unwrap());
    }
    assert_eq!(max, now + 3600 * 21);
    assert_eq!(
        b.lease("R").await.unwrap().map(|r| r.expires_at),
        Some(now + 3600 * 21)
    );
}

/// Everything a ledger promises, on a fresh one.
async fn contract(l: &Ledger) {
    claimed_once(l).await;
    pruning(l).await;
    leases(l).await;
    unswapped_and_refunded(l).await;
}

async fn claimed_once(l: &Ledger) {
    let key = [3u8; 32];
    assert_eq!(l.get(&key).await.unwrap(), None);
    l.begin(&key, "http://m").await.unwrap();
    assert_eq!(l.get(&key).await.unwrap(), Some(Entry::Swapping));
    l.credit(&key, "http://m", 64).await.unwrap();
    assert_eq!(
        l.get(&key).await.unwrap(),
        Some(Entry::Credited { received: 64 })
    );
    assert_eq!(l.unclaimed().await.unwrap(), 1);
    assert_eq!(l.claim(&key).await.unwrap(), Some(64));
    assert_eq!(l.claim(&key).await.unwrap(), None);
    assert_eq!(
        l.get(&key).await.unwrap(),
        Some(Entry::Granted { received: 64 })
    );
    // A granted token cannot go back to swapping, nor be forgotten, nor be
    // credited again.
    l.begin(&key, "http://m").await.unwrap();
    l.forget(&key).await.unwrap();
    l.credit(&key, "http://m", 99).await.unwrap();
    assert_eq!(
        l.get(&key).await.unwrap(),
        Some(Entry::Granted { received: 64 })
    );
    assert_eq!(l.unclaimed().await.unwrap(), 0);
}

async fn pruning(l: &Ledger) {
    let (granted, credited_key, swapping) = ([11u8; 32], [12u8; 32], [13u8; 32]);
    for key in [&granted, &credited_key, &swapping] {
        l.begin(key, "http://m").await.unwrap();
    }
    l.credit(&granted, "http://m", 1).await.unwrap();
    l.claim(&granted).await.unwrap();
    l.credit(&credited_key, "http://m", 2).await.unwrap();
    // Nothing is old enough yet.
    assert_eq!(l.prune(3600).await.unwrap(), 0);
    // Backdate instead of sleeping.
    l.backdate(10).await.unwrap();
    // The granted token of `claimed_once` goes too.
    assert_eq!(l.prune(5).await.unwrap(), 2);
    assert_eq!(l.get(&granted).await.unwrap(), None);
    assert_eq!(
        l.get(&credited_key).await.unwrap(),
        Some(Entry::Credited { received: 2 })
    );
    assert_eq!(l.get(&swapping).await.unwrap(), Some(Entry::Swapping));
    assert_eq!(l.unclaimed().await.unwrap(), 1);
    l.claim(&credited_key).await.unwrap();
    l.forget(&swapping).await.unwrap();
}

async fn credited(l: &Ledger, byte: u8, received: u64) -> [u8; 32] {
    let key = [byte; 32];
    l.begin(&key, "http://m").await.unwrap();
    l.credit(&key, "http://m", received).await.unwrap();
    key
}

fn purchase(id: &str, known_expiry: u64, now: u64) -> LeasePurchase {
    LeasePurchase {
        id: id.into(),
        tier: "compute".into(),
        payer: "payer-of-this-token".into(),
        seconds: 3600,
        amount: 1000,
        known_expiry,
        now,
        pod: None,
    }
}

async fn leases(l: &Ledger) {
    let now = 1_000_000;
    // A new lease: 1500 paid at 1000 per hour is 90 minutes.
    let first = credited(l, 21, 1500).await;
    assert_eq!(
        l.expiry_after(&purchase("L", 0, now), 1500).await.unwrap(),
        now + 5400
    );
    let (received, lease) = l
        .claim_lease(&first, &purchase("L", 0, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, 1500);
    assert_eq!(lease.expires_at, now + 5400);
    assert_eq!(lease.payer, "payer-of-this-token");
    // The same token cannot buy time twice.
    assert_eq!(
        l.claim_lease(&first, &purchase("L", 0, now)).await.unwrap(),
        None
    );
    // Two top-ups from the same (now old) pass: both add their time.
    let (a, b) = (credited(l, 22, 1000).await, credited(l, 23, 1000).await);
    let shown = now + 5400;
    let mut topup = purchase("L", shown, now + 10);
    topup.payer = "someone-else".into();
    topup.pod = Some("pod-l".into());
    let after_a = l.claim_lease(&a, &topup).await.unwrap().unwrap().1;
    topup.pod = None;
    let after_b = l.claim_lease(&b, &topup).await.unwrap().unwrap().1;
    assert_eq!(after_a.expires_at, now + 5400 + 3600);
    assert_eq!(after_b.expires_at, now + 5400 + 7200);
    // A top-up keeps the lease's payer, and its pod once it has one.
    assert_eq!(after_b.payer, "payer-of-this-token");
    assert_eq!(after_b.pod.as_deref(), Some("pod-l"));
    assert_eq!(l.lease("L").await.unwrap(), Some(after_b.clone()));
    // After the lease ended, time starts from now, not from the expiry.
    let late = credited(l, 24, 1000).await;
    let later = now + 100_000;
    let renewed = l
        .claim_lease(&late, &purchase("L", 0, later))
        .await
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(renewed.expires_at, later + 3600);
    // A pass showing a later expiry than the record is not cut short.
    let other = credited(l, 25, 1000).await;
    let far = later + 50_000;
    let kept = l
        .claim_lease(&other, &purchase("M", far, later))
        .await
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(kept.expires_at, far + 3600);
    assert_eq!(l.live_leases(later).await.unwrap(), 2);
    assert_eq!(l.live_leases(far + 3600).await.unwrap(), 0);
    // A token that was never credited buys nothing.
    assert_eq!(
        l.claim_lease(&[9; 32], &purchase("N", 0, now))
            .await
            .unwrap(),
        None
    );
    assert_eq!(l.lease("N").await.unwrap(), None);
    // Leases long over are pruned; running ones are kept.
    assert_eq!(l.prune_leases(0).await.unwrap(), 2);
    assert_eq!(l.lease("L").await.unwrap(), None);
}

async fn unswapped_and_refunded(l: &Ledger) {
    let key = [31u8; 32];
    l.begin(&key, "http://m").await.unwrap();
    l.forget(&key).await.unwrap();
    assert_eq!(l.get(&key).await.unwrap(), None);
    l.begin(&key, "http://m").await.unwrap();
    l.credit(&key, "http://m", 5).await.unwrap();
    assert_eq!(
        l.refunded(&key, "provisioning_failed", "cashuBr")
            .await
            .unwrap(),
        Some(5)
    );
    assert_eq!(l.claim(&key).await.unwrap(), None);
    assert_eq!(
        l.get(&key).await.unwrap(),
        Some(Entry::Refunded {
            received: 5,
            refund: Some(("provisioning_failed".into(), "cashuBr".into()))
        })
    );
    // Refunded once: a second refund of the same token is not recorded.
    assert_eq!(l.refunded(&key, "x", "cashuBother").await.unwrap(), None);
}
