//! `arrears agreement …`: payment agreements, from proposal to letters.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use arrears::app::cases::Caller;
use arrears::server::{agreement_to_pb, pb, plan_kind};
use arrears::store::Proposal;
use chrono::NaiveDate;
use clap::Subcommand;
use rust_decimal::Decimal;
use serde_json::json;

use super::{case_id, local_user, remote_case_ids};
use crate::remote::{describe, Remote};
use crate::{today, Env};

#[derive(Subcommand)]
pub enum AgreementCmd {
    /// Price the cases' items and propose an instalment plan.
    #[command(
        after_help = "Example:\n  arrears agreement propose 42 43 --plan price --installments 6 --first-due 2026-12-15 --discount 5"
    )]
    Propose {
        /// Case ids (or document numbers, on the database).
        #[arg(required = true)]
        cases: Vec<String>,
        /// price (equal instalments with interest), sac (constant amortisation), no_interest
        #[arg(long)]
        plan: String,
        /// Number of instalments.
        #[arg(long)]
        installments: u32,
        /// Due date of the first instalment; the others follow monthly.
        #[arg(long)]
        first_due: NaiveDate,
        /// Share of the updated debt waived, in percent.
        #[arg(long, default_value = "0")]
        discount: Decimal,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending agreement (not your own proposal).
    #[command(
        after_help = "Example:\n  arrears agreement approve 3 --note \"within the plan policy\""
    )]
    Approve {
        /// Agreement id (see `agreement list`).
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
    /// Reject a pending agreement, saying why.
    #[command(
        after_help = "Example:\n  arrears agreement reject 3 --reason \"first instalment too late\""
    )]
    Reject {
        /// Agreement id (see `agreement list`).
        id: i64,
        /// Why, recorded with the rejection and told to the proposer.
        #[arg(long)]
        reason: String,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// One agreement: the computation per item and the schedule.
    #[command(
        after_help = "Examples:\n  arrears agreement show 3\n  arrears agreement show 3 --json"
    )]
    Show {
        /// Agreement id (see `agreement list`).
        id: i64,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Agreements, newest first.
    #[command(
        after_help = "Examples:\n  arrears agreement list\n  arrears agreement list --customer ACME_DE/C000005"
    )]
    List {
        /// COMPANY/CODE
        #[arg(long)]
        customer: Option<String>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Write an agreement's letter (debt recognition, acquittance) as print-ready
    /// HTML, or as PDF/A with --pdf.
    #[command(
        after_help = "Examples:\n  arrears agreement letter 3 --out agreement-3.html\n  arrears agreement letter 3 --pdf agreement-3.pdf\n  arrears agreement letter 3 --kind acquittance"
    )]
    Letter {
        /// Agreement id (see `agreement list`).
        id: i64,
        /// Which letter: debt_recognition or acquittance.
        #[arg(long, default_value = "debt_recognition")]
        kind: String,
        /// HTML file to write [default: standard output, unless --pdf]
        #[arg(long)]
        out: Option<PathBuf>,
        /// PDF file to write: the same letter laid out on A4.
        #[arg(long)]
        pdf: Option<PathBuf>,
    },
}

fn print_agreement(a: &pb::Agreement, json: bool) -> Result<()> {
    if json {
        let v = json!({
            "id": a.id, "customer": a.customer, "status": a.status, "currency": a.currency,
            "as_of": a.as_of, "plan": a.plan, "installments": a.installments,
            "monthly_rate": a.monthly_rate, "first_due": a.first_due, "principal": a.principal,
            "fine": a.fine, "interest": a.interest, "costs": a.costs,
            "discount_percent": a.discount_percent, "discount": a.discount, "debt": a.debt,
            "proposed_by": a.proposed_by, "needs_approval": a.needs_approval,
            "decided_by": a.decided_by, "decision_note": a.decision_note,
            "end_reason": a.end_reason,
            "items": a.items.iter().map(|i| json!({
                "document_no": i.document_no, "due_date": i.due_date, "open_amount": i.open_amount,
                "fine": i.fine, "interest": i.interest, "costs": i.costs, "lines": i.lines,
            })).collect::<Vec<_>>(),
            "schedule": a.schedule.iter().map(|s| json!({
                "number": s.number, "due": s.due, "principal": s.principal, "interest": s.interest,
                "amount": s.amount, "document_no": s.document_no, "open_amount": s.open_amount,
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "agreement {} for {}: {} ({} plan, {} instalments)",
        a.id,
        a.customer,
        a.status,
        a.plan,
        a.installments
    );
    for i in &a.items {
        outln!(
            "  {} due {}: open {}  fine {}  interest {}",
            i.document_no,
            i.due_date,
            i.open_amount,
            i.fine,
            i.interest
        );
        for l in &i.lines {
            outln!("      {l}");
        }
    }
    outln!(
        "  principal {} + fine {} + interest {} + costs {} − discount {} ({}%) = debt {} {}",
        a.principal,
        a.fine,
        a.interest,
        a.costs,
        a.discount,
        a.discount_percent,
        a.debt,
        a.currency
    );
    outln!("  #   due         principal   interest     amount  item");
    for s in &a.schedule {
        outln!(
            "  {:<3} {}  {:>10} {:>10} {:>10}  {}",
            s.number,
            s.due,
            s.principal,
            s.interest,
            s.amount,
            s.document_no
        );
    }
    if !a.needs_approval.is_empty() && a.status == "pending" {
        outln!("  needs approval: {}", a.needs_approval);
    }
    if !a.decided_by.is_empty() {
        outln!(
            "  decided by {} on {}{}",
            a.decided_by,
            a.decided_on,
            if a.decision_note.is_empty() {
                String::new()
            } else {
                format!(": {}", a.decision_note)
            }
        );
    }
    if !a.end_reason.is_empty() {
        outln!("  ended {}: {}", a.ended_on, a.end_reason);
    }
    Ok(())
}

fn print_agreements(list: &[pb::Agreement], customer: Option<&str>, json: bool) -> Result<()> {
    if list.is_empty() && !json {
        match customer {
            Some(c) => outln!("no agreements for {c}"),
            None => outln!("no agreements"),
        }
    }
    for a in list {
        if json {
            print_agreement(a, true)?;
        } else {
            outln!(
                "agreement {} {}: {} — {} {} in {} ({})",
                a.id,
                a.customer,
                a.status,
                a.debt,
                a.currency,
                a.installments,
                a.plan
            );
        }
    }
    Ok(())
}

pub fn local(env: &Env, c: AgreementCmd) -> Result<ExitCode> {
    let rules = env.rules()?;
    let mut store = env.store()?;
    let who = local_user();
    let caller = Caller::local_admin(&who, &who.name);
    match c {
        AgreementCmd::Propose {
            cases,
            plan,
            installments,
            first_due,
            discount,
            on,
            json,
        } => {
            let p = Proposal {
                case_ids: cases
                    .iter()
                    .map(|c| case_id(&store, c))
                    .collect::<Result<Vec<_>>>()?,
                plan: plan_kind(&plan).map_err(describe)?,
                installments,
                first_due,
                discount_percent: discount,
                on: on.unwrap_or_else(today),
            };
            let a = arrears::app::agreements::propose(&mut store, &rules, &caller, &p)?;
            print_agreement(&agreement_to_pb(&a), json)?;
        }
        AgreementCmd::Approve { id, note, on, json } => {
            let a = arrears::app::agreements::approve(
                &mut store,
                &rules,
                &caller,
                id,
                &note,
                on.unwrap_or_else(today),
            )?;
            print_agreement(&agreement_to_pb(&a), json)?;
        }
        AgreementCmd::Reject {
            id,
            reason,
            on,
            json,
        } => {
            let a = arrears::app::agreements::reject(
                &mut store,
                &caller,
                id,
                &reason,
                on.unwrap_or_else(today),
            )?;
            print_agreement(&agreement_to_pb(&a), json)?;
        }
        AgreementCmd::Show { id, json } => {
            print_agreement(&agreement_to_pb(&store.agreement(id)?), json)?;
        }
        AgreementCmd::List { customer, json } => {
            let id = customer
                .as_ref()
                .map(|c| store.customer_id(c))
                .transpose()?;
            let list: Vec<pb::Agreement> = store
                .list_agreements(id)?
                .iter()
                .map(agreement_to_pb)
                .collect();
            print_agreements(&list, customer.as_deref(), json)?;
        }
        AgreementCmd::Letter { id, kind, out, pdf } => {
            let docs = store.documents(None, Some(id))?;
            let d = docs
                .iter()
                .find(|d| d.kind == kind)
                .with_context(|| format!("agreement {id} has no {kind} letter"))?;
            if let Some(path) = &pdf {
                let bytes = super::letter_pdf(
                    d.html.as_deref(),
                    &d.subject,
                    &d.text,
                    &d.language,
                    d.created_on,
                )
                .with_context(|| format!("agreement {id}'s {kind} letter as PDF"))?;
                super::write_file(path, &bytes)?;
            }
            if pdf.is_none() || out.is_some() {
                write_letter(d.html.as_deref().unwrap_or(&d.text), out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remote(r: &Remote, c: AgreementCmd) -> Result<ExitCode> {
    let mut client = r.agreements();
    let on_str = |on: Option<NaiveDate>| on.map(|d| d.to_string()).unwrap_or_default();
    match c {
        AgreementCmd::Propose {
            cases,
            plan,
            installments,
            first_due,
            discount,
            on,
            json,
        } => {
            let a = client
                .propose_agreement(pb::ProposeAgreementRequest {
                    case_ids: remote_case_ids(&cases)?,
                    plan,
                    installments,
                    first_due: first_due.to_string(),
                    discount_percent: discount.to_string(),
                    on: on_str(on),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_agreement(&a, json)?;
        }
        AgreementCmd::Approve { id, note, on, json } => {
            let a = client
                .approve_agreement(pb::DecideAgreementRequest {
                    id,
                    note,
                    on: on_str(on),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_agreement(&a, json)?;
        }
        AgreementCmd::Reject {
            id,
            reason,
            on,
            json,
        } => {
            let a = client
                .reject_agreement(pb::DecideAgreementRequest {
                    id,
                    note: reason,
                    on: on_str(on),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_agreement(&a, json)?;
        }
        AgreementCmd::Show { id, json } => {
            let a = client
                .get_agreement(pb::GetAgreementRequest { id })
                .await
                .map_err(describe)?
                .into_inner();
            print_agreement(&a, json)?;
        }
        AgreementCmd::List { customer, json } => {
            let list = client
                .list_agreements(pb::ListAgreementsRequest {
                    customer: customer.clone().unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner()
                .agreements;
            print_agreements(&list, customer.as_deref(), json)?;
        }
        AgreementCmd::Letter { id, kind, out, pdf } => {
            let docs = client
                .list_documents(pb::ListDocumentsRequest {
                    customer: String::new(),
                    agreement_id: id,
                })
                .await
                .map_err(describe)?
                .into_inner()
                .documents;
            let d = docs
                .iter()
                .find(|d| d.kind == kind)
                .with_context(|| format!("agreement {id} has no {kind} letter"))?;
            let html = (!d.html.is_empty()).then_some(d.html.as_str());
            if let Some(path) = &pdf {
                let created = d
                    .created_on
                    .parse()
                    .with_context(|| format!("the server's created_on {:?}", d.created_on))?;
                let bytes = super::letter_pdf(html, &d.subject, &d.text, &d.language, created)
                    .with_context(|| format!("agreement {id}'s {kind} letter as PDF"))?;
                super::write_file(path, &bytes)?;
            }
            if pdf.is_none() || out.is_some() {
                write_letter(html.unwrap_or(&d.text), out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_letter(content: &str, out: Option<PathBuf>) -> Result<()> {
    match out {
        Some(p) => {
            std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
            errln!("wrote {}", p.display());
        }
        None => out!("{content}"),
    }
    Ok(())
}
