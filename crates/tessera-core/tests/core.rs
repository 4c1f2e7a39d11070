//! Integration tests of the core: whole documents through parsing and validation, with the
//! error reports snapshotted so their wording and completeness are reviewed.

use tessera_core::{Scripts, load_pipeline};

fn report(text: &str) -> String {
    match load_pipeline(text, &Scripts::default()) {
        Ok(_) => "valid".to_string(),
        Err(r) => r.to_string(),
    }
}

/// The pipeline as parsed, even when validation reports problems.
fn parsed(text: &str) -> tessera_core::Pipeline {
    let doc = tessera_core::parse::parse_document(text).unwrap();
    let mut report = tessera_core::Report::default();
    tessera_core::parse::pipeline_from_value(&doc, &mut report).unwrap()
}

#[test]
fn every_error_is_reported_at_once_with_node_and_field() {
    let text = r#"
type: pipeline
colour: blue
nodes:
  - {id: in, type: entry, next: [a, ghost]}
  - {id: a, type: node, next: [b], input: {x: nowhere.out.x, y: "bad..path"}, speed: 3}
  - {id: b, type: node, next: [a], before: "let = 1;"}
  - {id: c, type: node, next: [end]}
  - {id: d, type: service, url: "http://x"}
  - {id: e, type: wizard}
  - {id: f, type: command, command: "ls -l", retry: {attempts: 0, backoff: "soon"}}
  - {id: g, type: http, url: "ftp://x", verb: FETCH, timeout: 1y}
  - id: each
    type: loop
    items: loop.item
    nodes:
      - {id: t1, type: node, next: [t2], input: {v: loop.zz.out}}
      - {id: t2, type: end}
  - {id: end, type: end}
"#;
    insta::assert_snapshot!(report(text));
}

#[test]
fn misspelt_fields_and_types_get_a_suggestion() {
    let text = "nodes:\n  - {id: in, type: entry, nxt: [a]}\n  - {id: a, type: comand, next: [end]}\n  - {id: end, type: end, wait_al: true}\n";
    let r = report(text);
    for expected in [
        "unknown field `nxt` for an `entry` node (did you mean `next`?)",
        "unknown node type `comand` (did you mean `command`?)",
        "unknown field `wait_al` for an `end` node (did you mean `wait_all`?)",
    ] {
        assert!(r.contains(expected), "{expected}:\n{r}");
    }
}

#[test]
fn placeholders_of_missing_params_are_errors() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - {id: a, type: command, params: {mode: {level: 2}, list: [x]}, command: [echo, "{{params.mode.level}}", "{{params.list.0}}", "{{params.mood}}", "{{params.mode.depth}}"], next: [b]}
  - {id: b, type: command, command: [echo, "{{params.x}}"], next: [end]}
  - {id: end, type: end}
"#;
    let r = report(text);
    for expected in [
        "placeholder `{{params.mood}}`: no param `mood` (its params: mode, list)",
        "placeholder `{{params.mode.depth}}`: `params.mode` has no `depth`",
        "placeholder `{{params.x}}`: no param `x` (the node has no `params`)",
    ] {
        assert!(r.contains(expected), "{expected}:\n{r}");
    }
    assert!(
        !r.contains("params.mode.level") && !r.contains("params.list.0"),
        "{r}"
    );
}

#[test]
fn every_unknown_name_of_a_script_is_reported_and_reserved_words_get_a_hint() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - {id: a, type: node, after: "out = #{x: undefined_var + 1, y: frobnicate(2), z: other_var.len_of()};", next: [b]}
  - {id: b, type: node, after: "out = #{g: input.go};", next: [end]}
  - {id: end, type: end}
"#;
    let r = report(text);
    for expected in [
        "field `after`: unknown variable `undefined_var`",
        "; also unknown variable `other_var` (line 1, position",
        "; unknown function `frobnicate` (line 1, position",
        "; unknown function `len_of` (line 1, position",
        "to read a field named `go`, write it in brackets: `input[\"go\"]`",
    ] {
        assert!(r.contains(expected), "{expected}:\n{r}");
    }
}

#[test]
fn missing_entry_and_end() {
    insta::assert_snapshot!(report("nodes:\n  - {id: a, type: node}\n"));
}

#[test]
fn syntax_errors_name_the_line() {
    insta::assert_snapshot!(report("nodes:\n  - {id: a, type: node\n  - id: b\n"));
    insta::assert_snapshot!(report(
        "{\"nodes\": [\n  {\"id\": \"a\",, \"type\": \"node\"}\n]}"
    ));
}

#[test]
fn a_branch_closing_a_cycle_is_valid_and_examples_validate() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [step]}
  - {id: step, type: node, next: [check]}
  - {id: check, type: branch, if: "input.n < 3", then: {next: [step]}, else: {next: [end]}}
  - {id: end, type: end}
"#;
    assert_eq!(report(text), "valid");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/pipelines");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(report(&text), "valid", "{}", path.display());
    }
}

#[test]
fn batch_node_errors_name_the_nested_field() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [b1, b2, b3, b4, ok]}
  - {id: b4, type: batch, reader: {format: csv, path: a.csv}, processor: {columns: {length: "row.name.len("}, filter: "row.x =="}, writer: {format: csv, path: o.csv}, next: [end]}
  - id: b1
    type: batch
    reader: {format: xml, path: a.csv, delimiter: ";;", colour: red}
    processor: {columns: {length: "row.name.len(", n: 3}, filter: "row.x =="}
    writer: {format: lines, path: out.txt}
    chunk_size: 0
    skip: {limit: -1, on: [parse, typos]}
    next: [end]
  - id: b2
    type: batch
    reader: {format: csv, path: a.csv, object: input.file}
    processor: {command: "sort", input: yaml}
    writer: {format: csv}
    start_limit: 0
    next: [end]
  - {id: b3, type: batch, reader: {format: jsonl, object: "nowhere.out.file"}, writer: {format: jsonl, object: 3}, next: [end]}
  - id: ok
    type: batch
    reader: {format: csv, path: "{{input.path}}", delimiter: "\t"}
    processor: {command: [sort], filters: true}
    writer: {format: jsonl, object: true}
    chunk_size: 5
    parallelism: 2
    skip: {limit: 10, on: [parse]}
    start_limit: 3
    retry: {attempts: 3}
    next: [end]
  - {id: end, type: end}
"#;
    insta::assert_snapshot!(report(text));
    let p = parsed(text);
    let tessera_core::NodeKind::Batch(ok) = &p.node("ok").unwrap().kind else {
        panic!("ok is a batch node")
    };
    assert_eq!(ok.reader.delimiter, b'\t');
    assert_eq!(ok.chunk_size, 5);
    assert_eq!(ok.parallelism, 2);
    assert_eq!(ok.start_limit, Some(3));
    assert!(ok.skip.parse_errors && !ok.skip.expression_errors);
    assert!(ok.checkpoints);
}

#[test]
fn raster_nodes_are_checked_field_by_field() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [calc, slope, bad, worse, ok]}
  - id: calc
    type: raster
    inputs: {a: "{{params.dir}}/dem.tif", b: {object: in.out.ortho}}
    expr: ["(b - a) / (b + a)", "(b - c", "a[0]"]
    dtype: f16
    tile: 0
    next: [end]
  - id: slope
    type: raster
    operation: slope
    inputs: {dem: dem.tif, other: x.tif}
    band: 0
    unit: radians
    scale: -1
    expr: "a"
    output: {object: 3}
    next: [end]
  - id: bad
    type: raster
    operation: blur
    inputs: {"1a": x.tif, b: {path: y.tif, object: in.out.y}, c: {object: "ghost.out.z"}}
    next: [end]
  - {id: worse, type: raster, inputs: [], next: [end]}
  - id: ok
    type: raster
    operation: slope
    inputs: {dem: {object: in.out.dem}}
    unit: percent
    scale: 111120
    cache_dir: cache
    output: slope.tif
    next: [end]
  - {id: end, type: end}
"#;
    insta::assert_snapshot!(report(text));
    let p = parsed(text);
    let tessera_core::NodeKind::Raster(ok) = &p.node("ok").unwrap().kind else {
        panic!("ok is a raster node")
    };
    assert_eq!(
        ok.operation,
        tessera_core::model::RasterOperation::Slope {
            band: 0,
            scale: 111120.0,
            percent: true
        }
    );
    assert_eq!(
        ok.output,
        tessera_core::model::RasterTarget::Path("slope.tif".into())
    );
    assert_eq!((ok.tile, ok.compute_tile, ok.threads), (512, 256, 0));
}

#[test]
fn placeholders_and_paths_name_nodes_that_ran_before() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [a, b]}
  - id: a
    type: command
    command: ["echo", "{{b.out.x}}", "{{ghost.out.y}}", "{{a.out.z}}", "{{a.input.q}}", "{{in.out.n}}", "{{loop.item}}", "{{x..y}}", "{{unclosed"]
    env: {K: "{{params.k}}-{{c.out}}"}
    next: [c]
  - {id: b, type: node, next: [c]}
  - {id: c, type: node, input: {v: a.out.x, w: b.out, z: end.out}, next: [each]}
  - id: each
    type: loop
    items: c.out.list
    nodes:
      - {id: t1, type: command, command: ["echo", "{{t2.out}}", "{{loop.item}}", "{{c.out.n}}", "{{each.input.k}}", "{{each.out.k}}", "{{loop.t1.out}}"], next: [t2]}
      - {id: t2, type: http, url: "http://127.0.0.1/{{t1.out.id}}/{{loop.index}}/{{loop.t1.out.id}}"}
    next: [end]
  - {id: end, type: end}
"#;
    insta::assert_snapshot!(report(text));
    // In a cycle, a node may read what a later node of the cycle wrote in the previous pass.
    let cycle = r#"
nodes:
  - {id: in, type: entry, next: [step]}
  - {id: step, type: command, command: ["echo", "{{check.input.n}}", "{{in.out.n}}"], next: [check]}
  - {id: check, type: branch, if: "input.n < 3", then: {next: [step]}, else: {next: [end]}}
  - {id: end, type: end}
"#;
    assert_eq!(report(cycle), "valid");
}

#[test]
fn scripts_name_any_node_and_unknown_names_are_reported() {
    let valid = r#"
nodes:
  - {id: in, type: entry, next: [make-it]}
  - {id: make-it, type: node, before: "input.x = in.out.n + 1; input.s = `${in.out.n}`;", next: [check]}
  - {id: check, type: branch, if: "in.out.n > 1 && make-it.out.x > 0 && \"n\" in in.out", then: {next: [each]}, else: {next: [end]}}
  - id: each
    type: loop
    items: in.out.list
    nodes:
      - {id: t1, type: node, before: "fn twice(v) { v * 2 } out = #{v: twice(loop.item), i: loop.index, same: item == loop.item, n: in.out.n.to_string().len()};"}
    next: [end]
  - {id: end, type: end}
"#;
    assert_eq!(report(valid), "valid");
    let bad = r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - {id: a, type: node, before: "out = nope + 1;", next: [b]}
  - {id: b, type: node, after: "let y = frobnicate(2);", ready: "inn.out.x > 1", next: [c]}
  - {id: c, type: node, before: "out = loop.item;", next: [d]}
  - {id: d, type: node, before: "out = input.len(); out = input.nonsense_method();", next: [e]}
  - {id: e, type: node, ready: any, next: [end]}
  - {id: end, type: end}
"#;
    insta::assert_snapshot!(report(bad));
}

#[test]
fn fields_that_would_do_nothing_are_reported() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [a, b]}
  - {id: a, type: node, retry: {attempts: 3}, timeout: 5s, next: [j]}
  - {id: b, type: http, url: "http://127.0.0.1/{{tessera.task_id}}/{{tessera.scratch}}/{{tessera.nope}}", next: [j]}
  - {id: j, type: node, ready: "input.n > 1 || a.state == \"finished\"", input: {note: "'a literal'", n: a.out.n}, next: [end]}
  - {id: end, type: end}
"#;
    insta::assert_snapshot!(report(text));
    let literal = parsed(
        "nodes:\n  - {id: in, type: entry, next: [a]}\n  - {id: a, type: node, input: {note: \"'over limit'\"}, next: [end]}\n  - {id: end, type: end}\n",
    );
    let a = &literal.nodes[1];
    assert_eq!(
        a.input,
        Some(tessera_core::model::InputSpec::Map(vec![(
            "note".into(),
            tessera_core::model::Directive::Literal(serde_json::json!("over limit"))
        )]))
    );
}

#[test]
fn schedule_errors_name_their_field() {
    let nodes = "nodes:\n  - {id: in, type: entry, api: {body: {region: eu, days: 1}}, next: [end]}\n  - {id: end, type: end}\n";
    let documents = [
        "schedul: {cron: \"0 3 * * *\"}\n",
        "schedule: daily\n",
        "schedule: {cronn: \"0 3 * * *\", timezone: Europe/Pariss, start: 2026-13-01, end: 12, catchup: sometimes, max_active_tasks: 0, input: [1]}\n",
        "schedule: {cron: \"0 3 * *\", timezone: 5, start: 2026-12-31T00:00:00Z, end: 2026-01-01T00:00:00Z, catchup: al, max_active_tasks: -1}\n",
        "schedule: {cron: \"0 3 * * FUNDAY\", timezone: europe/paris, catchup: all, start: 1969-12-31T00:00:00Z}\n",
        "schedule: {cron: \"0 3 * * *\", catchup: all}\n",
        "schedule: {cron: \"0 0 31 2 *\"}\n",
        "schedule: {cron: \"0 3 * * *\", timezone: Europe/Paris, start: 2026-01-01T03:00:00Z, end: 2026-01-01T23:00:00Z}\n",
        "schedule: {cron: \"0 3 * * *\", input: {region: 3, days: 1.5, extra: true}}\n",
        "schedule: {cron: \"0 3 * * *\", input: {region: eu, days: 1, file: {$file: /etc/passwd}}}\n",
    ];
    let mut out = String::new();
    for doc in documents {
        out.push_str(&format!("{doc}=> {}\n\n", report(&format!("{doc}{nodes}"))));
    }
    let binary = "schedule: {cron: \"0 3 * * *\"}\nnodes:\n  - {id: in, type: entry, api: {body: [image, mask]}, next: [end]}\n  - {id: end, type: end}\n";
    out.push_str(&format!("(entry taking files) => {}\n", report(binary)));
    insta::assert_snapshot!(out);
}

#[test]
fn pipeline_placeholders_name_the_task_the_pipeline_and_the_tick() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - {id: a, type: command, command: [echo, "{{pipeline.scheduled_at}}", "{{pipeline.name}}", "{{pipeline.task_id}}", "{{pipeline.region}}", "{{pipeline}}"], next: [end]}
  - {id: end, type: end}
"#;
    let r = report(text);
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(
        lines,
        [
            "line 4: node `a`, field `command[4]`: unknown placeholder `{{pipeline.region}}`: `pipeline.` offers `task_id`, `name` and `scheduled_at`; for a field of the input, write `{{input.pipeline.region}}`",
            "line 4: node `a`, field `command[5]`: unknown placeholder `{{pipeline}}`: `pipeline.` offers `task_id`, `name` and `scheduled_at`; for a field of the input, write `{{input.pipeline}}`",
        ]
    );
}

#[path = "core/schedule.rs"]
mod schedule;
