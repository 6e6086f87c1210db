//! CRMs whose credentials were refused: shown to people until a call works again.

use super::db;
use super::waits::{self, Wait};
use super::{OutboxMessage, SqlStore, StoreError};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct CrmPause {
    pub crm: String,
    pub reason: String,
    pub paused_at: DateTime<Utc>,
}

/// Whether `crm` is paused; `FOR SHARE` makes a resume in progress wait for this
/// transaction, so no job is parked on the CRM behind its back.
pub(super) async fn crm_paused(tx: &mut impl db::Exec, crm: &str) -> Result<bool, StoreError> {
    let paused = db::query("SELECT 1 FROM crm_pauses WHERE crm = $1 FOR SHARE")
        .bind(crm)
        .scalar_optional::<i32>(tx)
        .await?;
    Ok(paused.is_some())
}

pub trait CrmPauseStore {
    fn pause_crm(
        &self,
        crm: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A call to the CRM worked: lift its pause, if any, and release the jobs that waited
    /// for it (returned, to publish).
    fn resume_crm(
        &self,
        crm: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>, StoreError>> + Send;

    fn crm_pauses(&self) -> impl Future<Output = Result<Vec<CrmPause>, StoreError>> + Send;
}

impl CrmPauseStore for SqlStore {
    async fn pause_crm(
        &self,
        crm: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        db::query(
            "INSERT INTO crm_pauses (crm, reason, paused_at) VALUES ($1, $2, $3) \
             ON CONFLICT (crm) DO UPDATE SET reason = EXCLUDED.reason",
        )
        .bind(crm)
        .bind(reason)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn resume_crm(
        &self,
        crm: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut tx = self.db.begin().await?;
        let resumed = db::query("DELETE FROM crm_pauses WHERE crm = $1")
            .bind(crm)
            .execute(&mut tx)
            .await?;
        let publish = if resumed > 0 {
            tracing::warn!(crm, "the CRM accepts leadlink's credentials again");
            waits::release_all(&mut tx, &Wait::Crm(crm.to_string()), now).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(publish)
    }

    async fn crm_pauses(&self) -> Result<Vec<CrmPause>, StoreError> {
        Ok(
            db::query("SELECT crm, reason, paused_at FROM crm_pauses ORDER BY crm")
                .fetch_all::<CrmPause>(&mut self.db.read().await?)
                .await?,
        )
    }
}
