//! `GET /metrics`: the process's counters and histograms, and the store gauges where this
//! process computes them, in Prometheus' text format; behind `metrics.token` when set.

use super::TelemetryError;
use super::metrics;
use super::store_gauges::StoreGauges;
use crate::secret::Secret;
use crate::signature;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

pub struct MetricsEndpoint<S> {
    pub token: Option<Secret>,
    /// `None` where another process computes them (`metrics.store_gauges = false`).
    pub gauges: Option<StoreGauges<S>>,
}

pub fn router<S: Store>(endpoint: Arc<MetricsEndpoint<S>>) -> Router {
    Router::new()
        .route("/metrics", get(scrape::<S>))
        .with_state(endpoint)
}

async fn scrape<S: Store>(
    State(endpoint): State<Arc<MetricsEndpoint<S>>>,
    headers: HeaderMap,
) -> Result<Response, TelemetryError> {
    if let Some(token) = &endpoint.token
        && !signature::bearer_matches(&headers, token.expose())
    {
        return Err(TelemetryError::Unauthorized);
    }
    if let Some(gauges) = &endpoint.gauges {
        gauges.refresh().await;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::recorder().render(),
    )
        .into_response())
}
