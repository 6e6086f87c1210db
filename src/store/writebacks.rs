//! Writebacks: one row per status change, record and target, committed with the change
//! itself, delivered in order per job and record, never an older job's over a newer one's on
//! the same record, retried on their own schedule.

use super::outbox::{self, OutboxMessage};
use super::{SqlStore, StoreError, record_event};
use crate::account::AccountId;
use crate::job::{Job, Source, WritebackTarget};
use crate::queue::{Message, Topic};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct WritebackRow {
    pub id: i64,
    pub target: WritebackTarget,
    /// The CRM record it is for: the job's own or one that joined it.
    pub record_id: String,
    pub sequence: i32,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A writeback refused for good, with its job: what an operator may retry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParkedWriteback {
    pub job_id: Uuid,
    pub account_id: AccountId,
    #[sqlx(flatten)]
    pub writeback: WritebackRow,
}

/// A writeback this worker may deliver now.
#[derive(Debug, Clone)]
pub struct WritebackWork {
    pub id: i64,
    pub job_id: Uuid,
    pub target: WritebackTarget,
    pub sequence: i32,
    pub payload: serde_json::Value,
    /// This attempt's number, 1-based.
    pub attempt: i32,
    /// When the transient failures before this attempt began, if there were any.
    pub failing_since: Option<DateTime<Utc>>,
    /// The lease this claim holds; the result is recorded only under it.
    pub lease_until: DateTime<Utc>,
}

#[derive(Debug)]
pub enum WritebackClaim {
    Deliver(WritebackWork),
    /// An older change of the same job is still pending: this one waits for it.
    Deferred,
    /// A newer job of the record has written it since: this one ended unsent.
    Superseded(WritebackTarget),
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
    /// Not tried: the target cannot take it before the lease ends (HubSpot's rate-limit
    /// budget is spent). Tried again at `at`; neither a try nor a failure.
    Later {
        at: DateTime<Utc>,
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

    /// Parked writebacks, the most recently parked first.
    fn parked_writebacks(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ParkedWriteback>, StoreError>> + Send;

    /// How many writebacks are parked (a gauge: they wait for an operator).
    fn parked_writeback_count(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The operator's retry of one parked writeback: pending again and due now, with its
    /// job's id and the message to publish. Refused, changing nothing, when it is not parked
    /// or when a newer change of its record has been delivered since.
    fn retry_writeback(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Uuid, Vec<OutboxMessage>), StoreError>> + Send;
}

impl WritebackStore for SqlStore {
    async fn claim_writeback(
        &self,
        id: i64,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<WritebackClaim, StoreError> {
        let mut tx = self.pg().begin().await?;
        let row: Option<Claimed> = sqlx::query_as(
            "UPDATE writebacks w SET lease_until = $2, attempts = attempts + 1 FROM job_records r \
             WHERE w.id = $1 AND r.id = w.job_record_id AND w.state = 'pending' \
             AND w.next_attempt_at <= $3 AND (w.lease_until IS NULL OR w.lease_until < $3) \
             RETURNING w.job_id, w.job_record_id, r.source, r.record_id, w.target, w.sequence, \
             w.payload, w.attempts, w.failing_since",
        )
        .bind(id)
        .bind(now + lease)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(claimed) = row else {
            bring_back_if_pending(&mut tx, id).await?;
            tx.commit().await?;
            return Ok(WritebackClaim::Skip(
                "writeback is not pending, not due, or leased",
            ));
        };
        // Claims for one record and target take turns, so that of two jobs' writebacks to
        // the same CRM field the older can never land after the newer.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 11))",
            format!(
                "{}/{}/{}",
                claimed.target, claimed.source, claimed.record_id
            )
        )
        .execute(&mut *tx)
        .await?;
        if let Some(newer) = newer_job_on_record(&mut tx, &claimed).await? {
            let reason = format!(
                "superseded by job {newer}, which has record {} since",
                claimed.record_id
            );
            supersede(&mut tx, id, &claimed, &reason, now).await?;
            tx.commit().await?;
            return Ok(WritebackClaim::Superseded(claimed.target));
        }
        // Only an operator's retry of a parked change can find a newer one of its own job
        // delivered or under way: it must not land after it.
        match newer_change_of_job(&mut tx, &claimed, now).await? {
            Some(NewerChange::Delivered(sequence)) => {
                let reason = format!("superseded by change #{sequence}, delivered since");
                supersede(&mut tx, id, &claimed, &reason, now).await?;
                tx.commit().await?;
                return Ok(WritebackClaim::Superseded(claimed.target));
            }
            Some(NewerChange::UnderWay(lease_until)) => {
                defer_claim(&mut tx, id, lease_until + chrono::Duration::seconds(1)).await?;
                tx.commit().await?;
                return Ok(WritebackClaim::Deferred);
            }
            None => {}
        }
        if let Some(after) = must_wait_until(&mut tx, &claimed, now).await? {
            // Keep the CRM's view in order: go out just after the older change does.
            let due = after.max(now) + chrono::Duration::seconds(1);
            defer_claim(&mut tx, id, due).await?;
            tx.commit().await?;
            return Ok(WritebackClaim::Deferred);
        }
        // Brings the writeback back if this worker dies while delivering it.
        outbox::insert(
            &mut tx,
            Message::Writeback(id),
            now + lease + chrono::Duration::seconds(1),
        )
        .await?;
        tx.commit().await?;
        Ok(WritebackClaim::Deliver(WritebackWork {
            id,
            job_id: claimed.job_id,
            target: claimed.target,
            sequence: claimed.sequence,
            payload: claimed.payload,
            attempt: claimed.attempts,
            failing_since: claimed.failing_since,
            lease_until: now + lease,
        }))
    }

    async fn writeback_done(
        &self,
        work: &WritebackWork,
        result: &WritebackResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pg().begin().await?;
        // (state, error, next try, whether the try counts, what the history calls it)
        let (state, error, next, counted, shown) = match result {
            WritebackResult::Delivered => ("delivered", None, now, true, "delivered"),
            WritebackResult::Retry { at, error } => {
                ("pending", Some(error.clone()), *at, true, "pending")
            }
            WritebackResult::Parked { reason } => {
                ("parked", Some(reason.clone()), now, true, "parked")
            }
            WritebackResult::Paused { until, reason } => {
                ("pending", Some(reason.clone()), *until, false, "paused")
            }
            WritebackResult::Later { at, reason } => {
                ("pending", Some(reason.clone()), *at, false, "later")
            }
        };
        let failed = matches!(result, WritebackResult::Retry { .. });
        let updated = sqlx::query!(
            "UPDATE writebacks SET state = $2, last_error = $3, next_attempt_at = $4, lease_until = NULL, \
             delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END, \
             attempts = CASE WHEN $7 THEN attempts ELSE attempts - 1 END, \
             failing_since = CASE WHEN $8 THEN COALESCE(failing_since, $5) ELSE failing_since END \
             WHERE id = $1 AND state = 'pending' AND lease_until = $6",
                 work.id,
                 state,
                 error,
                 next,
                 now,
                 work.lease_until,
                 counted,
                 failed
         )
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // Our lease ran out and another worker took the writeback: its result stands.
            return Ok(());
        }
        outbox::delete_for(&mut tx, Message::Writeback(work.id)).await?;
        if state == "delivered" {
            supersede_parked_before(&mut tx, work).await?;
        }
        if state == "pending" {
            outbox::insert(&mut tx, Message::Writeback(work.id), next).await?;
        }
        record_event(
            &mut tx,
            work.job_id,
            now,
            "writeback",
            None,
            json!({"target": work.target, "sequence": work.sequence, "attempt": work.attempt,
                   "result": shown, "error": error}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn parked_writebacks(&self, limit: i64) -> Result<Vec<ParkedWriteback>, StoreError> {
        Ok(sqlx::query_as::<_, ParkedWriteback>(
            "SELECT w.job_id, j.account_id, w.id, w.target, r.record_id, w.sequence, w.state, \
             w.attempts, w.last_error, w.next_attempt_at, w.delivered_at \
             FROM writebacks w JOIN job_records r ON r.id = w.job_record_id \
             JOIN jobs j ON j.id = w.job_id \
             WHERE w.state = 'parked' ORDER BY w.next_attempt_at DESC, w.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pg())
        .await?)
    }

    async fn parked_writeback_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM writebacks WHERE state = 'parked'"#
        )
        .fetch_one(self.pg())
        .await?)
    }

    async fn retry_writeback(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, Vec<OutboxMessage>), StoreError> {
        let (job_id, publish) = self.rearm(Parked::One(id), now).await?;
        match job_id {
            Some(job_id) => Ok((job_id, publish)),
            None => Err(self.why_not_rearmed(id).await?),
        }
    }
}

/// Which parked writebacks an operator's retry re-arms.
#[derive(Debug, Clone, Copy)]
enum Parked {
    OfJob(Uuid),
    One(i64),
}

/// A claimed writeback with the record it is for.
#[derive(sqlx::FromRow)]
struct Claimed {
    job_id: Uuid,
    job_record_id: i64,
    source: Source,
    record_id: String,
    target: WritebackTarget,
    sequence: i32,
    payload: serde_json::Value,
    attempts: i32,
    failing_since: Option<DateTime<Utc>>,
}

/// A job that joined the same record later and has a writeback for it on the same target:
/// its state is the record's now, whatever became of this older one.
async fn newer_job_on_record(
    tx: &mut sqlx::PgConnection,
    c: &Claimed,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT o.job_id FROM writebacks o JOIN job_records r ON r.id = o.job_record_id \
         WHERE r.source = $1 AND r.record_id = $2 AND o.target = $3 AND r.id > $4 \
         AND o.state <> 'superseded' ORDER BY r.id DESC LIMIT 1",
        c.source as _,
        c.record_id,
        c.target as _,
        c.job_record_id
    )
    .fetch_optional(&mut *tx)
    .await?)
}

/// A later change of the same job, record and target than a claimed writeback's.
enum NewerChange {
    /// Delivered, with its sequence: the claimed one would overwrite it.
    Delivered(i32),
    /// Its call is under way until the lease ends.
    UnderWay(DateTime<Utc>),
}

async fn newer_change_of_job(
    tx: &mut sqlx::PgConnection,
    c: &Claimed,
    now: DateTime<Utc>,
) -> Result<Option<NewerChange>, StoreError> {
    let newer = sqlx::query!(
        "SELECT sequence, state, lease_until FROM writebacks \
         WHERE job_record_id = $1 AND target = $2 AND sequence > $3 \
         AND (state = 'delivered' OR (state = 'pending' AND lease_until > $4)) \
         ORDER BY (state = 'delivered') DESC, sequence DESC LIMIT 1",
        c.job_record_id,
        c.target as _,
        c.sequence,
        now
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(newer.map(|row| match row.lease_until {
        Some(until) if row.state == "pending" => NewerChange::UnderWay(until),
        _ => NewerChange::Delivered(row.sequence),
    }))
}

/// Ends a claimed writeback unsent, with a line in its job's history.
async fn supersede(
    tx: &mut sqlx::PgConnection,
    id: i64,
    c: &Claimed,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE writebacks SET state = 'superseded', lease_until = NULL, attempts = attempts - 1, \
         last_error = $2 WHERE id = $1",
        id,
        reason
    )
    .execute(&mut *tx)
    .await?;
    outbox::delete_for(&mut *tx, Message::Writeback(id)).await?;
    record_event(
        tx,
        c.job_id,
        now,
        "writeback",
        None,
        json!({"target": c.target, "recordId": c.record_id, "sequence": c.sequence,
               "result": "superseded", "error": reason}),
    )
    .await
}

/// The record's parked changes older than one just delivered can never be retried (an
/// older state must not overwrite a newer one): they end superseded, so neither the
/// operator's list nor the parked gauge keeps them.
async fn supersede_parked_before(
    tx: &mut sqlx::PgConnection,
    delivered: &WritebackWork,
) -> Result<(), StoreError> {
    let reason = format!(
        "superseded: change #{} of job {} reached the record since",
        delivered.sequence, delivered.job_id
    );
    sqlx::query!(
        "UPDATE writebacks o SET state = 'superseded', \
         last_error = COALESCE(o.last_error || '; ', '') || $2 \
         FROM job_records r, writebacks mine JOIN job_records mr ON mr.id = mine.job_record_id \
         WHERE mine.id = $1 AND r.id = o.job_record_id AND r.source = mr.source \
         AND r.record_id = mr.record_id AND o.target = mine.target AND o.state = 'parked' \
         AND (r.id < mr.id OR (r.id = mr.id AND o.sequence < mine.sequence))",
        delivered.id,
        reason
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// When this writeback may go instead, if something must reach the record before it: an
/// older change of the same job and record still pending, or an older job's writeback to
/// the record whose call is under way.
async fn must_wait_until(
    tx: &mut sqlx::PgConnection,
    c: &Claimed,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let older_change: Option<DateTime<Utc>> = sqlx::query_scalar!(
        "SELECT min(next_attempt_at) FROM writebacks \
         WHERE job_record_id = $1 AND target = $2 AND sequence < $3 AND state = 'pending'",
        c.job_record_id,
        c.target as _,
        c.sequence
    )
    .fetch_one(&mut *tx)
    .await?;
    if older_change.is_some() {
        return Ok(older_change);
    }
    Ok(sqlx::query_scalar!(
        "SELECT max(o.lease_until) FROM writebacks o JOIN job_records r ON r.id = o.job_record_id \
         WHERE r.source = $1 AND r.record_id = $2 AND o.target = $3 AND r.id < $4 \
         AND o.state = 'pending' AND o.lease_until > $5",
        c.source as _,
        c.record_id,
        c.target as _,
        c.job_record_id,
        now
    )
    .fetch_one(&mut *tx)
    .await?)
}

/// A writeback that could not be claimed because it is not due or another worker leases
/// it: make sure something brings it back then.
async fn bring_back_if_pending(tx: &mut sqlx::PgConnection, id: i64) -> Result<(), StoreError> {
    let state: Option<(String, DateTime<Utc>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT state, next_attempt_at, lease_until FROM writebacks WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((state, next, lease_until)) = state
        && state == "pending"
    {
        let at = lease_until
            .map_or(next, |l| l + chrono::Duration::seconds(1))
            .max(next);
        outbox::ensure(tx, Message::Writeback(id), at).await?;
    }
    Ok(())
}

/// Gives a claim back, uncounted, to go out at `due`.
async fn defer_claim(
    tx: &mut sqlx::PgConnection,
    id: i64,
    due: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE writebacks SET lease_until = NULL, attempts = attempts - 1, \
         next_attempt_at = $2 WHERE id = $1",
        id,
        due
    )
    .execute(&mut *tx)
    .await?;
    outbox::insert(tx, Message::Writeback(id), due).await?;
    Ok(())
}

/// One writeback row per record of the job (or only `record`, one that just joined it) and
/// per target of that record, for the job's current change, with their outbox rows, in one
/// statement (ingest writes these for every event of a CRM's batch). Each carries its own
/// record's id and object.
pub(super) async fn queue_writebacks(
    tx: &mut sqlx::PgConnection,
    job: &Job,
    record: Option<i64>,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let payload =
        serde_json::to_value(job.snapshot()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH w AS (INSERT INTO writebacks (job_id, job_record_id, target, sequence, payload, next_attempt_at) \
                    SELECT $1, r.id, t.target, $2, \
                      CASE WHEN r.record_object IS NULL THEN $3::jsonb - 'recordObject' \
                           ELSE $3::jsonb || jsonb_build_object('recordObject', r.record_object) END \
                      || jsonb_build_object('recordId', r.record_id), $4 \
                    FROM job_records r CROSS JOIN LATERAL unnest(r.writeback_targets) AS t(target) \
                    WHERE r.job_id = $1 AND ($5::bigint IS NULL OR r.id = $5) \
                    ORDER BY r.id, t.target RETURNING id) \
         INSERT INTO outbox (topic, ref, due_at) SELECT $6, id::text, $7 FROM w \
         RETURNING id, ref::bigint",

     )
    .bind(job.id)
    .bind(job.sequence)
    .bind(&payload)
    .bind(now)
    .bind(record)
    .bind(Topic::Writeback.as_str())
    .bind(now + relay_grace)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(outbox_id, writeback_id)| OutboxMessage {
            outbox_id,
            message: Message::Writeback(writeback_id),
        })
        .collect())
}

impl SqlStore {
    pub(super) async fn writebacks_of(
        &self,
        job_id: Uuid,
    ) -> Result<Vec<WritebackRow>, StoreError> {
        Ok(sqlx::query_as::<_, WritebackRow>(
            "SELECT w.id, w.target, r.record_id, w.sequence, w.state, w.attempts, w.last_error, \
             w.next_attempt_at, w.delivered_at \
             FROM writebacks w JOIN job_records r ON r.id = w.job_record_id \
             WHERE w.job_id = $1 ORDER BY w.sequence, r.id, w.target",
        )
        .bind(job_id)
        .fetch_all(self.pg())
        .await?)
    }

    /// Re-arms the job's parked writebacks (see [`SqlStore::rearm`]).
    pub(super) async fn rearm_parked_writebacks(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        Ok(self.rearm(Parked::OfJob(job_id), now).await?.1)
    }

    /// Re-arms parked writebacks newer than the last delivered change of their record (an
    /// older one is superseded when the newer is delivered; the guard covers the rest), since
    /// an older state must never reach the CRM after a newer one.
    /// Returns the job whose writebacks were re-armed, if any were.
    async fn rearm(
        &self,
        which: Parked,
        now: DateTime<Utc>,
    ) -> Result<(Option<Uuid>, Vec<OutboxMessage>), StoreError> {
        let (job_id, id) = match which {
            Parked::OfJob(job_id) => (Some(job_id), None),
            Parked::One(id) => (None, Some(id)),
        };
        let mut tx = self.pg().begin().await?;
        let rearmed = sqlx::query!(
            "UPDATE writebacks w SET state = 'pending', attempts = 0, failing_since = NULL, \
             next_attempt_at = $3 \
             WHERE ($1::uuid IS NULL OR job_id = $1) AND ($2::bigint IS NULL OR id = $2) \
             AND state = 'parked' AND sequence > COALESCE((\
               SELECT max(d.sequence) FROM writebacks d WHERE d.job_record_id = w.job_record_id \
               AND d.target = w.target AND d.state = 'delivered'), 0) \
             RETURNING id, job_id",
            job_id,
            id,
            now
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut publish = Vec::new();
        for row in &rearmed {
            publish.push(
                outbox::insert(&mut tx, Message::Writeback(row.id), now + self.relay_grace).await?,
            );
        }
        // Both kinds of retry touch one job's writebacks.
        let job_id = rearmed.first().map(|row| row.job_id);
        if let Some(job_id) = job_id {
            let ids: Vec<i64> = rearmed.iter().map(|row| row.id).collect();
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
        Ok((job_id, publish))
    }

    /// Why the retry of writeback `id` re-armed nothing.
    async fn why_not_rearmed(&self, id: i64) -> Result<StoreError, StoreError> {
        let state = sqlx::query_scalar!("SELECT state FROM writebacks WHERE id = $1", id)
            .fetch_optional(self.pg())
            .await?;
        Ok(match state.as_deref() {
            None => StoreError::NotFound(format!("writeback {id}")),
            Some("parked") => StoreError::Conflict(format!(
                "writeback {id} stays parked: a newer change of its record has been delivered \
                 since, and an older state must not overwrite it"
            )),
            Some("superseded") => StoreError::Conflict(format!(
                "writeback {id} is superseded: a newer change of its record reached the CRM, \
                 and an older state must not overwrite it"
            )),
            Some(state) => StoreError::Conflict(format!(
                "writeback {id} is {state}: only parked writebacks can be retried"
            )),
        })
    }
}
