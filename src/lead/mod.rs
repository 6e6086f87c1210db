//! Lead domain types, parsed once at the edge so that the rest of the service can only hold
//! values the ConnectSafely API will accept: a [`ProfileRef`] and an optional [`Message`].
//!
//! Every [`LeadError`] is user-facing: it becomes the job's `error`, written back to the CRM,
//! so its text says what was wrong in words a RevOps user can act on.

mod message;
mod profile;
mod resolution;

pub use message::{
    LeadFields, MAX_MESSAGE_CHARS, Message, MessageConfig, MessageTemplate, Overflow, build_message,
};
pub use profile::{ProfileRef, resolve_profile};
pub use resolution::{LeadInput, Resolution, UsableLead, resolve_lead};

/// How much of the offending input an error repeats; enough to recognise it in a CRM field.
const MAX_ECHO_CHARS: usize = 120;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    #[error(
        "no LinkedIn profile given: the lead needs a LinkedIn URL, a profile id or a profile URN"
    )]
    MissingProfile,
    #[error("{what}, not a person's profile: {input}")]
    NotAProfile { what: &'static str, input: String },
    #[error("not a usable LinkedIn profile URL ({reason}): {input}")]
    BadUrl { reason: String, input: String },
    #[error("not a usable LinkedIn profile id ({reason}): {input}")]
    BadProfileId { reason: String, input: String },
    #[error("not a usable LinkedIn profile URN ({reason}): {input}")]
    BadUrn { reason: String, input: String },
    #[error("invalid message template: {0}")]
    BadTemplate(String),
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the message is {chars} characters long; LinkedIn allows at most {MAX_MESSAGE_CHARS}")]
    MessageTooLong { chars: usize },
}

/// CRMs and forms send `""` (or spaces) for an empty field: such a value counts as absent.
pub fn non_blank(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

/// The input as an error repeats it: trimmed and cut short so a CRM field stays readable.
fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", &input[..cut]),
        None => input.to_owned(),
    }
}
