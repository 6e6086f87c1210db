//! Everything the simulator remembers, behind the one mutex in [`super::Sim`].

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::SimOptions;
use super::invitations::Book;
use super::limits::{Bucket, Throttled, Windows};
use super::profiles::Directory;
use super::quota::AccountQuota;

/// ISO 8601 with milliseconds and `Z`, as the vendor writes instants.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The vendor's error body.
pub fn error_body(message: impl Into<String>) -> Value {
    json!({ "error": message.into(), "success": false })
}

/// Behaviour that tests change at run time through `PUT /_sim/config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub api_keys: Vec<String>,
    /// Delay before answering `/connect`, after its effect is recorded.
    pub latency_ms: u64,
    /// Fraction of `/connect`, withdrawals and sent-list reads answered 500 before doing
    /// anything.
    pub error_rate: f64,
    /// Fraction of the same calls that hang for `timeout_ms`, then answer 504 doing nothing.
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    /// Fraction of `/connect` (and withdrawals) that do their work, then answer 500.
    pub send_then_fail_rate: f64,
    pub per_minute_limits: bool,
    pub key_per_minute: u32,
    pub account_writes_per_minute: u32,
    pub account_reads_per_minute: u32,
    pub account_endpoints_per_minute: u32,
    /// How long after a withdrawal LinkedIn refuses to invite the person again.
    #[serde(with = "humantime_serde")]
    pub reinvite_block: Duration,
    /// The chance that a new invitation is accepted, `accept_delay` after it is sent.
    pub accept_probability: f64,
    #[serde(with = "humantime_serde")]
    pub accept_delay: Duration,
}

impl Config {
    fn new(options: &SimOptions) -> Self {
        Config {
            api_keys: options.api_keys.clone(),
            latency_ms: 0,
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_ms: 60_000,
            send_then_fail_rate: 0.0,
            per_minute_limits: options.per_minute_limits,
            key_per_minute: 60,
            account_writes_per_minute: 15,
            account_reads_per_minute: 30,
            account_endpoints_per_minute: 10,
            reinvite_block: Duration::from_secs(21 * 24 * 60 * 60),
            accept_probability: 0.0,
            accept_delay: Duration::ZERO,
        }
    }

    fn per_minute(&self, bucket: &Bucket) -> u32 {
        match bucket {
            Bucket::Key(_) => self.key_per_minute,
            Bucket::AccountWrites(_) => self.account_writes_per_minute,
            Bucket::AccountReads(_) => self.account_reads_per_minute,
            Bucket::AccountEndpoints(_) => self.account_endpoints_per_minute,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub quota: AccountQuota,
    pub status: String,
    pub enabled: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// The API calls counted in `/_sim/stats`.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Connect,
    Relationship,
    Quota,
    AccountStatus,
    Accounts,
    Withdraw,
    SentInvitations,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Connect => "connect",
            Endpoint::Relationship => "relationship",
            Endpoint::Quota => "quota",
            Endpoint::AccountStatus => "accountStatus",
            Endpoint::Accounts => "accounts",
            Endpoint::Withdraw => "withdraw",
            Endpoint::SentInvitations => "sentInvitations",
        }
    }
}

/// Which kind of 429 a reply is, so the two can be told apart in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The weekly limit: the account is (now) on hold.
    Hold,
    /// A per-minute API limit, with `Retry-After`.
    PerMinute,
}

/// An API answer before it becomes an HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
    pub limited: Option<Limited>,
}

impl Reply {
    pub fn new(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body,
            retry_after: None,
            limited: None,
        }
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Reply::new(status, error_body(message))
    }

    fn throttled(t: Throttled) -> Self {
        let body = json!({
            "error": format!(
                "Rate limit exceeded: {}. Retry after {} seconds.",
                t.bucket.describe(t.limit),
                t.retry_after
            ),
            "success": false,
        });
        Reply {
            status: StatusCode::TOO_MANY_REQUESTS,
            body,
            retry_after: Some(t.retry_after),
            limited: Some(Limited::PerMinute),
        }
    }
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitedCounts {
    hold: u64,
    per_minute: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStats {
    endpoints: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    rate_limited: LimitedCounts,
}

/// Counts of API requests, by endpoint and status code, overall and per account.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    requests: u64,
    endpoints: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    rate_limited: LimitedCounts,
    accounts: BTreeMap<String, AccountStats>,
}

impl LimitedCounts {
    fn count(&mut self, limited: Option<Limited>) {
        match limited {
            Some(Limited::Hold) => self.hold += 1,
            Some(Limited::PerMinute) => self.per_minute += 1,
            None => {}
        }
    }
}

impl Stats {
    pub fn record(&mut self, endpoint: Endpoint, account: Option<&str>, reply: &Reply) {
        let code = reply.status.as_u16();
        self.requests += 1;
        *self
            .endpoints
            .entry(endpoint.name())
            .or_default()
            .entry(code)
            .or_default() += 1;
        self.rate_limited.count(reply.limited);
        if let Some(account) = account {
            let stats = self.accounts.entry(account.to_owned()).or_default();
            *stats
                .endpoints
                .entry(endpoint.name())
                .or_default()
                .entry(code)
                .or_default() += 1;
            stats.rate_limited.count(reply.limited);
        }
    }
}

pub struct State {
    pub options: SimOptions,
    pub config: Config,
    pub accounts: BTreeMap<String, Account>,
    pub directory: Directory,
    pub invitations: Book,
    pub windows: Windows,
    pub stats: Stats,
}

impl State {
    pub fn new(options: SimOptions) -> Self {
        let mut state = State {
            config: Config::new(&options),
            accounts: BTreeMap::new(),
            directory: Directory::default(),
            invitations: Book::default(),
            windows: Windows::default(),
            stats: Stats::default(),
            options,
        };
        // The default account is listed by `/accounts` before anyone names it.
        let default = state.options.default_account_id.clone();
        state.account(&default, Utc::now());
        state
    }

    pub fn default_account(&self) -> String {
        self.options.default_account_id.clone()
    }

    /// The account, brought to `now`; any id names an account, created on first use.
    pub fn account(&mut self, id: &str, now: DateTime<Utc>) -> &mut Account {
        let options = &self.options;
        let account = self
            .accounts
            .entry(id.to_owned())
            .or_insert_with(|| Account {
                quota: AccountQuota::new(
                    options.default_limit,
                    TimeDelta::from_std(options.hold).unwrap_or(TimeDelta::MAX),
                    now,
                ),
                status: "AVAILABLE".to_owned(),
                enabled: true,
                first_name: None,
                last_name: None,
            });
        account.quota.roll(now);
        account
    }

    /// API key check and per-minute limits, shared by every API call. The request is counted
    /// against the key and, when given, the account's bucket.
    pub fn gate(
        &mut self,
        headers: &HeaderMap,
        account_bucket: Option<Bucket>,
        now: DateTime<Utc>,
    ) -> Result<(), Reply> {
        let key = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| self.config.api_keys.iter().any(|key| key == token));
        let Some(key) = key else {
            // The vendor's 401 body has no `success` field.
            return Err(Reply::new(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "Unauthorized" }),
            ));
        };
        if !self.config.per_minute_limits {
            return Ok(());
        }
        let buckets: Vec<(Bucket, u32)> = std::iter::once(Bucket::Key(key.to_owned()))
            .chain(account_bucket)
            .map(|bucket| {
                let limit = self.config.per_minute(&bucket);
                (bucket, limit)
            })
            .collect();
        self.windows.hit(&buckets, now).map_err(Reply::throttled)
    }
}
