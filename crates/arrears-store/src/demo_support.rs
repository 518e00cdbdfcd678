//! Writing a made-up past: the collector-side records (promises already judged,
//! disputes already resolved, customer holds) that a synthetic portfolio needs as a
//! live system would have accumulated them.
//!
//! These writes skip what the live operations do (audit, judging, dispute rules)
//! on purpose: they state history, they do not act. Only the demo generator uses
//! them.

use chrono::NaiveDate;
use rusqlite::params;
use rust_decimal::Decimal;

use arrears_core::domain::PromiseStatus;

use super::{Result, Store};

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
        Ok(self.conn()?.query_row(
            "SELECT EXISTS(SELECT 1 FROM items WHERE source = ?1)",
            [source],
            |r| r.get(0),
        )?)
    }

    /// Writes `records` in one transaction, in the order given (so their ids follow
    /// it): promises, then disputes with their items, then holds. A customer or
    /// item not in the store fails the whole write.
    pub fn write_past_records(&mut self, records: &PastRecords) -> Result<()> {
        let tx = self.write_tx()?;
        {
            let mut customer_id =
                tx.prepare("SELECT id FROM customers WHERE company = ?1 AND code = ?2")?;
            let mut item_id =
                tx.prepare("SELECT id FROM items WHERE source = ?1 AND external_id = ?2")?;
            let mut promise = tx.prepare(
                "INSERT INTO promises(customer_id, amount, currency, promised_on, created_on, status, judged_on)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut dispute = tx.prepare(
                "INSERT INTO disputes(customer_id, reason, opened_on, resolved_on, resolution)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut dispute_item =
                tx.prepare("INSERT INTO dispute_items(dispute_id, item_id) VALUES (?1, ?2)")?;
            let mut hold = tx.prepare(
                "INSERT INTO holds(customer_id, reason, until, created_on) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut cid = |company: &str, code: &str| -> rusqlite::Result<i64> {
                customer_id.query_row((company, code), |r| r.get(0))
            };

            for p in &records.promises {
                promise.execute(params![
                    cid(p.company, p.customer)?,
                    p.amount.to_string(),
                    p.currency,
                    p.promised_on.to_string(),
                    p.created_on.to_string(),
                    p.status.as_str(),
                    p.judged_on.map(|d| d.to_string()),
                ])?;
            }
            for d in &records.disputes {
                dispute.execute(params![
                    cid(d.company, d.customer)?,
                    d.reason,
                    d.opened_on.to_string(),
                    d.resolved.map(|r| r.0.to_string()),
                    d.resolved.map(|r| r.1),
                ])?;
                let id = tx.last_insert_rowid();
                for ext in d.items {
                    let item: i64 = item_id.query_row((records.source, ext), |r| r.get(0))?;
                    dispute_item.execute([id, item])?;
                }
            }
            for h in &records.holds {
                hold.execute(params![
                    cid(h.company, h.customer)?,
                    h.reason,
                    h.until.map(|d| d.to_string()),
                    h.created_on.to_string(),
                ])?;
            }
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        s.conn().unwrap()
            .execute_batch(
                "INSERT INTO customers(id, company, code, name) VALUES (1, 'ACME', 'A', 'A Ltd');
                 INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                                   original_amount, open_amount, currency)
                   VALUES (1, 'demo', 'd1', 1, 'INV-1', '2026-08-01', '2026-09-01', '10', '10', 'EUR'),
                          (2, 'erp', 'd2', 1, 'INV-2', '2026-08-01', '2026-09-01', '10', '10', 'EUR');",
            )
            .unwrap();
        (dir, s)
    }

    fn rows(s: &Store, sql: &str) -> Vec<String> {
        let mut st = s.conn().unwrap().prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| v.join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn items_from_a_source_are_seen() {
        let (_d, s) = store();
        assert!(s.has_items_from("demo").unwrap());
        assert!(!s.has_items_from("tryton").unwrap());
    }

    #[test]
    fn past_records_are_written_as_given() {
        let (_d, mut s) = store();
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
            rows(&s, "SELECT customer_id, amount, currency, promised_on, created_on, status, judged_on FROM promises"),
            vec!["Integer(1)|Text(\"12.30\")|Text(\"EUR\")|Text(\"2026-10-01\")|Text(\"2026-09-20\")|Text(\"partially_kept\")|Text(\"2026-10-04\")"]
        );
        assert_eq!(
            rows(&s, "SELECT id, reason, opened_on, resolved_on, resolution FROM disputes ORDER BY id"),
            vec![
                "Integer(1)|Text(\"wrong VAT\")|Text(\"2026-09-10\")|Text(\"2026-09-12\")|Text(\"customer withdrew\")",
                "Integer(2)|Text(\"damaged\")|Text(\"2026-10-10\")|Null|Null",
            ]
        );
        assert_eq!(
            rows(&s, "SELECT dispute_id, item_id FROM dispute_items"),
            vec!["Integer(1)|Integer(1)"]
        );
        assert_eq!(
            rows(
                &s,
                "SELECT customer_id, reason, until, created_on FROM holds"
            ),
            vec!["Integer(1)|Text(\"insolvency\")|Null|Text(\"2026-11-01\")"]
        );
    }

    #[test]
    fn an_unknown_customer_or_item_writes_nothing() {
        let (_d, mut s) = store();
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
        for records in [
            PastRecords {
                source: "demo",
                holds: vec![hold.clone(), unknown],
                ..PastRecords::default()
            },
            PastRecords {
                source: "demo",
                disputes: vec![bad_dispute],
                holds: vec![hold.clone()],
                ..PastRecords::default()
            },
        ] {
            assert!(s.write_past_records(&records).is_err());
            assert!(rows(&s, "SELECT id FROM holds").is_empty());
            assert!(rows(&s, "SELECT id FROM disputes").is_empty());
        }
    }
}
