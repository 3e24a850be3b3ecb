//! Rendering the committed config templates (`envoy/*.yaml`,
//! `nginx/*.template`, `traefik/*`), by the rule of `scripts/render.py`:
//! every `${NAME}` (`NAME` in `[A-Z0-9_]+`) is replaced by its value in one
//! pass (a value is not rendered again); anything else, NGINX's lower-case
//! `$variables` included, is left as it is.

/// Whether `name` is a placeholder name: `[A-Z0-9_]+`.
fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The `${NAME}` placeholders of a template, in order.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if is_placeholder_name(name) {
                    found.push(name);
                }
                rest = &after[end..];
            }
            None => break,
        }
    }
    found
}

/// Renders `template` with `values`. Panics, naming them, when placeholders
/// have no value or values name no placeholder, so a config never reaches a
/// proxy half-rendered (or rendered from the wrong template).
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    let value_of = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    let unused: Vec<&str> = values
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !placeholders(template).contains(n))
        .collect();
    assert!(
        unused.is_empty(),
        "the template has no placeholder for: {}",
        unused.join(", ")
    );
    let mut out = String::with_capacity(template.len());
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_placeholder_name(&after[..end]) => {
                let name = &after[..end];
                match value_of(name) {
                    Some(value) => out.push_str(value),
                    None => missing.push(name),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    missing.sort_unstable();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "the template needs values for: {}",
        missing.join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_one_pass_and_leaves_nginx_variables() {
        let t = "listen ${PORT}; set $x ${A}; ${lower} ${B_2}";
        let out = render(
            t,
            &[
                ("PORT", "80".into()),
                ("A", "${B_2}".into()),
                ("B_2", "b".into()),
            ],
        );
        assert_eq!(out, "listen 80; set $x ${B_2}; ${lower} b");
        assert_eq!(placeholders(t), vec!["PORT", "A", "B_2"]);
    }

    #[test]
    #[should_panic(expected = "needs values for: A")]
    fn a_missing_value_is_named() {
        render("${A}", &[]);
    }

    #[test]
    #[should_panic(expected = "no placeholder for: B")]
    fn a_value_for_no_placeholder_is_named() {
        render("${A}", &[("A", "a".into()), ("B", "b".into())]);
    }
}
