//! Several workers on one broker and database: each lead is still invited once.

use crate::harness::*;
use leadlink::job::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_across_workers_invite_each_lead_once() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    // A little latency keeps several sends in flight at once across the workers.
    env.sim_put("config", serde_json::json!({"latencyMs": 50}))
        .await;
    let mut ingest = env.start_role(env.config(), INGEST_ONLY).await;
    let mut first = env.start_role(env.config(), WORKER_ONLY).await;
    let mut second = env.start_role(env.config(), WORKER_ONLY).await;

    let leads = 20;
    let sends = (0..leads).flat_map(|n| {
        let event = lead(&format!("crm-many-{n}"), &format!("many-{n}"), "acc_1");
        let repeated = webhook_id();
        // The same delivery twice, and the same lead under a second delivery id.
        [
            (repeated.clone(), event.clone()),
            (repeated, event.clone()),
            (webhook_id(), event),
        ]
    });
    let answers = futures_util::future::join_all(sends.map(|(id, event)| {
        let ingest = &ingest;
        async move { ingest.send(&id, &event).await }
    }))
    .await;
    let mut job_ids: Vec<_> = answers
        .iter()
        .map(|(status, body)| {
            assert!(*status == 202 || *status == 200, "{status} {body}");
            job_id(body)
        })
        .collect();
    job_ids.sort();
    job_ids.dedup();
    assert_eq!(job_ids.len(), leads, "one job per lead");
    for &id in &job_ids {
        ingest.wait_for(id, Status::Sent).await;
    }
    for n in 0..leads {
        assert_eq!(
            env.invitations("acc_1", &format!("many-{n}")).await,
            1,
            "many-{n}"
        );
    }
    assert_eq!(env.total_invitations().await, leads as u64);
    first.stop().await;
    second.stop().await;
    ingest.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_never_spend_more_than_the_headers_announced() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let reset = chrono::Utc::now() + chrono::Duration::hours(1);
    env.sim_put(
        "accounts/acc_q",
        serde_json::json!({"limit": 3, "used": 0, "weeklyReset": reset.to_rfc3339()}),
    )
    .await;
    env.sim_put("config", serde_json::json!({"latencyMs": 100}))
        .await;
    let mut ingest = env.start_role(env.config(), INGEST_ONLY).await;
    let mut first = env.start_role(env.config(), WORKER_ONLY).await;
    let mut second = env.start_role(env.config(), WORKER_ONLY).await;

    // One send tells leadlink where the week stands (2 of 3 left) ...
    let (_, body) = ingest
        .send(&webhook_id(), &lead("crm-q0", "quota-0", "acc_q"))
        .await;
    ingest.wait_for(job_id(&body), Status::Sent).await;
    // A send the API refuses outright does not count against the week ...
    let (_, body) = ingest
        .send(&webhook_id(), &lead("crm-q404", "unknown-q", "acc_q"))
        .await;
    ingest
        .wait_for(job_id(&body), Status::ProfileNotFound)
        .await;
    // ... then six more arrive at once, across two workers.
    let answers = futures_util::future::join_all((1..=6).map(|n| {
        let ingest = &ingest;
        async move {
            ingest
                .send(
                    &webhook_id(),
                    &lead(&format!("crm-q{n}"), &format!("quota-{n}"), "acc_q"),
                )
                .await
        }
    }))
    .await;
    let ids: Vec<_> = answers.iter().map(|(_, body)| job_id(body)).collect();
    let mut sent = 0;
    let mut held = 0;
    for &id in &ids {
        let settled = [Status::Sent, Status::Held];
        match ingest.wait_for_one_of(id, &settled, WAIT).await.status {
            Status::Sent => sent += 1,
            _ => held += 1,
        }
    }
    assert_eq!(
        (sent, held),
        (2, 4),
        "the week's remaining two, and the rest held"
    );
    assert_eq!(env.rate_limited().await.0, 0, "leadlink caused a 429 hold");
    first.stop().await;
    second.stop().await;
    ingest.stop().await;
    env.cleanup().await;
    Ok(())
}
