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
    /// Well-formed but unusable: its job ends `invalid` with this reason. A profile that
    /// resolved keeps its identity (`profile_key`) when only the note is unusable, so that a
    /// job that already has the person answers for this event; otherwise the forms the
    /// source gave are kept for people reading the job.
    Invalid {
        reason: String,
        profile_key: Option<String>,
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
    let message = build_message(input.message, template, input.fields, overflow)
        .map(|m| m.map(|m| m.as_str().to_owned()));
    let identity = profile.and_then(|profile| {
        identity(&profile, profile_id.as_deref(), linkedin_url.as_deref())
            .ok_or(LeadError::MissingProfile)
    });
    match (identity, message) {
        (Ok(identity), Ok(message)) => Resolution::Usable(UsableLead {
            message,
            ..identity
        }),
        (Ok(identity), Err(e)) => Resolution::Invalid {
            reason: e.to_string(),
            profile_key: Some(identity.profile_key),
            profile_id: identity.profile_id,
            profile_urn: identity.profile_urn,
            message: None,
        },
        (Err(e), message) => Resolution::Invalid {
            reason: e.to_string(),
            profile_key: None,
            profile_id,
            profile_urn,
            message: message.ok().flatten(),
        },
    }
}

/// The identity and forms of a resolved profile (the note left out): the canonical slug
/// when one came, with the URN when the profile is one.
fn identity(
    profile: &ProfileRef,
    profile_id: Option<&str>,
    linkedin_url: Option<&str>,
) -> Option<UsableLead> {
    let slug = profile_id
        .map(ProfileRef::from_profile_id)
        .or_else(|| linkedin_url.map(ProfileRef::from_url))
        .and_then(Result::ok);
    let urn = match profile {
        ProfileRef::Urn(urn) => Some(urn.clone()),
        _ => None,
    };
    let (profile_key, profile_id) = match (&slug, &urn) {
        (Some(slug), _) => (
            slug.canonical().to_owned(),
            Some(slug.canonical().to_owned()),
        ),
        (None, Some(urn)) => (urn.clone(), None),
        (None, None) => return None,
    };
    Some(UsableLead {
        profile_key,
        profile_id,
        profile_urn: urn,
        message: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str, message: &str) -> Resolution {
        let fields = LeadFields::default();
        let input = LeadInput {
            linkedin_url: Some(url),
            profile_id: None,
            profile_urn: None,
            message: Some(message),
            fields: &fields,
        };
        resolve_lead(&input, None, Overflow::Invalid)
    }

    #[test]
    fn a_lead_with_an_unusable_note_keeps_its_identity_so_its_job_can_be_found() {
        let url = "https://www.linkedin.com/in/Jane-Doe/";
        let Resolution::Usable(usable) = resolve(url, "Hi") else {
            panic!("a good lead is usable");
        };
        assert_eq!(usable.profile_key, "jane-doe");
        let Resolution::Invalid {
            reason,
            profile_key,
            profile_id,
            ..
        } = resolve(url, &"x".repeat(400))
        else {
            panic!("a 400-character note is refused");
        };
        assert!(reason.contains("300"), "{reason}");
        assert_eq!(profile_key.as_deref(), Some("jane-doe"));
        assert_eq!(profile_id.as_deref(), Some("jane-doe"));
        let Resolution::Invalid { profile_key, .. } =
            resolve("https://www.linkedin.com/company/acme", "Hi")
        else {
            panic!("a company page is refused");
        };
        assert_eq!(profile_key, None, "an unusable profile claims no identity");
    }
}
