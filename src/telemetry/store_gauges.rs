//! The gauges read from the store. They hold for the whole deployment, so one process per
//! deployment computes them (`metrics.store_gauges`), at scrape time and at most once per
//! [`FRESH_FOR`], with aggregate reads only.

use super::metrics;
use crate::account::policy::AccountsConfig;
use crate::account::quota;
use crate::store::{AccountStanding, Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Scrapes closer together than this see the same reading.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// Longest a scrape waits for the store; Prometheus' default scrape timeout is 10 s.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

pub struct StoreGauges<S> {
    store: S,
    /// The accounts' reserves, which the held gauge counts as the gate does.
    accounts: AccountsConfig,
    /// When the gauges were last read; held across a read, so concurrent scrapes share it.
    read_at: Mutex<Option<Instant>>,
}

impl<S: Store> StoreGauges<S> {
    pub fn new(store: S, accounts: AccountsConfig) -> StoreGauges<S> {
        StoreGauges {
            store,
            accounts,
            read_at: Mutex::new(None),
        }
    }

    /// Reads the store into the gauges unless the last reading is fresh. A failed read keeps
    /// the last values: the scrape still answers, and the logs say why.
    pub async fn refresh(&self) {
        let mut read_at = self.read_at.lock().await;
        if read_at.is_some_and(|at| at.elapsed() < FRESH_FOR) {
            return;
        }
        // A slow database must not take the counters' scrape down with it.
        match tokio::time::timeout(READ_TIMEOUT, self.read(Utc::now())).await {
            Ok(Ok(())) => *read_at = Some(Instant::now()),
            Ok(Err(error)) => tracing::warn!(%error, "could not read the store gauges"),
            Err(_) => tracing::warn!(
                timeout = ?READ_TIMEOUT,
                "the store gauges took too long; the scrape shows the last reading"
            ),
        }
    }

    async fn read(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for (status, count) in self.store.job_counts().await? {
            metrics::jobs(status, count);
        }
        for standing in self.store.account_standings().await? {
            let reserve = self.accounts.policy_for(&standing.account_id).reserve;
            let (remaining, held) = account_gauges(&standing, reserve, now);
            metrics::account(&standing.account_id, remaining, held);
        }
        metrics::outbox_oldest(outbox_age(self.store.oldest_due(now).await?, now));
        metrics::api_key_paused(self.store.key_pause().await?.is_some());
        metrics::writebacks_parked(self.store.parked_writeback_count().await?);
        Ok(())
    }
}

/// The requests left in the account's week as last read (after the reading's reset the new
/// week's limit, since `used` starts again from 0), and whether it is held: on hold, blocked
/// until its week ends, or with nothing left for us this week (after the account's
/// `reserve` and our sends since the reading, as the gate counts).
pub fn account_gauges(
    standing: &AccountStanding,
    reserve: u32,
    now: DateTime<Utc>,
) -> (Option<i64>, bool) {
    let remaining = standing.quota.as_ref().map(|q| {
        if q.is_current(now) {
            quota::remaining_for_us(q, 0, 0)
        } else {
            i64::from(q.limit)
        }
    });
    let on_hold = quota::held(standing.hold_until, standing.blocked_until, now);
    let spent = quota::spent_until(
        standing.quota.as_ref(),
        reserve,
        standing.sends_since_reading,
        now,
    )
    .is_some();
    (remaining, on_hold || spent)
}

/// How long the oldest due outbox row has waited; zero when none is due.
pub fn outbox_age(oldest_due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    oldest_due
        .and_then(|due| (now - due).to_std().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::quota::{Quota, QuotaSource};
    use chrono::TimeDelta;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn standing(quota: Option<Quota>) -> AccountStanding {
        AccountStanding {
            account_id: "acc_1".into(),
            hold_until: None,
            blocked_until: None,
            quota,
            sends_since_reading: 0,
        }
    }

    fn week(used: u32, remaining: u32) -> Quota {
        Quota {
            limit: 90,
            used,
            remaining,
            reset_at: at("2026-11-09T00:00:00Z"),
            observed_at: at("2026-11-04T10:00:00Z"),
            source: QuotaSource::Headers,
        }
    }

    #[test]
    fn an_account_shows_what_its_week_has_left_and_whether_it_is_held() {
        let now = at("2026-11-05T12:00:00Z");
        assert_eq!(account_gauges(&standing(None), 0, now), (None, false));
        // The smaller of what the API said remains and limit - used.
        assert_eq!(
            account_gauges(&standing(Some(week(80, 12))), 0, now),
            (Some(10), false)
        );
        assert_eq!(
            account_gauges(&standing(Some(week(90, 0))), 0, now),
            (Some(0), true)
        );
        // Past the reading's reset the week starts over.
        let next_week = at("2026-11-09T00:00:01Z");
        assert_eq!(
            account_gauges(&standing(Some(week(90, 0))), 0, next_week),
            (Some(90), false)
        );
        let mut held = standing(Some(week(10, 80)));
        held.hold_until = Some(now + TimeDelta::hours(3));
        assert_eq!(account_gauges(&held, 0, now), (Some(80), true));
        assert_eq!(
            account_gauges(&held, 0, now + TimeDelta::hours(4)),
            (Some(80), false)
        );
        // The reserve and our sends since the reading count, as at the gate.
        let mut reserved = standing(Some(week(80, 12)));
        assert_eq!(account_gauges(&reserved, 10, now), (Some(10), true));
        assert_eq!(account_gauges(&reserved, 9, now), (Some(10), false));
        reserved.sends_since_reading = 1;
        assert_eq!(account_gauges(&reserved, 9, now), (Some(10), true));
        let mut blocked = standing(None);
        blocked.blocked_until = Some(now + TimeDelta::days(2));
        assert_eq!(account_gauges(&blocked, 0, now), (None, true));
    }

    #[test]
    fn the_outbox_age_is_that_of_its_oldest_due_row() {
        let now = at("2026-11-05T12:00:00Z");
        assert_eq!(outbox_age(None, now), Duration::ZERO);
        assert_eq!(
            outbox_age(Some(now - TimeDelta::seconds(90)), now),
            Duration::from_secs(90)
        );
        assert_eq!(
            outbox_age(Some(now + TimeDelta::seconds(5)), now),
            Duration::ZERO
        );
    }
}
