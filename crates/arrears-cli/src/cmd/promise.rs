//! `arrears promise …`: promises to pay, recorded on cases and listed per customer.

use std::process::ExitCode;

use anyhow::Result;
use arrears::app::cases::Caller;
use arrears::server::{pb, promise_to_pb};
use arrears::store::NewPromise;
use chrono::NaiveDate;
use clap::Subcommand;
use rust_decimal::Decimal;

use super::{case_id, local_user, remote_case_ids};
use crate::print;
use crate::remote::{describe, Remote};
use crate::{today, Env};

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

pub fn local(env: &Env, c: PromiseCmd) -> Result<ExitCode> {
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
            let who = local_user();
            let caller = Caller::local_admin(&who, &who.name);
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

pub async fn remote(r: &Remote, c: PromiseCmd) -> Result<ExitCode> {
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
            let ids = remote_case_ids(&cases)?;
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
    Ok(ExitCode::SUCCESS)
}
