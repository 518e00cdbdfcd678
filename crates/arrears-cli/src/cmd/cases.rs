//! `arrears case …`, `resubmit` and `hold`: collection cases and the customers behind them.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use arrears::app::{self, cases::Caller};
use arrears::server::pb;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use rust_decimal::Decimal;

use super::{case_id, local_only, local_principal, local_user, remote_case_ids, Actor};
use crate::print;
use crate::remote::{describe, Remote};
use crate::{today, Env};

#[derive(Subcommand)]
pub enum CaseCmd {
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

#[derive(Args)]
pub struct ResubmitArgs {
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
}

#[derive(Args)]
pub struct HoldArgs {
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
}

pub fn local(env: &Env, c: CaseCmd) -> Result<ExitCode> {
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

/// Checked before connecting: the refusal does not depend on the daemon.
pub fn refuse_remote_actor(c: &CaseCmd) -> Result<()> {
    if let CaseCmd::Note { actor, .. } | CaseCmd::Assign { actor, .. } = c {
        actor.refuse_remote()?;
    }
    Ok(())
}

pub async fn remote(r: &Remote, c: CaseCmd) -> Result<ExitCode> {
    match c {
        CaseCmd::Show { id, json } => {
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
        CaseCmd::Note { ids, text, on, .. } => {
            let case_ids = remote_case_ids(&ids)?;
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
        CaseCmd::Assign { ids, to, on, .. } => {
            let case_ids = remote_case_ids(&ids)?;
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
        CaseCmd::Activity { .. } | CaseCmd::Complete { .. } | CaseCmd::Dispute { .. } => {
            return Err(local_only())
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resubmit(env: &Env, args: ResubmitArgs) -> Result<ExitCode> {
    let ResubmitArgs {
        customer,
        on,
        reason,
        actor,
        as_of,
    } = args;
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

pub fn hold(env: &Env, args: HoldArgs) -> Result<ExitCode> {
    let HoldArgs {
        customer,
        reason,
        until,
        lift,
        as_of,
    } = args;
    if lift {
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
    } else {
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
