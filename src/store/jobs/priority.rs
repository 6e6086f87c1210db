//! A job's priority and its place in its account's backlog (`job::rank_at`), and a change of
//! priority while the job waits.

use super::super::outbox::{self, OutboxMessage};
use crate::job::{Status, clamp_priority, rank_at};
use crate::queue::Message;
use crate::store::db::{self, Exec, Set};
use crate::store::{StoreError, record_event};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

/// Gives a job that has not ended `priority`, as the source said it at `seen_at`, and its
/// place in the backlog with it; what the source said earlier than the job's last word
/// changes nothing (a retried or late event, a read that raced a change). A job waiting on a
/// timer of its own is made due now, so that the gate gives it the turn its new place earns
/// (and writes back the ETA that follows); the message to publish for that, if any.
pub(super) async fn set_priority(
    tx: &mut impl Exec,
    job_id: Uuid,
    priority: i32,
    seen_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<OutboxMessage>, StoreError> {
    let priority = clamp_priority(i64::from(priority));
    type Row = (DateTime<Utc>, i32, Option<DateTime<Utc>>, Status);
    let row: Option<Row> = db::query(
        "SELECT created_at, priority, priority_seen_at, status FROM jobs WHERE id = $1 FOR UPDATE",
    )
    .bind(job_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((created_at, before, last_seen, status)) = row else {
        return Ok(None);
    };
    if status.is_final() || last_seen.is_some_and(|last| last > seen_at) {
        return Ok(None);
    }
    db::query("UPDATE jobs SET priority = $2, rank_at = $3, priority_seen_at = $4 WHERE id = $1")
        .bind(job_id)
        .bind(priority)
        .bind(rank_at(created_at, priority))
        .bind(seen_at)
        .execute(&mut *tx)
        .await?;
    if before == priority {
        return Ok(None);
    }
    record_event(
        &mut *tx,
        job_id,
        now,
        "priority",
        None,
        json!({"from": before, "to": priority}),
    )
    .await?;
    let woken = db::query(
        "UPDATE jobs SET due_at = $2 WHERE id = $1 AND due_at > $2 AND waits_on IS NULL \
         AND (lease_until IS NULL OR lease_until < $2) AND status = ANY($3) RETURNING id",
    )
    .bind(job_id)
    .bind(now)
    .bind(Set(&Status::BACKLOG[..]))
    .scalar_optional::<Uuid>(&mut *tx)
    .await?;
    Ok(match woken {
        Some(_) => Some(outbox::reschedule(&mut *tx, Message::Connect(job_id), now).await?),
        None => None,
    })
}
