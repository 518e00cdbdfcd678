//! `arrears migrate`: an embedded store copied into PostgreSQL, for a team that
//! outgrew one machine (several daemons on one database).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::Env;

#[derive(Args)]
pub struct MigrateArgs {
    /// The SQLite store to copy: sqlite:FILE (or a path).
    #[arg(long)]
    from: String,
    /// The PostgreSQL database to copy it into, empty: postgres://USER:PASSWORD@HOST:PORT/DB.
    #[arg(long)]
    to: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Copies every row, checks the counts on both sides and the audit chain on the
/// copy; the target is either the whole copy or left as it was.
pub fn migrate(env: &Env, a: MigrateArgs) -> Result<ExitCode> {
    if arrears::store::is_postgres_url(&a.from) {
        bail!("--from: a copy starts from an SQLite store (sqlite:FILE)");
    }
    if !arrears::store::is_postgres_url(&a.to) {
        bail!("--to: a copy goes into a PostgreSQL database (postgres://…)");
    }
    let path = a.from.strip_prefix("sqlite:").unwrap_or(&a.from);
    if !std::path::Path::new(path).exists() {
        bail!("--from: no database at {path}");
    }
    let audit = std::sync::Arc::new(arrears::store::AuditSetup::from_config(&env.cfg.audit)?);
    let from = arrears::store::Store::open(std::path::Path::new(path))
        .with_context(|| format!("opening {path}"))?
        .with_audit(audit.clone());
    let shown = arrears::store::shown_location(&a.to);
    let to = arrears::store::Store::open_postgres(&a.to)
        .with_context(|| format!("opening {shown}"))?
        .with_audit(audit);
    // The copy checks its audit chain against the source's before it commits.
    let report = arrears::store::pg::copy::copy(&from, &to, &|table, rows| {
        errln!("{table}: {rows} rows");
    })
    .with_context(|| format!("copying {path} into {shown}; nothing was written there"))?;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "from": path,
                "to": shown,
                "rows": report.rows,
                "tables": report.tables.iter().map(|(t, n)| serde_json::json!({"table": t, "rows": n})).collect::<Vec<_>>(),
                "audit_records": report.audit.records,
                "audit_ok": report.audit.problem.is_none(),
            })
        );
    } else {
        outln!(
            "copied {} rows of {} tables from {path} into {shown}; counts match; audit chain: {} records, {}",
            report.rows,
            report.tables.len(),
            report.audit.records,
            match &report.audit.problem {
                None => "verified".to_string(),
                Some((at, p)) => format!("as in the source, record {at}: {p}"),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
