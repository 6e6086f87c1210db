//! The ConnectSafely API client and its typed responses.
//!
//! The client only performs calls and parses what came back; what to do with a response is
//! decided in `worker::decide`.

use crate::secret::Secret;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).chars().take(500).collect())
        });
        let field = |name: &str| json.get(name).and_then(|v| v.as_str());
        let error = field("error")
            .or_else(|| field("message").filter(|_| status >= 400))
            .map(str::to_string)
            .or_else(|| json.as_str().filter(|s| !s.is_empty()).map(str::to_string));
        let error = match (error, field("code")) {
            (Some(message), Some(code)) => Some(format!("{code}: {message}")),
            (error, _) => error,
        };
        ConnectResponse {
            status,
            profile_urn: field("profileUrn").map(str::to_string),
            error,
            hold_until: field("holdUntil").and_then(parse_time),
            weekly_reset: field("weeklyReset").and_then(parse_time),
            retry_after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
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
        let response = self
            .http
            .post(format!("{}/connect", self.base_url))
            .bearer_auth(self.api_key.expose())
            .json(request)
            .send()
            .await
            .map_err(ApiError::from_reqwest)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(ApiError::from_reqwest)?;
        Ok(ConnectResponse::parse(status, &headers, &body))
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
        let response = self.get(&url).await?;
        match response.status().as_u16() {
            200 => response
                .json::<Relationship>()
                .await
                .map(RelationshipAnswer::Found)
                .map_err(|e| ApiError::Transport(format!("unreadable relationship: {e}"))),
            404 => Ok(RelationshipAnswer::ProfileNotFound),
            401 => Err(ApiError::Unauthorized),
            status => Err(ApiError::Status {
                status,
                message: response.text().await.unwrap_or_default(),
            }),
        }
    }

    /// Whether the key works, with a call that costs no quota (`GET /accounts`).
    pub async fn probe_key(&self) -> Result<(), ApiError> {
        let response = self.get(&format!("{}/accounts", self.base_url)).await?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 => Err(ApiError::Unauthorized),
            status => Err(ApiError::Status {
                status,
                message: response.text().await.unwrap_or_default(),
            }),
        }
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, ApiError> {
        self.http
            .get(url)
            .bearer_auth(self.api_key.expose())
            .send()
            .await
            .map_err(ApiError::from_reqwest)
    }
}

fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
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

    #[test]
    fn retry_after_in_seconds() {
        let r = ConnectResponse::parse(429, &headers(&[("Retry-After", "12")]), b"{}");
        assert_eq!(r.retry_after, Some(Duration::from_secs(12)));
        assert_eq!(r.hold_until, None);
    }
}
