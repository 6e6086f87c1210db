//! Where a job came from: the ingest endpoint that accepted it, by the names stored on jobs,
//! records and idempotency keys.

use super::WritebackTarget;
use std::fmt;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Source {
    /// The user's own backend's lead events.
    Events,
    HubSpot,
    Salesforce,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::HubSpot => "hubspot",
            Source::Salesforce => "salesforce",
        }
    }

    /// The CRM its records live in, which can be read and written back to; none for events.
    pub fn crm(self) -> Option<WritebackTarget> {
        match self {
            Source::Events => None,
            Source::HubSpot => Some(WritebackTarget::HubSpot),
            Source::Salesforce => Some(WritebackTarget::Salesforce),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
