//! `arrears demo` and `arrears import …`: data into the database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::local_principal;
use crate::{today, Env};

#[derive(Args)]
pub struct DemoArgs {
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
    /// Days of paid history before --as-of: past invoices each customer paid as it
    /// pays (for the cash forecast and its back-test) [default: none].
    #[arg(long, default_value_t = 0, value_name = "DAYS")]
    history_days: u32,
}

#[derive(Subcommand)]
pub enum ImportCmd {
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
        /// The business day the file describes: what it changes is dated by it in
        /// the items' history (a payment row's item by the payment's value date)
        /// [default: today]
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
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

pub fn demo(env: &Env, args: DemoArgs) -> Result<ExitCode> {
    let DemoArgs {
        customers,
        items,
        seed,
        as_of,
        history_days,
    } = args;
    let mut store = env.create_store()?;
    // The paid history adds about two past invoices per open one.
    let pb = indicatif::ProgressBar::new(items as u64 * if history_days > 0 { 3 } else { 1 });
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
        history_days,
    };
    let stats = arrears::demo::generate(&mut store, &opts, Some(&pb))?;
    pb.finish_and_clear();
    outln!(
        "demo portfolio written to {}: {}",
        env.shown_db(),
        serde_json::to_string(&stats)?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn import(env: &Env, c: ImportCmd) -> Result<ExitCode> {
    match c {
        ImportCmd::Csv {
            file,
            source,
            skip_invalid,
            snapshot,
            as_of,
        } => import_csv(env, &file, &source, skip_invalid, snapshot, as_of),
        ImportCmd::Statement {
            files,
            encoding,
            min_confidence,
            json,
        } => import_statements(env, &files, encoding.as_deref(), min_confidence, json),
    }
}

fn import_csv(
    env: &Env,
    file: &Path,
    source: &str,
    skip_invalid: bool,
    snapshot: bool,
    as_of: Option<chrono::NaiveDate>,
) -> Result<ExitCode> {
    let mut parsed = arrears::import::parse_csv(file, source)?;
    parsed.batch.as_of = as_of;
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
