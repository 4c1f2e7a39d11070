//! The decision of a scheduler loop, pure: given a schedule, the last tick already created,
//! `now` and how many of the schedule's tasks are unfinished, the ticks to create now and when
//! to look again.

use super::{Catchup, Schedule};

/// How late a tick may be created under `catchup: none` (the scheduler woke late, or a task
/// slot freed up shortly after the tick): older ticks count as missed, and are skipped.
pub const ON_TIME_MS: u64 = 60_000;

/// Most ticks one decision returns, whatever `max_active_tasks` allows (a backlog of a
/// per-second schedule is created a thousand at a time, [`Decision::behind`] set).
pub const MAX_TICKS_PER_DECISION: usize = 1000;

/// What a scheduler loop does now for one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The ticks to create a task for now (ms since the epoch), oldest first. Each is a
    /// distinct tick after the last one created: a store keyed by (pipeline, tick) refuses a
    /// second creation of the same tick by another loop.
    pub ticks: Vec<u64>,
    /// When to decide again if nothing else happens: the first tick after `now` (and after
    /// the last tick created); `None` when the schedule has no tick left (past its `end`).
    pub wake_at: Option<u64>,
    /// Due ticks wait that this decision did not return, for want of task slots
    /// (`max_active_tasks`) or past [`MAX_TICKS_PER_DECISION`]: decide again as soon as one of
    /// the schedule's tasks finishes, and at once after creating `ticks` if slots remain.
    pub behind: bool,
}

impl Schedule {
    /// Which ticks to create now. `last_tick`: the latest tick a task was already created for
    /// (`None`: none ever was); `now`: the current time; `active`: how many tasks of the
    /// schedule are unfinished (pending or running). All times are ms since the epoch.
    ///
    /// A tick is *due* when it lies within `start..=end` and at or before `now`; only ticks
    /// after `last_tick` are ever returned. Of the due ticks:
    ///
    /// - `catchup: none` — the latest due tick, if it is on time: at most [`ON_TIME_MS`] before
    ///   `now`. Ticks missed while the scheduler was down (or while every slot was busy for
    ///   longer than that) are skipped; a scheduler that is not behind creates exactly the tick
    ///   due at `now`. Without a `last_tick` the rule is the same: a schedule first seen long
    ///   after its latest tick creates nothing until its next one.
    /// - `catchup: last` — the latest due tick, however late (once: it becomes the last tick).
    ///   Without a `last_tick`, that is the latest due tick at or after `start` — as Airflow's
    ///   `catchup=False` creates the latest interval — so a new daily schedule registered at
    ///   14:00 runs the 03:00 tick of the day at once; a `start` in the future, or `none`,
    ///   avoids that.
    /// - `catchup: all` — every due tick after `last_tick` (without one: from `start` on),
    ///   oldest first. A document with `catchup: all` must have a `start`; a schedule built
    ///   without one and with no `last_tick` decides as `none`.
    ///
    /// Whatever the mode, at most `max_active_tasks - active` ticks are returned (and at most
    /// [`MAX_TICKS_PER_DECISION`]); when that holds due ticks back, [`Decision::behind`] is
    /// set. A held-back tick is decided again by the same rules later: under `none` it is
    /// skipped once it is no longer on time, under `last` only the latest is kept, under `all`
    /// every one is created as slots free up.
    pub fn decide(&self, last_tick: Option<u64>, now: u64, active: usize) -> Decision {
        let slots = (self.max_active_tasks as usize)
            .saturating_sub(active)
            .min(MAX_TICKS_PER_DECISION);
        let newer = |tick: &u64| last_tick.is_none_or(|last| *tick > last);
        let on_time = |tick: &u64| now - *tick <= ON_TIME_MS;
        let latest = || self.latest_tick(now).filter(newer);
        let mut due: Vec<u64> = match (self.catchup, last_tick, self.start) {
            (Catchup::Last, _, _) => latest().into_iter().collect(),
            (Catchup::All, Some(last), _) => match last.checked_add(1) {
                Some(from) => self.ticks_between(from, now, slots + 1),
                None => Vec::new(),
            },
            (Catchup::All, None, Some(start)) => self.ticks_between(start, now, slots + 1),
            (Catchup::None, _, _) | (Catchup::All, None, None) => {
                latest().filter(on_time).into_iter().collect()
            }
        };
        let behind = due.len() > slots;
        due.truncate(slots);
        Decision {
            ticks: due,
            wake_at: self.next_tick(last_tick.map_or(now, |last| last.max(now))),
            behind,
        }
    }
}
