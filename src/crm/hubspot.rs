//! HubSpot's CRM v3 contacts API with a private app token: read a contact (enrichment) and
//! patch its status properties (writeback), staying under the `X-HubSpot-RateLimit-*` budget
//! so that our own calls never cause the 429s they would then have to wait out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::api::{CallOutcome, RecordFields};
use crate::secret::Secret;

const REMAINING: &str = "x-hubspot-ratelimit-remaining";
const INTERVAL: &str = "x-hubspot-ratelimit-interval-milliseconds";
/// HubSpot's burst window, used when a ten-secondly 429 does not say how long to wait.
const TEN_SECONDS: Duration = Duration::from_secs(10);
/// Enough of an error body to act on, short enough for a CRM field and a log line.
const REASON_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum HubSpotError {
    #[error("crm.hubspot: {0}")]
    Config(String),
}

/// `[crm.hubspot]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotCrmConfig {
    #[serde(deserialize_with = "url_from_str")]
    pub base_url: Url,
    /// A private app token with the contacts read and write scopes.
    pub access_token: Option<Secret>,
    pub access_token_file: Option<PathBuf>,
    /// Where the contact keeps its LinkedIn profile URL; portals differ.
    pub linkedin_url_property: String,
    pub properties: HubSpotProperties,
    /// HubSpot owner id -> ConnectSafely account id, so a lead goes out from its owner's
    /// LinkedIn account.
    pub owners: BTreeMap<String, String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HubSpotCrmConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse("https://api.hubapi.com").expect("static URL"),
            access_token: None,
            access_token_file: None,
            linkedin_url_property: "hs_linkedin_url".into(),
            properties: HubSpotProperties::default(),
            owners: BTreeMap::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The contact properties the writeback sets. They must exist in the portal (HubSpot
/// refuses unknown properties), so the names are configurable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotProperties {
    pub status: String,
    pub profile_urn: String,
    pub hold_until: String,
    pub retry_at: String,
    pub last_error: String,
    pub status_changed_at: String,
}

impl Default for HubSpotProperties {
    fn default() -> Self {
        Self {
            status: "linkedin_connection_status".into(),
            profile_urn: "linkedin_profile_urn".into(),
            hold_until: "linkedin_hold_until".into(),
            retry_at: "linkedin_retry_at".into(),
            last_error: "linkedin_last_error".into(),
            status_changed_at: "linkedin_status_changed_at".into(),
        }
    }
}

impl HubSpotProperties {
    /// Each property with its configuration key.
    pub fn named(&self) -> [(&'static str, &str); 6] {
        [
            ("status", &self.status),
            ("profile_urn", &self.profile_urn),
            ("hold_until", &self.hold_until),
            ("retry_at", &self.retry_at),
            ("last_error", &self.last_error),
            ("status_changed_at", &self.status_changed_at),
        ]
    }
}

fn url_from_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Url::parse(raw.trim()).map_err(serde::de::Error::custom)
}

impl HubSpotCrmConfig {
    const KEY: &str = "crm.hubspot";

    /// Pushes one message per problem, each starting with the key it is about.
    pub fn check(&self, problems: &mut Vec<String>) {
        let key = Self::KEY;
        if !matches!(self.base_url.scheme(), "http" | "https") {
            problems.push(format!("{key}.base_url must be an http(s) URL"));
        }
        match &self.access_token {
            None if self.access_token_file.is_none() => problems.push(format!(
                "{key}.access_token is missing (inline, LEADLINK_CRM__HUBSPOT__ACCESS_TOKEN or access_token_file)"
            )),
            Some(token) if token.expose().trim().is_empty() => {
                problems.push(format!("{key}.access_token is empty"))
            }
            _ => {}
        }
        if self.linkedin_url_property.trim().is_empty() {
            problems.push(format!("{key}.linkedin_url_property is empty"));
        }
        let mut seen = BTreeSet::new();
        for (name, property) in self.properties.named() {
            if property.trim().is_empty() {
                problems.push(format!("{key}.properties.{name} is empty"));
            } else if property == self.linkedin_url_property {
                problems.push(format!(
                    "{key}.properties.{name} is the linkedin_url_property: the writeback would overwrite the profile URL"
                ));
            } else if !seen.insert(property) {
                problems.push(format!(
                    "{key}.properties.{name}: `{property}` is already used by another status property"
                ));
            }
        }
        for (owner, account) in &self.owners {
            if owner.trim().is_empty() || account.trim().is_empty() {
                problems.push(format!(
                    "{key}.owners: owner ids and account ids must not be empty (`{owner}` = `{account}`)"
                ));
            }
        }
        if self.timeout.is_zero() {
            problems.push(format!("{key}.timeout must be longer than zero"));
        }
    }
}

/// What the last response said about the rate-limit window, minus the calls started since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub remaining: u64,
    pub window_ends: Instant,
}

impl Budget {
    /// From a response's `X-HubSpot-RateLimit-Remaining` and `-Interval-Milliseconds`, with
    /// the window counted from `now`, when the response arrived.
    pub fn from_headers(headers: &HeaderMap, now: Instant) -> Option<Budget> {
        let remaining = number(headers, REMAINING)?;
        let interval = number(headers, INTERVAL)?;
        Some(Budget {
            remaining,
            window_ends: now + Duration::from_millis(interval),
        })
    }

    /// Either spends one call (`None`: call now) or says how long to wait for the window to
    /// end. The last call of a window is kept back, as other processes share the budget.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        if now >= self.window_ends {
            return None;
        }
        if self.remaining <= 1 {
            return Some(self.window_ends - now);
        }
        self.remaining -= 1;
        None
    }
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What a HubSpot answer means for the caller; `Done(())` for any 2xx, whose body the caller
/// reads. `body` must not contain the token (the client removes it first).
pub fn classify(status: u16, headers: &HeaderMap, body: &str) -> CallOutcome<()> {
    let reason = || format!("HTTP {status}: {}", error_message(body));
    match status {
        200..=299 => CallOutcome::Done(()),
        401 | 403 => CallOutcome::AuthFailed { reason: reason() },
        404 => CallOutcome::Gone {
            reason: format!("contact not found (deleted or merged); {}", reason()),
        },
        409 => CallOutcome::Gone {
            reason: format!("contact in conflict (merged?); {}", reason()),
        },
        429 => CallOutcome::Retry {
            after: retry_after(headers).or_else(|| ten_secondly(headers, body)),
            error: reason(),
        },
        408 | 500..=599 => CallOutcome::Retry {
            after: retry_after(headers),
            error: reason(),
        },
        _ => CallOutcome::Refused { reason: reason() },
    }
}

/// HubSpot sends whole seconds on API responses.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    number(headers, "retry-after").map(Duration::from_secs)
}

/// A burst-limit 429 without `Retry-After` clears when the interval has passed.
fn ten_secondly(headers: &HeaderMap, body: &str) -> Option<Duration> {
    let body: Value = serde_json::from_str(body).ok()?;
    let policy = body.get("policyName")?.as_str()?;
    policy
        .eq_ignore_ascii_case("TEN_SECONDLY_ROLLING")
        .then(|| {
            number(headers, INTERVAL)
                .map(Duration::from_millis)
                .unwrap_or(TEN_SECONDS)
        })
}

/// `category: message` from HubSpot's error body, else the start of the body itself.
fn error_message(body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let field = |name| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let text = match (field("category"), field("message")) {
        (Some(category), Some(message)) => format!("{category}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ if body.trim().is_empty() => "(empty body)".to_owned(),
        _ => body.trim().to_owned(),
    };
    text.chars().take(REASON_CHARS).collect()
}

/// The rate-limit budget is spent for `wait` more, longer than the caller may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSpent {
    pub wait: Duration,
}

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
    pub async fn read_contact(&self, id: &str, properties: &[String]) -> CallOutcome<RecordFields> {
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
        and_then(outcome, || read_fields(&body))
    }

    /// Sets the given properties; HubSpot refuses the whole update if any is unknown or
    /// read-only. Waits for the rate-limit budget only if it frees up by `start_by`.
    pub async fn update_contact(
        &self,
        id: &str,
        properties: Map<String, Value>,
        start_by: Instant,
    ) -> Result<CallOutcome<()>, BudgetSpent> {
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
    async fn send(&self, request: reqwest::RequestBuilder) -> (CallOutcome<()>, String) {
        let response = match request.bearer_auth(self.token.expose()).send().await {
            Ok(response) => response,
            Err(e) => return (transport_error(e), String::new()),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(budget) = Budget::from_headers(&headers, Instant::now()) {
            *self.lock_budget() = Some(budget);
        }
        let body = match response.text().await {
            Ok(body) => body.replace(self.token.expose(), "[REDACTED]"),
            Err(e) => return (transport_error(e), String::new()),
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

fn empty_id<T>() -> CallOutcome<T> {
    CallOutcome::Refused {
        reason: "contact id is empty".into(),
    }
}

/// Timeouts and connection failures are worth retrying; a request we could not even build
/// is not. Without the URL, as everywhere.
fn transport_error<T>(error: reqwest::Error) -> CallOutcome<T> {
    if error.is_builder() {
        CallOutcome::Refused {
            reason: error.without_url().to_string(),
        }
    } else {
        CallOutcome::Retry {
            after: None,
            error: error.without_url().to_string(),
        }
    }
}

fn and_then<T>(outcome: CallOutcome<()>, done: impl FnOnce() -> CallOutcome<T>) -> CallOutcome<T> {
    match outcome {
        CallOutcome::Done(()) => done(),
        CallOutcome::Retry { after, error } => CallOutcome::Retry { after, error },
        CallOutcome::Gone { reason } => CallOutcome::Gone { reason },
        CallOutcome::Refused { reason } => CallOutcome::Refused { reason },
        CallOutcome::AuthFailed { reason } => CallOutcome::AuthFailed { reason },
    }
}

/// A 2xx we cannot read is most likely a proxy's page: worth another try later.
fn read_fields(body: &str) -> CallOutcome<RecordFields> {
    let properties = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| match v {
            Value::Object(mut record) => match record.remove("properties") {
                Some(Value::Object(properties)) => Some(properties),
                _ => None,
            },
            _ => None,
        });
    let Some(properties) = properties else {
        return CallOutcome::Retry {
            after: None,
            error: "HubSpot answered 2xx without a record's properties".into(),
        };
    };
    let fields = properties
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(s) if !s.trim().is_empty() => Some((name, s)),
            Value::Number(n) => Some((name, n.to_string())),
            Value::Bool(b) => Some((name, b.to_string())),
            _ => None,
        })
        .collect();
    CallOutcome::Done(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "pat-na1-00000000-secret";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn answers_are_classified() {
        let none = HeaderMap::new();
        let error = r#"{"status":"error","message":"Property values were not valid","correlationId":"c-1","category":"VALIDATION_ERROR"}"#;
        assert_eq!(classify(200, &none, "{}"), CallOutcome::Done(()));
        assert_eq!(classify(204, &none, ""), CallOutcome::Done(()));
        assert_eq!(
            classify(400, &none, error),
            CallOutcome::Refused {
                reason: "HTTP 400: VALIDATION_ERROR: Property values were not valid".into()
            }
        );
        assert_eq!(
            classify(
                401,
                &none,
                r#"{"status":"error","message":"Authentication credentials not found."}"#
            ),
            CallOutcome::AuthFailed {
                reason: "HTTP 401: Authentication credentials not found.".into()
            }
        );
        assert!(matches!(
            classify(403, &none, "forbidden"),
            CallOutcome::AuthFailed { reason } if reason == "HTTP 403: forbidden"
        ));
        assert!(matches!(
            classify(404, &none, r#"{"message":"resource not found"}"#),
            CallOutcome::Gone { reason } if reason.contains("deleted or merged") && reason.contains("resource not found")
        ));
        assert!(matches!(
            classify(409, &none, r#"{"message":"Contact already merged"}"#),
            CallOutcome::Gone { reason } if reason.contains("HTTP 409: Contact already merged")
        ));
        for status in [408, 500, 502, 503, 504] {
            assert_eq!(
                classify(status, &none, ""),
                CallOutcome::Retry {
                    after: None,
                    error: format!("HTTP {status}: (empty body)")
                }
            );
        }
        assert!(matches!(
            classify(302, &none, ""),
            CallOutcome::Refused { .. }
        ));
        let long = "x".repeat(2000);
        let CallOutcome::Refused { reason } = classify(422, &none, &long) else {
            panic!()
        };
        assert_eq!(reason.len(), "HTTP 422: ".len() + REASON_CHARS);
    }

    #[test]
    fn throttling_says_how_long_to_wait() {
        let ten_secondly = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#;
        let daily = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        let after = |headers: &HeaderMap, body| match classify(429, headers, body) {
            CallOutcome::Retry { after, error } => {
                assert!(error.starts_with("HTTP 429: "), "{error}");
                after
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            after(&headers(&[("retry-after", "3")]), ten_secondly),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            after(&headers(&[(INTERVAL, "10000")]), ten_secondly),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            after(&headers(&[(INTERVAL, "1500")]), ten_secondly),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(after(&HeaderMap::new(), ten_secondly), Some(TEN_SECONDS));
        assert_eq!(after(&HeaderMap::new(), daily), None);
        assert_eq!(after(&headers(&[("retry-after", "soon")]), "{}"), None);
        assert_eq!(
            classify(503, &headers(&[("retry-after", "7")]), ""),
            CallOutcome::Retry {
                after: Some(Duration::from_secs(7)),
                error: "HTTP 503: (empty body)".into()
            }
        );
    }

    #[test]
    fn the_budget_holds_back_the_last_call_of_a_window() {
        let now = Instant::now();
        let headers = headers(&[
            (REMAINING, "3"),
            (INTERVAL, "10000"),
            ("x-hubspot-ratelimit-max", "190"),
        ]);
        let mut budget = Budget::from_headers(&headers, now).unwrap();
        assert_eq!(budget.window_ends, now + Duration::from_secs(10));
        assert_eq!(budget.take(now), None);
        assert_eq!(budget.take(now), None);
        assert_eq!(budget.remaining, 1);
        let later = now + Duration::from_secs(4);
        assert_eq!(budget.take(later), Some(Duration::from_secs(6)));
        assert_eq!(budget.take(later), Some(Duration::from_secs(6)));
        // Once the window is over, the call goes out and its answer sets the next budget.
        assert_eq!(budget.take(now + Duration::from_secs(10)), None);

        let mut spent = Budget {
            remaining: 0,
            window_ends: now + Duration::from_millis(300),
        };
        assert_eq!(spent.take(now), Some(Duration::from_millis(300)));

        assert_eq!(Budget::from_headers(&HeaderMap::new(), now), None);
        assert_eq!(
            Budget::from_headers(&self::headers(&[(REMAINING, "5")]), now),
            None
        );
    }

    fn config(server: &MockServer) -> HubSpotCrmConfig {
        HubSpotCrmConfig {
            base_url: Url::parse(&server.uri()).unwrap(),
            access_token: Some(Secret::new(TOKEN)),
            ..Default::default()
        }
    }

    async fn client() -> (MockServer, HubSpotClient) {
        let server = MockServer::start().await;
        let client = HubSpotClient::new(&config(&server)).unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn read_contact_asks_for_the_properties_and_skips_empty_ones() {
        let (server, client) = client().await;
        Mock::given(method("GET"))
            .and(path("/crm/v3/objects/contacts/a%2Fb%20c"))
            .and(query_param(
                "properties",
                "hs_linkedin_url,firstname,company",
            ))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(header(
                "user-agent",
                concat!("leadlink/", env!("CARGO_PKG_VERSION")),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "a/b c",
                "properties": {
                    "hs_linkedin_url": "https://www.linkedin.com/in/ada",
                    "firstname": "Ada",
                    "company": null,
                    "hs_object_id": "501",
                    "lastname": ""
                },
                "archived": false
            })))
            .expect(1)
            .mount(&server)
            .await;
        let properties = ["hs_linkedin_url", "firstname", "company"].map(String::from);
        let outcome = client.read_contact("a/b c", &properties).await;
        let expected: RecordFields = [
            ("firstname", "Ada"),
            ("hs_linkedin_url", "https://www.linkedin.com/in/ada"),
            ("hs_object_id", "501"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(outcome, CallOutcome::Done(expected));
    }

    /// A deadline no budget wait reaches.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_budget_wait_past_the_deadline_is_handed_back() {
        let (server, client) = client().await;
        Mock::given(method("PATCH"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header(REMAINING, "1")
                    .insert_header(INTERVAL, "60000"),
            )
            .expect(1)
            .mount(&server)
            .await;
        client
            .update_contact("1", Map::new(), later())
            .await
            .unwrap();
        let started = Instant::now();
        let spent = client
            .update_contact("2", Map::new(), started + Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(spent.wait > Duration::from_secs(55), "{spent:?}");
    }

    #[tokio::test]
    async fn update_contact_patches_the_properties() {
        let (server, client) = client().await;
        Mock::given(method("PATCH"))
            .and(path("/crm/v3/objects/contacts/501"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_json(json!({"properties": {
                "linkedin_connection_status": "sent",
                "linkedin_last_error": ""
            }})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "501"})))
            .expect(1)
            .mount(&server)
            .await;
        let mut properties = Map::new();
        properties.insert("linkedin_connection_status".into(), json!("sent"));
        properties.insert("linkedin_last_error".into(), json!(""));
        assert_eq!(
            client
                .update_contact("501", properties, later())
                .await
                .unwrap(),
            CallOutcome::Done(())
        );
        assert_eq!(
            client
                .update_contact(" ", Map::new(), later())
                .await
                .unwrap(),
            CallOutcome::Refused {
                reason: "contact id is empty".into()
            }
        );
    }

    async fn answer(template: ResponseTemplate) -> CallOutcome<()> {
        let (server, client) = client().await;
        Mock::given(method("PATCH"))
            .respond_with(template)
            .expect(1)
            .mount(&server)
            .await;
        client
            .update_contact("501", Map::new(), later())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn error_answers_reach_the_caller_classified() {
        let not_found = ResponseTemplate::new(404)
            .set_body_json(json!({"status": "error", "message": "resource not found"}));
        assert!(matches!(
            answer(not_found).await,
            CallOutcome::Gone { reason } if reason.contains("resource not found")
        ));
        let merged = ResponseTemplate::new(409).set_body_json(json!({"message": "merged"}));
        assert!(matches!(answer(merged).await, CallOutcome::Gone { .. }));

        // Even a body that echoes the token does not carry it into the outcome.
        let unauthorized = ResponseTemplate::new(401)
            .set_body_json(json!({"message": format!("token {TOKEN} is expired")}));
        let outcome = answer(unauthorized).await;
        assert_eq!(
            outcome,
            CallOutcome::AuthFailed {
                reason: "HTTP 401: token [REDACTED] is expired".into()
            }
        );

        let throttled = ResponseTemplate::new(429)
            .insert_header("retry-after", "2")
            .set_body_json(json!({"policyName": "TEN_SECONDLY_ROLLING"}));
        assert!(matches!(
            answer(throttled).await,
            CallOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            answer(ResponseTemplate::new(503)).await,
            CallOutcome::Retry { after: None, .. }
        ));
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
            .mount(&server)
            .await;
        let slow = HubSpotClient::new(&HubSpotCrmConfig {
            timeout: Duration::from_millis(100),
            ..config(&server)
        })
        .unwrap();
        let outcome = slow.read_contact("1", &[]).await;
        assert!(
            matches!(outcome, CallOutcome::Retry { after: None, .. }),
            "{outcome:?}"
        );

        let gone = HubSpotClient::new(&HubSpotCrmConfig {
            base_url: Url::parse("http://127.0.0.1:9").unwrap(),
            ..config(&server)
        })
        .unwrap();
        assert!(matches!(
            gone.update_contact("1", Map::new(), later()).await.unwrap(),
            CallOutcome::Retry { after: None, .. }
        ));
    }

    #[tokio::test]
    async fn a_spent_budget_delays_the_next_call_of_every_clone() {
        let (server, client) = client().await;
        Mock::given(method("PATCH"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header(REMAINING, "1")
                    .insert_header(INTERVAL, "300"),
            )
            .expect(2)
            .mount(&server)
            .await;
        assert_eq!(
            client
                .update_contact("1", Map::new(), later())
                .await
                .unwrap(),
            CallOutcome::Done(())
        );
        let first_done = std::time::Instant::now();
        let clone = client.clone();
        assert_eq!(
            clone
                .update_contact("2", Map::new(), later())
                .await
                .unwrap(),
            CallOutcome::Done(())
        );
        // The window started when the first answer arrived, just before `first_done`.
        assert!(
            first_done.elapsed() >= Duration::from_millis(250),
            "{:?}",
            first_done.elapsed()
        );
    }

    #[test]
    fn a_client_needs_a_token() {
        let error = HubSpotClient::new(&HubSpotCrmConfig::default()).unwrap_err();
        assert_eq!(error.to_string(), "crm.hubspot: access_token is missing");
        let client = HubSpotClient::new(&HubSpotCrmConfig {
            access_token: Some(Secret::new(TOKEN)),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{client:?}").contains(TOKEN));
    }

    fn from_toml(toml: &str) -> Result<HubSpotCrmConfig, String> {
        use figment::providers::{Format, Toml};
        figment::Figment::new()
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())
    }

    fn problems(config: &HubSpotCrmConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn config_defaults_and_overrides() {
        let defaults = from_toml("access_token = \"t\"").unwrap();
        assert_eq!(defaults.base_url.as_str(), "https://api.hubapi.com/");
        assert_eq!(defaults.linkedin_url_property, "hs_linkedin_url");
        assert_eq!(defaults.properties.status, "linkedin_connection_status");
        assert_eq!(
            defaults.properties.status_changed_at,
            "linkedin_status_changed_at"
        );
        assert_eq!(defaults.timeout, Duration::from_secs(10));
        assert_eq!(problems(&defaults), Vec::<String>::new());

        let custom = from_toml(
            r#"
            base_url = "http://127.0.0.1:9200"
            access_token = "t"
            linkedin_url_property = "linkedin_profile"
            timeout = "3s"
            [properties]
            status = "li_status"
            [owners]
            "123" = "acct_ada"
            "#,
        )
        .unwrap();
        assert_eq!(custom.properties.status, "li_status");
        assert_eq!(custom.properties.retry_at, "linkedin_retry_at");
        assert_eq!(custom.owners["123"], "acct_ada");
        assert_eq!(custom.timeout, Duration::from_secs(3));
        assert_eq!(problems(&custom), Vec::<String>::new());

        assert!(from_toml("base_url = \"not a url\"").is_err());
        assert!(from_toml("acces_token = \"t\"").is_err());
        assert!(from_toml("[properties]\nstatuses = \"x\"").is_err());
    }

    #[test]
    fn config_problems_name_their_key() {
        let mut config = HubSpotCrmConfig {
            base_url: Url::parse("ftp://api.hubapi.com").unwrap(),
            linkedin_url_property: "li".into(),
            timeout: Duration::ZERO,
            ..Default::default()
        };
        config.properties.profile_urn = " ".into();
        config.properties.retry_at = "linkedin_hold_until".into();
        config.properties.last_error = "li".into();
        config.owners.insert("7".into(), String::new());
        let found = problems(&config);
        let expected = [
            "crm.hubspot.base_url must be an http(s) URL",
            "crm.hubspot.access_token is missing",
            "crm.hubspot.properties.profile_urn is empty",
            "crm.hubspot.properties.retry_at: `linkedin_hold_until` is already used",
            "crm.hubspot.properties.last_error is the linkedin_url_property",
            "crm.hubspot.owners: owner ids and account ids must not be empty",
            "crm.hubspot.timeout must be longer than zero",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (problem, start) in found.iter().zip(expected) {
            assert!(problem.starts_with(start), "{problem}");
        }

        let from_file = HubSpotCrmConfig {
            access_token_file: Some("/run/secrets/hubspot".into()),
            ..Default::default()
        };
        assert_eq!(problems(&from_file), Vec::<String>::new());
        let empty = HubSpotCrmConfig {
            access_token: Some(Secret::new(" ")),
            ..Default::default()
        };
        assert_eq!(problems(&empty), ["crm.hubspot.access_token is empty"]);
    }
}
