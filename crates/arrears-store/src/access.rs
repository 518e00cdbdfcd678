//! Who a customer, case, agreement or dispute belongs to: the facts authorisation
//! decides on. The decision itself is not made here (see `server::authz`).

use super::db::{args, Db};
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

/// The owner of a customer, on either database.
pub(crate) fn customer_owner(db: &Db, customer_id: i64) -> Result<Owner> {
    let r = db
        .row(
            "SELECT c.company || '/' || c.code, s.collection_group, s.collector
             FROM customers c LEFT JOIN customer_state s ON s.customer_id = c.id
             WHERE c.id = ?1",
            args![customer_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("customer {customer_id}")))?;
    let assignees = db
        .rows(
            "SELECT DISTINCT assigned_to FROM cases
             WHERE customer_id = ?1 AND status = 'open' AND assigned_to IS NOT NULL
             ORDER BY assigned_to",
            args![customer_id],
        )?
        .iter()
        .map(|r| r.get(0, "cases.assigned_to"))
        .collect::<Result<_>>()?;
    Ok(Owner {
        customer_id,
        customer: r.get(0, "customers.code")?,
        group: r.get(1, "customer_state.collection_group")?,
        collector: r.get(2, "customer_state.collector")?,
        assignees,
    })
}

/// A case belongs to whoever it was assigned to by hand, else to its customer's
/// collector; it is in its customer's group.
pub(crate) fn case_owner(db: &Db, case_id: i64) -> Result<Owner> {
    let r = db
        .row(
            "SELECT customer_id, assigned_to FROM cases WHERE id = ?1",
            args![case_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
    let mut o = customer_owner(db, r.get(0, "cases.customer_id")?)?;
    if let Some(assigned) = r.get::<Option<String>>(1, "cases.assigned_to")? {
        o.collector = Some(assigned);
    }
    o.assignees.clear();
    Ok(o)
}

/// The customer a record of `table` (agreements, disputes, items) belongs to.
pub(crate) fn customer_of(db: &Db, table: &'static str, what: &str, id: i64) -> Result<i64> {
    db.row(
        &format!("SELECT customer_id FROM {table} WHERE id = ?1"),
        args![id],
    )?
    .ok_or_else(|| StoreError::NotFound(format!("{what} {id}")))?
    .get(0, "customer_id")
}

/// A customer by `COMPANY/CODE`, by a code unique across companies, or by id.
pub(crate) fn customer_id(db: &Db, key: &str) -> Result<i64> {
    let rows = if let Some((company, code)) = key.split_once('/') {
        db.rows(
            "SELECT id FROM customers WHERE company = ?1 AND code = ?2",
            args![company, code],
        )?
    } else {
        db.rows(
            "SELECT id FROM customers WHERE code = ?1 OR CAST(id AS TEXT) = ?1",
            args![key],
        )?
    };
    let found: Vec<i64> = rows
        .iter()
        .map(|r| r.get(0, "customers.id"))
        .collect::<Result<_>>()?;
    match found.as_slice() {
        [id] => Ok(*id),
        [] => Err(StoreError::NotFound(format!("customer `{key}`"))),
        _ => Err(StoreError::Invalid(format!(
            "customer code `{key}` exists in several companies; write COMPANY/{key}"
        ))),
    }
}

impl Store {
    pub fn customer_owner(&self, customer_id: i64) -> Result<Owner> {
        customer_owner(&self.db(), customer_id)
    }

    pub fn case_owner(&self, case_id: i64) -> Result<Owner> {
        case_owner(&self.db(), case_id)
    }

    pub fn agreement_customer(&self, agreement_id: i64) -> Result<i64> {
        customer_of(&self.db(), "agreements", "agreement", agreement_id)
    }

    pub fn dispute_customer(&self, dispute_id: i64) -> Result<i64> {
        customer_of(&self.db(), "disputes", "dispute", dispute_id)
    }

    pub fn item_customer(&self, item_id: i64) -> Result<i64> {
        customer_of(&self.db(), "items", "item", item_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReachLookup;

    const FIXTURE: &str = "INSERT INTO customers(id, company, code, name) VALUES (1, 'A', 'C1', 'One'), (2, 'A', 'C2', 'Two');
         INSERT INTO customer_state(customer_id, strategy, segment, profile, score, collection_group,
                                    collector, priority, as_of)
             VALUES (1, 's', 'x', 'p', '0', 'general', 'emma', 1, '2026-01-01');
         INSERT INTO items(id, customer_id, document_no, document_date, due_date,
                           currency, original_amount, open_amount, source, external_id)
             VALUES (1, 1, 'D1', '2026-01-01', '2026-01-01', 'EUR', '1', '1', 't', '1'),
                    (2, 1, 'D2', '2026-01-01', '2026-01-01', 'EUR', '1', '1', 't', '2');
         INSERT INTO cases(id, item_id, customer_id, opened_on, nad, priority, assigned_to)
             VALUES (10, 1, 1, '2026-01-01', '2026-01-01', 1, NULL),
                    (11, 2, 1, '2026-01-01', '2026-01-01', 1, 'chen');";

    /// The same questions on either database.
    fn owners_follow_the_run_and_hand_assignments(s: &dyn ReachLookup) {
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
        assert_eq!(s.customer_id("A/C2").unwrap(), 2);
        assert_eq!(s.customer_id("C1").unwrap(), 1);
        assert!(matches!(
            s.customer_id("A/C9"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn owners_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        s.conn().unwrap().execute_batch(FIXTURE).unwrap();
        owners_follow_the_run_and_hand_assignments(&s);
    }

    #[test]
    fn owners_on_postgres() {
        let pg = crate::pg::testing::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let mut s = Store::open_postgres(&pg.database("books").unwrap()).unwrap();
        s.pg_client().batch_execute(FIXTURE).unwrap();
        owners_follow_the_run_and_hand_assignments(&s);
    }
}
