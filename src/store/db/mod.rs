//! The one executor every store function goes through: PostgreSQL or SQLite behind the
//! same query calls, so each statement and each rule is written once.
//!
//! Statements are written in PostgreSQL's dialect; [`render`] turns the few PostgreSQL-only
//! clauses they may use (row locks, array membership) into SQLite's. Anything else a
//! statement needs must be valid in both, or be a rule computed in Rust.

mod bind;
pub(crate) mod pg;
mod render;
mod shared_commit;
pub(crate) mod sqlite;
mod value;

pub use bind::{List, Set};
pub use value::Kind;

use bind::Bind;
use shared_commit::{SharedWriter, WriteTx};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Acquire, FromRow, PgPool, Postgres, Sqlite, SqlitePool};

/// The pools of one store.
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    /// One writer connection, so that in-process writers take turns instead of meeting
    /// SQLite's busy lock, and share commits; readers never block it in WAL mode.
    Lite {
        writer: SharedWriter,
        reader: SqlitePool,
    },
}

impl Db {
    /// A write transaction; on SQLite one turn of the shared writer.
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        Ok(match self {
            Db::Pg(pool) => Tx::Pg(pool.begin().await?),
            Db::Lite { writer, .. } => Tx::Lite(writer.begin().await?),
        })
    }

    /// A connection for reads outside a transaction.
    pub async fn read(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match self {
            Db::Pg(pool) => Pooled::Pg(pool.acquire().await?),
            Db::Lite { reader, .. } => Pooled::Lite(reader.acquire().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Pg(pool) => pool.close().await,
            Db::Lite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Db::Lite { .. })
    }
}

/// A transaction on either backend.
pub enum Tx<'c> {
    Pg(sqlx::Transaction<'c, Postgres>),
    Lite(WriteTx),
    /// A savepoint inside a SQLite write transaction.
    LiteNested(sqlx::Transaction<'c, Sqlite>),
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Pg(tx) => tx.commit().await,
            Tx::Lite(tx) => tx.commit().await,
            Tx::LiteNested(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Pg(tx) => tx.rollback().await,
            Tx::Lite(tx) => tx.rollback().await,
            Tx::LiteNested(tx) => tx.rollback().await,
        }
    }

    /// A nested transaction (a savepoint) that can fail alone.
    pub async fn savepoint(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(match self {
            Tx::Pg(tx) => Tx::Pg((&mut **tx).begin().await?),
            Tx::Lite(tx) => Tx::LiteNested(tx.conn().begin().await?),
            Tx::LiteNested(tx) => Tx::LiteNested((&mut **tx).begin().await?),
        })
    }
}

/// A pooled connection on either backend.
pub enum Pooled {
    Pg(sqlx::pool::PoolConnection<Postgres>),
    Lite(sqlx::pool::PoolConnection<Sqlite>),
}

/// The connection a statement runs on.
pub enum Conn<'c> {
    Pg(&'c mut PgConnection),
    Lite(&'c mut SqliteConnection),
}

/// What a statement can run on: a transaction or a pooled connection.
pub trait Exec: Send {
    fn conn(&mut self) -> Conn<'_>;
}

impl Exec for Tx<'_> {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Pg(tx) => Conn::Pg(tx),
            Tx::Lite(tx) => Conn::Lite(tx.conn()),
            Tx::LiteNested(tx) => Conn::Lite(tx),
        }
    }
}

impl Exec for Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Pg(c) => Conn::Pg(c),
            Pooled::Lite(c) => Conn::Lite(c),
        }
    }
}

/// A row type both backends decode.
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{}

/// A statement with its arguments, bound in order to `$1`, `$2`, ...
#[must_use = "a query does nothing until it runs"]
pub struct Query<'q> {
    sql: &'q str,
    binds: Vec<Box<dyn Bind<'q> + 'q>>,
}

pub fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        binds: Vec::new(),
    }
}

impl<'q> Query<'q> {
    pub fn bind<T: Bind<'q> + 'q>(mut self, value: T) -> Self {
        self.binds.push(Box::new(value));
        self
    }

    fn pg_args(self) -> Result<(&'q str, sqlx::postgres::PgArguments), sqlx::Error> {
        let mut args = sqlx::postgres::PgArguments::default();
        for bind in self.binds {
            bind.pg(&mut args).map_err(sqlx::Error::Encode)?;
        }
        Ok((self.sql, args))
    }

    fn lite_args(self) -> Result<(String, sqlx::sqlite::SqliteArguments<'q>), sqlx::Error> {
        let mut args = sqlx::sqlite::SqliteArguments::default();
        for bind in self.binds {
            bind.lite(&mut args).map_err(sqlx::Error::Encode)?;
        }
        Ok((render::for_sqlite(self.sql), args))
    }

    /// Runs the statement; the number of rows it changed.
    pub async fn execute(self, on: &mut impl Exec) -> Result<u64, sqlx::Error> {
        match on.conn() {
            Conn::Pg(c) => {
                let (sql, args) = self.pg_args()?;
                Ok(sqlx::query_with(sql, args)
                    .execute(c)
                    .await?
                    .rows_affected())
            }
            Conn::Lite(c) => {
                let (sql, args) = self.lite_args()?;
                Ok(sqlx::query_with(&sql, args)
                    .execute(c)
                    .await?
                    .rows_affected())
            }
        }
    }

    pub async fn fetch_optional<T: Row>(
        self,
        on: &mut impl Exec,
    ) -> Result<Option<T>, sqlx::Error> {
        match on.conn() {
            Conn::Pg(c) => {
                let (sql, args) = self.pg_args()?;
                sqlx::query_as_with(sql, args).fetch_optional(c).await
            }
            Conn::Lite(c) => {
                let (sql, args) = self.lite_args()?;
                sqlx::query_as_with(&sql, args).fetch_optional(c).await
            }
        }
    }

    pub async fn fetch_one<T: Row>(self, on: &mut impl Exec) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn fetch_all<T: Row>(self, on: &mut impl Exec) -> Result<Vec<T>, sqlx::Error> {
        match on.conn() {
            Conn::Pg(c) => {
                let (sql, args) = self.pg_args()?;
                sqlx::query_as_with(sql, args).fetch_all(c).await
            }
            Conn::Lite(c) => {
                let (sql, args) = self.lite_args()?;
                sqlx::query_as_with(&sql, args).fetch_all(c).await
            }
        }
    }

    /// The first column of the one row.
    pub async fn scalar<T>(self, on: &mut impl Exec) -> Result<T, sqlx::Error>
    where
        (T,): Row,
    {
        Ok(self.fetch_one::<(T,)>(on).await?.0)
    }

    /// The first column of the row, if there is one.
    pub async fn scalar_optional<T>(self, on: &mut impl Exec) -> Result<Option<T>, sqlx::Error>
    where
        (T,): Row,
    {
        Ok(self.fetch_optional::<(T,)>(on).await?.map(|(value,)| value))
    }

    /// The first column of every row.
    pub async fn scalar_all<T>(self, on: &mut impl Exec) -> Result<Vec<T>, sqlx::Error>
    where
        (T,): Row,
    {
        Ok(self
            .fetch_all::<(T,)>(on)
            .await?
            .into_iter()
            .map(|(value,)| value)
            .collect())
    }
}
