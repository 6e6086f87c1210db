//! What the API told us about accounts (holds, rate-limit headers) and about the key.

use super::crm_pauses::{CrmPause, CrmPauseStore};
use super::jobs::{AccountHold, SendSlot};
use super::outbox::OutboxMessage;
use super::send_gate::{self, AccountReading, SendGate};
use super::waits;
use super::{SqlStore, StoreError, db};
use crate::account::hold;
use crate::account::pacing::{self, Decision};
use crate::account::policy::{AccountPolicy, AccountsConfig};
use crate::account::projection::projected_sends;
use crate::account::quota::{self, Quota, QuotaSource};
use crate::account::window;
use crate::connectsafely::RateLimit;
use crate::job::Job;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The key is refused since `since`; nobody sends until a probe succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPause {
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// An account's row of `accounts`: its id, `hold_until` and `blocked_until`.
type HoldRow = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// An account's CONNECT row of `account_limits`: its id, then a `send_gate::LimitRow`.
type LimitRowOf = (
    String,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    String,
);

/// What the gauges show of one account: its hold and its last CONNECT quota reading.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountStanding {
    pub account_id: String,
    pub hold_until: Option<DateTime<Utc>>,
    pub blocked_until: Option<DateTime<Utc>>,
    pub quota: Option<Quota>,
    /// Our sends after the quota was read, which the reading does not count yet.
    pub sends_since_reading: u32,
}

/// One account as shown to operators: its week, holds and pauses, today's sends, when it
/// may send next, and its backlog.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSummary {
    pub account_id: String,
    /// `paused = true` in the configuration.
    pub paused: bool,
    /// `shadow = true` in the configuration: nothing is sent, jobs end `shadowed`.
    pub shadow: bool,
    /// Why ConnectSafely says the account cannot send (disabled, in error).
    pub disabled: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    pub blocked_until: Option<DateTime<Utc>>,
    /// Why ConnectSafely holds the account (its 429), while `hold_until` or `blocked_until`
    /// lies ahead.
    pub hold_reason: Option<String>,
    pub limit: Option<u32>,
    pub used: Option<u32>,
    /// leadlink's own sends in the week the quota reading describes (the seven days before
    /// its reset), so that `used` can be split into ours and other tools'.
    pub used_by_leadlink: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_at: Option<DateTime<Utc>>,
    /// When the week's numbers were read, and from where (`headers` or `endpoint`).
    pub quota_observed_at: Option<DateTime<Utc>>,
    pub quota_source: Option<String>,
    pub sends_today: u32,
    pub daily_cap: u32,
    pub last_send_at: Option<DateTime<Utc>>,
    /// When the next send may go out (`None` while paused or disabled), and why not sooner.
    pub next_send_at: Option<DateTime<Utc>>,
    pub next_send_reason: String,
    /// Jobs waiting to be sent from this account.
    pub backlog: i64,
    /// When the backlog's last job would go if nothing changed (the paced turns the gate
    /// gives them); `None` without a backlog, or while the account is paused.
    pub backlog_eta: Option<DateTime<Utc>>,
    pub sending_job: Option<uuid::Uuid>,
}

/// What operators see: every account, and whether the key or a CRM is paused
/// (`leadlink accounts`, the status page).
#[derive(Debug, Clone)]
pub struct Overview {
    pub accounts: Vec<AccountSummary>,
    pub key_pause: Option<KeyPause>,
    pub crm_pauses: Vec<CrmPause>,
}

impl Overview {
    pub async fn read<S: AccountStore + CrmPauseStore>(
        store: &S,
        config: &AccountsConfig,
        now: DateTime<Utc>,
    ) -> Result<Overview, StoreError> {
        Ok(Overview {
            accounts: store.accounts(config, now).await?,
            key_pause: store.key_pause().await?,
            crm_pauses: store.crm_pauses().await?,
        })
    }
}

/// ConnectSafely's week: its `used` counts the seven days before the reset.
const WEEK: chrono::TimeDelta = chrono::TimeDelta::days(7);

pub(super) async fn return_send_slot(
    tx: &mut impl db::Exec,
    account_id: &str,
    job_id: uuid::Uuid,
) -> Result<(), StoreError> {
    // Only the latest: an earlier attempt of the job may have gone out.
    let taken_at = db::query(
        "DELETE FROM account_sends WHERE job_id = $1 \
         AND at = (SELECT max(at) FROM account_sends WHERE job_id = $1) RETURNING at",
    )
    .bind(job_id)
    .scalar_all::<DateTime<Utc>>(tx)
    .await?;
    add_back(tx, account_id, &taken_at).await
}

/// Adds slots taken at `taken_at` back to the account's `remaining`. Only those taken after
/// the current reading came off it; a reading taken since (a new week, say) never counted
/// them (`quota::slots_to_add_back`).
async fn add_back(
    tx: &mut impl db::Exec,
    account_id: &str,
    taken_at: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    // The reading is read, then written: its row stays locked until the end of the
    // transaction, so that a reading recorded meanwhile cannot slip between the two.
    let observed_at = db::query(
        "SELECT observed_at FROM account_limits \
         WHERE account_id = $1 AND action = 'CONNECT' AND remaining IS NOT NULL FOR UPDATE",
    )
    .bind(account_id)
    .scalar_optional::<DateTime<Utc>>(tx)
    .await?;
    let Some(observed_at) = observed_at else {
        return Ok(());
    };
    let slots = quota::slots_to_add_back(taken_at, observed_at);
    if slots == 0 {
        return Ok(());
    }
    db::query(
        "UPDATE account_limits SET remaining = remaining + $2 \
         WHERE account_id = $1 AND action = 'CONNECT' AND remaining IS NOT NULL",
    )
    .bind(account_id)
    .bind(slots)
    .execute(tx)
    .await?;
    Ok(())
}

/// The send slot the gate gave `job_id` is spent for real: its POST starts now.
pub(super) async fn mark_slot_used(
    tx: &mut impl db::Exec,
    job_id: uuid::Uuid,
) -> Result<(), StoreError> {
    db::query(
        "UPDATE account_sends SET post_started = true WHERE job_id = $1 AND NOT post_started",
    )
    .bind(job_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// The send slot the gate gave `job_id` is kept as a shadow-mode turn: nothing went out,
/// but pacing and the week count it.
pub(super) async fn keep_slot_as_shadow(
    tx: &mut impl db::Exec,
    job_id: uuid::Uuid,
) -> Result<(), StoreError> {
    db::query(
        "UPDATE account_sends SET post_started = true, shadow = true \
         WHERE job_id = $1 AND NOT post_started",
    )
    .bind(job_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// Gives back every slot `job_id` took at the gate whose POST never started, and the
/// account's send lease if the job still holds it: nothing went out.
pub(super) async fn give_back_unstarted_slots(
    tx: &mut impl db::Exec,
    job_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let returned = db::query(
        "DELETE FROM account_sends WHERE job_id = $1 AND NOT post_started \
         RETURNING account_id, at",
    )
    .bind(job_id)
    .fetch_all::<(String, DateTime<Utc>)>(tx)
    .await?;
    let Some((account_id, _)) = returned.first() else {
        return Ok(());
    };
    // The account's row first, in the gate's order, so the two cannot deadlock.
    lock(tx, account_id).await?;
    let taken_at: Vec<DateTime<Utc>> = returned.iter().map(|(_, at)| *at).collect();
    add_back(tx, account_id, &taken_at).await?;
    send_gate::release_account(tx, job_id, now, SendSlot::Returned).await
}

/// Within one weekly window the headers may only lower what remains: an answer that left
/// the API before another worker's send must not give back the slot that send took
/// (`quota::merge_observation`).
pub(super) async fn record_rate_limit(
    tx: &mut impl db::Exec,
    account_id: &str,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Read, merged in Rust, then written: under the account's row lock, which every writer
    // of its limits takes first, so no other reading lands in between.
    ensure_and_lock(tx, account_id, now).await?;
    let stored = send_gate::stored_observation(tx, account_id, &limit.action).await?;
    let reported = quota::Observation {
        limit: limit.limit,
        used: limit.used,
        remaining: limit.remaining,
        reset_at: limit.reset,
    };
    let merged = quota::merge_observation(stored.as_ref(), &reported, true);
    db::query(
        "INSERT INTO account_limits \
         (account_id, action, \"limit\", used, remaining, reset_at, observed_at, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'headers') \
         ON CONFLICT (account_id, action) DO UPDATE SET \"limit\" = $3, used = $4, \
         remaining = $5, reset_at = $6, observed_at = $7, source = 'headers'",
    )
    .bind(account_id)
    .bind(&limit.action)
    .bind(merged.limit)
    .bind(merged.used)
    .bind(merged.remaining)
    .bind(merged.reset_at)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// Locks the account's row, if it has one, before the writes that follow.
pub(super) async fn lock(tx: &mut impl db::Exec, account_id: &str) -> Result<(), StoreError> {
    db::query("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE")
        .bind(account_id)
        .scalar_optional::<i32>(tx)
        .await?;
    Ok(())
}

/// Locks the account's row, creating it first if need be, so that a read-modify-write of
/// the account's facts is always covered on PostgreSQL.
pub(super) async fn ensure_and_lock(
    tx: &mut impl db::Exec,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO accounts (account_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(now)
    .execute(tx)
    .await?;
    lock(tx, account_id).await
}

/// A 429's hold and block only ever grow (`account::hold::grown`).
pub(super) async fn record_hold(
    tx: &mut impl db::Exec,
    account_id: &str,
    hold: &AccountHold,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Read, then written, under the account's row lock (see `record_rate_limit`).
    ensure_and_lock(tx, account_id, now).await?;
    let (hold_until, blocked_until) =
        db::query("SELECT hold_until, blocked_until FROM accounts WHERE account_id = $1")
            .bind(account_id)
            .fetch_one::<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)>(tx)
            .await?;
    db::query(
        "UPDATE accounts SET hold_until = $2, blocked_until = $3, reason = $4, updated_at = $5 \
         WHERE account_id = $1",
    )
    .bind(account_id)
    .bind(hold::grown(hold_until, Some(hold.hold_until)))
    .bind(hold::grown(blocked_until, hold.blocked_until))
    .bind(&hold.reason)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// What the API said about accounts and about the key.
pub trait AccountStore {
    /// The account gate for one send, decided under the account's row lock so that
    /// concurrent workers cannot spend the same request or send at once; `Send` takes the
    /// account's send lease and one request of its week.
    fn take_send_slot(
        &self,
        job: &Job,
        policy: &AccountPolicy,
        lease: chrono::Duration,
        facts: send_gate::Facts,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<SendGate, StoreError>> + Send;

    /// Records what the quota and status endpoints said about an account.
    fn record_account_reading(
        &self,
        account_id: &str,
        reading: &AccountReading,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every account leadlink knows of, as operators see it at `now`.
    fn accounts(
        &self,
        config: &AccountsConfig,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<AccountSummary>, StoreError>> + Send;

    /// Every account with a hold or a quota reading, in two small reads: cheap enough to
    /// run at every scrape, unlike `accounts`.
    fn account_standings(
        &self,
    ) -> impl Future<Output = Result<Vec<AccountStanding>, StoreError>> + Send;

    fn key_pause(&self) -> impl Future<Output = Result<Option<KeyPause>, StoreError>> + Send;

    fn pause_key(
        &self,
        reason: &str,
        now: DateTime<Utc>,
        next_probe: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether this process should probe the paused key now; at most one process per interval does.
    fn claim_key_probe(
        &self,
        now: DateTime<Utc>,
        next_probe: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The key works again: lift the pause and make every paused job due now.
    fn resume_key(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>, StoreError>> + Send;
}

pub(super) async fn key_paused(tx: &mut impl db::Exec) -> Result<bool, StoreError> {
    Ok(
        // FOR SHARE waits for a resume in progress, so no job is parked behind its back.
        db::query("SELECT paused FROM api_key_state WHERE id = 1 FOR SHARE")
            .scalar::<bool>(tx)
            .await?,
    )
}

impl AccountStore for SqlStore {
    async fn take_send_slot(
        &self,
        job: &Job,
        policy: &AccountPolicy,
        lease: chrono::Duration,
        facts: send_gate::Facts,
        now: DateTime<Utc>,
    ) -> Result<SendGate, StoreError> {
        send_gate::take_send_slot(self, job, policy, lease, facts, now).await
    }

    async fn record_account_reading(
        &self,
        account_id: &str,
        reading: &AccountReading,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        send_gate::record_reading(self, account_id, reading, now).await
    }

    async fn accounts(
        &self,
        config: &AccountsConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<AccountSummary>, StoreError> {
        let mut conn = self.db.read().await?;
        let ids = db::query(
            "WITH ids AS (SELECT account_id FROM accounts UNION SELECT account_id FROM account_limits \
                          UNION SELECT DISTINCT account_id FROM jobs) \
             SELECT ids.account_id, (SELECT count(*) FROM jobs j WHERE j.account_id = ids.account_id \
                AND j.due_at IS NOT NULL) AS backlog, \
                (SELECT a.reason FROM accounts a WHERE a.account_id = ids.account_id) AS hold_reason \
             FROM ids ORDER BY ids.account_id",
        )
        .fetch_all::<(String, i64, Option<String>)>(&mut conn)
        .await?;
        let mut summaries = Vec::with_capacity(ids.len());
        for (account_id, backlog, hold_reason) in ids {
            let policy = config.policy_for(&account_id);
            let known = send_gate::load(
                &mut conn,
                &account_id,
                &policy,
                now,
                send_gate::Reading::Look,
            )
            .await?;
            let facts = &known.facts;
            let sample = pacing::jitter_sample(&account_id, facts.last_send_at);
            let (next_send_at, next_send_reason) = match pacing::decide(&policy, facts, now, sample)
            {
                Decision::Send => (Some(now), "may send now".to_string()),
                Decision::NeedQuota => (Some(now), "may send after reading its quota".to_string()),
                Decision::Scheduled { at, reason } => (Some(at), reason.to_string()),
                Decision::Held { until, reason, .. } => (Some(until), reason.to_string()),
                Decision::Paused { reason } => (None, reason),
            };
            let quota = facts.quota.as_ref();
            let used_by_leadlink = match quota {
                Some(q) => {
                    let ours = db::query(
                        "SELECT count(*) FROM account_sends \
                         WHERE account_id = $1 AND at >= $2 AND at < $3",
                    )
                    .bind(account_id.as_str())
                    .bind(q.reset_at - WEEK)
                    .bind(q.reset_at)
                    .scalar::<i64>(&mut conn)
                    .await?;
                    Some(u32::try_from(ours).unwrap_or(u32::MAX))
                }
                None => None,
            };
            let waiting = usize::try_from(backlog).unwrap_or(0);
            let turns = projected_sends(&account_id, &policy, facts, now, waiting);
            let backlog_eta = turns.last().copied().filter(|_| turns.len() == waiting);
            let held = quota::held(facts.hold_until, facts.blocked_until, now);
            summaries.push(AccountSummary {
                paused: policy.paused,
                shadow: policy.shadow,
                disabled: facts.disabled.clone(),
                hold_until: facts.hold_until,
                blocked_until: facts.blocked_until,
                limit: quota.map(|q| q.limit),
                used: quota.map(|q| q.used),
                remaining: quota.map(|q| q.remaining),
                reset_at: quota.map(|q| q.reset_at),
                quota_observed_at: quota.map(|q| q.observed_at),
                quota_source: quota.map(|q| match q.source {
                    QuotaSource::Endpoint => "endpoint".to_string(),
                    QuotaSource::Headers => "headers".to_string(),
                }),
                sends_today: facts.sends_today,
                daily_cap: policy.daily_cap_on(window::local_date(policy.timezone, now)),
                last_send_at: facts.last_send_at,
                next_send_at,
                next_send_reason,
                backlog,
                backlog_eta,
                sending_job: known
                    .sending_job
                    .filter(|_| known.sending_until.is_some_and(|t| t > now)),
                hold_reason: hold_reason.filter(|_| held),
                used_by_leadlink,
                account_id,
            });
        }
        Ok(summaries)
    }

    async fn account_standings(&self) -> Result<Vec<AccountStanding>, StoreError> {
        let mut conn = self.db.read().await?;
        let holds = db::query("SELECT account_id, hold_until, blocked_until FROM accounts")
            .fetch_all::<HoldRow>(&mut conn)
            .await?;
        let limits = db::query(
            "SELECT account_id, \"limit\", used, remaining, reset_at, observed_at, source \
             FROM account_limits WHERE action = 'CONNECT'",
        )
        .fetch_all::<LimitRowOf>(&mut conn)
        .await?;
        let mut standings = BTreeMap::new();
        for (account_id, hold_until, blocked_until) in holds {
            standings.insert(
                account_id.clone(),
                AccountStanding {
                    account_id,
                    hold_until,
                    blocked_until,
                    quota: None,
                    sends_since_reading: 0,
                },
            );
        }
        for (account_id, limit, used, remaining, reset_at, observed_at, source) in limits {
            let quota =
                send_gate::quota_from_row((limit, used, remaining, reset_at, observed_at, source));
            standings
                .entry(account_id.clone())
                .or_insert_with(|| AccountStanding {
                    account_id,
                    hold_until: None,
                    blocked_until: None,
                    quota: None,
                    sends_since_reading: 0,
                })
                .quota = quota;
        }
        let since = db::query(
            "SELECT l.account_id, count(*) FROM account_limits l \
             JOIN account_sends s ON s.account_id = l.account_id AND s.at > l.observed_at \
             WHERE l.action = 'CONNECT' GROUP BY l.account_id",
        )
        .fetch_all::<(String, i64)>(&mut conn)
        .await?;
        for (account_id, sends) in since {
            if let Some(standing) = standings.get_mut(&account_id) {
                standing.sends_since_reading = u32::try_from(sends).unwrap_or(u32::MAX);
            }
        }
        Ok(standings.into_values().collect())
    }

    async fn key_pause(&self) -> Result<Option<KeyPause>, StoreError> {
        let row = db::query("SELECT paused, reason, paused_at FROM api_key_state WHERE id = 1")
            .fetch_one::<(bool, Option<String>, Option<DateTime<Utc>>)>(&mut self.db.read().await?)
            .await?;
        Ok(match row {
            (true, reason, since) => Some(KeyPause {
                reason: reason.unwrap_or_default(),
                since: since.unwrap_or_else(Utc::now),
            }),
            _ => None,
        })
    }

    async fn pause_key(
        &self,
        reason: &str,
        now: DateTime<Utc>,
        next_probe: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        db::query(
            "UPDATE api_key_state SET paused = true, reason = $1, \
             paused_at = CASE WHEN paused THEN paused_at ELSE $2 END, \
             next_probe_at = CASE WHEN paused THEN next_probe_at ELSE $3 END WHERE id = 1",
        )
        .bind(reason)
        .bind(now)
        .bind(next_probe)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_key_probe(
        &self,
        now: DateTime<Utc>,
        next_probe: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let claimed = db::query(
            "UPDATE api_key_state SET next_probe_at = $2 \
             WHERE id = 1 AND paused AND next_probe_at <= $1 RETURNING id",
        )
        .bind(now)
        .bind(next_probe)
        .scalar_optional::<i32>(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(claimed.is_some())
    }

    async fn resume_key(&self, now: DateTime<Utc>) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut tx = self.db.begin().await?;
        db::query(
            "UPDATE api_key_state SET paused = false, reason = NULL, paused_at = NULL WHERE id = 1",
        )
        .execute(&mut tx)
        .await?;
        let publish = waits::release_all(&mut tx, &waits::Wait::Key, now).await?;
        tx.commit().await?;
        Ok(publish)
    }
}
