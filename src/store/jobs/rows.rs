//! The statements that read and lock job rows, shared by the job operations. A job row maps
//! to `Job` through `FromRow`; the status sets come from `Status`, bound as sets, so the
//! SQL never spells a status list of its own (`tests/schema.rs` holds the migrations'
//! partial indexes to the same sets).

use crate::job::{Job, Source, Status};
use crate::lead::Resolution;
use crate::store::StoreError;
use crate::store::db::{self, Exec, Set};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The columns `Job` is read from, for statements that return job rows.
macro_rules! job_columns {
    () => {
        "id, source, record_id, record_object, account_id, profile_id, profile_urn, message, \
         lead, enrich, writeback_targets, status, error, hold_until, retry_at, attempts, \
         sequence, changed_at, due_at, created_at, priority"
    };
}
pub(super) use job_columns;

/// A job row and what its lease and doubt are, as a transition sees them under its lock.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct LockedJob {
    #[sqlx(flatten)]
    pub job: Job,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub in_doubt_since: Option<DateTime<Utc>>,
}

/// The id and status of a job a delivery found.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(super) struct JobState {
    pub id: Uuid,
    pub status: Status,
}

pub(super) async fn fetch(conn: &mut impl Exec, job_id: Uuid) -> Result<Option<Job>, StoreError> {
    Ok(db::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = $1"
    ))
    .bind(job_id)
    .fetch_optional(conn)
    .await?)
}

pub(super) async fn lock(conn: &mut impl Exec, job_id: Uuid) -> Result<Job, StoreError> {
    db::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = $1 FOR UPDATE"
    ))
    .bind(job_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))
}

pub(super) async fn lock_with_lease(
    conn: &mut impl Exec,
    job_id: Uuid,
) -> Result<LockedJob, StoreError> {
    db::query(concat!(
        "SELECT ",
        job_columns!(),
        ", lease_owner, lease_until, send_started_at AS in_doubt_since \
         FROM jobs WHERE id = $1 FOR UPDATE"
    ))
    .bind(job_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))
}

/// The oldest job of the account that holds the lead named by `profile_key` or `profile_urn`
/// (open or successful, or one that may have sent): `jobs_one_per_lead` and `jobs_one_per_urn`.
pub(super) async fn lead_holder(
    conn: &mut impl Exec,
    account_id: &str,
    profile_key: &str,
    profile_urn: Option<&str>,
) -> Result<Option<JobState>, StoreError> {
    Ok(db::query(
        "SELECT id, status FROM jobs WHERE account_id = $1 \
         AND (profile_key = $2 OR profile_urn = $3 OR profile_key = $3) \
         AND (status <> ALL($4) OR send_started_at IS NOT NULL) ORDER BY created_at, id LIMIT 1",
    )
    .bind(account_id)
    .bind(profile_key)
    .bind(profile_urn)
    .bind(Set(&Status::FREES_LEAD))
    .fetch_optional(conn)
    .await?)
}

/// Another job than `job_id` that holds one of the two names on the account, whole.
pub(super) async fn other_lead_holder(
    conn: &mut impl Exec,
    job_id: Uuid,
    account_id: &str,
    names: [Option<&str>; 2],
) -> Result<Option<Job>, StoreError> {
    Ok(db::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE account_id = $1 AND id <> $2 \
         AND (profile_key = $3 OR profile_urn = $3 OR profile_key = $4 OR profile_urn = $4) \
         AND (status <> ALL($5) OR send_started_at IS NOT NULL) ORDER BY created_at, id LIMIT 1"
    ))
    .bind(account_id)
    .bind(job_id)
    .bind(names[0])
    .bind(names[1])
    .bind(Set(&Status::FREES_LEAD))
    .fetch_optional(conn)
    .await?)
}

/// The open job a CRM record has: its own, or the one it joined as a further record of
/// that lead.
pub(super) async fn open_job_of_record(
    conn: &mut impl Exec,
    source: Source,
    record_id: &str,
) -> Result<Option<JobState>, StoreError> {
    Ok(db::query(
        "SELECT j.id, j.status FROM job_records r JOIN jobs j ON j.id = r.job_id \
         WHERE r.source = $1 AND r.record_id = $2 AND j.status <> ALL($3) \
         ORDER BY j.created_at, j.id LIMIT 1",
    )
    .bind(source)
    .bind(record_id)
    .bind(Set(&Status::ENDED))
    .fetch_optional(conn)
    .await?)
}

/// The job a delivery id was first seen for.
pub(super) async fn job_of_delivery(
    conn: &mut impl Exec,
    source: Source,
    key: &str,
) -> Result<Option<JobState>, StoreError> {
    Ok(db::query(
        "SELECT j.id, j.status FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id \
         WHERE k.source = $1 AND k.key = $2",
    )
    .bind(source)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// The job columns a lead's resolution fills.
#[derive(Debug, Default)]
pub(super) struct LeadColumns<'a> {
    pub profile_key: Option<&'a str>,
    pub profile_id: Option<&'a str>,
    pub profile_urn: Option<&'a str>,
    pub message: Option<&'a str>,
    pub invalid_reason: Option<&'a str>,
    /// The lead is still to be read from the CRM.
    pub enrich: bool,
}

impl<'a> LeadColumns<'a> {
    pub fn of(resolution: &'a Resolution) -> LeadColumns<'a> {
        match resolution {
            Resolution::Usable(lead) => LeadColumns {
                profile_key: Some(&lead.profile_key),
                profile_id: lead.profile_id.as_deref(),
                profile_urn: lead.profile_urn.as_deref(),
                message: lead.message.as_deref(),
                ..LeadColumns::default()
            },
            Resolution::Invalid {
                reason,
                profile_key,
                profile_id,
                profile_urn,
                message,
            } => LeadColumns {
                profile_key: profile_key.as_deref(),
                profile_id: profile_id.as_deref(),
                profile_urn: profile_urn.as_deref(),
                message: message.as_deref(),
                invalid_reason: Some(reason),
                ..LeadColumns::default()
            },
            Resolution::ReadFromCrm => LeadColumns {
                enrich: true,
                ..LeadColumns::default()
            },
        }
    }
}
