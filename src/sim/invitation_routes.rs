//! The simulated calls after the invitation: withdrawing one and listing the pending ones.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Sim;
use super::invitations::{Invitation, relative};
use super::limits::Bucket;
use super::profiles::Standing;
use super::routes::{failed_after_effect, injected_fault, non_empty};
use super::state::{Endpoint, Reply, State};

/// Invitations per page of `GET /invitations/sent`.
pub const PAGE_SIZE: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WithdrawRequest {
    account_id: Option<String>,
    profile_id: Option<String>,
    profile_urn: Option<String>,
}

/// Answers after `delay`, as `/connect` does: the effect is already recorded.
async fn answer_after(reply: Reply, delay: Duration) -> Response {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    reply.into_response()
}

pub async fn withdraw(Extract(sim): Extract<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let now = Utc::now();
    let (reply, delay) = {
        let mut state = sim.lock();
        let request = serde_json::from_slice::<WithdrawRequest>(&body);
        let account_id = request
            .as_ref()
            .ok()
            .and_then(|r| non_empty(r.account_id.as_deref()))
            .map_or_else(|| state.default_account(), str::to_owned);
        let latency = Duration::from_millis(state.config.latency_ms);
        let (reply, delay) = match state.gate(
            &headers,
            Some(Bucket::AccountWrites(account_id.clone())),
            now,
        ) {
            Err(reply) => (reply, latency),
            Ok(()) => injected_fault(&state.config).unwrap_or_else(|| {
                let reply = match request {
                    Ok(request) => withdrawal(&mut state, &request, &account_id, now),
                    Err(e) => Reply::error(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid request body: {e}"),
                    ),
                };
                (reply, latency)
            }),
        };
        state
            .stats
            .record(Endpoint::Withdraw, Some(&account_id), &reply);
        (reply, delay)
    };
    answer_after(reply, delay).await
}

/// The withdrawal past the gate and the injected faults.
fn withdrawal(
    state: &mut State,
    request: &WithdrawRequest,
    account_id: &str,
    now: DateTime<Utc>,
) -> Reply {
    let Some(reference) = non_empty(request.profile_urn.as_deref())
        .or_else(|| non_empty(request.profile_id.as_deref()))
    else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "Either profileId or profileUrn must be provided",
        );
    };
    let profile = state.directory.resolve(reference);
    if profile.standing == Standing::NotFound {
        return Reply::error(
            StatusCode::NOT_FOUND,
            format!("LinkedIn profile not found: {reference}"),
        );
    }
    // The week's request is not given back: the quota is not touched.
    let Ok(invitation) = state.invitations.withdraw(account_id, &profile, now) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            format!("No pending invitation to {reference} found"),
        );
    };
    let body = json!({
        "success": true,
        "message": "Invitation withdrawn successfully",
        "invitationId": invitation.id.to_string(),
        "profileUrn": profile.urn,
    });
    failed_after_effect(&state.config).unwrap_or_else(|| Reply::new(StatusCode::OK, body))
}

#[derive(Debug, Deserialize)]
pub struct SentQuery {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<String>,
}

pub async fn sent(
    Extract(sim): Extract<Sim>,
    headers: HeaderMap,
    Query(query): Query<SentQuery>,
) -> Response {
    let now = Utc::now();
    let (reply, delay) = {
        let mut state = sim.lock();
        let account_id = non_empty(query.account_id.as_deref())
            .map_or_else(|| state.default_account(), str::to_owned);
        let latency = Duration::from_millis(state.config.latency_ms);
        let (reply, delay) = match state.gate(
            &headers,
            Some(Bucket::AccountReads(account_id.clone())),
            now,
        ) {
            Err(reply) => (reply, latency),
            Ok(()) => injected_fault(&state.config).unwrap_or_else(|| {
                let reply = sent_page(&state, &account_id, query.start_index.as_deref(), now);
                (reply, latency)
            }),
        };
        state
            .stats
            .record(Endpoint::SentInvitations, Some(&account_id), &reply);
        (reply, delay)
    };
    answer_after(reply, delay).await
}

fn sent_page(
    state: &State,
    account_id: &str,
    start_index: Option<&str>,
    now: DateTime<Utc>,
) -> Reply {
    let Ok(start) = non_empty(start_index).map_or(Ok(0), str::parse::<usize>) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "startIndex must be a non-negative integer",
        );
    };
    let pending = state.invitations.pending_sent(account_id, now);
    let page: Vec<Value> = pending
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|&(sent_at, invitation)| listed(invitation, sent_at, now))
        .collect();
    Reply::new(
        StatusCode::OK,
        json!({
            "success": true,
            "accountId": account_id,
            "invitations": page,
            "paging": {"start": start, "count": PAGE_SIZE, "total": pending.len()},
        }),
    )
}

fn listed(invitation: &Invitation, sent_at: DateTime<Utc>, now: DateTime<Utc>) -> Value {
    json!({
        "invitationId": invitation.id.to_string(),
        "invitationUrn": format!("urn:li:fsd_invitation:{}", invitation.id),
        "memberUrn": invitation.member_urn,
        "publicIdentifier": invitation.public_identifier,
        "sentAt": relative(sent_at, now),
    })
}
