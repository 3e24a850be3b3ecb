//! Every Envoy configuration in the repository passes `envoy --mode validate`
//! with the real Envoy (1.40, from the tools cache):
//! - every `envoy/*.yaml`, its `${PLACEHOLDERS}` rendered (ports, the
//!   filter's .wasm, the plugin configuration);
//! - the filters that `k8s/istio-ext-authz.yaml`'s EnvoyFilter inserts around
//!   Istio's ext_authz filter;
//! - the `pluginConfig` of `wasm-plugins/paygress-wasmplugin.yaml`, loaded by
//!   the real filter in the config whose verifier cluster is named as Istio
//!   names it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{placeholders, proxy_dir, render, repo_file, write_in};
use paygress_tests::{free_port, tools};
use serde_json::{json, Value};

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
