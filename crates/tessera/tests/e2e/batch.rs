//! End-to-end tests of the `batch` node with the real binary: the patronymes example against
//! a csv-crate reference, kill -9 during a chunk and during assembly, bad rows with and without
//! skip, transient command failures, refused resumes, edge cases and bounded memory.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The seed's job computed independently (csv crate): `length` = Unicode characters of
/// `patronyme`, minimal quoting, `\n` endings.
pub(crate) fn reference_lengths(input: &Path) -> Vec<u8> {
    let mut rdr = csv::Reader::from_path(input).unwrap();
    let mut wtr = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut h = rdr.headers().unwrap().clone();
    h.push_field("length");
    wtr.write_record(&h).unwrap();
    for rec in rdr.records() {
        let mut rec = rec.unwrap();
        let n = rec[0].chars().count().to_string();
        rec.push_field(&n);
        wtr.write_record(&rec).unwrap();
    }
    wtr.into_inner().unwrap()
}

pub(crate) fn sample(env: &Env, rows: u64, name: &str) -> std::path::PathBuf {
    let path = env.path(name);
    let r = env.run(&[
        "sample",
        "patronymes",
        "--rows",
        &rows.to_string(),
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    path
}

/// A one-batch-node pipeline; `batch` is the node's YAML body (indented by 4).
fn pipeline(env: &Env, name: &str, batch: &str) -> String {
    let text = format!(
        "nodes:\n  - {{id: in, type: entry, next: [job]}}\n  - id: job\n    type: batch\n{batch}    next: [end]\n  - {{id: end, type: end}}\n"
    );
    env.write(name, &text).display().to_string()
}

fn batch_doc(env: &Env, task: &str) -> Value {
    env.show(task)["batches"][0].clone()
}

/// A row expression Rhai must evaluate (not compiled natively): slow enough to kill mid-run,
/// same result as `row.patronyme.len()`.
pub(crate) const SLOW_LENGTH: &str =
    "if row.patronyme.len() >= 0 { row.patronyme.len() } else { 0 }";

#[test]
fn example_patronymes_matches_an_independent_reference() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("data")).unwrap();
    let input = sample(&env, 800_000, "data/patronymes.csv");
    // The example as it is, two levels below data/ and out/ as in the repository; run from
    // elsewhere (its paths are the file's).
    std::fs::create_dir_all(env.path("examples/pipelines")).unwrap();
    let pipeline = env.path("examples/pipelines/patronymes.yaml");
    std::fs::copy(format!("{}/patronymes.yaml", crate::EXAMPLES), &pipeline).unwrap();
    std::fs::create_dir_all(env.path("elsewhere")).unwrap();
    let r: Run = env
        .cmd()
        .current_dir(env.path("elsewhere"))
        .args(["run", pipeline.to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    let out = r.ok();
    assert_eq!(out["read"], 800_000);
    assert_eq!(out["written"], 800_000);
    assert_eq!(out["chunks"], 5);
    assert!(
        r.stderr
            .contains("batch lengths: 800000/800000 rows, 5/5 chunks"),
        "{}",
        r.stderr
    );
    let got = std::fs::read(env.path("out/patronymes_tailles.csv")).unwrap();
    assert!(
        got == reference_lengths(&input),
        "output differs from the csv-crate reference"
    );
    let doc = batch_doc(&env, &r.task_id());
    assert_eq!(doc["state"], "finished");
    assert_eq!(doc["counts"]["chunk_states"]["committed"], 5);
    assert!(
        !env.path("data/work").join(r.task_id()).exists(),
        "temporary chunk files are removed after success"
    );
}

#[test]
fn kill_9_during_a_chunk_then_resume_is_byte_identical() {
    let env = Env::new();
    let input = sample(&env, 300_000, "in.csv");
    let p = pipeline(
        &env,
        "slow.yaml",
        &format!(
            "    reader: {{format: csv, path: in.csv}}\n    processor: {{columns: {{length: \"{SLOW_LENGTH}\"}}}}\n    writer: {{format: csv, path: out.csv}}\n    chunk_size: 10000\n    parallelism: 2\n"
        ),
    );
    let mut child = env.spawn(&["run", &p]);
    let task = read_task_id(&mut child);
    wait_for("two committed chunks", Duration::from_secs(60), || {
        let doc = env.show(&task);
        doc["batches"][0]["counts"]["chunk_states"]["committed"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = batch_doc(&env, &task);
    let committed = before["counts"]["chunk_states"]["committed"]
        .as_u64()
        .unwrap();
    assert!(committed < 30, "killed before the end: {before}");
    let r = env.run(&["resume", &task]);
    let out = r.ok();
    assert_eq!(out["written"], 300_000);
    assert!(std::fs::read(env.path("out.csv")).unwrap() == reference_lengths(&input));
    let logs = env.run(&["tasks", "logs", &task]);
    assert!(
        logs.stdout.contains(&format!(
            "resuming: {committed} of 30 chunks already committed"
        )),
        "{}",
        logs.stdout
    );
    let after = batch_doc(&env, &task);
    assert_eq!(after["starts"], 2);
    // Chunks committed before the kill were not processed again.
    let chunks_before = before["chunks"].as_array().unwrap();
    let kept = chunks_before
        .iter()
        .zip(after["chunks"].as_array().unwrap())
        .filter(|(b, _)| b["state"] == "committed")
        .inspect(|(b, a)| assert_eq!(b["committed_at"], a["committed_at"], "{b} then {a}"))
        .count();
    assert_eq!(kept as u64, committed);
}

#[test]
fn kill_9_during_assembly_then_resume_is_byte_identical() {
    let env = Env::new();
    let input = sample(&env, 50_000, "in.csv");
    let p = pipeline(
        &env,
        "p.yaml",
        "    reader: {format: csv, path: in.csv}\n    processor: {columns: {length: \"row.patronyme.len()\"}}\n    writer: {format: csv, path: out/result.csv}\n    chunk_size: 5000\n",
    );
    let marker = env.path("assembling");
    let mut child = env
        .cmd()
        .args(["run", &p])
        .env("TESSERA_TEST_STALL_ASSEMBLY", &marker)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let task = read_task_id(&mut child);
    wait_for("the assembly to start", Duration::from_secs(30), || {
        marker.exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !env.path("out/result.csv").exists(),
        "the output appears only complete"
    );
    let r = env.run(&["resume", &task]);
    r.ok();
    assert!(std::fs::read(env.path("out/result.csv")).unwrap() == reference_lengths(&input));
    let names: Vec<String> = std::fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["result.csv"], "no temporary file left");
}

const BAD_INPUT: &str = "patronyme,count\nDupont,1\nLefèvre,2\nBad,row,3\nÉmile,4\nNA,NULL\n";

#[test]
fn a_bad_row_fails_the_job_with_its_line_or_is_skipped_and_recorded() {
    let env = Env::new();
    env.write("in.csv", BAD_INPUT);
    let body = "    reader: {format: csv, path: in.csv}\n    processor: {columns: {length: \"row.patronyme.len()\"}}\n    writer: {format: csv, path: out.csv}\n    chunk_size: 2\n";
    let strict = pipeline(&env, "strict.yaml", body);
    let r = env.run(&["run", &strict]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let last = r.last_stderr_line();
    assert!(
        // Paths are the pipeline file's, shown resolved.
        last.contains(&format!(
            "line 4 of {}: expected 2 fields (patronyme, count), found 3",
            env.path("in.csv").display()
        )) && last.contains("Bad,row,3")
            && last.contains("skip: {limit: N}"),
        "{last}"
    );
    let doc = batch_doc(&env, &r.task_id());
    assert_eq!(doc["state"], "failed");
    let line = &doc["lines"][0];
    assert_eq!(
        (
            line["line"].clone(),
            line["state"].clone(),
            line["raw"].clone()
        ),
        (json!(4), json!("failed"), json!("Bad,row,3"))
    );
    assert!(!env.path("out.csv").exists());

    let lenient = pipeline(
        &env,
        "lenient.yaml",
        &format!("{body}    skip: {{limit: 1}}\n"),
    );
    let r = env.run(&["run", &lenient]);
    let out = r.ok();
    assert_eq!(
        (
            out["read"].clone(),
            out["written"].clone(),
            out["skipped"].clone()
        ),
        (json!(5), json!(4), json!(1))
    );
    assert_eq!(
        std::fs::read_to_string(env.path("out.csv")).unwrap(),
        "patronyme,count,length\nDupont,1,6\nLefèvre,2,7\nÉmile,4,5\nNA,NULL,2\n"
    );
    let doc = batch_doc(&env, &r.task_id());
    assert_eq!(doc["lines"][0]["state"], "skipped");
    assert_eq!(doc["lines"][0]["kind"], "parse");
    assert_eq!(doc["counts"]["skipped"], 1);

    // An expression error is skippable only when asked for.
    let expr = pipeline(
        &env,
        "expr.yaml",
        "    reader: {format: csv, path: in.csv}\n    processor: {columns: {n: \"row.count.parse_int()\"}}\n    writer: {format: csv, path: n.csv}\n    skip: {limit: 5, on: [parse]}\n",
    );
    let r = env.run(&["run", &expr]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line().contains(&format!(
            "line 6 of {}: columns.n",
            env.path("in.csv").display()
        )),
        "{}",
        r.stderr
    );
}

/// A command processor that fails on chunks holding `BAD` until `fixed` exists, and fails the
/// first attempt of every chunk when `flaky` exists (a transient failure).
const FILTER_SCRIPT: &str = r#"#!/bin/sh
data=$(cat)
if [ -f flaky ]; then
  key=$(printf '%s' "$data" | cksum | cut -d' ' -f1)
  if [ ! -f "seen-$key" ]; then touch "seen-$key"; echo "flaky failure" >&2; exit 75; fi
fi
if printf '%s' "$data" | grep -q BAD && [ ! -f fixed ]; then echo "cannot handle BAD" >&2; exit 3; fi
printf '%s\n' "$data" | awk -F, 'BEGIN{OFS=","} NR==1{print $0,"upper"; next} {print $0,toupper($1)}'
"#;

#[test]
fn a_failing_command_chunk_fixed_then_resumed_and_a_transient_failure_retried() {
    let env = Env::new();
    let mut text = String::from("name,n\n");
    for i in 0..40 {
        text.push_str(&format!("{}{i},{i}\n", if i == 25 { "BAD" } else { "ok" }));
    }
    env.write("in.csv", &text);
    env.write("filter.sh", FILTER_SCRIPT);
    let body = "    reader: {format: csv, path: in.csv}\n    processor: {command: [sh, filter.sh]}\n    writer: {format: csv, path: out.csv}\n    chunk_size: 10\n    parallelism: 2\n    retry: {attempts: 2, backoff: 10ms}\n";
    let p = pipeline(&env, "p.yaml", body);
    let r = env.run(&["run", &p]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.last_stderr_line().contains("cannot handle BAD"),
        "{}",
        r.stderr
    );
    let task = r.task_id();
    let doc = batch_doc(&env, &task);
    let failed: Vec<&Value> = doc["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["index"], 2);
    assert_eq!(failed[0]["attempts"], 2, "retried once before failing");
    std::fs::write(env.path("fixed"), "").unwrap();
    let out = env.run(&["resume", &task]).ok();
    assert_eq!(out["written"], 40);
    let resumed = std::fs::read(env.path("out.csv")).unwrap();

    // The clean run, with a transient failure on every chunk's first attempt.
    std::fs::write(env.path("flaky"), "").unwrap();
    let clean = pipeline(&env, "clean.yaml", &body.replace("out.csv", "clean.csv"));
    let r = env.run(&["run", &clean]);
    r.ok();
    assert_eq!(std::fs::read(env.path("clean.csv")).unwrap(), resumed);
    let doc = batch_doc(&env, &r.task_id());
    assert!(
        doc["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["attempts"] == 2),
        "{doc}"
    );
    assert!(String::from_utf8_lossy(&resumed).contains("BAD25,25,BAD25"));
}

#[test]
fn a_change_in_committed_input_or_a_missing_committed_output_is_refused_on_resume() {
    let env = Env::new();
    let mut text = String::from("name,n\n");
    for i in 0..40 {
        text.push_str(&format!("{}{i},{i}\n", if i == 35 { "BAD" } else { "ok" }));
    }
    env.write("in.csv", &text);
    env.write("filter.sh", FILTER_SCRIPT);
    let p = pipeline(
        &env,
        "p.yaml",
        "    reader: {format: csv, path: in.csv}\n    processor: {command: [sh, filter.sh]}\n    writer: {format: csv, path: out.csv}\n    chunk_size: 10\n    parallelism: 1\n    start_limit: 4\n",
    );
    let r = env.run(&["run", &p]);
    assert_eq!(r.code, 1);
    let task = r.task_id();
    std::fs::write(env.path("fixed"), "").unwrap();

    // Same size, same modification time, different committed bytes: the hash tells.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("in.csv"))
        .unwrap();
    let mtime = file.metadata().unwrap().modified().unwrap();
    std::fs::write(env.path("in.csv"), text.replacen("ok1,", "OK1,", 1)).unwrap();
    file.set_modified(mtime).unwrap();
    let r = env.run(&["resume", &task]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("changed inside its committed part: line 3 changed")
            && r.last_stderr_line().contains("start a new run"),
        "{}",
        r.stderr
    );

    // Shorter than the committed part: refused too.
    std::fs::write(env.path("in.csv"), &text[..30]).unwrap();
    let r = env.run(&["resume", &task]);
    assert!(
        r.last_stderr_line().contains("is now shorter"),
        "{}",
        r.stderr
    );
    // start_limit: the refused resumes did not count as starts; one more start is refused.
    let doc = batch_doc(&env, &task);
    assert_eq!(doc["starts"], 1);

    // A missing or truncated committed output is refused with its name.
    let env2 = Env::new();
    env2.write("in.csv", &text);
    env2.write("filter.sh", FILTER_SCRIPT);
    let p2 = pipeline(
        &env2,
        "p.yaml",
        "    reader: {format: csv, path: in.csv}\n    processor: {command: [sh, filter.sh]}\n    writer: {format: csv, path: out.csv}\n    chunk_size: 10\n    parallelism: 1\n",
    );
    let r = env2.run(&["run", &p2]);
    let task2 = r.task_id();
    assert_eq!(
        batch_doc(&env2, &task2)["counts"]["chunk_states"]["committed"],
        3
    );
    std::fs::write(env2.path("fixed"), "").unwrap();
    let tmp = env2.path(".out.csv.tessera-tmp");
    let committed = std::fs::read(&tmp).unwrap();
    std::fs::write(&tmp, &committed[..committed.len() - 1]).unwrap();
    let r = env2.run(&["resume", &task2]);
    assert!(
        r.last_stderr_line()
            .contains("the committed output of chunks 0..3")
            && r.last_stderr_line().contains("fewer than"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(&tmp).unwrap();
    let r = env2.run(&["resume", &task2]);
    assert!(
        r.last_stderr_line().contains(&format!(
            "the committed output of chunks 0..3 ({}) is missing",
            env2.path(".out.csv.tessera-tmp").display()
        )),
        "{}",
        r.stderr
    );
    assert!(!env2.path("out.csv").exists());
}

#[test]
fn start_limit_refuses_one_start_too_many() {
    let env = Env::new();
    env.write("in.csv", "name,n\nBAD,1\n");
    env.write("filter.sh", FILTER_SCRIPT);
    let p = pipeline(
        &env,
        "p.yaml",
        "    reader: {format: csv, path: in.csv}\n    processor: {command: [sh, filter.sh]}\n    writer: {format: csv, path: out.csv}\n    start_limit: 2\n",
    );
    let r = env.run(&["run", &p]);
    let task = r.task_id();
    assert_eq!(env.run(&["resume", &task]).code, 1);
    std::fs::write(env.path("fixed"), "").unwrap();
    let r = env.run(&["resume", &task]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("started 3 times; its start_limit is 2"),
        "{}",
        r.stderr
    );
}

#[test]
fn edge_cases_header_only_partial_chunks_quoted_newlines_and_other_formats() {
    let env = Env::new();
    let run = |name: &str, body: &str| -> Value {
        let p = pipeline(&env, &format!("{name}.yaml"), body);
        env.run(&["run", &p]).ok()
    };
    // Header only.
    env.write("header.csv", "patronyme,count\n");
    let out = run(
        "h",
        "    reader: {format: csv, path: header.csv}\n    processor: {columns: {length: \"row.patronyme.len()\"}}\n    writer: {format: csv, path: h.csv}\n",
    );
    assert_eq!(
        (out["read"].clone(), out["chunks"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        std::fs::read_to_string(env.path("h.csv")).unwrap(),
        "patronyme,count,length\n"
    );

    // Quoted newlines right where chunks are cut, a last partial chunk, NA/NULL, `;`, CRLF.
    let text = "nom;note\r\n\"a\nb\";1\r\n\"c;d\";NA\r\n\"\"\"e\"\"\nf\";NULL\r\ng;\r\nh;5";
    env.write("semi.csv", text);
    let out = run(
        "s",
        "    reader: {format: csv, path: semi.csv, delimiter: \";\"}\n    processor: {columns: {len: \"row.nom.len()\"}, filter: \"row.nom != \\\"g\\\"\"}\n    writer: {format: csv, path: s.csv}\n    chunk_size: 2\n",
    );
    assert_eq!(
        (
            out["read"].clone(),
            out["written"].clone(),
            out["filtered"].clone(),
            out["chunks"].clone()
        ),
        (json!(5), json!(4), json!(1), json!(3))
    );
    assert_eq!(
        std::fs::read_to_string(env.path("s.csv")).unwrap(),
        "nom;note;len\n\"a\nb\";1;3\n\"c;d\";NA;3\n\"\"\"e\"\"\nf\";NULL;5\nh;5;1\n"
    );

    // JSON Lines in, CSV out; plain lines in, JSON Lines out.
    env.write(
        "in.jsonl",
        "{\"name\": \"Zoë\", \"n\": 2}\n\n{\"name\": \"Loïc, fils\", \"n\": 3}\n",
    );
    run(
        "j",
        "    reader: {format: jsonl, path: in.jsonl}\n    processor: {columns: {double: \"row.n * 2\"}}\n    writer: {format: csv, path: j.csv}\n",
    );
    assert_eq!(
        std::fs::read_to_string(env.path("j.csv")).unwrap(),
        "name,n,double\nZoë,2,4\n\"Loïc, fils\",3,6\n"
    );
    env.write("in.txt", "première ligne\nsecond\n");
    run(
        "l",
        "    reader: {format: lines, path: in.txt}\n    processor: {columns: {chars: \"row.line.len()\"}}\n    writer: {format: jsonl, object: lines.jsonl}\n",
    );
    let bad_json = pipeline(
        &env,
        "bj.yaml",
        "    reader: {format: jsonl, path: in.txt}\n    writer: {format: jsonl, path: x.jsonl}\n",
    );
    let r = env.run(&["run", &bad_json]);
    assert!(
        r.last_stderr_line().contains(&format!(
            "reader: {}: line 1: invalid JSON",
            env.path("in.txt").display()
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn an_object_output_is_stored_and_named_in_the_result() {
    let env = Env::new();
    env.write("in.txt", "première ligne\nsecond\n");
    let p = pipeline(
        &env,
        "l.yaml",
        "    reader: {format: lines, path: in.txt}\n    processor: {columns: {chars: \"row.line.len()\"}}\n    writer: {format: jsonl, object: lines.jsonl}\n",
    );
    let out = env.run(&["run", &p]).ok();
    let id = out["output"]["$object"]
        .as_str()
        .expect("an object reference");
    let stored = std::fs::read_to_string(env.path("data/store/objects").join(id)).unwrap();
    assert_eq!(
        stored,
        "{\"line\":\"première ligne\",\"chars\":14}\n{\"line\":\"second\",\"chars\":6}\n"
    );
}

/// Peak RSS (KiB) of a `tessera run`: its high-water mark (VmHWM), read until it exits.
fn peak_rss_kib(env: &Env, pipeline: &str) -> i64 {
    let mut child = env
        .cmd()
        .args(["run", pipeline])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0i64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn memory_stays_bounded_by_parallelism_times_chunk_size() {
    let env = Env::new();
    sample(&env, 100_000, "small.csv");
    // ~80 MB: more than 40× the bound (2 chunks of 20,000 rows ≈ 0.5 MB in, 0.6 MB out).
    sample(&env, 6_400_000, "big.csv");
    let body = |input: &str, out: &str| {
        format!(
            "    reader: {{format: csv, path: {input}}}\n    processor: {{columns: {{length: \"row.patronyme.len()\"}}}}\n    writer: {{format: csv, path: {out}}}\n    chunk_size: 20000\n    parallelism: 2\n"
        )
    };
    let small = pipeline(&env, "small.yaml", &body("small.csv", "small.out.csv"));
    let big = pipeline(&env, "big.yaml", &body("big.csv", "big.out.csv"));
    let small_rss = peak_rss_kib(&env, &small);
    let big_rss = peak_rss_kib(&env, &big);
    let file_kib = (std::fs::metadata(env.path("big.csv")).unwrap().len() / 1024) as i64;
    // The allocator keeps freed pages for reuse, a few MB more on a loaded machine (more
    // blocking threads, each with its own heap): the bound is a fifth of the file, where
    // memory proportional to the input would take all of it.
    assert!(
        big_rss - small_rss < file_kib / 5,
        "peak RSS grew from {small_rss} KiB to {big_rss} KiB for a {file_kib} KiB file"
    );
}
