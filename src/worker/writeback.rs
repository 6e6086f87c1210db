//! The writeback stage: deliver one status change to its target, on its own retry schedule.
//! It never touches the connect: a failing CRM cannot cause a second invitation.

use super::{Services, WorkerError};
use crate::queue::Queue;
use crate::store::{Store, WritebackClaim, WritebackResult};
use crate::telemetry::metrics::{self, WritebackOutcome};
use chrono::Utc;
use tracing::Instrument;

pub async fn handle<Q: Queue, S: Store>(s: &Services<Q, S>, id: i64) -> Result<(), WorkerError> {
    let lease =
        chrono::Duration::from_std(s.writers.lease()).unwrap_or(chrono::Duration::minutes(2));
    let work = match s.store.claim_writeback(id, lease, Utc::now()).await? {
        WritebackClaim::Deliver(work) => work,
        WritebackClaim::Deferred => return Ok(()),
        WritebackClaim::Superseded(target) => {
            metrics::writeback(target, WritebackOutcome::Superseded);
            return Ok(());
        }
        WritebackClaim::Skip(why) => {
            tracing::debug!(id, why, "nothing to do");
            return Ok(());
        }
    };
    let span = tracing::info_span!("job", job_id = %work.job_id, stage = "writeback", target = %work.target, sequence = work.sequence);
    async {
        let result = s.writers.deliver(&work, Utc::now()).await;
        tracing::info!(?result, "writeback attempt");
        // Shown to people (`pausedCrms`) while the CRM refuses our credentials.
        match &result {
            WritebackResult::Paused { reason, .. } if work.target.is_crm() => {
                s.store
                    .pause_crm(work.target.as_str(), reason, Utc::now())
                    .await?;
            }
            WritebackResult::Delivered if work.target.is_crm() => {
                let released = s.store.resume_crm(work.target.as_str(), Utc::now()).await?;
                crate::outbox::publish_now(&s.store, &s.queue, released).await;
            }
            _ => {}
        }
        s.store.writeback_done(&work, &result, Utc::now()).await?;
        if let Some(outcome) = counted_as(&result) {
            metrics::writeback(work.target, outcome);
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// What an attempt counts as; `None` for one that was not tried (a rate-limit budget spent).
fn counted_as(result: &WritebackResult) -> Option<WritebackOutcome> {
    match result {
        WritebackResult::Delivered => Some(WritebackOutcome::Delivered),
        WritebackResult::Retry { .. } | WritebackResult::Paused { .. } => {
            Some(WritebackOutcome::Failed)
        }
        WritebackResult::Parked { .. } => Some(WritebackOutcome::Parked),
        WritebackResult::Later { .. } => None,
    }
}
