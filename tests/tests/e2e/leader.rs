//! What leader election among the verifier's replicas relies on in the
//! Kubernetes API stand-in (`paygress_tests::kube_api`): of two replicas
//! that read the same version of a Lease only one write lands (a write
//! based on an older resourceVersion is a 409, as is a second create), and
//! a replica cut off by a network partition gets no answer, while its
//! requests arrive late when the partition ends and are judged against the
//! Lease as it is then.
//!
//! The election itself (`paygress_verifier::leader`) is tested against the
//! stand-in in the verifier's own tests (`cargo test -p paygress-verifier
//! --lib leader`): this crate does not link the verifier.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::Status;
use kube::ResourceExt;
use paygress_tests::kube_api::FakeApiServer;
use serde_json::json;

const NS: &str = "default";
const NAME: &str = "paygress-background";
/// Long enough for the stand-in to answer a request on loopback.
const NO_ANSWER: Duration = Duration::from_millis(300);

fn lease(holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(2),
            ..LeaseSpec::default()
        }),
    }
}

fn holding(mut lease: Lease, holder: &str) -> Lease {
    lease
        .spec
        .get_or_insert_with(LeaseSpec::default)
        .holder_identity = Some(holder.into());
    lease
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

/// The `Status` of an API error; panics on any other outcome.
fn status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error (a Status), got {other:?}"),
    }
}

fn stored(server: &FakeApiServer) -> Lease {
    let mut leases = server.leases(NS);
    assert_eq!(leases.len(), 1, "{leases:?}");
    leases.remove(0)
}

async fn wait_arrived(server: &FakeApiServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.held() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held requests did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn of_two_writes_based_on_one_lease_version_only_the_first_lands() {
    let server = FakeApiServer::start().await;
    let a: Api<Lease> = Api::namespaced(server.client_named("a"), NS);
    let b: Api<Lease> = Api::namespaced(server.client_named("b"), NS);
    let pp = PostParams::default();

    // Two replicas find no Lease and create it at once: one create lands.
    let (mine_a, mine_b) = (lease("a"), lease("b"));
    let (made_a, made_b) = tokio::join!(a.create(&pp, &mine_a), b.create(&pp, &mine_b));
    let (winner, loser) = match (made_a, made_b) {
        (Ok(made), lost) | (lost, Ok(made)) => (made, lost),
        (Err(x), Err(y)) => panic!("neither create landed: {x}, {y}"),
    };
    let refused = status(loser);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(holder(&stored(&server)), holder(&winner));

    // Both read the same version and try to take it over: one replace
    // lands, the other is refused, and the Lease names the first.
    let seen_a = a.get(NAME).await.expect("get");
    let seen_b = b.get(NAME).await.expect("get");
    assert_eq!(seen_a.resource_version(), seen_b.resource_version());
    let taken = a
        .replace(NAME, &pp, &holding(seen_a, "a2"))
        .await
        .expect("the first write lands");
    assert_ne!(taken.resource_version(), seen_b.resource_version());
    let stale = status(b.replace(NAME, &pp, &holding(seen_b.clone(), "b2")).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"paygress-background\": \
         the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(holder(&stored(&server)), Some("a2"));
    assert_eq!(stored(&server).resource_version(), taken.resource_version());

    // A replace without a resourceVersion is refused for a Lease (no
    // unconditional update), so a careless writer cannot land blindly.
    let mut blind = holding(seen_b.clone(), "b3");
    blind.metadata.resource_version = None;
    let blind = status(b.replace(NAME, &pp, &blind).await);
    assert_eq!((blind.code, blind.reason.as_str()), (422, "Invalid"));

    // A merge patch at a stale version is refused too; without one it is
    // unconditional (as on a real server: why the election never patches).
    let stale_patch = json!({
        "metadata": {"resourceVersion": seen_b.resource_version()},
        "spec": {"holderIdentity": "b4"},
    });
    let refused = status(
        b.patch(NAME, &PatchParams::default(), &Patch::Merge(&stale_patch))
            .await,
    );
    assert_eq!(refused.code, 409);
    assert_eq!(holder(&stored(&server)), Some("a2"));
    let blind_patch = json!({"spec": {"holderIdentity": "b5"}});
    let patched = b
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&blind_patch))
        .await
        .expect("an unconditional merge patch lands");
    assert_eq!(holder(&patched), Some("b5"));

    // A delete at a stale version is refused; at the current one it goes.
    let at = |rv: Option<String>| DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: rv,
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let refused = status(b.delete(NAME, &at(taken.resource_version())).await);
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    b.delete(NAME, &at(patched.resource_version()))
        .await
        .expect("delete at the current version");
    assert!(server.leases(NS).is_empty());
}

#[tokio::test]
async fn a_partitioned_client_gets_no_answer_and_its_writes_arrive_late() {
    let server = FakeApiServer::start().await;
    let a: Api<Lease> = Api::namespaced(server.client_named("a"), NS);
    let b: Api<Lease> = Api::namespaced(server.client_named("b"), NS);
    let pp = PostParams::default();
    let first = a.create(&pp, &lease("a")).await.expect("create");

    server.partition("a");
    // No answer for "a"…
    let gets = server.requests("get", "leases");
    assert!(
        tokio::time::timeout(NO_ANSWER, a.get(NAME)).await.is_err(),
        "a partitioned client got an answer"
    );
    assert_eq!(server.held(), 1);
    assert_eq!(
        server.requests("get", "leases"),
        gets,
        "a held request arrived"
    );
    // …while "b" goes on.
    let seen = b.get(NAME).await.expect("b is not cut off");
    assert_eq!(seen.resource_version(), first.resource_version());

    // "a" renews from the version it wrote, and waits; "b" takes over
    // meanwhile; when the partition ends, the renewal arrives and is
    // refused, and "a" is told so.
    let renewal = tokio::spawn({
        let a = a.clone();
        let renewed = holding(first.clone(), "a");
        async move { a.replace(NAME, &PostParams::default(), &renewed).await }
    });
    tokio::time::sleep(NO_ANSWER).await;
    assert_eq!(server.held(), 2);
    let taken = b
        .replace(NAME, &pp, &holding(seen, "b"))
        .await
        .expect("b takes over");
    server.reconnect("a");
    let refused = status(renewal.await.expect("the renewal task"));
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    wait_arrived(&server).await;
    assert_eq!(holder(&stored(&server)), Some("b"));
    assert_eq!(stored(&server).resource_version(), taken.resource_version());
    // The GET "a" gave up on arrived too (late, unanswered).
    assert_eq!(server.requests("get", "leases"), gets + 2);
    let mut from_a: Vec<String> = server
        .request_log()
        .into_iter()
        .filter(|line| line.ends_with(" from a"))
        .filter_map(|line| line.split(' ').next().map(str::to_string))
        .collect();
    from_a.sort();
    assert_eq!(from_a, ["GET", "POST", "PUT"]);

    // A write that "a" gave up on still lands when it arrives, if it is
    // based on the current version (a client cannot tell a lost request
    // from a late one: the resourceVersion is what keeps it safe).
    server.partition("a");
    let late = holding(taken.clone(), "a");
    assert!(
        tokio::time::timeout(NO_ANSWER, a.replace(NAME, &pp, &late))
            .await
            .is_err(),
        "a partitioned client got an answer"
    );
    assert_eq!(holder(&stored(&server)), Some("b"));
    server.reconnect("a");
    wait_arrived(&server).await;
    assert_eq!(holder(&stored(&server)), Some("a"));
    assert_ne!(stored(&server).resource_version(), taken.resource_version());
}

#[tokio::test]
async fn heal_ends_partitions_and_a_stop_loses_held_requests() {
    let server = FakeApiServer::start().await;
    let a: Api<Lease> = Api::namespaced(server.client_named("a"), NS);
    let pp = PostParams::default();
    a.create(&pp, &lease("a")).await.expect("create");

    // Held across a stop: lost, never acted on.
    server.partition("a");
    let mut gone = lease("a");
    gone.metadata.name = Some("lost".into());
    assert!(tokio::time::timeout(NO_ANSWER, a.create(&pp, &gone))
        .await
        .is_err());
    assert_eq!(server.held(), 1);
    server.stop().await;
    server.start_again().await;
    server.heal();
    wait_arrived(&server).await;
    assert_eq!(
        server.leases(NS).len(),
        1,
        "a request held across a stop arrived"
    );
    assert_eq!(server.requests("create", "leases"), 1);

    // `heal` ended the partition: "a" is answered again.
    let got = tokio::time::timeout(Duration::from_secs(5), a.get(NAME))
        .await
        .expect("an answer after heal")
        .expect("get");
    assert_eq!(holder(&got), Some("a"));
}
