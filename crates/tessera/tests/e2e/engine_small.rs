//! Issue 12, the engine: relative paths of a pipeline file resolve against its directory,
//! raster jobs over inputs outside the output, commands given read-only copies of objects,
//! node logs visible while a command runs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn fixture(name: &str) -> String {
    format!(
        "{}/../tessera-raster/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Every kind of relative path: a command's `cwd` (and the default working directory),
/// `files_from`, batch reader and writer, raster inputs, output and cache directory.
const PATHS: &str = r#"nodes:
  - {id: in, type: entry, next: [where, made, lines, slope]}
  - id: where
    type: command
    shell: true
    command: 'pwd > here.txt; mkdir -p work; cd work && pwd > ../there.txt; printf "{}"'
    next: [inside]
  - id: inside
    type: command
    cwd: work
    shell: true
    command: 'pwd > inside.txt; printf "{}"'
    next: [end]
  - id: made
    type: command
    shell: true
    files_from: [outputs]
    command: 'mkdir -p outputs; printf made > outputs/made.txt; printf "{\"f\": {\"\$file\": \"outputs/made.txt\"}}"'
    next: [end]
  - id: lines
    type: batch
    reader: {format: lines, path: data/in.txt}
    processor: {columns: {n: "row.line.len()"}}
    writer: {format: jsonl, path: out/lines.jsonl}
    next: [end]
  - id: slope
    type: raster
    operation: slope
    inputs: {dem: rasters/dem.tif}
    output: rasters/slope.tif
    cache_dir: cache
    next: [end]
  - {id: end, type: end, ready: all_done, input: {made: made.out.f, slope: slope.out.raster}}
"#;

#[test]
fn relative_paths_of_a_pipeline_file_are_the_files() {
    let env = Env::new();
    let dir = env.path("project/pipelines");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::create_dir_all(dir.join("rasters")).unwrap();
    std::fs::write(dir.join("data/in.txt"), "a\nbb\nccc\n").unwrap();
    std::fs::copy(fixture("dem.tif"), dir.join("rasters/dem.tif")).unwrap();
    let pipeline = dir.join("paths.yaml");
    std::fs::write(&pipeline, PATHS).unwrap();
    std::fs::create_dir_all(env.path("elsewhere")).unwrap();
    let r: Run = env
        .cmd()
        .current_dir(env.path("elsewhere"))
        .args(["run", pipeline.to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    let out = r.ok();
    let real = std::fs::canonicalize(&dir).unwrap();
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    assert_eq!(
        read("here.txt").trim(),
        real.to_str().unwrap(),
        "default cwd"
    );
    assert_eq!(
        read("work/inside.txt").trim(),
        real.join("work").to_str().unwrap()
    );
    assert_eq!(out["made"]["name"], "made.txt", "{out}");
    assert_eq!(read("out/lines.jsonl").lines().count(), 3);
    assert!(dir.join("rasters/slope.tif").exists());
    assert_eq!(
        out["slope"],
        real.join("rasters/slope.tif").to_str().unwrap()
    );
    assert!(
        dir.join("cache").is_dir(),
        "the raster cache is the file's too"
    );
    let elsewhere: Vec<_> = std::fs::read_dir(env.path("elsewhere")).unwrap().collect();
    assert!(
        elsewhere.is_empty(),
        "nothing written where tessera was started"
    );
}

#[test]
fn a_resumed_task_resolves_paths_as_its_first_run_did() {
    let env = Env::new();
    let dir = env.path("p");
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = dir.join("flaky.yaml");
    std::fs::write(
        &pipeline,
        "nodes:\n  - {id: in, type: entry, next: [once]}\n  - {id: once, type: command, shell: true, command: 'test -e ok || { touch ok; exit 1; }; pwd > ran.txt; printf \"{}\"', next: [end]}\n  - {id: end, type: end}\n",
    )
    .unwrap();
    let r = env.run(&["run", pipeline.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(dir.join("ok").exists());
    std::fs::create_dir_all(env.path("other")).unwrap();
    let r: Run = env
        .cmd()
        .current_dir(env.path("other"))
        .args(["resume", &r.task_id()])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ran = std::fs::read_to_string(dir.join("ran.txt")).unwrap();
    assert_eq!(
        ran.trim(),
        std::fs::canonicalize(&dir).unwrap().to_str().unwrap()
    );
}
