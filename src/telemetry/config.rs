//! The `[metrics]` and `[telemetry]` sections.

use crate::secret::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` here, in any role, instead of on `server.listen` or
    /// `worker.health_listen`.
    pub listen: Option<SocketAddr>,
    /// When set, `/metrics` wants `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// Whether this process reads the deployment-wide gauges from the store; one process
    /// per deployment is enough.
    pub store_gauges: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            token: None,
            store_gauges: true,
        }
    }
}

impl MetricsConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            problems.push("metrics.token is empty: leave it out to serve /metrics openly".into());
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP address; unset, no trace is exported.
    pub otlp_endpoint: Option<Url>,
    pub service_name: String,
    /// The share of traces started here that are exported; an incoming `traceparent`'s own
    /// choice is followed.
    pub sampling_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "leadlink".into(),
            sampling_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        if let Some(url) = &self.otlp_endpoint
            && !matches!(url.scheme(), "http" | "https")
        {
            problems.push("telemetry.otlp_endpoint must be an http(s) URL".into());
        }
        if self.service_name.trim().is_empty() {
            problems.push("telemetry.service_name must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            problems.push(format!(
                "telemetry.sampling_ratio ({}) must be between 0.0 and 1.0",
                self.sampling_ratio
            ));
        }
    }

    /// Where spans are POSTed: the endpoint's `/v1/traces`, unless it names that path already.
    pub fn traces_url(&self) -> Option<Url> {
        let mut url = self.otlp_endpoint.clone()?;
        if !url.path().ends_with("/v1/traces") {
            let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        let with = |endpoint: &str| TelemetryConfig {
            otlp_endpoint: Some(Url::parse(endpoint).unwrap()),
            ..TelemetryConfig::default()
        };
        for (endpoint, expected) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example/otlp",
                "https://otel.example/otlp/v1/traces",
            ),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ] {
            assert_eq!(with(endpoint).traces_url().unwrap().as_str(), expected);
        }
        assert_eq!(TelemetryConfig::default().traces_url(), None);
    }

    #[test]
    fn a_ratio_outside_zero_to_one_and_an_odd_scheme_are_refused() {
        let config = TelemetryConfig {
            otlp_endpoint: Some(Url::parse("ftp://collector").unwrap()),
            service_name: " ".into(),
            sampling_ratio: 1.5,
        };
        let mut problems = Vec::new();
        config.check(&mut problems);
        let all = problems.join("\n");
        for needle in [
            "telemetry.otlp_endpoint",
            "telemetry.service_name",
            "telemetry.sampling_ratio (1.5)",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
        let mut none = Vec::new();
        TelemetryConfig::default().check(&mut none);
        assert!(none.is_empty(), "{none:?}");
    }
}
