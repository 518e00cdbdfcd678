//! The collections reports: each over a period, grouped by company, collection
//! group, collector, segment or customer (and always by currency: amounts are never
//! added across currencies), filtered on any of those, and cut to what the caller
//! reaches. The same tables go to the command line (`arrears report`) and the API
//! (`Reports`). `docs/REPORTS.md` defines every column.
//!
//! A customer is grouped where the latest run routed it (group, collector,
//! segment): a report over a past period regroups its figures when the routing
//! changes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use arrears_core::domain::ChangeCause;
use arrears_core::money::{round_minor, round_to};
use arrears_finance::commission::{banded, AttributionRule, CommissionPolicy};
use arrears_store::{open_on, CustomerDims, Owner, Store};

use crate::access::Reach;
use crate::AppError;

/// The reports there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// Cases opened in the period: how many were collected in full within N days,
    /// and the average days to the first payment.
    Conversion,
    /// Items open on the period's last day, by days past due.
    OpenItems,
    /// Promises made in the period: kept, partially kept, broken, amounts
    /// promised and received, delay.
    Promises,
    /// What each collector collected in the period and the commission it earns
    /// under `rules/commission.yaml`: the settlement.
    Commission,
    /// The latest worklist by priority: entries, amount, due, worked in the
    /// period, due and not worked.
    Worklist,
    /// Contacts in the period by channel: messages by delivery, activities by
    /// whether they took a promise.
    Contacts,
    /// Expected incoming payments by day after `to`.
    Forecast,
    /// The forecast made on past days, week by week, against what came in.
    ForecastBacktest,
}

impl ReportKind {
    pub const ALL: [ReportKind; 8] = [
        ReportKind::Worklist,
        ReportKind::Contacts,
        ReportKind::Conversion,
        ReportKind::OpenItems,
        ReportKind::Promises,
        ReportKind::Commission,
        ReportKind::Forecast,
        ReportKind::ForecastBacktest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Conversion => "conversion",
            ReportKind::OpenItems => "open-items",
            ReportKind::Promises => "promises",
            ReportKind::Commission => "commission",
            ReportKind::Worklist => "worklist",
            ReportKind::Contacts => "contacts",
            ReportKind::Forecast => "forecast",
            ReportKind::ForecastBacktest => "forecast-backtest",
        }
    }

    /// What each report groups by when the request does not say.
    pub fn default_by(self) -> Vec<Dim> {
        match self {
            ReportKind::OpenItems => vec![Dim::Group, Dim::Collector, Dim::Customer],
            ReportKind::Conversion
            | ReportKind::Promises
            | ReportKind::Forecast
            | ReportKind::ForecastBacktest => vec![Dim::Company],
            ReportKind::Commission => vec![Dim::Collector],
            ReportKind::Worklist | ReportKind::Contacts => vec![Dim::Group, Dim::Collector],
        }
    }
}

fn names<T: fmt::Display>(all: impl IntoIterator<Item = T>) -> String {
    all.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReportKind {
    type Err = AppError;

    fn from_str(s: &str) -> Result<ReportKind, AppError> {
        ReportKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                AppError::invalid(format!(
                    "report: `{s}` is not a report; the reports are {}",
                    names(ReportKind::ALL)
                ))
            })
    }
}

/// What a report can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Company,
    Group,
    Collector,
    Segment,
    Customer,
}

impl Dim {
    pub const ALL: [Dim; 5] = [
        Dim::Company,
        Dim::Group,
        Dim::Collector,
        Dim::Segment,
        Dim::Customer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Company => "company",
            Dim::Group => "group",
            Dim::Collector => "collector",
            Dim::Segment => "segment",
            Dim::Customer => "customer",
        }
    }

    /// The customer's value; a customer no run has routed yet is in no group and
    /// segment, and unassigned.
    fn of(self, c: &CustomerDims) -> String {
        match self {
            Dim::Company => c.company.clone(),
            Dim::Group => c.group.clone().unwrap_or_else(|| "(none)".into()),
            Dim::Collector => c.collector.clone().unwrap_or_else(|| "unassigned".into()),
            Dim::Segment => c.segment.clone().unwrap_or_else(|| "(none)".into()),
            Dim::Customer => format!("{}/{}", c.company, c.code),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dim {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Dim, AppError> {
        Dim::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                AppError::invalid(format!(
                    "by: `{s}` is not something to group by; use {}",
                    names(Dim::ALL)
                ))
            })
    }
}

/// Only the customers with these values (each `None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub company: Option<String>,
    pub group: Option<String>,
    pub collector: Option<String>,
    pub segment: Option<String>,
}

impl Filter {
    fn keeps(&self, c: &CustomerDims) -> bool {
        let is = |want: &Option<String>, dim: Dim| want.as_ref().is_none_or(|w| *w == dim.of(c));
        is(&self.company, Dim::Company)
            && is(&self.group, Dim::Group)
            && is(&self.collector, Dim::Collector)
            && is(&self.segment, Dim::Segment)
    }
}

/// A report asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: ReportKind,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Vec<Dim>,
    pub filter: Filter,
    /// Conversion: a case counts as converted when its item was collected in full
    /// within this many days of the case's opening.
    pub within_days: i64,
    /// Commission: the rules' policy (`rules/commission.yaml`), set by the front
    /// from the rules it runs with.
    pub commission: Option<CommissionPolicy>,
    /// The rules' base currency, the worklist's amounts' (set by the front).
    pub base_currency: Option<String>,
}

impl Request {
    /// Whether the report reads the rules (the front loads them then).
    pub fn needs_rules(&self) -> bool {
        matches!(self.kind, ReportKind::Commission | ReportKind::Worklist)
    }

    /// What the report takes from the rules it runs with.
    pub fn use_rules(&mut self, rules: &arrears_rules::RuleSet) {
        self.commission = rules.commission.clone();
        self.base_currency = Some(rules.rates.base.as_str().to_string());
    }
}

/// The conversion window when a request does not give one.
pub const WITHIN_DAYS: i64 = 30;
/// How far the forecast looks ahead when a request does not say.
pub const FORECAST_DAYS: i64 = 90;
/// How far each back-tested forecast looks ahead: 13 weeks.
pub const BACKTEST_DAYS: i64 = 91;
/// How many weekly forecasts a back-test replays when `--from` is not given.
pub const BACKTEST_ORIGINS: i64 = 26;
pub const MAX_WITHIN_DAYS: i64 = 3660;

impl Request {
    /// A request checked: `from` not after `to`, no dimension twice, a window of
    /// at least one day.
    pub fn new(
        kind: ReportKind,
        from: NaiveDate,
        to: NaiveDate,
        by: Option<Vec<Dim>>,
        filter: Filter,
        within_days: Option<i64>,
    ) -> Result<Request, AppError> {
        if from > to {
            return Err(AppError::invalid(format!(
                "from: {from} is after to ({to}); a period runs from its first day to its last"
            )));
        }
        if kind == ReportKind::Commission && by.as_ref().is_some_and(|b| b[..] != [Dim::Collector])
        {
            return Err(AppError::invalid(
                "by: the commission report is settled per collector (and currency); filter with --company, --group or --segment",
            ));
        }
        let by = by.unwrap_or_else(|| kind.default_by());
        for (i, d) in by.iter().enumerate() {
            if by[..i].contains(d) {
                return Err(AppError::invalid(format!("by: `{d}` is named twice")));
            }
        }
        let within_days = within_days.unwrap_or(match kind {
            ReportKind::Forecast => FORECAST_DAYS,
            ReportKind::ForecastBacktest => BACKTEST_DAYS,
            _ => WITHIN_DAYS,
        });
        if !(1..=MAX_WITHIN_DAYS).contains(&within_days) {
            return Err(AppError::invalid(format!(
                "within: {within_days} days; a window is 1 to {MAX_WITHIN_DAYS} days"
            )));
        }
        Ok(Request {
            kind,
            from,
            to,
            by,
            filter,
            within_days,
            commission: None,
            base_currency: None,
        })
    }
}

/// The days of a period when a request names only its last: 30.
pub const PERIOD_DAYS: u64 = 30;

impl Request {
    /// A request from its fronts' words (the command line's options, the API's
    /// fields): names parsed, `from` by default the 30 days up to `to`.
    pub fn parse(
        report: &str,
        from: Option<NaiveDate>,
        to: NaiveDate,
        by: &[String],
        filter: Filter,
        within_days: Option<i64>,
    ) -> Result<Request, AppError> {
        let kind: ReportKind = report.parse()?;
        let by = if by.is_empty() {
            None
        } else {
            Some(
                by.iter()
                    .map(|b| b.parse())
                    .collect::<Result<Vec<Dim>, _>>()?,
            )
        };
        let back = match kind {
            // The last forecast whose 13 weeks are all past, and 25 weeks before it.
            ReportKind::ForecastBacktest => {
                (within_days.unwrap_or(BACKTEST_DAYS) + 7 * (BACKTEST_ORIGINS - 1)).max(0) as u64
            }
            _ => PERIOD_DAYS - 1,
        };
        let from = match from {
            Some(f) => f,
            None => to
                .checked_sub_days(chrono::Days::new(back))
                .ok_or_else(|| AppError::invalid(format!("to: no period ends on {to}")))?,
        };
        Request::new(kind, from, to, by, filter, within_days)
    }
}

/// What a column holds, for a front to format and align it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Text,
    Count,
    Amount,
    /// 4 decimals.
    Ratio,
    /// 1 decimal.
    Days,
}

impl ColumnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Text => "text",
            ColumnKind::Count => "count",
            ColumnKind::Amount => "amount",
            ColumnKind::Ratio => "ratio",
            ColumnKind::Days => "days",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

/// One value of a row; `None` where a figure is undefined (a rate over nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Count(u64),
    Amount(Decimal),
    Figure(Option<Decimal>),
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Text(s) => f.write_str(s),
            Cell::Count(n) => write!(f, "{n}"),
            Cell::Amount(a) => write!(f, "{a}"),
            Cell::Figure(Some(x)) => write!(f, "{x}"),
            Cell::Figure(None) => Ok(()),
        }
    }
}

/// A report's result: its columns, then rows sorted by the grouping columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub report: ReportKind,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The value of column `name` in row `row`.
    pub fn cell(&self, row: usize, name: &str) -> Option<&Cell> {
        let i = self.columns.iter().position(|c| c.name == name)?;
        self.rows.get(row)?.get(i)
    }

    /// The row whose grouping columns (in order) are `key`.
    pub fn row(&self, key: &[&str]) -> Option<usize> {
        self.rows.iter().position(|r| {
            key.iter()
                .zip(r)
                .all(|(k, c)| matches!(c, Cell::Text(t) if t == k))
        })
    }
}

/// Ratios to 4 decimals and day counts to 1, half away from zero, as the KPIs.
fn round_ratio(x: Decimal) -> Decimal {
    round_to(x, 4)
}

fn round_days(x: Decimal) -> Decimal {
    round_to(x, 1)
}

/// A ratio `n / d` to 4 decimals; undefined over nothing.
fn ratio(n: Decimal, d: Decimal) -> Cell {
    Cell::Figure((!d.is_zero()).then(|| round_ratio(n / d)))
}

/// An average of day counts to 1 decimal; undefined over nothing.
fn average_days(sum: i64, n: u64) -> Cell {
    Cell::Figure((n > 0).then(|| round_days(Decimal::from(sum) / Decimal::from(n))))
}

/// Runs a report for `reach`: customers it does not reach are left out.
pub fn run(store: &Store, reach: &Reach, req: &Request) -> Result<Table, AppError> {
    let customers = store.report_customers()?;
    let seen = |id: i64| -> Option<&CustomerDims> {
        let c = customers.get(&id)?;
        let owner = Owner {
            customer_id: id,
            customer: format!("{}/{}", c.company, c.code),
            group: c.group.clone(),
            collector: c.collector.clone(),
            assignees: Vec::new(),
        };
        (req.filter.keeps(c) && reach.allows(&owner)).then_some(c)
    };
    let key = |c: &CustomerDims, currency: &str| -> Vec<String> {
        req.by
            .iter()
            .map(|d| d.of(c))
            .chain([currency.to_string()])
            .collect()
    };
    let (measures, rows) = match req.kind {
        ReportKind::Conversion => conversion(store, req, &seen, &key)?,
        ReportKind::OpenItems => open_items(store, req, &seen, &key)?,
        ReportKind::Promises => promises(store, req, &seen, &key)?,
        ReportKind::Commission => commission(store, req, &customers, &seen, &key)?,
        ReportKind::Worklist => worklist(store, req, &seen, &key)?,
        ReportKind::Contacts => contacts(store, req, &seen, &key)?,
        ReportKind::Forecast => forecast_report(store, req, &seen, &key)?,
        ReportKind::ForecastBacktest => backtest_report(store, req, &seen, &key)?,
    };
    let split = match req.kind {
        ReportKind::Contacts => "channel",
        _ => "currency",
    };
    let columns = req
        .by
        .iter()
        .map(|d| d.as_str())
        .chain([split])
        .map(|name| Column {
            name: name.into(),
            kind: ColumnKind::Text,
        })
        .chain(measures)
        .collect();
    // The days the table is about: a forecast's are ahead of `to`; open items
    // are those of `to` alone.
    let (from, to) = match req.kind {
        ReportKind::Forecast => (
            req.to + chrono::Days::new(1),
            req.to + chrono::Days::new(req.within_days as u64),
        ),
        ReportKind::OpenItems => (req.to, req.to),
        _ => (req.from, req.to),
    };
    Ok(Table {
        report: req.kind,
        from,
        to,
        columns,
        rows: rows
            .into_iter()
            .map(|(k, mut cells)| {
                let mut row: Vec<Cell> = k.into_iter().map(Cell::Text).collect();
                row.append(&mut cells);
                row
            })
            .collect(),
    })
}

type Rows = BTreeMap<Vec<String>, Vec<Cell>>;

fn columns(list: &[(&str, ColumnKind)]) -> Vec<Column> {
    list.iter()
        .map(|&(name, kind)| Column {
            name: name.into(),
            kind,
        })
        .collect()
}

/// How an item leaves collection as collected: paid, or cleared by the ERP
/// (which says an item is paid without saying how) or gone from its open items.
/// A credit note, a write-off, an agreement or a re-posting is not collected.
fn collected(cause: ChangeCause) -> bool {
    matches!(
        cause,
        ChangeCause::Payment | ChangeCause::Erp | ChangeCause::Snapshot
    )
}

fn conversion<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    #[derive(Default)]
    struct Acc {
        opened: u64,
        open_amount: Decimal,
        converted: u64,
        collected: Decimal,
        first_paid: u64,
        days_to_first: i64,
    }
    let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for case in store.cases_opened(req.from, req.to)? {
        let Some(c) = seen(case.customer_id) else {
            continue;
        };
        let a = acc.entry(key(c, &case.currency)).or_default();
        let at_open = case.open_on(case.opened_on);
        a.opened += 1;
        a.open_amount += at_open;
        // Changes from the opening day on, in the order of their days.
        let mut later: Vec<_> = case
            .changes
            .iter()
            .enumerate()
            .filter(|(_, ch)| ch.on >= case.opened_on)
            .collect();
        later.sort_by_key(|(i, ch)| (ch.on, *i));
        let mut was = at_open;
        let mut first = None;
        let mut done = None;
        for (_, ch) in later {
            if first.is_none() && ch.open.abs() < was.abs() && collected(ch.cause) {
                first = Some(ch.on);
            }
            if ch.open.is_zero() && !was.is_zero() && collected(ch.cause) && done.is_none() {
                done = Some(ch.on);
            }
            was = ch.open;
        }
        if let Some(on) = first {
            a.first_paid += 1;
            a.days_to_first += (on - case.opened_on).num_days();
        }
        if done.is_some_and(|on| (on - case.opened_on).num_days() <= req.within_days) {
            a.converted += 1;
            a.collected += at_open;
        }
    }
    let measures = columns(&[
        ("cases_opened", ColumnKind::Count),
        ("open_at_opening", ColumnKind::Amount),
        ("collected_in_full", ColumnKind::Count),
        ("collected_amount", ColumnKind::Amount),
        ("conversion_rate", ColumnKind::Ratio),
        ("cases_with_a_payment", ColumnKind::Count),
        ("avg_days_to_first_payment", ColumnKind::Days),
    ]);
    let rows = acc
        .into_iter()
        .map(|(k, a)| {
            (
                k,
                vec![
                    Cell::Count(a.opened),
                    Cell::Amount(a.open_amount),
                    Cell::Count(a.converted),
                    Cell::Amount(a.collected),
                    ratio(Decimal::from(a.converted), Decimal::from(a.opened)),
                    Cell::Count(a.first_paid),
                    average_days(a.days_to_first, a.first_paid),
                ],
            )
        })
        .collect();
    Ok((measures, rows))
}

/// Days past due at which the aging buckets end (as the KPIs' aging).
const AGING: [(i64, &str); 5] = [
    (0, "current"),
    (30, "1_30"),
    (60, "31_60"),
    (90, "61_90"),
    (180, "91_180"),
];

fn open_items<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    #[derive(Default)]
    struct Acc {
        items: u64,
        open: Decimal,
        overdue: Decimal,
        buckets: [Decimal; 6],
    }
    let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for it in store.open_items_on(req.to)? {
        let Some(c) = seen(it.customer_id) else {
            continue;
        };
        let a = acc.entry(key(c, &it.currency)).or_default();
        let past_due = (req.to - it.due_date).num_days();
        a.items += 1;
        a.open += it.open;
        if past_due > 0 {
            a.overdue += it.open;
        }
        let b = AGING
            .iter()
            .position(|&(end, _)| past_due <= end)
            .unwrap_or(AGING.len());
        a.buckets[b] += it.open;
    }
    let mut list = vec![
        ("items", ColumnKind::Count),
        ("open", ColumnKind::Amount),
        ("overdue", ColumnKind::Amount),
    ];
    list.extend(AGING.iter().map(|&(_, name)| (name, ColumnKind::Amount)));
    list.push(("over_180", ColumnKind::Amount));
    let rows = acc
        .into_iter()
        .map(|(k, a)| {
            let mut cells = vec![
                Cell::Count(a.items),
                Cell::Amount(a.open),
                Cell::Amount(a.overdue),
            ];
            cells.extend(a.buckets.into_iter().map(Cell::Amount));
            (k, cells)
        })
        .collect();
    Ok((columns(&list), rows))
}

fn promises<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    #[derive(Default)]
    struct Acc {
        made: u64,
        promised: Decimal,
        kept: u64,
        partial: u64,
        broken: u64,
        open: u64,
        received: Decimal,
        paid: u64,
        delay: i64,
    }
    let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for p in store.promises_made(req.from, req.to)? {
        let Some(c) = seen(p.customer_id) else {
            continue;
        };
        let a = acc.entry(key(c, &p.currency)).or_default();
        a.made += 1;
        a.promised += p.amount;
        match p.status.as_str() {
            "kept" => a.kept += 1,
            "partially_kept" => a.partial += 1,
            "broken" => a.broken += 1,
            _ => a.open += 1,
        }
        if p.status != "open" {
            a.received += p.paid.unwrap_or_default();
            if let Some(on) = p.paid_on {
                a.paid += 1;
                a.delay += (on - p.promised_on).num_days();
            }
        }
    }
    let measures = columns(&[
        ("made", ColumnKind::Count),
        ("promised", ColumnKind::Amount),
        ("kept", ColumnKind::Count),
        ("partially_kept", ColumnKind::Count),
        ("broken", ColumnKind::Count),
        ("open", ColumnKind::Count),
        ("received", ColumnKind::Amount),
        ("kept_rate", ColumnKind::Ratio),
        ("avg_delay_days", ColumnKind::Days),
    ]);
    let rows = acc
        .into_iter()
        .map(|(k, a)| {
            let judged = a.kept + a.partial + a.broken;
            (
                k,
                vec![
                    Cell::Count(a.made),
                    Cell::Amount(a.promised),
                    Cell::Count(a.kept),
                    Cell::Count(a.partial),
                    Cell::Count(a.broken),
                    Cell::Count(a.open),
                    Cell::Amount(a.received),
                    ratio(Decimal::from(a.kept), Decimal::from(judged)),
                    average_days(a.delay, a.paid),
                ],
            )
        })
        .collect();
    Ok((measures, rows))
}

/// The part of a payment its item owed again within `days` after it arrived: the
/// largest rise of the item's open amount over what it owed on the value date,
/// at most the payment.
fn rise_after(p: &arrears_store::PaymentFact, days: u32) -> Decimal {
    let after = open_on(p.item_original, &p.item_changes, p.value_date);
    let until = p.value_date + chrono::Days::new(u64::from(days));
    let highest = p
        .item_changes
        .iter()
        .filter(|c| c.on > p.value_date && c.on <= until)
        .map(|c| c.open)
        .fold(after, Decimal::max);
    (highest - after).clamp(Decimal::ZERO, p.amount.max(Decimal::ZERO))
}

/// What came back of each payment (by payment id): an item's return is counted
/// once, however many of its payments it follows, and taken from its latest
/// payments first.
fn reversals(
    payments: &[arrears_store::PaymentFact],
    days: u32,
) -> std::collections::HashMap<i64, Decimal> {
    let mut by_item: BTreeMap<i64, Vec<&arrears_store::PaymentFact>> = BTreeMap::new();
    for p in payments {
        by_item.entry(p.item_id).or_default().push(p);
    }
    let mut out = std::collections::HashMap::new();
    for list in by_item.values_mut() {
        let mut left = list
            .iter()
            .map(|p| rise_after(p, days))
            .fold(Decimal::ZERO, Decimal::max);
        list.sort_by_key(|p| std::cmp::Reverse((p.value_date, p.id)));
        for p in list.iter() {
            let take = left.min(p.amount.max(Decimal::ZERO));
            out.insert(p.id, take);
            left -= take;
        }
    }
    out
}

fn commission<'a>(
    store: &Store,
    req: &Request,
    everyone: &std::collections::HashMap<i64, CustomerDims>,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    let policy = req.commission.as_ref().ok_or_else(|| {
        AppError::invalid(
            "commission: the rules have no `commission` section (see rules/commission.yaml)",
        )
    })?;
    // Whom each payment is credited to: the latest completed activity on the
    // customer's cases in the window before it, or the case's / customer's collector.
    let window = u64::from(policy.attribution.within_days);
    let mut contacts: std::collections::HashMap<i64, Vec<(NaiveDate, i64, String)>> =
        std::collections::HashMap::new();
    if policy.attribution.rule == AttributionRule::LastContact {
        let since = req
            .from
            .checked_sub_days(chrono::Days::new(window))
            .unwrap_or(NaiveDate::MIN);
        for c in store.contacts_made(since, req.to)? {
            contacts
                .entry(c.customer_id)
                .or_default()
                .push((c.on, c.event_id, c.actor));
        }
        for list in contacts.values_mut() {
            list.sort();
        }
    }
    #[derive(Default)]
    struct Line {
        payments: u64,
        collected: Decimal,
        reversed: Decimal,
    }
    // (collector row key, segment) → what the collector's payments of that
    // segment add up to: each segment is banded on its own.
    let mut lines: BTreeMap<(Vec<String>, Option<String>), Line> = BTreeMap::new();
    let payments = store.payments_collected(req.from, req.to)?;
    let back = reversals(&payments, policy.clawback_days);
    // A settlement is a collector's whole period: every payment credited to them
    // is banded, whoever asks and however filtered; the filters and the caller's
    // reach choose whose settlements are shown.
    let mut shown: std::collections::HashSet<Vec<String>> = std::collections::HashSet::new();
    for p in payments {
        let Some(c) = everyone.get(&p.customer_id) else {
            continue;
        };
        let visible = seen(p.customer_id).is_some();
        let who = match policy.attribution.rule {
            AttributionRule::LastContact => {
                let earliest = p
                    .value_date
                    .checked_sub_days(chrono::Days::new(window))
                    .unwrap_or(NaiveDate::MIN);
                contacts.get(&p.customer_id).and_then(|list| {
                    list.iter()
                        .rev()
                        .find(|(on, _, _)| *on <= p.value_date && *on >= earliest)
                        .map(|(_, _, actor)| actor.clone())
                })
            }
            AttributionRule::Assigned => p.assigned_to.clone().or_else(|| c.collector.clone()),
        };
        let mut k = key(c, &p.currency);
        k[0] = who.unwrap_or_else(|| UNATTRIBUTED.into());
        if visible {
            shown.insert(k.clone());
        }
        // Only a segment with a scale of its own is banded apart; every other
        // segment's money is banded together on the default tiers.
        let scale = c
            .segment
            .clone()
            .filter(|seg| policy.segments.contains_key(seg));
        let line = lines.entry((k, scale)).or_default();
        line.payments += 1;
        line.collected += p.amount;
        line.reversed += back.get(&p.id).copied().unwrap_or_default();
    }
    #[derive(Default)]
    struct Acc {
        payments: u64,
        collected: Decimal,
        reversed: Decimal,
        commission: Decimal,
    }
    let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for ((k, segment), l) in lines {
        let currency = k.last().cloned().unwrap_or_default();
        let earned = if k[0] == UNATTRIBUTED {
            Decimal::ZERO
        } else {
            banded(
                policy.tiers_of(segment.as_deref()),
                l.collected - l.reversed,
            )
        };
        let earned = round_minor(earned, &currency);
        let a = acc.entry(k).or_default();
        a.payments += l.payments;
        a.collected += l.collected;
        a.reversed += l.reversed;
        a.commission += earned;
    }
    let measures = columns(&[
        ("payments", ColumnKind::Count),
        ("collected", ColumnKind::Amount),
        ("reversed", ColumnKind::Amount),
        ("commissionable", ColumnKind::Amount),
        ("commission", ColumnKind::Amount),
        ("over_cap", ColumnKind::Amount),
        ("due", ColumnKind::Amount),
    ]);
    let rows = acc
        .into_iter()
        .filter(|(k, _)| shown.contains(k))
        .map(|(k, a)| {
            let currency = k.last().map_or("", |c| c.as_str());
            let due = round_minor(
                policy.cap.map_or(a.commission, |cap| a.commission.min(cap)),
                currency,
            );
            (
                k,
                vec![
                    Cell::Count(a.payments),
                    Cell::Amount(a.collected),
                    Cell::Amount(a.reversed),
                    Cell::Amount(a.collected - a.reversed),
                    Cell::Amount(a.commission),
                    Cell::Amount(a.commission - due),
                    Cell::Amount(due),
                ],
            )
        })
        .collect();
    Ok((measures, rows))
}

fn worklist<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    #[derive(Default)]
    struct Acc {
        entries: u64,
        amount: Decimal,
        due: u64,
        worked: u64,
        left: u64,
        left_amount: Decimal,
    }
    let base = req.base_currency.clone().unwrap_or_else(|| "base".into());
    let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for w in store.worklist_facts(req.from, req.to)? {
        let Some(c) = seen(w.customer_id) else {
            continue;
        };
        let mut k = key(c, &base);
        k.push(
            arrears_core::domain::Priority::from_i64(w.priority)
                .as_str()
                .to_string(),
        );
        let a = acc.entry(k).or_default();
        a.entries += 1;
        a.amount += w.amount;
        a.worked += u64::from(w.worked);
        if w.nad <= req.to {
            a.due += 1;
            if !w.worked {
                a.left += 1;
                a.left_amount += w.amount;
            }
        }
    }
    let measures = columns(&[
        ("priority", ColumnKind::Text),
        ("entries", ColumnKind::Count),
        ("amount", ColumnKind::Amount),
        ("due", ColumnKind::Count),
        ("worked", ColumnKind::Count),
        ("due_not_worked", ColumnKind::Count),
        ("due_not_worked_amount", ColumnKind::Amount),
        ("worked_rate", ColumnKind::Ratio),
    ]);
    let rows = acc
        .into_iter()
        .map(|(k, a)| {
            (
                k,
                vec![
                    Cell::Count(a.entries),
                    Cell::Amount(a.amount),
                    Cell::Count(a.due),
                    Cell::Count(a.worked),
                    Cell::Count(a.left),
                    Cell::Amount(a.left_amount),
                    ratio(Decimal::from(a.worked), Decimal::from(a.entries)),
                ],
            )
        })
        .collect();
    Ok((measures, rows))
}

fn contacts<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    #[derive(Default)]
    struct Acc {
        contacts: u64,
        reached: u64,
        failed: u64,
        pending: u64,
        promises: u64,
    }
    let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for m in store.contacts_between(req.from, req.to)? {
        let Some(c) = seen(m.customer_id) else {
            continue;
        };
        // Contacts carry no currency: the column says which channel instead.
        let mut k = key(c, "");
        k.pop();
        k.push(m.channel.clone());
        let a = acc.entry(k).or_default();
        a.contacts += 1;
        match m.status.as_str() {
            "sent" | "completed" => a.reached += 1,
            "promise" => {
                a.reached += 1;
                a.promises += 1;
            }
            "failed" | "cancelled" => a.failed += 1,
            _ => a.pending += 1,
        }
    }
    let measures = columns(&[
        ("contacts", ColumnKind::Count),
        ("reached", ColumnKind::Count),
        ("not_reached", ColumnKind::Count),
        ("pending", ColumnKind::Count),
        ("promises", ColumnKind::Count),
        ("reach_rate", ColumnKind::Ratio),
    ]);
    let rows = acc
        .into_iter()
        .map(|(k, a)| {
            (
                k,
                vec![
                    Cell::Count(a.contacts),
                    Cell::Count(a.reached),
                    Cell::Count(a.failed),
                    Cell::Count(a.pending),
                    Cell::Count(a.promises),
                    ratio(
                        Decimal::from(a.reached),
                        Decimal::from(a.reached + a.failed),
                    ),
                ],
            )
        })
        .collect();
    Ok((measures, rows))
}

/// The forecast's rows are by company and currency: other groupings are refused.
fn forecast_groups(req: &Request) -> Result<(), AppError> {
    if req.by[..] != [Dim::Company] {
        return Err(AppError::invalid(format!(
            "by: the {} report is by company (and currency); filter with --group, --collector or --segment",
            req.kind
        )));
    }
    Ok(())
}

fn forecast_report<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    _key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    forecast_groups(req)?;
    let (items, promises, company) =
        crate::forecast::facts(store, req.to, |c| seen(c).map(|d| d.company.clone()))?;
    let book = crate::forecast::Book::new(&items, &promises, &company);
    let mut rows = Rows::new();
    for ((co, currency), days) in book.forecast(req.to, req.within_days) {
        let mut total = Decimal::ZERO;
        for (k, amount) in days.into_iter().enumerate() {
            let day = req.to + chrono::Days::new(k as u64 + 1);
            let amount = round_minor(amount, &currency);
            total += amount;
            rows.insert(
                vec![co.clone(), currency.clone(), day.to_string()],
                vec![Cell::Amount(amount), Cell::Amount(total)],
            );
        }
    }
    let measures = columns(&[
        ("day", ColumnKind::Text),
        ("expected", ColumnKind::Amount),
        ("cumulative", ColumnKind::Amount),
    ]);
    Ok((measures, rows))
}

fn backtest_report<'a>(
    store: &Store,
    req: &Request,
    seen: &dyn Fn(i64) -> Option<&'a CustomerDims>,
    _key: &dyn Fn(&CustomerDims, &str) -> Vec<String>,
) -> Result<(Vec<Column>, Rows), AppError> {
    forecast_groups(req)?;
    let horizon = req.within_days;
    let weeks = (horizon / 7).max(1);
    let (items, promises, company) =
        crate::forecast::facts(store, req.from, |c| seen(c).map(|d| d.company.clone()))?;
    let book = crate::forecast::Book::new(&items, &promises, &company);
    #[derive(Default)]
    struct Week {
        origins: u64,
        forecast: Decimal,
        actual: Decimal,
        errors: Decimal,
        measured: u64,
    }
    let mut acc: BTreeMap<(String, String, i64), Week> = BTreeMap::new();
    let mut origin = req.from;
    let last = req.to - chrono::Days::new(horizon as u64);
    while origin <= last {
        let f = book.forecast(origin, horizon);
        let a = book.actual(origin, horizon);
        let keys: std::collections::BTreeSet<&(String, String)> =
            f.keys().chain(a.keys()).collect();
        for k in keys {
            let week_sum = |d: Option<&Vec<Decimal>>, w: i64| -> Decimal {
                d.map_or(Decimal::ZERO, |v| {
                    v.iter().skip((7 * w) as usize).take(7).sum()
                })
            };
            for w in 0..weeks {
                let (fw, aw) = (week_sum(f.get(k), w), week_sum(a.get(k), w));
                let e = acc.entry((k.0.clone(), k.1.clone(), w + 1)).or_default();
                e.origins += 1;
                e.forecast += fw;
                e.actual += aw;
                if aw > Decimal::ZERO {
                    e.errors += (fw - aw).abs() / aw;
                    e.measured += 1;
                }
            }
        }
        origin = origin + chrono::Days::new(7);
    }
    let rows = acc
        .into_iter()
        .map(|((co, currency, w), e)| {
            let n = Decimal::from(e.origins.max(1));
            (
                vec![co, currency.clone(), format!("{w:02}")],
                vec![
                    Cell::Count(e.origins),
                    Cell::Amount(round_minor(e.forecast / n, &currency)),
                    Cell::Amount(round_minor(e.actual / n, &currency)),
                    ratio(e.errors, Decimal::from(e.measured)),
                    Cell::Figure(
                        (e.actual > Decimal::ZERO)
                            .then(|| round_ratio(e.forecast / e.actual - Decimal::ONE)),
                    ),
                ],
            )
        })
        .collect();
    let measures = columns(&[
        ("week", ColumnKind::Text),
        ("forecasts", ColumnKind::Count),
        ("avg_forecast", ColumnKind::Amount),
        ("avg_actual", ColumnKind::Amount),
        ("mape", ColumnKind::Ratio),
        ("bias", ColumnKind::Ratio),
    ]);
    Ok((measures, rows))
}

/// The collector of payments no one is credited with: they are listed, and earn
/// nothing.
pub const UNATTRIBUTED: &str = "(unattributed)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Principal;
    use crate::run::{run as run_portfolio, RunMode};
    use arrears_core::domain::{Batch, ItemInput, PaymentInput, Role};
    use arrears_core::money::Currency;
    use arrears_store::NewPromise;
    use arrears_test_support::d;
    use rust_decimal_macros::dec;

    fn item(ext: &str, customer: &str, amount: Decimal, cur: &str, open: Decimal) -> ItemInput {
        ItemInput {
            source: "t".into(),
            external_id: ext.into(),
            company: "ACME_DE".into(),
            customer: customer.into(),
            document_no: format!("INV-{ext}"),
            document_date: d("2026-08-01"),
            due_date: d("2026-09-01"),
            original_amount: amount,
            open_amount: open,
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    fn payment(
        ext: &str,
        customer: &str,
        item: Option<&str>,
        amount: Decimal,
        on: &str,
    ) -> PaymentInput {
        PaymentInput {
            source: "t".into(),
            external_id: ext.into(),
            company: "ACME_DE".into(),
            customer: customer.into(),
            amount,
            currency: Currency::parse("EUR").unwrap(),
            value_date: d(on),
            reference: String::new(),
            item_ref: item.map(String::from),
        }
    }

    fn learn(
        s: &mut Store,
        on: &str,
        items: Vec<ItemInput>,
        payments: Vec<PaymentInput>,
        snapshot: bool,
    ) {
        s.ingest(&Batch {
            items,
            payments,
            snapshot_sources: if snapshot { vec!["t".into()] } else { vec![] },
            as_of: Some(d(on)),
            ..Batch::default()
        })
        .unwrap();
    }

    fn admin() -> Reach {
        Reach::everything(&Principal {
            name: "root".into(),
            role: Role::Admin,
            groups: vec![],
        })
    }

    fn report(
        s: &Store,
        kind: ReportKind,
        from: &str,
        to: &str,
        by: &[Dim],
        within: Option<i64>,
    ) -> Table {
        let req = Request::new(
            kind,
            d(from),
            d(to),
            Some(by.to_vec()),
            Filter::default(),
            within,
        )
        .unwrap();
        run(s, &admin(), &req).unwrap()
    }

    fn amount(t: &Table, row: usize, col: &str) -> Decimal {
        match t.cell(row, col) {
            Some(Cell::Amount(a)) => *a,
            other => panic!("{col}: {other:?}"),
        }
    }

    fn count(t: &Table, row: usize, col: &str) -> u64 {
        match t.cell(row, col) {
            Some(Cell::Count(n)) => *n,
            other => panic!("{col}: {other:?}"),
        }
    }

    fn figure(t: &Table, row: usize, col: &str) -> Option<Decimal> {
        match t.cell(row, col) {
            Some(Cell::Figure(x)) => *x,
            other => panic!("{col}: {other:?}"),
        }
    }

    /// Four items due 2026-09-01, their cases opened by a run on 2026-09-10:
    /// I1 (C1, 100 EUR) paid in full, value 09-14; I2 (C1, 200 EUR) 50 paid on
    /// 09-20 by the ERP, the rest on 10-20; I3 (C2, 300 EUR) never paid; I4 (C2,
    /// 50 USD) gone from a full snapshot on 09-25.
    fn ledger() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let i1 = |open| item("1", "C1", dec!(100), "EUR", open);
        let i2 = |open| item("2", "C1", dec!(200), "EUR", open);
        let i3 = || item("3", "C2", dec!(300), "EUR", dec!(300));
        let i4 = || item("4", "C2", dec!(50), "USD", dec!(50));
        learn(
            &mut s,
            "2026-08-01",
            vec![i1(dec!(100)), i2(dec!(200)), i3(), i4()],
            vec![],
            false,
        );
        run_portfolio(
            &mut s,
            &arrears_test_support::shipped_rules(),
            d("2026-09-10"),
            RunMode::Full,
        )
        .unwrap();
        learn(
            &mut s,
            "2026-09-15",
            vec![i1(dec!(0))],
            vec![payment("p1", "C1", Some("1"), dec!(100), "2026-09-14")],
            false,
        );
        learn(&mut s, "2026-09-20", vec![i2(dec!(150))], vec![], false);
        learn(
            &mut s,
            "2026-09-25",
            vec![i2(dec!(150)), i3()],
            vec![],
            true,
        );
        learn(&mut s, "2026-10-20", vec![i2(dec!(0))], vec![], false);
        (dir, s)
    }

    #[test]
    fn conversion_counts_cases_collected_in_full_within_the_window() {
        let (_d, s) = ledger();
        let t = report(
            &s,
            ReportKind::Conversion,
            "2026-09-01",
            "2026-09-30",
            &[Dim::Company],
            None,
        );
        let eur = t.row(&["ACME_DE", "EUR"]).expect("an EUR row");
        // Three cases, 600 open when opened; within 30 days only I1 (100) was
        // collected in full (I2 on day 40); first payments on day 4 (I1) and day
        // 10 (I2): 7.0 days on average.
        assert_eq!(count(&t, eur, "cases_opened"), 3);
        assert_eq!(amount(&t, eur, "open_at_opening"), dec!(600));
        assert_eq!(count(&t, eur, "collected_in_full"), 1);
        assert_eq!(amount(&t, eur, "collected_amount"), dec!(100));
        assert_eq!(figure(&t, eur, "conversion_rate"), Some(dec!(0.3333)));
        assert_eq!(count(&t, eur, "cases_with_a_payment"), 2);
        assert_eq!(
            figure(&t, eur, "avg_days_to_first_payment"),
            Some(dec!(7.0))
        );
        let usd = t.row(&["ACME_DE", "USD"]).expect("a USD row");
        // I4 left the ERP's open items on day 15.
        assert_eq!(count(&t, usd, "collected_in_full"), 1);
        assert_eq!(figure(&t, usd, "conversion_rate"), Some(dec!(1.0000)));
        assert_eq!(
            figure(&t, usd, "avg_days_to_first_payment"),
            Some(dec!(15.0))
        );
        // Within 45 days I2 counts too: 2 of 3, 300 collected.
        let t = report(
            &s,
            ReportKind::Conversion,
            "2026-09-01",
            "2026-09-30",
            &[Dim::Company],
            Some(45),
        );
        let eur = t.row(&["ACME_DE", "EUR"]).unwrap();
        assert_eq!(count(&t, eur, "collected_in_full"), 2);
        assert_eq!(amount(&t, eur, "collected_amount"), dec!(300));
        assert_eq!(figure(&t, eur, "conversion_rate"), Some(dec!(0.6667)));
        // No case was opened in October.
        let t = report(
            &s,
            ReportKind::Conversion,
            "2026-10-01",
            "2026-10-31",
            &[Dim::Company],
            None,
        );
        assert!(t.rows.is_empty());
    }

    #[test]
    fn open_items_are_read_as_they_stood_on_the_last_day() {
        let (_d, s) = ledger();
        let by = [Dim::Customer];
        // 2026-09-12: everything open, 11 days past due.
        let t = report(
            &s,
            ReportKind::OpenItems,
            "2026-09-12",
            "2026-09-12",
            &by,
            None,
        );
        let c1 = t.row(&["ACME_DE/C1", "EUR"]).unwrap();
        assert_eq!(
            (count(&t, c1, "items"), amount(&t, c1, "open")),
            (2, dec!(300))
        );
        assert_eq!(amount(&t, c1, "1_30"), dec!(300));
        let c2 = t.row(&["ACME_DE/C2", "USD"]).unwrap();
        assert_eq!(amount(&t, c2, "open"), dec!(50));
        // 2026-09-30: I1 paid, I2 down to 150, I4 gone; 29 days past due.
        let t = report(
            &s,
            ReportKind::OpenItems,
            "2026-09-01",
            "2026-09-30",
            &by,
            None,
        );
        let c1 = t.row(&["ACME_DE/C1", "EUR"]).unwrap();
        assert_eq!(
            (count(&t, c1, "items"), amount(&t, c1, "open")),
            (1, dec!(150))
        );
        assert_eq!(amount(&t, c1, "overdue"), dec!(150));
        assert!(t.row(&["ACME_DE/C2", "USD"]).is_none());
        // 2026-10-25: only I3, 54 days past due.
        let t = report(
            &s,
            ReportKind::OpenItems,
            "2026-10-25",
            "2026-10-25",
            &[Dim::Company],
            None,
        );
        assert_eq!(t.rows.len(), 1);
        let r = t.row(&["ACME_DE", "EUR"]).unwrap();
        assert_eq!(amount(&t, r, "open"), dec!(300));
        assert_eq!(amount(&t, r, "31_60"), dec!(300));
        assert_eq!(amount(&t, r, "1_30"), dec!(0));
        // The buckets add up to the open amount.
        let buckets: Decimal = ["current", "1_30", "31_60", "61_90", "91_180", "over_180"]
            .iter()
            .map(|b| amount(&t, r, b))
            .sum();
        assert_eq!(buckets, amount(&t, r, "open"));
    }

    #[test]
    fn promises_are_counted_by_their_judgement_with_amounts_and_delay() {
        let (_d, mut s) = ledger();
        let cases = s.cases_opened(d("2026-09-10"), d("2026-09-10")).unwrap();
        let c2 = s.customer_id("ACME_DE/C2").unwrap();
        // I3, 300 EUR open.
        let i3 = cases
            .iter()
            .find(|c| c.customer_id == c2 && c.currency == "EUR")
            .unwrap()
            .case_id;
        let promise = |s: &mut Store, case: i64, amount, on: &str, by: &str| {
            s.create_promise(
                &NewPromise {
                    case_ids: vec![case],
                    amount,
                    promised_on: d(by),
                    on: d(on),
                    channel: None,
                    contact: None,
                },
                "alice",
            )
            .unwrap();
        };
        // 100 by 09-20 (paid 09-19: kept, a day early); 80 by 09-15 (nothing in
        // 09-13 ..= 09-18: broken); 120 by 09-30 (50 on 10-02, within the 3 days'
        // tolerance: partially kept, 2 days late); 10 made on 10-05, outside the
        // period.
        promise(&mut s, i3, dec!(100), "2026-09-12", "2026-09-20");
        promise(&mut s, i3, dec!(80), "2026-09-13", "2026-09-15");
        promise(&mut s, i3, dec!(120), "2026-09-21", "2026-09-30");
        promise(&mut s, i3, dec!(10), "2026-10-05", "2026-10-30");
        learn(
            &mut s,
            "2026-10-02",
            vec![],
            vec![
                payment("q1", "C2", None, dec!(100), "2026-09-19"),
                payment("q2", "C2", None, dec!(50), "2026-10-02"),
            ],
            false,
        );
        s.judge_promises(d("2026-10-10"), 3).unwrap();
        let t = report(
            &s,
            ReportKind::Promises,
            "2026-09-01",
            "2026-09-30",
            &[Dim::Company],
            None,
        );
        assert_eq!(t.rows.len(), 1);
        let r = t.row(&["ACME_DE", "EUR"]).unwrap();
        assert_eq!(count(&t, r, "made"), 3);
        assert_eq!(amount(&t, r, "promised"), dec!(300));
        let judged: Vec<u64> = ["kept", "partially_kept", "broken", "open"]
            .iter()
            .map(|c| count(&t, r, c))
            .collect();
        assert_eq!(judged, [1, 1, 1, 0]);
        assert_eq!(amount(&t, r, "received"), dec!(150));
        assert_eq!(figure(&t, r, "kept_rate"), Some(dec!(0.3333)));
        // (−1 + 2) / 2 days.
        assert_eq!(figure(&t, r, "avg_delay_days"), Some(dec!(0.5)));
        // Over two months the one made in October is still open.
        let t = report(
            &s,
            ReportKind::Promises,
            "2026-09-01",
            "2026-10-31",
            &[Dim::Customer],
            None,
        );
        let c2 = t.row(&["ACME_DE/C2", "EUR"]).unwrap();
        assert_eq!((count(&t, c2, "made"), count(&t, c2, "open")), (4, 1));
        assert_eq!(figure(&t, c2, "kept_rate"), Some(dec!(0.3333)));
    }

    #[test]
    fn a_report_is_cut_to_the_callers_reach_and_filters() {
        let (_d, s) = ledger();
        let dims = s.report_customers().unwrap();
        let c1 = &dims[&s.customer_id("ACME_DE/C1").unwrap()];
        let collector = c1.collector.clone().expect("the run gave C1 a collector");
        let me = Reach::of(
            &Principal {
                name: collector.clone(),
                role: Role::Collector,
                groups: vec![],
            },
            &arrears_test_support::shipped_rules(),
        );
        let req = Request::new(
            ReportKind::OpenItems,
            d("2026-09-12"),
            d("2026-09-12"),
            Some(vec![Dim::Collector, Dim::Customer]),
            Filter::default(),
            None,
        )
        .unwrap();
        let mine = run(&s, &me, &req).unwrap();
        assert!(!mine.rows.is_empty());
        for r in 0..mine.rows.len() {
            assert_eq!(
                mine.cell(r, "collector"),
                Some(&Cell::Text(collector.clone()))
            );
        }
        let all = run(&s, &admin(), &req).unwrap();
        let filtered = run(
            &s,
            &admin(),
            &Request {
                filter: Filter {
                    collector: Some(collector.clone()),
                    ..Filter::default()
                },
                ..req.clone()
            },
        )
        .unwrap();
        assert_eq!(filtered.rows, mine.rows);
        let expected = all
            .rows
            .iter()
            .filter(|r| r[0] == Cell::Text(collector.clone()))
            .count();
        assert_eq!(mine.rows.len(), expected);
    }

    #[test]
    fn bad_requests_name_their_field() {
        let msg = |r: Result<Request, AppError>| r.unwrap_err().to_string();
        assert_eq!(
            "forecasts".parse::<ReportKind>().unwrap_err().to_string(),
            "report: `forecasts` is not a report; the reports are worklist, contacts, conversion, open-items, promises, commission, forecast, forecast-backtest"
        );
        assert!("region"
            .parse::<Dim>()
            .unwrap_err()
            .to_string()
            .starts_with("by: `region`"));
        let kind = ReportKind::Promises;
        assert_eq!(
            msg(Request::new(kind, d("2026-10-02"), d("2026-10-01"), None, Filter::default(), None)),
            "from: 2026-10-02 is after to (2026-10-01); a period runs from its first day to its last"
        );
        assert_eq!(
            msg(Request::new(
                kind,
                d("2026-10-01"),
                d("2026-10-01"),
                Some(vec![Dim::Company, Dim::Company]),
                Filter::default(),
                None
            )),
            "by: `company` is named twice"
        );
        assert!(msg(Request::new(
            kind,
            d("2026-10-01"),
            d("2026-10-01"),
            None,
            Filter::default(),
            Some(0)
        ))
        .starts_with("within: 0 days"));
    }

    /// Collectors' payments in September 2026 (docs/REPORTS.md, "commission"):
    /// alice worked C1 on 09-12 and the key account C3 on 09-20; bob worked C2 on
    /// 09-15 and C1 on 10-05; nobody worked C4.
    fn commission_ledger() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let rules = arrears_test_support::shipped_rules();
        let a1 = |open| item("A1", "C1", dec!(1000), "EUR", open);
        let a2 = |open| item("A2", "C1", dec!(2000.55), "EUR", open);
        let b1 = |open| item("B1", "C2", dec!(500), "EUR", open);
        let b2 = |open| item("B2", "C2", dec!(300), "USD", open);
        let x1 = |open| item("X1", "C3", dec!(150000), "EUR", open);
        let y1 = |open| item("Y1", "C4", dec!(400), "EUR", open);
        learn(
            &mut s,
            "2026-08-01",
            vec![
                a1(dec!(1000)),
                a2(dec!(2000.55)),
                b1(dec!(500)),
                b2(dec!(300)),
                x1(dec!(150000)),
                y1(dec!(400)),
            ],
            vec![],
            false,
        );
        run_portfolio(&mut s, &rules, d("2026-09-10"), RunMode::Full).unwrap();
        let cases = s.cases_opened(d("2026-09-10"), d("2026-09-10")).unwrap();
        let case = |customer: &str, original: Decimal| {
            let c = s.customer_id(&format!("ACME_DE/{customer}")).unwrap();
            cases
                .iter()
                .find(|k| k.customer_id == c && k.original_amount == original)
                .unwrap()
                .case_id
        };
        let sub = rules
            .subcategory("negotiation", "promise_follow_up")
            .unwrap()
            .clone();
        let worked = [
            (case("C1", dec!(1000)), "2026-09-12", "alice"),
            (case("C2", dec!(500)), "2026-09-15", "bob"),
            (case("C3", dec!(150000)), "2026-09-20", "alice"),
            (case("C1", dec!(2000.55)), "2026-10-05", "bob"),
        ];
        for (id, on, who) in worked {
            s.set_activity(id, "negotiation", &sub, d("2026-09-10"), who, &rules.cases)
                .unwrap();
            s.complete_activity(id, d(on), who, None, &rules.cases)
                .unwrap();
        }
        let pay = |ext: &str, customer: &str, item: &str, amount, on: &str, cur: &str| {
            let mut p = payment(ext, customer, Some(item), amount, on);
            p.currency = Currency::parse(cur).unwrap();
            p
        };
        learn(
            &mut s,
            "2026-09-14",
            vec![a1(dec!(0))],
            vec![pay("p1", "C1", "A1", dec!(1000), "2026-09-14", "EUR")],
            false,
        );
        learn(
            &mut s,
            "2026-09-16",
            vec![b1(dec!(0))],
            vec![pay("p2", "C2", "B1", dec!(500), "2026-09-16", "EUR")],
            false,
        );
        learn(
            &mut s,
            "2026-09-17",
            vec![b2(dec!(0))],
            vec![pay("p3", "C2", "B2", dec!(300), "2026-09-17", "USD")],
            false,
        );
        learn(
            &mut s,
            "2026-09-18",
            vec![y1(dec!(0))],
            vec![pay("p4", "C4", "Y1", dec!(400), "2026-09-18", "EUR")],
            false,
        );
        learn(
            &mut s,
            "2026-09-22",
            vec![x1(dec!(50000))],
            vec![pay("p5", "C3", "X1", dec!(100000), "2026-09-22", "EUR")],
            false,
        );
        learn(
            &mut s,
            "2026-09-25",
            vec![a2(dec!(500))],
            vec![pay("p6", "C1", "A2", dec!(1500.55), "2026-09-25", "EUR")],
            false,
        );
        // B1's payment came back: open again on 10-01.
        learn(&mut s, "2026-10-01", vec![b1(dec!(500))], vec![], false);
        learn(
            &mut s,
            "2026-10-08",
            vec![a2(dec!(0))],
            vec![pay("p7", "C1", "A2", dec!(500), "2026-10-08", "EUR")],
            false,
        );
        (dir, s)
    }

    fn policy(cap: &str) -> CommissionPolicy {
        serde_yaml::from_str(&format!(
            "attribution: {{ rule: last_contact, within_days: 15 }}
tiers: [ {{ from: '0', rate: '1' }}, {{ from: '1000', rate: '2' }} ]
segments: {{ key_account: [ {{ from: '0', rate: '0.5' }} ] }}
cap: '{cap}'
clawback_days: 60"
        ))
        .unwrap()
    }

    fn commission_report(s: &Store, from: &str, to: &str, p: CommissionPolicy) -> Table {
        let mut req = Request::parse(
            "commission",
            Some(d(from)),
            d(to),
            &[],
            Filter::default(),
            None,
        )
        .unwrap();
        req.commission = Some(p);
        run(s, &admin(), &req).unwrap()
    }

    #[test]
    fn the_commission_settlement_sums_the_collected_amounts_times_the_rates() {
        let (_d, s) = commission_ledger();
        let dims = s.report_customers().unwrap();
        let segment = |c: &str| {
            dims[&s.customer_id(&format!("ACME_DE/{c}")).unwrap()]
                .segment
                .clone()
        };
        assert_eq!(
            segment("C3").as_deref(),
            Some("key_account"),
            "the key account"
        );
        assert_ne!(segment("C1").as_deref(), Some("key_account"));
        let t = commission_report(&s, "2026-09-01", "2026-09-30", policy("520"));
        let keys: Vec<String> = t
            .rows
            .iter()
            .map(|r| format!("{}/{}", r[0], r[1]))
            .collect();
        assert_eq!(
            keys,
            ["(unattributed)/EUR", "alice/EUR", "bob/EUR", "bob/USD"]
        );
        // alice: C1's 1000 (09-14, worked 09-12) and 1500.55 (09-25, 13 days after
        // 09-12) banded together: 1000 × 1 % + 1500.55 × 2 % = 40.011 → 40.01; the
        // key account's 100000 at 0.5 % = 500.00; 540.01 in all, 20.01 over the cap.
        let alice = t.row(&["alice", "EUR"]).unwrap();
        assert_eq!(count(&t, alice, "payments"), 3);
        assert_eq!(amount(&t, alice, "collected"), dec!(102500.55));
        let expected = (dec!(1000) * dec!(0.01) + dec!(1500.55) * dec!(0.02)).round_dp(2)
            + dec!(100000) * dec!(0.005);
        assert_eq!(amount(&t, alice, "commission"), expected);
        assert_eq!(expected, dec!(540.01));
        assert_eq!(amount(&t, alice, "over_cap"), expected - dec!(520));
        assert_eq!(amount(&t, alice, "due"), dec!(520));
        // bob's 500 came back within 60 days: nothing to earn on it.
        let bob = t.row(&["bob", "EUR"]).unwrap();
        assert_eq!(
            (amount(&t, bob, "collected"), amount(&t, bob, "reversed")),
            (dec!(500), dec!(500))
        );
        assert_eq!(amount(&t, bob, "due"), dec!(0));
        let usd = t.row(&["bob", "USD"]).unwrap();
        assert_eq!(amount(&t, usd, "due"), dec!(300) * dec!(0.01));
        // C4's payment: listed, earning nothing.
        let none = t.row(&["(unattributed)", "EUR"]).unwrap();
        assert_eq!(
            (amount(&t, none, "collected"), amount(&t, none, "due")),
            (dec!(400), dec!(0))
        );
        // Every collected euro is on one row.
        let collected: Decimal = ["(unattributed)", "alice", "bob"]
            .iter()
            .map(|c| amount(&t, t.row(&[c, "EUR"]).unwrap(), "collected"))
            .sum();
        assert_eq!(
            collected,
            dec!(1000) + dec!(500) + dec!(400) + dec!(100000) + dec!(1500.55)
        );
        // A filter picks whose settlements are shown, not which payments are in
        // them: alice, who worked the key account, is settled in full.
        let mut req = Request::parse(
            "commission",
            Some(d("2026-09-01")),
            d("2026-09-30"),
            &[],
            Filter {
                segment: Some("key_account".into()),
                ..Filter::default()
            },
            None,
        )
        .unwrap();
        req.commission = Some(policy("520"));
        let only = run(&s, &admin(), &req).unwrap();
        assert_eq!(only.rows, vec![t.rows[alice].clone()]);
        // October: A2's last 500 arrived three days after bob worked C1.
        let t = commission_report(&s, "2026-10-01", "2026-10-31", policy("520"));
        let bob = t.row(&["bob", "EUR"]).unwrap();
        assert_eq!(
            (amount(&t, bob, "collected"), amount(&t, bob, "due")),
            (dec!(500), dec!(5.00))
        );
        // Credited to the collector the run gave each customer instead: C4's
        // payment goes to C4's collector.
        let mut assigned = policy("1000000");
        assigned.attribution.rule = AttributionRule::Assigned;
        let t = commission_report(&s, "2026-09-01", "2026-09-30", assigned);
        let c4 = dims[&s.customer_id("ACME_DE/C4").unwrap()]
            .collector
            .clone()
            .expect("routed");
        let row = t.row(&[&c4, "EUR"]).unwrap();
        assert!(amount(&t, row, "collected") >= dec!(400));
        let total: u64 = (0..t.rows.len()).map(|r| count(&t, r, "payments")).sum();
        assert_eq!(total, 6);
    }

    #[test]
    fn a_commission_report_needs_the_rules_and_settles_per_collector() {
        let (_d, s) = ledger();
        let req = Request::parse(
            "commission",
            None,
            d("2026-09-30"),
            &[],
            Filter::default(),
            None,
        )
        .unwrap();
        assert_eq!(
            run(&s, &admin(), &req).unwrap_err().to_string(),
            "commission: the rules have no `commission` section (see rules/commission.yaml)"
        );
        let by = ["company".to_string()];
        assert!(Request::parse(
            "commission",
            None,
            d("2026-09-30"),
            &by,
            Filter::default(),
            None
        )
        .unwrap_err()
        .to_string()
        .starts_with("by: the commission report is settled per collector"));
    }

    #[test]
    fn the_forecast_report_lists_each_day_and_its_running_total() {
        let (_d, s) = ledger();
        let req = Request::parse(
            "forecast",
            None,
            d("2026-09-12"),
            &[],
            Filter::default(),
            Some(30),
        )
        .unwrap();
        let t = run(&s, &admin(), &req).unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["company", "currency", "day", "expected", "cumulative"]
        );
        let eur: Vec<usize> = (0..t.rows.len())
            .filter(|&r| t.rows[r][1] == Cell::Text("EUR".into()))
            .collect();
        assert_eq!(eur.len(), 30);
        assert_eq!(t.rows[eur[0]][2], Cell::Text("2026-09-13".into()));
        let mut total = Decimal::ZERO;
        for &r in &eur {
            total += amount(&t, r, "expected");
            assert_eq!(amount(&t, r, "cumulative"), total);
        }
        // A back-test from weekly forecasts of 2 weeks: 2 rows per currency.
        let req = Request::parse(
            "forecast-backtest",
            Some(d("2026-09-12")),
            d("2026-10-31"),
            &[],
            Filter::default(),
            Some(14),
        )
        .unwrap();
        let t = run(&s, &admin(), &req).unwrap();
        let r = t.row(&["ACME_DE", "EUR", "01"]).expect("week 1");
        // Forecasts on 09-12, 09-19, ... 10-17: 6 of them.
        assert_eq!(count(&t, r, "forecasts"), 6);
        assert!(t.row(&["ACME_DE", "EUR", "02"]).is_some());
        assert!(t.row(&["ACME_DE", "EUR", "03"]).is_none());
        let by = ["collector".to_string()];
        assert!(Request::parse(
            "forecast",
            None,
            d("2026-09-12"),
            &by,
            Filter::default(),
            None
        )
        .and_then(|req| run(&s, &admin(), &req))
        .unwrap_err()
        .to_string()
        .starts_with("by: the forecast report is by company"));
    }

    #[test]
    fn the_worklist_report_counts_entries_worked_and_left_by_priority() {
        let (_d, mut s) = ledger();
        let rules = arrears_test_support::shipped_rules();
        // After the run of 09-10 both customers are on the worklist; alice works
        // C1's cases on 09-11.
        let cases = s.cases_opened(d("2026-09-10"), d("2026-09-10")).unwrap();
        let c1 = s.customer_id("ACME_DE/C1").unwrap();
        let sub = rules
            .subcategory("negotiation", "promise_follow_up")
            .unwrap()
            .clone();
        let case = cases.iter().find(|c| c.customer_id == c1).unwrap().case_id;
        s.set_activity(
            case,
            "negotiation",
            &sub,
            d("2026-09-11"),
            "alice",
            &rules.cases,
        )
        .unwrap();
        let mut req = Request::parse(
            "worklist",
            Some(d("2026-09-11")),
            d("2026-09-11"),
            &["customer".to_string()],
            Filter::default(),
            None,
        )
        .unwrap();
        req.use_rules(&rules);
        let t = run(&s, &admin(), &req).unwrap();
        let base = rules.rates.base.as_str();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(&names[..3], ["customer", "currency", "priority"]);
        let (entries, _) = s
            .worklist_page(&arrears_store::WorklistQuery {
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        let mine: Vec<_> = entries.iter().filter(|e| e.customer_id == c1).collect();
        assert_eq!(mine.len(), 1);
        let prio = mine[0].priority.as_str();
        let r = t.row(&["ACME_DE/C1", base, prio]).expect("C1's row");
        assert_eq!(count(&t, r, "entries"), 1);
        assert_eq!(amount(&t, r, "amount"), mine[0].amount);
        assert_eq!(count(&t, r, "worked"), 1);
        assert_eq!(count(&t, r, "due_not_worked"), 0);
        let total: u64 = (0..t.rows.len()).map(|r| count(&t, r, "entries")).sum();
        assert_eq!(total as usize, entries.len());
        let worked: u64 = (0..t.rows.len()).map(|r| count(&t, r, "worked")).sum();
        assert_eq!(worked, 1, "only C1 was worked");
        // The next day nobody worked anything.
        let req = Request {
            from: d("2026-09-12"),
            to: d("2026-09-12"),
            ..req
        };
        let t = run(&s, &admin(), &req).unwrap();
        let worked: u64 = (0..t.rows.len()).map(|r| count(&t, r, "worked")).sum();
        assert_eq!(worked, 0);
    }

    #[test]
    fn the_contacts_report_counts_activities_and_promises_by_channel() {
        let (_d, mut s) = ledger();
        let rules = arrears_test_support::shipped_rules();
        let cases = s.cases_opened(d("2026-09-10"), d("2026-09-10")).unwrap();
        let sub = rules
            .subcategory("negotiation", "promise_follow_up")
            .unwrap()
            .clone();
        let c2 = s.customer_id("ACME_DE/C2").unwrap();
        let eur: Vec<i64> = cases
            .iter()
            .filter(|c| c.customer_id == c2 && c.currency == "EUR")
            .map(|c| c.case_id)
            .collect();
        let usd = cases
            .iter()
            .find(|c| c.customer_id == c2 && c.currency == "USD")
            .unwrap()
            .case_id;
        // Two calls with C2: one took a promise, one did not.
        for (case, ptp) in [(eur[0], Some((d("2026-09-30"), dec!(100)))), (usd, None)] {
            s.set_activity(
                case,
                "negotiation",
                &sub,
                d("2026-09-11"),
                "bob",
                &rules.cases,
            )
            .unwrap();
            s.complete_activity(case, d("2026-09-12"), "bob", ptp, &rules.cases)
                .unwrap();
        }
        let req = Request::parse(
            "contacts",
            Some(d("2026-09-01")),
            d("2026-09-30"),
            &["customer".to_string()],
            Filter::default(),
            None,
        )
        .unwrap();
        let t = run(&s, &admin(), &req).unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(&names[..2], ["customer", "channel"]);
        let r = t.row(&["ACME_DE/C2", "activity"]).expect("C2's activities");
        assert_eq!(
            (
                count(&t, r, "contacts"),
                count(&t, r, "reached"),
                count(&t, r, "promises")
            ),
            (2, 2, 1)
        );
        assert_eq!(figure(&t, r, "reach_rate"), Some(dec!(1.0000)));
        // Nothing in October.
        let t = run(
            &s,
            &admin(),
            &Request {
                from: d("2026-10-01"),
                to: d("2026-10-31"),
                ..req
            },
        )
        .unwrap();
        assert!(t.row(&["ACME_DE/C2", "activity"]).is_none());
    }

    /// Two customers in segments without a scale of their own are banded together.
    #[test]
    fn segments_on_the_default_tiers_are_banded_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let rules = arrears_test_support::shipped_rules();
        let a = |open| item("A", "C1", dec!(3000), "EUR", open);
        let b = |open| item("B", "C2", dec!(6000), "EUR", open);
        learn(
            &mut s,
            "2026-08-01",
            vec![a(dec!(3000)), b(dec!(6000))],
            vec![],
            false,
        );
        run_portfolio(&mut s, &rules, d("2026-09-10"), RunMode::Full).unwrap();
        let sub = rules
            .subcategory("negotiation", "promise_follow_up")
            .unwrap()
            .clone();
        for k in s.cases_opened(d("2026-09-10"), d("2026-09-10")).unwrap() {
            s.set_activity(
                k.case_id,
                "negotiation",
                &sub,
                d("2026-09-10"),
                "alice",
                &rules.cases,
            )
            .unwrap();
            s.complete_activity(k.case_id, d("2026-09-12"), "alice", None, &rules.cases)
                .unwrap();
        }
        learn(
            &mut s,
            "2026-09-14",
            vec![a(dec!(0)), b(dec!(0))],
            vec![
                payment("p1", "C1", Some("A"), dec!(3000), "2026-09-14"),
                payment("p2", "C2", Some("B"), dec!(6000), "2026-09-14"),
            ],
            false,
        );
        let mut p = policy("1000000");
        p.segments.clear();
        let t = commission_report(&s, "2026-09-01", "2026-09-30", p);
        let r = t.row(&["alice", "EUR"]).unwrap();
        // 1000 × 1 % + 8000 × 2 %, whatever segments C1 and C2 are in.
        assert_eq!(amount(&t, r, "commission"), dec!(170.00));
    }

    /// One return after two payments of an item is clawed back once.
    #[test]
    fn a_return_is_clawed_back_once_per_item() {
        let ch = |on: &str, open| arrears_store::StateChange {
            on: d(on),
            open,
            cause: ChangeCause::Payment,
        };
        let changes = vec![ch("2026-09-14", dec!(0)), ch("2026-09-20", dec!(50))];
        let p = |id| arrears_store::PaymentFact {
            id,
            customer_id: 1,
            item_id: 1,
            amount: dec!(50),
            currency: "EUR".into(),
            value_date: d("2026-09-14"),
            assigned_to: None,
            item_original: dec!(100),
            item_changes: changes.clone(),
        };
        let back = reversals(&[p(1), p(2)], 60);
        assert_eq!(back.values().copied().sum::<Decimal>(), dec!(50));
        assert_eq!(back[&2], dec!(50), "the latest payment first");
    }

    /// An item cleared and reopened has two cases, each with the item's history.
    #[test]
    fn a_reopened_items_second_case_keeps_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let rules = arrears_test_support::shipped_rules();
        let a = |open| item("A", "C1", dec!(3000), "EUR", open);
        learn(&mut s, "2026-08-01", vec![a(dec!(3000))], vec![], false);
        run_portfolio(&mut s, &rules, d("2026-09-02"), RunMode::Full).unwrap();
        learn(&mut s, "2026-09-03", vec![a(dec!(0))], vec![], false);
        run_portfolio(&mut s, &rules, d("2026-09-04"), RunMode::Full).unwrap();
        learn(&mut s, "2026-09-05", vec![a(dec!(3000))], vec![], false);
        run_portfolio(&mut s, &rules, d("2026-09-06"), RunMode::Full).unwrap();
        let cases = s.cases_opened(d("2026-09-01"), d("2026-09-30")).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].changes, cases[1].changes);
        assert_eq!(cases[1].open_on(cases[1].opened_on), dec!(3000));
    }

    /// A split original is replaced, not collected: whether the ERP clears it in
    /// the batch that brings its replacement or later.
    #[test]
    fn a_replaced_original_is_not_collected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let rules = arrears_test_support::shipped_rules();
        let a = |open| item("A", "C1", dec!(3000), "EUR", open);
        let b = |open| item("B", "C1", dec!(3000), "EUR", open);
        learn(
            &mut s,
            "2026-08-01",
            vec![a(dec!(3000)), b(dec!(3000))],
            vec![],
            false,
        );
        run_portfolio(&mut s, &rules, d("2026-09-02"), RunMode::Full).unwrap();
        let part = |ext: &str, of: &str, on: &str| {
            let mut p = item(ext, "C1", dec!(3000), "EUR", dec!(3000));
            p.original_document = Some(format!("INV-{of}"));
            p.document_date = d(on);
            p
        };
        learn(
            &mut s,
            "2026-09-05",
            vec![part("A-1", "A", "2026-09-05")],
            vec![],
            false,
        );
        learn(&mut s, "2026-09-07", vec![a(dec!(0))], vec![], false);
        learn(
            &mut s,
            "2026-09-06",
            vec![b(dec!(0)), part("B-1", "B", "2026-09-06")],
            vec![],
            false,
        );
        let req = Request::new(
            ReportKind::Conversion,
            d("2026-09-01"),
            d("2026-09-30"),
            None,
            Filter::default(),
            None,
        )
        .unwrap();
        let t = run(&s, &admin(), &req).unwrap();
        assert_eq!(count(&t, 0, "cases_opened"), 2);
        assert_eq!(count(&t, 0, "collected_in_full"), 0);
    }
}
