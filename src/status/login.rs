//! Signing in with the admin token and out again, and the extractor that lets only a valid
//! session through to the pages.

use super::layout::{self, Flash, LastFlash, Page};
use super::session::{self, Session};
use super::{StatusError, StatusState};
use crate::queue::Queue;
use crate::signature::constant_time_eq;
use crate::store::Store;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use cookie::{Cookie, SameSite};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

pub const PATH: &str = "/status/login";

/// A request with a valid session, and the CSRF token its forms carry.
pub struct SignedIn {
    session: Session,
    pub csrf: String,
}

impl SignedIn {
    /// Whether a POST's form carries this session's CSRF token.
    pub fn check<Q: Queue, S: Store>(
        &self,
        state: &StatusState<Q, S>,
        given: &str,
    ) -> Result<(), StatusError> {
        if self.session.csrf_matches(state.token()?, given) {
            Ok(())
        } else {
            Err(StatusError::Csrf)
        }
    }
}

impl<Q: Queue, S: Store> FromRequestParts<Arc<StatusState<Q, S>>> for SignedIn {
    type Rejection = StatusError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<StatusState<Q, S>>,
    ) -> Result<Self, StatusError> {
        let token = state.token()?;
        let session = layout::cookie_value(&parts.headers, session::COOKIE)
            .and_then(|value| Session::verify(token, &value, Utc::now()))
            .ok_or(StatusError::SignedOut)?;
        Ok(SignedIn {
            csrf: session.csrf(token),
            session,
        })
    }
}

fn login_form(refusal: Option<&str>) -> Markup {
    html! {
        form.login method="post" action=(PATH) {
            @if let Some(refusal) = refusal {
                p.flash.refused role="alert" { (refusal) }
            }
            label for="token" { "Admin token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
            p.hint { "The token is " code { "server.admin_token" } " of the configuration." }
        }
    }
}

pub async fn form<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    LastFlash(flash): LastFlash,
) -> Result<Page, StatusError> {
    state.token()?;
    Ok(Page::new("Sign in", login_form(None)).flash(flash))
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
}

pub async fn sign_in<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, StatusError> {
    let token = state.token()?;
    if form.token.is_empty() || !constant_time_eq(form.token.as_bytes(), token.expose().as_bytes())
    {
        tracing::warn!("status page: sign-in with a wrong admin token refused");
        let refusal = "That is not the admin token.";
        return Ok(Page::new("Sign in", login_form(Some(refusal)))
            .status(StatusCode::UNAUTHORIZED)
            .into_response());
    }
    let session = Session::issue(token, Utc::now(), rand::random());
    let cookie = Cookie::build((session::COOKIE, session.value().to_string()))
        .path("/status")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(came_over_https(&headers))
        .max_age(cookie::time::Duration::seconds(
            session::LIFETIME.num_seconds(),
        ))
        .build();
    let mut response = axum::response::Redirect::to("/status").into_response();
    layout::append_cookie(&mut response, &cookie);
    Ok(response)
}

#[derive(Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    Form(form): Form<SignOutForm>,
) -> Result<Response, StatusError> {
    signed_in.check(&state, &form.csrf)?;
    let gone = Cookie::build((session::COOKIE, ""))
        .path("/status")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut response = Flash::done("Signed out.").redirect(PATH);
    layout::append_cookie(&mut response, &gone);
    Ok(response)
}

/// Behind a TLS-terminating proxy the cookie must only travel over https.
fn came_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}
