//! Creating and extending a lease's pod and its Service.
//!
//! The pod is named after the lease (`paygress-<lease id>`), so a retried or
//! raced request never makes two: a name clash (409) means "already there".
//! Its annotation `paygress.io/expires-at` says when the lease ends; a
//! top-up moves only that annotation, with the pod's `resourceVersion`, so a
//! conflicting write is retried, never lost, and the annotation never moves
//! back. The Service is owned by the pod, and goes when the pod goes.
//! Every call is bounded by the request's deadline: a pod still starting is
//! answered with its name at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use paygress_core::lease::rfc3339;
use serde_json::json;
use thiserror::Error;

use super::{pod_name, PodTemplate, EXPIRES_AT, LEASE_LABEL, MANAGED_BY, TIER_LABEL};

/// How many times a top-up's annotation write is retried on a conflict.
const CONFLICT_RETRIES: usize = 8;

/// Why a pod could not be provisioned or extended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PodError {
    /// The API refused (403 forbidden or over quota, 422 invalid, …).
    #[error("the Kubernetes API refused ({code} {reason}): {message}")]
    Refused {
        code: u16,
        reason: String,
        message: String,
    },
    /// The API could not be reached, or failed (5xx).
    #[error("the Kubernetes API is unavailable: {0}")]
    Unavailable(String),
    /// The request's deadline passed first.
    #[error("the Kubernetes API did not answer before the request's deadline")]
    Timeout,
    /// The tier has no pod (a configuration mismatch).
    #[error("tier {0:?} has no pod")]
    NoTemplate(String),
}

impl From<kube::Error> for PodError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.code < 500 => PodError::Refused {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => PodError::Unavailable(other.to_string()),
        }
    }
}

/// A lease's pod as the API has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodStatus {
    pub name: String,
    /// `Pending`, `Running`, … (`Unknown` until the kubelet says).
    pub phase: String,
}

/// The pods of leases, in one namespace.
#[derive(Clone)]
pub struct Pods {
    client: Client,
    namespace: String,
    templates: HashMap<String, PodTemplate>,
}

impl std::fmt::Debug for Pods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods")
            .field("namespace", &self.namespace)
            .field("tiers", &self.templates.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl Pods {
    /// Pods in `namespace` for the tiers of `templates` (by tier id).
    pub fn new(client: Client, namespace: String, templates: HashMap<String, PodTemplate>) -> Pods {
        Pods {
            client,
            namespace,
            templates,
        }
    }

    /// Whether a lease of this tier gets a pod.
    pub fn serves(&self, tier: &str) -> bool {
        self.templates.contains_key(tier)
    }

    /// The API client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The namespace the pods live in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Makes sure the lease's pod and Service exist and that the pod's
    /// annotation says at least `expires_at`; the pod's name. Within
    /// `deadline`.
    pub async fn ensure(
        &self,
        lease: &str,
        tier: &str,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<String, PodError> {
        let work = self.ensure_now(lease, tier, expires_at);
        tokio::time::timeout_at(deadline.into(), work)
            .await
            .map_err(|_| PodError::Timeout)?
    }

    async fn ensure_now(
        &self,
        lease: &str,
        tier: &str,
        expires_at: u64,
    ) -> Result<String, PodError> {
        let template = self
            .templates
            .get(tier)
            .ok_or_else(|| PodError::NoTemplate(tier.to_string()))?;
        let name = pod_name(lease);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                    (LEASE_LABEL.to_string(), lease.to_string()),
                    (TIER_LABEL.to_string(), tier.to_string()),
                ])),
                annotations: Some(BTreeMap::from([(
                    EXPIRES_AT.to_string(),
                    rfc3339(expires_at),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(template.spec.clone()),
            status: None,
        };
        let created = match self.pods().create(&PostParams::default(), &pod).await {
            Ok(created) => created,
            // Already there (a retry, a race, a top-up): move its annotation.
            Err(e) if is_status(&e, 409) => self.extend_now(&name, expires_at).await?,
            Err(e) => return Err(e.into()),
        };
        self.ensure_service(&created, lease, template.port).await?;
        Ok(name)
    }

    /// The Service of a lease's pod, owned by it.
    async fn ensure_service(&self, pod: &Pod, lease: &str, port: u16) -> Result<(), PodError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let service = Service {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                    (LEASE_LABEL.to_string(), lease.to_string()),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name,
                    uid,
                    controller: Some(true),
                    // Not blocking: that would need `update` on
                    // pods/finalizers where owner references are enforced.
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(BTreeMap::from([(
                    LEASE_LABEL.to_string(),
                    lease.to_string(),
                )])),
                ports: Some(vec![ServicePort {
                    name: Some("app".into()),
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        match services.create(&PostParams::default(), &service).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the pod's annotation to `expires_at` (never back), with its
    /// `resourceVersion`: a conflicting write is read again and retried.
    async fn extend_now(&self, name: &str, expires_at: u64) -> Result<Pod, PodError> {
        let wanted = rfc3339(expires_at);
        let mut last = String::new();
        for _ in 0..CONFLICT_RETRIES {
            let pod = self.pods().get(name).await?;
            let current = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EXPIRES_AT))
                .cloned()
                .unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                // The lease's earlier pod, being reaped: not one to sell.
                return Err(PodError::Unavailable(
                    "the lease's previous pod is still terminating; try again shortly".into(),
                ));
            }
            // RFC 3339 in UTC with a fixed width compares as text.
            if current >= wanted {
                return Ok(pod);
            }
            let patch = json!({
                "metadata": {
                    "resourceVersion": pod.metadata.resource_version,
                    "annotations": { EXPIRES_AT: wanted },
                }
            });
            match self
                .pods()
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(patched) => return Ok(patched),
                Err(e) if is_status(&e, 409) => last = e.to_string(),
                Err(e) => return Err(e.into()),
            }
        }
        Err(PodError::Unavailable(format!(
            "the pod's annotation kept changing under us: {last}"
        )))
    }

    /// Deletes a lease's pod (its Service goes with it), best effort: a
    /// pod made for a sale that was refunded.
    pub async fn remove(&self, lease: &str) {
        let name = pod_name(lease);
        let pods = self.pods();
        let params = kube::api::DeleteParams::default();
        let delete = pods.delete(&name, &params);
        let Ok(deleted) = tokio::time::timeout(std::time::Duration::from_secs(2), delete).await
        else {
            tracing::warn!(pod = %name, "cannot delete the pod of a refunded sale in time; the reaper will at its expiry");
            return;
        };
        match deleted {
            Ok(_) => tracing::info!(pod = %name, "pod of a refunded sale deleted"),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "cannot delete the pod of a refunded sale; the reaper will at its expiry")
            }
        }
    }

    /// The lease's pod, if it exists.
    pub async fn status(
        &self,
        lease: &str,
        deadline: Instant,
    ) -> Result<Option<PodStatus>, PodError> {
        let name = pod_name(lease);
        let pods = self.pods();
        let pod = tokio::time::timeout_at(deadline.into(), pods.get_opt(&name))
            .await
            .map_err(|_| PodError::Timeout)??;
        Ok(pod.map(|p| PodStatus {
            name,
            phase: p
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "Unknown".into()),
        }))
    }
}
