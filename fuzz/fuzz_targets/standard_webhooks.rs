//! Standard Webhooks headers and verification (the events source and signed callouts):
//! the verifier never panics, what our signer signs verifies, and a one-bit change to the
//! signature or body does not.
#![no_main]

use arbitrary::Arbitrary;
use leadlink::signature::standard_webhooks::{Signer, Verifier};
use leadlink_fuzz::{Headers, Timestamp, flip_bit, now};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Arbitrary, Debug)]
enum Signature {
    /// Ours, made by the signer, with other entries around it.
    Signed { before: String, after: String },
    /// Ours with one bit flipped.
    Flipped(u16),
    /// Whatever the sender wrote.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    id: String,
    timestamp: Timestamp,
    signature: Signature,
    body: Vec<u8>,
    /// Flip one bit of the body after signing.
    tamper_body: Option<u16>,
    /// A configured secret as an operator might write it.
    secret: String,
}

fuzz_target!(|input: Input| {
    // Secret parsing (config start-up) must refuse without panicking.
    let _ = Verifier::new(&[input.secret.as_str()]);
    let _ = Signer::new(&input.secret);

    let verifier = Verifier::new(&[OTHER_SECRET, SECRET]).expect("valid secrets");
    let signer = Signer::new(SECRET).expect("valid secret");
    let signed_at = input.timestamp.instant().unwrap_or_else(now);
    let signed = signer.headers(&input.id, signed_at, &input.body).ok();

    let mut headers = Headers::default();
    headers.set("webhook-id", &input.id);
    match &input.timestamp {
        Timestamp::Offset(_) => headers.set("webhook-timestamp", signed_at.timestamp().to_string()),
        Timestamp::Raw(raw) => headers.set("webhook-timestamp", raw),
    }
    let ours = signed
        .as_ref()
        .map(|[_, _, (_, signature)]| signature.clone());
    let signature: Vec<u8> = match (&input.signature, &ours) {
        (Signature::Raw(raw), _) => raw.clone(),
        (Signature::Signed { before, after }, Some(ours)) => {
            format!("{before} {ours} {after}").into_bytes()
        }
        (Signature::Flipped(at), Some(ours)) => {
            let mut bytes = ours.clone().into_bytes();
            flip_bit(&mut bytes, *at);
            bytes
        }
        (_, None) => Vec::new(),
    };
    // What `HeaderValue::to_str` takes; anything else is refused as a malformed header.
    let carried = signature
        .iter()
        .all(|&b| b == b'\t' || (32..127).contains(&b));
    headers.set("webhook-signature", &signature);

    let mut body = input.body.clone();
    if let Some(at) = input.tamper_body {
        flip_bit(&mut body, at);
    }
    let result = verifier.verify(&headers.0, &body, now());

    let tampered = input.tamper_body.is_some() && !input.body.is_empty();
    if ours.is_some() && input.timestamp.in_window() && !tampered {
        match input.signature {
            Signature::Signed { .. } if carried => {
                assert_eq!(result, Ok(input.id.clone()), "our signature was refused");
            }
            Signature::Flipped(_) => assert!(result.is_err(), "a flipped signature verified"),
            _ => {}
        }
    }
    if tampered && !matches!(input.signature, Signature::Raw(_)) {
        assert!(result.is_err(), "a tampered body verified");
    }
});
