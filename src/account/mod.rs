//! May this LinkedIn account send a connection request now? Pure rules, clock passed in.
//!
//! The facts come from the API: holds and weekly resets from 429 bodies, usage from the
//! `X-RateLimit-*` headers. The weekly reset is computed locally only when the API said nothing.
//!
//! [`gate`] is the hold and spent-week check the worker uses today; [`pacing::decide`] adds
//! the quota endpoint, the reserve, pacing and pauses, configured by [`policy`].

pub mod pacing;
pub mod policy;
pub mod projection;
pub mod quota;
#[cfg(test)]
mod simulation;
pub mod window;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};

/// What is known about an account's connection requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountState {
    /// The API's 24-hour hold after the weekly limit was exceeded.
    pub hold_until: Option<DateTime<Utc>>,
    /// The week is spent: nothing may be sent before the weekly reset.
    pub blocked_until: Option<DateTime<Utc>>,
    /// The last `X-RateLimit-*` headers for CONNECT.
    pub connect_remaining: Option<i32>,
    pub connect_reset: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Open,
    /// Do not call the API before `until`; the job is `held`.
    Held {
        until: DateTime<Utc>,
        hold_until: Option<DateTime<Utc>>,
        reason: String,
    },
}

pub fn gate(state: &AccountState, now: DateTime<Utc>) -> Gate {
    let hold = state.hold_until.filter(|t| *t > now);
    let blocked = state.blocked_until.filter(|t| *t > now);
    // The headers announced that nothing remains this week: wait for their reset rather
    // than earn a 24-hour hold.
    let spent = match (state.connect_remaining, state.connect_reset) {
        (Some(remaining), Some(reset)) if remaining <= 0 && reset > now => Some(reset),
        _ => None,
    };
    let until = [hold, blocked, spent].into_iter().flatten().max();
    match until {
        None => Gate::Open,
        Some(until) => {
            let reason = if hold.is_some() {
                "the account is on hold after reaching its weekly limit"
            } else {
                "the account's weekly limit is spent until the weekly reset"
            };
            Gate::Held {
                until,
                hold_until: hold,
                reason: reason.into(),
            }
        }
    }
}

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
    fn unknown_account_is_open() {
        assert_eq!(
            gate(&AccountState::default(), t("2026-11-30T10:00:00Z")),
            Gate::Open
        );
    }

    #[test]
    fn hold_waits_until_the_later_of_hold_and_reset() {
        let state = AccountState {
            hold_until: Some(t("2026-12-01T10:00:00Z")),
            blocked_until: Some(t("2026-12-07T00:00:00Z")),
            ..Default::default()
        };
        let Gate::Held {
            until, hold_until, ..
        } = gate(&state, t("2026-11-30T10:00:00Z"))
        else {
            panic!("sent during a hold");
        };
        assert_eq!(until, t("2026-12-07T00:00:00Z"));
        assert_eq!(hold_until, Some(t("2026-12-01T10:00:00Z")));
        assert_eq!(gate(&state, t("2026-12-07T00:00:01Z")), Gate::Open);
    }

    #[test]
    fn headers_announcing_a_spent_week_close_the_gate() {
        let state = AccountState {
            connect_remaining: Some(0),
            connect_reset: Some(t("2026-12-07T00:00:00Z")),
            ..Default::default()
        };
        assert!(matches!(
            gate(&state, t("2026-12-02T00:00:00Z")),
            Gate::Held { .. }
        ));
        let some_left = AccountState {
            connect_remaining: Some(3),
            ..state.clone()
        };
        assert_eq!(gate(&some_left, t("2026-12-02T00:00:00Z")), Gate::Open);
        assert_eq!(gate(&state, t("2026-12-07T00:00:00Z")), Gate::Open);
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
