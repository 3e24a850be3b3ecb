//! The lease journey every ingress must carry: buy a lease on `/compute`,
//! go through many times on the pass in each carrier (header, cookie,
//! Bearer) without the pass or a spoofed grant header reaching the
//! upstream, meet the other tier's 402, have forged, truncated and re-signed
//! passes refused, meet the 402 of an expired pass, top up (also in a race)
//! and go on.
//!
//! Expiry is tested without sleeping: the test signs, with the fixture's
//! key, the pass the verifier would have issued at an earlier time (what the
//! clock moving on would make of a real one): for a lease the verifier does
//! not know to run on (a 402), and for the real lease, which runs on (a
//! fresh pass, no payment).

use std::time::{SystemTime, UNIX_EPOCH};

use paygress_core::pass::{self, Claims};
use serde_json::json;

use super::{get, Site};
use crate::fixture::{
    pass_key, COMPUTE, COMPUTE_LEASE_SECONDS, OLD_PASS_KEY_ID, OLD_PASS_KEY_SECRET, PASS_KEY_ID,
    PASS_KEY_SECRET, PREMIUM, RETIRED_PASS_KEY_ID, RETIRED_PASS_KEY_SECRET,
};
use crate::http::Answer;

/// How a proxy hands the pass back to the client.
#[derive(Debug, Clone, Copy)]
pub struct LeaseExpect {
    /// Whether the client gets `X-Paygress-Pass` (Traefik's forwardAuth
    /// passes only the cookie).
    pub pass_header: bool,
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pass a grant handed back: from `Set-Cookie` (checked against the
/// contract's attributes and against `X-Paygress-Pass` when the proxy
/// passes that too), with its claims.
pub fn pass_of(name: &str, answer: &Answer, expect: &LeaseExpect) -> (String, Claims) {
    let cookie = answer
        .headers
        .get("set-cookie")
        .and_then(|all| all.iter().find(|c| c.starts_with("paygress_pass=")))
        .unwrap_or_else(|| panic!("[{name}] no paygress_pass cookie: {answer:?}"));
    let (pass, attributes) = cookie
        .trim_start_matches("paygress_pass=")
        .split_once(';')
        .unwrap_or_else(|| panic!("[{name}] cookie without attributes: {cookie}"));
    let (_, claims) = pass::decode_unverified(pass)
        .unwrap_or_else(|e| panic!("[{name}] the cookie's pass cannot be read ({e}): {cookie}"));
    let attributes: Vec<&str> = attributes.split(';').map(str::trim).collect();
    for wanted in ["Path=/compute", "HttpOnly", "SameSite=Lax"] {
        assert!(attributes.contains(&wanted), "[{name}] {cookie}");
    }
    let max_age: u64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("[{name}] no Max-Age: {cookie}"));
    let left = claims.expires_at.saturating_sub(unix_now());
    assert!(
        max_age.abs_diff(left) <= 5,
        "[{name}] Max-Age {max_age}, lease left {left}: {cookie}"
    );
    if expect.pass_header {
        assert_eq!(
            answer.header("x-paygress-pass"),
            Some(pass),
            "[{name}] X-Paygress-Pass and the cookie differ: {answer:?}"
        );
    }
    (pass.to_string(), claims)
}

/// The pass a grant handed back in `X-Paygress-Pass`, with its claims (any
/// tier's path).
pub fn pass_of_any_path(name: &str, answer: &Answer) -> (String, Claims) {
    let pass = answer
        .header("x-paygress-pass")
        .unwrap_or_else(|| panic!("[{name}] no X-Paygress-Pass: {answer:?}"));
    let (_, claims) = pass::decode_unverified(pass)
        .unwrap_or_else(|e| panic!("[{name}] the pass cannot be read ({e}): {pass}"));
    (pass.to_string(), claims)
}

/// Signs claims with one of the fixture's keys.
fn signed(claims: &Claims, id: &str, secret: &str) -> String {
    pass::sign(claims, &pass_key(id, secret))
}

/// Asserts that a request on the pass went through, and that the upstream
/// saw the lease's headers and nothing of the pass.
async fn goes_through(
    name: &str,
    url: &str,
    headers: &[(&str, &str)],
    site: &impl Site,
    claims: &Claims,
    pass: &str,
) {
    let before = site.upstream().count();
    let answer = get(url, headers).await;
    assert_eq!(answer.status, 200, "[{name}] {url} {headers:?}: {answer:?}");
    assert_eq!(site.upstream().count(), before + 1, "[{name}] not upstream");
    let seen = site.upstream().last();
    assert_eq!(
        seen.one("x-payment-verified"),
        Some("true"),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-paygress-lease"),
        Some(claims.lease.as_str()),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-user-id"),
        Some(claims.payer.as_str()),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-payment-tier"),
        Some("compute"),
        "[{name}] {seen:?}"
    );
    for (header, value) in seen.headers.iter() {
        assert!(
            !value.contains(pass) && !value.contains("p1."),
            "[{name}] the pass reached the upstream in {header}: {seen:?}"
        );
    }
    assert_eq!(seen.one("x-paygress-pass"), None, "[{name}] {seen:?}");
}

/// Asserts a 402 for `amount` that did not reach the upstream.
async fn payment_required(
    name: &str,
    url: &str,
    headers: &[(&str, &str)],
    site: &impl Site,
    amount: u64,
) {
    let before = site.upstream().count();
    let answer = get(url, headers).await;
    assert_eq!(answer.status, 402, "[{name}] {url} {headers:?}: {answer:?}");
    assert_eq!(
        answer.json()["amount"],
        json!(amount),
        "[{name}] {answer:?}"
    );
    assert!(answer.header("x-cashu").is_some(), "[{name}] {answer:?}");
    assert_eq!(
        site.upstream().count(),
        before,
        "[{name}] a 402 reached the upstream"
    );
}

/// Asserts a 400 `pass_invalid` that did not reach the upstream.
async fn pass_invalid(name: &str, url: &str, pass: &str, site: &impl Site) {
    let before = site.upstream().count();
    let answer = get(url, &[("X-Paygress-Pass", pass)]).await;
    answer.assert_refused(400, "pass_invalid");
    assert_eq!(
        site.upstream().count(),
        before,
        "[{name}] {pass}: reached the upstream"
    );
}

/// Buys a lease with a fresh token (and, for a top-up, a pass): the grant's
/// pass and claims.
pub async fn buy(
    name: &str,
    url: &str,
    site: &impl Site,
    with_pass: Option<&str>,
    expect: &LeaseExpect,
) -> (String, Claims) {
    let token = site.wallet().token(COMPUTE).await;
    let mut headers = vec![("X-Cashu", token.as_str())];
    if let Some(p) = with_pass {
        headers.push(("X-Paygress-Pass", p));
    }
    let answer = get(url, &headers).await;
    assert_eq!(answer.status, 200, "[{name}] buying a lease: {answer:?}");
    let seen = site.upstream().last();
    assert_eq!(
        seen.one("x-payment-verified"),
        Some("true"),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-payment-amount"),
        Some(COMPUTE.to_string().as_str()),
        "[{name}] {seen:?}"
    );
    assert_eq!(
        seen.one("x-cashu"),
        None,
        "[{name}] the token went upstream: {seen:?}"
    );
    assert_eq!(
        seen.one("x-paygress-pass"),
        None,
        "[{name}] the pass went upstream: {seen:?}"
    );
    let (pass, claims) = pass_of(name, &answer, expect);
    assert_eq!(
        seen.one("x-paygress-lease"),
        Some(claims.lease.as_str()),
        "[{name}] {seen:?}"
    );
    assert_eq!(claims.tier, "compute", "[{name}]");
    (pass, claims)
}

/// The whole journey through the proxy at `base`.
pub async fn lease_journey(name: &str, base: &str, site: &impl Site, expect: &LeaseExpect) {
    let url = format!("{base}/compute/job");

    eprintln!("[{name}] a lease tier's 402 says what the price buys");
    let before = site.upstream().count();
    let answer = get(&url, &[]).await;
    assert_eq!(answer.status, 402, "[{name}] {answer:?}");
    let body = answer.json();
    assert_eq!(body["amount"], json!(COMPUTE), "[{name}] {body}");
    assert_eq!(
        body["lease_seconds"],
        json!(COMPUTE_LEASE_SECONDS),
        "[{name}] {body}"
    );
    assert_eq!(site.upstream().count(), before);

    eprintln!("[{name}] buying a lease");
    let bought_at = unix_now();
    let (pass, claims) = buy(name, &url, site, None, expect).await;
    assert!(
        claims
            .expires_at
            .abs_diff(bought_at + COMPUTE_LEASE_SECONDS)
            <= 5,
        "[{name}] {claims:?}"
    );

    eprintln!("[{name}] going through on the pass, in each carrier");
    let cookie = format!("theme=dark; paygress_pass={pass}; lang=en");
    let bearer = format!("Bearer {pass}");
    for _ in 0..3 {
        goes_through(
            name,
            &url,
            &[("X-Paygress-Pass", &pass)],
            site,
            &claims,
            &pass,
        )
        .await;
    }
    goes_through(
        name,
        &format!("{base}/compute/other?q=1"),
        &[("Cookie", &cookie)],
        site,
        &claims,
        &pass,
    )
    .await;
    let seen = site.upstream().last();
    let cookies = seen.all("cookie").join("; ");
    assert!(
        cookies.contains("theme=dark") && cookies.contains("lang=en"),
        "[{name}] the other cookies did not reach the upstream: {seen:?}"
    );
    goes_through(
        name,
        &url,
        &[("Cookie", &format!("paygress_pass={pass}"))],
        site,
        &claims,
        &pass,
    )
    .await;
    goes_through(
        name,
        &url,
        &[("Authorization", &bearer)],
        site,
        &claims,
        &pass,
    )
    .await;

    eprintln!("[{name}] a pass and spoofed grant headers");
    goes_through(
        name,
        &url,
        &[
            ("X-Paygress-Pass", &pass),
            ("X-Payment-Verified", "false"),
            ("X-User-ID", "mallory"),
            ("X-Paygress-Lease", "someone-elses-lease"),
        ],
        site,
        &claims,
        &pass,
    )
    .await;

    eprintln!("[{name}] the pass on another tier's path, and on a spelling that leaves its tier");
    payment_required(
        name,
        &format!("{base}/premium/data"),
        &[("X-Paygress-Pass", &pass)],
        site,
        PREMIUM,
    )
    .await;

    eprintln!("[{name}] forged, truncated, re-signed passes; the older key; a retired key");
    let parts: Vec<&str> = pass.split('.').collect();
    let longer = Claims {
        expires_at: u64::MAX / 2,
        ..claims.clone()
    };
    let longer_claims = signed(&longer, PASS_KEY_ID, PASS_KEY_SECRET);
    let longer_claims = longer_claims.split('.').nth(2).unwrap_or_default();
    let forged = format!("{}.{}.{longer_claims}.{}", parts[0], parts[1], parts[3]);
    pass_invalid(name, &url, &forged, site).await;
    pass_invalid(name, &url, &pass[..pass.len() - 4], site).await;
    let other_tier = Claims {
        tier: "premium".into(),
        ..claims.clone()
    };
    let retagged = signed(&other_tier, PASS_KEY_ID, PASS_KEY_SECRET);
    let retagged_claims = retagged.split('.').nth(2).unwrap_or_default();
    pass_invalid(
        name,
        &url,
        &format!("{}.{}.{retagged_claims}.{}", parts[0], parts[1], parts[3]),
        site,
    )
    .await;
    // Under the retired key, or a real key id with another secret.
    pass_invalid(
        name,
        &url,
        &signed(&claims, RETIRED_PASS_KEY_ID, RETIRED_PASS_KEY_SECRET),
        site,
    )
    .await;
    pass_invalid(
        name,
        &url,
        &signed(&claims, PASS_KEY_ID, RETIRED_PASS_KEY_SECRET),
        site,
    )
    .await;
    pass_invalid(name, &url, "p1.k2.bm90IGpzb24.AAAA", site).await;
    let by_old_key = signed(&claims, OLD_PASS_KEY_ID, OLD_PASS_KEY_SECRET);
    goes_through(
        name,
        &url,
        &[("X-Paygress-Pass", &by_old_key)],
        site,
        &claims,
        &by_old_key,
    )
    .await;

    eprintln!("[{name}] an expired pass of a lease that ended is a 402");
    let ended = Claims {
        lease: "0000000000000000".into(),
        expires_at: unix_now() - 10,
        ..claims.clone()
    };
    let ended_pass = signed(&ended, PASS_KEY_ID, PASS_KEY_SECRET);
    payment_required(
        name,
        &url,
        &[("X-Paygress-Pass", &ended_pass)],
        site,
        COMPUTE,
    )
    .await;
    payment_required(
        name,
        &url,
        &[("Cookie", &format!("paygress_pass={ended_pass}"))],
        site,
        COMPUTE,
    )
    .await;

    eprintln!("[{name}] a stale pass of a lease that runs on gets a fresh pass, no payment");
    let expired = Claims {
        expires_at: unix_now() - 10,
        ..claims.clone()
    };
    let expired_pass = signed(&expired, PASS_KEY_ID, PASS_KEY_SECRET);
    let before = site.upstream().count();
    let answer = get(&url, &[("X-Paygress-Pass", &expired_pass)]).await;
    assert_eq!(answer.status, 200, "[{name}] {answer:?}");
    assert_eq!(site.upstream().count(), before + 1, "[{name}]");
    let (_, fresh) = pass_of(name, &answer, expect);
    assert_eq!(
        fresh, claims,
        "[{name}] the fresh pass is not the lease as recorded"
    );
    let seen = site.upstream().last();
    assert_eq!(
        seen.one("x-paygress-lease"),
        Some(claims.lease.as_str()),
        "[{name}]"
    );
    assert_eq!(
        seen.one("x-payment-amount"),
        None,
        "[{name}] nothing was paid"
    );

    eprintln!("[{name}] topping up the expired pass extends the same lease");
    let (topped, after) = buy(name, &url, site, Some(&expired_pass), expect).await;
    assert_eq!(
        after.lease, claims.lease,
        "[{name}] a top-up made a new lease"
    );
    assert_eq!(after.payer, claims.payer, "[{name}]");
    // The lease still ran until the first pass's expiry: the time is added
    // to that, not to the expired pass's or to now.
    assert_eq!(
        after.expires_at,
        claims.expires_at + COMPUTE_LEASE_SECONDS,
        "[{name}] {claims:?} then {after:?}"
    );

    eprintln!("[{name}] two top-ups racing from the same old pass both count");
    let (a, b) = tokio::join!(
        buy(name, &url, site, Some(&pass), expect),
        buy(name, &url, site, Some(&pass), expect)
    );
    let latest = a.1.expires_at.max(b.1.expires_at);
    assert_eq!(
        latest,
        after.expires_at + 2 * COMPUTE_LEASE_SECONDS,
        "[{name}] {:?} and {:?}",
        a.1,
        b.1
    );
    let newest = if a.1.expires_at == latest { &a } else { &b };

    eprintln!("[{name}] and going on");
    goes_through(
        name,
        &url,
        &[("X-Paygress-Pass", &newest.0)],
        site,
        &newest.1,
        &newest.0,
    )
    .await;
    goes_through(
        name,
        &url,
        &[("X-Paygress-Pass", &topped)],
        site,
        &after,
        &topped,
    )
    .await;
}
