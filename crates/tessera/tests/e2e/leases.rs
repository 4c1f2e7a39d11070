//! Ownership by lease: `tessera serve` killed with -9 and started again 0.1 s later, twenty
//! times while tasks run: every task continues once the dead process's leases run out, ends
//! with the right result, and no node that had committed runs again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{
    first_callback_url, free_port, rt, serve, store_pipeline, submit_json, wait_all, wait_state,
};
use crate::support::*;

/// Three commands in a chain, each logging its run to a file shared by all tasks.
fn chain(dir: &str) -> String {
    let step = |name: &str, next: &str| {
        format!(
            "  - {{id: {name}, type: command, shell: true, command: \"echo {{{{input.n}}}} {name} >> {dir}/runs; sleep 0.1; echo '{{\\\"n\\\": {{{{input.n}}}}}}'\", next: [{next}]}}\n"
        )
    };
    format!(
        "name: leased\nnodes:\n  - {{id: in, type: entry, api: {{route: leased, body: {{n: 1}}}}, next: [a]}}\n{}{}{}  - {{id: end, type: end}}\n",
        step("a", "b"),
        step("b", "c"),
        step("c", "end")
    )
}

#[test]
fn tasks_survive_twenty_kill_9_and_restarts_of_the_server() {
    let env = Env::new();
    let dir = env.dir.path().display().to_string();
    let port = free_port();
    let rt = rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut server = serve(&env, port);
    let url = server.url.clone();
    let tasks: Vec<String> = rt.block_on(async {
        store_pipeline(&client, &url, &chain(&dir)).await;
        let mut ids = Vec::new();
        for n in 0..24 {
            ids.push(submit_json(&client, &url, "leased", &json!({"n": n})).await);
        }
        ids
    });
    let mut kills = 0;
    let started = Instant::now();
    for round in 0..20 {
        // Some work between kills (more in later rounds), then kill -9 and restart 0.1 s later.
        std::thread::sleep(Duration::from_millis(150 + 20 * round));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        kills += 1;
        std::thread::sleep(Duration::from_millis(100));
        server = serve(&env, port);
    }
    let docs = rt.block_on(wait_all(&client, &url, &tasks));
    for (n, doc) in docs.iter().enumerate() {
        assert_eq!(doc["state"], "finished", "task {n}: {doc}");
        assert_eq!(doc["result"], json!({"n": n}), "task {n}");
        // Each node finished once; an attempt caught running by a kill is recorded as
        // interrupted, never as a second success.
        for node in ["a", "b", "c"] {
            let finished = doc["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["key"] == node && r["state"] == "finished")
                .count();
            assert_eq!(finished, 1, "task {n} node {node}: {doc}");
        }
    }
    // Runs beyond one per node are the attempts a kill interrupted (at most the commands
    // running then: 24 tasks × 1 command each).
    let runs = std::fs::read_to_string(env.path("runs")).unwrap();
    let mut per: HashMap<&str, usize> = HashMap::new();
    for line in runs.lines() {
        *per.entry(line).or_default() += 1;
    }
    assert_eq!(per.len(), 24 * 3, "every node of every task ran");
    let extra: usize = per.values().map(|c| c - 1).sum();
    assert!(extra <= kills * 24, "{extra} extra runs for {kills} kills");
    eprintln!(
        "{} tasks, {kills} kills: all finished in {:.1} s, {extra} interrupted commands ran again",
        tasks.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn workers_lists_the_live_processes_and_the_tasks_they_hold() {
    let env = Env::new();
    let server = serve(&env, free_port());
    let url = server.url.clone();
    let rt = rt();
    let client = reqwest::Client::new();
    let workers = |client: reqwest::Client, url: String| async move {
        let r = client
            .get(format!("{url}/api/v1/workers"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["items"].clone()
    };
    rt.block_on(async {
        store_pipeline(
            &client,
            &url,
            "nodes:\n  - {id: in, type: entry, api: {route: nap}, next: [nap]}\n  - {id: nap, type: command, command: [sleep, '30'], next: [end]}\n  - {id: end, type: end}\n",
        )
        .await;
        // Its first heartbeat comes within a third of the lease (500 ms here).
        let mut items = Value::Null;
        for _ in 0..50 {
            items = workers(client.clone(), url.clone()).await;
            if items.as_array().is_some_and(|a| !a.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let list = items.as_array().unwrap();
        assert_eq!(list.len(), 1, "{items}");
        let me = &list[0];
        assert_eq!(me["pid"], server.child.id(), "{me}");
        assert_eq!(me["lease_ms"], 500);
        assert_eq!(me["held"], 0);
        assert!(me["pools"]["max_processes"].as_u64().unwrap() > 0, "{me}");
        let task = submit_json(&client, &url, "nap", &json!({})).await;
        let mut held = 0;
        for _ in 0..50 {
            held = workers(client.clone(), url.clone()).await[0]["held"]
                .as_u64()
                .unwrap();
            if held == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(held, 1, "the running task is held");
        client
            .post(format!("{url}/api/v1/tasks/{task}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(wait_state(&client, &url, &task).await["state"], "cancelled");
    });
}

/// A `tessera worker` process.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(env: &Env, callback_url: &str) -> Worker {
    worker_on(env, callback_url, None)
}

/// A worker on the data dir's store, or on the PostgreSQL database `db`.
fn worker_on(env: &Env, callback_url: &str, db: Option<&str>) -> Worker {
    let mut cmd = env.cmd();
    if let Some(db) = db {
        cmd.env("TESSERA_DB", db);
    }
    Worker(
        cmd.args(["worker", "--callback-url", callback_url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// An API-only server and workers on one store: the server runs nothing; the workers claim
/// the submissions, a worker killed with -9 has its tasks taken over by another, and a service
/// callback received by the server reaches the worker waiting for it.
#[test]
fn workers_run_what_an_api_only_server_records() {
    let env = Env::new();
    let dir = env.dir.path().display().to_string();
    let server = crate::server::serve_with(&env, free_port(), &["--no-work"], &[]);
    let url = server.url.clone();
    let rt = rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let tasks: Vec<String> = rt.block_on(async {
        store_pipeline(&client, &url, &chain(&dir)).await;
        let mut ids = Vec::new();
        for n in 0..12 {
            ids.push(submit_json(&client, &url, "leased", &json!({"n": n})).await);
        }
        // Recorded, not run: no worker yet.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let doc: Value = client
            .get(format!("{url}/api/v1/tasks/{}", ids[0]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["state"], "pending", "{doc}");
        ids
    });
    assert!(!env.path("runs").exists(), "the server ran nothing");
    let mut first = worker(&env, &url);
    let _second = worker(&env, &url);
    // One worker killed mid-way; a third one joins.
    std::thread::sleep(Duration::from_millis(400));
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let _third = worker(&env, &url);
    let docs = rt.block_on(wait_all(&client, &url, &tasks));
    for (n, doc) in docs.iter().enumerate() {
        assert_eq!(doc["state"], "finished", "task {n}: {doc}");
        assert_eq!(doc["result"], json!({"n": n}));
    }
    // The server ran none of them.
    let listed: Value = rt.block_on(async {
        client
            .get(format!("{url}/api/v1/workers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let server_row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == server.child.id())
        .cloned()
        .unwrap_or(Value::Null);
    assert!(server_row.is_null() || server_row["held"] == 0, "{listed}");

    // A service node: dispatched by a worker, called back on the server.
    let service = http_server(|_, _| (202, "application/json", "{}".into()));
    let id = rt.block_on(async {
        store_pipeline(
            &client,
            &url,
            &format!(
                "nodes:\n  - {{id: in, type: entry, api: {{route: asks}}, next: [ask]}}\n  - {{id: ask, type: service, url: \"{}/work\", next: [end]}}\n  - {{id: end, type: end}}\n",
                service.url
            ),
        )
        .await;
        submit_json(&client, &url, "asks", &json!({})).await
    });
    let callback = first_callback_url(&service);
    assert!(callback.starts_with(&url), "{callback}");
    rt.block_on(async {
        let r = client
            .post(&callback)
            .json(&json!({"answer": 42}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let doc = wait_state(&client, &url, &id).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(doc["result"], json!({"answer": 42}));
    });

    // A resume asked of the API-only server is run by a worker too.
    let failing = |body: &str| {
        format!(
            "name: fixme\nnodes:\n  - {{id: in, type: entry, api: {{route: fixme}}, next: [step]}}\n  - {{id: step, type: command, shell: true, command: \"echo $PPID >> {dir}/ppids; {body}\", next: [end]}}\n  - {{id: end, type: end}}\n"
        )
    };
    rt.block_on(async {
        store_pipeline(&client, &url, &failing("exit 3")).await;
        let id = submit_json(&client, &url, "fixme", &json!({})).await;
        assert_eq!(wait_state(&client, &url, &id).await["state"], "failed");
        let r = client
            .post(format!("{url}/api/v1/tasks/{id}/resume"))
            .json(&json!({"pipeline": failing("echo '{\\\"ok\\\": true}'")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let doc = wait_state(&client, &url, &id).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(doc["result"], json!({"ok": true}));
    });
    let ppids = std::fs::read_to_string(env.path("ppids")).unwrap();
    assert_eq!(ppids.lines().count(), 2, "{ppids}");
    assert!(
        ppids.lines().all(|p| p != server.child.id().to_string()),
        "the API-only server ran a command: {ppids}"
    );
}

/// A batch job killed with its worker resumes on another worker from its committed chunks
/// (checkpoints in the store, output in the shared directory): byte-identical output.
#[test]
fn a_batch_job_killed_with_its_worker_resumes_on_another() {
    batch_job_moves_to_another_worker(None);
}

/// The batch job of [`a_batch_job_killed_with_its_worker_resumes_on_another`], on the data
/// dir's store or on the PostgreSQL database `db`.
pub(crate) fn batch_job_moves_to_another_worker(db: Option<&str>) {
    use crate::batch::{SLOW_LENGTH, reference_lengths, sample};
    let env = Env::new();
    let input = sample(&env, 300_000, "in.csv");
    let out = env.path("out.csv");
    let vars: Vec<(&str, &str)> = db.map(|d| ("TESSERA_DB", d)).into_iter().collect();
    let server = crate::server::serve_with(&env, free_port(), &["--no-work"], &vars);
    let url = server.url.clone();
    let rt = rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let pipeline = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: crunch}}, next: [job]}}\n  - id: job\n    type: batch\n    reader: {{format: csv, path: {}}}\n    processor: {{columns: {{length: \"{SLOW_LENGTH}\"}}}}\n    writer: {{format: csv, path: {}}}\n    chunk_size: 10000\n    parallelism: 2\n    next: [end]\n  - {{id: end, type: end}}\n",
        input.display(),
        out.display()
    );
    let task = rt.block_on(async {
        store_pipeline(&client, &url, &pipeline).await;
        submit_json(&client, &url, "crunch", &json!({})).await
    });
    let mut first = worker_on(&env, &url, db);
    let doc = |client: &reqwest::Client| -> Value {
        rt.block_on(async {
            client
                .get(format!("{url}/api/v1/tasks/{task}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let committed = |d: &Value| {
        d["batches"][0]["counts"]["chunk_states"]["committed"]
            .as_u64()
            .unwrap_or(0)
    };
    wait_for("two committed chunks", Duration::from_secs(60), || {
        committed(&doc(&client)) >= 2
    });
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let before = doc(&client);
    let done_before = committed(&before);
    assert!(done_before < 30, "killed before the end");
    let _second = worker_on(&env, &url, db);
    let after = rt.block_on(wait_state(&client, &url, &task));
    assert_eq!(after["state"], "finished", "{after}");
    assert_eq!(after["result"]["written"], 300_000);
    assert!(std::fs::read(&out).unwrap() == reference_lengths(&input));
    // Started twice; the chunks committed by the first worker were kept.
    let job = &after["batches"][0];
    assert_eq!(job["starts"], 2, "{job}");
    let kept = before["batches"][0]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(job["chunks"].as_array().unwrap())
        .filter(|(b, _)| b["state"] == "committed")
        .inspect(|(b, a)| assert_eq!(b["committed_at"], a["committed_at"]))
        .count();
    assert_eq!(kept as u64, done_before);
}
