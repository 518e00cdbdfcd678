//! Who a customer, case, agreement or dispute belongs to: the facts authorisation
//! decides on. The decision itself is not made here (see `server::authz`).

use rusqlite::OptionalExtension;

use super::{Result, Store, StoreError};

/// The assignment of one customer (or of one of its cases).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub customer_id: i64,
    /// COMPANY/CODE, to name the customer in a refusal.
    pub customer: String,
    /// The collection group the last run routed the customer to; `None` before the
    /// customer's first run, when no group has claimed it yet.
    pub group: Option<String>,
    /// The collector the worklist balanced the customer to; for a case, the case's
    /// own assignee when it was assigned by hand.
    pub collector: Option<String>,
    /// Collectors that open cases of the customer are assigned to by hand: they work
    /// those cases, so they may read the customer they belong to.
    pub assignees: Vec<String>,
}

impl Store {
    pub fn customer_owner(&self, customer_id: i64) -> Result<Owner> {
        let row: Option<(String, Option<String>, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT c.company || '/' || c.code, s.collection_group, s.collector
                 FROM customers c LEFT JOIN customer_state s ON s.customer_id = c.id
                 WHERE c.id = ?1",
            )?
            .query_row([customer_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let (customer, group, collector) =
            row.ok_or_else(|| StoreError::NotFound(format!("customer {customer_id}")))?;
        let assignees = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT assigned_to FROM cases
                 WHERE customer_id = ?1 AND status = 'open' AND assigned_to IS NOT NULL
                 ORDER BY assigned_to",
            )?
            .query_map([customer_id], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(Owner {
            customer_id,
            customer,
            group,
            collector,
            assignees,
        })
    }

    /// A case belongs to whoever it was assigned to by hand, else to its customer's
    /// collector; it is in its customer's group.
    pub fn case_owner(&self, case_id: i64) -> Result<Owner> {
        let row: Option<(i64, Option<String>)> = self
            .conn
            .prepare_cached("SELECT customer_id, assigned_to FROM cases WHERE id = ?1")?
            .query_row([case_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (customer_id, assigned) =
            row.ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
        let mut o = self.customer_owner(customer_id)?;
        if assigned.is_some() {
            o.collector = assigned;
        }
        o.assignees.clear();
        Ok(o)
    }

    pub fn agreement_customer(&self, agreement_id: i64) -> Result<i64> {
        self.customer_of("agreements", "agreement", agreement_id)
    }

    pub fn dispute_customer(&self, dispute_id: i64) -> Result<i64> {
        self.customer_of("disputes", "dispute", dispute_id)
    }

    pub fn item_customer(&self, item_id: i64) -> Result<i64> {
        self.customer_of("items", "item", item_id)
    }

    fn customer_of(&self, table: &'static str, what: &str, id: i64) -> Result<i64> {
        self.conn
            .prepare_cached(&format!("SELECT customer_id FROM {table} WHERE id = ?1"))?
            .query_row([id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("{what} {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_run_and_hand_assignments() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        let c = s.conn();
        c.execute_batch(
            "INSERT INTO customers(id, company, code, name) VALUES (1, 'A', 'C1', 'One'), (2, 'A', 'C2', 'Two');
             INSERT INTO customer_state(customer_id, strategy, segment, profile, score, collection_group,
                                        collector, priority, as_of)
                 VALUES (1, 's', 'x', 'p', '0', 'general', 'emma', 1, '2026-01-01');
             INSERT INTO items(id, customer_id, document_no, document_date, due_date,
                               currency, original_amount, open_amount, source, external_id)
                 VALUES (1, 1, 'D1', '2026-01-01', '2026-01-01', 'EUR', '1', '1', 't', '1'),
                        (2, 1, 'D2', '2026-01-01', '2026-01-01', 'EUR', '1', '1', 't', '2');
             INSERT INTO cases(id, item_id, customer_id, opened_on, nad, priority, assigned_to)
                 VALUES (10, 1, 1, '2026-01-01', '2026-01-01', 1, NULL),
                        (11, 2, 1, '2026-01-01', '2026-01-01', 1, 'chen');",
        )
        .unwrap();
        let o = s.customer_owner(1).unwrap();
        assert_eq!(o.customer, "A/C1");
        assert_eq!(o.group.as_deref(), Some("general"));
        assert_eq!(o.collector.as_deref(), Some("emma"));
        assert_eq!(o.assignees, vec!["chen".to_string()]);
        assert_eq!(s.case_owner(10).unwrap().collector.as_deref(), Some("emma"));
        let pinned = s.case_owner(11).unwrap();
        assert_eq!(pinned.collector.as_deref(), Some("chen"));
        assert!(pinned.assignees.is_empty());
        let fresh = s.customer_owner(2).unwrap();
        assert_eq!((fresh.group, fresh.collector), (None, None));
        assert!(matches!(s.case_owner(99), Err(StoreError::NotFound(_))));
    }
}
