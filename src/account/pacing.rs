//! May this account send its oldest waiting job now, and if not, until when must it wait?
//!
//! One pure decision per account, clock and jitter passed in. Precedence: paused > hold >
//! spent quota > pacing (working window, daily cap, spacing) > an unknown or stale quota.
//! The quota endpoint is asked only when everything else would let the job go, so an
//! account waiting for Monday morning does not poll it.

use super::policy::AccountPolicy;
use super::quota::{self, Quota};
use super::window;
use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;

/// What leadlink knows about one account at the moment of deciding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountFacts {
    /// Set when the API says the account cannot send (`enabled = false`, status `ERROR`).
    pub disabled: Option<String>,
    /// The API's 24-hour hold from a 429.
    pub hold_until: Option<DateTime<Utc>>,
    /// The week is spent until then (the 429's `weeklyReset`).
    pub blocked_until: Option<DateTime<Utc>>,
    /// The last reading of the quota, from headers or the endpoint.
    pub quota: Option<Quota>,
    /// Our sends since `quota.observed_at` (0 when the store already took them off).
    pub sends_since_quota: u32,
    /// Our sends in the account's local day of `now` (see [`sends_on_local_day`]).
    pub sends_today: u32,
    /// Our most recent send on this account.
    pub last_send_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldReason {
    /// The API holds connection requests after the weekly limit was exceeded.
    Hold,
    /// The week's quota, less the reserve, is spent.
    QuotaSpent,
    /// The reset has passed by our clock, but a reading taken since still says nothing
    /// remains: the API's clock is behind; the quota is read again shortly.
    ResetPending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledReason {
    OutsideWorkingHours,
    DailyCap,
    Spacing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the oldest waiting job now.
    Send,
    /// No call before `until` (job status `held`, `retryAt = until`).
    Held {
        until: DateTime<Utc>,
        hold_until: Option<DateTime<Utc>>,
        reason: HeldReason,
    },
    /// Pacing: not before `at` (job status `scheduled`, `retryAt = at`).
    Scheduled {
        at: DateTime<Utc>,
        reason: ScheduledReason,
    },
    /// The account must not send until someone acts (status `paused`).
    Paused { reason: String },
    /// Read `GET /account/{id}/quota`, record it in the facts, and decide again.
    NeedQuota,
}

impl fmt::Display for HeldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeldReason::Hold => "the account is on hold after reaching its weekly limit",
            HeldReason::QuotaSpent => "the account's weekly quota is spent until the weekly reset",
            HeldReason::ResetPending => {
                "the weekly reset has passed, but ConnectSafely still reports nothing remaining \
                 (its clock is behind); reading the quota again shortly"
            }
        })
    }
}

impl fmt::Display for ScheduledReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduledReason::OutsideWorkingHours => "outside the account's working hours",
            ScheduledReason::DailyCap => "the account's daily cap is reached",
            ScheduledReason::Spacing => "waiting out the spacing between sends",
        })
    }
}

/// The decision for the account's oldest waiting job at `now`.
///
/// `jitter_sample` in `[0, 1)` picks how much of `policy.jitter` is added. It must stay the
/// same until the next send (see [`jitter_sample`]): a fresh draw at every evaluation would
/// move a scheduled job's ETA each time it falls due.
pub fn decide(
    policy: &AccountPolicy,
    facts: &AccountFacts,
    now: DateTime<Utc>,
    jitter_sample: f64,
) -> Decision {
    if policy.paused {
        return Decision::Paused {
            reason: "the account is paused in the configuration".into(),
        };
    }
    if let Some(reason) = &facts.disabled {
        return Decision::Paused {
            reason: reason.clone(),
        };
    }
    let hold = facts.hold_until.filter(|t| *t > now);
    let blocked = facts.blocked_until.filter(|t| *t > now);
    let spent = quota::spent_until(
        facts.quota.as_ref(),
        policy.reserve,
        facts.sends_since_quota,
        now,
    );
    if let Some(until) = [hold, blocked, spent].into_iter().flatten().max() {
        return Decision::Held {
            until,
            hold_until: hold,
            reason: if hold.is_some() {
                HeldReason::Hold
            } else {
                HeldReason::QuotaSpent
            },
        };
    }
    if let Some(until) = quota::reset_pending_until(
        facts.quota.as_ref(),
        policy.reserve,
        facts.sends_since_quota,
        now,
    ) {
        return Decision::Held {
            until,
            hold_until: None,
            reason: HeldReason::ResetPending,
        };
    }
    if policy.pacing
        && let Some((at, reason)) = next_paced_send(policy, facts, now, jitter_sample)
    {
        return Decision::Scheduled { at, reason };
    }
    let hold_ended = facts.hold_until.max(facts.blocked_until);
    if quota::needs_quota_read(facts.quota.as_ref(), hold_ended, now, policy.quota_refresh) {
        return Decision::NeedQuota;
    }
    Decision::Send
}

/// The decision right after the quota was read: `NeedQuota` then means that the fresh
/// reading is already past its own reset (the API's clock lags ours) or that the API gave
/// no CONNECT quota. A reading that says nothing remains is never sent on: wait a moment and
/// read again.
pub fn after_fresh_reading(
    decision: Decision,
    policy: &AccountPolicy,
    facts: &AccountFacts,
    now: DateTime<Utc>,
) -> Decision {
    let spent = facts
        .quota
        .as_ref()
        .is_some_and(|q| quota::remaining_for_us(q, policy.reserve, facts.sends_since_quota) <= 0);
    match decision {
        Decision::NeedQuota if spent => Decision::Held {
            until: now + quota::RESET_LAG_WAIT.0,
            hold_until: None,
            reason: HeldReason::ResetPending,
        },
        other => other,
    }
}

/// When pacing lets the next send go, if later than `now`.
fn next_paced_send(
    policy: &AccountPolicy,
    facts: &AccountFacts,
    now: DateTime<Utc>,
    jitter_sample: f64,
) -> Option<(DateTime<Utc>, ScheduledReason)> {
    let jitter = scale(policy.jitter, jitter_sample);
    let mut at = now;
    let mut reason = None;
    if let Some(last) = facts.last_send_at {
        let ready = add(add(last, policy.min_spacing), jitter);
        if ready > at {
            (at, reason) = (ready, Some(ScheduledReason::Spacing));
        }
    }
    let (open, close) = window::next_window(policy, at);
    if open > at {
        (at, reason) = (
            opening(open, close, jitter),
            Some(ScheduledReason::OutsideWorkingHours),
        );
    }
    let tz = policy.timezone;
    let day = window::local_date(tz, at);
    let sent = if day == window::local_date(tz, now) {
        facts.sends_today
    } else {
        0
    };
    if sent >= policy.daily_cap_on(day) {
        // A later day starts at zero sends, and its cap is at least 1.
        let tomorrow = window::day_bounds(tz, day).1;
        let (open, close) = window::next_window(policy, tomorrow);
        (at, reason) = (
            opening(open, close, jitter),
            Some(ScheduledReason::DailyCap),
        );
    }
    reason.filter(|_| at > now).map(|reason| (at, reason))
}

/// A window's first send: a jittered moment after it opens, so the account does not start
/// at 09:00:00 sharp every day, kept in the first half of short windows.
fn opening(open: DateTime<Utc>, close: DateTime<Utc>, jitter: TimeDelta) -> DateTime<Utc> {
    add(open, jitter.min((close - open) / 2))
}

fn scale(delta: TimeDelta, sample: f64) -> TimeDelta {
    let sample = if sample.is_finite() {
        sample.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Milliseconds in an f64 are exact far beyond a day.
    TimeDelta::milliseconds((delta.num_milliseconds() as f64 * sample) as i64)
}

fn add(t: DateTime<Utc>, delta: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A jitter sample in `[0, 1)` derived from the account and its last send: stable until the
/// next send without storing anything, different after each send and between accounts.
pub fn jitter_sample(account_id: &str, last_send_at: Option<DateTime<Utc>>) -> f64 {
    // FNV-1a over the id, then splitmix64 with the send instant: fixed arithmetic, so every
    // process and every build draws the same sample.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in account_id.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let millis = last_send_at.map_or(0, |t| t.timestamp_millis());
    let mut z = hash ^ (millis as u64);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `[start, end)` of the account's local day containing `now`: the store counts our sends
/// in it for [`AccountFacts::sends_today`].
pub fn local_day(policy: &AccountPolicy, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    window::day_bounds(policy.timezone, window::local_date(policy.timezone, now))
}

/// How many of `sends` fall in the account's local day containing `now`.
pub fn sends_on_local_day(
    policy: &AccountPolicy,
    now: DateTime<Utc>,
    sends: impl IntoIterator<Item = DateTime<Utc>>,
) -> u32 {
    let (start, end) = local_day(policy, now);
    let count = sends
        .into_iter()
        .filter(|t| start <= *t && *t < end)
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::policy::{WorkingDays, WorkingHours};
    use crate::account::quota::QuotaSource;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A quota read just now with plenty left.
    fn fresh(now: DateTime<Utc>) -> AccountFacts {
        AccountFacts {
            quota: Some(Quota {
                limit: 90,
                used: 10,
                remaining: 80,
                reset_at: crate::account::next_weekly_reset(now),
                observed_at: now,
                source: QuotaSource::Endpoint,
            }),
            ..AccountFacts::default()
        }
    }

    const WEDNESDAY: &str = "2026-11-04T10:00:00Z";

    #[test]
    fn sends_inside_the_window_with_a_fresh_quota() {
        let now = at(WEDNESDAY);
        assert_eq!(
            decide(&AccountPolicy::default(), &fresh(now), now, 0.5),
            Decision::Send
        );
    }

    #[test]
    fn unknown_or_stale_quota_is_read_first() {
        let now = at(WEDNESDAY);
        let policy = AccountPolicy::default();
        assert_eq!(
            decide(&policy, &AccountFacts::default(), now, 0.5),
            Decision::NeedQuota
        );
        let old = fresh(now - TimeDelta::minutes(15));
        assert_eq!(decide(&policy, &old, now, 0.5), Decision::NeedQuota);
    }

    #[test]
    fn a_spent_reading_taken_after_its_reset_is_never_sent_on() {
        let reset = at("2026-11-09T00:00:00Z");
        let now = reset + TimeDelta::seconds(1);
        // Read just now, after its own reset, and still spent: the API's clock lags.
        let facts = AccountFacts {
            quota: Some(Quota {
                limit: 90,
                used: 90,
                remaining: 0,
                reset_at: reset,
                observed_at: now,
                source: QuotaSource::Endpoint,
            }),
            ..AccountFacts::default()
        };
        let policy = AccountPolicy {
            pacing: false,
            ..AccountPolicy::default()
        };
        assert_eq!(
            decide(&policy, &facts, now, 0.5),
            Decision::Held {
                until: now + TimeDelta::seconds(2),
                hold_until: None,
                reason: HeldReason::ResetPending,
            }
        );
        // Once that wait is over, the quota is read again ...
        let later = now + TimeDelta::seconds(2);
        assert_eq!(decide(&policy, &facts, later, 0.5), Decision::NeedQuota);
        // ... and a reading that still says nothing remains, however late the gate looks at
        // it, is no leave to send.
        assert_eq!(
            after_fresh_reading(Decision::NeedQuota, &policy, &facts, later),
            Decision::Held {
                until: later + TimeDelta::seconds(2),
                hold_until: None,
                reason: HeldReason::ResetPending,
            }
        );
        let room = AccountFacts {
            quota: facts.quota.map(|q| Quota {
                remaining: 5,
                used: 85,
                ..q
            }),
            ..facts.clone()
        };
        assert_eq!(
            after_fresh_reading(Decision::NeedQuota, &policy, &room, later),
            Decision::NeedQuota
        );
    }

    #[test]
    fn precedence_paused_then_hold_then_quota_then_pacing() {
        let now = at("2026-11-07T10:00:00Z"); // a Saturday: pacing would schedule
        let policy = AccountPolicy::default();
        let mut facts = fresh(now);
        let spent = Quota {
            used: 90,
            remaining: 0,
            ..facts.quota.unwrap()
        };
        facts.quota = Some(spent);
        facts.hold_until = Some(at("2026-11-08T09:00:00Z"));
        let paused = AccountPolicy {
            paused: true,
            ..policy.clone()
        };
        assert!(matches!(
            decide(&paused, &facts, now, 0.0),
            Decision::Paused { .. }
        ));
        let disabled = AccountFacts {
            disabled: Some("account disabled".into()),
            ..facts.clone()
        };
        assert!(matches!(
            decide(&policy, &disabled, now, 0.0),
            Decision::Paused { .. }
        ));
        // Held until the later of the hold and the reset.
        assert_eq!(
            decide(&policy, &facts, now, 0.0),
            Decision::Held {
                until: at("2026-11-09T00:00:00Z"),
                hold_until: Some(at("2026-11-08T09:00:00Z")),
                reason: HeldReason::Hold,
            }
        );
        facts.hold_until = None;
        assert!(matches!(
            decide(&policy, &facts, now, 0.0),
            Decision::Held {
                reason: HeldReason::QuotaSpent,
                ..
            }
        ));
        facts.quota = Some(Quota {
            used: 80,
            remaining: 10,
            ..spent
        });
        assert!(matches!(
            decide(&policy, &facts, now, 0.0),
            Decision::Scheduled {
                reason: ScheduledReason::OutsideWorkingHours,
                ..
            }
        ));
    }

    #[test]
    fn the_reserve_is_left_for_people() {
        let now = at(WEDNESDAY);
        let mut facts = fresh(now);
        facts.sends_since_quota = 75;
        let policy = AccountPolicy {
            reserve: 5,
            ..AccountPolicy::default()
        };
        assert!(matches!(
            decide(&policy, &facts, now, 0.0),
            Decision::Held { .. }
        ));
        facts.sends_since_quota = 74;
        assert_eq!(decide(&policy, &facts, now, 0.0), Decision::Send);
    }

    #[test]
    fn after_a_hold_the_quota_is_read_again() {
        let now = at(WEDNESDAY);
        let mut facts = fresh(now - TimeDelta::minutes(5));
        facts.hold_until = Some(now - TimeDelta::minutes(1));
        assert_eq!(
            decide(&AccountPolicy::default(), &facts, now, 0.0),
            Decision::NeedQuota
        );
    }

    #[test]
    fn spacing_plus_jitter_after_the_last_send() {
        let now = at(WEDNESDAY);
        let mut facts = fresh(now);
        facts.last_send_at = Some(now - TimeDelta::minutes(5));
        facts.sends_today = 1;
        let policy = AccountPolicy::default();
        assert_eq!(
            decide(&policy, &facts, now, 0.5),
            Decision::Scheduled {
                at: now + TimeDelta::minutes(20),
                reason: ScheduledReason::Spacing,
            }
        );
        // Evaluated again at its ETA with the same sample, the job goes.
        let mut later = fresh(now + TimeDelta::minutes(20));
        later.last_send_at = facts.last_send_at;
        assert_eq!(
            decide(&policy, &later, now + TimeDelta::minutes(20), 0.5),
            Decision::Send
        );
    }

    #[test]
    fn daily_cap_moves_to_the_next_working_day() {
        let friday = at("2026-11-06T15:00:00Z");
        let mut facts = fresh(friday);
        facts.sends_today = 18;
        facts.last_send_at = Some(friday - TimeDelta::hours(1));
        assert_eq!(
            decide(&AccountPolicy::default(), &facts, friday, 0.0),
            Decision::Scheduled {
                at: at("2026-11-09T09:00:00Z"),
                reason: ScheduledReason::DailyCap,
            }
        );
        // Spacing that ends after closing time moves to the next opening, plus jitter.
        facts.sends_today = 3;
        facts.last_send_at = Some(at("2026-11-06T17:50:00Z"));
        assert_eq!(
            decide(
                &AccountPolicy::default(),
                &facts,
                at("2026-11-06T17:55:00Z"),
                0.5
            ),
            Decision::Scheduled {
                at: at("2026-11-09T09:05:00Z"),
                reason: ScheduledReason::OutsideWorkingHours,
            }
        );
    }

    #[test]
    fn warm_up_caps_the_first_weeks() {
        let now = at(WEDNESDAY);
        let policy = AccountPolicy {
            warmup: vec![3, 8],
            warmup_start: Some("2026-11-02".parse().unwrap()),
            ..AccountPolicy::default()
        };
        let mut facts = fresh(now);
        facts.sends_today = 3;
        assert!(matches!(
            decide(&policy, &facts, now, 0.0),
            Decision::Scheduled {
                reason: ScheduledReason::DailyCap,
                ..
            }
        ));
        let week_two = at("2026-11-11T10:00:00Z");
        let mut facts = fresh(week_two);
        facts.sends_today = 3;
        assert_eq!(decide(&policy, &facts, week_two, 0.0), Decision::Send);
    }

    #[test]
    fn pacing_off_leaves_quota_and_holds() {
        let saturday_night = at("2026-11-07T23:00:00Z");
        let policy = AccountPolicy {
            pacing: false,
            ..AccountPolicy::default()
        };
        let mut facts = fresh(saturday_night);
        facts.sends_today = 500;
        facts.last_send_at = Some(saturday_night);
        assert_eq!(decide(&policy, &facts, saturday_night, 0.0), Decision::Send);
        facts.hold_until = Some(saturday_night + TimeDelta::hours(1));
        assert!(matches!(
            decide(&policy, &facts, saturday_night, 0.0),
            Decision::Held { .. }
        ));
    }

    #[test]
    fn berlin_monday_after_the_october_change() {
        // Friday 2026-10-23 after closing; summer time ends on the Sunday between.
        let policy = AccountPolicy {
            timezone: chrono_tz::Europe::Berlin,
            ..AccountPolicy::default()
        };
        let now = at("2026-10-23T17:00:00Z");
        let facts = fresh(now);
        assert_eq!(
            decide(&policy, &facts, now, 0.0),
            Decision::Scheduled {
                at: at("2026-10-26T08:00:00Z"),
                reason: ScheduledReason::OutsideWorkingHours,
            }
        );
    }

    #[test]
    fn new_york_local_day_and_short_window() {
        let policy = AccountPolicy {
            timezone: chrono_tz::America::New_York,
            working_hours: WorkingHours::parse("09:00-09:04").unwrap(),
            working_days: WorkingDays::parse(&["Mon"]).unwrap(),
            ..AccountPolicy::default()
        };
        // Jitter is kept in the first half of a short window.
        let now = at("2026-10-30T12:00:00Z");
        assert_eq!(
            decide(&policy, &fresh(now), now, 0.99),
            Decision::Scheduled {
                at: at("2026-11-02T14:02:00Z"),
                reason: ScheduledReason::OutsideWorkingHours,
            }
        );
        // 21:30 EST on Monday is still Monday there.
        let sends = [at("2026-11-03T02:30:00Z"), at("2026-11-03T05:30:00Z")];
        assert_eq!(
            sends_on_local_day(&policy, at("2026-11-02T14:00:00Z"), sends),
            1
        );
    }

    #[test]
    fn jitter_samples_are_stable_and_spread() {
        let t = Some(at(WEDNESDAY));
        assert_eq!(jitter_sample("a", t), jitter_sample("a", t));
        assert_ne!(jitter_sample("a", t), jitter_sample("b", t));
        let samples: Vec<f64> = (0..1000)
            .map(|i| jitter_sample("a", Some(at(WEDNESDAY) + TimeDelta::seconds(i))))
            .collect();
        assert!(samples.iter().all(|s| (0.0..1.0).contains(s)));
        let mean = samples.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }
}
