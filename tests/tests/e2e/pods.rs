//! Pods for leases, end to end: the real filter in Envoy, the real verifier
//! and mint, and the real `kube` client in the verifier talking to the
//! Kubernetes API stand-in (`paygress_tests::kube_api`), or to a real
//! cluster (`paygress_tests::cluster`: `just test-k8s` runs
//! `pods::any_cluster::` against the one `PAYGRESS_TEST_KUBECONFIG` names;
//! `pods::stand_in::` needs faults on demand and runs on the stand-in only).

use std::time::{Duration, Instant};

use paygress_core::lease::rfc3339;
use paygress_core::pass;
use paygress_tests::cluster::Cluster;
use paygress_tests::contract::get;
use paygress_tests::envoy::{Setup, Stack};
use serde_json::{json, Value};

/// The price of the pod tiers.
const BOX: u64 = 8;

fn pod_spec() -> Value {
    json!({
        "spec": { "containers": [{
            "name": "app",
            "image": "nginxinc/nginx-unprivileged:1.27",
            "resources": { "requests": { "cpu": "100m", "memory": "64Mi" },
                           "limits": { "cpu": "500m", "memory": "128Mi" } }
        }] },
        "port": 8080
    })
}

/// The fixture plus `/box` (an hour with a pod) and `/blink` (two seconds
/// with a pod), provisioning on against `cluster`.
async fn pod_stack(cluster: &Cluster, dir: &tempfile::TempDir) -> Stack {
    let kubeconfig = cluster.kubeconfig(dir.path());
    Setup {
        extra_tiers: vec![
            json!({ "id": "box", "path_prefix": "/box", "amount": BOX,
                    "lease": { "seconds": 3600 }, "pod": pod_spec() }),
            json!({ "id": "blink", "path_prefix": "/blink", "amount": BOX,
                    "lease": { "seconds": 2 }, "pod": pod_spec() }),
        ],
        verifier_env: vec![
            ("ENABLE_POD_PROVISIONING".into(), "true".into()),
            ("POD_NAMESPACE".into(), cluster.namespace()),
            ("KUBECONFIG".into(), kubeconfig.display().to_string()),
        ],
        ..Setup::default()
    }
    .start()
    .await
}

/// Buys a lease of `tier` through the filter: its pass, claims and the
/// answer's upstream view.
async fn buy_on(stack: &Stack, path: &str, pass: Option<&str>) -> (String, pass::Claims) {
    let token = stack.wallet().token(BOX).await;
    let mut headers = vec![("X-Cashu", token.as_str())];
    if let Some(p) = pass {
        headers.push(("X-Paygress-Pass", p));
    }
    let answer = get(&stack.url(path), &headers).await;
    assert_eq!(answer.status, 200, "buying {path}: {answer:?}");
    paygress_tests::contract::leases::pass_of_any_path("pods", &answer)
}

async fn lease_json(stack: &Stack, pass: &str) -> Value {
    let answer = get(
        &format!("{}/lease", stack.verifier_url()),
        &[("X-Paygress-Pass", pass)],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

mod any_cluster {
    use super::*;

    #[tokio::test]
    async fn a_lease_gets_one_pod_that_its_pass_reuses_and_a_top_up_extends() {
        let cluster = Cluster::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let stack = pod_stack(&cluster, &dir).await;

        let (pass, claims) = buy_on(&stack, "/box/shell", None).await;
        let name = format!("paygress-{}", claims.lease);
        assert_eq!(claims.pod.as_deref(), Some(name.as_str()), "{claims:?}");
        let seen = stack.upstream.last();
        assert_eq!(
            seen.one("x-provisioned-pod"),
            Some(name.as_str()),
            "{seen:?}"
        );

        // The pod: labels, annotation, the restricted settings, one Service
        // owned by it.
        let pod = cluster.pod(&name).await.expect("the lease's pod");
        let meta = &pod.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        let label = |k: &str| labels.get(k).map(String::as_str);
        assert_eq!(label("app.kubernetes.io/managed-by"), Some("paygress"));
        assert_eq!(label("paygress.io/lease"), Some(claims.lease.as_str()));
        assert_eq!(label("paygress.io/tier"), Some("box"));
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("paygress.io/expires-at"),
            Some(&rfc3339(claims.expires_at))
        );
        let spec = pod.spec.clone().expect("a spec");
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_ne!(spec.host_network, Some(true));
        let psc = spec.security_context.clone().expect("pod securityContext");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let csc = spec.containers[0]
            .security_context
            .clone()
            .expect("container securityContext");
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(
            csc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        let services = cluster.services().await;
        let service = services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no Service {name}: {services:?}"));
        let owners = service
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        assert_eq!(owners.len(), 1, "{owners:?}");
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].name.as_str()),
            ("Pod", name.as_str())
        );
        assert_eq!(Some(&owners[0].uid), meta.uid.as_ref());
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        assert_eq!(ports[0].port, 8080);

        // The pass, again and again: no second pod, and the upstream is told
        // which pod is the payer's.
        for _ in 0..5 {
            let answer = get(&stack.url("/box/shell"), &[("X-Paygress-Pass", &pass)]).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(
                stack.upstream.last().one("x-provisioned-pod"),
                Some(name.as_str())
            );
        }
        let ours = |pods: Vec<k8s_openapi::api::core::v1::Pod>| {
            pods.iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("paygress.io/lease"))
                        == Some(&claims.lease)
                })
                .count()
        };
        assert_eq!(ours(cluster.pods().await), 1);

        // Its status, as the kubelet moves it (played by the stand-in).
        let status = lease_json(&stack, &pass).await;
        assert_eq!(status["pod"], json!(name), "{status}");
        if cluster.is_fake() {
            assert_eq!(status["pod_phase"], "Pending", "{status}");
            cluster
                .fake()
                .set_pod_phase(&cluster.namespace(), &name, "Running");
            assert_eq!(lease_json(&stack, &pass).await["pod_phase"], "Running");
        } else {
            assert!(status["pod_phase"].is_string(), "{status}");
        }

        // A top-up moves the annotation, and nothing else.
        let before = cluster.pod(&name).await.expect("the pod");
        let (_, topped) = buy_on(&stack, "/box/shell", Some(&pass)).await;
        assert_eq!(topped.lease, claims.lease);
        assert_eq!(topped.expires_at, claims.expires_at + 3600);
        let after = cluster.pod(&name).await.expect("the pod");
        assert_eq!(
            after
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .get("paygress.io/expires-at"),
            Some(&rfc3339(topped.expires_at))
        );
        assert_eq!(
            after.metadata.uid, before.metadata.uid,
            "the pod was made again"
        );
        assert_eq!(after.spec, before.spec);
        assert_eq!(ours(cluster.pods().await), 1);

        // Deleted by hand: gone, and the lease says so; the pass still opens
        // the tier's paths.
        cluster.delete_pod(&name).await;
        wait_until("the pod to go", || async {
            cluster.pod(&name).await.is_none()
        })
        .await;
        assert_eq!(lease_json(&stack, &pass).await["pod_phase"], "Gone");
        wait_until("its Service to go", || async {
            !cluster
                .services()
                .await
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        })
        .await;
        assert_eq!(
            get(&stack.url("/box/shell"), &[("X-Paygress-Pass", &pass)])
                .await
                .status,
            200
        );
    }

    #[tokio::test]
    async fn ten_concurrent_first_requests_for_one_lease_make_one_pod() {
        let cluster = Cluster::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let stack = pod_stack(&cluster, &dir).await;
        let before = cluster.pods().await.len();
        let token = stack.wallet().token(BOX).await;
        let url = stack.url("/box/x");
        let headers = [("X-Cashu", token.as_str())];
        let answers = futures::future::join_all((0..10).map(|_| get(&url, &headers))).await;
        let granted = answers.iter().filter(|a| a.status == 200).count();
        assert_eq!(granted, 1, "{answers:?}");
        for refused in answers.iter().filter(|a| a.status != 200) {
            assert!(
                matches!(
                    refused.code().as_str(),
                    "token_already_spent" | "mint_unavailable"
                ),
                "{refused:?}"
            );
        }
        assert_eq!(cluster.pods().await.len(), before + 1);
    }

    #[tokio::test]
    async fn an_ended_lease_is_reaped_even_across_a_verifier_restart() {
        let cluster = Cluster::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut stack = pod_stack(&cluster, &dir).await;
        let (_, claims) = buy_on(&stack, "/blink/x", None).await;
        let name = format!("paygress-{}", claims.lease);
        assert!(cluster.pod(&name).await.is_some());
        // The verifier goes away before the lease ends, and comes back after:
        // the reaper has no state to lose.
        stack.verifier_mut().stop();
        while paygress_tests::contract::leases::unix_now() <= claims.expires_at {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            cluster.pod(&name).await.is_some(),
            "reaped with no verifier running"
        );
        stack.verifier_mut().start_again().await;
        wait_until("the reaper", || async {
            cluster.pod(&name).await.is_none()
        })
        .await;
        wait_until("the pod's Service to go", || async {
            !cluster
                .services()
                .await
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        })
        .await;
        let metrics = stack.verifier_mut().metrics().await;
        assert!(
            metrics.contains("paygress_pods_total{event=\"reaped\"} 1"),
            "{metrics}"
        );
    }
}

mod stand_in {
    use super::*;

    /// Provisioning that fails after the swap: a 503 `provisioning_failed`
    /// with a refund worth what was received; the same token again gets the
    /// same refund, never a second; the refund is spendable.
    #[tokio::test]
    async fn failed_provisioning_refunds_the_payment_once() {
        let cluster = Cluster::start().await;
        let api = cluster.fake();
        let dir = tempfile::tempdir().expect("temp dir");
        let stack = pod_stack(&cluster, &dir).await;
        let url = stack.url("/box/x");

        let quota = "pods \"x\" is forbidden: exceeded quota: tenant-quota, requested: cpu=500m, used: cpu=2, limited: cpu=2";
        let faults = [
            (
                "API unavailable",
                503,
                "ServiceUnavailable",
                "etcd is down",
                false,
            ),
            (
                "forbidden",
                403,
                "Forbidden",
                "pods is forbidden: User cannot create",
                false,
            ),
            ("quota exceeded", 403, "Forbidden", quota, true),
        ];
        for (what, status, reason, message, creates_only) in faults {
            if creates_only {
                api.fail_creates_with(status, reason, message);
            } else {
                api.fail_with(status, reason, message);
            }
            let token = stack.wallet().token(BOX).await;
            let first = get(&url, &[("X-Cashu", token.as_str())]).await;
            first.assert_refused(503, "provisioning_failed");
            let refund = first.json()["refund"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no refund: {first:?}"))
                .to_string();
            assert!(
                !stack.wallet().is_spendable(&token).await,
                "{what}: the token was not redeemed"
            );
            let again = get(&url, &[("X-Cashu", token.as_str())]).await;
            again.assert_refused(503, "provisioning_failed");
            assert_eq!(
                again.json()["refund"],
                json!(refund),
                "{what}: a second refund"
            );
            api.heal();
            assert!(
                cluster.pods().await.is_empty(),
                "{what}: a pod nobody paid for"
            );
            let received = stack.wallet().receive(&refund).await;
            assert_eq!(u64::from(received), BOX, "{what}: the refund");
        }
        // With the API stopped (connections refused) too.
        api.stop().await;
        let token = stack.wallet().token(BOX).await;
        let answer = get(&url, &[("X-Cashu", token.as_str())]).await;
        answer.assert_refused(503, "provisioning_failed");
        assert!(answer.json()["refund"].is_string(), "{answer:?}");
        api.start_again().await;
        // And once the API is back, a lease gets its pod.
        let (_, claims) = buy_on(&stack, "/box/x", None).await;
        assert!(cluster
            .pod(&format!("paygress-{}", claims.lease))
            .await
            .is_some());
        let metrics = stack.verifier_metrics().await;
        assert!(
            metrics.contains("paygress_pods_total{event=\"refunded\"} 4"),
            "{metrics}"
        );
    }
}
