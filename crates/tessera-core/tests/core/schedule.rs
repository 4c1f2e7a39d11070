//! A scheduled pipeline through the core, as a scheduler loop drives it: the document's
//! schedule decides the ticks, each tick's task gets the schedule's input and its tick, and its
//! scripts read the tick as `pipeline.scheduled_at`.

use std::sync::Arc;

use serde_json::json;
use tessera_core::scheduler::{Effect, Scheduler, TaskContext};
use tessera_core::{Catchup, Plan, Scripts, load_pipeline};

fn ms(text: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis() as u64
}

#[test]
fn each_tick_runs_a_task_that_knows_its_tick() {
    let text = r#"
name: nightly
schedule:
  cron: "30 2 * * *"
  timezone: Europe/Paris
  start: 2026-03-27T00:00:00Z
  catchup: all
  max_active_tasks: 2
nodes:
  - {id: in, type: entry, api: {body: {region: eu}}, next: [n]}
  - id: n
    type: node
    after: "out = #{at: pipeline.scheduled_at, name: pipeline.name, region: input.region};"
    next: [end]
  - {id: end, type: end}
"#;
    let scripts = Arc::new(Scripts::default());
    let pipeline = load_pipeline(text, &scripts).unwrap_or_else(|r| panic!("{r}"));
    let schedule = pipeline.schedule.clone().expect("a schedule");
    assert_eq!(schedule.catchup, Catchup::All);
    // First seen on 2026-03-29 at noon: the ticks of the 27th and 28th are due, two slots.
    let decision = schedule.decide(None, ms("2026-03-29T12:00:00Z"), 0);
    assert_eq!(
        decision.ticks,
        [ms("2026-03-27T01:30:00Z"), ms("2026-03-28T01:30:00Z")]
    );
    assert!(decision.behind, "the tick of the 29th waits for a slot");
    // One task finished: the tick of the 29th, at 03:00 summer time (02:30 did not exist).
    let decision = schedule.decide(
        decision.ticks.last().copied(),
        ms("2026-03-29T12:00:00Z"),
        1,
    );
    assert_eq!(decision.ticks, [ms("2026-03-29T01:00:00Z")]);
    assert_eq!(decision.wake_at, Some(ms("2026-03-30T00:30:00Z")));

    let plan = Arc::new(Plan::new(Arc::new(pipeline)));
    let ctx = TaskContext {
        task_id: "t1".into(),
        input: schedule.task_input(),
        owner: None,
        scheduled_at: Some(decision.ticks[0]),
    };
    let result = Scheduler::new(ctx, plan, scripts, Vec::new())
        .start(0)
        .into_iter()
        .find_map(|e| match e {
            Effect::Done(o) => o.result.map(|r| r.value().into_owned()),
            _ => None,
        })
        .expect("the task ends at once");
    assert_eq!(
        result,
        json!({"at": "2026-03-29T01:00:00.000Z", "name": "nightly", "region": "eu"})
    );
}

#[test]
fn a_task_not_created_by_a_schedule_has_no_tick() {
    let text = r#"
nodes:
  - {id: in, type: entry, next: [n]}
  - {id: n, type: node, after: "out = #{manual: pipeline.scheduled_at == ()};", next: [end]}
  - {id: end, type: end}
"#;
    let scripts = Arc::new(Scripts::default());
    let pipeline = load_pipeline(text, &scripts).unwrap();
    assert!(pipeline.schedule.is_none());
    let ctx = TaskContext {
        task_id: "t1".into(),
        input: json!({}).into(),
        owner: None,
        scheduled_at: None,
    };
    let plan = Arc::new(Plan::new(Arc::new(pipeline)));
    let result = Scheduler::new(ctx, plan, scripts, Vec::new())
        .start(0)
        .into_iter()
        .find_map(|e| match e {
            Effect::Done(o) => o.result.map(|r| r.value().into_owned()),
            _ => None,
        })
        .unwrap();
    assert_eq!(result, json!({"manual": true}));
}
