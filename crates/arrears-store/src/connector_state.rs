//! Connector health and cursors (`connector_state`): what each sync left behind.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::{args, Db};
use super::{Result, Store};

/// A connector's health as the store keeps it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub name: String,
    pub kind: String,
    pub cursor: Option<String>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub pulled_total: u64,
    pub errors_total: u64,
}

/// What one sync of a connector came to, as the store records it.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome<'a> {
    pub ok: bool,
    pub pulled: i64,
    pub failed: i64,
    pub error: Option<String>,
    /// Where the next sync starts; `None` keeps the stored cursor.
    pub cursor: Option<&'a str>,
}

/// A connector's health, on either database.
pub(crate) fn health(db: &Db, name: &str) -> Result<Option<Health>> {
    let Some(r) = db.row(
        "SELECT kind, cursor, last_attempt, last_success, last_error, pulled_total, errors_total
         FROM connector_state WHERE name = ?1",
        args![name],
    )?
    else {
        return Ok(None);
    };
    let ts = |s: Option<String>| {
        s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    Ok(Some(Health {
        name: name.to_string(),
        kind: r.get(0, "connector_state.kind")?,
        cursor: r.get(1, "connector_state.cursor")?,
        last_attempt: ts(r.get(2, "connector_state.last_attempt")?),
        last_success: ts(r.get(3, "connector_state.last_success")?),
        last_error: r.get(4, "connector_state.last_error")?,
        pulled_total: r.get::<i64>(5, "connector_state.pulled_total")?.max(0) as u64,
        errors_total: r.get::<i64>(6, "connector_state.errors_total")?.max(0) as u64,
    }))
}

/// Records one sync's outcome, on either database.
pub(crate) fn record(
    db: &Db,
    name: &str,
    kind: &str,
    at: DateTime<Utc>,
    o: &SyncOutcome,
) -> Result<()> {
    db.execute(
        "INSERT INTO connector_state(name, kind, cursor, last_attempt, last_success, last_error, pulled_total, errors_total)
         VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 THEN ?4 END, ?6, ?7, ?8)
         ON CONFLICT(name) DO UPDATE SET kind = excluded.kind,
             cursor = COALESCE(excluded.cursor, connector_state.cursor),
             last_attempt = excluded.last_attempt,
             last_success = CASE WHEN ?5 THEN excluded.last_attempt ELSE connector_state.last_success END,
             last_error = excluded.last_error,
             pulled_total = connector_state.pulled_total + excluded.pulled_total,
             errors_total = connector_state.errors_total + excluded.errors_total",
        args![name, kind, o.cursor, at.to_rfc3339(), o.ok, o.error, o.pulled, o.failed],
    )?;
    Ok(())
}

impl Store {
    pub fn connector_health(&self, name: &str) -> Result<Option<Health>> {
        health(&self.db(), name)
    }

    /// Records the outcome of one sync of connector `name` (of `kind`) that started
    /// `at`.
    pub fn record_sync(
        &self,
        name: &str,
        kind: &str,
        at: DateTime<Utc>,
        o: &SyncOutcome,
    ) -> Result<()> {
        // In a write transaction: it waits for a run's write lock, where a bare
        // statement gives up after the busy timeout.
        self.db().write(|db| record(db, name, kind, at, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same calls on both databases: health appears with the first sync, totals
    /// add up, a failed sync keeps the cursor and the last success.
    fn health_adds_up(
        record: &dyn Fn(DateTime<Utc>, &SyncOutcome) -> Result<()>,
        health: &dyn Fn() -> Result<Option<Health>>,
    ) {
        assert!(health().unwrap().is_none());
        let t1: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let t2: DateTime<Utc> = "2026-11-23T11:00:00Z".parse().unwrap();
        record(
            t1,
            &SyncOutcome {
                ok: true,
                pulled: 5,
                cursor: Some("c1"),
                ..SyncOutcome::default()
            },
        )
        .unwrap();
        record(
            t2,
            &SyncOutcome {
                ok: false,
                failed: 1,
                error: Some("HTTP 503".into()),
                ..SyncOutcome::default()
            },
        )
        .unwrap();
        let h = health().unwrap().unwrap();
        assert_eq!(
            (
                h.kind.as_str(),
                h.cursor.as_deref(),
                h.last_attempt,
                h.last_success,
                h.last_error.as_deref(),
                h.pulled_total,
                h.errors_total
            ),
            (
                "tryton",
                Some("c1"),
                Some(t2),
                Some(t1),
                Some("HTTP 503"),
                5,
                1
            )
        );
    }

    crate::on_both!(health_is_kept_per_connector, |s| {
        health_adds_up(&|at, o| s.record_sync("erp", "tryton", at, o), &|| {
            s.connector_health("erp")
        });
    });
}
