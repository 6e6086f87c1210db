//! Holds, transient failures, a refused key and failing writebacks, end to end with short
//! windows against the real broker and database.

use crate::harness::*;
use chrono::Utc;
use leadlink::job::Status;
use serde_json::{Value, json};
use std::time::Duration;

async fn connect_calls(env: &TestEnv, account: &str) -> u64 {
    let stats = env.sim_get("stats").await;
    stats["accounts"][account]["endpoints"]["connect"]
        .as_object()
        .map_or(0, |codes| codes.values().map(|n| n.as_u64().unwrap()).sum())
}

both_backends! {
    async fn a_held_account_waits_for_its_reset_while_another_account_sends_at_once(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut config = env.config();
        config.broker.prefetch = 1;
        config.broker.connect_concurrency = 1;
        let mut app = env.start(config).await;
        // Generous windows: a loaded CI machine must not turn a hold into a send.
        let reset = Utc::now() + chrono::Duration::seconds(10);
        env.sim_put(
            "accounts/acc_held",
            json!({"limit": 5, "used": 5, "holdSeconds": 2, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;

        let (_, first) = app
            .send(&webhook_id(), &lead("crm-h1", "held-one", "acc_held"))
            .await;
        let first = job_id(&first);
        let held = app.wait_for(first, Status::Held).await;
        let retry_at: chrono::DateTime<Utc> = held.retry_at.unwrap();
        assert!(
            retry_at >= reset - chrono::Duration::milliseconds(1),
            "retry before the weekly reset: {held:#?}"
        );
        // The quota endpoint announced the spent week: no request went out to earn a hold.
        assert!(held.hold_until.is_none(), "{held:#?}");

        // More jobs for the held account park without calling the API ...
        let (_, second) = app
            .send(&webhook_id(), &lead("crm-h2", "held-two", "acc_held"))
            .await;
        let second = job_id(&second);
        app.wait_for(second, Status::Held).await;
        // ... and a second event for a waiting lead attaches to its job.
        let (status, again) = app
            .send(&webhook_id(), &lead("crm-h1", "held-one", "acc_held"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(job_id(&again), first);
        assert_eq!(again["status"], "held");

        // Another account's job goes straight through, even at prefetch 1 and concurrency 1.
        let started = std::time::Instant::now();
        let (_, other) = app
            .send(&webhook_id(), &lead("crm-o", "other-one", "acc_free"))
            .await;
        app.wait_for_within(job_id(&other), Status::Sent, Duration::from_secs(6))
            .await;
        assert!(
            Utc::now() < reset,
            "the free account waited for the held one ({:?})",
            started.elapsed()
        );
        assert_eq!(
            connect_calls(&env, "acc_held").await,
            0,
            "the gate let a held job call the API"
        );

        // After the reset both held jobs go out, one invitation each, with no further 429.
        app.wait_for(first, Status::Sent).await;
        app.wait_for(second, Status::Sent).await;
        assert_eq!(env.invitations("acc_held", "held-one").await, 1);
        assert_eq!(env.invitations("acc_held", "held-two").await, 1);
        assert_eq!(env.rate_limited().await.0, 0);
        eventually(WAIT, "queued, held, sent written back", || async {
            env.callback_statuses(first) == ["queued", "held", "sent"]
        })
        .await;
        let held_callback = &env.callbacks_for(first)[1];
        assert!(held_callback["retryAt"].is_string(), "{held_callback}");
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn server_errors_are_retried_and_an_ambiguous_failure_is_checked_before_resending(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        // The API records the invitation and then fails: the retry must find it, not resend.
        env.sim_put("config", json!({"sendThenFailRate": 1.0}))
            .await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-5xx", "flaky-one", "acc_1"))
            .await;
        let id = job_id(&body);
        app.wait_for(id, Status::Retrying).await;
        env.sim_put("config", json!({"sendThenFailRate": 0.0}))
            .await;
        let job = app.wait_for(id, Status::Sent).await;
        assert_eq!(
            env.invitations("acc_1", "flaky-one").await,
            1,
            "a 5xx retry sent a second invitation"
        );
        let calls: Vec<&Value> = job
            .events("api_call")
            .into_iter()
            .map(|e| &e.detail["call"])
            .collect();
        assert_eq!(
            calls,
            [
                &json!("GET /account quota and status"),
                &json!("GET /relationship"),
                &json!("POST /connect"),
                &json!("GET /relationship")
            ],
            "{job:#?}"
        );
        eventually(WAIT, "queued, retrying, sent", || async {
            env.callback_statuses(id) == ["queued", "retrying", "sent"]
        })
        .await;
        let retrying = &env.callbacks_for(id)[1];
        assert!(
            retrying["retryAt"].is_string() && retrying["error"].is_string(),
            "{retrying}"
        );

        // Plain 500s that never sent anything: retried, then the job fails after max_attempts.
        env.sim_put("config", json!({"errorRate": 1.0})).await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-down", "never-one", "acc_1"))
            .await;
        let id = job_id(&body);
        let failed = app.wait_for(id, Status::Failed).await;
        assert_eq!(failed.attempts, 3);
        assert!(
            failed.error.as_deref().unwrap().contains("gave up after 3"),
            "{failed:#?}"
        );
        assert_eq!(env.invitations("acc_1", "never-one").await, 0);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn timeouts_are_retried_without_a_second_invitation(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        // Longer than connectsafely.timeout (2s): the worker gives up on the call.
        env.sim_put("config", json!({"timeoutRate": 1.0, "timeoutMs": 4000}))
            .await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-slow", "slow-one", "acc_1"))
            .await;
        let id = job_id(&body);
        let retrying = app.wait_for(id, Status::Retrying).await;
        assert!(
            retrying.error.as_deref().unwrap().contains("timeout"),
            "{retrying:#?}"
        );
        env.sim_put("config", json!({"timeoutRate": 0.0})).await;
        app.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_1", "slow-one").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_short_api_429_is_retried_after_retry_after(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        env.sim_put(
            "config",
            json!({"perMinuteLimits": true, "accountWritesPerMinute": 1}),
        )
        .await;
        let mut app = env.start(env.config()).await;
        let (_, first) = app
            .send(&webhook_id(), &lead("crm-m1", "minute-one", "acc_1"))
            .await;
        app.wait_for(job_id(&first), Status::Sent).await;
        let (_, second) = app
            .send(&webhook_id(), &lead("crm-m2", "minute-two", "acc_1"))
            .await;
        let job = app.wait_for(job_id(&second), Status::Retrying).await;
        let retry_at: chrono::DateTime<Utc> = job.retry_at.unwrap();
        // The window frees up about a minute after the first send; never retry before that.
        assert!(
            retry_at > Utc::now() + chrono::Duration::seconds(30),
            "{job:#?}"
        );
        assert!(job.hold_until.is_none());
        assert!(
            job.error.as_deref().unwrap().starts_with("rate limited"),
            "{job:#?}"
        );
        assert_eq!(env.rate_limited().await.0, 0);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_refused_key_pauses_everyone_and_recovers_by_itself(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        env.sim_put("config", json!({"apiKeys": ["another-key"]}))
            .await;
        let mut app = env.start(env.config()).await;
        let (_, first) = app
            .send(&webhook_id(), &lead("crm-k1", "key-one", "acc_1"))
            .await;
        let first = job_id(&first);
        let paused = app.wait_for(first, Status::Paused).await;
        assert!(
            paused.error.as_deref().unwrap().contains("API key"),
            "{paused:#?}"
        );
        let (_, second) = app
            .send(&webhook_id(), &lead("crm-k2", "key-two", "acc_2"))
            .await;
        let second = job_id(&second);
        app.wait_for(second, Status::Paused).await;
        let key = app.accounts().await.api_key;
        assert!(key.paused, "{key:?}");
        // Paused jobs were not failed, and the second never reached the API.
        assert_eq!(connect_calls(&env, "acc_2").await, 0);

        env.sim_put("config", json!({"apiKeys": [API_KEY]})).await;
        app.wait_for(first, Status::Sent).await;
        app.wait_for(second, Status::Sent).await;
        eventually(WAIT, "paused then sent written back", || async {
            env.callback_statuses(first) == ["queued", "paused", "sent"]
        })
        .await;
        assert!(!app.accounts().await.api_key.paused);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn writebacks_retry_on_their_own_and_park_on_a_permanent_refusal(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        // queued: two 503s then accepted; the connect is not repeated meanwhile.
        env.callback.answers.lock().unwrap().extend([503, 503]);
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-w1", "writeback-one", "acc_1"))
            .await;
        let id = job_id(&body);
        app.wait_for(id, Status::Sent).await;
        eventually(WAIT, "both changes delivered in order", || async {
            env.callback_statuses(id) == ["queued", "sent"]
        })
        .await;
        assert_eq!(env.invitations("acc_1", "writeback-one").await, 1);
        let job = app.job(id).await;
        let first = &job.writebacks[0];
        assert_eq!(first.state, "delivered");
        assert_eq!(first.attempts, 3, "{job:#?}");
        // The receiver can drop repeats: one webhook-id per change.
        let ids: Vec<String> = env
            .callback
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.webhook_id.clone())
            .collect();
        assert!(
            ids.contains(&format!("{id}-1")) && ids.contains(&format!("{id}-2")),
            "{ids:?}"
        );

        // A permanent 4xx parks the writeback with the reason; the job itself is unaffected.
        env.callback.answers.lock().unwrap().extend([410]);
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-w2", "writeback-two", "acc_1"))
            .await;
        let id = job_id(&body);
        app.wait_for(id, Status::Sent).await;
        // Once the later change is delivered the parked one can never go: superseded, with
        // its reason kept.
        eventually(
            WAIT,
            "queued parked, then superseded, with its reason",
            || async {
                let job = app.job(id).await;
                let first = &job.writebacks[0];
                first.state == "superseded"
                    && first
                        .last_error
                        .as_deref()
                        .unwrap_or_default()
                        .contains("410")
            },
        )
        .await;
        assert_eq!(
            env.callback_statuses(id),
            ["sent"],
            "the later change delivered"
        );
        assert_eq!(env.invitations("acc_1", "writeback-two").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_every_problem_and_passes_a_valid_file() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let config_file = env.write_config(&env.config_text());
    // check-config names every problem, from the file and the environment alike.
    let broken = env.write_config("[broker]\nprefetch = 0\n[connectsafely]\ntimeout = \"soon\"\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["check-config", "--config"])
        .arg(&broken)
        .env("LEADLINK_RETRY__JITTER", "7.5")
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    let problems = String::from_utf8_lossy(&output.stderr);
    for needle in ["connectsafely.timeout", "retry.jitter"] {
        assert!(
            problems.contains(needle),
            "{needle} not named in:\n{problems}"
        );
    }
    let valid = std::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["check-config", "--config"])
        .arg(&config_file)
        .output()?;
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );

    env.cleanup().await;
    Ok(())
}

both_backends! {
    async fn operators_retry_failed_jobs_and_cancel_waiting_ones_from_the_cli(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let config_file = env.write_config(&env.config_text());
        let cli = |args: &[&str]| {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
                .args(args)
                .arg("--config")
                .arg(&config_file)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        };

        env.sim_put("config", json!({"errorRate": 1.0})).await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-op1", "operator-one", "acc_1"))
            .await;
        let failed = job_id(&body);
        app.wait_for(failed, Status::Failed).await;
        let listed = cli(&["jobs", "list", "--record", "crm-op1", "--status", "failed"]);
        assert_eq!(listed["jobs"][0]["id"], failed.to_string());
        env.sim_put("config", json!({"errorRate": 0.0})).await;
        let retried = cli(&["jobs", "retry", &failed.to_string()]);
        assert_eq!(retried["status"], "queued");
        app.wait_for(failed, Status::Sent).await;
        assert_eq!(env.invitations("acc_1", "operator-one").await, 1);

        let reset = Utc::now() + chrono::Duration::seconds(60);
        env.sim_put(
            "accounts/acc_wait",
            json!({"limit": 0, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-op2", "operator-two", "acc_wait"))
            .await;
        let waiting = job_id(&body);
        app.wait_for(waiting, Status::Held).await;
        // A job that has ended cannot be cancelled: that would free the lead for a second invite.
        let refused = std::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
            .args(["jobs", "cancel", &failed.to_string(), "--config"])
            .arg(&config_file)
            .output()?;
        assert!(!refused.status.success());
        assert_eq!(app.job(failed).await.status, Status::Sent);
        let cancelled = cli(&["jobs", "cancel", &waiting.to_string()]);
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["error"], "cancelled by operator");
        let shown = cli(&["jobs", "show", &waiting.to_string()]);
        assert_eq!(shown["status"], "cancelled");
        assert!(
            shown["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["detail"]["by"] == "operator")
        );
        eventually(WAIT, "the cancel written back", || async {
            env.callback_statuses(waiting).last().map(String::as_str) == Some("cancelled")
        })
        .await;
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

/// ConnectSafely as a fake that knows only the accounts in `known` (wiremock: the sim
/// knows every account it is asked about).
async fn connectsafely_knowing(server: &wiremock::MockServer, known: &[&str]) {
    use wiremock::matchers::{method, path, path_regex, query_param};
    use wiremock::{Mock, ResponseTemplate};
    server.reset().await;
    let reset = Utc::now() + chrono::Duration::days(3);
    for account in known {
        Mock::given(method("GET"))
            .and(path(format!("/account/{account}/quota")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"quotas": [{
                "feature": "CONNECT", "window": "weekly", "used": 0, "limit": 90,
                "remaining": 90, "resetAt": reset.to_rfc3339()}]})))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/account/status"))
            .and(query_param("accountId", *account))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"status": "AVAILABLE", "enabled": true})),
            )
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex("^/account/"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"success": false, "error": "Account not found"})),
        )
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/relationship/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"connected": false, "invitationSent": false, "status": "NOT_CONNECTED"}),
        ))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/connect"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": true,
            "message": "Connection request sent successfully",
            "profileUrn": "urn:li:fsd_profile:ACoAAFake"})),
        )
        .mount(server)
        .await;
}

async fn quota_reads(server: &wiremock::MockServer, account: &str) -> usize {
    let wanted = format!("/account/{account}/quota");
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

both_backends! {
    /// Issue 9, scenario 4: an account ConnectSafely does not know is learnt once for the
    /// account, its jobs are paused naming it, other accounts send, and the jobs resume by
    /// themselves once the account appears.
    async fn an_unknown_account_pauses_its_jobs_once_and_they_resume_when_it_appears(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let api = wiremock::MockServer::start().await;
        connectsafely_knowing(&api, &["acc_ok"]).await;
        let text = env.config_text().replace(&env.sim_url, &api.uri());
        let mut app = env.start(leadlink::config::Config::from_toml(&text)?).await;
        let mut typo = Vec::new();
        for n in 0..5 {
            let (_, body) = app
                .send(
                    &webhook_id(),
                    &lead(&format!("crm-t{n}"), &format!("typo-{n}"), "acc_typo"),
                )
                .await;
            typo.push(job_id(&body));
        }
        let mut ok = Vec::new();
        for n in 0..2 {
            let (_, body) = app
                .send(
                    &webhook_id(),
                    &lead(&format!("crm-o{n}"), &format!("ok-{n}"), "acc_ok"),
                )
                .await;
            ok.push(job_id(&body));
        }
        for &id in &ok {
            app.wait_for(id, Status::Sent).await;
        }
        for &id in &typo {
            let job = app.wait_for(id, Status::Paused).await;
            assert!(
                job.error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("acc_typo"),
                "{job:#?}"
            );
        }
        // Learnt for the account, not per job: about one read per `quota_refresh` (2 s), not
        // one per job and try.
        let started = std::time::Instant::now();
        let before = quota_reads(&api, "acc_typo").await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let during = quota_reads(&api, "acc_typo").await - before;
        assert!(
            during <= 4,
            "{during} quota reads of the unknown account in {:?}",
            started.elapsed()
        );
        // The account is added to the key: its jobs go out by themselves.
        connectsafely_knowing(&api, &["acc_ok", "acc_typo"]).await;
        for &id in &typo {
            app.wait_for(id, Status::Sent).await;
        }
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

/// Issue 9, scenario 4: without an account in the event and no default, the event is
/// refused, naming the field, instead of calling `/account//quota`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_an_account_and_no_default_is_refused() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.connectsafely.default_account_id = None;
    let mut app = env.start(config).await;
    let mut event = lead("crm-noacc", "no-account", "acc_x");
    event["data"].as_object_mut().unwrap().remove("accountId");
    let (status, body) = app.send(&webhook_id(), &event).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("data.accountId"), "{body}");
    let jobs = app.jobs("").await;
    assert!(jobs.is_empty(), "{jobs:#?}");
    app.stop().await;
    env.cleanup().await;
    Ok(())
}
