//! The operator's look-ups and actions on jobs.

use super::{Attempts, JobFilter, JobHistory, JobStore, Transition, rows};
use crate::job::{Job, Status};
use crate::store::db;
use crate::store::{JobEvent, OutboxMessage, SqlStore, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub(super) async fn job(store: &SqlStore, job_id: Uuid) -> Result<Option<JobHistory>, StoreError> {
    let mut conn = store.db.read().await?;
    let Some(job) = rows::fetch(&mut conn, job_id).await? else {
        return Ok(None);
    };
    let history: Vec<JobEvent> =
        db::query("SELECT at, kind, status, detail FROM job_events WHERE job_id = $1 ORDER BY id")
            .bind(job_id)
            .fetch_all(&mut conn)
            .await?;
    drop(conn);
    let writebacks = store.writebacks_of(job_id).await?;
    Ok(Some(JobHistory {
        job,
        history,
        writebacks,
    }))
}

pub(super) async fn jobs(store: &SqlStore, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
    Ok(db::query(concat!(
        "SELECT ",
        rows::job_columns!(),
        " FROM jobs WHERE ($1 IS NULL \
         OR id IN (SELECT job_id FROM job_records WHERE record_id = $1)) \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR account_id = $3) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(&filter.record_id)
    .bind(filter.status)
    .bind(&filter.account_id)
    .bind(if filter.limit > 0 { filter.limit } else { 100 })
    .fetch_all(&mut store.db.read().await?)
    .await?)
}

pub(super) async fn job_counts(store: &SqlStore) -> Result<Vec<(Status, i64)>, StoreError> {
    let found: Vec<(Status, i64)> = db::query("SELECT status, count(*) FROM jobs GROUP BY status")
        .fetch_all(&mut store.db.read().await?)
        .await?;
    Ok(Status::ALL
        .into_iter()
        .map(|status| {
            let count = found
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            (status, count)
        })
        .collect())
}

pub(super) async fn retry_job(
    store: &SqlStore,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
    let history = store
        .job(job_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
    let mut publish = store.rearm_parked_writebacks(job_id, now).await?;
    let job = if Status::RETRIABLE.contains(&history.job.status) {
        let (job, more) = store
            .transition(
                job_id,
                None,
                Transition {
                    attempts: Attempts::Reset,
                    ..Transition::to(Status::Queued).by_operator(Status::RETRIABLE.to_vec())
                },
                now,
            )
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    StoreError::Conflict(
                        "another job for this lead is open; retry refused so the lead is not invited twice".into(),
                    )
                } else {
                    e
                }
            })?;
        publish.extend(more);
        job
    } else if publish.is_empty() {
        return Err(StoreError::Conflict(format!(
            "job {job_id} is {}: only failed or cancelled jobs and parked writebacks can be retried",
            history.job.status
        )));
    } else {
        history.job
    };
    Ok((job, publish))
}

pub(super) async fn cancel_job(
    store: &SqlStore,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
    store
        .transition(
            job_id,
            None,
            Transition::with_error(Status::Cancelled, "cancelled by operator")
                .by_operator(Status::ALL.into_iter().filter(|s| !s.is_final()).collect()),
            now,
        )
        .await
}

pub(super) async fn release_shadowed(
    store: &SqlStore,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<(Vec<Uuid>, Vec<OutboxMessage>), StoreError> {
    let shadowed: Vec<Uuid> = db::query(
        "SELECT id FROM jobs WHERE account_id = $1 AND status = $2 ORDER BY created_at, id",
    )
    .bind(account_id)
    .bind(Status::Shadowed)
    .scalar_all(&mut store.db.read().await?)
    .await?;
    let mut released = Vec::with_capacity(shadowed.len());
    let mut publish = Vec::new();
    for job_id in shadowed {
        // One at a time, each with its history and writebacks; a job an operator changed
        // meanwhile is left as it is.
        match store
            .transition(
                job_id,
                None,
                Transition::to(Status::Queued).by_operator(vec![Status::Shadowed]),
                now,
            )
            .await
        {
            Ok((_, more)) => {
                released.push(job_id);
                publish.extend(more);
            }
            Err(StoreError::Conflict(why)) => {
                tracing::info!(%job_id, why, "not released");
            }
            Err(error) => return Err(error),
        }
    }
    Ok((released, publish))
}
