//! Waits many jobs share: an account that cannot send, a CRM whose credentials were
//! refused, the refused API key, another job's send on the account. A waiting job has no
//! timer of its own (100,000 jobs on a paused account would otherwise wake 100,000 times per
//! interval): one timer per wait lets its oldest job try again now and then, and whatever
//! lifts the wait releases every job waiting on it.

use super::outbox::{self, OutboxMessage};
use super::{SqlStore, StoreError};
use crate::queue::Message;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a job waits for, besides time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The account cannot send: paused in the configuration, disabled, or unknown to the API.
    Account(String),
    /// Another job's send holds the account, or an older job goes first.
    Sender(String),
    /// The CRM refused leadlink's credentials (enrichment reads).
    Crm(String),
    /// ConnectSafely refused the API key; the key probe lifts it.
    Key,
}

impl Wait {
    pub(super) fn key(&self) -> String {
        match self {
            Wait::Account(id) => format!("account:{id}"),
            Wait::Sender(id) => format!("send:{id}"),
            Wait::Crm(crm) => format!("crm:{crm}"),
            Wait::Key => "key".to_string(),
        }
    }
}

/// A job parked on a wait, and how often the wait's timer lets one of its jobs try again
/// (`None`: only the wait's end releases it, as for the key, which has its own probe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub on: Wait,
    pub retry_every: Option<chrono::Duration>,
}

/// Parks `job_id` on the wait, with no outbox row of its own, and starts the wait's timer.
pub(super) async fn park(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    waiting: &Waiting,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = waiting.on.key();
    sqlx::query!("UPDATE jobs SET waits_on = $2 WHERE id = $1", job_id, key)
        .execute(&mut *tx)
        .await?;
    if let Some(every) = waiting.retry_every {
        // DO UPDATE locks an existing timer, so that a release deleting it waits for this
        // job to be committed and then sees it; a timer deleted first is made again here.
        sqlx::query!(
            "INSERT INTO waits (waits_on, next_try_at, every_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (waits_on) DO UPDATE SET next_try_at = \
             LEAST(waits.next_try_at, EXCLUDED.next_try_at)",
            key,
            now + every,
            every.num_milliseconds(),
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The wait is over: every job on it is due now.
pub(super) async fn release_all(
    tx: &mut sqlx::PgConnection,
    wait: &Wait,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let key = wait.key();
    forget(tx, &key).await?;
    let ids = sqlx::query_scalar!(
        "UPDATE jobs SET waits_on = NULL, due_at = $2 WHERE waits_on = $1 RETURNING id",
        key,
        now,
    )
    .fetch_all(&mut *tx)
    .await?;
    due_now(tx, ids, now).await
}

/// Lets the oldest job on the wait try again now; the others keep waiting.
pub(super) async fn release_oldest(
    tx: &mut sqlx::PgConnection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let ids = sqlx::query_scalar!(
        "UPDATE jobs SET waits_on = NULL, due_at = $2 WHERE id = (SELECT id FROM jobs \
         WHERE waits_on = $1 ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id",
        key,
        now,
    )
    .fetch_all(&mut *tx)
    .await?;
    due_now(tx, ids, now).await
}

/// Drops the wait's timer.
async fn forget(tx: &mut sqlx::PgConnection, key: &str) -> Result<(), StoreError> {
    sqlx::query!("DELETE FROM waits WHERE waits_on = $1", key)
        .execute(tx)
        .await?;
    Ok(())
}

async fn due_now(
    tx: &mut sqlx::PgConnection,
    ids: Vec<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut publish = Vec::with_capacity(ids.len());
    for id in ids {
        publish.push(outbox::reschedule(&mut *tx, Message::Connect(id), now).await?);
    }
    Ok(publish)
}

/// The timers of shared waits, run by every process.
pub trait WaitStore {
    /// For each wait whose timer is due, lets its oldest job try again (or forgets a wait
    /// nobody waits on any more); returns the messages to publish.
    fn wake_due_waits(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>, StoreError>> + Send;
}

impl WaitStore for SqlStore {
    async fn wake_due_waits(&self, now: DateTime<Utc>) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut tx = self.pg().begin().await?;
        let due = sqlx::query_scalar!(
            "UPDATE waits SET next_try_at = $1 + every_ms * interval '1 millisecond' \
             WHERE waits_on IN (SELECT waits_on FROM waits WHERE next_try_at <= $1 \
             FOR UPDATE SKIP LOCKED) RETURNING waits_on",
            now,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut publish = Vec::new();
        for key in due {
            let woken = release_oldest(&mut tx, &key, now).await?;
            if woken.is_empty() {
                forget(&mut tx, &key).await?;
            }
            publish.extend(woken);
        }
        tx.commit().await?;
        Ok(publish)
    }
}
