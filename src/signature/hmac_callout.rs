//! The "plain HMAC" scheme for callouts from Salesforce Apex (or anything that can compute an
//! HMAC): HMAC-SHA256 under a shared secret over `{timestamp}.{body}`, where `timestamp` is
//! the timestamp header's text exactly as sent and `body` the raw request body.
//!
//! - Signature header (default `X-Signature`): the MAC as hex (either case) or standard
//!   padded base64, whichever `encoding` says.
//! - Timestamp header (default `X-Timestamp`): seconds since the epoch; a value above 10^12
//!   is taken as milliseconds (10^12 seconds is the year 33658, 10^12 milliseconds is
//!   September 2001), since `DateTime.now().getTime()` in Apex is milliseconds and forgetting
//!   the `/ 1000` is an easy mistake. Either way it must be within 5 minutes of our clock.
//! - The secret's UTF-8 bytes are the HMAC key, as `Blob.valueOf(secret)` makes them.
//!
//! For the README. Apex, the form the tests below reproduce step by step:
//!
//! ```apex
//! HttpRequest req = new HttpRequest();
//! req.setEndpoint('callout:LeadLink/webhooks/salesforce/events'); // a named credential
//! req.setMethod('POST');
//! req.setHeader('Content-Type', 'application/json');
//! String ts = String.valueOf(DateTime.now().getTime() / 1000);
//! String body = JSON.serialize(payload);
//! Blob mac = Crypto.generateMac('hmacSHA256', Blob.valueOf(ts + '.' + body), Blob.valueOf(secret));
//! req.setHeader('X-Timestamp', ts);
//! req.setHeader('X-Signature', EncodingUtil.convertToHex(mac));   // or EncodingUtil.base64Encode(mac) with encoding = "base64"
//! req.setBody(body);
//! HttpResponse res = new Http().send(req);
//! ```
//!
//! Keep `secret` out of the code: a protected custom metadata type or custom setting, or an
//! external credential. A Flow can call this Apex as an invocable action.
//!
//! Named-credential formulas, not verified here: Salesforce documents formula functions for
//! the custom headers of a named or external credential, among them
//! `HMAC('SHA-256', valueToSign, key)`, `HEX(blob)` (lower-case), `BASE64ENCODE(blob)`,
//! `BLOB(text)` and `$Credential.<ExternalCredential>.Body` (the evaluated body, a blob). A
//! header such as
//! `X-Signature = {!HEX(HMAC('SHA-256', $Credential.LeadLink.Body, BLOB($Credential.LeadLink.secret)))}`
//! would sign the body alone, but this scheme signs `{timestamp}.{body}`, and the documented
//! functions include none that gives the current time in epoch seconds or joins two blobs.
//! We could not evaluate any such formula, so we do not claim one works: with Flow, either
//! call the Apex above as an invocable action, or use the Standard Webhooks scheme from a
//! sender that supports it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use sha2::Sha256;

use super::{SignatureError, check_timestamp, constant_time_eq, header};
use crate::secret::Secret;

const TOLERANCE: Duration = Duration::minutes(5);
/// Timestamps above this are milliseconds (see the module documentation).
const MILLISECONDS_FROM: i64 = 1_000_000_000_000;
/// Shorter shared secrets are guessable offline from one signed request.
const MIN_SECRET_CHARS: usize = 16;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// `EncodingUtil.convertToHex`; upper case is accepted too.
    #[default]
    Hex,
    /// `EncodingUtil.base64Encode`: standard alphabet, padded.
    Base64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HmacCalloutConfig {
    pub secret: Option<Secret>,
    pub signature_header: String,
    pub timestamp_header: String,
    pub encoding: SignatureEncoding,
}

impl Default for HmacCalloutConfig {
    fn default() -> Self {
        Self {
            secret: None,
            signature_header: "X-Signature".into(),
            timestamp_header: "X-Timestamp".into(),
            encoding: SignatureEncoding::Hex,
        }
    }
}

impl HmacCalloutConfig {
    /// Pushes `{prefix}.<key>: problem` for each problem. Run it after `secret_file` has been
    /// read into `secret`; a file that could not be read is reported by whoever read it.
    pub fn check(&self, prefix: &str, problems: &mut Vec<String>) {
        match &self.secret {
            None => problems.push(format!(
                "{prefix}.secret: missing (set secret or secret_file)"
            )),
            Some(secret) if secret.expose().chars().count() < MIN_SECRET_CHARS => {
                problems.push(format!(
                    "{prefix}.secret: must be at least {MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)"
                ))
            }
            _ => {}
        }
        let mut valid = 0;
        for (key, name) in [
            ("signature_header", &self.signature_header),
            ("timestamp_header", &self.timestamp_header),
        ] {
            if HeaderName::from_bytes(name.as_bytes()).is_ok() {
                valid += 1;
            } else {
                problems.push(format!(
                    "{prefix}.{key}: {name:?} is not a valid HTTP header name"
                ));
            }
        }
        if valid == 2
            && self
                .signature_header
                .eq_ignore_ascii_case(&self.timestamp_header)
        {
            problems.push(format!(
                "{prefix}.timestamp_header: must differ from signature_header"
            ));
        }
    }
}

/// Checks callouts signed with one shared secret. Build it once, from a checked config.
pub struct Verifier {
    mac: HmacSha256,
    signature_header: &'static str,
    timestamp_header: &'static str,
    encoding: SignatureEncoding,
}

// By hand: the keyed MAC must never be printed.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("signature_header", &self.signature_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Needs `config.secret` (with any `secret_file` already read into it).
    pub fn new(config: &HmacCalloutConfig) -> Result<Self, SignatureError> {
        let secret = config
            .secret
            .as_ref()
            .ok_or_else(|| SignatureError::BadSecret("no secret configured".to_owned()))?;
        Ok(Verifier {
            mac: keyed(secret.expose())?,
            signature_header: intern(&config.signature_header),
            timestamp_header: intern(&config.timestamp_header),
            encoding: config.encoding,
        })
    }

    /// Returns the signing time in seconds since the epoch (milliseconds divided down).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<i64, SignatureError> {
        let timestamp = header(headers, self.timestamp_header)?;
        let signature = header(headers, self.signature_header)?;

        // Digits only: `+5` or `-5` parse as numbers but no sender writes them.
        if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignatureError::BadTimestamp);
        }
        let value: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let signed_at = if value > MILLISECONDS_FROM {
            DateTime::from_timestamp_millis(value)
        } else {
            DateTime::from_timestamp(value, 0)
        }
        .ok_or(SignatureError::BadTimestamp)?;
        check_timestamp(signed_at, now, TOLERANCE)?;

        let presented = decode(signature, self.encoding)
            .ok_or(SignatureError::BadHeader(self.signature_header))?;
        let expected = mac(self.mac.clone(), timestamp, body);
        if constant_time_eq(&presented, &expected) {
            Ok(signed_at.timestamp())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The signature header's value for `body` signed at `timestamp` (seconds), as a sender
/// computes it; for tests and tools.
pub fn sign(
    secret: &str,
    timestamp: i64,
    body: &[u8],
    encoding: SignatureEncoding,
) -> Result<String, SignatureError> {
    let mac = mac(keyed(secret)?, &timestamp.to_string(), body);
    Ok(match encoding {
        SignatureEncoding::Hex => mac.iter().map(|b| format!("{b:02x}")).collect(),
        SignatureEncoding::Base64 => STANDARD.encode(mac),
    })
}

fn keyed(secret: &str) -> Result<HmacSha256, SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::BadSecret("the secret is empty".to_owned()));
    }
    // HMAC takes keys of any length; the error type exists for other MACs.
    HmacSha256::new_from_slice(secret.as_bytes())
        .map_err(|_| SignatureError::BadSecret("rejected by the HMAC library".to_owned()))
}

fn mac(mut mac: HmacSha256, timestamp: &str, body: &[u8]) -> Vec<u8> {
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn decode(signature: &str, encoding: SignatureEncoding) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => {
            let digits = signature.as_bytes();
            if !digits.len().is_multiple_of(2) {
                return None;
            }
            digits
                .chunks(2)
                .map(|pair| {
                    let high = char::from(pair[0]).to_digit(16)?;
                    let low = char::from(pair[1]).to_digit(16)?;
                    u8::try_from(high << 4 | low).ok()
                })
                .collect()
        }
        SignatureEncoding::Base64 => STANDARD.decode(signature).ok(),
    }
}

/// `SignatureError` names headers as `&'static str`; a configured name is leaked once, and a
/// set keeps building another verifier from leaking it again.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};
    use sha2::Digest;

    const SECRET: &str = "3f1c9a5e7b2d4f6081a3c5e7f9b1d3f5";

    /// What `Crypto.generateMac('hmacSHA256', data, key)` computes, written out from
    /// RFC 2104 over SHA-256 alone so that the test does not trust the code it checks.
    fn generate_mac(data: &[u8], key: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let inner = Sha256::new()
            .chain_update(block.map(|b| b ^ 0x36))
            .chain_update(data)
            .finalize();
        Sha256::new()
            .chain_update(block.map(|b| b ^ 0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    /// `EncodingUtil.convertToHex`: lower-case hex.
    fn convert_to_hex(mac: &[u8]) -> String {
        mac.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The Apex of the module documentation, line by line; returns (headers, body).
    fn apex_callout(
        now: DateTime<Utc>,
        payload: &serde_json::Value,
        secret: &str,
        base64: bool,
    ) -> (HeaderMap, String) {
        // String ts = String.valueOf(DateTime.now().getTime() / 1000);  (Long division)
        let ts = (now.timestamp_millis() / 1000).to_string();
        // String body = JSON.serialize(payload);  (compact, UTF-8 as is)
        let body = serde_json::to_string(payload).unwrap();
        // Blob mac = Crypto.generateMac('hmacSHA256', Blob.valueOf(ts + '.' + body), Blob.valueOf(secret));
        let mac = generate_mac((ts.clone() + "." + &body).as_bytes(), secret.as_bytes());
        let mut headers = HeaderMap::new();
        // req.setHeader('X-Timestamp', ts);
        headers.insert("X-Timestamp", ts.parse().unwrap());
        // req.setHeader('X-Signature', EncodingUtil.convertToHex(mac));  or base64Encode(mac)
        let signature = if base64 {
            STANDARD.encode(mac)
        } else {
            convert_to_hex(&mac)
        };
        headers.insert("X-Signature", signature.parse().unwrap());
        (headers, body)
    }

    fn config(encoding: SignatureEncoding) -> HmacCalloutConfig {
        HmacCalloutConfig {
            secret: Some(Secret::new(SECRET)),
            encoding,
            ..HmacCalloutConfig::default()
        }
    }

    fn verifier(encoding: SignatureEncoding) -> Verifier {
        Verifier::new(&config(encoding)).unwrap()
    }

    fn payload() -> serde_json::Value {
        serde_json::json!({
            "recordId": "00Q5g00000AbCdEEAV",
            "object": "Lead",
            "linkedinUrl": "https://www.linkedin.com/in/j\u{fc}rgen-m\u{fc}ller/",
            "FirstName": "J\u{fc}rgen",
        })
    }

    fn at_millis(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).unwrap()
    }

    #[test]
    fn the_reference_hmac_matches_rfc_4231() {
        // RFC 4231, test case 2, and a key longer than the block (test case 6).
        assert_eq!(
            convert_to_hex(&generate_mac(b"what do ya want for nothing?", b"Jefe")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            convert_to_hex(&generate_mac(
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                &[0xaa; 131]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn what_apex_sends_verifies_in_hex_and_base64() {
        let now = at_millis(1_700_000_123_987);
        for (encoding, base64) in [
            (SignatureEncoding::Hex, false),
            (SignatureEncoding::Base64, true),
        ] {
            let (headers, body) = apex_callout(now, &payload(), SECRET, base64);
            // Compact, non-ASCII as UTF-8: what `JSON.serialize` writes.
            assert!(body.contains(r#""FirstName":"Jürgen","#), "{body}");
            assert_eq!(
                verifier(encoding).verify(&headers, body.as_bytes(), now),
                Ok(1_700_000_123)
            );
            // Our own signer agrees with Apex.
            assert_eq!(
                sign(SECRET, 1_700_000_123, body.as_bytes(), encoding).unwrap(),
                headers["X-Signature"].to_str().unwrap()
            );
        }
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let now = at_millis(1_700_000_000_000);
        let (mut headers, body) = apex_callout(now, &payload(), SECRET, false);
        let upper = headers["X-Signature"]
            .to_str()
            .unwrap()
            .to_ascii_uppercase();
        headers.insert("X-Signature", upper.parse().unwrap());
        assert_eq!(
            verifier(SignatureEncoding::Hex).verify(&headers, body.as_bytes(), now),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn a_millisecond_timestamp_is_accepted_and_signed_as_sent() {
        let now = at_millis(1_700_000_000_500);
        let body = br#"{"recordId":"00Q5g00000AbCdE","object":"Lead"}"#;
        let ts = "1700000000250";
        let mac = generate_mac(
            format!("{ts}.")
                .as_bytes()
                .iter()
                .chain(body)
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
            SECRET.as_bytes(),
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-timestamp", ts.parse().unwrap());
        headers.insert("x-signature", convert_to_hex(&mac).parse().unwrap());
        assert_eq!(
            verifier(SignatureEncoding::Hex).verify(&headers, body, now),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn timestamps_must_be_within_five_minutes() {
        let signed = at_millis(1_700_000_000_000);
        let (headers, body) = apex_callout(signed, &payload(), SECRET, false);
        let v = verifier(SignatureEncoding::Hex);
        let minutes = |m: i64| signed + Duration::minutes(m);
        let second = Duration::seconds(1);
        assert!(v.verify(&headers, body.as_bytes(), minutes(5)).is_ok());
        assert!(v.verify(&headers, body.as_bytes(), minutes(-5)).is_ok());
        assert_eq!(
            v.verify(&headers, body.as_bytes(), minutes(5) + second),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            v.verify(&headers, body.as_bytes(), minutes(-5) - second),
            Err(SignatureError::FutureTimestamp)
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let now = at_millis(1_700_000_000_000);
        let v = verifier(SignatureEncoding::Hex);
        for ts in [
            "abc",
            "-5",
            "+1700000000",
            "1700000000.5",
            "99999999999999999999",
            "1e9",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("X-Timestamp", ts.parse().unwrap());
            headers.insert(
                "X-Signature",
                sign(SECRET, 1_700_000_000, b"{}", SignatureEncoding::Hex)
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
            assert_eq!(
                v.verify(&headers, b"{}", now),
                Err(SignatureError::BadTimestamp),
                "{ts}"
            );
        }
    }

    #[test]
    fn tampering_is_a_mismatch() {
        let now = at_millis(1_700_000_000_000);
        let (headers, body) = apex_callout(now, &payload(), SECRET, false);
        let v = verifier(SignatureEncoding::Hex);
        let tampered = body.replace("Lead", "Contact");
        assert_eq!(
            v.verify(&headers, tampered.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        let mut moved = headers.clone();
        moved.insert("X-Timestamp", "1700000001".parse().unwrap());
        assert_eq!(
            v.verify(&moved, body.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        let (other, _) = apex_callout(now, &payload(), "another-secret-of-length", false);
        assert_eq!(
            v.verify(&other, body.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        // A truncated but well-formed signature.
        let mut short = headers.clone();
        let cut = &headers["X-Signature"].to_str().unwrap()[..62];
        short.insert("X-Signature", cut.parse().unwrap());
        assert_eq!(
            v.verify(&short, body.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn undecodable_signatures_are_a_bad_header() {
        let now = at_millis(1_700_000_000_000);
        let (headers, body) = apex_callout(now, &payload(), SECRET, false);
        let hex = headers["X-Signature"].to_str().unwrap().to_owned();
        for (encoding, signature) in [
            (SignatureEncoding::Hex, format!("{hex}0")),
            (SignatureEncoding::Hex, format!("{}zz", &hex[..62])),
            (SignatureEncoding::Hex, format!("sha256={hex}")),
            (SignatureEncoding::Base64, "not base64!".to_owned()),
        ] {
            let mut headers = headers.clone();
            headers.insert("X-Signature", signature.parse().unwrap());
            assert_eq!(
                verifier(encoding).verify(&headers, body.as_bytes(), now),
                Err(SignatureError::BadHeader("X-Signature")),
                "{signature}"
            );
        }
    }

    #[test]
    fn configured_header_names_are_read_and_named() {
        let custom = HmacCalloutConfig {
            signature_header: "X-LeadLink-Signature".into(),
            timestamp_header: "X-LeadLink-Time".into(),
            ..config(SignatureEncoding::Base64)
        };
        let v = Verifier::new(&custom).unwrap();
        let now = at_millis(1_700_000_000_000);
        let body = b"{\"recordId\":\"x\"}";
        let mut headers = HeaderMap::new();
        assert_eq!(
            v.verify(&headers, body, now),
            Err(SignatureError::MissingHeader("X-LeadLink-Time"))
        );
        headers.insert("x-leadlink-time", "1700000000".parse().unwrap());
        assert_eq!(
            v.verify(&headers, body, now),
            Err(SignatureError::MissingHeader("X-LeadLink-Signature"))
        );
        let signature = sign(SECRET, 1_700_000_000, body, SignatureEncoding::Base64).unwrap();
        headers.insert("x-leadlink-signature", signature.parse().unwrap());
        assert_eq!(v.verify(&headers, body, now), Ok(1_700_000_000));
        // Building verifiers again does not leak the names again.
        assert!(std::ptr::eq(
            intern("X-LeadLink-Time"),
            Verifier::new(&custom).unwrap().timestamp_header
        ));
    }

    #[test]
    fn a_verifier_needs_a_secret_and_never_shows_it() {
        assert_eq!(
            Verifier::new(&HmacCalloutConfig::default()).unwrap_err(),
            SignatureError::BadSecret("no secret configured".to_owned())
        );
        let debug = format!("{:?}", verifier(SignatureEncoding::Hex));
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!format!("{:?}", config(SignatureEncoding::Hex)).contains(SECRET));
        assert!(sign("", 1, b"", SignatureEncoding::Hex).is_err());
    }

    fn from_toml(text: &str) -> Result<HmacCalloutConfig, String> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_encodings() {
        let config = from_toml(&format!("secret = \"{SECRET}\"")).unwrap();
        assert_eq!(config.signature_header, "X-Signature");
        assert_eq!(config.timestamp_header, "X-Timestamp");
        assert_eq!(config.encoding, SignatureEncoding::Hex);
        let config = from_toml("encoding = \"base64\"").unwrap();
        assert_eq!(config.encoding, SignatureEncoding::Base64);
        assert!(from_toml("encoding = \"Base64\"").is_err());
        assert!(from_toml("encoding = \"binary\"").is_err());
        assert!(from_toml("secrets = \"x\"").is_err());
    }

    #[test]
    fn config_check_names_each_problem() {
        let check = |config: &HmacCalloutConfig| {
            let mut problems = Vec::new();
            config.check("sources.salesforce.callout.hmac", &mut problems);
            problems
        };
        assert_eq!(check(&config(SignatureEncoding::Hex)), Vec::<String>::new());
        assert_eq!(
            check(&HmacCalloutConfig::default()),
            ["sources.salesforce.callout.hmac.secret: missing (set secret or secret_file)"]
        );
        let bad = HmacCalloutConfig {
            secret: Some(Secret::new("short")),
            signature_header: "X Signature".into(),
            timestamp_header: "".into(),
            ..HmacCalloutConfig::default()
        };
        let problems = check(&bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("secret: must be at least 16 characters"));
        assert!(!problems[0].contains("short"));
        assert!(problems[1].contains("signature_header: \"X Signature\" is not a valid"));
        assert!(problems[2].starts_with("sources.salesforce.callout.hmac.timestamp_header:"));
        let same = HmacCalloutConfig {
            timestamp_header: "x-signature".into(),
            ..config(SignatureEncoding::Hex)
        };
        assert_eq!(
            check(&same),
            ["sources.salesforce.callout.hmac.timestamp_header: must differ from signature_header"]
        );
    }
}
