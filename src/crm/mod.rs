//! Writers that tell a CRM (or the user's own backend) where a lead stands, and the reads
//! that learn a lead from the CRM it came from.

pub mod api;
mod callback;
pub mod enrich;
pub mod hubspot;
mod mapping;
pub mod salesforce;

pub use callback::CallbackWriter;
pub use enrich::Enricher;

use crate::config::{Config, WritebackRetryConfig};
use crate::job::StatusSnapshot;
use crate::retry;
use crate::store::{WritebackResult, WritebackWork};
use api::CallFailure;
use chrono::{DateTime, Utc};
use hubspot::HubSpotClient;
use mapping::{Empty, FieldNames};
use salesforce::SalesforceClient;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The CRM targets, by the names stored on jobs and writeback rows.
pub const HUBSPOT: &str = "hubspot";
pub const SALESFORCE: &str = "salesforce";

#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("writeback target misconfigured: {0}")]
    Config(String),
}

/// The writeback targets of a job from `source`: the signed callback when configured, and
/// the CRM the job came from.
pub fn targets_for(config: &Config, source: &str) -> Vec<String> {
    let mut targets = Vec::new();
    if config.writeback.callback.is_some() {
        targets.push(CallbackWriter::TARGET.to_string());
    }
    let crm_configured = match source {
        HUBSPOT => config.crm.hubspot.is_some(),
        SALESFORCE => config.crm.salesforce.is_some(),
        _ => false,
    };
    if crm_configured {
        targets.push(source.to_string());
    }
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

struct HubSpotWriter {
    client: HubSpotClient,
    config: hubspot::HubSpotCrmConfig,
}

struct SalesforceWriter {
    client: SalesforceClient,
    config: salesforce::SalesforceCrmConfig,
}

/// Every configured target, by the name stored on each writeback row.
pub struct Writers {
    callback: Option<CallbackWriter>,
    hubspot: Option<HubSpotWriter>,
    salesforce: Option<SalesforceWriter>,
    policy: WritebackRetryConfig,
    probe_interval: Duration,
    /// CRMs whose credentials were refused, until when this process leaves them alone.
    paused: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Writers {
    pub fn from_config(config: &Config, clients: &Clients) -> Result<Writers, CrmError> {
        let callback = match &config.writeback.callback {
            Some(c) => Some(CallbackWriter::new(c)?),
            None => None,
        };
        let hubspot = clients
            .hubspot
            .clone()
            .zip(config.crm.hubspot.clone())
            .map(|(client, config)| HubSpotWriter { client, config });
        let salesforce = clients
            .salesforce
            .clone()
            .zip(config.crm.salesforce.clone())
            .map(|(client, config)| SalesforceWriter { client, config });
        Ok(Writers {
            callback,
            hubspot,
            salesforce,
            policy: config.writeback.retry.clone(),
            probe_interval: config.crm.probe_interval,
            paused: Mutex::new(HashMap::new()),
        })
    }

    /// How long a delivery may take before another worker may try it.
    pub fn lease(&self) -> Duration {
        let slowest = [
            self.callback.as_ref().map(CallbackWriter::timeout),
            self.hubspot.as_ref().map(|h| h.config.timeout),
            self.salesforce.as_ref().map(|s| s.config.timeout),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Duration::from_secs(30));
        // Salesforce may fetch a token and try once more inside one delivery.
        slowest * 3 + Duration::from_secs(5)
    }

    pub async fn deliver(&self, work: &WritebackWork, now: DateTime<Utc>) -> WritebackResult {
        let target = work.target.as_str();
        if let Some(until) = self.paused_until(target, now) {
            return WritebackResult::Paused {
                until,
                reason: format!("{target} writebacks are paused: its credentials were refused"),
            };
        }
        let outcome = match (target, &self.callback, &self.hubspot, &self.salesforce) {
            (CallbackWriter::TARGET, Some(callback), _, _) => callback.deliver(work, now).await,
            (HUBSPOT, _, Some(writer), _) => match snapshot_of(work) {
                Ok(snapshot) => {
                    let names = hubspot_names(&writer.config);
                    let properties = mapping::fields(&names, &snapshot, Empty::EmptyString);
                    let start_by = latest_start(work.lease_until, writer.config.timeout);
                    match writer
                        .client
                        .update_contact(&snapshot.record_id, properties, start_by)
                        .await
                    {
                        Ok(outcome) => outcome,
                        // Waiting would outlive the lease and let another worker send too.
                        Err(spent) => {
                            return WritebackResult::Later {
                                at: Utc::now()
                                    + chrono::Duration::from_std(spent.wait)
                                        .unwrap_or(chrono::Duration::minutes(1)),
                                reason:
                                    "HubSpot's rate-limit budget is spent until its window ends"
                                        .into(),
                            };
                        }
                    }
                }
                Err(failure) => Err(failure),
            },
            (SALESFORCE, _, _, Some(writer)) => match snapshot_of(work) {
                Ok(snapshot) => {
                    let names = salesforce_names(&writer.config);
                    let fields = mapping::fields(&names, &snapshot, Empty::Null);
                    let object = snapshot.record_object.as_deref().unwrap_or("Lead");
                    writer
                        .client
                        .update_record(object, &snapshot.record_id, fields)
                        .await
                }
                Err(failure) => Err(failure),
            },
            (target, ..) => {
                return WritebackResult::Parked {
                    reason: format!("target `{target}` is not configured in this process"),
                };
            }
        };
        let pause_until = now
            + chrono::Duration::from_std(self.probe_interval)
                .unwrap_or(chrono::Duration::minutes(1));
        let attempt = Try {
            number: work.attempt.max(1) as u32,
            failing_since: work.failing_since,
        };
        let result = settle(
            outcome,
            attempt,
            &self.policy,
            now,
            retry::random_jitter(),
            pause_until,
        );
        let mut paused = self.paused.lock().expect("pause lock");
        if let WritebackResult::Paused { reason, .. } = &result {
            tracing::error!(
                target,
                reason,
                "the CRM refused leadlink's credentials: its writebacks are paused (job statuses \
                 unchanged) until a call works again; fix crm.{target}"
            );
            paused.insert(target.to_string(), pause_until);
        } else {
            paused.remove(target);
        }
        result
    }

    fn paused_until(&self, target: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let paused = self.paused.lock().expect("pause lock");
        paused.get(target).copied().filter(|until| *until > now)
    }
}

/// The last moment a call may start and still end, after `timeout`, within the lease.
fn latest_start(lease_until: DateTime<Utc>, timeout: Duration) -> tokio::time::Instant {
    let left = (lease_until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::Instant::now() + left.saturating_sub(timeout)
}

fn snapshot_of(work: &WritebackWork) -> Result<StatusSnapshot, CallFailure> {
    serde_json::from_value(work.payload.clone()).map_err(|e| CallFailure::Refused {
        reason: format!("stored writeback is unreadable: {e}"),
    })
}

fn hubspot_names(config: &hubspot::HubSpotCrmConfig) -> FieldNames<'_> {
    let p = &config.properties;
    FieldNames {
        status: &p.status,
        profile_urn: &p.profile_urn,
        hold_until: &p.hold_until,
        retry_at: &p.retry_at,
        last_error: &p.last_error,
        status_changed_at: &p.status_changed_at,
    }
}

fn salesforce_names(config: &salesforce::SalesforceCrmConfig) -> FieldNames<'_> {
    let f = &config.fields;
    FieldNames {
        status: &f.status,
        profile_urn: &f.profile_urn,
        hold_until: &f.hold_until,
        retry_at: &f.retry_at,
        last_error: &f.last_error,
        status_changed_at: &f.status_changed_at,
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
    pub fn from_config(config: &Config) -> Result<Clients, CrmError> {
        let hubspot = match &config.crm.hubspot {
            Some(c) => Some(HubSpotClient::new(c).map_err(|e| CrmError::Config(e.to_string()))?),
            None => None,
        };
        let salesforce = match &config.crm.salesforce {
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
