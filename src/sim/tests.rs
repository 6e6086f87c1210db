//! The simulator driven through its router, as a client would see it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::profiles::urn_for_slug;
use super::quota::weekly_reset_after;
use super::{Sim, SimOptions, router};

const KEY: &str = "sim-api-key";

fn app() -> Router {
    router(Sim::new(SimOptions::default()))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

async fn call(app: &Router, method: Method, uri: &str, key: Option<&str>, body: Value) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = if body.is_null() {
        Body::empty()
    } else {
        request = request.header("content-type", "application/json");
        Body::from(body.to_string())
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn connect(app: &Router, body: Value) -> Answer {
    call(app, Method::POST, "/connect", Some(KEY), body).await
}

async fn get(app: &Router, uri: &str) -> Answer {
    call(app, Method::GET, uri, Some(KEY), Value::Null).await
}

async fn control(app: &Router, method: Method, uri: &str, body: Value) -> Answer {
    call(app, method, uri, None, body).await
}

async fn invitations(app: &Router) -> Value {
    control(app, Method::GET, "/_sim/invitations", Value::Null)
        .await
        .body
}

fn instant(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap();
    // The vendor's format: milliseconds and `Z`.
    assert!(text.ends_with('Z') && text.len() == 24, "{text}");
    text.parse().unwrap()
}

#[tokio::test]
async fn connect_sends_and_reports_usage_in_headers() {
    let app = app();
    let before = Utc::now();
    let answer = connect(
        &app,
        json!({"profileId": "john-doe-123", "customMessage": "Hi John"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({
            "success": true,
            "message": "Connection request sent successfully",
            "profileUrn": urn_for_slug("john-doe-123"),
        })
    );
    assert_eq!(answer.header("x-ratelimit-action"), "CONNECT");
    assert_eq!(answer.header("x-ratelimit-limit"), "90");
    assert_eq!(answer.header("x-ratelimit-used"), "1");
    assert_eq!(answer.header("x-ratelimit-remaining"), "89");
    assert_eq!(
        instant(&json!(answer.header("x-ratelimit-reset"))),
        weekly_reset_after(before)
    );
    let invitations = invitations(&app).await;
    assert_eq!(invitations["total"], 1);
    assert_eq!(
        invitations["accounts"],
        json!({"acc_default": {"john-doe-123": 1}})
    );
}

#[tokio::test]
async fn every_error_has_the_vendor_body_and_the_rate_limit_headers() {
    let app = app();
    let cases = [
        (
            json!({"accountId": "acc_1"}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Either profileId or profileUrn must be provided", "success": false}),
        ),
        (
            json!({"accountId": "acc_1", "profileId": "unknown-bob"}),
            StatusCode::NOT_FOUND,
            json!({"error": "LinkedIn profile not found: unknown-bob", "success": false}),
        ),
        (
            json!({"accountId": "acc_1", "profileId": "connected-carol"}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Already connected to this profile", "success": false}),
        ),
        (
            json!({"accountId": "acc_1", "profileId": "x", "customMessage": "a".repeat(301)}),
            StatusCode::BAD_REQUEST,
            json!({"error": "customMessage must be at most 300 characters", "success": false}),
        ),
    ];
    for (body, status, expected) in cases {
        let answer = connect(&app, body).await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.body, expected);
        assert_eq!(answer.header("x-ratelimit-action"), "CONNECT");
        assert_eq!(answer.header("x-ratelimit-used"), "0");
        assert_eq!(answer.header("x-ratelimit-remaining"), "90");
    }
    let unauthorized = call(
        &app,
        Method::POST,
        "/connect",
        Some("wrong"),
        json!({"profileId": "x"}),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.body, json!({"error": "Unauthorized"}));
    assert_eq!(unauthorized.header("x-ratelimit-limit"), "90");
    let anonymous = call(
        &app,
        Method::POST,
        "/connect",
        None,
        json!({"profileId": "x"}),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(invitations(&app).await["total"], 0);
}

#[tokio::test]
async fn message_limit_counts_characters_not_bytes() {
    let app = app();
    let answer = connect(
        &app,
        json!({"profileId": "x", "customMessage": "é".repeat(300)}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn exceeding_the_weekly_limit_holds_the_account() {
    let app = app();
    control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_1",
        json!({"limit": 2}),
    )
    .await;
    for n in 1..=2 {
        let answer = connect(
            &app,
            json!({"accountId": "acc_1", "profileId": format!("p-{n}")}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let before = Utc::now();
    let refused = connect(&app, json!({"accountId": "acc_1", "profileId": "p-3"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["success"], false);
    assert_eq!(
        refused.body["error"],
        "Connection request limit exceeded: 2/2 used. New connection requests blocked for 24 \
         hours. Other activities (messaging, following, etc.) are not affected."
    );
    let hold_until = instant(&refused.body["holdUntil"]);
    let held_for = hold_until - before;
    // holdUntil is written to the millisecond, `before` is finer.
    let since = TimeDelta::hours(24) - TimeDelta::milliseconds(1);
    assert!(held_for >= since && held_for < since + TimeDelta::seconds(5));
    assert_eq!(
        instant(&refused.body["weeklyReset"]),
        weekly_reset_after(before)
    );
    assert!(refused.headers.get("retry-after").is_none());
    assert_eq!(refused.header("x-ratelimit-used"), "2");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");

    // While held, every connect is refused with the same holdUntil, even to a connected
    // profile, and nothing is counted.
    let again = connect(
        &app,
        json!({"accountId": "acc_1", "profileId": "connected-x"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(again.body["holdUntil"], refused.body["holdUntil"]);
    // Other accounts are unaffected.
    let other = connect(&app, json!({"accountId": "acc_2", "profileId": "p-3"})).await;
    assert_eq!(other.status, StatusCode::OK);

    let stats = control(&app, Method::GET, "/_sim/stats", Value::Null)
        .await
        .body;
    assert_eq!(stats["rateLimited"], json!({"hold": 2, "perMinute": 0}));
    assert_eq!(
        stats["accounts"]["acc_1"]["endpoints"]["connect"],
        json!({"200": 2, "429": 2})
    );
    assert_eq!(stats["accounts"]["acc_2"]["rateLimited"]["hold"], 0);
    assert_eq!(stats["endpoints"]["connect"]["200"], 3);
    assert_eq!(invitations(&app).await["total"], 3);
}

#[tokio::test]
async fn a_hold_set_through_control_outlasts_a_reset() {
    let app = app();
    let hold_until = Utc::now() + TimeDelta::hours(3);
    let state = control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_default",
        json!({"used": 0, "holdUntil": hold_until}),
    )
    .await;
    assert_eq!(state.status, StatusCode::OK);
    let refused = connect(&app, json!({"profileId": "x"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        instant(&refused.body["holdUntil"]),
        DateTime::from_timestamp_millis(hold_until.timestamp_millis()).unwrap()
    );
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Connection requests are on hold until ")
    );
    let cleared = control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_default",
        json!({"holdUntil": null}),
    )
    .await;
    assert_eq!(cleared.body["holdUntil"], Value::Null);
    assert_eq!(
        connect(&app, json!({"profileId": "x"})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn control_sets_short_windows_and_resets_pass() {
    let app = app();
    let past = Utc::now() - TimeDelta::seconds(5);
    control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_1",
        json!({"used": 90, "weeklyReset": past, "weekSeconds": 60, "holdSeconds": 2}),
    )
    .await;
    // The reset has passed: the next look finds the counter at 0 and the next reset a window on.
    let state = control(&app, Method::GET, "/_sim/accounts/acc_1", Value::Null).await;
    assert_eq!(state.body["used"], 0);
    assert_eq!(state.body["weekSeconds"], 60);
    assert_eq!(state.body["holdSeconds"], 2);
    assert_eq!(
        instant(&state.body["weeklyReset"]),
        DateTime::from_timestamp_millis((past + TimeDelta::seconds(60)).timestamp_millis())
            .unwrap()
    );

    // weekSeconds alone starts a window of that length now.
    let before = Utc::now();
    let state = control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_2",
        json!({"weekSeconds": 30, "limit": 1, "used": 1}),
    )
    .await;
    let reset = instant(&state.body["weeklyReset"]);
    assert!(
        reset >= before + TimeDelta::seconds(29) && reset <= Utc::now() + TimeDelta::seconds(30)
    );
    assert_eq!(state.body["limitReached"], true);
    let refused = connect(&app, json!({"accountId": "acc_2", "profileId": "x"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(instant(&refused.body["weeklyReset"]), reset);

    let bad = control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_2",
        json!({"weekSeconds": 0}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let misspelt = control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_2",
        json!({"holdSecond": 5}),
    )
    .await;
    assert_eq!(misspelt.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn per_minute_limits_answer_429_with_retry_after_and_no_hold() {
    let app = app();
    control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"accountWritesPerMinute": 2}),
    )
    .await;
    for n in 0..2 {
        let ok = connect(&app, json!({"profileId": format!("p-{n}")})).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let throttled = connect(&app, json!({"profileId": "p-2"})).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(throttled.body["success"], false);
    assert!(throttled.body.get("holdUntil").is_none());
    assert_eq!(throttled.header("x-ratelimit-used"), "2");
    // Another account has its own write budget; reads are separate too.
    let other = connect(&app, json!({"accountId": "acc_2", "profileId": "p-2"})).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(get(&app, "/relationship/p-2").await.status, StatusCode::OK);

    let stats = control(&app, Method::GET, "/_sim/stats", Value::Null)
        .await
        .body;
    assert_eq!(stats["rateLimited"], json!({"hold": 0, "perMinute": 1}));
    assert_eq!(
        stats["accounts"]["acc_default"]["rateLimited"]["perMinute"],
        1
    );

    // The key's own limit covers every call made with it (4 so far; refusals do not count).
    control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"keyPerMinute": 4}),
    )
    .await;
    let throttled = get(&app, "/accounts").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key("retry-after"));

    // Tests can switch them off.
    control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"perMinuteLimits": false}),
    )
    .await;
    for n in 3..20 {
        let ok = connect(&app, json!({"profileId": format!("p-{n}")})).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn account_endpoints_have_their_own_per_minute_limit() {
    let app = app();
    for _ in 0..10 {
        assert_eq!(
            get(&app, "/account/acc_1/quota").await.status,
            StatusCode::OK
        );
    }
    let throttled = get(&app, "/account/status?accountId=acc_1").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key("retry-after"));
    assert_eq!(
        get(&app, "/account/status?accountId=acc_2").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn relationship_reflects_sends_and_profile_rules() {
    let app = app();
    let fresh = get(&app, "/relationship/john-doe").await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(
        fresh.body,
        json!({
            "success": true,
            "accountId": "acc_default",
            "profileUrn": urn_for_slug("john-doe"),
            "connected": false,
            "invitationSent": false,
            "invitationReceived": false,
            "status": "NOT_CONNECTED",
        })
    );
    connect(&app, json!({"profileId": "john-doe"})).await;
    let after = get(&app, "/relationship/john-doe").await;
    assert_eq!(after.body["invitationSent"], true);
    assert_eq!(after.body["status"], "INVITATION_SENT");
    let elsewhere = get(&app, "/relationship/acc_2/john-doe").await;
    assert_eq!(elsewhere.body["accountId"], "acc_2");
    assert_eq!(elsewhere.body["invitationSent"], false);

    let connected = get(&app, "/relationship/acc_2/connected-amy").await;
    assert_eq!(connected.body["connected"], true);
    assert_eq!(connected.body["status"], "CONNECTED");
    let pending = get(&app, "/relationship/acc_2/pending-ben").await;
    assert_eq!(pending.body["invitationSent"], true);
    assert_eq!(pending.body["status"], "INVITATION_SENT");
    let missing = get(&app, "/relationship/notfound-cy").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body,
        json!({"error": "LinkedIn profile not found: notfound-cy", "success": false})
    );
    let unauthorized = call(&app, Method::GET, "/relationship/x", None, Value::Null).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);

    // No quota cost.
    let quota = get(&app, "/account/acc_default/quota").await;
    assert_eq!(quota.body["quotas"][0]["used"], 1);
}

#[tokio::test]
async fn urns_resolve_to_the_slug_they_were_generated_for() {
    let app = app();
    let sent = connect(&app, json!({"profileId": "amy"})).await;
    let urn = sent.body["profileUrn"].as_str().unwrap().to_owned();
    // The same person by URN is a duplicate, not a new profile.
    let again = connect(&app, json!({"profileUrn": urn})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["profileUrn"], urn.as_str());
    assert_eq!(
        invitations(&app).await["accounts"]["acc_default"],
        json!({"amy": 2})
    );
    let by_urn = get(&app, &format!("/relationship/{urn}")).await;
    assert_eq!(by_urn.body["invitationSent"], true);

    // A URN learnt from a lookup keeps the profile's standing.
    let connected = get(&app, "/relationship/connected-zed").await;
    let connected_urn = connected.body["profileUrn"].as_str().unwrap().to_owned();
    let refused = connect(&app, json!({"profileUrn": connected_urn})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"], "Already connected to this profile");

    // A URN the sim never handed out is a real member keyed by the URN itself.
    let stranger = "urn:li:fsd_profile:ACoAAStranger";
    let sent = connect(&app, json!({"profileUrn": stranger})).await;
    assert_eq!(sent.status, StatusCode::OK);
    assert_eq!(sent.body["profileUrn"], stranger);
    assert_eq!(
        invitations(&app).await["accounts"]["acc_default"][stranger],
        1
    );
}

#[tokio::test]
async fn a_pending_profile_still_takes_an_invitation() {
    let app = app();
    let answer = connect(&app, json!({"profileId": "pending-dee"})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-ratelimit-used"), "1");
}

#[tokio::test]
async fn quota_endpoint_counts_usage_by_other_tools() {
    let app = app();
    connect(&app, json!({"accountId": "acc_1", "profileId": "x"})).await;
    let answer = get(&app, "/account/acc_1/quota").await;
    assert_eq!(answer.status, StatusCode::OK);
    let quota = &answer.body["quotas"][0];
    assert_eq!(quota["feature"], "CONNECT");
    assert_eq!(quota["window"], "weekly");
    assert_eq!(quota["used"], 1);
    assert_eq!(quota["limit"], 90);
    assert_eq!(quota["linkedinLimit"], 100);
    assert_eq!(quota["remaining"], 89);
    assert_eq!(quota["limitReached"], false);
    assert_eq!(quota["limitReachedAt"], Value::Null);
    assert_eq!(instant(&quota["resetAt"]), weekly_reset_after(Utc::now()));

    control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_1",
        json!({"used": 90}),
    )
    .await;
    let quota = get(&app, "/account/acc_1/quota").await.body["quotas"][0].clone();
    assert_eq!(quota["used"], 90);
    assert_eq!(quota["remaining"], 0);
    assert_eq!(quota["limitReached"], true);
    instant(&quota["limitReachedAt"]);
    let unauthorized = call(&app, Method::GET, "/account/acc_1/quota", None, Value::Null).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn account_status_and_list() {
    let app = app();
    let status = get(&app, "/account/status").await;
    assert_eq!(status.body["accountId"], "acc_default");
    assert_eq!(status.body["status"], "AVAILABLE");
    assert_eq!(status.body["enabled"], true);
    assert_eq!(status.body["hasTokens"], true);

    control(
        &app,
        Method::PUT,
        "/_sim/accounts/acc_2",
        json!({"status": "ERROR", "enabled": false, "firstName": "Ada", "lastName": "L"}),
    )
    .await;
    let status = get(&app, "/account/status?accountId=acc_2").await;
    assert_eq!(status.body["status"], "ERROR");
    assert_eq!(status.body["enabled"], false);
    assert_eq!(status.body["hasTokens"], false);

    let list = get(&app, "/accounts").await;
    assert_eq!(
        list.body["accounts"],
        json!([
            {"id": "acc_2", "firstName": "Ada", "lastName": "L", "status": "ERROR", "enabled": false},
            {"id": "acc_default", "firstName": null, "lastName": null, "status": "AVAILABLE", "enabled": true},
        ])
    );
    let unauthorized = call(&app, Method::GET, "/accounts", None, Value::Null).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let unauthorized = call(&app, Method::GET, "/account/status", None, Value::Null).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn injected_faults() {
    let app = app();
    control(&app, Method::PUT, "/_sim/config", json!({"errorRate": 1.0})).await;
    let failed = connect(&app, json!({"profileId": "x"})).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.header("x-ratelimit-used"), "0");
    assert_eq!(invitations(&app).await["total"], 0);

    control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"errorRate": 0.0, "timeoutRate": 1.0, "timeoutMs": 20}),
    )
    .await;
    let timed_out = connect(&app, json!({"profileId": "x"})).await;
    assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(invitations(&app).await["total"], 0);

    // The crash window: the invitation goes out, the answer is an error.
    control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"timeoutRate": 0, "sendThenFailRate": 1}),
    )
    .await;
    let lost = connect(&app, json!({"profileId": "x"})).await;
    assert_eq!(lost.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(lost.header("x-ratelimit-used"), "1");
    assert_eq!(invitations(&app).await["accounts"]["acc_default"]["x"], 1);
    assert_eq!(
        get(&app, "/relationship/x").await.body["invitationSent"],
        true
    );

    let bad = control(&app, Method::PUT, "/_sim/config", json!({"errorRate": 1.5})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn latency_records_the_invitation_before_answering() {
    let app = app();
    control(&app, Method::PUT, "/_sim/config", json!({"latencyMs": 400})).await;
    let pending = tokio::spawn({
        let app = app.clone();
        async move { connect(&app, json!({"profileId": "slow"})).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished());
    assert_eq!(invitations(&app).await["total"], 1);
    assert_eq!(pending.await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn config_round_trip_and_reset() {
    let app = app();
    let config = control(&app, Method::GET, "/_sim/config", Value::Null).await;
    assert_eq!(
        config.body,
        json!({
            "apiKeys": ["sim-api-key"],
            "latencyMs": 0,
            "errorRate": 0.0,
            "timeoutRate": 0.0,
            "timeoutMs": 60000,
            "sendThenFailRate": 0.0,
            "perMinuteLimits": true,
            "keyPerMinute": 60,
            "accountWritesPerMinute": 15,
            "accountReadsPerMinute": 30,
            "accountEndpointsPerMinute": 10,
            "reinviteBlock": "21days",
            "acceptProbability": 0.0,
            "acceptDelay": "0s",
        })
    );
    let changed = control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"apiKeys": ["other"]}),
    )
    .await;
    assert_eq!(changed.body["apiKeys"], json!(["other"]));
    // The old key is now refused: how tests exercise the 401 pause.
    let refused = connect(&app, json!({"profileId": "x"})).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let ok = call(
        &app,
        Method::POST,
        "/connect",
        Some("other"),
        json!({"profileId": "x"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);

    let reset = control(&app, Method::POST, "/_sim/reset", Value::Null).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(
        invitations(&app).await,
        json!({"total": 0, "accounts": {}, "states": {}})
    );
    let stats = control(&app, Method::GET, "/_sim/stats", Value::Null).await;
    assert_eq!(stats.body["requests"], 0);
    assert_eq!(
        connect(&app, json!({"profileId": "x"})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_paths_are_json_404s() {
    let app = app();
    let answer = get(&app, "/linkedin/connect").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["success"], false);
}

#[tokio::test]
async fn serve_answers_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(super::serve(listener, SimOptions::default()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /_sim/invitations HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"total": 0, "accounts": {}, "states": {}})
    );
    server.abort();
}

async fn withdraw(app: &Router, body: Value) -> Answer {
    call(app, Method::POST, "/invitations/withdraw", Some(KEY), body).await
}

async fn stats(app: &Router) -> Value {
    control(app, Method::GET, "/_sim/stats", Value::Null)
        .await
        .body
}

async fn configure(app: &Router, body: Value) {
    let answer = control(app, Method::PUT, "/_sim/config", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn withdraw_takes_back_the_pending_invitation_but_not_the_weeks_request() {
    let app = app();
    connect(&app, json!({"accountId": "acc_1", "profileId": "amy"})).await;
    let sent = invitations(&app).await["states"]["acc_1"]["amy"].clone();
    assert_eq!(sent["state"], "pending");
    let withdrawn = withdraw(&app, json!({"accountId": "acc_1", "profileId": "amy"})).await;
    assert_eq!(withdrawn.status, StatusCode::OK);
    assert_eq!(
        withdrawn.body,
        json!({
            "success": true,
            "message": "Invitation withdrawn successfully",
            "invitationId": sent["invitationId"],
            "profileUrn": urn_for_slug("amy"),
        })
    );
    let relationship = get(&app, "/relationship/acc_1/amy").await.body;
    assert_eq!(relationship["connected"], false);
    assert_eq!(relationship["invitationSent"], false);
    assert_eq!(relationship["status"], "NOT_CONNECTED");
    let shown = invitations(&app).await["states"]["acc_1"]["amy"].clone();
    assert_eq!(shown["state"], "withdrawn");
    assert!(instant(&shown["withdrawnAt"]) >= instant(&shown["sentAt"]));
    // The week's request stays spent.
    let quota = get(&app, "/account/acc_1/quota").await.body;
    assert_eq!(quota["quotas"][0]["used"], 1);

    // Nothing pending: already withdrawn, never sent, or sent by another account. By URN too.
    let cases = [
        json!({"accountId": "acc_1", "profileId": "amy"}),
        json!({"accountId": "acc_1", "profileUrn": urn_for_slug("amy")}),
        json!({"accountId": "acc_1", "profileId": "never-asked"}),
        json!({"accountId": "acc_2", "profileId": "amy"}),
    ];
    for body in cases {
        let refused = withdraw(&app, body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused.body["success"], false);
        assert!(
            refused.body["error"]
                .as_str()
                .unwrap()
                .starts_with("No pending invitation to "),
            "{}",
            refused.body
        );
    }
    let missing = withdraw(&app, json!({"accountId": "acc_1"})).await;
    assert_eq!(
        missing.body,
        json!({"error": "Either profileId or profileUrn must be provided", "success": false})
    );
    let unknown = withdraw(&app, json!({"profileId": "unknown-x"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let unauthorized = call(
        &app,
        Method::POST,
        "/invitations/withdraw",
        None,
        json!({"profileId": "amy"}),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);

    let stats = stats(&app).await;
    assert_eq!(
        stats["endpoints"]["withdraw"],
        json!({"200": 1, "400": 5, "401": 1, "404": 1})
    );
    assert_eq!(
        stats["accounts"]["acc_1"]["endpoints"]["withdraw"]["200"],
        1
    );
}

#[tokio::test]
async fn another_tools_pending_invitation_can_be_withdrawn() {
    let app = app();
    let withdrawn = withdraw(&app, json!({"profileId": "pending-ben"})).await;
    assert_eq!(withdrawn.status, StatusCode::OK);
    let relationship = get(&app, "/relationship/pending-ben").await.body;
    assert_eq!(relationship["invitationSent"], false);
    let shown = invitations(&app).await;
    assert_eq!(shown["total"], 0);
    assert_eq!(
        shown["states"]["acc_default"]["pending-ben"]["sentAt"],
        Value::Null
    );
}

#[tokio::test]
async fn an_accepted_invitation_is_a_connection() {
    let app = app();
    connect(&app, json!({"accountId": "acc_1", "profileId": "amy"})).await;
    let accepted = control(
        &app,
        Method::POST,
        "/_sim/invitations/accept",
        json!({"accountId": "acc_1", "profileId": "amy"}),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::OK);
    assert_eq!(accepted.body["state"], "accepted");
    instant(&accepted.body["acceptedAt"]);
    let relationship = get(&app, "/relationship/acc_1/amy").await.body;
    assert_eq!(relationship["connected"], true);
    assert_eq!(relationship["invitationSent"], false);
    assert_eq!(relationship["status"], "CONNECTED");
    // Other accounts are not connected to her.
    let other = get(&app, "/relationship/acc_2/amy").await.body;
    assert_eq!(other["connected"], false);

    let refused = withdraw(&app, json!({"accountId": "acc_1", "profileId": "amy"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let again = connect(&app, json!({"accountId": "acc_1", "profileId": "amy"})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["error"], "Already connected to this profile");
    assert_eq!(again.header("x-ratelimit-used"), "1");

    // Only a pending invitation can be accepted; misspelt fields are refused.
    let cases = [
        json!({"accountId": "acc_1", "profileId": "amy"}),
        json!({"accountId": "acc_1", "profileId": "never-asked"}),
        json!({"accountId": "acc_1"}),
        json!({"account": "acc_1", "profileId": "amy"}),
    ];
    for body in cases {
        let refused = control(&app, Method::POST, "/_sim/invitations/accept", body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
    }
    // Another tool's pending invitation can be accepted too.
    let accepted = control(
        &app,
        Method::POST,
        "/_sim/invitations/accept",
        json!({"profileId": "pending-cy"}),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/relationship/pending-cy").await.body["connected"],
        true
    );
}

#[tokio::test]
async fn the_sent_list_pages_the_pending_invitations_newest_first() {
    let app = app();
    configure(&app, json!({"perMinuteLimits": false})).await;
    for n in 0..23 {
        let sent = connect(
            &app,
            json!({"accountId": "acc_1", "profileId": format!("p-{n:02}")}),
        )
        .await;
        assert_eq!(sent.status, StatusCode::OK);
    }
    connect(&app, json!({"accountId": "acc_2", "profileId": "p-00"})).await;
    withdraw(&app, json!({"accountId": "acc_1", "profileId": "p-22"})).await;
    control(
        &app,
        Method::POST,
        "/_sim/invitations/accept",
        json!({"accountId": "acc_1", "profileId": "p-21"}),
    )
    .await;

    let first = get(&app, "/invitations/sent?accountId=acc_1").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["success"], true);
    assert_eq!(first.body["accountId"], "acc_1");
    assert_eq!(
        first.body["paging"],
        json!({"start": 0, "count": 10, "total": 21})
    );
    let page = first.body["invitations"].as_array().unwrap();
    assert_eq!(page.len(), 10);
    let state = &invitations(&app).await["states"]["acc_1"]["p-20"];
    let id = state["invitationId"].as_str().unwrap();
    assert_eq!(
        page[0],
        json!({
            "invitationId": id,
            "invitationUrn": format!("urn:li:fsd_invitation:{id}"),
            "memberUrn": urn_for_slug("p-20"),
            "publicIdentifier": "p-20",
            "sentAt": "just now",
        })
    );
    let slugs = |answer: &Answer| -> Vec<String> {
        answer.body["invitations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["publicIdentifier"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(slugs(&first)[9], "p-11");
    let second = get(&app, "/invitations/sent?accountId=acc_1&startIndex=10").await;
    assert_eq!(second.body["paging"]["start"], 10);
    assert_eq!(slugs(&second)[0], "p-10");
    let last = get(&app, "/invitations/sent?accountId=acc_1&startIndex=20").await;
    assert_eq!(slugs(&last), ["p-00"]);
    let beyond = get(&app, "/invitations/sent?accountId=acc_1&startIndex=30").await;
    assert_eq!(beyond.body["invitations"], json!([]));
    assert_eq!(beyond.body["paging"]["total"], 21);

    let other = get(&app, "/invitations/sent?accountId=acc_2").await;
    assert_eq!(slugs(&other), ["p-00"]);
    let default = get(&app, "/invitations/sent").await;
    assert_eq!(default.body["accountId"], "acc_default");
    assert_eq!(default.body["paging"]["total"], 0);
    let bad = get(&app, "/invitations/sent?accountId=acc_1&startIndex=-1").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.body,
        json!({"error": "startIndex must be a non-negative integer", "success": false})
    );
    let unauthorized = call(&app, Method::GET, "/invitations/sent", None, Value::Null).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);

    let stats = stats(&app).await;
    assert_eq!(
        stats["endpoints"]["sentInvitations"],
        json!({"200": 6, "400": 1, "401": 1})
    );
    assert_eq!(
        stats["accounts"]["acc_1"]["endpoints"]["sentInvitations"]["200"],
        4
    );
}

#[tokio::test]
async fn the_sent_list_is_a_read() {
    let app = app();
    configure(&app, json!({"accountReadsPerMinute": 2})).await;
    assert_eq!(
        get(&app, "/relationship/acc_1/x").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/invitations/sent?accountId=acc_1").await.status,
        StatusCode::OK
    );
    let throttled = get(&app, "/invitations/sent?accountId=acc_1").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key("retry-after"));
    // Writes have their own budget.
    let sent = connect(&app, json!({"accountId": "acc_1", "profileId": "x"})).await;
    assert_eq!(sent.status, StatusCode::OK);
}

#[tokio::test]
async fn withdraw_is_a_write_against_the_per_minute_limit() {
    let app = app();
    configure(&app, json!({"accountWritesPerMinute": 3})).await;
    for slug in ["a", "b"] {
        connect(&app, json!({"accountId": "acc_1", "profileId": slug})).await;
    }
    let ok = withdraw(&app, json!({"accountId": "acc_1", "profileId": "a"})).await;
    assert_eq!(ok.status, StatusCode::OK);
    let throttled = withdraw(&app, json!({"accountId": "acc_1", "profileId": "b"})).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Refused before anything happened: still pending.
    assert_eq!(
        invitations(&app).await["states"]["acc_1"]["b"]["state"],
        "pending"
    );
    let connect_throttled = connect(&app, json!({"accountId": "acc_1", "profileId": "c"})).await;
    assert_eq!(connect_throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let other = withdraw(&app, json!({"accountId": "acc_2", "profileId": "b"})).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(stats(&app).await["rateLimited"]["perMinute"], 2);
}

#[tokio::test]
async fn withdraw_and_the_sent_list_take_injected_faults() {
    let app = app();
    connect(&app, json!({"profileId": "amy"})).await;
    let state = |body: Value| body["states"]["acc_default"]["amy"]["state"].clone();

    configure(&app, json!({"errorRate": 1})).await;
    let failed = withdraw(&app, json!({"profileId": "amy"})).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.body["success"], false);
    assert_eq!(
        get(&app, "/invitations/sent").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(state(invitations(&app).await), "pending");

    configure(
        &app,
        json!({"errorRate": 0, "timeoutRate": 1, "timeoutMs": 20}),
    )
    .await;
    let timed_out = withdraw(&app, json!({"profileId": "amy"})).await;
    assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        get(&app, "/invitations/sent").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(state(invitations(&app).await), "pending");

    // The crash window: withdrawn, answered 500.
    configure(&app, json!({"timeoutRate": 0, "sendThenFailRate": 1})).await;
    let lost = withdraw(&app, json!({"profileId": "amy"})).await;
    assert_eq!(lost.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state(invitations(&app).await), "withdrawn");

    configure(&app, json!({"sendThenFailRate": 0, "latencyMs": 400})).await;
    connect(&app, json!({"profileId": "bo"})).await;
    let pending = tokio::spawn({
        let app = app.clone();
        async move { withdraw(&app, json!({"profileId": "bo"})).await }
    });
    // The withdrawal is recorded before the answer comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while invitations(&app).await["states"]["acc_default"]["bo"]["state"] != "withdrawn" {
        assert!(tokio::time::Instant::now() < deadline, "never withdrawn");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pending.is_finished());
    assert_eq!(pending.await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn a_withdrawn_profile_cannot_be_invited_again_until_the_block_passes() {
    let app = app();
    connect(&app, json!({"profileId": "amy"})).await;
    withdraw(&app, json!({"profileId": "amy"})).await;
    let before = Utc::now();
    let refused = connect(&app, json!({"profileId": "amy"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["success"], false);
    let error = refused.body["error"].as_str().unwrap();
    let until = error
        .strip_prefix("Cannot invite this profile again until ")
        .and_then(|rest| rest.get(..24))
        .unwrap_or_else(|| panic!("{error}"));
    // The default block: 21 days from the withdrawal.
    let until: DateTime<Utc> = until.parse().unwrap();
    assert!(until > before + TimeDelta::days(21) - TimeDelta::seconds(5));
    assert!(until <= Utc::now() + TimeDelta::days(21));
    assert!(error.ends_with("the invitation to this profile was withdrawn"));
    // Refused, so not counted.
    assert_eq!(refused.header("x-ratelimit-used"), "1");
    assert_eq!(invitations(&app).await["accounts"]["acc_default"]["amy"], 1);

    // Once the block is over, a new invitation goes out.
    let first_id = invitations(&app).await["states"]["acc_default"]["amy"]["invitationId"].clone();
    configure(&app, json!({"reinviteBlock": "0s"})).await;
    let again = connect(&app, json!({"profileId": "amy"})).await;
    assert_eq!(again.status, StatusCode::OK);
    let shown = invitations(&app).await["states"]["acc_default"]["amy"].clone();
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["sends"], 2);
    assert_ne!(shown["invitationId"], first_id);
    assert_eq!(shown["withdrawnAt"], Value::Null);
    assert_eq!(
        get(&app, "/relationship/amy").await.body["invitationSent"],
        true
    );
    assert_eq!(again.header("x-ratelimit-used"), "2");
}

#[tokio::test]
async fn with_probability_one_every_new_invitation_is_accepted_after_the_delay() {
    let app = app();
    configure(&app, json!({"acceptProbability": 1, "acceptDelay": "1s"})).await;
    connect(&app, json!({"profileId": "amy"})).await;
    let shown = invitations(&app).await["states"]["acc_default"]["amy"].clone();
    assert_eq!(shown["state"], "pending");
    assert_eq!(
        instant(&shown["acceptsAt"]) - instant(&shown["sentAt"]),
        TimeDelta::seconds(1)
    );
    assert_eq!(
        get(&app, "/relationship/amy").await.body["invitationSent"],
        true
    );
    // No timer: the next read after the delay finds her connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let relationship = get(&app, "/relationship/amy").await.body;
        if relationship["connected"] == true {
            assert_eq!(relationship["invitationSent"], false);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = invitations(&app).await["states"]["acc_default"]["amy"].clone();
    assert_eq!(shown["state"], "accepted");
    assert_eq!(
        instant(&shown["acceptedAt"]) - instant(&shown["sentAt"]),
        TimeDelta::seconds(1)
    );
    assert_eq!(shown["acceptsAt"], Value::Null);
    assert_eq!(
        get(&app, "/invitations/sent").await.body["paging"]["total"],
        0
    );
}

#[tokio::test]
async fn with_probability_zero_no_invitation_is_accepted() {
    let app = app();
    configure(&app, json!({"accept_probability": 0, "accept_delay": "0s"})).await;
    connect(&app, json!({"profileId": "amy"})).await;
    let shown = invitations(&app).await["states"]["acc_default"]["amy"].clone();
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["acceptsAt"], Value::Null);
    let relationship = get(&app, "/relationship/amy").await.body;
    assert_eq!(relationship["connected"], false);
    assert_eq!(relationship["invitationSent"], true);
    // And with probability one and no delay, at once.
    configure(&app, json!({"acceptProbability": 1})).await;
    connect(&app, json!({"profileId": "bo"})).await;
    assert_eq!(get(&app, "/relationship/bo").await.body["connected"], true);
    assert_eq!(
        get(&app, "/relationship/amy").await.body["connected"],
        false
    );
}

#[tokio::test]
async fn acceptance_settings_are_checked() {
    let app = app();
    for body in [
        json!({"acceptProbability": 1.5}),
        json!({"acceptDelay": "soon"}),
        json!({"reinviteBlock": 5}),
    ] {
        let refused = control(&app, Method::PUT, "/_sim/config", body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let changed = control(
        &app,
        Method::PUT,
        "/_sim/config",
        json!({"reinvite_block": "3s", "acceptDelay": "2m"}),
    )
    .await;
    assert_eq!(changed.body["reinviteBlock"], "3s");
    assert_eq!(changed.body["acceptDelay"], "2m");
    // Durations past the calendar's end neither panic nor ever come.
    configure(
        &app,
        json!({"reinviteBlock": "500000000years", "acceptProbability": 1, "acceptDelay": "500000000years"}),
    )
    .await;
    connect(&app, json!({"profileId": "amy"})).await;
    let shown = invitations(&app).await["states"]["acc_default"]["amy"].clone();
    assert_eq!(shown["state"], "pending");
    withdraw(&app, json!({"profileId": "amy"})).await;
    let refused = connect(&app, json!({"profileId": "amy"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}
