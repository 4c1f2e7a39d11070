//! Issue 12, the engine: relative paths of a pipeline file resolve against its directory,
//! raster jobs over inputs outside the output, commands given read-only copies of objects,
//! node logs visible while a command runs.

use std::time::Duration;

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

/// Commands that write to the file of their input object, by its template path or by the
/// `path` their stdin gives: later nodes and the store still have the original bytes.
const VANDALS: &str = r#"nodes:
  - {id: in, type: entry, api: {route: vandals, body: doc}, next: [by_path, by_stdin]}
  - id: by_path
    type: command
    shell: true
    command: 'chmod u+w {{doc}}; echo corrupted > {{doc}}; chmod 777 {{doc}}; printf "{\"seen\": \"%s\"}" "$(cat {{doc}})"'
    stdin: false
    next: [read]
  - id: by_stdin
    type: command
    shell: true
    command: 'p=$(sed -n "s/.*\"path\":\"\([^\"]*\)\".*/\1/p"); chmod u+w "$p"; : > "$p"; printf "{\"size\": %s}" "$(wc -c < "$p")"'
    next: [read]
  - id: read
    type: command
    ready: all_done
    command: [cat, '{{in.out.doc}}']
    stdin: false
    next: [end]
  - {id: end, type: end, input: {by_path: by_path.out.seen, by_stdin: by_stdin.out.size, read: read.out.stdout, doc: in.out.doc}}
"#;

#[test]
fn commands_cannot_alter_a_stored_object_through_its_path() {
    let env = Env::new();
    let p = env.write("vandals.yaml", VANDALS);
    env.write("doc.txt", "original bytes\n");
    let out = env
        .run(&["run", p.to_str().unwrap(), "--file", "doc=@doc.txt"])
        .ok();
    assert_eq!(
        out["by_path"], "corrupted",
        "each wrote its own copy: {out}"
    );
    assert_eq!(out["by_stdin"], 0, "{out}");
    assert_eq!(
        out["read"], "original bytes\n",
        "a later node sees the original"
    );
    let id = out["doc"]["$object"].as_str().unwrap();
    let stored = env.path("data/store/objects").join(id);
    let bytes = std::fs::read(&stored).unwrap();
    assert_eq!(bytes, b"original bytes\n");
    use sha2::Digest;
    assert_eq!(
        out["doc"]["sha256"],
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "stored objects are read-only");
    let got = env.run(&["objects", "get", id]);
    assert_eq!(got.stdout, "original bytes\n");
    // The copies are gone with their commands.
    let work = env.path("data/work");
    let leftovers: Vec<_> = walk(&work)
        .into_iter()
        .filter(|p| p.contains("inputs"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path().display().to_string());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn a_running_commands_lines_are_in_its_log_before_it_ends() {
    let env = Env::new();
    let p = env.write(
        "slow.yaml",
        "nodes:\n  - {id: in, type: entry, next: [slow]}\n  - {id: slow, type: command, shell: true, command: 'echo first line; echo on stderr >&2; sleep 4; echo last line; printf \"{}\"', next: [end]}\n  - {id: end, type: end}\n",
    );
    let mut child = env.spawn(&["run", p.to_str().unwrap()]);
    let task = read_task_id(&mut child);
    let started = std::time::Instant::now();
    let mut seen = String::new();
    wait_for(
        "the first lines in the log",
        Duration::from_secs(10),
        || {
            seen = env.run(&["tasks", "logs", &task, "slow"]).stdout;
            seen.contains("first line") && seen.contains("on stderr")
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "seen after {:?}, while the command sleeps",
        started.elapsed()
    );
    assert!(!seen.contains("last line"), "{seen}");
    assert!(child.try_wait().unwrap().is_none(), "the task still runs");
    assert!(child.wait().unwrap().success());
    let all = env.run(&["tasks", "logs", &task, "slow"]).stdout;
    let mut lines: Vec<&str> = all.lines().collect();
    // Two pipes: the first two lines may arrive in either order.
    lines[..2].sort();
    assert_eq!(
        lines,
        [
            "[stderr#1] on stderr",
            "[stdout#1] first line",
            "[stdout#1] last line",
            "[stdout#1] {}"
        ],
        "each line once, in order"
    );
}
