use super::*;
use crate::CompiledConfig;

/// Real `Accept` values, and whether each gets the page.
const ACCEPT_TABLE: &[(&str, bool)] = &[
    // Navigations: Chrome, Firefox (old and new), Safari, Edge.
    (
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
         image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        true,
    ),
    (
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        true,
    ),
    (
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        true,
    ),
    ("text/html", true),
    ("TEXT/HTML", true),
    ("text/*", true),
    (" text/html ; q=1.0 , application/json ; q=0.5", true),
    ("application/json;q=0.9, text/html", true),
    // curl, fetch(), XMLHttpRequest, Python requests, Go: */*.
    ("*/*", false),
    ("", false),
    ("application/json", false),
    // HTTPie, axios, a typical API client.
    ("application/json, */*;q=0.5", false),
    ("application/json, text/plain, */*", false),
    // A tie is JSON, whatever the order.
    ("text/html, application/json", false),
    ("application/json, text/html", false),
    ("text/html;q=0.5, application/json;q=0.5", false),
    // JSON preferred.
    ("text/html;q=0.9, application/json", false),
    ("text/html;q=0.9, */*", false),
    // Images and scripts a browser fetches: */* ties.
    (
        "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
        false,
    ),
    ("image/avif,image/webp,*/*", false),
    // HTML refused, or only through a less specific range.
    ("text/html;q=0", false),
    ("text/html;q=0, */*", false),
    ("text/*;q=0.3, text/html;q=0, application/json;q=0.1", false),
    ("*/*, text/html;q=0.001", false),
    ("text/*, application/*;q=0.9", true),
    // Unreadable ranges are ignored, not taken as q=1.
    ("text/html;q=2", false),
    ("text/html;q=abc", false),
    ("text/html;q=0.1234", false),
    ("text", false),
    ("/html", false),
    ("text/html;q=0.5, garbage, ;;, */*;q=0.4", true),
];

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn accept_is_negotiated_by_q_value() {
    for (accept, html) in ACCEPT_TABLE {
        assert_eq!(prefers_html(accept), *html, "Accept: {accept}");
        let format = if *html { Format::Html } else { Format::Json };
        assert_eq!(Format::negotiate([*accept]), format, "Accept: {accept}");
    }
    // No Accept header at all.
    assert_eq!(Format::negotiate(std::iter::empty::<&str>()), Format::Json);
    // Several headers read as one list.
    assert!(prefers_html_values(["application/json;q=0.1", "text/html"]));
    assert!(!prefers_html_values([
        "text/html;q=0.1",
        "application/json"
    ]));
    // Bounded work: a range past the limits is not read.
    let long = format!("{},text/html", "a/b,".repeat(100));
    assert!(!prefers_html(&long));
    let padded = format!("{}text/html", " ".repeat(MAX_ACCEPT_LEN));
    assert!(!prefers_html(&padded));
    assert!(!prefers_html("é".repeat(MAX_ACCEPT_LEN).as_str()));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn q_values_parse_strictly() {
    for (text, q) in [
        ("0", Some(0)),
        ("0.", Some(0)),
        ("0.8", Some(800)),
        ("0.25", Some(250)),
        ("0.001", Some(1)),
        ("1", Some(1000)),
        ("1.000", Some(1000)),
        ("1.5", None),
        ("2", None),
        ("-1", None),
        ("0.1234", None),
        ("", None),
        ("0.a", None),
    ] {
        assert_eq!(qvalue(text), q, "{text:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn escape_covers_the_five_characters() {
    assert_eq!(
        escape(r#"<a href="x" title='y'>&amp;</a>"#),
        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
    );
    assert_eq!(escape("plain ünïcode"), "plain ünïcode");
}

/// The text between `open` and `close` (first occurrence).
fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).map(|i| i + open.len()).unwrap_or(0);
    let end = text[start..].find(close).map_or(text.len(), |i| start + i);
    &text[start..end]
}

/// Every page carries exactly the style and the script the CSP names by
/// hash, and nothing else that could run or load.
fn assert_page_is_locked_down(page: &str) {
    let csp = content_security_policy();
    assert!(
        page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{page}"
    );
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert_eq!(page.matches("<style").count(), 1, "{page}");
    let script = between(page, "<script>", "</script>");
    let style = between(page, "<style>", "</style>");
    assert_eq!(script, SCRIPT);
    assert_eq!(style, STYLE);
    assert!(
        csp.contains(&format!("script-src {}", csp_hash(script))),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("style-src {}", csp_hash(style))),
        "{csp}"
    );
    // No style attributes (the CSP would block them), no event handler
    // attributes, no external resources.
    for forbidden in [
        " style=",
        " onclick",
        " onerror",
        " onload",
        " src=",
        "http-equiv",
    ] {
        assert!(!page.contains(forbidden), "{forbidden} in {page}");
    }
    // Every field has its label.
    let mut rest = page;
    while let Some(i) = rest.find("<textarea id=\"") {
        let id = between(&rest[i..], "<textarea id=\"", "\"");
        assert!(
            page.contains(&format!("<label for=\"{id}\">")),
            "no label for {id}"
        );
        rest = &rest[i + 1..];
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_csp_names_the_inline_blocks_by_hash() {
    let csp = content_security_policy();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    for directive in [
        "img-src data:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive}: {csp}");
    }
    // Computed once: the same text every time.
    assert!(core::ptr::eq(csp, content_security_policy()));
    // A known hash: an empty block is sha256 of nothing.
    assert_eq!(
        csp_hash(""),
        "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
    );
    // The script has no `</` that would end the element early.
    assert!(!SCRIPT.contains("</"));
    assert!(!STYLE.contains("</"));
}

fn hostile_config() -> CompiledConfig {
    CompiledConfig::from_json(
        r#"{"mints":["http://127.0.0.1:3338", "https://evil.example/\"'><script>alert(1)</script>&x"],
            "tiers":[{"id":"premium","path_prefix":"/premium","amount":1000},
                     {"id":"compute","path_prefix":"/compute","amount":21,
                      "lease":{"seconds":3600}}],
            "pass_keys":[{"id":"k1","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}"#,
    )
    .unwrap()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_tiers_page_is_built_with_the_config_and_escapes_what_it_shows() {
    let config = hostile_config();
    for tier in config.price_tiers() {
        let challenge = &tier.challenge;
        let page = challenge.html.as_deref().unwrap();
        assert_page_is_locked_down(page);
        // The price, the unit, the payment request (as text and as a QR
        // code), the form.
        assert!(page.contains(&format!("<strong>{} sat</strong>", tier.amount)));
        assert!(page.contains(&format!(">{}</textarea>", challenge.payment_request)));
        assert!(page.contains("<svg class=\"qr\""), "no QR code");
        assert!(page.contains("<form id=\"pay\""));
        assert!(page.contains("<label for=\"token\">Cashu token</label>"));
        // The hostile mint only escaped.
        assert!(page.contains("<li><code>http://127.0.0.1:3338</code></li>"));
        assert!(page.contains(
            "<li><code>https://evil.example/&quot;&#39;&gt;&lt;script&gt;alert(1)\
             &lt;/script&gt;&amp;x</code></li>"
        ));
        assert!(!page.contains("alert(1)</script>"));
        match tier.id.as_deref() {
            Some("compute") => {
                assert!(page.contains("data-lease=\"1\""));
                assert!(page.contains("buys 1 hour of access"));
                assert!(page.contains("<code>compute</code>"));
            }
            Some(id) => {
                assert!(page.contains("data-lease=\"0\""));
                assert!(page.contains(&format!("Tier: <code>{id}</code>")));
            }
            None => {
                assert!(page.contains("data-lease=\"0\""));
                assert!(!page.contains("Tier:"));
            }
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_page_builder_escapes_a_hostile_tier_id_and_unit() {
    // A config refuses such a tier id and unit; the builder escapes them
    // all the same.
    let page = payment_page(
        5,
        "s<a>t",
        &["http://m\"/<script>x</script>".to_string()],
        Some("t\"><script>alert('x')</script>"),
        None,
        "creqAabc",
    );
    assert_page_is_locked_down(&page);
    assert!(page
        .contains("Tier: <code>t&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</code>"));
    assert!(page.contains("<strong>5 s&lt;a&gt;t</strong>"));
    assert!(page.contains("<code>http://m&quot;/&lt;script&gt;x&lt;/script&gt;</code>"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_raised_price_gets_its_page_only_when_asked() {
    let config = hostile_config();
    let tier = config.tier_by_id("premium").unwrap();
    let own = config.challenge_for(tier, tier.amount).unwrap();
    assert!(own.html.is_some());
    let raised = config.challenge_for(tier, 5000).unwrap();
    assert!(raised.html.is_none(), "a page built per request for JSON");
    let page = config.payment_page(tier, 5000).unwrap();
    assert_page_is_locked_down(&page);
    assert!(page.contains("<strong>5000 sat</strong>"));
    assert!(page.contains(&format!(">{}</textarea>", raised.payment_request)));
    assert!(!page.contains("Tier:"));
    assert_eq!(
        config.payment_page(tier, tier.amount).as_deref(),
        tier.challenge.html.as_deref()
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn error_pages_show_the_code_and_the_escaped_words() {
    for code in ErrorCode::ALL {
        let page = error_page(code, "mint \"<b>x</b>\" is not accepted", None);
        assert_page_is_locked_down(&page);
        assert!(page.contains(&format!(
            "Error {}, code <code>{code}</code>",
            code.status()
        )));
        assert!(page.contains("mint &quot;&lt;b&gt;x&lt;/b&gt;&quot; is not accepted"));
        assert!(!page.contains("<b>"));
        assert!(!page.contains("id=\"refund-box\""), "no refund, no box");
        assert!(!page.contains("<form"));
    }
    let page = error_page(
        ErrorCode::ProvisioningFailed,
        "the lease's pod could not be provisioned",
        Some("cashuBrefund<>"),
    );
    assert_page_is_locked_down(&page);
    assert!(page.contains("<title>Service unavailable</title>"));
    assert!(page.contains("<div id=\"refund-box\">"));
    assert!(page.contains(">cashuBrefund&lt;&gt;</textarea>"));
    assert!(page.contains("data-copy=\"refund\""));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn durations_read_as_words() {
    for (seconds, words) in [
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (5400, "90 minutes"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (86_400, "1 day"),
        (30 * 86_400, "30 days"),
    ] {
        assert_eq!(duration_words(seconds), words);
    }
}

/// The dark modules of a QR `<svg>`, read back from its path: its side
/// (quiet zone included) and the modules row by row.
fn svg_modules(svg: &str) -> (usize, Vec<bool>) {
    let view_box = between(svg, "viewBox=\"0 0 ", "\"");
    let side: usize = view_box.split(' ').next().unwrap().parse().unwrap();
    let mut modules = vec![false; side * side];
    let path = between(svg, " d=\"", "\"");
    for run in path.split('z').filter(|r| !r.is_empty()) {
        // M<x> <y>h<n>v1h-<n>
        let rest = run.strip_prefix('M').unwrap();
        let (x, rest) = rest.split_once(' ').unwrap();
        let (y, rest) = rest.split_once('h').unwrap();
        let (n, rest) = rest.split_once('v').unwrap();
        assert_eq!(rest, format!("1h-{n}"), "{run}");
        let (x, y, n): (usize, usize, usize) =
            (x.parse().unwrap(), y.parse().unwrap(), n.parse().unwrap());
        for dx in 0..n {
            assert!(!modules[y * side + x + dx], "overlapping runs");
            modules[y * side + x + dx] = true;
        }
    }
    (side, modules)
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_qr_svg_draws_exactly_the_encoders_modules() {
    let config = hostile_config();
    for tier in config.price_tiers() {
        let creq = &tier.challenge.payment_request;
        let (size, want) = qr_modules(creq).unwrap();
        let page = tier.challenge.html.as_deref().unwrap();
        let svg = between(page, "<svg", "</svg>");
        let (side, drawn) = svg_modules(svg);
        assert_eq!(side, size + 2 * QR_QUIET_ZONE);
        for y in 0..side {
            for x in 0..side {
                let inner = (QR_QUIET_ZONE..QR_QUIET_ZONE + size).contains(&x)
                    && (QR_QUIET_ZONE..QR_QUIET_ZONE + size).contains(&y);
                let expected = inner && want[(y - QR_QUIET_ZONE) * size + (x - QR_QUIET_ZONE)];
                assert_eq!(drawn[y * side + x], expected, "module ({x}, {y})");
            }
        }
    }
}

/// The QR code read back by a decoder (rqrr) from the rasterised `<svg>`:
/// exactly the payment request.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_qr_svg_decodes_to_the_payment_request() {
    let config = hostile_config();
    let mut seen = 0;
    for tier in config.price_tiers() {
        let creq = &tier.challenge.payment_request;
        let svg = qr_svg(creq).unwrap();
        let (side, modules) = svg_modules(&svg);
        const SCALE: usize = 4;
        let mut image =
            rqrr::PreparedImage::prepare_from_greyscale(side * SCALE, side * SCALE, |x, y| {
                if modules[(y / SCALE) * side + x / SCALE] {
                    0
                } else {
                    255
                }
            });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "{creq}");
        let (_, text) = grids[0].decode().unwrap();
        assert_eq!(&text, creq);
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_payment_request_too_long_for_a_qr_code_is_shown_as_text_only() {
    let long = format!("creqA{}", "x".repeat(4000));
    assert!(qr_svg(&long).is_none());
    let page = payment_page(1, "sat", &["http://m".into()], None, None, &long);
    assert_page_is_locked_down(&page);
    assert!(!page.contains("<svg"));
    assert!(page.contains(&long));
}
