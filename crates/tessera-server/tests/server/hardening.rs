//! What a user's input can reach, through the real server: references only the server makes,
//! files a command may hand over, shell scripts, commands' environment.

use serde_json::{Value, json};
use tessera_server::Limits;

use crate::support::*;

const ADMIN: &str = "admin:root:admin-secret-0123456789";
const USER: &str = "user:u1:user1-secret-0123456789";

fn secret(token: &str) -> &str {
    token.rsplit(':').next().unwrap()
}

impl Fixture {
    async fn post_yaml_as(&self, token: &str, yaml: &str) -> u16 {
        self.http
            .post(self.url("/api/v1/pipelines"))
            .bearer_auth(secret(token))
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn submit_as(&self, token: &str, route: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/services/{route}")))
            .bearer_auth(secret(token))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(secret(token))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Submits as `token` and waits for the task's end: its document.
    async fn run_as(&self, token: &str, route: &str, body: &Value) -> Value {
        let (status, r) = self.submit_as(token, route, body).await;
        assert_eq!(status, 202, "{r}");
        let id = r["task_id"].as_str().unwrap().to_string();
        let start = std::time::Instant::now();
        loop {
            let (_, doc) = self.get_as(token, &format!("/api/v1/tasks/{id}")).await;
            if matches!(
                doc["state"].as_str(),
                Some("finished" | "failed" | "cancelled")
            ) {
                return doc;
            }
            assert!(
                start.elapsed().as_secs() < 30,
                "task {id} did not end: {doc}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn with_tokens() -> Fixture {
    start_with(&[ADMIN, USER], Limits::default()).await
}

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
