//! `arrears promise …` and `arrears agreement …`: the daily acts of renegotiation
//! from the command line, on the database (audited as `local:$USER`, with the admin
//! role of whoever owns the database) or against a daemon with `--remote` (audited
//! as the token's principal, with its role's limits).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use arrears::server::{agreement_to_pb, message_to_pb, pb, plan_kind, promise_to_pb};
use arrears::store::{NewPromise, Proposal};
use chrono::NaiveDate;
use clap::Subcommand;
use rust_decimal::Decimal;
use serde_json::json;

use crate::print;
use crate::remote::{describe, Remote};
use crate::{case_id, today, Env};

#[derive(Subcommand)]
pub enum PromiseCmd {
    /// Record a promise to pay on one or more cases of one customer.
    #[command(
        after_help = "Example:\n  arrears promise create 42 43 --amount 1200.00 --by 2026-12-05 --channel phone --contact \"J. Doe\""
    )]
    Create {
        /// Case ids (or document numbers, on the database).
        #[arg(required = true)]
        cases: Vec<String>,
        /// Amount promised, in the cases' currency.
        #[arg(long)]
        amount: Decimal,
        /// The date the customer promised to pay by.
        #[arg(long)]
        by: NaiveDate,
        /// How it was made: phone, email, portal, visit…
        #[arg(long)]
        channel: Option<String>,
        /// Who at the customer made it.
        #[arg(long)]
        contact: Option<String>,
        /// Business date of the change [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// A customer's promises and how they were judged.
    #[command(
        after_help = "Examples:\n  arrears promise list ACME_DE/C000005\n  arrears --remote http://127.0.0.1:50051 promise list ACME_DE/C000005 --json"
    )]
    List {
        /// COMPANY/CODE
        customer: String,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum DisputeCmd {
    /// Open disputes by age, with the disputed amounts and the oldest ones.
    #[command(after_help = "Example:\n  arrears dispute ageing --as-of 2026-11-23 --oldest 10")]
    Ageing {
        /// Business date [default: today]
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// How many of the oldest to list.
        #[arg(long, default_value_t = 20)]
        oldest: u32,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Resolve a dispute: valid (credit note expected), invalid (back to collection) or
    /// write_off. Its items count as disputed no longer and are dunned again from the
    /// next run unless the resolution takes them out. Supervisors and admins only.
    #[command(
        after_help = "Examples:\n  arrears dispute resolve 7 --resolution invalid\n  arrears dispute resolve 8 --resolution valid --on 2026-11-30"
    )]
    Resolve {
        /// Dispute id (see `dispute ageing`, `case show`).
        id: i64,
        /// valid, invalid or write_off
        #[arg(long)]
        resolution: String,
        /// Day of the resolution [default: today]
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
}

fn print_dispute(d: &pb::Dispute, json: bool) -> Result<()> {
    if json {
        let v = json!({
            "id": d.id, "customer": d.customer, "case_id": d.case_id, "reason": d.reason,
            "opened_on": d.opened_on, "resolved_on": d.resolved_on,
            "resolution": d.resolution, "documents": d.documents,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "dispute {} of {} resolved {} on {} ({})",
        d.id,
        d.customer,
        d.resolution,
        d.resolved_on,
        d.documents.join(", ")
    );
    Ok(())
}

fn print_ageing(a: &pb::DisputeAgeingResponse, json: bool) -> Result<()> {
    let amounts = |m: &[pb::Money]| {
        m.iter()
            .map(|m| format!("{} {}", m.amount, m.currency))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if json {
        let v = json!({
            "buckets": a.buckets.iter().map(|b| json!({
                "bucket": b.bucket, "disputes": b.disputes,
                "amounts": b.amounts.iter().map(|m| json!({"amount": m.amount, "currency": m.currency})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "oldest": a.oldest.iter().map(|d| json!({
                "id": d.id, "customer": d.customer, "opened_on": d.opened_on, "reason": d.reason,
                "documents": d.documents,
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("age (days)  disputes  disputed amount");
    for b in &a.buckets {
        outln!(
            "{:<11} {:>8}  {}",
            b.bucket,
            b.disputes,
            amounts(&b.amounts)
        );
    }
    if !a.oldest.is_empty() {
        outln!("oldest open disputes:");
        for d in &a.oldest {
            outln!(
                "  {} {} opened {}: {} ({})",
                d.id,
                d.customer,
                d.opened_on,
                d.reason,
                d.documents.join(", ")
            );
        }
    }
    Ok(())
}

pub fn dispute_local(env: &Env, c: DisputeCmd) -> Result<ExitCode> {
    let mut store = env.store()?;
    match c {
        DisputeCmd::Resolve {
            id,
            resolution,
            on,
            json,
        } => {
            let who = crate::local_user();
            let caller = arrears::app::cases::Caller::local_admin(&who, &who.name);
            let d = arrears::app::disputes::resolve(
                &mut store,
                &caller,
                id,
                &resolution,
                on.unwrap_or_else(today),
            )?;
            print_dispute(&arrears::server::dispute_to_pb(&d), json)?;
        }
        DisputeCmd::Ageing {
            as_of,
            oldest,
            json,
        } => {
            let a =
                store.dispute_ageing(as_of.unwrap_or_else(today), oldest as usize, &mut |_| {
                    Ok(true)
                })?;
            print_ageing(&arrears::server::dispute_ageing_to_pb(&a), json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dispute_remote(r: &Remote, c: DisputeCmd) -> Result<()> {
    match c {
        DisputeCmd::Resolve {
            id,
            resolution,
            on,
            json,
        } => {
            let d = pb::disputes_client::DisputesClient::new(r.auth())
                .resolve_dispute(pb::ResolveDisputeRequest {
                    dispute_id: id,
                    resolution,
                    on: on.map(|d| d.to_string()).unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_dispute(&d, json)?;
        }
        DisputeCmd::Ageing {
            as_of,
            oldest,
            json,
        } => {
            let a = pb::disputes_client::DisputesClient::new(r.auth())
                .dispute_ageing(pb::DisputeAgeingRequest {
                    as_of: as_of.map(|d| d.to_string()).unwrap_or_default(),
                    oldest,
                })
                .await
                .map_err(describe)?
                .into_inner();
            print_ageing(&a, json)?;
        }
    }
    Ok(())
}

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
    /// Write an agreement's letter (debt recognition, acquittance) as print-ready HTML.
    #[command(
        after_help = "Examples:\n  arrears agreement letter 3 --out agreement-3.html\n  arrears agreement letter 3 --kind acquittance"
    )]
    Letter {
        /// Agreement id (see `agreement list`).
        id: i64,
        /// Which letter: debt_recognition or acquittance.
        #[arg(long, default_value = "debt_recognition")]
        kind: String,
        /// File to write [default: standard output]
        #[arg(long)]
        out: Option<PathBuf>,
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

pub fn promise_local(env: &Env, c: PromiseCmd) -> Result<ExitCode> {
    let mut store = env.store()?;
    match c {
        PromiseCmd::Create {
            cases,
            amount,
            by,
            channel,
            contact,
            on,
            json,
        } => {
            let case_ids = cases
                .iter()
                .map(|c| case_id(&store, c))
                .collect::<Result<Vec<_>>>()?;
            let who = crate::local_user();
            let caller = arrears::app::cases::Caller::local_admin(&who, &who.name);
            let p = arrears::app::promises::create(
                &mut store,
                &caller,
                &NewPromise {
                    case_ids,
                    amount,
                    promised_on: by,
                    on: on.unwrap_or_else(today),
                    channel,
                    contact,
                },
            )?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                outln!(
                    "promise {}: {} {} by {} on {}",
                    p.id,
                    p.amount,
                    p.currency,
                    p.promised_on,
                    p.documents.join(", ")
                );
            }
        }
        PromiseCmd::List { customer, json } => {
            let id = store.customer_id(&customer)?;
            let list = store.list_promises(id)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let list: Vec<pb::Promise> = list.iter().map(promise_to_pb).collect();
                print::promises(&list, &customer);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn agreement_local(env: &Env, c: AgreementCmd) -> Result<ExitCode> {
    let rules = env.rules()?;
    let mut store = env.store()?;
    let who = crate::local_user();
    let caller = arrears::app::cases::Caller::local_admin(&who, &who.name);
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
        AgreementCmd::Letter { id, kind, out } => {
            let docs = store.documents(None, Some(id))?;
            let d = docs
                .iter()
                .find(|d| d.kind == kind)
                .with_context(|| format!("agreement {id} has no {kind} letter"))?;
            write_letter(d.html.as_deref().unwrap_or(&d.text), out)?;
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

fn ids(cases: &[String]) -> Result<Vec<i64>> {
    cases
        .iter()
        .map(|c| {
            c.parse::<i64>()
                .context("with --remote, cases are named by their ids")
        })
        .collect()
}

pub async fn promise_remote(r: &Remote, c: PromiseCmd) -> Result<()> {
    let mut client = r.promises();
    match c {
        PromiseCmd::Create {
            cases,
            amount,
            by,
            channel,
            contact,
            on,
            json,
        } => {
            let ids = ids(&cases)?;
            let p = client
                .create_promise(pb::CreatePromiseRequest {
                    case_id: ids[0],
                    more_case_ids: ids[1..].to_vec(),
                    amount: amount.to_string(),
                    promised_on: by.to_string(),
                    on: on.map(|d| d.to_string()).unwrap_or_default(),
                    channel: channel.unwrap_or_default(),
                    contact: contact.unwrap_or_default(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                print::json(&p)?;
            } else {
                outln!("{}", print::promise_line(&p));
            }
        }
        PromiseCmd::List { customer, json } => {
            let list = client
                .list_promises(pb::ListPromisesRequest {
                    customer: customer.clone(),
                })
                .await
                .map_err(describe)?
                .into_inner()
                .promises;
            if json {
                print::json(&list)?;
            } else {
                print::promises(&list, &customer);
            }
        }
    }
    Ok(())
}

pub async fn agreement_remote(r: &Remote, c: AgreementCmd) -> Result<()> {
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
                    case_ids: ids(&cases)?,
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
        AgreementCmd::Letter { id, kind, out } => {
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
            write_letter(if d.html.is_empty() { &d.text } else { &d.html }, out)?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// Messages, newest first: channel, recipient, status, attempts, why deferred.
    #[command(
        after_help = "Examples:\n  arrears outbox list --limit 20\n  arrears outbox list --customer ACME_DE/C000005 --json"
    )]
    List {
        /// COMPANY/CODE
        #[arg(long)]
        customer: Option<String>,
        /// Messages to show, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// One pass: turn new escalation steps into messages and deliver what is due
    /// (the daemon does this by itself after every run and every minute).
    #[command(
        after_help = "Examples:\n  arrears outbox send\n  arrears outbox send --now 2026-11-23T09:00:00Z --json"
    )]
    Send {
        /// The moment to act as of (RFC 3339, e.g. 2026-11-23T09:00:00Z) [default: now]
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum CustomerCmd {
    /// Contact data and preferences: what the compliance guard and the channels use.
    #[command(
        after_help = "Examples:\n  arrears customer contact ACME_DE/C000005 --email ap@example.com --opt-out sms\n  arrears customer contact ACME_DE/C000005 --do-not-contact true"
    )]
    Contact {
        /// COMPANY/CODE
        customer: String,
        /// E-mail address for reminders.
        #[arg(long)]
        email: Option<String>,
        /// Phone number for SMS and calls.
        #[arg(long)]
        phone: Option<String>,
        /// Postal address for letters.
        #[arg(long)]
        address: Option<String>,
        /// true: no contact at all (letters included) until set back to false.
        #[arg(long)]
        do_not_contact: Option<bool>,
        /// Channels the customer opted out of (repeat; `none` clears them).
        #[arg(long = "opt-out")]
        opt_outs: Vec<String>,
    },
}

pub fn outbox_local(env: &Env, c: OutboxCmd) -> Result<ExitCode> {
    let mut store = env.store()?;
    match c {
        OutboxCmd::List {
            customer,
            limit,
            json,
        } => {
            let id = customer
                .as_ref()
                .map(|c| store.customer_id(c))
                .transpose()?;
            let list = store.messages(id, limit)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let list: Vec<pb::Message> = list.iter().map(message_to_pb).collect();
                print::messages(&list, customer.as_deref());
            }
        }
        OutboxCmd::Send { now, json } => {
            let rules = env.rules()?;
            let now = now.unwrap_or_else(chrono::Utc::now);
            let st = arrears::correspondence::process(
                &mut store,
                &rules,
                env.cfg.delivery.as_ref(),
                now,
            )?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                outln!(
                    "composed {}, call tasks {}, sent {}, deferred {}, retrying {}, fell back {}, failed {}, held (channel misconfigured) {}, in doubt (a killed pass) {}",
                    st.composed, st.call_tasks, st.sent, st.deferred, st.retried, st.fell_back, st.failed, st.held, st.in_doubt
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn outbox_remote(r: &Remote, c: OutboxCmd) -> Result<()> {
    let mut client = pb::correspondence_client::CorrespondenceClient::new(r.auth());
    match c {
        OutboxCmd::List {
            customer,
            limit,
            json,
        } => {
            let list = client
                .list_messages(pb::ListMessagesRequest {
                    customer: customer.clone().unwrap_or_default(),
                    limit: limit.min(1000) as u32,
                })
                .await
                .map_err(describe)?
                .into_inner()
                .messages;
            if json {
                print::json(&list)?;
            } else {
                print::messages(&list, customer.as_deref());
            }
        }
        OutboxCmd::Send { now, json } => {
            if now.is_some() {
                anyhow::bail!("--now is for the database; a daemon sends as of its own clock");
            }
            let s = client
                .process_outbox(pb::ProcessOutboxRequest {})
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                print::json(&s)?;
            } else {
                outln!(
                    "composed {}, call tasks {}, sent {}, deferred {}, retrying {}, fell back {}, failed {}, held {}",
                    s.composed, s.call_tasks, s.sent, s.deferred, s.retried, s.fell_back, s.failed, s.held
                );
            }
        }
    }
    Ok(())
}

pub async fn customer_remote(r: &Remote, c: CustomerCmd) -> Result<()> {
    let CustomerCmd::Contact {
        customer,
        email,
        phone,
        address,
        do_not_contact,
        opt_outs,
    } = c;
    let p = pb::correspondence_client::CorrespondenceClient::new(r.auth())
        .set_contact_preferences(pb::ContactPreferencesRequest {
            customer,
            email: email.unwrap_or_default(),
            phone: phone.unwrap_or_default(),
            address: address.unwrap_or_default(),
            do_not_contact: do_not_contact.map(|b| b.to_string()).unwrap_or_default(),
            set_opt_outs: !opt_outs.is_empty(),
            opt_outs: opt_outs.into_iter().filter(|o| o != "none").collect(),
        })
        .await
        .map_err(describe)?
        .into_inner();
    outln!(
        "{}: email {}, phone {}, do not contact {}, opted out of [{}]",
        p.customer,
        if p.email.is_empty() { "-" } else { &p.email },
        if p.phone.is_empty() { "-" } else { &p.phone },
        p.do_not_contact,
        p.opt_outs.join(", ")
    );
    Ok(())
}

pub fn customer_local(env: &Env, c: CustomerCmd) -> Result<ExitCode> {
    let mut store = env.store()?;
    match c {
        CustomerCmd::Contact {
            customer,
            email,
            phone,
            address,
            do_not_contact,
            opt_outs,
        } => {
            let change = arrears::app::customers::ContactChange {
                email,
                phone,
                address,
                do_not_contact,
                // `--opt-out none` clears them; no flag leaves them.
                opt_outs: (!opt_outs.is_empty()).then(|| {
                    opt_outs
                        .iter()
                        .filter(|o| o.as_str() != "none")
                        .cloned()
                        .collect()
                }),
            };
            let who = crate::local_user();
            let caller = arrears::app::cases::Caller::local_admin(&who, &who.name);
            let p = arrears::app::customers::set_contact(&mut store, &caller, &customer, &change)?;
            outln!(
                "{}/{}: email {}, phone {}, do not contact {}, opted out of [{}]",
                p.company,
                p.code,
                p.email.as_deref().unwrap_or("-"),
                p.phone.as_deref().unwrap_or("-"),
                p.do_not_contact,
                p.opt_outs.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
