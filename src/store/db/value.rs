//! Column values read and written without knowing the row type: what `store copy` moves.

use super::bind::{Bind, List};
use super::{Conn, Exec, Query};
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::sqlite::SqliteArguments;
use sqlx::types::Json;
use uuid::Uuid;

/// What a column holds, as both schemas store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Text,
    Int,
    BigInt,
    Bool,
    Time,
    Json,
    /// A list of text: a PostgreSQL array, a JSON array on SQLite.
    TextList,
}

/// One column's value; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i32>),
    BigInt(Option<i64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
    TextList(Option<Vec<String>>),
}

impl<'q> Bind<'q> for Value {
    fn pg(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError> {
        use sqlx::Arguments;
        match *self {
            Value::Uuid(v) => args.add(v),
            Value::Text(v) => args.add(v),
            Value::Int(v) => args.add(v),
            Value::BigInt(v) => args.add(v),
            Value::Bool(v) => args.add(v),
            Value::Time(v) => args.add(v),
            Value::Json(v) => args.add(v.map(Json)),
            Value::TextList(v) => args.add(v),
        }
    }

    fn lite(self: Box<Self>, args: &mut SqliteArguments<'q>) -> Result<(), BoxDynError> {
        use sqlx::Arguments;
        match *self {
            Value::Uuid(v) => args.add(v),
            Value::Text(v) => args.add(v),
            Value::Int(v) => args.add(v),
            Value::BigInt(v) => args.add(v),
            Value::Bool(v) => args.add(v),
            Value::Time(v) => args.add(v),
            Value::Json(v) => args.add(v.map(Json)),
            Value::TextList(v) => match v {
                Some(list) => args.add(serde_json::to_string(&list)?),
                None => args.add(None::<String>),
            },
        }
    }
}

macro_rules! read_row {
    ($row:expr, $kinds:expr) => {{
        let row = $row;
        let mut values = Vec::with_capacity($kinds.len());
        for (i, kind) in $kinds.iter().enumerate() {
            values.push(match kind {
                Kind::Uuid => Value::Uuid(row.try_get(i)?),
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::BigInt => Value::BigInt(row.try_get(i)?),
                Kind::Bool => Value::Bool(row.try_get(i)?),
                Kind::Time => Value::Time(row.try_get(i)?),
                Kind::Json => Value::Json(
                    row.try_get::<Option<Json<serde_json::Value>>, _>(i)?
                        .map(|j| j.0),
                ),
                Kind::TextList => {
                    Value::TextList(row.try_get::<Option<List<String>>, _>(i)?.map(Vec::from))
                }
            });
        }
        values
    }};
}

impl Query<'_> {
    /// Every row, each as the values of `kinds`, one per selected column in order.
    pub async fn fetch_values(
        self,
        on: &mut impl Exec,
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Value>>, sqlx::Error> {
        let mut out = Vec::new();
        match on.conn() {
            Conn::Pg(c) => {
                let (sql, args) = self.pg_args()?;
                for row in sqlx::query_with(sql, args).fetch_all(c).await? {
                    out.push(read_row!(&row, kinds));
                }
            }
            Conn::Lite(c) => {
                let (sql, args) = self.lite_args()?;
                for row in sqlx::query_with(&sql, args).fetch_all(c).await? {
                    out.push(read_row!(&row, kinds));
                }
            }
        }
        Ok(out)
    }
}
