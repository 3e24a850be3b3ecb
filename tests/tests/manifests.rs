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

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use paygress_core::Config;
use paygress_tests::tools;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The verifier's Service as Istio names its outbound cluster.
const ISTIO_VERIFIER_CLUSTER: &str =
    "outbound|8080||paygress-auth.paygress-system.svc.cluster.local";
/// The headers the verifier sets on a grant.
const GRANT_HEADERS: [&str; 5] = [
    "X-Payment-Verified",
    "X-Payment-Amount",
    "X-Payment-Tier",
    "X-User-ID",
    "X-Provisioned-Pod",
];

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

/// The YAML files under `k8s/` and `wasm-plugins/`.
fn manifest_files() -> Vec<PathBuf> {
    let root = tools::workspace_root();
    let mut files = Vec::new();
    for dir in ["k8s", "wasm-plugins"] {
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

/// Every non-empty document of every manifest file.
fn documents() -> Vec<Doc> {
    let root = tools::workspace_root();
    let mut docs = Vec::new();
    for path in manifest_files() {
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
    assert!(!docs.is_empty(), "no manifests found");
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

/// A valid Paygress config (paygress-core's own parser and validation).
fn paygress_config(json: &Value, at: &str) -> Config {
    let config = Config::from_value(json.clone())
        .unwrap_or_else(|err| panic!("{at}: not a Paygress config: {err}"));
    config
        .compile()
        .unwrap_or_else(|err| panic!("{at}: invalid Paygress config: {err}"));
    config
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
    let config = paygress_config(&spec["pluginConfig"], &doc.at());
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
    } else if let Some(headers) = spec.get("headers") {
        assert!(headers["customRequestHeaders"].is_object(), "{}", doc.at());
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
        assert!(
            names.first() == Some(&"paygress-auth"),
            "{}: paygress-auth must come first",
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
    }
}

// ---------------------------------------------------------------------------

#[test]
fn every_manifest_parses_into_its_type() {
    let docs = documents();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for doc in &docs {
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
            ("apps/v1", "Deployment") => drop(typed::<Deployment>(doc)),
            ("apps/v1", "StatefulSet") => drop(typed::<StatefulSet>(doc)),
            ("apps/v1", "DaemonSet") => drop(typed::<DaemonSet>(doc)),
            ("policy/v1", "PodDisruptionBudget") => drop(typed::<PodDisruptionBudget>(doc)),
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
            ("traefik.io/v1alpha1", "IngressRoute") => check_ingress_route(doc, &docs),
            ("security.istio.io/v1" | "security.istio.io/v1beta1", "AuthorizationPolicy") => {
                check_authorization_policy(doc, &docs)
            }
            ("networking.istio.io/v1alpha3", "EnvoyFilter") => check_envoy_filter(doc),
            ("install.istio.io/v1alpha1", "IstioOperator") => check_istio_operator(doc),
            (api, kind) => panic!(
                "{}: {api} {kind} is not known to tests/tests/manifests.rs: add its type or its CRD check",
                doc.at()
            ),
        }
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
        "WasmPlugin",
        "Middleware",
        "AuthorizationPolicy",
    ] {
        assert!(
            docs.iter().any(|d| d.kind() == kind),
            "no {kind} in k8s/ or wasm-plugins/"
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
    for doc in &docs {
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

    let pod_security = pod.security_context.clone().unwrap_or_default();
    assert_eq!(pod_security.run_as_non_root, Some(true), "runAsNonRoot");

    assert_eq!(pod.containers.len(), 1);
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

    let security = container.security_context.clone().unwrap_or_default();
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "allowPrivilegeEscalation"
    );
    assert!(
        security
            .capabilities
            .and_then(|c| c.drop)
            .is_some_and(|d| d.iter().any(|c| c == "ALL")),
        "capabilities drop ALL"
    );
    let resources = container.resources.clone().unwrap_or_default();
    for key in ["cpu", "memory"] {
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key(key)),
            "requests.{key}"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|r| r.contains_key(key)),
            "limits.{key}"
        );
    }
    let readiness = container
        .readiness_probe
        .clone()
        .and_then(|p| p.http_get)
        .unwrap_or_else(|| panic!("no readiness probe"));
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let liveness = container
        .liveness_probe
        .clone()
        .and_then(|p| p.http_get)
        .unwrap_or_else(|| panic!("no liveness probe"));
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));

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
    assert_eq!(verbs, ["create", "delete", "get", "list", "watch"]);
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
    let plugin_config = paygress_config(&plugin.value["spec"]["pluginConfig"], &plugin.at());
    assert_eq!(
        plugin_config.mints, verifier_config.mints,
        "WasmPlugin and verifier accept the same mints"
    );
    assert_eq!(
        plugin_config.tiers, verifier_config.tiers,
        "WasmPlugin and verifier price alike"
    );
    assert_eq!(plugin_config.free_paths, verifier_config.free_paths);
    assert_eq!(plugin_config.default_amount, verifier_config.default_amount);
    assert_eq!(plugin_config.unit, verifier_config.unit);
}

#[test]
fn the_protected_ingress_asks_the_verifier_and_the_free_one_does_not() {
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
    for header in GRANT_HEADERS {
        assert!(
            response_headers.split(',').any(|h| h.trim() == header),
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

    let free: Ingress = typed(find(&docs, "Ingress", "my-app-free"));
    assert!(
        annotation(&free, "auth-url").is_none(),
        "the free Ingress does not ask the verifier"
    );
    let free_snippet = annotation(&free, "configuration-snippet").unwrap_or_default();
    for header in GRANT_HEADERS {
        assert!(
            free_snippet.contains(&format!("proxy_set_header {header} \"\"")),
            "the free Ingress must clear {header}"
        );
    }

    // Both route to a Service that exists in their namespace.
    for ingress in [&paid, &free] {
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
