//! The account gate for one send, decided under the account's row lock so that every
//! worker agrees: quota, holds, pacing and health (pure rules in `account::pacing`), one send
//! at a time per account, and the account's backlog released oldest first.

use super::outbox;
use super::waits::{self, Wait};
use super::{PgStore, StoreError};
use crate::account::pacing::{self, AccountFacts, Decision};
use crate::account::policy::AccountPolicy;
use crate::account::projection::projected_sends;
use crate::account::quota::{Quota, QuotaSource};
use crate::job::{Job, Status};
use crate::queue::Topic;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How long a job waits for an account busy with another send, or for an older job of
/// the account to go first, at the most: the send's end wakes the next job sooner.
const BUSY_RETRY: chrono::Duration = chrono::Duration::seconds(10);

/// Statuses of jobs that wait for their account's gate, and so form its backlog.
const BACKLOG: &str = "('queued', 'scheduled', 'held')";

#[derive(Debug, Clone, PartialEq)]
pub enum SendGate {
    /// Send now: the account's send lease and one request of its week are this job's.
    Send,
    /// Read the account's quota and status from the API, record them, and ask again.
    NeedReading,
    /// Not now: park the job until `until`, with `status` (`None` keeps the job's status),
    /// or until `waiting` ends if it is set.
    Wait {
        status: Option<Status>,
        until: DateTime<Utc>,
        hold_until: Option<DateTime<Utc>>,
        reason: String,
        waiting: Option<Wait>,
    },
}

/// What `GET /account/{id}/quota` and `GET /account/status` said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountReading {
    /// When the gate asked for the reading: a send that started since, or headers recorded
    /// since, may or may not be in the endpoints' numbers.
    pub asked_at: DateTime<Utc>,
    pub quota: Option<Quota>,
    /// `Some(reason)` when the account cannot send; `None` when it can.
    pub disabled: Option<String>,
}

type AccountRow = (
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<Uuid>,
    Option<DateTime<Utc>>,
);

type LimitRow = (
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    String,
);

/// `fresh_reading`: the endpoints were just read; if the decision still asks for a quota
/// (the API reported none for CONNECT), the send goes ahead on what is known.
pub(super) async fn take_send_slot(
    store: &PgStore,
    job: &Job,
    policy: &AccountPolicy,
    lease: chrono::Duration,
    fresh_reading: bool,
    now: DateTime<Utc>,
) -> Result<SendGate, StoreError> {
    let account = job.account_id.as_str();
    let mut tx = store.pool.begin().await?;
    sqlx::query(
        "INSERT INTO accounts (account_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(account)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let known = load(&mut tx, account, policy, now, true).await?;
    // A disabled account is asked again now and then, so that it resumes by itself.
    if !fresh_reading
        && known.facts.disabled.is_some()
        && known
            .status_checked_at
            .is_none_or(|t| now - t >= policy.quota_refresh)
    {
        return Ok(SendGate::NeedReading);
    }
    let busy = known.sending_job.is_some_and(|other| other != job.id)
        && known.sending_until.is_some_and(|t| t > now);
    let facts = known.facts;
    let last_send_at = facts.last_send_at;
    let mut decision = pacing::decide(
        policy,
        &facts,
        now,
        pacing::jitter_sample(account, last_send_at),
    );
    if fresh_reading {
        decision = pacing::after_fresh_reading(decision, policy, &facts, now);
    }
    // Waiting for another job's send is a moment's wait; a hold, a spent week or a pause is
    // the job's status, written back with its ETA, whether or not the account is busy.
    // (Pacing's projection waits for the send to end: the job in flight is not counted yet.)
    if busy && !matches!(decision, Decision::Held { .. } | Decision::Paused { .. }) {
        return Ok(SendGate::Wait {
            status: None,
            until: now + BUSY_RETRY,
            hold_until: None,
            reason: "another send on this account is in progress".into(),
            waiting: Some(Wait::Sender(account.to_string())),
        });
    }
    // The jobs waiting on the account learn where it stands: those waiting for it to
    // recover when it has, those waiting for a send when none will come soon.
    if !matches!(decision, Decision::Paused { .. }) {
        waits::release_all(&mut tx, &Wait::Account(account.to_string()), now).await?;
    }
    if !busy && !matches!(decision, Decision::Send | Decision::NeedQuota) {
        waits::release_all(&mut tx, &Wait::Sender(account.to_string()), now).await?;
    }
    let gate = match decision {
        Decision::NeedQuota if !fresh_reading => SendGate::NeedReading,
        Decision::Paused { reason } => SendGate::Wait {
            status: Some(Status::Paused),
            until: now + policy.quota_refresh,
            hold_until: None,
            reason,
            waiting: Some(Wait::Account(account.to_string())),
        },
        Decision::Held {
            until,
            hold_until,
            reason,
        } => SendGate::Wait {
            status: Some(Status::Held),
            until,
            hold_until,
            reason: reason.to_string(),
            waiting: None,
        },
        Decision::Scheduled { reason, .. } => {
            // Each job of the backlog gets its own turn as its ETA, so they do not all wake
            // at once; the projection starts from the same facts the decision used.
            let ahead = backlog_ahead(&mut tx, job).await?;
            let turns = projected_sends(account, policy, &facts, now, ahead + 1);
            let until = turns.last().copied().unwrap_or(now + policy.quota_refresh);
            SendGate::Wait {
                status: Some(Status::Scheduled),
                until,
                hold_until: None,
                reason: reason.to_string(),
                waiting: None,
            }
        }
        Decision::Send | Decision::NeedQuota => match older_waiting_job(&mut tx, job, now).await? {
            Some((older, held_by_a_worker)) => {
                // The account's backlog goes oldest first: wake the older job and wait.
                if !held_by_a_worker {
                    sqlx::query("UPDATE jobs SET due_at = $2 WHERE id = $1")
                        .bind(older)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    outbox::delete_for(&mut tx, Topic::Connect, &older.to_string()).await?;
                    outbox::insert(&mut tx, Topic::Connect, &older.to_string(), now).await?;
                }
                SendGate::Wait {
                    status: None,
                    until: now + BUSY_RETRY,
                    hold_until: None,
                    reason: format!("an older job of this account goes first ({older})"),
                    waiting: Some(Wait::Sender(account.to_string())),
                }
            }
            None => {
                sqlx::query(
                    "UPDATE accounts SET sending_job = $2, sending_until = $3 WHERE account_id = $1",
                )
                .bind(account)
                .bind(job.id)
                .bind(now + lease)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE account_limits SET remaining = remaining - 1 \
                     WHERE account_id = $1 AND action = 'CONNECT' AND remaining IS NOT NULL",
                )
                .bind(account)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO account_sends (account_id, job_id, at, post_started) \
                     VALUES ($1, $2, $3, false)",
                )
                .bind(account)
                .bind(job.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                SendGate::Send
            }
        },
    };
    tx.commit().await?;
    Ok(gate)
}

/// What the store knows about an account, as the pure decision takes it.
pub(super) struct Known {
    pub facts: AccountFacts,
    pub status_checked_at: Option<DateTime<Utc>>,
    pub sending_job: Option<Uuid>,
    pub sending_until: Option<DateTime<Utc>>,
}

/// Reads an account's facts; `lock` takes its row lock for the rest of the transaction.
pub(super) async fn load(
    conn: &mut sqlx::PgConnection,
    account: &str,
    policy: &AccountPolicy,
    now: DateTime<Utc>,
    lock: bool,
) -> Result<Known, StoreError> {
    let row: Option<AccountRow> = sqlx::query_as(&format!(
        "SELECT hold_until, blocked_until, disabled_reason, status_checked_at, sending_job, \
         sending_until FROM accounts WHERE account_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(account)
    .fetch_optional(&mut *conn)
    .await?;
    let (hold_until, blocked_until, disabled, status_checked_at, sending_job, sending_until) =
        row.unwrap_or_default();
    let limits: Option<LimitRow> = sqlx::query_as(
        "SELECT \"limit\", used, remaining, reset_at, observed_at, source FROM account_limits \
         WHERE account_id = $1 AND action = 'CONNECT'",
    )
    .bind(account)
    .fetch_optional(&mut *conn)
    .await?;
    let (day_start, day_end) = pacing::local_day(policy, now);
    let (sends_today, last_send_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE at >= $2 AND at < $3), max(at) FROM account_sends \
         WHERE account_id = $1",
    )
    .bind(account)
    .bind(day_start)
    .bind(day_end)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Known {
        facts: AccountFacts {
            disabled,
            hold_until,
            blocked_until,
            quota: limits.and_then(quota_from_row),
            // The store takes each send off `remaining` as it happens.
            sends_since_quota: 0,
            sends_today: u32::try_from(sends_today).unwrap_or(u32::MAX),
            last_send_at,
        },
        status_checked_at,
        sending_job,
        sending_until,
    })
}

fn quota_from_row(row: LimitRow) -> Option<Quota> {
    let (limit, used, remaining, reset_at, observed_at, source) = row;
    let count = |v: Option<i32>| v.map(|v| u32::try_from(v.max(0)).unwrap_or(0));
    Some(Quota {
        limit: count(limit)?,
        used: count(used)?,
        remaining: count(remaining)?,
        reset_at: reset_at?,
        observed_at,
        source: if source == "endpoint" {
            QuotaSource::Endpoint
        } else {
            QuotaSource::Headers
        },
    })
}

/// How many of the account's waiting jobs are older than `job`.
async fn backlog_ahead(tx: &mut sqlx::PgConnection, job: &Job) -> Result<usize, StoreError> {
    let ahead: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM jobs WHERE account_id = $1 AND id <> $2 AND created_at < $3 \
         AND status IN {BACKLOG} AND due_at IS NOT NULL AND NOT enrich"
    ))
    .bind(&job.account_id)
    .bind(job.id)
    .bind(job.created_at)
    .fetch_one(&mut *tx)
    .await?;
    Ok(usize::try_from(ahead).unwrap_or(0))
}

/// The account's oldest waiting job if it is older than `job` and waits for the gate (a job
/// parked longer waits for something else: a retry, the per-minute budget), and whether a
/// worker holds it now (then it is on its way to the gate already).
async fn older_waiting_job(
    tx: &mut sqlx::PgConnection,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, bool)>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT id, coalesce(lease_until > $4, false) FROM jobs WHERE account_id = $1 AND id <> $2 \
         AND created_at < $3 AND status IN {BACKLOG} AND NOT enrich \
         AND due_at IS NOT NULL AND due_at <= $5 ORDER BY created_at LIMIT 1"
    ))
    .bind(&job.account_id)
    .bind(job.id)
    .bind(job.created_at)
    .bind(now)
    .bind(now + BUSY_RETRY)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Records an account reading. The endpoint's numbers are the authority (other tools' use
/// counts), except that a send in flight on the account may not be in them yet.
pub(super) async fn record_reading(
    store: &PgStore,
    account: &str,
    reading: &AccountReading,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.pool.begin().await?;
    sqlx::query(
        "INSERT INTO accounts (account_id, disabled_reason, status_checked_at, updated_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (account_id) DO UPDATE SET \
         disabled_reason = $2, status_checked_at = $3, updated_at = $3",
    )
    .bind(account)
    .bind(&reading.disabled)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if let Some(quota) = &reading.quota {
        // A send that started since the endpoints were asked may be missing from their
        // numbers; our own count has it, so the lower of the two stands then.
        let overlapped: bool = sqlx::query_scalar(
            "SELECT coalesce((SELECT sending_until > $2 FROM accounts WHERE account_id = $1), false) \
             OR EXISTS (SELECT 1 FROM account_sends WHERE account_id = $1 AND at >= $3) \
             OR EXISTS (SELECT 1 FROM account_limits WHERE account_id = $1 \
                        AND action = 'CONNECT' AND observed_at > $3)",
        )
        .bind(account)
        .bind(now)
        .bind(reading.asked_at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO account_limits (account_id, action, \"limit\", used, remaining, reset_at, \
             observed_at, source) VALUES ($1, 'CONNECT', $2, $3, $4, $5, $6, 'endpoint') \
             ON CONFLICT (account_id, action) DO UPDATE SET \"limit\" = $2, \
             used = CASE WHEN $7 AND account_limits.reset_at IS NOT DISTINCT FROM $5 \
                    THEN GREATEST(account_limits.used, $3) ELSE $3 END, \
             remaining = CASE WHEN $7 AND account_limits.reset_at IS NOT DISTINCT FROM $5 \
                         THEN LEAST(account_limits.remaining, $4) ELSE $4 END, \
             reset_at = $5, observed_at = $6, source = 'endpoint'",
        )
        .bind(account)
        .bind(i32::try_from(quota.limit).unwrap_or(i32::MAX))
        .bind(i32::try_from(quota.used).unwrap_or(i32::MAX))
        .bind(i32::try_from(quota.remaining).unwrap_or(i32::MAX))
        .bind(quota.reset_at)
        .bind(now)
        .bind(overlapped)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Frees the account's send lease held by `job_id`, once its send has an outcome, and wakes
/// the oldest job that was waiting for it (rather than have every waiter poll).
/// `wake` is false when nothing was sent (the slot was given back): the next job would meet
/// the same obstacle.
pub(super) async fn release_account(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    now: DateTime<Utc>,
    wake: bool,
) -> Result<(), StoreError> {
    let account: Option<String> = sqlx::query_scalar(
        "UPDATE accounts SET sending_job = NULL, sending_until = NULL WHERE sending_job = $1 \
         RETURNING account_id",
    )
    .bind(job_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(account) = account else {
        return Ok(());
    };
    // A job waiting for this send goes next (it had no timer of its own).
    waits::release_oldest(&mut *tx, &Wait::Sender(account.clone()).key(), now).await?;
    if !wake {
        return Ok(());
    }
    let next: Option<Uuid> = sqlx::query_scalar(&format!(
        "UPDATE jobs SET due_at = $3 WHERE id = (SELECT id FROM jobs WHERE account_id = $1 \
         AND id <> $2 AND status IN {BACKLOG} AND NOT enrich AND waits_on IS NULL \
         AND due_at > $3 AND due_at <= $4 ORDER BY created_at LIMIT 1) RETURNING id"
    ))
    .bind(&account)
    .bind(job_id)
    .bind(now)
    .bind(now + BUSY_RETRY)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(next) = next {
        outbox::delete_for(&mut *tx, Topic::Connect, &next.to_string()).await?;
        outbox::insert(&mut *tx, Topic::Connect, &next.to_string(), now).await?;
    }
    Ok(())
}
