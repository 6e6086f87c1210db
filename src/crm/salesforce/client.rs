//! The REST client: one OAuth token shared by every clone and task, replaced once on a 401.

use super::SalesforceError;
use super::classify::{classify, classify_token, excerpt, record_fields};
use super::config::{SalesforceCrmConfig, is_record_id, usable_base_url};
use crate::crm::api::{CallFailure, RecordFields};
use crate::secret::Secret;
use crate::telemetry::outgoing;
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use url::Url;

/// Cheap to clone: clones share the HTTP connection pool and the token.
#[derive(Clone)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    client_secret: Secret,
    api_version: String,
    /// Held across a token fetch, so callers that need a token meanwhile wait for that one
    /// fetch instead of starting their own.
    token: Mutex<Option<Arc<Token>>>,
}

struct Token {
    access: Secret,
    instance_url: Url,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    instance_url: String,
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

impl SalesforceClient {
    pub fn new(config: &SalesforceCrmConfig) -> Result<Self, SalesforceError> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        if !problems.is_empty() {
            return Err(SalesforceError::Config(problems.join("; ")));
        }
        // check() reports each of these when missing.
        let (Some(my_domain), Some(client_id), Some(client_secret)) = (
            &config.my_domain_url,
            &config.client_id,
            &config.client_secret,
        ) else {
            return Err(SalesforceError::Config(
                "crm.salesforce credentials are missing".into(),
            ));
        };
        let token_url = my_domain
            .join("/services/oauth2/token")
            .map_err(|e| SalesforceError::Config(format!("crm.salesforce.my_domain_url: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect would replay the PATCH elsewhere, or hide a wrong My Domain.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("leadlink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SalesforceError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                token_url,
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                api_version: config.api_version.clone(),
                token: Mutex::new(None),
            }),
        })
    }

    /// `object` is `Lead` or `Contact`. An empty `fields` reads every field.
    pub async fn read_record(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> Result<RecordFields, CallFailure> {
        let path = record_path(object, id)?;
        let joined = fields.join(",");
        let query: Vec<(&str, &str)> = if fields.is_empty() {
            Vec::new()
        } else {
            vec![("fields", &joined)]
        };
        let body = self.call(Method::GET, &path, &query, None).await?;
        match record_fields(&body) {
            Some(fields) => Ok(fields),
            None => Err(CallFailure::Retry {
                after: None,
                error: format!(
                    "Salesforce answered with something other than a record: {}",
                    excerpt(&body)
                ),
            }),
        }
    }

    /// `object` is `Lead` or `Contact`; `fields` is the PATCH body.
    pub async fn update_record(
        &self,
        object: &str,
        id: &str,
        fields: Map<String, Value>,
    ) -> Result<(), CallFailure> {
        let path = record_path(object, id)?;
        self.call(Method::PATCH, &path, &[], Some(&fields)).await?;
        Ok(())
    }

    /// One API call with the shared token; on a 401, once more with a new token.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Map<String, Value>>,
    ) -> Result<String, CallFailure> {
        let token = self.token(None).await?;
        let mut answer = self.send(&token, method.clone(), path, query, body).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            tracing::info!(
                error = %excerpt(&answer.body),
                "Salesforce rejected the access token; fetching a new one"
            );
            let token = self.token(Some(&token)).await?;
            answer = self.send(&token, method, path, query, body).await?;
        }
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(classify(
                answer.status.as_u16(),
                answer.retry_after,
                &answer.body,
            ))
        }
    }

    async fn send(
        &self,
        token: &Token,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Map<String, Value>>,
    ) -> Result<Answer, CallFailure> {
        let mut url = token.instance_url.clone();
        url.set_path(&format!(
            "/services/data/v{}/{path}",
            self.inner.api_version
        ));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .inner
            .http
            .request(method, url)
            .bearer_auth(token.access.expose())
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        // `record_path` is the one path the client calls.
        let sent = outgoing::send("sobjects/{object}/{id}", request).await;
        read_answer("Salesforce API", sent).await
    }

    /// The cached token, or a new one when there is none or when `rejected` is still the
    /// cached one (another task may already have replaced it).
    async fn token(&self, rejected: Option<&Arc<Token>>) -> Result<Arc<Token>, CallFailure> {
        let mut cached = self.inner.token.lock().await;
        match (cached.as_ref(), rejected) {
            (Some(current), Some(rejected)) if Arc::ptr_eq(current, rejected) => *cached = None,
            (Some(current), _) => return Ok(Arc::clone(current)),
            (None, _) => {}
        }
        let token = Arc::new(self.fetch_token().await?);
        *cached = Some(Arc::clone(&token));
        Ok(token)
    }

    async fn fetch_token(&self) -> Result<Token, CallFailure> {
        let inner = &self.inner;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", inner.client_id.as_str()),
            ("client_secret", inner.client_secret.expose()),
        ];
        let request = inner
            .http
            .post(inner.token_url.clone())
            .header(ACCEPT, "application/json")
            .form(&form);
        let sent = outgoing::send("oauth2/token", request).await;
        let answer = read_answer("Salesforce token endpoint", sent).await?;
        // Never let the secret into an error text, should anything echo the form back.
        let body = answer
            .body
            .replace(inner.client_secret.expose(), "[REDACTED]");
        if !answer.status.is_success() {
            return Err(classify_token(
                answer.status.as_u16(),
                answer.retry_after,
                &body,
            ));
        }
        let unusable = |why: String| CallFailure::Retry {
            after: None,
            error: format!(
                "Salesforce token endpoint answered {}: {why}",
                answer.status
            ),
        };
        let parsed: TokenResponse =
            serde_json::from_str(&body).map_err(|e| unusable(e.to_string()))?;
        let instance_url = Url::parse(&parsed.instance_url)
            .map_err(|e| e.to_string())
            .and_then(|url| usable_base_url(&url).map(|()| url))
            .map_err(|e| unusable(format!("instance_url `{}`: {e}", parsed.instance_url)))?;
        tracing::info!(
            instance = instance_url.host_str().unwrap_or_default(),
            "fetched a Salesforce access token"
        );
        Ok(Token {
            access: parsed.access_token,
            instance_url,
        })
    }
}

impl fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("token_url", &self.inner.token_url.as_str())
            .field("client_id", &self.inner.client_id)
            .field("api_version", &self.inner.api_version)
            .finish_non_exhaustive()
    }
}

/// `sobjects/{object}/{id}`, for the two objects leadlink works with. The id is checked to
/// be a record id, so nothing in it can reach beyond its path segment.
fn record_path(object: &str, id: &str) -> Result<String, CallFailure> {
    if !matches!(object, "Lead" | "Contact") {
        return Err(CallFailure::Refused {
            reason: format!("`{}` is not Lead or Contact", excerpt(object)),
        });
    }
    if !is_record_id(id) {
        return Err(CallFailure::Refused {
            reason: format!("`{}` is not a Salesforce record id", excerpt(id)),
        });
    }
    Ok(format!("sobjects/{object}/{id}"))
}

/// The status, `Retry-After` (seconds) and body; no answer at all is worth a retry.
async fn read_answer(
    what: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<Answer, CallFailure> {
    let unreachable =
        |e: reqwest::Error| CallFailure::from(e).context(&format!("{what} unreachable"));
    let response = sent.map_err(unreachable)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.map_err(unreachable)?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}
