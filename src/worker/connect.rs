//! The connect stage: lease the job, pass the account gate, send, record the outcome.

use super::decide::{self, Context, Decision, RelationshipCheck};
use super::{Services, WorkerError, publish_now};
use crate::account::{self, Gate};
use crate::connectsafely::{
    ApiError, ConnectRequest, ConnectResponse, RateLimit, RelationshipAnswer,
};
use crate::job::{Job, Status};
use crate::queue::Queue;
use crate::retry;
use crate::store::{Claim, Store, Transition};
use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

/// How far ahead a job paused by a refused key is parked; the probe brings it back sooner.
const PAUSED_PARK: chrono::Duration = chrono::Duration::days(7);

pub async fn handle<Q: Queue, S: Store>(
    services: &Services<Q, S>,
    reference: &str,
) -> Result<(), WorkerError> {
    let Ok(job_id) = Uuid::parse_str(reference) else {
        tracing::warn!(reference, "connect message without a job id; dropped");
        return Ok(());
    };
    let span = tracing::info_span!("job", job_id = %job_id, stage = "connect");
    run(services, job_id).instrument(span).await
}

async fn run<Q: Queue, S: Store>(s: &Services<Q, S>, job_id: Uuid) -> Result<(), WorkerError> {
    let lease =
        chrono::Duration::from_std(s.config.worker.lease).unwrap_or(chrono::Duration::minutes(2));
    let claimed = match s
        .store
        .claim(job_id, &s.worker_id, lease, Utc::now())
        .await?
    {
        Claim::Skip(why) => {
            tracing::debug!(why, "nothing to do");
            return Ok(());
        }
        Claim::Claimed(claimed) => claimed,
    };
    let result = attempt(s, &claimed.job, claimed.in_doubt).await;
    if let Err(WorkerError::Store(_)) = &result {
        // Give the job back at once unless a send may be in flight; the watchdog covers that.
        let _ = s.store.release(job_id, &s.worker_id).await;
    }
    result
}

async fn attempt<Q: Queue, S: Store>(
    s: &Services<Q, S>,
    job: &Job,
    in_doubt: bool,
) -> Result<(), WorkerError> {
    let now = Utc::now();
    if let Some(pause) = s.store.key_pause().await? {
        return park_paused(s, job, &pause.reason, now).await;
    }
    if let Gate::Held {
        until,
        hold_until,
        reason,
    } = account::gate(&s.store.account_state(&job.account_id).await?, now)
    {
        tracing::info!(%until, reason, "account may not send yet; job parked");
        return apply(
            s,
            job,
            Transition {
                status: Some(Status::Held),
                hold_until: hold_until.or(job.hold_until.filter(|h| *h > now)),
                retry_at: Some(until),
                ..Default::default()
            },
        )
        .await;
    }
    let profile = job
        .profile_urn
        .clone()
        .or_else(|| job.profile_id.clone())
        .unwrap_or_default();
    let mut calls = Vec::new();
    if in_doubt {
        // A previous worker died inside its call: the invitation may already be out.
        match s.api.relationship(&job.account_id, &profile).await {
            Ok(answer) => {
                calls.push(relationship_call(
                    &answer,
                    "in doubt after an interrupted send",
                ));
                if let Some(decision) =
                    decide::after_relationship(&answer, &RelationshipCheck::InDoubt)
                {
                    return settle(s, job, decision, None, calls, true).await;
                }
            }
            Err(ApiError::Unauthorized) => {
                return settle_pause(s, job, "ConnectSafely rejected the API key (401)").await;
            }
            Err(error) => {
                // Never resend blind: wait and look again.
                let delay = retry::backoff(
                    &s.config.retry,
                    job.attempts.max(1) as u32,
                    retry::jitter_sample(),
                );
                calls.push(json!({"call": "GET /relationship", "error": error.to_string()}));
                return settle(
                    s,
                    job,
                    Decision::Retry {
                        retry_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                        error: format!("relationship check before resend failed: {error}"),
                    },
                    None,
                    calls,
                    false,
                )
                .await;
            }
        }
    }
    let attempt = s
        .store
        .send_started(job.id, &s.worker_id, Utc::now())
        .await?;
    let request = ConnectRequest {
        account_id: (!job.account_id.is_empty()).then(|| job.account_id.clone()),
        profile_id: job
            .profile_urn
            .is_none()
            .then(|| job.profile_id.clone())
            .flatten(),
        profile_urn: job.profile_urn.clone(),
        custom_message: job.message.clone(),
    };
    let result = s.api.connect(&request).await;
    calls.push(connect_call(attempt, &result));
    let now = Utc::now();
    let context = Context {
        attempt: attempt.max(1) as u32,
        now,
        policy: &s.config.retry,
        already_connected_text: &s.config.connectsafely.already_connected_text,
        jitter: retry::jitter_sample(),
    };
    let mut decision = decide::after_connect(&result, &context);
    if let Decision::CheckRelationship { error } = &decision {
        let check = RelationshipCheck::Unclear400 {
            error: error.clone(),
        };
        decision = match s.api.relationship(&job.account_id, &profile).await {
            Ok(answer) => {
                calls.push(relationship_call(&answer, "unclear 400"));
                decide::after_relationship(&answer, &check).unwrap_or(Decision::Finish {
                    status: Status::Failed,
                    profile_urn: None,
                    error: Some(error.clone()),
                })
            }
            Err(e) => Decision::Finish {
                status: Status::Failed,
                profile_urn: None,
                error: Some(format!("{error}; the relationship check failed too: {e}")),
            },
        };
    }
    let rate_limit = result.as_ref().ok().and_then(|r| r.rate_limit.clone());
    // After a timeout or a 5xx the invitation may have gone out all the same: the next
    // attempt looks at the relationship before sending again.
    let settled = !matches!(decision, Decision::Retry { .. });
    settle(s, job, decision, rate_limit, calls, settled).await
}

/// Turns a decision into the job's next state and commits it with its history.
async fn settle<Q: Queue, S: Store>(
    s: &Services<Q, S>,
    job: &Job,
    decision: Decision,
    rate_limit: Option<RateLimit>,
    calls: Vec<serde_json::Value>,
    send_settled: bool,
) -> Result<(), WorkerError> {
    let now = Utc::now();
    let transition = match decision {
        Decision::Finish {
            status,
            profile_urn,
            error,
        } => Transition {
            status: Some(status),
            error,
            profile_urn,
            ..Default::default()
        },
        Decision::PauseKey { error } => {
            pause_key(s, &error, now).await?;
            Transition {
                status: Some(Status::Paused),
                error: Some(error),
                due_at: Some(now + PAUSED_PARK),
                ..Default::default()
            }
        }
        Decision::Hold {
            hold_until,
            blocked_until,
            retry_at,
            error,
        } => {
            tracing::warn!(account = %job.account_id, %hold_until, %retry_at, "account on hold");
            Transition {
                status: Some(Status::Held),
                hold_until: Some(hold_until),
                retry_at: Some(retry_at),
                account_hold: Some((hold_until, blocked_until, error)),
                ..Default::default()
            }
        }
        Decision::Retry { retry_at, error } => Transition {
            status: Some(Status::Retrying),
            error: Some(error),
            retry_at: Some(retry_at),
            ..Default::default()
        },
        Decision::CheckRelationship { error } => Transition {
            status: Some(Status::Failed),
            error: Some(error),
            ..Default::default()
        },
    };
    apply(
        s,
        job,
        Transition {
            send_settled,
            rate_limit,
            calls,
            ..transition
        },
    )
    .await
}

async fn apply<Q: Queue, S: Store>(
    s: &Services<Q, S>,
    job: &Job,
    transition: Transition,
) -> Result<(), WorkerError> {
    let (updated, publish) = s
        .store
        .transition(job.id, Some(&s.worker_id), transition, Utc::now())
        .await?;
    tracing::info!(status = %updated.status, retry_at = ?updated.retry_at, "job settled");
    publish_now(&s.store, &s.queue, publish).await;
    Ok(())
}

async fn park_paused<Q: Queue, S: Store>(
    s: &Services<Q, S>,
    job: &Job,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), WorkerError> {
    apply(
        s,
        job,
        Transition {
            status: Some(Status::Paused),
            error: Some(reason.to_string()),
            due_at: Some(now + PAUSED_PARK),
            ..Default::default()
        },
    )
    .await
}

async fn settle_pause<Q: Queue, S: Store>(
    s: &Services<Q, S>,
    job: &Job,
    reason: &str,
) -> Result<(), WorkerError> {
    let now = Utc::now();
    pause_key(s, reason, now).await?;
    park_paused(s, job, reason, now).await
}

async fn pause_key<Q: Queue, S: Store>(
    s: &Services<Q, S>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), WorkerError> {
    tracing::error!(
        reason,
        "ConnectSafely refused the API key: every worker stops sending until it works again; \
         fix connectsafely.api_key"
    );
    let interval = chrono::Duration::from_std(s.config.connectsafely.key_probe_interval)
        .unwrap_or(chrono::Duration::minutes(1));
    s.store.pause_key(reason, now, now + interval).await?;
    Ok(())
}

fn connect_call(attempt: i32, result: &Result<ConnectResponse, ApiError>) -> serde_json::Value {
    match result {
        Ok(r) => json!({
            "call": "POST /connect", "attempt": attempt, "status": r.status, "body": r.body,
            "rateLimit": r.rate_limit,
        }),
        Err(e) => json!({"call": "POST /connect", "attempt": attempt, "error": e.to_string()}),
    }
}

fn relationship_call(answer: &RelationshipAnswer, why: &str) -> serde_json::Value {
    match answer {
        RelationshipAnswer::Found(r) => json!({
            "call": "GET /relationship", "why": why, "connected": r.connected,
            "invitationSent": r.invitation_sent, "status": r.status,
        }),
        RelationshipAnswer::ProfileNotFound => {
            json!({"call": "GET /relationship", "why": why, "status": 404})
        }
    }
}
