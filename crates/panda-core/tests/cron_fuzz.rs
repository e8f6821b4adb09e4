//! Fuzzing the cron parser and the next-fire walk on stable Rust, under `cargo test`: arbitrary
//! text, structured expressions (ranges, steps, lists, names, `L`, `W`, `#`, seconds, macros) in
//! every time zone chrono-tz knows, at arbitrary instants and around daylight-saving changes.
//!
//! What must hold: nothing panics; a parse error is an error, never a schedule that cannot
//! answer; `next_after(t) > t`, and successive fires strictly increase; `latest_at_or_before(t)
//! <= t`; a schedule that can never fire (`0 0 30 2 *`) is refused as `Never` at parse time, and
//! the walk gives up instead of hanging (a hang guard fails the test after a minute).
//!
//! `PANDA_PROPTEST_CASES` sets the number of cases of each property (256 by default; an eighth
//! of them for the never-firing dates, each of which searches to year 5000); a long
//! session is `PANDA_PROPTEST_CASES=100000 cargo test --release -p panda-core --test cron_fuzz`.

use std::sync::mpsc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::{TZ_VARIANTS, Tz};
use panda_core::{CronError, CronSchedule};
use proptest::prelude::*;

fn cases() -> u32 {
    match std::env::var("PANDA_PROPTEST_CASES") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("PANDA_PROPTEST_CASES={n:?} is not a number of cases")),
        Err(_) => 256,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // A failure is reported with its inputs; it is not written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f` on a thread of its own and fails if it has not returned within a minute: a walk
/// that never ends is a failure, not a stuck test run. A hang guard, not a timing assertion.
fn within_a_minute<T: Send + 'static>(what: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(StdDuration::from_secs(60)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within a minute"),
        // The thread panicked: its message is already printed.
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// A time zone: any of chrono-tz's.
fn zone() -> impl Strategy<Value = Tz> {
    (0..TZ_VARIANTS.len()).prop_map(|i| TZ_VARIANTS[i])
}

/// An instant: anywhere from year 1 to 9999 (what an RFC 3339 timestamp can say), mostly in
/// this century, or in the small hours of a day in the months where clocks change.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let any_second = (-62_135_596_800i64..253_402_300_799)
        .prop_map(|s| DateTime::from_timestamp(s, 0).expect("within chrono's range"));
    let this_century = (946_684_800i64..4_102_444_800)
        .prop_map(|s| DateTime::from_timestamp(s, 0).expect("within chrono's range"));
    let near_a_change = (
        1990i32..2100,
        prop::sample::select(vec![3u32, 4, 9, 10, 11]),
        1u32..=31,
        0i64..6 * 3600,
    )
        .prop_map(|(year, month, day, seconds)| {
            let date = NaiveDate::from_ymd_opt(year, month, day.min(28)).expect("a date");
            Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
                + Duration::seconds(seconds)
        });
    prop_oneof![1 => any_second, 3 => this_century, 3 => near_a_change]
}

/// One field's text: `*`, `?`, a value, a range, a step, a list, a name, and for the day fields
/// `L`, `W` and `#`, with out-of-range and malformed values among them.
fn field(
    min: u32,
    max: u32,
    names: &'static [&'static str],
    day: DayField,
) -> BoxedStrategy<String> {
    let value = move || {
        prop_oneof![
            6 => (min..=max).prop_map(|v| v.to_string()),
            1 => (0u32..100).prop_map(|v| v.to_string()),
            1 => if names.is_empty() {
                Just(String::from("x")).boxed()
            } else {
                prop::sample::select(names).prop_map(str::to_owned).boxed()
            },
        ]
    };
    let range = (value(), value()).prop_map(|(a, b)| format!("{a}-{b}"));
    let step = (
        prop_oneof![
            Just("*".to_owned()),
            value(),
            (value(), value()).prop_map(|(a, b)| format!("{a}-{b}"))
        ],
        0u32..70,
    )
        .prop_map(|(base, step)| format!("{base}/{step}"));
    let special = match day {
        DayField::Month => prop_oneof![
            Just("L".to_owned()),
            Just("LW".to_owned()),
            (1u32..=32).prop_map(|d| format!("{d}W")),
            (1u32..=5).prop_map(|d| format!("L-{d}")),
        ]
        .boxed(),
        DayField::Week => prop_oneof![
            (0u32..=8).prop_map(|d| format!("{d}L")),
            (0u32..=8, 0u32..=6).prop_map(|(d, n)| format!("{d}#{n}")),
            prop::sample::select(names).prop_map(|n| format!("{n}#2")),
        ]
        .boxed(),
        DayField::Neither => Just("*".to_owned()).boxed(),
    };
    let item = prop_oneof![
        4 => value(),
        2 => range,
        2 => step,
        1 => special,
    ];
    let list = prop::collection::vec(item.clone(), 2..4).prop_map(|items| items.join(","));
    prop_oneof![
        4 => Just("*".to_owned()),
        1 => Just("?".to_owned()),
        6 => item,
        2 => list,
        1 => Just(String::new()),
    ]
    .boxed()
}

#[derive(Debug, Clone, Copy)]
enum DayField {
    Month,
    Week,
    Neither,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "jan",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "fri"];

/// A cron expression: five fields or six (seconds first), or a macro, near-valid on purpose.
fn expression() -> impl Strategy<Value = String> {
    let five = (
        field(0, 59, &[], DayField::Neither),
        field(0, 23, &[], DayField::Neither),
        field(1, 31, &[], DayField::Month),
        field(1, 12, MONTHS, DayField::Neither),
        field(0, 7, DAYS, DayField::Week),
    )
        .prop_map(|(mi, h, dom, mo, dow)| format!("{mi} {h} {dom} {mo} {dow}"));
    let six = (field(0, 59, &[], DayField::Neither), five.clone())
        .prop_map(|(s, rest)| format!("{s} {rest}"));
    let macros = prop::sample::select(vec![
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@hourly",
        "@HOURLY",
        "@reboot",
        "@",
        "@daily x",
    ])
    .prop_map(str::to_owned);
    prop_oneof![6 => five, 2 => six, 1 => macros]
}

/// Text of cron's alphabet, and anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[0-9*/,?LW#@ A-Za-z-]{0,40}",
        1 => any::<String>(),
        1 => "[0-9 ]{0,12}[\u{0}-\u{7f}\u{a0}\u{2000}-\u{200b}\u{1f600}]{0,6}",
    ]
}

/// Checks the walk of a parsed schedule from `start`: each fire after the last, the latest
/// slot at or before an instant not after it, and the slot enumeration bounded.
fn check_walk(s: &CronSchedule, start: DateTime<Utc>) -> Result<(), TestCaseError> {
    let mut cursor = start;
    for _ in 0..8 {
        let Some(next) = s.next_after(cursor) else {
            break;
        };
        prop_assert!(next > cursor, "{s:?}: next_after({cursor}) = {next}");
        cursor = next;
    }
    if let Some(latest) = s.latest_at_or_before(start) {
        prop_assert!(
            latest <= start,
            "{s:?}: latest_at_or_before({start}) = {latest}"
        );
    }
    let until = start + Duration::days(2);
    let slots = s.slots_between(start, until, 50);
    prop_assert!(slots.instants.len() <= 50);
    prop_assert!(
        slots.instants.windows(2).all(|w| w[0] < w[1]),
        "{s:?}: {slots:?}"
    );
    prop_assert!(
        slots.instants.iter().all(|t| start < *t && *t <= until),
        "{s:?}: {slots:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Any text, in any zone name: an answer, never a panic.
    #[test]
    fn any_text_parses_or_is_refused(expression in text(), zone in text()) {
        let what = format!("parse({expression:?}, {zone:?})");
        let _ = within_a_minute(what, move || CronSchedule::parse(&expression, &zone).map(|_| ()));
    }

    /// Near-valid expressions in every zone: parsed ones walk forward from any instant.
    #[test]
    fn structured_expressions_walk_forward_in_every_zone(
        expression in expression(),
        zone in zone(),
        start in instant(),
    ) {
        let what = format!("{expression:?} in {} from {start}", zone.name());
        let outcome = within_a_minute(what, move || {
            match CronSchedule::parse(&expression, zone.name()) {
                Ok(s) => check_walk(&s, start),
                Err(CronError::Never(_)) => Ok(()),
                Err(err) => {
                    // An error names what is wrong: not empty, not a debug dump.
                    let message = err.to_string();
                    prop_assert!(!message.is_empty() && !message.contains("Error {"), "{message}");
                    Ok(())
                }
            }
        });
        outcome?;
    }
}

proptest! {
    // Each refusal searches up to year 5000 (a quarter of a second in a debug build): an
    // eighth of the cases.
    #![proptest_config(ProptestConfig { cases: cases().div_ceil(8), ..config() })]

    /// Expressions that name no date that exists are refused as `Never`, in any zone and with
    /// any time of day, and the walk gives up on them instead of hanging.
    #[test]
    fn never_firing_dates_are_refused_not_walked_forever(
        date in prop::sample::select(vec![
            "30 2", "31 2", "30,31 2", "31 4", "31 6", "31 9", "31 11", "31 4,6,9,11",
            "30-31 2", "31 FEB", "30 feb,FEB",
        ]),
        time in prop::sample::select(vec!["0 0", "*/5 *", "59 23", "0 9-17", "30 2", "0,30 1,2"]),
        seconds in prop::option::of(prop::sample::select(vec!["0", "*/10", "59"])),
        zone in zone(),
    ) {
        let expression = match seconds {
            Some(s) => format!("{s} {time} {date} *"),
            None => format!("{time} {date} *"),
        };
        let what = format!("{expression:?} in {}", zone.name());
        let parsed = within_a_minute(what, {
            let expression = expression.clone();
            move || CronSchedule::parse(&expression, zone.name()).map(|_| ())
        });
        prop_assert_eq!(parsed, Err(CronError::Never(expression)));
    }
}
