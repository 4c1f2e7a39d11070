//! Schedules on PostgreSQL with two servers (real processes on one database): every tick
//! creates exactly one task, whichever server leads, even when the leader is killed; missed
//! ticks are caught up `max_active_tasks` at a time; pause, resume and backfill over HTTP.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::fresh_database;
use crate::server::{Serve, free_port, get_json, post_json, rt, serve_with, store_pipeline};
use crate::support::*;

fn server(env: &Env, db: &str, port: u16) -> Serve {
    serve_with(env, port, &[], &[("TESSERA_DB", db)])
}

/// Whole seconds since the epoch, in ms, `offset_s` seconds from now.
fn second(offset_s: i64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ((now / 1000 + offset_s) * 1000) as u64
}

fn rfc3339(ms: u64) -> String {
    tessera_core::time::rfc3339(ms)
}

/// Every task of `pipeline` as its document (listed through `url`).
fn documents(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    pipeline: &str,
) -> Vec<Value> {
    let list = get_json(
        rt,
        client,
        &format!("{url}/api/v1/tasks?pipeline={pipeline}&limit=1000"),
    );
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let id = item["id"].as_str().unwrap();
            get_json(rt, client, &format!("{url}/api/v1/tasks/{id}"))
        })
        .collect()
}

/// Tasks by their tick; panics on a task without one, or two tasks of one tick.
fn by_tick(docs: &[Value]) -> BTreeMap<String, Value> {
    let mut ticks = BTreeMap::new();
    for doc in docs {
        let tick = doc["scheduled_at"]
            .as_str()
            .unwrap_or_else(|| panic!("a task without a tick: {doc}"))
            .to_string();
        if let Some(other) = ticks.insert(tick.clone(), doc.clone()) {
            panic!(
                "two tasks of tick {tick}: {} and {}",
                other["id"], doc["id"]
            );
        }
    }
    ticks
}

/// An every-second schedule served by two servers for ten seconds, the server that (perhaps)
/// leads killed with -9 halfway and restarted: every tick from `start` on has exactly one
/// task, none is missing (`catchup: all` creates those due while nobody led), and each task's
/// command saw its own tick.
#[test]
fn every_second_for_ten_seconds_gives_one_task_per_tick() {
    let env = Env::new();
    let db = fresh_database();
    let ports = [free_port(), free_port()];
    let mut servers = [server(&env, &db, ports[0]), server(&env, &db, ports[1])];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let start = second(1);
    let pipeline = format!(
        r#"name: every
schedule:
  cron: "* * * * * *"
  timezone: Europe/Paris
  start: {start}
  catchup: all
  max_active_tasks: 10
  input: {{n: 7}}
nodes:
  - {{id: in, type: entry, api: {{route: every, body: {{n: 1}}}}, next: [echo]}}
  - id: echo
    type: command
    command: ["echo", "{{{{pipeline.scheduled_at}}}} {{{{n}}}}"]
    next: [end]
  - {{id: end, type: end}}
"#,
        start = rfc3339(start)
    );
    let rt = rt();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    rt.block_on(store_pipeline(&client, &urls[1], &pipeline));
    std::thread::sleep(Duration::from_millis(
        start.saturating_sub(second(0)) + 5_000,
    ));
    servers[0].child.kill().unwrap();
    servers[0].child.wait().unwrap();
    servers[0] = server(&env, &db, ports[0]);
    std::thread::sleep(Duration::from_secs(5));
    // Paused through the restarted server: no tick after this one.
    let paused = post_json(
        &rt,
        &client,
        &format!("{}/api/v1/schedules/every/pause", servers[0].url),
        &json!({}),
    );
    assert_eq!(paused["paused"], true, "{paused}");
    let last = paused["last_tick"].as_str().unwrap().to_string();
    // Every task ends (the last ones may still run).
    let deadline = Instant::now() + Duration::from_secs(30);
    let docs = loop {
        let docs = documents(&rt, &client, &urls[1], "every");
        if docs.iter().all(|d| d["state"] == "finished") || Instant::now() > deadline {
            break docs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let ticks = by_tick(&docs);
    let expected: Vec<String> = (0..)
        .map(|i| rfc3339(start + i * 1000))
        .take_while(|t| *t <= last)
        .collect();
    assert!(
        expected.len() >= 9,
        "{} ticks in ten seconds",
        expected.len()
    );
    assert_eq!(
        ticks.keys().cloned().collect::<Vec<_>>(),
        expected,
        "one task per tick from start to the last, none missing"
    );
    for (tick, doc) in &ticks {
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(doc["result"]["stdout"], format!("{tick} 7\n"), "{doc}");
    }
    // Listed by both servers as paused, with the last tick's task.
    for url in &urls {
        let list: Value = get_json(&rt, &client, &format!("{url}/api/v1/schedules"));
        let item = &list["items"][0];
        assert_eq!(item["pipeline"], "every");
        assert_eq!(item["paused"], true);
        assert_eq!(item["last_tick"], last.as_str());
        assert_eq!(item["last_task"]["id"], ticks[&last]["id"]);
        assert_eq!(item["last_task"]["state"], "finished");
    }
    eprintln!(
        "every second for ten seconds, leader perhaps killed: {} ticks, {} tasks, 0 duplicates",
        expected.len(),
        ticks.len()
    );
}

/// A schedule first seen 30 ticks after its start, with `catchup: all` and
/// `max_active_tasks: 2`: the 30 missed ticks are created oldest first, never more than two
/// tasks running at once; a backfill of a range then adds only the ticks that have no task.
#[test]
fn catchup_all_creates_thirty_missed_ticks_two_at_a_time() {
    let env = Env::new();
    let db = fresh_database();
    let servers = [
        server(&env, &db, free_port()),
        server(&env, &db, free_port()),
    ];
    let end = second(-1);
    let start = end - 29_000;
    let pipeline = format!(
        r#"name: missed
schedule:
  cron: "* * * * * *"
  start: {start}
  end: {end}
  catchup: all
  max_active_tasks: 2
nodes:
  - {{id: in, type: entry, api: {{route: missed}}, next: [work]}}
  - {{id: work, type: command, command: ["sleep", "0.2"], next: [end]}}
  - {{id: end, type: end}}
"#,
        start = rfc3339(start),
        end = rfc3339(end),
    );
    let rt = rt();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    rt.block_on(store_pipeline(&client, &servers[0].url, &pipeline));
    let deadline = Instant::now() + Duration::from_secs(60);
    let docs = loop {
        let docs = documents(&rt, &client, &servers[1].url, "missed");
        let done = docs.len() == 30 && docs.iter().all(|d| d["state"] == "finished");
        if done || Instant::now() > deadline {
            break docs;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let ticks = by_tick(&docs);
    let expected: Vec<String> = (0..30).map(|i| rfc3339(start + i * 1000)).collect();
    assert_eq!(ticks.keys().cloned().collect::<Vec<_>>(), expected);
    // Oldest first: creation follows the ticks.
    let created: Vec<&str> = ticks
        .values()
        .map(|d| d["created_at"].as_str().unwrap())
        .collect();
    assert!(created.is_sorted(), "{created:?}");
    // Never more than two running at once: the command runs' intervals overlap by two at most.
    let mut edges: Vec<(String, i32)> = Vec::new();
    for doc in ticks.values() {
        assert_eq!(doc["state"], "finished", "{doc}");
        let run = &doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == "work")
            .unwrap();
        edges.push((run["started_at"].as_str().unwrap().to_string(), 1));
        edges.push((run["finished_at"].as_str().unwrap().to_string(), -1));
    }
    // At equal times an end comes before a start.
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, delta) in &edges {
        running += delta;
        most = most.max(running);
    }
    assert!(most <= 2, "{most} tasks ran at once");
    assert_eq!(most, 2, "two slots were used");

    // A backfill over the schedule's whole range and 5 s before: nothing new inside it
    // (before `start` there are no ticks), then a dry run says so too.
    let backfill = |from: u64, to: u64, dry_run: bool| -> (u16, Value) {
        rt.block_on(async {
            let r = client
                .post(format!(
                    "{}/api/v1/schedules/missed/backfill",
                    servers[1].url
                ))
                .json(&json!({"from": rfc3339(from), "to": rfc3339(to), "dry_run": dry_run}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    };
    let (status, body) = backfill(start - 5_000, end, false);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["ticks"].as_array().unwrap().len(), 30);
    assert!(
        body["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["outcome"] == "exists")
    );
    // Bad requests name their field.
    let (status, body) = backfill(end, start, false);
    assert_eq!(status, 400, "{body}");
    let r = rt.block_on(async {
        client
            .post(format!(
                "{}/api/v1/schedules/missed/backfill",
                servers[1].url
            ))
            .json(&json!({"from": "yesterday", "to": rfc3339(end)}))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = rt.block_on(r.json()).unwrap();
    assert_eq!(body["error"]["details"][0]["field"], "from", "{body}");
    let r = rt.block_on(async {
        client
            .post(format!("{}/api/v1/schedules/nowhere/pause", servers[0].url))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(r.status().as_u16(), 404);
    eprintln!("catch-up of 30 missed ticks: 30 tasks, oldest first, at most {most} at once");
}

/// The embedded default (SQLite): a server ticks a schedule; the CLI on the same data dir
/// lists, pauses and backfills it, and says clearly what is wrong with a bad request.
#[test]
fn the_cli_lists_pauses_and_backfills_schedules_of_the_data_dir() {
    let env = Env::new();
    let serve = serve_with(&env, free_port(), &[], &[]);
    let pipeline = r#"name: nightly
schedule: {cron: "* * * * * *", catchup: none}
nodes:
  - {id: in, type: entry, api: {route: nightly}, next: [n]}
  - {id: n, type: node, after: "out = #{at: pipeline.scheduled_at};", next: [end]}
  - {id: end, type: end}
"#;
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(store_pipeline(&client, &serve.url, pipeline));
    std::thread::sleep(Duration::from_millis(2_500));
    let paused = env.run(&["schedules", "pause", "nightly"]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    let list = env.run(&["schedules", "list", "--json"]).ok();
    let item = &list[0];
    assert_eq!(item["pipeline"], "nightly");
    assert_eq!(item["paused"], true);
    assert_eq!(item["schedule"]["cron"], "* * * * * *");
    assert_eq!(item["schedule"]["timezone"], "UTC");
    let last = item["last_tick"].as_str().expect("ticked").to_string();
    let task = item["last_task"]["id"].as_str().unwrap().to_string();
    // The task's script saw its tick.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.show(&task)["state"] != "finished" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let doc = env.show(&task);
    assert_eq!(doc["scheduled_at"], last.as_str());
    assert_eq!(doc["result"]["at"], last.as_str(), "{doc}");
    // Paused: no new tick.
    std::thread::sleep(Duration::from_millis(1_500));
    let again = env.run(&["schedules", "show", "nightly", "--json"]).ok();
    assert_eq!(again["last_tick"], last.as_str());
    // A dry run of the 3 seconds before the last tick: they have no task (catchup: none
    // created only ticks on time since the pipeline was stored) or have one.
    let from = tessera_core::time::parse_rfc3339(&last).unwrap() - 3_000;
    let dry = env
        .run(&[
            "backfill",
            "nightly",
            "--from",
            &rfc3339(from),
            "--to",
            &last,
            "--dry-run",
            "--json",
        ])
        .ok();
    let ticks = dry["ticks"].as_array().unwrap();
    assert_eq!(ticks.len(), 4);
    assert_eq!(ticks[3]["outcome"], "exists");
    let missing = ticks
        .iter()
        .filter(|t| t["outcome"] == "would_create")
        .count();
    let done = env
        .run(&[
            "backfill",
            "nightly",
            "--from",
            &rfc3339(from),
            "--to",
            &last,
            "--json",
        ])
        .ok();
    assert_eq!(done["created"], missing as u64);
    // Bad requests: a time that is not RFC 3339, a pipeline without a schedule.
    let bad = env.run(&["backfill", "nightly", "--from", "monday", "--to", &last]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr
            .contains("--from: `monday` is not an RFC 3339 time"),
        "{}",
        bad.stderr
    );
    let none = env.run(&["schedules", "pause", "ghost"]);
    assert_ne!(none.code, 0);
    assert!(
        none.stderr.contains("no pipeline `ghost` is stored"),
        "{}",
        none.stderr
    );
    drop(serve);
}
