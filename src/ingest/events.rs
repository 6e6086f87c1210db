//! `POST /webhooks/events`: vendor-neutral lead events signed with Standard Webhooks.

use super::{IngestError, IngestState};
use crate::account::AccountId;
use crate::job::{LeadDetails, Source};
use crate::lead::{self, LeadFields, LeadInput};
use crate::queue::Queue;
use crate::store::{NewJob, Store};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub const QUALIFIED: &str = "lead.qualified";

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeadEvent {
    record_id: String,
    #[serde(default)]
    linkedin_url: Option<String>,
    #[serde(default)]
    profile_id: Option<String>,
    #[serde(default)]
    profile_urn: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

pub async fn receive<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let verifier = state.events_verifier.as_ref().ok_or_else(|| {
        IngestError::NotFound("the events source is not configured ([sources.events])".into())
    })?;
    let delivery_id = verifier
        .verify(&headers, &body, Utc::now())
        .map_err(|e| IngestError::Unauthorized(format!("signature rejected: {e}")))?;
    let envelope: Envelope = parse(&body, "")?;
    if envelope.kind != QUALIFIED {
        let count = super::count_ignored(&state, Source::Events, &envelope.kind);
        tracing::info!(event_type = %envelope.kind, count, "event type ignored");
        return Ok((
            StatusCode::OK,
            axum::Json(json!({"ignored": envelope.kind})),
        )
            .into_response());
    }
    let event: LeadEvent = parse(envelope.data.to_string().as_bytes(), "data.")?;
    let new = new_job(&state, event, delivery_id)?;
    super::job_answer(super::accept(&state, &new).await?)
}

/// Deserialises with the failing field's path in the error.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], prefix: &str) -> Result<T, IngestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde reports a missing field at its parent's path, naming it only in the text.
        let text = inner.to_string();
        let missing = text
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => Some(format!("{prefix}{name}")),
            (".", None) => None,
            (path, Some(name)) => Some(format!("{prefix}{path}.{name}")),
            (path, None) => Some(format!("{prefix}{path}")),
        };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("body is not valid JSON: {inner}")
        } else {
            match &field {
                Some(field) => format!("{field}: {text}"),
                None => format!("{prefix}{text}"),
            }
        };
        IngestError::BadRequest { field, message }
    })
}

fn blank_to_none(value: Option<String>) -> Option<String> {
    value.filter(|v| lead::non_blank(Some(v)).is_some())
}

fn new_job<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    event: LeadEvent,
    delivery_id: String,
) -> Result<NewJob, IngestError> {
    if event.record_id.trim().is_empty() {
        return Err(IngestError::BadRequest {
            field: Some("data.recordId".into()),
            message: "data.recordId must not be empty".into(),
        });
    }
    let linkedin_url = blank_to_none(event.linkedin_url);
    let profile_id = blank_to_none(event.profile_id);
    let profile_urn = blank_to_none(event.profile_urn);
    if linkedin_url.is_none() && profile_id.is_none() && profile_urn.is_none() {
        return Err(IngestError::BadRequest {
            field: Some("data.linkedinUrl".into()),
            message: "one of data.linkedinUrl, data.profileId or data.profileUrn is required"
                .into(),
        });
    }
    // Without an account every account call would go to `/account//...`: refuse the event
    // rather than guess which of the key's accounts was meant.
    let account_id = blank_to_none(event.account_id)
        .or_else(|| state.config.connectsafely.default_account_id.clone())
        .ok_or_else(|| IngestError::BadRequest {
            field: Some("data.accountId".into()),
            message: "data.accountId is required: connectsafely.default_account_id is not set"
                .into(),
        })?;
    let fields = LeadFields {
        first_name: event.first_name.clone(),
        last_name: event.last_name.clone(),
        company: event.company.clone(),
    };
    let input = LeadInput {
        linkedin_url: linkedin_url.as_deref(),
        profile_id: profile_id.as_deref(),
        profile_urn: profile_urn.as_deref(),
        message: event.message.as_deref(),
        fields: &fields,
    };
    let resolution = lead::resolve_lead(
        &input,
        state.template.as_ref(),
        state.config.message.overflow,
    );
    Ok(NewJob {
        source: Source::Events,
        record_id: event.record_id,
        record_object: None,
        account_id: AccountId::new(account_id),
        resolution,
        lead: LeadDetails {
            linkedin_url,
            first_name: event.first_name,
            last_name: event.last_name,
            company: event.company,
        },
        delivery_id: Some(delivery_id),
        one_open_job_per_record: false,
        writeback_targets: crate::crm::targets_for(
            &state.config.crm,
            &state.config.writeback,
            Source::Events,
        ),
    })
}
