//! One way to speak to either database, so each store operation is written once.
//!
//! The store's SQL is written once, in the part of SQL both engines share:
//! numbered parameters `?1`, `?2`… (turned into PostgreSQL's `$1`, `$2`… here),
//! `ON CONFLICT … DO NOTHING/UPDATE` rather than `INSERT OR IGNORE`, `IS DISTINCT
//! FROM` rather than SQLite's `IS NOT`, `RETURNING id` rather than the last row id,
//! and a column of the upserted table named with its table (PostgreSQL refuses it
//! bare next to `excluded`). Arguments ([`Arg`]) and columns ([`Col`]) are the
//! store's own few types; on PostgreSQL an amount's text becomes NUMERIC and a
//! date's text DATE ([`crate::pg::Value`]), and they read back as the same text.
//!
//! Modules move onto this one at a time: a moved one is a set of functions over
//! [`Db`], called by the SQLite [`crate::Store`] and the [`crate::pg::PgStore`]
//! alike, and its tests run on both.

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::pg::Value;
use super::{Result, StoreError};

/// A connection to one of the two databases.
pub(crate) enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a RefCell<PgConn>),
}

/// A PostgreSQL connection and the statements translated for it.
pub(crate) struct PgConn {
    pub(crate) client: postgres::Client,
    translated: HashMap<String, String>,
    /// Open write transactions: 0 none, 1 a transaction, more its savepoints.
    depth: usize,
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client,
            translated: HashMap::new(),
            depth: 0,
        }
    }

    fn sql(&mut self, sql: &str) -> String {
        self.translated
            .entry(sql.to_string())
            .or_insert_with(|| to_postgres(sql))
            .clone()
    }
}

/// `?N` → `$N`, outside quoted text and identifiers.
pub(crate) fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

/// An argument of a statement.
pub(crate) trait Arg {
    fn value(&self) -> Value;
}

impl Arg for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}
impl Arg for usize {
    fn value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl Arg for bool {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Arg for f64 {
    fn value(&self) -> Value {
        Value::Real(*self)
    }
}
impl Arg for str {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Arg for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Arg for Decimal {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Arg for NaiveDate {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Arg for [u8] {
    fn value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}
impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Arg::value)
    }
}

/// The arguments of a statement, in order: `args![a, b, c]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::db::Arg),*] as &[&dyn $crate::db::Arg]
    };
}
pub(crate) use args;

fn lite_value(v: Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as L;
    match v {
        Value::Null => L::Null,
        Value::Int(i) => L::Integer(i),
        Value::Real(f) => L::Real(f),
        Value::Text(s) => L::Text(s),
        Value::Bytes(b) => L::Blob(b),
    }
}

/// A column value as the store reads it.
pub(crate) trait Col: Sized {
    fn from_value(v: Value, column: &'static str) -> Result<Self>;
}

fn corrupt(column: &'static str, v: &Value) -> StoreError {
    StoreError::Corrupt {
        column,
        value: format!("{v:?}"),
    }
}

impl Col for Value {
    fn from_value(v: Value, _: &'static str) -> Result<Value> {
        Ok(v)
    }
}
impl Col for i64 {
    fn from_value(v: Value, column: &'static str) -> Result<i64> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(corrupt(column, &other)),
        }
    }
}
impl Col for bool {
    fn from_value(v: Value, column: &'static str) -> Result<bool> {
        Ok(i64::from_value(v, column)? != 0)
    }
}
impl Col for String {
    fn from_value(v: Value, column: &'static str) -> Result<String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(corrupt(column, &other)),
        }
    }
}
impl<T: Col> Col for Option<T> {
    fn from_value(v: Value, column: &'static str) -> Result<Option<T>> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

/// One row of a result.
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Column `i`; `column` names it in the error when its value has the wrong type.
    pub(crate) fn get<T: Col>(&self, i: usize, column: &'static str) -> Result<T> {
        T::from_value(self.0.get(i).cloned().unwrap_or(Value::Null), column)
    }
}

impl Db<'_> {
    /// Runs one statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        match self {
            Db::Lite(c) => {
                let values: Vec<rusqlite::types::Value> =
                    args.iter().map(|a| lite_value(a.value())).collect();
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(values))?)
            }
            Db::Pg(c) => {
                let mut c = c.borrow_mut();
                let sql = c.sql(sql);
                let values: Vec<Value> = args.iter().map(|a| a.value()).collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v as _).collect();
                Ok(c.client.execute(sql.as_str(), &refs)? as usize)
            }
        }
    }

    /// Every row of a query.
    pub(crate) fn rows(&self, sql: &str, args: &[&dyn Arg]) -> Result<Vec<Row>> {
        match self {
            Db::Lite(c) => {
                let values: Vec<rusqlite::types::Value> =
                    args.iter().map(|a| lite_value(a.value())).collect();
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(values))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(n);
                    for i in 0..n {
                        use rusqlite::types::ValueRef as R;
                        row.push(match r.get_ref(i)? {
                            R::Null => Value::Null,
                            R::Integer(i) => Value::Int(i),
                            R::Real(f) => Value::Real(f),
                            R::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                            R::Blob(b) => Value::Bytes(b.to_vec()),
                        });
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Db::Pg(c) => {
                let mut c = c.borrow_mut();
                let sql = c.sql(sql);
                let values: Vec<Value> = args.iter().map(|a| a.value()).collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v as _).collect();
                let rows = c.client.query(sql.as_str(), &refs)?;
                Ok(rows
                    .iter()
                    .map(|r| Row((0..r.len()).map(|i| r.get::<_, Value>(i)).collect()))
                    .collect())
            }
        }
    }

    /// Runs `f` in a write transaction, committed when it returns `Ok` and rolled
    /// back otherwise (a panic too). Inside another one it is a savepoint: its
    /// failure undoes only its own writes, as on SQLite ([`crate::WriteTx`]).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match self {
            Db::Lite(c) => {
                let tx = super::begin_write(c)?;
                let out = f(&Db::Lite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Db::Pg(cell) => {
                let nested = {
                    let mut c = cell.borrow_mut();
                    let nested = c.depth > 0;
                    c.client.batch_execute(if nested {
                        "SAVEPOINT arrears_write"
                    } else {
                        "BEGIN"
                    })?;
                    c.depth += 1;
                    nested
                };
                let guard = PgWrite {
                    cell,
                    nested,
                    open: true,
                };
                let out = f(self)?;
                guard.finish()?;
                Ok(out)
            }
        }
    }

    /// The first row of a query, if any.
    pub(crate) fn row(&self, sql: &str, args: &[&dyn Arg]) -> Result<Option<Row>> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }
}

/// An open PostgreSQL write transaction: rolled back unless finished.
struct PgWrite<'a> {
    cell: &'a RefCell<PgConn>,
    nested: bool,
    open: bool,
}

impl PgWrite<'_> {
    fn finish(mut self) -> Result<()> {
        self.open = false;
        let mut c = self.cell.borrow_mut();
        c.depth -= 1;
        c.client.batch_execute(if self.nested {
            "RELEASE arrears_write"
        } else {
            "COMMIT"
        })?;
        Ok(())
    }
}

impl Drop for PgWrite<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Ok(mut c) = self.cell.try_borrow_mut() else {
            return;
        };
        c.depth -= 1;
        let sql = if self.nested {
            "ROLLBACK TO arrears_write; RELEASE arrears_write"
        } else {
            "ROLLBACK"
        };
        if let Err(e) = c.client.batch_execute(sql) {
            tracing::error!(error = %e, "rolling back a write transaction");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write commits whole or not at all; a nested one that fails undoes only
    /// its own writes. The same on both databases.
    fn writes_are_all_or_nothing(db: &Db) {
        db.execute("CREATE TABLE t (v TEXT)", args![]).unwrap();
        let count = || -> i64 {
            db.row("SELECT COUNT(*) FROM t", args![])
                .unwrap()
                .unwrap()
                .get(0, "count")
                .unwrap()
        };
        let e = db
            .write(|db| {
                db.execute("INSERT INTO t VALUES (?1)", args!["a"])?;
                Err::<(), _>(StoreError::Invalid("no".into()))
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)));
        assert_eq!(count(), 0, "rolled back");
        db.write(|db| {
            db.execute("INSERT INTO t VALUES (?1)", args!["b"])?;
            let inner = db.write(|db| {
                db.execute("INSERT INTO t VALUES (?1)", args!["c"])?;
                Err::<(), _>(StoreError::Invalid("inner".into()))
            });
            assert!(inner.is_err());
            db.execute("INSERT INTO t VALUES (?1)", args!["d"])?;
            Ok(())
        })
        .unwrap();
        let got: Vec<String> = db
            .rows("SELECT v FROM t ORDER BY v", args![])
            .unwrap()
            .iter()
            .map(|r| r.get(0, "v").unwrap())
            .collect();
        assert_eq!(got, ["b", "d"]);
    }

    #[test]
    fn writes_are_all_or_nothing_on_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        writes_are_all_or_nothing(&Db::Lite(&c));
    }

    #[test]
    fn writes_are_all_or_nothing_on_postgres() {
        let pg = crate::pg::testing::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let s = crate::pg::PgStore::open(&pg.database("books").unwrap()).unwrap();
        writes_are_all_or_nothing(&s.db());
    }

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT '?1', \"a?2\" FROM t WHERE a = ?1 AND b IN (?2, ?10) AND c = '?'"),
            "SELECT '?1', \"a?2\" FROM t WHERE a = $1 AND b IN ($2, $10) AND c = '?'"
        );
    }
}
