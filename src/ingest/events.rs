//! `POST /webhooks/events`: vendor-neutral lead events signed with Standard Webhooks.

use super::{IngestError, IngestState, LeadEvent};
use crate::job::Source;
use crate::queue::Queue;
use crate::store::Store;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub const QUALIFIED: &str = "lead.qualified";
pub const DISQUALIFIED: &str = "lead.disqualified";

/// `lead.disqualified`'s `data`: the record, and optionally which of its leads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Disqualification {
    record_id: String,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    linkedin_url: Option<String>,
    #[serde(default)]
    profile_id: Option<String>,
    #[serde(default)]
    profile_urn: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    data: serde_json::Value,
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
    if envelope.kind == DISQUALIFIED {
        let event: Disqualification = parse(envelope.data.to_string().as_bytes(), "data.")?;
        return disqualify(&state, event).await;
    }
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
    let new = super::lead_job(
        &state.config,
        state.template.as_ref(),
        Source::Events,
        None,
        event,
        Some(delivery_id),
    )
    .map_err(|e| IngestError::BadRequest {
        field: Some(format!("data.{}", e.field())),
        message: e.describe("data."),
    })?;
    super::job_answer(super::accept(&state, &new).await?)
}

/// The record's jobs that have sent nothing end `cancelled`; the answer lists them, and the
/// jobs whose invitation is out (withdrawing one is not implemented yet).
async fn disqualify<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    event: Disqualification,
) -> Result<Response, IngestError> {
    if event.record_id.trim().is_empty() {
        return Err(IngestError::BadRequest {
            field: Some("data.recordId".into()),
            message: "data.recordId must not be empty".into(),
        });
    }
    let named = [&event.linkedin_url, &event.profile_id, &event.profile_urn]
        .iter()
        .any(|v| crate::lead::non_blank(v.as_deref()).is_some());
    let profile = if named {
        let profile = crate::lead::resolve_profile(
            event.linkedin_url.as_deref(),
            event.profile_id.as_deref(),
            event.profile_urn.as_deref(),
        )
        .map_err(|e| IngestError::BadRequest {
            field: Some("data.linkedinUrl".into()),
            message: format!("the lead's profile: {e}"),
        })?;
        Some(profile.canonical().to_owned())
    } else {
        None
    };
    let off = crate::store::CallOff {
        source: Source::Events,
        record_id: event.record_id,
        account_id: event.account_id.filter(|a| !a.trim().is_empty()),
        profile,
        said_at: Utc::now(),
    };
    let called_off = super::call_off(state, &off).await?;
    Ok((
        StatusCode::OK,
        axum::Json(super::called_off_answer(&called_off)),
    )
        .into_response())
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
