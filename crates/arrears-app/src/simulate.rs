//! Dry-run of a candidate rule set against the stored portfolio: every customer is
//! evaluated under the current and the candidate rules for the same `as_of`, and the
//! differences are reported. Nothing is written.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use arrears_engine::evaluate::{evaluate, Eval};
use arrears_rules::RuleSet;
use arrears_store::{PortfolioStore, RunInput, Scope, StoreError};

/// What one customer gets under a rule set, reduced to what a reviewer compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub strategy: String,
    pub segment: String,
    pub profile: String,
    pub group: String,
    pub priority: String,
    pub score: Decimal,
    /// The escalation ladder: a new `erp_procedures` mapping moves customers between
    /// ladders before any of them is due a step.
    pub ladder: String,
    /// Escalation step taken on `as_of` ("level 3 `second_notice`"), or "none".
    pub step: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub customer: String,
    pub before: Outcome,
    pub after: Outcome,
    /// Names of the fields that differ (score changes alone are not listed here).
    pub changed: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub as_of: Option<NaiveDate>,
    pub current_rules: String,
    pub candidate_rules: String,
    pub customers: u64,
    pub changed: u64,
    /// field → "before -> after" → number of customers
    pub transitions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Customers that could not be evaluated under one of the rule sets (e.g. a missing rate).
    pub problems: Vec<String>,
    /// The first `limit` changed customers, largest open amount first.
    pub examples: Vec<Change>,
}

fn outcome(rules: &RuleSet, ev: &Eval) -> Outcome {
    let strat = &rules.strategies[ev.strategy];
    let ladder = &rules.ladders[ev.ladder];
    Outcome {
        strategy: strat.name.clone(),
        segment: ev.facts.segment.clone(),
        profile: ev.profile.clone(),
        group: rules.groups[ev.group].name.clone(),
        priority: ev.priority.as_str().into(),
        score: ev.facts.score,
        ladder: ladder.name.clone(),
        step: match &ev.escalation.decision {
            Some(d) => format!("level {} `{}`", d.level, ladder.levels[d.level - 1].name),
            None => "none".into(),
        },
    }
}

pub fn simulate<S: PortfolioStore + ?Sized>(
    store: &S,
    current: &RuleSet,
    candidate: &RuleSet,
    as_of: NaiveDate,
    limit: usize,
) -> Result<Report, StoreError> {
    let inputs: Vec<RunInput> = store.load_run_input(Scope::All)?;
    let mut rep = Report {
        as_of: Some(as_of),
        current_rules: current.hash.clone(),
        candidate_rules: candidate.hash.clone(),
        ..Report::default()
    };
    let mut changes: Vec<(Decimal, Change)> = Vec::new();
    for input in &inputs {
        let key = format!("{}/{}", input.customer.company, input.customer.code);
        let (a, b) = match (
            evaluate(current, as_of, input, false),
            evaluate(candidate, as_of, input, false),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                if rep.problems.len() < 20 {
                    rep.problems.push(e.to_string());
                }
                continue;
            }
        };
        rep.customers += 1;
        let (before, after) = (outcome(current, &a), outcome(candidate, &b));
        let mut changed = Vec::new();
        for (name, x, y) in [
            ("strategy", &before.strategy, &after.strategy),
            ("segment", &before.segment, &after.segment),
            ("profile", &before.profile, &after.profile),
            ("group", &before.group, &after.group),
            ("priority", &before.priority, &after.priority),
            ("ladder", &before.ladder, &after.ladder),
            ("step", &before.step, &after.step),
        ] {
            if x != y {
                changed.push(name);
                *rep.transitions
                    .entry(name.into())
                    .or_default()
                    .entry(format!("{x} -> {y}"))
                    .or_default() += 1;
            }
        }
        if !changed.is_empty() {
            rep.changed += 1;
            changes.push((
                a.facts.open_amount,
                Change {
                    customer: key,
                    before,
                    after,
                    changed,
                },
            ));
        }
    }
    changes.sort_by_key(|c| std::cmp::Reverse(c.0));
    rep.examples = changes.into_iter().take(limit).map(|c| c.1).collect();
    Ok(rep)
}
