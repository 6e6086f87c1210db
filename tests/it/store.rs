//! The store's race rules against the real PostgreSQL, with the clock passed in: leases,
//! operator actions, writeback leases and the outbox seen by a relay mid-publish.

use crate::harness::*;
use chrono::{DateTime, Duration, Utc};
use leadlink::account::quota::{Quota, QuotaSource};
use leadlink::job::{LeadDetails, Source, Status, WritebackTarget};
use leadlink::lead::{Resolution, UsableLead};
use leadlink::queue::Message;
use leadlink::store::{
    AccountReading, AccountStore, ApiBudgetStore, Claim, Doubt, Facts, GateWait, IngestOutcome,
    JobStore, NewJob, OutboxStore, SendGate, SendStart, SqlStore, StoreError, Transition,
    WaitStore, WritebackClaim, WritebackResult, WritebackStore,
};
use serde_json::json;
use uuid::Uuid;

async fn store(env: &TestEnv) -> SqlStore {
    let config = env.config();
    SqlStore::connect(&config.database, std::time::Duration::from_secs(2))
        .await
        .unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc::now()
}

/// A usable lead named by `key` (its slug, or with `urn` its URN).
fn usable(key: &str, urn: Option<&str>) -> Resolution {
    Resolution::Usable(UsableLead {
        profile_key: key.into(),
        profile_id: urn.is_none().then(|| key.into()),
        profile_urn: urn.map(Into::into),
        message: None,
    })
}

async fn new_job(store: &SqlStore, profile: &str, now: DateTime<Utc>) -> Uuid {
    let new = NewJob {
        source: Source::Events,
        record_id: format!("crm-{profile}"),
        record_object: None,
        account_id: "acc_1".into(),
        resolution: usable(profile, None),
        lead: LeadDetails::default(),
        delivery_id: Some(webhook_id()),
        one_open_job_per_record: false,
        writeback_targets: vec![WritebackTarget::Callback],
        priority: None,
    };
    match store.ingest(&new, now).await.unwrap() {
        IngestOutcome::Created { job_id, .. } => job_id,
        other => panic!("not created: {other:?}"),
    }
}

async fn outbox_rows(env: &TestEnv, reference: &str) -> i64 {
    env.scalar("SELECT count(*) FROM outbox WHERE ref = $1", &[reference])
        .await
}

both_backends! {
    async fn a_lease_that_ran_out_cannot_send_or_settle(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "lease-one", now).await;
        let lease = Duration::seconds(10);
        let Claim::Claimed(_) = store.claim(id, "a:1", lease, now).await? else {
            panic!("first claim refused")
        };
        // While A holds it, nobody else may take it.
        assert!(matches!(
            store
                .claim(id, "b:1", lease, now + Duration::seconds(5))
                .await?,
            Claim::Skip(_)
        ));
        // A stalls past its lease; B takes over.
        let later = now + Duration::seconds(11);
        let Claim::Claimed(_) = store.claim(id, "b:1", lease, later).await? else {
            panic!("expired lease not taken over")
        };
        assert!(matches!(
            store.send_started(id, "a:1", None, lease, || later).await,
            Err(StoreError::LeaseLost(_))
        ));
        let stale = store.transition(id, Some("a:1"), sent(), later).await;
        assert!(matches!(stale, Err(StoreError::LeaseLost(_))));
        // B's send renews its lease to cover the call: a claim just after B's original lease
        // would have ended still finds the job taken.
        assert!(matches!(
            store
                .send_started(id, "b:1", None, lease, || later + Duration::seconds(9))
                .await?,
            SendStart::Started { attempt: 1, .. }
        ));
        assert!(matches!(
            store
                .claim(id, "c:1", lease, later + Duration::seconds(12))
                .await?,
            Claim::Skip(_)
        ));
        env.cleanup().await;
        Ok(())
    }
}

fn sent() -> Transition {
    Transition {
        status: Some(Status::Sent),
        doubt: Doubt::Settled,
        ..Default::default()
    }
}

both_backends! {
    async fn operators_cannot_end_a_held_in_doubt_or_finished_job(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "operator-race", now).await;
        let lease = Duration::seconds(10);
        store.claim(id, "w:1", lease, now).await?;
        let busy = store.cancel_job(id, now + Duration::seconds(1)).await;
        assert!(matches!(busy, Err(StoreError::Conflict(_))), "{busy:?}");
        // The worker's send got no answer and it died: the invitation may be out.
        store.send_started(id, "w:1", None, lease, || now).await?;
        let in_doubt = store.cancel_job(id, now + Duration::seconds(30)).await;
        assert!(
            matches!(in_doubt, Err(StoreError::Conflict(ref m)) if m.contains("may already be out")),
            "{in_doubt:?}"
        );
        // Once it is sent, neither cancel nor retry may touch it.
        store
            .claim(id, "w:2", lease, now + Duration::seconds(31))
            .await?;
        store
            .transition(id, Some("w:2"), sent(), now + Duration::seconds(32))
            .await?;
        for result in [
            store.cancel_job(id, now + Duration::seconds(40)).await,
            store.retry_job(id, now + Duration::seconds(40)).await,
        ] {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        }
        let job = store.job(id).await?.unwrap().job;
        assert_eq!(job.status, Status::Sent);
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_skipped_delivery_leaves_the_job_reachable_even_while_a_relay_holds_its_row(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "skew-one", now).await;
        // Park it until later: the job's only outbox row is due then.
        store.claim(id, "w:1", Duration::seconds(10), now).await?;
        let due = now + Duration::seconds(60);
        store
            .transition(
                id,
                Some("w:1"),
                Transition {
                    status: Some(Status::Retrying),
                    retry_at: Some(due),
                    error: Some("try later".into()),
                    ..Default::default()
                },
                now,
            )
            .await?;
        assert_eq!(outbox_rows(&env, &id.to_string()).await, 1);
        // A relay whose clock runs ahead publishes that row (and deletes it once confirmed) ...
        let worker = store.clone();
        let published = store
            .relay_due(due, 10, move |message| {
                let worker = worker.clone();
                async move {
                    let Message::Connect(job_id) = message.message else {
                        return true;
                    };
                    // ... and its message reaches a worker whose clock says "not due yet".
                    let claim = worker
                        .claim(
                            job_id,
                            "w:2",
                            Duration::seconds(10),
                            due - Duration::milliseconds(5),
                        )
                        .await
                        .unwrap();
                    assert!(matches!(claim, Claim::Skip(_)), "{claim:?}");
                    true
                }
            })
            .await?;
        assert!(published >= 1);
        assert_eq!(
            outbox_rows(&env, &id.to_string()).await,
            1,
            "the job was stranded"
        );
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_writeback_result_counts_only_under_its_own_lease(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "writeback-lease", now).await;
        let writeback_id: i64 = store.job(id).await?.unwrap().writebacks[0].id;
        let lease = Duration::seconds(5);
        let WritebackClaim::Deliver(slow) = store.claim_writeback(writeback_id, lease, now).await?
        else {
            panic!("not claimed")
        };
        let later = now + Duration::seconds(6);
        let WritebackClaim::Deliver(fast) = store.claim_writeback(writeback_id, lease, later).await?
        else {
            panic!("expired writeback lease not taken over")
        };
        store
            .writeback_done(&fast, &WritebackResult::Delivered, later)
            .await?;
        // The slow worker's late failure must not make a delivered change pending again.
        let retry = WritebackResult::Retry {
            at: later,
            error: "timeout".into(),
        };
        store.writeback_done(&slow, &retry, later).await?;
        let row = &store.job(id).await?.unwrap().writebacks[0];
        assert_eq!(row.state, "delivered", "{row:?}");
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn retrying_parked_writebacks_never_sends_an_older_state_after_a_newer_one(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "rearm-one", now).await;
        let lease = Duration::seconds(5);
        // queued (sequence 1) is refused for good ...
        let first = store.job(id).await?.unwrap().writebacks[0].id;
        let WritebackClaim::Deliver(queued) = store.claim_writeback(first, lease, now).await? else {
            panic!()
        };
        let parked = WritebackResult::Parked {
            reason: "HTTP 410".into(),
        };
        store.writeback_done(&queued, &parked, now).await?;
        // ... then the job fails (sequence 2), which is refused too.
        store.claim(id, "w:1", lease, now).await?;
        let failed = Transition {
            status: Some(Status::Failed),
            error: Some("boom".into()),
            doubt: Doubt::Settled,
            ..Default::default()
        };
        store.transition(id, Some("w:1"), failed, now).await?;
        let second = store.job(id).await?.unwrap().writebacks[1].id;
        let WritebackClaim::Deliver(failed_wb) = store.claim_writeback(second, lease, now).await?
        else {
            panic!()
        };
        store
            .writeback_done(&failed_wb, &WritebackResult::Delivered, now)
            .await?;
        // "failed" (newer) was delivered, so the parked "queued" from before can never go: it
        // is superseded, and an operator retry of the job leaves it so.
        store.retry_job(id, now + Duration::seconds(1)).await?;
        let rows = store.job(id).await?.unwrap().writebacks;
        assert_eq!(rows[0].state, "superseded", "{rows:?}");
        assert_eq!(rows[1].state, "delivered");
        assert_eq!(rows[2].state, "pending", "the retry's own change goes out");
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_retried_parked_change_waits_for_a_newer_one_under_way_and_never_lands_after_it(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let lease = Duration::seconds(5);
        let id = new_job(&store, "rearm-race", now).await;
        let queued = writeback_id(&store, id, 1).await;
        settle_writeback(
            &store,
            queued,
            WritebackResult::Parked {
                reason: "HTTP 400".into(),
            },
            now,
        )
        .await;
        store.claim(id, "w:1", lease, now).await?;
        store.transition(id, Some("w:1"), failed(), now).await?;
        let failed_wb = writeback_id(&store, id, 2).await;
        // The newer change's call is under way when the operator retries the older one.
        let WritebackClaim::Deliver(in_flight) = store.claim_writeback(failed_wb, lease, now).await?
        else {
            panic!("the newer change is claimable")
        };
        store.retry_writeback(queued, now).await?;
        assert!(
            matches!(
                store.claim_writeback(queued, lease, now).await?,
                WritebackClaim::Deferred
            ),
            "the older change waits for the newer one's call"
        );
        store
            .writeback_done(&in_flight, &WritebackResult::Delivered, now)
            .await?;
        let after_lease = now + lease + Duration::seconds(2);
        assert!(
            matches!(
                store.claim_writeback(queued, lease, after_lease).await?,
                WritebackClaim::Superseded(_)
            ),
            "delivered after the newer one, it would overwrite it"
        );
        let states: Vec<String> = store
            .job(id)
            .await?
            .unwrap()
            .writebacks
            .into_iter()
            .map(|w| w.state)
            .collect();
        assert_eq!(states, ["superseded", "delivered"]);
        env.cleanup().await;
        Ok(())
    }
}

/// Claims writeback `id` and records `result` for it.
async fn settle_writeback(store: &SqlStore, id: i64, result: WritebackResult, now: DateTime<Utc>) {
    let WritebackClaim::Deliver(work) = store
        .claim_writeback(id, Duration::seconds(5), now)
        .await
        .unwrap()
    else {
        panic!("writeback {id} not claimable")
    };
    store.writeback_done(&work, &result, now).await.unwrap();
}

both_backends! {
    async fn parked_writebacks_are_listed_and_retried_one_at_a_time(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "park-one", now).await;
        let parked = || WritebackResult::Parked {
            reason: "HTTP 410".into(),
        };
        // queued (sequence 1) and failed (sequence 2) are both refused for good.
        let queued = writeback_id(&store, id, 1).await;
        settle_writeback(&store, queued, parked(), now).await;
        store.claim(id, "w:1", Duration::seconds(5), now).await?;
        store.transition(id, Some("w:1"), failed(), now).await?;
        let failed_wb = writeback_id(&store, id, 2).await;
        let later = now + Duration::seconds(1);
        settle_writeback(&store, failed_wb, parked(), later).await;

        let listed = store.parked_writebacks(10).await?;
        let seen: Vec<(i64, Uuid, &str)> = listed
            .iter()
            .map(|p| (p.writeback.id, p.job_id, p.account_id.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(failed_wb, id, "acc_1"), (queued, id, "acc_1")],
            "the latest parked first"
        );
        assert_eq!(store.parked_writebacks(1).await?.len(), 1);
        assert_eq!(
            store.parked_writeback_count().await?,
            2,
            "the gauge's count"
        );

        // The newest is re-armed alone, due now, with a line in the history.
        let (job, publish) = store.retry_writeback(failed_wb, later).await?;
        assert_eq!((job, publish.len()), (id, 1));
        let rows = store.job(id).await?.unwrap();
        let states: Vec<&str> = rows.writebacks.iter().map(|w| w.state.as_str()).collect();
        assert_eq!(states, ["parked", "pending"]);
        assert_eq!(store.parked_writeback_count().await?, 1);
        assert!(
            rows.history
                .iter()
                .any(|e| e.kind == "operator" && e.detail["rearmedWritebacks"] == json!([failed_wb])),
            "{:#?}",
            rows.history
        );
        settle_writeback(&store, failed_wb, WritebackResult::Delivered, later).await;
        assert_eq!(
            store.parked_writeback_count().await?,
            0,
            "the older one can never go now: superseded, not parked"
        );

        // The older one must not overwrite it now; a delivered one and an unknown one are
        // refused too, and nothing changes.
        let older = store.retry_writeback(queued, later).await;
        assert!(
            matches!(&older, Err(StoreError::Conflict(why)) if why.contains("newer change")),
            "{older:?}"
        );
        let delivered = store.retry_writeback(failed_wb, later).await;
        assert!(
            matches!(&delivered, Err(StoreError::Conflict(why)) if why.contains("is delivered")),
            "{delivered:?}"
        );
        assert!(matches!(
            store.retry_writeback(i64::MAX, later).await,
            Err(StoreError::NotFound(_))
        ));
        let states: Vec<String> = store
            .job(id)
            .await?
            .unwrap()
            .writebacks
            .into_iter()
            .map(|w| w.state)
            .collect();
        assert_eq!(states, ["superseded", "delivered"]);
        env.cleanup().await;
        Ok(())
    }
}

fn unpaced() -> leadlink::account::policy::AccountPolicy {
    leadlink::account::policy::AccountPolicy {
        pacing: false,
        ..Default::default()
    }
}

async fn claimed(
    store: &SqlStore,
    id: Uuid,
    owner: &str,
    now: DateTime<Utc>,
) -> leadlink::job::Job {
    match store
        .claim(id, owner, Duration::seconds(30), now)
        .await
        .unwrap()
    {
        Claim::Claimed(claimed) => claimed.job,
        Claim::Skip(why) => panic!("claim refused: {why}"),
    }
}

fn reading(remaining: u32, now: DateTime<Utc>) -> AccountReading {
    AccountReading {
        asked_at: now,
        quota: Some(Quota {
            limit: 90,
            used: 90 - remaining,
            remaining,
            reset_at: now + Duration::days(3),
            observed_at: now,
            source: QuotaSource::Endpoint,
        }),
        disabled: None,
        counts_shadow_sends: false,
    }
}

both_backends! {
    async fn an_account_sends_one_job_at_a_time_oldest_first_and_a_dead_sender_frees_it(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let policy = unpaced();
        let lease = Duration::seconds(10);
        let older = new_job(&store, "gate-older", now).await;
        let newer = new_job(&store, "gate-newer", now).await;
        let newer_job = claimed(&store, newer, "w:1", now).await;
        // Nothing is known about the account: the quota is read first.
        assert_eq!(
            store
                .take_send_slot(&newer_job, &policy, lease, Facts::Recorded, now)
                .await?,
            SendGate::NeedReading
        );
        store
            .record_account_reading("acc_1", &reading(5, now), now)
            .await?;
        // The newer job yields to the older one, which is woken now.
        let SendGate::Wait(GateWait { reason, .. }) = store
            .take_send_slot(&newer_job, &policy, lease, Facts::JustRead, now)
            .await?
        else {
            panic!("the newer job went before the older one");
        };
        assert!(reason.contains("older"), "{reason}");
        let older_job = claimed(&store, older, "w:2", now).await;
        assert_eq!(
            store
                .take_send_slot(&older_job, &policy, lease, Facts::Recorded, now)
                .await?,
            SendGate::Send
        );
        // While the older job's send holds the account, the newer one waits ...
        let busy = store
            .take_send_slot(
                &newer_job,
                &policy,
                lease,
                Facts::Recorded,
                now + Duration::seconds(1),
            )
            .await?;
        assert!(
            matches!(&busy, SendGate::Wait(GateWait { reason, .. }) if reason.contains("in progress")),
            "{busy:?}"
        );
        // ... parked by its worker ...
        store
            .transition(
                newer,
                Some("w:1"),
                Transition {
                    due_at: Some(now + Duration::seconds(2)),
                    ..Default::default()
                },
                now + Duration::seconds(1),
            )
            .await?;
        // ... until the sender died mid-send and its leases ran out: its job, still the oldest,
        // takes the account again (its worker will check the relationship before any resend).
        let after = now + Duration::seconds(31);
        let older_job = claimed(&store, older, "w:4", after).await;
        assert_eq!(
            store
                .take_send_slot(&older_job, &policy, lease, Facts::Recorded, after)
                .await?,
            SendGate::Send
        );
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_week_another_tool_spent_holds_jobs_until_the_reset_and_a_disabled_account_pauses(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let policy = unpaced();
        let id = new_job(&store, "spent-week", now).await;
        let job = claimed(&store, id, "w:1", now).await;
        store
            .record_account_reading("acc_1", &reading(0, now), now)
            .await?;
        let SendGate::Wait(GateWait { status, until, .. }) = store
            .take_send_slot(&job, &policy, Duration::seconds(10), Facts::Recorded, now)
            .await?
        else {
            panic!("sent on a spent week");
        };
        assert_eq!(status, Some(Status::Held));
        assert!((until - (now + Duration::days(3))).num_milliseconds().abs() < 1);
        let disabled = AccountReading {
            disabled: Some("account is disabled".into()),
            ..reading(5, now)
        };
        store
            .record_account_reading("acc_1", &disabled, now)
            .await?;
        let SendGate::Wait(GateWait { status, reason, .. }) = store
            .take_send_slot(&job, &policy, Duration::seconds(10), Facts::Recorded, now)
            .await?
        else {
            panic!("sent from a disabled account");
        };
        assert_eq!(status, Some(Status::Paused));
        assert!(reason.contains("disabled"), "{reason}");
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn the_per_minute_budget_is_shared_and_slides(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let scopes = [("key".to_string(), 3), ("writes:acc_1".to_string(), 2)];
        assert_eq!(store.take_api_calls(&scopes, now).await?, None);
        assert_eq!(
            store
                .take_api_calls(&scopes, now + Duration::seconds(10))
                .await?,
            None
        );
        // The account's writes are spent: nothing is counted, and the answer says when.
        let until = store
            .take_api_calls(&scopes, now + Duration::seconds(20))
            .await?
            .expect("a third write in a minute was allowed");
        assert!(until > now + Duration::seconds(60) && until < now + Duration::seconds(61));
        // The key still has room for another account's call.
        assert_eq!(
            store
                .take_api_calls(&[("key".to_string(), 3)], now + Duration::seconds(20))
                .await?,
            None
        );
        // A minute after the first call there is room again, for one call ...
        assert_eq!(
            store
                .take_api_calls(&scopes, now + Duration::seconds(61))
                .await?,
            None
        );
        // ... and the next waits for the call made at +10 s to leave the window.
        let until = store
            .take_api_calls(&scopes, now + Duration::seconds(62))
            .await?
            .expect("the window did not slide");
        let expected = now + Duration::seconds(70);
        assert!((until - expected).num_milliseconds().abs() <= 2, "{until}");
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_batch_commits_together_in_order_with_one_creation_time_each(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let new = |profile: &str, delivery: &str| NewJob {
            source: Source::Events,
            record_id: format!("crm-{profile}"),
            record_object: None,
            account_id: "acc_1".into(),
            resolution: usable(profile, None),
            lead: LeadDetails::default(),
            delivery_id: Some(delivery.into()),
            one_open_job_per_record: false,
            writeback_targets: vec![WritebackTarget::Callback],
            priority: None,
        };
        // The same lead twice under two deliveries: the second attaches to the first's job.
        let batch = [
            new("batch-c", "d1"),
            new("batch-a", "d2"),
            new("batch-b", "d3"),
            new("batch-a", "d4"),
        ];
        let outcomes = store.ingest_batch(&batch, now).await?;
        let ids: Vec<Uuid> = outcomes
            .iter()
            .map(|o| match o {
                IngestOutcome::Created { job_id, .. } | IngestOutcome::Duplicate { job_id, .. } => {
                    *job_id
                }
            })
            .collect();
        assert!(
            matches!(outcomes[3], IngestOutcome::Duplicate { .. }),
            "{outcomes:?}"
        );
        assert_eq!(ids[3], ids[1], "the repeated lead did not attach");
        let mut created = Vec::new();
        for id in &ids[..3] {
            created.push(store.job(*id).await?.unwrap().job.created_at);
        }
        created.sort();
        created.dedup();
        assert_eq!(created.len(), 3, "jobs of one batch share a creation time");
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// Issue 9, scenario 1: a relay waiting for the broker's confirms holds no lock that a send
    /// waits on, and the renewed lease runs from the moment the send may start.
    async fn a_relay_waiting_for_confirms_holds_no_lock_a_send_waits_on(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let id = new_job(&store, "slow-confirm", now).await;
        let lease = Duration::seconds(30);
        let Claim::Claimed(_) = store.claim(id, "w:1", lease, now).await? else {
            panic!("not claimed")
        };
        let entered = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let confirm = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let relay = tokio::spawn({
            let (store, entered, confirm) = (store.clone(), entered.clone(), confirm.clone());
            async move {
                store
                    .relay_due(now + Duration::hours(1), 10, move |_| {
                        let (entered, confirm) = (entered.clone(), confirm.clone());
                        async move {
                            // A broker slow to confirm.
                            entered.add_permits(1);
                            confirm.acquire().await.unwrap().forget();
                            true
                        }
                    })
                    .await
            }
        });
        entered.acquire().await?.forget();
        let started = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            store.send_started(id, "w:1", None, lease, || now + Duration::seconds(20)),
        )
        .await;
        confirm.add_permits(10);
        relay.await??;
        let started = started.expect("the send waited on the relay's publish");
        let Ok(SendStart::Started { lease_until, .. }) = started else {
            panic!("send not started: {started:?}")
        };
        // Measured from the clock read after the waits, not from before them.
        assert_eq!(lease_until, now + Duration::seconds(20) + lease);
        env.cleanup().await;
        Ok(())
    }
}

fn urn_job(profile: &str, urn: &str) -> NewJob {
    NewJob {
        source: Source::Events,
        record_id: format!("crm-{profile}-urn"),
        record_object: None,
        account_id: "acc_1".into(),
        resolution: usable(urn, Some(urn)),
        lead: LeadDetails::default(),
        delivery_id: Some(webhook_id()),
        one_open_job_per_record: false,
        writeback_targets: vec![WritebackTarget::Callback],
        priority: None,
    }
}

async fn ingested(store: &SqlStore, new: &NewJob, now: DateTime<Utc>) -> Uuid {
    match store.ingest(new, now).await.unwrap() {
        IngestOutcome::Created { job_id, .. } => job_id,
        other => panic!("not created: {other:?}"),
    }
}

both_backends! {
    /// Issue 9, scenario 3: whether a job may send is decided when its send starts, not at its
    /// claim: a URN-only job claimed before another job's send linked its URN does not send.
    async fn a_job_made_doubtful_after_its_claim_does_not_start_its_send(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let urn = "urn:li:fsd_profile:ACoAAJaneDoubt";
        let by_slug = new_job(&store, "jane-doubt", now).await;
        let by_urn = ingested(&store, &urn_job("jane-doubt", urn), now).await;
        let lease = Duration::seconds(30);
        let Claim::Claimed(b) = store.claim(by_urn, "w:b", lease, now).await? else {
            panic!("not claimed")
        };
        assert!(!b.in_doubt());
        // Job A (the slug) sends meanwhile and learns the URN that job B holds.
        store.claim(by_slug, "w:a", lease, now).await?;
        store
            .send_started(by_slug, "w:a", None, lease, || now)
            .await?;
        store
            .transition(
                by_slug,
                Some("w:a"),
                Transition {
                    profile_urn: Some(urn.into()),
                    ..sent()
                },
                now + Duration::seconds(1),
            )
            .await?;
        let later = now + Duration::seconds(2);
        assert_eq!(
            store
                .send_started(by_urn, "w:b", b.in_doubt_since, lease, || later)
                .await?,
            SendStart::NowInDoubt
        );
        // Its worker parks it at once; the next claim is in doubt and can ask by A's slug.
        store
            .transition(
                by_urn,
                Some("w:b"),
                Transition {
                    due_at: Some(later),
                    ..Default::default()
                },
                later,
            )
            .await?;
        let Claim::Claimed(again) = store.claim(by_urn, "w:c", lease, later).await? else {
            panic!("not claimed again")
        };
        assert!(again.in_doubt());
        assert_eq!(again.job.profile_id.as_deref(), Some("jane-doubt"));
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// Issue 9, scenario 2: a job that gave up while in doubt keeps its lead, so a later event
    /// for the same person is a duplicate, not a second invitation.
    async fn a_job_that_ended_in_doubt_keeps_its_lead(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let urn = "urn:li:fsd_profile:ACoAAKeepsLead";
        let new = urn_job("keeps-lead", urn);
        let id = ingested(&store, &new, now).await;
        let lease = Duration::seconds(30);
        store.claim(id, "w:1", lease, now).await?;
        store.send_started(id, "w:1", None, lease, || now).await?;
        store
            .transition(
                id,
                Some("w:1"),
                Transition {
                    status: Some(Status::Failed),
                    error: Some("gave up; an invitation may have gone out".into()),
                    ..Default::default()
                },
                now,
            )
            .await?;
        let again = NewJob {
            delivery_id: Some(webhook_id()),
            record_id: "crm-keeps-lead-second".into(),
            ..new
        };
        let outcome = store.ingest(&again, now).await?;
        assert!(
            matches!(outcome, IngestOutcome::Duplicate { job_id, status: Status::Failed, .. } if job_id == id),
            "{outcome:?}"
        );
        env.cleanup().await;
        Ok(())
    }
}

async fn remaining(env: &TestEnv) -> (i64, i64) {
    let remaining = env
        .scalar(
            "SELECT CAST(remaining AS bigint) FROM account_limits WHERE account_id = 'acc_1' AND action = 'CONNECT'",
            &[],
        )
        .await;
    let sends = env.scalar("SELECT count(*) FROM account_sends", &[]).await;
    (remaining, sends)
}

both_backends! {
    /// Issue 9, scenario 10: a slot taken at the gate whose POST never started goes back to the
    /// account's week, whether its worker died before the send or its store failed; a late
    /// worker whose lease is gone never gives back the new owner's slot.
    async fn a_send_slot_whose_post_never_started_is_given_back(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let policy = unpaced();
        let lease = Duration::seconds(10);
        store
            .record_account_reading("acc_1", &reading(5, now), now)
            .await?;
        let id = new_job(&store, "slot-back", now).await;
        let job = claimed(&store, id, "w:1", now).await;
        let gate = store
            .take_send_slot(&job, &policy, lease, Facts::Recorded, now)
            .await;
        assert_eq!(gate?, SendGate::Send);
        assert_eq!(remaining(&env).await, (4, 1));
        // The worker stalls past its lease; another takes the job over ...
        let later = now + Duration::seconds(31);
        let job = claimed(&store, id, "w:2", later).await;
        // ... and the dead attempt's slot is the account's again.
        assert_eq!(remaining(&env).await, (5, 0));
        let gate = store
            .take_send_slot(&job, &policy, lease, Facts::Recorded, later)
            .await;
        assert_eq!(gate?, SendGate::Send);
        // This time the worker itself learns that its lease is gone before the POST.
        let stolen = later + Duration::seconds(31);
        claimed(&store, id, "w:3", stolen).await;
        let job = claimed(&store, id, "w:4", stolen + Duration::seconds(31)).await;
        let gate = store
            .take_send_slot(
                &job,
                &policy,
                lease,
                Facts::Recorded,
                stolen + Duration::seconds(31),
            )
            .await;
        assert_eq!(gate?, SendGate::Send);
        assert!(matches!(
            store.send_started(id, "w:2", None, lease, || stolen).await,
            Err(StoreError::LeaseLost(_))
        ));
        // That late worker gives nothing back: the slot there now is w:4's.
        store.give_back_send_slot(id, "w:2", stolen).await?;
        assert_eq!(remaining(&env).await, (4, 1));
        // w:4's store fails before its POST: its own slot goes back.
        store.give_back_send_slot(id, "w:4", stolen).await?;
        assert_eq!(remaining(&env).await, (5, 0));
        // A send that started keeps its slot.
        let at = stolen + Duration::seconds(70);
        let job = claimed(&store, id, "w:5", at).await;
        let gate = store
            .take_send_slot(&job, &policy, lease, Facts::Recorded, at)
            .await;
        assert_eq!(gate?, SendGate::Send);
        store.send_started(id, "w:5", None, lease, || at).await?;
        store.give_back_send_slot(id, "w:5", at).await?;
        assert_eq!(remaining(&env).await, (4, 1));
        env.cleanup().await;
        Ok(())
    }
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    env.scalar(sql, &[]).await
}

both_backends! {
    /// Issue 9, scenario 7: jobs of a paused account share one timer instead of waking one by
    /// one, a wake that changes nothing adds no history, and the account's recovery releases
    /// them all.
    async fn jobs_of_a_paused_account_share_one_timer_and_are_released_together(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let paused = leadlink::account::policy::AccountPolicy {
            paused: true,
            ..unpaced()
        };
        let lease = Duration::seconds(10);
        let mut ids = Vec::new();
        for n in 0..5 {
            let id = new_job(&store, &format!("paused-{n}"), now).await;
            // Apart in time, so that "oldest" is well defined.
            ids.push((id, now + Duration::milliseconds(n)));
        }
        let park = |store: SqlStore, id: Uuid, at: DateTime<Utc>, policy| async move {
            let job = claimed(&store, id, "w:1", at).await;
            let SendGate::Wait(GateWait {
                status,
                until,
                waiting,
                reason,
                ..
            }) = store
                .take_send_slot(&job, &policy, lease, Facts::Recorded, at)
                .await
                .unwrap()
            else {
                panic!("a paused account sent")
            };
            store
                .transition(
                    id,
                    Some("w:1"),
                    Transition {
                        status,
                        error: Some(reason),
                        due_at: Some(until),
                        waiting: waiting.map(|on| leadlink::store::Waiting {
                            on,
                            retry_every: Some(Duration::seconds(60)),
                        }),
                        ..Default::default()
                    },
                    at,
                )
                .await
                .unwrap();
        };
        for (id, at) in &ids {
            park(store.clone(), *id, *at, paused.clone()).await;
        }
        let connect_rows = "SELECT count(*) FROM outbox WHERE topic = 'connect'";
        assert_eq!(
            count(&env, connect_rows).await,
            0,
            "a paused job has its own timer"
        );
        assert_eq!(count(&env, "SELECT count(*) FROM waits").await, 1);
        // Nothing is due before the account's timer; at it, only the oldest job tries again.
        assert!(store.wake_due_waits(now).await?.is_empty());
        let woken = store.wake_due_waits(now + Duration::seconds(61)).await?;
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].message, Message::Connect(ids[0].0));
        // It finds the account still paused: parked as it was, with no new history.
        let events = "SELECT count(*) FROM job_events";
        let before = count(&env, events).await;
        let later = now + Duration::seconds(62);
        park(store.clone(), ids[0].0, later, paused.clone()).await;
        assert_eq!(count(&env, events).await, before, "a wake-up was recorded");
        assert_eq!(count(&env, connect_rows).await, 0);
        // The account is unpaused: at the next timer, the first job through the gate releases
        // all the others.
        let later = now + Duration::seconds(122);
        let woken = store.wake_due_waits(later).await?;
        assert_eq!(woken.len(), 1);
        let job = claimed(&store, ids[0].0, "w:2", later).await;
        store
            .record_account_reading("acc_1", &reading(5, later), later)
            .await?;
        let gate = store
            .take_send_slot(&job, &unpaced(), lease, Facts::JustRead, later)
            .await?;
        assert_eq!(gate, SendGate::Send);
        let jobs_with_rows = "SELECT count(DISTINCT ref) FROM outbox WHERE topic = 'connect'";
        assert_eq!(
            count(&env, jobs_with_rows).await,
            5,
            "the waiting jobs were not released"
        );
        assert_eq!(count(&env, "SELECT count(*) FROM waits").await, 0);
        env.cleanup().await;
        Ok(())
    }
}

/// A job for `record` of `source` naming `profile`, with that source's writeback target.
fn record_job(source: Source, record: &str, profile: &str) -> NewJob {
    let crm = source.crm().is_some();
    NewJob {
        source,
        record_id: record.into(),
        record_object: crm.then(|| "contact".to_string()),
        account_id: "acc_1".into(),
        resolution: usable(profile, None),
        lead: LeadDetails::default(),
        delivery_id: Some(webhook_id()),
        one_open_job_per_record: crm,
        writeback_targets: vec![source.crm().unwrap_or(WritebackTarget::Callback)],
        priority: None,
    }
}

fn job_id_of(outcome: &IngestOutcome) -> Uuid {
    match outcome {
        IngestOutcome::Created { job_id, .. } | IngestOutcome::Duplicate { job_id, .. } => *job_id,
    }
}

/// Delivers every pending writeback of `job` due at `now`; returns (target, recordId,
/// status) of each, in sequence order.
async fn deliver_all(
    store: &SqlStore,
    job: Uuid,
    now: DateTime<Utc>,
) -> Vec<(String, String, String)> {
    let mut delivered = Vec::new();
    for row in store.job(job).await.unwrap().unwrap().writebacks {
        if row.state != "pending" {
            continue;
        }
        let WritebackClaim::Deliver(work) = store
            .claim_writeback(row.id, Duration::seconds(10), now)
            .await
            .unwrap()
        else {
            continue;
        };
        store
            .writeback_done(&work, &WritebackResult::Delivered, now)
            .await
            .unwrap();
        delivered.push((
            work.target.to_string(),
            work.payload["recordId"].as_str().unwrap().to_string(),
            work.payload["status"].as_str().unwrap().to_string(),
        ));
    }
    delivered
}

fn entry(target: &str, record: &str, status: &str) -> (String, String, String) {
    (target.into(), record.into(), status.into())
}

both_backends! {
    async fn a_second_record_of_the_same_lead_hears_the_state_and_every_change(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let first = store
            .ingest(&record_job(Source::Events, "rec-a", "two-records"), now)
            .await?;
        let id = job_id_of(&first);
        assert_eq!(
            deliver_all(&store, id, now).await,
            vec![entry("callback", "rec-a", "queued")]
        );
        // A HubSpot contact naming the same person joins the job: no second job, and it hears
        // the job's current state at once, on its own target.
        let second = store
            .ingest(&record_job(Source::HubSpot, "901", "two-records"), now)
            .await?;
        assert!(
            matches!(second, IngestOutcome::Duplicate { job_id, .. } if job_id == id),
            "{second:?}"
        );
        assert_eq!(
            deliver_all(&store, id, now).await,
            vec![entry("hubspot", "901", "queued")]
        );
        // A repeat of the contact's event adds nothing.
        store
            .ingest(&record_job(Source::HubSpot, "901", "two-records"), now)
            .await?;
        assert_eq!(deliver_all(&store, id, now).await, vec![]);
        // Every later change reaches both records.
        store.claim(id, "w:1", Duration::seconds(10), now).await?;
        store.transition(id, Some("w:1"), sent(), now).await?;
        let mut later = deliver_all(&store, id, now).await;
        later.sort();
        assert_eq!(
            later,
            vec![
                entry("callback", "rec-a", "sent"),
                entry("hubspot", "901", "sent")
            ]
        );
        // Either record finds the job.
        for record in ["rec-a", "901"] {
            let jobs = store
                .jobs(&leadlink::store::JobFilter {
                    record_id: Some(record.into()),
                    ..Default::default()
                })
                .await?;
            assert_eq!(
                jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
                vec![id],
                "{record}"
            );
        }
        env.cleanup().await;
        Ok(())
    }
}

fn failed() -> Transition {
    Transition {
        status: Some(Status::Failed),
        error: Some("boom".into()),
        doubt: Doubt::Settled,
        ..Default::default()
    }
}

/// The id of `job`'s pending writeback to `target` with `sequence`.
async fn writeback_id(store: &SqlStore, job: Uuid, sequence: i32) -> i64 {
    store
        .job(job)
        .await
        .unwrap()
        .unwrap()
        .writebacks
        .iter()
        .find(|w| w.sequence == sequence)
        .unwrap_or_else(|| panic!("no writeback {sequence} for {job}"))
        .id
}

both_backends! {
    async fn an_older_jobs_late_writeback_never_overwrites_a_newer_jobs_state(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let lease = Duration::seconds(10);
        let old = job_id_of(
            &store
                .ingest(&record_job(Source::HubSpot, "902", "late-failure"), now)
                .await?,
        );
        deliver_all(&store, old, now).await;
        store.claim(old, "w:1", lease, now).await?;
        store.transition(old, Some("w:1"), failed(), now).await?;
        // The record's `failed` meets a CRM outage and is retried an hour later ...
        let late = writeback_id(&store, old, 2).await;
        let WritebackClaim::Deliver(work) = store.claim_writeback(late, lease, now).await? else {
            panic!("not claimed")
        };
        let retry = WritebackResult::Retry {
            at: now + Duration::hours(1),
            error: "HTTP 503".into(),
        };
        store.writeback_done(&work, &retry, now).await?;
        // ... while the record qualifies again and its new job is sent and written back.
        let new = job_id_of(
            &store
                .ingest(&record_job(Source::HubSpot, "902", "late-failure"), now)
                .await?,
        );
        assert_ne!(new, old);
        store.claim(new, "w:2", lease, now).await?;
        store.transition(new, Some("w:2"), sent(), now).await?;
        assert_eq!(
            deliver_all(&store, new, now).await,
            vec![
                entry("hubspot", "902", "queued"),
                entry("hubspot", "902", "sent")
            ]
        );
        // The old job's `failed` falls due: it is superseded, never delivered.
        let due = now + Duration::hours(1) + Duration::seconds(1);
        let claim = store.claim_writeback(late, lease, due).await?;
        assert!(
            matches!(claim, WritebackClaim::Superseded(WritebackTarget::HubSpot)),
            "{claim:?}"
        );
        let history = store.job(old).await?.unwrap();
        let row = history.writebacks.iter().find(|w| w.id == late).unwrap();
        assert_eq!(row.state, "superseded", "{row:?}");
        assert!(
            history
                .history
                .iter()
                .any(|e| e.kind == "writeback" && e.detail["result"] == "superseded"),
            "{:#?}",
            history.history
        );
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_newer_jobs_writeback_waits_for_an_older_one_in_flight_on_the_same_record(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let lease = Duration::seconds(10);
        let old = job_id_of(
            &store
                .ingest(&record_job(Source::HubSpot, "903", "in-flight"), now)
                .await?,
        );
        deliver_all(&store, old, now).await;
        store.claim(old, "w:1", lease, now).await?;
        store.transition(old, Some("w:1"), failed(), now).await?;
        // The old job's `failed` is being delivered (its call is under way) ...
        let WritebackClaim::Deliver(in_flight) = store
            .claim_writeback(writeback_id(&store, old, 2).await, lease, now)
            .await?
        else {
            panic!("not claimed")
        };
        // ... when the record's new job writes its first state: it goes out after that call.
        let new = job_id_of(
            &store
                .ingest(&record_job(Source::HubSpot, "903", "in-flight"), now)
                .await?,
        );
        let first = writeback_id(&store, new, 1).await;
        let claim = store.claim_writeback(first, lease, now).await?;
        assert!(matches!(claim, WritebackClaim::Deferred), "{claim:?}");
        store
            .writeback_done(&in_flight, &WritebackResult::Delivered, now)
            .await?;
        let after = now + lease + Duration::seconds(2);
        assert!(matches!(
            store.claim_writeback(first, lease, after).await?,
            WritebackClaim::Deliver(_)
        ));
        env.cleanup().await;
        Ok(())
    }
}
/// The statuses named in a partial index's predicate, as PostgreSQL prints it back.
fn statuses_in(predicate: &str) -> Vec<Status> {
    let mut found: Vec<Status> = predicate
        .split('\'')
        .skip(1)
        .step_by(2)
        .filter_map(Status::parse)
        .collect();
    found.sort_by_key(|s| s.as_str());
    found
}

#[tokio::test]
async fn the_migrations_partial_indexes_use_the_status_sets_of_the_code() {
    let env = TestEnv::new().await;
    // Connecting runs the migrations.
    let _store = store(&env).await;
    let pool = sqlx::PgPool::connect(&env.database_url).await.unwrap();
    let mut frees_lead = Status::FREES_LEAD.to_vec();
    frees_lead.sort_by_key(|s| s.as_str());
    let mut ended = Status::ENDED.to_vec();
    ended.sort_by_key(|s| s.as_str());
    let definition: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_open_by_record'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let predicate = definition.split(" WHERE ").nth(1).unwrap_or_default();
    assert_eq!(statuses_in(predicate), ended, "{definition}");
    for index in ["jobs_one_per_lead", "jobs_one_per_urn"] {
        let definition: String =
            sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = $1")
                .bind(index)
                .fetch_one(&pool)
                .await
                .unwrap();
        let predicate = definition.split(" WHERE ").nth(1).unwrap_or_default();
        assert_eq!(statuses_in(predicate), frees_lead, "{index}: {definition}");
        assert!(
            predicate.contains("send_started_at IS NOT NULL"),
            "{index} must keep the lead of a job that may have sent: {definition}"
        );
    }
    pool.close().await;
    env.cleanup().await;
}

both_backends! {
    async fn an_outbox_row_naming_nothing_of_ours_is_dropped_without_holding_up_the_rest(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let job = new_job(&store, "behind-a-bad-row", now).await;
        // Due before the job's own row, so a relay that stopped at it would never reach the job.
        env.execute_at(
            "INSERT INTO outbox (topic, ref, due_at, created_at) VALUES ('connect', 'not-a-job', $1, $1)",
            now - Duration::minutes(1),
        )
        .await;
        let published = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = published.clone();
        store
            .relay_due(now + Duration::minutes(1), 10, move |message| {
                seen.lock().unwrap().push(message.message);
                async { true }
            })
            .await?;
        assert!(
            published.lock().unwrap().contains(&Message::Connect(job)),
            "{published:?}"
        );
        assert_eq!(outbox_rows(&env, "not-a-job").await, 0);
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn the_gauge_reads_name_every_status_each_known_account_and_the_oldest_due_row(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        // An empty store still names every status, so graphs and alerts see no gap.
        let counts = store.job_counts().await?;
        assert_eq!(
            counts.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            Status::ALL.to_vec()
        );
        assert!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
        assert_eq!(store.account_standings().await?, vec![]);
        assert_eq!(store.oldest_due(now).await?, None);

        let held = new_job(&store, "gauge-held", now).await;
        new_job(&store, "gauge-queued", now).await;
        // A fresh job's row is its publisher's for the grace (2 s here): not due before then.
        assert_eq!(store.oldest_due(now).await?, None);
        let later = now + Duration::seconds(3);
        let oldest = store.oldest_due(later).await?.expect("rows due by now");
        assert!(oldest > now && oldest <= later, "{oldest}");

        store
            .record_account_reading("acc_1", &reading(7, now), now)
            .await?;
        claimed(&store, held, "w:1", now).await;
        let hold_until = now + Duration::hours(1);
        store
            .transition(
                held,
                Some("w:1"),
                Transition {
                    hold_until: Some(hold_until),
                    retry_at: Some(hold_until),
                    account_hold: Some(leadlink::store::AccountHold {
                        hold_until,
                        blocked_until: None,
                        reason: "429".into(),
                    }),
                    ..Transition::to(Status::Held)
                },
                now,
            )
            .await?;
        let counts = store.job_counts().await?;
        let count = |status| counts.iter().find(|(s, _)| *s == status).unwrap().1;
        assert_eq!(
            (
                count(Status::Queued),
                count(Status::Held),
                count(Status::Sent)
            ),
            (1, 1, 0)
        );
        let standings = store.account_standings().await?;
        assert_eq!(standings.len(), 1, "{standings:?}");
        let standing = &standings[0];
        assert_eq!(standing.account_id, "acc_1");
        let recorded = standing.hold_until.expect("the hold is recorded");
        assert!((recorded - hold_until).num_milliseconds().abs() < 1);
        let quota = standing.quota.expect("the reading is recorded");
        assert_eq!((quota.limit, quota.used, quota.remaining), (90, 83, 7));
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn existing_jobs_finds_a_delivery_record_or_lead_without_writing(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let store = store(&env).await;
        let now = t0();
        let new = |profile: &str, delivery: &str, record: &str| NewJob {
            source: Source::HubSpot,
            record_id: record.into(),
            record_object: Some("contact".into()),
            account_id: "acc_1".into(),
            resolution: usable(profile, None),
            lead: LeadDetails::default(),
            delivery_id: Some(delivery.into()),
            one_open_job_per_record: true,
            writeback_targets: vec![WritebackTarget::HubSpot],
            priority: None,
        };
        store.ingest(&new("held", "d1", "r1"), now).await?;
        let probes = [
            new("other-a", "d1", "r9"),
            new("other-b", "d2", "r1"),
            new("held", "d3", "r8"),
            new("fresh", "d4", "r7"),
            new("fresh", "d4", "r7"),
        ];
        assert_eq!(
            store.existing_jobs(&probes).await?,
            [true, true, true, false, false],
            "the delivery's, the record's and the lead's job are found; a new lead is not"
        );
        assert_eq!(
            store.existing_jobs(&probes[3..]).await?,
            [false, false],
            "nothing was written"
        );
        env.cleanup().await;
        Ok(())
    }
}

/// Issue 11: an in-process queue lost with its process is rebuilt from what the store says
/// is due; rows a dead relay had taken are visible again, and nothing is restored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_due_brings_back_a_due_job_and_writeback_whose_message_was_lost()
-> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let now = t0();
    let job_id = new_job(&store, "restore", now).await;
    let writeback = store.job(job_id).await?.expect("the job").writebacks[0].id;
    // A published message leaves no row; the process that held it in memory died.
    count(
        &env,
        "WITH d AS (DELETE FROM outbox RETURNING 1) SELECT count(*) FROM d",
    )
    .await;
    assert_eq!(store.restore_due(now).await?, 2);
    assert_eq!(outbox_rows(&env, &job_id.to_string()).await, 1);
    assert_eq!(outbox_rows(&env, &writeback.to_string()).await, 1);
    assert_eq!(store.restore_due(now).await?, 0);
    // A relay that died mid-publish hid its rows; the rebuild shows them again.
    count(
        &env,
        "WITH u AS (UPDATE outbox SET relay_until = now() + interval '1 hour' RETURNING 1) \
         SELECT count(*) FROM u",
    )
    .await;
    assert_eq!(store.restore_due(now).await?, 0);
    assert!(store.next_due().await?.is_some_and(|due| due <= now));
    Ok(())
}
