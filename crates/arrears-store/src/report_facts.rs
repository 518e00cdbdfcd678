//! The rows the collections reports are computed from (`arrears_app::reports`):
//! what the store holds, read in one snapshot, with no arithmetic beyond picking
//! each item's state on a day from its history.

use std::collections::HashMap;

use arrears_core::domain::ChangeCause;
use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::db::{args, Db, Row};
use crate::{Result, Store};

/// A customer as the reports group it: its company and code, and where the
/// latest run routed it (`None` before any run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDims {
    pub company: String,
    pub code: String,
    pub name: String,
    pub group: Option<String>,
    pub collector: Option<String>,
    pub segment: Option<String>,
}

/// One change of an item's state: the day, its open amount from then on (zero
/// once it is no longer open) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub on: NaiveDate,
    pub open: Decimal,
    pub cause: ChangeCause,
}

/// A case with its item: opened on a day, and the item's changes in the order
/// they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFact {
    pub case_id: i64,
    pub customer_id: i64,
    pub opened_on: NaiveDate,
    pub currency: String,
    pub document_date: NaiveDate,
    pub original_amount: Decimal,
    pub changes: Vec<StateChange>,
}

impl CaseFact {
    /// The item's open amount on `day` (the latest change written among those
    /// dated by then; as born without one).
    pub fn open_on(&self, day: NaiveDate) -> Decimal {
        open_on(self.original_amount, &self.changes, day)
    }
}

/// An item's open amount on `day` from its changes in written order.
pub fn open_on(original: Decimal, changes: &[StateChange], day: NaiveDate) -> Decimal {
    changes
        .iter()
        .rev()
        .find(|c| c.on <= day)
        .map_or(original, |c| c.open)
}

/// An item open on a day, with what it owed that day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenItemFact {
    pub item_id: i64,
    pub customer_id: i64,
    pub currency: String,
    pub due_date: NaiveDate,
    pub open: Decimal,
}

/// A promise to pay as stored, with its judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromiseFact {
    pub id: i64,
    pub customer_id: i64,
    pub currency: String,
    pub amount: Decimal,
    pub created_on: NaiveDate,
    pub promised_on: NaiveDate,
    /// open, kept, partially_kept, broken
    pub status: String,
    pub paid: Option<Decimal>,
    pub paid_on: Option<NaiveDate>,
}

/// A payment linked to an item that was in collection when it arrived (a case of
/// the item opened on or before its value date), with the item's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFact {
    pub id: i64,
    pub customer_id: i64,
    pub item_id: i64,
    pub amount: Decimal,
    pub currency: String,
    pub value_date: NaiveDate,
    /// The collector that case was assigned to by hand, if any.
    pub assigned_to: Option<String>,
    pub item_original: Decimal,
    pub item_changes: Vec<StateChange>,
}

/// A completed activity: someone worked one of the customer's cases that day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFact {
    pub event_id: i64,
    pub customer_id: i64,
    pub on: NaiveDate,
    pub actor: String,
}

/// An item with its whole history: what the cash forecast learns from and
/// replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemLife {
    pub id: i64,
    pub customer_id: i64,
    pub currency: String,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    pub original: Decimal,
    pub changes: Vec<StateChange>,
}

impl ItemLife {
    /// What it owed on `day`: nothing before its document date.
    pub fn open_on(&self, day: NaiveDate) -> Decimal {
        if day < self.document_date {
            return Decimal::ZERO;
        }
        open_on(self.original, &self.changes, day)
    }
}

/// A promise with the items it covers and when it was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromiseLife {
    pub customer_id: i64,
    pub currency: String,
    pub amount: Decimal,
    pub created_on: NaiveDate,
    pub promised_on: NaiveDate,
    /// open, kept, partially_kept, broken
    pub status: String,
    pub judged_on: Option<NaiveDate>,
    pub items: Vec<i64>,
}

/// A customer's entry on the latest worklist, and whether anyone worked the
/// customer's cases in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorklistFact {
    pub customer_id: i64,
    pub priority: i64,
    pub nad: NaiveDate,
    /// In the rules' base currency.
    pub amount: Decimal,
    pub worked: bool,
}

/// A contact with a customer: a message (its channel and delivery status) or an
/// activity a person completed (channel `activity`; `promise` when it took one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactMade {
    pub customer_id: i64,
    pub channel: String,
    /// Messages: queued, deferred, sending, sent, failed, cancelled. Activities:
    /// completed, promise.
    pub status: String,
}

fn opt_date(r: &Row, i: usize, column: &'static str) -> Result<Option<NaiveDate>> {
    r.get::<Option<String>>(i, column)?
        .map(|s| crate::date(column, &s))
        .transpose()
}

fn opt_dec(r: &Row, i: usize, column: &'static str) -> Result<Option<Decimal>> {
    r.get::<Option<String>>(i, column)?
        .map(|s| crate::dec(column, &s))
        .transpose()
}

/// Each item's changes (`item_id, on_date, open_amount, status, cause` rows in
/// written order) grouped by item.
fn changes_by_item(rows: Vec<Row>) -> Result<HashMap<i64, Vec<StateChange>>> {
    let mut out: HashMap<i64, Vec<StateChange>> = HashMap::new();
    for r in rows {
        let status: String = r.get(3, "item_history.status")?;
        let open = if status == "open" {
            r.dec(2, "item_history.open_amount")?
        } else {
            Decimal::ZERO
        };
        out.entry(r.get(0, "item_history.item_id")?)
            .or_default()
            .push(StateChange {
                on: r.date(1, "item_history.on_date")?,
                open,
                cause: crate::history::cause(
                    "item_history.cause",
                    &r.get::<String>(4, "item_history.cause")?,
                )?,
            });
    }
    Ok(out)
}

impl Store {
    /// Every customer's grouping, by id.
    pub fn report_customers(&self) -> Result<HashMap<i64, CustomerDims>> {
        self.db().read(customers)
    }

    /// The cases opened from `from` to `to` (both included), with their items'
    /// history.
    pub fn cases_opened(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<CaseFact>> {
        self.db().read(|db| {
            let changes = changes_by_item(db.rows(
                "SELECT h.item_id, h.on_date, h.open_amount, h.status, h.cause FROM item_history h
                 WHERE h.item_id IN (SELECT item_id FROM cases WHERE opened_on >= ?1 AND opened_on <= ?2)
                 ORDER BY h.id",
                args![from, to],
            )?)?;
            db.rows(
                "SELECT k.id, k.customer_id, k.opened_on, i.id, i.currency, i.document_date, i.original_amount
                 FROM cases k JOIN items i ON i.id = k.item_id
                 WHERE k.opened_on >= ?1 AND k.opened_on <= ?2 ORDER BY k.id",
                args![from, to],
            )?
            .iter()
            .map(|r| {
                let item: i64 = r.get(3, "items.id")?;
                Ok(CaseFact {
                    case_id: r.get(0, "cases.id")?,
                    customer_id: r.get(1, "cases.customer_id")?,
                    opened_on: r.date(2, "cases.opened_on")?,
                    currency: r.get(4, "items.currency")?,
                    document_date: r.date(5, "items.document_date")?,
                    original_amount: r.dec(6, "items.original_amount")?,
                    // An item cleared and reopened has a case for each time.
                    changes: changes.get(&item).cloned().unwrap_or_default(),
                })
            })
            .collect()
        })
    }

    /// The items open on `day` (dated by then, with an open amount that day other
    /// than zero), with what each owed that day.
    pub fn open_items_on(&self, day: NaiveDate) -> Result<Vec<OpenItemFact>> {
        // An item that left collection by `day` and never came back has its
        // `cleared_on` by then: only the others are read.
        const CANDIDATES: &str =
            "i.document_date <= ?1 AND (i.cleared_on IS NULL OR i.cleared_on > ?1)";
        self.db().read(|db| {
            let changes = changes_by_item(db.rows(
                &format!(
                    "SELECT h.item_id, h.on_date, h.open_amount, h.status, h.cause
                     FROM item_history h JOIN items i ON i.id = h.item_id
                     WHERE {CANDIDATES} ORDER BY h.id"
                ),
                args![day],
            )?)?;
            let mut out = Vec::new();
            for r in db.rows(
                &format!(
                    "SELECT i.id, i.customer_id, i.currency, i.due_date, i.original_amount
                     FROM items i WHERE {CANDIDATES} ORDER BY i.id"
                ),
                args![day],
            )? {
                let id: i64 = r.get(0, "items.id")?;
                let original = r.dec(4, "items.original_amount")?;
                let open = open_on(original, changes.get(&id).map_or(&[][..], |c| &c[..]), day);
                if open.is_zero() {
                    continue;
                }
                out.push(OpenItemFact {
                    item_id: id,
                    customer_id: r.get(1, "items.customer_id")?,
                    currency: r.get(2, "items.currency")?,
                    due_date: r.date(3, "items.due_date")?,
                    open,
                });
            }
            Ok(out)
        })
    }

    /// The promises made from `from` to `to` (both included).
    pub fn promises_made(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<PromiseFact>> {
        self.db().read(|db| {
            db.rows(
                "SELECT id, customer_id, currency, amount, created_on, promised_on, status, paid, paid_on
                 FROM promises WHERE created_on >= ?1 AND created_on <= ?2 ORDER BY id",
                args![from, to],
            )?
            .iter()
            .map(|r| {
                Ok(PromiseFact {
                    id: r.get(0, "promises.id")?,
                    customer_id: r.get(1, "promises.customer_id")?,
                    currency: r.get(2, "promises.currency")?,
                    amount: r.dec(3, "promises.amount")?,
                    created_on: r.date(4, "promises.created_on")?,
                    promised_on: r.date(5, "promises.promised_on")?,
                    status: r.get(6, "promises.status")?,
                    paid: opt_dec(r, 7, "promises.paid")?,
                    paid_on: opt_date(r, 8, "promises.paid_on")?,
                })
            })
            .collect()
        })
    }
}

impl Store {
    /// The payments with a value date from `from` to `to` on items in collection
    /// then.
    pub fn payments_collected(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<PaymentFact>> {
        const COLLECTED: &str = "p.item_id IS NOT NULL AND p.value_date >= ?1 AND p.value_date <= ?2
             AND EXISTS (SELECT 1 FROM cases k WHERE k.item_id = p.item_id AND k.opened_on <= p.value_date)";
        self.db().read(|db| {
            let changes = changes_by_item(db.rows(
                &format!(
                    "SELECT h.item_id, h.on_date, h.open_amount, h.status, h.cause FROM item_history h
                     WHERE h.item_id IN (SELECT p.item_id FROM payments p WHERE {COLLECTED})
                     ORDER BY h.id"
                ),
                args![from, to],
            )?)?;
            let rows = db.rows(
                &format!(
                    "SELECT p.id, p.customer_id, p.item_id, p.amount, p.currency, p.value_date,
                            (SELECT k.assigned_to FROM cases k WHERE k.item_id = p.item_id
                               AND k.opened_on <= p.value_date ORDER BY k.id DESC LIMIT 1),
                            i.original_amount
                     FROM payments p JOIN items i ON i.id = p.item_id
                     WHERE {COLLECTED} ORDER BY p.id"
                ),
                args![from, to],
            )?;
            rows.iter()
                .map(|r| {
                    let item: i64 = r.get(2, "payments.item_id")?;
                    Ok(PaymentFact {
                        id: r.get(0, "payments.id")?,
                        customer_id: r.get(1, "payments.customer_id")?,
                        item_id: item,
                        amount: r.dec(3, "payments.amount")?,
                        currency: r.get(4, "payments.currency")?,
                        value_date: r.date(5, "payments.value_date")?,
                        assigned_to: r.get(6, "cases.assigned_to")?,
                        item_original: r.dec(7, "items.original_amount")?,
                        // Several payments of one item share its history.
                        item_changes: changes.get(&item).cloned().unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    /// The activities completed from `from` to `to`, by whom.
    pub fn contacts_made(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<ContactFact>> {
        self.db().read(|db| {
            db.rows(
                "SELECT e.id, k.customer_id, e.on_date, e.actor FROM case_events e
                 JOIN cases k ON k.id = e.case_id
                 WHERE e.kind = 'completed' AND e.on_date >= ?1 AND e.on_date <= ?2 ORDER BY e.id",
                args![from, to],
            )?
            .iter()
            .map(|r| {
                Ok(ContactFact {
                    event_id: r.get(0, "case_events.id")?,
                    customer_id: r.get(1, "cases.customer_id")?,
                    on: r.date(2, "case_events.on_date")?,
                    actor: r.get(3, "case_events.actor")?,
                })
            })
            .collect()
        })
    }
}

impl Store {
    /// Every item still in collection on `since` or later (and every item dated
    /// since), with its history; in id order.
    pub fn item_lives(&self, since: NaiveDate) -> Result<Vec<ItemLife>> {
        const WHICH: &str = "(i.cleared_on IS NULL OR i.cleared_on >= ?1 OR i.document_date >= ?1)";
        self.db().read(|db| {
            let mut changes = changes_by_item(db.rows(
                &format!(
                    "SELECT h.item_id, h.on_date, h.open_amount, h.status, h.cause
                     FROM item_history h JOIN items i ON i.id = h.item_id WHERE {WHICH} ORDER BY h.id"
                ),
                args![since],
            )?)?;
            db.rows(
                &format!(
                    "SELECT i.id, i.customer_id, i.currency, i.document_date, i.due_date, i.original_amount
                     FROM items i WHERE {WHICH} ORDER BY i.id"
                ),
                args![since],
            )?
            .iter()
            .map(|r| {
                let id: i64 = r.get(0, "items.id")?;
                Ok(ItemLife {
                    id,
                    customer_id: r.get(1, "items.customer_id")?,
                    currency: r.get(2, "items.currency")?,
                    document_date: r.date(3, "items.document_date")?,
                    due_date: r.date(4, "items.due_date")?,
                    original: r.dec(5, "items.original_amount")?,
                    changes: changes.remove(&id).unwrap_or_default(),
                })
            })
            .collect()
        })
    }

    /// Every promise made on or after `since`, with its items.
    pub fn promise_lives(&self, since: NaiveDate) -> Result<Vec<PromiseLife>> {
        self.db().read(|db| {
            let mut items: HashMap<i64, Vec<i64>> = HashMap::new();
            for r in db.rows(
                "SELECT pi.promise_id, pi.item_id FROM promise_items pi
                 JOIN promises p ON p.id = pi.promise_id WHERE p.created_on >= ?1
                 ORDER BY pi.promise_id, pi.item_id",
                args![since],
            )? {
                items
                    .entry(r.get(0, "promise_items.promise_id")?)
                    .or_default()
                    .push(r.get(1, "promise_items.item_id")?);
            }
            db.rows(
                "SELECT id, customer_id, currency, amount, created_on, promised_on, status, judged_on
                 FROM promises WHERE created_on >= ?1 ORDER BY id",
                args![since],
            )?
            .iter()
            .map(|r| {
                let id: i64 = r.get(0, "promises.id")?;
                Ok(PromiseLife {
                    customer_id: r.get(1, "promises.customer_id")?,
                    currency: r.get(2, "promises.currency")?,
                    amount: r.dec(3, "promises.amount")?,
                    created_on: r.date(4, "promises.created_on")?,
                    promised_on: r.date(5, "promises.promised_on")?,
                    status: r.get(6, "promises.status")?,
                    judged_on: opt_date(r, 7, "promises.judged_on")?,
                    items: items.remove(&id).unwrap_or_default(),
                })
            })
            .collect()
        })
    }
}

/// Case events a person makes when working a case (not a run's, a connector's).
const WORK: &str = "e.kind IN ('completed', 'note', 'activity')";

impl Store {
    /// The latest worklist, each entry with whether its customer's cases were
    /// worked (an activity set or completed, a note) from `from` to `to`.
    pub fn worklist_facts(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<WorklistFact>> {
        self.db().read(|db| {
            db.rows(
                &format!(
                    "SELECT w.customer_id, w.priority, w.nad, w.amount,
                            EXISTS (SELECT 1 FROM cases k JOIN case_events e ON e.case_id = k.id
                                    WHERE k.customer_id = w.customer_id AND {WORK}
                                      AND e.on_date >= ?1 AND e.on_date <= ?2)
                     FROM worklist w ORDER BY w.customer_id"
                ),
                args![from, to],
            )?
            .iter()
            .map(|r| {
                Ok(WorklistFact {
                    customer_id: r.get(0, "worklist.customer_id")?,
                    priority: r.get(1, "worklist.priority")?,
                    nad: r.date(2, "worklist.nad")?,
                    amount: r.dec(3, "worklist.amount")?,
                    worked: r.get(4, "worked")?,
                })
            })
            .collect()
        })
    }

    /// The messages made and the activities completed from `from` to `to`.
    pub fn contacts_between(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<ContactMade>> {
        self.db().read(|db| {
            let mut out = Vec::new();
            // created_at is RFC 3339: its first ten characters are the day (UTC).
            for r in db.rows(
                "SELECT customer_id, channel, status FROM messages
                 WHERE replaces IS NULL AND substr(created_at, 1, 10) >= ?1 AND substr(created_at, 1, 10) <= ?2
                 ORDER BY id",
                args![from.to_string(), to.to_string()],
            )? {
                out.push(ContactMade {
                    customer_id: r.get(0, "messages.customer_id")?,
                    channel: r.get(1, "messages.channel")?,
                    status: r.get(2, "messages.status")?,
                });
            }
            for r in db.rows(
                "SELECT k.customer_id, e.detail FROM case_events e JOIN cases k ON k.id = e.case_id
                 WHERE e.kind = 'completed' AND e.on_date >= ?1 AND e.on_date <= ?2 ORDER BY e.id",
                args![from, to],
            )? {
                let detail: String = r.get(1, "case_events.detail")?;
                out.push(ContactMade {
                    customer_id: r.get(0, "cases.customer_id")?,
                    channel: "activity".into(),
                    status: if detail.starts_with("promise to pay") {
                        "promise".into()
                    } else {
                        "completed".into()
                    },
                });
            }
            Ok(out)
        })
    }
}

fn customers(db: &Db) -> Result<HashMap<i64, CustomerDims>> {
    db.rows(
        "SELECT c.id, c.company, c.code, c.name, s.collection_group, s.collector, s.segment
         FROM customers c LEFT JOIN customer_state s ON s.customer_id = c.id",
        args![],
    )?
    .iter()
    .map(|r| {
        Ok((
            r.get(0, "customers.id")?,
            CustomerDims {
                company: r.get(1, "customers.company")?,
                code: r.get(2, "customers.code")?,
                name: r.get(3, "customers.name")?,
                group: r.get(4, "customer_state.collection_group")?,
                collector: r.get(5, "customer_state.collector")?,
                segment: r.get(6, "customer_state.segment")?,
            },
        ))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::item;
    use arrears_core::domain::{Batch, PaymentInput};
    use arrears_core::money::Currency;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Items 1–3 of customer C1 (ACME), dated 2026-09-01, due 2026-10-01: 1 paid
    /// by a linked payment on 10-05 (learned 10-06), 2 lowered by the ERP on 10-10,
    /// 3 gone from a snapshot on 10-20; each with a case opened on 10-02. Alice
    /// completed an activity on 10-03; a promise of 30 by 10-15, kept; a message
    /// sent; the worklist and the customer's routing.
    fn book(s: &mut Store) {
        let learn = |s: &mut Store, on: &str, items, payments, snapshot: bool| {
            s.ingest(&Batch {
                items,
                payments,
                snapshot_sources: if snapshot { vec!["erp".into()] } else { vec![] },
                as_of: Some(d(on)),
                ..Batch::default()
            })
            .unwrap();
        };
        let pay = PaymentInput {
            source: "erp".into(),
            external_id: "p1".into(),
            company: "ACME".into(),
            customer: "C1".into(),
            amount: dec!(100.00),
            currency: Currency::parse("EUR").unwrap(),
            value_date: d("2026-10-05"),
            reference: String::new(),
            item_ref: Some("1".into()),
        };
        learn(
            s,
            "2026-09-01",
            vec![
                item("1", dec!(100.00)),
                item("2", dec!(100.00)),
                item("3", dec!(100.00)),
            ],
            vec![],
            false,
        );
        learn(s, "2026-10-06", vec![item("1", dec!(0))], vec![pay], false);
        learn(s, "2026-10-10", vec![item("2", dec!(40.00))], vec![], false);
        learn(s, "2026-10-20", vec![item("2", dec!(40.00))], vec![], true);
        s.db()
            .batch(
                "INSERT INTO cases(item_id, customer_id, status, opened_on, nad, priority, assigned_to)
                   SELECT id, customer_id, 'open', '2026-10-02', '2026-10-02', 2, 'bob' FROM items ORDER BY id;
                 INSERT INTO case_events(case_id, on_date, kind, actor, detail)
                   VALUES (1, '2026-10-03', 'completed', 'alice', 'promise to pay 30.00 by 2026-10-15'),
                          (2, '2026-10-04', 'note', 'alice', 'called');
                 INSERT INTO promises(customer_id, case_id, amount, currency, promised_on, created_on, status, judged_on, paid, paid_on)
                   VALUES (1, 2, '30.00', 'EUR', '2026-10-15', '2026-10-03', 'kept', '2026-10-19', '30.00', '2026-10-10');
                 INSERT INTO promise_items(promise_id, item_id) VALUES (1, 2);
                 INSERT INTO messages(customer_id, channel, template, language, subject, text, status, next_attempt, created_at)
                   VALUES (1, 'email', 'reminder_1', 'en', 's', 't', 'sent', '2026-10-08T09:00:00Z', '2026-10-08T08:00:00Z');
                 INSERT INTO customer_state(customer_id, strategy, segment, profile, score, collection_group, collector, priority, as_of)
                   VALUES (1, 'b2b', 'standard', 'routine', '10', 'general', 'alice', 2, '2026-10-20');
                 INSERT INTO worklist(customer_id, collection_group, collector, score, priority, nad, items, amount, reason)
                   VALUES (1, 'general', 'alice', '10', 3, '2026-10-21', 1, '40.00', 'overdue');",
            )
            .unwrap();
    }

    /// Every read of the reports, as text (Debug shows each amount's scale).
    fn facts(s: &Store) -> Vec<String> {
        let (from, to) = (d("2026-09-01"), d("2026-10-31"));
        vec![
            format!("{:?}", {
                let mut c: Vec<_> = s.report_customers().unwrap().into_iter().collect();
                c.sort_by_key(|x| x.0);
                c
            }),
            format!("{:?}", s.cases_opened(from, to).unwrap()),
            format!("{:?}", s.open_items_on(d("2026-10-08")).unwrap()),
            format!("{:?}", s.open_items_on(to).unwrap()),
            format!("{:?}", s.promises_made(from, to).unwrap()),
            format!("{:?}", s.payments_collected(from, to).unwrap()),
            format!("{:?}", s.contacts_made(from, to).unwrap()),
            format!("{:?}", s.item_lives(from).unwrap()),
            format!("{:?}", s.promise_lives(from).unwrap()),
            format!(
                "{:?}",
                s.worklist_facts(d("2026-10-04"), d("2026-10-04")).unwrap()
            ),
            format!("{:?}", s.contacts_between(from, to).unwrap()),
        ]
    }

    #[test]
    fn the_reports_read_the_same_on_both_databases() {
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Store::open(&dir.path().join("r.db")).unwrap();
        let mut pg = crate::pg::testing::store();
        book(&mut lite);
        book(&mut pg);
        let (a, b) = (facts(&lite), facts(&pg));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y);
        }
        // And what they read: on 10-08 item 1 was paid (10-05), 2 and 3 still whole.
        let open: Vec<(i64, Decimal)> = lite
            .open_items_on(d("2026-10-08"))
            .unwrap()
            .iter()
            .map(|o| (o.item_id, o.open))
            .collect();
        assert_eq!(open, [(2, dec!(100.00)), (3, dec!(100.00))]);
        // On 10-31: item 2's 40.00 (item 3 gone on 10-20).
        let open = lite.open_items_on(d("2026-10-31")).unwrap();
        assert_eq!((open.len(), open[0].open), (1, dec!(40.00)));
        let paid = lite
            .payments_collected(d("2026-10-01"), d("2026-10-31"))
            .unwrap();
        assert_eq!(
            (paid.len(), paid[0].assigned_to.as_deref()),
            (1, Some("bob"))
        );
        let w = lite
            .worklist_facts(d("2026-10-04"), d("2026-10-04"))
            .unwrap();
        assert!(w[0].worked, "a note on 10-04");
        let w = lite
            .worklist_facts(d("2026-10-05"), d("2026-10-05"))
            .unwrap();
        assert!(!w[0].worked);
        let c = lite
            .contacts_between(d("2026-10-01"), d("2026-10-31"))
            .unwrap();
        let kinds: Vec<(&str, &str)> = c
            .iter()
            .map(|c| (c.channel.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(kinds, [("email", "sent"), ("activity", "promise")]);
    }
}
