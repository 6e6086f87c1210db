//! The outbox: every message that must reach the broker, written in the same transaction as
//! the state it announces. Parked jobs are outbox rows due later; the relay takes rows when
//! due, oldest first (`SKIP LOCKED`, so any number of relays can run), and publishes them
//! after its transaction has ended: no lock is ever held while the broker confirms.

use super::{SqlStore, StoreError};
use crate::queue::{Message, Topic};
use chrono::{DateTime, Utc};
use std::future::Future;

/// A message to publish, and the outbox row to forget once the broker has it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub outbox_id: i64,
    pub message: Message,
}

pub(super) async fn insert(
    tx: &mut sqlx::PgConnection,
    message: Message,
    due_at: DateTime<Utc>,
) -> Result<OutboxMessage, StoreError> {
    let outbox_id = sqlx::query_scalar!(
        "INSERT INTO outbox (topic, ref, due_at) VALUES ($1, $2, $3) RETURNING id",
        message.topic().as_str(),
        message.reference(),
        due_at
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(OutboxMessage { outbox_id, message })
}

/// How long a relay keeps the rows it took out of sight while it publishes them.
const RELAY_CLAIM: chrono::Duration = chrono::Duration::minutes(2);

/// Inserts a row unless one is already waiting for this reference. A row a relay has taken
/// is being published right now, and deleted once it is: it does not count.
pub(super) async fn ensure(
    tx: &mut sqlx::PgConnection,
    message: Message,
    due_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let waiting = sqlx::query_scalar!(
        "SELECT id FROM outbox WHERE topic = $1 AND ref = $2 AND relay_until IS NULL LIMIT 1",
        message.topic().as_str(),
        message.reference()
    )
    .fetch_optional(&mut *tx)
    .await?;
    if waiting.is_none() {
        insert(tx, message, due_at).await?;
    }
    Ok(())
}

pub(super) async fn delete_for(
    tx: &mut sqlx::PgConnection,
    message: Message,
) -> Result<(), StoreError> {
    sqlx::query!(
        "DELETE FROM outbox WHERE topic = $1 AND ref = $2",
        message.topic().as_str(),
        message.reference()
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Replaces the message's rows with one due at `due_at`: the job or writeback goes then, and
/// only then.
pub(super) async fn reschedule(
    tx: &mut sqlx::PgConnection,
    message: Message,
    due_at: DateTime<Utc>,
) -> Result<OutboxMessage, StoreError> {
    delete_for(tx, message).await?;
    insert(tx, message, due_at).await
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
}

impl OutboxStore for SqlStore {
    async fn published(&self, outbox_ids: &[i64]) -> Result<(), StoreError> {
        if outbox_ids.is_empty() {
            return Ok(());
        }
        // A row locked now is being changed by a short transaction; the relay deletes it
        // after its own publish if it is still there.
        sqlx::query(
            "DELETE FROM outbox WHERE id IN \
             (SELECT id FROM outbox WHERE id = ANY($1) FOR UPDATE SKIP LOCKED)",
        )
        .bind(outbox_ids)
        .execute(self.pg())
        .await?;
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
        let mut rows: Vec<(i64, String, String, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE outbox SET relay_until = $3 WHERE id IN (SELECT id FROM outbox \
             WHERE due_at <= $1 AND (relay_until IS NULL OR relay_until <= $1) \
             ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, topic, ref, due_at",
        )
        .bind(now)
        .bind(limit)
        .bind(now + RELAY_CLAIM)
        .fetch_all(self.pg())
        .await?;
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
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&done)
            .execute(self.pg())
            .await?;
        if !rest.is_empty() {
            sqlx::query("UPDATE outbox SET relay_until = NULL WHERE id = ANY($1)")
                .bind(&rest)
                .execute(self.pg())
                .await?;
        }
        Ok(done.len())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(GREATEST(due_at, coalesce(relay_until, due_at))) FROM outbox",
        )
        .fetch_one(self.pg())
        .await?)
    }

    async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT min(due_at) FROM outbox WHERE due_at <= $1")
                .bind(now)
                .fetch_one(self.pg())
                .await?,
        )
    }
}
