//! The real binary under faults and hostile settings: secrets kept from commands and from the
//! command line, commands an engine killed with -9 left running.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{free_port, rt, serve_with, wait_state, wait_state_as};
use crate::support::*;

const ADMIN_SECRET: &str = "admin-secret-0123456789";

#[test]
fn tokens_stay_out_of_commands_and_of_the_command_line() {
    let env = Env::new();
    let file = env.write(
        "tokens",
        &format!("# role:name:secret\nadmin:root:{ADMIN_SECRET}\n\n"),
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = env.run(&["serve", "--addr", "127.0.0.1:0", "--tokens-file", "tokens"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("open to its group or others") && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A second token in the environment, and an unrelated secret of the server's own.
    let server = serve_with(
        &env,
        free_port(),
        &["--tokens-file", "tokens"],
        &[
            ("TESSERA_TOKENS", "user:u1:user1-secret-0123456789"),
            ("CLOUD_SECRET", "hunter2"),
        ],
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(ADMIN_SECRET),
        "the secret is not on the command line"
    );
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        let yaml = "nodes:\n  - {id: in, type: entry, api: {route: env}, next: [env]}\n  - {id: env, type: command, command: [env], next: [end]}\n  - {id: end, type: end}\n";
        let r = client
            .post(format!("{}/api/v1/pipelines", server.url))
            .bearer_auth(ADMIN_SECRET)
            .body(yaml)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r: Value = client
            .post(format!("{}/api/v1/services/env", server.url))
            .bearer_auth("user1-secret-0123456789")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["task_id"].as_str().unwrap().to_string();
        let doc = wait_state_as(&client, &server.url, &id, Some(ADMIN_SECRET)).await;
        let stdout = doc["result"]["stdout"].as_str().unwrap();
        assert!(stdout.contains("PATH="), "{stdout}");
        for secret in ["TESSERA_TOKENS", "user1-secret", "CLOUD_SECRET", "hunter2"] {
            assert!(!stdout.contains(secret), "{secret} reached the command: {stdout}");
        }
    });
}

/// A node in a pool of one whose first attempt runs long: a later attempt records whether an
/// earlier one is still alive (not a zombie: a killed engine's children may stay unreaped)
/// when it starts.
const GPU_JOB: &str = r#"
pools: {gpu: 1}
nodes:
  - {id: in, type: entry, api: {route: gpu, body: {dir: "/tmp"}}, next: [work]}
  - id: work
    type: command
    pool: gpu
    shell: true
    command: |
      cd {{dir}}
      for p in $(cat pids 2>/dev/null); do
        state=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1)
        if [ -n "$state" ] && [ "$state" != Z ]; then echo "$p" >> overlaps; fi
      done
      echo $$ >> pids
      if [ "$(wc -l < pids)" -eq 1 ]; then sleep 60 & wait; fi
      echo '{"done": true}'
    next: [end]
  - {id: end, type: end}
"#;

/// Stores `GPU_JOB` on a server and starts it on `dir`: the task id.
async fn start_gpu_job(client: &reqwest::Client, url: &str, dir: &str) -> String {
    let r = client
        .post(format!("{url}/api/v1/pipelines"))
        .body(GPU_JOB)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r: Value = client
        .post(format!("{url}/api/v1/services/gpu"))
        .json(&json!({ "dir": dir }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["task_id"].as_str().unwrap().to_string()
}

fn first_pid(env: &Env) -> i32 {
    std::fs::read_to_string(env.path("pids"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn resume_kills_what_a_killed_run_left_running_before_running_the_node_again() {
    let env = Env::new();
    let p = env.write("gpu.yaml", GPU_JOB);
    let dir = env.dir.path().display().to_string();
    let input = json!({ "dir": dir }).to_string();
    let mut run = env.spawn(&["run", p.to_str().unwrap(), "--input", &input]);
    let id = read_task_id(&mut run);
    wait_for("the first attempt", Duration::from_secs(20), || {
        count_lines(&env.path("pids")) == 1
    });
    run.kill().unwrap(); // SIGKILL: the command is not told
    run.wait().unwrap();
    let first = first_pid(&env);
    assert!(pid_alive(first), "the command outlived the engine");
    let r = env.run(&["resume", &id]);
    assert_eq!(r.ok()["done"], true);
    assert!(!pid_alive(first), "the leftover command was killed");
    assert_eq!(count_lines(&env.path("pids")), 2);
    assert!(
        !env.path("overlaps").exists(),
        "two attempts ran at once: {:?}",
        std::fs::read_to_string(env.path("overlaps"))
    );
}

#[test]
fn a_restarted_server_kills_what_its_killed_predecessor_left_running() {
    let env = Env::new();
    let port = free_port();
    let mut first = serve_with(&env, port, &[], &[]);
    let rt = rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let dir = env.dir.path().display().to_string();
    let id = rt.block_on(start_gpu_job(&client, &first.url, &dir));
    wait_for("the first attempt", Duration::from_secs(20), || {
        count_lines(&env.path("pids")) == 1
    });
    // SIGKILL, and not reaped yet: the old server is a zombie while the new one starts (as
    // under a supervisor that restarts before it reaps).
    first.child.kill().unwrap();
    let leftover = first_pid(&env);
    assert!(pid_alive(leftover), "the command outlived the server");
    let second = serve_with(&env, port, &[], &[]);
    rt.block_on(async {
        let doc = wait_state(&client, &second.url, &id).await;
        assert_eq!(doc["state"], "finished", "{doc}");
    });
    assert!(!pid_alive(leftover), "the leftover command was killed");
    assert!(
        !env.path("overlaps").exists(),
        "two attempts ran at once: {:?}",
        std::fs::read_to_string(env.path("overlaps"))
    );
    drop(first); // reaped now
}

#[test]
fn sigterm_stops_the_server_and_its_commands_and_the_task_continues_at_the_next_start() {
    let env = Env::new();
    let port = free_port();
    // A long lease and a short grace period: the task must be handed back, not left to its
    // lease.
    let mut first = serve_with(&env, port, &["--lease", "30s", "--grace", "300ms"], &[]);
    let rt = rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let dir = env.dir.path().display().to_string();
    let id = rt.block_on(start_gpu_job(&client, &first.url, &dir));
    wait_for("the first attempt", Duration::from_secs(20), || {
        count_lines(&env.path("pids")) == 1
    });
    let command = first_pid(&env);
    let term = std::process::Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = first.child.wait().unwrap();
    assert!(
        status.success(),
        "the server stops cleanly on SIGTERM: {status}"
    );
    assert!(!pid_alive(command), "its command did not outlive it");
    // The stop is not the task's failure, and it was handed back: continued at once, without
    // waiting for the 30 s lease.
    let r = env.run(&["resume", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("is held by"), "{}", r.stderr);
    let doc = env.show(&id);
    assert_eq!(doc["state"], "finished", "{doc}");
    let work = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "work")
        .unwrap()
        .clone();
    assert_eq!(work["state"], "finished", "{work}");
}
