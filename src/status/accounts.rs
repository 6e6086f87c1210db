//! The front page: the API key's and the CRMs' pauses as banners, each account's week, holds,
//! day and backlog, and what needs an operator (failed jobs, parked writebacks).

use super::layout::{self, LastFlash, Page};
use super::login::SignedIn;
use super::{StatusError, StatusState, jobs};
use crate::account::policy::{AccountPolicy, AccountsConfig};
use crate::job::Status;
use crate::queue::Queue;
use crate::store::{AccountSummary, JobFilter, Overview, ParkedWriteback, Store};
use axum::extract::State;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use std::sync::Arc;

/// How many failed jobs and parked writebacks the front page lists.
const ATTENTION_LIMIT: i64 = 50;

/// An account's week as the bar shows it: leadlink's sends, other tools' and people's use,
/// what is left for leadlink, and the reserve kept for people. The parts add up to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekBar {
    pub limit: u32,
    pub ours: u32,
    pub others: u32,
    pub free: u32,
    pub reserve: u32,
}

impl WeekBar {
    /// From the account's last reading; `None` until the week has been read. What is left
    /// is the smaller of the API's `remaining` (less our sends since) and `limit - used`, as
    /// the gate counts it.
    pub fn of(account: &AccountSummary, reserve: u32) -> Option<WeekBar> {
        let (limit, used, remaining) = (account.limit?, account.used?, account.remaining?);
        let left = remaining.min(limit.saturating_sub(used));
        let spent = limit - left;
        let ours = account.used_by_leadlink.unwrap_or(0).min(spent);
        let reserve = reserve.min(left);
        Some(WeekBar {
            limit,
            ours,
            others: spent - ours,
            free: left - reserve,
            reserve,
        })
    }

    /// The segments in the bar's order: (CSS class, legend, count).
    fn segments(&self) -> [(&'static str, &'static str, u32); 4] {
        [
            ("ours", "used by leadlink", self.ours),
            ("others", "used by others", self.others),
            ("free", "remaining", self.free),
            ("reserve", "reserve", self.reserve),
        ]
    }
}

pub async fn page<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    LastFlash(flash): LastFlash,
) -> Result<Page, StatusError> {
    let now = Utc::now();
    let overview = Overview::read(&state.store, &state.accounts, now).await?;
    let failed = state
        .store
        .jobs(&JobFilter {
            status: Some(Status::Failed),
            limit: ATTENTION_LIMIT,
            ..JobFilter::default()
        })
        .await?;
    let parked = state.store.parked_writebacks(ATTENTION_LIMIT).await?;
    let body = html! {
        (banners(&overview, now))
        section.accounts {
            h2 { "Accounts" }
            @if overview.accounts.is_empty() {
                p.empty { "No account has had a job yet." }
            }
            @for account in &overview.accounts {
                (account_card(account, &state.accounts.policy_for(&account.account_id), now))
            }
        }
        section.attention #attention {
            h2 { "Needs attention" }
            h3 { "Failed jobs (" (failed.len()) ")" }
            @if failed.is_empty() {
                p.empty { "No failed job." }
            } @else {
                (jobs::table(&failed, &state.accounts, now, Some(&signed_in.csrf)))
                @if failed.len() as i64 == ATTENTION_LIMIT {
                    p.hint { "The latest " (ATTENTION_LIMIT) ": "
                        a href="/status/jobs?status=failed" { "all failed jobs" } }
                }
            }
            h3 { "Parked writebacks (" (parked.len()) ")" }
            @if parked.is_empty() {
                p.empty { "No parked writeback." }
            } @else {
                (parked_table(&parked, &state.accounts, &signed_in.csrf))
            }
        }
    };
    Ok(Page::new("Status", body)
        .signed_in(&signed_in.csrf)
        .flash(flash))
}

fn banners(overview: &Overview, now: DateTime<Utc>) -> Markup {
    html! {
        @if let Some(pause) = &overview.key_pause {
            p.banner.paused role="alert" {
                strong { "The ConnectSafely API key is paused" }
                " since " (layout::time(pause.since, chrono_tz::UTC, now)) ": " (pause.reason)
                ". No account sends until a probe finds the key working again."
            }
        }
        @for pause in &overview.crm_pauses {
            p.banner.paused role="alert" {
                strong { "CRM " (pause.crm) " is paused" }
                " since " (layout::time(pause.paused_at, chrono_tz::UTC, now)) ": " (pause.reason)
            }
        }
        @if overview.key_pause.is_none() && overview.crm_pauses.is_empty() {
            p.banner.working { "The API key and every CRM are working." }
        }
    }
}

fn account_card(account: &AccountSummary, policy: &AccountPolicy, now: DateTime<Utc>) -> Markup {
    let tz = policy.timezone;
    let bar = WeekBar::of(account, policy.reserve);
    html! {
        article.account #{ "account-" (account.account_id) } {
            header {
                h3 { (account.account_id) }
                span.zone { "times in " (tz.name()) }
            }
            (account_states(account, now, tz))
            h4 { "This week" }
            @match bar {
                Some(bar) => (week_bar(&bar)),
                None => p.empty { "Not read yet: the account's first send reads its week." },
            }
            dl {
                @if let Some(reset) = account.reset_at {
                    dt { "Week resets" } dd { (layout::time(reset, tz, now)) }
                }
                @if let (Some(at), Some(source)) = (account.quota_observed_at, &account.quota_source) {
                    dt { "Read" }
                    dd {
                        (layout::time(at, tz, now))
                        @if source == "endpoint" { " from the quota endpoint" } @else { " from an answer's rate-limit headers" }
                    }
                }
                dt { "Today" }
                dd.today { strong { (account.sends_today) } " of " (account.daily_cap) " sends (daily cap)" }
                @if let Some(at) = account.last_send_at {
                    dt { "Last send" } dd { (layout::time(at, tz, now)) }
                }
                dt { "Next send" }
                dd.next {
                    @if let Some(at) = account.next_send_at {
                        (layout::time(at, tz, now)) br;
                    }
                    span.reason { (account.next_send_reason) }
                }
                dt { "Backlog" }
                dd.backlog {
                    a href=(jobs::list_link("account", &account.account_id)) {
                        strong { (account.backlog) } " waiting"
                    }
                    @if let Some(eta) = account.backlog_eta {
                        "; the last would go " (layout::time(eta, tz, now))
                    }
                }
                @if let Some(job) = account.sending_job {
                    dt { "Sending" }
                    dd { a href={ "/status/jobs/" (job) } { "job " (job) } }
                }
            }
        }
    }
}

/// Holds and pauses, each with its reason.
fn account_states(account: &AccountSummary, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Markup {
    let reason = account.hold_reason.as_deref();
    html! {
        ul.states {
            @if account.paused {
                li.paused { strong { "Paused" } ": " code { "paused = true" } " in the configuration" }
            }
            @if account.shadow {
                li.shadow {
                    strong { "Shadow mode" } ": nothing is sent; each job ends "
                    code { "shadowed" } " at the time it would have gone ("
                    code { "shadow = true" } " in the configuration)"
                }
            }
            @if let Some(why) = &account.disabled {
                li.paused { strong { "Disabled" } ": " (why) }
            }
            @if let Some(until) = account.hold_until.filter(|t| *t > now) {
                li.held {
                    strong { "On hold" } " until " (layout::time(until, tz, now))
                    @if let Some(reason) = reason { ": " (reason) }
                }
            }
            @if let Some(until) = account.blocked_until.filter(|t| *t > now) {
                li.held {
                    strong { "Week spent" } " until " (layout::time(until, tz, now))
                    @if let Some(reason) = reason.filter(|_| account.hold_until.is_none_or(|t| t <= now)) {
                        ": " (reason)
                    }
                }
            }
        }
    }
}

/// The week as stacked segments (an SVG, so the page's policy needs no inline styles), with
/// a legend that gives every number in words, not by colour alone.
fn week_bar(bar: &WeekBar) -> Markup {
    let segments = bar.segments();
    let label = segments
        .iter()
        .map(|(_, name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Each segment starts where the one before it ends, on a 1000-wide scale.
    let total = f64::from(bar.limit.max(1));
    let mut x = 0.0;
    let rects: Vec<(&str, String, String)> = segments
        .iter()
        .map(|(class, _, n)| {
            let width = 1000.0 * f64::from(*n) / total;
            let rect = (*class, format!("{x:.1}"), format!("{width:.1}"));
            x += width;
            rect
        })
        .collect();
    html! {
        figure.week {
            svg.bar viewBox="0 0 1000 24" preserveAspectRatio="none" role="img"
                aria-label={ "Week of " (bar.limit) ": " (label) } {
                rect.track x="0" y="0" width="1000" height="24" {}
                @for (class, x, width) in &rects {
                    rect class=(class) x=(x) y="0" width=(width) height="24" {}
                }
            }
            figcaption {
                ul.legend {
                    @for (class, name, n) in segments {
                        li { span.swatch.(class) {} (name) ": " strong data-part=(class) { (n) } }
                    }
                    li.limit { "limit: " strong { (bar.limit) } }
                }
            }
        }
    }
}

fn parked_table(parked: &[ParkedWriteback], accounts: &AccountsConfig, csrf: &str) -> Markup {
    html! {
        div.scroll {
            table.parked {
                thead { tr { th { "Parked" } th { "Job" } th { "Account" } th { "Target" } th { "Record" } th { "Change" } th { "Reason" } th {} } }
                tbody {
                    @for p in parked {
                        @let w = &p.writeback;
                        @let tz = accounts.policy_for(p.account_id.as_str()).timezone;
                        tr {
                            td data-label="Parked" { (layout::short_time(w.next_attempt_at, tz)) }
                            td data-label="Job" { a href={ "/status/jobs/" (p.job_id) } { (jobs::short_id(p.job_id)) } }
                            td data-label="Account" { (p.account_id) }
                            td data-label="Target" { (w.target) }
                            td data-label="Record" { (w.record_id) }
                            td data-label="Change" { "#" (w.sequence) }
                            td data-label="Reason" { (w.last_error.as_deref().unwrap_or("")) }
                            td { (jobs::action_button(&format!("/status/writebacks/{}/retry", w.id), "Retry", csrf, "/status#attention")) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(limit: u32, used: u32, remaining: u32, ours: u32) -> AccountSummary {
        AccountSummary {
            account_id: "acc_1".into(),
            paused: false,
            shadow: false,
            disabled: None,
            hold_until: None,
            blocked_until: None,
            hold_reason: None,
            limit: Some(limit),
            used: Some(used),
            used_by_leadlink: Some(ours),
            remaining: Some(remaining),
            reset_at: None,
            quota_observed_at: None,
            quota_source: None,
            sends_today: 0,
            daily_cap: 18,
            last_send_at: None,
            next_send_at: None,
            next_send_reason: String::new(),
            backlog: 0,
            backlog_eta: None,
            sending_job: None,
        }
    }

    #[test]
    fn the_week_splits_into_ours_others_remaining_and_reserve() {
        // 30 used, 10 of them ours; 60 left, 5 of which are the reserve.
        let bar = WeekBar::of(&account(90, 30, 60, 10), 5).unwrap();
        assert_eq!(
            bar,
            WeekBar {
                limit: 90,
                ours: 10,
                others: 20,
                free: 55,
                reserve: 5
            }
        );
        // Our sends since the reading came off `remaining` but are not in `used` yet.
        let bar = WeekBar::of(&account(90, 30, 57, 13), 0).unwrap();
        assert_eq!((bar.ours, bar.others, bar.free), (13, 20, 57));
        // A reserve larger than what is left takes only what is left.
        let bar = WeekBar::of(&account(90, 88, 2, 0), 5).unwrap();
        assert_eq!((bar.others, bar.free, bar.reserve), (88, 0, 2));
        for bar in [bar, WeekBar::of(&account(90, 30, 60, 10), 5).unwrap()] {
            assert_eq!(bar.ours + bar.others + bar.free + bar.reserve, bar.limit);
        }
    }

    #[test]
    fn odd_readings_still_add_up_and_an_unread_week_has_no_bar() {
        // Headers that disagree: the smaller figure is what is left.
        let bar = WeekBar::of(&account(90, 80, 20, 3), 0).unwrap();
        assert_eq!((bar.ours, bar.others, bar.free), (3, 77, 10));
        // More of our sends counted than the API has seen used: ours is capped.
        let bar = WeekBar::of(&account(90, 0, 90, 4), 0).unwrap();
        assert_eq!((bar.ours, bar.others, bar.free), (0, 0, 90));
        let unread = AccountSummary {
            limit: None,
            ..account(90, 0, 90, 0)
        };
        assert_eq!(WeekBar::of(&unread, 0), None);
    }

    #[test]
    fn the_bar_names_every_number() {
        let bar = WeekBar::of(&account(90, 30, 60, 10), 5).unwrap();
        let html = week_bar(&bar).into_string();
        for text in [
            "used by leadlink: <strong data-part=\"ours\">10</strong>",
            "used by others: <strong data-part=\"others\">20</strong>",
            "remaining: <strong data-part=\"free\">55</strong>",
            "reserve: <strong data-part=\"reserve\">5</strong>",
            "aria-label=\"Week of 90: 10 used by leadlink, 20 used by others, 55 remaining, 5 reserve\"",
        ] {
            assert!(html.contains(text), "{text} not in {html}");
        }
    }

    #[test]
    fn a_shadow_account_is_marked_plainly() {
        let now = Utc::now();
        let live = account_states(&account(90, 0, 90, 0), now, chrono_tz::UTC).into_string();
        assert!(!live.contains("Shadow mode"), "{live}");
        let shadow = AccountSummary {
            shadow: true,
            ..account(90, 0, 90, 0)
        };
        let html = account_states(&shadow, now, chrono_tz::UTC).into_string();
        assert!(
            html.contains("<li class=\"shadow\"><strong>Shadow mode</strong>"),
            "{html}"
        );
    }
}
