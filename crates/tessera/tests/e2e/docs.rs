//! The examples of `docs/pipelines.md`, run by the real binary: each ```yaml block that starts
//! with `# example: NAME` runs in a fresh data dir, and what it prints must be what the page
//! says. A failure names the example and its line.
//!
//! Directives, comment lines at the top of an example:
//! - `# input: JSON` — `--input` (for `# resume:`, the new input of the resume);
//! - `# args: ARGS` — more arguments (`NAME=@PATH` paths are relative to the repository);
//! - `# env: NAME=VALUE` — a variable of Tessera's own environment (repeatable);
//! - `# check: result | error | invalid | finishes` — what the next fenced block holds: the
//!   JSON printed on stdout (default), the last stderr line of a failed run (exit 1), the
//!   problems of an invalid pipeline (exit 2), or nothing (exit 0 is enough);
//! - `# runs: N` — run N times in the same data dir, the last run is compared;
//! - `# resume: NAME` — this file is the fix of example NAME: `tessera resume <its task>
//!   --pipeline THIS`, in NAME's data dir;
//! - `# run: serve` — through `tessera serve`: the pipeline is stored, the input submitted to
//!   its route, the task's result (or error) compared.
//!
//! `$SERVER` (in inputs, arguments and expected texts) is the URL of [`DocServer`], started for
//! each example that names it. In an expected JSON, the string `"..."` matches any value; in an
//! expected text, `...` matches any run of characters.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::server::{free_port, rt, serve_with, wait_state};
use crate::support::*;

const PAGE: &str = "docs/pipelines.md";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Result,
    Error,
    Invalid,
    Finishes,
}

#[derive(Debug, Clone)]
struct Example {
    name: String,
    /// Line of the ```yaml fence in the page.
    line: usize,
    yaml: String,
    input: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    check: Check,
    runs: usize,
    resume: Option<String>,
    serve: bool,
    /// The fenced block after the example (its result, error or problems).
    expected: Option<String>,
}

impl Example {
    fn label(&self) -> String {
        format!("example `{}` ({PAGE} line {})", self.name, self.line)
    }

    fn uses_server(&self) -> bool {
        let texts = [self.input.as_deref(), self.expected.as_deref()];
        texts.iter().flatten().any(|t| t.contains("$SERVER"))
            || self.args.iter().any(|a| a.contains("$SERVER"))
            || self.env.iter().any(|(_, v)| v.contains("$SERVER"))
    }
}

/// A fenced block: its language, first line number and text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in page.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_string(),
                    line: i + 1,
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => out.push(open.take().expect("open block")),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// Every example of the page, in order; malformed ones are errors.
fn examples(page: &str) -> Result<Vec<Example>, String> {
    let blocks = blocks(page);
    let mut out: Vec<Example> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let Some(name) = b
            .text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# example:"))
        else {
            continue;
        };
        if b.lang != "yaml" {
            return Err(format!(
                "line {}: an example must be a ```yaml block",
                b.line
            ));
        }
        let mut ex = Example {
            name: name.trim().to_string(),
            line: b.line,
            yaml: b.text.clone(),
            input: None,
            args: Vec::new(),
            env: Vec::new(),
            check: Check::Result,
            runs: 1,
            resume: None,
            serve: false,
            expected: None,
        };
        for line in b.text.lines().skip(1) {
            let Some((key, value)) = line
                .strip_prefix("# ")
                .and_then(|l| l.split_once(": "))
                .map(|(k, v)| (k, v.trim()))
            else {
                break;
            };
            match key {
                "input" => ex.input = Some(value.to_string()),
                "args" => ex.args = value.split_whitespace().map(str::to_string).collect(),
                "env" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("{}: `# env:` needs NAME=VALUE", ex.label()))?;
                    ex.env.push((k.to_string(), v.to_string()));
                }
                "check" => {
                    ex.check = match value {
                        "result" => Check::Result,
                        "error" => Check::Error,
                        "invalid" => Check::Invalid,
                        "finishes" => Check::Finishes,
                        other => return Err(format!("{}: unknown check `{other}`", ex.label())),
                    }
                }
                "runs" => {
                    ex.runs =
                        value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            format!("{}: `# runs:` needs a number from 1", ex.label())
                        })?
                }
                "resume" => ex.resume = Some(value.to_string()),
                "run" if value == "serve" => ex.serve = true,
                _ => break,
            }
        }
        if ex.check != Check::Finishes {
            let next = blocks
                .get(i + 1)
                .ok_or_else(|| format!("{} has no result block after it", ex.label()))?;
            let lang = if ex.check == Check::Result {
                "json"
            } else {
                "text"
            };
            if next.lang != lang {
                return Err(format!(
                    "{}: the block after it (line {}) must be ```{lang}, not ```{}",
                    ex.label(),
                    next.line,
                    next.lang
                ));
            }
            ex.expected = Some(next.text.clone());
        }
        if out.iter().any(|e| e.name == ex.name) {
            return Err(format!("{}: the name is used twice", ex.label()));
        }
        if let Some(first) = &ex.resume
            && !out.iter().any(|e| &e.name == first)
        {
            return Err(format!(
                "{}: resumes `{first}`, which is not an earlier example",
                ex.label()
            ));
        }
        out.push(ex);
    }
    Ok(out)
}

/// `expected` with `"..."` standing for any value.
fn json_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(s), _) if s == "..." => true,
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| json_matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| json_matches(x, y))
        }
        _ => expected == actual,
    }
}

/// `expected` with `...` standing for any run of characters.
fn text_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// What ran: the data dir and the task, for a later `# resume:`.
struct Ran {
    env: Arc<Env>,
    task: Option<String>,
}

struct Runner {
    root: PathBuf,
    ran: HashMap<String, Ran>,
}

impl Runner {
    fn run(&mut self, ex: &Example) -> Result<(), String> {
        let server = ex.uses_server().then(DocServer::start);
        let subst = |text: &str| match &server {
            Some(s) => text.replace("$SERVER", &s.url),
            None => text.to_string(),
        };
        let env = match &ex.resume {
            Some(first) => self.ran[first].env.clone(),
            None => Arc::new(Env::new()),
        };
        let file = env.write(&format!("{}.yaml", ex.name), &ex.yaml);
        let file = file.to_str().expect("utf-8 path").to_string();
        let input = ex.input.as_deref().map(subst);
        let expected = ex.expected.as_deref().map(subst);
        if ex.serve {
            let outcome = self.serve(&env, &ex.yaml, input.as_deref(), ex)?;
            self.ran.insert(ex.name.clone(), Ran { env, task: None });
            return compare(ex, expected.as_deref(), outcome);
        }
        let mut args: Vec<String> = match &ex.resume {
            Some(first) => {
                let task = self.ran[first]
                    .task
                    .clone()
                    .ok_or_else(|| format!("{}: `{first}` left no task to resume", ex.label()))?;
                vec!["resume".into(), task, "--pipeline".into(), file]
            }
            None => vec!["run".into(), file],
        };
        if let Some(i) = &input {
            args.extend(["--input".to_string(), i.clone()]);
        }
        for a in &ex.args {
            let a = subst(a);
            // `--file dem=@crates/…`: relative to the repository.
            args.push(match a.split_once("=@") {
                Some((name, path)) if !Path::new(path).is_absolute() => {
                    format!("{name}=@{}", self.root.join(path).display())
                }
                _ => a,
            });
        }
        let mut run = None;
        for _ in 0..ex.runs {
            let mut cmd = env.cmd();
            for (k, v) in &ex.env {
                cmd.env(k, subst(v));
            }
            let out = cmd.args(&args).output().expect("run tessera");
            run = Some(Run::from(out));
        }
        let run = run.expect("at least one run");
        let task = match &ex.resume {
            Some(first) => self.ran[first].task.clone(),
            None => task_id_in(&run.stderr),
        };
        self.ran.insert(ex.name.clone(), Ran { env, task });
        compare(ex, expected.as_deref(), Outcome::Cli(run))
    }

    /// Stores the pipeline in a `tessera serve`, submits the input to its route, waits.
    fn serve(
        &self,
        env: &Env,
        yaml: &str,
        input: Option<&str>,
        ex: &Example,
    ) -> Result<Outcome, String> {
        let serve = serve_with(env, free_port(), &[], &[]);
        let rt = rt();
        let client = reqwest::Client::new();
        rt.block_on(async {
            let created: Value = client
                .post(format!("{}/api/v1/pipelines", serve.url))
                .header("Content-Type", "application/yaml")
                .body(yaml.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let route = created["name"]
                .as_str()
                .ok_or_else(|| format!("{}: the pipeline was refused: {created}", ex.label()))?;
            let submitted: Value = client
                .post(format!("{}/api/v1/services/{route}", serve.url))
                .header("Content-Type", "application/json")
                .body(input.unwrap_or("{}").to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let id = submitted["task_id"]
                .as_str()
                .ok_or_else(|| format!("{}: not submitted: {submitted}", ex.label()))?;
            let doc = wait_state(&client, &serve.url, id).await;
            Ok(Outcome::Served(doc))
        })
    }
}

enum Outcome {
    Cli(Run),
    /// The task document of a task run by `tessera serve`.
    Served(Value),
}

fn compare(ex: &Example, expected: Option<&str>, outcome: Outcome) -> Result<(), String> {
    let fail = |what: String| Err(format!("{}: {what}", ex.label()));
    let (code, stdout, stderr, result) = match outcome {
        Outcome::Cli(r) => {
            let result = serde_json::from_str::<Value>(&r.stdout).ok();
            (r.code, r.stdout, r.stderr, result)
        }
        Outcome::Served(doc) => {
            let code = match doc["state"].as_str() {
                Some("finished") => 0,
                _ => 1,
            };
            let error = doc["error"].as_str().unwrap_or_default().to_string();
            (
                code,
                doc["result"].to_string(),
                error,
                Some(doc["result"].clone()),
            )
        }
    };
    let last_line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let wanted_code = match ex.check {
        Check::Result | Check::Finishes => 0,
        Check::Error => 1,
        Check::Invalid => 2,
    };
    if code != wanted_code {
        return fail(format!(
            "exit code {code}, expected {wanted_code}\nstdout: {stdout}\nstderr: {stderr}"
        ));
    }
    match ex.check {
        Check::Finishes => Ok(()),
        Check::Result => {
            let text = expected.unwrap_or_default();
            let want: Value = serde_json::from_str(text)
                .map_err(|e| format!("{}: its result block is not JSON: {e}", ex.label()))?;
            match result {
                Some(got) if json_matches(&want, &got) => Ok(()),
                Some(got) => fail(format!(
                    "printed\n{}\nbut the page says\n{}",
                    serde_json::to_string_pretty(&got).unwrap_or_default(),
                    text.trim()
                )),
                None => fail(format!("stdout is not JSON: {stdout}\nstderr: {stderr}")),
            }
        }
        Check::Error => {
            let want = expected.unwrap_or_default().trim();
            let got = last_line.strip_prefix("error: ").unwrap_or(&last_line);
            let want = want.strip_prefix("error: ").unwrap_or(want);
            if text_matches(want, got) {
                Ok(())
            } else {
                fail(format!("failed with\n{got}\nbut the page says\n{want}"))
            }
        }
        Check::Invalid => {
            let got: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("  "))
                .map(str::trim)
                .collect();
            let want: Vec<&str> = expected
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let same =
                got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| text_matches(w, g));
            if same {
                Ok(())
            } else {
                fail(format!(
                    "reported\n{}\nbut the page says\n{}",
                    got.join("\n"),
                    want.join("\n")
                ))
            }
        }
    }
}

fn page() -> String {
    std::fs::read_to_string(repo_root().join(PAGE)).expect("read docs/pipelines.md")
}

#[test]
fn every_example_of_the_pipelines_page_prints_what_the_page_says() {
    let examples = examples(&page()).unwrap_or_else(|e| panic!("{e}"));
    let mut runner = Runner {
        root: repo_root(),
        ran: HashMap::new(),
    };
    let mut failures = Vec::new();
    for ex in &examples {
        if let Err(e) = runner.run(ex) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples differ from {PAGE}:\n\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_page_has_examples_for_every_node_type() {
    let examples = examples(&page()).unwrap_or_else(|e| panic!("{e}"));
    assert!(examples.len() >= 20, "{} examples", examples.len());
    for kind in [
        "entry", "end", "node", "command", "http", "service", "branch", "loop", "batch", "raster",
    ] {
        let needle = format!("type: {kind}");
        assert!(
            examples.iter().any(|e| e.yaml.contains(&needle)),
            "no example has a `{kind}` node"
        );
    }
}

#[test]
fn the_example_checker_catches_differences() {
    let page = "```yaml\n# example: a\n# input: {\"x\": 1}\n# check: error\nnodes: []\n```\n\n```text\nnode `x` failed ... boom\n```\n\n```yaml\n# example: b\n# resume: a\nnodes: []\n```\n\n```json\n{\"id\": \"...\", \"n\": 2}\n```\n";
    let ex = examples(page).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].check, Check::Error);
    assert_eq!(ex[0].input.as_deref(), Some("{\"x\": 1}"));
    assert_eq!(ex[1].resume.as_deref(), Some("a"));
    let want: Value = serde_json::from_str(ex[1].expected.as_deref().unwrap()).unwrap();
    assert!(json_matches(&want, &json!({"id": "x-1", "n": 2})));
    assert!(!json_matches(&want, &json!({"id": "x-1", "n": 3})));
    assert!(!json_matches(
        &want,
        &json!({"id": "x-1", "n": 2, "more": 1})
    ));
    assert!(text_matches(
        "node `x` failed ... boom",
        "node `x` failed (attempt 1): boom"
    ));
    assert!(!text_matches(
        "node `x` failed ... boom",
        "node `x` failed: bang"
    ));
    assert!(text_matches("a...b...c", "a1b2c"));
    assert!(!text_matches("a...b...c", "a1c2b"));
    // A result block that is missing, or of the wrong kind, is an error, as is a resume of
    // an unknown example.
    assert!(examples("```yaml\n# example: c\nnodes: []\n```\n").is_err());
    assert!(examples("```yaml\n# example: c\nnodes: []\n```\n```text\nx\n```\n").is_err());
    assert!(
        examples("```yaml\n# example: d\n# resume: zz\nnodes: []\n```\n```json\n{}\n```\n")
            .is_err()
    );
}

/// Links of README.md and of the pages under docs/ that name files lead to files inside the
/// repository.
#[test]
fn readme_and_docs_links_stay_inside_the_repository() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut bad = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("read page");
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                let after = &rest[at + 2..];
                let end = after.find(')').unwrap_or(after.len());
                let target = after[..end].split('#').next().unwrap_or("").trim();
                rest = &after[end..];
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let resolved = page.parent().expect("page dir").join(target);
                let inside = resolved.canonicalize().is_ok_and(|p| p.starts_with(&root));
                if !inside {
                    bad.push(format!(
                        "{}:{}: `{target}` is not a file of the repository",
                        page.display(),
                        n + 1
                    ));
                }
            }
        }
        let names_spec = text.match_indices("SPEC").any(|(at, _)| {
            !text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        });
        if text.contains("../shared") || names_spec {
            bad.push(format!(
                "{} mentions ../shared or a SPEC file",
                page.display()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The server the `$SERVER` examples call: `/echo` answers what it received, `/status/N`
/// answers status N, `/flaky/N` answers 503 N times then its call count, `/text` plain text,
/// `/words` is a service that counts the words of `text` and calls back.
struct DocServer {
    url: String,
}

impl DocServer {
    fn start() -> DocServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let hits = hits.clone();
                std::thread::spawn(move || serve_one(stream, &hits));
            }
        });
        DocServer { url }
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Request {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
    })
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_one(mut stream: TcpStream, hits: &Mutex<HashMap<String, usize>>) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let n = {
        let mut hits = hits.lock().expect("hits");
        let n = hits.entry(req.path.clone()).or_default();
        *n += 1;
        *n
    };
    let json_body = serde_json::from_slice::<Value>(&req.body).ok();
    let (status, content_type, text) = match req.path.as_str() {
        p if p.starts_with("/echo") => {
            let query: Map<String, Value> = req
                .query
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let headers: Map<String, Value> = req
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("x-") || k == "tessera-node")
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let answer = json!({
                "method": req.method,
                "path": req.path,
                "query": query,
                "headers": headers,
                "body": json_body,
            });
            (200, "application/json", answer.to_string())
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
            let answer = json!({"error": format!("status {code}")});
            (code, "application/json", answer.to_string())
        }
        p if p.starts_with("/flaky/") => {
            let failures: usize = p["/flaky/".len()..].parse().unwrap_or(1);
            if n <= failures {
                (503, "text/plain", "busy".to_string())
            } else {
                (200, "application/json", json!({"calls": n}).to_string())
            }
        }
        "/text" => (200, "text/plain", "hello\n".to_string()),
        "/words" => {
            let callback = req
                .query
                .iter()
                .find(|(k, _)| k == "callback_url")
                .map(|(_, v)| v.clone());
            match callback {
                Some(url) => {
                    let text = json_body
                        .as_ref()
                        .and_then(|b| b["text"].as_str())
                        .unwrap_or("")
                        .to_string();
                    let result = json!({"words": text.split_whitespace().count()});
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(50));
                        call_back(&url, &result);
                    });
                    (
                        202,
                        "application/json",
                        json!({"accepted": true}).to_string(),
                    )
                }
                None => (
                    400,
                    "application/json",
                    json!({"error": "no callback_url"}).to_string(),
                ),
            }
        }
        _ => (404, "text/plain", "not found".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// POSTs a service's result to its callback URL (`http://host:port/path`).
fn call_back(url: &str, result: &Value) {
    let rest = url.strip_prefix("http://").expect("an http callback URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let body = result.to_string();
    let mut stream = TcpStream::connect(host).expect("connect to the callback URL");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the callback");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the callback was refused: {answer}"
    );
}
