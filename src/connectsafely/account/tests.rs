use super::*;
use crate::secret::Secret;
use crate::sim::{self, SimOptions};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-key";

fn client(base_url: &str) -> Client {
    Client::new(base_url, Secret::new(KEY), Duration::from_secs(5)).unwrap()
}

/// A server that answers `GET route` once with `response`, and only to our bearer key.
async fn serve(route: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(route))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    server
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn at(text: &str) -> Option<DateTime<Utc>> {
    Some(text.parse().unwrap())
}

// ---- quota ----

#[tokio::test]
async fn quota_reads_the_documented_example_and_prefers_the_weekly_window() {
    let body = json!({
        "success": true,
        "quotas": [
            {"feature": "CONNECT", "window": "daily", "used": 3, "limit": 20, "linkedinLimit": 25,
             "remaining": 17, "limitReached": false, "resetAt": "2024-01-16T00:00:00.000Z"},
            {"feature": "CONNECT", "window": "weekly", "used": 12, "limit": 90,
             "linkedinLimit": 100, "remaining": 78, "limitReached": false, "limitReachedAt": null,
             "resetAt": "2024-01-22T00:00:00.000Z", "somethingNew": {"x": 1}},
            {"feature": "MESSAGE", "window": "daily", "used": "n/a"},
        ],
    });
    let response = ok(body)
        .insert_header("X-RateLimit-Action", "CONNECT")
        .insert_header("X-RateLimit-Limit", "90")
        .insert_header("X-RateLimit-Used", "12")
        .insert_header("X-RateLimit-Remaining", "78")
        .insert_header("X-RateLimit-Reset", "2024-01-22T00:00:00.000Z");
    // The id is one path segment however odd it is.
    let server = serve("/account/acc%201%2Fx/quota", response).await;
    let quota = client(&server.uri()).quota("acc 1/x").await.unwrap();
    assert_eq!(
        quota.connect,
        Some(QuotaWindow {
            used: 12,
            limit: 90,
            linkedin_limit: Some(100),
            remaining: 78,
            limit_reached: false,
            reset_at: at("2024-01-22T00:00:00Z"),
            window: "weekly".to_string(),
        })
    );
    let limit = quota.rate_limit.unwrap();
    assert_eq!(
        (limit.action.as_str(), limit.limit, limit.remaining),
        ("CONNECT", Some(90), Some(78))
    );
}

#[tokio::test]
async fn quota_fills_in_missing_optional_fields() {
    let body = json!({"quotas": [{"feature": "connect", "used": 90.0, "limit": "90"}]});
    let server = serve("/account/acc_1/quota", ok(body)).await;
    let quota = client(&server.uri()).quota("acc_1").await.unwrap();
    assert_eq!(
        quota.connect,
        Some(QuotaWindow {
            used: 90,
            limit: 90,
            linkedin_limit: None,
            remaining: 0,
            limit_reached: true,
            reset_at: None,
            window: "unknown".to_string(),
        })
    );
    assert_eq!(quota.rate_limit, None);
}

#[tokio::test]
async fn quota_without_a_connect_entry_has_no_connect_window() {
    for body in [
        json!({}),
        json!({"quotas": null}),
        json!({"success": true, "quotas": [{"feature": "MESSAGE", "used": 1, "limit": 5}]}),
    ] {
        let server = serve("/account/acc_1/quota", ok(body.clone())).await;
        let quota = client(&server.uri()).quota("acc_1").await.unwrap();
        assert_eq!(quota.connect, None, "{body}");
    }
}

#[tokio::test]
async fn quota_without_usage_or_json_is_unreadable() {
    let cases = [
        (
            ok(json!({"quotas": [{"feature": "CONNECT", "limit": 90}]})),
            "`used`",
        ),
        (ok(json!({"quotas": {"feature": "CONNECT"}})), "quotas"),
        (
            ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
            "expected value",
        ),
    ];
    for (response, needle) in cases {
        let server = serve("/account/acc_1/quota", response).await;
        match client(&server.uri()).quota("acc_1").await {
            Err(error @ ApiError::Unreadable { .. }) => {
                assert!(error.to_string().contains(needle), "{error}")
            }
            other => panic!("expected Unreadable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn quota_maps_error_answers() {
    let server = serve(
        "/account/acc_1/quota",
        ResponseTemplate::new(401).set_body_json(json!({"error": "Unauthorized"})),
    )
    .await;
    assert!(matches!(
        client(&server.uri()).quota("acc_1").await,
        Err(ApiError::Unauthorized)
    ));

    let server = serve(
        "/account/acc_gone/quota",
        ResponseTemplate::new(404)
            .set_body_json(json!({"success": false, "error": "Account not found"})),
    )
    .await;
    match client(&server.uri()).quota("acc_gone").await {
        Err(ApiError::AccountNotFound {
            account_id,
            message,
        }) => assert_eq!(
            (account_id.as_str(), message.as_str()),
            ("acc_gone", "Account not found")
        ),
        other => panic!("expected AccountNotFound, got {other:?}"),
    }

    let server = serve(
        "/account/acc_1/quota",
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "12")
            .set_body_json(
                json!({"success": false, "code": "RATE_LIMITED", "message": "Slow down"}),
            ),
    )
    .await;
    match client(&server.uri()).quota("acc_1").await {
        Err(error @ ApiError::RateLimited { .. }) => {
            assert_eq!(
                error.to_string(),
                "ConnectSafely rate-limited the call (429, retry after 12s): RATE_LIMITED: Slow down"
            );
            let ApiError::RateLimited { retry_after, .. } = error else {
                unreachable!()
            };
            assert_eq!(retry_after, Some(Duration::from_secs(12)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }

    let server = serve(
        "/account/acc_1/quota",
        ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"),
    )
    .await;
    match client(&server.uri()).quota("acc_1").await {
        Err(ApiError::Status { status, message }) => {
            assert_eq!(
                (status, message.as_str()),
                (502, "<html>Bad gateway</html>")
            )
        }
        other => panic!("expected Status, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = serve(
        "/account/acc_1/quota",
        ok(json!({})).set_delay(Duration::from_secs(2)),
    )
    .await;
    let client = Client::new(&server.uri(), Secret::new(KEY), Duration::from_millis(200)).unwrap();
    assert!(matches!(
        client.quota("acc_1").await,
        Err(ApiError::Timeout)
    ));
}

// ---- account status ----

async fn status_server(account_id: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/account/status"))
        .and(query_param("accountId", account_id))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn account_status_reads_the_documented_fields() {
    let body = json!({
        "success": true, "accountId": "acc 1&x", "status": "IN_USE", "enabled": true,
        "hasTokens": true, "plan": {"name": "Pro", "seats": 3},
    });
    let server = status_server("acc 1&x", ok(body)).await;
    let status = client(&server.uri())
        .account_status("acc 1&x")
        .await
        .unwrap();
    assert_eq!(
        status,
        AccountStatus {
            status: "IN_USE".to_string(),
            enabled: true,
            has_tokens: Some(true),
        }
    );
    assert_eq!(status.blocks_sending(), None);
}

#[tokio::test]
async fn account_status_defaults_missing_fields() {
    let server = status_server("acc_1", ok(json!({"status": "WARMUP"}))).await;
    let status = client(&server.uri()).account_status("acc_1").await.unwrap();
    assert_eq!(
        (status.status.as_str(), status.enabled, status.has_tokens),
        ("WARMUP", true, None)
    );

    let server = status_server("acc_1", ok(json!({"enabled": null, "hasTokens": false}))).await;
    let status = client(&server.uri()).account_status("acc_1").await.unwrap();
    assert_eq!(
        (status.status.as_str(), status.enabled, status.has_tokens),
        ("UNKNOWN", true, Some(false))
    );
}

#[tokio::test]
async fn account_status_maps_error_answers() {
    let server = status_server(
        "acc_1",
        ResponseTemplate::new(401).set_body_json(json!({"error": "Unauthorized"})),
    )
    .await;
    assert!(matches!(
        client(&server.uri()).account_status("acc_1").await,
        Err(ApiError::Unauthorized)
    ));

    let server = status_server(
        "acc_gone",
        ResponseTemplate::new(404).set_body_json(json!({"error": "Account not found"})),
    )
    .await;
    let error = client(&server.uri())
        .account_status("acc_gone")
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::AccountNotFound { .. }));
    assert_eq!(
        error.to_string(),
        "ConnectSafely has no account acc_gone (404): Account not found"
    );

    let server = status_server("acc_1", ok(json!({"status": 3}))).await;
    let error = client(&server.uri())
        .account_status("acc_1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Unreadable { .. }) && error.to_string().contains("status"),
        "{error}"
    );
}

#[test]
fn only_a_disabled_or_broken_account_blocks_sending() {
    let status = |status: &str, enabled: bool| AccountStatus {
        status: status.to_string(),
        enabled,
        has_tokens: None,
    };
    assert_eq!(
        status("AVAILABLE", false).blocks_sending().as_deref(),
        Some("account is disabled")
    );
    assert_eq!(
        status("ERROR", true).blocks_sending().as_deref(),
        Some("account is in error")
    );
    assert_eq!(
        status("error", true).blocks_sending().as_deref(),
        Some("account is in error")
    );
    for open in [
        "AVAILABLE",
        "IN_USE",
        "WARMUP",
        "UNKNOWN",
        "SOMETHING_NEW",
        "",
    ] {
        assert_eq!(status(open, true).blocks_sending(), None, "{open}");
    }
}

// ---- accounts ----

#[tokio::test]
async fn accounts_reads_either_envelope_and_any_name_shape() {
    let entries = json!([
        {"id": "acc_1", "firstName": "Ada", "lastName": "Lovelace", "status": "AVAILABLE",
         "enabled": true, "extra": [1, 2]},
        {"id": "acc_2", "name": "Grace Hopper", "firstName": "G"},
        {"accountId": 42, "fullName": "  ", "firstName": "Alan", "lastName": null},
        {"id": "acc_4", "displayName": "Team inbox", "enabled": false},
    ]);
    let expected = vec![
        RemoteAccount {
            id: "acc_1".to_string(),
            name: Some("Ada Lovelace".to_string()),
            status: Some("AVAILABLE".to_string()),
            enabled: Some(true),
        },
        RemoteAccount {
            id: "acc_2".to_string(),
            name: Some("Grace Hopper".to_string()),
            status: None,
            enabled: None,
        },
        RemoteAccount {
            id: "42".to_string(),
            name: Some("Alan".to_string()),
            status: None,
            enabled: None,
        },
        RemoteAccount {
            id: "acc_4".to_string(),
            name: Some("Team inbox".to_string()),
            status: None,
            enabled: Some(false),
        },
    ];
    for body in [
        entries.clone(),
        json!({"success": true, "accounts": entries}),
    ] {
        let server = serve("/accounts", ok(body)).await;
        assert_eq!(client(&server.uri()).accounts().await.unwrap(), expected);
    }
    assert_eq!(
        serde_json::to_value(&expected[1]).unwrap(),
        json!({"id": "acc_2", "name": "Grace Hopper", "status": null, "enabled": null})
    );
}

#[tokio::test]
async fn accounts_without_ids_or_a_list_are_unreadable() {
    for (body, needle) in [
        (
            json!({"accounts": [{"id": "a"}, {"name": "x"}]}),
            "accounts[1] has no id",
        ),
        (json!({"success": true}), "no `accounts` list"),
        (
            json!({"accounts": [{"id": "a", "enabled": "yes"}]}),
            "accounts[0]",
        ),
    ] {
        let server = serve("/accounts", ok(body)).await;
        let error = client(&server.uri()).accounts().await.unwrap_err();
        assert!(
            matches!(error, ApiError::Unreadable { .. }) && error.to_string().contains(needle),
            "{error}"
        );
    }
}

#[tokio::test]
async fn accounts_and_probe_key_map_error_answers() {
    let unauthorized =
        || ResponseTemplate::new(401).set_body_json(json!({"error": "Unauthorized"}));
    let server = serve("/accounts", unauthorized()).await;
    assert!(matches!(
        client(&server.uri()).accounts().await,
        Err(ApiError::Unauthorized)
    ));
    let server = serve("/accounts", unauthorized()).await;
    assert!(matches!(
        client(&server.uri()).probe_key().await,
        Err(ApiError::Unauthorized)
    ));
    // No account is named, so a 404 here is the URL's fault, not an account's.
    let server = serve("/accounts", ResponseTemplate::new(404)).await;
    assert!(matches!(
        client(&server.uri()).accounts().await,
        Err(ApiError::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn probe_key_only_needs_a_2xx() {
    let server = serve(
        "/accounts",
        ResponseTemplate::new(200).set_body_string("not json"),
    )
    .await;
    client(&server.uri()).probe_key().await.unwrap();
}

// ---- against the project's simulator ----

struct SimServer {
    url: String,
    control: reqwest::Client,
}

impl SimServer {
    async fn start(options: SimOptions) -> SimServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(sim::serve(listener, options));
        SimServer {
            url,
            control: reqwest::Client::new(),
        }
    }

    fn client(&self) -> Client {
        Client::new(
            &self.url,
            Secret::new(SimOptions::default().api_keys[0].clone()),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    async fn put(&self, route: &str, body: Value) {
        let response = self
            .control
            .put(format!("{}/_sim/{route}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{route}: {}",
            response.status()
        );
    }
}

fn no_per_minute_limits() -> SimOptions {
    SimOptions {
        per_minute_limits: false,
        ..SimOptions::default()
    }
}

#[tokio::test]
async fn quota_reads_what_the_simulator_sends() {
    let sim = SimServer::start(no_per_minute_limits()).await;
    // An id that needs encoding proves the client and the simulator agree on it.
    sim.put("accounts/team%20a%2F1", json!({"used": 42, "limit": 80}))
        .await;
    let window = sim
        .client()
        .quota("team a/1")
        .await
        .unwrap()
        .connect
        .unwrap();
    assert_eq!(
        (
            window.used,
            window.limit,
            window.remaining,
            window.linkedin_limit,
            window.limit_reached,
            window.window.as_str()
        ),
        (42, 80, 38, Some(90), false, "weekly")
    );
    assert!(window.reset_at.unwrap() > Utc::now());

    sim.put("accounts/team%20a%2F1", json!({"used": 80})).await;
    let window = sim
        .client()
        .quota("team a/1")
        .await
        .unwrap()
        .connect
        .unwrap();
    assert_eq!(
        (window.used, window.remaining, window.limit_reached),
        (80, 0, true)
    );
}

#[tokio::test]
async fn account_status_reads_what_the_simulator_sends() {
    let sim = SimServer::start(no_per_minute_limits()).await;
    let client = sim.client();
    let status = client.account_status("acc_7").await.unwrap();
    assert_eq!(
        status,
        AccountStatus {
            status: "AVAILABLE".to_string(),
            enabled: true,
            has_tokens: Some(true),
        }
    );
    assert_eq!(status.blocks_sending(), None);

    sim.put("accounts/acc_7", json!({"enabled": false})).await;
    let status = client.account_status("acc_7").await.unwrap();
    assert!(!status.enabled);
    assert_eq!(
        status.blocks_sending().as_deref(),
        Some("account is disabled")
    );

    sim.put(
        "accounts/acc_7",
        json!({"enabled": true, "status": "ERROR"}),
    )
    .await;
    let status = client.account_status("acc_7").await.unwrap();
    assert_eq!(status.has_tokens, Some(false));
    assert_eq!(
        status.blocks_sending().as_deref(),
        Some("account is in error")
    );
}

#[tokio::test]
async fn accounts_reads_what_the_simulator_sends() {
    let sim = SimServer::start(no_per_minute_limits()).await;
    sim.put(
        "accounts/acc_named",
        json!({"firstName": "Ada", "lastName": "Lovelace", "enabled": false}),
    )
    .await;
    let accounts = sim.client().accounts().await.unwrap();
    assert_eq!(
        accounts,
        vec![
            RemoteAccount {
                id: "acc_default".to_string(),
                name: None,
                status: Some("AVAILABLE".to_string()),
                enabled: Some(true),
            },
            RemoteAccount {
                id: "acc_named".to_string(),
                name: Some("Ada Lovelace".to_string()),
                status: Some("AVAILABLE".to_string()),
                enabled: Some(false),
            },
        ]
    );
    sim.client().probe_key().await.unwrap();
}

#[tokio::test]
async fn the_simulator_refuses_a_bad_key_and_limits_reads_per_minute() {
    let sim = SimServer::start(SimOptions::default()).await;
    let stranger = Client::new(&sim.url, Secret::new("wrong"), Duration::from_secs(5)).unwrap();
    assert!(matches!(
        stranger.quota("acc_1").await,
        Err(ApiError::Unauthorized)
    ));
    assert!(matches!(
        stranger.account_status("acc_1").await,
        Err(ApiError::Unauthorized)
    ));
    assert!(matches!(
        stranger.accounts().await,
        Err(ApiError::Unauthorized)
    ));

    sim.put("config", json!({"accountEndpointsPerMinute": 1}))
        .await;
    let client = sim.client();
    client.quota("acc_1").await.unwrap();
    match client.account_status("acc_1").await {
        Err(ApiError::RateLimited { retry_after, .. }) => {
            assert!(retry_after.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(60)))
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}
