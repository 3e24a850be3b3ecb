//! Request-target readings for pricing.
//!
//! Servers disagree on what path a request target names, so a price is
//! decided on every reading an upstream might make of it, and the highest
//! wins (see `CompiledConfig::try_price`): no spelling of a paid path is
//! cheaper than the path itself.
//!
//! * **As sent** ([`raw_path`]): the path bytes as they arrived, query and
//!   fragment dropped. An upstream that routes the raw path (Express
//!   `/premium/*`, axum `{*rest}`, Flask `path:`) serves `/premium/../free/x`
//!   from its `/premium` route.
//! * **Decoded** ([`decoded_path`]): percent-escapes decoded once, dot
//!   segments kept: `/premium%2f..%2ffree` is `/premium/../free`; and the
//!   same with `\` read as `/` (IIS): `/premium\..\free` is under `/premium`.
//! * **Resolved** ([`normalize`]): escapes decoded once (`%2F` and `%5C`
//!   included), `\` counts as `/`, empty and `.` segments removed and `..`
//!   removing the segment before it (never above the root):
//!   `/free/../premium`, `/free/%2e%2e/premium` and `//premium/` are
//!   `/premium`.
//! * **Case-folded**: each of the above compared ASCII case-insensitively
//!   (Express and ASP.NET route `/PREMIUM` as `/premium`).
//!
//! One more disagreement: `;` path parameters. Tomcat, Jetty and Spring take
//! `;…` off every segment before resolving dot segments, so that
//! `/free/..;/premium` is `/premium` to them, and `/premium;jsessionid=1` is
//! `/premium`; other servers read `..;` as a plain name.
//! [`normalize_without_params`] gives that reading.
//!
//! The authority of an absolute-form target ends at its first `/`; one that
//! holds `?`, `#`, `@`, `\` or whitespace cannot be read the same way by
//! every server, and [`path_part`] refuses it.

/// Why a request target cannot be priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// The authority of an absolute-form target holds `?`, `#`, `@`, `\` or
    /// whitespace (NGINX forwards `Host: x?` into `X-Original-URL` as
    /// `http://x?/premium`).
    BadAuthority,
}

impl core::fmt::Display for TargetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TargetError::BadAuthority => {
                f.write_str("the request's authority holds '?', '#', '@', '\\' or whitespace")
            }
        }
    }
}

/// The path and query of a request target: origin-form (`/a/b?q`) as it is,
/// absolute-form (`https://host/a/b?q`) after its authority, which ends at
/// the first `/`.
pub fn path_part(target: &str) -> Result<&str, TargetError> {
    if target.starts_with('/') {
        return Ok(target);
    }
    match target.find("://") {
        Some(i) if target.get(..i).is_some_and(is_scheme) => {
            let after = target.get(i + 3..).unwrap_or("");
            let (authority, rest) = match after.find('/') {
                Some(j) => (after.get(..j).unwrap_or(""), after.get(j..).unwrap_or("")),
                None => (after, ""),
            };
            if authority
                .chars()
                .any(|c| matches!(c, '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control())
            {
                return Err(TargetError::BadAuthority);
            }
            Ok(rest)
        }
        _ => Ok(target),
    }
}

/// The path as sent: [`path_part`]'s path without query and fragment, with
/// nothing decoded or resolved; refused for a bad authority (see [`path_part`]).
pub fn raw_path(target: &str) -> Result<&str, TargetError> {
    path_part(target).map(strip_query)
}

/// The path with percent-escapes decoded once and nothing resolved (a
/// leading `/` added when missing).
pub fn decoded_path(raw: &str) -> String {
    let decoded = percent_decode(raw.as_bytes());
    let text = String::from_utf8_lossy(&decoded);
    if text.starts_with('/') {
        text.into_owned()
    } else {
        let mut out = String::with_capacity(text.len() + 1);
        out.push('/');
        out.push_str(&text);
        out
    }
}

/// Whether every reading of `raw` (a path without query) is the same path:
/// lower-case ASCII letters, digits, `-`, `_`, `~`, `.` and `/` only, and no
/// empty (but a trailing one), `.` or `..` segment. Most requests are plain
/// and are priced from one reading.
pub fn is_plain(raw: &str) -> bool {
    if !raw.starts_with('/') {
        return false;
    }
    let chars_ok = raw.bytes().all(|b| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'-' | b'_' | b'~' | b'.' | b'/')
    });
    if !chars_ok {
        return false;
    }
    let mut segments = raw.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Whether a path holds an ASCII upper-case letter (its case-folded reading
/// may differ).
pub fn has_upper(path: &str) -> bool {
    path.bytes().any(|b| b.is_ascii_uppercase())
}

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

/// Whether `path` lies under `prefix` (normalised), by whole segments:
/// `/premium` covers `/premium` and `/premium/x`, not `/premiumx`.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// [`has_prefix`], comparing ASCII letters case-insensitively.
pub fn has_prefix_folded(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let (path, prefix) = (path.as_bytes(), prefix.as_bytes());
    path.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        && matches!(path.get(prefix.len()), None | Some(b'/'))
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

/// The path without its query string and fragment.
pub fn strip_query(path: &str) -> &str {
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
