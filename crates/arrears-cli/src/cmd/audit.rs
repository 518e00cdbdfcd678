//! `arrears audit …`: the hash-chained audit log, verified and exported.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::Env;

#[derive(Subcommand)]
pub enum AuditCmd {
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
pub enum ExportFormat {
    Jsonl,
    Csv,
}

pub fn local(env: &Env, c: AuditCmd) -> Result<ExitCode> {
    match c {
        AuditCmd::Verify { anchor } => verify(env, anchor),
        AuditCmd::Export { out, format } => export(env, out, format),
    }
}

fn verify(env: &Env, anchor: Option<PathBuf>) -> Result<ExitCode> {
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

fn export(env: &Env, out: Option<PathBuf>, format: ExportFormat) -> Result<ExitCode> {
    let store = env.store()?;
    let sink: Box<dyn std::io::Write> = match &out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(crate::out::Stdout),
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
