//! `arrears`: the command-line edge. Parses arguments, opens config/store/rules and
//! calls the library; all logic lives in the `arrears` library crate.

// Output goes through `outln!`/`out!`/`errln!` (see `out`), which survive a closed pipe.
#![warn(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use arrears::app::{self, cases::Caller};
use arrears::config::{Config, LogFormat};
use arrears::engine::evaluate::evaluate;
use arrears::engine::run::{run, RunMode};
use arrears::rules::{self, RuleSet};
use arrears::store::{Scope, Store};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[macro_use]
mod out;
mod cmd;
#[cfg(test)]
mod help_tests;
mod print;
mod remote;
use cmd::{case_id, local_principal, local_user, Actor};
use rust_decimal::Decimal;

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
    /// SQLite database [default: <data dir>/arrears/arrears.db]
    #[arg(long, global = true, env = "ARREARS_DB")]
    db: Option<PathBuf>,
    /// Rules folder [default: ./rules, else the rules shipped with the source]
    #[arg(long, global = true, env = "ARREARS_RULES")]
    rules: Option<PathBuf>,
    /// Talk to a running daemon instead of the database (worklist, case show/note/assign, run, explain, connectors, sync, promise, agreement, dispute ageing/resolve, outbox, customer contact)
    #[arg(long, global = true, env = "ARREARS_REMOTE")]
    remote: Option<String>,
    /// File holding the API token for --remote, readable by its owner only (chmod 600) [default: the ARREARS_TOKEN environment variable]
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// PEM certificate of the CA that signed the daemon's TLS certificate (https:// remotes)
    #[arg(long, global = true, env = "ARREARS_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// How much of the portfolio a run recomputes; the run's own type stays free of the
/// command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// Incremental when possible (same as-of date and rules as the last run), else full.
    Auto,
    Full,
    Incremental,
}

impl From<ModeArg> for RunMode {
    fn from(m: ModeArg) -> RunMode {
        match m {
            ModeArg::Auto => RunMode::Auto,
            ModeArg::Full => RunMode::Full,
            ModeArg::Incremental => RunMode::Incremental,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: gRPC API, scheduled runs, hot-reloaded rules, Prometheus /metrics.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml serve\n  arrears serve --grpc-listen 127.0.0.1:50051 --as-of 2026-11-23 --run-every 0s"
    )]
    Serve {
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
    },
    /// Validate every YAML and Rhai file of a rules folder; errors name file:line:column.
    #[command(after_help = "Examples:\n  arrears check\n  arrears check ./rules-candidate")]
    Check {
        /// Folder to check [default: --rules]
        dir: Option<PathBuf>,
    },
    /// Run the rule fixtures in RULES_DIR/tests/*.yaml (customer snapshot → expected
    /// segment, score, profile, group, priority, escalation step).
    #[command(after_help = "Examples:\n  arrears test\n  arrears test ./rules-candidate")]
    Test {
        /// Rules folder [default: --rules]
        dir: Option<PathBuf>,
    },
    /// Write a realistic synthetic portfolio into the database.
    #[command(
        after_help = "Example:\n  arrears --db demo.db demo --customers 200 --items 2000 --as-of 2026-11-23"
    )]
    Demo {
        /// Number of customers to make.
        #[arg(long, default_value_t = 200)]
        customers: usize,
        /// Total number of open items.
        #[arg(long, default_value_t = 2000)]
        items: usize,
        /// Seed of the random generator: the same seed makes the same portfolio.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Date the portfolio is built around [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Import data from files.
    #[command(subcommand)]
    Import(ImportCmd),
    /// The configured connectors (config `connectors:`) and their health.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml connectors\n  arrears --remote http://127.0.0.1:50051 connectors --json"
    )]
    Connectors {
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Run one connector now.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml sync bank\n  arrears --remote http://127.0.0.1:50051 sync erp-drop"
    )]
    Sync {
        /// Connector name, as in the config's `connectors:` list.
        name: String,
        /// Business date [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// The hash-chained audit log: verify it, export it for auditors.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Bank credits and their review queue (see `import statement`).
    #[command(subcommand)]
    Credits(CreditsCmd),
    /// The portfolio run: segment, score, open/close cases, NAD/priority, escalation, worklists.
    #[command(
        after_help = "Examples:\n  arrears run --as-of 2026-11-23\n  arrears run --mode full --json\n  arrears --remote http://127.0.0.1:50051 run"
    )]
    Run {
        /// Business date of the run [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// auto: incremental when the as-of date and rules are those of the last run, else full; full: every customer; incremental: only changed customers (refused when impossible).
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Machine-readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Dry-run a candidate rules folder against the stored portfolio: which customers
    /// would change segment, profile, group, priority or escalation step. Writes nothing.
    #[command(
        after_help = "Example:\n  arrears simulate ./rules-candidate --as-of 2026-11-23 --limit 10"
    )]
    Simulate {
        /// The candidate rules folder (compared with --rules).
        candidate: PathBuf,
        /// Business date [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// How many changed customers to list (largest open amount first).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// A collector's worklist: assigned to them plus unassigned work of their groups.
    #[command(
        after_help = "Examples:\n  arrears worklist --collector chen --limit 20\n  ARREARS_TOKEN=… arrears --remote http://127.0.0.1:50051 worklist"
    )]
    Worklist {
        /// Whose worklist [with --remote: default the token's own]
        #[arg(long)]
        collector: Option<String>,
        /// Entries to show (the first line says how many there are in all)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Collection cases.
    #[command(subcommand)]
    Case(CaseCmd),
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
    /// Why a customer has its segment, score, priority and escalation step.
    #[command(
        after_help = "Examples:\n  arrears explain ACME_DE/C000005 --as-of 2026-11-23\n  arrears --remote http://127.0.0.1:50051 explain ACME_DE/C000005 --json"
    )]
    Explain {
        /// Customer code, COMPANY/CODE, or numeric id.
        customer: String,
        /// Business date [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Put a customer back on a worklist on a chosen date (and off it until then).
    #[command(
        after_help = "Example:\n  arrears resubmit ACME_DE/C000005 --on 2026-12-01 --reason \"call back after the audit\""
    )]
    Resubmit {
        /// Customer code, COMPANY/CODE, or numeric id.
        customer: String,
        /// The day the customer comes back on a worklist.
        #[arg(long)]
        on: NaiveDate,
        /// Why, for the collector who picks it up then.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        actor: Actor,
        /// Business date the resubmission is made on, recorded in the audit log
        /// [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Block dunning for a customer, with a reason and an optional end date; or, with
    /// --lift, end its holds early.
    #[command(
        after_help = "Examples:\n  arrears hold ACME_DE/C000005 --reason \"insolvency filing\" --until 2026-12-31\n  arrears hold ACME_DE/C000005 --lift --reason \"filing withdrawn\""
    )]
    Hold {
        /// Customer code, COMPANY/CODE, or numeric id.
        customer: String,
        /// Why; required to place a hold, recorded in the audit log when lifting.
        #[arg(long, required_unless_present = "lift")]
        reason: Option<String>,
        /// Last day of the hold; it lifts by itself afterwards.
        #[arg(long, conflicts_with = "lift")]
        until: Option<NaiveDate>,
        /// End the customer's active holds: yesterday becomes their last day, so its
        /// items are dunned again from the next run.
        #[arg(long)]
        lift: bool,
        /// Business date [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Subcommand)]
enum ImportCmd {
    /// Import open items, payments and customers from a CSV file (columns in README).
    #[command(
        after_help = "Examples:\n  arrears import csv items.csv --source erp\n  arrears import csv open-items.csv --snapshot --skip-invalid"
    )]
    Csv {
        /// The CSV file (columns in README).
        file: PathBuf,
        /// Source name for rows without a `source` column.
        #[arg(long, default_value = "csv")]
        source: String,
        /// Import the valid rows and write the bad ones beside FILE (items.csv → items.rejected.csv)
        /// (default: a file with any bad row is rejected whole).
        #[arg(long)]
        skip_invalid: bool,
        /// The file lists all open items of its sources: items missing from it are cleared.
        #[arg(long)]
        snapshot: bool,
    },
    /// Import bank statements (camt.053, camt.054, MT940; detected from the content):
    /// credits are matched to open items and clear them; the rest wait for review.
    #[command(
        after_help = "Examples:\n  arrears import statement camt053.xml\n  arrears import statement day1.sta day2.sta --encoding latin1 --json"
    )]
    Statement {
        /// Statement files, imported one by one, each in its own transaction.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Character set of MT940 files that are not UTF-8: latin1, cp852, cp850, cp437
        /// [default: UTF-8, else latin1]
        #[arg(long)]
        encoding: Option<String>,
        /// Heuristic matches (payer name and amount) at or above this confidence are
        /// applied; below it they wait for review.
        #[arg(long, default_value_t = arrears::store::MatchOptions::default().min_confidence)]
        min_confidence: rust_decimal::Decimal,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the chain with the configured keys (and the anchor file); exit 1 naming
    /// the first bad record and what is wrong with it.
    #[command(
        after_help = "Examples:\n  arrears --config arrears.yaml audit verify\n  arrears audit verify --anchor /var/lib/arrears/audit.anchor"
    )]
    Verify {
        /// Anchor file to check the log against (truncation, rewrites)
        /// [default: audit.anchor_file in the config]
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Every record with its hashes, oldest first (JSON lines, or CSV).
    #[command(
        after_help = "Examples:\n  arrears audit export --format csv --out audit.csv\n  arrears audit export | head -5"
    )]
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// jsonl: one JSON record a line; csv: one row a record.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Subcommand)]
enum CreditsCmd {
    /// The review queue: credits unmatched, only suggested, or partly unapplied.
    #[command(
        after_help = "Examples:\n  arrears credits review\n  arrears credits review --all --limit 200 --json"
    )]
    Review {
        /// Every credit, not only the queue.
        #[arg(long)]
        all: bool,
        /// Credits to show, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Apply a credit to items (document numbers, in this order) or dismiss it.
    #[command(
        after_help = "Examples:\n  arrears credits resolve 17 --item INV-DE-2026-000042 --reason \"remittance names the invoice\"\n  arrears credits resolve 18 --dismiss --reason \"own transfer\""
    )]
    Resolve {
        /// Credit id (see `credits review`).
        credit: i64,
        /// Document numbers of the open items the credit pays.
        #[arg(
            long = "item",
            required_unless_present = "dismiss",
            conflicts_with = "dismiss"
        )]
        items: Vec<String>,
        /// Not a customer payment (refund, own transfer…).
        #[arg(long)]
        dismiss: bool,
        /// Why, recorded in the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum CaseCmd {
    /// Show a case with its item, activity and history.
    #[command(
        after_help = "Examples:\n  arrears case show 42\n  arrears case show INV-DE-2026-000042 --json\n  arrears --remote http://127.0.0.1:50051 case show 42"
    )]
    Show {
        /// Case id, or a document number.
        id: String,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Add a note to one or more cases: all of them or, if one cannot take it, none.
    #[command(
        after_help = "Examples:\n  arrears case note 42 \"customer asked for a copy of the invoice\"\n  arrears case note 42 43 44 \"same contact for all three\" --actor chen"
    )]
    Note {
        /// Case ids (or document numbers, on the database), then the note's text.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<String>,
        /// The note's text.
        text: String,
        #[command(flatten)]
        actor: Actor,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// Assign cases to a collector (or release them with --to none).
    #[command(
        after_help = "Examples:\n  arrears case assign 42 43 --to chen\n  arrears case assign 42 --to none"
    )]
    Assign {
        /// Case ids (or document numbers, on the database).
        #[arg(required = true)]
        ids: Vec<String>,
        /// Collector id from the rules, or `none` to release the cases.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        actor: Actor,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// Assign an activity (category/subcategory from the rules).
    #[command(
        after_help = "Example:\n  arrears case activity 42 --category contact --subcategory first_call"
    )]
    Activity {
        /// Case id, or a document number.
        id: String,
        /// Activity category (policy.yaml `categories`).
        #[arg(long)]
        category: String,
        /// Subcategory of the category; its days to complete set the NAD.
        #[arg(long)]
        subcategory: String,
        #[command(flatten)]
        actor: Actor,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// Complete the open activity, optionally with a promise to pay.
    #[command(
        after_help = "Examples:\n  arrears case complete 42\n  arrears case complete 42 --ptp-date 2026-12-05 --ptp-amount 500.00"
    )]
    Complete {
        /// Case id, or a document number.
        id: String,
        /// Promise to pay: the date the customer promised (with --ptp-amount).
        #[arg(long, requires = "ptp_amount")]
        ptp_date: Option<NaiveDate>,
        /// Promise to pay: the amount promised (with --ptp-date).
        #[arg(long, requires = "ptp_date")]
        ptp_amount: Option<Decimal>,
        #[command(flatten)]
        actor: Actor,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// Open a dispute on the case's item (it leaves dunning until resolved).
    #[command(
        after_help = "Example:\n  arrears case dispute 42 --reason \"goods returned damaged\""
    )]
    Dispute {
        /// Case id, or a document number.
        id: String,
        /// What the customer disputes.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        actor: Actor,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
    },
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
        if !self.db.exists() {
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
        Ok(Store::open(&self.db)
            .with_context(|| format!("opening database {}", self.db.display()))?
            .with_audit(std::sync::Arc::new(audit))
            .with_clock(std::sync::Arc::new(CLOCK)))
    }

    fn rules(&self) -> Result<RuleSet> {
        Ok(rules::load(&self.rules)?)
    }
}

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
        Cmd::Serve {
            grpc_listen,
            metrics_listen,
            as_of,
            run_every,
        } => {
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
        Cmd::Check { dir } => {
            let dir = dir.unwrap_or(env.rules.clone());
            match rules::load(&dir) {
                Ok(r) => {
                    outln!(
                        "{}: ok (rules {}; {} strategies, {} groups, {} ladders, {} scripts)",
                        dir.display(),
                        r.hash,
                        r.strategies.len(),
                        r.groups.len(),
                        r.ladders.len(),
                        r.scripts.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errs) => {
                    for e in &errs.0 {
                        errln!("{e}");
                    }
                    errln!("{}: {} error(s)", dir.display(), errs.0.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Test { dir } => {
            let dir = dir.unwrap_or(env.rules.clone());
            let rules = rules::load(&dir)?;
            let outcomes = rules::fixtures::run_all(&rules, &dir.join("tests"))?;
            let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
            for o in &outcomes {
                let place = match o.line {
                    Some(l) => format!("{}:{l}", o.file.display()),
                    None => o.file.display().to_string(),
                };
                if o.failures.is_empty() {
                    outln!("ok    {place}: {}", o.name);
                } else {
                    outln!("FAIL  {place}: {}", o.name);
                    for f in &o.failures {
                        outln!("        {f}");
                    }
                }
            }
            outln!("{} passed, {failed} failed", outcomes.len() - failed);
            Ok(if failed == 0 && !outcomes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Demo {
            customers,
            items,
            seed,
            as_of,
        } => {
            let mut store = env.create_store()?;
            let pb = indicatif::ProgressBar::new(items as u64);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} items ({per_sec}, eta {eta})",
                )?
                .progress_chars("=> "),
            );
            pb.set_message("demo");
            let opts = arrears::demo::DemoOptions {
                customers,
                items,
                seed,
                as_of: as_of.unwrap_or_else(today),
            };
            let stats = arrears::demo::generate(&mut store, &opts, Some(&pb))?;
            pb.finish_and_clear();
            outln!(
                "demo portfolio written to {}: {}",
                env.db.display(),
                serde_json::to_string(&stats)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Connectors { json } => {
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
            print_connectors(&list, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sync { name, as_of } => {
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
        Cmd::Audit(AuditCmd::Verify { anchor }) => {
            let store = env.store()?;
            let anchor = anchor.or_else(|| env.cfg.audit.anchor_file.clone());
            let v = store.verify_audit(anchor.as_deref())?;
            if let Some((id, problem)) = &v.problem {
                errln!("audit log broken at record {id}: {problem}");
                return Ok(ExitCode::FAILURE);
            }
            print_audit_verdict(&v, anchor.as_deref());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit(AuditCmd::Export { out, format }) => {
            let store = env.store()?;
            let sink: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(out::Stdout),
            };
            let w = std::io::BufWriter::new(sink);
            // Pages of 10k records: the log can be larger than memory should hold.
            let mut pages = {
                let mut after = 0;
                std::iter::from_fn(move || {
                    let batch = store.audit_records(after, 10_000);
                    match &batch {
                        Ok(b) if b.is_empty() => None,
                        Ok(b) => {
                            after = b.last().map_or(after, |r| r.id);
                            Some(batch)
                        }
                        Err(_) => Some(batch),
                    }
                })
            };
            let mut n = 0;
            match format {
                ExportFormat::Csv => {
                    let mut c = csv::Writer::from_writer(w);
                    for page in &mut pages {
                        for r in page? {
                            c.serialize(&r)?;
                            n += 1;
                        }
                    }
                    c.flush()?;
                }
                ExportFormat::Jsonl => {
                    use std::io::Write;
                    let mut w = w;
                    for page in &mut pages {
                        for r in page? {
                            serde_json::to_writer(&mut w, &r)?;
                            writeln!(w)?;
                            n += 1;
                        }
                    }
                    w.flush()?;
                }
            }
            if let Some(p) = &out {
                errln!("{n} audit record(s) written to {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Credits(CreditsCmd::Review { all, limit, json }) => {
            let store = env.store()?;
            let list = store.list_credits(!all, limit)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                outln!("the review queue is empty");
            }
            if !json {
                for c in &list {
                    let items: Vec<String> = c
                        .allocations
                        .iter()
                        .map(|(d, a, k)| format!("{d} {a} ({k})"))
                        .collect();
                    outln!(
                        "credit {:>6}  {} {}  {}  {}:{}  {}{}{}",
                        c.id,
                        c.amount,
                        c.currency,
                        c.status,
                        c.file,
                        c.line,
                        c.debtor_name.as_deref().unwrap_or("-"),
                        if items.is_empty() {
                            String::new()
                        } else {
                            format!("  → {}", items.join(", "))
                        },
                        if c.remittance.is_empty() {
                            String::new()
                        } else {
                            format!("  \"{}\"", c.remittance.replace('\n', " "))
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Credits(CreditsCmd::Resolve {
            credit,
            items,
            dismiss,
            reason,
        }) => {
            let mut store = env.store()?;
            let how = if dismiss {
                arrears::store::Resolution::Dismiss
            } else {
                arrears::store::Resolution::Apply(
                    items
                        .iter()
                        .map(|d| store.open_item_by_document(d))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            };
            let who = local_principal();
            let c = store.audited(&who, "credit.resolve", &format!("credit {credit}"), |st| {
                let before = serde_json::json!(st.credit(credit)?);
                let c = st.resolve_credit(credit, &how, &reason)?;
                let after = serde_json::json!(c);
                Ok::<_, arrears::store::StoreError>((c, before, after))
            })?;
            outln!(
                "credit {}: {} (applied {} {}, unapplied {})",
                c.id,
                c.status,
                c.applied,
                c.currency,
                c.unapplied
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import(ImportCmd::Csv {
            file,
            source,
            skip_invalid,
            snapshot,
        }) => import_csv(&env, &file, &source, skip_invalid, snapshot),
        Cmd::Import(ImportCmd::Statement {
            files,
            encoding,
            min_confidence,
            json,
        }) => import_statements(&env, &files, encoding.as_deref(), min_confidence, json),
        Cmd::Run { as_of, mode, json } => {
            let rules = env.rules()?;
            let mut store = env.store()?;
            let as_of = as_of.unwrap_or_else(today);
            arrears::engine::run::settle(
                &mut store,
                &rules,
                as_of,
                env.cfg.serve.promise_tolerance_days,
            )?;
            let sum = run(&mut store, &rules, as_of, mode.into())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&sum)?);
            } else {
                print::run_summary(&arrears::server::summary_to_pb(&sum))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate {
            candidate,
            as_of,
            limit,
            json,
        } => simulate(&env, &candidate, as_of.unwrap_or_else(today), limit, json),
        Cmd::Worklist {
            collector,
            limit,
            json,
        } => {
            let collector = collector.context("--collector is required")?;
            let rules = env.rules()?;
            let store = env.store()?;
            let groups: Vec<String> = rules
                .collector_groups(&collector)
                .iter()
                .map(|g| g.name.clone())
                .collect();
            if groups.is_empty() {
                bail!(
                    "collector `{collector}` is not in any collection group of {}",
                    env.rules.display()
                );
            }
            let q = arrears::store::WorklistQuery {
                scope: arrears::store::WorklistScope::Collector {
                    id: collector.clone(),
                    groups,
                },
                limit,
                ..Default::default()
            };
            let (list, total) = store.worklist_page(&q)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let base = rules.rates.base.to_string();
                let page = arrears::server::pb::WorklistPage {
                    entries: list
                        .iter()
                        .map(|e| arrears::server::entry_to_pb(e, &base))
                        .collect(),
                    next_page_token: String::new(),
                    total: total as u32,
                };
                print::worklist(&page, &collector);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Case(c) => case_cmd(&env, c),
        Cmd::Promise(c) => cmd::promise::local(&env, c),
        Cmd::Agreement(c) => cmd::agreement::local(&env, c),
        Cmd::Dispute(c) => cmd::dispute::local(&env, c),
        Cmd::Outbox(c) => cmd::outbox::local(&env, c),
        Cmd::Customer(c) => cmd::customer::local(&env, c),
        Cmd::Explain {
            customer,
            as_of,
            json,
        } => explain(&env, &customer, as_of.unwrap_or_else(today), json),
        Cmd::Resubmit {
            customer,
            on,
            reason,
            actor,
            as_of,
        } => {
            let made = as_of.unwrap_or_else(today);
            let mut store = env.store()?;
            let who = local_user();
            let caller = Caller::local_admin(&who, actor.name());
            app::customers::resubmit(&mut store, &caller, &customer, on, &reason, made)?;
            outln!("customer {customer} resubmitted on {made} for {on}");
            if on <= made {
                // Accepted (scripts back-fill past resubmissions), but it is not the
                // future date a resubmission is usually for.
                errln!("note: {on} is not after {made}: the customer is due from the next run");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Hold {
            customer,
            reason,
            until: _,
            lift: true,
            as_of,
        } => {
            let mut store = env.store()?;
            let id = store.customer_id(&customer)?;
            let on = as_of.unwrap_or_else(today);
            let n = store.audited(&local_principal(), "customer.hold_lift", &customer, |st| {
                let before = st.active_holds(id, on)?;
                let n = st.lift_holds(id, on)?;
                let before = serde_json::json!({ "customer": id, "holds": before.iter()
                    .map(|(r, u)| serde_json::json!({ "reason": r, "until": u })).collect::<Vec<_>>() });
                let after = serde_json::json!({ "customer": id, "lifted": n, "on": on, "reason": reason });
                Ok::<_, arrears::store::StoreError>((n, before, after))
            })?;
            outln!(
                "customer {customer}: {n} hold(s) lifted as of {on}; its items are dunned again from the next run"
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Hold {
            customer,
            reason,
            until,
            lift: false,
            as_of,
        } => {
            let reason = reason.context("--reason is required to place a hold")?;
            let mut store = env.store()?;
            let id = store.customer_id(&customer)?;
            store.audited(&local_principal(), "customer.hold", &customer, |st| {
                st.add_hold(id, &reason, until, as_of.unwrap_or_else(today))?;
                let after = serde_json::json!({ "customer": id, "reason": reason, "until": until });
                Ok::<_, arrears::store::StoreError>(((), serde_json::json!(null), after))
            })?;
            outln!(
                "customer {customer} on hold ({reason}){}",
                until.map(|u| format!(" until {u}")).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn remote_main(
    url: &str,
    token: Option<String>,
    ca: Option<Vec<u8>>,
    cmd: Cmd,
) -> Result<ExitCode> {
    use arrears::server::pb;
    use remote::describe;
    if let Cmd::Case(CaseCmd::Note { actor, .. } | CaseCmd::Assign { actor, .. }) = &cmd {
        actor.refuse_remote()?;
    }
    let r = remote::Remote::connect(url, token, ca).await?;
    match cmd {
        Cmd::Worklist {
            collector,
            limit,
            json,
        } => {
            let scope = pb::WorklistScope {
                scope: Some(match collector.clone() {
                    Some(c) => pb::worklist_scope::Scope::Collector(c),
                    None => pb::worklist_scope::Scope::Mine(true),
                }),
            };
            let page = r
                .worklists()
                .get_worklist(pb::GetWorklistRequest {
                    scope: Some(scope),
                    filter: None,
                    page_size: limit.clamp(1, 1000) as u32,
                    page_token: String::new(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                remote::worklist_json(&page)?;
            } else {
                let whose = collector.as_deref().unwrap_or("yours");
                print::worklist(&page, whose);
            }
        }
        Cmd::Case(CaseCmd::Show { id, json }) => {
            let c = r
                .cases()
                .get_case(pb::GetCaseRequest { id })
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                print::json(&c)?;
            } else {
                print::case(&c);
            }
        }
        Cmd::Case(CaseCmd::Note { ids, text, on, .. }) => {
            let case_ids = cmd::remote_case_ids(&ids)?;
            let on = on.map(|d| d.to_string()).unwrap_or_default();
            if let [case_id] = case_ids[..] {
                let c = r
                    .cases()
                    .add_note(pb::AddNoteRequest { case_id, text, on })
                    .await
                    .map_err(describe)?
                    .into_inner();
                outln!("note added to case {}", c.id);
            } else {
                let n = r
                    .cases()
                    .add_notes(pb::AddNotesRequest { case_ids, text, on })
                    .await
                    .map_err(describe)?
                    .into_inner();
                outln!("note added to {} case(s)", n.noted);
            }
        }
        Cmd::Case(CaseCmd::Assign { ids, to, on, .. }) => {
            let case_ids = cmd::remote_case_ids(&ids)?;
            let n = r
                .cases()
                .assign_cases(pb::AssignCasesRequest {
                    case_ids,
                    collector: if to == "none" {
                        String::new()
                    } else {
                        to.clone()
                    },
                    on: on.map(|d| d.to_string()).unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            outln!("{} case(s) assigned to {to}", n.assigned);
        }
        Cmd::Run { as_of, mode, json } => {
            let s = r
                .admin()
                .trigger_run(pb::TriggerRunRequest {
                    full: matches!(mode, ModeArg::Full),
                    as_of: as_of.map(|d| d.to_string()).unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                outln!("{}", s.summary_json);
            } else {
                print::run_summary(&s)?;
            }
        }
        Cmd::Explain {
            customer,
            as_of,
            json,
        } => {
            let e = r
                .explain()
                .explain_customer(pb::ExplainRequest {
                    customer,
                    as_of: as_of.map(|d| d.to_string()).unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                print::json(&e)?;
            } else {
                print::explanation(&e)?;
            }
        }
        Cmd::Connectors { json } => {
            let list = r
                .connectors()
                .list_connectors(pb::ListConnectorsRequest {})
                .await
                .map_err(describe)?
                .into_inner()
                .connectors;
            print_connectors(&list, json)?;
        }
        Cmd::Sync { name, .. } => {
            let s = r
                .connectors()
                .sync_connector(pb::SyncConnectorRequest { name: name.clone() })
                .await
                .map_err(describe)?
                .into_inner();
            return Ok(print_sync(&name, &s.details, s.pulled, s.failed));
        }
        Cmd::Promise(c) => return cmd::promise::remote(&r, c).await,
        Cmd::Agreement(c) => return cmd::agreement::remote(&r, c).await,
        Cmd::Dispute(c) => return cmd::dispute::remote(&r, c).await,
        Cmd::Outbox(c) => return cmd::outbox::remote(&r, c).await,
        Cmd::Customer(c) => return cmd::customer::remote(&r, c).await,
        _ => return Err(cmd::local_only()),
    }
    Ok(ExitCode::SUCCESS)
}

fn case_cmd(env: &Env, c: CaseCmd) -> Result<ExitCode> {
    match c {
        CaseCmd::Show { id, json } => {
            let store = env.store()?;
            let d = store.case_detail(case_id(&store, &id)?)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(ExitCode::SUCCESS);
            }
            let c = arrears::server::case_to_pb(&d, &store)
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            print::case(&c);
            Ok(ExitCode::SUCCESS)
        }
        CaseCmd::Note {
            ids,
            text,
            actor,
            on,
        } => {
            let rules = env.rules()?;
            let mut store = env.store()?;
            let ids = ids
                .iter()
                .map(|i| case_id(&store, i))
                .collect::<Result<Vec<_>>>()?;
            let on = on.unwrap_or_else(today);
            let who = local_user();
            let caller = Caller::local_admin(&who, actor.name());
            // One transaction: a case that cannot take the note (closed, unknown) leaves
            // every case as it was.
            app::cases::add_notes(&mut store, &rules, &caller, &ids, &text, on)?;
            match ids[..] {
                [id] => outln!("note added to case {id}"),
                _ => outln!("note added to {} case(s)", ids.len()),
            }
            Ok(ExitCode::SUCCESS)
        }
        CaseCmd::Assign { ids, to, actor, on } => {
            let rules = env.rules()?;
            let mut store = env.store()?;
            let to = (to != "none").then_some(to);
            let ids = ids
                .iter()
                .map(|i| case_id(&store, i))
                .collect::<Result<Vec<_>>>()?;
            let who = local_user();
            let caller = Caller::local_admin(&who, actor.name());
            let n = app::cases::assign(
                &mut store,
                &rules,
                &caller,
                &ids,
                to.as_deref(),
                on.unwrap_or_else(today),
            )?;
            outln!(
                "{n} case(s) assigned to {}",
                to.as_deref().unwrap_or("nobody")
            );
            Ok(ExitCode::SUCCESS)
        }
        CaseCmd::Activity {
            id,
            category,
            subcategory,
            actor,
            on,
        } => {
            let rules = env.rules()?;
            let Some(sub) = rules.subcategory(&category, &subcategory) else {
                bail!(
                    "no subcategory `{category}/{subcategory}` in {}",
                    env.rules.display()
                );
            };
            let mut store = env.store()?;
            let id = case_id(&store, &id)?;
            let who = local_user();
            let caller = Caller::local_admin(&who, actor.name());
            let (_, nad) = app::cases::set_activity(
                &mut store,
                &rules,
                &caller,
                id,
                &category,
                &subcategory,
                on.unwrap_or_else(today),
            )?;
            outln!(
                "case {id}: {category}/{subcategory} due {nad}\n  instruction: {}",
                sub.instruction
            );
            Ok(ExitCode::SUCCESS)
        }
        CaseCmd::Complete {
            id,
            ptp_date,
            ptp_amount,
            actor,
            on,
        } => {
            let rules = env.rules()?;
            let mut store = env.store()?;
            let id = case_id(&store, &id)?;
            let ptp = ptp_date.zip(ptp_amount);
            let who = local_user();
            let caller = Caller::local_admin(&who, actor.name());
            let (_, nad) = app::cases::complete_activity(
                &mut store,
                &rules,
                &caller,
                id,
                on.unwrap_or_else(today),
                ptp,
            )?;
            outln!("case {id}: activity completed; next activity due {nad}");
            Ok(ExitCode::SUCCESS)
        }
        CaseCmd::Dispute {
            id,
            reason,
            actor,
            on,
        } => {
            let mut store = env.store()?;
            let id = case_id(&store, &id)?;
            let who = local_user();
            let caller = Caller::local_admin(&who, actor.name());
            let d = app::disputes::open(
                &mut store,
                &caller,
                id,
                &[],
                &reason,
                on.unwrap_or_else(today),
            )?;
            outln!("dispute {} opened on case {id}", d.id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn explain(env: &Env, customer: &str, as_of: NaiveDate, json: bool) -> Result<ExitCode> {
    let rules = env.rules()?;
    let store = env.store()?;
    let id = store.customer_id(customer)?;
    let input = store
        .load_run_input(Scope::One(id))?
        .pop()
        .context("customer vanished")?;
    if json {
        let ev = evaluate(&rules, as_of, &input, true)?;
        let t = ev.trace.as_deref().context("no trace")?;
        let v = serde_json::json!({
            "customer": format!("{}/{}", input.customer.company, input.customer.code),
            "as_of": as_of,
            "rules_hash": rules.hash,
            "facts": ev.facts,
            "strategy": rules.strategies[ev.strategy].name,
            "profile": ev.profile,
            "group": rules.groups[ev.group].name,
            "priority": ev.priority,
            "trace": t,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let e = arrears::server::explanation_to_pb(&rules, as_of, &input)?;
    print::explanation(&e)?;
    Ok(ExitCode::SUCCESS)
}

fn simulate(
    env: &Env,
    candidate: &Path,
    as_of: NaiveDate,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    let current = env.rules()?;
    let cand = match rules::load(candidate) {
        Ok(r) => r,
        Err(errs) => {
            for e in &errs.0 {
                errln!("{e}");
            }
            bail!(
                "candidate rules in {} do not compile ({} error(s)); nothing simulated",
                candidate.display(),
                errs.0.len()
            );
        }
    };
    let store = env.store()?;
    let rep = arrears::engine::simulate::simulate(&store, &current, &cand, as_of, limit)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&rep)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "simulation as of {as_of}: rules {} -> {} ({}): {} of {} customers change",
        rep.current_rules,
        rep.candidate_rules,
        candidate.display(),
        rep.changed,
        rep.customers
    );
    for (field, ts) in &rep.transitions {
        outln!("  {field}:");
        let mut ts: Vec<_> = ts.iter().collect();
        ts.sort_by(|a, b| b.1.cmp(a.1));
        for (t, n) in ts {
            outln!("    {n:>7}  {t}");
        }
    }
    if !rep.examples.is_empty() {
        outln!("  largest changed customers:");
    }
    for c in &rep.examples {
        let diffs: Vec<String> = c
            .changed
            .iter()
            .map(|f| {
                let (b, a) = match *f {
                    "strategy" => (&c.before.strategy, &c.after.strategy),
                    "segment" => (&c.before.segment, &c.after.segment),
                    "profile" => (&c.before.profile, &c.after.profile),
                    "group" => (&c.before.group, &c.after.group),
                    "priority" => (&c.before.priority, &c.after.priority),
                    _ => (&c.before.step, &c.after.step),
                };
                format!("{f} {b} -> {a}")
            })
            .collect();
        outln!(
            "    {:<18} score {} -> {}; {}",
            c.customer,
            c.before.score,
            c.after.score,
            diffs.join("; ")
        );
    }
    for p in &rep.problems {
        outln!("  problem: {p}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Each file is parsed, matched and applied on its own, in one transaction: a bad
/// file is reported (file:line) and leaves the store as it was; the others go on.
fn import_statements(
    env: &Env,
    files: &[PathBuf],
    encoding: Option<&str>,
    min_confidence: rust_decimal::Decimal,
    json: bool,
) -> Result<ExitCode> {
    let mut store = env.create_store()?;
    let opts = arrears::store::MatchOptions { min_confidence };
    let mut failed = 0;
    let mut out = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let result = std::fs::read(path)
            .with_context(|| format!("reading {name}"))
            .and_then(|raw| {
                let parsed = arrears::statement::parse(&raw, &name, encoding)?;
                let who = local_principal();
                Ok(store.import_statement_as(&who, &name, &raw, &parsed, &opts)?)
            });
        match result {
            Ok(r) => {
                if !json {
                    print_statement_report(&r);
                }
                out.push(serde_json::to_value(&r)?);
            }
            Err(e) => {
                failed += 1;
                errln!("error: {e:#}");
                out.push(serde_json::json!({ "file": name, "error": format!("{e:#}") }));
            }
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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

fn print_connectors(list: &[arrears::server::pb::ConnectorHealth], json: bool) -> Result<()> {
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

fn print_audit_verdict(v: &arrears::store::AuditVerdict, anchor: Option<&Path>) {
    let keyed: u64 = v.keyed.values().sum();
    let keys = v
        .keyed
        .iter()
        .map(|(k, n)| format!("{n} with key `{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    outln!(
        "audit log intact: {} record(s) ({})",
        v.records,
        match (keyed, v.records - keyed) {
            (0, _) => "none keyed: plain SHA-256 links, which anyone who can write the database can recompute".to_string(),
            (_, 0) => keys,
            (_, plain) => format!("{plain} unkeyed from before keying, {keys}"),
        }
    );
    match (anchor, v.anchored) {
        (None, _) => outln!(
            "no anchor checked (--anchor or audit.anchor_file): deleted newest records would go unnoticed"
        ),
        (Some(a), None) => outln!("anchor {}: empty, nothing anchored yet", a.display()),
        (Some(a), Some(n)) if n >= v.last_id => {
            outln!("anchor {}: anchored up to record {n}", a.display())
        }
        (Some(a), Some(n)) => outln!(
            "anchor {}: anchored up to record {n}; records {}..{} not yet anchored",
            a.display(),
            n + 1,
            v.last_id
        ),
    }
}

fn print_statement_report(r: &arrears::store::ImportReport) {
    use arrears::store::CreditStatus;
    if r.duplicate_file {
        outln!("{}: already imported; nothing done", r.file);
        return;
    }
    outln!(
        "{}: {} ({}), {} statement(s){}",
        r.file,
        r.format,
        r.version,
        r.statements,
        if r.duplicate_statements > 0 {
            format!(", {} already imported and skipped", r.duplicate_statements)
        } else {
            String::new()
        }
    );
    let applied: Vec<String> = r.applied.iter().map(|(c, a)| format!("{a} {c}")).collect();
    outln!(
        "  credits {}: matched {}, partially matched {}, for review {}, unmatched {}; debits {}, skipped {}{}",
        r.credits,
        r.matched,
        r.partial,
        r.review,
        r.unmatched,
        r.debits,
        r.skipped,
        if applied.is_empty() {
            String::new()
        } else {
            format!("; applied {}", applied.join(", "))
        }
    );
    for o in &r.outcomes {
        if o.status == CreditStatus::Matched {
            continue;
        }
        let items: Vec<&str> = o
            .allocations
            .iter()
            .map(|a| a.document_no.as_str())
            .collect();
        outln!(
            "  line {:>5}: {} {} {:?}{}{}",
            o.line,
            o.amount,
            o.currency,
            o.status,
            if items.is_empty() {
                String::new()
            } else {
                format!(" → {}", items.join(", "))
            },
            if o.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.note)
            }
        );
    }
}

fn import_csv(
    env: &Env,
    file: &Path,
    source: &str,
    skip_invalid: bool,
    snapshot: bool,
) -> Result<ExitCode> {
    let mut parsed = arrears::import::parse_csv(file, source)?;
    let mut store = env.create_store()?;
    parsed.refuse_unknown_item_refs(|s, e| store.item_exists(s, e))?;
    let bad = parsed.rejected.len();
    if bad > 0 && !skip_invalid {
        for e in &parsed.errors {
            errln!("{}: {e}", file.display());
        }
        bail!(
            "{}: {bad} of {} rows are invalid; nothing was imported (fix them, or use --skip-invalid to import the {} valid rows)",
            file.display(),
            parsed.rows,
            parsed.rows - bad
        );
    }
    if bad > 0 {
        let rejects = file.with_extension("rejected.csv");
        arrears::import::write_rejects(&rejects, &parsed.headers, &parsed.rejected, &parsed.errors)
            .with_context(|| format!("writing {}", rejects.display()))?;
        for e in &parsed.errors {
            errln!("{}: skipped {e}", file.display());
        }
        errln!("{bad} rejected row(s) written to {}", rejects.display());
    }
    if snapshot {
        // Only sources whose every item row was valid: a rejected row must not make its
        // item look missing from the snapshot and get it cleared.
        parsed.batch.snapshot_sources = parsed.snapshot_sources(source);
    }
    let stats = store.ingest(&parsed.batch)?;
    outln!(
        "{}: {} rows, {} imported, {bad} rejected; items new {} updated {} unchanged {} cleared {}; payments new {} updated {}; customers new {} updated {}",
        file.display(),
        parsed.rows,
        parsed.rows - bad,
        stats.items_new,
        stats.items_updated,
        stats.items_unchanged,
        stats.items_cleared,
        stats.payments_new,
        stats.payments_updated,
        stats.customers_new,
        stats.customers_updated
    );
    if stats.payments_new + stats.payments_updated > 0 {
        // Item rows carry the open amount the ERP computed; subtracting payments as well
        // would count them twice.
        outln!(
            "  payments are recorded for promises and KPIs; open amounts come from the item rows"
        );
    }
    Ok(ExitCode::SUCCESS)
}
