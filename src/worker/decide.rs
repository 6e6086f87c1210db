//! What a worker does with an API answer: pure functions, clock and randomness passed in.

use crate::account;
use crate::connectsafely::{ApiError, ConnectResponse, RelationshipAnswer};
use crate::job::{Job, Status};
use crate::retry;
use crate::retry::RetryConfig;
use crate::store::{AccountHold, GateWait, Transition, Wait, Waiting};
use chrono::{DateTime, Duration, Utc};

/// The next step for a job after a call to the API.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    /// The job ends with this status.
    Finish {
        status: Status,
        profile_urn: Option<String>,
        error: Option<String>,
    },
    /// Settle an unclear answer with `GET /relationship` before deciding.
    CheckRelationship { error: String },
    /// The API key was refused: every worker stops sending until a probe succeeds.
    PauseKey { error: String },
    /// The account is on hold; the job waits until `retry_at`.
    Hold {
        hold_until: DateTime<Utc>,
        blocked_until: Option<DateTime<Utc>>,
        retry_at: DateTime<Utc>,
        error: String,
    },
    /// A transient failure; try again at `retry_at`.
    Retry {
        retry_at: DateTime<Utc>,
        error: String,
    },
}

/// Everything besides the answer that a decision depends on.
pub struct Context<'a> {
    /// This attempt's number, 1-based.
    pub attempt: u32,
    pub now: DateTime<Utc>,
    pub policy: &'a RetryConfig,
    /// Case-insensitive text of a 400 that means "already connected".
    pub already_connected_text: &'a str,
    /// Uniform in [-1, 1].
    pub jitter: f64,
}

impl Context<'_> {
    fn retry_or_fail(&self, error: String, retry_after: Option<std::time::Duration>) -> NextStep {
        if !retry::may_retry(self.policy, self.attempt) {
            return NextStep::Finish {
                status: Status::Failed,
                profile_urn: None,
                error: Some(format!("gave up after {} attempts: {error}", self.attempt)),
            };
        }
        NextStep::Retry {
            retry_at: retry::next_try_at(
                self.policy,
                self.attempt,
                retry_after,
                self.now,
                self.jitter,
            ),
            error,
        }
    }
}

/// What to do after `POST /connect`: one arm per documented answer, in the order of
/// README's table "What leadlink does with each ConnectSafely answer" (kept in one function
/// so that the table and the code can be read side by side).
pub fn after_connect(result: &Result<ConnectResponse, ApiError>, ctx: &Context<'_>) -> NextStep {
    let response = match result {
        Ok(response) => response,
        Err(error) => return ctx.retry_or_fail(error.to_string(), None),
    };
    let error_text = || {
        response
            .error
            .clone()
            .unwrap_or_else(|| format!("HTTP {}", response.status))
    };
    match response.status {
        200..=299 => NextStep::Finish {
            status: Status::Sent,
            profile_urn: response.profile_urn.clone(),
            error: None,
        },
        400 => {
            let error = error_text();
            let needle = ctx.already_connected_text.to_lowercase();
            if error.to_lowercase().contains(&needle) {
                NextStep::Finish {
                    status: Status::AlreadyConnected,
                    profile_urn: None,
                    error: None,
                }
            } else if response.error.is_none() {
                // A 400 that says nothing may still be the "already connected" case.
                NextStep::CheckRelationship { error }
            } else {
                NextStep::Finish {
                    status: Status::Failed,
                    profile_urn: None,
                    error: Some(error),
                }
            }
        }
        401 => NextStep::PauseKey {
            error: format!("ConnectSafely rejected the API key: {}", error_text()),
        },
        404 => NextStep::Finish {
            status: Status::ProfileNotFound,
            profile_urn: None,
            error: Some(error_text()),
        },
        429 => match response.hold_until {
            Some(hold_until) => {
                // A hold means the week's limit was exceeded: nothing goes out before the
                // weekly reset either, as the API says it, or its documented Monday rule.
                let blocked_until = response
                    .weekly_reset
                    .or_else(|| {
                        response
                            .rate_limit
                            .as_ref()
                            .filter(|l| l.remaining.is_some_and(|r| r <= 0))
                            .and_then(|l| l.reset)
                    })
                    .or_else(|| Some(account::next_weekly_reset(ctx.now)));
                let retry_at = blocked_until.map_or(hold_until, |b| b.max(hold_until));
                NextStep::Hold {
                    hold_until,
                    blocked_until,
                    retry_at: retry_at.max(ctx.now),
                    error: error_text(),
                }
            }
            None => ctx.retry_or_fail(
                format!("rate limited: {}", error_text()),
                Some(
                    response
                        .retry_after
                        .unwrap_or(std::time::Duration::from_secs(60)),
                ),
            ),
        },
        408 | 500..=599 => ctx.retry_or_fail(error_text(), response.retry_after),
        _ => NextStep::Finish {
            status: Status::Failed,
            profile_urn: None,
            error: Some(error_text()),
        },
    }
}

/// It is unknown whether an invitation went out: look again after the backoff. Never ends
/// the job, since that would free the lead for a second invitation.
pub fn look_again(
    policy: &RetryConfig,
    attempt: u32,
    now: DateTime<Utc>,
    jitter: f64,
    error: String,
) -> NextStep {
    let delay = retry::backoff(policy, attempt, jitter);
    NextStep::Retry {
        retry_at: now + Duration::from_std(delay).unwrap_or(Duration::hours(1)),
        error,
    }
}

/// Whether a relationship answer can see an invitation we may have sent. The endpoint is
/// documented for a profile id (the slug); when the check and the send may have named the
/// profile differently (`names_may_differ`: asked by URN, or sent by URN), a 404 may only
/// mean that the check's name is unknown, so it proves nothing about an invitation.
pub fn sees_invitation(answer: &RelationshipAnswer, names_may_differ: bool) -> bool {
    !(names_may_differ && matches!(answer, RelationshipAnswer::ProfileNotFound))
}

/// Whether a send may start on a lease that runs until `lease_until`: a connect and a
/// relationship call may follow it (the rule `check-config` holds `worker.lease` to).
pub fn lease_covers_send(
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    call_timeout: std::time::Duration,
) -> bool {
    let needed = Duration::from_std(call_timeout * 2 + std::time::Duration::from_secs(1))
        .unwrap_or(Duration::MAX);
    lease_until - now > needed
}

/// How far ahead a job paused by a refused key is parked; the probe brings it back sooner.
pub const PAUSED_PARK: Duration = Duration::hours(1);

/// The job's next state for a decision (the account's hold with it). What the send's
/// outcome means for the doubt and the account's slot is the caller's to add.
pub fn transition_for(decision: NextStep, now: DateTime<Utc>) -> Transition {
    match decision {
        NextStep::Finish {
            status,
            profile_urn,
            error,
        } => Transition {
            error,
            profile_urn,
            ..Transition::to(status)
        },
        NextStep::PauseKey { error } => Transition::paused_for_key(error, now + PAUSED_PARK),
        NextStep::Hold {
            hold_until,
            blocked_until,
            retry_at,
            error,
        } => Transition {
            hold_until: Some(hold_until),
            retry_at: Some(retry_at),
            account_hold: Some(AccountHold {
                hold_until,
                blocked_until,
                reason: error,
            }),
            ..Transition::to(Status::Held)
        },
        NextStep::Retry { retry_at, error } => Transition::retrying(retry_at, error),
        // No relationship answer settled it: the send was refused with this error.
        NextStep::CheckRelationship { error } => Transition::with_error(Status::Failed, error),
    }
}

/// Where a job the account gate did not let through is parked: `status` (`None` keeps the
/// job's), until `until` or until `waiting` ends. The account is asked again at
/// `quota_refresh`; a send in progress wakes its waiters when it ends, the lease being the
/// safety net.
pub fn parked_at_gate(
    job: &Job,
    parked: GateWait,
    quota_refresh: Duration,
    lease: Duration,
    now: DateTime<Utc>,
) -> Transition {
    let status = parked.status.unwrap_or(job.status);
    let keeps_status = status == job.status;
    Transition {
        status: Some(status),
        error: if status == Status::Paused {
            Some(parked.reason)
        } else if keeps_status {
            job.error.clone()
        } else {
            None
        },
        hold_until: parked.hold_until.or(job.hold_until.filter(|h| *h > now)),
        retry_at: match status {
            Status::Held | Status::Scheduled => Some(parked.until),
            // A pause has no ETA: it lasts until its cause is fixed.
            Status::Paused => None,
            _ if keeps_status => job.retry_at,
            _ => Some(parked.until),
        },
        due_at: Some(parked.until),
        waiting: parked.waiting.map(|on| {
            let every = match on {
                Wait::Account(_) => quota_refresh,
                _ => lease,
            };
            Waiting {
                on,
                retry_every: Some(every),
            }
        }),
        ..Transition::default()
    }
}

/// Why the relationship is being looked up.
#[derive(Debug, Clone, PartialEq)]
pub enum RelationshipCheck {
    /// A previous worker started a send and left no outcome: it may have gone out.
    InDoubt,
    /// A 400 that did not say why.
    Unclear400 { error: String },
    /// Before a first send: never invite someone connected or already invited.
    BeforeSend,
}

/// `None` means: nothing is known that forbids sending; go ahead.
pub fn after_relationship(
    answer: &RelationshipAnswer,
    check: &RelationshipCheck,
) -> Option<NextStep> {
    let finish = |status, profile_urn: Option<String>, error: Option<String>| {
        Some(NextStep::Finish {
            status,
            profile_urn,
            error,
        })
    };
    match answer {
        RelationshipAnswer::ProfileNotFound => finish(
            Status::ProfileNotFound,
            None,
            Some("LinkedIn profile not found (relationship check)".into()),
        ),
        RelationshipAnswer::Found(rel) if rel.connected => {
            finish(Status::AlreadyConnected, rel.profile_urn.clone(), None)
        }
        RelationshipAnswer::Found(rel) if rel.invitation_sent => match check {
            // Ours: the earlier send went out before its worker died.
            RelationshipCheck::InDoubt => finish(Status::Sent, rel.profile_urn.clone(), None),
            // Nothing of ours went out: someone else's invitation is pending.
            RelationshipCheck::Unclear400 { .. } | RelationshipCheck::BeforeSend => {
                finish(Status::InvitationPending, rel.profile_urn.clone(), None)
            }
        },
        RelationshipAnswer::Found(_) => match check {
            RelationshipCheck::InDoubt | RelationshipCheck::BeforeSend => None,
            RelationshipCheck::Unclear400 { error } => {
                finish(Status::Failed, None, Some(error.clone()))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectsafely::{RateLimit, Relationship};
    use reqwest::header::HeaderMap;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn policy() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            base_delay: std::time::Duration::from_secs(30),
            max_delay: std::time::Duration::from_secs(3600),
            jitter: 0.0,
        }
    }

    fn decide(status: u16, body: &str, attempt: u32) -> NextStep {
        decide_with(status, &HeaderMap::new(), body, attempt)
    }

    fn decide_with(status: u16, headers: &HeaderMap, body: &str, attempt: u32) -> NextStep {
        let p = policy();
        let ctx = Context {
            attempt,
            now: t("2026-11-30T10:00:00Z"),
            policy: &p,
            already_connected_text: "already connected",
            jitter: 0.0,
        };
        after_connect(
            &Ok(ConnectResponse::parse(status, headers, body.as_bytes())),
            &ctx,
        )
    }

    #[test]
    fn success_is_sent_with_the_urn() {
        assert_eq!(
            decide(
                200,
                r#"{"success":true,"profileUrn":"urn:li:fsd_profile:X"}"#,
                1
            ),
            NextStep::Finish {
                status: Status::Sent,
                profile_urn: Some("urn:li:fsd_profile:X".into()),
                error: None
            }
        );
    }

    #[test]
    fn already_connected_400_is_recognised_case_insensitively() {
        let d = decide(
            400,
            r#"{"error":"Already Connected to this profile","success":false}"#,
            1,
        );
        assert!(
            matches!(
                d,
                NextStep::Finish {
                    status: Status::AlreadyConnected,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn other_400_fails_with_the_api_error_and_unclear_400_is_checked() {
        let d = decide(
            400,
            r#"{"error":"Either profileId or profileUrn must be provided","success":false}"#,
            1,
        );
        assert_eq!(
            d,
            NextStep::Finish {
                status: Status::Failed,
                profile_urn: None,
                error: Some("Either profileId or profileUrn must be provided".into())
            }
        );
        assert!(matches!(
            decide(400, "", 1),
            NextStep::CheckRelationship { .. }
        ));
    }

    #[test]
    fn unauthorized_pauses_the_key() {
        assert!(matches!(
            decide(401, r#"{"error":"Unauthorized"}"#, 1),
            NextStep::PauseKey { .. }
        ));
    }

    #[test]
    fn not_found_is_profile_not_found() {
        let d = decide(
            404,
            r#"{"error":"LinkedIn profile not found: x","success":false}"#,
            1,
        );
        assert!(matches!(
            d,
            NextStep::Finish {
                status: Status::ProfileNotFound,
                ..
            }
        ));
    }

    #[test]
    fn hold_waits_for_the_weekly_reset_when_it_is_later() {
        let d = decide(
            429,
            r#"{"error":"limit","success":false,"holdUntil":"2026-12-01T10:00:00Z","weeklyReset":"2026-12-07T00:00:00Z"}"#,
            1,
        );
        assert_eq!(
            d,
            NextStep::Hold {
                hold_until: t("2026-12-01T10:00:00Z"),
                blocked_until: Some(t("2026-12-07T00:00:00Z")),
                retry_at: t("2026-12-07T00:00:00Z"),
                error: "limit".into()
            }
        );
    }

    #[test]
    fn hold_without_weekly_reset_uses_the_headers_then_the_monday_rule() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-action", "CONNECT".parse().unwrap());
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset", "2026-12-05T00:00:00Z".parse().unwrap());
        let body = r#"{"error":"limit","holdUntil":"2026-12-01T10:00:00Z"}"#;
        let NextStep::Hold { retry_at, .. } = decide_with(429, &headers, body, 1) else {
            panic!()
        };
        assert_eq!(retry_at, t("2026-12-05T00:00:00Z"));
        let NextStep::Hold { retry_at, .. } = decide(429, body, 1) else {
            panic!()
        };
        assert_eq!(retry_at, t("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn short_429_retries_after_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "20".parse().unwrap());
        let d = decide_with(429, &headers, r#"{"error":"Too many requests"}"#, 1);
        assert_eq!(
            d,
            NextStep::Retry {
                retry_at: t("2026-11-30T10:00:20Z"),
                error: "rate limited: Too many requests".into()
            }
        );
    }

    #[test]
    fn server_errors_back_off_then_fail() {
        assert_eq!(
            decide(503, r#"{"error":"down"}"#, 2),
            NextStep::Retry {
                retry_at: t("2026-11-30T10:01:00Z"),
                error: "down".into()
            }
        );
        let d = decide(503, r#"{"error":"down"}"#, 3);
        assert!(
            matches!(
                d,
                NextStep::Finish {
                    status: Status::Failed,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn transport_errors_are_retried() {
        let p = policy();
        let ctx = Context {
            attempt: 1,
            now: t("2026-11-30T10:00:00Z"),
            policy: &p,
            already_connected_text: "already connected",
            jitter: 0.0,
        };
        assert!(matches!(
            after_connect(&Err(ApiError::Timeout), &ctx),
            NextStep::Retry { .. }
        ));
    }

    #[test]
    fn an_unknown_outcome_is_looked_at_again_however_many_attempts() {
        let d = look_again(
            &policy(),
            9,
            t("2026-11-30T10:00:00Z"),
            0.0,
            "unknown".into(),
        );
        assert_eq!(
            d,
            NextStep::Retry {
                retry_at: t("2026-11-30T11:00:00Z"),
                error: "unknown".into()
            }
        );
    }

    fn found(connected: bool, invitation_sent: bool) -> RelationshipAnswer {
        RelationshipAnswer::Found(Relationship {
            connected,
            invitation_sent,
            invitation_received: false,
            status: None,
            profile_urn: Some("urn:li:fsd_profile:X".into()),
        })
    }

    #[test]
    fn a_404_to_a_urn_cannot_see_an_invitation() {
        let found = found(false, false);
        assert!(!sees_invitation(&RelationshipAnswer::ProfileNotFound, true));
        assert!(sees_invitation(&RelationshipAnswer::ProfileNotFound, false));
        assert!(sees_invitation(&found, true));
        assert!(sees_invitation(&found, false));
    }

    #[test]
    fn a_send_needs_two_calls_and_a_second_of_lease_left() {
        let now = t("2026-11-30T10:00:00Z");
        let timeout = std::time::Duration::from_secs(30);
        assert!(lease_covers_send(now + Duration::seconds(62), now, timeout));
        assert!(!lease_covers_send(
            now + Duration::seconds(61),
            now,
            timeout
        ));
        assert!(!lease_covers_send(now - Duration::seconds(1), now, timeout));
    }

    #[test]
    fn in_doubt_send_found_pending_counts_as_ours() {
        let d = after_relationship(&found(false, true), &RelationshipCheck::InDoubt);
        assert!(
            matches!(
                d,
                Some(NextStep::Finish {
                    status: Status::Sent,
                    ..
                })
            ),
            "{d:?}"
        );
        assert_eq!(
            after_relationship(&found(false, false), &RelationshipCheck::InDoubt),
            None
        );
        let d = after_relationship(&found(true, false), &RelationshipCheck::InDoubt);
        assert!(matches!(
            d,
            Some(NextStep::Finish {
                status: Status::AlreadyConnected,
                ..
            })
        ));
    }

    #[test]
    fn unclear_400_is_settled_by_the_relationship() {
        let check = RelationshipCheck::Unclear400 {
            error: "HTTP 400".into(),
        };
        let d = after_relationship(&found(false, true), &check);
        assert!(matches!(
            d,
            Some(NextStep::Finish {
                status: Status::InvitationPending,
                ..
            })
        ));
        let d = after_relationship(&found(false, false), &check);
        assert!(matches!(
            d,
            Some(NextStep::Finish {
                status: Status::Failed,
                ..
            })
        ));
    }

    #[test]
    fn rate_limit_headers_are_kept_on_the_response() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-action", "CONNECT".parse().unwrap());
        headers.insert("x-ratelimit-used", "4".parse().unwrap());
        let r = ConnectResponse::parse(200, &headers, b"{}");
        assert_eq!(
            r.rate_limit,
            Some(RateLimit {
                action: "CONNECT".into(),
                limit: None,
                used: Some(4),
                remaining: None,
                reset: None
            })
        );
    }

    #[test]
    fn a_hold_decision_holds_the_job_and_records_the_accounts_hold() {
        let now = t("2026-12-02T10:00:00Z");
        let hold = NextStep::Hold {
            hold_until: t("2026-12-03T10:00:00Z"),
            blocked_until: Some(t("2026-12-07T00:00:00Z")),
            retry_at: t("2026-12-07T00:00:00Z"),
            error: "weekly limit".into(),
        };
        let transition = transition_for(hold, now);
        assert_eq!(transition.status, Some(Status::Held));
        assert_eq!(transition.retry_at, Some(t("2026-12-07T00:00:00Z")));
        let recorded = transition.account_hold.unwrap();
        assert_eq!(recorded.blocked_until, Some(t("2026-12-07T00:00:00Z")));
        let paused = transition_for(
            NextStep::PauseKey {
                error: "401".into(),
            },
            now,
        );
        assert_eq!(paused.due_at, Some(now + PAUSED_PARK));
        assert_eq!(paused.waiting.map(|w| w.on), Some(Wait::Key));
    }

    #[test]
    fn a_job_parked_at_the_gate_shows_an_eta_except_when_paused() {
        let now = t("2026-12-02T10:00:00Z");
        let mut job = Job::queued("acc_1", now);
        job.error = Some("earlier".into());
        let park = |status, waiting| GateWait {
            status,
            until: now + Duration::minutes(30),
            hold_until: None,
            reason: "why".into(),
            waiting,
        };
        let minutes = |m| Duration::minutes(m);
        let scheduled = parked_at_gate(
            &job,
            park(Some(Status::Scheduled), None),
            minutes(15),
            minutes(2),
            now,
        );
        assert_eq!(scheduled.retry_at, Some(now + minutes(30)));
        assert_eq!(scheduled.error, None);
        let paused = parked_at_gate(
            &job,
            park(Some(Status::Paused), Some(Wait::Account("acc_1".into()))),
            minutes(15),
            minutes(2),
            now,
        );
        assert_eq!(
            (paused.retry_at, paused.error.as_deref()),
            (None, Some("why"))
        );
        assert_eq!(
            paused.waiting.and_then(|w| w.retry_every),
            Some(minutes(15))
        );
        // Waiting for another send keeps what the CRM sees, and is retried at the lease.
        let behind = parked_at_gate(
            &job,
            park(None, Some(Wait::Sender("acc_1".into()))),
            minutes(15),
            minutes(2),
            now,
        );
        assert_eq!(behind.status, Some(Status::Queued));
        assert_eq!(behind.error.as_deref(), Some("earlier"));
        assert_eq!(behind.waiting.and_then(|w| w.retry_every), Some(minutes(2)));
    }
}
