//! Turning what a source said about a lead into what a job stores: its identity, the
//! forms of its profile reference, its note, or why it cannot be used.

use super::{
    LeadError, LeadFields, MessageTemplate, Overflow, ProfileRef, build_message, non_blank,
    resolve_profile,
};

/// What a source or CRM said about a lead, before any checking.
#[derive(Debug, Clone, Copy)]
pub struct LeadInput<'a> {
    pub linkedin_url: Option<&'a str>,
    pub profile_id: Option<&'a str>,
    pub profile_urn: Option<&'a str>,
    /// The source's own note: `Some("")` means "no note", `None` renders the template.
    pub message: Option<&'a str>,
    pub fields: &'a LeadFields,
}

/// What a job knows of its lead: usable, unusable with the reason, or still to be read from
/// the CRM (the event named only the record).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Usable(UsableLead),
    /// Well-formed but unusable: its job ends `invalid` with this reason. It claims no
    /// identity, so it never collides with another job of the person; the forms the source
    /// gave are kept for people reading the job.
    Invalid {
        reason: String,
        profile_id: Option<String>,
        profile_urn: Option<String>,
        message: Option<String>,
    },
    ReadFromCrm,
}

/// A lead a job can send to: its identity, the forms of its profile, its note.
#[derive(Debug, Clone, PartialEq)]
pub struct UsableLead {
    /// The identity the duplicate rules use: the canonical slug, else the URN.
    pub profile_key: String,
    pub profile_id: Option<String>,
    pub profile_urn: Option<String>,
    pub message: Option<String>,
}

impl Resolution {
    /// The identity the duplicate rules use, if the lead claims one.
    pub fn profile_key(&self) -> Option<&str> {
        match self {
            Resolution::Usable(lead) => Some(&lead.profile_key),
            Resolution::Invalid { .. } | Resolution::ReadFromCrm => None,
        }
    }
}

/// Resolves the profile and the note. Both forms are kept when both came: the slug is the
/// identity, the URN is what is sent, and either finds the lead's job later.
pub fn resolve_lead(
    input: &LeadInput<'_>,
    template: Option<&MessageTemplate>,
    overflow: Overflow,
) -> Resolution {
    let present = |v: Option<&str>| non_blank(v).map(str::to_owned);
    let (linkedin_url, profile_id, profile_urn) = (
        present(input.linkedin_url),
        present(input.profile_id),
        present(input.profile_urn),
    );
    let profile = resolve_profile(
        linkedin_url.as_deref(),
        profile_id.as_deref(),
        profile_urn.as_deref(),
    );
    let message = build_message(input.message, template, input.fields, overflow);
    let (profile, message) = match (profile, message) {
        (Ok(profile), Ok(message)) => (profile, message.map(|m| m.as_str().to_owned())),
        (Err(e), message) => {
            return Resolution::Invalid {
                reason: e.to_string(),
                profile_id,
                profile_urn,
                message: message.ok().flatten().map(|m| m.as_str().to_owned()),
            };
        }
        (Ok(_), Err(e)) => {
            return Resolution::Invalid {
                reason: e.to_string(),
                profile_id,
                profile_urn,
                message: None,
            };
        }
    };
    let slug = profile_id
        .as_deref()
        .map(ProfileRef::from_profile_id)
        .or_else(|| linkedin_url.as_deref().map(ProfileRef::from_url))
        .and_then(Result::ok);
    let urn = match &profile {
        ProfileRef::Urn(urn) => Some(urn.clone()),
        _ => None,
    };
    let lead = match (slug, urn) {
        (Some(slug), urn) => UsableLead {
            profile_key: slug.canonical().to_owned(),
            profile_id: Some(slug.canonical().to_owned()),
            profile_urn: urn,
            message,
        },
        (None, Some(urn)) => UsableLead {
            profile_key: urn.clone(),
            profile_id: None,
            profile_urn: Some(urn),
            message,
        },
        // A profile that resolved is a slug or a URN.
        (None, None) => {
            return Resolution::Invalid {
                reason: LeadError::MissingProfile.to_string(),
                profile_id,
                profile_urn,
                message,
            };
        }
    };
    Resolution::Usable(lead)
}
