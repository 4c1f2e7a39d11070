//! Loops run in chunks, through the real binary: 150,000 items killed with -9 while their
//! chunks commit, then resumed, give a clean run's result (SQLite and PostgreSQL); the task
//! document summarises the loop, its items page through `tasks items` and the API, and a
//! failed item's log is found by `LOOP#i`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Every item through Rhai (a map is built: not the native path), some failing.
const SCRIPTED: &str = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    max_failed_items: 5
    next: [end]
    nodes:
      - {id: sq, type: node, after: 'if item < 0 { throw `negative: ${item}`; } out = #{v: item * item, i: index};'}
  - {id: end, type: end}
"#;

const ITEMS: i64 = 150_000;

/// Items 0, 1, 2, … with four negative ones (at 7, 50,007, 100,007, 149,999).
fn input() -> String {
    let xs: Vec<i64> = (0..ITEMS)
        .map(|i| {
            if i % 50_000 == 7 || i == ITEMS - 1 {
                -i
            } else {
                i
            }
        })
        .collect();
    json!({ "xs": xs }).to_string()
}

fn check_result(out: &Value) {
    let items = out["items"].as_array().expect("items");
    assert_eq!(items.len(), ITEMS as usize);
    assert_eq!(items[3], json!({"v": 9, "i": 3}));
    assert_eq!(items[7], Value::Null);
    assert_eq!(
        items[149_998],
        json!({"v": 149_998i64 * 149_998, "i": 149_998})
    );
    let failed = out["failed"].as_array().expect("failed items listed");
    let indexes: Vec<u64> = failed.iter().filter_map(|f| f["index"].as_u64()).collect();
    assert_eq!(indexes, [7, 50_007, 100_007, 149_999]);
    assert_eq!(failed[0]["node"], "sq#7");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("negative: -7"),
        "{}",
        failed[0]
    );
}

/// The arguments that point a command at the test's database (after the command's name).
fn with_db<'a>(db: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut out = args.to_vec();
    if let Some(db) = db {
        out.splice(1..1, ["--db", db]);
    }
    out
}

fn killed_and_resumed_equals_a_clean_run(db: Option<&str>) {
    let env = Env::new();
    let p = env.write("loop.yaml", SCRIPTED);
    env.write("input.json", &input());
    let input = "@input.json";
    let clean = env.run(&with_db(
        db,
        &["run", p.to_str().unwrap(), "--input", input],
    ));
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    let clean_out = clean.ok();
    check_result(&clean_out);

    // A second run killed once two chunks are committed, then resumed.
    let mut child = env.spawn(&with_db(
        db,
        &["run", p.to_str().unwrap(), "--input", input],
    ));
    let task = read_task_id(&mut child);
    let chunks = |env: &Env| -> u64 {
        let r = env.run(&with_db(db, &["tasks", "show", &task, "--json"]));
        serde_json::from_str::<Value>(&r.stdout)
            .ok()
            .and_then(|d| d["loops"][0]["chunks"].as_u64())
            .unwrap_or(0)
    };
    wait_for("two chunks committed", Duration::from_secs(120), || {
        chunks(&env) >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let committed = chunks(&env);
    // The items page shows the committed items and the others as pending.
    let page = env.run(&with_db(
        db,
        &["tasks", "items", &task, "each", "--limit", "3", "--json"],
    ));
    assert_eq!(page.code, 0, "{}", page.stderr);
    let page = page.json();
    assert_eq!(page["mode"], "chunks");
    assert_eq!(page["items"][1]["value"], json!({"v": 1, "i": 1}));
    let resumed = env.run(&with_db(db, &["resume", &task]));
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(resumed.ok(), clean_out, "the resumed result differs");
    // The chunks committed before the kill were taken, not computed again.
    let logs = env.run(&with_db(db, &["tasks", "logs", &task, "each"]));
    assert!(
        logs.stdout.contains("taken from") && logs.stdout.contains("committed by an earlier run"),
        "{committed} chunks committed; logs: {}",
        logs.stdout
    );

    // The document summarises the loop instead of listing 150,000 instances.
    let doc = env
        .run(&with_db(db, &["tasks", "show", &task, "--json"]))
        .json();
    let nodes: Vec<&str> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["key"].as_str())
        .collect();
    assert_eq!(nodes, ["in", "each", "end"]);
    let summary = &doc["loops"][0];
    assert_eq!(summary["key"], "each");
    assert_eq!(summary["items"], ITEMS);
    assert_eq!(summary["counts"]["finished"], ITEMS - 4);
    assert_eq!(summary["counts"]["failed"], 4);
    assert_eq!(summary["failed"][3]["node"], "sq#149999");
    // Failed items, paged; an item's logs by `LOOP#i`.
    let failed = env.run(&with_db(
        db,
        &["tasks", "items", &task, "each", "--state", "failed"],
    ));
    assert_eq!(failed.code, 0, "{}", failed.stderr);
    let lines: Vec<&str> = failed.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", failed.stdout);
    assert!(
        lines[1].contains("50007") && lines[1].contains("sq#50007"),
        "{}",
        lines[1]
    );
    let item_log = env.run(&with_db(db, &["tasks", "logs", &task, "each#50007"]));
    assert_eq!(item_log.code, 0, "{}", item_log.stderr);
    assert!(
        item_log.stdout.contains("negative: -50007"),
        "{}",
        item_log.stdout
    );
}

#[test]
fn a_chunked_loop_killed_and_resumed_equals_a_clean_run_on_sqlite() {
    killed_and_resumed_equals_a_clean_run(None);
}

#[test]
fn a_chunked_loop_killed_and_resumed_equals_a_clean_run_on_postgres() {
    let db = crate::cluster::fresh_database();
    killed_and_resumed_equals_a_clean_run(Some(&db));
}

#[test]
fn too_many_failed_items_fail_the_task_naming_the_item() {
    let env = Env::new();
    let p = env.write(
        "loop.yaml",
        &SCRIPTED.replace("max_failed_items: 5", "max_failed_items: 2"),
    );
    env.write("input.json", &input());
    let r = env.run(&["run", p.to_str().unwrap(), "--input", "@input.json"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("node `sq#100007` failed (attempt 1): `after` script:")
            && r.stderr.contains("max_failed_items (2)"),
        "{}",
        r.stderr
    );
}

/// A server on a data dir of its own (both are kept alive by the caller), and its URL.
fn squares_server() -> (Env, crate::server::Serve, String) {
    let env = Env::new();
    let server = crate::server::serve(&env, crate::server::free_port());
    let url = server.url.clone();
    (env, server, url)
}

/// [`SCRIPTED`] on the route `squares`.
fn squares() -> String {
    SCRIPTED.replace(
        "{id: in, type: entry, next: [each]}",
        "{id: in, type: entry, api: {route: squares, body: {xs: [1]}}, next: [each]}",
    )
}

/// `GET /api/v1/tasks/{id}/nodes/{loop}/items`: pages, a state filter, bad queries refused
/// with a JSON error, an unknown loop a 404; the document's summary.
#[test]
fn the_items_api_pages_a_loops_items() {
    let (_env, _server, url) = squares_server();
    // The runtime first: it installs the TLS provider the client needs.
    let rt = crate::server::rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        crate::server::store_pipeline(&client, &url, &squares()).await;
        let xs: Vec<i64> = (0..1000).map(|i| if i == 500 { -1 } else { i }).collect();
        let id = crate::server::submit_json(&client, &url, "squares", &json!({ "xs": xs })).await;
        let doc = crate::server::wait_state(&client, &url, &id).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(doc["loops"][0]["items"], 1000);
        assert_eq!(doc["loops"][0]["failed"][0]["index"], 500);
        let get = |q: &str| {
            let (client, u) = (client.clone(), format!("{url}/api/v1/tasks/{id}/nodes/{q}"));
            async move {
                let r = client.get(u).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (status, page) = get("each/items?offset=998&limit=5").await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 1000);
        let indexes: Vec<u64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, [998, 999]);
        assert_eq!(page["items"][1]["value"], json!({"v": 998_001, "i": 999}));
        let (_, failed) = get("each/items?state=failed").await;
        assert_eq!(failed["items"].as_array().unwrap().len(), 1);
        assert_eq!(failed["items"][0]["node"], "sq#500");
        for bad in [
            "each/items?state=lost",
            "each/items?limit=0",
            "each/items?limit=x",
        ] {
            let (status, body) = get(bad).await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert!(body["error"]["message"].is_string(), "{bad}: {body}");
        }
        let (status, body) = get("nope/items").await;
        assert_eq!(status, 404, "{body}");
        // An item's key is not a loop's: told so, with the task's loops.
        let (status, body) = get("each%235/items").await;
        assert_eq!(status, 404, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("each#5") && message.ends_with("its loops: each"),
            "{body}"
        );
    });
}

/// A cancel stops a chunked loop where it is: the chunks under way stop within their chunk,
/// nothing more is committed, and a resume finishes the items left.
#[test]
fn a_cancel_stops_a_chunked_loop_and_a_resume_finishes_it() {
    let (_env, _server, url) = squares_server();
    // The runtime first: it installs the TLS provider the client needs.
    let rt = crate::server::rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        crate::server::store_pipeline(&client, &url, &squares()).await;
        let n = 150_000u64;
        let id = crate::server::submit_json(
            &client,
            &url,
            "squares",
            &json!({ "xs": (0..n).collect::<Vec<_>>() }),
        )
        .await;
        let doc_of = || {
            let (client, u) = (client.clone(), format!("{url}/api/v1/tasks/{id}"));
            async move {
                client
                    .get(u)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let chunks = |d: &Value| d["loops"][0]["chunks"].as_u64().unwrap_or(0);
        let started = std::time::Instant::now();
        loop {
            let d = doc_of().await;
            assert!(
                matches!(d["state"].as_str(), Some("pending" | "running")),
                "the loop ended before a chunk was seen: {}",
                d["state"]
            );
            if chunks(&d) >= 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no chunk committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = client
            .post(format!("{url}/api/v1/tasks/{id}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let doc = crate::server::wait_state(&client, &url, &id).await;
        assert_eq!(doc["state"], "cancelled", "{}", doc["error"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = doc_of().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let later = doc_of().await;
        assert_eq!(
            chunks(&after),
            chunks(&later),
            "chunks committed after the cancel"
        );
        let done: u64 = later["loops"][0]["counts"]["finished"]
            .as_u64()
            .unwrap_or(0);
        assert!(done < n - 4, "the loop ran to its end: {done} items");
        // Resumed, it finishes from the committed chunks.
        let r = client
            .post(format!("{url}/api/v1/tasks/{id}/resume"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        while doc_of().await["state"] == "cancelled" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let doc = crate::server::wait_state(&client, &url, &id).await;
        assert_eq!(doc["state"], "finished", "{}", doc["error"]);
        assert_eq!(doc["loops"][0]["items"], n);
    });
}
