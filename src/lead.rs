//! Lead domain types, parsed once at the edge so that the rest of the service can only hold
//! values the ConnectSafely API will accept: a [`ProfileRef`] and an optional [`Message`].
//!
//! Every [`LeadError`] is user-facing: it becomes the job's `error`, written back to the CRM,
//! so its text says what was wrong in words a RevOps user can act on.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use url::Url;

/// LinkedIn's limit for a connection note, counted in Unicode scalar values.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Real vanity names are at most 100 characters; the cap keeps absurd input out of the
/// database's unique index (PostgreSQL rejects index entries over ~2.7 kB).
const MAX_ID_CHARS: usize = 200;

/// How much of the offending input an error repeats; enough to recognise it in a CRM field.
const MAX_ECHO_CHARS: usize = 120;

const FSD_PROFILE_PREFIX: &str = "urn:li:fsd_profile:";

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

/// Who to invite. Serialised as its canonical string, which is also the lead's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ProfileRef {
    /// The decoded, lower-cased vanity slug (`john-doe-123`): ConnectSafely's `profileId`.
    Vanity(String),
    /// The full `urn:li:fsd_profile:<id>`: ConnectSafely's `profileUrn`.
    Urn(String),
}

impl ProfileRef {
    /// The slug or URN: the lead's identity key.
    pub fn canonical(&self) -> &str {
        match self {
            ProfileRef::Vanity(slug) => slug,
            ProfileRef::Urn(urn) => urn,
        }
    }

    /// A profile URL as people paste it: any scheme-less, `www.`, country or mobile host form,
    /// with query, fragment and trailing path segments ignored.
    pub fn from_url(input: &str) -> Result<ProfileRef, LeadError> {
        let input = input.trim();
        let bad = |reason: &str| LeadError::BadUrl {
            reason: reason.to_owned(),
            input: echo(input),
        };
        let not_profile = |what| LeadError::NotAProfile {
            what,
            input: echo(input),
        };

        let scheme = input.split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        let with_scheme = if let Some(scheme) = scheme {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(bad("only http and https links are profile URLs"));
            }
            input.to_owned()
        } else {
            format!("https://{}", input.trim_start_matches('/'))
        };
        let url = Url::parse(&with_scheme).map_err(|_| bad("it cannot be read as a URL"))?;
        let host = url.host_str().unwrap_or("").trim_end_matches('.');

        if host == "lnkd.in" || host.ends_with(".lnkd.in") {
            return Err(bad(
                "a lnkd.in short link hides the profile; paste the full linkedin.com/in/ URL",
            ));
        }
        // A suffix match on ".linkedin.com" keeps lookalikes such as linkedin.com.evil.com and
        // notlinkedin.com out while admitting every LinkedIn host (www, m, de, uk, ...).
        if host != "linkedin.com" && !host.ends_with(".linkedin.com") {
            return Err(bad("the host is not linkedin.com"));
        }

        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let first = segments.first().map(|s| s.to_ascii_lowercase());
        match first.as_deref() {
            Some("in") => {
                let slug = segments.get(1).copied().unwrap_or("");
                parse_slug(slug).map(ProfileRef::Vanity).map_err(bad)
            }
            Some("pub") => {
                legacy_pub(&segments[1..])
                    .map(ProfileRef::Vanity)
                    .map_err(|e| match e {
                        PubError::Directory => not_profile("a LinkedIn people-directory page"),
                        PubError::Bad(reason) => bad(&reason),
                    })
            }
            Some("company" | "school" | "showcase") => Err(not_profile("a LinkedIn company page")),
            Some("posts" | "feed" | "pulse") => Err(not_profile("a LinkedIn post or article")),
            Some("jobs") => Err(not_profile("a LinkedIn job ad")),
            Some("search") => Err(not_profile("a LinkedIn search page")),
            Some("sales") => Err(not_profile("a LinkedIn Sales Navigator link")),
            _ => Err(not_profile("a LinkedIn page")),
        }
    }

    /// A bare vanity slug (ConnectSafely's `profileId`). CRMs often put a whole URL or URN in
    /// that field, so those are accepted and parsed as what they are.
    pub fn from_profile_id(input: &str) -> Result<ProfileRef, LeadError> {
        let input = input.trim();
        if input.contains('/') {
            return ProfileRef::from_url(input);
        }
        if input
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        {
            return ProfileRef::from_urn(input);
        }
        parse_slug(input)
            .map(ProfileRef::Vanity)
            .map_err(|reason| LeadError::BadProfileId {
                reason: reason.to_owned(),
                input: echo(input),
            })
    }

    /// `urn:li:fsd_profile:<id>`, the only URN ConnectSafely's `profileUrn` takes.
    pub fn from_urn(input: &str) -> Result<ProfileRef, LeadError> {
        let input = input.trim();
        let bad = |reason: &str| LeadError::BadUrn {
            reason: reason.to_owned(),
            input: echo(input),
        };
        let prefix_len = FSD_PROFILE_PREFIX.len();
        let Some(id) = input
            .get(..prefix_len)
            .filter(|p| p.eq_ignore_ascii_case(FSD_PROFILE_PREFIX))
            .map(|_| &input[prefix_len..])
        else {
            let lower = input.to_ascii_lowercase();
            return Err(if lower.starts_with("urn:li:member:") {
                bad("urn:li:member URNs are not accepted; use the urn:li:fsd_profile URN")
            } else if lower.starts_with("urn:") {
                bad("only urn:li:fsd_profile URNs identify a profile")
            } else {
                bad("it does not start with urn:li:fsd_profile:")
            });
        };
        if id.is_empty() {
            return Err(bad("the id after urn:li:fsd_profile: is empty"));
        }
        if id.chars().count() > MAX_ID_CHARS {
            return Err(bad("the id is too long"));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("the id may only hold letters, digits, '_' and '-'"));
        }
        // The id is case-sensitive (it is base64-like); only the fixed prefix is normalised.
        Ok(ProfileRef::Urn(format!("{FSD_PROFILE_PREFIX}{id}")))
    }
}

impl fmt::Display for ProfileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical())
    }
}

impl From<ProfileRef> for String {
    fn from(profile: ProfileRef) -> String {
        match profile {
            ProfileRef::Vanity(s) | ProfileRef::Urn(s) => s,
        }
    }
}

impl TryFrom<String> for ProfileRef {
    type Error = LeadError;

    /// Reads a canonical string back: a slug never holds ':', so a URN is unambiguous.
    fn try_from(canonical: String) -> Result<Self, LeadError> {
        ProfileRef::from_profile_id(&canonical)
    }
}

/// URN preferred, then profileId, then linkedinUrl. Blank fields count as absent (CRMs send
/// `""` for empty properties); the most preferred one present decides, so a malformed URN is
/// reported rather than silently replaced by a less precise reference.
pub fn resolve_profile(
    linkedin_url: Option<&str>,
    profile_id: Option<&str>,
    profile_urn: Option<&str>,
) -> Result<ProfileRef, LeadError> {
    fn present(v: Option<&str>) -> Option<&str> {
        v.filter(|s| !s.trim().is_empty())
    }
    if let Some(urn) = present(profile_urn) {
        ProfileRef::from_urn(urn)
    } else if let Some(id) = present(profile_id) {
        ProfileRef::from_profile_id(id)
    } else if let Some(url) = present(linkedin_url) {
        ProfileRef::from_url(url)
    } else {
        Err(LeadError::MissingProfile)
    }
}

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

/// Percent-decodes, checks and lower-cases a vanity slug; `Err` is the reason.
fn parse_slug(raw: &str) -> Result<String, &'static str> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "the profile name is not valid UTF-8 once decoded")?;
    if decoded.is_empty() {
        return Err("the profile name is empty");
    }
    // Member-id tokens (ACoAA..., Sales Navigator's ACwAA...) are case-sensitive ids, not
    // vanity names; lower-casing one would silently point at nobody.
    if decoded.starts_with("ACoAA") || decoded.starts_with("ACwAA") {
        return Err("it holds a LinkedIn member id (ACoAA...), not a public profile name");
    }
    // Checked in the form that is kept: lower-casing can lengthen a name or turn a letter into
    // a letter and a combining mark ('İ' -> "i\u{307}"), and a stored key must read back.
    let slug = decoded.to_lowercase();
    if slug.chars().count() > MAX_ID_CHARS {
        return Err("the profile name is too long");
    }
    if slug.contains('/') {
        return Err("the profile name contains '/'");
    }
    if slug.chars().any(char::is_whitespace) {
        return Err("the profile name contains whitespace");
    }
    // Vanity names are letters (any script), digits and '-' (older ones '_' or '.'); anything
    // else would also break the slug's use in ConnectSafely's URL paths.
    if !slug
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("the profile name contains a character LinkedIn does not use in one");
    }
    if !slug.chars().any(char::is_alphanumeric) {
        return Err("the profile name has no letters or digits");
    }
    Ok(slug)
}

enum PubError {
    Directory,
    Bad(String),
}

/// Legacy public URLs `/pub/<name>/<a>/<b>/<c>` redirect to `/in/<name>-<c><b><a>`: the three
/// id segments reversed and joined onto the name with one hyphen (LinkedIn's own redirect, e.g.
/// `/pub/krzysztof-marzec/a7/576/b50` -> `/in/krzysztof-marzec-b50576a7`).
fn legacy_pub(segments: &[&str]) -> Result<String, PubError> {
    // `/pub/dir/<first>/<last>` is LinkedIn's public people directory, a search listing.
    if segments
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("dir"))
    {
        return Err(PubError::Directory);
    }
    let [name, a, b, c, ..] = segments else {
        return Err(PubError::Bad(
            "a legacy /pub/ URL needs a name and three id parts".to_owned(),
        ));
    };
    if ![a, b, c]
        .iter()
        .all(|p| p.chars().all(|ch| ch.is_ascii_alphanumeric()))
    {
        return Err(PubError::Bad(
            "the id parts of a legacy /pub/ URL are letters and digits".to_owned(),
        ));
    }
    let name = parse_slug(name).map_err(|reason| PubError::Bad(reason.to_owned()))?;
    // Checked again whole: the id parts have no length limit of their own.
    parse_slug(&format!("{name}-{c}{b}{a}")).map_err(|reason| PubError::Bad(reason.to_owned()))
}

/// The input as an error repeats it: trimmed and cut short so a CRM field stays readable.
fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", &input[..cut]),
        None => input.to_owned(),
    }
}

/// The lead's own data, as the CRM or event delivered it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
}

/// A connection note with `{{firstName}}`, `{{lastName}}` and `{{company}}` placeholders, each
/// with an optional fallback after `|` (`{{firstName|there}}`). Names match case-insensitively
/// and may be padded with spaces, since templates are typed by hand in config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field {
        field: Field,
        fallback: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    FirstName,
    LastName,
    Company,
}

impl Field {
    fn value(self, fields: &LeadFields) -> Option<&str> {
        match self {
            Field::FirstName => fields.first_name.as_deref(),
            Field::LastName => fields.last_name.as_deref(),
            Field::Company => fields.company.as_deref(),
        }
    }
}

impl MessageTemplate {
    /// Rejects unknown placeholders and an unclosed `{{`, so a typo fails at start-up
    /// instead of reaching a lead.
    pub fn new(template: &str) -> Result<Self, LeadError> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(LeadError::BadTemplate(format!(
                    "\"{{{{\" without a closing \"}}}}\" in {:?}",
                    echo(&rest[open..])
                )));
            };
            let inner = &after[..close];
            let (name, fallback) = match inner.split_once('|') {
                Some((name, fallback)) => (name.trim(), Some(fallback.trim())),
                None => (inner.trim(), None),
            };
            let field = [
                ("firstName", Field::FirstName),
                ("lastName", Field::LastName),
                ("company", Field::Company),
            ]
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, field)| field)
            .ok_or_else(|| {
                LeadError::BadTemplate(format!(
                    "unknown placeholder {{{{{}}}}}; use {{{{firstName}}}}, {{{{lastName}}}} or {{{{company}}}}",
                    echo(name)
                ))
            })?;
            parts.push(Part::Field {
                field,
                fallback: fallback.filter(|f| !f.is_empty()).map(str::to_owned),
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(MessageTemplate(parts))
    }

    /// The note for one lead, trimmed. A blank field uses its fallback, or vanishes together
    /// with the space it leaves ("Hi {{firstName}} {{lastName}}" -> "Hi Doe"), and a space
    /// left before punctuation goes too ("Hi {{firstName}}, ..." -> "Hi, ...").
    pub fn render(&self, fields: &LeadFields) -> String {
        let mut out = String::new();
        let mut after_empty = false;
        for part in &self.0 {
            match part {
                Part::Text(text) => {
                    let mut text = text.as_str();
                    if after_empty {
                        if out.is_empty() || out.ends_with([' ', '\t']) {
                            text = text.trim_start_matches([' ', '\t']);
                        }
                        if text.starts_with([',', '.', '!', '?', ';', ':']) {
                            out.truncate(out.trim_end_matches([' ', '\t']).len());
                        }
                    }
                    out.push_str(text);
                    after_empty = false;
                }
                Part::Field { field, fallback } => {
                    let value = field
                        .value(fields)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .or(fallback.as_deref())
                        .unwrap_or("");
                    out.push_str(value);
                    after_empty = value.is_empty();
                }
            }
        }
        out.trim().to_owned()
    }
}

/// What to do with a note over [`MAX_MESSAGE_CHARS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// The job ends `invalid` with the length in its error.
    #[default]
    Invalid,
    /// Cut at the last word boundary that fits.
    Truncate,
}

/// A connection note LinkedIn will take: 1..=300 Unicode scalar values, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Message(String);

impl Message {
    /// Takes the text as is (no trimming), rejecting blank or over-long notes.
    pub fn new(text: impl Into<String>) -> Result<Self, LeadError> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(LeadError::EmptyMessage);
        }
        let chars = text.chars().count();
        if chars > MAX_MESSAGE_CHARS {
            return Err(LeadError::MessageTooLong { chars });
        }
        Ok(Message(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Message> for String {
    fn from(message: Message) -> String {
        message.0
    }
}

impl TryFrom<String> for Message {
    type Error = LeadError;

    fn try_from(text: String) -> Result<Self, LeadError> {
        Message::new(text)
    }
}

/// The note to send, if any. `explicit` is the event's own `message`: `Some("")` (or blank)
/// means "send no note" and skips the template; `None` renders the template, if there is one.
/// `Ok(None)` means no `customMessage`. Both sources are trimmed before counting.
pub fn build_message(
    explicit: Option<&str>,
    template: Option<&MessageTemplate>,
    fields: &LeadFields,
    overflow: Overflow,
) -> Result<Option<Message>, LeadError> {
    let text = match (explicit, template) {
        (Some(text), _) => text.trim().to_owned(),
        (None, Some(template)) => template.render(fields),
        (None, None) => return Ok(None),
    };
    if text.is_empty() {
        return Ok(None);
    }
    let text = match overflow {
        Overflow::Truncate => truncate_at_word(&text, MAX_MESSAGE_CHARS).to_owned(),
        Overflow::Invalid => text,
    };
    Message::new(text).map(Some)
}

/// The longest prefix of at most `max` scalars that ends at a word boundary, without trailing
/// whitespace; a hard cut at `max` when no boundary exists. `text` must be trimmed, so the
/// result is never empty.
fn truncate_at_word(text: &str, max: usize) -> &str {
    let Some((cut, next)) = text.char_indices().nth(max) else {
        return text;
    };
    let head = &text[..cut];
    if next.is_whitespace() {
        return head.trim_end();
    }
    match head.rfind(char::is_whitespace) {
        Some(space) => head[..space].trim_end(),
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vanity(s: &str) -> ProfileRef {
        ProfileRef::Vanity(s.to_owned())
    }

    fn url_slug(input: &str) -> String {
        match ProfileRef::from_url(input) {
            Ok(ProfileRef::Vanity(slug)) => slug,
            other => panic!("{input}: {other:?}"),
        }
    }

    fn url_error(input: &str) -> String {
        match ProfileRef::from_url(input) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{input} was accepted as {p:?}"),
        }
    }

    #[test]
    fn profile_urls_in_every_pasted_form_give_the_same_slug() {
        for input in [
            "https://www.linkedin.com/in/john-doe",
            "http://www.linkedin.com/in/john-doe",
            "https://linkedin.com/in/john-doe",
            "www.linkedin.com/in/john-doe",
            "linkedin.com/in/john-doe",
            "//www.linkedin.com/in/john-doe",
            "  https://www.linkedin.com/in/john-doe/  ",
            "https://de.linkedin.com/in/john-doe",
            "https://uk.linkedin.com/in/john-doe/",
            "https://m.linkedin.com/in/john-doe",
            "HTTPS://WWW.LinkedIn.COM/in/John-Doe",
            "https://www.linkedin.com/IN/JOHN-DOE",
            "https://www.linkedin.com/in/john-doe?originalSubdomain=de&trk=x",
            "https://www.linkedin.com/in/john-doe/#experience",
            "https://www.linkedin.com/in/john-doe/details/experience/",
            "https://www.linkedin.com/in/john-doe/en",
            "https://www.linkedin.com//in//john-doe//",
            "https://www.linkedin.com:443/in/john-doe",
            "linkedin.com/in/john-doe?redirect=https://example.com",
        ] {
            assert_eq!(url_slug(input), "john-doe", "{input}");
        }
    }

    #[test]
    fn percent_encoded_and_raw_non_ascii_slugs_decode_and_lower_case() {
        assert_eq!(
            url_slug("https://de.linkedin.com/in/j%C3%BCrgen-m%C3%BCller"),
            "jürgen-müller"
        );
        assert_eq!(
            url_slug("https://de.linkedin.com/in/J%C3%9CRGEN-M%C3%9CLLER-4a1b2c/"),
            "jürgen-müller-4a1b2c"
        );
        assert_eq!(url_slug("linkedin.com/in/Jürgen-Müller"), "jürgen-müller");
        assert_eq!(url_slug("linkedin.com/in/john_doe.1"), "john_doe.1");
    }

    #[test]
    fn legacy_pub_urls_map_to_the_in_slug() {
        assert_eq!(
            url_slug("linkedin.com/pub/john-doe/12/345/678"),
            "john-doe-67834512"
        );
        // LinkedIn's own redirect, as documented by linkedin-canonical-url.
        assert_eq!(
            url_slug(
                "https://sy.linkedin.com/pub/krzysztof-marzec/a7/576/b50?trk=biz_employee_pub"
            ),
            "krzysztof-marzec-b50576a7"
        );
        assert_eq!(
            url_slug("https://www.linkedin.com/pub/John-Doe/A7/576/B50/"),
            "john-doe-b50576a7"
        );
        assert!(url_error("linkedin.com/pub/john-doe/12/345").contains("three id parts"));
        assert!(url_error("linkedin.com/pub/john-doe/1-2/345/678").contains("letters and digits"));
        assert_eq!(
            url_error("https://www.linkedin.com/pub/dir/John/Doe"),
            "a LinkedIn people-directory page, not a person's profile: https://www.linkedin.com/pub/dir/John/Doe"
        );
    }

    // Found by fuzzing (linkedin_profile): "htİt" was kept as "hti\u{307}t", which its own
    // check refuses, so a stored job's profile did not read back.
    #[test]
    fn a_slug_is_checked_in_its_lower_case_form_and_reads_back() {
        let error = ProfileRef::from_profile_id("htİt").unwrap_err().to_string();
        assert!(
            error.contains("a character LinkedIn does not use"),
            "{error}"
        );
        assert!(ProfileRef::from_url("linkedin.com/in/ht%C4%B0t").is_err());
        // Lower-casing 'İ' doubles its length, past the limit.
        let long = "İ".repeat(150);
        assert_eq!(long.chars().count(), 150);
        assert!(ProfileRef::from_profile_id(&long).is_err());
        for input in ["JÜRGEN", "ΑΣ-1", "Straße.x"] {
            let profile = ProfileRef::from_profile_id(input).unwrap();
            assert_eq!(
                ProfileRef::from_profile_id(profile.canonical()),
                Ok(profile.clone())
            );
            let text = serde_json::to_string(&profile).unwrap();
            assert_eq!(serde_json::from_str::<ProfileRef>(&text).unwrap(), profile);
        }
    }

    // Found by review while writing the fuzz target: the id parts of a legacy URL had no
    // length limit, so the slug made from them could pass any length.
    #[test]
    fn a_legacy_pub_slug_obeys_the_length_limit() {
        let long_id = "a".repeat(300);
        let error = url_error(&format!("linkedin.com/pub/john-doe/{long_id}/1/2"));
        assert!(error.contains("too long"), "{error}");
        let name = "n".repeat(MAX_ID_CHARS - 9);
        assert_eq!(
            url_slug(&format!("linkedin.com/pub/{name}/a7/576/b50"))
                .chars()
                .count(),
            MAX_ID_CHARS
        );
    }

    #[test]
    fn unusable_slugs_are_rejected_with_the_reason() {
        for (input, reason) in [
            ("https://www.linkedin.com/in/", "is empty"),
            ("https://www.linkedin.com/in", "is empty"),
            ("https://www.linkedin.com/in/%20", "whitespace"),
            ("https://www.linkedin.com/in/john%20doe", "whitespace"),
            ("https://www.linkedin.com/in/john%2Fdoe", "contains '/'"),
            ("https://www.linkedin.com/in/john%FFdoe", "not valid UTF-8"),
            ("https://www.linkedin.com/in/john%2Bdoe", "character"),
            ("https://www.linkedin.com/in/---", "no letters or digits"),
            (
                "https://www.linkedin.com/in/ACoAABJefVoBrz2LR3f",
                "member id",
            ),
        ] {
            let error = url_error(input);
            assert!(error.contains(reason), "{input}: {error}");
            assert!(
                error.starts_with("not a usable LinkedIn profile URL"),
                "{error}"
            );
        }
        let long = format!("linkedin.com/in/{}", "a".repeat(MAX_ID_CHARS + 1));
        assert!(url_error(&long).contains("too long"));
        // The echoed input is cut so the CRM field stays readable.
        assert!(url_error(&long).ends_with("..."));
    }

    #[test]
    fn pages_that_are_not_profiles_say_what_they_are() {
        for (input, what) in [
            (
                "https://www.linkedin.com/company/acme/",
                "a LinkedIn company page",
            ),
            ("linkedin.com/school/mit", "a LinkedIn company page"),
            (
                "linkedin.com/showcase/acme-cloud",
                "a LinkedIn company page",
            ),
            (
                "https://www.linkedin.com/posts/john-doe_activity-123",
                "a LinkedIn post or article",
            ),
            (
                "https://www.linkedin.com/feed/update/urn:li:activity:1/",
                "a LinkedIn post or article",
            ),
            (
                "https://www.linkedin.com/pulse/some-article-john-doe",
                "a LinkedIn post or article",
            ),
            (
                "https://www.linkedin.com/jobs/view/123456/",
                "a LinkedIn job ad",
            ),
            (
                "https://www.linkedin.com/search/results/people/?keywords=john",
                "a LinkedIn search page",
            ),
            (
                "https://www.linkedin.com/sales/lead/ACwAAA,NAME_SEARCH,VAKJ",
                "a LinkedIn Sales Navigator link",
            ),
            ("https://www.linkedin.com/groups/123/", "a LinkedIn page"),
            ("https://www.linkedin.com/", "a LinkedIn page"),
        ] {
            assert_eq!(
                url_error(input),
                format!("{what}, not a person's profile: {input}")
            );
        }
    }

    #[test]
    fn short_links_and_foreign_hosts_are_not_profile_urls() {
        assert_eq!(
            url_error("https://lnkd.in/dXyZ123"),
            "not a usable LinkedIn profile URL (a lnkd.in short link hides the profile; \
             paste the full linkedin.com/in/ URL): https://lnkd.in/dXyZ123"
        );
        for input in [
            "https://linkedin.com.evil.com/in/john-doe",
            "https://notlinkedin.com/in/john-doe",
            "https://evil.com/linkedin.com/in/john-doe",
            "https://linkedin.com@evil.com/in/john-doe",
            "https://example.com/in/john-doe",
            "john-doe",
        ] {
            assert!(
                url_error(input).contains("(the host is not linkedin.com)"),
                "{input}"
            );
        }
        assert!(url_error("ftp://linkedin.com/in/john-doe").contains("only http and https"));
        assert!(url_error("https://[::1/in/x").contains("cannot be read as a URL"));
    }

    #[test]
    fn profile_ids_are_slugs_or_urls_or_urns() {
        assert_eq!(
            ProfileRef::from_profile_id("john-doe-123"),
            Ok(vanity("john-doe-123"))
        );
        assert_eq!(
            ProfileRef::from_profile_id(" John-Doe-123 "),
            Ok(vanity("john-doe-123"))
        );
        assert_eq!(
            ProfileRef::from_profile_id("j%C3%BCrgen-m%C3%BCller"),
            Ok(vanity("jürgen-müller"))
        );
        assert_eq!(
            ProfileRef::from_profile_id("https://www.linkedin.com/in/John-Doe/"),
            Ok(vanity("john-doe"))
        );
        assert_eq!(
            ProfileRef::from_profile_id("linkedin.com/in/john-doe"),
            Ok(vanity("john-doe"))
        );
        assert_eq!(
            ProfileRef::from_profile_id("urn:li:fsd_profile:ACoAAB1cD2"),
            Ok(ProfileRef::Urn("urn:li:fsd_profile:ACoAAB1cD2".to_owned()))
        );
        for (input, reason) in [
            ("john doe", "whitespace"),
            ("john%2Fdoe", "contains '/'"),
            ("ACoAAB1cD2eF3gH", "member id"),
            ("john?doe", "character"),
        ] {
            let error = ProfileRef::from_profile_id(input).unwrap_err().to_string();
            assert!(
                error.starts_with("not a usable LinkedIn profile id (")
                    && error.ends_with(&format!("): {input}"))
                    && error.contains(reason),
                "{input}: {error}"
            );
        }
        assert!(
            ProfileRef::from_profile_id("linkedin.com/company/acme")
                .unwrap_err()
                .to_string()
                .starts_with("a LinkedIn company page")
        );
    }

    #[test]
    fn only_fsd_profile_urns_are_accepted() {
        assert_eq!(
            ProfileRef::from_urn("urn:li:fsd_profile:ACoAAA24A-MBVEvT49xpVF2gnWrhvmUIPDJshSM"),
            Ok(ProfileRef::Urn(
                "urn:li:fsd_profile:ACoAAA24A-MBVEvT49xpVF2gnWrhvmUIPDJshSM".to_owned()
            ))
        );
        // The prefix is normalised; the case-sensitive id is kept as it is.
        assert_eq!(
            ProfileRef::from_urn(" URN:LI:FSD_PROFILE:AbC_d-1 ")
                .unwrap()
                .canonical(),
            "urn:li:fsd_profile:AbC_d-1"
        );
        for (input, reason) in [
            ("urn:li:fsd_profile:", "is empty"),
            ("urn:li:fsd_profile:ACo AA", "letters, digits"),
            ("urn:li:fsd_profile:ACo/AA", "letters, digits"),
            (
                "urn:li:member:122138853",
                "urn:li:member URNs are not accepted",
            ),
            ("urn:li:person:abc", "only urn:li:fsd_profile URNs"),
            ("ACoAAB1cD2", "does not start with urn:li:fsd_profile:"),
        ] {
            let error = ProfileRef::from_urn(input).unwrap_err().to_string();
            assert!(
                error.starts_with("not a usable LinkedIn profile URN ("),
                "{error}"
            );
            assert!(error.contains(reason), "{input}: {error}");
        }
        let long = format!("urn:li:fsd_profile:{}", "A".repeat(MAX_ID_CHARS + 1));
        assert!(ProfileRef::from_urn(&long).is_err());
    }

    #[test]
    fn resolve_prefers_urn_then_profile_id_then_url() {
        let urn = "urn:li:fsd_profile:ACoAAB1cD2";
        let url = "https://www.linkedin.com/in/from-url";
        assert_eq!(
            resolve_profile(Some(url), Some("from-id"), Some(urn))
                .unwrap()
                .canonical(),
            urn
        );
        assert_eq!(
            resolve_profile(Some(url), Some("from-id"), None),
            Ok(vanity("from-id"))
        );
        assert_eq!(
            resolve_profile(Some(url), Some("  "), Some("")),
            Ok(vanity("from-url"))
        );
        assert_eq!(
            resolve_profile(None, None, None),
            Err(LeadError::MissingProfile)
        );
        assert_eq!(
            resolve_profile(Some(""), Some(" "), Some("")),
            Err(LeadError::MissingProfile)
        );
        // The preferred reference decides: a malformed URN is reported, not skipped.
        assert!(matches!(
            resolve_profile(Some(url), None, Some("urn:li:member:1")),
            Err(LeadError::BadUrn { .. })
        ));
        assert!(
            LeadError::MissingProfile
                .to_string()
                .contains("no LinkedIn profile given")
        );
    }

    #[test]
    fn profile_refs_serialise_as_their_canonical_string() {
        let slug = vanity("jürgen-müller");
        let urn = ProfileRef::Urn("urn:li:fsd_profile:ACoAAB1cD2".to_owned());
        for profile in [slug, urn] {
            let json = serde_json::to_string(&profile).unwrap();
            assert_eq!(json, format!("\"{profile}\""));
            assert_eq!(serde_json::from_str::<ProfileRef>(&json).unwrap(), profile);
        }
        assert!(serde_json::from_str::<ProfileRef>("\"john doe\"").is_err());
        assert!(serde_json::from_str::<ProfileRef>("\"urn:li:member:1\"").is_err());
    }

    fn fields(first: Option<&str>, last: Option<&str>, company: Option<&str>) -> LeadFields {
        LeadFields {
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            company: company.map(str::to_owned),
        }
    }

    fn render(template: &str, f: &LeadFields) -> String {
        MessageTemplate::new(template).unwrap().render(f)
    }

    #[test]
    fn templates_fill_fields_and_fallbacks() {
        let jane = fields(Some("Jane"), Some("Doe"), Some("Acme"));
        let t = "Hi {{firstName}} {{lastName}}, how is {{company}}?";
        assert_eq!(render(t, &jane), "Hi Jane Doe, how is Acme?");
        assert_eq!(
            render("Hi {{firstName|there}}!", &LeadFields::default()),
            "Hi there!"
        );
        assert_eq!(
            render("Hi {{firstName|there}}!", &fields(Some("  "), None, None)),
            "Hi there!"
        );
        assert_eq!(render("Hi {{firstName|there}}!", &jane), "Hi Jane!");
        assert_eq!(
            render("Hi {{ FirstName | there }}, {{COMPANY}}", &jane),
            "Hi Jane, Acme"
        );
        assert_eq!(render("Hi {{firstName|}}!", &LeadFields::default()), "Hi!");
        // Field values are trimmed; literal braces that are not placeholders stay.
        assert_eq!(
            render(
                "{ {{firstName}} }} end",
                &fields(Some(" Jane "), None, None)
            ),
            "{ Jane }} end"
        );
    }

    #[test]
    fn missing_fields_vanish_with_the_space_they_leave() {
        let no_first = fields(None, Some("Doe"), None);
        assert_eq!(
            render("Hi {{firstName}} {{lastName}}, hello", &no_first),
            "Hi Doe, hello"
        );
        assert_eq!(
            render("Hi {{firstName}}, I saw {{company}} online", &no_first),
            "Hi, I saw online"
        );
        assert_eq!(
            render("{{firstName}} {{lastName}} from {{company}}.", &no_first),
            "Doe from."
        );
        // Spacing the author wrote elsewhere is kept.
        assert_eq!(
            render("Hello  {{lastName}}\n\nBest", &no_first),
            "Hello  Doe\n\nBest"
        );
    }

    #[test]
    fn templates_with_unknown_or_unclosed_placeholders_are_rejected() {
        assert_eq!(
            MessageTemplate::new("Hi {{fristName}}")
                .unwrap_err()
                .to_string(),
            "invalid message template: unknown placeholder {{fristName}}; \
             use {{firstName}}, {{lastName}} or {{company}}"
        );
        assert!(
            MessageTemplate::new("Hi {{firstName")
                .unwrap_err()
                .to_string()
                .contains("without a closing")
        );
        assert!(MessageTemplate::new("Hi {{}}").is_err());
        assert!(MessageTemplate::new("No placeholders at all").is_ok());
    }

    #[test]
    fn empty_messages_mean_no_note() {
        let none = LeadFields::default();
        let template = MessageTemplate::new("Hi {{firstName}}").unwrap();
        let blank = MessageTemplate::new("{{firstName}} {{company}}").unwrap();
        let invalid = Overflow::Invalid;
        assert_eq!(build_message(None, None, &none, invalid), Ok(None));
        // An explicit empty message wins over the template.
        assert_eq!(
            build_message(Some(""), Some(&template), &none, invalid),
            Ok(None)
        );
        assert_eq!(build_message(Some(" \n "), None, &none, invalid), Ok(None));
        assert_eq!(build_message(None, Some(&blank), &none, invalid), Ok(None));
        let rendered = build_message(None, Some(&template), &none, invalid)
            .unwrap()
            .unwrap();
        assert_eq!(rendered.as_str(), "Hi");
        let explicit = build_message(Some(" Hello! "), Some(&template), &none, invalid)
            .unwrap()
            .unwrap();
        assert_eq!(explicit.as_str(), "Hello!");
    }

    #[test]
    fn the_limit_counts_unicode_scalars() {
        let none = LeadFields::default();
        for unit in ["é", "😀", "a"] {
            let fits = unit.repeat(MAX_MESSAGE_CHARS);
            let message = build_message(Some(&fits), None, &none, Overflow::Invalid)
                .unwrap()
                .unwrap();
            assert_eq!(message.as_str(), fits);

            let over = unit.repeat(MAX_MESSAGE_CHARS + 1);
            let error = build_message(Some(&over), None, &none, Overflow::Invalid).unwrap_err();
            assert_eq!(error, LeadError::MessageTooLong { chars: 301 });
            assert_eq!(
                error.to_string(),
                "the message is 301 characters long; LinkedIn allows at most 300"
            );
        }
        // A template that renders too long is judged the same way.
        let long = MessageTemplate::new(&format!("{} {{{{company}}}}", "x".repeat(295))).unwrap();
        assert_eq!(
            build_message(
                None,
                Some(&long),
                &fields(None, None, Some("Acme Corp")),
                Overflow::Invalid
            ),
            Err(LeadError::MessageTooLong { chars: 305 })
        );
    }

    fn truncated(text: &str) -> String {
        build_message(Some(text), None, &LeadFields::default(), Overflow::Truncate)
            .unwrap()
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn truncation_cuts_at_the_last_word_boundary() {
        // 59 five-letter words with spaces = 353 chars; 50 words end at 299, the 51st ends
        // at 305.
        let words = vec!["hello"; 59].join(" ");
        let cut = truncated(&words);
        assert_eq!(cut, vec!["hello"; 50].join(" "));
        assert_eq!(cut.chars().count(), 299);

        // A boundary exactly at 300: the 300-char prefix is kept whole.
        let exact = format!("{} tail", "ü".repeat(MAX_MESSAGE_CHARS));
        assert_eq!(truncated(&exact), "ü".repeat(MAX_MESSAGE_CHARS));

        // No trailing whitespace, however many spaces precede the cut.
        let spaced = format!("{}     {}", "a".repeat(290), "b".repeat(20));
        assert_eq!(truncated(&spaced), "a".repeat(290));

        // One word longer than the limit: a hard cut at 300 scalars.
        let word = "😀".repeat(400);
        assert_eq!(truncated(&word), "😀".repeat(MAX_MESSAGE_CHARS));

        // Short messages are untouched.
        assert_eq!(truncated("Hi Jane"), "Hi Jane");
    }

    #[test]
    fn messages_hold_one_to_three_hundred_chars() {
        assert_eq!(Message::new(""), Err(LeadError::EmptyMessage));
        assert_eq!(Message::new("  "), Err(LeadError::EmptyMessage));
        assert_eq!(Message::new("Hi").unwrap().as_str(), "Hi");
        assert_eq!(
            serde_json::to_string(&Message::new("Hi").unwrap()).unwrap(),
            "\"Hi\""
        );
        assert_eq!(
            serde_json::from_str::<Message>("\"Hi\"").unwrap().as_str(),
            "Hi"
        );
        assert!(serde_json::from_str::<Message>(&format!("\"{}\"", "a".repeat(301))).is_err());
        assert!(serde_json::from_str::<Message>("\"\"").is_err());
    }

    #[test]
    fn overflow_reads_from_config_in_lower_case() {
        assert_eq!(
            serde_json::from_str::<Overflow>("\"truncate\"").unwrap(),
            Overflow::Truncate
        );
        assert_eq!(Overflow::default(), Overflow::Invalid);
        assert_eq!(
            serde_json::to_string(&Overflow::Invalid).unwrap(),
            "\"invalid\""
        );
    }
}
