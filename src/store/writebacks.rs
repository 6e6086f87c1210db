//! Writebacks: one row per status change, record and target, committed with the change
//! itself, delivered in order per job and record, never an older job's over a newer one's on
//! the same record, retried on their own schedule.

use super::outbox::{self, OutboxMessage};
use super::{SqlStore, StoreError, db, record_event};
use crate::account::AccountId;
use crate::job::{Job, Source, StatusSnapshot, WritebackTarget};
use crate::queue::Message;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

/// The advisory lock space of claims on one record and target.
const RECORD_LOCK_SPACE: i64 = 11;

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
        let mut tx = self.db.begin().await?;
        // The lease and the record are read apart: SQLite's RETURNING cannot name an UPDATE's
        // FROM tables. A record's source and id never change, so the second read needs no
        // lock of its own.
        let row: Option<ClaimedRow> = db::query(
            "UPDATE writebacks SET lease_until = $2, attempts = attempts + 1 \
             WHERE id = $1 AND state = 'pending' \
             AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING job_id, job_record_id, target, sequence, payload, attempts, failing_since",
        )
        .bind(id)
        .bind(now + lease)
        .bind(now)
        .fetch_optional(&mut tx)
        .await?;
        let claimed = match row {
            Some(row) => Some(with_record(&mut tx, row).await?),
            None => None,
        };
        let Some(claimed) = claimed else {
            bring_back_if_pending(&mut tx, id).await?;
            tx.commit().await?;
            return Ok(WritebackClaim::Skip(
                "writeback is not pending, not due, or leased",
            ));
        };
        // Claims for one record and target take turns, so that of two jobs' writebacks to
        // the same CRM field the older can never land after the newer.
        db::pg::lock_scope(
            &mut tx,
            RECORD_LOCK_SPACE,
            &format!(
                "{}/{}/{}",
                claimed.target, claimed.source, claimed.record_id
            ),
        )
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
        let mut tx = self.db.begin().await?;
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
        // lease_until = $6 compares the value this claim wrote with the one it holds: the same
        // encoder wrote both, so equality holds on either backend.
        let updated = db::query(
            "UPDATE writebacks SET state = $2, last_error = $3, next_attempt_at = $4, \
             lease_until = NULL, \
             delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END, \
             attempts = CASE WHEN $7 THEN attempts ELSE attempts - 1 END, \
             failing_since = CASE WHEN $8 THEN COALESCE(failing_since, $5) ELSE failing_since END \
             WHERE id = $1 AND state = 'pending' AND lease_until = $6",
        )
        .bind(work.id)
        .bind(state)
        .bind(error.clone())
        .bind(next)
        .bind(now)
        .bind(work.lease_until)
        .bind(counted)
        .bind(failed)
        .execute(&mut tx)
        .await?;
        if updated == 0 {
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
        Ok(db::query(
            "SELECT w.job_id, j.account_id, w.id, w.target, r.record_id, w.sequence, w.state, \
             w.attempts, w.last_error, w.next_attempt_at, w.delivered_at \
             FROM writebacks w JOIN job_records r ON r.id = w.job_record_id \
             JOIN jobs j ON j.id = w.job_id \
             WHERE w.state = 'parked' ORDER BY w.next_attempt_at DESC, w.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all::<ParkedWriteback>(&mut self.db.read().await?)
        .await?)
    }

    async fn parked_writeback_count(&self) -> Result<i64, StoreError> {
        Ok(
            db::query("SELECT count(*) FROM writebacks WHERE state = 'parked'")
                .scalar::<i64>(&mut self.db.read().await?)
                .await?,
        )
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

/// A claimed writeback as its UPDATE returns it.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    job_id: Uuid,
    job_record_id: i64,
    target: WritebackTarget,
    sequence: i32,
    #[sqlx(json)]
    payload: serde_json::Value,
    attempts: i32,
    failing_since: Option<DateTime<Utc>>,
}

/// The claimed writeback with the record it is for.
async fn with_record(tx: &mut impl db::Exec, row: ClaimedRow) -> Result<Claimed, StoreError> {
    let (source, record_id): (Source, String) =
        db::query("SELECT source, record_id FROM job_records WHERE id = $1")
            .bind(row.job_record_id)
            .fetch_one(tx)
            .await?;
    Ok(Claimed {
        job_id: row.job_id,
        job_record_id: row.job_record_id,
        source,
        record_id,
        target: row.target,
        sequence: row.sequence,
        payload: row.payload,
        attempts: row.attempts,
        failing_since: row.failing_since,
    })
}

/// A claimed writeback with the record it is for.
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
    tx: &mut impl db::Exec,
    c: &Claimed,
) -> Result<Option<Uuid>, StoreError> {
    Ok(db::query(
        "SELECT o.job_id FROM writebacks o JOIN job_records r ON r.id = o.job_record_id \
         WHERE r.source = $1 AND r.record_id = $2 AND o.target = $3 AND r.id > $4 \
         AND o.state <> 'superseded' ORDER BY r.id DESC LIMIT 1",
    )
    .bind(c.source)
    .bind(c.record_id.as_str())
    .bind(c.target)
    .bind(c.job_record_id)
    .scalar_optional::<Uuid>(tx)
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
    tx: &mut impl db::Exec,
    c: &Claimed,
    now: DateTime<Utc>,
) -> Result<Option<NewerChange>, StoreError> {
    let newer: Option<(i32, String, Option<DateTime<Utc>>)> = db::query(
        "SELECT sequence, state, lease_until FROM writebacks \
         WHERE job_record_id = $1 AND target = $2 AND sequence > $3 \
         AND (state = 'delivered' OR (state = 'pending' AND lease_until > $4)) \
         ORDER BY (state = 'delivered') DESC, sequence DESC LIMIT 1",
    )
    .bind(c.job_record_id)
    .bind(c.target)
    .bind(c.sequence)
    .bind(now)
    .fetch_optional(tx)
    .await?;
    Ok(
        newer.map(|(sequence, state, lease_until)| match lease_until {
            Some(until) if state == "pending" => NewerChange::UnderWay(until),
            _ => NewerChange::Delivered(sequence),
        }),
    )
}

/// Ends a claimed writeback unsent, with a line in its job's history.
async fn supersede(
    tx: &mut impl db::Exec,
    id: i64,
    c: &Claimed,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query(
        "UPDATE writebacks SET state = 'superseded', lease_until = NULL, attempts = attempts - 1, \
         last_error = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(tx)
    .await?;
    outbox::delete_for(tx, Message::Writeback(id)).await?;
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
    tx: &mut impl db::Exec,
    delivered: &WritebackWork,
) -> Result<(), StoreError> {
    let reason = format!(
        "superseded: change #{} of job {} reached the record since",
        delivered.sequence, delivered.job_id
    );
    // EXISTS rather than UPDATE ... FROM: the same rows on both backends, with no join
    // against the target table SQLite would read differently.
    db::query(
        "UPDATE writebacks AS o SET state = 'superseded', \
         last_error = COALESCE(o.last_error || '; ', '') || $2 \
         WHERE o.state = 'parked' AND EXISTS (SELECT 1 FROM job_records r, writebacks mine \
         JOIN job_records mr ON mr.id = mine.job_record_id \
         WHERE mine.id = $1 AND r.id = o.job_record_id AND r.source = mr.source \
         AND r.record_id = mr.record_id AND o.target = mine.target \
         AND (r.id < mr.id OR (r.id = mr.id AND o.sequence < mine.sequence)))",
    )
    .bind(delivered.id)
    .bind(reason)
    .execute(tx)
    .await?;
    Ok(())
}

/// When this writeback may go instead, if something must reach the record before it: an
/// older change of the same job and record still pending, or an older job's writeback to
/// the record whose call is under way.
async fn must_wait_until(
    tx: &mut impl db::Exec,
    c: &Claimed,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let older_change = db::query(
        "SELECT min(next_attempt_at) FROM writebacks \
         WHERE job_record_id = $1 AND target = $2 AND sequence < $3 AND state = 'pending'",
    )
    .bind(c.job_record_id)
    .bind(c.target)
    .bind(c.sequence)
    .scalar::<Option<DateTime<Utc>>>(tx)
    .await?;
    if older_change.is_some() {
        return Ok(older_change);
    }
    Ok(db::query(
        "SELECT max(o.lease_until) FROM writebacks o JOIN job_records r ON r.id = o.job_record_id \
         WHERE r.source = $1 AND r.record_id = $2 AND o.target = $3 AND r.id < $4 \
         AND o.state = 'pending' AND o.lease_until > $5",
    )
    .bind(c.source)
    .bind(c.record_id.as_str())
    .bind(c.target)
    .bind(c.job_record_id)
    .bind(now)
    .scalar::<Option<DateTime<Utc>>>(tx)
    .await?)
}

/// A writeback that could not be claimed because it is not due or another worker leases
/// it: make sure something brings it back then.
async fn bring_back_if_pending(tx: &mut impl db::Exec, id: i64) -> Result<(), StoreError> {
    let state: Option<(String, DateTime<Utc>, Option<DateTime<Utc>>)> =
        db::query("SELECT state, next_attempt_at, lease_until FROM writebacks WHERE id = $1")
            .bind(id)
            .fetch_optional(tx)
            .await?;
    if let Some((state, next, lease_until)) = state
        && state == "pending"
    {
        let at = outbox::comes_back_at(next, lease_until);
        outbox::ensure(tx, Message::Writeback(id), at).await?;
    }
    Ok(())
}

/// Gives a claim back, uncounted, to go out at `due`.
async fn defer_claim(
    tx: &mut impl db::Exec,
    id: i64,
    due: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query(
        "UPDATE writebacks SET lease_until = NULL, attempts = attempts - 1, \
         next_attempt_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(due)
    .execute(tx)
    .await?;
    outbox::insert(tx, Message::Writeback(id), due).await?;
    Ok(())
}

/// One writeback row per record of the job (or only `record`, one that just joined it) and
/// per target of that record, for the job's current change, with their outbox rows (ingest
/// writes these for every event of a CRM's batch). Each carries its own record's id and
/// object.
pub(super) async fn queue_writebacks(
    tx: &mut impl db::Exec,
    job: &Job,
    record: Option<i64>,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let snapshot = job.snapshot();
    let records: Vec<(i64, String, Option<String>, db::List<WritebackTarget>)> = db::query(
        "SELECT id, record_id, record_object, writeback_targets FROM job_records \
         WHERE job_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY id",
    )
    .bind(job.id)
    .bind(record)
    .fetch_all(tx)
    .await?;
    let mut publish = Vec::new();
    for (job_record_id, record_id, record_object, targets) in records {
        let payload = payload_for(&snapshot, &record_id, record_object.as_deref())?;
        let mut targets = targets.0;
        // The order the rows were written in before: by record, then by target's name.
        targets.sort_by_key(|target| target.as_str());
        for target in targets {
            let id = db::query(
                "INSERT INTO writebacks (job_id, job_record_id, target, sequence, payload, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(job.id)
            .bind(job_record_id)
            .bind(target)
            .bind(job.sequence)
            .bind(Json(payload.clone()))
            .bind(now)
            .bind(now)
            .scalar::<i64>(tx)
            .await?;
            publish.push(outbox::insert(tx, Message::Writeback(id), now + relay_grace).await?);
        }
    }
    Ok(publish)
}

/// The payload written back for one record of a job: the job's snapshot, named by that
/// record (a record that joined the job has its own id and object).
fn payload_for(
    snapshot: &StatusSnapshot,
    record_id: &str,
    record_object: Option<&str>,
) -> Result<serde_json::Value, StoreError> {
    let mut payload =
        serde_json::to_value(snapshot).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let Some(fields) = payload.as_object_mut() else {
        return Err(StoreError::Corrupt(
            "a status snapshot is not a JSON object".to_string(),
        ));
    };
    match record_object {
        Some(object) => fields.insert("recordObject".to_string(), json!(object)),
        None => fields.remove("recordObject"),
    };
    fields.insert("recordId".to_string(), json!(record_id));
    Ok(payload)
}

impl SqlStore {
    pub(super) async fn writebacks_of(
        &self,
        job_id: Uuid,
    ) -> Result<Vec<WritebackRow>, StoreError> {
        Ok(db::query(
            "SELECT w.id, w.target, r.record_id, w.sequence, w.state, w.attempts, w.last_error, \
             w.next_attempt_at, w.delivered_at \
             FROM writebacks w JOIN job_records r ON r.id = w.job_record_id \
             WHERE w.job_id = $1 ORDER BY w.sequence, r.id, w.target",
        )
        .bind(job_id)
        .fetch_all::<WritebackRow>(&mut self.db.read().await?)
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
        let mut tx = self.db.begin().await?;
        let rearmed: Vec<(i64, Uuid)> = db::query(
            "UPDATE writebacks AS w SET state = 'pending', attempts = 0, failing_since = NULL, \
             next_attempt_at = $3 \
             WHERE ($1 IS NULL OR job_id = $1) AND ($2 IS NULL OR id = $2) \
             AND state = 'parked' AND sequence > COALESCE((\
               SELECT max(d.sequence) FROM writebacks d WHERE d.job_record_id = w.job_record_id \
               AND d.target = w.target AND d.state = 'delivered'), 0) \
             RETURNING id, job_id",
        )
        .bind(job_id)
        .bind(id)
        .bind(now)
        .fetch_all(&mut tx)
        .await?;
        let mut publish = Vec::new();
        for (id, _) in &rearmed {
            publish.push(
                outbox::insert(&mut tx, Message::Writeback(*id), now + self.relay_grace).await?,
            );
        }
        // Both kinds of retry touch one job's writebacks.
        let job_id = rearmed.first().map(|(_, job_id)| *job_id);
        if let Some(job_id) = job_id {
            let ids: Vec<i64> = rearmed.iter().map(|(id, _)| *id).collect();
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
        let state = db::query("SELECT state FROM writebacks WHERE id = $1")
            .bind(id)
            .scalar_optional::<String>(&mut self.db.read().await?)
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn snapshot(record_object: Option<&str>) -> StatusSnapshot {
        let mut job = Job::queued("acc_1", at("2026-03-02T10:00:00Z"));
        job.record_id = "job-record".to_string();
        job.record_object = record_object.map(str::to_string);
        job.snapshot()
    }

    #[test]
    fn a_payload_names_its_own_record_and_object() {
        let payload = payload_for(&snapshot(Some("contact")), "joined-7", Some("lead")).unwrap();
        assert_eq!(payload["recordId"], "joined-7");
        assert_eq!(payload["recordObject"], "lead");
        assert_eq!(payload["accountId"], "acc_1");
        assert_eq!(payload["status"], "queued");
    }

    #[test]
    fn a_record_without_an_object_drops_the_jobs_object() {
        let payload = payload_for(&snapshot(Some("contact")), "joined-7", None).unwrap();
        assert_eq!(payload["recordId"], "joined-7");
        assert!(payload.get("recordObject").is_none());
    }

    #[test]
    fn a_payload_keeps_the_rest_of_the_snapshot() {
        let snapshot = snapshot(None);
        let mut expected = serde_json::to_value(&snapshot).unwrap();
        expected["recordId"] = json!("job-record");
        assert_eq!(
            payload_for(&snapshot, "job-record", None).unwrap(),
            expected
        );
    }

    /// A job row (and its own record) written straight into a store, as ingest would leave
    /// it: the store's own tests need no ingest to run.
    pub(in crate::store) async fn seed_job(store: &SqlStore, job: &Job) -> i64 {
        let mut tx = store.db.begin().await.unwrap();
        db::query(
            "INSERT INTO jobs (id, source, record_id, account_id, lead, status, changed_at, \
             created_at, updated_at, due_at, writeback_targets, profile_key, rank_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $8, $9, $10, $7)",
        )
        .bind(job.id)
        .bind(job.source)
        .bind(job.record_id.as_str())
        .bind(job.account_id.as_str())
        .bind(Json(json!({})))
        .bind(job.status)
        .bind(job.created_at)
        .bind(job.due_at)
        .bind(db::Set(&job.writeback_targets))
        .bind(job.profile_id.clone())
        .execute(&mut tx)
        .await
        .unwrap();
        let record = seed_record(&mut tx, job, &job.record_id, &job.writeback_targets).await;
        tx.commit().await.unwrap();
        record
    }

    async fn seed_record(
        tx: &mut db::Tx<'_>,
        job: &Job,
        record_id: &str,
        targets: &[WritebackTarget],
    ) -> i64 {
        db::query(
            "INSERT INTO job_records (job_id, source, record_id, record_object, \
             writeback_targets, joined_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(job.id)
        .bind(job.source)
        .bind(record_id)
        .bind(job.record_object.clone())
        .bind(db::Set(targets))
        .bind(job.created_at)
        .scalar::<i64>(tx)
        .await
        .unwrap()
    }

    async fn queue(store: &SqlStore, job: &Job, now: DateTime<Utc>) -> Vec<OutboxMessage> {
        let mut tx = store.db.begin().await.unwrap();
        let queued = queue_writebacks(&mut tx, job, None, now, chrono::Duration::zero())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        queued
    }

    fn ids(queued: &[OutboxMessage]) -> Vec<i64> {
        queued
            .iter()
            .map(|m| match m.message {
                Message::Writeback(id) => id,
                Message::Connect(_) => panic!("a writeback was queued as a connect"),
            })
            .collect()
    }

    #[tokio::test]
    async fn sqlite_queues_one_writeback_per_record_and_target() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let mut job = Job::queued("acc_1", now);
        job.writeback_targets = vec![WritebackTarget::HubSpot, WritebackTarget::Callback];
        seed_job(&store, &job).await;
        let mut tx = store.db.begin().await.unwrap();
        seed_record(&mut tx, &job, "rec-2", &[WritebackTarget::Callback]).await;
        tx.commit().await.unwrap();

        let queued = queue(&store, &job, now).await;
        assert_eq!(queued.len(), 3);
        let rows = store.writebacks_of(job.id).await.unwrap();
        let seen: Vec<(&str, WritebackTarget, &str)> = rows
            .iter()
            .map(|r| (r.record_id.as_str(), r.target, r.state.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("rec-1", WritebackTarget::Callback, "pending"),
                ("rec-1", WritebackTarget::HubSpot, "pending"),
                ("rec-2", WritebackTarget::Callback, "pending"),
            ]
        );
        // Each payload is named by its own record.
        let claim = store
            .claim_writeback(ids(&queued)[2], chrono::Duration::minutes(1), now)
            .await
            .unwrap();
        let WritebackClaim::Deliver(work) = claim else {
            panic!("expected a delivery, got {claim:?}");
        };
        assert_eq!(work.payload["recordId"], "rec-2");
        assert_eq!(work.attempt, 1);
    }

    #[tokio::test]
    async fn sqlite_claims_in_order_and_records_the_result_under_the_lease() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let mut job = Job::queued("acc_1", now);
        seed_job(&store, &job).await;
        let first = ids(&queue(&store, &job, now).await)[0];
        job.sequence = 2;
        let second = ids(&queue(&store, &job, now).await)[0];
        let lease = chrono::Duration::minutes(1);

        // The newer change waits for the older one, and is not counted as a try.
        let claim = store.claim_writeback(second, lease, now).await.unwrap();
        assert!(matches!(claim, WritebackClaim::Deferred), "{claim:?}");
        let WritebackClaim::Deliver(work) = store.claim_writeback(first, lease, now).await.unwrap()
        else {
            panic!("the older change is delivered first");
        };
        // A second claim of a leased writeback is skipped.
        assert!(matches!(
            store.claim_writeback(first, lease, now).await.unwrap(),
            WritebackClaim::Skip(_)
        ));
        store
            .writeback_done(&work, &WritebackResult::Delivered, now)
            .await
            .unwrap();
        let rows = store.writebacks_of(job.id).await.unwrap();
        assert_eq!(rows[0].state, "delivered");
        assert_eq!(rows[0].delivered_at, Some(now));
        assert_eq!(rows[1].state, "pending");
        assert_eq!(rows[1].attempts, 0);
        assert_eq!(rows[1].next_attempt_at, now + chrono::Duration::seconds(1));
        // A result recorded under a lease that is not the row's changes nothing.
        let stale = WritebackWork {
            lease_until: now,
            ..work
        };
        let parked = WritebackResult::Parked { reason: "x".into() };
        store.writeback_done(&stale, &parked, now).await.unwrap();
        assert_eq!(
            store.writebacks_of(job.id).await.unwrap()[0].state,
            "delivered"
        );
    }

    #[tokio::test]
    async fn sqlite_parks_a_refused_writeback_until_an_operator_retries_it() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let job = Job::queued("acc_1", now);
        seed_job(&store, &job).await;
        let id = ids(&queue(&store, &job, now).await)[0];
        let lease = chrono::Duration::minutes(1);
        let WritebackClaim::Deliver(work) = store.claim_writeback(id, lease, now).await.unwrap()
        else {
            panic!("a due writeback is delivered");
        };
        let parked = WritebackResult::Parked {
            reason: "record deleted".into(),
        };
        store.writeback_done(&work, &parked, now).await.unwrap();
        assert_eq!(store.parked_writeback_count().await.unwrap(), 1);
        let list = store.parked_writebacks(10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].job_id, job.id);
        assert_eq!(
            list[0].writeback.last_error.as_deref(),
            Some("record deleted")
        );

        let later = now + chrono::Duration::minutes(5);
        let (job_id, publish) = store.retry_writeback(id, later).await.unwrap();
        assert_eq!(job_id, job.id);
        assert_eq!(ids(&publish), vec![id]);
        assert_eq!(store.parked_writeback_count().await.unwrap(), 0);
        let row = &store.writebacks_of(job.id).await.unwrap()[0];
        assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
        // Not parked any more: a second retry is refused.
        assert!(matches!(
            store.retry_writeback(id, later).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.retry_writeback(id + 100, later).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn sqlite_supersedes_an_older_jobs_writeback_to_the_same_record() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let older = Job::queued("acc_1", now);
        seed_job(&store, &older).await;
        let mut newer = Job::queued("acc_1", now + chrono::Duration::seconds(1));
        newer.profile_id = Some("john".into());
        seed_job(&store, &newer).await;
        let old_id = ids(&queue(&store, &older, now).await)[0];
        queue(&store, &newer, now).await;
        let claim = store
            .claim_writeback(old_id, chrono::Duration::minutes(1), now)
            .await
            .unwrap();
        assert!(
            matches!(claim, WritebackClaim::Superseded(WritebackTarget::Callback)),
            "{claim:?}"
        );
        let row = &store.writebacks_of(older.id).await.unwrap()[0];
        assert_eq!((row.state.as_str(), row.attempts), ("superseded", 0));
    }
}
