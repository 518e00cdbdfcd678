//! `arrears check`, `test` and `simulate`: a rules folder checked, tested and tried.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use arrears::rules;
use chrono::NaiveDate;
use clap::Args;

use crate::{today, Env};

#[derive(Args)]
pub struct CheckArgs {
    /// Folder to check [default: --rules]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct TestArgs {
    /// Rules folder [default: --rules]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// The candidate rules folder (compared with --rules).
    candidate: PathBuf,
    /// Business date [default: today]
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// How many changed customers to list (largest open amount first).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON instead of text (for scripts)
    #[arg(long)]
    json: bool,
}

pub fn check(env: &Env, args: CheckArgs) -> Result<ExitCode> {
    let dir = args.dir.unwrap_or(env.rules.clone());
    match rules::load(&dir) {
        Ok(r) => {
            outln!(
                "{}: ok (rules {}; {} strategies, {} groups, {} ladders, {} scripts)",
                dir.display(),
                r.hash,
                r.strategies.len(),
                r.groups.len(),
                r.ladders.len(),
                r.scripts.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in &errs.0 {
                errln!("{e}");
            }
            errln!("{}: {} error(s)", dir.display(), errs.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn test(env: &Env, args: TestArgs) -> Result<ExitCode> {
    let dir = args.dir.unwrap_or(env.rules.clone());
    let rules = rules::load(&dir)?;
    let outcomes = rules::fixtures::run_all(&rules, &dir.join("tests"))?;
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    for o in &outcomes {
        let place = match o.line {
            Some(l) => format!("{}:{l}", o.file.display()),
            None => o.file.display().to_string(),
        };
        if o.failures.is_empty() {
            outln!("ok    {place}: {}", o.name);
        } else {
            outln!("FAIL  {place}: {}", o.name);
            for f in &o.failures {
                outln!("        {f}");
            }
        }
    }
    outln!("{} passed, {failed} failed", outcomes.len() - failed);
    Ok(if failed == 0 && !outcomes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn simulate(env: &Env, args: SimulateArgs) -> Result<ExitCode> {
    let SimulateArgs {
        candidate,
        as_of,
        limit,
        json,
    } = args;
    let as_of = as_of.unwrap_or_else(today);
    let current = env.rules()?;
    let cand = match rules::load(&candidate) {
        Ok(r) => r,
        Err(errs) => {
            for e in &errs.0 {
                errln!("{e}");
            }
            bail!(
                "candidate rules in {} do not compile ({} error(s)); nothing simulated",
                candidate.display(),
                errs.0.len()
            );
        }
    };
    let store = env.store()?;
    let rep = arrears::engine::simulate::simulate(&store, &current, &cand, as_of, limit)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&rep)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "simulation as of {as_of}: rules {} -> {} ({}): {} of {} customers change",
        rep.current_rules,
        rep.candidate_rules,
        candidate.display(),
        rep.changed,
        rep.customers
    );
    for (field, ts) in &rep.transitions {
        outln!("  {field}:");
        let mut ts: Vec<_> = ts.iter().collect();
        ts.sort_by(|a, b| b.1.cmp(a.1));
        for (t, n) in ts {
            outln!("    {n:>7}  {t}");
        }
    }
    if !rep.examples.is_empty() {
        outln!("  largest changed customers:");
    }
    for c in &rep.examples {
        let diffs: Vec<String> = c
            .changed
            .iter()
            .map(|f| {
                let (b, a) = match *f {
                    "strategy" => (&c.before.strategy, &c.after.strategy),
                    "segment" => (&c.before.segment, &c.after.segment),
                    "profile" => (&c.before.profile, &c.after.profile),
                    "group" => (&c.before.group, &c.after.group),
                    "priority" => (&c.before.priority, &c.after.priority),
                    "ladder" => (&c.before.ladder, &c.after.ladder),
                    _ => (&c.before.step, &c.after.step),
                };
                format!("{f} {b} -> {a}")
            })
            .collect();
        outln!(
            "    {:<18} score {} -> {}; {}",
            c.customer,
            c.before.score,
            c.after.score,
            diffs.join("; ")
        );
    }
    for p in &rep.problems {
        outln!("  problem: {p}");
    }
    Ok(ExitCode::SUCCESS)
}
