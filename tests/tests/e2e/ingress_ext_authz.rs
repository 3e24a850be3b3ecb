//! Envoy with `envoy.filters.http.ext_authz` (HTTP service) in front of the
//! real verifier and a real mint, with the committed
//! `envoy/envoy-ext-authz.yaml`: the mode for an Envoy without wasm.
//!
//! Also here, as ext_authz hands the verifier the original request in the
//! path after `/auth`: the catalogue of spellings (`common::spellings`)
//! against the verifier's `/auth` directly, through each of its three
//! sources of the original request, with sources that disagree, and with
//! odd `X-Original-URL` authorities.

use std::process::Command;

use paygress_tests::contract::leases::{lease_journey, LeaseExpect};
use paygress_tests::contract::spellings::{
    check_auth_cases, check_catalogue, check_catalogue_against_the_model,
    check_catalogue_at_verifier, AUTHORITIES, DISAGREEING_SOURCES,
};
use paygress_tests::contract::{
    check_table, mint_down, own_authorization_kept, pay_with_bearer, proxy_dir, render, repo_file,
    verifier_down, write_in, Expect, Proxy, Stack,
};
use paygress_tests::{free_port, tools};

/// Renders `envoy/envoy-ext-authz.yaml` for `stack`, passes the text through
/// `edit`, and starts Envoy with it.
async fn start_envoy(stack: &Stack, edit: impl FnOnce(String) -> String) -> Proxy {
    let port = free_port();
    let dir = proxy_dir("envoy-ext-authz");
    let config = edit(render(
        &repo_file("envoy/envoy-ext-authz.yaml"),
        &[
            ("LISTEN_PORT", port.to_string()),
            ("ADMIN_PORT", free_port().to_string()),
            ("VERIFIER_PORT", stack.verifier.port().to_string()),
            ("UPSTREAM_PORT", stack.upstream.port().to_string()),
        ],
    ));
    let path = write_in(dir.path(), "envoy.yaml", &config);
    let mut command = Command::new(tools::envoy());
    command
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warn");
    Proxy::start("envoy-ext-authz", port, command, dir).await
}

#[tokio::test]
async fn envoy_ext_authz_carries_the_verifiers_answers() {
    let mut stack = Stack::start(20_000).await;
    let envoy = start_envoy(&stack, |config| config).await;

    // ext_authz relays the verifier's status, body and allowed headers; the
    // header_mutation filter removes every client X-Payment-* by prefix. The
    // verifier unreachable: status_on_error, 503 without a body.
    let expect = Expect {
        strips_payment_prefix: true,
        verifier_down_status: 503,
        verifier_down_json: false,
        mint_down_json: false,
    };
    check_table("envoy-ext-authz", &envoy.url(), &stack, &expect).await;
    lease_journey(
        "envoy-ext-authz",
        &envoy.url(),
        &stack,
        &LeaseExpect { pass_header: true },
    )
    .await;

    mint_down("envoy-ext-authz", &envoy.url(), &mut stack, &expect).await;

    stack.verifier.stop();
    verifier_down("envoy-ext-authz", &envoy.url(), &stack, &expect).await;
}

/// Istio's ext-authz cannot split routes on the `Authorization` value the way
/// the committed config does, so the verifier itself names the token and
/// pass headers in `x-envoy-auth-headers-to-remove` on a grant. With the
/// config's own removal of them taken out, neither the token nor a pass
/// reaches the upstream, and an application's own bearer token still does.
#[tokio::test]
async fn ext_authz_drops_a_cashu_authorization_on_the_verifiers_word() {
    let stack = Stack::start(5_000).await;
    let envoy = start_envoy(&stack, |config| {
        let mut config = config;
        for from in [
            "request_headers_to_remove: [x-cashu, x-paygress-pass, authorization]",
            "request_headers_to_remove: [x-cashu, x-paygress-pass]",
        ] {
            assert!(config.contains(from), "the config no longer has {from:?}");
            config = config.replace(from, "request_headers_to_remove: []");
        }
        config
    })
    .await;
    let name = "ext-authz without route removal";
    pay_with_bearer(name, &envoy.url(), &stack).await;
    own_authorization_kept(name, &envoy.url(), &stack).await;
    lease_journey(
        name,
        &envoy.url(),
        &stack,
        &LeaseExpect { pass_header: true },
    )
    .await;
}

/// Every spelling of the catalogue (`common::spellings`), sent byte for byte
/// without a token: ext_authz asks `GET /auth<path as Envoy forwards it>`.
#[tokio::test]
async fn envoy_ext_authz_prices_every_spelling_at_its_highest_reading() {
    let stack = Stack::start(10).await;
    let envoy = start_envoy(&stack, |config| config).await;
    check_catalogue("envoy-ext-authz", &envoy.addr(), &stack, Stack::PRICES).await;
}

/// The hand-written prices of the catalogue are those of the rule.
#[test]
fn the_catalogue_follows_the_rule() {
    check_catalogue_against_the_model();
}

/// The verifier's `/auth` directly, no proxy in between: every spelling
/// through the path after `/auth`, `X-Original-URL` and `X-Forwarded-Uri`.
#[tokio::test]
async fn the_verifier_prices_every_spelling_from_every_source() {
    let stack = Stack::start(10).await;
    check_catalogue_at_verifier(&stack.verifier.addr(), Stack::PRICES).await;
}

/// Sources of the original request that disagree: the higher price.
#[tokio::test]
async fn the_verifier_prices_disagreeing_sources_at_the_higher_price() {
    let stack = Stack::start(10).await;
    check_auth_cases(
        "disagreeing sources",
        &stack.verifier.addr(),
        Stack::PRICES,
        DISAGREEING_SOURCES,
    )
    .await;
}

/// `X-Original-URL: http://x?/premium-plus/r` (NGINX forwarding `Host: x?`)
/// and the other odd authorities: 400 `malformed_request`.
#[tokio::test]
async fn the_verifier_refuses_an_x_original_url_with_an_odd_authority() {
    let stack = Stack::start(10).await;
    check_auth_cases(
        "X-Original-URL authorities",
        &stack.verifier.addr(),
        Stack::PRICES,
        AUTHORITIES,
    )
    .await;
}
