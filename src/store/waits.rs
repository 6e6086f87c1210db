//! Waits many jobs share: an account that cannot send, a CRM whose credentials were
//! refused, the refused API key, another job's send on the account. A waiting job has no
//! timer of its own (100,000 jobs on a paused account would otherwise wake 100,000 times per
//! interval): one timer per wait lets its oldest job try again now and then, and whatever
//! lifts the wait releases every job waiting on it.

use super::outbox::{self, OutboxMessage};
use super::{SqlStore, StoreError, db};
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
    tx: &mut impl db::Exec,
    job_id: Uuid,
    waiting: &Waiting,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = waiting.on.key();
    db::query("UPDATE jobs SET waits_on = $2 WHERE id = $1")
        .bind(job_id)
        .bind(key.as_str())
        .execute(tx)
        .await?;
    if let Some(every) = waiting.retry_every {
        // DO UPDATE locks an existing timer, so that a release deleting it waits for this
        // job to be committed and then sees it; a timer deleted first is made again here.
        // The earlier of the two times wins (CASE: both are NOT NULL, and SQLite has no LEAST).
        db::query(
            "INSERT INTO waits (waits_on, next_try_at, every_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (waits_on) DO UPDATE SET next_try_at = \
             CASE WHEN excluded.next_try_at < waits.next_try_at \
             THEN excluded.next_try_at ELSE waits.next_try_at END",
        )
        .bind(key.as_str())
        .bind(now + every)
        .bind(every.num_milliseconds())
        .execute(tx)
        .await?;
    }
    Ok(())
}

/// The wait is over: every job on it is due now.
pub(super) async fn release_all(
    tx: &mut impl db::Exec,
    wait: &Wait,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let key = wait.key();
    forget(tx, &key).await?;
    let ids =
        db::query("UPDATE jobs SET waits_on = NULL, due_at = $2 WHERE waits_on = $1 RETURNING id")
            .bind(key.as_str())
            .bind(now)
            .scalar_all::<Uuid>(tx)
            .await?;
    due_now(tx, ids, now).await
}

/// Lets the first job in line on the wait (`job::rank_at`) try again now; the others keep
/// waiting.
pub(super) async fn release_first_in_line(
    tx: &mut impl db::Exec,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let ids = db::query(
        "UPDATE jobs SET waits_on = NULL, due_at = $2 WHERE id = (SELECT id FROM jobs \
         WHERE waits_on = $1 ORDER BY rank_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING id",
    )
    .bind(key)
    .bind(now)
    .scalar_all::<Uuid>(tx)
    .await?;
    due_now(tx, ids, now).await
}

/// Drops the wait's timer.
async fn forget(tx: &mut impl db::Exec, key: &str) -> Result<(), StoreError> {
    db::query("DELETE FROM waits WHERE waits_on = $1")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

async fn due_now(
    tx: &mut impl db::Exec,
    ids: Vec<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut publish = Vec::with_capacity(ids.len());
    for id in ids {
        publish.push(outbox::reschedule(tx, Message::Connect(id), now).await?);
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

/// When a wait's timer rings next, once it has rung at `now`.
fn next_try(now: DateTime<Utc>, every_ms: i64) -> DateTime<Utc> {
    now + chrono::Duration::milliseconds(every_ms)
}

impl WaitStore for SqlStore {
    async fn wake_due_waits(&self, now: DateTime<Utc>) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut tx = self.db.begin().await?;
        // The row locks keep each due timer to one process until this commits, as the one
        // UPDATE did before its next time was computed in Rust.
        let due: Vec<(String, i64)> = db::query(
            "SELECT waits_on, every_ms FROM waits WHERE next_try_at <= $1 \
             ORDER BY waits_on FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .fetch_all(&mut tx)
        .await?;
        let mut publish = Vec::new();
        for (key, every_ms) in due {
            db::query("UPDATE waits SET next_try_at = $2 WHERE waits_on = $1")
                .bind(key.as_str())
                .bind(next_try(now, every_ms))
                .execute(&mut tx)
                .await?;
            let woken = release_first_in_line(&mut tx, &key, now).await?;
            if woken.is_empty() {
                forget(&mut tx, &key).await?;
            }
            publish.extend(woken);
        }
        tx.commit().await?;
        Ok(publish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_rings_again_every_interval_after_it_rang() {
        let now = "2026-03-02T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            next_try(now, 90_000),
            "2026-03-02T10:01:30Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[tokio::test]
    async fn sqlite_a_wait_lets_its_oldest_job_try_and_its_end_releases_all() {
        let store = crate::store::scratch_sqlite().await;
        let now = "2026-03-02T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let mut jobs = Vec::new();
        for (i, profile) in ["a", "b", "c"].into_iter().enumerate() {
            let mut job =
                crate::job::Job::queued("acc_1", now + chrono::Duration::seconds(i as i64));
            job.profile_id = Some(profile.into());
            super::super::writebacks::tests::seed_job(&store, &job).await;
            jobs.push(job.id);
        }
        let every = chrono::Duration::minutes(1);
        let waiting = Waiting {
            on: Wait::Account("acc_1".into()),
            retry_every: Some(every),
        };
        let mut tx = store.db.begin().await.unwrap();
        for (i, id) in jobs.iter().enumerate() {
            // A later park never pushes the timer back.
            park(
                &mut tx,
                *id,
                &waiting,
                now + chrono::Duration::seconds(i as i64),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();

        assert!(store.wake_due_waits(now).await.unwrap().is_empty());
        let woken = store.wake_due_waits(now + every).await.unwrap();
        assert_eq!(
            woken.iter().map(|m| m.message).collect::<Vec<_>>(),
            vec![Message::Connect(jobs[0])]
        );
        let next: DateTime<Utc> = db::query("SELECT next_try_at FROM waits")
            .scalar(&mut store.db.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(next, now + every * 2);

        let mut tx = store.db.begin().await.unwrap();
        let released = release_all(&mut tx, &waiting.on, now + every)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut released: Vec<Message> = released.iter().map(|m| m.message).collect();
        released.sort_by_key(|m| m.reference());
        assert_eq!(
            released,
            vec![Message::Connect(jobs[1]), Message::Connect(jobs[2])]
        );
        let timers: i64 = db::query("SELECT count(*) FROM waits")
            .scalar(&mut store.db.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(timers, 0);
    }

    #[tokio::test]
    async fn sqlite_a_timer_nobody_waits_on_is_forgotten() {
        let store = crate::store::scratch_sqlite().await;
        let now = "2026-03-02T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let job = crate::job::Job::queued("acc_1", now);
        super::super::writebacks::tests::seed_job(&store, &job).await;
        let waiting = Waiting {
            on: Wait::Crm("hubspot".into()),
            retry_every: Some(chrono::Duration::seconds(30)),
        };
        let mut tx = store.db.begin().await.unwrap();
        park(&mut tx, job.id, &waiting, now).await.unwrap();
        db::query("UPDATE jobs SET waits_on = NULL")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let later = now + chrono::Duration::minutes(1);
        assert!(store.wake_due_waits(later).await.unwrap().is_empty());
        let timers: i64 = db::query("SELECT count(*) FROM waits")
            .scalar(&mut store.db.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(timers, 0);
    }
}
