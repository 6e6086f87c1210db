//! Writers that tell a CRM (or the user's own backend) where a lead stands.

pub mod api;
mod callback;

pub use callback::CallbackWriter;

use crate::config::{Config, RetryConfig};
use crate::retry;
use crate::store::{WritebackResult, WritebackWork};
use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("writeback target misconfigured: {0}")]
    Config(String),
}

/// How one delivery attempt went, before retry rules apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// An HTTP answer: status, `Retry-After`, and a short excerpt of the body.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    /// No answer: connection refused, timeout.
    Unreachable(String),
}

/// What to do after an attempt: a pure rule shared by every target.
pub fn classify(
    attempt: &Attempt,
    number: u32,
    policy: &RetryConfig,
    now: DateTime<Utc>,
    jitter: f64,
) -> WritebackResult {
    let (error, retry_after) = match attempt {
        Attempt::Answered {
            status: 200..=299, ..
        } => return WritebackResult::Delivered,
        Attempt::Answered {
            status: status @ (408 | 425 | 429 | 500..=599),
            retry_after,
            body,
        } => (format!("HTTP {status}: {body}"), *retry_after),
        Attempt::Answered { status, body, .. } => {
            return WritebackResult::Parked {
                reason: format!("refused with HTTP {status}: {body}"),
            };
        }
        Attempt::Unreachable(error) => (error.clone(), None),
    };
    if !retry::may_retry(policy, number) {
        return WritebackResult::Parked {
            reason: format!("gave up after {number} attempts: {error}"),
        };
    }
    let delay = match retry_after {
        Some(asked) => retry::after_retry_after(policy, asked, jitter),
        None => retry::backoff(policy, number, jitter),
    };
    WritebackResult::Retry {
        at: now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)),
        error,
    }
}

/// Every configured target, by the name stored on each writeback row.
pub struct Writers {
    callback: Option<CallbackWriter>,
    policy: RetryConfig,
}

impl Writers {
    pub fn from_config(config: &Config) -> Result<Writers, CrmError> {
        let callback = match &config.writeback.callback {
            Some(c) => Some(CallbackWriter::new(c)?),
            None => None,
        };
        Ok(Writers {
            callback,
            policy: config.writeback.retry.as_retry(),
        })
    }

    /// The target names that get a writeback row for each status change.
    pub fn targets(&self) -> Vec<String> {
        self.callback
            .iter()
            .map(|_| CallbackWriter::TARGET.to_string())
            .collect()
    }

    /// How long a delivery may take before another worker may try it.
    pub fn lease(&self) -> Duration {
        self.callback.as_ref().map_or(Duration::from_secs(60), |c| {
            c.timeout() * 2 + Duration::from_secs(5)
        })
    }

    pub async fn deliver(&self, work: &WritebackWork, now: DateTime<Utc>) -> WritebackResult {
        let attempt = match (work.target.as_str(), &self.callback) {
            (CallbackWriter::TARGET, Some(callback)) => callback.deliver(work, now).await,
            (target, _) => {
                return WritebackResult::Parked {
                    reason: format!("target `{target}` is not configured in this process"),
                };
            }
        };
        classify(
            &attempt,
            work.attempt.max(1) as u32,
            &self.policy,
            now,
            retry::jitter_sample(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            jitter: 0.0,
        }
    }

    fn answered(status: u16, retry_after: Option<u64>) -> Attempt {
        Attempt::Answered {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: "x".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn success_is_delivered() {
        assert_eq!(
            classify(&answered(204, None), 1, &policy(), now(), 0.0),
            WritebackResult::Delivered
        );
    }

    #[test]
    fn permanent_4xx_is_parked_with_the_reason() {
        let WritebackResult::Parked { reason } =
            classify(&answered(404, None), 1, &policy(), now(), 0.0)
        else {
            panic!()
        };
        assert!(reason.contains("404"), "{reason}");
    }

    #[test]
    fn throttling_and_server_errors_are_retried_then_parked() {
        assert_eq!(
            classify(&answered(429, Some(30)), 1, &policy(), now(), 0.0),
            WritebackResult::Retry {
                at: now() + chrono::Duration::seconds(30),
                error: "HTTP 429: x".into()
            }
        );
        assert_eq!(
            classify(&answered(503, None), 2, &policy(), now(), 0.0),
            WritebackResult::Retry {
                at: now() + chrono::Duration::seconds(20),
                error: "HTTP 503: x".into()
            }
        );
        assert!(matches!(
            classify(
                &Attempt::Unreachable("refused".into()),
                3,
                &policy(),
                now(),
                0.0
            ),
            WritebackResult::Parked { .. }
        ));
    }
}
