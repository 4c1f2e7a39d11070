//! Item programs: which templates run in chunks, the fast form against the general path.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Value, json};

use super::*;
use crate::validate::load_pipeline;

fn program(template: &str, collect: Option<&str>) -> Option<Arc<ItemProgram>> {
    let collect = collect
        .map(|c| format!("\n    collect: {c}"))
        .unwrap_or_default();
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, next: [each]}}\n  - id: each\n    type: loop\n    \
         items: in.out.xs{collect}\n    next: [end]\n    nodes:\n{template}\n  - {{id: end, type: end}}\n"
    );
    let scripts = Scripts::default();
    let pipeline = load_pipeline(&yaml, &scripts).unwrap_or_else(|r| panic!("{r}\n{yaml}"));
    let plan = Plan::new(Arc::new(pipeline));
    plan.programs.get(&NodeRef::Top(1)).cloned()
}

fn work(program: Arc<ItemProgram>, items: Value) -> LoopWork {
    LoopWork {
        program,
        items: Data::from_value(items).list_text().expect("a list"),
        outer: Default::default(),
        around: Vec::new(),
        key_prefix: String::new(),
        task_id: "t".into(),
        pipeline_name: "p".into(),
        scheduled_at: None,
        max_failed: u64::MAX,
    }
}

/// The chunk's values, and the same items through the general path.
fn both(w: &LoopWork) -> (Value, Value) {
    let scripts = Scripts::default();
    let n = w.items.len();
    let chunk = w
        .program
        .run_chunk(w, &scripts, 0..n, &AtomicBool::new(false));
    let fast: Value = serde_json::from_str(&format!("[{}]", chunk.values)).unwrap();
    let general: Vec<Value> = (0..n)
        .map(|i| match w.program.run_item(w, &scripts, i) {
            Ok(d) => d.into_value(),
            Err(_) => Value::Null,
        })
        .collect();
    (fast, Value::Array(general))
}

fn mixed_items() -> Value {
    json!([1, -7, 2.5, "a", "é\"q", "", true, null, {"a": 1}, [1, 2], 9_007_199_254_740_993u64, 1e300])
}

#[test]
fn templates_of_in_process_nodes_run_in_chunks_others_as_branches() {
    assert!(program("      - {id: m, type: node}", None).is_some());
    let branch = "      - {id: b, type: branch, if: \"item > 1\", then: {next: [x]}, else: {next: [x]}}\n      - {id: x, type: node}";
    assert!(program(branch, None).is_some());
    assert!(program("      - {id: c, type: command, command: [\"true\"]}", None).is_none());
    assert!(program("      - {id: m, type: node, cache: true}", None).is_none());
}

#[test]
fn the_fast_form_gives_the_general_paths_text() {
    let cases: &[(&str, Option<&str>)] = &[
        ("      - {id: m, type: node}", Some("loop.m.out.item")),
        ("      - {id: m, type: node}", None),
        (
            "      - {id: m, type: node, after: \"out = item.len();\"}",
            Some("loop.m.out"),
        ),
        (
            "      - {id: m, type: node, after: \"out = item * 2;\"}",
            None,
        ),
        (
            "      - {id: m, type: node, after: \"out = input.index + 1;\"}",
            None,
        ),
        (
            "      - {id: m, type: node, input: {x: loop.item, k: 3, i: loop.index}, after: \"out = input.x + input.k;\", next: [n]}\n      - {id: n, type: node, input: {v: m.out, a: m.input.k}}",
            None,
        ),
        (
            "      - {id: m, type: node, before: \"input = item.to_string();\"}",
            Some("loop.m.input"),
        ),
        ("      - {id: m, type: node, input: {v: loop.item.a}}", None),
    ];
    for (template, collect) in cases {
        let p = program(template, *collect).expect("in process");
        assert!(p.is_fast(), "{template} is not fast");
        let w = work(p, mixed_items());
        let (fast, general) = both(&w);
        assert_eq!(fast, general, "{template}");
    }
}

#[test]
fn identity_items_are_copied_as_one_slice() {
    let p = program("      - {id: m, type: node}", Some("loop.m.out.item")).unwrap();
    let w = work(p, json!([1, "x", {"a": [1, 2]}, null]));
    let chunk = w
        .program
        .run_chunk(&w, &Scripts::default(), 1..3, &AtomicBool::new(false));
    assert_eq!(chunk.values, "\"x\",{\"a\":[1,2]}");
}

#[test]
fn failures_name_the_item_node_and_the_loop_tolerates_up_to_max_failed() {
    let p = program(
        "      - {id: m, type: node, after: \"if item < 0 { throw `neg ${item}`; } out = item;\"}",
        None,
    )
    .unwrap();
    let mut w = work(p, json!([1, -2, 3, -4]));
    w.max_failed = 1;
    let chunk = w
        .program
        .run_chunk(&w, &Scripts::default(), 0..4, &AtomicBool::new(false));
    assert_eq!(chunk.values, "1,null,3,null");
    assert_eq!(chunk.failed.len(), 2);
    assert_eq!(chunk.failed[0].node, "m#1");
    assert!(
        chunk.failed[1].error.contains("neg -4"),
        "{:?}",
        chunk.failed
    );
    let error = w.failure_error("each", &chunk.failed).expect("too many");
    assert!(
        error.starts_with("node `m#3` failed (attempt 1): `after` script:"),
        "{error}"
    );
    assert!(error.contains("max_failed_items (1)"), "{error}");
    w.max_failed = 2;
    assert_eq!(w.failure_error("each", &chunk.failed), None);
    let out = assemble(["1,null", "3,null"].into_iter(), &chunk.failed).into_value();
    assert_eq!(out["items"], json!([1, null, 3, null]));
    assert_eq!(out["failed"][1]["index"], 3);
}

#[test]
fn a_cancel_stops_a_chunk_early() {
    let p = program(
        "      - {id: m, type: node, after: \"out = [item];\"}",
        None,
    )
    .unwrap();
    let w = work(p, Value::Array((0..5000).map(Value::from).collect()));
    let chunk = w
        .program
        .run_chunk(&w, &Scripts::default(), 0..5000, &AtomicBool::new(true));
    assert!(chunk.values.len() < 100, "{}", chunk.values.len());
}

#[test]
fn a_tally_keeps_the_first_failures_in_item_order_and_counts_them_all() {
    let failures: Vec<(usize, String)> = (0..1_000)
        .rev()
        .map(|i| (i * 3, format!("m#{i}")))
        .collect();
    let tally = LoopTally::of_failures(
        5_000,
        failures.iter().map(|(i, node)| (*i, node.as_str(), "boom")),
    );
    assert_eq!((tally.items, tally.failed), (5_000, 1_000));
    let first: Vec<usize> = tally.first_failed.iter().map(|f| f.index).collect();
    assert_eq!(
        first,
        (0..LoopTally::FIRST_FAILED)
            .map(|i| i * 3)
            .collect::<Vec<_>>()
    );
    assert_eq!(tally.first_failed[1].node, "m#1");
    assert_eq!(LoopTally::of(3, &[]).first_failed, Vec::new());
}
