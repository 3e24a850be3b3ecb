//! Every Kubernetes YAML in the repository (`k8s/`, `wasm-plugins/`) parses:
//! each document of a built-in kind into its k8s-openapi type, with no field
//! that the type does not know (a typo would be dropped silently by the API
//! server's client-side decoding, so the test compares the document with its
//! typed round trip), and each custom resource (Traefik, Istio) is checked
//! for the fields its CRD requires and that Paygress relies on.
//!
//! Then the wiring between documents: the verifier's Deployment is hardened
//! and points at objects that exist; the Service, NetworkPolicy and Ingresses
//! reach it; the configs are valid Paygress configs and agree with each other.
//!
//! And the hardening: the Istio gateway drops headers with underscores and
//! the mesh normalises paths; every sold service is reachable only from the
//! proxies that ask Paygress; the verifier reaches only DNS, its mints and
//! the API server, and mounts no API token while pod provisioning is off.
//!
//! And the pass keys: the verifier and the Istio gateway read the key that
//! signs and checks lease passes from the Secret `paygress-pass-keys`, the
//! WasmPlugin hands it to the filter from the gateway's environment, and no
//! manifest carries a secret inline (the shipped Secret's placeholder is not
//! a usable key).
//!
//! And the pods of leases: the verifier's Role is exactly the calls it
//! makes (pods: create, get, list, watch, patch, delete; services: create),
//! namespaced in POD_NAMESPACE and bound to its ServiceAccount; that
//! namespace enforces the restricted Pod Security Standard and has a
//! ResourceQuota, a LimitRange and a default-deny NetworkPolicy; the
//! example tier's pod is accepted by the real verifier (and a privileged
//! variant of it refused, naming the key); and one patch,
//! `k8s/pod-provisioning/enable.yaml`, turns provisioning on.
//!
//! And the replicas on PostgreSQL (`k8s/replicas/`, applied instead of the
//! single SQLite replica; not part of `documents()`): their objects parse
//! like the others, and the Deployment is wired: two or more hardened
//! replicas of the same verifier, the database URL and the mnemonic from
//! Secrets, the replica id and namespace from the downward API, a
//! PodDisruptionBudget, an autoscaler, topology spread, the leader Lease's
//! Role, no ReadWriteOnce claim, and no secret inline.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, LimitRange, Namespace, PersistentVolumeClaim, PodSpec, ResourceQuota,
    Secret, SecretKeySelector, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use paygress_core::lease::{compile_keys, PassKeyConfig};
use paygress_core::Config;
use paygress_tests::tools;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The verifier's Service as Istio names its outbound cluster.
const ISTIO_VERIFIER_CLUSTER: &str =
    "outbound|8080||paygress-auth.paygress-system.svc.cluster.local";
/// The headers the verifier sets on a grant.
const GRANT_HEADERS: [&str; 6] = [
    "X-Payment-Verified",
    "X-Payment-Amount",
    "X-Payment-Tier",
    "X-User-ID",
    "X-Provisioned-Pod",
    "X-Paygress-Lease",
];
/// The variable that holds the pass key's secret, in the verifier's and the
/// Istio gateway's environment.
const PASS_KEY_ENV: &str = "PAYGRESS_PASS_KEY";
/// The Secret (and its key) that the variable comes from.
const PASS_KEY_SECRET: &str = "paygress-pass-keys";
const PASS_KEY_SECRET_KEY: &str = "current";
/// A well-formed pass key secret (32 bytes, base64) that the tests put in
/// the variables that the manifests wire from a Secret or the host, so that
/// a config naming them compiles as it would in the cluster.
const TEST_PASS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// One YAML document of the repository, as JSON.
#[derive(Debug, Clone)]
struct Doc {
    file: String,
    index: usize,
    value: Value,
}

impl Doc {
    fn at(&self) -> String {
        format!(
            "{} document {} ({} {})",
            self.file,
            self.index,
            self.kind(),
            self.name()
        )
    }
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }
}

/// The YAML files directly under `dirs` (relative to the workspace root;
/// subdirectories are not read, as `kubectl apply -f DIR` does not).
fn manifest_files(dirs: &[&str]) -> Vec<PathBuf> {
    let root = tools::workspace_root();
    let mut files = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        {
            let path = entry.unwrap_or_else(|err| panic!("{err}")).path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every non-empty document of every manifest file of `k8s/` and
/// `wasm-plugins/`: what `kubectl apply -f k8s/` installs, with the
/// single-replica verifier.
fn documents() -> Vec<Doc> {
    documents_in(&["k8s", "wasm-plugins"])
}

/// The replicated verifier on PostgreSQL (`k8s/replicas/`), applied instead
/// of the single-replica Deployment: not in [`documents()`], whose checks
/// are of the default installation.
fn replica_documents() -> Vec<Doc> {
    documents_in(&[REPLICAS_DIR])
}

/// Every non-empty document of every manifest file directly under `dirs`.
fn documents_in(dirs: &[&str]) -> Vec<Doc> {
    let root = tools::workspace_root();
    let mut docs = Vec::new();
    for path in manifest_files(dirs) {
        let file = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {file}: {err}"));
        for (index, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let yaml: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|err| panic!("{file} document {index}: not YAML: {err}"));
            if yaml.is_null() {
                continue;
            }
            let value = serde_json::to_value(&yaml)
                .unwrap_or_else(|err| panic!("{file} document {index}: not JSON-like: {err}"));
            docs.push(Doc {
                file: file.clone(),
                index,
                value,
            });
        }
    }
    assert!(!docs.is_empty(), "no manifests found in {dirs:?}");
    docs
}

fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in k8s/ or wasm-plugins/"))
}

fn find_in<'a>(docs: &'a [Doc], kind: &str, namespace: &str, name: &str) -> Option<&'a Doc> {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name && d.namespace() == namespace)
}

/// Parses `doc` into `T` and checks that every field of the document
/// survives the typed round trip (so none is unknown to the type).
fn typed<T: DeserializeOwned + Serialize>(doc: &Doc) -> T {
    let parsed: T = serde_json::from_value(doc.value.clone())
        .unwrap_or_else(|err| panic!("{}: does not parse as its type: {err}", doc.at()));
    let back = serde_json::to_value(&parsed)
        .unwrap_or_else(|err| panic!("{}: cannot serialize back: {err}", doc.at()));
    assert_subset(&doc.value, &back, &doc.at(), "");
    parsed
}

/// Every value of `original` is in `typed` at the same path.
fn assert_subset(original: &Value, typed: &Value, at: &str, path: &str) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => assert_subset(value, other, at, &here),
                    None if value.is_null() => {}
                    None => panic!("{at}: field {here} is unknown to the type (a typo?)"),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(
                a.len(),
                b.len(),
                "{at}: {path} changed length in the round trip"
            );
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, at, &format!("{path}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{at}: {path} changed in the round trip"),
    }
}

fn str_at<'a>(doc: &'a Doc, pointer: &str) -> &'a str {
    doc.value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{}: {pointer} must be a string", doc.at()))
}

fn array_at<'a>(doc: &'a Doc, pointer: &str) -> &'a Vec<Value> {
    doc.value
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{}: {pointer} must be a list", doc.at()))
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

/// A valid Paygress config (paygress-core's own parser and validation),
/// with `wired` the environment variables that the manifest gives the
/// process (from a Secret, or the host's): each holds a test key, every
/// other variable is unset, so a `secret_env` naming a variable that is not
/// wired is refused as it would be in the cluster.
fn paygress_config(json: &Value, at: &str, wired: &[String]) -> Config {
    let config = Config::from_value(json.clone())
        .unwrap_or_else(|err| panic!("{at}: not a Paygress config: {err}"));
    let env = |name: &str| {
        wired
            .iter()
            .any(|w| w == name)
            .then(|| TEST_PASS_KEY.to_string())
    };
    config
        .compile_with_env(&env)
        .unwrap_or_else(|err| panic!("{at}: invalid Paygress config: {err}"));
    config
}

/// The variables a WasmPlugin hands its filter from the host
/// (`vmConfig.env` with `valueFrom: HOST`).
fn wasm_host_env(doc: &Doc) -> Vec<String> {
    doc.value["spec"]["vmConfig"]["env"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|e| e["valueFrom"] == "HOST")
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

/// The variables a container takes from a Secret (`secretKeyRef`).
fn secret_env(container: &k8s_openapi::api::core::v1::Container) -> Vec<String> {
    container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.value_from
                .as_ref()
                .is_some_and(|v| v.secret_key_ref.is_some())
        })
        .map(|e| e.name)
        .collect()
}

// ---------------------------------------------------------------------------
// Custom resources: the fields their CRDs require and Paygress relies on.

fn check_wasm_plugin(doc: &Doc) {
    let spec = &doc.value["spec"];
    let url = str_at(doc, "/spec/url");
    assert!(
        url.starts_with("oci://") || url.starts_with("https://") || url.starts_with("file://"),
        "{}: url {url} is not oci://, https:// or file://",
        doc.at()
    );
    if !url.contains("@sha256:") {
        let sha = str_at(doc, "/spec/sha256");
        assert!(
            sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{}: sha256 must be 64 hex digits (without \"sha256:\"), got {sha}",
            doc.at()
        );
    }
    assert_eq!(spec["phase"], "AUTHN", "{}", doc.at());
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{}", doc.at());
    assert!(
        spec["selector"]["matchLabels"].is_object() || spec["targetRefs"].is_array(),
        "{}: a WasmPlugin selects its workloads",
        doc.at()
    );
    if let Some(t) = spec.get("type") {
        assert_eq!(t, "HTTP", "{}", doc.at());
    }
    let config = paygress_config(&spec["pluginConfig"], &doc.at(), &wasm_host_env(doc));
    assert_eq!(
        config.verifier.cluster,
        ISTIO_VERIFIER_CLUSTER,
        "{}",
        doc.at()
    );
    assert_eq!(
        config.failure_mode,
        paygress_core::FailureMode::Deny,
        "{}",
        doc.at()
    );
}

fn check_middleware(doc: &Doc) {
    let spec = doc.value["spec"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no spec", doc.at()));
    assert_eq!(
        spec.len(),
        1,
        "{}: a Middleware has exactly one type",
        doc.at()
    );
    if let Some(fa) = spec.get("forwardAuth") {
        let address = fa["address"].as_str().unwrap_or_default();
        assert!(
            address.starts_with("http") && address.ends_with("/auth"),
            "{}: forwardAuth.address {address} must call the verifier's /auth",
            doc.at()
        );
        assert_eq!(
            fa["trustForwardHeader"],
            Value::Bool(false),
            "{}: trusting a client's X-Forwarded-Uri lets it reprice a paid path",
            doc.at()
        );
        let response = strings(
            fa["authResponseHeaders"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        for header in GRANT_HEADERS {
            assert!(
                response.iter().any(|h| h.eq_ignore_ascii_case(header)),
                "{}: authResponseHeaders lacks {header}",
                doc.at()
            );
        }
        let request = strings(
            fa["authRequestHeaders"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        assert!(
            !request.is_empty()
                && !request
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case("X-Original-URL")),
            "{}: authRequestHeaders must list the token headers and never X-Original-URL",
            doc.at()
        );
        // Leases: the pass reaches the verifier (header, Bearer, cookie),
        // the cookies go upstream without it, and the pass cookie of a
        // grant reaches the client.
        for header in ["X-Paygress-Pass", "Cookie"] {
            assert!(
                request.iter().any(|h| h.eq_ignore_ascii_case(header)),
                "{}: authRequestHeaders lacks {header}: the verifier cannot see the pass",
                doc.at()
            );
        }
        assert!(
            response.iter().any(|h| h.eq_ignore_ascii_case("Cookie")),
            "{}: authResponseHeaders lacks Cookie: the pass cookie would reach the upstream",
            doc.at()
        );
        let cookies = strings(
            fa["addAuthCookiesToResponse"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        assert!(
            cookies.iter().any(|c| c == "paygress_pass"),
            "{}: addAuthCookiesToResponse lacks paygress_pass: a lease bought through \
             Traefik would hand the client no pass",
            doc.at()
        );
    } else if let Some(headers) = spec.get("headers") {
        assert!(headers["customRequestHeaders"].is_object(), "{}", doc.at());
        if doc.name() == "paygress-strip-x-cashu" {
            for header in ["X-Cashu", "X-Paygress-Pass"] {
                assert_eq!(
                    headers["customRequestHeaders"][header],
                    "",
                    "{}: {header} must be removed before the upstream",
                    doc.at()
                );
            }
        }
    } else if let Some(rate) = spec.get("rateLimit") {
        // A rate limit (docs/rate-limits.md): a sustained rate, a burst no
        // smaller, per client address or for all clients of a Host.
        let average = rate["average"].as_u64().unwrap_or(0);
        let burst = rate["burst"].as_u64().unwrap_or(0);
        assert!(
            average > 0 && burst >= average,
            "{}: rateLimit average {average}, burst {burst}",
            doc.at()
        );
        let source = &rate["sourceCriterion"];
        assert!(
            source["ipStrategy"].is_object() || source["requestHost"] == Value::Bool(true),
            "{}: a rateLimit keys on the client's address (ipStrategy) or the Host",
            doc.at()
        );
    } else {
        panic!("{}: unexpected Middleware type {:?}", doc.at(), spec.keys());
    }
}

fn check_ingress_route(doc: &Doc, docs: &[Doc]) {
    let routes = array_at(doc, "/spec/routes");
    assert!(!routes.is_empty(), "{}", doc.at());
    for route in routes {
        assert!(
            route["match"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: route without match",
            doc.at()
        );
        for middleware in route["middlewares"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = middleware["name"].as_str().unwrap_or_default();
            let namespace = middleware["namespace"].as_str().unwrap_or(doc.namespace());
            assert!(
                find_in(docs, "Middleware", namespace, name).is_some(),
                "{}: middleware {namespace}/{name} does not exist",
                doc.at()
            );
        }
        let services = route["services"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!services.is_empty(), "{}: route without services", doc.at());
        for service in services {
            let name = service["name"].as_str().unwrap_or_default();
            assert!(
                find_in(docs, "Service", doc.namespace(), name).is_some(),
                "{}: service {name} does not exist in {}",
                doc.at(),
                doc.namespace()
            );
        }
    }
    // The token comes out on every route: X-Cashu always.
    for route in routes {
        let names: Vec<&str> = route["middlewares"]
            .as_array()
            .map(|m| m.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        // Only rate limits come before the verifier is asked, and every
        // route has them (docs/rate-limits.md).
        let auth_at = names.iter().position(|n| *n == "paygress-auth");
        let rate_limited = |name: &str| {
            find_in(docs, "Middleware", doc.namespace(), name)
                .is_some_and(|m| m.value["spec"]["rateLimit"].is_object())
        };
        assert!(
            auth_at.is_some_and(|at| at > 0 && names[..at].iter().all(|n| rate_limited(n))),
            "{}: a route runs its rate limits, then paygress-auth, before anything else: {names:?}",
            doc.at()
        );
        assert!(
            names.contains(&"paygress-strip-x-cashu"),
            "{}: X-Cashu must be stripped",
            doc.at()
        );
    }
}

fn check_authorization_policy(doc: &Doc, docs: &[Doc]) {
    assert_eq!(doc.value["spec"]["action"], "CUSTOM", "{}", doc.at());
    let provider = str_at(doc, "/spec/provider/name");
    let known: Vec<String> = docs
        .iter()
        .filter(|d| d.kind() == "IstioOperator")
        .flat_map(|d| {
            d.value["spec"]["meshConfig"]["extensionProviders"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        known.iter().any(|k| k == provider),
        "{}: provider {provider} is not an extensionProvider of the mesh config ({known:?})",
        doc.at()
    );
    assert!(
        doc.value["spec"]["rules"].is_array(),
        "{}: CUSTOM needs rules",
        doc.at()
    );
}

fn check_envoy_filter(doc: &Doc) {
    let patches = array_at(doc, "/spec/configPatches");
    assert!(!patches.is_empty(), "{}", doc.at());
    for patch in patches {
        assert!(patch["applyTo"].is_string(), "{}: applyTo", doc.at());
        assert!(
            patch["patch"]["operation"].is_string(),
            "{}: patch.operation",
            doc.at()
        );
        assert!(
            patch["patch"]["value"].is_object(),
            "{}: patch.value",
            doc.at()
        );
    }
}

fn check_istio_operator(doc: &Doc) {
    let providers = array_at(doc, "/spec/meshConfig/extensionProviders");
    assert!(!providers.is_empty(), "{}", doc.at());
    for provider in providers {
        assert!(provider["name"].is_string(), "{}", doc.at());
        let http = &provider["envoyExtAuthzHttp"];
        assert!(http.is_object(), "{}: envoyExtAuthzHttp", doc.at());
        assert_eq!(
            http["service"],
            "paygress-auth.paygress-system.svc.cluster.local",
            "{}",
            doc.at()
        );
        assert_eq!(http["port"], 8080, "{}", doc.at());
        assert_eq!(http["pathPrefix"], "/auth", "{}", doc.at());
        assert!(
            http["timeout"].as_str().is_some_and(|t| t.ends_with('s')),
            "{}: a timeout is set",
            doc.at()
        );
        assert_eq!(http["failOpen"], Value::Bool(false), "{}", doc.at());
        let up = strings(
            http["headersToUpstreamOnAllow"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        for header in GRANT_HEADERS {
            assert!(
                up.iter().any(|h| h.eq_ignore_ascii_case(header)),
                "{}: headersToUpstreamOnAllow lacks {header}",
                doc.at()
            );
        }
        let down = strings(
            http["headersToDownstreamOnDeny"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        assert!(
            down.iter().any(|h| h.eq_ignore_ascii_case("x-cashu")),
            "{}: the 402's X-Cashu must reach the client",
            doc.at()
        );
        let check = strings(
            http["includeRequestHeadersInCheck"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        assert!(
            check.iter().any(|h| h.eq_ignore_ascii_case("x-cashu")),
            "{}: the token must reach the verifier",
            doc.at()
        );
        // Leases: the pass (header, Bearer, cookie) reaches the verifier;
        // on a grant the cookies go upstream without the pass's, and a pass
        // sold or extended goes to the client.
        for header in ["authorization", "x-paygress-pass", "cookie"] {
            assert!(
                check.iter().any(|h| h.eq_ignore_ascii_case(header)),
                "{}: includeRequestHeadersInCheck lacks {header}",
                doc.at()
            );
        }
        assert!(
            up.iter().any(|h| h.eq_ignore_ascii_case("cookie")),
            "{}: headersToUpstreamOnAllow lacks cookie: the pass cookie would reach the upstream",
            doc.at()
        );
        let down_on_allow = strings(
            http["headersToDownstreamOnAllow"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        for header in ["x-paygress-pass", "set-cookie"] {
            assert!(
                down_on_allow.iter().any(|h| h.eq_ignore_ascii_case(header)),
                "{}: headersToDownstreamOnAllow lacks {header}: a lease bought here would hand \
                 the client no pass",
                doc.at()
            );
        }
    }
}

// ---------------------------------------------------------------------------

/// Parses `doc` into its k8s-openapi type (no unknown field), or checks it
/// against its CRD; `docs` are the objects it may refer to.
fn check_document(doc: &Doc, docs: &[Doc]) {
    assert!(
        !doc.name().is_empty(),
        "{}: metadata.name is required",
        doc.at()
    );
    match (doc.api_version(), doc.kind()) {
            ("v1", "Namespace") => drop(typed::<Namespace>(doc)),
            ("v1", "ConfigMap") => drop(typed::<ConfigMap>(doc)),
            ("v1", "Secret") => drop(typed::<Secret>(doc)),
            ("v1", "Service") => drop(typed::<Service>(doc)),
            ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(doc)),
            ("v1", "PersistentVolumeClaim") => drop(typed::<PersistentVolumeClaim>(doc)),
            ("v1", "ResourceQuota") => drop(typed::<ResourceQuota>(doc)),
            ("v1", "LimitRange") => drop(typed::<LimitRange>(doc)),
            ("apps/v1", "Deployment") => drop(typed::<Deployment>(doc)),
            ("apps/v1", "StatefulSet") => drop(typed::<StatefulSet>(doc)),
            ("apps/v1", "DaemonSet") => drop(typed::<DaemonSet>(doc)),
            ("policy/v1", "PodDisruptionBudget") => drop(typed::<PodDisruptionBudget>(doc)),
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                drop(typed::<HorizontalPodAutoscaler>(doc))
            }
            ("networking.k8s.io/v1", "Ingress") => drop(typed::<Ingress>(doc)),
            ("networking.k8s.io/v1", "NetworkPolicy") => drop(typed::<NetworkPolicy>(doc)),
            ("rbac.authorization.k8s.io/v1", "Role") => drop(typed::<Role>(doc)),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => drop(typed::<RoleBinding>(doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => drop(typed::<ClusterRole>(doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                drop(typed::<ClusterRoleBinding>(doc))
            }
            ("extensions.istio.io/v1alpha1", "WasmPlugin") => check_wasm_plugin(doc),
            ("traefik.io/v1alpha1", "Middleware") => check_middleware(doc),
            ("traefik.io/v1alpha1", "IngressRoute") => check_ingress_route(doc, docs),
            ("security.istio.io/v1" | "security.istio.io/v1beta1", "AuthorizationPolicy") => {
                check_authorization_policy(doc, docs)
            }
            ("networking.istio.io/v1alpha3", "EnvoyFilter") => check_envoy_filter(doc),
            ("install.istio.io/v1alpha1", "IstioOperator") => check_istio_operator(doc),
            (api, kind) => panic!(
                "{}: {api} {kind} is not known to tests/tests/manifests.rs: add its type or its CRD check",
                doc.at()
            ),
        }
}

#[test]
fn every_manifest_parses_into_its_type() {
    let docs = documents();
    let replicas = replica_documents();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for doc in docs.iter().chain(&replicas) {
        check_document(doc, &docs);
        *counts
            .entry(format!("{} {}", doc.api_version(), doc.kind()))
            .or_default() += 1;
    }
    eprintln!("checked: {counts:#?}");
    for kind in [
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "Ingress",
        "NetworkPolicy",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ResourceQuota",
        "LimitRange",
        "WasmPlugin",
        "Middleware",
        "AuthorizationPolicy",
    ] {
        assert!(
            docs.iter().any(|d| d.kind() == kind),
            "no {kind} in k8s/ or wasm-plugins/"
        );
    }
    for kind in [
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Role",
        "RoleBinding",
        "Secret",
        "NetworkPolicy",
    ] {
        assert!(
            replicas.iter().any(|d| d.kind() == kind),
            "no {kind} in {REPLICAS_DIR}/"
        );
    }
}

#[test]
fn every_namespaced_object_names_an_existing_namespace() {
    let docs = documents();
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    let known: Vec<&str> = docs
        .iter()
        .filter(|d| d.kind() == "Namespace")
        .map(Doc::name)
        .chain(["istio-system"])
        .collect();
    for doc in docs.iter().chain(&replica_documents()) {
        if cluster_scoped.contains(&doc.kind()) {
            continue;
        }
        assert!(
            known.contains(&doc.namespace()),
            "{}: namespace {:?} is neither created here nor istio-system",
            doc.at(),
            doc.namespace()
        );
    }
}

/// The verifier's pod is hardened: not root, RuntimeDefault seccomp, a
/// writable data volume by group (fsGroup) under a read-only root
/// filesystem, no privilege, every capability dropped, CPU and memory
/// requested and bounded, and probed on /readyz and /healthz. Shared by the
/// single-replica Deployment and the replicas of `k8s/replicas/`.
fn assert_verifier_pod_hardened(pod: &PodSpec, at: &str) {
    let pod_security = pod.security_context.clone().unwrap_or_default();
    assert_eq!(
        pod_security.run_as_non_root,
        Some(true),
        "{at}: runAsNonRoot"
    );
    assert!(
        pod_security.run_as_user.is_some_and(|uid| uid != 0),
        "{at}: runAsUser names a non-root uid: {:?}",
        pod_security.run_as_user
    );
    // The root filesystem is read-only: the data volume must be writable by
    // the verifier's group.
    assert!(
        pod_security.fs_group.is_some_and(|gid| gid != 0),
        "{at}: fsGroup makes the data volume writable: {:?}",
        pod_security.fs_group
    );
    assert_eq!(
        pod_security
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault"),
        "{at}: seccompProfile"
    );

    assert_eq!(pod.containers.len(), 1, "{at}: one container");
    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap_or_default();
    assert_ne!(security.run_as_non_root, Some(false), "{at}: runAsNonRoot");
    assert_ne!(security.privileged, Some(true), "{at}: privileged");
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "{at}: readOnlyRootFilesystem"
    );
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "{at}: allowPrivilegeEscalation"
    );
    assert!(
        security
            .capabilities
            .and_then(|c| c.drop)
            .is_some_and(|d| d.iter().any(|c| c == "ALL")),
        "{at}: capabilities drop ALL"
    );
    let resources = container.resources.clone().unwrap_or_default();
    for key in ["cpu", "memory"] {
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key(key)),
            "{at}: requests.{key}"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|r| r.contains_key(key)),
            "{at}: limits.{key}"
        );
    }
    let readiness = container
        .readiness_probe
        .clone()
        .and_then(|p| p.http_get)
        .unwrap_or_else(|| panic!("{at}: no readiness probe"));
    assert_eq!(readiness.path.as_deref(), Some("/readyz"), "{at}");
    let liveness = container
        .liveness_probe
        .clone()
        .and_then(|p| p.http_get)
        .unwrap_or_else(|| panic!("{at}: no liveness probe"));
    assert_eq!(liveness.path.as_deref(), Some("/healthz"), "{at}");
}

#[test]
fn the_verifier_deployment_is_hardened_and_wired() {
    let docs = documents();
    let doc = find(&docs, "Deployment", "paygress-auth");
    assert_eq!(doc.namespace(), "paygress-system");
    let deployment: Deployment = typed(doc);
    let spec = deployment.spec.unwrap_or_default();
    let template = spec.template;
    let pod_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let pod = template.spec.unwrap_or_default();

    assert_verifier_pod_hardened(&pod, &doc.at());
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
    let arg = |flag: &str| -> String {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("paygress serve needs {flag}: {args:?}"));
        args.get(i + 1).cloned().unwrap_or_default()
    };
    let config_path = arg("--config");
    let listen = arg("--listen");
    let data_dir = arg("--data-dir");
    assert!(listen.ends_with(":8080"), "--listen {listen}");

    // The mounts: the config file comes from a ConfigMap that holds a valid
    // config; the data dir is a writable volume.
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    let volume_for = |path: &str| {
        let mount = mounts
            .iter()
            .filter(|m| path.starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.len())
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("no volume {}", mount.name))
            .clone();
        (mount.clone(), volume)
    };
    let (config_mount, config_volume) = volume_for(&config_path);
    let config_map_name = config_volume
        .config_map
        .map(|c| c.name)
        .unwrap_or_else(|| panic!("{config_path} is not from a ConfigMap"));
    let file = config_path
        .strip_prefix(&format!(
            "{}/",
            config_mount.mount_path.trim_end_matches('/')
        ))
        .unwrap_or_else(|| panic!("{config_path} not under {}", config_mount.mount_path));
    let config_map: ConfigMap = typed(
        find_in(&docs, "ConfigMap", "paygress-system", &config_map_name)
            .unwrap_or_else(|| panic!("ConfigMap {config_map_name} does not exist")),
    );
    let text = config_map
        .data
        .and_then(|d| d.get(file).cloned())
        .unwrap_or_else(|| panic!("ConfigMap {config_map_name} has no {file}"));
    let verifier_config = paygress_config(
        &serde_json::from_str(&text).unwrap_or_else(|err| panic!("{file} is not JSON: {err}")),
        &format!("ConfigMap {config_map_name} {file}"),
        &secret_env(container),
    );
    let (data_mount, data_volume) = volume_for(&data_dir);
    assert_ne!(
        data_mount.read_only,
        Some(true),
        "the data dir must be writable"
    );
    match (&data_volume.persistent_volume_claim, &data_volume.empty_dir) {
        (Some(claim), _) => {
            assert!(
                find_in(
                    &docs,
                    "PersistentVolumeClaim",
                    "paygress-system",
                    &claim.claim_name
                )
                .is_some(),
                "PersistentVolumeClaim {} does not exist",
                claim.claim_name
            );
            // A ReadWriteOnce claim cannot be shared by a rolling update.
            assert_eq!(spec.replicas, Some(1), "one replica per wallet store");
            assert_eq!(
                spec.strategy.and_then(|s| s.type_).as_deref(),
                Some("Recreate"),
                "a RWO data volume needs the Recreate strategy"
            );
        }
        (None, Some(_)) => {}
        _ => panic!("the data dir must be a PersistentVolumeClaim or an emptyDir"),
    }

    // The ServiceAccount exists, and POD_NAMESPACE is where its Role is.
    let account = pod
        .service_account_name
        .clone()
        .unwrap_or_else(|| panic!("no serviceAccountName"));
    assert!(find_in(&docs, "ServiceAccount", "paygress-system", &account).is_some());
    let env = container.env.clone().unwrap_or_default();
    let pod_namespace = env
        .iter()
        .find(|e| e.name == "POD_NAMESPACE")
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("POD_NAMESPACE is not set"));
    let binding: RoleBinding = typed(
        docs.iter()
            .find(|d| d.kind() == "RoleBinding" && d.namespace() == pod_namespace)
            .unwrap_or_else(|| panic!("no RoleBinding in POD_NAMESPACE {pod_namespace}")),
    );
    assert!(binding
        .subjects
        .unwrap_or_default()
        .iter()
        .any(|s| s.kind == "ServiceAccount"
            && s.name == account
            && s.namespace.as_deref() == Some("paygress-system")));
    let role: Role = typed(
        find_in(&docs, "Role", &pod_namespace, &binding.role_ref.name)
            .unwrap_or_else(|| panic!("Role {} does not exist", binding.role_ref.name)),
    );
    let rules = role.rules.unwrap_or_default();
    let pod_rule = rules
        .iter()
        .find(|r| {
            r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == "pods"))
        })
        .unwrap_or_else(|| panic!("the Role has no rule for pods"));
    let mut verbs = pod_rule.verbs.clone();
    verbs.sort();
    assert_eq!(verbs, ["create", "delete", "get", "list", "patch", "watch"]);
    assert!(
        rules.iter().all(|r| !r.verbs.iter().any(|v| v == "*")
            && !r
                .resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == "*" || x == "secrets"))),
        "the Role grants no wildcard and no secrets"
    );

    // The Service reaches these pods on 8080.
    let service: Service = typed(find(&docs, "Service", "paygress-auth"));
    let service_spec = service.spec.unwrap_or_default();
    let selector = service_spec.selector.unwrap_or_default();
    assert!(!selector.is_empty());
    for (key, value) in &selector {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "the Service selects {key}={value}"
        );
    }
    assert!(service_spec
        .ports
        .unwrap_or_default()
        .iter()
        .any(|p| p.port == 8080));

    // The NetworkPolicy applies to these pods and lets the proxies in on 8080.
    let policy: NetworkPolicy = typed(find(&docs, "NetworkPolicy", "paygress-auth"));
    let policy_spec = policy.spec.unwrap_or_default();
    for (key, value) in policy_spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default()
    {
        assert_eq!(
            pod_labels.get(&key),
            Some(&value),
            "the NetworkPolicy selects {key}={value}"
        );
    }
    let types = policy_spec.policy_types.unwrap_or_default();
    assert!(types.iter().any(|t| t == "Ingress") && types.iter().any(|t| t == "Egress"));
    let ingress = policy_spec.ingress.unwrap_or_default();
    assert!(
        !ingress.is_empty()
            && ingress
                .iter()
                .all(|rule| rule.from.as_ref().is_some_and(|f| !f.is_empty())),
        "every ingress rule names who may connect"
    );

    // The WasmPlugin's filter config sells the same things as the verifier.
    let plugin = find(&docs, "WasmPlugin", "paygress");
    let plugin_config = paygress_config(
        &plugin.value["spec"]["pluginConfig"],
        &plugin.at(),
        &wasm_host_env(plugin),
    );
    assert_eq!(
        plugin_config.mints, verifier_config.mints,
        "WasmPlugin and verifier accept the same mints"
    );
    // A tier's `pod` is the verifier's business (the filter ignores it).
    let without_pods = |config: &Config| {
        let mut tiers = config.tiers.clone();
        for tier in &mut tiers {
            tier.pod = None;
        }
        tiers
    };
    assert_eq!(
        without_pods(&plugin_config),
        without_pods(&verifier_config),
        "WasmPlugin and verifier price alike"
    );
    assert_eq!(plugin_config.free_paths, verifier_config.free_paths);
    assert_eq!(plugin_config.default_amount, verifier_config.default_amount);
    assert_eq!(plugin_config.unit, verifier_config.unit);
    assert_eq!(
        plugin_config.pass_keys, verifier_config.pass_keys,
        "WasmPlugin and verifier check passes with the same keys"
    );
}

#[test]
fn every_ingress_path_asks_the_verifier() {
    let docs = documents();
    let annotation = |ingress: &Ingress, key: &str| -> Option<String> {
        ingress.metadata.annotations.as_ref().and_then(|a| {
            a.get(&format!("nginx.ingress.kubernetes.io/{key}"))
                .cloned()
        })
    };
    let paid_doc = find(&docs, "Ingress", "my-app-paid");
    let paid: Ingress = typed(paid_doc);
    let auth_url = annotation(&paid, "auth-url").unwrap_or_else(|| panic!("no auth-url"));
    assert_eq!(
        auth_url,
        "http://paygress-auth.paygress-system.svc.cluster.local:8080/auth"
    );
    assert_eq!(annotation(&paid, "auth-method").as_deref(), Some("GET"));
    let response_headers = annotation(&paid, "auth-response-headers").unwrap_or_default();
    for header in GRANT_HEADERS.iter().chain(&["Cookie"]) {
        assert!(
            response_headers.split(',').any(|h| h.trim() == *header),
            "auth-response-headers lacks {header}"
        );
    }
    let set_headers = annotation(&paid, "auth-proxy-set-headers")
        .unwrap_or_else(|| panic!("no auth-proxy-set-headers"));
    let (namespace, name) = set_headers
        .split_once('/')
        .unwrap_or_else(|| panic!("{set_headers}"));
    assert_eq!(
        namespace,
        paid_doc.namespace(),
        "ingress-nginx refuses a ConfigMap from another namespace"
    );
    let headers: ConfigMap = typed(
        find_in(&docs, "ConfigMap", namespace, name)
            .unwrap_or_else(|| panic!("no ConfigMap {set_headers}")),
    );
    assert_eq!(
        headers
            .data
            .unwrap_or_default()
            .get("X-Paygress-Mode")
            .map(String::as_str),
        Some("nginx")
    );
    let snippet = annotation(&paid, "configuration-snippet").unwrap_or_default();
    for needle in [
        "$upstream_http_x_paygress_status",
        "$upstream_http_x_paygress_body",
        "$upstream_http_x_cashu",
        "error_page 401 = @paygress_refusal",
        "proxy_set_header X-Cashu \"\"",
    ] {
        assert!(
            snippet.contains(needle),
            "configuration-snippet lacks {needle}"
        );
    }
    let server = annotation(&paid, "server-snippet").unwrap_or_default();
    assert!(
        server.contains("location @paygress_refusal")
            && server.contains("return 402 $paygress_body")
    );

    // No Ingress routes around the verifier: NGINX picks a location by the
    // normalised path but forwards the target as sent, so an Ingress without
    // auth for /free would let `/premium/../free/x` reach the upstream.
    let unguarded: Vec<String> = docs
        .iter()
        .filter(|d| d.kind() == "Ingress")
        .map(typed::<Ingress>)
        .filter(|i| annotation(i, "auth-url").is_none())
        .map(|i| i.metadata.name.unwrap_or_default())
        .collect();
    assert!(
        unguarded.is_empty(),
        "Ingresses that do not ask the verifier: {unguarded:?}"
    );

    // It routes to a Service that exists in its namespace.
    for ingress in [&paid] {
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        for rule in ingress
            .spec
            .clone()
            .and_then(|s| s.rules)
            .unwrap_or_default()
        {
            for path in rule.http.map(|h| h.paths).unwrap_or_default() {
                let service = path.backend.service.map(|s| s.name).unwrap_or_default();
                assert!(
                    find_in(&docs, "Service", &namespace, &service).is_some(),
                    "no Service {namespace}/{service}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hardening: the proxies' paths and headers, who reaches the sold service,
// what the verifier reaches, and its API token.

/// Where the shipped proxies run: the ingress-nginx and Traefik controllers,
/// and Istio's ingress gateway.
const PROXY_NAMESPACES: [&str; 3] = ["ingress-nginx", "traefik", "istio-system"];

/// Whether `selector` selects an object labelled `labels` (an empty selector
/// selects everything).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .as_ref()
        .is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let by_expressions = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("unknown selector operator {other}"),
            }
        })
    });
    by_labels && by_expressions
}

/// Whether `selector` constrains anything (an absent or empty one selects
/// every pod, or every namespace).
fn is_narrow(selector: Option<&LabelSelector>) -> bool {
    selector.is_some_and(|s| {
        s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
            || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
    })
}

/// The namespaces a namespaceSelector names by `kubernetes.io/metadata.name`
/// (the label the API server sets on every namespace), or `None` when it
/// does not pin the names.
fn named_namespaces(selector: &LabelSelector) -> Option<Vec<String>> {
    const NAME: &str = "kubernetes.io/metadata.name";
    if let Some(name) = selector.match_labels.as_ref().and_then(|m| m.get(NAME)) {
        return Some(vec![name.clone()]);
    }
    selector
        .match_expressions
        .as_ref()?
        .iter()
        .find(|e| e.key == NAME && e.operator == "In")
        .and_then(|e| e.values.clone())
        .filter(|v| !v.is_empty())
}

/// The NetworkPolicies of the manifests.
fn network_policies(docs: &[Doc]) -> Vec<(String, NetworkPolicy)> {
    docs.iter()
        .filter(|d| d.kind() == "NetworkPolicy")
        .map(|d| (d.at(), typed::<NetworkPolicy>(d)))
        .collect()
}

/// A Deployment's pod labels and container ports (numbers and names).
fn pods_of(deployment: &Deployment) -> (BTreeMap<String, String>, Vec<IntOrString>) {
    let template = deployment.spec.clone().unwrap_or_default().template;
    let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    let mut ports = Vec::new();
    for container in template.spec.unwrap_or_default().containers {
        for port in container.ports.unwrap_or_default() {
            ports.push(IntOrString::Int(port.container_port));
            if let Some(name) = port.name {
                ports.push(IntOrString::String(name));
            }
        }
    }
    (labels, ports)
}

/// The `(namespace, name)` of every Service that an Ingress or a Traefik
/// IngressRoute sends clients to: the services being sold.
fn sold_services(docs: &[Doc]) -> Vec<(String, String)> {
    let mut sold = Vec::new();
    for doc in docs.iter().filter(|d| d.kind() == "Ingress") {
        let ingress: Ingress = typed(doc);
        for rule in ingress.spec.and_then(|s| s.rules).unwrap_or_default() {
            for path in rule.http.map(|h| h.paths).unwrap_or_default() {
                if let Some(service) = path.backend.service {
                    sold.push((doc.namespace().to_string(), service.name));
                }
            }
        }
    }
    for doc in docs.iter().filter(|d| d.kind() == "IngressRoute") {
        for route in array_at(doc, "/spec/routes") {
            for service in route["services"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if let Some(name) = service["name"].as_str() {
                    sold.push((doc.namespace().to_string(), name.to_string()));
                }
            }
        }
    }
    sold.sort();
    sold.dedup();
    sold
}

/// The Istio gateway drops (or refuses) headers with underscores: Paygress
/// removes the dashed reserved names, but `X_Payment_Verified` is another
/// header to Envoy while CGI, WSGI and PHP upstreams read it as
/// `X-Payment-Verified`. An EnvoyFilter merges
/// `headers_with_underscores_action` into the HTTP connection manager of
/// every gateway that Paygress's WasmPlugin or AuthorizationPolicy selects.
#[test]
fn the_istio_gateway_drops_headers_with_underscores() {
    let docs = documents();
    const HCM: &str = "envoy.filters.network.http_connection_manager";
    const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    // (namespace, workloadSelector labels) of each EnvoyFilter that does it.
    let mut dropping: Vec<(String, Option<BTreeMap<String, String>>)> = Vec::new();
    for doc in docs.iter().filter(|d| d.kind() == "EnvoyFilter") {
        for patch in array_at(doc, "/spec/configPatches") {
            let filter = &patch["match"]["listener"]["filterChain"]["filter"];
            let config = &patch["patch"]["value"]["typed_config"];
            let action =
                config["common_http_protocol_options"]["headers_with_underscores_action"].as_str();
            if patch["applyTo"] != "NETWORK_FILTER" || filter["name"] != HCM || action.is_none() {
                continue;
            }
            assert_eq!(patch["patch"]["operation"], "MERGE", "{}", doc.at());
            assert_eq!(config["@type"], HCM_TYPE, "{}", doc.at());
            assert!(
                matches!(action, Some("DROP_HEADER" | "REJECT_REQUEST")),
                "{}: headers_with_underscores_action {action:?} lets X_Payment_Verified through",
                doc.at()
            );
            let context = patch["match"]["context"].as_str().unwrap_or("ANY");
            assert!(
                matches!(context, "GATEWAY" | "ANY"),
                "{}: context {context} misses the gateway",
                doc.at()
            );
            let labels = doc.value["spec"]["workloadSelector"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                });
            dropping.push((doc.namespace().to_string(), labels));
        }
    }
    assert!(
        !dropping.is_empty(),
        "no EnvoyFilter sets headers_with_underscores_action on the Istio gateway: \
         X_Payment_Verified reaches CGI/WSGI/PHP upstreams as X-Payment-Verified"
    );

    // Every gateway Paygress works in is covered.
    let gateways: Vec<(String, String, BTreeMap<String, String>)> = docs
        .iter()
        .filter(|d| d.kind() == "WasmPlugin" || d.kind() == "AuthorizationPolicy")
        .map(|d| {
            let labels = d.value["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap_or_else(|| panic!("{}: no selector.matchLabels", d.at()))
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            (d.at(), d.namespace().to_string(), labels)
        })
        .collect();
    assert!(!gateways.is_empty());
    for (at, namespace, pod_labels) in gateways {
        assert!(
            dropping.iter().any(|(filter_namespace, selector)| {
                // The root namespace's EnvoyFilters apply in every namespace.
                (filter_namespace == &namespace || filter_namespace == "istio-system")
                    && selector
                        .as_ref()
                        .is_none_or(|want| want.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
            }),
            "{at}: its gateway ({pod_labels:?}) keeps headers with underscores"
        );
    }
}

/// The mesh config normalises paths beyond Istio's default (BASE): slashes
/// merged, and percent-escaped slashes decoded, so the upstream routes the
/// path the gateway read.
#[test]
fn the_istio_mesh_normalises_paths() {
    let docs = documents();
    let operators: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == "IstioOperator")
        .collect();
    assert!(!operators.is_empty(), "no IstioOperator in k8s/");
    for doc in operators {
        let normalization = doc
            .value
            .pointer("/spec/meshConfig/pathNormalization/normalization")
            .and_then(Value::as_str);
        assert!(
            matches!(
                normalization,
                Some("MERGE_SLASHES" | "DECODE_AND_MERGE_SLASHES")
            ),
            "{}: meshConfig.pathNormalization.normalization is {normalization:?}: \
             an upstream routing the raw path could serve /premium//x or \
             /free/..%2Fpremium otherwise than the gateway read it",
            doc.at()
        );
    }
}

/// Every service sold through an Ingress or an IngressRoute is reachable
/// only from the proxies that ask Paygress first: a NetworkPolicy selects
/// its pods, and every policy that does admits only named proxy pods in the
/// proxies' namespaces, on the app's own port. Without one, any pod could
/// call the app with `X-Payment-Verified: true`.
#[test]
fn the_sold_service_admits_only_the_proxies_that_ask_paygress() {
    let docs = documents();
    let policies = network_policies(&docs);
    let sold = sold_services(&docs);
    assert!(
        !sold.is_empty(),
        "no Ingress or IngressRoute sells a service"
    );
    for (namespace, name) in sold {
        let service: Service = typed(
            find_in(&docs, "Service", &namespace, &name)
                .unwrap_or_else(|| panic!("no Service {namespace}/{name}")),
        );
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        assert!(
            !selector.is_empty(),
            "Service {namespace}/{name} selects no pods"
        );
        let workloads: Vec<Deployment> = docs
            .iter()
            .filter(|d| d.kind() == "Deployment" && d.namespace() == namespace)
            .map(typed::<Deployment>)
            .filter(|d| {
                let (labels, _) = pods_of(d);
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert!(
            !workloads.is_empty(),
            "no Deployment behind Service {namespace}/{name}"
        );
        for workload in &workloads {
            let (labels, container_ports) = pods_of(workload);
            let guarding: Vec<&(String, NetworkPolicy)> = policies
                .iter()
                .filter(|(_, p)| {
                    let spec = p.spec.clone().unwrap_or_default();
                    p.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && selects(&spec.pod_selector.unwrap_or_default(), &labels)
                        && spec
                            .policy_types
                            .is_none_or(|t| t.iter().any(|x| x == "Ingress"))
                })
                .collect();
            assert!(
                !guarding.is_empty(),
                "no NetworkPolicy guards {namespace}/{name} ({labels:?}): any pod in the \
                 cluster can call it with X-Payment-Verified: true"
            );
            let mut admitted: Vec<String> = Vec::new();
            for (at, policy) in guarding {
                let rules = policy
                    .spec
                    .clone()
                    .unwrap_or_default()
                    .ingress
                    .unwrap_or_default();
                for (i, rule) in rules.iter().enumerate() {
                    let from = rule.from.clone().unwrap_or_default();
                    assert!(
                        !from.is_empty(),
                        "{at}: ingress rule {i} has no `from`: it admits every pod"
                    );
                    for peer in from {
                        assert!(
                            peer.ip_block.is_none(),
                            "{at}: ingress rule {i} admits an ipBlock"
                        );
                        let namespaces = peer
                            .namespace_selector
                            .as_ref()
                            .and_then(named_namespaces)
                            .unwrap_or_else(|| {
                                panic!(
                                    "{at}: ingress rule {i} admits pods without naming their \
                                     namespace: {peer:?}"
                                )
                            });
                        for ns in &namespaces {
                            assert!(
                                PROXY_NAMESPACES.contains(&ns.as_str()),
                                "{at}: ingress rule {i} admits namespace {ns}, which runs no proxy"
                            );
                        }
                        assert!(
                            is_narrow(peer.pod_selector.as_ref()),
                            "{at}: ingress rule {i} admits every pod of {namespaces:?}, not only \
                             the proxy's"
                        );
                        admitted.extend(namespaces);
                    }
                    let ports = rule.ports.clone().unwrap_or_default();
                    assert!(
                        !ports.is_empty(),
                        "{at}: ingress rule {i} admits every port"
                    );
                    for port in ports {
                        let port = port.port.unwrap_or_else(|| {
                            panic!("{at}: ingress rule {i}: a port without a number")
                        });
                        assert!(
                            container_ports.contains(&port),
                            "{at}: ingress rule {i} admits port {port:?}, not a port of the app \
                             ({container_ports:?})"
                        );
                    }
                }
            }
            // The shipped proxies (ingress-nginx, Traefik, the Istio gateway)
            // can still reach it.
            for proxy in PROXY_NAMESPACES {
                assert!(
                    admitted.iter().any(|a| a == proxy),
                    "{namespace}/{name}: the proxies in {proxy} are shut out"
                );
            }
        }
    }
}

/// The verifier's egress: DNS to kube-dns only, and everything else to
/// named addresses (the mints, the API server) or named pods: no rule
/// without a destination, no 0.0.0.0/0, no port left open.
#[test]
fn the_verifier_reaches_only_dns_its_mints_and_the_api_server() {
    let docs = documents();
    let at = find(&docs, "NetworkPolicy", "paygress-auth").at();
    let policy: NetworkPolicy = typed(find(&docs, "NetworkPolicy", "paygress-auth"));
    let spec = policy.spec.unwrap_or_default();
    assert!(
        spec.policy_types
            .unwrap_or_default()
            .iter()
            .any(|t| t == "Egress"),
        "{at}: egress is not restricted"
    );
    let egress = spec.egress.unwrap_or_default();
    assert!(!egress.is_empty(), "{at}: no egress at all (not even DNS)");
    let mut dns_rule = false;
    let mut https_by_address = false;
    for (i, rule) in egress.iter().enumerate() {
        let to = rule.to.clone().unwrap_or_default();
        assert!(
            !to.is_empty(),
            "{at}: egress rule {i} has no `to`: it reaches every destination"
        );
        let ports = rule.ports.clone().unwrap_or_default();
        assert!(!ports.is_empty(), "{at}: egress rule {i} opens every port");
        let port_numbers: Vec<i32> = ports
            .iter()
            .map(|p| match &p.port {
                Some(IntOrString::Int(n)) => *n,
                other => panic!("{at}: egress rule {i}: port {other:?} is not a number"),
            })
            .collect();
        let is_dns = port_numbers.contains(&53);
        for peer in to {
            if let Some(block) = &peer.ip_block {
                let (address, prefix) = block
                    .cidr
                    .split_once('/')
                    .unwrap_or_else(|| panic!("{at}: egress rule {i}: cidr {}", block.cidr));
                let prefix: u8 = prefix.parse().unwrap_or_else(|err| {
                    panic!("{at}: egress rule {i}: cidr {}: {err}", block.cidr)
                });
                assert!(
                    address.parse::<std::net::IpAddr>().is_ok(),
                    "{at}: egress rule {i}: cidr {}",
                    block.cidr
                );
                assert!(
                    prefix >= 8,
                    "{at}: egress rule {i} reaches {} (the internet, not the mints or the API \
                     server)",
                    block.cidr
                );
                assert!(!is_dns, "{at}: egress rule {i}: DNS goes to kube-dns only");
                if port_numbers.contains(&443) {
                    https_by_address = true;
                }
            } else {
                let namespaces = peer
                    .namespace_selector
                    .as_ref()
                    .and_then(named_namespaces)
                    .unwrap_or_else(|| {
                        panic!("{at}: egress rule {i} reaches pods without naming their namespace")
                    });
                assert!(
                    is_narrow(peer.pod_selector.as_ref()),
                    "{at}: egress rule {i} reaches every pod of {namespaces:?}"
                );
                if is_dns {
                    let pods = peer
                        .pod_selector
                        .as_ref()
                        .and_then(|s| s.match_labels.clone())
                        .unwrap_or_default();
                    assert_eq!(namespaces, ["kube-system"], "{at}: egress rule {i}: DNS");
                    assert_eq!(
                        pods.get("k8s-app").map(String::as_str),
                        Some("kube-dns"),
                        "{at}: egress rule {i}: DNS goes to kube-dns only"
                    );
                    dns_rule = true;
                }
            }
        }
    }
    assert!(
        dns_rule,
        "{at}: no egress to kube-dns: the mints' names cannot resolve"
    );
    assert!(
        https_by_address,
        "{at}: no HTTPS egress to the mints' addresses"
    );
}

/// The verifier's pods mount no Kubernetes API token unless pod
/// provisioning is on (it is off as shipped), the switch is documented where
/// it is flipped, no other pod mounts one, and the RBAC is the pod
/// provisioner's Role alone.
#[test]
fn the_verifier_mounts_an_api_token_only_to_provision_pods() {
    let docs = documents();
    let doc = find(&docs, "Deployment", "paygress-auth");
    let deployment: Deployment = typed(doc);
    let pod = deployment
        .spec
        .unwrap_or_default()
        .template
        .spec
        .unwrap_or_default();
    let provisioning = pod
        .containers
        .iter()
        .flat_map(|c| c.env.clone().unwrap_or_default())
        .find(|e| e.name == "ENABLE_POD_PROVISIONING")
        .and_then(|e| e.value)
        .unwrap_or_else(|| panic!("{}: ENABLE_POD_PROVISIONING is not set", doc.at()));
    assert_eq!(
        provisioning,
        "false",
        "{}: pod provisioning is off as shipped",
        doc.at()
    );
    assert_eq!(
        pod.automount_service_account_token,
        Some(false),
        "{}: the pod spec must say automountServiceAccountToken: false while \
         ENABLE_POD_PROVISIONING is false (the pod spec wins over the ServiceAccount)",
        doc.at()
    );
    let account = pod
        .service_account_name
        .clone()
        .unwrap_or_else(|| panic!("no serviceAccountName"));
    let account_doc = find_in(&docs, "ServiceAccount", "paygress-system", &account)
        .unwrap_or_else(|| panic!("no ServiceAccount {account}"));
    let service_account: ServiceAccount = typed(account_doc);
    assert_eq!(
        service_account.automount_service_account_token,
        Some(false),
        "{}: mounts its token by default",
        account_doc.at()
    );

    // The switch is written down next to the line to flip.
    let text = std::fs::read_to_string(tools::workspace_root().join(&doc.file))
        .unwrap_or_else(|err| panic!("{}: {err}", doc.file));
    let lines: Vec<&str> = text.lines().collect();
    let documented = lines.iter().enumerate().any(|(i, line)| {
        line.trim_start()
            .starts_with("automountServiceAccountToken:")
            && lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with('#'))
                .any(|l| l.contains("ENABLE_POD_PROVISIONING"))
    });
    assert!(
        documented,
        "{}: a comment above automountServiceAccountToken must say it goes with \
         ENABLE_POD_PROVISIONING",
        doc.file
    );

    // No other workload mounts a token: nothing else here talks to the API.
    for other in docs.iter().filter(|d| d.kind() == "Deployment") {
        if other.name() == "paygress-auth" {
            continue;
        }
        let deployment: Deployment = typed(other);
        let pod = deployment
            .spec
            .unwrap_or_default()
            .template
            .spec
            .unwrap_or_default();
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{}: mounts an API token it has no use for",
            other.at()
        );
    }

    // RBAC: namespaced, pods and their Services only, for the verifier
    // only (exactly which verbs: the_pod_provisioner_role_is_exactly_what_the_verifier_calls).
    for doc in &docs {
        assert!(
            !matches!(doc.kind(), "ClusterRole" | "ClusterRoleBinding"),
            "{}: nothing cluster-wide",
            doc.at()
        );
    }
    for doc in docs.iter().filter(|d| d.kind() == "Role") {
        let role: Role = typed(doc);
        for rule in role.rules.unwrap_or_default() {
            assert_eq!(
                rule.api_groups.as_deref(),
                Some(&[String::new()][..]),
                "{}: the core API group only",
                doc.at()
            );
            for resource in rule.resources.unwrap_or_default() {
                let allowed = PROVISIONER_VERBS
                    .iter()
                    .find(|(r, _)| *r == resource)
                    .map(|(_, verbs)| *verbs)
                    .unwrap_or_else(|| panic!("{}: {resource}: not a pod's", doc.at()));
                assert!(
                    rule.verbs.iter().all(|v| allowed.contains(&v.as_str())),
                    "{}: {resource}: verbs {:?} beyond {allowed:?}",
                    doc.at(),
                    rule.verbs
                );
            }
        }
    }
    for doc in docs.iter().filter(|d| d.kind() == "RoleBinding") {
        let binding: RoleBinding = typed(doc);
        assert_eq!(binding.role_ref.kind, "Role", "{}", doc.at());
        for subject in binding.subjects.unwrap_or_default() {
            assert!(
                subject.kind == "ServiceAccount"
                    && subject.name == account
                    && subject.namespace.as_deref() == Some("paygress-system"),
                "{}: binds {subject:?}",
                doc.at()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Pass keys: from a Secret (or the gateway's environment), never inline.

/// The variable `name` of a container: from the Secret `paygress-pass-keys`,
/// key `current`, and never a literal value.
fn assert_from_pass_key_secret(env: &[Value], name: &str, optional_ok: bool, at: &str) {
    let var = env
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{at}: {name} is not set"));
    assert!(
        var.get("value").is_none(),
        "{at}: {name} has a literal value: the pass key must come from a Secret"
    );
    let reference = &var["valueFrom"]["secretKeyRef"];
    assert_eq!(
        reference["name"], PASS_KEY_SECRET,
        "{at}: {name} comes from the Secret {PASS_KEY_SECRET}"
    );
    assert_eq!(
        reference["key"], PASS_KEY_SECRET_KEY,
        "{at}: {name} comes from the key {PASS_KEY_SECRET_KEY} of {PASS_KEY_SECRET}"
    );
    if !optional_ok {
        assert_ne!(
            reference["optional"],
            Value::Bool(true),
            "{at}: {name} is required (the config sells a lease)"
        );
    }
}

/// The shipped Secret `paygress-pass-keys` in `namespace` exists, has the
/// key `current`, and holds a placeholder that is not a usable key (no real
/// key is committed; a verifier given it refuses to start).
fn assert_placeholder_secret(docs: &[Doc], namespace: &str) {
    let doc = find_in(docs, "Secret", namespace, PASS_KEY_SECRET)
        .unwrap_or_else(|| panic!("no Secret {namespace}/{PASS_KEY_SECRET} (the pass key)"));
    let secret: Secret = typed(doc);
    let value = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(PASS_KEY_SECRET_KEY).cloned())
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(PASS_KEY_SECRET_KEY))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .unwrap_or_else(|| panic!("{}: no key {PASS_KEY_SECRET_KEY}", doc.at()));
    let as_key = PassKeyConfig {
        id: "k1".into(),
        secret: Some(value.clone()),
        secret_env: None,
    };
    assert!(
        compile_keys(&[as_key], &|_| None).is_err(),
        "{}: {PASS_KEY_SECRET_KEY} holds a usable pass key: commit a placeholder, never a key",
        doc.at()
    );
    assert!(
        value.contains("REPLACE") && value.contains("/dev/urandom"),
        "{}: the placeholder should say how to make a key: {value:?}",
        doc.at()
    );
}

/// Every `pass_keys` in `value` (any depth, JSON text in strings too): each
/// key names its secret by `secret_env`, none carries `secret`. Returns
/// the variables named.
fn pass_key_envs(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(keys) = map.get("pass_keys") {
                for key in keys.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    assert!(
                        key.get("secret").is_none(),
                        "{at}: a pass key with an inline `secret` ({}): name a variable with \
                         `secret_env` and fill it from a Secret",
                        key["id"]
                    );
                    let var = key["secret_env"].as_str().unwrap_or_else(|| {
                        panic!("{at}: pass key {} has no secret_env", key["id"])
                    });
                    found.push(var.to_string());
                }
            }
            for child in map.values() {
                pass_key_envs(child, at, found);
            }
        }
        Value::Array(items) => {
            for child in items {
                pass_key_envs(child, at, found);
            }
        }
        Value::String(text) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                if let Ok(inner) = serde_json::from_str::<Value>(text) {
                    pass_key_envs(&inner, at, found);
                }
            }
        }
        _ => {}
    }
}

/// Every object in `value` (any depth) that sets the variable `name` with a
/// literal `value` (a container's `env`, a WasmPlugin's `vmConfig.env`).
fn literal_values<'a>(value: &'a Value, names: &[String], found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            let named = map
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| names.iter().any(|x| x == n));
            if named && map.contains_key("value") {
                found.push(value);
            }
            for child in map.values() {
                literal_values(child, names, found);
            }
        }
        Value::Array(items) => {
            for child in items {
                literal_values(child, names, found);
            }
        }
        _ => {}
    }
}

/// The verifier and the Istio gateway read the pass key from the Secret
/// `paygress-pass-keys`; the WasmPlugin hands it to the filter from the
/// gateway's environment (`valueFrom: HOST`); the configs name it with
/// `secret_env`; and no manifest carries a pass key's secret.
#[test]
fn the_pass_key_comes_from_a_secret_and_never_sits_in_a_manifest() {
    let docs = documents();

    // The verifier: its config sells a lease, and names its keys.
    let doc = find(&docs, "Deployment", "paygress-auth");
    let containers = array_at(doc, "/spec/template/spec/containers");
    assert_eq!(containers.len(), 1, "{}", doc.at());
    let env = containers[0]["env"].as_array().cloned().unwrap_or_default();
    assert_from_pass_key_secret(&env, PASS_KEY_ENV, false, &doc.at());
    let config_map = find_in(&docs, "ConfigMap", "paygress-system", "paygress-config")
        .unwrap_or_else(|| panic!("no ConfigMap paygress-system/paygress-config"));
    let text = str_at(config_map, "/data/config.json");
    let config: Value = serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("{}: config.json: {err}", config_map.at()));
    assert!(
        config["tiers"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["lease"]["seconds"].is_u64())),
        "{}: the example config sells no lease",
        config_map.at()
    );
    let mut named = Vec::new();
    pass_key_envs(&config, &config_map.at(), &mut named);
    assert_eq!(
        named,
        [PASS_KEY_ENV],
        "{}: the verifier's pass key",
        config_map.at()
    );
    for var in &named {
        let from_secret = env
            .iter()
            .any(|e| e["name"] == var.as_str() && e["valueFrom"]["secretKeyRef"].is_object());
        assert!(
            from_secret,
            "{}: {var} (a pass key's secret_env) is not filled from a Secret",
            doc.at()
        );
    }
    assert_placeholder_secret(&docs, "paygress-system");

    // The WasmPlugin: the filter reads the same variable from the host.
    let plugin = find(&docs, "WasmPlugin", "paygress");
    let vm_env = array_at(plugin, "/spec/vmConfig/env");
    assert!(
        vm_env
            .iter()
            .any(|e| e["name"] == PASS_KEY_ENV && e["valueFrom"] == "HOST"),
        "{}: vmConfig.env must hand the filter {PASS_KEY_ENV} from the host \
         (`valueFrom: HOST`)",
        plugin.at()
    );
    let mut plugin_named = Vec::new();
    pass_key_envs(
        &plugin.value["spec"]["pluginConfig"],
        &plugin.at(),
        &mut plugin_named,
    );
    assert_eq!(plugin_named, named, "{}: the verifier's keys", plugin.at());
    let host = wasm_host_env(plugin);
    for var in &plugin_named {
        assert!(
            host.contains(var),
            "{}: {var} is named by pass_keys but not handed to the filter from the host",
            plugin.at()
        );
    }

    // The gateway it selects gets the variable from the Secret in its
    // namespace (istioctl: the IstioOperator's gateway component).
    let gateway = docs
        .iter()
        .filter(|d| d.kind() == "IstioOperator")
        .flat_map(|d| {
            d.value["spec"]["components"]["ingressGateways"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |g| (d.at(), g))
        })
        .find(|(_, g)| g["name"] == "istio-ingressgateway")
        .unwrap_or_else(|| panic!("no IstioOperator gives the ingress gateway its {PASS_KEY_ENV}"));
    let (at, gateway) = gateway;
    let gateway_env = gateway["k8s"]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Optional there: the ext-authz mode needs no key in the gateway.
    assert_from_pass_key_secret(&gateway_env, PASS_KEY_ENV, true, &at);
    let namespace = gateway["namespace"].as_str().unwrap_or("istio-system");
    assert_placeholder_secret(&docs, namespace);

    // Nowhere a secret: no inline `secret` in any pass_keys (ConfigMaps,
    // pluginConfig, PAYGRESS_PASS_KEYS values), and no literal value for a
    // variable that holds one; the replicas of k8s/replicas/ included.
    let everything: Vec<Doc> = docs.iter().cloned().chain(replica_documents()).collect();
    let mut all_named = Vec::new();
    for doc in &everything {
        pass_key_envs(&doc.value, &doc.at(), &mut all_named);
    }
    all_named.push(PASS_KEY_ENV.to_string());
    all_named.sort();
    all_named.dedup();
    for doc in &everything {
        let mut literal = Vec::new();
        literal_values(&doc.value, &all_named, &mut literal);
        assert!(
            literal.is_empty(),
            "{}: a pass key's secret given as a literal value: {literal:?}",
            doc.at()
        );
    }
}

/// The ext-authz EnvoyFilter of the Istio gateway removes a client's
/// `X-Paygress-Lease` before ext_authz (with the other reserved headers),
/// and the pass header after it (once the verifier has read it).
#[test]
fn the_istio_ext_authz_filters_keep_the_lease_header_reserved_and_the_pass_from_the_upstream() {
    let docs = documents();
    let doc = find(&docs, "EnvoyFilter", "paygress-headers");
    let mut before = Vec::new();
    let mut after = Vec::new();
    for patch in array_at(doc, "/spec/configPatches") {
        let removed: Vec<String> = patch["patch"]["value"]["typed_config"]["mutations"]
            ["request_mutations"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|m| m["remove"].as_str().map(str::to_string))
            .collect();
        match patch["patch"]["operation"].as_str() {
            Some("INSERT_BEFORE") => before.extend(removed),
            Some("INSERT_AFTER") => after.extend(removed),
            other => panic!("{}: unexpected operation {other:?}", doc.at()),
        }
    }
    for header in ["x-user-id", "x-provisioned-pod", "x-paygress-lease"] {
        assert!(
            before.iter().any(|h| h == header),
            "{}: a client's {header} must be removed before ext_authz",
            doc.at()
        );
    }
    for header in ["x-cashu", "x-paygress-pass"] {
        assert!(
            after.iter().any(|h| h == header),
            "{}: {header} must be removed after ext_authz has read it",
            doc.at()
        );
        assert!(
            !before.iter().any(|h| h == header),
            "{}: {header} removed before ext_authz: the verifier would never see it",
            doc.at()
        );
    }
}

// ---------------------------------------------------------------------------
// Pods for leases: the Role, the tenant namespace, the example tier, the
// switch.

/// The calls the verifier makes to the API server (`verifier/src/pods/`),
/// by resource: what its Role grants, exactly. Pods: `create` (a lease's
/// pod), `get` (before a top-up's annotation write; `GET /lease`'s phase),
/// `patch` (the annotation), `list` and `watch` (the reaper's controller),
/// `delete` (the reaper). Services: `create` (the pod's own, deleted with it
/// by the garbage collector).
const PROVISIONER_VERBS: [(&str, &[&str]); 2] = [
    (
        "pods",
        &["create", "get", "list", "watch", "patch", "delete"],
    ),
    ("services", &["create"]),
];
/// The verifier's namespace (its ServiceAccount's).
const VERIFIER_NAMESPACE: &str = "paygress-system";
/// The switch, a strategic-merge patch of the verifier's Deployment (not a
/// manifest: `documents()` does not read it).
const PROVISIONING_PATCH: &str = "k8s/pod-provisioning/enable.yaml";

/// The verifier's Deployment, typed.
fn verifier_deployment(docs: &[Doc]) -> Deployment {
    typed(find(docs, "Deployment", "paygress-auth"))
}

/// The value of the environment variable `name` of the verifier's container.
fn verifier_env(deployment: &Deployment, name: &str) -> Option<String> {
    deployment
        .spec
        .clone()
        .unwrap_or_default()
        .template
        .spec
        .unwrap_or_default()
        .containers
        .iter()
        .flat_map(|c| c.env.clone().unwrap_or_default())
        .find(|e| e.name == name)
        .and_then(|e| e.value)
}

/// The verifier's POD_NAMESPACE (a literal value in its Deployment).
fn pod_namespace(docs: &[Doc]) -> String {
    verifier_env(&verifier_deployment(docs), "POD_NAMESPACE")
        .unwrap_or_else(|| panic!("the verifier's POD_NAMESPACE is not set"))
}

/// The verifier's config (`config.json` of the ConfigMap `paygress-config`),
/// as JSON, and where it is.
fn verifier_config_json(docs: &[Doc]) -> (String, Value) {
    let doc = find_in(docs, "ConfigMap", VERIFIER_NAMESPACE, "paygress-config")
        .unwrap_or_else(|| panic!("no ConfigMap {VERIFIER_NAMESPACE}/paygress-config"));
    let at = format!("{} config.json", doc.at());
    let config = serde_json::from_str(str_at(doc, "/data/config.json"))
        .unwrap_or_else(|err| panic!("{at}: not JSON: {err}"));
    (at, config)
}

/// A resource quantity in base units (cores, bytes), for the suffixes
/// Kubernetes accepts.
fn quantity(q: &Quantity, at: &str) -> f64 {
    let s = q.0.trim();
    let binary = |e: i32| 1024f64.powi(e);
    for (suffix, factor) in [
        ("Ki", binary(1)),
        ("Mi", binary(2)),
        ("Gi", binary(3)),
        ("Ti", binary(4)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ] {
        if let Some(number) = s.strip_suffix(suffix) {
            let n: f64 = number
                .parse()
                .unwrap_or_else(|err| panic!("{at}: quantity {s}: {err}"));
            return n * factor;
        }
    }
    s.parse()
        .unwrap_or_else(|err| panic!("{at}: quantity {s}: {err}"))
}

/// The Role of the verifier grants exactly the calls it makes, on pods and
/// their Services only, in POD_NAMESPACE only, to the verifier's
/// ServiceAccount only; nothing is cluster-wide.
#[test]
fn the_pod_provisioner_role_is_exactly_what_the_verifier_calls() {
    let docs = documents();
    let namespace = pod_namespace(&docs);
    assert_ne!(
        namespace, VERIFIER_NAMESPACE,
        "the pods of leases run beside the verifier (and its wallet's volume)"
    );
    for doc in &docs {
        assert!(
            !matches!(doc.kind(), "ClusterRole" | "ClusterRoleBinding"),
            "{}: nothing cluster-wide",
            doc.at()
        );
    }
    let roles: Vec<&Doc> = docs.iter().filter(|d| d.kind() == "Role").collect();
    assert_eq!(
        roles.len(),
        1,
        "one Role, the pod provisioner's: {:?}",
        roles.iter().map(|d| d.at()).collect::<Vec<_>>()
    );
    let role_doc = roles[0];
    assert_eq!(
        role_doc.namespace(),
        namespace,
        "{}: the Role is in POD_NAMESPACE",
        role_doc.at()
    );
    let role: Role = typed(role_doc);
    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, rule) in role.rules.unwrap_or_default().into_iter().enumerate() {
        let at = format!("{} rule {i}", role_doc.at());
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&[String::new()][..]),
            "{at}: the core API group only"
        );
        assert!(
            rule.resource_names.as_ref().is_none_or(Vec::is_empty),
            "{at}: resourceNames cannot name pods before they exist"
        );
        assert!(rule.non_resource_urls.is_none(), "{at}: nonResourceURLs");
        for resource in rule.resources.unwrap_or_default() {
            assert!(
                !resource.contains('/') && resource != "*",
                "{at}: {resource}: no subresource (exec, log, …), no wildcard"
            );
            granted
                .entry(resource)
                .or_default()
                .extend(rule.verbs.iter().cloned());
        }
    }
    for verbs in granted.values_mut() {
        verbs.sort();
        verbs.dedup();
    }
    let expected: BTreeMap<String, Vec<String>> = PROVISIONER_VERBS
        .iter()
        .map(|(resource, verbs)| {
            let mut verbs: Vec<String> = verbs.iter().map(|v| (*v).to_string()).collect();
            verbs.sort();
            (resource.to_string(), verbs)
        })
        .collect();
    assert_eq!(
        granted,
        expected,
        "{}: exactly the verifier's calls",
        role_doc.at()
    );

    // Bound, in the same namespace, to the verifier's ServiceAccount alone.
    let account = verifier_deployment(&docs)
        .spec
        .unwrap_or_default()
        .template
        .spec
        .unwrap_or_default()
        .service_account_name
        .unwrap_or_else(|| panic!("the verifier has no serviceAccountName"));
    assert!(
        find_in(&docs, "ServiceAccount", VERIFIER_NAMESPACE, &account).is_some(),
        "no ServiceAccount {VERIFIER_NAMESPACE}/{account}"
    );
    let bindings: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == "RoleBinding" && d.value["roleRef"]["name"] == role_doc.name())
        .collect();
    assert_eq!(
        bindings.len(),
        1,
        "the Role {} is bound once",
        role_doc.name()
    );
    let binding_doc = bindings[0];
    assert_eq!(
        binding_doc.namespace(),
        namespace,
        "{}: a RoleBinding binds a Role of its own namespace only",
        binding_doc.at()
    );
    let binding: RoleBinding = typed(binding_doc);
    assert_eq!(binding.role_ref.kind, "Role", "{}", binding_doc.at());
    assert_eq!(
        binding.role_ref.api_group,
        "rbac.authorization.k8s.io",
        "{}",
        binding_doc.at()
    );
    let subjects: Vec<(String, String, Option<String>)> = binding
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.kind, s.name, s.namespace))
        .collect();
    assert_eq!(
        subjects,
        [(
            "ServiceAccount".to_string(),
            account,
            Some(VERIFIER_NAMESPACE.to_string())
        )],
        "{}: the verifier's ServiceAccount only",
        binding_doc.at()
    );
}

/// POD_NAMESPACE is created here, enforces (and warns and audits) the
/// restricted Pod Security Standard, is bounded by a ResourceQuota and a
/// LimitRange, and is shut by a default-deny NetworkPolicy: in, only the
/// proxy pods, on the pods' ports; out, nothing but (at most) DNS.
#[test]
fn the_tenant_namespace_is_restricted_bounded_and_shut() {
    let docs = documents();
    let namespace = pod_namespace(&docs);
    let ns_doc = find(&docs, "Namespace", &namespace);
    let ns: Namespace = typed(ns_doc);
    let labels = ns.metadata.labels.unwrap_or_default();
    for mode in ["enforce", "warn", "audit"] {
        assert_eq!(
            labels
                .get(&format!("pod-security.kubernetes.io/{mode}"))
                .map(String::as_str),
            Some("restricted"),
            "{}: pod-security.kubernetes.io/{mode}",
            ns_doc.at()
        );
    }
    assert!(
        !labels.contains_key("paygress.io/verifier-access"),
        "{}: the pods of leases must not reach the verifier",
        ns_doc.at()
    );
    for doc in docs
        .iter()
        .filter(|d| matches!(d.kind(), "Deployment" | "StatefulSet" | "DaemonSet"))
    {
        assert_ne!(
            doc.namespace(),
            namespace,
            "{}: nothing of ours runs among the pods of leases",
            doc.at()
        );
    }
    let here = |kind: &str| -> Vec<&Doc> {
        docs.iter()
            .filter(|d| d.kind() == kind && d.namespace() == namespace)
            .collect()
    };

    // A ResourceQuota over the whole namespace (no scopes) bounds the count
    // and the CPU and memory of the pods, the Services, and exposes nothing.
    let mut hard: BTreeMap<String, Quantity> = BTreeMap::new();
    for doc in here("ResourceQuota") {
        let quota: ResourceQuota = typed(doc);
        let spec = quota.spec.unwrap_or_default();
        if spec.scopes.is_none() && spec.scope_selector.is_none() {
            hard.extend(spec.hard.unwrap_or_default());
        }
    }
    for key in [
        "pods",
        "services",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ] {
        assert!(
            hard.contains_key(key),
            "no ResourceQuota of {namespace} bounds {key}: {hard:?}"
        );
    }
    for key in ["services.loadbalancers", "services.nodeports"] {
        assert_eq!(
            hard.get(key).map(|q| q.0.as_str()),
            Some("0"),
            "{namespace}: the verifier makes ClusterIP Services only"
        );
    }

    // A LimitRange: defaults and a ceiling for every container.
    let mut container_limits = Vec::new();
    for doc in here("LimitRange") {
        let range: LimitRange = typed(doc);
        container_limits.extend(
            range
                .spec
                .map(|s| s.limits)
                .unwrap_or_default()
                .into_iter()
                .filter(|l| l.type_ == "Container"),
        );
    }
    assert!(
        !container_limits.is_empty(),
        "no LimitRange of {namespace} for containers"
    );
    for quantity in ["cpu", "memory"] {
        for what in ["default", "defaultRequest", "max"] {
            let has = container_limits.iter().any(|l| {
                let map = match what {
                    "default" => &l.default,
                    "defaultRequest" => &l.default_request,
                    _ => &l.max,
                };
                map.as_ref().is_some_and(|m| m.contains_key(quantity))
            });
            assert!(
                has,
                "the LimitRange of {namespace} has no {what} {quantity}"
            );
        }
    }

    // Default deny: a policy selects every pod, both ways.
    let policies: Vec<(String, NetworkPolicy)> = here("NetworkPolicy")
        .into_iter()
        .map(|d| (d.at(), typed::<NetworkPolicy>(d)))
        .collect();
    assert!(
        policies.iter().any(|(_, p)| {
            let spec = p.spec.clone().unwrap_or_default();
            let types = spec.policy_types.unwrap_or_default();
            !is_narrow(spec.pod_selector.as_ref())
                && types.iter().any(|t| t == "Ingress")
                && types.iter().any(|t| t == "Egress")
        }),
        "no NetworkPolicy of {namespace} selects every pod for Ingress and Egress"
    );
    // Policies add up: every rule of every policy here admits only proxies
    // in, and only DNS out.
    let (_, config) = verifier_config_json(&docs);
    let pod_ports: Vec<i32> = config["tiers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| t["pod"]["port"].as_i64())
        .map(|p| i32::try_from(p).unwrap_or_default())
        .collect();
    let mut admitted: Vec<String> = Vec::new();
    let mut open_ports: Vec<i32> = Vec::new();
    for (at, policy) in &policies {
        let spec = policy.spec.clone().unwrap_or_default();
        for (i, rule) in spec.ingress.unwrap_or_default().iter().enumerate() {
            let from = rule.from.clone().unwrap_or_default();
            assert!(
                !from.is_empty(),
                "{at}: ingress rule {i} has no `from`: it admits every pod"
            );
            for peer in from {
                assert!(
                    peer.ip_block.is_none(),
                    "{at}: ingress rule {i} admits an ipBlock"
                );
                let namespaces = peer
                    .namespace_selector
                    .as_ref()
                    .and_then(named_namespaces)
                    .unwrap_or_else(|| {
                        panic!("{at}: ingress rule {i} admits pods without naming their namespace")
                    });
                for ns in &namespaces {
                    assert!(
                        PROXY_NAMESPACES.contains(&ns.as_str()),
                        "{at}: ingress rule {i} admits namespace {ns}, which runs no proxy"
                    );
                }
                assert!(
                    is_narrow(peer.pod_selector.as_ref()),
                    "{at}: ingress rule {i} admits every pod of {namespaces:?}"
                );
                admitted.extend(namespaces);
            }
            let ports = rule.ports.clone().unwrap_or_default();
            assert!(
                !ports.is_empty(),
                "{at}: ingress rule {i} admits every port"
            );
            for port in ports {
                match port.port {
                    Some(IntOrString::Int(n)) => open_ports.push(n),
                    other => panic!("{at}: ingress rule {i}: port {other:?} is not a number"),
                }
            }
        }
        for (i, rule) in spec.egress.unwrap_or_default().iter().enumerate() {
            let ports: Vec<Option<IntOrString>> = rule
                .ports
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.port)
                .collect();
            assert!(
                !ports.is_empty() && ports.iter().all(|p| *p == Some(IntOrString::Int(53))),
                "{at}: egress rule {i}: the pods of leases reach DNS at most"
            );
            let to = rule.to.clone().unwrap_or_default();
            assert!(!to.is_empty(), "{at}: egress rule {i} reaches everything");
            for peer in to {
                let namespaces = peer.namespace_selector.as_ref().and_then(named_namespaces);
                let pods = peer
                    .pod_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                assert!(
                    peer.ip_block.is_none()
                        && namespaces.as_deref() == Some(&["kube-system".to_string()][..])
                        && pods.get("k8s-app").map(String::as_str) == Some("kube-dns"),
                    "{at}: egress rule {i}: DNS goes to kube-dns only"
                );
            }
        }
    }
    for proxy in PROXY_NAMESPACES {
        assert!(
            admitted.iter().any(|a| a == proxy),
            "{namespace}: the proxies in {proxy} cannot reach the pods of leases"
        );
    }
    assert!(!pod_ports.is_empty(), "no tier has a pod");
    for port in &pod_ports {
        assert!(
            open_ports.contains(port),
            "{namespace}: the pods' port {port} is not open to the proxies ({open_ports:?})"
        );
    }
}

/// What `paygress serve` says of a config: `Ok` once the config has loaded
/// (its listen address is taken, so it stops there: "cannot listen on"),
/// else `Err` with its exit status and error.
fn verifier_loads(config: &Value, pod_namespace: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::Builder::new()
        .prefix("paygress-manifests-")
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temp dir: {err}"));
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string())
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"));
    let addr = taken
        .local_addr()
        .unwrap_or_else(|err| panic!("{err}"))
        .to_string();
    let stderr_path = dir.path().join("stderr");
    let stdout = std::fs::File::create(dir.path().join("stdout"))
        .unwrap_or_else(|err| panic!("cannot create a log file: {err}"));
    let stderr = std::fs::File::create(&stderr_path)
        .unwrap_or_else(|err| panic!("cannot create a log file: {err}"));
    let mut command = Command::new(paygress_tests::verifier::paygress_bin());
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(&addr)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // The config file alone, with the environment the Deployment gives it.
    for var in [
        "PAYGRESS_MNEMONIC",
        "PAYGRESS_MINTS",
        "PAYGRESS_UNIT",
        "PAYGRESS_FREE_PATHS",
        "PAYGRESS_TIERS",
        "PAYGRESS_PASS_KEYS",
        "DEFAULT_PAYMENT_AMOUNT",
        "PAYGRESS_DEFAULT_AMOUNT",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
        .env("ENABLE_POD_PROVISIONING", "false")
        .env("POD_NAMESPACE", pod_namespace)
        .env(PASS_KEY_ENV, TEST_PASS_KEY)
        .env("PAYGRESS_LOG", "error");
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run paygress serve: {err}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|err| panic!("{err}")) {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("paygress serve is still running after 60 s on a taken address {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(taken);
    let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if !status.success() && errors.contains("cannot listen on") {
        Ok(())
    } else {
        Err(format!("exit {status}: {errors}"))
    }
}

/// The example tier's pod: restricted as written (not only once the
/// verifier has completed it), within the tenant namespace's LimitRange and
/// ResourceQuota, serving its port; and the real verifier loads the config
/// that carries it, and refuses it made privileged or without a CPU limit,
/// naming the key.
#[test]
fn the_example_pod_tier_is_what_the_verifier_accepts() {
    let docs = documents();
    let namespace = pod_namespace(&docs);
    let (at, config) = verifier_config_json(&docs);
    let tiers = config["tiers"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{at}: no tiers"));
    let pods: Vec<(usize, Value)> = tiers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.get("pod").map(|p| (i, p.clone())))
        .collect();
    assert!(!pods.is_empty(), "{at}: no tier has a pod");

    // The tenant namespace's ceilings.
    let mut max: BTreeMap<String, f64> = BTreeMap::new();
    for doc in docs
        .iter()
        .filter(|d| d.kind() == "LimitRange" && d.namespace() == namespace)
    {
        let range: LimitRange = typed(doc);
        for item in range.spec.map(|s| s.limits).unwrap_or_default() {
            if item.type_ == "Container" {
                for (k, v) in item.max.unwrap_or_default() {
                    max.insert(k, quantity(&v, &doc.at()));
                }
            }
        }
    }
    let mut hard: BTreeMap<String, f64> = BTreeMap::new();
    for doc in docs
        .iter()
        .filter(|d| d.kind() == "ResourceQuota" && d.namespace() == namespace)
    {
        let quota: ResourceQuota = typed(doc);
        for (k, v) in quota.spec.and_then(|s| s.hard).unwrap_or_default() {
            hard.insert(k, quantity(&v, &doc.at()));
        }
    }

    // Volume types the restricted standard allows.
    const VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for (i, pod) in &pods {
        let key = format!("{at}: tiers[{i}].pod");
        assert!(
            tiers[*i]["lease"]["seconds"].is_u64(),
            "{key}: a pod is for a lease tier"
        );
        let port = pod["port"]
            .as_u64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_else(|| panic!("{key}.port must be a port"));
        let spec: PodSpec = serde_json::from_value(pod["spec"].clone())
            .unwrap_or_else(|err| panic!("{key}.spec: not a PodSpec: {err}"));
        let back = serde_json::to_value(&spec).unwrap_or_else(|err| panic!("{err}"));
        assert_subset(&pod["spec"], &back, &key, ".spec");

        for (field, set) in [
            ("hostNetwork", spec.host_network),
            ("hostPID", spec.host_pid),
            ("hostIPC", spec.host_ipc),
            (
                "automountServiceAccountToken",
                spec.automount_service_account_token,
            ),
        ] {
            assert_ne!(set, Some(true), "{key}.spec.{field}");
        }
        for volume in pod["spec"]["volumes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            for kind in volume.as_object().into_iter().flatten().map(|(k, _)| k) {
                assert!(
                    kind == "name" || VOLUMES.contains(&kind.as_str()),
                    "{key}.spec.volumes: {kind} is not allowed by the restricted standard"
                );
            }
        }
        let psc = spec.security_context.clone().unwrap_or_default();
        assert_eq!(psc.run_as_non_root, Some(true), "{key}: runAsNonRoot");
        assert_ne!(psc.run_as_user, Some(0), "{key}: runAsUser");
        assert!(
            psc.seccomp_profile
                .as_ref()
                .is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost"),
            "{key}: seccompProfile RuntimeDefault"
        );
        let mut serves_port = false;
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            let ckey = format!("{key} container {}", c.name);
            let sc = c.security_context.clone().unwrap_or_default();
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{ckey}: allowPrivilegeEscalation"
            );
            assert_ne!(sc.privileged, Some(true), "{ckey}: privileged");
            assert_ne!(sc.run_as_user, Some(0), "{ckey}: runAsUser");
            assert_ne!(sc.run_as_non_root, Some(false), "{ckey}: runAsNonRoot");
            assert!(
                sc.seccomp_profile
                    .as_ref()
                    .is_none_or(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost"),
                "{ckey}: seccompProfile"
            );
            let caps = sc.capabilities.clone().unwrap_or_default();
            assert!(
                caps.drop.unwrap_or_default().iter().any(|c| c == "ALL"),
                "{ckey}: capabilities drop ALL"
            );
            assert!(
                caps.add
                    .unwrap_or_default()
                    .iter()
                    .all(|c| c == "NET_BIND_SERVICE"),
                "{ckey}: capabilities add"
            );
            for p in c.ports.clone().unwrap_or_default() {
                assert!(p.host_port.is_none_or(|h| h == 0), "{ckey}: hostPort");
                serves_port |= p.container_port == port;
            }
            let resources = c.resources.clone().unwrap_or_default();
            for (kind, map) in [
                ("requests", resources.requests),
                ("limits", resources.limits),
            ] {
                let map = map.unwrap_or_default();
                for name in ["cpu", "memory"] {
                    let value = map
                        .get(name)
                        .map(|q| quantity(q, &ckey))
                        .unwrap_or_else(|| panic!("{ckey}: resources.{kind}.{name} is required"));
                    if let Some(ceiling) = max.get(name) {
                        assert!(
                            value <= *ceiling,
                            "{ckey}: resources.{kind}.{name} is above the LimitRange's max"
                        );
                    }
                    *totals.entry(format!("{kind}.{name}")).or_default() += value;
                }
            }
        }
        assert!(
            serves_port,
            "{key}: no container serves port {port} (the Service's)"
        );
        assert!(
            hard.get("pods").is_none_or(|n| *n >= 1.0),
            "{namespace}: the ResourceQuota leaves room for no pod"
        );
        for (name, total) in &totals {
            if let Some(ceiling) = hard.get(name) {
                assert!(
                    total <= ceiling,
                    "{key}: {name} {total} is above the ResourceQuota ({ceiling}): no lease \
                     could be sold"
                );
            }
        }
    }

    // The real verifier loads it, as the Deployment starts it.
    if let Err(err) = verifier_loads(&config, &namespace) {
        panic!("{at}: paygress serve refuses the shipped config: {err}");
    }
    // And it is the verifier's own check that passed: a privileged variant,
    // or one without a CPU limit, is refused with its key named.
    let (i, _) = &pods[0];
    let mut privileged = config.clone();
    privileged["tiers"][*i]["pod"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        Value::Bool(true);
    let mut unlimited = config.clone();
    let limits = &mut unlimited["tiers"][*i]["pod"]["spec"]["containers"][0]["resources"]["limits"];
    limits
        .as_object_mut()
        .unwrap_or_else(|| panic!("{at}: tiers[{i}]: no limits"))
        .remove("cpu");
    for (variant, key) in [
        (
            privileged,
            format!("tiers[{i}].pod.spec.containers[0].securityContext.privileged"),
        ),
        (
            unlimited,
            format!("tiers[{i}].pod.spec.containers[0].resources.limits.cpu"),
        ),
    ] {
        match verifier_loads(&variant, &namespace) {
            Ok(()) => panic!("paygress serve loads a config whose {key} is wrong"),
            Err(err) => assert!(
                err.contains(&format!("`{key}`")) && err.starts_with("exit exit status: 2"),
                "paygress serve must refuse the config naming {key}: {err}"
            ),
        }
    }
}

/// Strategic merge of a list of objects by `name` (containers, env), as
/// `kubectl patch --type strategic` does for these lists.
fn merge_by_name(target: &mut Value, patch: &Value) {
    let Some(list) = target.as_array_mut() else {
        panic!("a strategic merge by name of something that is not a list");
    };
    for item in patch.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        match list.iter_mut().find(|t| t["name"] == item["name"]) {
            Some(existing) => {
                for (k, v) in item.as_object().into_iter().flatten() {
                    if k == "env" {
                        merge_by_name(&mut existing[k], v);
                    } else {
                        existing[k] = v.clone();
                    }
                }
            }
            None => list.push(item.clone()),
        }
    }
}

/// Pod provisioning is off as shipped (no token, ENABLE_POD_PROVISIONING
/// "false"), and `k8s/pod-provisioning/enable.yaml` turns it on by changing
/// only the lines that go together: the pod's API token, the switch, and
/// POD_NAMESPACE, the Role's namespace.
#[test]
fn one_patch_turns_pod_provisioning_on() {
    let docs = documents();
    let text = std::fs::read_to_string(tools::workspace_root().join(PROVISIONING_PATCH))
        .unwrap_or_else(|err| panic!("{PROVISIONING_PATCH}: {err}"));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|err| panic!("{PROVISIONING_PATCH}: not YAML: {err}"));
    let patch = serde_json::to_value(&yaml).unwrap_or_else(|err| panic!("{err}"));
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&patch), ["spec"], "{PROVISIONING_PATCH}");
    assert_eq!(keys(&patch["spec"]), ["template"], "{PROVISIONING_PATCH}");
    assert_eq!(
        keys(&patch["spec"]["template"]),
        ["spec"],
        "{PROVISIONING_PATCH}"
    );
    let pod_patch = &patch["spec"]["template"]["spec"];
    let mut pod_keys = keys(pod_patch);
    pod_keys.sort();
    assert_eq!(
        pod_keys,
        ["automountServiceAccountToken", "containers"],
        "{PROVISIONING_PATCH}: the token and the container's environment only"
    );
    for container in pod_patch["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let mut container_keys = keys(container);
        container_keys.sort();
        assert_eq!(
            container_keys,
            ["env", "name"],
            "{PROVISIONING_PATCH}: a container's environment only"
        );
        for env in container["env"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = env["name"].as_str().unwrap_or_default();
            assert!(
                matches!(name, "ENABLE_POD_PROVISIONING" | "POD_NAMESPACE"),
                "{PROVISIONING_PATCH}: sets {name}"
            );
            assert!(
                env["value"].is_string() && keys(env).len() == 2,
                "{PROVISIONING_PATCH}: {name} is a literal value"
            );
        }
    }

    // Applied to the shipped Deployment.
    let shipped = find(&docs, "Deployment", "paygress-auth");
    let mut value = shipped.value.clone();
    let pod = &mut value["spec"]["template"]["spec"];
    pod["automountServiceAccountToken"] = pod_patch["automountServiceAccountToken"].clone();
    let names_before: Vec<Value> = pod["containers"]
        .as_array()
        .map(|c| c.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    merge_by_name(&mut pod["containers"], &pod_patch["containers"]);
    let names_after: Vec<Value> = pod["containers"]
        .as_array()
        .map(|c| c.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        names_before, names_after,
        "{PROVISIONING_PATCH}: names a container the Deployment does not have"
    );
    let patched: Deployment = typed(&Doc {
        file: PROVISIONING_PATCH.to_string(),
        index: 0,
        value,
    });
    let pod = patched
        .spec
        .clone()
        .unwrap_or_default()
        .template
        .spec
        .unwrap_or_default();
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "{PROVISIONING_PATCH}: the verifier needs its API token"
    );
    assert_eq!(
        verifier_env(&patched, "ENABLE_POD_PROVISIONING").as_deref(),
        Some("true"),
        "{PROVISIONING_PATCH}"
    );
    let namespace = verifier_env(&patched, "POD_NAMESPACE");
    let role_namespaces: Vec<&str> = docs
        .iter()
        .filter(|d| d.kind() == "Role")
        .map(Doc::namespace)
        .collect();
    assert_eq!(
        namespace.as_deref(),
        Some(pod_namespace(&docs).as_str()),
        "{PROVISIONING_PATCH}: POD_NAMESPACE as shipped"
    );
    assert_eq!(
        role_namespaces,
        [namespace.as_deref().unwrap_or_default()],
        "{PROVISIONING_PATCH}: POD_NAMESPACE is the Role's namespace"
    );
    for container in &pod.containers {
        let mut names: Vec<String> = container
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "{PROVISIONING_PATCH}: a variable twice");
    }
}

// ---------------------------------------------------------------------------
// Replicas on one PostgreSQL store: `k8s/replicas/`, applied instead of the
// single SQLite replica.

/// The replicated verifier's manifests: a directory of their own, which
/// `kubectl apply -f k8s/` (and [`documents()`]) do not read.
const REPLICAS_DIR: &str = "k8s/replicas";
/// The variable that selects PostgreSQL, and the Secret (and key) it comes
/// from.
const DATABASE_URL_ENV: &str = "PAYGRESS_DATABASE_URL";
const DATABASE_SECRET: &str = "paygress-database";
const DATABASE_SECRET_KEY: &str = "url";
/// The wallet seed, one for every replica.
const MNEMONIC_ENV: &str = "PAYGRESS_MNEMONIC";
/// The leader-election Lease, in the verifier's namespace, and the calls the
/// verifier makes on it.
const LEADER_LEASE: &str = "paygress-verifier-leader";
const LEADER_VERBS: [&str; 3] = ["create", "get", "update"];

/// The variable `name` of a container's `env`.
fn env_var<'a>(env: &'a [EnvVar], name: &str, at: &str) -> &'a EnvVar {
    env.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{at}: {name} is not set"))
}

/// The Secret (and key) the variable `name` comes from; never a literal.
fn from_secret(env: &[EnvVar], name: &str, at: &str) -> SecretKeySelector {
    let var = env_var(env, name, at);
    assert!(
        var.value.is_none(),
        "{at}: {name} has a literal value: it belongs in a Secret"
    );
    var.value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.clone())
        .unwrap_or_else(|| panic!("{at}: {name} is not from a Secret (secretKeyRef)"))
}

/// The pod field (downward API) the variable `name` comes from.
fn from_field(env: &[EnvVar], name: &str, at: &str) -> String {
    let var = env_var(env, name, at);
    assert!(var.value.is_none(), "{at}: {name} has a literal value");
    var.value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone())
        .unwrap_or_else(|| panic!("{at}: {name} is not from the downward API (fieldRef)"))
}

/// The parts of `postgres://user:password@host:port/database?params` that
/// the checks look at.
#[derive(Debug)]
struct PostgresUrl {
    password: String,
    port: u16,
    params: BTreeMap<String, String>,
}

fn postgres_url(url: &str, at: &str) -> PostgresUrl {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap_or_else(|| panic!("{at}: {url:?} is not a postgres:// URL"));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest
        .split_once('/')
        .unwrap_or_else(|| panic!("{at}: {url:?} names no database"));
    let (user_info, host_port) = authority
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{at}: {url:?} names no user"));
    let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
    assert!(
        !user.is_empty() && !host.is_empty() && !database.is_empty(),
        "{at}: {url:?} lacks a user, a host or a database"
    );
    let port = port
        .parse()
        .unwrap_or_else(|err| panic!("{at}: {url:?}: port {port}: {err}"));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            (key.to_string(), value.to_string())
        })
        .collect();
    PostgresUrl {
        password: password.to_string(),
        port,
        params,
    }
}

/// The replicated verifier of `k8s/replicas/`: the Deployment
/// `paygress-auth` (it replaces the single SQLite replica, under its name
/// and pod labels, so the Service and the NetworkPolicy of the default
/// installation reach it) runs at least two replicas, hardened as the single
/// one, of the same image and arguments, on PostgreSQL:
///
/// - `PAYGRESS_DATABASE_URL` from the Secret `paygress-database` (key `url`),
///   required; `PAYGRESS_MNEMONIC` from the single replica's Secret,
///   required (one seed for all); `PAYGRESS_REPLICA_ID` from `metadata.name`
///   and `PAYGRESS_LEADER_NAMESPACE` from `metadata.namespace` (downward
///   API); leader election not off, the API token mounted for it, pod
///   provisioning off and `POD_NAMESPACE` as in the single replica;
/// - no ReadWriteOnce claim: the data dir is an emptyDir, no volume is a
///   claim, no claim is shipped;
/// - a PodDisruptionBudget selects the replicas and keeps at least one
///   (fewer than the minimum, so a drain can evict);
/// - a HorizontalPodAutoscaler (autoscaling/v2) scales the Deployment on
///   CPU from at least two;
/// - topology spread over zones (ScheduleAnyway) and nodes, counting the
///   replicas;
/// - the verifier's ServiceAccount is granted, in the pod's own namespace,
///   exactly get, create, update and patch on the Lease
///   `paygress-verifier-leader` (by name wherever RBAC can: `create` in a
///   rule of its own), and nothing else;
/// - a NetworkPolicy opens the database's port to the replicas (egress
///   only);
/// - the Secret template holds a placeholder, never a password, and no
///   manifest gives the database URL or the mnemonic as a literal.
#[test]
fn the_postgres_replicas_share_one_store_and_elect_a_leader() {
    let docs = documents();
    let replicas = replica_documents();
    for doc in &replicas {
        assert_eq!(
            doc.namespace(),
            VERIFIER_NAMESPACE,
            "{}: the verifier's namespace (nothing cluster-wide)",
            doc.at()
        );
    }

    // One workload: the Deployment paygress-auth, at least two replicas.
    let workloads: Vec<&Doc> = replicas
        .iter()
        .filter(|d| matches!(d.kind(), "Deployment" | "StatefulSet" | "DaemonSet"))
        .collect();
    assert_eq!(
        workloads.len(),
        1,
        "one workload in {REPLICAS_DIR}/: {:?}",
        workloads.iter().map(|d| d.at()).collect::<Vec<_>>()
    );
    let doc = workloads[0];
    let at = doc.at();
    assert_eq!(doc.kind(), "Deployment", "{at}");
    assert_eq!(
        doc.name(),
        "paygress-auth",
        "{at}: it replaces the single-replica Deployment, under its name"
    );
    let text = std::fs::read_to_string(tools::workspace_root().join(&doc.file))
        .unwrap_or_else(|err| panic!("{}: {err}", doc.file));
    assert!(
        text.contains(&format!("kubectl apply -f {}", doc.file)),
        "{}: the header says how to apply it",
        doc.file
    );
    let deployment: Deployment = typed(doc);
    let spec = deployment.spec.clone().unwrap_or_default();
    let count = spec.replicas.unwrap_or(1);
    assert!(count >= 2, "{at}: replicas {count}: at least two");
    assert_ne!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "{at}: the store is shared: a rollout keeps replicas serving"
    );
    let (pod_labels, _) = pods_of(&deployment);
    assert!(
        selects(&spec.selector, &pod_labels),
        "{at}: the selector selects the pods"
    );
    let pod = spec.template.spec.clone().unwrap_or_default();
    assert_verifier_pod_hardened(&pod, &at);
    let container = &pod.containers[0];

    // The same verifier as the single replica.
    let single = verifier_deployment(&docs);
    let (single_labels, _) = pods_of(&single);
    assert_eq!(
        pod_labels, single_labels,
        "{at}: the single replica's pod labels (its Service and NetworkPolicy select them)"
    );
    let single_pod = single
        .spec
        .clone()
        .unwrap_or_default()
        .template
        .spec
        .unwrap_or_default();
    let single_container = &single_pod.containers[0];
    let single_env = single_container.env.clone().unwrap_or_default();
    assert_eq!(
        container.image, single_container.image,
        "{at}: the single replica's image"
    );
    assert_eq!(
        container.args, single_container.args,
        "{at}: the single replica's arguments"
    );
    assert_eq!(
        pod.service_account_name, single_pod.service_account_name,
        "{at}: the single replica's ServiceAccount"
    );
    let env = container.env.clone().unwrap_or_default();
    let mut names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    let all = names.len();
    names.dedup();
    assert_eq!(names.len(), all, "{at}: a variable twice");
    for var in &single_env {
        assert!(
            names.contains(&var.name.as_str()),
            "{at}: {} (set on the single replica) is not set",
            var.name
        );
    }

    // PostgreSQL, one seed, the pod's identity.
    let url = from_secret(&env, DATABASE_URL_ENV, &at);
    assert_eq!(
        (url.name.as_str(), url.key.as_str()),
        (DATABASE_SECRET, DATABASE_SECRET_KEY),
        "{at}: {DATABASE_URL_ENV} comes from the Secret {DATABASE_SECRET}, key {DATABASE_SECRET_KEY}"
    );
    assert_ne!(
        url.optional,
        Some(true),
        "{at}: {DATABASE_URL_ENV} is required: without it each replica opens a SQLite store \
         of its own, in an emptyDir"
    );
    let mnemonic = from_secret(&env, MNEMONIC_ENV, &at);
    assert_ne!(
        mnemonic.optional,
        Some(true),
        "{at}: {MNEMONIC_ENV} is required on PostgreSQL (the verifier refuses to start without it)"
    );
    let single_mnemonic = from_secret(&single_env, MNEMONIC_ENV, "the single replica");
    assert_eq!(
        (&mnemonic.name, &mnemonic.key),
        (&single_mnemonic.name, &single_mnemonic.key),
        "{at}: {MNEMONIC_ENV} from the single replica's Secret"
    );
    assert_eq!(
        from_field(&env, "PAYGRESS_REPLICA_ID", &at),
        "metadata.name",
        "{at}: PAYGRESS_REPLICA_ID is the pod's name"
    );
    assert_eq!(
        env_var(&env, "POD_NAMESPACE", &at).value,
        env_var(&single_env, "POD_NAMESPACE", &at).value,
        "{at}: POD_NAMESPACE (the tenant namespace of lease pods) as the single replica's"
    );
    // The Lease's namespace, when given: the pod's own (the Role's).
    if env.iter().any(|e| e.name == "PAYGRESS_LEADER_NAMESPACE") {
        assert_eq!(
            from_field(&env, "PAYGRESS_LEADER_NAMESPACE", &at),
            "metadata.namespace",
            "{at}: PAYGRESS_LEADER_NAMESPACE is the pod's namespace (the Role's)"
        );
    }
    if let Some(lease) = env.iter().find(|e| e.name == "PAYGRESS_LEADER_LEASE") {
        assert_eq!(
            lease.value.as_deref(),
            Some(LEADER_LEASE),
            "{at}: PAYGRESS_LEADER_LEASE is the Lease the Role grants"
        );
    }
    let election = env
        .iter()
        .find(|e| e.name == "PAYGRESS_LEADER_ELECTION")
        .map(|e| {
            e.value
                .clone()
                .unwrap_or_else(|| panic!("{at}: PAYGRESS_LEADER_ELECTION is not a literal"))
        });
    assert!(
        matches!(election.as_deref(), None | Some("auto" | "kube")),
        "{at}: PAYGRESS_LEADER_ELECTION {election:?}: the replicas elect a leader"
    );
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "{at}: leader election needs the pod's API token"
    );
    assert_eq!(
        env_var(&env, "ENABLE_POD_PROVISIONING", &at)
            .value
            .as_deref(),
        Some("false"),
        "{at}: pod provisioning off as shipped, as in the single replica"
    );
    let pass = from_secret(&env, PASS_KEY_ENV, &at);
    assert_eq!(
        (pass.name.as_str(), pass.key.as_str(), pass.optional),
        (PASS_KEY_SECRET, PASS_KEY_SECRET_KEY, None),
        "{at}: {PASS_KEY_ENV} as the single replica's"
    );

    // The config as the single replica's; no ReadWriteOnce claim.
    let volumes = pod.volumes.clone().unwrap_or_default();
    for volume in &volumes {
        assert!(
            volume.persistent_volume_claim.is_none() && volume.ephemeral.is_none(),
            "{at}: volume {}: a claim ties a replica to a node",
            volume.name
        );
        if let Some(config_map) = &volume.config_map {
            assert!(
                find_in(&docs, "ConfigMap", VERIFIER_NAMESPACE, &config_map.name).is_some(),
                "{at}: no ConfigMap {}",
                config_map.name
            );
        }
    }
    let args = container.args.clone().unwrap_or_default();
    let data_dir = args
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{at}: no --data-dir: {args:?}"));
    let data_mount = container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| data_dir.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("{at}: nothing is mounted at {data_dir}"));
    assert_ne!(
        data_mount.read_only,
        Some(true),
        "{at}: the data dir is writable"
    );
    assert!(
        volumes
            .iter()
            .any(|v| v.name == data_mount.name && v.empty_dir.is_some()),
        "{at}: the data dir {data_dir} is an emptyDir (nothing precious on PostgreSQL)"
    );
    for claim in replicas
        .iter()
        .filter(|d| d.kind() == "PersistentVolumeClaim")
    {
        let modes = typed::<PersistentVolumeClaim>(claim)
            .spec
            .and_then(|s| s.access_modes)
            .unwrap_or_default();
        assert!(
            !modes
                .iter()
                .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod"),
            "{}: a ReadWriteOnce claim in the replicated variant",
            claim.at()
        );
    }

    // The autoscaler: the Deployment, on CPU, from at least two.
    let autoscalers: Vec<(String, HorizontalPodAutoscaler)> = replicas
        .iter()
        .filter(|d| d.kind() == "HorizontalPodAutoscaler")
        .map(|d| (d.at(), typed::<HorizontalPodAutoscaler>(d)))
        .filter(|(_, h)| {
            h.spec.as_ref().is_some_and(|s| {
                s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == doc.name()
            })
        })
        .collect();
    assert_eq!(
        autoscalers.len(),
        1,
        "{at}: one HorizontalPodAutoscaler targets it"
    );
    let (hpa_at, hpa) = &autoscalers[0];
    let hpa_spec = hpa.spec.clone().unwrap_or_default();
    assert_eq!(
        hpa_spec.scale_target_ref.api_version.as_deref(),
        Some("apps/v1"),
        "{hpa_at}"
    );
    let min = hpa_spec.min_replicas.unwrap_or(1);
    let max = hpa_spec.max_replicas;
    assert!(min >= 2, "{hpa_at}: minReplicas {min}: at least two");
    assert!(max >= min, "{hpa_at}: maxReplicas {max} below {min}");
    assert!(
        (min..=max).contains(&count),
        "{at}: replicas {count} outside the autoscaler's {min}..={max}"
    );
    assert!(
        hpa_spec.metrics.unwrap_or_default().iter().any(|m| {
            m.type_ == "Resource" && m.resource.as_ref().is_some_and(|r| r.name == "cpu")
        }),
        "{hpa_at}: scales on CPU"
    );

    // The disruption budget: selects the replicas, keeps one, lets a drain
    // evict.
    let budgets: Vec<(String, PodDisruptionBudget)> = replicas
        .iter()
        .filter(|d| d.kind() == "PodDisruptionBudget")
        .map(|d| (d.at(), typed::<PodDisruptionBudget>(d)))
        .filter(|(_, b)| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| is_narrow(Some(s)) && selects(s, &pod_labels))
        })
        .collect();
    assert_eq!(
        budgets.len(),
        1,
        "{at}: one PodDisruptionBudget selects its pods"
    );
    let (pdb_at, pdb) = &budgets[0];
    let min_available = match pdb.spec.as_ref().and_then(|s| s.min_available.clone()) {
        Some(IntOrString::Int(n)) => n,
        other => panic!("{pdb_at}: minAvailable {other:?}: a number of replicas"),
    };
    assert!(
        (1..min).contains(&min_available),
        "{pdb_at}: minAvailable {min_available}: at least one, and fewer than the {min} replicas \
         (else no drain can evict one)"
    );

    // Spread over zones (as far as they go) and nodes.
    let constraints = pod.topology_spread_constraints.clone().unwrap_or_default();
    for key in ["topology.kubernetes.io/zone", "kubernetes.io/hostname"] {
        let constraint = constraints
            .iter()
            .find(|c| c.topology_key == key)
            .unwrap_or_else(|| panic!("{at}: no topologySpreadConstraint over {key}"));
        assert!(constraint.max_skew >= 1, "{at}: {key}: maxSkew");
        assert!(
            constraint
                .label_selector
                .as_ref()
                .is_some_and(|s| is_narrow(Some(s)) && selects(s, &pod_labels)),
            "{at}: {key}: the constraint counts the replicas"
        );
        assert!(
            matches!(
                constraint.when_unsatisfiable.as_str(),
                "ScheduleAnyway" | "DoNotSchedule"
            ),
            "{at}: {key}: whenUnsatisfiable {}",
            constraint.when_unsatisfiable
        );
        if key == "topology.kubernetes.io/zone" {
            assert_eq!(
                constraint.when_unsatisfiable, "ScheduleAnyway",
                "{at}: {key}: a single-zone cluster must still schedule the replicas"
            );
        }
    }

    // Leader election: the ServiceAccount's Role, on the Lease only.
    let account = pod
        .service_account_name
        .clone()
        .unwrap_or_else(|| panic!("{at}: no serviceAccountName"));
    assert!(
        find_in(&docs, "ServiceAccount", VERIFIER_NAMESPACE, &account).is_some(),
        "no ServiceAccount {VERIFIER_NAMESPACE}/{account} (k8s/rbac.yaml)"
    );
    let mut granted: Vec<String> = Vec::new();
    for binding_doc in replicas.iter().filter(|d| d.kind() == "RoleBinding") {
        let binding: RoleBinding = typed(binding_doc);
        assert_eq!(binding.role_ref.kind, "Role", "{}", binding_doc.at());
        let subjects: Vec<(String, String, Option<String>)> = binding
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.kind, s.name, s.namespace))
            .collect();
        assert_eq!(
            subjects,
            [(
                "ServiceAccount".to_string(),
                account.clone(),
                Some(VERIFIER_NAMESPACE.to_string())
            )],
            "{}: the verifier's ServiceAccount only",
            binding_doc.at()
        );
        let role_doc = find_in(
            &replicas,
            "Role",
            binding_doc.namespace(),
            &binding.role_ref.name,
        )
        .unwrap_or_else(|| {
            panic!(
                "{}: no Role {} in {REPLICAS_DIR}/",
                binding_doc.at(),
                binding.role_ref.name
            )
        });
        assert_eq!(
            role_doc.namespace(),
            doc.namespace(),
            "{}: the leader Role is in the verifier's own namespace",
            role_doc.at()
        );
        let role: Role = typed(role_doc);
        for (i, rule) in role.rules.unwrap_or_default().into_iter().enumerate() {
            let rule_at = format!("{} rule {i}", role_doc.at());
            assert_eq!(
                rule.api_groups.as_deref(),
                Some(&["coordination.k8s.io".to_string()][..]),
                "{rule_at}: coordination.k8s.io only"
            );
            assert_eq!(
                rule.resources.as_deref(),
                Some(&["leases".to_string()][..]),
                "{rule_at}: leases only"
            );
            assert!(rule.non_resource_urls.is_none(), "{rule_at}");
            let lease_names = rule.resource_names.clone().unwrap_or_default();
            for verb in &rule.verbs {
                assert!(
                    LEADER_VERBS.contains(&verb.as_str()),
                    "{rule_at}: {verb} beyond {LEADER_VERBS:?}"
                );
                if verb == "create" {
                    assert!(
                        lease_names.is_empty(),
                        "{rule_at}: create cannot be limited by resourceNames (such a rule \
                         never allows it): a rule of its own"
                    );
                } else {
                    assert_eq!(
                        lease_names,
                        [LEADER_LEASE],
                        "{rule_at}: {verb} on the Lease {LEADER_LEASE} only"
                    );
                }
                granted.push(verb.clone());
            }
        }
    }
    granted.sort();
    granted.dedup();
    assert_eq!(
        granted, LEADER_VERBS,
        "the verifier's ServiceAccount: the Lease {LEADER_LEASE}, exactly"
    );

    // The database Secret: a template, its password a placeholder.
    let secret_doc = find_in(&replicas, "Secret", VERIFIER_NAMESPACE, DATABASE_SECRET)
        .unwrap_or_else(|| panic!("no Secret {DATABASE_SECRET} template in {REPLICAS_DIR}/"));
    let secret: Secret = typed(secret_doc);
    assert!(
        secret.data.is_none(),
        "{}: stringData only (a readable placeholder)",
        secret_doc.at()
    );
    let string_data = secret.string_data.unwrap_or_default();
    assert_eq!(
        string_data.keys().collect::<Vec<_>>(),
        [DATABASE_SECRET_KEY],
        "{}",
        secret_doc.at()
    );
    let template = postgres_url(&string_data[DATABASE_SECRET_KEY], &secret_doc.at());
    assert!(
        template.password.contains("REPLACE"),
        "{}: the password is a placeholder, never a password: {:?}",
        secret_doc.at(),
        template.password
    );
    assert!(
        template
            .params
            .get("sslmode")
            .is_some_and(|m| matches!(m.as_str(), "require" | "verify-ca" | "verify-full")),
        "{}: sslmode {:?}: the wallet's proofs cross the network encrypted",
        secret_doc.at(),
        template.params.get("sslmode")
    );

    // The replicas reach the database (egress only: who reaches them stays
    // k8s/networkpolicy.yaml's).
    let policies: Vec<(String, NetworkPolicy)> = network_policies(&replicas);
    assert!(!policies.is_empty(), "no NetworkPolicy in {REPLICAS_DIR}/");
    let mut database_port = false;
    for (policy_at, policy) in policies {
        let spec = policy.spec.unwrap_or_default();
        assert!(
            spec.pod_selector
                .as_ref()
                .is_some_and(|s| is_narrow(Some(s)) && selects(s, &pod_labels)),
            "{policy_at}: selects the replicas"
        );
        assert_eq!(
            spec.policy_types.unwrap_or_default(),
            ["Egress"],
            "{policy_at}: egress only"
        );
        for (i, rule) in spec.egress.unwrap_or_default().iter().enumerate() {
            assert!(
                rule.to.as_ref().is_some_and(|to| !to.is_empty()),
                "{policy_at}: egress rule {i} reaches every destination"
            );
            let ports = rule.ports.clone().unwrap_or_default();
            assert!(
                !ports.is_empty(),
                "{policy_at}: egress rule {i}: every port"
            );
            database_port |= ports
                .iter()
                .any(|p| p.port == Some(IntOrString::Int(i32::from(template.port))));
        }
    }
    assert!(
        database_port,
        "{REPLICAS_DIR}/: no egress to the database's port {}",
        template.port
    );

    // Nowhere the database URL or the mnemonic as a literal, nor a
    // mnemonic in a Secret.
    let sensitive = [DATABASE_URL_ENV.to_string(), MNEMONIC_ENV.to_string()];
    for d in docs.iter().chain(&replicas) {
        let mut literal = Vec::new();
        literal_values(&d.value, &sensitive, &mut literal);
        assert!(
            literal.is_empty(),
            "{}: a secret given as a literal value: {literal:?}",
            d.at()
        );
        if d.kind() == "Secret" {
            for field in ["data", "stringData"] {
                assert!(
                    d.value[field].get("mnemonic").is_none(),
                    "{}: a mnemonic in a manifest",
                    d.at()
                );
            }
        }
    }
}
