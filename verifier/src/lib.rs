//! Paygress verifier: redeems Cashu tokens at the mint behind `GET /auth`,
//! for every proxy (Envoy ext_authz and the wasm filter's callout, NGINX
//! `auth_request`, Traefik `forwardAuth`), and the operator's wallet CLI.
//!
//! Prices, token decoding, the 402/400 bodies and the mapping of outcome
//! codes to statuses all come from paygress-core; this crate adds the I/O:
//!
//! * [`cli`] — the command line;
//! * [`config`] — the config file, environment overrides, verifier settings;
//! * [`seed`] — the wallet seed (data dir file, mode 0600, or `PAYGRESS_MNEMONIC`);
//! * [`wallet`] — one cdk wallet per accepted mint, keysets and fees, settlement;
//! * [`decision`] — the `/auth` request and answer as types, and the price;
//! * [`verifier`] — the verifier's state and its decision, with no HTTP;
//! * [`ingress`] — how each proxy asks (`/auth` inputs) and wants the answer
//!   (NGINX mode, Envoy's header removal);
//! * [`background`] — per-mint readiness, settlement and keyset refresh;
//! * [`redeem`] — the swap, once per token, within the request's deadline;
//! * [`ledger`] — what became of each token (swapping, credited, granted),
//!   durably (SQLite or PostgreSQL), so that a timeout or a crash loses no
//!   payment; and the leases;
//! * [`store`] — where the wallet and the ledger live: SQLite in the data dir,
//!   or PostgreSQL shared by replicas;
//! * [`postgres`] — PostgreSQL connections, TLS, advisory locks, the seed check;
//! * [`leading`] — which replica settles and reaps, and starting and
//!   stopping that work as leadership comes and goes;
//! * [`swap_gate`] — one swap at a time per mint, across replicas too;
//! * [`lease_status`] — `GET /lease`: where the lease of a pass stands;
//! * [`files`] — the data dir's permissions (0700, files 0600);
//! * [`mint`] — what the redeemer needs of a mint's wallet, as a trait;
//! * [`error`] — the one refusal type, mapped to core's codes;
//! * [`error_pages`] — `paygress error-pages`: ingress-nginx's custom-errors
//!   backend (the 402 page behind ingress-nginx);
//! * [`metrics`] — Prometheus text;
//! * [`pods`] — pods for leases on the Kubernetes API: templates,
//!   provisioning, the reaper;
//! * [`server`] — the axum routes and the graceful shutdown;
//! * [`commands`] — `wallet`, `token decode`, `lease show`, `pay`;
//! * [`ids`] — fingerprints of tokens (lock keys, payer ids, log ids).

pub mod background;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decision;
pub mod error;
pub mod error_pages;
pub mod files;
pub mod ids;
pub mod ingress;
pub mod leader;
pub mod leading;
pub mod lease_status;
pub mod ledger;
pub mod metrics;
pub mod mint;
pub mod pods;
pub mod postgres;
pub mod redeem;
pub mod seed;
pub mod server;
pub mod store;
pub mod swap_gate;
pub mod verifier;
pub mod wallet;
