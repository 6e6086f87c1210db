//! The connect stage's first step for a job whose event carried only the CRM record's id:
//! read the lead from the CRM, route it to its owner's account, and find out whether another
//! job already has that lead.

use super::WorkerError;
use super::connect::Attempt;
use crate::account::AccountId;
use crate::crm::api::CallFailure;
use crate::crm::enrich::CrmLead;
use crate::job::{Call, CallRecord, CallResult, Job, LeadDetails, Status};
use crate::lead::{MessageTemplate, Overflow, Resolution};
use crate::queue::Queue;
use crate::retry;
use crate::retry::RetryConfig;
use crate::store::{Attempts, Enriched, Enrichment, Store, Transition, Wait, Waiting};
use chrono::{DateTime, Utc};
use serde_json::json;

/// How soon a job that waits for another job's outcome looks again, at the least.
const SAME_LEAD_RECHECK: chrono::Duration = chrono::Duration::seconds(30);

/// The job's lead as the CRM gave it, and why it cannot be used, if it cannot.
pub fn lead_from_crm(
    crm: &CrmLead,
    account_id: AccountId,
    template: Option<&MessageTemplate>,
    overflow: Overflow,
    url_field: &str,
    read_at: DateTime<Utc>,
) -> (Enrichment, Option<String>) {
    let resolution = match crm.resolve(template, overflow) {
        Resolution::Invalid {
            profile_key,
            profile_id,
            profile_urn,
            message,
            ..
        } if crm.linkedin_url.is_none() => Resolution::Invalid {
            reason: format!("the CRM record has no LinkedIn URL (field `{url_field}`)"),
            profile_key,
            profile_id,
            profile_urn,
            message,
        },
        resolved => resolved,
    };
    let invalid = match &resolution {
        Resolution::Invalid { reason, .. } => Some(reason.clone()),
        Resolution::Usable(_) | Resolution::ReadFromCrm => None,
    };
    let enrichment = Enrichment {
        account_id,
        resolution,
        lead: LeadDetails {
            linkedin_url: crm.linkedin_url.clone(),
            first_name: crm.first_name.clone(),
            last_name: crm.last_name.clone(),
            company: crm.company.clone(),
        },
        priority: crm.priority,
        read_at,
    };
    (enrichment, invalid)
}

/// What the stage does with the CRM's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterRead {
    Lead(CrmLead),
    /// The CRM refused our credentials: not the lead's fault, so the job is `paused` until
    /// a read works again.
    Pause {
        reason: String,
    },
    Retry {
        retry_at: DateTime<Utc>,
        error: String,
    },
    Fail {
        error: String,
    },
}

pub fn after_read(
    outcome: Result<CrmLead, CallFailure>,
    attempt: u32,
    policy: &RetryConfig,
    now: DateTime<Utc>,
    jitter: f64,
) -> AfterRead {
    let (error, after) = match outcome {
        Ok(lead) => return AfterRead::Lead(lead),
        Err(CallFailure::Gone { reason }) => {
            return AfterRead::Fail {
                error: format!("the CRM record is gone: {reason}"),
            };
        }
        Err(CallFailure::Refused { reason }) => {
            return AfterRead::Fail {
                error: format!("the CRM refused to read the record: {reason}"),
            };
        }
        Err(CallFailure::AuthFailed { reason }) => return AfterRead::Pause { reason },
        Err(CallFailure::Retry { after, error }) => (error, after),
    };
    if !retry::may_retry(policy, attempt) {
        return AfterRead::Fail {
            error: format!("could not read the CRM record after {attempt} attempts: {error}"),
        };
    }
    AfterRead::Retry {
        retry_at: retry::next_try_at(policy, attempt, after, now, jitter),
        error: format!("could not read the CRM record: {error}"),
    }
}

/// The state of a job whose lead another job already has: that job's outcome once it has
/// one, its waiting state until then.
fn same_lead_as(other: &Job) -> CallRecord {
    CallRecord::SameLeadAs {
        same_lead_as: other.id,
        status: other.status,
    }
}

pub fn same_lead(other: &Job, now: DateTime<Utc>) -> Transition {
    let note = format!(
        "same LinkedIn profile as job {} (record {})",
        other.id, other.record_id
    );
    if other.status.is_final() {
        return Transition {
            profile_urn: other.profile_urn.clone(),
            calls: vec![same_lead_as(other)],
            ..Transition::to(other.status)
        };
    }
    Transition {
        hold_until: other.hold_until,
        retry_at: other.retry_at,
        due_at: Some(other.due_at.unwrap_or(now).max(now + SAME_LEAD_RECHECK)),
        calls: vec![same_lead_as(other)],
        ..Transition::with_error(other.status, format!("{note}; waiting for its outcome"))
    }
}

impl<Q: Queue, S: Store> Attempt<'_, Q, S> {
    /// Reads the lead; `Some(job)` when the job may go on to the send, `None` when it has
    /// been settled here.
    pub(super) async fn enrich(&self) -> Result<Option<Job>, WorkerError> {
        let (s, job) = (self.s, self.job);
        let now = Utc::now();
        let outcome = s.enricher.read(job).await;
        let call = CallRecord::Call {
            call: Call::CrmRead,
            why: None,
            result: CallResult::CrmRead {
                source: job.source,
                record: job.record_id.clone(),
                result: describe(&outcome),
            },
        };
        let attempt = u32::try_from(job.attempts).unwrap_or(0) + 1;
        let transition = match after_read(
            outcome,
            attempt,
            &s.config.retry,
            now,
            retry::random_jitter(),
        ) {
            AfterRead::Lead(crm) => return self.use_lead(crm, call, now).await,
            AfterRead::Pause { reason } => {
                tracing::error!(crm = %job.source, reason, "the CRM refused leadlink's credentials: reads wait until they work again; fix crm.{}", job.source);
                s.store.pause_crm(job.source.as_str(), &reason, now).await?;
                let interval = chrono::Duration::from_std(s.config.crm.probe_interval)
                    .unwrap_or(chrono::Duration::minutes(1));
                // One job per CRM reads again at each interval; a read or a writeback that
                // works releases them all.
                Transition {
                    due_at: Some(now + interval),
                    waiting: Some(Waiting {
                        on: Wait::Crm(job.source.to_string()),
                        retry_every: Some(interval),
                    }),
                    ..Transition::with_error(
                        Status::Paused,
                        format!("{} credentials refused: {reason}", job.source),
                    )
                }
            }
            AfterRead::Retry { retry_at, error } => Transition {
                attempts: Attempts::Count,
                ..Transition::retrying(retry_at, error)
            },
            AfterRead::Fail { error } => Transition::with_error(Status::Failed, error),
        };
        self.apply(Transition {
            calls: vec![call],
            ..transition
        })
        .await?;
        Ok(None)
    }

    /// `read_at`: when the CRM read started.
    async fn use_lead(
        &self,
        crm: CrmLead,
        call: CallRecord,
        read_at: DateTime<Utc>,
    ) -> Result<Option<Job>, WorkerError> {
        let (s, job) = (self.s, self.job);
        let released = s.store.resume_crm(job.source.as_str(), Utc::now()).await?;
        crate::outbox::publish_now(&s.store, &s.queue, released).await;
        let account_id = s.enricher.account_for(job.source, crm.owner_id.as_deref());
        let (enrichment, invalid) = lead_from_crm(
            &crm,
            account_id,
            s.template.as_ref(),
            s.config.message.overflow,
            &s.enricher.url_field(job.source),
            read_at,
        );
        match s
            .store
            .enrich(job.id, &self.owner, &enrichment, Utc::now())
            .await?
        {
            Enriched::SameLeadAs(other) => {
                tracing::info!(other = %other.id, "another job has this lead");
                let mut transition = same_lead(&other, Utc::now());
                transition.calls.insert(0, call);
                self.apply(transition).await?;
                Ok(None)
            }
            Enriched::Ready(job) => match invalid {
                None => Ok(Some(*job)),
                Some(reason) => {
                    self.apply(Transition {
                        calls: vec![call],
                        doubt: self.settled_before_send(),
                        ..Transition::with_error(Status::Invalid, reason)
                    })
                    .await?;
                    Ok(None)
                }
            },
        }
    }
}

fn describe(outcome: &Result<CrmLead, CallFailure>) -> serde_json::Value {
    match outcome {
        Ok(lead) => {
            json!({"linkedinUrl": lead.linkedin_url, "ownerId": lead.owner_id})
        }
        Err(CallFailure::Retry { error, .. }) => json!({"retry": error}),
        Err(CallFailure::Gone { reason }) => json!({"gone": reason}),
        Err(CallFailure::Refused { reason }) => json!({"refused": reason}),
        Err(CallFailure::AuthFailed { reason }) => json!({"authFailed": reason}),
    }
}
