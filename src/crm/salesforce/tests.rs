//! The client against a fake Salesforce: token endpoint, sObject GET and PATCH.

use super::{SalesforceClient, SalesforceCrmConfig};
use crate::crm::api::CallFailure;
use crate::secret::Secret;
use futures_util::future::join_all;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "sfsecret-9f8e7d";
const ID: &str = "00Q5g00000AbCdEFGH";
const RECORD: &str = "/services/data/v60.0/sobjects/Lead/00Q5g00000AbCdEFGH";
const TOKEN: &str = "/services/oauth2/token";

fn config(server: &MockServer) -> SalesforceCrmConfig {
    SalesforceCrmConfig {
        my_domain_url: Some(server.uri().parse().unwrap()),
        client_id: Some("3MVG9-client".into()),
        client_secret: Some(Secret::new(SECRET)),
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn client(server: &MockServer) -> SalesforceClient {
    SalesforceClient::new(&config(server)).unwrap()
}

fn token_reply(server: &MockServer, token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": token,
        "instance_url": server.uri(),
        "token_type": "Bearer",
        "issued_at": "1700000000000",
        "id": "https://login.salesforce.com/id/00D/005",
        "signature": "sig",
    }))
}

async fn mount_token(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(token_reply(server, token))
        .mount(server)
        .await;
}

fn record_reply() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "attributes": {"type": "Lead", "url": RECORD},
        "Id": ID,
        "LinkedIn_URL__c": "https://www.linkedin.com/in/ada",
        "OwnerId": "005Hs00000AbCdEIAQ",
        "NumberOfEmployees": 42,
        "Title": null,
    }))
}

fn session_expired() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!([
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]))
}

async fn requests_to(server: &MockServer, to: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == to)
        .collect()
}

fn fields() -> Vec<String> {
    vec!["LinkedIn_URL__c".into(), "OwnerId".into()]
}

#[tokio::test]
async fn concurrent_calls_share_one_token_fetch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        // Slow enough that every call arrives while the fetch is in flight.
        .respond_with(token_reply(&server, "tok-1").set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(RECORD))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(record_reply())
        .mount(&server)
        .await;
    let client = client(&server);
    let fields = fields();
    let outcomes = join_all((0..10).map(|_| {
        let client = client.clone();
        let fields = fields.clone();
        async move { client.read_record("Lead", ID, &fields).await }
    }))
    .await;
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    let token_requests = requests_to(&server, TOKEN).await;
    assert_eq!(token_requests.len(), 1);
    let form = String::from_utf8(token_requests[0].body.clone()).unwrap();
    assert_eq!(
        form,
        format!("grant_type=client_credentials&client_id=3MVG9-client&client_secret={SECRET}")
    );
    assert_eq!(requests_to(&server, RECORD).await.len(), 10);
}

#[tokio::test]
async fn an_expired_token_is_replaced_once_for_everyone() {
    let server = MockServer::start().await;
    // The first mounted mock that matches answers; an exhausted one stands aside.
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(token_reply(&server, "tok-1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_token(&server, "tok-2").await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(record_reply())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(session_expired())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(record_reply())
        .mount(&server)
        .await;
    let logs = Capture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .finish(),
    );

    let client = client(&server);
    assert!(client.read_record("Lead", ID, &fields()).await.is_ok());
    // tok-1 expires; five calls all get a 401 for it, and all but one find the new token.
    let outcomes = join_all((0..5).map(|_| {
        let client = client.clone();
        async move { client.read_record("Lead", ID, &fields()).await }
    }))
    .await;
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(requests_to(&server, TOKEN).await.len(), 2);
    assert_eq!(requests_to(&server, RECORD).await.len(), 11);

    let logs = logs.text();
    assert!(logs.contains("fetching a new one"), "{logs}");
    for secret in [SECRET, "tok-1", "tok-2"] {
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
    }
}

#[tokio::test]
async fn a_new_token_that_is_refused_too_means_auth_failed() {
    let server = MockServer::start().await;
    mount_token(&server, "tok").await;
    Mock::given(method("PATCH"))
        .respond_with(session_expired())
        .mount(&server)
        .await;
    let outcome = client(&server)
        .update_record(
            "Lead",
            ID,
            json!({"LinkedIn_Status__c": "sent"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await;
    assert_eq!(
        outcome,
        Err(CallFailure::AuthFailed {
            reason: "INVALID_SESSION_ID: Session expired or invalid".into()
        })
    );
    assert_eq!(requests_to(&server, TOKEN).await.len(), 2);
    assert_eq!(requests_to(&server, RECORD).await.len(), 2);
}

#[tokio::test]
async fn rejected_client_credentials_mean_auth_failed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "invalid client credentials"
        })))
        .mount(&server)
        .await;
    let outcome = client(&server).read_record("Lead", ID, &fields()).await;
    let Err(CallFailure::AuthFailed { reason }) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        reason,
        "Salesforce login failed: invalid_client: invalid client credentials"
    );
    assert!(requests_to(&server, RECORD).await.is_empty());
}

#[tokio::test]
async fn a_secret_echoed_by_the_token_endpoint_is_not_repeated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("bad secret {SECRET}")))
        .mount(&server)
        .await;
    let outcome = client(&server).read_record("Lead", ID, &[]).await;
    let Err(CallFailure::AuthFailed { reason }) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!reason.contains(SECRET), "{reason}");
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_means_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    assert_eq!(
        client(&server).read_record("Lead", ID, &[]).await,
        Err(CallFailure::Retry {
            after: Some(Duration::from_secs(7)),
            error: "Salesforce token endpoint: HTTP 503: ".into()
        })
    );

    // A port nobody listens on (wiremock pools its servers, so a dropped one may answer).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = SalesforceCrmConfig {
        my_domain_url: Some(format!("http://127.0.0.1:{port}").parse().unwrap()),
        ..config(&server)
    };
    let outcome = SalesforceClient::new(&nobody)
        .unwrap()
        .read_record("Lead", ID, &[])
        .await;
    let Err(CallFailure::Retry { after: None, error }) = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.starts_with("Salesforce token endpoint unreachable"),
        "{error}"
    );
}

#[tokio::test]
async fn api_errors_are_classified_with_their_text() {
    let server = MockServer::start().await;
    mount_token(&server, "tok").await;
    let cases = [
        (
            "00Q5g00000AAAAAAAA",
            ResponseTemplate::new(403).set_body_json(json!([
                {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
            ])),
            Err(CallFailure::Retry {
                after: None,
                error: "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.".into(),
            }),
        ),
        (
            "00Q5g00000BBBBBBBB",
            ResponseTemplate::new(404).set_body_json(json!([
                {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}
            ])),
            Err(CallFailure::Gone {
                reason: "ENTITY_IS_DELETED: entity is deleted".into(),
            }),
        ),
        (
            "00Q5g00000CCCCCCCC",
            ResponseTemplate::new(404).set_body_json(json!([
                {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
            ])),
            Err(CallFailure::Gone {
                reason: "NOT_FOUND: The requested resource does not exist".into(),
            }),
        ),
        (
            "00Q5g00000DDDDDDDD",
            ResponseTemplate::new(503).insert_header("retry-after", "30"),
            Err(CallFailure::Retry {
                after: Some(Duration::from_secs(30)),
                error: "HTTP 503".into(),
            }),
        ),
        (
            "00Q5g00000EEEEEEEE",
            ResponseTemplate::new(400).set_body_json(json!([
                {"message": "No such column 'Foo__c' on sobject of type Lead", "errorCode": "INVALID_FIELD"}
            ])),
            Err(CallFailure::Refused {
                reason: "INVALID_FIELD: No such column 'Foo__c' on sobject of type Lead".into(),
            }),
        ),
        (
            // Redirects are not followed: a PATCH must not be replayed somewhere else.
            "00Q5g00000FFFFFFFF",
            ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example"),
            Err(CallFailure::Refused {
                reason: "HTTP 302".into(),
            }),
        ),
    ];
    for (id, reply, _) in &cases {
        Mock::given(method("PATCH"))
            .and(path(format!("/services/data/v60.0/sobjects/Lead/{id}")))
            .respond_with(reply.clone())
            .mount(&server)
            .await;
    }
    let client = client(&server);
    for (id, _, expected) in cases {
        let outcome = client
            .update_record("Lead", id, json!({"A__c": 1}).as_object().unwrap().clone())
            .await;
        assert_eq!(outcome, expected, "{id}");
    }
    assert_eq!(requests_to(&server, TOKEN).await.len(), 1);
}

#[tokio::test]
async fn read_record_returns_the_fields_as_text() {
    let server = MockServer::start().await;
    mount_token(&server, "tok").await;
    Mock::given(method("GET"))
        .and(path(RECORD))
        .and(query_param("fields", "LinkedIn_URL__c,OwnerId"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(record_reply())
        .expect(1)
        .mount(&server)
        .await;
    let Ok(record) = client(&server).read_record("Lead", ID, &fields()).await else {
        panic!()
    };
    assert_eq!(
        record.into_iter().collect::<Vec<_>>(),
        [
            ("Id", ID),
            ("LinkedIn_URL__c", "https://www.linkedin.com/in/ada"),
            ("NumberOfEmployees", "42"),
            ("OwnerId", "005Hs00000AbCdEIAQ"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[tokio::test]
async fn update_record_patches_exactly_the_fields() {
    let server = MockServer::start().await;
    mount_token(&server, "tok").await;
    let fields = json!({
        "LinkedIn_Status__c": "sent",
        "LinkedIn_Profile_URN__c": "urn:li:fsd_profile:ACoAA",
        "LinkedIn_Retry_At__c": null,
    });
    Mock::given(method("PATCH"))
        .and(path(
            "/services/data/v60.0/sobjects/Contact/003Hs00000XyZaBIAU",
        ))
        .and(header("authorization", "Bearer tok"))
        .and(header("content-type", "application/json"))
        .and(body_json(&fields))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = client(&server)
        .update_record(
            "Contact",
            "003Hs00000XyZaBIAU",
            fields.as_object().unwrap().clone(),
        )
        .await;
    assert_eq!(outcome, Ok(()));
    let request = &server.received_requests().await.unwrap()[1];
    assert_eq!(request.headers["authorization"], "Bearer tok");
    assert!(
        request.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("leadlink/")
    );
}

#[tokio::test]
async fn other_objects_and_bad_ids_are_refused_without_a_call() {
    let server = MockServer::start().await;
    let client = client(&server);
    for (object, id) in [
        ("Account", ID),
        ("Lead", "00Q5g00000AbCdE/../x"),
        ("Lead", ""),
        ("Contact", "00Q5g00000AbCdEFG"),
    ] {
        let outcome = client.read_record(object, id, &[]).await;
        assert!(
            matches!(outcome, Err(CallFailure::Refused { .. })),
            "{object} {id}: {outcome:?}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn debug_shows_neither_secret_nor_token() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-very-secret").await;
    Mock::given(method("GET"))
        .respond_with(record_reply())
        .mount(&server)
        .await;
    let config = config(&server);
    let client = SalesforceClient::new(&config).unwrap();
    assert!(client.read_record("Lead", ID, &[]).await.is_ok());
    for shown in [format!("{config:?}"), format!("{client:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("tok-very-secret"), "{shown}");
        assert!(shown.contains("3MVG9-client"), "{shown}");
    }
}

#[test]
fn an_invalid_config_is_not_a_client() {
    let error = SalesforceClient::new(&SalesforceCrmConfig::default()).unwrap_err();
    assert!(
        error.to_string().contains("crm.salesforce.client_id"),
        "{error}"
    );
}

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}
