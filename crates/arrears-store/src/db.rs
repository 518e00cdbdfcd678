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
//! Every store module is a set of functions over [`Db`], called by
//! [`crate::Store`] on either database, and its tests run on both (`on_both!`).

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::NaiveDate;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rust_decimal::Decimal;

use super::pg::Value;
use super::{Result, StoreError};

/// Up to this many rows, [`Db::many`] writes one statement per row on PostgreSQL
/// as well.
pub(crate) const FEW_ROWS: usize = 8;

/// A connection to one of the two databases.
#[derive(Clone, Copy)]
pub(crate) enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a RefCell<PgConn>),
}

/// A PostgreSQL connection and the statements prepared on it (once each: a
/// statement parsed per call would cost a round trip more every time).
pub(crate) struct PgConn {
    pub(crate) client: crate::pg::Session,
    /// Where to connect again when the connection was lost (it may carry the
    /// password; never shown).
    url: String,
    prepared: HashMap<String, postgres::Statement>,
    /// Open write transactions: 0 none, 1 a transaction, more its savepoints.
    depth: usize,
    /// A statement failed inside the open write: PostgreSQL has aborted the
    /// transaction (unlike SQLite, which undoes only that statement), so it cannot
    /// commit, whatever the code around the statement made of the error.
    failed: bool,
    /// A read snapshot is open ([`Db::read`]): a read inside it reads in it.
    reading: bool,
}

impl PgConn {
    pub(crate) fn new(client: crate::pg::Session, url: String) -> PgConn {
        PgConn {
            client,
            url,
            prepared: HashMap::new(),
            depth: 0,
            reading: false,
            failed: false,
        }
    }

    pub(crate) fn in_write(&self) -> bool {
        self.depth > 0
    }

    /// A statement's result; a failure inside a write marks it failed.
    fn check<T>(&mut self, r: std::result::Result<T, postgres::Error>, sql: &str) -> Result<T> {
        r.map_err(|e| {
            if self.depth > 0 {
                self.failed = true;
            }
            in_statement(e, sql)
        })
    }

    /// A connection found closed (the server restarted, a network cut, the
    /// backend terminated) is opened again before the next statement, outside a
    /// transaction: the call that found it lost failed (UNAVAILABLE), the next
    /// one works. Inside a transaction the loss stands until it ends.
    fn live(&mut self) -> Result<()> {
        if !self.client.is_closed() || self.depth > 0 || self.reading {
            return Ok(());
        }
        let (client, shown) = crate::pg::connect(&self.url, "arrears")?;
        tracing::warn!(db = %shown, "the database connection was lost; connected again");
        self.client = client;
        self.prepared.clear();
        self.failed = false;
        Ok(())
    }

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement> {
        self.live()?;
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let translated = to_postgres(sql);
        let r = self.client.prepare(&translated);
        let st = self.check(r, &translated)?;
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
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

/// An argument of a statement: as PostgreSQL gets it ([`Value`], converted to the
/// column's type there) and as SQLite does (borrowed: a bulk import binds millions).
pub(crate) trait Arg {
    fn value(&self) -> Value;
    fn lite(&self) -> ToSqlOutput<'_>;
}

fn owned(v: rusqlite::types::Value) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(v)
}

impl Arg for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        owned(rusqlite::types::Value::Integer(*self))
    }
}
impl Arg for usize {
    fn value(&self) -> Value {
        Value::Int(*self as i64)
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        owned(rusqlite::types::Value::Integer(*self as i64))
    }
}
impl Arg for bool {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        owned(rusqlite::types::Value::Integer(i64::from(*self)))
    }
}
impl Arg for f64 {
    fn value(&self) -> Value {
        Value::Real(*self)
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        owned(rusqlite::types::Value::Real(*self))
    }
}
impl Arg for str {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(ValueRef::Text(self.as_bytes()))
    }
}
impl Arg for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        self.as_str().lite()
    }
}
impl Arg for Decimal {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        owned(rusqlite::types::Value::Text(self.to_string()))
    }
}
impl Arg for NaiveDate {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        owned(rusqlite::types::Value::Text(self.to_string()))
    }
}
impl Arg for [u8] {
    fn value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(ValueRef::Blob(self))
    }
}
impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        (**self).lite()
    }
}
impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Arg::value)
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        match self {
            Some(v) => v.lite(),
            None => owned(rusqlite::types::Value::Null),
        }
    }
}

impl Arg for Value {
    fn value(&self) -> Value {
        self.clone()
    }
    fn lite(&self) -> ToSqlOutput<'_> {
        use rusqlite::types::Value as L;
        match self {
            Value::Null => owned(L::Null),
            Value::Int(i) => owned(L::Integer(*i)),
            Value::Real(f) => owned(L::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        }
    }
}

/// An argument bound on SQLite.
struct LiteArg<'a>(&'a dyn Arg);

impl rusqlite::ToSql for LiteArg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.0.lite())
    }
}

/// The arguments of a statement, in order: `args![a, b, c]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::db::Arg),*] as &[&dyn $crate::db::Arg]
    };
}
pub(crate) use args;

/// A column value as the store reads it.
pub(crate) trait Col: Sized {
    fn from_value(v: Value, column: &'static str) -> Result<Self>;

    /// From SQLite's borrowed value: no owned value in between for the types a
    /// large read is made of.
    fn from_ref(v: ValueRef<'_>, column: &'static str) -> Result<Self> {
        Self::from_value(owned_value(v), column)
    }
}

fn owned_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
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
    fn from_ref(v: ValueRef<'_>, column: &'static str) -> Result<i64> {
        match v {
            ValueRef::Integer(i) => Ok(i),
            other => Err(corrupt(column, &owned_value(other))),
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
    fn from_ref(v: ValueRef<'_>, column: &'static str) -> Result<String> {
        match v {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(String::from)
                .map_err(|_| corrupt(column, &owned_value(v))),
            other => Err(corrupt(column, &owned_value(other))),
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
    fn from_ref(v: ValueRef<'_>, column: &'static str) -> Result<Option<T>> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_ref(v, column).map(Some),
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

    /// A business day (`YYYY-MM-DD` text on SQLite, DATE on PostgreSQL).
    pub(crate) fn date(&self, i: usize, column: &'static str) -> Result<NaiveDate> {
        crate::date(column, &self.get::<String>(i, column)?)
    }

    /// An exact amount (text on SQLite, NUMERIC on PostgreSQL).
    pub(crate) fn dec(&self, i: usize, column: &'static str) -> Result<Decimal> {
        crate::dec(column, &self.get::<String>(i, column)?)
    }
}

/// A row seen in passing by [`Db::each`]: read in place, nothing copied but what
/// is kept.
pub(crate) enum RowRef<'a, 's> {
    Lite(&'a rusqlite::Row<'s>),
    Pg(&'a postgres::Row),
}

impl RowRef<'_, '_> {
    /// A business day (`YYYY-MM-DD` text on SQLite, DATE on PostgreSQL).
    pub(crate) fn date(&self, i: usize, column: &'static str) -> Result<NaiveDate> {
        crate::date(column, &self.str(i, column)?)
    }

    /// An exact amount (text on SQLite, NUMERIC on PostgreSQL).
    pub(crate) fn dec(&self, i: usize, column: &'static str) -> Result<Decimal> {
        crate::dec(column, &self.str(i, column)?)
    }

    /// A text column without a copy where the database allows (SQLite): the
    /// portfolio load reads millions of dates and amounts only to parse them.
    pub(crate) fn str(&self, i: usize, column: &'static str) -> Result<std::borrow::Cow<'_, str>> {
        match self {
            RowRef::Lite(r) => match r.get_ref(i)? {
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .map(std::borrow::Cow::Borrowed)
                    .map_err(|_| corrupt(column, &owned_value(ValueRef::Text(t)))),
                other => Err(corrupt(column, &owned_value(other))),
            },
            RowRef::Pg(_) => Ok(std::borrow::Cow::Owned(self.get::<String>(i, column)?)),
        }
    }

    /// Column `i`; `column` names it in the error when its value has the wrong type.
    pub(crate) fn get<T: Col>(&self, i: usize, column: &'static str) -> Result<T> {
        match self {
            RowRef::Lite(r) => T::from_ref(r.get_ref(i)?, column),
            RowRef::Pg(r) => T::from_value(
                r.try_get::<_, Value>(i)
                    .map_err(|e| StoreError::Postgres(format!("{column}: {e}")))?,
                column,
            ),
        }
    }
}

impl Db<'_> {
    /// Every row of a query, each handed to `f` in turn: for large reads (a
    /// worklist, the portfolio), where a copy of every row would cost.
    pub(crate) fn each(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut f: impl FnMut(&RowRef) -> Result<()>,
    ) -> Result<()> {
        match self {
            Db::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows =
                    st.query(rusqlite::params_from_iter(args.iter().map(|a| LiteArg(*a))))?;
                while let Some(r) = rows.next()? {
                    f(&RowRef::Lite(r))?;
                }
                Ok(())
            }
            Db::Pg(c) => {
                let st = c.borrow_mut().prepare(sql)?;
                for r in &pg_query(c, &st, sql, args)? {
                    f(&RowRef::Pg(r))?;
                }
                Ok(())
            }
        }
    }

    /// A list of values as one argument, for `IN` ([`Db::in_list`]).
    pub(crate) fn json_list<T: serde::Serialize>(values: &[T]) -> String {
        serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
    }

    /// `IN (…)` over a JSON list passed as parameter `param` (`?N`), its elements
    /// of SQL type `ty` (`BIGINT`, `TEXT`): SQLite's `json_each`, PostgreSQL's
    /// `jsonb_array_elements_text`.
    pub(crate) fn in_list(&self, param: &str, ty: &str) -> String {
        match self {
            Db::Lite(_) => format!("(SELECT value FROM json_each({param}))"),
            Db::Pg(_) => format!(
                "(SELECT CAST(value AS {ty}) FROM jsonb_array_elements_text(CAST(CAST({param} AS TEXT) AS jsonb)) AS j(value))"
            ),
        }
    }

    /// Parameter `param` typed as `ty` where the statement alone does not say
    /// (a value selected into an INSERT): PostgreSQL needs the type to bind it,
    /// SQLite keeps dates and amounts as the text they are.
    pub(crate) fn typed(&self, param: &str, ty: &str) -> String {
        match self {
            Db::Lite(_) => param.to_string(),
            Db::Pg(_) => format!("CAST({param} AS {ty})"),
        }
    }

    /// An amount column as a number to order by: SQLite keeps amounts as text.
    pub(crate) fn number(&self, column: &str) -> String {
        match self {
            Db::Lite(_) => format!("CAST({column} AS REAL)"),
            Db::Pg(_) => column.to_string(),
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        match self {
            Db::Lite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(args.iter().map(|a| LiteArg(*a))))?),
            Db::Pg(c) => {
                let st = c.borrow_mut().prepare(sql)?;
                pg_execute(c, &st, sql, args)
            }
        }
    }

    /// Every row of a query.
    pub(crate) fn rows(&self, sql: &str, args: &[&dyn Arg]) -> Result<Vec<Row>> {
        match self {
            Db::Lite(c) => lite_rows(&mut c.prepare_cached(sql)?, args),
            Db::Pg(c) => {
                let st = c.borrow_mut().prepare(sql)?;
                pg_rows(c, &st, sql, args)
            }
        }
    }

    /// A statement to run many times (a bulk import): prepared once.
    pub(crate) fn prepare<'s>(&'s self, sql: &'s str) -> Result<Stmt<'s>> {
        Ok(match self {
            Db::Lite(c) => Stmt::Lite(c.prepare_cached(sql)?, c),
            Db::Pg(c) => Stmt::Pg {
                st: c.borrow_mut().prepare(sql)?,
                cell: c,
                sql,
            },
        })
    }

    /// An `INSERT` of a table with an `id`, to run with [`Stmt::insert`].
    pub(crate) fn prepare_insert(&self, sql: &str) -> Result<Stmt<'_>> {
        Ok(match self {
            Db::Lite(c) => Stmt::Lite(c.prepare_cached(sql)?, c),
            Db::Pg(c) => {
                let sql = format!("{sql} RETURNING id");
                Stmt::Pg {
                    st: c.borrow_mut().prepare(&sql)?,
                    cell: c,
                    sql: "INSERT … RETURNING id",
                }
            }
        })
    }

    /// Runs `f` in a write transaction, committed when it returns `Ok` and rolled
    /// back otherwise (a panic too). Inside another one it is a savepoint: its
    /// failure undoes only its own writes.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let guard = OpenWrite {
            db: *self,
            begun: Some(self.begin()?),
        };
        let out = f(self)?;
        guard.commit()?;
        Ok(out)
    }

    /// Opens a write transaction, or a savepoint inside one; [`Db::finish`] ends
    /// it. For a caller that cannot keep a borrow of the connection meanwhile
    /// ([`crate::Store::audited`] hands the store itself on); everyone else uses
    /// [`Db::write`].
    pub(crate) fn begin(&self) -> Result<Begun> {
        match self {
            Db::Lite(c) => {
                let nested = !c.is_autocommit();
                if nested {
                    c.execute_batch("SAVEPOINT arrears_write")?;
                } else {
                    super::begin_immediate(c)?;
                }
                Ok(Begun { nested })
            }
            Db::Pg(cell) => {
                let mut c = cell.borrow_mut();
                c.live()?;
                let nested = c.depth > 0;
                // Writers take the change log's head first, as SQLite's BEGIN
                // IMMEDIATE takes its write lock: one writer at a time, so two never
                // wait on each other's rows in opposite orders (deadlock), and the
                // log's numbers follow commit order.
                let begun = c.client.batch_execute(if nested {
                    "SAVEPOINT arrears_write"
                } else {
                    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT seq FROM change_head FOR UPDATE"
                });
                if let Err(e) = begun {
                    if !nested {
                        // The lock wait ran out inside the transaction just begun.
                        let _ = c.client.batch_execute("ROLLBACK");
                    }
                    return Err(e.into());
                }
                c.depth += 1;
                Ok(Begun { nested })
            }
        }
    }

    /// Ends what [`Db::begin`] opened: commits (releases the savepoint) or rolls
    /// back. On PostgreSQL a statement that failed inside makes the commit fail
    /// and roll back: the transaction is aborted whatever the code made of it.
    pub(crate) fn finish(&self, begun: Begun, commit: bool) -> Result<()> {
        let nested = begun.nested;
        match self {
            Db::Lite(c) => Ok(c.execute_batch(end_sql(commit, nested))?),
            Db::Pg(cell) => {
                let Ok(mut c) = cell.try_borrow_mut() else {
                    return Err(StoreError::Postgres(
                        "a write transaction could not be ended: its connection is in use".into(),
                    ));
                };
                if commit && c.failed {
                    drop(c);
                    self.finish(begun, false)?;
                    return Err(StoreError::Postgres(
                        "a statement failed inside this write; nothing of it was written".into(),
                    ));
                }
                c.depth -= 1;
                let r = c.client.batch_execute(end_sql(commit, nested));
                if !commit && r.is_ok() {
                    // Rolled back to the savepoint (or out of the transaction): what
                    // is around it can go on.
                    c.failed = false;
                }
                if c.depth == 0 {
                    c.failed = false;
                }
                Ok(r?)
            }
        }
    }

    /// Runs `f` on one snapshot of the database: reads that belong together
    /// (the change log's head and the entries up to it) see the same commits.
    /// Inside a write it is that write's view.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match self {
            Db::Lite(c) => {
                if !c.is_autocommit() {
                    return f(self);
                }
                // Deferred: the snapshot is taken at the first read.
                let tx = c.unchecked_transaction()?;
                let out = f(self)?;
                tx.commit()?;
                Ok(out)
            }
            Db::Pg(cell) => {
                if cell.borrow().depth > 0 || cell.borrow().reading {
                    return f(self);
                }
                cell.borrow_mut().live()?;
                cell.borrow_mut()
                    .client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
                cell.borrow_mut().reading = true;
                // A panic in `f` (the run thread survives one) must not leave the
                // snapshot open: every later read would see it, frozen.
                struct Reading<'a>(&'a RefCell<PgConn>);
                impl Drop for Reading<'_> {
                    fn drop(&mut self) {
                        if let Ok(mut c) = self.0.try_borrow_mut() {
                            if c.reading {
                                c.reading = false;
                                let _ = c.client.batch_execute("ROLLBACK");
                            }
                        }
                    }
                }
                let guard = Reading(cell);
                let out = f(self);
                cell.borrow_mut().reading = false;
                drop(guard);
                let end = cell.borrow_mut().client.batch_execute(match out {
                    Ok(_) => "COMMIT",
                    Err(_) => "ROLLBACK",
                });
                let out = out?;
                end?;
                Ok(out)
            }
        }
    }

    /// Many rows written by one statement each: `row_sql` (numbered arguments in
    /// the order of `rows`' values) once per row on SQLite, where a prepared
    /// statement costs microseconds. On PostgreSQL every statement is a round trip
    /// (≈ 70 µs here, 14 s for a back-fill's 194,000 cases), so the rows go into
    /// a temporary table `bulk` shaped like `like`'s `columns` with one binary
    /// COPY, and `then` (SQL over `bulk`) writes them all at once.
    ///
    /// Up to [`FEW_ROWS`] rows go one statement each on PostgreSQL too, so both
    /// forms must write the same (the tests run either on some steps).
    pub(crate) fn many(
        &self,
        row_sql: &str,
        like: &str,
        columns: &[&str],
        then: &str,
        rows: &[Vec<Value>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // On PostgreSQL a temporary table costs four round trips and catalog
        // work: for a handful of rows (a payment's run writes one or two per
        // step) one prepared statement per row is quicker there too.
        let per_row = match self {
            Db::Lite(_) => true,
            Db::Pg(_) => rows.len() <= FEW_ROWS && !row_sql.is_empty(),
        };
        if !per_row {
            return self.with_bulk(like, columns, rows, |db| db.execute(then, &[]).map(drop));
        }
        let mut st = self.prepare(row_sql)?;
        for r in rows {
            let args: Vec<&dyn Arg> = r.iter().map(|v| v as &dyn Arg).collect();
            st.execute(&args)?;
        }
        Ok(())
    }

    /// PostgreSQL: `rows` in a temporary table `bulk` shaped like `like`'s
    /// `columns` (one binary COPY), for `f` to read or write from; dropped after.
    pub(crate) fn with_bulk<T>(
        &self,
        like: &str,
        columns: &[&str],
        rows: &[Vec<Value>],
        f: impl FnOnce(&Db) -> Result<T>,
    ) -> Result<T> {
        let Db::Pg(cell) = self else {
            return Err(StoreError::Invalid("a bulk table is PostgreSQL's".into()));
        };
        let cols = columns.join(", ");
        self.batch_pg(&format!(
            "DROP TABLE IF EXISTS bulk; CREATE TEMP TABLE bulk AS SELECT {cols} FROM {like} WITH NO DATA"
        ))?;
        // Not from the statement cache: `bulk` is a new table each time.
        let types: Vec<postgres::types::Type> = {
            let mut c = cell.borrow_mut();
            let r = c.client.prepare(&format!("SELECT {cols} FROM bulk"));
            let st = c.check(r, "SELECT … FROM bulk")?;
            st.columns().iter().map(|c| c.type_().clone()).collect()
        };
        {
            let mut c = cell.borrow_mut();
            let r = (|| {
                let w = c
                    .client
                    .copy_in(&format!("COPY bulk ({cols}) FROM STDIN (FORMAT binary)"))?;
                let mut w = postgres::binary_copy::BinaryCopyInWriter::new(w, &types);
                for r in rows {
                    let vals: Vec<&(dyn postgres::types::ToSql + Sync)> =
                        r.iter().map(|v| v as _).collect();
                    w.write(&vals)?;
                }
                w.finish()
            })();
            c.check(r, "COPY bulk")?;
        }
        let out = f(self)?;
        self.batch_pg("DROP TABLE bulk")?;
        Ok(out)
    }

    /// `n` new ids of `table` on PostgreSQL (its identity's next values), for rows
    /// written with [`Db::many`] whose ids the caller needs; `None` on SQLite,
    /// whose inserts report their ids one by one.
    pub(crate) fn next_ids(&self, table: &str, n: usize) -> Result<Option<Vec<i64>>> {
        match self {
            Db::Lite(_) => Ok(None),
            Db::Pg(_) => self
                .rows(
                    &format!(
                        "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, ?1)"
                    ),
                    args![n],
                )?
                .iter()
                .map(|r| r.get(0, "id"))
                .collect::<Result<Vec<i64>>>()
                .map(Some),
        }
    }

    /// Statements without arguments on PostgreSQL, inside the current write.
    fn batch_pg(&self, sql: &str) -> Result<()> {
        if let Db::Pg(cell) = self {
            let mut c = cell.borrow_mut();
            let r = c.client.batch_execute(sql);
            c.check(r, sql)?;
        }
        Ok(())
    }

    /// Wakes the other replicas' change listeners when this write commits (a run
    /// written: followers read its worklists). Nothing to do on SQLite, where the
    /// daemon watches its file.
    pub(crate) fn notify_changes(&self) -> Result<()> {
        if let Db::Pg(_) = self {
            self.execute("SELECT pg_notify('arrears_changes', '')", args![])?;
        }
        Ok(())
    }

    /// The change log's newest number, even after its entries were pruned.
    pub(crate) fn change_seq(&self) -> &'static str {
        match self {
            Db::Lite(_) => crate::run_io::CHANGE_SEQ,
            Db::Pg(_) => "(SELECT seq FROM change_head)",
        }
    }

    /// Several statements, no arguments (a test's fixture).
    #[cfg(test)]
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Lite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(c) => Ok(c.borrow_mut().client.batch_execute(sql)?),
        }
    }

    /// The first row of a query, if any.
    pub(crate) fn row(&self, sql: &str, args: &[&dyn Arg]) -> Result<Option<Row>> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }
}

fn pg_execute(
    c: &RefCell<PgConn>,
    st: &postgres::Statement,
    sql: &str,
    args: &[&dyn Arg],
) -> Result<usize> {
    let values: Vec<Value> = args.iter().map(|a| a.value()).collect();
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|v| v as _).collect();
    let mut c = c.borrow_mut();
    let r = c.client.execute(st, &refs);
    Ok(c.check(r, sql)? as usize)
}

fn pg_query(
    c: &RefCell<PgConn>,
    st: &postgres::Statement,
    sql: &str,
    args: &[&dyn Arg],
) -> Result<Vec<postgres::Row>> {
    let values: Vec<Value> = args.iter().map(|a| a.value()).collect();
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|v| v as _).collect();
    let mut c = c.borrow_mut();
    let r = c.client.query(st, &refs);
    c.check(r, sql)
}

fn pg_rows(
    c: &RefCell<PgConn>,
    st: &postgres::Statement,
    sql: &str,
    args: &[&dyn Arg],
) -> Result<Vec<Row>> {
    pg_query(c, st, sql, args)?
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<_, Value>(i).map_err(|e| {
                        let cause = std::error::Error::source(&e)
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default();
                        StoreError::Postgres(format!(
                            "column {i} ({}) of `{}`: {e}{cause}",
                            r.columns()[i].type_(),
                            sql.split_whitespace()
                                .take(12)
                                .collect::<Vec<_>>()
                                .join(" ")
                        ))
                    })
                })
                .collect::<Result<Vec<Value>>>()
                .map(Row)
        })
        .collect()
}

fn lite_rows(st: &mut rusqlite::CachedStatement<'_>, args: &[&dyn Arg]) -> Result<Vec<Row>> {
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(args.iter().map(|a| LiteArg(*a))))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(owned_value(r.get_ref(i)?));
        }
        out.push(Row(row));
    }
    Ok(out)
}

/// A prepared statement, run as often as needed.
pub(crate) enum Stmt<'a> {
    Lite(rusqlite::CachedStatement<'a>, &'a rusqlite::Connection),
    Pg {
        cell: &'a RefCell<PgConn>,
        st: postgres::Statement,
        sql: &'a str,
    },
}

impl Stmt<'_> {
    pub(crate) fn execute(&mut self, args: &[&dyn Arg]) -> Result<usize> {
        match self {
            Stmt::Lite(st, _) => {
                Ok(st.execute(rusqlite::params_from_iter(args.iter().map(|a| LiteArg(*a))))?)
            }
            Stmt::Pg { cell, st, sql } => pg_execute(cell, st, sql, args),
        }
    }

    /// Runs an insert prepared with [`Db::prepare_insert`]: the new row's id, or
    /// `None` when it inserted nothing (`ON CONFLICT DO NOTHING`).
    pub(crate) fn insert(&mut self, args: &[&dyn Arg]) -> Result<Option<i64>> {
        match self {
            // SQLite's RETURNING buffers its rows: the last row id is cheaper, and a
            // bulk import inserts a million.
            Stmt::Lite(..) => Ok((self.execute(args)? == 1).then(|| match self {
                Stmt::Lite(_, c) => c.last_insert_rowid(),
                Stmt::Pg { .. } => unreachable!(),
            })),
            Stmt::Pg { .. } => self.row(args)?.map(|r| r.get(0, "id")).transpose(),
        }
    }

    /// The first row, if any.
    pub(crate) fn row(&mut self, args: &[&dyn Arg]) -> Result<Option<Row>> {
        Ok(match self {
            Stmt::Lite(st, _) => lite_rows(st, args)?,
            Stmt::Pg { cell, st, sql } => pg_rows(cell, st, sql, args)?,
        }
        .into_iter()
        .next())
    }
}

/// A PostgreSQL error, with the statement it came from (its start).
fn in_statement(e: postgres::Error, sql: &str) -> StoreError {
    match StoreError::from(e) {
        StoreError::Postgres(m) => {
            let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            let head: String = head.chars().take(120).collect();
            StoreError::Postgres(format!("{m} in `{head}…`"))
        }
        other => other,
    }
}

/// What ends a write [`Db::begin`] opened, on either database.
fn end_sql(commit: bool, nested: bool) -> &'static str {
    match (commit, nested) {
        (true, true) => "RELEASE arrears_write",
        (true, false) => "COMMIT",
        (false, true) => "ROLLBACK TO arrears_write; RELEASE arrears_write",
        (false, false) => "ROLLBACK",
    }
}

/// What [`Db::begin`] opened.
#[must_use = "a write is ended with Db::finish"]
pub(crate) struct Begun {
    nested: bool,
}

/// A write of [`Db::write`]: rolled back unless committed (an error returned
/// early, a panic).
struct OpenWrite<'a> {
    db: Db<'a>,
    begun: Option<Begun>,
}

impl OpenWrite<'_> {
    fn commit(mut self) -> Result<()> {
        let begun = self.begun.take().expect("open");
        self.db.finish(begun, true)
    }
}

impl Drop for OpenWrite<'_> {
    fn drop(&mut self) {
        if let Some(begun) = self.begun.take() {
            if let Err(e) = self.db.finish(begun, false) {
                tracing::error!(error = %e, "rolling back a write transaction");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that panicked (the run thread survives a panicking run) leaves no
    /// snapshot open: the next read sees what was committed since.
    #[test]
    fn a_panic_inside_a_read_leaves_no_snapshot_open() {
        let url = crate::pg::testing::PgCluster::shared().fresh_database();
        let s = crate::Store::open_postgres(&url).unwrap();
        let other = crate::Store::open_postgres(&url).unwrap();
        let count = |s: &crate::Store| -> i64 {
            s.db()
                .read(|db| {
                    db.row("SELECT COUNT(*) FROM customers", args![])?
                        .expect("a row")
                        .get(0, "count")
                })
                .unwrap()
        };
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.db().read(|db| -> Result<()> {
                db.row("SELECT 1", args![])?;
                panic!("a bug inside a read")
            })
        }));
        assert!(panicked.is_err());
        other
            .write_stmt(
                "INSERT INTO customers(company, code, name) VALUES ('C', 'X', 'x')",
                args![],
            )
            .unwrap();
        assert_eq!(count(&s), 1);
    }

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

    /// On PostgreSQL a failed statement aborts the transaction: a write whose code
    /// swallowed such an error must not report success, and a savepoint that
    /// failed leaves the write around it usable.
    #[test]
    fn a_swallowed_statement_error_never_commits_on_postgres() {
        let pg = crate::pg::testing::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let s = crate::Store::open_postgres(&pg.database("books").unwrap()).unwrap();
        let db = s.db();
        db.execute("CREATE TABLE t (v TEXT PRIMARY KEY)", args![])
            .unwrap();
        let e = db
            .write(|db| {
                db.execute("INSERT INTO t VALUES (?1)", args!["a"])?;
                let dup = db.execute("INSERT INTO t VALUES (?1)", args!["a"]);
                assert!(dup.is_err());
                Ok(())
            })
            .unwrap_err();
        assert!(e.to_string().contains("nothing of it was written"), "{e}");
        db.write(|db| {
            db.execute("INSERT INTO t VALUES (?1)", args!["b"])?;
            let inner = db.write(|db| {
                db.execute("INSERT INTO t VALUES (?1)", args!["b"])?;
                Ok(())
            });
            assert!(inner.is_err(), "the duplicate fails");
            db.execute("INSERT INTO t VALUES (?1)", args!["c"])?;
            Ok(())
        })
        .unwrap();
        let got: Vec<String> = db
            .rows("SELECT v FROM t ORDER BY v", args![])
            .unwrap()
            .iter()
            .map(|r| r.get(0, "v").unwrap())
            .collect();
        assert_eq!(got, ["b", "c"]);
    }

    #[test]
    fn writes_are_all_or_nothing_on_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        writes_are_all_or_nothing(&Db::Lite(&c));
    }

    #[test]
    fn writes_are_all_or_nothing_on_postgres() {
        let pg = crate::pg::testing::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let s = crate::Store::open_postgres(&pg.database("books").unwrap()).unwrap();
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
