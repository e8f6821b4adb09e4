//! Cron schedules across DST in real zones, with fixed instants, and properties of `next_after`
//! over random expressions, zones and instants.
//!
//! The rule (DESIGN.md §2 "Schedule"): a wall time that does not exist (spring forward) fires
//! once, at the first instant after the gap; a wall time that occurs twice (fall back) fires
//! once, at its first occurrence; fixed-interval schedules keep their interval.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use panda_core::CronSchedule;
use proptest::prelude::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|err| panic!("{s}: {err}"))
}

fn schedule(expression: &str, zone: &str) -> CronSchedule {
    CronSchedule::parse(expression, zone).unwrap_or_else(|err| panic!("{expression}: {err}"))
}

/// The next `n` fire times after `from`.
fn fires(s: &CronSchedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(n);
    let mut cursor = from;
    for _ in 0..n {
        let next = s.next_after(cursor).expect("a next fire time");
        out.push(next);
        cursor = next;
    }
    out
}

/// Daily schedules on the days the clocks change: (expression, zone, search from, expected next
/// three fire times, what the case shows).
#[test]
fn daily_schedules_fire_once_on_the_days_the_clocks_change() {
    let cases: &[(&str, &str, &str, [&str; 3], &str)] = &[
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            [
                "2026-03-08T07:00:00Z", // 02:30 does not exist: 03:00 EDT, the gap's end
                "2026-03-09T06:30:00Z", // 02:30 EDT
                "2026-03-10T06:30:00Z",
            ],
            "New York spring forward, 02:30 in the gap",
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            [
                "2026-11-01T07:30:00Z", // 02:30 EST, after the repeated hour: once
                "2026-11-02T07:30:00Z",
                "2026-11-03T07:30:00Z",
            ],
            "New York fall back, 02:30 outside the repeated hour",
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            [
                "2026-11-01T05:30:00Z", // 01:30 EDT, the first of two
                "2026-11-02T06:30:00Z", // 01:30 EST
                "2026-11-03T06:30:00Z",
            ],
            "New York fall back, 01:30 occurs twice",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            [
                "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z",
            ],
            "Berlin spring forward",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T12:00:00Z",
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first of two
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ],
            "Berlin fall back, 02:30 occurs twice",
        ),
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            [
                "2026-10-03T15:30:00Z", // 02:15 is in the 30-minute gap: 02:30 +11, its end
                "2026-10-04T15:15:00Z", // 02:15 +11
                "2026-10-05T15:15:00Z",
            ],
            "Lord Howe spring forward by 30 minutes",
        ),
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T00:00:00Z",
            [
                "2026-04-04T14:45:00Z", // 01:45 +11, the first of two
                "2026-04-05T15:15:00Z", // 01:45 +10:30
                "2026-04-06T15:15:00Z",
            ],
            "Lord Howe fall back by 30 minutes",
        ),
        (
            "30 2 * * *",
            "Asia/Kolkata",
            "2026-03-07T00:00:00Z",
            [
                "2026-03-07T21:00:00Z", // 02:30 IST, every day alike
                "2026-03-08T21:00:00Z",
                "2026-03-09T21:00:00Z",
            ],
            "Kolkata has no DST",
        ),
    ];
    for (expression, zone, from, expected, what) in cases {
        let s = schedule(expression, zone);
        assert!(s.is_fixed_time(), "{what}");
        let expected: Vec<_> = expected.iter().map(|t| utc(t)).collect();
        assert_eq!(fires(&s, utc(from), 3), expected, "{what}");
    }
}

/// Interval schedules across each change: every gap between consecutive fires, in seconds,
/// over a window of hours around it.
#[test]
fn interval_schedules_keep_their_interval_across_the_changes() {
    let cases: &[(&str, &str, &str, usize, i64, &str)] = &[
        (
            "*/15 * * * *",
            "America/New_York",
            "2026-03-08T05:00:00Z",
            16,
            900,
            "NY spring",
        ),
        (
            "*/15 * * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            16,
            900,
            "NY fall",
        ),
        (
            "*/15 * * * *",
            "Europe/Berlin",
            "2026-03-29T00:00:00Z",
            16,
            900,
            "Berlin spring",
        ),
        (
            "*/15 * * * *",
            "Europe/Berlin",
            "2026-10-24T23:00:00Z",
            16,
            900,
            "Berlin fall",
        ),
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-10-03T14:00:00Z",
            16,
            900,
            "LH spring",
        ),
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-04-04T13:30:00Z",
            16,
            900,
            "LH fall",
        ),
        (
            "@hourly",
            "America/New_York",
            "2026-03-08T04:00:00Z",
            6,
            3600,
            "NY spring",
        ),
        (
            "@hourly",
            "America/New_York",
            "2026-11-01T03:00:00Z",
            6,
            3600,
            "NY fall",
        ),
        (
            "@hourly",
            "Europe/Berlin",
            "2026-03-28T22:00:00Z",
            6,
            3600,
            "Berlin spring",
        ),
        (
            "@hourly",
            "Europe/Berlin",
            "2026-10-24T22:00:00Z",
            6,
            3600,
            "Berlin fall",
        ),
    ];
    for (expression, zone, from, n, interval, what) in cases {
        let s = schedule(expression, zone);
        assert!(!s.is_fixed_time(), "{what}");
        let times = fires(&s, utc(from), *n);
        let gaps: Vec<i64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        assert!(
            gaps.iter().all(|g| g == interval),
            "{expression} in {zone} ({what}): gaps {gaps:?} from {times:?}"
        );
    }
}

/// A wall-clock `:00` cannot be an hour apart in real time across a 30-minute shift: `@hourly`
/// in Lord Howe fires at each wall `:00` that exists, once each.
#[test]
fn hourly_across_a_thirty_minute_shift_fires_at_each_wall_hour_once() {
    let s = schedule("@hourly", "Australia/Lord_Howe");
    assert_eq!(
        fires(&s, utc("2026-10-03T13:00:00Z"), 4),
        [
            utc("2026-10-03T13:30:00Z"), // 00:00 +10:30
            utc("2026-10-03T14:30:00Z"), // 01:00 +10:30; 02:00 does not exist
            utc("2026-10-03T16:00:00Z"), // 03:00 +11
            utc("2026-10-03T17:00:00Z"),
        ]
    );
    assert_eq!(
        fires(&s, utc("2026-04-04T13:00:00Z"), 4),
        [
            utc("2026-04-04T13:00:00Z") + chrono::Duration::hours(1), // 01:00 +11
            utc("2026-04-04T15:30:00Z"), // 02:00 +10:30; 01:30-02:00 repeated, no :00 in it
            utc("2026-04-04T16:30:00Z"),
            utc("2026-04-04T17:30:00Z"),
        ]
    );
}

#[test]
fn slots_between_over_a_dst_day_are_the_successive_next_fire_times() {
    for (expression, zone, day) in [
        ("*/10 * * * *", "America/New_York", "2026-03-08"),
        ("*/10 * * * *", "America/New_York", "2026-11-01"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-29"),
        ("7 * * * *", "Australia/Lord_Howe", "2026-04-05"),
    ] {
        let s = schedule(expression, zone);
        let from = utc(&format!("{day}T00:00:00Z")) - chrono::Duration::hours(14);
        let until = from + chrono::Duration::hours(48);
        let enumerated = s.slots_between(from, until, 10_000);
        assert!(!enumerated.older_left_out);
        let mut stepped = Vec::new();
        let mut cursor = from;
        while let Some(next) = s.next_after(cursor).filter(|t| *t <= until) {
            stepped.push(next);
            cursor = next;
        }
        assert!(!stepped.is_empty());
        assert_eq!(
            enumerated.instants, stepped,
            "{expression} in {zone} on {day}"
        );
    }
}

// ---- properties ----

/// One field of a generated expression, and an independent matcher for it.
#[derive(Debug, Clone)]
enum Field {
    Any,
    Step(u32),
    Value(u32),
    Range(u32, u32),
    List(u32, u32),
}

impl Field {
    fn text(&self) -> String {
        match self {
            Self::Any => "*".into(),
            Self::Step(n) => format!("*/{n}"),
            Self::Value(v) => v.to_string(),
            Self::Range(a, b) => format!("{a}-{b}"),
            Self::List(a, b) => format!("{a},{b}"),
        }
    }

    /// Whether `value` matches; `min` is the field's lowest value (steps count from it).
    fn matches(&self, value: u32, min: u32) -> bool {
        match *self {
            Self::Any => true,
            Self::Step(n) => (value - min).is_multiple_of(n),
            Self::Value(v) => value == v,
            Self::Range(a, b) => (a..=b).contains(&value),
            Self::List(a, b) => value == a || value == b,
        }
    }

    fn restricted(&self) -> bool {
        !matches!(self, Self::Any)
    }
}

fn field(min: u32, max: u32) -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::Any),
        (2..=(max - min).min(30)).prop_map(Field::Step),
        (min..=max).prop_map(Field::Value),
        (min..=max, min..=max).prop_map(|(a, b)| Field::Range(a.min(b), a.max(b))),
        (min..=max, min..=max).prop_map(|(a, b)| Field::List(a, b)),
    ]
}

#[derive(Debug, Clone)]
struct Expression {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Expression {
    fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.minute.text(),
            self.hour.text(),
            self.dom.text(),
            self.month.text(),
            self.dow.text()
        )
    }

    /// The wall time matches, with the Vixie rule for the two day fields.
    fn matches<Z: TimeZone>(&self, local: &DateTime<Z>) -> bool {
        let dow = local.weekday().num_days_from_sunday();
        let dow_matches = self.dow.matches(dow, 0) || (dow == 0 && self.dow.matches(7, 0));
        let dom_matches = self.dom.matches(local.day(), 1);
        let day = if self.dom.restricted() && self.dow.restricted() {
            dom_matches || dow_matches
        } else {
            dom_matches && dow_matches
        };
        local.second() == 0
            && self.minute.matches(local.minute(), 0)
            && self.hour.matches(local.hour(), 0)
            && self.month.matches(local.month(), 1)
            && day
    }
}

fn expression() -> impl Strategy<Value = Expression> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 28),
        field(1, 12),
        field(0, 7),
    )
        .prop_map(|(minute, hour, dom, month, dow)| Expression {
            minute,
            hour,
            dom,
            month,
            dow,
        })
}

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

/// Whether `t` is the first instant after a spring-forward gap: the instant just before it has
/// a smaller UTC offset.
fn ends_a_gap(t: DateTime<Utc>, zone: Tz) -> bool {
    use chrono::Offset;
    let offset = |i: DateTime<Utc>| i.with_timezone(&zone).offset().fix().local_minus_utc();
    offset(t - chrono::Duration::seconds(1)) < offset(t)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `next_after` is strictly increasing, and each result's wall time in the zone matches the
    /// expression, except the first instant after a gap, which stands for a time in the gap.
    #[test]
    fn next_after_is_increasing_and_matches_the_expression(
        expression in expression(),
        zone in 0..ZONES.len(),
        start in 1_577_836_800i64..1_893_456_000i64, // 2020 to 2030
    ) {
        let zone = ZONES[zone];
        let text = expression.text();
        let s = match CronSchedule::parse(&text, zone.name()) {
            Ok(s) => s,
            // A valid expression may never fire (a 30th of February): refused, not looped on.
            Err(panda_core::CronError::Never(_)) => return Ok(()),
            Err(err) => return Err(TestCaseError::fail(format!("{text}: {err}"))),
        };
        let mut cursor = Utc.timestamp_opt(start, 0).single().expect("an instant");
        for _ in 0..20 {
            let Some(next) = s.next_after(cursor) else { break };
            prop_assert!(next > cursor, "{} in {}: {} after {}", text, zone, next, cursor);
            let local = next.with_timezone(&zone);
            prop_assert!(
                expression.matches(&local) || (s.is_fixed_time() && ends_a_gap(next, zone)),
                "{} in {}: {} ({}) does not match",
                text,
                zone,
                next,
                local
            );
            cursor = next;
        }
    }
}
