//! A worker's lease on a job: the claim, the start of a send, and a slot given back.

use super::super::accounts;
use super::super::outbox;
use super::{Claim, ClaimedJob, SendStart, rows};
use crate::queue::Message;
use crate::store::db;
use crate::store::{SqlStore, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub(super) async fn claim(
    store: &SqlStore,
    job_id: Uuid,
    owner: &str,
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Claim, StoreError> {
    let mut tx = store.db.begin().await?;
    let claimed: Option<ClaimedJob> = db::query(concat!(
        "UPDATE jobs SET lease_owner = $2, lease_until = $3, updated_at = $4, waits_on = NULL \
         WHERE id = $1 AND due_at IS NOT NULL AND due_at <= $4 \
         AND (lease_until IS NULL OR lease_until < $4) RETURNING ",
        rows::job_columns!(),
        ", send_started_at AS in_doubt_since, called_off_at"
    ))
    .bind(job_id)
    .bind(owner)
    .bind(now + lease)
    .bind(now)
    .fetch_optional(&mut tx)
    .await?;
    let Some(claimed) = claimed else {
        let state: Option<Unclaimable> = db::query(
            "SELECT due_at, lease_until, waits_on IS NOT NULL AS waits FROM jobs WHERE id = $1",
        )
        .bind(job_id)
        .fetch_optional(&mut tx)
        .await?;
        let (why, comes_back_at) = why_unclaimable(state, now);
        // This delivery may be the job's only message (a relay whose clock runs ahead,
        // say): make sure something brings the job back before dropping it.
        if let Some(at) = comes_back_at {
            outbox::ensure(&mut tx, Message::Connect(job_id), at).await?;
            tx.commit().await?;
        }
        return Ok(Claim::Skip(why));
    };
    // A slot a dead attempt took at the gate and never used is the account's again.
    accounts::give_back_unstarted_slots(&mut tx, job_id, now).await?;
    outbox::insert(
        &mut tx,
        Message::Connect(job_id),
        now + lease + chrono::Duration::seconds(1),
    )
    .await?;
    tx.commit().await?;
    Ok(Claim::Claimed(Box::new(claimed)))
}

/// What a job that could not be claimed is doing: its due time, lease end, and whether it
/// waits on its account or CRM.
#[derive(Debug, sqlx::FromRow)]
struct Unclaimable {
    due_at: Option<DateTime<Utc>>,
    lease_until: Option<DateTime<Utc>>,
    waits: bool,
}

/// Why a delivery found nothing to do, and when something must bring the job back, if the
/// delivery may be its only message (a relay whose clock runs ahead, say).
fn why_unclaimable(
    state: Option<Unclaimable>,
    now: DateTime<Utc>,
) -> (&'static str, Option<DateTime<Utc>>) {
    let Some(state) = state else {
        return ("no such job", None);
    };
    match state.due_at {
        None => ("job has ended, or rests shadowed until released", None),
        // Its wait releases it; a timer of its own is what the wait saves.
        Some(due) if due > now && state.waits => ("job waits on its account or CRM", None),
        Some(due) if due > now => ("job is not due yet", Some(due)),
        Some(_) => (
            "another worker holds the job",
            state.lease_until.map(|l| l + chrono::Duration::seconds(1)),
        ),
    }
}

pub(super) async fn send_started<C>(
    store: &SqlStore,
    job_id: Uuid,
    owner: &str,
    in_doubt_since: Option<DateTime<Utc>>,
    lease: chrono::Duration,
    clock: C,
) -> Result<SendStart, StoreError>
where
    C: Fn() -> DateTime<Utc> + Send + Sync,
{
    let mut tx = store.db.begin().await?;
    /// Lease owner, lease end, and when the job's doubt began.
    type LeaseRow = (Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let row: Option<LeaseRow> = db::query(
        "SELECT lease_owner, lease_until, send_started_at FROM jobs WHERE id = $1 FOR UPDATE",
    )
    .bind(job_id)
    .fetch_optional(&mut tx)
    .await?;
    let Some((lease_owner, lease_until, doubt)) = row else {
        return Err(StoreError::NotFound(format!("job {job_id}")));
    };
    if lease_owner.as_deref() != Some(owner) || lease_until.is_none_or(|t| t <= clock()) {
        return Err(StoreError::LeaseLost(job_id));
    }
    if doubt != in_doubt_since {
        return Ok(SendStart::NowInDoubt);
    }
    // The account's send lease covers the call too, or another job could send beside it;
    // the watchdog follows the renewed lease. Both may wait on a lock: the lease is
    // measured after them.
    db::query("SELECT 1 FROM accounts WHERE sending_job = $1 FOR UPDATE")
        .bind(job_id)
        .scalar_optional::<i32>(&mut tx)
        .await?;
    db::query("SELECT 1 FROM outbox WHERE topic = 'connect' AND ref = $1 FOR UPDATE")
        .bind(job_id.to_string())
        .scalar_all::<i32>(&mut tx)
        .await?;
    let now = clock();
    if lease_until.is_none_or(|t| t <= now) {
        return Err(StoreError::LeaseLost(job_id));
    }
    let until = now + lease;
    let attempt: i32 = db::query(
        "UPDATE jobs SET send_started_at = $2, attempts = attempts + 1, lease_until = $3, \
         updated_at = $2 WHERE id = $1 RETURNING attempts",
    )
    .bind(job_id)
    .bind(now)
    .bind(until)
    .scalar(&mut tx)
    .await?;
    db::query("UPDATE accounts SET sending_until = $2 WHERE sending_job = $1")
        .bind(job_id)
        .bind(until)
        .execute(&mut tx)
        .await?;
    db::query("UPDATE outbox SET due_at = $2 WHERE topic = 'connect' AND ref = $1")
        .bind(job_id.to_string())
        .bind(until + chrono::Duration::seconds(1))
        .execute(&mut tx)
        .await?;
    accounts::mark_slot_used(&mut tx, job_id).await?;
    tx.commit().await?;
    Ok(SendStart::Started {
        attempt,
        lease_until: until,
    })
}

pub(super) async fn give_back_send_slot(
    store: &SqlStore,
    job_id: Uuid,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.db.begin().await?;
    let owner_now: Option<Option<String>> =
        db::query("SELECT lease_owner FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job_id)
            .scalar_optional(&mut tx)
            .await?;
    if owner_now.flatten().as_deref() != Some(owner) {
        // Another claim has the job: it gave this attempt's slot back when it claimed,
        // and the slot there now is its own.
        return Ok(());
    }
    accounts::give_back_unstarted_slots(&mut tx, job_id, now).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclaimable_job_is_brought_back_unless_it_ended_or_waits_on_something_shared() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        let state = |due_at, lease_until, waits| {
            Some(Unclaimable {
                due_at,
                lease_until,
                waits,
            })
        };
        assert_eq!(why_unclaimable(None, now), ("no such job", None));
        assert_eq!(why_unclaimable(state(None, None, false), now).1, None);
        assert_eq!(why_unclaimable(state(Some(later), None, true), now).1, None);
        assert_eq!(
            why_unclaimable(state(Some(later), None, false), now),
            ("job is not due yet", Some(later))
        );
        assert_eq!(
            why_unclaimable(state(Some(now), Some(later), false), now),
            (
                "another worker holds the job",
                Some(later + chrono::Duration::seconds(1))
            )
        );
    }
}
