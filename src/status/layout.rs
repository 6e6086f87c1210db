//! What every view shares: the page shell with its navigation, the flash message an action
//! leaves for the next page, and how times are written (in the account's time zone, with
//! its name, and how far away they are).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cookie::{Cookie, SameSite};
use maud::{DOCTYPE, Markup, html};

pub const CSS_PATH: &str = "/status/status.css";
pub const CSS: &str = include_str!("status.css");

const FLASH_COOKIE: &str = "leadlink_flash";

/// A page: the shell around `body`, with the navigation when signed in (its sign-out form
/// needs the session's CSRF token) and the flash message the last action left.
pub struct Page {
    title: String,
    body: Markup,
    csrf: Option<String>,
    flash: Option<Flash>,
    status: StatusCode,
}

impl Page {
    pub fn new(title: impl Into<String>, body: Markup) -> Page {
        Page {
            title: title.into(),
            body,
            csrf: None,
            flash: None,
            status: StatusCode::OK,
        }
    }

    pub fn signed_in(self, csrf: &str) -> Page {
        Page {
            csrf: Some(csrf.to_string()),
            ..self
        }
    }

    pub fn flash(self, flash: Option<Flash>) -> Page {
        Page { flash, ..self }
    }

    pub fn status(self, status: StatusCode) -> Page {
        Page { status, ..self }
    }

    fn render(&self) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · leadlink" }
                    link rel="stylesheet" href=(CSS_PATH);
                }
                body {
                    header.top {
                        a.brand href="/status" { "leadlink" }
                        @if let Some(csrf) = &self.csrf {
                            nav {
                                a href="/status" { "Accounts" }
                                a href="/status/jobs" { "Jobs" }
                            }
                            form.signout method="post" action="/status/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                    main {
                        @if let Some(flash) = &self.flash {
                            p.flash.(flash.kind.class()) role="status" { (flash.text) }
                        }
                        h1 { (self.title) }
                        (self.body)
                    }
                }
            }
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.render()).into_response();
        if self.flash.is_some() {
            // Shown once: the next page starts without it.
            let gone = Cookie::build((FLASH_COOKIE, ""))
                .path("/status")
                .max_age(cookie::time::Duration::ZERO)
                .build();
            append_cookie(&mut response, &gone);
        }
        response
    }
}

/// A paragraph of text, for error pages.
pub fn message(text: &str) -> Markup {
    html! { p.message { (text) } }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Done,
    Refused,
}

impl FlashKind {
    fn class(self) -> &'static str {
        match self {
            FlashKind::Done => "done",
            FlashKind::Refused => "refused",
        }
    }
}

/// What an action says on the page it redirects to, carried there in a short-lived cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

impl Flash {
    pub fn done(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Done,
            text: text.into(),
        }
    }

    pub fn refused(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Refused,
            text: text.into(),
        }
    }

    /// The flash the request's cookies carry, if any.
    pub fn read(headers: &HeaderMap) -> Option<Flash> {
        let value = cookie_value(headers, FLASH_COOKIE)?;
        let (kind, text) = value.split_once(':')?;
        let kind = match kind {
            "done" => FlashKind::Done,
            "refused" => FlashKind::Refused,
            _ => return None,
        };
        Some(Flash {
            kind,
            text: text.to_string(),
        })
    }

    /// Redirects to `to` (a path under /status), leaving this message for the page there.
    pub fn redirect(self, to: &str) -> Response {
        let mut response = Redirect::to(to).into_response();
        let value = format!("{}:{}", self.kind.class(), self.text);
        let flash = Cookie::build((FLASH_COOKIE, value))
            .path("/status")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(cookie::time::Duration::minutes(1))
            .build();
        append_cookie(&mut response, &flash);
        response
    }
}

/// The flash an action left for this page, if any.
pub struct LastFlash(pub Option<Flash>);

impl<T: Send + Sync> FromRequestParts<T> for LastFlash {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &T) -> Result<Self, Self::Rejection> {
        Ok(LastFlash(Flash::read(&parts.headers)))
    }
}

/// The value of the request's cookie `name` (percent-decoded).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
}

/// Adds a `Set-Cookie` (the value percent-encoded, so any message text fits).
pub fn append_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    let value = cookie.encoded().to_string();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `t` in the account's time zone, with the zone's abbreviation, and how far from `now`.
pub fn time(t: DateTime<Utc>, tz: Tz, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) {
            (t.with_timezone(&tz).format("%a %-d %b %Y, %H:%M:%S %Z"))
        }
        " " span.ago { "(" (relative(t, now)) ")" }
    }
}

/// `t` as a short local time, for tables.
pub fn short_time(t: DateTime<Utc>, tz: Tz) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) { (t.with_timezone(&tz).format("%-d %b %H:%M:%S %Z")) }
    }
}

/// "in 2 h 5 min", "3 min ago", "now": the largest two units.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (t - now).num_seconds();
    if seconds.abs() < 1 {
        return "now".into();
    }
    let total = seconds.unsigned_abs();
    let units = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = total;
    for (size, name) in units {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{} {name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            // Two adjacent units at most: "1 d 3 h", never "1 d 12 s".
            break;
        }
    }
    let span = parts.join(" ");
    if seconds > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t0() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn distances_are_written_with_their_two_largest_units() {
        let at = |s: i64| t0() + TimeDelta::seconds(s);
        assert_eq!(relative(t0(), t0()), "now");
        assert_eq!(relative(at(45), t0()), "in 45 s");
        assert_eq!(relative(at(-125), t0()), "2 min 5 s ago");
        assert_eq!(relative(at(3 * 3600 + 60), t0()), "in 3 h 1 min");
        assert_eq!(relative(at(86_400 + 12), t0()), "in 1 d");
        assert_eq!(relative(at(2 * 86_400 + 3 * 3600), t0()), "in 2 d 3 h");
    }

    #[test]
    fn times_are_shown_in_the_accounts_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let shown = time(t0(), berlin, t0()).into_string();
        assert!(shown.contains("Wed 2 Dec 2026, 11:00:00 CET"), "{shown}");
        assert!(
            shown.contains("datetime=\"2026-12-02T10:00:00+00:00\""),
            "{shown}"
        );
    }

    #[test]
    fn a_flash_survives_its_cookie_round_trip() {
        let flash = Flash::refused("job 1 is sent now; nothing was changed; 100% <sure>");
        let response = flash.clone().redirect("/status/jobs");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let pair = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        assert_eq!(Flash::read(&headers), Some(flash));
    }
}
