//! The control API under `/_sim/`: no auth, JSON in and out, for tests to arrange and inspect.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::Sim;
use super::invitations::Shown;
use super::state::{Account, Config, State, error_body, iso};

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/accounts/{account_id}", get(get_account).put(put_account))
        .route("/config", get(get_config).put(put_config))
        .route("/invitations", get(invitations))
        .route("/invitations/accept", post(accept))
        .route("/stats", get(stats))
        .route("/reset", post(reset))
}

/// A control request the sim cannot apply; answered 400 with the reason.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(error_body(self.0))).into_response()
    }
}

/// Unknown fields are refused so a misspelt setting fails the test instead of being ignored.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| BadRequest(format!("Invalid body: {e}")))
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn assign<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

fn seconds(field: &str, value: u64, min: u64) -> Result<TimeDelta, BadRequest> {
    i64::try_from(value)
        .ok()
        .filter(|_| value >= min)
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(|| BadRequest(format!("{field} must be between {min} and 10^15")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountPatch {
    limit: Option<u32>,
    used: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    hold_until: Option<Option<DateTime<Utc>>>,
    hold_seconds: Option<u64>,
    weekly_reset: Option<DateTime<Utc>>,
    week_seconds: Option<u64>,
    status: Option<String>,
    enabled: Option<bool>,
    first_name: Option<String>,
    last_name: Option<String>,
}

fn account_json(id: &str, account: &Account, now: DateTime<Utc>) -> Value {
    let q = &account.quota;
    let limit_reached = q.used >= q.limit || q.hold_active(now).is_some();
    json!({
        "accountId": id,
        "limit": q.limit,
        "used": q.used,
        "remaining": q.limit.saturating_sub(q.used),
        "limitReached": limit_reached,
        "limitReachedAt": q.limit_reached_at.filter(|_| limit_reached).map(iso),
        "holdUntil": q.hold_active(now).map(iso),
        "holdSeconds": q.hold.num_seconds(),
        "weeklyReset": iso(q.next_reset),
        "weekSeconds": q.week.num_seconds(),
        "status": account.status,
        "enabled": account.enabled,
        "firstName": account.first_name,
        "lastName": account.last_name,
    })
}

async fn get_account(Extract(sim): Extract<Sim>, Path(account_id): Path<String>) -> Response {
    let now = Utc::now();
    let mut state = sim.lock();
    let account = state.account(&account_id, now);
    Json(account_json(&account_id, account, now)).into_response()
}

async fn put_account(
    Extract(sim): Extract<Sim>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let patch: AccountPatch = parse(&body)?;
    let week = patch
        .week_seconds
        .map(|s| seconds("weekSeconds", s, 1))
        .transpose()?;
    let hold = patch
        .hold_seconds
        .map(|s| seconds("holdSeconds", s, 0))
        .transpose()?;
    let now = Utc::now();
    let mut state = sim.lock();
    let account = state.account(&account_id, now);
    let q = &mut account.quota;
    if let Some(week) = week {
        q.week = week;
        // A new window length alone starts a window of that length now.
        if patch.weekly_reset.is_none() {
            q.next_reset = now + week;
        }
    }
    assign(&mut q.next_reset, patch.weekly_reset);
    assign(&mut q.hold, hold);
    assign(&mut q.hold_until, patch.hold_until);
    assign(&mut q.limit, patch.limit);
    assign(&mut q.used, patch.used);
    // Usage set from outside (other tools) reaches the limit like our own sends do.
    q.limit_reached_at = if q.used >= q.limit {
        q.limit_reached_at.or(Some(now))
    } else {
        None
    };
    assign(&mut account.status, patch.status);
    assign(&mut account.enabled, patch.enabled);
    assign(&mut account.first_name, patch.first_name.map(Some));
    assign(&mut account.last_name, patch.last_name.map(Some));
    Ok(Json(account_json(&account_id, account, now)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigPatch {
    api_keys: Option<Vec<String>>,
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    timeout_rate: Option<f64>,
    timeout_ms: Option<u64>,
    send_then_fail_rate: Option<f64>,
    per_minute_limits: Option<bool>,
    key_per_minute: Option<u32>,
    account_writes_per_minute: Option<u32>,
    account_reads_per_minute: Option<u32>,
    account_endpoints_per_minute: Option<u32>,
    // Also accepted in snake case, the spelling issue 13 uses.
    #[serde(default, alias = "reinvite_block", with = "humantime_serde")]
    reinvite_block: Option<Duration>,
    #[serde(alias = "accept_probability")]
    accept_probability: Option<f64>,
    #[serde(default, alias = "accept_delay", with = "humantime_serde")]
    accept_delay: Option<Duration>,
}

async fn get_config(Extract(sim): Extract<Sim>) -> Response {
    Json(sim.lock().config.clone()).into_response()
}

async fn put_config(Extract(sim): Extract<Sim>, body: Bytes) -> Result<Json<Config>, BadRequest> {
    let patch: ConfigPatch = parse(&body)?;
    let rates = [
        ("errorRate", patch.error_rate),
        ("timeoutRate", patch.timeout_rate),
        ("sendThenFailRate", patch.send_then_fail_rate),
        ("acceptProbability", patch.accept_probability),
    ];
    for (name, rate) in rates {
        if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(BadRequest(format!("{name} must be between 0 and 1")));
        }
    }
    let mut state = sim.lock();
    let c = &mut state.config;
    assign(&mut c.api_keys, patch.api_keys);
    assign(&mut c.latency_ms, patch.latency_ms);
    assign(&mut c.error_rate, patch.error_rate);
    assign(&mut c.timeout_rate, patch.timeout_rate);
    assign(&mut c.timeout_ms, patch.timeout_ms);
    assign(&mut c.send_then_fail_rate, patch.send_then_fail_rate);
    assign(&mut c.per_minute_limits, patch.per_minute_limits);
    assign(&mut c.key_per_minute, patch.key_per_minute);
    assign(
        &mut c.account_writes_per_minute,
        patch.account_writes_per_minute,
    );
    assign(
        &mut c.account_reads_per_minute,
        patch.account_reads_per_minute,
    );
    assign(
        &mut c.account_endpoints_per_minute,
        patch.account_endpoints_per_minute,
    );
    assign(&mut c.reinvite_block, patch.reinvite_block);
    assign(&mut c.accept_probability, patch.accept_probability);
    assign(&mut c.accept_delay, patch.accept_delay);
    Ok(Json(c.clone()))
}

/// Sends per account and profile (`accounts`, a count above 1 is a duplicate) and each
/// invitation's state and times (`states`, the same keys).
async fn invitations(Extract(sim): Extract<Sim>) -> Response {
    let now = Utc::now();
    let state = sim.lock();
    let book = &state.invitations.accounts;
    let total: u64 = book
        .values()
        .flat_map(BTreeMap::values)
        .map(|i| u64::from(i.sends))
        .sum();
    let mut counts: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
    let mut states: BTreeMap<&str, BTreeMap<&str, Shown>> = BTreeMap::new();
    for (account, profiles) in book {
        for (key, invitation) in profiles {
            counts
                .entry(account)
                .or_default()
                .insert(key, invitation.sends);
            states
                .entry(account)
                .or_default()
                .insert(key, Shown::new(invitation, now));
        }
    }
    Json(json!({ "total": total, "accounts": counts, "states": states })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AcceptRequest {
    account_id: Option<String>,
    profile_id: Option<String>,
    profile_urn: Option<String>,
}

/// The person accepts the account's pending invitation now.
async fn accept(Extract(sim): Extract<Sim>, body: Bytes) -> Result<Json<Shown>, BadRequest> {
    let request: AcceptRequest = parse(&body)?;
    let reference = request
        .profile_urn
        .or(request.profile_id)
        .ok_or_else(|| BadRequest("profileId or profileUrn is required".to_owned()))?;
    let now = Utc::now();
    let mut state = sim.lock();
    let account_id = request
        .account_id
        .unwrap_or_else(|| state.default_account());
    let profile = state.directory.resolve(&reference);
    let invitation = state
        .invitations
        .accept(&account_id, &profile, now)
        .map_err(|_| {
            BadRequest(format!(
                "No pending invitation from {account_id} to {reference}"
            ))
        })?;
    Ok(Json(Shown::new(invitation, now)))
}

async fn stats(Extract(sim): Extract<Sim>) -> Response {
    Json(json!(sim.lock().stats)).into_response()
}

async fn reset(Extract(sim): Extract<Sim>) -> Response {
    let mut state = sim.lock();
    let options = state.options.clone();
    *state = State::new(options);
    Json(json!({ "success": true })).into_response()
}
