//! HTML for the web UI: escaping (every value that reaches a page goes through [`esc`] or
//! [`attr`]), the page shell, and the small pieces pages share (state badges, times, pages).

use std::fmt::Write as _;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Text escaped for an HTML text node or a double-quoted attribute.
pub struct Esc<'a>(pub &'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = 0;
        for (i, b) in self.0.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// A path segment (pipeline name, task id, node key) percent-encoded for a URL, then escaped
/// for the attribute it sits in.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A finished HTML page.
pub struct Page {
    pub title: String,
    /// The navigation entry that is current (`pipelines`, `engine`).
    pub nav: &'static str,
    pub body: String,
    /// Who is signed in (shown with a sign-out button), when tokens are on.
    pub user: Option<String>,
    /// The CSRF token forms of this page carry (the sign-out form too).
    pub csrf: String,
    pub status: StatusCode,
}

impl Page {
    pub fn new(title: impl Into<String>, nav: &'static str, body: String) -> Page {
        Page {
            title: title.into(),
            nav,
            body,
            user: None,
            csrf: String::new(),
            status: StatusCode::OK,
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut s = String::with_capacity(self.body.len() + 2048);
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{} · Tessera</title>\n\
             <link rel=\"stylesheet\" href=\"/ui/assets/app.css?v={v}\">\n\
             <script src=\"/ui/assets/app.js?v={v}\" defer></script>\n</head>\n<body>\n\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
             <header class=\"top\"><a class=\"brand\" href=\"/\">Tessera</a><nav aria-label=\"main\">",
            esc(&self.title),
            v = *super::assets::VERSION,
        );
        for (key, href, label) in [
            ("pipelines", "/", "Pipelines"),
            ("engine", "/ui/engine", "Engine"),
        ] {
            let current = if key == self.nav {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(s, "<a href=\"{href}\"{current}>{label}</a>");
        }
        s.push_str("</nav>");
        if let Some(user) = &self.user {
            let _ = write!(
                s,
                "<form class=\"signout\" method=\"post\" action=\"/ui/logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <span>{}</span> <button type=\"submit\">Sign out</button></form>",
                esc(&self.csrf),
                esc(user)
            );
        }
        let _ = write!(
            s,
            "</header>\n<main id=\"main\">\n{}\n</main>\n</body>\n</html>\n",
            self.body
        );
        (
            self.status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                // Pages load nothing from elsewhere and run only our own script file.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                     script-src 'self'; object-src 'none'; base-uri 'none'; \
                     form-action 'self'; frame-ancestors 'none'",
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "same-origin"),
            ],
            s,
        )
            .into_response()
    }
}

/// A task or node state as a badge: its word as text (never colour alone) and a class.
pub fn badge(state: &str) -> String {
    format!(
        "<span class=\"badge s-{}\">{}</span>",
        css_word(state),
        esc(state)
    )
}

/// A state word safe as a CSS class suffix (states are closed words; anything else is `other`).
pub fn css_word(state: &str) -> &str {
    match state {
        "pending" | "waiting" | "ready" | "running" | "finished" | "failed" | "skipped"
        | "cancelled" | "queued" | "computing" | "cached" | "delivered" | "paused" | "active"
        | "unavailable" | "available" | "committed" => state,
        _ => "other",
    }
}

/// A time in ms since the epoch as RFC 3339 (UTC), in a `<time>` element.
pub fn time(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => {
            let t = tessera_core::time::rfc3339(ms);
            format!(
                "<time datetime=\"{t}\">{}</time>",
                esc(&t.replace('T', " "))
            )
        }
        None => "—".into(),
    }
}

/// A duration in ms, short (`850 ms`, `12.4 s`, `3 min 05 s`).
pub fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1e3),
        Some(ms) => format!("{} min {:02} s", ms / 60_000, (ms / 1_000) % 60),
    }
}

/// A count with thousands separators (`1,000,000`).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// JSON pretty-printed in a `<pre>`, escaped; cut (with a note) beyond `max` bytes.
pub fn json_block(v: &serde_json::Value, max: usize) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    text_block(&text, max)
}

/// Text in a `<pre>`, escaped; cut (with a note) beyond `max` bytes.
pub fn text_block(text: &str, max: usize) -> String {
    if text.len() <= max {
        return format!("<pre>{}</pre>", esc(text));
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "<pre>{}</pre><p class=\"note\">Cut at {} of {} bytes.</p>",
        esc(&text[..cut]),
        count(cut as u64),
        count(text.len() as u64)
    )
}

/// An HTML error page with the status.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut page = Page::new(
        title,
        "",
        format!(
            "<h1>{}</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n<p><a href=\"/\">All pipelines</a></p>",
            esc(title),
            esc(message)
        ),
    );
    page.status = status;
    page.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(esc("plain é").to_string(), "plain é");
        assert_eq!(seg("a b/c?d#é"), "a%20b%2Fc%3Fd%23%C3%A9");
        assert_eq!(css_word("finished"), "finished");
        assert_eq!(css_word("x\" onclick=\"y"), "other");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(duration(Some(850)), "850 ms");
        assert_eq!(duration(Some(12_400)), "12.4 s");
        assert_eq!(duration(Some(185_000)), "3 min 05 s");
        assert!(text_block(&"é".repeat(10), 5).contains("Cut at 4 of 20 bytes"));
    }
}
