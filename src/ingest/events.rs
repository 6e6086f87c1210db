//! `POST /webhooks/events`: vendor-neutral lead events signed with Standard Webhooks.

use super::{IngestError, IngestState};
use crate::job::LeadDetails;
use crate::lead::{self, LeadFields};
use crate::queue::Queue;
use crate::store::{IngestOutcome, NewJob, Store};
use crate::worker::publish_now;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub const SOURCE: &str = "events";
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
        let count = {
            let mut ignored = state.ignored.lock().expect("counter lock");
            let count = ignored.entry(envelope.kind.clone()).or_default();
            *count += 1;
            *count
        };
        tracing::info!(event_type = %envelope.kind, count, "event type ignored");
        return Ok((
            StatusCode::OK,
            axum::Json(json!({"ignored": envelope.kind})),
        )
            .into_response());
    }
    let event: LeadEvent = parse(envelope.data.to_string().as_bytes(), "data.")?;
    let new = new_job(&state, event, delivery_id)?;
    let outcome = state.store.ingest(&new, Utc::now()).await?;
    match outcome {
        IngestOutcome::Created {
            job_id,
            status,
            publish,
        } => {
            tracing::info!(%job_id, %status, "job accepted");
            if state.config.faults.exit_after_commit {
                tracing::warn!(%job_id, "fault injection: exiting between commit and publish");
                std::process::exit(3);
            }
            // The job is durable now; publishing must not hold up the answer (HubSpot gives
            // up after 5 s), and the relay covers a publish that fails.
            let (store, queue) = (state.store.clone(), state.queue.clone());
            tokio::spawn(async move { publish_now(&store, &queue, publish).await });
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"jobId": job_id}))).into_response())
        }
        IngestOutcome::Duplicate { job_id, status } => {
            tracing::info!(%job_id, %status, "duplicate event; existing job returned");
            Ok((
                StatusCode::OK,
                axum::Json(json!({"jobId": job_id, "duplicate": true, "status": status})),
            )
                .into_response())
        }
    }
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
    value.filter(|v| !v.trim().is_empty())
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
    let account_id = blank_to_none(event.account_id)
        .or_else(|| state.config.connectsafely.default_account_id.clone())
        .unwrap_or_default();
    let fields = LeadFields {
        first_name: event.first_name.clone(),
        last_name: event.last_name.clone(),
        company: event.company.clone(),
    };
    let profile = lead::resolve_profile(
        linkedin_url.as_deref(),
        profile_id.as_deref(),
        profile_urn.as_deref(),
    );
    let message = lead::build_message(
        event.message.as_deref(),
        state.template.as_ref(),
        &fields,
        state.config.message.overflow,
    );
    // A well-formed lead we cannot use is accepted and ends `invalid`, so the CRM hears why.
    let invalid_reason = match (&profile, &message) {
        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    // Keep both forms when both came: the slug is the identity, the URN is what is sent,
    // and either finds the lead's job later.
    let slug = profile_id
        .as_deref()
        .map(lead::ProfileRef::from_profile_id)
        .or_else(|| linkedin_url.as_deref().map(lead::ProfileRef::from_url))
        .and_then(Result::ok);
    let urn = match &profile {
        Ok(lead::ProfileRef::Urn(urn)) => Some(urn.clone()),
        _ => None,
    };
    let (profile_key, profile_id, profile_urn) = match (&profile, slug) {
        (Err(_), _) => (None, profile_id, profile_urn),
        (Ok(_), Some(slug)) => (
            Some(slug.canonical().to_string()),
            Some(slug.canonical().to_string()),
            urn,
        ),
        (Ok(_), None) => (urn.clone(), None, urn),
    };
    Ok(NewJob {
        source: SOURCE.into(),
        record_id: event.record_id,
        account_id,
        profile_key,
        profile_id,
        profile_urn,
        message: message.ok().flatten().map(|m| m.as_str().to_string()),
        lead: LeadDetails {
            linkedin_url,
            first_name: event.first_name,
            last_name: event.last_name,
            company: event.company,
        },
        invalid_reason,
        delivery_id: Some(delivery_id),
    })
}
