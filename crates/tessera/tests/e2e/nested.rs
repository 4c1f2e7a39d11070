//! Loops inside loops: 30 × 40 items with a command in the inner body, killed with -9 and
//! resumed, give the result of a clean run; items keep their order at each level; the inner
//! loop sees its own item and the outer one's.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const GRID: &str = r#"
nodes:
  - {id: in, type: entry, next: [rows]}
  - id: rows
    type: loop
    items: in.out.rows
    max_parallel: 3
    nodes:
      - id: cells
        type: loop
        items: loop.item.cells
        max_parallel: 4
        nodes:
          - id: cell
            type: command
            shell: true
            command: "echo x >> {{in.out.dir}}/runs; printf '{\"row\": %s, \"col\": %s, \"v\": %s}' {{loop.parent.index}} {{loop.index}} {{loop.item}}"
            next: [sum]
          - id: sum
            type: node
            after: 'out = #{at: `${cell.out.row}/${cell.out.col}`, v: cell.out.v + loop.parent.item.base};'
    next: [end]
  - {id: end, type: end}
"#;

fn grid_input(env: &Env) -> Value {
    let rows: Vec<Value> = (0..30)
        .map(
            |r| json!({"base": r * 1000, "cells": (0..40).map(|c| r * 40 + c).collect::<Vec<_>>()}),
        )
        .collect();
    json!({"rows": rows, "dir": env.dir.path()})
}

fn expected() -> Value {
    let rows: Vec<Value> = (0..30)
        .map(|r| {
            let cells: Vec<Value> = (0..40)
                .map(|c| json!({"at": format!("{r}/{c}"), "v": r * 40 + c + r * 1000}))
                .collect();
            json!({"items": cells})
        })
        .collect();
    json!({"items": rows})
}

#[test]
fn nested_loops_killed_and_resumed_equal_a_clean_run() {
    // A clean run first.
    let clean = Env::new();
    let p = clean.write("grid.yaml", GRID);
    let v = clean.run(&["validate", p.to_str().unwrap()]);
    assert!(
        v.stdout.contains("(6 nodes)"),
        "loop bodies counted: {}",
        v.stdout
    );
    let input = grid_input(&clean).to_string();
    let out = clean
        .run(&["run", p.to_str().unwrap(), "--input", &input])
        .ok();
    assert_eq!(out, expected());
    assert_eq!(count_lines(&clean.path("runs")), 1200);
    // The inner instances are named by their path through the loops.
    let task = clean
        .run(&["tasks", "list", "--json"])
        .json()
        .as_array()
        .and_then(|a| a.first().cloned())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The document lists the nodes outside branches and summarises every loop instance;
    // an inner loop's items page by its instance key.
    let doc = clean.show(&task);
    let keys: Vec<&str> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["key"].as_str())
        .collect();
    assert_eq!(keys, ["in", "rows", "end"]);
    let loops = doc["loops"].as_array().unwrap();
    assert_eq!(loops.len(), 31, "rows and its 30 inner loops");
    let inner = loops.iter().find(|l| l["key"] == "cells#29").unwrap();
    assert_eq!(inner["mode"], "branches");
    assert_eq!(inner["items"], 40);
    assert_eq!(inner["counts"]["finished"], 40, "{inner}");
    let page = clean
        .run(&[
            "tasks", "items", &task, "cells#29", "--offset", "1", "--limit", "2", "--json",
        ])
        .json();
    assert_eq!(page["items"][0]["index"], 1);
    assert_eq!(
        page["items"][0]["value"],
        json!({"at": "29/1", "v": 29 * 40 + 1 + 29 * 1000})
    );
    // `rows#3` is an item of the outer loop, not a loop; `cells` alone is no loop's key either.
    for not_a_loop in ["rows#3", "cells"] {
        let r = clean.run(&["tasks", "items", &task, not_a_loop]);
        assert_ne!(r.code, 0, "{not_a_loop}: {}", r.stdout);
        assert!(
            r.stderr.contains(&format!("has no loop `{not_a_loop}`")),
            "{not_a_loop}: {}",
            r.stderr
        );
    }
    // Logs by template at any depth, and of one outer instance, in item order.
    let logs = |node: &str| -> Vec<String> {
        let r = clean.run(&["tasks", "logs", &task, node]);
        assert_eq!(r.code, 0, "{node}: {}", r.stderr);
        r.stdout.lines().map(str::to_string).collect()
    };
    let cell = logs("cell");
    assert_eq!(cell.len(), 1200);
    assert!(
        cell[0].starts_with("cells#0/cell#0 [stdout#1] {"),
        "{}",
        cell[0]
    );
    assert!(
        cell[41].starts_with("cells#1/cell#1 [stdout#1] {"),
        "{}",
        cell[41]
    );
    let row = logs("cells#1");
    assert_eq!(row.len(), 40);
    assert!(row.iter().all(|l| l.starts_with("cells#1/cell#")));
    assert!(row[10].starts_with("cells#1/cell#10 "), "{}", row[10]);
    let r = clean.run(&["tasks", "logs", &task, "nope"]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("rows (loop: cells; instances cells#0 … cells#29, 30)"),
        "{}",
        r.stderr
    );

    // Killed twice while the inner commands run, then resumed.
    let env = Env::new();
    let p = env.write("grid.yaml", GRID);
    let input = grid_input(&env).to_string();
    let mut child = env.spawn(&["run", p.to_str().unwrap(), "--input", &input]);
    let task = read_task_id(&mut child);
    let mut kills = 0;
    for at in [200, 700] {
        wait_for("inner commands to run", Duration::from_secs(60), || {
            count_lines(&env.path("runs")) >= at
        });
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = env.spawn(&["resume", &task]);
    }
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), expected());
    let runs = count_lines(&env.path("runs"));
    // Only the commands in flight at a kill ran twice (3 rows × 4 cells at most).
    assert!(
        (1200..=1200 + kills * 12).contains(&runs),
        "{runs} runs for 1200 cells and {kills} kills"
    );
    assert_eq!(env.show(&task)["state"], "finished");
}

#[test]
fn validation_of_nested_loops_names_levels() {
    let env = Env::new();
    let p = env.write(
        "bad.yaml",
        r#"
nodes:
  - {id: in, type: entry, next: [outer]}
  - id: outer
    type: loop
    items: in.out.xs
    nodes:
      - id: inner
        type: loop
        items: loop.item.ys
        nodes:
          - {id: in, type: node, input: {a: loop.parent.parent.item}}
    next: [end]
  - {id: end, type: end}
"#,
    );
    let r = env.run(&["validate", p.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(
        text.contains("template id `in` is also the id of a node outside this loop"),
        "{text}"
    );
    assert!(
        text.contains("reaches 3 loop(s) out, but this node is inside 2 loop(s)"),
        "{text}"
    );
}
