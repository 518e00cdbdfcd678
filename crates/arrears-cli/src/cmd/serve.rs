//! `arrears serve`: the daemon.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Args;

use crate::{Env, CLOCK};

#[derive(Args)]
pub struct ServeArgs {
    /// gRPC address [default: serve.grpc_listen in the config, else 127.0.0.1:50051]
    #[arg(long)]
    grpc_listen: Option<String>,
    /// Prometheus address [default: serve.metrics_listen, else 127.0.0.1:9464]
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Fixed business date instead of today (demos, tests)
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// Run schedule, e.g. 15m, 1h; 0s turns it off [default: serve.run_every, else 15m]
    #[arg(long, value_parser = humantime::parse_duration)]
    run_every: Option<std::time::Duration>,
}

pub fn local(env: &Env, args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        grpc_listen,
        metrics_listen,
        as_of,
        run_every,
    } = args;
    let mut serve = env.cfg.serve.clone();
    if let Some(a) = grpc_listen {
        serve.grpc_listen = a;
    }
    if let Some(a) = metrics_listen {
        serve.metrics_listen = a;
    }
    if let Some(d) = as_of {
        serve.as_of = Some(d);
    }
    if let Some(e) = run_every {
        serve.run_every = e;
    }
    if env.db_is_default {
        errln!(
            "database: {} (the default; --db or ARREARS_DB to choose)",
            env.db.display()
        );
    }
    let opts = arrears::server::ServeOptions {
        db: env.db.clone(),
        rules_dir: env.rules.clone(),
        cfg: serve,
        auth: env.cfg.auth.clone(),
        connectors: env.cfg.connectors.clone(),
        delivery: env.cfg.delivery.clone(),
        audit: env.cfg.audit.clone(),
        clock: std::sync::Arc::new(CLOCK),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(arrears::server::serve(opts))?;
    Ok(ExitCode::SUCCESS)
}
