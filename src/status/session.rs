//! Sign-in without a session table: the cookie carries its issue time and a random nonce,
//! signed with the admin token, so rotating the token signs everyone out and any ingest
//! process can check any cookie. Each form carries a CSRF token derived from the cookie.
//! Pure, with the clock passed in.

use crate::secret::Secret;
use crate::signature::constant_time_eq;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE: &str = "leadlink_session";

/// How long a sign-in lasts.
pub const LIFETIME: TimeDelta = TimeDelta::hours(12);

/// Ingest processes' clocks differ a little: a cookie another one issued a moment "later"
/// than this one's clock is still good.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(1);

/// A valid session: the cookie's value, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    value: String,
}

impl Session {
    /// A new session at `now`; `nonce` makes two sign-ins in the same second differ.
    pub fn issue(token: &Secret, now: DateTime<Utc>, nonce: [u8; 16]) -> Session {
        let signed = format!("{}.{}", now.timestamp(), URL_SAFE_NO_PAD.encode(nonce));
        let mac = URL_SAFE_NO_PAD.encode(mac(token, signed.as_bytes()));
        Session {
            value: format!("{signed}.{mac}"),
        }
    }

    /// The session a cookie value stands for, if the token signed it and it has not expired.
    pub fn verify(token: &Secret, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let (signed, given) = value.rsplit_once('.')?;
        let given = URL_SAFE_NO_PAD.decode(given).ok()?;
        if !constant_time_eq(&given, &mac(token, signed.as_bytes())) {
            return None;
        }
        let (issued, _nonce) = signed.split_once('.')?;
        let issued = DateTime::from_timestamp(issued.parse().ok()?, 0)?;
        let fresh = issued <= now + CLOCK_SKEW && now - issued < LIFETIME;
        fresh.then(|| Session {
            value: value.to_string(),
        })
    }

    /// The cookie's value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The CSRF token of this session's forms.
    pub fn csrf(&self, token: &Secret) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_mac(token))
    }

    /// Whether `given` is this session's CSRF token.
    pub fn csrf_matches(&self, token: &Secret, given: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(given)
            .is_ok_and(|given| constant_time_eq(&given, &self.csrf_mac(token)))
    }

    fn csrf_mac(&self, token: &Secret) -> Vec<u8> {
        mac(token, format!("csrf{}", self.value).as_bytes())
    }
}

fn mac(token: &Secret, message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new("admin-token")
    }

    fn t0() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_session_verifies_until_it_expires() {
        let session = Session::issue(&token(), t0(), [7; 16]);
        let verify = |at| Session::verify(&token(), session.value(), at);
        assert_eq!(verify(t0()), Some(session.clone()));
        assert!(verify(t0() + LIFETIME - TimeDelta::seconds(1)).is_some());
        assert_eq!(verify(t0() + LIFETIME), None);
        // Issued by a process whose clock is a little ahead: fine; far ahead: forged.
        assert!(verify(t0() - TimeDelta::seconds(30)).is_some());
        assert_eq!(verify(t0() - TimeDelta::minutes(2)), None);
    }

    #[test]
    fn another_token_a_changed_time_or_a_bad_shape_is_refused() {
        let session = Session::issue(&token(), t0(), [7; 16]);
        // Rotating the token signs everyone out.
        assert_eq!(
            Session::verify(&Secret::new("rotated"), session.value(), t0()),
            None
        );
        // Moving the issue time forward to live longer breaks the signature.
        let (issued, rest) = session.value().split_once('.').unwrap();
        let later: i64 = issued.parse::<i64>().unwrap() + 3600;
        assert_eq!(
            Session::verify(&token(), &format!("{later}.{rest}"), t0()),
            None
        );
        for bad in [
            "",
            "x",
            "1.2",
            "a.b.c",
            "..",
            &format!("{}.", session.value()),
        ] {
            assert_eq!(Session::verify(&token(), bad, t0()), None, "{bad:?}");
        }
        // Two sign-ins in the same second differ by their nonce.
        assert_ne!(Session::issue(&token(), t0(), [8; 16]), session);
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session_and_its_admin_token() {
        let session = Session::issue(&token(), t0(), [7; 16]);
        let csrf = session.csrf(&token());
        assert!(session.csrf_matches(&token(), &csrf));
        assert!(!session.csrf_matches(&token(), ""));
        assert!(!session.csrf_matches(&token(), "not base64!"));
        let other = Session::issue(&token(), t0(), [9; 16]);
        assert!(!other.csrf_matches(&token(), &csrf));
        assert!(!session.csrf_matches(&Secret::new("rotated"), &csrf));
        // Not the session cookie itself, so a leaked form does not sign anyone in.
        assert_ne!(csrf, session.value());
    }
}
