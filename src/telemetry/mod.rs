//! What leadlink tells about itself besides its logs: Prometheus metrics on `/metrics`,
//! OpenTelemetry traces exported over OTLP/HTTP, and the `traceparent` its calls carry.

pub mod config;
mod endpoint;
pub mod metrics;
pub mod outgoing;
pub mod store_gauges;
pub mod traces;

pub use config::{MetricsConfig, TelemetryConfig};
pub use endpoint::{MetricsEndpoint, router};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("a valid metrics bearer token is required")]
    Unauthorized,
    #[error("cannot export traces: {0}")]
    Traces(String),
}

impl IntoResponse for TelemetryError {
    fn into_response(self) -> Response {
        let status = match self {
            TelemetryError::Unauthorized => StatusCode::UNAUTHORIZED,
            TelemetryError::Traces(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            axum::Json(serde_json::json!({"error": self.to_string()})),
        )
            .into_response()
    }
}
