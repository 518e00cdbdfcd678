//! Conditions compiled from YAML into a small native tree: evaluating one costs a few
//! comparisons, so YAML criteria stay ~100x cheaper than a script call.

use std::fmt;

use rust_decimal::Decimal;

use super::raw;
use crate::facts::{Facts, NumField, TextField};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
            Cmp::Eq => "==",
        }
    }

    fn holds(self, a: Decimal, b: Decimal) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Gte => a >= b,
            Cmp::Lt => a < b,
            Cmp::Lte => a <= b,
            Cmp::Eq => a == b,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Cond {
    True,
    Num(NumField, Cmp, Decimal),
    TextIn(TextField, Vec<String>),
    TextNotIn(TextField, Vec<String>),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    pub fn eval(&self, f: &Facts) -> bool {
        match self {
            Cond::True => true,
            Cond::Num(field, cmp, v) => field.get(f).is_some_and(|x| cmp.holds(x, *v)),
            Cond::TextIn(field, vs) => vs.iter().any(|v| v == field.get(f)),
            Cond::TextNotIn(field, vs) => !vs.iter().any(|v| v == field.get(f)),
            Cond::All(cs) => cs.iter().all(|c| c.eval(f)),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(f)),
            Cond::Not(c) => !c.eval(f),
        }
    }

    /// Segments referenced by `segment` tests, so the loader can check they exist.
    pub fn segments_named(&self, out: &mut Vec<String>) {
        match self {
            Cond::TextIn(TextField::Segment, vs) | Cond::TextNotIn(TextField::Segment, vs) => {
                out.extend(vs.iter().cloned())
            }
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| c.segments_named(out)),
            Cond::Not(c) => c.segments_named(out),
            _ => {}
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, cs: &[Cond], sep: &str| -> fmt::Result {
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    write!(f, " {sep} ")?;
                }
                write!(f, "{c}")?;
            }
            Ok(())
        };
        match self {
            Cond::True => f.write_str("always"),
            Cond::Num(field, cmp, v) => write!(f, "{} {} {}", field.name(), cmp.symbol(), v),
            Cond::TextIn(field, vs) if vs.len() == 1 => write!(f, "{} = {}", field.name(), vs[0]),
            Cond::TextIn(field, vs) => write!(f, "{} in [{}]", field.name(), vs.join(", ")),
            Cond::TextNotIn(field, vs) => write!(f, "{} not in [{}]", field.name(), vs.join(", ")),
            Cond::All(cs) => join(f, cs, "and"),
            Cond::Any(cs) => {
                f.write_str("(")?;
                join(f, cs, "or")?;
                f.write_str(")")
            }
            Cond::Not(c) => write!(f, "not ({c})"),
        }
    }
}

fn num(out: &mut Vec<Cond>, field: NumField, t: &Option<raw::NumTest>) {
    let Some(t) = t else { return };
    for (cmp, v) in [
        (Cmp::Gt, t.gt),
        (Cmp::Gte, t.gte),
        (Cmp::Lt, t.lt),
        (Cmp::Lte, t.lte),
        (Cmp::Eq, t.eq),
    ] {
        if let Some(v) = v {
            out.push(Cond::Num(field, cmp, v));
        }
    }
}

fn text(out: &mut Vec<Cond>, field: TextField, t: &Option<raw::TextTest>) {
    let Some(t) = t else { return };
    if let Some(v) = &t.eq {
        out.push(Cond::TextIn(field, vec![v.clone()]));
    }
    if let Some(vs) = &t.in_ {
        out.push(Cond::TextIn(field, vs.clone()));
    }
    if let Some(v) = &t.ne {
        out.push(Cond::TextNotIn(field, vec![v.clone()]));
    }
    if let Some(vs) = &t.not_in {
        out.push(Cond::TextNotIn(field, vs.clone()));
    }
}

/// Compiles a YAML condition; an empty condition (`{}`) is an error because it is
/// almost always a mistake and would silently match everybody.
pub fn compile(c: &raw::Condition) -> Result<Cond, String> {
    let mut parts = Vec::new();
    num(&mut parts, NumField::OpenAmount, &c.open_amount);
    num(&mut parts, NumField::OverdueAmount, &c.overdue_amount);
    num(&mut parts, NumField::MaxDaysOverdue, &c.max_days_overdue);
    num(&mut parts, NumField::AvgDaysOverdue, &c.avg_days_overdue);
    num(&mut parts, NumField::OpenItems, &c.open_items);
    num(&mut parts, NumField::OverdueItems, &c.overdue_items);
    num(&mut parts, NumField::DisputedItems, &c.disputed_items);
    num(&mut parts, NumField::BlockedItems, &c.blocked_items);
    num(&mut parts, NumField::PromisesBroken, &c.promises_broken);
    num(&mut parts, NumField::PromisesKept, &c.promises_kept);
    num(&mut parts, NumField::PromisesMade, &c.promises_made);
    num(&mut parts, NumField::PromisesPartial, &c.promises_partial);
    num(&mut parts, NumField::PromiseKeptRate, &c.promise_kept_rate);
    num(
        &mut parts,
        NumField::PromiseAvgDelayDays,
        &c.promise_avg_delay_days,
    );
    num(
        &mut parts,
        NumField::CreditLimitUtilisation,
        &c.credit_limit_utilisation,
    );
    num(
        &mut parts,
        NumField::DaysSinceLastPayment,
        &c.days_since_last_payment,
    );
    num(&mut parts, NumField::Score, &c.score);
    text(&mut parts, TextField::Segment, &c.segment);
    text(&mut parts, TextField::Company, &c.company);
    text(&mut parts, TextField::Currency, &c.currency);
    text(&mut parts, TextField::Country, &c.country);
    if let Some(any) = &c.any {
        if any.is_empty() {
            return Err("`any` needs at least one condition".into());
        }
        parts.push(Cond::Any(
            any.iter().map(compile).collect::<Result<_, _>>()?,
        ));
    }
    if let Some(n) = &c.not {
        parts.push(Cond::Not(Box::new(compile(n)?)));
    }
    match parts.len() {
        0 => Err(
            "empty condition: name at least one fact test (e.g. `max_days_overdue: { gt: 30 }`)"
                .into(),
        ),
        1 => Ok(parts.pop().expect("one part")),
        _ => Ok(Cond::All(parts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn cond(yaml: &str) -> Cond {
        compile(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn conditions_combine_and_or_not() {
        let c = cond("{ max_days_overdue: { gt: 60 }, any: [ { segment: { eq: key } }, { overdue_amount: { gte: 1000 } } ] }");
        let mut f = Facts {
            max_days_overdue: 61,
            segment: "key".into(),
            ..Facts::default()
        };
        assert!(c.eval(&f));
        f.segment = "smb".into();
        assert!(!c.eval(&f));
        f.overdue_amount = dec!(1000);
        assert!(c.eval(&f));
        f.max_days_overdue = 60;
        assert!(!c.eval(&f));
        assert_eq!(
            c.to_string(),
            "max_days_overdue > 60 and (segment = key or overdue_amount >= 1000)"
        );
        let n = cond("{ not: { currency: { in: [EUR, USD] } } }");
        f.currency = "EUR".into();
        assert!(!n.eval(&f));
        f.currency = "GBP".into();
        assert!(n.eval(&f));
    }

    #[test]
    fn unknown_facts_fail_tests_and_empty_conditions_are_refused() {
        let c = cond("{ promise_kept_rate: { lt: 0.5 } }");
        assert!(
            !c.eval(&Facts::default()),
            "no judged promise yet: the test must not hold"
        );
        assert!(compile(&raw::Condition::default()).is_err());
        let e =
            serde_yaml::from_str::<raw::Condition>("{ max_days_overdu: { gt: 1 } }").unwrap_err();
        assert!(e.to_string().contains("max_days_overdu"), "{e}");
    }
}
