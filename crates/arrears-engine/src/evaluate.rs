//! Evaluation of one customer against the rule set. Pure: takes the stored input and
//! an explicit `as_of`, returns what the run should write, plus (on request) a trace
//! that `arrears explain` prints.

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::case::{self, days_between};
use super::escalation::{self, DunItem, DunState, Outcome};
use super::facts::Facts;
use arrears_core::domain::{Activity, ErpDunning, Priority, PromiseStatus};
use arrears_core::money::{check_bound, Money, MoneyError};
use arrears_core::portfolio::RunInput;
use arrears_rules::script::{
    CaseView, CustomerData, CustomerView, ItemData, PaymentData, PromiseData, ScriptError,
};
use arrears_rules::{Hook, RuleSet};

#[derive(Debug, Clone, Serialize)]
pub struct CriterionTrace {
    pub name: String,
    pub condition: String,
    pub held: bool,
    pub points: Decimal,
    pub exit: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseTrace {
    pub case_id: Option<i64>,
    pub document_no: String,
    pub days_overdue: i64,
    pub open_amount: String,
    pub nad: NaiveDate,
    pub nad_rule: String,
    pub priority: Priority,
    pub priority_rule: String,
}

/// Why the customer got what it got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    pub strategy_why: String,
    pub segment_why: String,
    pub criteria: Vec<CriterionTrace>,
    pub script_notes: Vec<String>,
    pub profile_why: String,
    pub route_why: String,
    pub cases: Vec<CaseTrace>,
    /// Which ladder the customer is dunned on and why, e.g. "`soft` (ERP procedure `Soft`)".
    pub ladder_why: String,
    pub escalation: Option<Outcome>,
    pub worklist_why: String,
}

#[derive(Debug, Clone)]
pub enum CaseAction {
    Open {
        item_id: i64,
        nad: NaiveDate,
        priority: Priority,
        external_ref: Option<String>,
    },
    Update {
        case_id: i64,
        nad: NaiveDate,
        priority: Priority,
    },
    Close {
        case_id: i64,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Eval {
    pub facts: Facts,
    pub strategy: usize,
    pub profile: String,
    pub group: usize,
    pub priority: Priority,
    pub cases: Vec<CaseAction>,
    pub open_cases: usize,
    pub min_nad: Option<NaiveDate>,
    /// Index into `RuleSet::ladders` of the ladder `escalation` was decided on: the
    /// one the ERP's dunning procedure maps to, else the strategy's.
    pub ladder: usize,
    pub escalation: Outcome,
    /// Worklist membership and why.
    pub on_worklist: Option<String>,
    /// Manual assignment on any open case beats balancing.
    pub assigned: Option<String>,
    pub script_errors: Vec<ScriptError>,
    pub trace: Option<Box<Trace>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("customer {customer}: {source}")]
    Money {
        customer: String,
        source: arrears_core::money::MoneyError,
    },
}

pub fn evaluate(
    rules: &RuleSet,
    as_of: NaiveDate,
    input: &RunInput,
    explain: bool,
) -> Result<Eval, EvalError> {
    let cust = &input.customer;
    let fail = |source| EvalError::Money {
        customer: format!("{}/{}", cust.company, cust.code),
        source,
    };
    // Stored figures beyond the bound (accepted before there was one, or written by
    // hand) make the customer's sums unsafe: it keeps its last result instead.
    let in_bound = |amount: Decimal| check_bound(amount).map_err(fail);
    for it in &input.items {
        in_bound(it.open_amount)?;
        in_bound(it.original_amount)?;
    }
    for p in &input.payments {
        in_bound(p.amount)?;
    }
    for p in &input.promises {
        in_bound(p.amount)?;
    }
    if let Some((limit, _)) = cust.credit_limit {
        in_bound(limit)?;
    }
    let to_base = |amount: Decimal, currency| {
        rules
            .rates
            .to_base(Money::new(amount, currency))
            .map_err(fail)
    };
    let add = |a: Decimal, b: Decimal, what: &'static str| {
        a.checked_add(b)
            .ok_or_else(|| fail(MoneyError::Overflow(what)))
    };
    let mut trace = explain.then(Box::<Trace>::default);
    let customer_hold = input.holds.iter().find(|h| h.active_on(as_of));

    // Facts.
    let mut f = Facts {
        company: cust.company.clone(),
        country: cust.country.clone(),
        ..Facts::default()
    };
    let mut base_amounts = Vec::with_capacity(input.items.len());
    let mut by_currency: Vec<(arrears_core::money::Currency, Decimal)> = Vec::new();
    let mut overdue_days_sum: i64 = 0;
    for it in &input.items {
        let amt = if it.open {
            to_base(it.open_amount, it.currency)?
        } else {
            Decimal::ZERO
        };
        base_amounts.push(amt);
        if !it.open || it.open_amount.is_zero() {
            continue;
        }
        let days = days_between(it.due_date, as_of);
        f.open_items += 1;
        f.open_amount = add(f.open_amount, amt, "the open amount")?;
        match by_currency.iter_mut().find(|x| x.0 == it.currency) {
            Some(x) => x.1 = add(x.1, amt, "the open amount per currency")?,
            None => by_currency.push((it.currency, amt)),
        }
        if days > 0 {
            f.overdue_items += 1;
            f.overdue_amount = add(f.overdue_amount, amt, "the overdue amount")?;
            overdue_days_sum += days;
        }
        f.max_days_overdue = f.max_days_overdue.max(days);
        if it.disputed {
            f.disputed_items += 1;
        }
        if customer_hold.is_some() || it.hold().is_some_and(|h| h.active_on(as_of)) {
            f.blocked_items += 1;
        }
    }
    if f.overdue_items > 0 {
        f.avg_days_overdue =
            (Decimal::from(overdue_days_sum) / Decimal::from(f.overdue_items)).round_dp(2);
    }
    f.currency = by_currency
        .iter()
        .max_by_key(|x| x.1)
        .map(|x| x.0.to_string())
        .unwrap_or_default();
    let mut judged = 0i64;
    let (mut delay_sum, mut delays) = (0i64, 0i64);
    for p in &input.promises {
        f.promises_made += 1;
        match p.status {
            PromiseStatus::Kept => {
                f.promises_kept += 1;
                if let Some(paid) = p.paid_on {
                    delay_sum += days_between(p.promised_on, paid);
                    delays += 1;
                }
            }
            PromiseStatus::PartiallyKept => f.promises_partial += 1,
            PromiseStatus::Broken => f.promises_broken += 1,
            PromiseStatus::Open => {}
        }
        if p.status != PromiseStatus::Open {
            judged += 1;
        }
    }
    if judged > 0 {
        f.promise_kept_rate =
            Some((Decimal::from(f.promises_kept) / Decimal::from(judged)).round_dp(4));
    }
    if delays > 0 {
        f.promise_avg_delay_days =
            Some((Decimal::from(delay_sum) / Decimal::from(delays)).round_dp(2));
    }
    if let Some((limit, cur)) = cust.credit_limit {
        let limit = to_base(limit, cur)?;
        if limit > Decimal::ZERO {
            let ratio = f
                .open_amount
                .checked_div(limit)
                .ok_or_else(|| fail(MoneyError::Overflow("the credit-limit utilisation")))?;
            f.credit_limit_utilisation = Some(ratio.round_dp(4));
        }
    }
    f.days_since_last_payment = input
        .payments
        .iter()
        .map(|p| p.value_date)
        .max()
        .map(|d| days_between(d, as_of));

    // Scripts see a lazily built view; built at most once per customer.
    let mut view: Option<CustomerView> = None;
    let mut script_errors = Vec::new();
    let credit_limit_base = match cust.credit_limit {
        Some((l, c)) => Some(to_base(l, c)?),
        None => None,
    };
    let make_view = |f: &Facts| {
        CustomerView(Arc::new(CustomerData {
            code: cust.code.clone(),
            name: cust.name.clone(),
            as_of: as_of.to_string(),
            facts: f.clone(),
            credit_limit: credit_limit_base,
            items: input
                .items
                .iter()
                .zip(&base_amounts)
                .filter(|(i, _)| i.open)
                .map(|(i, base)| ItemData {
                    open_amount_base: *base,
                    document_no: i.document_no.as_str().into(),
                    due_date: i.due_date,
                    days_overdue: days_between(i.due_date, as_of),
                    original_amount: i.original_amount,
                    open_amount: i.open_amount,
                    currency: i.currency,
                    disputed: i.disputed,
                    blocked: customer_hold.is_some()
                        || i.hold().is_some_and(|h| h.active_on(as_of)),
                })
                .collect(),
            promises: input
                .promises
                .iter()
                .map(|p| PromiseData {
                    amount: p.amount,
                    currency: p.currency.to_string(),
                    date: p.promised_on.to_string(),
                    status: p.status.as_str().into(),
                    judged_on: p.judged_on.map(|d| d.to_string()).unwrap_or_default(),
                    paid_on: p.paid_on.map(|d| d.to_string()).unwrap_or_default(),
                })
                .collect(),
            payments: input
                .payments
                .iter()
                .map(|p| PaymentData {
                    amount: p.amount,
                    currency: p.currency.to_string(),
                    date: p.value_date.to_string(),
                })
                .collect(),
        }))
    };
    // The first configured script that defines `hook` and whose `when` holds.
    let slot_for = |hook: Hook, f: &Facts| {
        rules
            .scripts
            .iter()
            .find(|s| s.script.hooks.contains(&hook) && s.when.eval(f))
    };

    // Strategy.
    let si = rules
        .strategies
        .iter()
        .position(|s| s.applies_to.eval(&f))
        .unwrap_or(rules.strategies.len() - 1);
    let strat = &rules.strategies[si];
    if let Some(t) = trace.as_deref_mut() {
        t.strategy_why = format!(
            "`{}`: first strategy whose applies_to holds ({})",
            strat.name, strat.applies_to
        );
    }

    // Segment.
    let (seg_name, seg_cond) = strat
        .segments
        .iter()
        .find(|(_, c)| c.eval(&f))
        .map(|(n, c)| (n.clone(), c.to_string()))
        .unwrap_or_default();
    f.segment = seg_name;
    if let Some(t) = trace.as_deref_mut() {
        t.segment_why = format!(
            "`{}`: first segment whose condition holds ({seg_cond})",
            f.segment
        );
    }
    if let Some(slot) = slot_for(Hook::Segment, &f) {
        let v = view.get_or_insert_with(|| make_view(&f)).clone();
        match slot.script.segment(&rules.engine, &v) {
            Ok(Some(s)) => {
                if let Some(t) = trace.as_deref_mut() {
                    t.segment_why = format!(
                        "`{s}`: set by script {} (YAML gave `{}`)",
                        slot.script.file, f.segment
                    );
                }
                f.segment = s;
                view = None; // facts changed
            }
            Ok(None) => {}
            Err(e) => script_errors.push(e),
        }
    }

    // Score: sum of the points of every criterion that holds, until an exit criterion.
    let mut score = Decimal::ZERO;
    for c in &strat.criteria {
        let held = c.when.eval(&f);
        let mut pts = Decimal::ZERO;
        if held {
            pts = c.points;
            if let Some(w) = &c.weight {
                let v = w.field.get(&f).unwrap_or_default();
                let mut wp = v
                    .checked_div(w.per)
                    .and_then(|x| x.checked_mul(w.points))
                    .ok_or_else(|| fail(MoneyError::Overflow("a weighted criterion")))?
                    .round_dp(2);
                if let Some(m) = w.max {
                    wp = wp.min(m);
                }
                pts = add(pts, wp.max(Decimal::ZERO), "a criterion's points")?;
            }
            score = add(score, pts, "the score")?;
        }
        if let Some(t) = trace.as_deref_mut() {
            let mut cond = c.when.to_string();
            if let Some(w) = &c.weight {
                cond.push_str(&format!(
                    "; {} points per {} of {}{}",
                    w.points,
                    w.per,
                    w.field.name(),
                    w.max.map(|m| format!(", at most {m}")).unwrap_or_default()
                ));
            }
            t.criteria.push(CriterionTrace {
                name: c.name.clone(),
                condition: cond,
                held,
                points: pts,
                exit: c.exit && held,
            });
        }
        if held && c.exit {
            break;
        }
    }
    f.score = score;
    if let Some(slot) = slot_for(Hook::Score, &f) {
        let v = view.get_or_insert_with(|| make_view(&f)).clone();
        match slot.script.score(&rules.engine, &v, score) {
            Ok(Some(s)) => {
                if let Some(t) = trace.as_deref_mut() {
                    t.script_notes.push(format!(
                        "score {score} -> {s} by script {}",
                        slot.script.file
                    ));
                }
                f.score = s;
                view = None;
            }
            Ok(None) => {}
            Err(e) => script_errors.push(e),
        }
    }

    // Profile and route.
    let profile = strat
        .profiles
        .iter()
        .find(|(_, m)| f.score >= *m)
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| "none".into());
    let (route_cond, gi) = strat
        .routing
        .iter()
        .find(|(c, _)| c.eval(&f))
        .map(|(c, g)| (c.to_string(), *g))
        .unwrap_or((String::new(), 0));
    if let Some(t) = trace.as_deref_mut() {
        t.profile_why = match strat.profiles.iter().find(|(n, _)| *n == profile) {
            Some((_, m)) => format!(
                "`{profile}`: highest profile whose min_score ({m}) <= score {}",
                f.score
            ),
            None => format!("no profile's min_score <= score {}", f.score),
        };
        t.route_why = format!(
            "group `{}`: first route whose condition holds ({route_cond})",
            rules.groups[gi].name
        );
    }

    // Cases.
    let policy = &rules.cases;
    let mut actions = Vec::new();
    let mut open_cases = 0usize;
    let mut max_priority = Priority::Low;
    let mut min_nad: Option<NaiveDate> = None;
    let mut assigned: Option<String> = None;
    let priority_slot = slot_for(Hook::Priority, &f);
    // Documents replaced in this run (split / re-posting) whose clearing came along.
    let replaced_now: Vec<&str> = input
        .items
        .iter()
        .filter(|i| i.open && i.case.is_none())
        .filter_map(|i| i.original_document().or(Some(i.document_no.as_str())))
        .collect();
    for (it, base) in input.items.iter().zip(&base_amounts) {
        let existing = it.case.as_ref();
        let is_open = it.open && !it.open_amount.is_zero();
        if !is_open {
            if let Some(c) = existing {
                let reason = if it.replaced || replaced_now.contains(&it.document_no.as_str()) {
                    "split or re-posted"
                } else {
                    "cleared"
                };
                actions.push(CaseAction::Close {
                    case_id: c.id,
                    reason: reason.into(),
                });
            }
            continue;
        }
        let activity = existing.map_or(&Activity::None, |c| c.activity());
        let (nad, nad_rule) = match it.promised {
            // A promise made since the last activity: follow up the day after it.
            Some(p) if activity.last_date().is_none_or(|d| p.made >= d) => {
                (case::add_days(p.by, 1), case::NadRule::PromiseToPay)
            }
            _ => case::nad(it.document_date, activity, policy),
        };
        let days = days_between(it.due_date, as_of);
        let (mut prio, prule) = case::priority(nad, as_of, *base, days, policy);
        // Written out only for `explain`: a run evaluates every case of the portfolio.
        let mut prule_text = if trace.is_some() {
            prule.describe(policy)
        } else {
            String::new()
        };
        if let Some(slot) = priority_slot {
            let v = view.get_or_insert_with(|| make_view(&f)).clone();
            let cv = CaseView {
                document_no: it.document_no.clone(),
                nad,
                nad_passed: as_of > nad,
                days_overdue: days,
                open_amount: it.open_amount,
                open_amount_base: *base,
                currency: it.currency,
                proposed: prio,
            };
            match slot.script.priority(&rules.engine, &cv, &v) {
                Ok(Some(p)) => match Priority::parse(&p) {
                    Some(p) => {
                        if trace.is_some() {
                            prule_text = format!(
                                "script {} (ByDesign rule gave {})",
                                slot.script.file,
                                prio.as_str()
                            );
                        }
                        prio = p;
                    }
                    None => script_errors.push(ScriptError {
                        file: slot.script.file.clone(),
                        line: None,
                        hook: "priority",
                        message: format!(
                            "returned `{p}`; expected \"high\", \"medium\" or \"low\""
                        ),
                        limit_hit: false,
                    }),
                },
                Ok(None) => {}
                Err(e) => script_errors.push(e),
            }
        }
        open_cases += 1;
        max_priority = max_priority.max(prio);
        min_nad = Some(min_nad.map_or(nad, |m| m.min(nad)));
        match existing {
            Some(c) => {
                if assigned.is_none() {
                    assigned = c.assigned_to.clone();
                }
                if c.nad != nad || c.priority != prio {
                    actions.push(CaseAction::Update {
                        case_id: c.id,
                        nad,
                        priority: prio,
                    });
                }
            }
            None => actions.push(CaseAction::Open {
                item_id: it.id,
                nad,
                priority: prio,
                external_ref: it
                    .root_document()
                    .or(it.original_document())
                    .map(String::from),
            }),
        }
        if let Some(t) = trace.as_deref_mut() {
            t.cases.push(CaseTrace {
                case_id: existing.map(|c| c.id),
                document_no: it.document_no.clone(),
                days_overdue: days,
                open_amount: format!("{} {}", it.open_amount, it.currency),
                nad,
                nad_rule: nad_rule.describe().to_string(),
                priority: prio,
                priority_rule: prule_text,
            });
        }
    }

    if let Some(t) = trace.as_deref_mut() {
        // Most urgent first: what a collector would look at.
        t.cases.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(b.days_overdue.cmp(&a.days_overdue))
        });
    }

    // Escalation, on the ladder the ERP's procedure stands for when the rules map it.
    let erp = &rules.erp_procedures;
    let (li, procedure, listed) = match &cust.dunning {
        Some(ErpDunning::Procedure(p)) => match erp.ladders.get(p) {
            Some(&l) => (l, Some(p), true),
            None => (erp.default.unwrap_or(strat.ladder), Some(p), false),
        },
        Some(ErpDunning::Excluded) | None => (strat.ladder, None, false),
    };
    let ladder = &rules.ladders[li];
    if let Some(t) = trace.as_deref_mut() {
        t.ladder_why = match (procedure, listed, erp.default) {
            (Some(p), true, _) => format!("`{}` (ERP procedure `{p}`)", ladder.name),
            (Some(p), false, Some(_)) => format!(
                "`{}` (erp_procedures default: ERP procedure `{p}` is not listed)",
                ladder.name
            ),
            (Some(p), false, None) => format!(
                "`{}` (strategy `{}`; ERP procedure `{p}` is not listed)",
                ladder.name, strat.name
            ),
            (None, ..) => format!("`{}` (strategy `{}`)", ladder.name, strat.name),
        };
    }
    let dun: Vec<DunItem> = input
        .items
        .iter()
        .zip(&base_amounts)
        .filter(|(i, _)| i.open)
        .map(|(i, a)| DunItem {
            item_id: i.id,
            due_date: i.due_date,
            amount: *a,
            paused: i.promised.is_some_and(|p| p.open),
            level: i.dun_level,
            excluded: i.disputed
                || customer_hold.is_some()
                || i.hold().is_some_and(|h| h.active_on(as_of)),
        })
        .collect();
    let prev = DunState {
        level: input.state.dunning_level,
        on: input.state.dunning_on,
    };
    let esc_slot = slot_for(Hook::Escalation, &f);
    let mut esc_err = None;
    let mut esc_note = None;
    let broken = input
        .promises
        .iter()
        .filter(|p| p.status == PromiseStatus::Broken)
        .filter_map(|p| p.judged_on)
        .max();
    let outcome = escalation::decide(ladder, as_of, &dun, prev, broken, |proposed| {
        let slot = esc_slot?;
        let v = view.get_or_insert_with(|| make_view(&f)).clone();
        match slot.script.escalation(&rules.engine, &v, proposed as i64) {
            Ok(Some(l)) => {
                esc_note = Some(format!(
                    "escalation level {proposed} -> {l} by script {}",
                    slot.script.file
                ));
                Some(l.max(0) as usize)
            }
            Ok(None) => None,
            Err(e) => {
                esc_err = Some(e);
                None
            }
        }
    });
    script_errors.extend(esc_err);
    // The ERP does not dun this customer: neither does Arrears. What the ladder would
    // have done stays visible to `explain`; the state does not move.
    let outcome = if cust.dunning == Some(ErpDunning::Excluded) {
        escalation::Outcome {
            decision: None,
            state: prev,
            why_not: Some(match &outcome.decision {
                Some(d) => format!(
                    "not dunned: the ERP has no dunning procedure for this customer (the ladder would have sent level {})",
                    d.level
                ),
                None => "not dunned: the ERP has no dunning procedure for this customer".into(),
            }),
            ..outcome
        }
    } else {
        outcome
    };

    // Worklist: work is due (a NAD reached) or a resubmission date has come; a future
    // resubmission keeps the customer off until then.
    let on_worklist = match (input.resubmission, min_nad) {
        (_, None) => None,
        (Some(r), _) if r > as_of => None,
        (Some(r), _) if r == as_of => Some(format!("resubmitted for {r}")),
        (_, Some(n)) if n <= as_of => Some(format!("next activity due {n}")),
        _ => None,
    };
    if let Some(t) = trace.as_deref_mut() {
        t.script_notes.extend(esc_note);
        t.script_notes.extend(
            script_errors
                .iter()
                .map(|e| format!("script error (YAML result kept): {e}")),
        );
        t.escalation = Some(outcome.clone());
        t.worklist_why = match (&on_worklist, input.resubmission, min_nad) {
            (Some(w), _, _) => format!("on the worklist: {w}"),
            (None, _, None) => "off the worklist: no open case".into(),
            (None, Some(r), _) if r > as_of => {
                format!("off the worklist until the resubmission date {r}")
            }
            (None, _, Some(n)) => format!("off the worklist: next activity due {n}"),
        };
    }

    Ok(Eval {
        facts: f,
        strategy: si,
        profile,
        group: gi,
        priority: max_priority,
        cases: actions,
        open_cases,
        min_nad,
        ladder: li,
        escalation: outcome,
        on_worklist,
        assigned,
        script_errors,
        trace,
    })
}
