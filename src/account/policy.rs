//! The `[accounts]` configuration: pacing defaults, per-account overrides, and the resolved
//! [`AccountPolicy`] the decisions use.
//!
//! Every table (`[accounts.defaults]` and `[accounts."<id>"]`) has the same optional keys;
//! an account's policy is the built-in defaults < `defaults` < its own table. Values are
//! parsed while deserializing (bad hours, days or time zones are reported with their key path);
//! [`AccountsConfig::check`] adds the rules that span values.

use chrono::{NaiveDate, TimeDelta, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The longest `min_spacing` or `jitter` accepted: anything longer is a typo, not pacing.
const MAX_GAP: Duration = Duration::from_secs(24 * 3600);

/// The `[accounts]` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountsConfig {
    /// `[accounts.defaults]`: applies to every account.
    pub defaults: AccountOverride,
    /// `[accounts."<id>"]`: one table per LinkedIn account id.
    pub overrides: BTreeMap<String, AccountOverride>,
}

// `defaults` is just another key of the table, so read the table as one map and take it out;
// serde's `flatten` would lose the key paths of errors and cannot deny unknown fields.
impl<'de> Deserialize<'de> for AccountsConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut overrides = BTreeMap::<String, AccountOverride>::deserialize(deserializer)?;
        let defaults = overrides.remove("defaults").unwrap_or_default();
        Ok(AccountsConfig {
            defaults,
            overrides,
        })
    }
}

/// One table of `[accounts]`; every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountOverride {
    pub pacing: Option<bool>,
    pub paused: Option<bool>,
    pub reserve: Option<u32>,
    pub daily_cap: Option<u32>,
    #[serde(default, with = "humantime_serde::option")]
    pub min_spacing: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub jitter: Option<Duration>,
    pub working_hours: Option<WorkingHours>,
    pub working_days: Option<WorkingDays>,
    #[serde(default, deserialize_with = "deserialize_tz")]
    pub timezone: Option<Tz>,
    pub relationship_check: Option<bool>,
    /// Shadow mode: everything runs but `POST /connect`; jobs end `shadowed`.
    pub shadow: Option<bool>,
    /// Daily caps for the first weeks since `warmup_start`: `[5, 10, 15]`.
    pub warmup: Option<Vec<u32>>,
    /// The first day of warm-up week 1, in the account's time zone.
    pub warmup_start: Option<NaiveDate>,
    /// How old a quota reading may be before a send reads `GET /account/{id}/quota` again.
    #[serde(default, with = "humantime_serde::option")]
    pub quota_refresh: Option<Duration>,
}

/// Everything the decisions need to know about one account's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPolicy {
    /// `false`: no daily cap, spacing or working hours; quota, holds and pauses still apply.
    pub pacing: bool,
    pub paused: bool,
    /// Requests per week left for people using the account by hand.
    pub reserve: u32,
    pub daily_cap: u32,
    pub min_spacing: TimeDelta,
    /// Up to this much is added to `min_spacing` (and to a window's opening) at random.
    pub jitter: TimeDelta,
    pub working_hours: WorkingHours,
    pub working_days: WorkingDays,
    pub timezone: Tz,
    pub relationship_check: bool,
    /// Shadow mode: pacing, quota and the relationship check run, and a job whose turn
    /// comes ends `shadowed` instead of being sent; its turn counts as a send.
    pub shadow: bool,
    pub warmup: Vec<u32>,
    pub warmup_start: Option<NaiveDate>,
    pub quota_refresh: TimeDelta,
}

impl Default for AccountPolicy {
    /// 18 a day over Mon-Fri is the API's 90 a week. 20 minutes plus up to 10 of jitter
    /// (25 on average) spreads those 18 over about 7.5 of the 9 working hours, and even
    /// with the largest jitter every time (17 gaps of 30 minutes) they still fit in the day.
    fn default() -> Self {
        AccountPolicy {
            pacing: true,
            paused: false,
            reserve: 0,
            daily_cap: 18,
            min_spacing: TimeDelta::minutes(20),
            jitter: TimeDelta::minutes(10),
            working_hours: WorkingHours {
                start: 9 * 60,
                end: 18 * 60,
            },
            working_days: WorkingDays::MON_FRI,
            timezone: Tz::UTC,
            relationship_check: true,
            shadow: false,
            warmup: Vec::new(),
            warmup_start: None,
            quota_refresh: TimeDelta::minutes(15),
        }
    }
}

impl AccountPolicy {
    /// The daily cap on the account's local `date`: the warm-up week's cap while the ramp
    /// lasts (days before `warmup_start` count as week 1), never above `daily_cap`.
    pub fn daily_cap_on(&self, date: NaiveDate) -> u32 {
        let Some(start) = self.warmup_start else {
            return self.daily_cap;
        };
        let week = usize::try_from((date - start).num_days().max(0) / 7).unwrap_or(usize::MAX);
        match self.warmup.get(week) {
            Some(cap) => (*cap).min(self.daily_cap),
            None => self.daily_cap,
        }
    }

    fn apply(&mut self, table: &AccountOverride) {
        let AccountOverride {
            pacing,
            paused,
            reserve,
            daily_cap,
            min_spacing,
            jitter,
            working_hours,
            working_days,
            timezone,
            relationship_check,
            shadow,
            warmup,
            warmup_start,
            quota_refresh,
        } = table;
        set(&mut self.pacing, pacing);
        set(&mut self.paused, paused);
        set(&mut self.reserve, reserve);
        set(&mut self.daily_cap, daily_cap);
        set(&mut self.min_spacing, &min_spacing.map(delta));
        set(&mut self.jitter, &jitter.map(delta));
        set(&mut self.working_hours, working_hours);
        set(&mut self.working_days, working_days);
        set(&mut self.timezone, timezone);
        set(&mut self.relationship_check, relationship_check);
        set(&mut self.shadow, shadow);
        set(&mut self.warmup, warmup);
        if warmup_start.is_some() {
            self.warmup_start = *warmup_start;
        }
        set(&mut self.quota_refresh, &quota_refresh.map(delta));
    }
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *target = value.clone();
    }
}

/// `check` keeps durations to a day or so; saturate rather than fail on the rest.
fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

impl AccountsConfig {
    /// The resolved policy of one account: built-in defaults < `defaults` < its own table.
    pub fn policy_for(&self, account_id: &str) -> AccountPolicy {
        let mut policy = AccountPolicy::default();
        policy.apply(&self.defaults);
        if let Some(table) = self.overrides.get(account_id) {
            policy.apply(table);
        }
        policy
    }

    /// Rules that parsing alone cannot enforce, as `accounts.<id>.<key>: ...` lines.
    pub fn check(&self, problems: &mut Vec<String>) {
        let tables = std::iter::once(("defaults", &self.defaults))
            .chain(self.overrides.iter().map(|(id, t)| (id.as_str(), t)));
        for (id, table) in tables {
            if table.daily_cap == Some(0) {
                problems.push(format!(
                    "accounts.{id}.daily_cap: must be at least 1 (use paused = true to stop sending)"
                ));
            }
            if table.warmup.as_ref().is_some_and(|caps| caps.contains(&0)) {
                problems.push(format!(
                    "accounts.{id}.warmup: every week's cap must be at least 1"
                ));
            }
            for (key, value) in [("min_spacing", table.min_spacing), ("jitter", table.jitter)] {
                if value.is_some_and(|v| v > MAX_GAP) {
                    problems.push(format!("accounts.{id}.{key}: must be at most 24h"));
                }
            }
            if table
                .quota_refresh
                .is_some_and(|v| v.is_zero() || v > MAX_GAP)
            {
                problems.push(format!(
                    "accounts.{id}.quota_refresh: must be between 1s and 24h"
                ));
            }
            // The ramp may be set in `defaults` and its start per account: judge the result.
            let policy = self.policy_for(id);
            if !policy.warmup.is_empty() && policy.warmup_start.is_none() {
                problems.push(format!(
                    "accounts.{id}.warmup: needs warmup_start, the first day of week 1 (\"2026-11-02\")"
                ));
            }
        }
    }
}

/// Working hours within a local day, in minutes since midnight: `start < end <= 24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    pub start: u32,
    pub end: u32,
}

impl WorkingHours {
    /// `"09:00-18:00"`; `"00:00-24:00"` is the whole day.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not HH:MM-HH:MM");
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let minutes = |part: &str| -> Result<u32, String> {
            let (h, m) = part.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if m >= 60 || h > 24 || (h == 24 && m > 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minutes(start)?, minutes(end)?);
        if end <= start {
            return Err(format!("`{text}`: the end must be after the start"));
        }
        Ok(WorkingHours { start, end })
    }
}

impl<'de> Deserialize<'de> for WorkingHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WorkingHours::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A non-empty set of weekdays.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WorkingDays(u8);

impl WorkingDays {
    pub const MON_FRI: WorkingDays = WorkingDays(0b001_1111);

    /// How many days of the week are working days.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    /// `["Mon", "Tue"]`; names are the three-letter English ones, any case.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let mut bits = 0u8;
        for name in names {
            let name = name.as_ref();
            let index = NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!("`{name}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
                })?;
            bits |= 1 << index;
        }
        if bits == 0 {
            return Err("name at least one working day".into());
        }
        Ok(WorkingDays(bits))
    }
}

impl fmt::Debug for WorkingDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (0..7)
            .map(|i| Weekday::try_from(i as u8))
            .filter_map(Result::ok)
            .filter(|d| self.contains(*d));
        f.debug_list().entries(days).finish()
    }
}

impl<'de> Deserialize<'de> for WorkingDays {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        WorkingDays::parse(&names).map_err(serde::de::Error::custom)
    }
}

fn deserialize_tz<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Tz>, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse::<Tz>()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("`{name}` is not an IANA time zone")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    /// The config, or the first error as `path: message`.
    fn parse(text: &str) -> Result<AccountsConfig, String> {
        Figment::new()
            .merge(Toml::string(text))
            .extract_inner("accounts")
            .map_err(|e| format!("{}: {}", e.path.join("."), e.kind))
    }

    const ISSUE_EXAMPLE: &str = r#"
        [accounts.defaults]
        pacing = true
        reserve = 0
        daily_cap = 18
        min_spacing = "20m"
        jitter = "10m"
        working_hours = "09:00-18:00"
        working_days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
        timezone = "UTC"
        relationship_check = true
        [accounts."acc_12345"]
        timezone = "Europe/Berlin"
        daily_cap = 25
        paused = false
    "#;

    #[test]
    fn the_issue_example_resolves_per_account() {
        let config = parse(ISSUE_EXAMPLE).unwrap();
        let mut problems = Vec::new();
        config.check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.policy_for("acc_other"), AccountPolicy::default());
        let berlin = config.policy_for("acc_12345");
        assert_eq!(berlin.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(berlin.daily_cap, 25);
        assert_eq!(berlin.min_spacing, TimeDelta::minutes(20));
        assert!(!berlin.paused);
    }

    #[test]
    fn defaults_table_applies_under_the_account_table() {
        let config = parse(
            r#"
            [accounts.defaults]
            daily_cap = 10
            working_hours = "00:00-24:00"
            [accounts.a]
            min_spacing = "90s"
            "#,
        )
        .unwrap();
        let a = config.policy_for("a");
        assert_eq!((a.daily_cap, a.min_spacing), (10, TimeDelta::seconds(90)));
        assert_eq!(
            a.working_hours,
            WorkingHours {
                start: 0,
                end: 1440
            }
        );
    }

    #[test]
    fn shadow_mode_is_set_for_every_account_or_one() {
        let config =
            parse("[accounts.defaults]\nshadow = true\n[accounts.live]\nshadow = false").unwrap();
        assert!(config.policy_for("any").shadow);
        assert!(!config.policy_for("live").shadow);
        assert!(!AccountPolicy::default().shadow);
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        for (toml, key) in [
            (
                "[accounts.a]\nworking_hours = \"18:00-09:00\"",
                "working_hours",
            ),
            ("[accounts.a]\nworking_hours = \"9-18\"", "working_hours"),
            (
                "[accounts.a]\nworking_hours = \"09:00-24:30\"",
                "working_hours",
            ),
            (
                "[accounts.a]\nworking_days = [\"Mon\", \"Funday\"]",
                "working_days",
            ),
            ("[accounts.a]\nworking_days = []", "working_days"),
            ("[accounts.a]\ntimezone = \"Mars/Olympus\"", "timezone"),
            ("[accounts.a]\nmin_spacing = \"soon\"", "min_spacing"),
            ("[accounts.a]\ndialy_cap = 3", "dialy_cap"),
        ] {
            let error = parse(toml).unwrap_err();
            assert!(error.contains(key), "{toml}: {error}");
        }
    }

    #[test]
    fn check_refuses_zero_caps_and_a_ramp_without_a_start() {
        let config = parse(
            r#"
            [accounts.defaults]
            daily_cap = 0
            [accounts.b]
            daily_cap = 5
            warmup = [3, 0]
            jitter = "2d"
            "#,
        )
        .unwrap();
        let mut problems = Vec::new();
        config.check(&mut problems);
        assert_eq!(
            problems,
            [
                "accounts.defaults.daily_cap: must be at least 1 (use paused = true to stop sending)",
                "accounts.b.warmup: every week's cap must be at least 1",
                "accounts.b.jitter: must be at most 24h",
                "accounts.b.warmup: needs warmup_start, the first day of week 1 (\"2026-11-02\")",
            ]
        );
    }

    #[test]
    fn warmup_caps_by_week_then_the_daily_cap() {
        let config = parse(
            r#"
            [accounts.a]
            warmup = [5, 10, 40]
            warmup_start = "2026-11-02"
            "#,
        )
        .unwrap();
        let a = config.policy_for("a");
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(a.daily_cap_on(day("2026-10-30")), 5);
        assert_eq!(a.daily_cap_on(day("2026-11-02")), 5);
        assert_eq!(a.daily_cap_on(day("2026-11-08")), 5);
        assert_eq!(a.daily_cap_on(day("2026-11-09")), 10);
        // A ramp above the daily cap does not raise it.
        assert_eq!(a.daily_cap_on(day("2026-11-16")), 18);
        assert_eq!(a.daily_cap_on(day("2026-11-23")), 18);
    }
}
