use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::duration_ms;
use crate::validate::ValidationError;

/// How often a failed run is tried again, and how long to wait in between.
///
/// Waits grow exponentially from `backoff_base` up to `backoff_cap`, with full jitter: the wait
/// before attempt `n + 1` is uniform in `[0, min(cap, base * 2^(n-1))]`, which spreads a burst of
/// failures out instead of retrying them in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry. In a job definition, each field
    /// of the policy left out takes its default: 3 attempts for a triggered job, 1 for a
    /// cronjob or a service, backoff from 10 s up to 10 min.
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// The ceiling of the first wait, in milliseconds; at most 7 days.
    #[serde(with = "duration_ms", rename = "backoff_base_ms")]
    #[schema(value_type = u64, maximum = 604_800_000_u64)]
    pub backoff_base: Duration,
    /// No wait is longer than this, in milliseconds; not shorter than `backoff_base_ms`, at
    /// most 7 days.
    #[serde(with = "duration_ms", rename = "backoff_cap_ms")]
    #[schema(value_type = u64, maximum = 604_800_000_u64)]
    pub backoff_cap: Duration,
}

impl RetryPolicy {
    /// The most attempts a policy may allow.
    pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

    /// The longest backoff base or cap: 7 days.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(7 * 86_400);

    /// Cronjobs run once per slot unless told otherwise.
    pub const fn cronjob_default() -> Self {
        Self {
            max_attempts: 1,
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(600),
        }
    }

    /// Triggered jobs are retried twice by default.
    pub const fn triggered_default() -> Self {
        Self {
            max_attempts: 3,
            ..Self::cronjob_default()
        }
    }

    /// Checks the bounds: at least one attempt, at most [`Self::MAX_ATTEMPTS_LIMIT`], a base and
    /// a cap of at most [`Self::MAX_BACKOFF`], and a cap no smaller than the base.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.max_attempts == 0 || self.max_attempts > Self::MAX_ATTEMPTS_LIMIT {
            return Err(ValidationError::Field {
                field: "max_attempts",
                message: format!(
                    "{} is out of range; use 1 (no retry) to {}",
                    self.max_attempts,
                    Self::MAX_ATTEMPTS_LIMIT
                ),
            });
        }
        crate::validate_at_most("backoff", self.backoff_base, Self::MAX_BACKOFF)?;
        crate::validate_at_most("backoff_max", self.backoff_cap, Self::MAX_BACKOFF)?;
        if self.backoff_cap < self.backoff_base {
            return Err(ValidationError::Field {
                field: "backoff_max",
                message: format!(
                    "{:?} is shorter than the backoff base {:?}; raise it or lower the base",
                    self.backoff_cap, self.backoff_base
                ),
            });
        }
        Ok(())
    }

    /// The ceiling of the wait after attempt `failed_attempt` (1-based) failed:
    /// `min(cap, base * 2^(failed_attempt - 1))`, without jitter.
    pub fn backoff_ceiling(&self, failed_attempt: u32) -> Duration {
        let doublings = failed_attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let base_ms = u64::try_from(self.backoff_base.as_millis()).unwrap_or(u64::MAX);
        let ceiling = Duration::from_millis(base_ms.saturating_mul(factor));
        // Validation bounds the cap; a policy that skipped it still waits no longer than that.
        ceiling.min(self.backoff_cap).min(Self::MAX_BACKOFF)
    }

    /// Whether attempt `failed_attempt` failing leaves another attempt, and if so how long to
    /// wait before it. `None` means retries are exhausted: the run is dead.
    pub fn retry_after(&self, failed_attempt: u32, rng: &mut impl Rng) -> Option<Duration> {
        if failed_attempt >= self.max_attempts {
            return None;
        }
        let ceiling =
            u64::try_from(self.backoff_ceiling(failed_attempt).as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(rng.random_range(0..=ceiling)))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::triggered_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn policy(max_attempts: u32, base_s: u64, cap_s: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff_base: Duration::from_secs(base_s),
            backoff_cap: Duration::from_secs(cap_s),
        }
    }

    #[test]
    fn ceiling_doubles_from_the_base_up_to_the_cap() {
        let p = policy(10, 10, 60);
        let ceilings: Vec<u64> = (1..=6).map(|n| p.backoff_ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [10, 20, 40, 60, 60, 60]);
        // Huge attempt numbers saturate instead of overflowing.
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn retries_stop_after_the_last_attempt() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let p = policy(3, 10, 600);
        assert!(p.retry_after(1, &mut rng).is_some());
        assert!(p.retry_after(2, &mut rng).is_some());
        assert_eq!(p.retry_after(3, &mut rng), None);
        assert_eq!(policy(1, 10, 600).retry_after(1, &mut rng), None);
    }

    #[test]
    fn full_jitter_is_uniform_below_the_ceiling_and_repeatable_with_a_seed() {
        let p = policy(5, 10, 600);
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..2000)
                .map(|_| p.retry_after(2, &mut rng).expect("attempts left"))
                .collect::<Vec<_>>()
        };
        let waits = draw(42);
        assert_eq!(waits, draw(42), "same seed, same waits");
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(20)));
        // Uniform on [0, 20s]: the mean is near 10s and both halves are used.
        let mean_ms = waits.iter().map(|w| w.as_millis()).sum::<u128>() / waits.len() as u128;
        assert!((9_000..=11_000).contains(&mean_ms), "mean {mean_ms}ms");
        assert!(waits.iter().any(|w| *w < Duration::from_secs(2)));
        assert!(waits.iter().any(|w| *w > Duration::from_secs(18)));
    }

    #[test]
    fn validate_refuses_zero_attempts_and_a_cap_below_the_base() {
        assert!(policy(1, 10, 10).validate().is_ok());
        assert!(policy(0, 10, 600).validate().is_err());
        assert!(policy(101, 10, 600).validate().is_err());
        let err = policy(3, 60, 10).validate().expect_err("cap below base");
        assert!(err.to_string().contains("backoff_max"), "{err}");
    }
}
