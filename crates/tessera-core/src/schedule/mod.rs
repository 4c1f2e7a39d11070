//! Cron schedules of pipelines (`schedule:` in a document): the model, its ticks over u64
//! milliseconds since the Unix epoch, and the pure decision of which ticks a scheduler loop
//! creates now ([`Schedule::decide`]). Nothing here reads a clock: `now` is always given.
//!
//! Ticks are computed by [croner](https://docs.rs/croner) in the schedule's IANA time zone
//! (chrono-tz), so a daily `30 2 * * *` in `Europe/Paris` follows summer time: on the day the
//! clocks go forward (02:30 does not exist) it ticks at 03:00 local time, the first instant after
//! the gap; on the day they go back (02:30 happens twice) it ticks once, at the first 02:30.
//! Interval patterns (`*/15 * * * *`, `30 * * * *`) tick on both passes of a repeated hour.
//! Ticks fall on whole seconds.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::Value;

mod decide;
#[cfg(test)]
mod tests;

pub use decide::{Decision, MAX_TICKS_PER_DECISION, ON_TIME_MS};

/// What a scheduler does with the ticks it did not create when they were due (it was down,
/// or the schedule's tasks were all busy). See [`Schedule::decide`] for the exact rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Catchup {
    /// Missed ticks are skipped: a tick is created only on time (at most [`ON_TIME_MS`] late).
    #[default]
    None,
    /// Of the missed ticks, only the latest is created (once), however late.
    Last,
    /// Every missed tick since the last one created (or since `start`) is created, oldest
    /// first, as `max_active_tasks` allows.
    All,
}

impl Catchup {
    pub const ALL: [Catchup; 3] = [Catchup::None, Catchup::Last, Catchup::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::None => "none",
            Catchup::Last => "last",
            Catchup::All => "all",
        }
    }

    pub fn parse(word: &str) -> Option<Catchup> {
        Catchup::ALL.into_iter().find(|c| c.as_str() == word)
    }
}

impl std::fmt::Display for Catchup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a cron expression or a time zone was refused (the messages of validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression `{cron}`: {reason}")]
    Cron { cron: String, reason: String },
    #[error(
        "unknown time zone `{name}`{hint} (expected an IANA name such as `Europe/Paris` or `UTC`)"
    )]
    TimeZone { name: String, hint: String },
}

/// A pipeline's `schedule`: when ticks fall (`cron` in `timezone`, between `start` and
/// `end`), what happens to missed ones (`catchup`), how many of its tasks may be unfinished at
/// once, and the input of each tick's task.
///
/// Built by the parser from a document (which reports every problem with its field), or by
/// [`Schedule::new`] and the public fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The expression as written (`0 3 * * *`, `*/10 * * * * *`, `@daily`).
    cron_text: String,
    cron: Cron,
    tz: Tz,
    /// No tick before this instant (ms since the epoch), when set.
    pub start: Option<u64>,
    /// No tick after this instant, when set.
    pub end: Option<u64>,
    pub catchup: Catchup,
    /// At most this many tasks of the schedule unfinished at once (≥ 1 in a valid document;
    /// 0 creates nothing).
    pub max_active_tasks: u32,
    /// The input of every tick's task: the document's `schedule.input`, else the entry's
    /// `api.body` example (as `tessera run` without `--input`), else `{}`. Checked against the
    /// entry like an HTTP submission when the document was parsed.
    pub input: Value,
}

impl Schedule {
    /// A schedule of `cron` in the IANA `timezone`, with the defaults of a document: no start
    /// or end, `catchup: none`, `max_active_tasks: 1`, input `{}`.
    pub fn new(cron: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            cron_text: cron.to_string(),
            cron: parse_cron(cron)?,
            tz: parse_timezone(timezone)?,
            start: None,
            end: None,
            catchup: Catchup::None,
            max_active_tasks: 1,
            input: Value::Object(Default::default()),
        })
    }

    /// The cron expression as written.
    pub fn cron(&self) -> &str {
        &self.cron_text
    }

    /// The IANA name of the time zone (`UTC` by default).
    pub fn timezone(&self) -> &'static str {
        self.tz.name()
    }

    /// The task input of a tick, as the engine takes it.
    pub fn task_input(&self) -> crate::Data {
        crate::Data::from_value(self.input.clone())
    }

    /// The first tick strictly after `after_ms`, within `start`..=`end`; `None` when there is
    /// none (the schedule ended, or the pattern never matches again).
    pub fn next_tick(&self, after_ms: u64) -> Option<u64> {
        if let Some(start) = self.start
            && start > after_ms
        {
            return self.first_at_or_after(start);
        }
        // Ticks fall on whole seconds: the first one after the second `after_ms` is in.
        let from = self.instant(after_ms / 1000)?;
        let tick = self.cron.find_next_occurrence(&from, false).ok()?;
        self.bounded(tick)
    }

    /// The latest tick at or before `at_ms`, within `start`..=`end`.
    pub fn latest_tick(&self, at_ms: u64) -> Option<u64> {
        let at = self.end.map_or(at_ms, |end| end.min(at_ms));
        let from = self.instant(at / 1000)?;
        let tick = self.cron.find_previous_occurrence(&from, true).ok()?;
        self.bounded(tick)
    }

    /// The ticks in `from_ms..=to_ms` (and `start..=end`), oldest first, at most `limit` of
    /// them (memory grows with the ticks returned, never with the range).
    pub fn ticks_between(&self, from_ms: u64, to_ms: u64, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if limit == 0 || from_ms > to_ms {
            return out;
        }
        let mut next = self.first_at_or_after(self.start.map_or(from_ms, |s| s.max(from_ms)));
        while let Some(tick) = next.filter(|t| *t <= to_ms) {
            out.push(tick);
            if out.len() == limit {
                break;
            }
            next = self.next_tick(tick);
        }
        out
    }

    /// The first tick at or after `at_ms` (and before `end`); `start` is the caller's.
    fn first_at_or_after(&self, at_ms: u64) -> Option<u64> {
        let from = self.instant(at_ms.div_ceil(1000))?;
        let tick = self.cron.find_next_occurrence(&from, true).ok()?;
        self.bounded(tick)
    }

    /// Whole second `secs` since the epoch in the schedule's zone.
    fn instant(&self, secs: u64) -> Option<DateTime<Tz>> {
        let secs = i64::try_from(secs).ok()?;
        Some(Utc.timestamp_opt(secs, 0).single()?.with_timezone(&self.tz))
    }

    /// A tick found by croner, in milliseconds, if it lies within `start`..=`end`.
    fn bounded(&self, tick: DateTime<Tz>) -> Option<u64> {
        let ms = u64::try_from(tick.timestamp()).ok()?.checked_mul(1000)?;
        let after_start = self.start.is_none_or(|s| ms >= s);
        let before_end = self.end.is_none_or(|e| ms <= e);
        (after_start && before_end).then_some(ms)
    }
}

/// Serialised as a document writes it (`start`/`end` as RFC 3339, absent when unset), so that
/// the JSON reads back through the parser to an equal schedule.
impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("cron", &self.cron_text)?;
        m.serialize_entry("timezone", self.timezone())?;
        if let Some(start) = self.start {
            m.serialize_entry("start", &crate::time::rfc3339(start))?;
        }
        if let Some(end) = self.end {
            m.serialize_entry("end", &crate::time::rfc3339(end))?;
        }
        m.serialize_entry("catchup", self.catchup.as_str())?;
        m.serialize_entry("max_active_tasks", &self.max_active_tasks)?;
        m.serialize_entry("input", &self.input)?;
        m.end()
    }
}

/// A cron expression of 5 fields (minute hour day-of-month month day-of-week), 6 with
/// seconds first, or a nickname (`@daily`, `@hourly`, …), as croner reads it (POSIX/Vixie:
/// a day matches when its day of month *or* its weekday does; `L`, `#`, `W` extensions).
pub(crate) fn parse_cron(text: &str) -> Result<Cron, ScheduleError> {
    let refuse = |reason: String| ScheduleError::Cron {
        cron: text.to_string(),
        reason,
    };
    let fields = text.split_whitespace().count();
    if !text.trim_start().starts_with('@') && fields != 0 && !(5..=6).contains(&fields) {
        return Err(refuse(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got {fields}"
        )));
    }
    if let Some(nickname) = text.trim().strip_prefix('@') {
        const NICKNAMES: [&str; 7] = [
            "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
        ];
        if !NICKNAMES.contains(&nickname.to_ascii_lowercase().as_str()) {
            return Err(refuse(format!(
                "unknown nickname `@{nickname}`; expected one of @{}",
                NICKNAMES.join(", @")
            )));
        }
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| {
            let message = e.to_string();
            // croner's words for a value out of range name neither the field nor the range.
            if message.contains("out of bounds") {
                refuse(format!(
                    "a value is out of range (seconds and minutes 0-59, hours 0-23, day of month 1-31, month 1-12, day of week 0-7): {message}"
                ))
            } else {
                refuse(message)
            }
        })
}

/// An IANA time zone name; the error suggests the closest one (`europe/paris` →
/// `Europe/Paris`).
pub(crate) fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let hint = match names.clone().find(|n| n.eq_ignore_ascii_case(name.trim())) {
        Some(n) => format!(" (did you mean `{n}`?)"),
        None => crate::parse::did_you_mean(name, names),
    };
    Err(ScheduleError::TimeZone {
        name: name.to_string(),
        hint,
    })
}
