//! Faults through the real server: a database that fills up while tasks run, and what each
//! route answers meanwhile and after.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_server::Limits;

use crate::support::*;

async fn wait_for_state(f: &Fixture, id: &str, state: &str) -> Value {
    let start = Instant::now();
    loop {
        let (_, doc) = f.get(&format!("/api/v1/tasks/{id}")).await;
        if doc["state"] == state {
            return doc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "task {id} never became {state}: it is {}",
            doc["state"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_fails_the_task_and_resume_cancel_delete_work_without_a_restart() {
    let (f, store) = start_with_store(&[], Limits::default()).await;
    let dir = f._dir.path().display().to_string();
    // Its output (~1 MB) cannot be committed once the database is capped.
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: big}}, next: [gate]}}\n  - {{id: gate, type: command, shell: true, command: \"while [ ! -f {dir}/open ]; do sleep 0.02; done; head -c 1000000 /dev/zero | tr '\\\\0' x | sed 's/.*/{{\\\"big\\\": \\\"&\\\"}}/'\", next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    assert_eq!(f.post_yaml(&yaml).await.0, 201);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, r) = f.submit("big", json!({})).await;
        let id = r["task_id"].as_str().unwrap().to_string();
        wait_for_state(&f, &id, "running").await;
        ids.push(id);
    }
    let (resumed, cancelled) = (&ids[0], &ids[1]);
    store
        .set_max_size(Some(store.size().unwrap() + (64 << 10)))
        .unwrap();
    std::fs::write(f._dir.path().join("open"), "").unwrap();
    // The drivers cannot commit the outputs and stop; the tasks are still readable.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, doc) = f.get(&format!("/api/v1/tasks/{resumed}")).await;
    assert_eq!(status, 200, "{doc}");
    // While the disk is full: not 409 "still being run", not a 202 that does nothing (409
    // only because the task already failed with the cause).
    let r = f.post(&format!("/api/v1/tasks/{cancelled}/cancel")).await;
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert!(
        status == 202
            || status == 507
            || (status == 409
                && answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("already failed")),
        "cancel answered {status}: {answer}"
    );
    let r = f.post(&format!("/api/v1/tasks/{resumed}/resume")).await;
    let status = r.status().as_u16();
    assert!(status == 202 || status == 507, "resume answered {status}");
    if status == 507 {
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["code"], "storage_full", "{err}");
    }
    // A new task cannot even be recorded.
    let mut refused = false;
    for _ in 0..50 {
        let (status, err) = f.submit("big", json!({"pad": "x".repeat(30_000)})).await;
        if status == 507 {
            assert_eq!(err["error"]["code"], "storage_full", "{err}");
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "submissions are refused with 507 once the database is full"
    );
    // Space is freed: without a restart, neither task is left running. The resumed one may
    // have finished (if its resume got in while the disk was full) or failed with the cause.
    store.set_max_size(None).unwrap();
    let start = Instant::now();
    loop {
        let (_, a) = f.get(&format!("/api/v1/tasks/{resumed}")).await;
        let (_, b) = f.get(&format!("/api/v1/tasks/{cancelled}")).await;
        let (a, b) = (a["state"].as_str().unwrap(), b["state"].as_str().unwrap());
        if (a == "failed" || a == "finished") && (b == "cancelled" || b == "failed") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "states {a}, {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, b) = f.get(&format!("/api/v1/tasks/{cancelled}")).await;
    if b["state"] == "failed" {
        let error = b["error"].as_str().unwrap();
        assert!(error.contains("full"), "{error}");
    }
    for id in &ids {
        let (_, doc) = f.get(&format!("/api/v1/tasks/{id}")).await;
        if doc["state"] != "finished" {
            let r = f.post(&format!("/api/v1/tasks/{id}/resume")).await;
            assert_eq!(r.status().as_u16(), 202);
        }
        let doc = wait_for_state(&f, id, "finished").await;
        // A big result is given by its size in the document, whole with `values=full`.
        assert!(doc["result_bytes"].as_u64().unwrap() > 1_000_000, "{doc}");
        let (_, full) = f.get(&format!("/api/v1/tasks/{id}?values=full")).await;
        assert_eq!(full["result"]["big"].as_str().unwrap().len(), 1_000_000);
    }
    for id in &ids {
        assert_eq!(
            f.delete(&format!("/api/v1/tasks/{id}"))
                .await
                .status()
                .as_u16(),
            204
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_9_mb_body_costs_a_small_multiple_of_its_size() {
    let _turn = memory_turn().await;
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: big}, next: [work]}\n  - {id: work, type: node, after: \"out.seen = true;\", next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    // Records: the shape whose tree costs the most (15 times its text as serde_json values).
    let mut body = String::from("{\"rows\": [");
    let mut i = 0;
    while body.len() < 9_000_000 {
        if i > 0 {
            body.push_str(", ");
        }
        body.push_str(&format!(
            "{{\"id\": {i}, \"name\": \"name-{i}\", \"score\": {}.5, \"ok\": {}}}",
            i / 2,
            i % 2 == 0
        ));
        i += 1;
    }
    body.push_str("]}");
    let size = body.len() as u64;
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = rss_kb("VmRSS");
    let r = f
        .http
        .post(f.url("/api/v1/services/big"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = Instant::now();
    loop {
        let (_, list) = f.get("/api/v1/tasks?limit=1").await;
        if list["items"][0]["state"] == "finished" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = rss_kb("VmHWM").saturating_sub(before) * 1024;
    assert!(
        grown < 10 * size,
        "peak RSS grew by {} MB for a {} MB body",
        grown >> 20,
        size >> 20
    );
    // And the result is the body, with the script's field.
    let result: Value = f
        .http
        .get(f.url(&format!("/api/v1/tasks/{id}/result")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["seen"], true);
    assert_eq!(result["rows"].as_array().unwrap().len(), i);
}
