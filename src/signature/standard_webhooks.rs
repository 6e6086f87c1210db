//! Standard Webhooks (standardwebhooks.com), used for our own events source and for signed
//! callbacks: `webhook-signature` holds space-separated `v1,<base64>` entries, each an
//! HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` under a `whsec_` secret.
//!
//! The `standardwebhooks` crate computes the HMAC; its own `verify` reads the wall clock, so
//! the timestamp window is checked here against an injected `now` instead.

use std::fmt;
use std::ops::RangeInclusive;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use http::HeaderMap;
use standardwebhooks::Webhook;

use super::{SignatureError, check_timestamp, constant_time_eq, header};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";
/// The spec's secret size; shorter keys are too weak, longer ones are not what senders issue.
const SECRET_BYTES: RangeInclusive<usize> = 24..=64;
const TOLERANCE: Duration = Duration::minutes(5);

/// Checks deliveries against one or more secrets, so a secret can be rotated without a window
/// in which either the old or the new one is refused.
pub struct Verifier {
    webhooks: Vec<Webhook>,
}

// By hand: the crate's `Webhook` has no Debug, and the keys must never be printed anyway.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.webhooks.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Each secret must be `whsec_` + base64 of 24 to 64 bytes; at least one is needed.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<Self, SignatureError> {
        if secrets.is_empty() {
            return Err(SignatureError::BadSecret("no secret configured".to_owned()));
        }
        let webhooks = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                parse_secret(secret.as_ref()).map_err(|reason| {
                    SignatureError::BadSecret(format!(
                        "secret {} of {}: {reason}",
                        i + 1,
                        secrets.len()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier { webhooks })
    }

    /// Returns the delivery id (`webhook-id`, the idempotency key) when any `v1` entry of
    /// `webhook-signature` matches any secret; entries of other versions are ignored.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, SignatureError> {
        let id = header(headers, ID)?;
        let timestamp = header(headers, TIMESTAMP)?;
        let signatures = header(headers, SIGNATURE)?;

        let seconds: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let signed_at = DateTime::from_timestamp(seconds, 0).ok_or(SignatureError::BadTimestamp)?;
        check_timestamp(signed_at, now, TOLERANCE)?;

        let candidates: Vec<&str> = signatures
            .split_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .map(|(_, signature)| signature)
            .collect();
        for webhook in &self.webhooks {
            let expected = sign(webhook, id, seconds, body)?;
            let expected = expected.strip_prefix("v1,").unwrap_or(&expected);
            if candidates
                .iter()
                .any(|c| constant_time_eq(c.as_bytes(), expected.as_bytes()))
            {
                return Ok(id.to_owned());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Signs what we send (signed callbacks) so any Standard Webhooks library can verify it.
pub struct Signer {
    webhook: Webhook,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// The secret must be `whsec_` + base64 of 24 to 64 bytes.
    pub fn new(secret: &str) -> Result<Self, SignatureError> {
        let webhook = parse_secret(secret).map_err(SignatureError::BadSecret)?;
        Ok(Signer { webhook })
    }

    /// The three headers to send: `webhook-id`, `webhook-timestamp` (whole seconds) and
    /// `webhook-signature` (`v1,<base64>`).
    pub fn headers(
        &self,
        msg_id: &str,
        timestamp: DateTime<Utc>,
        body: &[u8],
    ) -> Result<[(&'static str, String); 3], SignatureError> {
        // The id goes out as a header and is the receiver's idempotency key: visible ASCII
        // and spaces (what receivers read as text, our `Verifier` too), none around it
        // (HTTP drops them, so the id would arrive as another one).
        if msg_id.trim().is_empty()
            || msg_id.trim() != msg_id
            || !msg_id.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return Err(SignatureError::BadHeader(ID));
        }
        let seconds = timestamp.timestamp();
        let signature = sign(&self.webhook, msg_id, seconds, body)?;
        Ok([
            (ID, msg_id.to_owned()),
            (TIMESTAMP, seconds.to_string()),
            (SIGNATURE, signature),
        ])
    }
}

/// `Err` is a reason that never quotes the secret: a base64 error would name its bytes.
fn parse_secret(secret: &str) -> Result<Webhook, String> {
    let encoded = secret
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("must start with \"{SECRET_PREFIX}\""))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| format!("the part after \"{SECRET_PREFIX}\" is not valid base64"))?;
    if !SECRET_BYTES.contains(&key.len()) {
        return Err(format!(
            "decodes to {} bytes; expected {} to {}",
            key.len(),
            SECRET_BYTES.start(),
            SECRET_BYTES.end()
        ));
    }
    Webhook::from_bytes(key).map_err(|_| "rejected by the standardwebhooks library".to_owned())
}

/// `v1,<base64>`. The crate's only failure here is a body that is not UTF-8.
fn sign(webhook: &Webhook, id: &str, seconds: i64, body: &[u8]) -> Result<String, SignatureError> {
    webhook
        .sign(id, seconds, body)
        .map_err(|_| SignatureError::BodyNotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vector every Standard Webhooks reference library tests against.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE_V1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    // Another valid secret (32 bytes), for rotation.
    const OTHER_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn headers(id: &str, ts: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ID, id.parse().unwrap());
        headers.insert(TIMESTAMP, ts.parse().unwrap());
        headers.insert(SIGNATURE, signature.parse().unwrap());
        headers
    }

    fn vector_headers(signature: &str) -> HeaderMap {
        headers(MSG_ID, &TS.to_string(), signature)
    }

    fn verifier() -> Verifier {
        Verifier::new(&[SECRET]).unwrap()
    }

    #[test]
    fn signs_the_published_vectors() {
        let signer = Signer::new(SECRET).unwrap();
        assert_eq!(
            signer.headers(MSG_ID, at(TS), BODY).unwrap(),
            [
                ("webhook-id", MSG_ID.to_owned()),
                ("webhook-timestamp", "1614265330".to_owned()),
                ("webhook-signature", SIGNATURE_V1.to_owned()),
            ]
        );
        // The vector from the standardwebhooks crate's own tests.
        let signer = Signer::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let [_, _, (_, signature)] = signer
            .headers(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                at(1649367553),
                br#"{"email":"test@example.com","username":"test_user"}"#,
            )
            .unwrap();
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn verifies_the_published_vector_and_returns_the_delivery_id() {
        assert_eq!(
            verifier().verify(&vector_headers(SIGNATURE_V1), BODY, at(TS)),
            Ok(MSG_ID.to_owned())
        );
    }

    #[test]
    fn any_matching_v1_entry_among_several_is_enough() {
        // The reference libraries' multi-signature case.
        let header = [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            SIGNATURE_V1,
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        ]
        .join(" ");
        assert_eq!(
            verifier().verify(&vector_headers(&header), BODY, at(TS)),
            Ok(MSG_ID.to_owned())
        );
    }

    #[test]
    fn entries_of_other_versions_are_ignored() {
        let valid = SIGNATURE_V1.trim_start_matches("v1,");
        for header in [
            format!("v2,{valid}"),
            format!("v1a,{valid}"),
            valid.to_owned(),
            "v1,".to_owned(),
            SIGNATURE_V1[..8].to_owned(),
        ] {
            assert_eq!(
                verifier().verify(&vector_headers(&header), BODY, at(TS)),
                Err(SignatureError::Mismatch),
                "{header}"
            );
        }
    }

    #[test]
    fn a_second_secret_verifies_during_rotation() {
        let rotating = Verifier::new(&[OTHER_SECRET, SECRET]).unwrap();
        assert_eq!(
            rotating.verify(&vector_headers(SIGNATURE_V1), BODY, at(TS)),
            Ok(MSG_ID.to_owned())
        );
        let retired = Verifier::new(&[OTHER_SECRET.to_owned()]).unwrap();
        assert_eq!(
            retired.verify(&vector_headers(SIGNATURE_V1), BODY, at(TS)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn what_the_signer_sends_the_verifier_accepts() {
        let now = at(1_700_000_000);
        let body = "{\"lead\":\"jürgen\"}".as_bytes();
        let mut map = HeaderMap::new();
        for (name, value) in Signer::new(OTHER_SECRET)
            .unwrap()
            .headers("evt_1", now, body)
            .unwrap()
        {
            map.insert(name, value.parse().unwrap());
        }
        let verifier = Verifier::new(&[OTHER_SECRET]).unwrap();
        assert_eq!(verifier.verify(&map, body, now), Ok("evt_1".to_owned()));
    }

    #[test]
    fn tampering_with_body_id_timestamp_or_signature_is_a_mismatch() {
        let v = verifier();
        let sig = SIGNATURE_V1;
        let cases = [
            (vector_headers(sig), &br#"{"test": 2432232315}"#[..]),
            (headers("msg_other", &TS.to_string(), sig), BODY),
            (headers(MSG_ID, &(TS + 1).to_string(), sig), BODY),
            (
                vector_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="),
                BODY,
            ),
        ];
        for (headers, body) in cases {
            assert_eq!(
                v.verify(&headers, body, at(TS)),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn each_missing_header_is_named() {
        for name in [ID, TIMESTAMP, SIGNATURE] {
            let mut headers = vector_headers(SIGNATURE_V1);
            headers.remove(name);
            assert_eq!(
                verifier().verify(&headers, BODY, at(TS)),
                Err(SignatureError::MissingHeader(name))
            );
        }
    }

    #[test]
    fn timestamps_must_be_whole_seconds_within_five_minutes() {
        let v = verifier();
        let ok = Ok(MSG_ID.to_owned());
        let sig = vector_headers(SIGNATURE_V1);
        assert_eq!(v.verify(&sig, BODY, at(TS + 300)), ok);
        assert_eq!(v.verify(&sig, BODY, at(TS - 300)), ok);
        assert_eq!(
            v.verify(&sig, BODY, at(TS + 301)),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            v.verify(&sig, BODY, at(TS - 301)),
            Err(SignatureError::FutureTimestamp)
        );
        for ts in ["hello", "1614265330000000000000", "1614265330.5", ""] {
            let expected = if ts.is_empty() {
                SignatureError::MissingHeader(TIMESTAMP)
            } else {
                SignatureError::BadTimestamp
            };
            assert_eq!(
                v.verify(&headers(MSG_ID, ts, SIGNATURE_V1), BODY, at(TS)),
                Err(expected),
                "{ts}"
            );
        }
    }

    #[test]
    fn bodies_must_be_utf8() {
        assert_eq!(
            verifier().verify(&vector_headers(SIGNATURE_V1), b"\xff", at(TS)),
            Err(SignatureError::BodyNotUtf8)
        );
        assert_eq!(
            Signer::new(SECRET)
                .unwrap()
                .headers(MSG_ID, at(TS), b"\xff"),
            Err(SignatureError::BodyNotUtf8)
        );
        assert_eq!(
            Signer::new(SECRET).unwrap().headers("a\nb", at(TS), BODY),
            Err(SignatureError::BadHeader(ID))
        );
    }

    // Found by fuzzing (standard_webhooks): the id "[ " was signed as is, but arrives as "["
    // (HTTP trims header values), so our own signature did not verify.
    #[test]
    fn ids_with_surrounding_blanks_are_refused_by_the_signer() {
        let signer = Signer::new(SECRET).unwrap();
        for id in ["[ ", " evt_1", "evt_1\t"] {
            assert_eq!(
                signer.headers(id, at(TS), BODY),
                Err(SignatureError::BadHeader(ID)),
                "{id:?}"
            );
        }
        let mut map = HeaderMap::new();
        for (name, value) in signer.headers("evt 1", at(TS), BODY).unwrap() {
            map.insert(name, value.parse().unwrap());
        }
        assert_eq!(
            verifier().verify(&map, BODY, at(TS)),
            Ok("evt 1".to_owned())
        );
        // Found by fuzzing too: a non-ASCII id is a valid header value but not text, so no
        // receiver reading headers as text (ours included) could take it.
        assert_eq!(
            signer.headers("R'[!쀫", at(TS), BODY),
            Err(SignatureError::BadHeader(ID))
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_quoting_them() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 23]));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        let no_prefix = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let not_base64 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w";
        for (secret, reason) in [
            (short.as_str(), "decodes to 23 bytes; expected 24 to 64"),
            (long.as_str(), "decodes to 65 bytes; expected 24 to 64"),
            (no_prefix, "must start with \"whsec_\""),
            (not_base64, "is not valid base64"),
            ("", "must start with \"whsec_\""),
        ] {
            let error = Signer::new(secret).unwrap_err();
            let text = error.to_string();
            assert!(text.starts_with("invalid signing secret: "), "{text}");
            assert!(text.contains(reason), "{text}");
            if let Some(material) = secret.get(6..10) {
                assert!(!text.contains(material), "{text} quotes the secret");
            }
        }
        assert!(Signer::new(&format!("whsec_{}", STANDARD.encode([7u8; 24]))).is_ok());
        assert!(Signer::new(&format!("whsec_{}", STANDARD.encode([7u8; 64]))).is_ok());
        assert!(Signer::new(&format!(" {SECRET}\n")).is_ok());

        assert_eq!(
            Verifier::new(&[SECRET, not_base64])
                .unwrap_err()
                .to_string(),
            "invalid signing secret: secret 2 of 2: the part after \"whsec_\" is not valid base64"
        );
        assert_eq!(
            Verifier::new::<&str>(&[]).unwrap_err(),
            SignatureError::BadSecret("no secret configured".to_owned())
        );
    }

    #[test]
    fn debug_output_shows_no_key() {
        let debug = format!("{:?}", Verifier::new(&[SECRET, OTHER_SECRET]).unwrap());
        assert_eq!(debug, "Verifier { secrets: 2, .. }");
        assert_eq!(
            format!("{:?}", Signer::new(SECRET).unwrap()),
            "Signer { .. }"
        );
    }
}
