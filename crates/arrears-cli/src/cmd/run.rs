//! `arrears run`, `worklist` and `explain`: the portfolio run and what it decided.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use arrears::engine::evaluate::evaluate;
use arrears::engine::run::RunMode;
use arrears::server::pb;
use arrears::store::Scope;
use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use crate::print;
use crate::remote::{self, describe, Remote};
use crate::{today, Env};

/// How much of the portfolio a run recomputes; the run's own type stays free of the
/// command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Incremental when possible (same as-of date and rules as the last run), else full.
    Auto,
    Full,
    Incremental,
}

impl From<ModeArg> for RunMode {
    fn from(m: ModeArg) -> RunMode {
        match m {
            ModeArg::Auto => RunMode::Auto,
            ModeArg::Full => RunMode::Full,
            ModeArg::Incremental => RunMode::Incremental,
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Business date of the run [default: today]
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// auto: incremental when the as-of date and rules are those of the last run, else full; full: every customer; incremental: only changed customers (refused when impossible).
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    mode: ModeArg,
    /// Machine-readable summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct WorklistArgs {
    /// Whose worklist [with --remote: default the token's own]
    #[arg(long)]
    collector: Option<String>,
    /// Entries to show (the first line says how many there are in all)
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON instead of text (for scripts)
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// Customer code, COMPANY/CODE, or numeric id.
    customer: String,
    /// Business date [default: today]
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// Print JSON instead of text (for scripts)
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: RunArgs) -> Result<ExitCode> {
    let RunArgs { as_of, mode, json } = args;
    let rules = env.rules()?;
    let mut store = env.store()?;
    let as_of = as_of.unwrap_or_else(today);
    arrears::engine::run::settle(
        &mut store,
        &rules,
        as_of,
        env.cfg.serve.promise_tolerance_days,
    )?;
    let sum = arrears::engine::run::run(&mut store, &rules, as_of, mode.into())?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&sum)?);
    } else {
        print::run_summary(&arrears::server::summary_to_pb(&sum))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_remote(r: &Remote, args: RunArgs) -> Result<ExitCode> {
    let RunArgs { as_of, mode, json } = args;
    let s = r
        .admin()
        .trigger_run(pb::TriggerRunRequest {
            full: matches!(mode, ModeArg::Full),
            as_of: as_of.map(|d| d.to_string()).unwrap_or_default(),
        })
        .await
        .map_err(describe)?
        .into_inner();
    if json {
        outln!("{}", s.summary_json);
    } else {
        print::run_summary(&s)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn worklist(env: &Env, args: WorklistArgs) -> Result<ExitCode> {
    let WorklistArgs {
        collector,
        limit,
        json,
    } = args;
    let collector = collector.context("--collector is required")?;
    let rules = env.rules()?;
    let store = env.store()?;
    let groups: Vec<String> = rules
        .collector_groups(&collector)
        .iter()
        .map(|g| g.name.clone())
        .collect();
    if groups.is_empty() {
        bail!(
            "collector `{collector}` is not in any collection group of {}",
            env.rules.display()
        );
    }
    let q = arrears::store::WorklistQuery {
        scope: arrears::store::WorklistScope::Collector {
            id: collector.clone(),
            groups,
        },
        limit,
        ..Default::default()
    };
    let (list, total) = store.worklist_page(&q)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let base = rules.rates.base.to_string();
        let page = pb::WorklistPage {
            entries: list
                .iter()
                .map(|e| arrears::server::entry_to_pb(e, &base))
                .collect(),
            next_page_token: String::new(),
            total: total as u32,
        };
        print::worklist(&page, &collector);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn worklist_remote(r: &Remote, args: WorklistArgs) -> Result<ExitCode> {
    let WorklistArgs {
        collector,
        limit,
        json,
    } = args;
    let scope = pb::WorklistScope {
        scope: Some(match collector.clone() {
            Some(c) => pb::worklist_scope::Scope::Collector(c),
            None => pb::worklist_scope::Scope::Mine(true),
        }),
    };
    let page = r
        .worklists()
        .get_worklist(pb::GetWorklistRequest {
            scope: Some(scope),
            filter: None,
            page_size: limit.clamp(1, 1000) as u32,
            page_token: String::new(),
        })
        .await
        .map_err(describe)?
        .into_inner();
    if json {
        remote::worklist_json(&page)?;
    } else {
        let whose = collector.as_deref().unwrap_or("yours");
        print::worklist(&page, whose);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn explain(env: &Env, args: ExplainArgs) -> Result<ExitCode> {
    let ExplainArgs {
        customer,
        as_of,
        json,
    } = args;
    let as_of = as_of.unwrap_or_else(today);
    let rules = env.rules()?;
    let store = env.store()?;
    let id = store.customer_id(&customer)?;
    let input = store
        .load_run_input(Scope::One(id))?
        .pop()
        .context("customer vanished")?;
    if json {
        let ev = evaluate(&rules, as_of, &input, true)?;
        let t = ev.trace.as_deref().context("no trace")?;
        let v = serde_json::json!({
            "customer": format!("{}/{}", input.customer.company, input.customer.code),
            "as_of": as_of,
            "rules_hash": rules.hash,
            "facts": ev.facts,
            "strategy": rules.strategies[ev.strategy].name,
            "profile": ev.profile,
            "group": rules.groups[ev.group].name,
            "priority": ev.priority,
            "trace": t,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let e = arrears::server::explanation_to_pb(&rules, as_of, &input)?;
    print::explanation(&e)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn explain_remote(r: &Remote, args: ExplainArgs) -> Result<ExitCode> {
    let ExplainArgs {
        customer,
        as_of,
        json,
    } = args;
    let e = r
        .explain()
        .explain_customer(pb::ExplainRequest {
            customer,
            as_of: as_of.map(|d| d.to_string()).unwrap_or_default(),
        })
        .await
        .map_err(describe)?
        .into_inner();
    if json {
        print::json(&e)?;
    } else {
        print::explanation(&e)?;
    }
    Ok(ExitCode::SUCCESS)
}
