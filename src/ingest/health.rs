//! The probes. `/healthz`: the process is alive. `/readyz`: send me traffic, which needs
//! different things per side: ingest only needs the database (while the broker is away the
//! outbox holds the jobs, so a broker outage must not take ingest out of a load balancer),
//! a worker needs the database and the broker. `/health`: every dependency, for people.

use super::IngestState;
use crate::queue::Queue;
use crate::store::{KeyPause, Store};
use crate::telemetry::store_gauges::outbox_age;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "alive"}))
}

/// The HTTP side's readiness: the database answers.
pub async fn ingest_ready<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
) -> Response {
    let database = state.store.ping().await.map_err(|e| e.to_string());
    answer(database.is_ok(), json!({"database": described(&database)}))
}

/// A worker's readiness: the database and the broker answer.
pub async fn worker_ready<Q: Queue, S: Store>(
    State(state): State<Arc<IngestState<Q, S>>>,
) -> Response {
    let (database, broker) = tokio::join!(state.store.ping(), state.queue.ping());
    let (database, broker) = (
        database.map_err(|e| e.to_string()),
        broker.map_err(|e| e.to_string()),
    );
    answer(
        database.is_ok() && broker.is_ok(),
        json!({"database": described(&database), "broker": described(&broker)}),
    )
}

/// Everything at once, for people: the database, the broker, the API key's pause and how
/// long the oldest due outbox message has waited. 503 when the database or the broker is
/// down.
pub async fn health<Q: Queue, S: Store>(State(state): State<Arc<IngestState<Q, S>>>) -> Response {
    let now = Utc::now();
    let (database, broker, key, oldest) = tokio::join!(
        state.store.ping(),
        state.queue.ping(),
        state.store.key_pause(),
        state.store.oldest_due(now),
    );
    let (database, broker) = (
        database.map_err(|e| e.to_string()),
        broker.map_err(|e| e.to_string()),
    );
    let api_key = key.map_or(Value::Null, |pause| api_key_state(pause.as_ref()));
    let outbox = oldest.map_or(Value::Null, |due| json!(outbox_age(due, now).as_secs()));
    answer(
        database.is_ok() && broker.is_ok(),
        json!({
            "database": described(&database),
            "broker": described(&broker),
            "apiKey": api_key,
            "outboxOldestSeconds": outbox,
        }),
    )
}

fn described(check: &Result<(), String>) -> String {
    match check {
        Ok(()) => "ok".to_string(),
        Err(error) => error.clone(),
    }
}

fn answer(ok: bool, body: Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The API key's pause as `/health` and `GET /admin/accounts` show it.
pub(super) fn api_key_state(pause: Option<&KeyPause>) -> Value {
    match pause {
        None => json!({"paused": false}),
        Some(pause) => json!({"paused": true, "reason": pause.reason, "since": pause.since}),
    }
}
