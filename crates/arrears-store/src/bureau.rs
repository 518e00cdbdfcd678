//! Credit bureau records: scores looked up per customer (`bureau_scores`) and the
//! negative listings registered at a bureau (`bureau_listings`).
//!
//! The store only selects and records. Which customer is due for a lookup, which
//! item may be listed after which notice, and when a listing must go, are the bureau
//! connector's decisions.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::db::args;
use super::{date, Result, Store, StoreError};

/// A customer to look up at the bureau.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BureauLookup {
    pub customer_id: i64,
    pub company: String,
    pub code: String,
    pub name: String,
    pub country: String,
}

/// What the bureau answered for one customer; `None` from
/// [`Store::record_bureau_scores`]'s point of view: the bureau does not know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BureauScore {
    pub score: i64,
    pub risk_class: String,
}

/// An open item that could be listed: past due, neither on hold nor in an open
/// dispute, and not listed with this bureau already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BureauCandidate {
    pub item_id: i64,
    pub company: String,
    pub customer: String,
    pub document_no: String,
    pub open_amount: Decimal,
    pub currency: String,
    pub due_date: NaiveDate,
}

/// A listing the bureau still holds, with the state of its item today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveListing {
    pub id: i64,
    pub item_id: i64,
    pub listing_ref: String,
    /// False once the item is paid (cleared) or otherwise no longer open.
    pub item_open: bool,
    /// The item is in a dispute not yet resolved.
    pub disputed: bool,
}

/// Why a listing was removed, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    Paid,
    Disputed,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalReason::Paid => "paid",
            RemovalReason::Disputed => "disputed",
        }
    }
}

/// A listing as recorded, removed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingRecord {
    pub item_id: i64,
    pub bureau: String,
    pub listing_ref: String,
    pub listed_on: NaiveDate,
    pub removed_on: Option<NaiveDate>,
    pub reason: Option<String>,
}

/// The JSON form of an escalation's items: `[[item, level], …]`.
type EscalatedItems = Vec<(i64, i64)>;

impl Store {
    /// Customers with open items whose score is missing or was fetched before
    /// `stale_before` (RFC 3339), never asked first, then oldest answer first; at
    /// most `limit`.
    pub fn bureau_lookups_due(
        &self,
        stale_before: &str,
        limit: usize,
    ) -> Result<Vec<BureauLookup>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db()
            .rows(
                "SELECT c.id, c.company, c.code, c.name, c.country FROM customers c
                 LEFT JOIN bureau_scores b ON b.customer_id = c.id
                 WHERE EXISTS (SELECT 1 FROM items i WHERE i.customer_id = c.id AND i.status = 'open')
                   AND (b.fetched_at IS NULL OR b.fetched_at < ?1)
                 ORDER BY b.fetched_at IS NOT NULL, b.fetched_at, c.id LIMIT ?2",
                args![stale_before, limit],
            )?
            .iter()
            .map(|r| {
                Ok(BureauLookup {
                    customer_id: r.get(0, "customers.id")?,
                    company: r.get(1, "customers.company")?,
                    code: r.get(2, "customers.code")?,
                    name: r.get(3, "customers.name")?,
                    country: r.get(4, "customers.country")?,
                })
            })
            .collect()
    }

    /// Records one sync's answers (`None`: the bureau does not know the customer),
    /// all fetched at `fetched_at` (RFC 3339), with one audit record by `principal`:
    /// all or nothing, so a failed write leaves every customer due again.
    pub fn record_bureau_scores(
        &mut self,
        principal: &str,
        bureau: &str,
        answers: &[(i64, Option<BureauScore>)],
        fetched_at: &str,
    ) -> Result<()> {
        let known = answers.iter().filter(|(_, r)| r.is_some()).count();
        self.audited(principal, "bureau.scores", bureau, |st| {
            let db = st.db();
            let mut w = db.prepare(
                "INSERT INTO bureau_scores(customer_id, bureau, score, risk_class, fetched_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(customer_id) DO UPDATE SET bureau = excluded.bureau, score = excluded.score,
                     risk_class = excluded.risk_class, fetched_at = excluded.fetched_at",
            )?;
            for (id, r) in answers {
                w.execute(args![
                    *id,
                    bureau,
                    r.as_ref().map(|r| r.score),
                    r.as_ref().map(|r| r.risk_class.as_str()),
                    fetched_at
                ])?;
            }
            let after = serde_json::json!({ "looked_up": answers.len(), "known": known });
            Ok::<_, StoreError>(((), serde_json::Value::Null, after))
        })
    }

    /// The items covered by escalations at level `level_name` that were sent, each
    /// with the earliest business date of such a notice.
    pub fn sent_notices(&self, level_name: &str) -> Result<HashMap<i64, NaiveDate>> {
        let mut out: HashMap<i64, NaiveDate> = HashMap::new();
        self.db().each(
            "SELECT as_of, items FROM escalations WHERE level_name = ?1 AND status = 'sent'",
            args![level_name],
            |r| {
                let on = r.date(0, "escalations.as_of")?;
                let items: String = r.get(1, "escalations.items")?;
                // An unreadable item list covers nothing: it cannot prove a notice, and
                // one such row must not stop every other listing.
                let items: EscalatedItems = serde_json::from_str(&items).unwrap_or_default();
                for (item, _) in items {
                    out.entry(item)
                        .and_modify(|d| *d = (*d).min(on))
                        .or_insert(on);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Open items past due on `as_of`, neither on hold (the item's own hold still
    /// running, or a customer hold in force) nor in an open dispute, and not listed
    /// with `bureau` now; by item id.
    pub fn bureau_candidates(
        &self,
        bureau: &str,
        as_of: NaiveDate,
    ) -> Result<Vec<BureauCandidate>> {
        self.db()
            .rows(
                "SELECT i.id, cu.company, cu.code, i.document_no, i.open_amount, i.currency, i.due_date
                 FROM items i JOIN customers cu ON cu.id = i.customer_id
                 WHERE i.status = 'open' AND i.due_date < ?1
                   AND (i.hold_reason IS NULL OR (i.hold_until IS NOT NULL AND i.hold_until < ?1))
                   AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.customer_id = i.customer_id
                                   AND h.created_on <= ?1 AND (h.until IS NULL OR h.until >= ?1))
                   AND NOT EXISTS (SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                                   WHERE di.item_id = i.id AND d.resolved_on IS NULL)
                   AND NOT EXISTS (SELECT 1 FROM bureau_listings l
                                   WHERE l.item_id = i.id AND l.bureau = ?2 AND l.removed_on IS NULL)
                 ORDER BY i.id",
                args![as_of, bureau],
            )?
            .iter()
            .map(|r| {
                Ok(BureauCandidate {
                    item_id: r.get(0, "items.id")?,
                    company: r.get(1, "customers.company")?,
                    customer: r.get(2, "customers.code")?,
                    document_no: r.get(3, "items.document_no")?,
                    open_amount: r.dec(4, "items.open_amount")?,
                    currency: r.get(5, "items.currency")?,
                    due_date: r.date(6, "items.due_date")?,
                })
            })
            .collect()
    }

    /// The listings `bureau` holds now, oldest first, with their items' state.
    pub fn active_bureau_listings(&self, bureau: &str) -> Result<Vec<ActiveListing>> {
        self.db()
            .rows(
                "SELECT l.id, l.item_id, l.listing_ref, i.status = 'open',
                        EXISTS (SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                                WHERE di.item_id = i.id AND d.resolved_on IS NULL)
                 FROM bureau_listings l JOIN items i ON i.id = l.item_id
                 WHERE l.bureau = ?1 AND l.removed_on IS NULL
                 ORDER BY l.id",
                args![bureau],
            )?
            .iter()
            .map(|r| {
                Ok(ActiveListing {
                    id: r.get(0, "bureau_listings.id")?,
                    item_id: r.get(1, "bureau_listings.item_id")?,
                    listing_ref: r.get(2, "bureau_listings.listing_ref")?,
                    item_open: r.get(3, "item_open")?,
                    disputed: r.get(4, "disputed")?,
                })
            })
            .collect()
    }

    /// Every listing of `item_id`, at any bureau, oldest first.
    pub fn item_bureau_listings(&self, item_id: i64) -> Result<Vec<ListingRecord>> {
        self.db()
            .rows(
                "SELECT item_id, bureau, listing_ref, listed_on, removed_on, reason
                 FROM bureau_listings WHERE item_id = ?1 ORDER BY id",
                args![item_id],
            )?
            .iter()
            .map(|r| {
                Ok(ListingRecord {
                    item_id: r.get(0, "bureau_listings.item_id")?,
                    bureau: r.get(1, "bureau_listings.bureau")?,
                    listing_ref: r.get(2, "bureau_listings.listing_ref")?,
                    listed_on: r.date(3, "bureau_listings.listed_on")?,
                    removed_on: r
                        .get::<Option<String>>(4, "bureau_listings.removed_on")?
                        .map(|d| date("bureau_listings.removed_on", &d))
                        .transpose()?,
                    reason: r.get(5, "bureau_listings.reason")?,
                })
            })
            .collect()
    }

    /// Records that `bureau` listed `item` under `listing_ref` on `on`, audited by
    /// `principal` with what was listed.
    pub fn record_bureau_listing(
        &mut self,
        principal: &str,
        bureau: &str,
        item: &BureauCandidate,
        listing_ref: &str,
        on: NaiveDate,
    ) -> Result<()> {
        self.audited(principal, "bureau.list", listing_ref, |st| {
            st.db().execute(
                "INSERT INTO bureau_listings(item_id, bureau, listing_ref, listed_on) VALUES (?1, ?2, ?3, ?4)",
                args![item.item_id, bureau, listing_ref, on],
            )?;
            let after = serde_json::json!({
                "company": item.company, "customer": item.customer,
                "document_no": item.document_no, "amount": item.open_amount.to_string(),
                "currency": item.currency, "due_date": item.due_date.to_string(),
            });
            Ok::<_, StoreError>(((), serde_json::Value::Null, after))
        })
    }

    /// Records that listing `listing` (a row of [`Store::active_bureau_listings`]) was
    /// removed at the bureau on `on`, audited by `principal`.
    pub fn record_bureau_removal(
        &mut self,
        principal: &str,
        listing: &ActiveListing,
        on: NaiveDate,
        why: RemovalReason,
    ) -> Result<()> {
        let listing_ref = listing.listing_ref.as_str();
        self.audited(principal, "bureau.remove", listing_ref, |st| {
            st.db().execute(
                "UPDATE bureau_listings SET removed_on = ?2, reason = ?3 WHERE id = ?1",
                args![listing.id, on, why.as_str()],
            )?;
            let after =
                serde_json::json!({ "listing": listing_ref, "removed_because": why.as_str() });
            Ok::<_, StoreError>(((), serde_json::Value::Null, after))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    /// Customers 1–3 of ACME and items 1–7, all due 2026-09-01 unless said:
    /// 1 plain, 2 in an open dispute, 3 in a resolved dispute, 4 on an item hold
    /// still running, 5 of a customer on hold, 6 cleared, 7 not due yet.
    fn fill(s: &Store) {
        s.db().batch(
            "INSERT INTO customers(id, company, code, name, country) VALUES
                (1, 'ACME', 'A', 'A Ltd', 'DE'), (2, 'ACME', 'B', 'B Ltd', 'AT'), (3, 'ACME', 'C', 'C Ltd', 'DE');
             INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                               original_amount, open_amount, currency, hold_reason, hold_until, status) VALUES
                (1, 's', 'i1', 1, 'INV-1', '2026-08-01', '2026-09-01', '10.50', '10.50', 'EUR', NULL, NULL, 'open'),
                (2, 's', 'i2', 1, 'INV-2', '2026-08-01', '2026-09-01', '10', '10', 'EUR', NULL, NULL, 'open'),
                (3, 's', 'i3', 1, 'INV-3', '2026-08-01', '2026-09-01', '10', '10', 'EUR', NULL, NULL, 'open'),
                (4, 's', 'i4', 1, 'INV-4', '2026-08-01', '2026-09-01', '10', '10', 'EUR', 'checking', '2026-12-01', 'open'),
                (5, 's', 'i5', 2, 'INV-5', '2026-08-01', '2026-09-01', '10', '10', 'EUR', NULL, NULL, 'open'),
                (6, 's', 'i6', 1, 'INV-6', '2026-08-01', '2026-09-01', '10', '0', 'EUR', NULL, NULL, 'cleared'),
                (7, 's', 'i7', 1, 'INV-7', '2026-08-01', '2026-12-31', '10', '10', 'EUR', NULL, NULL, 'open');
             INSERT INTO disputes(id, customer_id, reason, opened_on, resolved_on, resolution) VALUES
                (1, 1, 'wrong goods', '2026-10-01', NULL, NULL),
                (2, 1, 'wrong VAT', '2026-10-01', '2026-10-05', 'customer withdrew');
             INSERT INTO dispute_items(dispute_id, item_id) VALUES (1, 2), (2, 3);
             INSERT INTO holds(customer_id, reason, until, created_on) VALUES (2, 'insolvency', NULL, '2026-10-01');",
        )
        .unwrap();
    }

    fn notice(s: &Store, customer: i64, level: &str, on: &str, items: &str, status: &str) {
        s.db()
            .execute(
                "INSERT INTO escalations(customer_id, run_id, as_of, ladder, level, level_name, channel,
                     template, copy_manager, amount, items, reason, status)
                 VALUES (?1, 1, ?2, 'standard', 4, ?3, 'letter', ?3, 0, '10', ?4, 't', ?5)",
                args![customer, on, level, items, status],
            )
            .unwrap();
    }

    fn candidate_ids(s: &Store, on: &str) -> Vec<i64> {
        s.bureau_candidates("bureau", day(on))
            .unwrap()
            .iter()
            .map(|c| c.item_id)
            .collect()
    }

    crate::on_both!(
        candidates_are_open_overdue_items_neither_held_nor_disputed_nor_listed,
        |s| {
            fill(s);
            assert_eq!(candidate_ids(s, "2026-11-23"), vec![1, 3]);
            let c = &s.bureau_candidates("bureau", day("2026-11-23")).unwrap()[0];
            assert_eq!(
                c,
                &BureauCandidate {
                    item_id: 1,
                    company: "ACME".into(),
                    customer: "A".into(),
                    document_no: "INV-1".into(),
                    open_amount: "10.50".parse().unwrap(),
                    currency: "EUR".into(),
                    due_date: day("2026-09-01"),
                }
            );
            // The item hold has run out and the item fell due: both are candidates then.
            assert_eq!(candidate_ids(s, "2027-01-02"), vec![1, 3, 4, 7]);
            // Listed with this bureau: not a candidate there, still one at another.
            let first = c.clone();
            s.record_bureau_listing(
                "connector:bureau",
                "bureau",
                &first,
                "L1",
                day("2026-11-23"),
            )
            .unwrap();
            assert_eq!(candidate_ids(s, "2026-11-23"), vec![3]);
            let other: Vec<i64> = s
                .bureau_candidates("other", day("2026-11-23"))
                .unwrap()
                .iter()
                .map(|c| c.item_id)
                .collect();
            assert_eq!(other, vec![1, 3]);
        }
    );

    crate::on_both!(
        sent_notices_are_the_sent_ones_of_the_level_at_their_earliest_date,
        |s| {
            fill(s);
            notice(s, 1, "final_notice", "2026-11-10", "[[1,4],[3,4]]", "sent");
            notice(s, 1, "final_notice", "2026-11-01", "[[1,4]]", "sent");
            // One escalation per customer and day: the others go to customers 2 and 3.
            notice(s, 1, "final_notice", "2026-10-01", "[[2,4]]", "pending");
            notice(s, 2, "reminder_1", "2026-10-01", "[[7,1]]", "sent");
            notice(s, 3, "final_notice", "2026-10-01", "not json", "sent");
            let got = s.sent_notices("final_notice").unwrap();
            assert_eq!(
                got,
                HashMap::from([(1, day("2026-11-01")), (3, day("2026-11-10"))])
            );
        }
    );

    crate::on_both!(listings_are_recorded_removed_and_audited, |s| {
        fill(s);
        let c = s.bureau_candidates("bureau", day("2026-11-23")).unwrap();
        for (c, r) in c.iter().zip(["L1", "L3"]) {
            s.record_bureau_listing("connector:bureau", "bureau", c, r, day("2026-11-23"))
                .unwrap();
        }
        // Item 1 is paid, item 3's dispute is opened again.
        s.db()
            .batch(
                "UPDATE items SET status = 'cleared', open_amount = '0' WHERE id = 1;
                 UPDATE disputes SET resolved_on = NULL WHERE id = 2;",
            )
            .unwrap();
        let active = s.active_bureau_listings("bureau").unwrap();
        let state: Vec<(&str, i64, bool, bool)> = active
            .iter()
            .map(|l| (l.listing_ref.as_str(), l.item_id, l.item_open, l.disputed))
            .collect();
        assert_eq!(state, vec![("L1", 1, false, false), ("L3", 3, true, true)]);
        assert!(s.active_bureau_listings("other").unwrap().is_empty());

        s.record_bureau_removal(
            "connector:bureau",
            &active[0],
            day("2026-11-24"),
            RemovalReason::Paid,
        )
        .unwrap();
        assert_eq!(s.active_bureau_listings("bureau").unwrap().len(), 1);
        assert_eq!(
            s.item_bureau_listings(1).unwrap(),
            vec![ListingRecord {
                item_id: 1,
                bureau: "bureau".into(),
                listing_ref: "L1".into(),
                listed_on: day("2026-11-23"),
                removed_on: Some(day("2026-11-24")),
                reason: Some("paid".into()),
            }]
        );
        // Removed, the item can be listed again.
        assert_eq!(s.item_bureau_listings(3).unwrap()[0].removed_on, None);

        let audit: Vec<(String, String, serde_json::Value)> = s
            .audit_records(0, 100)
            .unwrap()
            .into_iter()
            .map(|r| (r.action, r.target, serde_json::from_str(&r.after).unwrap()))
            .collect();
        assert_eq!(
            audit,
            vec![
                (
                    "bureau.list".into(),
                    "L1".into(),
                    serde_json::json!({
                        "company": "ACME", "customer": "A", "document_no": "INV-1",
                        "amount": "10.50", "currency": "EUR", "due_date": "2026-09-01",
                    })
                ),
                (
                    "bureau.list".into(),
                    "L3".into(),
                    serde_json::json!({
                        "company": "ACME", "customer": "A", "document_no": "INV-3",
                        "amount": "10", "currency": "EUR", "due_date": "2026-09-01",
                    })
                ),
                (
                    "bureau.remove".into(),
                    "L1".into(),
                    serde_json::json!({ "listing": "L1", "removed_because": "paid" })
                ),
            ]
        );
    });

    crate::on_both!(
        lookups_are_due_for_customers_with_open_items_never_asked_or_stale_first,
        |s| {
            fill(s);
            // Customer 3 owes nothing: never looked up.
            let due = |s: &Store, before: &str, limit| -> Vec<i64> {
                s.bureau_lookups_due(before, limit)
                    .unwrap()
                    .iter()
                    .map(|l| l.customer_id)
                    .collect()
            };
            assert_eq!(due(s, "2026-11-23T00:00:00+00:00", 10), vec![1, 2]);
            assert_eq!(
                s.bureau_lookups_due("2026-11-23T00:00:00+00:00", 1)
                    .unwrap(),
                vec![BureauLookup {
                    customer_id: 1,
                    company: "ACME".into(),
                    code: "A".into(),
                    name: "A Ltd".into(),
                    country: "DE".into(),
                }]
            );
            let b = BureauScore {
                score: 700,
                risk_class: "B".into(),
            };
            s.record_bureau_scores(
                "connector:bureau",
                "bureau",
                &[(2, Some(b)), (1, None)],
                "2026-11-01T00:00:00+00:00",
            )
            .unwrap();
            assert!(
                due(s, "2026-11-01T00:00:00+00:00", 10).is_empty(),
                "both fresh"
            );
            s.record_bureau_scores(
                "connector:bureau",
                "bureau",
                &[(1, None)],
                "2026-11-02T00:00:00+00:00",
            )
            .unwrap();
            // Both stale: the older answer first.
            assert_eq!(due(s, "2026-11-23T00:00:00+00:00", 10), vec![2, 1]);
            type ScoreRow = (i64, String, Option<i64>, Option<String>, String);
            let scores: Vec<ScoreRow> = s
            .db()
            .rows(
                "SELECT customer_id, bureau, score, risk_class, fetched_at FROM bureau_scores ORDER BY customer_id",
                crate::db::args![],
            )
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get(0, "customer_id").unwrap(),
                    r.get(1, "bureau").unwrap(),
                    r.get(2, "score").unwrap(),
                    r.get(3, "risk_class").unwrap(),
                    r.get(4, "fetched_at").unwrap(),
                )
            })
            .collect();
            let fetched = |d: &str| format!("2026-11-{d}T00:00:00+00:00");
            assert_eq!(
                scores,
                vec![
                    (1, "bureau".into(), None, None, fetched("02")),
                    (
                        2,
                        "bureau".into(),
                        Some(700),
                        Some("B".into()),
                        fetched("01")
                    ),
                ]
            );
            // The customer view shows the score; on PostgreSQL once the view is ported
            // (customer.rs, moved separately).
            match s.customer_view(2, day("2026-11-23")) {
                Err(StoreError::NotOnPostgres(_)) if s.is_postgres() => {}
                view => assert_eq!(
                    view.unwrap().bureau,
                    Some(("bureau".into(), Some(700), Some("B".into()), fetched("01")))
                ),
            }
            let last = s.audit_records(0, 100).unwrap().pop().unwrap();
            assert_eq!(
                (last.action.as_str(), last.target.as_str()),
                ("bureau.scores", "bureau")
            );
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&last.after).unwrap(),
                serde_json::json!({ "looked_up": 1, "known": 0 })
            );
        }
    );

    crate::on_both!(holds_end_on_their_days, |s| {
        fill(s);
        // Item 4's hold runs to 2026-12-01 inclusive; customer 3's hold (item 8)
        // to 2026-11-30 inclusive and starts on 2026-11-02.
        s.db()
            .batch(
                "INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                                   original_amount, open_amount, currency) VALUES
                    (8, 's', 'i8', 3, 'INV-8', '2026-08-01', '2026-09-01', '5', '5', 'EUR');
                 INSERT INTO holds(customer_id, reason, until, created_on) VALUES (3, 'talks', '2026-11-30', '2026-11-02');",
            )
            .unwrap();
        assert_eq!(candidate_ids(s, "2026-11-01"), vec![1, 3, 8]);
        assert_eq!(candidate_ids(s, "2026-11-02"), vec![1, 3]);
        assert_eq!(candidate_ids(s, "2026-11-30"), vec![1, 3]);
        assert_eq!(candidate_ids(s, "2026-12-01"), vec![1, 3, 8]);
        assert_eq!(candidate_ids(s, "2026-12-02"), vec![1, 3, 4, 8]);
        // Due on the day: not yet past due.
        assert_eq!(candidate_ids(s, "2026-12-31"), vec![1, 3, 4, 8]);
    });

    crate::on_both!(a_failed_score_write_writes_nothing, |s| {
        fill(s);
        let b = BureauScore {
            score: 700,
            risk_class: "B".into(),
        };
        // Customer 9 does not exist.
        assert!(s
            .record_bureau_scores(
                "connector:bureau",
                "bureau",
                &[(1, Some(b)), (9, None)],
                "2026-11-01T00:00:00+00:00",
            )
            .is_err());
        let count = |s: &Store, sql: &str| -> i64 {
            s.db()
                .row(sql, crate::db::args![])
                .unwrap()
                .unwrap()
                .get(0, "count")
                .unwrap()
        };
        assert_eq!(count(s, "SELECT COUNT(*) FROM bureau_scores"), 0);
        assert_eq!(count(s, "SELECT COUNT(*) FROM audit"), 0);
        // Nothing was recorded: both are due still, and the store writes on.
        assert_eq!(
            s.bureau_lookups_due("2026-11-23T00:00:00+00:00", 10)
                .unwrap()
                .len(),
            2
        );
        s.record_bureau_scores(
            "connector:bureau",
            "bureau",
            &[(1, None)],
            "2026-11-01T00:00:00+00:00",
        )
        .unwrap();
        assert_eq!(count(s, "SELECT COUNT(*) FROM bureau_scores"), 1);
    });
}
