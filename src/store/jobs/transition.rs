//! A job's next state: the row is locked, a pure plan decides what changes, then the
//! writes follow (the row, its history, its timer or wait, its account, its writebacks).

use super::super::outbox::{self, OutboxMessage};
use super::super::waits::{self, Wait};
use super::super::{accounts, crm_pauses, send_gate, writebacks};
use super::rows::{self, LockedJob};
use super::{Attempts, Doubt, SendSlot, Transition};
use crate::job::{Job, Status, worth_writing_back};
use crate::queue::Message;
use crate::store::db::{self, Exec, Tx};
use crate::store::{SqlStore, StoreError, record_event};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

pub(super) async fn transition(
    store: &SqlStore,
    job_id: Uuid,
    owner: Option<&str>,
    change: Transition,
    now: DateTime<Utc>,
) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
    let mut tx = store.db.begin().await?;
    let locked = rows::lock_with_lease(&mut tx, job_id).await?;
    let mut plan = plan(&locked, owner, &change, now)?;
    let mut waiting = change.waiting.clone();
    if let Some(wait) = &waiting
        && !still_waiting(&mut tx, &wait.on).await?
    {
        // What the job was parked on recovered meanwhile: the resume missed it.
        plan.due_at = plan.due_at.map(|_| now);
        waiting = None;
    }
    let mut job = write_row(&mut tx, job_id, &plan, &change, now).await?;
    if let Some(urn) = &change.profile_urn
        && job.profile_urn.is_none()
        && link_urn(&mut tx, job_id, urn, now).await?
    {
        job.profile_urn = Some(urn.clone());
    }
    for call in &change.calls {
        let detail = serde_json::to_value(call).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        record_event(&mut tx, job_id, now, "api_call", None, detail).await?;
    }
    if let Some(kind) = history_kind(&locked.job, &job, &plan, &change) {
        let detail = json!({
            "error": job.error, "retryAt": job.retry_at, "holdUntil": job.hold_until,
            "profileUrn": job.profile_urn, "by": change.actor,
        });
        record_event(&mut tx, job_id, now, kind, Some(plan.status), detail).await?;
    }
    outbox::delete_for(&mut tx, Message::Connect(job_id)).await?;
    match (plan.due_at, &waiting) {
        (Some(_), Some(waiting)) => waits::park(&mut tx, job_id, waiting, now).await?,
        (Some(due), None) => {
            outbox::insert(&mut tx, Message::Connect(job_id), due).await?;
        }
        (None, _) => {}
    }
    record_account_effects(&mut tx, &job, &change, now).await?;
    let publish = if plan.reported {
        writebacks::queue_writebacks(&mut tx, &job, None, now, store.relay_grace).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok((job, publish))
}

/// What a transition writes to the job's row, decided from the locked row alone.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    pub status: Status,
    /// When the job is tried again; `None` once it has ended.
    pub due_at: Option<DateTime<Utc>>,
    /// The change is worth telling the CRM: a new sequence number and writebacks.
    pub reported: bool,
    pub sequence: i32,
    pub changed_at: DateTime<Utc>,
    pub clear_doubt: bool,
}

/// Whether `owner` (a worker's lease, or `None` for the operator) may make `change` to the
/// locked job now, and what it writes.
pub(super) fn plan(
    locked: &LockedJob,
    owner: Option<&str>,
    change: &Transition,
    now: DateTime<Utc>,
) -> Result<Plan, StoreError> {
    let before = &locked.job;
    let job_id = before.id;
    let status = change.status.unwrap_or(before.status);
    match owner {
        Some(owner) if locked.lease_owner.as_deref() != Some(owner) => {
            return Err(StoreError::LeaseLost(job_id));
        }
        None => {
            if let Some(until) = locked.lease_until.filter(|t| *t > now) {
                return Err(StoreError::Conflict(format!(
                    "a worker holds job {job_id} until {until}; try again then"
                )));
            }
            // Ending it now would free the lead for a second invitation.
            if locked.in_doubt_since.is_some() && Status::FREES_LEAD.contains(&status) {
                return Err(StoreError::Conflict(format!(
                    "an invitation may already be out for job {job_id} (a send got no answer); \
                     it is checked before anything else happens to it"
                )));
            }
        }
        Some(_) => {}
    }
    if !change.only_from.is_empty() && !change.only_from.contains(&before.status) {
        return Err(StoreError::Conflict(format!(
            "job {job_id} is {} now; nothing was changed",
            before.status
        )));
    }
    // A job that ends `shadowed` rests until released; one that mirrors a shadowed job of
    // the same lead (`due_at` given) looks again at its time.
    let rests = status.is_final() || (status == Status::Shadowed && change.due_at.is_none());
    let due_at = (!rests).then(|| change.due_at.or(change.retry_at).unwrap_or(now));
    let reported = worth_writing_back(
        (before.status, before.retry_at, before.hold_until),
        (status, change.retry_at, change.hold_until),
    );
    let (sequence, changed_at) = if reported {
        (before.sequence + 1, now)
    } else {
        (before.sequence, before.changed_at)
    };
    let clear_doubt = match change.doubt {
        Doubt::Keep => false,
        Doubt::Settled => true,
        Doubt::SettledIfStill(seen) => locked.in_doubt_since == seen,
    };
    Ok(Plan {
        status,
        due_at,
        reported,
        sequence,
        changed_at,
        clear_doubt,
    })
}

/// The history line a transition adds, if any: a status change the CRM hears of, or a
/// deferral that changed something. A job parked again as it was adds nothing, so the
/// history records changes rather than wake-ups.
fn history_kind(
    before: &Job,
    after: &Job,
    plan: &Plan,
    change: &Transition,
) -> Option<&'static str> {
    if plan.reported {
        return Some("status");
    }
    let seen = |job: &Job| (job.status, job.error.clone(), job.retry_at, job.hold_until);
    (!change.calls.is_empty() || seen(before) != seen(after)).then_some("deferred")
}

/// Whether what a job is about to be parked on (its CRM, the key) is still down; the
/// others are shared waits the gate releases.
async fn still_waiting(tx: &mut impl Exec, wait: &Wait) -> Result<bool, StoreError> {
    match wait {
        Wait::Crm(crm) => crm_pauses::crm_paused(&mut *tx, crm).await,
        Wait::Key => accounts::key_paused(&mut *tx).await,
        Wait::Account(_) | Wait::Sender(_) => Ok(true),
    }
}

async fn write_row(
    tx: &mut impl Exec,
    job_id: Uuid,
    plan: &Plan,
    change: &Transition,
    now: DateTime<Utc>,
) -> Result<Job, StoreError> {
    Ok(db::query(concat!(
        "UPDATE jobs SET status = $2, error = $3, \
         attempts = CASE $4 WHEN 'reset' THEN 0 WHEN 'count' THEN attempts + 1 ELSE attempts END, \
         hold_until = $5, retry_at = $6, due_at = $7, sequence = $8, changed_at = $9, \
         lease_owner = NULL, lease_until = NULL, waits_on = NULL, \
         send_started_at = CASE WHEN $10 THEN NULL ELSE send_started_at END, updated_at = $11 \
         WHERE id = $1 RETURNING ",
        rows::job_columns!()
    ))
    .bind(job_id)
    .bind(plan.status)
    .bind(&change.error)
    .bind(match change.attempts {
        Attempts::Keep => "keep",
        Attempts::Count => "count",
        Attempts::Reset => "reset",
    })
    .bind(change.hold_until)
    .bind(change.retry_at)
    .bind(plan.due_at)
    .bind(plan.sequence)
    .bind(plan.changed_at)
    .bind(plan.clear_doubt)
    .bind(now)
    .fetch_one(tx)
    .await?)
}

/// What the transition tells the job's account: a slot given back, the answer's rate-limit
/// headers, the end of its send, a hold.
async fn record_account_effects(
    tx: &mut impl Exec,
    job: &Job,
    change: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The account's row first, as the gate and a quota reading take it, so that the
    // writes below cannot deadlock with them.
    accounts::lock(&mut *tx, &job.account_id).await?;
    match change.slot {
        SendSlot::Returned => {
            accounts::return_send_slot(&mut *tx, &job.account_id, job.id).await?;
        }
        // A later claim (after `jobs release`) must not give this turn back.
        SendSlot::Shadow => accounts::keep_slot_as_shadow(&mut *tx, job.id).await?,
        SendSlot::Spent => {}
    }
    if let Some(limit) = &change.rate_limit {
        accounts::record_rate_limit(&mut *tx, &job.account_id, limit, now).await?;
    }
    send_gate::release_account(&mut *tx, job.id, now, change.slot).await?;
    if let Some(hold) = &change.account_hold {
        accounts::record_hold(&mut *tx, &job.account_id, hold, now).await?;
    }
    Ok(())
}

/// Links the URN a response returned, so later events naming the lead by URN find this job.
/// Another open job may already hold that URN (events that named the same person in two ways
/// before anything linked them): then the outcome still commits, unlinked, and that job is
/// marked in doubt so that it checks the relationship instead of sending a second invitation.
/// The mark is a new time even on a job already in doubt, so that a worker that claimed that
/// job before this commit sees the change when its send would start; the slug is copied
/// over so that the check can ask by the profile id it is documented for.
async fn link_urn(
    tx: &mut Tx<'_>,
    job_id: Uuid,
    urn: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut savepoint = tx.savepoint().await?;
    let linked = db::query("UPDATE jobs SET profile_urn = $2 WHERE id = $1")
        .bind(job_id)
        .bind(urn)
        .execute(&mut savepoint)
        .await
        .map_err(StoreError::from);
    match linked {
        Ok(_) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(e) if e.is_unique_violation() => {
            savepoint.rollback().await?;
            // That other job is for the person just invited: it must look before it sends.
            let holders: Vec<(Uuid, Option<DateTime<Utc>>)> = db::query(
                "SELECT id, send_started_at FROM jobs \
                 WHERE account_id = (SELECT account_id FROM jobs WHERE id = $1) \
                 AND profile_urn = $2 AND id <> $1 AND (due_at IS NOT NULL OR status = $3) \
                 FOR UPDATE",
            )
            .bind(job_id)
            .bind(urn)
            // A shadowed job rests with no timer, and may yet be released to send.
            .bind(Status::Shadowed)
            .fetch_all(&mut *tx)
            .await?;
            for (holder, doubt_since) in holders {
                db::query(
                    "UPDATE jobs SET send_started_at = $3, \
                     profile_id = COALESCE(profile_id, (SELECT profile_id FROM jobs WHERE id = $1)) \
                     WHERE id = $2",
                )
                .bind(job_id)
                .bind(holder)
                .bind(raised_doubt(doubt_since, now))
                .execute(&mut *tx)
                .await?;
            }
            tracing::warn!(%job_id, urn, "another open job has this URN; it will check the relationship before sending");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The mark of a job made doubtful: a time later than any it had, so that a worker whose
/// claim saw the old mark notices the change.
fn raised_doubt(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    match since {
        Some(since) if since >= now => since + chrono::Duration::microseconds(1),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn leased(owner: Option<&str>, in_doubt_since: Option<DateTime<Utc>>) -> LockedJob {
        LockedJob {
            job: Job::queued("acc_1", now()),
            lease_owner: owner.map(str::to_owned),
            lease_until: owner.map(|_| now() + Duration::minutes(2)),
            in_doubt_since,
        }
    }

    #[test]
    fn a_raised_doubt_is_always_a_new_later_mark() {
        assert_eq!(raised_doubt(None, now()), now());
        assert_eq!(
            raised_doubt(Some(now() - Duration::minutes(1)), now()),
            now()
        );
        let ahead = now() + Duration::seconds(1);
        assert_eq!(
            raised_doubt(Some(ahead), now()),
            ahead + Duration::microseconds(1)
        );
        assert_eq!(
            raised_doubt(Some(now()), now()),
            now() + Duration::microseconds(1)
        );
    }

    #[test]
    fn only_the_lease_holder_moves_a_leased_job_and_the_operator_waits_for_it() {
        let locked = leased(Some("w1"), None);
        let change = Transition::to(Status::Sent);
        assert!(matches!(
            plan(&locked, Some("w2"), &change, now()),
            Err(StoreError::LeaseLost(_))
        ));
        assert!(matches!(
            plan(&locked, None, &change, now()),
            Err(StoreError::Conflict(_))
        ));
        let planned = plan(&locked, Some("w1"), &change, now()).unwrap();
        assert_eq!((planned.status, planned.due_at), (Status::Sent, None));
        assert!(planned.reported);
        assert_eq!(planned.sequence, 2);
    }

    #[test]
    fn a_shadowed_job_rests_unless_the_change_gives_it_a_time() {
        let locked = leased(Some("w1"), None);
        let shadowed = Transition {
            retry_at: Some(now()),
            ..Transition::to(Status::Shadowed)
        };
        let planned = plan(&locked, Some("w1"), &shadowed, now()).unwrap();
        assert_eq!((planned.status, planned.due_at), (Status::Shadowed, None));
        // A job waiting for a shadowed job of the same lead keeps looking.
        let later = now() + Duration::seconds(30);
        let mirrored = Transition {
            due_at: Some(later),
            ..shadowed
        };
        let planned = plan(&locked, Some("w1"), &mirrored, now()).unwrap();
        assert_eq!(planned.due_at, Some(later));
    }

    #[test]
    fn the_operator_cannot_fail_a_job_in_doubt_or_move_one_from_another_status() {
        let in_doubt = leased(None, Some(now() - Duration::minutes(5)));
        let cancel = Transition::with_error(Status::Cancelled, "cancelled by operator")
            .by_operator(vec![Status::Queued]);
        assert!(matches!(
            plan(&in_doubt, None, &cancel, now()),
            Err(StoreError::Conflict(e)) if e.contains("may already be out")
        ));
        let retry = Transition::to(Status::Queued).by_operator(vec![Status::Failed]);
        assert!(matches!(
            plan(&leased(None, None), None, &retry, now()),
            Err(StoreError::Conflict(e)) if e.contains("is queued now")
        ));
    }

    #[test]
    fn a_doubt_is_cleared_only_when_it_is_the_one_the_claim_saw() {
        let seen = Some(now() - Duration::minutes(5));
        let locked = leased(Some("w1"), seen);
        let clears = |doubt| {
            let change = Transition {
                doubt,
                ..Transition::to(Status::Retrying)
            };
            plan(&locked, Some("w1"), &change, now())
                .unwrap()
                .clear_doubt
        };
        assert!(!clears(Doubt::Keep));
        assert!(clears(Doubt::Settled));
        assert!(clears(Doubt::SettledIfStill(seen)));
        assert!(!clears(Doubt::SettledIfStill(None)));
        assert!(!clears(Doubt::SettledIfStill(Some(now()))));
    }

    #[test]
    fn an_open_job_is_due_at_its_retry_and_a_small_deferral_is_not_reported() {
        let locked = leased(Some("w1"), None);
        let retry_at = now() + Duration::minutes(10);
        let retrying = Transition::retrying(retry_at, "boom");
        let planned = plan(&locked, Some("w1"), &retrying, now()).unwrap();
        assert_eq!(planned.due_at, Some(retry_at));
        let deferred = Transition {
            due_at: Some(now() + Duration::seconds(5)),
            ..Transition::unchanged(&locked.job)
        };
        let planned = plan(&locked, Some("w1"), &deferred, now()).unwrap();
        assert_eq!(planned.due_at, Some(now() + Duration::seconds(5)));
        assert!(!planned.reported);
        assert_eq!(
            (planned.sequence, planned.changed_at),
            (locked.job.sequence, locked.job.changed_at)
        );
    }
}
