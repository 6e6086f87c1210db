//! A string that never shows itself in logs or `Debug` output.

use serde::Deserialize;
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Accepts any scalar: an environment variable holding `123456` or `true` is still a secret.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to read the value: call sites that do are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A URL whose credentials and query string (tokens live there) are hidden when shown.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if !url.username().is_empty() {
                let _ = url.set_username("***");
            }
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            if url.query().is_some() {
                url.set_query(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "[unparseable url]".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("whsec_abc");
        assert!(!format!("{secret:?}").contains("abc"));
        assert!(!format!("{secret}").contains("abc"));
        assert_eq!(secret.expose(), "whsec_abc");
    }

    #[test]
    fn scalars_are_secrets_too() {
        let numeric: Secret = serde_json::from_str("123456").unwrap();
        assert_eq!(numeric.expose(), "123456");
        let text: Secret = serde_json::from_str("\"whsec_x\"").unwrap();
        assert_eq!(text.expose(), "whsec_x");
    }

    #[test]
    fn urls_lose_credentials_and_query_tokens() {
        let shown = redact_url("amqp://guest:pw@host:5672/%2f?token=t0p");
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!shown.contains("t0p"), "{shown}");
        assert!(!shown.contains("guest"), "{shown}");
        assert!(shown.contains("host:5672"), "{shown}");
    }
}
