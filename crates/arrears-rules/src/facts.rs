//! Per-customer facts: the numbers strategies, conditions and scripts look at.
//! Amounts are in the rule set's base currency (converted with its explicit rates).

use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub open_amount: Decimal,
    pub overdue_amount: Decimal,
    pub max_days_overdue: i64,
    pub avg_days_overdue: Decimal,
    pub open_items: i64,
    pub overdue_items: i64,
    pub disputed_items: i64,
    pub blocked_items: i64,
    pub promises_broken: i64,
    pub promises_kept: i64,
    /// Every promise the customer made, judged or not.
    pub promises_made: i64,
    pub promises_partial: i64,
    /// kept / judged promises; `None` until a promise has been judged.
    pub promise_kept_rate: Option<Decimal>,
    /// Average days from the promised date to the day the payments reached it (kept
    /// promises; negative = early); `None` until a promise has been kept.
    pub promise_avg_delay_days: Option<Decimal>,
    /// open amount / credit limit; `None` without a credit limit.
    pub credit_limit_utilisation: Option<Decimal>,
    pub days_since_last_payment: Option<i64>,
    pub score: Decimal,
    pub segment: String,
    pub company: String,
    /// Currency of the customer's largest open amount.
    pub currency: String,
    pub country: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumField {
    OpenAmount,
    OverdueAmount,
    MaxDaysOverdue,
    AvgDaysOverdue,
    OpenItems,
    OverdueItems,
    DisputedItems,
    BlockedItems,
    PromisesBroken,
    PromisesKept,
    PromisesMade,
    PromisesPartial,
    PromiseKeptRate,
    PromiseAvgDelayDays,
    CreditLimitUtilisation,
    DaysSinceLastPayment,
    Score,
}

impl NumField {
    pub const ALL: [(&'static str, NumField); 17] = [
        ("open_amount", NumField::OpenAmount),
        ("overdue_amount", NumField::OverdueAmount),
        ("max_days_overdue", NumField::MaxDaysOverdue),
        ("avg_days_overdue", NumField::AvgDaysOverdue),
        ("open_items", NumField::OpenItems),
        ("overdue_items", NumField::OverdueItems),
        ("disputed_items", NumField::DisputedItems),
        ("blocked_items", NumField::BlockedItems),
        ("promises_broken", NumField::PromisesBroken),
        ("promises_kept", NumField::PromisesKept),
        ("promises_made", NumField::PromisesMade),
        ("promises_partial", NumField::PromisesPartial),
        ("promise_kept_rate", NumField::PromiseKeptRate),
        ("promise_avg_delay_days", NumField::PromiseAvgDelayDays),
        ("credit_limit_utilisation", NumField::CreditLimitUtilisation),
        ("days_since_last_payment", NumField::DaysSinceLastPayment),
        ("score", NumField::Score),
    ];

    pub fn parse(name: &str) -> Option<NumField> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// `None` when the fact is unknown for this customer; a test on it then fails.
    pub fn get(self, f: &Facts) -> Option<Decimal> {
        Some(match self {
            NumField::OpenAmount => f.open_amount,
            NumField::OverdueAmount => f.overdue_amount,
            NumField::MaxDaysOverdue => f.max_days_overdue.into(),
            NumField::AvgDaysOverdue => f.avg_days_overdue,
            NumField::OpenItems => f.open_items.into(),
            NumField::OverdueItems => f.overdue_items.into(),
            NumField::DisputedItems => f.disputed_items.into(),
            NumField::BlockedItems => f.blocked_items.into(),
            NumField::PromisesBroken => f.promises_broken.into(),
            NumField::PromisesKept => f.promises_kept.into(),
            NumField::PromisesMade => f.promises_made.into(),
            NumField::PromisesPartial => f.promises_partial.into(),
            NumField::PromiseKeptRate => return f.promise_kept_rate,
            NumField::PromiseAvgDelayDays => return f.promise_avg_delay_days,
            NumField::CreditLimitUtilisation => return f.credit_limit_utilisation,
            NumField::DaysSinceLastPayment => return f.days_since_last_payment.map(Into::into),
            NumField::Score => f.score,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Segment,
    Company,
    Currency,
    Country,
}

impl TextField {
    pub fn name(self) -> &'static str {
        match self {
            TextField::Segment => "segment",
            TextField::Company => "company",
            TextField::Currency => "currency",
            TextField::Country => "country",
        }
    }

    pub fn get(self, f: &Facts) -> &str {
        match self {
            TextField::Segment => &f.segment,
            TextField::Company => &f.company,
            TextField::Currency => &f.currency,
            TextField::Country => &f.country,
        }
    }
}
