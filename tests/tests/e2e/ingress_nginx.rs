//! NGINX (`auth_request`) in front of the real verifier and a real mint.
//!
//! Two NGINX configurations run side by side against one stack:
//! - `nginx/paygress.conf.template`, the plain config for local runs;
//! - the location that ingress-nginx generates for the protected Ingress of
//!   `k8s/nginx-ingress-paygress.yaml` (its auth location and auth-response
//!   headers as ingress-nginx's template writes them), with that Ingress's
//!   snippet annotations pasted in as ingress-nginx pastes them, so the
//!   committed annotations are run by a real NGINX.
//!
//! Both must pass the same table as every ingress (see `common`), plus the
//! seed's per-location price (`X-Required-Amount` raises, never lowers), and
//! the catalogue of spellings (`common::spellings`): no spelling of a paid
//! path reaches the upstream unpaid or costs less than its dearest reading.

use std::process::Command;

use paygress_tests::contract::leases::{lease_journey, LeaseExpect};
use paygress_tests::contract::spellings::check_catalogue;
use paygress_tests::contract::{
    check_table, mint_down, payment_required, proxy_dir, render, repo_file, verifier_down,
    write_in, Expect, Proxy, Stack,
};
use paygress_tests::{free_port, tools};
use serde_yaml::Value as Yaml;

/// Starts NGINX on `conf` (a complete nginx.conf) from a fresh prefix dir.
pub(crate) async fn start_nginx(name: &str, port: u16, conf: &str) -> Proxy {
    let dir = proxy_dir(name);
    write_in(dir.path(), "nginx.conf", conf);
    // `nginx -t` first: a broken config fails here with NGINX's own message.
    let test = Command::new(tools::nginx())
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg("nginx.conf")
        .arg("-e")
        .arg("stderr")
        .output()
        .unwrap_or_else(|err| panic!("{name}: cannot run nginx -t: {err}"));
    assert!(
        test.status.success(),
        "{name}: nginx -t refused the config:\n{}\n--- config ---\n{conf}",
        String::from_utf8_lossy(&test.stderr)
    );
    let mut command = Command::new(tools::nginx());
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg("nginx.conf")
        .arg("-e")
        .arg("stderr");
    Proxy::start(name, port, command, dir).await
}

/// `nginx/paygress.conf.template`, rendered.
fn plain_config(port: u16, stack: &Stack) -> String {
    render(
        &repo_file("nginx/paygress.conf.template"),
        &[
            ("LISTEN_PORT", port.to_string()),
            ("VERIFIER_ADDR", stack.verifier.addr()),
            ("UPSTREAM_ADDR", stack.upstream.addr()),
        ],
    )
}

/// The documents of `k8s/nginx-ingress-paygress.yaml`.
fn manifest_documents() -> Vec<Yaml> {
    let text = repo_file("k8s/nginx-ingress-paygress.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|err| panic!("k8s/nginx-ingress-paygress.yaml: {err}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("k8s/nginx-ingress-paygress.yaml has no {kind} {name}"))
}

fn annotation<'a>(ingress: &'a Yaml, key: &str) -> &'a str {
    ingress["metadata"]["annotations"][format!("nginx.ingress.kubernetes.io/{key}").as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("Ingress has no {key} annotation"))
}

/// The NGINX config that ingress-nginx (v1.x, `auth_request` path: no
/// `auth-keepalive`) generates for the Ingresses of
/// `k8s/nginx-ingress-paygress.yaml`, pointed at the test's verifier and
/// upstream. The directives around the snippets follow the controller's
/// `nginx.tmpl`; only what matters to the auth flow is kept.
pub(crate) fn ingress_nginx_config(port: u16, stack: &Stack) -> String {
    let docs = manifest_documents();
    let paid = find(&docs, "Ingress", "my-app-paid");

    let auth_url = annotation(paid, "auth-url");
    let auth_path = auth_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or_else(|| panic!("auth-url {auth_url} has no path"));
    assert_eq!(auth_path, "/auth", "auth-url must call /auth");
    let auth_method = annotation(paid, "auth-method");
    let response_headers: Vec<&str> = annotation(paid, "auth-response-headers")
        .split(',')
        .map(str::trim)
        .collect();
    let (cm_namespace, cm_name) = annotation(paid, "auth-proxy-set-headers")
        .split_once('/')
        .unwrap_or_else(|| panic!("auth-proxy-set-headers is not namespace/name"));
    let config_map = find(&docs, "ConfigMap", cm_name);
    assert_eq!(
        config_map["metadata"]["namespace"].as_str(),
        Some(cm_namespace),
        "the auth-proxy-set-headers ConfigMap is in another namespace"
    );
    assert_eq!(
        paid["metadata"]["namespace"].as_str(),
        Some(cm_namespace),
        "ingress-nginx refuses an auth-proxy-set-headers ConfigMap from another namespace"
    );
    let mut auth_headers = String::new();
    for (key, value) in config_map["data"]
        .as_mapping()
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no data"))
    {
        let (key, value) = (key.as_str().unwrap_or(""), value.as_str().unwrap_or(""));
        auth_headers.push_str(&format!(
            "            proxy_set_header '{key}' '{value}';\n"
        ));
    }
    let mut grant = String::new();
    for (i, header) in response_headers.iter().enumerate() {
        let var = header.to_ascii_lowercase().replace('-', "_");
        grant.push_str(&format!(
            "            auth_request_set $authHeader{i} $upstream_http_{var};\n            proxy_set_header '{header}' $authHeader{i};\n"
        ));
    }
    let paid_snippet = annotation(paid, "configuration-snippet");
    let server_snippet = annotation(paid, "server-snippet");
    let verifier = stack.verifier.addr();
    let upstream = stack.upstream.addr();

    format!(
        r#"
worker_processes 1;
daemon off;
pid nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log /dev/stdout;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    server {{
        listen 127.0.0.1:{port};
        server_name app.example.com _;

        # --- server-snippet of my-app-paid ---
{server_snippet}
        # --- end of server-snippet ---

        location = /_external-auth-Lw-Prefix {{
            internal;
            access_log off;
            proxy_intercept_errors      off;
            proxy_pass_request_body     off;
            proxy_set_header            Content-Length          "";
            proxy_set_header            X-Forwarded-Proto       "";
            proxy_set_header            X-Request-ID            $request_id;
            proxy_method                {auth_method};
            proxy_set_header            X-Original-URI          $request_uri;
            proxy_set_header            X-Scheme                $scheme;
            proxy_set_header            Host                    paygress-auth.paygress-system.svc.cluster.local;
            proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
            proxy_set_header            X-Original-Method       $request_method;
            proxy_set_header            X-Sent-From             "nginx-ingress-controller";
            proxy_set_header            X-Real-IP               $remote_addr;
            proxy_set_header            X-Forwarded-For         $remote_addr;
            proxy_set_header            X-Auth-Request-Redirect $request_uri;
            proxy_pass_request_headers  on;
{auth_headers}
            proxy_http_version 1.1;
            set $target "http://{verifier}{auth_path}";
            proxy_pass $target;
        }}

        location / {{
            set $best_http_host $http_host;
            # this location requires authentication
            auth_request        /_external-auth-Lw-Prefix;
            auth_request_set    $auth_cookie $upstream_http_set_cookie;
            add_header          Set-Cookie $auth_cookie;
{grant}
            proxy_set_header Host $best_http_host;
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            # --- configuration-snippet of my-app-paid ---
{paid_snippet}
            # --- end ---
            proxy_http_version 1.1;
            proxy_pass http://{upstream};
        }}
    }}
}}
"#
    )
}

#[tokio::test]
async fn nginx_and_ingress_nginx_carry_the_verifiers_answers() {
    let mut stack = Stack::start(20_000).await;

    let plain_port = free_port();
    let plain = start_nginx("nginx", plain_port, &plain_config(plain_port, &stack)).await;
    let ingress_port = free_port();
    let ingress = start_nginx(
        "ingress-nginx",
        ingress_port,
        &ingress_nginx_config(ingress_port, &stack),
    )
    .await;

    // NGINX can name headers but not match a prefix: only the five headers
    // Paygress sets are removed. The verifier unreachable: 503 JSON.
    let expect = Expect {
        strips_payment_prefix: false,
        verifier_down_status: 503,
        verifier_down_json: true,
        mint_down_json: true,
    };

    check_table("nginx", &plain.url(), &stack, &expect).await;
    lease_journey(
        "nginx",
        &plain.url(),
        &stack,
        &LeaseExpect { pass_header: true },
    )
    .await;
    // The seed's per-location price: /reports/ asks X-Required-Amount 2000,
    // which raises the default; under /reports/annual the verifier's own
    // price (higher) stands.
    payment_required(
        "nginx",
        &format!("{}/reports/daily", plain.url()),
        &stack,
        2000,
        None,
    )
    .await;
    payment_required(
        "nginx",
        &format!("{}/reports/annual", plain.url()),
        &stack,
        paygress_tests::fixture::REPORTS_ANNUAL,
        Some("reports-annual"),
    )
    .await;

    check_table("ingress-nginx", &ingress.url(), &stack, &expect).await;
    lease_journey(
        "ingress-nginx",
        &ingress.url(),
        &stack,
        &LeaseExpect { pass_header: true },
    )
    .await;

    mint_down("nginx", &plain.url(), &mut stack, &expect).await;
    mint_down("ingress-nginx", &ingress.url(), &mut stack, &expect).await;

    stack.verifier.stop();
    verifier_down("nginx", &plain.url(), &stack, &expect).await;
    verifier_down("ingress-nginx", &ingress.url(), &stack, &expect).await;
}

/// Every spelling of the catalogue, sent byte for byte without a token
/// through `nginx/paygress.conf.template`: every location asks the
/// verifier, with `X-Original-URL: $scheme://$http_host$request_uri`.
#[tokio::test]
async fn nginx_prices_every_spelling_at_its_highest_reading() {
    let stack = Stack::start(10).await;
    let port = free_port();
    let nginx = start_nginx("nginx", port, &plain_config(port, &stack)).await;
    check_catalogue("nginx", &nginx.addr(), &stack, Stack::PRICES).await;
}

/// The same catalogue through the ingress-nginx rendering of
/// `k8s/nginx-ingress-paygress.yaml`. Every path asks the verifier, the free
/// ones too: an Ingress without auth for `/free` failed this test (NGINX
/// picks the location by the normalised path but passes the target upstream
/// as the client sent it, so `/premium/../free/x` went through unpaid).
#[tokio::test]
async fn ingress_nginx_prices_every_spelling_at_its_highest_reading() {
    let stack = Stack::start(10).await;
    let port = free_port();
    let ingress = start_nginx("ingress-nginx", port, &ingress_nginx_config(port, &stack)).await;
    check_catalogue("ingress-nginx", &ingress.addr(), &stack, Stack::PRICES).await;
}
