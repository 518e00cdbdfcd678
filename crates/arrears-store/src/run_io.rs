//! What a portfolio run reads from and writes to the store.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::db::{args, Arg, Db, Row, RowRef};
use super::pg::Value;
use super::{date, dec, Result, Store, StoreError};

/// How many of the latest runs keep the list of customers they touched
/// (`runs.touched`): a replica at most this many runs behind reads only their
/// entries again.
pub(crate) const RUNS_KEEPING_TOUCHED: i64 = 64;

use arrears_core::domain::{Activity, ErpDunning, Hold, Priority, PromiseStatus};
use arrears_core::money::Currency;
pub use arrears_core::portfolio::*;

/// The change log's newest sequence number, even after its entries were pruned.
pub(crate) const CHANGE_SEQ: &str = "(SELECT seq FROM sqlite_sequence WHERE name = 'changes')";

/// See [`Store::changes_since`].
#[derive(Debug, Default)]
pub struct ChangesSince {
    pub last_run: Option<i64>,
    /// The log's newest entry.
    pub seq: i64,
    /// (customer, item) in the log's order; no item: the customer as a whole.
    pub entries: Vec<(i64, Option<i64>)>,
    /// (customer, change counter) of every customer marked changed, by id.
    pub dirty: Vec<(i64, i64)>,
}

struct ItemFlags {
    disputed: HashSet<i64>,
    promised: HashMap<i64, ItemPromise>,
}

/// Which customers a load covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    /// Customers changed since the last run.
    Dirty,
    One(i64),
    /// These customers. Unlike `All` and `Dirty`, such a load does not say up to
    /// which change it read: the caller read the change log itself.
    Ids(&'a [i64]),
}

impl Scope<'_> {
    fn filter(self, col: &str) -> String {
        match self {
            Scope::All => "1 = 1".into(),
            Scope::Dirty => format!("{col} IN (SELECT id FROM customers WHERE dirty <> 0)"),
            Scope::One(id) => format!("{col} = {id}"),
            Scope::Ids([]) => "1 = 0".into(),
            Scope::Ids(ids) => format!("{col} IN ({})", id_list(ids)),
        }
    }
}

/// Which items [`Store::item_flags`] reads flags for.
enum FlagScope<'a> {
    All,
    /// A filter on `i.customer_id`.
    Customers(String),
    /// A comma-separated list of item ids.
    Items(&'a str),
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Runs `sql` (customer id in column 0) and hands each row of a loaded customer to `f`
/// with that customer's index in the output.
fn per_customer(
    db: &Db,
    sql: &str,
    index: &HashMap<i64, usize>,
    mut f: impl FnMut(&RowRef, usize) -> Result<()>,
) -> Result<()> {
    db.each(sql, args![], |r| {
        if let Some(&k) = index.get(&r.get::<i64>(0, "customer_id")?) {
            f(r, k)?;
        }
        Ok(())
    })
}

fn cur(column: &'static str, s: &str) -> Result<Currency> {
    Currency::parse(s).map_err(|_| StoreError::Corrupt {
        column,
        value: s.to_string(),
    })
}

fn opt_date(column: &'static str, s: Option<String>) -> Result<Option<NaiveDate>> {
    s.map(|s| date(column, &s)).transpose()
}

impl Store {
    /// Loads the run input for `scope`, ordered by customer id.
    pub fn load_run_input(&self, scope: Scope) -> Result<Vec<RunInput>> {
        let c = &self.db();
        if matches!(scope, Scope::All | Scope::Dirty) {
            // Read before the customers: a change committed in between is loaded
            // too and merely costs one more run, never a missed one.
            self.changes_at_load.set(Some(
                c.row(&format!("SELECT {}", c.change_seq()), args![])?
                    .expect("a row")
                    .get(0, "change log head")?,
            ));
        }
        let mut t = std::time::Instant::now();
        let mut lap = |what: &str| {
            tracing::debug!(what, ms = t.elapsed().as_millis() as u64, "load");
            t = std::time::Instant::now();
        };
        let mut out: Vec<RunInput> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        c.each(
            &format!(
                "SELECT id, company, code, name, country, credit_limit, credit_currency, s.dunning_level, s.dunning_on, s.collector, dirty,
                        s.strategy, s.segment, s.profile, s.score, s.collection_group, s.priority, s.as_of,
                        dunning_procedure
                 FROM customers LEFT JOIN customer_state s ON s.customer_id = customers.id WHERE {} ORDER BY id",
                scope.filter("id")
            ),
            args![],
            |r| {
                let id: i64 = r.get(0, "customers.id")?;
                let limit = match (
                    r.get::<Option<String>>(5, "customers.credit_limit")?,
                    r.get::<Option<String>>(6, "customers.credit_currency")?,
                ) {
                    (Some(a), Some(c)) => {
                        Some((dec("credit_limit", &a)?, cur("credit_currency", &c)?))
                    }
                    _ => None,
                };
                let dunning_level = r
                    .get::<Option<i64>>(7, "customer_state.dunning_level")?
                    .unwrap_or(0) as usize;
                let dunning_on = opt_date("dunning_on", r.get(8, "customer_state.dunning_on")?)?;
                let collector: Option<String> = r.get(9, "customer_state.collector")?;
                let written = match r.get::<Option<String>>(17, "customer_state.as_of")? {
                    Some(on) => Some((
                        StateOut {
                            customer_id: id,
                            strategy: r.get(11, "customer_state.strategy")?,
                            segment: r.get(12, "customer_state.segment")?,
                            profile: r.get(13, "customer_state.profile")?,
                            score: r.dec(14, "customer_state.score")?,
                            group: r.get(15, "customer_state.collection_group")?,
                            collector: collector.clone(),
                            priority: Priority::from_i64(r.get(16, "customer_state.priority")?),
                            dunning_level,
                            dunning_on,
                        },
                        date("customer_state.as_of", &on)?,
                    )),
                    None => None,
                };
                index.insert(id, out.len());
                out.push(RunInput {
                    customer: CustomerRow {
                        id,
                        company: r.get(1, "customers.company")?,
                        code: r.get(2, "customers.code")?,
                        name: r.get(3, "customers.name")?,
                        country: r.get(4, "customers.country")?,
                        credit_limit: limit,
                        dunning: ErpDunning::from_stored(r.get(18, "customers.dunning_procedure")?),
                    },
                    items: Vec::new(),
                    promises: Vec::new(),
                    payments: Vec::new(),
                    holds: Vec::new(),
                    resubmission: None,
                    state: StoredState {
                        dunning_level,
                        dunning_on,
                        collector,
                        written,
                    },
                    listed: None,
                    changes: r.get(10, "customers.dirty")?,
                });
                Ok(())
            },
        )?;
        lap("customers");
        let flags = self.item_flags(match scope {
            Scope::All => FlagScope::All,
            _ => FlagScope::Customers(scope.filter("i.customer_id")),
        })?;
        self.item_rows(&scope.filter("i.customer_id"), &flags, |cid, item| {
            if let Some(&k) = index.get(&cid) {
                out[k].items.push(item);
            }
            Ok(())
        })?;
        lap("items");
        for input in &mut out {
            let cid = input.customer.id;
            for it in input.items.iter_mut() {
                self.resolve_root(cid, it)?;
            }
        }
        let filter = scope.filter("customer_id");
        per_customer(
            c,
            &format!("SELECT customer_id, amount, currency, promised_on, status, judged_on, paid_on FROM promises WHERE {filter} ORDER BY promised_on, id"),
            &index,
            |r, k| {
                out[k].promises.push(PromiseRow {
                    amount: r.dec(1, "promises.amount")?,
                    currency: cur("promises.currency", &r.str(2, "promises.currency")?)?,
                    promised_on: r.date(3, "promises.promised_on")?,
                    status: PromiseStatus::parse(&r.str(4, "promises.status")?),
                    judged_on: opt_date("promises.judged_on", r.get(5, "promises.judged_on")?)?,
                    paid_on: opt_date("promises.paid_on", r.get(6, "promises.paid_on")?)?,
                });
                Ok(())
            },
        )?;
        per_customer(
            c,
            &format!("SELECT customer_id, amount, currency, value_date FROM payments WHERE {filter} ORDER BY value_date, id"),
            &index,
            |r, k| {
                out[k].payments.push(PaymentRow {
                    amount: r.dec(1, "payments.amount")?,
                    currency: cur("payments.currency", &r.str(2, "payments.currency")?)?,
                    value_date: r.date(3, "payments.value_date")?,
                });
                Ok(())
            },
        )?;
        lap("promises and payments");
        per_customer(
            c,
            &format!("SELECT customer_id, reason, until FROM holds WHERE {filter} ORDER BY id"),
            &index,
            |r, k| {
                out[k].holds.push(Hold {
                    reason: r.get(1, "holds.reason")?,
                    until: opt_date("holds.until", r.get(2, "holds.until")?)?,
                });
                Ok(())
            },
        )?;
        per_customer(
            c,
            &format!("SELECT customer_id, MAX(on_date) FROM resubmissions WHERE {filter} GROUP BY customer_id"),
            &index,
            |r, k| {
                out[k].resubmission =
                    opt_date("resubmissions.on_date", r.get(1, "resubmissions.on_date")?)?;
                Ok(())
            },
        )?;
        per_customer(
            c,
            &format!("SELECT customer_id, collection_group, collector, score, priority, nad, items, amount, reason FROM worklist WHERE {filter}"),
            &index,
            |r, k| {
                out[k].listed = Some(WorklistOut {
                    customer_id: r.get(0, "worklist.customer_id")?,
                    group: r.get(1, "worklist.collection_group")?,
                    collector: r.get(2, "worklist.collector")?,
                    score: r.dec(3, "worklist.score")?,
                    priority: Priority::from_i64(r.get(4, "worklist.priority")?),
                    nad: r.date(5, "worklist.nad")?,
                    items: r.get(6, "worklist.items")?,
                    amount: r.dec(7, "worklist.amount")?,
                    reason: r.get(8, "worklist.reason")?,
                });
                Ok(())
            },
        )?;
        lap("rest");
        Ok(out)
    }

    /// Items by id, as [`Store::load_run_input`] would load them, with their customer:
    /// an item it would not load (cleared, its case closed) is left out.
    pub fn load_items(&self, ids: &[i64]) -> Result<Vec<(i64, ItemRow)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = id_list(ids);
        let filter = format!("i.id IN ({list})");
        let flags = self.item_flags(FlagScope::Items(&list))?;
        let mut out = Vec::with_capacity(ids.len());
        self.item_rows(&filter, &flags, |cid, item| {
            out.push((cid, item));
            Ok(())
        })?;
        for (cid, it) in &mut out {
            self.resolve_root(*cid, it)?;
        }
        Ok(out)
    }

    /// The items under `filter` that are disputed, and the promise each is under.
    /// Scoped to the items a load reads: unscoped, the planner walks every open
    /// item, the most an incremental run of one customer cost at a million items. A
    /// load of everything, or of items by id, drives from the (few) dispute and
    /// promise rows: probing the items table for each of 10k changed items cost
    /// 45 ms at a million items.
    fn item_flags(&self, scope: FlagScope) -> Result<ItemFlags> {
        // CROSS JOIN fixes SQLite's join order (it starts from the few dispute and
        // promise rows); the join conditions are in WHERE, where PostgreSQL wants
        // them after a CROSS JOIN.
        let (disputed_sql, promised_sql) = match scope {
            FlagScope::All => (
                "SELECT di.item_id FROM dispute_items di CROSS JOIN disputes d
                 WHERE d.id = di.dispute_id AND d.resolved_on IS NULL"
                    .to_string(),
                "SELECT pi.item_id, p.promised_on, p.created_on, p.status FROM promise_items pi
                 CROSS JOIN promises p CROSS JOIN items i
                 WHERE p.id = pi.promise_id AND i.id = pi.item_id AND i.status = 'open' ORDER BY p.id"
                    .to_string(),
            ),
            FlagScope::Items(list) => (
                format!(
                    "SELECT di.item_id FROM dispute_items di CROSS JOIN disputes d
                     WHERE d.id = di.dispute_id AND d.resolved_on IS NULL AND di.item_id IN ({list})"
                ),
                format!(
                    "SELECT pi.item_id, p.promised_on, p.created_on, p.status FROM promise_items pi
                     CROSS JOIN promises p CROSS JOIN items i
                     WHERE p.id = pi.promise_id AND i.id = pi.item_id AND i.status = 'open'
                       AND pi.item_id IN ({list}) ORDER BY p.id"
                ),
            ),
            FlagScope::Customers(filter) => (
                format!(
                    "SELECT di.item_id FROM items i CROSS JOIN dispute_items di
                     JOIN disputes d ON d.id = di.dispute_id
                     WHERE di.item_id = i.id AND d.resolved_on IS NULL AND {filter}"
                ),
                format!(
                    "SELECT pi.item_id, p.promised_on, p.created_on, p.status FROM items i
                     CROSS JOIN promise_items pi
                     JOIN promises p ON p.id = pi.promise_id
                     WHERE pi.item_id = i.id AND i.status = 'open' AND {filter} ORDER BY p.id"
                ),
            ),
        };
        let db = self.db();
        let mut disputed: HashSet<i64> = HashSet::new();
        db.each(&disputed_sql, args![], |r| {
            disputed.insert(r.get(0, "dispute_items.item_id")?);
            Ok(())
        })?;
        let mut promised: HashMap<i64, ItemPromise> = HashMap::new();
        db.each(&promised_sql, args![], |r| {
            let p = ItemPromise {
                by: r.date(1, "promises.promised_on")?,
                made: r.date(2, "promises.created_on")?,
                open: r.str(3, "promises.status")? == "open",
            };
            promised.insert(r.get(0, "promise_items.item_id")?, p);
            Ok(())
        })?;
        Ok(ItemFlags { disputed, promised })
    }

    /// Hands `f` each item under `filter` with its open case, in one pass: an open
    /// item, or a cleared one whose case is still open (the run closes it).
    fn item_rows(
        &self,
        filter: &str,
        flags: &ItemFlags,
        mut f: impl FnMut(i64, ItemRow) -> Result<()>,
    ) -> Result<()> {
        let sql = format!(
            "SELECT i.customer_id, i.id, i.document_no, i.document_date, i.due_date, i.original_amount, i.open_amount,
                    i.currency, i.hold_reason, i.hold_until, i.original_document, i.status,
                    c.id, c.nad, c.priority, c.assigned_to, c.activity, c.category, c.subcategory, c.days_to_complete,
                    c.last_edited_on, c.completed_on, c.ptp_date, c.external_ref, i.dun_level
             FROM items i LEFT JOIN cases c ON c.item_id = i.id AND c.status = 'open'
             WHERE {filter} AND (i.status = 'open' OR c.id IS NOT NULL)
             ORDER BY i.id"
        );
        self.db().each(&sql, args![], |r| {
            let id: i64 = r.get(1, "items.id")?;
            let hold = match r.get::<Option<String>>(8, "items.hold_reason")? {
                Some(reason) => Some(Hold {
                    reason,
                    until: opt_date("hold_until", r.get(9, "items.hold_until")?)?,
                }),
                None => None,
            };
            let case = match r.get::<Option<i64>>(12, "cases.id")? {
                Some(case_id) => Some(CaseRow {
                    id: case_id,
                    nad: r.date(13, "cases.nad")?,
                    priority: Priority::from_i64(r.get(14, "cases.priority")?),
                    assigned_to: r.get(15, "cases.assigned_to")?,
                    activity: CaseRow::boxed_activity(read_activity(r, 16)?),
                    external_ref: r.get(23, "cases.external_ref")?,
                }),
                None => None,
            };
            let status = r.str(11, "items.status")?;
            f(
                r.get(0, "items.customer_id")?,
                ItemRow {
                    id,
                    document_no: r.get(2, "items.document_no")?,
                    document_date: r.date(3, "items.document_date")?,
                    due_date: r.date(4, "items.due_date")?,
                    original_amount: r.dec(5, "items.original_amount")?,
                    open_amount: r.dec(6, "items.open_amount")?,
                    currency: cur("currency", &r.str(7, "items.currency")?)?,
                    rare: ItemRare::boxed(hold, r.get(10, "items.original_document")?, None),
                    open: status == "open",
                    replaced: status == "replaced",
                    dun_level: r.get::<i64>(24, "items.dun_level")?.max(0) as usize,
                    disputed: flags.disputed.contains(&id),
                    promised: flags.promised.get(&id).copied(),
                    case,
                },
            )
        })
    }

    /// A split or re-posted item that still needs a case walks its chain back to the
    /// first invoice (few items are splits).
    fn resolve_root(&self, cid: i64, it: &mut ItemRow) -> Result<()> {
        let Some(first) = it.original_document().map(String::from) else {
            return Ok(());
        };
        if it.case.is_some() || !it.open {
            return Ok(());
        }
        let db = self.db();
        let mut parent = db.prepare(
            "SELECT original_document FROM items WHERE customer_id = ?1 AND document_no = ?2
               AND original_document IS NOT NULL AND original_document <> document_no LIMIT 1",
        )?;
        let mut root = first;
        let mut seen = vec![it.document_no.clone()];
        // A chain longer than this is a data error (or a cycle); stop where it is.
        while seen.len() < 64 && !seen.contains(&root) {
            let up: Option<String> = parent
                .row(args![cid, root])?
                .map(|r| r.get(0, "items.original_document"))
                .transpose()?;
            match up {
                Some(u) => {
                    seen.push(std::mem::replace(&mut root, u));
                }
                None => break,
            }
        }
        if seen.contains(&root) {
            // A cycle: the last document before it is as far back as we can go.
            root = seen.pop().unwrap_or(root);
        }
        it.set_root_document(Some(root));
        Ok(())
    }

    /// The whole portfolio as it stands: what a run summary reports besides what the
    /// run itself changed.
    pub fn portfolio(&self) -> Result<Portfolio> {
        let db = self.db();
        let count = |sql: &str| -> Result<Row> { Ok(db.row(sql, args![])?.expect("a row")) };
        let mut p = Portfolio {
            customers: count("SELECT COUNT(*) FROM customers")?.get::<i64>(0, "count")? as u64,
            ..Portfolio::default()
        };
        for q in [Priority::High, Priority::Medium, Priority::Low] {
            p.open_cases_by_priority.insert(q.as_str().into(), 0);
        }
        for r in db.rows(
            "SELECT priority, COUNT(*) FROM cases WHERE status = 'open' GROUP BY priority",
            args![],
        )? {
            let (q, n): (i64, i64) = (r.get(0, "cases.priority")?, r.get(1, "count")?);
            p.open_cases += n as u64;
            *p.open_cases_by_priority
                .entry(Priority::from_i64(q).as_str().into())
                .or_default() += n as u64;
        }
        let r = count("SELECT COUNT(*), COUNT(*) - COUNT(collector) FROM worklist")?;
        let (entries, unassigned): (i64, i64) = (r.get(0, "count")?, r.get(1, "count")?);
        p.worklist_entries = entries as u64;
        p.worklist_unassigned = unassigned as u64;
        Ok(p)
    }

    /// Loads of collectors from worklist rows of customers outside `scope` (incremental runs).
    pub fn worklist_loads_outside_dirty(&self) -> Result<Vec<(String, String, i64, Decimal)>> {
        let mut out = Vec::new();
        self.db().each(
            "SELECT collection_group, collector, items, amount FROM worklist
             WHERE collector IS NOT NULL AND customer_id NOT IN (SELECT id FROM customers WHERE dirty <> 0)",
            args![],
            |r| {
                out.push((
                    r.get(0, "worklist.collection_group")?,
                    r.get(1, "worklist.collector")?,
                    r.get(2, "worklist.items")?,
                    r.dec(3, "worklist.amount")?,
                ));
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The store's change counter when a customer was marked changed after the
    /// load of the latest run, i.e. a change no run has looked at; `None` when every
    /// change has been.
    pub fn changes_pending(&self) -> Result<Option<i64>> {
        let db = self.db();
        let r = db
            .row(
                &format!(
                    "SELECT {}, (SELECT changes_seen FROM runs ORDER BY id DESC LIMIT 1)",
                    db.change_seq()
                ),
                args![],
            )?
            .expect("a row");
        let seq: i64 = r.get(0, "change log head")?;
        let seen: Option<i64> = r.get(1, "runs.changes_seen")?;
        Ok(seen.is_none_or(|s| seq > s).then_some(seq))
    }

    /// What the change log holds after `after`, read in one transaction with the
    /// latest run and the customers marked changed. A load by [`Scope::Ids`] and
    /// [`Store::load_items`] next is what a [`Scope::Dirty`] load would read, and the
    /// run after it counts as having seen every change up to [`ChangesSince::seq`].
    pub fn changes_since(&self, after: i64) -> Result<ChangesSince> {
        let out = self.db().read(|db| {
            let r = db
                .row(
                    &format!("SELECT {}, (SELECT MAX(id) FROM runs)", db.change_seq()),
                    args![],
                )?
                .expect("a row");
            let seq: i64 = r.get(0, "change log head")?;
            let mut entries = Vec::new();
            db.each(
                "SELECT customer_id, item_id FROM changes WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                args![after, seq],
                |r| {
                    entries.push((r.get(0, "changes.customer_id")?, r.get(1, "changes.item_id")?));
                    Ok(())
                },
            )?;
            let mut dirty = Vec::new();
            db.each(
                "SELECT id, dirty FROM customers WHERE dirty <> 0 ORDER BY id",
                args![],
                |r| {
                    dirty.push((r.get(0, "customers.id")?, r.get(1, "customers.dirty")?));
                    Ok(())
                },
            )?;
            Ok(ChangesSince {
                last_run: r.get(1, "runs.id")?,
                seq,
                entries,
                dirty,
            })
        })?;
        self.changes_at_load.set(Some(out.seq));
        Ok(out)
    }

    /// The change log's position the last load read up to ([`Scope::All`],
    /// [`Scope::Dirty`], [`Store::changes_since`]), until the run's write.
    pub fn loaded_at(&self) -> Option<i64> {
        self.changes_at_load.get()
    }

    pub fn dirty_count(&self) -> Result<i64> {
        self.db()
            .row("SELECT COUNT(*) FROM customers WHERE dirty <> 0", args![])?
            .expect("a row")
            .get(0, "count")
    }

    /// Writes a run's results in one transaction and returns the run id and the ids
    /// of the cases it opened (in `out.new_cases` order).
    pub fn write_run(
        &mut self,
        as_of: NaiveDate,
        rules_hash: &str,
        mode: &str,
        full: bool,
        out: &RunOutput,
        summary_json: &str,
    ) -> Result<(i64, Vec<i64>)> {
        // Where a write's time goes, for the debug log: a full run's write was a
        // third of it before it wrote only changed rows.
        let mut t = std::time::Instant::now();
        let mut laps: Vec<(&str, u64)> = Vec::with_capacity(9);
        let mut lap = |what: &'static str| {
            laps.push((what, t.elapsed().as_millis() as u64));
            t = std::time::Instant::now();
        };
        let seen = self.changes_at_load.take();
        let started_at = self.clock.now().to_rfc3339();
        let db = self.db();
        let written = db.write(|tx| {
            let mut new_case_ids = Vec::with_capacity(out.new_cases.len());
            let d = as_of;
            let touched = out.touched.as_deref().map(Db::json_list);
            let run_id = tx
                .prepare_insert(
                    "INSERT INTO runs(as_of, started_at, rules_hash, mode, summary, changes_seen, touched)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .insert(args![d, started_at, rules_hash, mode, summary_json, seen, touched])?
                .expect("a run is inserted");
            // Only a replica a few runs behind reads the lists (a farther one reads
            // every entry); the range keeps this to the few rows it can clear.
            tx.execute(
                "UPDATE runs SET touched = NULL WHERE id > ?1 AND id <= ?2 AND touched IS NOT NULL",
                args![
                    run_id - RUNS_KEEPING_TOUCHED - 1000,
                    run_id - RUNS_KEEPING_TOUCHED
                ],
            )?;
            // The entries this run read are done with: a reader behind it (a daemon's
            // resident portfolio when another process ran) sees a newer run and loads
            // everything again.
            if let Some(seen) = seen {
                tx.execute("DELETE FROM changes WHERE seq <= ?1", args![seen])?;
            }
            // Each step writes its rows with one statement per row on SQLite and
            // all at once on PostgreSQL (`Db::many`).
            let unlist = |ids: &mut dyn Iterator<Item = i64>| -> Result<()> {
                let rows: Vec<Vec<Value>> = ids.map(|id| vec![id.value()]).collect();
                tx.many(
                    "DELETE FROM worklist WHERE customer_id = ?1",
                    "worklist",
                    &["customer_id"],
                    "DELETE FROM worklist USING bulk WHERE worklist.customer_id = bulk.customer_id",
                    &rows,
                )
            };
            if let Some(delta) = &out.delta {
                unlist(&mut delta.unlisted.iter().copied())?;
                if delta.restamp {
                    let kept = Db::json_list(&out.kept);
                    tx.execute(
                        &format!(
                            "UPDATE customer_state SET as_of = ?1 WHERE as_of <> ?1
                               AND customer_id NOT IN {}",
                            tx.in_list("?2", "BIGINT")
                        ),
                        args![d, kept],
                    )?;
                }
            } else if full {
                let kept = Db::json_list(&out.kept);
                tx.execute(
                    &format!(
                        "DELETE FROM worklist WHERE customer_id NOT IN {}",
                        tx.in_list("?1", "BIGINT")
                    ),
                    args![kept],
                )?;
            } else {
                unlist(&mut out.processed.iter().map(|(id, _)| *id))?;
            }
            lap("worklist removals and restamp");
            // A case replacing a split/re-posted item says where it came from;
            // back-fill and plain openings need no event row (the case row records
            // them).
            let replaces = |ids: &[i64]| -> Vec<Vec<Value>> {
                out.new_cases
                    .iter()
                    .zip(ids)
                    .filter_map(|(c, id)| {
                        let r = c.external_ref.as_ref()?;
                        Some(vec![id.value(), d.value(), format!("replaces {r}").value()])
                    })
                    .collect()
            };
            let opened_event = (
                "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, 'opened', 'run', ?3)",
                "INSERT INTO case_events(case_id, on_date, kind, actor, detail)
                 SELECT case_id, on_date, 'opened', 'run', detail FROM bulk",
            );
            match tx.next_ids("cases", out.new_cases.len())? {
                // PostgreSQL: the ids first, then every case at once.
                Some(ids) => {
                    let rows: Vec<Vec<Value>> = out
                        .new_cases
                        .iter()
                        .zip(&ids)
                        .map(|(c, id)| {
                            vec![
                                id.value(),
                                c.item_id.value(),
                                c.customer_id.value(),
                                d.value(),
                                c.nad.value(),
                                (c.priority as i64).value(),
                                c.external_ref.value(),
                            ]
                        })
                        .collect();
                    tx.many(
                        "",
                        "cases",
                        &["id", "item_id", "customer_id", "opened_on", "nad", "priority", "external_ref"],
                        "INSERT INTO cases(id, item_id, customer_id, status, opened_on, nad, priority, external_ref)
                         SELECT id, item_id, customer_id, 'open', opened_on, nad, priority, external_ref FROM bulk ORDER BY id",
                        &rows,
                    )?;
                    tx.many(
                        opened_event.0,
                        "case_events",
                        &["case_id", "on_date", "detail"],
                        opened_event.1,
                        &replaces(&ids),
                    )?;
                    new_case_ids = ids;
                }
                None => {
                    let mut st = tx.prepare_insert(
                        "INSERT INTO cases(item_id, customer_id, status, opened_on, nad, priority, external_ref) VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6)",
                    )?;
                    for c in &out.new_cases {
                        let id = st
                            .insert(args![
                                c.item_id,
                                c.customer_id,
                                d,
                                c.nad,
                                c.priority as i64,
                                c.external_ref
                            ])?
                            .expect("a case is inserted");
                        new_case_ids.push(id);
                    }
                    tx.many(opened_event.0, "", &[], "", &replaces(&new_case_ids))?;
                }
            }
            lap("cases opened");
            let rows: Vec<Vec<Value>> = out
                .case_updates
                .iter()
                .map(|(id, nad, p)| vec![id.value(), nad.value(), (*p as i64).value()])
                .collect();
            tx.many(
                "UPDATE cases SET nad = ?2, priority = ?3 WHERE id = ?1",
                "cases",
                &["id", "nad", "priority"],
                "UPDATE cases SET nad = bulk.nad, priority = bulk.priority FROM bulk WHERE cases.id = bulk.id",
                &rows,
            )?;
            lap("cases updated");
            let rows: Vec<Vec<Value>> = out
                .closed
                .iter()
                .map(|(id, reason)| vec![id.value(), d.value(), reason.value()])
                .collect();
            tx.many(
                "UPDATE cases SET status = 'closed', closed_on = ?2, close_reason = ?3 WHERE id = ?1 AND status = 'open'",
                "cases",
                &["id", "closed_on", "close_reason"],
                "UPDATE cases SET status = 'closed', closed_on = bulk.closed_on, close_reason = bulk.close_reason
                 FROM bulk WHERE cases.id = bulk.id AND cases.status = 'open'",
                &rows,
            )?;
            tx.many(
                "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, 'closed', 'run', ?3)",
                "case_events",
                &["case_id", "on_date", "detail"],
                "INSERT INTO case_events(case_id, on_date, kind, actor, detail)
                 SELECT case_id, on_date, 'closed', 'run', detail FROM bulk",
                &rows,
            )?;
            lap("cases closed");
            const STATE: &[&str] = &[
                "customer_id", "strategy", "segment", "profile", "score", "collection_group",
                "collector", "priority", "dunning_level", "dunning_on", "as_of",
            ];
            let rows: Vec<Vec<Value>> = out
                .states
                .iter()
                .map(|s| {
                    vec![
                        s.customer_id.value(),
                        s.strategy.value(),
                        s.segment.value(),
                        s.profile.value(),
                        s.score.value(),
                        s.group.value(),
                        s.collector.value(),
                        (s.priority as i64).value(),
                        s.dunning_level.value(),
                        s.dunning_on.value(),
                        d.value(),
                    ]
                })
                .collect();
            let state_set = "ON CONFLICT(customer_id) DO UPDATE SET strategy = excluded.strategy, segment = excluded.segment,
                    profile = excluded.profile, score = excluded.score, collection_group = excluded.collection_group,
                    collector = excluded.collector, priority = excluded.priority, dunning_level = excluded.dunning_level,
                    dunning_on = excluded.dunning_on, as_of = excluded.as_of";
            tx.many(
                &format!(
                    "INSERT INTO customer_state({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) {state_set}",
                    STATE.join(", ")
                ),
                "customer_state",
                STATE,
                &format!(
                    "INSERT INTO customer_state({cols}) SELECT {cols} FROM bulk {state_set}",
                    cols = STATE.join(", ")
                ),
                &rows,
            )?;
            lap("states");
            const LISTED: &[&str] = &[
                "customer_id", "collection_group", "collector", "score", "priority", "nad", "items",
                "amount", "reason",
            ];
            let rows: Vec<Vec<Value>> = out
                .worklist
                .iter()
                .map(|w| {
                    vec![
                        w.customer_id.value(),
                        w.group.value(),
                        w.collector.value(),
                        w.score.value(),
                        (w.priority as i64).value(),
                        w.nad.value(),
                        w.items.value(),
                        w.amount.value(),
                        w.reason.value(),
                    ]
                })
                .collect();
            let listed_set = "ON CONFLICT(customer_id) DO UPDATE SET collection_group = excluded.collection_group,
                    collector = excluded.collector, score = excluded.score, priority = excluded.priority,
                    nad = excluded.nad, items = excluded.items, amount = excluded.amount, reason = excluded.reason";
            tx.many(
                &format!(
                    "INSERT INTO worklist({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) {listed_set}",
                    LISTED.join(", ")
                ),
                "worklist",
                LISTED,
                &format!(
                    "INSERT INTO worklist({cols}) SELECT {cols} FROM bulk {listed_set}",
                    cols = LISTED.join(", ")
                ),
                &rows,
            )?;
            lap("worklist");
            let rows: Vec<Vec<Value>> = out
                .item_levels
                .iter()
                .map(|(id, level)| vec![id.value(), level.value()])
                .collect();
            tx.many(
                "UPDATE items SET dun_level = ?2 WHERE id = ?1",
                "items",
                &["id", "dun_level"],
                "UPDATE items SET dun_level = bulk.dun_level FROM bulk WHERE items.id = bulk.id",
                &rows,
            )?;
            // The step's event ("Claim for non-payment") is recorded by the outbox
            // when the message is delivered, not here where it is only decided.
            const STEP: &[&str] = &[
                "customer_id", "run_id", "as_of", "ladder", "level", "level_name", "channel",
                "template", "copy_manager", "amount", "items", "reason",
            ];
            let rows: Vec<Vec<Value>> = out
                .escalations
                .iter()
                .map(|e| {
                    vec![
                        e.customer_id.value(),
                        run_id.value(),
                        d.value(),
                        e.ladder.value(),
                        e.level.value(),
                        e.level_name.value(),
                        e.channel.value(),
                        e.template.value(),
                        e.copy_manager.value(),
                        e.amount.value(),
                        e.items.value(),
                        e.reason.value(),
                    ]
                })
                .collect();
            tx.many(
                &format!(
                    "INSERT INTO escalations({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT(customer_id, as_of) DO NOTHING",
                    STEP.join(", ")
                ),
                "escalations",
                STEP,
                &format!(
                    "INSERT INTO escalations({cols}) SELECT {cols} FROM bulk ORDER BY customer_id
                     ON CONFLICT(customer_id, as_of) DO NOTHING",
                    cols = STEP.join(", ")
                ),
                &rows,
            )?;
            lap("escalation steps");
            // A counter already at zero needs no write: in a full run that is nearly
            // every customer.
            let rows: Vec<Vec<Value>> = out
                .processed
                .iter()
                .filter(|(_, seen)| *seen != 0)
                .map(|(id, seen)| vec![id.value(), seen.value()])
                .collect();
            tx.many(
                "UPDATE customers SET dirty = 0 WHERE id = ?1 AND dirty = ?2",
                "customers",
                &["id", "dirty"],
                "UPDATE customers SET dirty = 0 FROM bulk WHERE customers.id = bulk.id AND customers.dirty = bulk.dirty",
                &rows,
            )?;
            lap("change counters");
            tx.notify_changes()?;
            Ok((run_id, new_case_ids))
        })?;
        lap("commit");
        tracing::debug!(?laps, "write phases");
        Ok(written)
    }

    pub fn run_summary(&self, run_id: i64) -> Result<Option<String>> {
        self.db()
            .row("SELECT summary FROM runs WHERE id = ?1", args![run_id])?
            .map(|r| r.get(0, "runs.summary"))
            .transpose()
    }
}

pub(crate) fn read_activity(r: &RowRef, base: usize) -> Result<Activity> {
    let text = |i: usize, column: &'static str| -> Result<String> {
        Ok(r.get::<Option<String>>(base + i, column)?
            .unwrap_or_default())
    };
    Ok(match text(0, "cases.activity")?.as_str() {
        "open" => Activity::Open {
            category: text(1, "cases.activity_category")?,
            subcategory: text(2, "cases.activity_subcategory")?,
            days_to_complete: r
                .get::<Option<i64>>(base + 3, "cases.activity_days")?
                .unwrap_or(0),
            last_edited_on: date("last_edited_on", &text(4, "last_edited_on")?)?,
        },
        "completed" => Activity::Completed {
            on: date("completed_on", &text(5, "completed_on")?)?,
            ptp: opt_date("ptp_date", r.get(base + 6, "ptp_date")?)?,
        },
        _ => Activity::None,
    })
}
