//! Mint URL normalisation, matching cdk's `MintUrl`: no trailing `/`, scheme
//! and host in lower case, the path kept as it is (inner `//` included).
//!
//! Where cdk accepts a URL that this module refuses (no `http`/`https` scheme,
//! no host, whitespace anywhere, a query or a fragment, a second `://`),
//! refusing is deliberate; for every URL both accept, the normalised forms are
//! equal (tested against cdk in `tests/cdk_roundtrip.rs`).

use thiserror::Error;

/// Why a mint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MintUrlError {
    #[error("mint URL is empty")]
    Empty,
    #[error("mint URL {0:?} has no http:// or https:// scheme")]
    Scheme(String),
    #[error("mint URL {0:?} has no host")]
    NoHost(String),
    #[error("mint URL {0:?} contains whitespace, a query, a fragment or a second ://")]
    Invalid(String),
}

/// Normalises a mint URL as cdk compares them.
pub fn normalize(url: &str) -> Result<String, MintUrlError> {
    // No `trim()`: cdk keeps surrounding spaces in the URL (and so reads
    // " http://a" as another mint than "http://a"); whitespace anywhere is
    // refused below instead of being silently dropped.
    let trimmed = url.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(MintUrlError::Empty);
    }
    if trimmed
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(MintUrlError::Invalid(url.to_string()));
    }
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| MintUrlError::Scheme(url.to_string()))?;
    // `str::to_lowercase`, not the ASCII one: cdk lower-cases with Unicode rules.
    let scheme = scheme.to_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(MintUrlError::Scheme(url.to_string()));
    }
    // cdk keeps only what lies between the first and the second `://`
    // (`http://a/b://c` becomes `http://a/b`): refuse such a URL rather than
    // read it differently.
    if rest.contains("://") {
        return Err(MintUrlError::Invalid(url.to_string()));
    }
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) => (host, path),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(MintUrlError::NoHost(url.to_string()));
    }
    let host = host.to_lowercase();
    // The trailing `/`s are gone already; leading ones are kept, as cdk keeps
    // them (`http://h//a` stays `http://h//a`).
    if path.is_empty() {
        Ok(format!("{scheme}://{host}"))
    } else {
        Ok(format!("{scheme}://{host}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn normalises_like_cdk() {
        assert_eq!(
            normalize("HTTPS://Mint.Example.COM/").unwrap(),
            "https://mint.example.com"
        );
        assert_eq!(
            normalize("http://127.0.0.1:3338").unwrap(),
            "http://127.0.0.1:3338"
        );
        assert_eq!(
            normalize("https://mint.example.com/Cashu/api/").unwrap(),
            "https://mint.example.com/Cashu/api"
        );
        assert!(normalize("").is_err());
        assert!(normalize("mint.example.com").is_err());
        assert!(normalize("ftp://mint.example.com").is_err());
        assert!(normalize("https:///path").is_err());
        assert!(normalize("https://a b").is_err());
    }
}
