//! Salesforce end to end: Outbound Messages and signed Flow/Apex callouts in, the real
//! RabbitMQ and PostgreSQL, the simulator as ConnectSafely, and a fake Salesforce (wiremock:
//! the OAuth token endpoint and sObject GET/PATCH) that reads records and takes the statuses.

use crate::harness::admin::JobView;
use crate::harness::fake_salesforce::*;
use crate::harness::*;
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac};
use leadlink::config::Config;
use leadlink::job::Status;
use leadlink::signature::hmac_callout::{self, SignatureEncoding};
use leadlink::signature::standard_webhooks::Signer;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::VecDeque;
use std::time::Duration;
use uuid::Uuid;

/// The URL token of the Outbound Message endpoint.
const SF_TOKEN: &str = "sfTok-4c1e9a7d2b8f6053";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HMAC_SECRET: &str = "apex-shared-secret-0123456789";

// ---------------------------------------------------------------------------------------
// Configuration and requests

fn config(env: &TestEnv, sf: &FakeSalesforce, source_extra: &str) -> Config {
    let text = config_text(env, sf, source_extra);
    Config::from_toml(&text).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

fn config_text(env: &TestEnv, sf: &FakeSalesforce, source_extra: &str) -> String {
    format!(
        r#"{base}
[sources.salesforce]
organization_id = "{org}"
token = "{SF_TOKEN}"
account_id = "acc_sf"
{source_extra}

[crm]
probe_interval = "1s"

[crm.salesforce]
my_domain_url = "{uri}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
timeout = "2s"

[crm.salesforce.owners]
"{REP_15}" = "acc_rep"
"#,
        base = env.config_text(),
        org = org_18(),
        uri = sf.uri(),
    )
}

struct Notification<'a> {
    id: String,
    object: &'a str,
    record_id: String,
    fields: Vec<(&'a str, String)>,
}

fn notification<'a>(
    id: &str,
    object: &'a str,
    record_id: &str,
    fields: &[(&'a str, &str)],
) -> Notification<'a> {
    Notification {
        id: id.to_string(),
        object,
        record_id: record_id.to_string(),
        fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    }
}

/// A Lead's notification carrying only its LinkedIn URL, for the profile `slug`.
fn url_notification(id: &str, record_id: &str, slug: &str) -> Notification<'static> {
    notification(
        id,
        "Lead",
        record_id,
        &[("LinkedIn_URL__c", &profile_url(slug))],
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An Outbound Message as Salesforce sends it.
fn outbound_message(org: &str, notifications: &[Notification<'_>]) -> String {
    let mut items = String::new();
    for n in notifications {
        let mut fields = String::new();
        for (name, value) in &n.fields {
            fields.push_str(&format!(
                "     <sf:{name}>{}</sf:{name}>\n",
                xml_escape(value)
            ));
        }
        items.push_str(&format!(
            r#"   <Notification>
    <Id>{id}</Id>
    <sObject xsi:type="sf:{object}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{record}</sf:Id>
     <sf:Email xsi:nil="true"/>
{fields}    </sObject>
   </Notification>
"#,
            id = n.id,
            object = n.object,
            record = n.record_id,
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>{action}</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/60.0/{ORG_15}</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/60.0/{ORG_15}</PartnerUrl>
{items}  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#,
        action = id18("04k5g000000XyZa"),
    )
}

/// The Ack of the Salesforce documentation, byte for byte.
const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
   <Ack>true</Ack>
  </notificationsResponse>
 </soapenv:Body>
</soapenv:Envelope>"#;

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

async fn post_outbound(app: &TestApp, query: &str, xml: &str) -> Answer {
    let response = app
        .http
        .post(app.url(&format!("/webhooks/salesforce{query}")))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(xml.to_string())
        .send()
        .await
        .unwrap();
    Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: response.text().await.unwrap(),
    }
}

async fn deliver(app: &TestApp, xml: &str) -> Answer {
    post_outbound(app, &format!("?token={SF_TOKEN}"), xml).await
}

fn assert_acked(answer: &Answer) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.content_type.starts_with("text/xml"),
        "{}",
        answer.content_type
    );
    assert_eq!(answer.body, ACK);
}

fn assert_not_acked(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(!answer.body.contains("<Ack>true</Ack>"), "{}", answer.body);
}

/// A record's job as it should end: sent once on `account`, for the profile `slug`.
struct Sent<'a> {
    record: &'a str,
    object: &'a str,
    account: &'a str,
    slug: &'a str,
}

impl<'a> Sent<'a> {
    fn lead(record: &'a str, account: &'a str, slug: &'a str) -> Sent<'a> {
        Sent {
            record,
            object: "Lead",
            account,
            slug,
        }
    }
}

/// The record's one job is sent as `sent` says, and the record hears `queued` then `sent`.
async fn assert_sent_and_written_back(
    env: &TestEnv,
    app: &TestApp,
    sf: &FakeSalesforce,
    sent: Sent<'_>,
) -> JobView {
    let id = app.only_job_of(sent.record).await.id;
    let job = app.wait_for(id, Status::Sent).await;
    assert_eq!(job.record_object.as_deref(), Some(sent.object), "{job:#?}");
    assert_eq!(job.account_id, sent.account, "{job:#?}");
    assert_eq!(
        env.invitations(sent.account, sent.slug).await,
        1,
        "{}",
        sent.slug
    );
    eventually(WAIT, "queued then sent written back", || async {
        sf.written_statuses(sent.record) == ["queued", "sent"]
    })
    .await;
    job
}

/// Nothing at all came of a refused request: no job, no call to Salesforce, no invitation.
async fn assert_nothing_created(env: &TestEnv, app: &TestApp, sf: &FakeSalesforce) {
    // Long enough for a publish and a worker to act, had anything been committed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.jobs("").await.is_empty());
    assert!(sf.calls().is_empty(), "{:?}", sf.calls());
    assert_eq!(env.total_invitations().await, 0);
}

// ---------------------------------------------------------------------------------------
// Outbound Messages

/// An Outbound Message with a Lead with its LinkedIn URL, a Contact without (read from
/// Salesforce, owned by a rep with an account of their own), and a Lead owned by that rep;
/// and the three record ids.
fn lead_contact_and_rep_lead(sf: &FakeSalesforce) -> (String, [String; 3]) {
    let lead = id18("00Q5g00000AbCdE");
    let contact = id18("0035g00000XyZaB");
    let rep_lead = id18("00Q5g00000RpLd1");
    let rep_18 = id18(REP_15);
    sf.add_record(
        "Lead",
        &lead,
        json!({"FirstName": "Ada", "LastName": "Lovelace", "Company": "Analytical",
               "OwnerId": id18("0055g00000Other"), "LinkedIn_URL__c": profile_url("sf-ada-lead")}),
    );
    sf.add_record(
        "Contact",
        &contact,
        json!({"FirstName": "Grace", "LastName": "Hopper", "OwnerId": rep_18,
               "LinkedIn_URL__c": profile_url("sf-grace-contact")}),
    );
    sf.add_record(
        "Lead",
        &rep_lead,
        json!({"FirstName": "Alan", "LastName": "Turing", "Company": "Bletchley",
               "OwnerId": rep_18, "LinkedIn_URL__c": profile_url("sf-alan-lead")}),
    );
    let xml = outbound_message(
        &org_18(),
        &[
            notification(
                &id18("04l5g00000ABCDe"),
                "Lead",
                &lead,
                &[
                    ("FirstName", "Ada"),
                    ("LastName", "Lovelace"),
                    ("Company", "Analytical & Co"),
                    ("LinkedIn_URL__c", &profile_url("sf-ada-lead")),
                ],
            ),
            notification(
                &id18("04l5g00000ABCDf"),
                "Contact",
                &contact,
                &[("FirstName", "Grace"), ("LastName", "Hopper")],
            ),
            notification(
                &id18("04l5g00000ABCDg"),
                "Lead",
                &rep_lead,
                &[
                    ("FirstName", "Alan"),
                    ("OwnerId", &rep_18),
                    ("LinkedIn_URL__c", &profile_url("sf-alan-lead")),
                ],
            ),
        ],
    );
    (xml, [lead, contact, rep_lead])
}

both_backends! {
    async fn a_message_with_a_lead_and_contacts_is_acked_sent_and_written_back_to_each_record(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;

        let (xml, [lead, contact, rep_lead]) = lead_contact_and_rep_lead(&sf);
        assert_acked(&deliver(&app, &xml).await);

        let expectations = [
            (&lead, "Lead", "acc_sf", "sf-ada-lead"),
            (&contact, "Contact", "acc_rep", "sf-grace-contact"),
            (&rep_lead, "Lead", "acc_rep", "sf-alan-lead"),
        ];
        for (record, object, account, slug) in expectations {
            let sent = Sent {
                record,
                object,
                account,
                slug,
            };
            let job = assert_sent_and_written_back(&env, &app, &sf, sent).await;
            let patches = sf.accepted_patches(record);
            assert_eq!(patches[0]["LinkedIn_Profile_URN__c"], Value::Null);
            assert_eq!(
                patches[1]["LinkedIn_Profile_URN__c"],
                job.profile_urn.as_deref().unwrap()
            );
            assert!(
                job.profile_urn
                    .as_deref()
                    .unwrap()
                    .starts_with("urn:li:fsd_profile:")
            );
            assert_eq!(patches[1]["LinkedIn_Last_Error__c"], Value::Null);
            assert!(patches[1]["LinkedIn_Status_Changed_At__c"].is_string());
            // Every call for the record went to its own sObject type.
            assert!(
                sf.calls_for(record).iter().all(|c| c.object == object),
                "{:?}",
                sf.calls_for(record)
            );
        }
        // Only the Contact, whose notification had no URL, was read, with the fields the
        // connect stage needs (a Contact has no Company field).
        let gets: Vec<ApiCall> = sf
            .calls()
            .into_iter()
            .filter(|c| c.method == "GET")
            .collect();
        assert_eq!(gets.len(), 1, "{gets:?}");
        assert_eq!(gets[0].id, contact);
        assert_eq!(gets[0].status, 200);
        let mut asked: Vec<&str> = gets[0].fields.as_deref().unwrap().split(',').collect();
        asked.sort_unstable();
        assert_eq!(
            asked,
            ["FirstName", "LastName", "LinkedIn_URL__c", "OwnerId"]
        );
        // One token for all of it.
        assert_eq!(sf.token_requests(), 1);
        assert_eq!(env.total_invitations().await, 3);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_redelivered_notification_is_acked_again_without_a_second_job(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let lead = id18("00Q5g00000ReDel");
        let other = id18("00Q5g00000ReDe2");
        for (record, slug) in [(&lead, "sf-redelivered"), (&other, "sf-bundled")] {
            sf.add_record(
                "Lead",
                record,
                json!({"LinkedIn_URL__c": profile_url(slug)}),
            );
        }
        let first = url_notification(&id18("04l5g00000RdLv1"), &lead, "sf-redelivered");
        let xml = outbound_message(&org_18(), &[first]);
        assert_acked(&deliver(&app, &xml).await);
        // Salesforce did not see the Ack (a timeout) and sends the same message again.
        assert_acked(&deliver(&app, &xml).await);
        let id = app.only_job_of(&lead).await.id;
        app.wait_for(id, Status::Sent).await;

        // Later, out of order, bundled with a new notification.
        let again = outbound_message(
            &org_18(),
            &[
                url_notification(&id18("04l5g00000RdLv2"), &other, "sf-bundled"),
                url_notification(&id18("04l5g00000RdLv1"), &lead, "sf-redelivered"),
            ],
        );
        assert_acked(&deliver(&app, &again).await);
        let other_id = app.only_job_of(&other).await.id;
        app.wait_for(other_id, Status::Sent).await;

        // A lead whose job ended `profile_not_found` may start a new job, so what stops a
        // redelivery here is the notification id alone.
        let gone = id18("00Q5g00000ReDe3");
        sf.add_record(
            "Lead",
            &gone,
            json!({"LinkedIn_URL__c": profile_url("unknown-sf-gone")}),
        );
        let gone_message = |notification_id: &str| {
            outbound_message(
                &org_18(),
                &[url_notification(notification_id, &gone, "unknown-sf-gone")],
            )
        };
        let gone_xml = gone_message(&id18("04l5g00000RdLv3"));
        assert_acked(&deliver(&app, &gone_xml).await);
        let gone_id = app.only_job_of(&gone).await.id;
        app.wait_for(gone_id, Status::ProfileNotFound).await;
        assert_acked(&deliver(&app, &gone_xml).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.only_job_of(&gone).await.id, gone_id);
        // A new notification for the record (the lead qualified again) is a new job.
        assert_acked(&deliver(&app, &gone_message(&id18("04l5g00000RdLv4"))).await);
        assert_eq!(app.jobs_of(&gone).await.len(), 2);
        app.wait_for(other_id, Status::Sent).await;
        assert_eq!(app.only_job_of(&lead).await.id, id);
        assert_eq!(app.jobs("").await.len(), 4);
        assert_eq!(env.invitations("acc_sf", "sf-redelivered").await, 1);
        assert_eq!(env.invitations("acc_sf", "sf-bundled").await, 1);
        eventually(WAIT, "the first lead written back once", || async {
            sf.written_statuses(&lead) == ["queued", "sent"]
        })
        .await;
        // Nothing more trickles in for the repeated notification.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sf.written_statuses(&lead), ["queued", "sent"]);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn another_orgs_message_is_forbidden_and_the_15_character_org_id_is_accepted(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let lead = id18("00Q5g00000OrgId");
        sf.add_record(
            "Lead",
            &lead,
            json!({"LinkedIn_URL__c": profile_url("sf-org")}),
        );
        let message = |org: &str| {
            outbound_message(
                org,
                &[url_notification(&id18("04l5g00000OrgN1"), &lead, "sf-org")],
            )
        };
        for org in [
            id18("00D5g000004SNFi"),     // another org, well-formed
            "00D5g000004SNFH".into(),    // the case of a character differs: another id
            "00D5g000004SNFhEAA".into(), // a checksum that does not match
            "00D5g000004SNF".into(),
        ] {
            let answer = deliver(&app, &message(&org)).await;
            assert_not_acked(&answer, 403);
            assert!(
                answer.body.contains("another organization"),
                "{org}: {}",
                answer.body
            );
        }
        assert_nothing_created(&env, &app, &sf).await;

        // The configured id is the 18-character form; the 15-character one is the same org.
        assert_acked(&deliver(&app, &message(ORG_15)).await);
        let id = app.only_job_of(&lead).await.id;
        app.wait_for(id, Status::Sent).await;
        assert_eq!(env.invitations("acc_sf", "sf-org").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn an_org_id_configured_with_surrounding_spaces_still_names_the_org(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        // The config check trims the id (a copy-paste from Company Information often carries
        // a space); the comparison must use the same id.
        let text = config_text(&env, &sf, "").replace(
            &format!("organization_id = \"{}\"", org_18()),
            &format!("organization_id = \" {} \"", org_18()),
        );
        assert!(text.contains(&format!("\" {} \"", org_18())));
        let mut app = env.start(Config::from_toml(&text)?).await;
        let lead = id18("00Q5g00000SpAce");
        sf.add_record(
            "Lead",
            &lead,
            json!({"LinkedIn_URL__c": profile_url("sf-space")}),
        );
        let xml = outbound_message(
            &org_18(),
            &[url_notification(
                &id18("04l5g00000SpAce"),
                &lead,
                "sf-space",
            )],
        );
        assert_acked(&deliver(&app, &xml).await);
        let id = app.only_job_of(&lead).await.id;
        app.wait_for(id, Status::Sent).await;
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_missing_or_wrong_url_token_is_unauthorized_and_never_logged(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let lead = id18("00Q5g00000ToKen");
        let xml = outbound_message(
            &org_18(),
            &[url_notification(
                &id18("04l5g00000TkN01"),
                &lead,
                "sf-token",
            )],
        );
        let wrong = "wrongTok-93b1c7e05d2a";
        for query in [
            String::new(),
            "?token=".into(),
            format!("?token={wrong}"),
            format!("?Token={SF_TOKEN}"),
            format!("?token={}", &SF_TOKEN[..SF_TOKEN.len() - 1]),
            format!("?secret={SF_TOKEN}"),
        ] {
            let answer = post_outbound(&app, &query, &xml).await;
            assert_not_acked(&answer, 401);
        }
        assert_nothing_created(&env, &app, &sf).await;

        // The requests were logged, by path; neither token reached the log.
        let logs = logs::captured();
        assert!(
            logs.contains("path=/webhooks/salesforce") && logs.contains("status=401"),
            "the request log is missing:\n{logs}"
        );
        assert!(!logs.contains(wrong), "the presented token was logged");
        assert!(!logs.contains(SF_TOKEN), "the configured token was logged");
        assert!(
            !logs.contains(CLIENT_SECRET),
            "the client secret was logged"
        );
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn malformed_xml_gets_a_soap_fault_and_changes_nothing(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let lead = id18("00Q5g00000BadXm");
        let good = outbound_message(
            &org_18(),
            &[url_notification(
                &id18("04l5g00000BdX01"),
                &lead,
                "sf-bad-xml",
            )],
        );
        let truncated = good[..good.len() / 2].to_string();
        let unclosed = good.replace("</sf:LinkedIn_URL__c>", "");
        // One notification of an unsupported type spoils the whole message.
        let account = good.replacen(
            "</Notification>",
            &format!(
                r#"</Notification>
       <Notification><Id>{}</Id><sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>{}</sf:Id></sObject></Notification>"#,
                id18("04l5g00000BdX02"),
                id18("0015g00000AccNt")
            ),
            1,
        );
        for (body, reason) in [
            (truncated.as_str(), "not well-formed XML"),
            (unclosed.as_str(), "not well-formed XML"),
            ("{\"recordId\": \"00Q\"}", "not well-formed XML"),
            (account.as_str(), "Account"),
        ] {
            let answer = deliver(&app, body).await;
            assert_not_acked(&answer, 500);
            assert!(
                answer.content_type.starts_with("text/xml"),
                "{}",
                answer.content_type
            );
            assert!(answer.body.contains("<soapenv:Fault>"), "{}", answer.body);
            assert!(
                answer
                    .body
                    .contains("<faultcode>soapenv:Client</faultcode>"),
                "{}",
                answer.body
            );
            assert!(answer.body.contains(reason), "{reason}: {}", answer.body);
        }
        assert_nothing_created(&env, &app, &sf).await;
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_notification_that_does_not_qualify_is_acked_without_a_job(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env
            .start(config(
                &env,
                &sf,
                "[sources.salesforce.qualify]\nfield = \"Status\"\nvalue = \"Qualified\"",
            ))
            .await;
        let qualified = id18("00Q5g00000QuaL1");
        let working = id18("00Q5g00000QuaL2");
        let no_status = id18("00Q5g00000QuaL3");
        for (record, slug) in [
            (&qualified, "sf-qualified"),
            (&working, "sf-working"),
            (&no_status, "sf-no-status"),
        ] {
            sf.add_record(
                "Lead",
                record,
                json!({"LinkedIn_URL__c": profile_url(slug)}),
            );
        }
        let xml = outbound_message(
            &org_18(),
            &[
                notification(
                    &id18("04l5g00000QuN01"),
                    "Lead",
                    &working,
                    &[
                        ("Status", "Working - Contacted"),
                        ("LinkedIn_URL__c", &profile_url("sf-working")),
                    ],
                ),
                notification(
                    &id18("04l5g00000QuN02"),
                    "Lead",
                    &qualified,
                    &[
                        ("Status", "Qualified"),
                        ("LinkedIn_URL__c", &profile_url("sf-qualified")),
                    ],
                ),
                url_notification(&id18("04l5g00000QuN03"), &no_status, "sf-no-status"),
            ],
        );
        assert_acked(&deliver(&app, &xml).await);
        let id = app.only_job_of(&qualified).await.id;
        app.wait_for(id, Status::Sent).await;
        assert_eq!(app.jobs("").await.len(), 1);
        assert!(app.jobs_of(&working).await.is_empty());
        assert!(app.jobs_of(&no_status).await.is_empty());
        assert_eq!(env.total_invitations().await, 1);
        let (_, stats) = app.admin("/admin/stats").await;
        assert_eq!(
            stats["ignoredEvents"]["salesforce.not_qualified"], 2,
            "{stats}"
        );
        eventually(WAIT, "the qualified lead written back", || async {
            sf.written_statuses(&qualified) == ["queued", "sent"]
        })
        .await;
        assert!(sf.calls_for(&working).is_empty());
        assert!(sf.calls_for(&no_status).is_empty());
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    /// `priority_field` is the job's priority, a later message with another value updates
    /// the waiting job, and the `withdraw` rule calls a record off: its waiting job ends
    /// `cancelled`, written back.
    async fn the_priority_field_and_the_withdraw_rule_act_on_waiting_leads(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        env.sim_put(
            "accounts/acc_sf",
            json!({"limit": 5, "used": 5,
                   "weeklyReset": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339()}),
        )
        .await;
        let extra = "priority_field = \"Score__c\"\n\
                     [sources.salesforce.withdraw]\nfield = \"Status\"\nvalue = \"Disqualified\"";
        let app = env.start(config(&env, &sf, extra)).await;
        let (low, high) = (id18("00Q5g00000Pri01"), id18("00Q5g00000Pri02"));
        for (record, slug) in [(&low, "sf-low"), (&high, "sf-high")] {
            sf.add_record("Lead", record, json!({"LinkedIn_URL__c": profile_url(slug)}));
        }
        let message = |n: &str, record: &str, slug: &str, status: &str, score: &str| {
            let url = profile_url(slug);
            let fields = [("Status", status), ("Score__c", score), ("LinkedIn_URL__c", url.as_str())];
            outbound_message(&org_18(), &[notification(&id18(n), "Lead", record, &fields)])
        };
        assert_acked(&deliver(&app, &message("04l5g00000Pri01", &low, "sf-low", "Qualified", "10")).await);
        assert_acked(&deliver(&app, &message("04l5g00000Pri02", &high, "sf-high", "Qualified", "40.2")).await);
        let low_job = app.only_job_of(&low).await.id;
        let high_job = app.only_job_of(&high).await.id;
        assert_eq!(app.wait_for(low_job, Status::Held).await.priority, 10);
        assert_eq!(app.wait_for(high_job, Status::Held).await.priority, 40);

        // The score changed in Salesforce and the rule fired again: the job takes it.
        assert_acked(&deliver(&app, &message("04l5g00000Pri03", &high, "sf-high", "Qualified", "70")).await);
        assert_eq!(app.job(high_job).await.priority, 70);
        assert_eq!(app.jobs_of(&high).await.len(), 1);

        // Disqualified: the waiting job is cancelled and the record told so.
        assert_acked(&deliver(&app, &message("04l5g00000Pri04", &low, "sf-low", "Disqualified", "10")).await);
        assert_eq!(app.job(low_job).await.status, Status::Cancelled);
        eventually(WAIT, "the cancel written back", || async {
            sf.written_statuses(&low).last().map(String::as_str) == Some("cancelled")
        })
        .await;
        assert_eq!(app.job(high_job).await.status, Status::Held);
        assert_eq!(env.total_invitations().await, 0);
        env.cleanup().await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Signed Flow and Apex callouts

async fn post_callout(app: &TestApp, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url("/webhooks/salesforce/events"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    answer(request.body(body.to_string()).send().await.unwrap()).await
}

fn standard_webhooks_headers(
    secret: &str,
    id: &str,
    at: chrono::DateTime<Utc>,
    body: &str,
) -> Vec<(&'static str, String)> {
    Signer::new(secret)
        .unwrap()
        .headers(id, at, body.as_bytes())
        .unwrap()
        .to_vec()
}

/// What the Apex of the README computes:
/// `Crypto.generateMac('hmacSHA256', Blob.valueOf(ts + '.' + body), Blob.valueOf(secret))`,
/// then `EncodingUtil.convertToHex` or `EncodingUtil.base64Encode`.
fn apex_signature(secret: &str, ts: &str, body: &str, base64: bool) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update((ts.to_string() + "." + body).as_bytes());
    let mac = mac.finalize().into_bytes();
    if base64 {
        base64::engine::general_purpose::STANDARD.encode(mac)
    } else {
        mac.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `JSON.serialize` of the Flow's payload.
fn callout_body(object: &str, record: &str, slug: &str) -> String {
    serde_json::to_string(&json!({
        "recordId": record,
        "object": object,
        "linkedinUrl": profile_url(slug),
        "FirstName": "Flo",
        "attributes": {"type": object},
    }))
    .unwrap()
}

/// The test environment with the Flow callout source taking both signature styles.
async fn callout_app() -> (TestEnv, FakeSalesforce, TestApp) {
    let env = TestEnv::new().await;
    let sf = FakeSalesforce::start().await;
    let callout = format!(
        r#"[sources.salesforce.callout]
standard_webhooks_secrets = ["{SW_SECRET}"]
[sources.salesforce.callout.hmac]
secret = "{HMAC_SECRET}"
encoding = "hex"
signature_header = "X-LeadLink-Signature"
timestamp_header = "X-LeadLink-Timestamp"
"#
    );
    let app = env.start(config(&env, &sf, &callout)).await;
    (env, sf, app)
}

/// A Lead the Flow calls out for, and the callout's body.
fn flow_lead(sf: &FakeSalesforce, short_id: &str, slug: &str) -> (String, String) {
    let lead = id18(short_id);
    sf.add_record("Lead", &lead, json!({}));
    let body = callout_body("Lead", &lead, slug);
    (lead, body)
}

/// The Lead's job is the only one, sent once and written back.
async fn assert_the_only_job_sent(
    env: &TestEnv,
    app: &TestApp,
    sf: &FakeSalesforce,
    lead: &str,
    slug: &str,
) {
    let sent = Sent::lead(lead, "acc_sf", slug);
    assert_sent_and_written_back(env, app, sf, sent).await;
    assert_eq!(app.jobs("").await.len(), 1);
    assert_eq!(env.total_invitations().await, 1);
}

/// The `X-LeadLink-*` headers for `body` signed as the Apex does at `ts`.
fn apex_headers(secret: &str, ts: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-LeadLink-Timestamp", ts.to_string()),
        (
            "X-LeadLink-Signature",
            apex_signature(secret, ts, body, false),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_callout_signed_with_standard_webhooks_is_accepted_once() -> anyhow::Result<()> {
    let (env, sf, mut app) = callout_app().await;
    let now = Utc::now();
    // The webhook-id is the delivery's idempotency key.
    let (lead, body) = flow_lead(&sf, "00Q5g00000FlwSw", "sf-flow-sw");
    let headers = standard_webhooks_headers(SW_SECRET, &webhook_id(), now, &body);
    let (status, first) = post_callout(&app, &headers, &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = post_callout(&app, &headers, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["jobId"], first["jobId"]);
    let other_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let stale = now - chrono::Duration::minutes(10);
    for headers in [
        standard_webhooks_headers(other_secret, &webhook_id(), now, &body),
        standard_webhooks_headers(SW_SECRET, &webhook_id(), stale, &body),
    ] {
        let (status, answer) = post_callout(&app, &headers, &body).await;
        assert_eq!(status, 401, "{answer}");
    }
    assert_the_only_job_sent(&env, &app, &sf, &lead, "sf-flow-sw").await;
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_callout_signed_with_hmac_is_accepted_once() -> anyhow::Result<()> {
    let (env, sf, mut app) = callout_app().await;
    let now = Utc::now();
    // Plain HMAC, hex, in the configured headers; signed as the Apex does.
    let (lead, body) = flow_lead(&sf, "00Q5g00000FlwHx", "sf-flow-hmac");
    let ts = now.timestamp().to_string();
    let signed = apex_headers(HMAC_SECRET, &ts, &body);
    let encoding = SignatureEncoding::Hex;
    let sign = hmac_callout::sign(HMAC_SECRET, now.timestamp(), body.as_bytes(), encoding)?;
    assert_eq!(signed[1].1, sign);
    let (status, first) = post_callout(&app, &signed, &body).await;
    assert_eq!(status, 202, "{first}");
    // The same signed request again (a Flow fault path retrying) is the same delivery.
    let (status, again) = post_callout(&app, &signed, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["jobId"], first["jobId"]);
    // Upper-case hex is what some senders write.
    let upper = [signed[0].clone(), (signed[1].0, signed[1].1.to_uppercase())];
    let (status, answer) = post_callout(&app, &upper, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_the_only_job_sent(&env, &app, &sf, &lead, "sf-flow-hmac").await;
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_callout_with_a_wrong_hmac_is_refused() -> anyhow::Result<()> {
    let (env, sf, mut app) = callout_app().await;
    let now = Utc::now();
    let (_, body) = flow_lead(&sf, "00Q5g00000FlwHx", "sf-flow-hmac");
    let ts = now.timestamp().to_string();
    let stale_ts = (now - chrono::Duration::minutes(6)).timestamp().to_string();
    let signature = apex_signature(HMAC_SECRET, &ts, &body, false);
    let mut body_only = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes())?;
    body_only.update(body.as_bytes());
    let body_only: String = body_only
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let refused = [
        // Stale, though correctly signed.
        apex_headers(HMAC_SECRET, &stale_ts, &body),
        // Signed with another secret.
        apex_headers("another-secret-0123456789", &ts, &body),
        // Right signature for another body.
        apex_headers(HMAC_SECRET, &ts, &body.replace("Flo", "Eve")),
        // Right signature in the default headers, which this config does not use.
        vec![("X-Timestamp", ts.clone()), ("X-Signature", signature)],
        // The body alone signed, as a named-credential formula would.
        vec![
            ("X-LeadLink-Timestamp", ts.clone()),
            ("X-LeadLink-Signature", body_only),
        ],
        vec![],
    ];
    for headers in refused {
        let (status, answer) = post_callout(&app, &headers, &body).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
    }
    assert!(app.jobs("").await.is_empty());
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_delivery_id_makes_a_repeated_flow_callout_a_duplicate() -> anyhow::Result<()> {
    let (env, sf, mut app) = callout_app().await;
    let now = Utc::now();
    // A lead that ended `profile_not_found` may start again, so only the delivery id
    // makes a repeat a duplicate: the same webhook-id, or the same HMAC-signed request.
    let (gone, body) = flow_lead(&sf, "00Q5g00000FlwGn", "unknown-sf-flow");
    let sw_headers = standard_webhooks_headers(SW_SECRET, &webhook_id(), now, &body);
    let (status, gone_first) = post_callout(&app, &sw_headers, &body).await;
    assert_eq!(status, 202, "{gone_first}");
    let gone_id = job_id(&gone_first);
    app.wait_for(gone_id, Status::ProfileNotFound).await;
    let (status, repeat) = post_callout(&app, &sw_headers, &body).await;
    assert_eq!(
        (status, &repeat["jobId"]),
        (200, &gone_first["jobId"]),
        "{repeat}"
    );
    let hmac_headers = apex_headers(HMAC_SECRET, &now.timestamp().to_string(), &body);
    let (status, hmac_gone) = post_callout(&app, &hmac_headers, &body).await;
    assert_eq!(status, 202, "a new delivery starts a new job: {hmac_gone}");
    let hmac_gone_id = job_id(&hmac_gone);
    assert_ne!(hmac_gone_id, gone_id);
    app.wait_for(hmac_gone_id, Status::ProfileNotFound).await;
    let (status, repeat) = post_callout(&app, &hmac_headers, &body).await;
    assert_eq!(
        (status, &repeat["jobId"]),
        (200, &hmac_gone["jobId"]),
        "{repeat}"
    );
    assert_eq!(app.jobs_of(&gone).await.len(), 2);
    assert_eq!(app.jobs("").await.len(), 2);
    assert_eq!(env.total_invitations().await, 0);
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

both_backends! {
    async fn an_apex_callout_signed_in_base64_is_accepted_and_a_bad_one_is_not(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env
            .start(config(
                &env,
                &sf,
                &format!(
                    "[sources.salesforce.callout.hmac]\nsecret = \"{HMAC_SECRET}\"\nencoding = \"base64\""
                ),
            ))
            .await;
        let contact = id18("0035g00000ApXb6");
        sf.add_record("Contact", &contact, json!({}));
        let body = callout_body("Contact", &contact, "sf-apex-b64");
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let signature = apex_signature(HMAC_SECRET, &ts, &body, true);
        assert_eq!(
            signature,
            hmac_callout::sign(
                HMAC_SECRET,
                now.timestamp(),
                body.as_bytes(),
                SignatureEncoding::Base64
            )?
        );
        // Hex where base64 is configured, a stale timestamp, and a wrong MAC are refused.
        let stale = (now - chrono::Duration::minutes(6)).timestamp().to_string();
        for headers in [
            vec![
                ("X-Timestamp", ts.clone()),
                (
                    "X-Signature",
                    apex_signature(HMAC_SECRET, &ts, &body, false),
                ),
            ],
            vec![
                ("X-Timestamp", stale.clone()),
                (
                    "X-Signature",
                    apex_signature(HMAC_SECRET, &stale, &body, true),
                ),
            ],
            vec![
                ("X-Timestamp", ts.clone()),
                (
                    "X-Signature",
                    apex_signature("not-the-secret-123456", &ts, &body, true),
                ),
            ],
        ] {
            let (status, answer) = post_callout(&app, &headers, &body).await;
            assert_eq!(status, 401, "{headers:?}: {answer}");
        }
        assert!(app.jobs("").await.is_empty());
        let (status, created) = post_callout(
            &app,
            &[("X-Timestamp", ts.clone()), ("X-Signature", signature)],
            &body,
        )
        .await;
        assert_eq!(status, 202, "{created}");
        let id = job_id(&created);
        let job = app.wait_for(id, Status::Sent).await;
        assert_eq!(job.record_object.as_deref(), Some("Contact"));
        assert_eq!(env.invitations("acc_sf", "sf-apex-b64").await, 1);
        eventually(WAIT, "the Contact written back", || async {
            sf.written_statuses(&contact) == ["queued", "sent"]
        })
        .await;
        assert!(sf.calls_for(&contact).iter().all(|c| c.object == "Contact"));
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The REST API's failures

/// One Lead with its URL, delivered in an Outbound Message; returns the job id once sent.
async fn send_lead(
    app: &TestApp,
    sf: &FakeSalesforce,
    short_id: &str,
    slug: &str,
) -> (String, Uuid) {
    let record = id18(short_id);
    sf.add_record(
        "Lead",
        &record,
        json!({"LinkedIn_URL__c": profile_url(slug)}),
    );
    let notification_id = id18(&format!("04l{}", &short_id[3..]));
    let xml = outbound_message(
        &org_18(),
        &[notification(
            &notification_id,
            "Lead",
            &record,
            &[("LinkedIn_URL__c", &profile_url(slug))],
        )],
    );
    assert_acked(&deliver(app, &xml).await);
    let id = app.only_job_of(&record).await.id;
    app.wait_for(id, Status::Sent).await;
    (record, id)
}

both_backends! {
    async fn an_access_token_that_expires_mid_run_is_replaced_once(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let (first, _) = send_lead(&app, &sf, "00Q5g00000TkEx1", "sf-token-one").await;
        eventually(WAIT, "first lead written back", || async {
            sf.written_statuses(&first) == ["queued", "sent"]
        })
        .await;
        assert_eq!(sf.token_requests(), 1);

        // The session times out: the token Salesforce issued no longer works.
        sf.with(|s| s.valid_tokens.clear());
        let (second, id) = send_lead(&app, &sf, "00Q5g00000TkEx2", "sf-token-two").await;
        eventually(WAIT, "second lead written back", || async {
            sf.written_statuses(&second) == ["queued", "sent"]
        })
        .await;
        assert_eq!(sf.token_requests(), 2, "one new token, fetched once");
        assert_eq!(sf.answers(401), 1);
        let calls = sf.calls_for(&second);
        let refused = calls.iter().position(|c| c.status == 401).unwrap();
        assert!(
            calls[refused + 1..]
                .iter()
                .all(|c| c.bearer.ends_with("fake-access-token-2") && c.status == 204)
        );
        // The new token was fetched inside the delivery: no try was spent on it. (The fake has
        // answered before the outcome is committed: wait for the commit.)
        eventually(WAIT, "the writebacks recorded as delivered", || async {
            let job = app.job(id).await;
            let writebacks = job.writebacks_to("salesforce");
            !writebacks.is_empty() && writebacks.iter().all(|w| w.state != "pending")
        })
        .await;
        let job = app.job(id).await;
        for writeback in job.writebacks_to("salesforce") {
            assert_eq!(writeback.state, "delivered", "{job:#?}");
            assert_eq!(writeback.attempts, 1, "{job:#?}");
        }
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn refused_sessions_pause_salesforce_writebacks_until_they_work(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        // Tokens are issued, but the API refuses every one (the integration user lost its
        // API permission, say): two 401s in a row.
        sf.with(|s| s.refuse_all_tokens = true);
        let mut app = env.start(config(&env, &sf, "")).await;
        let (record, id) = send_lead(&app, &sf, "00Q5g00000PaUs1", "sf-paused-writes").await;

        // Longer than four writeback tries (max_attempts = 4) would take were they counted.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let job = app.job(id).await;
        assert_eq!(job.status, Status::Sent, "{job:#?}");
        let writebacks = job.writebacks_to("salesforce");
        assert_eq!(writebacks.len(), 2, "{job:#?}");
        for writeback in &writebacks {
            assert_eq!(writeback.state, "pending", "{job:#?}");
        }
        assert!(
            writebacks[0]
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("INVALID_SESSION_ID"),
            "{job:#?}"
        );
        let paused_tries = job
            .events("writeback")
            .iter()
            .filter(|e| e.detail["result"] == "paused")
            .count();
        assert!(paused_tries >= 2, "probed again while paused: {job:#?}");
        assert!(sf.written_statuses(&record).is_empty());
        // The callback target is not held up by Salesforce's pause.
        assert_eq!(env.callback_statuses(id), ["queued", "sent"]);
        assert_eq!(env.invitations("acc_sf", "sf-paused-writes").await, 1);

        sf.with(|s| s.refuse_all_tokens = false);
        eventually(WAIT, "writebacks resume in order", || async {
            sf.written_statuses(&record) == ["queued", "sent"]
        })
        .await;
        eventually(WAIT, "writebacks delivered", || async {
            let job = app.job(id).await;
            job.writebacks_to("salesforce")
                .iter()
                .all(|w| w.state == "delivered")
        })
        .await;
        assert_eq!(env.invitations("acc_sf", "sf-paused-writes").await, 1);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn refused_credentials_pause_enrichment_and_the_job_resumes_once_fixed(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        // The connected app's secret was rotated in Salesforce but not in leadlink.
        sf.with(|s| s.client_secret = "rotated-secret-abcdef".into());
        let mut app = env.start(config(&env, &sf, "")).await;
        let contact = id18("0035g00000PaUsE");
        sf.add_record(
            "Contact",
            &contact,
            json!({"FirstName": "Kat", "LastName": "Johnson", "OwnerId": id18(REP_15),
                   "LinkedIn_URL__c": profile_url("sf-paused-read")}),
        );
        let xml = outbound_message(
            &org_18(),
            &[notification(
                &id18("04l5g00000PaUsE"),
                "Contact",
                &contact,
                &[("FirstName", "Kat")],
            )],
        );
        assert_acked(&deliver(&app, &xml).await);
        let id = app.only_job_of(&contact).await.id;
        let job = app.wait_for(id, Status::Paused).await;
        assert!(
            job.error.as_deref().unwrap().contains("invalid_client"),
            "{job:#?}"
        );
        // It stays paused, whatever the retry budget (max_attempts = 3), and is probed again.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let job = app.job(id).await;
        assert_eq!(job.status, Status::Paused, "{job:#?}");
        assert!(sf.token_requests() >= 2, "probed: {}", sf.token_requests());
        assert_eq!(env.total_invitations().await, 0);

        sf.with(|s| s.client_secret = CLIENT_SECRET.into());
        let job = app.wait_for(id, Status::Sent).await;
        // The owner read from the record routes the job to the rep's account.
        assert_eq!(job.account_id, "acc_rep", "{job:#?}");
        assert_eq!(env.invitations("acc_rep", "sf-paused-read").await, 1);
        eventually(WAIT, "statuses written back, sent last", || async {
            let written = sf.written_statuses(&contact);
            written.first().map(String::as_str) == Some("queued")
                && written.last().map(String::as_str) == Some("sent")
        })
        .await;
        let written = sf.written_statuses(&contact);
        assert!(written.contains(&"paused".to_string()), "{written:?}");
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn request_limit_exceeded_is_retried_then_delivered(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let record = id18("00Q5g00000LiMit");
        let limit = sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
        sf.with(|s| {
            s.patch_failures.insert(
                record[..15].to_string(),
                VecDeque::from([limit.clone(), limit]),
            )
        });
        let (sent_record, id) = send_lead(&app, &sf, "00Q5g00000LiMit", "sf-limited").await;
        assert_eq!(sent_record, record);
        eventually(WAIT, "written back after the limit", || async {
            sf.written_statuses(&record) == ["queued", "sent"]
        })
        .await;
        let patches: Vec<u16> = sf
            .calls_for(&record)
            .iter()
            .filter(|c| c.method == "PATCH")
            .map(|c| c.status)
            .collect();
        assert_eq!(patches, [403, 403, 204, 204]);
        // The fake answered; the worker's commit of the outcome may still be on its way.
        eventually(WAIT, "both writebacks recorded as delivered", || async {
            app.job(id)
                .await
                .writebacks_to("salesforce")
                .iter()
                .all(|w| w.state == "delivered")
        })
        .await;
        let job = app.job(id).await;
        let writebacks = job.writebacks_to("salesforce");
        assert_eq!(writebacks[0].state, "delivered", "{job:#?}");
        assert_eq!(writebacks[0].attempts, 3, "{job:#?}");
        assert_eq!(writebacks[1].state, "delivered", "{job:#?}");
        let retried = job
            .events("writeback")
            .iter()
            .filter(|e| {
                e.detail["result"] == "pending"
                    && e.detail["error"]
                        .as_str()
                        .is_some_and(|t| t.contains("REQUEST_LIMIT_EXCEEDED"))
            })
            .count();
        assert_eq!(retried, 2, "{job:#?}");
        // A limit is not a credentials problem: no new token.
        assert_eq!(sf.token_requests(), 1);
        assert_eq!(job.status, Status::Sent);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}

both_backends! {
    async fn a_deleted_lead_parks_its_writebacks_with_the_reason(backend) -> anyhow::Result<()> {
        let env = TestEnv::on(backend).await;
        let sf = FakeSalesforce::start().await;
        let mut app = env.start(config(&env, &sf, "")).await;
        let record = id18("00Q5g00000DeLtd");
        sf.with(|s| s.deleted.insert(record[..15].to_string()));
        let (_, id) = send_lead(&app, &sf, "00Q5g00000DeLtd", "sf-deleted").await;
        let job = {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let job = app.job(id).await;
                let writebacks = job.writebacks_to("salesforce");
                if writebacks.len() == 2 && writebacks.iter().all(|w| w.state == "parked") {
                    break job;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not parked: {job:#?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        for writeback in job.writebacks_to("salesforce") {
            assert_eq!(writeback.attempts, 1, "{job:#?}");
            assert!(
                writeback
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains("ENTITY_IS_DELETED: entity is deleted"),
                "{job:#?}"
            );
        }
        let history: String = job.history.iter().map(|e| e.detail.to_string()).collect();
        assert!(
            history.contains("ENTITY_IS_DELETED: entity is deleted"),
            "{job:#?}"
        );
        // The lead was still sent, once, and the callback heard every status.
        assert_eq!(job.status, Status::Sent);
        assert_eq!(env.invitations("acc_sf", "sf-deleted").await, 1);
        eventually(WAIT, "callbacks", || async {
            env.callback_statuses(id) == ["queued", "sent"]
        })
        .await;
        // A parked writeback is not retried by itself.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let patches = sf
            .calls_for(&record)
            .iter()
            .filter(|c| c.method == "PATCH")
            .count();
        assert_eq!(patches, 2);
        app.stop().await;
        env.cleanup().await;
        Ok(())
    }
}
