//! The server under test: started in-process on 127.0.0.1 (ephemeral port) with a real SQLite
//! file and object store, and a real HTTP client with request helpers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_server::{Limits, RunningServer, ServerConfig, Tokens};
use tessera_store::{Durability, Objects, SqliteStore};

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub server: RunningServer,
    pub http: reqwest::Client,
}

pub async fn start_with(tokens: &[&str], limits: Limits) -> Fixture {
    start_with_store(tokens, limits).await.0
}

/// A server with these connection limits.
pub async fn start_with_connections(connections: tessera_server::ConnectionLimits) -> Fixture {
    start_configured(&[], Limits::default(), connections)
        .await
        .0
}

/// A server and its store (to reach it directly, e.g. to cap its size).
pub async fn start_with_store(tokens: &[&str], limits: Limits) -> (Fixture, Arc<SqliteStore>) {
    start_configured(tokens, limits, Default::default()).await
}

async fn start_configured(
    tokens: &[&str],
    limits: Limits,
    connections: tessera_server::ConnectionLimits,
) -> (Fixture, Arc<SqliteStore>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), Durability::Full).unwrap());
    let kept = store.clone();
    let objects = Objects::local(&dir.path().join("store")).unwrap();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        tokens: Tokens::parse(&tokens.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
        insecure: false,
        public_info: false,
        connections,
        limits,
        engine: tessera_engine::EngineConfig::new(dir.path().join("work")),
    };
    let server = tessera_server::start(config, store, objects).await.unwrap();
    let fixture = Fixture {
        _dir: dir,
        server,
        http: reqwest::Client::new(),
    };
    (fixture, kept)
}

pub async fn start() -> Fixture {
    start_with(&[], Limits::default()).await
}

impl Fixture {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    pub async fn post_yaml(&self, yaml: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/api/v1/pipelines"))
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn submit(&self, route: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/services/{route}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// POST without a body.
    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.http.post(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http.delete(self.url(path)).send().await.unwrap()
    }

    /// Starts a task with a multipart body; asserts 202 and returns the task id.
    pub async fn submit_form(&self, route: &str, form: reqwest::multipart::Form) -> String {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/services/{route}")))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.json::<Value>().await.unwrap()["task_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls a task until it ends.
    pub async fn wait_task(&self, id: &str) -> Value {
        let start = Instant::now();
        loop {
            let (_, doc) = self.get(&format!("/api/v1/tasks/{id}")).await;
            if matches!(
                doc["state"].as_str(),
                Some("finished" | "failed" | "cancelled")
            ) {
                return doc;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "task {id} did not end: {doc}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub const ADMIN: &str = "admin:root:admin-secret-0123456789";
pub const USER: &str = "user:u1:user1-secret-0123456789";

pub fn secret(token: &str) -> &str {
    token.rsplit(':').next().unwrap()
}

impl Fixture {
    pub async fn post_yaml_as(&self, token: &str, yaml: &str) -> u16 {
        self.http
            .post(self.url("/api/v1/pipelines"))
            .bearer_auth(secret(token))
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn submit_as(&self, token: &str, route: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/services/{route}")))
            .bearer_auth(secret(token))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(secret(token))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Submits as `token` and waits for the task's end: its document.
    pub async fn run_as(&self, token: &str, route: &str, body: &Value) -> Value {
        let (status, r) = self.submit_as(token, route, body).await;
        assert_eq!(status, 202, "{r}");
        let id = r["task_id"].as_str().unwrap().to_string();
        let start = std::time::Instant::now();
        loop {
            let (_, doc) = self.get_as(token, &format!("/api/v1/tasks/{id}")).await;
            if matches!(
                doc["state"].as_str(),
                Some("finished" | "failed" | "cancelled")
            ) {
                return doc;
            }
            assert!(
                start.elapsed().as_secs() < 30,
                "task {id} did not end: {doc}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

pub async fn with_tokens() -> Fixture {
    start_with(&[ADMIN, USER], Limits::default()).await
}

/// Tests that measure the process's memory, and tests that use a lot of it, take turns: they
/// share one process.
pub async fn memory_turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// A field of this process's `/proc/self/status`, in kB (`VmRSS`, `VmHWM`).
pub fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap())
        })
        .unwrap()
}
