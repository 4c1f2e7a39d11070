//! Scheduler state machine tests: a simulated engine answers jobs, no I/O.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::plan::Plan;
use crate::script::Scripts;
use crate::validate::load_pipeline;

struct Sim {
    s: Scheduler,
    scripts: Arc<Scripts>,
    running: Vec<Job>,
    records: Vec<Record>,
    retries: Vec<(JobId, Duration)>,
    cancelled: Vec<JobId>,
    outcome: Option<Outcome>,
}

impl Sim {
    fn new(yaml: &str, input: Value) -> Sim {
        Sim::with_past(yaml, input, Vec::new())
    }

    fn with_past(yaml: &str, input: Value, past: Vec<PastRun>) -> Sim {
        Sim::build(yaml, input, past, true)
    }

    /// Loops run as branches of node instances, even those that could run in chunks.
    fn branches(yaml: &str, input: Value) -> Sim {
        Sim::build(yaml, input, Vec::new(), false)
    }

    fn build(yaml: &str, input: Value, past: Vec<PastRun>, chunks: bool) -> Sim {
        let scripts = Arc::new(Scripts::default());
        let pipeline = load_pipeline(yaml, &scripts).unwrap_or_else(|r| panic!("invalid: {r}"));
        let mut plan = Plan::new(Arc::new(pipeline));
        if !chunks {
            plan.programs.clear();
        }
        let plan = Arc::new(plan);
        let ctx = TaskContext {
            task_id: "t1".into(),
            input: input.into(),
            owner: None,
            scheduled_at: None,
        };
        let mut sim = Sim {
            s: Scheduler::new(ctx, plan, scripts.clone(), past),
            scripts,
            running: Vec::new(),
            records: Vec::new(),
            retries: Vec::new(),
            cancelled: Vec::new(),
            outcome: None,
        };
        let effects = sim.s.start(0);
        sim.apply(effects);
        sim
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        let mut answers = Vec::new();
        for e in effects {
            match e {
                Effect::Record(r) => self.records.push(r),
                // A chunked loop is answered at once, as the engine would after its chunks.
                Effect::Run(j) if j.chunked.is_some() => {
                    let work = j.chunked.as_ref().expect("chunked");
                    answers.push(match work.run_all(&self.scripts, &j.key) {
                        Ok((output, tally)) => Event::ItemsDone {
                            job: j.id,
                            output,
                            tally,
                        },
                        Err(error) => Event::ItemsFailed { job: j.id, error },
                    });
                }
                Effect::Run(j) => self.running.push(j),
                Effect::CancelJob(j) => {
                    self.cancelled.push(j);
                    self.running.retain(|r| r.id != j);
                }
                Effect::RetryAfter { job, delay } => self.retries.push((job, delay)),
                Effect::CacheStore { .. } => {}
                Effect::Done(o) => self.outcome = Some(o),
            }
        }
        for event in answers {
            let effects = self.s.handle(event, 1);
            self.apply(effects);
        }
        // As the driver does: inline work a step left goes on at once.
        if self.s.has_work() {
            let effects = self.s.proceed(1);
            self.apply(effects);
        }
    }

    fn take_job(&mut self, key: &str) -> Job {
        let pos = self
            .running
            .iter()
            .position(|j| j.key == key)
            .unwrap_or_else(|| panic!("no running job {key}; running: {:?}", self.keys()));
        self.running.remove(pos)
    }

    fn keys(&self) -> Vec<String> {
        self.running.iter().map(|j| j.key.clone()).collect()
    }

    fn succeed(&mut self, key: &str, output: Value) {
        let job = self.take_job(key);
        let effects = self.s.handle(
            Event::JobSucceeded {
                job: job.id,
                output: output.into(),
                cached: false,
            },
            1,
        );
        self.apply(effects);
    }

    fn fail(&mut self, key: &str, error: JobError) {
        let job = self.take_job(key);
        let effects = self.s.handle(Event::JobFailed { job: job.id, error }, 1);
        self.apply(effects);
    }

    fn node_states(&self, key: &str) -> Vec<NodeState> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Node(n) if n.key == key => Some(n.state),
                _ => None,
            })
            .collect()
    }

    fn result(&self) -> Value {
        let o = self.outcome.as_ref().expect("task ended");
        assert_eq!(o.state, TaskState::Finished, "error: {:?}", o.error);
        o.result.clone().unwrap().into_value()
    }
}

const CMD: &str = "type: command\n    command: [\"true\"]";

#[test]
fn inline_chain_finishes_in_one_step() {
    let sim = Sim::new(
        r#"
nodes:
  - {id: in, type: entry, next: [a]}
  - {id: a, type: node, next: [b], after: "out.seen = true;"}
  - {id: b, type: node, next: [end], input: {n: in.out.n, seen: a.out.seen, k: 7}}
  - {id: end, type: end}
"#,
        json!({"n": 3}),
    );
    assert_eq!(sim.result(), json!({"n": 3, "seen": true, "k": 7}));
    assert_eq!(sim.node_states("a"), vec![NodeState::Finished]);
}

#[test]
fn parallel_branches_are_dispatched_together_and_joined_in_declaration_order() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a, b]}}
  - id: a
    {CMD}
    next: [join]
  - id: b
    {CMD}
    next: [join]
  - {{id: join, type: node, next: [end]}}
  - {{id: end, type: end}}
"#
    );
    let mut sim = Sim::new(&yaml, json!({}));
    assert_eq!(sim.keys(), vec!["a", "b"]);
    sim.succeed("b", json!({"x": "b", "b": 1}));
    assert!(sim.outcome.is_none());
    sim.succeed("a", json!({"x": "a", "a": 1}));
    // `b` is declared after `a`, so its `x` wins whatever the finishing order.
    assert_eq!(sim.result(), json!({"x": "b", "a": 1, "b": 1}));
}

#[test]
fn branch_not_taken_is_skipped_and_the_join_still_runs() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [check]}
  - id: check
    type: branch
    if: "input.n > 2"
    then: {next: [big], out: {size: "in.out.n"}}
    else: {next: [small]}
  - {id: big, type: node, next: [join], after: "out.kind = \"big\";"}
  - {id: small, type: node, next: [after_small], after: "out.kind = \"small\";"}
  - {id: after_small, type: node, next: [join]}
  - {id: join, type: node, next: [end]}
  - {id: end, type: end}
"#;
    let sim = Sim::new(yaml, json!({"n": 3}));
    assert_eq!(sim.result(), json!({"size": 3, "kind": "big"}));
    assert_eq!(sim.node_states("small"), vec![NodeState::Skipped]);
    assert_eq!(sim.node_states("after_small"), vec![NodeState::Skipped]);
    let sim = Sim::new(yaml, json!({"n": 1}));
    assert_eq!(sim.result(), json!({"n": 1, "kind": "small"}));
}

#[test]
fn cycle_through_a_branch_iterates_with_fresh_inputs() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [step]}
  - id: step
    type: node
    next: [check]
    before: "input.count = if input.count == () { 1 } else { input.count + 1 };"
  - id: check
    type: branch
    if: "input.count < input.n"
    then: {next: [step]}
    else: {next: [end]}
  - {id: end, type: end}
"#;
    let sim = Sim::new(yaml, json!({"n": 4}));
    assert_eq!(sim.result(), json!({"n": 4, "count": 4}));
    let iterations: Vec<u32> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Node(n) if n.key == "step" => Some(n.iteration),
            _ => None,
        })
        .collect();
    assert_eq!(iterations, vec![0, 1, 2, 3]);
}

#[test]
fn cycle_stops_at_max_iterations() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [step]}
  - {id: step, type: node, next: [check]}
  - id: check
    type: branch
    if: "true"
    max_iterations: 5
    then: {next: [step]}
    else: {next: [end]}
  - {id: end, type: end}
"#;
    let sim = Sim::new(yaml, json!({}));
    let o = sim.outcome.unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert!(o.error.unwrap().contains("max_iterations (5)"));
}

#[test]
fn loop_collects_in_item_order_whatever_the_finishing_order() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.words
    max_parallel: 2
    collect: loop.measure.out.len
    next: [end]
    nodes:
      - {id: fetch, type: command, command: ["true"], next: [measure]}
      - {id: measure, type: node, input: {len: loop.fetch.out.len, word: loop.item}}
  - {id: end, type: end}
"#;
    let mut sim = Sim::new(yaml, json!({"words": ["a", "bb", "ccc"]}));
    assert_eq!(
        sim.keys(),
        vec!["fetch#0", "fetch#1"],
        "max_parallel bounds the branches"
    );
    sim.succeed("fetch#1", json!({"len": 2}));
    assert_eq!(sim.keys(), vec!["fetch#0", "fetch#2"]);
    sim.succeed("fetch#2", json!({"len": 3}));
    sim.succeed("fetch#0", json!({"len": 1}));
    assert_eq!(sim.result(), json!({"items": [1, 2, 3]}));
}

#[test]
fn loop_default_input_is_item_and_index_and_scripts_see_them() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.words
    next: [end]
    nodes:
      - {id: len, type: node, after: "out = #{w: item, i: index, n: input.item.len()};"}
  - {id: end, type: end}
"#;
    let sim = Sim::new(yaml, json!({"words": ["é", "xy"]}));
    assert_eq!(
        sim.result(),
        json!({"items": [{"w": "é", "i": 0, "n": 1}, {"w": "xy", "i": 1, "n": 2}]})
    );
}

#[test]
fn a_loop_tolerates_failed_items_up_to_max_failed_items_and_lists_them() {
    let yaml = |max: u32| {
        format!(
            r#"
nodes:
  - {{id: in, type: entry, next: [each]}}
  - id: each
    type: loop
    items: in.out.xs
    max_failed_items: {max}
    next: [end]
    nodes:
      - {{id: check, type: node, after: "if loop.item < 0 {{ throw `negative: ${{loop.item}}`; }} out = loop.item;", next: [double]}}
      - {{id: double, type: node, after: "out = check.out * 2;"}}
  - {{id: end, type: end}}
"#
        )
    };
    // Two bad items out of five, two tolerated: null in their place, listed with their errors;
    // the same whether the items run in chunks or as branches.
    let chunked = Sim::new(&yaml(2), json!({"xs": [1, -2, 3, -4, 5]})).result();
    let sim = Sim::branches(&yaml(2), json!({"xs": [1, -2, 3, -4, 5]}));
    let out = sim.result();
    assert_eq!(chunked, out);
    assert_eq!(out["items"], json!([2, null, 6, null, 10]));
    let failed = out["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["index"], 1);
    assert_eq!(failed[0]["node"], "check#1");
    assert!(
        failed[1]["error"]
            .as_str()
            .unwrap()
            .contains("negative: -4"),
        "{out}"
    );
    // What follows a failed node in its branch is skipped, and recorded so.
    let skipped: Vec<String> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Node(n) if n.state == NodeState::Skipped => Some(n.key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, ["double#1", "double#3"]);
    // One too many: the task fails, naming the node and the limit.
    let o = Sim::new(&yaml(1), json!({"xs": [1, -2, 3, -4, 5]}))
        .outcome
        .unwrap();
    let b = Sim::branches(&yaml(1), json!({"xs": [1, -2, 3, -4, 5]}))
        .outcome
        .unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert_eq!(o.error, b.error);
    let error = o.error.unwrap();
    assert!(error.contains("node `check#3` failed"), "{error}");
    assert!(
        error.contains("more items of loop `each` failed than its max_failed_items (1) allows"),
        "{error}"
    );
    // No failure: no `failed` list; no tolerance: the first failure fails the task.
    assert_eq!(
        Sim::new(&yaml(2), json!({"xs": [1]})).result(),
        json!({"items": [2]})
    );
    let o = Sim::new(&yaml(0), json!({"xs": [-1]})).outcome.unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert!(!o.error.unwrap().contains("max_failed_items"));
}

#[test]
fn a_failed_job_of_a_tolerant_loop_fails_its_item_only() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    max_failed_items: 1
    next: [end]
    nodes:
      - {id: fetch, type: command, command: ["true"]}
  - {id: end, type: end}
"#;
    let mut sim = Sim::new(yaml, json!({"xs": ["a", "b"]}));
    sim.fail("fetch#0", JobError::permanent("exit status 3".to_string()));
    assert!(sim.outcome.is_none(), "the loop goes on");
    sim.succeed("fetch#1", json!({"ok": true}));
    assert_eq!(
        sim.result(),
        json!({"items": [null, {"ok": true}], "failed": [
            {"index": 0, "node": "fetch#0", "error": "exit status 3"}
        ]})
    );
}

#[test]
fn a_long_loop_holds_only_the_branches_in_flight() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    max_parallel: 8
    next: [end]
    nodes:
      - {id: fetch, type: command, command: ["true"], next: [keep]}
      - {id: keep, type: node, after: "out = fetch.out.n;"}
  - {id: end, type: end}
"#;
    let n = 10_000;
    let mut sim = Sim::new(yaml, json!({"xs": (0..n).collect::<Vec<_>>()}));
    let mut most = 0;
    while let Some(job) = sim.running.first().map(|j| j.key.clone()) {
        let item: u64 = job.trim_start_matches("fetch#").parse().unwrap();
        sim.succeed(&job, json!({"n": item * 3}));
        most = most.max(sim.s.inst.len());
    }
    // The 3 pipeline nodes, and 8 branches of 2 template nodes: slots of finished branches are
    // reused, whatever the number of items.
    assert!(most <= 3 + 8 * 2, "{most} instances held");
    let out = sim.result();
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), n as usize);
    assert!(
        items
            .iter()
            .enumerate()
            .all(|(i, v)| v == &json!(i as u64 * 3))
    );
    // Every instance is counted, reused slots included.
    let p = sim.s.progress();
    assert_eq!(
        (p.total, p.finished),
        (3 + 2 * n as usize, 3 + 2 * n as usize)
    );
    // Each item's records carry its own key.
    assert_eq!(sim.node_states("keep#9999"), [NodeState::Finished]);
}

#[test]
fn a_long_inline_loop_runs_in_bounded_steps() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    next: [end]
    nodes:
      - {id: triple, type: node, after: "out = loop.item * 3;"}
  - {id: end, type: end}
"#;
    let n = 20_000u64;
    let scripts = Arc::new(Scripts::default());
    let pipeline = load_pipeline(yaml, &scripts).unwrap();
    let ctx = TaskContext {
        task_id: "t1".into(),
        input: json!({"xs": (0..n).collect::<Vec<_>>()}).into(),
        owner: None,
        scheduled_at: None,
    };
    // As branches: a chunked loop is one job, whatever its length.
    let mut plan = Plan::new(Arc::new(pipeline));
    plan.programs.clear();
    let mut s = Scheduler::new(ctx, Arc::new(plan), scripts, Vec::new());
    let mut steps = vec![s.start(0)];
    while s.has_work() {
        steps.push(s.proceed(1));
    }
    // Each step holds a bounded number of records (the commit of one step stays small), and
    // the work went on to the end.
    assert!(
        steps.len() >= (n as usize) / STEP_BUDGET,
        "{} steps",
        steps.len()
    );
    assert!(steps.iter().all(|e| e.len() <= STEP_BUDGET + 8));
    let done = steps.iter().flatten().find_map(|e| match e {
        Effect::Done(o) => Some(o.clone()),
        _ => None,
    });
    let result = done.expect("the task ended").result.unwrap().into_value();
    assert_eq!(result["items"].as_array().unwrap().len(), n as usize);
    assert_eq!(result["items"][19_999], json!(59_997));
}

#[test]
fn an_item_failing_in_two_arms_counts_once_and_collects_null() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    max_failed_items: 1
    next: [end]
    nodes:
      - {id: a, type: node, next: [b, c]}
      - {id: b, type: command, command: ["true"]}
      - {id: c, type: command, command: ["true"]}
  - {id: end, type: end}
"#;
    let mut sim = Sim::new(yaml, json!({"xs": [1, 2]}));
    sim.fail("b#0", JobError::permanent("b broke".to_string()));
    sim.fail("c#0", JobError::permanent("c broke".to_string()));
    assert!(sim.outcome.is_none(), "one item failed, one is tolerated");
    sim.succeed("b#1", json!(1));
    sim.succeed("c#1", json!({"c": 1}));
    let out = sim.result();
    assert_eq!(out["items"], json!([null, {"c": 1}]));
    assert_eq!(out["failed"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["failed"][0]["node"], "b#0");
    // One arm failed, the other finished: the item still collects null.
    let mut sim = Sim::new(yaml, json!({"xs": [1]}));
    sim.fail("b#0", JobError::permanent("b broke".to_string()));
    sim.succeed("c#0", json!({"c": 0}));
    assert_eq!(sim.result()["items"], json!([null]));
}

#[test]
fn loop_over_nothing_and_over_a_non_list() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - {id: each, type: loop, items: in.out.xs, next: [end], nodes: [{id: t, type: node}]}
  - {id: end, type: end}
"#;
    assert_eq!(
        Sim::new(yaml, json!({"xs": []})).result(),
        json!({"items": []})
    );
    let o = Sim::new(yaml, json!({"xs": 3})).outcome.unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert!(o.error.unwrap().contains("gave a number; expected a list"));
}

#[test]
fn retryable_failures_back_off_then_fail_naming_node_and_attempt() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [flaky]}}
  - id: flaky
    {CMD}
    retry: {{attempts: 3, backoff: 1s, max_backoff: 10s}}
    next: [end]
  - {{id: end, type: end}}
"#
    );
    let mut sim = Sim::new(&yaml, json!({}));
    sim.fail("flaky", JobError::retryable("exit code 1"));
    assert_eq!(sim.retries.len(), 1);
    let (job, d1) = sim.retries[0];
    assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
    let effects = sim.s.handle(Event::RetryDue { job }, 2);
    sim.apply(effects);
    assert_eq!(sim.running[0].id.attempt, 2);
    sim.fail("flaky", JobError::retryable("exit code 1"));
    let (job, d2) = sim.retries[1];
    assert!(d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2));
    let effects = sim.s.handle(Event::RetryDue { job }, 3);
    sim.apply(effects);
    sim.fail("flaky", JobError::retryable("exit code 1"));
    let o = sim.outcome.unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert_eq!(
        o.error.unwrap(),
        "node `flaky` failed (attempt 3): exit code 1"
    );
}

#[test]
fn permanent_failure_fails_at_once_and_cancels_running_siblings() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a, b]}}
  - id: a
    {CMD}
    retry: {{attempts: 5}}
    next: [end]
  - id: b
    {CMD}
    next: [end]
  - {{id: end, type: end}}
"#
    );
    let mut sim = Sim::new(&yaml, json!({}));
    sim.fail("a", JobError::permanent("HTTP 404"));
    assert!(sim.retries.is_empty());
    assert_eq!(sim.cancelled.len(), 1);
    assert_eq!(
        sim.node_states("b"),
        vec![NodeState::Running, NodeState::Cancelled]
    );
    assert_eq!(sim.outcome.unwrap().state, TaskState::Failed);
}

#[test]
fn stale_events_are_ignored() {
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, next: [a]}}\n  - id: a\n    {CMD}\n    next: [end]\n  - {{id: end, type: end}}\n"
    );
    let mut sim = Sim::new(&yaml, json!({}));
    let job = sim.running[0].id;
    let stale = JobId {
        instance: job.instance,
        iteration: job.iteration,
        attempt: job.attempt + 7,
    };
    let effects = sim.s.handle(
        Event::JobSucceeded {
            job: stale,
            output: json!({}).into(),
            cached: false,
        },
        1,
    );
    assert!(effects.is_empty());
    assert!(sim.outcome.is_none());
}

#[test]
fn cancel_cancels_running_jobs() {
    let yaml = format!(
        "nodes:\n  - {{id: in, type: entry, next: [a]}}\n  - id: a\n    {CMD}\n    next: [end]\n  - {{id: end, type: end}}\n"
    );
    let mut sim = Sim::new(&yaml, json!({}));
    let effects = sim.s.handle(
        Event::Cancel {
            reason: "cancelled by user".into(),
        },
        1,
    );
    sim.apply(effects);
    assert_eq!(sim.cancelled.len(), 1);
    assert_eq!(sim.outcome.unwrap().state, TaskState::Cancelled);
}

#[test]
fn resume_replays_finished_nodes_and_reruns_the_rest() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a]}}
  - id: a
    {CMD}
    next: [b]
  - id: b
    {CMD}
    next: [end]
  - {{id: end, type: end}}
"#
    );
    let past = vec![
        PastRun {
            key: "a".into(),
            iteration: 0,
            attempt: 1,
            state: NodeState::Finished,
            output: Some(json!({"from_a": 1}).into()),
            decision: None,
        },
        PastRun {
            key: "b".into(),
            iteration: 0,
            attempt: 2,
            state: NodeState::Failed,
            output: None,
            decision: None,
        },
    ];
    let mut sim = Sim::with_past(&yaml, json!({}), past);
    assert_eq!(sim.keys(), vec!["b"], "a is not run again");
    assert_eq!(sim.running[0].id.attempt, 3, "attempt numbers continue");
    assert_eq!(sim.running[0].input, json!({"from_a": 1}));
    sim.succeed("b", json!({"done": true}));
    assert_eq!(sim.result(), json!({"done": true}));
}

#[test]
fn ready_expression_starts_on_the_first_predecessor() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a, b]}}
  - id: a
    {CMD}
    next: [first]
  - id: b
    {CMD}
    next: [first]
  - {{id: first, type: node, ready: "a.state == \"finished\" || b.state == \"finished\"", next: [end]}}
  - {{id: end, type: end}}
"#
    );
    let mut sim = Sim::new(&yaml, json!({}));
    sim.succeed("b", json!({"winner": "b"}));
    assert_eq!(sim.result(), json!({"winner": "b"}));
    assert_eq!(
        sim.cancelled.len(),
        1,
        "the slower branch is cancelled when the end is reached"
    );
}

#[test]
fn runaway_script_fails_its_node_with_a_clear_error() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [spin]}
  - {id: spin, type: node, before: "loop { }", next: [end]}
  - {id: end, type: end}
"#;
    let o = Sim::new(yaml, json!({})).outcome.unwrap();
    assert_eq!(o.state, TaskState::Failed);
    let e = o.error.unwrap();
    assert!(
        e.starts_with("node `spin` failed (attempt 1): `before` script: script stopped"),
        "{e}"
    );
}

#[test]
fn all_paths_skipped_fails_the_task() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [check]}
  - {id: check, type: branch, if: "false", then: {next: [end]}, else: {next: []}}
  - {id: end, type: end}
"#;
    let o = Sim::new(yaml, json!({})).outcome.unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert!(o.error.unwrap().contains("no end node was reached"));
}

#[test]
fn cache_key_depends_on_content_not_object_ids() {
    let scripts = Scripts::default();
    let p = load_pipeline(
        "nodes:\n  - {id: in, type: entry, next: [a]}\n  - {id: a, type: node, cache: true, next: [end]}\n  - {id: end, type: end}\n",
        &scripts,
    )
    .unwrap();
    let node = p.node("a").unwrap();
    let a = json!({"img": {"$object": "id-1", "sha256": "abc"}});
    let b = json!({"img": {"$object": "id-2", "sha256": "abc"}});
    let c = json!({"img": {"$object": "id-1", "sha256": "def"}});
    assert_eq!(
        cache_key(node, &a.clone().into(), &[], None),
        cache_key(node, &b.clone().into(), &[], None)
    );
    assert_ne!(
        cache_key(node, &a.clone().into(), &[], None),
        cache_key(node, &c.clone().into(), &[], None)
    );
    // Each owner has its own entries.
    assert_ne!(
        cache_key(node, &a.clone().into(), &[], None),
        cache_key(node, &a.clone().into(), &[], Some("u1"))
    );
    assert_ne!(
        cache_key(node, &a.clone().into(), &[], Some("u1")),
        cache_key(node, &a.clone().into(), &[], Some("u2"))
    );
    assert_eq!(
        cache_key(node, &a.clone().into(), &[], Some("u1")),
        cache_key(node, &b.clone().into(), &[], Some("u1"))
    );
}

#[test]
fn wide_fan_out_completes_inline() {
    let mut yaml = String::from("nodes:\n  - {id: in, type: entry, next: [");
    yaml.push_str(
        &(0..300)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    yaml.push_str("]}\n");
    for i in 0..300 {
        yaml.push_str(&format!(
            "  - {{id: n{i}, type: node, next: [end], after: \"out = #{{}}; out.n{i} = {i};\"}}\n"
        ));
    }
    yaml.push_str("  - {id: end, type: end}\n");
    let sim = Sim::new(&yaml, json!({}));
    let result = sim.result();
    assert_eq!(result.as_object().unwrap().len(), 300);
    assert_eq!(result["n299"], json!(299));
}

/// Two parallel commands, each leading to its own end node.
fn two_ends(wait_all: bool) -> String {
    format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a, b]}}
  - id: a
    {CMD}
    next: [end_a]
  - id: b
    {CMD}
    next: [end_b]
  - {{id: end_a, type: end, wait_all: {wait_all}}}
  - {{id: end_b, type: end, wait_all: {wait_all}}}
"#
    )
}

#[test]
fn wait_all_waits_for_every_end() {
    let mut sim = Sim::new(&two_ends(true), json!({}));
    sim.succeed("a", json!({"a": 1}));
    assert!(sim.outcome.is_none(), "end_b not reached yet");
    sim.succeed("b", json!({"b": 1}));
    assert_eq!(sim.result(), json!({"b": 1}));
}

#[test]
fn first_end_reached_ends_the_task_without_wait_all() {
    let mut sim = Sim::new(&two_ends(false), json!({}));
    sim.succeed("a", json!({"a": 1}));
    assert_eq!(sim.result(), json!({"a": 1}));
    assert_eq!(
        sim.node_states("b"),
        vec![NodeState::Running, NodeState::Cancelled]
    );
}

#[test]
fn wait_all_ends_when_the_last_end_is_skipped() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [e1, br]}
  - {id: e1, type: end, wait_all: true}
  - id: br
    type: branch
    if: "false"
    then: {next: [e2]}
    else: {next: [x]}
  - {id: x, type: node}
  - {id: e2, type: end, wait_all: true}
"#;
    assert_eq!(Sim::new(yaml, json!({"v": 1})).result(), json!({"v": 1}));
}

const LOOP_IN_CYCLE: &str = r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    next: [check]
    nodes:
      - {id: t, type: command, command: ["true"]}
  - id: check
    type: branch
    if: "input.items[0] < 2"
    then: {next: [each]}
    else: {next: [end]}
  - {id: end, type: end}
"#;

#[test]
fn a_loop_inside_a_cycle_records_each_iteration_apart() {
    let mut sim = Sim::new(LOOP_IN_CYCLE, json!({"xs": [0]}));
    sim.succeed("t#0", json!(1));
    let second = sim
        .running
        .iter()
        .find(|j| j.key == "t#0")
        .map(|j| j.iteration);
    assert_eq!(
        second,
        Some(1),
        "the branch runs in the loop's second iteration"
    );
    sim.succeed("t#0", json!(5));
    assert_eq!(sim.result(), json!({"items": [5]}));
    let runs: Vec<(u32, u32)> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Node(n) if n.key == "t#0" && n.state == NodeState::Running => {
                Some((n.iteration, n.attempt))
            }
            _ => None,
        })
        .collect();
    assert_eq!(runs, vec![(0, 1), (1, 1)]);
}

#[test]
fn resume_inside_a_cycle_reruns_the_current_iteration() {
    let past = vec![
        PastRun {
            key: "in".into(),
            iteration: 0,
            attempt: 1,
            state: NodeState::Finished,
            output: Some(json!({"xs": [0]}).into()),
            decision: None,
        },
        PastRun {
            key: "t#0".into(),
            iteration: 0,
            attempt: 1,
            state: NodeState::Finished,
            output: Some(json!(1).into()),
            decision: None,
        },
        PastRun {
            key: "each".into(),
            iteration: 0,
            attempt: 1,
            state: NodeState::Finished,
            output: Some(json!({"items": [1]}).into()),
            decision: None,
        },
        PastRun {
            key: "check".into(),
            iteration: 0,
            attempt: 1,
            state: NodeState::Finished,
            output: Some(json!({"items": [1]}).into()),
            decision: Some(Arm::Then),
        },
    ];
    let sim = Sim::with_past(LOOP_IN_CYCLE, json!({"xs": [0]}), past);
    assert_eq!(sim.keys(), vec!["t#0"]);
    assert_eq!(sim.running[0].iteration, 1);
}

#[test]
fn replayed_nodes_keep_their_input() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a]}}
  - id: a
    {CMD}
    input: {{k: in.out.k}}
    next: [b]
  - id: b
    {CMD}
    input: {{seen: a.input.k}}
    next: [end]
  - {{id: end, type: end}}
"#
    );
    let mut fresh = Sim::new(&yaml, json!({"k": 42}));
    fresh.succeed("a", json!({}));
    let past = vec![PastRun {
        key: "a".into(),
        iteration: 0,
        attempt: 1,
        state: NodeState::Finished,
        output: Some(json!({}).into()),
        decision: None,
    }];
    let resumed = Sim::with_past(&yaml, json!({"k": 42}), past);
    assert_eq!(resumed.running[0].input, fresh.running[0].input);
    assert_eq!(resumed.running[0].input, json!({"seen": 42}));
}

#[test]
fn a_new_iteration_cancels_the_previous_iterations_running_work() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [h, g]}
  - {id: g, type: branch, if: "false", then: {next: [end]}, else: {next: []}}
  - {id: h, type: node, next: [p, b], before: "input.n = if input.n == () { 0 } else { input.n + 1 };"}
  - {id: p, type: command, command: ["true"], next: [b]}
  - id: b
    type: branch
    ready: "h.state == \"finished\""
    if: "input.n < 1"
    then: {next: [h]}
    else: {next: [x]}
  - {id: x, type: node}
  - {id: end, type: end}
"#;
    let mut sim = Sim::new(yaml, json!({}));
    assert!(
        !sim.cancelled.is_empty(),
        "iteration 0's `p` was cancelled when iteration 1 began"
    );
    let ids: std::collections::HashSet<JobId> = sim.running.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), sim.running.len(), "no two live jobs share an id");
    while let Some(j) = sim.running.pop() {
        let eff = sim.s.handle(
            Event::JobSucceeded {
                job: j.id,
                output: json!({}).into(),
                cached: false,
            },
            2,
        );
        sim.apply(eff);
    }
    assert!(sim.outcome.is_some(), "the task ends once no work is left");
}

#[test]
fn readiness_rules_follow_the_predecessors_states() {
    let yaml = |rule: &str| {
        format!(
            r#"
nodes:
  - {{id: in, type: entry, next: [a, b, pick]}}
  - id: a
    {CMD}
    next: [join]
  - id: b
    {CMD}
    next: [join]
  - {{id: pick, type: branch, if: "false", then: {{next: [join]}}, else: {{next: [end]}}}}
  - {{id: join, type: node, ready: {rule}, next: [end]}}
  - {{id: end, type: end, wait_all: true}}
"#
        )
    };
    // one_finished: starts on the first finished predecessor, the other still running.
    let mut sim = Sim::new(&yaml("one_finished"), json!({}));
    sim.succeed("a", json!({"from": "a"}));
    assert_eq!(sim.node_states("join").last(), Some(&NodeState::Finished));
    // all_finished: the branch arm not taken counts as skipped, so `join` is skipped.
    let mut sim = Sim::new(&yaml("all_finished"), json!({}));
    sim.succeed("a", json!({}));
    assert!(sim.node_states("join").is_empty());
    sim.succeed("b", json!({}));
    assert_eq!(sim.node_states("join").last(), Some(&NodeState::Skipped));
    // none_failed: finished or skipped predecessors are enough.
    let mut sim = Sim::new(&yaml("none_failed"), json!({}));
    sim.succeed("a", json!({}));
    sim.succeed("b", json!({}));
    assert_eq!(sim.node_states("join").last(), Some(&NodeState::Finished));
}

#[test]
fn all_done_runs_after_a_failure_and_the_task_goes_on() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [work]}}
  - id: work
    {CMD}
    next: [report]
  - {{id: report, type: node, ready: all_done, before: "input = #{{work: work.state}};", next: [end]}}
  - {{id: end, type: end}}
"#
    );
    let mut sim = Sim::new(&yaml, json!({}));
    sim.fail("work", JobError::permanent("boom"));
    assert_eq!(sim.result(), json!({"work": "failed"}));
    // Without a handler downstream, the same failure fails the task.
    let plain = yaml.replace("ready: all_done, ", "");
    let mut sim = Sim::new(&plain, json!({}));
    sim.fail("work", JobError::permanent("boom"));
    assert_eq!(sim.outcome.unwrap().state, TaskState::Failed);
}

#[test]
fn a_changed_node_runs_again_with_what_follows_it() {
    let yaml = format!(
        r#"
nodes:
  - {{id: in, type: entry, next: [a]}}
  - id: a
    {CMD}
    next: [b]
  - id: b
    {CMD}
    next: [c]
  - id: c
    {CMD}
    next: [end]
  - {{id: end, type: end}}
"#
    );
    let finished = |key: &str| PastRun {
        key: key.into(),
        iteration: 0,
        attempt: 1,
        state: NodeState::Finished,
        output: Some(json!({"from": key}).into()),
        decision: None,
    };
    let past = vec![finished("in"), finished("a"), finished("b"), finished("c")];
    let scripts = Arc::new(Scripts::default());
    let pipeline = load_pipeline(&yaml, &scripts).unwrap();
    let plan = Arc::new(Plan::new(Arc::new(pipeline)));
    let ctx = TaskContext {
        task_id: "t1".into(),
        input: json!({}).into(),
        owner: None,
        scheduled_at: None,
    };
    // `b` changed: `a` is replayed, `b` runs again, and so does `c` after it.
    let mut s = Scheduler::new(ctx.clone(), plan.clone(), scripts.clone(), past.clone())
        .with_changes(["b".to_string()].into_iter().collect());
    let runs = |effects: &[Effect]| -> Vec<Job> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Run(j) => Some(j.clone()),
                _ => None,
            })
            .collect()
    };
    let started = runs(&s.start(0));
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].key, "b");
    let event = Event::JobSucceeded {
        job: started[0].id,
        output: json!({"new": true}).into(),
        cached: false,
    };
    let next = runs(&s.handle(event, 1));
    assert_eq!(next.len(), 1, "`c` had finished, and runs again after `b`");
    assert_eq!(next[0].key, "c");
    // Without changes, everything that finished is replayed.
    let past = vec![finished("in"), finished("a"), finished("b")];
    let mut s = Scheduler::new(ctx, plan, scripts, past);
    let started = runs(&s.start(0));
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].key, "c");
}

#[test]
fn loops_in_chunks_give_what_loops_of_branches_give() {
    let pipelines = [
        // A branch in the template, its arms' outputs, a skipped node, an outer node's output.
        r#"
nodes:
  - {id: in, type: entry, next: [cfg]}
  - {id: cfg, type: node, after: "out = #{k: 10};", next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    next: [end]
    nodes:
      - {id: b, type: branch, if: "item % 2 == 0", then: {next: [even], out: {v: loop.item}}, else: {next: [odd]}}
      - {id: even, type: node, after: "out = input.v * cfg.out.k;", next: [join]}
      - {id: odd, type: node, input: {v: loop.item, i: loop.index}, next: [join]}
      - {id: join, type: node, after: "out.seen = nodes.cfg.out.k; out.key = node.id;"}
  - {id: end, type: end}
"#,
        // Scripts that read the pipeline and the task, and `collect` from a middle node.
        r#"
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    collect: loop.a.out
    next: [end]
    nodes:
      - {id: a, type: node, after: "out = `${pipeline.task_id}:${loop.index}:${item}`;", next: [b]}
      - {id: b, type: node}
  - {id: end, type: end}
"#,
    ];
    for yaml in pipelines {
        let input = json!({"xs": [1, 2, 3, 4, 5, 6]});
        let chunked = Sim::new(yaml, input.clone()).result();
        let branches = Sim::branches(yaml, input).result();
        assert_eq!(chunked, branches, "{yaml}");
    }
}

#[test]
fn a_loop_nested_in_a_loop_of_commands_runs_its_items_in_chunks() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [outer]}
  - id: outer
    type: loop
    items: in.out.rows
    next: [end]
    nodes:
      - {id: fetch, type: command, command: ["true"], next: [inner]}
      - id: inner
        type: loop
        items: loop.item
        nodes:
          - {id: m, type: node, after: "out = item * 10 + loop.parent.index;"}
  - {id: end, type: end}
"#;
    let mut sim = Sim::new(yaml, json!({"rows": [[1, 2], [3]]}));
    sim.succeed("fetch#0", json!({}));
    sim.succeed("fetch#1", json!({}));
    let out = sim.result();
    assert_eq!(out["items"][0]["items"], json!([10, 20]));
    assert_eq!(out["items"][1]["items"], json!([31]));
}

#[test]
fn a_chunked_loop_failing_in_a_tolerant_outer_loop_fails_only_its_item() {
    let yaml = r#"
nodes:
  - {id: in, type: entry, next: [outer]}
  - id: outer
    type: loop
    items: in.out.rows
    max_failed_items: 1
    next: [end]
    nodes:
      - {id: fetch, type: command, command: ["true"], next: [inner]}
      - id: inner
        type: loop
        items: loop.item
        nodes:
          - {id: m, type: node, after: "if item < 0 { throw `neg`; } out = item;"}
  - {id: end, type: end}
"#;
    let mut sim = Sim::new(yaml, json!({"rows": [[1, 2], [3, -4], [5]]}));
    for k in ["fetch#0", "fetch#1", "fetch#2"] {
        sim.succeed(k, json!({}));
    }
    let out = sim.result();
    assert_eq!(out["items"][0]["items"], json!([1, 2]));
    assert_eq!(out["items"][1], Value::Null);
    assert_eq!(out["items"][2]["items"], json!([5]));
    assert_eq!(out["failed"][0]["index"], 1);
    assert_eq!(out["failed"][0]["node"], "inner#1");
    assert!(
        out["failed"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("node `inner#1/m#1` failed (attempt 1)"),
        "{out}"
    );
}
