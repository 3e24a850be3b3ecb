//! Asking a server over HTTP and reading its answer: one [`Answer`] type
//! and one request function for every test, with assertions on the
//! contract's answers.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use crate::process::loopback_http_client;

/// What a server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header values by lower-case name, in the order received.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Answer {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {:?}", self.body))
    }

    /// The refusal code of a 4xx/5xx JSON body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }

    /// Asserts a refusal with this status and code.
    pub fn assert_refused(&self, status: u16, code: &str) {
        // Not `code()`: an answer without a JSON body (a 200) must fail
        // this assertion with the answer, not a parse error.
        let found = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        assert_eq!(
            (self.status, found.as_str()),
            (status, code),
            "unexpected answer: {self:?}"
        );
    }

    /// Asserts a refusal with this status and code that says when to try
    /// again (`Retry-After` in whole seconds); returns those seconds.
    pub fn assert_retry_later(&self, status: u16, code: &str) -> u64 {
        self.assert_refused(status, code);
        self.header("retry-after")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After in seconds: {self:?}"))
    }

    /// Asserts a paid 200 and returns the amount received.
    pub fn assert_paid(&self) -> u64 {
        assert_eq!(self.status, 200, "not a 200: {self:?}");
        assert_eq!(self.header("x-payment-verified"), Some("true"), "{self:?}");
        let user = self.header("x-user-id").unwrap_or_default();
        assert_eq!(user.len(), 16, "X-User-ID: {self:?}");
        self.header("x-payment-amount")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Payment-Amount: {self:?}"))
    }
}

/// Sends `method url` with `headers` (values as bytes, so tests can send
/// what is not text) and `body`; `Err` when no answer came (the connection
/// was refused or broke: a server killed mid-request, say).
pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &[u8])],
    body: Option<&str>,
) -> Result<Answer, String> {
    let method =
        reqwest::Method::from_str(method).map_err(|err| format!("bad method {method}: {err}"))?;
    let mut request = loopback_http_client()
        .request(method.clone(), url)
        .timeout(Duration::from_secs(60));
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value)
            .map_err(|err| format!("header {name}: {err}"))?;
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request
        .send()
        .await
        .map_err(|err| format!("{method} {url}: {err}"))?;
    let status = response.status().as_u16();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        map.entry(name.as_str().to_ascii_lowercase())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = response
        .text()
        .await
        .map_err(|err| format!("{method} {url}: reading the body: {err}"))?;
    Ok(Answer {
        status,
        headers: map,
        body,
    })
}

/// [`try_send`], panicking when no answer came.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &[u8])],
    body: Option<&str>,
) -> Answer {
    try_send(method, url, headers, body)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}
