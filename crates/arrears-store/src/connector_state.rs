//! Connector health and cursors (`connector_state`): what each sync left behind.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

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

impl Store {
    pub fn connector_health(&self, name: &str) -> Result<Option<Health>> {
        let row = self
            .conn()
            .query_row(
                "SELECT kind, cursor, last_attempt, last_success, last_error, pulled_total, errors_total
                 FROM connector_state WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()?;
        let ts = |s: Option<String>| {
            s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        Ok(row.map(
            |(kind, cursor, attempt, success, error, pulled, errors)| Health {
                name: name.to_string(),
                kind,
                cursor,
                last_attempt: ts(attempt),
                last_success: ts(success),
                last_error: error,
                pulled_total: pulled.max(0) as u64,
                errors_total: errors.max(0) as u64,
            },
        ))
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
        self.write_one(
            "INSERT INTO connector_state(name, kind, cursor, last_attempt, last_success, last_error, pulled_total, errors_total)
             VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 THEN ?4 END, ?6, ?7, ?8)
             ON CONFLICT(name) DO UPDATE SET kind = excluded.kind,
                 cursor = COALESCE(excluded.cursor, cursor),
                 last_attempt = excluded.last_attempt,
                 last_success = CASE WHEN ?5 THEN excluded.last_attempt ELSE last_success END,
                 last_error = excluded.last_error,
                 pulled_total = pulled_total + excluded.pulled_total,
                 errors_total = errors_total + excluded.errors_total",
            params![name, kind, o.cursor, at.to_rfc3339(), o.ok, o.error, o.pulled, o.failed],
        )?;
        Ok(())
    }
}
