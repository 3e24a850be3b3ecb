//! Traefik 3 (`forwardAuth`, file provider) in front of the real verifier
//! and a real mint, with the committed `traefik/traefik.yml.template` and
//! `traefik/dynamic.yml.template`.

use std::process::Command;

use paygress_tests::contract::leases::{lease_journey, LeaseExpect};
use paygress_tests::contract::spellings::check_catalogue;
use paygress_tests::contract::{
    check_table, mint_down, proxy_dir, render, repo_file, verifier_down, write_in, Expect, Proxy,
    Stack,
};
use paygress_tests::{free_port, tools};

/// Renders the committed templates for `stack` and starts Traefik.
async fn start_traefik(stack: &Stack) -> Proxy {
    let port = free_port();
    let dir = proxy_dir("traefik");
    let dynamic = render(
        &repo_file("traefik/dynamic.yml.template"),
        &[
            ("VERIFIER_ADDR", stack.verifier.addr()),
            ("UPSTREAM_URL", stack.upstream.url()),
        ],
    );
    let dynamic_path = write_in(dir.path(), "dynamic.yml", &dynamic);
    let static_config = render(
        &repo_file("traefik/traefik.yml.template"),
        &[
            ("LISTEN_PORT", port.to_string()),
            ("DYNAMIC_FILE", dynamic_path.display().to_string()),
        ],
    );
    let static_path = write_in(dir.path(), "traefik.yml", &static_config);
    let mut command = Command::new(tools::traefik());
    command
        .arg(format!("--configFile={}", static_path.display()))
        .current_dir(dir.path());
    Proxy::start("traefik", port, command, dir).await
}

#[tokio::test]
async fn traefik_forward_auth_carries_the_verifiers_answers() {
    let mut stack = Stack::start(20_000).await;
    let traefik = start_traefik(&stack).await;

    // forwardAuth copies every non-2xx answer of the verifier to the client;
    // authResponseHeadersRegex removes every client X-Payment-*. The verifier
    // unreachable: Traefik's own bare 500.
    let expect = Expect {
        strips_payment_prefix: true,
        verifier_down_status: 500,
        verifier_down_json: false,
        mint_down_json: true,
    };
    check_table("traefik", &traefik.url(), &stack, &expect).await;
    lease_journey(
        "traefik",
        &traefik.url(),
        &stack,
        &LeaseExpect { pass_header: false },
    )
    .await;

    mint_down("traefik", &traefik.url(), &mut stack, &expect).await;

    stack.verifier.stop();
    verifier_down("traefik", &traefik.url(), &stack, &expect).await;
}

/// Every spelling of the catalogue (`common::spellings`), sent byte for byte
/// without a token: forwardAuth hands the verifier `X-Forwarded-Uri` (the
/// request URI as Traefik forwards it) and `X-Forwarded-Host`.
#[tokio::test]
async fn traefik_prices_every_spelling_at_its_highest_reading() {
    let stack = Stack::start(10).await;
    let traefik = start_traefik(&stack).await;
    check_catalogue("traefik", &traefik.addr(), &stack, Stack::PRICES).await;
}
