//! Every end-to-end test of Paygress, in one test binary (one link step).
//! Each module starts the real programs it needs on loopback: cdk-mintd,
//! the `paygress` verifier, Envoy with the filter, NGINX, Traefik.
//!
//! * `common` — the stack (mint, verifier, echo upstream), proxies, HTTP
//!   helpers, the shared contract table and the spelling catalogue;
//! * `filter_support` — Envoy with the filter, its counters and templates;
//! * `verifier_support` — the verifier process and its command line.

mod common;
mod filter_support;
mod verifier_support;

mod envoy_configs;
mod filter_envoy;
mod harness;
mod ingress_ext_authz;
mod ingress_nginx;
mod ingress_traefik;
mod manifests;
mod verifier_auth;
mod verifier_mint_outage;
mod verifier_wallet;
mod wasm_oci;
