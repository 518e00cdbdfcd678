//! The cash forecast: what will come in on each of the next days, per company and
//! currency, from the items open today weighted by how each customer has paid, and
//! from open promises weighted by how each customer keeps them; and its back-test,
//! which replays the stored history from earlier days, forecasts from what was
//! known then, and compares with what came in. `docs/REPORTS.md` ("forecast")
//! writes the model out.
//!
//! Everything is computed from the items' history in memory: one read of the
//! items and promises, then any number of forecast days.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use arrears_core::domain::ChangeCause;
use arrears_store::{ItemLife, PromiseLife};

/// How far back a customer's behaviour is measured.
pub const LOOKBACK_DAYS: i64 = 365;
/// An item is old enough to say whether it was paid once it is this many days past due.
pub const SETTLED_AFTER_DAYS: i64 = 60;
/// A customer with fewer settled items than this is measured with the company's.
pub const MIN_ITEMS: usize = 3;
/// Late items are expected month by month, at the rate items as late were
/// collected in the month before.
pub const MONTH: i64 = 30;
/// The days of invoicing whose average rate stands for the invoices to come.
pub const RUN_RATE_DAYS: i64 = 91;

/// Reductions of an item's open amount that are money coming in.
fn collecting(c: ChangeCause) -> bool {
    matches!(
        c,
        ChangeCause::Payment | ChangeCause::Erp | ChangeCause::Snapshot
    )
}

/// The money an item brought in, by day: each day on which its open amount went
/// down by a collection, and by how much.
pub fn collections(it: &ItemLife) -> Vec<(NaiveDate, Decimal)> {
    let mut days: Vec<NaiveDate> = it.changes.iter().map(|c| c.on).collect();
    days.sort_unstable();
    days.dedup();
    let mut out = Vec::new();
    for d in days {
        // What the day's last written change said, against the day before.
        let Some(cause) = it.changes.iter().rev().find(|c| c.on == d).map(|c| c.cause) else {
            continue;
        };
        let before = d.pred_opt().map_or(it.original, |p| {
            if p < it.document_date {
                it.original
            } else {
                it.open_on(p)
            }
        });
        let drop = before - it.open_on(d);
        if drop > Decimal::ZERO && collecting(cause) {
            out.push((d, drop));
        }
    }
    out
}

/// How a customer pays, measured on one day from what was known then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// Amount-weighted average days from due date to payment.
    pub delay_days: i64,
    /// Of what fell due (and is old enough to tell), the share paid.
    pub share_paid: Decimal,
    /// Of promises judged, the share kept (a partly kept one counts half).
    pub kept: Decimal,
}

#[derive(Default, Clone)]
struct Tally {
    settled_items: usize,
    due: Decimal,
    paid: Decimal,
    delay_weight: Decimal,
    delay_sum: Decimal,
    judged: u64,
    kept_halves: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.settled_items += o.settled_items;
        self.due += o.due;
        self.paid += o.paid;
        self.delay_weight += o.delay_weight;
        self.delay_sum += o.delay_sum;
        self.judged += o.judged;
        self.kept_halves += o.kept_halves;
    }
}

/// The book the forecast works on: items and promises with the company of each
/// customer, and the money each item brought in (worked out once).
pub struct Book<'a> {
    items: &'a [ItemLife],
    promises: &'a [PromiseLife],
    company: &'a HashMap<i64, String>,
    paid: Vec<Vec<(NaiveDate, Decimal)>>,
}

/// Lateness buckets in days past due: 1–30, 31–90, over 90.
fn bucket(days_late: i64) -> usize {
    match days_late {
        ..=30 => 0,
        31..=90 => 1,
        _ => 2,
    }
}

/// How one company's invoices in one currency turn into cash (see [`Book::flows`]).
struct Flow {
    invoiced: Decimal,
    /// Collected `l` days after the document date, for l = 0..=horizon.
    lag: Vec<Decimal>,
    recent: Decimal,
    late_open: [Decimal; 3],
    late_paid: [Decimal; 3],
}

impl Flow {
    fn new(horizon: usize) -> Flow {
        Flow {
            invoiced: Decimal::ZERO,
            lag: vec![Decimal::ZERO; horizon + 1],
            recent: Decimal::ZERO,
            late_open: [Decimal::ZERO; 3],
            late_paid: [Decimal::ZERO; 3],
        }
    }

    /// The share of what was that late that came in within a month.
    fn late_rate(&self, bucket: usize) -> Decimal {
        if self.late_open[bucket] > Decimal::ZERO {
            (self.late_paid[bucket] / self.late_open[bucket]).min(Decimal::ONE)
        } else {
            Decimal::ZERO
        }
    }
}

/// Items and promises of the customers kept, and each kept customer's company.
pub type Facts = (Vec<ItemLife>, Vec<PromiseLife>, HashMap<i64, String>);

/// The book for forecasts made from `since` on: the items and promises of a year
/// before it (the habits' look-back) on, of the customers `company` keeps (it
/// names their company, `None` leaves one out).
pub fn facts(
    store: &arrears_store::Store,
    since: NaiveDate,
    company: impl Fn(i64) -> Option<String>,
) -> Result<Facts, arrears_store::StoreError> {
    let lookback = since
        .checked_sub_days(chrono::Days::new(LOOKBACK_DAYS as u64))
        .unwrap_or(NaiveDate::MIN);
    let mut companies = HashMap::new();
    let mut keep = |customer: i64| match company(customer) {
        Some(c) => {
            companies.insert(customer, c);
            true
        }
        None => false,
    };
    let items: Vec<_> = store
        .item_lives(lookback)?
        .into_iter()
        .filter(|i| keep(i.customer_id))
        .collect();
    let promises: Vec<_> = store
        .promise_lives(lookback)?
        .into_iter()
        .filter(|p| keep(p.customer_id))
        .collect();
    Ok((items, promises, companies))
}

/// (company, currency) → expected amount for each day `on + 1 ..= on + horizon`.
pub type Daily = BTreeMap<(String, String), Vec<Decimal>>;

impl<'a> Book<'a> {
    pub fn new(
        items: &'a [ItemLife],
        promises: &'a [PromiseLife],
        company: &'a HashMap<i64, String>,
    ) -> Book<'a> {
        Book {
            items,
            promises,
            company,
            paid: items.iter().map(collections).collect(),
        }
    }

    fn company_of(&self, customer: i64) -> String {
        self.company.get(&customer).cloned().unwrap_or_default()
    }

    /// Each customer's behaviour on `on`, a company's where a customer has too
    /// little history, and paying everything on time where a company has none.
    fn behaviour(&self, on: NaiveDate) -> impl Fn(i64) -> Behaviour + '_ {
        let from = on - chrono::Days::new(LOOKBACK_DAYS as u64);
        let settled_by = on - chrono::Days::new(SETTLED_AFTER_DAYS as u64);
        let mut by_customer: HashMap<i64, Tally> = HashMap::new();
        for (it, paid) in self.items.iter().zip(&self.paid) {
            if it.due_date < from || it.due_date > on {
                continue;
            }
            let t = by_customer.entry(it.customer_id).or_default();
            // Only items old enough to tell: among recent ones only the early
            // payments are in yet, which would make every customer look punctual.
            if it.due_date > settled_by {
                continue;
            }
            let paid: Vec<_> = paid.iter().filter(|(d, _)| *d <= on).collect();
            for (d, a) in &paid {
                t.delay_weight += *a;
                t.delay_sum += *a * Decimal::from((*d - it.due_date).num_days());
            }
            if it.original > Decimal::ZERO {
                t.settled_items += 1;
                t.due += it.original;
                t.paid += paid.iter().map(|p| p.1).sum::<Decimal>();
            }
        }
        for p in self.promises {
            if p.judged_on.is_none_or(|j| j > on) {
                continue;
            }
            let t = by_customer.entry(p.customer_id).or_default();
            t.judged += 1;
            t.kept_halves += match p.status.as_str() {
                "kept" => 2,
                "partially_kept" => 1,
                _ => 0,
            };
        }
        let mut by_company: HashMap<String, Tally> = HashMap::new();
        for (c, t) in &by_customer {
            by_company.entry(self.company_of(*c)).or_default().add(t);
        }
        move |customer: i64| {
            let own = by_customer.get(&customer).cloned().unwrap_or_default();
            let company = by_company
                .get(&self.company_of(customer))
                .cloned()
                .unwrap_or_default();
            let pick = |enough: bool| if enough { &own } else { &company };
            let d = pick(own.settled_items >= MIN_ITEMS);
            let share_paid = if d.due > Decimal::ZERO {
                (d.paid / d.due).min(Decimal::ONE)
            } else {
                Decimal::ONE
            };
            let delay_days = if d.delay_weight > Decimal::ZERO {
                (d.delay_sum / d.delay_weight)
                    .round()
                    .try_into()
                    .unwrap_or(0i64)
            } else {
                0
            };
            let p = pick(own.judged >= MIN_ITEMS as u64);
            let kept = if p.judged > 0 {
                Decimal::from(p.kept_halves) / Decimal::from(2 * p.judged)
            } else {
                Decimal::new(5, 1)
            };
            Behaviour {
                delay_days,
                share_paid,
                kept,
            }
        }
    }

    /// Per company and currency, measured on `on`: how invoices turn into cash
    /// (the share of an invoiced amount collected each number of days after its
    /// document date, over invoices old enough to have been watched that long),
    /// the recent daily invoicing, and the month's collection rate of late items
    /// by how late they were.
    fn flows(&self, on: NaiveDate, horizon: i64) -> HashMap<(String, String), Flow> {
        let h = horizon.max(0) as usize;
        let from = on - chrono::Duration::days(LOOKBACK_DAYS);
        let watched_until = on - chrono::Duration::days(horizon + 1);
        let recent = on - chrono::Duration::days(RUN_RATE_DAYS);
        let base = on - chrono::Duration::days(MONTH);
        let mut out: HashMap<(String, String), Flow> = HashMap::new();
        for (it, paid) in self.items.iter().zip(&self.paid) {
            let f = out
                .entry((self.company_of(it.customer_id), it.currency.clone()))
                .or_insert_with(|| Flow::new(h));
            if it.document_date >= from && it.document_date <= watched_until {
                f.invoiced += it.original;
                for &(d, a) in paid {
                    let lag = (d - it.document_date).num_days();
                    if d <= on && (0..=horizon).contains(&lag) {
                        f.lag[lag as usize] += a;
                    }
                }
            }
            if it.document_date > recent && it.document_date <= on {
                f.recent += it.original;
            }
            if it.document_date <= base {
                let owed = it.open_on(base);
                let late = (base - it.due_date).num_days();
                if owed > Decimal::ZERO && late > 0 {
                    let b = bucket(late);
                    f.late_open[b] += owed;
                    f.late_paid[b] += paid
                        .iter()
                        .filter(|(d, _)| *d > base && *d <= on)
                        .map(|p| p.1)
                        .sum::<Decimal>();
                }
            }
        }
        out
    }

    /// The forecast made on `on` for the next `horizon` days, from what was known
    /// that day.
    pub fn forecast(&self, on: NaiveDate, horizon: i64) -> Daily {
        let behaviour = self.behaviour(on);
        let mut out: Daily = BTreeMap::new();
        let days = horizon.max(0) as usize;
        let mut add = |company: String, currency: &str, day: NaiveDate, amount: Decimal| {
            let k = (day - on).num_days();
            if k < 1 || k > horizon {
                return;
            }
            out.entry((company, currency.to_string()))
                .or_insert_with(|| vec![Decimal::ZERO; days])[(k - 1) as usize] += amount;
        };
        // Promises open that day: expected on their date, as the customer keeps
        // them; the items they cover are expected by the promise, not their due date.
        let mut covered: HashMap<i64, Decimal> = HashMap::new();
        let open_on: HashMap<i64, &ItemLife> = self.items.iter().map(|i| (i.id, i)).collect();
        for p in self.promises {
            let open =
                p.created_on <= on && p.promised_on > on && p.judged_on.is_none_or(|j| j > on);
            if !open {
                continue;
            }
            // What the promise still stands for: what its items owe that day, up
            // to the promised amount (part may have come in already).
            let mut left = p.amount;
            for id in &p.items {
                let owed = open_on.get(id).map_or(Decimal::ZERO, |i| i.open_on(on));
                let c = covered.entry(*id).or_default();
                let take = (owed - *c).max(Decimal::ZERO).min(left);
                *c += take;
                left -= take;
            }
            let b = behaviour(p.customer_id);
            add(
                self.company_of(p.customer_id),
                &p.currency,
                p.promised_on,
                (p.amount - left) * b.kept,
            );
        }
        let flows = self.flows(on, horizon);
        for it in self.items {
            if it.document_date > on {
                continue;
            }
            let owed = it.open_on(on) - covered.get(&it.id).copied().unwrap_or_default();
            if owed <= Decimal::ZERO {
                continue;
            }
            let b = behaviour(it.customer_id);
            let expected = it.due_date + chrono::Duration::days(b.delay_days);
            let company = self.company_of(it.customer_id);
            // Not late while the customer's habit or the due date is still ahead
            // (an early payer's habit may already have passed).
            if expected > on || it.due_date >= on {
                let day = expected.max(on + chrono::Duration::days(1));
                add(company, &it.currency, day, owed * b.share_paid);
                continue;
            }
            // Later than the customer usually pays: month by month, at the rate
            // items as late were collected in the month before `on`.
            let flow = &flows[&(company.clone(), it.currency.clone())];
            let mut left = owed;
            let mut late = (on - it.due_date).num_days().max(1);
            let mut month = 0;
            while month * MONTH < horizon {
                let got = left * flow.late_rate(bucket(late));
                let per_day = got / Decimal::from(MONTH);
                for k in 1..=MONTH {
                    add(
                        company.clone(),
                        &it.currency,
                        on + chrono::Duration::days(month * MONTH + k),
                        per_day,
                    );
                }
                left -= got;
                late += MONTH;
                month += 1;
            }
        }
        // Invoices not written yet: the recent daily invoicing, turned into cash
        // as past invoices were.
        for ((company, currency), flow) in &flows {
            if flow.invoiced <= Decimal::ZERO || flow.recent <= Decimal::ZERO {
                continue;
            }
            let daily = flow.recent / Decimal::from(RUN_RATE_DAYS);
            let share: Vec<Decimal> = flow.lag.iter().map(|l| *l / flow.invoiced).collect();
            for k in 1..=horizon {
                // Invoices of days 1..=k after `on`, each `k - j` days old on day k.
                let part: Decimal = (1..=k).map(|j| share[(k - j) as usize]).sum();
                add(
                    company.clone(),
                    currency,
                    on + chrono::Duration::days(k),
                    daily * part,
                );
            }
        }
        out
    }

    /// What came in on each of the days `on + 1 ..= on + horizon`.
    pub fn actual(&self, on: NaiveDate, horizon: i64) -> Daily {
        let mut out: Daily = BTreeMap::new();
        let days = horizon.max(0) as usize;
        for (it, paid) in self.items.iter().zip(&self.paid) {
            for &(d, a) in paid {
                let k = (d - on).num_days();
                if k < 1 || k > horizon {
                    continue;
                }
                out.entry((self.company_of(it.customer_id), it.currency.clone()))
                    .or_insert_with(|| vec![Decimal::ZERO; days])[(k - 1) as usize] += a;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_store::StateChange;
    use rust_decimal_macros::dec;

    const ON: &str = "2026-06-30";

    fn day(offset: i64) -> NaiveDate {
        ON.parse::<NaiveDate>().unwrap() + chrono::Duration::days(offset)
    }

    fn item(id: i64, customer: i64, doc: i64, due: i64, original: Decimal) -> ItemLife {
        ItemLife {
            id,
            customer_id: customer,
            currency: "EUR".into(),
            document_date: day(doc),
            due_date: day(due),
            original,
            changes: vec![],
        }
    }

    fn paid(mut it: ItemLife, on: i64, open: Decimal, cause: ChangeCause) -> ItemLife {
        it.changes.push(StateChange {
            on: day(on),
            open,
            cause,
        });
        it
    }

    #[test]
    fn collections_are_the_days_an_item_went_down_by_money() {
        let it = item(1, 1, -100, -70, dec!(100));
        let it = paid(it, -60, dec!(70), ChangeCause::Payment);
        let it = paid(it, -50, dec!(90), ChangeCause::Erp); // came back
        let it = paid(it, -40, dec!(50), ChangeCause::Credit); // not money
        let it = paid(it, -30, dec!(0), ChangeCause::Snapshot);
        assert_eq!(
            collections(&it),
            vec![(day(-60), dec!(30)), (day(-30), dec!(50))]
        );
    }

    /// Customer 1 paid three invoices ten days after their due dates and kept two
    /// promises; customer 2 (no history of its own) had an item 20 days late a
    /// month ago, half of which came in since.
    #[test]
    fn the_forecast_weighs_items_promises_and_late_items_by_what_was_seen() {
        let mut items = Vec::new();
        for (n, doc) in [(1, -300), (2, -250), (3, -200)] {
            let it = item(n, 1, doc, doc + 30, dec!(100));
            items.push(paid(it, doc + 40, dec!(0), ChangeCause::Payment));
        }
        // Open, due in 5 days: expected 10 days after that.
        items.push(item(4, 1, -100, 5, dec!(100)));
        // Due 10 days ago: later than customer 1's 10 days.
        items.push(item(5, 1, -100, -10, dec!(200)));
        // Customer 2: 20 days late a month ago, 50 of 100 paid 5 days ago.
        items.push(paid(
            item(6, 2, -100, -50, dec!(100)),
            -5,
            dec!(50),
            ChangeCause::Payment,
        ));
        let promise =
            |status: &str, judged: Option<i64>, promised: i64, amount, items: Vec<i64>| {
                PromiseLife {
                    customer_id: 1,
                    currency: "EUR".into(),
                    amount,
                    created_on: day(-200),
                    promised_on: day(promised),
                    status: status.into(),
                    judged_on: judged.map(day),
                    items,
                }
            };
        let promises = vec![
            promise("kept", Some(-150), -160, dec!(10), vec![1]),
            promise("kept", Some(-100), -110, dec!(10), vec![2]),
            // Open: 40 of item 4 by day 3.
            promise("open", None, 3, dec!(40), vec![4]),
        ];
        let company: HashMap<i64, String> =
            [(1, "ACME".to_string()), (2, "ACME".to_string())].into();
        let book = Book::new(&items, &promises, &company);
        let f = book.forecast(day(0), 20);
        let eur = &f[&("ACME".to_string(), "EUR".to_string())];
        assert_eq!(eur.len(), 20);
        // Item 5, 10 days late: half of what was that late a month ago came in
        // within the month, so 200 × ½ over the next 30 days. Item 6, 50 days
        // late: nothing that late was collected. Nothing was invoiced in the last
        // 91 days, so no invoices to come.
        let late = dec!(200) * dec!(0.5) / dec!(30);
        for (k, amount) in eur.iter().enumerate() {
            let expected = match k + 1 {
                // The promise, kept as both judged ones were.
                3 => dec!(40) + late,
                // Item 4 less what the promise covers, 10 days after its due date.
                15 => dec!(60) + late,
                _ => late,
            };
            assert_eq!(*amount, expected, "day {}", k + 1);
        }
        // What came in: item 6's 50, five days before, is outside the window.
        let later = paid(items[3].clone(), 15, dec!(0), ChangeCause::Payment);
        let items2 = vec![items[5].clone(), later];
        let book = Book::new(&items2, &[], &company);
        let a = book.actual(day(0), 20);
        let eur = &a[&("ACME".to_string(), "EUR".to_string())];
        assert_eq!(eur[14], dec!(100));
        assert_eq!(eur.iter().sum::<Decimal>(), dec!(100));
    }

    /// A promise of 1000 on an item of which 600 came in: at most 400 can follow.
    #[test]
    fn a_promise_stands_for_no_more_than_its_items_owe() {
        let items = vec![paid(
            item(1, 1, -60, -29, dec!(1000)),
            -5,
            dec!(400),
            ChangeCause::Payment,
        )];
        let promises = vec![PromiseLife {
            customer_id: 1,
            currency: "EUR".into(),
            amount: dec!(1000),
            created_on: day(-10),
            promised_on: day(10),
            status: "open".into(),
            judged_on: None,
            items: vec![1],
        }];
        let company: HashMap<i64, String> = [(1, "X".to_string())].into();
        let f = Book::new(&items, &promises, &company).forecast(day(0), 90);
        let total: Decimal = f.values().flatten().sum();
        // The promise, at the default kept rate of ½: 200.
        assert_eq!(total, dec!(200));
    }

    /// An early payer's invoice not yet due is expected, not "late".
    #[test]
    fn an_early_payers_invoice_not_yet_due_is_expected_on_a_day() {
        let mut items = Vec::new();
        for (n, doc) in [(1, -300), (2, -250), (3, -200)] {
            let it = item(n, 1, doc, doc + 30, dec!(100));
            items.push(paid(it, doc + 25, dec!(0), ChangeCause::Payment));
        }
        // Due in 3 days; the customer pays 5 days early.
        items.push(item(4, 1, -27, 3, dec!(100)));
        let company: HashMap<i64, String> = [(1, "X".to_string())].into();
        let f = Book::new(&items, &[], &company).forecast(day(0), 20);
        let x = &f[&("X".to_string(), "EUR".to_string())];
        assert_eq!(x[0], dec!(100), "tomorrow, in full");
        assert_eq!(x.iter().sum::<Decimal>(), dec!(100));
    }
}
