//! Server tests: the real server on 127.0.0.1 (ephemeral port), a real SQLite file and object
//! store, real HTTP clients, and small real services written here with axum.

mod connections;
mod faults;
mod hardening;
mod races;
mod support;
mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::post;
use serde_json::{Value, json};
use tessera_server::{Limits, ServerConfig, Tokens};
use tessera_store::{Objects, SqliteStore};

use support::*;

const LENGTHS: &str = r#"
nodes:
  - id: in
    type: entry
    api: {route: lengths, body: {words: ["a"], factor: 2}, summary: Word lengths}
    next: [each]
  - id: each
    type: loop
    items: in.out.words
    next: [end]
    nodes:
      - {id: m, type: node, after: "out = item.len();"}
  - {id: end, type: end}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_created_listed_read_and_deleted_with_clear_errors() {
    let f = start().await;
    let (status, body) = f.post_yaml(LENGTHS).await;
    assert_eq!(
        (status, body.clone()),
        (201, json!({"name": "lengths", "created": true}))
    );
    let (status, _) = f.post_yaml(LENGTHS).await;
    assert_eq!(status, 200, "replaced");
    let (status, list) = f.get("/api/v1/pipelines").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["name"], "lengths");
    assert_eq!(list["items"][0]["summary"], "Word lengths");
    let (status, one) = f.get("/api/v1/pipelines/lengths").await;
    assert_eq!(status, 200);
    assert_eq!(one["available"], true);
    assert_eq!(one["stats"]["total"], 0);
    // Invalid: every problem, with node and field.
    let (status, err) = f
        .post_yaml("nodes:\n  - {id: in, type: entry, api: {route: x}, next: [ghost]}\n  - {id: a, type: node, colour: red}\n")
        .await;
    assert_eq!(status, 422);
    assert_eq!(err["error"]["code"], "invalid");
    let fields: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"next[0]") && fields.contains(&"colour"),
        "{err}"
    );
    // Each on its line of the document sent.
    let lines: Vec<(&str, u64)> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap(), d["line"].as_u64().unwrap()))
        .collect();
    assert!(
        lines.contains(&("next[0]", 2)) && lines.contains(&("colour", 3)),
        "{err}"
    );
    let (status, err) = f.post_yaml("nodes: [ {id: a, type: node").await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid pipeline")
    );
    let r = f
        .http
        .post(f.url("/api/v1/pipelines"))
        .header("content-type", "image/png")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let (status, err) = f.post_yaml("\"just a string\"").await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (422, json!("invalid"))
    );
    // Errors axum produces itself are JSON too.
    let r = f.http.put(f.url("/api/v1/pipelines")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    let (status, err) = f.get("/api/v1/pipelines/%FF").await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, err) = f.get("/no/such/route").await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let r = f.delete("/api/v1/pipelines/lengths").await;
    assert_eq!(r.status().as_u16(), 204);
    let (status, err) = f.get("/api/v1/pipelines/lengths").await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_asynchronously_and_bad_bodies_are_refused() {
    let f = start_with(
        &[],
        Limits {
            max_body: 4096,
            ..Limits::default()
        },
    )
    .await;
    f.post_yaml(LENGTHS).await;
    let r = f
        .post_json(
            "/api/v1/services/lengths",
            &json!({"words": ["été", "ab"], "factor": 3}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let id = body["task_id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/tasks/{id}"));
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["state"], "finished");
    assert_eq!(
        f.get(&format!("/api/v1/tasks/{id}/result")).await,
        (200, json!({"items": [3, 2]}))
    );
    // Wrong types against the example body, each named.
    let (status, err) = f
        .submit("lengths", json!({"words": [1], "factor": "x"}))
        .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["words.0", "factor"]);
    let (status, err) = f.submit("lengths", json!({"factor": 1})).await;
    assert_eq!(
        (status, err["error"]["details"][0]["field"].clone()),
        (422, json!("words"))
    );
    let r = f
        .http
        .post(f.url("/api/v1/services/lengths"))
        .header("content-type", "application/json")
        .body("{\"words\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON at line 1")
    );
    let (status, _) = f.submit("nope", json!({})).await;
    assert_eq!(status, 404);
    let big = json!({"words": vec!["x".repeat(100); 100], "factor": 1});
    let (status, _) = f.submit("lengths", big.clone()).await;
    assert_eq!(status, 413);
    let r = f.post_json("/api/v1/pipelines", &big).await;
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "too_large"
    );
    let (status, _) = f
        .submit("lengths", json!({"words": [{"$object": "x"}], "factor": 1}))
        .await;
    assert_eq!(status, 400, "clients cannot forge object references");
    // Unknown ids, states and cursors.
    assert_eq!(f.get("/api/v1/tasks/nope").await.0, 404);
    assert_eq!(f.get("/api/v1/tasks?state=lost").await.0, 400);
    assert_eq!(f.get("/api/v1/tasks?cursor=zz").await.0, 400);
    assert_eq!(f.get("/api/v1/tasks?limit=0").await.0, 400);
    let (status, err) = f.get("/api/v1/tasks?state=x&state=y").await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_lists_are_paginated_newest_first() {
    let f = start().await;
    f.post_yaml(LENGTHS).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, b) = f
            .submit("lengths", json!({"words": ["a"], "factor": 1}))
            .await;
        ids.push(b["task_id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tasks?limit=2&cursor={c}"),
            None => "/api/v1/tasks?limit=2".to_string(),
        };
        let (status, page) = f.get(&path).await;
        assert_eq!(status, 200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
}

/// A service written for the tests: answers at once, then calls back in the background with
/// `answer(request body)`; counts dispatches.
#[derive(Clone)]
struct TestService {
    dispatches: Arc<AtomicUsize>,
    answer: Arc<dyn Fn(Value) -> (Option<&'static str>, Value) + Send + Sync>,
    delay: Duration,
}

async fn test_service(service: TestService) -> String {
    async fn handle(
        State(s): State<TestService>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, &'static str) {
        s.dispatches.fetch_add(1, Ordering::SeqCst);
        let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let callback = q["callback_url"].clone();
        let (status, result) = (s.answer)(input);
        let delay = s.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut req = reqwest::Client::new().post(&callback).json(&result);
            if let Some(st) = status {
                req = req.header("Tessera-Status", st);
            }
            let _ = req.send().await;
        });
        (axum::http::StatusCode::ACCEPTED, "{\"accepted\": true}")
    }
    let app = axum::Router::new()
        .route("/work", post(handle))
        .with_state(service);
    serve_app(app).await
}

/// Serves a test service on 127.0.0.1 (ephemeral port); returns its base URL.
async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn service_pipeline(route: &str, url: &str) -> String {
    format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: {route}}}, next: [call]}}\n  - {{id: call, type: service, url: \"{url}/work\", next: [end]}}\n  - {{id: end, type: end}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_nodes_complete_by_callback_and_stray_callbacks_are_refused() {
    let f = start().await;
    let dispatches = Arc::new(AtomicUsize::new(0));
    let url = test_service(TestService {
        dispatches: dispatches.clone(),
        answer: Arc::new(|input| {
            (
                None,
                json!({"doubled": input["n"].as_i64().unwrap_or(0) * 2}),
            )
        }),
        delay: Duration::from_millis(20),
    })
    .await;
    f.post_yaml(&service_pipeline("double", &url)).await;
    let (_, b) = f.submit("double", json!({"n": 21})).await;
    let id = b["task_id"].as_str().unwrap().to_string();
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["state"], "finished", "{doc}");
    assert_eq!(doc["result"], json!({"doubled": 42}));
    assert_eq!(dispatches.load(Ordering::SeqCst), 1);
    // The token of a finished attempt is refused (409); a forged one is unknown (404).
    let logs = f.get(&format!("/api/v1/tasks/{id}/nodes/call/log")).await.1;
    assert!(
        logs["lines"].to_string().contains("callback received"),
        "{logs}"
    );
    let r = f
        .post_json("/api/v1/callbacks/0123456789abcdef", &json!({}))
        .await;
    assert_eq!(r.status().as_u16(), 404);

    // A failure reported by the service fails the node with its message.
    let failing = test_service(TestService {
        dispatches: Arc::new(AtomicUsize::new(0)),
        answer: Arc::new(|_| (Some("failed"), json!({"error": "no face found"}))),
        delay: Duration::ZERO,
    })
    .await;
    f.post_yaml(&service_pipeline("failing", &failing)).await;
    let (_, b) = f.submit("failing", json!({})).await;
    let doc = f.wait_task(b["task_id"].as_str().unwrap()).await;
    assert_eq!(doc["state"], "failed");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("the service reported: no face found"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_callbacks_on_one_task_lose_nothing() {
    let f = start().await;
    let url = test_service(TestService {
        dispatches: Arc::new(AtomicUsize::new(0)),
        answer: Arc::new(|input| (None, json!({"v": input["item"].clone()}))),
        // All callbacks land together, long after their dispatches.
        delay: Duration::from_millis(300),
    })
    .await;
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: fan}}, next: [each]}}\n  - id: each\n    type: loop\n    items: in.out.items\n    collect: loop.call.out.v\n    next: [end]\n    nodes:\n      - {{id: call, type: service, url: \"{url}/work\", input: {{item: loop.item}}}}\n  - {{id: end, type: end}}\n"
    );
    assert_eq!(f.post_yaml(&yaml).await.0, 201);
    let items: Vec<u32> = (0..300).collect();
    let (_, b) = f.submit("fan", json!({"items": items})).await;
    let doc = f.wait_task(b["task_id"].as_str().unwrap()).await;
    assert_eq!(doc["state"], "finished", "{}", doc["error"]);
    assert_eq!(doc["result"], json!({"items": items}));
    // The nodes outside the loop's branches; the loop's 300 instances in its summary.
    assert_eq!(doc["counts"]["finished"], 3);
    assert_eq!(doc["loops"][0]["mode"], "branches");
    assert_eq!(doc["loops"][0]["counts"]["finished"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_services_become_pipelines_and_expire_after_three_periods() {
    let limits = Limits {
        announce_period: Duration::from_millis(200),
        ..Limits::default()
    };
    let f = start_with(&[], limits).await;
    let url = test_service(TestService {
        dispatches: Arc::new(AtomicUsize::new(0)),
        answer: Arc::new(|_| (None, json!({"ok": true}))),
        delay: Duration::ZERO,
    })
    .await;
    let announce = json!({"name": "worker", "url": url, "endpoints": [
        {"route": "worker-run", "path": "/work", "summary": "Do the work", "body": {"n": 1}}]});
    let r = f.post_json("/api/v1/registry/announce", &announce).await;
    assert_eq!(r.status().as_u16(), 200);
    let (_, openapi) = f.get("/openapi.json").await;
    assert!(
        openapi["paths"]["/api/v1/services/worker-run"].is_object(),
        "the endpoint is documented"
    );
    let (status, b) = f.submit("worker-run", json!({"n": 3})).await;
    assert_eq!(status, 202);
    assert_eq!(
        f.wait_task(b["task_id"].as_str().unwrap()).await["result"],
        json!({"ok": true})
    );
    // A user pipeline calling the same service.
    f.post_yaml(&service_pipeline("mine", &url)).await;
    // Silence: removed after 3 periods, and `mine` reports it unavailable.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(f.get("/api/v1/pipelines/worker-run").await.0, 404);
    let (_, mine) = f.get("/api/v1/pipelines/mine").await;
    assert_eq!(mine["available"], false);
    let (status, err) = f.submit("mine", json!({})).await;
    assert_eq!(status, 503, "{err}");
    // Announcing again brings it back.
    f.http
        .post(f.url("/api/v1/registry/announce"))
        .json(&announce)
        .send()
        .await
        .unwrap();
    assert_eq!(f.get("/api/v1/pipelines/mine").await.1["available"], true);
    let bad = f
        .post_json(
            "/api/v1/registry/announce",
            &json!({"name": "x y", "url": "ftp://z"}),
        )
        .await;
    assert_eq!(bad.status().as_u16(), 422);
}

const ADMIN: &str = "admin:alice:alice-secret-0123456789";
const BOB: &str = "user:bob:bob-secret-0123456789abc";
const CAROL: &str = "user:carol:carol-secret-0123456789";
const SVC: &str = "service:svc:svc-secret-0123456789ab";

fn secret(token: &str) -> &str {
    token.splitn(3, ':').nth(2).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_decide_who_does_and_sees_what() {
    let f = start_with(&[ADMIN, BOB, CAROL, SVC], Limits::default()).await;
    let post = |token: Option<&str>, path: &str, body: Value| {
        let mut r = f.http.post(f.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(secret(t));
        }
        r.send()
    };
    let r = post(None, "/api/v1/services/lengths", json!({}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let wrong = f
        .http
        .get(f.url("/api/v1/tasks"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let r = f
        .http
        .post(f.url("/api/v1/pipelines"))
        .bearer_auth(secret(BOB))
        .body(LENGTHS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "users do not manage pipelines");
    let r = f
        .http
        .post(f.url("/api/v1/pipelines"))
        .bearer_auth(secret(ADMIN))
        .body(LENGTHS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = post(
        Some(SVC),
        "/api/v1/services/lengths",
        json!({"words": ["a"], "factor": 1}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 403, "services do not start tasks");
    let r = post(
        Some(BOB),
        "/api/v1/services/lengths",
        json!({"words": ["a"], "factor": 1}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let get =
        |token: &str, path: String| f.http.get(f.url(&path)).bearer_auth(secret(token)).send();
    assert_eq!(
        get(BOB, format!("/api/v1/tasks/{id}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        get(CAROL, format!("/api/v1/tasks/{id}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404,
        "not her task"
    );
    assert_eq!(
        get(ADMIN, format!("/api/v1/tasks/{id}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let carol_list: Value = get(CAROL, "/api/v1/tasks".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(carol_list["items"], json!([]));
    let bob_list: Value = get(BOB, "/api/v1/tasks".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_list["items"].as_array().unwrap().len(), 1);
    let announce = json!({"name": "w", "url": "http://127.0.0.1:9", "endpoints": []});
    assert_eq!(
        post(Some(BOB), "/api/v1/registry/announce", announce.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        post(Some(SVC), "/api/v1/registry/announce", announce)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        f.get("/health").await,
        (200, json!({"status": "ok", "store": "ok", "objects": "ok"})),
        "health needs no token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_tokens_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let objects = Objects::local(&dir.path().join("store")).unwrap();
    let config = ServerConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        public_url: None,
        tokens: Tokens::default(),
        insecure: false,
        public_info: false,
        connections: Default::default(),
        limits: Limits::default(),
        engine: tessera_engine::EngineConfig::new(dir.path().join("work")),
    };
    let err = tessera_server::start(config, store, objects)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refusing to listen on 0.0.0.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_streamed_to_the_object_store_and_served_back() {
    let _turn = memory_turn().await;
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: size, body: file}, next: [count]}\n  - {id: count, type: command, command: [wc, -c, \"{{file}}\"], stdin: false, input: {file: in.out.file}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let size: u64 = 200 << 20;
    // The peak so far may come from another test: start from now (Linux resets it on "5").
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = rss_kb("VmHWM");
    // 200 MB produced chunk by chunk: neither side may hold it whole.
    let chunks = futures::stream::iter(
        (0..(size >> 20)).map(|i| Ok::<_, std::io::Error>(vec![(i % 251) as u8; 1 << 20])),
    );
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), size)
            .file_name("big.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let id = f.submit_form("size", form).await;
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["state"], "finished", "{doc}");
    let out = doc["result"]["stdout"].as_str().unwrap();
    assert!(out.starts_with(&format!("{size} ")), "{out}");
    // Other tests of this process may free memory meanwhile, and the peak is updated lazily:
    // it can read lower than `before`, which is no growth.
    let grown_mb = rss_kb("VmHWM").saturating_sub(before) / 1024;
    assert!(
        grown_mb < 100,
        "peak RSS grew by {grown_mb} MB for a 200 MB upload"
    );
    let object_url = doc["input"]["file"]["$object"]
        .as_str()
        .map(|o| format!("/api/v1/objects/{o}"))
        .unwrap();
    let r = f.http.get(f.url(&object_url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.content_length(), Some(size));
    assert_eq!(
        f.get("/api/v1/objects/00000000-0000-4000-8000-000000000000")
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_stats_metrics_and_docs() {
    let f = start().await;
    f.post_yaml(LENGTHS).await;
    let mut events = f.http.get(f.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let (_, b) = f
        .submit("lengths", json!({"words": ["a"], "factor": 1}))
        .await;
    let id = b["task_id"].as_str().unwrap().to_string();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("\"state\":\"finished\",\"task_id\"")
        && !seen.contains(&format!("\"task_id\":\"{id}\",\"type\":\"task\""))
    {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("event: task") && seen.contains("finished") {
            break;
        }
        assert!(Instant::now() < deadline, "no task event: {seen}");
    }
    assert!(seen.contains(&id));
    f.wait_task(&id).await;
    let (_, stats) = f.get("/api/v1/stats").await;
    assert_eq!(stats["finished"], 1);
    assert_eq!(stats["pipelines"]["lengths"]["finished"], 1);
    let metrics = f
        .http
        .get(f.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_tasks{pipeline=\"lengths\",state=\"finished\"} 1"),
        "{metrics}"
    );
    let (_, doc) = f.get("/openapi.json").await;
    assert!(doc["paths"]["/api/v1/services/lengths"]["post"].is_object());
    let docs = f.http.get(f.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(
        !docs.text().await.unwrap().contains("https://"),
        "docs work offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_tasks_and_their_objects_are_deleted_after_the_retention_period() {
    let limits = Limits {
        retention: Duration::from_millis(500),
        ..Limits::default()
    };
    let f = start_with(&[], limits).await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: keep, body: file}, next: [end]}\n  - {id: end, type: end}\n";
    f.post_yaml(yaml).await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("h.txt"),
    );
    let r = f
        .http
        .post(f.url("/api/v1/services/keep"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = f.wait_task(&id).await;
    let object = doc["result"]["file"]["url"].as_str().unwrap().to_string();
    assert_eq!(
        f.http
            .get(f.url(&object))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.get(&format!("/api/v1/tasks/{id}")).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "task not deleted by the retention sweep"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        f.http
            .get(f.url(&object))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let path = f
        ._dir
        .path()
        .join("store/objects")
        .join(object.rsplit('/').next().unwrap());
    assert!(!path.exists(), "the object's bytes are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_calls_back_is_dispatched_again_and_its_late_callback_refused() {
    let f = start().await;
    // Remembers every callback URL; answers only the second dispatch.
    let callbacks = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = callbacks.clone();
    async fn handle(
        State(seen): State<Arc<std::sync::Mutex<Vec<String>>>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::http::StatusCode {
        let url = q["callback_url"].clone();
        let n = {
            let mut s = seen.lock().unwrap();
            s.push(url.clone());
            s.len()
        };
        if n == 2 {
            tokio::spawn(async move {
                let _ = reqwest::Client::new()
                    .post(&url)
                    .json(&json!({"attempt": 2}))
                    .send()
                    .await;
            });
        }
        axum::http::StatusCode::ACCEPTED
    }
    let app = axum::Router::new()
        .route("/work", post(handle))
        .with_state(seen);
    let url = serve_app(app).await;
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: flaky}}, next: [call]}}\n  - {{id: call, type: service, url: \"{url}/work\", timeout: 300ms, retry: {{attempts: 3, backoff: 10ms}}, next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    f.post_yaml(&yaml).await;
    let (_, b) = f.submit("flaky", json!({})).await;
    let doc = f.wait_task(b["task_id"].as_str().unwrap()).await;
    assert_eq!(doc["state"], "finished", "{doc}");
    assert_eq!(doc["result"], json!({"attempt": 2}));
    let urls = callbacks.lock().unwrap().clone();
    assert_eq!(urls.len(), 2, "dispatched twice");
    assert_ne!(urls[0], urls[1], "each attempt has its own token");
    let late = f
        .http
        .post(&urls[0])
        .json(&json!({"attempt": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        late.status().as_u16(),
        409,
        "the superseded attempt's callback is refused"
    );
    let (_, again) = f
        .get(&format!("/api/v1/tasks/{}", b["task_id"].as_str().unwrap()))
        .await;
    assert_eq!(again["result"], json!({"attempt": 2}), "state untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_cancelled_resumed_and_deleted_through_the_api() {
    let f = start().await;
    let dir = f._dir.path().display().to_string();
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: wait}}, next: [gate]}}\n  - {{id: gate, type: command, shell: true, command: \"while [ ! -f {dir}/open ]; do sleep 0.05; done; echo '{{\\\"opened\\\": true}}'\", next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    assert_eq!(f.post_yaml(&yaml).await.0, 201);
    let (_, b) = f.submit("wait", json!({})).await;
    let id = b["task_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.get(&format!("/api/v1/tasks/{id}")).await.1["state"] != "running" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = f.get(&format!("/api/v1/tasks/{id}/result")).await;
    assert_eq!(status, 409, "no result while running");
    let del = f.delete(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(del.status().as_u16(), 409, "a running task is not deleted");
    let r = f.post(&format!("/api/v1/tasks/{id}/cancel")).await;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(f.wait_task(&id).await["state"], "cancelled");
    let r = f.post(&format!("/api/v1/tasks/{id}/cancel")).await;
    assert_eq!(r.status().as_u16(), 409, "already ended");
    std::fs::write(format!("{dir}/open"), "").unwrap();
    let r = f.post(&format!("/api/v1/tasks/{id}/resume")).await;
    assert_eq!(r.status().as_u16(), 202);
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["state"], "finished", "{doc}");
    assert_eq!(doc["result"], json!({"opened": true}));
    let r = f.post(&format!("/api/v1/tasks/{id}/resume")).await;
    assert_eq!(r.status().as_u16(), 409, "a finished task is not resumed");
    let del = f.delete(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(del.status().as_u16(), 204);
    assert_eq!(f.get(&format!("/api/v1/tasks/{id}")).await.0, 404);
    for path in ["cancel", "resume"] {
        let r = f.post(&format!("/api/v1/tasks/nope/{path}")).await;
        assert_eq!(r.status().as_u16(), 404);
    }
    assert_eq!(f.get("/api/v1/tasks/nope/nodes/gate/log").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_routes_refuse_json_and_missing_fields() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: two, body: [left, right]}, next: [end]}\n  - {id: end, type: end}\n";
    f.post_yaml(yaml).await;
    let (status, err) = f.submit("two", json!({"left": 1})).await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (415, json!("unsupported_media_type"))
    );
    let part = |name: &str| {
        reqwest::multipart::Part::bytes(name.as_bytes().to_vec()).file_name(format!("{name}.bin"))
    };
    let form = reqwest::multipart::Form::new().part("left", part("left"));
    let r = f
        .http
        .post(f.url("/api/v1/services/two"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["details"], json!(["right"]));
    let form = reqwest::multipart::Form::new()
        .part("left", part("left"))
        .part("right", part("right"))
        .text("data", "{\"note\": \"both\"}");
    let id = f.submit_form("two", form).await;
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["result"]["note"], "both");
    assert_eq!(doc["result"]["right"]["size"], 5);
    let form = reqwest::multipart::Form::new()
        .part("left", part("left"))
        .part("right", part("right"))
        .text("data", "not json");
    let r = f
        .http
        .post(f.url("/api/v1/services/two"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = f
        .http
        .post(f.url("/api/v1/services/two"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nbroken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_is_retried_while_the_service_is_busy() {
    let f = start().await;
    let hits = Arc::new(AtomicUsize::new(0));
    async fn handle(
        State(hits): State<Arc<AtomicUsize>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::http::StatusCode {
        if hits.fetch_add(1, Ordering::SeqCst) < 2 {
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
        let url = q["callback_url"].clone();
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(&url)
                .json(&json!({"ok": true}))
                .send()
                .await;
        });
        axum::http::StatusCode::ACCEPTED
    }
    let app = axum::Router::new()
        .route("/work", post(handle))
        .with_state(hits.clone());
    let url = serve_app(app).await;
    f.post_yaml(&service_pipeline("busy", &url)).await;
    let (_, b) = f.submit("busy", json!({})).await;
    let id = b["task_id"].as_str().unwrap().to_string();
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["result"], json!({"ok": true}), "{doc}");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "two 503s, then accepted");
    let logs = f
        .get(&format!("/api/v1/tasks/{id}/nodes/call/log"))
        .await
        .1
        .to_string();
    assert!(
        logs.contains("dispatch failed, will retry") && logs.contains("HTTP 503"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_only_the_objects_of_its_own_tasks() {
    let f = start_with(&[ADMIN, BOB, CAROL], Limits::default()).await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: keep, body: file}, next: [end]}\n  - {id: end, type: end}\n";
    let r = f
        .http
        .post(f.url("/api/v1/pipelines"))
        .bearer_auth(secret(ADMIN))
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"bob's".to_vec()).file_name("b.txt"),
    );
    let r = f
        .http
        .post(f.url("/api/v1/services/keep"))
        .bearer_auth(secret(BOB))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        let r = f
            .http
            .get(f.url(&format!("/api/v1/tasks/{id}/result")))
            .bearer_auth(secret(BOB))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 200 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let object = result["file"]["url"].as_str().unwrap().to_string();
    let read = |token: &'static str| f.http.get(f.url(&object)).bearer_auth(secret(token)).send();
    let bob = read(BOB).await.unwrap();
    assert_eq!(bob.status().as_u16(), 200);
    assert_eq!(bob.bytes().await.unwrap().as_ref(), b"bob's");
    assert_eq!(
        read(CAROL).await.unwrap().status().as_u16(),
        404,
        "not her object"
    );
    assert_eq!(read(ADMIN).await.unwrap().status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_part_cannot_forge_object_references() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: keep, body: file}, next: [end]}\n  - {id: end, type: end}\n";
    f.post_yaml(yaml).await;
    let file = || reqwest::multipart::Part::bytes(b"mine".to_vec()).file_name("m.txt");
    for data in [
        json!({"file": {"$object": "0b5a3c1e-9f4c-4a57-8a0e-1d2c3b4a5f60"}}).to_string(),
        json!({"other": [{"$object": "0b5a3c1e-9f4c-4a57-8a0e-1d2c3b4a5f60"}]}).to_string(),
    ] {
        let form = reqwest::multipart::Form::new()
            .part("file", file())
            .text("data", data);
        let r = f
            .http
            .post(f.url("/api/v1/services/keep"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resumes_of_one_task_start_one_run() {
    let f = start().await;
    let dir = f._dir.path().display().to_string();
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: once}}, next: [work]}}\n  - {{id: work, type: command, shell: true, command: \"echo run >> {dir}/runs; test -f {dir}/ok\", next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    f.post_yaml(&yaml).await;
    let (_, b) = f.submit("once", json!({})).await;
    let id = b["task_id"].as_str().unwrap().to_string();
    assert_eq!(f.wait_task(&id).await["state"], "failed");
    std::fs::write(format!("{dir}/ok"), "").unwrap();
    let url = f.url(&format!("/api/v1/tasks/{id}/resume"));
    let (a, b) = tokio::join!(f.http.post(&url).send(), f.http.post(&url).send());
    let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort();
    assert_eq!(codes, [202, 409], "one resume wins");
    assert_eq!(f.wait_task(&id).await["state"], "finished");
    let runs = std::fs::read_to_string(format!("{dir}/runs")).unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "first failed run + one resumed run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_after_the_node_timed_out_is_refused() {
    let f = start().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    async fn handle(
        State(seen): State<Arc<std::sync::Mutex<Vec<String>>>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::http::StatusCode {
        seen.lock().unwrap().push(q["callback_url"].clone());
        axum::http::StatusCode::ACCEPTED
    }
    let app = axum::Router::new()
        .route("/work", post(handle))
        .with_state(seen.clone());
    let url = serve_app(app).await;
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: slow}}, next: [call]}}\n  - {{id: call, type: service, url: \"{url}/work\", timeout: 200ms, next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    f.post_yaml(&yaml).await;
    let (_, b) = f.submit("slow", json!({})).await;
    let doc = f.wait_task(b["task_id"].as_str().unwrap()).await;
    assert_eq!(doc["state"], "failed");
    assert!(
        doc["error"].as_str().unwrap().contains("timed out"),
        "{doc}"
    );
    let callback = seen.lock().unwrap()[0].clone();
    let late = f
        .http
        .post(&callback)
        .json(&json!({"late": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status().as_u16(), 409);
}
