//! `arrears credits …`: bank credits and their review queue.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::local_principal;
use crate::Env;

#[derive(Subcommand)]
pub enum CreditsCmd {
    /// The review queue: credits unmatched, only suggested, or partly unapplied.
    #[command(
        after_help = "Examples:\n  arrears credits review\n  arrears credits review --all --limit 200 --json"
    )]
    Review {
        /// Every credit, not only the queue.
        #[arg(long)]
        all: bool,
        /// Credits to show, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of text (for scripts)
        #[arg(long)]
        json: bool,
    },
    /// Apply a credit to items (document numbers, in this order) or dismiss it.
    #[command(
        after_help = "Examples:\n  arrears credits resolve 17 --item INV-DE-2026-000042 --reason \"remittance names the invoice\"\n  arrears credits resolve 18 --dismiss --reason \"own transfer\""
    )]
    Resolve {
        /// Credit id (see `credits review`).
        credit: i64,
        /// Document numbers of the open items the credit pays.
        #[arg(
            long = "item",
            required_unless_present = "dismiss",
            conflicts_with = "dismiss"
        )]
        items: Vec<String>,
        /// Not a customer payment (refund, own transfer…).
        #[arg(long)]
        dismiss: bool,
        /// Why, recorded in the audit log.
        #[arg(long)]
        reason: String,
    },
}

pub fn local(env: &Env, c: CreditsCmd) -> Result<ExitCode> {
    match c {
        CreditsCmd::Review { all, limit, json } => {
            let store = env.store()?;
            let list = store.list_credits(!all, limit)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                outln!("the review queue is empty");
            }
            if !json {
                for c in &list {
                    let items: Vec<String> = c
                        .allocations
                        .iter()
                        .map(|(d, a, k)| format!("{d} {a} ({k})"))
                        .collect();
                    outln!(
                        "credit {:>6}  {} {}  {}  {}:{}  {}{}{}",
                        c.id,
                        c.amount,
                        c.currency,
                        c.status,
                        c.file,
                        c.line,
                        c.debtor_name.as_deref().unwrap_or("-"),
                        if items.is_empty() {
                            String::new()
                        } else {
                            format!("  → {}", items.join(", "))
                        },
                        if c.remittance.is_empty() {
                            String::new()
                        } else {
                            format!("  \"{}\"", c.remittance.replace('\n', " "))
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CreditsCmd::Resolve {
            credit,
            items,
            dismiss,
            reason,
        } => {
            let mut store = env.store()?;
            let how = if dismiss {
                arrears::store::Resolution::Dismiss
            } else {
                arrears::store::Resolution::Apply(
                    items
                        .iter()
                        .map(|d| store.open_item_by_document(d))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            };
            let who = local_principal();
            let c = store.audited(&who, "credit.resolve", &format!("credit {credit}"), |st| {
                let before = serde_json::json!(st.credit(credit)?);
                let c = st.resolve_credit(credit, &how, &reason)?;
                let after = serde_json::json!(c);
                Ok::<_, arrears::store::StoreError>((c, before, after))
            })?;
            outln!(
                "credit {}: {} (applied {} {}, unapplied {})",
                c.id,
                c.status,
                c.applied,
                c.currency,
                c.unapplied
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
