//! Every end-to-end test of Paygress, in one test binary (one link step).
//! Each module starts the real programs it needs on loopback: cdk-mintd,
//! the `paygress` verifier, Envoy with the filter, NGINX, Traefik.
//! The support they share is the `paygress_tests` library (`tests/src`):
//! the stack, the proxies, the contract table and the spelling catalogue
//! (`contract`), Envoy with the filter (`envoy`), the verifier (`verifier`).

mod browser_chromium;
mod browser_page;
mod envoy_configs;
mod error_pages;
mod filter_envoy;
mod harness;
mod ingress_ext_authz;
mod ingress_nginx;
mod ingress_traefik;
mod kube_api;
mod leader;
mod manifests;
mod monitoring;
mod pods;
mod postgres_harness;
mod rate_limits;
mod replicas;
mod verifier_auth;
mod verifier_mint_outage;
mod verifier_wallet;
mod wasm_oci;
