//! The ConnectSafely API client and its typed responses.
//!
//! The client only performs calls and parses what came back; what to do with a response is
//! decided in `worker::decide`. The account reads (quota, status, list) are in [`account`].

mod account;
mod config;
pub mod limits;

pub use account::{AccountStatus, QuotaResponse, QuotaWindow, RemoteAccount};
pub use config::ConnectSafelyConfig;

use crate::secret::Secret;
use crate::telemetry::{metrics, outgoing};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("ConnectSafely did not answer within the timeout")]
    Timeout,
    #[error("could not reach ConnectSafely: {0}")]
    Transport(String),
    #[error("ConnectSafely rejected the API key (401)")]
    Unauthorized,
    #[error("ConnectSafely answered {status}: {message}")]
    Status { status: u16, message: String },
    /// A 429 to a read call: a per-minute API limit (reads cost no quota, so this is never
    /// the weekly hold); wait `retry_after`. `connect` returns its 429s as answers instead.
    #[error("ConnectSafely rate-limited the call (429{}): {message}", retry_hint(.retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("ConnectSafely has no account {account_id} (404): {message}")]
    AccountNotFound { account_id: String, message: String },
    /// A 2xx whose body is not what the call documents.
    #[error("unreadable ConnectSafely answer to {call}: {reason}")]
    Unreadable { call: &'static str, reason: String },
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(", retry after {}s", d.as_secs()))
}

impl ApiError {
    fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            ApiError::Timeout
        } else {
            // Without the URL: it is ours and adds nothing, and keeps query strings out of logs.
            ApiError::Transport(error.without_url().to_string())
        }
    }
}

/// The `X-RateLimit-*` headers of one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub action: String,
    pub limit: Option<i32>,
    pub used: Option<i32>,
    pub remaining: Option<i32>,
    pub reset: Option<DateTime<Utc>>,
}

impl RateLimit {
    pub fn from_headers(headers: &HeaderMap) -> Option<RateLimit> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let number = |name: &str| text(name).and_then(|v| v.trim().parse::<i32>().ok());
        let action = text("x-ratelimit-action")?.to_string();
        Some(RateLimit {
            action,
            limit: number("x-ratelimit-limit"),
            used: number("x-ratelimit-used"),
            remaining: number("x-ratelimit-remaining"),
            reset: text("x-ratelimit-reset").and_then(parse_time),
        })
    }
}

/// What `POST /connect` answered, parsed as far as the API documents it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectResponse {
    pub status: u16,
    pub profile_urn: Option<String>,
    /// The error text, from either documented error shape.
    pub error: Option<String>,
    pub hold_until: Option<DateTime<Utc>>,
    pub weekly_reset: Option<DateTime<Utc>>,
    pub retry_after: Option<Duration>,
    pub rate_limit: Option<RateLimit>,
    pub body: serde_json::Value,
}

impl ConnectResponse {
    pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> ConnectResponse {
        let json = body_json(body);
        let field = |name: &str| json.get(name).and_then(|v| v.as_str());
        ConnectResponse {
            status,
            profile_urn: field("profileUrn").map(str::to_string),
            error: error_text(status, &json),
            hold_until: field("holdUntil").and_then(parse_time),
            weekly_reset: field("weeklyReset").and_then(parse_time),
            retry_after: retry_after(headers),
            rate_limit: RateLimit::from_headers(headers),
            body: json,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub invitation_sent: bool,
    #[serde(default)]
    pub invitation_received: bool,
    pub status: Option<String>,
    pub profile_urn: Option<String>,
}

/// The body as JSON, or its first 500 characters as a JSON string when it is not JSON.
fn body_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(body).chars().take(500).collect())
    })
}

/// The error text, from either documented error shape (`error`, or `code` and `message`).
fn error_text(status: u16, json: &serde_json::Value) -> Option<String> {
    let field = |name: &str| json.get(name).and_then(|v| v.as_str());
    let error = field("error")
        .or_else(|| field("message").filter(|_| status >= 400))
        .map(str::to_string)
        .or_else(|| json.as_str().filter(|s| !s.is_empty()).map(str::to_string));
    match (error, field("code")) {
        (Some(message), Some(code)) => Some(format!("{code}: {message}")),
        (error, _) => error,
    }
}

/// A whole answer to a read call, taken in before deciding what it means.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The answer if it is a 2xx, or the error it stands for. `account_id` names the account
    /// a 404 is about; a call that can 404 for something else handles that 404 itself.
    fn success(self, account_id: Option<&str>) -> Result<Answer, ApiError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let message = error_text(self.status, &body_json(&self.body))
            .unwrap_or_else(|| format!("HTTP {}", self.status));
        Err(match (self.status, account_id) {
            (401, _) => ApiError::Unauthorized,
            (429, _) => ApiError::RateLimited {
                retry_after: retry_after(&self.headers),
                message,
            },
            (404, Some(account_id)) => ApiError::AccountNotFound {
                account_id: account_id.to_string(),
                message,
            },
            (status, _) => ApiError::Status { status, message },
        })
    }

    /// The body as `T`; the error names the field that did not fit.
    fn parse<T: DeserializeOwned>(&self, call: &'static str) -> Result<T, ApiError> {
        let mut json = serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(&mut json).map_err(|e| ApiError::Unreadable {
            call,
            reason: e.to_string(),
        })
    }
}

/// A relationship lookup: the profile may simply not exist.
#[derive(Debug, Clone, PartialEq)]
pub enum RelationshipAnswer {
    Found(Relationship),
    ProfileNotFound,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_urn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_message: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
}

impl Client {
    pub fn new(base_url: &str, api_key: Secret, timeout: Duration) -> Result<Client, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("leadlink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
        })
    }

    /// `POST /connect`. Any HTTP answer is `Ok`: classifying it is the worker's decision.
    pub async fn connect(&self, request: &ConnectRequest) -> Result<ConnectResponse, ApiError> {
        let request = self
            .http
            .post(format!("{}/connect", self.base_url))
            .json(request);
        let answer = self.call("connect", request).await?;
        Ok(ConnectResponse::parse(
            answer.status,
            &answer.headers,
            &answer.body,
        ))
    }

    /// `GET /relationship/{accountId}/{profileId}`; costs no quota.
    pub async fn relationship(
        &self,
        account_id: &str,
        profile: &str,
    ) -> Result<RelationshipAnswer, ApiError> {
        let url = format!(
            "{}/relationship/{}/{}",
            self.base_url,
            encode_segment(account_id),
            encode_segment(profile)
        );
        let answer = self.get("relationship", &url).await?;
        if answer.status == 404 {
            return Ok(RelationshipAnswer::ProfileNotFound);
        }
        answer
            .success(None)?
            .parse("GET /relationship")
            .map(RelationshipAnswer::Found)
    }

    /// Whether the key works, with a call that costs no quota (`GET /accounts`). Only the
    /// status matters: a body this client cannot read still proves the key.
    pub async fn probe_key(&self) -> Result<(), ApiError> {
        self.get_accounts().await.map(drop)
    }

    /// `GET /accounts`, shared by [`Client::probe_key`] and [`Client::accounts`].
    async fn get_accounts(&self) -> Result<Answer, ApiError> {
        self.get("accounts", &format!("{}/accounts", self.base_url))
            .await?
            .success(None)
    }

    /// A GET named `endpoint` in metrics and traces: a fixed route name, never the URL,
    /// which holds account and profile ids.
    async fn get(&self, endpoint: &'static str, url: &str) -> Result<Answer, ApiError> {
        self.call(endpoint, self.http.get(url)).await
    }

    /// Every call goes out here: with the key, as a traced call, counted and timed by
    /// `endpoint`, with its whole answer read.
    async fn call(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        let started = Instant::now();
        let answer = Self::answer(
            outgoing::send(endpoint, request.bearer_auth(self.api_key.expose())).await,
        )
        .await;
        metrics::api_call(
            endpoint,
            answer.as_ref().ok().map(|a| a.status),
            started.elapsed(),
        );
        answer
    }

    async fn answer(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Answer, ApiError> {
        let response = sent.map_err(ApiError::from_reqwest)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(ApiError::from_reqwest)?
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Everything but RFC 3986's unreserved characters, so ids like `acc_1` travel as written.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After` is seconds, or an HTTP date.
fn parse_retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    DateTime::parse_from_rfc2822(text).ok().map(|at| {
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn parses_the_documented_429() {
        let body = br#"{"error":"Connection request limit exceeded: 90/90 used.","success":false,
            "holdUntil":"2024-01-16T10:30:00.000Z","weeklyReset":"2024-01-22T00:00:00.000Z"}"#;
        let h = headers(&[
            ("X-RateLimit-Action", "CONNECT"),
            ("X-RateLimit-Limit", "90"),
            ("X-RateLimit-Used", "90"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "2024-01-22T00:00:00.000Z"),
        ]);
        let r = ConnectResponse::parse(429, &h, body);
        assert_eq!(
            r.hold_until.unwrap().to_rfc3339(),
            "2024-01-16T10:30:00+00:00"
        );
        assert_eq!(
            r.weekly_reset.unwrap().to_rfc3339(),
            "2024-01-22T00:00:00+00:00"
        );
        let limit = r.rate_limit.unwrap();
        assert_eq!(limit.action, "CONNECT");
        assert_eq!(
            (limit.limit, limit.used, limit.remaining),
            (Some(90), Some(90), Some(0))
        );
        assert!(r.error.unwrap().contains("90/90"));
    }

    #[test]
    fn parses_both_error_shapes() {
        let a = ConnectResponse::parse(
            400,
            &HeaderMap::new(),
            br#"{"error":"Already connected","success":false}"#,
        );
        assert_eq!(a.error.as_deref(), Some("Already connected"));
        let b = ConnectResponse::parse(
            400,
            &HeaderMap::new(),
            br#"{"success":false,"code":"BAD_INPUT","message":"profileId is invalid"}"#,
        );
        assert_eq!(b.error.as_deref(), Some("BAD_INPUT: profileId is invalid"));
        let c = ConnectResponse::parse(502, &HeaderMap::new(), b"<html>Bad gateway</html>");
        assert_eq!(c.error.as_deref(), Some("<html>Bad gateway</html>"));
    }

    #[test]
    fn success_keeps_the_urn_and_has_no_error() {
        let r = ConnectResponse::parse(
            200,
            &HeaderMap::new(),
            br#"{"success":true,"message":"Connection request sent successfully","profileUrn":"urn:li:fsd_profile:ACoAA1"}"#,
        );
        assert_eq!(r.profile_urn.as_deref(), Some("urn:li:fsd_profile:ACoAA1"));
        assert_eq!(r.error, None);
    }

    #[tokio::test]
    async fn relationship_maps_found_not_found_and_errors() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let answers = [
            (
                "john-doe",
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "connected": false, "invitationSent": true, "status": "INVITATION_SENT",
                "profileUrn": "urn:li:fsd_profile:ACoAA1", "accountId": "acc_1"})),
            ),
            (
                "unknown-x",
                ResponseTemplate::new(404).set_body_json(serde_json::json!({
                "error": "LinkedIn profile not found: unknown-x"})),
            ),
            (
                "busy",
                ResponseTemplate::new(429).insert_header("Retry-After", "3"),
            ),
            (
                "garbled",
                ResponseTemplate::new(200).set_body_string("<html>"),
            ),
        ];
        for (profile, response) in answers {
            Mock::given(method("GET"))
                .and(path(format!("/relationship/acc_1/{profile}")))
                .respond_with(response)
                .mount(&server)
                .await;
        }
        let client = Client::new(&server.uri(), Secret::new("k"), Duration::from_secs(5)).unwrap();
        let RelationshipAnswer::Found(found) =
            client.relationship("acc_1", "john-doe").await.unwrap()
        else {
            panic!("expected Found");
        };
        assert!(found.invitation_sent && !found.connected);
        assert_eq!(
            found.profile_urn.as_deref(),
            Some("urn:li:fsd_profile:ACoAA1")
        );
        assert_eq!(
            client.relationship("acc_1", "unknown-x").await.unwrap(),
            RelationshipAnswer::ProfileNotFound
        );
        assert!(matches!(
            client.relationship("acc_1", "busy").await,
            Err(ApiError::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            client.relationship("acc_1", "garbled").await,
            Err(ApiError::Unreadable { .. })
        ));
    }

    #[test]
    fn retry_after_in_seconds() {
        let r = ConnectResponse::parse(429, &headers(&[("Retry-After", "12")]), b"{}");
        assert_eq!(r.retry_after, Some(Duration::from_secs(12)));
        assert_eq!(r.hold_until, None);
    }
}
