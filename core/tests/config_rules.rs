//! Config validation (`data/configs.json`): every invalid document is refused
//! with an error that names the offending key and value; every valid one
//! compiles, with the defaults of docs/contract.md. Runs natively and on wasm32.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use paygress_core::config::{self, CompiledConfig, Config, ConfigError, MAX_TIMEOUT_MS};
use paygress_core::{FailureMode, MAX_AMOUNT};
use serde_json::Value;

/// RFC 7396 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn document(data: &Value, case: &Value) -> String {
    if let Some(text) = case.get("text") {
        return text.as_str().unwrap().to_string();
    }
    let mut doc = data["base"].clone();
    merge(&mut doc, &case["patch"]);
    doc.to_string()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn invalid_configs_name_the_key_and_the_value() {
    let data = common::json(common::CONFIGS);
    let cases = data["invalid"].as_array().unwrap();
    assert!(cases.len() >= 50);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = document(&data, case);
        let err = match CompiledConfig::from_json(&text) {
            Ok(_) => {
                failures.push(format!("{name}: accepted {text}"));
                continue;
            }
            Err(e) => e,
        };
        let want = &case["error"];
        let message = err.to_string();
        match (&err, want["kind"].as_str().unwrap()) {
            (ConfigError::Invalid { key, value, reason }, "Invalid") => {
                if key != want["key"].as_str().unwrap() || value != want["value"].as_str().unwrap()
                {
                    failures.push(format!(
                        "{name}: got key {key} value {value}, want {} {}",
                        want["key"], want["value"]
                    ));
                }
                assert!(!reason.is_empty());
                // The message a operator reads carries both.
                assert!(message.contains(key.as_str()), "{message}");
                assert!(message.contains(value.as_str()), "{message}");
            }
            (ConfigError::Parse(m), "Parse") => {
                for needle in want["contains"].as_array().unwrap() {
                    let needle = needle.as_str().unwrap();
                    if !m.contains(needle) {
                        failures.push(format!("{name}: {m:?} lacks {needle:?}"));
                    }
                }
            }
            (e, kind) => failures.push(format!("{name}: want {kind}, got {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn valid_configs_compile() {
    let data = common::json(common::CONFIGS);
    for case in data["valid"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = document(&data, case);
        CompiledConfig::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn defaults_are_those_of_the_design() {
    let c = CompiledConfig::from_json(r#"{"mints":["http://127.0.0.1:3338/"]}"#).unwrap();
    assert_eq!(c.unit, "sat");
    assert_eq!(c.unit, config::DEFAULT_UNIT);
    assert_eq!(c.default_amount(), 1000);
    assert_eq!(c.default_amount(), config::DEFAULT_AMOUNT);
    assert_eq!(c.mints, vec!["http://127.0.0.1:3338".to_string()]);
    assert!(c.free_paths().is_empty());
    assert_eq!(c.tier_count(), 1);
    assert_eq!(c.failure_mode, FailureMode::Deny);
    assert_eq!(c.verifier.cluster, "paygress-verifier");
    assert_eq!(c.verifier.authority, "paygress-verifier");
    assert_eq!(c.verifier.timeout_ms, 3000);
    assert_eq!(c.verifier.path, "/auth");
    assert_eq!(MAX_TIMEOUT_MS, 60_000);
    assert_eq!(MAX_AMOUNT, 9_007_199_254_740_992);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn compiled_config_keeps_tiers_in_config_order_with_stable_indices() {
    let data = common::json(common::CONFIGS);
    let c = CompiledConfig::from_json(&data["base"].to_string()).unwrap();
    let tiers = c.price_tiers();
    assert_eq!(tiers.len(), 3);
    assert_eq!(c.tier_count(), 3);
    let got: Vec<(usize, Option<&str>, &str, u64)> = tiers
        .iter()
        .map(|t| (t.index, t.id.as_deref(), t.prefix.as_str(), t.amount))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, None, "/", 1000),
            (1, Some("premium-plus"), "/premium-plus", 5000),
            (2, Some("premium"), "/premium", 1000),
        ]
    );
    assert_eq!(c.free_paths(), ["/free", "/healthz"]);
    assert!(c.accepts_mint("http://127.0.0.1:3338"));
    assert!(!c.accepts_mint("http://127.0.0.1:3338/"));
    assert!(!c.accepts_mint("http://127.0.0.1:3339"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn from_value_and_from_json_agree() {
    let data = common::json(common::CONFIGS);
    let base = data["base"].clone();
    let a = Config::from_value(base.clone()).unwrap();
    let b = Config::from_json(&base.to_string()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.compile().unwrap(), b.compile().unwrap());
    // A config serialises back to a document that parses to itself.
    let again = Config::from_json(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(again, a);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn mints_are_normalised_as_cdk_does() {
    let c = CompiledConfig::from_json(
        r#"{"mints":["HTTPS://Mint.Example.com/Cashu/API/","http://127.0.0.1:3338//"]}"#,
    )
    .unwrap();
    assert_eq!(
        c.mints,
        vec![
            "https://mint.example.com/Cashu/API".to_string(),
            "http://127.0.0.1:3338".to_string()
        ]
    );
}
