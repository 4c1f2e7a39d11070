//! Races and limits through the real server: pipelines deleted or replaced while a submission
//! checks them, resume against delete, live events for a task's owner, validation cost, names.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_server::Limits;

use crate::support::*;

/// `entry → n0 → … → n{k-1} → end`, its last node tagging its output with `tag`.
fn chain(route: &str, k: usize, tag: &str) -> String {
    let mut nodes =
        vec![json!({"id": "in", "type": "entry", "api": {"route": route}, "next": ["n0"]})];
    for i in 0..k {
        let next = if i + 1 < k {
            format!("n{}", i + 1)
        } else {
            "end".into()
        };
        let mut n = json!({"id": format!("n{i}"), "type": "node", "next": [next]});
        if i + 1 == k {
            n["after"] = json!(format!("out = #{{tag: \"{tag}\"}};"));
        }
        nodes.push(n);
    }
    nodes.push(json!({"id": "end", "type": "end"}));
    json!({ "nodes": nodes }).to_string()
}

async fn post_json_pipeline(f: &Fixture, doc: &str) -> u16 {
    f.http
        .post(f.url("/api/v1/pipelines"))
        .header("content-type", "application/json")
        .body(doc.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replaced_pipeline_is_never_served_from_a_stale_copy() {
    let _turn = memory_turn().await;
    let f = start().await;
    for round in 0..5 {
        // Delete while a submission (cache miss: it reads and checks 5,000 nodes) is under way.
        assert_eq!(
            post_json_pipeline(&f, &chain("big", 5000, "old")).await,
            201
        );
        let submitting = f.submit("big", json!({}));
        let deleting = async {
            tokio::time::sleep(Duration::from_millis(2 * round)).await;
            f.delete("/api/v1/pipelines/big").await.status().as_u16()
        };
        let ((_, _), deleted) = tokio::join!(submitting, deleting);
        assert_eq!(deleted, 204);
        let (status, _) = f.submit("big", json!({})).await;
        assert_eq!(
            status, 404,
            "round {round}: a deleted pipeline accepted a task"
        );
    }
    for round in 0..5 {
        // Replace while a submission checks the old version: later tasks run the new one.
        assert_eq!(
            post_json_pipeline(&f, &chain("swap", 5000, "old")).await,
            201
        );
        let submitting = f.submit("swap", json!({}));
        let replacing = async {
            tokio::time::sleep(Duration::from_millis(2 * round)).await;
            post_json_pipeline(&f, &chain("swap", 3, "new")).await
        };
        let (_, replaced) = tokio::join!(submitting, replacing);
        assert_eq!(replaced, 200);
        let (status, r) = f.submit("swap", json!({})).await;
        assert_eq!(status, 202);
        let doc = f.wait_task(r["task_id"].as_str().unwrap()).await;
        assert_eq!(doc["result"]["tag"], "new", "round {round}: {doc}");
        assert_eq!(
            f.delete("/api/v1/pipelines/swap").await.status().as_u16(),
            204
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_and_delete_of_one_task_never_both_win() {
    let f = start().await;
    let dir = f._dir.path().display().to_string();
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: flaky}}, next: [work]}}\n  - {{id: work, type: command, shell: true, command: \"test -f {dir}/ok\", next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    f.post_yaml(&yaml).await;
    let (mut resumed, mut deleted) = (0, 0);
    for _ in 0..10 {
        let (_, r) = f.submit("flaky", json!({})).await;
        let id = r["task_id"].as_str().unwrap().to_string();
        assert_eq!(f.wait_task(&id).await["state"], "failed");
        let (resume_path, task_path) = (
            format!("/api/v1/tasks/{id}/resume"),
            format!("/api/v1/tasks/{id}"),
        );
        let resume = f.post(&resume_path);
        let delete = f.delete(&task_path);
        let (resume, delete) = tokio::join!(resume, delete);
        let outcome = (resume.status().as_u16(), delete.status().as_u16());
        match outcome {
            (202, 409) => {
                resumed += 1;
                // The resumed run ends (failing again), and can then be deleted.
                f.wait_task(&id).await;
                assert_eq!(f.delete(&format!("/api/v1/tasks/{id}")).await.status(), 204);
            }
            (404, 204) => deleted += 1,
            other => panic!("resume and delete answered {other:?}: exactly one must win"),
        }
        assert_eq!(f.get(&format!("/api/v1/tasks/{id}")).await.0, 404);
    }
    assert_eq!(resumed + deleted, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_of_its_owner_reaches_the_owner_live() {
    let f = with_tokens().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: quick}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let mut events = f
        .http
        .get(f.url("/api/v1/events"))
        .bearer_auth(secret(USER))
        .send()
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    // Tasks that end at once, over more than one pass of the server's once-a-second sweeps.
    let started = Instant::now();
    while ids.len() < 600 || started.elapsed() < Duration::from_millis(2500) {
        let (status, r) = f.submit_as(USER, "quick", &json!({})).await;
        assert_eq!(status, 202);
        ids.insert(r["task_id"].as_str().unwrap().to_string());
        if ids.len() % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut seen = String::new();
    let mut finished = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while finished.len() < ids.len() {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("events keep coming")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = seen.find("\n\n") {
            let event: String = seen.drain(..end + 2).collect();
            assert!(!event.starts_with("event: lagged"), "lagged: {event}");
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                if v["type"] == "task" && v["state"] == "finished" {
                    finished.insert(v["task_id"].as_str().unwrap().to_string());
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} seen",
            finished.len(),
            ids.len()
        );
    }
    assert_eq!(finished, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checking_huge_pipelines_is_linear_and_never_stalls_other_requests() {
    let _turn = memory_turn().await;
    let limits = Limits {
        max_nodes: 100_000,
        max_body: 64 << 20,
        ..Limits::default()
    };
    let f = start_with(&[], limits).await;
    // 60,000 nodes with three problems each: 180,000 problems in the report.
    let mut nodes =
        vec![json!({"id": "in", "type": "entry", "api": {"route": "bad"}, "next": ["n0"]})];
    for i in 0..60_000 {
        nodes.push(json!({"id": format!("n{i}"), "type": "node", "next": ["missing"], "bogus": 1}));
    }
    nodes.push(json!({"id": "end", "type": "end"}));
    let doc = json!({ "nodes": nodes }).to_string();
    let post = || async {
        let r = f
            .http
            .post(f.url("/api/v1/pipelines"))
            .header("content-type", "application/json")
            .body(doc.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };
    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let post_and_count = || async {
        let r = post().await;
        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        r
    };
    // Probed for as long as the pipelines are being checked.
    let health = async {
        let mut slowest = Duration::ZERO;
        while done.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            let t = Instant::now();
            assert_eq!(f.get("/health").await.0, 200);
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    };
    let ((a, report), (b, _), slowest) = tokio::join!(post_and_count(), post_and_count(), health);
    // Generous bounds: quadratic checking took minutes, on the request threads.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "checking two 60,000-node pipelines took {:?}",
        started.elapsed()
    );
    assert_eq!((a, b), (422, 422));
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("180000 problem(s)"),
        "{}",
        report["error"]["message"]
    );
    let details = report["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 1001, "the first 1,000, then how many more");
    assert_eq!(details[1000]["message"], "and 179000 more problem(s)");
    // Generous (the whole suite runs beside it on 2 cores): with validation on the request
    // threads /health waited for minutes.
    assert!(
        slowest < Duration::from_secs(5),
        "/health took {slowest:?} while pipelines were checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_nodes_and_bad_names_are_refused() {
    let f = start().await;
    let status = post_json_pipeline(&f, &chain("huge", 10_001, "x")).await;
    assert_eq!(status, 422);
    let r = f
        .http
        .post(f.url("/api/v1/pipelines"))
        .header("content-type", "application/json")
        .body(chain("huge", 10_001, "x"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(r["error"]["details"][0]["field"], "nodes", "{r}");
    let long = "n".repeat(201);
    for (name, field) in [
        (json!(""), "name"),
        (json!("bad\u{7}name"), "name"),
        (json!("tab\tname"), "name"),
        (json!(long), "name"),
        (json!(42), "name"),
    ] {
        let doc = json!({"name": name, "nodes": [
            {"id": "in", "type": "entry", "next": ["end"]},
            {"id": "end", "type": "end"},
        ]});
        let (status, err) = (
            post_json_pipeline(&f, &doc.to_string()).await,
            f.post_json("/api/v1/pipelines", &doc)
                .await
                .json::<Value>()
                .await
                .unwrap(),
        );
        assert_eq!(status, 422, "{name}: {err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{err}");
    }
    let doc = json!({"nodes": [
        {"id": "in", "type": "entry", "api": {"route": "r".repeat(201)}, "next": ["end"]},
        {"id": "end", "type": "end"},
    ]});
    assert_eq!(post_json_pipeline(&f, &doc.to_string()).await, 422);
    let doc = json!({"name": "n".repeat(200), "nodes": [
        {"id": "in", "type": "entry", "next": ["end"]},
        {"id": "end", "type": "end"},
    ]});
    assert_eq!(post_json_pipeline(&f, &doc.to_string()).await, 201);
}
