//! The rules that span keys or sections, run on what could be read; each problem starts
//! with the key it is about.

use super::Config;
use crate::signature::standard_webhooks;
use std::time::Duration;

/// Longer is a typo (`30d` for `30s`), and durations near the type's limit overflow what is
/// computed from them (twice a timeout, now plus a delay), which would panic at run time.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Config {
    /// Every rule, section by section, in the order a file lists them.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        self.check_plumbing(problems);
        self.check_connectsafely(problems);
        self.check_signing(problems);
        self.check_crms(problems);
        self.accounts.check(problems);
        self.check_retries(problems);
        self.metrics.check(problems);
        self.telemetry.check(problems);
    }

    /// The admin token, the broker and the database.
    fn check_plumbing(&self, problems: &mut Vec<String>) {
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
        let database = self.database.url.expose();
        let postgres = database.starts_with("postgres://") || database.starts_with("postgresql://");
        if !postgres && !self.database.is_sqlite() {
            problems.push("database.url must be a sqlite: or postgres:// URL".into());
        }
        if crate::store::db::sqlite::is_memory(&self.database) {
            // Each pooled connection would open a database of its own, and every job would
            // be gone when the process stops.
            problems.push(
                "database.url: an in-memory SQLite store loses every job when the process stops; use a file such as sqlite://leadlink.db".into(),
            );
        }
        match &self.broker.url {
            Some(url) if !url.expose().starts_with("amqp://") && !url.expose().starts_with("amqps://") => {
                problems.push("broker.url must be an amqp:// or amqps:// URL".into());
            }
            Some(_) if self.database.is_sqlite() => problems.push(
                "a sqlite: store serves one process: remove broker.url, or use a postgres:// store to scale out with RabbitMQ".into(),
            ),
            None if postgres => problems.push(
                "a postgres:// store needs broker.url (RabbitMQ); for one process use a sqlite: store".into(),
            ),
            _ => {}
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".into());
        }
    }

    /// The API, the durations, and the lease that must outlast its calls.
    fn check_connectsafely(&self, problems: &mut Vec<String>) {
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
    }

    /// The Standard Webhooks secrets of the events source and the callback.
    fn check_signing(&self, problems: &mut Vec<String>) {
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
    }

    fn check_retries(&self, problems: &mut Vec<String>) {
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
}
