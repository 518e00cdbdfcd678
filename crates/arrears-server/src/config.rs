//! `--config FILE`: daemon settings. Every key has a default, so no file is needed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SQLite database file (overridden by `--db` / `ARREARS_DB`).
    pub db: Option<PathBuf>,
    /// Rules folder (overridden by `--rules` / `ARREARS_RULES`).
    pub rules: Option<PathBuf>,
    /// Log filter in `tracing` syntax, e.g. `info,arrears=debug` (overridden by `RUST_LOG`).
    pub log: Option<String>,
    /// Log format: `human` (default) or `json`.
    pub log_format: LogFormat,
    /// `arrears serve` settings.
    pub serve: ServeConfig,
    /// Bearer tokens of the API.
    pub auth: AuthConfig,
    /// Data sources the daemon pulls from on their schedules.
    pub connectors: Vec<arrears_connectors::ConnectorConfig>,
    /// How messages go out (SMTP, webhook); letters need nothing.
    pub delivery: Option<arrears_delivery::DeliveryConfig>,
    /// The audit log's key and anchor.
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// gRPC address (overridden by `--grpc-listen`).
    pub grpc_listen: String,
    /// Prometheus `/metrics` address (overridden by `--metrics-listen`).
    pub metrics_listen: String,
    /// Portfolio run schedule, e.g. `15m`, `1h`; `0s` turns the schedule off.
    #[serde(with = "humantime_serde_compat")]
    pub run_every: std::time::Duration,
    /// Fixed business date instead of the local date (demos, tests, back-dated reruns).
    pub as_of: Option<chrono::NaiveDate>,
    /// How often the daemon looks for changes other processes wrote to the store
    /// (imports, connectors); a change triggers an incremental run. On Linux it
    /// also looks whenever the database's write-ahead log is written to, so this is
    /// the fallback; `0s` turns both off.
    #[serde(with = "humantime_serde_compat")]
    pub store_poll: std::time::Duration,
    /// Quiet time after the last change in the rules folder before it is reloaded.
    #[serde(with = "humantime_serde_compat")]
    pub reload_debounce: std::time::Duration,
    /// Days after a promise date before a promise without payment counts as broken.
    pub promise_tolerance_days: i64,
    /// Least time between two KPI passes. Runs follow every API change; a KPI pass
    /// over a million items costs about half a second, so a busy day recomputes them
    /// at most this often (after the latest run) instead of after each run.
    #[serde(with = "humantime_serde_compat")]
    pub kpi_interval: std::time::Duration,
    /// Least time between two passes of the collections analysis gauges (cash
    /// forecast, conversion, promise effectiveness): a forecast reads a year of the
    /// book, seconds at a million items. Done with the first KPI pass, then with the
    /// first one this long after the last.
    #[serde(with = "humantime_serde_compat")]
    pub analysis_interval: std::time::Duration,
    /// How often the outbox looks for messages due (it also runs after every run);
    /// `0s` turns sending off.
    #[serde(with = "humantime_serde_compat")]
    pub outbox_every: std::time::Duration,
    /// TLS for the gRPC port (PEM files); plaintext when absent.
    pub tls: Option<TlsConfig>,
    /// What one client, and all of them together, may hold open on the daemon.
    pub limits: ServeLimits,
}

/// Caps on what callers can make the daemon hold. A call over a cap is refused with
/// RESOURCE_EXHAUSTED naming the cap, so one client cannot exhaust the daemon for all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeLimits {
    /// Open `WatchWorklist` streams, all callers together.
    pub watch_streams: u32,
    /// Open `WatchWorklist` streams of one principal (without tokens every caller is
    /// the one local admin, so this is then also a total).
    pub watch_streams_per_principal: u32,
    /// `ImportStatement` calls in flight. A statement of up to 64 MiB takes several
    /// times its size in memory while it is decoded and parsed, so parallel uploads
    /// multiply; the ones over this number are refused at once.
    pub uploads: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            watch_streams: 1000,
            watch_streams_per_principal: 32,
            uploads: 2,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            grpc_listen: "127.0.0.1:50051".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            run_every: std::time::Duration::from_secs(15 * 60),
            as_of: None,
            store_poll: std::time::Duration::from_secs(1),
            reload_debounce: std::time::Duration::from_millis(300),
            promise_tolerance_days: 3,
            kpi_interval: std::time::Duration::from_secs(10),
            analysis_interval: std::time::Duration::from_secs(3600),
            outbox_every: std::time::Duration::from_secs(60),
            tls: None,
            limits: ServeLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
}

/// Who may do what: the roles of tokens and of agreement limits (in arrears-core so
/// the rules can name them).
pub use arrears_core::domain::Role;

/// One API token. The secret comes from an environment variable or a file so that
/// the config itself can be shared; it is never logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who the token belongs to; for collectors, their collector id in the rules.
    pub principal: String,
    pub role: Role,
    /// For a supervisor: collection groups they supervise besides those they manage
    /// in the rules; `"*"` is every group (a back-office supervisor).
    #[serde(default)]
    pub groups: Vec<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

pub use arrears_store::{AuditConfig, RetiredKeyConfig};

pub(crate) use arrears_core::human_duration as humantime_serde_compat;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let cfg = serde_yaml::from_str::<Option<Config>>(&text)
            .map(Option::unwrap_or_default)
            .map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        if let Some(d) = &cfg.delivery {
            d.validate().map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(cfg)
    }

    /// The default database: `arrears.db` in the user's data directory.
    pub fn default_db() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("arrears")
            .join("arrears.db")
    }

    /// The default rules: `./rules` when present, else the folder shipped with the source.
    pub fn default_rules() -> PathBuf {
        let local = PathBuf::from("rules");
        if local.is_dir() {
            return local;
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
    }
}
