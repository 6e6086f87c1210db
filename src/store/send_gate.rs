//! The account gate for one send, decided under the account's row lock so that every
//! worker agrees: quota, holds, pacing and health (pure rules in `account::pacing`), one send
//! at a time per account, and the account's backlog released in line: the highest priority,
//! then the oldest (`job::rank_at`).

use super::jobs::SendSlot;
use super::outbox;
use super::waits::{self, Wait};
use super::{SqlStore, StoreError, db};
use crate::account::pacing::{self, AccountFacts, Decision};
use crate::account::policy::AccountPolicy;
use crate::account::projection::projected_sends;
use crate::account::quota::{self, Observation, Quota, QuotaSource};
use crate::job::{Job, Status, rank_at};
use crate::queue::Message;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How long a job waits for an account busy with another send, or for an older job of
/// the account to go first, at the most: the send's end wakes the next job sooner.
const BUSY_RETRY: chrono::Duration = chrono::Duration::seconds(10);

#[derive(Debug, Clone, PartialEq)]
pub enum SendGate {
    /// Send now: the account's send lease and one request of its week are this job's.
    Send,
    /// Read the account's quota and status from the API, record them, and ask again.
    NeedReading,
    /// Not now: park the job.
    Wait(GateWait),
}

/// Where the gate parks a job: until `until`, with `status` (`None` keeps the job's
/// status), or until `waiting` ends if it is set.
#[derive(Debug, Clone, PartialEq)]
pub struct GateWait {
    pub status: Option<Status>,
    pub until: DateTime<Utc>,
    pub hold_until: Option<DateTime<Utc>>,
    pub reason: String,
    pub waiting: Option<Wait>,
}

impl GateWait {
    /// Another send of the account, or an older job of its backlog, goes first: a moment's
    /// wait, ended early by that send's end.
    fn for_sender(account: &str, reason: String, now: DateTime<Utc>) -> SendGate {
        SendGate::Wait(GateWait {
            status: None,
            until: now + BUSY_RETRY,
            hold_until: None,
            reason,
            waiting: Some(Wait::Sender(account.to_string())),
        })
    }
}

/// How fresh the account's facts are that the gate decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts {
    /// As recorded: a gate that needs a reading asks for one.
    Recorded,
    /// The quota and status endpoints were just read: a decision that still asks for a quota
    /// (the API reported none for CONNECT) goes ahead on what is known.
    JustRead,
}

/// What the gate does for a job, decided from the account's facts alone.
#[derive(Debug, Clone, PartialEq)]
struct GateStep {
    /// The shared waits on the account to release first.
    release: Vec<Wait>,
    next: NextStep,
}

#[derive(Debug, Clone, PartialEq)]
enum NextStep {
    Answer(SendGate),
    /// Pacing: the job takes its turn among the account's backlog.
    TakeTurn {
        reason: String,
    },
    /// Send, unless an older job of the account waits for the gate.
    SendIfOldest,
}

/// Maps the pacing decision (and whether another send holds the account) to the gate's
/// next step.
fn gate_step(
    decision: Decision,
    account: &str,
    busy: bool,
    facts: Facts,
    quota_refresh: chrono::Duration,
    now: DateTime<Utc>,
) -> GateStep {
    // Waiting for another job's send is a moment's wait; a hold, a spent week or a pause is
    // the job's status, written back with its ETA, whether or not the account is busy.
    // (Pacing's projection waits for the send to end: the job in flight is not counted yet.)
    if busy && !matches!(decision, Decision::Held { .. } | Decision::Paused { .. }) {
        let reason = "another send on this account is in progress".to_string();
        return GateStep {
            release: Vec::new(),
            next: NextStep::Answer(GateWait::for_sender(account, reason, now)),
        };
    }
    // The jobs waiting on the account learn where it stands: those waiting for it to
    // recover when it has, those waiting for a send when none will come soon.
    let mut release = Vec::new();
    if !matches!(decision, Decision::Paused { .. }) {
        release.push(Wait::Account(account.to_string()));
    }
    if !busy && !matches!(decision, Decision::Send | Decision::NeedQuota) {
        release.push(Wait::Sender(account.to_string()));
    }
    let next = match decision {
        Decision::NeedQuota if facts == Facts::Recorded => NextStep::Answer(SendGate::NeedReading),
        Decision::Paused { reason } => NextStep::Answer(SendGate::Wait(GateWait {
            status: Some(Status::Paused),
            until: now + quota_refresh,
            hold_until: None,
            reason,
            waiting: Some(Wait::Account(account.to_string())),
        })),
        Decision::Held {
            until,
            hold_until,
            reason,
        } => NextStep::Answer(SendGate::Wait(GateWait {
            status: Some(Status::Held),
            until,
            hold_until,
            reason: reason.to_string(),
            waiting: None,
        })),
        Decision::Scheduled { reason, .. } => NextStep::TakeTurn {
            reason: reason.to_string(),
        },
        Decision::Send | Decision::NeedQuota => NextStep::SendIfOldest,
    };
    GateStep { release, next }
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
    /// The account is in shadow mode: its shadow turns of the week count as sent, though
    /// the endpoint never saw them.
    pub counts_shadow_sends: bool,
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
    store: &SqlStore,
    job: &Job,
    policy: &AccountPolicy,
    lease: chrono::Duration,
    facts: Facts,
    now: DateTime<Utc>,
) -> Result<SendGate, StoreError> {
    let account = job.account_id.as_str();
    let mut tx = store.db.begin().await?;
    db::query(
        "INSERT INTO accounts (account_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(account)
    .bind(now)
    .execute(&mut tx)
    .await?;
    let known = load(&mut tx, account, policy, now, Reading::ForUpdate).await?;
    // A disabled account is asked again now and then, so that it resumes by itself.
    if facts == Facts::Recorded
        && known.facts.disabled.is_some()
        && known
            .status_checked_at
            .is_none_or(|t| now - t >= policy.quota_refresh)
    {
        return Ok(SendGate::NeedReading);
    }
    let busy = known.sending_job.is_some_and(|other| other != job.id)
        && known.sending_until.is_some_and(|t| t > now);
    let known_facts = known.facts;
    let mut decision = pacing::decide(
        policy,
        &known_facts,
        now,
        pacing::jitter_sample(account, known_facts.last_send_at),
    );
    if facts == Facts::JustRead {
        decision = pacing::after_fresh_reading(decision, policy, &known_facts, now);
    }
    let step = gate_step(decision, account, busy, facts, policy.quota_refresh, now);
    for wait in &step.release {
        waits::release_all(&mut tx, wait, now).await?;
    }
    let gate = match step.next {
        NextStep::Answer(gate) => gate,
        NextStep::TakeTurn { reason } => {
            // Each job of the backlog gets its own turn as its ETA, so they do not all wake
            // at once; the projection starts from the same facts the decision used.
            let ahead = backlog_ahead(&mut tx, job).await?;
            let turns = projected_sends(account, policy, &known_facts, now, ahead + 1);
            let until = turns.last().copied().unwrap_or(now + policy.quota_refresh);
            // A job placed before others already waiting (a higher priority) pushes them back
            // a turn: the first whose turn is now this one's or earlier takes its new turn at
            // once, and the one after it in turn, so that every ETA follows the line.
            if let Some(pushed_back) = next_out_of_turn(&mut tx, job, until, now).await? {
                wake_now(&mut tx, pushed_back, now).await?;
            }
            SendGate::Wait(GateWait {
                status: Some(Status::Scheduled),
                until,
                hold_until: None,
                reason,
                waiting: None,
            })
        }
        NextStep::SendIfOldest => match older_waiting_job(&mut tx, job, now).await? {
            Some((older, held_by_a_worker)) => {
                // The account's backlog goes oldest first: wake the older job and wait.
                if !held_by_a_worker {
                    wake_now(&mut tx, older, now).await?;
                }
                let reason = format!("an older job of this account goes first ({older})");
                GateWait::for_sender(account, reason, now)
            }
            None => {
                take_slot(&mut tx, account, job.id, now, lease).await?;
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

/// Whether reading an account's facts also takes its row lock for the rest of the
/// transaction (the gate, which then writes), or only reads them (a summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    ForUpdate,
    Look,
}

/// Reads an account's facts.
pub(super) async fn load(
    conn: &mut impl db::Exec,
    account: &str,
    policy: &AccountPolicy,
    now: DateTime<Utc>,
    reading: Reading,
) -> Result<Known, StoreError> {
    let row = db::query(match reading {
        Reading::ForUpdate => {
            "SELECT hold_until, blocked_until, disabled_reason, status_checked_at, sending_job, \
             sending_until FROM accounts WHERE account_id = $1 FOR UPDATE"
        }
        Reading::Look => {
            "SELECT hold_until, blocked_until, disabled_reason, status_checked_at, sending_job, \
             sending_until FROM accounts WHERE account_id = $1"
        }
    })
    .bind(account)
    .fetch_optional::<AccountRow>(conn)
    .await?;
    let (hold_until, blocked_until, disabled, status_checked_at, sending_job, sending_until) =
        row.unwrap_or_default();
    let limits = db::query(
        "SELECT \"limit\", used, remaining, reset_at, observed_at, source FROM account_limits \
         WHERE account_id = $1 AND action = 'CONNECT'",
    )
    .bind(account)
    .fetch_optional::<LimitRow>(conn)
    .await?;
    let (day_start, day_end) = pacing::local_day(policy, now);
    let (sends_today, last_send_at) = db::query(
        "SELECT count(*) FILTER (WHERE at >= $2 AND at < $3), max(at) FROM account_sends \
         WHERE account_id = $1",
    )
    .bind(account)
    .bind(day_start)
    .bind(day_end)
    .fetch_one::<(i64, Option<DateTime<Utc>>)>(conn)
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

pub(super) fn quota_from_row(row: LimitRow) -> Option<Quota> {
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

/// The stored `limit`, `used`, `remaining` and `reset_at` of an account's `action`, as
/// `quota::merge_observation` takes them.
pub(super) async fn stored_observation(
    tx: &mut impl db::Exec,
    account: &str,
    action: &str,
) -> Result<Option<Observation>, StoreError> {
    let row = db::query(
        "SELECT \"limit\", used, remaining, reset_at FROM account_limits \
         WHERE account_id = $1 AND action = $2",
    )
    .bind(account)
    .bind(action)
    .fetch_optional::<(Option<i32>, Option<i32>, Option<i32>, Option<DateTime<Utc>>)>(tx)
    .await?;
    Ok(row.map(|(limit, used, remaining, reset_at)| Observation {
        limit,
        used,
        remaining,
        reset_at,
    }))
}

/// The job takes the account's send lease and one request of its week; the slot is marked
/// started just before the POST (`send_started`), or given back.
async fn take_slot(
    tx: &mut impl db::Exec,
    account: &str,
    job_id: Uuid,
    now: DateTime<Utc>,
    lease: chrono::Duration,
) -> Result<(), StoreError> {
    db::query("UPDATE accounts SET sending_job = $2, sending_until = $3 WHERE account_id = $1")
        .bind(account)
        .bind(job_id)
        .bind(now + lease)
        .execute(tx)
        .await?;
    db::query(
        "UPDATE account_limits SET remaining = remaining - 1 \
         WHERE account_id = $1 AND action = 'CONNECT' AND remaining IS NOT NULL",
    )
    .bind(account)
    .execute(tx)
    .await?;
    db::query(
        "INSERT INTO account_sends (account_id, job_id, at, post_started) \
         VALUES ($1, $2, $3, false)",
    )
    .bind(account)
    .bind(job_id)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// Makes a job due now and publishes it (through the outbox).
async fn wake_now(
    tx: &mut impl db::Exec,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query("UPDATE jobs SET due_at = $2 WHERE id = $1")
        .bind(job_id)
        .bind(now)
        .execute(tx)
        .await?;
    outbox::reschedule(&mut *tx, Message::Connect(job_id), now).await?;
    Ok(())
}

/// The job's place as stored: its priority may have changed since the worker read it.
async fn stored_rank(tx: &mut impl db::Exec, job: &Job) -> Result<DateTime<Utc>, StoreError> {
    Ok(db::query("SELECT rank_at FROM jobs WHERE id = $1")
        .bind(job.id)
        .scalar_optional::<DateTime<Utc>>(tx)
        .await?
        .unwrap_or_else(|| rank_at(job.created_at, job.priority)))
}

/// The first job behind `job` in line whose own turn, waiting on a timer, is no later than
/// `until`, the turn `job` is taking: it is out of turn now.
async fn next_out_of_turn(
    tx: &mut impl db::Exec,
    job: &Job,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    Ok(db::query(
        "SELECT id FROM jobs WHERE account_id = $1 AND id <> $2 \
         AND (rank_at > $3 OR (rank_at = $3 AND id > $2)) AND status = ANY($4) AND NOT enrich \
         AND waits_on IS NULL AND due_at > $5 AND due_at <= $6 \
         AND (lease_until IS NULL OR lease_until < $5) ORDER BY rank_at, id LIMIT 1",
    )
    .bind(job.account_id.as_str())
    .bind(job.id)
    .bind(stored_rank(tx, job).await?)
    .bind(db::Set(&Status::BACKLOG[..]))
    .bind(now)
    .bind(until)
    .scalar_optional::<Uuid>(tx)
    .await?)
}

/// How many of the account's waiting jobs go before `job` (`job::rank_at`: the highest
/// priority, then the oldest).
async fn backlog_ahead(tx: &mut impl db::Exec, job: &Job) -> Result<usize, StoreError> {
    let ahead = db::query(
        "SELECT count(*) FROM jobs WHERE account_id = $1 AND id <> $2 \
         AND (rank_at < $3 OR (rank_at = $3 AND id < $2)) AND status = ANY($4) \
         AND due_at IS NOT NULL AND NOT enrich",
    )
    .bind(job.account_id.as_str())
    .bind(job.id)
    .bind(stored_rank(tx, job).await?)
    .bind(db::Set(&Status::BACKLOG[..]))
    .scalar::<i64>(tx)
    .await?;
    Ok(usize::try_from(ahead).unwrap_or(0))
}

/// The account's first waiting job in line (`job::rank_at`) if it goes before `job` and waits
/// for the gate (a job parked longer waits for something else: a retry, the per-minute
/// budget), and whether a worker holds it now (then it is on its way to the gate already).
async fn older_waiting_job(
    tx: &mut impl db::Exec,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, bool)>, StoreError> {
    // The id breaks a tie between jobs of the same rank.
    Ok(db::query(
        "SELECT id, coalesce(lease_until > $4, false) FROM jobs WHERE account_id = $1 AND id <> $2 \
         AND (rank_at < $3 OR (rank_at = $3 AND id < $2)) AND status = ANY($6) AND NOT enrich \
         AND due_at IS NOT NULL AND due_at <= $5 ORDER BY rank_at, id LIMIT 1",
    )
    .bind(job.account_id.as_str())
    .bind(job.id)
    .bind(stored_rank(tx, job).await?)
    .bind(now)
    .bind(now + BUSY_RETRY)
    .bind(db::Set(&Status::BACKLOG[..]))
    .fetch_optional::<(Uuid, bool)>(tx)
    .await?)
}

/// Records an account reading. The endpoint's numbers are the authority (other tools' use
/// counts), except that a send in flight on the account may not be in them yet.
pub(super) async fn record_reading(
    store: &SqlStore,
    account: &str,
    reading: &AccountReading,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.db.begin().await?;
    // The account's row, written first, stays locked to the end: the limits below are read,
    // merged in Rust and written back with no other writer of them in between (each takes
    // this row first).
    db::query(
        "INSERT INTO accounts (account_id, disabled_reason, status_checked_at, updated_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (account_id) DO UPDATE SET \
         disabled_reason = $2, status_checked_at = $3, updated_at = $3",
    )
    .bind(account)
    .bind(reading.disabled.as_deref())
    .bind(now)
    .execute(&mut tx)
    .await?;
    if let Some(quota) = &reading.quota {
        // A send that started since the endpoints were asked may be missing from their
        // numbers; our own count has it, so the lower of the two stands then.
        let overlapped = db::query(
            "SELECT (coalesce((SELECT sending_until > $2 FROM accounts WHERE account_id = $1), \
                              false) \
             OR EXISTS (SELECT 1 FROM account_sends WHERE account_id = $1 AND at >= $3) \
             OR EXISTS (SELECT 1 FROM account_limits WHERE account_id = $1 \
                        AND action = 'CONNECT' AND observed_at > $3))",
        )
        .bind(account)
        .bind(now)
        .bind(reading.asked_at)
        .scalar::<bool>(&mut tx)
        .await?;
        let count = |n: u32| Some(i32::try_from(n).unwrap_or(i32::MAX));
        let mut read = Observation {
            limit: count(quota.limit),
            used: count(quota.used),
            remaining: count(quota.remaining),
            reset_at: Some(quota.reset_at),
        };
        if reading.counts_shadow_sends {
            let shadow_sends = db::query(
                "SELECT count(*) FROM account_sends WHERE account_id = $1 AND shadow \
                 AND at >= $2",
            )
            .bind(account)
            .bind(quota.reset_at - chrono::Duration::days(7))
            .scalar::<i64>(&mut tx)
            .await?;
            read = quota::with_shadow_sends(read, shadow_sends);
        }
        let stored = stored_observation(&mut tx, account, "CONNECT").await?;
        let merged = quota::merge_observation(stored.as_ref(), &read, overlapped);
        db::query(
            "INSERT INTO account_limits (account_id, action, \"limit\", used, remaining, reset_at, \
             observed_at, source) VALUES ($1, 'CONNECT', $2, $3, $4, $5, $6, 'endpoint') \
             ON CONFLICT (account_id, action) DO UPDATE SET \"limit\" = $2, used = $3, \
             remaining = $4, reset_at = $5, observed_at = $6, source = 'endpoint'",
        )
        .bind(account)
        .bind(merged.limit)
        .bind(merged.used)
        .bind(merged.remaining)
        .bind(merged.reset_at)
        .bind(now)
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Frees the account's send lease held by `job_id`, once its send has an outcome, and wakes
/// the oldest job that was waiting for it (rather than have every waiter poll).
/// A slot given back means nothing was sent: the next job would meet the same obstacle, so
/// only the jobs waiting for this send go on.
pub(super) async fn release_account(
    tx: &mut impl db::Exec,
    job_id: Uuid,
    now: DateTime<Utc>,
    slot: SendSlot,
) -> Result<(), StoreError> {
    let account = db::query(
        "UPDATE accounts SET sending_job = NULL, sending_until = NULL WHERE sending_job = $1 \
         RETURNING account_id",
    )
    .bind(job_id)
    .scalar_optional::<String>(tx)
    .await?;
    let Some(account) = account else {
        return Ok(());
    };
    // A job waiting for this send goes next (it had no timer of its own).
    waits::release_first_in_line(&mut *tx, &Wait::Sender(account.clone()).key(), now).await?;
    if slot == SendSlot::Returned {
        return Ok(());
    }
    // First in line (`job::rank_at`); the id breaks a tie between jobs of the same rank.
    let next = db::query(
        "UPDATE jobs SET due_at = $3 WHERE id = (SELECT id FROM jobs WHERE account_id = $1 \
         AND id <> $2 AND status = ANY($5) AND NOT enrich AND waits_on IS NULL \
         AND due_at > $3 AND due_at <= $4 ORDER BY rank_at, id LIMIT 1) RETURNING id",
    )
    .bind(account.as_str())
    .bind(job_id)
    .bind(now)
    .bind(now + BUSY_RETRY)
    .bind(db::Set(&Status::BACKLOG[..]))
    .scalar_optional::<Uuid>(tx)
    .await?;
    if let Some(next) = next {
        outbox::reschedule(&mut *tx, Message::Connect(next), now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::pacing::{HeldReason, ScheduledReason};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn step(decision: Decision, busy: bool, facts: Facts) -> GateStep {
        gate_step(
            decision,
            "acc_1",
            busy,
            facts,
            chrono::Duration::minutes(15),
            now(),
        )
    }

    fn account() -> Wait {
        Wait::Account("acc_1".into())
    }

    fn sender() -> Wait {
        Wait::Sender("acc_1".into())
    }

    #[test]
    fn a_busy_account_makes_a_sender_wait_but_a_hold_is_still_the_jobs_status() {
        let busy = step(Decision::Send, true, Facts::Recorded);
        assert!(busy.release.is_empty());
        let NextStep::Answer(SendGate::Wait(wait)) = busy.next else {
            panic!("{busy:?}");
        };
        assert_eq!((wait.status, wait.waiting), (None, Some(sender())));
        let held = Decision::Held {
            until: now() + chrono::Duration::days(2),
            hold_until: None,
            reason: HeldReason::QuotaSpent,
        };
        let held = step(held, true, Facts::Recorded);
        assert!(
            matches!(&held.next, NextStep::Answer(SendGate::Wait(w)) if w.status == Some(Status::Held)),
            "{held:?}"
        );
        assert_eq!(held.release, vec![account()]);
    }

    #[test]
    fn a_pause_parks_on_the_account_without_releasing_its_waiters() {
        let paused = step(
            Decision::Paused {
                reason: "disabled".into(),
            },
            false,
            Facts::Recorded,
        );
        assert_eq!(paused.release, vec![sender()]);
        let NextStep::Answer(SendGate::Wait(wait)) = paused.next else {
            panic!("{paused:?}");
        };
        assert_eq!(wait.status, Some(Status::Paused));
        assert_eq!(wait.waiting, Some(account()));
        assert_eq!(wait.until, now() + chrono::Duration::minutes(15));
    }

    #[test]
    fn a_missing_quota_is_read_once_then_the_send_goes_ahead() {
        let first = step(Decision::NeedQuota, false, Facts::Recorded);
        assert_eq!(first.next, NextStep::Answer(SendGate::NeedReading));
        let after_reading = step(Decision::NeedQuota, false, Facts::JustRead);
        assert_eq!(after_reading.next, NextStep::SendIfOldest);
        assert_eq!(after_reading.release, vec![account()]);
        let paced = Decision::Scheduled {
            at: now(),
            reason: ScheduledReason::Spacing,
        };
        let paced = step(paced, false, Facts::Recorded);
        assert!(matches!(paced.next, NextStep::TakeTurn { .. }), "{paced:?}");
        assert_eq!(paced.release, vec![account(), sender()]);
    }
}
