//! What one call to a CRM's REST API came to; shared by the HubSpot and Salesforce clients,
//! and read by the connect stage (enrichment) and the writeback stage.

use std::collections::BTreeMap;
use std::time::Duration;

/// A CRM record's fields as the API returned them (fields the API left null are absent).
pub type RecordFields = BTreeMap<String, String>;

/// Why a call did not do what was asked; a call's result is `Result<T, CallFailure>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallFailure {
    /// Worth trying again later: throttled, 5xx, unreachable. `after` is what the CRM asked
    /// for (`Retry-After`), if anything.
    #[error("{error}")]
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// The record is gone (deleted, merged, converted): retrying cannot help.
    #[error("{reason}")]
    Gone { reason: String },
    /// Refused for another permanent reason (unknown property, validation error).
    #[error("{reason}")]
    Refused { reason: String },
    /// Our credentials do not work: a configuration problem for a person to fix. Callers
    /// pause this CRM's calls instead of failing jobs.
    #[error("{reason}")]
    AuthFailed { reason: String },
}

impl CallFailure {
    /// The same failure, its text prefixed with where it happened.
    pub fn context(mut self, what: &str) -> CallFailure {
        let (CallFailure::Retry { error: text, .. }
        | CallFailure::Gone { reason: text }
        | CallFailure::Refused { reason: text }
        | CallFailure::AuthFailed { reason: text }) = &mut self;
        *text = format!("{what}: {text}");
        self
    }
}

/// Timeouts and connection failures are worth retrying; a request we could not even build
/// is not. The text names the error and its causes ("timed out" hides below "error sending
/// request"), without the URL, which may carry a token.
impl From<reqwest::Error> for CallFailure {
    fn from(error: reqwest::Error) -> CallFailure {
        let refused = error.is_builder();
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        if refused {
            CallFailure::Refused { reason: text }
        } else {
            CallFailure::Retry {
                after: None,
                error: text,
            }
        }
    }
}
