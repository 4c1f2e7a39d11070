//! Writing pipelines: templates that read any earlier node and the loop variables, node ids
//! that are script keywords, readiness rules, validation of names, and errors that fail at once.

use serde_json::json;

use crate::support::*;

#[test]
fn templates_read_every_earlier_node_params_and_loop_variables() {
    let server =
        http_server(|_, path| (200, "application/json", format!(r#"{{"path": "{path}"}}"#)));
    let env = Env::new();
    let p = env.write(
        "scope.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [make]}
  - id: make
    type: command
    command: ["echo", '{"dir": "d one", "n": 4}']
    next: [use]
  - id: use
    type: command
    params: {p: pp}
    env: {FROM_IN: "{{in.out.name}}"}
    shell: true
    command: |
      printf '{"line": "%s|%s|%s|%s"}' {{make.out.dir}} "$FROM_IN" {{input.dir}} {{params.p}}
    next: [call]
  - id: call
    type: http
    verb: GET
    url: "{{in.out.base}}/x/{{make.out.n}}/{{in.out.name}}"
    input: {}
    next: [each]
  - id: each
    type: loop
    items: in.out.list
    nodes:
      - id: body
        type: command
        command: ["printf", '{"v": "%s-%s-%s"}', "{{loop.item}}", "{{loop.index}}", "{{make.out.n}}"]
    next: [end]
  - {id: end, type: end, input: {line: use.out.line, path: call.out.path, items: each.out.items}}
"#,
    );
    let input = json!({"name": "nm", "list": ["a", "b c"], "base": server.url}).to_string();
    let out = env
        .run(&["run", p.to_str().unwrap(), "--input", &input])
        .ok();
    assert_eq!(out["line"], "d one|nm|d one|pp");
    assert_eq!(out["path"], "/x/4/nm");
    assert_eq!(out["items"], json!([{"v": "a-0-4"}, {"v": "b c-1-4"}]));
}

#[test]
fn keyword_ids_loop_item_and_readiness_rules_work_in_scripts() {
    let env = Env::new();
    let p = env.write(
        "kw.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [make-it]}
  - {id: make-it, type: node, before: "input.x = in.out.n + 1;", next: [check]}
  - id: check
    type: branch
    if: 'in.out.n > 1 && make-it.out.x > 2 && "n" in in.out'
    then: {next: [each]}
    else: {next: [end]}
  - id: each
    type: loop
    items: in.out.list
    nodes:
      - id: t1
        type: node
        after: "out = #{v: loop.item * 2, i: loop.index, same: item == loop.item, n: in.out.n};"
    next: [fails]
  - id: fails
    type: command
    command: ["false"]
    next: [report]
  - id: report
    type: node
    ready: all_done
    before: 'input = #{items: each.out.items, fails: fails.state};'
    next: [end]
  - {id: end, type: end}
"#,
    );
    let r = env.run(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        r#"{"n": 3, "list": [1, 2]}"#,
    ]);
    assert_eq!(
        r.ok(),
        json!({
            "items": [{"v": 2, "i": 0, "same": true, "n": 3}, {"v": 4, "i": 1, "same": true, "n": 3}],
            "fails": "failed"
        }),
        "a failure handled by an `all_done` node does not fail the task"
    );
}

#[test]
fn validate_names_unknown_nodes_variables_functions_and_rules() {
    let env = Env::new();
    let p = env.write(
        "bad.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - id: a
    type: command
    command: ["echo", "{{b.out.x}}", "{{ghost.out.y}}"]
    next: [b]
  - {id: b, type: node, ready: any, before: "out = nope + frobnicate(1);", next: [end]}
  - {id: end, type: end}
"#,
    );
    let r = env.run(&["validate", p.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let text = format!("{}{}", r.stdout, r.stderr);
    for expected in [
        "node `a`, field `command[1]`: path `b.out.x` names `b`, which cannot have run before this node",
        "node `a`, field `command[2]`: placeholder `{{ghost.out.y}}` names unknown node `ghost`",
        "node `b`, field `ready`: unknown readiness rule `any`",
        "node `b`, field `before`: unknown variable `nope`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // The same pipeline is refused by `run` before anything starts.
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown readiness rule"), "{}", r.stderr);
}

#[test]
fn errors_that_retrying_cannot_fix_fail_at_the_first_attempt() {
    let env = Env::new();
    let cases = [
        // Literal URLs are checked by validation; these come from the input.
        (
            "type: http\n    url: \"{{in.out.relative}}\"",
            "not an absolute http(s) URL",
        ),
        (
            "type: http\n    url: \"{{in.out.file}}\"",
            "only http and https",
        ),
        (
            "type: command\n    command: [\"no-such-program-here\"]",
            "no-such-program-here",
        ),
        (
            "type: command\n    command: [\"ls\"]\n    cwd: /nonexistent/dir",
            "cwd: `/nonexistent/dir` is not a directory",
        ),
        (
            "type: raster\n    inputs: {a: /nonexistent/in.tif}\n    expr: \"a * 2\"\n    output: out.tif",
            "nonexistent",
        ),
    ];
    for (i, (node, message)) in cases.iter().enumerate() {
        let p = env.write(
            &format!("p{i}.yaml"),
            &format!(
                "nodes:\n  - {{id: in, type: entry, next: [x]}}\n  - id: x\n    {node}\n    retry: {{attempts: 5, backoff: 20s}}\n    next: [end]\n  - {{id: end, type: end}}\n"
            ),
        );
        let input = r#"{"relative": "/relative/path", "file": "file:///etc/passwd"}"#;
        let r = env.run(&["run", p.to_str().unwrap(), "--input", input]);
        assert_eq!(r.code, 1, "{node}: {}", r.stderr);
        let last = r.last_stderr_line();
        assert!(
            last.contains("node `x` failed (attempt 1)") && last.contains(message),
            "{node}: {last}"
        );
    }
}

#[test]
fn urls_see_the_task_context_and_never_show_secrets() {
    let server = http_server(|_, _| (404, "text/plain", "no such thing".into()));
    let env = Env::new();
    let p = env.write(
        "secret.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [call]}
  - id: call
    type: http
    verb: GET
    url: "{{in.out.base}}/t/{{tessera.task_id}}/{{tessera.node}}?key=${env:SECRET_KEY}"
    input: {}
    next: [end]
  - {id: end, type: end}
"#,
    );
    let input = json!({"base": server.url}).to_string();
    let out = env
        .cmd()
        .env("SECRET_KEY", "hunter2-very-secret")
        .args(["run", p.to_str().unwrap(), "--input", &input])
        .output()
        .unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 1);
    let task = r.task_id();
    let paths = server.paths.lock().unwrap().clone();
    assert_eq!(
        paths,
        [format!("/t/{task}/call?key=hunter2-very-secret")],
        "the request carries the task context and the secret"
    );
    let last = r.last_stderr_line();
    assert!(
        last.contains("key=${env:SECRET_KEY}") && last.contains("404"),
        "{last}"
    );
    let logs = env.run(&["tasks", "logs", &task, "call"]).stdout;
    let doc = env.run(&["tasks", "show", &task, "--json"]).stdout;
    for text in [&r.stderr, &logs, &doc] {
        assert!(!text.contains("hunter2"), "a secret is shown: {text}");
    }
}
