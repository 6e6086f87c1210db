//! The work queue: a narrow interface that the workers use, with RabbitMQ behind it when
//! scaled out and an in-process queue in the embedded mode.
//!
//! Messages only point at state (a job id, a writeback id); PostgreSQL holds the state, so
//! a duplicate or stale message is harmless and a lost one is re-sent from the outbox.

mod config;
mod local;
mod rabbit;

pub use config::BrokerConfig;
pub use local::Local;
pub use rabbit::Rabbit;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The two streams of work: connect attempts and writebacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Connect,
    Writeback,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Connect => "connect",
            Topic::Writeback => "writeback",
        }
    }

    /// Reads back what `as_str` wrote (the outbox stores topics as text).
    pub fn parse(text: &str) -> Option<Topic> {
        match text {
            "connect" => Some(Topic::Connect),
            "writeback" => Some(Topic::Writeback),
            _ => None,
        }
    }
}

/// What a message points at: the job to attempt, or the writeback to deliver. On the wire
/// (and in the outbox) it is its topic and its id as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    Connect(Uuid),
    Writeback(i64),
}

impl Message {
    pub fn topic(self) -> Topic {
        match self {
            Message::Connect(_) => Topic::Connect,
            Message::Writeback(_) => Topic::Writeback,
        }
    }

    /// The message's body: the id it points at.
    pub fn reference(self) -> String {
        match self {
            Message::Connect(job_id) => job_id.to_string(),
            Message::Writeback(id) => id.to_string(),
        }
    }

    /// Reads back a body of `topic`; `None` for one that names nothing of ours.
    pub fn parse(topic: Topic, reference: &str) -> Option<Message> {
        match topic {
            Topic::Connect => Uuid::parse_str(reference).ok().map(Message::Connect),
            Topic::Writeback => reference.parse().ok().map(Message::Writeback),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker unreachable: {0}")]
    Unavailable(String),
    #[error("broker did not confirm the message: {0}")]
    NotConfirmed(String),
    #[error("broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A command run beside an embedded service has no queue of its own.
    #[error("no queue in this process: the running service's relay publishes the message")]
    LeftToRelay,
}

/// What the consumer does with a delivery once the handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The outcome is committed (or there was nothing to do): acknowledge.
    Ack,
    /// Something internal failed (the database, say): requeue after a pause.
    Requeue,
}

/// How long a requeued message waits, so a failing dependency is not hammered.
const REQUEUE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the handler for one message. A panicking handler still settles its message
/// (requeued), or the consumer would stall once its concurrency is stuck.
async fn run_handler(handler: &Handler, message: Message) -> Handled {
    AssertUnwindSafe(handler(message))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!("handler panicked; the message is requeued");
            Handled::Requeue
        })
}

pub type Handler =
    Arc<dyn Fn(Message) -> Pin<Box<dyn Future<Output = Handled> + Send>> + Send + Sync>;

pub trait Queue: Clone + Send + Sync + 'static {
    /// Publishes one persistent message and waits for the broker to confirm it.
    fn publish(&self, message: Message) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Consumes `topic` with at most `concurrency` handlers at once until `shutdown`,
    /// reconnecting by itself; in-flight deliveries are finished before it returns.
    fn consume(
        &self,
        topic: Topic,
        concurrency: usize,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Whether the broker answers now.
    fn ping(&self) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The queue a process works with, as `broker.url` chooses it.
#[derive(Clone)]
pub enum Broker {
    Rabbit(Rabbit),
    /// The embedded mode: one process, its queue in memory.
    InProcess(Local),
    /// A command beside an embedded service: what it writes stays in the outbox, due now,
    /// for the service's relay.
    OutboxOnly,
}

impl Broker {
    /// The queue of a serving process.
    pub fn for_service(config: &BrokerConfig) -> Broker {
        match &config.url {
            Some(url) => Broker::Rabbit(Rabbit::new(url.clone(), config.clone())),
            None => Broker::InProcess(Local::new()),
        }
    }

    /// The queue of a short-lived command.
    pub fn for_command(config: &BrokerConfig) -> Broker {
        match &config.url {
            Some(url) => Broker::Rabbit(Rabbit::new(url.clone(), config.clone())),
            None => Broker::OutboxOnly,
        }
    }

    pub fn is_in_process(&self) -> bool {
        matches!(self, Broker::InProcess(_))
    }
}

impl Queue for Broker {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        match self {
            Broker::Rabbit(queue) => queue.publish(message).await,
            Broker::InProcess(queue) => queue.publish(message).await,
            Broker::OutboxOnly => Err(QueueError::LeftToRelay),
        }
    }

    async fn consume(
        &self,
        topic: Topic,
        concurrency: usize,
        handler: Handler,
        shutdown: CancellationToken,
    ) {
        match self {
            Broker::Rabbit(queue) => queue.consume(topic, concurrency, handler, shutdown).await,
            Broker::InProcess(queue) => queue.consume(topic, concurrency, handler, shutdown).await,
            Broker::OutboxOnly => shutdown.cancelled().await,
        }
    }

    async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Broker::Rabbit(queue) => queue.ping().await,
            Broker::InProcess(_) | Broker::OutboxOnly => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_from_its_topic_and_body_only() {
        for message in [Message::Connect(Uuid::now_v7()), Message::Writeback(42)] {
            assert_eq!(
                Message::parse(message.topic(), &message.reference()),
                Some(message)
            );
        }
        assert_eq!(Message::parse(Topic::Connect, "42"), None);
        assert_eq!(Message::parse(Topic::Writeback, "not-an-id"), None);
    }
}
