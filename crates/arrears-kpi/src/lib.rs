//! Finance KPIs: receivables, aging, DSO (standard, count-back, best possible), average
//! days delinquent, CEI, open cases, promises, expected cash and per-collector workload.
//! The daemon calls [`compute`] after every portfolio run and exports the values as
//! Prometheus gauges.
//!
//! Every definition, formula and approximation is written out for finance readers in
//! `docs/KPIS.md`. The store reads the raw sums in one snapshot
//! ([`Store::kpi_figures`], parameterised with the definitions below); this crate turns
//! them into KPIs ([`from_figures`]) and needs no database to be tested.

use std::collections::{BTreeMap, HashMap};

use arrears_store::{KpiFigures, KpiScan, Store, StoreError};
use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

/// Aging buckets by days past due (`as_of − due_date`), in reporting order.
pub const AGING_BUCKETS: [&str; 6] = ["current", "1_30", "31_60", "61_90", "91_180", "over_180"];

/// Inclusive upper bounds, in days past due, of the first five [`AGING_BUCKETS`].
pub const AGING_BOUNDS: [i64; 5] = [0, 30, 60, 90, 180];

/// Length of a count-back period, in days.
pub const COUNT_BACK_PERIOD_DAYS: i64 = 30;

/// Expected cash looks at due dates and promise dates `as_of ..= as_of + 6`.
pub const EXPECTED_CASH_DAYS: i64 = 7;

/// Collector name used for worklist entries nobody is assigned to.
pub const UNASSIGNED: &str = "unassigned";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiOptions {
    /// Credit-sales window of the standard and best-possible DSO, in days.
    pub dso_window_days: i64,
    /// Period of the collection effectiveness index, in days (ends on `as_of`).
    pub cei_window_days: i64,
}

impl Default for KpiOptions {
    fn default() -> Self {
        KpiOptions {
            dso_window_days: 90,
            cei_window_days: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Kpis {
    pub as_of: NaiveDate,
    /// One row per (company, currency), ordered by company then currency.
    pub companies: Vec<CompanyKpis>,
    /// One row per collector, ordered by name; `unassigned` holds the unassigned worklist.
    pub collectors: Vec<CollectorKpis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompanyKpis {
    pub company: String,
    pub currency: String,
    /// Open amount of the items dated on or before `as_of`.
    pub receivables: Decimal,
    /// The part of `receivables` past its due date (at least one day past due).
    pub overdue: Decimal,
    /// `(bucket, open amount)` in the order of [`AGING_BUCKETS`].
    pub aging: Vec<(String, Decimal)>,
    /// Days, 1 decimal; `None` without (net positive) credit sales in the DSO window.
    pub dso_standard: Option<Decimal>,
    /// Days, 1 decimal; `None` without any (net positive) credit sales up to `as_of`.
    pub dso_count_back: Option<Decimal>,
    pub dso_best_possible: Option<Decimal>,
    /// Reported standard DSO − reported best possible DSO.
    pub average_days_delinquent: Option<Decimal>,
    /// Ratio 0..1 with 4 decimals (values outside mean the reconstruction lacked data).
    pub cei: Option<Decimal>,
    /// Open cases of the whole company (all currencies; the same on each of its currency
    /// rows, so never add them up over rows): `("high" | "medium" | "low", n)`.
    pub open_cases_by_priority: Vec<(String, i64)>,
    pub promises_kept: i64,
    pub promises_partial: i64,
    pub promises_broken: i64,
    /// kept / (kept + partially kept + broken), 4 decimals; `None` before any judgement.
    pub promise_kept_rate: Option<Decimal>,
    /// Open amount due in `as_of ..= as_of + 6` plus open promises falling due then.
    pub expected_cash_7d: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectorKpis {
    pub collector: String,
    pub worklist_entries: i64,
    /// Sum of the worklist amounts (the rules' base currency).
    pub worklist_amount: Decimal,
    /// Activities this collector completed on or before `as_of` (all time).
    pub activities_completed: i64,
    /// Of those, the completions that recorded a promise to pay.
    pub promises_taken: i64,
}

/// Days reported with 1 decimal, ratios with 4; half away from zero ("commercial rounding").
const ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;

fn round_days(x: Decimal) -> Decimal {
    let mut r = x.round_dp_with_strategy(1, ROUNDING);
    r.rescale(1);
    r
}

fn round_ratio(x: Decimal) -> Decimal {
    let mut r = x.round_dp_with_strategy(4, ROUNDING);
    r.rescale(4);
    r
}

/// `numerator × factor / denominator`, `None` when the denominator is not positive (or on
/// an overflow no real ledger reaches).
fn scaled(numerator: Decimal, denominator: Decimal, factor: Decimal) -> Option<Decimal> {
    if denominator <= Decimal::ZERO {
        return None;
    }
    numerator.checked_mul(factor)?.checked_div(denominator)
}

/// Computes the KPIs as of `as_of` (see `docs/KPIS.md` for every definition).
pub fn compute(store: &Store, as_of: NaiveDate, opts: &KpiOptions) -> Result<Kpis, StoreError> {
    let figures = store.kpi_figures(&scan(as_of, opts))?;
    Ok(from_figures(as_of, opts, &figures))
}

/// What the store adds up for these options: the windows, and this crate's definitions.
pub fn scan(as_of: NaiveDate, opts: &KpiOptions) -> KpiScan {
    KpiScan {
        as_of,
        dso_window_days: opts.dso_window_days,
        cei_window_days: opts.cei_window_days,
        period_days: COUNT_BACK_PERIOD_DAYS,
        soon_days: EXPECTED_CASH_DAYS,
        aging_bounds: AGING_BOUNDS,
        parts: None,
    }
}

/// The KPIs from the raw figures of a pass made with [`scan`]`(as_of, opts)`.
pub fn from_figures(as_of: NaiveDate, opts: &KpiOptions, figures: &KpiFigures) -> Kpis {
    // Open cases are a company figure: counted per row, then summed over the company.
    let mut open_cases: HashMap<&str, [i64; 3]> = HashMap::new();
    for r in &figures.rows {
        let sum = open_cases.entry(r.company.as_str()).or_default();
        for (n, k) in sum.iter_mut().zip(r.open_cases) {
            *n += k;
        }
    }
    let window = Decimal::from(opts.dso_window_days);
    let mut companies: Vec<CompanyKpis> = figures
        .rows
        .iter()
        .map(|a| {
            let receivables = a.receivables;
            let current = a.aging[0];
            let sales_dso = a.sales_in_dso_window;
            let dso_standard = scaled(receivables, sales_dso, window).map(round_days);
            let dso_best_possible = scaled(current, sales_dso, window).map(round_days);
            let judged = a.promises_kept + a.promises_partial + a.promises_broken;
            let cei_base = a.beginning_receivables + a.sales_in_cei_window;
            CompanyKpis {
                company: a.company.clone(),
                currency: a.currency.clone(),
                receivables,
                overdue: a.overdue,
                aging: AGING_BUCKETS
                    .iter()
                    .zip(a.aging)
                    .map(|(b, v)| (b.to_string(), v))
                    .collect(),
                dso_standard,
                dso_count_back: count_back(receivables, &a.sales_by_period).map(round_days),
                dso_best_possible,
                average_days_delinquent: dso_standard.zip(dso_best_possible).map(|(s, b)| s - b),
                cei: scaled(cei_base - receivables, cei_base - current, Decimal::ONE)
                    .map(round_ratio),
                open_cases_by_priority: ["high", "medium", "low"]
                    .iter()
                    .zip(open_cases[a.company.as_str()])
                    .map(|(p, n)| (p.to_string(), n))
                    .collect(),
                promises_kept: a.promises_kept,
                promises_partial: a.promises_partial,
                promises_broken: a.promises_broken,
                promise_kept_rate: (judged > 0)
                    .then(|| round_ratio(Decimal::from(a.promises_kept) / Decimal::from(judged))),
                expected_cash_7d: a.due_soon + a.promised_soon,
            }
        })
        .collect();
    companies.sort_by(|a, b| (&a.company, &a.currency).cmp(&(&b.company, &b.currency)));
    Kpis {
        as_of,
        companies,
        collectors: collectors(figures),
    }
}

/// Count-back DSO: walks back 30-day periods from `as_of`, using up the receivables with
/// each period's credit sales; a whole period counts 30 days, the last one the share of
/// its sales still needed. When the history runs out first, the days walked (a lower
/// bound). `None` when there were no net positive credit sales at all.
fn count_back(receivables: Decimal, periods: &[Decimal]) -> Option<Decimal> {
    if !periods.iter().any(|s| *s > Decimal::ZERO) {
        return None;
    }
    let length = Decimal::from(COUNT_BACK_PERIOD_DAYS);
    let mut rest = receivables;
    let mut days = Decimal::ZERO;
    for &sales in periods {
        if rest <= Decimal::ZERO {
            break;
        }
        if rest > sales {
            days += length;
            rest -= sales;
        } else {
            // 0 < rest <= sales here.
            days += scaled(rest, sales, length)?;
            rest = Decimal::ZERO;
        }
    }
    Some(days)
}

/// One row per collector, by name: the worklist (unassigned entries under
/// [`UNASSIGNED`]) and the completed activities.
fn collectors(figures: &KpiFigures) -> Vec<CollectorKpis> {
    let mut out: BTreeMap<&str, CollectorKpis> = BTreeMap::new();
    fn entry<'a, 'n>(
        out: &'a mut BTreeMap<&'n str, CollectorKpis>,
        name: &'n str,
    ) -> &'a mut CollectorKpis {
        out.entry(name).or_insert_with(|| CollectorKpis {
            collector: name.to_string(),
            worklist_entries: 0,
            worklist_amount: Decimal::ZERO,
            activities_completed: 0,
            promises_taken: 0,
        })
    }
    for w in &figures.worklist {
        let e = entry(&mut out, w.collector.as_deref().unwrap_or(UNASSIGNED));
        e.worklist_entries += w.entries;
        e.worklist_amount += w.amount;
    }
    for c in &figures.completions {
        let e = entry(&mut out, &c.actor);
        e.activities_completed += c.completed;
        e.promises_taken += c.promises_taken;
    }
    out.into_values().collect()
}
