//! The `service` executor: dispatch `POST url?task_id=..&callback_url=..` (JSON, or
//! multipart when the input holds objects), then wait for the callback. Each attempt has its own
//! unguessable token, stored before dispatch, so a callback is accepted after a restart and a
//! late callback of a superseded attempt is not.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tessera_core::Data;
use tessera_core::model::{ServiceSpec, ServiceTarget};
use tessera_core::scheduler::JobError;
use tessera_core::services::{Announced, resolve};
use tessera_store::{CallbackRow, CallbackState, ObjectMeta};

use crate::jobs::JobContext;
use crate::template::{Scope, render, render_shown};

/// Delays between dispatch attempts when the service is unreachable or busy.
const DISPATCH_DELAYS_MS: &[u64] = &[100, 250, 500, 1000, 2000, 4000];

/// A fresh 256-bit token (two random UUIDs' worth of entropy, hex).
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where a token is shown instead of itself: whoever reads an error, a log or a task
/// document must not be able to answer (or forge the answer of) a service call.
const HIDDEN: &str = "…";

/// `text` with every occurrence of the token hidden (a service's error body may echo the
/// callback URL it was given; the token is hex, so its URL-encoded form is itself).
pub(crate) fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_string();
    }
    text.replace(token, HIDDEN)
}

fn callback_url(base: &str, token: &str) -> String {
    format!("{}/api/v1/callbacks/{token}", base.trim_end_matches('/'))
}

pub(crate) async fn run(ctx: &mut JobContext, spec: &ServiceSpec) -> Result<Value, JobError> {
    let Some(base) = ctx.engine.config.callback_base.clone() else {
        return Err(JobError::permanent(
            "`service` nodes need somewhere to receive callbacks: this engine was started \
             without a callback URL (`tessera run` and `tessera serve` listen for them)",
        ));
    };
    let store = ctx.engine.store.clone();
    let (task, key, iteration, attempt) = (
        ctx.task_id.clone(),
        ctx.key.clone(),
        ctx.iteration,
        ctx.attempt,
    );
    let existing =
        blocking(move || store.callback_for_attempt(&task, &key, iteration, attempt)).await?;
    let token = match existing {
        Some(row) if row.state == CallbackState::Received => return outcome(ctx, &row),
        // Rows stored before the base was recorded keep waiting, as they always did.
        Some(row)
            if row.state == CallbackState::Waiting
                && row.callback_base.as_deref().is_none_or(|b| b == base) =>
        {
            ctx.log("engine", "still waiting for the callback of this attempt");
            row.token
        }
        // Stored but never accepted by the service (the process died while dispatching), or
        // accepted with a callback URL nobody serves any more: a `tessera run` listens on a
        // port of its own, gone with its process, so a resumed task's service would call back
        // into the void. The same token goes out again with this process's URL (the service
        // may then do the work twice: at-least-once, like any attempt cut short).
        Some(row) if row.state.is_expected() => {
            if row.callback_base.as_deref() != Some(base.as_str()) {
                let store = ctx.engine.store.clone();
                let (t, b) = (row.token.clone(), base.clone());
                if !blocking(move || store.redispatch_callback(&t, &b)).await? {
                    // Answered meanwhile (the service called back while this process took
                    // the task over), or retired.
                    let store = ctx.engine.store.clone();
                    let t = row.token.clone();
                    return match blocking(move || store.callback(&t)).await? {
                        Some(row) if row.state == CallbackState::Received => outcome(ctx, &row),
                        _ => Err(JobError::retryable("this attempt was superseded")),
                    };
                }
                ctx.log(
                    "engine",
                    "dispatching again: the callback URL the service was given is no longer \
                     served",
                );
            }
            dispatch(ctx, spec, &base, &row.token).await?;
            row.token
        }
        _ => {
            let token = new_token();
            let store = ctx.engine.store.clone();
            let row = CallbackRow {
                token: token.clone(),
                task_id: ctx.task_id.clone(),
                key: ctx.key.clone(),
                iteration: ctx.iteration,
                attempt: ctx.attempt,
                state: CallbackState::Dispatching,
                result: None,
                failed: false,
                callback_base: Some(base.clone()),
            };
            let fence = ctx.run.fence;
            blocking(move || store.create_callback(&row, fence)).await?;
            if let Err(e) = dispatch(ctx, spec, &base, &token).await {
                let store = ctx.engine.store.clone();
                let t = token.clone();
                let fence = ctx.run.fence;
                let _ = blocking(move || store.supersede_callback(&t, fence)).await;
                return Err(e);
            }
            token
        }
    };
    let store = ctx.engine.store.clone();
    let t = token.clone();
    blocking(move || store.mark_dispatched(&t)).await?;
    // From here the attempt ends with its callback, or its token is retired (timeout, cancel).
    let _retire = Retire::new(ctx, &token);
    let row = wait_for_callback(ctx, &token).await?;
    outcome(ctx, &row)
}

fn outcome(ctx: &mut JobContext, row: &CallbackRow) -> Result<Value, JobError> {
    let result = row.result.clone().unwrap_or(Value::Null);
    if row.failed {
        let msg = result
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| result.to_string());
        let msg = redact(&msg, &row.token);
        ctx.log("engine", format!("the service reported a failure: {msg}"));
        return Err(JobError::retryable(format!("the service reported: {msg}")));
    }
    ctx.log("engine", "callback received");
    Ok(result)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tessera_store::StoreError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::retryable(e.to_string()))?
        .map_err(|e| JobError::retryable(format!("store: {e}")))
}

/// Retires a token when its attempt ends without the callback (timeout, cancel, failed
/// dispatch): a late callback is then refused. A killed process drops nothing, so after a crash
/// the token stays valid and the resumed attempt keeps waiting for it.
struct Retire {
    engine: std::sync::Arc<crate::Shared>,
    task_id: String,
    token: String,
    fence: u64,
}

impl Retire {
    fn new(ctx: &JobContext, token: &str) -> Retire {
        Retire {
            engine: ctx.engine.clone(),
            task_id: ctx.task_id.clone(),
            token: token.to_string(),
            fence: ctx.run.fence,
        }
    }
}

impl Drop for Retire {
    fn drop(&mut self) {
        // A job stopped because this process stops or lost the task leaves the token to the
        // next holder, whose attempt waits on it still.
        let stopping = self
            .engine
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst);
        let held = self
            .engine
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&self.task_id);
        if stopping || !held {
            return;
        }
        // Answered tokens are untouched: only `dispatching`/`waiting` ones are retired, and
        // only while this claim still holds the task (a claim lost to another runner, not
        // yet noticed here, leaves the token to the new holder, who waits on it). Written off
        // the async threads: a store call waiting for a connection there would hold up every
        // timer of the process (lease renewals first).
        let (store, token, fence) = (
            self.engine.store.clone(),
            std::mem::take(&mut self.token),
            self.fence,
        );
        let retire = move || {
            if let Err(e) = store.supersede_callback(&token, fence) {
                tracing::warn!(error = %e, "could not retire a callback token");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(retire)),
            Err(_) => retire(),
        }
    }
}

/// Waits until the token's callback is stored. The waiter is registered before the store is
/// checked, so a callback arriving in between is not missed.
async fn wait_for_callback(ctx: &JobContext, token: &str) -> Result<CallbackRow, JobError> {
    let notified = Arc::new(tokio::sync::Notify::new());
    let _registration = ctx.engine.callbacks.register(token, notified.clone());
    loop {
        let store = ctx.engine.store.clone();
        let t = token.to_string();
        let notice = notified.notified();
        let row = blocking(move || store.callback(&t)).await?;
        match row {
            Some(row) if row.state == CallbackState::Received => return Ok(row),
            Some(row) if row.state.is_expected() => notice.await,
            _ => return Err(JobError::retryable("this attempt was superseded")),
        }
    }
}

/// The endpoint's URL and how to name it in logs: the rendered `url`, or the URL a name
/// stands for in the registry now.
async fn endpoint(ctx: &JobContext, spec: &ServiceSpec) -> Result<(String, String), JobError> {
    match &spec.target {
        ServiceTarget::Url(template) => {
            let params = ctx.template_params();
            let (input, paths) = (&ctx.input, &ctx.scope);
            let scope = Scope {
                input,
                params: &params,
                paths,
            };
            let mut no_objects = crate::template::no_objects("an object cannot be placed in a URL");
            let url = render(template, &scope, &mut no_objects).map_err(JobError::permanent)?;
            // Shown with its secrets as written (`${env:KEY}`), never their values.
            let shown = render_shown(template, &scope, &mut no_objects).unwrap_or_default();
            Ok((url, shown))
        }
        ServiceTarget::Named(name) => {
            let store = ctx.engine.store.clone();
            let services = blocking(move || store.list_services()).await?;
            let known: Vec<Announced> = services
                .iter()
                .map(|s| Announced::new(&s.name, &s.url, &s.endpoints))
                .collect();
            // Not retried: the registry changes only when a service announces, which takes
            // its own start (seconds to minutes), not the node's backoff; retrying would hide
            // a typo behind the retry delays. `tessera resume` looks the name up again.
            let url = resolve(name, &known).map_err(|e| JobError::permanent(e.to_string()))?;
            Ok((url.clone(), format!("{name} at {url}")))
        }
    }
}

/// Posts the input to the service, retrying with a growing delay while it is unreachable,
/// answers 5xx, 408 or 429. Nothing it reports shows the token.
async fn dispatch(
    ctx: &mut JobContext,
    spec: &ServiceSpec,
    base: &str,
    token: &str,
) -> Result<(), JobError> {
    let input = ctx.input.clone();
    let (url, shown) = endpoint(ctx, spec).await?;
    let callback = callback_url(base, token);
    let mut last_error = String::new();
    for (n, delay) in std::iter::once(0)
        .chain(DISPATCH_DELAYS_MS.iter().copied())
        .enumerate()
    {
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let req = ctx.engine.http.post(&url).query(&[
            ("task_id", ctx.task_id.as_str()),
            ("callback_url", callback.as_str()),
        ]);
        let req = with_body(ctx, req, &input).await?;
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                ctx.log("engine", format!("dispatched to {shown} (try {})", n + 1));
                return Ok(());
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                // Hidden before it is cut, so no part of the token survives the cut.
                let body: String = body.chars().take(4096).collect();
                let body: String = redact(&body, token).chars().take(300).collect();
                last_error = format!("POST {url}: HTTP {status}: {body}");
                let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                if !retryable {
                    return Err(JobError::permanent(last_error));
                }
            }
            // The error's own text would show the whole request URL, query and token included.
            Err(e) => last_error = redact(&format!("POST {url}: {}", describe(e)), token),
        }
        ctx.log(
            "engine",
            format!("dispatch failed, will retry: {last_error}"),
        );
    }
    Err(JobError::retryable(format!(
        "service unavailable: {last_error}"
    )))
}

/// A request error with its causes (`error sending request: … connection refused`), without
/// the request URL reqwest would show: it holds the callback URL and its token.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// JSON when the input holds no objects; otherwise multipart with one part per top-level
/// object field (streamed from the object store) and the other fields as JSON in part `data`.
async fn with_body(
    ctx: &JobContext,
    req: reqwest::RequestBuilder,
    input: &Data,
) -> Result<reqwest::RequestBuilder, JobError> {
    let json_body = |req: reqwest::RequestBuilder| {
        req.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(input.json().into_owned())
    };
    if !input.may_contain_key("$object") {
        return Ok(json_body(req));
    }
    let tree = input.value();
    let Value::Object(fields) = tree.as_ref() else {
        return Ok(json_body(req));
    };
    let objects: Vec<(&String, ObjectMeta)> = fields
        .iter()
        .filter_map(|(k, v)| ObjectMeta::from_json(v).map(|m| (k, m)))
        .collect();
    if objects.is_empty() {
        return Ok(json_body(req));
    }
    let mut form = reqwest::multipart::Form::new();
    let mut data = Map::new();
    for (k, v) in fields {
        if ObjectMeta::from_json(v).is_none() {
            data.insert(k.clone(), v.clone());
        }
    }
    if !data.is_empty() {
        let part = reqwest::multipart::Part::text(Value::Object(data).to_string())
            .mime_str("application/json")
            .map_err(|e| JobError::permanent(e.to_string()))?;
        form = form.part("data", part);
    }
    for (name, meta) in objects {
        let body = object_body(ctx, &meta).await?;
        let mut part = reqwest::multipart::Part::stream_with_length(body, meta.size)
            .file_name(meta.name.clone().unwrap_or_else(|| name.clone()));
        if let Some(ct) = &meta.content_type {
            part = part
                .mime_str(ct)
                .map_err(|e| JobError::permanent(e.to_string()))?;
        }
        form = form.part(name.clone(), part);
    }
    Ok(req.multipart(form))
}

async fn object_body(ctx: &JobContext, meta: &ObjectMeta) -> Result<reqwest::Body, JobError> {
    if let Some(path) = ctx.engine.objects.local_path(&meta.id) {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| JobError::permanent(format!("object {} is missing: {e}", meta.id)))?;
        return Ok(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::new(file),
        ));
    }
    let bytes = ctx
        .engine
        .objects
        .get_bytes(&meta.id)
        .await
        .map_err(|e| JobError::retryable(format!("object {}: {e}", meta.id)))?;
    Ok(reqwest::Body::from(bytes))
}
