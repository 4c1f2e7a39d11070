//! Scale-out on PostgreSQL: API-only servers and workers as real processes on one database
//! (the server `TESSERA_TEST_PG` names; `scripts/test.sh` starts a throw-away one), killed with
//! -9 while they work.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Serve, free_port, get_json, post_json, rt, serve_with, store_pipeline};
use crate::support::*;

/// A fresh database of its own on the test server.
pub(crate) fn fresh_database() -> String {
    let server = std::env::var("TESSERA_TEST_PG").expect(
        "TESSERA_TEST_PG=postgres://… names the PostgreSQL server of the scale-out tests \
         (scripts/test.sh starts one: scripts/test-env/postgres.sh start DIR)",
    );
    let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    tessera_store::PgStore::create_database(&server, &name).unwrap()
}

/// A service answering by callback, as real ones do: 202 at once, then the result POSTed to
/// the callback URL — `{"echo": <the input>}` — retried until a server takes it (a server
/// killed meanwhile comes back on the same port).
struct CallbackService {
    url: String,
}

fn callback_service() -> CallbackService {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel::<(String, Value)>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let _ = stream.write_all(
                    b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
                let callback = path
                    .split("callback_url=")
                    .nth(1)
                    .and_then(|q| q.split('&').next())
                    .map(|u| u.replace("%3A", ":").replace("%2F", "/"));
                if let (Some(callback), Ok(input)) = (callback, serde_json::from_slice(&body)) {
                    let _ = tx.send((callback, input));
                }
            });
        }
    });
    std::thread::spawn(move || {
        let rt = rt();
        // At most 32 callbacks in flight, on few connections: a real service's client
        // (unbounded, it held hundreds of connections and the servers refused the test's own
        // requests as over their connection limit).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(8)
            .build()
            .unwrap();
        let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        rt.block_on(async move {
            let mut sending = tokio::task::JoinSet::new();
            loop {
                let next = rx.try_recv();
                match next {
                    Ok((callback, input)) => {
                        let client = client.clone();
                        let in_flight = in_flight.clone();
                        sending.spawn(async move {
                            let _permit = in_flight.acquire_owned().await.unwrap();
                            let start = Instant::now();
                            while start.elapsed() < Duration::from_secs(120) {
                                match client
                                    .post(&callback)
                                    .json(&json!({"echo": input}))
                                    .send()
                                    .await
                                {
                                    Ok(r) if r.status().is_success() => return,
                                    // Refused for good (superseded attempt): nothing to do.
                                    Ok(r) if r.status().is_client_error() => return,
                                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                                }
                            }
                        });
                    }
                    Err(mpsc::TryRecvError::Empty) => {
                        while sending.try_join_next().is_some() {}
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
        });
    });
    CallbackService { url }
}

/// A `tessera worker` process.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Leases of the processes of this test: 2 s, not the suite's 0.5 s — thousands of tasks
/// held by each process of a loaded 2-core machine, as in production (10 s by default).
const LEASE: &str = "2s";

fn worker(env: &Env, db: &str, callback_url: &str) -> Worker {
    worker_with(env, db, callback_url, &[])
}

/// A worker with more arguments (`--pools gpu`).
fn worker_with(env: &Env, db: &str, callback_url: &str, args: &[&str]) -> Worker {
    Worker(
        env.cmd()
            .env("TESSERA_DB", db)
            .env("TESSERA_LEASE", LEASE)
            .env(
                "TESSERA_LOG",
                if std::env::var_os("TESSERA_CHAOS_LOG").is_some() {
                    "info"
                } else {
                    "warn"
                },
            )
            .args(["worker", "--callback-url", callback_url])
            .args(args)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(env.path("workers.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

fn server(env: &Env, db: &str, port: u16) -> Serve {
    serve_with(
        env,
        port,
        &["--no-work"],
        &[("TESSERA_DB", db), ("TESSERA_LEASE", LEASE)],
    )
}

/// A pseudo-random number below `n` (the moments of the kills).
fn below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos / 1000) % n.max(1)
}

/// The chaos test: 2 API-only servers and 2 workers on PostgreSQL, 5,000 tasks of a pipeline
/// with a fan-out, a command and a service called back; one worker and one server killed with
/// -9 at random moments, three times, each restarted at once. Every task finishes with its
/// own result, none lost, no node finished twice, no callback lost.
#[test]
fn tasks_survive_killed_workers_and_servers_on_postgres() {
    const TASKS: usize = 5_000;
    let env = Env::new();
    let db = fresh_database();
    let marks = env.path("marks");
    let service = callback_service();
    let ports = [free_port(), free_port()];
    let mut servers = [server(&env, &db, ports[0]), server(&env, &db, ports[1])];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let mut workers = [worker(&env, &db, &urls[0]), worker(&env, &db, &urls[1])];
    let pipeline = format!(
        r#"name: chaos
nodes:
  - {{id: in, type: entry, api: {{route: chaos}}, next: [each]}}
  - id: each
    type: loop
    items: in.out.items
    nodes:
      - {{id: twice, type: node, after: "out = loop.item * 2;"}}
    next: [mark]
  - id: mark
    type: command
    shell: true
    command: "echo {{{{tessera.task_id}}}} >> {marks}; echo '{{\"n\": {{{{in.out.n}}}}}}'"
    after: "out.doubled = each.out;"
    next: [ask]
  - {{id: ask, type: service, url: "{service}/work", timeout: 2m, next: [end]}}
  - {{id: end, type: end}}
"#,
        marks = marks.display(),
        service = service.url,
    );
    let rt = rt();
    // No connection kept: a server killed leaves none behind.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    // Submitted through both servers, 32 at a time.
    let ids: Vec<String> = rt.block_on(async {
        store_pipeline(&client, &urls[0], &pipeline).await;
        let mut ids = vec![String::new(); TASKS];
        let mut pending = tokio::task::JoinSet::new();
        for n in 0..TASKS {
            if pending.len() >= 32 {
                let (n, id) = pending.join_next().await.unwrap().unwrap();
                ids[n] = id;
            }
            let client = client.clone();
            let url = urls[n % 2].clone();
            pending.spawn(async move {
                let input = json!({"n": n, "items": [n, n + 1, n + 2]});
                let r = client
                    .post(format!("{url}/api/v1/services/chaos"))
                    .json(&input)
                    .send()
                    .await
                    .unwrap();
                let body: Value = r.json().await.unwrap();
                (n, body["task_id"].as_str().expect("submitted").to_string())
            });
        }
        while let Some(done) = pending.join_next().await {
            let (n, id) = done.unwrap();
            ids[n] = id;
        }
        ids
    });
    let submitted = started.elapsed();
    // Three rounds: a random worker and a random server killed with -9, restarted at once.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300 + below(1500)));
        let w = below(2) as usize;
        workers[w].0.kill().unwrap();
        workers[w].0.wait().unwrap();
        let s = below(2) as usize;
        servers[s].child.kill().unwrap();
        servers[s].child.wait().unwrap();
        servers[s] = server(&env, &db, ports[s]);
        workers[w] = worker(&env, &db, &urls[w]);
    }
    // Every task ends: counted on the store through a server, then each document read.
    let docs: Vec<Value> = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let stats: Value = client
                .get(format!("{}/api/v1/stats", urls[0]))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if stats["pending"] == 0 && stats["running"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "tasks did not end: {stats}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut docs = Vec::with_capacity(TASKS);
        for (i, id) in ids.iter().enumerate() {
            // A server over its connection limit answers 503: asked again shortly.
            let doc: Value = loop {
                let r = client
                    .get(format!("{}/api/v1/tasks/{id}", urls[i % 2]))
                    .send()
                    .await
                    .unwrap();
                if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    assert!(Instant::now() < deadline, "task {i}: the server stays busy");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                break r.json().await.unwrap();
            };
            docs.push(doc);
        }
        docs
    });
    let took = started.elapsed();
    let marks = std::fs::read_to_string(&marks).unwrap();
    let mut ran: std::collections::HashMap<&str, usize> = Default::default();
    for line in marks.lines() {
        *ran.entry(line).or_default() += 1;
    }
    let (mut finished, mut failed, mut reran) = (0, 0, 0);
    for (n, (id, doc)) in ids.iter().zip(&docs).enumerate() {
        if doc["state"] != "finished" {
            failed += 1;
            if failed <= 5 {
                eprintln!("task {n} ({id}): {} {}", doc["state"], doc["error"]);
            }
            continue;
        }
        finished += 1;
        assert_eq!(
            doc["result"],
            json!({"echo": {"n": n, "doubled": {"items": [2 * n, 2 * n + 2, 2 * n + 4]}}}),
            "task {n}"
        );
        // No node finished twice; the command ran once per recorded attempt at most.
        let mut finished_keys = std::collections::HashSet::new();
        let mut mark_attempts = 0;
        for run in doc["runs"].as_array().expect("runs") {
            let key = (run["key"].to_string(), run["iteration"].to_string());
            if run["key"] == "mark" {
                mark_attempts += 1;
            }
            if run["state"] == "finished" {
                assert!(
                    finished_keys.insert(key),
                    "task {n}: a node finished twice: {doc}"
                );
            }
        }
        let runs = ran.get(id.as_str()).copied().unwrap_or(0);
        assert!(
            (1..=mark_attempts.max(1)).contains(&runs),
            "task {n}: its command ran {runs} times for {mark_attempts} recorded attempts"
        );
        reran += runs - 1;
    }
    let log = std::fs::read_to_string(env.path("workers.log")).unwrap_or_default();
    let lost_claims = log.matches("lost the claim").count();
    let slow_renewals = log.matches("took longer than a third of the lease").count();
    println!(
        "chaos on PostgreSQL: {TASKS} tasks (2 servers, 2 workers, 3 × kill -9 of a worker and a \
         server): {finished} passed, {failed} failed, 0 lost; {reran} interrupted commands ran \
         again; {lost_claims} claims lost by live workers, {slow_renewals} slow renewals; \
         submitted in {:.1} s, all ended in {:.1} s",
        submitted.as_secs_f64(),
        took.as_secs_f64()
    );
    if std::env::var_os("TESSERA_CHAOS_LOG").is_some() {
        let _ = std::fs::write(std::env::var("TESSERA_CHAOS_LOG").unwrap(), &log);
    }
    if failed > 0 {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("workers' log, last lines:\n{}", tail.join("\n"));
    }
    assert_eq!((finished, failed), (TASKS, 0));
}

/// A pool of one is one job at a time across the cluster: 8 tasks whose node runs in pool
/// `gpu: 1`, submitted to two servers on PostgreSQL that run what they are given, never
/// overlap (each job holds a lock directory while it runs; a job finding it taken records an
/// overlap), though both servers run some.
#[test]
fn a_pool_of_one_runs_one_job_at_a_time_across_processes() {
    let env = Env::new();
    let db = fresh_database();
    let servers = [
        serve_with(&env, free_port(), &[], &[("TESSERA_DB", &db)]),
        serve_with(&env, free_port(), &[], &[("TESSERA_DB", &db)]),
    ];
    let dir = env.path("gpu");
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = r#"name: gpu
pools: {gpu: 1}
nodes:
  - {id: in, type: entry, api: {route: gpu, body: {dir: "/tmp"}}, next: [work]}
  - id: work
    type: command
    pool: gpu
    shell: true
    command: |
      cd {{dir}}
      if mkdir lock 2>/dev/null; then :; else echo overlap >> overlaps; fi
      echo "$PPID" >> ran
      sleep 0.15
      rmdir lock 2>/dev/null
      echo '{"done": true}'
    next: [end]
  - {id: end, type: end}
"#;
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(store_pipeline(&client, &servers[0].url, pipeline));
    let submitted: Vec<(String, String)> = (0..8)
        .map(|n| {
            let url = servers[n % 2].url.clone();
            let body = json!({"dir": dir.display().to_string()});
            let r = post_json(&rt, &client, &format!("{url}/api/v1/services/gpu"), &body);
            (url, r["task_id"].as_str().unwrap().to_string())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (url, id) in &submitted {
        loop {
            let doc: Value = get_json(&rt, &client, &format!("{url}/api/v1/tasks/{id}"));
            if doc["state"] == "finished" {
                break;
            }
            assert!(Instant::now() < deadline, "not finished: {doc}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ran = std::fs::read_to_string(dir.join("ran")).unwrap();
    assert_eq!(ran.lines().count(), 8);
    let processes: std::collections::HashSet<&str> = ran.lines().collect();
    assert_eq!(processes.len(), 2, "both servers ran jobs: {ran}");
    assert!(
        !dir.join("overlaps").exists(),
        "two jobs of the pool of one ran at once"
    );
}

/// Workers declare the pools they serve: tasks of a pipeline using pool `gpu` run only on the
/// worker started with `--pools gpu`; the worker with `--pools ''` takes only tasks using no
/// pool (the others wait for a worker that serves their pool).
#[test]
fn tasks_needing_a_pool_go_to_the_workers_serving_it() {
    let env = Env::new();
    let db = fresh_database();
    let api = server(&env, &db, free_port());
    let plain_worker = worker_with(&env, &db, &api.url, &["--pools", ""]);
    let gpu_worker = worker_with(&env, &db, &api.url, &["--pools", "gpu"]);
    let (plain_pid, gpu_pid) = (plain_worker.0.id(), gpu_worker.0.id());
    let pipeline = |name: &str, pool: &str| {
        format!(
            r#"name: {name}
{pools}
nodes:
  - {{id: in, type: entry, api: {{route: {name}}}, next: [work]}}
  - id: work
    type: command
    {pool}
    shell: true
    command: 'echo "{{\"pid\": $PPID}}"'
    next: [end]
  - {{id: end, type: end}}
"#,
            pools = if pool.is_empty() {
                String::new()
            } else {
                format!("pools: {{{pool}: 1}}")
            },
            pool = if pool.is_empty() {
                String::new()
            } else {
                format!("pool: {pool}")
            },
        )
    };
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        store_pipeline(&client, &api.url, &pipeline("train", "gpu")).await;
        store_pipeline(&client, &api.url, &pipeline("plain", "")).await;
    });
    let ids: Vec<(String, String)> = (0..8)
        .map(|n| {
            let route = if n % 2 == 0 { "train" } else { "plain" };
            let url = format!("{}/api/v1/services/{route}", api.url);
            let r = post_json(&rt, &client, &url, &json!({}));
            (
                route.to_string(),
                r["task_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (route, id) in &ids {
        let doc = loop {
            let doc: Value = get_json(&rt, &client, &format!("{}/api/v1/tasks/{id}", api.url));
            if doc["state"] == "finished" {
                break doc;
            }
            assert!(Instant::now() < deadline, "not finished: {doc}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let pid = doc["result"]["pid"].as_u64().unwrap() as u32;
        if route == "train" {
            assert_eq!(pid, gpu_pid, "a gpu task ran on the worker serving gpu");
        } else {
            assert!([plain_pid, gpu_pid].contains(&pid), "{doc}");
        }
    }
    // The workers list says what each serves (once both have sent a heartbeat).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let workers: Value = get_json(&rt, &client, &format!("{}/api/v1/workers", api.url));
        let serves: Vec<Value> = workers["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pools"]["serves"]["pools"].clone())
            .collect();
        if serves.contains(&json!(["gpu"])) && serves.contains(&json!([])) {
            break;
        }
        assert!(Instant::now() < deadline, "{workers}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A batch job killed with its worker continues on another worker, on PostgreSQL (the same
/// test as on SQLite: checkpoints in the store, output in a shared directory).
#[test]
fn a_batch_job_killed_on_one_worker_resumes_on_another_on_postgres() {
    crate::leases::batch_job_moves_to_another_worker(Some(&fresh_database()));
}

/// The web UI's live task view on an API-only server follows a task a worker runs: its
/// snapshots come from the shared store (the server runs nothing itself), through to the end;
/// the log of a node the worker ran streams there too.
#[test]
fn a_task_page_on_one_server_follows_a_task_a_worker_runs() {
    let env = Env::new();
    let db = fresh_database();
    let api = server(&env, &db, free_port());
    let _worker = worker(&env, &db, &api.url);
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        store_pipeline(
            &client,
            &api.url,
            "nodes:\n  - {id: in, type: entry, api: {route: steps}, next: [a]}\n  \
             - {id: a, type: command, shell: true, command: \"echo one; sleep 0.6; echo two; echo '{}'\", next: [b]}\n  \
             - {id: b, type: command, shell: true, command: \"sleep 0.6; echo '{}'\", next: [end]}\n  \
             - {id: end, type: end}\n",
        )
        .await;
        let id = crate::server::submit_json(&client, &api.url, "steps", &json!({})).await;
        let live = client
            .get(format!("{}/ui/tasks/{id}/live", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status().as_u16(), 200);
        let mut stream = live.bytes_stream();
        let (mut text, mut states) = (String::new(), Vec::new());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            use futures::StreamExt;
            let Ok(Some(Ok(chunk))) =
                tokio::time::timeout(Duration::from_secs(30), stream.next()).await
            else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                    let snap: Value = serde_json::from_str(data.trim()).unwrap();
                    states.push(snap);
                }
            }
            if states.last().is_some_and(|s| s["state"] == "finished") {
                break;
            }
        }
        let last = states.last().expect("snapshots");
        assert_eq!(last["state"], "finished", "{states:?}");
        assert!(states.len() >= 2, "followed while it ran: {states:?}");
        let node_states = |s: &Value, key: &str| {
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["key"] == key)
                .map(|n| n["state"].as_str().unwrap().to_string())
        };
        assert!(
            states.iter().any(|s| node_states(s, "a").as_deref() == Some("finished")
                && node_states(s, "b").as_deref() != Some("finished")),
            "a state between the nodes was seen: {states:?}"
        );
        // The log of `a`, which the worker ran, read through this server.
        let log = client
            .get(format!("{}/ui/tasks/{id}/nodes/a/log/live", api.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(log.contains("\"text\":\"one\"") && log.contains("\"text\":\"two\""), "{log}");
        assert!(log.contains("event: end"), "{log}");
    });
}
