//! `arrears serve`: the long-running daemon. gRPC API with live worklist streams,
//! scheduled and on-demand portfolio runs, hot-reloaded rules, Prometheus `/metrics`.
//!
//! Threads of work:
//! - the **runner** task owns every portfolio run, one at a time; requests that arrive
//!   while a run is going are merged into the next one;
//! - the **scheduler**, the **store poller** (changes other processes wrote) and the
//!   **rules watcher** only send requests to the runner;
//! - API reads use a small pool of read connections (WAL lets them proceed during a
//!   run); API writes share the writer connection with the runner.
//!
//! After each run the runner swaps in a fresh in-memory [`WorklistView`] and
//! broadcasts a [`Change`]; worklist pages are answered from that view, and each
//! `WatchWorklist` stream diffs its own worklist against it.

mod api;
pub mod auth;
pub mod authz;
pub mod config;
mod connectors;
mod leader;
mod limits;
pub mod metric_catalog;
mod metrics;
pub use metrics::recorder as metrics_recorder;
mod outbox;
mod runner;
mod watch;
mod worklist_view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{NaiveDate, Utc};
use tokio::sync::{broadcast, mpsc, watch as tokio_watch};
use tonic::Status;

use crate::config::ServeConfig;
pub use api::connector_health;
pub use api::message_to_pb;
pub use api::report_to_pb;
pub use api::write_off_to_pb;
pub use api::LEADER_HEALTH;
pub use api::{agreement_to_pb, dispute_ageing_to_pb, dispute_to_pb, plan_kind};
pub use api::{case_to_pb, customer_to_pb, explanation_to_pb, promise_to_pb, summary_to_pb};
use arrears_core::clock::{business_date, Clock};
use arrears_core::error::ErrorKind;
use arrears_rules::{self as rules, RuleError, RuleSet};
use arrears_store::{Store, StoreError};
use auth::Auth;
pub use runner::RunRequest;
pub use watch::entry_to_pb;
pub use worklist_view::WorklistView;

pub use arrears_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("rules {dir}: {count} error(s):\n{text}")]
    Rules {
        dir: String,
        count: usize,
        text: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Audit(#[from] arrears_store::AuditSetupError),
    #[error("{what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("refusing to serve without tokens on {0}: configure `auth.tokens` or listen on a loopback address")]
    OpenNonLoopback(SocketAddr),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("metrics recorder: {0}")]
    Metrics(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("watching rules folder {dir}: {message}")]
    Watch { dir: String, message: String },
    #[error("connectors: {0}")]
    Connectors(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The rule set in force and when it was loaded.
pub struct Loaded {
    pub set: RuleSet,
    pub loaded_at: chrono::DateTime<Utc>,
}

/// What the last failed reload said (cleared by a good one).
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub at: Option<chrono::DateTime<Utc>>,
    pub errors: Vec<RuleError>,
}

/// A change that may have moved worklists.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: u64,
    pub cause: String,
    /// Escalation steps the run decided: the outbox composes only after a run
    /// that decided some (everything else it does waits for its timer), so a
    /// stream of payments does not cost an outbox pass each.
    pub steps: u64,
}

pub struct Shared {
    pub db: PathBuf,
    pub rules_dir: PathBuf,
    pub cfg: ServeConfig,
    pub rules: ArcSwap<Loaded>,
    pub reload: Mutex<ReloadStatus>,
    writer: Arc<Mutex<Store>>,
    readers: Mutex<Vec<Store>>,
    /// Bounds concurrent reads: under overload, requests wait here (cheaply) rather
    /// than each taking a blocking thread and a connection with its own page cache.
    read_slots: tokio::sync::Semaphore,
    pub worklist: ArcSwap<WorklistView>,
    /// Set by the runner after each run; the KPI task recomputes for that date.
    kpi_due: tokio::sync::Notify,
    kpi_as_of: Mutex<Option<NaiveDate>>,
    pub connectors: connectors::Connectors,
    pub changes: broadcast::Sender<Change>,
    runs: mpsc::UnboundedSender<RunRequest>,
    pub auth: Auth,
    /// Open `WatchWorklist` streams in all; per principal in `watch_slots`.
    pub watchers: AtomicU32,
    watch_slots: limits::WatchSlots,
    watch_cache: Mutex<watch::SnapshotCache>,
    /// The portfolio as the last run left it (the runner's alone): a run loads
    /// only the customers changed since instead of the whole store.
    resident: Mutex<Option<arrears_engine::resident::Resident>>,
    seq: AtomicU64,
    pub shutdown: tokio_watch::Receiver<bool>,
    last_run: Mutex<Option<(chrono::DateTime<Utc>, NaiveDate)>>,
    pub delivery: Option<arrears_delivery::DeliveryConfig>,
    /// Audit keys and anchor: every connection that may write gets them.
    pub audit: Arc<arrears_store::AuditSetup>,
    /// The clock the binary chose: business dates by default and record stamps.
    pub clock: Arc<dyn Clock>,
    /// Whether this replica leads (runs, connectors, the outbox); always on SQLite.
    pub lead: leader::Lead,
}

const MAX_READERS: usize = 8;
/// How long shutdown waits for the outbox's message in flight (a delivery has its
/// own timeout, `delivery.*.timeout`, per network operation).
const OUTBOX_STOP: std::time::Duration = std::time::Duration::from_secs(60);

/// The one map from a failure's kind to a gRPC status: every handler's store error
/// goes through here.
pub fn code_of(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Invalid => tonic::Code::InvalidArgument,
        ErrorKind::State | ErrorKind::Audit => tonic::Code::FailedPrecondition,
        ErrorKind::Denied => tonic::Code::PermissionDenied,
        ErrorKind::Busy => tonic::Code::Unavailable,
        ErrorKind::Internal => tonic::Code::Internal,
    }
}

/// Every failure reaches a caller through here: the kind picks the code, the message
/// is the use case's without the store's prefixes, and what an operator must see is
/// logged.
pub fn app_status(e: arrears_app::AppError) -> Status {
    let (kind, msg) = (e.kind(), e.message());
    match kind {
        ErrorKind::Audit => tracing::error!(error = %msg, "audit log"),
        ErrorKind::Internal => tracing::error!(error = %msg, "store error"),
        _ => {}
    }
    Status::new(code_of(kind), msg)
}

pub fn status(e: StoreError) -> Status {
    app_status(arrears_app::AppError::from(e))
}

impl Shared {
    /// The business date: the request's, else the configured one, else today.
    pub fn as_of(&self, s: &str) -> Result<NaiveDate, Status> {
        if s.is_empty() {
            return Ok(business_date(None, self.cfg.as_of, &*self.clock));
        }
        parse_date("as_of", s)
    }

    pub fn rules(&self) -> Arc<Loaded> {
        self.rules.load_full()
    }

    fn take_reader(&self) -> Result<Store, StoreError> {
        if let Some(s) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(s);
        }
        self.open_store()?.for_short_reads()
    }

    /// A connection of its own (a long sync, the outbox), with the audit keys.
    pub fn open_store(&self) -> Result<Store, StoreError> {
        Ok(Store::open_at(&self.db.to_string_lossy())?
            .with_audit(self.audit.clone())
            .with_clock(self.clock.clone()))
    }

    fn put_reader(&self, s: Store) {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() < MAX_READERS {
            r.push(s);
        }
    }

    /// Runs `f` on a read connection off the async threads.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store, &RuleSet) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let me = self.clone();
        let _slot = self
            .read_slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let store = me.take_reader().map_err(status)?;
            let rules = me.rules();
            let out = f(&store, &rules.set);
            me.put_reader(store);
            out
        })
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
    }

    /// Runs `f` on the writer connection, then asks the runner to bring worklists up
    /// to date (an incremental run) and tell watchers, naming `cause`. The request is
    /// for the change `f` committed: the store poller sees the same commit and asks
    /// too, and the second request to reach the runner finds it loaded already. This
    /// one is sent before the writer is let go, and the poller looks only while
    /// holding the writer, so watchers hear `cause`, not the poller's "changed in
    /// the store".
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        cause: String,
        f: impl FnOnce(&mut Store, &RuleSet) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = me.writer.lock().unwrap_or_else(|p| p.into_inner());
            let rules = me.rules();
            let out = f(&mut store, &rules.set);
            if out.is_ok() {
                me.request_run(RunRequest::pending(cause));
            }
            out
        })
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
    }

    pub fn request_run(&self, r: RunRequest) {
        // The runner only stops at shutdown, when requests no longer matter.
        let _ = self.runs.send(r);
    }

    pub fn worklist(&self) -> Arc<WorklistView> {
        self.worklist.load_full()
    }

    fn publish(&self, cause: String, steps: u64) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // A run merges the causes of everything that queued up meanwhile, and some
        // name what callers sent (a statement's name): every stream is sent this.
        let cause = limits::clip(&cause, 512).into_owned();
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(Change { seq, cause, steps });
    }

    pub fn last_run(&self) -> Option<(chrono::DateTime<Utc>, NaiveDate)> {
        *self.last_run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the rules folder again; swaps only a valid set. Returns the problems of an
    /// invalid one (the last good set stays in force).
    pub async fn reload_rules(self: &Arc<Self>, principal: &str) -> Result<String, Vec<RuleError>> {
        let dir = self.rules_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || rules::load(&dir))
            .await
            .map_err(|e| {
                vec![RuleError {
                    file: self.rules_dir.clone(),
                    pos: None,
                    message: format!("loader failed: {e}"),
                }]
            })?;
        match loaded {
            Ok(set) => {
                ::metrics::counter!("arrears_rule_reloads_total", "result" => "success")
                    .increment(1);
                ::metrics::gauge!("arrears_rules_valid").set(1.0);
                // Counters appear in /metrics from the start, at zero, so that dashboards and
                // alerts (`increase(...)`) see the series before the first event.
                for result in ["success", "failure"] {
                    ::metrics::counter!("arrears_rule_reloads_total", "result" => result)
                        .increment(0);
                }
                ::metrics::counter!("arrears_script_errors_total").increment(0);
                ::metrics::counter!("arrears_script_limit_hits_total").increment(0);
                *self.reload.lock().unwrap_or_else(|p| p.into_inner()) = ReloadStatus::default();
                let old = self.rules().set.hash.clone();
                let hash = set.hash.clone();
                if hash == old {
                    tracing::debug!(%hash, "rules folder changed but the rule set did not");
                    return Ok(hash);
                }
                self.rules.store(Arc::new(Loaded {
                    set,
                    loaded_at: self.clock.now(),
                }));
                tracing::info!(from = %old, to = %hash, "rules reloaded");
                let me = self.clone();
                let (p, h, o) = (principal.to_string(), hash.clone(), old.clone());
                let audited = tokio::task::spawn_blocking(move || {
                    let store = me.writer.lock().unwrap_or_else(|p| p.into_inner());
                    store.append_audit(
                        &p,
                        "rules.reload",
                        &me.rules_dir.display().to_string(),
                        &serde_json::json!({ "hash": o }),
                        &serde_json::json!({ "hash": h }),
                    )
                })
                .await;
                // The new rules are in force either way; a reload missing from the
                // audit log (a refused or failed append) must at least be in the log.
                if let Ok(Err(e)) = audited {
                    tracing::error!(error = %e, %hash, "the rules reload could not be audited");
                }
                self.request_run(RunRequest::full("rules reloaded".into()));
                Ok(hash)
            }
            Err(errs) => {
                ::metrics::counter!("arrears_rule_reloads_total", "result" => "failure")
                    .increment(1);
                ::metrics::gauge!("arrears_rules_valid").set(0.0);
                for e in &errs.0 {
                    tracing::error!(error = %e, "rules reload rejected; keeping the last good set");
                }
                *self.reload.lock().unwrap_or_else(|p| p.into_inner()) = ReloadStatus {
                    at: Some(self.clock.now()),
                    errors: errs.0.clone(),
                };
                Err(errs.0)
            }
        }
    }
}

pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate, Status> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        Status::invalid_argument(format!(
            "{field}: `{}` is not a date (YYYY-MM-DD)",
            limits::quote(s)
        ))
    })
}

/// Options `arrears serve` takes on top of the config file.
pub struct ServeOptions {
    pub db: PathBuf,
    pub rules_dir: PathBuf,
    pub cfg: ServeConfig,
    pub auth: crate::config::AuthConfig,
    pub connectors: Vec<arrears_connectors::ConnectorConfig>,
    pub delivery: Option<arrears_delivery::DeliveryConfig>,
    pub audit: crate::config::AuditConfig,
    pub clock: Arc<dyn Clock>,
}

impl ServeOptions {
    /// The options a config file gives, for the database and rules folder the
    /// caller resolved; the caller may then override single serve settings.
    pub fn from_config(
        config: &crate::config::Config,
        db: PathBuf,
        rules_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> ServeOptions {
        ServeOptions {
            db,
            rules_dir,
            cfg: config.serve.clone(),
            auth: config.auth.clone(),
            connectors: config.connectors.clone(),
            delivery: config.delivery.clone(),
            audit: config.audit.clone(),
            clock,
        }
    }
}

/// The daemon on listeners the caller bound, until `shutdown` completes: in-flight
/// requests finish, the run in progress commits or rolls back whole, the outbox stops
/// after the message in flight. Prints one line per listening address to stdout
/// (`grpc listening on ADDR`, `metrics listening on ADDR`) so that scripts and tests
/// that asked for port 0 learn the port.
///
/// Metrics go to the process-wide recorder, which this installs: one daemon per
/// process. To run several, see [`run_with`].
pub async fn run(
    opts: ServeOptions,
    grpc: tokio::net::TcpListener,
    metrics_listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with(opts, grpc, metrics_listener, Metrics::Global, shutdown).await
}

/// Where a daemon's metrics go.
pub enum Metrics {
    /// Install the process-wide recorder (what `arrears serve` does).
    Global,
    /// A recorder the caller made with [`metrics_recorder`] and made the default of
    /// every thread the daemon runs on (`metrics::set_default_local_recorder` in the
    /// runtime's `on_thread_start`), so several daemons in one process, as in the
    /// end-to-end tests, each export only their own series.
    Local(metrics_exporter_prometheus::PrometheusHandle),
}

/// [`run`], with the choice of where metrics go.
pub async fn run_with(
    opts: ServeOptions,
    grpc: tokio::net::TcpListener,
    metrics_listener: tokio::net::TcpListener,
    recorder: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let set = rules::load(&opts.rules_dir).map_err(|errs| ServeError::Rules {
        dir: opts.rules_dir.display().to_string(),
        count: errs.0.len(),
        text: errs
            .0
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    })?;
    let auth = Auth::from_config(&opts.auth)?;
    for p in auth.principals() {
        if p.role == crate::config::Role::Supervisor && authz::Reach::of(p, &set).is_empty() {
            tracing::warn!(
                principal = %p.name,
                "this supervisor manages no collection group in the rules and has no `groups` \
                 in its token: it reaches no customer (give `groups: ['*']` for all)"
            );
        }
    }
    arrears_connectors::validate(&opts.connectors).map_err(ServeError::Connectors)?;
    let audit = Arc::new(arrears_store::AuditSetup::from_config(&opts.audit)?);
    audit.check_anchor()?;
    let db_at = opts.db.to_string_lossy().into_owned();
    let postgres = arrears_store::is_postgres_url(&db_at);
    // Serve the worklists of the last run from the first request on; the start-up
    // run replaces them. On a blocking thread: PostgreSQL's client blocks.
    let (writer, view) = {
        let (at, audit, clock) = (db_at.clone(), audit.clone(), opts.clock.clone());
        tokio::task::spawn_blocking(move || -> Result<(Store, WorklistView), StoreError> {
            let writer = Store::open_at(&at)?.with_audit(audit).with_clock(clock);
            let view = WorklistView::load(&writer)?;
            Ok((writer, view))
        })
        .await
        .map_err(|e| ServeError::Store(StoreError::Invalid(format!("opening the store: {e}"))))??
    };
    let prom = match recorder {
        Metrics::Global => metrics::install()?,
        Metrics::Local(handle) => {
            metric_catalog::register();
            handle
        }
    };

    let grpc_addr = grpc.local_addr().map_err(|source| ServeError::Listen {
        what: "gRPC listen address",
        addr: opts.cfg.grpc_listen.clone(),
        source,
    })?;
    if auth.is_open() {
        if !grpc_addr.ip().is_loopback() {
            return Err(ServeError::OpenNonLoopback(grpc_addr));
        }
        tracing::warn!(
            "no auth tokens configured: every caller is the local admin (loopback only)"
        );
    }
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| ServeError::Listen {
            what: "metrics listen address",
            addr: opts.cfg.metrics_listen.clone(),
            source,
        })?;

    let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
    let (runs_tx, runs_rx) = mpsc::unbounded_channel();
    let (changes, _) = broadcast::channel(256);
    let shared = Arc::new(Shared {
        db: opts.db.clone(),
        rules_dir: opts.rules_dir.clone(),
        cfg: opts.cfg.clone(),
        rules: ArcSwap::from_pointee(Loaded {
            set,
            loaded_at: opts.clock.now(),
        }),
        reload: Mutex::new(ReloadStatus::default()),
        writer: Arc::new(Mutex::new(writer)),
        readers: Mutex::new(Vec::new()),
        read_slots: tokio::sync::Semaphore::new(MAX_READERS),
        worklist: ArcSwap::from_pointee(view),
        kpi_due: tokio::sync::Notify::new(),
        kpi_as_of: Mutex::new(None),
        connectors: connectors::handles(&opts.connectors),
        changes,
        runs: runs_tx,
        auth,
        watchers: AtomicU32::new(0),
        watch_slots: limits::WatchSlots::default(),
        watch_cache: Mutex::new(watch::SnapshotCache::default()),
        resident: Mutex::new(None),
        seq: AtomicU64::new(0),
        shutdown: shutdown_rx,
        last_run: Mutex::new(None),
        delivery: opts.delivery.clone(),
        audit,
        clock: opts.clock.clone(),
        lead: if postgres {
            leader::Lead::replica(leader::replica_name())
        } else {
            leader::Lead::sole()
        },
    });
    ::metrics::gauge!("arrears_rules_valid").set(1.0);

    let runner = tokio::spawn(runner::run_loop(shared.clone(), runs_rx));
    if postgres {
        // The leader's first run comes when it leads; a follower shows the
        // worklists the leader's last run left.
        tracing::info!(replica = %shared.lead.name, "one of several replicas: it leads once it holds the database's leader lock");
        tokio::spawn(leader::keep(shared.clone(), db_at.clone()));
    } else {
        shared.request_run(RunRequest::auto("daemon started".into()));
    }
    let background = vec![
        tokio::spawn(runner::schedule(shared.clone())),
        tokio::spawn(runner::poll_store(shared.clone())),
        tokio::spawn(metrics::upkeep(shared.clone(), prom.clone())),
        tokio::spawn(metrics::kpis(shared.clone())),
    ];
    let outbox = tokio::spawn(outbox::work(shared.clone()));
    let _watcher = runner::watch_rules(shared.clone())?;
    let _inbox_watchers = connectors::start(&shared);

    let metrics_server = {
        let mut stop = shared.shutdown.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let prom = prom.clone();
                async move { prom.render() }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(metrics_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        })
    };

    // Not `println!`: it panics when whoever started the daemon has closed the pipe
    // (`arrears serve | head -2`), and these lines are only a courtesy; the log has them.
    let say = |line: String| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(format!("grpc listening on {grpc_addr}"));
    say(format!("metrics listening on {metrics_addr}"));
    tracing::info!(%grpc_addr, %metrics_addr, db = %arrears_store::shown_location(&opts.db.to_string_lossy()), rules = %opts.rules_dir.display(), "arrears serving");

    let mut stop = shared.shutdown.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        let _ = shutdown_tx.send(true);
    };
    tokio::spawn(signal);
    let served = api::router(shared.clone(), opts.cfg.tls.as_ref())?
        .serve_with_incoming_shutdown(
            // Without NODELAY, small responses wait on Nagle's algorithm.
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await;
    for b in background {
        b.abort();
    }
    // Not aborted: aborting would only detach the pass's blocking thread, which the
    // runtime then waits for anyway, to the end of a batch of slow deliveries. The
    // pass sees the shutdown flag and ends after the message in flight.
    match tokio::time::timeout(OUTBOX_STOP, outbox).await {
        Ok(_) => {}
        Err(_) => tracing::error!(
            secs = OUTBOX_STOP.as_secs(),
            "the outbox did not stop in time; a delivery is hanging"
        ),
    }
    // The runner finishes the run in progress (its transaction commits or rolls back
    // whole) and then stops.
    drop(shared);
    let _ = runner.await;
    let _ = metrics_server.await;
    served?;
    say("shutdown complete".into());
    Ok(())
}
