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
