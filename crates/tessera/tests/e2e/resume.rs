//! Resuming with the fix: a changed definition or input re-runs what changed and what follows,
//! a batch input fixed after its committed part goes on from the failed chunk (seed 004), a
//! `skip` added on resume is used, two runs cannot write one batch output, and `--ephemeral`
//! runs do not suggest `resume`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const CHAIN: &str = r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - id: a
    type: command
    shell: true
    command: "echo run >> a.count; echo '{\"x\": 1}'"
    next: [b]
  - id: b
    type: command
    shell: true
    command: "echo run >> b.count; B_COMMAND"
    next: [c]
  - id: c
    type: command
    shell: true
    command: "echo run >> c.count; echo '{\"done\": {{in.out.tag}}}'"
    next: [end]
  - {id: end, type: end}
"#;

fn chain(b_command: &str) -> String {
    CHAIN.replace("B_COMMAND", b_command)
}

#[test]
fn resume_with_a_fixed_pipeline_reruns_the_changed_node_and_what_follows() {
    let env = Env::new();
    let broken = env.write("broken.yaml", &chain("exit 3"));
    let r = env.run(&["run", broken.to_str().unwrap(), "--input", r#"{"tag": 1}"#]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("--pipeline FILE to resume with a fixed pipeline"),
        "{}",
        r.stderr
    );
    let task = r.task_id();
    let fixed = env.write("fixed.yaml", &chain(r#"echo '{\"y\": 2}'"#));
    let r = env.run(&["resume", &task, "--pipeline", fixed.to_str().unwrap()]);
    assert_eq!(r.ok(), json!({"done": 1}));
    assert_eq!(count_lines(&env.path("a.count")), 1, "`a` did not change");
    assert_eq!(count_lines(&env.path("b.count")), 2);
    assert_eq!(count_lines(&env.path("c.count")), 1);
    // The task keeps the definition it first ran with.
    let doc = env.show(&task);
    let revisions = doc["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0]["revision"], 1);
    let first_b = revisions[0]["definition"]["nodes"][2]["command"]
        .as_str()
        .unwrap();
    assert!(first_b.ends_with("exit 3"), "{first_b}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(revisions[0]["replaced_at"].as_str().unwrap()).is_ok(),
        "{}",
        revisions[0]
    );
    let text = env.run(&["tasks", "show", &task]).stdout;
    assert!(text.contains("revision  1 replaced at "), "{text}");

    // A change upstream re-runs everything after it, even nodes that had finished.
    let env = Env::new();
    let r = env.run(&[
        "run",
        env.write("p.yaml", &chain("exit 3")).to_str().unwrap(),
        "--input",
        r#"{"tag": 1}"#,
    ]);
    let task = r.task_id();
    let changed_a = chain(r#"echo '{\"y\": 2}'"#).replace("{\\\"x\\\": 1}", "{\\\"x\\\": 9}");
    assert_ne!(changed_a, chain(r#"echo '{\"y\": 2}'"#));
    let p2 = env.write("p2.yaml", &changed_a);
    let r = env.run(&["resume", &task, "--pipeline", p2.to_str().unwrap()]);
    assert_eq!(r.ok(), json!({"done": 1}));
    assert_eq!(count_lines(&env.path("a.count")), 2);
    assert_eq!(count_lines(&env.path("b.count")), 2);

    // A new input: what reads it runs again.
    let env = Env::new();
    let p = env.write("p.yaml", &chain("exit 3"));
    let task = env
        .run(&["run", p.to_str().unwrap(), "--input", r#"{"tag": 1}"#])
        .task_id();
    let fixed = env.write("fixed.yaml", &chain(r#"echo '{\"y\": 2}'"#));
    let r = env.run(&[
        "resume",
        &task,
        "--pipeline",
        fixed.to_str().unwrap(),
        "--input",
        r#"{"tag": 5}"#,
    ]);
    assert_eq!(r.ok(), json!({"done": 5}));
    assert_eq!(count_lines(&env.path("a.count")), 2);
    let doc = env.show(&task);
    assert_eq!(doc["input"], json!({"tag": 5}));
    assert_eq!(doc["revisions"][0]["input"], json!({"tag": 1}));

    // An invalid fix is refused before anything runs.
    let bad = env.write("bad.yaml", "nodes:\n  - {id: in, type: entry}\n");
    let r = env.run(&["resume", &task, "--pipeline", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("the task was not resumed"),
        "{}",
        r.stderr
    );
}

/// 200,000 patronymes; `bad_line` (a physical line number, header = 1) gets a count that is
/// not a number.
fn patronymes_with_a_bad_line(env: &Env, bad_line: usize) -> (std::path::PathBuf, String) {
    let path = env.path("in.csv");
    let r = env.run(&[
        "sample",
        "patronymes",
        "--rows",
        "200000",
        "--seed",
        "4",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let good = lines[bad_line - 1].clone();
    let name = good.split(',').next().unwrap().to_string();
    lines[bad_line - 1] = format!("{name},not-a-number");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, good)
}

fn replace_line(path: &std::path::Path, number: usize, with: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[number - 1] = with;
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

const DOUBLE: &str = r#"
nodes:
  - {id: in, type: entry, next: [job]}
  - id: job
    type: batch
    reader: {format: csv, path: in.csv}
    processor:
      columns: {double: "parse_int(row.count) * 2"}
    writer: {format: csv, path: OUT}
    chunk_size: 10000
    parallelism: 2
    SKIP
    next: [end]
  - {id: end, type: end}
"#;

fn double(out: &str, skip: &str) -> String {
    DOUBLE.replace("OUT", out).replace("SKIP", skip)
}

fn batch_logs(env: &Env, task: &str) -> String {
    env.run(&["tasks", "logs", task, "job"]).stdout
}

#[test]
fn seed_004_a_fixed_bad_line_resumes_from_the_failed_chunk_byte_identical() {
    let env = Env::new();
    let (input, good) = patronymes_with_a_bad_line(&env, 150_001);
    let p = env.write("p.yaml", &double("out.csv", ""));
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line().contains("line 150001 of"),
        "{}",
        r.stderr
    );
    let task = r.task_id();
    let before = env.show(&task)["batches"][0]["chunks"].clone();
    // The user edits that line (its length changes, and so the file's size and mtime).
    let name = good.split(',').next().unwrap();
    replace_line(&input, 150_001, &format!("{name},123456789"));
    let r = env.run(&["resume", &task]);
    r.ok();
    let logs = batch_logs(&env, &task);
    assert!(
        logs.contains("changed after its 14 committed chunk(s)")
            && logs.contains("resuming: 14 of 20 chunks already committed"),
        "{logs}"
    );
    // The committed chunks ran once (their records are as they were); only the failed one and
    // the rest ran again.
    let doc = env.show(&task);
    let chunks = doc["batches"][0]["chunks"].as_array().expect("chunks");
    assert_eq!(chunks.len(), 20);
    assert_eq!(chunks[..14], before.as_array().unwrap()[..14]);
    assert_eq!(doc["batches"][0]["starts"], 2);
    // A clean run on the fixed file gives the same bytes.
    let clean = env.write("clean.yaml", &double("clean.csv", ""));
    env.run(&["run", clean.to_str().unwrap()]).ok();
    let (resumed, fresh) = (
        std::fs::read(env.path("out.csv")).unwrap(),
        std::fs::read(env.path("clean.csv")).unwrap(),
    );
    assert!(
        resumed == fresh,
        "the resumed output differs from a clean run"
    );
    assert_eq!(count_lines(&env.path("out.csv")), 200_001);
}

#[test]
fn a_skip_added_on_resume_is_used() {
    let env = Env::new();
    patronymes_with_a_bad_line(&env, 150_001);
    let p = env.write("p.yaml", &double("out.csv", ""));
    let task = env.run(&["run", p.to_str().unwrap()]).task_id();
    let with_skip = env.write("skip.yaml", &double("out.csv", "skip: {limit: 5}"));
    let r = env.run(&["resume", &task, "--pipeline", with_skip.to_str().unwrap()]);
    let out = r.ok();
    assert_eq!(out["skipped"], 1, "{out}");
    assert_eq!(out["written"], 199_999);
    let logs = batch_logs(&env, &task);
    assert!(
        logs.contains("resuming: 14 of 20 chunks already committed"),
        "committed chunks are kept: {logs}"
    );
    assert_eq!(count_lines(&env.path("out.csv")), 200_000);
}

#[test]
fn two_runs_cannot_write_one_batch_output() {
    let env = Env::new();
    let mut text = String::from("n\n");
    for i in 0..40 {
        text.push_str(&format!("{i}\n"));
    }
    env.write("in.csv", &text);
    let p = env.write(
        "slow.yaml",
        "nodes:\n  - {id: in, type: entry, next: [job]}\n  - id: job\n    type: batch\n    reader: {format: csv, path: in.csv}\n    processor: {command: [sh, -c, 'sleep 0.3; cat']}\n    writer: {format: csv, path: shared.csv}\n    chunk_size: 5\n    parallelism: 1\n    next: [end]\n  - {id: end, type: end}\n",
    );
    let mut first = env.spawn(&["run", p.to_str().unwrap()]);
    let first_task = read_task_id(&mut first);
    wait_for("the first run's lock", Duration::from_secs(20), || {
        env.path(".shared.csv.tessera-lock").exists()
    });
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let last = r.last_stderr_line();
    assert!(
        last.contains("shared.csv is being written by task")
            && last.contains(&first_task)
            && last.contains("node `job`"),
        "{last}"
    );
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run is not disturbed");
    assert_eq!(count_lines(&env.path("shared.csv")), 41);
    assert!(
        !env.path(".shared.csv.tessera-lock").exists(),
        "the lock goes with its run"
    );
}

#[test]
fn ephemeral_failures_do_not_suggest_resume() {
    let env = Env::new();
    let p = env.write("p.yaml", &chain("exit 3"));
    let r = env.run(&[
        "run",
        "--ephemeral",
        p.to_str().unwrap(),
        "--input",
        r#"{"tag": 1}"#,
    ]);
    assert_eq!(r.code, 1);
    assert!(!r.stderr.contains("tessera resume"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was kept"), "{}", r.stderr);
}

#[test]
fn the_api_resumes_with_a_fixed_definition_and_input() {
    use crate::server::{free_port, rt, serve_with, store_pipeline, submit_json, wait_state};
    let env = Env::new();
    let server = serve_with(&env, free_port(), &[], &[]);
    let runtime = rt();
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let dir = env.dir.path().display().to_string();
    let pipeline = |b: &str| {
        r#"name: chain
nodes:
  - {id: in, type: entry, api: {route: chain}, next: [a]}
  - id: a
    type: command
    shell: true
    command: |
      echo run >> DIR/a.count; echo '{"x": 1}'
    next: [b]
  - id: b
    type: command
    shell: true
    command: |
      BODY
    next: [end]
  - {id: end, type: end}
"#
        .replace("DIR", &dir)
        .replace("BODY", b)
    };
    runtime.block_on(async {
        store_pipeline(&client, &url, &pipeline("exit 3")).await;
        let id = submit_json(&client, &url, "chain", &json!({"tag": 1})).await;
        assert_eq!(wait_state(&client, &url, &id).await["state"], "failed");
        // A fix that does not validate: 422, and the task stays as it was.
        let r = client
            .post(format!("{url}/api/v1/tasks/{id}/resume"))
            .json(&json!({"pipeline": "nodes: []"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let fixed = pipeline(r#"printf '{"seen": %s}' {{in.out.tag}}"#);
        let r = client
            .post(format!("{url}/api/v1/tasks/{id}/resume"))
            .json(&json!({"pipeline": fixed, "input": {"tag": 7}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let doc = wait_state(&client, &url, &id).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(doc["result"], json!({"seen": 7}));
        assert_eq!(doc["revisions"][0]["input"], json!({"tag": 1}));
    });
    // The input changed, so `a` (after the entry) ran again.
    assert_eq!(count_lines(&env.path("a.count")), 2);
}

#[test]
fn the_api_checks_a_resumes_new_input_against_the_stored_entry() {
    use crate::server::{free_port, rt, serve_with, store_pipeline, submit_json, wait_state};
    let env = Env::new();
    let server = serve_with(&env, free_port(), &[], &[]);
    let runtime = rt();
    let client = reqwest::Client::new();
    let url = server.url.clone();
    runtime.block_on(async {
        let pipeline = r#"name: typed
nodes:
  - {id: in, type: entry, api: {route: typed, body: {x: 5}}, next: [a]}
  - {id: a, type: command, command: [sh, -c, "exit 3"], next: [end]}
  - {id: end, type: end}
"#;
        store_pipeline(&client, &url, pipeline).await;
        let id = submit_json(&client, &url, "typed", &json!({"x": 1})).await;
        assert_eq!(wait_state(&client, &url, &id).await["state"], "failed");
        // Without a new definition, the input is checked against the task's own entry.
        let r = client
            .post(format!("{url}/api/v1/tasks/{id}/resume"))
            .json(&json!({"input": {"x": "str"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "as a submission with that input");
        let text = r.text().await.unwrap();
        assert!(text.contains("x") && text.contains("number"), "{text}");
        let doc: Value = client
            .get(format!("{url}/api/v1/tasks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["state"], "failed", "refused: nothing resumed");
        assert!(doc.get("revisions").is_none(), "{doc}");
    });
}
