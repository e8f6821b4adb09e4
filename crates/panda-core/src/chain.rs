//! Chains: a job that starts when a run of another job ends (`--after JOB[:succeeded|failed|any]`).
//!
//! The semantics, written once here and enforced by the store:
//!
//! - A **run** is a first attempt and its retries. A run *ends* when its last attempt ends with
//!   no attempt after it: `succeeded`, or `dead` (failed, timed out or lost with no attempt
//!   left, or refused by the runtime). An attempt that is retried ends nothing, so a chain
//!   never starts from a failure that is then retried.
//! - `succeeded` follows a run that ended succeeded; `failed` one that ended dead; `any`
//!   either. A **cancelled** run starts nothing, not even `any`: cancelling is a person (or a
//!   job delete) stopping the work, and what follows the work is stopped with it. A skipped
//!   slot never ran and starts nothing. A dead run retried from the dead-letter queue is the
//!   same run: it starts each follower at most once in all.
//! - The follower's execution is queued in the same store transaction that writes the
//!   upstream's end, with trigger `upstream`, the upstream run's payload, the environment
//!   `PANDA_UPSTREAM_EXECUTION_ID` (the attempt that ended the run, which the dashboard links
//!   to), `PANDA_UPSTREAM_JOB` and `PANDA_UPSTREAM_STATUS` (`succeeded` or `dead`), and the
//!   idempotency key `after:<the upstream run's root id>`: a finish written twice, or a run
//!   ended again after a dead-letter retry, finds the key taken and queues nothing more.
//! - A chain is checked where it is stored: the upstream must be a live job that is not a
//!   service, a job follows another at most once and never itself, and no chain may lead back
//!   to where it starts (`a → b → a` is refused, on create and on update, with the cycle named).
//! - A job that others follow cannot be deleted: the delete is refused with the names of its
//!   followers, so no chain is left pointing at nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::execution::Status;
use crate::job::JobName;
use crate::validate::ValidationError;

/// The most jobs one job may follow.
pub const MAX_UPSTREAMS: usize = 32;

/// How a run of the upstream job must end for its follower to start.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The run succeeded (on any attempt).
    #[default]
    Succeeded,
    /// The run failed for good: its last attempt is dead.
    Failed,
    /// Either.
    Any,
}

impl RunEnd {
    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Any => "any",
        }
    }

    /// How a run whose last attempt ended in `status` ended, for its followers: `Succeeded`,
    /// `Failed` (dead), or `None` for an ending that starts nothing (cancelled, skipped) or an
    /// attempt that has not ended.
    pub fn of_final(status: Status) -> Option<Self> {
        match status {
            Status::Succeeded => Some(Self::Succeeded),
            Status::Dead => Some(Self::Failed),
            _ => None,
        }
    }

    /// Whether a follower waiting for `self` starts after a run that ended `ended`
    /// (`Succeeded` or `Failed`).
    pub fn starts_on(self, ended: RunEnd) -> bool {
        self == Self::Any || self == ended
    }
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunEnd {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "any" => Ok(Self::Any),
            other => Err(ValidationError::Field {
                field: "after",
                message: format!("{other:?} is not how a run ends; use succeeded, failed or any"),
            }),
        }
    }
}

/// A job this job follows: `job` (it starts after a run of it succeeds) or `job:failed`,
/// `job:any`. Written and read as that one string in the API, the CLI and `apply` files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Upstream {
    /// The job whose runs start this one.
    pub job: JobName,
    /// How its run must end.
    pub on: RunEnd,
}

impl Upstream {
    /// Follows `job`'s runs that end `on`.
    pub fn new(job: JobName, on: RunEnd) -> Self {
        Self { job, on }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.on {
            RunEnd::Succeeded => write!(f, "{}", self.job),
            on => write!(f, "{}:{on}", self.job),
        }
    }
}

impl FromStr for Upstream {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, on) = match s.split_once(':') {
            Some((name, on)) => (name, on.parse()?),
            None => (s, RunEnd::Succeeded),
        };
        Ok(Self {
            job: JobName::new(name)?,
            on,
        })
    }
}

impl TryFrom<String> for Upstream {
    type Error = ValidationError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Upstream> for String {
    fn from(upstream: Upstream) -> Self {
        upstream.to_string()
    }
}

/// Checks what a definition alone can say about its chain: at most [`MAX_UPSTREAMS`], no job
/// twice, not itself.
pub(crate) fn validate_after(name: &JobName, after: &[Upstream]) -> Result<(), ValidationError> {
    if after.len() > MAX_UPSTREAMS {
        return Err(ValidationError::Field {
            field: "after",
            message: format!(
                "names {} jobs; a job follows at most {MAX_UPSTREAMS}",
                after.len()
            ),
        });
    }
    let mut seen = BTreeSet::new();
    for upstream in after {
        if upstream.job == *name {
            return Err(ValidationError::Chain {
                message: format!(
                    "job {:?} cannot follow itself ({name} → {name})",
                    name.as_str()
                ),
                hint: "a job that should run again after it fails has --max-attempts".into(),
            });
        }
        if !seen.insert(&upstream.job) {
            return Err(ValidationError::Chain {
                message: format!(
                    "job {:?} follows {:?} twice",
                    name.as_str(),
                    upstream.job.as_str()
                ),
                hint: format!(
                    "give it once; {}:any starts it after a run that succeeded or failed",
                    upstream.job
                ),
            });
        }
    }
    Ok(())
}

/// A chain that leads from `from` back to itself in `graph` (each job mapped to the jobs it
/// follows), as the names along it, `from` first and last (`[a, b, a]`); `None` when there is
/// none.
pub fn find_cycle(graph: &BTreeMap<String, Vec<String>>, from: &str) -> Option<Vec<String>> {
    // Depth first, remembering the path; each job is walked once.
    let mut seen = BTreeSet::new();
    let mut path = vec![from.to_owned()];
    fn walk(
        graph: &BTreeMap<String, Vec<String>>,
        from: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let Some(current) = path.last().cloned() else {
            return false;
        };
        for next in graph.get(&current).into_iter().flatten() {
            if next == from {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, from, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(graph, from, &mut path, &mut seen).then_some(path)
}

/// The error for a chain that leads back to where it starts (`[a, b, a]`).
pub fn cycle_error(cycle: &[String]) -> ValidationError {
    ValidationError::Chain {
        message: format!("a chain may not lead back to itself: {}", cycle.join(" → ")),
        hint: "remove one of these --after links; a job that should run again has --max-attempts"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_reads_and_writes_as_one_string() {
        for (text, on) in [
            ("generate-reports", RunEnd::Succeeded),
            ("generate-reports:failed", RunEnd::Failed),
            ("generate-reports:any", RunEnd::Any),
        ] {
            let upstream: Upstream = text.parse().expect(text);
            assert_eq!(
                (upstream.job.as_str(), upstream.on),
                ("generate-reports", on)
            );
            assert_eq!(upstream.to_string(), text);
            let json = serde_json::to_value(&upstream).expect("json");
            assert_eq!(json, serde_json::json!(text));
        }
        let long: Upstream = "a:succeeded".parse().expect("the default spelt out");
        assert_eq!(long.to_string(), "a");
        let err = "a:sometimes".parse::<Upstream>().expect_err("not an end");
        assert!(
            err.to_string().contains("succeeded, failed or any"),
            "{err}"
        );
        assert!("Bad Name".parse::<Upstream>().is_err());
    }

    #[test]
    fn which_endings_start_which_followers() {
        use RunEnd::*;
        assert_eq!(RunEnd::of_final(Status::Succeeded), Some(Succeeded));
        assert_eq!(RunEnd::of_final(Status::Dead), Some(Failed));
        for status in [
            Status::Cancelled,
            Status::Skipped,
            Status::Failed,
            Status::Lost,
        ] {
            assert_eq!(RunEnd::of_final(status), None, "{status}");
        }
        assert!(Succeeded.starts_on(Succeeded) && !Succeeded.starts_on(Failed));
        assert!(Failed.starts_on(Failed) && !Failed.starts_on(Succeeded));
        assert!(Any.starts_on(Succeeded) && Any.starts_on(Failed));
    }

    #[test]
    fn a_cycle_is_found_and_named_from_where_it_starts() {
        let graph: BTreeMap<String, Vec<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c", "x"]),
            ("c", vec!["a"]),
            ("x", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        assert_eq!(
            find_cycle(&graph, "a"),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(find_cycle(&graph, "x"), None);
        let err = cycle_error(&["a".into(), "b".into(), "a".into()]);
        assert!(err.to_string().contains("a → b → a"), "{err}");
    }

    #[test]
    fn a_definition_may_not_follow_itself_or_one_job_twice() {
        let name = JobName::new("send-report").expect("name");
        let me: Upstream = "send-report".parse().expect("upstream");
        assert!(validate_after(&name, &[me]).is_err());
        let twice = ["a".parse().expect("a"), "a:failed".parse().expect("a")];
        let err = validate_after(&name, &twice).expect_err("twice");
        assert!(err.to_string().contains("twice"), "{err}");
        assert!(validate_after(&name, &["a".parse().expect("a")]).is_ok());
    }
}
