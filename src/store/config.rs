//! `[database]`: where the store is (a SQLite file by default, or PostgreSQL) and how many
//! connections to hold.

use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;

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
            url: Secret::new("sqlite://leadlink.db"),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl DatabaseConfig {
    /// A `sqlite:` URL: the embedded store, one file, one process.
    pub fn is_sqlite(&self) -> bool {
        self.url.expose().starts_with("sqlite:")
    }
}
