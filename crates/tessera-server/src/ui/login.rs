//! Signing in and out of the web UI with an API token: the token is checked as the API
//! checks it, then kept in an HTTP-only, same-site cookie (scripts cannot read it, other
//! sites cannot send it).

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{Page, esc};
use super::session::{CsrfToken, TOKEN_COOKIE, csrf_ok, safe_next, set_cookie};
use super::{UiError, forged};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(state: &AppState, csrf: &str, next: &str, error: Option<&str>) -> Page {
    let mut b = String::from("<h1>Sign in</h1>\n");
    if !state.tokens.enabled() {
        b.push_str(
            "<p>This server runs without tokens: no sign-in is needed. <a href=\"/\">Pipelines</a></p>",
        );
        return Page::new("Sign in", "", b);
    }
    if let Some(e) = error {
        let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>\n", esc(e));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/ui/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"token\">API token (the secret of a <code>user</code> or <code>admin</code> token)</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form>\n\
         <p class=\"note\">The token is kept in a cookie this site alone receives and scripts cannot read.</p>",
        esc(csrf),
        esc(next)
    );
    let mut page = Page::new("Sign in", "", b);
    page.csrf = csrf.to_string();
    if error.is_some() {
        page.status = StatusCode::UNAUTHORIZED;
    }
    page
}

pub async fn form(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    Query(q): Query<LoginQuery>,
) -> Page {
    login_page(&state, &csrf.0, safe_next(q.next.as_deref()), None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    csrf: Option<String>,
    token: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Result<Response, UiError> {
    if !csrf_ok(&headers, form.csrf.as_deref()) {
        return Err(forged());
    }
    let next = safe_next(form.next.as_deref()).to_string();
    let secret = form.token.trim();
    match state.tokens.check(secret) {
        Some(caller) if caller.role != crate::auth::Role::Service => {
            tracing::info!(name = caller.name.as_deref(), "signed in to the web UI");
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(TOKEN_COOKIE, &hex::encode(secret), None),
            );
            Ok(r)
        }
        Some(_) => Ok(login_page(
            &state,
            &csrf.0,
            &next,
            Some("a service's token does not open the web UI"),
        )
        .into_response()),
        None => {
            Ok(login_page(&state, &csrf.0, &next, Some("this token is not known")).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

pub async fn logout(
    headers: HeaderMap,
    axum::Form(form): axum::Form<LogoutForm>,
) -> Result<Response, UiError> {
    if !csrf_ok(&headers, form.csrf.as_deref()) {
        return Err(forged());
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(TOKEN_COOKIE, "", Some(0)));
    Ok(r)
}
