//! End to end against the real RabbitMQ and PostgreSQL, the simulator as ConnectSafely and a
//! local receiver as the callback: every response class and the identity rules.

use crate::harness::*;
use leadlink::job::Status;
use serde_json::json;

both_backends! {
    async fn qualified_lead_is_sent_once_and_written_back_in_order(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let (status, body) = app
            .send(&webhook_id(), &lead("crm-1", "John-Doe-123", "acc_1"))
            .await;
        assert_eq!(status, 202, "{body}");
        let id = job_id(&body);
        let job = app.wait_for(id, Status::Sent).await;
        let urn = job.profile_urn.as_deref().unwrap_or_default();
        assert!(urn.starts_with("urn:li:fsd_profile:"), "{job:#?}");
        assert_eq!(env.invitations("acc_1", "john-doe-123").await, 1);

        eventually(WAIT, "queued and sent written back", || async {
            env.callback_statuses(id) == ["queued", "sent"]
        })
        .await;
        let sent = env.callbacks_for(id).pop().unwrap();
        assert_eq!(sent["recordId"], "crm-1");
        assert_eq!(sent["accountId"], "acc_1");
        assert_eq!(sent["sequence"], 2);
        assert_eq!(sent["profileUrn"], urn);
        assert_eq!(sent["attempts"], 1);
        for key in ["holdUntil", "retryAt", "error", "changedAt"] {
            assert!(
                sent.as_object().unwrap().contains_key(key),
                "{key} missing: {sent}"
            );
        }
        assert_eq!(*env.callback.rejected_signatures.lock().unwrap(), 0);

        // The history shows the attempt and each status change.
        let kinds: Vec<&str> = job.history.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.starts_with(&["accepted"]), "{kinds:?}");
        assert!(kinds.contains(&"api_call"), "{kinds:?}");
        assert!(kinds.contains(&"status"), "{kinds:?}");

        // The rate-limit headers were recorded for the account, and its jobs can be looked up.
        let account = app.account("acc_1").await.expect("acc_1 is listed");
        assert_eq!(account.limit, Some(90), "{account:?}");
        assert_eq!(account.used, Some(1), "{account:?}");
        assert_eq!(account.remaining, Some(89), "{account:?}");
        assert!(account.reset_at.is_some(), "{account:?}");
        let by_account = app.jobs("account=acc_1&status=sent").await;
        assert_eq!(by_account[0].id, id);
        assert!(app.jobs("account=acc_2").await.is_empty());
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn repeated_webhook_id_and_repeated_lead_make_one_job_and_one_invitation(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let delivery = webhook_id();
        let event = lead("crm-2", "jane-roe", "acc_1");
        let (status, first) = app.send(&delivery, &event).await;
        assert_eq!(status, 202);
        let (status, again) = app.send(&delivery, &event).await;
        assert_eq!(status, 200);
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["jobId"], first["jobId"]);
        // The same lead under another delivery id and another URL form.
        let mut other_form = lead("crm-2b", "x", "acc_1");
        other_form["data"]["linkedinUrl"] = json!("linkedin.com/in/Jane-Roe?trk=abc");
        let (status, other) = app.send(&webhook_id(), &other_form).await;
        assert_eq!(status, 200, "{other}");
        assert_eq!(other["jobId"], first["jobId"]);

        let id = job_id(&first);
        app.wait_for(id, Status::Sent).await;
        // After it was sent, the lead gets the same outcome instead of a new invitation.
        let (status, later) = app.send(&webhook_id(), &event).await;
        assert_eq!(status, 200);
        assert_eq!(later["jobId"], first["jobId"]);
        assert_eq!(later["status"], "sent");
        // Another account is another lead.
        let (status, _) = app
            .send(&webhook_id(), &lead("crm-2", "jane-roe", "acc_2"))
            .await;
        assert_eq!(status, 202);
        eventually(WAIT, "acc_2 invitation", || async {
            env.invitations("acc_2", "jane-roe").await == 1
        })
        .await;
        assert_eq!(env.invitations("acc_1", "jane-roe").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn documented_answers_map_to_their_statuses(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let cases = [
            (
                "connected-amy",
                Status::AlreadyConnected,
                "already_connected",
            ),
            ("unknown-bob", Status::ProfileNotFound, "profile_not_found"),
        ];
        for (profile, expected, written) in cases {
            let (status, body) = app
                .send(&webhook_id(), &lead(profile, profile, "acc_1"))
                .await;
            assert_eq!(status, 202);
            let id = job_id(&body);
            app.wait_for(id, expected).await;
            eventually(WAIT, "final status written back", || async {
                env.callback_statuses(id).last().map(String::as_str) == Some(written)
            })
            .await;
        }
        assert_eq!(env.total_invitations().await, 0);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn unusable_leads_are_accepted_and_end_invalid_with_the_reason(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let mut company = lead("crm-co", "x", "acc_1");
        company["data"]["linkedinUrl"] = json!("https://www.linkedin.com/company/acme/");
        let mut long = lead("crm-long", "long-message", "acc_1");
        long["data"]["message"] = json!("é".repeat(301));
        for (event, needle) in [(company, "company"), (long, "300")] {
            let (status, body) = app.send(&webhook_id(), &event).await;
            assert_eq!(status, 202, "{body}");
            let id = job_id(&body);
            let job = app.wait_for(id, Status::Invalid).await;
            assert!(job.error.as_deref().unwrap().contains(needle), "{job:#?}");
            eventually(WAIT, "invalid written back", || async {
                env.callbacks_for(id).first().is_some_and(|c| {
                    c["status"] == "invalid" && c["error"].as_str().unwrap().contains(needle)
                })
            })
            .await;
        }
        // A 300-character message is fine and is sent as is.
        let mut exact = lead("crm-300", "exact-message", "acc_1");
        exact["data"]["message"] = json!("é".repeat(300));
        let (_, body) = app.send(&webhook_id(), &exact).await;
        app.wait_for(job_id(&body), Status::Sent).await;
        assert_eq!(env.total_invitations().await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn bad_input_gets_a_clear_4xx_and_changes_nothing(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let event = serde_json::to_vec(&lead("crm-bad", "someone", "acc_1"))?;
        let now = chrono::Utc::now();
        let other_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let (status, body) = app
            .send_raw(&webhook_id(), now, event.clone(), other_secret)
            .await;
        assert_eq!(status, 401, "{body}");
        let stale = now - chrono::Duration::minutes(6);
        let (status, _) = app
            .send_raw(&webhook_id(), stale, event.clone(), EVENTS_SECRET)
            .await;
        assert_eq!(status, 401);
        let future = now + chrono::Duration::minutes(6);
        let (status, _) = app
            .send_raw(&webhook_id(), future, event.clone(), EVENTS_SECRET)
            .await;
        assert_eq!(status, 401);
        let unsigned = app
            .http
            .post(app.url("/webhooks/events"))
            .body(event.clone())
            .send()
            .await?;
        assert_eq!(unsigned.status(), 401);

        let (status, body) = app
            .send_raw(&webhook_id(), now, b"{not json".to_vec(), EVENTS_SECRET)
            .await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
        let missing =
            json!({"type": "lead.qualified", "data": {"linkedinUrl": "https://linkedin.com/in/a"}});
        let (status, body) = app.send(&webhook_id(), &missing).await;
        assert_eq!(status, 400);
        assert_eq!(body["field"], "data.recordId", "{body}");
        let wrong_type =
            json!({"type": "lead.qualified", "data": {"recordId": 42, "linkedinUrl": "x"}});
        let (status, body) = app.send(&webhook_id(), &wrong_type).await;
        assert_eq!(status, 400);
        assert_eq!(body["field"], "data.recordId", "{body}");
        let no_profile = json!({"type": "lead.qualified", "data": {"recordId": "crm-bad"}});
        let (status, body) = app.send(&webhook_id(), &no_profile).await;
        assert_eq!(status, 400);
        assert_eq!(body["field"], "data.linkedinUrl", "{body}");
        assert_eq!(
            body["error"],
            "one of data.linkedinUrl, data.profileId or data.profileUrn is required"
        );
        let oversized = vec![b' '; 1024 * 1024 + 1];
        let (status, _) = app
            .send_raw(&webhook_id(), now, oversized, EVENTS_SECRET)
            .await;
        assert_eq!(status, 413);

        let (status, body) = app
            .send(&webhook_id(), &json!({"type": "lead.updated", "data": {}}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["ignored"], "lead.updated");
        let stats = app.stats().await;
        assert_eq!(
            stats.ignored_events.get("lead.updated"),
            Some(&1),
            "{stats:?}"
        );

        // `jobs` asserts the 200.
        assert!(app.jobs("record=crm-bad").await.is_empty());
        let jobs = app.jobs("").await;
        assert!(jobs.is_empty(), "bad input created a job: {jobs:#?}");
        let unauthorized = app.http.get(app.url("/admin/jobs")).send().await?;
        assert_eq!(unauthorized.status(), 401);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_are_real() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let mut app = env.start(env.config()).await;
    let healthz = app.http.get(app.url("/healthz")).send().await?;
    assert_eq!(healthz.status(), 200);
    let (status, body) = answer(app.http.get(app.url("/readyz")).send().await?).await;
    assert_eq!((status, body), (200, json!({"database": "ok"})));
    let (status, body) = answer(app.http.get(app.url("/health")).send().await?).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"database": "ok", "broker": "ok", "apiKey": {"paused": false},
               "outboxOldestSeconds": 0})
    );
    app.stop().await;

    // Pointed at a broker that is not there, the same process still takes webhooks (the
    // outbox holds the jobs), so it stays ready; `/health` says what is missing.
    let mut config = env.config();
    config.broker.url = Some(leadlink::secret::Secret::new(
        "amqp://guest:guest@127.0.0.1:1/%2f",
    ));
    let mut app = env.start(config).await;
    let readyz = app.http.get(app.url("/readyz")).send().await?;
    assert_eq!(readyz.status(), 200);
    let (status, body) = answer(app.http.get(app.url("/health")).send().await?).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "ok");
    assert_ne!(body["broker"], "ok");
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

both_backends! {
    async fn a_lead_named_by_slug_and_by_urn_before_either_was_linked_is_invited_once(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut config = env.config();
        // One job at a time, so the slug's job goes first after the reset.
        config.broker.prefetch = 1;
        config.broker.connect_concurrency = 1;
        let mut app = env.start(config).await;
        let reset = chrono::Utc::now() + chrono::Duration::seconds(6);
        env.sim_put(
            "accounts/acc_u",
            json!({"limit": 5, "used": 5, "holdSeconds": 1, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        let (_, by_slug) = app
            .send(&webhook_id(), &lead("crm-u1", "two-ways", "acc_u"))
            .await;
        let by_slug = job_id(&by_slug);
        app.wait_for(by_slug, Status::Held).await;
        let urn = leadlink::sim::profiles::urn_for_slug("two-ways");
        let mut by_urn = lead("crm-u2", "x", "acc_u");
        by_urn["data"]["linkedinUrl"] = json!(null);
        by_urn["data"]["profileUrn"] = json!(urn);
        let (status, second) = app.send(&webhook_id(), &by_urn).await;
        assert_eq!(
            status, 202,
            "nothing linked the slug to the URN yet: {second}"
        );
        let by_urn = job_id(&second);
        app.wait_for(by_urn, Status::Held).await;
        // The slug's send returns the URN the other job holds: its outcome still commits, and
        // the other job checks the relationship instead of sending a second invitation.
        app.wait_for(by_slug, Status::Sent).await;
        let job = app.wait_for(by_urn, Status::Sent).await;
        assert_eq!(env.invitations("acc_u", "two-ways").await, 1, "{job:#?}");
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_second_record_naming_the_same_person_is_written_back_too(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let mut app = env.start(env.config()).await;
        let (status, first) = app
            .send(&webhook_id(), &lead("crm-first", "two-records", "acc_1"))
            .await;
        assert_eq!(status, 202, "{first}");
        let id = job_id(&first);
        let (status, second) = app
            .send(&webhook_id(), &lead("crm-second", "two-records", "acc_1"))
            .await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(job_id(&second), id);
        app.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_1", "two-records").await, 1);
        // Each record hears the job's state, under its own record id.
        let statuses = |record: &'static str| {
            let env = &env;
            move || {
                let seen: Vec<String> = env
                    .callbacks_for(id)
                    .iter()
                    .filter(|d| d["recordId"] == record)
                    .map(|d| d["status"].as_str().unwrap().to_string())
                    .collect();
                async move { seen.last().map(String::as_str) == Some("sent") }
            }
        };
        eventually(WAIT, "crm-first written back sent", statuses("crm-first")).await;
        eventually(WAIT, "crm-second written back sent", statuses("crm-second")).await;
        let listed = app.jobs("record=crm-second").await;
        assert_eq!(listed[0].id, id, "{listed:#?}");
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}
