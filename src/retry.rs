//! Retry delays: exponential backoff with jitter, and `Retry-After` honoured with a floor.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Fraction of each delay randomised either way, 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

/// The smallest wait we accept from a `Retry-After`, so a `0` cannot make us hammer an API.
const RETRY_AFTER_FLOOR: Duration = Duration::from_secs(1);
/// The longest; an absurd `Retry-After` must not park a job for days.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// Delay before the next try after `attempt` tries (1-based) have failed.
/// `jitter_sample` is uniform in [-1, 1]; passed in so the decision stays pure.
pub fn backoff(policy: &RetryConfig, attempt: u32, jitter_sample: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let raw = policy
        .base_delay
        .saturating_mul(1u32 << exponent)
        .min(policy.max_delay);
    let factor = 1.0 + policy.jitter * jitter_sample.clamp(-1.0, 1.0);
    raw.mul_f64(factor.max(0.0))
}

/// Delay asked for by a `Retry-After`: never earlier than asked (above a floor), capped at an hour,
/// plus up to `jitter` of itself so many workers do not return at the same instant.
pub fn after_retry_after(
    policy: &RetryConfig,
    retry_after: Duration,
    jitter_sample: f64,
) -> Duration {
    let base = retry_after.max(RETRY_AFTER_FLOOR).min(RETRY_AFTER_CAP);
    base.mul_f64(1.0 + policy.jitter * jitter_sample.abs().min(1.0))
}

/// When to try again after `attempt` failed tries: the server's `Retry-After` when it gave
/// one, else the backoff.
pub fn next_try_at(
    policy: &RetryConfig,
    attempt: u32,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
    jitter_sample: f64,
) -> DateTime<Utc> {
    let delay = match retry_after {
        Some(asked) => after_retry_after(policy, asked, jitter_sample),
        None => backoff(policy, attempt, jitter_sample),
    };
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
}

/// Whether another try is allowed after `attempt` tries.
pub fn may_retry(policy: &RetryConfig, attempt: u32) -> bool {
    attempt < policy.max_attempts
}

/// A uniform sample in [-1, 1] for the functions above.
pub fn random_jitter() -> f64 {
    rand::random_range(-1.0..=1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            jitter: 0.5,
        }
    }

    #[test]
    fn backoff_doubles_until_the_cap() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(&p, 2, 0.0), Duration::from_secs(20));
        assert_eq!(backoff(&p, 3, 0.0), Duration::from_secs(40));
        assert_eq!(backoff(&p, 4, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(&p, 40, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_spreads_within_its_fraction() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(15));
        assert_eq!(backoff(&p, 1, -1.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 1, 7.0), Duration::from_secs(15));
    }

    #[test]
    fn retry_after_has_a_floor_and_a_cap() {
        let p = policy();
        assert_eq!(
            after_retry_after(&p, Duration::ZERO, 0.0),
            Duration::from_secs(1)
        );
        // Longer than the policy's max_delay is still honoured: never retry before asked.
        assert_eq!(
            after_retry_after(&p, Duration::from_secs(600), 0.0),
            Duration::from_secs(600)
        );
        assert_eq!(
            after_retry_after(&p, Duration::from_secs(86_400), 0.0),
            Duration::from_secs(3600)
        );
        let jittered = after_retry_after(&p, Duration::from_secs(20), -1.0);
        assert!(
            jittered >= Duration::from_secs(20),
            "never earlier than asked: {jittered:?}"
        );
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        let p = policy();
        assert!(may_retry(&p, 3));
        assert!(!may_retry(&p, 4));
    }
}
