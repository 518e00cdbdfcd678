//! `arrears outbox …`: messages to customers and one delivery pass.

use std::process::ExitCode;

use anyhow::Result;
use arrears::server::{message_to_pb, pb};
use clap::Subcommand;

use crate::print;
use crate::remote::{describe, Remote};
use crate::Env;

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

pub fn local(env: &Env, c: OutboxCmd) -> Result<ExitCode> {
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

pub async fn remote(r: &Remote, c: OutboxCmd) -> Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}
