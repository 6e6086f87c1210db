//! What only SQLite has: its file, its pragmas and its two pools.

use super::Db;
use crate::store::{DatabaseConfig, StoreError};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;

/// Whether a missing database file is created (serving) or is an error (the CLI, which
/// must not leave an empty store where the service expects its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    IfMissing,
    Never,
}

pub async fn connect(config: &DatabaseConfig, create: Create) -> Result<Db, StoreError> {
    let options = SqliteConnectOptions::from_str(config.url.expose())?
        .journal_mode(SqliteJournalMode::Wal)
        // A commit that reached only the OS cache could vanish with a power cut; a lost
        // send marker would mean a second invitation.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(config.acquire_timeout)
        .create_if_missing(create == Create::IfMissing);
    if create == Create::Never && !options.get_filename().exists() && !is_memory(config) {
        return Err(StoreError::Open(format!(
            "no store at {} (database.url {}); `leadlink serve` creates it",
            options.get_filename().display(),
            config.url.expose()
        )));
    }
    if create == Create::IfMissing {
        let file = options.get_filename();
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Open(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
    }
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(config.acquire_timeout)
        // A disk-full or I/O error makes SQLite roll back on its own and can leave sqlx
        // counting a transaction that is gone; such a connection is closed, not reused.
        .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(config.max_connections.max(1))
        .acquire_timeout(config.acquire_timeout)
        .connect_with(options.read_only(true))
        .await?;
    Ok(Db::Lite {
        writer: super::SharedWriter::new(writer, config.acquire_timeout),
        reader,
    })
}

/// An in-memory store: no file, nothing to create or lock.
pub fn is_memory(config: &DatabaseConfig) -> bool {
    let url = config.url.expose();
    url.contains(":memory:") || url.contains("mode=memory")
}
