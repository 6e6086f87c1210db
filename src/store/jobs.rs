//! Jobs: creation with idempotency, leases, transitions with their history and writebacks,
//! and the operator's look-ups and actions.

use super::outbox::{self, OutboxMessage};
use super::waits::{self, Wait, Waiting};
use super::{JOB_COLUMNS, JobEvent, PgStore, StoreError, accounts, job_from_row, record_event};
use crate::connectsafely::RateLimit;
use crate::job::{Job, LeadDetails, Status, worth_writing_back};
use crate::queue::Topic;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Acquire, Row};
use uuid::Uuid;

/// A job to create from an accepted event.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub source: String,
    pub record_id: String,
    pub record_object: Option<String>,
    pub account_id: String,
    /// The lead's identity (slug or URN); `None` when the event had no usable profile or
    /// the lead is still to be read from the CRM (`enrich`).
    pub profile_key: Option<String>,
    pub profile_id: Option<String>,
    pub profile_urn: Option<String>,
    pub message: Option<String>,
    pub lead: LeadDetails,
    /// Set for a well-formed but unusable lead: the job is created `invalid` with this reason.
    pub invalid_reason: Option<String>,
    /// The source's delivery id, the idempotency key.
    pub delivery_id: Option<String>,
    /// The connect stage reads the lead from the CRM before anything else.
    pub enrich: bool,
    /// A CRM record has one open job: a further event for it attaches to that job.
    pub one_open_job_per_record: bool,
    pub writeback_targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    Created {
        job_id: Uuid,
        status: Status,
        /// Messages to publish right away; the relay covers them if that fails.
        publish: Vec<OutboxMessage>,
    },
    Duplicate {
        job_id: Uuid,
        status: Status,
        /// The job's current state for a record that just joined it, to publish right away.
        publish: Vec<OutboxMessage>,
    },
}

/// Why a delivery found nothing to do, or the job it may now work on.
#[derive(Debug)]
pub enum Claim {
    Claimed(Box<ClaimedJob>),
    Skip(&'static str),
}

#[derive(Debug)]
pub struct ClaimedJob {
    pub job: Job,
    /// When a previous send started that left no outcome (or another job's send made this
    /// one doubtful), as the claim saw it; `send_started` refuses if it has changed since.
    pub in_doubt_since: Option<DateTime<Utc>>,
}

impl ClaimedJob {
    pub fn in_doubt(&self) -> bool {
        self.in_doubt_since.is_some()
    }
}

/// What `send_started` found at the moment the send would start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStart {
    /// The POST may go out: this attempt's number and the lease it has until.
    Started {
        attempt: i32,
        lease_until: DateTime<Utc>,
    },
    /// Since the claim, another job's send may have invited this job's lead: the job must
    /// settle that doubt before it sends. Nothing was changed.
    NowInDoubt,
}

/// A job's next state, with what the API said about its account.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    pub status: Option<Status>,
    pub error: Option<String>,
    pub profile_urn: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    /// Shown to the CRM as `retryAt`.
    pub retry_at: Option<DateTime<Utc>>,
    /// When the job is tried again, if it has not ended. Defaults to `retry_at`.
    pub due_at: Option<DateTime<Utc>>,
    /// The send in progress has a known outcome now.
    pub send_settled: bool,
    /// The account's hold and the end of its spent week, from a 429.
    pub account_hold: Option<(DateTime<Utc>, Option<DateTime<Utc>>, String)>,
    pub rate_limit: Option<RateLimit>,
    /// The API calls behind this transition, for the history.
    pub calls: Vec<serde_json::Value>,
    /// Who caused it, when not the worker: `operator`.
    pub actor: Option<&'static str>,
    /// When not empty, the statuses this transition may start from (checked under the lock).
    pub only_from: Vec<Status>,
    /// Start counting attempts afresh (an operator's retry).
    pub reset_attempts: bool,
    /// This try counts against the retry budget although nothing was sent (a failed CRM read).
    pub count_attempt: bool,
    /// The job is parked because ConnectSafely refused the key: the probe's resume wakes it.
    pub key_pause: bool,
    /// The API refused the send outright, so the request it took from the account's week is
    /// given back (the answer's own headers, recorded with it, keep the count honest).
    pub send_not_counted: bool,
    /// The job waits for something many jobs share (its account, its CRM, another send) and
    /// is released when that ends, rather than waking by itself at `due_at`.
    pub waiting: Option<Waiting>,
    /// With `send_settled`: clear the doubt only if it is still this one (`None` inside: no
    /// doubt), so that a doubt another job's send raised since is kept. `None`: clear it.
    pub doubt_seen: Option<Option<DateTime<Utc>>>,
}

/// What the CRM told the connect stage about a job's lead.
#[derive(Debug, Clone)]
pub struct Enrichment {
    pub account_id: String,
    /// `None` for a lead the CRM gave no usable profile for; the job then ends `invalid`.
    pub profile_key: Option<String>,
    pub profile_id: Option<String>,
    pub profile_urn: Option<String>,
    pub message: Option<String>,
    pub lead: LeadDetails,
    /// The lead can be sent: the job no longer needs the CRM. An unusable lead is recorded
    /// without it, so a crash before its `invalid` is committed makes the job read again.
    pub complete: bool,
}

#[derive(Debug)]
pub enum Enriched {
    Ready(Box<Job>),
    /// Another open or successful job already has this lead on this account.
    SameLeadAs(Box<Job>),
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub record_id: Option<String>,
    pub status: Option<Status>,
    pub account_id: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobHistory {
    #[serde(flatten)]
    pub job: Job,
    pub history: Vec<JobEvent>,
    pub writebacks: Vec<super::WritebackRow>,
}

/// Jobs that still hold their lead's identity (the predicate of the `jobs_one_per_lead` and
/// `jobs_one_per_urn` indexes): open or successful ones, and any that may have sent.
const HOLDS_IDENTITY: &str =
    "(status NOT IN ('failed', 'profile_not_found', 'invalid') OR send_started_at IS NOT NULL)";
const ENDED: &str = "('sent', 'already_connected', 'invitation_pending', 'profile_not_found', \
     'failed', 'invalid')";

/// Jobs: creation, leases, transitions, look-ups and the operator's actions.
pub trait JobStore {
    /// Records a new job with its idempotency key and outbox entries in one transaction,
    /// or finds the job this delivery or this lead already has.
    fn ingest(
        &self,
        new: &NewJob,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send;

    /// The same for several deliveries (a CRM's batch), in one transaction: one commit for
    /// the batch, outcomes in the given order.
    fn ingest_batch(
        &self,
        news: &[NewJob],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<IngestOutcome>, StoreError>> + Send;

    /// Takes the job's lease if it is due and free. A watchdog outbox row, due when the lease
    /// expires, brings the job back if this worker dies.
    fn claim(
        &self,
        job_id: Uuid,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records the lead the CRM returned for a leased job, unless another job already has
    /// that lead on that account (the unique indexes decide, so concurrent workers agree).
    fn enrich(
        &self,
        job_id: Uuid,
        owner: &str,
        enrichment: &Enrichment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Enriched, StoreError>> + Send;

    /// Marks the start of a `POST /connect` and renews the lease to cover the call. The
    /// renewed lease runs from `clock()` read after every wait on a lock, so the call starts
    /// with all of it. Fails if the lease was lost or has run out; answers `NowInDoubt` if
    /// the job's doubt is not what the claim saw (`in_doubt_since`).
    fn send_started<C>(
        &self,
        job_id: Uuid,
        owner: &str,
        in_doubt_since: Option<DateTime<Utc>>,
        lease: chrono::Duration,
        clock: C,
    ) -> impl Future<Output = Result<SendStart, StoreError>> + Send
    where
        C: Fn() -> DateTime<Utc> + Send + Sync;

    /// Gives back the send slot a job took at the gate when its POST never started (the
    /// store failed before the send), and frees the account for the next send; nothing if
    /// `owner` no longer holds the job.
    fn give_back_send_slot(
        &self,
        job_id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies a transition under the worker's lease (`owner`), or as the operator (`None`,
    /// refused while a worker holds the job). Returns messages to publish right away.
    fn transition(
        &self,
        job_id: Uuid,
        owner: Option<&str>,
        change: Transition,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Job, Vec<OutboxMessage>), StoreError>> + Send;

    fn job(
        &self,
        job_id: Uuid,
    ) -> impl Future<Output = Result<Option<JobHistory>, StoreError>> + Send;

    fn jobs(&self, filter: &JobFilter)
    -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;

    /// The operator's retry: a `failed` job goes again, and parked writebacks are re-armed.
    fn retry_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Job, Vec<OutboxMessage>), StoreError>> + Send;

    /// The operator's cancel: a waiting job ends `failed` with "cancelled by operator".
    fn cancel_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Job, Vec<OutboxMessage>), StoreError>> + Send;
}

impl JobStore for PgStore {
    async fn ingest(&self, new: &NewJob, now: DateTime<Utc>) -> Result<IngestOutcome, StoreError> {
        let mut outcomes = self.ingest_batch(std::slice::from_ref(new), now).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no outcome for an ingested job".into()))
    }

    async fn ingest_batch(
        &self,
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
        match self.ingest_in_order(news, &order, false, now).await {
            Err(e) if e.is_unique_violation() || e.is_deadlock() => {
                self.ingest_in_order(news, &order, true, now).await
            }
            other => other,
        }
    }

    async fn claim(
        &self,
        job_id: Uuid,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE jobs SET lease_owner = $2, lease_until = $3, updated_at = $4, waits_on = NULL \
             WHERE id = $1 AND due_at IS NOT NULL AND due_at <= $4 \
             AND (lease_until IS NULL OR lease_until < $4) \
             RETURNING {JOB_COLUMNS}, send_started_at AS in_doubt_since"
        ))
        .bind(job_id)
        .bind(owner)
        .bind(now + lease)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // Due, lease end, and whether it waits on its account or CRM.
            type JobTimes = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, bool);
            let state: Option<JobTimes> = sqlx::query_as(
                "SELECT due_at, lease_until, waits_on IS NOT NULL FROM jobs WHERE id = $1",
            )
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (why, comes_back_at) = match state {
                None => ("no such job", None),
                Some((None, _, _)) => ("job has ended", None),
                // Its wait releases it; a timer of its own is what the wait saves.
                Some((Some(due), _, true)) if due > now => {
                    ("job waits on its account or CRM", None)
                }
                Some((Some(due), _, _)) if due > now => ("job is not due yet", Some(due)),
                Some((_, lease, _)) => (
                    "another worker holds the job",
                    lease.map(|l| l + chrono::Duration::seconds(1)),
                ),
            };
            // This delivery may be the job's only message (a relay whose clock runs ahead,
            // say): make sure something brings the job back before dropping it.
            if let Some(at) = comes_back_at {
                outbox::ensure(&mut tx, Topic::Connect, &job_id.to_string(), at).await?;
                tx.commit().await?;
            }
            return Ok(Claim::Skip(why));
        };
        let job = job_from_row(&row)?;
        let in_doubt_since: Option<DateTime<Utc>> = row.try_get("in_doubt_since")?;
        // A slot a dead attempt took at the gate and never used is the account's again.
        accounts::give_back_unstarted_slots(&mut tx, job_id, now).await?;
        outbox::insert(
            &mut tx,
            Topic::Connect,
            &job_id.to_string(),
            now + lease + chrono::Duration::seconds(1),
        )
        .await?;
        tx.commit().await?;
        Ok(Claim::Claimed(Box::new(ClaimedJob {
            job,
            in_doubt_since,
        })))
    }

    async fn enrich(
        &self,
        job_id: Uuid,
        owner: &str,
        e: &Enrichment,
        now: DateTime<Utc>,
    ) -> Result<Enriched, StoreError> {
        let lead = serde_json::to_value(&e.lead).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(&format!(
            "UPDATE jobs SET account_id = $3, profile_key = $4, profile_id = $5, profile_urn = $6, \
             message = $7, lead = $8, enrich = NOT $10, attempts = 0, updated_at = $9 \
             WHERE id = $1 AND lease_owner = $2 RETURNING {JOB_COLUMNS}"
        ))
        .bind(job_id)
        .bind(owner)
        .bind(&e.account_id)
        .bind(&e.profile_key)
        .bind(&e.profile_id)
        .bind(&e.profile_urn)
        .bind(&e.message)
        .bind(&lead)
        .bind(now)
        .bind(e.complete)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from);
        match updated {
            Ok(Some(row)) => {
                let job = job_from_row(&row)?;
                let detail = json!({"accountId": e.account_id, "profileId": e.profile_id,
                    "profileUrn": e.profile_urn, "lead": lead});
                record_event(&mut tx, job_id, now, "enriched", None, detail).await?;
                tx.commit().await?;
                Ok(Enriched::Ready(Box::new(job)))
            }
            Ok(None) => Err(StoreError::LeaseLost(job_id)),
            Err(error) if error.is_unique_violation() => {
                tx.rollback().await?;
                let row = sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND id <> $2 \
                     AND (profile_key = $3 OR profile_urn = $3 OR profile_key = $4 OR profile_urn = $4) \
                     AND {HOLDS_IDENTITY} ORDER BY created_at LIMIT 1"
                ))
                .bind(&e.account_id)
                .bind(job_id)
                .bind(&e.profile_key)
                .bind(&e.profile_urn)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict("the job that had this lead ended meanwhile".into())
                })?;
                let other = job_from_row(&row)?;
                // This job's record now hears the other job's changes. Nothing here
                // publishes them: their outbox rows are due at once, for the relay.
                let mut tx = self.pool.begin().await?;
                let this = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                    .bind(job_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let this = job_from_row(&this)?;
                let record = RecordRef::of_job(&this);
                join_with_state(&mut tx, other.id, &record, now, chrono::Duration::zero()).await?;
                tx.commit().await?;
                Ok(Enriched::SameLeadAs(Box::new(other)))
            }
            Err(error) => Err(error),
        }
    }

    async fn send_started<C>(
        &self,
        job_id: Uuid,
        owner: &str,
        in_doubt_since: Option<DateTime<Utc>>,
        lease: chrono::Duration,
        clock: C,
    ) -> Result<SendStart, StoreError>
    where
        C: Fn() -> DateTime<Utc> + Send + Sync,
    {
        let mut tx = self.pool.begin().await?;
        /// Lease owner, lease end, and when the job's doubt began.
        type LeaseRow = (Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let row: Option<LeaseRow> = sqlx::query_as(
            "SELECT lease_owner, lease_until, send_started_at FROM jobs WHERE id = $1 FOR UPDATE",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
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
        sqlx::query("SELECT 1 FROM accounts WHERE sending_job = $1 FOR UPDATE")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("SELECT 1 FROM outbox WHERE topic = 'connect' AND ref = $1 FOR UPDATE")
            .bind(job_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
        let now = clock();
        if lease_until.is_none_or(|t| t <= now) {
            return Err(StoreError::LeaseLost(job_id));
        }
        let until = now + lease;
        let attempt: i32 = sqlx::query_scalar(
            "UPDATE jobs SET send_started_at = $2, attempts = attempts + 1, lease_until = $3, \
             updated_at = $2 WHERE id = $1 RETURNING attempts",
        )
        .bind(job_id)
        .bind(now)
        .bind(until)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE accounts SET sending_until = $2 WHERE sending_job = $1")
            .bind(job_id)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE outbox SET due_at = $2 WHERE topic = 'connect' AND ref = $1")
            .bind(job_id.to_string())
            .bind(until + chrono::Duration::seconds(1))
            .execute(&mut *tx)
            .await?;
        accounts::mark_slot_used(&mut tx, job_id).await?;
        tx.commit().await?;
        Ok(SendStart::Started {
            attempt,
            lease_until: until,
        })
    }

    async fn give_back_send_slot(
        &self,
        job_id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let owner_now: Option<Option<String>> =
            sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(job_id)
                .fetch_optional(&mut *tx)
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

    async fn transition(
        &self,
        job_id: Uuid,
        owner: Option<&str>,
        change: Transition,
        now: DateTime<Utc>,
    ) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, lease_owner, lease_until, send_started_at IS NOT NULL AS in_doubt \
             FROM jobs WHERE id = $1 FOR UPDATE"
        ))
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
        let before = job_from_row(&row)?;
        let lease_owner: Option<String> = row.try_get("lease_owner")?;
        let lease_until: Option<DateTime<Utc>> = row.try_get("lease_until")?;
        let in_doubt: bool = row.try_get("in_doubt")?;
        let status = change.status.unwrap_or(before.status);
        match owner {
            Some(owner) if lease_owner.as_deref() != Some(owner) => {
                return Err(StoreError::LeaseLost(job_id));
            }
            None if lease_until.is_some_and(|t| t > now) => {
                return Err(StoreError::Conflict(format!(
                    "a worker holds job {job_id} until {}; try again then",
                    lease_until.unwrap_or(now)
                )));
            }
            // Ending it now would free the lead for a second invitation.
            None if in_doubt && status == Status::Failed => {
                return Err(StoreError::Conflict(format!(
                    "an invitation may already be out for job {job_id} (a send got no answer); \
                     it is checked before anything else happens to it"
                )));
            }
            _ => {}
        }
        if !change.only_from.is_empty() && !change.only_from.contains(&before.status) {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is {} now; nothing was changed",
                before.status
            )));
        }
        let mut due_at = if status.is_final() {
            None
        } else {
            Some(change.due_at.or(change.retry_at).unwrap_or(now))
        };
        let mut waiting = change.waiting.clone();
        if let Some(Waiting {
            on: Wait::Crm(crm), ..
        }) = &waiting
            && !super::crm_pauses::crm_paused(&mut tx, crm).await?
        {
            // The CRM recovered while this job was being parked: the resume missed it.
            due_at = Some(now);
            waiting = None;
        }
        if change.key_pause {
            if accounts::key_paused(&mut tx).await? {
                // The key probe's resume releases it; no timer of its own.
                waiting = Some(Waiting {
                    on: Wait::Key,
                    retry_every: None,
                });
            } else {
                // The key recovered while this job was being parked: the resume missed it.
                due_at = Some(now);
                waiting = None;
            }
        }
        let reported = worth_writing_back(
            (before.status, before.retry_at, before.hold_until),
            (status, change.retry_at, change.hold_until),
        );
        let (sequence, changed_at) = if reported {
            (before.sequence + 1, now)
        } else {
            (before.sequence, before.changed_at)
        };
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = $2, error = $3, \
             attempts = CASE WHEN $4 THEN 0 WHEN $12 THEN attempts + 1 ELSE attempts END, \
             hold_until = $5, retry_at = $6, due_at = $7, sequence = $8, changed_at = $9, \
             lease_owner = NULL, lease_until = NULL, waits_on = NULL, \
             send_started_at = CASE WHEN $10 AND (NOT $13 OR send_started_at IS NOT DISTINCT FROM $14) \
                               THEN NULL ELSE send_started_at END, updated_at = $11 \
             WHERE id = $1 RETURNING {JOB_COLUMNS}"
        ))
        .bind(job_id)
        .bind(status.as_str())
        .bind(&change.error)
        .bind(change.reset_attempts)
        .bind(change.hold_until)
        .bind(change.retry_at)
        .bind(due_at)
        .bind(sequence)
        .bind(changed_at)
        .bind(change.send_settled)
        .bind(now)
        .bind(change.count_attempt)
        .bind(change.doubt_seen.is_some())
        .bind(change.doubt_seen.flatten())
        .fetch_one(&mut *tx)
        .await?;
        let mut job = job_from_row(&row)?;
        if let Some(urn) = &change.profile_urn
            && job.profile_urn.is_none()
            && link_urn(&mut tx, job_id, urn, now).await?
        {
            job.profile_urn = Some(urn.clone());
        }
        for call in &change.calls {
            record_event(&mut tx, job_id, now, "api_call", None, call.clone()).await?;
        }
        // History records changes, not wake-ups: a job parked again as it was adds nothing.
        let changed = reported
            || !change.calls.is_empty()
            || (status, &job.error, job.retry_at, job.hold_until)
                != (
                    before.status,
                    &before.error,
                    before.retry_at,
                    before.hold_until,
                );
        if changed {
            record_event(
                &mut tx,
                job_id,
                now,
                if reported { "status" } else { "deferred" },
                Some(status),
                json!({
                    "error": job.error, "retryAt": job.retry_at, "holdUntil": job.hold_until,
                    "profileUrn": job.profile_urn, "by": change.actor.unwrap_or("worker"),
                }),
            )
            .await?;
        }
        outbox::delete_for(&mut tx, Topic::Connect, &job_id.to_string()).await?;
        match (due_at, &waiting) {
            (Some(_), Some(waiting)) => waits::park(&mut tx, job_id, waiting, now).await?,
            (Some(due), None) => {
                outbox::insert(&mut tx, Topic::Connect, &job_id.to_string(), due).await?;
            }
            (None, _) => {}
        }
        // The account's row first, as the gate and a quota reading take it, so that the
        // writes below cannot deadlock with them.
        sqlx::query("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE")
            .bind(&job.account_id)
            .fetch_optional(&mut *tx)
            .await?;
        if change.send_not_counted {
            accounts::return_send_slot(&mut tx, &job.account_id, job_id).await?;
        }
        if let Some(limit) = &change.rate_limit {
            accounts::record_rate_limit(&mut tx, &job.account_id, limit, now).await?;
        }
        super::send_gate::release_account(&mut tx, job_id, now, !change.send_not_counted).await?;
        if let Some((hold_until, blocked_until, reason)) = &change.account_hold {
            accounts::record_hold(
                &mut tx,
                &job.account_id,
                *hold_until,
                *blocked_until,
                reason,
                now,
            )
            .await?;
        }
        let publish = if reported {
            super::writebacks::queue_writebacks(&mut tx, &job, None, now, self.relay_grace).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok((job, publish))
    }

    async fn job(&self, job_id: Uuid) -> Result<Option<JobHistory>, StoreError> {
        let Some(row) = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        let history = sqlx::query_as::<_, JobEvent>(
            "SELECT at, kind, status, detail FROM job_events WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        let writebacks = self.writebacks_of(job_id).await?;
        Ok(Some(JobHistory {
            job,
            history,
            writebacks,
        }))
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL \
             OR id IN (SELECT job_id FROM job_records WHERE record_id = $1)) \
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR account_id = $3) \
             ORDER BY created_at DESC LIMIT $4"
        ))
        .bind(&filter.record_id)
        .bind(filter.status.map(Status::as_str))
        .bind(&filter.account_id)
        .bind(if filter.limit > 0 { filter.limit } else { 100 })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
        let history = self
            .job(job_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
        let mut publish = self.rearm_parked_writebacks(job_id, now).await?;
        let job = if history.job.status == Status::Failed {
            let (job, more) = self
                .transition(
                    job_id,
                    None,
                    Transition {
                        status: Some(Status::Queued),
                        actor: Some("operator"),
                        only_from: vec![Status::Failed],
                        reset_attempts: true,
                        ..Default::default()
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
                "job {job_id} is {}: only failed jobs and parked writebacks can be retried",
                history.job.status
            )));
        } else {
            history.job
        };
        Ok((job, publish))
    }

    async fn cancel_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
        self.transition(
            job_id,
            None,
            Transition {
                status: Some(Status::Failed),
                error: Some("cancelled by operator".into()),
                actor: Some("operator"),
                only_from: Status::ALL.into_iter().filter(|s| !s.is_final()).collect(),
                ..Default::default()
            },
            now,
        )
        .await
    }
}

impl PgStore {
    async fn ingest_in_order(
        &self,
        news: &[NewJob],
        order: &[usize],
        savepoints: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut outcomes: Vec<Option<IngestOutcome>> = vec![None; news.len()];
        let mut tx = self.pool.begin().await?;
        for &index in order {
            let new = &news[index];
            let outcome = if savepoints {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let mut savepoint = tx.begin().await?;
                    match ingest_one(&mut savepoint, new, now, self.relay_grace).await {
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
                ingest_one(&mut tx, new, now, self.relay_grace).await?
            };
            outcomes[index] = Some(outcome);
        }
        tx.commit().await?;
        Ok(outcomes.into_iter().flatten().collect())
    }
}

/// One delivery inside the caller's transaction: its job is found or created.
async fn ingest_one(
    tx: &mut sqlx::PgConnection,
    new: &NewJob,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<IngestOutcome, StoreError> {
    if let Some(key) = &new.delivery_id {
        let seen: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT j.id, j.status FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id \
                 WHERE k.source = $1 AND k.key = $2",
        )
        .bind(&new.source)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((job_id, status)) = seen {
            return Ok(IngestOutcome::Duplicate {
                job_id,
                status: parse_status(&status)?,
                publish: Vec::new(),
            });
        }
    }
    if new.one_open_job_per_record {
        // The record's own job, or the job it joined as a further record of that lead.
        let existing: Option<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT j.id, j.status FROM job_records r JOIN jobs j ON j.id = r.job_id \
                 WHERE r.source = $1 AND r.record_id = $2 \
                 AND j.status NOT IN {ENDED} ORDER BY j.created_at LIMIT 1"
        ))
        .bind(&new.source)
        .bind(&new.record_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return attach(&mut *tx, new, existing, now, relay_grace).await;
        }
    }
    if let Some(profile_key) = &new.profile_key {
        let existing: Option<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT id, status FROM jobs WHERE account_id = $1 \
                 AND (profile_key = $2 OR profile_urn = $3 OR profile_key = $3) \
                 AND {HOLDS_IDENTITY} ORDER BY created_at LIMIT 1"
        ))
        .bind(&new.account_id)
        .bind(profile_key)
        .bind(&new.profile_urn)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return attach(&mut *tx, new, existing, now, relay_grace).await;
        }
    }
    let job_id = Uuid::now_v7();
    let status = if new.invalid_reason.is_some() {
        Status::Invalid
    } else {
        Status::Queued
    };
    let due_at = (status == Status::Queued).then_some(now);
    let row = sqlx::query(&format!(
            "INSERT INTO jobs (id, source, record_id, account_id, profile_key, profile_id, profile_urn, \
             message, lead, status, error, sequence, changed_at, due_at, record_object, enrich, \
             writeback_targets, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13, $14, $15, $16, \
             clock_timestamp()) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(job_id)
        .bind(&new.source)
        .bind(&new.record_id)
        .bind(&new.account_id)
        .bind(&new.profile_key)
        .bind(&new.profile_id)
        .bind(&new.profile_urn)
        .bind(&new.message)
        .bind(serde_json::to_value(&new.lead).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(status.as_str())
        .bind(&new.invalid_reason)
        .bind(now)
        .bind(due_at)
        .bind(&new.record_object)
        .bind(new.enrich && status == Status::Queued)
        .bind(&new.writeback_targets)
        .fetch_one(&mut *tx)
        .await?;
    let job = job_from_row(&row)?;
    join_record(&mut *tx, job_id, &RecordRef::of(new), now).await?;
    remember_delivery(&mut *tx, new, job_id, now, "accepted", Some(status)).await?;
    let mut publish = Vec::new();
    if status == Status::Queued {
        publish.push(
            outbox::insert(
                &mut *tx,
                Topic::Connect,
                &job_id.to_string(),
                now + relay_grace,
            )
            .await?,
        );
    }
    publish
        .extend(super::writebacks::queue_writebacks(&mut *tx, &job, None, now, relay_grace).await?);
    Ok(IngestOutcome::Created {
        job_id,
        status,
        publish,
    })
}

/// Links the URN a response returned, so later events naming the lead by URN find this job.
/// Another open job may already hold that URN (events that named the same person in two ways
/// before anything linked them): then the outcome still commits, unlinked, and that job is
/// marked in doubt so that it checks the relationship instead of sending a second invitation.
/// The mark is a new time even on a job already in doubt, so that a worker that claimed that
/// job before this commit sees the change when its send would start; the slug is copied
/// over so that the check can ask by the profile id it is documented for.
async fn link_urn(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_id: Uuid,
    urn: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut savepoint = tx.begin().await?;
    let linked = sqlx::query("UPDATE jobs SET profile_urn = $2 WHERE id = $1")
        .bind(job_id)
        .bind(urn)
        .execute(&mut *savepoint)
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
            sqlx::query(
                "UPDATE jobs SET send_started_at = GREATEST($3, send_started_at + interval '1 microsecond'), \
                 profile_id = COALESCE(profile_id, (SELECT profile_id FROM jobs WHERE id = $1)) \
                 WHERE account_id = (SELECT account_id FROM jobs WHERE id = $1) \
                 AND profile_urn = $2 AND id <> $1 AND due_at IS NOT NULL",
            )
            .bind(job_id)
            .bind(urn)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            tracing::warn!(%job_id, urn, "another open job has this URN; it will check the relationship before sending");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// A delivery for a job that already exists: remembered on that job, which is the answer.
/// A record the job did not have yet (another CRM record naming the same lead) joins it and
/// is written the job's current state now, with the messages to publish for that.
async fn attach(
    tx: &mut sqlx::PgConnection,
    new: &NewJob,
    (job_id, status): (Uuid, String),
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<IngestOutcome, StoreError> {
    let record = RecordRef::of(new);
    let (status, publish) = match join_with_state(tx, job_id, &record, now, relay_grace).await? {
        Some((job, publish)) => (job.status, publish),
        None => (parse_status(&status)?, Vec::new()),
    };
    remember_delivery(tx, new, job_id, now, "duplicate_event", None).await?;
    Ok(IngestOutcome::Duplicate {
        job_id,
        status,
        publish,
    })
}

/// A CRM record and where its writebacks go.
struct RecordRef<'a> {
    source: &'a str,
    record_id: &'a str,
    record_object: Option<&'a str>,
    writeback_targets: &'a [String],
}

impl<'a> RecordRef<'a> {
    fn of(new: &'a NewJob) -> RecordRef<'a> {
        RecordRef {
            source: &new.source,
            record_id: &new.record_id,
            record_object: new.record_object.as_deref(),
            writeback_targets: &new.writeback_targets,
        }
    }

    fn of_job(job: &'a Job) -> RecordRef<'a> {
        RecordRef {
            source: &job.source,
            record_id: &job.record_id,
            record_object: job.record_object.as_deref(),
            writeback_targets: &job.writeback_targets,
        }
    }
}

/// Adds `record` to the job's records; the new row's id, or `None` if it was there already.
async fn join_record(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    record: &RecordRef<'_>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO job_records (job_id, source, record_id, record_object, writeback_targets, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, source, record_id) DO NOTHING RETURNING id",
    )
    .bind(job_id)
    .bind(record.source)
    .bind(record.record_id)
    .bind(record.record_object)
    .bind(record.writeback_targets)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Joins `record` to the job unless it is there already, and queues the job's current state
/// for it. The job's row is locked first, so a concurrent transition either sees the new
/// record or has committed the state read here.
async fn join_with_state(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    record: &RecordRef<'_>,
    now: DateTime<Utc>,
    relay_grace: chrono::Duration,
) -> Result<Option<(Job, Vec<OutboxMessage>)>, StoreError> {
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM job_records WHERE job_id = $1 AND source = $2 AND record_id = $3)",
    )
    .bind(job_id)
    .bind(record.source)
    .bind(record.record_id)
    .fetch_one(&mut *tx)
    .await?;
    if known {
        return Ok(None);
    }
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"
    ))
    .bind(job_id)
    .fetch_one(&mut *tx)
    .await?;
    let job = job_from_row(&row)?;
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
        super::writebacks::queue_writebacks(tx, &job, Some(joined), now, relay_grace).await?;
    Ok(Some((job, publish)))
}

/// Keeps the delivery's id as an idempotency key for `job_id` and notes it in the history.
async fn remember_delivery(
    tx: &mut sqlx::PgConnection,
    new: &NewJob,
    job_id: Uuid,
    now: DateTime<Utc>,
    kind: &str,
    status: Option<Status>,
) -> Result<(), StoreError> {
    if let Some(key) = &new.delivery_id {
        sqlx::query("INSERT INTO idempotency_keys (source, key, job_id) VALUES ($1, $2, $3)")
            .bind(&new.source)
            .bind(key)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
    }
    let detail = json!({
        "source": new.source, "recordId": new.record_id, "deliveryId": new.delivery_id,
        "error": new.invalid_reason,
    });
    record_event(tx, job_id, now, kind, status, detail).await
}

fn parse_status(text: &str) -> Result<Status, StoreError> {
    Status::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown status {text}")))
}
