//! `arrears connectors` and `arrears sync`: the configured data sources, their health, one run.

use std::process::ExitCode;

use anyhow::{Context, Result};
use arrears::server::pb;
use chrono::NaiveDate;
use clap::Args;

use crate::remote::{describe, Remote};
use crate::{today, Env};

#[derive(Args)]
pub struct ConnectorsArgs {
    /// Print JSON instead of text (for scripts)
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SyncArgs {
    /// Connector name, as in the config's `connectors:` list.
    name: String,
    /// Business date [default: today]
    #[arg(long)]
    as_of: Option<NaiveDate>,
}

pub fn connectors(env: &Env, args: ConnectorsArgs) -> Result<ExitCode> {
    let store = env.store()?;
    let now = chrono::Utc::now();
    let list = env
        .cfg
        .connectors
        .iter()
        .map(|c| {
            Ok(arrears::server::connector_health(
                c,
                store.connector_health(&c.name)?,
                now,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    print_connectors(&list, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn connectors_remote(r: &Remote, args: ConnectorsArgs) -> Result<ExitCode> {
    let list = r
        .connectors()
        .list_connectors(pb::ListConnectorsRequest {})
        .await
        .map_err(describe)?
        .into_inner()
        .connectors;
    print_connectors(&list, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn sync(env: &Env, args: SyncArgs) -> Result<ExitCode> {
    let SyncArgs { name, as_of } = args;
    let c = env
        .cfg
        .connectors
        .iter()
        .find(|c| c.name == name)
        .with_context(|| format!("no connector `{name}` in the config"))?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("syncing {name}"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut store = env.create_store()?;
    let result = arrears::connector::sync(&mut store, c, as_of.unwrap_or_else(today));
    spinner.finish_and_clear();
    let s = result.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(print_sync(&name, &s.details, s.pulled, s.failed))
}

/// `--as-of` is not sent: the daemon's request names the connector only.
pub async fn sync_remote(r: &Remote, args: SyncArgs) -> Result<ExitCode> {
    let name = args.name;
    let s = r
        .connectors()
        .sync_connector(pb::SyncConnectorRequest { name: name.clone() })
        .await
        .map_err(describe)?
        .into_inner();
    Ok(print_sync(&name, &s.details, s.pulled, s.failed))
}

/// What a sync did; a sync that refused some input exits 1.
fn print_sync(name: &str, details: &[String], pulled: u64, failed: u64) -> ExitCode {
    for d in details {
        outln!("{d}");
    }
    outln!("{name}: {pulled} taken in, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_connectors(list: &[pb::ConnectorHealth], json: bool) -> Result<()> {
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "kind": c.kind, "every_seconds": c.every_seconds,
                    "last_attempt": c.last_attempt, "last_success": c.last_success,
                    "last_error": c.last_error, "pulled_total": c.pulled_total,
                    "errors_total": c.errors_total, "lag_seconds": c.lag_seconds,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if list.is_empty() {
        outln!("no connectors configured (config `connectors:`)");
    }
    for c in list {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        outln!(
            "{:<20} {:<16} every {:>5}s  last success {}  lag {}  pulled {}  errors {}{}",
            c.name,
            c.kind,
            c.every_seconds,
            dash(&c.last_success),
            if c.lag_seconds.is_empty() {
                "-".to_string()
            } else {
                format!("{}s", c.lag_seconds)
            },
            c.pulled_total,
            c.errors_total,
            if c.last_error.is_empty() {
                String::new()
            } else {
                format!("\n    last error: {}", c.last_error)
            }
        );
    }
    Ok(())
}
