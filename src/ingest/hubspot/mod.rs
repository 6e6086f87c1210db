//! `POST /webhooks/hubspot` (app-subscription batches) and `POST /webhooks/hubspot/workflow`
//! (workflow "Send a webhook" actions), both signed with the app's client secret.

pub mod config;
pub mod payload;

use super::{CrmRecord, IngestError, IngestState};
use crate::crm::enrich::{hubspot_lead, url_field};
use crate::job::Source;
use crate::queue::Queue;
use crate::signature::hubspot as signature;
use crate::store::{IngestOutcome, Store};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use config::HubSpotSourceConfig;
use payload::Judged;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The CRM object HubSpot jobs are about.
const CONTACT: &str = "contact";

fn source<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
) -> Result<&HubSpotSourceConfig, IngestError> {
    state.config.sources.hubspot.as_ref().ok_or_else(|| {
        IngestError::NotFound("the HubSpot source is not configured ([sources.hubspot])".into())
    })
}

/// The source's configuration, once HubSpot's signature over the URL HubSpot called (the
/// public one, not ours) is checked.
fn verified_source<'a, Q: Queue, S: Store>(
    state: &'a IngestState<Q, S>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'a HubSpotSourceConfig, IngestError> {
    let config = source(state)?;
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let (Some(signed_uri), Some(secret)) = (
        config.signed_uri(path_and_query),
        config.client_secret.as_ref(),
    ) else {
        return Err(IngestError::NotFound(
            "sources.hubspot needs public_url and client_secret".into(),
        ));
    };
    signature::verify(
        &Method::POST,
        &signed_uri,
        body,
        headers,
        secret,
        Utc::now(),
    )
    .map(|_| config)
    .map_err(|e| IngestError::Unauthorized(format!("signature rejected: {e}")))
}

impl From<payload::PayloadError> for IngestError {
    fn from(error: payload::PayloadError) -> Self {
        IngestError::BadRequest {
            field: None,
            message: error.to_string(),
        }
    }
}

/// App subscriptions: each event is judged on its own (a bad one is skipped, not fatal) and
/// the batch is answered 200 once every qualified event is committed.
pub async fn receive_batch<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let config = verified_source(&state, &uri, &headers, &body)?;
    let judged = payload::parse_batch(&body)?;
    let triggers = config.triggers();
    let priority_property = config.priority_property.as_deref().map(str::trim);
    let withdraw_triggers = config.withdraw_triggers();
    // Per contact, when (occurredAt, then place in the batch) it was last qualified and last
    // called off: of the two, only the later counts.
    let mut qualified_at: HashMap<String, (DateTime<Utc>, usize)> = HashMap::new();
    let mut called_off_at: HashMap<String, (DateTime<Utc>, usize)> = HashMap::new();
    let (mut ignored, mut malformed) = (0, 0);
    let mut news = Vec::new();
    let mut priority_changes = Vec::new();
    let received_at = Utc::now();
    for (place, item) in judged.into_iter().enumerate() {
        let event = match item {
            Judged::Event(event) => event,
            Judged::Malformed { index, reason } => {
                tracing::warn!(index, reason, "malformed HubSpot event skipped");
                super::count_ignored(&state, Source::HubSpot, "hubspot.malformed");
                malformed += 1;
                continue;
            }
        };
        let priority =
            priority_property.and_then(|property| payload::priority_change(&event, property));
        if let Some(priority) = priority {
            let said_at = event.occurred_at.unwrap_or(received_at);
            priority_changes.push((event.object_id.clone(), priority, said_at));
        }
        let when = (event.occurred_at.unwrap_or(received_at), place);
        if payload::qualifies(&event, &withdraw_triggers).is_some() {
            let latest = called_off_at.entry(event.object_id.clone()).or_insert(when);
            *latest = (*latest).max(when);
            continue;
        }
        let Some(qualification) = payload::qualifies(&event, &triggers) else {
            if priority.is_some() {
                continue;
            }
            super::count_ignored(
                &state,
                Source::HubSpot,
                &format!("hubspot.{}", event.subscription_type),
            );
            ignored += 1;
            continue;
        };
        tracing::debug!(contact = %event.object_id, %qualification, "HubSpot contact qualified");
        let latest = qualified_at.entry(event.object_id.clone()).or_insert(when);
        *latest = (*latest).max(when);
        let record = CrmRecord {
            source: Source::HubSpot,
            record_id: event.object_id.clone(),
            object: CONTACT,
            delivery_id: Some(event.idempotency_key()),
        };
        news.push(super::crm_job(&state, record, None));
    }
    // A contact called off after it qualified in this batch gets no job; one qualified after
    // it was called off keeps its new job.
    news.retain(|new| {
        called_off_at
            .get(&new.record_id)
            .is_none_or(|off| qualified_at.get(&new.record_id).is_some_and(|q| q > off))
    });
    called_off_at.retain(|contact, off| qualified_at.get(contact).is_none_or(|q| q < off));
    // One transaction for the batch: HubSpot sends up to 100 events and gives up after 5 s.
    // A second event for a contact finds the job the first one made in it. A failure answers
    // the whole batch with an error; HubSpot retries it, and none of its jobs was committed
    // (priority changes and call-offs, below, are each done once whatever the retries).
    let outcomes = super::accept_many(&state, &news).await?;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, IngestOutcome::Created { .. }))
        .count();
    let duplicates = outcomes.len() - accepted;
    // After the batch's jobs, so a contact created and scored in one batch keeps its score.
    // Setting a priority twice changes nothing, so HubSpot's retry of a failed batch is safe.
    let mut priority_updates = 0;
    for (contact, priority, said_at) in priority_changes {
        let updated = state
            .store
            .set_record_priority(Source::HubSpot, &contact, priority, said_at, Utc::now())
            .await?;
        match updated {
            Some((job_id, publish)) => {
                tracing::info!(%job_id, %contact, priority, "the contact's priority changed");
                priority_updates += 1;
                crate::outbox::publish_now(&state.store, &state.queue, publish).await;
            }
            None => {
                super::count_ignored(&state, Source::HubSpot, "hubspot.priority_without_job");
                ignored += 1;
            }
        }
    }
    // Cancelling is done once: a retried batch finds the job cancelled already.
    let mut cancelled = 0;
    for (contact, (said_at, _)) in called_off_at {
        let off = crate::store::CallOff::record(Source::HubSpot, contact, said_at);
        cancelled += super::call_off(&state, &off).await?.cancelled.len();
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "accepted": accepted, "duplicates": duplicates, "ignored": ignored,
            "malformed": malformed, "priorityUpdates": priority_updates, "cancelled": cancelled,
        })),
    )
        .into_response())
}

/// Workflow actions: the payload carries the contact's properties, so the job needs no read
/// from HubSpot when the LinkedIn URL is among them.
pub async fn receive_workflow<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let config = verified_source(&state, &uri, &headers, &body)?;
    let record = payload::parse_workflow(&body)?;
    let lead = hubspot_lead(
        &record.fields,
        &url_field(&state.config.crm, Source::HubSpot),
        config.priority_property.as_deref().map(str::trim),
    );
    let record = CrmRecord {
        source: Source::HubSpot,
        record_id: record.contact_id,
        object: CONTACT,
        // Workflow requests carry no delivery id: the open job per contact is the guard.
        delivery_id: None,
    };
    super::job_answer(super::accept(&state, &super::crm_job(&state, record, Some(lead))).await?)
}
