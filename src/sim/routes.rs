//! The simulated ConnectSafely API.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use super::Sim;
use super::invitations::Phase;
use super::limits::Bucket;
use super::profiles::{Profile, Standing};
use super::quota::{Rejection, Usage};
use super::state::{Config, Endpoint, Limited, Reply, State, error_body, iso};

const MAX_MESSAGE_CHARS: usize = 300;
/// The text of the 400 for a profile that is already a connection; clients match on
/// "already connected".
const ALREADY_CONNECTED: &str = "Already connected to this profile";
/// The start of the 400 for a re-invite LinkedIn refuses after a withdrawal.
const REINVITE_BLOCKED: &str = "Cannot invite this profile again";

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectRequest {
    account_id: Option<String>,
    profile_id: Option<String>,
    profile_urn: Option<String>,
    custom_message: Option<String>,
}

/// Rolls a die for an injected fault; `rate` 0 never fires and 1 always does.
pub(super) fn chance(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

/// An injected fault that answers instead of the call, doing nothing: 500 after the usual
/// latency, or 504 after `timeoutMs`.
pub(super) fn injected_fault(config: &Config) -> Option<(Reply, Duration)> {
    if chance(config.error_rate) {
        return Some((
            Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
            Duration::from_millis(config.latency_ms),
        ));
    }
    chance(config.timeout_rate).then(|| {
        (
            Reply::error(StatusCode::GATEWAY_TIMEOUT, "Gateway timeout"),
            Duration::from_millis(config.timeout_ms),
        )
    })
}

/// The 500 that replaces a write's answer after its effect, when the dice say so.
pub(super) fn failed_after_effect(config: &Config) -> Option<Reply> {
    chance(config.send_then_fail_rate)
        .then(|| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"))
}

pub(super) fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

pub async fn connect(Extract(sim): Extract<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let now = Utc::now();
    let (reply, usage, delay) = {
        let mut state = sim.lock();
        let request = serde_json::from_slice::<ConnectRequest>(&body);
        let account_id = request
            .as_ref()
            .ok()
            .and_then(|r| non_empty(r.account_id.as_deref()))
            .map_or_else(|| state.default_account(), str::to_owned);
        let (reply, delay) = decide_connect(&mut state, &headers, request, &account_id, now);
        state
            .stats
            .record(Endpoint::Connect, Some(&account_id), &reply);
        let usage = state.account(&account_id, now).quota.usage(now);
        (reply, usage, delay)
    };
    // The effect is already recorded: a client that gives up now never learns of it.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = reply.into_response();
    rate_limit_headers(response.headers_mut(), &usage);
    response
}

fn rate_limit_headers(headers: &mut HeaderMap, usage: &Usage) {
    let pairs = [
        ("x-ratelimit-action", "CONNECT".to_owned()),
        ("x-ratelimit-limit", usage.limit.to_string()),
        ("x-ratelimit-used", usage.used.to_string()),
        ("x-ratelimit-remaining", usage.remaining.to_string()),
        ("x-ratelimit-reset", iso(usage.reset_at)),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// The answer to a `/connect` and how long to wait before giving it.
fn decide_connect(
    state: &mut State,
    headers: &HeaderMap,
    request: serde_json::Result<ConnectRequest>,
    account_id: &str,
    now: DateTime<Utc>,
) -> (Reply, Duration) {
    let latency = Duration::from_millis(state.config.latency_ms);
    if let Err(reply) = state.gate(
        headers,
        Some(Bucket::AccountWrites(account_id.to_owned())),
        now,
    ) {
        return (reply, latency);
    }
    if let Some(fault) = injected_fault(&state.config) {
        return fault;
    }
    let reply = match request {
        Ok(request) => send(state, request, account_id, now),
        Err(e) => Reply::error(
            StatusCode::BAD_REQUEST,
            format!("Invalid request body: {e}"),
        ),
    };
    (reply, latency)
}

/// `/connect` past the gate and the injected faults: validation, quota, profile, send.
fn send(state: &mut State, request: ConnectRequest, account_id: &str, now: DateTime<Utc>) -> Reply {
    // The URN is the vendor's preferred reference when both are given.
    let Some(reference) = non_empty(request.profile_urn.as_deref())
        .or_else(|| non_empty(request.profile_id.as_deref()))
        .map(str::to_owned)
    else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "Either profileId or profileUrn must be provided",
        );
    };
    if request
        .custom_message
        .as_deref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_CHARS)
    {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            format!("customMessage must be at most {MAX_MESSAGE_CHARS} characters"),
        );
    }
    let profile = state.directory.resolve(&reference);
    let refusal = match profile.standing {
        Standing::NotFound => Some(Reply::error(
            StatusCode::NOT_FOUND,
            format!("LinkedIn profile not found: {reference}"),
        )),
        Standing::Connected => Some(Reply::error(StatusCode::BAD_REQUEST, ALREADY_CONNECTED)),
        Standing::PendingElsewhere | Standing::Open => {
            invitation_refusal(state, account_id, &profile, now)
        }
    };
    let quota = &mut state.account(account_id, now).quota;
    // The weekly gate comes before the profile: during a hold every connect is refused.
    let gate = match refusal {
        Some(_) => quota.admit(now),
        None => quota.connect(now).map(drop),
    };
    if let Err(rejection) = gate {
        return hold_reply(rejection, quota.hold);
    }
    if let Some(refusal) = refusal {
        return refusal;
    }
    let accepts_after = chance(state.config.accept_probability)
        .then(|| TimeDelta::from_std(state.config.accept_delay).unwrap_or(TimeDelta::MAX));
    state
        .invitations
        .send(account_id, &profile, accepts_after, now);
    if let Some(failed) = failed_after_effect(&state.config) {
        return failed;
    }
    Reply::new(
        StatusCode::OK,
        json!({
            "success": true,
            "message": "Connection request sent successfully",
            "profileUrn": profile.urn,
        }),
    )
}

/// The 400 for a profile whose invitation from this account rules out another: accepted (now
/// a connection), or withdrawn too recently for LinkedIn to allow a new one.
fn invitation_refusal(
    state: &State,
    account_id: &str,
    profile: &Profile,
    now: DateTime<Utc>,
) -> Option<Reply> {
    let invitation = state.invitations.get(account_id, &profile.key)?;
    if let Phase::Accepted(_) = invitation.phase(now) {
        return Some(Reply::error(StatusCode::BAD_REQUEST, ALREADY_CONNECTED));
    }
    let block = TimeDelta::from_std(state.config.reinvite_block).unwrap_or(TimeDelta::MAX);
    let until = invitation.reinvite_blocked_until(block, now)?;
    Some(Reply::error(
        StatusCode::BAD_REQUEST,
        format!(
            "{REINVITE_BLOCKED} until {}: the invitation to this profile was withdrawn",
            iso(until)
        ),
    ))
}

fn hold_reply(rejection: Rejection, hold: chrono::TimeDelta) -> Reply {
    let error = match rejection {
        Rejection::LimitExceeded { used, limit, .. } => format!(
            "Connection request limit exceeded: {used}/{limit} used. New connection requests \
             blocked for {}. Other activities (messaging, following, etc.) are not affected.",
            describe(hold)
        ),
        Rejection::OnHold { hold_until, .. } => format!(
            "Connection requests are on hold until {}. Other activities (messaging, following, \
             etc.) are not affected.",
            iso(hold_until)
        ),
    };
    Reply {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: json!({
            "error": error,
            "success": false,
            "holdUntil": iso(rejection.hold_until()),
            "weeklyReset": iso(rejection.weekly_reset()),
        }),
        retry_after: None,
        limited: Some(Limited::Hold),
    }
}

/// "24 hours" for the default hold, seconds for the short ones tests use.
fn describe(hold: chrono::TimeDelta) -> String {
    let seconds = hold.num_seconds();
    if seconds % 3600 == 0 {
        format!("{} hours", seconds / 3600)
    } else {
        format!("{seconds} seconds")
    }
}

pub async fn relationship(
    Extract(sim): Extract<Sim>,
    headers: HeaderMap,
    Path(profile_id): Path<String>,
) -> Response {
    let mut state = sim.lock();
    let account_id = state.default_account();
    relationship_reply(&mut state, &headers, &account_id, &profile_id).into_response()
}

pub async fn account_relationship(
    Extract(sim): Extract<Sim>,
    headers: HeaderMap,
    Path((account_id, profile_id)): Path<(String, String)>,
) -> Response {
    let mut state = sim.lock();
    relationship_reply(&mut state, &headers, &account_id, &profile_id).into_response()
}

fn relationship_reply(
    state: &mut State,
    headers: &HeaderMap,
    account_id: &str,
    profile_id: &str,
) -> Reply {
    let reply = relationship_answer(state, headers, account_id, profile_id, Utc::now())
        .unwrap_or_else(|reply| reply);
    state
        .stats
        .record(Endpoint::Relationship, Some(account_id), &reply);
    reply
}

fn relationship_answer(
    state: &mut State,
    headers: &HeaderMap,
    account_id: &str,
    profile_id: &str,
    now: DateTime<Utc>,
) -> Result<Reply, Reply> {
    state.gate(
        headers,
        Some(Bucket::AccountReads(account_id.to_owned())),
        now,
    )?;
    let profile = state.directory.resolve(profile_id);
    if profile.standing == Standing::NotFound {
        return Err(Reply::error(
            StatusCode::NOT_FOUND,
            format!("LinkedIn profile not found: {profile_id}"),
        ));
    }
    let phase = state.invitations.phase(account_id, &profile, now);
    let connected =
        profile.standing == Standing::Connected || matches!(phase, Some(Phase::Accepted(_)));
    let invitation_sent = !connected && phase == Some(Phase::Pending);
    let status = if connected {
        "CONNECTED"
    } else if invitation_sent {
        "INVITATION_SENT"
    } else {
        "NOT_CONNECTED"
    };
    Ok(Reply::new(
        StatusCode::OK,
        json!({
            "success": true,
            "accountId": account_id,
            "profileUrn": profile.urn,
            "connected": connected,
            "invitationSent": invitation_sent,
            "invitationReceived": false,
            "status": status,
        }),
    ))
}

pub async fn quota(
    Extract(sim): Extract<Sim>,
    headers: HeaderMap,
    Path(account_id): Path<String>,
) -> Response {
    let now = Utc::now();
    let mut state = sim.lock();
    let reply = state
        .gate(
            &headers,
            Some(Bucket::AccountEndpoints(account_id.clone())),
            now,
        )
        .map(|()| {
            let quota = &mut state.account(&account_id, now).quota;
            let usage = quota.usage(now);
            let limit_reached = quota.limit_reached(now);
            Reply::new(
                StatusCode::OK,
                json!({
                    "success": true,
                    "accountId": account_id,
                    "quotas": [{
                        "feature": "CONNECT",
                        "window": "weekly",
                        "used": usage.used,
                        "limit": usage.limit,
                        "linkedinLimit": usage.limit.saturating_add(10),
                        "remaining": usage.remaining,
                        "limitReached": limit_reached,
                        "limitReachedAt": quota.limit_reached_at.filter(|_| limit_reached).map(iso),
                        "resetAt": iso(usage.reset_at),
                        "holdUntil": quota.hold_active(now).map(iso),
                    }],
                }),
            )
        })
        .unwrap_or_else(|reply| reply);
    state
        .stats
        .record(Endpoint::Quota, Some(&account_id), &reply);
    reply.into_response()
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
}

pub async fn account_status(
    Extract(sim): Extract<Sim>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
) -> Response {
    let now = Utc::now();
    let mut state = sim.lock();
    let account_id = non_empty(query.account_id.as_deref())
        .map_or_else(|| state.default_account(), str::to_owned);
    let reply = state
        .gate(
            &headers,
            Some(Bucket::AccountEndpoints(account_id.clone())),
            now,
        )
        .map(|()| {
            let account = state.account(&account_id, now);
            Reply::new(
                StatusCode::OK,
                json!({
                    "success": true,
                    "accountId": account_id,
                    "status": account.status,
                    "enabled": account.enabled,
                    // An account in ERROR has lost its LinkedIn session.
                    "hasTokens": account.status != "ERROR",
                    "plan": "SIMULATOR",
                }),
            )
        })
        .unwrap_or_else(|reply| reply);
    state
        .stats
        .record(Endpoint::AccountStatus, Some(&account_id), &reply);
    reply.into_response()
}

pub async fn accounts(Extract(sim): Extract<Sim>, headers: HeaderMap) -> Response {
    let mut state = sim.lock();
    let reply = state
        .gate(&headers, None, Utc::now())
        .map(|()| {
            let accounts: Vec<_> = state
                .accounts
                .iter()
                .map(|(id, account)| {
                    json!({
                        "id": id,
                        "firstName": account.first_name,
                        "lastName": account.last_name,
                        "status": account.status,
                        "enabled": account.enabled,
                    })
                })
                .collect();
            Reply::new(
                StatusCode::OK,
                json!({ "success": true, "accounts": accounts }),
            )
        })
        .unwrap_or_else(|reply| reply);
    state.stats.record(Endpoint::Accounts, None, &reply);
    reply.into_response()
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(error_body("Not found"))).into_response()
}
