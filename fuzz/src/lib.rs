//! What the fuzz targets share: a fixed clock, timestamps near it or arbitrary, and header
//! maps built the way a request arrives (names the parsers look for, plus noise).

use arbitrary::Arbitrary;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The fuzzed "now": every verifier takes the clock as an argument.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("fixed instant")
}

/// A timestamp header: mostly near `now` (so the MAC check is reached), sometimes any text.
#[derive(Arbitrary, Debug, Clone)]
pub enum Timestamp {
    /// Seconds from `now`; ±9 hours covers both sides of the five-minute window.
    Offset(i16),
    Raw(String),
}

impl Timestamp {
    /// The signing instant when this is an offset, else `None`.
    pub fn instant(&self) -> Option<DateTime<Utc>> {
        match self {
            Timestamp::Offset(seconds) => {
                Some(now() + chrono::Duration::seconds(i64::from(*seconds)))
            }
            Timestamp::Raw(_) => None,
        }
    }

    /// Within the five-minute window every scheme uses, boundary included.
    pub fn in_window(&self) -> bool {
        matches!(self, Timestamp::Offset(s) if s.unsigned_abs() <= 300)
    }
}

/// Headers as a request carries them; a value that HTTP could not carry is left out.
#[derive(Default, Debug)]
pub struct Headers(pub HeaderMap);

impl Headers {
    pub fn set(&mut self, name: &str, value: impl AsRef<[u8]>) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_ref()),
        ) {
            self.0.insert(name, value);
        }
    }

    /// Appends rather than replaces, so repeated headers are exercised too.
    pub fn add(&mut self, name: &str, value: impl AsRef<[u8]>) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_ref()),
        ) {
            self.0.append(name, value);
        }
    }
}

/// Flips one bit of `bytes` at `at` (wrapping), so a change is always made.
pub fn flip_bit(bytes: &mut [u8], at: u16) {
    if bytes.is_empty() {
        return;
    }
    let bit = usize::from(at) % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}
