//! The vendor-neutral writeback: a Standard Webhooks-signed POST to the user's endpoint.

use super::api::CallFailure;
use super::{CallbackConfig, CrmError};
use crate::secret::Secret;
use crate::signature::standard_webhooks::Signer;
use crate::store::WritebackWork;
use crate::telemetry::outgoing;
use chrono::{DateTime, Utc};
use std::time::Duration;

pub struct CallbackWriter {
    http: reqwest::Client,
    url: Secret,
    signer: Signer,
    timeout: Duration,
}

impl CallbackWriter {
    pub const EVENT_TYPE: &'static str = "lead.connect.status";

    pub fn new(config: &CallbackConfig) -> Result<CallbackWriter, CrmError> {
        let url = config
            .url
            .clone()
            .ok_or_else(|| CrmError::Config("writeback.callback.url is missing".into()))?;
        let secret = config
            .secret
            .as_ref()
            .ok_or_else(|| CrmError::Config("writeback.callback.secret is missing".into()))?;
        let signer = Signer::new(secret.expose()).map_err(|e| CrmError::Config(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect would turn the signed POST into a GET that "succeeds".
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("leadlink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CrmError::Config(e.to_string()))?;
        Ok(CallbackWriter {
            http,
            url,
            signer,
            timeout: config.timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn deliver(
        &self,
        work: &WritebackWork,
        now: DateTime<Utc>,
    ) -> Result<(), CallFailure> {
        let body = serde_json::json!({"type": Self::EVENT_TYPE, "data": work.payload});
        let body = body.to_string().into_bytes();
        // The same id on every attempt of one change, so the receiver can drop repeats.
        let message_id = format!("{}-{}", work.job_id, work.sequence);
        let headers = match self.signer.headers(&message_id, now, &body) {
            Ok(headers) => headers,
            Err(e) => {
                return Err(CallFailure::Refused {
                    reason: format!("could not sign: {e}"),
                });
            }
        };
        let mut request = self
            .http
            .post(self.url.expose())
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match outgoing::send("callback", request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body: String = response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                outcome(status, retry_after, body)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The receiver's answer: 2xx delivered, throttling and server errors retried, any other
/// refusal parked with its reason.
fn outcome(status: u16, retry_after: Option<Duration>, body: String) -> Result<(), CallFailure> {
    match status {
        200..=299 => Ok(()),
        408 | 425 | 429 | 500..=599 => Err(CallFailure::Retry {
            after: retry_after,
            error: format!("HTTP {status}: {body}"),
        }),
        _ => Err(CallFailure::Refused {
            reason: format!("refused with HTTP {status}: {body}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(outcome(204, None, String::new()), Ok(()));
        assert_eq!(
            outcome(429, Some(Duration::from_secs(3)), "slow".into()),
            Err(CallFailure::Retry {
                after: Some(Duration::from_secs(3)),
                error: "HTTP 429: slow".into()
            })
        );
        assert!(matches!(
            outcome(502, None, String::new()),
            Err(CallFailure::Retry { .. })
        ));
        assert_eq!(
            outcome(404, None, "no".into()),
            Err(CallFailure::Refused {
                reason: "refused with HTTP 404: no".into()
            })
        );
    }
}
