//! What a user's input can reach, through the real server: references only the server makes,
//! files a command may hand over, shell scripts, commands' environment.

use serde_json::{Value, json};

use crate::support::*;
use tessera_store::prelude::*;

const CAT: &str = "nodes:\n  - {id: in, type: entry, api: {route: cat}, next: [cat]}\n  - {id: cat, type: command, command: [cat], next: [end]}\n  - {id: end, type: end}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_references_in_client_data_are_refused_naming_the_field() {
    let f = with_tokens().await;
    assert_eq!(f.post_yaml_as(ADMIN, CAT).await, 201);
    for (body, field) in [
        (json!({"f": {"$file": "/proc/self/cmdline"}}), "f"),
        (json!({"a": [1, {"b": {"$file": "/etc/passwd"}}]}), "a.1.b"),
        (
            json!({"x": {"$object": "0b5a3c1e-9f4c-4a57-8a0e-1d2c3b4a5f60"}}),
            "x",
        ),
    ] {
        let (status, err) = f.submit_as(USER, "cat", &body).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{err}"
        );
    }
    // In a multipart `data` part too.
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: up, body: file}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
        )
        .text("data", json!({"p": {"$file": "/etc/passwd"}}).to_string());
    let r = f
        .http
        .post(f.url("/api/v1/services/up"))
        .bearer_auth(secret(USER))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["details"][0]["field"], "p", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_files_are_taken_only_from_the_scratch_dir_or_files_from() {
    let f = with_tokens().await;
    let allowed = f._dir.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(allowed.join("ok.txt"), "listed dir").unwrap();
    // The command writes what the pipeline author chose; `which` picks one case per task.
    let yaml = format!(
        r#"nodes:
  - {{id: in, type: entry, api: {{route: files, body: {{which: "x"}}}}, next: [make]}}
  - id: make
    type: command
    shell: true
    files_from: ["{allowed}"]
    command: |
      cd "$TESSERA_SCRATCH"
      echo scratch > own.txt
      ln -s /etc/hostname link.txt
      case {{{{which}}}} in
        own) echo '{{"f": {{"$file": "'$TESSERA_SCRATCH'/own.txt"}}}}' ;;
        absolute) echo '{{"f": {{"$file": "/etc/hostname"}}}}' ;;
        link) echo '{{"f": {{"$file": "'$TESSERA_SCRATCH'/link.txt"}}}}' ;;
        dotdot) echo '{{"f": {{"$file": "'$TESSERA_SCRATCH'/../../../../../../etc/hostname"}}}}' ;;
        listed) echo '{{"f": {{"$file": "{allowed}/ok.txt"}}}}' ;;
        fifo) mkfifo pipe; echo '{{"f": {{"$file": "'$TESSERA_SCRATCH'/pipe"}}}}' ;;
        relative) echo leak > {scratch_parent}/own.txt && echo '{{"f": {{"$file": "own.txt"}}}}' ;;
      esac
    cwd: "{scratch_parent}"
    next: [end]
  - {{id: end, type: end}}
"#,
        allowed = allowed.display(),
        scratch_parent = f._dir.path().display(),
    );
    assert_eq!(f.post_yaml_as(ADMIN, &yaml).await, 201);
    for (which, content) in [("own", "scratch\n"), ("listed", "listed dir")] {
        let doc = f.run_as(USER, "files", &json!({"which": which})).await;
        assert_eq!(doc["state"], "finished", "{which}: {doc}");
        let url = doc["result"]["f"]["url"].as_str().unwrap().to_string();
        let r = f
            .http
            .get(f.url(&url))
            .bearer_auth(secret(USER))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), content, "{which}");
    }
    // Relative paths are relative to the command's `cwd`, here the test's directory.
    for which in ["absolute", "link", "dotdot", "relative"] {
        let doc = f.run_as(USER, "files", &json!({"which": which})).await;
        assert_eq!(doc["state"], "failed", "{which}: {doc}");
        let error = doc["error"].as_str().unwrap();
        assert!(
            error.contains("outside this command's scratch directory"),
            "{which}: {error}"
        );
    }
    let doc = f.run_as(USER, "files", &json!({"which": "fifo"})).await;
    assert_eq!(doc["state"], "failed", "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_placeholders_are_values_never_code() {
    let f = with_tokens().await;
    let yaml = r#"nodes:
  - {id: in, type: entry, api: {route: hello, body: {name: "x"}}, next: [hi]}
  - {id: hi, type: command, shell: true, command: "echo hello {{name}}; echo \"quoted {{name}}\"; echo 'single {{name}}'", next: [end]}
  - {id: end, type: end}
"#;
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    for name in [
        "x; id; head -c 60 /proc/self/environ",
        "$(id)",
        "`id`",
        "it's \"quoted\" $HOME",
        "a\nb",
    ] {
        let doc = f.run_as(USER, "hello", &json!({"name": name})).await;
        assert_eq!(doc["state"], "finished", "{doc}");
        assert_eq!(
            doc["result"]["stdout"],
            format!("hello {name}\nquoted {name}\nsingle {name}\n"),
            "{name}"
        );
    }
    // An argv command keeps one argument per element, whatever the value holds.
    let yaml = r#"nodes:
  - {id: in, type: entry, api: {route: argv, body: {name: "x"}}, next: [count]}
  - {id: count, type: command, command: [sh, -c, "echo $#", sh, "{{name}}", "b {{name}}"], next: [end]}
  - {id: end, type: end}
"#;
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let doc = f
        .run_as(USER, "argv", &json!({"name": "a b; c $(d)"}))
        .await;
    assert_eq!(doc["result"]["stdout"], "2\n", "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_a_clean_environment() {
    let f = with_tokens().await;
    let yaml = r#"nodes:
  - {id: in, type: entry, api: {route: env}, next: [env]}
  - {id: env, type: command, command: [env], env: {MINE: "declared"}, next: [end]}
  - {id: end, type: end}
"#;
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let doc = f.run_as(USER, "env", &json!({})).await;
    let stdout = doc["result"]["stdout"].as_str().unwrap().to_string();
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // The test process runs under cargo with dozens of variables: none reaches the command.
    for name in &names {
        assert!(
            ["PATH", "HOME", "LANG", "TZ", "TMPDIR", "MINE"].contains(name)
                || name.starts_with("TESSERA_"),
            "unexpected variable {name} in {stdout}"
        );
    }
    assert!(
        names.contains(&"PATH") && names.contains(&"MINE"),
        "{stdout}"
    );
    let task = doc["id"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("TESSERA_TASK_ID={task}")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_outputs_are_per_owner_and_never_point_at_deleted_objects() {
    const USER2: &str = "user:u2:user2-secret-0123456789";
    let f = start_with(&[ADMIN, USER, USER2], tessera_server::Limits::default()).await;
    let runs = f._dir.path().join("runs");
    let yaml = format!(
        r#"nodes:
  - {{id: in, type: entry, api: {{route: thumb, body: {{n: 1}}}}, next: [make]}}
  - id: make
    type: command
    cache: true
    shell: true
    command: "echo run >> {runs}; echo picture-{{{{n}}}} > $TESSERA_SCRATCH/p.txt; echo '{{\"pic\": {{\"$file\": \"'$TESSERA_SCRATCH'/p.txt\"}}}}'"
    next: [end]
  - {{id: end, type: end}}
"#,
        runs = runs.display()
    );
    assert_eq!(f.post_yaml_as(ADMIN, &yaml).await, 201);
    let count_runs = || {
        std::fs::read_to_string(&runs)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let download = |token: &'static str, doc: &Value| {
        let url = doc["result"]["pic"]["url"].as_str().unwrap().to_string();
        let req = f.http.get(f.url(&url)).bearer_auth(secret(token));
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let input = json!({"n": 7});
    let a = f.run_as(USER, "thumb", &input).await;
    assert_eq!(download(USER, &a).await, (200, "picture-7\n".into()));
    // Another user does not get u1's object: the node runs for u2.
    let b = f.run_as(USER2, "thumb", &input).await;
    assert_eq!(download(USER2, &b).await, (200, "picture-7\n".into()));
    assert_eq!(count_runs(), 2);
    // u1 again: a hit, sharing the object.
    let c = f.run_as(USER, "thumb", &input).await;
    assert_eq!(count_runs(), 2, "a hit for the same owner");
    assert_eq!(c["result"]["pic"]["$object"], a["result"]["pic"]["$object"]);
    // Deleting the task that made it leaves it to the task that reused it.
    let del = |id: &Value| {
        let path = format!("/api/v1/tasks/{}", id.as_str().unwrap());
        f.http.delete(f.url(&path)).bearer_auth(secret(USER)).send()
    };
    assert_eq!(del(&a["id"]).await.unwrap().status().as_u16(), 204);
    assert_eq!(download(USER, &c).await, (200, "picture-7\n".into()));
    // Once no task holds it, the entry is a miss: the node runs again.
    assert_eq!(del(&c["id"]).await.unwrap().status().as_u16(), 204);
    let d = f.run_as(USER, "thumb", &input).await;
    assert_eq!(d["state"], "finished");
    assert_eq!(count_runs(), 3, "the entry's object was gone: recomputed");
    assert_eq!(download(USER, &d).await, (200, "picture-7\n".into()));
    assert_eq!(download(ADMIN, &d).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_routes_need_a_token_and_users_see_only_their_own_totals() {
    const USER2: &str = "user:u2:user2-secret-0123456789";
    let f = start_with(&[ADMIN, USER, USER2], tessera_server::Limits::default()).await;
    let status = |path: &'static str, token: Option<&'static str>| {
        let mut req = f.http.get(f.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(secret(t));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/metrics", None).await, 401);
    assert_eq!(status("/metrics", Some(USER)).await, 403);
    assert_eq!(status("/metrics", Some(ADMIN)).await, 200);
    for path in ["/openapi.json", "/docs"] {
        assert_eq!(status(path, None).await, 401, "{path}");
        assert_eq!(status(path, Some(USER)).await, 200, "{path}");
    }
    assert_eq!(status("/health", None).await, 200, "liveness stays open");
    let (_, doc) = f.get_as(USER, "/openapi.json").await;
    let metrics = &doc["paths"]["/metrics"]["get"];
    assert!(metrics.get("security").is_none() && metrics["responses"]["401"].is_object());
    // Totals: each user its own, the admin everyone's.
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: quick}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    for token in [USER, USER, USER2] {
        f.run_as(token, "quick", &json!({})).await;
    }
    for (token, total) in [(USER, 2), (USER2, 1), (ADMIN, 3)] {
        let (_, stats) = f.get_as(token, "/api/v1/stats").await;
        assert_eq!(stats["total"], total, "{token}: {stats}");
        assert_eq!(stats["pipelines"]["quick"]["finished"], total);
        let (_, p) = f.get_as(token, "/api/v1/pipelines/quick").await;
        assert_eq!(p["stats"]["total"], total, "{token}: {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_public_info_the_metrics_and_docs_are_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        tessera_store::SqliteStore::open(&dir.path().join("t.db"), tessera_store::Durability::Full)
            .unwrap(),
    );
    let config = tessera_server::ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        tokens: tessera_server::Tokens::parse(&[ADMIN.to_string()]).unwrap(),
        insecure: false,
        public_info: true,
        connections: Default::default(),
        limits: tessera_server::Limits::default(),
        engine: tessera_engine::EngineConfig::new(dir.path().join("work")),
    };
    let objects = tessera_store::Objects::local(&dir.path().join("store")).unwrap();
    let server = tessera_server::start(config, store, objects).await.unwrap();
    for path in ["/metrics", "/openapi.json", "/docs"] {
        let r = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = reqwest::get(format!("{}/api/v1/stats", server.url))
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the API itself still needs a token"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_leave_no_object_rows_or_bytes() {
    let (f, store) = start_with_store(&[], tessera_server::Limits::default()).await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: up, body: [a, b]}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let part =
        |name: &str| reqwest::multipart::Part::bytes(b"bytes".to_vec()).file_name(name.to_string());
    let forms = [
        // A stored part, then a `data` part naming a file.
        reqwest::multipart::Form::new()
            .part("a", part("a.bin"))
            .text("data", json!({"x": {"$file": "/etc/passwd"}}).to_string()),
        // A stored part, then a text part over the JSON body limit.
        reqwest::multipart::Form::new()
            .part("a", part("a.bin"))
            .text("note", "n".repeat((16 << 20) + 1)),
        // A stored part, and the other binary field missing.
        reqwest::multipart::Form::new().part("a", part("a.bin")),
    ];
    for (form, status) in forms.into_iter().zip([400, 413, 400]) {
        let r = f
            .http
            .post(f.url("/api/v1/services/up"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
    }
    assert!(
        store.unattached_objects(u64::MAX).unwrap().is_empty(),
        "no rows"
    );
    let files = std::fs::read_dir(f._dir.path().join("store/objects"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 0, "no bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_beyond_i64_stay_exact_through_scripts() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: ids}, next: [touch]}\n  - {id: touch, type: node, after: \"out.seen = true; out.n += 1;\", next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let (status, r) = f
        .http
        .post(f.url("/api/v1/services/ids"))
        .header("content-type", "application/json")
        .body(r#"{"id": 18446744073709551615, "big": [9223372036854775808], "n": 1}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 202);
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    f.wait_task(&id).await;
    let text = f
        .http
        .get(f.url(&format!("/api/v1/tasks/{id}/result")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let result: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(result["seen"], true);
    assert_eq!(result["n"], 2);
    assert!(text.contains("18446744073709551615"), "{text}");
    assert!(text.contains("[9223372036854775808]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_reference_never_reaches_another_tasks_object() {
    const USER2: &str = "user:u2:user2-secret-0123456789";
    let f = start_with(&[ADMIN, USER, USER2], tessera_server::Limits::default()).await;
    // u1 uploads a private file.
    let keep = "nodes:\n  - {id: in, type: entry, api: {route: keep, body: file}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml_as(ADMIN, keep).await, 201);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"u1 private".to_vec()).file_name("p.txt"),
    );
    let r: Value = f
        .http
        .post(f.url("/api/v1/services/keep"))
        .bearer_auth(secret(USER))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, doc) = f
        .get_as(
            USER,
            &format!("/api/v1/tasks/{}", r["task_id"].as_str().unwrap()),
        )
        .await;
    let object = doc["input"]["file"]["$object"]
        .as_str()
        .unwrap()
        .to_string();
    // u2's text, printed by a command, becomes a reference to it; a command then reads it.
    let yaml = r#"nodes:
  - {id: in, type: entry, api: {route: echo, body: {name: "x"}}, next: [print]}
  - {id: print, type: command, shell: true, command: "printf '%s' {{name}}", next: [read]}
  - {id: read, type: command, command: [cat, "{{a}}"], stdin: false, next: [end]}
  - {id: end, type: end}
"#;
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let name = json!({"a": {"$object": object}}).to_string();
    let doc = f.run_as(USER2, "echo", &json!({ "name": name })).await;
    assert_eq!(doc["state"], "failed", "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains("not one of this task's objects"), "{error}");
    assert!(!doc.to_string().contains("u1 private"));
}
