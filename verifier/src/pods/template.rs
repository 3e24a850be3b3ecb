//! A tier's pod, as the operator writes it (`"pod": {"spec": {…}, "port":
//! 8080}`), validated at config load and completed to the `restricted` Pod
//! Security Standard.
//!
//! Refused, with the key named: host namespaces (`hostNetwork`, `hostPID`,
//! `hostIPC`), volumes other than the restricted standard's (`hostPath`,
//! `nfs`, …), host ports, privileged containers, privilege escalation, added
//! capabilities (but `NET_BIND_SERVICE`), root (`runAsUser: 0`,
//! `runAsNonRoot: false`), an `Unconfined` seccomp profile, sysctls, a
//! non-default `procMount`, a service-account token, a container without
//! CPU and memory requests and limits, and a tier id that is not a label
//! value.
//!
//! Completed: `runAsNonRoot`, a `RuntimeDefault` seccomp profile, no
//! privilege escalation, every capability dropped, no service-account
//! token, `enableServiceLinks: false`.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// A tier's pod, ready to be created for a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTemplate {
    /// The completed spec.
    pub spec: PodSpec,
    /// The port its ClusterIP Service exposes (and targets).
    pub port: u16,
}

/// Why a tier's pod was refused; `key` names where, as `tiers[i].pod.…`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid config: `{key}`: {reason}")]
pub struct TemplateError {
    pub key: String,
    pub reason: String,
}

fn refuse(key: impl Into<String>, reason: impl Into<String>) -> TemplateError {
    TemplateError {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    spec: Value,
    port: Option<u64>,
}

impl PodTemplate {
    /// Validates and completes the pod of `tiers[index]` (whose id labels
    /// its pods).
    pub fn from_config(
        index: usize,
        tier: &str,
        pod: &Value,
    ) -> Result<PodTemplate, TemplateError> {
        if !is_label_value(tier) {
            return Err(refuse(
                format!("tiers[{index}].id"),
                format!("{tier:?} labels its pods: it must start and end with a letter or digit"),
            ));
        }
        let base = format!("tiers[{index}].pod");
        let written: Written = serde_json::from_value(pod.clone()).map_err(|e| {
            refuse(
                &base,
                format!("must be {{\"spec\": {{…}}, \"port\": N}}: {e}"),
            )
        })?;
        let port = match written.port {
            Some(p @ 1..=65_535) => {
                u16::try_from(p).map_err(|_| refuse(format!("{base}.port"), "out of range"))?
            }
            Some(p) => {
                return Err(refuse(
                    format!("{base}.port"),
                    format!("{p} is not a port (1-65535)"),
                ))
            }
            None => {
                return Err(refuse(
                    format!("{base}.port"),
                    "required: the port the lease's Service exposes",
                ))
            }
        };
        let spec_key = format!("{base}.spec");
        let spec: PodSpec = serde_json::from_value(written.spec)
            .map_err(|e| refuse(&spec_key, format!("not a Kubernetes PodSpec: {e}")))?;
        check(&spec_key, &spec)?;
        Ok(PodTemplate {
            spec: complete(spec),
            port,
        })
    }
}

/// The refusals.
fn check(key: &str, spec: &PodSpec) -> Result<(), TemplateError> {
    for (field, set) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if set == Some(true) {
            return Err(refuse(
                format!("{key}.{field}"),
                "host namespaces are not given to tenants",
            ));
        }
    }
    if spec.automount_service_account_token == Some(true) {
        return Err(refuse(
            format!("{key}.automountServiceAccountToken"),
            "a tenant's pod gets no service-account token",
        ));
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if v.host_path.is_some() {
            return Err(refuse(
                format!("{key}.volumes[{i}].hostPath"),
                "hostPath volumes are not given to tenants",
            ));
        }
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if !allowed {
            return Err(refuse(
                format!("{key}.volumes[{i}]"),
                "only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, \
                 projected and secret volumes are allowed (restricted Pod Security Standard)",
            ));
        }
    }
    if let Some(sc) = &spec.security_context {
        if sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(refuse(
                format!("{key}.securityContext.sysctls"),
                "sysctls are not given to tenants",
            ));
        }
        check_identity(
            key,
            sc.run_as_user,
            sc.run_as_non_root,
            sc.seccomp_profile.as_ref(),
        )?;
    }
    if spec.containers.is_empty() {
        return Err(refuse(
            format!("{key}.containers"),
            "at least one container is required",
        ));
    }
    let all = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{key}.containers[{i}]"), c))
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| (format!("{key}.initContainers[{i}]"), c)),
        );
    for (ckey, c) in all {
        check_container(&ckey, c)?;
    }
    Ok(())
}

fn check_container(key: &str, c: &Container) -> Result<(), TemplateError> {
    if let Some(sc) = &c.security_context {
        if sc.privileged == Some(true) {
            return Err(refuse(
                format!("{key}.securityContext.privileged"),
                "privileged containers are not given to tenants",
            ));
        }
        if sc.allow_privilege_escalation == Some(true) {
            return Err(refuse(
                format!("{key}.securityContext.allowPrivilegeEscalation"),
                "must not be true",
            ));
        }
        check_identity(
            key,
            sc.run_as_user,
            sc.run_as_non_root,
            sc.seccomp_profile.as_ref(),
        )?;
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            return Err(refuse(
                format!("{key}.securityContext.procMount"),
                "must be Default",
            ));
        }
        let added = sc.capabilities.as_ref().and_then(|c| c.add.as_ref());
        if let Some(cap) = added
            .into_iter()
            .flatten()
            .find(|c| c.as_str() != "NET_BIND_SERVICE")
        {
            return Err(refuse(
                format!("{key}.securityContext.capabilities.add"),
                format!("{cap:?}: only NET_BIND_SERVICE may be added (restricted Pod Security Standard)"),
            ));
        }
    }
    for (i, p) in c.ports.iter().flatten().enumerate() {
        if p.host_port.is_some_and(|h| h != 0) {
            return Err(refuse(
                format!("{key}.ports[{i}].hostPort"),
                "host ports are not given to tenants",
            ));
        }
    }
    let resources = c.resources.as_ref();
    for (kind, map) in [
        ("requests", resources.and_then(|r| r.requests.as_ref())),
        ("limits", resources.and_then(|r| r.limits.as_ref())),
    ] {
        for quantity in ["cpu", "memory"] {
            if !map.is_some_and(|m| m.contains_key(quantity)) {
                return Err(refuse(
                    format!("{key}.resources.{kind}.{quantity}"),
                    "required: every container of a tenant's pod has CPU and memory requests and limits",
                ));
            }
        }
    }
    Ok(())
}

/// The refusals a pod's and a container's securityContext share: root, and
/// an `Unconfined` seccomp profile.
fn check_identity(
    key: &str,
    run_as_user: Option<i64>,
    run_as_non_root: Option<bool>,
    seccomp: Option<&SeccompProfile>,
) -> Result<(), TemplateError> {
    if run_as_user == Some(0) {
        return Err(refuse(
            format!("{key}.securityContext.runAsUser"),
            "must not be root (0)",
        ));
    }
    if run_as_non_root == Some(false) {
        return Err(refuse(
            format!("{key}.securityContext.runAsNonRoot"),
            "must not be false",
        ));
    }
    if seccomp.is_some_and(|p| p.type_ == "Unconfined") {
        return Err(refuse(
            format!("{key}.securityContext.seccompProfile"),
            "must not be Unconfined",
        ));
    }
    Ok(())
}

/// Whether `text` is a Kubernetes label value: at most 63 characters,
/// letters, digits, `-`, `_`, `.`, beginning and ending with a letter or
/// digit.
fn is_label_value(text: &str) -> bool {
    let b = text.as_bytes();
    let ends_ok = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    text.len() <= 63
        && ends_ok(b.first())
        && ends_ok(b.last())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Completes a (checked) spec to the `restricted` Pod Security Standard.
fn complete(mut spec: PodSpec) -> PodSpec {
    spec.automount_service_account_token = Some(false);
    spec.enable_service_links = Some(false);
    let sc = spec
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    sc.run_as_non_root = Some(true);
    let keeps_profile = sc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost");
    if !keeps_profile {
        sc.seccomp_profile = Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        });
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        let sc = c
            .security_context
            .get_or_insert_with(SecurityContext::default);
        sc.allow_privilege_escalation = Some(false);
        sc.privileged = Some(false);
        sc.run_as_non_root = Some(true);
        let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
        caps.drop = Some(vec!["ALL".into()]);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({ "spec": spec, "port": 8080 })
    }

    fn app() -> Value {
        json!({ "name": "app", "image": "nginx:1.27",
                "resources": { "requests": { "cpu": "100m", "memory": "64Mi" },
                               "limits": { "cpu": "500m", "memory": "128Mi" } } })
    }

    #[test]
    fn a_plain_spec_is_completed_to_the_restricted_standard() {
        let t =
            PodTemplate::from_config(2, "compute", &pod(json!({ "containers": [app()] }))).unwrap();
        assert_eq!(t.port, 8080);
        let s = &t.spec;
        assert_eq!(s.automount_service_account_token, Some(false));
        assert_eq!(s.enable_service_links, Some(false));
        let psc = s.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let csc = s.containers[0].security_context.as_ref().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.privileged, Some(false));
        assert_eq!(
            csc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
    }

    #[test]
    fn what_a_tenant_may_not_have_is_refused_with_the_key_named() {
        let mut privileged = app();
        privileged["securityContext"] = json!({ "privileged": true });
        let mut escalating = app();
        escalating["securityContext"] = json!({ "allowPrivilegeEscalation": true });
        let mut admin = app();
        admin["securityContext"] = json!({ "capabilities": { "add": ["SYS_ADMIN"] } });
        let mut root = app();
        root["securityContext"] = json!({ "runAsUser": 0 });
        let mut host_port = app();
        host_port["ports"] = json!([{ "containerPort": 80, "hostPort": 80 }]);
        let mut unconfined = app();
        unconfined["securityContext"] = json!({ "seccompProfile": { "type": "Unconfined" } });
        let mut proc_mount = app();
        proc_mount["securityContext"] = json!({ "procMount": "Unmasked" });
        let mut no_limits = app();
        no_limits["resources"] = json!({ "requests": { "cpu": "1", "memory": "1Gi" } });
        let cases = [
            (
                json!({ "hostNetwork": true, "containers": [app()] }),
                "tiers[0].pod.spec.hostNetwork",
            ),
            (
                json!({ "hostPID": true, "containers": [app()] }),
                "tiers[0].pod.spec.hostPID",
            ),
            (
                json!({ "hostIPC": true, "containers": [app()] }),
                "tiers[0].pod.spec.hostIPC",
            ),
            (
                json!({ "containers": [app()], "volumes": [{ "name": "v", "emptyDir": {} },
                                                           { "name": "h", "hostPath": { "path": "/" } }] }),
                "tiers[0].pod.spec.volumes[1].hostPath",
            ),
            (
                json!({ "containers": [app(), privileged] }),
                "tiers[0].pod.spec.containers[1].securityContext.privileged",
            ),
            (
                json!({ "containers": [escalating] }),
                "tiers[0].pod.spec.containers[0].securityContext.allowPrivilegeEscalation",
            ),
            (
                json!({ "containers": [admin] }),
                "tiers[0].pod.spec.containers[0].securityContext.capabilities.add",
            ),
            (
                json!({ "containers": [root] }),
                "tiers[0].pod.spec.containers[0].securityContext.runAsUser",
            ),
            (
                json!({ "containers": [host_port] }),
                "tiers[0].pod.spec.containers[0].ports[0].hostPort",
            ),
            (
                json!({ "containers": [no_limits] }),
                "tiers[0].pod.spec.containers[0].resources.limits.cpu",
            ),
            (
                json!({ "containers": [app()], "initContainers": [{ "name": "i", "image": "busybox" }] }),
                "tiers[0].pod.spec.initContainers[0].resources.requests.cpu",
            ),
            (
                json!({ "containers": [app()], "automountServiceAccountToken": true }),
                "tiers[0].pod.spec.automountServiceAccountToken",
            ),
            (
                json!({ "containers": [app()], "securityContext": { "runAsNonRoot": false } }),
                "tiers[0].pod.spec.securityContext.runAsNonRoot",
            ),
            (json!({ "containers": [] }), "tiers[0].pod.spec.containers"),
            (
                json!({ "containers": [app()], "volumes": [{ "name": "n", "nfs": { "server": "s", "path": "/" } }] }),
                "tiers[0].pod.spec.volumes[0]",
            ),
            (
                json!({ "containers": [app()], "securityContext": { "seccompProfile": { "type": "Unconfined" } } }),
                "tiers[0].pod.spec.securityContext.seccompProfile",
            ),
            (
                json!({ "containers": [app()], "securityContext": { "sysctls": [{ "name": "net.core.somaxconn", "value": "1" }] } }),
                "tiers[0].pod.spec.securityContext.sysctls",
            ),
            (
                json!({ "containers": [unconfined] }),
                "tiers[0].pod.spec.containers[0].securityContext.seccompProfile",
            ),
            (
                json!({ "containers": [proc_mount] }),
                "tiers[0].pod.spec.containers[0].securityContext.procMount",
            ),
        ];
        for (spec, key) in cases {
            let err = PodTemplate::from_config(0, "compute", &pod(spec.clone())).unwrap_err();
            assert_eq!(err.key, key, "{spec}: {err}");
            assert!(err.to_string().contains(key));
        }
        for (bad, key) in [
            (
                json!({ "spec": { "containers": [app()] } }),
                "tiers[0].pod.port",
            ),
            (
                json!({ "spec": { "containers": [app()] }, "port": 70000 }),
                "tiers[0].pod.port",
            ),
            (
                json!({ "spec": { "containers": "x" }, "port": 1 }),
                "tiers[0].pod.spec",
            ),
            (json!({ "spec": {}, "port": 1, "extra": 1 }), "tiers[0].pod"),
        ] {
            assert_eq!(
                PodTemplate::from_config(0, "compute", &bad)
                    .unwrap_err()
                    .key,
                key,
                "{bad}"
            );
        }
    }
}
