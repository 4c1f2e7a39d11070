//! The UI's own two files, embedded in the binary: its stylesheet and its script. Written by
//! hand, no build step; their URLs carry [`VERSION`] so a new build is fetched afresh.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../../assets/ui/app.css");
const JS: &str = include_str!("../../assets/ui/app.js");

/// Changes with the files: the first 12 hex digits of a digest of both.
pub static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(CSS.as_bytes());
    h.update(JS.as_bytes());
    hex::encode(h.finalize())[..12].to_string()
});

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return super::html::error_page(StatusCode::NOT_FOUND, "no such file"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
