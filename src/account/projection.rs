//! When each waiting job of an account would go: the `retryAt` of a backlog's jobs.
//!
//! [`decide`] only answers for the oldest job; the jobs behind it go one paced step after
//! another. Projecting those steps with the same decision gives every job a realistic ETA,
//! so the scheduler can park each one until its own turn instead of waking them all at once.

use super::next_weekly_reset;
use super::pacing::{AccountFacts, Decision, decide, jitter_sample, local_day, sends_on_local_day};
use super::policy::AccountPolicy;
use super::quota::{Quota, QuotaSource};
use super::window::local_date;
use chrono::{DateTime, Utc};

/// The instants at which the account's next `count` waiting jobs would be sent if nothing
/// changed: no other tool spends the quota, and each week after the known one has the full
/// limit (reset on the documented Monday rule). Jitter comes from [`jitter_sample`], as it
/// does for the real sends. Shorter than `count` when the account is paused.
pub fn projected_sends(
    account_id: &str,
    policy: &AccountPolicy,
    facts: &AccountFacts,
    now: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Utc>> {
    let mut facts = facts.clone();
    let mut sends = Vec::with_capacity(count);
    let mut t = now;
    let (today, sends_today) = (local_date(policy.timezone, now), facts.sends_today);
    // Each send takes at most a quota reading, a wait for the window or the week, and itself.
    for _ in 0..count.saturating_mul(4).saturating_add(8) {
        if sends.len() == count {
            break;
        }
        let sample = jitter_sample(account_id, facts.last_send_at);
        match decide(policy, &facts, t, sample) {
            Decision::Send => {
                sends.push(t);
                facts.last_send_at = Some(t);
                facts.sends_since_quota += 1;
            }
            Decision::NeedQuota => {
                facts.quota = Some(expected_reading(&facts, t));
                facts.sends_since_quota = 0;
            }
            Decision::Held { until: at, .. } | Decision::Scheduled { at, .. } => {
                t = at;
                // The store's count is for `now`'s local day; later days hold only ours.
                let earlier = if local_date(policy.timezone, t) == today {
                    sends_today
                } else {
                    0
                };
                // Sends only move forward in time, so the day's are the last ones: counting
                // only those keeps the projection of a long backlog linear.
                let (day_start, _) = local_day(policy, t);
                let recent = sends.iter().rev().take_while(|s| **s >= day_start).copied();
                facts.sends_today = earlier + sends_on_local_day(policy, t, recent);
            }
            Decision::Paused { .. } => break,
        }
    }
    sends
}

/// What the quota endpoint would say at `t` if only leadlink used the account.
fn expected_reading(facts: &AccountFacts, t: DateTime<Utc>) -> Quota {
    match facts.quota {
        Some(q) if q.is_current(t) => Quota {
            used: q.used.saturating_add(facts.sends_since_quota),
            remaining: q.remaining.saturating_sub(facts.sends_since_quota),
            observed_at: t,
            ..q
        },
        Some(q) => Quota {
            used: 0,
            remaining: q.limit,
            reset_at: next_weekly_reset(t),
            observed_at: t,
            ..q
        },
        // Nothing known: project the pace alone.
        None => Quota {
            limit: u32::MAX,
            used: 0,
            remaining: u32::MAX,
            reset_at: next_weekly_reset(t),
            observed_at: t,
            source: QuotaSource::Endpoint,
        },
    }
}
