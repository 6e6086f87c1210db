//! The HTTP side: signed webhooks in, health checks, and the admin API.

mod admin;
mod events;

use crate::config::Config;
use crate::lead::MessageTemplate;
use crate::queue::Queue;
use crate::signature::standard_webhooks::Verifier;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    pub config: Arc<Config>,
    pub store: S,
    pub queue: Q,
    pub events_verifier: Option<Verifier>,
    pub template: Option<MessageTemplate>,
    /// Events of other types that were acknowledged and dropped, by type.
    pub ignored: Mutex<BTreeMap<String, u64>>,
}

pub fn router<Q: Queue, S: Store>(state: Arc<IngestState<Q, S>>) -> Router {
    let body_limit = usize::try_from(state.config.server.body_limit.as_u64()).unwrap_or(usize::MAX);
    Router::new()
        .route("/webhooks/events", post(events::receive::<Q, S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<Q, S>))
        .route("/admin/jobs", get(admin::list_jobs::<Q, S>))
        .route("/admin/jobs/{id}", get(admin::show_job::<Q, S>))
        .route("/admin/accounts", get(admin::accounts::<Q, S>))
        .route("/admin/stats", get(admin::stats::<Q, S>))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// What a worker serves when `worker.health_listen` is set.
pub fn health_router<Q: Queue, S: Store>(state: Arc<IngestState<Q, S>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<Q, S>))
        .with_state(state)
}

/// One span per request; the path only, since query strings may carry tokens.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %uuid::Uuid::new_v4(),
    );
    async move {
        let response = next.run(request).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "alive"}))
}

async fn readyz<Q: Queue, S: Store>(State(state): State<Arc<IngestState<Q, S>>>) -> Response {
    let (database, broker) = tokio::join!(state.store.ping(), state.queue.ping());
    let describe = |ok: bool, error: Option<String>| {
        if ok {
            "ok".to_string()
        } else {
            error.unwrap_or_default()
        }
    };
    let ready = database.is_ok() && broker.is_ok();
    let body = json!({
        "database": describe(database.is_ok(), database.err().map(|e| e.to_string())),
        "broker": describe(broker.is_ok(), broker.err().map(|e| e.to_string())),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
