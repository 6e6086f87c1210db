//! A connect job: the statuses it moves through and the snapshot written back to CRMs.

mod history;
mod source;
mod target;

pub use history::{Call, CallRecord, CallResult, QuotaSeen};
pub use source::Source;
pub use target::WritebackTarget;

use crate::account::AccountId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// DESIGN.md's one list of statuses; CRM picklists are built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    Queued,
    Held,
    Scheduled,
    Retrying,
    Paused,
    /// Shadow mode: everything ran but the send; `retry_at` is when it would have gone.
    Shadowed,
    Sent,
    AlreadyConnected,
    InvitationPending,
    ProfileNotFound,
    Failed,
    /// Called off before anything was sent: by an operator, or by the CRM.
    Cancelled,
    Invalid,
}

impl Status {
    pub const ALL: [Status; 13] = [
        Status::Queued,
        Status::Held,
        Status::Scheduled,
        Status::Retrying,
        Status::Paused,
        Status::Shadowed,
        Status::Sent,
        Status::AlreadyConnected,
        Status::InvitationPending,
        Status::ProfileNotFound,
        Status::Failed,
        Status::Cancelled,
        Status::Invalid,
    ];

    /// The statuses a job has ended in; nothing will be sent for it any more.
    pub const ENDED: [Status; 7] = [
        Status::Sent,
        Status::AlreadyConnected,
        Status::InvitationPending,
        Status::ProfileNotFound,
        Status::Failed,
        Status::Cancelled,
        Status::Invalid,
    ];

    /// Ended without an invitation: such a job lets its lead go (unless a send of it may
    /// have gone out), so a later event for the person is a new job.
    pub const FREES_LEAD: [Status; 4] = [
        Status::ProfileNotFound,
        Status::Failed,
        Status::Cancelled,
        Status::Invalid,
    ];

    /// Ended with nothing sent, by a failure or a call-off: an operator may queue it again.
    pub const RETRIABLE: [Status; 2] = [Status::Failed, Status::Cancelled];

    /// Waiting for their account's gate: an account's backlog.
    pub const BACKLOG: [Status; 3] = [Status::Queued, Status::Scheduled, Status::Held];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Held => "held",
            Status::Scheduled => "scheduled",
            Status::Retrying => "retrying",
            Status::Paused => "paused",
            Status::Shadowed => "shadowed",
            Status::Sent => "sent",
            Status::AlreadyConnected => "already_connected",
            Status::InvitationPending => "invitation_pending",
            Status::ProfileNotFound => "profile_not_found",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Invalid => "invalid",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The job has ended; nothing will be sent for it any more.
    pub fn is_final(self) -> bool {
        Status::ENDED.contains(&self)
    }

    /// A lead whose job ended so already has its answer; a new event gets the same one.
    pub fn is_success(self) -> bool {
        self.is_final() && !Status::FREES_LEAD.contains(&self)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The priorities a job may have; a source's value beyond them counts as the nearest.
pub const PRIORITIES: std::ops::RangeInclusive<i32> = -1000..=1000;

/// What one point of priority is worth in waiting: a job's place in its account's backlog is
/// `created_at` less a day per point (`rank_at`). So the highest priority goes first, then
/// the oldest, and no job is starved: one that has waited `n` days longer than another goes
/// before it even against `n` more points of priority.
pub const PRIORITY_AGING: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// A priority as a job keeps it: within [`PRIORITIES`].
pub fn clamp_priority(priority: i64) -> i32 {
    let clamped = priority.clamp(i64::from(*PRIORITIES.start()), i64::from(*PRIORITIES.end()));
    i32::try_from(clamped).unwrap_or_default()
}

/// A job's place in its account's backlog: earlier goes first (see [`PRIORITY_AGING`]).
pub fn rank_at(created_at: DateTime<Utc>, priority: i32) -> DateTime<Utc> {
    created_at - PRIORITY_AGING * priority.clamp(*PRIORITIES.start(), *PRIORITIES.end())
}

/// The lead's fields as the source gave them; kept for templates and for people reading history.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeadDetails {
    pub linkedin_url: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: Uuid,
    pub source: Source,
    pub record_id: String,
    /// The CRM object the record is: HubSpot `contact`, Salesforce `Lead` or `Contact`.
    pub record_object: Option<String>,
    pub account_id: AccountId,
    pub profile_id: Option<String>,
    pub profile_urn: Option<String>,
    pub message: Option<String>,
    #[sqlx(json)]
    pub lead: LeadDetails,
    /// The lead is still to be read from the CRM (the event carried only ids).
    pub enrich: bool,
    /// Where this job's status changes are written back.
    #[sqlx(try_from = "crate::store::db::List<WritebackTarget>")]
    pub writeback_targets: Vec<WritebackTarget>,
    pub status: Status,
    pub error: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub sequence: i32,
    pub changed_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Higher goes first among the account's waiting jobs (with age: [`rank_at`]).
    pub priority: i32,
}

/// What a writeback carries: the job's state at one status change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusSnapshot {
    pub job_id: Uuid,
    pub record_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_object: Option<String>,
    pub account_id: AccountId,
    pub status: Status,
    pub profile_urn: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub error: Option<String>,
    pub sequence: i32,
    pub changed_at: DateTime<Utc>,
}

impl Job {
    /// A queued job as ingest creates it, for tests of the rules that read jobs.
    #[cfg(test)]
    pub fn queued(account_id: &str, now: DateTime<Utc>) -> Job {
        Job {
            id: Uuid::now_v7(),
            source: Source::Events,
            record_id: "rec-1".into(),
            record_object: None,
            account_id: account_id.into(),
            profile_id: Some("jane".into()),
            profile_urn: None,
            message: None,
            lead: LeadDetails::default(),
            enrich: false,
            writeback_targets: vec![WritebackTarget::Callback],
            status: Status::Queued,
            error: None,
            hold_until: None,
            retry_at: None,
            attempts: 0,
            sequence: 1,
            changed_at: now,
            due_at: Some(now),
            created_at: now,
            priority: 0,
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            job_id: self.id,
            record_id: self.record_id.clone(),
            record_object: self.record_object.clone(),
            account_id: self.account_id.clone(),
            status: self.status,
            profile_urn: self.profile_urn.clone(),
            hold_until: self.hold_until,
            retry_at: self.retry_at,
            attempts: self.attempts,
            error: self.error.clone(),
            sequence: self.sequence,
            changed_at: self.changed_at,
        }
    }
}

/// Whether a change is worth telling the CRM. A re-deferral that keeps the status and moves
/// `retryAt` by less than an hour is not: it would only churn the CRM's audit trail.
pub fn worth_writing_back(
    before: (Status, Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    after: (Status, Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> bool {
    let (status_before, retry_before, hold_before) = before;
    let (status_after, retry_after, hold_after) = after;
    if status_before != status_after || hold_before != hold_after {
        return true;
    }
    match (retry_before, retry_after) {
        (Some(a), Some(b)) => (b - a).abs() >= chrono::Duration::hours(1),
        (None, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin API, the history and the writebacks show these names; the database holds
    /// them.
    fn stored_names<T>(values: &[T])
    where
        T: Serialize + for<'de> Deserialize<'de> + std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        for value in values {
            let json = serde_json::to_value(value).unwrap();
            assert_eq!(json, serde_json::json!(value.to_string()));
            assert_eq!(&serde_json::from_value::<T>(json).unwrap(), value);
        }
    }

    #[test]
    fn priority_ranks_before_age_until_age_outweighs_it() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hour = chrono::TimeDelta::hours(1);
        // A higher priority an hour younger goes first...
        assert!(rank_at(t0 + hour, 1) < rank_at(t0, 0));
        // ...the same priority goes oldest first...
        assert!(rank_at(t0, 3) < rank_at(t0 + hour, 3));
        // ...and a job that has waited more days than the difference goes first anyway.
        assert!(rank_at(t0, 0) < rank_at(t0 + chrono::TimeDelta::days(3) + hour, 3));
        assert_eq!(clamp_priority(5), 5);
        assert_eq!(clamp_priority(1_000_000), 1000);
        assert_eq!(clamp_priority(i64::MIN), -1000);
        assert_eq!(rank_at(t0, i32::MAX), rank_at(t0, 1000));
    }

    #[test]
    fn sources_and_targets_serialise_to_their_stored_names() {
        stored_names(&[Source::Events, Source::HubSpot, Source::Salesforce]);
        stored_names(&[
            WritebackTarget::Callback,
            WritebackTarget::HubSpot,
            WritebackTarget::Salesforce,
        ]);
        assert_eq!(Source::HubSpot.to_string(), "hubspot");
        assert_eq!(WritebackTarget::Callback.to_string(), "callback");
    }

    #[test]
    fn small_re_deferrals_are_not_written_back() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = |minutes| Some(t0 + chrono::Duration::minutes(minutes));
        let retrying = Status::Retrying;
        assert!(!worth_writing_back(
            (retrying, later(0), None),
            (retrying, later(59), None)
        ));
        assert!(worth_writing_back(
            (retrying, later(0), None),
            (retrying, later(60), None)
        ));
        assert!(worth_writing_back(
            (Status::Queued, None, None),
            (retrying, later(1), None)
        ));
        assert!(worth_writing_back(
            (Status::Held, later(0), later(0)),
            (Status::Held, later(1), later(5))
        ));
        assert!(!worth_writing_back(
            (Status::Paused, None, None),
            (Status::Paused, None, None)
        ));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(Status::parse("cancelled"), Some(Status::Cancelled));
        assert_eq!(Status::parse("canceled"), None);
    }

    #[test]
    fn the_status_sets_agree_with_each_other() {
        for status in Status::FREES_LEAD {
            assert!(status.is_final() && !status.is_success(), "{status}");
        }
        for status in Status::BACKLOG {
            assert!(!status.is_final(), "{status}");
        }
        let successes: Vec<Status> = Status::ALL.into_iter().filter(|s| s.is_success()).collect();
        assert_eq!(
            successes,
            [
                Status::Sent,
                Status::AlreadyConnected,
                Status::InvitationPending
            ]
        );
    }

    #[test]
    fn only_ended_jobs_are_final_and_successes_are_final() {
        for status in Status::ALL {
            if status.is_success() {
                assert!(status.is_final(), "{status}");
            }
        }
        assert!(!Status::Held.is_final());
        assert!(!Status::Paused.is_final());
        assert!(Status::Invalid.is_final());
        assert!(!Status::Failed.is_success());
        assert!(
            !Status::Shadowed.is_final(),
            "a shadowed job may yet be released"
        );
    }
}
