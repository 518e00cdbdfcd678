//! What each item owed on each day, and when and how it left collection.
//!
//! Every path that changes an item's open amount or status (an ingest, a bank
//! statement's allocation, an agreement) calls [`note`] after writing the item,
//! in the same transaction: the item's history gains a row only when its state
//! differs from the latest row (or, without rows, from its birth: open, at its
//! original amount), so calling it for an item that did not change writes
//! nothing. The state on a day is the latest row written among those dated on
//! or before it (schema_v14.sql says why).

use std::collections::BTreeMap;

use arrears_core::domain::ChangeCause;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::db::{args, Arg, Db};
use crate::{Result, Store, StoreError};

/// Records the current state of `items` in their history, dated `on`, where it
/// changed; sets or clears `cleared_on`/`cleared_by`. The number of rows written.
pub(crate) fn note(db: &Db, on: NaiveDate, cause: ChangeCause, items: &[i64]) -> Result<usize> {
    if items.is_empty() {
        return Ok(0);
    }
    let list = Db::json_list(items);
    let ids = db.in_list("?1", "BIGINT");
    // The text of an amount keeps its scale on SQLite ("100" and "100.00"): SQL
    // finds the rows whose text differs, Rust keeps those whose value does.
    let mut rows = Vec::new();
    for r in db.rows(
        &format!(
            "SELECT i.id, i.open_amount, i.status,
                    COALESCE(h.open_amount, i.original_amount), COALESCE(h.status, 'open')
             FROM items i
             LEFT JOIN item_history h ON h.id = (SELECT MAX(x.id) FROM item_history x WHERE x.item_id = i.id)
             WHERE i.id IN {ids}
               AND (COALESCE(h.open_amount, i.original_amount) <> i.open_amount
                    OR COALESCE(h.status, 'open') <> i.status)
             ORDER BY i.id"
        ),
        args![list],
    )? {
        let (open, status) = (r.dec(1, "items.open_amount")?, r.get::<String>(2, "items.status")?);
        let (was, was_status) = (r.dec(3, "item_history.open_amount")?, r.get::<String>(4, "item_history.status")?);
        if open != was || status != was_status {
            rows.push(vec![
                r.get::<i64>(0, "items.id")?.value(),
                on.value(),
                open.value(),
                status.value(),
                cause.as_str().value(),
            ]);
        }
    }
    insert(db, &rows)?;
    set_cleared(db, on, cause, items)?;
    Ok(rows.len())
}

/// History rows (item id, day, open amount, status, cause), in the order given.
fn insert(db: &Db, rows: &[Vec<crate::pg::Value>]) -> Result<()> {
    const COLUMNS: [&str; 5] = ["item_id", "on_date", "open_amount", "status", "cause"];
    db.many(
        "INSERT INTO item_history(item_id, on_date, open_amount, status, cause) VALUES (?1, ?2, ?3, ?4, ?5)",
        "item_history",
        &COLUMNS,
        "INSERT INTO item_history(item_id, on_date, open_amount, status, cause)
         SELECT item_id, on_date, open_amount, status, cause FROM bulk ORDER BY item_id",
        rows,
    )
}

/// `cleared_on`/`cleared_by` of `items` as their status now says: set (to `on`,
/// `cause`) when one left collection, emptied when one is open again.
fn set_cleared(db: &Db, on: NaiveDate, cause: ChangeCause, items: &[i64]) -> Result<()> {
    let ids = db.in_list("?1", "BIGINT");
    let day = db.typed("?2", "DATE");
    db.execute(
        &format!(
            "UPDATE items SET cleared_on = CASE WHEN status = 'open' THEN NULL ELSE {day} END,
                              cleared_by = CASE WHEN status = 'open' THEN NULL ELSE ?3 END
             WHERE id IN {ids}
               AND CASE WHEN status = 'open' THEN cleared_on IS NOT NULL ELSE cleared_on IS NULL END"
        ),
        args![Db::json_list(items), on, cause.as_str()],
    )?;
    Ok(())
}

/// The first history rows of items a batch has just created and that were not as
/// born (item id, day, open amount, status, cause): written from what the batch
/// says, since their history is empty and nothing needs reading.
pub(crate) fn note_new(
    db: &Db,
    items: &[(i64, NaiveDate, Decimal, &str, ChangeCause)],
) -> Result<usize> {
    let rows: Vec<Vec<crate::pg::Value>> = items
        .iter()
        .map(|&(id, on, open, status, cause)| {
            vec![
                id.value(),
                on.value(),
                open.value(),
                status.value(),
                cause.as_str().value(),
            ]
        })
        .collect();
    insert(db, &rows)?;
    let mut cleared: BTreeMap<(NaiveDate, &str), (ChangeCause, Vec<i64>)> = BTreeMap::new();
    for &(id, on, _, status, cause) in items {
        if status != "open" {
            cleared
                .entry((on, cause.as_str()))
                .or_insert_with(|| (cause, Vec::new()))
                .1
                .push(id);
        }
    }
    for ((on, _), (cause, ids)) in cleared {
        set_cleared(db, on, cause, &ids)?;
    }
    Ok(rows.len())
}

/// [`note`] for items each with its own day and cause.
pub(crate) fn note_each(db: &Db, changes: &[(i64, NaiveDate, ChangeCause)]) -> Result<usize> {
    let mut groups: BTreeMap<(NaiveDate, &str), (ChangeCause, Vec<i64>)> = BTreeMap::new();
    for &(id, on, cause) in changes {
        groups
            .entry((on, cause.as_str()))
            .or_insert_with(|| (cause, Vec::new()))
            .1
            .push(id);
    }
    let mut written = 0;
    for ((on, _), (cause, ids)) in groups {
        written += note(db, on, cause, &ids)?;
    }
    Ok(written)
}

/// One row of an item's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub on: NaiveDate,
    pub open_amount: Decimal,
    pub status: String,
    pub cause: ChangeCause,
}

/// How an item left collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clearing {
    pub on: NaiveDate,
    pub by: ChangeCause,
}

pub(crate) fn cause(column: &'static str, s: &str) -> Result<ChangeCause> {
    ChangeCause::parse(s).ok_or_else(|| {
        StoreError::Invalid(format!("{column}: `{s}` is not a known cause of change"))
    })
}

impl Store {
    /// An item's history, oldest first (in the order it was written).
    pub fn item_history(&self, item_id: i64) -> Result<Vec<HistoryEntry>> {
        self.db().read(|db| {
            db.rows(
                "SELECT on_date, open_amount, status, cause FROM item_history
                 WHERE item_id = ?1 ORDER BY id",
                args![item_id],
            )?
            .iter()
            .map(|r| {
                Ok(HistoryEntry {
                    on: r.date(0, "item_history.on_date")?,
                    open_amount: r.dec(1, "item_history.open_amount")?,
                    status: r.get(2, "item_history.status")?,
                    cause: cause(
                        "item_history.cause",
                        &r.get::<String>(3, "item_history.cause")?,
                    )?,
                })
            })
            .collect()
        })
    }

    /// When and how an item left collection; `None` while it is open.
    pub fn item_clearing(&self, item_id: i64) -> Result<Option<Clearing>> {
        let row = self.db().row(
            "SELECT cleared_on, cleared_by FROM items WHERE id = ?1 AND cleared_on IS NOT NULL",
            args![item_id],
        )?;
        row.map(|r| {
            Ok(Clearing {
                on: r.date(0, "items.cleared_on")?,
                by: cause("items.cleared_by", &r.get::<String>(1, "items.cleared_by")?)?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::item;
    use arrears_core::domain::{Batch, ItemInput, PaymentInput};
    use arrears_core::money::Currency;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn learn(s: &mut Store, on: &str, items: Vec<ItemInput>, payments: Vec<PaymentInput>) {
        s.ingest(&Batch {
            items,
            payments,
            as_of: Some(d(on)),
            ..Batch::default()
        })
        .unwrap();
    }

    fn id(s: &Store, ext: &str) -> i64 {
        s.db()
            .row("SELECT id FROM items WHERE external_id = ?1", args![ext])
            .unwrap()
            .expect("the item")
            .get(0, "items.id")
            .unwrap()
    }

    /// (day, open amount, status, cause) of each row.
    fn rows(s: &Store, ext: &str) -> Vec<(String, Decimal, String, ChangeCause)> {
        s.item_history(id(s, ext))
            .unwrap()
            .into_iter()
            .map(|h| (h.on.to_string(), h.open_amount, h.status, h.cause))
            .collect()
    }

    fn row(
        on: &str,
        open: Decimal,
        status: &str,
        cause: ChangeCause,
    ) -> (String, Decimal, String, ChangeCause) {
        (on.to_string(), open, status.to_string(), cause)
    }

    fn paid(item: &str, ext: &str, amount: Decimal, on: &str) -> PaymentInput {
        PaymentInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: "ACME".into(),
            customer: "C1".into(),
            amount,
            currency: Currency::parse("EUR").unwrap(),
            value_date: d(on),
            reference: String::new(),
            item_ref: Some(item.into()),
        }
    }

    crate::on_both!(an_ingest_dates_what_it_changes_and_why, |s| {
        learn(
            s,
            "2026-10-01",
            vec![item("1", dec!(100)), item("2", dec!(100))],
            vec![],
        );
        // Born open at its original amount: nothing to record.
        assert_eq!(rows(s, "1"), vec![]);
        assert_eq!(s.item_clearing(id(s, "1")).unwrap(), None);
        // The same again changes nothing.
        learn(s, "2026-10-02", vec![item("1", dec!(100))], vec![]);
        assert_eq!(rows(s, "1"), vec![]);
        // Lowered by the ERP alone: dated by the batch's day.
        learn(s, "2026-10-05", vec![item("1", dec!(60))], vec![]);
        // Paid in full with a linked payment: dated by its value date.
        learn(
            s,
            "2026-10-09",
            vec![item("1", dec!(0))],
            vec![paid("1", "p1", dec!(60), "2026-10-07")],
        );
        assert_eq!(
            rows(s, "1"),
            vec![
                row("2026-10-05", dec!(60), "open", ChangeCause::Erp),
                row("2026-10-07", dec!(0), "cleared", ChangeCause::Payment),
            ]
        );
        assert_eq!(
            s.item_clearing(id(s, "1")).unwrap(),
            Some(Clearing {
                on: d("2026-10-07"),
                by: ChangeCause::Payment
            })
        );
        // Open again (a payment returned): no longer cleared.
        learn(s, "2026-10-12", vec![item("1", dec!(60))], vec![]);
        assert_eq!(rows(s, "1").len(), 3);
        assert_eq!(s.item_clearing(id(s, "1")).unwrap(), None);
        // Imported already partly paid: recorded on the day it was learned.
        learn(s, "2026-10-12", vec![item("3", dec!(25))], vec![]);
        assert_eq!(
            rows(s, "3"),
            vec![row("2026-10-12", dec!(25), "open", ChangeCause::Erp)]
        );
        // Without a day of its own a batch is dated by the store's clock.
        s.ingest(&Batch {
            items: vec![item("2", dec!(40))],
            ..Batch::default()
        })
        .unwrap();
        let today = s.clock().today().to_string();
        assert_eq!(
            rows(s, "2"),
            vec![row(&today, dec!(40), "open", ChangeCause::Erp)]
        );
    });

    crate::on_both!(
        items_gone_from_a_snapshot_or_replaced_leave_collection,
        |s| {
            learn(
                s,
                "2026-10-01",
                vec![
                    item("1", dec!(100)),
                    item("2", dec!(100)),
                    item("3", dec!(100)),
                ],
                vec![],
            );
            // Item 2 is split into 2-A, dated the day before the batch that brings it.
            let mut part = item("2-A", dec!(50));
            part.document_date = d("2026-10-03");
            part.original_amount = dec!(50);
            part.original_document = Some("INV-2".into());
            s.ingest(&Batch {
                items: vec![item("1", dec!(100)), part],
                snapshot_sources: vec!["erp".into()],
                as_of: Some(d("2026-10-04")),
                ..Batch::default()
            })
            .unwrap();
            assert_eq!(
                rows(s, "2"),
                vec![row(
                    "2026-10-03",
                    dec!(100),
                    "replaced",
                    ChangeCause::Replaced
                )]
            );
            assert_eq!(
                rows(s, "3"),
                vec![row(
                    "2026-10-04",
                    dec!(100),
                    "cleared",
                    ChangeCause::Snapshot
                )]
            );
            assert_eq!(
                s.item_clearing(id(s, "3")).unwrap(),
                Some(Clearing {
                    on: d("2026-10-04"),
                    by: ChangeCause::Snapshot
                })
            );
            assert_eq!(rows(s, "1"), vec![]);
            assert_eq!(rows(s, "2-A"), vec![]);
        }
    );

    // A large batch goes in bulk on PostgreSQL: the same history as one by one.
    crate::on_both!(a_large_batch_records_the_same_history, |s| {
        let many = |open: Decimal| -> Vec<ItemInput> {
            (0..100)
                .map(|n| item(&n.to_string(), if n % 3 == 0 { open } else { dec!(100) }))
                .collect()
        };
        learn(s, "2026-10-01", many(dec!(100)), vec![]);
        learn(
            s,
            "2026-10-02",
            many(dec!(30)),
            vec![paid("3", "p3", dec!(70), "2026-09-30")],
        );
        learn(s, "2026-10-03", many(dec!(0)), vec![]);
        assert_eq!(rows(s, "1"), vec![]);
        assert_eq!(
            rows(s, "0"),
            vec![
                row("2026-10-02", dec!(30), "open", ChangeCause::Erp),
                row("2026-10-03", dec!(0), "cleared", ChangeCause::Erp),
            ]
        );
        assert_eq!(
            rows(s, "3"),
            vec![
                row("2026-09-30", dec!(30), "open", ChangeCause::Payment),
                row("2026-10-03", dec!(0), "cleared", ChangeCause::Erp),
            ]
        );
        let n: i64 = s
            .db()
            .row("SELECT COUNT(*) FROM item_history", args![])
            .unwrap()
            .unwrap()
            .get(0, "n")
            .unwrap();
        assert_eq!(n, 34 * 2);
    });

    crate::on_both!(
        an_original_the_erp_clears_beside_its_replacement_was_replaced,
        |s| {
            learn(s, "2026-10-01", vec![item("2", dec!(100))], vec![]);
            let mut part = item("2-A", dec!(100));
            part.document_date = d("2026-10-03");
            part.original_document = Some("INV-2".into());
            learn(s, "2026-10-04", vec![item("2", dec!(0)), part], vec![]);
            assert_eq!(
                rows(s, "2"),
                vec![row("2026-10-03", dec!(0), "cleared", ChangeCause::Replaced)]
            );
            assert_eq!(
                s.item_clearing(id(s, "2")).unwrap().map(|c| c.by),
                Some(ChangeCause::Replaced)
            );
        }
    );
}
