//! The status page (`/status`): server-rendered HTML for operators, behind the admin token.
//! No script; the one stylesheet ships in the binary, so it works without internet access.
//! Every view reads through the store traits, and every action is a CSRF-checked POST that
//! calls the same store operation as the CLI and redirects back with a flash message.

mod accounts;
mod actions;
mod jobs;
mod layout;
mod login;
mod session;

use crate::account::policy::AccountsConfig;
use crate::queue::Queue;
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use std::sync::Arc;

/// What the status page needs: the admin token it signs sessions with, the accounts' rules
/// (time zones, reserves), and the store and queue the actions use.
pub struct StatusState<Q: Queue, S: Store> {
    pub admin_token: Option<Secret>,
    pub accounts: AccountsConfig,
    pub store: S,
    pub queue: Q,
}

impl<Q: Queue, S: Store> StatusState<Q, S> {
    /// The admin token; without one the page is disabled, as the admin API is.
    fn token(&self) -> Result<&Secret, StatusError> {
        self.admin_token.as_ref().ok_or(StatusError::Disabled)
    }
}

/// Every way a status request can fail, mapped once to an HTML answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the status page is disabled: set server.admin_token")]
    Disabled,
    /// No valid session: the browser is sent to the sign-in form.
    #[error("sign in first")]
    SignedOut,
    #[error("the form's CSRF token is missing or wrong: reload the page and try again")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the job store is unavailable; try again shortly")]
    Unavailable,
}

impl From<StoreError> for StatusError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => StatusError::NotFound(format!("{what} not found")),
            other => {
                tracing::error!(error = %other, "status page: store unavailable");
                StatusError::Unavailable
            }
        }
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let status = match &self {
            StatusError::SignedOut => return Redirect::to(login::PATH).into_response(),
            StatusError::Disabled | StatusError::Csrf => StatusCode::FORBIDDEN,
            StatusError::NotFound(_) => StatusCode::NOT_FOUND,
            StatusError::BadRequest(_) => StatusCode::BAD_REQUEST,
            StatusError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = self.to_string();
        layout::Page::new("Status", layout::message(&message))
            .status(status)
            .into_response()
    }
}

/// The status page's routes, to merge into the HTTP router (`T` is that router's state).
pub fn router<Q: Queue, S: Store, T>(state: StatusState<Q, S>) -> Router<T>
where
    T: Clone + Send + Sync + 'static,
{
    let state = Arc::new(state);
    Router::new()
        .route("/status", get(accounts::page::<Q, S>))
        .route(layout::CSS_PATH, get(stylesheet))
        .route(
            login::PATH,
            get(login::form::<Q, S>).post(login::sign_in::<Q, S>),
        )
        .route("/status/logout", post(login::sign_out::<Q, S>))
        .route("/status/jobs", get(jobs::list::<Q, S>))
        .route("/status/jobs/{id}", get(jobs::page::<Q, S>))
        .route("/status/jobs/{id}/retry", post(actions::retry_job::<Q, S>))
        .route(
            "/status/jobs/{id}/cancel",
            post(actions::cancel_job::<Q, S>),
        )
        .route(
            "/status/writebacks/{id}/retry",
            post(actions::retry_writeback::<Q, S>),
        )
        // Unknown paths under /status pass the same gate: 403 while disabled, else 404.
        .route("/status/{*rest}", any(unknown_page))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_enabled::<Q, S>,
        ))
        .layer(axum::middleware::map_response(protect))
        .with_state(state)
}

/// Disabled means every /status path answers 403, before any form or path is read.
async fn require_enabled<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    request: Request,
    next: Next,
) -> Response {
    match state.token() {
        Ok(_) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn unknown_page() -> StatusError {
    StatusError::NotFound("no such status page".into())
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        layout::CSS,
    )
        .into_response()
}

/// Pages about jobs and tokens are not cached, framed or given scripts: the policy allows
/// the page's own stylesheet and forms only, so even markup that slipped through escaping
/// could not run.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
