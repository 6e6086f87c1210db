//! Trace export to a local OTLP/HTTP receiver: a webhook's request span joins the caller's
//! trace, the job's connect stage carries its `job_id`, the connect call is the stage's
//! child, and ConnectSafely is sent a `traceparent` naming that call.

use crate::harness::process::{free_port, process_at, spawn_binary, with_listen};
use crate::harness::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use leadlink::job::Status;
use leadlink::signature::standard_webhooks::Signer;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

type Collected = Arc<Mutex<Vec<Value>>>;

async fn collect(State(bodies): State<Collected>, body: Bytes) -> StatusCode {
    bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// What reached ConnectSafely: (path, `traceparent`) of each call.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Stands between leadlink and the simulator, noting each call's `traceparent`.
async fn forward(State((sim, seen)): State<(String, Seen)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let traceparent = parts
        .headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_string());
    seen.lock()
        .unwrap()
        .push((parts.uri.path().to_string(), traceparent));
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut outgoing = reqwest::Client::new().request(parts.method, format!("{sim}{path}"));
    for name in ["authorization", "content-type"] {
        if let Some(value) = parts.headers.get(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.body(body).send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            response = response.header(name, value);
        }
    }
    response
        .body(axum::body::Body::from(answer.bytes().await.unwrap()))
        .unwrap()
        .into_response()
}

fn spans(bodies: &[Value]) -> Vec<Value> {
    bodies
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A span attribute as text, whatever its OTLP JSON type.
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    ["stringValue", "intValue", "boolValue"]
        .iter()
        .find_map(|kind| match &value[kind] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_and_its_send_reach_the_collector_as_one_connected_story() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let collected = Collected::default();
    let otlp = serve(
        Router::new()
            .route("/v1/traces", post(collect))
            .with_state(collected.clone()),
    )
    .await;
    let seen = Seen::default();
    let api = serve(
        Router::new()
            .fallback(forward)
            .with_state((env.sim_url.clone(), seen.clone())),
    )
    .await;
    let port = free_port();
    let config = format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://{otlp}\"\nservice_name = \"leadlink-test\"\n",
        with_listen(&env.config_text(), port).replace(&env.sim_url, &format!("http://{api}"))
    );
    let mut child = spawn_binary(&env, "serve", &config, &[]);
    let app = process_at(&env, port).await;

    // The caller's trace: the request span is to be its child.
    let caller_trace = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let body = serde_json::to_vec(&lead("crm-t1", "traced-lead", "acc_1"))?;
    let mut request = app
        .http
        .post(app.url("/webhooks/events"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"));
    for (name, value) in Signer::new(EVENTS_SECRET)?.headers(&webhook_id(), Utc::now(), &body)? {
        request = request.header(name, value);
    }
    let (status, answered) = answer(request.body(body).send().await?).await;
    assert_eq!(status, 202, "{answered}");
    let id = job_id(&answered).to_string();
    app.wait_for(job_id(&answered), Status::Sent).await;
    eventually(WAIT, "the sent status written back", || async {
        env.callback_statuses(job_id(&answered))
            .last()
            .map(String::as_str)
            == Some("sent")
    })
    .await;
    // Shutting down sends what is still batched.
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?
            .success()
    );
    assert!(child.wait()?.success(), "leadlink did not stop cleanly");

    let spans = spans(&collected.lock().unwrap());
    let resources = collected.lock().unwrap().clone();
    assert!(
        resources
            .iter()
            .any(|b| b.to_string().contains(r#""stringValue":"leadlink-test""#)),
        "service.name missing: {resources:?}"
    );
    let request_span = spans
        .iter()
        .find(|s| s["name"] == "request" && attribute(s, "job_id").as_deref() == Some(&id))
        .unwrap_or_else(|| panic!("no request span for job {id}: {spans:#?}"));
    assert_eq!(request_span["traceId"], caller_trace.as_str());
    assert_eq!(request_span["parentSpanId"], caller_span);
    let connect_call = spans
        .iter()
        .find(|s| attribute(s, "http.route").as_deref() == Some("connect"))
        .unwrap_or_else(|| panic!("no connect call span: {spans:#?}"));
    assert_eq!(connect_call["name"], "POST connect");
    assert_eq!(
        attribute(connect_call, "http.response.status_code").as_deref(),
        Some("200")
    );
    let stage = spans
        .iter()
        .find(|s| s["spanId"] == connect_call["parentSpanId"])
        .unwrap_or_else(|| panic!("the connect call has no parent among {spans:#?}"));
    assert_eq!(stage["name"], "job");
    assert_eq!(attribute(stage, "job_id").as_deref(), Some(id.as_str()));
    assert_eq!(attribute(stage, "stage").as_deref(), Some("connect"));
    assert_eq!(stage["traceId"], connect_call["traceId"]);
    assert!(
        spans.iter().any(|s| s["name"] == "job"
            && attribute(s, "job_id").as_deref() == Some(&id)
            && attribute(s, "stage").as_deref() == Some("writeback")),
        "no writeback stage span for job {id}"
    );

    // ConnectSafely heard of the call's trace: `00-<trace>-<the call's span>-01`.
    let trace = connect_call["traceId"].as_str().unwrap();
    let expected = format!("00-{trace}-{}-01", connect_call["spanId"].as_str().unwrap());
    let seen = seen.lock().unwrap().clone();
    let sent = seen
        .iter()
        .find(|(path, _)| path == "/connect")
        .unwrap_or_else(|| panic!("no /connect call: {seen:?}"));
    assert_eq!(sent.1.as_deref(), Some(expected.as_str()), "{seen:?}");
    assert!(
        seen.iter().all(|(_, traceparent)| traceparent.is_some()),
        "every call carries traceparent: {seen:?}"
    );
    env.cleanup().await;
    Ok(())
}
