//! SAP Business ByDesign collection-case rules: Next Activity Due date and priority.
//! Pure functions of the case's state and an explicit `as_of`; the numbers come from
//! the rule set's [`CasePolicy`].

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;

use arrears_core::domain::{Activity, Priority};
use arrears_rules::CasePolicy;

/// Which NAD rule produced the date, so `explain` can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NadRule {
    Initial,
    ActivityOpen,
    Completed,
    PromiseToPay,
}

impl NadRule {
    pub fn describe(self) -> &'static str {
        match self {
            NadRule::Initial => "document date + initial days (no activity yet)",
            NadRule::ActivityOpen => "last edited + days to complete of the open activity",
            NadRule::Completed => "completion date + 1",
            NadRule::PromiseToPay => "day after the promise-to-pay date",
        }
    }
}

pub fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        d.checked_add_days(Days::new(n as u64))
            .unwrap_or(NaiveDate::MAX)
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs()))
            .unwrap_or(NaiveDate::MIN)
    }
}

/// Next Activity Due date.
///
/// * no activity: document date + `initial_nad_days` (ByDesign: 3);
/// * activity assigned: last-edited date + the subcategory's days to complete (assigning
///   edits the case, so at assignment this is "today + days to complete");
/// * activity completed: completion date + 1, or promise-to-pay date + 1 when a PTP was
///   agreed — which is also the rule once the PTP has passed.
pub fn nad(
    document_date: NaiveDate,
    activity: &Activity,
    policy: &CasePolicy,
) -> (NaiveDate, NadRule) {
    match activity {
        Activity::None => (
            add_days(document_date, policy.initial_nad_days),
            NadRule::Initial,
        ),
        Activity::Open {
            days_to_complete,
            last_edited_on,
            ..
        } => (
            add_days(*last_edited_on, *days_to_complete),
            NadRule::ActivityOpen,
        ),
        Activity::Completed { ptp: Some(p), .. } => (add_days(*p, 1), NadRule::PromiseToPay),
        Activity::Completed { on, ptp: None } => (add_days(*on, 1), NadRule::Completed),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityRule {
    /// NAD passed and open amount high.
    HighAmount,
    /// NAD passed and more than `high_days_overdue` days overdue.
    HighAge,
    /// NAD passed, amount not high, not very old.
    Medium,
    /// NAD not passed yet.
    Low,
}

impl PriorityRule {
    pub fn describe(self, p: &CasePolicy) -> String {
        match self {
            PriorityRule::HighAmount => format!(
                "NAD passed and open amount >= {} (high amount)",
                p.high_amount
            ),
            PriorityRule::HighAge => format!(
                "NAD passed and more than {} days overdue",
                p.high_days_overdue
            ),
            PriorityRule::Medium => "NAD passed, amount not high".into(),
            PriorityRule::Low => "NAD not passed yet".into(),
        }
    }
}

/// ByDesign priority. "Passed" means the NAD lies before `as_of` (due today is not passed).
/// `open_amount` is in the base currency the threshold is given in.
pub fn priority(
    nad: NaiveDate,
    as_of: NaiveDate,
    open_amount: Decimal,
    days_overdue: i64,
    policy: &CasePolicy,
) -> (Priority, PriorityRule) {
    if as_of <= nad {
        (Priority::Low, PriorityRule::Low)
    } else if open_amount >= policy.high_amount {
        (Priority::High, PriorityRule::HighAmount)
    } else if days_overdue > policy.high_days_overdue {
        (Priority::High, PriorityRule::HighAge)
    } else {
        (Priority::Medium, PriorityRule::Medium)
    }
}

pub fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn policy() -> CasePolicy {
        CasePolicy {
            initial_nad_days: 3,
            high_amount: dec!(10000),
            high_days_overdue: 60,
        }
    }

    fn open(days: i64, edited: &str) -> Activity {
        Activity::Open {
            category: "contact".into(),
            subcategory: "call".into(),
            days_to_complete: days,
            last_edited_on: d(edited),
        }
    }

    #[test]
    fn nad_rules_table() {
        let doc = d("2026-10-01");
        let cases: &[(&str, Activity, &str, NadRule)] = &[
            (
                "new case: document date + 3",
                Activity::None,
                "2026-10-04",
                NadRule::Initial,
            ),
            (
                "activity assigned on 11-10 with 5 days to complete",
                open(5, "2026-11-10"),
                "2026-11-15",
                NadRule::ActivityOpen,
            ),
            (
                "later edit on 11-12 re-applies the 5 days from the edit",
                open(5, "2026-11-12"),
                "2026-11-17",
                NadRule::ActivityOpen,
            ),
            (
                "zero days to complete: due the day it is assigned",
                open(0, "2026-11-12"),
                "2026-11-12",
                NadRule::ActivityOpen,
            ),
            (
                "completed on 11-20 without promise",
                Activity::Completed {
                    on: d("2026-11-20"),
                    ptp: None,
                },
                "2026-11-21",
                NadRule::Completed,
            ),
            (
                "completed with a promise to pay on 11-30",
                Activity::Completed {
                    on: d("2026-11-20"),
                    ptp: Some(d("2026-11-30")),
                },
                "2026-12-01",
                NadRule::PromiseToPay,
            ),
            (
                "promise date before completion date still rules",
                Activity::Completed {
                    on: d("2026-11-20"),
                    ptp: Some(d("2026-11-18")),
                },
                "2026-11-19",
                NadRule::PromiseToPay,
            ),
        ];
        for (name, act, want, rule) in cases {
            assert_eq!(nad(doc, act, &policy()), (d(want), *rule), "{name}");
        }
        let p = CasePolicy {
            initial_nad_days: 10,
            ..policy()
        };
        assert_eq!(
            nad(doc, &Activity::None, &p).0,
            d("2026-10-11"),
            "initial offset is configurable"
        );
    }

    #[test]
    fn priority_rules_table() {
        let as_of = d("2026-11-23");
        // (name, nad, amount, days overdue, expected)
        let cases: &[(&str, &str, Decimal, i64, Priority, PriorityRule)] = &[
            (
                "NAD in the future",
                "2026-11-30",
                dec!(50000),
                90,
                Priority::Low,
                PriorityRule::Low,
            ),
            (
                "NAD today has not passed",
                "2026-11-23",
                dec!(50000),
                90,
                Priority::Low,
                PriorityRule::Low,
            ),
            (
                "NAD passed, high amount",
                "2026-11-22",
                dec!(10000),
                5,
                Priority::High,
                PriorityRule::HighAmount,
            ),
            (
                "NAD passed, 61 days overdue",
                "2026-11-22",
                dec!(10),
                61,
                Priority::High,
                PriorityRule::HighAge,
            ),
            (
                "NAD passed, exactly 60 days is not more than 60",
                "2026-11-22",
                dec!(10),
                60,
                Priority::Medium,
                PriorityRule::Medium,
            ),
            (
                "NAD passed, just below the amount",
                "2026-11-01",
                dec!(9999.99),
                30,
                Priority::Medium,
                PriorityRule::Medium,
            ),
        ];
        for (name, nad_s, amt, days, want, rule) in cases {
            assert_eq!(
                priority(d(nad_s), as_of, *amt, *days, &policy()),
                (*want, *rule),
                "{name}"
            );
        }
        let p = CasePolicy {
            high_amount: dec!(500),
            high_days_overdue: 30,
            ..policy()
        };
        assert_eq!(
            priority(d("2026-11-01"), as_of, dec!(500), 0, &p).0,
            Priority::High,
            "threshold from the strategy"
        );
        assert_eq!(
            priority(d("2026-11-01"), as_of, dec!(1), 31, &p).0,
            Priority::High,
            "age from the strategy"
        );
    }
}
