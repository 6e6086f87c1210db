//! The work queue: a narrow interface that the workers use, with RabbitMQ behind it.
//!
//! Messages only point at state (a job id, a writeback id); PostgreSQL holds the state, so
//! a duplicate or stale message is harmless and a lost one is re-sent from the outbox.

mod config;
mod rabbit;

pub use config::BrokerConfig;
pub use rabbit::Rabbit;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker unreachable: {0}")]
    Unavailable(String),
    #[error("broker did not confirm the message: {0}")]
    NotConfirmed(String),
    #[error("broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// What the consumer does with a delivery once the handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The outcome is committed (or there was nothing to do): acknowledge.
    Ack,
    /// Something internal failed (the database, say): requeue after a pause.
    Requeue,
}

pub type Handler =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Handled> + Send>> + Send + Sync>;

pub trait Queue: Clone + Send + Sync + 'static {
    /// Publishes one persistent message and waits for the broker to confirm it.
    fn publish(
        &self,
        topic: Topic,
        reference: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

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
