//! The HTTP side: signed webhooks in, health checks, and the admin API.

mod admin;
pub mod config;
mod events;
mod health;
pub mod hubspot;
mod publish_gate;
pub mod salesforce;

use crate::account::AccountId;
use crate::crm::enrich::{CrmLead, route_account};
use crate::job::{LeadDetails, Source};
use crate::lead::{LeadFields, LeadInput, MessageTemplate, Resolution, non_blank, resolve_lead};
use crate::outbox::publish_now;
use crate::queue::Queue;
use crate::signature::standard_webhooks::Verifier;
use crate::store::{IngestOutcome, NewJob, Store, StoreError};
use crate::telemetry::metrics::{self, WebhookResult};
use crate::telemetry::outgoing;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
pub use config::IngestConfig;
pub use publish_gate::PublishGate;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// Every way a request can fail, mapped once to an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    /// The job could not be made durable: the sender must retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for IngestError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => IngestError::NotFound(format!("{what} not found")),
            StoreError::Conflict(why) => IngestError::Conflict(why),
            other => {
                tracing::error!(error = %other, "database unavailable");
                IngestError::Unavailable("the job store is unavailable; retry later".into())
            }
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            IngestError::NotFound(_) => StatusCode::NOT_FOUND,
            IngestError::Conflict(_) => StatusCode::CONFLICT,
            IngestError::Forbidden(_) => StatusCode::FORBIDDEN,
            IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = match &self {
            IngestError::BadRequest {
                field: Some(field),
                message,
            } => {
                json!({"error": message, "field": field})
            }
            other => json!({"error": other.to_string()}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("30"));
        }
        response
    }
}

pub struct IngestState<Q: Queue, S: Store> {
    pub config: IngestConfig,
    pub store: S,
    pub queue: Q,
    pub events_verifier: Option<Verifier>,
    pub template: Option<MessageTemplate>,
    /// Events of other types that were acknowledged and dropped, by type.
    pub ignored: Mutex<BTreeMap<String, u64>>,
    /// The publishes started right after commits.
    pub publishes: PublishGate,
}

/// Commits a job (or finds the one this delivery or lead already has) and publishes it
/// without holding up the answer.
pub(crate) async fn accept<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    new: &NewJob,
) -> Result<IngestOutcome, IngestError> {
    let mut outcomes = accept_many(state, std::slice::from_ref(new)).await?;
    let outcome = outcomes
        .pop()
        .ok_or_else(|| IngestError::Unavailable("no outcome for the job".into()))?;
    // The request's span names its one job, so its trace can be found by job id.
    let (IngestOutcome::Created { job_id, .. } | IngestOutcome::Duplicate { job_id, .. }) =
        &outcome;
    tracing::Span::current().record("job_id", tracing::field::display(job_id));
    Ok(outcome)
}

/// The same for a batch, committed in one transaction (a CRM's batch of up to 100 events is
/// answered within its timeout that way), outcomes in the given order.
pub(crate) async fn accept_many<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    news: &[NewJob],
) -> Result<Vec<IngestOutcome>, IngestError> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = state.store.ingest_batch(news, Utc::now()).await?;
    let mut publish = Vec::new();
    for (new, outcome) in news.iter().zip(&outcomes) {
        match outcome {
            IngestOutcome::Created {
                job_id,
                status,
                publish: messages,
            } => {
                tracing::info!(%job_id, %status, source = %new.source, record = %new.record_id, "job accepted");
                metrics::webhook(new.source, WebhookResult::Accepted);
                publish.extend(messages.iter().cloned());
            }
            IngestOutcome::Duplicate {
                job_id,
                status,
                publish: messages,
            } => {
                tracing::info!(%job_id, %status, record = %new.record_id, "duplicate event; existing job returned");
                metrics::webhook(new.source, WebhookResult::Duplicate);
                publish.extend(messages.iter().cloned());
            }
        }
    }
    if !publish.is_empty() {
        if state.config.faults.exit_after_commit {
            tracing::warn!("fault injection: exiting between commit and publish");
            std::process::exit(3);
        }
        // The jobs are durable now; publishing must not hold up the answer (HubSpot gives
        // up after 5 s), and the relay covers a publish that fails or finds no room.
        let (store, queue) = (state.store.clone(), state.queue.clone());
        let exit_after_publish = state.config.faults.exit_after_publish;
        if !state.publishes.spawn(async move {
            publish_now(&store, &queue, publish).await;
            if exit_after_publish {
                tracing::warn!("fault injection: exiting after the publish");
                std::process::exit(3);
            }
        }) {
            tracing::debug!("publishes after commit at their limit; left to the relay");
        }
    }
    Ok(outcomes)
}

/// Where a CRM event's job sends from and whom it is about, before its lead is known.
pub(crate) struct CrmRecord {
    pub source: Source,
    pub record_id: String,
    pub object: &'static str,
    pub delivery_id: Option<String>,
}

/// A job for a CRM record. With the LinkedIn URL in the event the lead is resolved now;
/// without it the connect stage reads the record first (`enrich`).
pub(crate) fn crm_job<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    record: CrmRecord,
    lead: Option<CrmLead>,
) -> NewJob {
    let lead = lead.unwrap_or_default();
    let account_id = route_account(
        &state.config.crm,
        record.source,
        lead.owner_id.as_deref(),
        state.config.fallback_account(record.source).as_deref(),
    );
    let resolution = if lead.linkedin_url.is_none() {
        Resolution::ReadFromCrm
    } else {
        lead.resolve(state.template.as_ref(), state.config.message.overflow)
    };
    NewJob {
        source: record.source,
        record_id: record.record_id,
        record_object: Some(record.object.into()),
        account_id,
        resolution,
        lead: LeadDetails {
            linkedin_url: lead.linkedin_url,
            first_name: lead.first_name,
            last_name: lead.last_name,
            company: lead.company,
        },
        delivery_id: record.delivery_id,
        one_open_job_per_record: true,
        writeback_targets: crate::crm::targets_for(
            &state.config.crm,
            &state.config.writeback,
            record.source,
        ),
        priority: lead.priority,
    }
}

/// A lead as a source names it in full: the events source's `data`, an import's row.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeadEvent {
    pub record_id: String,
    #[serde(default)]
    pub linkedin_url: Option<String>,
    #[serde(default)]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub profile_urn: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// Higher goes first among the account's waiting jobs; beyond ±1000 counts as ±1000.
    #[serde(default)]
    pub priority: Option<i64>,
}

/// The missing field that keeps a [`LeadEvent`] from becoming a job (the caller adds its
/// path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LeadEventError {
    #[error("{}", self.describe(""))]
    RecordId,
    #[error("{}", self.describe(""))]
    Profile,
    #[error("{}", self.describe(""))]
    Account,
}

impl LeadEventError {
    /// The message with every field named under `prefix` (`data.` for an event).
    pub fn describe(&self, prefix: &str) -> String {
        match self {
            LeadEventError::RecordId => format!("{prefix}recordId must not be empty"),
            LeadEventError::Profile => format!(
                "one of {prefix}linkedinUrl, {prefix}profileId or {prefix}profileUrn is required"
            ),
            LeadEventError::Account => format!(
                "{prefix}accountId is required: connectsafely.default_account_id is not set"
            ),
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            LeadEventError::RecordId => "recordId",
            LeadEventError::Profile => "linkedinUrl",
            LeadEventError::Account => "accountId",
        }
    }
}

/// The job for a lead named in full, from `source` (a CRM record of `record_object`, or an
/// event of the events source): the profile resolved now, the account the lead's or the
/// source's fallback.
pub(crate) fn lead_job(
    config: &IngestConfig,
    template: Option<&MessageTemplate>,
    source: Source,
    record_object: Option<&'static str>,
    event: LeadEvent,
    delivery_id: Option<String>,
) -> Result<NewJob, LeadEventError> {
    let present = |value: Option<String>| value.filter(|v| non_blank(Some(v)).is_some());
    if event.record_id.trim().is_empty() {
        return Err(LeadEventError::RecordId);
    }
    let linkedin_url = present(event.linkedin_url);
    let profile_id = present(event.profile_id);
    let profile_urn = present(event.profile_urn);
    if linkedin_url.is_none() && profile_id.is_none() && profile_urn.is_none() {
        return Err(LeadEventError::Profile);
    }
    // Without an account every account call would go to `/account//...`: refuse the lead
    // rather than guess which of the key's accounts was meant.
    let account_id = present(event.account_id)
        .or_else(|| config.fallback_account(source))
        .ok_or(LeadEventError::Account)?;
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
    let resolution = resolve_lead(&input, template, config.message.overflow);
    Ok(NewJob {
        source,
        record_id: event.record_id,
        record_object: record_object.map(str::to_owned),
        account_id: AccountId::new(account_id),
        resolution,
        lead: LeadDetails {
            linkedin_url,
            first_name: event.first_name,
            last_name: event.last_name,
            company: event.company,
        },
        delivery_id,
        // A CRM record has one open job; the events source's ids are the sender's own.
        one_open_job_per_record: source != Source::Events,
        writeback_targets: crate::crm::targets_for(&config.crm, &config.writeback, source),
        priority: event.priority.map(crate::job::clamp_priority),
    })
}

/// Calls a record's lead off and publishes what that changed; a job a worker holds right
/// now makes the caller try again.
pub(crate) async fn call_off<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    off: &crate::store::CallOff,
) -> Result<crate::store::CalledOff, IngestError> {
    let (called_off, publish) =
        state
            .store
            .call_off(off, Utc::now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(why) => IngestError::Unavailable(why),
                other => other.into(),
            })?;
    tracing::info!(source = %off.source, record = %off.record_id, cancelled = called_off.cancelled.len(),
        invitation_out = called_off.invitation_out.len(), "lead called off");
    publish_now(&state.store, &state.queue, publish).await;
    Ok(called_off)
}

/// What calling a lead off did, as the sources answer it.
pub(crate) fn called_off_answer(called_off: &crate::store::CalledOff) -> serde_json::Value {
    json!({
        "cancelled": called_off.cancelled,
        "invitationOut": called_off.invitation_out,
        "keptForOtherRecords": called_off.kept_for_other_records,
        "note": if called_off.invitation_out.is_empty() {
            serde_json::Value::Null
        } else {
            json!("withdrawing an invitation already sent is not implemented yet; those jobs are unchanged")
        },
    })
}

/// The answer for one event: 202 with the new job, or 200 with the job it already has.
pub(crate) fn job_answer(outcome: IngestOutcome) -> Result<Response, IngestError> {
    Ok(match outcome {
        IngestOutcome::Created { job_id, .. } => {
            (StatusCode::ACCEPTED, axum::Json(json!({"jobId": job_id}))).into_response()
        }
        IngestOutcome::Duplicate { job_id, status, .. } => (
            StatusCode::OK,
            axum::Json(json!({"jobId": job_id, "duplicate": true, "status": status})),
        )
            .into_response(),
    })
}

/// Counts an acknowledged event that leadlink does not act on.
pub(crate) fn count_ignored<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    source: Source,
    kind: &str,
) -> u64 {
    metrics::webhook(source, WebhookResult::Ignored);
    let mut ignored = state.ignored.lock().expect("counter lock");
    let count = ignored.entry(kind.to_string()).or_default();
    *count += 1;
    *count
}

fn size_limit(size: bytesize::ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}

pub fn router<Q: Queue, S: Store>(state: Arc<IngestState<Q, S>>) -> Router {
    let body_limit = size_limit(state.config.server.body_limit);
    let counted = |source| middleware::from_fn_with_state(source, count_refusal);
    Router::new()
        .route(
            "/webhooks/events",
            post(events::receive::<Q, S>).layer(counted(Source::Events)),
        )
        .route(
            "/webhooks/hubspot",
            post(hubspot::receive_batch::<Q, S>).layer(counted(Source::HubSpot)),
        )
        .route(
            "/webhooks/hubspot/workflow",
            post(hubspot::receive_workflow::<Q, S>).layer(counted(Source::HubSpot)),
        )
        .route(
            "/webhooks/salesforce",
            post(salesforce::receive_outbound::<Q, S>).layer(counted(Source::Salesforce)),
        )
        .route(
            "/webhooks/salesforce/events",
            post(salesforce::receive_callout::<Q, S>).layer(counted(Source::Salesforce)),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::ingest_ready::<Q, S>))
        .route("/health", get(health::health::<Q, S>))
        .route("/admin/jobs", get(admin::list_jobs::<Q, S>))
        .route("/admin/jobs/{id}", get(admin::show_job::<Q, S>))
        .route("/admin/accounts", get(admin::accounts::<Q, S>))
        .route("/admin/stats", get(admin::stats::<Q, S>))
        .route("/admin/import", post(admin::import::<Q, S>))
        .merge(crate::status::router(crate::status::StatusState {
            admin_token: state.config.server.admin_token.clone(),
            accounts: state.config.accounts.clone(),
            store: state.store.clone(),
            queue: state.queue.clone(),
        }))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// What a worker serves when `worker.health_listen` is set.
pub fn health_router<Q: Queue, S: Store>(state: Arc<IngestState<Q, S>>) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::worker_ready::<Q, S>))
        .route("/health", get(health::health::<Q, S>))
        .with_state(state)
}

/// Counts a webhook request refused as a whole; the events of an answered one are counted
/// where they are judged (`accept_many`, `count_ignored`).
async fn count_refusal(State(source): State<Source>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(result) = WebhookResult::of_refusal(response.status().as_u16()) {
        metrics::webhook(source, result);
    }
    response
}

/// One span per request; the path only, since query strings may carry tokens. A caller's
/// `traceparent` makes it part of the caller's trace.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %uuid::Uuid::new_v4(),
        job_id = tracing::field::Empty,
    );
    outgoing::adopt_parent(&span, request.headers());
    async move {
        let response = next.run(request).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}
