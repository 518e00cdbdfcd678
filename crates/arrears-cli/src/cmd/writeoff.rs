//! `arrears writeoff …`: write-offs at the end of the collection process, and the
//! export that reports them to the ERP.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use arrears::app::cases::Caller;
use arrears::server::{pb, write_off_to_pb};
use chrono::NaiveDate;
use clap::Subcommand;
use serde_json::json;

use super::{case_id, local_user};
use crate::remote::{describe, Remote};
use crate::{today, Env};

#[derive(Subcommand)]
pub enum WriteoffCmd {
    /// Propose writing off a case's item (its whole open amount); carried out at once
    /// within your role's `write_off.limits`, else it waits for approval.
    #[command(after_help = "Example:\n  arrears writeoff propose 42 --reason uncollectible")]
    Propose {
        /// Case id (or document number, on the database).
        case: String,
        /// One of the rules' `write_off.reasons`.
        #[arg(long)]
        reason: String,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending write-off (not your own proposal) and carry it out.
    #[command(after_help = "Example:\n  arrears writeoff approve 3 --note \"no assets\"")]
    Approve {
        /// Write-off id (see `writeoff list`).
        id: i64,
        /// Note recorded with the approval.
        #[arg(long, default_value = "")]
        note: String,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending write-off, saying why; the item stays in collection.
    #[command(
        after_help = "Example:\n  arrears writeoff reject 3 --reason \"hand it to the lawyer\""
    )]
    Reject {
        /// Write-off id (see `writeoff list`).
        id: i64,
        /// Why, recorded with the rejection.
        #[arg(long)]
        reason: String,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// One write-off.
    #[command(after_help = "Example:\n  arrears writeoff show 3 --json")]
    Show {
        /// Write-off id (see `writeoff list`).
        id: i64,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Write-offs, newest first.
    #[command(
        after_help = "Examples:\n  arrears writeoff list --status pending\n  arrears writeoff list --customer ACME_DE/C000005"
    )]
    List {
        /// COMPANY/CODE
        #[arg(long)]
        customer: Option<String>,
        /// pending, written_off or rejected
        #[arg(long)]
        status: Option<String>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Write the carried-out write-offs the ERP has not been given yet as CSV, then
    /// mark them reported (only once the file is written; with --dry-run never).
    #[command(
        after_help = "Examples:\n  arrears writeoff export --out writeoffs-2026-11-30.csv\n  arrears writeoff export --dry-run"
    )]
    Export {
        /// File to write [default: standard output]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Show what would be exported; mark nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn print_one(w: &pb::WriteOff, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(&to_json(w))?);
        return Ok(());
    }
    outln!(
        "write-off {} of {} ({}, case {}): {} {} — {}",
        w.id,
        w.document_no,
        w.customer,
        w.case_id,
        w.amount,
        w.currency,
        w.status
    );
    outln!(
        "  reason {}; proposed by {} on {}",
        w.reason,
        w.proposed_by,
        w.proposed_on
    );
    if !w.needs_approval.is_empty() && w.status == "pending" {
        outln!("  needs approval: {}", w.needs_approval);
    }
    if !w.decided_by.is_empty() {
        outln!(
            "  decided by {} on {}{}",
            w.decided_by,
            w.decided_on,
            if w.decision_note.is_empty() {
                String::new()
            } else {
                format!(": {}", w.decision_note)
            }
        );
    }
    if !w.reported_on.is_empty() {
        outln!("  reported to the ERP on {}", w.reported_on);
    }
    Ok(())
}

fn to_json(w: &pb::WriteOff) -> serde_json::Value {
    json!({
        "id": w.id, "customer": w.customer, "item_id": w.item_id, "source": w.source,
        "external_id": w.external_id, "document_no": w.document_no, "case_id": w.case_id,
        "status": w.status, "amount": w.amount, "currency": w.currency, "reason": w.reason,
        "proposed_by": w.proposed_by, "proposed_on": w.proposed_on,
        "needs_approval": w.needs_approval, "decided_by": w.decided_by,
        "decided_on": w.decided_on, "decision_note": w.decision_note,
        "reported_on": w.reported_on,
    })
}

fn print_list(list: &[pb::WriteOff], json: bool) -> Result<()> {
    if json {
        let v: Vec<_> = list.iter().map(to_json).collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if list.is_empty() {
        outln!("no write-offs");
    }
    for w in list {
        outln!(
            "write-off {} {} {}: {} — {} {} ({}, by {})",
            w.id,
            w.customer,
            w.document_no,
            w.status,
            w.amount,
            w.currency,
            w.reason,
            w.proposed_by
        );
    }
    Ok(())
}

/// Writes `csv` to `out` whole or not at all (a temporary file renamed), or to
/// standard output.
fn write_csv(csv: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(p) => {
            let tmp = p.with_extension("csv.tmp");
            std::fs::write(&tmp, csv).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
        }
        None => out!("{csv}"),
    }
    Ok(())
}

pub fn local(env: &Env, c: WriteoffCmd) -> Result<ExitCode> {
    let rules = env.rules()?;
    let mut store = env.store()?;
    let who = local_user();
    let caller = Caller::local_admin(&who, &who.name);
    let on_or_today = |on: Option<NaiveDate>| on.unwrap_or_else(today);
    use arrears::app::writeoffs as w;
    match c {
        WriteoffCmd::Propose {
            case,
            reason,
            on,
            json,
        } => {
            let id = case_id(&store, &case)?;
            let v = w::propose(&mut store, &rules, &caller, id, &reason, on_or_today(on))?;
            print_one(&write_off_to_pb(&v), json)?;
        }
        WriteoffCmd::Approve { id, note, on, json } => {
            let v = w::approve(&mut store, &rules, &caller, id, &note, on_or_today(on))?;
            print_one(&write_off_to_pb(&v), json)?;
        }
        WriteoffCmd::Reject {
            id,
            reason,
            on,
            json,
        } => {
            let v = w::reject(&mut store, &caller, id, &reason, on_or_today(on))?;
            print_one(&write_off_to_pb(&v), json)?;
        }
        WriteoffCmd::Show { id, json } => {
            print_one(&write_off_to_pb(&w::get(&store, &caller, id)?), json)?;
        }
        WriteoffCmd::List {
            customer,
            status,
            json,
        } => {
            let list: Vec<pb::WriteOff> =
                w::list(&store, &caller, customer.as_deref(), status.as_deref())?
                    .iter()
                    .map(write_off_to_pb)
                    .collect();
            print_list(&list, json)?;
        }
        WriteoffCmd::Export { out, dry_run } => {
            let (csv, rows) = w::export(&mut store, &caller, today(), &[])?;
            write_csv(&csv, out.as_deref())?;
            if !dry_run && !rows.is_empty() {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                w::export(&mut store, &caller, today(), &ids)?;
                errln!("{} write-off(s) exported and marked reported", ids.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remote(r: &Remote, c: WriteoffCmd) -> Result<ExitCode> {
    let mut client = r.write_offs();
    let on_str = |on: Option<NaiveDate>| on.map(|d| d.to_string()).unwrap_or_default();
    match c {
        WriteoffCmd::Propose {
            case,
            reason,
            on,
            json,
        } => {
            let case_id = case
                .parse::<i64>()
                .context("with --remote, cases are named by their ids")?;
            let v = client
                .propose_write_off(pb::ProposeWriteOffRequest {
                    case_id,
                    reason,
                    on: on_str(on),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_one(&v, json)?;
        }
        WriteoffCmd::Approve { id, note, on, json } => {
            let v = client
                .approve_write_off(pb::DecideWriteOffRequest {
                    id,
                    note,
                    on: on_str(on),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_one(&v, json)?;
        }
        WriteoffCmd::Reject {
            id,
            reason,
            on,
            json,
        } => {
            let v = client
                .reject_write_off(pb::DecideWriteOffRequest {
                    id,
                    note: reason,
                    on: on_str(on),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_one(&v, json)?;
        }
        WriteoffCmd::Show { id, json } => {
            let v = client
                .get_write_off(pb::GetWriteOffRequest { id })
                .await
                .map_err(describe)?
                .into_inner();
            print_one(&v, json)?;
        }
        WriteoffCmd::List {
            customer,
            status,
            json,
        } => {
            let list = client
                .list_write_offs(pb::ListWriteOffsRequest {
                    customer: customer.unwrap_or_default(),
                    status: status.unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner()
                .write_offs;
            print_list(&list, json)?;
        }
        WriteoffCmd::Export { out, dry_run } => {
            let e = client
                .export_write_offs(pb::ExportWriteOffsRequest { reported: vec![] })
                .await
                .map_err(describe)?
                .into_inner();
            write_csv(&e.csv, out.as_deref())?;
            if !dry_run && !e.write_offs.is_empty() {
                let ids: Vec<i64> = e.write_offs.iter().map(|w| w.id).collect();
                client
                    .export_write_offs(pb::ExportWriteOffsRequest {
                        reported: ids.clone(),
                    })
                    .await
                    .map_err(describe)?;
                errln!("{} write-off(s) exported and marked reported", ids.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
