//! Pods for leases, on the Kubernetes API.
//!
//! * [`template`] — a tier's pod, validated and completed to the
//!   `restricted` Pod Security Standard at config load;
//! * [`provision`] — creating (idempotently, by the lease's name) and
//!   extending a lease's pod and its Service;
//! * [`reaper`] — deleting pods whose lease has ended, from their labels
//!   and annotation alone.

pub mod provision;
pub mod reaper;
pub mod template;

pub use provision::{PodError, Pods};
pub use template::{PodTemplate, TemplateError};

/// Every pod Paygress makes carries this label…
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "paygress");
/// …its lease's id…
pub const LEASE_LABEL: &str = "paygress.io/lease";
/// …its tier's id…
pub const TIER_LABEL: &str = "paygress.io/tier";
/// …and when its lease ends (RFC 3339).
pub const EXPIRES_AT: &str = "paygress.io/expires-at";

/// The name of a lease's pod (and Service).
pub fn pod_name(lease: &str) -> String {
    format!("paygress-{lease}")
}

/// The label selector of every pod Paygress makes.
pub fn selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}
