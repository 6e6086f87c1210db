//! The client against a mock HubSpot.

use super::classify::{INTERVAL, REMAINING};
use super::{HubSpotClient, HubSpotCrmConfig};
use crate::crm::api::{CallFailure, RecordFields};
use crate::secret::Secret;
use serde_json::{Map, json};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "pat-na1-00000000-secret";

fn config(server: &MockServer) -> HubSpotCrmConfig {
    HubSpotCrmConfig {
        base_url: Url::parse(&server.uri()).unwrap(),
        access_token: Some(Secret::new(TOKEN)),
        ..Default::default()
    }
}

async fn client() -> (MockServer, HubSpotClient) {
    let server = MockServer::start().await;
    let client = HubSpotClient::new(&config(&server)).unwrap();
    (server, client)
}

#[tokio::test]
async fn read_contact_asks_for_the_properties_and_skips_empty_ones() {
    let (server, client) = client().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/a%2Fb%20c"))
        .and(query_param(
            "properties",
            "hs_linkedin_url,firstname,company",
        ))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header(
            "user-agent",
            concat!("leadlink/", env!("CARGO_PKG_VERSION")),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "a/b c",
            "properties": {
                "hs_linkedin_url": "https://www.linkedin.com/in/ada",
                "firstname": "Ada",
                "company": null,
                "hs_object_id": "501",
                "lastname": ""
            },
            "archived": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    let properties = ["hs_linkedin_url", "firstname", "company"].map(String::from);
    let outcome = client.read_contact("a/b c", &properties).await;
    let expected: RecordFields = [
        ("firstname", "Ada"),
        ("hs_linkedin_url", "https://www.linkedin.com/in/ada"),
        ("hs_object_id", "501"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(outcome, Ok(expected));
}

/// A deadline no budget wait reaches.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[tokio::test]
async fn a_budget_wait_past_the_deadline_is_handed_back() {
    let (server, client) = client().await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(REMAINING, "1")
                .insert_header(INTERVAL, "60000"),
        )
        .expect(1)
        .mount(&server)
        .await;
    client
        .update_contact("1", Map::new(), later())
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let spent = client
        .update_contact("2", Map::new(), started + Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(spent.wait > Duration::from_secs(55), "{spent:?}");
}

#[tokio::test]
async fn update_contact_patches_the_properties() {
    let (server, client) = client().await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/contacts/501"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(json!({"properties": {
            "linkedin_connection_status": "sent",
            "linkedin_last_error": ""
        }})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "501"})))
        .expect(1)
        .mount(&server)
        .await;
    let mut properties = Map::new();
    properties.insert("linkedin_connection_status".into(), json!("sent"));
    properties.insert("linkedin_last_error".into(), json!(""));
    assert_eq!(
        client
            .update_contact("501", properties, later())
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        client
            .update_contact(" ", Map::new(), later())
            .await
            .unwrap(),
        Err(CallFailure::Refused {
            reason: "contact id is empty".into()
        })
    );
}

async fn answer(template: ResponseTemplate) -> Result<(), CallFailure> {
    let (server, client) = client().await;
    Mock::given(method("PATCH"))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;
    client
        .update_contact("501", Map::new(), later())
        .await
        .unwrap()
}

#[tokio::test]
async fn error_answers_reach_the_caller_classified() {
    let not_found = ResponseTemplate::new(404)
        .set_body_json(json!({"status": "error", "message": "resource not found"}));
    assert!(matches!(
        answer(not_found).await,
        Err(CallFailure::Gone { reason }) if reason.contains("resource not found")
    ));
    let merged = ResponseTemplate::new(409).set_body_json(json!({"message": "merged"}));
    assert!(matches!(
        answer(merged).await,
        Err(CallFailure::Gone { .. })
    ));

    // Even a body that echoes the token does not carry it into the outcome.
    let unauthorized = ResponseTemplate::new(401)
        .set_body_json(json!({"message": format!("token {TOKEN} is expired")}));
    let outcome = answer(unauthorized).await;
    assert_eq!(
        outcome,
        Err(CallFailure::AuthFailed {
            reason: "HTTP 401: token [REDACTED] is expired".into()
        })
    );

    let throttled = ResponseTemplate::new(429)
        .insert_header("retry-after", "2")
        .set_body_json(json!({"policyName": "TEN_SECONDLY_ROLLING"}));
    assert!(matches!(
        answer(throttled).await,
        Err(CallFailure::Retry { after: Some(d), .. }) if d == Duration::from_secs(2)
    ));
    assert!(matches!(
        answer(ResponseTemplate::new(503)).await,
        Err(CallFailure::Retry { after: None, .. })
    ));
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let slow = HubSpotClient::new(&HubSpotCrmConfig {
        timeout: Duration::from_millis(100),
        ..config(&server)
    })
    .unwrap();
    let outcome = slow.read_contact("1", &[]).await;
    assert!(
        matches!(outcome, Err(CallFailure::Retry { after: None, .. })),
        "{outcome:?}"
    );

    let gone = HubSpotClient::new(&HubSpotCrmConfig {
        base_url: Url::parse("http://127.0.0.1:9").unwrap(),
        ..config(&server)
    })
    .unwrap();
    assert!(matches!(
        gone.update_contact("1", Map::new(), later()).await.unwrap(),
        Err(CallFailure::Retry { after: None, .. })
    ));
}

#[tokio::test]
async fn a_spent_budget_delays_the_next_call_of_every_clone() {
    let (server, client) = client().await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(REMAINING, "1")
                .insert_header(INTERVAL, "300"),
        )
        .expect(2)
        .mount(&server)
        .await;
    assert_eq!(
        client
            .update_contact("1", Map::new(), later())
            .await
            .unwrap(),
        Ok(())
    );
    let first_done = std::time::Instant::now();
    let clone = client.clone();
    assert_eq!(
        clone
            .update_contact("2", Map::new(), later())
            .await
            .unwrap(),
        Ok(())
    );
    // The window started when the first answer arrived, just before `first_done`.
    assert!(
        first_done.elapsed() >= Duration::from_millis(250),
        "{:?}",
        first_done.elapsed()
    );
}

#[test]
fn a_client_needs_a_token() {
    let error = HubSpotClient::new(&HubSpotCrmConfig::default()).unwrap_err();
    assert_eq!(error.to_string(), "crm.hubspot: access_token is missing");
    let client = HubSpotClient::new(&HubSpotCrmConfig {
        access_token: Some(Secret::new(TOKEN)),
        ..Default::default()
    })
    .unwrap();
    assert!(!format!("{client:?}").contains(TOKEN));
}
