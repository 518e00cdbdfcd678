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
}

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
        serde_yaml::from_str::<Option<Config>>(&text)
            .map(Option::unwrap_or_default)
            .map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })
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
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("rules")
    }
}
