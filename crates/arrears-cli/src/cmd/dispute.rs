//! `arrears dispute …`: disputes across the portfolio, their ageing and resolution.

use std::process::ExitCode;

use anyhow::Result;
use arrears::app::cases::Caller;
use arrears::server::pb;
use chrono::NaiveDate;
use clap::Subcommand;
use serde_json::json;

use super::local_user;
use crate::remote::{describe, Remote};
use crate::{today, Env};

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

pub fn local(env: &Env, c: DisputeCmd) -> Result<ExitCode> {
    let mut store = env.store()?;
    match c {
        DisputeCmd::Resolve {
            id,
            resolution,
            on,
            json,
        } => {
            let who = local_user();
            let caller = Caller::local_admin(&who, &who.name);
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

pub async fn remote(r: &Remote, c: DisputeCmd) -> Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}
