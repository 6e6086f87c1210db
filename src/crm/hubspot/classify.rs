//! Reading HubSpot's answers: the status and error body, and the rate-limit headers that
//! make up the budget.

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

use crate::crm::api::{CallFailure, RecordFields};

pub(super) const REMAINING: &str = "x-hubspot-ratelimit-remaining";
pub(super) const INTERVAL: &str = "x-hubspot-ratelimit-interval-milliseconds";
/// HubSpot's burst window, used when a ten-secondly 429 does not say how long to wait.
const TEN_SECONDS: Duration = Duration::from_secs(10);
/// Enough of an error body to act on, short enough for a CRM field and a log line.
const REASON_CHARS: usize = 500;

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
pub fn classify(status: u16, headers: &HeaderMap, body: &str) -> Result<(), CallFailure> {
    let reason = || format!("HTTP {status}: {}", error_message(body));
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(CallFailure::AuthFailed { reason: reason() }),
        404 => Err(CallFailure::Gone {
            reason: format!("contact not found (deleted or merged); {}", reason()),
        }),
        409 => Err(CallFailure::Gone {
            reason: format!("contact in conflict (merged?); {}", reason()),
        }),
        429 => Err(CallFailure::Retry {
            after: retry_after(headers).or_else(|| ten_secondly(headers, body)),
            error: reason(),
        }),
        408 | 500..=599 => Err(CallFailure::Retry {
            after: retry_after(headers),
            error: reason(),
        }),
        _ => Err(CallFailure::Refused { reason: reason() }),
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

/// A 2xx we cannot read is most likely a proxy's page: worth another try later.
pub(super) fn read_fields(body: &str) -> Result<RecordFields, CallFailure> {
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
        return Err(CallFailure::Retry {
            after: None,
            error: "HubSpot answered 2xx without a record's properties".into(),
        });
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
    Ok(fields)
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
    fn answers_are_classified() {
        let none = HeaderMap::new();
        let error = r#"{"status":"error","message":"Property values were not valid","correlationId":"c-1","category":"VALIDATION_ERROR"}"#;
        assert_eq!(classify(200, &none, "{}"), Ok(()));
        assert_eq!(classify(204, &none, ""), Ok(()));
        assert_eq!(
            classify(400, &none, error),
            Err(CallFailure::Refused {
                reason: "HTTP 400: VALIDATION_ERROR: Property values were not valid".into()
            })
        );
        assert_eq!(
            classify(
                401,
                &none,
                r#"{"status":"error","message":"Authentication credentials not found."}"#
            ),
            Err(CallFailure::AuthFailed {
                reason: "HTTP 401: Authentication credentials not found.".into()
            })
        );
        assert!(matches!(
            classify(403, &none, "forbidden"),
            Err(CallFailure::AuthFailed { reason }) if reason == "HTTP 403: forbidden"
        ));
        assert!(matches!(
            classify(404, &none, r#"{"message":"resource not found"}"#),
            Err(CallFailure::Gone { reason }) if reason.contains("deleted or merged") && reason.contains("resource not found")
        ));
        assert!(matches!(
            classify(409, &none, r#"{"message":"Contact already merged"}"#),
            Err(CallFailure::Gone { reason }) if reason.contains("HTTP 409: Contact already merged")
        ));
        for status in [408, 500, 502, 503, 504] {
            assert_eq!(
                classify(status, &none, ""),
                Err(CallFailure::Retry {
                    after: None,
                    error: format!("HTTP {status}: (empty body)")
                })
            );
        }
        assert!(matches!(
            classify(302, &none, ""),
            Err(CallFailure::Refused { .. })
        ));
        let long = "x".repeat(2000);
        let Err(CallFailure::Refused { reason }) = classify(422, &none, &long) else {
            panic!()
        };
        assert_eq!(reason.len(), "HTTP 422: ".len() + REASON_CHARS);
    }

    #[test]
    fn throttling_says_how_long_to_wait() {
        let ten_secondly = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#;
        let daily = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        let after = |headers: &HeaderMap, body| match classify(429, headers, body) {
            Err(CallFailure::Retry { after, error }) => {
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
            Err(CallFailure::Retry {
                after: Some(Duration::from_secs(7)),
                error: "HTTP 503: (empty body)".into()
            })
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
}
