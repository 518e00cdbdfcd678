//! One value crossing to PostgreSQL, converted to the column's type.
//!
//! The store's code speaks SQLite's few types: integers, text (amounts as exact
//! decimal text, dates as `YYYY-MM-DD`), reals, bytes. PostgreSQL keeps amounts as
//! NUMERIC and business dates as DATE, and its binary protocol wants each parameter
//! in the exact type the statement expects. [`Value`] carries the store's value and
//! converts it when the server says which type it wants — an amount's text to
//! NUMERIC, a date's text to DATE, 0/1 to a boolean — and refuses a value that
//! does not convert, naming both; reading converts back, so a row reads the same on
//! both backends (an amount keeps its scale: NUMERIC does).

use std::error::Error;

use bytes::BytesMut;
use chrono::NaiveDate;
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use rust_decimal::Decimal;

type BoxError = Box<dyn Error + Sync + Send>;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

fn mismatch(v: &Value, ty: &Type) -> BoxError {
    format!("a value {v:?} does not fit a column of type {ty}").into()
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Int(i), &Type::NUMERIC) => Decimal::from(*i).to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Int(i), &Type::TEXT | &Type::VARCHAR) => i.to_string().to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                s.to_sql(ty, out)
            }
            (Value::Text(s), &Type::NUMERIC) => {
                let d: Decimal = s
                    .parse()
                    .map_err(|e| format!("`{s}` is not an exact decimal: {e}"))?;
                d.to_sql(ty, out)
            }
            (Value::Text(s), &Type::DATE) => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|e| format!("`{s}` is not a date (YYYY-MM-DD): {e}"))?;
                d.to_sql(ty, out)
            }
            (Value::Text(s), &Type::INT8) => s.parse::<i64>()?.to_sql(ty, out),
            (Value::Bytes(b), &Type::BYTEA) => b.to_sql(ty, out),
            (v, ty) => Err(mismatch(v, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Decided per value in `to_sql`, where a mismatch is a clear error.
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => Value::Text(Decimal::from_sql(ty, raw)?.to_string()),
            Type::DATE => Value::Text(NaiveDate::from_sql(ty, raw)?.to_string()),
            Type::BYTEA => Value::Bytes(Vec::<u8>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::NUMERIC
                | Type::DATE
                | Type::BYTEA
        ) || <String as FromSql>::accepts(ty)
    }
}
