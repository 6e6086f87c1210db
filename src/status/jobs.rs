//! Jobs: the list, filtered by a GET form (status, account, record), newest first, and a
//! page per job with its history as a timeline and its writebacks.

use super::layout::{self, LastFlash, Page};
use super::login::SignedIn;
use super::{StatusError, StatusState};
use crate::account::policy::AccountsConfig;
use crate::job::{Job, Status};
use crate::queue::Queue;
use crate::store::{JobEvent, JobFilter, Store, WritebackRow};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

/// The list's filters as the form sends them: blank means any.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    record: String,
    #[serde(default)]
    limit: String,
}

impl ListQuery {
    fn filter(&self) -> Result<JobFilter, StatusError> {
        let given = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
        let status = match given(&self.status) {
            None => None,
            Some(text) => Some(
                Status::parse(&text)
                    .ok_or_else(|| StatusError::BadRequest(format!("unknown status {text}")))?,
            ),
        };
        let limit = match given(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| StatusError::BadRequest(format!("not a number of jobs: {text}")))?
                .clamp(1, MAX_LIMIT),
        };
        Ok(JobFilter {
            record_id: given(&self.record),
            status,
            account_id: given(&self.account),
            limit,
        })
    }
}

pub async fn list<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    LastFlash(flash): LastFlash,
    Query(query): Query<ListQuery>,
) -> Result<Page, StatusError> {
    let now = Utc::now();
    let filter = query.filter()?;
    let jobs = state.store.jobs(&filter).await?;
    let accounts: Vec<String> = state
        .store
        .accounts(&state.accounts, now)
        .await?
        .into_iter()
        .map(|a| a.account_id)
        .collect();
    let body = html! {
        form.filters method="get" action="/status/jobs" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for status in Status::ALL {
                        option value=(status) selected[filter.status == Some(status)] { (status) }
                    }
                }
            }
            label { "Account"
                select name="account" {
                    option value="" { "any" }
                    @for account in &accounts {
                        option value=(account) selected[filter.account_id.as_deref() == Some(account.as_str())] { (account) }
                    }
                }
            }
            label { "Record"
                input type="search" name="record" value=(filter.record_id.as_deref().unwrap_or("")) placeholder="CRM record id";
            }
            label { "Show"
                input type="number" name="limit" min="1" max=(MAX_LIMIT) value=(filter.limit);
            }
            button type="submit" { "Filter" }
        }
        p.count { (jobs.len()) " job" @if jobs.len() != 1 { "s" } ", newest first" }
        @if !jobs.is_empty() {
            (table(&jobs, &state.accounts, now, None))
        }
    };
    Ok(Page::new("Jobs", body)
        .signed_in(&signed_in.csrf)
        .flash(flash))
}

/// Jobs as a table, each linking to its page; with `csrf`, failed ones get a retry button.
pub fn table(
    jobs: &[Job],
    accounts: &AccountsConfig,
    now: DateTime<Utc>,
    csrf: Option<&str>,
) -> Markup {
    html! {
        div.scroll {
            table.jobs {
                thead {
                    tr {
                        th { "Created" } th { "Job" } th { "Record" } th { "Lead" } th { "Account" }
                        th { "Status" } th { "Detail" }
                        @if csrf.is_some() { th {} }
                    }
                }
                tbody {
                    @for job in jobs {
                        @let tz = accounts.policy_for(job.account_id.as_str()).timezone;
                        tr {
                            td data-label="Created" { (layout::short_time(job.created_at, tz)) }
                            td data-label="Job" { a href={ "/status/jobs/" (job.id) } { (short_id(job.id)) } }
                            td data-label="Record" { (job.record_id) }
                            td data-label="Lead" { (lead_name(job)) }
                            td data-label="Account" { (job.account_id.as_str()) }
                            td data-label="Status" { (badge(job.status)) }
                            td data-label="Detail" { (job_detail(job, tz, now)) }
                            @if let Some(csrf) = csrf {
                                td {
                                    @if Status::RETRIABLE.contains(&job.status) {
                                        (action_button(&format!("/status/jobs/{}/retry", job.id), "Retry", csrf, "/status#attention"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The job list filtered on one field; the value is encoded, since record ids are free text.
pub fn list_link(field: &str, value: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(field, value)
        .finish();
    format!("/status/jobs?{query}")
}

pub async fn page<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    LastFlash(flash): LastFlash,
    Path(id): Path<String>,
) -> Result<Page, StatusError> {
    let not_found = || StatusError::NotFound(format!("no job {id}"));
    let job_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let found = state.store.job(job_id).await?.ok_or_else(not_found)?;
    let now = Utc::now();
    let job = &found.job;
    let tz = state.accounts.policy_for(job.account_id.as_str()).timezone;
    let csrf = signed_in.csrf.as_str();
    let back = format!("/status/jobs/{job_id}");
    let body = html! {
        p.zone { "Times in " (tz.name()) ", the account's time zone." }
        section.job {
            dl {
                dt { "Status" } dd { (badge(job.status)) }
                @if let Some(error) = &job.error { dt { "Error" } dd.error { (error) } }
                @if let Some(at) = job.retry_at { dt { "Retry at" } dd { (layout::time(at, tz, now)) } }
                @if let Some(at) = job.hold_until { dt { "Hold until" } dd { (layout::time(at, tz, now)) } }
                dt { "Account" } dd { a href=(list_link("account", job.account_id.as_str())) { (job.account_id.as_str()) } }
                dt { "Record" } dd {
                    (job.source) " " (job.record_object.as_deref().unwrap_or("record")) " "
                    a href=(list_link("record", &job.record_id)) { (job.record_id) }
                }
                dt { "Lead" } dd { (lead_name(job)) }
                @if let Some(url) = &job.lead.linkedin_url { dt { "LinkedIn" } dd.wrap { (url) } }
                @if let Some(profile) = &job.profile_id { dt { "Profile id" } dd { (profile) } }
                @if let Some(urn) = &job.profile_urn { dt { "Profile URN" } dd.wrap { (urn) } }
                @if let Some(message) = &job.message { dt { "Note" } dd.note { (message) } }
                dt { "Attempts" } dd { (job.attempts) }
                dt { "Created" } dd { (layout::time(job.created_at, tz, now)) }
                dt { "Changed" } dd { (layout::time(job.changed_at, tz, now)) }
                @if let Some(at) = job.due_at { dt { "Next try" } dd { (layout::time(at, tz, now)) } }
            }
            @if Status::RETRIABLE.contains(&job.status) || !job.status.is_final() {
                div.actions {
                    @if Status::RETRIABLE.contains(&job.status) {
                        (action_button(&format!("/status/jobs/{job_id}/retry"), "Retry job", csrf, &back))
                    }
                    @if !job.status.is_final() {
                        span.cancel { (action_button(&format!("/status/jobs/{job_id}/cancel"), "Cancel job", csrf, &back)) }
                    }
                }
            }
        }
        section {
            h2 { "History" }
            ol.timeline {
                @for event in &found.history {
                    (history_line(event, tz))
                }
            }
        }
        section {
            h2 { "Writebacks" }
            @if found.writebacks.is_empty() {
                p.empty { "None: no writeback target is configured for this record." }
            } @else {
                (writebacks(&found.writebacks, tz, csrf, &back))
            }
        }
    };
    Ok(Page::new(format!("Job {job_id}"), body)
        .signed_in(csrf)
        .flash(flash))
}

fn history_line(event: &JobEvent, tz: Tz) -> Markup {
    html! {
        li {
            span.when { (layout::short_time(event.at, tz)) }
            span.kind { (event.kind) }
            @if let Some(status) = event.status { (badge(status)) }
            span.detail { (detail(&event.detail)) }
        }
    }
}

fn writebacks(rows: &[WritebackRow], tz: Tz, csrf: &str, back: &str) -> Markup {
    html! {
        div.scroll {
            table.writebacks {
                thead { tr { th { "Change" } th { "Target" } th { "Record" } th { "State" } th { "Attempts" } th { "When" } th { "Last error" } th {} } }
                tbody {
                    @for w in rows {
                        tr #{ "writeback-" (w.id) } {
                            td data-label="Change" { "#" (w.sequence) }
                            td data-label="Target" { (w.target) }
                            td data-label="Record" { (w.record_id) }
                            td data-label="State" { span.state.(w.state) { (w.state) } }
                            td data-label="Attempts" { (w.attempts) }
                            td data-label="When" {
                                @match (w.delivered_at, w.state.as_str()) {
                                    (Some(at), _) => { "delivered " (layout::short_time(at, tz)) }
                                    (None, "pending") => { "next try " (layout::short_time(w.next_attempt_at, tz)) }
                                    (None, _) => { (layout::short_time(w.next_attempt_at, tz)) }
                                }
                            }
                            td data-label="Last error" { (w.last_error.as_deref().unwrap_or("")) }
                            td {
                                @if w.state == "parked" {
                                    (action_button(&format!("/status/writebacks/{}/retry", w.id), "Retry", csrf, back))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A history line's detail: its fields as `name: value`, leaving out the empty ones.
fn detail(value: &Value) -> Markup {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    html! {
        @match value {
            Value::Object(fields) => {
                @for (name, v) in fields.iter().filter(|(_, v)| !v.is_null()) {
                    span.field { span.name { (name) ": " } (text(v)) }
                }
            }
            Value::Null => {},
            other => { (text(other)) }
        }
    }
}

fn job_detail(job: &Job, tz: Tz, now: DateTime<Utc>) -> Markup {
    html! {
        @if let Some(error) = &job.error { span.error { (error) } }
        @if let (Some(at), Status::Shadowed) = (job.retry_at, job.status) {
            " " span.retry { "would have been sent " (layout::relative(at, now)) " (" (layout::short_time(at, tz)) ")" }
        } @else if let (Some(at), false) = (job.retry_at, job.status.is_final()) {
            " " span.retry { "retry " (layout::relative(at, now)) " (" (layout::short_time(at, tz)) ")" }
        }
    }
}

fn lead_name(job: &Job) -> String {
    let lead = &job.lead;
    let name = [lead.first_name.as_deref(), lead.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    match (name.is_empty(), lead.company.as_deref()) {
        (false, Some(company)) => format!("{name}, {company}"),
        (false, None) => name,
        (true, Some(company)) => company.to_string(),
        (true, None) => job.profile_id.clone().unwrap_or_default(),
    }
}

pub fn badge(status: Status) -> Markup {
    html! { span.status.(status) { (status) } }
}

/// The end of a job id, enough to tell jobs apart on a page (its start is a timestamp that
/// jobs of the same minute share).
pub fn short_id(id: Uuid) -> String {
    let id = id.simple().to_string();
    format!("…{}", &id[id.len() - 8..])
}

/// A button that POSTs an action with the session's CSRF token, then comes back to `back`.
pub fn action_button(action: &str, label: &str, csrf: &str, back: &str) -> Markup {
    html! {
        form.action method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="back" value=(back);
            button type="submit" { (label) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::list_link;

    #[test]
    fn a_filter_link_keeps_a_record_id_whole() {
        assert_eq!(
            list_link("record", "a&b #1+2"),
            "/status/jobs?record=a%26b+%231%2B2"
        );
        assert_eq!(list_link("account", "acc_1"), "/status/jobs?account=acc_1");
    }
}
