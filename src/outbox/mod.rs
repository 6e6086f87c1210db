//! Getting committed messages onto the broker. The store writes each message in the same
//! transaction as the state it announces (`store::OutboxMessage`); this module publishes it
//! right after the commit, and the relay publishes whatever was left behind or falls due
//! later. Ingest and the workers publish through here, never through the queue directly.

mod relay;

pub use relay::relay_loop;

use crate::queue::{Queue, QueueError};
use crate::store::{OutboxMessage, OutboxStore};

/// Publishes messages just committed; what fails stays in the outbox for the relay.
pub async fn publish_now<Q: Queue, S: OutboxStore>(
    store: &S,
    queue: &Q,
    messages: Vec<OutboxMessage>,
) {
    let mut done = Vec::with_capacity(messages.len());
    for message in messages {
        match queue.publish(message.message).await {
            Ok(()) => done.push(message.outbox_id),
            Err(QueueError::LeftToRelay) => break,
            Err(error) => {
                tracing::warn!(%error, "publish failed; the relay will retry from the outbox");
                break;
            }
        }
    }
    if let Err(error) = store.published(&done).await {
        // Harmless: the relay publishes them again and consumers ignore duplicates.
        tracing::warn!(%error, "could not forget published outbox rows");
    }
}
