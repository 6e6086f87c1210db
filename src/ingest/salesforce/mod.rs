//! Salesforce: Outbound Messages (SOAP, `POST /webhooks/salesforce?token=...`) and signed
//! JSON callouts from Flow or Apex (`POST /webhooks/salesforce/events`).

pub mod callout;
pub mod config;
pub mod outbound;

use super::{CrmRecord, IngestError, IngestState};
use crate::crm::enrich::{salesforce_lead, url_field};
use crate::job::Source;
use crate::queue::Queue;
use crate::signature::{constant_time_eq, hmac_callout, standard_webhooks};
use crate::store::{CallOff, Store};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use config::SalesforceSourceConfig;
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn source<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
) -> Result<&SalesforceSourceConfig, IngestError> {
    state.config.sources.salesforce.as_ref().ok_or_else(|| {
        IngestError::NotFound(
            "the Salesforce source is not configured ([sources.salesforce])".into(),
        )
    })
}

fn soap(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The `token` query parameter, compared in constant time. Its value never reaches a log:
/// request spans carry the path only.
fn token_matches(config: &SalesforceSourceConfig, query: Option<&str>) -> bool {
    let presented = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    match (presented, &config.token) {
        (Some(presented), Some(token)) => {
            constant_time_eq(presented.as_bytes(), token.expose().as_bytes())
        }
        _ => false,
    }
}

/// Outbound Messages: Acked once every notification in the message is committed (or
/// filtered out); anything else makes Salesforce deliver the whole message again.
pub async fn receive_outbound<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, IngestError> {
    let config = source(&state)?;
    if !token_matches(config, query.as_deref()) {
        return Err(IngestError::Unauthorized(
            "missing or wrong token in the Outbound Message URL".into(),
        ));
    }
    let message = match outbound::parse(&body) {
        Ok(message) => message,
        // SOAP 1.1 reports a fault with HTTP 500.
        Err(e) => {
            tracing::warn!(error = %e, "malformed Outbound Message refused");
            return Ok(soap(
                StatusCode::INTERNAL_SERVER_ERROR,
                outbound::fault(&e.to_string()),
            ));
        }
    };
    // Trimmed as the config check trims it, or a pasted space would refuse every message.
    let configured = config.organization_id.as_deref().unwrap_or_default().trim();
    if !outbound::same_org(configured, &message.organization_id) {
        return Err(IngestError::Forbidden(format!(
            "Outbound Message from another organization ({})",
            message.organization_id
        )));
    }
    let url_field = url_field(&state.config.crm, Source::Salesforce);
    let mut news = Vec::with_capacity(message.notifications.len());
    let mut called_off = Vec::new();
    for notification in message.notifications {
        if config
            .withdraw
            .as_ref()
            .is_some_and(|rule| rule.matches(&notification.fields))
        {
            called_off.push(notification.record_id);
            continue;
        }
        if let Some(rule) = &config.qualify
            && !rule.matches(&notification.fields)
        {
            if !notification.fields.contains_key(&rule.field) {
                tracing::warn!(field = %rule.field, "the Outbound Message does not carry the qualify field; add it to the message's fields, or every notification is dropped");
            }
            super::count_ignored(&state, Source::Salesforce, "salesforce.not_qualified");
            tracing::info!(record = %notification.record_id, field = %rule.field, "notification does not qualify; acknowledged");
            continue;
        }
        let priority = config.priority_field.as_deref().map(str::trim);
        let lead = salesforce_lead(&notification.fields, &url_field, priority);
        let record = CrmRecord {
            source: Source::Salesforce,
            record_id: notification.record_id,
            object: notification.object.as_str(),
            delivery_id: Some(notification.id),
        };
        news.push(super::crm_job(&state, record, Some(lead)));
    }
    // One transaction for the message: the Ack covers every notification in it.
    super::accept_many(&state, &news).await?;
    for record_id in called_off {
        let off = CallOff::record(Source::Salesforce, record_id, Utc::now());
        super::call_off(&state, &off).await?;
    }
    Ok(soap(StatusCode::OK, outbound::ACK.to_string()))
}

/// Flow and Apex callouts, signed with Standard Webhooks or a plain HMAC.
pub async fn receive_callout<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let config = source(&state)?;
    let signed = verify_callout(config, &headers, &body)?;
    let callout = callout::parse(&body).map_err(|e| IngestError::BadRequest {
        field: None,
        message: e.to_string(),
    })?;
    let delivery_id = match signed {
        Signed::StandardWebhooks(id) => id,
        // A plain HMAC carries no delivery id: a resend of one signed request repeats its
        // timestamp and body, while two callouts signed in the same second differ in body.
        Signed::Hmac(timestamp) => {
            let digest = Sha256::digest(&body);
            let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("{}/{timestamp}/{short}", callout.record_id)
        }
    };
    let url_field = url_field(&state.config.crm, Source::Salesforce);
    let mut fields = callout.fields;
    if let Some(url) = callout.linkedin_url {
        fields.insert(url_field.clone(), url);
    }
    let priority = config.priority_field.as_deref().map(str::trim);
    if config
        .withdraw
        .as_ref()
        .is_some_and(|rule| rule.matches(&fields))
    {
        let off = CallOff::record(Source::Salesforce, callout.record_id, Utc::now());
        let called_off = super::call_off(&state, &off).await?;
        return Ok((
            StatusCode::OK,
            axum::Json(super::called_off_answer(&called_off)),
        )
            .into_response());
    }
    let lead = salesforce_lead(&fields, &url_field, priority);
    let record = CrmRecord {
        source: Source::Salesforce,
        record_id: callout.record_id,
        object: callout.object.as_str(),
        delivery_id: Some(delivery_id),
    };
    super::job_answer(super::accept(&state, &super::crm_job(&state, record, Some(lead))).await?)
}

enum Signed {
    StandardWebhooks(String),
    Hmac(i64),
}

/// Standard Webhooks when the request carries its headers and secrets are configured,
/// else the plain HMAC scheme.
fn verify_callout(
    config: &SalesforceSourceConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Signed, IngestError> {
    let rejected = |e: crate::signature::SignatureError| {
        IngestError::Unauthorized(format!("signature rejected: {e}"))
    };
    let secrets = &config.callout.standard_webhooks_secrets;
    if !secrets.is_empty() && headers.contains_key("webhook-signature") {
        let verifier = standard_webhooks::Verifier::new(
            &secrets.iter().map(|s| s.expose()).collect::<Vec<_>>(),
        )
        .map_err(rejected)?;
        return verifier
            .verify(headers, body, Utc::now())
            .map(Signed::StandardWebhooks)
            .map_err(rejected);
    }
    match &config.callout.hmac {
        Some(hmac) => hmac_callout::Verifier::new(hmac)
            .and_then(|v| v.verify(headers, body, Utc::now()))
            .map(Signed::Hmac)
            .map_err(rejected),
        None if secrets.is_empty() => Err(IngestError::NotFound(
            "no callout signing is configured ([sources.salesforce.callout])".into(),
        )),
        None => Err(IngestError::Unauthorized(
            "signature rejected: no webhook-signature header".into(),
        )),
    }
}
