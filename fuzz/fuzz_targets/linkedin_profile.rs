//! LinkedIn profile URLs, vanity slugs and URNs as CRMs and events hand them over. Laws: a
//! profile read back from its canonical form (as a stored job is) is the same profile, and
//! a vanity profile's URL form normalises to the same key as its slug.
#![no_main]

use leadlink::lead::{ProfileRef, resolve_profile};
use libfuzzer_sys::fuzz_target;

fn check_law(input: &str, parsed: &ProfileRef) {
    let canonical = parsed.canonical();
    let again = ProfileRef::from_profile_id(canonical);
    assert_eq!(
        again.as_ref(),
        Ok(parsed),
        "{input:?} normalised to {canonical:?}, which does not read back as itself"
    );
    if let ProfileRef::Vanity(slug) = parsed {
        let url = format!("https://www.linkedin.com/in/{slug}/");
        assert_eq!(
            ProfileRef::from_url(&url).as_ref(),
            Ok(parsed),
            "the URL form of {slug:?} is a different profile"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [
        ProfileRef::from_url(input),
        ProfileRef::from_profile_id(input),
        ProfileRef::from_urn(input),
    ]
    .iter()
    .flatten()
    {
        check_law(input, parsed);
    }
    // The three optional fields split from one input, as a CRM record could hold them.
    let mut parts = input.splitn(3, '\n');
    let (url, id, urn) = (parts.next(), parts.next(), parts.next());
    if let Ok(parsed) = resolve_profile(url, id, urn) {
        check_law(input, &parsed);
    }
});
