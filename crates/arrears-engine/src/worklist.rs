//! Worklist generation for one collection group.
//!
//! Balancing: customers are taken in descending score order; each goes to the present
//! collector whose load would be lowest afterwards, where
//! `load = w_items * items / group_items + w_amount * amount / group_amount`
//! (a greedy "least loaded first" pass over both item count and amount). A customer
//! already worked by a present collector stays with them, so worklists do not reshuffle
//! from run to run; work of an absent collector goes to their substitute (following
//! the substitute chain), and when nobody in reach is present it stays unassigned.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use arrears_rules::{Collector, Group};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub customer_id: i64,
    pub score: Decimal,
    pub items: i64,
    /// Base currency.
    pub amount: Decimal,
    /// Collector who worked this customer before (manual assignment or last run).
    pub sticky: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Load {
    pub items: i64,
    pub amount: Decimal,
}

/// Who actually works `id`'s queue on `as_of`: themselves, or the first present substitute.
pub fn effective<'a>(
    id: &'a str,
    all: &HashMap<&'a str, &'a Collector>,
    as_of: NaiveDate,
) -> Option<&'a str> {
    let mut cur = id;
    for _ in 0..=all.len() {
        let c = all.get(cur)?;
        if !c.absent_on(as_of) {
            return Some(c.id.as_str());
        }
        cur = c.substitute.as_deref()?;
    }
    None // a substitute cycle where everybody is absent
}

/// Assigns candidates (any order) to collectors; `loads` holds work already assigned
/// (e.g. unchanged customers in an incremental run) and is updated.
pub fn balance(
    group: &Group,
    all: &HashMap<&str, &Collector>,
    as_of: NaiveDate,
    mut cands: Vec<Candidate>,
    loads: &mut HashMap<String, Load>,
) -> Vec<(Candidate, Option<String>)> {
    cands.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(b.amount.cmp(&a.amount))
            .then(a.customer_id.cmp(&b.customer_id))
    });
    let present: Vec<&str> = group
        .collectors
        .iter()
        .filter(|c| !c.absent_on(as_of))
        .map(|c| c.id.as_str())
        .collect();
    let total_items: i64 =
        cands.iter().map(|c| c.items).sum::<i64>() + loads.values().map(|l| l.items).sum::<i64>();
    let total_amount: Decimal = cands.iter().map(|c| c.amount).sum::<Decimal>()
        + loads.values().map(|l| l.amount).sum::<Decimal>();
    let score = |l: &Load| -> Decimal {
        let mut s = Decimal::ZERO;
        if total_items > 0 {
            s += group.balance_items * Decimal::from(l.items) / Decimal::from(total_items);
        }
        if total_amount > Decimal::ZERO {
            s += group.balance_amount * l.amount / total_amount;
        }
        s
    };
    let mut out = Vec::with_capacity(cands.len());
    for c in cands {
        let mut who: Option<&str> = c
            .sticky
            .as_deref()
            .filter(|s| group.collectors.iter().any(|g| g.id == *s))
            .and_then(|s| all.get(s).map(|col| col.id.as_str()))
            .and_then(|s| effective(s, all, as_of));
        if who.is_none() {
            who = present
                .iter()
                .min_by(|a, b| {
                    let la = loads.get(**a).cloned().unwrap_or_default();
                    let lb = loads.get(**b).cloned().unwrap_or_default();
                    let na = Load {
                        items: la.items + c.items,
                        amount: la.amount + c.amount,
                    };
                    let nb = Load {
                        items: lb.items + c.items,
                        amount: lb.amount + c.amount,
                    };
                    score(&na).cmp(&score(&nb)).then(a.cmp(b))
                })
                .copied();
        }
        if let Some(w) = who {
            let l = loads.entry(w.to_string()).or_default();
            l.items += c.items;
            l.amount += c.amount;
        }
        out.push((c, who.map(str::to_string)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_rules::Absence;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn collector(id: &str, sub: Option<&str>, absent: bool) -> Collector {
        Collector {
            id: id.into(),
            name: id.into(),
            email: None,
            substitute: sub.map(Into::into),
            absences: if absent {
                vec![Absence {
                    from: d("2026-11-01"),
                    to: d("2026-11-30"),
                }]
            } else {
                vec![]
            },
        }
    }

    fn group(cols: Vec<Collector>) -> Group {
        Group {
            name: "g".into(),
            manager: None,
            collectors: cols,
            balance_items: dec!(1),
            balance_amount: dec!(1),
        }
    }

    fn cand(id: i64, score: i64, items: i64, amount: Decimal) -> Candidate {
        Candidate {
            customer_id: id,
            score: score.into(),
            items,
            amount,
            sticky: None,
        }
    }

    #[test]
    fn balances_by_items_and_amount() {
        let g = group(vec![
            collector("a", None, false),
            collector("b", None, false),
        ]);
        let all: HashMap<&str, &Collector> =
            g.collectors.iter().map(|c| (c.id.as_str(), c)).collect();
        let cands = vec![
            cand(1, 90, 1, dec!(10000)),
            cand(2, 80, 5, dec!(100)),
            cand(3, 70, 5, dec!(100)),
            cand(4, 60, 1, dec!(100)),
        ];
        let out = balance(&g, &all, d("2026-11-23"), cands, &mut HashMap::new());
        let by: HashMap<i64, String> = out
            .into_iter()
            .map(|(c, w)| (c.customer_id, w.unwrap()))
            .collect();
        // The big-amount customer alone balances the many small items on the other side.
        assert_eq!(by[&1], "a");
        assert_eq!(by[&2], "b");
        assert_eq!(by[&3], "b");
        assert_ne!(by[&4], by[&1], "4 evens the item count");
    }

    #[test]
    fn absent_collectors_work_goes_to_the_substitute_chain() {
        let g = group(vec![
            collector("a", Some("b"), true),
            collector("b", Some("c"), true),
            collector("c", None, false),
        ]);
        let all: HashMap<&str, &Collector> =
            g.collectors.iter().map(|c| (c.id.as_str(), c)).collect();
        assert_eq!(effective("a", &all, d("2026-11-23")), Some("c"));
        assert_eq!(
            effective("a", &all, d("2026-12-01")),
            Some("a"),
            "back from absence"
        );
        let mut c = cand(1, 1, 1, dec!(1));
        c.sticky = Some("a".into());
        let out = balance(&g, &all, d("2026-11-23"), vec![c], &mut HashMap::new());
        assert_eq!(out[0].1.as_deref(), Some("c"));
    }

    #[test]
    fn nobody_present_leaves_work_unassigned() {
        let g = group(vec![
            collector("a", Some("b"), true),
            collector("b", Some("a"), true),
        ]);
        let all: HashMap<&str, &Collector> =
            g.collectors.iter().map(|c| (c.id.as_str(), c)).collect();
        let out = balance(
            &g,
            &all,
            d("2026-11-23"),
            vec![cand(1, 1, 1, dec!(1))],
            &mut HashMap::new(),
        );
        assert_eq!(out[0].1, None);
    }

    #[test]
    fn sticky_customers_stay_with_a_present_collector() {
        let g = group(vec![
            collector("a", None, false),
            collector("b", None, false),
        ]);
        let all: HashMap<&str, &Collector> =
            g.collectors.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut cands: Vec<_> = (1..=4).map(|i| cand(i, 1, 1, dec!(1))).collect();
        for c in &mut cands {
            c.sticky = Some("a".into());
        }
        let out = balance(&g, &all, d("2026-11-23"), cands, &mut HashMap::new());
        assert!(out.iter().all(|(_, w)| w.as_deref() == Some("a")));
    }
}
