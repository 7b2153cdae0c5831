//! Typed reads of columns. Every value is read with `try_get`, and a value that does not
//! convert is a `ColumnDecode` error naming the column and the value: a row never panics and
//! never turns into a default.

use std::str::FromStr;

use serde::de::DeserializeOwned;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::StoreResult;

/// The error for `column` holding a value that does not convert.
pub(super) fn bad_column(
    column: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: source.into(),
    }
}

/// A text column holding one of an enum's words.
pub(super) fn parsed<T>(row: &AnyRow, column: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let raw: String = row.try_get(column)?;
    raw.parse().map_err(|e| bad_column(column, e))
}

/// A nullable text column holding one of an enum's names (the `named_enum` kind, whose
/// parse error is its message).
pub(super) fn named_opt<T: FromStr<Err = String>>(
    row: &AnyRow,
    column: &str,
) -> StoreResult<Option<T>> {
    let raw: Option<String> = row.try_get(column)?;
    raw.map(|r| r.parse().map_err(|e: String| bad_column(column, e)))
        .transpose()
}

/// A text column holding JSON.
pub(super) fn json<T: DeserializeOwned>(row: &AnyRow, column: &str) -> StoreResult<T> {
    let raw: String = row.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| bad_column(column, json_error(&raw, e)))
}

/// A nullable text column holding JSON.
pub(super) fn json_opt<T: DeserializeOwned>(row: &AnyRow, column: &str) -> StoreResult<Option<T>> {
    let raw: Option<String> = row.try_get(column)?;
    raw.map(|r| serde_json::from_str(&r).map_err(|e| bad_column(column, json_error(&r, e))))
        .transpose()
}

/// An integer column holding a count (never negative).
pub(super) fn count<T: TryFrom<i64>>(row: &AnyRow, column: &str) -> StoreResult<T> {
    let raw: i64 = row.try_get(column)?;
    T::try_from(raw).map_err(|_| bad_column(column, format!("{raw} is not a valid count")))
}

/// An integer column holding a 0/1 flag.
pub(super) fn flag(row: &AnyRow, column: &str) -> StoreResult<bool> {
    match row.try_get::<i64, _>(column)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(bad_column(
            column,
            format!("{other} is not a flag (0 or 1)"),
        )),
    }
}

fn json_error(raw: &str, e: serde_json::Error) -> String {
    let shown: String = raw.chars().take(80).collect();
    format!("not the JSON expected ({e}): '{shown}'")
}

/// An id as the database stores it (ids are positive `i64`s).
pub(super) fn id_param(id: u64) -> StoreResult<i64> {
    i64::try_from(id).map_err(|_| bad_column("id", format!("{id} is out of range")))
}

/// `q` with `values` bound in order, for the placeholders of [`Backend::list`](super::Backend::list).
pub(super) fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    values: &'q [String],
) -> Query<'q, Any, AnyArguments<'q>> {
    for v in values {
        q = q.bind(v);
    }
    q
}
