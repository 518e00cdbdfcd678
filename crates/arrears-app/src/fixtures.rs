//! Rule fixtures: `rules/tests/*.yaml` describe a customer snapshot and what the rules
//! must make of it. `arrears test` evaluates each with the same code a run uses, so a
//! policy change that breaks an agreed behaviour fails before it goes live.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use arrears_core::domain::{ErpDunning, Hold, PromiseStatus};
use arrears_core::money::Currency;
use arrears_engine::evaluate::evaluate;
use arrears_rules::raw::{decimal, opt_decimal};
use arrears_rules::RuleSet;
use arrears_store::{
    CustomerRow, ItemRare, ItemRow, PaymentRow, PromiseRow, RunInput, StoredState,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tests: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    name: String,
    as_of: NaiveDate,
    customer: FxCustomer,
    #[serde(default)]
    items: Vec<FxItem>,
    #[serde(default)]
    promises: Vec<FxPromise>,
    #[serde(default)]
    payments: Vec<FxPayment>,
    /// Escalation level already reached and the day of the last step.
    #[serde(default)]
    dunning: Option<FxDunning>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FxCustomer {
    company: String,
    #[serde(default = "default_code")]
    code: String,
    #[serde(default)]
    country: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    credit_limit: Option<Decimal>,
    credit_currency: Option<String>,
    /// The customer's dunning procedure in the ERP, as a source stores it: "" for none
    /// (not dunned); absent when the ERP says nothing.
    dunning_procedure: Option<String>,
}

fn default_code() -> String {
    "TEST".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FxItem {
    document_no: Option<String>,
    document_date: NaiveDate,
    due_date: NaiveDate,
    #[serde(deserialize_with = "decimal")]
    amount: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    open_amount: Option<Decimal>,
    currency: String,
    #[serde(default)]
    disputed: bool,
    hold: Option<String>,
    hold_until: Option<NaiveDate>,
    /// The level this item was last reminded at; default: the customer's
    /// `dunning.level` (the item was part of that step), 0 without `dunning`.
    dun_level: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FxPromise {
    #[serde(deserialize_with = "decimal")]
    amount: Decimal,
    currency: String,
    date: NaiveDate,
    status: String,
    /// When a judged promise was judged (broken promises move the escalation on).
    #[serde(default)]
    judged_on: Option<NaiveDate>,
    /// When the payments reached a kept promise (its delay feeds the history).
    #[serde(default)]
    paid_on: Option<NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FxPayment {
    #[serde(deserialize_with = "decimal")]
    amount: Decimal,
    currency: String,
    date: NaiveDate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FxDunning {
    level: usize,
    on: Option<NaiveDate>,
}

/// Every key is optional: a fixture asserts only what it names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    strategy: Option<String>,
    segment: Option<String>,
    profile: Option<String>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    score: Option<Decimal>,
    priority: Option<String>,
    /// Name of the escalation ladder the customer is dunned on.
    ladder: Option<String>,
    /// Escalation level of the step taken on `as_of`; 0 = no step.
    step: Option<usize>,
    worklist: Option<bool>,
}

#[derive(Debug)]
pub struct Outcome {
    pub file: PathBuf,
    /// 1-based line of the fixture's `name:` when found.
    pub line: Option<usize>,
    pub name: String,
    /// Empty when the fixture passed.
    pub failures: Vec<String>,
}

fn cur(s: &str) -> Result<Currency, String> {
    Currency::parse(s).map_err(|e| e.to_string())
}

fn build(f: &Fixture) -> Result<RunInput, String> {
    let credit_limit = match (f.customer.credit_limit, &f.customer.credit_currency) {
        (Some(a), Some(c)) => Some((a, cur(c)?)),
        (None, None) => None,
        _ => return Err("credit_limit and credit_currency go together".into()),
    };
    let mut items = Vec::new();
    for (i, it) in f.items.iter().enumerate() {
        if it.due_date < it.document_date {
            return Err(format!("item {}: due_date before document_date", i + 1));
        }
        let open = it.open_amount.unwrap_or(it.amount);
        items.push(ItemRow {
            id: i as i64 + 1,
            document_no: it
                .document_no
                .clone()
                .unwrap_or_else(|| format!("DOC-{}", i + 1)),
            document_date: it.document_date,
            due_date: it.due_date,
            original_amount: it.amount,
            open_amount: open,
            currency: cur(&it.currency)?,
            rare: ItemRare::boxed(
                it.hold.clone().map(|reason| Hold {
                    reason,
                    until: it.hold_until,
                }),
                None,
                None,
            ),
            open: !open.is_zero(),
            replaced: false,
            dun_level: it
                .dun_level
                .unwrap_or_else(|| f.dunning.as_ref().map_or(0, |d| d.level)),
            disputed: it.disputed,
            promised: None,
            case: None,
        });
    }
    let mut promises = Vec::new();
    for p in &f.promises {
        let status = PromiseStatus::parse(&p.status);
        if status.as_str() != p.status {
            return Err(format!(
                "promise status `{}`: expected open, kept, partially_kept or broken",
                p.status
            ));
        }
        promises.push(PromiseRow {
            amount: p.amount,
            currency: cur(&p.currency)?,
            promised_on: p.date,
            status,
            judged_on: p.judged_on,
            paid_on: p.paid_on,
        });
    }
    let payments = f
        .payments
        .iter()
        .map(|p| {
            Ok(PaymentRow {
                amount: p.amount,
                currency: cur(&p.currency)?,
                value_date: p.date,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(RunInput {
        customer: CustomerRow {
            id: 1,
            company: f.customer.company.clone(),
            code: f.customer.code.clone(),
            name: f.name.clone(),
            country: f.customer.country.clone(),
            credit_limit,
            dunning: ErpDunning::from_stored(f.customer.dunning_procedure.clone()),
        },
        items,
        promises,
        payments,
        holds: Vec::new(),
        resubmission: None,
        state: StoredState {
            dunning_level: f.dunning.as_ref().map_or(0, |d| d.level),
            dunning_on: f.dunning.as_ref().and_then(|d| d.on),
            collector: None,
            written: None,
        },
        listed: None,
        changes: 0,
    })
}

fn check(rules: &RuleSet, f: &Fixture) -> Vec<String> {
    let input = match build(f) {
        Ok(i) => i,
        Err(e) => return vec![format!("bad fixture: {e}")],
    };
    let ev = match evaluate(rules, f.as_of, &input, false) {
        Ok(ev) => ev,
        Err(e) => return vec![e.to_string()],
    };
    let mut fails = Vec::new();
    let mut cmp = |what: &str, want: &Option<String>, got: &str| {
        if let Some(w) = want {
            if w != got {
                fails.push(format!("{what}: expected `{w}`, got `{got}`"));
            }
        }
    };
    let strat = &rules.strategies[ev.strategy];
    cmp("strategy", &f.expect.strategy, &strat.name);
    cmp("segment", &f.expect.segment, &ev.facts.segment);
    cmp("profile", &f.expect.profile, &ev.profile);
    cmp("group", &f.expect.group, &rules.groups[ev.group].name);
    cmp("priority", &f.expect.priority, ev.priority.as_str());
    cmp("ladder", &f.expect.ladder, &rules.ladders[ev.ladder].name);
    if let Some(s) = f.expect.score {
        if s != ev.facts.score {
            fails.push(format!("score: expected {s}, got {}", ev.facts.score));
        }
    }
    if let Some(step) = f.expect.step {
        let got = ev.escalation.decision.as_ref().map_or(0, |d| d.level);
        if step != got {
            let why = ev
                .escalation
                .why_not
                .clone()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            fails.push(format!("step: expected level {step}, got {got}{why}"));
        }
    }
    if let Some(w) = f.expect.worklist {
        if w != ev.on_worklist.is_some() {
            fails.push(format!(
                "worklist: expected {}, got {}",
                if w { "on" } else { "off" },
                if w { "off" } else { "on" }
            ));
        }
    }
    for e in &ev.script_errors {
        fails.push(format!("script error: {e}"));
    }
    fails
}

/// Runs every fixture under `dir` (usually `rules/tests`). A file that does not parse
/// is one failed outcome carrying the YAML error's line.
pub fn run_all(rules: &RuleSet, dir: &Path) -> std::io::Result<Vec<Outcome>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    for path in paths {
        let text = match arrears_rules::guard::read_yaml(&path) {
            Ok(t) => t,
            Err(arrears_rules::guard::SourceError::Read(e)) => return Err(e),
            Err(e) => {
                out.push(Outcome {
                    line: e.pos().map(|p| p.0),
                    file: path.clone(),
                    name: "(file)".into(),
                    failures: vec![e.to_string()],
                });
                continue;
            }
        };
        match serde_yaml::from_str::<File>(&text) {
            Err(e) => out.push(Outcome {
                line: e.location().map(|l| l.line()),
                file: path.clone(),
                name: "(file)".into(),
                failures: vec![e.to_string()],
            }),
            Ok(file) => {
                for f in &file.tests {
                    let needle = format!("name: {}", f.name);
                    out.push(Outcome {
                        file: path.clone(),
                        line: text
                            .lines()
                            .position(|l| l.contains(&needle))
                            .map(|i| i + 1),
                        name: f.name.clone(),
                        failures: check(rules, f),
                    });
                }
            }
        }
    }
    Ok(out)
}
