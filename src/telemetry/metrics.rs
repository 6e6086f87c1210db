//! Every metric's name and the one-line helpers that record them, so call sites stay one
//! line and the names (a contract with dashboards and alert rules) live here only.
//!
//! Labels are closed sets: never a record id, profile data or a token (cardinality,
//! privacy); an account id is fine, there are a handful.

use crate::job::{Source, Status, WritebackTarget};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const WEBHOOKS: &str = "leadlink_webhooks_total";
pub const JOBS: &str = "leadlink_jobs";
pub const CONNECT_REQUESTS: &str = "leadlink_connect_requests_total";
pub const API_CALLS: &str = "leadlink_api_calls_total";
pub const API_CALL_DURATION: &str = "leadlink_api_call_duration_seconds";
pub const WRITEBACKS: &str = "leadlink_writebacks_total";
pub const ACCOUNT_REMAINING: &str = "leadlink_account_remaining";
pub const ACCOUNT_HELD: &str = "leadlink_account_held";
pub const OUTBOX_OLDEST: &str = "leadlink_outbox_oldest_seconds";
pub const API_KEY_PAUSED: &str = "leadlink_api_key_paused";
pub const WRITEBACKS_PARKED: &str = "leadlink_writebacks_parked";
pub const PUBLISH_DURATION: &str = "leadlink_publish_duration_seconds";

/// ConnectSafely answers in tens of milliseconds to seconds; the client times out at 30 s.
const API_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// A confirmed publish takes milliseconds; `broker.publish_timeout` is 5 s.
const PUBLISH_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// What became of a webhook: counted per event where a request carries several (a HubSpot
/// batch, an Outbound Message), and once per request refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// A new job.
    Accepted,
    /// The delivery or the lead already has a job.
    Duplicate,
    /// Acknowledged and dropped: another event type, not qualified, or a malformed event in
    /// a HubSpot batch (as `/admin/stats` counts them).
    Ignored,
    /// Refused as bad input: a 4xx other than 401, or a SOAP fault.
    Rejected,
    /// A bad or missing signature or token (401).
    Unauthorized,
    /// The job could not be made durable (503); the sender retries.
    Unavailable,
}

impl WebhookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Accepted => "accepted",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Rejected => "rejected",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::Unavailable => "unavailable",
        }
    }

    /// The result of a request refused as a whole, by its answer's status; `None` for an
    /// answer whose events were counted one by one.
    pub fn of_refusal(status: u16) -> Option<WebhookResult> {
        match status {
            200..=299 => None,
            401 => Some(WebhookResult::Unauthorized),
            503 => Some(WebhookResult::Unavailable),
            _ => Some(WebhookResult::Rejected),
        }
    }
}

/// What became of one writeback attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritebackOutcome {
    Delivered,
    /// Failed, to be tried again (refused credentials included).
    Failed,
    /// A permanent refusal, or its time ran out: kept for an operator.
    Parked,
    /// A newer job of the record wrote it first: ended unsent.
    Superseded,
}

impl WritebackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WritebackOutcome::Delivered => "delivered",
            WritebackOutcome::Failed => "failed",
            WritebackOutcome::Parked => "parked",
            WritebackOutcome::Superseded => "superseded",
        }
    }
}

pub fn webhook(source: Source, result: WebhookResult) {
    counter!(WEBHOOKS, "source" => source.as_str(), "result" => result.as_str()).increment(1);
}

/// A `POST /connect` was answered (or not) and its job moved to `outcome`.
pub fn connect_request(outcome: Status) {
    counter!(CONNECT_REQUESTS, "outcome" => outcome.as_str()).increment(1);
}

/// One ConnectSafely call: `endpoint` a fixed route name, `status` `None` when no answer
/// came (timeout, connection refused).
pub fn api_call(endpoint: &'static str, status: Option<u16>, took: Duration) {
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    counter!(API_CALLS, "endpoint" => endpoint, "status" => status).increment(1);
    histogram!(API_CALL_DURATION, "endpoint" => endpoint).record(took.as_secs_f64());
}

pub fn writeback(target: WritebackTarget, outcome: WritebackOutcome) {
    counter!(WRITEBACKS, "target" => target.as_str(), "result" => outcome.as_str()).increment(1);
}

/// A publish the broker confirmed, and how long that took.
pub fn published(took: Duration) {
    histogram!(PUBLISH_DURATION).record(took.as_secs_f64());
}

pub fn jobs(status: Status, count: i64) {
    gauge!(JOBS, "status" => status.as_str()).set(count as f64);
}

pub fn account(account_id: &str, remaining: Option<i64>, held: bool) {
    let account = account_id.to_string();
    if let Some(remaining) = remaining {
        gauge!(ACCOUNT_REMAINING, "account" => account.clone()).set(remaining as f64);
    }
    gauge!(ACCOUNT_HELD, "account" => account).set(if held { 1.0 } else { 0.0 });
}

pub fn outbox_oldest(age: Duration) {
    gauge!(OUTBOX_OLDEST).set(age.as_secs_f64());
}

pub fn api_key_paused(paused: bool) {
    gauge!(API_KEY_PAUSED).set(if paused { 1.0 } else { 0.0 });
}

pub fn writebacks_parked(count: i64) {
    gauge!(WRITEBACKS_PARKED).set(count as f64);
}

/// The process's recorder, installed on first use: it is global, and tests start several
/// services in one process.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(API_CALL_DURATION.into()), &API_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(PUBLISH_DURATION.into()), &PUBLISH_BUCKETS)
            })
            .and_then(PrometheusBuilder::install_recorder)
            .expect("the metrics recorder is installed once, with static buckets");
        describe();
        handle
    })
}

/// Drains the histograms' samples now and then, so that a process nobody scrapes does not
/// keep them all.
pub async fn upkeep_loop(shutdown: CancellationToken) {
    let handle = recorder();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

fn describe() {
    describe_counter!(WEBHOOKS, "Webhook events by source and what became of them");
    describe_gauge!(JOBS, "Jobs in the store by status (whole deployment)");
    describe_counter!(
        CONNECT_REQUESTS,
        "POST /connect calls by the status their job moved to"
    );
    describe_counter!(API_CALLS, "ConnectSafely calls by endpoint and HTTP status");
    describe_histogram!(
        API_CALL_DURATION,
        metrics::Unit::Seconds,
        "ConnectSafely call durations by endpoint"
    );
    describe_counter!(WRITEBACKS, "Writeback attempts by target and result");
    describe_gauge!(
        ACCOUNT_REMAINING,
        "Connection requests left in the account's week, as last read (whole deployment)"
    );
    describe_gauge!(
        ACCOUNT_HELD,
        "1 while the account is on hold or its week is spent (whole deployment)"
    );
    describe_gauge!(
        OUTBOX_OLDEST,
        metrics::Unit::Seconds,
        "How long the oldest due outbox message has waited to be published (whole deployment)"
    );
    describe_gauge!(
        API_KEY_PAUSED,
        "1 while ConnectSafely refuses the API key and nobody sends (whole deployment)"
    );
    describe_gauge!(
        WRITEBACKS_PARKED,
        "Writebacks parked until an operator retries them (whole deployment)"
    );
    describe_histogram!(
        PUBLISH_DURATION,
        metrics::Unit::Seconds,
        "How long the broker took to confirm a publish"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_request_is_told_by_its_status() {
        assert_eq!(WebhookResult::of_refusal(202), None);
        assert_eq!(WebhookResult::of_refusal(200), None);
        assert_eq!(
            WebhookResult::of_refusal(401),
            Some(WebhookResult::Unauthorized)
        );
        assert_eq!(
            WebhookResult::of_refusal(503),
            Some(WebhookResult::Unavailable)
        );
        for rejected in [400, 403, 404, 409, 413, 500] {
            assert_eq!(
                WebhookResult::of_refusal(rejected),
                Some(WebhookResult::Rejected),
                "{rejected}"
            );
        }
    }
}
