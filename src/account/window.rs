//! Working windows in an account's time zone, as UTC instants, correct across DST changes.

use super::policy::AccountPolicy;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The account's local calendar date at `t`.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// The first instant at which the local clock reads `local` or later: the earlier of a
/// repeated hour, and the end of a skipped one (02:30 on a spring-forward day is 03:00).
pub fn first_instant_at(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // Gaps are at most a few hours; step minute by minute to the first time that exists.
    (0..=24 * 60)
        .filter_map(|minute| {
            tz.from_local_datetime(&(local + TimeDelta::minutes(minute)))
                .earliest()
        })
        .next()
        .map_or_else(
            // No zone skips a whole day; read the clock as UTC rather than fail.
            || local.and_utc(),
            |t| t.with_timezone(&Utc),
        )
}

/// `[start, end)` of the local calendar day `date`.
pub fn day_bounds(tz: Tz, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = first_instant_at(tz, date.and_time(NaiveTime::MIN));
    let end = date.succ_opt().map_or(DateTime::<Utc>::MAX_UTC, |next| {
        first_instant_at(tz, next.and_time(NaiveTime::MIN))
    });
    (start, end)
}

/// `[open, close)` of the working window on the local `date`, or `None` on a day off.
/// Empty when DST swallows it (hours inside a skipped hour).
pub fn working_window(
    policy: &AccountPolicy,
    date: NaiveDate,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if !policy.working_days.contains(date.weekday()) {
        return None;
    }
    let at = |minutes: u32| {
        let midnight = date.and_time(NaiveTime::MIN);
        first_instant_at(
            policy.timezone,
            midnight + TimeDelta::minutes(i64::from(minutes)),
        )
    };
    Some((at(policy.working_hours.start), at(policy.working_hours.end)))
}

/// The working window that contains `t` or is the next to open after it: `(open, close)`
/// with `open` clamped to `t` when `t` is inside it.
pub fn next_window(policy: &AccountPolicy, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = local_date(policy.timezone, t);
    // Working days are never empty, so a week and a day always holds a non-empty window
    // (a second week covers a window DST swallowed).
    today
        .iter_days()
        .take(15)
        .filter_map(|date| working_window(policy, date))
        .find(|(open, close)| t < *close && open < close)
        .map_or((t, t), |(open, close)| (open.max(t), close))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::policy::WorkingHours;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn policy(tz: Tz, hours: &str) -> AccountPolicy {
        AccountPolicy {
            timezone: tz,
            working_hours: WorkingHours::parse(hours).unwrap(),
            ..AccountPolicy::default()
        }
    }

    #[test]
    fn inside_the_window_is_now_outside_is_the_next_opening() {
        let p = policy(Tz::UTC, "09:00-18:00");
        let (open, close) = next_window(&p, at("2026-11-04T10:00:00Z"));
        assert_eq!(open, at("2026-11-04T10:00:00Z"));
        assert_eq!(close, at("2026-11-04T18:00:00Z"));
        assert_eq!(
            next_window(&p, at("2026-11-04T18:00:00Z")).0,
            at("2026-11-05T09:00:00Z")
        );
        assert_eq!(
            next_window(&p, at("2026-11-04T08:59:59Z")).0,
            at("2026-11-04T09:00:00Z")
        );
        // Friday evening to Monday morning.
        assert_eq!(
            next_window(&p, at("2026-11-06T18:30:00Z")).0,
            at("2026-11-09T09:00:00Z")
        );
    }

    #[test]
    fn all_day_runs_to_midnight() {
        let p = policy(Tz::UTC, "00:00-24:00");
        assert_eq!(
            next_window(&p, at("2026-11-06T23:59:00Z")),
            (at("2026-11-06T23:59:00Z"), at("2026-11-07T00:00:00Z"))
        );
        assert_eq!(
            next_window(&p, at("2026-11-07T00:00:00Z")).0,
            at("2026-11-09T00:00:00Z")
        );
    }

    #[test]
    fn berlin_across_the_october_change() {
        // Summer time ends Sunday 2026-10-25 03:00 CEST -> 02:00 CET.
        let p = policy(chrono_tz::Europe::Berlin, "09:00-18:00");
        // Friday before: 09:00 CEST is 07:00 UTC.
        assert_eq!(
            next_window(&p, at("2026-10-23T05:00:00Z")).0,
            at("2026-10-23T07:00:00Z")
        );
        // From Friday after closing to Monday: 09:00 CET is 08:00 UTC.
        let (open, close) = next_window(&p, at("2026-10-23T16:00:00Z"));
        assert_eq!(
            (open, close),
            (at("2026-10-26T08:00:00Z"), at("2026-10-26T17:00:00Z"))
        );
        // The local day of the change has 25 hours.
        let day = "2026-10-25".parse().unwrap();
        let (start, end) = day_bounds(chrono_tz::Europe::Berlin, day);
        assert_eq!(end - start, TimeDelta::hours(25));
    }

    #[test]
    fn a_window_in_a_repeated_or_skipped_hour() {
        let every_day = WorkingHours::parse("02:30-03:30").unwrap();
        let p = AccountPolicy {
            timezone: chrono_tz::Europe::Berlin,
            working_hours: every_day,
            working_days: crate::account::policy::WorkingDays::parse(&["Sun"]).unwrap(),
            ..AccountPolicy::default()
        };
        // 2026-10-25: 02:30 happens twice; the window opens at the first (00:30 UTC).
        assert_eq!(
            next_window(&p, at("2026-10-24T12:00:00Z")).0,
            at("2026-10-25T00:30:00Z")
        );
        // 2026-03-29: 02:00-03:00 is skipped; 02:30 means 03:00 CEST (01:00 UTC).
        let (open, close) = next_window(&p, at("2026-03-28T12:00:00Z"));
        assert_eq!(
            (open, close),
            (at("2026-03-29T01:00:00Z"), at("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_across_the_november_change() {
        // EDT ends Sunday 2026-11-01 02:00 -> 01:00 EST.
        let p = policy(chrono_tz::America::New_York, "09:00-18:00");
        assert_eq!(
            next_window(&p, at("2026-10-30T12:00:00Z")).0,
            at("2026-10-30T13:00:00Z")
        );
        let (open, close) = next_window(&p, at("2026-10-30T22:00:00Z"));
        assert_eq!(
            (open, close),
            (at("2026-11-02T14:00:00Z"), at("2026-11-02T23:00:00Z"))
        );
        // A local day that straddles UTC midnight.
        assert_eq!(
            local_date(p.timezone, at("2026-11-03T02:00:00Z")).to_string(),
            "2026-11-02"
        );
    }
}
