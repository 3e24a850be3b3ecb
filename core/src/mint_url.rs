//! Mint URL normalisation, matching cdk's `MintUrl`: no trailing `/`, scheme
//! and host in lower case, the path kept as it is.

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
    #[error("mint URL {0:?} contains whitespace, a query or a fragment")]
    Invalid(String),
}

/// Normalises a mint URL as cdk compares them.
pub fn normalize(url: &str) -> Result<String, MintUrlError> {
    let trimmed = url.trim().trim_end_matches('/');
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
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(MintUrlError::Scheme(url.to_string()));
    }
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) => (host, path),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(MintUrlError::NoHost(url.to_string()));
    }
    let host = host.to_ascii_lowercase();
    let path = path.trim_matches('/');
    if path.is_empty() {
        Ok(format!("{scheme}://{host}"))
    } else {
        Ok(format!("{scheme}://{host}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
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
