//! End-to-end tests: the real `tessera` binary, real processes, real SQLite files, a real HTTP
//! server on 127.0.0.1, kill -9 and resume.

mod batch;
mod browser;
mod cli_small;
mod cluster;
mod docs;
mod engine_small;
mod events;
mod hardening;
pub(crate) mod leases;
mod loops;
mod nested;
mod pipelines;
mod raster;
mod resume;
mod schedules;
mod server;
mod server_small;
mod services_cli;
mod support;
mod ui_browser;

use std::time::Duration;

use serde_json::json;
use support::*;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/pipelines");

fn example(name: &str) -> String {
    format!("{EXAMPLES}/{name}")
}

#[test]
fn example_branch_loop_counts_up() {
    let env = Env::new();
    let r = env.run(&[
        "run",
        &example("branch-loop.yaml"),
        "--input",
        r#"{"n": 5}"#,
    ]);
    let out = r.ok();
    assert_eq!(out["count"], 5);
    assert_eq!(out["trail"], json!([1, 2, 3, 4, 5]));
    let doc = env.show(&r.task_id());
    let step_runs = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "step")
        .count();
    assert_eq!(step_runs, 5, "each iteration is kept in the history");
}

#[test]
fn example_word_lengths_loops_in_order() {
    let env = Env::new();
    let out = env.run(&["run", &example("word-lengths.yaml")]).ok();
    let words: Vec<(String, u64)> = out["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["word"].as_str().unwrap().to_string(),
                w["length"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(words[0], ("Éloïse".to_string(), 6));
    assert_eq!(words[2], ("Ängström".to_string(), 8));
    assert_eq!(words.len(), 6);
    assert_eq!(out["total_length"], 35);
}

#[test]
fn example_command_chain_passes_a_file_as_an_object() {
    let env = Env::new();
    let out = env
        .run(&[
            "run",
            &example("command-chain.yaml"),
            "--input",
            r#"{"lines": 42}"#,
        ])
        .ok();
    assert_eq!(out["lines"], 42);
    let report = &out["report"];
    assert_eq!(report["name"], "report.txt");
    assert_eq!(
        report["size"],
        (1..=42)
            .map(|i: u32| format!("line {i}\n").len())
            .sum::<usize>()
    );
    let id = report["$object"].as_str().unwrap();
    let stored = std::fs::read_to_string(env.path("data").join("store/objects").join(id)).unwrap();
    assert!(stored.starts_with("line 1\nline 2\n"));
}

#[test]
fn example_http_call_reads_a_local_service() {
    let server = http_server(|_, path| {
        if path.starts_with("/greeting.json") {
            (
                200,
                "application/json",
                r#"{"message": "Bonjour depuis Tessera", "language": "fr"}"#.into(),
            )
        } else {
            (404, "text/plain", "no".into())
        }
    });
    let env = Env::new();
    let input = json!({"base_url": server.url}).to_string();
    let out = env
        .run(&["run", &example("http-call.yaml"), "--input", &input])
        .ok();
    assert_eq!(
        out,
        json!({"message": "Bonjour depuis Tessera", "language": "fr"})
    );
    let paths = server.paths.lock().unwrap().clone();
    assert_eq!(
        paths,
        vec![format!(
            "/greeting.json?base_url={}",
            urlencode(&server.url)
        )]
    );
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

#[test]
fn http_node_retries_5xx_and_fails_at_once_on_404() {
    let server = http_server(|n, path| match path {
        p if p.starts_with("/flaky") && n == 1 => (503, "text/plain", "busy".into()),
        p if p.starts_with("/flaky") => (200, "application/json", r#"{"ok": true}"#.into()),
        _ => (404, "text/plain", "nothing here".into()),
    });
    let env = Env::new();
    let pipeline = |path: &str| {
        format!(
            "nodes:\n  - {{id: in, type: entry, next: [call]}}\n  - id: call\n    type: http\n    url: \"{}{path}\"\n    verb: POST\n    retry: {{attempts: 3, backoff: 50ms}}\n    next: [end]\n  - {{id: end, type: end}}\n",
            server.url
        )
    };
    let p = env.write("flaky.yaml", &pipeline("/flaky"));
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.ok(), json!({"ok": true}));
    assert_eq!(server.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    let p = env.write("missing.yaml", &pipeline("/missing"));
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(
        server.hits.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "a 404 is not retried"
    );
    let last = r.last_stderr_line();
    assert!(
        last.contains("node `call` failed (attempt 1)") && last.contains("404"),
        "{last}"
    );
}

#[test]
fn validate_reports_every_problem_and_run_refuses() {
    let env = Env::new();
    let p = env.write(
        "bad.yaml",
        "nodes:\n  - {id: in, type: entry, next: [a, ghost]}\n  - {id: a, type: node, next: [end], before: \"let = ;\", colour: red}\n  - {id: end, type: end}\n",
    );
    let r = env.run(&["validate", p.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("node `in`, field `next[1]`: unknown node id `ghost`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("node `a`, field `colour`"));
    assert!(r.stderr.contains("node `a`, field `before`: syntax error"));
    let r = env.run(&["validate", p.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 3);
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.last_stderr_line()
            .contains("3 problem(s); nothing was run")
    );
    assert!(
        !env.path("data").join("tessera.db").exists()
            || env.run(&["tasks", "list", "--json"]).stdout.trim() == "[]"
    );
    let r = env.run(&["validate", &example("word-lengths.yaml")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn graph_draws_dot_and_svg() {
    let env = Env::new();
    let dot = env.run(&["graph", &example("branch-loop.yaml"), "--format", "dot"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph"));
    assert!(dot.stdout.contains("\"check\" -> \"step\""));
    let svg = env.run(&["graph", &example("word-lengths.yaml"), "--format", "svg"]);
    assert!(svg.stdout.trim_start().starts_with("<svg"));
    assert!(svg.stdout.contains("measure"));
}

#[test]
fn bad_input_json_and_unknown_tasks_are_clear_errors() {
    let env = Env::new();
    let r = env.run(&["run", &example("branch-loop.yaml"), "--input", "{n: 3"]);
    assert_eq!(r.code, 2, "an input problem, like an invalid pipeline");
    assert!(
        r.last_stderr_line().contains("--input is not valid JSON"),
        "{}",
        r.stderr
    );
    let r = env.run(&["resume", "00000000-0000-4000-8000-000000000000"]);
    assert_eq!(r.code, 1);
    assert!(r.last_stderr_line().contains("not found"), "{}", r.stderr);
    let ok = env.run(&["run", &example("branch-loop.yaml")]);
    let r = env.run(&["resume", &ok.task_id()]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("cannot be resumed: it finished successfully")
    );
}

#[test]
fn failing_command_then_resume_reruns_only_what_failed() {
    let env = Env::new();
    let p = env.write(
        "fix.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [prepare]}
  - id: prepare
    type: command
    shell: true
    command: "echo run >> {{counter}}; echo '{\"prepared\": true}'"
    next: [check]
  - id: check
    type: command
    shell: true
    command: "test -f {{marker}} || { echo 'marker missing' >&2; exit 3; }; echo '{\"checked\": true}'"
    input: {marker: in.out.marker, prepared: prepare.out.prepared}
    next: [end]
  - {id: end, type: end}
"#,
    );
    let input = json!({"counter": env.path("counter"), "marker": env.path("marker")}).to_string();
    let r = env.run(&["run", p.to_str().unwrap(), "--input", &input]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.last_stderr_line(),
        "error: node `check` failed (attempt 1): `/bin/sh` failed with exit code 3: marker missing"
    );
    let task = r.task_id();
    let logs = env.run(&["tasks", "logs", &task, "check"]);
    assert!(
        logs.stdout.contains("[stderr#1] marker missing"),
        "{}",
        logs.stdout
    );
    std::fs::write(env.path("marker"), "").unwrap();
    let r = env.run(&["resume", &task]);
    assert_eq!(r.ok(), json!({"checked": true}));
    assert_eq!(
        count_lines(&env.path("counter")),
        1,
        "the finished node is not run again"
    );
    let doc = env.show(&task);
    assert_eq!(doc["state"], "finished");
    let check = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "check")
        .unwrap();
    assert_eq!(check["attempt"], 2);
    assert_eq!(check["attempts"], 2);
}

#[test]
fn kill_9_then_resume_loses_nothing_and_reruns_nothing_finished() {
    let env = Env::new();
    let p = env.write(
        "slow.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [first]}
  - id: first
    type: command
    shell: true
    command: "echo run >> {{dir}}/first; echo '{\"a\": 1}'"
    next: [slow]
  - id: slow
    type: command
    shell: true
    command: "echo $$ > {{dir}}/pid; echo run >> {{dir}}/slow; if [ -f {{dir}}/hold ]; then sleep 30; fi; echo '{\"b\": 2}'"
    input: {dir: in.out.dir}
    next: [last]
  - id: last
    type: command
    shell: true
    command: "echo run >> {{dir}}/last; echo '{\"c\": 3}'"
    input: {dir: in.out.dir, a: first.out.a, b: slow.out.b}
    after: "out.a = input.a; out.b = input.b;"
    next: [end]
  - {id: end, type: end}
"#,
    );
    std::fs::write(env.path("hold"), "").unwrap();
    let input = json!({"dir": env.dir.path()}).to_string();
    let mut child = env.spawn(&["run", p.to_str().unwrap(), "--input", &input]);
    let task = read_task_id(&mut child);
    wait_for("the slow node to start", Duration::from_secs(20), || {
        count_lines(&env.path("slow")) == 1
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let pid: i32 = std::fs::read_to_string(env.path("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pid}")])
        .status();
    std::fs::remove_file(env.path("hold")).unwrap();
    let doc = env.show(&task);
    assert_eq!(
        doc["state"], "running",
        "the killed run left the task as it was"
    );
    let r = env.run(&["resume", &task]);
    let out = r.ok();
    assert_eq!(out, json!({"a": 1, "b": 2, "c": 3}));
    assert_eq!(
        count_lines(&env.path("first")),
        1,
        "finished before the kill: not run again"
    );
    assert_eq!(
        count_lines(&env.path("slow")),
        2,
        "running at the kill: dispatched again"
    );
    assert_eq!(count_lines(&env.path("last")), 1);
    let doc = env.show(&task);
    let slow = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "slow")
        .unwrap()
        .clone();
    assert_eq!(slow["attempt"], 2);
    let runs = doc["runs"].as_array().unwrap();
    let first_try = runs
        .iter()
        .find(|r| r["key"] == "slow" && r["attempt"] == 1)
        .unwrap();
    assert_eq!(first_try["state"], "failed");
    assert_eq!(
        first_try["error"],
        "interrupted: the process running it stopped"
    );
}

#[test]
fn kill_9_at_random_moments_then_resume_gives_the_clean_result() {
    let env = Env::new();
    let p = env.write(
        "many.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.items
    max_parallel: 4
    collect: loop.work.out.value
    next: [end]
    nodes:
      - id: work
        type: command
        shell: true
        command: "echo {{item}} >> {{dir}}/runs; sleep 0.02; echo '{\"value\": {{item}}}'"
        input: {item: loop.item, dir: in.out.dir}
  - {id: end, type: end}
"#,
    );
    let items: Vec<u32> = (0..40).collect();
    let input = json!({"items": items, "dir": env.dir.path()}).to_string();
    let mut child = env.spawn(&["run", p.to_str().unwrap(), "--input", &input]);
    let task = read_task_id(&mut child);
    let mut kills = 0;
    let delays = [150u64, 60, 230, 90, 40];
    let mut child = Some(child);
    for delay in delays {
        std::thread::sleep(Duration::from_millis(delay));
        let mut running = child.take().unwrap();
        if running.try_wait().unwrap().is_some() {
            child = Some(running);
            break;
        }
        running.kill().unwrap();
        running.wait().unwrap();
        kills += 1;
        // The kill may land after the task's end was committed: then there is nothing to resume.
        if env.show(&task)["state"] == "finished" {
            break;
        }
        child = Some(env.spawn(&["resume", &task]));
    }
    if let Some(last) = child {
        let r = Run::from(last.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let doc = env.show(&task);
    assert_eq!(doc["result"], json!({"items": items}));
    let runs = count_lines(&env.path("runs"));
    assert!(runs >= 40, "every item ran");
    assert!(
        runs <= 40 + kills * 4,
        "only items in flight at a kill run twice ({runs} runs, {kills} kills)"
    );
    assert_eq!(env.show(&task)["state"], "finished");
}

#[test]
fn cached_node_is_not_run_again() {
    let env = Env::new();
    let p = env.write(
        "cache.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [expensive]}
  - id: expensive
    type: command
    cache: true
    shell: true
    command: "echo run >> {{dir}}/runs; echo '{\"square\": '$(({{n}} * {{n}}))'}'"
    next: [end]
  - {id: end, type: end}
"#,
    );
    let dir = env.dir.path().to_str().unwrap().to_string();
    let input = json!({"n": 7, "dir": dir}).to_string();
    assert_eq!(
        env.run(&["run", p.to_str().unwrap(), "--input", &input])
            .ok()["square"],
        49
    );
    let second = env.run(&["run", p.to_str().unwrap(), "--input", &input]);
    assert_eq!(second.ok()["square"], 49);
    assert_eq!(
        count_lines(&env.path("runs")),
        1,
        "the second task reused the cached output"
    );
    let doc = env.show(&second.task_id());
    let node = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "expensive")
        .unwrap()
        .clone();
    assert_eq!(node["cached"], true);
    let other = json!({"n": 8, "dir": dir}).to_string();
    assert_eq!(
        env.run(&["run", p.to_str().unwrap(), "--input", &other])
            .ok()["square"],
        64
    );
    assert_eq!(
        count_lines(&env.path("runs")),
        2,
        "another input is another cache key"
    );
}

#[test]
fn runaway_script_fails_its_node_quickly() {
    let env = Env::new();
    let p = env.write(
        "spin.yaml",
        "nodes:\n  - {id: in, type: entry, next: [spin]}\n  - {id: spin, type: node, before: \"let x = 0; loop { x += 1; }\", next: [end]}\n  - {id: end, type: end}\n",
    );
    let started = std::time::Instant::now();
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let last = r.last_stderr_line();
    assert!(
        last.starts_with("error: node `spin` failed (attempt 1): `before` script: script stopped"),
        "{last}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn parallel_branches_really_overlap() {
    let env = Env::new();
    let p = env.write(
        "par.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [a, b]}
  - id: a
    type: command
    shell: true
    command: "date +%s.%N > {{dir}}/a_start; sleep 0.4; date +%s.%N > {{dir}}/a_end; echo '{\"a\": 1}'"
    next: [join]
  - id: b
    type: command
    shell: true
    command: "date +%s.%N > {{dir}}/b_start; sleep 0.4; date +%s.%N > {{dir}}/b_end; echo '{\"b\": 1}'"
    next: [join]
  - {id: join, type: node, next: [end]}
  - {id: end, type: end}
"#,
    );
    let input = json!({"dir": env.dir.path()}).to_string();
    let out = env
        .run(&["run", p.to_str().unwrap(), "--input", &input])
        .ok();
    assert_eq!(out, json!({"a": 1, "b": 1}));
    let t = |f: &str| -> f64 {
        std::fs::read_to_string(env.path(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        t("a_start") < t("b_end") && t("b_start") < t("a_end"),
        "the two commands ran at the same time"
    );
}

#[test]
fn cancel_kills_the_whole_process_group() {
    let env = Env::new();
    let p = env.write(
        "long.yaml",
        "nodes:\n  - {id: in, type: entry, next: [long]}\n  - id: long\n    type: command\n    shell: true\n    command: \"sleep 60 & echo $! > {{dir}}/child; wait\"\n    next: [end]\n  - {id: end, type: end}\n",
    );
    let input = json!({"dir": env.dir.path()}).to_string();
    let mut child = env.spawn(&["run", p.to_str().unwrap(), "--input", &input]);
    let task = read_task_id(&mut child);
    wait_for("the command's child", Duration::from_secs(20), || {
        std::fs::read_to_string(env.path("child")).is_ok_and(|s| s.ends_with('\n'))
    });
    let grandchild: i32 = std::fs::read_to_string(env.path("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(grandchild));
    let r = env.run(&["tasks", "cancel", &task]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    wait_for(
        "the background sleep to be killed",
        Duration::from_secs(5),
        || !pid_alive(grandchild),
    );
    let doc = env.show(&task);
    assert_eq!(doc["state"], "cancelled");
    let long = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "long")
        .unwrap()
        .clone();
    assert_eq!(long["state"], "cancelled");
}

#[test]
fn timeout_fails_a_command_and_names_it() {
    let env = Env::new();
    let p = env.write(
        "timeout.yaml",
        "nodes:\n  - {id: in, type: entry, next: [sleepy]}\n  - {id: sleepy, type: command, command: [sleep, \"20\"], timeout: 300ms, next: [end]}\n  - {id: end, type: end}\n",
    );
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.last_stderr_line(),
        "error: node `sleepy` failed (attempt 1): timed out after 300ms"
    );
}

#[test]
fn tasks_list_and_show_json_documents() {
    let env = Env::new();
    let first = env.run(&[
        "run",
        &example("branch-loop.yaml"),
        "--input",
        r#"{"n": 2}"#,
    ]);
    let second = env.run(&["run", &example("word-lengths.yaml")]);
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["tasks", "list", "--json"]).stdout).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.task_id(), first.task_id()], "newest first");
    let doc = env.show(&first.task_id());
    insta::assert_json_snapshot!(doc, {
        ".id" => "[id]",
        ".created_at" => "[time]",
        ".updated_at" => "[time]",
        ".nodes[].started_at" => "[time]",
        ".nodes[].finished_at" => "[time]",
        ".nodes[].duration_ms" => "[ms]",
        ".runs[].started_at" => "[time]",
        ".runs[].finished_at" => "[time]",
    });
}

#[test]
fn named_pool_of_one_runs_its_nodes_one_at_a_time() {
    let env = Env::new();
    let node = |id: &str| {
        format!(
            "  - id: {id}\n    type: command\n    pool: solo\n    shell: true\n    command: \"date +%s.%N >> {{{{dir}}}}/{id}; sleep 0.2; date +%s.%N >> {{{{dir}}}}/{id}; echo '{{}}'\"\n    next: [join]\n"
        )
    };
    let text = format!(
        "pools: {{solo: 1}}\nnodes:\n  - {{id: in, type: entry, next: [a, b, c]}}\n{}{}{}  - {{id: join, type: node, next: [end]}}\n  - {{id: end, type: end}}\n",
        node("a"),
        node("b"),
        node("c")
    );
    let p = env.write("pool.yaml", &text);
    let input = json!({"dir": env.dir.path()}).to_string();
    env.run(&["run", p.to_str().unwrap(), "--input", &input])
        .ok();
    let mut spans: Vec<(f64, f64)> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let text = std::fs::read_to_string(env.path(id)).unwrap();
            let t: Vec<f64> = text.lines().map(|l| l.parse().unwrap()).collect();
            (t[0], t[1])
        })
        .collect();
    spans.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap());
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "pool `solo` ran two nodes at once: {spans:?}"
        );
    }
}

#[test]
fn flaky_command_is_retried_with_backoff_until_it_succeeds() {
    let env = Env::new();
    let p = env.write(
        "flaky.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [flaky]}
  - id: flaky
    type: command
    shell: true
    command: "echo try >> {{dir}}/tries; [ $(wc -l < {{dir}}/tries) -ge 3 ] || exit 1; echo '{\"ok\": true}'"
    retry: {attempts: 5, backoff: 50ms, max_backoff: 1s}
    next: [end]
  - {id: end, type: end}
"#,
    );
    let input = json!({"dir": env.dir.path()}).to_string();
    let r = env.run(&["run", p.to_str().unwrap(), "--input", &input]);
    assert_eq!(r.ok(), json!({"ok": true}));
    assert_eq!(count_lines(&env.path("tries")), 3);
    let doc = env.show(&r.task_id());
    let flaky: Vec<&serde_json::Value> = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "flaky")
        .collect();
    let states: Vec<&str> = flaky.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["failed", "failed", "finished"]);
    assert!(flaky[0]["error"].as_str().unwrap().contains("exit code 1"));
}

#[test]
fn file_inputs_become_objects_passed_to_commands() {
    let env = Env::new();
    let data = env.write("photo.txt", "pixels\nmore pixels\n");
    let p = env.write(
        "file.yaml",
        "nodes:\n  - {id: in, type: entry, next: [size]}\n  - {id: size, type: command, command: [wc, -c, \"{{image}}\"], stdin: false, next: [end]}\n  - {id: end, type: end}\n",
    );
    let arg = format!("image=@{}", data.display());
    let out = env.run(&["run", p.to_str().unwrap(), "--file", &arg]).ok();
    assert!(out["stdout"].as_str().unwrap().starts_with("19 "), "{out}");
    let r = env.run(&[
        "run",
        p.to_str().unwrap(),
        "--file",
        "image=@/nonexistent/file",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("--file image: cannot store /nonexistent/file"),
        "{}",
        r.stderr
    );
}

#[test]
fn ephemeral_runs_keep_nothing() {
    let env = Env::new();
    let out = env
        .run(&["run", &example("branch-loop.yaml"), "--ephemeral"])
        .ok();
    assert_eq!(out["count"], 3);
    assert!(!env.path("data").exists(), "no data dir was created");
    let r = env.run(&["tasks", "list", "--ephemeral"]);
    assert_eq!(r.code, 1);
    assert!(r.last_stderr_line().contains("--ephemeral keeps no tasks"));
}

#[test]
fn tessera_toml_sets_the_data_dir_and_flags_win() {
    let env = Env::new();
    env.write(
        "tessera.toml",
        "data_dir = \"from-toml\"\nmax_processes = 4\n[pools]\ngpu = 1\n",
    );
    let mut cmd = env.cmd();
    cmd.env_remove("TESSERA_DATA_DIR");
    let out = cmd
        .args(["run", &example("branch-loop.yaml")])
        .output()
        .unwrap();
    assert_eq!(Run::from(out).ok()["count"], 3);
    assert!(env.path("from-toml").join("tessera.db").exists());
    let mut cmd = env.cmd();
    cmd.env_remove("TESSERA_DATA_DIR");
    let flag = env.path("from-flag");
    let out = cmd
        .args([
            "run",
            &example("branch-loop.yaml"),
            "--data-dir",
            flag.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    Run::from(out).ok();
    assert!(flag.join("tessera.db").exists());
    env.write("tessera.toml", "data_dir = 3\n");
    let r = env.run(&["run", &example("branch-loop.yaml")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid configuration in tessera.toml"),
        "{}",
        r.stderr
    );
}
