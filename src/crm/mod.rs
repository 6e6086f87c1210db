//! Writers that tell a CRM (or the user's own backend) where a lead stands, and the reads
//! that learn a lead from the CRM it came from.

pub mod api;
mod callback;
mod config;
pub mod enrich;
pub mod hubspot;
mod mapping;
pub mod salesforce;
mod writer;

pub use callback::CallbackWriter;
pub use config::{CallbackConfig, CrmConfig, WritebackConfig, WritebackRetryConfig};
pub use enrich::Enricher;
pub use writer::Writers;

use crate::job::{Source, WritebackTarget};
use crate::retry;
use crate::store::WritebackResult;
use api::CallFailure;
use chrono::{DateTime, Utc};
use hubspot::HubSpotClient;
use salesforce::SalesforceClient;

#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("writeback target misconfigured: {0}")]
    Config(String),
}

/// The writeback targets of a job from `source`: the signed callback when configured, and
/// the CRM the job came from.
pub fn targets_for(
    crm: &CrmConfig,
    writeback: &WritebackConfig,
    source: Source,
) -> Vec<WritebackTarget> {
    let mut targets = Vec::new();
    if writeback.callback.is_some() {
        targets.push(WritebackTarget::Callback);
    }
    let crm = match source {
        Source::HubSpot if crm.hubspot.is_some() => source.crm(),
        Source::Salesforce if crm.salesforce.is_some() => source.crm(),
        _ => None,
    };
    targets.extend(crm);
    targets
}

/// A delivery attempt, as `settle` needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct Try {
    /// This attempt's number, 1-based.
    pub number: u32,
    /// When the transient failures before it began, if there were any.
    pub failing_since: Option<DateTime<Utc>>,
}

/// What to do after a delivery attempt: a pure rule shared by every target. Permanent
/// refusals park at once; transient failures are retried with capped backoff until they
/// have lasted `give_up_after`. Credentials a CRM refused pause the target (`pause_until`)
/// without spending the writeback's tries.
pub fn settle(
    outcome: Result<(), CallFailure>,
    attempt: Try,
    policy: &WritebackRetryConfig,
    now: DateTime<Utc>,
    jitter: f64,
    pause_until: DateTime<Utc>,
) -> WritebackResult {
    let (error, retry_after) = match outcome {
        Ok(()) => return WritebackResult::Delivered,
        Err(CallFailure::Gone { reason }) | Err(CallFailure::Refused { reason }) => {
            return WritebackResult::Parked { reason };
        }
        Err(CallFailure::AuthFailed { reason }) => {
            return WritebackResult::Paused {
                until: pause_until,
                reason,
            };
        }
        Err(CallFailure::Retry { after, error }) => (error, after),
    };
    let since = attempt.failing_since.unwrap_or(now).min(now);
    let give_up_at = since
        + chrono::Duration::from_std(policy.give_up_after).unwrap_or(chrono::Duration::days(3));
    let backoff = policy.as_retry();
    let number = attempt.number;
    if now >= give_up_at || !retry::may_retry(&backoff, number) {
        let failing = humantime::format_duration((now - since).to_std().unwrap_or_default());
        return WritebackResult::Parked {
            reason: format!("gave up after {number} attempts over {failing}: {error}"),
        };
    }
    // The last try comes when the time is up, not a backoff step after it.
    WritebackResult::Retry {
        at: retry::next_try_at(&backoff, number, retry_after, now, jitter).min(give_up_at),
        error,
    }
}

/// One API client per configured CRM, shared by enrichment and writebacks so that they
/// share HubSpot's rate budget and Salesforce's token.
#[derive(Clone, Default)]
pub struct Clients {
    pub hubspot: Option<HubSpotClient>,
    pub salesforce: Option<SalesforceClient>,
}

impl Clients {
    pub fn from_config(crm: &CrmConfig) -> Result<Clients, CrmError> {
        let hubspot = match &crm.hubspot {
            Some(c) => Some(HubSpotClient::new(c).map_err(|e| CrmError::Config(e.to_string()))?),
            None => None,
        };
        let salesforce = match &crm.salesforce {
            Some(c) => Some(SalesforceClient::new(c).map_err(|e| CrmError::Config(e.to_string()))?),
            None => None,
        };
        Ok(Clients {
            hubspot,
            salesforce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> WritebackRetryConfig {
        WritebackRetryConfig {
            give_up_after: Duration::from_secs(3 * 24 * 3600),
            max_attempts: Some(3),
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            jitter: 0.0,
        }
    }

    fn first(number: u32) -> Try {
        Try {
            number,
            failing_since: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn settle_now(outcome: Result<(), CallFailure>, number: u32) -> WritebackResult {
        settle(
            outcome,
            first(number),
            &policy(),
            now(),
            0.0,
            now() + chrono::Duration::minutes(1),
        )
    }

    fn retry(after: Option<u64>) -> Result<(), CallFailure> {
        Err(CallFailure::Retry {
            after: after.map(Duration::from_secs),
            error: "HTTP 503: x".into(),
        })
    }

    #[test]
    fn success_is_delivered() {
        assert_eq!(settle_now(Ok(()), 1), WritebackResult::Delivered);
    }

    #[test]
    fn gone_and_refused_records_are_parked_with_the_reason() {
        for outcome in [
            Err(CallFailure::Gone {
                reason: "contact 7 was merged".into(),
            }),
            Err(CallFailure::Refused {
                reason: "unknown property".into(),
            }),
        ] {
            let WritebackResult::Parked { reason } = settle_now(outcome, 1) else {
                panic!()
            };
            assert!(
                reason.contains("merged") || reason.contains("unknown"),
                "{reason}"
            );
        }
    }

    #[test]
    fn refused_credentials_pause_without_spending_tries() {
        let result = settle_now(
            Err(CallFailure::AuthFailed {
                reason: "401".into(),
            }),
            3,
        );
        assert_eq!(
            result,
            WritebackResult::Paused {
                until: now() + chrono::Duration::minutes(1),
                reason: "401".into()
            }
        );
    }

    fn failing_for(number: u32, hours: i64, policy: &WritebackRetryConfig) -> WritebackResult {
        let attempt = Try {
            number,
            failing_since: Some(now() - chrono::Duration::hours(hours)),
        };
        settle(
            retry(None),
            attempt,
            policy,
            now(),
            0.0,
            now() + chrono::Duration::minutes(1),
        )
    }

    #[test]
    fn with_the_default_policy_a_maintenance_window_of_hours_is_retried_through() {
        let policy = WritebackRetryConfig::default();
        // The twelfth failure, about 3.4 hours into a Salesforce maintenance window, and
        // the fortieth, a day and a half into a HubSpot outage: tried again within the hour.
        for (number, hours) in [(12, 3), (40, 36)] {
            assert_eq!(
                failing_for(number, hours, &policy),
                WritebackResult::Retry {
                    at: now() + chrono::Duration::hours(1),
                    error: "HTTP 503: x".into()
                },
                "{number}"
            );
        }
        // Once three days have passed, the next failure parks it.
        let WritebackResult::Parked { reason } = failing_for(72, 72, &policy) else {
            panic!("not parked after three days")
        };
        assert!(
            reason.starts_with("gave up after 72 attempts over 3days"),
            "{reason}"
        );
        // A permanent refusal parks at once, however young.
        assert!(matches!(
            settle(
                Err(CallFailure::Refused {
                    reason: "HTTP 400".into()
                }),
                first(1),
                &policy,
                now(),
                0.0,
                now()
            ),
            WritebackResult::Parked { .. }
        ));
    }

    #[test]
    fn the_last_try_is_moved_up_to_the_end_of_the_give_up_time() {
        let policy = WritebackRetryConfig {
            give_up_after: Duration::from_secs(3600),
            max_attempts: None,
            ..WritebackRetryConfig::default()
        };
        // Backoff would say an hour; only ten minutes of the hour are left.
        assert_eq!(
            settle(
                retry(None),
                Try {
                    number: 20,
                    failing_since: Some(now() - chrono::Duration::minutes(50)),
                },
                &policy,
                now(),
                0.0,
                now()
            ),
            WritebackResult::Retry {
                at: now() + chrono::Duration::minutes(10),
                error: "HTTP 503: x".into()
            }
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retried_then_parked() {
        assert_eq!(
            settle_now(retry(Some(30)), 1),
            WritebackResult::Retry {
                at: now() + chrono::Duration::seconds(30),
                error: "HTTP 503: x".into()
            }
        );
        assert_eq!(
            settle_now(retry(None), 2),
            WritebackResult::Retry {
                at: now() + chrono::Duration::seconds(20),
                error: "HTTP 503: x".into()
            }
        );
        assert!(matches!(
            settle_now(retry(None), 3),
            WritebackResult::Parked { .. }
        ));
    }
}
