//! End-to-end test support for Paygress.
//!
//! Every end-to-end test starts the real programs on loopback ports it picks
//! and stops them at the end; nothing is mocked that can run here:
//!
//! - [`tools`] finds the real components (cdk-mintd, envoy, traefik, nginx,
//!   the workspace's `paygress` binary) and panics with the install command
//!   when one is missing;
//! - [`ports`] picks free loopback ports;
//! - [`process`] runs a child process with its output in a log file, stops it
//!   (with its process group) on drop, and puts the log's tail into the panic
//!   when it does not come up;
//! - [`mint`] runs cdk-mintd with its fake Lightning backend
//!   ([`mint::TestMint`]);
//! - [`wallet`] is a cdk wallet that pays ([`wallet::TestWallet`]);
//! - [`delay_proxy`] holds back a server's answers (a slow mint, made from a
//!   real one: [`delay_proxy::DelayProxy`]);
//! - [`counting_proxy`] counts (and may hold) the requests a server gets;
//! - [`render`] renders the committed config templates, as
//!   `scripts/render.py` does;
//! - [`verifier`] runs the real `paygress` verifier and its commands;
//! - [`http`] asks a server and reads its [`http::Answer`];
//! - [`fixture`] is the one tier table and set of prices every test uses;
//! - [`contract`] is the stack (mint, payer, verifier, echo upstream), the
//!   proxies, the contract table every ingress runs and the catalogue of
//!   path and host spellings;
//! - [`envoy`] runs Envoy with the filter and reads its counters;
//! - [`postgres`] runs a real PostgreSQL server ([`postgres::Postgres`]);
//! - [`chromium`] drives a real headless Chromium over the DevTools protocol.

pub mod chromium;
pub mod cluster;
pub mod contract;
pub mod counting_proxy;
pub mod dashboard;
pub mod delay_proxy;
pub mod envoy;
pub mod fixture;
pub mod http;
pub mod kube_api;
pub mod mint;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod prometheus;
mod proxy;
pub mod render;
pub mod tools;
pub mod verifier;
pub mod wallet;

pub use delay_proxy::DelayProxy;
pub use mint::{MintOptions, TestMint};
pub use ports::{free_port, loopback_url};
pub use process::{wait_http_ok, ChildProcess};
pub use wallet::TestWallet;
