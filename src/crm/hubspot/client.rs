//! The HTTP client: one rate-limit budget shared by every clone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::HubSpotError;
use super::classify::{Budget, BudgetSpent, classify, read_fields};
use super::config::HubSpotCrmConfig;
use crate::crm::api::{CallFailure, RecordFields};
use crate::secret::Secret;
use crate::telemetry::outgoing;

/// Shared by every clone, so all of a process's tasks spend one budget.
#[derive(Debug, Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: Url,
    token: Secret,
    budget: Arc<Mutex<Option<Budget>>>,
}

impl HubSpotClient {
    pub fn new(config: &HubSpotCrmConfig) -> Result<HubSpotClient, HubSpotError> {
        let token = config
            .access_token
            .clone()
            .filter(|t| !t.expose().trim().is_empty())
            .ok_or_else(|| HubSpotError::Config("access_token is missing".into()))?;
        if config.base_url.cannot_be_a_base() {
            return Err(HubSpotError::Config("base_url cannot be a base URL".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect elsewhere would carry the token along or turn a PATCH into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("leadlink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubSpotError::Config(e.to_string()))?;
        Ok(HubSpotClient {
            http,
            base_url: config.base_url.clone(),
            token,
            budget: Arc::new(Mutex::new(None)),
        })
    }

    /// The contact's properties among `properties` (HubSpot adds a few of its own); a
    /// property that is null or empty on the contact is absent from the map.
    pub async fn read_contact(
        &self,
        id: &str,
        properties: &[String],
    ) -> Result<RecordFields, CallFailure> {
        let Some(mut url) = self.contact_url(id) else {
            return empty_id();
        };
        if !properties.is_empty() {
            url.query_pairs_mut()
                .append_pair("properties", &properties.join(","));
        }
        while let Some(wait) = self.take_budget() {
            Self::wait_for_window(wait).await;
        }
        let (outcome, body) = self.send(self.http.get(url)).await;
        outcome.and_then(|()| read_fields(&body))
    }

    /// Sets the given properties; HubSpot refuses the whole update if any is unknown or
    /// read-only. Waits for the rate-limit budget only if it frees up by `start_by`.
    pub async fn update_contact(
        &self,
        id: &str,
        properties: Map<String, Value>,
        start_by: Instant,
    ) -> Result<Result<(), CallFailure>, BudgetSpent> {
        let Some(url) = self.contact_url(id) else {
            return Ok(empty_id());
        };
        while let Some(wait) = self.take_budget() {
            if Instant::now() + wait > start_by {
                return Err(BudgetSpent { wait });
            }
            Self::wait_for_window(wait).await;
        }
        let body = serde_json::json!({ "properties": properties });
        Ok(self.send(self.http.patch(url).json(&body)).await.0)
    }

    fn contact_url(&self, id: &str) -> Option<Url> {
        if id.trim().is_empty() {
            return None;
        }
        let mut url = self.base_url.clone();
        url.path_segments_mut().ok()?.pop_if_empty().extend([
            "crm",
            "v3",
            "objects",
            "contacts",
            id.trim(),
        ]);
        Some(url)
    }

    async fn wait_for_window(wait: Duration) {
        tracing::debug!(
            ?wait,
            "HubSpot rate-limit budget spent; waiting for the window"
        );
        tokio::time::sleep(wait).await;
    }

    /// Sends (the caller has taken the budget), records the new budget, and classifies the
    /// answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> (Result<(), CallFailure>, String) {
        let request = request.bearer_auth(self.token.expose());
        let response = match outgoing::send("crm/v3/objects/contacts/{id}", request).await {
            Ok(response) => response,
            Err(e) => return (Err(e.into()), String::new()),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(budget) = Budget::from_headers(&headers, Instant::now()) {
            *self.lock_budget() = Some(budget);
        }
        let body = match response.text().await {
            Ok(body) => body.replace(self.token.expose(), "[REDACTED]"),
            Err(e) => return (Err(e.into()), String::new()),
        };
        (classify(status, &headers, &body), body)
    }

    fn take_budget(&self) -> Option<Duration> {
        self.lock_budget().as_mut()?.take(Instant::now())
    }

    fn lock_budget(&self) -> std::sync::MutexGuard<'_, Option<Budget>> {
        // The budget is a hint: one poisoned by a panicking task is still usable.
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn empty_id<T>() -> Result<T, CallFailure> {
    Err(CallFailure::Refused {
        reason: "contact id is empty".into(),
    })
}
