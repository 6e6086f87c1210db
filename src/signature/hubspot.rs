//! HubSpot request signatures, versions 1 to 3.
//!
//! - v1: hex SHA-256 of `secret + body` (no HMAC, no URI, no timestamp).
//! - v2: hex SHA-256 of `secret + method + uri + body`.
//! - v3: base64 HMAC-SHA256, keyed with the secret, of `method + uri + body + timestamp`, with
//!   the timestamp in milliseconds and a five-minute window.
//!
//! The uri is the full public URL HubSpot called (scheme and host included), which the caller
//! builds from the configured public base URL, because behind a proxy the request itself does
//! not know it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use super::{SignatureError, check_timestamp, constant_time_eq, header};
use crate::secret::Secret;

pub const SIGNATURE: &str = "X-HubSpot-Signature";
pub const SIGNATURE_VERSION: &str = "X-HubSpot-Signature-Version";
pub const SIGNATURE_V3: &str = "X-HubSpot-Signature-v3";
pub const TIMESTAMP: &str = "X-HubSpot-Request-Timestamp";

const TOLERANCE: Duration = Duration::minutes(5);

/// The escapes HubSpot decodes in the uri before signing with v3; every other escape stays
/// as it is.
const V3_DECODED: [(&str, char); 12] = [
    ("3A", ':'),
    ("2F", '/'),
    ("3F", '?'),
    ("40", '@'),
    ("21", '!'),
    ("24", '$'),
    ("27", '\''),
    ("28", '('),
    ("29", ')'),
    ("2A", '*'),
    ("2C", ','),
    ("3B", ';'),
];

/// Which scheme a request was verified with, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    V3,
}

/// Verifies a request with the scheme its headers announce: v3 whenever
/// `X-HubSpot-Signature-v3` is present (no fallback to the weaker schemes then, so a forger
/// cannot downgrade), else the version in `X-HubSpot-Signature-Version`.
pub fn verify(
    method: &Method,
    uri: &str,
    body: &[u8],
    headers: &HeaderMap,
    client_secret: &Secret,
    now: DateTime<Utc>,
) -> Result<Version, SignatureError> {
    let secret = usable(client_secret)?;
    if headers.contains_key(SIGNATURE_V3) {
        let signature = header(headers, SIGNATURE_V3)?;
        let timestamp = header(headers, TIMESTAMP)?;
        let millis: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let signed_at =
            DateTime::from_timestamp_millis(millis).ok_or(SignatureError::BadTimestamp)?;
        check_timestamp(signed_at, now, TOLERANCE)?;
        let expected = v3(secret, method, uri, body, timestamp)?;
        return matches(signature, &expected, Version::V3);
    }
    if !headers.contains_key(SIGNATURE) {
        return Err(SignatureError::MissingHeader(SIGNATURE_V3));
    }
    let signature = header(headers, SIGNATURE)?;
    match header(headers, SIGNATURE_VERSION)? {
        "v1" => matches(signature, &v1(secret, body), Version::V1),
        "v2" => matches(signature, &v2(secret, method, uri, body), Version::V2),
        _ => Err(SignatureError::BadHeader(SIGNATURE_VERSION)),
    }
}

/// The headers HubSpot would send with a v3-signed request (signature, then timestamp), so
/// tests can play HubSpot.
pub fn sign_v3(
    method: &Method,
    uri: &str,
    body: &[u8],
    client_secret: &Secret,
    timestamp: DateTime<Utc>,
) -> Result<[(&'static str, String); 2], SignatureError> {
    let millis = timestamp.timestamp_millis().to_string();
    let signature = v3(usable(client_secret)?, method, uri, body, &millis)?;
    Ok([(SIGNATURE_V3, signature), (TIMESTAMP, millis)])
}

/// An empty secret would make v1 a plain hash of the body that anyone can compute.
fn usable(secret: &Secret) -> Result<&str, SignatureError> {
    let secret = secret.expose();
    if secret.is_empty() {
        return Err(SignatureError::BadSecret(
            "client secret is empty".to_owned(),
        ));
    }
    Ok(secret)
}

fn matches(given: &str, expected: &str, version: Version) -> Result<Version, SignatureError> {
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(version)
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn v1(secret: &str, body: &[u8]) -> String {
    hex(Sha256::new()
        .chain_update(secret)
        .chain_update(body)
        .finalize()
        .as_slice())
}

fn v2(secret: &str, method: &Method, uri: &str, body: &[u8]) -> String {
    hex(Sha256::new()
        .chain_update(secret)
        .chain_update(method.as_str())
        .chain_update(uri)
        .chain_update(body)
        .finalize()
        .as_slice())
}

fn v3(
    secret: &str,
    method: &Method,
    uri: &str,
    body: &[u8],
    timestamp: &str,
) -> Result<String, SignatureError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| SignatureError::BadSecret("unusable as an HMAC key".to_owned()))?;
    mac.update(method.as_str().as_bytes());
    mac.update(decode_v3_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// HubSpot's v3 rule: decode only the escapes in [`V3_DECODED`], in one left-to-right pass
/// (so `%253A` stays `%253A`). Hex digits match in either case, as RFC 3986 makes `%3a` and
/// `%3A` the same escape.
fn decode_v3_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        let decoded = escape.and_then(|hex| {
            V3_DECODED
                .iter()
                .find(|(code, _)| code.eq_ignore_ascii_case(hex))
                .map(|(_, c)| *c)
        });
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors published with HubSpot's official client libraries.
    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const URI: &str = "https://www.example.com/webhook_uri";
    const V1_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    const V1_SIGNATURE: &str = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de";
    const V2_GET_SIGNATURE: &str =
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e";
    const V2_POST_BODY: &str = r#"{"example_field":"example_value"}"#;
    const V2_POST_SIGNATURE: &str =
        "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900";
    const QUOTED_BODY: &str = "{'example_field':'example_value'}";
    const QUOTED_V1: &str = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750";
    const QUOTED_V2: &str = "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383";
    const QUOTED_V3: &str = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    const V3_TS: i64 = 1_693_657_560_000;

    fn secret() -> Secret {
        Secret::new(SECRET)
    }

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).unwrap()
    }

    fn legacy(version: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, signature.parse().unwrap());
        headers.insert(SIGNATURE_VERSION, version.parse().unwrap());
        headers
    }

    fn v3_headers(signature: &str, timestamp: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_V3, signature.parse().unwrap());
        headers.insert(TIMESTAMP, timestamp.parse().unwrap());
        headers
    }

    fn check(method: Method, body: &str, headers: &HeaderMap) -> Result<Version, SignatureError> {
        verify(&method, URI, body.as_bytes(), headers, &secret(), at(V3_TS))
    }

    #[test]
    fn published_vectors_verify() {
        let cases = [
            (
                Method::POST,
                V1_BODY,
                legacy("v1", V1_SIGNATURE),
                Version::V1,
            ),
            (Method::GET, "", legacy("v2", V2_GET_SIGNATURE), Version::V2),
            (
                Method::POST,
                V2_POST_BODY,
                legacy("v2", V2_POST_SIGNATURE),
                Version::V2,
            ),
            (
                Method::POST,
                QUOTED_BODY,
                legacy("v1", QUOTED_V1),
                Version::V1,
            ),
            (
                Method::POST,
                QUOTED_BODY,
                legacy("v2", QUOTED_V2),
                Version::V2,
            ),
            (
                Method::POST,
                QUOTED_BODY,
                v3_headers(QUOTED_V3, &V3_TS.to_string()),
                Version::V3,
            ),
        ];
        for (method, body, headers, version) in cases {
            assert_eq!(check(method, body, &headers), Ok(version), "{headers:?}");
        }
    }

    #[test]
    fn sign_v3_reproduces_the_published_vector_and_verifies() {
        let signed = sign_v3(
            &Method::POST,
            URI,
            QUOTED_BODY.as_bytes(),
            &secret(),
            at(V3_TS),
        )
        .unwrap();
        assert_eq!(
            signed,
            [
                (SIGNATURE_V3, QUOTED_V3.to_owned()),
                (TIMESTAMP, V3_TS.to_string())
            ]
        );

        let uri = "https://hooks.example.com/webhooks/hubspot/workflow?a=%3A%20b";
        let body = "[{\"name\":\"Jürgen\"}]".as_bytes();
        let now = at(1_700_000_000_123);
        let mut headers = HeaderMap::new();
        for (name, value) in sign_v3(&Method::POST, uri, body, &secret(), now).unwrap() {
            headers.insert(name, value.parse().unwrap());
        }
        assert_eq!(
            verify(&Method::POST, uri, body, &headers, &secret(), now),
            Ok(Version::V3)
        );
    }

    #[test]
    fn header_names_match_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert("x-hubspot-signature", V1_SIGNATURE.parse().unwrap());
        headers.insert("X-HUBSPOT-SIGNATURE-VERSION", "v1".parse().unwrap());
        assert_eq!(check(Method::POST, V1_BODY, &headers), Ok(Version::V1));
    }

    #[test]
    fn tampering_is_a_mismatch_for_every_version() {
        let tampered = r#"{'example_field':'example_valuE'}"#;
        for headers in [
            legacy("v1", QUOTED_V1),
            legacy("v2", QUOTED_V2),
            v3_headers(QUOTED_V3, &V3_TS.to_string()),
        ] {
            assert_eq!(
                check(Method::POST, tampered, &headers),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify(
                    &Method::POST,
                    URI,
                    QUOTED_BODY.as_bytes(),
                    &headers,
                    &Secret::new("zzzzzzzz-yyyy-yyyy-yyyy-yyyyyyyyyyyy"),
                    at(V3_TS)
                ),
                Err(SignatureError::Mismatch)
            );
        }
        // v2 and v3 cover the method and the uri; v1 covers neither.
        for headers in [
            legacy("v2", QUOTED_V2),
            v3_headers(QUOTED_V3, "1693657560000"),
        ] {
            assert_eq!(
                check(Method::PUT, QUOTED_BODY, &headers),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify(
                    &Method::POST,
                    "https://www.example.com/webhook_uri?x=1",
                    QUOTED_BODY.as_bytes(),
                    &headers,
                    &secret(),
                    at(V3_TS)
                ),
                Err(SignatureError::Mismatch)
            );
        }
        // The timestamp is signed too.
        assert_eq!(
            check(
                Method::POST,
                QUOTED_BODY,
                &v3_headers(QUOTED_V3, "1693657560001")
            ),
            Err(SignatureError::Mismatch)
        );
        // Uppercase hex is a different string.
        assert_eq!(
            check(
                Method::POST,
                QUOTED_BODY,
                &legacy("v1", &QUOTED_V1.to_uppercase())
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn v3_timestamps_must_be_milliseconds_within_five_minutes() {
        let headers = v3_headers(QUOTED_V3, &V3_TS.to_string());
        let five = 5 * 60 * 1000;
        let run = |now| {
            verify(
                &Method::POST,
                URI,
                QUOTED_BODY.as_bytes(),
                &headers,
                &secret(),
                at(now),
            )
        };
        assert_eq!(run(V3_TS + five), Ok(Version::V3));
        assert_eq!(run(V3_TS - five), Ok(Version::V3));
        assert_eq!(run(V3_TS + five + 1), Err(SignatureError::StaleTimestamp));
        assert_eq!(run(V3_TS - five - 1), Err(SignatureError::FutureTimestamp));

        for ts in [
            "1693657560",
            "soon",
            "1693657560000.5",
            "99999999999999999999",
        ] {
            let result = check(Method::POST, QUOTED_BODY, &v3_headers(QUOTED_V3, ts));
            let expected = if ts == "1693657560" {
                // Seconds read as milliseconds: January 1970.
                SignatureError::StaleTimestamp
            } else {
                SignatureError::BadTimestamp
            };
            assert_eq!(result, Err(expected), "{ts}");
        }
    }

    #[test]
    fn missing_or_unknown_headers_are_named() {
        assert_eq!(
            check(Method::POST, V1_BODY, &HeaderMap::new()),
            Err(SignatureError::MissingHeader(SIGNATURE_V3))
        );

        let mut no_version = legacy("v1", V1_SIGNATURE);
        no_version.remove(SIGNATURE_VERSION);
        assert_eq!(
            check(Method::POST, V1_BODY, &no_version),
            Err(SignatureError::MissingHeader(SIGNATURE_VERSION))
        );

        for version in ["v4", "V1", "1"] {
            assert_eq!(
                check(Method::POST, V1_BODY, &legacy(version, V1_SIGNATURE)),
                Err(SignatureError::BadHeader(SIGNATURE_VERSION)),
                "{version}"
            );
        }

        let mut no_timestamp = v3_headers(QUOTED_V3, "1");
        no_timestamp.remove(TIMESTAMP);
        assert_eq!(
            check(Method::POST, QUOTED_BODY, &no_timestamp),
            Err(SignatureError::MissingHeader(TIMESTAMP))
        );

        assert_eq!(
            check(Method::POST, QUOTED_BODY, &v3_headers(" ", "1693657560000")),
            Err(SignatureError::MissingHeader(SIGNATURE_V3))
        );
    }

    #[test]
    fn a_present_v3_header_allows_no_downgrade() {
        // A valid v1 signature does not rescue a bad v3 one.
        let mut headers = legacy("v1", QUOTED_V1);
        headers.insert(SIGNATURE_V3, "AAAA".parse().unwrap());
        headers.insert(TIMESTAMP, V3_TS.to_string().parse().unwrap());
        assert_eq!(
            check(Method::POST, QUOTED_BODY, &headers),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let result = verify(
            &Method::POST,
            URI,
            b"",
            &legacy("v1", &hex(&Sha256::digest(b""))),
            &Secret::new(""),
            at(V3_TS),
        );
        assert_eq!(
            result,
            Err(SignatureError::BadSecret(
                "client secret is empty".to_owned()
            ))
        );
        assert!(sign_v3(&Method::POST, URI, b"", &Secret::new(""), at(V3_TS)).is_err());
    }

    #[test]
    fn v3_decodes_only_the_listed_escapes_once() {
        assert_eq!(
            decode_v3_uri("https://h.example/p%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B"),
            "https://h.example/p:/?@!$'()*,;"
        );
        assert_eq!(decode_v3_uri("/a?b=%3a%2c"), "/a?b=:,");
        // Not listed: space, percent, ampersand, equals, plus, hash, non-ASCII.
        for kept in ["%20", "%25", "%26", "%3D", "%2B", "%23", "%C3%BC", "%253A"] {
            assert_eq!(decode_v3_uri(kept), kept);
        }
        // Broken escapes pass through unchanged.
        for kept in ["%", "%3", "100%", "%%3A"] {
            let expected = kept.replace("%3A", ":");
            assert_eq!(decode_v3_uri(kept), expected);
        }
        assert_eq!(decode_v3_uri("/ü%3Aü"), "/ü:ü");

        // A request to an escaped uri verifies against a signature over the decoded one.
        let raw = "https://www.example.com/webhook_uri?from=a%40b.com";
        let decoded = "https://www.example.com/webhook_uri?from=a@b.com";
        let ts = V3_TS.to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("POST{decoded}{QUOTED_BODY}{ts}").as_bytes());
        let signature = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            verify(
                &Method::POST,
                raw,
                QUOTED_BODY.as_bytes(),
                &v3_headers(&signature, &ts),
                &secret(),
                at(V3_TS)
            ),
            Ok(Version::V3)
        );
    }
}
