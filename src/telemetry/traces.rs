//! Trace export: the `tracing` spans (a request, a job stage, a call it makes) become
//! OpenTelemetry spans, batched and POSTed as OTLP/HTTP JSON to `telemetry.otlp_endpoint`.
//! Off unless that is set.

use super::TelemetryConfig;
use super::TelemetryError;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{Layer, Registry};

/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running exporter; [`Traces::shutdown`] sends what is still batched.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The exporter `config` asks for, or `None` when traces are off.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Traces>, TelemetryError> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError::Traces(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // A caller that sent `traceparent` decided for its trace; our own roots are sampled.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Some(Traces { provider }))
    }

    /// The `tracing` layer that turns leadlink's spans (and the events inside them) into
    /// exported spans, whatever `log.filter` lets through to the logs.
    pub fn layer(&self) -> Box<dyn Layer<Registry> + Send + Sync> {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("leadlink"))
            .with_filter(Targets::new().with_target("leadlink", LevelFilter::INFO))
            .boxed()
    }

    /// Sends what is still batched and stops the exporter. It blocks: run it off the
    /// runtime's threads.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "could not send the last traces");
        }
    }
}
