//! `GET /api/v1/objects/{id}`: object bytes, streamed, for a caller allowed to read its task.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let i = id.clone();
    let meta = state
        .blocking(move |s| {
            let Some(meta) = s.object(&i)? else {
                return Ok(None);
            };
            let task = s.object_task(&i)?;
            let owner = match &task {
                Some(t) => s
                    .task_read(t, tessera_store::ValueRead::Sizes)?
                    .and_then(|t| t.owner),
                None => None,
            };
            Ok(Some((meta, task.is_some(), owner)))
        })
        .await?;
    let Some((meta, has_task, owner)) = meta else {
        return Err(ApiError::not_found("object", &id));
    };
    // Uploads not yet attached to a task are readable by admins only.
    let allowed = if has_task {
        caller.can_see(owner.as_deref())
    } else {
        caller.owner_filter().is_none()
    };
    if !allowed {
        return Err(ApiError::not_found("object", &id));
    }
    let stream = state.objects().stream(&meta.id).await?;
    let content_type = meta
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    // Objects are whatever users uploaded or commands wrote: never a page of this site. They
    // run no script and are never sniffed into HTML (the web UI shares this origin); only
    // raster images are shown in place, anything else is a download.
    let shown_inline = matches!(
        content_type.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif" | "image/bmp"
    );
    let disposition = if shown_inline { "inline" } else { "attachment" };
    let mut headers = vec![
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_LENGTH, meta.size.to_string()),
        (header::ETAG, format!("\"{}\"", meta.sha256)),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'; img-src 'self'".to_string(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    let safe: String = meta
        .name
        .as_deref()
        .unwrap_or("object")
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    headers.push((
        header::CONTENT_DISPOSITION,
        format!("{disposition}; filename=\"{safe}\""),
    ));
    let mut resp = Body::from_stream(stream).into_response();
    for (k, v) in headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}
