//! The sections' types, as the file spells them; secrets named by `*_file` keys have
//! already been read into place by the loader (see `secret_files`).

use crate::connectsafely::limits::RateLimits;
use crate::crm::hubspot::HubSpotCrmConfig;
use crate::crm::salesforce::SalesforceCrmConfig;
use crate::ingest::hubspot::config::HubSpotSourceConfig;
use crate::ingest::salesforce::config::SalesforceSourceConfig;
use crate::lead::{MessageTemplate, Overflow};
use crate::secret::Secret;
use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub body_limit: ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            admin_token: None,
            body_limit: ByteSize::mib(1),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,leadlink=debug`; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub url: Secret,
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
            url: Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: Secret,
    /// PostgreSQL allows 100 connections for everything on the server: keep this small.
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/leadlink"),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSafelyConfig {
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub default_account_id: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Case-insensitive text that marks a 400 as "already connected".
    pub already_connected_text: String,
    /// How often a paused (401) key is tried again.
    #[serde(with = "humantime_serde")]
    pub key_probe_interval: Duration,
    /// The API's per-minute limits, kept across every worker.
    pub rate_limits: RateLimits,
}

impl Default for ConnectSafelyConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.connectsafely.ai/linkedin".into(),
            api_key: None,
            default_account_id: None,
            timeout: Duration::from_secs(30),
            already_connected_text: "already connected".into(),
            key_probe_interval: Duration::from_secs(60),
            rate_limits: RateLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub events: Option<EventsSourceConfig>,
    pub hubspot: Option<HubSpotSourceConfig>,
    pub salesforce: Option<SalesforceSourceConfig>,
}

/// The CRMs leadlink reads leads from and writes statuses to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmConfig {
    pub hubspot: Option<HubSpotCrmConfig>,
    pub salesforce: Option<SalesforceCrmConfig>,
    /// How often a CRM whose credentials were refused is tried again.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self {
            hubspot: None,
            salesforce: None,
            probe_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSourceConfig {
    pub secrets: Vec<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Fraction of each delay randomised either way, 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WritebackConfig {
    pub callback: Option<CallbackConfig>,
    pub retry: WritebackRetryConfig,
}

/// Transient failures (408, 425, 429, 5xx, unreachable) are retried with capped backoff
/// for `give_up_after`, so a CRM's maintenance window or outage does not park the final
/// status; permanent refusals park at once whatever this says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritebackRetryConfig {
    /// How long a writeback's transient failures are retried before it is parked.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Optionally, also at most this many tries; unset, only `give_up_after` counts.
    pub max_attempts: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    pub jitter: f64,
}

impl Default for WritebackRetryConfig {
    fn default() -> Self {
        Self {
            give_up_after: Duration::from_secs(3 * 24 * 3600),
            max_attempts: None,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl WritebackRetryConfig {
    pub fn as_retry(&self) -> RetryConfig {
        RetryConfig {
            max_attempts: self.max_attempts.unwrap_or(u32::MAX),
            base_delay: self.base_delay,
            max_delay: self.max_delay,
            jitter: self.jitter,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackConfig {
    /// A secret too: such URLs often carry a token in their query string.
    pub url: Option<Secret>,
    pub secret: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    /// Parsed here, so a typo is reported at load and never reaches a lead.
    #[serde(deserialize_with = "template")]
    pub template: Option<MessageTemplate>,
    pub overflow: Overflow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// How long a worker owns a job it is sending; must outlast the API timeout.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often the relay looks for outbox entries that are due.
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// A fresh job is published by the process that accepted it; the relay steps in
    /// only after this long, so both do not race for it.
    #[serde(with = "humantime_serde")]
    pub relay_grace: Duration,
    /// How long SIGTERM waits for in-flight jobs.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub health_listen: Option<SocketAddr>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(120),
            relay_interval: Duration::from_secs(1),
            relay_grace: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            health_listen: None,
        }
    }
}

/// Crash points for the fault-injection tests. Never set these in production.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Exit the process right after a job is committed, before it is published.
    pub exit_after_commit: bool,
}

fn template<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MessageTemplate>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| MessageTemplate::new(&text).map_err(serde::de::Error::custom))
        .transpose()
}
