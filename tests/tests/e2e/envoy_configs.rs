//! Every Envoy configuration in the repository passes `envoy --mode validate`
//! with the real Envoy (1.40, from the tools cache):
//! - every `envoy/*.yaml`, its `${PLACEHOLDERS}` rendered (ports, the
//!   filter's .wasm, the plugin configuration);
//! - the filters that `k8s/istio-ext-authz.yaml`'s EnvoyFilter inserts around
//!   Istio's ext_authz filter;
//! - the `pluginConfig` of `wasm-plugins/paygress-wasmplugin.yaml`, loaded by
//!   the real filter in the config whose verifier cluster is named as Istio
//!   names it;
//! - the Istio gateway's connection manager as the mesh config's
//!   `pathNormalization` and the `k8s/` EnvoyFilter MERGE patches make it.
//!
//! And what the hardening of every config does, in the running Envoy: the
//! path is normalised (`.`/`..`, `//`, `%2F`) before the filter or ext_authz
//! reads it, so the upstream gets the path that was priced, and headers with
//! underscores are dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use paygress_tests::contract::{
    placeholders, proxy_dir, render, repo_file, write_in, EchoUpstream, Proxy, Stack,
};
use paygress_tests::{free_port, tools};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The filter's release build, which the wasm configs load.
fn wasm_path() -> PathBuf {
    let path = tools::target_dir()
        .join("wasm32-wasip1")
        .join("wasm-release")
        .join("paygress_filter.wasm");
    assert!(
        path.is_file(),
        "{} is missing: build it with `just build` (or `cargo build -p paygress-filter \
         --target wasm32-wasip1 --profile wasm-release`)",
        path.display()
    );
    path
}

/// A JSON document on one line (the form `${PLUGIN_CONFIG}` takes).
fn one_line_json(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON: {err}"));
    value.to_string()
}

/// The value of a placeholder of an `envoy/*.yaml` template.
fn placeholder_value(file: &str, name: &str) -> String {
    match name {
        n if n.ends_with("_PORT") => free_port().to_string(),
        "WASM_PATH" => wasm_path().display().to_string(),
        "PLUGIN_CONFIG" => {
            let config = if file.contains("istio") {
                "envoy/plugin-config-istio.json"
            } else {
                "envoy/plugin-config.json"
            };
            one_line_json(&repo_file(config))
        }
        other => panic!(
            "{file}: unknown placeholder ${{{other}}}: give tests/tests/envoy_configs.rs a value for it"
        ),
    }
}

/// Runs `envoy --mode validate -c path`; panics with Envoy's output when it
/// refuses the file.
fn validate(label: &str, path: &Path, rendered: &str) {
    let output = Command::new(tools::envoy())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(path)
        .arg("--log-level")
        .arg("error")
        // The pass key the configs name in `secret_env`, as the filter's
        // configure step (run by validate) reads it from Envoy's environment.
        .env(
            paygress_tests::fixture::PASS_KEY_ENV,
            paygress_tests::fixture::PASS_KEY_SECRET,
        )
        .output()
        .unwrap_or_else(|err| panic!("cannot run envoy: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "{label}: envoy --mode validate refused it ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- rendered ---\n{rendered}",
        output.status
    );
}

/// The `envoy/*.yaml` files.
fn envoy_templates() -> Vec<PathBuf> {
    let dir = tools::workspace_root().join("envoy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|err| panic!("{err}")).path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_envoy_config_passes_envoy_validate() {
    let files = envoy_templates();
    assert!(
        files.iter().any(|f| f.ends_with("envoy-ext-authz.yaml")),
        "envoy/envoy-ext-authz.yaml is missing"
    );
    let dir = proxy_dir("envoy-validate");
    for file in &files {
        let relative = format!(
            "envoy/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let template = repo_file(&relative);
        let mut names: Vec<&str> = placeholders(&template);
        names.sort_unstable();
        names.dedup();
        let values: Vec<(&str, String)> = names
            .iter()
            .map(|name| (*name, placeholder_value(&relative, name)))
            .collect();
        let rendered = render(&template, &values);
        let out = write_in(dir.path(), &relative.replace('/', "-"), &rendered);
        validate(&relative, &out, &rendered);
        eprintln!("ok  {relative} ({} placeholders)", values.len());
    }
}

/// Every placeholder a template uses is named in its header comment, so that
/// a user can render it by hand.
#[test]
fn every_envoy_placeholder_is_documented() {
    for file in envoy_templates() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|err| panic!("{err}"));
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        for name in placeholders(&text) {
            assert!(
                header.contains(&format!("${{{name}}}")),
                "{}: ${{{name}}} is used but not described in the header comment",
                file.display()
            );
        }
    }
}

/// The documents of a YAML file, as JSON values.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = repo_file(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|err| panic!("{relative}: {err}"));
            serde_json::to_value(value).unwrap_or_else(|err| panic!("{relative}: {err}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A bootstrap with one HTTP listener whose filter chain is `filters`
/// (followed by the router).
fn bootstrap_with_filters(mut filters: Vec<Value>) -> Value {
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    json!({
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
                        }]},
                        "http_filters": filters
                    }
                }]}]
            }],
            "clusters": [
                {"name": "upstream", "type": "STATIC", "load_assignment": {"cluster_name": "upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}}}]}]}},
                {"name": "outbound|8080||paygress-auth.paygress-system.svc.cluster.local", "type": "STATIC",
                 "load_assignment": {"cluster_name": "outbound|8080||paygress-auth.paygress-system.svc.cluster.local",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}}}]}]}}
            ]
        }
    })
}

/// The EnvoyFilter of k8s/istio-ext-authz.yaml inserts header_mutation
/// filters before and after Istio's ext_authz filter: placed that way around
/// an ext_authz filter configured like Istio's `envoyExtAuthzHttp` provider,
/// the real Envoy accepts them.
#[test]
fn the_istio_envoy_filter_patches_are_valid_envoy_filters() {
    let docs = yaml_documents("k8s/istio-ext-authz.yaml");
    let envoy_filter = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyFilter")
        .unwrap_or_else(|| panic!("k8s/istio-ext-authz.yaml has no EnvoyFilter"));
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .unwrap_or_else(|| panic!("EnvoyFilter without configPatches"));
    let mut before = Vec::new();
    let mut after = Vec::new();
    for patch in patches {
        assert_eq!(patch["applyTo"], "HTTP_FILTER", "{patch}");
        assert_eq!(
            patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.ext_authz",
            "{patch}"
        );
        let value = patch["patch"]["value"].clone();
        match patch["patch"]["operation"].as_str() {
            Some("INSERT_BEFORE") => before.push(value),
            Some("INSERT_AFTER") => after.push(value),
            other => panic!("unexpected operation {other:?}"),
        }
    }
    assert!(
        !before.is_empty() && !after.is_empty(),
        "patches before and after ext_authz"
    );

    // ext_authz as Istio builds it from the mesh config's provider.
    let mesh = yaml_documents("k8s/istio-mesh-config.yaml");
    let provider = &mesh[0]["spec"]["meshConfig"]["extensionProviders"][0]["envoyExtAuthzHttp"];
    let patterns = |key: &str| -> Value {
        Value::Array(
            provider[key]
                .as_array()
                .unwrap_or_else(|| panic!("provider has no {key}"))
                .iter()
                .map(|h| json!({"exact": h}))
                .collect(),
        )
    };
    let ext_authz = json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "http_service": {
                "server_uri": {
                    "uri": format!("http://{}", provider["service"].as_str().unwrap_or("")),
                    "cluster": "outbound|8080||paygress-auth.paygress-system.svc.cluster.local",
                    "timeout": provider["timeout"].clone()
                },
                "path_prefix": provider["pathPrefix"].clone(),
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": patterns("headersToUpstreamOnAllow")},
                    "allowed_client_headers": {"patterns": patterns("headersToDownstreamOnDeny")}
                }
            },
            "allowed_headers": {"patterns": patterns("includeRequestHeadersInCheck")},
            "failure_mode_allow": provider["failOpen"].clone(),
            "status_on_error": {"code": "ServiceUnavailable"}
        }
    });
    let mut filters = before;
    filters.push(ext_authz);
    filters.extend(after);
    let bootstrap = bootstrap_with_filters(filters);
    let text = serde_json::to_string_pretty(&bootstrap).unwrap_or_default();
    let dir = proxy_dir("envoy-validate-istio");
    let path = write_in(dir.path(), "istio-gateway.json", &text);
    validate("k8s/istio-ext-authz.yaml EnvoyFilter", &path, &text);
}

/// The WasmPlugin's pluginConfig, as Istio hands it to the filter (JSON),
/// is accepted by the real filter in an Envoy whose verifier cluster has
/// Istio's name.
#[test]
fn the_wasm_plugin_config_loads_in_the_real_filter() {
    let docs = yaml_documents("wasm-plugins/paygress-wasmplugin.yaml");
    let plugin = docs
        .iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .unwrap_or_else(|| panic!("no WasmPlugin"));
    let plugin_config = plugin["spec"]["pluginConfig"].to_string();
    let relative = "envoy/envoy-istio-cluster-name.yaml";
    let template = repo_file(relative);
    let mut names: Vec<&str> = placeholders(&template);
    names.sort_unstable();
    names.dedup();
    let values: Vec<(&str, String)> = names
        .iter()
        .map(|name| {
            let value = if *name == "PLUGIN_CONFIG" {
                plugin_config.clone()
            } else {
                placeholder_value(relative, name)
            };
            (*name, value)
        })
        .collect();
    let rendered = render(&template, &values);
    let dir = proxy_dir("envoy-validate-wasmplugin");
    let path = write_in(dir.path(), "envoy.yaml", &rendered);
    validate(
        "wasm-plugins/paygress-wasmplugin.yaml pluginConfig",
        &path,
        &rendered,
    );
}

// ---------------------------------------------------------------------------
// Hardening: one path for the proxy and the upstream, no underscore aliases.

/// Every HTTP connection manager config in `value` (any depth).
fn connection_managers<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(".HttpConnectionManager"))
            {
                found.push(value);
            }
            for child in map.values() {
                connection_managers(child, found);
            }
        }
        Value::Array(items) => {
            for child in items {
                connection_managers(child, found);
            }
        }
        _ => {}
    }
}

/// `envoy/<file>` rendered with stand-in values, for reading its structure
/// only (the .wasm need not exist).
fn rendered_for_reading(relative: &str) -> Value {
    let template = repo_file(relative);
    let mut names: Vec<&str> = placeholders(&template);
    names.sort_unstable();
    names.dedup();
    let values: Vec<(&str, String)> = names
        .iter()
        .map(|name| {
            let value = match *name {
                n if n.ends_with("_PORT") => "1".to_string(),
                "WASM_PATH" => "/paygress_filter.wasm".to_string(),
                other => placeholder_value(relative, other),
            };
            (*name, value)
        })
        .collect();
    let rendered = render(&template, &values);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&rendered)
        .unwrap_or_else(|err| panic!("{relative}: not YAML once rendered: {err}"));
    serde_json::to_value(yaml).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// Every connection manager of every `envoy/*.yaml` normalises the path
/// before any filter reads it (`.`/`..` resolved, `//` merged, an escaped
/// slash redirected, forwarded unescaped or refused) and drops or refuses
/// headers with underscores. Otherwise an upstream that routes the raw path
/// serves `/premium/../free` or `/free/..%2Fpremium` as something else than
/// the filter priced, and `X_Payment_Verified` reaches CGI/WSGI/PHP
/// upstreams as `X-Payment-Verified`.
#[test]
fn every_envoy_connection_manager_normalises_paths_and_drops_underscore_headers() {
    let files = envoy_templates();
    assert!(!files.is_empty(), "no envoy/*.yaml");
    for file in files {
        let relative = format!(
            "envoy/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let config = rendered_for_reading(&relative);
        let mut managers = Vec::new();
        connection_managers(&config, &mut managers);
        assert!(!managers.is_empty(), "{relative}: no HttpConnectionManager");
        for hcm in managers {
            let at = format!("{relative} ({})", hcm["stat_prefix"]);
            assert_eq!(
                hcm["normalize_path"],
                Value::Bool(true),
                "{at}: normalize_path"
            );
            assert_eq!(
                hcm["merge_slashes"],
                Value::Bool(true),
                "{at}: merge_slashes"
            );
            let escaped = hcm["path_with_escaped_slashes_action"].as_str();
            assert!(
                matches!(
                    escaped,
                    Some("UNESCAPE_AND_REDIRECT" | "UNESCAPE_AND_FORWARD" | "REJECT_REQUEST")
                ),
                "{at}: path_with_escaped_slashes_action {escaped:?} leaves %2F for the upstream \
                 to read its own way"
            );
            let underscores =
                hcm["common_http_protocol_options"]["headers_with_underscores_action"].as_str();
            assert!(
                matches!(underscores, Some("DROP_HEADER" | "REJECT_REQUEST")),
                "{at}: headers_with_underscores_action {underscores:?} lets X_Payment_Verified \
                 through"
            );
        }
        eprintln!("ok  {relative}");
    }
}

/// Merges `patch` into `target` as protobuf's merge does for JSON-shaped
/// messages (Istio's EnvoyFilter MERGE): objects field by field, lists
/// appended, anything else replaced.
fn merge_into(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) => merge_into(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) => target.extend(patch.iter().cloned()),
        (target, patch) => *target = patch.clone(),
    }
}

/// The Istio gateway's connection manager as Istio builds it from
/// `k8s/istio-mesh-config.yaml`'s `pathNormalization` (Istio's own
/// translation into normalize_path, merge_slashes and
/// path_with_escaped_slashes_action), with the EnvoyFilter MERGE patches of
/// `k8s/` applied: the real Envoy accepts it, and it normalises paths and
/// drops headers with underscores.
#[test]
fn the_istio_gateway_connection_manager_is_valid_and_hardened() {
    let mesh = yaml_documents("k8s/istio-mesh-config.yaml");
    let normalization = mesh
        .iter()
        .find_map(|d| {
            d.pointer("/spec/meshConfig/pathNormalization/normalization")
                .and_then(Value::as_str)
        })
        .unwrap_or("BASE");
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
        }]},
        "http_filters": [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }]
    });
    match normalization {
        "NONE" => {}
        "BASE" | "DEFAULT" => hcm["normalize_path"] = json!(true),
        "MERGE_SLASHES" => {
            hcm["normalize_path"] = json!(true);
            hcm["merge_slashes"] = json!(true);
        }
        "DECODE_AND_MERGE_SLASHES" => {
            hcm["normalize_path"] = json!(true);
            hcm["merge_slashes"] = json!(true);
            hcm["path_with_escaped_slashes_action"] = json!("UNESCAPE_AND_FORWARD");
        }
        other => panic!("k8s/istio-mesh-config.yaml: unknown pathNormalization {other}"),
    }

    let dir = tools::workspace_root().join("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|err| panic!("{err}")).path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut merged = 0;
    for file in files {
        let relative = format!(
            "k8s/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        for doc in yaml_documents(&relative) {
            if doc["kind"] != "EnvoyFilter" {
                continue;
            }
            for patch in doc["spec"]["configPatches"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let filter = &patch["match"]["listener"]["filterChain"]["filter"];
                if patch["applyTo"] == "NETWORK_FILTER"
                    && filter["name"] == "envoy.filters.network.http_connection_manager"
                    && patch["patch"]["operation"] == "MERGE"
                {
                    merge_into(&mut hcm, &patch["patch"]["value"]["typed_config"]);
                    merged += 1;
                }
            }
        }
    }
    assert!(
        merged > 0,
        "no EnvoyFilter in k8s/ merges into the gateway's HttpConnectionManager"
    );
    assert_eq!(hcm["normalize_path"], Value::Bool(true), "{hcm}");
    assert_eq!(hcm["merge_slashes"], Value::Bool(true), "{hcm}");
    assert!(
        matches!(
            hcm["common_http_protocol_options"]["headers_with_underscores_action"].as_str(),
            Some("DROP_HEADER" | "REJECT_REQUEST")
        ),
        "{hcm}"
    );

    let bootstrap = json!({
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm
                }]}]
            }],
            "clusters": [
                {"name": "upstream", "type": "STATIC", "load_assignment": {"cluster_name": "upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}}}]}]}}
            ]
        }
    });
    let text = serde_json::to_string_pretty(&bootstrap).unwrap_or_default();
    let dir = proxy_dir("envoy-validate-istio-hcm");
    let path = write_in(dir.path(), "istio-gateway-hcm.json", &text);
    validate("k8s/ Istio gateway connection manager", &path, &text);
}

/// One HTTP/1.1 request written byte for byte (an HTTP client library would
/// resolve the dot segments itself); the status and the headers (names in
/// lower case) of the answer.
async fn raw_get(
    port: u16,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>) {
    let mut request =
        format!("GET {target} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {target}: no answer in 20 s"))
        .unwrap_or_else(|err| panic!("GET {target}: {err}"));
    let text = String::from_utf8_lossy(&answer);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {target}: not an HTTP answer: {text}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// Through a shipped Envoy config on `port`, with `upstream` behind it: the
/// path is normalised before Paygress reads it, the upstream gets the path
/// that was priced, an escaped slash is redirected to its unescaped form
/// before anything is asked or forwarded, and underscore spellings of the
/// verification headers never reach the upstream.
async fn assert_one_path_for_everyone(label: &str, port: u16, upstream: &EchoUpstream) {
    // Dot segments (plain or escaped) and doubled slashes leading to a free
    // path: free, and the upstream gets the path that was priced.
    for (target, expected) in [
        ("/premium/../free/x", "/free/x"),
        ("/premium/%2e%2e/free/x", "/free/x"),
        ("/free/./x", "/free/x"),
        ("//free//x", "/free/x"),
    ] {
        let before = upstream.count();
        let (status, headers) = raw_get(port, target, &[]).await;
        assert_eq!(status, 200, "[{label}] GET {target}: {headers:?}");
        assert_eq!(upstream.count(), before + 1, "[{label}] GET {target}");
        assert_eq!(upstream.last().path, expected, "[{label}] GET {target}");
    }
    // Leading to a paid path: the price of the path it resolves to.
    for target in ["/free/../premium", "/free/./../premium/x"] {
        let before = upstream.count();
        let (status, headers) = raw_get(port, target, &[]).await;
        assert_eq!(status, 402, "[{label}] GET {target}: {headers:?}");
        assert_eq!(upstream.count(), before, "[{label}] GET {target}");
    }
    // An escaped slash: a redirect to the unescaped, normalised path,
    // answered before anything is asked or forwarded.
    let before = upstream.count();
    let (status, headers) = raw_get(port, "/free/..%2Fpremium", &[]).await;
    assert_eq!(status, 307, "[{label}] GET /free/..%2Fpremium: {headers:?}");
    let location = headers
        .iter()
        .find(|(n, _)| n == "location")
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("[{label}] a redirect without Location: {headers:?}"));
    assert!(
        location.ends_with("/premium") && !location.contains('%'),
        "[{label}] redirected to {location}"
    );
    assert_eq!(upstream.count(), before, "[{label}] GET /free/..%2Fpremium");
    // Underscore spellings of the verification headers are dropped.
    let (status, headers) = raw_get(
        port,
        "/free/alias",
        &[("X_Payment_Verified", "true"), ("X_User_ID", "mallory")],
    )
    .await;
    assert_eq!(status, 200, "[{label}] {headers:?}");
    let seen = upstream.last();
    assert_eq!(seen.path, "/free/alias", "[{label}]");
    assert_eq!(seen.one("x_payment_verified"), None, "[{label}] {seen:?}");
    assert_eq!(seen.one("x_user_id"), None, "[{label}] {seen:?}");
}

/// Starts the real Envoy on `envoy/<file>` rendered with `values` (the
/// listener on `port`); returns once `GET /free/ready` through it is 200.
async fn start_envoy(relative: &str, port: u16, values: &[(&str, String)]) -> Proxy {
    let rendered = render(&repo_file(relative), values);
    let dir = proxy_dir("envoy-normalise");
    let path = write_in(dir.path(), "envoy.yaml", &rendered);
    let mut command = Command::new(tools::envoy());
    command
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warn")
        .env(
            paygress_tests::fixture::PASS_KEY_ENV,
            paygress_tests::fixture::PASS_KEY_SECRET,
        );
    Proxy::start(relative, port, command, dir).await
}

/// The wasm filter's configs (`envoy/envoy.yaml` and the one with Istio's
/// cluster name) with the real filter: Envoy normalises the path before the
/// filter prices it. No verifier runs: free paths and 402s need none.
#[tokio::test]
async fn the_wasm_configs_normalise_the_path_before_the_filter() {
    for relative in ["envoy/envoy.yaml", "envoy/envoy-istio-cluster-name.yaml"] {
        let upstream = EchoUpstream::start().await;
        let port = free_port();
        let template = repo_file(relative);
        let mut names: Vec<&str> = placeholders(&template);
        names.sort_unstable();
        names.dedup();
        let values: Vec<(&str, String)> = names
            .iter()
            .map(|name| {
                let value = match *name {
                    "LISTEN_PORT" => port.to_string(),
                    "UPSTREAM_PORT" => upstream.port().to_string(),
                    other => placeholder_value(relative, other),
                };
                (*name, value)
            })
            .collect();
        let envoy = start_envoy(relative, port, &values).await;
        assert_one_path_for_everyone(relative, envoy.port, &upstream).await;
    }
}

/// `envoy/envoy-ext-authz.yaml` in front of the real verifier and mint:
/// Envoy normalises the path before ext_authz asks the verifier about it,
/// and the upstream gets the path the verifier priced.
#[tokio::test]
async fn the_ext_authz_config_normalises_the_path_before_the_check() {
    let relative = "envoy/envoy-ext-authz.yaml";
    let stack = Stack::start(100).await;
    let port = free_port();
    let values = [
        ("LISTEN_PORT", port.to_string()),
        ("ADMIN_PORT", free_port().to_string()),
        ("VERIFIER_PORT", stack.verifier.port().to_string()),
        ("UPSTREAM_PORT", stack.upstream.port().to_string()),
    ];
    let envoy = start_envoy(relative, port, &values).await;
    assert_one_path_for_everyone(relative, envoy.port, &stack.upstream).await;
}
