//! `leadlink healthcheck`, the container images' health check: its exit code against a real
//! process, an endpoint that answers 503 and a port where nothing listens.

use crate::harness::TestEnv;
use crate::harness::process::{free_port, process_at, spawn_binary, with_listen};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use std::process::Output;

async fn healthcheck(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .arg("healthcheck")
        .args(args)
        .output()
        .await
        .expect("leadlink healthcheck runs")
}

fn one_line(stream: &[u8]) -> String {
    let text = String::from_utf8_lossy(stream).into_owned();
    assert_eq!(text.lines().count(), 1, "not one line: {text:?}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_ingest_is_healthy_at_the_address_its_config_names() {
    let env = TestEnv::new().await;
    let port = free_port();
    let config = with_listen(&env.config_text(), port);
    let ingest = spawn_binary(&env, "ingest", &config, &[]);
    process_at(&env, port).await;

    // No --url: the address comes from server.listen of the same file.
    let path = env.write_config(&config);
    let output = healthcheck(&["--config", path.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let line = one_line(&output.stdout);
    assert!(
        line.contains(&format!("127.0.0.1:{port}/healthz")),
        "{line}"
    );

    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let output = healthcheck(&["--url", &readyz]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    drop(ingest);
    env.cleanup().await;
}

#[tokio::test]
async fn an_endpoint_answering_503_is_unhealthy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/readyz",
        get(|| async { (StatusCode::SERVICE_UNAVAILABLE, r#"{"broker":"down"}"#) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let output = healthcheck(&["--url", &format!("http://{addr}/readyz")]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = one_line(&output.stderr);
    assert!(line.contains("503"), "{line}");
    assert!(line.contains(r#"{"broker":"down"}"#), "{line}");
}

#[tokio::test]
async fn nothing_listening_is_unhealthy() {
    let port = free_port();
    let output = healthcheck(&["--url", &format!("http://127.0.0.1:{port}/healthz")]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = one_line(&output.stderr);
    assert!(line.contains("did not answer"), "{line}");
}
