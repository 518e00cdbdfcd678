//! Writing a made-up past: the collector-side records (promises already judged,
//! disputes already resolved, customer holds) that a synthetic portfolio needs as a
//! live system would have accumulated them.
//!
//! These writes skip what the live operations do (audit, judging, dispute rules)
//! on purpose: they state history, they do not act. Only the demo generator uses
//! them.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use arrears_core::domain::PromiseStatus;

use super::db::args;
use super::{Result, Store, StoreError};

/// A promise to pay as it stands today; customers by company and code.
#[derive(Debug, Clone)]
pub struct PastPromise<'a> {
    pub company: &'a str,
    pub customer: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
    pub promised_on: NaiveDate,
    pub created_on: NaiveDate,
    pub status: PromiseStatus,
    pub judged_on: Option<NaiveDate>,
}

/// A dispute as it stands today, with the external ids of its items.
#[derive(Debug, Clone)]
pub struct PastDispute<'a> {
    pub company: &'a str,
    pub customer: &'a str,
    pub reason: &'a str,
    pub opened_on: NaiveDate,
    /// When and how it was resolved; `None`: still open.
    pub resolved: Option<(NaiveDate, &'a str)>,
    pub items: &'a [String],
}

/// A hold on a whole customer.
#[derive(Debug, Clone)]
pub struct PastHold<'a> {
    pub company: &'a str,
    pub customer: &'a str,
    pub reason: &'a str,
    pub until: Option<NaiveDate>,
    pub created_on: NaiveDate,
}

/// Records for customers and items already ingested; disputed items are those of
/// `source`.
#[derive(Debug, Clone, Default)]
pub struct PastRecords<'a> {
    pub source: &'a str,
    pub promises: Vec<PastPromise<'a>>,
    pub disputes: Vec<PastDispute<'a>>,
    pub holds: Vec<PastHold<'a>>,
}

impl Store {
    /// Whether any item came from `source`.
    pub fn has_items_from(&self, source: &str) -> Result<bool> {
        self.db()
            .row(
                "SELECT EXISTS(SELECT 1 FROM items WHERE source = ?1)",
                args![source],
            )?
            .expect("EXISTS gives a row")
            .get(0, "exists")
    }

    /// Writes `records` in one transaction, in the order given (so their ids follow
    /// it): promises, then disputes with their items, then holds. A customer or
    /// item not in the store fails the whole write.
    pub fn write_past_records(&mut self, records: &PastRecords) -> Result<()> {
        self.db().write(|db| {
            let mut customer_id =
                db.prepare("SELECT id FROM customers WHERE company = ?1 AND code = ?2")?;
            let mut item_id =
                db.prepare("SELECT id FROM items WHERE source = ?1 AND external_id = ?2")?;
            let mut promise = db.prepare(
                "INSERT INTO promises(customer_id, amount, currency, promised_on, created_on, status, judged_on)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut dispute = db.prepare_insert(
                "INSERT INTO disputes(customer_id, reason, opened_on, resolved_on, resolution)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut dispute_item =
                db.prepare("INSERT INTO dispute_items(dispute_id, item_id) VALUES (?1, ?2)")?;
            let mut hold = db.prepare(
                "INSERT INTO holds(customer_id, reason, until, created_on) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut cid = |company: &str, code: &str| -> Result<i64> {
                customer_id
                    .row(args![company, code])?
                    .ok_or_else(|| StoreError::NotFound(format!("customer {company}/{code}")))?
                    .get(0, "customers.id")
            };

            for p in &records.promises {
                promise.execute(args![
                    cid(p.company, p.customer)?,
                    p.amount,
                    p.currency,
                    p.promised_on,
                    p.created_on,
                    p.status.as_str(),
                    p.judged_on,
                ])?;
            }
            for d in &records.disputes {
                let id = dispute
                    .insert(args![
                        cid(d.company, d.customer)?,
                        d.reason,
                        d.opened_on,
                        d.resolved.map(|r| r.0),
                        d.resolved.map(|r| r.1),
                    ])?
                    .expect("a dispute is inserted");
                for ext in d.items {
                    let item: i64 = item_id
                        .row(args![records.source, ext])?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("item {}/{ext}", records.source))
                        })?
                        .get(0, "items.id")?;
                    dispute_item.execute(args![id, item])?;
                }
            }
            for h in &records.holds {
                hold.execute(args![
                    cid(h.company, h.customer)?,
                    h.reason,
                    h.until,
                    h.created_on,
                ])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Value;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn fill(s: &Store) {
        s.db()
            .batch(
                "INSERT INTO customers(id, company, code, name) VALUES (1, 'ACME', 'A', 'A Ltd');
                 INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                                   original_amount, open_amount, currency)
                   VALUES (1, 'demo', 'd1', 1, 'INV-1', '2026-08-01', '2026-09-01', '10', '10', 'EUR'),
                          (2, 'erp', 'd2', 1, 'INV-2', '2026-08-01', '2026-09-01', '10', '10', 'EUR');",
            )
            .unwrap();
    }

    /// Each row of `sql`'s `n` columns, as the values read.
    fn rows(s: &Store, sql: &str, n: usize) -> Vec<String> {
        s.db()
            .rows(sql, args![])
            .unwrap()
            .iter()
            .map(|r| {
                (0..n)
                    .map(|i| format!("{:?}", r.get::<Value>(i, "column").unwrap()))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    crate::on_both!(items_from_a_source_are_seen, |s| {
        fill(s);
        assert!(s.has_items_from("demo").unwrap());
        assert!(!s.has_items_from("tryton").unwrap());
    });

    crate::on_both!(past_records_are_written_as_given, |s| {
        fill(s);
        let items = ["d1".to_string()];
        s.write_past_records(&PastRecords {
            source: "demo",
            promises: vec![PastPromise {
                company: "ACME",
                customer: "A",
                amount: "12.30".parse().unwrap(),
                currency: "EUR",
                promised_on: day("2026-10-01"),
                created_on: day("2026-09-20"),
                status: PromiseStatus::PartiallyKept,
                judged_on: Some(day("2026-10-04")),
            }],
            disputes: vec![
                PastDispute {
                    company: "ACME",
                    customer: "A",
                    reason: "wrong VAT",
                    opened_on: day("2026-09-10"),
                    resolved: Some((day("2026-09-12"), "customer withdrew")),
                    items: &items,
                },
                PastDispute {
                    company: "ACME",
                    customer: "A",
                    reason: "damaged",
                    opened_on: day("2026-10-10"),
                    resolved: None,
                    items: &[],
                },
            ],
            holds: vec![PastHold {
                company: "ACME",
                customer: "A",
                reason: "insolvency",
                until: None,
                created_on: day("2026-11-01"),
            }],
        })
        .unwrap();
        assert_eq!(
            rows(s, "SELECT customer_id, amount, currency, promised_on, created_on, status, judged_on FROM promises", 7),
            vec!["Int(1)|Text(\"12.30\")|Text(\"EUR\")|Text(\"2026-10-01\")|Text(\"2026-09-20\")|Text(\"partially_kept\")|Text(\"2026-10-04\")"]
        );
        assert_eq!(
            rows(s, "SELECT id, reason, opened_on, resolved_on, resolution FROM disputes ORDER BY id", 5),
            vec![
                "Int(1)|Text(\"wrong VAT\")|Text(\"2026-09-10\")|Text(\"2026-09-12\")|Text(\"customer withdrew\")",
                "Int(2)|Text(\"damaged\")|Text(\"2026-10-10\")|Null|Null",
            ]
        );
        assert_eq!(
            rows(s, "SELECT dispute_id, item_id FROM dispute_items", 2),
            vec!["Int(1)|Int(1)"]
        );
        assert_eq!(
            rows(
                s,
                "SELECT customer_id, reason, until, created_on FROM holds",
                4
            ),
            vec!["Int(1)|Text(\"insolvency\")|Null|Text(\"2026-11-01\")"]
        );
    });

    crate::on_both!(an_unknown_customer_or_item_writes_nothing, |s| {
        fill(s);
        let hold = PastHold {
            company: "ACME",
            customer: "A",
            reason: "insolvency",
            until: None,
            created_on: day("2026-11-01"),
        };
        let other_source = ["d2".to_string()];
        let bad_dispute = PastDispute {
            company: "ACME",
            customer: "A",
            reason: "damaged",
            opened_on: day("2026-10-10"),
            resolved: None,
            items: &other_source,
        };
        let unknown = PastHold {
            customer: "NOPE",
            ..hold.clone()
        };
        for (records, why) in [
            (
                PastRecords {
                    source: "demo",
                    holds: vec![hold.clone(), unknown],
                    ..PastRecords::default()
                },
                "customer ACME/NOPE not found",
            ),
            (
                PastRecords {
                    source: "demo",
                    disputes: vec![bad_dispute],
                    holds: vec![hold.clone()],
                    ..PastRecords::default()
                },
                "item demo/d2 not found",
            ),
        ] {
            assert_eq!(s.write_past_records(&records).unwrap_err().to_string(), why);
            assert!(rows(s, "SELECT id FROM holds", 1).is_empty());
            assert!(rows(s, "SELECT id FROM disputes", 1).is_empty());
        }
        // The store writes on after the failed ones.
        s.write_past_records(&PastRecords {
            source: "demo",
            holds: vec![hold],
            ..PastRecords::default()
        })
        .unwrap();
        assert_eq!(rows(s, "SELECT customer_id FROM holds", 1), ["Int(1)"]);
    });
}
