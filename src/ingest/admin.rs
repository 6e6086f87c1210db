//! The admin API: job look-ups and account state, behind `server.admin_token`.

use super::{IngestError, IngestState};
use crate::import::{self, Crm, ImportError, Options};
use crate::job::Status;
use crate::queue::Queue;
use crate::signature;
use crate::store::{JobFilter, Overview, Store};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

fn authorize<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    headers: &HeaderMap,
) -> Result<(), IngestError> {
    let Some(expected) = &state.config.server.admin_token else {
        return Err(IngestError::Forbidden(
            "the admin API is disabled: set server.admin_token".into(),
        ));
    };
    if signature::bearer_matches(headers, expected.expose()) {
        Ok(())
    } else {
        Err(IngestError::Unauthorized(
            "a valid admin bearer token is required".into(),
        ))
    }
}

pub async fn show_job<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, IngestError> {
    authorize(&state, &headers)?;
    let id = Uuid::parse_str(&id).map_err(|_| IngestError::BadRequest {
        field: Some("id".into()),
        message: format!("not a job id: {id}"),
    })?;
    let job = state
        .store
        .job(id)
        .await?
        .ok_or_else(|| IngestError::NotFound(format!("job {id} not found")))?;
    Ok(Json(json!(job)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    record: Option<String>,
    status: Option<String>,
    account: Option<String>,
    limit: Option<i64>,
}

pub async fn list_jobs<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, IngestError> {
    authorize(&state, &headers)?;
    let status = match &query.status {
        None => None,
        Some(text) => Some(Status::parse(text).ok_or_else(|| IngestError::BadRequest {
            field: Some("status".into()),
            message: format!("unknown status {text}"),
        })?),
    };
    let jobs = state
        .store
        .jobs(&JobFilter {
            record_id: query.record,
            status,
            account_id: query.account,
            limit: query.limit.unwrap_or(100).clamp(1, 1000),
        })
        .await?;
    Ok(Json(json!({"jobs": jobs})))
}

pub async fn accounts<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, IngestError> {
    authorize(&state, &headers)?;
    let overview = Overview::read(&state.store, &state.config.accounts, chrono::Utc::now()).await?;
    Ok(Json(json!({
        "accounts": overview.accounts,
        "apiKey": super::health::api_key_state(overview.key_pause.as_ref()),
        "pausedCrms": overview.crm_pauses,
    })))
}

pub async fn stats<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, IngestError> {
    authorize(&state, &headers)?;
    let ignored = state.ignored.lock().expect("counter lock").clone();
    let crms = state.store.crm_pauses().await?;
    let publishes = json!({"inFlight": state.publishes.in_flight(),
                           "leftToRelay": state.publishes.left_to_relay()});
    Ok(Json(
        json!({"ignoredEvents": ignored, "pausedCrms": crms, "publishes": publishes}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportQuery {
    #[serde(default)]
    crm: Crm,
    account: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    skip_invalid: bool,
}

/// `leadlink import` over HTTP: the CSV is the body, the answer the same summary (422 with
/// the bad rows when they stopped the import).
pub async fn import<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
    headers: HeaderMap,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Response, IngestError> {
    // The token first: nobody may make the server buffer a 64 MiB body unauthenticated.
    authorize(&state, &headers)?;
    let limit = super::size_limit(state.config.server.import_body_limit);
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        IngestError::TooLarge(format!(
            "the CSV is larger than server.import_body_limit ({}), or its upload was cut off",
            state.config.server.import_body_limit
        ))
    })?;
    let options = Options {
        crm: query.crm,
        account: query.account,
        dry_run: query.dry_run,
        skip_invalid: query.skip_invalid,
    };
    match import::import(&state, &body, &options, &(), chrono::Utc::now()).await {
        Ok(summary) => Ok((StatusCode::OK, Json(json!(summary))).into_response()),
        Err(ImportError::Rejected(summary)) => {
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!(summary))).into_response())
        }
        Err(ImportError::Header(message)) => Err(IngestError::BadRequest {
            field: None,
            message: format!("the header line cannot be used: {message}"),
        }),
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}
