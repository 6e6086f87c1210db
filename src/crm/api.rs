//! What one call to a CRM's REST API came to; shared by the HubSpot and Salesforce clients,
//! and read by the connect stage (enrichment) and the writeback stage.

use std::collections::BTreeMap;
use std::time::Duration;

/// A CRM record's fields as the API returned them (fields the API left null are absent).
pub type RecordFields = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome<T> {
    Done(T),
    /// Worth trying again later: throttled, 5xx, unreachable. `after` is what the CRM asked
    /// for (`Retry-After`), if anything.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// The record is gone (deleted, merged, converted): retrying cannot help.
    Gone {
        reason: String,
    },
    /// Refused for another permanent reason (unknown property, validation error).
    Refused {
        reason: String,
    },
    /// Our credentials do not work: a configuration problem for a person to fix. Callers
    /// pause this CRM's calls instead of failing jobs.
    AuthFailed {
        reason: String,
    },
}

impl<T> CallOutcome<T> {
    /// Transforms what a successful call returned; failures pass through unchanged.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> CallOutcome<U> {
        match self {
            CallOutcome::Done(value) => CallOutcome::Done(f(value)),
            CallOutcome::Retry { after, error } => CallOutcome::Retry { after, error },
            CallOutcome::Gone { reason } => CallOutcome::Gone { reason },
            CallOutcome::Refused { reason } => CallOutcome::Refused { reason },
            CallOutcome::AuthFailed { reason } => CallOutcome::AuthFailed { reason },
        }
    }
}
