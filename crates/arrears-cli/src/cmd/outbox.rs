//! `arrears outbox …`: messages to customers and one delivery pass.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
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
    /// The postal reminders delivered to a customer (stored for printing), newest
    /// first; with --pdf each is written there as PDF/A, `letter-<id>.pdf`.
    #[command(
        after_help = "Examples:\n  arrears outbox letters --customer ACME_DE/C000005\n  arrears outbox letters --customer ACME_DE/C000005 --since 2026-11-01 --pdf print/"
    )]
    Letters {
        /// COMPANY/CODE
        #[arg(long)]
        customer: String,
        /// Only letters written on or after this day.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Folder to write the PDFs to (made if missing).
        #[arg(long, value_name = "DIR")]
        pdf: Option<PathBuf>,
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
        OutboxCmd::Letters {
            customer,
            since,
            pdf,
        } => {
            let id = store.customer_id(&customer)?;
            let letters: Vec<Letter> = store
                .documents(Some(id), None)?
                .into_iter()
                .map(|d| Letter {
                    id: d.id,
                    kind: d.kind,
                    language: d.language,
                    subject: d.subject,
                    text: d.text,
                    html: d.html,
                    created_on: d.created_on,
                })
                .collect();
            letters_out(&customer, letters, since, pdf.as_deref())?;
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
        OutboxCmd::Letters {
            customer,
            since,
            pdf,
        } => {
            let docs = r
                .agreements()
                .list_documents(pb::ListDocumentsRequest {
                    customer: customer.clone(),
                    agreement_id: 0,
                })
                .await
                .map_err(describe)?
                .into_inner()
                .documents;
            let mut letters = Vec::new();
            for d in docs {
                letters.push(Letter {
                    id: d.id,
                    created_on: d.created_on.parse().with_context(|| {
                        format!(
                            "document {}: the server's created_on {:?}",
                            d.id, d.created_on
                        )
                    })?,
                    kind: d.kind,
                    language: d.language,
                    subject: d.subject,
                    text: d.text,
                    html: (!d.html.is_empty()).then_some(d.html),
                });
            }
            letters_out(&customer, letters, since, pdf.as_deref())?;
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

/// A stored document, from the database or the daemon.
struct Letter {
    id: i64,
    kind: String,
    language: String,
    subject: String,
    text: String,
    html: Option<String>,
    created_on: chrono::NaiveDate,
}

/// Lists the customer's postal letters and writes them as PDF. Agreement letters
/// are left to `agreement letter`, which names them by agreement.
fn letters_out(
    customer: &str,
    letters: Vec<Letter>,
    since: Option<chrono::NaiveDate>,
    pdf: Option<&Path>,
) -> Result<()> {
    let letters: Vec<Letter> = letters
        .into_iter()
        .filter(|l| l.kind == "letter" && since.is_none_or(|s| l.created_on >= s))
        .collect();
    if letters.is_empty() {
        errln!(
            "{customer}: no postal letters{}",
            match since {
                Some(s) => format!(" since {s}"),
                None => String::new(),
            }
        );
        return Ok(());
    }
    if let Some(dir) = pdf {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for l in &letters {
        outln!(
            "{:>8}  {}  {:<5}  {}",
            l.id,
            l.created_on,
            l.language,
            l.subject
        );
        if let Some(dir) = pdf {
            let bytes = super::letter_pdf(
                l.html.as_deref(),
                &l.subject,
                &l.text,
                &l.language,
                l.created_on,
            )
            .with_context(|| format!("letter {} as PDF", l.id))?;
            super::write_file(&dir.join(format!("letter-{}.pdf", l.id)), &bytes)?;
        }
    }
    Ok(())
}
