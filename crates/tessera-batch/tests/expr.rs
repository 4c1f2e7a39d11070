//! Per-row expressions against Rhai itself: for random rows (text and JSON), every expression
//! gives exactly what a pure-Rhai evaluation gives, values and error messages; unsupported
//! expressions fall back to Rhai; errors name their field.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use tessera_batch::{Cell, ExprSpec, Fields, RowProgram, RowRef};
use tessera_core::script::ScriptLimits;

/// Natively supported: each must compile to a native tree.
const NATIVE: &[&str] = &[
    "row.a.len()",
    "row[\"a\"].is_empty()",
    "row.a.to_upper()",
    "row.a.to_lower()",
    "row.a.contains(\"é\") || row.b.contains('1')",
    "row.a.starts_with('-') && !row.b.ends_with(\"0\")",
    "row.n.parse_int()",
    "parse_int(row.n, 16)",
    "row.n.parse_float()",
    "row.n.parse_int() * 2 + 1",
    "row.n.parse_int() / (row.b.len() - 2)",
    "row.n.parse_int() % (row.a.len() - 1)",
    "row.n.parse_float() / 3 + row.b.len()",
    "-row.n.parse_int()",
    "row.n.parse_int().abs()",
    "row.n.parse_float().abs().to_string()",
    "row.n.parse_float().to_int()",
    "row.n.parse_int().to_float() == row.n.parse_float()",
    "row.a + row.b",
    "row.a + row.b.len()",
    "row.n.parse_float() + row.a",
    "row.a + '!' + row.b.is_empty()",
    "row.a < row.b",
    "row.a == \"abc\" || row.b.len() > 3 && !row.a.is_empty()",
    "row.n.parse_int() > 10",
    "line_number * 1000000000000000 + row.a.len()",
    "line_number.to_string() + \":\" + row.a",
    "row.a.len() == 3.0",
    "row.n.parse_float() >= 1.5",
    "row.a == 5",
    "row.n != 12",
    "row.a && row.b",
    "row.a || row.n > 0",
    "row.n.parse_float() + 0.1 + 0.2 == row.n.parse_float() + 0.3",
    "row.n.parse_float() / 10 * 10 >= row.n.parse_float()",
    "row.a",
    "row.n * 2",
    "row.n.to_int() + row.b.len()",
    "row.missing",
];

/// Outside the subset: compiled, run by Rhai.
const RHAI: &[&str] = &[
    "if row.a.len() > 2 { row.a } else { \"short\" }",
    "`${row.a}-${row.b}`",
    "[row.a, row.b.len()]",
    "#{k: row.a, n: line_number}",
    "row.a.sub_string(1)",
    "let x = row.a; x + x",
    "(|s| s.len()).call(row.a)",
    "row",
    "row.a.len",
    "row?.a",
];

fn program(source: &str, names: Option<&[String]>) -> RowProgram {
    let spec = ExprSpec {
        columns: vec![("c".into(), source.into())],
        filter: None,
    };
    RowProgram::compile(&spec, names, &ScriptLimits::default()).unwrap()
}

fn filter_program(source: &str, names: Option<&[String]>) -> RowProgram {
    let spec = ExprSpec {
        columns: vec![("len".into(), "row.a.len()".into())],
        filter: Some(source.into()),
    };
    RowProgram::compile(&spec, names, &ScriptLimits::default()).unwrap()
}

/// Debug text compares NaN with NaN and tells -0.0 from 0.0.
fn outcome(p: &RowProgram, row: &RowRef<'_>, line: u64) -> String {
    let mut out = vec![Cell::Str("stale".into())];
    let r = p.apply(row, line, &mut out);
    format!("{r:?} {out:?}")
}

fn text_field() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 éÉèßİǅﬃ'-]{0,8}",
        "[ \t]?[-+]?[0-9]{1,20}[ ]?",
        "-?[0-9]{1,4}\\.[0-9]{0,4}(e[-+]?[0-9]{1,3})?",
        Just(String::new()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("9223372036854775808".to_string()),
        Just("1e300".to_string()),
        Just("inf".to_string()),
        Just("NaN".to_string()),
        Just("-0".to_string()),
        Just("ff".to_string()),
        Just("ABC".to_string()),
        Just("\u{a0}12".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        text_field().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-20i64..20).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-100i32..100).prop_map(|i| Value::from(f64::from(i) / 4.0)),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([1, "x"])),
        Just(json!({"k": 1})),
    ]
}

fn json_row() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec(
        (prop_oneof![Just("a"), Just("b"), Just("n")], json_value()),
        0..4,
    )
    .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[test]
fn native_and_rhai_agree_on_random_rows() {
    let names: Vec<String> = ["a", "b", "n"].iter().map(|s| s.to_string()).collect();
    let filters = [
        "row.n.parse_int() > 10",
        "row.a.len()",
        "row.b.contains('1') || row.a.is_empty()",
        "row.n > 3",
    ];
    // (native, pure-Rhai reference) pairs, compiled for text rows or for JSON rows.
    let build = |names: Option<&[String]>| -> Vec<(RowProgram, RowProgram)> {
        let sources = NATIVE.iter().chain(RHAI);
        let columns = sources.map(|s| (program(s, names), program(s, names)));
        let filters = filters
            .iter()
            .map(|s| (filter_program(s, names), filter_program(s, names)));
        columns
            .chain(filters)
            .map(|(native, reference)| (native, reference.without_native()))
            .collect()
    };
    let text = build(Some(&names));
    let jsonl = build(None);

    let mut runner = TestRunner::new(Config::with_cases(1000));
    let strategy = (
        proptest::collection::vec(text_field(), 3),
        json_row(),
        0u64..5_000_000,
    );
    runner
        .run(&strategy, |(values, obj, line)| {
            let mut fields = Fields::default();
            values.iter().for_each(|v| fields.push(v));
            let row = RowRef::Text {
                names: &names,
                fields: &fields,
            };
            for (native, reference) in &text {
                prop_assert_eq!(outcome(native, &row, line), outcome(reference, &row, line));
            }
            let row = RowRef::Json(&obj);
            for (native, reference) in &jsonl {
                prop_assert_eq!(outcome(native, &row, line), outcome(reference, &row, line));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn supported_expressions_are_native_and_others_fall_back() {
    let names: Vec<String> = ["a", "b", "n"].iter().map(|s| s.to_string()).collect();
    for s in NATIVE {
        assert_eq!(program(s, Some(&names)).native_count(), (1, 0), "{s}");
    }
    for s in RHAI {
        assert_eq!(program(s, Some(&names)).native_count(), (0, 1), "{s}");
    }
    let spec = ExprSpec {
        columns: NATIVE
            .iter()
            .chain(RHAI)
            .map(|s| ("c".to_string(), s.to_string()))
            .collect(),
        filter: Some("row.a != \"\"".into()),
    };
    let p = RowProgram::compile(&spec, Some(&names), &ScriptLimits::default()).unwrap();
    assert_eq!(p.native_count(), (NATIVE.len() + 1, RHAI.len()));

    // Fallback expressions give Rhai's values, arrays and maps as JSON.
    let mut f = Fields::default();
    ["Zoé", "12", "7"].iter().for_each(|v| f.push(v));
    let row = RowRef::Text {
        names: &names,
        fields: &f,
    };
    let mut out = vec![];
    let cols = |sources: &[&str]| ExprSpec {
        columns: sources
            .iter()
            .map(|s| ("c".to_string(), s.to_string()))
            .collect(),
        filter: None,
    };
    let p = RowProgram::compile(&cols(RHAI), Some(&names), &ScriptLimits::default()).unwrap();
    assert!(p.apply(&row, 3, &mut out).unwrap());
    assert_eq!(
        out,
        vec![
            Cell::Str("Zoé".into()),
            Cell::Str("Zoé-12".into()),
            Cell::Json(json!(["Zoé", 2])),
            Cell::Json(json!({"k": "Zoé", "n": 3})),
            Cell::Str("oé".into()),
            Cell::Str("ZoéZoé".into()),
            Cell::Int(3),
            Cell::Json(json!({"a": "Zoé", "b": "12", "n": "7"})),
            Cell::Int(3),
            Cell::Str("Zoé".into()),
        ]
    );
}

#[test]
fn filter_keeps_rows_and_skips_columns() {
    let names = vec!["count".to_string()];
    let spec = ExprSpec {
        columns: vec![("twice".into(), "row.count.parse_int() * 2".into())],
        filter: Some("row.count.parse_int() > 10".into()),
    };
    let p = RowProgram::compile(&spec, Some(&names), &ScriptLimits::default()).unwrap();
    assert_eq!(p.native_count(), (2, 0));
    let mut out = vec![];
    let mut f = Fields::default();
    f.push("12");
    let row = RowRef::Text {
        names: &names,
        fields: &f,
    };
    assert!(p.apply(&row, 2, &mut out).unwrap());
    assert_eq!(out, vec![Cell::Int(24)]);
    f.clear();
    f.push("3");
    let row = RowRef::Text {
        names: &names,
        fields: &f,
    };
    assert!(!p.apply(&row, 3, &mut out).unwrap());
    assert!(out.is_empty());
}

#[test]
fn errors_name_the_field_and_carry_rhai_messages() {
    let names = vec!["count".to_string()];
    let spec = ExprSpec {
        columns: vec![("length".into(), "row.count.len(".into())],
        filter: None,
    };
    let e = RowProgram::compile(&spec, Some(&names), &ScriptLimits::default()).unwrap_err();
    assert_eq!(e.field, "columns.length");
    assert!(e.message.starts_with("syntax error: "), "{e}");
    assert!(e.message.contains("line 1, position"), "{e}");

    let spec = ExprSpec {
        columns: vec![],
        filter: Some("row.count >".into()),
    };
    let e = RowProgram::compile(&spec, Some(&names), &ScriptLimits::default()).unwrap_err();
    assert_eq!(e.field, "filter");

    let mut f = Fields::default();
    f.push("abc");
    let row = RowRef::Text {
        names: &names,
        fields: &f,
    };
    let mut out = vec![];
    let p = program("row.count.parse_int() + 1", Some(&names));
    assert_eq!(p.native_count(), (1, 0));
    let e = p.apply(&row, 1, &mut out).unwrap_err();
    assert_eq!(e.field, "columns.c");
    assert!(
        e.message
            .starts_with("Error parsing integer number 'abc': invalid digit found in string"),
        "{e}"
    );
    assert!(e.message.contains("line 1, position"), "{e}");
    let e = program("9223372036854775807 + row.count.len()", Some(&names))
        .apply(&row, 1, &mut out)
        .unwrap_err();
    assert!(e.message.contains("Addition overflow"), "{e}");

    let e = filter_program("row.count.len()", Some(&names))
        .apply(&row, 1, &mut out)
        .unwrap_err();
    assert_eq!(e.field, "filter");
    assert_eq!(e.message, "filter must return true or false, got i64 `3`");
    let e = filter_program("row.count", Some(&names))
        .apply(&row, 1, &mut out)
        .unwrap_err();
    assert_eq!(
        e.message,
        "filter must return true or false, got string `abc`"
    );
}

#[test]
fn limits_duplicate_names_and_ragged_rows_match_rhai() {
    let check = |p: &RowProgram, row: &RowRef<'_>, reference: &RowProgram| {
        assert_eq!(outcome(p, row, 1), outcome(reference, row, 1));
    };
    let names: Vec<String> = ["a", "b", "a"].iter().map(|s| s.to_string()).collect();
    let mut f = Fields::default();
    ["first", "0123456789", "last"]
        .iter()
        .for_each(|v| f.push(v));
    let full = RowRef::Text {
        names: &names,
        fields: &f,
    };
    let mut short = Fields::default();
    short.push("x");
    let ragged = RowRef::Text {
        names: &names,
        fields: &short,
    };
    // Compiled without a header, fields are looked up by name in any header.
    let other_names: Vec<String> = ["b", "a"].iter().map(|s| s.to_string()).collect();
    let mut g = Fields::default();
    ["bb", "aa"].iter().for_each(|v| g.push(v));
    let other = RowRef::Text {
        names: &other_names,
        fields: &g,
    };

    let small = ScriptLimits {
        max_string_size: 12,
        ..ScriptLimits::default()
    };
    for source in [
        "row.a",
        "row.b.len()",
        "row.a + row.b",
        "row.b.to_upper()",
        "row.b + 1000",
    ] {
        for limits in [ScriptLimits::default(), small] {
            let spec = ExprSpec {
                columns: vec![("c".into(), source.into())],
                filter: None,
            };
            let reference = RowProgram::compile(&spec, None, &limits)
                .unwrap()
                .without_native();
            let p = RowProgram::compile(&spec, Some(&names), &limits).unwrap();
            assert_eq!(p.native_count(), (1, 0));
            for row in [&full, &ragged] {
                check(&p, row, &reference);
            }
            let p = RowProgram::compile(&spec, None, &limits).unwrap();
            for row in [&full, &ragged, &other] {
                check(&p, row, &reference);
            }
        }
    }
    let mut out = vec![];
    program("row.a", Some(&names))
        .apply(&full, 1, &mut out)
        .unwrap();
    assert_eq!(out, vec![Cell::Str("last".into())]);
    let e = {
        let spec = ExprSpec {
            columns: vec![("c".into(), "row.a + row.b".into())],
            filter: None,
        };
        let p = RowProgram::compile(&spec, Some(&names), &small).unwrap();
        p.apply(&full, 1, &mut out).unwrap_err()
    };
    assert!(e.message.contains("Length of string"), "{e}");

    // Under a tiny operations limit, Rhai runs everything (and stops it).
    let tiny = ScriptLimits {
        max_operations: 3,
        ..ScriptLimits::default()
    };
    let spec = ExprSpec {
        columns: vec![("c".into(), "row.b.len() + 1 + 2 + 3".into())],
        filter: None,
    };
    let p = RowProgram::compile(&spec, Some(&names), &tiny).unwrap();
    assert_eq!(p.native_count(), (0, 1));
    let e = p.apply(&full, 1, &mut out).unwrap_err();
    assert!(e.message.contains("too many operations"), "{e}");
}

/// `cargo test --release -p tessera-batch --test expr -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_native_vs_rhai() {
    let names: Vec<String> = ["id", "patronyme", "count"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows: Vec<Fields> = (0..1000)
        .map(|i| {
            let mut f = Fields::default();
            f.push(&i.to_string());
            f.push(["Lefèvre", "Dupont", "Nguyễn", "O'Brien"][i % 4]);
            f.push(&(i % 37).to_string());
            f
        })
        .collect();
    let n = 1_000_000;
    for source in [
        "row.patronyme.len()",
        "row.count.parse_int() > 10",
        "row.patronyme.to_upper()",
    ] {
        let native = program(source, Some(&names));
        let rhai = program(source, Some(&names)).without_native();
        for (label, p, count) in [("native", &native, n), ("rhai", &rhai, n / 10)] {
            let mut out = Vec::new();
            let started = std::time::Instant::now();
            for i in 0..count {
                let row = RowRef::Text {
                    names: &names,
                    fields: &rows[i % rows.len()],
                };
                p.apply(&row, i as u64, &mut out).unwrap();
            }
            let ns = started.elapsed().as_nanos() as f64 / count as f64;
            println!("{source:32} {label:7} {ns:8.1} ns/row");
        }
    }
}
