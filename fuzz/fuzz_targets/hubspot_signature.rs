//! HubSpot v1, v2 and v3 signature headers: verification never panics, a v3 signature made
//! by `sign_v3` verifies (escapes in the uri included), and a one-bit change does not.
#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use leadlink::secret::Secret;
use leadlink::signature::hubspot::{
    self, SIGNATURE, SIGNATURE_V3, SIGNATURE_VERSION, TIMESTAMP, Version,
};
use leadlink_fuzz::{Headers, Timestamp, flip_bit, now};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";

#[derive(Arbitrary, Debug)]
enum Scheme {
    /// `sign_v3`'s headers, optionally with one bit of the signature flipped.
    SignedV3 { flip: Option<u16> },
    /// Any v3 headers.
    RawV3 {
        signature: Vec<u8>,
        timestamp: Timestamp,
    },
    /// Legacy headers: `X-HubSpot-Signature-Version` and `X-HubSpot-Signature`.
    Legacy {
        version: Vec<u8>,
        signature: Vec<u8>,
    },
    /// Both a v3 header and legacy ones (a downgrade attempt).
    Mixed { v3: Vec<u8>, legacy: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    post: bool,
    uri: String,
    body: Vec<u8>,
    scheme: Scheme,
    signed_at: i16,
    /// Use this secret instead of the fixed one (an empty one must be refused).
    secret: Option<String>,
}

fuzz_target!(|input: Input| {
    let method = if input.post {
        Method::POST
    } else {
        Method::GET
    };
    let secret = Secret::new(input.secret.clone().unwrap_or_else(|| SECRET.to_owned()));
    let mut headers = Headers::default();
    let stamp = Timestamp::Offset(input.signed_at);
    let mut expect_ok = false;
    let mut expect_err = false;
    match &input.scheme {
        Scheme::SignedV3 { flip } => {
            let at = stamp.instant().expect("an offset");
            let Ok([(_, signature), (_, millis)]) =
                hubspot::sign_v3(&method, &input.uri, &input.body, &secret, at)
            else {
                assert!(
                    secret.expose().is_empty(),
                    "sign_v3 refused a usable secret"
                );
                return;
            };
            let mut signature = signature.into_bytes();
            if let Some(at) = flip {
                flip_bit(&mut signature, *at);
                expect_err = true;
            } else {
                expect_ok = stamp.in_window();
            }
            headers.set(SIGNATURE_V3, &signature);
            headers.set(TIMESTAMP, millis);
        }
        Scheme::RawV3 {
            signature,
            timestamp,
        } => {
            headers.set(SIGNATURE_V3, signature);
            match timestamp {
                Timestamp::Offset(_) => {
                    let millis = timestamp.instant().expect("an offset").timestamp_millis();
                    headers.set(TIMESTAMP, millis.to_string());
                }
                Timestamp::Raw(raw) => headers.set(TIMESTAMP, raw),
            }
        }
        Scheme::Legacy { version, signature } => {
            headers.set(SIGNATURE_VERSION, version);
            headers.set(SIGNATURE, signature);
        }
        Scheme::Mixed { v3, legacy } => {
            headers.set(SIGNATURE_V3, v3);
            headers.set(TIMESTAMP, now().timestamp_millis().to_string());
            headers.set(SIGNATURE_VERSION, "v1");
            headers.add(SIGNATURE, legacy);
        }
    }
    let result = hubspot::verify(&method, &input.uri, &input.body, &headers.0, &secret, now());
    if expect_ok {
        assert_eq!(result, Ok(Version::V3), "sign_v3's signature was refused");
    }
    if expect_err {
        assert!(result.is_err(), "a flipped v3 signature verified");
    }
    if let Scheme::Mixed { .. } = input.scheme {
        assert_ne!(
            result,
            Ok(Version::V1),
            "downgraded to v1 despite a v3 header"
        );
    }
});
