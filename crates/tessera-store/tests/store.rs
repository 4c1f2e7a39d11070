//! The store contract, run against both backends — real SQLite files and a real PostgreSQL
//! (the server `TESSERA_TEST_PG` points at; `scripts/test.sh` starts a throw-away one) —
//! plus SQLite's own migrations and the object stores.

use std::sync::Arc;

use serde_json::json;
use tessera_core::Data;
use tessera_core::scheduler::{Arm, NodeRecord, NodeState, Record, TaskState};
use tessera_store::*;

fn node(key: &str, attempt: u32, state: NodeState, output: Option<serde_json::Value>) -> Record {
    Record::Node(NodeRecord {
        key: key.into(),
        node_id: key.split('#').next().unwrap().into(),
        node_type: "command",
        iteration: 0,
        attempt,
        state,
        input: Some(json!({"in": 1}).into()),
        output: output.map(Data::from),
        error: (state == NodeState::Failed).then(|| "exit code 3".to_string()),
        decision: None,
        started_at: Some(10),
        finished_at: state.is_terminal().then_some(20),
        cached: false,
        tally: None,
    })
}

fn new_task(id: &str, created_at: u64) -> NewTask {
    NewTask {
        id: id.into(),
        pipeline: "demo".into(),
        definition: json!({"nodes": []}),
        input: json!({"n": 3}).into(),
        created_at,
        owner: None,
        runner: None,
        lease_until: 0,
        base_dir: None,
        scheduled_at: None,
        needs: Vec::new(),
    }
}

/// A fresh database of one backend, opened as often as a test likes (state must survive).
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A database of its own on the test server.
    fn postgres() -> Db {
        let server = std::env::var("TESSERA_TEST_PG").expect(
            "TESSERA_TEST_PG=postgres://… names the PostgreSQL server of the contract tests \
             (scripts/test.sh starts one: scripts/test-env/postgres.sh start DIR)",
        );
        let name = format!("contract_{}", uuid::Uuid::new_v4().simple());
        Db::Postgres(PgStore::create_database(&server, &name).unwrap())
    }

    fn open(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.path().join("t.db"), Durability::Full).unwrap())
            }
            Db::Postgres(url) => Arc::new(PgStore::open(url).unwrap()),
        }
    }
}

fn commit(store: &dyn Store, task: &str, records: &[Record]) {
    store
        .commit(&CommitBatch {
            task_id: task,
            fence: 1,
            records: records.iter().collect(),
            cache: Vec::new(),
            now: 30,
            lease_until: None,
        })
        .unwrap();
}

fn state_survives_reopening_the_file(db: &Db) {
    {
        let store = db.open();
        store.create_task(&new_task("t1", 1)).unwrap();
        commit(
            &*store,
            "t1",
            &[
                Record::Task {
                    state: TaskState::Running,
                    result: None,
                    error: None,
                },
                node("a", 1, NodeState::Running, None),
            ],
        );
        commit(
            &*store,
            "t1",
            &[
                node("a", 1, NodeState::Finished, Some(json!({"x": 1}))),
                node("b", 1, NodeState::Failed, None),
            ],
        );
    }
    let store = db.open();
    let task = store.task("t1").unwrap().unwrap();
    assert_eq!(task.state.as_str(), "running");
    assert_eq!(task.input, json!({"n": 3}));
    let runs = store.node_runs("t1").unwrap();
    assert_eq!(runs.len(), 2);
    let a = runs.iter().find(|r| r.key == "a").unwrap();
    assert_eq!(a.state.as_str(), "finished");
    assert_eq!(
        a.input,
        Some(json!({"in": 1}).into()),
        "input kept from the running record"
    );
    assert_eq!(a.output, Some(json!({"x": 1}).into()));
    let past = store.past_runs("t1").unwrap();
    let b = past.iter().find(|p| p.key == "b").unwrap();
    assert_eq!(b.state, NodeState::Failed);
    assert_eq!(b.attempt, 1);
}

fn big_values_are_read_whole_or_by_size_and_loops_keep_their_tally(db: &Db) {
    use tessera_core::loops::{ItemFailure, LoopTally};
    let store = db.open();
    // Over 64 KiB: kept as text, stored once, named by its hash in the rows.
    let items: Vec<u64> = (0..20_000).collect();
    let big = Data::from_json(&serde_json::to_string(&json!({ "items": items })).unwrap()).unwrap();
    assert!(big.is_text());
    let bytes = big.json_len() as u64;
    let mut task = new_task("t1", 1);
    task.input = big.clone();
    store.create_task(&task).unwrap();
    let tally = LoopTally {
        items: 20_000,
        failed: 1,
        first_failed: vec![ItemFailure {
            index: 7,
            node: "check#7".into(),
            error: "boom".into(),
        }],
    };
    let mut each = node("each", 1, NodeState::Finished, None);
    let mut old_loop = node("old", 1, NodeState::Finished, None);
    if let (Record::Node(n), Record::Node(o)) = (&mut each, &mut old_loop) {
        n.node_type = "loop";
        n.input = Some(big.clone());
        n.output = Some(big.clone());
        n.tally = Some(tally.clone());
        // A loop recorded before tallies: its output is how its items are counted.
        o.node_type = "loop";
        o.output = Some(big.clone());
    }
    let done = Record::Task {
        state: TaskState::Finished,
        result: Some(big.clone()),
        error: None,
    };
    commit(&*store, "t1", &[each, old_loop, done]);

    let whole = store.task("t1").unwrap().unwrap();
    assert_eq!(whole.input, big);
    assert_eq!(whole.result.as_ref(), Some(&big));
    assert_eq!((whole.input_bytes, whole.result_bytes), (None, None));
    let sized = store.task_read("t1", ValueRead::Sizes).unwrap().unwrap();
    assert!(sized.input.is_null());
    assert_eq!(sized.result, None);
    assert_eq!(sized.input_bytes, Some(bytes));
    assert_eq!(sized.result_bytes, Some(bytes));

    let runs = store.node_runs_read("t1", ValueRead::Sizes).unwrap();
    let each = runs.iter().find(|r| r.key == "each").unwrap();
    assert_eq!(each.tally.as_ref(), Some(&tally));
    assert_eq!((&each.input, &each.output), (&None, &None));
    assert_eq!(
        (each.input_bytes, each.output_bytes),
        (Some(bytes), Some(bytes))
    );
    let old = runs.iter().find(|r| r.key == "old").unwrap();
    assert_eq!(old.tally, None);
    assert_eq!(
        old.output.as_ref(),
        Some(&big),
        "an untallied loop's output is read whole"
    );
    let whole = store.node_runs("t1").unwrap();
    let each = whole.iter().find(|r| r.key == "each").unwrap();
    assert_eq!(each.output.as_ref(), Some(&big));
    assert_eq!(each.output_bytes, None);
    // One run's output whole, on its own.
    assert_eq!(
        store.node_output("t1", "each", 0, 1).unwrap(),
        Some(big.clone())
    );
    assert_eq!(store.node_output("t1", "each", 0, 2).unwrap(), None);
    assert_eq!(store.node_output("t1", "nope", 0, 1).unwrap(), None);
    // A small value is given as it is either way.
    store.create_task(&new_task("t2", 2)).unwrap();
    let small = store.task_read("t2", ValueRead::Sizes).unwrap().unwrap();
    assert_eq!(small.input, json!({"n": 3}));
    assert_eq!(small.input_bytes, None);
}

fn branch_decisions_and_cache_entries_round_trip(db: &Db) {
    let store = db.open();
    store.create_task(&new_task("t1", 1)).unwrap();
    let mut r = node("check", 1, NodeState::Finished, Some(json!({})));
    if let Record::Node(n) = &mut r {
        n.decision = Some(Arm::Then);
    }
    let out: Data = json!({"cached": true}).into();
    store
        .commit(&CommitBatch {
            task_id: "t1",
            fence: 1,
            records: vec![&r],
            cache: vec![("k1", "check", &out)],
            now: 5,
            lease_until: None,
        })
        .unwrap();
    assert_eq!(store.past_runs("t1").unwrap()[0].decision, Some(Arm::Then));
    assert_eq!(
        store.cache_hit("k1", "t2").unwrap(),
        Some(json!({"cached": true}).into())
    );
    assert_eq!(store.cache_hit("nope", "t2").unwrap(), None);
}

fn object(id: &str) -> tessera_store::ObjectMeta {
    tessera_store::ObjectMeta {
        id: id.into(),
        name: None,
        size: 1,
        content_type: None,
        sha256: "00".into(),
        created_at: 1,
    }
}

fn finish(store: &dyn Store, task: &str) {
    let done = Record::Task {
        state: TaskState::Finished,
        result: None,
        error: None,
    };
    store
        .commit(&CommitBatch {
            task_id: task,
            fence: 1,
            records: vec![&done],
            cache: vec![],
            now: 9,
            lease_until: None,
        })
        .unwrap();
}

fn cache_hits_share_their_objects_and_gone_objects_are_misses(db: &Db) {
    let store = db.open();
    for t in ["t1", "t2", "t3"] {
        store.create_task(&new_task(t, 1)).unwrap();
        finish(&*store, t);
    }
    store.put_object(&object("o1"), Some("t1")).unwrap();
    let out: Data = json!({"file": object("o1").to_json()}).into();
    store
        .commit(&CommitBatch {
            task_id: "t1",
            fence: 1,
            records: vec![],
            cache: vec![("k", "n", &out)],
            now: 5,
            lease_until: None,
        })
        .unwrap();
    // t2 reuses t1's output: the object is now t2's too, and outlives t1.
    assert_eq!(store.cache_hit("k", "t2").unwrap().as_ref(), Some(&out));
    assert!(store.object_in_task("o1", "t2").unwrap());
    assert_eq!(store.delete_task("t1").unwrap(), Vec::<String>::new());
    assert_eq!(store.object_task("o1").unwrap().as_deref(), Some("t2"));
    assert!(store.cache_hit("k", "t3").unwrap().is_some());
    // Deleting the last task that uses it deletes it, and the entry becomes a miss.
    assert!(
        store.delete_task("t2").unwrap().is_empty(),
        "t3 still uses it"
    );
    assert_eq!(store.delete_task("t3").unwrap(), vec!["o1".to_string()]);
    assert!(store.object("o1").unwrap().is_none());
    store.create_task(&new_task("t4", 1)).unwrap();
    assert_eq!(
        store.cache_hit("k", "t4").unwrap(),
        None,
        "its object is gone"
    );
    assert_eq!(
        store.cache_hit("k", "t4").unwrap(),
        None,
        "and it was forgotten"
    );
}

fn tasks_list_newest_first_with_filters_and_pages(db: &Db) {
    let store = db.open();
    for i in 0..5u64 {
        let mut t = new_task(&format!("t{i}"), 100 + i);
        if i % 2 == 0 {
            t.pipeline = "other".into();
        }
        store.create_task(&t).unwrap();
    }
    let all = store.list_tasks(&TaskFilter::default()).unwrap();
    let ids: Vec<_> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t4", "t3", "t2", "t1", "t0"]);
    let page = store
        .list_tasks(&TaskFilter {
            limit: 2,
            before: Some((103, "t3".into())),
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<_> = page.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t2", "t1"]);
    let demo = store
        .list_tasks(&TaskFilter {
            pipeline: Some("demo".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(demo.len(), 2);
}

fn logs_cancel_flags_and_unknown_ids(db: &Db) {
    let store = db.open();
    store.create_task(&new_task("t1", 1)).unwrap();
    let line = |k: &str, l: &str| LogLine {
        task_id: "t1".into(),
        key: k.into(),
        attempt: 1,
        stream: "stdout".into(),
        line: l.into(),
        at: 1,
    };
    store
        .append_logs(&[line("a", "one"), line("b", "x"), line("a", "two")])
        .unwrap();
    let a: Vec<_> = store
        .logs("t1", Some("a"))
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(a, ["one", "two"]);
    assert_eq!(store.logs("t1", None).unwrap().len(), 3);
    // A binary line (a NUL byte) is kept; PostgreSQL's text cannot hold NUL: U+FFFD there.
    store.append_logs(&[line("c", "a\0b")]).unwrap();
    let c = &store.logs("t1", Some("c")).unwrap()[0].line;
    assert!(c == "a\0b" || c == "a\u{FFFD}b", "{c:?}");
    assert!(!store.cancel_requested("t1").unwrap());
    assert!(store.request_cancel("t1").unwrap());
    assert!(store.cancel_requested("t1").unwrap());
    assert!(!store.request_cancel("nope").unwrap());
    let claim = |runner| Claim {
        observed_state: TaskState::Pending,
        observed_fence: 1,
        runner,
        now: 100,
        lease_until: 10_100,
    };
    assert_eq!(store.reopen_task("t1", &claim("me")).unwrap(), Some(2));
    assert_eq!(
        store.reopen_task("t1", &claim("other")).unwrap(),
        None,
        "taken already (the fence moved)"
    );
    assert_eq!(
        store.task("t1").unwrap().unwrap().runner.as_deref(),
        Some("me")
    );
    assert!(
        store.cancel_requested("t1").unwrap(),
        "a takeover keeps the cancel asked of the previous holder"
    );
    let err = store.reopen_task("nope", &claim("me")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User);
    assert!(store.task("nope").unwrap().is_none());
}

fn a_duplicate_task_id_is_refused_without_touching_the_first(db: &Db) {
    let store = db.open();
    store.create_task(&new_task("t1", 1)).unwrap();
    let mut again = new_task("t1", 2);
    again.input = json!({"other": true}).into();
    assert!(store.create_task(&again).is_err());
    assert_eq!(store.task("t1").unwrap().unwrap().input, json!({"n": 3}));
}

#[tokio::test]
async fn objects_stream_in_and_out_with_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::local(&dir.path().join("store")).unwrap();
    let src = dir.path().join("photo.png");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let meta = objects.put_file(&src, None, None).await.unwrap();
    assert_eq!(meta.size, 3_000_000);
    assert_eq!(meta.name.as_deref(), Some("photo.png"));
    assert_eq!(meta.content_type.as_deref(), Some("image/png"));
    use sha2::Digest;
    assert_eq!(meta.sha256, hex::encode(sha2::Sha256::digest(&data)));
    let back = dir.path().join("back.png");
    objects.get_to_file(&meta.id, &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!(
        std::fs::read(objects.local_path(&meta.id).unwrap()).unwrap(),
        data
    );
    let json = meta.to_json();
    assert_eq!(ObjectMeta::from_json(&json).unwrap().id, meta.id);
    let missing = objects
        .get_to_file(&uuid::Uuid::new_v4().to_string(), &back)
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::User);
    assert!(
        objects
            .get_to_file("../../etc/passwd", &back)
            .await
            .is_err()
    );
}

fn pipeline_row(name: &str, source: &str) -> PipelineRow {
    PipelineRow {
        name: name.into(),
        definition: json!({"nodes": [{"id": "in", "type": "entry"}]}),
        source: source.into(),
        owner: Some("alice".into()),
        created_at: 1,
        updated_at: 1,
        version: String::new(),
    }
}

fn pipelines_are_created_replaced_listed_and_deleted(db: &Db) {
    let store = db.open();
    assert!(
        store.put_pipeline(&pipeline_row("blur", "user")).unwrap(),
        "created"
    );
    let mut again = pipeline_row("blur", "user");
    again.definition = json!({"nodes": []});
    assert!(!store.put_pipeline(&again).unwrap(), "replaced");
    assert_eq!(
        store.pipeline("blur").unwrap().unwrap().definition,
        json!({"nodes": []})
    );
    store
        .put_pipeline(&pipeline_row("a-first", "user"))
        .unwrap();
    let names: Vec<String> = store
        .list_pipelines()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a-first", "blur"]);
    assert!(store.delete_pipeline("blur").unwrap());
    assert!(!store.delete_pipeline("blur").unwrap());
    assert!(store.pipeline("blur").unwrap().is_none());
}

fn removing_a_service_removes_its_automatic_pipelines(db: &Db) {
    let store = db.open();
    let svc = ServiceRow {
        name: "imaging".into(),
        url: "http://127.0.0.1:1".into(),
        endpoints: json!([{"route": "imaging-blur"}]),
        last_seen: 5,
    };
    store.announce_service(&svc).unwrap();
    store
        .put_pipeline(&pipeline_row("imaging-blur", "service:imaging"))
        .unwrap();
    store.put_pipeline(&pipeline_row("mine", "user")).unwrap();
    assert_eq!(
        store.list_services().unwrap()[0].endpoints,
        json!([{"route": "imaging-blur"}])
    );
    store.remove_service("imaging").unwrap();
    assert!(store.list_services().unwrap().is_empty());
    let names: Vec<String> = store
        .list_pipelines()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["mine"]);
}

fn callback_row(token: &str, attempt: u32) -> CallbackRow {
    CallbackRow {
        token: token.into(),
        task_id: "t1".into(),
        key: "detect".into(),
        iteration: 0,
        attempt,
        state: CallbackState::Waiting,
        result: None,
        failed: false,
        callback_base: Some("http://127.0.0.1:1".into()),
    }
}

fn a_callback_is_accepted_once_and_never_for_a_superseded_attempt(db: &Db) {
    let store = db.open();
    store.create_task(&new_task("t1", 1)).unwrap();
    // Only the holder of the task's current claim creates tokens.
    assert!(matches!(
        store.create_callback(&callback_row("tok-0", 1), 7),
        Err(StoreError::Fenced(_))
    ));
    store.create_callback(&callback_row("tok-1", 1), 1).unwrap();
    store.create_callback(&callback_row("tok-2", 2), 1).unwrap();
    assert_eq!(
        store.callback("tok-1").unwrap().unwrap().state,
        CallbackState::Superseded
    );
    assert!(
        !store
            .redispatch_callback("tok-1", "http://127.0.0.1:2")
            .unwrap(),
        "a superseded token is not dispatched again"
    );
    store.mark_dispatched("tok-2").unwrap();
    assert!(
        store
            .redispatch_callback("tok-2", "http://127.0.0.1:2")
            .unwrap()
    );
    let row = store.callback("tok-2").unwrap().unwrap();
    assert_eq!(row.state, CallbackState::Dispatching);
    assert_eq!(row.callback_base.as_deref(), Some("http://127.0.0.1:2"));
    assert!(
        !store
            .complete_callback("tok-1", &json!({"late": true}), false)
            .unwrap()
    );
    assert!(
        store
            .complete_callback("tok-2", &json!({"areas": []}), false)
            .unwrap()
    );
    assert!(
        !store
            .complete_callback("tok-2", &json!({"again": true}), false)
            .unwrap(),
        "duplicate"
    );
    assert!(
        !store
            .complete_callback("forged", &json!({}), false)
            .unwrap()
    );
    let row = store
        .callback_for_attempt("t1", "detect", 0, 2)
        .unwrap()
        .unwrap();
    assert_eq!(row.state, CallbackState::Received);
    assert_eq!(row.result, Some(json!({"areas": []})));
    assert!(
        store
            .callback_for_attempt("t1", "detect", 0, 9)
            .unwrap()
            .is_none()
    );
}

fn deleting_a_task_removes_its_rows_and_names_its_objects(db: &Db) {
    let store = db.open();
    store.create_task(&new_task("t1", 1)).unwrap();
    store.create_task(&new_task("t2", 2)).unwrap();
    commit(
        &*store,
        "t1",
        &[node("a", 1, NodeState::Finished, Some(json!({})))],
    );
    let meta = ObjectMeta {
        id: "0b5a3c1e-9f4c-4a57-8a0e-1d2c3b4a5f60".into(),
        name: None,
        size: 1,
        content_type: None,
        sha256: "x".into(),
        created_at: 1,
    };
    store.put_object(&meta, Some("t1")).unwrap();
    assert!(
        matches!(store.delete_task("t1"), Err(StoreError::Conflict(_))),
        "a task that has not ended is not deleted"
    );
    assert!(store.task("t1").unwrap().is_some());
    finish(&*store, "t1");
    assert_eq!(store.delete_task("t1").unwrap(), vec![meta.id.clone()]);
    assert!(store.task("t1").unwrap().is_none());
    assert!(store.node_runs("t1").unwrap().is_empty());
    assert!(store.object(&meta.id).unwrap().is_none());
    assert!(store.delete_task("t1").is_err());
    let stats = store.task_stats(None).unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].state.as_str(), stats[0].count), ("pending", 1));
    assert_eq!(
        store.claimable_tasks(u64::MAX, 100).unwrap(),
        vec!["t2".to_string()]
    );
    assert!(store.ended_before(u64::MAX).unwrap().is_empty());
}

/// S3-compatible storage, against moto's S3 server on loopback (scripts/test.sh installs it and
/// sets TESSERA_MOTO_SERVER).
#[tokio::test]
async fn objects_on_an_s3_compatible_store() {
    let Ok(moto) = std::env::var("TESSERA_MOTO_SERVER") else {
        eprintln!("skipped: TESSERA_MOTO_SERVER is not set (scripts/test.sh sets it)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    /// Stops the server even when an assertion fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = KillOnDrop(
        std::process::Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if client
            .put(format!("{endpoint}/tessera-test"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "moto server did not start");
    let options = [
        ("endpoint", endpoint.as_str()),
        ("allow_http", "true"),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
        ("region", "us-east-1"),
    ];
    let objects = Objects::s3("s3://tessera-test/some/prefix", &options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("data.csv");
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 97) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let meta = objects.put_file(&src, None, None).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.content_type.as_deref(), Some("text/csv"));
    assert!(
        objects.local_path(&meta.id).is_none(),
        "no local file behind an S3 object"
    );
    let back = dir.path().join("back.csv");
    objects.get_to_file(&meta.id, &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let listed = client
        .get(format!("{endpoint}/tessera-test?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains(&format!("some/prefix/objects/{}", meta.id)),
        "{listed}"
    );
    objects.delete(&meta.id).await.unwrap();
    assert_eq!(
        objects
            .get_to_file(&meta.id, &back)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::User
    );
    assert!(Objects::s3("gs://nope", &[]).is_err());
}

fn concurrent_writers_share_commits_and_a_failing_one_fails_alone(db: &Db) {
    let store = db.open();
    store.create_task(&new_task("dup", 1)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut failures = 0;
                for i in 0..50 {
                    let id = if t == 0 && i == 25 {
                        "dup".to_string()
                    } else {
                        format!("t{t}-{i}")
                    };
                    match store.create_task(&new_task(&id, 10)) {
                        Ok(()) => commit(
                            store.as_ref(),
                            &id,
                            &[node("a", 1, NodeState::Finished, Some(json!({"i": i})))],
                        ),
                        Err(_) => failures += 1,
                    }
                }
                failures
            })
        })
        .collect();
    let failures: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(failures, 1, "only the duplicate id failed");
    let all = store
        .list_tasks(&TaskFilter {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 8 * 50, "399 new tasks + the first `dup`");
    assert_eq!(
        store.node_runs("t7-49").unwrap()[0].output,
        Some(json!({"i": 49}).into())
    );
    assert_eq!(store.task("dup").unwrap().unwrap().input, json!({"n": 3}));
}

fn chunk_row(index: u32, start: u64, end: u64) -> BatchChunkRow {
    BatchChunkRow::pending(index, start, end, 2 + start, end - start)
}

fn batch_jobs_keep_chunk_checkpoints_and_lines_across_reopening(db: &Db) {
    let key = BatchKey {
        task_id: "t1".into(),
        key: "lengths".into(),
        iteration: 0,
    };
    {
        let store = db.open();
        store.create_task(&new_task("t1", 1)).unwrap();
        let job = BatchJobRow {
            id: key.clone(),
            state: BatchJobState::Running,
            starts: 0,
            source: json!({"path": "in.csv", "size": 30}),
            plan: json!({"names": ["a", "b"]}),
            output: None,
            error: None,
            created_at: 5,
            updated_at: 5,
        };
        let chunks = [
            chunk_row(0, 0, 10),
            chunk_row(1, 10, 20),
            chunk_row(2, 20, 30),
        ];
        store.create_batch_job(&job, &chunks).unwrap();
        assert_eq!(store.start_batch_job(&key, 6).unwrap(), 1);
        let mut done = chunk_row(1, 10, 20);
        done.state = ChunkState::Committed;
        done.read = 10;
        done.written = 9;
        done.skipped = 1;
        done.output_bytes = Some(42);
        done.input_hash = Some("abc".into());
        let skipped = [BatchLineRow {
            chunk: 1,
            line: 14,
            state: LineState::Skipped,
            kind: "parse".into(),
            raw: "x,y,z".into(),
            reason: "expected 2 fields".into(),
        }];
        store
            .put_batch_chunk(&ChunkCommit {
                job: &key,
                chunk: &done,
                skipped: &skipped,
                fence: 1,
            })
            .unwrap();
        let mut failed = chunk_row(2, 20, 30);
        failed.state = ChunkState::Failed;
        failed.error = Some("line 25: bad".into());
        let failing = [BatchLineRow {
            chunk: 2,
            line: 25,
            state: LineState::Failed,
            kind: "expression".into(),
            raw: "q,1".into(),
            reason: "bad".into(),
        }];
        store
            .put_batch_chunk(&ChunkCommit {
                job: &key,
                chunk: &failed,
                skipped: &failing,
                fence: 1,
            })
            .unwrap();
        // An unknown chunk is refused, nothing written.
        let ghost = chunk_row(9, 0, 1);
        let err = store
            .put_batch_chunk(&ChunkCommit {
                job: &key,
                chunk: &ghost,
                skipped: &[],
                fence: 1,
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::User);
        // A writer whose claim was taken over (another fence) writes nothing.
        let mut late = chunk_row(0, 0, 10);
        late.state = ChunkState::Committed;
        let err = store
            .put_batch_chunk(&ChunkCommit {
                job: &key,
                chunk: &late,
                skipped: &[],
                fence: 7,
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    }
    let store = db.open();
    assert_eq!(store.start_batch_job(&key, 7).unwrap(), 2);
    let chunks = store.batch_chunks(&key).unwrap();
    let states: Vec<&str> = chunks.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(states, ["pending", "committed", "failed"]);
    assert_eq!(chunks[1].output_bytes, Some(42));
    assert_eq!(chunks[1].input_hash.as_deref(), Some("abc"));
    let lines = store.batch_lines(&key).unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.line, l.state.as_str()))
            .collect::<Vec<_>>(),
        [(14, "skipped"), (25, "failed")]
    );
    store
        .end_batch_job(
            &key,
            BatchJobState::Finished,
            Some(&json!({"written": 29})),
            None,
            8,
        )
        .unwrap();
    let jobs = store.batch_jobs("t1").unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state.as_str(), "finished");
    assert_eq!(jobs[0].plan["names"][1], "b");
    finish(&*store, "t1");
    store.delete_task("t1").unwrap();
    assert!(store.batch_job(&key).unwrap().is_none());
    assert!(store.batch_chunks(&key).unwrap().is_empty());
    assert!(store.batch_lines(&key).unwrap().is_empty());
}

fn loop_chunk(index: u32, first: u64, count: u64, fingerprint: &str, values: &str) -> LoopChunkRow {
    LoopChunkRow {
        index,
        first,
        count,
        fingerprint: fingerprint.into(),
        values: values.into(),
        failed: 0,
        committed_at: 10 + u64::from(index),
        total: 9,
    }
}

/// Chunked loops: chunks and failed items committed together and kept across reopening,
/// fenced, paged, summarised, dropped when the loop runs on other data, deleted with the task.
fn loop_chunks_are_kept_fenced_paged_and_replaced_by_a_new_fingerprint(db: &Db) {
    let key = LoopKey {
        task_id: "t1".into(),
        key: "each".into(),
        iteration: 0,
    };
    {
        let store = db.open();
        store.create_task(&new_task("t1", 1)).unwrap();
        let first = loop_chunk(0, 0, 3, "f1", "1,3,5");
        let mut second = loop_chunk(1, 3, 3, "f1", "7,null,11");
        second.failed = 1;
        let failures = [LoopFailureRow {
            item: 4,
            node: "m#4".into(),
            error: "`after` script: bad".into(),
            attempts: 1,
        }];
        store
            .put_loop_chunks(&[
                LoopChunkCommit {
                    loop_key: &key,
                    chunk: &first,
                    failures: &[],
                    fence: 1,
                },
                LoopChunkCommit {
                    loop_key: &key,
                    chunk: &second,
                    failures: &failures,
                    fence: 1,
                },
            ])
            .unwrap();
        // A writer whose claim was taken over writes nothing, not even the chunks before.
        let late = loop_chunk(2, 6, 3, "f1", "1,1,1");
        let err = store
            .put_loop_chunks(&[
                LoopChunkCommit {
                    loop_key: &key,
                    chunk: &late,
                    failures: &[],
                    fence: 1,
                },
                LoopChunkCommit {
                    loop_key: &key,
                    chunk: &late,
                    failures: &[],
                    fence: 9,
                },
            ])
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    }
    let store = db.open();
    let chunks = store.loop_chunks(&key, "f1").unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.values.as_str()).collect::<Vec<_>>(),
        ["1,3,5", "7,null,11"]
    );
    assert!(store.loop_chunks(&key, "other").unwrap().is_empty());
    // Paging: the chunks holding items 4..6, the failed items from the first.
    let over = store.loop_chunks_over(&key, 4, 2).unwrap();
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].first, 3);
    assert_eq!(store.loop_chunks_over(&key, 2, 2).unwrap().len(), 2);
    assert!(store.loop_chunks_over(&key, 6, 10).unwrap().is_empty());
    let failed = store.loop_failures(&key, 0, 10).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].item, failed[0].node.as_str()), (4, "m#4"));
    assert!(store.loop_failures(&key, 1, 10).unwrap().is_empty());
    let summary = store.loop_summaries("t1").unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        (
            summary[0].total,
            summary[0].chunks,
            summary[0].items,
            summary[0].failed
        ),
        (9, 2, 6, 1)
    );
    // The loop runs again on other items: the old fingerprint's chunks and failures go.
    let again = loop_chunk(0, 0, 2, "f2", "2,4");
    store
        .put_loop_chunks(&[LoopChunkCommit {
            loop_key: &key,
            chunk: &again,
            failures: &[],
            fence: 1,
        }])
        .unwrap();
    assert!(store.loop_chunks(&key, "f1").unwrap().is_empty());
    assert!(store.loop_failures(&key, 0, 10).unwrap().is_empty());
    assert_eq!(store.loop_chunks(&key, "f2").unwrap().len(), 1);
    finish(&*store, "t1");
    store.delete_task("t1").unwrap();
    assert!(store.loop_chunks(&key, "f2").unwrap().is_empty());
    assert!(store.loop_summaries("t1").unwrap().is_empty());
}

/// Leases: the holder renews; another runner claims only once the lease ran out, which moves
/// the fence, and from then on the old holder's commits and renewals are refused.
fn a_claim_is_fenced_and_an_expired_lease_is_claimed_again(db: &Db) {
    let store = db.open();
    let mut task = new_task("t1", 1);
    task.runner = Some("a".into());
    task.lease_until = 1_000;
    store.create_task(&task).unwrap();
    store.create_task(&new_task("t2", 2)).unwrap();
    // Held by `a` until 1,000: not claimable before, claimable after.
    assert_eq!(
        store.claimable_tasks(500, 100).unwrap(),
        vec!["t2".to_string()]
    );
    assert_eq!(store.claimable_tasks(1_001, 100).unwrap(), ["t1", "t2"]);
    assert_eq!(
        store.claimable_tasks(1_001, 1).unwrap(),
        ["t1"],
        "bounded, oldest first"
    );
    // `a` renews to 5,000.
    let held = vec![("t1".to_string(), 1)];
    assert!(store.renew_leases("a", &held, 5_000).unwrap().is_empty());
    let claim = |now, fence| Claim {
        observed_state: TaskState::Pending,
        observed_fence: fence,
        runner: "b",
        now,
        lease_until: now + 10_000,
    };
    assert_eq!(
        store.reopen_task("t1", &claim(2_000, 1)).unwrap(),
        None,
        "still held"
    );
    assert!(
        !store.mark_cancelled("t1", "no", 2_000).unwrap(),
        "held: not marked"
    );
    // `a` stops renewing (killed): after 5,000, `b` claims it, with fence 2.
    assert_eq!(store.reopen_task("t1", &claim(5_001, 1)).unwrap(), Some(2));
    let row = store.task("t1").unwrap().unwrap();
    assert_eq!((row.runner.as_deref(), row.fence), (Some("b"), 2));
    // `a`'s late commit and renewal are refused; `b`'s go through.
    let record = node("a", 1, NodeState::Finished, Some(json!({"x": 1})));
    let late = store.commit(&CommitBatch {
        task_id: "t1",
        fence: 1,
        records: vec![&record],
        cache: Vec::new(),
        now: 5_002,
        lease_until: None,
    });
    assert!(
        matches!(late, Err(StoreError::Fenced(ref t)) if t == "t1"),
        "{late:?}"
    );
    assert!(
        store.node_runs("t1").unwrap().is_empty(),
        "nothing of it written"
    );
    assert_eq!(store.renew_leases("a", &held, 9_000).unwrap(), ["t1"]);
    assert!(!store.fail_task("t1", 1, "a gave up").unwrap());
    store
        .commit(&CommitBatch {
            task_id: "t1",
            fence: 2,
            records: vec![&record],
            cache: Vec::new(),
            now: 5_003,
            lease_until: None,
        })
        .unwrap();
    assert_eq!(store.node_runs("t1").unwrap().len(), 1);
    // A cancel asked through the store reaches its holder's watch (one query per runner).
    assert!(store.cancel_requests("b").unwrap().is_empty());
    assert!(store.request_cancel("t1").unwrap());
    assert_eq!(store.cancel_requests("b").unwrap(), ["t1"]);
    assert!(
        store.cancel_requests("a").unwrap().is_empty(),
        "not a's any more"
    );
    // Ending the task releases the lease: nobody holds an ended task.
    let end = Record::Task {
        state: TaskState::Finished,
        result: None,
        error: None,
    };
    store
        .commit(&CommitBatch {
            task_id: "t1",
            fence: 2,
            records: vec![&end],
            cache: Vec::new(),
            now: 5_004,
            lease_until: None,
        })
        .unwrap();
    assert_eq!(store.task("t1").unwrap().unwrap().lease_until, None);
    // An ended task is not a lost claim: its holder is done with it.
    assert!(
        store
            .renew_leases("b", &[("t1".into(), 2)], 20_000)
            .unwrap()
            .is_empty()
    );
    // A runner stopping hands its tasks back: claimable at once, its lease gone.
    let mut held_task = new_task("t3", 3);
    held_task.runner = Some("c".into());
    held_task.lease_until = 100_000;
    store.create_task(&held_task).unwrap();
    assert!(
        !store
            .claimable_tasks(7_000, 100)
            .unwrap()
            .contains(&"t3".to_string())
    );
    assert_eq!(store.release_leases("c").unwrap(), 1);
    assert!(
        store
            .claimable_tasks(7_000, 100)
            .unwrap()
            .contains(&"t3".to_string())
    );
    // A chore is led by one runner at a time: taken when free or expired, kept by renewal.
    assert!(store.lead("sweep", "a", 1_000, 2_000).unwrap());
    assert!(
        !store.lead("sweep", "b", 1_500, 2_500).unwrap(),
        "a leads until 2,000"
    );
    assert!(store.lead("sweep", "a", 1_900, 3_000).unwrap(), "renewed");
    assert!(!store.lead("sweep", "b", 2_500, 3_500).unwrap());
    assert!(
        store.lead("sweep", "b", 3_001, 4_000).unwrap(),
        "a stopped renewing"
    );
    assert!(!store.lead("sweep", "a", 3_500, 4_500).unwrap());
    assert!(
        store.lead("other", "a", 3_500, 4_500).unwrap(),
        "roles are separate"
    );
    // A task nobody holds is cancelled at once.
    assert!(store.mark_cancelled("t2", "asked", 6_000).unwrap());
    // ...and a holder whose lease had run out cannot write over the cancel.
    let late = store.commit(&CommitBatch {
        task_id: "t2",
        fence: 1,
        records: vec![&record],
        cache: Vec::new(),
        now: 6_001,
        lease_until: None,
    });
    assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
}

/// Versioned schema: a database of an earlier shape (before leases, versions unrecorded) is
/// brought to the current version and keeps its rows; one made by a newer version is refused.
#[test]
fn older_databases_are_migrated_and_newer_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL,
                definition TEXT NOT NULL, input TEXT NOT NULL, state TEXT NOT NULL,
                result TEXT, error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                runner TEXT, owner TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0);
             INSERT INTO tasks (id, pipeline, definition, input, state, created_at, updated_at, runner)
                VALUES ('old', 'demo', '{\"nodes\": []}', '{}', 'running', 1, 1, 'gone:1:x');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let task = store.task("old").unwrap().unwrap();
    assert_eq!((task.fence, task.lease_until), (0, None));
    // Never leased: anyone may claim it.
    assert_eq!(store.claimable_tasks(10, 100).unwrap(), ["old"]);
    drop(store);
    let version = |p: &std::path::Path| -> u32 {
        rusqlite::Connection::open(p)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    let latest = version(&path);
    assert!(latest >= 7, "{latest}");
    // Opening again changes nothing.
    SqliteStore::open(&path, Durability::Full).unwrap();
    assert_eq!(version(&path), latest);
    // A newer database is refused, untouched.
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", latest + 1)
        .unwrap();
    let err = SqliteStore::open(&path, Durability::Full).unwrap_err();
    assert!(err.to_string().contains("made by a newer Tessera"), "{err}");
    assert_eq!(version(&path), latest + 1);
}

fn a_tick_is_created_once_and_the_last_tick_only_moves_forward(db: &Db) {
    let store = db.open();
    let tick = |id: &str, at: u64| NewTask {
        scheduled_at: Some(at),
        ..new_task(id, at)
    };
    assert_eq!(
        store.schedule("demo").unwrap(),
        ScheduleRow {
            pipeline: "demo".into(),
            ..Default::default()
        }
    );
    assert!(store.create_tick(&tick("a", 1_000), true).unwrap());
    // Another process creating the same tick: refused, whatever the id.
    assert!(!store.create_tick(&tick("b", 1_000), true).unwrap());
    assert!(!store.create_tick(&tick("b", 1_000), false).unwrap());
    // An older tick is not created again by the scheduler, even once its task is gone.
    assert!(!store.create_tick(&tick("c", 500), true).unwrap());
    assert!(store.task("c").unwrap().is_none());
    // A backfill creates an older tick that has no task, without moving the last tick.
    assert!(store.create_tick(&tick("d", 500), false).unwrap());
    assert!(store.create_tick(&tick("e", 3_000), false).unwrap());
    let row = store.schedule("demo").unwrap();
    assert_eq!(row.last_tick, Some(1_000));
    assert_eq!(row.last_task, Some(("a".into(), TaskState::Pending)));
    assert_eq!(row.active, 3, "a, d and e have not ended");
    assert_eq!(store.task("a").unwrap().unwrap().scheduled_at, Some(1_000));
    assert_eq!(store.task("d").unwrap().unwrap().scheduled_at, Some(500));
    // The scheduler reaching a tick a backfill created: the schedule moves past it.
    assert!(!store.create_tick(&tick("f", 3_000), true).unwrap());
    assert_eq!(store.schedule("demo").unwrap().last_tick, Some(3_000));
    assert!(store.task("f").unwrap().is_none());
    let ticks = |from, to| -> Vec<(u64, String)> { store.ticks_taken("demo", from, to).unwrap() };
    assert_eq!(ticks(0, 2_000), [(500, "d".into()), (1_000, "a".into())]);
    assert_eq!(
        ticks(501, 5_000),
        [(1_000, "a".into()), (3_000, "e".into())]
    );
    // A task started by hand is no tick.
    store.create_task(&new_task("manual", 4_000)).unwrap();
    assert_eq!(store.task("manual").unwrap().unwrap().scheduled_at, None);
    assert_eq!(store.schedule("demo").unwrap().active, 3);
    // Pause and resume; a schedule paused before it ever ticked is listed too.
    store.set_schedule_paused("demo", true, 5_000).unwrap();
    store.set_schedule_paused("other", true, 5_000).unwrap();
    let all = store.schedules().unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.pipeline.as_str(), r.paused, r.last_tick))
            .collect::<Vec<_>>(),
        [("demo", true, Some(3_000)), ("other", true, None)]
    );
    store.set_schedule_paused("demo", false, 6_000).unwrap();
    let row = store.schedule("demo").unwrap();
    assert!(!row.paused);
    assert_eq!(row.last_tick, Some(3_000), "resuming keeps the last tick");
    // State survives reopening.
    drop(store);
    let store = db.open();
    assert_eq!(store.schedule("demo").unwrap().last_tick, Some(3_000));
    assert!(store.schedule("other").unwrap().paused);
}

/// Two processes ticking the same schedule at once: every tick gets exactly one task.
fn racing_schedulers_create_each_tick_once(db: &Db) {
    let (one, two) = (db.open(), db.open());
    let created = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for (name, store) in [("x", &one), ("y", &two)] {
            let created = &created;
            s.spawn(move || {
                for at in 1..=50u64 {
                    let task = NewTask {
                        scheduled_at: Some(at * 1_000),
                        ..new_task(&format!("{name}{at}"), at)
                    };
                    if store.create_tick(&task, at % 2 == 0).unwrap() {
                        created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(created.into_inner(), 50);
    assert_eq!(one.ticks_taken("demo", 0, u64::MAX / 2).unwrap().len(), 50);
}

fn shared_events_are_read_in_order_and_trimmed(db: &Db) {
    let (one, two) = (db.open(), db.open());
    let event = |task: &str, runner: &str, at: u64| NewEvent {
        task_id: task.into(),
        owner: Some("ann".into()),
        runner: runner.into(),
        data: format!(r#"{{"type":"task","task_id":"{task}"}}"#),
        at,
    };
    assert_eq!(one.last_event_seq().unwrap(), 0);
    // Nobody follows: not worth writing.
    assert!(!one.events_followed("a", 1_000).unwrap());
    two.follow_events("b", 5_000).unwrap();
    assert!(one.events_followed("a", 1_000).unwrap());
    assert!(
        !two.events_followed("b", 1_000).unwrap(),
        "its own following does not count"
    );
    assert!(
        !one.events_followed("a", 6_000).unwrap(),
        "until 5,000 only"
    );
    one.append_events(&[event("t1", "a", 1_000), event("t2", "a", 1_001)], 0)
        .unwrap();
    two.append_events(&[event("t3", "b", 1_002)], 0).unwrap();
    let read = two.events_after(0, 10).unwrap();
    assert_eq!(
        read.iter().map(|e| e.task_id.as_str()).collect::<Vec<_>>(),
        ["t1", "t2", "t3"]
    );
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(read[0].owner.as_deref(), Some("ann"));
    assert_eq!(read[2].runner, "b");
    assert_eq!(one.events_after(read[0].seq, 1).unwrap()[0].task_id, "t2");
    let last = one.last_event_seq().unwrap();
    assert_eq!(last, read[2].seq);
    // Old events go with the next append; numbers are never reused.
    one.append_events(&[event("t4", "a", 9_000)], 5_000)
        .unwrap();
    let left = one.events_after(0, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].seq > last);
    assert_eq!(one.last_event_seq().unwrap(), left[0].seq);
}

/// Concurrent appends from two processes: a reader following the numbers misses nothing.
fn concurrent_appends_are_read_without_gaps(db: &Db) {
    let (one, two, reader) = (db.open(), db.open(), db.open());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        for (name, store) in [("x", &one), ("y", &two)] {
            s.spawn(move || {
                for i in 0..100u64 {
                    let e = NewEvent {
                        task_id: format!("{name}{i}"),
                        owner: None,
                        runner: name.into(),
                        data: "{}".into(),
                        at: 1_000 + i,
                    };
                    store.append_events(&[e.clone(), e], 0).unwrap();
                }
            });
        }
        let stop = &stop;
        let follower = s.spawn(move || {
            let (mut after, mut seen) = (0, Vec::new());
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                for e in reader.events_after(after, 50).unwrap() {
                    after = e.seq;
                    seen.push(e.task_id);
                }
                if done && reader.events_after(after, 1).unwrap().is_empty() {
                    return seen;
                }
            }
        });
        s.spawn(|| {
            while one.events_after(0, 1_000).unwrap().len() < 400 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        follower.join().unwrap()
    });
    assert_eq!(seen.len(), 400, "every event read once, none skipped");
}

fn pool_slots_are_shared_leased_and_given_back(db: &Db) {
    let (one, two) = (db.open(), db.open());
    let take = |store: &Arc<dyn Store>, holder: &str, runner: &str, now: u64| {
        store
            .take_pool_slot(&PoolTake {
                pool: "gpu",
                size: 2,
                holder,
                runner,
                now,
                until: now + 1_000,
            })
            .unwrap()
    };
    assert_eq!(take(&one, "t1/a/1", "a", 100), Some(0));
    assert_eq!(take(&two, "t2/a/1", "b", 100), Some(1));
    assert_eq!(take(&one, "t3/a/1", "a", 100), None, "both slots are taken");
    // Asking again for a slot it holds gives the same one.
    assert_eq!(take(&one, "t1/a/1", "a", 200), Some(0));
    assert_eq!(one.pool_usage(200).unwrap(), [("gpu".to_string(), 2)]);
    // A holder asking again keeps its own slot, even when a lower one is free.
    one.release_pool_slot("gpu", 0, "t1/a/1").unwrap();
    assert_eq!(take(&two, "t2/a/1", "b", 250), Some(1));
    assert_eq!(take(&one, "t1/a/1", "a", 250), Some(0));
    assert_eq!(one.pool_usage(250).unwrap(), [("gpu".to_string(), 2)]);
    // Given back: free for the next one; a release by another holder changes nothing.
    one.release_pool_slot("gpu", 1, "t1/a/1").unwrap();
    assert_eq!(take(&one, "t3/a/1", "a", 300), None);
    two.release_pool_slot("gpu", 1, "t2/a/1").unwrap();
    assert_eq!(take(&one, "t3/a/1", "a", 300), Some(1));
    // Runner `a` renews its slots; `b`'s would have run out. Runner `a` dies: after its lease
    // (1,300 at the latest), its slots are free.
    one.renew_pool_slots("a", 2_000).unwrap();
    assert_eq!(take(&two, "t4/a/1", "b", 1_500), None);
    assert_eq!(take(&two, "t4/a/1", "b", 2_001), Some(0));
    assert_eq!(one.pool_usage(2_001).unwrap(), [("gpu".to_string(), 1)]);
}

fn restricted_claimers_take_only_the_tasks_they_serve(db: &Db) {
    let store = db.open();
    let needing = |id: &str, at: u64, needs: &[&str]| NewTask {
        needs: needs.iter().map(|s| s.to_string()).collect(),
        ..new_task(id, at)
    };
    store
        .create_task(&needing("gpu", 1, &["pool:gpu", "type:command"]))
        .unwrap();
    store
        .create_task(&needing("web", 2, &["type:http"]))
        .unwrap();
    store.create_task(&needing("bare", 3, &[])).unwrap();
    let claim = |runner: &str, serves: &Serves| -> Vec<String> {
        let mut ids: Vec<String> = store
            .claim_tasks(&ClaimMany {
                runner,
                now: 10,
                lease_until: 1_000,
                limit: 10,
                skip: &[],
                serves,
            })
            .unwrap()
            .into_iter()
            .map(|c| c.task.id)
            .collect();
        ids.sort();
        ids
    };
    // No pool and commands only: neither the gpu task nor the http one.
    let commands_only = Serves {
        pools: Some(vec![]),
        node_types: Some(vec!["command".into()]),
    };
    assert_eq!(claim("a", &commands_only), ["bare"]);
    // Pool gpu, every kind: the gpu task and the http one.
    let gpu = Serves {
        pools: Some(vec!["gpu".into()]),
        node_types: None,
    };
    assert_eq!(claim("b", &gpu), ["gpu", "web"]);
    assert!(gpu.serves(&["pool:gpu".into(), "type:raster".into()]));
    assert!(!commands_only.serves(&["type:http".into()]));
    assert!(Serves::default().all());
}

/// Every contract test, once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&super::Db::sqlite())
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(&super::Db::postgres())
            })*
        }
    };
}

contract!(
    state_survives_reopening_the_file,
    big_values_are_read_whole_or_by_size_and_loops_keep_their_tally,
    branch_decisions_and_cache_entries_round_trip,
    cache_hits_share_their_objects_and_gone_objects_are_misses,
    tasks_list_newest_first_with_filters_and_pages,
    logs_cancel_flags_and_unknown_ids,
    a_duplicate_task_id_is_refused_without_touching_the_first,
    pipelines_are_created_replaced_listed_and_deleted,
    removing_a_service_removes_its_automatic_pipelines,
    a_callback_is_accepted_once_and_never_for_a_superseded_attempt,
    deleting_a_task_removes_its_rows_and_names_its_objects,
    concurrent_writers_share_commits_and_a_failing_one_fails_alone,
    batch_jobs_keep_chunk_checkpoints_and_lines_across_reopening,
    loop_chunks_are_kept_fenced_paged_and_replaced_by_a_new_fingerprint,
    a_claim_is_fenced_and_an_expired_lease_is_claimed_again,
    a_tick_is_created_once_and_the_last_tick_only_moves_forward,
    racing_schedulers_create_each_tick_once,
    shared_events_are_read_in_order_and_trimmed,
    concurrent_appends_are_read_without_gaps,
    pool_slots_are_shared_leased_and_given_back,
    restricted_claimers_take_only_the_tasks_they_serve,
);
