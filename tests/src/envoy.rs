//! Support for `filter_envoy.rs`: the real Envoy (1.40, V8) loading the
//! filter's release `.wasm` from a rendered `envoy/*.yaml` template, in front
//! of the real verifier (`paygress serve`), a real cdk-mintd and the echo
//! upstream of `common` (which records what reached it).
//!
//! Every test starts its own processes (a few seconds each): counters and
//! upstream records are then exact, with nothing shared between tests that
//! run in parallel.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::{loopback_http_client, write_file};
use crate::{free_port, loopback_url, tools, ChildProcess, MintOptions, TestMint, TestWallet};
use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, PaymentRequest};
use cdk::Amount;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::contract::spellings::Prices;
use crate::contract::{repo_file, Answer, EchoUpstream, Seen, Site, Verifier};
use paygress_filter::metrics::Counter;

pub use crate::fixture::{DEFAULT_PRICE, PREMIUM, PREMIUM_PLUS};

/// What each tier of [`Template::Plain`]'s plugin configuration costs.
pub const PLAIN_PRICES: Prices = Prices {
    default: DEFAULT_PRICE,
    premium: PREMIUM,
    premium_plus: PREMIUM_PLUS,
};

/// How long Envoy may take to answer `/ready` (V8 compiles the filter).
pub const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The filter's counters, named by the filter itself (the names Envoy's
/// `/stats/prometheus` prints).
pub const FREE: &str = Counter::Free.name();
pub const CHALLENGED: &str = Counter::Challenged.name();
pub const REJECTED: &str = Counter::Rejected.name();
pub const CALLOUTS: &str = Counter::Callouts.name();
pub const GRANTED: &str = Counter::Granted.name();
pub const VERIFIER_REFUSED: &str = Counter::VerifierRefused.name();
pub const CALLOUT_FAILURES: &str = Counter::CalloutFailures.name();
pub const PASS_ACCEPTED: &str = Counter::PassAccepted.name();
pub const PASS_EXPIRED: &str = Counter::PassExpired.name();
pub const PASS_REFUSED: &str = Counter::PassRefused.name();
pub const ALLOWED_ON_FAILURE: &str = Counter::AllowedOnFailure.name();

/// Every counter of the filter.
pub fn counters() -> impl Iterator<Item = &'static str> {
    Counter::ALL.into_iter().map(Counter::name)
}

/// Verification headers a client tries to forge (dashed, and the underscore
/// spellings that CGI/WSGI-style upstreams read as the dashed ones).
pub const SPOOFED: [(&str, &str); 8] = [
    ("X-Payment-Verified", "true"),
    ("X-Payment-Amount", "1000000"),
    ("X-Payment-Tier", "premium-plus"),
    ("X-Payment-Custom", "spoofed"),
    ("X-User-ID", "mallory"),
    ("X-Provisioned-Pod", "someone-elses-pod"),
    ("X_Payment_Verified", "true"),
    ("X_User_ID", "mallory"),
];

// ---------------------------------------------------------------------------
// What `just build` makes.

const BUILD_HINT: &str =
    "run `just build` from the repository root (`cargo build -p paygress-verifier` \
     and `cargo build -p paygress-filter --target wasm32-wasip1 --profile wasm-release`)";

/// The filter's release build, which the Envoy configs load. Panics when it
/// is missing.
pub fn wasm_path() -> PathBuf {
    let path = tools::target_dir()
        .join("wasm32-wasip1")
        .join("wasm-release")
        .join("paygress_filter.wasm");
    assert!(
        path.is_file(),
        "the filter {} is missing: {BUILD_HINT}",
        path.display()
    );
    path
}

/// Panics unless the verifier binary is built (or `PAYGRESS_BIN` names one).
pub fn require_verifier_binary() {
    if std::env::var_os("PAYGRESS_BIN").is_some_and(|v| !v.is_empty()) {
        tools::paygress_bin();
        return;
    }
    let path = tools::target_dir().join("debug").join("paygress");
    assert!(
        path.is_file(),
        "the verifier binary {} is missing: {BUILD_HINT}",
        path.display()
    );
}

pub use crate::render::render;

// ---------------------------------------------------------------------------
// Envoy.

/// The committed Envoy templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `envoy/envoy.yaml`: verifier cluster `paygress-verifier`.
    Plain,
    /// `envoy/envoy-istio-cluster-name.yaml`: the verifier cluster named as
    /// Istio names it.
    Istio,
}

/// The Istio name of the verifier's cluster in
/// `envoy/envoy-istio-cluster-name.yaml`.
pub const ISTIO_CLUSTER: &str = "outbound|8080||paygress-auth.paygress-system.svc.cluster.local";

impl Template {
    pub fn file(self) -> &'static str {
        match self {
            Template::Plain => "envoy/envoy.yaml",
            Template::Istio => "envoy/envoy-istio-cluster-name.yaml",
        }
    }

    /// The verifier's cluster in the template.
    pub fn verifier_cluster(self) -> &'static str {
        match self {
            Template::Plain => "paygress-verifier",
            Template::Istio => ISTIO_CLUSTER,
        }
    }
}

/// An Envoy process on a rendered template, and its directory.
#[derive(Debug)]
pub struct EnvoyProcess {
    pub listen_port: u16,
    pub admin_port: u16,
    pub process: ChildProcess,
    /// Holds the rendered config.
    _dir: TempDir,
}

impl EnvoyProcess {
    /// Renders `template` (the plugin configuration `plugin_config`, one line
    /// of JSON) and starts Envoy on it, without waiting for it.
    pub fn spawn(
        template: Template,
        verifier_port: u16,
        upstream_port: u16,
        plugin_config: &str,
    ) -> Self {
        assert!(
            !plugin_config.contains('\n'),
            "${{PLUGIN_CONFIG}} must be one line: {plugin_config}"
        );
        let listen_port = free_port();
        let admin_port = free_port();
        let rendered = render(
            &repo_file(template.file()),
            &[
                ("LISTEN_PORT", listen_port.to_string()),
                ("ADMIN_PORT", admin_port.to_string()),
                ("VERIFIER_PORT", verifier_port.to_string()),
                ("UPSTREAM_PORT", upstream_port.to_string()),
                ("WASM_PATH", wasm_path().display().to_string()),
                ("PLUGIN_CONFIG", plugin_config.to_string()),
            ],
        );
        let dir = tempfile::Builder::new()
            .prefix("paygress-filter-envoy-")
            .tempdir()
            .unwrap_or_else(|err| panic!("envoy: cannot create a temp dir: {err}"));
        let config_path = dir.path().join("envoy.yaml");
        write_file(&config_path, &rendered);
        let mut command = Command::new(tools::envoy());
        command
            .arg("-c")
            .arg(&config_path)
            // Several Envoys at once would otherwise share a hot-restart
            // base id and stop each other.
            .arg("--disable-hot-restart")
            .arg("--concurrency")
            .arg("1")
            .arg("--log-level")
            .arg("warn")
            .arg("--component-log-level")
            .arg("wasm:info")
            // The filter reads the signing pass key from the VM's
            // environment (vm_config.environment_variables.host_env_keys).
            .env(
                crate::fixture::PASS_KEY_ENV,
                crate::fixture::PASS_KEY_SECRET,
            );
        let process = ChildProcess::spawn("envoy-wasm", command);
        Self {
            listen_port,
            admin_port,
            process,
            _dir: dir,
        }
    }

    /// `/ready` of the admin interface.
    pub fn ready_url(&self) -> String {
        format!("{}/ready", loopback_url(self.admin_port))
    }

    /// Waits until Envoy exits, and returns its status; panics when it
    /// becomes ready instead, or runs on past `timeout`.
    pub async fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        let client = loopback_http_client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_exit_status() {
                return status;
            }
            let ready = client
                .get(self.ready_url())
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                self.process
                    .fail("Envoy started (admin /ready is 200) where it had to refuse the config");
            }
            if Instant::now() >= deadline {
                self.process
                    .fail(&format!("still running after {timeout:?}; it had to exit"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A running Envoy with the filter.
#[derive(Debug)]
pub struct Envoy {
    inner: EnvoyProcess,
}

impl Envoy {
    /// Starts Envoy on `template` and waits until admin `/ready` is 200.
    pub async fn start(
        template: Template,
        verifier_port: u16,
        upstream_port: u16,
        plugin_config: &Value,
    ) -> Self {
        let mut inner = EnvoyProcess::spawn(
            template,
            verifier_port,
            upstream_port,
            &plugin_config.to_string(),
        );
        let ready = inner.ready_url();
        inner
            .process
            .wait_http_ok(&ready, ENVOY_READY_TIMEOUT)
            .await;
        Self { inner }
    }

    /// `http://127.0.0.1:<listen port>`
    pub fn url(&self) -> String {
        loopback_url(self.inner.listen_port)
    }

    async fn admin_get(&self, path: &str) -> String {
        self.admin(reqwest::Method::GET, path).await
    }

    /// An admin request that must succeed; its body.
    async fn admin(&self, method: reqwest::Method, path: &str) -> String {
        let url = format!("{}{path}", loopback_url(self.inner.admin_port));
        let response = loopback_http_client()
            .request(method, &url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("envoy admin {url}: {err}"));
        assert!(
            response.status().is_success(),
            "envoy admin {url}: {}",
            response.status()
        );
        response
            .text()
            .await
            .unwrap_or_else(|err| panic!("envoy admin {url}: {err}"))
    }

    /// Sets a runtime key through the admin interface (`POST
    /// /runtime_modify?key=value`), e.g. `paygress_rate_limit.enforced` to
    /// `0` so that a load is not cut off by the shipped rate limits.
    pub async fn runtime_modify(&self, key: &str, value: &str) {
        self.admin(
            reqwest::Method::POST,
            &format!("/runtime_modify?{key}={value}"),
        )
        .await;
    }

    /// The filter's counters, from `/stats/prometheus`; panics when one of
    /// [`counters`] is not there.
    pub async fn counters(&self) -> Counters {
        let text = self.admin_get("/stats/prometheus").await;
        let mut values = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            if !name.starts_with("paygress_") {
                continue;
            }
            let value = line
                .split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("/stats/prometheus: cannot read {line:?}"));
            // Counters are whole numbers, printed as such.
            values.insert(name.to_string(), value as u64);
        }
        for name in counters() {
            assert!(
                values.contains_key(name),
                "Envoy's /stats/prometheus has no {name}; it has {values:?}"
            );
        }
        Counters(values)
    }

    /// An Envoy stat by its full name (admin `/stats`, text), 0 when absent.
    pub async fn stat(&self, name: &str) -> u64 {
        let text = self.admin_get("/stats").await;
        let prefix = format!("{name}: ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|err| panic!("stat {name} = {v:?}: {err}"))
            })
            .unwrap_or(0)
    }
}

/// The filter's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no counter {name} in {self:?}"))
    }
}

/// Asserts that between `before` and `after` each counter of `moved` grew by
/// exactly its number, and every other counter of the filter did not move.
pub fn assert_counters(before: &Counters, after: &Counters, moved: &[(&str, u64)], context: &str) {
    let mut expected = BTreeMap::new();
    let mut actual = BTreeMap::new();
    for name in counters() {
        let want = moved
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, by)| *by);
        expected.insert(name, want);
        actual.insert(name, after.get(name).wrapping_sub(before.get(name)));
    }
    assert_eq!(
        actual, expected,
        "{context}: the filter's counters moved by {actual:?}, expected {expected:?}"
    );
}

// ---------------------------------------------------------------------------
// The plugin configuration.

/// The plugin configuration of a template (JSON, docs/contract.md), for
/// one accepted mint. The verifier gets the same document.
///
/// `envoy/envoy.yaml`: the one fixture (`crate::fixture`: three
/// different prices for `/premium`, `/premium-plus` and the rest, and the
/// shorter prefix listed first, so that a wrong tier choice shows).
/// `envoy/envoy-istio-cluster-name.yaml`: the committed
/// `envoy/plugin-config-istio.json` with the test's mint.
pub fn plugin_config(template: Template, mint_url: &str, failure_mode: &str) -> Value {
    match template {
        Template::Plain => {
            let mut config = crate::fixture::config(mint_url);
            config["verifier"] = json!({
                "cluster": Template::Plain.verifier_cluster(),
                "authority": "paygress-verifier",
                "timeout_ms": 5000
            });
            config["failure_mode"] = json!(failure_mode);
            config
        }
        Template::Istio => {
            let text = repo_file("envoy/plugin-config-istio.json");
            let mut config: Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("envoy/plugin-config-istio.json: {err}"));
            assert_eq!(
                config["verifier"]["cluster"], ISTIO_CLUSTER,
                "envoy/plugin-config-istio.json must name the Istio cluster"
            );
            config["mints"] = json!([mint_url]);
            config["failure_mode"] = json!(failure_mode);
            config
        }
    }
}

// ---------------------------------------------------------------------------
// A whole stack.

/// What a test runs.
#[derive(Debug, Clone)]
pub struct Setup {
    pub template: Template,
    pub failure_mode: &'static str,
    /// Whether the verifier runs (otherwise the verifier cluster points at a
    /// closed port).
    pub verifier: bool,
    /// Whether a mint runs, with a funded payer wallet (otherwise the config
    /// names a mint URL where nothing listens).
    pub mint: bool,
    /// The payer wallet's funds, in sat.
    pub funds: u64,
    /// Where the verifier cluster points when the verifier does not run: a
    /// [`FaultyVerifier`]'s port, or (`None`) a closed port.
    pub stand_in: Option<u16>,
    /// The callout timeout (`verifier.timeout_ms`).
    pub timeout_ms: u64,
    /// More accepted mints, each running with a payer wallet holding
    /// `funds` (with `mint`).
    pub extra_mints: usize,
    /// More tiers for the config (after the fixture's).
    pub extra_tiers: Vec<Value>,
    /// More environment for the verifier.
    pub verifier_env: Vec<(String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            template: Template::Plain,
            failure_mode: "deny",
            verifier: true,
            mint: true,
            funds: 20_000,
            stand_in: None,
            timeout_ms: 5000,
            extra_mints: 0,
            extra_tiers: Vec::new(),
            verifier_env: Vec::new(),
        }
    }
}

impl Setup {
    /// The filter alone: no mint, no verifier (answers made in the proxy).
    pub fn proxy_only() -> Self {
        Self {
            verifier: false,
            mint: false,
            ..Self::default()
        }
    }

    /// Starts everything: the mint first, then the wallet's funding, the
    /// verifier and Envoy side by side.
    pub async fn start(self) -> Stack {
        let _ = wasm_path();
        if self.verifier {
            require_verifier_binary();
        }
        assert!(
            self.mint || !self.verifier,
            "the verifier needs a mint to become ready"
        );
        assert!(
            !(self.verifier && self.stand_in.is_some()),
            "a stand-in replaces the verifier"
        );
        assert!(
            self.mint || self.extra_mints == 0,
            "extra mints go with the first one"
        );
        let mint_count = if self.mint { 1 + self.extra_mints } else { 0 };
        let mut mints = futures::future::join_all(
            (0..mint_count).map(|_| TestMint::start(MintOptions::default())),
        )
        .await;
        let extra = mints.split_off(mints.len().min(1));
        let mint = mints.pop();
        let mint_url = mint
            .as_ref()
            .map_or_else(|| loopback_url(free_port()), TestMint::url);
        let mut config = plugin_config(self.template, &mint_url, self.failure_mode);
        config["verifier"]["timeout_ms"] = json!(self.timeout_ms);
        if let Some(tiers) = config["tiers"].as_array_mut() {
            tiers.extend(self.extra_tiers.iter().cloned());
        }
        if let Some(list) = config["mints"].as_array_mut() {
            list.extend(extra.iter().map(|m| json!(m.url())));
        }
        let upstream = EchoUpstream::start().await;
        // Where nothing listens, when the verifier does not run.
        let verifier_port = self.stand_in.unwrap_or_else(free_port);

        let funded = |url: String| async move {
            let wallet = TestWallet::new(&url).await;
            wallet.fund(self.funds).await;
            wallet
        };
        let wallets = futures::future::join_all(mint.iter().chain(&extra).map(|m| funded(m.url())));
        let verifier_env: Vec<(&str, &str)> = self
            .verifier_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let verifier = async {
            if self.verifier {
                Some(Verifier::start_with_env(&config, &verifier_env).await)
            } else {
                None
            }
        };
        // The verifier picks its own port: Envoy starts once it is known.
        let (mut wallets, verifier) = tokio::join!(wallets, verifier);
        let extra_wallets = wallets.split_off(wallets.len().min(1));
        let wallet = wallets.pop();
        let port = verifier.as_ref().map_or(verifier_port, Verifier::port);
        let envoy = Envoy::start(self.template, port, upstream.port(), &config).await;
        Stack {
            envoy,
            upstream,
            _verifier: verifier,
            wallet,
            _mint: mint,
            extra: extra.into_iter().zip(extra_wallets).collect(),
            mint_url,
            config,
        }
    }
}

/// Envoy with the filter, the echo upstream, and (as set up) the verifier,
/// the mint and a funded payer wallet. Stops everything on drop.
#[derive(Debug)]
pub struct Stack {
    pub envoy: Envoy,
    pub upstream: EchoUpstream,
    _verifier: Option<Verifier>,
    pub wallet: Option<TestWallet>,
    _mint: Option<TestMint>,
    /// The extra mints, each with its funded payer wallet.
    pub extra: Vec<(TestMint, TestWallet)>,
    /// The (first) accepted mint (running or not).
    pub mint_url: String,
    /// The plugin configuration (and the verifier's config).
    pub config: Value,
}

impl Stack {
    /// The payer wallet; panics when the stack has no mint.
    pub fn wallet(&self) -> &TestWallet {
        self.wallet
            .as_ref()
            .unwrap_or_else(|| panic!("this stack has no mint and no wallet"))
    }

    /// The verifier, to stop or restart it; panics when the stack has none.
    pub fn verifier_mut(&mut self) -> &mut Verifier {
        self._verifier
            .as_mut()
            .unwrap_or_else(|| panic!("this stack has no verifier"))
    }

    /// The verifier's `/metrics`; panics when the stack has none.
    pub async fn verifier_metrics(&self) -> String {
        match &self._verifier {
            Some(v) => v.metrics().await,
            None => panic!("this stack has no verifier"),
        }
    }

    /// The verifier's base URL; panics when the stack has none.
    pub fn verifier_url(&self) -> String {
        self._verifier
            .as_ref()
            .map(Verifier::url)
            .unwrap_or_else(|| panic!("this stack has no verifier"))
    }

    /// `<envoy>/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.envoy.url())
    }

    pub async fn counters(&self) -> Counters {
        self.envoy.counters().await
    }

    /// `127.0.0.1:<envoy's listen port>`, for raw requests.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.envoy.inner.listen_port)
    }
}

/// The shared table of checks (`common::check_table`) runs against the
/// filter's stack too.
impl Site for Stack {
    fn wallet(&self) -> &TestWallet {
        Stack::wallet(self)
    }

    fn upstream(&self) -> &EchoUpstream {
        &self.upstream
    }

    fn mint_url(&self) -> String {
        self.mint_url.clone()
    }
}

// ---------------------------------------------------------------------------
// Checks.

/// A 402 for `amount` sat: `X-Cashu` is a NUT-18 `creqA` that cdk parses to
/// that amount, unit sat and exactly the accepted mint (strict, no transport:
/// in-band payment), and the body is the contract's JSON.
pub fn assert_payment_required(
    answer: &Answer,
    mint_url: &str,
    amount: u64,
    tier: Option<&str>,
    context: &str,
) {
    assert_eq!(answer.status, 402, "{context}: {answer:?}");
    let creq = answer
        .header("x-cashu")
        .unwrap_or_else(|| panic!("{context}: 402 without X-Cashu: {answer:?}"));
    assert!(creq.starts_with("creqA"), "{context}: X-Cashu is {creq:?}");
    let request = PaymentRequest::from_str(creq)
        .unwrap_or_else(|err| panic!("{context}: cdk cannot parse X-Cashu {creq:?}: {err}"));
    assert_eq!(
        request.amount,
        Some(Amount::from(amount)),
        "{context}: {request:?}"
    );
    assert_eq!(
        request.unit,
        Some(CurrencyUnit::Sat),
        "{context}: {request:?}"
    );
    let mint = MintUrl::from_str(mint_url).unwrap_or_else(|err| panic!("{mint_url}: {err}"));
    assert_eq!(request.mints, vec![mint], "{context}: {request:?}");
    assert_ne!(request.mint_preferred, Some(true), "{context}: {request:?}");
    assert!(
        request.transports.is_empty(),
        "{context}: a NUT-24 request carries no transport: {request:?}"
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{context}: the 402 is not JSON: {answer:?}"
    );
    let body = answer.json();
    assert_eq!(body["error"], "Payment Required", "{context}: {body}");
    assert_eq!(body["amount"], json!(amount), "{context}: {body}");
    assert_eq!(body["unit"], "sat", "{context}: {body}");
    assert_eq!(body["mints"], json!([mint_url]), "{context}: {body}");
    let keys: Vec<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert!(
        keys.iter()
            .all(|k| ["error", "amount", "unit", "mints", "tier"].contains(&k.as_str())),
        "{context}: unexpected keys in {body}"
    );
    // `tier` is not part of the contract; when it is there it must be right.
    match (body.get("tier").filter(|t| !t.is_null()), tier) {
        (None, _) => {}
        (Some(found), Some(tier)) => assert_eq!(found, tier, "{context}: {body}"),
        (Some(found), None) => panic!("{context}: the default price has tier {found}: {body}"),
    }
}

/// A JSON refusal `{"error": …, "code": code}` with `status`.
pub fn assert_refusal(answer: &Answer, status: u16, code: &str, context: &str) {
    assert_eq!(answer.status, status, "{context}: {answer:?}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{context}: the refusal is not JSON: {answer:?}"
    );
    let body = answer.json();
    assert_eq!(body["code"], code, "{context}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{context}: no error words: {body}"
    );
    assert!(
        answer.header("x-cashu").is_none_or(|v| v.starts_with("creqA")),
        "{context}: a refusal echoed something that is not a payment request in X-Cashu: {answer:?}"
    );
}

/// Nothing of `token` reached the upstream: no `X-Cashu`, no Cashu
/// `Authorization`, and no header value carrying the token (or its body).
pub fn assert_token_not_upstream(seen: &Seen, token: &str, context: &str) {
    assert_eq!(
        seen.one("x-cashu"),
        None,
        "{context}: X-Cashu reached the upstream: {seen:?}"
    );
    for value in seen.all("authorization") {
        assert!(
            !value.to_ascii_lowercase().contains("cashu"),
            "{context}: a Cashu Authorization reached the upstream: {value:?}"
        );
    }
    // The token without its prefix: the part that carries the proofs.
    let core = token.get(6..).unwrap_or(token);
    let probe = core.get(..core.len().min(40)).unwrap_or(core);
    for (name, value) in &seen.headers {
        assert!(
            !value.contains(probe),
            "{context}: the token reached the upstream in {name}: {value:?}"
        );
    }
}

/// No client-made verification header reached the upstream: no
/// `X-Payment-*`, `X-User-ID`, `X-Provisioned-Pod` (nor their underscore
/// spellings) at all.
pub fn assert_no_verification_headers(seen: &Seen, context: &str) {
    for (name, value) in &seen.headers {
        let dashed = name.replace('_', "-");
        assert!(
            !dashed.starts_with("x-payment-")
                && dashed != "x-user-id"
                && dashed != "x-provisioned-pod",
            "{context}: {name}: {value} reached the upstream: {seen:?}"
        );
    }
}

/// The verifier's grant as the upstream saw it: `X-Payment-Verified: true`,
/// `X-Payment-Amount: amount`, one non-empty `X-User-ID` that is not the
/// client's `mallory`, no pod, and no other `X-Payment-*` than the
/// verifier's.
/// (`tier`: the tier id that an `X-Payment-Tier`, when there is one, must
/// name; `None` for the default price.)
pub fn assert_paid_upstream(seen: &Seen, amount: u64, tier: Option<&str>, context: &str) {
    assert_eq!(
        seen.one("x-payment-verified"),
        Some("true"),
        "{context}: {seen:?}"
    );
    let expected_amount = amount.to_string();
    assert_eq!(
        seen.one("x-payment-amount"),
        Some(expected_amount.as_str()),
        "{context}: {seen:?}"
    );
    let user = seen
        .one("x-user-id")
        .unwrap_or_else(|| panic!("{context}: no X-User-ID upstream: {seen:?}"));
    assert!(
        !user.trim().is_empty() && user != "mallory",
        "{context}: X-User-ID is {user:?}"
    );
    assert_eq!(seen.one("x-provisioned-pod"), None, "{context}: {seen:?}");
    if let (Some(found), Some(tier)) = (seen.one("x-payment-tier"), tier) {
        assert_eq!(found, tier, "{context}: {seen:?}");
    }
    for name in seen.names_with_prefix("x-payment-") {
        assert!(
            ["x-payment-verified", "x-payment-amount", "x-payment-tier"].contains(&name.as_str()),
            "{context}: {name} reached the upstream: {seen:?}"
        );
    }
    for name in ["x_payment_verified", "x_user_id"] {
        assert_eq!(seen.one(name), None, "{context}: {seen:?}");
    }
}

/// What the echo upstream saw, read from its answer (the upstream answers
/// every request with a JSON description of it): for requests sent side by
/// side, where [`EchoUpstream::last`] would not say which was which.
pub fn seen_in_answer(answer: &Answer) -> Seen {
    let body = answer.json();
    assert_eq!(
        body["upstream"], "echo",
        "not an answer of the upstream: {answer:?}"
    );
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
    let headers = body["headers"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|pair| (text(&pair[0]), text(&pair[1])))
                .collect()
        })
        .unwrap_or_default();
    Seen {
        method: text(&body["method"]),
        path: text(&body["path"]),
        headers,
        body: String::new(),
    }
}

// ---------------------------------------------------------------------------
// A verifier that misbehaves.

/// A stand-in for a verifier that fails, which the real one cannot be made
/// to do on demand. It records the head of every request it gets and
/// answers by the callout's `X-Forwarded-Uri`: a path with `/500` gets a
/// 500, `/403` a 403 (a status outside the contract), `/close` has its
/// connection closed without an answer, `/hang` never gets an answer.
#[derive(Debug)]
pub struct FaultyVerifier {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyVerifier {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|err| panic!("faulty verifier: cannot bind: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("faulty verifier: no local address: {err}"))
            .port();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_faultily(stream, recorded.clone()));
            }
        });
        Self { port, heads, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request heads received so far (request line and headers).
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for FaultyVerifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of header `name` in a request head.
pub fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve_faultily(mut stream: tokio::net::TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Requests on a kept-alive connection, one after the other (GET, no body).
    loop {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
            if head.len() > 256 * 1024 {
                return;
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let uri = head_header(&head, "x-forwarded-uri")
            .unwrap_or_default()
            .to_string();
        heads.lock().unwrap_or_else(|p| p.into_inner()).push(head);
        let status = if uri.contains("/hang") {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        } else if uri.contains("/close") {
            return;
        } else if uri.contains("/403") {
            "403 Forbidden"
        } else {
            "500 Internal Server Error"
        };
        let body = "the verifier is broken";
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
