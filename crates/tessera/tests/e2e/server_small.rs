//! Issue 12, server and documents: one timestamp format (RFC 3339) in every JSON document of
//! the CLI and the server, logs without colour codes off a terminal, `/health` checking the
//! store and the object store, error ids instead of internal details.

use serde_json::{Value, json};

use crate::server::{free_port, rt, serve_with, submit_json, wait_state};
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
        let task = submit_json(&client, &url, "mixed", &json!({"words": ["a", "bb", "ccc"]})).await;
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
            "/api/v1/registry/services".into(),
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

/// `tessera serve` with its log in a file.
fn serve_logged(env: &Env, log: &std::path::Path) -> crate::server::Serve {
    let port = free_port();
    let child = env
        .cmd()
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_for("the server", std::time::Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    crate::server::Serve { child, url }
}

#[test]
fn health_checks_the_store_and_the_objects_and_errors_carry_an_id() {
    let env = Env::new();
    let log = env.path("serve.log");
    let server = serve_logged(&env, &log);
    let url = server.url.clone();
    let rt = rt();
    let client = reqwest::Client::new();
    let health = || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(format!("{url}/health")).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let data = env.path("data");
    rt.block_on(async {
        assert_eq!(
            health().await,
            (200, json!({"status": "ok", "store": "ok", "objects": "ok"}))
        );
        let r = client
            .post(format!("{url}/api/v1/pipelines"))
            .body("nodes:\n  - {id: in, type: entry, api: {route: up, body: doc}, next: [end]}\n  - {id: end, type: end}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);

        // The object directory removed: 503 naming the part, its details in the log only.
        std::fs::remove_dir_all(data.join("store")).unwrap();
        let (status, body) = health().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!((&body["status"], &body["store"], &body["objects"]), (&json!("unavailable"), &json!("ok"), &json!("error")));
        let id = body["error_id"].as_str().unwrap().to_string();
        assert_eq!(body["error"]["error_id"], id.as_str());
        assert!(!body.to_string().contains(data.to_str().unwrap()), "no paths to clients: {body}");

        // A request failing inside: an error id, no internal text; the log line has both.
        std::fs::write(data.join("store"), "not a directory").unwrap();
        let form = reqwest::multipart::Form::new()
            .part("doc", reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("d.txt"));
        let r = client.post(format!("{url}/api/v1/services/up")).multipart(form).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert!(status >= 500, "{status} {body}");
        let upload_id = body["error"]["error_id"].as_str().unwrap_or_else(|| panic!("{body}")).to_string();
        assert!(upload_id.starts_with("e-") && upload_id.len() == 14, "{upload_id}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&upload_id), "{message}");
        assert!(!body.to_string().contains(data.to_str().unwrap()), "no paths to clients: {body}");
        std::fs::remove_file(data.join("store")).unwrap();
        std::fs::create_dir(data.join("store")).unwrap();
        assert_eq!(health().await.0, 200, "back once the directory is");

        // The database file replaced under the server: writes would go nowhere.
        std::fs::rename(data.join("tessera.db"), data.join("moved.db")).unwrap();
        let (status, body) = health().await;
        assert_eq!((status, &body["store"], &body["objects"]), (503, &json!("error"), &json!("ok")), "{body}");
        let db_id = body["error_id"].as_str().unwrap().to_string();
        std::fs::rename(data.join("moved.db"), data.join("tessera.db")).unwrap();
        assert_eq!(health().await.0, 200);

        let log = std::fs::read_to_string(&log).unwrap();
        for (id, detail) in [(&id, "store"), (&upload_id, "store"), (&db_id, "tessera.db")] {
            let line = log
                .lines()
                .find(|l| l.contains(id.as_str()))
                .unwrap_or_else(|| panic!("no log line for {id}: {log}"));
            assert!(line.contains(data.join(detail).to_str().unwrap()), "{line}");
        }
    });
}
