//! The store, on SQLite (the embedded default) or PostgreSQL ([`pg`]): schema
//! migrations, idempotent ingest, case operations and the loading/writing a
//! portfolio run needs, each written once over [`db::Db`].
//!
//! Every public write runs in one transaction: a batch lands whole or not at all.

mod access;
mod agreements;
mod audit;
mod bureau;
mod cases;
mod connector_state;
mod customer;
mod db;
mod demo_support;
mod history;
mod ingest;
mod kpi_scan;
mod outbox;
pub mod pg;
mod report_facts;
mod run_io;
mod statements;
mod traits;
mod worklist;
mod writeoffs;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rusqlite::Connection;

/// The SQLite driver, for tests that read or plant rows directly (`testing` only).
#[cfg(feature = "testing")]
pub use rusqlite;
use rust_decimal::Decimal;

pub use access::Owner;
pub use agreements::{
    AgreementItem, AgreementView, DocumentView, Proposal, ScheduleLine, SettleStats, Terms,
    TERMS_MISSING,
};
pub use audit::{
    AuditConfig, AuditProblem, AuditRecord, AuditSetup, AuditSetupError, AuditVerdict,
    RetiredKeyConfig,
};
pub use bureau::*;
pub use cases::{CaseDetail, CaseEvent};
pub use connector_state::{Health, SyncOutcome};
pub use customer::{
    AgeingBucket, ContactView, CustomerView, DisputeAgeing, DisputeView, ItemView, JudgeStats,
    NewPromise, PaymentView, PromiseView, DISPUTE_RESOLUTIONS, VIEW_LIMIT,
};
pub use demo_support::*;
pub use history::{Clearing, HistoryEntry};
pub use ingest::IngestStats;
pub use kpi_scan::{Completions, CurrencyFigures, KpiFigures, KpiScan, WorklistLoad};
pub use outbox::{
    ContactProfile, ContactUpdate, DeliveredStep, Fee, LetterItem, MessageView, NewMessage,
    OutboxPass, StepToSend,
};
pub use report_facts::{
    open_on, CaseFact, ContactFact, CustomerDims, ItemLife, OpenItemFact, PaymentFact, PromiseFact,
    PromiseLife, StateChange,
};
pub use run_io::*;
pub use statements::{
    Allocation, CreditOutcome, CreditStatus, CreditView, ImportReport, MatchOptions, Resolution,
};
pub use traits::{
    AgreementStore, AuditLog, CaseStore, ChangeFeed, DisputeStore, OutboxStore, PortfolioStore,
    PromiseStore, ReachLookup, StatementStore, WriteOffStore,
};
pub use worklist::{WorklistEntry, WorklistQuery, WorklistScope, WorklistSince};
pub use writeoffs::{Proposer, WriteOffTerms, WriteOffView, WRITE_OFF_TERMS_MISSING};

/// Migrations in order; the database's `user_version` is how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
    include_str!("schema_v10.sql"),
    include_str!("schema_v11.sql"),
    include_str!("schema_v12.sql"),
    include_str!("schema_v13.sql"),
    include_str!("schema_v14.sql"),
    include_str!("schema_v15.sql"),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} has schema version {found}, newer than this build understands ({supported}); upgrade arrears")]
    NewerSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// Another connection (a run, an import in another process) kept the write lock
    /// longer than a write waits for it. Nothing was written; trying again is safe.
    #[error("the database stayed busy for {waited_secs} s (another process is writing to it); nothing was changed, try again")]
    Busy { waited_secs: u64 },
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// The request itself is wrong (a bad value, an amount out of range).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request is fine but the record is not in a state that allows it (a closed
    /// case, an already resolved dispute).
    #[error("{0}")]
    State(String),
    /// The principal may not do this (e.g. approve their own proposal).
    #[error("{0}")]
    Denied(String),
    /// An audit record cannot be written or checked (a keyed log and no key, a wrong
    /// key, an unreadable anchor); nothing was written.
    #[error("{0}")]
    Audit(String),
    #[error("corrupt value in column {column}: `{value}`")]
    Corrupt { column: &'static str, value: String },
    /// The database server cannot be reached (or the connection was lost); what was
    /// committed before stays, trying again later is safe.
    #[error("cannot reach the database {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("postgres: {0}")]
    Postgres(String),
    /// Something only SQLite has, called on a PostgreSQL store (a mistake in the
    /// code: the error names where).
    #[error("this operation is SQLite's, not available on PostgreSQL ({0})")]
    NotOnPostgres(String),
}

impl StoreError {
    pub fn kind(&self) -> arrears_core::error::ErrorKind {
        use arrears_core::error::ErrorKind as K;
        match self {
            StoreError::NotFound(_) => K::NotFound,
            StoreError::Invalid(_) => K::Invalid,
            StoreError::State(_) => K::State,
            StoreError::Denied(_) => K::Denied,
            StoreError::Busy { .. } | StoreError::Unreachable { .. } => K::Busy,
            StoreError::Audit(_) => K::Audit,
            StoreError::NewerSchema { .. }
            | StoreError::Sqlite(_)
            | StoreError::Postgres(_)
            | StoreError::NotOnPostgres(_)
            | StoreError::Io { .. }
            | StoreError::Corrupt { .. } => K::Internal,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        // The busy handler already waited BUSY_TIMEOUT; the caller gets the reason in
        // words, not SQLite's "database is locked".
        if is_busy(&e) {
            StoreError::Busy {
                waited_secs: BUSY_TIMEOUT.as_secs(),
            }
        } else {
            StoreError::Sqlite(e)
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long one statement waits for a lock another connection holds (SQLite's busy
/// handler).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write transaction keeps trying to start while another connection
/// writes. A run or a large import holds the write lock for seconds; an import from
/// another process waits for it instead of failing.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// `BEGIN IMMEDIATE`, retried while another connection holds the write lock, up to
/// [`LOCK_WAIT`]: every SQLite write starts so ([`db::Db::begin`]). It takes the
/// write lock before its first read. A deferred transaction that reads and then
/// writes cannot wait for the lock (SQLite returns SQLITE_BUSY at once rather than
/// deadlock, or SQLITE_BUSY_SNAPSHOT when another connection committed after the
/// read), so every write that reads first would fail under load instead of
/// waiting.
pub(crate) fn begin_immediate(conn: &Connection) -> Result<()> {
    let started = Instant::now();
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e) if is_busy(&e) => {
                let waited = started.elapsed();
                if waited >= LOCK_WAIT {
                    return Err(StoreError::Busy {
                        waited_secs: waited.as_secs(),
                    });
                }
                tracing::warn!(
                    waited_secs = waited.as_secs(),
                    "another process is writing to the database; waiting for it"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The database a store speaks to.
enum Backend {
    /// The embedded default: one file.
    Lite(Connection),
    /// A PostgreSQL server ([`pg`]): several daemons can share it.
    /// Boxed: its client and statement cache are large, and stores move.
    Pg(Box<pg::PgBackend>),
}

pub struct Store {
    backend: Backend,
    /// Where the database is, as it may be shown: a file's path, or a URL without
    /// its password.
    location: String,
    /// The store's change counter as a portfolio load found it; the run writing its
    /// results records it, so that only later changes call for another run.
    changes_at_load: std::cell::Cell<Option<i64>>,
    /// Keys and anchor of the audit log; none until [`Store::set_audit`].
    audit: std::sync::Arc<audit::AuditSetup>,
    /// What stamps records with the time they were written (audit, runs, imports).
    clock: std::sync::Arc<dyn arrears_core::clock::Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Whether `at` names a PostgreSQL database (a `postgres://` or `postgresql://`
/// URL) rather than an SQLite file.
pub fn is_postgres_url(at: &str) -> bool {
    at.starts_with("postgres://") || at.starts_with("postgresql://")
}

/// Where `at` is, as it may be shown in logs and errors: a URL without its password.
pub fn shown_location(at: &str) -> String {
    if is_postgres_url(at) {
        pg::redact(at)
    } else {
        at.strip_prefix("sqlite:").unwrap_or(at).to_string()
    }
}

impl Store {
    /// Opens the database `at` names: a `postgres://` (or `postgresql://`) URL, or
    /// an SQLite file, as a path or `sqlite:PATH`.
    pub fn open_at(at: &str) -> Result<Store> {
        if is_postgres_url(at) {
            Store::open_postgres(at)
        } else {
            Store::open(Path::new(at.strip_prefix("sqlite:").unwrap_or(at)))
        }
    }

    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // First, so that switching to WAL and migrating wait for another process
        // opening the same file rather than fail.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers (API, CLI) proceed during a run; NORMAL sync is durable at checkpoints
        // and safe against corruption, which is the usual trade-off for WAL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A run touches every item and case: the default 2 MB page cache thrashes on the
        // indexes at a million rows. (mmap was tried too: no faster, and it pushes RSS past 1 GiB.)
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let mut store = Store {
            backend: Backend::Lite(conn),
            location: path.display().to_string(),
            changes_at_load: std::cell::Cell::new(None),
            audit: Default::default(),
            clock: std::sync::Arc::new(arrears_core::clock::SystemClock),
        };
        store.migrate(&path.display().to_string(), MIGRATIONS)?;
        Ok(store)
    }

    fn migrate(&mut self, path: &str, migrations: &[&str]) -> Result<()> {
        let supported = migrations.len() as i64;
        let found: i64 = self
            .conn()?
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > supported {
            return Err(StoreError::NewerSchema {
                path: path.into(),
                found,
                supported,
            });
        }
        // Each migration commits together with its version bump, so a failure leaves
        // the database at the last complete version. The version is read again under
        // the write lock: another process opening the file may have migrated it.
        for (i, m) in migrations.iter().enumerate().skip(found as usize) {
            let applied = self.db().write(|_| {
                let c = self.conn()?;
                let now: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
                if now > i as i64 {
                    return Ok(false);
                }
                c.execute_batch(m)?;
                c.pragma_update(None, "user_version", (i + 1) as i64)?;
                Ok(true)
            })?;
            if applied {
                tracing::info!(version = i + 1, "applied schema migration");
            }
        }
        Ok(())
    }

    /// One statement in its own write transaction, on either database: it waits
    /// for the write lock as long as any write does, where a bare statement gives
    /// up after the busy timeout while a run holds the lock.
    pub(crate) fn write_stmt(&self, sql: &str, args: &[&dyn db::Arg]) -> Result<usize> {
        self.db().write(|db| db.execute(sql, args))
    }

    pub fn schema_version(&self) -> Result<i64> {
        match &self.backend {
            Backend::Lite(c) => Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?),
            Backend::Pg(_) => pg::schema_version(&self.db()),
        }
    }

    /// Where the database is: a file's path, or a URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether this store is on PostgreSQL (several daemons may share it).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// The SQLite connection, for what only SQLite has (its migrations, the
    /// outbox's lock file, the KPI pass's extra read connections) and for tests; on
    /// PostgreSQL a call is refused, naming where it is.
    #[track_caller]
    pub(crate) fn conn(&self) -> Result<&Connection> {
        match &self.backend {
            Backend::Lite(c) => Ok(c),
            Backend::Pg(_) => Err(StoreError::NotOnPostgres(
                std::panic::Location::caller().to_string(),
            )),
        }
    }

    /// Whether a write transaction is open on this store's connection.
    pub(crate) fn in_write(&self) -> bool {
        match &self.backend {
            Backend::Lite(c) => !c.is_autocommit(),
            Backend::Pg(b) => b.conn.borrow().in_write(),
        }
    }

    /// This store's database, for the operations written once for both ([`db`]).
    pub(crate) fn db(&self) -> db::Db<'_> {
        match &self.backend {
            Backend::Lite(c) => db::Db::Lite(c),
            Backend::Pg(b) => db::Db::Pg(&b.conn),
        }
    }

    /// A connection that serves short reads (API pages, the change poller): a
    /// small page cache, the operating system's file cache behind it. Each of the
    /// daemon's connections warmed up to the run's 64 MiB over days of KPI passes
    /// and pages, half a gigabyte with its read pool.
    pub fn for_short_reads(self) -> Result<Store> {
        if let Backend::Lite(c) = &self.backend {
            c.pragma_update(None, "cache_size", -4_096)?;
        }
        Ok(self)
    }

    /// The raw connection, for tests that must plant what no public write can (a
    /// corrupt row, an old schema, a tampered audit record). Only with the `testing`
    /// feature, which production builds never turn on: outside this crate the store
    /// is its methods, so a second backend can replace it.
    #[cfg(feature = "testing")]
    pub fn test_connection(&self) -> &Connection {
        self.conn().expect("an SQLite store")
    }

    pub fn customer_id(&self, key: &str) -> Result<i64> {
        access::customer_id(&self.db(), key)
    }

    pub fn last_run(&self) -> Result<Option<(i64, NaiveDate, String)>> {
        self.db()
            .row(
                "SELECT id, as_of, rules_hash FROM runs ORDER BY id DESC LIMIT 1",
                db::args![],
            )?
            .map(|r| {
                Ok((
                    r.get(0, "runs.id")?,
                    parse_date_or_epoch(&r.get::<String>(1, "runs.as_of")?),
                    r.get(2, "runs.rules_hash")?,
                ))
            })
            .transpose()
    }
}

pub fn dec(column: &'static str, s: &str) -> Result<Decimal> {
    s.parse().map_err(|_| StoreError::Corrupt {
        column,
        value: s.to_string(),
    })
}

pub fn date(column: &'static str, s: &str) -> Result<NaiveDate> {
    s.parse().map_err(|_| StoreError::Corrupt {
        column,
        value: s.to_string(),
    })
}

fn parse_date_or_epoch(s: &str) -> NaiveDate {
    s.parse().unwrap_or(NaiveDate::MIN)
}

/// A store test on both databases: `on_both!(name, |s| { … })` defines
/// `name::sqlite` and `name::postgres`, each handing the body a fresh `&mut Store`.
#[cfg(test)]
macro_rules! on_both {
    ($name:ident, |$s:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($s: &mut $crate::Store) $body

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let mut s = $crate::Store::open(&dir.path().join("t.db")).unwrap();
                body(&mut s)
            }

            #[test]
            fn postgres() {
                body(&mut $crate::pg::testing::store())
            }
        }
    };
}
#[cfg(test)]
pub(crate) use on_both;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_database_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer than this build"), "{err}");
    }

    #[test]
    fn an_older_database_migrates_forward_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        // A database as version 1 of arrears left it.
        let mut old = Store {
            backend: Backend::Lite(Connection::open(&path).unwrap()),
            location: "a.db".into(),
            changes_at_load: std::cell::Cell::new(None),
            audit: Default::default(),
            clock: std::sync::Arc::new(arrears_core::clock::SystemClock),
        };
        old.migrate("a.db", &MIGRATIONS[..1]).unwrap();
        assert_eq!(old.schema_version().unwrap(), 1);
        old.conn()
            .unwrap()
            .execute(
                "INSERT INTO customers(company, code, name) VALUES ('C', 'X', 'kept')",
                [],
            )
            .unwrap();
        drop(old);
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let name: String = s
            .conn()
            .unwrap()
            .query_row("SELECT name FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "kept");
        s.append_audit("t", "a", "x", &serde_json::json!(1), &serde_json::json!(2))
            .unwrap();
        // A failing migration leaves the database at the last good version.
        let mut bad = MIGRATIONS.to_vec();
        bad.push("ALTER TABLE nowhere ADD COLUMN x TEXT;");
        assert!(s.migrate("a.db", &bad).is_err());
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }

    /// Items as a version-13 store held them, to seed version 14's history from:
    /// 1 cleared with its case closed, 2 part-paid by two linked payments, 3 as
    /// born, 4 cleared with neither case nor payment, 5 taken into an agreement.
    #[cfg(test)]
    pub(crate) const BEFORE_HISTORY: &str = "
        INSERT INTO customers(id, company, code, name) VALUES (1, 'C', 'X', 'x');
        INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                          original_amount, open_amount, currency, status)
          VALUES (1, 's', 'a', 1, 'INV-1', '2026-01-01', '2026-01-31', '25', '0', 'EUR', 'cleared'),
                 (2, 's', 'b', 1, 'INV-2', '2026-01-02', '2026-01-31', '25', '10', 'EUR', 'open'),
                 (3, 's', 'c', 1, 'INV-3', '2026-01-02', '2026-01-31', '25', '25', 'EUR', 'open'),
                 (4, 's', 'd', 1, 'INV-4', '2026-01-03', '2026-01-31', '25', '0', 'EUR', 'cleared'),
                 (5, 's', 'e', 1, 'INV-5', '2026-01-04', '2026-01-31', '25', '25', 'EUR', 'agreement');
        INSERT INTO cases(item_id, customer_id, status, opened_on, closed_on, close_reason, nad, priority)
          VALUES (1, 1, 'closed', '2026-02-01', '2026-02-10', 'cleared', '2026-02-01', 1),
                 (5, 1, 'closed', '2026-02-01', '2026-03-01', 'replaced by agreement 1', '2026-02-01', 1);
        INSERT INTO payments(source, external_id, customer_id, item_id, amount, currency, value_date)
          VALUES ('s', 'p1', 1, 2, '5', 'EUR', '2026-02-01'), ('s', 'p2', 1, 2, '10', 'EUR', '2026-02-05');";

    /// What version 14 makes of [`BEFORE_HISTORY`].
    #[cfg(test)]
    pub(crate) fn assert_history_seeded(s: &Store) {
        use arrears_core::domain::ChangeCause::BeforeHistory;
        let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
        let seeded: Vec<_> = (1..=5)
            .map(|id| {
                s.item_history(id)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.on, h.open_amount, h.status, h.cause))
                    .collect::<Vec<_>>()
            })
            .collect();
        let row = |on: &str, open: i64, status: &str| {
            vec![(
                day(on),
                rust_decimal::Decimal::from(open),
                status.to_string(),
                BeforeHistory,
            )]
        };
        assert_eq!(
            seeded,
            [
                row("2026-02-10", 0, "cleared"),
                row("2026-02-05", 10, "open"),
                vec![],
                row("2026-01-03", 0, "cleared"),
                row("2026-03-01", 25, "agreement"),
            ]
        );
        let cleared: Vec<_> = (1..=5)
            .map(|id| s.item_clearing(id).unwrap().map(|c| (c.on, c.by)))
            .collect();
        assert_eq!(
            cleared,
            [
                Some((day("2026-02-10"), BeforeHistory)),
                None,
                None,
                Some((day("2026-01-03"), BeforeHistory)),
                Some((day("2026-03-01"), BeforeHistory)),
            ]
        );
    }

    #[test]
    fn version_14_seeds_the_items_history_from_what_the_store_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut old = Store {
            backend: Backend::Lite(Connection::open(&path).unwrap()),
            location: "a.db".into(),
            changes_at_load: std::cell::Cell::new(None),
            audit: Default::default(),
            clock: std::sync::Arc::new(arrears_core::clock::SystemClock),
        };
        old.migrate("a.db", &MIGRATIONS[..13]).unwrap();
        old.conn().unwrap().execute_batch(BEFORE_HISTORY).unwrap();
        drop(old);
        let s = Store::open(&path).unwrap();
        assert_history_seeded(&s);
    }

    /// Version 7 seeds each item's dunning level from the steps already decided and
    /// marks originals that a split or re-posting already replaced.
    #[test]
    fn version_7_seeds_item_levels_and_marks_replaced_originals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut old = Store {
            backend: Backend::Lite(Connection::open(&path).unwrap()),
            location: "a.db".into(),
            changes_at_load: std::cell::Cell::new(None),
            audit: Default::default(),
            clock: std::sync::Arc::new(arrears_core::clock::SystemClock),
        };
        old.migrate("a.db", &MIGRATIONS[..6]).unwrap();
        old.conn().unwrap().execute_batch(
            "INSERT INTO customers(id, company, code, name, dirty) VALUES (1, 'C', 'X', 'x', 0);
             INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date, original_amount, open_amount, currency, original_document)
               VALUES (1, 's', 'a', 1, 'INV-1', '2026-01-01', '2026-01-31', '10', '10', 'EUR', NULL),
                      (2, 's', 'b', 1, 'INV-2', '2026-01-01', '2026-03-31', '10', '10', 'EUR', NULL),
                      (3, 's', 'c', 1, 'INV-2-A', '2026-01-01', '2026-04-30', '10', '10', 'EUR', 'INV-2'),
                      (4, 's', 'd', 1, 'INV-4', '2026-01-01', '2026-05-31', '10', '10', 'EUR', NULL);
             INSERT INTO escalations(customer_id, run_id, as_of, ladder, level, level_name, channel, template, copy_manager, amount, items, reason, status)
               VALUES (1, 1, '2026-03-01', 'l', 2, 'r1', 'email', 't', 0, '10', '[[1,3]]', 'x', 'sent'),
                      (1, 2, '2026-04-01', 'l', 3, 'r2', 'email', 't', 0, '20', '[[1,3],[2,1]]', 'x', 'sent'),
                      (1, 3, '2026-05-01', 'l', 4, 'r3', 'email', 't', 0, '20', '[[1,4],[2,4]]', 'x', 'cancelled');",
        ).unwrap();
        drop(old);
        let s = Store::open(&path).unwrap();
        let rows: Vec<(i64, String)> = s
            .conn()
            .unwrap()
            .prepare("SELECT dun_level, status FROM items ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want = [(3, "open"), (1, "replaced"), (0, "open"), (0, "open")];
        let want: Vec<(i64, String)> = want.iter().map(|(l, s)| (*l, s.to_string())).collect();
        assert_eq!(
            rows, want,
            "levels capped by their step, cancelled steps ignored"
        );
        let dirty: i64 = s
            .conn()
            .unwrap()
            .query_row("SELECT dirty FROM customers", [], |r| r.get(0))
            .unwrap();
        assert!(dirty > 0, "the customer is evaluated again");
    }

    #[test]
    fn reopening_is_a_no_op_and_wal_is_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.db");
        drop(Store::open(&path).unwrap());
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = s
            .conn()
            .unwrap()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // A run's connection caches 64 MiB of pages; one for short reads 4 MiB.
        let cache = |s: &Store| -> i64 {
            s.conn()
                .unwrap()
                .pragma_query_value(None, "cache_size", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(cache(&s), -65_536);
        assert_eq!(cache(&s.for_short_reads().unwrap()), -4_096);
    }

    #[test]
    fn case_history_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        s.conn().unwrap().execute_batch(
            "INSERT INTO customers(id, company, code, name) VALUES (1, 'C', 'X', 'x');
             INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date, original_amount, open_amount, currency)
               VALUES (1, 's', 'e', 1, 'D', '2026-01-01', '2026-01-31', '1', '1', 'EUR');
             INSERT INTO cases(id, item_id, customer_id, opened_on, nad, priority) VALUES (1, 1, 1, '2026-02-01', '2026-01-04', 1);
             INSERT INTO case_events(case_id, on_date, kind, actor) VALUES (1, '2026-02-01', 'opened', 'run');",
        ).unwrap();
        assert!(s
            .conn()
            .unwrap()
            .execute("UPDATE case_events SET kind = 'x'", [])
            .is_err());
        assert!(s
            .conn()
            .unwrap()
            .execute("DELETE FROM case_events", [])
            .is_err());
    }
}
