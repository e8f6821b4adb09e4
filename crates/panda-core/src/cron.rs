//! Cron expressions read in a time zone: parsing with errors that name the field, the next fire
//! time after an instant (DST included), and bounded enumeration of slots.
//!
//! Matching is croner's: 5-field Vixie syntax (day-of-month OR day-of-week when both are
//! restricted), names, ranges, steps, lists, `@yearly`…`@hourly`, an optional leading seconds
//! field. Across DST, a schedule whose second, minute and hour fields name wall times (no `*`:
//! `30 2 * * *`, `30 1,2 * * *`) is *fixed-time*: a wall time in the spring-forward gap fires
//! once at the first instant after the gap, and a wall time that occurs twice fires once, at its
//! first occurrence. Every other schedule is an *interval*: it fires at every real instant whose
//! wall time matches, so `*/15 * * * *` keeps 15 real minutes across both changes. croner
//! counts only single values as fixed-time, so lists and ranges of wall times are searched here,
//! wall time by wall time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A schedule that cannot be used, with the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// One field of the expression is wrong: `minute: 61 is out of range 0-59`.
    #[error("{field}: {problem}")]
    Field {
        /// The field's name (`second`, `minute`, `hour`, `day-of-month`, `month`,
        /// `day-of-week`).
        field: &'static str,
        /// What is wrong, naming the bad value.
        problem: String,
    },
    /// The expression as a whole is wrong (field count, an unknown `@macro`).
    #[error("{0}")]
    Expression(String),
    /// Not an IANA time zone name.
    #[error("unknown time zone {name:?}{hint}")]
    TimeZone {
        /// The name as given.
        name: String,
        /// A suggestion, with its leading separator, or empty.
        hint: String,
    },
    /// A valid expression that matches no instant (`0 0 30 2 *`: February has no 30th).
    #[error("{0:?} never fires: no date matches it")]
    Never(String),
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
    /// Its second, minute and hour fields name wall times (no `*`), so each wall time fires
    /// once a day across DST, though croner counts only single values as fixed-time.
    wall_times: bool,
    /// How far every fire time is moved later (a job's jitter offset; zero for none).
    shift: chrono::Duration,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expression", &self.expression)
            .field("timezone", &self.timezone.name())
            .field("shift", &self.shift)
            .finish()
    }
}

/// Fields in the order they are written, with their ranges, for a 6-field expression.
const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

const MACROS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronSchedule {
    /// Parses `expression` read in the IANA zone `timezone`.
    ///
    /// # Errors
    ///
    /// [`CronError`] naming the field and the bad value, an unknown time zone, or an expression
    /// that never fires.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, CronError> {
        let timezone = parse_timezone(timezone)?;
        let trimmed = expression.trim();
        if trimmed.is_empty() {
            return Err(CronError::Expression(
                "the schedule is empty; give a cron expression such as \"0 5 * * *\"".into(),
            ));
        }
        if trimmed.starts_with('@') {
            if !MACROS.iter().any(|m| m.eq_ignore_ascii_case(trimmed)) {
                return Err(CronError::Expression(format!(
                    "unknown macro {trimmed:?}; use one of {}",
                    MACROS.join(", ")
                )));
            }
        } else {
            check_fields(trimmed)?;
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(trimmed)
            .map_err(|err| CronError::Expression(format!("{trimmed:?}: {err}")))?;
        let schedule = Self {
            expression: trimmed.to_owned(),
            wall_times: names_wall_times(trimmed),
            cron,
            timezone,
            shift: chrono::Duration::zero(),
        };
        // Some valid fields never meet (the 31st of a 30-day month); the search for such a
        // date fails. Every schedule that fires at all fires within 8 years (Feb 29 across a
        // skipped leap year), so one search from a fixed instant tells.
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if probe.is_some_and(|probe| schedule.next_after(probe).is_none()) {
            return Err(CronError::Never(schedule.expression));
        }
        Ok(schedule)
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The same schedule with every fire time moved `shift` later: a cronjob's jitter offset
    /// (see `Schedule::offset`). Slots, `next`, catch-up and missed-slot alerts all count in
    /// the moved times.
    #[must_use]
    pub fn shifted(mut self, shift: std::time::Duration) -> Self {
        self.shift = chrono::Duration::from_std(shift).unwrap_or_else(|_| chrono::Duration::zero());
        self
    }

    /// How far its fire times are moved later (zero for none).
    pub fn shift(&self) -> std::time::Duration {
        self.shift.to_std().unwrap_or_default()
    }

    /// The time zone the expression is read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// Whether the schedule names wall times (its second, minute and hour fields have no `*`:
    /// `30 2 * * *`, `30 1,2 * * *`, `0 9-17 * * *`), which decides how it crosses DST: each
    /// wall time fires once, at its first occurrence, or at the end of a gap it falls in. Any
    /// other schedule is an interval and fires at every real instant whose wall time matches.
    pub fn is_fixed_time(&self) -> bool {
        self.wall_times
    }

    /// Whether croner's own search applies: croner treats only single values as fixed-time.
    fn croner_decides(&self) -> bool {
        !self.wall_times || self.cron.determine_job_type() == croner::JobType::FixedTime
    }

    /// The first fire time strictly after `after`, or `None` when there is none before the
    /// search limit (year 5000).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let unshifted = after.checked_sub_signed(self.shift)?;
        self.next_unshifted(unshifted)
            .and_then(|t| t.checked_add_signed(self.shift))
    }

    /// [`CronSchedule::next_after`] of the expression itself, before any shift.
    fn next_unshifted(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.croner_decides() {
            let local = after.with_timezone(&self.timezone);
            return self
                .cron
                .find_next_occurrence(&local, false)
                .ok()
                .map(|t| t.with_timezone(&Utc));
        }
        // Wall times in order; each stands for its first instant, which only grows with it,
        // so the first one past `after` is the answer.
        let mut wall = after.with_timezone(&self.timezone).naive_local();
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let instant = self.instant_of(wall)?;
            if instant > after {
                return Some(instant);
            }
        }
    }

    /// The last fire time at or before `at`, or `None`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous(at, true)
    }

    /// The last fire time before `at` (or at it, when `inclusive`).
    fn previous(&self, at: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let unshifted = at.checked_sub_signed(self.shift)?;
        self.previous_unshifted(unshifted, inclusive)
            .and_then(|t| t.checked_add_signed(self.shift))
    }

    /// [`CronSchedule::previous`] of the expression itself, before any shift.
    fn previous_unshifted(&self, at: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        if self.croner_decides() {
            let local = at.with_timezone(&self.timezone);
            return self
                .cron
                .find_previous_occurrence(&local, inclusive)
                .ok()
                .map(|t| t.with_timezone(&Utc));
        }
        // In a repeated hour a wall time later than `at`'s own may have its first instant
        // before `at`: start the walk back past any clock change (none is over 3 hours).
        let mut wall = at.with_timezone(&self.timezone).naive_local() + chrono::Duration::hours(3);
        loop {
            wall = self.cron.find_previous_occurrence(&wall, false).ok()?;
            let instant = self.instant_of(wall)?;
            if instant < at || (inclusive && instant == at) {
                return Some(instant);
            }
        }
    }

    /// The instant a wall time fires at: its first occurrence, or, in a spring-forward gap,
    /// the first instant after the gap.
    fn instant_of(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        let mut probe = wall;
        // A gap ends at a whole minute; no clock jumps forward by a day.
        for _ in 0..=24 * 60 {
            match self.timezone.from_local_datetime(&probe) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    return Some(t.with_timezone(&Utc));
                }
                LocalResult::None => {
                    probe =
                        probe.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
                }
            }
        }
        None
    }

    /// The fire times in `(after, until]`, newest last, at most `cap` of them: when there are
    /// more, the newest `cap` are returned and [`Slots::older_left_out`] says so.
    pub fn slots_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: usize) -> Slots {
        let mut newest_first = Vec::new();
        let mut cursor = self.latest_at_or_before(until);
        let mut older_left_out = false;
        while let Some(slot) = cursor.filter(|slot| *slot > after) {
            if newest_first.len() == cap {
                older_left_out = true;
                break;
            }
            newest_first.push(slot);
            cursor = self.previous(slot, false);
        }
        newest_first.reverse();
        Slots {
            instants: newest_first,
            older_left_out,
        }
    }
}

/// Whether an expression's second, minute and hour fields name wall times: none of them has a
/// `*` (or `?`). Macros: `@hourly` is an interval; the others are one wall time a day.
fn names_wall_times(expression: &str) -> bool {
    if expression.starts_with('@') {
        return !expression.eq_ignore_ascii_case("@hourly");
    }
    let parts: Vec<&str> = expression.split_whitespace().collect();
    let times = if parts.len() == 6 {
        &parts[..3]
    } else {
        &parts[..2]
    };
    times.iter().all(|field| !field.contains(['*', '?']))
}

/// Slots enumerated by [`CronSchedule::slots_between`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// The instants, oldest first.
    pub instants: Vec<DateTime<Utc>>,
    /// Whether older slots in the range were left out by the cap.
    pub older_left_out: bool,
}

fn parse_timezone(name: &str) -> Result<Tz, CronError> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let hint = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .map(|tz| format!(" (did you mean {:?}?)", tz.name()))
        .unwrap_or_else(|| "; use an IANA name such as \"Europe/Berlin\" or \"UTC\"".to_owned());
    Err(CronError::TimeZone {
        name: name.to_owned(),
        hint,
    })
}

/// Checks each field's syntax and ranges, so an error names the field and the value; croner
/// then parses the whole expression.
fn check_fields(expression: &str) -> Result<(), CronError> {
    let parts: Vec<&str> = expression.split_whitespace().collect();
    let fields: &[(&str, u32, u32)] = match parts.len() {
        5 => &FIELDS[1..],
        6 => &FIELDS,
        n => {
            return Err(CronError::Expression(format!(
                "{expression:?} has {n} fields; use 5 (minute hour day-of-month month \
                 day-of-week) or 6 with seconds first"
            )));
        }
    };
    for (part, &(field, min, max)) in parts.iter().zip(fields) {
        check_field(part, field, min, max)
            .map_err(|problem| CronError::Field { field, problem })?;
    }
    Ok(())
}

fn check_field(part: &str, field: &str, min: u32, max: u32) -> Result<(), String> {
    for item in part.split(',') {
        if item.is_empty() {
            return Err(format!("{part:?} has an empty list item"));
        }
        // `L`, `W` and `#` (last, nearest weekday, nth weekday) are croner's to check.
        let special = matches!(field, "day-of-month" | "day-of-week")
            && item.contains(['L', 'l', 'W', 'w', '#']);
        if special {
            continue;
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step {step:?} in {item:?} is not a number"))?;
            if step == 0 || step > max {
                return Err(format!("step {step} is out of range 1-{max}"));
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (
                value(low, field, min, max)?,
                Some(value(high, field, min, max)?),
            ),
            None => (value(range, field, min, max)?, None),
        };
        if let Some(high) = high
            && high < low
        {
            return Err(format!(
                "range {range} runs backwards; write the smaller value first"
            ));
        }
    }
    Ok(())
}

fn value(text: &str, field: &str, min: u32, max: u32) -> Result<u32, String> {
    let named = match field {
        "month" => MONTH_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(text))
            .map(|i| i + 1),
        "day-of-week" => DAY_NAMES.iter().position(|n| n.eq_ignore_ascii_case(text)),
        _ => None,
    };
    let number = match named {
        Some(index) => u32::try_from(index).map_err(|_| format!("{text:?} is out of range"))?,
        None => text.parse().map_err(|_| {
            if text.is_empty() {
                "a range is missing a value".to_owned()
            } else {
                format!("{text:?} is not a number{}", names_hint(field))
            }
        })?,
    };
    if !(min..=max).contains(&number) {
        return Err(format!("{number} is out of range {min}-{max}"));
    }
    Ok(number)
}

fn names_hint(field: &str) -> &'static str {
    match field {
        "month" => " or a month name (JAN-DEC)",
        "day-of-week" => " or a day name (SUN-SAT)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|err| panic!("{s}: {err}"))
    }

    #[test]
    fn parse_errors_name_the_field_and_the_value() {
        let cases: &[(&str, &str)] = &[
            ("61 * * * *", "minute: 61 is out of range 0-59"),
            ("* 24 * * *", "hour: 24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
            ("* * * 13 *", "month: 13 is out of range 1-12"),
            ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
            ("60 * * * * *", "second: 60 is out of range 0-59"),
            ("*/0 * * * *", "minute: step 0 is out of range 1-59"),
            (
                "5-2 * * * *",
                "minute: range 5-2 runs backwards; write the smaller value first",
            ),
            ("x * * * *", "minute: \"x\" is not a number"),
            (
                "* * * FOO *",
                "month: \"FOO\" is not a number or a month name (JAN-DEC)",
            ),
            ("1,,2 * * * *", "minute: \"1,,2\" has an empty list item"),
        ];
        for (expression, message) in cases {
            match CronSchedule::parse(expression, "UTC") {
                Err(err) => assert_eq!(err.to_string(), *message, "{expression}"),
                Ok(_) => panic!("{expression} parsed"),
            }
        }
    }

    #[test]
    fn whole_expression_errors_say_what_to_write() {
        for (expression, starts) in [
            ("", "the schedule is empty"),
            ("* * *", "\"* * *\" has 3 fields"),
            ("@fortnightly", "unknown macro \"@fortnightly\""),
        ] {
            let err = CronSchedule::parse(expression, "UTC").expect_err(expression);
            assert!(err.to_string().starts_with(starts), "{expression}: {err}");
        }
        let never = CronSchedule::parse("0 0 30 2 *", "UTC").expect_err("Feb 30");
        assert_eq!(never, CronError::Never("0 0 30 2 *".into()));
    }

    #[test]
    fn unknown_time_zones_are_refused_with_a_hint() {
        let err = CronSchedule::parse("* * * * *", "europe/berlin").expect_err("case");
        assert_eq!(
            err.to_string(),
            "unknown time zone \"europe/berlin\" (did you mean \"Europe/Berlin\"?)"
        );
        let err = CronSchedule::parse("* * * * *", "Mars/Olympus").expect_err("unknown");
        assert!(err.to_string().contains("use an IANA name"), "{err}");
    }

    #[test]
    fn accepted_syntax() {
        for expression in [
            "0 5 * * *",
            "*/15 * * * *",
            "0 9-17/2 * * MON-FRI",
            "0 0 1,15 * *",
            "0 0 * JAN,JUL SUN",
            "0 0 * * 7",
            "30 0 5 * * *",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@HOURLY",
            "0 0 L * *",
            "0 0 * * 5#2",
        ] {
            CronSchedule::parse(expression, "UTC")
                .unwrap_or_else(|err| panic!("{expression}: {err}"));
        }
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, or any Friday (Vixie), not only Friday the 13th.
        let s = CronSchedule::parse("0 0 13 * FRI", "UTC").expect("parse");
        let from = utc("2026-11-01T00:00:00Z");
        let fires: Vec<_> = s
            .slots_between(from, utc("2026-11-30T00:00:00Z"), 100)
            .instants;
        assert_eq!(
            fires,
            [
                utc("2026-11-06T00:00:00Z"),
                utc("2026-11-13T00:00:00Z"),
                utc("2026-11-20T00:00:00Z"),
                utc("2026-11-27T00:00:00Z"),
            ]
        );
    }

    #[test]
    fn slots_between_is_bounded_and_keeps_the_newest() {
        let s = CronSchedule::parse("* * * * *", "UTC").expect("parse");
        let after = utc("2026-11-28T00:00:00Z");
        let all = s.slots_between(after, utc("2026-11-28T00:05:00Z"), 10);
        assert_eq!(all.instants.len(), 5, "(after, until]");
        assert_eq!(all.instants.first(), Some(&utc("2026-11-28T00:01:00Z")));
        assert!(!all.older_left_out);
        let capped = s.slots_between(after, utc("2026-11-29T00:00:00Z"), 3);
        assert_eq!(
            capped.instants,
            [
                utc("2026-11-28T23:58:00Z"),
                utc("2026-11-28T23:59:00Z"),
                utc("2026-11-29T00:00:00Z"),
            ]
        );
        assert!(capped.older_left_out);
    }
}
