//! `arrears serve`: the daemon.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Args;

use arrears::server::{ServeError, ServeOptions};

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
    let mut opts = ServeOptions::from_config(
        &env.cfg,
        env.db.clone(),
        env.rules.clone(),
        std::sync::Arc::new(CLOCK),
    );
    let serve = &mut opts.cfg;
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        // The binary owns the process: it binds the addresses and turns SIGINT and
        // SIGTERM into the server's shutdown; the server only serves what it is given.
        let grpc = bind("gRPC listen address", &opts.cfg.grpc_listen).await?;
        let metrics = bind("metrics listen address", &opts.cfg.metrics_listen).await?;
        arrears::server::run(opts, grpc, metrics, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn bind(what: &'static str, addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen {
            what,
            addr: addr.to_string(),
            source,
        })
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
