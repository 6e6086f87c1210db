//! Values a statement binds: anything both backends encode, and sets of them.

use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentValue, SqliteArguments, SqliteTypeInfo};
use sqlx::{Arguments, Encode, Postgres, Sqlite, Type};

/// A value bound on whichever backend the statement runs on.
pub trait Bind<'q>: Send {
    fn pg(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError>;
    fn lite(self: Box<Self>, args: &mut SqliteArguments<'q>) -> Result<(), BoxDynError>;
}

impl<'q, T> Bind<'q> for T
where
    T: 'q + Send + Encode<'q, Postgres> + Type<Postgres> + Encode<'q, Sqlite> + Type<Sqlite>,
{
    fn pg(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError> {
        args.add(*self)
    }

    fn lite(self: Box<Self>, args: &mut SqliteArguments<'q>) -> Result<(), BoxDynError> {
        args.add(*self)
    }
}

/// A set of values for `= ANY($n)` / `<> ALL($n)`: an array on PostgreSQL, a JSON array
/// on SQLite, where the statement reads it with `json_each`.
#[derive(Debug, Clone, Copy)]
pub struct Set<'a, T>(pub &'a [T]);

impl<'a, T> Type<Postgres> for Set<'a, T>
where
    &'a [T]: Type<Postgres>,
{
    fn type_info() -> PgTypeInfo {
        <&'a [T] as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&'a [T] as Type<Postgres>>::compatible(ty)
    }
}

impl<'a, 'q, T> Encode<'q, Postgres> for Set<'a, T>
where
    &'a [T]: Encode<'q, Postgres>,
{
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}

impl<T> Type<Sqlite> for Set<'_, T> {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q, T: Serialize> Encode<'q, Sqlite> for Set<'_, T> {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(serde_json::to_string(self.0)?, buf)
    }
}

/// A list column read back: a PostgreSQL array, or the JSON array SQLite keeps instead.
/// Fields read it with `#[sqlx(try_from = "db::List<T>")]`; lists are written as [`Set`].
#[derive(Debug, Clone)]
pub struct List<T>(pub Vec<T>);

impl<T> Type<Postgres> for List<T>
where
    Vec<T>: Type<Postgres>,
{
    fn type_info() -> PgTypeInfo {
        <Vec<T> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<T> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r, T> sqlx::Decode<'r, Postgres> for List<T>
where
    Vec<T>: sqlx::Decode<'r, Postgres>,
{
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(List(<Vec<T> as sqlx::Decode<'r, Postgres>>::decode(value)?))
    }
}

impl<T> Type<Sqlite> for List<T> {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'r, T: serde::de::DeserializeOwned> sqlx::Decode<'r, Sqlite> for List<T> {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as sqlx::Decode<'r, Sqlite>>::decode(value)?;
        Ok(List(serde_json::from_str(text)?))
    }
}

impl<T> From<List<T>> for Vec<T> {
    fn from(list: List<T>) -> Vec<T> {
        list.0
    }
}
