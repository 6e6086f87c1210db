//! Creating jobs from accepted deliveries: idempotency keys, one job per lead and per
//! record, and the records that join a job.

use super::super::outbox::{self, OutboxMessage};
use super::super::writebacks;
use super::priority::set_priority;
use super::rows::{self, LeadColumns};
use super::{IngestOutcome, NewJob};
use crate::job::{Job, Source, Status, WritebackTarget, clamp_priority, rank_at};
use crate::queue::Message;
use crate::store::db::{self, Exec, Set};
use crate::store::{SqlStore, StoreError, record_event};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

pub(super) async fn ingest_batch(
    store: &SqlStore,
    news: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    // Records in a fixed order, so that two batches naming the same records lock them in
    // the same order; the outcomes go back in the given order.
    let mut order: Vec<usize> = (0..news.len()).collect();
    order.sort_by(|a, b| {
        let key = |i: &usize| (&news[*i].record_id, &news[*i].delivery_id);
        key(a).cmp(&key(b)).then(a.cmp(b))
    });
    // Most batches meet no concurrent delivery of the same key or lead: they go in one
    // transaction without savepoints. One that does is done again with a savepoint per
    // delivery, so that the delivery that hit a unique index can look again.
    match ingest_in_order(store, news, &order, Savepoints::None, now).await {
        Err(e) if e.is_unique_violation() || e.is_deadlock() => {
            ingest_in_order(store, news, &order, Savepoints::PerDelivery, now).await
        }
        other => other,
    }
}

/// Whether each delivery of a batch gets a savepoint of its own, so that one that meets a
/// concurrent delivery of the same key or lead can look again without undoing the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Savepoints {
    None,
    PerDelivery,
}

async fn ingest_in_order(
    store: &SqlStore,
    news: &[NewJob],
    order: &[usize],
    savepoints: Savepoints,
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut outcomes: Vec<Option<IngestOutcome>> = vec![None; news.len()];
    let mut tx = store.db.begin().await?;
    for &index in order {
        let new = &news[index];
        let outcome = if savepoints == Savepoints::PerDelivery {
            let mut tries = 0;
            loop {
                tries += 1;
                let mut savepoint = tx.savepoint().await?;
                match ingest_one(&mut savepoint, new, now, store.relay_grace).await {
                    Ok(outcome) => {
                        savepoint.commit().await?;
                        break outcome;
                    }
                    // A concurrent delivery of the same key or lead committed first: the
                    // next pass finds its job.
                    Err(e) if e.is_unique_violation() && tries < 3 => {
                        savepoint.rollback().await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            ingest_one(&mut tx, new, now, store.relay_grace).await?
        };
        outcomes[index] = Some(outcome);
    }
    tx.commit().await?;
    Ok(outcomes.into_iter().flatten().collect())
}
/// Which of `news` already have a job, read without writing (a dry run's duplicates).
pub(super) async fn existing_jobs(
    store: &SqlStore,
    news: &[NewJob],
) -> Result<Vec<bool>, StoreError> {
    let mut conn = store.db.read().await?;
    let mut found = Vec::with_capacity(news.len());
    for new in news {
        found.push(existing_job(&mut conn, new).await?.is_some());
    }
    Ok(found)
}

/// The job a delivery finds: the one its id already made, or the one holding its record or
/// its lead, which it attaches to.
enum Existing {
    OfDelivery(rows::JobState),
    Holder(rows::JobState),
}

async fn existing_job(conn: &mut impl Exec, new: &NewJob) -> Result<Option<Existing>, StoreError> {
    if let Some(key) = &new.delivery_id
        && let Some(seen) = rows::job_of_delivery(conn, new.source, key).await?
    {
        return Ok(Some(Existing::OfDelivery(seen)));
    }
    if new.one_open_job_per_record
        && let Some(existing) = rows::open_job_of_record(conn, new.source, &new.record_id).await?
    {
        return Ok(Some(Existing::Holder(existing)));
    }
    let columns = LeadColumns::of(&new.resolution);
    if let Some(profile_key) = columns.profile_key
        && let Some(existing) =
            rows::lead_holder(conn, &new.account_id, profile_key, columns.profile_urn).await?
    {
        return Ok(Some(Existing::Holder(existing)));
    }
    Ok(None)
}

/// One delivery inside the caller's transaction: its job is found or created.
async fn ingest_one(
    tx: &mut impl Exec,
    new: &NewJob,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<IngestOutcome, StoreError> {
    match existing_job(tx, new).await? {
        // A repeat of a delivery says what it said then: a priority changed since stands.
        Some(Existing::OfDelivery(seen)) => {
            return Ok(IngestOutcome::Duplicate {
                job_id: seen.id,
                status: seen.status,
                publish: Vec::new(),
            });
        }
        Some(Existing::Holder(existing)) => {
            return attach(tx, new, existing, now, relay_grace).await;
        }
        None => {}
    }
    let columns = LeadColumns::of(&new.resolution);
    let job_id = Uuid::now_v7();
    let status = if columns.invalid_reason.is_some() {
        Status::Invalid
    } else {
        Status::Queued
    };
    let due_at = (status == Status::Queued).then_some(now);
    let created_at = created_at();
    let priority = clamp_priority(i64::from(new.priority.unwrap_or(0)));
    let job: Job = db::query(concat!(
            "INSERT INTO jobs (id, source, record_id, account_id, profile_key, profile_id, profile_urn, \
             message, lead, status, error, sequence, changed_at, due_at, record_object, enrich, \
             writeback_targets, created_at, updated_at, priority, rank_at, priority_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13, $14, $15, $16, \
             $17, $12, $18, $19, $20) RETURNING ",
                 rows::job_columns!()
        ))
        .bind(job_id)
        .bind(new.source)
        .bind(&new.record_id)
        .bind(&new.account_id)
        .bind(columns.profile_key)
        .bind(columns.profile_id)
        .bind(columns.profile_urn)
        .bind(columns.message)
        .bind(sqlx::types::Json(&new.lead))
        .bind(status)
        .bind(columns.invalid_reason)
        .bind(now)
        .bind(due_at)
        .bind(&new.record_object)
        .bind(columns.enrich)
        .bind(Set(&new.writeback_targets))
        .bind(created_at)
        .bind(priority)
        .bind(rank_at(created_at, priority))
        .bind(new.priority.map(|_| now))
        .fetch_one(&mut *tx)
        .await?;
    join_record(&mut *tx, job_id, &RecordRef::of(new), now).await?;
    remember_delivery(&mut *tx, new, job_id, now, "accepted", Some(status)).await?;
    let mut publish = Vec::new();
    if status == Status::Queued {
        publish.push(outbox::insert(&mut *tx, Message::Connect(job_id), now + relay_grace).await?);
    }
    publish.extend(writebacks::queue_writebacks(&mut *tx, &job, None, now, relay_grace).await?);
    Ok(IngestOutcome::Created {
        job_id,
        status,
        publish,
    })
}

/// A delivery for a job that already exists: remembered on that job, which is the answer.
/// A record the job did not have yet (another CRM record naming the same lead) joins it and
/// is written the job's current state now, with the messages to publish for that.
async fn attach(
    tx: &mut impl Exec,
    new: &NewJob,
    existing: rows::JobState,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<IngestOutcome, StoreError> {
    let record = RecordRef::of(new);
    let job_id = existing.id;
    let (status, mut publish) = match join_with_state(tx, job_id, &record, now, relay_grace).await?
    {
        Some((job, publish)) => (job.status, publish),
        None => (existing.status, Vec::new()),
    };
    // The source's priority now is the job's: a CRM's score can change while the job waits.
    if let Some(priority) = new.priority {
        publish.extend(set_priority(tx, job_id, priority, now, now).await?);
    }
    remember_delivery(tx, new, job_id, now, "duplicate_event", None).await?;
    Ok(IngestOutcome::Duplicate {
        job_id,
        status,
        publish,
    })
}

/// A CRM record and where its writebacks go.
pub(super) struct RecordRef<'a> {
    source: Source,
    record_id: &'a str,
    record_object: Option<&'a str>,
    writeback_targets: &'a [WritebackTarget],
}

impl<'a> RecordRef<'a> {
    fn of(new: &'a NewJob) -> RecordRef<'a> {
        RecordRef {
            source: new.source,
            record_id: &new.record_id,
            record_object: new.record_object.as_deref(),
            writeback_targets: &new.writeback_targets,
        }
    }

    pub(super) fn of_job(job: &'a Job) -> RecordRef<'a> {
        RecordRef {
            source: job.source,
            record_id: &job.record_id,
            record_object: job.record_object.as_deref(),
            writeback_targets: &job.writeback_targets,
        }
    }
}

/// Adds `record` to the job's records; the new row's id, or `None` if it was there already.
async fn join_record(
    tx: &mut impl Exec,
    job_id: Uuid,
    record: &RecordRef<'_>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    Ok(db::query(
        "INSERT INTO job_records (job_id, source, record_id, record_object, writeback_targets, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, source, record_id) DO NOTHING RETURNING id",
    )
    .bind(job_id)
    .bind(record.source)
    .bind(record.record_id)
    .bind(record.record_object)
    .bind(Set(record.writeback_targets))
    .bind(now)
    .scalar_optional(tx)
    .await?)
}

/// Joins `record` to the job unless it is there already, and queues the job's current state
/// for it. The job's row is locked first, so a concurrent transition either sees the new
/// record or has committed the state read here.
pub(super) async fn join_with_state(
    tx: &mut impl Exec,
    job_id: Uuid,
    record: &RecordRef<'_>,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<Option<(Job, Vec<OutboxMessage>)>, StoreError> {
    let known: bool = db::query(
        "SELECT EXISTS (SELECT 1 FROM job_records WHERE job_id = $1 AND source = $2 \
         AND record_id = $3)",
    )
    .bind(job_id)
    .bind(record.source)
    .bind(record.record_id)
    .scalar(tx)
    .await?;
    if known {
        return Ok(None);
    }
    let job = rows::lock(tx, job_id).await?;
    let Some(joined) = join_record(tx, job_id, record, now).await? else {
        return Ok(None);
    };
    record_event(
        tx,
        job_id,
        now,
        "record_joined",
        None,
        json!({"source": record.source, "recordId": record.record_id,
               "recordObject": record.record_object, "targets": record.writeback_targets}),
    )
    .await?;
    let publish =
        writebacks::queue_writebacks(&mut *tx, &job, Some(joined), now, relay_grace).await?;
    Ok(Some((job, publish)))
}

/// Keeps the delivery's id as an idempotency key for `job_id` and notes it in the history.
async fn remember_delivery(
    tx: &mut impl Exec,
    new: &NewJob,
    job_id: Uuid,
    now: DateTime<Utc>,
    kind: &str,
    status: Option<Status>,
) -> Result<(), StoreError> {
    if let Some(key) = &new.delivery_id {
        db::query(
            "INSERT INTO idempotency_keys (source, key, job_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(new.source)
        .bind(key)
        .bind(job_id)
        .bind(now)
        .execute(tx)
        .await?;
    }
    let detail = json!({
        "source": new.source, "recordId": new.record_id, "deliveryId": new.delivery_id,
        "error": LeadColumns::of(&new.resolution).invalid_reason,
    });
    record_event(tx, job_id, now, kind, status, detail).await
}

/// When a job is created: the real time, not the caller's clock, strictly increasing within
/// the process and whole microseconds (what PostgreSQL keeps), so that jobs created in one
/// batch keep their order and compare the same on both backends.
fn created_at() -> DateTime<Utc> {
    use std::sync::Mutex;
    static LAST: Mutex<Option<DateTime<Utc>>> = Mutex::new(None);
    let now = Utc::now();
    let now = now - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1000));
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = match *last {
        Some(previous) if previous >= now => previous + chrono::Duration::microseconds(1),
        _ => now,
    };
    *last = Some(at);
    at
}
