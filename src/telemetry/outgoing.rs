//! The calls leadlink makes (ConnectSafely, the CRMs, the callback): each one a child span of
//! the stage that makes it, named after its route (never its URL, which holds ids), and
//! carrying W3C `traceparent` so the callee can join the trace. Incoming `traceparent` is
//! read here too.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use reqwest::{RequestBuilder, Response};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Sends `request` as one call named `route` (`connect`, `contacts/{id}`, ...).
pub async fn send(
    route: &'static str,
    request: RequestBuilder,
) -> Result<Response, reqwest::Error> {
    let (client, request) = request.build_split();
    let mut request = request?;
    let method = request.method().clone();
    let span = tracing::info_span!(
        "call",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "client",
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        error = Empty,
    );
    // Without trace export the span has no trace: nothing is sent.
    TraceContextPropagator::new()
        .inject_context(&span.context(), &mut HeaderInjector(request.headers_mut()));
    let result = client.execute(request).instrument(span.clone()).await;
    match &result {
        Ok(response) => span.record("http.response.status_code", response.status().as_u16()),
        // The kind only: the error's text names the URL.
        Err(e) => span.record("error", failure_kind(e)),
    };
    result
}

fn failure_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "request"
    }
}

/// Makes the trace named by an incoming `traceparent` the parent of `span` (before it is
/// entered); without one, or without trace export, `span` stays a root.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no trace is exported, where a parent means nothing.
    let _ = span.set_parent(parent);
}
