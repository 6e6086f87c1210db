//! Processes killed at the worst moments and a broker connection cut under load: nothing
//! lost, nothing sent twice.

use crate::harness::process::*;
use crate::harness::proxy::Proxy;
use crate::harness::*;
use leadlink::job::Status;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

both_backends! {
    async fn a_process_killed_between_commit_and_publish_loses_nothing(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let port = free_port();
        let config = with_listen(&env.config_text(), port);
        let mut child = spawn_binary(
            &env,
            "serve",
            &config,
            &[("LEADLINK_FAULTS__EXIT_AFTER_COMMIT", "true")],
        );
        let crashing = process_at(&env, port).await;
        let delivery = webhook_id();
        let event = lead("crm-crash", "crash-one", "acc_1");
        let body = serde_json::to_vec(&event)?;
        let mut request = env.http.post(crashing.url("/webhooks/events"));
        for (name, value) in leadlink::signature::standard_webhooks::Signer::new(EVENTS_SECRET)?
            .headers(&delivery, chrono::Utc::now(), &body)?
        {
            request = request.header(name, value);
        }
        assert!(
            request.body(body).send().await.is_err(),
            "the process answered instead of dying"
        );
        assert_eq!(child.wait()?.code(), Some(3));

        // A healthy process finds the committed job in the outbox and sends it once.
        let mut app = env.start(env.config()).await;
        let (status, again) = app.send(&delivery, &event).await;
        assert_eq!(
            status, 200,
            "the CRM's retry finds the committed job: {again}"
        );
        let id = job_id(&again);
        app.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_1", "crash-one").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_send_leaves_one_invitation() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    // The simulator records the invitation, then answers only after 3 s.
    env.sim_put("config", json!({"latencyMs": 3000})).await;
    // The kill comes as soon as the invitation is recorded, well inside the 2 s API timeout.
    let config_text = env.config_text();
    let config = leadlink::config::Config::from_toml(&config_text)?;
    let mut ingest = env.start_role(config.clone(), INGEST_ONLY).await;
    let mut worker = spawn_binary(&env, "worker", &config_text, &[]);
    let (_, body) = ingest
        .send(&webhook_id(), &lead("crm-mid", "mid-send", "acc_1"))
        .await;
    let id = job_id(&body);
    eventually(WAIT, "the invitation is out", || async {
        env.total_invitations().await == 1
    })
    .await;
    worker.kill()?;
    worker.wait()?;
    env.sim_put("config", json!({"latencyMs": 0})).await;

    let mut replacement = env.start_role(config, WORKER_ONLY).await;
    let job = ingest.wait_for(id, Status::Sent).await;
    assert_eq!(
        env.invitations("acc_1", "mid-send").await,
        1,
        "the job was sent twice"
    );
    assert_eq!(job.attempts, 1, "{job:#?}");
    let checked = job.found_the_invitation_out();
    assert!(
        checked,
        "the resend was not preceded by a relationship check: {job:#?}"
    );
    replacement.stop().await;
    ingest.stop().await;
    env.cleanup().await;
    Ok(())
}

both_backends! {
    async fn sigterm_drains_the_job_in_flight(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        env.sim_put("config", json!({"latencyMs": 1500})).await;
        let port = free_port();
        let mut child = spawn_binary(&env, "serve", &with_listen(&env.config_text(), port), &[]);
        let app = process_at(&env, port).await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-term", "term-one", "acc_1"))
            .await;
        let id = job_id(&body);
        eventually(WAIT, "the call is in flight", || async {
            env.total_invitations().await == 1
        })
        .await;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        assert!(status.success());
        assert!(
            child.wait()?.success(),
            "leadlink did not exit cleanly on SIGTERM"
        );

        // The outcome was committed before exit: read it with the CLI against the same database.
        let path = env.write_config(&env.config_text());
        let output = Command::new(env!("CARGO_BIN_EXE_leadlink"))
            .args(["jobs", "show", &id.to_string(), "--config"])
            .arg(path)
            .output()?;
        let job: Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(job["status"], "sent", "{job:#}");
        assert_eq!(env.invitations("acc_1", "term-one").await, 1);
        env.cleanup().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_under_a_stream_of_events_loses_and_doubles_nothing() -> anyhow::Result<()>
{
    let env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5672".parse()?).await;
    let mut config = env.config();
    config.broker.url = Some(leadlink::secret::Secret::new(format!(
        "amqp://guest:guest@{}/%2f",
        proxy.addr
    )));
    let mut app = env.start(config).await;
    let total = 30;
    let mut ids = Vec::new();
    for n in 0..total {
        if n == 10 {
            proxy.cut().await;
            let health = app.http.get(app.url("/health")).send().await?;
            assert_eq!(health.status(), 503, "healthy without a broker");
        }
        if n == 20 {
            proxy.restore();
        }
        let (status, body) = app
            .send(
                &webhook_id(),
                &lead(&format!("crm-s{n}"), &format!("stream-{n}"), "acc_1"),
            )
            .await;
        assert_eq!(status, 202, "event {n}: {body}");
        ids.push(job_id(&body));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &id in &ids {
        app.wait_for_within(id, Status::Sent, Duration::from_secs(60))
            .await;
    }
    let health = app.http.get(app.url("/health")).send().await?;
    assert_eq!(health.status(), 200, "not healthy again after the outage");
    let invitations = env.sim_get("invitations").await;
    assert_eq!(invitations["total"], total, "{invitations}");
    for n in 0..total {
        assert_eq!(
            env.invitations("acc_1", &format!("stream-{n}")).await,
            1,
            "stream-{n}"
        );
    }
    eventually(WAIT, "every sent status written back", || async {
        ids.iter()
            .all(|&id| env.callback_statuses(id).last().map(String::as_str) == Some("sent"))
    })
    .await;
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_job_id_and_never_a_secret() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    // Errors everywhere, so that everything that could leak a secret gets logged.
    env.sim_put("config", json!({"apiKeys": ["another-key"]}))
        .await;
    env.callback.answers.lock().unwrap().extend([500, 500, 500]);
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("leadlink-log-{}.json", env.id));
    let log = std::fs::File::create(&log_path)?;
    let mut child = spawn_binary_logging_to(
        &env,
        "serve",
        &with_listen(&env.config_text(), port),
        &[("LEADLINK_LOG__FORMAT", "json"), ("RUST_LOG", "debug")],
        Stdio::from(log),
    );
    let app = process_at(&env, port).await;
    let (_, body) = app
        .send(&webhook_id(), &lead("crm-log", "log-one", "acc_1"))
        .await;
    let id = job_id(&body);
    app.wait_for(id, Status::Paused).await;
    let (status, _) = app
        .send_raw(
            &webhook_id(),
            chrono::Utc::now(),
            b"{}".to_vec(),
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        )
        .await;
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;

    let text = std::fs::read_to_string(&log_path)?;
    let mut job_lines = 0;
    for line in text.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let id = id.to_string();
        if entry["span"]["job_id"] == id.as_str() || entry["spans"].to_string().contains(&id) {
            job_lines += 1;
        }
    }
    assert!(job_lines > 0, "no log line carries the job id");
    // The failures that could have leaked something were really logged.
    assert!(
        text.contains("refused the API key"),
        "the 401 was not logged"
    );
    assert!(
        text.contains("signature rejected") || text.contains("\"status\":401"),
        "the bad signature was not logged"
    );
    for secret in [
        API_KEY,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "C2FVsBQIhrscChlQIMV",
        ADMIN_TOKEN,
        "cb-query-token",
        "guest:guest",
    ] {
        assert!(
            !text.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
    std::fs::remove_file(log_path)?;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_loses_nothing_after_it() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse()?).await;
    let mut config = env.config();
    config.database.url = leadlink::secret::Secret::new(
        env.database_url
            .replace("127.0.0.1:5432", &proxy.addr.to_string()),
    );
    config.database.acquire_timeout = Duration::from_secs(2);
    let mut app = env.start(config).await;

    proxy.cut().await;
    let delivery = webhook_id();
    let event = lead("crm-db", "db-outage", "acc_1");
    let (status, body) = app.send(&delivery, &event).await;
    assert_eq!(status, 503, "a 2xx without a committed job: {body}");
    assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
    proxy.restore();

    // The CRM retries the same delivery; now it is durable and goes through once.
    let deadline = tokio::time::Instant::now() + WAIT;
    let accepted = loop {
        let (status, body) = app.send(&delivery, &event).await;
        if status == 202 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status} after the outage: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = job_id(&accepted);
    app.wait_for(id, Status::Sent).await;
    assert_eq!(env.invitations("acc_1", "db-outage").await, 1);
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_keeps_publishes_bounded_and_loses_nothing()
-> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5672".parse()?).await;
    let mut config = env.config();
    config.broker.url = Some(leadlink::secret::Secret::new(format!(
        "amqp://guest:guest@{}/%2f",
        proxy.addr
    )));
    // Longer than the whole stream of events: no publish gives up meanwhile, so whatever
    // is alive at the end has piled up. (Each connection attempt lapin abandons to a
    // timeout leaves its own tasks behind too; see docs/writebacks-reliability.md.)
    config.broker.publish_timeout = Duration::from_secs(30);
    let mut app = env.start(config).await;
    let (status, body) = app
        .send(&webhook_id(), &lead("crm-w0", "swallowed-0", "acc_1"))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_for(job_id(&body), Status::Sent).await;

    // The broker accepts TCP and never answers: every publish hangs until its timeout.
    proxy.swallow().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let total = 120;
    let mut ids = Vec::new();
    let mut most_tasks = 0;
    for n in 1..=total {
        let started = std::time::Instant::now();
        let (status, body) = app
            .send(
                &webhook_id(),
                // Spread over accounts: one account's week has room for 90 invitations.
                &lead(
                    &format!("crm-w{n}"),
                    &format!("swallowed-{n}"),
                    &format!("acc_{}", n % 4),
                ),
            )
            .await;
        assert_eq!(status, 202, "event {n}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "event {n} answered after {:?}",
            started.elapsed()
        );
        ids.push(job_id(&body));
        most_tasks = most_tasks.max(metrics.num_alive_tasks());
    }
    // Without a bound each webhook leaves a task behind, queued for the publisher.
    let grown = most_tasks.saturating_sub(before);
    assert!(grown < 40, "{grown} more tasks alive ({before} before)");
    let publishes = app.stats().await.publishes;
    let limit = leadlink::config::BrokerConfig::default().publish_concurrency as u64;
    assert!(publishes.in_flight <= limit, "{publishes:?}");
    assert!(publishes.left_to_relay > 0, "{publishes:?}");

    proxy.stop_swallowing().await;
    for &id in &ids {
        app.wait_for_within(id, Status::Sent, Duration::from_secs(90))
            .await;
    }
    for n in 1..=total {
        assert_eq!(
            env.invitations(&format!("acc_{}", n % 4), &format!("swallowed-{n}"))
                .await,
            1,
            "swallowed-{n}"
        );
    }
    app.stop().await;
    env.cleanup().await;
    Ok(())
}
