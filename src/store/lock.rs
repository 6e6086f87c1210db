//! Which processes may use a store at once. A SQLite store serves one process: it holds an
//! exclusive lock on `<file>.lock` for its life. PostgreSQL serves many: each holds a
//! shared advisory lock, so that `store copy`, which needs the store to itself, can tell.
//! The kernel and the database drop these locks when a process dies, even by kill -9.

use super::{DatabaseConfig, StoreError};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::str::FromStr;

/// The advisory lock key leadlink's processes share on PostgreSQL ("leadlink" in ASCII).
const ADVISORY_KEY: i64 = 0x6c65_6164_6c69_6e6b;

/// Held for as long as the process uses the store; dropping it releases the lock.
#[derive(Debug)]
pub enum ProcessLock {
    File(File),
    Advisory(PgConnection),
    /// An in-memory SQLite store, which no other process can open.
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// Serving processes: alone on a SQLite file, side by side on PostgreSQL.
    Serving,
    /// `store copy`: alone on either.
    Alone,
}

impl ProcessLock {
    /// The lock a serving process takes before it touches the store.
    pub async fn serving(config: &DatabaseConfig) -> Result<ProcessLock, StoreError> {
        take(config, Sharing::Serving).await
    }

    /// The lock of a command that needs the store to itself.
    pub async fn alone(config: &DatabaseConfig) -> Result<ProcessLock, StoreError> {
        take(config, Sharing::Alone).await
    }
}

async fn take(config: &DatabaseConfig, sharing: Sharing) -> Result<ProcessLock, StoreError> {
    if !config.is_sqlite() {
        let mut connection = PgConnection::connect(config.url.expose()).await?;
        let statement = match sharing {
            Sharing::Serving => "SELECT pg_try_advisory_lock_shared($1)",
            Sharing::Alone => "SELECT pg_try_advisory_lock($1)",
        };
        let taken: bool = sqlx::query_scalar(statement)
            .bind(ADVISORY_KEY)
            .fetch_one(&mut connection)
            .await?;
        if !taken {
            return Err(StoreError::InUse(match sharing {
                Sharing::Serving => {
                    "the PostgreSQL store is being copied (leadlink store copy); start again once it is done".into()
                }
                Sharing::Alone => "a leadlink process is using the PostgreSQL store; stop every leadlink process that uses it first".into(),
            }));
        }
        return Ok(ProcessLock::Advisory(connection));
    }
    let Some(path) = lock_path(config)? else {
        return Ok(ProcessLock::Memory);
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Open(format!("cannot open the lock {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(ProcessLock::File(file)),
        Err(TryLockError::WouldBlock) => Err(StoreError::InUse(format!(
            "another leadlink process is using this SQLite store (it holds {}); an embedded store serves one process: stop it, or move to PostgreSQL and RabbitMQ to run several",
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(StoreError::Open(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// `<database file>.lock`, beside the file (created with its directory if missing); `None`
/// for an in-memory store.
fn lock_path(config: &DatabaseConfig) -> Result<Option<PathBuf>, StoreError> {
    if super::db::sqlite::is_memory(config) {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(config.url.expose())?;
    let file = options.get_filename();
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    Ok(Some(PathBuf::from(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn sqlite_at(url: String) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(url),
            ..DatabaseConfig::default()
        }
    }

    #[tokio::test]
    async fn a_second_process_on_a_sqlite_file_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("leadlink-lock-{}", uuid::Uuid::now_v7()));
        let config = sqlite_at(format!("sqlite://{}/nested/leadlink.db", dir.display()));
        let first = ProcessLock::serving(&config).await.unwrap();
        assert!(dir.join("nested/leadlink.db.lock").exists());
        let second = ProcessLock::serving(&config).await.unwrap_err();
        assert!(
            second.to_string().contains("another leadlink process"),
            "{second}"
        );
        assert!(ProcessLock::alone(&config).await.is_err());
        drop(first);
        ProcessLock::alone(&config).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_lock_sits_beside_the_file_the_url_names() {
        let path = |url: &str| lock_path(&sqlite_at(url.into())).unwrap();
        let dir = std::env::temp_dir();
        let absolute = format!("sqlite://{}/a.db?mode=rwc", dir.display());
        assert_eq!(path(&absolute), Some(dir.join("a.db.lock")));
        assert_eq!(path("sqlite::memory:"), None);
    }
}
