//! `paygress lease show PASS`: what a lease's pass says, decoded offline
//! (no secret needed, the signature not checked) or asked of a verifier's
//! `GET /lease` (the signature checked, the expiry as the verifier knows it).
//!
//! Also the pass store of `paygress pay`: `<data dir>/passes.json` (mode
//! 0600), one pass per origin (scheme, host, port) and cookie path, so that
//! a lease bought once is used until it expires.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use paygress_core::headers::{SET_COOKIE, X_PAYGRESS_PASS};
use paygress_core::lease::rfc3339;
use paygress_core::pass::{self, PassError};
use paygress_core::pass_carrier::COOKIE_NAME;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use thiserror::Error;

/// The pass store's file in the data dir.
pub const PASSES_FILE: &str = "passes.json";

/// How long `lease show --verifier` waits for the verifier.
const VERIFIER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why `lease show` could not show a lease.
#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("not a pass: {0} (a pass looks like p1.<key id>.<claims>.<signature>)")]
    Pass(PassError),
    #[error("invalid verifier URL {url:?}: {reason}")]
    VerifierUrl { url: String, reason: String },
    #[error("the verifier refused the pass: {message}{}", in_parens(.code))]
    Refused {
        message: String,
        code: Option<String>,
    },
    #[error("the verifier at {url} answered {status}: {message}")]
    Verifier {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the verifier at {url} answered something that is not a lease: {body}")]
    NotALease { url: String, body: String },
}

fn in_parens(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
}

/// The current time, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A duration in words: `59m 12s`, `2h 0m 5s`, `1d 3h 4m 0s`, `7s`.
pub fn duration_words(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// How much of a lease ending at `expires_at` is left at `now`: `59m 12s`,
/// or `expired 3m 4s ago`.
pub fn left_words(expires_at: u64, now: u64) -> String {
    if expires_at <= now {
        format!("expired {} ago", duration_words(now - expires_at))
    } else {
        duration_words(expires_at - now)
    }
}

/// The lease a pass names, for messages; `?` when it cannot be read.
pub fn lease_of(pass: &str) -> String {
    pass::decode_unverified(pass).map_or_else(|_| "?".to_string(), |(_, c)| c.lease)
}

/// `lease show`: offline without `verifier`, else asked of the verifier.
pub async fn show(pass: &str, verifier: Option<&str>) -> Result<String> {
    match verifier {
        None => Ok(show_offline(pass, unix_now())?),
        Some(verifier) => show_with_verifier(pass, verifier).await,
    }
}

/// What the pass says at `now`, read without its signature checked (no
/// secret is needed, and none is known here).
pub fn show_offline(pass: &str, now: u64) -> Result<String, LeaseError> {
    let (key_id, claims) = pass::decode_unverified(pass.trim()).map_err(LeaseError::Pass)?;
    let value = json!({
        "lease": claims.lease,
        "tier": claims.tier,
        "payer": claims.payer,
        "pod": claims.pod,
        "key_id": key_id,
        "expires_at": claims.expires_at,
        "expires_at_rfc3339": rfc3339(claims.expires_at),
        "seconds_left": claims.expires_at.saturating_sub(now),
        "expired": claims.expires_at <= now,
        "left": left_words(claims.expires_at, now),
        "signature_checked": false,
        "note": "signature not checked: decoded offline; --verifier URL checks it",
    });
    Ok(pretty(&value))
}

/// Asks the verifier's `GET /lease` about the pass: its JSON, with
/// `signature_checked: true`, the key id, the time left in words, and
/// `pass` when the verifier handed a fresher pass.
pub async fn show_with_verifier(pass: &str, verifier: &str) -> Result<String> {
    let pass = pass.trim();
    // A pass that is not one is refused here, without asking anyone.
    let (key_id, _) = pass::decode_unverified(pass).map_err(LeaseError::Pass)?;
    let base = verifier.trim().trim_end_matches('/');
    let url = Url::parse(&format!("{base}/lease"))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| LeaseError::VerifierUrl {
            url: verifier.to_string(),
            reason: "not an http(s) URL".into(),
        })?;
    let client = reqwest::Client::builder()
        .timeout(VERIFIER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(url.clone())
        .header(
            X_PAYGRESS_PASS,
            HeaderValue::from_str(pass).map_err(|_| LeaseError::Pass(PassError::Malformed))?,
        )
        .send()
        .await
        .with_context(|| format!("requesting {url}"))?;
    let status = response.status();
    let fresh = response
        .headers()
        .get(X_PAYGRESS_PASS)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != pass);
    let body = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    if !status.is_success() {
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let message = field("error").unwrap_or_else(|| body.trim().to_string());
        let code = field("code");
        if status.as_u16() == 400 {
            return Err(LeaseError::Refused { message, code }.into());
        }
        return Err(LeaseError::Verifier {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        }
        .into());
    }
    let Some(Value::Object(mut map)) = parsed else {
        return Err(LeaseError::NotALease {
            url: url.to_string(),
            body: body.trim().chars().take(200).collect(),
        }
        .into());
    };
    let expires_at = map.get("expires_at").and_then(Value::as_u64);
    let Some(expires_at) = expires_at else {
        return Err(LeaseError::NotALease {
            url: url.to_string(),
            body: body.trim().chars().take(200).collect(),
        }
        .into());
    };
    add_verified_fields(&mut map, &key_id, expires_at, unix_now(), fresh);
    Ok(pretty(&Value::Object(map)))
}

/// The fields `lease show --verifier` adds to the verifier's answer.
fn add_verified_fields(
    map: &mut Map<String, Value>,
    key_id: &str,
    expires_at: u64,
    now: u64,
    fresh: Option<String>,
) {
    // The verifier's clock says whether it expired; the words use ours.
    let expired = map
        .get("expired")
        .and_then(Value::as_bool)
        .unwrap_or(expires_at <= now);
    let left = match (expired, map.get("seconds_left").and_then(Value::as_u64)) {
        (false, Some(secs)) => duration_words(secs),
        (false, None) => left_words(expires_at, now),
        (true, _) => format!(
            "expired {} ago",
            duration_words(now.saturating_sub(expires_at))
        ),
    };
    map.insert("signature_checked".into(), Value::Bool(true));
    map.insert("key_id".into(), Value::String(key_id.to_string()));
    map.insert("left".into(), Value::String(left));
    if let Some(fresh) = fresh {
        map.insert("pass".into(), Value::String(fresh));
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

// ----------------------------------------------------------------------
// The pass store of `paygress pay`.

/// One stored pass: where it is sent, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPass {
    /// `scheme://host[:port]` (the port omitted when it is the scheme's
    /// default), as [`origin_key`] writes it.
    pub origin: String,
    /// The cookie path: the pass goes to URLs under it (segment-wise).
    pub path: String,
    pub lease: String,
    pub tier: String,
    /// Unix seconds, from the pass's claims.
    pub expires_at: u64,
    pub pass: String,
}

/// The passes `paygress pay` keeps, in `<data dir>/passes.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassStore {
    #[serde(default)]
    pub passes: Vec<StoredPass>,
}

/// Why the pass store could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a pass store: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The origin a pass is kept for: `scheme://host[:port]`.
pub fn origin_key(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The path a pass is kept for when the answer names none: the URL's first
/// segment (`/compute` for `/compute/x`), or `/`.
pub fn default_pass_path(url: &Url) -> String {
    match url.path().split('/').find(|s| !s.is_empty()) {
        Some(first) => format!("/{first}"),
        None => "/".to_string(),
    }
}

/// Whether `path` is under `prefix`, segment-wise (as cookies match paths):
/// `/compute` matches `/compute` and `/compute/x`, never `/computex`.
pub fn path_matches(prefix: &str, path: &str) -> bool {
    let path = if path.is_empty() { "/" } else { path };
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

impl PassStore {
    /// The store in `data_dir`; empty when there is none.
    pub fn load(data_dir: &Path) -> Result<PassStore, StoreError> {
        let path = data_dir.join(PASSES_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PassStore::default()),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        // It holds credentials: keep it private even if someone opened it.
        let _ = crate::files::restrict_file(&path);
        serde_json::from_str(&text).map_err(|e| StoreError::Parse {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the store to `data_dir` (created `0700` if missing) as a
    /// `0600` file, replaced atomically, without the passes expired at `now`.
    pub fn save(&mut self, data_dir: &Path, now: u64) -> Result<(), StoreError> {
        self.drop_expired(now);
        let path = data_dir.join(PASSES_FILE);
        let write_err = |reason: String| StoreError::Write {
            path: path.clone(),
            reason,
        };
        crate::seed::ensure_data_dir(data_dir).map_err(|e| write_err(e.to_string()))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| write_err(e.to_string()))?;
        let tmp = data_dir.join(format!("{PASSES_FILE}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.write_all(b"\n")?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e.to_string()));
        }
        crate::files::restrict_file(&path).map_err(|e| write_err(e.to_string()))?;
        Ok(())
    }

    /// Drops the passes whose lease has ended at `now`.
    pub fn drop_expired(&mut self, now: u64) {
        self.passes.retain(|p| p.expires_at > now);
    }

    /// The pass to send to `url` at `now`: one of its origin, whose path
    /// covers the URL's, that is good for more than a second; the most
    /// specific path first, then the latest expiry.
    pub fn find(&self, url: &Url, now: u64) -> Option<&StoredPass> {
        let origin = origin_key(url);
        self.passes
            .iter()
            .filter(|p| {
                p.origin == origin
                    && p.expires_at > now.saturating_add(1)
                    && path_matches(&p.path, url.path())
            })
            .max_by_key(|p| (p.path.len(), p.expires_at))
    }

    /// Forgets a pass (the gateway refused it as invalid: a retired key);
    /// whether it was kept.
    pub fn forget(&mut self, pass: &str) -> bool {
        let before = self.passes.len();
        self.passes.retain(|p| p.pass != pass);
        self.passes.len() != before
    }

    /// Keeps `entry`, replacing the pass of the same origin and path;
    /// whether it was new (`false`: that very pass was already kept).
    pub fn insert(&mut self, entry: StoredPass) -> bool {
        match self
            .passes
            .iter_mut()
            .find(|p| p.origin == entry.origin && p.path == entry.path)
        {
            Some(old) if *old == entry => false,
            Some(old) => {
                *old = entry;
                true
            }
            None => {
                self.passes.push(entry);
                true
            }
        }
    }
}

/// The `paygress_pass` cookies an answer sets: value and `Path`, if named.
fn pass_cookies(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let mut parts = text.split(';');
            let (name, value) = parts.next()?.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case(COOKIE_NAME) {
                return None;
            }
            let path = parts.find_map(|attr| {
                let (k, v) = attr.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("path")
                    .then(|| v.trim().to_string())
                    .filter(|p| p.starts_with('/'))
            });
            Some((value.trim().trim_matches('"').to_string(), path))
        })
        .collect()
}

/// The pass an answer from `url` hands over, to keep: from
/// `X-Paygress-Pass` (else the `paygress_pass` cookie), kept for the
/// cookie's `Path` (else the URL's first segment). `Ok(None)` when the
/// answer carries none; an error when it carries one that cannot be read.
pub fn pass_from_answer(url: &Url, headers: &HeaderMap) -> Result<Option<StoredPass>, PassError> {
    let cookies = pass_cookies(headers);
    let header = headers
        .get(X_PAYGRESS_PASS)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    let (pass, path) = match header {
        Some(pass) => {
            let path = cookies
                .iter()
                .find(|(v, _)| *v == pass)
                .or(cookies.first())
                .and_then(|(_, p)| p.clone());
            (pass, path)
        }
        None => match cookies.into_iter().find(|(v, _)| !v.is_empty()) {
            Some(cookie) => cookie,
            None => return Ok(None),
        },
    };
    let (_, claims) = pass::decode_unverified(&pass)?;
    Ok(Some(StoredPass {
        origin: origin_key(url),
        path: path.unwrap_or_else(|| default_pass_path(url)),
        lease: claims.lease,
        tier: claims.tier,
        expires_at: claims.expires_at,
        pass,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paygress_core::pass::{sign, Claims, PassKey};
    use std::os::unix::fs::PermissionsExt;

    fn key() -> PassKey {
        PassKey::new("k1", &[7u8; 32]).unwrap()
    }

    fn claims(expires_at: u64) -> Claims {
        Claims {
            lease: "3f2a9c0d1e4b5a6f".into(),
            tier: "compute".into(),
            expires_at,
            payer: "444537d0ea3bff3e".into(),
            pod: Some("pod-1".into()),
        }
    }

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    fn stored(origin: &str, path: &str, expires_at: u64) -> StoredPass {
        StoredPass {
            origin: origin.into(),
            path: path.into(),
            lease: format!("lease{path}"),
            tier: "compute".into(),
            expires_at,
            pass: sign(&claims(expires_at), &key()),
        }
    }

    #[test]
    fn the_time_left_is_in_words() {
        assert_eq!(duration_words(0), "0s");
        assert_eq!(duration_words(7), "7s");
        assert_eq!(duration_words(3_552), "59m 12s");
        assert_eq!(duration_words(7_205), "2h 0m 5s");
        assert_eq!(duration_words(86_400 + 3 * 3_600 + 4 * 60), "1d 3h 4m 0s");
        assert_eq!(left_words(1_000 + 3_552, 1_000), "59m 12s");
        assert_eq!(left_words(1_000, 1_184), "expired 3m 4s ago");
        assert_eq!(left_words(1_000, 1_000), "expired 0s ago");
    }

    #[test]
    fn lease_show_offline_prints_the_claims_and_says_the_signature_is_unchecked() {
        let now = 1_700_000_000;
        let pass = sign(&claims(now + 3_552), &key());
        let out = show_offline(&format!("{pass}\n"), now).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["lease"], "3f2a9c0d1e4b5a6f");
        assert_eq!(v["tier"], "compute");
        assert_eq!(v["payer"], "444537d0ea3bff3e");
        assert_eq!(v["pod"], "pod-1");
        assert_eq!(v["key_id"], "k1");
        assert_eq!(v["expires_at"], now + 3_552);
        assert_eq!(v["expires_at_rfc3339"], rfc3339(now + 3_552));
        assert_eq!(v["seconds_left"], 3_552);
        assert_eq!(v["expired"], false);
        assert_eq!(v["left"], "59m 12s");
        assert_eq!(v["signature_checked"], false);
        assert!(out.contains("signature not checked"), "{out}");
        assert!(!out.contains(&pass), "the pass itself is not echoed: {out}");
    }

    #[test]
    fn lease_show_offline_of_an_expired_pass() {
        let now = 1_700_000_000;
        let mut c = claims(now - 184);
        c.pod = None;
        let v: Value =
            serde_json::from_str(&show_offline(&sign(&c, &key()), now).unwrap()).unwrap();
        assert_eq!(v["expired"], true);
        assert_eq!(v["seconds_left"], 0);
        assert_eq!(v["left"], "expired 3m 4s ago");
        assert_eq!(v["pod"], Value::Null);
    }

    #[test]
    fn lease_show_refuses_what_is_not_a_pass() {
        for bad in ["", "nope", "p1.k1.bm90anNvbg.c2ln", "cashuBxyz"] {
            let err = show_offline(bad, 0).unwrap_err().to_string();
            assert!(err.contains("not a pass"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_verifier_fields_are_added_to_its_answer() {
        let mut map = Map::new();
        map.insert("expired".into(), Value::Bool(false));
        map.insert("seconds_left".into(), json!(3_552));
        add_verified_fields(&mut map, "k1", 2_000, 1_000, Some("p1.fresh".into()));
        assert_eq!(map["left"], "59m 12s");
        assert_eq!(map["signature_checked"], true);
        assert_eq!(map["key_id"], "k1");
        assert_eq!(map["pass"], "p1.fresh");
        let mut expired = Map::new();
        expired.insert("expired".into(), Value::Bool(true));
        add_verified_fields(&mut expired, "k1", 1_000, 1_184, None);
        assert_eq!(expired["left"], "expired 3m 4s ago");
        assert!(expired.get("pass").is_none());
    }

    /// A stand-in for the verifier's `GET /lease`.
    async fn stub_verifier() -> String {
        use axum::http::{HeaderMap as AxumHeaders, StatusCode};
        use axum::response::IntoResponse;
        async fn lease(headers: AxumHeaders) -> axum::response::Response {
            let presented = headers
                .get("x-paygress-pass")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match pass::verify(presented, &[key()], 1_000) {
                Ok(c) | Err(PassError::Expired(c)) => {
                    let mut fresh = c.clone();
                    fresh.expires_at += 60;
                    (
                        [("x-paygress-pass", sign(&fresh, &key()))],
                        axum::Json(json!({
                            "lease": c.lease, "tier": c.tier, "payer": c.payer,
                            "expires_at": fresh.expires_at,
                            "expires_at_rfc3339": rfc3339(fresh.expires_at),
                            "seconds_left": 120, "expired": false, "pod": c.pod,
                        })),
                    )
                        .into_response()
                }
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": e.to_string(), "code": "pass_invalid"})),
                )
                    .into_response(),
            }
        }
        let app = axum::Router::new().route("/lease", axum::routing::get(lease));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn lease_show_asks_the_verifier_and_reports_its_refusal() {
        let verifier = stub_verifier().await;
        let pass = sign(&claims(1_060), &key());
        let out = show(&pass, Some(&verifier)).await.unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["lease"], "3f2a9c0d1e4b5a6f");
        assert_eq!(v["expires_at"], 1_120);
        assert_eq!(v["signature_checked"], true);
        assert_eq!(v["key_id"], "k1");
        assert_eq!(v["left"], "2m 0s");
        let fresh = v["pass"].as_str().unwrap();
        assert_eq!(pass::decode_unverified(fresh).unwrap().1.expires_at, 1_120);

        let forged = sign(&claims(1_060), &PassKey::new("k1", &[8u8; 32]).unwrap());
        let err = format!("{:#}", show(&forged, Some(&verifier)).await.unwrap_err());
        assert!(
            err.contains("refused") && err.contains("pass_invalid"),
            "{err}"
        );
        let err = format!("{:#}", show("nope", Some(&verifier)).await.unwrap_err());
        assert!(err.contains("not a pass"), "{err}");
    }

    #[test]
    fn a_pass_matches_its_origin_and_the_paths_under_its_own() {
        let mut store = PassStore::default();
        store.insert(stored("http://127.0.0.1:8080", "/compute", 2_000));
        let found = |s: &PassStore, u: &str| s.find(&url(u), 1_000).map(|p| p.path.clone());
        for ok in [
            "http://127.0.0.1:8080/compute",
            "http://127.0.0.1:8080/compute/",
            "http://127.0.0.1:8080/compute/x/y?q=1",
        ] {
            assert_eq!(found(&store, ok).as_deref(), Some("/compute"), "{ok}");
        }
        for no in [
            "http://127.0.0.1:8080/computex",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/other/compute",
            "http://127.0.0.1:8081/compute",
            "https://127.0.0.1:8080/compute",
            "http://localhost:8080/compute",
        ] {
            assert_eq!(found(&store, no), None, "{no}");
        }
        // The default port is the same origin.
        store.insert(stored("http://example.com", "/", 2_000));
        assert_eq!(
            found(&store, "http://example.com:80/a").as_deref(),
            Some("/")
        );
        // The most specific path wins.
        store.insert(stored("http://example.com", "/a/", 2_000));
        assert_eq!(
            found(&store, "http://example.com/a/b").as_deref(),
            Some("/a/")
        );
        assert_eq!(found(&store, "http://example.com/a").as_deref(), Some("/"));
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/", ""));
        assert!(!path_matches("/compute", ""));
        assert!(!path_matches("/compute", "/comp"));
    }

    #[test]
    fn a_pass_about_to_expire_is_not_used_and_a_new_one_replaces_the_old() {
        let mut store = PassStore::default();
        store.insert(stored("http://h", "/compute", 1_001));
        assert!(store.find(&url("http://h/compute"), 1_000).is_none());
        assert!(store.find(&url("http://h/compute"), 999).is_some());
        assert!(store.insert(stored("http://h", "/compute", 5_000)));
        assert!(!store.insert(stored("http://h", "/compute", 5_000)));
        assert_eq!(store.passes.len(), 1);
        assert_eq!(
            store
                .find(&url("http://h/compute"), 1_000)
                .map(|p| p.expires_at),
            Some(5_000)
        );
    }

    #[test]
    fn the_store_file_is_private_and_drops_expired_passes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(PassStore::load(&data).unwrap(), PassStore::default());
        let mut store = PassStore::default();
        store.insert(stored("http://h", "/old", 900));
        store.insert(stored("http://h", "/compute", 2_000));
        store.save(&data, 1_000).unwrap();
        let path = data.join(PASSES_FILE);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&data), 0o700);
        let loaded = PassStore::load(&data).unwrap();
        assert_eq!(loaded.passes.len(), 1);
        assert_eq!(loaded.passes[0].path, "/compute");
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![PASSES_FILE.to_string()]);
        // An opened file is made private again when read.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        PassStore::load(&data).unwrap();
        assert_eq!(mode(&path), 0o600);
        // Once everything has expired, nothing is kept.
        let mut loaded = loaded;
        loaded.save(&data, 2_000).unwrap();
        assert!(PassStore::load(&data).unwrap().passes.is_empty());
        // A file that is not a store is an error, not silently emptied.
        fs::write(&path, "not json").unwrap();
        assert!(matches!(
            PassStore::load(&data),
            Err(StoreError::Parse { .. })
        ));
    }

    #[test]
    fn the_pass_of_an_answer_is_kept_for_the_cookie_path_or_the_first_segment() {
        let pass = sign(&claims(2_000), &key());
        let header = |name: &'static str, value: String| {
            let mut h = HeaderMap::new();
            h.append(name, HeaderValue::from_str(&value).unwrap());
            h
        };
        let u = url("http://127.0.0.1:8080/compute/x");
        // Header only: the URL's first segment.
        let got = pass_from_answer(&u, &header("x-paygress-pass", pass.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(got.origin, "http://127.0.0.1:8080");
        assert_eq!(got.path, "/compute");
        assert_eq!(got.lease, "3f2a9c0d1e4b5a6f");
        assert_eq!(got.expires_at, 2_000);
        assert_eq!(got.pass, pass);
        // Header and cookie: the cookie's path.
        let mut both = header("x-paygress-pass", pass.clone());
        both.append(
            "set-cookie",
            HeaderValue::from_str("other=1; Path=/nope").unwrap(),
        );
        both.append(
            "set-cookie",
            HeaderValue::from_str(&format!(
                "paygress_pass={pass}; Path=/gpu; Max-Age=60; HttpOnly; SameSite=Lax"
            ))
            .unwrap(),
        );
        assert_eq!(
            pass_from_answer(&u, &both).unwrap().map(|p| p.path),
            Some("/gpu".to_string())
        );
        // The cookie alone.
        let cookie = header("set-cookie", format!("paygress_pass={pass}; Path=/gpu"));
        assert_eq!(
            pass_from_answer(&u, &cookie).unwrap().map(|p| p.pass),
            Some(pass.clone())
        );
        // None, and one that cannot be read.
        assert_eq!(pass_from_answer(&u, &HeaderMap::new()), Ok(None));
        assert!(pass_from_answer(&u, &header("x-paygress-pass", "junk".into())).is_err());
        assert_eq!(
            default_pass_path(&url("http://h/")),
            "/",
            "the root has no segment"
        );
    }
}
