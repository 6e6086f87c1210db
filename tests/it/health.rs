//! The probes orchestrators use: ingest's `/readyz` needs only the database, since the outbox
//! holds the jobs while the broker is away; a worker's needs the broker too; `/health` tells
//! people everything.

use crate::harness::proxy::Proxy;
use crate::harness::*;
use leadlink::job::Status;
use leadlink::secret::Secret;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stays_ready_while_the_broker_is_cut_and_health_says_it_is_down()
-> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5672".parse()?).await;
    let mut config = env.config();
    config.broker.url = Some(Secret::new(format!(
        "amqp://guest:guest@{}/%2f",
        proxy.addr
    )));
    let mut ingest = env.start_role(config.clone(), INGEST_ONLY).await;
    proxy.cut().await;

    let (status, body) = answer(ingest.http.get(ingest.url("/readyz")).send().await?).await;
    assert_eq!((status, body), (200, json!({"database": "ok"})));
    let (status, body) = answer(ingest.http.get(ingest.url("/health")).send().await?).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "ok");
    assert_ne!(body["broker"], "ok", "{body}");
    assert_eq!(body["apiKey"], json!({"paused": false}));
    // And it is right to stay ready: a webhook is still accepted, and waits in the outbox.
    let (status, accepted) = ingest
        .send(&webhook_id(), &lead("crm-h1", "outage-lead", "acc_1"))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = job_id(&accepted);
    let url = ingest.url("/health");
    eventually(WAIT, "the unpublished job to age in the outbox", || async {
        let (_, body) = answer(env.http.get(&url).send().await.unwrap()).await;
        body["outboxOldestSeconds"].as_u64().is_some_and(|s| s >= 1)
    })
    .await;

    // Once the broker is back, a worker sends what the outbox kept.
    proxy.restore();
    let mut worker = env.start_role(config, WORKER_ONLY).await;
    ingest.wait_for(id, Status::Sent).await;
    eventually(WAIT, "health to recover with the broker", || async {
        env.http.get(&url).send().await.unwrap().status() == 200
    })
    .await;
    worker.stop().await;
    ingest.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_ready_only_while_its_broker_answers() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5672".parse()?).await;
    let mut config = env.config();
    config.broker.url = Some(Secret::new(format!(
        "amqp://guest:guest@{}/%2f",
        proxy.addr
    )));
    config.worker.health_listen = Some("127.0.0.1:0".parse()?);
    let mut worker = env.start_role(config, WORKER_ONLY).await;
    let addr = worker
        .running
        .as_ref()
        .and_then(|r| r.health_addr)
        .expect("worker.health_listen is served");
    let readyz = format!("http://{addr}/readyz");

    let (status, body) = answer(env.http.get(&readyz).send().await?).await;
    assert_eq!(
        (status, body),
        (200, json!({"database": "ok", "broker": "ok"}))
    );
    proxy.cut().await;
    let (status, body) = answer(env.http.get(&readyz).send().await?).await;
    assert_eq!(status, 503, "ready without a broker: {body}");
    assert_eq!(body["database"], "ok");
    let healthz = env
        .http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await?;
    assert_eq!(healthz.status(), 200, "alive all the same");
    let metrics = env
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?;
    assert_eq!(
        metrics.status(),
        200,
        "a worker's /metrics is beside its probes"
    );
    proxy.restore();
    eventually(WAIT, "ready again with the broker", || async {
        env.http.get(&readyz).send().await.unwrap().status() == 200
    })
    .await;
    worker.stop().await;
    env.cleanup().await;
    Ok(())
}
