//! Reading worklists back for collectors.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::{date, dec, Result, Store};
use crate::domain::Priority;

#[derive(Debug, Clone, Serialize)]
pub struct WorklistEntry {
    pub customer: String,
    pub customer_name: String,
    pub company: String,
    pub group: String,
    /// `None`: unassigned work any collector of the group may take.
    pub collector: Option<String>,
    pub nad: NaiveDate,
    pub priority: Priority,
    pub score: Decimal,
    pub profile: String,
    pub segment: String,
    pub items: i64,
    /// Open amount in the rules' base currency.
    pub amount: Decimal,
    pub reason: String,
}

impl Store {
    /// "My worklist": assigned to `collector` plus unassigned entries of `groups`,
    /// ordered by next activity due date, then priority (high first), then score.
    pub fn worklist(
        &self,
        collector: &str,
        groups: &[String],
        limit: usize,
    ) -> Result<Vec<WorklistEntry>> {
        let groups_json = serde_json::to_string(groups).unwrap_or_else(|_| "[]".into());
        let mut st = self.conn.prepare_cached(
            "SELECT c.code, c.name, c.company, w.collection_group, w.collector, w.nad, w.priority, w.score,
                    s.profile, s.segment, w.items, w.amount, w.reason
             FROM worklist w JOIN customers c ON c.id = w.customer_id JOIN customer_state s ON s.customer_id = w.customer_id
             WHERE w.collector = ?1 OR (w.collector IS NULL AND w.collection_group IN (SELECT value FROM json_each(?2)))
             ORDER BY w.nad, w.priority DESC, CAST(w.score AS REAL) DESC, c.id LIMIT ?3",
        )?;
        let rows = st.query_map((collector, groups_json, limit as i64), |r| {
            Ok((
                [r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?],
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                [r.get::<_, String>(8)?, r.get(9)?],
                r.get::<_, i64>(10)?,
                r.get::<_, String>(11)?,
                r.get::<_, String>(12)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (
                [customer, customer_name, company, group],
                collector,
                nad,
                prio,
                score,
                [profile, segment],
                items,
                amount,
                reason,
            ) = r?;
            out.push(WorklistEntry {
                customer,
                customer_name,
                company,
                group,
                collector,
                nad: date("worklist.nad", &nad)?,
                priority: Priority::from_i64(prio),
                score: dec("worklist.score", &score)?,
                profile,
                segment,
                items,
                amount: dec("worklist.amount", &amount)?,
                reason,
            });
        }
        Ok(out)
    }

    /// Open case ids of a customer, oldest due first (for `case` commands by customer).
    pub fn open_cases_of(
        &self,
        customer_id: i64,
    ) -> Result<Vec<(i64, String, NaiveDate, Priority)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.id, i.document_no, c.nad, c.priority FROM cases c JOIN items i ON i.id = c.item_id
             WHERE c.customer_id = ?1 AND c.status = 'open' ORDER BY i.due_date, c.id",
        )?;
        let rows = st.query_map([customer_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (id, doc, nad, p) = r?;
            out.push((id, doc, date("cases.nad", &nad)?, Priority::from_i64(p)));
        }
        Ok(out)
    }
}
