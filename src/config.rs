//! One typed configuration: defaults < TOML file < `LEADLINK_<SECTION>__<KEY>` env vars.
//!
//! Every secret may be written inline, set through the environment, or read from a file
//! named by the sibling `<key>_file` key.

use crate::account::policy::AccountsConfig;
use crate::connectsafely::limits::RateLimits;
use crate::crm::hubspot::HubSpotCrmConfig;
use crate::crm::salesforce::SalesforceCrmConfig;
use crate::ingest::hubspot::config::HubSpotSourceConfig;
use crate::ingest::salesforce::config::SalesforceSourceConfig;
use crate::lead::{MessageTemplate, Overflow};
use crate::secret::Secret;
use crate::signature::standard_webhooks;
use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every problem found, one per line, so a user fixes a file in one pass.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub admin_token_file: Option<PathBuf>,
    pub body_limit: ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            admin_token: None,
            admin_token_file: None,
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
    pub url_file: Option<PathBuf>,
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
            url_file: None,
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
    pub url_file: Option<PathBuf>,
    /// PostgreSQL allows 100 connections for everything on the server: keep this small.
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/leadlink"),
            url_file: None,
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
    pub api_key_file: Option<PathBuf>,
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
            api_key_file: None,
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
    /// One secret per line.
    pub secrets_file: Option<PathBuf>,
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
    pub url_file: Option<PathBuf>,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            secret: None,
            secret_file: None,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    pub template: Option<String>,
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

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub broker: BrokerConfig,
    pub database: DatabaseConfig,
    pub connectsafely: ConnectSafelyConfig,
    pub sources: SourcesConfig,
    pub crm: CrmConfig,
    pub accounts: AccountsConfig,
    pub writeback: WritebackConfig,
    pub message: MessageConfig,
    pub retry: RetryConfig,
    pub worker: WorkerConfig,
    pub faults: FaultsConfig,
}

/// Longer is a typo (`30d` for `30s`), and durations near the type's limit overflow what is
/// computed from them (twice a timeout, now plus a delay), which would panic at run time.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

const SECTIONS: [&str; 13] = [
    "server",
    "log",
    "broker",
    "database",
    "connectsafely",
    "sources",
    "crm",
    "accounts",
    "writeback",
    "message",
    "retry",
    "worker",
    "faults",
];

impl Config {
    /// Loads defaults < `file` < environment, resolves `*_file` secrets and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `LEADLINK_<SECTION>__<KEY>` is configuration; a stray `LEADLINK_HOME` is not.
        figment = figment.merge(
            Env::prefixed("LEADLINK_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Parses a TOML document (tests and `check-config` use this path too).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        // Extract section by section so one bad key does not hide problems in the others.
        if let Ok(figment::value::Value::Dict(_, top)) = figment.find_value("") {
            for key in top.keys() {
                if !SECTIONS.contains(&key.as_str()) {
                    problems.push(format!("unknown section `{key}`"));
                }
            }
        }
        let mut config = Config::default();
        let mut unreadable: Vec<&str> = Vec::new();
        macro_rules! section {
            ($name:ident) => {
                match figment
                    .clone()
                    .join(Serialized::default(
                        stringify!($name),
                        serde_json::json!({}),
                    ))
                    .extract_inner(stringify!($name))
                {
                    Ok(value) => config.$name = value,
                    Err(error) => {
                        unreadable.push(stringify!($name));
                        for e in error {
                            problems.push(describe(stringify!($name), &e));
                        }
                    }
                }
            };
        }
        section!(server);
        section!(log);
        section!(broker);
        section!(database);
        section!(connectsafely);
        section!(sources);
        section!(crm);
        section!(accounts);
        section!(writeback);
        section!(message);
        section!(retry);
        section!(worker);
        section!(faults);
        // Check what could be read too; a section that could not be read holds defaults, so
        // what is said about it would mislead.
        let mut more = Vec::new();
        config.resolve_secret_files(&mut more);
        config.check(&mut more);
        problems.extend(more.into_iter().filter(|problem| {
            !unreadable
                .iter()
                .any(|section| problem.starts_with(&format!("{section}.")))
        }));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn resolve_secret_files(&mut self, problems: &mut Vec<String>) {
        read_secret_file(
            "server.admin_token",
            &mut self.server.admin_token,
            &self.server.admin_token_file,
            problems,
        );
        let mut broker_url = Some(self.broker.url.clone());
        read_secret_file(
            "broker.url",
            &mut broker_url,
            &self.broker.url_file,
            problems,
        );
        if let Some(url) = broker_url {
            self.broker.url = url;
        }
        let mut database_url = Some(self.database.url.clone());
        read_secret_file(
            "database.url",
            &mut database_url,
            &self.database.url_file,
            problems,
        );
        if let Some(url) = database_url {
            self.database.url = url;
        }
        read_secret_file(
            "connectsafely.api_key",
            &mut self.connectsafely.api_key,
            &self.connectsafely.api_key_file,
            problems,
        );
        if let Some(events) = &mut self.sources.events
            && let Some(path) = &events.secrets_file
        {
            match std::fs::read_to_string(path) {
                Ok(text) => events.secrets.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(Secret::new),
                ),
                Err(e) => problems.push(format!(
                    "sources.events.secrets_file {}: {e}",
                    path.display()
                )),
            }
        }
        if let Some(hubspot) = &mut self.sources.hubspot {
            read_secret_file(
                "sources.hubspot.client_secret",
                &mut hubspot.client_secret,
                &hubspot.client_secret_file,
                problems,
            );
        }
        if let Some(salesforce) = &mut self.sources.salesforce {
            read_secret_file(
                "sources.salesforce.token",
                &mut salesforce.token,
                &salesforce.token_file,
                problems,
            );
            if let Some(hmac) = &mut salesforce.callout.hmac {
                read_secret_file(
                    "sources.salesforce.callout.hmac.secret",
                    &mut hmac.secret,
                    &hmac.secret_file,
                    problems,
                );
            }
        }
        if let Some(hubspot) = &mut self.crm.hubspot {
            read_secret_file(
                "crm.hubspot.access_token",
                &mut hubspot.access_token,
                &hubspot.access_token_file,
                problems,
            );
        }
        if let Some(salesforce) = &mut self.crm.salesforce {
            read_secret_file(
                "crm.salesforce.client_secret",
                &mut salesforce.client_secret,
                &salesforce.client_secret_file,
                problems,
            );
        }
        if let Some(callback) = &mut self.writeback.callback {
            read_secret_file(
                "writeback.callback.url",
                &mut callback.url,
                &callback.url_file,
                problems,
            );
            read_secret_file(
                "writeback.callback.secret",
                &mut callback.secret,
                &callback.secret_file,
                problems,
            );
        }
    }

    fn check(&self, problems: &mut Vec<String>) {
        if self.broker.prefix.is_empty()
            || !self
                .broker
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push("broker.prefix must be non-empty and use only A-Z a-z 0-9 - _ .".into());
        }
        if self
            .server
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            problems
                .push("server.admin_token is empty: leave it out to disable the admin API".into());
        }
        if self.broker.prefetch == 0 {
            problems.push("broker.prefetch must be at least 1".into());
        }
        if self.broker.publish_concurrency == 0 {
            problems.push("broker.publish_concurrency must be at least 1".into());
        }
        if self.broker.connect_concurrency == 0 || self.broker.writeback_concurrency == 0 {
            problems.push("broker.*_concurrency must be at least 1".into());
        }
        if !self.broker.url.expose().starts_with("amqp://")
            && !self.broker.url.expose().starts_with("amqps://")
        {
            problems.push("broker.url must be an amqp:// or amqps:// URL".into());
        }
        if !self.database.url.expose().starts_with("postgres://")
            && !self.database.url.expose().starts_with("postgresql://")
        {
            problems.push("database.url must be a postgres:// URL".into());
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".into());
        }
        if url::Url::parse(&self.connectsafely.base_url).is_err() {
            problems.push(format!(
                "connectsafely.base_url is not a URL: {}",
                self.connectsafely.base_url
            ));
        }
        match &self.connectsafely.api_key {
            None => problems.push(
                "connectsafely.api_key is missing (inline, LEADLINK_CONNECTSAFELY__API_KEY or api_key_file)"
                    .into(),
            ),
            Some(key) if key.expose().trim().is_empty() => {
                problems.push("connectsafely.api_key is empty".into())
            }
            Some(_) => {}
        }
        self.connectsafely.rate_limits.check(problems);
        if self.connectsafely.already_connected_text.trim().is_empty() {
            problems.push("connectsafely.already_connected_text must not be empty".into());
        }
        self.check_durations(problems);
        // After the lease is renewed at the send, a connect and a relationship call may follow.
        // Checked arithmetic: an absurd timeout is reported above, and must not panic here.
        if let Some(minimum) = self
            .connectsafely
            .timeout
            .checked_mul(2)
            .and_then(|d| d.checked_add(Duration::from_secs(1)))
            && self.worker.lease <= minimum
        {
            problems.push(format!(
                "worker.lease ({}) must be longer than twice connectsafely.timeout ({}) plus a second, or a slow call could be sent twice",
                humantime::format_duration(self.worker.lease),
                humantime::format_duration(self.connectsafely.timeout)
            ));
        }
        match &self.sources.events {
            Some(events) if events.secrets.is_empty() => {
                problems.push("sources.events.secrets needs at least one whsec_ secret".into())
            }
            Some(events) => {
                for (i, secret) in events.secrets.iter().enumerate() {
                    if let Err(e) = standard_webhooks::Signer::new(secret.expose()) {
                        problems.push(format!("sources.events.secrets[{i}]: {e}"));
                    }
                }
            }
            None => {}
        }
        if let Some(callback) = &self.writeback.callback {
            match &callback.url {
                None => problems.push("writeback.callback.url is missing".into()),
                Some(url) => match url::Url::parse(url.expose()) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => problems.push("writeback.callback.url must be an http(s) URL".into()),
                },
            }
            match &callback.secret {
                None => problems.push("writeback.callback.secret is missing".into()),
                Some(secret) => {
                    if let Err(e) = standard_webhooks::Signer::new(secret.expose()) {
                        problems.push(format!("writeback.callback.secret: {e}"));
                    }
                }
            }
        }
        self.check_crms(problems);
        self.accounts.check(problems);
        if let Some(template) = &self.message.template
            && let Err(e) = MessageTemplate::new(template)
        {
            problems.push(format!("message.template: {e}"));
        }
        for (name, retry) in [
            ("retry", self.retry.clone()),
            ("writeback.retry", self.writeback.retry.as_retry()),
        ] {
            if retry.max_attempts == 0 {
                problems.push(format!("{name}.max_attempts must be at least 1"));
            }
            if !(0.0..=1.0).contains(&retry.jitter) {
                problems.push(format!("{name}.jitter must be between 0.0 and 1.0"));
            }
            if retry.base_delay > retry.max_delay {
                problems.push(format!("{name}.base_delay must not exceed max_delay"));
            }
        }
        if self.writeback.retry.give_up_after.is_zero() {
            problems.push("writeback.retry.give_up_after must be longer than zero".into());
        }
    }

    fn check_durations(&self, problems: &mut Vec<String>) {
        let mut durations = vec![
            ("broker.reconnect_min", self.broker.reconnect_min),
            ("broker.reconnect_max", self.broker.reconnect_max),
            ("broker.publish_timeout", self.broker.publish_timeout),
            ("database.acquire_timeout", self.database.acquire_timeout),
            ("connectsafely.timeout", self.connectsafely.timeout),
            (
                "connectsafely.key_probe_interval",
                self.connectsafely.key_probe_interval,
            ),
            ("crm.probe_interval", self.crm.probe_interval),
            ("retry.base_delay", self.retry.base_delay),
            ("retry.max_delay", self.retry.max_delay),
            (
                "writeback.retry.base_delay",
                self.writeback.retry.base_delay,
            ),
            ("writeback.retry.max_delay", self.writeback.retry.max_delay),
            ("worker.lease", self.worker.lease),
            ("worker.relay_interval", self.worker.relay_interval),
            ("worker.relay_grace", self.worker.relay_grace),
            ("worker.shutdown_timeout", self.worker.shutdown_timeout),
        ];
        if let Some(callback) = &self.writeback.callback {
            durations.push(("writeback.callback.timeout", callback.timeout));
        }
        if let Some(hubspot) = &self.crm.hubspot {
            durations.push(("crm.hubspot.timeout", hubspot.timeout));
        }
        if let Some(salesforce) = &self.crm.salesforce {
            durations.push(("crm.salesforce.timeout", salesforce.timeout));
        }
        for (key, duration) in durations {
            if duration > MAX_DURATION {
                problems.push(format!(
                    "{key} ({}) must be at most 30 days",
                    humantime::format_duration(duration)
                ));
            }
        }
    }

    /// Each CRM source writes back to its CRM and reads leads from it, so a source needs
    /// its `[crm.*]` section.
    fn check_crms(&self, problems: &mut Vec<String>) {
        if let Some(hubspot) = &self.sources.hubspot {
            hubspot.check(problems);
            if self.crm.hubspot.is_none() {
                problems.push(
                    "sources.hubspot needs [crm.hubspot] (access_token) to read contacts and write statuses back"
                        .into(),
                );
            }
        }
        if let Some(salesforce) = &self.sources.salesforce {
            salesforce.check(problems);
            if self.crm.salesforce.is_none() {
                problems.push(
                    "sources.salesforce needs [crm.salesforce] (my_domain_url, client_id, client_secret) to read records and write statuses back"
                        .into(),
                );
            }
        }
        if let Some(hubspot) = &self.crm.hubspot {
            hubspot.check(problems);
        }
        if let Some(salesforce) = &self.crm.salesforce {
            salesforce.check(problems);
        }
        if self.crm.probe_interval.is_zero() {
            problems.push("crm.probe_interval must be longer than zero".into());
        }
    }

    pub fn message_template(&self) -> Option<MessageTemplate> {
        self.message
            .template
            .as_deref()
            .and_then(|t| MessageTemplate::new(t).ok())
    }
}

fn describe(section: &str, error: &figment::Error) -> String {
    // figment reports the path relative to the extracted section, in no reliable order.
    let inner: Vec<&str> = error
        .path
        .iter()
        .map(String::as_str)
        .filter(|part| *part != section)
        .collect();
    if inner.is_empty() {
        format!("{section}: {}", error.kind)
    } else {
        format!("{section}.{}: {}", inner.join("."), error.kind)
    }
}

fn read_secret_file(
    name: &str,
    value: &mut Option<Secret>,
    file: &Option<PathBuf>,
    problems: &mut Vec<String>,
) {
    if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Ok(text) => *value = Some(Secret::new(text.trim())),
            Err(e) => problems.push(format!("{name}_file {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn minimal() -> String {
        format!(
            r#"
            [connectsafely]
            api_key = "k"
            [sources.events]
            secrets = ["{SECRET}"]
            "#
        )
    }

    #[test]
    fn defaults_fill_everything_not_given() {
        let config = Config::from_toml(&minimal()).unwrap();
        assert_eq!(config.server.body_limit, ByteSize::mib(1));
        assert_eq!(config.broker.prefix, "leadlink");
        assert_eq!(config.retry.max_attempts, 5);
        assert_eq!(config.message.overflow, Overflow::Invalid);
    }

    // Found by review while writing the config fuzz targets: `connectsafely.timeout =
    // "300000000000y"` made the lease check overflow `timeout * 2` and panic.
    #[test]
    fn absurd_durations_are_refused_without_panicking() {
        for (key, value) in [
            ("connectsafely.timeout", "300000000000y"),
            ("worker.lease", "1000000years"),
            ("retry.max_delay", "31days"),
        ] {
            let text = format!("{}\n{key} = \"{value}\"\n", minimal_dotted());
            let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
                panic!("accepted {key} = {value}");
            };
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(key) && p.ends_with("must be at most 30 days")),
                "{problems:?}"
            );
        }
        let text = format!("{}\nretry.max_delay = \"30days\"\n", minimal_dotted());
        assert!(Config::from_toml(&text).is_ok());
    }

    fn minimal_dotted() -> String {
        format!("connectsafely.api_key = \"k\"\nsources.events.secrets = [\"{SECRET}\"]")
    }

    #[test]
    fn every_problem_is_named_not_just_the_first() {
        let text = r#"
            [server]
            listen = "not an address"
            [broker]
            prefetch = 0
            [connectsafely]
            timeout = "soon"
            [sources.events]
            secrets = ["plain"]
            [retry]
            jitter = 3.0
            [bogus]
            x = 1
        "#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(text) else {
            panic!("accepted a broken file");
        };
        let all = problems.join("\n");
        for needle in ["server.listen", "connectsafely.timeout", "bogus"] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = r#"
            [broker]
            prefetch = 0
            [sources.events]
            secrets = ["plain"]
            [retry]
            jitter = 3.0
            [worker]
            lease = "5s"
        "#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(text) else {
            panic!("accepted a broken file");
        };
        let all = problems.join("\n");
        for needle in [
            "broker.prefetch",
            "api_key is missing",
            "sources.events.secrets[0]",
            "retry.jitter",
            "worker.lease",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn an_empty_admin_token_is_refused_rather_than_matching_anyone() {
        let text = format!("{}\n[server]\nadmin_token = \"  \"\n", minimal());
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
            panic!("accepted an empty admin token");
        };
        assert!(
            problems.join("\n").contains("server.admin_token"),
            "{problems:?}"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("leadlink-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, "from-file\n").unwrap();
        let text = format!(
            "{}\n[server]\nadmin_token_file = \"{}\"\n",
            minimal(),
            key.display()
        );
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.server.admin_token.unwrap().expose(), "from-file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let config = Config::from_toml(&minimal()).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
        assert!(!shown.contains("guest:guest"), "{shown}");
    }
}
