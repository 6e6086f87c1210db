//! `[broker]`: where RabbitMQ is (none: the in-process queue of the embedded mode), the
//! names used there, and how much runs at once.

use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// RabbitMQ's `amqp://` or `amqps://` URL; unset runs the embedded in-process queue.
    pub url: Option<Secret>,
    pub prefix: String,
    pub prefetch: u16,
    pub connect_concurrency: usize,
    pub writeback_concurrency: usize,
    /// Publishes started right after ingest commits, at most this many at once; the relay
    /// publishes the others after `worker.relay_grace`.
    pub publish_concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "leadlink".into(),
            prefetch: 8,
            connect_concurrency: 4,
            writeback_concurrency: 4,
            publish_concurrency: 16,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(5),
        }
    }
}
