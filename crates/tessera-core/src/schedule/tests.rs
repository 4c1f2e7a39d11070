//! Ticks and decisions of schedules: bounds, seconds, time zones and summer time, and every
//! catch-up mode, with instants written as RFC 3339 so that failures read as times.

use super::*;

/// Milliseconds of an RFC 3339 time.
fn ms(text: &str) -> u64 {
    let t = chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    u64::try_from(t.timestamp_millis()).unwrap()
}

/// RFC 3339 (UTC, milliseconds) of each tick.
fn shown(ticks: &[u64]) -> Vec<String> {
    ticks.iter().map(|t| crate::time::rfc3339(*t)).collect()
}

fn one(tick: Option<u64>) -> Option<String> {
    tick.map(crate::time::rfc3339)
}

fn daily(catchup: Catchup) -> Schedule {
    let mut s = Schedule::new("0 3 * * *", "UTC").unwrap();
    s.catchup = catchup;
    s
}

#[test]
fn next_tick_is_strictly_after() {
    let s = daily(Catchup::None);
    let next = |at: &str| one(s.next_tick(ms(at)));
    let jan2 = Some("2026-01-02T03:00:00.000Z".to_string());
    assert_eq!(next("2026-01-02T00:00:00Z"), jan2);
    assert_eq!(next("2026-01-02T02:59:59.999Z"), jan2);
    let jan3 = Some("2026-01-03T03:00:00.000Z".to_string());
    assert_eq!(next("2026-01-02T03:00:00Z"), jan3);
    assert_eq!(next("2026-01-02T03:00:00.001Z"), jan3);
    assert_eq!(one(s.next_tick(0)), Some("1970-01-01T03:00:00.000Z".into()));
    assert_eq!(s.next_tick(u64::MAX), None);
}

#[test]
fn latest_tick_is_at_or_before() {
    let s = daily(Catchup::None);
    let latest = |at: &str| one(s.latest_tick(ms(at)));
    assert_eq!(
        latest("2026-01-05T12:00:00Z"),
        Some("2026-01-05T03:00:00.000Z".into())
    );
    assert_eq!(
        latest("2026-01-05T03:00:00Z"),
        Some("2026-01-05T03:00:00.000Z".into())
    );
    assert_eq!(
        latest("2026-01-05T02:59:59.999Z"),
        Some("2026-01-04T03:00:00.000Z".into())
    );
    assert_eq!(s.latest_tick(0), None, "no tick before the epoch");
}

#[test]
fn start_and_end_bound_every_tick() {
    let mut s = daily(Catchup::None);
    s.start = Some(ms("2026-01-10T03:00:00Z"));
    s.end = Some(ms("2026-01-12T03:00:00Z"));
    // Both bounds are inclusive.
    assert_eq!(one(s.next_tick(0)), Some("2026-01-10T03:00:00.000Z".into()));
    assert_eq!(
        one(s.next_tick(ms("2026-01-11T03:00:00Z"))),
        Some("2026-01-12T03:00:00.000Z".into())
    );
    assert_eq!(s.next_tick(ms("2026-01-12T03:00:00Z")), None);
    assert_eq!(
        shown(&s.ticks_between(0, u64::MAX, 100)),
        [
            "2026-01-10T03:00:00.000Z",
            "2026-01-11T03:00:00.000Z",
            "2026-01-12T03:00:00.000Z"
        ]
    );
    assert_eq!(
        one(s.latest_tick(ms("2026-06-01T00:00:00Z"))),
        Some("2026-01-12T03:00:00.000Z".into()),
        "the latest tick of an ended schedule is its last one"
    );
    assert_eq!(s.latest_tick(ms("2026-01-10T02:00:00Z")), None);
    // A start between whole seconds: the tick at the second before it is not after it.
    s.start = Some(ms("2026-01-10T03:00:00.001Z"));
    assert_eq!(one(s.next_tick(0)), Some("2026-01-11T03:00:00.000Z".into()));
    assert_eq!(s.latest_tick(ms("2026-01-10T12:00:00Z")), None);
}

#[test]
fn ticks_between_is_inclusive_ordered_and_bounded() {
    let s = daily(Catchup::None);
    let (from, to) = (ms("2026-01-01T03:00:00Z"), ms("2026-01-04T03:00:00Z"));
    assert_eq!(
        shown(&s.ticks_between(from, to, 10)),
        [
            "2026-01-01T03:00:00.000Z",
            "2026-01-02T03:00:00.000Z",
            "2026-01-03T03:00:00.000Z",
            "2026-01-04T03:00:00.000Z"
        ]
    );
    assert_eq!(s.ticks_between(from, to, 2).len(), 2);
    assert!(s.ticks_between(from, to, 0).is_empty());
    assert!(s.ticks_between(to, from, 10).is_empty());
    assert!(s.ticks_between(from + 1, from + 1000, 10).is_empty());
    // A per-second schedule over a year: only what was asked for is computed.
    let every_second = Schedule::new("* * * * * *", "UTC").unwrap();
    let started = std::time::Instant::now();
    let ticks = every_second.ticks_between(ms("2026-01-01T00:00:00.500Z"), u64::MAX, 5);
    assert_eq!(
        shown(&ticks),
        [
            "2026-01-01T00:00:01.000Z",
            "2026-01-01T00:00:02.000Z",
            "2026-01-01T00:00:03.000Z",
            "2026-01-01T00:00:04.000Z",
            "2026-01-01T00:00:05.000Z"
        ]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn six_fields_put_seconds_first() {
    let s = Schedule::new("*/20 * * * * *", "UTC").unwrap();
    let from = ms("2026-01-01T00:00:00Z");
    assert_eq!(
        shown(&s.ticks_between(from, from + 60_000, 10)),
        [
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:20.000Z",
            "2026-01-01T00:00:40.000Z",
            "2026-01-01T00:01:00.000Z"
        ]
    );
    let s = Schedule::new("30 0 3 * * *", "UTC").unwrap();
    assert_eq!(
        one(s.next_tick(from)),
        Some("2026-01-01T03:00:30.000Z".into())
    );
    // Five fields: seconds are 0. Nicknames too.
    let s = Schedule::new("@hourly", "UTC").unwrap();
    assert_eq!(
        one(s.next_tick(from)),
        Some("2026-01-01T01:00:00.000Z".into())
    );
}

#[test]
fn ticks_fall_in_the_time_zone() {
    let s = Schedule::new("0 3 * * *", "Europe/Paris").unwrap();
    assert_eq!(s.timezone(), "Europe/Paris");
    // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer.
    assert_eq!(
        one(s.next_tick(ms("2026-01-15T00:00:00Z"))),
        Some("2026-01-15T02:00:00.000Z".into())
    );
    assert_eq!(
        one(s.next_tick(ms("2026-07-15T00:00:00Z"))),
        Some("2026-07-15T01:00:00.000Z".into())
    );
    let tokyo = Schedule::new("0 9 * * MON-FRI", "Asia/Tokyo").unwrap();
    // Friday 2026-01-16 09:00 JST, then Monday 2026-01-19.
    assert_eq!(
        shown(&tokyo.ticks_between(ms("2026-01-16T00:00:00Z"), ms("2026-01-19T12:00:00Z"), 10)),
        ["2026-01-16T00:00:00.000Z", "2026-01-19T00:00:00.000Z"]
    );
}

#[test]
fn a_daily_tick_in_paris_follows_summer_time() {
    let s = Schedule::new("30 2 * * *", "Europe/Paris").unwrap();
    // 2026-03-29: clocks go from 02:00 to 03:00, there is no 02:30: the tick is at 03:00 CEST.
    assert_eq!(
        shown(&s.ticks_between(ms("2026-03-27T00:00:00Z"), ms("2026-03-31T00:00:00Z"), 10)),
        [
            "2026-03-27T01:30:00.000Z", // 02:30 CET
            "2026-03-28T01:30:00.000Z",
            "2026-03-29T01:00:00.000Z", // 03:00 CEST, the first instant after the gap
            "2026-03-30T00:30:00.000Z", // 02:30 CEST
        ]
    );
    // 2026-10-25: clocks go from 03:00 back to 02:00, 02:30 happens twice: one tick, the first.
    assert_eq!(
        shown(&s.ticks_between(ms("2026-10-23T00:00:00Z"), ms("2026-10-27T00:00:00Z"), 10)),
        [
            "2026-10-23T00:30:00.000Z", // 02:30 CEST
            "2026-10-24T00:30:00.000Z",
            "2026-10-25T00:30:00.000Z", // the first 02:30 (CEST); none at 01:30 UTC
            "2026-10-26T01:30:00.000Z", // 02:30 CET
        ]
    );
    // Searches that start inside the gap, or between the two 02:30s, agree.
    assert_eq!(
        one(s.next_tick(ms("2026-03-29T00:45:00Z"))),
        Some("2026-03-29T01:00:00.000Z".into())
    );
    assert_eq!(
        one(s.latest_tick(ms("2026-03-29T12:00:00Z"))),
        Some("2026-03-29T01:00:00.000Z".into())
    );
    assert_eq!(
        one(s.next_tick(ms("2026-10-25T00:30:00Z"))),
        Some("2026-10-26T01:30:00.000Z".into())
    );
    assert_eq!(
        one(s.latest_tick(ms("2026-10-25T01:45:00Z"))),
        Some("2026-10-25T00:30:00.000Z".into())
    );
}

#[test]
fn an_hourly_tick_in_paris_ticks_on_both_passes_of_the_repeated_hour() {
    let s = Schedule::new("30 * * * *", "Europe/Paris").unwrap();
    assert_eq!(
        shown(&s.ticks_between(ms("2026-10-24T23:00:00Z"), ms("2026-10-25T02:00:00Z"), 10)),
        [
            "2026-10-24T23:30:00.000Z", // 01:30 CEST
            "2026-10-25T00:30:00.000Z", // 02:30 CEST
            "2026-10-25T01:30:00.000Z", // 02:30 CET
        ]
    );
    // The hour that does not exist has no tick.
    assert_eq!(
        shown(&s.ticks_between(ms("2026-03-29T00:00:00Z"), ms("2026-03-29T02:00:00Z"), 10)),
        ["2026-03-29T00:30:00.000Z", "2026-03-29T01:30:00.000Z"]
    );
}

#[test]
fn bad_expressions_and_zones_say_why() {
    let cron_error = |text: &str| Schedule::new(text, "UTC").unwrap_err().to_string();
    assert_eq!(
        cron_error("0 3 * *"),
        "invalid cron expression `0 3 * *`: expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got 4"
    );
    assert!(
        cron_error("0 0 3 * * * 2030").contains("got 7"),
        "no year field"
    );
    assert!(cron_error("61 * * * *").contains("out of bounds"));
    assert!(cron_error("*/0 * * * *").contains("Step cannot be zero"));
    assert!(cron_error("0 3 * * FUNDAY").contains("illegal character"));
    assert!(cron_error("").contains("empty"));
    let zone_error = |name: &str| Schedule::new("0 3 * * *", name).unwrap_err().to_string();
    assert_eq!(
        zone_error("europe/paris"),
        "unknown time zone `europe/paris` (did you mean `Europe/Paris`?) (expected an IANA name such as `Europe/Paris` or `UTC`)"
    );
    assert!(zone_error("Europe/Pariss").contains("(did you mean `Europe/Paris`?)"));
    assert!(!zone_error("Mars/Olympus").contains("did you mean"));
    assert_eq!(Schedule::new("0 3 * * *", "UTC").unwrap().timezone(), "UTC");
}

#[test]
fn catchup_words_round_trip() {
    for c in Catchup::ALL {
        assert_eq!(Catchup::parse(c.as_str()), Some(c));
    }
    assert_eq!(Catchup::parse("some"), None);
    assert_eq!(Catchup::default(), Catchup::None);
}

/// Decisions over a daily 03:00 UTC schedule: `last` and `now` as RFC 3339.
fn decide(
    s: &Schedule,
    last: Option<&str>,
    now: &str,
    active: usize,
) -> (Vec<String>, Option<String>, bool) {
    let d = s.decide(last.map(ms), ms(now), active);
    (shown(&d.ticks), one(d.wake_at), d.behind)
}

const D2: &str = "2026-01-02T03:00:00.000Z";
const D3: &str = "2026-01-03T03:00:00.000Z";
const D4: &str = "2026-01-04T03:00:00.000Z";
const D5: &str = "2026-01-05T03:00:00.000Z";

#[test]
fn none_creates_the_tick_due_now_and_skips_missed_ones() {
    let s = daily(Catchup::None);
    let wake = Some(D5.to_string());
    // Not behind: the tick due now, a little late or not at all.
    for now in [
        "2026-01-04T03:00:00Z",
        "2026-01-04T03:00:05Z",
        "2026-01-04T03:01:00Z",
    ] {
        assert_eq!(
            decide(&s, Some(D3), now, 0),
            (vec![D4.into()], wake.clone(), false),
            "{now}"
        );
    }
    // More than ON_TIME_MS late: missed, skipped.
    let late = crate::time::rfc3339(ms(D4) + ON_TIME_MS + 1);
    assert_eq!(
        decide(&s, Some(D3), &late, 0),
        (vec![], wake.clone(), false)
    );
    // Down from before D3 until after D4: D3 and D4 are skipped...
    assert_eq!(
        decide(&s, Some(D2), "2026-01-04T10:00:00Z", 0),
        (vec![], wake.clone(), false)
    );
    // ...and D5 is created on time.
    assert_eq!(
        decide(&s, Some(D2), "2026-01-05T03:00:01Z", 0),
        (
            vec![D5.into()],
            Some("2026-01-06T03:00:00.000Z".into()),
            false
        )
    );
    // Already created: nothing.
    assert_eq!(
        decide(&s, Some(D4), "2026-01-04T03:00:30Z", 0),
        (vec![], wake.clone(), false)
    );
}

#[test]
fn none_without_a_last_tick_waits_for_a_tick_on_time() {
    let s = daily(Catchup::None);
    assert_eq!(
        decide(&s, None, "2026-01-04T10:00:00Z", 0),
        (vec![], Some(D5.into()), false),
        "first seen long after its latest tick"
    );
    assert_eq!(
        decide(&s, None, "2026-01-05T03:00:02Z", 0),
        (
            vec![D5.into()],
            Some("2026-01-06T03:00:00.000Z".into()),
            false
        ),
        "then the next tick, on time"
    );
}

#[test]
fn none_with_every_slot_busy_holds_the_tick_while_it_is_on_time() {
    let mut s = daily(Catchup::None);
    let wake = Some(D5.to_string());
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:01Z", 1),
        (vec![], wake.clone(), true)
    );
    // The slot frees up in time: created.
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:40Z", 0),
        (vec![D4.into()], wake.clone(), false)
    );
    // Too late: skipped.
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:05:00Z", 0),
        (vec![], wake.clone(), false)
    );
    // More slots: the limit is the number of unfinished tasks.
    s.max_active_tasks = 3;
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:01Z", 2),
        (vec![D4.into()], wake.clone(), false)
    );
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:01Z", 3),
        (vec![], wake.clone(), true)
    );
    // No slot at all: nothing is ever created.
    s.max_active_tasks = 0;
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:01Z", 0),
        (vec![], wake, true)
    );
}

#[test]
fn last_creates_only_the_latest_missed_tick() {
    let s = daily(Catchup::Last);
    let wake = Some(D5.to_string());
    // Down from before D3 until after D4: D4 only, however late.
    assert_eq!(
        decide(&s, Some(D2), "2026-01-04T22:00:00Z", 0),
        (vec![D4.into()], wake.clone(), false)
    );
    // On time, as `none`.
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:00Z", 0),
        (vec![D4.into()], wake.clone(), false)
    );
    // Already created.
    assert_eq!(
        decide(&s, Some(D4), "2026-01-04T22:00:00Z", 0),
        (vec![], wake.clone(), false)
    );
    // Every slot busy: held back, then created whenever the slot frees up.
    assert_eq!(
        decide(&s, Some(D2), "2026-01-04T22:00:00Z", 1),
        (vec![], wake.clone(), true)
    );
    assert_eq!(
        decide(&s, Some(D2), "2026-01-04T23:00:00Z", 0),
        (vec![D4.into()], wake, false)
    );
}

#[test]
fn last_without_a_last_tick_creates_the_latest_due_tick() {
    let mut s = daily(Catchup::Last);
    assert_eq!(
        decide(&s, None, "2026-01-04T10:00:00Z", 0),
        (vec![D4.into()], Some(D5.into()), false)
    );
    // Unless `start` is after it.
    s.start = Some(ms("2026-01-04T12:00:00Z"));
    assert_eq!(
        decide(&s, None, "2026-01-04T13:00:00Z", 0),
        (vec![], Some(D5.into()), false)
    );
    assert_eq!(
        decide(&s, None, "2026-01-01T00:00:00Z", 0),
        (vec![], Some(D5.into()), false),
        "before start: wake at the first tick"
    );
}

#[test]
fn all_creates_every_missed_tick_as_slots_allow() {
    let mut s = daily(Catchup::All);
    s.start = Some(ms("2026-01-01T00:00:00Z"));
    s.max_active_tasks = 5;
    let wake = Some(D5.to_string());
    let now = "2026-01-04T10:00:00Z";
    assert_eq!(
        decide(&s, Some(D2), now, 0),
        (vec![D3.into(), D4.into()], wake.clone(), false)
    );
    s.max_active_tasks = 2;
    let d1 = "2026-01-01T03:00:00.000Z";
    assert_eq!(
        decide(&s, Some(d1), now, 0),
        (vec![D2.into(), D3.into()], wake.clone(), true)
    );
    assert_eq!(
        decide(&s, Some(d1), now, 1),
        (vec![D2.into()], wake.clone(), true)
    );
    assert_eq!(decide(&s, Some(d1), now, 2), (vec![], wake.clone(), true));
    assert_eq!(decide(&s, Some(d1), now, 7), (vec![], wake.clone(), true));
    // Caught up: the tick due now, as the other modes.
    assert_eq!(
        decide(&s, Some(D3), "2026-01-04T03:00:00Z", 1),
        (vec![D4.into()], wake.clone(), false)
    );
    assert_eq!(decide(&s, Some(D4), now, 0), (vec![], wake, false));
}

#[test]
fn all_without_a_last_tick_starts_at_start() {
    let mut s = daily(Catchup::All);
    s.max_active_tasks = 10;
    s.start = Some(ms("2026-01-02T00:00:00Z"));
    assert_eq!(
        decide(&s, None, "2026-01-04T10:00:00Z", 0),
        (
            vec![D2.into(), D3.into(), D4.into()],
            Some(D5.into()),
            false
        )
    );
    // A start in the future: nothing yet, wake at its first tick.
    s.start = Some(ms("2026-01-05T00:00:00Z"));
    assert_eq!(
        decide(&s, None, "2026-01-04T10:00:00Z", 0),
        (vec![], Some(D5.into()), false)
    );
    // Built without a start (a document refuses that): decides as `none`.
    s.start = None;
    assert_eq!(
        decide(&s, None, "2026-01-04T10:00:00Z", 0),
        (vec![], Some(D5.into()), false)
    );
    assert_eq!(decide(&s, None, "2026-01-05T03:00:01Z", 0).0, [D5]);
}

#[test]
fn all_creates_a_big_backlog_a_bounded_batch_at_a_time() {
    let mut s = Schedule::new("* * * * * *", "UTC").unwrap();
    s.catchup = Catchup::All;
    s.start = Some(ms("2025-01-01T00:00:00Z"));
    s.max_active_tasks = u32::MAX;
    let started = std::time::Instant::now();
    let d = s.decide(None, ms("2026-01-01T00:00:00Z"), 0);
    assert_eq!(d.ticks.len(), MAX_TICKS_PER_DECISION);
    assert!(d.behind);
    assert_eq!(
        shown(&d.ticks[..2]),
        ["2025-01-01T00:00:00.000Z", "2025-01-01T00:00:01.000Z"]
    );
    assert!(d.ticks.windows(2).all(|w| w[1] - w[0] == 1000));
    // The next batch goes on after the last tick created.
    let next = s.decide(d.ticks.last().copied(), ms("2026-01-01T00:00:00Z"), 0);
    assert_eq!(next.ticks[0], d.ticks[999] + 1000);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn an_ended_schedule_creates_its_last_ticks_then_never_wakes() {
    let end = "2026-01-03T12:00:00Z";
    for (catchup, ticks) in [
        (Catchup::None, vec![]),
        (Catchup::Last, vec![D3]),
        (Catchup::All, vec![D2, D3]),
    ] {
        let mut s = daily(catchup);
        s.start = Some(ms("2026-01-01T12:00:00Z"));
        s.end = Some(ms(end));
        s.max_active_tasks = 10;
        let d = decide(
            &s,
            Some("2026-01-01T03:00:00.000Z"),
            "2026-01-10T00:00:00Z",
            0,
        );
        assert_eq!(
            d,
            (ticks.iter().map(|t| t.to_string()).collect(), None, false),
            "{catchup}"
        );
        assert_eq!(
            decide(&s, Some(D3), "2026-01-10T00:00:00Z", 0),
            (vec![], None, false)
        );
    }
}

#[test]
fn a_last_tick_ahead_of_now_is_never_created_again() {
    // Another loop, its clock ahead, created D4 already.
    for catchup in Catchup::ALL {
        let mut s = daily(catchup);
        s.start = Some(0);
        assert_eq!(
            decide(&s, Some(D4), "2026-01-04T02:59:59Z", 0),
            (vec![], Some(D5.into()), false),
            "{catchup}"
        );
    }
}

#[test]
fn decisions_across_summer_time_in_paris() {
    for catchup in Catchup::ALL {
        let mut s = Schedule::new("30 2 * * *", "Europe/Paris").unwrap();
        s.catchup = catchup;
        s.start = Some(0);
        // The day without 02:30: the tick at 03:00 CEST (01:00 UTC) is created on time.
        assert_eq!(
            decide(&s, Some("2026-03-28T01:30:00Z"), "2026-03-29T01:00:05Z", 0),
            (
                vec!["2026-03-29T01:00:00.000Z".into()],
                Some("2026-03-30T00:30:00.000Z".into()),
                false
            ),
            "{catchup}"
        );
        // The day with two 02:30s: after the first, the second creates nothing.
        assert_eq!(
            decide(&s, Some("2026-10-25T00:30:00Z"), "2026-10-25T01:30:05Z", 0),
            (vec![], Some("2026-10-26T01:30:00.000Z".into()), false),
            "{catchup}"
        );
    }
}
