//! A typed client over the admin API: what `/admin/jobs`, `/admin/accounts` and
//! `/admin/stats` answer, as structs, so tests read fields instead of JSON paths and a
//! renamed field fails where it is parsed. The views hold the fields the tests read; serde
//! skips the rest.

use super::{ADMIN_TOKEN, TestApp, WAIT};
use chrono::{DateTime, Utc};
use leadlink::job::Status;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// A job as `/admin/jobs` lists it; `/admin/jobs/{id}` adds its history and writebacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub source: String,
    pub record_id: String,
    pub record_object: Option<String>,
    pub account_id: String,
    pub profile_urn: Option<String>,
    pub lead: LeadView,
    pub status: Status,
    pub error: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub changed_at: DateTime<Utc>,
    #[serde(default)]
    pub priority: i32,
    /// Empty in a list.
    #[serde(default)]
    pub history: Vec<EventView>,
    /// Empty in a list.
    #[serde(default)]
    pub writebacks: Vec<WritebackView>,
}

impl JobView {
    /// Whether a relationship check found the invitation already out: what a resend after a
    /// send that left no outcome must do instead of sending again.
    pub fn found_the_invitation_out(&self) -> bool {
        self.history
            .iter()
            .any(|e| e.detail["call"] == "GET /relationship" && e.detail["invitationSent"] == true)
    }

    /// The history lines of one kind (`accepted`, `api_call`, `status`, `writeback`, ...).
    pub fn events(&self, kind: &str) -> Vec<&EventView> {
        self.history.iter().filter(|e| e.kind == kind).collect()
    }

    /// The writebacks to one target (`callback`, `hubspot`, `salesforce`).
    pub fn writebacks_to(&self, target: &str) -> Vec<WritebackView> {
        let to_target = self.writebacks.iter().filter(|w| w.target == target);
        to_target.cloned().collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadView {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
}

/// One line of a job's history; `detail` differs by kind, so it stays JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub kind: String,
    pub detail: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WritebackView {
    pub id: i64,
    pub target: String,
    pub sequence: i32,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JobList {
    jobs: Vec<JobView>,
}

/// `/admin/accounts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsView {
    pub accounts: Vec<AccountView>,
    pub api_key: KeyView,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub account_id: String,
    #[serde(default)]
    pub shadow: bool,
    pub limit: Option<u32>,
    pub used: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_at: Option<DateTime<Utc>>,
    pub sends_today: u32,
    pub next_send_at: Option<DateTime<Utc>>,
    pub backlog: i64,
    pub sending_job: Option<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyView {
    pub paused: bool,
}

/// `/admin/stats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    pub ignored_events: HashMap<String, u64>,
    pub publishes: PublishesView,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishesView {
    pub in_flight: u64,
    pub left_to_relay: u64,
}

impl TestApp {
    /// `GET path` with the admin token: the status and the JSON body, as it came.
    pub async fn admin(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// `GET path`, which must answer 200 with a `T`.
    async fn admin_ok<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.admin(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("{path} answered an unexpected shape ({e}): {body:#}"))
    }

    pub async fn job(&self, id: Uuid) -> JobView {
        self.admin_ok(&format!("/admin/jobs/{id}")).await
    }

    /// `/admin/jobs?{query}`, e.g. `record=crm-1` or `account=acc_1&status=sent`.
    pub async fn jobs(&self, query: &str) -> Vec<JobView> {
        let list: JobList = self.admin_ok(&format!("/admin/jobs?{query}")).await;
        list.jobs
    }

    /// The jobs of a CRM record.
    pub async fn jobs_of(&self, record: &str) -> Vec<JobView> {
        self.jobs(&format!("record={record}")).await
    }

    /// The one job of a CRM record.
    pub async fn only_job_of(&self, record: &str) -> JobView {
        let mut jobs = self.jobs_of(record).await;
        assert_eq!(jobs.len(), 1, "record {record}: {jobs:#?}");
        jobs.remove(0)
    }

    pub async fn accounts(&self) -> AccountsView {
        self.admin_ok("/admin/accounts").await
    }

    /// One account as `/admin/accounts` shows it, if it is there.
    pub async fn account(&self, id: &str) -> Option<AccountView> {
        let accounts = self.accounts().await.accounts;
        accounts.into_iter().find(|a| a.account_id == id)
    }

    pub async fn stats(&self) -> StatsView {
        self.admin_ok("/admin/stats").await
    }

    /// Waits up to `WAIT` until the job has `status`, or panics with the job as it stands.
    pub async fn wait_for(&self, id: Uuid, status: Status) -> JobView {
        self.wait_for_within(id, status, WAIT).await
    }

    pub async fn wait_for_within(&self, id: Uuid, status: Status, within: Duration) -> JobView {
        self.wait_for_one_of(id, &[status], within).await
    }

    /// Waits until the job has one of `statuses`, or panics with the job as it stands.
    pub async fn wait_for_one_of(
        &self,
        id: Uuid,
        statuses: &[Status],
        within: Duration,
    ) -> JobView {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.job(id).await;
            if statuses.contains(&job.status) {
                return job;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("job {id} did not reach {statuses:?} within {within:?}: {job:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
