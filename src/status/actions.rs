//! The operator's actions as CSRF-checked POSTs. Each calls the store operation the CLI
//! calls (`leadlink jobs retry`, `leadlink jobs cancel`) and redirects back with what came
//! of it; a refusal is shown with the store's reason and changes nothing.

use super::layout::Flash;
use super::login::SignedIn;
use super::{StatusError, StatusState};
use crate::job::Status;
use crate::outbox::publish_now;
use crate::queue::{Message, Queue};
use crate::store::{Store, StoreError};
use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// The page the button was on.
    #[serde(default)]
    back: String,
}

impl ActionForm {
    /// Where to go back to: a page of the status page, never another site.
    fn back_or(&self, default: String) -> String {
        let ours = self.back.starts_with("/status") && !self.back.chars().any(char::is_control);
        if ours { self.back.clone() } else { default }
    }
}

/// A refusal becomes the message shown; anything else is an error page.
fn refusal(error: StoreError) -> Result<Flash, StatusError> {
    match error {
        StoreError::Conflict(why) => Ok(Flash::refused(why)),
        StoreError::NotFound(what) => Ok(Flash::refused(format!("{what} not found"))),
        other => Err(other.into()),
    }
}

fn job_id(id: &str) -> Result<Uuid, StatusError> {
    Uuid::parse_str(id).map_err(|_| StatusError::NotFound(format!("no job {id}")))
}

pub async fn retry_job<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, StatusError> {
    signed_in.check(&state, &form.csrf)?;
    let job_id = job_id(&id)?;
    let flash = match state.store.retry_job(job_id, Utc::now()).await {
        Ok((job, publish)) => {
            let rearmed = publish
                .iter()
                .filter(|m| matches!(m.message, Message::Writeback(_)))
                .count();
            publish_now(&state.store, &state.queue, publish).await;
            let job_part = if job.status == Status::Queued {
                format!("Job {job_id} is queued again")
            } else {
                format!("Job {job_id} stays {}", job.status)
            };
            Flash::done(format!(
                "{job_part}; {rearmed} parked writeback(s) re-armed."
            ))
        }
        Err(error) => refusal(error)?,
    };
    Ok(flash.redirect(&form.back_or(format!("/status/jobs/{job_id}"))))
}

pub async fn cancel_job<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, StatusError> {
    signed_in.check(&state, &form.csrf)?;
    let job_id = job_id(&id)?;
    let flash = match state.store.cancel_job(job_id, Utc::now()).await {
        Ok((job, publish)) => {
            publish_now(&state.store, &state.queue, publish).await;
            Flash::done(format!(
                "Job {job_id} is {} ({}).",
                job.status,
                job.error.as_deref().unwrap_or("no reason recorded")
            ))
        }
        Err(error) => refusal(error)?,
    };
    Ok(flash.redirect(&form.back_or(format!("/status/jobs/{job_id}"))))
}

pub async fn retry_writeback<Q: Queue, S: Store>(
    State(state): State<Arc<StatusState<Q, S>>>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, StatusError> {
    signed_in.check(&state, &form.csrf)?;
    let id: i64 = id
        .parse()
        .map_err(|_| StatusError::NotFound(format!("no writeback {id}")))?;
    let (flash, default) = match state.store.retry_writeback(id, Utc::now()).await {
        Ok((job_id, publish)) => {
            publish_now(&state.store, &state.queue, publish).await;
            let flash = Flash::done(format!("Writeback {id} re-armed: it goes out again now."));
            (flash, format!("/status/jobs/{job_id}"))
        }
        Err(error) => (refusal(error)?, "/status".to_string()),
    };
    Ok(flash.redirect(&form.back_or(default)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_only_goes_back_to_a_status_page() {
        let form = |back: &str| ActionForm {
            csrf: String::new(),
            back: back.into(),
        };
        let default = || "/status/jobs/1".to_string();
        assert_eq!(
            form("/status#attention").back_or(default()),
            "/status#attention"
        );
        for elsewhere in [
            "https://evil.example/",
            "//evil.example",
            "",
            "/status\r\nX: y",
        ] {
            assert_eq!(
                form(elsewhere).back_or(default()),
                default(),
                "{elsewhere:?}"
            );
        }
    }
}
