//! Request-target normalisation for pricing.
//!
//! A price is decided on the path an upstream will most likely serve, so that
//! no spelling of a paid path is cheaper than the path itself:
//! the scheme and authority of an absolute URL and the query string and
//! fragment are dropped, percent-escapes are decoded once (`%2F` and `%5C`
//! included), `\` counts as `/`, empty and `.` segments are removed and `..`
//! removes the segment before it (never above the root).
//! `/free/../premium`, `/free/%2e%2e/premium` and `//premium/` all price as
//! `/premium`.
//!
//! Servers disagree on one more thing: `;` path parameters. Tomcat, Jetty and
//! Spring take `;…` off every segment before resolving dot segments, so that
//! `/free/..;/premium` is `/premium` to them, and `/premium;jsessionid=1` is
//! `/premium`; other servers read `..;` as a plain name. [`normalize`] gives
//! the plain reading and [`normalize_without_params`] the other; the price is
//! the higher of the two (see `CompiledConfig::price`).

/// The path of a request target (origin-form `/a/b?q` or absolute-form
/// `https://host/a/b?q`), normalised for pricing. Always starts with `/`.
pub fn normalize(target: &str) -> String {
    normalize_impl(target, false)
}

/// [`normalize`], reading the path as servers that drop `;` path parameters
/// from every segment do (Tomcat, Jetty, Spring): `/free/..;/premium` is
/// `/premium`, `/premium;jsessionid=1/x` is `/premium/x`.
pub fn normalize_without_params(target: &str) -> String {
    normalize_impl(target, true)
}

/// Whether a target may read differently with path parameters dropped.
pub fn has_params(target: &str) -> bool {
    target.contains(';')
        || target
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%3b"))
}

fn normalize_impl(target: &str, strip_params: bool) -> String {
    let path = strip_query(strip_scheme_and_authority(target));
    let decoded = percent_decode(path.as_bytes());
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = if strip_params {
            segment.split(';').next().unwrap_or("")
        } else {
            segment
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether `path` (normalised) lies under `prefix` (normalised), by whole
/// segments: `/premium` covers `/premium` and `/premium/x`, not `/premiumx`.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn strip_scheme_and_authority(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    match target.find("://") {
        Some(i) if target.get(..i).is_some_and(is_scheme) => {
            let after = target.get(i + 3..).unwrap_or("");
            match after.find(['/', '?', '#']) {
                Some(j) => after.get(j..).unwrap_or(""),
                None => "",
            }
        }
        _ => target,
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn strip_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => path.get(..i).unwrap_or(""),
        None => path,
    }
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            if let [h, l, after @ ..] = tail {
                if let (Some(h), Some(l)) = (hex_value(*h), hex_value(*l)) {
                    out.push(h << 4 | l);
                    rest = after;
                    continue;
                }
            }
        }
        out.push(b);
        rest = tail;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn normalises_spellings_of_one_path() {
        for (input, want) in [
            ("/premium", "/premium"),
            ("/premium/", "/premium"),
            ("//premium//x", "/premium/x"),
            ("/free/../premium", "/premium"),
            ("/free/%2e%2e/premium", "/premium"),
            ("/free%2F..%2Fpremium", "/premium"),
            ("/free\\..\\premium", "/premium"),
            ("/./premium/./x", "/premium/x"),
            ("/../../premium", "/premium"),
            ("/premium?x=/free", "/premium"),
            ("/premium#frag", "/premium"),
            ("https://example.com/premium/x?y", "/premium/x"),
            ("http://example.com", "/"),
            ("http://example.com?q", "/"),
            ("", "/"),
            ("premium", "/premium"),
            ("/%70remium", "/premium"),
            ("/bad%zzescape%", "/bad%zzescape%"),
            ("/%ff", "/\u{fffd}"),
        ] {
            assert_eq!(normalize(input), want, "input {input:?}");
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn prefixes_match_whole_segments() {
        assert!(has_prefix("/premium", "/premium"));
        assert!(has_prefix("/premium/x", "/premium"));
        assert!(!has_prefix("/premiumx", "/premium"));
        assert!(!has_prefix("/prem", "/premium"));
        assert!(has_prefix("/anything", "/"));
    }
}
