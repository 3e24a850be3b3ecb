//! The 402 page behind ingress-nginx: `paygress error-pages`, the default
//! backend of ingress-nginx's custom errors (`k8s/error-pages.yaml`).
//!
//! - The backend alone, asked as ingress-nginx asks (`X-Code`, `X-Format`,
//!   `X-Original-URI`): a 402 is the verifier's own answer for that target
//!   (the same page or JSON body, the same `X-Cashu`), other codes a page or
//!   JSON of their status; it starts from a config that names its pass key
//!   with `secret_env` without that variable (it reads no secret).
//! - Through a real NGINX: the location ingress-nginx renders for the paid
//!   Ingress of `k8s/nginx-ingress-paygress.yaml` (as in `ingress_nginx`),
//!   with what `custom-http-errors: "402,403"` adds to it (the controller's
//!   `proxy_intercept_errors` and `error_page` lines, and its
//!   `@custom_upstream-default-backend_<code>` locations, with the headers
//!   ingress-nginx sends), and the two-line change of the Ingress's
//!   server-snippet that `k8s/error-pages.yaml` describes. A browser gets the
//!   page with the price of its path and its `X-Cashu`; curl gets the
//!   contract's JSON; the contract table, the lease journey and the catalogue
//!   of spellings hold as through the plain ingress-nginx rendering.
//! - `k8s/error-pages.yaml` is hardened and wired, and its pods start from
//!   the shipped ConfigMap with no Secret.

use std::process::Command;
use std::time::Duration;

use paygress_core::browser::{content_security_policy, TEXT_HTML};
use paygress_tests::contract::leases::{lease_journey, LeaseExpect};
use paygress_tests::contract::spellings::check_catalogue;
use paygress_tests::contract::{
    check_table, get, repo_file, write_in, Answer, Expect, Stack, DEFAULT_PRICE, PREMIUM,
    PREMIUM_PLUS,
};
use paygress_tests::envoy::assert_payment_required;
use paygress_tests::fixture::{COMPUTE, PASS_KEY_ENV, REPORTS_ANNUAL};
use paygress_tests::verifier::paygress_bin;
use paygress_tests::{free_port, loopback_url, ChildProcess};
use serde_json::Value;
use tempfile::TempDir;

use crate::ingress_nginx::{ingress_nginx_config, start_nginx};

/// Chrome's `Accept` on a navigation.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                       image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
/// curl's.
const CURL: &str = "*/*";

/// `paygress error-pages` on a free loopback port.
struct ErrorPages {
    port: u16,
    process: ChildProcess,
    _dir: TempDir,
}

impl ErrorPages {
    /// Writes `config` (a config file's text) and starts the backend with
    /// no pass key in its environment; returns once `/healthz` is 200.
    async fn start(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("paygress-error-pages-")
            .tempdir()
            .unwrap_or_else(|err| panic!("error pages: cannot create a temp dir: {err}"));
        let path = write_in(dir.path(), "config.json", config);
        let port = free_port();
        let mut command = Command::new(paygress_bin());
        command
            .arg("error-pages")
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // It reads no secret: the pass key's variable is not there.
            .env_remove(PASS_KEY_ENV)
            .env_remove("PAYGRESS_MNEMONIC")
            .env_remove("RUST_LOG")
            .env("PAYGRESS_LOG", "info");
        let mut process = ChildProcess::spawn("paygress-error-pages", command);
        process
            .wait_http_ok(
                &format!("{}/healthz", loopback_url(port)),
                Duration::from_secs(30),
            )
            .await;
        Self {
            port,
            process,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        loopback_url(self.port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// What ingress-nginx sends its default backend for an intercepted `code`
/// of `uri` (the path rewritten to `/`).
async fn ask(backend: &ErrorPages, code: u16, uri: &str, accept: &str) -> Answer {
    get(
        &format!("{}/", backend.url()),
        &[
            ("X-Code", &code.to_string()),
            ("X-Format", accept),
            ("Accept", accept),
            ("X-Original-URI", uri),
            ("X-Namespace", "paygress-demo"),
            ("X-Ingress-Name", "my-app-paid"),
            ("X-Service-Name", "my-app"),
            ("X-Service-Port", "http"),
            ("X-Request-ID", "0123456789abcdef"),
        ],
    )
    .await
}

/// The verifier's own 402 for `uri` (asked as NGINX asks, outside its mode).
async fn verifier_402(stack: &Stack, uri: &str, accept: &str) -> Answer {
    let answer = get(
        &stack.verifier.auth(""),
        &[
            ("X-Original-URL", &format!("http://app.example.com{uri}")),
            ("X-Original-Method", "GET"),
            ("Accept", accept),
        ],
    )
    .await;
    assert_eq!(answer.status, 402, "the verifier on {uri}: {answer:?}");
    answer
}

/// A page: `text/html`, core's CSP, `Vary: Accept`, a document.
fn assert_page(answer: &Answer, status: u16, context: &str) {
    assert_eq!(answer.status, status, "{context}: {answer:?}");
    assert_eq!(answer.header("content-type"), Some(TEXT_HTML), "{context}");
    assert_eq!(
        answer.header("content-security-policy"),
        Some(content_security_policy()),
        "{context}"
    );
    assert!(
        answer
            .headers
            .get("vary")
            .is_some_and(|v| v.iter().any(|v| v.eq_ignore_ascii_case("accept"))),
        "{context}: no Vary: Accept: {answer:?}"
    );
    assert!(
        answer.body.starts_with("<!DOCTYPE html>\n"),
        "{context}: {answer:?}"
    );
}

/// The backend alone: every 402 is the verifier's answer for that target,
/// page or JSON; other codes are pages or JSON of their status.
#[tokio::test]
async fn the_backend_answers_a_402_as_the_verifier_does() {
    let stack = Stack::start(10).await;
    let config = Stack::config(&stack.mint.url()).to_string();
    let backend = ErrorPages::start(&config).await;

    for (uri, amount, tier) in [
        ("/premium/data?id=7", PREMIUM, Some("premium")),
        ("/premium-plus/x", PREMIUM_PLUS, Some("premium-plus")),
        ("/reports/annual", REPORTS_ANNUAL, Some("reports-annual")),
        ("/compute/job", COMPUTE, Some("compute")),
        ("/anything/else", DEFAULT_PRICE, None),
        // Spellings: the highest reading, as the verifier prices them.
        (
            "/premium/../premium-plus/x",
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        (
            "/free/%2e%2e/premium-plus/x",
            PREMIUM_PLUS,
            Some("premium-plus"),
        ),
        ("/PREMIUM-PLUS/x", PREMIUM_PLUS, Some("premium-plus")),
    ] {
        for accept in [BROWSER, CURL] {
            let context = format!("{uri} with Accept {accept:.9}");
            let theirs = verifier_402(&stack, uri, accept).await;
            let ours = ask(&backend, 402, uri, accept).await;
            assert_eq!(ours.status, 402, "{context}: {ours:?}");
            assert_eq!(
                ours.header("x-cashu"),
                theirs.header("x-cashu"),
                "{context}: X-Cashu"
            );
            assert_eq!(ours.body, theirs.body, "{context}: the body");
            assert_eq!(
                ours.header("content-type"),
                theirs.header("content-type"),
                "{context}"
            );
            assert_eq!(ours.header("cache-control"), Some("no-store"), "{context}");
            if accept == BROWSER {
                assert_page(&ours, 402, &context);
                assert!(
                    ours.body
                        .contains(&format!("<strong>{amount} sat</strong>")),
                    "{context}: not the price of the path"
                );
            } else if tier == Some("compute") {
                // A lease's JSON also says what it buys (lease_seconds).
                assert_eq!(ours.json()["amount"], amount, "{context}");
            } else {
                assert_payment_required(&ours, &stack.mint.url(), amount, tier, &context);
            }
        }
    }

    // Another code: a page, or JSON; a client's Accept when X-Format is
    // missing.
    let page = ask(&backend, 403, "/premium/x", BROWSER).await;
    assert_page(&page, 403, "403, browser");
    assert!(page.body.contains("<h1>Forbidden</h1>"), "{page:?}");
    assert_eq!(page.header("x-cashu"), None);
    let json = ask(&backend, 403, "/premium/x", CURL).await;
    assert_eq!(json.status, 403);
    assert_eq!(
        json.json(),
        serde_json::json!({"error": "Forbidden", "status": 403})
    );
    let no_format = get(
        &format!("{}/", backend.url()),
        &[
            ("X-Code", "402"),
            ("X-Original-URI", "/premium/x"),
            ("Accept", BROWSER),
        ],
    )
    .await;
    assert_page(&no_format, 402, "402 without X-Format");

    // A 402 where the config charges nothing (the upstream's own 402): no
    // payment request is made up.
    let free = ask(&backend, 402, "/free/x", BROWSER).await;
    assert_page(&free, 402, "402 of a free path");
    assert_eq!(free.header("x-cashu"), None, "{free:?}");

    // Without X-Code: health, and the default backend's 404.
    let health = get(&format!("{}/healthz", backend.url()), &[]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let unknown = get(
        &format!("{}/some/host/path", backend.url()),
        &[("Accept", CURL)],
    )
    .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.json()["status"], 404);
    drop(backend);
}

// ---------------------------------------------------------------------------
// Through NGINX, as ingress-nginx renders custom-http-errors.

/// The codes of `custom-http-errors` in the test's controller ConfigMap.
const CUSTOM_HTTP_ERRORS: [u16; 2] = [402, 403];

/// Replaces `from` (exactly once) with `to`; panics, naming `what`, when the
/// config does not hold `from` once.
fn replace_once(config: &str, from: &str, to: &str, what: &str) -> String {
    assert_eq!(
        config.matches(from).count(),
        1,
        "the ingress-nginx rendering no longer holds {what}: {from:?}"
    );
    config.replacen(from, to, 1)
}

/// The change of the paid Ingress's server-snippet that
/// `k8s/error-pages.yaml` (3.) describes: `recursive_error_pages on;` and a
/// 402 without a body, so that NGINX's `error_page 402` takes it. A snippet
/// that already has it is left as it is.
fn with_snippet_change(config: &str) -> String {
    if config.contains("if ($paygress_status = 402) { return 402; }") {
        assert!(config.contains("recursive_error_pages on;"), "{config}");
        return config.to_string();
    }
    let config = replace_once(
        config,
        "if ($paygress_status = 402) { return 402 $paygress_body; }",
        "if ($paygress_status = 402) { return 402; }",
        "the server-snippet's 402",
    );
    replace_once(
        &config,
        "location @paygress_refusal {",
        "recursive_error_pages on;\nlocation @paygress_refusal {",
        "the server-snippet's @paygress_refusal",
    )
}

/// What `custom-http-errors: "402,403"` and `--default-backend-service`
/// add to ingress-nginx's config (its nginx.tmpl): at http level
/// `proxy_intercept_errors on` and one `error_page` per code; in the
/// location, the Ingress's variables; in the server, one
/// `@custom_upstream-default-backend_<code>` location per code, sending the
/// default backend (here `backend`) the request with the status, the
/// client's Accept and the target. And a location that ingress-nginx
/// denies (`return 403`, as a `whitelist-source-range` denial does).
fn with_custom_errors(config: &str, backend: &str) -> String {
    let mut http = String::from(
        "    scgi_temp_path scgi_temp;\n\n    # custom-http-errors (the controller's ConfigMap)\n    \
         proxy_intercept_errors on;\n",
    );
    for code in CUSTOM_HTTP_ERRORS {
        http.push_str(&format!(
            "    error_page {code} = @custom_upstream-default-backend_{code};\n"
        ));
    }
    http.push_str(
        "    map $http_x_request_id $req_id {\n        default $http_x_request_id;\n        \
         \"\" $request_id;\n    }\n",
    );
    let config = replace_once(
        config,
        "    scgi_temp_path scgi_temp;\n",
        &http,
        "the http block's temp paths",
    );
    let variables = "            set $namespace      \"paygress-demo\";\n            \
                     set $ingress_name   \"my-app-paid\";\n            \
                     set $service_name   \"my-app\";\n            \
                     set $service_port   \"http\";\n";
    let config = replace_once(
        &config,
        "            set $best_http_host $http_host;\n",
        &format!("            set $best_http_host $http_host;\n{variables}"),
        "the paid location",
    );
    let mut locations = String::new();
    for code in CUSTOM_HTTP_ERRORS {
        locations.push_str(&format!(
            r#"
        location @custom_upstream-default-backend_{code} {{
            internal;
            proxy_intercept_errors off;
            proxy_set_header       X-Code             {code};
            proxy_set_header       X-Format           $http_accept;
            proxy_set_header       X-Original-URI     $request_uri;
            proxy_set_header       X-Namespace        $namespace;
            proxy_set_header       X-Ingress-Name     $ingress_name;
            proxy_set_header       X-Service-Name     $service_name;
            proxy_set_header       X-Service-Port     $service_port;
            proxy_set_header       X-Request-ID       $req_id;
            proxy_set_header       Host               $best_http_host;
            set $proxy_upstream_name "upstream-default-backend";
            rewrite                (.*) / break;
            proxy_pass            http://{backend};
        }}
"#
        ));
    }
    locations.push_str(&format!(
        r#"
        location = /denied {{
            set $best_http_host $http_host;
{variables}            return 403;
        }}
"#
    ));
    replace_once(
        &config,
        "        # --- end of server-snippet ---\n",
        &format!("        # --- end of server-snippet ---\n{locations}"),
        "the end of the server-snippet",
    )
}

/// A browser's 402 through NGINX: the backend's page for the path, with
/// the verifier's `X-Cashu`.
async fn browser_402(base: &str, stack: &Stack, uri: &str, amount: u64) {
    let page = get(&format!("{base}{uri}"), &[("Accept", BROWSER)]).await;
    let context = format!("ingress-nginx + error pages, browser, {uri}");
    assert_page(&page, 402, &context);
    assert!(
        page.body
            .contains(&format!("<strong>{amount} sat</strong>")),
        "{context}: not the price of the path: {page:?}"
    );
    let theirs = verifier_402(stack, uri, CURL).await;
    let creq = page
        .header("x-cashu")
        .unwrap_or_else(|| panic!("{context}: no X-Cashu: {page:?}"));
    assert_eq!(Some(creq), theirs.header("x-cashu"), "{context}");
    assert!(
        page.body.contains(&format!(">{creq}</textarea>")),
        "{context}: the payment request is not in the page"
    );
    assert!(page.body.contains("<form id=\"pay\""), "{context}: no form");
}

#[tokio::test]
async fn ingress_nginx_sends_402_and_403_to_the_error_pages() {
    let stack = Stack::start(20_000).await;
    let backend = ErrorPages::start(&Stack::config(&stack.mint.url()).to_string()).await;
    let port = free_port();
    let config = with_custom_errors(
        &with_snippet_change(&ingress_nginx_config(port, &stack)),
        &backend.addr(),
    );
    let nginx = start_nginx("ingress-nginx-error-pages", port, &config).await;
    let base = nginx.url();

    // A browser gets the page of its path; curl the contract's JSON.
    for (uri, amount, tier) in [
        ("/premium/data?id=7", PREMIUM, Some("premium")),
        ("/premium-plus/x", PREMIUM_PLUS, Some("premium-plus")),
        ("/anything", DEFAULT_PRICE, None),
    ] {
        browser_402(&base, &stack, uri, amount).await;
        let json = get(&format!("{base}{uri}"), &[("Accept", CURL)]).await;
        assert_payment_required(
            &json,
            &stack.mint.url(),
            amount,
            tier,
            &format!("ingress-nginx + error pages, curl, {uri}"),
        );
        assert_eq!(json.body, verifier_402(&stack, uri, CURL).await.body);
    }
    // The lease tier's (its JSON: the lease_journey below).
    browser_402(&base, &stack, "/compute/job", COMPUTE).await;
    // What a client sends in ingress-nginx's header names changes nothing:
    // the controller sets them.
    let forged = get(
        &format!("{base}/premium-plus/x"),
        &[
            ("Accept", BROWSER),
            ("X-Code", "200"),
            ("X-Format", "application/json"),
            ("X-Original-URI", "/free"),
        ],
    )
    .await;
    assert_page(&forged, 402, "forged X-Code, X-Format, X-Original-URI");
    assert!(forged
        .body
        .contains(&format!("<strong>{PREMIUM_PLUS} sat</strong>")));
    let log = backend.process.log();
    assert!(
        !log.contains("ERROR"),
        "the error pages logged an error:\n{log}"
    );

    // ingress-nginx's own 403: the backend's page, or JSON.
    let denied = get(&format!("{base}/denied"), &[("Accept", BROWSER)]).await;
    assert_page(&denied, 403, "ingress-nginx 403, browser");
    assert!(denied.body.contains("<h1>Forbidden</h1>"));
    let denied = get(&format!("{base}/denied"), &[("Accept", CURL)]).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.json()["status"], 403);

    // Everything else is as through the plain rendering: the contract's
    // table (400s, payments, replays), the lease, and every spelling of a
    // path priced at its dearest reading, the backend pricing $request_uri.
    let expect = Expect {
        strips_payment_prefix: false,
        verifier_down_status: 503,
        verifier_down_json: true,
        mint_down_json: true,
    };
    check_table("ingress-nginx + error pages", &base, &stack, &expect).await;
    lease_journey(
        "ingress-nginx + error pages",
        &base,
        &stack,
        &LeaseExpect { pass_header: true },
    )
    .await;
    check_catalogue(
        "ingress-nginx + error pages",
        &nginx.addr(),
        &stack,
        Stack::PRICES,
    )
    .await;

    // The backend down: ingress-nginx has no 402 to send.
    drop(backend);
    let down = get(&format!("{base}/premium/x"), &[("Accept", BROWSER)]).await;
    assert_eq!(down.status, 502, "the error pages down: {down:?}");
}

// ---------------------------------------------------------------------------
// The manifest.

fn manifest() -> Vec<Value> {
    let text = repo_file("k8s/error-pages.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|err| panic!("k8s/error-pages.yaml: {err}"));
            serde_json::to_value(yaml).unwrap_or_else(|err| panic!("{err}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("k8s/error-pages.yaml has no {kind} {name}"))
}

/// `k8s/error-pages.yaml`: the backend's Deployment is hardened (as the
/// verifier's: not root, RuntimeDefault seccomp, read-only root, no
/// privilege, every capability dropped, bounded, probed; and no API token,
/// no Secret, nothing writable), runs `paygress error-pages` on the
/// verifier's ConfigMap, and is reached on port 80 (the default backend's)
/// from ingress-nginx only, reaching nothing. And its pods start from the
/// shipped ConfigMap with no Secret.
#[tokio::test]
async fn the_error_pages_manifest_is_hardened_and_starts_without_secrets() {
    let docs = manifest();
    let deployment = find(&docs, "Deployment", "paygress-error-pages");
    let at = "k8s/error-pages.yaml Deployment paygress-error-pages";
    assert_eq!(
        deployment["metadata"]["namespace"], "paygress-system",
        "{at}"
    );
    assert!(deployment["spec"]["replicas"].as_u64() >= Some(2), "{at}");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false, "{at}");
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true, "{at}");
    assert!(
        security["runAsUser"].as_u64().is_some_and(|u| u != 0),
        "{at}"
    );
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault", "{at}");
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(containers.len(), 1, "{at}");
    let container = &containers[0];
    let c = &container["securityContext"];
    assert_eq!(c["allowPrivilegeEscalation"], false, "{at}");
    assert_eq!(c["readOnlyRootFilesystem"], true, "{at}");
    assert_ne!(c["privileged"], true, "{at}");
    assert_eq!(
        c["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{at}"
    );
    for key in ["cpu", "memory"] {
        assert!(container["resources"]["requests"][key].is_string(), "{at}");
        assert!(container["resources"]["limits"][key].is_string(), "{at}");
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{at}");
    }
    // No Secret, no variable from one, nothing writable.
    let env = container["env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.iter()
            .all(|e| e["valueFrom"].is_null() && e["name"] != PASS_KEY_ENV),
        "{at}: the error pages read no secret: {env:?}"
    );
    assert!(container["envFrom"].is_null(), "{at}");
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        volumes,
        vec![serde_json::json!({"name": "config", "configMap": {"name": "paygress-config"}})],
        "{at}: only the verifier's config"
    );
    assert!(
        container["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["readOnly"] == true)),
        "{at}"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        args,
        [
            "error-pages",
            "--config",
            "/etc/paygress/config.json",
            "--listen",
            "0.0.0.0:8080"
        ],
        "{at}"
    );
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/paygress");
    assert_eq!(container["ports"][0]["containerPort"], 8080, "{at}");

    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service = find(&docs, "Service", "paygress-error-pages");
    assert_eq!(service["metadata"]["namespace"], "paygress-system");
    for (k, v) in service["spec"]["selector"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        assert_eq!(labels[&k], v, "the Service selects the error pages' pods");
    }
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");

    let policy = find(&docs, "NetworkPolicy", "paygress-error-pages");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert!(policy["spec"]["egress"].is_null(), "it reaches nothing");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );

    // The shipped config (k8s/nginx-ingress-paygress.yaml's ConfigMap),
    // whose pass key is named with secret_env, starts it without the
    // variable, and prices as written there.
    let verifier_docs: Vec<Value> = {
        let text = repo_file("k8s/nginx-ingress-paygress.yaml");
        serde_yaml::Deserializer::from_str(&text)
            .filter_map(|doc| {
                let yaml = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).ok()?;
                serde_json::to_value(yaml).ok()
            })
            .collect()
    };
    let config_map = find(&verifier_docs, "ConfigMap", "paygress-config");
    let shipped = config_map["data"]["config.json"]
        .as_str()
        .unwrap_or_else(|| panic!("paygress-config has no config.json"));
    let shipped_json: Value = serde_json::from_str(shipped).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shipped_json["pass_keys"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k["secret_env"].is_string())),
        "the shipped config no longer names its pass key with secret_env"
    );
    let backend = ErrorPages::start(shipped).await;
    let premium = shipped_json["tiers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "premium"))
        .and_then(|t| t["amount"].as_u64())
        .unwrap_or_else(|| panic!("the shipped config has no premium tier"));
    let page = ask(&backend, 402, "/premium/x", BROWSER).await;
    assert_page(&page, 402, "the shipped config");
    assert!(page
        .body
        .contains(&format!("<strong>{premium} sat</strong>")));
}
