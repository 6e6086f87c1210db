//! A ConnectSafely API simulator (`leadlink sim`), faithful to `reference/` where the worker
//! depends on it, with a control API under `/_sim/` for tests. `docs/simulator.md` is the
//! user's guide; this is the summary.
//!
//! API (Bearer key required; base URL `http://host:port`, no `/linkedin` prefix):
//! - `POST /connect`: `accountId?` (default `acc_default`), `profileId` or `profileUrn`,
//!   `customMessage?` (at most 300 characters). Checked in this order: 401 `{"error":
//!   "Unauthorized"}`; per-minute 429 with `Retry-After`; injected faults (500, or 504 after
//!   `timeoutMs`); 400 `Either profileId or profileUrn must be provided`; 400 message too
//!   long; weekly-limit 429 with `holdUntil` and `weeklyReset`; 404 `LinkedIn profile not
//!   found: <id>`; 400 `Already connected to this profile` (also once this account's
//!   invitation is accepted); 400 `Cannot invite this profile again until …` within
//!   `reinviteBlock` of a withdrawal; 200 `{success, message, profileUrn}`. Every answer
//!   carries the account's `X-RateLimit-*` headers.
//! - `POST /invitations/withdraw` (a write) and `GET /invitations/sent?accountId=&startIndex=`
//!   (a read, pages of 10): see `invitation_routes.rs`; the lifecycle is `invitations.rs`.
//! - `GET /relationship/{profileId}`, `GET /relationship/{accountId}/{profileId}`,
//!   `GET /account/{accountId}/quota`, `GET /account/status?accountId=`, `GET /accounts`.
//!
//! Profiles are chosen by slug prefix (see [`profiles`]): `unknown-`/`notfound-` do not exist,
//! `connected-` are connected, `pending-` have a pending invitation from another tool (a
//! `/connect` to them still sends and counts, as a duplicate would); anything else exists.
//!
//! Invitations are accepted through `POST /_sim/invitations/accept`, or by the acceptance model
//! (`acceptProbability`, `acceptDelay`), evaluated against the clock when read: no timers.
//!
//! The weekly quota is the pure model in [`quota`]. With `latencyMs` set, `/connect` records
//! its effect first and then waits before answering, so a client that gives up during the wait
//! leaves an invitation it never saw confirmed: the crash window the worker must survive.

pub mod limits;
pub mod profiles;
pub mod quota;

mod control;
mod invitation_routes;
mod invitations;
mod routes;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use state::State;

/// How a simulator starts; `POST /_sim/reset` returns to exactly this.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Bearer keys the API accepts.
    pub api_keys: Vec<String>,
    /// The account used when a request names none.
    pub default_account_id: String,
    /// Weekly connection-request limit of every new account.
    pub default_limit: u32,
    /// How long an account is held after exceeding its limit.
    pub hold: Duration,
    /// Whether the vendor's per-minute API limits apply.
    pub per_minute_limits: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            api_keys: vec!["sim-api-key".to_owned()],
            default_account_id: "acc_default".to_owned(),
            default_limit: 90,
            hold: Duration::from_secs(24 * 60 * 60),
            per_minute_limits: true,
        }
    }
}

/// A simulator instance; clones share the same state.
#[derive(Clone)]
pub struct Sim {
    state: Arc<Mutex<State>>,
}

impl Sim {
    pub fn new(options: SimOptions) -> Self {
        Sim {
            state: Arc::new(Mutex::new(State::new(options))),
        }
    }

    /// Never held across an `.await`.
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one handler must not take the whole simulator down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The simulator's HTTP API and control API.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/connect", post(routes::connect))
        .route("/relationship/{profile_id}", get(routes::relationship))
        .route(
            "/relationship/{account_id}/{profile_id}",
            get(routes::account_relationship),
        )
        .route("/account/status", get(routes::account_status))
        .route("/account/{account_id}/quota", get(routes::quota))
        .route("/accounts", get(routes::accounts))
        .route("/invitations/withdraw", post(invitation_routes::withdraw))
        .route("/invitations/sent", get(invitation_routes::sent))
        .nest("/_sim", control::router())
        .fallback(routes::not_found)
        .with_state(sim)
}

/// Serves a fresh simulator on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, options: SimOptions) -> std::io::Result<()> {
    axum::serve(listener, router(Sim::new(options))).await
}
