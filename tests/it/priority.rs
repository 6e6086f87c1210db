//! Priority (issue 14): when an account has more waiting jobs than it can send, the highest
//! priority goes first, then the oldest; a priority that changes while the job waits
//! updates it; an import's `priority` column is the job's.

use crate::harness::*;
use chrono::{TimeDelta, Utc};
use leadlink::job::Status;
use serde_json::{Value, json};
use uuid::Uuid;

fn prioritised(record: &str, profile: &str, account: &str, priority: i32) -> Value {
    let mut event = lead(record, profile, account);
    event["data"]["priority"] = json!(priority);
    event
}

both_backends! {
    /// Five leads wait on an account whose week is spent; one of them is raised above the
    /// others by a later event. After the reset the week has room for two: the two highest
    /// go, highest first, and the other three stay held.
    async fn after_the_reset_the_two_highest_priorities_go_first(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let reset = Utc::now() + TimeDelta::seconds(8);
        env.sim_put(
            "accounts/acc_prio",
            json!({"limit": 2, "used": 2, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        let app = env.start(env.config()).await;
        let mut ids: Vec<(i32, Uuid)> = Vec::new();
        for (n, priority) in [1, 5, 0, 9, 3].into_iter().enumerate() {
            let (status, body) = app
                .send(&webhook_id(), &prioritised(&format!("pr-{n}"), &format!("prio-{n}"), "acc_prio", priority))
                .await;
            assert_eq!(status, 202, "{body}");
            ids.push((priority, job_id(&body)));
        }
        for (_, id) in &ids {
            app.wait_for(*id, Status::Held).await;
        }
        // The lead of priority 0 is qualified again with priority 20: the same job, raised.
        let raised = ids[2].1;
        let (status, body) = app
            .send(&webhook_id(), &prioritised("pr-2", "prio-2", "acc_prio", 20))
            .await;
        assert_eq!((status, job_id(&body)), (200, raised), "{body}");
        let job = app.job(raised).await;
        assert_eq!(job.priority, 20, "{job:#?}");
        assert!(job.history.iter().any(|e| e.kind == "priority"), "{job:#?}");
        // An event without a priority leaves the job's alone.
        app.send(&webhook_id(), &lead("pr-3", "prio-3", "acc_prio")).await;
        assert_eq!(app.job(ids[3].1).await.priority, 9);

        let first = app.wait_for_within(raised, Status::Sent, WAIT + WAIT).await;
        let second = app.wait_for(ids[3].1, Status::Sent).await;
        assert!(first.changed_at <= second.changed_at, "{first:#?} {second:#?}");
        // The other three, once the two sends have ended, wait for the next week.
        for (priority, id) in [ids[0], ids[1], ids[4]] {
            eventually(WAIT, "held for the next week", || async {
                let job = app.job(id).await;
                job.status == Status::Held
                    && job.retry_at.is_some_and(|at| at > reset + TimeDelta::days(6))
            })
            .await;
            assert_eq!(app.job(id).await.priority, priority);
        }
        assert_eq!(env.total_invitations().await, 2);
        assert_eq!(env.rate_limited().await, (0, 0));
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// With pacing, each waiting job's ETA is its turn in priority order: the higher job
    /// created later is projected at the first turn, and the older lower ones are pushed back
    /// a turn each.
    async fn projected_turns_follow_the_priority_order(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let text = format!(
            r#"{}
            [accounts.acc_eta]
            pacing = true
            working_hours = "00:00-24:00"
            working_days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            min_spacing = "1h"
            jitter = "0s"
            "#,
            env.config_text()
        );
        let app = env.start(leadlink::config::Config::from_toml(&text)?).await;
        // The first is sent at once and starts the spacing; the rest wait their turns.
        let mut ids = Vec::new();
        for (n, priority) in [0, 0, 0, 7].into_iter().enumerate() {
            let (_, body) = app
                .send(&webhook_id(), &prioritised(&format!("eta-{n}"), &format!("eta-{n}"), "acc_eta", priority))
                .await;
            ids.push(job_id(&body));
            if n == 0 {
                app.wait_for(ids[0], Status::Sent).await;
            }
        }
        for &id in &ids[1..] {
            app.wait_for(id, Status::Scheduled).await;
        }
        // ids[3] is the priority-7 job: the first turn, then the two older ones in order.
        eventually(WAIT, "every ETA in priority order", || async {
            let mut eta = Vec::new();
            for &id in &ids[1..] {
                eta.push(app.job(id).await.retry_at.unwrap());
            }
            eta[2] < eta[0] && eta[0] < eta[1]
        })
        .await;
        env.cleanup().await;
        Ok(())
    }
}
