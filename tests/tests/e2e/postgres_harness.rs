//! The harness's PostgreSQL: a real server started by the test, which keeps
//! committed rows across a clean restart and across a crash, refuses queries
//! while it is down, and gives each scenario a database of its own.

use paygress_tests::postgres::{Postgres, DEFAULT_DB, MAX_CONNECTIONS, USER};

#[tokio::test]
async fn rows_survive_a_restart_and_queries_fail_while_it_is_stopped() {
    let mut pg = Postgres::new().await;
    assert!(pg.is_running());
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://{USER}@127.0.0.1:{port}/{DEFAULT_DB}")
    );
    assert_eq!(
        pg.query_i64("SELECT setting::bigint FROM pg_settings WHERE name = 'max_connections'")
            .await,
        i64::from(MAX_CONNECTIONS)
    );
    assert_eq!(
        pg.query_i64("SELECT (setting = 'on')::int FROM pg_settings WHERE name = 'fsync'")
            .await,
        1
    );

    pg.execute("CREATE TABLE kept (id bigint PRIMARY KEY, note text NOT NULL)")
        .await;
    pg.execute("INSERT INTO kept VALUES (42, 'before the restart')")
        .await;

    pg.stop();
    assert!(!pg.is_running());
    let refused = pg
        .try_query_i64("SELECT count(*) FROM kept")
        .await
        .expect_err("a stopped server answers no query");
    eprintln!("while stopped: {refused}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections"
    );

    pg.start().await;
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(
        pg.query_i64("SELECT id FROM kept WHERE note = 'before the restart'")
            .await,
        42
    );
}

#[tokio::test]
async fn committed_rows_survive_a_crash() {
    let mut pg = Postgres::new().await;
    pg.execute("CREATE TABLE ledger (id bigint PRIMARY KEY)")
        .await;
    pg.execute("INSERT INTO ledger SELECT generate_series(1, 1000)")
        .await;
    // A session that is open when the server dies.
    let open = pg.client().await;
    open.batch_execute("BEGIN; INSERT INTO ledger VALUES (5000)")
        .await
        .expect("an open transaction");

    pg.kill();
    assert!(!pg.is_running());
    assert!(pg.try_query_i64("SELECT 1").await.is_err());
    assert!(open.simple_query("SELECT 1").await.is_err());

    pg.start().await;
    // What was committed is there; what was not, is not.
    assert_eq!(pg.query_i64("SELECT count(*) FROM ledger").await, 1000);
    assert_eq!(pg.query_i64("SELECT max(id) FROM ledger").await, 1000);
    assert!(
        pg.log().contains("automatic recovery in progress"),
        "{}",
        pg.log_tail(20)
    );
}

#[tokio::test]
async fn each_scenario_gets_a_database_of_its_own() {
    let pg = Postgres::new().await;
    let first = pg.fresh_database().await;
    let second = pg.fresh_database().await;
    assert_ne!(first, second);
    assert!(first.starts_with(&pg.url_for("")), "{first}");

    let named = pg.create_database("scenario_a").await;
    assert_eq!(named, pg.url_for("scenario_a"));

    pg.execute_in("scenario_a", "CREATE TABLE only_here (n int)")
        .await;
    pg.execute_in("scenario_a", "INSERT INTO only_here VALUES (7)")
        .await;
    assert_eq!(
        pg.query_i64_in("scenario_a", "SELECT n FROM only_here")
            .await,
        7
    );
    assert!(pg.try_query_i64("SELECT n FROM only_here").await.is_err());
}

#[tokio::test]
async fn a_failed_test_leaves_no_server_and_no_directory_behind() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let pg = Postgres::new().await;
        // A session, so there is a backend process besides the postmaster.
        let _client = pg.client().await;
        let _ = tx.send((pg.pid().expect("a running server"), pg.dir().to_path_buf()));
        panic!("the scenario fails with the server up");
    })
    .await;
    assert!(failed.expect_err("the scenario panics").is_panic());
    let (pid, dir) = rx.await.expect("the scenario started a server");
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(gone, "postmaster {pid} survived the failed test");
    assert!(!dir.exists(), "{} survived the failed test", dir.display());
}
