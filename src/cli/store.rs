//! `leadlink store copy`: moving a store to another backend.

use crate::secret::{Secret, redact_url};
use crate::store::copy::{self, TableCount};
use crate::store::{DatabaseConfig, ProcessLock, SqlStore, Store};
use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand)]
pub enum StoreAction {
    /// Copy everything (jobs, history, idempotency keys, writebacks, account state) from
    /// one store into an empty one, e.g. from the embedded SQLite file to PostgreSQL, then
    /// compare the row counts. Every leadlink process using either store must be stopped.
    Copy {
        /// The store to copy: `sqlite://leadlink.db` or `postgres://...`.
        #[arg(long)]
        from: String,
        /// The empty store to fill (a SQLite file is created; a PostgreSQL database must
        /// exist).
        #[arg(long)]
        to: String,
    },
}

pub async fn run(action: StoreAction) -> anyhow::Result<()> {
    super::init_logging(crate::config::LogFormat::Text, "warn", None);
    match action {
        StoreAction::Copy { from, to } => copy_store(from, to).await,
    }
}

async fn copy_store(from: String, to: String) -> anyhow::Result<()> {
    if from == to {
        anyhow::bail!("--from and --to name the same store");
    }
    let from = store_at(from);
    let to = store_at(to);
    // Both stores to itself: a process still serving one would change it under the copy.
    let _from_lock = ProcessLock::alone(&from).await?;
    let _to_lock = ProcessLock::alone(&to).await?;
    let source = SqlStore::connect_existing(&from, Duration::ZERO).await?;
    let target = SqlStore::connect(&to, Duration::ZERO).await?;
    let counts = copy::copy(&source, &target).await;
    source.close().await;
    target.close().await;
    let counts = counts?;
    let verified = counts.iter().all(|c| c.source == c.target);
    super::print_json(serde_json::json!({
        "from": redact_url(from.url.expose()),
        "to": redact_url(to.url.expose()),
        "tables": counts,
        "verified": verified,
    }))?;
    if !verified {
        let differ: Vec<&TableCount> = counts.iter().filter(|c| c.source != c.target).collect();
        anyhow::bail!("row counts differ after the copy: {differ:?}");
    }
    Ok(())
}

fn store_at(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url: Secret::new(url),
        ..DatabaseConfig::default()
    }
}
