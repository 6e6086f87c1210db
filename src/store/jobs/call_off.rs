//! The CRM calls a lead off (`lead.disqualified`, HubSpot's `withdraw_triggers`,
//! Salesforce's `withdraw` rule): the record's jobs that have sent nothing end `cancelled`.

use super::super::outbox::OutboxMessage;
use super::{JobStore, Transition};
use crate::job::{Source, Status};
use crate::store::db;
use crate::store::{SqlStore, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Which record's lead is called off, narrowed to one account or profile if given.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOff {
    pub source: Source,
    pub record_id: String,
    pub account_id: Option<String>,
    /// The lead's identity key (`ProfileRef::canonical`): a slug or URN.
    pub profile: Option<String>,
    /// When the source called it off: a job created after that (a later qualification) is
    /// not what it meant.
    pub said_at: DateTime<Utc>,
}

impl CallOff {
    /// Every lead of the record, called off at `said_at`.
    pub fn record(source: Source, record_id: impl Into<String>, said_at: DateTime<Utc>) -> CallOff {
        CallOff {
            source,
            record_id: record_id.into(),
            account_id: None,
            profile: None,
            said_at,
        }
    }
}

/// What calling a lead off did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalledOff {
    /// Jobs that had sent nothing and are `cancelled` now.
    pub cancelled: Vec<Uuid>,
    /// Jobs whose invitation is out, or may be: withdrawing it is not implemented yet. One
    /// still waiting to learn whether its send went out ends `cancelled` if it did not.
    pub invitation_out: Vec<Uuid>,
    /// Jobs that other CRM records (the same person) share: they go on for those.
    pub kept_for_other_records: Vec<Uuid>,
}

pub(super) async fn call_off(
    store: &SqlStore,
    off: &CallOff,
    now: DateTime<Utc>,
) -> Result<(CalledOff, Vec<OutboxMessage>), StoreError> {
    type Row = (Uuid, Status, bool, bool, DateTime<Utc>, i64);
    let jobs: Vec<Row> = db::query(
        "SELECT j.id, j.status, j.send_started_at IS NOT NULL, \
         coalesce(j.lease_until > $5, false), j.created_at, \
         (SELECT count(*) FROM job_records o WHERE o.job_id = j.id \
          AND NOT (o.source = $1 AND o.record_id = $2)) \
         FROM job_records r JOIN jobs j ON j.id = r.job_id \
         WHERE r.source = $1 AND r.record_id = $2 AND ($3 IS NULL OR j.account_id = $3) \
         AND ($4 IS NULL OR j.profile_key = $4 OR j.profile_urn = $4) ORDER BY j.created_at, j.id",
    )
    .bind(off.source)
    .bind(&off.record_id)
    .bind(&off.account_id)
    .bind(&off.profile)
    .bind(now)
    .fetch_all(&mut store.db.read().await?)
    .await?;
    let mut called_off = CalledOff::default();
    let mut publish = Vec::new();
    for (job_id, status, may_have_sent, leased, created_at, other_records) in jobs {
        if created_at > off.said_at {
            continue;
        }
        if status.is_final() {
            if status == Status::Sent || may_have_sent {
                called_off.invitation_out.push(job_id);
            }
            continue;
        }
        if other_records > 0 {
            called_off.kept_for_other_records.push(job_id);
            continue;
        }
        if may_have_sent {
            // Its relationship check decides: sent, or `cancelled` if nothing went out.
            let mut tx = store.db.begin().await?;
            db::query("UPDATE jobs SET called_off_at = $2 WHERE id = $1 AND called_off_at IS NULL")
                .bind(job_id)
                .bind(now)
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
            called_off.invitation_out.push(job_id);
            continue;
        }
        if leased {
            // A worker holds it, maybe mid-send: the caller is told to try again shortly.
            return Err(StoreError::Conflict(format!(
                "job {job_id} is being worked on right now; try again in a few seconds"
            )));
        }
        let only_from = Status::ALL.into_iter().filter(|s| !s.is_final()).collect();
        let (_, more) = store
            .transition(
                job_id,
                None,
                Transition::with_error(Status::Cancelled, format!("called off by {}", off.source))
                    .by_crm(only_from),
                now,
            )
            .await?;
        called_off.cancelled.push(job_id);
        publish.extend(more);
    }
    Ok((called_off, publish))
}
