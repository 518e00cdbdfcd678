//! Finance KPIs computed from the store: receivables, aging, DSO (standard, count-back,
//! best possible), average days delinquent, CEI, open cases, promises, expected cash and
//! per-collector workload. Pure reads; the daemon calls [`compute`] after every portfolio
//! run and exports the values as Prometheus gauges.
//!
//! Every definition, formula and approximation is written out for finance readers in
//! `docs/KPIS.md`; the comments here only say how the code gets there.
//!
//! Money is summed exactly with `Decimal` in Rust over streamed rows (amounts are TEXT in
//! the store; SQLite's `SUM` would go through floating point). SQL does the filtering,
//! the joins and the integer counts, which are exact.
//!
//! Cost: one sequential pass over each of customers, items, linked payments dated up to
//! the CEI start, promises, worklist and the `completed` case events, plus one scan of
//! cases for the closed ones and one grouped count of the open ones; no sort of items.
//! That is O(rows) time and O(customers + companies × currencies × months of history +
//! items with payments before the CEI start) memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::domain::{Priority, PromiseStatus};
use crate::store::{date, dec, Store, StoreError};

/// Aging buckets by days past due (`as_of − due_date`), in reporting order.
pub const AGING_BUCKETS: [&str; 6] = ["current", "1_30", "31_60", "61_90", "91_180", "over_180"];

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
    /// Open cases of this company's items in this currency: `("high" | "medium" | "low", n)`.
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

/// Day number of an ISO date: a fast path for `YYYY-MM-DD` (millions of rows), the
/// store's own parser (and its error) for anything else.
fn day(column: &'static str, s: &str) -> Result<i64, StoreError> {
    let b = s.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let num = |r: std::ops::Range<usize>| {
            b[r].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        if let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) {
            if let Some(x) = NaiveDate::from_ymd_opt(y as i32, m, d) {
                return Ok(i64::from(x.num_days_from_ce()));
            }
        }
    }
    Ok(i64::from(date(column, s)?.num_days_from_ce()))
}

fn day_of(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce())
}

/// Borrows a TEXT column without allocating.
fn txt<'a>(r: &'a rusqlite::Row, i: usize) -> rusqlite::Result<&'a str> {
    r.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn priority_index(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

/// Running totals of one (company, currency).
#[derive(Default)]
struct Acc {
    receivables: Decimal,
    overdue: Decimal,
    aging: [Decimal; 6],
    /// Credit sales per count-back period: index k covers document dates
    /// `(as_of − 30(k+1), as_of − 30k]`.
    periods: Vec<Decimal>,
    sales_dso: Decimal,
    sales_cei: Decimal,
    beginning: Decimal,
    due_7d: Decimal,
    promised_7d: Decimal,
    open_cases: [i64; 3],
    kept: i64,
    partial: i64,
    broken: i64,
}

/// Companies and currencies interned to small numbers; one `Acc` per pair.
#[derive(Default)]
struct Table {
    companies: Vec<String>,
    company_ids: HashMap<String, u32>,
    currencies: Vec<String>,
    index: HashMap<(u32, u32), usize>,
    rows: Vec<((u32, u32), Acc)>,
}

impl Table {
    fn company(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.company_ids.get(name) {
            return i;
        }
        let i = self.companies.len() as u32;
        self.companies.push(name.to_string());
        self.company_ids.insert(name.to_string(), i);
        i
    }

    fn acc(&mut self, company: u32, currency: &str) -> &mut Acc {
        let cur = match self.currencies.iter().position(|c| c == currency) {
            Some(i) => i as u32,
            None => {
                self.currencies.push(currency.to_string());
                (self.currencies.len() - 1) as u32
            }
        };
        let key = (company, cur);
        let i = *self.index.entry(key).or_insert_with(|| {
            self.rows.push((key, Acc::default()));
            self.rows.len() - 1
        });
        &mut self.rows[i].1
    }
}

/// Customer id → interned company.
fn customer_companies(store: &Store, table: &mut Table) -> Result<HashMap<i64, u32>, StoreError> {
    let mut st = store.conn().prepare("SELECT id, company FROM customers")?;
    let mut rows = st.query([])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        out.insert(r.get::<_, i64>(0)?, table.company(txt(r, 1)?));
    }
    Ok(out)
}

fn company_of(
    customers: &HashMap<i64, u32>,
    column: &'static str,
    id: i64,
) -> Result<u32, StoreError> {
    customers
        .get(&id)
        .copied()
        .ok_or_else(|| StoreError::Corrupt {
            column,
            value: id.to_string(),
        })
}

/// Items that had left the open ledger by `start`: their most recent case opened on or
/// before `start` (latest `opened_on`, then highest id) was closed on or before `start`.
/// Cases are closed by a run only when their item is no longer open (reasons `cleared`
/// and `split or re-posted`), so the closing date bounds the clearing date from above.
fn left_by(store: &Store, start: &str) -> Result<HashSet<i64>, StoreError> {
    let mut st = store.conn().prepare(
        "SELECT item_id, opened_on, id, status = 'closed' AND closed_on <= ?1 FROM cases
         WHERE opened_on <= ?1
           AND item_id IN (SELECT item_id FROM cases WHERE status = 'closed' AND closed_on <= ?1)",
    )?;
    let mut rows = st.query([start])?;
    let mut latest: HashMap<i64, (String, i64, bool)> = HashMap::new();
    while let Some(r) = rows.next()? {
        let item: i64 = r.get(0)?;
        let cand = (
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, bool>(3)?,
        );
        match latest.get_mut(&item) {
            Some(cur) if (&cur.0, cur.1) >= (&cand.0, cand.1) => {}
            Some(cur) => *cur = cand,
            None => {
                latest.insert(item, cand);
            }
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, (_, _, closed))| *closed)
        .map(|(item, _)| item)
        .collect())
}

/// Per item: payments linked to it (`payments.item_id`), in its currency, with a value
/// date on or before `start`.
fn paid_by(store: &Store, start: &str) -> Result<HashMap<i64, Decimal>, StoreError> {
    let mut st = store.conn().prepare(
        "SELECT p.item_id, p.amount FROM payments p JOIN items i ON i.id = p.item_id
         WHERE p.value_date <= ?1 AND p.currency = i.currency",
    )?;
    let mut rows = st.query([start])?;
    let mut out: HashMap<i64, Decimal> = HashMap::new();
    while let Some(r) = rows.next()? {
        *out.entry(r.get(0)?).or_default() += dec("payments.amount", txt(r, 1)?)?;
    }
    Ok(out)
}

/// Computes the KPIs as of `as_of` (see `docs/KPIS.md` for every definition).
pub fn compute(store: &Store, as_of: NaiveDate, opts: &KpiOptions) -> Result<Kpis, StoreError> {
    for (name, v) in [
        ("dso_window_days", opts.dso_window_days),
        ("cei_window_days", opts.cei_window_days),
    ] {
        if !(1..=36_600).contains(&v) {
            return Err(StoreError::Invalid(format!(
                "{name} must be between 1 and 36600 days, not {v}"
            )));
        }
    }
    let conn = store.conn();
    let today = day_of(as_of);
    let cei_start = as_of - chrono::Days::new(opts.cei_window_days as u64);
    let cei_start_s = cei_start.to_string();
    let as_of_s = as_of.to_string();

    let mut t = std::time::Instant::now();
    let mut lap = |what: &str| {
        tracing::debug!(what, ms = t.elapsed().as_millis() as u64, "kpi");
        t = std::time::Instant::now();
    };
    let mut table = Table::default();
    let customers = customer_companies(store, &mut table)?;
    lap("customers");
    let left = left_by(store, &cei_start_s)?;
    lap("closed cases");
    let paid = paid_by(store, &cei_start_s)?;
    lap("payments");

    // Items: receivables, aging, credit sales, beginning receivables, cash due soon.
    {
        let mut st = conn.prepare(
            "SELECT customer_id, currency, document_date, due_date, original_amount, open_amount,
                    status = 'open', id
             FROM items",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let age = today - day("items.document_date", txt(r, 2)?)?;
            if age < 0 {
                // Dated after as_of: neither a sale nor a receivable yet.
                continue;
            }
            let company = company_of(&customers, "items.customer_id", r.get(0)?)?;
            let a = table.acc(company, txt(r, 1)?);
            let original = dec("items.original_amount", txt(r, 4)?)?;
            let k = (age / COUNT_BACK_PERIOD_DAYS) as usize;
            if a.periods.len() <= k {
                a.periods.resize(k + 1, Decimal::ZERO);
            }
            a.periods[k] += original;
            if age < opts.dso_window_days {
                a.sales_dso += original;
            }
            if age < opts.cei_window_days {
                a.sales_cei += original;
            } else {
                let id: i64 = r.get(7)?;
                if !left.contains(&id) {
                    let rest = original - paid.get(&id).copied().unwrap_or_default();
                    // Overpaid before the start: nothing was open (no negative balance).
                    if rest.is_sign_negative() == original.is_sign_negative() {
                        a.beginning += rest;
                    }
                }
            }
            if r.get::<_, bool>(6)? {
                let open = dec("items.open_amount", txt(r, 5)?)?;
                let past_due = today - day("items.due_date", txt(r, 3)?)?;
                a.receivables += open;
                let bucket = match past_due {
                    i64::MIN..=0 => 0,
                    1..=30 => 1,
                    31..=60 => 2,
                    61..=90 => 3,
                    91..=180 => 4,
                    _ => 5,
                };
                a.aging[bucket] += open;
                if past_due > 0 {
                    a.overdue += open;
                }
                if (1 - EXPECTED_CASH_DAYS..=0).contains(&past_due) {
                    a.due_7d += open;
                }
            }
        }
    }

    lap("items");
    // Open cases by priority, counted per company and item currency.
    {
        let mut st = conn.prepare(
            "SELECT c.customer_id, i.currency, c.priority, COUNT(*)
             FROM cases c JOIN items i ON i.id = c.item_id
             WHERE c.status = 'open' GROUP BY c.customer_id, i.currency, c.priority",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let company = company_of(&customers, "cases.customer_id", r.get(0)?)?;
            let a = table.acc(company, txt(r, 1)?);
            a.open_cases[priority_index(Priority::from_i64(r.get(2)?))] += r.get::<_, i64>(3)?;
        }
    }

    lap("open cases");
    // Promises: judgement counts, and open promises falling due within the next 7 days.
    {
        let mut st = conn.prepare(
            "SELECT p.customer_id, p.currency, p.amount, p.promised_on, p.status,
                    c.item_id, i.status = 'open', i.currency, i.open_amount, i.document_date, i.due_date
             FROM promises p LEFT JOIN cases c ON c.id = p.case_id LEFT JOIN items i ON i.id = c.item_id
             WHERE p.created_on <= ?1",
        )?;
        let mut rows = st.query([&as_of_s])?;
        // Promises on one item: capped at its open amount, so two promises for the same
        // money are not counted twice.
        let mut per_item: HashMap<i64, (u32, String, Decimal, Decimal)> = HashMap::new();
        while let Some(r) = rows.next()? {
            let company = company_of(&customers, "promises.customer_id", r.get(0)?)?;
            let currency = txt(r, 1)?;
            let status = PromiseStatus::parse(txt(r, 4)?);
            let a = table.acc(company, currency);
            match status {
                PromiseStatus::Kept => a.kept += 1,
                PromiseStatus::PartiallyKept => a.partial += 1,
                PromiseStatus::Broken => a.broken += 1,
                PromiseStatus::Open => {}
            }
            if status != PromiseStatus::Open {
                continue;
            }
            let until = day("promises.promised_on", txt(r, 3)?)? - today;
            if !(0..EXPECTED_CASH_DAYS).contains(&until) {
                continue;
            }
            let amount = dec("promises.amount", txt(r, 2)?)?;
            let Some(item) = r.get::<_, Option<i64>>(5)? else {
                a.promised_7d += amount;
                continue;
            };
            if r.get::<_, Option<bool>>(6)? != Some(true) {
                // The item is no longer open: its money has come in (or it is gone).
                continue;
            }
            let item_open = dec("items.open_amount", txt(r, 8)?)?;
            let counted_as_due = day("items.document_date", txt(r, 9)?)? <= today
                && (0..EXPECTED_CASH_DAYS).contains(&(day("items.due_date", txt(r, 10)?)? - today));
            if counted_as_due {
                continue;
            }
            let cap = if txt(r, 7)? == currency {
                item_open
            } else {
                Decimal::MAX
            };
            per_item
                .entry(item)
                .or_insert_with(|| (company, currency.to_string(), Decimal::ZERO, cap))
                .2 += amount;
        }
        for (company, currency, promised, cap) in per_item.into_values() {
            table.acc(company, &currency).promised_7d += promised.min(cap).max(Decimal::ZERO);
        }
    }

    lap("promises");
    let window = Decimal::from(opts.dso_window_days);
    let mut companies: Vec<CompanyKpis> = table
        .rows
        .iter()
        .map(|&((company, currency), ref a)| {
            let current = a.aging[0];
            let dso_standard = scaled(a.receivables, a.sales_dso, window).map(round_days);
            let dso_best_possible = scaled(current, a.sales_dso, window).map(round_days);
            let judged = a.kept + a.partial + a.broken;
            let cei_denominator = a.beginning + a.sales_cei - current;
            CompanyKpis {
                company: table.companies[company as usize].clone(),
                currency: table.currencies[currency as usize].clone(),
                receivables: a.receivables,
                overdue: a.overdue,
                aging: AGING_BUCKETS
                    .iter()
                    .zip(a.aging)
                    .map(|(b, v)| (b.to_string(), v))
                    .collect(),
                dso_standard,
                dso_count_back: count_back(a.receivables, &a.periods).map(round_days),
                dso_best_possible,
                average_days_delinquent: dso_standard.zip(dso_best_possible).map(|(s, b)| s - b),
                cei: scaled(
                    a.beginning + a.sales_cei - a.receivables,
                    cei_denominator,
                    Decimal::ONE,
                )
                .map(round_ratio),
                open_cases_by_priority: ["high", "medium", "low"]
                    .iter()
                    .zip(a.open_cases)
                    .map(|(p, n)| (p.to_string(), n))
                    .collect(),
                promises_kept: a.kept,
                promises_partial: a.partial,
                promises_broken: a.broken,
                promise_kept_rate: (judged > 0)
                    .then(|| round_ratio(Decimal::from(a.kept) / Decimal::from(judged))),
                expected_cash_7d: a.due_7d + a.promised_7d,
            }
        })
        .collect();
    companies.sort_by(|a, b| (&a.company, &a.currency).cmp(&(&b.company, &b.currency)));

    let collectors = collectors(store, &as_of_s)?;
    lap("collectors");
    Ok(Kpis {
        as_of,
        companies,
        collectors,
    })
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

fn collectors(store: &Store, as_of: &str) -> Result<Vec<CollectorKpis>, StoreError> {
    let conn = store.conn();
    let mut out: BTreeMap<String, CollectorKpis> = BTreeMap::new();
    fn entry<'a>(
        out: &'a mut BTreeMap<String, CollectorKpis>,
        name: &str,
    ) -> &'a mut CollectorKpis {
        out.entry(name.to_string())
            .or_insert_with(|| CollectorKpis {
                collector: name.to_string(),
                worklist_entries: 0,
                worklist_amount: Decimal::ZERO,
                activities_completed: 0,
                promises_taken: 0,
            })
    }
    {
        let mut st = conn.prepare("SELECT collector, amount FROM worklist")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(0)?.as_str_or_null().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            let e = entry(&mut out, name.unwrap_or(UNASSIGNED));
            e.worklist_entries += 1;
            e.worklist_amount += dec("worklist.amount", txt(r, 1)?)?;
        }
    }
    {
        // `complete_activity` writes kind `completed` with the collector as actor, and
        // the detail `promise to pay {amount} by {date}` when a promise was taken.
        let mut st = conn.prepare(
            "SELECT actor, COUNT(*), SUM(detail LIKE 'promise to pay %') FROM case_events
             WHERE kind = 'completed' AND on_date <= ?1 GROUP BY actor",
        )?;
        let mut rows = st.query([as_of])?;
        while let Some(r) = rows.next()? {
            let e = entry(&mut out, txt(r, 0)?);
            e.activities_completed += r.get::<_, i64>(1)?;
            e.promises_taken += r.get::<_, i64>(2)?;
        }
    }
    Ok(out.into_values().collect())
}
