//! How long a HubSpot app-subscription batch of 100 qualified events takes to be answered,
//! against the real RabbitMQ and PostgreSQL (the issue's target: p99 under 1 s, as HubSpot
//! gives up after 5 s and sends up to 10 requests at once).
//!
//! `cargo bench --bench hubspot_batch`; knobs: `BENCH_BATCHES` (per phase, default 50),
//! `BENCH_SENDERS` (concurrent senders in the second phase, default 10),
//! `BENCH_DB_CONNECTIONS` (the pool size, default 8 as in production; the tests use 4).
//! Exits non-zero when a phase's p99 is 1 s or more.

// The integration tests' harness; the benchmark needs only its `TestEnv`.
#[path = "../tests/it/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

mod common;

use common::env_number;

use axum::http::Method;
use chrono::Utc;
use harness::TestEnv;
use leadlink::app::Role;
use leadlink::config::Config;
use leadlink::secret::Secret;
use leadlink::signature::hubspot::sign_v3;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-client-secret";
const PUBLIC_URL: &str = "https://hooks.example.com";
const PATH: &str = "/webhooks/hubspot";
const BATCH: u64 = 100;
const TARGET: Duration = Duration::from_secs(1);

/// A batch of qualified events for contacts never seen before.
fn batch(next_contact: &AtomicU64) -> Vec<u8> {
    let events: Vec<Value> = (0..BATCH)
        .map(|_| {
            let id = next_contact.fetch_add(1, Ordering::Relaxed);
            json!({
                "eventId": id, "subscriptionId": 1, "portalId": 62515, "appId": 54321,
                "occurredAt": Utc::now().timestamp_millis(),
                "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
                "objectId": id, "propertyName": "hs_lead_status", "propertyValue": "QUALIFIED",
                "changeSource": "CRM"
            })
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

async fn send(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Duration {
    let headers = sign_v3(
        &Method::POST,
        &format!("{PUBLIC_URL}{PATH}"),
        &body,
        &Secret::new(SECRET),
        Utc::now(),
    )
    .unwrap();
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    let took = started.elapsed();
    assert_eq!(status.as_u16(), 200, "{answer}");
    assert_eq!(answer["accepted"], BATCH, "{answer}");
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the phase's percentiles; true when its p99 is under the target.
fn report(phase: &str, mut took: Vec<Duration>, wall: Duration) -> bool {
    took.sort();
    let p99 = percentile(&took, 99.0);
    println!(
        "{phase:<28} batches {:>4}  p50 {:>7.1?}  p95 {:>7.1?}  p99 {:>7.1?}  max {:>7.1?}  ({:.0} events/s)",
        took.len(),
        percentile(&took, 50.0),
        percentile(&took, 95.0),
        p99,
        took.last().unwrap(),
        (took.len() as u64 * BATCH) as f64 / wall.as_secs_f64(),
    );
    p99 < TARGET
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !common::measuring("hubspot_batch") {
        return;
    }
    let batches = env_number("BENCH_BATCHES", 50);
    let senders = env_number("BENCH_SENDERS", 10).max(1);
    let pool = env_number("BENCH_DB_CONNECTIONS", 8);

    let env = TestEnv::new().await;
    let text = format!(
        r#"{}
[sources.hubspot]
client_secret = "{SECRET}"
public_url = "{PUBLIC_URL}"
triggers = [{{ property = "hs_lead_status", value = "QUALIFIED" }}]
[crm.hubspot]
base_url = "http://127.0.0.1:9"
access_token = "pat-bench"
"#,
        env.config_text()
            .replace("max_connections = 4", &format!("max_connections = {pool}")),
    );
    let config = Config::from_toml(&text).expect("bench config");
    // The ingest role alone: the answer's latency is what is measured, and no worker takes
    // connections from the pool meanwhile (the relay still runs, as in every process).
    let mut app = env.start_role(config, Role::Ingest).await;
    let url = app.url(PATH);
    let http = reqwest::Client::new();
    let contacts = Arc::new(AtomicU64::new(1_000_000));

    // Warm-up: connections, prepared statements.
    for _ in 0..3 {
        send(&http, &url, batch(&contacts)).await;
    }

    let started = Instant::now();
    let mut sequential = Vec::new();
    for _ in 0..batches {
        sequential.push(send(&http, &url, batch(&contacts)).await);
    }
    let sequential_ok = report("sequential", sequential, started.elapsed());

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let (http, url, contacts) = (http.clone(), url.clone(), contacts.clone());
        let share = batches / senders + u64::from(sender < batches % senders);
        tasks.spawn(async move {
            let mut took = Vec::new();
            for _ in 0..share {
                took.push(send(&http, &url, batch(&contacts)).await);
            }
            took
        });
    }
    let mut concurrent = Vec::new();
    while let Some(took) = tasks.join_next().await {
        concurrent.extend(took.unwrap());
    }
    let concurrent_ok = report(
        &format!("{senders} concurrent senders"),
        concurrent,
        started.elapsed(),
    );

    app.stop().await;
    env.cleanup().await;
    if !(sequential_ok && concurrent_ok) {
        eprintln!("p99 is {TARGET:?} or more");
        std::process::exit(1);
    }
}
