//! The HubSpot source and writeback end to end: the real RabbitMQ and PostgreSQL, the
//! simulator as ConnectSafely, and wiremock as HubSpot's CRM v3 contacts API.

use crate::harness::fake_hubspot::*;
use crate::harness::*;
use axum::http::Method;
use chrono::{DateTime, Utc};
use leadlink::config::Config;
use leadlink::crm::{Clients, Writers};
use leadlink::job::{Status, WritebackTarget};
use leadlink::secret::Secret;
use leadlink::signature::hubspot::sign_v3;
use leadlink::store::{WritebackResult, WritebackWork};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
const CLIENT_SECRET: &str = "hs-client-secret-0b7c2a1e";
const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
/// The base URL HubSpot calls, which its signatures cover.
const PUBLIC_URL: &str = "https://hooks.example.com";
const BATCH: &str = "/webhooks/hubspot";
const WORKFLOW: &str = "/webhooks/hubspot/workflow";

// ---- helpers -------------------------------------------------------------------------------

/// The test configuration plus the HubSpot source and CRM, pointed at `hubspot`. `crm_extra`
/// goes at the end of `[crm.hubspot]` (keys, then sub-tables).
fn config(env: &TestEnv, hubspot: &MockServer, crm_extra: &str) -> Config {
    config_with(env, hubspot, "", crm_extra)
}

/// The same, with `source_extra` at the end of `[sources.hubspot]`.
fn config_with(env: &TestEnv, hubspot: &MockServer, source_extra: &str, crm_extra: &str) -> Config {
    let text = format!(
        r#"{base}
[crm]
probe_interval = "1s"
[sources.hubspot]
client_secret = "{CLIENT_SECRET}"
public_url = "{PUBLIC_URL}"
triggers = [
  {{ property = "hs_lead_status", value = "QUALIFIED" }},
  {{ property = "lifecyclestage", value = "salesqualifiedlead" }},
]
{source_extra}
[crm.hubspot]
base_url = "{uri}"
access_token = "{TOKEN}"
timeout = "2s"
{crm_extra}
"#,
        base = env.config_text(),
        uri = hubspot.uri(),
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

/// A `contact.propertyChange` event as HubSpot sends it.
fn change(event_id: u64, object_id: u64, property: &str, value: &str) -> Value {
    json!({
        "eventId": event_id, "subscriptionId": 2_345_678, "portalId": 62515, "appId": 54321,
        "occurredAt": Utc::now().timestamp_millis(), "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0, "objectId": object_id, "propertyName": property,
        "propertyValue": value, "changeSource": "CRM"
    })
}

fn qualified(event_id: u64, object_id: u64) -> Value {
    change(event_id, object_id, "hs_lead_status", "QUALIFIED")
}

/// Posts `body` to `path` signed with v3 by `secret` at `at`, as HubSpot would.
async fn post_v3(
    app: &TestApp,
    path: &str,
    body: &[u8],
    secret: &str,
    at: DateTime<Utc>,
) -> (u16, Value) {
    let signed_uri = format!("{PUBLIC_URL}{path}");
    let headers = sign_v3(&Method::POST, &signed_uri, body, &Secret::new(secret), at).unwrap();
    let mut request = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    answer(request.body(body.to_vec()).send().await.unwrap()).await
}

async fn send_batch(app: &TestApp, events: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(events).unwrap();
    post_v3(app, BATCH, &body, CLIENT_SECRET, Utc::now()).await
}

/// The id of the one job of `record`, waiting for it to be committed.
async fn job_of(app: &TestApp, record: &str) -> Uuid {
    let job = app.only_job_of(record).await;
    assert_eq!(job.source, "hubspot");
    job.id
}

fn changed_at(properties: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(properties["linkedin_status_changed_at"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("changed-at in {properties}: {e}"))
        .with_timezone(&Utc)
}

// ---- tests ---------------------------------------------------------------------------------

both_backends! {
    /// `sources.hubspot.withdraw_triggers`: a change that calls the contact off cancels its
    /// waiting job, written back; a contact without one changes nothing.
    async fn a_withdraw_trigger_cancels_the_contacts_waiting_job(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        let reset = Utc::now() + chrono::Duration::days(2);
        env.sim_put(
            "accounts/acc_default",
            json!({"limit": 5, "used": 5, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        contact(&hubspot, 401, json!({"hs_linkedin_url": profile_url("called-off")})).await;
        accept_patches(&hubspot).await;
        let source = r#"withdraw_triggers = [{ property = "hs_lead_status", value = "UNQUALIFIED" }]"#;
        let app = env.start(config_with(&env, &hubspot, source, "")).await;
        send_batch(&app, &json!([qualified(1, 401)])).await;
        let id = job_of(&app, "401").await;
        app.wait_for(id, Status::Held).await;
        let off = json!([
            change(2, 401, "hs_lead_status", "unqualified"),
            change(3, 499, "hs_lead_status", "UNQUALIFIED"),
        ]);
        let (status, body) = send_batch(&app, &off).await;
        assert_eq!((status, &body["cancelled"]), (200, &json!(1)), "{body}");
        assert_eq!(app.job(id).await.status, Status::Cancelled);
        eventually(WAIT, "the contact told it was cancelled", || async {
            patched_statuses(&hubspot, 401, "linkedin_connection_status").await.last().map(String::as_str)
                == Some("cancelled")
        })
        .await;
        // In one batch the later of a qualification and a call-off counts: called off after
        // it qualified, the contact gets no job; qualified again after, it gets one.
        contact(&hubspot, 402, json!({"hs_linkedin_url": profile_url("changed-mind")})).await;
        let at = |seconds: i64| (Utc::now() + chrono::Duration::seconds(seconds)).timestamp_millis();
        let mut qualify = qualified(10, 402);
        qualify["occurredAt"] = json!(at(-2));
        let mut off = change(11, 402, "hs_lead_status", "UNQUALIFIED");
        off["occurredAt"] = json!(at(-1));
        let (status, body) = send_batch(&app, &json!([off.clone(), qualify])).await;
        assert_eq!((status, &body["accepted"]), (200, &json!(0)), "{body}");
        assert!(app.jobs_of("402").await.is_empty());
        let mut again = qualified(12, 402);
        again["occurredAt"] = json!(at(0));
        let (status, body) = send_batch(&app, &json!([again, off])).await;
        assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
        assert_eq!(app.jobs_of("402").await.len(), 1);
        assert_eq!(env.total_invitations().await, 0);
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// `sources.hubspot.priority_property` is read with the contact as the job's priority,
    /// and a `propertyChange` of it while the job waits updates the job: after the reset the
    /// week's one request goes to the contact whose score was raised.
    async fn the_priority_property_orders_waiting_contacts_and_its_changes_update_them(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        let reset = Utc::now() + chrono::Duration::seconds(8);
        env.sim_put(
            "accounts/acc_hs",
            json!({"limit": 1, "used": 1, "weeklyReset": reset.to_rfc3339()}),
        )
        .await;
        for (id, score) in [(301, "10"), (302, "50.4"), (303, "30")] {
            let properties = json!({"hs_linkedin_url": profile_url(&format!("score-{id}")),
                                    "hubspotscore": score, "hubspot_owner_id": "7"});
            contact(&hubspot, id, properties).await;
        }
        accept_patches(&hubspot).await;
        let source = "priority_property = \"hubspotscore\"";
        let owners = "[crm.hubspot.owners]\n\"7\" = \"acc_hs\"\n";
        let app = env.start(config_with(&env, &hubspot, source, owners)).await;
        let batch = json!([qualified(1, 301), qualified(2, 302), qualified(3, 303)]);
        let (status, body) = send_batch(&app, &batch).await;
        assert_eq!((status, &body["accepted"]), (200, &json!(3)), "{body}");
        let mut ids = Vec::new();
        for (record, score) in [("301", 10), ("302", 50), ("303", 30)] {
            let id = job_of(&app, record).await;
            let job = app.wait_for(id, Status::Held).await;
            assert_eq!(job.priority, score, "{job:#?}");
            ids.push(id);
        }
        for read in requests(&hubspot, "GET").await {
            let query = read.url.query().unwrap_or_default().to_string();
            assert!(query.contains("hubspotscore"), "the score was not read: {query}");
        }
        let (status, body) = send_batch(&app, &json!([change(4, 301, "hubspotscore", "90")])).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((&body["priorityUpdates"], &body["ignored"]), (&json!(1), &json!(0)), "{body}");
        assert_eq!(app.job(ids[0]).await.priority, 90);
        // A change that happened before the last one (HubSpot retrying a batch late) is old
        // news: the job keeps 90.
        let mut late = change(5, 301, "hubspotscore", "5");
        late["occurredAt"] = json!((Utc::now() - chrono::Duration::minutes(5)).timestamp_millis());
        let (status, body) = send_batch(&app, &json!([late])).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.job(ids[0]).await.priority, 90);

        app.wait_for_within(ids[0], Status::Sent, WAIT + WAIT).await;
        for &id in &ids[1..] {
            let job = app.job(id).await;
            assert_eq!(job.status, Status::Held, "{job:#?}");
        }
        assert_eq!(env.total_invitations().await, 1);
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_signed_mixed_batch_makes_jobs_only_for_qualified_contacts(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            101,
            json!({"hs_linkedin_url": profile_url("hs-ada"), "firstname": "Ada"}),
        )
        .await;
        contact(
            &hubspot,
            104,
            json!({"hs_linkedin_url": profile_url("hs-bo"), "firstname": "Bo"}),
        )
        .await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;

        let events = json!([
            qualified(1, 101),
            change(2, 102, "hs_lead_status", "NEW"),
            {"eventId": 3, "portalId": 62515, "objectId": 103, "occurredAt": 1_700_000_000_000_i64,
             "subscriptionType": "contact.deletion", "attemptNumber": 0},
            qualified(1, 101),
            change(4, 101, "lifecyclestage", "salesqualifiedlead"),
            {"eventId": 5, "portalId": 62515, "subscriptionType": "contact.propertyChange",
             "propertyName": "hs_lead_status", "propertyValue": "QUALIFIED"},
            qualified(6, 104),
        ]);
        let (status, body) = send_batch(&app, &events).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"accepted": 2, "duplicates": 2, "ignored": 2, "malformed": 1, "priorityUpdates": 0, "cancelled": 0})
        );

        let ada = job_of(&app, "101").await;
        let bo = job_of(&app, "104").await;
        for unqualified in ["102", "103"] {
            assert!(app.jobs_of(unqualified).await.is_empty());
        }
        // The second qualifying change attached to the open job (the repeated event is caught
        // by its delivery id before that).
        let job = app.job(ada).await;
        let attached = job.events("duplicate_event");
        assert_eq!(attached.len(), 1, "{:#?}", job.history);
        assert_eq!(attached[0].detail["deliveryId"], "62515/4/101");

        let job = app.wait_for(ada, Status::Sent).await;
        assert_eq!(job.account_id, "acc_default");
        assert_eq!(job.lead.first_name.as_deref(), Some("Ada"));
        app.wait_for(bo, Status::Sent).await;
        assert_eq!(env.invitations("acc_default", "hs-ada").await, 1);
        assert_eq!(env.invitations("acc_default", "hs-bo").await, 1);
        assert_eq!(env.total_invitations().await, 2);

        // HubSpot retries the whole batch: every qualified event is now a duplicate.
        let (status, body) = send_batch(&app, &events).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"accepted": 0, "duplicates": 4, "ignored": 2, "malformed": 1, "priorityUpdates": 0, "cancelled": 0})
        );
        assert_eq!(app.jobs_of("101").await.len(), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(env.total_invitations().await, 2);

        // A body that is not a batch at all is refused as a whole.
        let (status, _) = post_v3(
            &app,
            BATCH,
            b"{\"not\":\"an array\"}",
            CLIENT_SECRET,
            Utc::now(),
        )
        .await;
        assert_eq!(status, 400);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn enrichment_reads_the_contact_and_routes_it_to_its_owners_account(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        // Only the expected read is answered; anything else gets wiremock's 404 (job failed).
        for (id, slug, owner) in [(201, "owned-by-rep", "123"), (202, "owned-by-other", "999")] {
            Mock::given(method("GET"))
                .and(path(format!("{CONTACTS}/{id}")))
                .and(query_param(
                    "properties",
                    "hs_linkedin_url,firstname,lastname,company,hubspot_owner_id",
                ))
                .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "id": id.to_string(),
                    "properties": {"hs_linkedin_url": profile_url(slug), "firstname": "Grace",
                                   "lastname": "Hopper", "company": "Navy",
                                   "hubspot_owner_id": owner, "hs_object_id": id.to_string()}
                })))
                .mount(&hubspot)
                .await;
        }
        accept_patches(&hubspot).await;
        let extra = "[crm.hubspot.owners]\n\"123\" = \"acc_rep\"\n";
        let mut app = env.start(config(&env, &hubspot, extra)).await;

        let (status, body) = send_batch(&app, &json!([qualified(1, 201), qualified(2, 202)])).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 2, "{body}");
        let rep = job_of(&app, "201").await;
        let other = job_of(&app, "202").await;
        let rep_job = app.wait_for(rep, Status::Sent).await;
        let other_job = app.wait_for(other, Status::Sent).await;
        assert_eq!(rep_job.account_id, "acc_rep");
        assert_eq!(other_job.account_id, "acc_default");
        assert_eq!(rep_job.lead.last_name.as_deref(), Some("Hopper"));
        assert_eq!(rep_job.lead.company.as_deref(), Some("Navy"));
        assert_eq!(env.invitations("acc_rep", "owned-by-rep").await, 1);
        assert_eq!(env.invitations("acc_default", "owned-by-rep").await, 0);
        assert_eq!(env.invitations("acc_default", "owned-by-other").await, 1);
        assert_eq!(env.invitations("acc_rep", "owned-by-other").await, 0);

        // One read per contact, each with the private-app token.
        let reads = requests(&hubspot, "GET").await;
        assert_eq!(reads.len(), 2, "{reads:?}");
        for read in &reads {
            assert_eq!(
                read.headers.get("authorization").unwrap().to_str()?,
                format!("Bearer {TOKEN}")
            );
        }
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn each_status_is_written_back_in_order(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            301,
            json!({"hs_linkedin_url": profile_url("in-order")}),
        )
        .await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        let (status, body) = send_batch(&app, &json!([qualified(1, 301)])).await;
        assert_eq!(
            (status, body["accepted"].clone()),
            (200, json!(1)),
            "{body}"
        );
        let id = job_of(&app, "301").await;
        let job = app.wait_for(id, Status::Sent).await;

        eventually(WAIT, "queued and sent patched", || async {
            patches(&hubspot, 301).await.len() >= 2
        })
        .await;
        // Nothing more arrives later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bodies = patches(&hubspot, 301).await;
        let statuses: Vec<&str> = bodies
            .iter()
            .map(|p| p["linkedin_connection_status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["queued", "sent"], "{bodies:#?}");
        let (queued, sent) = (&bodies[0], &bodies[1]);
        assert_eq!(queued["linkedin_profile_urn"], "");
        assert_eq!(queued["linkedin_last_error"], "");
        assert_eq!(
            sent["linkedin_profile_urn"],
            job.profile_urn.as_deref().unwrap()
        );
        assert!(
            sent["linkedin_profile_urn"]
                .as_str()
                .unwrap()
                .starts_with("urn:li:fsd_profile:"),
            "{sent}"
        );
        assert!(changed_at(queued) <= changed_at(sent));
        for key in ["linkedin_hold_until", "linkedin_retry_at"] {
            assert_eq!(sent[key], "", "{sent}");
        }
        // Only the configured status properties are written, never the LinkedIn URL.
        assert_eq!(sent.as_object().unwrap().len(), 6, "{sent}");
        assert!(sent.get("hs_linkedin_url").is_none());
        for patch in requests(&hubspot, "PATCH").await {
            assert_eq!(
                patch.headers.get("authorization").unwrap().to_str()?,
                format!("Bearer {TOKEN}")
            );
        }

        let writebacks = app.job(id).await.writebacks_to("hubspot");
        let states: Vec<(i64, &str)> = writebacks
            .iter()
            .map(|w| (i64::from(w.sequence), w.state.as_str()))
            .collect();
        assert_eq!(states, [(1, "delivered"), (2, "delivered")]);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn configured_property_names_are_read_and_written(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("{CONTACTS}/351")))
            .and(query_param(
                "properties",
                "li_profile,firstname,lastname,company,hubspot_owner_id",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "351",
                "properties": {"li_profile": profile_url("custom-names"),
                               "hs_linkedin_url": profile_url("not-this-one")}
            })))
            .mount(&hubspot)
            .await;
        accept_patches(&hubspot).await;
        let extra = "linkedin_url_property = \"li_profile\"\n[crm.hubspot.properties]\nstatus = \"li_status\"\nprofile_urn = \"li_urn\"\n";
        let mut app = env.start(config(&env, &hubspot, extra)).await;
        send_batch(&app, &json!([qualified(1, 351)])).await;
        let id = job_of(&app, "351").await;
        app.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_default", "custom-names").await, 1);
        assert_eq!(env.invitations("acc_default", "not-this-one").await, 0);

        eventually(WAIT, "queued and sent patched", || async {
            patched_statuses(&hubspot, 351, "li_status").await == ["queued", "sent"]
        })
        .await;
        let sent = patches(&hubspot, 351).await.pop().unwrap();
        assert!(sent.get("linkedin_connection_status").is_none(), "{sent}");
        assert!(
            sent["li_urn"].as_str().unwrap().starts_with("urn:li:"),
            "{sent}"
        );
        // The names left at their defaults are still written.
        assert!(sent["linkedin_status_changed_at"].is_string(), "{sent}");
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

/// Contact `id`'s first PATCH answers 429 with `Retry-After: 2`, its second 503; later
/// ones fall through to the mocks behind. Returns the failed PATCHes' arrival times, to
/// check that Retry-After was honoured.
async fn throttle_then_fail_one_patch(hubspot: &MockServer, id: u64) -> Arc<Mutex<Vec<Instant>>> {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = arrivals.clone();
    Mock::given(method("PATCH"))
        .and(path(format!("{CONTACTS}/{id}")))
        .respond_with(move |_: &Request| {
            log.lock().unwrap().push(Instant::now());
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "2")
                .set_body_json(json!({
                    "status": "error",
                    "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"
                }))
        })
        .up_to_n_times(1)
        .with_priority(1)
        .mount(hubspot)
        .await;
    let log = arrivals.clone();
    Mock::given(method("PATCH"))
        .and(path(format!("{CONTACTS}/{id}")))
        .respond_with(move |_: &Request| {
            log.lock().unwrap().push(Instant::now());
            ResponseTemplate::new(503).set_body_string("upstream unavailable")
        })
        .up_to_n_times(1)
        .with_priority(2)
        .mount(hubspot)
        .await;
    arrivals
}

both_backends! {
    async fn throttled_and_unavailable_writebacks_are_retried_then_delivered(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            401,
            json!({"hs_linkedin_url": profile_url("slow-crm")}),
        )
        .await;
        let arrivals = throttle_then_fail_one_patch(&hubspot, 401).await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        send_batch(&app, &json!([qualified(1, 401)])).await;
        let id = job_of(&app, "401").await;
        app.wait_for(id, Status::Sent).await;

        eventually(WAIT, "both statuses delivered to HubSpot", || async {
            let job = app.job(id).await;
            let writebacks = job.writebacks_to("hubspot");
            writebacks.len() == 2 && writebacks.iter().all(|w| w.state == "delivered")
        })
        .await;
        let statuses = patched_statuses(&hubspot, 401, "linkedin_connection_status").await;
        assert_eq!(statuses, ["queued", "queued", "queued", "sent"]);
        let job = app.job(id).await;
        assert_eq!(
            job.status,
            Status::Sent,
            "a failing CRM never touches the job"
        );
        let writebacks = job.writebacks_to("hubspot");
        assert_eq!(writebacks[0].attempts, 3, "{writebacks:#?}");
        assert_eq!(writebacks[1].attempts, 1, "{writebacks:#?}");
        // The failed tries are in the history with HubSpot's answers.
        let errors: Vec<&str> = job
            .events("writeback")
            .into_iter()
            .filter(|e| e.detail["target"] == "hubspot")
            .filter_map(|e| e.detail["error"].as_str())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("HTTP 429"), "{errors:?}");
        assert!(errors[1].contains("HTTP 503"), "{errors:?}");
        // Retry-After: 2 was waited out (the backoff alone would be 300 ms).
        let arrivals = arrivals.lock().unwrap().clone();
        assert_eq!(arrivals.len(), 2);
        assert!(
            arrivals[1] - arrivals[0] >= Duration::from_millis(1900),
            "{:?}",
            arrivals[1] - arrivals[0]
        );
        assert_eq!(env.invitations("acc_default", "slow-crm").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_deleted_contact_parks_its_writebacks_and_fails_its_read(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        // 501 exists when read, and is deleted before the writebacks arrive.
        contact(
            &hubspot,
            501,
            json!({"hs_linkedin_url": profile_url("deleted-later")}),
        )
        .await;
        Mock::given(method("PATCH"))
            .and(path(format!("{CONTACTS}/501")))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "status": "error", "message": "resource not found",
                "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf", "category": "OBJECT_NOT_FOUND"
            })))
            .mount(&hubspot)
            .await;
        // 502 is gone already: its read is a 404.
        Mock::given(method("GET"))
            .and(path(format!("{CONTACTS}/502")))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"
            })))
            .mount(&hubspot)
            .await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        send_batch(&app, &json!([qualified(1, 501), qualified(2, 502)])).await;
        let deleted = job_of(&app, "501").await;
        let gone = job_of(&app, "502").await;

        app.wait_for(deleted, Status::Sent).await;
        eventually(WAIT, "501's HubSpot writebacks parked", || async {
            let writebacks = app.job(deleted).await.writebacks_to("hubspot");
            writebacks.len() == 2 && writebacks.iter().all(|w| w.state == "parked")
        })
        .await;
        let job = app.job(deleted).await;
        assert_eq!(job.status, Status::Sent);
        for writeback in job.writebacks_to("hubspot") {
            let error = writeback.last_error.as_deref().unwrap();
            assert!(error.contains("deleted or merged"), "{error}");
            assert!(
                error.contains("OBJECT_NOT_FOUND: resource not found"),
                "{error}"
            );
            // A permanent error is not retried.
            assert_eq!(writeback.attempts, 1, "{writeback:?}");
        }
        // The callback target is not held up by HubSpot's refusal.
        eventually(WAIT, "callbacks delivered", || async {
            env.callback_statuses(deleted) == ["queued", "sent"]
        })
        .await;
        assert_eq!(patches(&hubspot, 501).await.len(), 2);

        let failed = app.wait_for(gone, Status::Failed).await;
        let error = failed.error.as_deref().unwrap();
        assert!(error.contains("gone"), "{error}");
        assert!(error.contains("404"), "{error}");
        assert_eq!(env.total_invitations().await, 1);
        // A read that 404s is not tried again.
        let reads = requests(&hubspot, "GET").await;
        assert_eq!(
            reads
                .iter()
                .filter(|r| r.url.path() == format!("{CONTACTS}/502"))
                .count(),
            1
        );
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn bad_stale_and_missing_signatures_are_refused_and_change_nothing(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            601,
            json!({"hs_linkedin_url": profile_url("never")}),
        )
        .await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        let body = serde_json::to_vec(&json!([qualified(1, 601)]))?;
        let workflow = serde_json::to_vec(
            &json!({"objectId": 601, "properties": {"hs_linkedin_url": profile_url("never")}}),
        )?;

        let (status, answer_body) = post_v3(&app, BATCH, &body, "not-the-secret", Utc::now()).await;
        assert_eq!(status, 401, "{answer_body}");
        let stale = Utc::now() - chrono::Duration::minutes(6);
        let (status, answer_body) = post_v3(&app, BATCH, &body, CLIENT_SECRET, stale).await;
        assert_eq!(status, 401, "{answer_body}");
        assert!(
            answer_body.to_string().to_lowercase().contains("timestamp"),
            "{answer_body}"
        );
        let unsigned = app
            .http
            .post(app.url(BATCH))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        assert_eq!(unsigned.status().as_u16(), 401);
        // Signed for another body (tampered in transit).
        let signed_uri = format!("{PUBLIC_URL}{BATCH}");
        let other = serde_json::to_vec(&json!([qualified(1, 602)]))?;
        let mut request = app.http.post(app.url(BATCH));
        for (name, value) in sign_v3(
            &Method::POST,
            &signed_uri,
            &other,
            &Secret::new(CLIENT_SECRET),
            Utc::now(),
        )? {
            request = request.header(name, value);
        }
        let (status, _) = answer(request.body(body.clone()).send().await?).await;
        assert_eq!(status, 401);
        // A wrong v1 signature, and a workflow request with the wrong secret.
        let (status, _) = post_v1(&app, &body, &v1_signature("not-the-secret", &body)).await;
        assert_eq!(status, 401);
        let (status, _) = post_v3(&app, WORKFLOW, &workflow, "not-the-secret", Utc::now()).await;
        assert_eq!(status, 401);

        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(app.jobs_of("601").await.is_empty());
        assert!(app.jobs_of("602").await.is_empty());
        assert!(hubspot.received_requests().await.unwrap().is_empty());
        assert_eq!(env.total_invitations().await, 0);

        // The same request correctly signed is taken: the refusals were about the signatures.
        let (status, answer_body) = post_v3(&app, BATCH, &body, CLIENT_SECRET, Utc::now()).await;
        assert_eq!((status, answer_body["accepted"].clone()), (200, json!(1)));
        job_of(&app, "601").await;
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

fn v1_signature(secret: &str, body: &[u8]) -> String {
    Sha256::new()
        .chain_update(secret.as_bytes())
        .chain_update(body)
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn post_v1(app: &TestApp, body: &[u8], signature: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(BATCH))
        .header("content-type", "application/json")
        .header("X-HubSpot-Signature", signature)
        .header("X-HubSpot-Signature-Version", "v1")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    answer(response).await
}

both_backends! {
    async fn app_subscriptions_signed_with_v1_are_accepted(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            651,
            json!({"hs_linkedin_url": profile_url("v-one")}),
        )
        .await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        let body = serde_json::to_vec(&json!([qualified(1, 651)]))?;
        let (status, answer_body) = post_v1(&app, &body, &v1_signature(CLIENT_SECRET, &body)).await;
        assert_eq!(status, 200, "{answer_body}");
        assert_eq!(answer_body["accepted"], 1);
        let id = job_of(&app, "651").await;
        app.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_default", "v-one").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_contact_without_a_linkedin_url_is_invalid_and_written_back(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            701,
            json!({"firstname": "No", "lastname": "Profile", "hs_linkedin_url": ""}),
        )
        .await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        send_batch(&app, &json!([qualified(1, 701)])).await;
        let id = job_of(&app, "701").await;
        let job = app.wait_for(id, Status::Invalid).await;
        let error = job.error.as_deref().unwrap();
        assert!(error.contains("hs_linkedin_url"), "{error}");

        eventually(WAIT, "queued and invalid patched", || async {
            patched_statuses(&hubspot, 701, "linkedin_connection_status").await == ["queued", "invalid"]
        })
        .await;
        let invalid = patches(&hubspot, 701).await.pop().unwrap();
        let written = invalid["linkedin_last_error"].as_str().unwrap();
        assert!(written.contains("hs_linkedin_url"), "{invalid}");
        assert_eq!(invalid["linkedin_profile_urn"], "");
        assert_eq!(env.total_invitations().await, 0);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_workflow_payload_with_the_url_needs_no_read(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        accept_patches(&hubspot).await;
        let extra = "[crm.hubspot.owners]\n\"123\" = \"acc_rep\"\n";
        let mut app = env.start(config(&env, &hubspot, extra)).await;
        let payload = json!({
            "objectId": 801,
            "properties": {
                "hs_linkedin_url": {"value": profile_url("from-workflow")},
                "firstname": "Wanda", "lastname": "Flow", "company": "Acme",
                "hubspot_owner_id": 123, "email": "wanda@example.com"
            }
        });
        let body = serde_json::to_vec(&payload)?;
        let (status, first) = post_v3(&app, WORKFLOW, &body, CLIENT_SECRET, Utc::now()).await;
        assert_eq!(status, 202, "{first}");
        let id = job_id(&first);
        // A second run of the workflow while the job is open attaches to it.
        let (status, again) = post_v3(&app, WORKFLOW, &body, CLIENT_SECRET, Utc::now()).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(job_id(&again), id);
        assert_eq!(again["duplicate"], true);

        let job = app.wait_for(id, Status::Sent).await;
        assert_eq!(job.record_id, "801");
        assert_eq!(job.account_id, "acc_rep");
        assert_eq!(job.lead.first_name.as_deref(), Some("Wanda"));
        assert_eq!(env.invitations("acc_rep", "from-workflow").await, 1);
        assert_eq!(env.total_invitations().await, 1);
        eventually(WAIT, "queued and sent patched", || async {
            patched_statuses(&hubspot, 801, "linkedin_connection_status").await == ["queued", "sent"]
        })
        .await;
        assert!(
            requests(&hubspot, "GET").await.is_empty(),
            "the workflow payload carried the URL: no read expected"
        );

        // A flat payload without a record id is refused.
        let flat = serde_json::to_vec(&json!({"firstname": "Nobody"}))?;
        let (status, _) = post_v3(&app, WORKFLOW, &flat, CLIENT_SECRET, Utc::now()).await;
        assert_eq!(status, 400);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn refused_credentials_pause_hubspot_writebacks_until_they_work_again(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            901,
            json!({"hs_linkedin_url": profile_url("token-revoked")}),
        )
        .await;
        let token_works = Arc::new(AtomicBool::new(false));
        let works = token_works.clone();
        Mock::given(method("PATCH"))
            .and(path(format!("{CONTACTS}/901")))
            .respond_with(move |_: &Request| {
                if works.load(Ordering::SeqCst) {
                    ResponseTemplate::new(200).set_body_json(json!({"id": "901"}))
                } else {
                    ResponseTemplate::new(401).set_body_json(json!({
                        "status": "error", "category": "INVALID_AUTHENTICATION",
                        "message": "Authentication credentials not found."
                    }))
                }
            })
            .mount(&hubspot)
            .await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        send_batch(&app, &json!([qualified(1, 901)])).await;
        let id = job_of(&app, "901").await;
        app.wait_for(id, Status::Sent).await;

        // Probed again after probe_interval, and still refused.
        eventually(WAIT, "two refused PATCHes", || async {
            patches(&hubspot, 901).await.len() >= 2
        })
        .await;
        // The fake has answered before the try's outcome is committed: a try in flight counts
        // until then, so wait for the commit before looking.
        eventually(WAIT, "a paused try is not counted", || async {
            let writebacks = app.job(id).await.writebacks_to("hubspot");
            writebacks
                .first()
                .is_some_and(|w| w.state == "pending" && w.attempts == 0)
        })
        .await;
        let job = app.job(id).await;
        assert_eq!(
            job.status,
            Status::Sent,
            "the job is not failed for the CRM's credentials"
        );
        let writebacks = job.writebacks_to("hubspot");
        assert_eq!(writebacks[0].state, "pending", "{writebacks:#?}");
        assert_eq!(writebacks[0].attempts, 0, "a paused try is not counted");
        let error = writebacks[0].last_error.as_deref().unwrap();
        assert!(error.contains("401") || error.contains("paused"), "{error}");
        // Every refused PATCH was the oldest change: the newer one waits behind it.
        assert!(
            patched_statuses(&hubspot, 901, "linkedin_connection_status")
                .await
                .iter()
                .all(|s| s == "queued")
        );
        // The callback is another target and is not paused.
        eventually(WAIT, "callbacks delivered", || async {
            env.callback_statuses(id) == ["queued", "sent"]
        })
        .await;

        token_works.store(true, Ordering::SeqCst);
        eventually(WAIT, "HubSpot writebacks delivered", || async {
            let writebacks = app.job(id).await.writebacks_to("hubspot");
            writebacks.len() == 2 && writebacks.iter().all(|w| w.state == "delivered")
        })
        .await;
        let statuses = patched_statuses(&hubspot, 901, "linkedin_connection_status").await;
        assert_eq!(statuses.last().unwrap(), "sent");
        assert_eq!(
            statuses.iter().filter(|s| *s == "sent").count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(app.job(id).await.status, Status::Sent);
        assert_eq!(env.invitations("acc_default", "token-revoked").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// HubSpot sends up to 10 requests at once: events for one contact racing each other still
    /// make one job (the unique index over open jobs per record settles it).
    async fn concurrent_requests_for_one_contact_make_one_job(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            1001,
            json!({"hs_linkedin_url": profile_url("raced")}),
        )
        .await;
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        // HubSpot sends up to 10 requests at once: here each carries another qualifying change
        // of the same contact.
        let sends = (0..10u64).map(|n| {
            let app = &app;
            let (property, value) = if n % 2 == 0 {
                ("hs_lead_status", "QUALIFIED")
            } else {
                ("lifecyclestage", "salesqualifiedlead")
            };
            async move { send_batch(app, &json!([change(100 + n, 1001, property, value)])).await }
        });
        let answers = futures_util::future::join_all(sends).await;
        let accepted: u64 = answers
            .iter()
            .map(|(status, body)| {
                assert_eq!(*status, 200, "{body}");
                body["accepted"].as_u64().unwrap()
            })
            .sum();
        assert_eq!(accepted, 1, "{answers:?}");
        let id = job_of(&app, "1001").await;
        app.wait_for(id, Status::Sent).await;
        eventually(WAIT, "queued and sent patched", || async {
            patched_statuses(&hubspot, 1001, "linkedin_connection_status").await == ["queued", "sent"]
        })
        .await;
        assert_eq!(requests(&hubspot, "GET").await.len(), 1);
        assert_eq!(env.invitations("acc_default", "raced").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn two_contacts_of_one_person_get_one_invitation_and_both_are_written_back(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        for id in [611, 612] {
            contact(
                &hubspot,
                id,
                json!({"hs_linkedin_url": profile_url("one-person")}),
            )
            .await;
        }
        accept_patches(&hubspot).await;
        let mut app = env.start(config(&env, &hubspot, "")).await;
        // The batch carries only ids: which contact is the same person is learned when read.
        let started = Instant::now();
        let (status, body) = send_batch(&app, &json!([qualified(1, 611), qualified(2, 612)])).await;
        assert_eq!(body["accepted"], 2, "{status} {body}");
        let last_status = |id| {
            let hubspot = &hubspot;
            async move {
                patched_statuses(hubspot, id, "linkedin_connection_status")
                    .await
                    .last()
                    .cloned()
            }
        };
        eventually(WAIT, "both contacts written back sent", || async {
            last_status(611).await.as_deref() == Some("sent")
                && last_status(612).await.as_deref() == Some("sent")
        })
        .await;
        // At once, not on a later look at the other job.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(env.invitations("acc_default", "one-person").await, 1);
        assert_eq!(env.total_invitations().await, 1);
        // The job that sent is found by either contact.
        let sent_by: Vec<Vec<Uuid>> = {
            let mut all = Vec::new();
            for record in ["611", "612"] {
                let mut sent = Vec::new();
                for job in app.jobs_of(record).await {
                    if job.status == Status::Sent && job.attempts == 1 {
                        sent.push(job.id);
                    }
                }
                all.push(sent);
            }
            all
        };
        assert_eq!(sent_by[0].len(), 1, "{sent_by:?}");
        assert_eq!(sent_by[0], sent_by[1], "{sent_by:?}");
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

/// A writeback of `status` for contact `record`, as a worker holds it under `lease`.
fn hubspot_work(id: i64, record: &str, lease: chrono::Duration) -> WritebackWork {
    let job_id = uuid::Uuid::now_v7();
    let snapshot = json!({
        "jobId": job_id, "recordId": record, "recordObject": "contact", "accountId": "acc_default",
        "status": "sent", "profileUrn": null, "holdUntil": null, "retryAt": null, "attempts": 1,
        "error": null, "sequence": 2, "changedAt": Utc::now(),
    });
    WritebackWork {
        id,
        job_id,
        target: WritebackTarget::HubSpot,
        sequence: 2,
        payload: snapshot,
        attempt: 1,
        failing_since: None,
        lease_until: Utc::now() + lease,
    }
}

both_backends! {
    async fn a_spent_hubspot_budget_releases_the_writeback_instead_of_outliving_its_lease(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        // The first PATCH leaves one call in a minute-long window: the client keeps the last one
        // back for other processes, so the next call must wait a minute.
        Mock::given(method("PATCH"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("X-HubSpot-RateLimit-Remaining", "1")
                    .insert_header("X-HubSpot-RateLimit-Interval-Milliseconds", "60000")
                    .set_body_json(json!({"id": "1"})),
            )
            .mount(&hubspot)
            .await;
        let config = config(&env, &hubspot, "");
        let clients = Clients::from_config(&config.crm)?;
        let writers = Writers::from_config(&config.crm, &config.writeback, &clients)?;
        let lease = chrono::Duration::from_std(writers.lease())?;
        assert!(lease < chrono::Duration::seconds(60), "{lease}");
        let first = writers
            .deliver(&hubspot_work(1, "701", lease), Utc::now())
            .await;
        assert_eq!(first, WritebackResult::Delivered);

        let now = Utc::now();
        let second = tokio::time::timeout(
            Duration::from_secs(5),
            writers.deliver(&hubspot_work(2, "702", lease), now),
        )
        .await
        .expect("the writeback waited for HubSpot's budget past its own lease");
        let WritebackResult::Later { at, .. } = second else {
            panic!("not released for later: {second:?}")
        };
        let budget_ends = now + chrono::Duration::seconds(60);
        assert!(
            (at - budget_ends).num_seconds().abs() <= 2,
            "{at} vs {budget_ends}"
        );
        assert_eq!(requests(&hubspot, "PATCH").await.len(), 1);
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_long_hubspot_outage_is_retried_for_the_whole_give_up_time_then_parked(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let hubspot = MockServer::start().await;
        contact(
            &hubspot,
            711,
            json!({"hs_linkedin_url": profile_url("long-outage")}),
        )
        .await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
            .mount(&hubspot)
            .await;
        // No cap on the number of tries: only the time spent failing counts.
        let config = config(&env, &hubspot, "");
        let text = env.config_text().replace(
            "[writeback.retry]\n            max_attempts = 4\n",
            "[writeback.retry]\n            give_up_after = \"4s\"\n",
        );
        assert!(text.contains("give_up_after"));
        let config = Config {
            writeback: Config::from_toml(&text)?.writeback,
            ..config
        };
        let mut app = env.start(config).await;
        let started = Instant::now();
        send_batch(&app, &json!([qualified(1, 711)])).await;
        let id = job_of(&app, "711").await;
        app.wait_for(id, Status::Sent).await;
        eventually(WAIT, "both writebacks parked", || async {
            let writebacks = app.job(id).await.writebacks_to("hubspot");
            writebacks.len() == 2 && writebacks.iter().all(|w| w.state == "parked")
        })
        .await;
        let elapsed = started.elapsed();
        let writebacks = app.job(id).await.writebacks_to("hubspot");
        assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
        // 300 ms doubling to a 1 s cap over 4 s: well over the old limit of 4 tries.
        for writeback in &writebacks {
            assert!(writeback.attempts >= 5, "{writebacks:#?}");
            let error = writeback.last_error.as_deref().unwrap();
            assert!(error.contains("503"), "{error}");
        }
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}
