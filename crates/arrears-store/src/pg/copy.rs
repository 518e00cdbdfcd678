//! `arrears migrate`: an SQLite store copied whole into an empty PostgreSQL one,
//! for users who started embedded and grew.
//!
//! Lossless: every row of every table with its id, in one transaction (the target
//! is either the whole copy or untouched), amounts and dates converted to NUMERIC
//! and DATE and checked on the way ([`super::Value`] refuses text that is not an
//! exact decimal or a date, naming it). Afterwards each table's row count is
//! compared, the change log's head and every id sequence are moved past the copied
//! rows, and the audit chain is verified on the copy: its records hash the same on
//! both databases, so a chain that verified before verifies after.

use crate::db::{Arg, Db};
use crate::pg::Value;
use crate::{AuditVerdict, Result, Store, StoreError};

/// Every table of the store, parents before the tables that refer to them (the
/// PostgreSQL schema's order); `schema_version` and `change_head` are
/// PostgreSQL's own.
pub const TABLES: &[&str] = &[
    "customers",
    "items",
    "payments",
    "cases",
    "case_events",
    "promises",
    "disputes",
    "dispute_items",
    "holds",
    "resubmissions",
    "customer_state",
    "worklist",
    "escalations",
    "customer_events",
    "runs",
    "audit",
    "statement_files",
    "statements",
    "statement_credits",
    "credit_allocations",
    "connector_state",
    "bureau_scores",
    "bureau_listings",
    "promise_items",
    "agreements",
    "agreement_items",
    "agreement_installments",
    "documents",
    "messages",
    "fees",
    "promise_payments",
    "changes",
    "item_history",
    "write_offs",
];

/// Rows per COPY: few round trips, bounded memory for a table of millions.
const BATCH: usize = 20_000;

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// (table, rows copied), in copy order; the counts were checked on both sides.
    pub tables: Vec<(String, u64)>,
    pub rows: u64,
    /// The audit chain verified on the copy.
    pub audit: AuditVerdict,
}

/// Copies `from` (SQLite) into `to` (PostgreSQL, empty), and checks the copy.
/// `progress` hears of each table as it is done.
pub fn copy(from: &Store, to: &Store, progress: &dyn Fn(&str, u64)) -> Result<CopyReport> {
    let src = from.conn()?;
    if !to.is_postgres() {
        return Err(StoreError::Invalid(
            "the target of a copy is a PostgreSQL database (postgres://…)".into(),
        ));
    }
    let db = to.db();
    for t in TABLES {
        let n: i64 = db
            .row(&format!("SELECT COUNT(*) FROM {t}"), &[])?
            .expect("a row")
            .get(0, "count")?;
        if n > 0 {
            return Err(StoreError::State(format!(
                "the target database is not empty ({t} has {n} rows); copy into a new, empty database"
            )));
        }
    }
    // One snapshot of the source: a writer meanwhile cannot tear the copy.
    let snapshot = src.unchecked_transaction()?;
    let expected = from.verify_audit(None)?;
    let mut report = CopyReport::default();
    db.write(|db| {
        let Db::Pg(cell) = db else { unreachable!() };
        // The triggers refuse what a copy must do (write the append-only tables
        // as they are, number the change log as the source did); foreign keys
        // and every other constraint stay checked.
        for t in TABLES {
            cell.borrow_mut()
                .client
                .batch_execute(&format!("ALTER TABLE {t} DISABLE TRIGGER USER"))?;
        }
        for t in TABLES {
            let n = copy_table(&snapshot, db, t)?;
            progress(t, n);
            report.tables.push((t.to_string(), n));
            report.rows += n;
        }
        for t in TABLES {
            cell.borrow_mut()
                .client
                .batch_execute(&format!("ALTER TABLE {t} ENABLE TRIGGER USER"))?;
        }
        // Ids continue after the copied ones.
        for t in TABLES {
            let has_identity: bool = db
                .row(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                        WHERE table_schema = current_schema() AND table_name = ?1
                          AND column_name = 'id' AND is_identity = 'YES')",
                    &[&t.to_string() as &dyn Arg],
                )?
                .expect("a row")
                .get(0, "identity")?;
            if has_identity {
                db.row(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {t}"
                    ),
                    &[],
                )?;
            }
        }
        // The change log's head where the source's was, even past pruned entries:
        // what a run has seen stays comparable.
        let head: i64 = snapshot.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
            [],
            |r| r.get(0),
        )?;
        db.execute("UPDATE change_head SET seq = ?1", &[&head as &dyn Arg])?;
        // Counted again on both sides inside the copy's transaction.
        for (t, n) in &report.tables {
            let there: i64 = db
                .row(&format!("SELECT COUNT(*) FROM {t}"), &[])?
                .expect("a row")
                .get(0, "count")?;
            if there as u64 != *n {
                return Err(StoreError::State(format!(
                    "{t}: {n} rows read, {there} in the copy; nothing was written"
                )));
            }
        }
        // The planner's statistics: without them the first queries on millions
        // of fresh rows plan as if the tables were empty (a follower's read of
        // one changed customer took 300 ms instead of 1 until autovacuum came by).
        for t in TABLES {
            db.execute(&format!("ANALYZE {t}"), &[])?;
        }
        // The chain verified on the copy, before it commits: its records hash as
        // they did in the source, so the verdict must be the source's.
        report.audit = to.verify_audit(None)?;
        if report.audit.records != expected.records || report.audit.problem != expected.problem {
            return Err(StoreError::Audit(format!(
                "the audit chain reads differently in the copy ({} records, {:?}) than in the source \
                 ({} records, {:?}); nothing was written",
                report.audit.records, report.audit.problem, expected.records, expected.problem
            )));
        }
        Ok(())
    })?;
    drop(snapshot);
    Ok(report)
}

/// Copies one table's rows in id order (rowid order for the few without one).
fn copy_table(src: &rusqlite::Connection, db: &Db, table: &str) -> Result<u64> {
    let mut st = src.prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))?;
    let columns: Vec<String> = st.column_names().iter().map(|c| c.to_string()).collect();
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let into = format!(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM bulk",
        cols = names.join(", ")
    );
    // Binary COPY through the same bulk path a run's writes take (`Db::many`).
    let flush = |batch: &mut Vec<Vec<Value>>| -> Result<()> {
        db.many("", table, &names, &into, batch)
            .map_err(|e| StoreError::Invalid(format!("copying {table}: {e}")))?;
        batch.clear();
        Ok(())
    };
    let mut rows = st.query([])?;
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            row.push(match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                rusqlite::types::ValueRef::Real(v) => Value::Real(v),
                // Lossless or not at all: PostgreSQL text must be UTF-8.
                rusqlite::types::ValueRef::Text(t) => {
                    Value::Text(String::from_utf8(t.to_vec()).map_err(|_| {
                        StoreError::Invalid(format!(
                            "{table}, row {}: column {} is not UTF-8 text; nothing was written",
                            n + 1,
                            column
                        ))
                    })?)
                }
                rusqlite::types::ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            });
        }
        batch.push(row);
        n += 1;
        if batch.len() >= BATCH {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy leaves the planner statistics of what it wrote: without them the
    /// first queries on a large copy planned as if its tables were empty.
    #[test]
    fn a_copy_is_analysed() {
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Store::open(&dir.path().join("a.db")).unwrap();
        let items: Vec<_> = (0..30)
            .map(|n| crate::ingest::tests::item(&n.to_string(), rust_decimal::Decimal::TEN))
            .collect();
        lite.ingest(&arrears_core::domain::Batch {
            items,
            ..Default::default()
        })
        .unwrap();
        let mut pg = crate::pg::testing::store();
        copy(&lite, &pg, &|_, _| {}).unwrap();
        // -1: never analysed (PostgreSQL 14 on).
        let rows: f32 = pg
            .pg_client()
            .query_one(
                "SELECT reltuples FROM pg_class WHERE relname = 'items'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(rows, 30.0);
    }
}
