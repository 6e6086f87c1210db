//! The writers: one per configured writeback target, and the dispatch from a writeback row's
//! target to its writer.

use super::api::CallFailure;
use super::hubspot::{self, BudgetSpent, HubSpotClient};
use super::mapping::{self, Empty, FieldNames};
use super::salesforce::{self, SalesforceClient};
use super::{
    CallbackWriter, Clients, CrmConfig, CrmError, Try, WritebackConfig, WritebackRetryConfig,
    settle,
};
use crate::job::{StatusSnapshot, WritebackTarget};
use crate::retry;
use crate::store::{WritebackResult, WritebackWork};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One configured target and what it needs to write a status change.
enum CrmWriter {
    Callback(CallbackWriter),
    HubSpot {
        client: HubSpotClient,
        config: hubspot::HubSpotCrmConfig,
    },
    Salesforce {
        client: SalesforceClient,
        config: salesforce::SalesforceCrmConfig,
    },
}

impl CrmWriter {
    fn target(&self) -> WritebackTarget {
        match self {
            CrmWriter::Callback(_) => WritebackTarget::Callback,
            CrmWriter::HubSpot { .. } => WritebackTarget::HubSpot,
            CrmWriter::Salesforce { .. } => WritebackTarget::Salesforce,
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            CrmWriter::Callback(callback) => callback.timeout(),
            CrmWriter::HubSpot { config, .. } => config.timeout,
            CrmWriter::Salesforce { config, .. } => config.timeout,
        }
    }

    /// One delivery attempt; `Err` when it was not tried because HubSpot's rate-limit budget
    /// would outlive the lease (waiting would let another worker send too).
    async fn write(
        &self,
        work: &WritebackWork,
        now: DateTime<Utc>,
    ) -> Result<Result<(), CallFailure>, BudgetSpent> {
        match self {
            CrmWriter::Callback(callback) => Ok(callback.deliver(work, now).await),
            CrmWriter::HubSpot { client, config } => match snapshot_of(work) {
                Ok(snapshot) => {
                    let names = hubspot_names(config);
                    let properties = mapping::fields(&names, &snapshot, Empty::EmptyString);
                    let start_by = latest_start(work.lease_until, config.timeout);
                    client
                        .update_contact(&snapshot.record_id, properties, start_by)
                        .await
                }
                Err(unreadable) => Ok(Err(unreadable)),
            },
            CrmWriter::Salesforce { client, config } => match snapshot_of(work) {
                Ok(snapshot) => {
                    let fields = mapping::fields(&salesforce_names(config), &snapshot, Empty::Null);
                    let object = snapshot.record_object.as_deref().unwrap_or("Lead");
                    Ok(client
                        .update_record(object, &snapshot.record_id, fields)
                        .await)
                }
                Err(unreadable) => Ok(Err(unreadable)),
            },
        }
    }
}

/// Every configured target's writer.
pub struct Writers {
    writers: Vec<CrmWriter>,
    policy: WritebackRetryConfig,
    probe_interval: Duration,
    /// CRMs whose credentials were refused, until when this process leaves them alone.
    paused: Mutex<HashMap<WritebackTarget, DateTime<Utc>>>,
}

impl Writers {
    pub fn from_config(
        crm: &CrmConfig,
        writeback: &WritebackConfig,
        clients: &Clients,
    ) -> Result<Writers, CrmError> {
        let mut writers = Vec::new();
        if let Some(c) = &writeback.callback {
            writers.push(CrmWriter::Callback(CallbackWriter::new(c)?));
        }
        if let Some((client, config)) = clients.hubspot.clone().zip(crm.hubspot.clone()) {
            writers.push(CrmWriter::HubSpot { client, config });
        }
        if let Some((client, config)) = clients.salesforce.clone().zip(crm.salesforce.clone()) {
            writers.push(CrmWriter::Salesforce { client, config });
        }
        Ok(Writers {
            writers,
            policy: writeback.retry.clone(),
            probe_interval: crm.probe_interval,
            paused: Mutex::new(HashMap::new()),
        })
    }

    /// How long a delivery may take before another worker may try it.
    pub fn lease(&self) -> Duration {
        let slowest = self
            .writers
            .iter()
            .map(CrmWriter::timeout)
            .max()
            .unwrap_or(Duration::from_secs(30));
        // Salesforce may fetch a token and try once more inside one delivery.
        slowest * 3 + Duration::from_secs(5)
    }

    pub async fn deliver(&self, work: &WritebackWork, now: DateTime<Utc>) -> WritebackResult {
        let target = work.target;
        if let Some(until) = self.paused_until(target, now) {
            return WritebackResult::Paused {
                until,
                reason: format!("{target} writebacks are paused: its credentials were refused"),
            };
        }
        let Some(writer) = self.writers.iter().find(|w| w.target() == target) else {
            return WritebackResult::Parked {
                reason: format!("target `{target}` is not configured in this process"),
            };
        };
        let outcome = match writer.write(work, now).await {
            Ok(outcome) => outcome,
            Err(spent) => {
                return WritebackResult::Later {
                    at: Utc::now()
                        + chrono::Duration::from_std(spent.wait)
                            .unwrap_or(chrono::Duration::minutes(1)),
                    reason: "HubSpot's rate-limit budget is spent until its window ends".into(),
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
                %target,
                reason,
                "the CRM refused leadlink's credentials: its writebacks are paused (job statuses \
                 unchanged) until a call works again; fix crm.{target}"
            );
            paused.insert(target, pause_until);
        } else {
            paused.remove(&target);
        }
        result
    }

    fn paused_until(&self, target: WritebackTarget, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let paused = self.paused.lock().expect("pause lock");
        paused.get(&target).copied().filter(|until| *until > now)
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
