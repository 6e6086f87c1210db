//! The lead the CRM returned for a job that named only its record.

use super::ingest::{RecordRef, join_with_state};
use super::priority::set_priority;
use super::rows::{self, LeadColumns};
use super::{Enriched, Enrichment};
use crate::job::Job;
use crate::lead::Resolution;
use crate::store::db;
use crate::store::{SqlStore, StoreError, record_event};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

pub(super) async fn enrich(
    store: &SqlStore,
    job_id: Uuid,
    owner: &str,
    e: &Enrichment,
    now: DateTime<Utc>,
) -> Result<Enriched, StoreError> {
    let lead = serde_json::to_value(&e.lead).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let columns = LeadColumns::of(&e.resolution);
    let usable = matches!(e.resolution, Resolution::Usable(_));
    // An unusable lead claims no identity, so it can never collide with another job.
    let profile_key = columns.profile_key.filter(|_| usable);
    let profile_urn = columns.profile_urn.filter(|_| usable);
    let mut tx = store.db.begin().await?;
    let updated: Result<Option<Job>, StoreError> = db::query(concat!(
        "UPDATE jobs SET account_id = $3, profile_key = $4, profile_id = $5, profile_urn = $6, \
         message = $7, lead = $8, enrich = NOT $10, attempts = 0, updated_at = $9 \
         WHERE id = $1 AND lease_owner = $2 RETURNING ",
        rows::job_columns!()
    ))
    .bind(job_id)
    .bind(owner)
    .bind(&e.account_id)
    .bind(profile_key)
    .bind(columns.profile_id)
    .bind(profile_urn)
    .bind(columns.message)
    .bind(sqlx::types::Json(&lead))
    .bind(now)
    .bind(usable)
    .fetch_optional(&mut tx)
    .await
    .map_err(StoreError::from);
    match updated {
        Ok(Some(mut job)) => {
            let detail = json!({"accountId": e.account_id, "profileId": columns.profile_id,
                "profileUrn": profile_urn, "lead": lead});
            record_event(&mut tx, job_id, now, "enriched", None, detail).await?;
            // Leased by this worker: nothing to wake, the gate comes next.
            if let Some(priority) = e.priority {
                set_priority(&mut tx, job_id, priority, e.read_at, now).await?;
                job.priority = rows::fetch(&mut tx, job_id)
                    .await?
                    .map_or(job.priority, |j| j.priority);
            }
            tx.commit().await?;
            Ok(Enriched::Ready(Box::new(job)))
        }
        Ok(None) => Err(StoreError::LeaseLost(job_id)),
        Err(error) if error.is_unique_violation() => {
            tx.rollback().await?;
            let mut conn = store.db.read().await?;
            let names = [profile_key, profile_urn];
            let other = rows::other_lead_holder(&mut conn, job_id, &e.account_id, names)
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict("the job that had this lead ended meanwhile".into())
                })?;
            // This job's record now hears the other job's changes. Nothing here
            // publishes them: their outbox rows are due at once, for the relay.
            let mut tx = store.db.begin().await?;
            let this = rows::fetch(&mut tx, job_id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
            let record = RecordRef::of_job(&this);
            join_with_state(&mut tx, other.id, &record, now, chrono::Duration::zero()).await?;
            tx.commit().await?;
            Ok(Enriched::SameLeadAs(Box::new(other)))
        }
        Err(error) => Err(error),
    }
}
