//! PostgreSQL, the source of truth: jobs and their history, idempotency keys, the outbox,
//! writebacks, and what the API told us about accounts and the key.
//!
//! Workers and handlers talk to it through domain operations only; no SQL leaves this module.

mod accounts;
mod api_calls;
mod config;
mod crm_pauses;
mod jobs;
mod outbox;
mod send_gate;
mod waits;
mod writebacks;

pub use accounts::{AccountStanding, AccountStore, AccountSummary, KeyPause, Overview};
pub use api_calls::ApiBudgetStore;
pub use config::DatabaseConfig;
pub use crm_pauses::{CrmPause, CrmPauseStore};
pub use jobs::{
    AccountHold, Actor, Attempts, Claim, ClaimedJob, Doubt, Enriched, Enrichment, IngestOutcome,
    JobFilter, JobHistory, JobStore, NewJob, SendSlot, SendStart, Transition,
};
pub use outbox::{OutboxMessage, OutboxStore};
pub use send_gate::{AccountReading, Facts, GateWait, SendGate};
pub use waits::{Wait, WaitStore, Waiting};
pub use writebacks::{
    ParkedWriteback, WritebackClaim, WritebackResult, WritebackRow, WritebackStore, WritebackWork,
};

use crate::job::Status;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Another worker owns the job now; this one must leave it alone.
    #[error("lease on job {0} was lost")]
    LeaseLost(Uuid),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505"))
    }

    /// Two transactions waited on each other and PostgreSQL ended this one.
    fn is_deadlock(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01"))
    }
}

/// Everything the workers and handlers need from storage, one trait per concern. PostgreSQL
/// implements it; the planned embedded mode implements the same traits.
pub trait Store:
    JobStore
    + OutboxStore
    + WritebackStore
    + AccountStore
    + CrmPauseStore
    + ApiBudgetStore
    + WaitStore
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Whether the database answers now.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// How long a freshly written outbox row is left to the process that wrote it.
    relay_grace: chrono::Duration,
}

impl PgStore {
    /// Connects and runs the migrations.
    pub async fn connect(
        config: &DatabaseConfig,
        relay_grace: std::time::Duration,
    ) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(config.url.expose())?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(PgStore {
            pool,
            relay_grace: chrono::Duration::from_std(relay_grace)
                .unwrap_or(chrono::Duration::seconds(10)),
        })
    }
}

impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query!("SELECT 1 AS alive")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// One line of a job's history.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub status: Option<Status>,
    pub detail: serde_json::Value,
}

async fn record_event(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    at: DateTime<Utc>,
    kind: &str,
    status: Option<Status>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO job_events (job_id, at, kind, status, detail) VALUES ($1, $2, $3, $4, $5)",
        job_id,
        at,
        kind,
        status as Option<Status>,
        detail
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
