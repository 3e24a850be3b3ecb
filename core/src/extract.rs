//! Where a token comes from in a request: `X-Cashu: <token>` (NUT-24) first,
//! then `Authorization: Cashu <token>`, then `Authorization: Bearer <token>`
//! when the bearer credential is a Cashu token (so an application's own
//! bearer tokens, such as JWTs, are left alone).

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    XCashu,
    AuthorizationCashu,
    AuthorizationBearer,
}

/// A token candidate found in the headers (not decoded yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundToken<'a> {
    pub source: TokenSource,
    pub token: &'a str,
}

/// Finds the token among the request's `X-Cashu` and `Authorization` values.
/// An empty `X-Cashu` is returned as found (and fails to decode), so that the
/// client learns its header was malformed rather than being asked to pay.
pub fn find_token<'a>(
    x_cashu: Option<&'a str>,
    authorization: Option<&'a str>,
) -> Option<FoundToken<'a>> {
    if let Some(v) = x_cashu {
        return Some(FoundToken {
            source: TokenSource::XCashu,
            token: v.trim(),
        });
    }
    let auth = authorization?;
    // RFC 9110 separates scheme and credentials with spaces; a tab is
    // tolerated too, so that no spelling a lenient upstream would accept
    // carries a token past the filter.
    let (scheme, rest) = auth.trim().split_once([' ', '\t'])?;
    let credential = rest.trim();
    if scheme.eq_ignore_ascii_case("cashu") {
        return Some(FoundToken {
            source: TokenSource::AuthorizationCashu,
            token: credential,
        });
    }
    if scheme.eq_ignore_ascii_case("bearer") && looks_like_cashu(credential) {
        return Some(FoundToken {
            source: TokenSource::AuthorizationBearer,
            token: credential,
        });
    }
    None
}

/// Whether an `Authorization` value carries a Cashu token (and so must never
/// reach the upstream).
pub fn is_cashu_authorization(authorization: &str) -> bool {
    matches!(
        find_token(None, Some(authorization)),
        Some(FoundToken { .. })
    )
}

/// Whether a credential is a Cashu token by its prefix.
pub fn looks_like_cashu(credential: &str) -> bool {
    let c = credential.trim();
    let c = match c.get(..6) {
        Some(head) if head.eq_ignore_ascii_case("cashu:") => c.get(6..).unwrap_or(""),
        _ => c,
    };
    c.starts_with("cashuA") || c.starts_with("cashuB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn x_cashu_wins_over_authorization() {
        let found = find_token(Some(" cashuBxyz "), Some("Bearer cashuAabc")).unwrap();
        assert_eq!(found.source, TokenSource::XCashu);
        assert_eq!(found.token, "cashuBxyz");
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn authorization_schemes() {
        let f = find_token(None, Some("Cashu cashuBabc")).unwrap();
        assert_eq!(
            (f.source, f.token),
            (TokenSource::AuthorizationCashu, "cashuBabc")
        );
        let f = find_token(None, Some("bearer cashu:cashuAabc")).unwrap();
        assert_eq!(
            (f.source, f.token),
            (TokenSource::AuthorizationBearer, "cashu:cashuAabc")
        );
        // A JWT is the application's business, not a payment.
        assert_eq!(find_token(None, Some("Bearer eyJhbGciOi.x.y")), None);
        assert_eq!(find_token(None, Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(find_token(None, Some("Cashu")), None);
        assert_eq!(find_token(None, None), None);
        assert!(is_cashu_authorization("Cashu anything"));
        assert!(is_cashu_authorization("Bearer cashuBabc"));
        assert!(!is_cashu_authorization("Bearer eyJ"));
    }
}
