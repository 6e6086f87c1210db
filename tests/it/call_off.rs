//! The CRM calls a lead off (issue 13, item 4): `lead.disqualified` and HubSpot's
//! `withdraw_triggers` make the record's jobs that have sent nothing `cancelled`; a record
//! with nothing pending changes nothing; an invitation already out is left as it is.

use crate::harness::*;
use chrono::{TimeDelta, Utc};
use leadlink::job::Status;
use serde_json::{Value, json};

fn disqualified(data: Value) -> Value {
    json!({"type": "lead.disqualified", "data": data})
}

both_backends! {
    async fn a_disqualified_lead_that_waits_is_cancelled_and_one_already_invited_is_left(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        // acc_spent's week is spent: its job waits, held. acc_open sends at once.
        let reset = Utc::now() + TimeDelta::days(2);
        env.sim_put(
            "accounts/acc_spent",
            json!({"limit": 5, "used": 5, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        let app = env.start(env.config()).await;
        let (_, body) = app.send(&webhook_id(), &lead("dq-1", "dq-waiting", "acc_spent")).await;
        let waiting = job_id(&body);
        app.wait_for(waiting, Status::Held).await;
        let (_, body) = app.send(&webhook_id(), &lead("dq-2", "dq-invited", "acc_open")).await;
        let invited = job_id(&body);
        app.wait_for(invited, Status::Sent).await;

        // Another account's lead of the same record is not named: only acc_spent's goes.
        let (status, answer) = app
            .send(&webhook_id(), &disqualified(json!({"recordId": "dq-1", "accountId": "acc_other"})))
            .await;
        assert_eq!((status, &answer["cancelled"]), (200, &json!([])), "{answer}");
        assert_eq!(app.job(waiting).await.status, Status::Held);

        let (status, answer) = app
            .send(&webhook_id(), &disqualified(json!({"recordId": "dq-1"})))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["cancelled"], json!([waiting.to_string()]), "{answer}");
        let job = app.job(waiting).await;
        assert_eq!(job.status, Status::Cancelled, "{job:#?}");
        eventually(WAIT, "the cancel written back", || async {
            env.callback_statuses(waiting).last().map(String::as_str) == Some("cancelled")
        })
        .await;

        // An invitation already out is not cancelled: the answer says so, the job stays sent.
        let (status, answer) = app
            .send(&webhook_id(), &disqualified(json!({"recordId": "dq-2", "linkedinUrl": profile_url("dq-invited")})))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["invitationOut"], json!([invited.to_string()]), "{answer}");
        assert!(answer["note"].as_str().is_some_and(|n| n.contains("not implemented")), "{answer}");
        assert_eq!(app.job(invited).await.status, Status::Sent);

        // A record with nothing pending: acknowledged, nothing changes.
        let (status, answer) = app
            .send(&webhook_id(), &disqualified(json!({"recordId": "dq-unknown"})))
            .await;
        assert_eq!((status, &answer["cancelled"], &answer["invitationOut"]), (200, &json!([]), &json!([])));
        // A bad one is refused and changes nothing.
        let (status, answer) = app
            .send(&webhook_id(), &disqualified(json!({"recordId": " "})))
            .await;
        assert_eq!((status, answer["field"].as_str()), (400, Some("data.recordId")), "{answer}");

        // A job whose send may have gone out (it got no answer) is left to its relationship
        // check, which here finds nothing went out: then it ends cancelled, having sent nothing.
        let (_, body) = app.send(&webhook_id(), &lead("dq-3", "dq-doubt", "acc_spent")).await;
        let doubtful = job_id(&body);
        app.wait_for(doubtful, Status::Held).await;
        env.execute_at("UPDATE jobs SET send_started_at = $1 WHERE record_id = 'dq-3'", Utc::now())
            .await;
        let (status, answer) = app
            .send(&webhook_id(), &disqualified(json!({"recordId": "dq-3"})))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["invitationOut"], json!([doubtful.to_string()]), "{answer}");
        assert_eq!(app.job(doubtful).await.status, Status::Held);
        let now = Utc::now();
        env.execute_at("UPDATE jobs SET due_at = $1 WHERE record_id = 'dq-3'", now).await;
        env.execute_at(
            &format!("UPDATE outbox SET due_at = $1 WHERE topic = 'connect' AND ref = '{doubtful}'"),
            now,
        )
        .await;
        let job = app.wait_for(doubtful, Status::Cancelled).await;
        assert!(job.error.as_deref().is_some_and(|e| e.contains("nothing had gone out")), "{job:#?}");

        // The cancelled job let its lead go: qualifying it again is a new job.
        let (status, body) = app.send(&webhook_id(), &lead("dq-1", "dq-waiting", "acc_spent")).await;
        assert_eq!(status, 202, "{body}");
        assert_ne!(job_id(&body), waiting);
        assert_eq!(env.total_invitations().await, 1);
        env.cleanup().await;
        Ok(())
    }
}
