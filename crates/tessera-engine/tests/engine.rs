//! Engine tests on a real SQLite file, a real object store and real processes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::scheduler::{Record, TaskState};
use tessera_core::{Scripts, load_document};
use tessera_engine::{Engine, EngineConfig, EngineError, Submission};
use tessera_store::{Durability, Objects, SqliteStore};

struct Fixture {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    engine: Engine,
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// A fixture whose engine settings are adjusted by `configure`.
fn fixture_with(configure: impl FnOnce(&mut EngineConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), Durability::Full).unwrap();
    let objects = Objects::local(&dir.path().join("store")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = EngineConfig::new(dir.path().join("work"));
    configure(&mut config);
    let engine = Engine::new(Arc::new(store), objects, runtime.handle().clone(), config).unwrap();
    Fixture {
        _dir: dir,
        runtime,
        engine,
    }
}

/// Another engine (another runner) on the fixture's store and objects.
fn second_engine(f: &Fixture) -> Engine {
    let work = f._dir.path().join("work-2");
    Engine::new(
        f.engine.store().clone(),
        f.engine.objects().clone(),
        f.runtime.handle().clone(),
        EngineConfig::new(work),
    )
    .unwrap()
}

fn submit(f: &Fixture, yaml: &str, input: Value) -> tessera_engine::TaskHandle {
    let (pipeline, definition) = load_document(yaml, &Scripts::default()).unwrap();
    f.engine
        .submit(Submission {
            definition,
            pipeline: pipeline.into(),
            input: input.into(),
            owner: None,
            id: None,
            base_dir: None,
            tick: None,
        })
        .unwrap()
}

#[test]
fn a_task_runs_and_every_node_is_recorded() {
    let f = fixture();
    let yaml = "nodes:\n  - {id: in, type: entry, next: [echo]}\n  - {id: echo, type: command, command: [cat], next: [end]}\n  - {id: end, type: end}\n";
    let h = submit(&f, yaml, json!({"hello": "world"}));
    let outcome = h.wait().unwrap();
    assert_eq!(outcome.state, TaskState::Finished);
    assert_eq!(outcome.result.unwrap(), json!({"hello": "world"}));
    let store = f.engine.store();
    let task = store.task(&h.id).unwrap().unwrap();
    assert_eq!(task.state.as_str(), "finished");
    let runs = store.node_runs(&h.id).unwrap();
    assert_eq!(runs.len(), 3);
    let echo = runs.iter().find(|r| r.key == "echo").unwrap();
    assert_eq!(echo.input, Some(json!({"hello": "world"}).into()));
    assert_eq!(echo.state.as_str(), "finished");
    assert_eq!(h.progress().finished, 3);
}

#[test]
fn cancelling_a_handle_kills_the_command_and_records_it() {
    let f = fixture();
    let yaml = "nodes:\n  - {id: in, type: entry, next: [long]}\n  - {id: long, type: command, command: [sleep, \"30\"], next: [end]}\n  - {id: end, type: end}\n";
    let h = submit(&f, yaml, json!({}));
    let store = f.engine.store().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store
        .node_runs(&h.id)
        .unwrap()
        .iter()
        .any(|r| r.key == "long" && r.state.as_str() == "running")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "command never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.cancel("test");
    let outcome = h
        .wait_timeout(Duration::from_secs(10))
        .expect("cancel is prompt")
        .unwrap();
    assert_eq!(outcome.state, TaskState::Cancelled);
    let long = store
        .node_runs(&h.id)
        .unwrap()
        .into_iter()
        .find(|r| r.key == "long")
        .unwrap();
    assert_eq!(long.state.as_str(), "cancelled");
}

#[test]
fn resume_is_refused_while_this_process_runs_the_task() {
    let f = fixture();
    let yaml = "nodes:\n  - {id: in, type: entry, next: [long]}\n  - {id: long, type: command, command: [sleep, \"30\"], next: [end]}\n  - {id: end, type: end}\n";
    let h = submit(&f, yaml, json!({}));
    match f.engine.resume(&h.id, tessera_engine::Fix::default()) {
        Err(EngineError::NotResumable { reason, .. }) => {
            assert!(reason.contains("still being run"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    h.cancel("done");
    h.wait().unwrap();
    assert!(matches!(
        f.engine
            .resume("no-such-task", tessera_engine::Fix::default()),
        Err(EngineError::NotFound(_))
    ));
    drop(f.runtime);
}

#[test]
fn a_http_node_without_a_server_fails_after_its_retries() {
    let f = fixture();
    // Bind then drop a listener: the port is closed, so connections are refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, next: [call]}}\n  - {{id: call, type: http, url: \"http://127.0.0.1:{port}/x\", retry: {{attempts: 2, backoff: 10ms}}, next: [end]}}\n  - {{id: end, type: end}}\n"
    );
    let h = submit(&f, &yaml, json!({}));
    let outcome = h.wait().unwrap();
    assert_eq!(outcome.state, TaskState::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.starts_with("node `call` failed (attempt 2): GET http://127.0.0.1:"),
        "{err}"
    );
    let logs = f.engine.store().logs(&h.id, Some("call")).unwrap();
    assert!(logs.iter().any(|l| l.line.contains("attempt 1 failed")));
}

#[test]
fn a_task_held_by_another_runner_is_claimed_once_its_lease_runs_out_and_fences_it() {
    let f = fixture();
    let yaml = "nodes:\n  - {id: in, type: entry, next: [long]}\n  - {id: long, type: command, command: [sleep, \"30\"], next: [end]}\n  - {id: end, type: end}\n";
    let store = f.engine.store().clone();
    // A task recorded as held by a runner that no longer renews (killed with -9).
    let (pipeline, doc) =
        tessera_core::load_document(yaml, &tessera_core::Scripts::default()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    store
        .create_task(&tessera_store::NewTask {
            id: "held".into(),
            pipeline: pipeline.name.clone(),
            definition: doc,
            input: json!({}).into(),
            created_at: now,
            owner: None,
            runner: Some("elsewhere:1:dead".into()),
            lease_until: now + 400,
            base_dir: None,
            scheduled_at: None,
            needs: Vec::new(),
        })
        .unwrap();
    match f.engine.resume("held", tessera_engine::Fix::default()) {
        Err(e @ EngineError::Held { .. }) => {
            assert!(
                e.to_string().contains("held by elsewhere:1:dead until"),
                "{e}"
            )
        }
        other => panic!("expected a refusal while the lease runs, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(450));
    let h = f
        .engine
        .resume("held", tessera_engine::Fix::default())
        .expect("claimed once the lease ran out");
    let row = store.task("held").unwrap().unwrap();
    assert_eq!(row.fence, 2);
    assert_ne!(row.runner.as_deref(), Some("elsewhere:1:dead"));
    // The old holder's late commit is refused.
    let late = Record::Task {
        state: TaskState::Finished,
        result: None,
        error: None,
    };
    let refused = store.commit(&tessera_store::CommitBatch {
        task_id: "held",
        fence: 1,
        records: vec![&late],
        cache: Vec::new(),
        now,
        lease_until: None,
    });
    assert!(
        matches!(refused, Err(tessera_store::StoreError::Fenced(_))),
        "{refused:?}"
    );
    // Another engine cannot take it while this one holds it.
    let other = second_engine(&f);
    assert!(matches!(
        other.resume("held", tessera_engine::Fix::default()),
        Err(EngineError::Held { .. })
    ));
    h.cancel("done");
    assert_eq!(h.wait().unwrap().state, TaskState::Cancelled);
}

#[test]
fn a_panicking_driver_stops_its_jobs_and_fails_its_task_which_resumes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // An embedder's observer that panics once, when `short` finishes while `long` runs.
    let armed = Arc::new(AtomicBool::new(true));
    let trigger = armed.clone();
    let f = fixture_with(move |c| {
        c.observer = Some(Arc::new(move |_task, records| {
            let short_done = records.iter().any(|r| {
                matches!(r, tessera_core::scheduler::Record::Node(n)
                    if n.key == "short" && n.state == tessera_core::scheduler::NodeState::Finished)
            });
            if short_done && trigger.swap(false, Ordering::SeqCst) {
                panic!("observer bug");
            }
        }));
    });
    let dir = f._dir.path().display().to_string();
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, next: [long, short]}}\n  - {{id: long, type: command, shell: true, command: \"echo $$ > {dir}/long.pid; if [ ! -f {dir}/again ]; then touch {dir}/again; sleep 30; fi; echo '{{}}'\", next: [end]}}\n  - {{id: short, type: command, shell: true, command: \"sleep 0.3; echo '{{}}'\", next: [end]}}\n  - {{id: end, type: end, wait_all: true}}\n"
    );
    let h = submit(&f, &yaml, json!({}));
    let err = h.wait().unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    let pid: i32 = std::fs::read_to_string(f._dir.path().join("long.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
            })
            == Some(false)
    };
    assert!(!alive(), "the running command was killed with its driver");
    let task = f.engine.store().task(&h.id).unwrap().unwrap();
    assert_eq!(task.state.as_str(), "failed");
    assert!(task.error.unwrap().contains("observer bug"));
    // Nothing holds it any more: it resumes at once, in this process.
    let outcome = f
        .engine
        .resume(&h.id, tessera_engine::Fix::default())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(outcome.state, TaskState::Finished);
}

/// A task's driver starts while its creation is committed (a loop computed in the process
/// overlaps that fsync): when the creation fails, nothing of the task is written and nothing
/// outside the process is started.
#[test]
fn a_task_the_store_cannot_record_writes_nothing_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), Durability::Full).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new(
        store.clone(),
        Objects::local(&dir.path().join("store")).unwrap(),
        runtime.handle().clone(),
        EngineConfig::new(dir.path().join("work")),
    )
    .unwrap();
    use tessera_store::{Logs, Tasks};
    let marker = dir.path().join("ran");
    // The loop's items run in chunks in the process; the command after it is a process.
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, next: [each]}}\n  - id: each\n    type: loop\n    items: in.out.items\n    collect: loop.m.out\n    max_failed_items: 100\n    next: [touch]\n    nodes:\n      - id: m\n        type: node\n        after: \"if item % 1000 == 7 {{ throw `bad item`; }} out = item * 2;\"\n  - {{id: touch, type: command, command: [touch, \"{}\"], next: [end]}}\n  - {{id: end, type: end}}\n",
        marker.display()
    );
    let (pipeline, definition) = load_document(&yaml, engine.scripts()).unwrap();
    let submission = |id: &str, items: u64| Submission {
        definition: definition.clone(),
        pipeline: pipeline.clone().into(),
        input: json!({ "items": (0..items).collect::<Vec<u64>>() }).into(),
        owner: None,
        id: Some(id.to_string()),
        base_dir: None,
        tick: None,
    };
    // Room for the schema, not for the task's input.
    store
        .set_max_size(Some(store.size().unwrap() + 8192))
        .unwrap();
    let err = engine.submit(submission("refused", 50_000)).unwrap_err();
    assert!(
        matches!(&err, EngineError::Store(e) if e.is_full()),
        "the creation's own error: {err}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.is_driving("refused") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!engine.is_driving("refused"), "its driver stopped");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "the command after the loop never ran");
    store.set_max_size(None).unwrap();
    assert!(store.task("refused").unwrap().is_none());
    assert!(store.node_runs("refused").unwrap().is_empty());
    assert!(
        store.logs("refused", None).unwrap().is_empty(),
        "the failed items' logs were not kept either"
    );
    // A creation refused for another cause (the id is taken): nothing of the submission is
    // written under that id, not even the failed items' logs.
    // (A short loop: it ends, and logs its failed item, before its records are due.)
    engine.enqueue(submission("taken", 10)).unwrap();
    let err = engine.submit(submission("taken", 10)).unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    while engine.is_driving("taken") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(store.logs("taken", None).unwrap().is_empty());
    assert!(store.node_runs("taken").unwrap().is_empty());
    assert!(!marker.exists());
    // With room again, the same submission runs and is recorded.
    let outcome = engine
        .submit(submission("accepted", 50_000))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(outcome.state, TaskState::Finished, "{:?}", outcome.error);
    assert!(marker.exists());
    let runs = store.node_runs("accepted").unwrap();
    assert!(
        runs.iter()
            .any(|r| r.key == "each" && r.state.as_str() == "finished")
    );
    assert_eq!(store.logs("accepted", None).unwrap().len(), 50);
    // A first step that commits at once (a command starts after its records) waits for the
    // creation: it is never refused as a write to a task that does not exist.
    let yaml = "nodes:\n  - {id: in, type: entry, next: [t]}\n  - {id: t, type: command, command: [\"true\"], next: [end]}\n  - {id: end, type: end}\n";
    let (pipeline, definition) = load_document(yaml, engine.scripts()).unwrap();
    let handles: Vec<_> = (0..40)
        .map(|i| {
            engine
                .submit(Submission {
                    definition: definition.clone(),
                    pipeline: pipeline.clone().into(),
                    input: json!({ "i": i, "pad": "x".repeat(50_000) }).into(),
                    owner: None,
                    id: None,
                    base_dir: None,
                    tick: None,
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        let outcome = h.wait().unwrap();
        assert_eq!(outcome.state, TaskState::Finished, "{:?}", outcome.error);
    }
}

/// A loop computed in the process starts before its step's records are committed; the task's
/// counts are published all the same while it runs (what `tessera run` shows every 100 ms).
#[test]
fn the_counts_of_a_task_are_published_while_its_first_loop_runs() {
    let f = fixture();
    let yaml = "nodes:\n  - {id: in, type: entry, next: [each]}\n  - id: each\n    type: loop\n    items: in.out.items\n    collect: loop.m.out\n    next: [end]\n    nodes:\n      - id: m\n        type: node\n        after: \"let s = 0; for i in 0..40 { s += i * item; } out = s;\"\n  - {id: end, type: end}\n";
    let items: Vec<u64> = (0..30_000).collect();
    let h = submit(&f, yaml, json!({ "items": items }));
    let mut seen_running = false;
    while !h.is_done() {
        let p = h.progress();
        if p.total > 0 && p.running == 1 && p.loops.iter().any(|l| l.key == "each") {
            seen_running = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let outcome = h.wait().unwrap();
    assert_eq!(outcome.state, TaskState::Finished, "{:?}", outcome.error);
    assert!(
        seen_running,
        "the loop was seen running in the task's counts"
    );
    assert_eq!(h.progress().finished, h.progress().total);
}
