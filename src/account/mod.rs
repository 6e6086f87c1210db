//! May this LinkedIn account send a connection request now? Pure rules, clock passed in.
//!
//! The facts come from the API: holds and weekly resets from 429 bodies, usage from the
//! `X-RateLimit-*` headers. The weekly reset is computed locally only when the API said nothing.
//!
//! [`pacing::decide`] is the one decision: pauses, holds, the quota (headers and the quota
//! endpoint, less a reserve), and pacing, configured by [`policy`]. The store applies it
//! under the account's row lock (`store::send_gate`).

pub mod hold;
mod id;
pub mod pacing;
pub mod policy;
pub mod projection;
pub mod quota;
#[cfg(test)]
mod simulation;
pub mod window;

pub use id::AccountId;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};

/// The weekly reset as the API documents it: Monday 00:00 UTC, strictly after `now`.
pub fn next_weekly_reset(now: DateTime<Utc>) -> DateTime<Utc> {
    let days_since_monday = i64::from(now.weekday().num_days_from_monday());
    let this_monday = Utc
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .single()
        .expect("midnight UTC exists")
        - Duration::days(days_since_monday);
    this_monday + Duration::days(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn weekly_reset_is_the_next_monday_midnight() {
        assert_eq!(
            next_weekly_reset(t("2026-11-29T23:59:59Z")),
            t("2026-11-30T00:00:00Z")
        );
        assert_eq!(
            next_weekly_reset(t("2026-11-30T00:00:00Z")),
            t("2026-12-07T00:00:00Z")
        );
        assert_eq!(
            next_weekly_reset(t("2026-12-02T12:00:00Z")),
            t("2026-12-07T00:00:00Z")
        );
    }
}
