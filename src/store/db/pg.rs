//! What only PostgreSQL has: its connection, its migrations and advisory locks.

use super::{Conn, Db, Exec};
use crate::store::{DatabaseConfig, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;

pub async fn connect(config: &DatabaseConfig) -> Result<Db, StoreError> {
    let options = PgConnectOptions::from_str(config.url.expose())?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(Db::Pg(pool))
}

/// Serialises the transactions that name the same `key` in `space`, until they end. On
/// SQLite the write transaction already holds the whole database.
pub async fn lock_scope(tx: &mut impl Exec, space: i64, key: &str) -> Result<(), sqlx::Error> {
    if let Conn::Pg(conn) = tx.conn() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
            .bind(key)
            .bind(space)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Two transactions waited on each other and PostgreSQL ended this one.
pub fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("40P01"))
}

/// Moves `table`'s id sequence past the rows a copy inserted with their own ids (SQLite's
/// AUTOINCREMENT follows inserted ids by itself).
pub async fn follow_sequence(tx: &mut impl Exec, table: &str) -> Result<(), sqlx::Error> {
    if let Conn::Pg(conn) = tx.conn() {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
             COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
        ))
        .execute(conn)
        .await?;
    }
    Ok(())
}
