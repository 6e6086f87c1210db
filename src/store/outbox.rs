//! The outbox: every message that must reach the broker, written in the same transaction as
//! the state it announces. Parked jobs are outbox rows due later; the relay takes rows when
//! due, oldest first (`SKIP LOCKED`, so any number of relays can run), and publishes them
//! after its transaction has ended: no lock is ever held while the broker confirms.

use super::{SqlStore, StoreError, db};
use crate::queue::{Message, Topic};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::future::Future;
use uuid::Uuid;

/// A message to publish, and the outbox row to forget once the broker has it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub outbox_id: i64,
    pub message: Message,
}

pub(super) async fn insert(
    tx: &mut impl db::Exec,
    message: Message,
    due_at: DateTime<Utc>,
) -> Result<OutboxMessage, StoreError> {
    // created_at is bookkeeping only (nothing orders by it); the wall clock stands in for
    // PostgreSQL's old `DEFAULT now()`, which SQLite has no equivalent of.
    let outbox_id = db::query(
        "INSERT INTO outbox (topic, ref, due_at, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(message.topic().as_str())
    .bind(message.reference())
    .bind(due_at)
    .bind(Utc::now())
    .scalar::<i64>(tx)
    .await?;
    Ok(OutboxMessage { outbox_id, message })
}

/// How long a relay keeps the rows it took out of sight while it publishes them.
const RELAY_CLAIM: chrono::Duration = chrono::Duration::minutes(2);

/// Inserts a row unless one is already waiting for this reference. A row a relay has taken
/// is being published right now, and deleted once it is: it does not count.
pub(super) async fn ensure(
    tx: &mut impl db::Exec,
    message: Message,
    due_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let waiting = db::query(
        "SELECT id FROM outbox WHERE topic = $1 AND ref = $2 AND relay_until IS NULL LIMIT 1",
    )
    .bind(message.topic().as_str())
    .bind(message.reference())
    .scalar_optional::<i64>(tx)
    .await?;
    if waiting.is_none() {
        insert(tx, message, due_at).await?;
    }
    Ok(())
}

pub(super) async fn delete_for(tx: &mut impl db::Exec, message: Message) -> Result<(), StoreError> {
    db::query("DELETE FROM outbox WHERE topic = $1 AND ref = $2")
        .bind(message.topic().as_str())
        .bind(message.reference())
        .execute(tx)
        .await?;
    Ok(())
}

/// Replaces the message's rows with one due at `due_at`: the job or writeback goes then, and
/// only then.
pub(super) async fn reschedule(
    tx: &mut impl db::Exec,
    message: Message,
    due_at: DateTime<Utc>,
) -> Result<OutboxMessage, StoreError> {
    delete_for(tx, message).await?;
    insert(tx, message, due_at).await
}

/// When a job or writeback due at `due` comes back if a worker may still hold it until
/// `lease_until`: not before the lease has ended, so the holder's result is not raced.
pub(super) fn comes_back_at(
    due: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    lease_until
        .map_or(due, |lease| lease + chrono::Duration::seconds(1))
        .max(due)
}

/// The row's message, if it names one of ours.
fn stored_message(topic: &str, reference: &str) -> Option<Message> {
    Topic::parse(topic).and_then(|topic| Message::parse(topic, reference))
}

/// The outbox as the relay and the publishers see it.
pub trait OutboxStore {
    /// Forgets rows whose messages the broker confirmed.
    fn published(&self, outbox_ids: &[i64]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Publishes up to `limit` due rows, oldest first, and deletes those the broker
    /// confirmed. The rows are taken out of sight first, in a short transaction of their
    /// own, so concurrent relays skip them and no lock waits on the broker; a crash leaves
    /// them to reappear for the next pass (a duplicate message at worst, which consumers
    /// ignore).
    fn relay_due<F, Fut>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        publish: F,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send
    where
        F: FnMut(OutboxMessage) -> Fut + Send,
        Fut: Future<Output = bool> + Send;

    /// When the next row falls due, so the relay can sleep until then.
    fn next_due(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// When the oldest row that is due by `now` fell due, taken by a relay or not: an outbox
    /// that drains has none for long.
    fn oldest_due(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Rebuilds what an in-process queue lost with its process: every open job and pending
    /// writeback gets an outbox row again unless one is waiting, and rows a dead relay took
    /// are visible again. Only for a store no other process serves (it takes the process
    /// lock first). Returns how many rows it added.
    fn restore_due(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl OutboxStore for SqlStore {
    async fn published(&self, outbox_ids: &[i64]) -> Result<(), StoreError> {
        if outbox_ids.is_empty() {
            return Ok(());
        }
        // A row locked now is being changed by a short transaction; the relay deletes it
        // after its own publish if it is still there.
        let mut tx = self.db.begin().await?;
        db::query(
            "DELETE FROM outbox WHERE id IN \
             (SELECT id FROM outbox WHERE id = ANY($1) FOR UPDATE SKIP LOCKED)",
        )
        .bind(db::Set(outbox_ids))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn relay_due<F, Fut>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        mut publish: F,
    ) -> Result<usize, StoreError>
    where
        F: FnMut(OutboxMessage) -> Fut + Send,
        Fut: Future<Output = bool> + Send,
    {
        let mut tx = self.db.begin().await?;
        let mut rows: Vec<(i64, String, String, DateTime<Utc>)> = db::query(
            "UPDATE outbox SET relay_until = $3 WHERE id IN (SELECT id FROM outbox \
             WHERE due_at <= $1 AND (relay_until IS NULL OR relay_until <= $1) \
             ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, topic, ref, due_at",
        )
        .bind(now)
        .bind(limit)
        .bind(now + RELAY_CLAIM)
        .fetch_all(&mut tx)
        .await?;
        // Ended before publishing: no lock waits on the broker.
        tx.commit().await?;
        rows.sort_by_key(|(id, _, _, due_at)| (*due_at, *id));
        let mut done = Vec::with_capacity(rows.len());
        let mut rest = Vec::new();
        for (outbox_id, topic, reference, _) in rows {
            let Some(message) = stored_message(&topic, &reference) else {
                // Not written by this code (a hand edit, say): no consumer could use it, and
                // it must not hold up the rows behind it.
                tracing::warn!(
                    outbox_id,
                    topic,
                    reference,
                    "outbox row names nothing of ours; dropped"
                );
                done.push(outbox_id);
                continue;
            };
            if !rest.is_empty() || !publish(OutboxMessage { outbox_id, message }).await {
                // The broker is unreachable: the rest is for the next pass.
                rest.push(outbox_id);
                continue;
            }
            done.push(outbox_id);
        }
        let mut tx = self.db.begin().await?;
        db::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(db::Set(&done))
            .execute(&mut tx)
            .await?;
        if !rest.is_empty() {
            db::query("UPDATE outbox SET relay_until = NULL WHERE id = ANY($1)")
                .bind(db::Set(&rest))
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.len())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // A taken row is due again when its relay's claim ends, if that is later. CASE, not
        // GREATEST: SQLite's max(a, b) is NULL when relay_until is.
        Ok(db::query(
            "SELECT min(CASE WHEN relay_until > due_at THEN relay_until ELSE due_at END) \
             FROM outbox",
        )
        .scalar::<Option<DateTime<Utc>>>(&mut self.db.read().await?)
        .await?)
    }

    async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(
            db::query("SELECT min(due_at) FROM outbox WHERE due_at <= $1")
                .bind(now)
                .scalar::<Option<DateTime<Utc>>>(&mut self.db.read().await?)
                .await?,
        )
    }

    async fn restore_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut tx = self.db.begin().await?;
        // No other relay can exist: whatever one took died with it.
        db::query("UPDATE outbox SET relay_until = NULL")
            .execute(&mut tx)
            .await?;
        let waiting: Vec<(String, String)> = db::query("SELECT topic, ref FROM outbox")
            .fetch_all(&mut tx)
            .await?;
        let waiting: HashSet<(String, String)> = waiting.into_iter().collect();
        // Jobs on a shared wait are left out: its timer and its release are in the store.
        let jobs: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)> = db::query(
            "SELECT id, due_at, lease_until FROM jobs \
             WHERE due_at IS NOT NULL AND waits_on IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&mut tx)
        .await?;
        let writebacks: Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> = db::query(
            "SELECT id, next_attempt_at, lease_until FROM writebacks \
             WHERE state = 'pending' ORDER BY id",
        )
        .fetch_all(&mut tx)
        .await?;
        let lost = missing(
            &waiting,
            jobs.into_iter()
                .map(|(id, due, lease)| (Message::Connect(id), due, lease))
                .chain(
                    writebacks
                        .into_iter()
                        .map(|(id, due, lease)| (Message::Writeback(id), due, lease)),
                ),
        );
        for (message, at) in &lost {
            insert(&mut tx, *message, *at).await?;
        }
        tx.commit().await?;
        if !lost.is_empty() {
            tracing::info!(restored = lost.len(), %now, "outbox rows rebuilt at start");
        }
        Ok(lost.len())
    }
}

/// The messages of `open` (with when each is due and any lease on it) that no outbox row
/// carries, and when each must go. Compared in Rust: the outbox keeps references as text,
/// the job ids are UUIDs (a BLOB on SQLite).
fn missing(
    waiting: &HashSet<(String, String)>,
    open: impl Iterator<Item = (Message, DateTime<Utc>, Option<DateTime<Utc>>)>,
) -> Vec<(Message, DateTime<Utc>)> {
    open.filter(|(message, _, _)| {
        !waiting.contains(&(message.topic().as_str().to_string(), message.reference()))
    })
    .map(|(message, due, lease)| (message, comes_back_at(due, lease)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_held_message_comes_back_a_second_after_its_lease() {
        let due = at("2026-03-02T10:00:00Z");
        assert_eq!(comes_back_at(due, None), due);
        assert_eq!(
            comes_back_at(due, Some(at("2026-03-02T10:05:00Z"))),
            at("2026-03-02T10:05:01Z")
        );
        // A lease that ended before the due time changes nothing.
        assert_eq!(comes_back_at(due, Some(at("2026-03-02T09:00:00Z"))), due);
    }

    #[test]
    fn only_messages_without_a_row_are_restored() {
        let job = Uuid::now_v7();
        let other = Uuid::now_v7();
        let due = at("2026-03-02T10:00:00Z");
        let waiting = HashSet::from([("connect".to_string(), job.to_string())]);
        let open = vec![
            (Message::Connect(job), due, None),
            (Message::Connect(other), due, None),
            (Message::Writeback(7), due, Some(at("2026-03-02T10:01:00Z"))),
        ];
        assert_eq!(
            missing(&waiting, open.into_iter()),
            vec![
                (Message::Connect(other), due),
                (Message::Writeback(7), at("2026-03-02T10:01:01Z")),
            ]
        );
    }

    async fn insert_now(store: &SqlStore, message: Message, due: DateTime<Utc>) -> i64 {
        let mut tx = store.db.begin().await.unwrap();
        let row = insert(&mut tx, message, due).await.unwrap();
        tx.commit().await.unwrap();
        row.outbox_id
    }

    async fn rows(store: &SqlStore) -> Vec<(String, String, DateTime<Utc>)> {
        db::query("SELECT topic, ref, due_at FROM outbox ORDER BY due_at, id")
            .fetch_all(&mut store.db.read().await.unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sqlite_relays_due_rows_oldest_first_and_forgets_them() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let minute = chrono::Duration::minutes(1);
        insert_now(&store, Message::Writeback(2), now - minute).await;
        insert_now(&store, Message::Writeback(1), now - minute * 2).await;
        insert_now(&store, Message::Writeback(3), now + minute).await;
        assert_eq!(store.next_due().await.unwrap(), Some(now - minute * 2));
        assert_eq!(store.oldest_due(now).await.unwrap(), Some(now - minute * 2));

        let mut seen = Vec::new();
        let sent = store
            .relay_due(now, 10, |m| {
                seen.push(m.message);
                async { true }
            })
            .await
            .unwrap();
        assert_eq!(sent, 2);
        assert_eq!(seen, vec![Message::Writeback(1), Message::Writeback(2)]);
        assert_eq!(rows(&store).await.len(), 1);
        assert_eq!(store.oldest_due(now).await.unwrap(), None);
        assert_eq!(store.next_due().await.unwrap(), Some(now + minute));
    }

    #[tokio::test]
    async fn sqlite_keeps_what_the_broker_did_not_take() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let first = insert_now(&store, Message::Writeback(1), now).await;
        insert_now(&store, Message::Writeback(2), now).await;
        let sent = store.relay_due(now, 10, |_| async { false }).await.unwrap();
        assert_eq!(sent, 0);
        // Visible again at once, for the next pass.
        assert_eq!(store.next_due().await.unwrap(), Some(now));
        store.published(&[first]).await.unwrap();
        assert_eq!(
            rows(&store).await,
            vec![("writeback".to_string(), "2".to_string(), now)]
        );
    }

    #[tokio::test]
    async fn sqlite_ensure_adds_no_second_row_and_reschedule_replaces_it() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let later = now + chrono::Duration::minutes(5);
        let mut tx = store.db.begin().await.unwrap();
        ensure(&mut tx, Message::Writeback(9), now).await.unwrap();
        ensure(&mut tx, Message::Writeback(9), later).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            rows(&store).await,
            vec![("writeback".to_string(), "9".to_string(), now)]
        );
        let mut tx = store.db.begin().await.unwrap();
        reschedule(&mut tx, Message::Writeback(9), later)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            rows(&store).await,
            vec![("writeback".to_string(), "9".to_string(), later)]
        );
        let mut tx = store.db.begin().await.unwrap();
        delete_for(&mut tx, Message::Writeback(9)).await.unwrap();
        tx.commit().await.unwrap();
        assert!(rows(&store).await.is_empty());
    }

    #[tokio::test]
    async fn sqlite_restore_due_brings_back_a_job_and_a_writeback_whose_message_was_lost() {
        let store = crate::store::scratch_sqlite().await;
        let now = at("2026-03-02T10:00:00Z");
        let job = crate::job::Job::queued("acc_1", now);
        super::super::writebacks::tests::seed_job(&store, &job).await;
        let mut waiting = crate::job::Job::queued("acc_1", now);
        waiting.profile_id = Some("john".into());
        super::super::writebacks::tests::seed_job(&store, &waiting).await;
        let lease = now + chrono::Duration::minutes(2);
        let mut tx = store.db.begin().await.unwrap();
        db::query("UPDATE jobs SET waits_on = 'key' WHERE id = $1")
            .bind(waiting.id)
            .execute(&mut tx)
            .await
            .unwrap();
        let writeback = db::query(
            "INSERT INTO writebacks (job_id, job_record_id, target, sequence, payload, \
             next_attempt_at, lease_until, created_at) \
             SELECT $1, id, 'callback', 1, '{}', $2, $3, $2 FROM job_records WHERE job_id = $1 \
             RETURNING id",
        )
        .bind(job.id)
        .bind(now)
        .bind(lease)
        .scalar::<i64>(&mut tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        // A relay died holding one row; it is visible again after the rebuild.
        insert_now(&store, Message::Writeback(writeback), now).await;
        let mut tx = store.db.begin().await.unwrap();
        db::query("UPDATE outbox SET relay_until = $1")
            .bind(now + chrono::Duration::hours(1))
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        assert_eq!(store.restore_due(now).await.unwrap(), 1);
        assert_eq!(
            rows(&store).await,
            vec![
                ("writeback".to_string(), writeback.to_string(), now),
                ("connect".to_string(), job.id.to_string(), now),
            ]
        );
        assert_eq!(store.next_due().await.unwrap(), Some(now));
        // Nothing is lost twice: a second rebuild adds nothing.
        assert_eq!(store.restore_due(now).await.unwrap(), 0);

        let mut tx = store.db.begin().await.unwrap();
        db::query("DELETE FROM outbox")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.restore_due(now).await.unwrap(), 2);
        let restored = rows(&store).await;
        assert_eq!(
            restored[1],
            (
                "writeback".to_string(),
                writeback.to_string(),
                lease + chrono::Duration::seconds(1)
            )
        );
    }
}
