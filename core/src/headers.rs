//! Header names of the payment contract (lower case, as HTTP/2 and Envoy carry them).

/// NUT-24: the token on a request, the payment request on a 402.
pub const X_CASHU: &str = "x-cashu";
/// `Authorization: Bearer <token>` or `Authorization: Cashu <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// Set on a paid request going upstream: always `true`.
pub const X_PAYMENT_VERIFIED: &str = "x-payment-verified";
/// Set on a paid request going upstream: the amount received, net of mint fees.
pub const X_PAYMENT_AMOUNT: &str = "x-payment-amount";
/// Set on a paid request going upstream: the tier that priced it.
pub const X_PAYMENT_TIER: &str = "x-payment-tier";
/// Set on a paid request going upstream: a pseudonymous payer id.
pub const X_USER_ID: &str = "x-user-id";
/// Set on a paid request going upstream when a pod was provisioned.
pub const X_PROVISIONED_POD: &str = "x-provisioned-pod";
/// Set on a request going upstream on a lease: the lease's id.
pub const X_PAYGRESS_LEASE: &str = "x-paygress-lease";

/// A lease's pass: on the answer that sold or extended the lease, and on a
/// request that presents it (never upstream).
pub const X_PAYGRESS_PASS: &str = "x-paygress-pass";
/// Request cookies (one carries the pass) and the answer's cookie.
pub const COOKIE: &str = "cookie";
pub const SET_COOKIE: &str = "set-cookie";

/// The filter's callout: how many milliseconds the caller waits for the
/// verifier's answer. The verifier begins no swap it could not finish in
/// that time.
pub const X_PAYGRESS_DEADLINE_MS: &str = "x-paygress-deadline-ms";

/// A caller may raise (never lower) the price with this header.
pub const X_REQUIRED_AMOUNT: &str = "x-required-amount";

/// NGINX `auth_request`: the original request.
pub const X_ORIGINAL_URL: &str = "x-original-url";
pub const X_ORIGINAL_METHOD: &str = "x-original-method";
/// Traefik `forwardAuth` and the filter's callout: the original request.
pub const X_FORWARDED_URI: &str = "x-forwarded-uri";
pub const X_FORWARDED_METHOD: &str = "x-forwarded-method";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// The verifier's NGINX mode: the real status and body, carried in headers of
/// a 401 because `auth_request` turns other statuses into 500.
pub const X_PAYGRESS_STATUS: &str = "x-paygress-status";
pub const X_PAYGRESS_BODY: &str = "x-paygress-body";

/// Prefix of every payment header; any client-sent header with it is removed.
pub const X_PAYMENT_PREFIX: &str = "x-payment-";

/// Headers that only Paygress may set. A client-sent copy of any of them is
/// removed on every path before the request goes upstream.
pub const RESERVED: [&str; 5] = [
    X_PAYMENT_VERIFIED,
    X_PAYMENT_AMOUNT,
    X_USER_ID,
    X_PROVISIONED_POD,
    X_PAYGRESS_LEASE,
];

/// Whether a client-sent header must be stripped (case-insensitive):
/// any `X-Payment-*`, `X-User-ID`, `X-Provisioned-Pod` or `X-Paygress-Lease`.
pub fn is_reserved(name: &str) -> bool {
    // Without allocating: this runs on every header of every request.
    let prefix = name.as_bytes().get(..X_PAYMENT_PREFIX.len());
    prefix.is_some_and(|p| p.eq_ignore_ascii_case(X_PAYMENT_PREFIX.as_bytes()))
        || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// The headers that the verifier sets on a grant and that are copied onto the
/// upstream request.
pub const GRANT_HEADERS: [&str; 6] = [
    X_PAYMENT_VERIFIED,
    X_PAYMENT_AMOUNT,
    X_PAYMENT_TIER,
    X_USER_ID,
    X_PROVISIONED_POD,
    X_PAYGRESS_LEASE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn every_grant_header_is_reserved() {
        // The filter relies on it: a client's copy of a grant header is
        // removed with the reserved ones, before any grant is added.
        for name in GRANT_HEADERS {
            assert!(is_reserved(name), "{name} is a grant header, not reserved");
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn reserved_headers_are_recognised_in_any_case() {
        assert!(is_reserved("X-Payment-Verified"));
        assert!(is_reserved("x-payment-anything"));
        assert!(is_reserved("X-USER-ID"));
        assert!(is_reserved("x-provisioned-pod"));
        assert!(is_reserved("X-Paygress-Lease"));
        assert!(!is_reserved("x-paygress-pass"));
        assert!(!is_reserved("x-cashu"));
        assert!(!is_reserved("x-paymentverified"));
        assert!(!is_reserved("authorization"));
    }
}
