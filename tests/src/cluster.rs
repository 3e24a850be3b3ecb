//! Where the pod suites find a Kubernetes API: the stand-in
//! ([`crate::kube_api::FakeApiServer`]) by default, or a real cluster when
//! `PAYGRESS_TEST_KUBECONFIG` names its kubeconfig (`just test-k8s`).
//!
//! Everything a suite reads of the cluster goes through the real `kube`
//! client, so the same assertions hold on both. What only the stand-in can
//! do (faults on demand, playing the kubelet) is asked for through
//! [`Cluster::fake`], which fails with a message on a real cluster: those
//! suites are not run by `just test-k8s`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use crate::kube_api::FakeApiServer;

/// The variable that points the pod suites at a real cluster.
pub const TEST_KUBECONFIG: &str = "PAYGRESS_TEST_KUBECONFIG";
/// The namespace the pod suites use on a real cluster (it must exist, and
/// the kubeconfig's user may create, patch and delete pods and services in
/// it): `PAYGRESS_TEST_NAMESPACE`, default `paygress-test`.
pub const TEST_NAMESPACE: &str = "PAYGRESS_TEST_NAMESPACE";

/// A Kubernetes API for a test.
#[derive(Debug)]
pub enum Cluster {
    Fake(FakeApiServer),
    Real {
        kubeconfig: PathBuf,
        namespace: String,
    },
}

impl Cluster {
    /// The stand-in, or the real cluster `PAYGRESS_TEST_KUBECONFIG` names.
    pub async fn start() -> Cluster {
        match std::env::var_os(TEST_KUBECONFIG).filter(|v| !v.is_empty()) {
            Some(path) => Cluster::Real {
                kubeconfig: PathBuf::from(path),
                namespace: std::env::var(TEST_NAMESPACE)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "paygress-test".into()),
            },
            None => Cluster::Fake(FakeApiServer::start().await),
        }
    }

    /// The stand-in, for what only it can do; on a real cluster, a failure
    /// that says so.
    pub fn fake(&self) -> &FakeApiServer {
        match self {
            Cluster::Fake(api) => api,
            Cluster::Real { .. } => panic!(
                "this test needs the Kubernetes API stand-in (faults on demand, the kubelet's \
                 part): `just test-k8s` runs only the suites a real cluster can"
            ),
        }
    }

    /// Whether this is the stand-in.
    pub fn is_fake(&self) -> bool {
        matches!(self, Cluster::Fake(_))
    }

    /// The namespace the verifier makes pods in.
    pub fn namespace(&self) -> String {
        match self {
            Cluster::Fake(_) => "tenants".into(),
            Cluster::Real { namespace, .. } => namespace.clone(),
        }
    }

    /// A kubeconfig for the verifier (written into `dir` for the stand-in).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        match self {
            Cluster::Fake(api) => api.kubeconfig(dir),
            Cluster::Real { kubeconfig, .. } => kubeconfig.clone(),
        }
    }

    /// A client of the API.
    pub async fn client(&self) -> kube::Client {
        match self {
            Cluster::Fake(api) => api.client(),
            Cluster::Real { kubeconfig, .. } => {
                let options = kube::config::KubeConfigOptions::default();
                let loaded = kube::config::Kubeconfig::read_from(kubeconfig)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", kubeconfig.display()));
                let config = kube::Config::from_custom_kubeconfig(loaded, &options)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
                kube::Client::try_from(config).unwrap_or_else(|e| panic!("kube client: {e}"))
            }
        }
    }

    async fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client().await, &self.namespace())
    }

    /// The pods Paygress made, by the API.
    pub async fn pods(&self) -> Vec<Pod> {
        let params = ListParams::default().labels("app.kubernetes.io/managed-by=paygress");
        self.pods_api()
            .await
            .list(&params)
            .await
            .unwrap_or_else(|e| panic!("listing pods: {e}"))
            .items
    }

    /// One pod, if it exists (and is not being deleted).
    pub async fn pod(&self, name: &str) -> Option<Pod> {
        self.pods_api()
            .await
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("getting pod {name}: {e}"))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
    }

    /// The Services Paygress made, by the API.
    pub async fn services(&self) -> Vec<Service> {
        let params = ListParams::default().labels("app.kubernetes.io/managed-by=paygress");
        let api: Api<Service> = Api::namespaced(self.client().await, &self.namespace());
        api.list(&params)
            .await
            .unwrap_or_else(|e| panic!("listing services: {e}"))
            .items
    }

    /// Deletes a pod, as an operator would by hand.
    pub async fn delete_pod(&self, name: &str) {
        self.pods_api()
            .await
            .delete(name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("deleting pod {name}: {e}"));
    }
}
