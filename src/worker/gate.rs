//! The connect stage's account gate: ask the store (quota, holds, pacing, health, one send
//! per account at a time), read the account from the API when the store asks for it, and
//! park the job with the gate's status when it may not send now.

use super::WorkerError;
use super::connect::{Attempt, SendEffects};
use super::decide::{self, RelationshipCheck};
use crate::account::next_weekly_reset;
use crate::account::quota::{Quota, QuotaSource};
use crate::connectsafely::limits::ApiCall;
use crate::connectsafely::{AccountStatus, ApiError, QuotaResponse, QuotaWindow};
use crate::job::{Call, CallRecord, CallResult, QuotaSeen};
use crate::queue::Queue;
use crate::retry;
use crate::store::{AccountReading, Facts, SendGate, SendSlot, Store, Transition};
use chrono::{DateTime, Utc};

/// A wait for the per-minute budget short enough to sleep through while holding the job.
const SHORT_BUDGET_WAIT: chrono::Duration = chrono::Duration::seconds(2);

/// The quota window as leadlink keeps it; the reset is the API's when it gave one.
pub fn quota_from_window(window: &QuotaWindow, now: DateTime<Utc>) -> Quota {
    let count = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    Quota {
        limit: count(window.limit),
        used: count(window.used),
        remaining: count(window.remaining),
        reset_at: window.reset_at.unwrap_or_else(|| next_weekly_reset(now)),
        observed_at: now,
        source: QuotaSource::Endpoint,
    }
}

/// What a job holds of its account when it asks for API budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holding {
    /// Nothing yet (before the gate).
    Nothing,
    /// The send slot it took at the gate, given back if the job is parked.
    SendSlot,
}

impl<Q: Queue, S: Store> Attempt<'_, Q, S> {
    /// `true` when the job holds the account's send lease and one of its requests; `false`
    /// when the job has been parked (or settled) instead.
    pub(super) async fn pass_account_gate(
        &self,
        calls: &mut Vec<CallRecord>,
    ) -> Result<bool, WorkerError> {
        let (s, job) = (self.s, self.job);
        let policy = s.config.accounts.policy_for(&job.account_id);
        let mut facts = Facts::Recorded;
        loop {
            let now = Utc::now();
            let gate = s
                .store
                .take_send_slot(job, &policy, self.lease, facts, now)
                .await?;
            let parked = match gate {
                SendGate::Send => return Ok(true),
                SendGate::NeedReading => {
                    if !self.read_account(calls, now).await? {
                        return Ok(false);
                    }
                    facts = Facts::JustRead;
                    continue;
                }
                SendGate::Wait(parked) => parked,
            };
            tracing::info!(until = %parked.until, reason = parked.reason, status = ?parked.status, "account may not send this job now; parked");
            let transition =
                decide::parked_at_gate(job, parked, policy.quota_refresh, self.lease, now);
            self.apply(Transition {
                calls: std::mem::take(calls),
                // Nothing is in flight: any in-doubt check before this found no invitation.
                doubt: self.settled_before_send(),
                ..transition
            })
            .await?;
            return Ok(false);
        }
    }

    /// Takes room for `calls` in the per-minute API budget shared by every worker, waiting
    /// a moment if need be; `false` when the wait would be long and the job was parked until
    /// the budget has room (giving back the send slot it holds, if it holds one).
    pub(super) async fn api_budget(
        &self,
        calls: &[ApiCall],
        holding: Holding,
    ) -> Result<bool, WorkerError> {
        let (s, job) = (self.s, self.job);
        let limits = &s.config.connectsafely.rate_limits;
        let scopes: Vec<(String, u32)> = calls
            .iter()
            .flat_map(|call| limits.scopes(*call, &job.account_id))
            .collect();
        loop {
            let now = Utc::now();
            let Some(until) = s.store.take_api_calls(&scopes, now).await? else {
                return Ok(true);
            };
            if until - now <= SHORT_BUDGET_WAIT {
                tokio::time::sleep((until - now).to_std().unwrap_or_default()).await;
                continue;
            }
            tracing::info!(%until, "per-minute API budget spent; job parked until it has room");
            self.apply(Transition {
                due_at: Some(until),
                slot: match holding {
                    Holding::SendSlot => SendSlot::Returned,
                    Holding::Nothing => SendSlot::Spent,
                },
                ..Transition::unchanged(job)
            })
            .await?;
            return Ok(false);
        }
    }

    /// Reads the account's quota and status; `false` when that failed and the job was
    /// parked to try again later.
    /// `asked_at`: when the gate asked for the reading (see `AccountReading::asked_at`).
    async fn read_account(
        &self,
        calls: &mut Vec<CallRecord>,
        asked_at: DateTime<Utc>,
    ) -> Result<bool, WorkerError> {
        let (s, job) = (self.s, self.job);
        if !self
            .api_budget(
                &[ApiCall::AccountEndpoint, ApiCall::AccountEndpoint],
                Holding::Nothing,
            )
            .await?
        {
            return Ok(false);
        }
        let quota = s.api.quota(&job.account_id).await;
        let status = match &quota {
            Ok(_) => Some(s.api.account_status(&job.account_id).await),
            Err(_) => None,
        };
        let now = Utc::now();
        let failure = match account_answer(&quota, status.as_ref(), asked_at, now) {
            AccountAnswer::Reading(answer) => {
                let (mut reading, call) = *answer;
                reading.counts_shadow_sends = s.config.accounts.policy_for(&job.account_id).shadow;
                calls.push(call);
                if let Some(reason) = &reading.disabled {
                    tracing::warn!(account = %job.account_id, reason, "the account cannot send; its jobs are paused");
                }
                s.store
                    .record_account_reading(&job.account_id, &reading, now)
                    .await?;
                return Ok(true);
            }
            AccountAnswer::Nothing => return Ok(true),
            AccountAnswer::Failed(failure) => failure,
        };
        calls.push(CallRecord::failed(Call::AccountReading, None, failure));
        if matches!(failure, ApiError::Unauthorized) {
            let reason = "ConnectSafely rejected the API key (401)";
            self.pause_key(reason, now).await?;
            self.park_paused(reason, now).await?;
            return Ok(false);
        }
        // Never send on an account whose quota could not be learnt: look again later.
        let decision = decide::look_again(
            &s.config.retry,
            u32::try_from(job.attempts.max(1)).unwrap_or(1),
            now,
            retry::random_jitter(),
            format!("could not read the account's quota: {failure}"),
        );
        let effects = SendEffects {
            calls: std::mem::take(calls),
            doubt: self.settled_before_send(),
            ..SendEffects::default()
        };
        self.settle(decision, effects).await?;
        Ok(false)
    }

    /// The relationship check before a first send. `false` when it settled the job (already
    /// connected, someone else's invitation pending, unknown profile) or could not be made;
    /// the request taken from the account's week is given back then.
    pub(super) async fn relationship_allows_send(
        &self,
        calls: &mut Vec<CallRecord>,
    ) -> Result<bool, WorkerError> {
        let (s, job) = (self.s, self.job);
        let policy = s.config.accounts.policy_for(&job.account_id);
        // The endpoint takes a profile id; a job known only by URN skips the check.
        let Some(profile_id) = job
            .profile_id
            .as_deref()
            .filter(|_| policy.relationship_check)
        else {
            return Ok(true);
        };
        let decision = match s.api.relationship(&job.account_id, profile_id).await {
            Ok(answer) => {
                calls.push(super::connect::relationship_call(&answer, "before sending"));
                match decide::after_relationship(&answer, &RelationshipCheck::BeforeSend) {
                    None => return Ok(true),
                    Some(decision) => decision,
                }
            }
            Err(ApiError::Unauthorized) => decide::NextStep::PauseKey {
                error: "ConnectSafely rejected the API key (401)".into(),
            },
            Err(error) => {
                calls.push(CallRecord::failed(
                    Call::Relationship,
                    Some("before sending"),
                    &error,
                ));
                decide::look_again(
                    &s.config.retry,
                    u32::try_from(job.attempts.max(1)).unwrap_or(1),
                    Utc::now(),
                    retry::random_jitter(),
                    format!("relationship check before sending failed: {error}"),
                )
            }
        };
        let effects = SendEffects {
            calls: std::mem::take(calls),
            doubt: self.settled_before_send(),
            slot: SendSlot::Returned,
            ..SendEffects::default()
        };
        self.settle(decision, effects).await?;
        Ok(false)
    }
}

/// What the quota and status endpoints said, as the gate records it.
enum AccountAnswer<'a> {
    /// A reading to record, with the call for the history.
    Reading(Box<(AccountReading, CallRecord)>),
    /// No reading: the error says why.
    Failed(&'a ApiError),
    /// The status was not asked.
    Nothing,
}

/// Turns the two answers into a reading. An account ConnectSafely does not know is learnt
/// once for the account, not per job: the reading disables it with a reason that names it,
/// and it is asked again at `quota_refresh`, so its jobs resume by themselves once it appears.
fn account_answer<'a>(
    quota: &'a Result<QuotaResponse, ApiError>,
    status: Option<&'a Result<AccountStatus, ApiError>>,
    asked_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AccountAnswer<'a> {
    match (quota, status) {
        (Err(ApiError::AccountNotFound { account_id, .. }), _)
        | (_, Some(Err(ApiError::AccountNotFound { account_id, .. }))) => {
            let reason = format!(
                "ConnectSafely does not know the account {account_id} (404): check the \
                 event's accountId or add the account to the API key"
            );
            let call = CallRecord::failed(Call::AccountQuota, None, &reason);
            let reading = AccountReading {
                asked_at,
                quota: None,
                disabled: Some(reason),
                counts_shadow_sends: false,
            };
            AccountAnswer::Reading(Box::new((reading, call)))
        }
        (Ok(quota), Some(Ok(status))) => {
            let reading = AccountReading {
                asked_at,
                quota: quota.connect.as_ref().map(|w| quota_from_window(w, now)),
                disabled: status.blocks_sending(),
                counts_shadow_sends: false,
            };
            let call = CallRecord::Call {
                call: Call::AccountReading,
                why: None,
                result: CallResult::AccountRead {
                    quota: quota.connect.as_ref().map(|w| QuotaSeen {
                        used: w.used,
                        limit: w.limit,
                        remaining: w.remaining,
                        reset_at: w.reset_at,
                    }),
                    status: status.status.clone(),
                    enabled: status.enabled,
                },
            };
            AccountAnswer::Reading(Box::new((reading, call)))
        }
        (Err(e), _) | (_, Some(Err(e))) => AccountAnswer::Failed(e),
        (Ok(_), None) => AccountAnswer::Nothing,
    }
}
