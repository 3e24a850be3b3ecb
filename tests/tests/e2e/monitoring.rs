//! Monitoring and alerting (`k8s/monitoring/`, `docs/monitoring.md`).
//!
//! Offline, with the real `promtool` (Debian package `prometheus`, which
//! `just setup` installs; missing, the tests fail saying so):
//! - the rules file passes `promtool check rules`, and its unit tests
//!   (`k8s/monitoring/paygress-rules.test.yml`, `promtool test rules`) pass,
//!   with, for every alert, a case where it fires and one where it does not;
//! - the PrometheusRule embeds the rules file verbatim, and the Grafana
//!   ConfigMap the dashboard JSON (on a mismatch the expected file is
//!   written to `target/monitoring/`);
//! - every alert has a severity, a summary, a description and a runbook
//!   section in `docs/monitoring.md`; the refusal alert counts exactly the
//!   contract's 400 codes;
//! - the dashboard takes its data source from a template variable and names
//!   only metrics that the verifier and the filter export, every one of
//!   them;
//! - the ServiceMonitor selects the verifier's Service by its labels and
//!   named port, the PodMonitor the gateway that runs the WasmPlugin, and
//!   the kustomization lists every object of the directory.
//!
//! Live: a real Prometheus (1 s scrapes and evaluations) scrapes the real
//! verifier's `/metrics` and the real Envoy's `/stats/prometheus` (the
//! filter's counters) while real traffic goes through Envoy with the
//! filter: a 402, paid requests with real tokens, a refused replay, a lease
//! and its pass, a lease with a pod (on the Kubernetes API stand-in), and,
//! once Prometheus has those, a second round of paid requests, leases and
//! passes (so that the counters the first round created rise). The
//! verifier runs its background pass (keyset refresh, balance) every
//! second. The wallet balance panel then shows what the payments brought,
//! every dashboard query has data, and no alert is pending or firing. The
//! rules are loaded as shipped except for `for:`, shortened to 2 s in the
//! copy Prometheus loads (every expression, window and threshold as
//! shipped). Then the mint is stopped: the keyset refresh takes
//! `paygress_mint_up` to 0 and PaygressMintUnreachable goes pending, then
//! firing, for that mint and verifier; the verifier is stopped:
//! PaygressVerifierDown and, after paid requests the filter cannot call out
//! for, PaygressCalloutFailures fire.
//!
//! The dashboard as a picture: with the mint stopped (so that the mint
//! errors have data too) and before the verifier stops, every panel of the
//! dashboard is drawn by the harness's renderer (`paygress_tests::dashboard`:
//! each target's query evaluated by the live Prometheus over the test's
//! run, the variables substituted as Grafana would) into a self-contained
//! HTML page, `target/artifacts/monitoring/dashboard.html`, which headless
//! Chromium screenshots to `dashboard.png` beside it. Every panel drew data,
//! the page has every title, the PNG is as wide as the page. With
//! `PAYGRESS_UPDATE_SCREENSHOTS=1` the PNG also replaces
//! `docs/img/dashboard.png` (the one README.md and docs/monitoring.md
//! show).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use paygress_core::ErrorCode;
use paygress_filter::metrics::Counter;
use paygress_tests::chromium::Chromium;
use paygress_tests::contract::{get, leases, repo_file, EchoUpstream};
use paygress_tests::dashboard::{self as renderer, Kind, Window, PAGE_WIDTH};
use paygress_tests::envoy::{plugin_config, EnvoyProcess, Template, ENVOY_READY_TIMEOUT, PREMIUM};
use paygress_tests::fixture::COMPUTE;
use paygress_tests::kube_api::FakeApiServer;
use paygress_tests::prometheus::{promtool_bin, promtool_ok, sample_value, Prometheus, ScrapeJob};
use paygress_tests::verifier::Verifier;
use paygress_tests::{tools, MintOptions, TestMint, TestWallet};
use serde_json::{json, Value};

const DIR: &str = "k8s/monitoring";
const RULES: &str = "k8s/monitoring/paygress-rules.yml";
const RULES_TEST: &str = "k8s/monitoring/paygress-rules.test.yml";
const PROMETHEUS_RULE: &str = "k8s/monitoring/alert-rules.yaml";
const DASHBOARD: &str = "k8s/monitoring/grafana-dashboard.json";
const DASHBOARD_CONFIGMAP: &str = "k8s/monitoring/grafana-dashboard-configmap.yaml";
const SERVICE_MONITOR: &str = "k8s/monitoring/service-monitor.yaml";
const POD_MONITOR: &str = "k8s/monitoring/pod-monitor.yaml";
const NETWORK_POLICY: &str = "k8s/monitoring/networkpolicy-prometheus.yaml";
const KUSTOMIZATION: &str = "k8s/monitoring/kustomization.yaml";
const DOCS: &str = "docs/monitoring.md";
/// The verifier's Service and the ServiceMonitor's job.
const VERIFIER_JOB: &str = "paygress-auth";
/// Where every runbook_url points.
const RUNBOOK_BASE: &str = "https://github.com/paygress/paygress/blob/main/docs/monitoring.md#";
/// The data key of the dashboard in its ConfigMap.
const DASHBOARD_KEY: &str = "paygress.json";

// ---------------------------------------------------------------------------
// Reading the files.

fn yaml(relative: &str) -> Value {
    let text = repo_file(relative);
    let parsed: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{relative}: not YAML: {err}"));
    serde_json::to_value(parsed).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&repo_file(DASHBOARD))
        .unwrap_or_else(|err| panic!("{DASHBOARD}: not JSON: {err}"))
}

/// Every alerting rule of the rules file: (group, rule).
fn alert_rules() -> Vec<(String, Value)> {
    let rules = yaml(RULES);
    let groups = rules["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{RULES}: no groups"));
    let mut out = Vec::new();
    for group in groups {
        let name = group["name"].as_str().unwrap_or_default().to_string();
        for rule in group["rules"].as_array().into_iter().flatten() {
            assert!(
                rule.get("alert").is_some(),
                "{RULES}: group {name} has a rule that is not an alert: {rule}"
            );
            out.push((name.clone(), rule.clone()));
        }
    }
    assert!(!out.is_empty(), "{RULES}: no alerts");
    out
}

fn alert_names() -> Vec<String> {
    alert_rules()
        .iter()
        .map(|(_, r)| r["alert"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The rule of `alert`.
fn rule_of(alert: &str) -> Value {
    alert_rules()
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r["alert"] == alert)
        .unwrap_or_else(|| panic!("{RULES}: no alert {alert}"))
}

/// Every panel that queries (not the rows), with the panel's title.
fn query_panels(dashboard: &Value) -> Vec<Value> {
    dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{DASHBOARD}: no panels"))
        .iter()
        .filter(|p| p["type"] != "row")
        .cloned()
        .collect()
}

/// Every target's query: (panel title, legend, PromQL as written).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in query_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{DASHBOARD}: panel {title:?} has no targets"));
        assert!(
            !targets.is_empty(),
            "{DASHBOARD}: panel {title:?} has no targets"
        );
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{DASHBOARD}: {title:?}: a target without expr"));
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            out.push((title.clone(), legend.to_string(), expr.to_string()));
        }
    }
    out
}

/// A dashboard query as Prometheus runs it: the variables replaced by what
/// Grafana would give for the last hour at a 15 s step, with its default
/// scrape interval (`$__rate_interval` 1m, `$__interval` 15s, `$__range`
/// 1h).
fn substitute(expr: &str) -> String {
    let vars = renderer::Variables::new(
        &dashboard(),
        15,
        3600,
        renderer::GRAFANA_SCRAPE_INTERVAL_SECS,
    );
    renderer::substitute(expr, &vars)
        .unwrap_or_else(|err| panic!("{DASHBOARD}: a query the test cannot run: {err}"))
}

/// The `paygress_*` names a PromQL expression reads.
fn paygress_names(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(found) = expr.get(i..).and_then(|rest| rest.find("paygress_")) {
        let start = i + found;
        let before_ok = start == 0
            || !bytes
                .get(start - 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'"');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if before_ok {
            names.insert(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The metric families the verifier exports, read from
/// `verifier/src/metrics.rs` (each `header(..., "NAME", ...)`), with the
/// series names a histogram adds.
fn verifier_families() -> BTreeSet<String> {
    let source = repo_file("verifier/src/metrics.rs");
    let mut families = BTreeSet::new();
    for (at, _) in source.match_indices("\"paygress_") {
        let rest = &source[at + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        if rest[end..].starts_with('"') {
            families.insert(rest[..end].to_string());
        }
    }
    assert!(
        families.contains("paygress_payments_total") && families.len() >= 10,
        "verifier/src/metrics.rs: cannot read the metric names: {families:?}"
    );
    families
}

fn verifier_series_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for family in verifier_families() {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{family}{suffix}"));
        }
        names.insert(family);
    }
    names
}

fn filter_names() -> BTreeSet<String> {
    Counter::ALL
        .into_iter()
        .map(|c| c.name().to_string())
        .collect()
}

/// `text` with every non-empty line indented by `by` spaces.
fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{line}\n")
            }
        })
        .collect()
}

/// Asserts that `relative` is `expected`; otherwise writes `expected` to
/// `target/monitoring/<file name>` and fails saying how to take it.
fn assert_file_is(relative: &str, expected: &str, why: &str) {
    let actual = repo_file(relative);
    if actual == expected {
        return;
    }
    let dir = tools::target_dir().join("monitoring");
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let name = Path::new(relative)
        .file_name()
        .unwrap_or_else(|| panic!("{relative}: no file name"));
    let path = dir.join(name);
    std::fs::write(&path, expected).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    panic!(
        "{relative} is out of date: {why}. The expected file is {}; take it with\n  cp {} {relative}",
        path.display(),
        path.display()
    );
}

// ---------------------------------------------------------------------------
// promtool.

#[test]
fn the_rules_pass_promtool_check_rules() {
    let root = tools::workspace_root();
    let out = promtool_ok(&["check", "rules", RULES], &root);
    let count = alert_names().len();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "promtool check rules {RULES}: {out}"
    );
}

/// `promtool test rules` on the unit tests, which cover every alert both
/// ways: a case whose `exp_alerts` has the alert (it fires on the series it
/// is about) and a case with none (it stays silent on look-alikes).
#[test]
fn every_alert_fires_on_its_series_and_not_otherwise_under_promtool_test_rules() {
    let root = tools::workspace_root();
    let out = promtool_ok(&["test", "rules", RULES_TEST], &root);
    assert!(
        out.contains("SUCCESS"),
        "promtool test rules {RULES_TEST}: {out}"
    );

    let tests = yaml(RULES_TEST);
    assert_eq!(
        tests["rule_files"],
        json!(["paygress-rules.yml"]),
        "{RULES_TEST} must test the shipped rules file"
    );
    let mut fires: BTreeMap<String, usize> = BTreeMap::new();
    let mut silent: BTreeMap<String, usize> = BTreeMap::new();
    for case in tests["tests"].as_array().into_iter().flatten() {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let alert = check["alertname"].as_str().unwrap_or_default().to_string();
            let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                *fires.entry(alert).or_default() += 1;
            } else {
                *silent.entry(alert).or_default() += 1;
            }
        }
    }
    for alert in alert_names() {
        assert!(
            fires.contains_key(&alert),
            "{RULES_TEST}: no case where {alert} fires"
        );
        assert!(
            silent.contains_key(&alert),
            "{RULES_TEST}: no case where {alert} stays silent"
        );
    }
    let known: BTreeSet<String> = alert_names().into_iter().collect();
    for alert in fires.keys().chain(silent.keys()) {
        assert!(
            known.contains(alert),
            "{RULES_TEST}: tests an unknown alert {alert}"
        );
    }
}

// ---------------------------------------------------------------------------
// The files agree.

#[test]
fn the_prometheus_rule_embeds_the_rules_file_verbatim() {
    let rules_text = repo_file(RULES);
    let body = rules_text
        .find("\ngroups:\n")
        .map(|at| &rules_text[at + 1..])
        .unwrap_or_else(|| panic!("{RULES}: no top-level `groups:`"));
    let actual = repo_file(PROMETHEUS_RULE);
    let (head, _) = actual
        .split_once("\nspec:\n")
        .unwrap_or_else(|| panic!("{PROMETHEUS_RULE}: no top-level `spec:`"));
    let expected = format!("{head}\nspec:\n{}", indent(body, 2));
    assert_file_is(
        PROMETHEUS_RULE,
        &expected,
        "its spec must be k8s/monitoring/paygress-rules.yml from `groups:` on, indented by 2",
    );

    let object = yaml(PROMETHEUS_RULE);
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["kind"], "PrometheusRule");
    assert_eq!(object["metadata"]["namespace"], "paygress-system");
    assert_eq!(object["spec"], yaml(RULES), "{PROMETHEUS_RULE}: spec");
}

#[test]
fn the_grafana_configmap_embeds_the_dashboard_verbatim_for_the_sidecar() {
    let json_text = repo_file(DASHBOARD);
    let actual = repo_file(DASHBOARD_CONFIGMAP);
    let marker = format!("\n  {DASHBOARD_KEY}: |\n");
    let (head, _) = actual
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{DASHBOARD_CONFIGMAP}: no `{DASHBOARD_KEY}: |` under data"));
    let expected = format!("{head}{marker}{}", indent(&json_text, 4));
    assert_file_is(
        DASHBOARD_CONFIGMAP,
        &expected,
        "data.\"paygress.json\" must be k8s/monitoring/grafana-dashboard.json, indented by 4",
    );

    let object = yaml(DASHBOARD_CONFIGMAP);
    let configmap: ConfigMap = serde_json::from_value(object.clone())
        .unwrap_or_else(|err| panic!("{DASHBOARD_CONFIGMAP}: not a ConfigMap: {err}"));
    let back = serde_json::to_value(&configmap).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        back, object,
        "{DASHBOARD_CONFIGMAP}: a field ConfigMap does not know"
    );
    let labels = configmap.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1"),
        "{DASHBOARD_CONFIGMAP}: the Grafana sidecar loads ConfigMaps labelled grafana_dashboard=1"
    );
    let data = configmap.data.unwrap_or_default();
    let embedded: Value = serde_json::from_str(
        data.get(DASHBOARD_KEY)
            .unwrap_or_else(|| panic!("{DASHBOARD_CONFIGMAP}: no {DASHBOARD_KEY}")),
    )
    .unwrap_or_else(|err| panic!("{DASHBOARD_CONFIGMAP}: {DASHBOARD_KEY} is not JSON: {err}"));
    assert_eq!(embedded, dashboard());
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_section() {
    let docs = repo_file(DOCS);
    let headings: BTreeSet<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(str::trim)
        .collect();
    for (group, rule) in alert_rules() {
        let alert = rule["alert"].as_str().unwrap_or_default();
        let at = format!("{RULES}: {group}/{alert}");
        assert!(
            alert.starts_with("Paygress") && alert.chars().all(|c| c.is_ascii_alphanumeric()),
            "{at}: alert names are PaygressCamelCase"
        );
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{at}: severity {severity:?} is neither critical nor warning"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| s.len() > 10),
                "{at}: no {key}"
            );
        }
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            runbook,
            format!("{RUNBOOK_BASE}{}", alert.to_ascii_lowercase()),
            "{at}: runbook_url"
        );
        assert!(
            headings.contains(alert),
            "{at}: {DOCS} has no `### {alert}` section (its runbook)"
        );
        let duration = rule["for"].as_str().unwrap_or("—");
        let row = format!("| {alert} | {severity} | {duration} |");
        assert!(
            docs.lines().any(|line| line.starts_with(&row)),
            "{at}: {DOCS}'s table of alerts has no row starting {row:?}"
        );
        assert!(
            rule["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "{at}: no expr"
        );
    }
}

/// The refusal alert and the dashboard's refusal share count exactly the
/// contract's 400 codes (as the verifier labels its answers).
#[test]
fn the_refusal_alert_counts_exactly_the_contracts_400_codes() {
    let codes: BTreeSet<&str> = ErrorCode::ALL
        .into_iter()
        .filter(|c| c.status() == 400)
        .map(ErrorCode::as_str)
        .collect();
    let regex_of = |expr: &str, at: &str| -> BTreeSet<String> {
        let (_, rest) = expr
            .split_once("outcome=~\"")
            .unwrap_or_else(|| panic!("{at}: no outcome=~ matcher: {expr}"));
        let (alternatives, _) = rest
            .split_once('"')
            .unwrap_or_else(|| panic!("{at}: {expr}"));
        alternatives.split('|').map(str::to_string).collect()
    };
    let rule = rule_of("PaygressRefusalsHigh");
    let expr = rule["expr"].as_str().unwrap_or_default();
    let mut matchers = 0;
    for part in expr.split("paygress_payments_total").skip(1) {
        if part.starts_with("{outcome=~") {
            matchers += 1;
            let found = regex_of(part, "PaygressRefusalsHigh");
            let found: BTreeSet<&str> = found.iter().map(String::as_str).collect();
            assert_eq!(found, codes, "PaygressRefusalsHigh: the refused outcomes");
        }
    }
    assert_eq!(matchers, 2, "PaygressRefusalsHigh: {expr}");
    let share = dashboard_queries(&dashboard())
        .into_iter()
        .find(|(title, _, _)| title.starts_with("Refusal share"))
        .unwrap_or_else(|| panic!("{DASHBOARD}: no Refusal share panel"));
    let found = regex_of(&share.2, "Refusal share");
    let found: BTreeSet<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, codes, "the dashboard's refusal share");
}

/// The dashboard: a `datasource` variable of type prometheus that every
/// panel and target uses, unique panel ids, no panel without a query, and
/// only metric names that the verifier (`verifier/src/metrics.rs`) or the
/// filter (`filter/src/metrics.rs`) export, every one of them shown.
#[test]
fn the_dashboard_uses_a_datasource_variable_and_every_exported_metric() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{DASHBOARD}: no templating"));
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap_or_else(|| panic!("{DASHBOARD}: no datasource variable"));
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert!(
        dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "{DASHBOARD}: a fixed uid (links survive re-imports)"
    );

    let wanted = json!({ "type": "prometheus", "uid": "${datasource}" });
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(
                panel["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{title}: no id"))
            ),
            "{DASHBOARD}: panel id of {title:?} used twice"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], wanted, "{DASHBOARD}: {title:?}");
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{DASHBOARD}: {title:?} has no description"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(target["datasource"], wanted, "{DASHBOARD}: {title:?}");
        }
    }

    let verifier = verifier_series_names();
    let filter = filter_names();
    let mut shown = BTreeSet::new();
    for (title, _, expr) in dashboard_queries(&dashboard) {
        let names = paygress_names(&expr);
        assert!(
            !names.is_empty() || expr.contains("up{job=\"paygress-auth\"}"),
            "{DASHBOARD}: {title:?} reads no Paygress metric: {expr}"
        );
        for name in names {
            assert!(
                verifier.contains(&name) || filter.contains(&name),
                "{DASHBOARD}: {title:?} reads {name}, which neither the verifier nor the filter exports: {expr}"
            );
            shown.insert(name);
        }
    }
    for family in verifier_families() {
        assert!(
            shown.iter().any(|n| n == &family
                || n.strip_prefix(family.as_str())
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
            "{DASHBOARD}: no panel shows the verifier's {family}"
        );
    }
    for name in &filter {
        assert!(
            shown.contains(name),
            "{DASHBOARD}: no panel shows the filter's {name}"
        );
    }

    // The rules read only exported names too (and `up`, and
    // kube-state-metrics' kube_pod_status_ready).
    for (_, rule) in alert_rules() {
        let expr = rule["expr"].as_str().unwrap_or_default();
        for name in paygress_names(expr) {
            assert!(
                verifier.contains(&name) || filter.contains(&name),
                "{RULES}: {} reads {name}, which is not exported",
                rule["alert"]
            );
        }
    }
}

#[test]
fn the_monitors_select_the_verifier_service_and_the_gateway_running_the_filter() {
    // The verifier's Service, as k8s/nginx-ingress-paygress.yaml ships it.
    let text = repo_file("k8s/nginx-ingress-paygress.yaml");
    let service = serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).ok()?;
            serde_json::to_value(value).ok()
        })
        .find(|doc| doc["kind"] == "Service" && doc["metadata"]["name"] == VERIFIER_JOB)
        .unwrap_or_else(|| panic!("k8s/nginx-ingress-paygress.yaml: no Service {VERIFIER_JOB}"));
    let namespace = service["metadata"]["namespace"].clone();

    let monitor = yaml(SERVICE_MONITOR);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["metadata"]["namespace"], namespace);
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([namespace])
    );
    assert!(
        monitor["spec"].get("jobLabel").is_none(),
        "{SERVICE_MONITOR}: the job must stay the Service's name, {VERIFIER_JOB}, which the rules name"
    );
    assert_eq!(service["metadata"]["name"], VERIFIER_JOB);
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap_or_else(|| panic!("{SERVICE_MONITOR}: no matchLabels"));
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "{SERVICE_MONITOR}: the Service {VERIFIER_JOB} has no label {key}={value}"
        );
    }
    let endpoints = monitor["spec"]["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{SERVICE_MONITOR}: no endpoints"));
    assert_eq!(endpoints.len(), 1);
    let port = endpoints[0]["port"].as_str().unwrap_or_default();
    let service_port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| {
            panic!("{SERVICE_MONITOR}: port {port:?} is not a named port of the Service {VERIFIER_JOB}")
        });
    assert_eq!(endpoints[0]["path"], "/metrics");
    let rules = repo_file(RULES);
    assert!(
        rules.contains(&format!("up{{job=\"{VERIFIER_JOB}\"}}")),
        "{RULES}: the verifier's alerts must name job {VERIFIER_JOB}"
    );

    // Prometheus may reach that port: the NetworkPolicy selects the
    // verifier's pods (the Service's selector) on the Service's port.
    let policy_doc = yaml(NETWORK_POLICY);
    let policy: NetworkPolicy = serde_json::from_value(policy_doc.clone())
        .unwrap_or_else(|err| panic!("{NETWORK_POLICY}: not a NetworkPolicy: {err}"));
    assert_eq!(
        serde_json::to_value(&policy).unwrap_or_default(),
        policy_doc,
        "{NETWORK_POLICY}: a field NetworkPolicy does not know"
    );
    assert_eq!(policy_doc["metadata"]["namespace"], namespace);
    assert_eq!(
        policy_doc["spec"]["podSelector"]["matchLabels"], service["spec"]["selector"],
        "{NETWORK_POLICY}: must select the verifier's pods"
    );
    let ports = &policy_doc["spec"]["ingress"][0]["ports"];
    assert_eq!(
        ports[0]["port"], service_port["port"],
        "{NETWORK_POLICY}: port"
    );

    // The PodMonitor: the Istio gateway that the WasmPlugin runs in.
    let plugin = yaml("wasm-plugins/paygress-wasmplugin.yaml");
    let pods = yaml(POD_MONITOR);
    assert_eq!(pods["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pods["kind"], "PodMonitor");
    assert_eq!(
        pods["spec"]["selector"]["matchLabels"],
        plugin["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        pods["spec"]["namespaceSelector"]["matchNames"],
        json!([plugin["metadata"]["namespace"]])
    );
    let endpoint = &pods["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "http-envoy-prom", "istio-proxy's 15090");
    assert_eq!(endpoint["path"], "/stats/prometheus");
    let keep = endpoint["metricRelabelings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["action"] == "keep")
        .unwrap_or_else(|| panic!("{POD_MONITOR}: no keep relabeling"));
    let regex = keep["regex"].as_str().unwrap_or_default();
    let prefix = regex
        .strip_suffix(".*")
        .unwrap_or_else(|| panic!("{POD_MONITOR}: keep regex {regex:?} is not a prefix"));
    for name in filter_names() {
        assert!(
            name.starts_with(prefix),
            "{POD_MONITOR}: {regex} drops {name}"
        );
    }

    // The kustomization lists every object file (.yaml) of the directory,
    // and nothing else: the plain Prometheus files (.yml) and the JSON are
    // not objects.
    let kustomization = yaml(KUSTOMIZATION);
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let root = tools::workspace_root();
    let objects: BTreeSet<String> = std::fs::read_dir(root.join(DIR))
        .unwrap_or_else(|err| panic!("{DIR}: {err}"))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, objects, "{KUSTOMIZATION}: resources");
    for file in &objects {
        let doc = yaml(&format!("{DIR}/{file}"));
        assert!(
            ["paygress-system", "istio-system"]
                .contains(&doc["metadata"]["namespace"].as_str().unwrap_or_default()),
            "{DIR}/{file}: namespace"
        );
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/part-of"], "paygress",
            "{DIR}/{file}: labels"
        );
    }
}

// ---------------------------------------------------------------------------
// A real Prometheus over real traffic.

/// The price of the test's pod tier.
const BOX: u64 = 8;
/// `for:` in the copy of the rules that the live Prometheus loads.
const SHORT_FOR: &str = "2s";
/// The dashboard's panel of the wallet balance.
const BALANCE_PANEL: &str = "Wallet balance by mint";
/// How long a live alert may take to show.
const ALERT_TIMEOUT: Duration = Duration::from_secs(60);

/// The rules file with every `for:` shortened to [`SHORT_FOR`], and
/// nothing else changed.
fn rules_with_short_for(text: &str) -> String {
    let mut replaced = 0;
    let out: String = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("for: ") {
                replaced += 1;
                format!("{}for: {SHORT_FOR}\n", &line[..line.len() - trimmed.len()])
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(replaced > 0, "{RULES}: no `for:` to shorten");
    out
}

/// The alerts with `name`, from `/api/v1/alerts`.
fn named<'a>(alerts: &'a [Value], name: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .collect()
}

fn alert_summary(alerts: &[Value]) -> String {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["labels"]["alertname"], a["state"], a["labels"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until an alert `name` whose labels include `labels` is firing;
/// returns the states it was seen in on the way (pending first, when the
/// polls caught it).
async fn wait_firing(prometheus: &Prometheus, name: &str, labels: &Value) -> Vec<String> {
    let labels = labels.as_object().cloned().unwrap_or_default();
    let deadline = std::time::Instant::now() + ALERT_TIMEOUT;
    let mut states: Vec<String> = Vec::new();
    loop {
        let alerts = prometheus.alerts().await;
        let matching: Vec<&Value> = named(&alerts, name)
            .into_iter()
            .filter(|a| labels.iter().all(|(k, v)| &a["labels"][k] == v))
            .collect();
        for alert in &matching {
            let state = alert["state"].as_str().unwrap_or_default().to_string();
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
        if matching.iter().any(|a| a["state"] == "firing") {
            return states;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} with {labels:?} not firing within {ALERT_TIMEOUT:?}; alerts: {}\n{}",
            alert_summary(&alerts),
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The alerts pending or firing now, but for those in `expected` and a
/// PaygressRedemptionSlow that the data bears out (a swap at the test's
/// mint took over a second: a loaded machine, not a wrong rule).
async fn unexplained(prometheus: &Prometheus, expected: &[&str]) -> Vec<Value> {
    let slow_swaps = !prometheus
        .query(
            "sum(paygress_redemption_duration_seconds_count) \
             > sum(paygress_redemption_duration_seconds_bucket{le=\"1\"})",
        )
        .await
        .is_empty();
    prometheus
        .alerts()
        .await
        .into_iter()
        .filter(|a| {
            let name = a["labels"]["alertname"].as_str().unwrap_or_default();
            let borne_out = slow_swaps && name == "PaygressRedemptionSlow";
            !(expected.contains(&name) || borne_out)
        })
        .collect()
}

/// Waits until the first sample of `expr` is at least `min`.
async fn wait_value(prometheus: &Prometheus, expr: &str, min: f64) {
    prometheus
        .wait_for(
            &format!("{expr} >= {min}"),
            Duration::from_secs(30),
            || async {
                let samples = prometheus.query(expr).await;
                match samples.first().map(sample_value) {
                    Some(v) if v >= min => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
}

/// The dashboard's picture that README.md and docs/monitoring.md show.
const DASHBOARD_PNG: &str = "docs/img/dashboard.png";
/// How often the test's Prometheus scrapes (`paygress_tests::prometheus`):
/// the data source's scrape interval, for `$__rate_interval`.
const SCRAPE_INTERVAL_SECS: u64 = 1;
/// The most the committed picture may weigh.
const DASHBOARD_PNG_MAX_BYTES: usize = 400 * 1024;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|err| panic!("the clock is before 1970: {err}"))
        .as_secs_f64()
}

/// Where the monitoring test keeps its picture: `<target
/// dir>/artifacts/monitoring/` (created).
fn artifacts_dir() -> PathBuf {
    let dir = tools::target_dir().join("artifacts").join("monitoring");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// The width and height of a PNG (its IHDR chunk); panics on anything else.
fn png_size(png: &[u8], what: &str) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "{what} is not a PNG"
    );
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (word(16), word(20))
}

/// The dashboard as a picture: every panel drawn from `prometheus` over
/// `window` by the harness's renderer into
/// `target/artifacts/monitoring/dashboard.html`, screenshotted by headless
/// Chromium to `dashboard.png` beside it (and to docs/img with
/// `PAYGRESS_UPDATE_SCREENSHOTS=1`). Every panel but the rows drew data
/// (a series with a number, or a stat value), the page has every panel's
/// title, the PNG is as wide as the page.
async fn picture_of_the_dashboard(prometheus: &Prometheus, window: Window) {
    let json = dashboard();
    let note = format!(
        "The panels of {DASHBOARD}, their queries evaluated by a real Prometheus over the \
         monitoring test's run ({}–{} UTC: payments, a replay, leases, pods, then the mint \
         stopped), drawn by the test's renderer, not by Grafana.",
        renderer::clock(window.start),
        renderer::clock(window.end)
    );
    let rendered = renderer::render(prometheus, &json, window, SCRAPE_INTERVAL_SECS, &note).await;
    let panel_count = json["panels"].as_array().map_or(0, Vec::len);
    assert_eq!(
        rendered.panels.len(),
        panel_count,
        "the renderer drew {} of the {panel_count} panels",
        rendered.panels.len()
    );
    let empty: Vec<_> = rendered
        .panels
        .iter()
        .filter(|p| p.kind != Kind::Row && p.shown == 0)
        .collect();
    assert!(
        empty.is_empty(),
        "panels drawn with no data over {window:?}: {empty:#?}"
    );
    for panel in &rendered.panels {
        let title = renderer::escape(&panel.title);
        assert!(
            rendered.html.contains(&format!(">{title}</h")),
            "the page has no title {:?}",
            panel.title
        );
    }

    let dir = artifacts_dir();
    let html = dir.join("dashboard.html");
    std::fs::write(&html, &rendered.html)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", html.display()));
    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    page.set_viewport(PAGE_WIDTH, 900).await;
    let url = format!("file://{}", html.display());
    let mark = page.mark();
    let navigated = page.call("Page.navigate", json!({ "url": url })).await;
    if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
        panic!("chromium: opening {url} failed: {error}");
    }
    page.wait_for_load(mark).await;
    let drawn = page
        .evaluate(
            "({ panels: document.querySelectorAll('section.panel').length, \
               lines: document.querySelectorAll('section.panel svg path').length, \
               scripts: document.scripts.length })",
        )
        .await;
    assert_eq!(
        drawn["panels"],
        json!(query_panels(&json).len()),
        "the panels Chromium shows: {drawn}"
    );
    assert!(
        drawn["lines"].as_u64().is_some_and(|n| n > 0) && drawn["scripts"] == 0,
        "what Chromium shows: {drawn}"
    );
    let shot = dir.join("dashboard.png");
    page.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap_or_else(|err| panic!("{}: {err}", shot.display()));
    let (width, height) = png_size(&png, &shot.display().to_string());
    assert_eq!(width, PAGE_WIDTH, "{}: width", shot.display());
    assert!(height > 1000, "{}: {width}×{height}", shot.display());
    drop(page);
    drop(chromium);

    if std::env::var("PAYGRESS_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        assert!(
            png.len() <= DASHBOARD_PNG_MAX_BYTES,
            "{}: {} bytes, more than the {DASHBOARD_PNG_MAX_BYTES} the docs may carry",
            shot.display(),
            png.len()
        );
        let dest = tools::workspace_root().join(DASHBOARD_PNG);
        std::fs::copy(&shot, &dest)
            .unwrap_or_else(|err| panic!("cannot copy to {}: {err}", dest.display()));
    }
    // The committed docs show the picture this test takes.
    let committed = std::fs::read(tools::workspace_root().join(DASHBOARD_PNG))
        .unwrap_or_else(|err| panic!("{DASHBOARD_PNG}: {err}"));
    assert_eq!(
        png_size(&committed, DASHBOARD_PNG).0,
        PAGE_WIDTH,
        "{DASHBOARD_PNG}: width"
    );
    assert!(repo_file(DOCS).contains("img/dashboard.png"));
    assert!(repo_file("README.md").contains(DASHBOARD_PNG));
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_shows_every_panel_and_fires_the_outage_alerts_on_real_traffic() {
    // Fail at once, with the install hint, when Prometheus is missing.
    let _ = promtool_bin();
    let _ = paygress_tests::prometheus::prometheus_bin();

    // The stack: a mint, a funded payer, the Kubernetes API stand-in for
    // the pod tier, the verifier, the echo upstream and Envoy with the
    // filter.
    let mut mint = TestMint::start(MintOptions::default()).await;
    let mint_url = mint.url();
    let wallet = TestWallet::new(&mint_url).await;
    wallet.fund(5_000).await;
    let api = FakeApiServer::start().await;
    let kube_dir = tempfile::tempdir().unwrap_or_else(|err| panic!("temp dir: {err}"));
    let kubeconfig = api.kubeconfig(kube_dir.path());
    let mut config = plugin_config(Template::Plain, &mint_url, "deny");
    config["tiers"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("the fixture has tiers"))
        .push(json!({
            "id": "box", "path_prefix": "/box", "amount": BOX,
            "lease": { "seconds": 3600 },
            "pod": {
                "spec": { "containers": [{
                    "name": "app",
                    "image": "nginxinc/nginx-unprivileged:1.27",
                    "resources": { "requests": { "cpu": "100m", "memory": "64Mi" },
                                   "limits": { "cpu": "500m", "memory": "128Mi" } }
                }] },
                "port": 8080
            }
        }));
    let kubeconfig_str = kubeconfig.display().to_string();
    let mut verifier = Verifier::start_with_env(
        &config,
        &[
            // The background pass every second: the keyset refresh takes
            // paygress_mint_up to 0 within seconds of the mint stopping (as
            // it does within a minute with the default), and
            // paygress_wallet_balance follows the payments as closely.
            ("PAYGRESS_RECOVERY_INTERVAL_SECS", "1"),
            ("ENABLE_POD_PROVISIONING", "true"),
            ("POD_NAMESPACE", "tenants"),
            ("KUBECONFIG", kubeconfig_str.as_str()),
        ],
    )
    .await;
    let upstream = EchoUpstream::start().await;
    let mut envoy = EnvoyProcess::spawn(
        Template::Plain,
        verifier.port(),
        upstream.port(),
        &config.to_string(),
    );
    let ready = envoy.ready_url();
    envoy
        .process
        .wait_http_ok(&ready, ENVOY_READY_TIMEOUT)
        .await;
    let envoy_url = paygress_tests::loopback_url(envoy.listen_port);
    let url = |path: &str| format!("{envoy_url}{path}");

    // Prometheus: the verifier as the ServiceMonitor's job, Envoy's admin
    // stats, the rules as shipped but for `for:`.
    let rules = rules_with_short_for(&repo_file(RULES));
    let prometheus = Prometheus::start(
        &[
            ScrapeJob::new(VERIFIER_JOB, &verifier.addr(), "/metrics"),
            ScrapeJob::new(
                "envoy-stats",
                &format!("127.0.0.1:{}", envoy.admin_port),
                "/stats/prometheus",
            ),
        ],
        &[("paygress-rules.yml", rules.as_str())],
    )
    .await;
    prometheus.wait_targets_up(2, Duration::from_secs(30)).await;
    // The dashboard's picture starts here.
    let start = unix_now();
    let loaded = prometheus.rules().await;
    assert_eq!(
        loaded.len(),
        alert_names().len(),
        "Prometheus loaded {} rules: {loaded:#?}",
        loaded.len()
    );

    // --- Real traffic.
    let answer = get(&url("/premium/report"), &[]).await;
    assert_eq!(answer.status, 402, "no token: {answer:?}");
    let token = wallet.token(PREMIUM).await;
    let answer = get(&url("/premium/report"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(answer.status, 200, "paid: {answer:?}");
    let answer = get(&url("/premium/report"), &[("X-Cashu", token.as_str())]).await;
    answer.assert_refused(400, "token_already_spent");
    // A second payment once the first is scraped: the amount received by
    // the tier grows between two samples (a counter's first sample counts
    // no increase).
    wait_value(
        &prometheus,
        "sum(paygress_received_amount_total{tier=\"premium\"})",
        PREMIUM as f64,
    )
    .await;
    let token = wallet.token(PREMIUM).await;
    let answer = get(&url("/premium/other"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(answer.status, 200, "paid again: {answer:?}");
    // A lease and its pass: through the filter (no callout) and at the
    // verifier's /auth (as NGINX and Traefik ask it).
    let token = wallet.token(COMPUTE).await;
    let answer = get(&url("/compute/job"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(answer.status, 200, "lease: {answer:?}");
    let (pass, _) = leases::pass_of_any_path("monitoring", &answer);
    let answer = get(&url("/compute/job"), &[("X-Paygress-Pass", pass.as_str())]).await;
    assert_eq!(answer.status, 200, "pass through the filter: {answer:?}");
    let answer = get(
        &verifier.auth("/compute/job"),
        &[("X-Paygress-Pass", pass.as_str())],
    )
    .await;
    assert_eq!(answer.status, 200, "pass at the verifier: {answer:?}");
    // A lease with a pod.
    let token = wallet.token(BOX).await;
    let answer = get(&url("/box/shell"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(answer.status, 200, "lease with a pod: {answer:?}");
    // Tokens for later, while the mint runs.
    let outage_token = wallet.token(PREMIUM).await;
    let mut unpaid_tokens = Vec::new();
    for _ in 0..3 {
        unpaid_tokens.push(wallet.token(PREMIUM).await);
    }

    // Prometheus has seen all of it.
    for (expr, min) in [
        ("sum(paygress_payments_total{outcome=\"paid\"})", 4.0),
        (
            "sum(paygress_payments_total{outcome=\"token_already_spent\"})",
            1.0,
        ),
        (
            "sum(paygress_received_amount_total{tier=\"premium\"})",
            2.0 * PREMIUM as f64,
        ),
        ("sum(paygress_passes_total{result=\"accepted\"})", 1.0),
        ("sum(paygress_leases_total{kind=\"sold\"})", 2.0),
        ("sum(paygress_pods_total{event=\"provisioned\"})", 1.0),
        ("sum(paygress_challenged_total)", 1.0),
        ("sum(paygress_pass_accepted_total)", 1.0),
        ("sum(paygress_granted_total)", 4.0),
        ("sum(paygress_verifier_refused_total)", 1.0),
        ("min(paygress_mint_up)", 1.0),
    ] {
        wait_value(&prometheus, expr, min).await;
    }

    // The wallet balance panel: the mint's balance is what the payments
    // brought (net of fees, as the amount received counts it).
    let (_, _, balance_expr) = dashboard_queries(&dashboard())
        .into_iter()
        .find(|(title, _, _)| title == BALANCE_PANEL)
        .unwrap_or_else(|| panic!("{DASHBOARD}: no panel {BALANCE_PANEL:?}"));
    let balance_expr = substitute(&balance_expr);
    let received_expr = format!("sum(paygress_received_amount_total{{mint=\"{mint_url}\"}})");
    let paid_in = 2 * PREMIUM + COMPUTE + BOX;
    prometheus
        .wait_for(
            &format!("{BALANCE_PANEL}: {balance_expr} = {received_expr}"),
            Duration::from_secs(30),
            || async {
                let received = prometheus
                    .query(&received_expr)
                    .await
                    .first()
                    .map(sample_value);
                let balances = prometheus.query(&balance_expr).await;
                let balance = balances
                    .iter()
                    .find(|s| s["metric"]["mint"] == mint_url.as_str())
                    .map(sample_value);
                match (balance, received) {
                    (Some(b), Some(r)) if b == r && b > 0.0 && b <= paid_in as f64 => Ok(()),
                    other => Err(format!("(balance, received) {other:?}: {balances:?}")),
                }
            },
        )
        .await;

    // The names as Prometheus has them are the names the dashboard reads:
    // every family of the verifier's /metrics and every filter counter in
    // Envoy's stats is a series in Prometheus.
    let exposition = verifier.metrics().await;
    let families: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(
        families,
        verifier_families(),
        "the verifier's /metrics families differ from verifier/src/metrics.rs"
    );
    for name in filter_names() {
        let samples = prometheus
            .query(&format!("{name}{{job=\"envoy-stats\"}}"))
            .await;
        assert_eq!(
            samples.len(),
            1,
            "{name} as Prometheus scraped it from Envoy: {samples:?}"
        );
    }

    // A second round, now that Prometheus has the first: the counters that
    // the first round created (a counter's first sample counts no increase)
    // rise on the dashboard's panels.
    let token = wallet.token(PREMIUM).await;
    let answer = get(&url("/premium/again"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(answer.status, 200, "paid, second round: {answer:?}");
    let token = wallet.token(COMPUTE).await;
    let answer = get(&url("/compute/again"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(answer.status, 200, "lease, second round: {answer:?}");
    let (pass, _) = leases::pass_of_any_path("monitoring", &answer);
    let answer = get(
        &verifier.auth("/compute/again"),
        &[("X-Paygress-Pass", pass.as_str())],
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "pass at the verifier, second round: {answer:?}"
    );
    let token = wallet.token(BOX).await;
    let answer = get(&url("/box/again"), &[("X-Cashu", token.as_str())]).await;
    assert_eq!(
        answer.status, 200,
        "lease with a pod, second round: {answer:?}"
    );
    for (expr, min) in [
        ("sum(paygress_passes_total{result=\"accepted\"})", 2.0),
        ("sum(paygress_leases_total{kind=\"sold\"})", 4.0),
        ("sum(paygress_pods_total{event=\"provisioned\"})", 2.0),
    ] {
        wait_value(&prometheus, expr, min).await;
    }

    // No alert while all is well (several evaluations after the traffic).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let alerts = unexplained(&prometheus, &[]).await;
    assert!(
        alerts.is_empty(),
        "alerts while all is well: {}",
        alert_summary(&alerts)
    );
    for rule in prometheus.rules().await {
        assert_eq!(
            rule["health"], "ok",
            "rule {} does not evaluate: {}",
            rule["name"], rule["lastError"]
        );
    }

    // --- The mint goes away.
    mint.stop();
    let answer = get(
        &url("/premium/outage"),
        &[("X-Cashu", outage_token.as_str())],
    )
    .await;
    answer.assert_refused(503, "mint_unavailable");
    wait_value(
        &prometheus,
        &format!("1 - min(paygress_mint_up{{mint=\"{mint_url}\"}})"),
        1.0,
    )
    .await;
    let states = wait_firing(
        &prometheus,
        "PaygressMintUnreachable",
        &json!({
            "job": VERIFIER_JOB,
            "instance": verifier.addr(),
            "mint": mint_url,
            "severity": "critical",
        }),
    )
    .await;
    assert_eq!(
        states,
        ["pending", "firing"],
        "PaygressMintUnreachable goes pending for its `for:`, then fires"
    );
    let others = unexplained(&prometheus, &["PaygressMintUnreachable"]).await;
    assert!(
        others.is_empty(),
        "only the mint is down: {}",
        alert_summary(&others)
    );

    // --- Every dashboard query has data (the mint errors too, now).
    for (title, legend, expr) in dashboard_queries(&dashboard()) {
        let expr = substitute(&expr);
        prometheus
            .wait_for(
                &format!("panel {title:?} ({legend}): {expr}"),
                Duration::from_secs(20),
                || async {
                    let samples = prometheus.query(&expr).await;
                    if samples.is_empty() {
                        Err("no data".to_string())
                    } else {
                        Ok(())
                    }
                },
            )
            .await;
    }

    // --- The dashboard as a picture, from the traffic to the outage.
    picture_of_the_dashboard(
        &prometheus,
        Window {
            start,
            end: unix_now(),
        },
    )
    .await;

    // --- The verifier goes away: Prometheus cannot scrape it, and the
    // filter cannot call out to it (failure_mode deny: 503).
    let instance = verifier.addr();
    verifier.stop();
    for token in &unpaid_tokens {
        let answer = get(&url("/premium/unpaid"), &[("X-Cashu", token.as_str())]).await;
        assert_eq!(answer.status, 503, "verifier down: {answer:?}");
    }
    wait_firing(
        &prometheus,
        "PaygressVerifierDown",
        &json!({ "job": VERIFIER_JOB, "instance": instance, "severity": "critical" }),
    )
    .await;
    wait_firing(
        &prometheus,
        "PaygressCalloutFailures",
        &json!({ "severity": "critical" }),
    )
    .await;
    let alerts = prometheus.alerts().await;
    assert!(
        named(&alerts, "PaygressAllowedUnpaid").is_empty(),
        "failure_mode deny lets nothing through unpaid: {}",
        alert_summary(&alerts)
    );
    drop(envoy);
    drop(api);
}
