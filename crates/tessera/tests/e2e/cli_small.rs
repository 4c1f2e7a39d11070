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
