//! Writebacks: one row per status change and target, committed with the change itself,
//! delivered in order per job, retried on their own schedule.

use super::outbox::{self, OutboxMessage, Topic};
use super::{PgStore, StoreError, record_event};
use crate::job::Job;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct WritebackRow {
    pub id: i64,
    pub target: String,
    pub sequence: i32,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A writeback this worker may deliver now.
#[derive(Debug, Clone)]
pub struct WritebackWork {
    pub id: i64,
    pub job_id: Uuid,
    pub target: String,
    pub sequence: i32,
    pub payload: serde_json::Value,
    /// This attempt's number, 1-based.
    pub attempt: i32,
    /// The lease this claim holds; the result is recorded only under it.
    pub lease_until: DateTime<Utc>,
}

#[derive(Debug)]
pub enum WritebackClaim {
    Deliver(WritebackWork),
    /// An older change of the same job is still pending: this one waits for it.
    Deferred,
    Skip(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WritebackResult {
    Delivered,
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// A permanent refusal: kept with its reason until an operator retries it.
    Parked {
        reason: String,
    },
    /// The target's credentials were refused: tried again at `until`, the try not counted.
    Paused {
        until: DateTime<Utc>,
        reason: String,
    },
}

/// Writebacks: claiming one for delivery and recording how it went.
pub trait WritebackStore {
    /// Takes a writeback's lease if it is pending, due, and the oldest pending one of its job.
    fn claim_writeback(
        &self,
        id: i64,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<WritebackClaim, StoreError>> + Send;

    fn writeback_done(
        &self,
        work: &WritebackWork,
        result: &WritebackResult,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl WritebackStore for PgStore {
    async fn claim_writeback(
        &self,
        id: i64,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<WritebackClaim, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(Uuid, String, i32, serde_json::Value, i32)> = sqlx::query_as(
            "UPDATE writebacks SET lease_until = $2, attempts = attempts + 1 \
             WHERE id = $1 AND state = 'pending' AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING job_id, target, sequence, payload, attempts",
        )
        .bind(id)
        .bind(now + lease)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((job_id, target, sequence, payload, attempt)) = row else {
            let state: Option<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
                "SELECT state, next_attempt_at, lease_until FROM writebacks WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((state, next, lease_until)) = state
                && state == "pending"
            {
                // Not due or leased by someone else: make sure something brings it back.
                let at = lease_until
                    .map_or(next, |l| l + chrono::Duration::seconds(1))
                    .max(next);
                outbox::ensure(&mut tx, Topic::Writeback, &id.to_string(), at).await?;
                tx.commit().await?;
            }
            return Ok(WritebackClaim::Skip(
                "writeback is not pending, not due, or leased",
            ));
        };
        let older: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(next_attempt_at) FROM writebacks \
             WHERE job_id = $1 AND target = $2 AND sequence < $3 AND state = 'pending'",
        )
        .bind(job_id)
        .bind(&target)
        .bind(sequence)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(older_due) = older {
            // Keep the CRM's view in order: go out just after the older change does.
            let due = older_due.max(now) + chrono::Duration::seconds(1);
            sqlx::query(
                "UPDATE writebacks SET lease_until = NULL, attempts = attempts - 1, next_attempt_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(due)
            .execute(&mut *tx)
            .await?;
            outbox::insert(&mut tx, Topic::Writeback, &id.to_string(), due).await?;
            tx.commit().await?;
            return Ok(WritebackClaim::Deferred);
        }
        // Brings the writeback back if this worker dies while delivering it.
        outbox::insert(
            &mut tx,
            Topic::Writeback,
            &id.to_string(),
            now + lease + chrono::Duration::seconds(1),
        )
        .await?;
        tx.commit().await?;
        Ok(WritebackClaim::Deliver(WritebackWork {
            id,
            job_id,
            target,
            sequence,
            payload,
            attempt,
            lease_until: now + lease,
        }))
    }

    async fn writeback_done(
        &self,
        work: &WritebackWork,
        result: &WritebackResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = work.id.to_string();
        let (state, error, next, counted) = match result {
            WritebackResult::Delivered => ("delivered", None, now, true),
            WritebackResult::Retry { at, error } => ("pending", Some(error.clone()), *at, true),
            WritebackResult::Parked { reason } => ("parked", Some(reason.clone()), now, true),
            WritebackResult::Paused { until, reason } => {
                ("pending", Some(reason.clone()), *until, false)
            }
        };
        let updated = sqlx::query(
            "UPDATE writebacks SET state = $2, last_error = $3, next_attempt_at = $4, lease_until = NULL, \
             delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END, \
             attempts = CASE WHEN $7 THEN attempts ELSE attempts - 1 END \
             WHERE id = $1 AND state = 'pending' AND lease_until = $6",
        )
        .bind(work.id)
        .bind(state)
        .bind(&error)
        .bind(next)
        .bind(now)
        .bind(work.lease_until)
        .bind(counted)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // Our lease ran out and another worker took the writeback: its result stands.
            return Ok(());
        }
        outbox::delete_for(&mut tx, Topic::Writeback, &id).await?;
        if state == "pending" {
            outbox::insert(&mut tx, Topic::Writeback, &id, next).await?;
        }
        record_event(
            &mut tx,
            work.job_id,
            now,
            "writeback",
            None,
            json!({"target": work.target, "sequence": work.sequence, "attempt": work.attempt,
                   "result": if counted { state } else { "paused" }, "error": error}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// One writeback row per target of the job for its current change, with their outbox rows,
/// in one statement (ingest writes these for every event of a CRM's batch).
pub(super) async fn queue_writebacks(
    tx: &mut sqlx::PgConnection,
    job: &Job,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<Vec<OutboxMessage>, StoreError> {
    if job.writeback_targets.is_empty() {
        return Ok(Vec::new());
    }
    let payload =
        serde_json::to_value(job.snapshot()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "WITH w AS (INSERT INTO writebacks (job_id, target, sequence, payload, next_attempt_at) \
                    SELECT $1, target, $2, $3, $4 FROM unnest($5::text[]) AS target RETURNING id) \
         INSERT INTO outbox (topic, ref, due_at) SELECT $6, id::text, $7 FROM w \
         RETURNING id, ref",
    )
    .bind(job.id)
    .bind(job.sequence)
    .bind(&payload)
    .bind(now)
    .bind(&job.writeback_targets)
    .bind(Topic::Writeback.as_str())
    .bind(now + relay_grace)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(outbox_id, reference)| OutboxMessage {
            outbox_id,
            topic: Topic::Writeback,
            reference,
        })
        .collect())
}

impl PgStore {
    pub(super) async fn writebacks_of(
        &self,
        job_id: Uuid,
    ) -> Result<Vec<WritebackRow>, StoreError> {
        Ok(sqlx::query_as::<_, WritebackRow>(
            "SELECT id, target, sequence, state, attempts, last_error, next_attempt_at, delivered_at \
             FROM writebacks WHERE job_id = $1 ORDER BY sequence, target",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Re-arms parked writebacks newer than the last delivered change; older ones stay
    /// parked, since an older state must never reach the CRM after a newer one.
    pub(super) async fn rearm_parked_writebacks(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE writebacks w SET state = 'pending', attempts = 0, next_attempt_at = $2 \
             WHERE job_id = $1 AND state = 'parked' AND sequence > COALESCE((\
               SELECT max(d.sequence) FROM writebacks d \
               WHERE d.job_id = $1 AND d.target = w.target AND d.state = 'delivered'), 0) \
             RETURNING id",
        )
        .bind(job_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut publish = Vec::new();
        for id in &ids {
            publish.push(
                outbox::insert(
                    &mut tx,
                    Topic::Writeback,
                    &id.to_string(),
                    now + self.relay_grace,
                )
                .await?,
            );
        }
        if !ids.is_empty() {
            record_event(
                &mut tx,
                job_id,
                now,
                "operator",
                None,
                json!({"rearmedWritebacks": ids}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(publish)
    }
}
