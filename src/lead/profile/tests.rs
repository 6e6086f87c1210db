//! Profile references in every form a CRM user pastes.

use super::*;
use crate::lead::LeadError;

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
        url_slug("https://sy.linkedin.com/pub/krzysztof-marzec/a7/576/b50?trk=biz_employee_pub"),
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
