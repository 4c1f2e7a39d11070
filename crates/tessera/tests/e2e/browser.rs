//! A headless browser for end-to-end tests of web pages: Debian's `chromedriver` and `chromium`
//! driven over the W3C WebDriver protocol, with blocking helpers like the rest of these tests.
//!
//! Why an in-repo client over the workspace's `reqwest` rather than the `thirtyfour` crate
//! (0.38, no default features, `reqwest` + `component`): thirtyfour reuses reqwest 0.13 and
//! hyper 1 (`cargo tree -d` gains no duplicate), but it adds 13 crates (thirtyfour and its
//! macros, const_format, konst, pastey, serde_repr, stringmatch, arc-swap, regex, aho-corasick,
//! ...; ~22 s of compile time summed over crates on this 2-core machine), and it turns on full
//! `regex` in regex-automata/regex-syntax and `sync` in tokio-stream. Those feature changes
//! rebuild regex-automata, tracing-subscriber, sqlx-core, sqlx-postgres (~40 s more) and every
//! workspace crate above sqlx; and since dev-dependency features only apply to test builds,
//! `cargo build` and `cargo test` would stop sharing all of that. This client adds no crate and
//! no feature: the few endpoints below are all the tests need.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::server::{free_port, rt};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key of a web element reference in the W3C protocol.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const POLL: Duration = Duration::from_millis(50);

/// A WebDriver error answer (`{"value": {"error", "message"}}`) or a transport failure.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// One HTTP request to chromedriver; the `value` of its answer.
fn request(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, WdError> {
    rt.block_on(async {
        let mut req = http.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let transport = |e: reqwest::Error| WdError {
            error: "transport".into(),
            message: e.to_string(),
        };
        let response = req.send().await.map_err(transport)?;
        let ok = response.status().is_success();
        let doc: Value = response.json().await.map_err(transport)?;
        let value = doc.get("value").cloned().unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown error").into(),
                message: value["message"].as_str().unwrap_or("").into(),
            })
        }
    })
}

/// The chromedriver process, in its own process group with the Chromium it starts: dropping it
/// kills the whole group.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        // Chromium's processes were children of chromedriver, not of this process: wait (a
        // little) until the kernel has taken them down, so the profile dir can be removed.
        let start = Instant::now();
        while group_alive(pgid.as_raw()) && start.elapsed() < Duration::from_secs(5) {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a live (not zombie) process is in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2
                && fields[0] != "Z"
                && fields[0] != "X"
                && fields[2].parse() == Ok(pgid)
        })
}

/// A headless Chromium with its own chromedriver, profile and session. Dropping it ends the
/// session and kills chromedriver and every Chromium process (one process group).
pub struct Browser {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    /// How long `find`, `click` and the other waiting helpers wait.
    pub wait: Duration,
    // Dropped in this order, after `Browser::drop`: the processes, then their files.
    _driver: Driver,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    /// Panics, naming the script that installs them, when chromedriver or Chromium is missing.
    pub fn start() -> Browser {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(program).is_file(),
                "{program} is missing: the browser tests need Debian's chromium and \
                 chromium-driver; run `bash scripts/test-env/system-packages.sh` (as root)"
            );
        }
        let rt = rt();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("HTTP client");
        let dir = tempfile::Builder::new()
            .prefix("tessera-browser.")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("chromedriver.log");
        // A port free a moment ago may be taken before chromedriver binds it: try a few.
        let mut attempt = 0;
        let (driver, base) = loop {
            attempt += 1;
            let port = free_port();
            let out = std::fs::File::create(&log).expect("chromedriver log");
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                // Its own process group, which the Chromium it starts joins: killed as one.
                .process_group(0)
                .stdin(Stdio::null())
                .stderr(out.try_clone().expect("chromedriver log"))
                .stdout(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            let mut driver = Driver { child };
            let base = format!("http://127.0.0.1:{port}");
            if wait_ready(&rt, &http, &base, &mut driver) {
                break (driver, base);
            }
            drop(driver);
            assert!(
                attempt < 3,
                "chromedriver did not start (3 tries):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let profile = dir.path().join("profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 30_000},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let url = format!("{base}/session");
        let session = request(&rt, &http, reqwest::Method::POST, &url, Some(&capabilities))
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            rt,
            http,
            session: format!("{url}/{id}"),
            wait: Duration::from_secs(10),
            _driver: driver,
            dir,
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.session);
        request(&self.rt, &self.http, method, &url, body.as_ref())
    }

    fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Opens `url` and waits until it has loaded.
    pub fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub fn current_url(&self) -> String {
        self.get("/url").as_str().unwrap_or_default().to_string()
    }

    /// The first element matching the CSS selector, waiting up to `self.wait` for one; panics
    /// naming the selector and the page when there is none.
    pub fn find(&self, css: &str) -> Element<'_> {
        self.try_find(css)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// `find` without the panic: the message it would panic with.
    pub fn try_find(&self, css: &str) -> Result<Element<'_>, String> {
        let start = Instant::now();
        loop {
            match self.call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            ) {
                Ok(v) => return Ok(self.element(&v, css)),
                Err(e) if e.error == "no such element" && start.elapsed() < self.wait => {
                    std::thread::sleep(POLL)
                }
                Err(e) if e.error == "no such element" => {
                    return Err(format!(
                        "no element matches `{css}` on {} after {:?}",
                        self.current_url(),
                        self.wait
                    ));
                }
                Err(e) => return Err(format!("finding `{css}` on {}: {e}", self.current_url())),
            }
        }
    }

    /// Every element matching the CSS selector now (maybe none: no waiting).
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.post("/elements", json!({"using": "css selector", "value": css}));
        found
            .as_array()
            .map(|all| all.iter().map(|v| self.element(v, css)).collect())
            .unwrap_or_default()
    }

    fn element(&self, reference: &Value, css: &str) -> Element<'_> {
        Element {
            browser: self,
            id: reference[ELEMENT_KEY]
                .as_str()
                .expect("an element reference")
                .to_string(),
            css: css.to_string(),
        }
    }

    /// The rendered text of the first element matching `css` (waiting for it).
    pub fn text(&self, css: &str) -> String {
        self.find(css).text()
    }

    /// Clicks the first element matching `css`, waiting for it to exist and to take clicks.
    pub fn click(&self, css: &str) {
        let start = Instant::now();
        loop {
            match self.find(css).try_click() {
                Ok(()) => return,
                Err(e) if transient(&e) && start.elapsed() < self.wait => std::thread::sleep(POLL),
                Err(e) => panic!("clicking `{css}` on {}: {e}", self.current_url()),
            }
        }
    }

    /// Types `text` into the element matching `css`, after what it holds (see `Element::clear`).
    pub fn type_into(&self, css: &str, text: &str) {
        self.find(css).send_keys(text);
    }

    /// Chooses the file at `path` in the file input matching `css`.
    pub fn upload(&self, css: &str, path: &Path) {
        let absolute: PathBuf = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("upload: {}: {e}", path.display()));
        self.find(css)
            .send_keys(absolute.to_str().expect("a UTF-8 path"));
    }

    /// Submits the form matching `css`, or the form of the field matching `css`, as the submit
    /// button would (`requestSubmit`: validation and submit handlers run).
    pub fn submit(&self, css: &str) {
        let el = self.find(css);
        self.execute_with(
            "const el = arguments[0];
             const form = el instanceof HTMLFormElement ? el : (el.form || el.closest('form'));
             if (!form) throw new Error('not a form and not in one');
             form.requestSubmit();",
            vec![el.reference()],
        );
    }

    /// Runs `js` as the body of a function in the page; what it `return`s.
    pub fn execute(&self, js: &str) -> Value {
        self.execute_with(js, Vec::new())
    }

    fn execute_with(&self, js: &str, args: Vec<Value>) -> Value {
        self.try_execute(js, args)
            .unwrap_or_else(|e| panic!("script failed on {}: {e}\n{js}", self.current_url()))
    }

    fn try_execute(&self, js: &str, args: Vec<Value>) -> Result<Value, WdError> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": args})),
        )
    }

    /// Waits until the JavaScript expression `condition` is truthy. A script error counts as
    /// "not yet" (the page may still be building what it reads); the last one is reported.
    pub fn wait_until(&self, condition: &str, timeout: Duration) {
        let script = format!("return !!({condition});");
        let start = Instant::now();
        let mut last_error = None;
        loop {
            match self.try_execute(&script, Vec::new()) {
                Ok(Value::Bool(true)) => return,
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
            if start.elapsed() >= timeout {
                let error = last_error.map(|e| format!(" (last error: {e})"));
                panic!(
                    "`{condition}` still false on {} after {timeout:?}{}",
                    self.current_url(),
                    error.unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.get("/screenshot");
        let png = base64_decode(data.as_str().expect("screenshot data"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("screenshot: {}: {e}", path.display()));
    }

    /// Sets the size of the window (the outer size, as with `--window-size`).
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}));
    }

    /// The cookies visible to the current page.
    pub fn cookies(&self) -> Vec<Cookie> {
        serde_json::from_value(self.get("/cookie")).expect("cookies")
    }

    /// Adds a cookie for the current page's domain (a page must be open).
    pub fn add_cookie(&self, cookie: &Cookie) {
        self.post("/cookie", json!({ "cookie": cookie }));
    }

    /// Times of the current page's load from the Navigation Timing API, waiting for the load
    /// event to have finished.
    pub fn navigation_timing(&self) -> NavigationTiming {
        let entry = "performance.getEntriesByType('navigation')[0]";
        self.wait_until(&format!("{entry} && {entry}.loadEventEnd > 0"), self.wait);
        let times = self.execute(&format!(
            "const e = {entry}; return [e.domInteractive, e.loadEventEnd];"
        ));
        NavigationTiming {
            dom_interactive_ms: times[0].as_f64().expect("domInteractive"),
            load_event_end_ms: times[1].as_f64().expect("loadEventEnd"),
        }
    }

    /// Milliseconds from the start of the current page's navigation to the end of its load
    /// event (`loadEventEnd`; see `navigation_timing` for `domInteractive` too).
    pub fn navigation_ms(&self) -> f64 {
        self.navigation_timing().load_event_end_ms
    }

    /// This browser's scratch directory (removed with it): for screenshots and uploads.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session lets Chromium stop cleanly; `Driver` then kills what is left.
        let (http, session) = (&self.http, &self.session);
        let quit = async { http.delete(session).send().await };
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(3), quit).await });
    }
}

/// Errors worth retrying a click after: the element is there but not ready for it yet.
fn transient(e: &WdError) -> bool {
    matches!(
        e.error.as_str(),
        "element not interactable" | "element click intercepted" | "stale element reference"
    )
}

/// An element of the page, found by `Browser::find` or `Browser::find_all`.
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    css: String,
}

impl Element<'_> {
    fn call(
        &self,
        method: reqwest::Method,
        what: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        self.browser
            .call(method, &format!("/element/{}{what}", self.id), body)
    }

    fn expect(&self, r: Result<Value, WdError>, what: &str) -> Value {
        r.unwrap_or_else(|e| {
            panic!(
                "{what} `{}` on {}: {e}",
                self.css,
                self.browser.current_url()
            )
        })
    }

    /// The element as a script argument.
    fn reference(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Its rendered text.
    pub fn text(&self) -> String {
        let r = self.call(reqwest::Method::GET, "/text", None);
        self.expect(r, "text of")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn try_click(&self) -> Result<(), WdError> {
        self.call(reqwest::Method::POST, "/click", Some(json!({})))
            .map(|_| ())
    }

    pub fn click(&self) {
        let r = self.try_click().map(|()| Value::Null);
        self.expect(r, "clicking");
    }

    /// Types `text` as keystrokes.
    pub fn send_keys(&self, text: &str) {
        let r = self.call(reqwest::Method::POST, "/value", Some(json!({"text": text})));
        self.expect(r, "typing into");
    }

    /// Empties a text field.
    pub fn clear(&self) {
        let r = self.call(reqwest::Method::POST, "/clear", Some(json!({})));
        self.expect(r, "clearing");
    }

    /// An HTML attribute, as written in the page.
    pub fn attr(&self, name: &str) -> Option<String> {
        let r = self.call(reqwest::Method::GET, &format!("/attribute/{name}"), None);
        self.expect(r, "reading an attribute of")
            .as_str()
            .map(str::to_string)
    }

    /// A DOM property, as scripts see it now (`value` of a field, `checked`, ...).
    pub fn prop(&self, name: &str) -> Value {
        let r = self.call(reqwest::Method::GET, &format!("/property/{name}"), None);
        self.expect(r, "reading a property of")
    }
}

/// A cookie as WebDriver shows it (`expiry` in seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

impl Cookie {
    pub fn new(name: &str, value: &str) -> Cookie {
        Cookie {
            name: name.into(),
            value: value.into(),
            path: None,
            domain: None,
            secure: None,
            http_only: None,
            expiry: None,
            same_site: None,
        }
    }
}

/// `performance.getEntriesByType('navigation')[0]`: milliseconds since the navigation started.
#[derive(Debug, Clone, Copy)]
pub struct NavigationTiming {
    pub dom_interactive_ms: f64,
    pub load_event_end_ms: f64,
}

/// Waits for chromedriver's `/status` to say it is ready; false if it exited (a port taken).
fn wait_ready(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    base: &str,
    driver: &mut Driver,
) -> bool {
    let start = Instant::now();
    let status = format!("{base}/status");
    loop {
        if let Ok(v) = request(rt, http, reqwest::Method::GET, &status, None)
            && v["ready"] == true
        {
            return true;
        }
        if driver.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver on {base} not ready after 20 s"
        );
        std::thread::sleep(POLL);
    }
}

/// Standard base64 (what WebDriver sends screenshots in).
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' => continue,
            _ => panic!("not base64: byte {c}"),
        };
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Harness</title></head>
<body style="margin:0;background:#fff">
<h1 id="title">Tessera browser harness</h1>
<form id="form" action="/submitted" method="get">
  <input id="name" name="name" value="">
  <input id="file" name="file" type="file">
  <button id="greet" type="button">Greet</button>
</form>
<ul><li class="item">one</li><li class="item">two</li><li class="item">three</li></ul>
<div id="out"></div>
<script>
  document.getElementById('greet').addEventListener('click', () => {
    // Later, like an answer from a server: `find` has to wait for it.
    setTimeout(() => {
      const p = document.createElement('p');
      p.id = 'greeting';
      p.textContent = 'Hello, ' + document.getElementById('name').value + '!';
      document.getElementById('out').appendChild(p);
    }, 150);
  });
</script>
</body></html>"#;

/// A minimal web server on 127.0.0.1: the page above at `/`, a thank-you page at
/// `/submitted?...`. One thread per connection (Chromium may hold idle ones open).
fn page_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(n) if n > 0 && !header.trim().is_empty() => {}
                        _ => break,
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/" => ("200 OK", PAGE.to_string()),
                    p if p.starts_with("/submitted?") => (
                        "200 OK",
                        "<!doctype html><title>Sent</title><p id=\"done\">Thank you</p>".into(),
                    ),
                    _ => ("404 Not Found", "not here".into()),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    url
}

/// Width and height of a PNG, from its IHDR chunk; panics unless `png` starts like a PNG.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn browser_smoke_loads_a_page_and_runs_script() {
    let started = Instant::now();
    let url = page_server();
    let mut browser = Browser::start();
    browser.goto(&format!("{url}/"));
    assert_eq!(browser.current_url(), format!("{url}/"));
    assert_eq!(browser.text("h1#title"), "Tessera browser harness");
    let items: Vec<String> = browser
        .find_all("li.item")
        .iter()
        .map(|e| e.text())
        .collect();
    assert_eq!(items, ["one", "two", "three"]);
    assert!(browser.find_all(".nothing").is_empty());

    // Typing, clicking, and a page that answers a moment later.
    let name = browser.find("#name");
    name.click();
    name.send_keys("someone");
    name.clear();
    browser.type_into("#name", "Ada");
    assert_eq!(name.prop("value"), "Ada");
    assert_eq!(name.attr("name").as_deref(), Some("name"));
    browser.click("#greet");
    assert_eq!(browser.text("#greeting"), "Hello, Ada!");
    browser.wait_until(
        "document.querySelectorAll('#out p').length === 1",
        Duration::from_secs(5),
    );
    assert_eq!(browser.execute("return 6 * 7;"), json!(42));
    assert_eq!(browser.execute("return document.title;"), json!("Harness"));

    // A file input takes a path.
    let file = browser.dir().join("notes.txt");
    std::fs::write(&file, "twelve bytes").unwrap();
    browser.upload("#file", &file);
    let chosen = browser
        .execute("const f = document.getElementById('file').files[0]; return [f.name, f.size];");
    assert_eq!(chosen, json!(["notes.txt", 12]));

    // Navigation timing of the loaded page.
    let timing = browser.navigation_timing();
    assert!(
        timing.dom_interactive_ms > 0.0 && timing.dom_interactive_ms <= timing.load_event_end_ms,
        "{timing:?}"
    );
    assert!(browser.navigation_ms() >= timing.dom_interactive_ms);

    // Cookies.
    browser.add_cookie(&Cookie::new("flavour", "oat"));
    let cookies = browser.cookies();
    let flavour = cookies
        .iter()
        .find(|c| c.name == "flavour")
        .expect("cookie");
    assert_eq!(flavour.value, "oat");
    assert_eq!(
        browser.execute("return document.cookie;"),
        json!("flavour=oat")
    );

    // Window size and a screenshot of the viewport.
    browser.set_window_size(1024, 700);
    let viewport = browser.execute("return [window.innerWidth, window.innerHeight];");
    let shot = browser.dir().join("page.png");
    browser.screenshot(&shot);
    let (w, h) = png_size(&std::fs::read(&shot).unwrap());
    assert_eq!(json!([w, h]), viewport, "the screenshot is the viewport");
    assert!(w <= 1024 && h <= 700 && w > 0 && h > 0, "{w}x{h}");

    // Submitting the form navigates.
    browser.submit("#name");
    assert_eq!(browser.text("#done"), "Thank you");
    assert!(
        browser
            .current_url()
            .starts_with(&format!("{url}/submitted?name=Ada")),
        "{}",
        browser.current_url()
    );

    // A missing element: a clear failure, within `wait`.
    browser.wait = Duration::from_millis(300);
    let missing = Instant::now();
    let message = browser
        .try_find("#missing")
        .err()
        .expect("no element matches #missing");
    assert!(missing.elapsed() < Duration::from_secs(3));
    assert!(
        message.starts_with("no element matches `#missing` on http://127.0.0.1:")
            && message.contains("/submitted?name=Ada"),
        "{message}"
    );
    eprintln!("browser smoke test took {:?}", started.elapsed());
}
