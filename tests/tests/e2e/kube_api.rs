//! The fake Kubernetes API server (`paygress_tests::kube_api`) against the
//! real `kube` client: every check is one a careless stand-in would fail
//! (real Status bodies and codes, resourceVersion conflicts, the pod spec's
//! immutability, the garbage collector, watch semantics that
//! `kube::runtime::watcher` and `Controller` rely on, and the faults).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use paygress_tests::kube_api::FakeApiServer;
use serde_json::json;

const NS: &str = "default";

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn pod(name: &str, pairs: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: (!name.is_empty()).then(|| name.to_string()),
            labels: labels(pairs),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("nginx:1.27".into()),
                ..Container::default()
            }],
            active_deadline_seconds: Some(60),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn service(name: &str, owner: Option<&Pod>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|p| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: p.name_any(),
                    uid: p.uid().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 8080,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    }
}

/// The `Status` of an API error; panics on any other error.
fn status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error (a Status), got {other:?}"),
    }
}

fn rv(meta: &ObjectMeta) -> u64 {
    let rv = meta.resource_version.as_deref().unwrap_or_default();
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not a counter"))
}

async fn names(api: &Api<Pod>, selector: &str) -> Vec<String> {
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|err| panic!("list {selector:?}: {err}"));
    list.items.iter().map(ResourceExt::name_any).collect()
}

/// Every event of a watch, which must end (its `timeoutSeconds`) within
/// 10 s.
async fn all_events<K>(
    stream: impl futures::Stream<Item = kube::Result<WatchEvent<K>>>,
) -> Vec<WatchEvent<K>> {
    tokio::time::timeout(Duration::from_secs(10), stream.try_collect())
        .await
        .expect("the watch ended after its timeoutSeconds")
        .expect("watch events")
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn create_get_list_and_the_real_errors() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let pp = PostParams::default();

    let a = pods
        .create(&pp, &pod("a", &[("app", "web"), ("tier", "gold")]))
        .await
        .expect("create a");
    let uid = a.uid().expect("a uid");
    assert_eq!(uid.len(), 36, "{uid}");
    assert_eq!(
        uid.char_indices()
            .filter(|(_, c)| *c == '-')
            .map(|(i, _)| i)
            .collect::<Vec<_>>(),
        [8, 13, 18, 23]
    );
    assert_eq!(a.namespace().as_deref(), Some(NS));
    assert!(a.metadata.creation_timestamp.is_some());
    assert_eq!(
        a.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let b = pods
        .create(&pp, &pod("b", &[("app", "web"), ("tier", "free")]))
        .await
        .expect("create b");
    pods.create(&pp, &pod("c", &[("app", "db")]))
        .await
        .expect("create c");
    assert!(rv(&b.metadata) > rv(&a.metadata), "resourceVersion grows");
    // The same name in another namespace is another object.
    let other: Api<Pod> = Api::namespaced(server.client(), "other");
    let a2 = other
        .create(&pp, &pod("a", &[("app", "web")]))
        .await
        .expect("create other/a");
    assert_ne!(a2.uid(), a.uid());

    let got = pods.get("a").await.expect("get a");
    assert_eq!(got.uid(), a.uid());
    assert_eq!(got.resource_version(), a.resource_version());

    assert_eq!(names(&pods, "app=web").await, ["a", "b"]);
    assert_eq!(names(&pods, "app==web").await, ["a", "b"]);
    assert_eq!(names(&pods, "app!=web").await, ["c"]);
    assert_eq!(names(&pods, "tier").await, ["a", "b"]);
    assert_eq!(names(&pods, "!tier").await, ["c"]);
    assert_eq!(names(&pods, "app=web,tier=gold").await, ["a"]);
    assert_eq!(names(&pods, "tier in (gold,silver)").await, ["a"]);
    assert_eq!(names(&pods, "app notin (web)").await, ["c"]);
    assert_eq!(names(&other, "app=web").await, ["a"]);
    let all: Api<Pod> = Api::all(server.client());
    // Across namespaces, in the order of the real store: namespace, name.
    let everywhere = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list all");
    let keys: Vec<(String, String)> = everywhere
        .items
        .iter()
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    assert_eq!(
        keys,
        [("default", "a"), ("default", "b"), ("other", "a")].map(|(n, p)| (n.into(), p.into()))
    );
    let list = pods.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    // On the wire: a PodList whose items carry no kind/apiVersion.
    let raw: serde_json::Value =
        reqwest::get(format!("{}/api/v1/namespaces/default/pods", server.url()))
            .await
            .expect("raw list")
            .json()
            .await
            .expect("a JSON list");
    assert_eq!(
        (raw["kind"].as_str(), raw["apiVersion"].as_str()),
        (Some("PodList"), Some("v1"))
    );
    assert_eq!(raw["items"][0]["metadata"]["name"], "a");
    assert!(raw["items"][0].get("kind").is_none(), "{raw}");
    server.set_pod_phase(NS, "b", "Running");
    let running = pods
        .list(&ListParams::default().fields("status.phase=Running"))
        .await
        .expect("list by phase");
    assert_eq!(
        running
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["b"]
    );
    let bad = status(
        pods.list(&ListParams::default().fields("spec.nope=x"))
            .await,
    );
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));

    let missing = status(pods.get("nope").await);
    assert_eq!(missing.code, 404);
    assert_eq!(missing.reason, "NotFound");
    assert_eq!(missing.message, "pods \"nope\" not found");
    assert!(missing.is_not_found());
    assert_eq!(pods.get_opt("nope").await.expect("get_opt"), None);

    let clash = status(pods.create(&pp, &pod("a", &[])).await);
    assert_eq!(clash.code, 409);
    assert_eq!(clash.reason, "AlreadyExists");
    assert_eq!(clash.message, "pods \"a\" already exists");
    let details = clash.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("a", "pods")
    );
    assert_eq!(
        pods.get("a")
            .await
            .expect("a")
            .labels()
            .get("app")
            .map(String::as_str),
        Some("web"),
        "a clash leaves the object alone"
    );

    let unnamed = status(pods.create(&pp, &pod("", &[])).await);
    assert_eq!((unnamed.code, unnamed.reason.as_str()), (422, "Invalid"));
    assert!(
        unnamed.message.contains("metadata.name: Required value"),
        "{}",
        unnamed.message
    );
    let upper = status(pods.create(&pp, &pod("Bad_Name", &[])).await);
    assert_eq!(upper.code, 422, "{}", upper.message);
    let mut empty = pod("empty", &[]);
    empty.spec = Some(PodSpec::default());
    let no_containers = status(pods.create(&pp, &empty).await);
    assert!(
        no_containers
            .message
            .contains("spec.containers: Required value"),
        "{}",
        no_containers.message
    );
    // Creating what a get returned (it has a resourceVersion) is refused.
    let mut again = got.clone();
    again.metadata.name = Some("a-copy".into());
    let with_rv = status(pods.create(&pp, &again).await);
    assert_eq!(with_rv.code, 500, "{}", with_rv.message);

    // a, b, c, other/a, the clash, unnamed, Bad_Name, empty, a-copy.
    assert_eq!(server.requests("POST", "pods"), 9);
    assert_eq!(server.requests("create", "pods"), 9);
    assert_eq!(server.pods(NS).len(), 3);
    assert_eq!(server.pod(NS, "b").expect("b").uid(), b.uid());
}

#[tokio::test]
async fn patches_check_the_resource_version_and_the_pod_spec() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let created = pods
        .create(&PostParams::default(), &pod("p", &[("app", "web")]))
        .await
        .expect("create");
    let pp = PatchParams::default();
    let annotation = |p: &Pod| p.annotations().get("paygress.io/expires-at").cloned();

    let patched = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {
                "resourceVersion": created.resource_version(),
                "annotations": {"paygress.io/expires-at": "2030-01-01T00:00:00Z"},
            }})),
        )
        .await
        .expect("patch with the current resourceVersion");
    assert_eq!(
        annotation(&patched).as_deref(),
        Some("2030-01-01T00:00:00Z")
    );
    assert!(rv(&patched.metadata) > rv(&created.metadata));
    assert_eq!(patched.labels().get("app").map(String::as_str), Some("web"));
    assert_eq!(patched.uid(), created.uid());

    let stale = status(
        pods.patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {
                "resourceVersion": created.resource_version(),
                "annotations": {"paygress.io/expires-at": "2031-01-01T00:00:00Z"},
            }})),
        )
        .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on pods \"p\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    let now = server.pod(NS, "p").expect("p");
    assert_eq!(annotation(&now).as_deref(), Some("2030-01-01T00:00:00Z"));
    assert_eq!(now.resource_version(), patched.resource_version());

    // A patch without a resourceVersion is unconditional; strategic merge
    // of metadata works as a merge; null removes.
    let strategic = pods
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"annotations": {"other": "x"}}})),
        )
        .await
        .expect("strategic patch");
    assert_eq!(strategic.annotations().len(), 2);
    let removed = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"annotations": {"other": null}}})),
        )
        .await
        .expect("remove an annotation");
    assert_eq!(removed.annotations().len(), 1);
    // A patch that changes nothing writes nothing.
    let same = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"annotations": {"paygress.io/expires-at": "2030-01-01T00:00:00Z"}}})),
        )
        .await
        .expect("no-op patch");
    assert_eq!(same.resource_version(), removed.resource_version());
    // The status does not change through the main resource.
    let status_patch = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("status patch");
    assert_eq!(
        status_patch.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );

    // activeDeadlineSeconds may go down, never up.
    let lower = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 30}})),
        )
        .await
        .expect("lower activeDeadlineSeconds");
    assert_eq!(lower.spec.and_then(|s| s.active_deadline_seconds), Some(30));
    let before = server.resource_version();
    let raise = status(
        pods.patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 120}})),
        )
        .await,
    );
    assert_eq!((raise.code, raise.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        raise.message,
        "Pod \"p\" is invalid: spec.activeDeadlineSeconds: Invalid value: 120: \
         must be less than or equal to previous value"
    );
    let cause = &raise.details.expect("details").causes[0];
    assert_eq!(cause.field, "spec.activeDeadlineSeconds");
    let unset = status(
        pods.patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": null}})),
        )
        .await,
    );
    assert_eq!(unset.code, 422, "{}", unset.message);
    // The image may change; other spec fields may not.
    let image = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}});
    let new_image = pods
        .patch("p", &pp, &Patch::Merge(image))
        .await
        .expect("image patch");
    assert_eq!(
        new_image.spec.expect("spec").containers[0].image.as_deref(),
        Some("nginx:1.28")
    );
    let after_image = server.resource_version();
    let forbidden = status(
        pods.patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await,
    );
    assert_eq!(forbidden.code, 422);
    assert!(
        forbidden.message.starts_with(
            "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields"
        ),
        "{}",
        forbidden.message
    );
    assert_eq!(
        server.resource_version(),
        after_image,
        "a refused patch writes nothing"
    );
    assert_eq!(after_image, before + 1, "only the image patch wrote");
    let absent = status(
        pods.patch("nope", &pp, &Patch::Merge(json!({"metadata": {}})))
            .await,
    );
    assert_eq!(absent.code, 404);
    // Server-side apply, simply: creates the absent, merges into the present.
    let services: Api<Service> = Api::default_namespaced(server.client());
    let apply = PatchParams::apply("paygress");
    let made = services
        .patch("applied", &apply, &Patch::Apply(service("applied", None)))
        .await
        .expect("apply creates");
    let mut labelled = service("applied", None);
    labelled.metadata.labels = labels(&[("app", "web")]);
    let merged = services
        .patch("applied", &apply, &Patch::Apply(labelled))
        .await
        .expect("apply updates");
    assert_eq!(merged.uid(), made.uid());
    assert_eq!(merged.labels().get("app").map(String::as_str), Some("web"));
    assert!(rv(&merged.metadata) > rv(&made.metadata));
    // JSON Patch is not modelled: refused, not misapplied.
    let answer = reqwest::Client::new()
        .patch(format!("{}/api/v1/namespaces/default/pods/p", server.url()))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"remove","path":"/metadata/labels"}]"#)
        .send()
        .await
        .expect("raw JSON Patch");
    assert_eq!(answer.status().as_u16(), 415);
}

#[tokio::test]
async fn deleting_a_pod_takes_its_service_with_it() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let p = pods.create(&pp, &pod("p", &[])).await.expect("pod p");
    let q = pods.create(&pp, &pod("q", &[])).await.expect("pod q");
    let s = services
        .create(&pp, &service("p", Some(&p)))
        .await
        .expect("service p");
    assert_eq!(
        s.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("ClusterIP")
    );
    assert!(s.spec.as_ref().and_then(|s| s.cluster_ip.clone()).is_some());
    services
        .create(&pp, &service("q", Some(&q)))
        .await
        .expect("service q");
    services
        .create(&pp, &service("lone", None))
        .await
        .expect("service lone");
    let since = server.resource_version().to_string();
    let watch = services
        .watch(&WatchParams::default().timeout(3), &since)
        .await
        .expect("watch services");

    // A precondition on another uid refuses.
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let refused = status(pods.delete("p", &wrong).await);
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert!(
        refused
            .message
            .contains("Precondition failed: UID in precondition: not-the-uid"),
        "{}",
        refused.message
    );
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: p.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let deleted = pods.delete("p", &right).await.expect("delete p");
    let deleted = deleted.left().expect("a pod delete answers with the pod");
    assert_eq!(deleted.uid(), p.uid());
    assert!(server.pod(NS, "p").is_none());
    let left: Vec<String> = server
        .services(NS)
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, ["lone", "q"], "the owned Service went with its pod");

    // Orphaning keeps the dependent and drops its reference.
    pods.delete("q", &DeleteParams::orphan())
        .await
        .expect("delete q");
    let q_service = services.get("q").await.expect("service q stays");
    assert!(q_service.metadata.owner_references.is_none());
    assert_eq!(
        status(pods.delete("q", &DeleteParams::default()).await).code,
        404
    );

    let events = all_events(watch).await;
    let deleted_at = events
        .iter()
        .find_map(|e| match e {
            WatchEvent::Deleted(s) => Some(rv(&s.metadata)),
            _ => None,
        })
        .expect("a DELETED event");
    assert!(
        deleted_at > since.parse().expect("rv"),
        "a deletion is a new resourceVersion"
    );
    let seen: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Added(s) => Some(("ADDED".into(), s.name_any())),
            WatchEvent::Modified(s) => Some(("MODIFIED".into(), s.name_any())),
            WatchEvent::Deleted(s) => Some(("DELETED".into(), s.name_any())),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => None,
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("DELETED".into(), "p".into()),
            ("MODIFIED".into(), "q".into())
        ]
    );
    assert!(matches!(events.last(), Some(WatchEvent::Bookmark(_))));
}

/// Applies and deletions a watcher reported, as (event, name, annotation).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

#[tokio::test]
async fn a_watcher_sees_its_selection_in_order() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    pods.create(&pp, &pod("before", &[("app", "web")]))
        .await
        .expect("create before");
    let seen: Seen = Arc::default();
    let init_done = Arc::new(Mutex::new(false));
    let config = watcher::Config::default().labels("app=web");
    let task = tokio::spawn({
        let (seen, init_done) = (seen.clone(), init_done.clone());
        watcher(pods.clone(), config).for_each(move |event| {
            let (seen, init_done) = (seen.clone(), init_done.clone());
            async move {
                let note = |kind: &str, p: &Pod| {
                    let a = p.annotations().get("note").cloned();
                    seen.lock().unwrap().push((kind.into(), p.name_any(), a));
                };
                match event {
                    Ok(watcher::Event::InitApply(p)) => note("init", &p),
                    Ok(watcher::Event::InitDone) => *init_done.lock().unwrap() = true,
                    Ok(watcher::Event::Apply(p)) => note("apply", &p),
                    Ok(watcher::Event::Delete(p)) => note("delete", &p),
                    Ok(watcher::Event::Init) => {}
                    Err(err) => panic!("watcher error: {err}"),
                }
            }
        })
    });
    eventually("the initial list", || *init_done.lock().unwrap()).await;

    pods.create(&pp, &pod("w", &[("app", "web")]))
        .await
        .expect("w");
    pods.create(&pp, &pod("o", &[("app", "db")]))
        .await
        .expect("o");
    let note = |n: &str| Patch::Merge(json!({"metadata": {"annotations": {"note": n}}}));
    let label = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    let params = PatchParams::default();
    pods.patch("w", &params, &note("1")).await.expect("w note");
    pods.patch("o", &params, &note("1")).await.expect("o note");
    pods.patch("o", &params, &label("web")).await.expect("o in");
    pods.patch("o", &params, &note("2"))
        .await
        .expect("o note 2");
    pods.patch("o", &params, &label("db")).await.expect("o out");
    server.set_pod_phase(NS, "o", "Running");
    pods.delete("o", &DeleteParams::default())
        .await
        .expect("delete o");
    pods.delete("w", &DeleteParams::default())
        .await
        .expect("delete w");
    pods.create(&pp, &pod("end", &[("app", "web")]))
        .await
        .expect("end");
    eventually("the end marker", || {
        seen.lock().unwrap().iter().any(|(_, n, _)| n == "end")
    })
    .await;
    task.abort();

    let s = |kind: &str, name: &str, note: Option<&str>| {
        (kind.to_string(), name.to_string(), note.map(str::to_string))
    };
    assert_eq!(
        *seen.lock().unwrap(),
        [
            s("init", "before", None),
            s("apply", "w", None),
            s("apply", "w", Some("1")),
            // Comes into the selection: ADDED with its current state.
            s("apply", "o", Some("1")),
            s("apply", "o", Some("2")),
            // Leaves it: DELETED, and nothing more about it.
            s("delete", "o", Some("2")),
            s("delete", "w", Some("1")),
            s("apply", "end", None),
        ]
    );
    // The watcher listed once and watched from the list's resourceVersion.
    assert_eq!(server.requests("list", "pods"), 1);
    let log = server.request_log();
    let watch = log
        .iter()
        .find(|l| l.contains("watch=true"))
        .expect("a watch request");
    assert!(watch.contains("labelSelector=app%3Dweb"), "{watch}");
}

#[tokio::test]
async fn a_raw_watch_honours_its_timeout_bookmarks_and_history() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let a = pods
        .create(&pp, &pod("a", &[("app", "web")]))
        .await
        .expect("a");
    pods.create(&pp, &pod("b", &[("app", "db")]))
        .await
        .expect("b");

    // From "0": the current state as ADDED, then (timeout 1 s) a bookmark.
    let started = tokio::time::Instant::now();
    let events: Vec<WatchEvent<Pod>> = all_events(
        pods.watch(&WatchParams::default().labels("app=web").timeout(1), "0")
            .await
            .expect("watch"),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], WatchEvent::Added(p) if p.name_any() == "a"));
    match &events[1] {
        WatchEvent::Bookmark(b) => {
            assert_eq!(
                b.metadata.resource_version,
                server.resource_version().to_string()
            )
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // Without bookmarks: nothing at all.
    let quiet: Vec<WatchEvent<Pod>> = all_events(
        pods.watch(
            &WatchParams::default()
                .labels("app=web")
                .timeout(1)
                .disable_bookmarks(),
            &server.resource_version().to_string(),
        )
        .await
        .expect("watch"),
    )
    .await;
    assert!(quiet.is_empty(), "{quiet:?}");

    // From a resourceVersion: the kept events after it.
    let replay: Vec<WatchEvent<Pod>> = all_events(
        pods.watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            a.resource_version().as_deref().unwrap_or_default(),
        )
        .await
        .expect("watch"),
    )
    .await;
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert!(matches!(&replay[0], WatchEvent::Added(p) if p.name_any() == "b"));

    // After compaction an older resourceVersion is expired.
    server.compact();
    let expired: Vec<WatchEvent<Pod>> = all_events(
        pods.watch(&WatchParams::default().timeout(5), "1")
            .await
            .expect("watch"),
    )
    .await;
    match expired.as_slice() {
        [WatchEvent::Error(e)] => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message.starts_with("too old resource version: 1"),
                "{}",
                e.message
            );
        }
        other => panic!("expected one 410 ERROR event, got {other:?}"),
    }
    // Streaming lists are refused as by a server without WatchList.
    let streaming = WatchParams::streaming_lists();
    assert_eq!(
        status(pods.watch(&streaming, "0").await.map(|_| ())).code,
        422
    );
}

#[tokio::test]
async fn a_controller_reconciles_each_pod_and_requeues() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let mut again = pod("again", &[("app", "web")]);
    again.metadata.annotations = labels(&[("requeue", "yes")]);
    pods.create(&pp, &again).await.expect("again");
    pods.create(&pp, &pod("once", &[("app", "web")]))
        .await
        .expect("once");
    pods.create(&pp, &pod("other", &[("app", "db")]))
        .await
        .expect("other");

    let reconciled: Arc<Mutex<Vec<String>>> = Arc::default();
    let count = |name: &str| {
        reconciled
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == name)
            .count()
    };
    async fn reconcile(p: Arc<Pod>, seen: Arc<Mutex<Vec<String>>>) -> Result<Action, Infallible> {
        seen.lock().unwrap().push(p.name_any());
        if p.annotations().get("requeue").map(String::as_str) == Some("yes") {
            Ok(Action::requeue(Duration::from_millis(150)))
        } else {
            Ok(Action::await_change())
        }
    }
    let controller = Controller::new(pods.clone(), watcher::Config::default().labels("app=web"))
        .run(
            reconcile,
            |_, _: &Infallible, _| Action::await_change(),
            reconciled.clone(),
        )
        .for_each(|result| async move {
            result.expect("reconcile");
        });
    let task = tokio::spawn(controller);

    eventually("three reconciles of the requeued pod", || {
        count("again") >= 3
    })
    .await;
    assert_eq!(count("once"), 1, "await_change: reconciled once");
    assert_eq!(count("other"), 0, "another label is not watched");
    // A change (the kubelet's status) reconciles it again.
    server.set_pod_phase(NS, "once", "Running");
    eventually("a reconcile after the change", || count("once") == 2).await;
    pods.create(&pp, &pod("late", &[("app", "web")]))
        .await
        .expect("late");
    eventually("the new pod", || count("late") == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("once"), 2);
    task.abort();
}

#[tokio::test]
async fn fault_503_everywhere_until_healed() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    pods.create(&PostParams::default(), &pod("p", &[]))
        .await
        .expect("create");
    server.fail_with(
        503,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
    );

    // Without kube's retries the 503 shows at once, as a Status.
    let mut config = server.config();
    config.default_retry = false;
    let no_retry: Api<Pod> =
        Api::default_namespaced(kube::Client::try_from(config).expect("client"));
    let failed = status(no_retry.get("p").await);
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (503, "ServiceUnavailable")
    );
    assert_eq!(
        failed.message,
        "the server is currently unable to handle the request"
    );
    assert_eq!(
        status(no_retry.list(&ListParams::default()).await).code,
        503
    );
    let watch = no_retry
        .watch(&WatchParams::default(), "0")
        .await
        .map(|_| ());
    assert_eq!(status(watch).code, 503);

    // kube's default client retries 503s: the call waits for the heal.
    let gets_before = server.requests("get", "pods");
    let pending = tokio::spawn(async move { pods.get("p").await });
    eventually("kube retrying", || {
        server.requests("get", "pods") >= gets_before + 3
    })
    .await;
    assert!(!pending.is_finished());
    server.heal();
    let got = pending.await.expect("join").expect("get after heal");
    assert_eq!(got.name_any(), "p");
    assert!(no_retry.get("p").await.is_ok());
}

#[tokio::test]
async fn fault_quota_refuses_creates_only() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    pods.create(&PostParams::default(), &pod("old", &[]))
        .await
        .expect("create");
    let message = "pods \"x\" is forbidden: exceeded quota: tenant-quota, requested: cpu=1, \
                   used: cpu=2, limited: cpu=2";
    server.fail_creates_with(403, "Forbidden", message);
    let refused = status(pods.create(&PostParams::default(), &pod("x", &[])).await);
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(refused.message, message);
    assert!(refused.is_forbidden());
    assert_eq!(server.requests("POST", "pods"), 2, "a 403 is not retried");
    assert!(server.pod(NS, "x").is_none());
    // Everything else works.
    assert!(pods.get("old").await.is_ok());
    pods.patch(
        "old",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .expect("patch");
    server.heal();
    pods.create(&PostParams::default(), &pod("x", &[]))
        .await
        .expect("create after heal");
}

#[tokio::test]
async fn stopped_refuses_connections_and_starts_again_with_its_state() {
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let before = pods
        .create(&PostParams::default(), &pod("p", &[("app", "web")]))
        .await
        .expect("create");
    let applied: Arc<Mutex<Vec<String>>> = Arc::default();
    let watch = tokio::spawn({
        let applied = applied.clone();
        watcher(pods.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each(move |p| {
                if let Ok(p) = p {
                    applied.lock().unwrap().push(p.name_any());
                }
                async {}
            })
    });
    eventually("the watcher's list", || applied.lock().unwrap().len() == 1).await;

    let watches = server.requests("watch", "pods");
    server.stop().await;
    let refused =
        std::net::TcpStream::connect(("127.0.0.1", server.port())).expect_err("nothing listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    match pods.get("p").await {
        Err(kube::Error::Api(status)) => panic!("a stopped server answered: {status:?}"),
        Err(_) => {}
        Ok(p) => panic!("a stopped server answered: {p:?}"),
    }

    server.start_again().await;
    let after = pods.get("p").await.expect("get after restart");
    assert_eq!(after.uid(), before.uid());
    let q = pods
        .create(&PostParams::default(), &pod("q", &[]))
        .await
        .expect("create after restart");
    assert!(rv(&q.metadata) > rv(&before.metadata));
    eventually("the watcher back after the restart", || {
        applied.lock().unwrap().iter().any(|n| n == "q")
    })
    .await;
    assert!(
        server.requests("watch", "pods") > watches,
        "the open watch was cut and the watcher watched again"
    );
    watch.abort();
}

#[tokio::test]
async fn leases_replace_with_conflicts() {
    let server = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let first = leases
        .create(&pp, &lease("lock", "a"))
        .await
        .expect("create");
    assert_eq!(first.metadata.namespace.as_deref(), Some(NS));

    let mut mine = leases.get("lock").await.expect("get");
    mine.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let replaced = leases.replace("lock", &pp, &mine).await.expect("replace");
    assert!(rv(&replaced.metadata) > rv(&first.metadata));
    assert_eq!(
        replaced
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref()),
        Some("b")
    );

    // Another candidate with the old version loses.
    let mut stale = first.clone();
    stale.spec.as_mut().expect("spec").holder_identity = Some("c".into());
    let conflict = status(leases.replace("lock", &pp, &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"lock\": the object has \
         been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        server.leases(NS)[0]
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref()),
        Some("b")
    );
    // Leases take no unconditional update…
    let blind = status(leases.replace("lock", &pp, &lease("lock", "d")).await);
    assert_eq!(
        (blind.code, blind.reason.as_str()),
        (422, "Invalid"),
        "{}",
        blind.message
    );
    // …but a PUT may create one.
    leases
        .replace("fresh", &pp, &lease("fresh", "e"))
        .await
        .expect("create by PUT");
    assert_eq!(server.leases(NS).len(), 2);
    assert_eq!(server.requests("PUT", "leases"), 4);
    assert_eq!(server.requests("update", "leases"), 4);
    // A PUT of an absent pod does not create it.
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    assert_eq!(
        status(pods.replace("nope", &pp, &pod("nope", &[])).await).code,
        404
    );

    // Deleting a lease answers with a Status.
    let gone = leases
        .delete("lock", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = gone.right().expect("a lease delete answers with a Status");
    assert!(gone.is_success());
    assert_eq!(gone.details.expect("details").name, "lock");
    assert_eq!(status(leases.get("lock").await).code, 404);
}

#[tokio::test]
async fn a_kubeconfig_points_a_client_at_it() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = server.kubeconfig(dir.path());
    let kubeconfig = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig config");
    assert_eq!(config.cluster_url.to_string(), format!("{}/", server.url()));
    assert_eq!(config.default_namespace, NS);
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("k", &[]))
        .await
        .expect("create through the kubeconfig");
    assert!(server.pod(NS, "k").is_some());
    let version = server.client().apiserver_version().await.expect("version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
}
