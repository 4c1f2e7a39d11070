//! A pipeline's `schedule:` read into a [`Schedule`], every problem reported with its field
//! (`schedule.cron`, `schedule.input.n`); its `input` is checked against the entry's `api.body`
//! by the check of an HTTP submission or of `tessera run --input` ([`crate::input`]).

use serde_json::{Map, Value};

use super::suggest::did_you_mean;
use crate::input::{InputError, binary_fields, check_input, example_of};
use crate::model::{Pipeline, json_type};
use crate::report::{Issue, Report};
use crate::schedule::{Catchup, Schedule, parse_cron, parse_timezone};

pub(super) const FIELDS: &[&str] = &[
    "cron",
    "timezone",
    "start",
    "end",
    "catchup",
    "max_active_tasks",
    "input",
];

/// Reports a problem of field `schedule.<field>` (`schedule` itself for an empty field).
fn err(report: &mut Report, field: &str, message: impl Into<String>) {
    let name = if field.is_empty() {
        "schedule".to_string()
    } else {
        format!("schedule.{field}")
    };
    report.push(Issue::global(name, message));
}

/// The `schedule` of `pipeline` (its nodes already read), or `None` when there is none or it
/// has problems (all reported).
pub(super) fn parse_schedule(
    value: &Value,
    pipeline: &Pipeline,
    report: &mut Report,
) -> Option<Schedule> {
    let map = match value {
        Value::Null => return None,
        Value::Object(map) => map,
        other => {
            let t = json_type(other);
            err(
                report,
                "",
                format!("expected an object such as {{cron: \"0 3 * * *\"}}, got {t}"),
            );
            return None;
        }
    };
    let errors_before = report.errors.len();
    for key in map.keys() {
        if !FIELDS.contains(&key.as_str()) {
            let hint = did_you_mean(key, FIELDS.iter().copied());
            err(report, key, format!("unknown field `{key}`{hint}"));
        }
    }
    let cron = match map.get("cron") {
        None | Some(Value::Null) => {
            err(
                report,
                "cron",
                "missing field `cron` (5 fields such as \"0 3 * * *\", or 6 with seconds first)",
            );
            None
        }
        Some(Value::String(text)) => match parse_cron(text) {
            Ok(_) => Some(text.as_str()),
            Err(e) => {
                err(report, "cron", e.to_string());
                None
            }
        },
        Some(other) => {
            let t = json_type(other);
            err(report, "cron", format!("expected a string, got {t}"));
            None
        }
    };
    let timezone = match map.get("timezone") {
        None | Some(Value::Null) => Some("UTC"),
        Some(Value::String(name)) => match parse_timezone(name) {
            Ok(_) => Some(name.as_str()),
            Err(e) => {
                err(report, "timezone", e.to_string());
                None
            }
        },
        Some(other) => {
            let t = json_type(other);
            err(report, "timezone", format!("expected a string, got {t}"));
            None
        }
    };
    let start = instant(map, "start", report);
    let end = instant(map, "end", report);
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        err(
            report,
            "start",
            format!(
                "`start` ({}) is after `end` ({})",
                crate::time::rfc3339(s),
                crate::time::rfc3339(e)
            ),
        );
    }
    let catchup = match map.get("catchup") {
        None | Some(Value::Null) => Catchup::None,
        Some(Value::String(word)) => Catchup::parse(word).unwrap_or_else(|| {
            let hint = did_you_mean(word, Catchup::ALL.iter().map(|c| c.as_str()));
            err(
                report,
                "catchup",
                format!("unknown catchup `{word}`{hint}; use none, last or all"),
            );
            Catchup::None
        }),
        Some(other) => {
            let t = json_type(other);
            err(
                report,
                "catchup",
                format!("expected none, last or all, got {t}"),
            );
            Catchup::None
        }
    };
    if catchup == Catchup::All && map.get("start").is_none_or(Value::is_null) {
        err(
            report,
            "catchup",
            "`catchup: all` needs a `start`: the first tick it catches up from",
        );
    }
    let max_active_tasks = match map.get("max_active_tasks") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(0) => {
                err(
                    report,
                    "max_active_tasks",
                    "must be at least 1 (with 0, no task would ever be created)",
                );
                1
            }
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => {
                err(
                    report,
                    "max_active_tasks",
                    format!("expected a positive integer, got {v}"),
                );
                1
            }
        },
    };
    let input = task_input(map.get("input"), pipeline, report);
    let (Some(cron), Some(timezone), Some(input)) = (cron, timezone, input) else {
        return None;
    };
    let mut schedule = Schedule::new(cron, timezone).ok()?;
    schedule.start = start;
    schedule.end = end;
    schedule.catchup = catchup;
    schedule.max_active_tasks = max_active_tasks;
    schedule.input = input;
    if report.errors.len() > errors_before {
        return None;
    }
    never_ticks(&schedule, report);
    (report.errors.len() == errors_before).then_some(schedule)
}

/// `start` or `end`: an RFC 3339 time (`2026-01-01T00:00:00Z`, `2026-01-01T03:00:00+01:00`).
fn instant(map: &Map<String, Value>, field: &str, report: &mut Report) -> Option<u64> {
    let text = match map.get(field)? {
        Value::Null => return None,
        Value::String(s) => s,
        other => {
            let t = json_type(other);
            err(
                report,
                field,
                format!("expected an RFC 3339 time such as \"2026-01-01T00:00:00Z\", got {t}"),
            );
            return None;
        }
    };
    match crate::time::parse_rfc3339(text) {
        Ok(ms) => Some(ms),
        Err(message) => {
            err(report, field, message);
            None
        }
    }
}

/// The input of each tick: `input` as written, checked against the entry, else the entry's
/// example (what `tessera run` sends without `--input`), else `{}`.
fn task_input(written: Option<&Value>, pipeline: &Pipeline, report: &mut Report) -> Option<Value> {
    let files = binary_fields(pipeline);
    if !files.is_empty() {
        let names: Vec<String> = files.iter().map(|f| format!("`{f}`")).collect();
        err(
            report,
            "",
            format!(
                "the entry takes file field(s) {}, which a schedule cannot give",
                names.join(", ")
            ),
        );
        return None;
    }
    let example = example_of(pipeline);
    let input = match written {
        None | Some(Value::Null) => {
            return Some(example.cloned().unwrap_or(Value::Object(Map::new())));
        }
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            let t = json_type(other);
            err(
                report,
                "input",
                format!("expected an object (the task input), got {t}"),
            );
            return None;
        }
    };
    let field = |f: &str| {
        if f.is_empty() {
            "input".to_string()
        } else {
            format!("input.{f}")
        }
    };
    match check_input(input.to_string().as_bytes(), example) {
        Ok(_) => Some(input.clone()),
        Err(InputError::Mismatch { problems, more }) => {
            for p in problems {
                err(
                    report,
                    &field(&p.field),
                    format!("{} (per the entry's `api.body`)", p.message),
                );
            }
            if more > 0 {
                err(report, "input", format!("and {more} more problem(s)"));
            }
            None
        }
        Err(InputError::Reference { field: f, key }) => {
            err(
                report,
                &field(&f),
                format!("{key} references cannot be sent as data"),
            );
            None
        }
        Err(e) => {
            err(report, "input", e.to_string());
            None
        }
    }
}

/// A schedule that can never tick: a pattern no date matches (`0 0 31 2 *`), or none of its
/// ticks between `start` and `end`.
fn never_ticks(schedule: &Schedule, report: &mut Report) {
    let from = schedule.start.unwrap_or(0);
    if schedule.ticks_between(from, u64::MAX, 1).is_empty() {
        let mut unbounded = schedule.clone();
        unbounded.end = None;
        let message = if unbounded.ticks_between(from, u64::MAX, 1).is_empty() {
            format!("`{}` never matches a date", schedule.cron())
        } else {
            format!(
                "`{}` has no tick between `start` and `end` (in {})",
                schedule.cron(),
                schedule.timezone()
            )
        };
        err(report, "cron", message);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> (Option<Box<Schedule>>, Report) {
        let doc = crate::parse::parse_document(text).unwrap();
        let mut report = Report::default();
        let p = crate::parse::pipeline_from_value(&doc, &mut report).unwrap();
        (p.schedule, report)
    }

    fn ms(text: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }

    const NODES: &str = "nodes:
  - {id: in, type: entry, api: {body: {region: eu, days: 1}}, next: [end]}
  - {id: end, type: end}
";

    #[test]
    fn every_field_is_read() {
        let text = format!(
            "schedule:
  cron: \"30 2 * * *\"
  timezone: Europe/Paris
  start: 2026-01-01T00:00:00Z
  end: 2026-12-31T00:00:00+01:00
  catchup: all
  max_active_tasks: 3
  input: {{region: us, days: 7, extra: [1]}}
{NODES}"
        );
        let (s, report) = parse(&text);
        assert!(report.is_ok(), "{report}");
        let s = s.unwrap();
        assert_eq!((s.cron(), s.timezone()), ("30 2 * * *", "Europe/Paris"));
        assert_eq!(s.start, Some(ms("2026-01-01T00:00:00Z")));
        assert_eq!(s.end, Some(ms("2026-12-30T23:00:00Z")));
        assert_eq!((s.catchup, s.max_active_tasks), (Catchup::All, 3));
        assert_eq!(s.input, json!({"region": "us", "days": 7, "extra": [1]}));
        assert_eq!(
            s.task_input(),
            json!({"region": "us", "days": 7, "extra": [1]})
        );
    }

    #[test]
    fn defaults_are_utc_none_one_and_the_entry_example() {
        let (s, report) = parse(&format!("schedule: {{cron: \"0 3 * * *\"}}\n{NODES}"));
        assert!(report.is_ok(), "{report}");
        let s = s.unwrap();
        assert_eq!(s.timezone(), "UTC");
        assert_eq!((s.start, s.end), (None, None));
        assert_eq!((s.catchup, s.max_active_tasks), (Catchup::None, 1));
        assert_eq!(s.input, json!({"region": "eu", "days": 1}));
        // No example: the empty object.
        let (s, _) = parse(
            "schedule: {cron: \"0 3 * * *\"}\nnodes: [{id: in, type: entry, next: [end]}, {id: end, type: end}]",
        );
        assert_eq!(s.unwrap().input, json!({}));
        // `schedule: null` is no schedule.
        let (s, report) = parse(&format!("schedule: null\n{NODES}"));
        assert!(s.is_none() && report.is_ok());
    }

    #[test]
    fn the_serialised_schedule_reads_back_equal() {
        let text = format!(
            "schedule: {{cron: \"*/10 * * * * *\", timezone: Asia/Tokyo, start: \"2026-01-01T00:00:00.250Z\", catchup: last, max_active_tasks: 2, input: {{region: jp, days: 2}}}}\n{NODES}"
        );
        let (s, _) = parse(&text);
        let s = s.unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            json!({"cron": "*/10 * * * * *", "timezone": "Asia/Tokyo", "start": "2026-01-01T00:00:00.250Z",
                   "catchup": "last", "max_active_tasks": 2, "input": {"region": "jp", "days": 2}})
        );
        let mut doc = crate::parse::parse_document(NODES).unwrap();
        doc["schedule"] = json;
        let (again, report) = parse(&doc.to_string());
        assert!(report.is_ok(), "{report}");
        assert_eq!(again.unwrap(), s);
    }

    #[test]
    fn the_stored_document_keeps_the_schedule() {
        let text = format!("schedule: {{cron: \"0 3 * * *\", catchup: last}}\n{NODES}");
        let (pipeline, doc) =
            crate::validate::load_document(&text, &crate::Scripts::default()).unwrap();
        assert_eq!(pipeline.schedule.unwrap().catchup, Catchup::Last);
        assert_eq!(
            doc["schedule"],
            json!({"cron": "0 3 * * *", "catchup": "last"})
        );
    }

    #[test]
    fn a_schedule_with_problems_is_none() {
        let (s, report) = parse(&format!(
            "schedule: {{cron: \"0 3 * * *\", max_active_tasks: 0}}\n{NODES}"
        ));
        assert!(s.is_none());
        assert_eq!(report.errors.len(), 1, "{report}");
    }
}
