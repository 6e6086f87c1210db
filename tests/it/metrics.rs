//! `/metrics` of a real process: the recorder is global, so the counters of the other tests
//! in this binary must not mix in.

use crate::harness::process::{free_port, process_at, spawn_binary, with_listen};
use crate::harness::*;
use chrono::Utc;
use leadlink::job::Status;
use serde_json::json;

async fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of one series (`name{labels}` exactly as rendered), if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_and_its_send_are_counted_with_their_labels() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let port = free_port();
    let _child = spawn_binary(&env, "serve", &with_listen(&env.config_text(), port), &[]);
    let app = process_at(&env, port).await;
    let url = app.url("/metrics");

    let (status, body) = app
        .send(&webhook_id(), &lead("crm-m1", "metrics-lead", "acc_1"))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = job_id(&body);
    app.wait_for(id, Status::Sent).await;
    let (status, _) = app
        .send(&webhook_id(), &lead("crm-m1", "metrics-lead", "acc_1"))
        .await;
    assert_eq!(status, 200, "the same lead again is a duplicate");
    let ignored = json!({"type": "lead.updated", "data": {}});
    assert_eq!(app.send(&webhook_id(), &ignored).await.0, 200);
    let unsigned = serde_json::to_vec(&lead("crm-m2", "other", "acc_1"))?;
    let (status, _) = app
        .send_raw(&webhook_id(), Utc::now(), unsigned, CALLBACK_SECRET)
        .await;
    assert_eq!(status, 401, "signed with another secret");
    let (status, _) = app
        .send_raw(
            &webhook_id(),
            Utc::now(),
            b"{not json".to_vec(),
            EVENTS_SECRET,
        )
        .await;
    assert_eq!(status, 400);
    eventually(WAIT, "both changes written back", || async {
        env.callback_statuses(id) == ["queued", "sent"]
    })
    .await;

    // The store gauges are read at most every few seconds: wait for a reading after the send.
    eventually(WAIT, "the store gauges to see the job sent", || async {
        value(
            &scrape(&url, None).await.1,
            r#"leadlink_jobs{status="sent"}"#,
        ) == Some(1.0)
    })
    .await;
    let (status, text) = scrape(&url, None).await;
    assert_eq!(status, 200);
    for (series, expected) in [
        (
            r#"leadlink_webhooks_total{source="events",result="accepted"}"#,
            1.0,
        ),
        (
            r#"leadlink_webhooks_total{source="events",result="duplicate"}"#,
            1.0,
        ),
        (
            r#"leadlink_webhooks_total{source="events",result="ignored"}"#,
            1.0,
        ),
        (
            r#"leadlink_webhooks_total{source="events",result="unauthorized"}"#,
            1.0,
        ),
        (
            r#"leadlink_webhooks_total{source="events",result="rejected"}"#,
            1.0,
        ),
        (r#"leadlink_connect_requests_total{outcome="sent"}"#, 1.0),
        (
            r#"leadlink_api_calls_total{endpoint="connect",status="200"}"#,
            1.0,
        ),
        (
            r#"leadlink_api_call_duration_seconds_count{endpoint="connect"}"#,
            1.0,
        ),
        (
            r#"leadlink_writebacks_total{target="callback",result="delivered"}"#,
            2.0,
        ),
        (r#"leadlink_jobs{status="sent"}"#, 1.0),
        // Statuses without jobs are there too, at 0.
        (r#"leadlink_jobs{status="queued"}"#, 0.0),
        (r#"leadlink_jobs{status="failed"}"#, 0.0),
        (r#"leadlink_account_remaining{account="acc_1"}"#, 89.0),
        (r#"leadlink_account_held{account="acc_1"}"#, 0.0),
        ("leadlink_outbox_oldest_seconds", 0.0),
        ("leadlink_api_key_paused", 0.0),
        ("leadlink_writebacks_parked", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in:\n{text}");
    }
    assert!(
        value(
            &text,
            r#"leadlink_api_calls_total{endpoint="relationship",status="200"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        value(&text, "leadlink_publish_duration_seconds_count").is_some_and(|n| n >= 3.0),
        "a job and two writebacks published:\n{text}"
    );
    assert!(
        text.contains(r#"leadlink_api_call_duration_seconds_bucket{endpoint="connect",le="0.5"}"#),
        "histograms have buckets, not quantiles:\n{text}"
    );
    // No record id, profile or token reaches a label.
    for private in ["crm-m1", "metrics-lead", API_KEY] {
        assert!(!text.contains(private), "{private} in:\n{text}");
    }

    // A refused key stops every send: the deployment-wide gauges say so.
    env.sim_put("config", json!({"apiKeys": ["another-key"]}))
        .await;
    let (status, body) = app
        .send(&webhook_id(), &lead("crm-m4", "paused-lead", "acc_1"))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_for(job_id(&body), Status::Paused).await;
    eventually(WAIT, "the gauges to show the paused key", || async {
        let text = scrape(&url, None).await.1;
        value(&text, "leadlink_api_key_paused") == Some(1.0)
            && value(&text, r#"leadlink_jobs{status="paused"}"#) == Some(1.0)
    })
    .await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_address_want_the_token_and_can_leave_the_gauges_to_others()
-> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let (port, metrics_port) = (free_port(), free_port());
    let token_file = env.write_config("metrics-token\n");
    let config = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\ntoken_file = \"{}\"\nstore_gauges = false\n",
        with_listen(&env.config_text(), port),
        token_file.display()
    );
    let _child = spawn_binary(&env, "serve", &config, &[]);
    let app = process_at(&env, port).await;
    let (status, body) = app
        .send(&webhook_id(), &lead("crm-m3", "token-lead", "acc_1"))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_for(job_id(&body), Status::Sent).await;

    let (status, _) = scrape(&app.url("/metrics"), Some("metrics-token")).await;
    assert_eq!(
        status, 404,
        "not on server.listen once metrics.listen is set"
    );
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    assert_eq!(scrape(&url, None).await.0, 401);
    assert_eq!(scrape(&url, Some("metrics-tokem")).await.0, 401);
    let (status, text) = scrape(&url, Some("metrics-token")).await;
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &text,
            r#"leadlink_webhooks_total{source="events",result="accepted"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"leadlink_connect_requests_total{outcome="sent"}"#),
        Some(1.0)
    );
    // Another process computes the store gauges.
    assert!(!text.contains("leadlink_jobs{"), "{text}");
    assert!(!text.contains("leadlink_outbox_oldest_seconds "), "{text}");
    env.cleanup().await;
    Ok(())
}
