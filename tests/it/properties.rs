//! Laws the parsers and signers must keep for every input, checked with generated inputs
//! (the fuzz targets in fuzz/ check the same laws coverage-guided, for longer).

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use leadlink::lead::{
    LeadFields, MAX_MESSAGE_CHARS, MessageTemplate, Overflow, ProfileRef, build_message,
};
use leadlink::secret::Secret;
use leadlink::signature::hmac_callout::{self, HmacCalloutConfig, SignatureEncoding};
use leadlink::signature::{SignatureError, hubspot, standard_webhooks};
use proptest::prelude::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HUBSPOT_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
const HMAC_SECRET: &str = "3f1c9a5e7b2d4f6081a3c5e7f9b1d3f5";

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> HeaderMap {
    pairs
        .into_iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&value).unwrap(),
            )
        })
        .collect()
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    bytes
}

/// Vanity names as LinkedIn issues them: letters of any script, digits, '-', and the older
/// '_' and '.'; never starting like a member id.
fn slug() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9àéøßçÅÄÖЖЯ][a-zA-Z0-9àéøßçÅÄÖЖЯ._-]{0,40}"
        .prop_filter("member ids are not slugs", |s| {
            !s.starts_with("ACoAA") && !s.starts_with("ACwAA")
        })
}

proptest! {
    #[test]
    fn normalising_a_profile_twice_gives_the_same_profile(input in "\\PC{0,80}") {
        for parsed in [
            ProfileRef::from_url(&input),
            ProfileRef::from_profile_id(&input),
            ProfileRef::from_urn(&input),
        ]
        .into_iter()
        .flatten()
        {
            let again = ProfileRef::from_profile_id(parsed.canonical());
            prop_assert_eq!(again, Ok(parsed));
        }
    }

    #[test]
    fn a_slug_and_its_urls_normalise_to_the_same_key(
        slug in slug(),
        host in prop::sample::select(vec!["linkedin.com", "www.linkedin.com", "de.linkedin.com", "m.linkedin.com", "WWW.LinkedIn.com"]),
        scheme in prop::sample::select(vec!["https://", "http://", "", "//"]),
        tail in prop::sample::select(vec!["", "/", "?trk=public_profile", "/details/experience/", "#about"]),
    ) {
        let key = ProfileRef::from_profile_id(&slug).unwrap();
        prop_assert_eq!(key.canonical(), slug.to_lowercase());
        let url = format!("{scheme}{host}/in/{slug}{tail}");
        prop_assert_eq!(ProfileRef::from_url(&url), Ok(key.clone()), "{}", url);
        // A CRM that stores the URL in the profile id field gets the same key too.
        prop_assert_eq!(ProfileRef::from_profile_id(&url), Ok(key), "{}", url);
    }

    #[test]
    fn a_profile_urn_keeps_its_id_and_normalises_its_prefix(
        id in "[A-Za-z0-9_-]{1,60}",
        prefix in prop::sample::select(vec!["urn:li:fsd_profile:", "URN:LI:FSD_PROFILE:", "urn:li:FSD_profile:"]),
    ) {
        let parsed = ProfileRef::from_urn(&format!(" {prefix}{id} ")).unwrap();
        prop_assert_eq!(parsed.canonical(), format!("urn:li:fsd_profile:{id}"));
        prop_assert_eq!(ProfileRef::from_profile_id(parsed.canonical()), Ok(parsed));
    }

    #[test]
    fn a_standard_webhooks_signature_verifies_and_a_flipped_bit_does_not(
        id in "[A-Za-z0-9_-]{1,40}",
        seconds in 1_000_000_000i64..4_000_000_000,
        skew in -300i64..=300,
        body in "\\PC{0,200}",
        bit: usize,
    ) {
        let signer = standard_webhooks::Signer::new(WHSEC).unwrap();
        let verifier = standard_webhooks::Verifier::new(&[WHSEC]).unwrap();
        let sent = signer.headers(&id, at(seconds), body.as_bytes()).unwrap();
        let now = at(seconds + skew);
        let headers = header_map(sent.clone());
        prop_assert_eq!(verifier.verify(&headers, body.as_bytes(), now), Ok(id.clone()));

        let [id_header, timestamp, (name, signature)] = sent;
        if let Ok(flipped) = String::from_utf8(flip(signature.as_bytes(), bit))
            && HeaderValue::from_str(&flipped).is_ok()
        {
            let headers = header_map([id_header.clone(), timestamp.clone(), (name, flipped)]);
            prop_assert!(verifier.verify(&headers, body.as_bytes(), now).is_err());
        }
        if !body.is_empty() {
            let headers = header_map([id_header, timestamp, (name, signature)]);
            let result = verifier.verify(&headers, &flip(body.as_bytes(), bit), now);
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn a_hubspot_v3_signature_verifies_and_a_flipped_bit_does_not(
        post: bool,
        uri in "https://hooks\\.example\\.com/webhooks/hubspot[/?=&%a-zA-Z0-9:@!$'()*,;]{0,60}",
        body in "\\PC{0,200}",
        millis in 1_000_000_000_000i64..4_000_000_000_000,
        skew in -300_000i64..=300_000,
        bit: usize,
    ) {
        let method = if post { Method::POST } else { Method::GET };
        let secret = Secret::new(HUBSPOT_SECRET);
        let signed_at = DateTime::from_timestamp_millis(millis).unwrap();
        let now = DateTime::from_timestamp_millis(millis + skew).unwrap();
        let [(name, signature), timestamp] =
            hubspot::sign_v3(&method, &uri, body.as_bytes(), &secret, signed_at).unwrap();
        let headers = header_map([(name, signature.clone()), timestamp.clone()]);
        prop_assert_eq!(
            hubspot::verify(&method, &uri, body.as_bytes(), &headers, &secret, now),
            Ok(hubspot::Version::V3)
        );
        if let Ok(flipped) = String::from_utf8(flip(signature.as_bytes(), bit))
            && HeaderValue::from_str(&flipped).is_ok()
        {
            let headers = header_map([(name, flipped), timestamp.clone()]);
            let result = hubspot::verify(&method, &uri, body.as_bytes(), &headers, &secret, now);
            prop_assert!(result.is_err());
        }
        if !body.is_empty() {
            let result = hubspot::verify(&method, &uri, &flip(body.as_bytes(), bit), &headers, &secret, now);
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn a_callout_hmac_verifies_and_a_flipped_bit_does_not(
        base64: bool,
        seconds in 1_000_000_000i64..4_000_000_000,
        skew in -300i64..=300,
        body in proptest::collection::vec(any::<u8>(), 0..200),
        bit: usize,
    ) {
        let encoding = if base64 { SignatureEncoding::Base64 } else { SignatureEncoding::Hex };
        let config = HmacCalloutConfig {
            secret: Some(Secret::new(HMAC_SECRET)),
            encoding,
            ..HmacCalloutConfig::default()
        };
        let verifier = hmac_callout::Verifier::new(&config).unwrap();
        let signature = hmac_callout::sign(HMAC_SECRET, seconds, &body, encoding).unwrap();
        let timestamp = ("X-Timestamp", seconds.to_string());
        let now = at(seconds + skew);
        let headers = header_map([timestamp.clone(), ("X-Signature", signature.clone())]);
        prop_assert_eq!(verifier.verify(&headers, &body, now), Ok(seconds));

        let flipped = flip(signature.as_bytes(), bit);
        // Hex is read in either case, so flipping the case bit of a-f changes nothing.
        if let Ok(flipped) = String::from_utf8(flipped)
            && HeaderValue::from_str(&flipped).is_ok()
            && !flipped.eq_ignore_ascii_case(&signature)
        {
            let headers = header_map([timestamp, ("X-Signature", flipped)]);
            // A flip may also break the encoding itself; either way it must not verify.
            prop_assert!(verifier.verify(&headers, &body, now).is_err());
        }
        if !body.is_empty() {
            prop_assert_eq!(
                verifier.verify(&headers, &flip(&body, bit), now),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn a_rendered_note_is_at_most_300_characters(
        pieces in proptest::collection::vec(
            prop_oneof![
                // No braces in the text: one next to a placeholder makes `{{{firstName}}`, which
                // is rightly refused as an unknown placeholder.
                "\\PC{0,80}".prop_map(|s| s.replace(['{', '}'], "")),
                Just("{{firstName}}".to_owned()),
                Just("{{ lastName | friend }}".to_owned()),
                Just("{{company|your team}}".to_owned()),
                Just(", ".to_owned()),
            ],
            0..12,
        ),
        first_name in proptest::option::of("\\PC{0,120}"),
        last_name in proptest::option::of("\\PC{0,120}"),
        company in proptest::option::of("\\PC{0,200}"),
    ) {
        let template = MessageTemplate::new(&pieces.concat()).unwrap();
        let fields = LeadFields { first_name, last_name, company };
        let rendered = template.render(&fields);
        match build_message(None, Some(&template), &fields, Overflow::Truncate).unwrap() {
            Some(message) => {
                let chars = message.as_str().chars().count();
                prop_assert!((1..=MAX_MESSAGE_CHARS).contains(&chars), "{} characters", chars);
                prop_assert!(rendered.starts_with(message.as_str()));
            }
            None => prop_assert!(rendered.is_empty()),
        }
        let strict = build_message(None, Some(&template), &fields, Overflow::Invalid);
        prop_assert_eq!(strict.is_err(), rendered.chars().count() > MAX_MESSAGE_CHARS);
    }
}
