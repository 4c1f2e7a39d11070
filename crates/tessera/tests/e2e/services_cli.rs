//! Services outside the server: `service` nodes under `tessera run` (the run's own callback
//! listener, kill -9 and resume), services by name (`tessera services announce`, `validate
//! --server`, unknown names), callback tokens kept out of errors, logs and task documents, and
//! the face-blur example under `tessera run`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{free_port, rt, serve, wait_state};
use crate::support::*;

/// The `callback_url` a service was given in a dispatch request's path.
fn callback_in(path: &str) -> String {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let encoded = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("callback_url="))
        .unwrap_or_else(|| panic!("no callback_url in {path}"));
    encoded.replace("%3A", ":").replace("%2F", "/")
}

/// The token at the end of a callback URL.
fn token_of(callback: &str) -> String {
    callback.rsplit('/').next().unwrap().to_string()
}

/// A service that accepts every dispatch (202) and describes itself as `name` on `GET /`,
/// with one endpoint `/work`: the test answers its callbacks itself.
fn accepting_service(name: &'static str) -> TestServer {
    // Not its real URL: `services announce` records the URL the service was reached at.
    let description = json!({
        "name": name,
        "url": "http://elsewhere.invalid:1",
        "endpoints": [{"route": format!("{name}-work"), "path": "/work", "summary": "Work"}],
    })
    .to_string();
    http_server(move |_, path| {
        if path == "/" {
            (200, "application/json", description.clone())
        } else {
            (202, "application/json", r#"{"accepted": true}"#.into())
        }
    })
}

/// A service that reads each request's first line, then drops the connection unanswered.
fn dropping_service() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                seen.lock().unwrap().push(line);
            }
        }
    });
    (url, lines)
}

fn dispatched_paths(service: &TestServer) -> Vec<String> {
    service.paths.lock().unwrap().clone()
}

/// The `n`th dispatch (1-based) the service received, once it has (`GET /` is no dispatch).
fn wait_dispatches(service: &TestServer, n: usize) -> String {
    let dispatches = || -> Vec<String> {
        dispatched_paths(service)
            .into_iter()
            .filter(|p| p.contains("callback_url="))
            .collect()
    };
    wait_for("the dispatch", Duration::from_secs(30), || {
        dispatches().len() >= n
    });
    dispatches()[n - 1].clone()
}

fn one_service_node(target: &str) -> String {
    format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: one}}, next: [call]}}\n  - id: call\n    type: service\n    {target}\n    retry: {{attempts: 3, backoff: 50ms}}\n    timeout: 60s\n    next: [end]\n  - {{id: end, type: end}}\n"
    )
}

fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

#[test]
fn service_nodes_run_under_tessera_run_and_callbacks_are_checked_like_the_servers() {
    let env = Env::new();
    let service = accepting_service("echo");
    let p = env.write(
        "one.yaml",
        &one_service_node(&format!("url: \"{}/work\"", service.url)),
    );
    let mut child = env.spawn(&["run", p.to_str().unwrap(), "--input", r#"{"n": 1}"#]);
    let task = read_task_id(&mut child);
    let callback = callback_in(&wait_dispatches(&service, 1));
    assert!(
        callback.starts_with("http://127.0.0.1:") && callback.contains("/api/v1/callbacks/"),
        "a loopback listener of the run's own: {callback}"
    );
    let token = token_of(&callback);
    let base = callback.trim_end_matches(&token).to_string();
    let image: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let rt = rt();
    rt.block_on(async {
        // A fresh connection per request: the refused big body closes its connection.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let status = |r: reqwest::Response| r.status().as_u16();
        let forged = client
            .post(format!("{base}{}", "0".repeat(64)))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(status(forged), 404, "unknown token");
        let other = client.post(format!("{base}../tasks")).send().await.unwrap();
        assert_eq!(status(other), 404, "only the callback route is served");
        let file_ref = client
            .post(&callback)
            .json(&json!({"x": {"$file": "/etc/passwd"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(status(file_ref), 400, "`$file` refused as on the server");
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(17 << 20));
        // The listener answers 413 and closes without reading the rest, so the client may
        // see the connection closed before it reads the answer; either way it is refused
        // (the good callback below is still accepted).
        match client.post(&callback).body(big).send().await {
            Ok(r) => assert_eq!(status(r), 413, "the server's JSON body limit"),
            Err(e) => assert!(e.is_request(), "{e}"),
        }
        let form = reqwest::multipart::Form::new()
            .part(
                "data",
                reqwest::multipart::Part::text(r#"{"width": 7}"#)
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "image",
                reqwest::multipart::Part::bytes(image.clone())
                    .file_name("out.png")
                    .mime_str("image/png")
                    .unwrap(),
            );
        let ok = client.post(&callback).multipart(form).send().await.unwrap();
        assert_eq!(status(ok), 200);
    });
    let r = finish(child);
    let out = r.ok();
    assert_eq!(out["width"], 7);
    assert_eq!(out["image"]["content_type"], "image/png");
    let id = out["image"]["$object"].as_str().unwrap();
    let stored = std::fs::read(env.path("data").join("store/objects").join(id)).unwrap();
    assert_eq!(
        stored, image,
        "the uploaded part is stored as an object of the task"
    );
    let doc = env.show(&task);
    assert_eq!(doc["state"], "finished");
    // The listener ended with the run.
    let gone = rt.block_on(async {
        reqwest::Client::new()
            .post(&callback)
            .json(&json!({}))
            .send()
            .await
    });
    assert!(gone.is_err(), "nothing listens once the run is over");
}

#[test]
fn a_service_node_waiting_under_tessera_run_survives_kill_9_and_resume() {
    let env = Env::new();
    let service = accepting_service("echo");
    let p = env.write(
        "one.yaml",
        &one_service_node(&format!("url: \"{}/work\"", service.url)),
    );
    let mut first = env.spawn(&["run", p.to_str().unwrap(), "--input", r#"{"n": 1}"#]);
    let task = read_task_id(&mut first);
    let old = callback_in(&wait_dispatches(&service, 1));
    first.kill().unwrap(); // SIGKILL: its listener is gone with it
    first.wait().unwrap();
    assert_eq!(env.show(&task)["state"], "running");
    let mut second = env.spawn(&["resume", &task]);
    let new = callback_in(&wait_dispatches(&service, 2));
    assert_eq!(
        token_of(&new),
        token_of(&old),
        "the same attempt, the same token"
    );
    assert_ne!(new, old, "the new process's listener");
    let rt = rt();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(&new)
            .json(&json!({"answer": 42}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    let _ = read_task_id(&mut second);
    let r = finish(second);
    assert_eq!(r.ok(), json!({"answer": 42}));
    let doc = env.show(&task);
    let call = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "call")
        .unwrap()
        .clone();
    assert_eq!(call["attempt"], 1, "the waiting attempt went on: {doc}");
    let logs = env.run(&["tasks", "logs", &task, "call"]).stdout;
    assert!(logs.contains("dispatching again"), "{logs}");
    assert_eq!(service.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn services_by_name_resolve_in_the_registry_and_unknown_names_fail_at_once() {
    let env = Env::new();
    let service = accepting_service("echo");
    let r = env.run(&["services", "announce", &service.url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("announced `echo`: echo/work"),
        "{}",
        r.stderr
    );
    let list: Value =
        serde_json::from_str(&env.run(&["services", "list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["name"], "echo");
    assert_eq!(
        list[0]["url"],
        service.url.as_str(),
        "the URL it was reached at"
    );

    let good = env.write("good.yaml", &one_service_node("service: echo/work"));
    let mut child = env.spawn(&["run", good.to_str().unwrap()]);
    let path = wait_dispatches(&service, 1);
    assert!(path.starts_with("/work?"), "{path}");
    rt().block_on(async {
        let r = reqwest::Client::new()
            .post(callback_in(&path))
            .json(&json!({"named": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    let _ = read_task_id(&mut child);
    assert_eq!(finish(child).ok(), json!({"named": true}));

    // Unknown names: the node fails at its first attempt, naming itself, the name and the
    // services known; nothing is dispatched.
    for (target, says) in [
        (
            "service: ehco/work",
            "no service named `ehco` is announced (`service: ehco/work`); known services: echo",
        ),
        (
            "service: echo/play",
            "service `echo` announces no endpoint `/play` (`service: echo/play`); its endpoints: /work",
        ),
    ] {
        let p = env.write("bad.yaml", &one_service_node(target));
        let started = std::time::Instant::now();
        let r = env.run(&["run", p.to_str().unwrap()]);
        assert_eq!(r.code, 1);
        assert_eq!(
            r.last_stderr_line(),
            format!("error: node `call` failed (attempt 1): {says}")
        );
        assert!(started.elapsed() < Duration::from_secs(10), "not retried");
        let doc = env.show(&r.task_id());
        let runs = doc["runs"].as_array().unwrap();
        assert_eq!(runs.iter().filter(|r| r["key"] == "call").count(), 1);
    }
    assert_eq!(
        service.hits.load(Ordering::SeqCst),
        2,
        "GET / and one dispatch"
    );

    // `url` XOR `service`, named in the report.
    let both = env.write(
        "both.yaml",
        &one_service_node("url: \"http://127.0.0.1:1/x\"\n    service: echo/work"),
    );
    let r = env.run(&["validate", both.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("node `call`, field `service`: give either `url`"),
        "{}",
        r.stderr
    );

    // Against a server's registry: the service announces itself there.
    let server = serve(&env, free_port());
    let r = env.run(&[
        "services",
        "announce",
        &service.url,
        "--server",
        &server.url,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.run(&["validate", good.to_str().unwrap(), "--server", &server.url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("service names found in"), "{}", r.stdout);
    let typo = env.write("typo.yaml", &one_service_node("service: ehco/work"));
    let r = env.run(&["validate", typo.to_str().unwrap(), "--server", &server.url]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "node `call`, field `service`: no service named `ehco` is announced (`service: ehco/work`); known services: echo"
        ),
        "{}",
        r.stderr
    );
    let r = env.run(&[
        "validate",
        typo.to_str().unwrap(),
        "--json",
        "--server",
        &server.url,
    ]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["errors"][0]["field"], "service");
    // Without --server only the shape is checked.
    assert_eq!(env.run(&["validate", typo.to_str().unwrap()]).code, 0);
}

/// `tessera serve` with its log (debug level) in a file.
fn serve_logging(env: &Env, log: &std::path::Path) -> (Child, String) {
    let child = env
        .cmd()
        .args(["serve", "--addr", &format!("127.0.0.1:{}", free_port())])
        .env("TESSERA_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut url = String::new();
    wait_for("the server to listen", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        match text
            .lines()
            .find_map(|l| l.strip_prefix("tessera serving on "))
        {
            Some(rest) => {
                url = rest.split_whitespace().next().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    (child, url)
}

#[test]
fn callback_tokens_never_show_in_errors_logs_or_task_documents() {
    let env = Env::new();
    // Answers 500 echoing the request line, callback URL and token included.
    let failing = http_server(|_, path| (500, "text/plain", format!("cannot serve {path}")));
    let accepting = accepting_service("echo");
    let (dropping, dropped) = dropping_service();
    let log = env.path("server.log");
    let (mut server, url) = serve_logging(&env, &log);
    let rt = rt();
    let client = reqwest::Client::new();
    let tasks: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for (route, target) in [
            ("fails", format!("{}/work", failing.url)),
            ("drops", format!("{dropping}/work")),
            ("reports", format!("{}/work", accepting.url)),
        ] {
            let yaml = one_service_node(&format!("url: \"{target}\""))
                .replace("route: one", &format!("route: {route}"))
                .replace("attempts: 3", "attempts: 1");
            let r = client
                .post(format!("{url}/api/v1/pipelines"))
                .body(yaml)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let r = client
                .post(format!("{url}/api/v1/services/{route}"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let body: Value = r.json().await.unwrap();
            ids.push(body["task_id"].as_str().unwrap().to_string());
        }
        // The third service fails by callback, its message quoting the URL it was given.
        let callback = callback_in(&wait_dispatches(&accepting, 1));
        let r = client
            .post(&callback)
            .header("Tessera-Status", "failed")
            .json(&json!({"error": format!("could not finish; call back {callback} later")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        ids
    });
    let mut seen = String::new();
    rt.block_on(async {
        for id in &tasks {
            let doc = wait_state(&client, &url, id).await;
            assert_eq!(doc["state"], "failed", "{doc}");
            seen.push_str(&doc.to_string());
            let logs = client
                .get(format!("{url}/api/v1/tasks/{id}/nodes/call/log"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen.push_str(&logs);
        }
    });
    let request_lines: Vec<String> = dropped
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect();
    let mut tokens: Vec<String> = dispatched_paths(&failing)
        .iter()
        .chain(dispatched_paths(&accepting).iter())
        .chain(request_lines.iter())
        .map(|p| token_of(&callback_in(p)))
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        3,
        "one token per dispatched attempt: {tokens:?}"
    );
    for id in &tasks {
        seen.push_str(&env.run(&["tasks", "show", id, "--json"]).stdout);
        seen.push_str(&env.run(&["tasks", "logs", id]).stdout);
    }
    let _ = server.kill();
    let _ = server.wait();
    let server_log = std::fs::read_to_string(&log).unwrap();
    // What the errors say instead: enough to know what failed.
    assert!(seen.contains("HTTP 500"), "{seen}");
    assert!(seen.contains("/api/v1/callbacks/…"), "{seen}");
    assert!(
        seen.contains("the service reported: could not finish"),
        "{seen}"
    );
    assert!(seen.contains("service unavailable: POST"), "{seen}");
    for token in &tokens {
        assert!(
            !seen.contains(token.as_str()),
            "a token in a task document or log: {seen}"
        );
        assert!(
            !server_log.contains(token.as_str()),
            "a token in the server's log: {server_log}"
        );
    }
}

/// The face-blur example exactly as the README runs it under `tessera run`, with the real
/// example services, when their Python environment is installed.
#[test]
fn face_blur_runs_under_tessera_run_with_the_example_services_by_name() {
    let services = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/services");
    let python = format!("{services}/.venv/bin/python");
    if !std::path::Path::new(&python).exists() {
        eprintln!("skipped: run examples/services/setup.sh first (scripts/test.sh does)");
        return;
    }
    let env = Env::new();
    let start = |script: &str| -> (Child, String) {
        let mut child = std::process::Command::new(&python)
            .args([&format!("{services}/{script}"), "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        (child, url)
    };
    let (mut faces, faces_url) = start("faces.py");
    let (mut imaging, imaging_url) = start("imaging.py");
    let made = std::process::Command::new(&python)
        .args([&format!("{services}/make_test_image.py"), "face.jpg"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(made.status.success());
    let r = env.run(&["services", "announce", &faces_url, &imaging_url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.run(&[
        "run",
        "--file",
        "image=@face.jpg",
        &format!("{services}/pipelines/face-blur.yaml"),
    ]);
    let out = r.ok();
    assert_eq!(out["blurred"], 1, "{out}");
    assert_eq!(out["image"]["content_type"], "image/jpeg");
    let id = out["image"]["$object"].as_str().unwrap();
    let blurred = std::fs::read(env.path("data").join("store/objects").join(id)).unwrap();
    let original = std::fs::read(env.path("face.jpg")).unwrap();
    assert!(blurred.len() > 1000 && blurred != original);
    let r = env.run(&[
        "run",
        "--file",
        "image=@face.jpg",
        &format!("{services}/pipelines/describe-faces.yaml"),
    ]);
    assert_eq!(r.ok()["items"].as_array().unwrap().len(), 1);
    for child in [&mut faces, &mut imaging] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
