//! Jobs: creation with idempotency, leases, transitions with their history and writebacks,
//! and the operator's look-ups and actions.

mod call_off;
mod enrich;
mod ingest;
mod lease;
mod operator;
mod priority;
mod rows;
mod transition;

pub use call_off::{CallOff, CalledOff};

use super::outbox::OutboxMessage;
use super::waits::{Wait, Waiting};
use super::{JobEvent, SqlStore, StoreError};
use crate::account::AccountId;
use crate::connectsafely::RateLimit;
use crate::job::{CallRecord, Job, LeadDetails, Source, Status, WritebackTarget};
use crate::lead::Resolution;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A job to create from an accepted event.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub source: Source,
    pub record_id: String,
    pub record_object: Option<String>,
    pub account_id: AccountId,
    /// An unusable lead's job is created `invalid`; one still to be read from the CRM is
    /// read by the connect stage before anything else.
    pub resolution: Resolution,
    pub lead: LeadDetails,
    /// The source's delivery id, the idempotency key.
    pub delivery_id: Option<String>,
    /// A CRM record has one open job: a further event for it attaches to that job.
    pub one_open_job_per_record: bool,
    pub writeback_targets: Vec<WritebackTarget>,
    /// Higher goes first among the account's waiting jobs; `None`: the source gave none
    /// (0 for a new job, and an existing job keeps its own).
    pub priority: Option<i32>,
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

#[derive(Debug, sqlx::FromRow)]
pub struct ClaimedJob {
    #[sqlx(flatten)]
    pub job: Job,
    /// When a previous send started that left no outcome (or another job's send made this
    /// one doubtful), as the claim saw it; `send_started` refuses if it has changed since.
    pub in_doubt_since: Option<DateTime<Utc>>,
    /// When the CRM called the lead off while a send may have gone out: if nothing did, the
    /// job ends `cancelled` instead of sending.
    pub called_off_at: Option<DateTime<Utc>>,
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

/// A job's next state, with what the API said about its account. Built with the
/// constructors below and changed with struct update syntax.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// `None` keeps the job's status.
    pub status: Option<Status>,
    pub error: Option<String>,
    pub profile_urn: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    /// Shown to the CRM as `retryAt`.
    pub retry_at: Option<DateTime<Utc>>,
    /// When the job is tried again, if it has not ended. Defaults to `retry_at`.
    pub due_at: Option<DateTime<Utc>>,
    /// What this transition knows about the send the job may have in flight.
    pub doubt: Doubt,
    /// The account's hold and the end of its spent week, from a 429.
    pub account_hold: Option<AccountHold>,
    pub rate_limit: Option<RateLimit>,
    /// The API calls behind this transition, for the history.
    pub calls: Vec<CallRecord>,
    pub actor: Actor,
    /// When not empty, the statuses this transition may start from (checked under the lock).
    pub only_from: Vec<Status>,
    pub attempts: Attempts,
    /// What becomes of the request the job took from its account's week at the gate.
    pub slot: SendSlot,
    /// The job waits for something many jobs share (its account, its CRM, the key, another
    /// send) and is released when that ends, rather than waking by itself at `due_at`. If the
    /// CRM or the key has recovered by the time the job is parked, it is due at once instead.
    pub waiting: Option<Waiting>,
}

impl Transition {
    /// The job moves to `status`.
    pub fn to(status: Status) -> Transition {
        Transition {
            status: Some(status),
            ..Transition::default()
        }
    }

    /// The job ends (or moves) with `status` and the error that explains it.
    pub fn with_error(status: Status, error: impl Into<String>) -> Transition {
        Transition {
            error: Some(error.into()),
            ..Transition::to(status)
        }
    }

    /// Tried again at `retry_at`, which the CRM sees.
    pub fn retrying(retry_at: DateTime<Utc>, error: impl Into<String>) -> Transition {
        Transition {
            retry_at: Some(retry_at),
            ..Transition::with_error(Status::Retrying, error)
        }
    }

    /// Paused until the key probe's resume releases the job; `check_at` if the key recovered
    /// while the job was being parked.
    pub fn paused_for_key(error: impl Into<String>, check_at: DateTime<Utc>) -> Transition {
        Transition {
            due_at: Some(check_at),
            waiting: Some(Waiting {
                on: Wait::Key,
                retry_every: None,
            }),
            ..Transition::with_error(Status::Paused, error)
        }
    }

    /// Keeps what the CRM sees of `job` (status, error, `retryAt`, hold): a re-deferral.
    pub fn unchanged(job: &Job) -> Transition {
        Transition {
            error: job.error.clone(),
            retry_at: job.retry_at,
            hold_until: job.hold_until,
            ..Transition::default()
        }
    }

    /// By the CRM calling the lead off rather than a worker, from one of `only_from`.
    pub fn by_crm(self, only_from: Vec<Status>) -> Transition {
        Transition {
            actor: Actor::Crm,
            only_from,
            ..self
        }
    }

    /// By the operator rather than a worker, from one of `only_from`.
    pub fn by_operator(self, only_from: Vec<Status>) -> Transition {
        Transition {
            actor: Actor::Operator,
            only_from,
            ..self
        }
    }
}

/// What a transition knows about a send that may have gone out without an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Doubt {
    /// Nothing new: a doubt the job has stays.
    #[default]
    Keep,
    /// The send's outcome is known (or nothing was in flight): the doubt is cleared.
    Settled,
    /// Settled, but only the doubt the claim saw (`None`: none); one that another job's
    /// send raised since is kept.
    SettledIfStill(Option<DateTime<Utc>>),
}

/// The account's hold and the end of its spent week, from a 429.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountHold {
    pub hold_until: DateTime<Utc>,
    pub blocked_until: Option<DateTime<Utc>>,
    pub reason: String,
}

/// Who made a transition, for the history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    #[default]
    Worker,
    Operator,
    /// The CRM or the backend that sent the lead, calling it off.
    Crm,
}

/// How a transition changes the job's count of attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Attempts {
    /// As `send_started` counted them.
    #[default]
    Keep,
    /// This try counts against the retry budget although nothing was sent (a failed CRM read).
    Count,
    /// Start afresh (an operator's retry).
    Reset,
}

/// The request a job took from its account's week at the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SendSlot {
    /// Spent: the send went out, or may have.
    #[default]
    Spent,
    /// Given back: the API refused the send outright, or none started (the answer's own
    /// headers, recorded with it, keep the count honest).
    Returned,
    /// Kept as if the send had gone out: shadow mode, whose turns count like sends so
    /// that its schedule is the one live mode would follow.
    Shadow,
}

/// What the CRM told the connect stage about a job's lead.
#[derive(Debug, Clone)]
pub struct Enrichment {
    pub account_id: AccountId,
    /// Usable, or not (the job then ends `invalid`). An unusable lead is recorded without
    /// its identity and the job still needs the CRM, so a crash before its `invalid` is
    /// committed makes the job read again.
    pub resolution: Resolution,
    pub lead: LeadDetails,
    /// The record's priority, when the source reads one (`priority_property`).
    pub priority: Option<i32>,
    /// When the read started: a change the CRM reported since stands over what it read.
    pub read_at: DateTime<Utc>,
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

    /// Which of `news` would find a job already (their delivery's, their record's open one,
    /// their lead's), without writing anything: what an import's dry run counts.
    fn existing_jobs(
        &self,
        news: &[NewJob],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

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

    /// How many jobs have each status, every status listed (0 for those with none).
    fn job_counts(&self) -> impl Future<Output = Result<Vec<(Status, i64)>, StoreError>> + Send;

    /// The operator's retry: a `failed` job goes again, and parked writebacks are re-armed.
    fn retry_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Job, Vec<OutboxMessage>), StoreError>> + Send;

    /// The operator's cancel: a waiting job ends `cancelled` ("cancelled by operator").
    fn cancel_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Job, Vec<OutboxMessage>), StoreError>> + Send;

    /// The operator's release after shadow mode: the account's `shadowed` jobs become
    /// ordinary queued jobs, oldest first; the ids released, in that order.
    fn release_shadowed(
        &self,
        account_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Vec<Uuid>, Vec<OutboxMessage>), StoreError>> + Send;

    /// The CRM calls a record's lead off: its jobs that have sent nothing end `cancelled`.
    fn call_off(
        &self,
        off: &CallOff,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(CalledOff, Vec<OutboxMessage>), StoreError>> + Send;

    /// A CRM record's priority changed at `seen_at`: its open job, if it has one, takes it
    /// (unless it heard a later word). The job's id when there is one, with the message to
    /// publish if the change made it due now.
    fn set_record_priority(
        &self,
        source: Source,
        record_id: &str,
        priority: i32,
        seen_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(Uuid, Vec<OutboxMessage>)>, StoreError>> + Send;
}

impl JobStore for SqlStore {
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
        ingest::ingest_batch(self, news, now).await
    }

    async fn existing_jobs(&self, news: &[NewJob]) -> Result<Vec<bool>, StoreError> {
        ingest::existing_jobs(self, news).await
    }

    async fn claim(
        &self,
        job_id: Uuid,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        lease::claim(self, job_id, owner, lease, now).await
    }

    async fn enrich(
        &self,
        job_id: Uuid,
        owner: &str,
        enrichment: &Enrichment,
        now: DateTime<Utc>,
    ) -> Result<Enriched, StoreError> {
        enrich::enrich(self, job_id, owner, enrichment, now).await
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
        lease::send_started(self, job_id, owner, in_doubt_since, lease, clock).await
    }

    async fn give_back_send_slot(
        &self,
        job_id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        lease::give_back_send_slot(self, job_id, owner, now).await
    }

    async fn transition(
        &self,
        job_id: Uuid,
        owner: Option<&str>,
        change: Transition,
        now: DateTime<Utc>,
    ) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
        transition::transition(self, job_id, owner, change, now).await
    }

    async fn job(&self, job_id: Uuid) -> Result<Option<JobHistory>, StoreError> {
        operator::job(self, job_id).await
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        operator::jobs(self, filter).await
    }

    async fn job_counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        operator::job_counts(self).await
    }

    async fn retry_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
        operator::retry_job(self, job_id, now).await
    }

    async fn cancel_job(
        &self,
        job_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Job, Vec<OutboxMessage>), StoreError> {
        operator::cancel_job(self, job_id, now).await
    }

    async fn release_shadowed(
        &self,
        account_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<OutboxMessage>), StoreError> {
        operator::release_shadowed(self, account_id, now).await
    }

    async fn call_off(
        &self,
        off: &CallOff,
        now: DateTime<Utc>,
    ) -> Result<(CalledOff, Vec<OutboxMessage>), StoreError> {
        call_off::call_off(self, off, now).await
    }

    async fn set_record_priority(
        &self,
        source: Source,
        record_id: &str,
        priority: i32,
        seen_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<(Uuid, Vec<OutboxMessage>)>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some(job) = rows::open_job_of_record(&mut tx, source, record_id).await? else {
            return Ok(None);
        };
        let publish = priority::set_priority(&mut tx, job.id, priority, seen_at, now).await?;
        tx.commit().await?;
        Ok(Some((job.id, publish.into_iter().collect())))
    }
}
