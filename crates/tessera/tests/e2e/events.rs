//! Live events of tasks run elsewhere: a client watching `GET /api/v1/events` on an API-only
//! server sees the events of the tasks a worker process runs (on SQLite: processes sharing a
//! data dir; on PostgreSQL: any hosts).

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::cluster::fresh_database;
use crate::server::{free_port, rt, serve_with, store_pipeline};
use crate::support::*;

/// Watches the server's events until the task `id` (or any task, with `None`) reports
/// `finished`; the events seen, in order.
async fn watch_until_finished(
    events: reqwest::Response,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut stream = events.bytes_stream();
    let (mut buffer, mut seen) = (String::new(), Vec::new());
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            chunk = stream.next() => {
                let chunk = chunk.expect("the stream stays open").unwrap();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                        let event: Value = serde_json::from_str(data).unwrap();
                        let done = wanted(&event);
                        seen.push(event);
                        if done {
                            return seen;
                        }
                    }
                }
            }
            _ = &mut deadline => panic!("no such event within 30 s; seen: {seen:?}"),
        }
    }
}

fn relayed_events_reach_the_api_server(env: &Env, db: Option<&str>) {
    let vars: Vec<(&str, &str)> = db.map(|d| ("TESSERA_DB", d)).into_iter().collect();
    let api = serve_with(env, free_port(), &["--no-work"], &vars);
    let mut worker = env.cmd();
    worker
        .args(["worker", "--callback-url", &api.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(d) = db {
        worker.env("TESSERA_DB", d);
    }
    let mut worker = worker.spawn().unwrap();
    let rt = rt();
    let client = reqwest::Client::new();
    let seen = rt.block_on(async {
        store_pipeline(
            &client,
            &api.url,
            r#"name: elsewhere
nodes:
  - {id: in, type: entry, api: {route: elsewhere}, next: [work]}
  - {id: work, type: command, command: ["echo", "hi"], next: [end]}
  - {id: end, type: end}
"#,
        )
        .await;
        let events = client
            .get(format!("{}/api/v1/events", api.url))
            .send()
            .await
            .unwrap();
        assert!(events.status().is_success());
        // The worker learns that someone follows within a second: submit after that.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let r: Value = client
            .post(format!("{}/api/v1/services/elsewhere", api.url))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["task_id"].as_str().unwrap().to_string();
        let seen = watch_until_finished(events, |e| {
            e["type"] == "task" && e["task_id"] == id.as_str() && e["state"] == "finished"
        })
        .await;
        (id, seen)
    });
    let (id, seen) = seen;
    // The node's states came too, in order, before the task's end.
    let work: Vec<&str> = seen
        .iter()
        .filter(|e| e["task_id"] == id.as_str() && e["node"] == "work")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(work.first(), Some(&"running"), "{seen:?}");
    assert_eq!(work.last(), Some(&"finished"), "{seen:?}");
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn events_of_a_worker_reach_the_api_server_on_sqlite() {
    relayed_events_reach_the_api_server(&Env::new(), None);
}

#[test]
fn events_of_a_worker_reach_the_api_server_on_postgres() {
    let db = fresh_database();
    relayed_events_reach_the_api_server(&Env::new(), Some(&db));
}
