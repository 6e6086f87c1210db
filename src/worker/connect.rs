//! The connect stage: lease the job, pass the account gate, send, record the outcome.

use super::decide::{self, Context, NextStep, PAUSED_PARK, RelationshipCheck};
use super::gate::Holding;
use super::{Services, WorkerError};
use crate::connectsafely::limits::ApiCall;
use crate::connectsafely::{
    ApiError, ConnectRequest, ConnectResponse, RateLimit, RelationshipAnswer,
};
use crate::job::{Call, CallRecord, Job, Status};
use crate::outbox::publish_now;
use crate::queue::Queue;
use crate::retry;
use crate::store::{Attempts, Claim, Doubt, SendSlot, SendStart, Store, StoreError, Transition};
use crate::telemetry::metrics;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// Tries at committing an outcome before leaving it to the lease watchdog.
const COMMIT_TRIES: u32 = 3;

/// One claim of one job: the lease token and what the stage needs alongside it.
pub(super) struct Attempt<'a, Q: Queue, S: Store> {
    pub(super) s: &'a Services<Q, S>,
    pub(super) job: &'a Job,
    /// Unique per claim, so two handlers of one process can never share a lease.
    pub(super) owner: String,
    pub(super) lease: chrono::Duration,
    /// The job's doubt as the claim saw it: settling "nothing went out" clears only that
    /// doubt, never one another job's send raised since.
    pub(super) in_doubt_since: Option<DateTime<Utc>>,
    /// The CRM called the lead off while this job's send was in doubt.
    pub(super) called_off: bool,
}

/// What a send's answer means besides the decision: the calls behind it, the doubt, the
/// account's slot and its rate-limit headers.
#[derive(Debug, Default)]
pub(super) struct SendEffects {
    pub calls: Vec<CallRecord>,
    pub doubt: Doubt,
    pub slot: SendSlot,
    pub rate_limit: Option<RateLimit>,
}

impl SendEffects {
    pub fn calls(calls: Vec<CallRecord>) -> SendEffects {
        SendEffects {
            calls,
            ..SendEffects::default()
        }
    }
}

pub async fn handle<Q: Queue, S: Store>(
    services: &Services<Q, S>,
    job_id: Uuid,
) -> Result<(), WorkerError> {
    let span = tracing::info_span!("job", job_id = %job_id, stage = "connect");
    run(services, job_id).instrument(span).await
}

async fn run<Q: Queue, S: Store>(s: &Services<Q, S>, job_id: Uuid) -> Result<(), WorkerError> {
    let lease =
        chrono::Duration::from_std(s.config.worker.lease).unwrap_or(chrono::Duration::minutes(2));
    let owner = format!("{}:{}", s.worker_id, Uuid::new_v4());
    // On any error below the lease stays taken: the watchdog row brings the job back once it
    // expires, with a relationship check if a send had started.
    let claimed = match s.store.claim(job_id, &owner, lease, Utc::now()).await? {
        Claim::Skip(why) => {
            tracing::debug!(why, "nothing to do");
            return Ok(());
        }
        Claim::Claimed(claimed) => claimed,
    };
    let mut job = claimed.job;
    if job.enrich {
        let reading = Attempt {
            s,
            job: &job,
            owner: owner.clone(),
            lease,
            in_doubt_since: claimed.in_doubt_since,
            called_off: claimed.called_off_at.is_some(),
        };
        let Some(enriched) = reading.enrich().await? else {
            return Ok(());
        };
        job = enriched;
    }
    let attempt = Attempt {
        s,
        job: &job,
        owner,
        lease,
        in_doubt_since: claimed.in_doubt_since,
        called_off: claimed.called_off_at.is_some(),
    };
    attempt.run().await
}

/// What settling a doubt before the send found.
enum DoubtSettled {
    /// The job has been settled or parked; this attempt is over.
    Done,
    /// Nothing went out: the job may send, with these calls for its history.
    NothingWentOut(Vec<CallRecord>),
}

impl<Q: Queue, S: Store> Attempt<'_, Q, S> {
    /// The stages of one attempt: settle a doubt, pass the gate, send, settle the answer.
    async fn run(&self) -> Result<(), WorkerError> {
        let (s, job) = (self.s, self.job);
        let now = Utc::now();
        if let Some(pause) = s.store.key_pause().await? {
            return self.park_paused(&pause.reason, now).await;
        }
        if job.account_id.trim().is_empty() {
            // Every account call would go to `/account//...`; nothing can be sent.
            let error = "no ConnectSafely account: the lead's CRM owner is not mapped, and \
                         neither the source's account_id nor connectsafely.default_account_id \
                         is set";
            return self
                .apply(Transition {
                    doubt: self.settled_before_send(),
                    ..Transition::with_error(Status::Invalid, error)
                })
                .await;
        }
        let in_doubt = self.in_doubt_since.is_some();
        let mut calls = if in_doubt {
            match self.settle_doubt(now).await? {
                DoubtSettled::Done => return Ok(()),
                DoubtSettled::NothingWentOut(calls) if self.called_off => {
                    let why = "called off by the CRM while a send was in doubt; the relationship \
                               check found that nothing had gone out";
                    return self
                        .apply(Transition {
                            calls,
                            doubt: self.settled_before_send(),
                            ..Transition::with_error(Status::Cancelled, why)
                        })
                        .await;
                }
                DoubtSettled::NothingWentOut(calls) => calls,
            }
        } else {
            Vec::new()
        };
        // Only now, right before a send, does the job take one of the account's requests.
        if !self.pass_account_gate(&mut calls).await? {
            return Ok(());
        }
        let shadow = s.config.accounts.policy_for(&job.account_id).shadow;
        // Counted once the account lets the job send, so that waiting jobs spend nothing.
        let mut budget = Vec::new();
        if !shadow {
            budget.push(ApiCall::Connect);
        }
        if !in_doubt {
            budget.push(ApiCall::Relationship);
        }
        if !self.api_budget(&budget, Holding::SendSlot).await? {
            return Ok(());
        }
        if !in_doubt && !self.relationship_allows_send(&mut calls).await? {
            return Ok(());
        }
        if shadow {
            return self.end_shadowed(calls).await;
        }
        let Some(attempt) = self.start_send(&mut calls).await? else {
            return Ok(());
        };
        let result = s.api.connect(&self.connect_request()).await;
        calls.push(CallRecord::connect(attempt, &result));
        self.settle_answer(attempt, result, calls).await
    }

    /// Shadow mode: the job's turn has come and nothing is sent. It ends `shadowed` with
    /// `retryAt` = now, the time it would have gone, and its turn counts as a send.
    async fn end_shadowed(&self, calls: Vec<CallRecord>) -> Result<(), WorkerError> {
        let now = Utc::now();
        tracing::info!("shadow mode: the invitation would go out now; nothing was sent");
        self.apply(Transition {
            calls,
            retry_at: Some(now),
            doubt: self.settled_before_send(),
            slot: SendSlot::Shadow,
            ..Transition::to(Status::Shadowed)
        })
        .await
    }

    /// A previous attempt may have gone out without our hearing the answer: the
    /// relationship says whether it did, and the job is settled if it did.
    async fn settle_doubt(&self, now: DateTime<Utc>) -> Result<DoubtSettled, WorkerError> {
        let (s, job) = (self.s, self.job);
        if !self
            .api_budget(&[ApiCall::Relationship], Holding::Nothing)
            .await?
        {
            return Ok(DoubtSettled::Done);
        }
        let mut calls = Vec::new();
        match s
            .api
            .relationship(&job.account_id, &self.checked_profile())
            .await
        {
            Ok(answer) => {
                calls.push(relationship_call(
                    &answer,
                    "in doubt after an unanswered send",
                ));
                if !decide::sees_invitation(&answer, self.check_may_miss_invitation()) {
                    self.doubt_unseen(calls, now).await?;
                } else if let Some(decision) =
                    decide::after_relationship(&answer, &RelationshipCheck::InDoubt)
                {
                    let effects = SendEffects {
                        calls,
                        doubt: self.settled_before_send(),
                        ..SendEffects::default()
                    };
                    self.settle(decision, effects).await?;
                } else if !retry::may_retry(
                    &s.config.retry,
                    u32::try_from(job.attempts).unwrap_or(0),
                ) {
                    // Nothing went out and the tries are spent.
                    let error = format!(
                        "gave up after {} attempts: {}",
                        job.attempts,
                        job.error.clone().unwrap_or_default()
                    );
                    self.apply(Transition {
                        calls,
                        doubt: self.settled_before_send(),
                        ..Transition::with_error(Status::Failed, error)
                    })
                    .await?;
                } else {
                    return Ok(DoubtSettled::NothingWentOut(calls));
                }
            }
            Err(ApiError::Unauthorized) => {
                let reason = "ConnectSafely rejected the API key (401)";
                self.pause_key(reason, now).await?;
                self.park_paused(reason, now).await?;
            }
            Err(error) => {
                // Never resend blind: wait and look again.
                calls.push(CallRecord::failed(Call::Relationship, None, &error));
                let decision = decide::look_again(
                    &s.config.retry,
                    u32::try_from(job.attempts.max(1)).unwrap_or(1),
                    now,
                    retry::random_jitter(),
                    format!("relationship check before resend failed: {error}"),
                );
                self.settle(decision, SendEffects::calls(calls)).await?;
            }
        }
        Ok(DoubtSettled::Done)
    }

    fn connect_request(&self) -> ConnectRequest {
        let job = self.job;
        ConnectRequest {
            account_id: (!job.account_id.is_empty()).then(|| job.account_id.to_string()),
            profile_id: job
                .profile_urn
                .is_none()
                .then(|| job.profile_id.clone())
                .flatten(),
            profile_urn: job.profile_urn.clone(),
            custom_message: job.message.clone(),
        }
    }

    /// Records the answer to the POST. After a timeout or a 5xx the invitation may have gone
    /// out all the same, and a 400 that does not say why is unclear: the relationship settles
    /// both, where it can.
    async fn settle_answer(
        &self,
        attempt: i32,
        result: Result<ConnectResponse, ApiError>,
        mut calls: Vec<CallRecord>,
    ) -> Result<(), WorkerError> {
        let s = self.s;
        let context = Context {
            attempt: u32::try_from(attempt.max(1)).unwrap_or(1),
            now: Utc::now(),
            policy: &s.config.retry,
            already_connected_text: &s.config.connectsafely.already_connected_text,
            jitter: retry::random_jitter(),
        };
        let mut decision = decide::after_connect(&result, &context);
        let mut settled = !may_have_sent(&result);
        let check = match &decision {
            NextStep::CheckRelationship { error } => Some(RelationshipCheck::Unclear400 {
                error: error.clone(),
            }),
            // Giving up: find out whether one of the failed tries went out after all.
            NextStep::Finish {
                status: Status::Failed,
                ..
            } if !settled => Some(RelationshipCheck::InDoubt),
            _ => None,
        };
        if let Some(check) = check {
            match s
                .api
                .relationship(&self.job.account_id, &self.checked_profile())
                .await
            {
                Ok(answer) => {
                    calls.push(relationship_call(&answer, "settling an unclear answer"));
                    if check == RelationshipCheck::InDoubt
                        && !decide::sees_invitation(&answer, self.check_may_miss_invitation())
                    {
                        // The job stays in doubt: `Failed` then keeps the lead's identity.
                    } else {
                        settled = true;
                        if let Some(found) = decide::after_relationship(&answer, &check) {
                            decision = found;
                        }
                    }
                }
                Err(e) => {
                    calls.push(CallRecord::failed(Call::Relationship, None, &e));
                    if !settled {
                        decision = decide::look_again(
                            &s.config.retry,
                            context.attempt,
                            Utc::now(),
                            context.jitter,
                            format!("could not learn whether the invitation went out: {e}"),
                        );
                    }
                }
            }
        }
        let refused = result
            .as_ref()
            .is_ok_and(|r| !(200..300).contains(&r.status) && !may_have_sent(&result));
        let effects = SendEffects {
            calls,
            doubt: if settled { Doubt::Settled } else { Doubt::Keep },
            slot: if refused {
                SendSlot::Returned
            } else {
                SendSlot::Spent
            },
            rate_limit: result.ok().and_then(|r| r.rate_limit),
        };
        self.settle(decision, effects).await
    }

    /// Nothing of this attempt has gone out yet: settling the doubt clears only the one the
    /// claim saw, never one another job's send raised since.
    pub(super) fn settled_before_send(&self) -> Doubt {
        Doubt::SettledIfStill(self.in_doubt_since)
    }

    /// The profile as the relationship check takes it: the slug it is documented for when
    /// we have one, else the URN.
    fn checked_profile(&self) -> String {
        self.job
            .profile_id
            .clone()
            .or_else(|| self.job.profile_urn.clone())
            .unwrap_or_default()
    }

    /// Whether a 404 to the relationship check may only mean that the check and the send
    /// named the profile differently: asked by URN (the endpoint is documented for the slug),
    /// or asked by slug after a send by URN (a vanity URL can change).
    fn check_may_miss_invitation(&self) -> bool {
        self.job.profile_id.is_none() || self.job.profile_urn.is_some()
    }

    /// Marks the send as started, right before the POST. `None` when it must not start:
    /// the job was parked again (in doubt since its claim, or too little lease left after
    /// waiting on the store), with the slot it took at the gate given back.
    async fn start_send(&self, calls: &mut Vec<CallRecord>) -> Result<Option<i32>, WorkerError> {
        let s = self.s;
        let started = s
            .store
            .send_started(
                self.job.id,
                &self.owner,
                self.in_doubt_since,
                self.lease,
                Utc::now,
            )
            .await;
        let reason = match started {
            Ok(SendStart::Started {
                attempt,
                lease_until,
            }) if decide::lease_covers_send(
                lease_until,
                Utc::now(),
                s.config.connectsafely.timeout,
            ) =>
            {
                return Ok(Some(attempt));
            }
            Ok(SendStart::Started { .. }) => {
                "too little of the lease was left when the send could start"
            }
            Ok(SendStart::NowInDoubt) => {
                "another job's send may have invited this lead since the claim"
            }
            Err(error) => {
                // The POST never started: the account's slot is not spent.
                if let Err(give_back) = s
                    .store
                    .give_back_send_slot(self.job.id, &self.owner, Utc::now())
                    .await
                {
                    tracing::warn!(%give_back, "could not give the send slot back; the next claim does");
                }
                return Err(error.into());
            }
        };
        tracing::warn!(reason, "send not started; the job goes again at once");
        self.apply(Transition {
            calls: std::mem::take(calls),
            due_at: Some(Utc::now()),
            slot: SendSlot::Returned,
            ..Transition::unchanged(self.job)
        })
        .await?;
        Ok(None)
    }

    /// An in-doubt job whose relationship check cannot see the invitation: it looks again
    /// later, and once its tries are spent it ends `failed` still in doubt, which keeps the
    /// lead's identity, so no later event sends a second invitation.
    async fn doubt_unseen(
        &self,
        calls: Vec<CallRecord>,
        now: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        let s = self.s;
        let attempts = u32::try_from(self.job.attempts.max(1)).unwrap_or(1);
        let why = "the relationship check answered 404 for a profile the send may have named \
                   differently (by URN), so it cannot see the invitation";
        let transition = if retry::may_retry(&s.config.retry, attempts) {
            match decide::look_again(
                &s.config.retry,
                attempts,
                now,
                retry::random_jitter(),
                format!("could not learn whether the invitation went out: {why}"),
            ) {
                NextStep::Retry { retry_at, error } => Transition::retrying(retry_at, error),
                other => return self.settle(other, SendEffects::calls(calls)).await,
            }
        } else {
            Transition::with_error(
                Status::Failed,
                format!(
                    "gave up after {} attempts; an invitation may have gone out, so this lead \
                     is not sent again ({why})",
                    self.job.attempts
                ),
            )
        };
        self.apply(Transition {
            calls,
            attempts: Attempts::Count,
            ..transition
        })
        .await
    }

    /// Turns a decision into the job's next state and commits it with its history.
    pub(super) async fn settle(
        &self,
        decision: NextStep,
        effects: SendEffects,
    ) -> Result<(), WorkerError> {
        let now = Utc::now();
        match &decision {
            NextStep::PauseKey { error } => self.pause_key(error, now).await?,
            NextStep::Hold {
                hold_until,
                retry_at,
                ..
            } => {
                tracing::warn!(account = %self.job.account_id, %hold_until, %retry_at, "account on hold");
            }
            _ => {}
        }
        self.apply(Transition {
            calls: effects.calls,
            doubt: effects.doubt,
            slot: effects.slot,
            rate_limit: effects.rate_limit,
            ..decide::transition_for(decision, now)
        })
        .await
    }

    /// Commits a transition, trying again briefly: an outcome we know is worth keeping.
    pub(super) async fn apply(&self, transition: Transition) -> Result<(), WorkerError> {
        let sent = transition.calls.iter().any(CallRecord::is_connect);
        let mut tries = 0;
        let (job, publish) = loop {
            tries += 1;
            match self
                .s
                .store
                .transition(
                    self.job.id,
                    Some(&self.owner),
                    transition.clone(),
                    Utc::now(),
                )
                .await
            {
                Ok(done) => break done,
                Err(StoreError::Database(error)) if tries < COMMIT_TRIES => {
                    tracing::warn!(%error, tries, "could not commit the outcome; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        tracing::info!(status = %job.status, retry_at = ?job.retry_at, "job settled");
        if sent {
            metrics::connect_request(job.status);
        }
        publish_now(&self.s.store, &self.s.queue, publish).await;
        Ok(())
    }

    pub(super) async fn park_paused(
        &self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        self.apply(Transition::paused_for_key(reason, now + PAUSED_PARK))
            .await
    }

    pub(super) async fn pause_key(
        &self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        tracing::error!(
            reason,
            "ConnectSafely refused the API key: every worker stops sending until it works again; \
             fix connectsafely.api_key"
        );
        let interval = chrono::Duration::from_std(self.s.config.connectsafely.key_probe_interval)
            .unwrap_or(chrono::Duration::minutes(1));
        self.s.store.pause_key(reason, now, now + interval).await?;
        Ok(())
    }
}

/// An answer that does not rule out that the invitation went out.
fn may_have_sent(result: &Result<ConnectResponse, ApiError>) -> bool {
    match result {
        Ok(response) => response.status == 408 || response.status >= 500,
        Err(ApiError::Unauthorized) => false,
        Err(_) => true,
    }
}

pub(super) fn relationship_call(answer: &RelationshipAnswer, why: &str) -> CallRecord {
    match answer {
        RelationshipAnswer::Found(r) => CallRecord::relationship(Some(r), why),
        RelationshipAnswer::ProfileNotFound => CallRecord::relationship(None, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answered(status: u16) -> Result<ConnectResponse, ApiError> {
        Ok(ConnectResponse::parse(status, &HeaderMap::new(), b"{}"))
    }

    #[test]
    fn only_unanswered_calls_and_server_errors_may_have_sent() {
        assert!(may_have_sent(&Err(ApiError::Timeout)));
        assert!(may_have_sent(&Err(ApiError::Transport("reset".into()))));
        assert!(may_have_sent(&answered(502)));
        assert!(may_have_sent(&answered(408)));
        for definite in [200, 400, 401, 404, 429] {
            assert!(!may_have_sent(&answered(definite)), "{definite}");
        }
        assert!(!may_have_sent(&Err(ApiError::Unauthorized)));
    }
}
