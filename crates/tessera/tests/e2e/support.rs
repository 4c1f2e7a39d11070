//! Helpers for driving the real `tessera` binary: a private data dir per test, pipeline files,
//! a small HTTP server on 127.0.0.1, and waiting for files.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    pub fn cmd(&self) -> Command {
        // `TESSERA_TEST_BIN` runs the tests against another build (a release one, for figures).
        let bin = std::env::var("TESSERA_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tessera").to_string());
        let mut c = Command::new(bin);
        c.current_dir(self.dir.path())
            .env("TESSERA_DATA_DIR", self.path("data"))
            // Short leases: a task of a process killed with -9 is free again within 0.5 s
            // (the default, 10 s, would make every kill-and-resume test wait that long).
            .env("TESSERA_LEASE", "500ms")
            .env_remove("TESSERA_CONFIG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd().args(args).output().expect("run tessera");
        Run::from(out)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera")
    }

    /// `tasks show --json` of a task.
    pub fn show(&self, task: &str) -> Value {
        let r = self.run(&["tasks", "show", task, "--json"]);
        assert_eq!(r.code, 0, "tasks show failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("show prints JSON")
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The id printed as `task <id>` on stderr.
    pub fn task_id(&self) -> String {
        task_id_in(&self.stderr).unwrap_or_else(|| panic!("no task id in stderr: {}", self.stderr))
    }

    pub fn last_stderr_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "tessera failed.\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.json()
    }
}

pub fn task_id_in(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        l.strip_prefix("task ")
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
    })
}

/// Reads a spawned child's stderr until the `task <id>` line.
pub fn read_task_id(child: &mut Child) -> String {
    let stderr = child.stderr.as_mut().expect("piped stderr");
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("read stderr") == 0 {
            panic!("tessera exited before printing its task id");
        }
        if let Some(id) = task_id_in(&line) {
            return id;
        }
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie (dead, not reaped: its parent was killed) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering with `respond(request_number, path)`;
/// counts requests. Stops with the test process.
pub struct TestServer {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    pub paths: Arc<Mutex<Vec<String>>>,
}

pub fn http_server(
    respond: impl Fn(usize, &str) -> (u16, &'static str, String) + Send + 'static,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(Mutex::new(Vec::new()));
    let (h, p) = (hits.clone(), paths.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut content_length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let n = h.fetch_add(1, Ordering::SeqCst) + 1;
            p.lock().expect("paths").push(path.clone());
            let (status, content_type, text) = respond(n, &path);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    TestServer { url, hits, paths }
}
