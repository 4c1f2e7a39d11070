//! Issue 12, server and documents: one timestamp format (RFC 3339) in every JSON document of
//! the CLI and the server, logs without colour codes off a terminal, `/health` checking the
//! store and the object store, error ids instead of internal details.

use serde_json::{Value, json};

use crate::server::{free_port, rt, serve_with, wait_state};
use crate::support::*;

/// Every field named like a timestamp (`*_at`, `at`, `last_seen`) anywhere in `doc`: its path
/// and value.
fn timestamps<'a>(doc: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match doc {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{path}.{k}");
                if k.ends_with("_at") || k == "at" || k == "last_seen" {
                    out.push((p.clone(), v));
                }
                timestamps(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                timestamps(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks every timestamp of `doc` is an RFC 3339 string like `2026-12-05T21:40:00.123Z`
/// (or null); returns how many were checked.
fn check_timestamps(what: &str, doc: &Value) -> usize {
    let mut found = Vec::new();
    timestamps(doc, "", &mut found);
    let mut checked = 0;
    for (path, v) in found {
        if v.is_null() {
            continue;
        }
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {path} is not a string: {v}"));
        let parsed = chrono::DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{what}: {path} = {s:?} is not RFC 3339: {e}"));
        assert_eq!(parsed.offset().local_minus_utc(), 0, "{what}: {path} = {s}");
        assert!(
            s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.',
            "{what}: {path} = {s:?}: expected YYYY-MM-DDTHH:MM:SS.mmmZ"
        );
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(
            age.num_seconds().abs() < 3600,
            "{what}: {path} = {s} is not now"
        );
        checked += 1;
    }
    checked
}

const MIXED: &str = "nodes:
  - {id: in, type: entry, api: {route: mixed, body: {words: [a]}}, next: [say, each]}
  - {id: say, type: command, shell: true, command: 'echo hello; echo oops >&2', next: [end]}
  - id: each
    type: loop
    items: in.out.words
    next: [end]
    nodes:
      - {id: measure, type: node, after: 'out = item.len();'}
  - id: end
    type: end
    ready: all_done
";

#[test]
fn every_timestamp_of_the_cli_and_server_documents_is_rfc_3339() {
    let env = Env::new();
    let p = env.write("mixed.yaml", MIXED);
    let r = env.run(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        r#"{"words": ["x", "yy"]}"#,
    ]);
    r.ok();
    let id = r.task_id();
    let mut checked = 0;
    for args in [
        vec!["tasks", "list", "--json"],
        vec!["tasks", "show", &id, "--json"],
        vec!["tasks", "logs", &id, "--json"],
        vec!["tasks", "logs", &id, "say", "--json"],
    ] {
        let r = env.run(&args);
        checked += check_timestamps(&args.join(" "), &r.ok());
    }
    assert!(checked >= 10, "only {checked} timestamps seen");

    let server = serve_with(&env, free_port(), &[], &[]);
    let rt = rt();
    let client = reqwest::Client::new();
    let url = server.url.clone();
    rt.block_on(async {
        let get = |path: String| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client.get(format!("{url}{path}")).send().await.unwrap();
                assert!(r.status().is_success(), "GET {path}: {}", r.status());
                r.json::<Value>().await.unwrap()
            }
        };
        let r = client
            .post(format!("{url}/api/v1/pipelines"))
            .body(MIXED)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r = client
            .post(format!("{url}/api/v1/registry/announce"))
            .json(&json!({"name": "svc", "url": "http://127.0.0.1:9", "endpoints": [{"route": "svc-x", "path": "/x"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
        let submitted: Value = client
            .post(format!("{url}/api/v1/services/mixed"))
            .json(&json!({"words": ["a", "bb", "ccc"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task = submitted["task_id"].as_str().unwrap().to_string();
        let doc = wait_state(&client, &url, &task).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        let mut checked = 0;
        for path in [
            "/api/v1/tasks".to_string(),
            format!("/api/v1/tasks/{task}"),
            format!("/api/v1/tasks/{id}"),
            format!("/api/v1/tasks/{task}/nodes/say/log"),
            "/api/v1/pipelines".into(),
            "/api/v1/pipelines/mixed".into(),
            "/api/v1/stats".into(),
        ] {
            checked += check_timestamps(&path, &get(path.clone()).await);
        }
        assert!(checked >= 20, "only {checked} timestamps seen");
    });
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let env = Env::new();
    let p = env.write("mixed.yaml", MIXED);
    let out = env
        .cmd()
        .args(["run", p.to_str().unwrap()])
        .env("TESSERA_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "debug logs are on: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in a log file: {stderr}"
    );
    // The log lines' own timestamps are in the documents' format too.
    let line = stderr.lines().find(|l| l.contains("DEBUG")).unwrap();
    let stamp = line.split_whitespace().next().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.len() == 24,
        "{line}"
    );
}
