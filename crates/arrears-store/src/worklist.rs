//! Reading worklists back for collectors.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::{date, dec, Result, Store};
use arrears_core::domain::Priority;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorklistEntry {
    pub customer_id: i64,
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
    /// Days past due of the customer's oldest open item, as of the run that wrote the
    /// entry (0 when nothing is due yet): the same day the entry's NAD and priority
    /// were judged on, so it does not drift between runs.
    pub days_overdue: i64,
}

/// Which worklist, filtered how, which page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct WorklistQuery {
    pub scope: WorklistScope,
    pub min_priority: Option<Priority>,
    pub segment: Option<String>,
    pub company: Option<String>,
    /// Customers with an open item in this currency.
    pub currency: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum WorklistScope {
    /// Assigned to the collector plus unassigned entries of the groups.
    Collector { id: String, groups: Vec<String> },
    /// Every entry of one group.
    Group(String),
    #[default]
    All,
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
        let q = WorklistQuery {
            scope: WorklistScope::Collector {
                id: collector.into(),
                groups: groups.to_vec(),
            },
            limit,
            ..WorklistQuery::default()
        };
        Ok(self.worklist_page(&q)?.0)
    }

    /// One page of a worklist and the number of entries in the whole filtered list.
    pub fn worklist_page(&self, q: &WorklistQuery) -> Result<(Vec<WorklistEntry>, u64)> {
        let (page, total) = self.worklist_query(q, true, None)?;
        Ok((page, total.unwrap_or_default()))
    }

    /// Every worklist entry in worklist order (the daemon's in-memory view), without
    /// the count a page needs.
    pub fn worklist_all(&self) -> Result<Vec<WorklistEntry>> {
        let q = WorklistQuery {
            scope: WorklistScope::All,
            limit: i64::MAX as usize,
            ..WorklistQuery::default()
        };
        Ok(self.worklist_query(&q, false, None)?.0)
    }

    /// The entries of these customers only, in worklist order: what an incremental
    /// run rewrote, for a reader that keeps the rest in memory.
    pub fn worklist_of(&self, customers: &[i64]) -> Result<Vec<WorklistEntry>> {
        let q = WorklistQuery {
            scope: WorklistScope::All,
            limit: i64::MAX as usize,
            ..WorklistQuery::default()
        };
        Ok(self.worklist_query(&q, false, Some(customers))?.0)
    }

    fn worklist_query(
        &self,
        q: &WorklistQuery,
        count: bool,
        only: Option<&[i64]>,
    ) -> Result<(Vec<WorklistEntry>, Option<u64>)> {
        let mut cond: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let arg = |v: rusqlite::types::Value, args: &mut Vec<_>| {
            args.push(v);
            format!("?{}", args.len())
        };
        use rusqlite::types::Value::{Integer, Text};
        match &q.scope {
            WorklistScope::Collector { id, groups } => {
                let a = arg(Text(id.clone()), &mut args);
                let g = arg(
                    Text(serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())),
                    &mut args,
                );
                cond.push(format!(
                    "(w.collector = {a} OR (w.collector IS NULL AND w.collection_group IN (SELECT value FROM json_each({g}))))"
                ));
            }
            WorklistScope::Group(g) => {
                let a = arg(Text(g.clone()), &mut args);
                cond.push(format!("w.collection_group = {a}"));
            }
            WorklistScope::All => {}
        }
        if let Some(p) = q.min_priority {
            let a = arg(Integer(p as i64), &mut args);
            cond.push(format!("w.priority >= {a}"));
        }
        if let Some(v) = &q.segment {
            let a = arg(Text(v.clone()), &mut args);
            cond.push(format!("s.segment = {a}"));
        }
        if let Some(v) = &q.company {
            let a = arg(Text(v.clone()), &mut args);
            cond.push(format!("c.company = {a}"));
        }
        if let Some(v) = &q.currency {
            let a = arg(Text(v.clone()), &mut args);
            cond.push(format!(
                "EXISTS (SELECT 1 FROM items i WHERE i.customer_id = w.customer_id AND i.status = 'open' AND i.currency = {a})"
            ));
        }
        if let Some(ids) = only {
            let a = arg(
                Text(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())),
                &mut args,
            );
            cond.push(format!(
                "w.customer_id IN (SELECT value FROM json_each({a}))"
            ));
        }
        let filter = if cond.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", cond.join(" AND "))
        };
        let from = "FROM worklist w JOIN customers c ON c.id = w.customer_id JOIN customer_state s ON s.customer_id = w.customer_id";
        let total: Option<i64> = if count {
            Some(self.conn.query_row(
                &format!("SELECT COUNT(*) {from} {filter}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )?)
        } else {
            None
        };
        let lim = arg(Integer(q.limit as i64), &mut args);
        let off = arg(Integer(q.offset as i64), &mut args);
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT c.code, c.name, c.company, w.collection_group, w.collector, w.nad, w.priority, w.score,
                    s.profile, s.segment, w.items, w.amount, w.reason, w.customer_id, s.as_of,
                    (SELECT MIN(i.due_date) FROM items i WHERE i.customer_id = w.customer_id AND i.status = 'open')
             {from} {filter}
             ORDER BY w.nad, w.priority DESC, CAST(w.score AS REAL) DESC, c.id LIMIT {lim} OFFSET {off}"
        ))?;
        let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
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
                r.get::<_, i64>(13)?,
                [r.get::<_, String>(14)?],
                r.get::<_, Option<String>>(15)?,
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
                customer_id,
                [as_of],
                oldest_due,
            ) = r?;
            let days_overdue = match oldest_due {
                Some(d) => (date("customer_state.as_of", &as_of)? - date("items.due_date", &d)?)
                    .num_days()
                    .max(0),
                None => 0,
            };
            out.push(WorklistEntry {
                customer_id,
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
                days_overdue,
            });
        }
        Ok((out, total.map(|t| t as u64)))
    }

    /// The currencies of each customer's open items.
    /// [`Store::open_currencies`] for a few customers (the ones a run just changed).
    pub fn open_currencies_of(
        &self,
        customers: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT customer_id, currency FROM items
             WHERE status = 'open' AND customer_id IN (SELECT value FROM json_each(?1))",
        )?;
        let ids = serde_json::to_string(customers).unwrap_or_else(|_| "[]".into());
        let mut out: std::collections::HashMap<i64, Vec<String>> = Default::default();
        let rows = st.query_map([ids], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for r in rows {
            let (c, cur) = r?;
            out.entry(c).or_default().push(cur);
        }
        Ok(out)
    }

    pub fn open_currencies(&self) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT customer_id, currency FROM items WHERE status = 'open'")?;
        let mut out: std::collections::HashMap<i64, Vec<String>> = Default::default();
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for r in rows {
            let (c, cur) = r?;
            out.entry(c).or_default().push(cur);
        }
        Ok(out)
    }

    /// Case ids of a customer, open ones first, oldest due first.
    pub fn cases_of(&self, customer_id: i64, include_closed: bool) -> Result<Vec<i64>> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id
             WHERE c.customer_id = ?1 AND (?2 OR c.status = 'open')
             ORDER BY c.status = 'open' DESC, i.due_date, c.id LIMIT 1000",
        )?;
        let ids = st
            .query_map(rusqlite::params![customer_id, include_closed], |r| r.get(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        Ok(ids)
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
