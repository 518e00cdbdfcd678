//! Connectors: where data comes from. Each configured connector has a name, a kind
//! and a schedule; the daemon runs it on that schedule (inboxes also on file
//! events), and its health — last success, last error, items pulled, errors — is
//! kept in the store (`connector_state`) so `arrears connectors` and the API can
//! show it and a restart resumes where the last sync stopped.
//!
//! Built in so far: folder inboxes for CSV files and bank statements ([`inbox`]),
//! the Tryton ERP ([`tryton`]), credit bureau score lookups ([`bureau`]) and
//! external plugin processes ([`plugin`]).

pub mod bureau;
pub mod inbox;
pub mod plugin;
pub mod tryton;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

use arrears_store::{Result, Store};

// No `deny_unknown_fields` here: serde does not support it together with
// `flatten`; `Kind` refuses unknown keys instead.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorConfig {
    /// Unique; names the connector in logs, metrics and `arrears sync NAME`.
    pub name: String,
    #[serde(flatten)]
    pub kind: Kind,
    /// How often to sync (inboxes also react to new files at once); `0s`: only on demand.
    #[serde(default = "default_every", with = "arrears_core::human_duration")]
    pub every: Duration,
}

fn default_every() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Kind {
    /// A folder of CSV files (the `import csv` format); each file imported whole,
    /// then moved to `processed/` or `failed/` with an error report.
    CsvInbox {
        path: PathBuf,
        /// Source for rows without a `source` column.
        #[serde(default = "default_csv_source")]
        source: String,
    },
    /// An external program serving `arrears.connector.v1.Connector` (proto/).
    Plugin(plugin::PluginConfig),
    /// A credit bureau's score and risk class per customer, over HTTP JSON.
    Bureau(bureau::BureauConfig),
    /// Tryton ERP over JSON-RPC: open receivable lines as items, as a snapshot.
    Tryton(tryton::TrytonConfig),
    /// A folder of bank statements (camt.053, camt.054, MT940).
    StatementInbox {
        path: PathBuf,
        /// MT940 character set when not UTF-8 (latin1, cp852, cp850, cp437).
        encoding: Option<String>,
        /// Heuristic matches at or above this are applied (default: `MatchOptions`).
        min_confidence: Option<rust_decimal::Decimal>,
    },
}

fn default_csv_source() -> String {
    "csv".into()
}

impl Kind {
    /// The folder an inbox watches.
    pub fn inbox(&self) -> Option<&std::path::Path> {
        match self {
            Kind::CsvInbox { path, .. } | Kind::StatementInbox { path, .. } => Some(path),
            Kind::Tryton(_) | Kind::Bureau(_) | Kind::Plugin(_) => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::CsvInbox { .. } => "csv_inbox",
            Kind::StatementInbox { .. } => "statement_inbox",
            Kind::Tryton(_) => "tryton",
            Kind::Bureau(_) => "bureau",
            Kind::Plugin(_) => "plugin",
        }
    }
}

/// The HTTP client of the HTTP connectors: one timeout for the whole request, and
/// statuses handed back rather than turned into errors (each connector decides
/// which are worth a retry).
pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Checks a connector list: names unique and non-empty.
pub fn validate(list: &[ConnectorConfig]) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for c in list {
        if c.name.trim().is_empty() {
            return Err("a connector has an empty name".into());
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("connector name `{}` is used twice", c.name));
        }
    }
    Ok(())
}

/// What one sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStats {
    /// Files (inboxes) or records (ERP) taken in.
    pub pulled: u64,
    pub failed: u64,
    /// One line per file or batch, for the log and `arrears sync`.
    pub details: Vec<String>,
    /// Where the next sync starts (kept only when the data it covers is stored).
    pub cursor: Option<String>,
    /// What failed although the data was stored (e.g. writing back to the ERP):
    /// recorded as the connector's last error.
    pub problem: Option<String>,
}

pub use arrears_store::Health;

/// Records the outcome of one sync of `c` that started `at`. A sync that failed
/// as a whole keeps the cursor; one that succeeded (even with some bad files)
/// moves it to the stats' cursor, if it has one.
pub fn record_sync(
    store: &Store,
    c: &ConnectorConfig,
    at: DateTime<Utc>,
    outcome: &std::result::Result<SyncStats, String>,
) -> Result<()> {
    let o = match outcome {
        Ok(s) => arrears_store::SyncOutcome {
            ok: true,
            pulled: s.pulled as i64,
            failed: s.failed as i64,
            error: s
                .problem
                .clone()
                .or_else(|| (s.failed > 0).then(|| format!("{} file(s) failed", s.failed))),
            cursor: s.cursor.as_deref(),
        },
        Err(e) => arrears_store::SyncOutcome {
            ok: false,
            failed: 1,
            error: Some(e.clone()),
            ..Default::default()
        },
    };
    store.record_sync(&c.name, c.kind.name(), at, &o)
}

/// Runs one sync of `c` on `store` (a connection of its own, so a long sync never
/// holds the daemon's writer), and records the outcome.
/// `as_of` is the business date (bureau listings count waiting periods from it).
pub fn sync(
    store: &mut Store,
    c: &ConnectorConfig,
    as_of: chrono::NaiveDate,
) -> std::result::Result<SyncStats, String> {
    // The store carries the clock the binary chose: health stamps follow `--as-of`
    // replays and fixed test clocks like every other record.
    let at = store.clock().now();
    let result = match &c.kind {
        Kind::CsvInbox { path, source } => inbox::sync_csv(store, &c.name, path, source),
        Kind::Tryton(t) => tryton::sync(store, &c.name, t),
        Kind::Bureau(b) => bureau::sync(store, &c.name, b, as_of),
        // Outside the daemon (`arrears sync NAME`): start the plugin, pull once, stop it.
        Kind::Plugin(p) => {
            let cursor = store
                .connector_health(&c.name)
                .map_err(|e| e.to_string())?
                .and_then(|h| h.cursor)
                .unwrap_or_default();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let pulled = rt.block_on(async {
                let mut host = plugin::Host::new(&c.name, p);
                let r = host.pull(&cursor).await;
                host.stop().await;
                r
            });
            pulled.and_then(|b| plugin::store_pull(store, &c.name, &b))
        }
        Kind::StatementInbox {
            path,
            encoding,
            min_confidence,
        } => inbox::sync_statements(
            store,
            &c.name,
            path,
            encoding.as_deref(),
            arrears_store::MatchOptions {
                min_confidence: min_confidence
                    .unwrap_or(arrears_store::MatchOptions::default().min_confidence),
            },
        ),
    };
    record(store, c, at, &result);
    result
}

/// Records a sync's outcome; failing to record it is logged, never fatal: the data
/// the sync stored is in and the next sync records again.
pub fn record(
    store: &Store,
    c: &ConnectorConfig,
    at: DateTime<Utc>,
    result: &std::result::Result<SyncStats, String>,
) {
    if let Err(e) = record_sync(store, c, at, result) {
        tracing::error!(connector = %c.name, error = %e, "recording connector health");
    }
}
