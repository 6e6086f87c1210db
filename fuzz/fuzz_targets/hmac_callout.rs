//! Salesforce callouts, as `receive_callout` reads them: the plain-HMAC timestamp and
//! signature headers (hex or base64), then the JSON body. What `sign` makes verifies, and a
//! one-bit change to the signature or the body does not.
#![no_main]

use arbitrary::Arbitrary;
use leadlink::ingest::salesforce::callout;
use leadlink::secret::Secret;
use leadlink::signature::hmac_callout::{HmacCalloutConfig, SignatureEncoding, Verifier, sign};
use leadlink_fuzz::{Headers, Timestamp, flip_bit, now};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "3f1c9a5e7b2d4f6081a3c5e7f9b1d3f5";

#[derive(Arbitrary, Debug)]
enum Signature {
    /// `sign`'s output, in upper case when asked (hex is accepted in either case).
    Signed {
        upper: bool,
    },
    Flipped(u16),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    base64: bool,
    /// Seconds, or milliseconds as Apex's `getTime()` gives them.
    millis: bool,
    timestamp: Timestamp,
    signature: Signature,
    body: Vec<u8>,
    tamper_body: Option<u16>,
}

fuzz_target!(|input: Input| {
    let encoding = if input.base64 {
        SignatureEncoding::Base64
    } else {
        SignatureEncoding::Hex
    };
    let config = HmacCalloutConfig {
        secret: Some(Secret::new(SECRET)),
        encoding,
        ..HmacCalloutConfig::default()
    };
    let verifier = Verifier::new(&config).expect("a usable config");

    let mut headers = Headers::default();
    // The timestamp text as sent is what is signed, so sign over exactly that text.
    let (timestamp_text, seconds) = match &input.timestamp {
        Timestamp::Offset(_) => {
            let at = input.timestamp.instant().expect("an offset");
            if input.millis {
                (at.timestamp_millis().to_string(), None)
            } else {
                (at.timestamp().to_string(), Some(at.timestamp()))
            }
        }
        Timestamp::Raw(raw) => (raw.clone(), None),
    };
    headers.set("X-Timestamp", &timestamp_text);
    let ours = seconds.map(|s| sign(SECRET, s, &input.body, encoding).expect("a usable secret"));
    let signature: Vec<u8> = match (&input.signature, &ours) {
        (Signature::Raw(raw), _) => raw.clone(),
        (Signature::Signed { upper }, Some(ours)) if *upper && !input.base64 => {
            ours.to_uppercase().into_bytes()
        }
        (Signature::Signed { .. }, Some(ours)) => ours.clone().into_bytes(),
        (Signature::Flipped(at), Some(ours)) => {
            let mut bytes = ours.clone().into_bytes();
            flip_bit(&mut bytes, *at);
            bytes
        }
        (_, None) => Vec::new(),
    };
    headers.set("X-Signature", &signature);
    // Hex is accepted in either case, so a flip of the case bit of a-f changes nothing.
    let same_value = !input.base64
        && ours
            .as_deref()
            .is_some_and(|ours| ours.as_bytes().eq_ignore_ascii_case(&signature));

    let mut body = input.body.clone();
    if let Some(at) = input.tamper_body {
        flip_bit(&mut body, at);
    }
    let result = verifier.verify(&headers.0, &body, now());
    let tampered = input.tamper_body.is_some() && !input.body.is_empty();
    if let (Some(seconds), true) = (seconds, input.timestamp.in_window()) {
        match input.signature {
            Signature::Signed { .. } if !tampered => {
                assert_eq!(result, Ok(seconds), "our signature was refused");
            }
            Signature::Signed { .. } | Signature::Flipped(_) if tampered => {
                assert!(result.is_err(), "a tampered body verified");
            }
            Signature::Flipped(_) if !same_value => {
                assert!(result.is_err(), "a flipped signature verified")
            }
            _ => {}
        }
    }

    // The handler parses the body once the signature holds; fuzz the parser on every body.
    if let Ok(callout) = callout::parse(&body) {
        assert!(callout.record_id.starts_with(callout.object.key_prefix()));
        assert!(
            callout
                .linkedin_url
                .as_deref()
                .is_none_or(|u| !u.is_empty())
        );
    }
});
