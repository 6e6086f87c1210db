//! Turning what a source said about a lead into what a job stores: its identity, the
//! forms of its profile reference, its note, or why it cannot be used.

use super::{LeadFields, MessageTemplate, Overflow, ProfileRef, build_message, resolve_profile};

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

/// A lead's identity and note as a job stores them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedLead {
    /// The identity the duplicate rules use: the canonical slug, else the URN.
    pub profile_key: Option<String>,
    pub profile_id: Option<String>,
    pub profile_urn: Option<String>,
    pub message: Option<String>,
    /// A well-formed lead we cannot use: its job ends `invalid` with this reason.
    pub invalid_reason: Option<String>,
}

/// Resolves the profile and the note. Both forms are kept when both came: the slug is the
/// identity, the URN is what is sent, and either finds the lead's job later.
pub fn resolve_lead(
    input: &LeadInput<'_>,
    template: Option<&MessageTemplate>,
    overflow: Overflow,
) -> ResolvedLead {
    let present = |v: Option<&str>| v.filter(|s| !s.trim().is_empty()).map(str::to_owned);
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
    let invalid_reason = match (&profile, &message) {
        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let slug = profile_id
        .as_deref()
        .map(ProfileRef::from_profile_id)
        .or_else(|| linkedin_url.as_deref().map(ProfileRef::from_url))
        .and_then(Result::ok);
    let urn = match &profile {
        Ok(ProfileRef::Urn(urn)) => Some(urn.clone()),
        _ => None,
    };
    let (profile_key, profile_id, profile_urn) = match (&profile, slug) {
        (Err(_), _) => (None, profile_id, profile_urn),
        (Ok(_), Some(slug)) => (
            Some(slug.canonical().to_owned()),
            Some(slug.canonical().to_owned()),
            urn,
        ),
        (Ok(_), None) => (urn.clone(), None, urn),
    };
    ResolvedLead {
        profile_key,
        profile_id,
        profile_urn,
        message: message.ok().flatten().map(|m| m.as_str().to_owned()),
        invalid_reason,
    }
}
