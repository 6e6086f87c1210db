//! The weekly connection-request quota of one LinkedIn account, as ConnectSafely enforces it.
//!
//! Pure: every operation takes `now`, nothing reads a clock or does I/O, so tests elsewhere can
//! replay a scenario against this model and use it as their referee.
//!
//! The rules (from `reference/connectsafely-api.md`):
//! - `limit` connection requests per window (default 90); the window ends at `next_reset`
//!   (default: the next Monday 00:00 UTC) and then restarts for `week` (default 7 days).
//! - A request made when `used >= limit` starts a hold of `hold` (default 24 hours) and is refused.
//! - While a hold lasts, every request is refused, even after a reset has zeroed `used`.
//! - Only sends count; refused requests do not.

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc};

/// Default length of a quota window.
pub const WEEK: TimeDelta = TimeDelta::days(7);

/// The first Monday 00:00 UTC strictly after `now`: when the vendor's weekly window resets.
///
/// At exactly Monday 00:00 the reset has just happened, so the answer is a week later.
pub fn weekly_reset_after(now: DateTime<Utc>) -> DateTime<Utc> {
    let days_since_monday = i64::from(now.weekday().num_days_from_monday());
    let this_monday = (now.date_naive() - TimeDelta::days(days_since_monday))
        .and_time(NaiveTime::MIN)
        .and_utc();
    this_monday + WEEK
}

/// One account's quota state. Fields are public so a referee can read and arrange them; call
/// [`AccountQuota::roll`] (the methods below do it) before reading them at a new instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountQuota {
    /// Connection requests allowed per window (where 429 starts).
    pub limit: u32,
    /// Connection requests counted in the current window, by anyone using the account.
    pub used: u32,
    /// When the running hold ends; `None` when there is none.
    pub hold_until: Option<DateTime<Utc>>,
    /// How long a hold lasts once the limit is exceeded.
    pub hold: TimeDelta,
    /// When the current window ends and `used` returns to 0.
    pub next_reset: DateTime<Utc>,
    /// Length of every window after the current one.
    pub week: TimeDelta,
    /// When `used` reached `limit` in the current window.
    pub limit_reached_at: Option<DateTime<Utc>>,
}

/// The account's counters after a send, or at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used: u32,
    pub limit: u32,
    pub remaining: u32,
    pub reset_at: DateTime<Utc>,
}

/// Why a connection request was refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// This request found the window spent and started the hold.
    LimitExceeded {
        used: u32,
        limit: u32,
        hold_until: DateTime<Utc>,
        weekly_reset: DateTime<Utc>,
    },
    /// An earlier hold is still running.
    OnHold {
        hold_until: DateTime<Utc>,
        weekly_reset: DateTime<Utc>,
    },
}

impl Rejection {
    pub fn hold_until(&self) -> DateTime<Utc> {
        match *self {
            Rejection::LimitExceeded { hold_until, .. } | Rejection::OnHold { hold_until, .. } => {
                hold_until
            }
        }
    }

    pub fn weekly_reset(&self) -> DateTime<Utc> {
        match *self {
            Rejection::LimitExceeded { weekly_reset, .. }
            | Rejection::OnHold { weekly_reset, .. } => weekly_reset,
        }
    }
}

impl AccountQuota {
    /// A fresh account at `now`: nothing used, window ending next Monday 00:00 UTC.
    pub fn new(limit: u32, hold: TimeDelta, now: DateTime<Utc>) -> Self {
        AccountQuota {
            limit,
            used: 0,
            hold_until: None,
            hold,
            next_reset: weekly_reset_after(now),
            week: WEEK,
            limit_reached_at: None,
        }
    }

    /// Brings the state to `now`: applies every reset that has passed and drops an ended hold.
    /// A hold is not touched by a reset; only its own end clears it.
    pub fn roll(&mut self, now: DateTime<Utc>) {
        if now >= self.next_reset {
            // Arithmetic instead of a loop: a short test window may be far behind `now`.
            let behind = (now - self.next_reset).num_milliseconds();
            let week = self.week.num_milliseconds().max(1);
            let windows = behind / week + 1;
            self.next_reset += TimeDelta::milliseconds(week.saturating_mul(windows));
            self.used = 0;
            self.limit_reached_at = None;
        }
        if self.hold_until.is_some_and(|until| now >= until) {
            self.hold_until = None;
        }
    }

    /// The end of the hold running at `now`, if any.
    pub fn hold_active(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.hold_until.filter(|until| now < *until)
    }

    /// Whether a connection request may be sent at `now`. Refusing because the window is spent
    /// starts the hold, as the vendor does; a request that is let through is not counted until
    /// [`AccountQuota::record`].
    pub fn admit(&mut self, now: DateTime<Utc>) -> Result<(), Rejection> {
        self.roll(now);
        if let Some(hold_until) = self.hold_active(now) {
            return Err(Rejection::OnHold {
                hold_until,
                weekly_reset: self.next_reset,
            });
        }
        if self.used >= self.limit {
            let hold_until = now
                .checked_add_signed(self.hold)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            self.hold_until = Some(hold_until);
            self.limit_reached_at.get_or_insert(now);
            return Err(Rejection::LimitExceeded {
                used: self.used,
                limit: self.limit,
                hold_until,
                weekly_reset: self.next_reset,
            });
        }
        Ok(())
    }

    /// Counts one sent connection request at `now`.
    pub fn record(&mut self, now: DateTime<Utc>) -> Usage {
        self.roll(now);
        self.used = self.used.saturating_add(1);
        if self.used >= self.limit {
            self.limit_reached_at.get_or_insert(now);
        }
        self.usage(now)
    }

    /// [`AccountQuota::admit`] then [`AccountQuota::record`]: one connection request that the
    /// profile side accepts.
    pub fn connect(&mut self, now: DateTime<Utc>) -> Result<Usage, Rejection> {
        self.admit(now)?;
        Ok(self.record(now))
    }

    /// The counters at `now`.
    pub fn usage(&mut self, now: DateTime<Utc>) -> Usage {
        self.roll(now);
        Usage {
            used: self.used,
            limit: self.limit,
            remaining: self.limit.saturating_sub(self.used),
            reset_at: self.next_reset,
        }
    }

    /// Whether the vendor would report the limit as reached: the window is spent or a hold runs.
    pub fn limit_reached(&mut self, now: DateTime<Utc>) -> bool {
        self.roll(now);
        self.used >= self.limit || self.hold_active(now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn quota(limit: u32, now: DateTime<Utc>) -> AccountQuota {
        AccountQuota::new(limit, TimeDelta::hours(24), now)
    }

    #[test]
    fn next_monday_midnight_from_any_instant() {
        // 2024-01-15 is a Monday.
        let monday = at("2024-01-22T00:00:00Z");
        for now in [
            "2024-01-15T00:00:00Z",
            "2024-01-15T00:00:00.001Z",
            "2024-01-16T10:30:00Z",
            "2024-01-20T12:00:00Z",
            "2024-01-21T23:59:59.999Z",
        ] {
            assert_eq!(weekly_reset_after(at(now)), monday, "from {now}");
        }
        assert_eq!(
            weekly_reset_after(at("2024-01-22T00:00:00Z")),
            at("2024-01-29T00:00:00Z")
        );
        // Across a month and a year boundary.
        assert_eq!(
            weekly_reset_after(at("2024-12-31T08:00:00Z")),
            at("2025-01-06T00:00:00Z")
        );
    }

    #[test]
    fn counts_up_to_the_limit_then_holds_for_24_hours() {
        let now = at("2024-01-15T09:00:00Z");
        let mut q = quota(3, now);
        for n in 1..=3 {
            let usage = q.connect(now).unwrap();
            assert_eq!((usage.used, usage.remaining), (n, 3 - n));
            assert_eq!(usage.reset_at, at("2024-01-22T00:00:00Z"));
        }
        assert_eq!(q.limit_reached_at, Some(now));
        let later = at("2024-01-16T10:30:00Z");
        assert_eq!(
            q.connect(later),
            Err(Rejection::LimitExceeded {
                used: 3,
                limit: 3,
                hold_until: at("2024-01-17T10:30:00Z"),
                weekly_reset: at("2024-01-22T00:00:00Z"),
            })
        );
        // The hold is not extended by requests made during it, and they are not counted.
        let during = at("2024-01-17T10:29:59Z");
        assert_eq!(
            q.connect(during),
            Err(Rejection::OnHold {
                hold_until: at("2024-01-17T10:30:00Z"),
                weekly_reset: at("2024-01-22T00:00:00Z"),
            })
        );
        assert_eq!(q.used, 3);
    }

    #[test]
    fn after_the_hold_a_still_spent_window_holds_again() {
        let now = at("2024-01-16T10:30:00Z");
        let mut q = quota(1, now);
        q.connect(now).unwrap();
        assert!(q.connect(now).is_err());
        let after = at("2024-01-17T10:30:00Z");
        assert_eq!(
            q.connect(after).unwrap_err().hold_until(),
            at("2024-01-18T10:30:00Z")
        );
    }

    #[test]
    fn monday_reset_zeroes_usage() {
        let now = at("2024-01-21T23:00:00Z");
        let mut q = quota(2, now);
        q.connect(now).unwrap();
        q.connect(now).unwrap();
        assert!(q.limit_reached(now));
        let monday = at("2024-01-22T00:00:00Z");
        let usage = q.connect(monday).unwrap();
        assert_eq!(usage.used, 1);
        assert_eq!(usage.reset_at, at("2024-01-29T00:00:00Z"));
        assert_eq!(q.limit_reached_at, None);
    }

    #[test]
    fn hold_outlasts_the_reset() {
        let sunday = at("2024-01-21T12:00:00Z");
        let mut q = quota(1, sunday);
        q.connect(sunday).unwrap();
        let rejection = q.connect(sunday).unwrap_err();
        assert_eq!(rejection.hold_until(), at("2024-01-22T12:00:00Z"));

        // Monday morning: the counter is back to 0 but the hold still refuses.
        let monday = at("2024-01-22T06:00:00Z");
        assert_eq!(q.usage(monday).used, 0);
        assert!(q.limit_reached(monday));
        assert_eq!(
            q.connect(monday),
            Err(Rejection::OnHold {
                hold_until: at("2024-01-22T12:00:00Z"),
                weekly_reset: at("2024-01-29T00:00:00Z"),
            })
        );
        let after = at("2024-01-22T12:00:00Z");
        assert_eq!(q.connect(after).unwrap().used, 1);
        assert_eq!(q.hold_until, None);
    }

    #[test]
    fn usage_by_other_tools_counts() {
        let now = at("2024-01-15T09:00:00Z");
        let mut q = quota(90, now);
        q.used = 88;
        assert_eq!(q.connect(now).unwrap().remaining, 1);
        q.connect(now).unwrap();
        assert!(matches!(
            q.connect(now),
            Err(Rejection::LimitExceeded { used: 90, .. })
        ));
        // Lowering the limit below what is used refuses the next request too.
        let mut q = quota(90, now);
        q.used = 10;
        q.limit = 5;
        assert!(q.connect(now).is_err());
    }

    #[test]
    fn short_custom_windows() {
        let start = at("2024-01-15T09:00:00Z");
        let mut q = quota(2, start);
        q.week = TimeDelta::seconds(10);
        q.next_reset = start + TimeDelta::seconds(10);
        q.hold = TimeDelta::seconds(3);
        q.connect(start).unwrap();
        q.connect(start).unwrap();
        let refused = start + TimeDelta::seconds(1);
        assert_eq!(
            q.connect(refused).unwrap_err().hold_until(),
            start + TimeDelta::seconds(4)
        );
        // Hold over, window still spent: held again, ending after the reset at +10 s.
        let again = start + TimeDelta::seconds(8);
        assert_eq!(
            q.connect(again).unwrap_err().hold_until(),
            start + TimeDelta::seconds(11)
        );
        let after_reset = start + TimeDelta::seconds(10);
        assert!(matches!(
            q.connect(after_reset),
            Err(Rejection::OnHold { .. })
        ));
        let usage = q.connect(start + TimeDelta::seconds(11)).unwrap();
        assert_eq!(usage.used, 1);
        assert_eq!(usage.reset_at, start + TimeDelta::seconds(20));
        // Many windows later the reset lands on the grid, not `now` + week.
        let far = start + TimeDelta::seconds(1_000_005);
        assert_eq!(q.usage(far).reset_at, start + TimeDelta::seconds(1_000_010));
    }

    #[test]
    fn zero_hold_refuses_only_the_request_itself() {
        let now = at("2024-01-15T09:00:00Z");
        let mut q = AccountQuota::new(0, TimeDelta::zero(), now);
        assert!(q.connect(now).is_err());
        assert_eq!(q.hold_active(now), None);
    }
}
