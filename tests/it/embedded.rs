//! The embedded mode's own rules: one process per SQLite file, the plumbing check-config
//! refuses, and a queue rebuilt from the store after kill -9 at any point.

use crate::harness::process::*;
use crate::harness::*;
use leadlink::job::Status;
use serde_json::json;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_file_is_refused_and_the_cli_still_reads_it()
-> anyhow::Result<()> {
    let env = TestEnv::embedded().await;
    let mut app = env.start(env.config()).await;
    let (_, body) = app
        .send(&webhook_id(), &lead("crm-one", "one-process", "acc_1"))
        .await;
    let id = job_id(&body);
    app.wait_for(id, Status::Sent).await;

    let path = env.write_config(&env.config_text());
    let second = Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .output()?;
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second serve started: {said}");
    assert!(
        said.contains("another leadlink process is using this SQLite store"),
        "{said}"
    );
    // The operator's commands read the running service's file.
    let listed = Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["jobs", "list", "--config"])
        .arg(&path)
        .output()?;
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id.to_string()));
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn check_config_refuses_sqlite_with_a_broker_and_postgres_without_one() -> anyhow::Result<()>
{
    let env = TestEnv::embedded().await;
    let check = |text: String| {
        let path = env.write_config(&text);
        let output = Command::new(env!("CARGO_BIN_EXE_leadlink"))
            .args(["check-config", "--config"])
            .arg(path)
            .output()
            .expect("check-config runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), said)
    };
    let embedded = env.config_text();
    let (ok, said) = check(embedded.clone());
    assert!(ok, "the embedded config is valid: {said}");
    let with_broker = embedded.replace("[broker]\n", &format!("[broker]\nurl = \"{AMQP}\"\n"));
    let (ok, said) = check(with_broker);
    assert!(
        !ok && said.contains("a sqlite: store serves one process"),
        "{said}"
    );
    let postgres = embedded.replace(&env.database_url, &format!("{PG}/leadlink"));
    let (ok, said) = check(postgres);
    assert!(!ok && said.contains("needs broker.url"), "{said}");
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_after_an_in_memory_publish_rebuilds_its_queue() -> anyhow::Result<()> {
    let env = TestEnv::embedded().await;
    let delivery = webhook_id();
    let event = lead("crm-lost", "lost-message", "acc_1");
    lose_the_published_message(&env, &delivery, &event).await;

    let mut app = env.start(env.config()).await;
    let (status, again) = app.send(&delivery, &event).await;
    assert_eq!(status, 200, "{again}");
    app.wait_for(job_id(&again), Status::Sent).await;
    assert_eq!(env.invitations("acc_1", "lost-message").await, 1);
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

both_backends! {
    /// kill -9 of the one process in the middle of the POST: the restarted process checks the
    /// relationship instead of inviting again.
    async fn a_process_killed_mid_send_is_restarted_and_invites_once(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        env.sim_put("config", json!({"latencyMs": 3000})).await;
        let port = free_port();
        let mut child = spawn_binary(&env, "serve", &with_listen(&env.config_text(), port), &[]);
        let first = process_at(&env, port).await;
        let (_, body) = first
            .send(&webhook_id(), &lead("crm-mid", "mid-send", "acc_1"))
            .await;
        let id = job_id(&body);
        eventually(WAIT, "the invitation is out", || async {
            env.total_invitations().await == 1
        })
        .await;
        child.kill()?;
        child.wait()?;
        env.sim_put("config", json!({"latencyMs": 0})).await;

        let mut restarted = env.start(env.config()).await;
        let job = restarted.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_1", "mid-send").await, 1, "sent twice");
        let checked = job.found_the_invitation_out();
        assert!(checked, "no relationship check before the resend: {job:#?}");
        restarted.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_only_an_api_key_and_a_source_runs_embedded_in_its_directory()
-> anyhow::Result<()> {
    let env = TestEnv::embedded().await;
    let minimal = format!(
        "[connectsafely]\nbase_url = \"{}\"\napi_key = \"{API_KEY}\"\n\
         [sources.events]\nsecrets = [\"{EVENTS_SECRET}\"]\n",
        env.sim_url
    );
    let path = env.write_config(&minimal);
    let port = free_port();
    let work = env.dir.join("work");
    std::fs::create_dir_all(&work)?;
    let mut child = Process::from(
        Command::new(env!("CARGO_BIN_EXE_leadlink"))
            .args(["serve", "--config"])
            .arg(&path)
            .current_dir(&work)
            .env("LEADLINK_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            // Default pacing sends in working hours only, which would tie the test to the
            // time of day it runs at.
            .env("LEADLINK_ACCOUNTS__DEFAULTS__PACING", "false")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let app = process_at(&env, port).await;
    let ready = env.http.get(app.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 200, "{}", ready.text().await?);
    let status = app
        .try_send(&webhook_id(), &lead("crm-min", "minimal", "acc_default"))
        .await;
    assert_eq!(status, Some(202));
    eventually(WAIT, "the lead is invited", || async {
        env.invitations("acc_default", "minimal").await == 1
    })
    .await;
    assert!(
        work.join("leadlink.db").exists(),
        "the default store is ./leadlink.db"
    );
    assert!(work.join("leadlink.db.lock").exists());
    child.kill()?;
    child.wait()?;
    env.cleanup().await;
    Ok(())
}
