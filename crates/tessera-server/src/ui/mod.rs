//! The web UI served at `/`: server-rendered pages that read without JavaScript (pipelines,
//! definitions, graphs, tasks, results, the engine), forms that work as plain HTML posts, and
//! one small script of our own (`assets/ui/app.js`) that follows server-sent events to keep a
//! page live. Nothing is built or fetched from elsewhere; auth is the API's tokens.

// Pages are written with `write!`, a line of markup at a time: its newline belongs to it.
#![allow(clippy::write_with_newline)]

pub(crate) mod assets;
mod engine;
pub(crate) mod html;
mod live;
mod login;
mod pipelines;
mod run_form;
pub(crate) mod session;
mod tasks;
mod tiles;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// The UI's routes: `/` and `/ui/…`.
pub fn router(state: AppState) -> Router<AppState> {
    let max_upload = state.limits.max_upload;
    Router::new()
        .route("/", get(pipelines::list))
        .route("/ui", get(|| async { axum::response::Redirect::to("/") }))
        .route("/ui/", get(|| async { axum::response::Redirect::to("/") }))
        .route("/ui/pipelines/{name}", get(pipelines::page))
        .route(
            "/ui/pipelines/{name}/run",
            get(run_form::form)
                .post(run_form::submit)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload)),
        )
        .route("/ui/pipelines/{name}/schedule", post(pipelines::schedule))
        .route("/ui/tasks/{id}", get(tasks::page))
        .route("/ui/tasks/{id}/cancel", post(tasks::cancel))
        .route("/ui/tasks/{id}/resume", post(tasks::resume))
        .route("/ui/tasks/{id}/live", get(live::task))
        .route("/ui/tasks/{id}/nodes/{node}/log", get(tasks::log_page))
        .route("/ui/tasks/{id}/nodes/{node}/log/live", get(live::log))
        .route("/ui/engine", get(engine::page))
        .route("/ui/engine/live", get(live::engine))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/{file}", get(assets::serve))
        .route(
            "/ui/{*rest}",
            axum::routing::any(|| async {
                html::error_page(axum::http::StatusCode::NOT_FOUND, "there is no such page")
            }),
        )
        .layer(axum::middleware::map_response(html_errors))
        .layer(axum::middleware::from_fn(session::csrf_cookie))
}

/// Errors axum makes itself (a malformed query, a wrong method, a missing content type) come
/// as plain text or nothing: on the UI they become pages too, with the same status.
async fn html_errors(resp: Response) -> Response {
    use axum::http::header;
    let status = resp.status();
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if status.as_u16() < 400 || is_html {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    let message = match text.trim() {
        "" => match status {
            axum::http::StatusCode::METHOD_NOT_ALLOWED => {
                "this page does not take that method (forms post, pages get)".to_string()
            }
            other => other.canonical_reason().unwrap_or("error").to_string(),
        },
        t => t.to_string(),
    };
    html::error_page(status, &message)
}

/// An error on a UI page: the API's error, as a page (same status, same public message).
pub struct UiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let public = self.0.public();
        html::error_page(public.status, &public.message)
    }
}

/// A form rejected as not coming from the UI itself.
fn forged() -> UiError {
    UiError(ApiError::Forbidden(
        "this form did not come from this site's own page (CSRF check failed): reload the page and try again"
            .into(),
    ))
}
