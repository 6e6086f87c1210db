//! The sections no feature module owns; the others live beside the code that uses them.
//! Secrets named by `*_file` keys have already been read into place by the loader (see
//! `secret_files`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

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
