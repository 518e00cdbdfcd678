//! `arrears`: the command-line edge. Parses arguments, opens config/store/rules and
//! hands the command to its family in `cmd/`; all logic lives in the library crates.

// Output goes through `outln!`/`out!`/`errln!` (see `out`), which survive a closed pipe.
#![warn(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use arrears::config::{Config, LogFormat};
use arrears::rules::{self, RuleSet};
use arrears::store::Store;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

#[macro_use]
mod out;
mod cmd;
#[cfg(test)]
mod help_tests;
mod print;
mod remote;

#[derive(Parser)]
#[command(
    name = "arrears",
    version,
    about = "Collections management: cases, strategies, worklists and escalation",
    after_help = "Examples:\n  arrears --db demo.db demo --as-of 2026-11-23\n  arrears --db demo.db run --as-of 2026-11-23\n  arrears --db demo.db worklist --collector chen\n  arrears --remote http://127.0.0.1:50051 worklist\n\nEvery command has its own examples: arrears <command> --help"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Global {
    /// Settings file (YAML); every key has a default, so it is optional.
    #[arg(long, global = true, env = "ARREARS_CONFIG")]
    config: Option<PathBuf>,
    /// Database: an SQLite file, or a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB) that several daemons can share [default: <data dir>/arrears/arrears.db]
    #[arg(long, global = true, env = "ARREARS_DB")]
    db: Option<PathBuf>,
    /// Rules folder [default: ./rules, else the rules shipped with the source]
    #[arg(long, global = true, env = "ARREARS_RULES")]
    rules: Option<PathBuf>,
    /// Talk to a running daemon instead of the database (worklist, case show/note/assign, run, explain, connectors, sync, promise, agreement, dispute ageing/resolve, outbox, customer contact, report, writeoff)
    #[arg(long, global = true, env = "ARREARS_REMOTE")]
    remote: Option<String>,
    /// File holding the API token for --remote, readable by its owner only (chmod 600) [default: the ARREARS_TOKEN environment variable]
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// PEM certificate of the CA that signed the daemon's TLS certificate (https:// remotes)
    #[arg(long, global = true, env = "ARREARS_CA_FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: gRPC API, scheduled runs, hot-reloaded rules, Prometheus /metrics.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml serve\n  arrears serve --grpc-listen 127.0.0.1:50051 --as-of 2026-11-23 --run-every 0s"
    )]
    Serve(cmd::serve::ServeArgs),
    /// Validate every YAML and Rhai file of a rules folder; errors name file:line:column.
    #[command(after_help = "Examples:\n  arrears check\n  arrears check ./rules-candidate")]
    Check(cmd::rules::CheckArgs),
    /// Run the rule fixtures in RULES_DIR/tests/*.yaml (customer snapshot → expected
    /// segment, score, profile, group, priority, escalation step).
    #[command(after_help = "Examples:\n  arrears test\n  arrears test ./rules-candidate")]
    Test(cmd::rules::TestArgs),
    /// Write a realistic synthetic portfolio into the database.
    #[command(
        after_help = "Example:\n  arrears --db demo.db demo --customers 200 --items 2000 --as-of 2026-11-23"
    )]
    Demo(cmd::data::DemoArgs),
    /// Import data from files.
    #[command(subcommand)]
    Import(cmd::data::ImportCmd),
    /// Copy an SQLite store into an empty PostgreSQL database (to run several daemons
    /// on it); every row with its id, checked by counts and the audit chain.
    #[command(
        after_help = "Example:\n  arrears migrate --from sqlite:arrears.db --to postgres://arrears:secret@db.internal:5432/arrears"
    )]
    Migrate(cmd::migrate::MigrateArgs),
    /// The configured connectors (config `connectors:`) and their health.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml connectors\n  arrears --remote http://127.0.0.1:50051 connectors --json"
    )]
    Connectors(cmd::connectors::ConnectorsArgs),
    /// Run one connector now.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml sync bank\n  arrears --remote http://127.0.0.1:50051 sync erp-drop"
    )]
    Sync(cmd::connectors::SyncArgs),
    /// The hash-chained audit log: verify it, export it for auditors.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Bank credits and their review queue (see `import statement`).
    #[command(subcommand)]
    Credits(cmd::credits::CreditsCmd),
    /// The portfolio run: segment, score, open/close cases, NAD/priority, escalation, worklists.
    #[command(
        after_help = "Examples:\n  arrears run --as-of 2026-11-23\n  arrears run --mode full --json\n  arrears --remote http://127.0.0.1:50051 run"
    )]
    Run(cmd::run::RunArgs),
    /// Dry-run a candidate rules folder against the stored portfolio: which customers
    /// would change segment, profile, group, priority or escalation step. Writes nothing.
    #[command(
        after_help = "Example:\n  arrears simulate ./rules-candidate --as-of 2026-11-23 --limit 10"
    )]
    Simulate(cmd::rules::SimulateArgs),
    /// A collector's worklist: assigned to them plus unassigned work of their groups.
    #[command(
        after_help = "Examples:\n  arrears worklist --collector chen --limit 20\n  ARREARS_TOKEN=… arrears --remote http://127.0.0.1:50051 worklist"
    )]
    Worklist(cmd::run::WorklistArgs),
    /// Collection cases.
    #[command(subcommand)]
    Case(cmd::cases::CaseCmd),
    /// Promises to pay: record one on several cases, list a customer's.
    #[command(subcommand)]
    Promise(cmd::promise::PromiseCmd),
    /// Messages to customers: what went out, what waits and why; one delivery pass.
    #[command(subcommand)]
    Outbox(cmd::outbox::OutboxCmd),
    /// A customer's contact data and preferences.
    #[command(subcommand)]
    Customer(cmd::customer::CustomerCmd),
    /// Disputes across the portfolio: their ageing, resolving one (open one from a case
    /// with `case dispute`).
    #[command(subcommand)]
    Dispute(cmd::dispute::DisputeCmd),
    /// Payment agreements: propose, approve, reject, show, letters.
    #[command(subcommand)]
    Agreement(cmd::agreement::AgreementCmd),
    /// A collections report over a period (conversion, open-items, promises), grouped
    /// and filtered by company, group, collector, segment or customer.
    #[command(
        after_help = "Examples:\n  arrears report conversion --from 2026-10-01 --to 2026-10-31 --within 30\n  arrears report open-items --to 2026-11-30 --by group,collector --csv\n  arrears report promises --by collector,segment --json"
    )]
    Report(cmd::report::ReportArgs),
    /// Why a customer has its segment, score, priority and escalation step.
    #[command(
        after_help = "Examples:\n  arrears explain ACME_DE/C000005 --as-of 2026-11-23\n  arrears --remote http://127.0.0.1:50051 explain ACME_DE/C000005 --json"
    )]
    Explain(cmd::run::ExplainArgs),
    /// Put a customer back on a worklist on a chosen date (and off it until then).
    #[command(
        after_help = "Example:\n  arrears resubmit ACME_DE/C000005 --on 2026-12-01 --reason \"call back after the audit\""
    )]
    Resubmit(cmd::cases::ResubmitArgs),
    /// Block dunning for a customer, with a reason and an optional end date; or, with
    /// --lift, end its holds early.
    #[command(
        after_help = "Examples:\n  arrears hold ACME_DE/C000005 --reason \"insolvency filing\" --until 2026-12-31\n  arrears hold ACME_DE/C000005 --lift --reason \"filing withdrawn\""
    )]
    Hold(cmd::cases::HoldArgs),
    /// Write-offs at the end of the collection process: propose, approve, reject,
    /// list, and the export that reports them to the ERP.
    #[command(subcommand)]
    Writeoff(cmd::writeoff::WriteoffCmd),
}

/// The binary's clock: the system's. Everything below gets it passed down (the
/// store's stamps, the daemon's default business date); this is the one place that
/// chooses it.
const CLOCK: arrears::clock::SystemClock = arrears::clock::SystemClock;

fn today() -> NaiveDate {
    use arrears::clock::Clock as _;
    CLOCK.today()
}

/// Colour codes only for a person at a terminal: in a file, a pipe or a journal they
/// are noise around every line. <https://no-color.org>: a non-empty NO_COLOR turns
/// them off there too.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

struct Env {
    db: PathBuf,
    /// No `--db`, `ARREARS_DB` or config `db`: the data directory's file, which a user
    /// who forgot `--db` did not mean; said on stderr whenever it is opened.
    db_is_default: bool,
    rules: PathBuf,
    cfg: Config,
}

impl Env {
    fn new(g: &Global) -> Result<Env> {
        let cfg = match &g.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let log = std::env::var("RUST_LOG")
            .ok()
            .or(cfg.log.clone())
            .unwrap_or_else(|| "warn".into());
        let filter = tracing_subscriber::EnvFilter::new(log);
        let _ = match cfg.log_format {
            LogFormat::Human => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(log_colour())
                .with_writer(std::io::stderr)
                .try_init(),
            LogFormat::Json => tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init(),
        };
        let given = g.db.clone().or(cfg.db.clone());
        Ok(Env {
            db_is_default: given.is_none(),
            db: given.unwrap_or_else(Config::default_db),
            rules: g
                .rules
                .clone()
                .or(cfg.rules.clone())
                .unwrap_or_else(Config::default_rules),
            cfg,
        })
    }

    /// The database of a command that works on existing data: one that does not
    /// exist is an error (a forgotten `--db` would otherwise create an empty one and
    /// report "0 entries").
    fn store(&self) -> Result<Store> {
        if !self.is_postgres() && !self.db.exists() {
            bail!(
                "no database at {}{}; give --db PATH (or ARREARS_DB), or fill one with \
                 `arrears import csv` or `arrears demo`",
                self.db.display(),
                if self.db_is_default {
                    " (the default)"
                } else {
                    ""
                }
            );
        }
        self.create_store()
    }

    /// The database of a command that may be the first to write it (demo, imports,
    /// connectors, the daemon). Every command that writes goes through here, so every
    /// one of them gets the audit key: a command without it is refused on a keyed log.
    fn create_store(&self) -> Result<Store> {
        if self.db_is_default {
            errln!(
                "database: {} (the default; --db or ARREARS_DB to choose)",
                self.db.display()
            );
        }
        let audit = arrears::store::AuditSetup::from_config(&self.cfg.audit)?;
        Ok(Store::open_at(&self.db_at())
            .with_context(|| format!("opening database {}", self.shown_db()))?
            .with_audit(std::sync::Arc::new(audit))
            .with_clock(std::sync::Arc::new(CLOCK)))
    }

    /// The database as given: a path, or a PostgreSQL URL.
    fn db_at(&self) -> String {
        self.db.to_string_lossy().into_owned()
    }

    fn is_postgres(&self) -> bool {
        arrears::store::is_postgres_url(&self.db_at())
    }

    /// The database as it may be shown: a URL without its password.
    fn shown_db(&self) -> String {
        arrears::store::shown_location(&self.db_at())
    }

    fn rules(&self) -> Result<RuleSet> {
        Ok(rules::load(&self.rules)?)
    }
}

/// mimalloc instead of the system allocator: glibc's per-thread arenas each kept
/// their high-water mark, and the daemon's memory grew by half over 100 full runs
/// at a million items (BENCHMARKS.md, "The change log and changed rows only").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match real_main(cli) {
        Ok(code) => code,
        // A reader that stopped early is not an error of the command.
        Err(e) if out::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    match out::finish() {
        Some(e) => {
            errln!("error: writing to standard output: {e}");
            ExitCode::FAILURE
        }
        None => code,
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    let env = Env::new(&cli.global)?;
    if let Some(url) = cli.global.remote.clone() {
        let token = match &cli.global.token_file {
            Some(p) => Some(
                arrears::secret::read(p)
                    .context("--token-file")?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("ARREARS_TOKEN").ok(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ca = match &cli.global.ca_file {
            Some(p) => {
                Some(std::fs::read(p).with_context(|| format!("reading CA file {}", p.display()))?)
            }
            None => None,
        };
        return rt.block_on(remote_main(&url, token, ca, cli.cmd));
    }
    match cli.cmd {
        Cmd::Serve(a) => cmd::serve::local(&env, a),
        Cmd::Check(a) => cmd::rules::check(&env, a),
        Cmd::Test(a) => cmd::rules::test(&env, a),
        Cmd::Demo(a) => cmd::data::demo(&env, a),
        Cmd::Import(c) => cmd::data::import(&env, c),
        Cmd::Migrate(a) => cmd::migrate::migrate(&env, a),
        Cmd::Connectors(a) => cmd::connectors::connectors(&env, a),
        Cmd::Sync(a) => cmd::connectors::sync(&env, a),
        Cmd::Audit(c) => cmd::audit::local(&env, c),
        Cmd::Credits(c) => cmd::credits::local(&env, c),
        Cmd::Run(a) => cmd::run::run(&env, a),
        Cmd::Simulate(a) => cmd::rules::simulate(&env, a),
        Cmd::Worklist(a) => cmd::run::worklist(&env, a),
        Cmd::Case(c) => cmd::cases::local(&env, c),
        Cmd::Promise(c) => cmd::promise::local(&env, c),
        Cmd::Outbox(c) => cmd::outbox::local(&env, c),
        Cmd::Customer(c) => cmd::customer::local(&env, c),
        Cmd::Dispute(c) => cmd::dispute::local(&env, c),
        Cmd::Agreement(c) => cmd::agreement::local(&env, c),
        Cmd::Report(a) => cmd::report::local(&env, a),
        Cmd::Explain(a) => cmd::run::explain(&env, a),
        Cmd::Resubmit(a) => cmd::cases::resubmit(&env, a),
        Cmd::Hold(a) => cmd::cases::hold(&env, a),
        Cmd::Writeoff(c) => cmd::writeoff::local(&env, c),
    }
}

async fn remote_main(
    url: &str,
    token: Option<String>,
    ca: Option<Vec<u8>>,
    cmd: Cmd,
) -> Result<ExitCode> {
    if let Cmd::Case(c) = &cmd {
        cmd::cases::refuse_remote_actor(c)?;
    }
    let r = remote::Remote::connect(url, token, ca).await?;
    match cmd {
        Cmd::Worklist(a) => cmd::run::worklist_remote(&r, a).await,
        Cmd::Case(c) => cmd::cases::remote(&r, c).await,
        Cmd::Run(a) => cmd::run::run_remote(&r, a).await,
        Cmd::Explain(a) => cmd::run::explain_remote(&r, a).await,
        Cmd::Connectors(a) => cmd::connectors::connectors_remote(&r, a).await,
        Cmd::Sync(a) => cmd::connectors::sync_remote(&r, a).await,
        Cmd::Promise(c) => cmd::promise::remote(&r, c).await,
        Cmd::Agreement(c) => cmd::agreement::remote(&r, c).await,
        Cmd::Dispute(c) => cmd::dispute::remote(&r, c).await,
        Cmd::Outbox(c) => cmd::outbox::remote(&r, c).await,
        Cmd::Customer(c) => cmd::customer::remote(&r, c).await,
        Cmd::Report(a) => cmd::report::remote(&r, a).await,
        Cmd::Writeoff(c) => cmd::writeoff::remote(&r, c).await,
        _ => Err(cmd::local_only()),
    }
}
