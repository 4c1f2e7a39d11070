//! The web UI in a real headless Chromium against the real `tessera serve`: the pipeline
//! list, the face-blur graph, the run form with an image, the task page turning finished and
//! showing the blurred image, cancel and resume from the page, the engine page, signing in and
//! not seeing another user's task; and the two timings of the issue (a 2,000-node pipeline's
//! page, a 10,000-item loop's task page while it runs), printed.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::server::{free_port, rt, serve, serve_with, store_pipeline, submit_json, wait_state};
use crate::support::*;

/// The example services, started against `engine` (they announce themselves to it); killed
/// when dropped.
struct Services {
    children: Vec<Child>,
    python: String,
}

impl Drop for Services {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const SERVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/services");

fn example_services(engine: &str) -> Services {
    let python = format!("{SERVICES}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "run examples/services/setup.sh first (scripts/test.sh does)"
    );
    let children = ["faces.py", "imaging.py"]
        .iter()
        .map(|script| {
            std::process::Command::new(&python)
                .args([
                    &format!("{SERVICES}/{script}"),
                    "--port",
                    &free_port().to_string(),
                    "--engine",
                    engine,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    Services { children, python }
}

fn wait_announced(url: &str, count: usize) {
    let rt = rt();
    let client = ::reqwest::Client::new();
    let list = format!("{url}/api/v1/registry/services");
    wait_for(
        "the services' announcements",
        Duration::from_secs(30),
        || {
            let v: Value = rt.block_on(async {
                match client.get(&list).send().await {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                }
            });
            v["items"].as_array().is_some_and(|l| l.len() == count)
        },
    );
}

fn post_pipeline(url: &str, yaml: &str) {
    rt().block_on(store_pipeline(&::reqwest::Client::new(), url, yaml));
}

/// The state word the task page shows.
fn page_state(b: &Browser) -> String {
    b.execute(
        "var e = document.querySelector('#task-state .badge'); return e ? e.textContent : '';",
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn wait_page_state(b: &Browser, state: &str, timeout: Duration) {
    b.wait_until(
        &format!(
            "(document.querySelector('#task-state .badge') || {{}}).textContent === '{state}'"
        ),
        timeout,
    );
}

#[test]
fn ui_face_blur_from_the_list_to_the_blurred_image() {
    let env = Env::new();
    let server = serve(&env, free_port());
    let services = example_services(&server.url);
    wait_announced(&server.url, 2);
    post_pipeline(
        &server.url,
        &std::fs::read_to_string(format!("{SERVICES}/pipelines/face-blur.yaml")).unwrap(),
    );
    let image = env.path("face.jpg");
    let made = std::process::Command::new(&services.python)
        .args([
            &format!("{SERVICES}/make_test_image.py"),
            image.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(made.status.success());

    let b = Browser::start();
    b.goto(&format!("{}/", server.url));
    // The list: the pipeline, its route, its services available.
    let row = b.text("table.pipelines tbody tr");
    assert!(row.contains("face-blur"), "{row}");
    assert!(row.contains("POST /api/v1/services/face-blur"), "{row}");
    assert!(row.contains("available"), "{row}");
    b.click("a[href='/ui/pipelines/face-blur']");
    // The graph: left to right, each node a link to its definition.
    b.find("svg.pipeline-graph g.node[data-node='detect']");
    let (x_in, x_blur) = (
        b.execute("return document.querySelector(\"g.node[data-node='in'] .shape\").getBBox().x;"),
        b.execute(
            "return document.querySelector(\"g.node[data-node='blur'] .shape\").getBBox().x;",
        ),
    );
    assert!(
        x_in.as_f64() < x_blur.as_f64(),
        "left to right: {x_in} {x_blur}"
    );
    b.click("g.node[data-node='detect'] a");
    b.wait_until(
        "document.getElementById('node-detect').open === true",
        Duration::from_secs(5),
    );
    assert!(b.text("#node-detect").contains("faces/detect"));
    // The keyboard reaches the graph's nodes too: Tab onto one, Enter opens its definition.
    let order = b.execute(
        "var links = Array.from(document.querySelectorAll('a, button, input, textarea, summary')); \
         return links.filter(function (e) { return e.closest('g.node'); }).map(function (e) { return e.tabIndex; });",
    );
    assert!(
        order
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|i| i.as_i64() >= Some(0))),
        "graph nodes are in the tab order: {order}"
    );
    b.find("g.node[data-node='blur'] a").send_keys("\u{E007}");
    b.wait_until(
        "document.getElementById('node-blur').open === true && location.hash === '#node-blur'",
        Duration::from_secs(5),
    );
    // The form: a file picker for the image.
    b.click("a.button[href='/ui/pipelines/face-blur/run']");
    b.upload("input[type=file][name=image]", &image);
    b.submit("form.run");
    b.wait_until(
        "location.pathname.indexOf('/ui/tasks/') === 0",
        Duration::from_secs(10),
    );
    let task = b.current_url().rsplit('/').next().unwrap().to_string();
    // The page follows the task live, then reloads for its result.
    wait_page_state(&b, "finished", Duration::from_secs(60));
    b.wait_until(
        "(function () { var i = document.querySelector('figure.object img'); return !!i && i.complete && i.naturalWidth > 0; })()",
        Duration::from_secs(10),
    );
    for node in ["in", "detect", "blur", "end"] {
        let state = b
            .find(&format!("g.node[data-node='{node}']"))
            .attr("data-state");
        assert_eq!(state.as_deref(), Some("finished"), "{node}");
    }
    assert!(b.text("table.nodes").contains("detect"));
    let shot = b.dir().join("task.png");
    b.screenshot(&shot);
    // The image shown is the task's result object.
    let src = b.find("figure.object img").attr("src").unwrap();
    assert!(src.starts_with("/api/v1/objects/"), "{src}");
    let doc = rt().block_on(wait_state(&::reqwest::Client::new(), &server.url, &task));
    assert_eq!(doc["state"], "finished");
}

#[test]
fn ui_cancel_a_running_task_and_resume_a_failed_one() {
    let env = Env::new();
    let server = serve(&env, free_port());
    let gate = env.path("open");
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, api: {{route: gated, body: {{label: x}}}}, next: [work]}}\n  \
         - {{id: work, type: command, shell: true, command: \"test -f {} && echo '{{}}'\", next: [end]}}\n  \
         - {{id: end, type: end}}\n",
        gate.display()
    );
    post_pipeline(&server.url, &yaml);
    post_pipeline(
        &server.url,
        "nodes:\n  - {id: in, type: entry, api: {route: slow}, next: [nap]}\n  - {id: nap, type: command, command: [sleep, \"60\"], next: [end]}\n  - {id: end, type: end}\n",
    );
    let b = Browser::start();
    // Cancel: a running task, from its page.
    b.goto(&format!("{}/ui/pipelines/slow/run", server.url));
    b.submit("form.run");
    wait_page_state(&b, "running", Duration::from_secs(10));
    b.click("form[action$='/cancel'] button");
    wait_page_state(&b, "cancelled", Duration::from_secs(15));
    // Resume: a failed task, once what it needed is there.
    b.goto(&format!("{}/ui/pipelines/gated/run", server.url));
    b.type_into("input[name='f.label']", "y");
    b.submit("form.run");
    wait_page_state(&b, "failed", Duration::from_secs(15));
    assert!(
        b.text("#task-error").contains("work"),
        "the error names the node"
    );
    std::fs::write(&gate, "").unwrap();
    b.click("form[action$='/resume'] button");
    wait_page_state(&b, "finished", Duration::from_secs(15));
    let attempts = b.text("tr[data-key='work'] .attempts");
    assert!(attempts.starts_with('2'), "{attempts}");
}

#[test]
fn ui_engine_page_sign_in_and_another_users_task() {
    let env = Env::new();
    let (admin, u1, u2) = (
        "admin:root:admin-secret-0123456789",
        "user:u1:user1-secret-0123456789",
        "user:u2:user2-secret-0123456789",
    );
    let tokens = format!("{admin},{u1},{u2}");
    let server = serve_with(&env, free_port(), &[], &[("TESSERA_TOKENS", &tokens)]);
    let client = ::reqwest::Client::new();
    let secret = |t: &str| t.rsplit(':').next().unwrap().to_string();
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: hello, body: {name: x}}, next: [end]}\n  - {id: end, type: end}\n";
    let theirs = rt().block_on(async {
        let r = client
            .post(format!("{}/api/v1/pipelines", server.url))
            .bearer_auth(secret(admin))
            .body(yaml)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r: Value = client
            .post(format!("{}/api/v1/services/hello", server.url))
            .bearer_auth(secret(u2))
            .json(&json!({"name": "theirs"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["task_id"].as_str().unwrap().to_string()
    });
    let b = Browser::start();
    b.goto(&format!("{}/ui/engine", server.url));
    // Sent to the sign-in form; back to the engine page once signed in.
    b.find("input[type=password][name=token]");
    b.type_into("input[name=token]", &secret(u1));
    b.submit("form.login");
    b.wait_until(
        "location.pathname === '/ui/engine'",
        Duration::from_secs(10),
    );
    assert!(b.text("header.top").contains("u1 (user)"));
    b.find("dd[data-total='finished']");
    b.find("#workers");
    // The cookie is not readable by scripts.
    let visible = b.execute("return document.cookie;");
    assert!(
        !visible.as_str().unwrap_or("").contains("tessera_token"),
        "{visible}"
    );
    // u1 starts its own task from the form, and cannot open u2's.
    b.goto(&format!("{}/ui/pipelines/hello/run", server.url));
    b.submit("form.run");
    wait_page_state(&b, "finished", Duration::from_secs(15));
    b.goto(&format!("{}/ui/tasks/{theirs}", server.url));
    let body = b.text("main");
    assert!(body.contains("not found"), "{body}");
    assert!(!body.contains("theirs"));
}

/// `n` nodes: an entry, `n - 2` nodes in parallel, an end.
fn wide_pipeline(n: usize) -> String {
    let mut y =
        String::from("nodes:\n  - id: in\n    type: entry\n    api: {route: wide}\n    next: [");
    y.push_str(
        &(0..n - 2)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    y.push_str("]\n");
    for i in 0..n - 2 {
        y.push_str(&format!("  - {{id: n{i}, type: node, next: [end]}}\n"));
    }
    y.push_str("  - {id: end, type: end}\n");
    y
}

/// The page's main thread stays free: the longest gap between 50 ms timers over `ms`.
fn longest_stall(b: &Browser, ms: u64) -> f64 {
    b.execute(&format!(
        "window.__lag = 0; var last = performance.now(); var t = setInterval(function () {{ \
           var now = performance.now(); window.__lag = Math.max(window.__lag, now - last - 50); last = now; }}, 50); \
         setTimeout(function () {{ clearInterval(t); window.__lagDone = true; }}, {ms}); return 0;"
    ));
    b.wait_until(
        "window.__lagDone === true",
        Duration::from_millis(ms + 5_000),
    );
    b.execute("return window.__lag;")
        .as_f64()
        .unwrap_or(f64::MAX)
}

#[test]
fn ui_big_pages_stay_fast_figures() {
    let env = Env::new();
    let server = serve(&env, free_port());
    post_pipeline(&server.url, &wide_pipeline(2_000));
    let b = Browser::start();
    // A 2,000-node pipeline's page: loaded, then a node selected.
    b.goto(&format!("{}/ui/pipelines/wide", server.url));
    let t = b.navigation_timing();
    let nodes = b.execute("return document.querySelectorAll('g.node').length;");
    assert_eq!(nodes, json!(2_000));
    let started = Instant::now();
    b.click("g.node[data-node='n1500'] a");
    b.wait_until(
        "document.getElementById('node-n1500').open === true",
        Duration::from_secs(10),
    );
    let click_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "ui figure: 2,000-node pipeline page: DOM interactive {:.0} ms, loaded {:.0} ms; a node's definition opened {:.0} ms after its click (WebDriver round trips included)",
        t.dom_interactive_ms, t.load_event_end_ms, click_ms
    );
    // A 10,000-item loop's task page while the loop runs (a branch per item: a command of 1 s;
    // the loop is still running when the server stops at the end of the test).
    post_pipeline(
        &server.url,
        "nodes:\n  - {id: in, type: entry, api: {route: many, body: {xs: [1]}}, next: [each]}\n  \
         - id: each\n    type: loop\n    items: in.out.xs\n    next: [end]\n    nodes:\n      \
         - {id: c, type: command, command: [sleep, \"1\"]}\n  - {id: end, type: end}\n",
    );
    let xs: Vec<u64> = (0..10_000).collect();
    let id = rt().block_on(submit_json(
        &::reqwest::Client::new(),
        &server.url,
        "many",
        &json!({ "xs": xs }),
    ));
    b.goto(&format!("{}/ui/tasks/{id}", server.url));
    let t = b.navigation_timing();
    let state = page_state(&b);
    let dom = b.execute("return document.getElementsByTagName('*').length;");
    // Count the snapshots that arrive meanwhile (a second follower of the same stream).
    b.execute(&format!(
        "window.__snaps = 0; var s = new EventSource('/ui/tasks/{id}/live'); \
         s.addEventListener('state', function () {{ window.__snaps += 1; }}); return 0;"
    ));
    let stall = longest_stall(&b, 3_000);
    let snapshots = b.execute("return window.__snaps;");
    let progress = b.text(".loop .loop-text");
    println!(
        "ui figure: 10,000-item loop task page ({state}): DOM interactive {:.0} ms, loaded {:.0} ms, {dom} elements; \
         longest main-thread stall over 3 s of live updates ({snapshots} snapshots received) {stall:.0} ms; progress then: {progress}",
        t.dom_interactive_ms, t.load_event_end_ms
    );
    assert!(
        dom.as_u64().unwrap() < 5_000,
        "the page never holds the loop's instances: {dom}"
    );
}

#[test]
fn ui_raster_tile_map_fills_while_the_job_runs() {
    let env = Env::new();
    let server = serve(&env, free_port());
    let input = env.path("big.tif");
    let made = std::process::Command::new("gdal_create")
        .args([
            "-outsize", "8192", "8192", "-bands", "1", "-ot", "Float32", "-burn", "1",
        ])
        .args(["-co", "TILED=YES", input.to_str().unwrap()])
        .output()
        .expect("gdal_create (gdal-bin, installed by scripts/test-env/system-packages.sh)");
    assert!(made.status.success(), "{made:?}");
    let output = env.path("out.tif");
    post_pipeline(
        &server.url,
        &format!(
            "nodes:\n  - {{id: in, type: entry, api: {{route: dbl}}, next: [calc]}}\n  \
             - {{id: calc, type: raster, inputs: {{a: {}}}, expr: \"sqrt(a * 2 + a * a) / (a + 1)\", \
             output: {}, tile: 128, threads: 1, next: [end]}}\n  - {{id: end, type: end}}\n",
            input.display(),
            output.display()
        ),
    );
    // The browser starts first and the page opens as soon as the task exists: the map is
    // seen filling even when the job is quick (Chromium's start-up took longer than the job
    // on a loaded machine).
    let b = Browser::start();
    let client = ::reqwest::Client::new();
    let id = rt().block_on(submit_json(&client, &server.url, "dbl", &json!({})));
    b.goto(&format!("{}/ui/tasks/{id}", server.url));
    // Drawn by the page's script once the raster node runs and its first tile comes.
    b.wait_until(
        "document.querySelector('svg.tile-map rect')",
        Duration::from_secs(30),
    );
    let cells = b.find_all("svg.tile-map rect").len();
    assert_eq!(
        cells,
        32 * 32,
        "one cell per computation tile (32 × 32 of 256 px: no cache)"
    );
    let done = "document.querySelectorAll('svg.tile-map rect.t-delivered, svg.tile-map rect.t-cached').length";
    let first = b.execute(&format!("return {done};")).as_u64().unwrap();
    // Live: 20 more tiles turn done without a reload; a machine fast enough to finish the
    // computations before the page loaded leaves only "all done" to see.
    let target = (first + 20).min(32 * 32);
    b.wait_until(&format!("{done} >= {target}"), Duration::from_secs(30));
    let text = b.text(".raster .raster-text");
    assert!(text.contains("of 1,024 tiles done"), "{text}");
    // At the end the page says what the tiles were.
    wait_page_state(&b, "finished", Duration::from_secs(60));
    b.goto(&format!("{}/ui/tasks/{id}", server.url));
    let text = b.text(".raster .raster-text");
    assert!(text.contains("8192 × 8192 pixels"), "{text}");
}
