//! The scheduler's decision, as a pure function: which slots of a cronjob are due at `now`,
//! which of them fire and why the others do not, and when to look again.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cron::CronSchedule;
use crate::job::{CatchUp, Schedule};

/// A slot at most this late is on time: it fires under every catch-up policy. A scheduler
/// that is busy or restarting for a moment does not lose slots.
pub const ON_TIME_GRACE: Duration = Duration::from_secs(60);

/// The most slots one decision looks at; older ones in a longer outage are left out (and the
/// decision says so), so that an outage never ends in a stampede of rows.
pub const MAX_SLOTS_PER_DECISION: usize = 1000;

/// `catch-up all` runs at most this many missed slots, the newest ones.
pub const CATCH_UP_ALL_CAP: usize = 100;

/// Why a slot did not run, recorded with it so that "why didn't it run?" has an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The cronjob was suspended at the slot's time.
    Suspended,
    /// The slot was found later than its starting deadline allows.
    MissedDeadline {
        /// The starting deadline it missed.
        deadline: Duration,
    },
    /// The slot was missed and the policy is `catch-up none`.
    CatchUpNone,
    /// The slot was missed and a later one runs instead (`catch-up latest`).
    Superseded,
    /// The slot was missed and more than [`CATCH_UP_ALL_CAP`] newer ones run (`catch-up all`).
    OverCatchUpCap,
    /// The cronjob's queue was paused at the slot's time (`catch-up none`) or until its
    /// starting deadline passed.
    QueuePaused,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Suspended => f.write_str("suspended"),
            Self::MissedDeadline { deadline } => write!(
                f,
                "missed starting deadline: found more than {} after its time",
                crate::human::exact(*deadline)
            ),
            Self::CatchUpNone => f.write_str("missed: catch-up none runs no missed slot"),
            Self::Superseded => {
                f.write_str("missed: catch-up latest runs only the most recent missed slot")
            }
            Self::OverCatchUpCap => write!(
                f,
                "missed: catch-up all runs at most the {CATCH_UP_ALL_CAP} most recent missed slots"
            ),
            Self::QueuePaused => f.write_str("its queue was paused"),
        }
    }
}

/// What happens to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Enqueue an execution for it.
    Fire,
    /// Record it as skipped, with the reason.
    Skip(SkipReason),
}

/// The decision for one cronjob at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The due slots, oldest first, each with its verdict.
    pub slots: Vec<(DateTime<Utc>, Verdict)>,
    /// Whether due slots older than [`MAX_SLOTS_PER_DECISION`] were left out.
    pub older_left_out: bool,
    /// The next slot after `now`: when to decide again. `None` when the schedule never fires
    /// again.
    pub wake_at: Option<DateTime<Utc>>,
    /// Whether due slots were left out to be decided later (their queue is paused, see
    /// [`decide_paused`]): the decision is to be made again soon, not at `wake_at`.
    pub held: bool,
}

/// Decides the slots of a cronjob in `(since, now]`: `since` is the last slot already recorded
/// (or when the job was created). A pure function of its arguments.
///
/// - Suspended: every due slot is skipped as `suspended`.
/// - A slot at most [`ON_TIME_GRACE`] (and the starting deadline) late is on time and fires.
/// - Missed slots follow the catch-up policy: `latest` fires the newest due slot if it is
///   within the starting deadline; `all` fires every one within the deadline, the newest
///   [`CATCH_UP_ALL_CAP`] at most; `none` fires none.
pub fn decide(
    schedule: &CronSchedule,
    policy: &Schedule,
    suspended: bool,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let due = schedule.slots_between(since, now, MAX_SLOTS_PER_DECISION);
    let deadline = policy.starting_deadline;
    let grace = ON_TIME_GRACE.min(deadline);
    let late = |slot: DateTime<Utc>| (now - slot).to_std().unwrap_or(Duration::ZERO);
    let newest = due.instants.last().copied();
    let mut fired_missed = 0usize;
    // Newest first, so that `all` keeps the newest within its cap.
    let mut slots: Vec<(DateTime<Utc>, Verdict)> = due
        .instants
        .iter()
        .rev()
        .map(|&slot| {
            let verdict = if suspended {
                Verdict::Skip(SkipReason::Suspended)
            } else if late(slot) <= grace {
                Verdict::Fire
            } else if late(slot) > deadline && policy.catch_up != CatchUp::None {
                Verdict::Skip(SkipReason::MissedDeadline { deadline })
            } else {
                match policy.catch_up {
                    CatchUp::None => Verdict::Skip(SkipReason::CatchUpNone),
                    CatchUp::Latest if Some(slot) == newest => Verdict::Fire,
                    CatchUp::Latest => Verdict::Skip(SkipReason::Superseded),
                    CatchUp::All if fired_missed < CATCH_UP_ALL_CAP => {
                        fired_missed += 1;
                        Verdict::Fire
                    }
                    CatchUp::All => Verdict::Skip(SkipReason::OverCatchUpCap),
                }
            };
            (slot, verdict)
        })
        .collect();
    slots.reverse();
    Decision {
        slots,
        older_left_out: due.older_left_out,
        wake_at: schedule.next_after(now),
        held: false,
    }
}

/// Decides the slots of a cronjob in `(since, now]` while its queue is paused, so that a pause
/// is to a cronjob what a node that was down is: its slots are missed, and its catch-up policy
/// says what runs when the queue resumes. A pure function of its arguments.
///
/// - `catch-up none`: every due slot is skipped as `queue paused`.
/// - Otherwise a due slot is held (left out, to be decided again) while it is within its
///   starting deadline: if the queue resumes in time, [`decide`] treats it as a missed slot
///   (`latest` runs the newest); once its deadline passes it is skipped as `queue paused`.
///   Holding keeps the order of slots: only the newest can be held, never one before a slot
///   recorded.
pub fn decide_paused(
    schedule: &CronSchedule,
    policy: &Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let due = schedule.slots_between(since, now, MAX_SLOTS_PER_DECISION);
    let deadline = policy.starting_deadline;
    let within_deadline =
        |slot: DateTime<Utc>| (now - slot).to_std().unwrap_or(Duration::ZERO) <= deadline;
    let mut slots = Vec::with_capacity(due.instants.len());
    let mut held = false;
    for &slot in &due.instants {
        if policy.catch_up != CatchUp::None && within_deadline(slot) {
            // Every later slot is within its deadline too: all of them wait.
            held = true;
            break;
        }
        slots.push((slot, Verdict::Skip(SkipReason::QueuePaused)));
    }
    Decision {
        slots,
        older_left_out: due.older_left_out,
        wake_at: schedule.next_after(now),
        held,
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

    fn policy(catch_up: CatchUp, deadline_secs: u64) -> Schedule {
        Schedule {
            catch_up,
            starting_deadline: Duration::from_secs(deadline_secs),
            ..Schedule::new("*/5 * * * *")
        }
    }

    fn verdicts(decision: &Decision) -> Vec<(String, Verdict)> {
        decision
            .slots
            .iter()
            .map(|(at, v)| (at.format("%H:%M").to_string(), *v))
            .collect()
    }

    use SkipReason::*;
    use Verdict::*;

    #[test]
    fn decisions_table() {
        let every5 = CronSchedule::parse("*/5 * * * *", "UTC").expect("parse");
        let since = utc("2026-11-28T05:00:00Z");
        // (what, policy, suspended, now, expected)
        type Case<'a> = (&'a str, Schedule, bool, &'a str, Vec<(&'a str, Verdict)>);
        let cases: Vec<Case> = vec![
            (
                "nothing due yet",
                policy(CatchUp::Latest, 600),
                false,
                "2026-11-28T05:04:59Z",
                vec![],
            ),
            (
                "a slot found on time fires",
                policy(CatchUp::Latest, 600),
                false,
                "2026-11-28T05:05:00.020Z",
                vec![("05:05", Fire)],
            ),
            (
                "on time fires even under catch-up none",
                policy(CatchUp::None, 600),
                false,
                "2026-11-28T05:05:30Z",
                vec![("05:05", Fire)],
            ),
            (
                "suspended skips every due slot",
                policy(CatchUp::Latest, 600),
                true,
                "2026-11-28T05:10:00Z",
                vec![("05:05", Skip(Suspended)), ("05:10", Skip(Suspended))],
            ),
            (
                "latest: the newest missed slot within the deadline fires, older are superseded",
                policy(CatchUp::Latest, 600),
                false,
                "2026-11-28T05:17:00Z",
                vec![
                    (
                        "05:05",
                        Skip(MissedDeadline {
                            deadline: Duration::from_secs(600),
                        }),
                    ),
                    ("05:10", Skip(Superseded)),
                    ("05:15", Fire),
                ],
            ),
            (
                "latest: the newest missed slot past the deadline is skipped",
                policy(CatchUp::Latest, 60),
                false,
                "2026-11-28T05:12:00Z",
                vec![
                    (
                        "05:05",
                        Skip(MissedDeadline {
                            deadline: Duration::from_secs(60),
                        }),
                    ),
                    (
                        "05:10",
                        Skip(MissedDeadline {
                            deadline: Duration::from_secs(60),
                        }),
                    ),
                ],
            ),
            (
                "none: every missed slot is skipped",
                policy(CatchUp::None, 600),
                false,
                "2026-11-28T05:12:00Z",
                vec![("05:05", Skip(CatchUpNone)), ("05:10", Skip(CatchUpNone))],
            ),
            (
                "all: every missed slot within the deadline fires",
                policy(CatchUp::All, 900),
                false,
                "2026-11-28T05:22:00Z",
                vec![
                    (
                        "05:05",
                        Skip(MissedDeadline {
                            deadline: Duration::from_secs(900),
                        }),
                    ),
                    ("05:10", Fire),
                    ("05:15", Fire),
                    ("05:20", Fire),
                ],
            ),
        ];
        for (what, policy, suspended, now, expected) in cases {
            let decision = decide(&every5, &policy, suspended, since, utc(now));
            let expected: Vec<(String, Verdict)> = expected
                .into_iter()
                .map(|(t, v)| (t.to_owned(), v))
                .collect();
            assert_eq!(verdicts(&decision), expected, "{what}");
            assert!(!decision.older_left_out, "{what}");
            assert!(decision.wake_at.is_some_and(|w| w > utc(now)), "{what}");
        }
    }

    #[test]
    fn all_fires_at_most_the_cap_newest_first() {
        let every_minute = CronSchedule::parse("* * * * *", "UTC").expect("parse");
        let decision = decide(
            &every_minute,
            &policy(CatchUp::All, 86_400),
            false,
            utc("2026-11-28T00:00:00Z"),
            utc("2026-11-28T03:00:30Z"),
        );
        assert_eq!(decision.slots.len(), 180);
        let fired: Vec<_> = decision.slots.iter().filter(|(_, v)| *v == Fire).collect();
        // 03:00 is on time, not missed; then the 100 newest missed ones.
        assert_eq!(fired.len(), CATCH_UP_ALL_CAP + 1);
        assert_eq!(
            fired.first().map(|(t, _)| *t),
            Some(utc("2026-11-28T01:20:00Z"))
        );
        assert_eq!(decision.slots[0].1, Skip(OverCatchUpCap));
    }

    #[test]
    fn a_long_outage_is_bounded_and_says_so() {
        let every_minute = CronSchedule::parse("* * * * *", "UTC").expect("parse");
        let decision = decide(
            &every_minute,
            &policy(CatchUp::Latest, 600),
            false,
            utc("2026-11-01T00:00:00Z"),
            utc("2026-11-28T00:00:00Z"),
        );
        assert_eq!(decision.slots.len(), MAX_SLOTS_PER_DECISION);
        assert!(decision.older_left_out);
        assert_eq!(
            decision.slots.last(),
            Some(&(utc("2026-11-28T00:00:00Z"), Fire))
        );
        assert_eq!(decision.wake_at, Some(utc("2026-11-28T00:01:00Z")));
    }

    #[test]
    fn skip_reasons_read_as_sentences() {
        let deadline = Duration::from_secs(600);
        assert_eq!(
            MissedDeadline { deadline }.to_string(),
            "missed starting deadline: found more than 10m after its time"
        );
        assert_eq!(Suspended.to_string(), "suspended");
    }
}
