//! `[connectsafely]`: where the API is, the key, and its limits.

use super::limits::RateLimits;
use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;

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
