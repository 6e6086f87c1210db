//! The week's connection-request quota as the API last reported it, and what may be spent.
//!
//! The API's `used` counts every action on the account, other tools' and people's too, so
//! its numbers are the authority: leadlink only subtracts its own sends made since.

use chrono::{DateTime, TimeDelta, Utc};

/// Where a quota reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSource {
    /// The `X-RateLimit-*` headers of a response.
    Headers,
    /// `GET /account/{id}/quota`.
    Endpoint,
}

/// One reading of an account's weekly CONNECT quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub used: u32,
    pub remaining: u32,
    /// When the window ends and `used` returns to 0 (the API's, never computed here).
    pub reset_at: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
    pub source: QuotaSource,
}

impl Quota {
    /// Whether this reading describes the window running at `now`.
    pub fn is_current(&self, now: DateTime<Utc>) -> bool {
        now < self.reset_at
    }
}

/// What leadlink may still send this window: the API's remaining (or limit - used, whichever
/// is smaller), less the `reserve` kept for people, less our sends since the reading.
pub fn remaining_for_us(quota: &Quota, reserve: u32, sends_since_observed: u32) -> i64 {
    let remaining = quota.remaining.min(quota.limit.saturating_sub(quota.used));
    i64::from(remaining) - i64::from(reserve) - i64::from(sends_since_observed)
}

/// When a known quota has nothing left for us: its reset. An old reading of the running
/// window is good enough for this, as `used` only grows within a window.
pub fn spent_until(
    quota: Option<&Quota>,
    reserve: u32,
    sends_since_observed: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    quota
        .filter(|q| q.is_current(now) && remaining_for_us(q, reserve, sends_since_observed) <= 0)
        .map(|q| q.reset_at)
}

/// The shortest and longest wait before reading again a quota whose reset has passed by
/// our clock but not by the API's.
pub const RESET_LAG_WAIT: (TimeDelta, TimeDelta) = (TimeDelta::seconds(2), TimeDelta::minutes(5));

/// A reading taken after its own reset that still says nothing remains: the API's clock is
/// behind ours and its week has not turned yet, so a send now could draw the 24-hour hold.
/// Until when to wait before reading again: a few seconds after the reading, growing with
/// how long after the reset it was taken; `None` once that wait is over (read again).
pub fn reset_pending_until(
    quota: Option<&Quota>,
    reserve: u32,
    sends_since_observed: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (shortest, longest) = RESET_LAG_WAIT;
    quota
        .filter(|q| {
            !q.is_current(now)
                && q.observed_at >= q.reset_at
                && remaining_for_us(q, reserve, sends_since_observed) <= 0
        })
        .map(|q| q.observed_at + (q.observed_at - q.reset_at).clamp(shortest, longest))
        .filter(|until| *until > now)
}

/// Whether a 429 hold or a block until the week's end still stands at `now`.
pub fn held(
    hold_until: Option<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    hold_until
        .max(blocked_until)
        .is_some_and(|until| until > now)
}

/// Whether the quota must be read from the endpoint before a send: nothing is known, the
/// reading is older than `stale_after` (another tool may have spent some), its window has
/// reset, or a hold (`hold_ended`, the end of the last hold or block) ended since.
pub fn needs_quota_read(
    known: Option<&Quota>,
    hold_ended: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stale_after: TimeDelta,
) -> bool {
    let Some(quota) = known else {
        return true;
    };
    let after_hold = hold_ended.is_some_and(|end| end <= now && quota.observed_at < end);
    !quota.is_current(now) || now - quota.observed_at >= stale_after || after_hold
}

/// One window's numbers as a reading reports them (the headers may leave any of them out),
/// in the store's integer width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    pub limit: Option<i32>,
    pub used: Option<i32>,
    pub remaining: Option<i32>,
    pub reset_at: Option<DateTime<Utc>>,
}

/// What to store when `new` arrives on top of `stored`. With `lower_only`, a reading of the
/// same window (the same `reset_at`, both possibly unknown) may only raise `used` and lower
/// `remaining`: it may have left the API before another worker's send, and must not give
/// that send's slot back. Otherwise, or in a new window, `new` stands as it is. A number
/// missing on one side keeps the other's.
pub fn merge_observation(
    stored: Option<&Observation>,
    new: &Observation,
    lower_only: bool,
) -> Observation {
    let Some(stored) = stored.filter(|s| lower_only && s.reset_at == new.reset_at) else {
        return *new;
    };
    let keep = |a: Option<i32>, b: Option<i32>, pick: fn(i32, i32) -> i32| match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    };
    Observation {
        used: keep(stored.used, new.used, i32::max),
        remaining: keep(stored.remaining, new.remaining, i32::min),
        ..*new
    }
}

/// A reading as a shadow-mode account takes it: its `shadow_sends` of the reading's week
/// count as sent, so that pacing follows the schedule live mode would.
pub fn with_shadow_sends(read: Observation, shadow_sends: i64) -> Observation {
    let n = i32::try_from(shadow_sends.max(0)).unwrap_or(i32::MAX);
    Observation {
        used: read.used.map(|used| used.saturating_add(n)),
        remaining: read
            .remaining
            .map(|remaining| remaining.saturating_sub(n).max(0)),
        ..read
    }
}

/// How many of the slots taken at `taken_at` go back onto the `remaining` of a reading
/// observed at `observed_at`: only those taken since, which the reading had counted off.
pub fn slots_to_add_back(taken_at: &[DateTime<Utc>], observed_at: DateTime<Utc>) -> i32 {
    let since = taken_at.iter().filter(|at| **at >= observed_at).count();
    i32::try_from(since).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn quota(used: u32, observed: &str) -> Quota {
        Quota {
            limit: 90,
            used,
            remaining: 90 - used,
            reset_at: at("2026-11-09T00:00:00Z"),
            observed_at: at(observed),
            source: QuotaSource::Endpoint,
        }
    }

    #[test]
    fn a_reading_after_its_reset_that_says_nothing_remains_waits_and_reads_again() {
        let reset = at("2026-11-09T00:00:00Z");
        let spent = |observed: &str| Quota {
            observed_at: at(observed),
            ..quota(90, "2026-11-04T10:00:00Z")
        };
        // Read one second after the reset by our clock: the API has not turned the week.
        let lagging = spent("2026-11-09T00:00:01Z");
        let now = at("2026-11-09T00:00:01Z");
        assert_eq!(
            reset_pending_until(Some(&lagging), 0, 0, now),
            Some(now + TimeDelta::seconds(2))
        );
        // Still nothing after a minute: the wait grows, up to five minutes.
        let now = at("2026-11-09T00:01:00Z");
        let still = spent("2026-11-09T00:01:00Z");
        assert_eq!(
            reset_pending_until(Some(&still), 0, 0, now),
            Some(now + TimeDelta::minutes(1))
        );
        let now = at("2026-11-09T03:00:00Z");
        let late = spent("2026-11-09T03:00:00Z");
        assert_eq!(
            reset_pending_until(Some(&late), 0, 0, now),
            Some(now + TimeDelta::minutes(5))
        );
        // Once the wait is over, nothing holds the account back from reading again.
        assert_eq!(
            reset_pending_until(
                Some(&lagging),
                0,
                0,
                lagging.observed_at + TimeDelta::seconds(2)
            ),
            None
        );
        // A reading from before the reset is just stale (read it), and one with room is fine.
        let before = spent("2026-11-08T23:59:00Z");
        assert_eq!(reset_pending_until(Some(&before), 0, 0, reset), None);
        let room = Quota {
            remaining: 90,
            used: 0,
            ..lagging
        };
        assert_eq!(reset_pending_until(Some(&room), 0, 0, reset), None);
    }

    #[test]
    fn reserve_and_our_later_sends_come_off_the_remaining() {
        let q = quota(80, "2026-11-04T10:00:00Z");
        assert_eq!(remaining_for_us(&q, 0, 0), 10);
        assert_eq!(remaining_for_us(&q, 5, 3), 2);
        assert_eq!(remaining_for_us(&q, 5, 6), -1);
        // Headers that disagree: the smaller figure wins.
        let odd = Quota { remaining: 20, ..q };
        assert_eq!(remaining_for_us(&odd, 0, 0), 10);
    }

    #[test]
    fn spent_until_the_reset_of_the_running_window_only() {
        let q = quota(85, "2026-11-04T10:00:00Z");
        let now = at("2026-11-06T10:00:00Z");
        assert_eq!(spent_until(Some(&q), 5, 0, now), Some(q.reset_at));
        assert_eq!(spent_until(Some(&q), 0, 4, now), None);
        assert_eq!(spent_until(Some(&q), 0, 5, now), Some(q.reset_at));
        assert_eq!(spent_until(Some(&q), 5, 0, q.reset_at), None);
        assert_eq!(spent_until(None, 5, 0, now), None);
    }

    #[test]
    fn read_when_unknown_stale_reset_or_after_a_hold() {
        let stale = TimeDelta::minutes(15);
        let q = quota(10, "2026-11-04T10:00:00Z");
        assert!(needs_quota_read(
            None,
            None,
            at("2026-11-04T10:00:00Z"),
            stale
        ));
        assert!(!needs_quota_read(
            Some(&q),
            None,
            at("2026-11-04T10:14:59Z"),
            stale
        ));
        assert!(needs_quota_read(
            Some(&q),
            None,
            at("2026-11-04T10:15:00Z"),
            stale
        ));
        let fresh_after_reset = Quota {
            observed_at: at("2026-11-08T23:59:00Z"),
            ..q
        };
        assert!(needs_quota_read(
            Some(&fresh_after_reset),
            None,
            at("2026-11-09T00:00:00Z"),
            stale
        ));
        // A hold that ended after the reading: read again; one that ended before: no need.
        let hold = Some(at("2026-11-04T10:05:00Z"));
        assert!(!needs_quota_read(
            Some(&q),
            hold,
            at("2026-11-04T10:04:00Z"),
            stale
        ));
        assert!(needs_quota_read(
            Some(&q),
            hold,
            at("2026-11-04T10:06:00Z"),
            stale
        ));
        let read_after = Quota {
            observed_at: at("2026-11-04T10:06:00Z"),
            ..q
        };
        assert!(!needs_quota_read(
            Some(&read_after),
            hold,
            at("2026-11-04T10:07:00Z"),
            stale
        ));
    }

    fn observation(used: Option<i32>, remaining: Option<i32>, reset: Option<&str>) -> Observation {
        Observation {
            limit: Some(90),
            used,
            remaining,
            reset_at: reset.map(at),
        }
    }

    #[test]
    fn a_reading_of_the_same_window_only_lowers_what_remains() {
        let reset = Some("2026-11-09T00:00:00Z");
        let stored = observation(Some(50), Some(40), reset);
        // An answer that left before another send: it must not give that slot back.
        let older = observation(Some(49), Some(41), reset);
        assert_eq!(merge_observation(Some(&stored), &older, true), stored);
        let newer = observation(Some(52), Some(38), reset);
        assert_eq!(merge_observation(Some(&stored), &newer, true), newer);
        // Not only lowering (a reading with nothing in flight): the reading stands.
        assert_eq!(merge_observation(Some(&stored), &older, false), older);
        // Nothing stored yet: the reading stands.
        assert_eq!(merge_observation(None, &older, true), older);
        // The limit is always the latest.
        let raised = Observation {
            limit: Some(100),
            ..older
        };
        assert_eq!(
            merge_observation(Some(&stored), &raised, true).limit,
            Some(100)
        );
    }

    #[test]
    fn a_new_window_replaces_the_stored_numbers() {
        let stored = observation(Some(90), Some(0), Some("2026-11-09T00:00:00Z"));
        let fresh = observation(Some(1), Some(89), Some("2026-11-16T00:00:00Z"));
        assert_eq!(merge_observation(Some(&stored), &fresh, true), fresh);
        // A window that became known, or unknown, is a new one too.
        let unknown = observation(Some(3), Some(87), None);
        assert_eq!(merge_observation(Some(&stored), &unknown, true), unknown);
        assert_eq!(merge_observation(Some(&unknown), &stored, true), stored);
    }

    #[test]
    fn a_missing_number_keeps_the_other_side() {
        // Both windows unknown count as the same window.
        let stored = observation(Some(50), None, None);
        let new = observation(None, Some(40), None);
        assert_eq!(
            merge_observation(Some(&stored), &new, true),
            observation(Some(50), Some(40), None)
        );
        let nothing = observation(None, None, None);
        assert_eq!(merge_observation(Some(&nothing), &nothing, true), nothing);
    }

    #[test]
    fn only_slots_taken_since_the_reading_go_back() {
        let observed = at("2026-11-04T10:00:00Z");
        let taken = [
            at("2026-11-04T09:59:59Z"),
            observed,
            at("2026-11-04T10:00:01Z"),
        ];
        assert_eq!(slots_to_add_back(&taken, observed), 2);
        assert_eq!(slots_to_add_back(&taken[..1], observed), 0);
        assert_eq!(slots_to_add_back(&[], observed), 0);
    }

    #[test]
    fn shadow_turns_count_as_sent_in_a_reading() {
        let read = Observation {
            limit: Some(90),
            used: Some(80),
            remaining: Some(10),
            reset_at: None,
        };
        let shadowed = with_shadow_sends(read, 4);
        assert_eq!((shadowed.used, shadowed.remaining), (Some(84), Some(6)));
        assert_eq!(with_shadow_sends(read, 30).remaining, Some(0));
        assert_eq!(with_shadow_sends(read, 0), read);
    }
}
