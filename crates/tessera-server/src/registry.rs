//! The services registry: services announce themselves and their endpoints; each
//! endpoint becomes an automatic pipeline `entry → service → end`. A service silent for three
//! periods is removed with its pipelines, and pipelines calling it report it unavailable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};
use tessera_store::{PipelineRow, ServiceRow};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::routes::pipelines::now_millis;
use crate::state::AppState;

pub async fn announce(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Service, Role::Admin])?;
    // Parsing and checking every endpoint is CPU work: off the async threads.
    let scripts = state.engine.scripts().clone();
    let store = state.store().clone();
    let recorded = tokio::task::spawn_blocking(move || {
        record_announcement(store.as_ref(), &scripts, &body, now_millis())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    state.pipelines_changed();
    state
        .expired_services
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .forget(&recorded.url, &recorded.name);
    let ttl = state.limits.announce_period * 3;
    Ok(Json(json!({
        "name": recorded.name, "pipelines": recorded.pipelines, "conflicts": recorded.conflicts,
        "ttl_seconds": ttl.as_secs_f64(),
    })))
}

/// What an announcement recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub name: String,
    pub url: String,
    /// Routes of the pipelines made (or refreshed) from its endpoints.
    pub pipelines: Vec<String>,
    /// Routes already taken by pipelines of another source (left as they are).
    pub conflicts: Vec<String>,
}

/// Checks an announcement (`{"name", "url", "endpoints"}`) and records it in `store`: the
/// service, and one pipeline `entry → service → end` per endpoint. What `POST
/// /api/v1/registry/announce` does, and `tessera services announce` into a local data dir.
pub fn record_announcement(
    store: &dyn tessera_store::Store,
    scripts: &tessera_core::Scripts,
    body: &[u8],
    now: u64,
) -> Result<Recorded, ApiError> {
    let (name, url, endpoints, pipelines, problems) = check_announcement(body, scripts)?;
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("invalid announcement: {} problem(s)", problems.len()),
            details: Value::Array(problems),
        });
    }
    let service = ServiceRow {
        name: name.clone(),
        url: url.clone(),
        endpoints: Value::Array(endpoints),
        last_seen: now,
    };
    let source = format!("service:{name}");
    store.announce_service(&service)?;
    let mut created = Vec::new();
    let mut conflicts = Vec::new();
    let wanted: Vec<&String> = pipelines.iter().map(|(r, _)| r).collect();
    for old in store
        .list_pipelines()?
        .into_iter()
        .filter(|p| p.source == source)
    {
        if !wanted.contains(&&old.name) {
            store.delete_pipeline(&old.name)?;
        }
    }
    for (route, definition) in &pipelines {
        match store.pipeline(route)? {
            Some(p) if p.source != source => conflicts.push(route.clone()),
            existing => {
                let created_at = existing.map(|p| p.created_at).unwrap_or(now);
                store.put_pipeline(&PipelineRow {
                    name: route.clone(),
                    definition: definition.clone(),
                    source: source.clone(),
                    owner: None,
                    created_at,
                    updated_at: now,
                    version: String::new(),
                })?;
                created.push(route.clone());
            }
        }
    }
    Ok(Recorded {
        name,
        url,
        pipelines: created,
        conflicts,
    })
}

/// `GET /api/v1/registry/services`: the services announced now, with their endpoints (what
/// `service: name/endpoint` nodes resolve against; `tessera validate --server` reads it).
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let services = state.blocking(|s| s.list_services()).await?;
    let items: Vec<Value> = services
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name, "url": s.url, "endpoints": s.endpoints,
                "last_seen": tessera_core::time::rfc3339(s.last_seen),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// Removes services not heard from for three announcement periods.
pub async fn sweep_loop(state: AppState) {
    let period = state.limits.announce_period;
    let every = (period / 2).max(std::time::Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        // Once for the cluster: only the instance leading the chore sweeps.
        if !crate::state::leads(&state, "registry-sweep", every).await {
            continue;
        }
        let cutoff = now_millis().saturating_sub((period * 3).as_millis() as u64);
        let services = match state.blocking(|s| s.list_services()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "registry sweep failed");
                continue;
            }
        };
        for svc in services.into_iter().filter(|s| s.last_seen < cutoff) {
            let name = svc.name.clone();
            if let Err(e) = state.blocking(move |s| s.remove_service(&name)).await {
                tracing::warn!(service = %svc.name, error = %e, "could not remove silent service");
                continue;
            }
            tracing::info!(service = %svc.name, "service silent for 3 periods: removed");
            state.pipelines_changed();
            state
                .expired_services
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(&svc.url, &svc.name);
        }
    }
}

/// What an announcement declares: its name, base URL, endpoints, the pipelines they make, and
/// every problem found.
type Announcement = (String, String, Vec<Value>, Vec<(String, Value)>, Vec<Value>);

/// Most endpoints one service may announce.
const MAX_ENDPOINTS: usize = 1000;

fn check_announcement(
    body: &[u8],
    scripts: &tessera_core::Scripts,
) -> Result<Announcement, ApiError> {
    let doc = crate::routes::parse_json_body(body)?;
    let mut problems = Vec::new();
    let name = doc["name"].as_str().unwrap_or("").to_string();
    if !tessera_core::parse::valid_id(&name) {
        problems.push(json!({"field": "name", "message": "expected an id like `imaging` ([A-Za-z_][A-Za-z0-9_-]*)"}));
    }
    let url = doc["url"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(json!({"field": "url", "message": "expected the service's base http:// or https:// URL"}));
    }
    let endpoints = doc["endpoints"].as_array().cloned().unwrap_or_default();
    if !doc["endpoints"].is_array() {
        problems.push(json!({"field": "endpoints", "message": "expected a list of endpoints"}));
    }
    let mut pipelines = Vec::new();
    if endpoints.len() > MAX_ENDPOINTS {
        problems.push(
            json!({"field": "endpoints", "message": format!("at most {MAX_ENDPOINTS} endpoints")}),
        );
        return Ok((name, url, endpoints, pipelines, problems));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let route = ep["route"].as_str().unwrap_or("");
        let path = ep["path"].as_str().unwrap_or("");
        if route.is_empty() || !path.starts_with('/') {
            problems.push(json!({"field": format!("endpoints[{i}]"), "message": "each endpoint needs a `route` and a `path` starting with /"}));
            continue;
        }
        let mut api = json!({"route": route});
        for k in ["summary", "description", "body"] {
            if let Some(v) = ep.get(k) {
                api[k] = v.clone();
            }
        }
        let definition = json!({
            "type": "pipeline",
            "nodes": [
                {"id": "in", "type": "entry", "api": api, "next": ["call"]},
                {"id": "call", "type": "service", "url": format!("{url}{path}"), "next": ["end"]},
                {"id": "end", "type": "end"},
            ]
        });
        match tessera_core::load_document(&definition.to_string(), scripts) {
            Ok(_) => pipelines.push((route.to_string(), definition)),
            Err(report) => problems
                .push(json!({"field": format!("endpoints[{i}]"), "message": report.to_string()})),
        }
    }
    if endpoints.len() > MAX_ENDPOINTS {
        problems.push(
            json!({"field": "endpoints", "message": format!("at most {MAX_ENDPOINTS} endpoints")}),
        );
    }
    Ok((name, url, endpoints, pipelines, problems))
}
