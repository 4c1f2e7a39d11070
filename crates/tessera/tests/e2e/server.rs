//! End-to-end tests of `tessera serve`: the real binary, killed with -9 and started again while
//! a task waits on a service; `tasks --server`; the example Python services.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

pub(crate) struct Serve {
    pub child: Child,
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port no other test of this run is given: below the kernel's ephemeral range (which hands
/// out `bind(0)` ports, so a port released by a killed server could go to another test before
/// the server is restarted on it), each handed out once by this process (from a block of
/// 1,000 chosen by its pid), and free now.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 22) as u16 * 1_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 1_000, "this test run used its 1,000 ports");
        let port = base + n;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn serve(env: &Env, port: u16) -> Serve {
    serve_with(env, port, &[], &[])
}

/// `tessera serve` with more arguments and environment variables.
pub(crate) fn serve_with(env: &Env, port: u16, args: &[&str], vars: &[(&str, &str)]) -> Serve {
    let mut child = env
        .cmd()
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(args)
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("serve exited:\n{}", said.join("\n"));
        };
        if let Some(rest) = line.strip_prefix("tessera serving on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        said.push(line);
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Serve { child, url }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `GET url`: its JSON answer.
pub(crate) fn get_json(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
) -> serde_json::Value {
    rt.block_on(async { client.get(url).send().await.unwrap().json().await.unwrap() })
}

/// `POST url` with a JSON body: its JSON answer.
pub(crate) fn post_json(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    rt.block_on(async {
        let r = client.post(url).json(body).send().await.unwrap();
        r.json().await.unwrap()
    })
}

/// Stores a pipeline (YAML or JSON text) on the server; panics unless it was stored.
pub(crate) async fn store_pipeline(client: &reqwest::Client, url: &str, text: &str) {
    let r = client
        .post(format!("{url}/api/v1/pipelines"))
        .header("content-type", "application/yaml")
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Submits a JSON input to a route; the new task's id.
pub(crate) async fn submit_json(
    client: &reqwest::Client,
    url: &str,
    route: &str,
    input: &Value,
) -> String {
    let r = client
        .post(format!("{url}/api/v1/services/{route}"))
        .json(input)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body["task_id"].as_str().unwrap().to_string()
}

/// Waits for a test service's first call, and returns the callback URL it was given.
pub(crate) fn first_callback_url(service: &TestServer) -> String {
    wait_for("the dispatch", Duration::from_secs(20), || {
        service.hits.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    let path = service.paths.lock().unwrap()[0].clone();
    path.split("callback_url=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .replace("%3A", ":")
        .replace("%2F", "/")
}

/// Waits for every task of `ids` to end; their documents, in order.
pub(crate) async fn wait_all(client: &reqwest::Client, url: &str, ids: &[String]) -> Vec<Value> {
    let mut docs = Vec::with_capacity(ids.len());
    for id in ids {
        docs.push(wait_state(client, url, id).await);
    }
    docs
}

pub(crate) async fn wait_state(client: &reqwest::Client, url: &str, id: &str) -> Value {
    wait_state_as(client, url, id, None).await
}

/// Polls a task until it ends, with a bearer token when given.
pub(crate) async fn wait_state_as(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    token: Option<&str>,
) -> Value {
    let start = Instant::now();
    loop {
        let mut req = client.get(format!("{url}/api/v1/tasks/{id}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let doc: Value = req.send().await.unwrap().json().await.unwrap();
        if matches!(
            doc["state"].as_str(),
            Some("finished" | "failed" | "cancelled")
        ) {
            return doc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "task did not end: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_task_waiting_on_a_service_survives_kill_9_of_the_server() {
    let env = Env::new();
    // The service acknowledges and remembers the callback URL; the test calls back later.
    let service = http_server(|_, _| (202, "application/json", "{\"accepted\": true}".into()));
    let port = free_port();
    let rt = rt();
    // No pooled connections: the server behind the port is killed and restarted.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let first = serve(&env, port);
    let pipeline = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: slow}}, next: [call]}}\n  - {{id: call, type: service, url: \"{}/work\", next: [end]}}\n  - {{id: end, type: end}}\n",
        service.url
    );
    let id = rt.block_on(async {
        let r = client
            .post(format!("{}/api/v1/pipelines", first.url))
            .body(pipeline)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r = client
            .post(format!("{}/api/v1/services/slow", first.url))
            .json(&json!({"n": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.json::<Value>().await.unwrap()["task_id"]
            .as_str()
            .unwrap()
            .to_string()
    });
    let callback = first_callback_url(&service);
    drop(first); // SIGKILL
    let second = serve(&env, port);
    rt.block_on(async {
        let r = client
            .post(&callback)
            .json(&json!({"answer": 42}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "a callback after the restart is accepted"
        );
        let doc = wait_state(&client, &second.url, &id).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(doc["result"], json!({"answer": 42}));
        let again = client
            .post(&callback)
            .json(&json!({"answer": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            again.status().as_u16(),
            409,
            "a duplicate callback is refused"
        );
    });
    assert_eq!(
        service.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not dispatched twice"
    );
    // The same task seen through `tasks --server`.
    let r = env.run(&["tasks", "show", &id, "--json", "--server", &second.url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["state"], "finished");
    let r = env.run(&["tasks", "list", "--json", "--server", &second.url]);
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    let r = env.run(&["tasks", "show", "nope", "--server", &second.url]);
    assert_eq!(r.code, 1);
    assert!(r.last_stderr_line().contains("404"), "{}", r.stderr);
}

/// The seed's face-blur and describe-faces pipelines with the real example services
/// (OpenCV face detection, Pillow blur/crop), when their Python environment is installed.
#[test]
fn face_blur_and_describe_faces_with_the_example_services() {
    let services = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/services");
    let python = format!("{services}/.venv/bin/python");
    if !std::path::Path::new(&python).exists() {
        eprintln!("skipped: run examples/services/setup.sh first (scripts/test.sh does)");
        return;
    }
    let env = Env::new();
    let server = serve(&env, free_port());
    let start_service = |script: &str, port: u16| {
        std::process::Command::new(&python)
            .args([
                &format!("{services}/{script}"),
                "--port",
                &port.to_string(),
                "--engine",
                &server.url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (faces_port, imaging_port) = (free_port(), free_port());
    let mut faces = start_service("faces.py", faces_port);
    let mut imaging = start_service("imaging.py", imaging_port);
    let image = env.path("face.jpg");
    let made = std::process::Command::new(&python)
        .args([
            &format!("{services}/make_test_image.py"),
            image.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(made.status.success());
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        // The pipelines call the services by name: they must have announced themselves.
        let start = Instant::now();
        loop {
            let list: Value = client
                .get(format!("{}/api/v1/registry/services", server.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if list["items"].as_array().is_some_and(|l| l.len() == 2) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no announcements"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for name in ["face-blur", "describe-faces"] {
            let yaml =
                std::fs::read_to_string(format!("{services}/pipelines/{name}.yaml")).unwrap();
            let r = client
                .post(format!("{}/api/v1/pipelines", server.url))
                .body(yaml)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201, "{name}");
        }
        let bytes = std::fs::read(&image).unwrap();
        let submit = |route: &'static str| {
            let form = reqwest::multipart::Form::new().part(
                "image",
                reqwest::multipart::Part::bytes(bytes.clone())
                    .file_name("face.jpg")
                    .mime_str("image/jpeg")
                    .unwrap(),
            );
            client
                .post(format!("{}/api/v1/services/{route}", server.url))
                .multipart(form)
                .send()
        };
        // Submits, then waits for the task to finish: (id, task document).
        let run_task = |route: &'static str| {
            let submitted = submit(route);
            let (client, url) = (&client, &server.url);
            async move {
                let body: Value = submitted.await.unwrap().json().await.unwrap();
                let id = body["task_id"].as_str().unwrap().to_string();
                let doc = wait_state(client, url, &id).await;
                assert_eq!(doc["state"], "finished", "{doc}");
                (id, doc)
            }
        };
        let (id, _) = run_task("face-blur").await;
        let result: Value = client
            .get(format!("{}/api/v1/tasks/{id}/result", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(result["blurred"], 1, "{result}");
        let blurred = client
            .get(format!(
                "{}{}",
                server.url,
                result["image"]["url"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(blurred.headers()["content-type"], "image/jpeg");
        let blurred = blurred.bytes().await.unwrap();
        assert!(blurred.len() > 1000 && blurred[..] != bytes[..]);
        let (_, doc) = run_task("describe-faces").await;
        let faces = doc["result"]["items"].as_array().unwrap();
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0]["image"]["content_type"], "image/jpeg");
        // The services announced themselves: their endpoints are pipelines too.
        let list: Value = client
            .get(format!("{}/api/v1/pipelines", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"faces-detect") && names.contains(&"imaging-blur"),
            "{names:?}"
        );
    });
    let _ = faces.kill();
    let _ = imaging.kill();
    let _ = faces.wait();
    let _ = imaging.wait();
}
