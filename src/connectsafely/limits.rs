//! ConnectSafely's per-minute API limits, kept by every worker together: each call is
//! counted in PostgreSQL against its scopes (the key, and the account's writes, reads or
//! `/account` calls) over a sliding minute, the way the API counts them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

pub const WINDOW: TimeDelta = TimeDelta::seconds(60);

/// The reference's limits; lower them to leave room for other tools on the same key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub key_per_minute: u32,
    pub account_writes_per_minute: u32,
    pub account_reads_per_minute: u32,
    pub account_endpoints_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            key_per_minute: 60,
            account_writes_per_minute: 15,
            account_reads_per_minute: 30,
            account_endpoints_per_minute: 10,
        }
    }
}

impl RateLimits {
    pub fn check(&self, problems: &mut Vec<String>) {
        for (name, value) in [
            ("key_per_minute", self.key_per_minute),
            ("account_writes_per_minute", self.account_writes_per_minute),
            ("account_reads_per_minute", self.account_reads_per_minute),
            (
                "account_endpoints_per_minute",
                self.account_endpoints_per_minute,
            ),
        ] {
            if value == 0 {
                problems.push(format!(
                    "connectsafely.rate_limits.{name} must be at least 1"
                ));
            }
        }
    }

    /// The scopes one call counts against, with their limits.
    pub fn scopes(&self, call: ApiCall, account_id: &str) -> [(String, u32); 2] {
        let key = ("key".to_string(), self.key_per_minute);
        let account = match call {
            ApiCall::Connect => (
                format!("writes:{account_id}"),
                self.account_writes_per_minute,
            ),
            ApiCall::Relationship => (format!("reads:{account_id}"), self.account_reads_per_minute),
            ApiCall::AccountEndpoint => (
                format!("account:{account_id}"),
                self.account_endpoints_per_minute,
            ),
        };
        [key, account]
    }
}

/// The kinds of calls the workers make, by the limit they count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCall {
    Connect,
    Relationship,
    AccountEndpoint,
}

/// When `wanted` more calls fit in a scope that saw `recent` calls (any order) with room for
/// `limit` a minute: `None` now, else the instant the oldest calls in the way leave the window.
pub fn wait_for_room(
    recent: &[DateTime<Utc>],
    wanted: usize,
    limit: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut in_window: Vec<DateTime<Utc>> = recent
        .iter()
        .copied()
        .filter(|t| *t > now - WINDOW)
        .collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let excess = (in_window.len() + wanted).checked_sub(limit)?;
    if excess == 0 {
        return None;
    }
    if wanted > limit {
        // Never fits; wait a whole window and let the caller try again.
        return Some(now + WINDOW);
    }
    in_window.sort();
    in_window
        .get(excess - 1)
        .map(|t| *t + WINDOW + TimeDelta::milliseconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn calls_fit_until_the_limit_then_wait_for_the_oldest_to_leave() {
        let recent = [t(0), t(10), t(20)];
        assert_eq!(wait_for_room(&recent, 1, 4, t(30)), None);
        assert_eq!(
            wait_for_room(&recent, 1, 3, t(30)),
            Some(t(60) + TimeDelta::milliseconds(1))
        );
        assert_eq!(
            wait_for_room(&recent, 2, 3, t(30)),
            Some(t(70) + TimeDelta::milliseconds(1))
        );
        // Calls older than a minute no longer count.
        assert_eq!(wait_for_room(&recent, 1, 3, t(61)), None);
    }

    #[test]
    fn every_call_counts_against_the_key_and_its_account_scope() {
        let limits = RateLimits::default();
        let [key, account] = limits.scopes(ApiCall::Connect, "acc_1");
        assert_eq!(key, ("key".to_string(), 60));
        assert_eq!(account, ("writes:acc_1".to_string(), 15));
        let [_, reads] = limits.scopes(ApiCall::Relationship, "acc_1");
        assert_eq!(reads.1, 30);
    }
}
