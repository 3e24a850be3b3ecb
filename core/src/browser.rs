//! Answers a browser can read: the 402 as a page that shows the price, the
//! accepted mints and the NUT-18 payment request (as a QR code and as text)
//! and takes a pasted Cashu token; 400 and 503 as a page with the code and
//! the words.
//!
//! * [`prefers_html`] — `Accept` negotiation (q-values): HTML only when the
//!   client ranks `text/html` above `application/json`; JSON on a tie, on
//!   `*/*` and on no `Accept` at all, as before.
//! * [`payment_page`] — a tier's 402 page, built once per tier when the
//!   config is compiled ([`Challenge::html`](crate::Challenge)), never per
//!   request.
//! * [`error_page`] — a 400 or 503 page, from the same template.
//! * [`content_security_policy`] — the `Content-Security-Policy` every page
//!   is sent with: the one inline style and the one inline script are
//!   allowed by their SHA-256, computed once.
//!
//! Nothing of the request goes into a page: the page reads the URL to pay
//! for from `location` in the browser. What a page does show (tier id,
//! unit, mints, payment request, an error's words, a refund token) is
//! HTML-escaped when the page is built.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use qrcodegen::{QrCode, QrCodeEcc};
use sha2::{Digest, Sha256};

use crate::outcome::ErrorCode;

/// The `Content-Type` of a page.
pub const TEXT_HTML: &str = "text/html; charset=utf-8";

/// The `Vary` value of an answer whose body depends on `Accept`.
pub const VARY_ACCEPT: &str = "Accept";

/// The header names an HTML answer adds (lower case, as Envoy carries
/// them).
pub const CONTENT_SECURITY_POLICY: &str = "content-security-policy";
pub const VARY: &str = "vary";

/// The most `Accept` text read: a browser sends about 150 bytes; anything
/// past this is ignored (the answer is then decided on what was read).
pub const MAX_ACCEPT_LEN: usize = 2048;

/// The most media ranges read from `Accept`.
const MAX_RANGES: usize = 64;

/// The body format an answer is given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `application/json`: the contract's bodies, as they always were.
    #[default]
    Json,
    /// `text/html; charset=utf-8`: a page for a browser.
    Html,
}

impl Format {
    /// The format for an `Accept` header's values (several headers read as
    /// one list; none at all is JSON).
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
        if prefers_html_values(accept) {
            Format::Html
        } else {
            Format::Json
        }
    }
}

/// Whether an `Accept` value ranks `text/html` above `application/json`
/// (RFC 9110 §12.5.1: the most specific matching range gives a type its
/// q-value; `q=0` refuses it). A browser's navigation
/// (`text/html,application/xhtml+xml,…,*/*;q=0.8`) gets HTML; `*/*`
/// (curl, `fetch`), `application/json` and an empty value get JSON, and so
/// does a tie.
pub fn prefers_html(accept: &str) -> bool {
    prefers_html_values([accept])
}

/// [`prefers_html`] over several `Accept` headers, read as one list.
pub fn prefers_html_values<'a>(accept: impl IntoIterator<Item = &'a str>) -> bool {
    let mut html = Match::NONE;
    let mut json = Match::NONE;
    let mut budget = MAX_ACCEPT_LEN;
    let mut ranges = 0usize;
    for value in accept {
        let value = truncate(value, budget);
        budget = budget.saturating_sub(value.len());
        for range in value.split(',') {
            if ranges == MAX_RANGES {
                break;
            }
            ranges += 1;
            let Some((kind, q)) = media_range(range) else {
                continue;
            };
            html.consider(kind, "text", "html", q);
            json.consider(kind, "application", "json", q);
        }
        if budget == 0 || ranges == MAX_RANGES {
            break;
        }
    }
    let (html, json) = (html.q(), json.q());
    html > 0 && html > json
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// One media range: its `type/subtype` (trimmed) and its q-value in
/// thousandths. `None` for a range that is not `type/subtype`, or whose
/// q-value is not one (such a range is ignored).
fn media_range(range: &str) -> Option<((&str, &str), u16)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    let (kind, subtype) = media.split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if kind.is_empty() || subtype.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                q = qvalue(value.trim())?;
            }
        }
    }
    Some(((kind, subtype), q))
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1`, `1.000`, at most three decimals),
/// in thousandths.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        let digit = u16::from(b - b'0');
        thousandths += digit * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The best range seen for one media type: its specificity (3 for the
/// type itself, 2 for `type/*`, 1 for `*/*`, 0 for none) and its q-value.
#[derive(Debug, Clone, Copy)]
struct Match {
    specificity: u8,
    q: u16,
}

impl Match {
    const NONE: Match = Match {
        specificity: 0,
        q: 0,
    };

    fn consider(&mut self, (kind, subtype): (&str, &str), want: &str, want_sub: &str, q: u16) {
        let specificity =
            if kind.eq_ignore_ascii_case(want) && subtype.eq_ignore_ascii_case(want_sub) {
                3
            } else if kind.eq_ignore_ascii_case(want) && subtype == "*" {
                2
            } else if kind == "*" && subtype == "*" {
                1
            } else {
                return;
            };
        // The most specific range decides; of equally specific ones
        // (a repeated range), the highest q.
        if specificity > self.specificity || (specificity == self.specificity && q > self.q) {
            *self = Match { specificity, q };
        }
    }

    fn q(self) -> u16 {
        self.q
    }
}

/// Text made safe for HTML element content and double- or single-quoted
/// attribute values: `&`, `<`, `>`, `"` and `'` as character references.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The modules around a QR code that stay light (the standard's quiet
/// zone).
pub const QR_QUIET_ZONE: usize = 4;

/// The QR code of `text` (byte mode, error correction M or better): its
/// side in modules and its modules row by row, `true` for dark. `None`
/// when `text` is too long for any QR code.
pub fn qr_modules(text: &str) -> Option<(usize, Vec<bool>)> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let size = usize::try_from(qr.size()).ok()?;
    let side = qr.size();
    let mut modules = Vec::with_capacity(size * size);
    for y in 0..side {
        for x in 0..side {
            modules.push(qr.get_module(x, y));
        }
    }
    Some((size, modules))
}

/// The QR code of `text` as an inline `<svg>`: one path of the dark
/// modules, by horizontal runs (`M<x> <y>h<n>v1h-<n>z`, in modules, the
/// quiet zone included in the `viewBox`). No `style` attribute, so the
/// page's CSP does not need to allow one. `None` when `text` is too long
/// for a QR code (the page then shows the text only).
pub fn qr_svg(text: &str) -> Option<String> {
    let (size, modules) = qr_modules(text)?;
    let side = size + 2 * QR_QUIET_ZONE;
    let mut path = String::with_capacity(size * size);
    for (y, row) in modules.chunks(size.max(1)).enumerate() {
        let mut x = 0;
        while x < row.len() {
            if !row.get(x).copied().unwrap_or(false) {
                x += 1;
                continue;
            }
            let start = x;
            while row.get(x).copied().unwrap_or(false) {
                x += 1;
            }
            let run = x - start;
            let _ = write!(
                path,
                "M{} {}h{run}v1h-{run}z",
                start + QR_QUIET_ZONE,
                y + QR_QUIET_ZONE
            );
        }
    }
    Some(format!(
        "<svg class=\"qr\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
         width=\"256\" height=\"256\" shape-rendering=\"crispEdges\" role=\"img\" \
         aria-labelledby=\"qr-title\"><title id=\"qr-title\">QR code of the payment request \
         (the same text as below)</title><rect width=\"{side}\" height=\"{side}\" \
         fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

/// The one inline style of every page.
pub const STYLE: &str = "\
:root{color-scheme:light}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:#18181b;background:#f4f4f5}\
main{max-width:40rem;margin:2rem auto;padding:1.5rem;background:#fff;border:1px solid #a1a1aa;border-radius:8px}\
h1{font-size:1.5rem;margin:0 0 1rem}\
h2{font-size:1.125rem;margin:1.5rem 0 .5rem}\
code,textarea{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.875rem}\
code{overflow-wrap:anywhere}\
textarea{box-sizing:border-box;width:100%;padding:.5rem;border:1px solid #52525b;border-radius:4px;color:#18181b;background:#fff;overflow-wrap:anywhere}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
button{margin:.5rem .5rem 0 0;padding:.5rem 1rem;font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:2px solid #1d4ed8;border-radius:4px;cursor:pointer}\
button:disabled{color:#fff;background:#52525b;border-color:#52525b;cursor:wait}\
a{color:#1d4ed8}\
:focus-visible{outline:3px solid #b45309;outline-offset:2px}\
.qr{display:block;width:16rem;max-width:100%;height:auto;margin:.5rem 0}\
.price{font-size:1.25rem}\
.bad{color:#991b1b;font-weight:600}\
.ok{color:#166534;font-weight:600}";

/// The one inline script of every page. It reads everything from the page
/// itself (`data-` attributes, form fields) and the URL from `location`:
/// the same text, and so the same hash, on every page.
///
/// Copy buttons (`data-copy="<id>"`) copy their field; the form `#pay`
/// re-requests `location.href` with `GET` and `X-Cashu: <token>`. On a 2xx
/// a lease tier's page (`data-lease="1"`) reloads, as the answer set the
/// pass cookie; another replaces the document with the answer (HTML
/// written in place, anything else shown from a `blob:` URL). Otherwise the
/// JSON refusal's words are shown, and a `refund` token in it with a copy
/// button.
pub const SCRIPT: &str = "\
(()=>{\
const $=i=>document.getElementById(i);\
const say=(el,text,bad)=>{el.textContent=text;el.className=bad?'bad':'ok';};\
for(const b of document.querySelectorAll('button[data-copy]')){\
b.addEventListener('click',async()=>{\
const f=$(b.dataset.copy),n=$(b.dataset.copy+'-note');let ok=false;\
try{await navigator.clipboard.writeText(f.value);ok=true;}catch(e){f.select();try{ok=document.execCommand('copy');}catch(e2){}}\
if(n)say(n,ok?'Copied.':'Error: not copied; select the text and copy it.',!ok);\
});}\
const form=$('pay');if(!form)return;\
const st=$('status'),btn=form.querySelector('button[type=submit]');\
form.addEventListener('submit',async ev=>{\
ev.preventDefault();\
const token=$('token').value.trim();\
if(!token){say(st,'Error: paste a Cashu token first.',true);$('token').focus();return;}\
btn.disabled=true;say(st,'Paying\u{2026}',false);$('refund-box').hidden=true;\
try{\
const r=await fetch(location.href,{method:'GET',headers:{'X-Cashu':token},credentials:'same-origin',cache:'no-store'});\
if(r.ok){\
say(st,'Paid. Loading\u{2026}',false);\
if(form.dataset.lease==='1'){location.reload();return;}\
const type=r.headers.get('content-type')||'';\
if(/^text\\/html/i.test(type)){const t=await r.text();document.open();document.write(t);document.close();return;}\
location.replace(URL.createObjectURL(await r.blob()));return;\
}\
let msg='Error: HTTP '+r.status+'.',refund='';\
try{const j=await r.json();if(j&&j.error){msg='Error '+r.status+(j.code?' ('+j.code+')':'')+': '+j.error;}if(j&&typeof j.refund==='string'){refund=j.refund;}}catch(e){}\
say(st,msg,true);\
if(refund){$('refund').value=refund;$('refund-box').hidden=false;}\
}catch(e){say(st,'Error: the request failed ('+e.message+').',true);}\
finally{btn.disabled=false;}\
});\
})();";

/// `'sha256-<base64>'` of a text, as CSP names an inline block.
fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// The `Content-Security-Policy` of every page: nothing but the page's own
/// inline style and script (by hash), `data:` images, requests to the same
/// origin (the script's retry); no form posts, no `<base>`, no framing.
/// Computed once.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; style-src {}; script-src {}; img-src data:; \
             connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
            csp_hash(STYLE),
            csp_hash(SCRIPT)
        )
    })
    .as_str()
}

/// The headers of an HTML answer, besides its status: `Content-Type`,
/// `Content-Security-Policy` and `Vary: Accept` (lower-case names).
pub fn html_headers() -> [(&'static str, &'static str); 3] {
    [
        ("content-type", TEXT_HTML),
        (CONTENT_SECURITY_POLICY, content_security_policy()),
        (VARY, VARY_ACCEPT),
    ]
}

/// A whole page: the template around `main` (already escaped HTML).
fn document(title: &str, main: &str) -> String {
    let mut page = String::with_capacity(main.len() + STYLE.len() + SCRIPT.len() + 512);
    page.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><meta name=\"referrer\" content=\"no-referrer\"><title>",
    );
    page.push_str(&escape(title));
    page.push_str("</title><style>");
    page.push_str(STYLE);
    page.push_str("</style></head><body><main>");
    page.push_str(main);
    page.push_str("</main><script>");
    page.push_str(SCRIPT);
    page.push_str("</script></body></html>\n");
    page
}

/// A read-only field with a copy button and the note the script fills in.
fn copyable(out: &mut String, id: &str, label: &str, value: &str, button: &str) {
    let _ = write!(
        out,
        "<label for=\"{id}\">{label}</label>\
         <textarea id=\"{id}\" rows=\"3\" readonly spellcheck=\"false\">{value}</textarea>\
         <button type=\"button\" data-copy=\"{id}\">{button}</button>\
         <span id=\"{id}-note\" role=\"status\"></span>",
        value = escape(value),
    );
}

/// The refund box: hidden on a 402 page until the script fills it; shown
/// with its token on an error page that gives a payment back.
fn refund_box(out: &mut String, refund: Option<&str>) {
    let hidden = if refund.is_some() { "" } else { " hidden" };
    let _ = write!(
        out,
        "<div id=\"refund-box\"{hidden}><h2>Your refund</h2>\
         <p>The payment was given back as this Cashu token: receive it in your wallet.</p>"
    );
    copyable(
        out,
        "refund",
        "Refund token",
        refund.unwrap_or_default(),
        "Copy refund token",
    );
    out.push_str("</div>");
}

/// How long `seconds` is, in words (`1 hour`, `90 minutes`, `45 seconds`).
fn duration_words(seconds: u64) -> String {
    let (n, unit) = if seconds.is_multiple_of(86_400) {
        (seconds / 86_400, "day")
    } else if seconds.is_multiple_of(3_600) {
        (seconds / 3_600, "hour")
    } else if seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural}")
}

/// The 402 page of a price: what it costs and what it buys, the accepted
/// mints, the payment request as a QR code and as text, and a form that
/// pays with a pasted token. Built once per tier (see
/// [`Challenge`](crate::Challenge)); everything in it is escaped here.
pub fn payment_page(
    amount: u64,
    unit: &str,
    mints: &[String],
    tier: Option<&str>,
    lease_seconds: Option<u64>,
    payment_request: &str,
) -> String {
    let unit = escape(unit);
    let mut main = String::with_capacity(8 * 1024);
    main.push_str("<h1>Payment required</h1>");
    let buys = match lease_seconds {
        Some(s) => format!(
            "buys {} of access to this part of the site (more buys proportionally more time)",
            duration_words(s)
        ),
        None => "for this request".to_string(),
    };
    let _ = write!(
        main,
        "<p class=\"price\"><strong>{amount} {unit}</strong> {buys}.</p>"
    );
    if let Some(tier) = tier {
        let _ = write!(main, "<p>Tier: <code>{}</code></p>", escape(tier));
    }
    main.push_str("<h2>Accepted mints</h2><ul>");
    for mint in mints {
        let _ = write!(main, "<li><code>{}</code></li>", escape(mint));
    }
    main.push_str(
        "</ul><h2>Payment request</h2><p>Scan the code with a Cashu wallet, or copy the \
         payment request (NUT-18) into it, and make a token of the price.</p>",
    );
    if let Some(svg) = qr_svg(payment_request) {
        main.push_str(&svg);
    }
    copyable(
        &mut main,
        "creq",
        "Payment request (text)",
        payment_request,
        "Copy payment request",
    );
    let lease = if lease_seconds.is_some() { "1" } else { "0" };
    let _ = write!(
        main,
        "<h2>Pay</h2><form id=\"pay\" data-lease=\"{lease}\">\
         <label for=\"token\">Cashu token</label>\
         <p id=\"token-help\">Paste a token (<code>cashuB…</code> or <code>cashuA…</code>) worth \
         at least {amount} {unit} from an accepted mint. It is sent with this page's request \
         in the <code>X-Cashu</code> header.</p>\
         <textarea id=\"token\" name=\"token\" rows=\"4\" required autocomplete=\"off\" \
         autocapitalize=\"off\" spellcheck=\"false\" aria-describedby=\"token-help\"></textarea>\
         <button type=\"submit\">Pay and continue</button></form>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>"
    );
    refund_box(&mut main, None);
    main.push_str(
        "<noscript><p>Without JavaScript, send the request again yourself with the token in \
         the header <code>X-Cashu: cashuB…</code>.</p></noscript>",
    );
    document("Payment required", &main)
}

/// The title of an error page.
fn error_title(code: ErrorCode) -> &'static str {
    match code.status() {
        503 => "Service unavailable",
        _ if code == ErrorCode::MalformedRequest => "Bad request",
        _ => "Payment not accepted",
    }
}

/// The page of a refusal (a 400 or a 503): its status and code, its words
/// (escaped: they may quote what the client sent, such as a token's mint),
/// and a refund token when the payment is given back.
pub fn error_page(code: ErrorCode, message: &str, refund: Option<&str>) -> String {
    let title = error_title(code);
    let mut main = String::with_capacity(1024 + refund.map_or(0, str::len));
    let _ = write!(
        main,
        "<h1>{title}</h1><p>Error {status}, code <code>{code}</code>:</p><p class=\"bad\">{words}</p>",
        status = code.status(),
        code = code.as_str(),
        words = escape(message),
    );
    if refund.is_some() {
        refund_box(&mut main, refund);
    }
    main.push_str("<p><a href=\"\">Try again</a></p>");
    document(title, &main)
}

#[cfg(test)]
mod tests;
