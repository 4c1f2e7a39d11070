//! Who uses the web UI, and proof that a form came from it: the API's tokens, kept in an
//! HTTP-only SameSite cookie after the sign-in form; a CSRF token (double submit: a cookie and
//! the same value in each form) checked on every POST, with the request's `Origin`.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::auth::{Caller, Role};
use crate::state::AppState;

/// The cookie holding the API token of the signed-in user.
pub const TOKEN_COOKIE: &str = "tessera_token";
/// The cookie holding this browser's CSRF token.
pub const CSRF_COOKIE: &str = "tessera_csrf";

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HTTP-only, same-site strict, for the whole site.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of this request's browser (set by [`csrf_cookie`] when it had none).
#[derive(Clone)]
pub struct CsrfToken(pub String);

/// Gives every browser a CSRF token: from its cookie, or a new one set on the response.
pub async fn csrf_cookie(mut request: Request, next: Next) -> Response {
    let existing = cookie(request.headers(), CSRF_COOKIE)
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    let fresh = existing.is_none();
    let token = existing.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let mut response = next.run(request).await;
    if fresh {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, &token, None));
    }
    response
}

/// Whether a POST is the UI's own: its `csrf` value matches the browser's cookie and, when it
/// says where it comes from (`Origin`), it comes from this very host.
pub fn csrf_ok(headers: &HeaderMap, submitted: Option<&str>) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    let same_token = submitted.is_some_and(|s| constant_eq(s.as_bytes(), expected.as_bytes()));
    let origin_ok = match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest == host)
        }
    };
    same_token && origin_ok
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user of a UI request, with what its pages need: its caller (as the API would see it),
/// its name to show, and the CSRF token its forms carry.
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
}

impl Viewer {
    /// Shown in the header when tokens are on.
    pub fn shown_name(&self, state: &AppState) -> Option<String> {
        state.tokens.enabled().then(|| {
            let role = match self.caller.role {
                Role::Admin => "admin",
                Role::User => "user",
                Role::Service => "service",
            };
            format!("{} ({role})", self.caller.name.as_deref().unwrap_or("?"))
        })
    }
}

/// Not signed in: pages send the browser to the sign-in form, back here afterwards.
pub struct SignIn {
    next: String,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let to = format!("/ui/login?next={}", super::html::seg(&self.next));
        Redirect::to(&to).into_response()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Viewer, Response> {
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let caller = match crate::auth::caller_of(&parts.headers, state, true) {
            Some(c) => c,
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                return Err(SignIn { next }.into_response());
            }
        };
        if caller.role == Role::Service {
            return Err(super::html::error_page(
                StatusCode::FORBIDDEN,
                "a service's token does not open the web UI",
            ));
        }
        Ok(Viewer { caller, csrf })
    }
}

/// A local path to go back to after signing in (never another site: `//host`, `/\host`).
pub fn safe_next(next: Option<&str>) -> &str {
    // Visible ASCII only: a tab or a newline would let a browser read `/\t/host` as `//host`
    // (and cannot go in a `Location` header anyway); no backslash anywhere.
    let visible = |n: &str| n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && visible(n) => n,
        _ => "/",
    }
}

/// Whether a method changes state (the UI's forms are all POST).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_are_found_among_several() {
        let h = headers(&[("cookie", "a=1; tessera_csrf=abc ; b=2"), ("cookie", "c=3")]);
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "tessera"), None);
    }

    #[test]
    fn csrf_needs_the_same_token_and_this_origin() {
        let base = [("cookie", "tessera_csrf=0123"), ("host", "127.0.0.1:8080")];
        assert!(csrf_ok(&headers(&base), Some("0123")));
        assert!(!csrf_ok(&headers(&base), Some("0124")));
        assert!(!csrf_ok(&headers(&base), None));
        assert!(!csrf_ok(&headers(&[("host", "h")]), Some("0123")));
        let mut same = base.to_vec();
        same.push(("origin", "http://127.0.0.1:8080"));
        assert!(csrf_ok(&headers(&same), Some("0123")));
        let mut other = base.to_vec();
        other.push(("origin", "http://evil.example"));
        assert!(!csrf_ok(&headers(&other), Some("0123")));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/ui/tasks/x")), "/ui/tasks/x");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/x")), "/");
        assert_eq!(safe_next(Some("/a\\b")), "/");
        assert_eq!(safe_next(Some("/ui/x?next=%2F")), "/ui/x?next=%2F");
    }
}
