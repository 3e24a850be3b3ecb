//! Pricing by the payment contract: free paths first, then the
//! longest tier prefix, by whole segments, query and fragment ignored; a
//! path is priced at the highest price among its readings (as sent, decoded,
//! with `..`, `.`, empty segments, backslashes and percent-escapes resolved,
//! and each case-folded), so that no spelling of a paid path is cheaper than
//! the path.
//! Runs natively and on wasm32.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use paygress_core::path;
use paygress_core::{CompiledConfig, Price};

const CONFIG: &str = r#"{
  "unit": "sat",
  "mints": ["http://127.0.0.1:3338"],
  "default_amount": 1000,
  "free_paths": ["/free", "/healthz", "/premium/public"],
  "tiers": [
    { "id": "premium-plus", "path_prefix": "/premium-plus", "amount": 5000 },
    { "id": "premium",      "path_prefix": "/premium",      "amount": 2000 },
    { "id": "deep",         "path_prefix": "/premium/deep/er", "amount": 9000 },
    { "id": "api-v2",       "path_prefix": "/api/v2",       "amount": 3 }
  ]
}"#;

fn config() -> CompiledConfig {
    CompiledConfig::from_json(CONFIG).unwrap()
}

/// `None` for free, else the tier id ("" for the default price) and amount.
fn price(c: &CompiledConfig, target: &str) -> Option<(String, u64)> {
    match c.price(target) {
        Price::Free => None,
        Price::Paid(t) => Some((t.id.clone().unwrap_or_default(), t.amount)),
    }
}

fn paid(id: &str, amount: u64) -> Option<(String, u64)> {
    Some((id.to_string(), amount))
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn table_of_targets() {
    let c = config();
    let table: &[(&str, Option<(String, u64)>)] = &[
        // Free paths, by whole segments.
        ("/free", None),
        ("/free/", None),
        ("/free/x/y", None),
        ("/healthz", None),
        ("/healthz?verbose=1", None),
        ("/freex", paid("", 1000)),
        ("/fre", paid("", 1000)),
        // Free before tiers: a free path under a tier is free.
        ("/premium/public", None),
        ("/premium/public/a", None),
        ("/premium/publicx", paid("premium", 2000)),
        // Longest prefix wins, whole segments.
        ("/premium", paid("premium", 2000)),
        ("/premium/", paid("premium", 2000)),
        ("/premium/x", paid("premium", 2000)),
        ("/premiumx", paid("", 1000)),
        ("/premium-plus", paid("premium-plus", 5000)),
        ("/premium-plus/x", paid("premium-plus", 5000)),
        ("/premium-plusx", paid("", 1000)),
        ("/premium/deep", paid("premium", 2000)),
        ("/premium/deep/er", paid("deep", 9000)),
        ("/premium/deep/er/x", paid("deep", 9000)),
        ("/premium/deep/err", paid("premium", 2000)),
        ("/api/v2/x", paid("api-v2", 3)),
        ("/api/v1/x", paid("", 1000)),
        // Default price elsewhere, the root included.
        ("/", paid("", 1000)),
        ("", paid("", 1000)),
        ("/other", paid("", 1000)),
        // The query string and fragment are not part of the path.
        ("/premium?x=/free", paid("premium", 2000)),
        ("/free?x=/premium", None),
        ("/premium#/free", paid("premium", 2000)),
        ("/premium?", paid("premium", 2000)),
        // Dot segments: `/free/../premium` is `/premium`.
        ("/free/../premium", paid("premium", 2000)),
        ("/free/../premium-plus/x", paid("premium-plus", 5000)),
        ("/free/./../premium", paid("premium", 2000)),
        ("/./premium", paid("premium", 2000)),
        ("/../premium", paid("premium", 2000)),
        ("/../../../premium", paid("premium", 2000)),
        // ... but as sent, `/premium/../free` is under `/premium` to an
        // upstream that routes the raw path: the higher price applies.
        ("/premium/..", paid("premium", 2000)),
        ("/premium/../free", paid("premium", 2000)),
        ("/premium/x/../../free", paid("premium", 2000)),
        ("/premium/../free/x", paid("premium", 2000)),
        ("/premium/%2e%2e/free/x", paid("premium", 2000)),
        ("/premium/%2E%2E/free/x", paid("premium", 2000)),
        ("/premium%2f..%2ffree", paid("premium", 2000)),
        ("/premium-plus/./../free", paid("premium-plus", 5000)),
        ("/premium\\..\\free\\x", paid("premium", 2000)),
        ("/premium%5c..%5cfree", paid("premium", 2000)),
        ("/x/../free/..", paid("", 1000)),
        // Percent-encoded dots and slashes.
        ("/free/%2e%2e/premium", paid("premium", 2000)),
        ("/free/%2E%2E/premium", paid("premium", 2000)),
        ("/free/.%2e/premium", paid("premium", 2000)),
        ("/free%2f..%2fpremium", paid("premium", 2000)),
        ("/free%2F%2E%2E%2Fpremium", paid("premium", 2000)),
        ("/%70remium", paid("premium", 2000)),
        // Free only when every reading is free: as sent, `/%66ree` is not.
        ("/%66ree", paid("", 1000)),
        ("/premium%3Fx", paid("", 1000)),
        ("/free%3F/../premium", paid("premium", 2000)),
        // Backslashes and empty segments.
        ("/free\\..\\premium", paid("premium", 2000)),
        ("/free%5c..%5cpremium", paid("premium", 2000)),
        ("//premium", paid("premium", 2000)),
        ("///premium//x", paid("premium", 2000)),
        ("/premium//deep///er", paid("deep", 9000)),
        // `;` path parameters: the higher price of the plain reading and of
        // the Tomcat/Jetty/Spring reading (parameters dropped per segment).
        ("/free/..;/premium", paid("premium", 2000)),
        ("/free/..;x=1/premium", paid("premium", 2000)),
        ("/free/..%3B/premium", paid("premium", 2000)),
        ("/free/..%3b/premium", paid("premium", 2000)),
        ("/free/%2e%2e;/premium", paid("premium", 2000)),
        ("/premium/..;/free", paid("premium", 2000)),
        ("/premium;jsessionid=1", paid("premium", 2000)),
        ("/premium;a/deep;b/er;c", paid("deep", 9000)),
        ("/premium-plus;x", paid("premium-plus", 5000)),
        ("/;x/premium", paid("premium", 2000)),
        ("/free/.;/x", None),
        ("/free/x;y", None),
        ("/free;x", paid("", 1000)),
        ("/healthz;v=1", paid("", 1000)),
        // Absolute-form targets.
        ("http://example.com/premium/x?y", paid("premium", 2000)),
        ("https://example.com/free", None),
        ("https://example.com", paid("", 1000)),
        // Case: the case-folded reading counts (Express and ASP.NET route
        // case-insensitively), and a free path is free only as spelled.
        ("/Premium", paid("premium", 2000)),
        ("/PREMIUM/x", paid("premium", 2000)),
        ("/Premium-Plus/x", paid("premium-plus", 5000)),
        ("/%50REMIUM/x", paid("premium", 2000)),
        ("/PREMIUM/DEEP/ER", paid("deep", 9000)),
        ("/FREE", paid("", 1000)),
        ("/FREE/../premium-plus", paid("premium-plus", 5000)),
        ("/Free/../Premium", paid("premium", 2000)),
        // Malformed escapes stay as they are.
        ("/free%", paid("", 1000)),
        ("/free/%zz", None),
        ("/premium%2", paid("", 1000)),
    ];
    let mut failures = Vec::new();
    for (target, want) in table {
        let got = price(&c, target);
        if &got != want {
            failures.push(format!("{target:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn an_authority_that_hides_the_path_is_refused() {
    let c = config();
    for target in [
        "http://x?/premium-plus/r",
        "https://example.com?/free",
        "http://x#/premium",
        "http://user@x/premium",
        "http://a\\b/premium",
        "http://a b/premium",
        "http://x?",
    ] {
        assert_eq!(
            c.try_price(target),
            Err(path::TargetError::BadAuthority),
            "{target:?}"
        );
        // Never cheaper than the dearest tier when priced anyway.
        assert_eq!(c.price(target).amount(), 9000, "{target:?}");
    }
    assert_eq!(
        c.try_price("http://x/premium-plus/r?y").map(|p| p.amount()),
        Ok(5000)
    );
    assert_eq!(
        c.try_price("http://x:8080/a?b@c").map(|p| p.amount()),
        Ok(1000)
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn amount_of_a_price() {
    let c = config();
    assert_eq!(c.price("/free").amount(), 0);
    assert_eq!(c.price("/premium").amount(), 2000);
    assert_eq!(c.price("/nothing").amount(), 1000);
    let Price::Paid(t) = c.price("/nothing") else {
        panic!()
    };
    assert_eq!(
        (t.index, t.id.as_deref(), t.prefix.as_str()),
        (0, None, "/")
    );
    let Price::Paid(t) = c.price("/premium-plus") else {
        panic!()
    };
    assert_eq!(t.index, 1, "index of tiers[0] is 1");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn tier_order_in_the_config_does_not_matter() {
    // Shortest prefix first in the document: the longest still wins.
    let c = CompiledConfig::from_json(
        r#"{"mints":["http://m"],"tiers":[
            {"id":"a","path_prefix":"/a","amount":1},
            {"id":"ab","path_prefix":"/a/b","amount":2},
            {"id":"abc","path_prefix":"/a/b/c","amount":3}]}"#,
    )
    .unwrap();
    assert_eq!(price(&c, "/a/b/c/d"), paid("abc", 3));
    assert_eq!(price(&c, "/a/b/x"), paid("ab", 2));
    assert_eq!(price(&c, "/a/x"), paid("a", 1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn root_tier_and_root_free_path() {
    let all_paid = CompiledConfig::from_json(
        r#"{"mints":["http://m"],"free_paths":["/free"],"tiers":[{"id":"all","path_prefix":"/","amount":7}]}"#,
    )
    .unwrap();
    assert_eq!(price(&all_paid, "/anything"), paid("all", 7));
    assert_eq!(price(&all_paid, "/"), paid("all", 7));
    assert_eq!(price(&all_paid, "/free/x"), None);
    let all_free =
        CompiledConfig::from_json(r#"{"mints":["http://m"],"free_paths":["/"]}"#).unwrap();
    assert_eq!(price(&all_free, "/anything/at/all"), None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn normalized_paths_are_canonical() {
    let inputs = [
        "",
        "/",
        "//",
        "/a/b/",
        "/a/../b",
        "/%2e%2e/%2F/x",
        "/a%252e",
        "\\\\a",
        "http://h",
        "/\u{fffd}/%ff",
        "/a?b#c",
        "relative/path",
        "/a/./././b/../../c",
    ];
    for input in inputs
        .into_iter()
        .chain(["/a;b/..;/c", "/;x/y;z", "/..;/..;"])
    {
        let stripped = path::normalize_without_params(input);
        assert!(stripped.starts_with('/'), "{input:?} -> {stripped:?}");
        assert!(
            !stripped.contains([';', '?', '#', '\\']),
            "{input:?} -> {stripped:?}"
        );
        assert!(
            stripped.split('/').all(|s| s != "." && s != ".."),
            "{input:?} -> {stripped:?}"
        );
        let once = path::normalize(input);
        assert!(once.starts_with('/'), "{input:?} -> {once:?}");
        assert!(once == "/" || !once.ends_with('/'), "{input:?} -> {once:?}");
        assert!(!once.contains("//"), "{input:?} -> {once:?}");
        assert!(
            once.split('/').all(|s| s != "." && s != ".."),
            "{input:?} -> {once:?}"
        );
        assert!(!once.contains(['?', '#', '\\']), "{input:?} -> {once:?}");
        // Decoding happens once: an escaped `%` stays an escape.
        if input == "/a%252e" {
            assert_eq!(once, "/a%2e");
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn has_prefix_is_by_whole_segments() {
    assert!(path::has_prefix("/premium", "/premium"));
    assert!(path::has_prefix("/premium/x", "/premium"));
    assert!(!path::has_prefix("/premiumx", "/premium"));
    assert!(!path::has_prefix("/premium-plus", "/premium"));
    assert!(!path::has_prefix("/prem", "/premium"));
    assert!(path::has_prefix("/", "/"));
    assert!(path::has_prefix("/x", "/"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn path_parameters_are_a_second_reading() {
    assert_eq!(path::normalize("/free/..;/premium"), "/free/..;/premium");
    assert_eq!(
        path::normalize_without_params("/free/..;/premium"),
        "/premium"
    );
    assert_eq!(
        path::normalize_without_params("/premium;jsessionid=1/x?y;z"),
        "/premium/x"
    );
    assert!(path::has_params("/a;b"));
    assert!(path::has_params("/a%3Bb"));
    assert!(path::has_params("/a%3bb"));
    assert!(!path::has_params("/a%3"));
    assert!(!path::has_params("/premium"));
}

/// A pass opens its own lease tier's paths, and only those: a reading under
/// any other tier (cheaper or dearer) keeps the path shut.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_pass_opens_its_own_tier_only_under_every_reading() {
    let c = paygress_core::CompiledConfig::from_json(
        r#"{"mints":["http://127.0.0.1:3338"],"free_paths":["/free"],
            "tiers":[{"id":"compute","path_prefix":"/compute","amount":1000,"lease":{"seconds":60}},
                     {"id":"cheap","path_prefix":"/cheap","amount":1},
                     {"id":"dear","path_prefix":"/dear","amount":5000}],
            "pass_keys":[{"id":"k1","secret":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]}"#,
    )
    .unwrap();
    for opens in [
        "/compute",
        "/compute/x?y=1",
        "/free/../compute/x",
        "/compute/%2e%2e/compute/x",
        "http://h/compute/x",
    ] {
        assert!(c.pass_opens(opens, "compute"), "{opens}");
    }
    for shut in [
        "/cheap/x",
        "/dear/x",
        "/other",
        "/free/x",
        "/compute/../cheap/x",
        "/compute/%2e%2e/dear/x",
        "/cheap/../compute/x",
        "/computex",
        // As sent, this is not under /compute: the default price applies.
        "/COMPUTE/x",
        "http://h?/compute",
    ] {
        assert!(!c.pass_opens(shut, "compute"), "{shut}");
    }
    // A pass names a lease tier; a tier without a lease opens nothing.
    assert!(!c.pass_opens("/cheap/x", "cheap"));
    assert_eq!(c.tier_by_id("compute").unwrap().lease_seconds, Some(60));
    assert_eq!(c.pass_keys().len(), 1);
}
