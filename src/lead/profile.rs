//! LinkedIn profile references: URLs in every pasted form, profile ids and URNs, reduced to
//! one canonical [`ProfileRef`].

use std::fmt;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{LeadError, echo, non_blank};

/// Real vanity names are at most 100 characters; the cap keeps absurd input out of the
/// database's unique index (PostgreSQL rejects index entries over ~2.7 kB).
const MAX_ID_CHARS: usize = 200;

const FSD_PROFILE_PREFIX: &str = "urn:li:fsd_profile:";

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
    if let Some(urn) = non_blank(profile_urn) {
        ProfileRef::from_urn(urn)
    } else if let Some(id) = non_blank(profile_id) {
        ProfileRef::from_profile_id(id)
    } else if let Some(url) = non_blank(linkedin_url) {
        ProfileRef::from_url(url)
    } else {
        Err(LeadError::MissingProfile)
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

#[cfg(test)]
mod tests;
