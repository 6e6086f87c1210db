//! Account safety with the real broker and database: weekly quota across worker processes,
//! pacing, a disabled account, and a worker killed while it holds an account.

use crate::harness::process::*;
use crate::harness::*;
use chrono::{DateTime, Datelike, Duration as TimeDelta, Utc};
use leadlink::config::Config;
use leadlink::job::Status;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_keep_a_spent_week_and_another_account_keeps_sending()
-> anyhow::Result<()> {
    let env = TestEnv::new().await;
    // Another tool already used 3 of this account's 8 requests before leadlink started.
    let reset = Utc::now() + TimeDelta::hours(1);
    env.sim_put(
        "accounts/acc_week",
        json!({"limit": 8, "used": 3, "weeklyReset": reset.to_rfc3339()}),
    )
    .await;
    env.sim_put("config", json!({"latencyMs": 30})).await;
    let config_text = env.config_text();
    let ingest = env
        .start_role(Config::from_toml(&config_text)?, INGEST_ONLY)
        .await;
    let mut workers = [
        spawn_binary(&env, "worker", &config_text, &[]),
        spawn_binary(&env, "worker", &config_text, &[]),
    ];
    let events = (0..10)
        .map(|n| lead(&format!("crm-w{n}"), &format!("week-{n}"), "acc_week"))
        .chain((0..4).map(|n| lead(&format!("crm-f{n}"), &format!("free-{n}"), "acc_free")));
    let answers = futures_util::future::join_all(events.map(|event| {
        let ingest = &ingest;
        async move { ingest.send(&webhook_id(), &event).await }
    }))
    .await;
    assert!(
        answers.iter().all(|(status, _)| *status == 202),
        "{answers:?}"
    );

    eventually(WAIT, "the free account sends all four", || async {
        ingest.jobs("account=acc_free&status=sent").await.len() == 4
    })
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    while !(ingest.jobs("account=acc_week&status=sent").await.len() == 5
        && ingest.jobs("account=acc_week&status=held").await.len() == 5)
    {
        if std::time::Instant::now() > deadline {
            let jobs = ingest.jobs("account=acc_week").await;
            let view = ingest.account("acc_week").await;
            panic!("not 5 sent and 5 held: {view:#?}\n{jobs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.rate_limited().await, (0, 0), "leadlink caused a 429");
    let invitations = env.sim_get("invitations").await;
    let per_lead = invitations["accounts"]["acc_week"].as_object().unwrap();
    assert_eq!(per_lead.len(), 5, "{invitations}");
    assert!(per_lead.values().all(|n| n == 1), "{invitations}");

    // The account view: the week spent, today's sends, the next send at the reset, the
    // backlog; and the CLI lists the held jobs.
    let view = ingest
        .account("acc_week")
        .await
        .expect("acc_week is listed");
    assert_eq!(view.remaining, Some(0), "{view:?}");
    assert_eq!(view.sends_today, 5, "{view:?}");
    assert_eq!(view.backlog, 5, "{view:?}");
    let next = view.next_send_at.expect("a next send");
    assert!((next - reset).num_seconds().abs() <= 1, "{view:?}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["jobs", "list", "--account", "acc_week", "--status", "held"])
        .arg("--config")
        .arg(env.write_config(&config_text))
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let listed: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 5, "{listed}");

    for worker in &mut workers {
        worker.kill()?;
        worker.wait()?;
    }
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_it_holds_an_account_frees_it_within_the_lease() -> anyhow::Result<()>
{
    let env = TestEnv::new().await;
    // The simulator records the invitation, then answers only after 3 s.
    env.sim_put("config", json!({"latencyMs": 3000})).await;
    let config_text = env.config_text();
    let config = Config::from_toml(&config_text)?;
    let lease = config.worker.lease;
    let ingest = env.start_role(config.clone(), INGEST_ONLY).await;
    let mut worker = spawn_binary(&env, "worker", &config_text, &[]);
    let (_, first) = ingest
        .send(&webhook_id(), &lead("crm-k1", "kill-one", "acc_k"))
        .await;
    let first = job_id(&first);
    eventually(WAIT, "the first invitation is out", || async {
        env.total_invitations().await == 1
    })
    .await;
    let view = ingest.account("acc_k").await;
    assert_eq!(view.and_then(|v| v.sending_job), Some(first));
    worker.kill()?;
    worker.wait()?;
    let killed_at = std::time::Instant::now();
    env.sim_put("config", json!({"latencyMs": 0})).await;

    let (_, second) = ingest
        .send(&webhook_id(), &lead("crm-k2", "kill-two", "acc_k"))
        .await;
    let second = job_id(&second);
    let mut replacement = env.start_role(config, WORKER_ONLY).await;
    ingest.wait_for(second, Status::Sent).await;
    let freed_after = killed_at.elapsed();
    assert!(
        freed_after < lease + Duration::from_secs(8),
        "the account stayed taken for {freed_after:?} (lease {lease:?})"
    );
    // The dead worker's job is settled by the relationship check, not sent again.
    ingest.wait_for(first, Status::Sent).await;
    assert_eq!(env.invitations("acc_k", "kill-one").await, 1);
    assert_eq!(env.invitations("acc_k", "kill-two").await, 1);
    replacement.stop().await;
    env.cleanup().await;
    Ok(())
}

both_backends! {
    async fn an_account_the_api_reports_disabled_is_paused_until_it_recovers(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        env.sim_put("accounts/acc_off", json!({"enabled": false}))
            .await;
        let app = env.start(env.config()).await;
        let (_, body) = app
            .send(&webhook_id(), &lead("crm-off", "off-one", "acc_off"))
            .await;
        let id = job_id(&body);
        let paused = app.wait_for(id, Status::Paused).await;
        assert!(
            paused.error.as_deref().unwrap().contains("disabled"),
            "{paused:#?}"
        );
        assert_eq!(env.total_invitations().await, 0);
        // Paused, the job waits to be looked at again (quota_refresh, 2 s here); it does not spin.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let history = app.job(id).await.history.len();
        assert!(
            history < 12,
            "a paused job kept going round: {history} history entries"
        );
        // Another account is not affected.
        let (_, other) = app
            .send(&webhook_id(), &lead("crm-on", "on-one", "acc_on"))
            .await;
        app.wait_for(job_id(&other), Status::Sent).await;

        env.sim_put("accounts/acc_off", json!({"enabled": true}))
            .await;
        app.wait_for(id, Status::Sent).await;
        eventually(WAIT, "queued, paused, sent written back", || async {
            env.callback_statuses(id) == ["queued", "paused", "sent"]
        })
        .await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn pacing_schedules_outside_working_days_spaces_sends_and_keeps_the_daily_cap(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let now = Utc::now();
        let day_after_tomorrow = (now + TimeDelta::days(2)).weekday();
        let window_opens = (now + TimeDelta::days(2))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let text = format!(
            r#"{}
            [accounts.acc_later]
            pacing = true
            working_hours = "00:00-24:00"
            working_days = ["{day_after_tomorrow}"]
            jitter = "0s"
            [accounts.acc_spaced]
            pacing = true
            working_hours = "00:00-24:00"
            working_days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            min_spacing = "3s"
            jitter = "0s"
            daily_cap = 3
            "#,
            env.config_text()
        );
        let app = env.start(Config::from_toml(&text)?).await;

        // Outside the working days: scheduled for the window's opening, with no API call.
        let (_, later) = app
            .send(&webhook_id(), &lead("crm-later", "later-one", "acc_later"))
            .await;
        let later = job_id(&later);
        let scheduled = app.wait_for(later, Status::Scheduled).await;
        let retry_at: DateTime<Utc> = scheduled.retry_at.unwrap();
        assert_eq!(retry_at, window_opens, "{scheduled:#?}");

        // Four leads on an account spaced 3 s apart with a daily cap of 3: three go out, each
        // at least 3 s after the one before, oldest first; the fourth waits for tomorrow.
        let mut ids = Vec::new();
        for n in 0..4 {
            let (_, body) = app
                .send(
                    &webhook_id(),
                    &lead(&format!("crm-s{n}"), &format!("spaced-{n}"), "acc_spaced"),
                )
                .await;
            ids.push(job_id(&body));
        }
        let mut sent_at = Vec::new();
        for &id in &ids[..3] {
            let job = app.wait_for(id, Status::Sent).await;
            sent_at.push(job.changed_at);
        }
        // Spacing runs between the gate's decisions; `changedAt` is the outcome's commit, a
        // call and a commit later, which a loaded machine delays by a few hundred ms either way.
        for pair in sent_at.windows(2) {
            assert!(
                pair[1] - pair[0] >= TimeDelta::milliseconds(2500),
                "sends closer than the spacing, or out of order: {sent_at:?}"
            );
        }
        let capped = app.wait_for(ids[3], Status::Scheduled).await;
        let tomorrow = (Utc::now() + TimeDelta::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let retry_at: DateTime<Utc> = capped.retry_at.unwrap();
        assert_eq!(retry_at, tomorrow, "{capped:#?}");
        assert_eq!(env.total_invitations().await, 3);
        assert_eq!(env.rate_limited().await, (0, 0));
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// Issue 9, scenario 12: a job that waits for a spent week says so: `held` with its
    /// `retryAt`, written back, not `queued`; then it goes out after the reset.
    async fn jobs_waiting_for_a_spent_week_are_held_with_their_eta_and_written_back(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let reset = Utc::now() + TimeDelta::seconds(12);
        env.sim_put(
            "accounts/acc_three",
            json!({"limit": 3, "used": 0, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        let app = env.start(env.config()).await;
        let mut ids = Vec::new();
        for n in 0..6 {
            let (status, body) = app
                .send(
                    &webhook_id(),
                    &lead(
                        &format!("crm-3w{n}"),
                        &format!("three-week-{n}"),
                        "acc_three",
                    ),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            ids.push(job_id(&body));
        }
        eventually(WAIT, "three sent and three held", || async {
            app.jobs("account=acc_three&status=sent").await.len() == 3
                && app.jobs("account=acc_three&status=held").await.len() == 3
        })
        .await;
        for &id in &ids {
            let job = app.job(id).await;
            if job.status == Status::Held {
                let retry_at = job.retry_at.unwrap();
                assert!(retry_at >= reset - TimeDelta::milliseconds(1), "{job:#?}");
                // The CRM heard it, with the ETA.
                eventually(WAIT, "the held state written back", || async {
                    env.callbacks_for(id)
                        .iter()
                        .any(|c| c["status"] == "held" && !c["retryAt"].is_null())
                })
                .await;
            }
        }
        // After the reset the held ones go out, each once.
        for &id in &ids {
            app.wait_for_within(id, Status::Sent, WAIT + WAIT).await;
        }
        assert_eq!(env.rate_limited().await, (0, 0), "leadlink caused a 429");
        assert_eq!(env.total_invitations().await, 6);
        env.cleanup().await;
        Ok(())
    }
}
