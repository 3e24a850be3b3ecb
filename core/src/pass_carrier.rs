//! Where a pass comes from in a request, how it is kept from the upstream,
//! and how it goes back to the client.
//!
//! A pass is presented in `X-Paygress-Pass`, in `Authorization: Bearer
//! p1.…`, or in the `paygress_pass` cookie, looked for in that order. Every
//! carrier is removed before the request goes upstream.

use crate::pass::VERSION;

/// The cookie that carries a pass.
pub const COOKIE_NAME: &str = "paygress_pass";

/// Where a pass was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassSource {
    Header,
    Bearer,
    Cookie,
}

/// A pass found in a request (not checked yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundPass<'a> {
    pub source: PassSource,
    pub pass: &'a str,
}

/// The pass in an `Authorization` value, if it is `Bearer p1.…`.
pub fn bearer_pass(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once([' ', '\t'])?;
    let credential = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && is_pass_shaped(credential)).then_some(credential)
}

/// Whether a credential has the shape of a pass (`p1.` and three more
/// dot-separated parts), so that an application's own bearer tokens (JWTs
/// have three parts) are left alone.
pub fn is_pass_shaped(credential: &str) -> bool {
    credential
        .strip_prefix(VERSION)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| rest.split('.').count() == 3)
}

/// The `paygress_pass` value of one `Cookie` header, if it has one (the
/// cookie's name compared without regard to ASCII case).
pub fn cookie_pass(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case(COOKIE_NAME)
            .then(|| value.trim().trim_matches('"'))
    })
}

/// A `Cookie` header without its `paygress_pass` cookies: `None` when it had
/// none (leave it as it is), `Some("")` when nothing else was in it (drop it).
pub fn without_pass_cookie(cookie_header: &str) -> Option<String> {
    let is_pass = |pair: &str| {
        pair.split_once('=')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case(COOKIE_NAME))
    };
    if !cookie_header.split(';').any(is_pass) {
        return None;
    }
    let kept: Vec<&str> = cookie_header
        .split(';')
        .filter(|pair| !is_pass(pair) && !pair.trim().is_empty())
        .map(str::trim)
        .collect();
    Some(kept.join("; "))
}

/// Finds a pass: `X-Paygress-Pass` first, then a `Bearer` pass, then the
/// cookie. An empty `X-Paygress-Pass` is returned as found (and fails to
/// verify), so that the client learns its header was malformed.
pub fn find_pass<'a>(
    header: Option<&'a str>,
    mut authorizations: impl Iterator<Item = &'a str>,
    mut cookies: impl Iterator<Item = &'a str>,
) -> Option<FoundPass<'a>> {
    if let Some(pass) = header {
        return Some(FoundPass {
            source: PassSource::Header,
            pass: pass.trim(),
        });
    }
    if let Some(pass) = authorizations.find_map(bearer_pass) {
        return Some(FoundPass {
            source: PassSource::Bearer,
            pass,
        });
    }
    cookies.find_map(cookie_pass).map(|pass| FoundPass {
        source: PassSource::Cookie,
        pass,
    })
}

/// The `Set-Cookie` value that hands a pass to a browser: scoped to the
/// tier's paths, out of scripts' reach, and gone when the lease ends.
pub fn set_cookie(pass: &str, path: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={pass}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The `Set-Cookie` value that makes a browser drop the pass cookie of
/// `path` (answered with a pass that cannot be used: the browser would
/// otherwise send it again until it expires).
pub fn clear_cookie(path: &str, secure: bool) -> String {
    set_cookie("", path, 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "p1.k1.eyJsIjoieCJ9.c2ln";

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn a_pass_is_found_in_each_carrier_in_order() {
        let none = || std::iter::empty::<&str>();
        let cookie = format!("a=1; {COOKIE_NAME}={PASS}; b=2");
        let bearer = format!("Bearer {PASS}");
        assert_eq!(
            find_pass(Some(" x "), [bearer.as_str()].into_iter(), none()),
            Some(FoundPass {
                source: PassSource::Header,
                pass: "x"
            })
        );
        assert_eq!(
            find_pass(
                None,
                ["Basic abc", bearer.as_str()].into_iter(),
                [cookie.as_str()].into_iter()
            ),
            Some(FoundPass {
                source: PassSource::Bearer,
                pass: PASS
            })
        );
        assert_eq!(
            find_pass(
                None,
                ["Bearer eyJ.a.b"].into_iter(),
                ["x=1", cookie.as_str()].into_iter()
            ),
            Some(FoundPass {
                source: PassSource::Cookie,
                pass: PASS
            })
        );
        assert_eq!(
            find_pass(None, none(), ["paygress_passx=1"].into_iter()),
            None
        );
        assert_eq!(cookie_pass("PAYGRESS_PASS=\"v\""), Some("v"));
        assert!(!is_pass_shaped("p1.a.b"));
        assert!(!is_pass_shaped("p2.a.b.c"));
        assert!(is_pass_shaped("p1.a.b.c"));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn the_pass_cookie_is_cut_out_and_the_others_kept() {
        assert_eq!(without_pass_cookie("a=1; b=2"), None);
        assert_eq!(
            without_pass_cookie(&format!("a=1; {COOKIE_NAME}=x;b=2;;Paygress_Pass=y")),
            Some("a=1; b=2".to_string())
        );
        assert_eq!(
            without_pass_cookie(&format!(" {COOKIE_NAME}=x ")),
            Some(String::new())
        );
        let c = set_cookie(PASS, "/compute", 3599, false);
        assert_eq!(
            c,
            format!("{COOKIE_NAME}={PASS}; Path=/compute; Max-Age=3599; HttpOnly; SameSite=Lax")
        );
        assert!(set_cookie(PASS, "/c", 1, true).ends_with("; Secure"));
        assert_eq!(
            clear_cookie("/compute", false),
            format!("{COOKIE_NAME}=; Path=/compute; Max-Age=0; HttpOnly; SameSite=Lax")
        );
    }
}
