//! Request signature schemes as pure functions over headers and bytes, with the clock
//! injected so that timestamp windows are testable. One module per scheme; the pieces every
//! scheme needs (constant-time comparison, the timestamp window, header access) live here.

pub mod hmac_callout;
pub mod hubspot;
pub mod standard_webhooks;

use chrono::{DateTime, Duration, Utc};
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Why a request's signature was not accepted. The text may reach logs and HTTP responses,
/// so no variant ever carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    #[error("malformed signature timestamp")]
    BadTimestamp,
    #[error("signature timestamp is too old")]
    StaleTimestamp,
    #[error("signature timestamp is in the future")]
    FutureTimestamp,
    #[error("no signature matches")]
    Mismatch,
    #[error("body is not valid UTF-8")]
    BodyNotUtf8,
    /// The reason only, never the secret or any part of it.
    #[error("invalid signing secret: {0}")]
    BadSecret(String),
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether the request carries `Authorization: Bearer <expected>`, compared in constant
/// time; an empty token never matches.
pub(crate) fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    !given.is_empty() && constant_time_eq(given.as_bytes(), expected.as_bytes())
}

/// Accepts `signed_at` within `tolerance` of `now` either way, boundary included.
pub(crate) fn check_timestamp(
    signed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    if now - signed_at > tolerance {
        Err(SignatureError::StaleTimestamp)
    } else if signed_at - now > tolerance {
        Err(SignatureError::FutureTimestamp)
    } else {
        Ok(())
    }
}

/// A header's value as text; a blank value counts as missing, since every header a scheme
/// reads is one it cannot do without.
pub(crate) fn header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<&'a str, SignatureError> {
    let value = headers
        .get(name)
        .ok_or(SignatureError::MissingHeader(name))?
        .to_str()
        .map_err(|_| SignatureError::BadHeader(name))?
        .trim();
    if value.is_empty() {
        return Err(SignatureError::MissingHeader(name));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn timestamps_within_the_tolerance_either_way_pass() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let five = Duration::minutes(5);
        let second = Duration::seconds(1);
        assert_eq!(check_timestamp(now, now, five), Ok(()));
        assert_eq!(check_timestamp(now - five, now, five), Ok(()));
        assert_eq!(check_timestamp(now + five, now, five), Ok(()));
        assert_eq!(
            check_timestamp(now - five - second, now, five),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            check_timestamp(now + five + second, now, five),
            Err(SignatureError::FutureTimestamp)
        );
    }

    #[test]
    fn a_bearer_token_matches_only_itself() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer "), ""));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn constant_time_eq_needs_equal_length_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn blank_or_binary_headers_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            header(&headers, "x-a"),
            Err(SignatureError::MissingHeader("x-a"))
        );
        headers.insert("x-a", HeaderValue::from_static("  "));
        assert_eq!(
            header(&headers, "x-a"),
            Err(SignatureError::MissingHeader("x-a"))
        );
        headers.insert("x-a", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(
            header(&headers, "x-a"),
            Err(SignatureError::BadHeader("x-a"))
        );
        headers.insert("x-a", HeaderValue::from_static(" v "));
        assert_eq!(header(&headers, "x-a"), Ok("v"));
        assert_eq!(
            SignatureError::MissingHeader("webhook-id").to_string(),
            "missing webhook-id header"
        );
    }
}
