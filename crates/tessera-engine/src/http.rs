//! The `http` executor: a synchronous HTTP call. JSON input goes as the body (or as the query
//! for GET/DELETE/HEAD); a JSON response is the output, any other body becomes an object.
//! Connection errors, 5xx, 408 and 429 are retryable; other 4xx fail at once.

use serde_json::{Map, Value};
use tessera_core::model::HttpSpec;
use tessera_core::scheduler::JobError;

use crate::jobs::JobContext;
use crate::template::{no_objects, render, render_shown};

/// Largest response body read into memory.
const MAX_BODY: usize = 256 << 20;

pub(crate) async fn run(ctx: &mut JobContext, spec: &HttpSpec) -> Result<Value, JobError> {
    let values = ctx.template_values();
    let scope = values.scope();
    let mut no_objects = no_objects("an object cannot be placed in a URL or header");
    let url = render(&spec.url, &scope, &mut no_objects).map_err(JobError::permanent)?;
    // What messages and logs show: `${env:KEY}` as written, never a secret's value.
    let shown = render_shown(&spec.url, &scope, &mut no_objects).unwrap_or_default();
    // A URL that cannot be sent will never be sent: fail now, not after every retry.
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
        Ok(u) => {
            return Err(JobError::permanent(format!(
                "url: `{shown}` uses `{}:`; only http and https URLs can be called",
                u.scheme()
            )));
        }
        Err(e) => {
            return Err(JobError::permanent(format!(
                "url: `{shown}` is not an absolute http(s) URL ({e})"
            )));
        }
    }
    let method = reqwest::Method::from_bytes(spec.verb.as_bytes())
        .map_err(|_| JobError::permanent(format!("bad HTTP verb `{}`", spec.verb)))?;
    let mut req = ctx.engine.http.request(method.clone(), &url);
    for (k, v) in &spec.headers {
        let v = render(v, &scope, &mut no_objects).map_err(JobError::permanent)?;
        req = req.header(k, v);
    }
    req = req
        .header("Tessera-Task-Id", &ctx.task_id)
        .header("Tessera-Node", &ctx.key);
    let body_in_query = matches!(
        method,
        reqwest::Method::GET | reqwest::Method::DELETE | reqwest::Method::HEAD
    );
    if body_in_query {
        if let Value::Object(m) = &*values.input.value() {
            let pairs: Vec<(String, String)> = m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect();
            req = req.query(&pairs);
        }
    } else {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(values.input.json().into_owned());
    }
    ctx.log("engine", format!("{method} {shown}"));
    let resp = req.send().await.map_err(|e| {
        // The error's own text would repeat the URL with its secrets.
        let e = e.without_url();
        JobError::retryable(format!("{method} {shown}: {}", error_chain(&e)))
    })?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let too_big = resp.content_length().is_some_and(|n| n as usize > MAX_BODY);
    if too_big {
        return Err(JobError::permanent(format!(
            "{method} {shown}: response larger than {} MiB",
            MAX_BODY >> 20
        )));
    }
    let body = resp.bytes().await.map_err(|e| {
        JobError::retryable(format!(
            "{method} {shown}: reading the response: {}",
            error_chain(&e.without_url())
        ))
    })?;
    ctx.log(
        "engine",
        format!("HTTP {} ({} bytes)", status.as_u16(), body.len()),
    );
    if !status.is_success() {
        let snippet: String = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let msg = format!("{method} {shown}: HTTP {status}: {}", snippet.trim());
        let retryable =
            status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        return Err(if retryable {
            JobError::retryable(msg)
        } else {
            JobError::permanent(msg)
        });
    }
    let looks_json = content_type.as_deref().is_none_or(|t| t.contains("json"));
    if looks_json && let Ok(v) = serde_json::from_slice::<Value>(&body) {
        return Ok(match v {
            Value::Object(_) => v,
            other => {
                let mut m = Map::new();
                m.insert("body".into(), other);
                Value::Object(m)
            }
        });
    }
    if body.is_empty() {
        let mut m = Map::new();
        m.insert("status".into(), Value::from(status.as_u16()));
        return Ok(Value::Object(m));
    }
    let name = url
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(|s| s.split('?').next().unwrap_or(s).to_string());
    let meta = ctx
        .engine
        .objects
        .put_bytes(body, name, content_type)
        .await
        .map_err(|e| JobError::retryable(format!("storing the response: {e}")))?;
    ctx.record_object(&meta).await?;
    let mut m = Map::new();
    m.insert("body".into(), meta.to_json());
    Ok(Value::Object(m))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
