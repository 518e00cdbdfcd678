//! Reading worklists back for collectors.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::db::{args, Arg, Db, RowRef};
use super::pg::Value;
use super::{date, Result, Store, StoreError};
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

/// One page (or all) of a worklist, on either database; the count of the whole
/// filtered list when `count`.
pub(crate) fn worklist_query(
    db: &Db,
    q: &WorklistQuery,
    count: bool,
    only: Option<&[i64]>,
) -> Result<(Vec<WorklistEntry>, Option<u64>)> {
    let mut cond: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let arg = |v: Value, args: &mut Vec<_>| {
        args.push(v);
        format!("?{}", args.len())
    };
    match &q.scope {
        WorklistScope::Collector { id, groups } => {
            let a = arg(Value::Text(id.clone()), &mut args);
            let g = arg(Value::Text(Db::json_list(groups)), &mut args);
            cond.push(format!(
                "(w.collector = {a} OR (w.collector IS NULL AND w.collection_group IN {}))",
                db.in_list(&g, "TEXT")
            ));
        }
        WorklistScope::Group(g) => {
            let a = arg(Value::Text(g.clone()), &mut args);
            cond.push(format!("w.collection_group = {a}"));
        }
        WorklistScope::All => {}
    }
    if let Some(p) = q.min_priority {
        let a = arg(Value::Int(p as i64), &mut args);
        cond.push(format!("w.priority >= {a}"));
    }
    if let Some(v) = &q.segment {
        let a = arg(Value::Text(v.clone()), &mut args);
        cond.push(format!("s.segment = {a}"));
    }
    if let Some(v) = &q.company {
        let a = arg(Value::Text(v.clone()), &mut args);
        cond.push(format!("c.company = {a}"));
    }
    if let Some(v) = &q.currency {
        let a = arg(Value::Text(v.clone()), &mut args);
        cond.push(format!(
            "EXISTS (SELECT 1 FROM items i WHERE i.customer_id = w.customer_id AND i.status = 'open' AND i.currency = {a})"
        ));
    }
    if let Some(ids) = only {
        let a = arg(Value::Text(Db::json_list(ids)), &mut args);
        cond.push(format!("w.customer_id IN {}", db.in_list(&a, "BIGINT")));
    }
    let filter = if cond.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", cond.join(" AND "))
    };
    let from = "FROM worklist w JOIN customers c ON c.id = w.customer_id JOIN customer_state s ON s.customer_id = w.customer_id";
    let refs: Vec<&dyn Arg> = args.iter().map(|v| v as &dyn Arg).collect();
    let total: Option<i64> = if count {
        Some(
            db.row(&format!("SELECT COUNT(*) {from} {filter}"), &refs)?
                .expect("a count")
                .get(0, "count")?,
        )
    } else {
        None
    };
    // Every entry (the daemon's view, a follower's patch): no LIMIT at all. With a
    // LIMIT parameter PostgreSQL's generic plan, chosen once the statement has
    // run a few times, plans for a few rows of the whole worklist: 3 ms instead
    // of 0.1 ms for a follower's one changed customer at a million items.
    let page = if q.limit == usize::MAX && q.offset == 0 {
        String::new()
    } else {
        let lim = arg(Value::Int(q.limit.min(i64::MAX as usize) as i64), &mut args);
        let off = arg(Value::Int(q.offset as i64), &mut args);
        format!("LIMIT {lim} OFFSET {off}")
    };
    let refs: Vec<&dyn Arg> = args.iter().map(|v| v as &dyn Arg).collect();
    let mut out = Vec::new();
    db.each(
        &format!(
            "SELECT c.code, c.name, c.company, w.collection_group, w.collector, w.nad, w.priority, w.score,
                    s.profile, s.segment, w.items, w.amount, w.reason, w.customer_id, s.as_of,
                    (SELECT MIN(i.due_date) FROM items i WHERE i.customer_id = w.customer_id AND i.status = 'open')
             {from} {filter}
             ORDER BY w.nad, w.priority DESC, {} DESC, c.id {page}",
            db.number("w.score")
        ),
        &refs,
        |r| {
            let oldest_due: Option<String> = r.get(15, "items.due_date")?;
            let as_of: String = r.get(14, "customer_state.as_of")?;
            let days_overdue = match oldest_due {
                Some(d) => (date("customer_state.as_of", &as_of)? - date("items.due_date", &d)?)
                    .num_days()
                    .max(0),
                None => 0,
            };
            out.push(WorklistEntry {
                customer: r.get(0, "customers.code")?,
                customer_name: r.get(1, "customers.name")?,
                company: r.get(2, "customers.company")?,
                group: r.get(3, "worklist.collection_group")?,
                collector: r.get(4, "worklist.collector")?,
                nad: r.date(5, "worklist.nad")?,
                priority: Priority::from_i64(r.get(6, "worklist.priority")?),
                score: r.dec(7, "worklist.score")?,
                profile: r.get(8, "customer_state.profile")?,
                segment: r.get(9, "customer_state.segment")?,
                items: r.get(10, "worklist.items")?,
                amount: r.dec(11, "worklist.amount")?,
                reason: r.get(12, "worklist.reason")?,
                customer_id: r.get(13, "worklist.customer_id")?,
                days_overdue,
            });
            Ok(())
        },
    )?;
    Ok((out, total.map(|t| t as u64)))
}

/// The currencies of each customer's open items (of `customers`, or of all).
pub(crate) fn open_currencies(
    db: &Db,
    customers: Option<&[i64]>,
) -> Result<std::collections::HashMap<i64, Vec<String>>> {
    let mut out: std::collections::HashMap<i64, Vec<String>> = Default::default();
    let mut add = |r: &RowRef| {
        out.entry(r.get(0, "items.customer_id")?)
            .or_default()
            .push(r.get(1, "items.currency")?);
        Ok(())
    };
    match customers {
        Some(ids) => db.each(
            &format!(
                "SELECT DISTINCT customer_id, currency FROM items
                 WHERE status = 'open' AND customer_id IN {} ORDER BY customer_id, currency",
                db.in_list("?1", "BIGINT")
            ),
            args![Db::json_list(ids)],
            &mut add,
        )?,
        None => db.each(
            "SELECT DISTINCT customer_id, currency FROM items WHERE status = 'open'
             ORDER BY customer_id, currency",
            args![],
            &mut add,
        )?,
    }
    Ok(out)
}

/// The customers the runs after run `shown` may have rewritten the entries of,
/// sorted: `None` when the store does not hold run `shown` (a restored database,
/// a standby that lagged) or a run since names none (a full run, or one whose
/// list was cleared).
fn touched_since(db: &Db, shown: i64) -> Result<Option<Vec<i64>>> {
    let mut runs: Vec<(i64, Option<String>)> = Vec::new();
    db.each(
        "SELECT id, touched FROM runs WHERE id >= ?1 ORDER BY id",
        args![shown],
        |r| {
            runs.push((r.get(0, "runs.id")?, r.get(1, "runs.touched")?));
            Ok(())
        },
    )?;
    if runs.first().map(|(id, _)| *id) != Some(shown) {
        return Ok(None);
    }
    let mut touched: Vec<i64> = Vec::new();
    for (id, list) in &runs[1..] {
        let Some(list) = list else { return Ok(None) };
        touched.extend(
            serde_json::from_str::<Vec<i64>>(list)
                .map_err(|e| StoreError::Invalid(format!("runs.touched of run {id}: {e}")))?,
        );
    }
    touched.sort_unstable();
    touched.dedup();
    Ok(Some(touched))
}

/// Case ids of a customer, open ones first, oldest due first.
pub(crate) fn cases_of(db: &Db, customer_id: i64, include_closed: bool) -> Result<Vec<i64>> {
    db.rows(
        "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id
         WHERE c.customer_id = ?1 AND (?2 OR c.status = 'open')
         ORDER BY c.status = 'open' DESC, i.due_date, c.id LIMIT 1000",
        args![customer_id, include_closed],
    )?
    .iter()
    .map(|r| r.get(0, "cases.id"))
    .collect()
}

/// Open case ids of a customer, oldest due first (for `case` commands by customer).
pub(crate) fn open_cases_of(
    db: &Db,
    customer_id: i64,
) -> Result<Vec<(i64, String, NaiveDate, Priority)>> {
    db.rows(
        "SELECT c.id, i.document_no, c.nad, c.priority FROM cases c JOIN items i ON i.id = c.item_id
         WHERE c.customer_id = ?1 AND c.status = 'open' ORDER BY i.due_date, c.id",
        args![customer_id],
    )?
    .iter()
    .map(|r| {
        Ok((
            r.get(0, "cases.id")?,
            r.get(1, "items.document_no")?,
            r.date(2, "cases.nad")?,
            Priority::from_i64(r.get(3, "cases.priority")?),
        ))
    })
    .collect()
}

/// What a reader that shows the worklists as a run left them reads to show the
/// latest run's ([`Store::worklist_since`]).
#[derive(Debug)]
pub enum WorklistSince {
    /// The run shown is the latest.
    Same,
    /// Every run since was incremental and still names the customers whose entries
    /// it may have rewritten (`touched`): their entries now (`entries`; a customer
    /// without one has none any more), and their open-item currencies when asked.
    Patch {
        run_id: i64,
        as_of: NaiveDate,
        touched: Vec<i64>,
        entries: Vec<WorklistEntry>,
        currencies: Option<HashMap<i64, Vec<String>>>,
    },
    /// A full run since, or one too far back to name its customers: every entry.
    Whole {
        run_id: i64,
        as_of: NaiveDate,
        entries: Vec<WorklistEntry>,
    },
}

impl Store {
    /// "My worklist": assigned to `collector` plus unassigned entries of
    /// `groups`, ordered by next activity due date, then priority (high
    /// first), then score.
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

    /// One page of a worklist and the number of entries in the whole
    /// filtered list.
    pub fn worklist_page(&self, q: &WorklistQuery) -> Result<(Vec<WorklistEntry>, u64)> {
        let (page, total) = worklist_query(&self.db(), q, true, None)?;
        Ok((page, total.unwrap_or_default()))
    }

    /// Every worklist entry in worklist order (the daemon's in-memory view),
    /// without the count a page needs.
    pub fn worklist_all(&self) -> Result<Vec<WorklistEntry>> {
        let q = WorklistQuery {
            limit: usize::MAX,
            ..WorklistQuery::default()
        };
        Ok(worklist_query(&self.db(), &q, false, None)?.0)
    }

    /// The entries of these customers only, in worklist order: what an
    /// incremental run rewrote, for a reader that keeps the rest in memory.
    pub fn worklist_of(&self, customers: &[i64]) -> Result<Vec<WorklistEntry>> {
        let q = WorklistQuery {
            limit: usize::MAX,
            ..WorklistQuery::default()
        };
        Ok(worklist_query(&self.db(), &q, false, Some(customers))?.0)
    }

    /// The worklists as the latest run left them, for a reader that shows them
    /// as run `shown` left them (a replica following the leader): only the
    /// entries the runs since may have rewritten when they all say which, else
    /// every entry. Read in one snapshot, so the run and its entries agree.
    pub fn worklist_since(&self, shown: Option<i64>, currencies: bool) -> Result<WorklistSince> {
        self.db().read(|db| {
            let Some(latest) = db.row(
                "SELECT id, as_of FROM runs ORDER BY id DESC LIMIT 1",
                args![],
            )?
            else {
                return Ok(WorklistSince::Same);
            };
            let (run_id, as_of) = (latest.get(0, "runs.id")?, latest.date(1, "runs.as_of")?);
            if shown == Some(run_id) {
                return Ok(WorklistSince::Same);
            }
            let touched = match shown {
                Some(shown) => touched_since(db, shown)?,
                None => None,
            };
            let all = WorklistQuery {
                limit: usize::MAX,
                ..WorklistQuery::default()
            };
            let Some(touched) = touched else {
                return Ok(WorklistSince::Whole {
                    run_id,
                    as_of,
                    entries: worklist_query(db, &all, false, None)?.0,
                });
            };
            let entries = worklist_query(db, &all, false, Some(&touched))?.0;
            let currencies = if currencies {
                Some(open_currencies(db, Some(&touched))?)
            } else {
                None
            };
            Ok(WorklistSince::Patch {
                run_id,
                as_of,
                touched,
                entries,
                currencies,
            })
        })
    }

    /// The currencies of each customer's open items, for a few customers
    /// (the ones a run just changed).
    pub fn open_currencies_of(
        &self,
        customers: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        open_currencies(&self.db(), Some(customers))
    }

    /// The currencies of each customer's open items.
    pub fn open_currencies(&self) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        open_currencies(&self.db(), None)
    }

    /// Case ids of a customer, open ones first, oldest due first.
    pub fn cases_of(&self, customer_id: i64, include_closed: bool) -> Result<Vec<i64>> {
        cases_of(&self.db(), customer_id, include_closed)
    }

    /// Open case ids of a customer, oldest due first (for `case` commands by
    /// customer).
    pub fn open_cases_of(
        &self,
        customer_id: i64,
    ) -> Result<Vec<(i64, String, NaiveDate, Priority)>> {
        open_cases_of(&self.db(), customer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "
        INSERT INTO customers(id, company, code, name) VALUES
            (1, 'A', 'C1', 'One'), (2, 'A', 'C2', 'Two'), (3, 'B', 'C3', 'Three'), (4, 'A', 'C4', 'Four');
        INSERT INTO customer_state(customer_id, strategy, segment, profile, score, collection_group,
                                   collector, priority, as_of) VALUES
            (1, 's', 'smb', 'p', '10.5', 'general', 'emma', 2, '2026-11-23'),
            (2, 's', 'key', 'p', '9.75', 'general', NULL, 2, '2026-11-23'),
            (3, 's', 'smb', 'p', '80', 'us', 'chen', 3, '2026-11-23'),
            (4, 's', 'smb', 'p', '100', 'general', 'dara', 1, '2026-11-23');
        INSERT INTO worklist(customer_id, collection_group, collector, score, priority, nad, items, amount, reason) VALUES
            (1, 'general', 'emma', '10.5', 2, '2026-11-23', 1, '100.00', 'r1'),
            (2, 'general', NULL, '9.75', 2, '2026-11-23', 1, '50.50', 'r2'),
            (3, 'us', 'chen', '80', 3, '2026-11-20', 1, '10.00', 'r3'),
            (4, 'general', 'dara', '100', 1, '2026-11-23', 1, '5.00', 'r4');
        INSERT INTO items(id, customer_id, document_no, document_date, due_date, currency,
                          original_amount, open_amount, source, external_id) VALUES
            (1, 1, 'D1', '2026-09-01', '2026-10-01', 'EUR', '100.00', '100.00', 't', '1'),
            (2, 2, 'D2', '2026-09-01', '2026-11-01', 'USD', '50.50', '50.50', 't', '2'),
            (3, 3, 'D3', '2026-09-01', '2026-11-30', 'EUR', '10.00', '10.00', 't', '3'),
            (4, 4, 'D4', '2026-09-01', '2026-10-15', 'EUR', '5.00', '5.00', 't', '4');
        INSERT INTO cases(id, item_id, customer_id, opened_on, nad, priority) VALUES
            (10, 1, 1, '2026-10-08', '2026-11-23', 2);";

    /// The same pages on either database: order (NAD, priority, score as a number),
    /// scopes, filters, counts, days overdue.
    fn pages(read: &dyn Fn(&WorklistQuery) -> (Vec<WorklistEntry>, u64)) -> Vec<String> {
        let show = |(page, total): (Vec<WorklistEntry>, u64)| {
            let ids: Vec<String> = page
                .iter()
                .map(|e| {
                    format!(
                        "{}:{}:{}:{}:{}",
                        e.customer, e.score, e.amount, e.days_overdue, e.nad
                    )
                })
                .collect();
            format!("{total} {}", ids.join(" "))
        };
        let q = |scope: WorklistScope| WorklistQuery {
            scope,
            limit: 10,
            ..WorklistQuery::default()
        };
        vec![
            show(read(&q(WorklistScope::All))),
            show(read(&q(WorklistScope::Collector {
                id: "emma".into(),
                groups: vec!["general".into()],
            }))),
            show(read(&q(WorklistScope::Group("us".into())))),
            show(read(&WorklistQuery {
                currency: Some("USD".into()),
                ..q(WorklistScope::All)
            })),
            show(read(&WorklistQuery {
                min_priority: Some(Priority::from_i64(2)),
                company: Some("A".into()),
                offset: 1,
                limit: 1,
                ..q(WorklistScope::All)
            })),
        ]
    }

    #[test]
    fn worklists_read_the_same_on_both_databases() {
        let dir = tempfile::tempdir().unwrap();
        let lite = Store::open(&dir.path().join("a.db")).unwrap();
        lite.conn().unwrap().execute_batch(FIXTURE).unwrap();
        let want = pages(&|q| lite.worklist_page(q).unwrap());
        assert_eq!(
            want,
            [
                "4 C3:80:10.00:0:2026-11-20 C1:10.5:100.00:53:2026-11-23 C2:9.75:50.50:22:2026-11-23 C4:100:5.00:39:2026-11-23",
                "2 C1:10.5:100.00:53:2026-11-23 C2:9.75:50.50:22:2026-11-23",
                "1 C3:80:10.00:0:2026-11-20",
                "1 C2:9.75:50.50:22:2026-11-23",
                "2 C2:9.75:50.50:22:2026-11-23",
            ]
        );
        let pg = crate::pg::testing::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let mut post = Store::open_postgres(&pg.database("books").unwrap()).unwrap();
        post.pg_client().batch_execute(FIXTURE).unwrap();
        assert_eq!(pages(&|q| post.worklist_page(q).unwrap()), want);
        assert_eq!(post.worklist_of(&[2, 3]).unwrap().len(), 2);
        assert_eq!(
            post.open_currencies_of(&[2]).unwrap(),
            lite.open_currencies_of(&[2]).unwrap()
        );
        assert_eq!(post.cases_of(1, true).unwrap(), [10]);
        assert_eq!(
            post.open_cases_of(1).unwrap(),
            lite.open_cases_of(1).unwrap()
        );
    }

    // Only the latest runs keep their lists: a reader further behind than those
    // reads every entry, one within them only the entries named since.
    crate::on_both!(only_the_latest_runs_keep_whom_they_touched, |s| {
        let as_of: NaiveDate = "2026-11-23".parse().unwrap();
        let mut ids = Vec::new();
        for n in 0..(crate::run_io::RUNS_KEEPING_TOUCHED + 6) {
            let out = crate::RunOutput {
                touched: Some(vec![n, n + 1]),
                ..Default::default()
            };
            ids.push(
                s.write_run(as_of, "h", "incremental", false, &out, "{}")
                    .unwrap()
                    .0,
            );
        }
        let kept: i64 = s
            .db()
            .row(
                "SELECT COUNT(*) FROM runs WHERE touched IS NOT NULL",
                args![],
            )
            .unwrap()
            .unwrap()
            .get(0, "count")
            .unwrap();
        assert_eq!(kept, crate::run_io::RUNS_KEEPING_TOUCHED);
        match s.worklist_since(Some(ids[2]), false).unwrap() {
            WorklistSince::Whole { run_id, .. } => assert_eq!(run_id, *ids.last().unwrap()),
            other => panic!("too far behind: every entry, not {other:?}"),
        }
        let behind = ids.len() - 3;
        match s.worklist_since(Some(ids[behind]), false).unwrap() {
            WorklistSince::Patch { touched, .. } => {
                let from = behind as i64 + 1;
                assert_eq!(touched, (from..=from + 2).collect::<Vec<_>>());
            }
            other => panic!("a few runs behind: a patch, not {other:?}"),
        }
        assert!(matches!(
            s.worklist_since(ids.last().copied(), false).unwrap(),
            WorklistSince::Same
        ));
        // A view of runs this store never held (a restored database) reads
        // everything, behind the latest run or past it.
        s.db()
            .execute("DELETE FROM runs WHERE id = ?1", args![ids[behind]])
            .unwrap();
        assert!(matches!(
            s.worklist_since(Some(ids[behind]), false).unwrap(),
            WorklistSince::Whole { .. }
        ));
        match s
            .worklist_since(Some(ids.last().unwrap() + 5), false)
            .unwrap()
        {
            WorklistSince::Whole { run_id, .. } => assert_eq!(run_id, *ids.last().unwrap()),
            other => panic!("a view past the store's runs: every entry, not {other:?}"),
        }
    });
}
