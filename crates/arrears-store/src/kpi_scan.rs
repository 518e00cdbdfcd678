//! The one read pass behind the finance KPIs: raw sums and counts per (company,
//! currency) and per collector, all read in one snapshot. The KPIs themselves (DSO,
//! CEI, ratios, rounding) are computed from these figures by `arrears-kpi`, which also
//! owns the definitions this pass is parameterised with ([`KpiScan`]); `docs/KPIS.md`
//! writes them out for finance readers.
//!
//! Money is summed exactly in Rust over streamed rows (amounts are TEXT in SQLite, whose
//! `SUM` would go through floating point; NUMERIC on PostgreSQL, read back as the same
//! text): integer mantissas, turned into `Decimal` once per total. SQL does the
//! filtering, the joins and the integer counts, which are exact. The pass is written
//! once for both databases ([`Db`]) and gives the same figures on both.
//!
//! Cost: one sequential pass over each of items, open cases, customers, the items'
//! history rows dated up to the CEI start, promises, worklist and the `completed` case
//! events; only those history rows are sorted. O(rows) time; memory O(customers + one
//! byte per item id per part + history rows + companies × currencies × months of
//! history). The item and
//! case scans dominate (SQLite decoding the rows, more than the arithmetic), so on
//! SQLite from 100,000 items on they are split by id range over one read-only connection
//! per core (at most 4) and the partial totals merged; the result is the same as in one
//! pass. On PostgreSQL the pass reads on the store's one connection in one REPEATABLE
//! READ snapshot: splitting it would take connections of its own per pass, sharing an
//! exported snapshot, and the server already works beside the client decoding the rows.
//! Its client holds a query's whole result in memory, so there the large scans are read
//! in id windows of about [`PG_WINDOW_ROWS`] rows each.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use arrears_core::domain::{Priority, PromiseStatus};
use chrono::{Datelike, NaiveDate};
use rusqlite::{Connection, OpenFlags};
use rust_decimal::Decimal;

use crate::db::{args, Arg, Db, RowRef};
use crate::{date, dec, Result, Store, StoreError};

/// About how many rows of a large scan one PostgreSQL query returns (see the module's
/// header): a few megabytes of client memory at a time. The tests' small ledgers are
/// read in several windows too.
const PG_WINDOW_ROWS: i64 = if cfg!(test) { 100 } else { 50_000 };

/// What a KPI pass adds up, and how. The day counts are the KPI definitions' (see
/// `arrears-kpi`); the store only applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiScan {
    pub as_of: NaiveDate,
    /// Credit sales dated `as_of − (n − 1) ..= as_of` count in
    /// [`CurrencyFigures::sales_in_dso_window`].
    pub dso_window_days: i64,
    /// The CEI period ends on `as_of` and starts `n` days before it.
    pub cei_window_days: i64,
    /// Length of the periods of [`CurrencyFigures::sales_by_period`].
    pub period_days: i64,
    /// Open amounts due and open promises falling due in `as_of ..= as_of + (n − 1)`
    /// count in [`CurrencyFigures::due_soon`] / [`CurrencyFigures::promised_soon`].
    pub soon_days: i64,
    /// Inclusive upper bounds, in days past due, of the first five aging buckets
    /// (ascending); the sixth holds the rest.
    pub aging_bounds: [i64; 5],
    /// How many ways to split the item and case scans on SQLite; `None` picks by size
    /// and cores. PostgreSQL reads them on one connection whatever this says.
    pub parts: Option<usize>,
}

/// The raw figures of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiFigures {
    /// One row per (company, currency) with anything to count, ordered by company
    /// then currency.
    pub rows: Vec<CurrencyFigures>,
    /// The worklist per collector (`None`: entries nobody is assigned to), by name.
    pub worklist: Vec<WorklistLoad>,
    /// The completed activities per actor, by name.
    pub completions: Vec<Completions>,
    /// How many ways the item and case scans were split (each on its own connection);
    /// always 1 on PostgreSQL.
    pub parts: usize,
}

/// Raw sums of one (company, currency).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CurrencyFigures {
    pub company: String,
    pub currency: String,
    /// Open amount of the open items dated on or before `as_of`.
    pub receivables: Decimal,
    /// The part of `receivables` at least one day past due.
    pub overdue: Decimal,
    /// `receivables` by days past due, split at [`KpiScan::aging_bounds`].
    pub aging: [Decimal; 6],
    /// Credit sales (original amounts, replacements of another document left out) per
    /// period: index k covers document dates `(as_of − p(k+1), as_of − pk]`; as long as
    /// the oldest document needs.
    pub sales_by_period: Vec<Decimal>,
    pub sales_in_dso_window: Decimal,
    pub sales_in_cei_window: Decimal,
    /// Open amount on the CEI start of the items dated by then, from their history
    /// (an item without a change by then at its original amount).
    pub beginning_receivables: Decimal,
    /// Open amount of the items due within the soon window.
    pub due_soon: Decimal,
    /// Open promises falling due within the soon window, capped per item at its open
    /// amount; promises on items already counted in `due_soon` or no longer open are
    /// left out.
    pub promised_soon: Decimal,
    /// Open cases of the items of this row: high, medium, low.
    pub open_cases: [i64; 3],
    /// Promises made on or before `as_of`, by judgement.
    pub promises_kept: i64,
    pub promises_partial: i64,
    pub promises_broken: i64,
}

/// One collector's worklist.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistLoad {
    pub collector: Option<String>,
    pub entries: i64,
    /// Sum of the entries' amounts (the rules' base currency).
    pub amount: Decimal,
}

/// Activities one actor completed on or before `as_of` (all time).
#[derive(Debug, Clone, PartialEq)]
pub struct Completions {
    pub actor: String,
    pub completed: i64,
    /// Of those, the completions that recorded a promise to pay.
    pub promises_taken: i64,
}

/// Day number of the ISO date in column `i`: a fast path for `YYYY-MM-DD` (millions of
/// rows), the store's own parser (and its error) for anything else.
fn day(r: &RowRef, i: usize, column: &'static str) -> Result<i64, StoreError> {
    let b = bytes(r, i, column)?;
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
    Ok(i64::from(
        date(column, &txt(r, i, column)?)?.num_days_from_ce(),
    ))
}

/// The exact decimal amount in column `i`: a fast path for plain `[-]digits[.digits]` of
/// up to 18 digits (what the store writes), the store's own parser for anything else.
/// Both give the same value and scale.
fn amount(r: &RowRef, i: usize, column: &'static str) -> Result<Decimal, StoreError> {
    let b = bytes(r, i, column)?;
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, &b[..]),
    };
    let mut mantissa: i64 = 0;
    let mut count = 0u32;
    let mut scale: Option<u32> = None;
    let mut plain = !digits.is_empty() && digits.len() <= 19;
    for (k, &c) in digits.iter().enumerate() {
        if !plain {
            break;
        }
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + i64::from(c - b'0');
                count += 1;
                if let Some(s) = scale.as_mut() {
                    *s += 1;
                }
            }
            b'.' if scale.is_none() && k > 0 && k + 1 < digits.len() => scale = Some(0),
            _ => plain = false,
        }
        plain &= count <= 18;
    }
    let d = if plain {
        let m = if negative { -mantissa } else { mantissa };
        Decimal::new(m, scale.unwrap_or(0))
    } else {
        dec(column, &txt(r, i, column)?)?
    };
    // Amounts beyond the bound (stored before there was one) could overflow the sums:
    // named as corrupt instead of stopping the KPI task with a panic.
    arrears_core::money::check_bound(d).map_err(|_| StoreError::Corrupt {
        column,
        value: d.to_string(),
    })
}

fn day_of(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce())
}

/// An INTEGER column, on SQLite read in place: the scans read millions, and
/// [`RowRef::get`] is not inlined there.
#[inline]
fn int(r: &RowRef, i: usize, column: &'static str) -> Result<i64, StoreError> {
    if let RowRef::Lite(row) = r {
        if let rusqlite::types::ValueRef::Integer(v) = row.get_ref(i)? {
            return Ok(v);
        }
    }
    r.get(i, column)
}

/// A TEXT column: borrowed on SQLite (no allocation per row); PostgreSQL's text (an
/// amount's NUMERIC and a DATE come as the same text the store writes on SQLite).
#[inline]
fn txt<'a>(r: &'a RowRef, i: usize, column: &'static str) -> Result<Cow<'a, str>, StoreError> {
    match r {
        RowRef::Lite(row) => Ok(Cow::Borrowed(row.get_ref(i)?.as_str().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })?)),
        RowRef::Pg(_) => Ok(Cow::Owned(r.get::<String>(i, column)?)),
    }
}

/// A TEXT column's bytes (on SQLite borrowed, and no UTF-8 check: the callers compare or
/// parse ASCII).
#[inline]
fn bytes<'a>(r: &'a RowRef, i: usize, column: &'static str) -> Result<Cow<'a, [u8]>, StoreError> {
    match r {
        RowRef::Lite(row) => Ok(Cow::Borrowed(row.get_ref(i)?.as_bytes().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })?)),
        RowRef::Pg(_) => Ok(Cow::Owned(r.get::<String>(i, column)?.into_bytes())),
    }
}

/// Whether column `i` is NULL (on SQLite without reading it as anything).
fn is_null(r: &RowRef, i: usize, column: &'static str) -> Result<bool, StoreError> {
    match r {
        RowRef::Lite(row) => Ok(row.get_ref(i)? == rusqlite::types::ValueRef::Null),
        RowRef::Pg(_) => Ok(r.get::<crate::pg::Value>(i, column)? == crate::pg::Value::Null),
    }
}

fn priority_index(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

/// An exact running total for millions of additions: an integer mantissa at one scale,
/// several times cheaper than `Decimal` addition. Whenever the cheap path does not apply
/// (a larger scale comes in, or the mantissa would leave `Decimal`'s 96 bits) it adds
/// with `Decimal` itself, so the result is always what summing `Decimal`s gives.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    mantissa: i128,
    scale: u32,
}

impl Sum {
    const MAX_MANTISSA: u128 = (1 << 96) - 1;

    fn add(&mut self, d: Decimal) {
        let (m, s) = (d.mantissa(), d.scale());
        let aligned = if s == self.scale {
            Some(m)
        } else if s < self.scale {
            10i128
                .checked_pow(self.scale - s)
                .and_then(|p| m.checked_mul(p))
        } else {
            None
        };
        match aligned
            .and_then(|x| self.mantissa.checked_add(x))
            .filter(|x| x.unsigned_abs() <= Self::MAX_MANTISSA)
        {
            Some(x) => self.mantissa = x,
            None => {
                let total = self.value() + d;
                self.mantissa = total.mantissa();
                self.scale = total.scale();
            }
        }
    }

    fn value(self) -> Decimal {
        Decimal::from_i128_with_scale(self.mantissa, self.scale)
    }

    fn merge(&mut self, other: Sum) {
        self.add(other.value());
    }
}

/// Running totals of one (company, currency).
#[derive(Default)]
struct Acc {
    receivables: Sum,
    overdue: Sum,
    aging: [Sum; 6],
    /// Credit sales per count-back period: index k covers document dates
    /// `(as_of − 30(k+1), as_of − 30k]`.
    periods: Vec<Sum>,
    sales_dso: Sum,
    sales_cei: Sum,
    beginning: Sum,
    due_7d: Sum,
    promised_7d: Decimal,
    open_cases: [i64; 3],
    kept: i64,
    partial: i64,
    broken: i64,
}

impl Acc {
    fn merge(&mut self, o: &Acc) {
        self.receivables.merge(o.receivables);
        self.overdue.merge(o.overdue);
        for (a, b) in self.aging.iter_mut().zip(o.aging) {
            a.merge(b);
        }
        if self.periods.len() < o.periods.len() {
            self.periods.resize(o.periods.len(), Sum::default());
        }
        for (a, b) in self.periods.iter_mut().zip(&o.periods) {
            a.merge(*b);
        }
        self.sales_dso.merge(o.sales_dso);
        self.sales_cei.merge(o.sales_cei);
        self.beginning.merge(o.beginning);
        self.due_7d.merge(o.due_7d);
        self.promised_7d += o.promised_7d;
        for (a, b) in self.open_cases.iter_mut().zip(o.open_cases) {
            *a += b;
        }
        self.kept += o.kept;
        self.partial += o.partial;
        self.broken += o.broken;
    }
}

/// Companies interned to small numbers, and each customer's company.
#[derive(Default)]
struct Companies {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    of_customer: HashMap<i64, u32>,
}

impl Companies {
    fn load(db: &Db) -> Result<Companies, StoreError> {
        let mut out = Companies::default();
        let mut last: Option<u32> = None;
        db.each("SELECT id, company FROM customers", args![], |r| {
            let name = bytes(r, 1, "customers.company")?;
            let id = match last {
                Some(i) if out.names[i as usize].as_bytes() == &name[..] => i,
                _ => {
                    let name = txt(r, 1, "customers.company")?;
                    match out.ids.get(&name[..]) {
                        Some(&i) => i,
                        None => {
                            let i = out.names.len() as u32;
                            out.names.push(name.to_string());
                            out.ids.insert(name.to_string(), i);
                            i
                        }
                    }
                }
            };
            last = Some(id);
            out.of_customer.insert(int(r, 0, "customers.id")?, id);
            Ok(())
        })?;
        Ok(out)
    }

    fn of(&self, column: &'static str, customer: i64) -> Result<u32, StoreError> {
        self.of_customer
            .get(&customer)
            .copied()
            .ok_or_else(|| StoreError::Corrupt {
                column,
                value: customer.to_string(),
            })
    }
}

/// Totals per (company, currency); currencies interned to small numbers.
#[derive(Default)]
struct Totals {
    currencies: Vec<String>,
    index: HashMap<(u32, u32), usize>,
    rows: Vec<((u32, u32), Acc)>,
}

impl Totals {
    fn currency(&mut self, code: &str) -> u32 {
        match self.currencies.iter().position(|c| c == code) {
            Some(i) => i as u32,
            None => {
                self.currencies.push(code.to_string());
                (self.currencies.len() - 1) as u32
            }
        }
    }

    fn slot(&mut self, company: u32, currency: u32) -> usize {
        let key = (company, currency);
        *self.index.entry(key).or_insert_with(|| {
            self.rows.push((key, Acc::default()));
            self.rows.len() - 1
        })
    }

    fn acc(&mut self, company: u32, currency: &str) -> &mut Acc {
        let cur = self.currency(currency);
        let i = self.slot(company, cur);
        &mut self.rows[i].1
    }

    fn merge(&mut self, other: Totals) {
        for ((company, cur), acc) in other.rows {
            let cur = self.currency(&other.currencies[cur as usize]);
            let slot = self.slot(company, cur);
            self.rows[slot].1.merge(&acc);
        }
    }
}

/// Per item: the priority of its open case (1 low, 2 medium, 3 high), 0 without one.
const PRIORITY_SHIFT: u8 = 0;

/// A byte of case facts per item id: a vector indexed by id (item ids are SQLite rowids,
/// dense in practice), a map if the ids are too sparse for that.
enum ItemFlags {
    Dense(Vec<u8>),
    Sparse(HashMap<i64, u8>),
}

impl ItemFlags {
    fn new(ids: &IdRange) -> ItemFlags {
        if ids.lo >= 0 && ids.hi <= 8 * ids.count + 1_000_000 {
            ItemFlags::Dense(vec![0; ids.hi as usize])
        } else {
            ItemFlags::Sparse(HashMap::new())
        }
    }

    fn set(&mut self, id: i64, bits: u8) {
        match self {
            ItemFlags::Dense(v) => {
                if let Some(x) = usize::try_from(id).ok().and_then(|i| v.get_mut(i)) {
                    *x |= bits;
                }
            }
            ItemFlags::Sparse(m) => *m.entry(id).or_default() |= bits,
        }
    }

    fn get(&self, id: i64) -> u8 {
        match self {
            ItemFlags::Dense(v) => usize::try_from(id)
                .ok()
                .and_then(|i| v.get(i))
                .copied()
                .unwrap_or(0),
            ItemFlags::Sparse(m) => m.get(&id).copied().unwrap_or(0),
        }
    }

    fn merge(&mut self, other: ItemFlags) {
        match (self, other) {
            (ItemFlags::Dense(a), ItemFlags::Dense(b)) => {
                for (x, y) in a.iter_mut().zip(b) {
                    *x |= y;
                }
            }
            (this, ItemFlags::Sparse(b)) => {
                for (id, bits) in b {
                    this.set(id, bits);
                }
            }
            (this, ItemFlags::Dense(b)) => {
                for (id, bits) in b.into_iter().enumerate().filter(|x| x.1 != 0) {
                    this.set(id as i64, bits);
                }
            }
        }
    }
}

/// The ids of a table, `lo..hi`, and how many rows there are.
#[derive(Debug, Clone, Copy)]
struct IdRange {
    lo: i64,
    hi: i64,
    count: i64,
}

impl IdRange {
    fn of(db: &Db, table: &str) -> Result<IdRange, StoreError> {
        // Three statements: each uses SQLite's shortcut, together they would scan.
        let one = |sql: String| -> Result<Option<i64>, StoreError> {
            match db.row(&sql, args![])? {
                Some(r) => r.get(0, "id"),
                None => Ok(None),
            }
        };
        let lo = one(format!("SELECT MIN(id) FROM {table}"))?.unwrap_or(0);
        let hi = one(format!("SELECT MAX(id) FROM {table}"))?.map_or(lo, |m| m.saturating_add(1));
        let count = one(format!("SELECT COUNT(*) FROM {table}"))?.unwrap_or(0);
        Ok(IdRange { lo, hi, count })
    }

    /// Everything: for a query that reads a whole table on SQLite.
    const ALL: IdRange = IdRange {
        lo: i64::MIN,
        hi: i64::MAX,
        count: 0,
    };

    /// `n` consecutive parts of about equal length.
    fn split(&self, n: usize) -> Vec<(i64, i64)> {
        let (lo, len, n) = (
            i128::from(self.lo),
            i128::from(self.hi) - i128::from(self.lo),
            n.max(1) as i128,
        );
        (0..n)
            .map(|k| ((lo + len * k / n) as i64, (lo + len * (k + 1) / n) as i64))
            .collect()
    }
}

/// Each item's open amount on the CEI start, from its history, for the items that
/// had changed by then: (item id, amount; zero once it was no longer open), sorted
/// by item id. An item without a row was still as born: open at its original amount.
struct OnStart {
    rows: Vec<(i64, Decimal)>,
}

impl OnStart {
    /// `ids`: the history's ids, to read in windows on PostgreSQL.
    fn load(db: &Db, start: &str, ids: &IdRange) -> Result<OnStart, StoreError> {
        // (item, row id, amount): the latest row written by the start wins.
        let mut all: Vec<(i64, i64, Decimal)> = Vec::new();
        each_window(
            db,
            "SELECT item_id, id, CASE WHEN status = 'open' THEN open_amount ELSE '0' END
             FROM item_history WHERE on_date <= ?1 AND id >= ?2 AND id < ?3",
            args![start],
            ids,
            (ids.lo, ids.hi),
            |r| {
                all.push((
                    int(r, 0, "item_history.item_id")?,
                    int(r, 1, "item_history.id")?,
                    amount(r, 2, "item_history.open_amount")?,
                ));
                Ok(())
            },
        )?;
        all.sort_unstable_by_key(|&(item, id, _)| (item, id));
        let mut rows: Vec<(i64, Decimal)> = Vec::with_capacity(all.len());
        for (item, _, amount) in all {
            match rows.last_mut() {
                Some(last) if last.0 == item => last.1 = amount,
                _ => rows.push((item, amount)),
            }
        }
        Ok(OnStart { rows })
    }

    /// The rows of items with ids in `lo..hi`.
    fn within(&self, (lo, hi): (i64, i64)) -> &[(i64, Decimal)] {
        let a = self.rows.partition_point(|p| p.0 < lo);
        let b = self.rows.partition_point(|p| p.0 < hi);
        &self.rows[a..b]
    }
}

/// Runs `sql` over the rows with ids in `part` (a part of `table`'s ids), its last two
/// parameters a window's `lo..hi`: one window on SQLite, which hands rows over as it
/// reads them; on PostgreSQL, whose client holds a whole result, windows of about
/// [`PG_WINDOW_ROWS`] rows, in id order.
fn each_window(
    db: &Db,
    sql: &str,
    args: &[&dyn Arg],
    table: &IdRange,
    (lo, hi): (i64, i64),
    mut f: impl FnMut(&RowRef) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let windows = match db {
        Db::Lite(_) => 1,
        Db::Pg(_) => (table.count / PG_WINDOW_ROWS + 1) as usize,
    };
    for (a, b) in (IdRange { lo, hi, count: 0 }).split(windows) {
        let mut all = args.to_vec();
        all.extend([&a as &dyn Arg, &b]);
        db.each(sql, &all, &mut f)?;
    }
    Ok(())
}

/// The cases with ids in `part`: the priority of each item's open case.
fn scan_cases(
    db: &Db,
    part: (i64, i64),
    cases: &IdRange,
    items: &IdRange,
) -> Result<ItemFlags, StoreError> {
    let mut flags = ItemFlags::new(items);
    each_window(
        db,
        "SELECT item_id, CASE priority WHEN 3 THEN 3 WHEN 2 THEN 2 ELSE 1 END
         FROM cases WHERE status = 'open' AND id >= ?1 AND id < ?2",
        args![],
        cases,
        part,
        |r| {
            let code = int(r, 1, "case priority")?;
            flags.set(int(r, 0, "cases.item_id")?, (code as u8) << PRIORITY_SHIFT);
            Ok(())
        },
    )?;
    Ok(flags)
}

/// What every item scan reads.
struct ItemScan<'a> {
    today: i64,
    scan: &'a KpiScan,
    items: &'a IdRange,
    companies: &'a Companies,
    flags: &'a ItemFlags,
    on_start: &'a OnStart,
}

/// The items with ids in `lo..hi`: receivables, aging, credit sales, beginning
/// receivables of the CEI, cash due soon, open cases.
fn scan_items(db: &Db, s: &ItemScan, ids: (i64, i64)) -> Result<Totals, StoreError> {
    let (today, opts) = (s.today, s.scan);
    let mut totals = Totals::default();
    let mut then = s.on_start.within(ids).iter().peekable();
    // Consecutive items mostly share customer and currency: skip the look-ups then.
    let mut last: Option<(i64, u32, usize)> = None;
    each_window(
        db,
        // Two flags ride in the id's low bits (one column fewer per row): bit 0 open,
        // bit 1 a replacement (split / re-posting) of another document. In id order
        // (free for a rowid table) so the sorted states on the CEI start merge in.
        "SELECT id * 4 + CASE WHEN original_document IS NULL THEN 0 ELSE 2 END
                       + CASE WHEN status = 'open' THEN 1 ELSE 0 END,
                customer_id, currency, document_date, due_date, original_amount, open_amount
         FROM items WHERE id >= ?1 AND id < ?2 ORDER BY id",
        args![],
        s.items,
        ids,
        |r| {
            let packed = int(r, 0, "items.id")?;
            let (id, open, replacement) = (packed >> 2, packed & 1 == 1, packed & 2 == 2);
            let customer = int(r, 1, "items.customer_id")?;
            let slot = match last {
                Some((c, cur, slot))
                    if c == customer
                        && totals.currencies[cur as usize].as_bytes()
                            == &bytes(r, 2, "items.currency")?[..] =>
                {
                    slot
                }
                _ => {
                    let company = s.companies.of("items.customer_id", customer)?;
                    let cur = totals.currency(&txt(r, 2, "items.currency")?);
                    let slot = totals.slot(company, cur);
                    last = Some((customer, cur, slot));
                    slot
                }
            };
            while then.next_if(|p| p.0 < id).is_some() {}
            let on_start = then.next_if(|p| p.0 == id).map(|p| p.1);
            let a = &mut totals.rows[slot].1;
            let f = s.flags.get(id);
            let prio = f >> PRIORITY_SHIFT;
            if prio > 0 {
                a.open_cases[priority_index(Priority::from_i64(i64::from(prio)))] += 1;
            }
            let age = today - day(r, 3, "items.document_date")?;
            if age < 0 {
                // Dated after as_of: neither a sale nor a receivable yet.
                return Ok(());
            }
            let original = amount(r, 5, "items.original_amount")?;
            // A replacement re-books a sale already counted with the document it replaces.
            if !replacement {
                let k = (age / opts.period_days) as usize;
                if a.periods.len() <= k {
                    a.periods.resize(k + 1, Sum::default());
                }
                a.periods[k].add(original);
                if age < opts.dso_window_days {
                    a.sales_dso.add(original);
                }
            }
            if age < opts.cei_window_days {
                if !replacement {
                    a.sales_cei.add(original);
                }
            } else {
                a.beginning.add(on_start.unwrap_or(original));
            }
            if open {
                let open = amount(r, 6, "items.open_amount")?;
                let past_due = today - day(r, 4, "items.due_date")?;
                a.receivables.add(open);
                let bucket = opts
                    .aging_bounds
                    .iter()
                    .position(|&b| past_due <= b)
                    .unwrap_or(5);
                a.aging[bucket].add(open);
                if past_due > 0 {
                    a.overdue.add(open);
                }
                if (1 - opts.soon_days..=0).contains(&past_due) {
                    a.due_7d.add(open);
                }
            }
            Ok(())
        },
    )?;
    Ok(totals)
}

/// Runs `job` for parts `0..1 + extra.len()`: part 0 on `main` in this thread, each other
/// part on its own read connection (SQLite's) in its own thread.
fn fan_out<T: Send>(
    main: &Db,
    extra: &mut [Connection],
    job: impl Fn(&Db, usize) -> Result<T, StoreError> + Sync,
) -> Result<Vec<T>, StoreError> {
    let job = &job;
    std::thread::scope(|s| {
        let handles: Vec<_> = extra
            .iter_mut()
            .enumerate()
            .map(|(i, conn)| s.spawn(move || job(&Db::Lite(conn), i + 1)))
            .collect();
        let first = job(main, 0);
        let mut out = vec![first?];
        for h in handles {
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
        }
        Ok(out)
    })
}

/// Up to `n` more read-only connections to the store's file (none for an in-memory
/// store, fewer if they cannot be opened: the work is then split fewer ways).
fn read_connections(conn: &Connection, n: usize) -> Vec<Connection> {
    let Some(path) = conn.path().filter(|p| !p.is_empty()) else {
        return Vec::new();
    };
    (0..n)
        .map_while(|_| {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()?;
            c.busy_timeout(std::time::Duration::from_secs(10)).ok()?;
            c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()?;
            Some(c)
        })
        .collect()
}

/// What every write that can change a KPI moves: the change counter imports and API
/// writes bump, and the newest ids of the tables that only grow. Two read transactions
/// with the same mark see the same data, short of a write that touches none of these.
type Mark = (i64, i64, i64, i64, i64, i64);

/// The mark of what SQLite connection `c` sees (the first read of a read transaction
/// fixes its snapshot, WAL).
fn mark(c: &Connection) -> Result<Mark, StoreError> {
    Ok(c.query_row(
        &format!(
            "SELECT {}, (SELECT IFNULL(MAX(id), 0) FROM items),
                (SELECT IFNULL(MAX(id), 0) FROM cases), (SELECT IFNULL(MAX(id), 0) FROM payments),
                (SELECT IFNULL(MAX(id), 0) FROM audit), (SELECT IFNULL(MAX(id), 0) FROM runs)",
            crate::run_io::CHANGE_SEQ
        ),
        [],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?)
}

/// The extra read connections whose own read transaction sees the data of the main
/// connection's (its `main` mark); one that opened after a commit is closed, and the
/// work is split fewer ways. Each keeps its read transaction until it is dropped.
fn same_snapshot(main: Mark, extra: Vec<Connection>) -> Vec<Connection> {
    extra
        .into_iter()
        .filter(|c| c.execute_batch("BEGIN DEFERRED").is_ok() && mark(c).is_ok_and(|m| m == main))
        .collect()
}

/// How many ways the item and case scans are split: the cores, at most 4.
fn default_parts() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl Store {
    /// The raw KPI figures as of `scan.as_of`, every table read in one snapshot.
    pub fn kpi_figures(&self, scan: &KpiScan) -> Result<KpiFigures> {
        for (name, v) in [
            ("dso_window_days", scan.dso_window_days),
            ("cei_window_days", scan.cei_window_days),
            ("period_days", scan.period_days),
            ("soon_days", scan.soon_days),
        ] {
            if !(1..=36_600).contains(&v) {
                return Err(StoreError::Invalid(format!(
                    "{name} must be between 1 and 36600 days, not {v}"
                )));
            }
        }
        let as_of = scan.as_of;
        let cei_start = as_of
            .checked_sub_days(chrono::Days::new(scan.cei_window_days as u64))
            .ok_or_else(|| StoreError::Invalid(format!("no CEI start before {as_of}")))?
            .to_string();
        // One snapshot for every read of the pass: an import committing in between would
        // otherwise leave items whose customer was not loaded.
        self.db().read(|db| figures(db, scan, &cei_start))
    }
}

/// The pass itself, inside its snapshot.
fn figures(db: &Db, scan: &KpiScan, cei_start: &str) -> Result<KpiFigures> {
    let as_of = scan.as_of;
    let today = day_of(as_of);
    let as_of_s = as_of.to_string();

    let mut t = std::time::Instant::now();
    let mut lap = |what: &str| {
        tracing::debug!(what, ms = t.elapsed().as_millis() as u64, "kpi");
        t = std::time::Instant::now();
    };
    // On SQLite the first read, which fixes the snapshot: the read connections the scans
    // are split over are kept only if theirs is the same (see `same_snapshot`).
    let snapshot = match db {
        Db::Lite(c) => Some((*c, mark(c)?)),
        Db::Pg(_) => None,
    };
    let companies = Companies::load(db)?;
    let history_ids = match db {
        Db::Lite(_) => IdRange::ALL,
        Db::Pg(_) => IdRange::of(db, "item_history")?,
    };
    let on_start = OnStart::load(db, cei_start, &history_ids)?;
    let item_ids = IdRange::of(db, "items")?;
    let case_ids = IdRange::of(db, "cases")?;
    lap("customers and item history");

    // The item and case scans are most of the work: on SQLite split by id over read
    // connections; on PostgreSQL read on this one (see the module's header).
    let parts = scan.parts.unwrap_or(if item_ids.count < 100_000 {
        1
    } else {
        default_parts()
    });
    let mut extra = match snapshot {
        Some((c, mark)) => same_snapshot(mark, read_connections(c, parts.saturating_sub(1))),
        None => Vec::new(),
    };
    let n = 1 + extra.len();
    let case_parts = case_ids.split(n);
    let mut flags = fan_out(db, &mut extra, |db, k| {
        scan_cases(db, case_parts[k], &case_ids, &item_ids)
    })?;
    let mut all = flags.remove(0);
    for f in flags {
        all.merge(f);
    }
    let flags = all;
    lap("cases");
    let item_scan = ItemScan {
        today,
        scan,
        items: &item_ids,
        companies: &companies,
        flags: &flags,
        on_start: &on_start,
    };
    let item_parts = item_ids.split(n);
    let mut parts_totals = fan_out(db, &mut extra, |db, k| {
        scan_items(db, &item_scan, item_parts[k])
    })?;
    let mut table = parts_totals.remove(0);
    for t in parts_totals {
        table.merge(t);
    }
    drop(extra);
    lap("items");

    promises(db, scan, &as_of_s, &companies, &mut table)?;
    lap("promises");
    let (worklist, completions) = collectors(db, &as_of_s)?;
    lap("collectors");

    let mut rows: Vec<CurrencyFigures> = table
        .rows
        .into_iter()
        .map(|((company, currency), a)| CurrencyFigures {
            company: companies.names[company as usize].clone(),
            currency: table.currencies[currency as usize].clone(),
            receivables: a.receivables.value(),
            overdue: a.overdue.value(),
            aging: a.aging.map(Sum::value),
            sales_by_period: a.periods.iter().map(|p| p.value()).collect(),
            sales_in_dso_window: a.sales_dso.value(),
            sales_in_cei_window: a.sales_cei.value(),
            beginning_receivables: a.beginning.value(),
            due_soon: a.due_7d.value(),
            promised_soon: a.promised_7d,
            open_cases: a.open_cases,
            promises_kept: a.kept,
            promises_partial: a.partial,
            promises_broken: a.broken,
        })
        .collect();
    rows.sort_by(|a, b| (&a.company, &a.currency).cmp(&(&b.company, &b.currency)));
    Ok(KpiFigures {
        rows,
        worklist,
        completions,
        parts: n,
    })
}

/// Promises: judgement counts, and open promises falling due within the soon window.
fn promises(
    db: &Db,
    scan: &KpiScan,
    as_of: &str,
    companies: &Companies,
    table: &mut Totals,
) -> Result<()> {
    let today = day_of(scan.as_of);
    let soon = scan.soon_days;
    // Promises on one item: capped at its open amount, so two promises for the same
    // money are not counted twice.
    let mut per_item: HashMap<i64, (u32, String, Decimal, Decimal)> = HashMap::new();
    db.each(
        "SELECT p.customer_id, p.currency, p.amount, p.promised_on, p.status,
                c.item_id, i.status = 'open', i.currency, i.open_amount, i.document_date, i.due_date
         FROM promises p LEFT JOIN cases c ON c.id = p.case_id LEFT JOIN items i ON i.id = c.item_id
         WHERE p.created_on <= ?1",
        args![as_of],
        |r| {
            let company =
                companies.of("promises.customer_id", r.get(0, "promises.customer_id")?)?;
            let currency = txt(r, 1, "promises.currency")?;
            let status = PromiseStatus::parse(&txt(r, 4, "promises.status")?);
            let a = table.acc(company, &currency);
            match status {
                PromiseStatus::Kept => a.kept += 1,
                PromiseStatus::PartiallyKept => a.partial += 1,
                PromiseStatus::Broken => a.broken += 1,
                PromiseStatus::Open => {}
            }
            if status != PromiseStatus::Open {
                return Ok(());
            }
            let until = day(r, 3, "promises.promised_on")? - today;
            if !(0..soon).contains(&until) {
                return Ok(());
            }
            let promised = amount(r, 2, "promises.amount")?;
            let Some(item) = r.get::<Option<i64>>(5, "cases.item_id")? else {
                a.promised_7d += promised;
                return Ok(());
            };
            if r.get::<Option<bool>>(6, "items.status")? != Some(true) {
                // The item is no longer open: its money has come in (or it is gone).
                return Ok(());
            }
            let item_open = amount(r, 8, "items.open_amount")?;
            let counted_as_due = day(r, 9, "items.document_date")? <= today
                && (0..soon).contains(&(day(r, 10, "items.due_date")? - today));
            if counted_as_due {
                return Ok(());
            }
            let cap = if txt(r, 7, "items.currency")? == currency {
                item_open
            } else {
                Decimal::MAX
            };
            per_item
                .entry(item)
                .or_insert_with(|| (company, currency.to_string(), Decimal::ZERO, cap))
                .2 += promised;
            Ok(())
        },
    )?;
    for (company, currency, promised, cap) in per_item.into_values() {
        table.acc(company, &currency).promised_7d += promised.min(cap).max(Decimal::ZERO);
    }
    Ok(())
}

/// The worklist per collector and the completed activities per actor, each by name.
fn collectors(db: &Db, as_of: &str) -> Result<(Vec<WorklistLoad>, Vec<Completions>)> {
    let mut assigned: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
    let mut unassigned: Option<(i64, Decimal)> = None;
    db.each("SELECT collector, amount FROM worklist", args![], |r| {
        let e = if is_null(r, 0, "worklist.collector")? {
            unassigned.get_or_insert_default()
        } else {
            let name = txt(r, 0, "worklist.collector")?;
            if !assigned.contains_key(&name[..]) {
                assigned.insert(name.to_string(), Default::default());
            }
            assigned.get_mut(&name[..]).expect("inserted above")
        };
        e.0 += 1;
        e.1 += amount(r, 1, "worklist.amount")?;
        Ok(())
    })?;
    let worklist = unassigned
        .map(|e| (None, e))
        .into_iter()
        .chain(assigned.into_iter().map(|(name, e)| (Some(name), e)))
        .map(|(collector, (entries, amount))| WorklistLoad {
            collector,
            entries,
            amount,
        })
        .collect();
    let mut completions = Vec::new();
    // `complete_activity` writes kind `completed` with the collector as actor, and the
    // detail `promise to pay {amount} by {date}` when a promise was taken. LOWER: SQLite's
    // LIKE ignores ASCII case, PostgreSQL's does not.
    db.each(
        "SELECT actor, COUNT(*), COUNT(CASE WHEN LOWER(detail) LIKE 'promise to pay %' THEN 1 END)
         FROM case_events
         WHERE kind = 'completed' AND on_date <= ?1 GROUP BY actor ORDER BY actor",
        args![as_of],
        |r| {
            completions.push(Completions {
                actor: txt(r, 0, "case_events.actor")?.into_owned(),
                completed: r.get(1, "completions")?,
                promises_taken: r.get(2, "promises taken")?,
            });
            Ok(())
        },
    )?;
    Ok((worklist, completions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_core::domain::{Batch, ItemInput, PaymentInput};
    use arrears_core::money::Currency;
    use arrears_rules::{CasePolicy, Subcategory};
    use rust_decimal_macros::dec;

    /// SQLite only: the read connections a pass is split over must see its snapshot.
    #[test]
    fn a_pass_reads_one_snapshot_and_drops_connections_that_see_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.db");
        let s = Store::open(&path).unwrap();
        let Db::Lite(conn) = s.db() else {
            unreachable!("an SQLite store")
        };
        let count = |c: &Connection| -> i64 {
            c.query_row("SELECT COUNT(*) FROM customers", [], |r| r.get(0))
                .unwrap()
        };
        let before = read_connections(conn, 1);
        s.db()
            .read(|_| {
                // The pass's first read fixes its snapshot.
                let snap = mark(conn)?;
                // Another process imports a customer while the pass runs.
                let other = Connection::open(&path).unwrap();
                other
                    .execute(
                        "INSERT INTO customers(company, code, name) VALUES ('A', 'NEW', 'New')",
                        [],
                    )
                    .unwrap();
                assert_eq!(count(conn), 0, "the pass keeps its snapshot");
                let after = read_connections(conn, 1);
                assert_eq!(
                    same_snapshot(snap, after).len(),
                    0,
                    "opened after the commit"
                );
                // A connection opened before the commit but reading after it is dropped too.
                assert_eq!(same_snapshot(snap, before).len(), 0);
                Ok(())
            })
            .unwrap();
        assert_eq!(count(conn), 1, "the read transaction ended with the pass");
        s.db()
            .read(|_| {
                let snap = mark(conn)?;
                assert_eq!(same_snapshot(snap, read_connections(conn, 2)).len(), 2);
                Ok(())
            })
            .unwrap();
    }

    const AS_OF: &str = "2026-06-30";

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn item(
        company: &str,
        customer: &str,
        ext: &str,
        doc: &str,
        due: &str,
        original: Decimal,
        open: Decimal,
        cur: &str,
    ) -> ItemInput {
        ItemInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: company.into(),
            customer: customer.into(),
            document_no: format!("INV-{ext}"),
            document_date: d(doc),
            due_date: d(due),
            original_amount: original,
            open_amount: open,
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    /// A payment linked to the item `item_ext` (same source, as the ingest requires).
    fn pay(
        company: &str,
        ext: &str,
        item_ext: &str,
        amount: Decimal,
        cur: &str,
        value: &str,
    ) -> PaymentInput {
        PaymentInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: company.into(),
            customer: "C1".into(),
            amount,
            currency: Currency::parse(cur).unwrap(),
            value_date: d(value),
            reference: String::new(),
            item_ref: Some(item_ext.into()),
        }
    }

    fn plant(s: &mut Store, items: Vec<ItemInput>, payments: Vec<PaymentInput>) {
        s.ingest(&Batch {
            items,
            payments,
            ..Batch::default()
        })
        .unwrap();
    }

    /// Inserts a case of item `item_ext`; `closed` = Some(date) closes it as cleared then.
    fn case(s: &Store, item_ext: &str, opened: &str, closed: Option<&str>, priority: i64) -> i64 {
        s.db()
            .prepare_insert(
                "INSERT INTO cases(item_id, customer_id, status, opened_on, closed_on, close_reason, nad, priority)
                 VALUES ((SELECT id FROM items WHERE external_id = ?1),
                         (SELECT customer_id FROM items WHERE external_id = ?1), ?2, ?3, ?4, ?5, ?3, ?6)",
            )
            .unwrap()
            .insert(args![
                item_ext,
                if closed.is_some() { "closed" } else { "open" },
                opened,
                closed,
                closed.map(|_| "cleared"),
                priority
            ])
            .unwrap()
            .expect("a case")
    }

    #[allow(clippy::too_many_arguments)]
    fn promise(
        s: &Store,
        company: &str,
        case_id: Option<i64>,
        amount: &str,
        cur: &str,
        promised_on: &str,
        created_on: &str,
        status: &str,
    ) {
        s.db()
            .execute(
                "INSERT INTO promises(customer_id, case_id, amount, currency, promised_on, created_on, status)
                 VALUES ((SELECT id FROM customers WHERE company = ?1 AND code = 'C1'), ?2, ?3, ?4, ?5, ?6, ?7)",
                args![company, case_id, amount, cur, promised_on, created_on, status],
            )
            .unwrap();
    }

    /// The scan `arrears-kpi` asks for: DSO window 90 days, CEI 30, periods of 30 days,
    /// expected cash over 7, aging split at 0, 30, 60, 90 and 180 days past due.
    fn scan(as_of: NaiveDate) -> KpiScan {
        KpiScan {
            as_of,
            dso_window_days: 90,
            cei_window_days: 30,
            period_days: 30,
            soon_days: 7,
            aging_bounds: [0, 30, 60, 90, 180],
            parts: None,
        }
    }

    fn figures(s: &Store) -> KpiFigures {
        s.kpi_figures(&scan(d(AS_OF))).unwrap()
    }

    fn row<'a>(f: &'a KpiFigures, company: &str, cur: &str) -> &'a CurrencyFigures {
        f.rows
            .iter()
            .find(|c| c.company == company && c.currency == cur)
            .unwrap_or_else(|| panic!("no row {company}/{cur}"))
    }

    /// As of 2026-06-30 (DSO window 90 days: documents 2026-04-02 ..= 06-30).
    fn acme() -> Vec<ItemInput> {
        vec![
            // age 10, not yet due
            item(
                "ACME",
                "C1",
                "A",
                "2026-06-20",
                "2026-07-20",
                dec!(300),
                dec!(300),
                "EUR",
            ),
            // 16 days past due
            item(
                "ACME",
                "C1",
                "B",
                "2026-05-15",
                "2026-06-14",
                dec!(200),
                dec!(200),
                "EUR",
            ),
            // 51 days past due, half paid
            item(
                "ACME",
                "C1",
                "C",
                "2026-04-10",
                "2026-05-10",
                dec!(100),
                dec!(50),
                "EUR",
            ),
            // 91 days past due, age 121: outside the DSO window
            item(
                "ACME",
                "C1",
                "D",
                "2026-03-01",
                "2026-03-31",
                dec!(400),
                dec!(400),
                "EUR",
            ),
            // 211 days past due
            item(
                "ACME",
                "C1",
                "E",
                "2025-11-01",
                "2025-12-01",
                dec!(50),
                dec!(50),
                "EUR",
            ),
            // due today: current, and expected cash
            item(
                "ACME",
                "C1",
                "F",
                "2026-06-25",
                "2026-06-30",
                dec!(80),
                dec!(80),
                "EUR",
            ),
            // paid: a sale, no receivable
            item(
                "ACME",
                "C1",
                "G",
                "2026-06-01",
                "2026-07-03",
                dec!(120),
                dec!(0),
                "EUR",
            ),
            // dated after as_of: ignored
            item(
                "ACME",
                "C1",
                "H",
                "2026-07-05",
                "2026-08-04",
                dec!(999),
                dec!(999),
                "EUR",
            ),
            // 71 days past due, age 102
            item(
                "ACME",
                "C1",
                "I",
                "2026-03-20",
                "2026-04-20",
                dec!(60),
                dec!(60),
                "EUR",
            ),
            // another currency is another row
            item(
                "ACME",
                "C1",
                "U",
                "2026-06-10",
                "2026-07-10",
                dec!(10),
                dec!(10),
                "USD",
            ),
        ]
    }

    crate::on_both!(receivables_aging_and_sales_by_hand, |s| {
        plant(s, acme(), vec![]);
        case(s, "B", "2026-06-15", None, 2);
        case(s, "D", "2026-04-01", None, 3);
        case(s, "U", "2026-06-12", None, 3);
        let f = figures(s);
        assert_eq!(
            f.rows
                .iter()
                .map(|r| (r.company.as_str(), r.currency.as_str()))
                .collect::<Vec<_>>(),
            [("ACME", "EUR"), ("ACME", "USD")]
        );
        let eur = row(&f, "ACME", "EUR");
        // 300 + 200 + 50 + 400 + 50 + 80 + 60
        assert_eq!(eur.receivables, dec!(1140));
        assert_eq!(eur.overdue, dec!(760));
        assert_eq!(
            eur.aging,
            [
                dec!(380),
                dec!(200),
                dec!(50),
                dec!(60),
                dec!(400),
                dec!(50)
            ]
        );
        // Credit sales in the window: A 300 + B 200 + C 100 + F 80 + G 120 = 800.
        assert_eq!(eur.sales_in_dso_window, dec!(800));
        // Periods of 30 days back from as_of: 500 (A, F, G), 200 (B), 100 (C), 60 (I),
        // 400 (D), three empty, 50 (E, age 241); H is dated after as_of.
        assert_eq!(
            eur.sales_by_period,
            [
                dec!(500),
                dec!(200),
                dec!(100),
                dec!(60),
                dec!(400),
                dec!(0),
                dec!(0),
                dec!(0),
                dec!(50)
            ]
        );
        // Only F is due within as_of ..= as_of + 6 (A on day 20, G is paid).
        assert_eq!((eur.due_soon, eur.promised_soon), (dec!(80), dec!(0)));
        // CEI start 2026-05-31: beginning = B 200 + C 100 + D 400 + E 50 + I 60 = 810,
        // sales A 300 + F 80 + G 120 = 500.
        assert_eq!(eur.beginning_receivables, dec!(810));
        assert_eq!(eur.sales_in_cei_window, dec!(500));
        // Open cases per row: D high and B medium on EUR, U high on USD.
        assert_eq!(eur.open_cases, [1, 1, 0]);
        assert_eq!(
            (eur.promises_kept, eur.promises_partial, eur.promises_broken),
            (0, 0, 0)
        );

        let usd = row(&f, "ACME", "USD");
        assert_eq!(usd.receivables, dec!(10));
        assert_eq!(usd.aging[0], dec!(10));
        assert_eq!(usd.sales_by_period, [dec!(10)]);
        assert_eq!(usd.sales_in_dso_window, dec!(10));
        assert_eq!(usd.sales_in_cei_window, dec!(10));
        assert_eq!(usd.beginning_receivables, dec!(0));
        assert_eq!(usd.open_cases, [1, 0, 0]);
    });

    // A stored amount beyond the bound (from before there was one) is an error that
    // names it, not a panic of the KPI task.
    crate::on_both!(amounts_beyond_the_bound_are_named_not_a_panic, |s| {
        plant(s, acme(), vec![]);
        s.db()
            .batch(
                "UPDATE items SET original_amount = '50000000000000000000000000000', open_amount = '50000000000000000000000000000'",
            )
            .unwrap();
        let err = s.kpi_figures(&scan(d("2026-11-23"))).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("50000000000000000000000000000"),
            "{err}"
        );
    });

    crate::on_both!(a_split_document_is_one_sale, |s| {
        let original = item(
            "SPLIT",
            "C1",
            "S0",
            "2026-06-01",
            "2026-06-20",
            dec!(100),
            dec!(0),
            "EUR",
        );
        let part = |ext: &str, due: &str, amount: Decimal| ItemInput {
            original_document: Some("INV-S0".into()),
            ..item("SPLIT", "C1", ext, "2026-06-15", due, amount, amount, "EUR")
        };
        plant(
            s,
            vec![
                original,
                part("S1", "2026-06-20", dec!(60)),
                part("S2", "2026-07-15", dec!(40)),
            ],
            vec![],
        );
        case(s, "S0", "2026-06-02", Some("2026-06-16"), 2);
        let split = figures(s);
        let split = row(&split, "SPLIT", "EUR");
        assert_eq!(split.receivables, dec!(100));
        // A replacement re-books a sale already counted: 100, not 200.
        assert_eq!(split.sales_in_dso_window, dec!(100));
        assert_eq!(split.sales_in_cei_window, dec!(100));
        assert_eq!(split.sales_by_period, [dec!(100)]);
        // S1 is 10 days past due, S2 not yet due.
        assert_eq!(split.aging[..2], [dec!(40), dec!(60)]);
        assert_eq!(split.beginning_receivables, dec!(0));
    });

    crate::on_both!(old_sales_fall_in_old_periods_and_outside_the_windows, |s| {
        plant(
            s,
            vec![
                // age 545 days: period 18
                item(
                    "OLD",
                    "C1",
                    "O1",
                    "2025-01-01",
                    "2025-01-31",
                    dec!(100),
                    dec!(100),
                    "EUR",
                ),
                // interest charged on top: more open than ever sold
                item(
                    "FEES",
                    "C1",
                    "F1",
                    "2026-06-20",
                    "2026-07-20",
                    dec!(100),
                    dec!(150),
                    "EUR",
                ),
            ],
            vec![],
        );
        let f = figures(s);
        let old = row(&f, "OLD", "EUR");
        assert_eq!(old.sales_in_dso_window, dec!(0));
        // Age 545 days: 18 empty periods, then the 100 sold.
        let mut periods = vec![dec!(0); 18];
        periods.push(dec!(100));
        assert_eq!(old.sales_by_period, periods);
        assert_eq!(
            (old.beginning_receivables, old.sales_in_cei_window),
            (dec!(100), dec!(0))
        );
        assert_eq!(old.aging[0], dec!(0));
        let fees = row(&f, "FEES", "EUR");
        // Interest charged on top: more open than ever sold.
        assert_eq!(fees.receivables, dec!(150));
        assert_eq!(fees.sales_in_dso_window, dec!(100));
        assert_eq!(fees.sales_by_period, [dec!(100)]);
    });

    /// A batch of what the ERP knew on `on`.
    fn learn(s: &mut Store, on: &str, items: Vec<ItemInput>, payments: Vec<PaymentInput>) {
        s.ingest(&Batch {
            items,
            payments,
            as_of: Some(d(on)),
            ..Batch::default()
        })
        .unwrap();
    }

    crate::on_both!(cei_beginning_receivables_come_from_the_items_history, |s| {
        // (document, document date, due date, original amount)
        let docs = [
            ("P1", "2026-05-01", "2026-05-31", dec!(1000)),
            ("P2", "2026-05-10", "2026-06-09", dec!(500)),
            ("P3", "2026-04-01", "2026-05-01", dec!(300)),
            ("P4", "2026-04-05", "2026-05-05", dec!(200)),
            ("P5", "2026-03-01", "2026-03-31", dec!(100)),
            ("P6", "2026-05-20", "2026-06-19", dec!(250)),
            ("P7", "2026-06-10", "2026-07-10", dec!(600)),
            ("P8", "2026-06-05", "2026-06-25", dec!(400)),
            ("P9", "2026-05-25", "2026-06-24", dec!(80)),
            ("P10", "2026-05-01", "2026-05-31", dec!(50)),
            ("P11", "2026-04-01", "2026-05-01", dec!(90)),
        ];
        let open = |ext: &str, left: Decimal| {
            let &(_, doc, due, original) = docs.iter().find(|x| x.0 == ext).unwrap();
            item("BETA", "C1", ext, doc, due, original, left, "EUR")
        };
        let born = |ext: &str| {
            let original = docs.iter().find(|x| x.0 == ext).unwrap().3;
            open(ext, original)
        };
        // What the ERP reported, day by day; a payment it links is dated by its
        // value date, anything else by the day it was reported.
        learn(
            s,
            "2026-04-01",
            ["P3", "P4", "P5", "P11"].map(born).to_vec(),
            vec![],
        );
        learn(s, "2026-05-01", vec![born("P1"), born("P10")], vec![]);
        learn(
            s,
            "2026-05-10",
            vec![born("P2"), open("P10", dec!(0))],
            vec![pay("BETA", "y6", "P10", dec!(50), "EUR", "2026-05-10")],
        );
        learn(s, "2026-05-15", vec![open("P3", dec!(0))], vec![]);
        learn(
            s,
            "2026-05-20",
            vec![open("P2", dec!(400)), born("P6")],
            vec![pay("BETA", "y2", "P2", dec!(100), "EUR", "2026-05-18")],
        );
        learn(
            s,
            "2026-05-25",
            vec![born("P9"), open("P5", dec!(0))],
            vec![],
        );
        // P5 open again (a payment returned).
        learn(
            s,
            "2026-05-30",
            vec![open("P6", dec!(0)), born("P5")],
            vec![pay("BETA", "y3", "P6", dec!(250), "EUR", "2026-05-30")],
        );
        learn(s, "2026-06-05", vec![born("P8")], vec![]);
        learn(
            s,
            "2026-06-10",
            vec![born("P7"), open("P4", dec!(0))],
            vec![],
        );
        learn(
            s,
            "2026-06-15",
            vec![open("P1", dec!(400))],
            vec![pay("BETA", "y1", "P1", dec!(600), "EUR", "2026-06-14")],
        );
        learn(
            s,
            "2026-06-20",
            vec![open("P8", dec!(0))],
            vec![pay("BETA", "y4", "P8", dec!(400), "EUR", "2026-06-20")],
        );
        // Learned late: P11 was paid before the start.
        learn(
            s,
            "2026-06-25",
            vec![open("P11", dec!(0))],
            vec![pay("BETA", "y7", "P11", dec!(90), "EUR", "2026-05-28")],
        );
        case(s, "P5", "2026-04-20", None, 3);
        case(s, "P7", "2026-06-11", None, 2);
        let f = figures(s);
        let b = row(&f, "BETA", "EUR");
        // On the start (2026-05-31), of the documents dated by then: P1 1000 (paid
        // after), P2 400, P3 0 (cleared 05-15), P4 200 (cleared 06-10), P5 100
        // (cleared 05-25, open again 05-30), P6 0, P9 80, P10 0, P11 0 (paid 05-28,
        // learned 06-25) = 1780. Sales 600 + 400 = 1000; ending 400 + 400 + 100 + 600
        // + 80 = 1580, of it current 600.
        assert_eq!(b.beginning_receivables, dec!(1780));
        assert_eq!(b.sales_in_cei_window, dec!(1000));
        assert_eq!(b.receivables, dec!(1580));
        assert_eq!(b.aging[0], dec!(600));
        assert_eq!(b.open_cases, [1, 1, 0]);
        // A 61-day window starts on 2026-04-30, before any change: each document
        // dated by then at its original amount, P3 300 + P4 200 + P5 100 + P11 90 =
        // 690; sales P1 1000 + P2 500 + P6 250 + P7 600 + P8 400 + P9 80 + P10 50 = 2880.
        let wide = s
            .kpi_figures(&KpiScan {
                cei_window_days: 61,
                ..scan(d(AS_OF))
            })
            .unwrap();
        let w = row(&wide, "BETA", "EUR");
        assert_eq!(w.beginning_receivables, dec!(690));
        assert_eq!(w.sales_in_cei_window, dec!(2880));
        // A 36-day window from 2026-05-25: P1 1000 + P2 400 (paid 05-18) + P4 200
        // + P5 0 (cleared that day) + P6 250 + P9 80 (dated that day) + P11 90 (paid
        // 05-28, after it) = 2020.
        let w = s
            .kpi_figures(&KpiScan {
                cei_window_days: 36,
                ..scan(d(AS_OF))
            })
            .unwrap();
        assert_eq!(row(&w, "BETA", "EUR").beginning_receivables, dec!(2020));
    });

    crate::on_both!(promises_and_expected_cash, |s| {
        let items = vec![
            // due on the last day of the 7 (as_of + 6)
            item(
                "GAMMA",
                "C1",
                "Q1",
                "2026-06-01",
                "2026-07-06",
                dec!(100),
                dec!(100),
                "EUR",
            ),
            // due the day after
            item(
                "GAMMA",
                "C1",
                "Q2",
                "2026-06-01",
                "2026-07-07",
                dec!(200),
                dec!(200),
                "EUR",
            ),
            item(
                "GAMMA",
                "C1",
                "Q3",
                "2026-05-01",
                "2026-05-31",
                dec!(300),
                dec!(300),
                "EUR",
            ),
            item(
                "GAMMA",
                "C1",
                "Q4",
                "2026-06-01",
                "2026-07-01",
                dec!(50),
                dec!(50),
                "EUR",
            ),
            item(
                "GAMMA",
                "C1",
                "Q5",
                "2026-05-01",
                "2026-05-31",
                dec!(80),
                dec!(0),
                "EUR",
            ),
        ];
        plant(s, items, vec![]);
        let c3 = case(s, "Q3", "2026-06-01", None, 1);
        let c4 = case(s, "Q4", "2026-06-02", None, 2);
        let c5 = case(s, "Q5", "2026-06-01", Some("2026-06-20"), 2);
        // Two promises on Q3 (120 + 250) are capped at its open 300.
        promise(
            s,
            "GAMMA",
            Some(c3),
            "120",
            "EUR",
            "2026-07-02",
            "2026-06-20",
            "open",
        );
        promise(
            s,
            "GAMMA",
            Some(c3),
            "250",
            "EUR",
            "2026-07-05",
            "2026-06-25",
            "open",
        );
        // Q4 is already counted by its due date.
        promise(
            s,
            "GAMMA",
            Some(c4),
            "50",
            "EUR",
            "2026-07-03",
            "2026-06-20",
            "open",
        );
        // Q5 is paid: its promise brings nothing more.
        promise(
            s,
            "GAMMA",
            Some(c5),
            "80",
            "EUR",
            "2026-07-01",
            "2026-06-10",
            "open",
        );
        // Without a case: in the window, after it, already past (not yet judged).
        promise(
            s,
            "GAMMA",
            None,
            "40",
            "EUR",
            "2026-07-06",
            "2026-06-20",
            "open",
        );
        promise(
            s,
            "GAMMA",
            None,
            "60",
            "EUR",
            "2026-07-07",
            "2026-06-20",
            "open",
        );
        promise(
            s,
            "GAMMA",
            None,
            "70",
            "EUR",
            "2026-06-29",
            "2026-06-20",
            "open",
        );
        for status in ["kept", "kept", "kept", "kept", "partially_kept", "broken"] {
            promise(
                s,
                "GAMMA",
                None,
                "10",
                "EUR",
                "2026-05-01",
                "2026-04-20",
                status,
            );
        }
        // Made after as_of: not counted.
        promise(
            s,
            "GAMMA",
            None,
            "10",
            "EUR",
            "2026-07-02",
            "2026-07-01",
            "kept",
        );
        let f = figures(s);
        let g = row(&f, "GAMMA", "EUR");
        assert_eq!(
            (g.promises_kept, g.promises_partial, g.promises_broken),
            (4, 1, 1)
        );
        // Due: Q1 100 + Q4 50; promised: Q3 300 (capped) + 40.
        assert_eq!(g.due_soon, dec!(150));
        assert_eq!(g.promised_soon, dec!(340));
        assert_eq!(g.open_cases, [0, 1, 1]);
    });

    crate::on_both!(collectors_from_the_worklist_and_the_case_history, |s| {
        let items = vec![
            item(
                "ACME",
                "C1",
                "K1",
                "2026-05-01",
                "2026-05-31",
                dec!(500),
                dec!(500),
                "EUR",
            ),
            item(
                "ACME",
                "C2",
                "K2",
                "2026-05-01",
                "2026-05-31",
                dec!(300),
                dec!(300),
                "EUR",
            ),
            item(
                "ACME",
                "C3",
                "K3",
                "2026-05-01",
                "2026-05-31",
                dec!(100),
                dec!(100),
                "EUR",
            ),
        ];
        plant(s, items, vec![]);
        let k1 = case(s, "K1", "2026-06-01", None, 2);
        let k2 = case(s, "K2", "2026-06-01", None, 2);
        let k3 = case(s, "K3", "2026-06-01", None, 2);
        let policy = CasePolicy {
            initial_nad_days: 3,
            high_amount: dec!(10000),
            high_days_overdue: 60,
        };
        let call = Subcategory {
            name: "call".into(),
            days_to_complete: 2,
            instruction: String::new(),
        };
        // The real case operations write the history the KPIs read.
        s.set_activity(k1, "contact", &call, d("2026-06-20"), "alice", &policy)
            .unwrap();
        s.complete_activity(
            k1,
            d("2026-06-21"),
            "alice",
            Some((d("2026-07-03"), dec!(200))),
            &policy,
        )
        .unwrap();
        s.add_note(k1, d("2026-06-22"), "alice", "called back", &policy)
            .unwrap();
        s.set_activity(k2, "contact", &call, d("2026-06-20"), "bob", &policy)
            .unwrap();
        s.complete_activity(k2, d("2026-06-22"), "bob", None, &policy)
            .unwrap();
        s.set_activity(k3, "contact", &call, d("2026-06-29"), "bob", &policy)
            .unwrap();
        // After as_of: not counted.
        s.complete_activity(k3, d("2026-07-01"), "bob", None, &policy)
            .unwrap();
        for (code, collector, amount) in [
            ("C1", Some("alice"), dec!(100.50)),
            ("C2", Some("alice"), dec!(200.25)),
            ("C3", None, dec!(50)),
        ] {
            s.db()
                .execute(
                    "INSERT INTO worklist(customer_id, collection_group, collector, score, priority, nad, items, amount, reason)
                     VALUES ((SELECT id FROM customers WHERE code = ?1), 'g', ?2, ?3, 2, ?4, 1, ?5, 'due')",
                    args![code, collector, dec!(1), d("2026-06-30"), amount],
                )
                .unwrap();
        }
        let f = figures(s);
        let worklist: Vec<(Option<&str>, i64, Decimal)> = f
            .worklist
            .iter()
            .map(|w| (w.collector.as_deref(), w.entries, w.amount))
            .collect();
        assert_eq!(
            worklist,
            [(None, 1, dec!(50)), (Some("alice"), 2, dec!(300.75))]
        );
        let completions: Vec<(&str, i64, i64)> = f
            .completions
            .iter()
            .map(|c| (c.actor.as_str(), c.completed, c.promises_taken))
            .collect();
        assert_eq!(completions, [("alice", 1, 1), ("bob", 1, 0)]);
        // The promise alice took is open and falls due within the 7 days.
        let acme = row(&f, "ACME", "EUR");
        assert_eq!(acme.promised_soon, dec!(200));
        assert_eq!(acme.open_cases, [0, 3, 0]);
    });

    crate::on_both!(an_empty_store_has_no_rows_and_bad_input_is_refused, |s| {
        plant(s, vec![], vec![]);
        let f = figures(s);
        assert!(f.rows.is_empty() && f.worklist.is_empty() && f.completions.is_empty());
        assert_eq!(f.parts, 1);
        for bad in [
            KpiScan {
                dso_window_days: 0,
                ..scan(d(AS_OF))
            },
            KpiScan {
                period_days: 0,
                ..scan(d(AS_OF))
            },
            KpiScan {
                soon_days: 36_601,
                ..scan(d(AS_OF))
            },
        ] {
            assert!(
                matches!(s.kpi_figures(&bad), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
        // A window reaching before the calendar's first day is refused, not a panic.
        let early = KpiScan {
            cei_window_days: 36_600,
            ..scan(NaiveDate::MIN)
        };
        assert!(matches!(s.kpi_figures(&early), Err(StoreError::Invalid(_))));
    });

    /// SQLite only: PostgreSQL's DATE column cannot hold a date that does not exist.
    #[test]
    fn a_corrupt_date_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("kpi.db")).unwrap();
        s.db()
            .batch(
                "INSERT INTO customers(id, company, code, name) VALUES (1, 'C', 'X', 'x');
                 INSERT INTO items(source, external_id, customer_id, document_no, document_date, due_date, original_amount, open_amount, currency)
                   VALUES ('s', 'e', 1, 'D', '2026-13-01', '2026-01-31', '1', '1', 'EUR');",
            )
            .unwrap();
        match s.kpi_figures(&scan(d(AS_OF))) {
            Err(StoreError::Corrupt { column, value }) => {
                assert_eq!(
                    (column, value.as_str()),
                    ("items.document_date", "2026-13-01")
                )
            }
            other => panic!("expected a corrupt-value error, got {other:?}"),
        }
    }

    // The fast paths must agree exactly with the store's parsers and `Decimal` addition.
    crate::on_both!(fast_parsing_and_summing_match_decimal, |s| {
        plant(s, vec![], vec![]);
        // The same parsers over SQLite's borrowed text and PostgreSQL's.
        let parse = |text: &str| {
            let mut out = None;
            s.db()
                .each("SELECT CAST(?1 AS TEXT)", args![text], |r| {
                    out = Some((amount(r, 0, "t").ok(), day(r, 0, "t").ok()));
                    Ok(())
                })
                .unwrap();
            out.expect("a row")
        };
        for text in [
            "0",
            "1157.40",
            "-12.5",
            "100",
            "0.000000000000000001",
            "123456789012345678",
            "1234567890123456789",
            "99999999999999999999.99",
            "-0.00",
            "1e3",
            ".5",
            "5.",
            "+5",
            " 5",
            "1.2.3",
            "-",
        ] {
            let expected: Option<Decimal> = text
                .parse()
                .ok()
                .filter(|d| arrears_core::money::check_bound(*d).is_ok());
            let got = parse(text).0;
            assert_eq!(got, expected, "{text}");
            if let (Some(g), Some(e)) = (got, expected) {
                assert_eq!(g.scale(), e.scale(), "{text}");
            }
        }
        for text in [
            "2026-06-30",
            "0001-01-01",
            "2024-02-29",
            "2026-02-29",
            "2026-6-3",
            "x",
        ] {
            let expected = text.parse::<NaiveDate>().ok().map(day_of);
            assert_eq!(parse(text).1, expected, "{text}");
        }
        let amounts = [
            dec!(1.5),
            dec!(100),
            dec!(-0.25),
            dec!(0.001),
            dec!(12345678901234567890.12),
            dec!(7.9e27),
            dec!(-7.9e27),
            dec!(3),
            dec!(0.0000000001),
        ];
        let mut sum = Sum::default();
        let mut plain = Decimal::ZERO;
        for a in amounts {
            sum.add(a);
            plain += a;
            assert_eq!(sum.value(), plain);
        }
    });

    /// Items, payments, cases, promises, the worklist and completions of one portfolio,
    /// the same on either database. Most amounts are 0.10, which a floating-point sum
    /// gets wrong; a few carry other scales (10.50, 3.1), which the figures keep.
    fn portfolio(s: &mut Store) {
        let as_of = d(AS_OF);
        let mut items = Vec::new();
        let mut payments = Vec::new();
        for k in 0..1000u64 {
            let doc = as_of - chrono::Days::new(k % 300);
            let ext = format!("T{k}");
            let mut it = item(
                "ACME",
                &format!("C{}", k % 10),
                &ext,
                &doc.to_string(),
                &(doc + chrono::Days::new(30)).to_string(),
                dec!(0.10),
                if k % 4 == 0 { dec!(0.00) } else { dec!(0.10) },
                "EUR",
            );
            if k % 50 == 1 {
                it.original_document = Some("INV-T0".into());
            }
            items.push(it);
            if k % 5 == 0 {
                payments.push(PaymentInput {
                    customer: format!("C{}", k % 10),
                    ..pay(
                        "ACME",
                        &format!("Y{k}"),
                        &ext,
                        dec!(0.10),
                        "EUR",
                        "2026-05-01",
                    )
                });
            }
        }
        for (k, amount) in [dec!(10.50), dec!(3.1), dec!(0.10), dec!(7)]
            .iter()
            .enumerate()
        {
            items.push(item(
                "BETA",
                "C1",
                &format!("U{k}"),
                "2026-06-01",
                "2026-06-20",
                *amount,
                *amount,
                "USD",
            ));
        }
        plant(s, items, payments);
        let mut cases = Vec::new();
        for k in (0..1000).step_by(3) {
            let closed = (k % 2 == 0).then_some("2026-05-20");
            cases.push(case(s, &format!("T{k}"), "2026-05-01", closed, 1 + k % 3));
        }
        for (n, &c) in cases.iter().enumerate().take(40) {
            promise(
                s,
                "ACME",
                Some(c),
                "0.10",
                "EUR",
                "2026-07-02",
                "2026-06-20",
                ["open", "kept", "broken", "partially_kept"][n % 4],
            );
            let detail = if n % 3 == 0 {
                "promise to pay 0.10 by 2026-07-02"
            } else {
                "called"
            };
            s.db()
                .execute(
                    "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, 'completed', ?3, ?4)",
                    args![c, d("2026-06-20"), ["alice", "bob", "Carol"][n % 3], detail],
                )
                .unwrap();
        }
        for k in 0..10 {
            s.db()
                .execute(
                    "INSERT INTO worklist(customer_id, collection_group, collector, score, priority, nad, items, amount, reason)
                     VALUES ((SELECT id FROM customers WHERE company = 'ACME' AND code = ?1), 'g', ?2, ?3, 2, ?4, 1, ?5, 'due')",
                    args![
                        format!("C{k}"),
                        (k % 3 != 0).then_some("alice"),
                        dec!(1),
                        d("2026-06-30"),
                        dec!(0.10)
                    ],
                )
                .unwrap();
        }
    }

    /// One portfolio gives the same figures, to the last digit and scale, on SQLite split
    /// three ways and on PostgreSQL (in one connection, read in windows), and they are
    /// the exact sums, not floating-point ones.
    #[test]
    fn both_databases_give_the_same_figures() {
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Store::open(&dir.path().join("kpi.db")).unwrap();
        let mut pg = crate::pg::testing::store();
        portfolio(&mut lite);
        portfolio(&mut pg);
        let three = KpiScan {
            parts: Some(3),
            ..scan(d(AS_OF))
        };
        let a = lite.kpi_figures(&three).unwrap();
        let b = pg.kpi_figures(&three).unwrap();
        assert_eq!(
            (a.parts, b.parts),
            (3, 1),
            "PostgreSQL reads in one connection"
        );
        // Debug shows each amount's scale too, which `==` on `Decimal` ignores.
        let shown = |f: &KpiFigures| format!("{:?}", (&f.rows, &f.worklist, &f.completions));
        assert_eq!(shown(&a), shown(&b));
        assert_eq!(
            (&a.rows, &a.worklist, &a.completions),
            (&b.rows, &b.worklist, &b.completions)
        );

        let acme = row(&b, "ACME", "EUR");
        // 750 open items of 0.10: a floating-point sum is not 75.
        assert_ne!((0..750).map(|_| 0.1f64).sum::<f64>(), 75.0);
        assert_eq!(acme.receivables.to_string(), "75.00");
        // 980 sales (20 replacements left out), all within 300 days.
        assert_eq!(acme.sales_by_period.iter().sum::<Decimal>(), dec!(98.00));
        let usd = row(&b, "BETA", "USD");
        assert_eq!(usd.receivables.to_string(), "20.70");
        assert_eq!(usd.aging[1].to_string(), "20.70");
        assert_eq!(
            (
                acme.promises_kept,
                acme.promises_partial,
                acme.promises_broken
            ),
            (10, 10, 10)
        );
        let worklist: Vec<(Option<&str>, i64, String)> = b
            .worklist
            .iter()
            .map(|w| (w.collector.as_deref(), w.entries, w.amount.to_string()))
            .collect();
        assert_eq!(
            worklist,
            [(None, 4, "0.40".into()), (Some("alice"), 6, "0.60".into())]
        );
        // By name, bytewise ("Carol" before "alice"); a promise taken in every third.
        let completions: Vec<(&str, i64, i64)> = b
            .completions
            .iter()
            .map(|c| (c.actor.as_str(), c.completed, c.promises_taken))
            .collect();
        assert_eq!(
            completions,
            [("Carol", 13, 0), ("alice", 14, 14), ("bob", 13, 0)]
        );
    }
}
