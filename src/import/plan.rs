//! What an import did or would do: its counts, its bad rows, and how long each account
//! would take to send the new jobs at its pacing.

use crate::account::policy::AccountPolicy;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

/// How the weeks are projected, said once in every summary.
pub const PROJECTION: &str = "weeks = ceil(new jobs / sends per week); sends per week = the \
     smaller of (daily cap, or what the working hours allow at the minimum spacing) x working \
     days and the weekly limit ConnectSafely last reported less the reserve; jobs already \
     waiting on the account are not counted";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub dry_run: bool,
    /// `false` when bad rows stopped the import: nothing was written.
    pub imported: bool,
    pub rows: usize,
    pub new: usize,
    pub duplicate: usize,
    pub invalid: Vec<BadRow>,
    pub ignored_columns: Vec<String>,
    pub accounts: BTreeMap<String, AccountPlan>,
    pub projection: &'static str,
}

/// A row that was not imported: its line in the file (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

/// One account's share of the new jobs and how long they would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountPlan {
    pub new: usize,
    /// `None` when nothing bounds the sends (no pacing and no weekly limit known yet).
    pub sends_per_week: Option<u32>,
    pub weeks: Option<u64>,
}

impl AccountPlan {
    pub fn of(new: usize, sends_per_week: Option<u32>) -> AccountPlan {
        AccountPlan {
            new,
            sends_per_week,
            weeks: sends_per_week.and_then(|per_week| weeks(new, per_week)),
        }
    }
}

/// How many sends the account's rules allow in a week starting on `today` (its warm-up
/// week's cap): pacing's daily allowance on each working day, bounded by the weekly limit
/// less the reserve when ConnectSafely has reported one.
pub fn sends_per_week(
    policy: &AccountPolicy,
    weekly_limit: Option<u32>,
    today: NaiveDate,
) -> Option<u32> {
    let paced = policy.pacing.then(|| {
        let window = i64::from(
            policy
                .working_hours
                .end
                .saturating_sub(policy.working_hours.start),
        );
        let spacing = policy.min_spacing.num_minutes();
        let by_spacing = if spacing > 0 {
            u32::try_from(window / spacing + 1).unwrap_or(u32::MAX)
        } else {
            u32::MAX
        };
        policy
            .daily_cap_on(today)
            .min(by_spacing)
            .saturating_mul(policy.working_days.count())
    });
    let weekly = weekly_limit.map(|limit| limit.saturating_sub(policy.reserve));
    match (paced, weekly) {
        (Some(paced), Some(weekly)) => Some(paced.min(weekly)),
        (paced, weekly) => paced.or(weekly),
    }
}

/// Weeks to send `new` jobs at `per_week`; `None` when nothing can be sent.
pub fn weeks(new: usize, per_week: u32) -> Option<u64> {
    let new = u64::try_from(new).unwrap_or(u64::MAX);
    (per_week > 0 || new == 0).then(|| new.div_ceil(u64::from(per_week.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::policy::WorkingDays;
    use chrono::TimeDelta;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    #[test]
    fn weeks_round_up_and_nothing_to_send_takes_none() {
        assert_eq!(weeks(0, 100), Some(0));
        assert_eq!(weeks(100, 100), Some(1));
        assert_eq!(weeks(101, 100), Some(2));
        assert_eq!(weeks(0, 0), Some(0));
        assert_eq!(weeks(5, 0), None);
    }

    #[test]
    fn a_week_is_the_daily_cap_on_working_days_bounded_by_the_weekly_limit() {
        let policy = AccountPolicy {
            daily_cap: 20,
            min_spacing: TimeDelta::zero(),
            working_days: WorkingDays::MON_FRI,
            reserve: 10,
            ..AccountPolicy::default()
        };
        assert_eq!(sends_per_week(&policy, None, today()), Some(100));
        assert_eq!(sends_per_week(&policy, Some(80), today()), Some(70));
        // Nine working hours at one send per hour allow ten sends a day.
        let spaced = AccountPolicy {
            min_spacing: TimeDelta::hours(1),
            ..policy.clone()
        };
        assert_eq!(sends_per_week(&spaced, None, today()), Some(50));
        let unpaced = AccountPolicy {
            pacing: false,
            ..policy
        };
        assert_eq!(sends_per_week(&unpaced, None, today()), None);
        assert_eq!(sends_per_week(&unpaced, Some(100), today()), Some(90));
        assert_eq!(AccountPlan::of(250, Some(100)).weeks, Some(3));
    }
}
