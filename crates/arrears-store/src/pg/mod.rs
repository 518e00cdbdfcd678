//! The PostgreSQL store (issue 15), selected by a `postgres://` URL.
//!
//! Here: opening the database (named without its password when it cannot be
//! reached), creating or checking the schema, carrying values across exactly
//! ([`Value`]: amounts as NUMERIC, business dates as DATE), the change listener,
//! the leader lock, the test cluster and `arrears migrate` ([`copy`]). The store's
//! operations themselves are the same code as on SQLite ([`crate::db`]).
//!
//! Why the synchronous `postgres` client (the blocking face of `tokio-postgres`,
//! same project): the store traits are synchronous and the daemon already calls the
//! store on blocking threads, so the traits stay as they are and one use case reads
//! the same on both backends; an async client (`sqlx`, `tokio-postgres` directly)
//! would make every trait and use case async for no gain on a blocking thread.
//!
//! Schema versions: PostgreSQL starts at version 12, SQLite's schema of that
//! version whole (no PostgreSQL store existed before it). Each later version adds a
//! migration in both dialects; a test fails while one is missing.

pub mod copy;
mod feed;
mod leader;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod value;

use std::cell::RefCell;
use std::time::Duration;

use crate::db::{Db, PgConn};
use crate::{Backend, Store};

pub use feed::ChangeListener;
pub use leader::{Leadership, OUTBOX_LOCK};
pub use value::Value;

use super::{Result, StoreError, SCHEMA_VERSION};

/// The first version of the PostgreSQL schema, and its text.
const BASELINE: i64 = 12;
const BASELINE_SQL: &str = include_str!("schema_v12.sql");
/// Migrations after the baseline, version `BASELINE + 1` first.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v13.sql"),
    include_str!("schema_v14.sql"),
    include_str!("schema_v15.sql"),
];

/// The advisory lock migrations hold: replicas starting together migrate once.
const MIGRATION_LOCK: i64 = 0x4152_5245_4152_5301;

/// A URL as it may be shown: without its password.
pub fn redact(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(c) => {
            let user = c.get_user().unwrap_or_default();
            let host = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(h) => h.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            let port = c
                .get_ports()
                .first()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let db = c.get_dbname().unwrap_or_default();
            let at = if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            };
            format!("postgres://{at}{host}{port}/{db}")
        }
        // Unparsable: show only the scheme, it may hold anything.
        Err(_) => "postgres://…".into(),
    }
}

/// How long a statement waits for a lock another session holds (a writer waits for
/// the one writing), as SQLite's writers wait for the write lock.
const LOCK_WAIT_SECS: u64 = 30;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        if e.is_closed() {
            return StoreError::Unreachable {
                url: "(connection lost)".into(),
                reason: e.to_string(),
            };
        }
        if let Some(code) = e.code() {
            // Waited out, or chosen as a deadlock's victim: nothing was written,
            // trying again is safe.
            if [
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::T_R_SERIALIZATION_FAILURE,
            ]
            .contains(code)
            {
                return StoreError::Busy {
                    waited_secs: LOCK_WAIT_SECS,
                };
            }
            // The connection failed, or the server is shutting down.
            if code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
            {
                return StoreError::Unreachable {
                    url: "(connection lost)".into(),
                    reason: e.to_string(),
                };
            }
        }
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(match db.detail() {
                Some(d) => format!("{}: {} ({d})", db.severity(), db.message()),
                None => format!("{}: {}", db.severity(), db.message()),
            }),
            // Not the server's: the cause (a value that does not fit) is the source.
            None => StoreError::Postgres(match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }),
        }
    }
}

/// A PostgreSQL session that may be dropped on any thread. Closing the blocking
/// client blocks on its own runtime, which panics on a thread that drives async
/// tasks: the daemon's tasks end holding stores, lock sessions and listeners, and
/// a SIGTERM aborted the daemon. There it is closed on a thread of its own.
pub(crate) struct Session(Option<postgres::Client>);

impl std::ops::Deref for Session {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.0
            .as_ref()
            .expect("a session is only emptied when dropped")
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0
            .as_mut()
            .expect("a session is only emptied when dropped")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // One thread closes them all; without it (it could not be started) the
        // client is left for the process's end to close, never dropped here.
        type Closer = Option<std::sync::mpsc::Sender<postgres::Client>>;
        static CLOSER: std::sync::OnceLock<Closer> = std::sync::OnceLock::new();
        let closer = CLOSER.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<postgres::Client>();
            std::thread::Builder::new()
                .name("arrears-pg-close".into())
                .spawn(move || rx.into_iter().for_each(drop))
                .ok()
                .map(|_| tx)
        });
        match closer {
            Some(tx) => {
                if let Err(std::sync::mpsc::SendError(c)) = tx.send(client) {
                    std::mem::forget(c);
                }
            }
            None => std::mem::forget(client),
        }
    }
}

/// A connection named `application` (what `pg_stat_activity` shows), and the URL
/// without its password.
pub(crate) fn connect(url: &str, application: &str) -> Result<(Session, String)> {
    let shown = redact(url);
    let mut cfg: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Invalid(format!("{shown}: {e}")))?;
    // Keepalives: a peer that vanished (a cut-off replica, a dead server) is
    // noticed in about a minute, not after the system's two hours.
    cfg.connect_timeout(Duration::from_secs(10))
        .application_name(application)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    let mut client = cfg
        .connect(postgres::NoTls)
        .map_err(|e| StoreError::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_WAIT_SECS}s'"))
        .map_err(|e| StoreError::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    Ok((Session(Some(client)), shown))
}

impl Store {
    /// Connects to the PostgreSQL database at `url` and brings its schema to this
    /// build's version (creating it in an empty database); refuses a database
    /// whose schema is newer.
    pub fn open_postgres(url: &str) -> Result<Store> {
        let (client, shown) = connect(url, "arrears")?;
        let mut conn = PgConn::new(client, url.to_string());
        migrate(&mut conn, &shown, MIGRATIONS)?;
        // Lists ordered by code or name sort byte by byte on SQLite; under a
        // language's collation the same command would list in another order.
        // (Before PostgreSQL 15 there is no `datlocprovider`: no warning.)
        let locale = conn.client.query_one(
            "SELECT datcollate::text, datlocprovider::text FROM pg_database
             WHERE datname = current_database()",
            &[],
        );
        if let Ok(row) = locale {
            let (collation, provider): (String, String) = (row.get(0), row.get(1));
            // 'i': ICU, whose collations follow a language whatever datcollate says.
            let bytewise = matches!(collation.as_str(), "C" | "POSIX" | "C.UTF-8" | "C.utf8");
            if provider == "i" || !bytewise {
                tracing::warn!(
                    db = %shown,
                    %collation,
                    "the database sorts text by a language's rules, not byte by byte as SQLite \
                     does; create it with --locale=C --template=template0"
                );
            }
        }
        Ok(Store {
            backend: Backend::Pg(Box::new(PgBackend {
                conn: RefCell::new(conn),
                url: url.to_string(),
            })),
            location: shown,
            changes_at_load: std::cell::Cell::new(None),
            audit: Default::default(),
            clock: std::sync::Arc::new(arrears_core::clock::SystemClock),
        })
    }

    /// The PostgreSQL connection, for this crate's tests.
    #[cfg(test)]
    pub(crate) fn pg_client(&mut self) -> &mut postgres::Client {
        match &mut self.backend {
            Backend::Pg(b) => &mut b.conn.get_mut().client,
            Backend::Lite(_) => panic!("a PostgreSQL store"),
        }
    }
}

/// A PostgreSQL store's connection, and its URL for the sessions of its own a
/// lock needs (kept whole: it may carry the password).
pub(crate) struct PgBackend {
    pub(crate) conn: RefCell<PgConn>,
    pub(crate) url: String,
}

impl Store {
    /// The database's URL as given (with its password): for the sessions of its
    /// own a lock or a listener needs.
    pub(crate) fn pg_url(&self) -> Result<String> {
        match &self.backend {
            Backend::Pg(b) => Ok(b.url.clone()),
            Backend::Lite(_) => Err(StoreError::Invalid("not a PostgreSQL store".into())),
        }
    }
}

/// Brings the schema to the baseline plus `migrations` (this build's: all of
/// [`MIGRATIONS`]) in one transaction: a failing migration leaves the database
/// at the version it had.
fn migrate(conn: &mut PgConn, shown: &str, migrations: &[&str]) -> Result<()> {
    let supported = BASELINE + migrations.len() as i64;
    let mut tx = conn.client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .get(0);
    let found: i64 = if exists {
        tx.query_one("SELECT version FROM schema_version", &[])?
            .get(0)
    } else {
        0
    };
    if found > supported {
        return Err(StoreError::NewerSchema {
            path: shown.to_string(),
            found,
            supported,
        });
    }
    if found == 0 {
        tx.batch_execute(BASELINE_SQL)?;
    }
    let from = found.max(BASELINE);
    for (i, sql) in migrations.iter().enumerate() {
        let version = BASELINE + 1 + i as i64;
        if version > from {
            tx.batch_execute(sql)?;
            tx.execute("UPDATE schema_version SET version = $1", &[&version])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn schema_version(db: &Db) -> Result<i64> {
    db.row("SELECT version FROM schema_version", &[])?
        .ok_or_else(|| StoreError::Postgres("schema_version is empty".into()))?
        .get(0, "schema_version.version")
}

/// Every version has its PostgreSQL migration.
const _: () = assert!(BASELINE + MIGRATIONS.len() as i64 == SCHEMA_VERSION);

#[cfg(test)]
mod tests {
    use super::testing::PgCluster;
    use super::*;

    fn cluster() -> PgCluster {
        PgCluster::start().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_unreachable_database_is_named_without_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Nothing listens there once the listener is gone.
        let url = format!("postgres://arrears:s3cret@127.0.0.1:{port}/books");
        let e = Store::open_postgres(&url).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot reach the database postgres://arrears@127.0.0.1:{port}/books: "
            )),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(e.kind(), arrears_core::error::ErrorKind::Busy);
    }

    /// A lost connection (here: its backend terminated, as a server restart or a
    /// network cut would) fails the call that finds it as UNAVAILABLE, and the
    /// next call connects again; what was committed before stays.
    #[test]
    fn a_lost_connection_is_made_again_by_the_next_call() {
        let url = super::testing::PgCluster::shared().fresh_database();
        let s = Store::open_postgres(&url).unwrap();
        s.record_sync(
            "erp",
            "tryton",
            chrono::Utc::now(),
            &crate::SyncOutcome::default(),
        )
        .unwrap();
        let (mut admin, _) = connect(&url, "admin").unwrap();
        let n: i64 = admin
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'arrears' AND datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        std::thread::sleep(std::time::Duration::from_millis(200));
        match s.connector_health("erp") {
            Ok(h) => assert!(h.is_some()),
            Err(e) => assert_eq!(e.kind(), arrears_core::error::ErrorKind::Busy, "{e}"),
        }
        let h = s.connector_health("erp").unwrap().expect("kept");
        assert_eq!(h.kind, "tryton");
        s.record_sync(
            "erp",
            "tryton",
            chrono::Utc::now(),
            &crate::SyncOutcome::default(),
        )
        .unwrap();
    }

    /// The daemon's tasks end holding stores, lock sessions and listeners: dropped
    /// on an async thread they close (a SIGTERM used to abort the daemon there).
    #[test]
    fn sessions_dropped_on_an_async_thread_close() {
        let url = super::testing::PgCluster::shared().fresh_database();
        let store = Store::open_postgres(&url).unwrap();
        let lead = super::Leadership::try_acquire(&url, "closing")
            .unwrap()
            .expect("leads");
        let listener = super::ChangeListener::open(&url).unwrap();
        let (mut admin, _) = connect(&url, "admin").unwrap();
        let sessions = |admin: &mut Session| -> i64 {
            admin
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name <> 'admin'",
                    &[],
                )
                .unwrap()
                .get(0)
        };
        assert_eq!(sessions(&mut admin), 3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            drop(store);
            drop(lead);
            drop(listener);
        });
        let t = std::time::Instant::now();
        while sessions(&mut admin) > 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "sessions left open");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The lock went with its session.
        assert!(super::Leadership::try_acquire(&url, "next")
            .unwrap()
            .is_some());
    }

    /// The schema is made once, opened again as it is, and a newer one is refused.
    #[test]
    fn the_schema_is_made_once_and_a_newer_one_is_refused() {
        let pg = cluster();
        let url = pg.database("books").unwrap();
        let mut s = Store::open_postgres(&url).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.pg_client()
            .execute(
                "INSERT INTO customers(company, code, name) VALUES ('C', 'X', 'x')",
                &[],
            )
            .unwrap();
        drop(s);
        let mut s = Store::open_postgres(&url).unwrap();
        let n: i64 = s
            .pg_client()
            .query_one("SELECT COUNT(*) FROM customers", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "opening again keeps the data");
        s.pg_client()
            .execute(
                "UPDATE schema_version SET version = $1",
                &[&(SCHEMA_VERSION + 1)],
            )
            .unwrap();
        drop(s);
        let e = Store::open_postgres(&url).unwrap_err().to_string();
        assert!(e.contains("newer than this build"), "{e}");
        assert!(e.contains(&pg.url("books")), "{e}");
    }

    /// A database at every earlier version (from the baseline on) is brought
    /// forward keeping its rows; a failing migration leaves it as it was.
    #[test]
    fn an_older_schema_migrates_forward_keeping_its_data() {
        for at in 0..=MIGRATIONS.len() {
            let url = super::testing::PgCluster::shared().fresh_database();
            let (client, shown) = connect(&url, "arrears").unwrap();
            let mut conn = PgConn::new(client, url.clone());
            migrate(&mut conn, &shown, &MIGRATIONS[..at]).unwrap();
            conn.client
                .batch_execute(
                    "INSERT INTO customers(company, code, name) VALUES ('C', 'X', 'kept');
                     INSERT INTO runs(as_of, started_at, rules_hash, mode, summary)
                       VALUES ('2026-11-23', 't', 'h', 'full', '{}')",
                )
                .unwrap();
            let mut bad = MIGRATIONS.to_vec();
            bad.push("ALTER TABLE nowhere ADD COLUMN x TEXT;");
            assert!(migrate(&mut conn, &shown, &bad).is_err());
            let version: i64 = conn
                .client
                .query_one("SELECT version FROM schema_version", &[])
                .unwrap()
                .get(0);
            assert_eq!(version, BASELINE + at as i64, "left as it was");
            drop(conn);

            let mut s = Store::open_postgres(&url).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION, "from {at}");
            let name: String = s
                .pg_client()
                .query_one("SELECT name FROM customers", &[])
                .unwrap()
                .get(0);
            assert_eq!(name, "kept");
            let (run, _, _) = s.last_run().unwrap().expect("the run kept");
            assert!(matches!(
                s.worklist_since(Some(run - 1), false).unwrap(),
                crate::WorklistSince::Whole { .. }
            ));
        }
    }

    #[test]
    fn version_14_seeds_the_items_history_from_what_the_store_held() {
        let url = super::testing::PgCluster::shared().fresh_database();
        let (client, shown) = connect(&url, "arrears").unwrap();
        let mut conn = PgConn::new(client, url.clone());
        migrate(&mut conn, &shown, &MIGRATIONS[..1]).unwrap();
        conn.client
            .batch_execute(crate::tests::BEFORE_HISTORY)
            .unwrap();
        drop(conn);
        let s = Store::open_postgres(&url).unwrap();
        crate::tests::assert_history_seeded(&s);
    }

    /// PostgreSQL's schema has SQLite's tables, columns (in the same order) and
    /// named indexes: a migration added to one dialect only fails here.
    #[test]
    fn the_schema_matches_sqlites_tables_columns_and_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let lite = crate::Store::open(&dir.path().join("a.db")).unwrap();
        let list = |sql: &str| -> Vec<(String, String)> {
            lite.conn()
                .unwrap()
                .prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let columns = list(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
        );
        let indexes = list(
            "SELECT tbl_name, name FROM sqlite_master
             WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%' ORDER BY tbl_name, name",
        );
        let pg = cluster();
        let mut s = Store::open_postgres(&pg.database("books").unwrap()).unwrap();
        let mut list = |sql: &str| -> Vec<(String, String)> {
            s.pg_client()
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        assert_eq!(
            list(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name NOT IN ('schema_version', 'change_head')
                 ORDER BY table_name COLLATE \"C\", ordinal_position"
            ),
            columns
        );
        // Named indexes (constraints' own indexes are named by PostgreSQL).
        let named: std::collections::BTreeSet<(String, String)> = list(
            "SELECT tablename::text, indexname::text FROM pg_indexes WHERE schemaname = 'public'",
        )
        .into_iter()
        .collect();
        for i in &indexes {
            assert!(named.contains(i), "index {i:?} missing in PostgreSQL");
        }
    }

    /// Amounts cross as exact NUMERIC with their scale, dates as DATE, flags as
    /// booleans; a value that does not fit its column is refused, naming it.
    #[test]
    fn values_cross_exactly_in_the_columns_types() {
        let pg = cluster();
        let mut s = Store::open_postgres(&pg.database("books").unwrap()).unwrap();
        let c = s.pg_client();
        c.batch_execute("CREATE TABLE t (a NUMERIC, d DATE, n BIGINT, f BOOLEAN, s TEXT, b BYTEA)")
            .unwrap();
        let row = [
            Value::Text("100.10".into()),
            Value::Text("2026-11-23".into()),
            Value::Int(7),
            Value::Int(1),
            Value::Text("Müller".into()),
            Value::Bytes(vec![0, 1]),
        ];
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            row.iter().map(|v| v as _).collect();
        c.execute("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6)", &params)
            .unwrap();
        let back = c.query_one("SELECT a, d, n, f, s, b FROM t", &[]).unwrap();
        let got: Vec<Value> = (0..6).map(|i| back.get(i)).collect();
        assert_eq!(got, row);
        // Exact arithmetic in the database: 0.1 + 0.2 is 0.3, not 0.30000000000000004.
        let sum: Value = c
            .query_one("SELECT a + 0.1 + 0.2 FROM t", &[])
            .unwrap()
            .get(0);
        assert_eq!(sum, Value::Text("100.40".into()));
        let e = c
            .execute(
                "INSERT INTO t(a) VALUES ($1)",
                &[&Value::Text("12,50".into())],
            )
            .unwrap_err();
        let e = format!("{e:?}");
        assert!(e.contains("`12,50` is not an exact decimal"), "{e}");
        let e = c
            .execute(
                "INSERT INTO t(d) VALUES ($1)",
                &[&Value::Text("23.11.2026".into())],
            )
            .unwrap_err();
        assert!(format!("{e:?}").contains("is not a date"), "{e:?}");
    }
}
