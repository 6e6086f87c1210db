//! `[crm]` and `[writeback]`: the CRMs read and written, the callback, and how writebacks
//! are retried.

use super::hubspot::HubSpotCrmConfig;
use super::salesforce::SalesforceCrmConfig;
use crate::retry::RetryConfig;
use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;

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
