//! Cron schedules across daylight-saving changes, held to the rule `CronSchedule` documents:
//! a wall time that does not exist (spring forward) fires once, at the first instant after the
//! gap; a wall time that occurs twice (fall back) fires once, at its first occurrence;
//! fixed-interval schedules (`*/5 * * * *`, `@hourly`) keep their interval across the change.
//!
//! The tables use fixed instants on the 2026 changes, which the first test checks against
//! chrono-tz. The properties compare `next_after` with matchers and oracles written here, from
//! the rule, not from croner.

use std::sync::OnceLock;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use panda_core::{CronError, CronSchedule};
use proptest::prelude::*;
use proptest::sample::Index;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|err| panic!("{s}: {err}"))
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn schedule(expression: &str, zone: &str) -> CronSchedule {
    CronSchedule::parse(expression, zone)
        .unwrap_or_else(|err| panic!("{expression} in {zone}: {err}"))
}

/// Every fire time in `(after, until]`, by calling `next_after` on each result in turn.
fn fires_between(
    s: &CronSchedule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut cursor = after;
    while let Some(next) = s.next_after(cursor).filter(|next| *next <= until) {
        assert!(next > cursor, "{s:?}: {next} is not after {cursor}");
        assert!(out.len() < 100_000, "{s:?}: runaway enumeration");
        out.push(next);
        cursor = next;
    }
    out
}

/// The first instant of a local date (its midnight, or the end of a gap that swallows it).
fn local_day_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut wall = date.and_hms_opt(0, 0, 0).expect("midnight");
    loop {
        if let Some(t) = zone.from_local_datetime(&wall).earliest() {
            return t.with_timezone(&Utc);
        }
        wall += Duration::minutes(1);
    }
}

/// The fire times whose local date in the schedule's zone is `date`.
fn fires_on_local_day(s: &CronSchedule, date: NaiveDate) -> Vec<DateTime<Utc>> {
    let zone = s.timezone();
    let start = local_day_start(zone, date);
    let next_start = local_day_start(zone, date.succ_opt().expect("a next day"));
    fires_between(
        s,
        start - Duration::seconds(1),
        next_start - Duration::seconds(1),
    )
}

fn offset_seconds(zone: Tz, t: DateTime<Utc>) -> i32 {
    t.with_timezone(&zone).offset().fix().local_minus_utc()
}

fn gaps_in_seconds(times: &[DateTime<Utc>]) -> Vec<i64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect()
}

// ---- the clock changes the tables rely on ----

/// Zone, the instant of the change, the wall clock a second before it, the wall clock at it.
const CHANGES_2026: &[(&str, &str, &str, &str)] = &[
    (
        "America/New_York",
        "2026-03-08T07:00:00Z",
        "2026-03-08T01:59:59-05:00",
        "2026-03-08T03:00:00-04:00",
    ),
    (
        "America/New_York",
        "2026-11-01T06:00:00Z",
        "2026-11-01T01:59:59-04:00",
        "2026-11-01T01:00:00-05:00",
    ),
    (
        "Europe/Berlin",
        "2026-03-29T01:00:00Z",
        "2026-03-29T01:59:59+01:00",
        "2026-03-29T03:00:00+02:00",
    ),
    (
        "Europe/Berlin",
        "2026-10-25T01:00:00Z",
        "2026-10-25T02:59:59+02:00",
        "2026-10-25T02:00:00+01:00",
    ),
    (
        "Europe/London",
        "2026-03-29T01:00:00Z",
        "2026-03-29T00:59:59+00:00",
        "2026-03-29T02:00:00+01:00",
    ),
    (
        "Europe/London",
        "2026-10-25T01:00:00Z",
        "2026-10-25T01:59:59+01:00",
        "2026-10-25T01:00:00+00:00",
    ),
    (
        "Australia/Lord_Howe",
        "2026-04-04T15:00:00Z",
        "2026-04-05T01:59:59+11:00",
        "2026-04-05T01:30:00+10:30",
    ),
    (
        "Australia/Lord_Howe",
        "2026-10-03T15:30:00Z",
        "2026-10-04T01:59:59+10:30",
        "2026-10-04T02:30:00+11:00",
    ),
    (
        "Pacific/Chatham",
        "2026-04-04T14:00:00Z",
        "2026-04-05T03:44:59+13:45",
        "2026-04-05T02:45:00+12:45",
    ),
    (
        "Pacific/Chatham",
        "2026-09-26T14:00:00Z",
        "2026-09-27T02:44:59+12:45",
        "2026-09-27T03:45:00+13:45",
    ),
];

#[test]
fn clock_changes_in_2026_are_where_the_tables_put_them() {
    let year_start = utc("2026-01-01T00:00:00Z");
    let year_end = utc("2027-01-01T00:00:00Z");
    for name in [
        "America/New_York",
        "Europe/Berlin",
        "Europe/London",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kolkata",
    ] {
        let tz = zone(name);
        let found: Vec<DateTime<Utc>> = transitions(tz)
            .iter()
            .copied()
            .filter(|t| (year_start..year_end).contains(t))
            .collect();
        let listed: Vec<DateTime<Utc>> = CHANGES_2026
            .iter()
            .filter(|(z, ..)| *z == name)
            .map(|(_, at, ..)| utc(at))
            .collect();
        assert_eq!(found, listed, "{name}: the 2026 changes");
    }
    for (name, at, before, after) in CHANGES_2026 {
        let tz = zone(name);
        let at = utc(at);
        assert_eq!(
            (at - Duration::seconds(1)).with_timezone(&tz).to_rfc3339(),
            *before,
            "{name}"
        );
        assert_eq!(at.with_timezone(&tz).to_rfc3339(), *after, "{name}");
    }
}

// ---- daily wall times ----

#[test]
fn a_daily_wall_time_fires_once_on_each_clock_change_day() {
    // Expression, zone, local date, every fire on that local date, why.
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-08",
            "2026-03-08T07:00:00Z",
            "02:30 is in the 02:00-03:00 gap: 03:00 EDT, the first instant after it",
        ),
        (
            "0 2 * * *",
            "America/New_York",
            "2026-03-08",
            "2026-03-08T07:00:00Z",
            "02:00, the first wall time of the gap: 03:00 EDT",
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2026-11-01",
            "2026-11-01T07:30:00Z",
            "02:30 EST; only 01:00-02:00 repeats",
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2026-11-01",
            "2026-11-01T05:30:00Z",
            "01:30 EDT, the first of 05:30Z and 06:30Z",
        ),
        (
            "0 1 * * *",
            "America/New_York",
            "2026-11-01",
            "2026-11-01T05:00:00Z",
            "01:00 EDT, not 01:00 EST (the instant of the change)",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-29",
            "2026-03-29T01:00:00Z",
            "02:30 is in the 02:00-03:00 gap: 03:00 CEST",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-25",
            "2026-10-25T00:30:00Z",
            "02:30 CEST, the first of 00:30Z and 01:30Z",
        ),
        (
            "30 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-04",
            "2026-10-03T15:30:00Z",
            "the gap is 02:00-02:30, so 02:30 +11 exists and is the gap's end",
        ),
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-04",
            "2026-10-03T15:30:00Z",
            "02:15 is in the gap: 02:30 +11",
        ),
        (
            "0 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-04",
            "2026-10-03T15:30:00Z",
            "02:00 is in the gap: 02:30 +11",
        ),
        (
            "30 2 * * *",
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-04T16:00:00Z",
            "02:30 +10:30; only 01:30-02:00 repeats",
        ),
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-04T14:45:00Z",
            "01:45 +11, the first of 14:45Z and 15:15Z",
        ),
        (
            "30 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-04T14:30:00Z",
            "01:30 +11, not 01:30 +10:30 (the instant of the change)",
        ),
        (
            "30 2 * * *",
            "Asia/Kolkata",
            "2026-03-08",
            "2026-03-07T21:00:00Z",
            "no DST: 02:30 IST",
        ),
        (
            "30 2 * * *",
            "Asia/Kolkata",
            "2026-11-01",
            "2026-10-31T21:00:00Z",
            "no DST: 02:30 IST",
        ),
    ];
    for (expression, name, date, expected, why) in cases {
        let s = schedule(expression, name);
        assert!(s.is_fixed_time(), "{expression} is one wall time a day");
        let date: NaiveDate = date.parse().expect("a date");
        assert_eq!(
            fires_on_local_day(&s, date),
            [utc(expected)],
            "{expression} in {name} on {date}: {why}"
        );
        // The days either side fire at the plain wall time, once each.
        for day in [date.pred_opt(), date.succ_opt()].into_iter().flatten() {
            let fires = fires_on_local_day(&s, day);
            assert_eq!(fires.len(), 1, "{expression} in {name} on {day}: {fires:?}");
        }
    }
}

/// A wall time listed with another one is not a fixed time, but the rule names no exception for
/// it: 02:30 in the gap should still fire once, and 01:30 in the repeated hour only once.
#[test]
fn each_of_several_daily_wall_times_fires_once_on_a_clock_change_day() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "30 1,2 * * *",
            "America/New_York",
            "2026-03-08",
            &[
                "2026-03-08T06:30:00Z", // 01:30 EST
                "2026-03-08T07:00:00Z", // 02:30 is in the gap: 03:00 EDT
            ],
        ),
        (
            "30 1,2 * * *",
            "America/New_York",
            "2026-11-01",
            &[
                "2026-11-01T05:30:00Z", // 01:30 EDT, the first occurrence only
                "2026-11-01T07:30:00Z", // 02:30 EST
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (expression, name, date, expected) in cases {
        let s = schedule(expression, name);
        let date: NaiveDate = date.parse().expect("a date");
        let expected: Vec<_> = expected.iter().map(|t| utc(t)).collect();
        let got = fires_on_local_day(&s, date);
        if got != expected {
            wrong.push(format!(
                "{expression} in {name} on {date}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn kolkata_daily_0230_is_2100_utc_the_day_before_every_day_of_2026() {
    let s = schedule("30 2 * * *", "Asia/Kolkata");
    let fires = fires_between(&s, utc("2025-12-31T20:59:59Z"), utc("2026-12-30T21:00:00Z"));
    let mut expected = Vec::new();
    let mut date = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date");
    while date.year() == 2026 {
        let day_before = date.pred_opt().expect("a day before");
        let at = day_before.and_hms_opt(21, 0, 0).expect("21:00").and_utc();
        expected.push(at);
        date = date.succ_opt().expect("a next day");
    }
    assert_eq!(fires.len(), 365);
    assert_eq!(fires, expected);
}

// ---- fixed intervals ----

/// Expression, zone, window `(after, until]` around a change, expected first fire, expected
/// number of fires, expected seconds between consecutive fires.
type IntervalCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    usize,
    i64,
);

/// Checks every case, then fails once, listing each case that is wrong.
fn assert_interval_cases(cases: &[IntervalCase]) {
    let mut wrong = Vec::new();
    for (expression, name, after, until, first, count, interval) in cases {
        let s = schedule(expression, name);
        assert!(!s.is_fixed_time(), "{expression} is an interval");
        let fires = fires_between(&s, utc(after), utc(until));
        let gaps = gaps_in_seconds(&fires);
        if fires.first() != Some(&utc(first))
            || fires.len() != *count
            || gaps.iter().any(|gap| gap != interval)
        {
            wrong.push(format!(
                "{expression} in {name} over ({after}, {until}]: expected {count} fires from \
                 {first}, {interval} s apart; got gaps {gaps:?} between {fires:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_15_minutes_keeps_900_real_seconds_across_each_change() {
    // Three hours either side of each change: 24 fires, all on UTC quarter hours.
    let cases: &[IntervalCase] = &[
        (
            "*/15 * * * *",
            "America/New_York",
            "2026-03-08T04:00:00Z",
            "2026-03-08T10:00:00Z",
            "2026-03-08T04:15:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "America/New_York",
            "2026-11-01T03:00:00Z",
            "2026-11-01T09:00:00Z",
            "2026-11-01T03:15:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "Europe/Berlin",
            "2026-03-28T22:00:00Z",
            "2026-03-29T04:00:00Z",
            "2026-03-28T22:15:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "Europe/Berlin",
            "2026-10-24T22:00:00Z",
            "2026-10-25T04:00:00Z",
            "2026-10-24T22:15:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-10-03T12:30:00Z",
            "2026-10-03T18:30:00Z",
            "2026-10-03T12:45:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-04-04T12:00:00Z",
            "2026-04-04T18:00:00Z",
            "2026-04-04T12:15:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "Pacific/Chatham",
            "2026-09-26T11:00:00Z",
            "2026-09-26T17:00:00Z",
            "2026-09-26T11:15:00Z",
            24,
            900,
        ),
        (
            "*/15 * * * *",
            "Asia/Kolkata",
            "2026-03-08T04:00:00Z",
            "2026-03-08T10:00:00Z",
            "2026-03-08T04:15:00Z",
            24,
            900,
        ),
    ];
    assert_interval_cases(cases);
}

#[test]
fn hourly_keeps_one_real_hour_across_each_whole_hour_change() {
    // Three hours either side of each change: 6 fires.
    let cases: &[IntervalCase] = &[
        (
            "@hourly",
            "America/New_York",
            "2026-03-08T04:00:00Z",
            "2026-03-08T10:00:00Z",
            "2026-03-08T05:00:00Z",
            6,
            3600,
        ),
        (
            "@hourly",
            "America/New_York",
            "2026-11-01T03:00:00Z",
            "2026-11-01T09:00:00Z",
            "2026-11-01T04:00:00Z",
            6,
            3600,
        ),
        (
            "@hourly",
            "Europe/Berlin",
            "2026-03-28T22:00:00Z",
            "2026-03-29T04:00:00Z",
            "2026-03-28T23:00:00Z",
            6,
            3600,
        ),
        (
            "@hourly",
            "Europe/Berlin",
            "2026-10-24T22:00:00Z",
            "2026-10-25T04:00:00Z",
            "2026-10-24T23:00:00Z",
            6,
            3600,
        ),
        (
            "@hourly",
            "Pacific/Chatham",
            "2026-04-04T11:00:00Z",
            "2026-04-04T17:00:00Z",
            "2026-04-04T11:15:00Z", // 00:00 +12:45
            6,
            3600,
        ),
        (
            "@hourly",
            "Asia/Kolkata",
            "2026-03-08T04:00:00Z",
            "2026-03-08T10:00:00Z",
            "2026-03-08T04:30:00Z",
            6,
            3600,
        ),
    ];
    assert_interval_cases(cases);
}

/// A wall-clock `:00` cannot be an hour apart in real time across a 30-minute shift, so the
/// DESIGN sentence "`@hourly` keeps its interval" cannot hold in Lord Howe: `@hourly` fires at
/// each wall `:00` that exists, once each, and one interval is 90 minutes.
#[test]
fn hourly_across_lord_howes_half_hour_changes_fires_at_each_wall_hour_once() {
    let fires = |from: &str, n: usize| {
        let s = CronSchedule::parse("@hourly", "Australia/Lord_Howe").expect("parse");
        let mut cursor = utc(from);
        (0..n)
            .map(|_| {
                cursor = s.next_after(cursor).expect("a fire");
                cursor
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fires("2026-10-03T13:00:00Z", 4),
        [
            utc("2026-10-03T13:30:00Z"), // 00:00 +10:30
            utc("2026-10-03T14:30:00Z"), // 01:00 +10:30; 02:00 does not exist
            utc("2026-10-03T16:00:00Z"), // 03:00 +11
            utc("2026-10-03T17:00:00Z"),
        ]
    );
    assert_eq!(
        fires("2026-04-04T13:00:00Z", 4),
        [
            utc("2026-04-04T14:00:00Z"), // 01:00 +11
            utc("2026-04-04T15:30:00Z"), // 02:00 +10:30; the repeated 01:30-02:00 has no :00
            utc("2026-04-04T16:30:00Z"),
            utc("2026-04-04T17:30:00Z"),
        ]
    );
}

// ---- slots ----

#[test]
fn slots_between_over_a_dst_day_equals_repeated_next_after() {
    let cases: &[(&str, &str, &str)] = &[
        ("30 2 * * *", "America/New_York", "2026-03-08"),
        ("30 1 * * *", "America/New_York", "2026-11-01"),
        ("*/15 * * * *", "America/New_York", "2026-11-01"),
        ("@hourly", "America/New_York", "2026-03-08"),
        ("30 1,2 * * *", "America/New_York", "2026-11-01"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-29"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-25"),
        ("*/7 2-3 * * *", "Europe/Berlin", "2026-10-25"),
        ("15 2 * * *", "Australia/Lord_Howe", "2026-10-04"),
        ("45 1 * * *", "Australia/Lord_Howe", "2026-04-05"),
        ("*/15 * * * *", "Australia/Lord_Howe", "2026-04-05"),
        ("@hourly", "Australia/Lord_Howe", "2026-10-04"),
        ("0 3 * * *", "Pacific/Chatham", "2026-09-27"),
        ("30 2 * * *", "Asia/Kolkata", "2026-03-08"),
    ];
    for (expression, name, date) in cases {
        let s = schedule(expression, name);
        let date: NaiveDate = date.parse().expect("a date");
        // The local day with half a day either side.
        let after = local_day_start(s.timezone(), date) - Duration::hours(12);
        let until = after + Duration::hours(48);
        let stepped = fires_between(&s, after, until);
        assert!(!stepped.is_empty(), "{expression} in {name}");
        let all = s.slots_between(after, until, 10_000);
        assert_eq!(all.instants, stepped, "{expression} in {name} on {date}");
        assert!(!all.older_left_out);
        let capped = s.slots_between(after, until, 2);
        assert_eq!(
            capped.instants,
            stepped[stepped.len().saturating_sub(2)..],
            "{expression} in {name} on {date}, newest two"
        );
        assert_eq!(capped.older_left_out, stepped.len() > 2);
    }
}

// ---- properties ----

const ZONES: [Tz; 8] = [
    Tz::UTC,
    Tz::America__New_York,
    Tz::Europe__Berlin,
    Tz::Europe__London,
    Tz::Australia__Lord_Howe,
    Tz::Asia__Kolkata,
    Tz::America__Sao_Paulo,
    Tz::Pacific__Chatham,
];

/// The zones of [`ZONES`] that change their clocks between 2020 and 2030.
const CHANGING_ZONES: [Tz; 5] = [
    Tz::America__New_York,
    Tz::Europe__Berlin,
    Tz::Europe__London,
    Tz::Australia__Lord_Howe,
    Tz::Pacific__Chatham,
];

/// Every instant in 2020-2030 at which `zone`'s UTC offset changes, found from chrono-tz alone.
fn transitions(zone: Tz) -> &'static [DateTime<Utc>] {
    static ALL: OnceLock<Vec<(Tz, Vec<DateTime<Utc>>)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let from = utc("2020-01-01T00:00:00Z");
        let until = utc("2031-01-01T00:00:00Z");
        let step = Duration::hours(6);
        ZONES
            .into_iter()
            .map(|zone| {
                let mut found = Vec::new();
                let mut t = from;
                while t < until {
                    let (mut low, mut high) = (t, t + step);
                    if offset_seconds(zone, low) != offset_seconds(zone, high) {
                        // Narrow to the first second of the new offset.
                        while high - low > Duration::seconds(1) {
                            let mid = low + Duration::seconds((high - low).num_seconds() / 2);
                            if offset_seconds(zone, mid) == offset_seconds(zone, low) {
                                low = mid;
                            } else {
                                high = mid;
                            }
                        }
                        found.push(high);
                    }
                    t += step;
                }
                (zone, found)
            })
            .collect()
    });
    all.iter()
        .find(|(z, _)| *z == zone)
        .map(|(_, found)| found.as_slice())
        .unwrap_or_else(|| panic!("{zone} is not in ZONES"))
}

/// The wall times that do not exist just before `t`, when `t` is the end of a spring-forward
/// gap, one a minute; empty otherwise.
fn gap_before(zone: Tz, t: DateTime<Utc>) -> Vec<NaiveDateTime> {
    let before = t - Duration::seconds(1);
    if offset_seconds(zone, before) >= offset_seconds(zone, t) {
        return Vec::new();
    }
    let mut wall = before.with_timezone(&zone).naive_local() + Duration::seconds(1);
    let end = t.with_timezone(&zone).naive_local();
    let mut out = Vec::new();
    while wall < end {
        out.push(wall);
        wall += Duration::minutes(1);
    }
    out
}

/// Whether `t` is the first of the instants that show its wall time (the only one, unless the
/// clock went back over it).
fn is_first_occurrence(zone: Tz, t: DateTime<Utc>) -> bool {
    let wall = t.with_timezone(&zone).naive_local();
    zone.from_local_datetime(&wall)
        .earliest()
        .is_some_and(|first| first.with_timezone(&Utc) == t)
}

/// One field of a generated expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Any,
    Step(u32),
    Value(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
    List(Vec<u32>),
}

impl Field {
    fn text(&self) -> String {
        match self {
            Self::Any => "*".into(),
            Self::Step(n) => format!("*/{n}"),
            Self::Value(v) => v.to_string(),
            Self::Range(a, b) => format!("{a}-{b}"),
            Self::RangeStep(a, b, n) => format!("{a}-{b}/{n}"),
            Self::List(values) => values
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Whether `value` is in the field; `min` is the field's lowest value, where `*/n` starts.
    fn matches(&self, value: u32, min: u32) -> bool {
        match self {
            Self::Any => true,
            Self::Step(n) => value >= min && (value - min).is_multiple_of(*n),
            Self::Value(v) => value == *v,
            Self::Range(a, b) => (*a..=*b).contains(&value),
            Self::RangeStep(a, b, n) => {
                (*a..=*b).contains(&value) && (value - a).is_multiple_of(*n)
            }
            Self::List(values) => values.contains(&value),
        }
    }

    /// The field names wall-clock values (no `*`), as a fixed-time schedule's fields do.
    fn names_values(&self) -> bool {
        !matches!(self, Self::Any | Self::Step(_))
    }
}

fn field(min: u32, max: u32) -> impl Strategy<Value = Field> {
    let span = max - min;
    prop_oneof![
        2 => Just(Field::Any),
        1 => (2..=span.min(30)).prop_map(Field::Step),
        2 => (min..=max).prop_map(Field::Value),
        1 => (min..=max, min..=max).prop_map(|(a, b)| Field::Range(a.min(b), a.max(b))),
        // At least two values, so a step never makes a single value.
        1 => (min..max, 1..=span)
            .prop_flat_map(move |(a, n)| {
                let n = n.min(max - a);
                (Just(a), (a + n)..=max, Just(n))
            })
            .prop_map(|(a, b, n)| Field::RangeStep(a, b, n)),
        1 => prop::collection::vec(min..=max, 2..=3).prop_map(Field::List),
    ]
}

/// A 5-field expression, with a matcher for wall times written from the cron rules.
#[derive(Debug, Clone)]
struct Expression {
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
}

impl Expression {
    fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.minute.text(),
            self.hour.text(),
            self.day_of_month.text(),
            self.month.text(),
            self.day_of_week.text()
        )
    }

    fn is_fixed_time(&self) -> bool {
        self.minute.names_values() && self.hour.names_values()
    }

    /// The date matches. Vixie: when both day fields are restricted (not `*`), either one
    /// matching is enough; 0 and 7 are both Sunday.
    fn date_matches(&self, date: NaiveDate) -> bool {
        let weekday = date.weekday().num_days_from_sunday();
        let by_week = self.day_of_week.matches(weekday, 0)
            || (weekday == 0 && self.day_of_week.matches(7, 0));
        let by_month = self.day_of_month.matches(date.day(), 1);
        let day = match (
            self.day_of_month == Field::Any,
            self.day_of_week == Field::Any,
        ) {
            (false, false) => by_month || by_week,
            _ => by_month && by_week,
        };
        day && self.month.matches(date.month(), 1)
    }

    /// The wall time matches every field.
    fn matches(&self, wall: NaiveDateTime) -> bool {
        wall.second() == 0
            && wall.nanosecond() == 0
            && self.minute.matches(wall.minute(), 0)
            && self.hour.matches(wall.hour(), 0)
            && self.date_matches(wall.date())
    }

    /// Whether some date matches, in some year (the 29th of February included).
    fn fires_on_some_date(&self) -> bool {
        let mut date = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date");
        while date.year() == 2024 {
            if self.month.matches(date.month(), 1)
                && (self.day_of_week != Field::Any || self.day_of_month.matches(date.day(), 1))
            {
                return true;
            }
            date = date.succ_opt().expect("a next day");
        }
        false
    }
}

fn expression() -> impl Strategy<Value = Expression> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        field(0, 7),
    )
        .prop_map(
            |(minute, hour, day_of_month, month, day_of_week)| Expression {
                minute,
                hour,
                day_of_month,
                month,
                day_of_week,
            },
        )
}

/// Parses a generated expression; `None` when it never fires, which is checked independently.
fn parse_generated(
    expression: &Expression,
    zone: Tz,
) -> Result<Option<CronSchedule>, TestCaseError> {
    let text = expression.text();
    match CronSchedule::parse(&text, zone.name()) {
        Ok(s) => {
            prop_assert_eq!(
                s.is_fixed_time(),
                expression.is_fixed_time(),
                "is_fixed_time of {}",
                text
            );
            Ok(Some(s))
        }
        Err(CronError::Never(_)) => {
            prop_assert!(
                !expression.fires_on_some_date(),
                "{} was refused as never firing",
                text
            );
            Ok(None)
        }
        Err(err) => Err(TestCaseError::fail(format!("{text}: {err}"))),
    }
}

/// A start instant: anywhere in 2020-2030, or within 36 hours of a clock change.
#[derive(Debug, Clone)]
enum Start {
    Anywhere(i64),
    NearChange(Index, i64),
}

fn start() -> impl Strategy<Value = Start> {
    let year_2020 = 1_577_836_800i64;
    let year_2031 = 1_924_992_000i64;
    let around: i64 = 36 * 3600;
    prop_oneof![
        (year_2020..year_2031).prop_map(Start::Anywhere),
        (any::<Index>(), -around..=around).prop_map(|(i, s)| Start::NearChange(i, s)),
    ]
}

impl Start {
    /// The clock change the start is near, if it is near one.
    fn change(&self, zone: Tz) -> Option<DateTime<Utc>> {
        match (self, transitions(zone)) {
            (Self::NearChange(which, _), changes) if !changes.is_empty() => {
                Some(changes[which.index(changes.len())])
            }
            _ => None,
        }
    }

    fn instant(&self, zone: Tz) -> DateTime<Utc> {
        let at = match (self, self.change(zone)) {
            (Self::Anywhere(seconds), _) => Utc.timestamp_opt(*seconds, 0).single(),
            (Self::NearChange(_, shift), Some(change)) => Some(change + Duration::seconds(*shift)),
            // 2026, in a zone without changes.
            (Self::NearChange(_, shift), None) => {
                Utc.timestamp_opt(1_767_225_600 + shift, 0).single()
            }
        };
        at.expect("an instant")
    }
}

/// The wall clock at a change, read with the offset before it (`02:00` for New York in both
/// March and November).
fn wall_at_change(zone: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    (at - Duration::seconds(1))
        .with_timezone(&zone)
        .naive_local()
        + Duration::seconds(1)
}

/// `expression` turned into a daily wall time `minutes` from the wall clock at the change `at`,
/// on any day of the month and month, so that random cases land in gaps and repeated hours
/// often enough to test the rule there.
fn anchored(expression: Expression, zone: Tz, at: DateTime<Utc>, minutes: i64) -> Expression {
    let wall = wall_at_change(zone, at) + Duration::minutes(minutes);
    Expression {
        minute: Field::Value(wall.minute()),
        hour: Field::Value(wall.hour()),
        day_of_month: Field::Any,
        month: Field::Any,
        ..expression
    }
}

/// Minutes from the wall clock at a change for [`anchored`], in a third of the cases.
fn anchor() -> impl Strategy<Value = Option<i64>> {
    prop::option::weighted(0.35, -120i64..=120)
}

/// The fire times in `(after, until]` under the DESIGN rule, found by looking at every real
/// minute: a fixed-time schedule fires at the first occurrence of each matching wall time and
/// at the end of a gap that swallowed one; any other schedule fires at every real minute whose
/// wall time matches.
fn rule_fires(
    expression: &Expression,
    zone: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let fixed = expression.is_fixed_time();
    let mut minute = after
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a minute")
        + Duration::minutes(1);
    let mut out = Vec::new();
    while minute <= until {
        let wall = minute.with_timezone(&zone).naive_local();
        let fires = if expression.matches(wall) {
            !fixed || is_first_occurrence(zone, minute)
        } else {
            fixed
                && gap_before(zone, minute)
                    .into_iter()
                    .any(|w| expression.matches(w))
        };
        if fires {
            out.push(minute);
        }
        minute += Duration::minutes(1);
    }
    out
}

/// Where a daily wall time fires on `date` under the DESIGN rule, worked out from the local
/// date alone: its only or first instant, or the first instant after the gap that swallows it.
fn daily_fire(zone: Tz, date: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let wall = date.and_hms_opt(hour, minute, 0).expect("a wall time");
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let mut later = wall;
            loop {
                later += Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&later).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failure is reported with its inputs; it is not written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Twenty calls in a row: each result is later than the last, and its wall time in the zone
    /// matches the expression. A fixed-time schedule may also fire at the end of a gap that
    /// swallowed its wall time, and in a repeated hour only at the first occurrence.
    #[test]
    fn next_after_increases_and_each_fire_matches_the_expression(
        expression in expression(),
        zone in prop::sample::select(ZONES.as_slice()),
        start in start(),
        anchor in anchor(),
    ) {
        let expression = match (anchor, start.change(zone)) {
            (Some(minutes), Some(at)) => anchored(expression, zone, at, minutes),
            _ => expression,
        };
        let Some(s) = parse_generated(&expression, zone)? else { return Ok(()) };
        let text = expression.text();
        let mut cursor = start.instant(zone);
        for _ in 0..20 {
            let Some(next) = s.next_after(cursor) else { break };
            prop_assert!(next > cursor, "{} in {}: {} after {}", text, zone, next, cursor);
            let wall = next.with_timezone(&zone).naive_local();
            if expression.matches(wall) {
                prop_assert!(
                    !s.is_fixed_time() || is_first_occurrence(zone, next),
                    "{} in {}: {} is the second occurrence of {}",
                    text, zone, next, wall
                );
            } else {
                let gap = gap_before(zone, next);
                prop_assert!(
                    s.is_fixed_time() && gap.iter().any(|w| expression.matches(*w)),
                    "{} in {}: {} ({}) does not match, after {}; gap before it: {:?}",
                    text, zone, next, wall, cursor, gap
                );
            }
            cursor = next;
        }
    }

    /// Within half a day of a clock change, `next_after` fires at exactly the instants the rule
    /// gives: none missed, none extra.
    #[test]
    fn around_a_change_next_after_fires_exactly_where_the_rule_says(
        expression in expression(),
        zone in prop::sample::select(CHANGING_ZONES.as_slice()),
        which in any::<Index>(),
        shift in -3600i64..=3600,
        anchor in anchor(),
    ) {
        let changes = transitions(zone);
        let change = changes[which.index(changes.len())];
        let expression = match anchor {
            Some(minutes) => anchored(expression, zone, change, minutes),
            None => expression,
        };
        let Some(s) = parse_generated(&expression, zone)? else { return Ok(()) };
        let at = change + Duration::seconds(shift);
        let (after, until) = (at - Duration::hours(6), at + Duration::hours(6));
        prop_assert_eq!(
            fires_between(&s, after, until),
            rule_fires(&expression, zone, after, until),
            "{} in {} over ({}, {}]", expression.text(), zone, after, until
        );
    }

    /// A daily wall time near a change (up to two hours either side of the wall clock there, so
    /// often in the gap or the repeated hour) fires once each local day, where the rule says.
    #[test]
    fn a_daily_wall_time_near_a_change_fires_once_a_day_at_the_rule_instant(
        zone in prop::sample::select(CHANGING_ZONES.as_slice()),
        which in any::<Index>(),
        minutes in -120i64..=120,
        day_of_week in prop_oneof![3 => Just(Field::Any), 1 => field(0, 7)],
    ) {
        let changes = transitions(zone);
        let at = changes[which.index(changes.len())];
        let wall_at = wall_at_change(zone, at) + Duration::minutes(minutes);
        let expression = Expression {
            minute: Field::Value(wall_at.minute()),
            hour: Field::Value(wall_at.hour()),
            day_of_month: Field::Any,
            month: Field::Any,
            day_of_week,
        };
        let s = schedule(&expression.text(), zone.name());
        prop_assert!(s.is_fixed_time());
        let change_day = at.with_timezone(&zone).date_naive();
        let first_day = change_day - Duration::days(2);
        let last_day = change_day + Duration::days(2);
        let mut expected = Vec::new();
        let mut day = first_day;
        while day <= last_day {
            if expression.date_matches(day) {
                expected.push(daily_fire(zone, day, wall_at.hour(), wall_at.minute()));
            }
            day = day.succ_opt().expect("a next day");
        }
        let after = local_day_start(zone, first_day) - Duration::seconds(1);
        let until = local_day_start(zone, last_day + Duration::days(1)) - Duration::seconds(1);
        prop_assert_eq!(
            fires_between(&s, after, until),
            expected,
            "{} in {} around {}", expression.text(), zone, at
        );
    }

    /// Enumerating slots backwards gives the same instants as stepping forwards, near changes.
    #[test]
    fn slots_between_around_a_change_is_repeated_next_after(
        expression in expression(),
        zone in prop::sample::select(CHANGING_ZONES.as_slice()),
        which in any::<Index>(),
        shift in -3600i64..=3600,
        anchor in anchor(),
        cap in 1usize..=40,
    ) {
        let changes = transitions(zone);
        let change = changes[which.index(changes.len())];
        let expression = match anchor {
            Some(minutes) => anchored(expression, zone, change, minutes),
            None => expression,
        };
        let Some(s) = parse_generated(&expression, zone)? else { return Ok(()) };
        let at = change + Duration::seconds(shift);
        let (after, until) = (at - Duration::hours(6), at + Duration::hours(6));
        let stepped = fires_between(&s, after, until);
        let text = expression.text();
        let all = s.slots_between(after, until, 100_000);
        prop_assert_eq!(&all.instants, &stepped, "{} in {} over ({}, {}]", text, zone, after, until);
        prop_assert!(!all.older_left_out);
        let capped = s.slots_between(after, until, cap);
        prop_assert_eq!(
            capped.instants.as_slice(),
            &stepped[stepped.len().saturating_sub(cap)..],
            "{} in {} over ({}, {}], newest {}", text, zone, after, until, cap
        );
        prop_assert_eq!(capped.older_left_out, stepped.len() > cap);
    }
}
