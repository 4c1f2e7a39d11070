//! Issue 12, the command line: `--input` checked like an HTTP submission, `objects get`,
//! `tasks result --save`, `run --server`, `tasks logs` of unknown and loop nodes, and output
//! to a closed pipe.

use serde_json::{Value, json};

use crate::server::{free_port, rt, serve_with};
use crate::support::*;

const TYPED: &str = "nodes:
  - {id: in, type: entry, api: {route: typed, body: {n: 1, name: x, tags: [a]}}, next: [touch]}
  - {id: touch, type: command, shell: true, command: 'touch ran; echo {}', next: [end]}
  - {id: end, type: end}
";

#[test]
fn input_is_checked_against_the_entry_like_the_server_does() {
    let env = Env::new();
    let p = env.write("typed.yaml", TYPED);
    let p = p.to_str().unwrap();
    let r = env.run(&[
        "run",
        p,
        "--input",
        r#"{"n": "three", "name": "a", "tags": []}"#,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.last_stderr_line(),
        "error: --input, field `n`: expected a number; nothing was run"
    );
    assert_eq!(
        r.stderr.matches("expected a number").count(),
        1,
        "said once: {}",
        r.stderr
    );
    // An input file that cannot be read is a refused input too.
    let r = env.run(&["run", p, "--input", "@nofile.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.last_stderr_line()
            .starts_with("error: --input: cannot read nofile.json: "),
        "{}",
        r.stderr
    );
    let r = env.run(&["run", p, "--input", r#"{"n": 1.5, "tags": ["a", 2]}"#]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for field in [
        "field `n`: expected an integer",
        "field `tags.1`: expected a string",
        "field `name`: missing field",
    ] {
        assert!(r.stderr.contains(field), "{field}: {}", r.stderr);
    }
    assert!(
        r.last_stderr_line().contains("and 2 more problem(s)"),
        "{}",
        r.stderr
    );
    // References only the engine makes are refused as data, naming the field.
    let r = env.run(&[
        "run",
        p,
        "--input",
        r#"{"n": 1, "name": "a", "tags": [], "x": {"$file": "/etc/passwd"}}"#,
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.last_stderr_line().contains("field `x`: $file"),
        "{}",
        r.stderr
    );
    // Nothing was run: no task, no command.
    assert!(!env.path("ran").exists());
    let list = env.run(&["tasks", "list", "--json"]).ok();
    assert_eq!(list, json!([]));
    // A file field the entry names must be given.
    let up = env.write(
        "upload.yaml",
        "nodes:\n  - {id: in, type: entry, api: {route: up, body: image}, next: [end]}\n  - {id: end, type: end}\n",
    );
    let r = env.run(&["run", up.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.last_stderr_line().contains("--file image=@PATH"),
        "{}",
        r.stderr
    );
    // A matching input runs.
    env.run(&[
        "run",
        p,
        "--input",
        r#"{"n": 7, "name": "a", "tags": ["b"], "extra": true}"#,
    ])
    .ok();
    assert!(env.path("ran").exists());

    // The server refuses the same body for the same field.
    let server = serve_with(&env, free_port(), &[], &[]);
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let r = client
            .post(format!("{}/api/v1/pipelines", server.url))
            .body(TYPED)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r = client
            .post(format!("{}/api/v1/services/typed", server.url))
            .json(&json!({"n": "three", "name": "a", "tags": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["details"],
            json!([{"field": "n", "message": "expected a number"}])
        );
    });
}

/// Two nodes each make an object named `report.txt`; the end gathers both.
const TWO_REPORTS: &str = r#"nodes:
  - {id: in, type: entry, next: [one, two]}
  - id: one
    type: command
    shell: true
    command: |
      printf first > $TESSERA_SCRATCH/report.txt
      printf '{"r": {"$file": "%s"}}' $TESSERA_SCRATCH/report.txt
    next: [end]
  - id: two
    type: command
    shell: true
    command: |
      printf second > $TESSERA_SCRATCH/report.txt
      printf '{"s": {"$file": "%s"}}' $TESSERA_SCRATCH/report.txt
    next: [end]
  - {id: end, type: end, ready: all_done, input: {first: one.out.r, second: two.out.s, again: one.out.r}}
"#;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn objects_get_and_result_save_write_files_safely() {
    let env = Env::new();
    let p = env.write("two.yaml", TWO_REPORTS);
    let r = env.run(&["run", p.to_str().unwrap()]);
    let out = r.ok();
    let task = r.task_id();
    let first = out["first"]["$object"].as_str().unwrap().to_string();

    // To stdout, to a file, into a directory (under its name, never replacing a file).
    let got = env.run(&["objects", "get", &first]);
    assert_eq!(
        (got.code, got.stdout.as_str()),
        (0, "first"),
        "{}",
        got.stderr
    );
    env.run(&["objects", "get", &first, "-o", "copy.bin"]);
    assert_eq!(
        std::fs::read_to_string(env.path("copy.bin")).unwrap(),
        "first"
    );
    std::fs::create_dir(env.path("into")).unwrap();
    std::fs::write(env.path("into/report.txt"), "keep me").unwrap();
    let r = env.run(&["objects", "get", &first, "-o", "into"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(env.path("into/report.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("into/report-2.txt")).unwrap(),
        "first"
    );
    for bad in ["../../etc/passwd", "not-an-id"] {
        let r = env.run(&["objects", "get", bad]);
        assert_eq!(r.code, 1);
        assert!(
            r.last_stderr_line().contains("expected a UUID"),
            "{}",
            r.stderr
        );
    }

    // The result's objects saved: same names made unique, an existing file kept, the same
    // object twice written once, the JSON saying where each went.
    std::fs::create_dir(env.path("saved")).unwrap();
    std::fs::write(env.path("saved/report.txt"), "keep me too").unwrap();
    let saved = env.path("saved");
    let r = env.run(&["tasks", "result", &task, "--save", saved.to_str().unwrap()]);
    let doc = r.ok();
    let path = |k: &str| {
        doc[k]["saved_to"]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {doc}"))
            .to_string()
    };
    assert_eq!(std::fs::read_to_string(path("first")).unwrap(), "first");
    assert_eq!(std::fs::read_to_string(path("second")).unwrap(), "second");
    assert_ne!(path("first"), path("second"));
    assert_eq!(path("again"), path("first"));
    assert_eq!(
        std::fs::read_to_string(saved.join("report.txt")).unwrap(),
        "keep me too"
    );
    let mut names: Vec<String> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["report-2.txt", "report-3.txt", "report.txt"]);

    // The same from a server, with hostile names from an upload.
    let server = serve_with(&env, free_port(), &[], &[]);
    let url = server.url.clone();
    let r = env.run(&[
        "objects",
        "get",
        &first,
        "--server",
        &url,
        "-o",
        "remote.bin",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(env.path("remote.bin")).unwrap(),
        "first"
    );
    let rt = rt();
    let uploaded = rt.block_on(async {
        let client = reqwest::Client::new();
        let pipeline = "nodes:\n  - {id: in, type: entry, api: {route: echo, body: [a, b, c]}, next: [end]}\n  - {id: end, type: end}\n";
        let r = client.post(format!("{url}/api/v1/pipelines")).body(pipeline).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let part = |name: &str, bytes: &'static [u8]| {
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_string())
        };
        let form = reqwest::multipart::Form::new()
            .part("a", part("../../escape.txt", b"A"))
            .part("b", part("..", b"B"))
            .part("c", part(".hidden/../x:*?.sh", b"C"));
        let r = client.post(format!("{url}/api/v1/services/echo")).multipart(form).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
        let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
        crate::server::wait_state(&client, &url, &id).await;
        id
    });
    std::fs::create_dir_all(env.path("deep/inside")).unwrap();
    let inside = env.path("deep/inside");
    let r = env.run(&[
        "tasks",
        "result",
        &uploaded,
        "--server",
        &url,
        "--save",
        inside.to_str().unwrap(),
    ]);
    let doc = r.ok();
    let a = doc["a"]["saved_to"].as_str().unwrap();
    assert_eq!(a, inside.join("escape.txt").to_str().unwrap());
    assert_eq!(std::fs::read(a).unwrap(), b"A");
    let b = doc["b"]["saved_to"].as_str().unwrap();
    assert_eq!(
        b,
        inside
            .join(doc["b"]["$object"].as_str().unwrap())
            .to_str()
            .unwrap()
    );
    let c = doc["c"]["saved_to"].as_str().unwrap();
    assert_eq!(c, inside.join("x___.sh").to_str().unwrap());
    assert!(!env.path("escape.txt").exists() && !env.path("deep/escape.txt").exists());
    assert_eq!(
        std::fs::read_dir(&inside).unwrap().count(),
        3,
        "nothing else written"
    );
    // Bytes checked against the recorded hash on the way.
    assert_eq!(doc["a"]["sha256"], sha256_hex(b"A"));
}

const LOGGED_LOOP: &str = "nodes:
  - {id: in, type: entry, api: {route: logged, body: {words: [a]}}, next: [say, each]}
  - {id: say, type: command, shell: true, command: 'echo hello', next: [end]}
  - id: each
    type: loop
    items: in.out.words
    next: [end]
    nodes:
      - {id: shout, type: command, shell: true, command: 'echo \"item {{item}}\"; echo \"{}\"'}
  - {id: end, type: end, ready: all_done}
";

#[test]
fn logs_of_unknown_and_loop_nodes() {
    let env = Env::new();
    let p = env.write("logged.yaml", LOGGED_LOOP);
    let r = env.run(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        r#"{"words": ["x", "y", "z"]}"#,
    ]);
    r.ok();
    let task = r.task_id();
    let r = env.run(&["tasks", "logs", &task, "nope"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.last_stderr_line(),
        format!(
            "error: task `{task}` has no node `nope`; its nodes: in, say, each (loop: shout; instances shout#0 … shout#2, 3), end"
        )
    );
    for node in ["each", "shout"] {
        let r = env.run(&["tasks", "logs", &task, node]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().filter(|l| l.contains("item")).collect();
        assert_eq!(
            lines,
            [
                "shout#0 [stdout#1] item x",
                "shout#1 [stdout#1] item y",
                "shout#2 [stdout#1] item z"
            ],
            "{node}: {}",
            r.stdout
        );
    }
    let r = env.run(&["tasks", "logs", &task, "shout#1"]);
    assert_eq!(
        r.stdout.lines().next(),
        Some("[stdout#1] item y"),
        "{}",
        r.stdout
    );
    let r = env.run(&["tasks", "logs", &task, "say", "--json"]);
    assert_eq!(r.ok()[0]["line"], "hello");

    let server = serve_with(&env, free_port(), &[], &[]);
    let r = env.run(&["tasks", "logs", &task, "nope", "--server", &server.url]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("its nodes: in, say, each (loop: shout;"),
        "{}",
        r.stderr
    );
    let r = env.run(&["tasks", "logs", &task, "each", "--server", &server.url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("shout#2 [stdout#1] item z"),
        "{}",
        r.stdout
    );
}

/// Output to a pipe whose reader is gone: a quiet exit, no panic.
#[test]
fn a_closed_pipe_never_makes_tessera_panic() {
    let env = Env::new();
    let lines = 30_000;
    let p = env.write(
        "chatty.yaml",
        &format!("nodes:\n  - {{id: in, type: entry, next: [talk]}}\n  - {{id: talk, type: command, shell: true, command: 'seq {lines}; echo \"{{\\\"items\\\": [$(seq -s, {lines})]}}\"', next: [end]}}\n  - {{id: end, type: end}}\n"),
    );
    let r = env.run(&["run", p.to_str().unwrap()]);
    r.ok();
    let task = r.task_id();
    let bin = env!("CARGO_BIN_EXE_tessera");
    for (what, command) in [
        ("tasks list", format!("'{bin}' tasks list | head -1")),
        (
            "tasks logs",
            format!("'{bin}' tasks logs {task} talk | head -1"),
        ),
        (
            "tasks show",
            format!("'{bin}' tasks show {task} --json | head -c1"),
        ),
        ("run", format!("'{bin}' run '{}' | head -c1", p.display())),
    ] {
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {command} 2>err.txt")])
            .current_dir(env.dir.path())
            .env("TESSERA_DATA_DIR", env.path("data"))
            .output()
            .unwrap();
        let err = std::fs::read_to_string(env.path("err.txt")).unwrap();
        assert!(
            !err.contains("panicked") && !err.contains("failed printing"),
            "{what}: {err}"
        );
        assert!(out.status.success(), "{what}: {:?} {err}", out.status);
        assert!(!out.stdout.is_empty(), "{what}: head got the first bytes");
    }
    // Deterministic: every write fails with EPIPE (the reader is closed before the start).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = env
        .cmd()
        .args(["tasks", "list"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "{:?} {err}",
        out.status
    );
}

#[test]
fn run_on_a_server_follows_the_task_like_a_local_run() {
    let env = Env::new();
    let server = serve_with(&env, free_port(), &[], &[]);
    let url = server.url.as_str();
    let p = env.write("logged.yaml", LOGGED_LOOP);
    let p = p.to_str().unwrap();
    let input = r#"{"words": ["x", "yy"]}"#;
    let local = env.run(&["run", p, "--input", input]).ok();
    let r = env.run(&["run", "--server", url, p, "--input", input]);
    assert_eq!(r.ok(), local);
    assert!(
        r.stderr
            .contains(&format!("pipeline `logged` stored on {url}")),
        "{}",
        r.stderr
    );
    let id = r.task_id();
    let rt = rt();
    let doc: Value = rt.block_on(async {
        reqwest::get(format!("{url}/api/v1/tasks/{id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(doc["state"], "finished", "the task ran on the server");

    // A failure: exit 1, the failed node and cause last, as locally.
    let failing = env.write(
        "failing.yaml",
        "nodes:\n  - {id: in, type: entry, next: [boom]}\n  - {id: boom, type: command, shell: true, command: 'echo bad >&2; exit 3', next: [end]}\n  - {id: end, type: end}\n",
    );
    let failing = failing.to_str().unwrap();
    let local = env.run(&["run", failing]);
    let remote = env.run(&["run", "--server", url, failing]);
    assert_eq!((local.code, remote.code), (1, 1), "{}", remote.stderr);
    assert_eq!(remote.last_stderr_line(), local.last_stderr_line());
    assert!(
        remote.stderr.contains("pipeline `failing` stored"),
        "named after its file"
    );

    // An input refused here: exit 2, nothing sent.
    let r = env.run(&["run", "--server", url, p, "--input", r#"{"words": "x"}"#]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("stored on"), "{}", r.stderr);

    // A file field is uploaded (streamed, multipart) with the JSON fields.
    let up = env.write(
        "up.yaml",
        "nodes:\n  - {id: in, type: entry, api: {route: up, body: doc}, next: [read]}\n  - {id: read, type: command, command: [cat, '{{doc}}'], stdin: false, next: [end]}\n  - {id: end, type: end, input: {text: read.out.stdout, tag: in.out.tag}}\n",
    );
    env.write("doc.txt", "uploaded bytes\n");
    let r = env.run(&[
        "run",
        "--server",
        url,
        up.to_str().unwrap(),
        "--file",
        "doc=@doc.txt",
        "--input",
        r#"{"tag": 7}"#,
    ]);
    assert_eq!(r.ok(), json!({"text": "uploaded bytes\n", "tag": 7}));
}

#[test]
fn run_on_a_server_that_dies_says_so_and_the_task_goes_on() {
    let env = Env::new();
    let port = free_port();
    let mut server = serve_with(&env, port, &[], &[]);
    let url = server.url.clone();
    let p = env.write(
        "slow.yaml",
        "nodes:\n  - {id: in, type: entry, next: [nap]}\n  - {id: nap, type: command, command: [sleep, '2'], next: [end]}\n  - {id: end, type: end}\n",
    );
    let mut child = env.spawn(&["run", "--server", &url, p.to_str().unwrap()]);
    let task = read_task_id(&mut child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 3, "outcome unknown: {}", r.stderr);
    let last = r.last_stderr_line();
    assert!(
        last.starts_with(&format!(
            "error: lost the connection to {url} before task {task} ended"
        )) && last.ends_with(&format!("tessera tasks show {task} --server {url}")),
        "{last}"
    );
    // Started again, the server finishes it.
    let server = serve_with(&env, port, &[], &[]);
    wait_for(
        "the task to finish",
        std::time::Duration::from_secs(30),
        || {
            let r = env.run(&["tasks", "show", &task, "--json", "--server", &server.url]);
            r.code == 0 && r.json()["state"] == "finished"
        },
    );
}
