//! The source of truth, in PostgreSQL or a SQLite file: jobs and their history, idempotency
//! keys, the outbox, writebacks, and what the API told us about accounts and the key.
//!
//! Workers and handlers talk to it through domain operations only; no SQL leaves this module.

mod accounts;
mod api_calls;
mod config;
pub mod copy;
mod crm_pauses;
pub(crate) mod db;
mod jobs;
mod lock;
mod outbox;
mod send_gate;
mod waits;
mod writebacks;

pub use accounts::{AccountStanding, AccountStore, AccountSummary, KeyPause, Overview};
pub use api_calls::ApiBudgetStore;
pub use config::DatabaseConfig;
pub use crm_pauses::{CrmPause, CrmPauseStore};
pub use jobs::{
    AccountHold, Actor, Attempts, CallOff, CalledOff, Claim, ClaimedJob, Doubt, Enriched,
    Enrichment, IngestOutcome, JobFilter, JobHistory, JobStore, NewJob, SendSlot, SendStart,
    Transition,
};
pub use lock::ProcessLock;
pub use outbox::{OutboxMessage, OutboxStore};
pub use send_gate::{AccountReading, Facts, GateWait, SendGate};
pub use waits::{Wait, WaitStore, Waiting};
pub use writebacks::{
    ParkedWriteback, WritebackClaim, WritebackResult, WritebackRow, WritebackStore, WritebackWork,
};

use crate::job::Status;
use chrono::{DateTime, Utc};
use db::Db;
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
    #[error("cannot open the store: {0}")]
    Open(String),
    #[error("{0}")]
    InUse(String),
}

impl StoreError {
    fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    fn is_deadlock(&self) -> bool {
        matches!(self, StoreError::Database(e) if db::pg::is_deadlock(e))
    }
}

/// Everything the workers and handlers need from storage, one trait per concern.
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
pub struct SqlStore {
    db: Db,
    /// How long a freshly written outbox row is left to the process that wrote it.
    relay_grace: chrono::Duration,
}

impl SqlStore {
    /// Opens the store `config.url` names (`postgres://` or `sqlite:`), creating a missing
    /// SQLite file, and runs the migrations.
    pub async fn connect(
        config: &DatabaseConfig,
        relay_grace: std::time::Duration,
    ) -> Result<SqlStore, StoreError> {
        Self::open(config, relay_grace, db::sqlite::Create::IfMissing).await
    }

    /// Opens a store that must exist already: the command line's look at a running
    /// service's store.
    pub async fn connect_existing(
        config: &DatabaseConfig,
        relay_grace: std::time::Duration,
    ) -> Result<SqlStore, StoreError> {
        Self::open(config, relay_grace, db::sqlite::Create::Never).await
    }

    async fn open(
        config: &DatabaseConfig,
        relay_grace: std::time::Duration,
        create: db::sqlite::Create,
    ) -> Result<SqlStore, StoreError> {
        let db = if config.is_sqlite() {
            db::sqlite::connect(config, create).await?
        } else {
            db::pg::connect(config).await?
        };
        Ok(SqlStore {
            db,
            relay_grace: chrono::Duration::from_std(relay_grace)
                .unwrap_or(chrono::Duration::seconds(10)),
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.db.is_sqlite()
    }
}

impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        db::query("SELECT 1")
            .scalar::<i32>(&mut self.db.read().await?)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.db.close().await;
    }
}

/// One line of a job's history.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub status: Option<Status>,
    #[sqlx(json)]
    pub detail: serde_json::Value,
}

async fn record_event(
    tx: &mut impl db::Exec,
    job_id: Uuid,
    at: DateTime<Utc>,
    kind: &str,
    status: Option<Status>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO job_events (job_id, at, kind, status, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(job_id)
    .bind(at)
    .bind(kind)
    .bind(status)
    .bind(sqlx::types::Json(detail))
    .execute(tx)
    .await?;
    Ok(())
}

/// A store on a fresh SQLite file, for the store's own unit tests.
#[cfg(test)]
pub(crate) async fn scratch_sqlite() -> SqlStore {
    let dir = std::env::temp_dir().join(format!("leadlink-unit-{}", Uuid::now_v7()));
    let config = DatabaseConfig {
        url: crate::secret::Secret::new(format!("sqlite://{}/leadlink.db", dir.display())),
        ..DatabaseConfig::default()
    };
    SqlStore::connect(&config, std::time::Duration::from_secs(10))
        .await
        .expect("a scratch SQLite store opens")
}
