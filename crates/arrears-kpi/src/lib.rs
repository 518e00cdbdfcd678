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

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_store::{Completions, CurrencyFigures, WorklistLoad};
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    const AS_OF: &str = "2026-06-30";

    fn kpis(rows: Vec<CurrencyFigures>) -> Kpis {
        from_figures(
            d(AS_OF),
            &KpiOptions::default(),
            &KpiFigures {
                rows,
                worklist: vec![],
                completions: vec![],
                parts: 1,
            },
        )
    }

    fn figures(company: &str, currency: &str) -> CurrencyFigures {
        CurrencyFigures {
            company: company.into(),
            currency: currency.into(),
            ..CurrencyFigures::default()
        }
    }

    /// The ACME ledger of the store's scan tests, as the scan sums it (as of 2026-06-30).
    fn acme() -> Vec<CurrencyFigures> {
        vec![
            CurrencyFigures {
                receivables: dec!(1140),
                overdue: dec!(760),
                aging: [
                    dec!(380),
                    dec!(200),
                    dec!(50),
                    dec!(60),
                    dec!(400),
                    dec!(50),
                ],
                sales_by_period: vec![
                    dec!(500),
                    dec!(200),
                    dec!(100),
                    dec!(60),
                    dec!(400),
                    dec!(0),
                    dec!(0),
                    dec!(0),
                    dec!(50),
                ],
                sales_in_dso_window: dec!(800),
                sales_in_cei_window: dec!(500),
                beginning_receivables: dec!(810),
                due_soon: dec!(80),
                open_cases: [1, 1, 0],
                ..figures("ACME", "EUR")
            },
            CurrencyFigures {
                receivables: dec!(10),
                aging: [dec!(10), dec!(0), dec!(0), dec!(0), dec!(0), dec!(0)],
                sales_by_period: vec![dec!(10)],
                sales_in_dso_window: dec!(10),
                sales_in_cei_window: dec!(10),
                open_cases: [1, 0, 0],
                ..figures("ACME", "USD")
            },
        ]
    }

    fn row<'a>(k: &'a Kpis, company: &str, cur: &str) -> &'a CompanyKpis {
        k.companies
            .iter()
            .find(|c| c.company == company && c.currency == cur)
            .unwrap_or_else(|| panic!("no row {company}/{cur}"))
    }

    #[test]
    fn the_three_dsos_cei_and_open_cases_by_hand() {
        // Rows come in any order; the KPIs are ordered by company then currency.
        let mut rows = acme();
        rows.reverse();
        let k = kpis(rows);
        assert_eq!(k.as_of, d(AS_OF));
        assert_eq!(
            (
                k.companies[0].currency.as_str(),
                k.companies[1].currency.as_str()
            ),
            ("EUR", "USD")
        );
        let eur = row(&k, "ACME", "EUR");
        assert_eq!((eur.receivables, eur.overdue), (dec!(1140), dec!(760)));
        let names: Vec<&str> = eur.aging.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, AGING_BUCKETS);
        assert_eq!(eur.aging[4], ("91_180".to_string(), dec!(400)));
        // 1140 / 800 × 90 = 128.25 → 128.3 (half away from zero; banker's would give 128.2).
        assert_eq!(eur.dso_standard, Some(dec!(128.3)));
        // 380 / 800 × 90 = 42.75 → 42.8
        assert_eq!(eur.dso_best_possible, Some(dec!(42.8)));
        assert_eq!(eur.average_days_delinquent, Some(dec!(85.5)));
        // 1140 − 500 − 200 − 100 − 60 = 280 left after 4 × 30 days; 280 / 400 × 30 = 21.
        assert_eq!(eur.dso_count_back, Some(dec!(141.0)));
        assert_eq!(eur.expected_cash_7d, dec!(80));
        // (810 + 500 − 1140) / (810 + 500 − 380) = 170 / 930.
        assert_eq!(eur.cei, Some(dec!(0.1828)));
        assert_eq!(eur.promise_kept_rate, None);
        // Open cases are the company's, the same on both currency rows.
        let open_cases = [
            ("high".to_string(), 2),
            ("medium".to_string(), 1),
            ("low".to_string(), 0),
        ];
        assert_eq!(eur.open_cases_by_priority, open_cases);
        assert_eq!(row(&k, "ACME", "USD").open_cases_by_priority, open_cases);

        let usd = row(&k, "ACME", "USD");
        assert_eq!(usd.dso_standard, Some(dec!(90.0)));
        assert_eq!(usd.dso_best_possible, Some(dec!(90.0)));
        assert_eq!(usd.average_days_delinquent, Some(dec!(0.0)));
        assert_eq!(usd.dso_count_back, Some(dec!(30.0)));
        // Nothing collectable and nothing collected: 0 / 0.
        assert_eq!(usd.cei, None);
    }

    #[test]
    fn reported_days_have_one_decimal_and_ratios_four() {
        let eur = row(&kpis(acme()), "ACME", "EUR").clone();
        assert_eq!(eur.dso_count_back.unwrap().to_string(), "141.0");
        assert_eq!(eur.cei.unwrap().to_string(), "0.1828");
        assert_eq!(round_days(dec!(0.05)), dec!(0.1));
        assert_eq!(round_days(dec!(-0.05)), dec!(-0.1));
        assert_eq!(round_ratio(dec!(0.00005)), dec!(0.0001));
        assert_eq!(round_ratio(dec!(0.00004999)), dec!(0.0000));
    }

    #[test]
    fn count_back_walks_empty_months_and_stops_where_history_does() {
        // 18 empty periods (540 days), then all 100 of the 100 sold: + 30.
        let mut periods = vec![dec!(0); 18];
        periods.push(dec!(100));
        assert_eq!(count_back(dec!(100), &periods), Some(dec!(570)));
        // History runs out with 50 unexplained: the 30 days walked, a lower bound.
        assert_eq!(count_back(dec!(150), &[dec!(100)]), Some(dec!(30)));
        // Nothing open: no days.
        assert_eq!(count_back(dec!(0), &[dec!(100)]), Some(dec!(0)));
        // Without net positive sales there is nothing to count back against.
        assert_eq!(count_back(dec!(100), &[]), None);
        assert_eq!(count_back(dec!(100), &[dec!(0), dec!(-20)]), None);
    }

    #[test]
    fn without_recent_sales_dso_is_none() {
        let k = kpis(vec![CurrencyFigures {
            receivables: dec!(100),
            aging: [dec!(0), dec!(0), dec!(0), dec!(0), dec!(0), dec!(100)],
            sales_by_period: [vec![dec!(0); 18], vec![dec!(100)]].concat(),
            beginning_receivables: dec!(100),
            ..figures("OLD", "EUR")
        }]);
        let old = row(&k, "OLD", "EUR");
        assert_eq!(old.dso_standard, None);
        assert_eq!(old.dso_best_possible, None);
        assert_eq!(old.average_days_delinquent, None);
        assert_eq!(old.dso_count_back, Some(dec!(570.0)));
        // Nothing collected of 100 collectable.
        assert_eq!(old.cei, Some(dec!(0)));
    }

    #[test]
    fn cei_from_the_reconstructed_beginning() {
        let mut beta = CurrencyFigures {
            receivables: dec!(1580),
            aging: [dec!(600), dec!(980), dec!(0), dec!(0), dec!(0), dec!(0)],
            sales_in_cei_window: dec!(1000),
            beginning_receivables: dec!(1870),
            ..figures("BETA", "EUR")
        };
        // (1870 + 1000 − 1580) / (1870 + 1000 − 600) = 1290 / 2270 = 0.56828…
        assert_eq!(
            row(&kpis(vec![beta.clone()]), "BETA", "EUR").cei,
            Some(dec!(0.5683))
        );
        // The 61-day window: (690 + 2880 − 1580) / (690 + 2880 − 600) = 1990 / 2970.
        beta.beginning_receivables = dec!(690);
        beta.sales_in_cei_window = dec!(2880);
        assert_eq!(
            row(&kpis(vec![beta]), "BETA", "EUR").cei,
            Some(dec!(0.6700))
        );
    }

    #[test]
    fn promise_rate_and_expected_cash() {
        let g = kpis(vec![CurrencyFigures {
            promises_kept: 4,
            promises_partial: 1,
            promises_broken: 1,
            due_soon: dec!(150),
            promised_soon: dec!(340),
            open_cases: [0, 1, 1],
            ..figures("GAMMA", "EUR")
        }]);
        let g = row(&g, "GAMMA", "EUR");
        assert_eq!(
            (g.promises_kept, g.promises_partial, g.promises_broken),
            (4, 1, 1)
        );
        // 4 / 6 = 0.66666…
        assert_eq!(g.promise_kept_rate, Some(dec!(0.6667)));
        assert_eq!(g.expected_cash_7d, dec!(490));
        assert_eq!(
            g.open_cases_by_priority,
            [
                ("high".to_string(), 0),
                ("medium".to_string(), 1),
                ("low".to_string(), 1)
            ]
        );
    }

    #[test]
    fn collectors_merge_the_worklist_and_the_case_history() {
        let k = from_figures(
            d(AS_OF),
            &KpiOptions::default(),
            &KpiFigures {
                rows: vec![],
                worklist: vec![
                    WorklistLoad {
                        collector: None,
                        entries: 1,
                        amount: dec!(50),
                    },
                    WorklistLoad {
                        collector: Some("alice".into()),
                        entries: 2,
                        amount: dec!(300.75),
                    },
                ],
                completions: vec![
                    Completions {
                        actor: "alice".into(),
                        completed: 1,
                        promises_taken: 1,
                    },
                    Completions {
                        actor: "bob".into(),
                        completed: 1,
                        promises_taken: 0,
                    },
                ],
                parts: 1,
            },
        );
        let got: Vec<(&str, i64, Decimal, i64, i64)> = k
            .collectors
            .iter()
            .map(|c| {
                (
                    c.collector.as_str(),
                    c.worklist_entries,
                    c.worklist_amount,
                    c.activities_completed,
                    c.promises_taken,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("alice", 2, dec!(300.75), 1, 1),
                ("bob", 0, dec!(0), 1, 0),
                (UNASSIGNED, 1, dec!(50), 0, 0),
            ]
        );
    }

    /// Through a real store, with only its public API: options reach the scan, and bad
    /// ones are refused before anything is read.
    #[test]
    fn compute_reads_the_store_and_refuses_bad_options() {
        use arrears_core::domain::{Batch, ItemInput};
        use arrears_core::money::Currency;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("kpi.db")).unwrap();
        let k = compute(&s, d(AS_OF), &KpiOptions::default()).unwrap();
        assert!(k.companies.is_empty() && k.collectors.is_empty());
        // Interest charged on top: more open than ever sold.
        s.ingest(&Batch {
            items: vec![ItemInput {
                source: "erp".into(),
                external_id: "F1".into(),
                company: "FEES".into(),
                customer: "C1".into(),
                document_no: "INV-F1".into(),
                document_date: d("2026-06-20"),
                due_date: d("2026-07-20"),
                original_amount: dec!(100),
                open_amount: dec!(150),
                currency: Currency::parse("EUR").unwrap(),
                hold: None,
                original_document: None,
            }],
            ..Batch::default()
        })
        .unwrap();
        let k = compute(&s, d(AS_OF), &KpiOptions::default()).unwrap();
        let fees = row(&k, "FEES", "EUR");
        assert_eq!(fees.dso_standard, Some(dec!(135.0)));
        assert_eq!(fees.dso_count_back, Some(dec!(30.0)));
        // A 5-day DSO window no longer holds the 10-day-old sale.
        let narrow = KpiOptions {
            dso_window_days: 5,
            ..KpiOptions::default()
        };
        let k = compute(&s, d(AS_OF), &narrow).unwrap();
        assert_eq!(row(&k, "FEES", "EUR").dso_standard, None);
        for bad in [
            KpiOptions {
                dso_window_days: 0,
                ..KpiOptions::default()
            },
            KpiOptions {
                cei_window_days: 36_601,
                ..KpiOptions::default()
            },
        ] {
            match compute(&s, d(AS_OF), &bad) {
                Err(StoreError::Invalid(m)) => assert!(m.contains("36600 days"), "{m}"),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }
}
