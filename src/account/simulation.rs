//! A month of sends on three accounts, decided by [`pacing::decide`] and refereed by the
//! simulator's quota model: the vendor's rules, not ours, say whether a send got a 429.
//!
//! 1000 leads arrive from Monday 2026-10-19 for 31 days (across Berlin's and Los Angeles'
//! DST changes), some in bursts, on a UTC account with a reserve, a Berlin account that
//! another tool also uses, and a Los Angeles account warming up. The scheduler is event
//! driven: each account wakes at the time its last decision named, or when a lead arrives.

use super::pacing::{self, AccountFacts, Decision};
use super::policy::{AccountPolicy, AccountsConfig};
use super::projection;
use super::quota::{Quota, QuotaSource};
use super::window;
use crate::sim::quota::{AccountQuota, Rejection, Usage, weekly_reset_after};
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc, Weekday};
use figment::Figment;
use figment::providers::{Format, Toml};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

const CONFIG: &str = r#"
    [accounts.defaults]
    daily_cap = 18
    min_spacing = "20m"
    jitter = "10m"
    working_hours = "09:00-18:00"
    working_days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    [accounts.acc_utc]
    reserve = 5
    [accounts.acc_berlin]
    timezone = "Europe/Berlin"
    daily_cap = 25
    min_spacing = "15m"
    jitter = "5m"
    [accounts.acc_la]
    timezone = "America/Los_Angeles"
    warmup = [5, 10, 15]
    warmup_start = "2026-10-19"
"#;

const LIMIT: u32 = 90;

fn start() -> DateTime<Utc> {
    "2026-10-19T00:00:00Z".parse().expect("static instant")
}

fn end() -> DateTime<Utc> {
    start() + TimeDelta::days(31)
}

/// When the Sunday burst arrives, and the backlogs' send times are projected.
fn projected_at() -> DateTime<Utc> {
    utc("2026-10-25T20:00:00Z")
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("static instant")
}

/// What the decision is shown: the truth as leadlink learns it, or a broken view that
/// ignores the quota (the test must be able to fail).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    IgnoreQuota,
}

struct Account {
    id: &'static str,
    policy: AccountPolicy,
    /// The vendor's counters: the referee.
    referee: AccountQuota,
    /// Another tool's sends on the account, applied to the referee only (as many of them
    /// as the vendor let through).
    other_usage: Vec<(DateTime<Utc>, u32)>,
    facts: AccountFacts,
    backlog: VecDeque<DateTime<Utc>>,
    arrivals: Vec<DateTime<Utc>>,
    wake: Option<DateTime<Utc>>,
    /// (sent at, the lead's arrival).
    sent: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    rejections: Vec<Rejection>,
    quota_reads: u32,
    /// When the Sunday burst arrived: the projected send times of the backlog then.
    projection: Vec<DateTime<Utc>>,
}

impl Account {
    fn new(id: &'static str, config: &AccountsConfig) -> Self {
        Account {
            id,
            policy: config.policy_for(id),
            referee: AccountQuota::new(LIMIT, TimeDelta::hours(24), start()),
            other_usage: Vec::new(),
            facts: AccountFacts::default(),
            backlog: VecDeque::new(),
            arrivals: Vec::new(),
            wake: None,
            sent: Vec::new(),
            rejections: Vec::new(),
            quota_reads: 0,
            projection: Vec::new(),
        }
    }

    fn view(&self, mode: Mode, now: DateTime<Utc>) -> AccountFacts {
        match mode {
            Mode::Honest => self.facts.clone(),
            Mode::IgnoreQuota => AccountFacts {
                quota: Some(Quota {
                    limit: LIMIT,
                    used: 0,
                    remaining: LIMIT,
                    reset_at: weekly_reset_after(now),
                    observed_at: now,
                    source: QuotaSource::Endpoint,
                }),
                sends_since_quota: 0,
                hold_until: None,
                blocked_until: None,
                ..self.facts.clone()
            },
        }
    }

    /// The connect worker and the scheduler for this account at `now`: release the oldest
    /// lead while the decision says so.
    fn step(&mut self, now: DateTime<Utc>, mode: Mode) {
        let mut just_read = false;
        while !self.backlog.is_empty() {
            let sends = self.sent.iter().map(|(at, _)| *at);
            self.facts.sends_today = pacing::sends_on_local_day(&self.policy, now, sends);
            let sample = pacing::jitter_sample(self.id, self.facts.last_send_at);
            match pacing::decide(&self.policy, &self.view(mode, now), now, sample) {
                Decision::Send => {
                    let Some(lead) = self.backlog.pop_front() else {
                        return;
                    };
                    match self.referee.connect(now) {
                        Ok(usage) => {
                            self.facts.quota = Some(reading(usage, now, QuotaSource::Headers));
                            self.facts.sends_since_quota = 0;
                            self.facts.last_send_at = Some(now);
                            self.sent.push((now, lead));
                            just_read = false;
                        }
                        Err(rejection) => {
                            // What the worker does with a 429 hold.
                            self.rejections.push(rejection);
                            self.facts.hold_until = Some(rejection.hold_until());
                            self.facts.blocked_until = Some(rejection.weekly_reset());
                            self.backlog.push_front(lead);
                            self.wake = Some(rejection.hold_until());
                            return;
                        }
                    }
                }
                Decision::NeedQuota => {
                    assert!(
                        !just_read,
                        "{}: asked for the quota twice at {now}",
                        self.id
                    );
                    just_read = true;
                    let usage = self.referee.usage(now);
                    self.facts.quota = Some(reading(usage, now, QuotaSource::Endpoint));
                    self.facts.sends_since_quota = 0;
                    self.quota_reads += 1;
                }
                Decision::Scheduled { at, .. } | Decision::Held { until: at, .. } => {
                    assert!(at > now, "{}: a wait that ends at once ({at})", self.id);
                    self.wake = Some(at);
                    return;
                }
                Decision::Paused { reason } => panic!("{}: paused: {reason}", self.id),
            }
        }
        self.wake = None;
    }
}

fn reading(usage: Usage, now: DateTime<Utc>, source: QuotaSource) -> Quota {
    Quota {
        limit: usage.limit,
        used: usage.used,
        remaining: usage.remaining,
        reset_at: usage.reset_at,
        observed_at: now,
        source,
    }
}

/// 1000 leads: 800 at random times on random accounts, and three bursts.
fn leads() -> Vec<(DateTime<Utc>, usize)> {
    let mut rng = StdRng::seed_from_u64(20261019);
    let span = (end() - start() - TimeDelta::days(2)).num_seconds();
    let mut leads: Vec<(DateTime<Utc>, usize)> = (0..800)
        .map(|_| {
            let at = start() + TimeDelta::seconds(rng.random_range(0..span));
            (at, rng.random_range(0..3))
        })
        .collect();
    // A CRM import on Sunday evening, waiting for Monday.
    leads.extend((0..100).map(|_| (projected_at(), 0)));
    // A campaign mid-week on Berlin, and one on Los Angeles during its warm-up.
    leads.extend((0..50).map(|_| (utc("2026-11-10T09:30:00Z"), 1)));
    leads.extend((0..50).map(|_| (utc("2026-11-04T18:00:00Z"), 2)));
    leads.sort();
    leads
}

fn run(mode: Mode) -> Vec<Account> {
    let config: AccountsConfig = Figment::new()
        .merge(Toml::string(CONFIG))
        .extract_inner("accounts")
        .expect("the simulation's configuration");
    let mut problems = Vec::new();
    config.check(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let mut accounts: Vec<Account> = ["acc_utc", "acc_berlin", "acc_la"]
        .into_iter()
        .map(|id| Account::new(id, &config))
        .collect();
    // The other tool on Berlin: 10 each Monday at the reset, 5 each Wednesday night, and
    // once the rest of a week in the middle of a working day, between two of our sends.
    let mut bumps = Vec::new();
    let mut monday = start();
    while monday < end() {
        bumps.push((monday, 1, 10));
        bumps.push((monday + TimeDelta::hours(50), 1, 5));
        monday += TimeDelta::days(7);
    }
    bumps.push((utc("2026-11-05T12:05:00Z"), 1, LIMIT));
    bumps.sort();
    let mut bumps = VecDeque::from(bumps);
    let mut leads = VecDeque::from(leads());
    loop {
        let next_wake = accounts
            .iter()
            .filter(|a| !a.backlog.is_empty())
            .filter_map(|a| a.wake)
            .min();
        let next = [
            leads.front().map(|l| l.0),
            bumps.front().map(|b| b.0),
            next_wake,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(now) = next.filter(|t| *t < end()) else {
            break;
        };
        while let Some((_, i, n)) = bumps.front().copied().filter(|b| b.0 <= now) {
            bumps.pop_front();
            let account = &mut accounts[i];
            let usage = account.referee.usage(now);
            let applied = n.min(usage.remaining);
            account.referee.used += applied;
            account.other_usage.push((now, applied));
        }
        while let Some((at, i)) = leads.front().copied().filter(|l| l.0 <= now) {
            leads.pop_front();
            let account = &mut accounts[i];
            if account.backlog.is_empty() {
                // A new job is looked at when it arrives, like a fresh delivery.
                account.wake = Some(now);
            }
            account.backlog.push_back(at);
            account.arrivals.push(at);
        }
        if now == projected_at() {
            for a in &mut accounts {
                let sends = a.sent.iter().map(|(at, _)| *at);
                a.facts.sends_today = pacing::sends_on_local_day(&a.policy, now, sends);
                a.projection =
                    projection::projected_sends(a.id, &a.policy, &a.facts, now, a.backlog.len());
            }
        }
        for account in &mut accounts {
            if !account.backlog.is_empty() && account.wake.is_some_and(|w| w <= now) {
                account.step(now, mode);
            }
        }
    }
    accounts
}

/// The account's local working days whose window lies inside the simulation.
fn whole_days(account: &Account) -> Vec<(NaiveDate, DateTime<Utc>, DateTime<Utc>)> {
    let tz = account.policy.timezone;
    window::local_date(tz, start())
        .iter_days()
        .take(32)
        .filter_map(|day| window::working_window(&account.policy, day).map(|(o, c)| (day, o, c)))
        .filter(|(_, open, close)| start() <= *open && *close <= end())
        .collect()
}

impl Account {
    fn sends_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        self.sent
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| from <= *at && *at < to)
            .collect()
    }

    fn backlog_at(&self, t: DateTime<Utc>) -> usize {
        let arrived = self.arrivals.iter().filter(|a| **a <= t).count();
        arrived - self.sends_between(start(), t).len()
    }

    /// Other tools' sends in the vendor week running at `t`, up to `t`.
    fn others_until(&self, t: DateTime<Utc>) -> i64 {
        let week_start = weekly_reset_after(t) - TimeDelta::days(7);
        self.other_usage
            .iter()
            .filter(|(at, _)| week_start <= *at && *at <= t)
            .map(|(_, n)| i64::from(*n))
            .sum()
    }

    /// What the vendor would still let leadlink send at `t` this week, less the reserve.
    fn budget_at(&self, t: DateTime<Utc>) -> i64 {
        let week_start = weekly_reset_after(t) - TimeDelta::days(7);
        let ours = self.sends_between(week_start, t).len() as i64;
        i64::from(LIMIT) - i64::from(self.policy.reserve) - self.others_until(t) - ours
    }
}

#[test]
fn a_month_of_three_accounts_never_earns_a_429_and_keeps_the_pace() {
    let accounts = run(Mode::Honest);
    for a in &accounts {
        let tz = a.policy.timezone;
        let sends: Vec<DateTime<Utc>> = a.sent.iter().map(|(at, _)| *at).collect();
        let mut weeks: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
        for at in &sends {
            *weeks.entry(weekly_reset_after(*at)).or_default() += 1;
        }
        eprintln!(
            "{}: {} sent of {} leads, {} quota reads, per week {:?}",
            a.id,
            sends.len(),
            a.arrivals.len(),
            a.quota_reads,
            weeks.values().collect::<Vec<_>>()
        );

        assert!(
            a.rejections.is_empty(),
            "{}: 429s: {:?}",
            a.id,
            a.rejections
        );
        assert!(sends.len() > 200, "{}: only {} sent", a.id, sends.len());

        // Oldest first.
        assert!(
            a.sent.windows(2).all(|w| w[0].1 <= w[1].1),
            "{}: not oldest first",
            a.id
        );

        // Only in working hours and on working days, local time (chrono-tz, not our windows).
        for at in &sends {
            let local = at.with_timezone(&tz);
            let minute = local.hour() * 60 + local.minute();
            assert!(
                a.policy.working_days.contains(local.weekday())
                    && (9 * 60..18 * 60).contains(&minute),
                "{}: sent at {local}",
                a.id
            );
        }

        // Spacing between consecutive sends.
        for pair in sends.windows(2) {
            assert!(
                pair[1] - pair[0] >= a.policy.min_spacing,
                "{}: {} then {}",
                a.id,
                pair[0],
                pair[1]
            );
        }

        // Per local day within the day's cap (the warm-up week's on the warming account).
        let mut days: BTreeMap<NaiveDate, u32> = BTreeMap::new();
        for at in &sends {
            *days.entry(window::local_date(tz, *at)).or_default() += 1;
        }
        for (day, count) in &days {
            assert!(
                *count <= a.policy.daily_cap_on(*day),
                "{}: {count} sends on {day}",
                a.id
            );
        }

        // Per vendor week within the limit less the reserve, other tools' usage included.
        for (reset, count) in &weeks {
            let last_instant = *reset - TimeDelta::milliseconds(1);
            let allowed = i64::from(LIMIT - a.policy.reserve) - a.others_until(last_instant);
            assert!(
                *count as i64 <= allowed,
                "{}: {count} sends in the week before {reset}",
                a.id
            );
        }

        for (day, open, close) in whole_days(a) {
            let day_sends = a.sends_between(open, close);
            // Other tools' sends during the day count against it too.
            let budget = a.budget_at(open) - (a.others_until(close) - a.others_until(open));
            let expected = i64::from(a.policy.daily_cap_on(day)).min(budget.max(0));
            let waiting = a.backlog_at(open) as i64;
            // Every account works its own backlog each day, whatever the others have waiting:
            // all of what waited at opening, up to the day's cap and the week's quota.
            assert!(
                day_sends.len() as i64 >= expected.min(waiting),
                "{}: {} sends on {day} with {waiting} waiting and {expected} allowed",
                a.id,
                day_sends.len()
            );
            // After the Monday reset the backlog goes out at the paced rate, not in a burst.
            if day.weekday() == Weekday::Mon && waiting > 0 && expected > 0 {
                let first = day_sends[0];
                assert!(
                    first >= open && first <= open + a.policy.jitter,
                    "{}: first Monday send at {first}",
                    a.id
                );
                let first_hour = a.sends_between(open, open + TimeDelta::hours(1)).len();
                let per_hour =
                    TimeDelta::hours(1).num_minutes() / a.policy.min_spacing.num_minutes();
                assert!(
                    first_hour as i64 <= per_hour + 1,
                    "{}: {first_hour} in the first hour of {day}",
                    a.id
                );
                if day_sends.len() >= 10 {
                    let last = day_sends[day_sends.len() - 1];
                    assert!(
                        last - first >= TimeDelta::hours(3),
                        "{}: {day} sent within {}",
                        a.id,
                        last - first
                    );
                }
            }
        }
        // The quota endpoint is read before sends, not polled.
        assert!(
            (a.quota_reads as usize) <= sends.len() + 10,
            "{}: {} reads",
            a.id,
            a.quota_reads
        );
    }
}

#[test]
fn projected_send_times_are_the_actual_ones_when_only_leadlink_uses_the_account() {
    let accounts = run(Mode::Honest);
    for a in accounts.iter().filter(|a| a.other_usage.is_empty()) {
        let actual: Vec<DateTime<Utc>> = a
            .sent
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at >= projected_at())
            .take(a.projection.len())
            .collect();
        assert!(
            a.projection.len() > 30,
            "{}: {} projected",
            a.id,
            a.projection.len()
        );
        assert_eq!(a.projection, actual, "{}", a.id);
    }
}

#[test]
fn ignoring_the_quota_earns_429s_from_the_referee() {
    let accounts = run(Mode::IgnoreQuota);
    let berlin = &accounts[1];
    assert_eq!(berlin.id, "acc_berlin");
    assert!(
        !berlin.rejections.is_empty(),
        "the referee saw no 429: the simulation cannot catch a quota bug"
    );
}
