//! Where a job's status changes are written back, by the names stored on jobs and
//! writeback rows.

use std::fmt;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum WritebackTarget {
    /// The signed callback to the user's own backend.
    Callback,
    HubSpot,
    Salesforce,
}

impl WritebackTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            WritebackTarget::Callback => "callback",
            WritebackTarget::HubSpot => "hubspot",
            WritebackTarget::Salesforce => "salesforce",
        }
    }

    /// Whether it is a CRM, whose refused credentials pause the jobs that need it.
    pub fn is_crm(self) -> bool {
        self != WritebackTarget::Callback
    }
}

impl fmt::Display for WritebackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
