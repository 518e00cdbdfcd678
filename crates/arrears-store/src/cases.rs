//! Case operations a collector performs. Each is one transaction, appends to the
//! case history, re-applies the NAD rule at once and marks the customer for the next run.

use crate::customer::mark_changed;
use crate::db::{args, Db};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::run_io::read_activity;
use super::{date, dec, Result, Store, StoreError};
use arrears_core::domain::{Activity, Priority};
use arrears_engine::case::nad;
use arrears_rules::{CasePolicy, Subcategory};

#[derive(Debug, Clone, Serialize)]
pub struct CaseEvent {
    pub on: NaiveDate,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseDetail {
    pub id: i64,
    pub status: String,
    pub customer: String,
    pub customer_name: String,
    pub company: String,
    pub document_no: String,
    pub external_ref: Option<String>,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    pub currency: String,
    pub opened_on: NaiveDate,
    pub closed_on: Option<NaiveDate>,
    pub close_reason: Option<String>,
    pub nad: NaiveDate,
    pub priority: Priority,
    pub assigned_to: Option<String>,
    pub activity: Activity,
    pub history: Vec<CaseEvent>,
}

struct Open {
    customer_id: i64,
    document_date: NaiveDate,
    activity: Activity,
}

fn open_case(db: &Db, id: i64) -> Result<Open> {
    let mut row = None;
    db.each(
        "SELECT c.customer_id, i.document_date, c.activity, c.category, c.subcategory, c.days_to_complete,
                c.last_edited_on, c.completed_on, c.ptp_date, c.status
         FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
        args![id],
        |r| {
            row = Some((
                r.get::<i64>(0, "cases.customer_id")?,
                r.get::<String>(1, "items.document_date")?,
                // Read after the status check: a closed case is refused as closed.
                read_activity(r, 2),
                r.get::<String>(9, "cases.status")?,
            ));
            Ok(())
        },
    )?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
    if row.3 != "open" {
        return Err(StoreError::State(format!("case {id} is closed")));
    }
    Ok(Open {
        customer_id: row.0,
        document_date: date("document_date", &row.1)?,
        activity: row.2?,
    })
}

fn save_activity(db: &Db, id: i64, o: &Open, policy: &CasePolicy) -> Result<()> {
    let (kind, cat, sub, days, edited, done, ptp) = match &o.activity {
        Activity::None => ("none", None, None, None, None, None, None),
        Activity::Open {
            category,
            subcategory,
            days_to_complete,
            last_edited_on,
        } => (
            "open",
            Some(category.as_str()),
            Some(subcategory.as_str()),
            Some(*days_to_complete),
            Some(*last_edited_on),
            None,
            None,
        ),
        Activity::Completed { on, ptp } => ("completed", None, None, None, None, Some(*on), *ptp),
    };
    let (n, _) = nad(o.document_date, &o.activity, policy);
    db.execute(
        "UPDATE cases SET activity = ?2, category = COALESCE(?3, category), subcategory = COALESCE(?4, subcategory),
            days_to_complete = COALESCE(?5, days_to_complete), last_edited_on = ?6, completed_on = ?7, ptp_date = ?8, nad = ?9 WHERE id = ?1",
        args![id, kind, cat, sub, days, edited, done, ptp, n],
    )?;
    mark_changed(db, o.customer_id)?;
    Ok(())
}

fn event(db: &Db, id: i64, on: NaiveDate, kind: &str, actor: &str, detail: &str) -> Result<()> {
    db.execute(
        "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![id, on, kind, actor, detail],
    )?;
    Ok(())
}

/// Any later change of a case with an open activity re-applies days-to-complete from that day.
fn touch(o: &mut Open, on: NaiveDate) {
    if let Activity::Open { last_edited_on, .. } = &mut o.activity {
        *last_edited_on = on;
    }
}

impl Store {
    pub fn case_detail(&self, id: i64) -> Result<CaseDetail> {
        let db = self.db();
        let mut detail = None;
        db.each(
            "SELECT c.id, c.status, cu.code, cu.name, cu.company, i.document_no, c.external_ref, i.document_date, i.due_date,
                    i.original_amount, i.open_amount, i.currency, c.opened_on, c.closed_on, c.close_reason, c.nad, c.priority,
                    c.assigned_to, c.activity, c.category, c.subcategory, c.days_to_complete, c.last_edited_on, c.completed_on, c.ptp_date
             FROM cases c JOIN items i ON i.id = c.item_id JOIN customers cu ON cu.id = c.customer_id WHERE c.id = ?1",
            args![id],
            |r| {
                let text = |i: usize, column: &'static str| r.get::<String>(i, column);
                detail = Some(CaseDetail {
                    id: r.get(0, "cases.id")?,
                    status: text(1, "cases.status")?,
                    customer: text(2, "customers.code")?,
                    customer_name: text(3, "customers.name")?,
                    company: text(4, "customers.company")?,
                    document_no: text(5, "items.document_no")?,
                    external_ref: r.get(6, "cases.external_ref")?,
                    document_date: date("document_date", &text(7, "items.document_date")?)?,
                    due_date: date("due_date", &text(8, "items.due_date")?)?,
                    original_amount: dec(
                        "original_amount",
                        &text(9, "items.original_amount")?,
                    )?,
                    open_amount: dec("open_amount", &text(10, "items.open_amount")?)?,
                    currency: text(11, "items.currency")?,
                    opened_on: date("opened_on", &text(12, "cases.opened_on")?)?,
                    closed_on: r
                        .get::<Option<String>>(13, "cases.closed_on")?
                        .as_deref()
                        .map(|x| date("closed_on", x))
                        .transpose()?,
                    close_reason: r.get(14, "cases.close_reason")?,
                    nad: date("nad", &text(15, "cases.nad")?)?,
                    priority: Priority::from_i64(r.get(16, "cases.priority")?),
                    assigned_to: r.get(17, "cases.assigned_to")?,
                    activity: read_activity(r, 18)?,
                    history: Vec::new(),
                });
                Ok(())
            },
        )?;
        let detail = detail.ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
        let history = db
            .rows(
                "SELECT on_date, kind, actor, detail FROM case_events WHERE case_id = ?1 ORDER BY id",
                args![id],
            )?
            .iter()
            .map(|r| {
                Ok(CaseEvent {
                    on: r.date(0, "case_events.on_date")?,
                    kind: r.get(1, "case_events.kind")?,
                    actor: r.get(2, "case_events.actor")?,
                    detail: r.get(3, "case_events.detail")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(CaseDetail { history, ..detail })
    }

    pub fn add_note(
        &mut self,
        id: i64,
        on: NaiveDate,
        actor: &str,
        text: &str,
        policy: &CasePolicy,
    ) -> Result<()> {
        if text.trim().is_empty() {
            return Err(StoreError::Invalid("a note needs text".into()));
        }
        self.db().write(|db| {
            let mut o = open_case(db, id)?;
            touch(&mut o, on);
            save_activity(db, id, &o, policy)?;
            event(db, id, on, "note", actor, text)
        })
    }

    /// Assigns (or with `None` releases) cases; all or none are changed.
    pub fn assign_cases(
        &mut self,
        ids: &[i64],
        collector: Option<&str>,
        on: NaiveDate,
        actor: &str,
        policy: &CasePolicy,
    ) -> Result<()> {
        self.db().write(|db| {
            for &id in ids {
                let mut o = open_case(db, id)?;
                touch(&mut o, on);
                save_activity(db, id, &o, policy)?;
                db.execute(
                    "UPDATE cases SET assigned_to = ?2 WHERE id = ?1",
                    args![id, collector],
                )?;
                event(
                    db,
                    id,
                    on,
                    "assigned",
                    actor,
                    collector.unwrap_or("(unassigned)"),
                )?;
            }
            Ok(())
        })
    }

    /// Assigns an activity of `category`/`sub`: due `sub.days_to_complete` days after `on`.
    pub fn set_activity(
        &mut self,
        id: i64,
        category: &str,
        sub: &Subcategory,
        on: NaiveDate,
        actor: &str,
        policy: &CasePolicy,
    ) -> Result<NaiveDate> {
        self.db().write(|db| {
            let mut o = open_case(db, id)?;
            o.activity = Activity::Open {
                category: category.into(),
                subcategory: sub.name.clone(),
                days_to_complete: sub.days_to_complete,
                last_edited_on: on,
            };
            save_activity(db, id, &o, policy)?;
            event(
                db,
                id,
                on,
                "activity",
                actor,
                &format!("{category}/{}", sub.name),
            )?;
            Ok(nad(o.document_date, &o.activity, policy).0)
        })
    }

    /// Completes the open activity; with `ptp` the customer promised to pay that amount by that date.
    pub fn complete_activity(
        &mut self,
        id: i64,
        on: NaiveDate,
        actor: &str,
        ptp: Option<(NaiveDate, Decimal)>,
        policy: &CasePolicy,
    ) -> Result<NaiveDate> {
        self.db().write(|db| {
            let mut o = open_case(db, id)?;
            if !matches!(o.activity, Activity::Open { .. }) {
                return Err(StoreError::State(format!(
                    "case {id} has no open activity to complete"
                )));
            }
            if let Some((p, amount)) = ptp {
                if p < on {
                    return Err(StoreError::Invalid(format!(
                        "promise date {p} lies before {on}"
                    )));
                }
                if amount <= Decimal::ZERO {
                    return Err(StoreError::Invalid(
                        "a promised amount must be positive".into(),
                    ));
                }
                let r = db
                    .row(
                        "SELECT i.currency, i.open_amount, i.id FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
                        args![id],
                    )?
                    .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
                let cur: String = r.get(0, "items.currency")?;
                let open: String = r.get(1, "items.open_amount")?;
                let item: i64 = r.get(2, "items.id")?;
                if let Ok(c) = arrears_core::money::Currency::parse(&cur) {
                    arrears_core::money::check_amount(amount, c)
                        .map_err(|e| StoreError::Invalid(format!("promised amount: {e}")))?;
                }
                if amount > dec("open_amount", &open)? {
                    return Err(StoreError::Invalid(format!(
                        "promised {amount} exceeds the open amount {open} {cur}"
                    )));
                }
                super::customer::insert_promise(
                    db,
                    o.customer_id,
                    id,
                    &[item],
                    amount,
                    &cur,
                    p,
                    on,
                    None,
                    None,
                )?;
            }
            o.activity = Activity::Completed {
                on,
                ptp: ptp.map(|p| p.0),
            };
            save_activity(db, id, &o, policy)?;
            let detail = match ptp {
                Some((p, a)) => format!("promise to pay {a} by {p}"),
                None => String::new(),
            };
            event(db, id, on, "completed", actor, &detail)?;
            Ok(nad(o.document_date, &o.activity, policy).0)
        })
    }

    /// Puts the customer back on a worklist on `on_date` (and off it until then).
    pub fn resubmit(
        &mut self,
        customer_id: i64,
        on_date: NaiveDate,
        reason: &str,
        actor: &str,
    ) -> Result<()> {
        self.db().write(|db| {
            db.execute(
                "INSERT INTO resubmissions(customer_id, on_date, reason, actor) VALUES (?1, ?2, ?3, ?4)",
                args![customer_id, on_date, reason, actor],
            )?;
            mark_changed(db, customer_id)
        })
    }

    /// A dunning block on the whole customer; lifts by itself after `until`.
    pub fn add_hold(
        &mut self,
        customer_id: i64,
        reason: &str,
        until: Option<NaiveDate>,
        on: NaiveDate,
    ) -> Result<()> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("a hold needs a reason".into()));
        }
        self.db().write(|db| {
            db.execute(
                "INSERT INTO holds(customer_id, reason, until, created_on) VALUES (?1, ?2, ?3, ?4)",
                args![customer_id, reason, until, on],
            )?;
            mark_changed(db, customer_id)
        })
    }

    /// Opens a dispute on the case's item; the item leaves dunning until it is resolved.
    pub fn open_dispute(
        &mut self,
        case_id: i64,
        reason: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<i64> {
        self.open_dispute_on(case_id, &[], reason, on, actor)
    }

    /// A dispute opened from `case_id` that also covers the items of `more` cases of
    /// the same customer.
    pub fn open_dispute_on(
        &mut self,
        case_id: i64,
        more: &[i64],
        reason: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<i64> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("a dispute needs a reason".into()));
        }
        self.db().write(|db| {
            let o = open_case(db, case_id)?;
            let mut items: Vec<i64> = Vec::new();
            for &c in std::iter::once(&case_id).chain(more) {
                let other = open_case(db, c)?;
                if other.customer_id != o.customer_id {
                    return Err(StoreError::Invalid(format!(
                        "case {c} belongs to another customer; a dispute covers one customer's items"
                    )));
                }
                let item: i64 = db
                    .row("SELECT item_id FROM cases WHERE id = ?1", args![c])?
                    .ok_or_else(|| StoreError::NotFound(format!("case {c}")))?
                    .get(0, "cases.item_id")?;
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            let id = db
                .prepare_insert(
                    "INSERT INTO disputes(customer_id, case_id, reason, opened_on) VALUES (?1, ?2, ?3, ?4)",
                )?
                .insert(args![o.customer_id, case_id, reason, on])?
                .expect("a dispute is inserted");
            let mut st =
                db.prepare("INSERT INTO dispute_items(dispute_id, item_id) VALUES (?1, ?2)")?;
            for item in items {
                st.execute(args![id, item])?;
            }
            for &c in std::iter::once(&case_id).chain(more) {
                event(db, c, on, "dispute", actor, reason)?;
            }
            mark_changed(db, o.customer_id)?;
            Ok(id)
        })
    }

    /// The open case of a document (latest if several), for CLI look-ups by invoice number.
    pub fn case_by_document(&self, document_no: &str) -> Result<i64> {
        self.db()
            .row(
                "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no = ?1 ORDER BY c.status = 'open' DESC, c.id DESC LIMIT 1",
                args![document_no],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("case for document `{document_no}`")))?
            .get(0, "cases.id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Row;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn policy() -> CasePolicy {
        CasePolicy {
            initial_nad_days: 3,
            high_amount: "10000".parse().unwrap(),
            high_days_overdue: 60,
        }
    }

    fn call() -> Subcategory {
        Subcategory {
            name: "call".into(),
            days_to_complete: 2,
            instruction: String::new(),
        }
    }

    /// Customers A (1) and B (2) of ACME. Cases 1 and 2 (items INV-1, INV-2) are
    /// A's and open, case 3 (INV-3) is B's; INV-4 has case 5 open between two
    /// closed ones (4, and 6 with the highest id).
    const FIXTURE: &str = "
        INSERT INTO customers(id, company, code, name) VALUES (1, 'ACME', 'A', 'A Ltd'), (2, 'ACME', 'B', 'B Ltd');
        INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                          original_amount, open_amount, currency) VALUES
            (1, 's', 'i1', 1, 'INV-1', '2026-05-01', '2026-05-31', '300.00', '300.00', 'EUR'),
            (2, 's', 'i2', 1, 'INV-2', '2026-05-02', '2026-05-31', '100', '100', 'EUR'),
            (3, 's', 'i3', 2, 'INV-3', '2026-05-03', '2026-05-31', '50', '50', 'EUR'),
            (4, 's', 'i4', 1, 'INV-4', '2026-05-04', '2026-05-31', '70', '70', 'EUR');
        INSERT INTO cases(id, item_id, customer_id, status, opened_on, closed_on, close_reason, nad, priority) VALUES
            (1, 1, 1, 'open', '2026-06-01', NULL, NULL, '2026-05-04', 2),
            (2, 2, 1, 'open', '2026-06-01', NULL, NULL, '2026-05-05', 2),
            (3, 3, 2, 'open', '2026-06-01', NULL, NULL, '2026-05-06', 2),
            (4, 4, 1, 'closed', '2026-06-01', '2026-06-10', 'paid', '2026-05-07', 2),
            (5, 4, 1, 'open', '2026-06-15', NULL, NULL, '2026-05-07', 1),
            (6, 4, 1, 'closed', '2026-06-01', '2026-06-02', 'replaced', '2026-05-07', 1);
        INSERT INTO case_events(case_id, on_date, kind, actor) VALUES (1, '2026-06-01', 'opened', 'run');";

    fn rows(s: &Store, sql: &str) -> Vec<Row> {
        s.db().rows(sql, args![]).unwrap()
    }

    fn count(s: &Store, sql: &str) -> i64 {
        rows(s, sql)[0].get(0, "count").unwrap()
    }

    fn history(s: &Store, id: i64) -> Vec<(String, String, String, String)> {
        s.case_detail(id)
            .unwrap()
            .history
            .into_iter()
            .map(|e| (e.on.to_string(), e.kind, e.actor, e.detail))
            .collect()
    }

    fn event(on: &str, kind: &str, actor: &str, detail: &str) -> (String, String, String, String) {
        (on.into(), kind.into(), actor.into(), detail.into())
    }

    crate::on_both!(case_work_is_recorded_with_its_history, |s| {
        s.db().batch(FIXTURE).unwrap();
        let p = policy();
        assert_eq!(
            s.set_activity(1, "contact", &call(), day("2026-06-20"), "alice", &p)
                .unwrap(),
            day("2026-06-22")
        );
        // A note moves an open activity's due day along.
        s.add_note(1, day("2026-06-21"), "alice", "called back", &p)
            .unwrap();
        let d = s.case_detail(1).unwrap();
        assert_eq!(d.nad, day("2026-06-23"));
        assert_eq!(
            d.activity,
            Activity::Open {
                category: "contact".into(),
                subcategory: "call".into(),
                days_to_complete: 2,
                last_edited_on: day("2026-06-21"),
            }
        );
        assert_eq!(
            s.complete_activity(
                1,
                day("2026-06-22"),
                "alice",
                Some((day("2026-07-03"), "200.50".parse().unwrap())),
                &p,
            )
            .unwrap(),
            day("2026-07-04")
        );
        let d = s.case_detail(1).unwrap();
        assert_eq!(
            (
                d.id,
                d.status.as_str(),
                d.customer.as_str(),
                d.customer_name.as_str(),
                d.company.as_str(),
                d.document_no.as_str(),
                d.external_ref.as_deref(),
            ),
            (1, "open", "A", "A Ltd", "ACME", "INV-1", None)
        );
        assert_eq!(
            (d.document_date, d.due_date, d.opened_on, d.closed_on, d.nad),
            (
                day("2026-05-01"),
                day("2026-05-31"),
                day("2026-06-01"),
                None,
                day("2026-07-04")
            )
        );
        assert_eq!(
            (
                d.original_amount.to_string(),
                d.open_amount.to_string(),
                d.currency.as_str()
            ),
            ("300.00".into(), "300.00".into(), "EUR")
        );
        assert_eq!((d.priority, d.assigned_to), (Priority::Medium, None));
        assert_eq!(
            d.activity,
            Activity::Completed {
                on: day("2026-06-22"),
                ptp: Some(day("2026-07-03"))
            }
        );
        // Category and subcategory stay once the activity is done.
        let r = &rows(
            s,
            "SELECT category, subcategory, days_to_complete, last_edited_on FROM cases WHERE id = 1",
        )[0];
        assert_eq!(
            (
                r.get::<Option<String>>(0, "category").unwrap(),
                r.get::<Option<String>>(1, "subcategory").unwrap(),
                r.get::<Option<i64>>(2, "days").unwrap(),
                r.get::<Option<String>>(3, "edited").unwrap()
            ),
            (Some("contact".into()), Some("call".into()), Some(2), None)
        );
        let promise = &rows(
            s,
            "SELECT p.customer_id, p.case_id, p.amount, p.currency, p.promised_on, p.created_on, pi.item_id
             FROM promises p JOIN promise_items pi ON pi.promise_id = p.id",
        );
        assert_eq!(promise.len(), 1);
        let r = &promise[0];
        assert_eq!(
            (
                r.get::<i64>(0, "customer").unwrap(),
                r.get::<i64>(1, "case").unwrap(),
                r.get::<String>(2, "amount").unwrap(),
                r.get::<String>(3, "currency").unwrap(),
                r.get::<String>(4, "promised_on").unwrap(),
                r.get::<String>(5, "created_on").unwrap(),
                r.get::<i64>(6, "item").unwrap()
            ),
            (
                1,
                1,
                "200.50".into(),
                "EUR".into(),
                "2026-07-03".into(),
                "2026-06-22".into(),
                1
            )
        );

        s.assign_cases(&[1, 2], Some("emma"), day("2026-06-23"), "lead", &p)
            .unwrap();
        s.assign_cases(&[2], None, day("2026-06-24"), "lead", &p)
            .unwrap();
        assert_eq!(
            s.case_detail(1).unwrap().assigned_to.as_deref(),
            Some("emma")
        );
        let two = s.case_detail(2).unwrap();
        // Case 2 has no activity: its due day is the document date's plus three.
        assert_eq!(
            (two.assigned_to, two.nad, two.activity),
            (None, day("2026-05-05"), Activity::None)
        );
        assert_eq!(
            history(s, 1),
            vec![
                event("2026-06-01", "opened", "run", ""),
                event("2026-06-20", "activity", "alice", "contact/call"),
                event("2026-06-21", "note", "alice", "called back"),
                event(
                    "2026-06-22",
                    "completed",
                    "alice",
                    "promise to pay 200.50 by 2026-07-03"
                ),
                event("2026-06-23", "assigned", "lead", "emma"),
            ]
        );
        assert_eq!(
            history(s, 2),
            vec![
                event("2026-06-23", "assigned", "lead", "emma"),
                event("2026-06-24", "assigned", "lead", "(unassigned)"),
            ]
        );

        s.resubmit(2, day("2026-07-01"), "call in July", "alice")
            .unwrap();
        s.add_hold(2, "insolvency", Some(day("2026-12-31")), day("2026-06-25"))
            .unwrap();
        s.add_hold(2, "checking", None, day("2026-06-26")).unwrap();
        let r = &rows(
            s,
            "SELECT customer_id, on_date, reason, actor FROM resubmissions",
        );
        assert_eq!(
            (
                r[0].get::<i64>(0, "customer").unwrap(),
                r[0].get::<String>(1, "on_date").unwrap(),
                r[0].get::<String>(2, "reason").unwrap(),
                r[0].get::<String>(3, "actor").unwrap()
            ),
            (
                2,
                "2026-07-01".into(),
                "call in July".into(),
                "alice".into()
            )
        );
        let holds: Vec<(String, Option<String>, String)> = rows(
            s,
            "SELECT reason, until, created_on FROM holds WHERE customer_id = 2 ORDER BY id",
        )
        .iter()
        .map(|r| {
            (
                r.get(0, "reason").unwrap(),
                r.get(1, "until").unwrap(),
                r.get(2, "created_on").unwrap(),
            )
        })
        .collect();
        assert_eq!(
            holds,
            vec![
                (
                    "insolvency".into(),
                    Some("2026-12-31".into()),
                    "2026-06-25".into()
                ),
                ("checking".into(), None, "2026-06-26".into()),
            ]
        );
        // Every operation marked its customer for the next run: set, note,
        // complete, two cases assigned, one released (and one entry each for the
        // customers' creation).
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM changes WHERE customer_id = 1 AND item_id IS NULL"
            ),
            7
        );
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM changes WHERE customer_id = 2 AND item_id IS NULL"
            ),
            4
        );
    });

    crate::on_both!(refused_case_work_changes_nothing, |s| {
        s.db().batch(FIXTURE).unwrap();
        let p = policy();
        let msg = |r: Result<NaiveDate>| r.unwrap_err().to_string();
        assert_eq!(
            s.case_detail(99).unwrap_err().to_string(),
            "case 99 not found"
        );
        assert_eq!(
            s.add_note(1, day("2026-06-21"), "alice", " ", &p)
                .unwrap_err()
                .to_string(),
            "invalid request: a note needs text"
        );
        assert_eq!(
            s.add_note(4, day("2026-06-21"), "alice", "x", &p)
                .unwrap_err()
                .to_string(),
            "case 4 is closed"
        );
        assert_eq!(
            s.add_note(99, day("2026-06-21"), "alice", "x", &p)
                .unwrap_err()
                .to_string(),
            "case 99 not found"
        );
        assert_eq!(
            msg(s.complete_activity(1, day("2026-06-21"), "alice", None, &p)),
            "case 1 has no open activity to complete"
        );
        s.set_activity(1, "contact", &call(), day("2026-06-20"), "alice", &p)
            .unwrap();
        let promise = |on: &str, amount: &str| Some((day(on), amount.parse().unwrap()));
        assert_eq!(
            msg(s.complete_activity(
                1,
                day("2026-06-21"),
                "alice",
                promise("2026-06-20", "10"),
                &p
            )),
            "invalid request: promise date 2026-06-20 lies before 2026-06-21"
        );
        assert_eq!(
            msg(s.complete_activity(
                1,
                day("2026-06-21"),
                "alice",
                promise("2026-06-30", "0"),
                &p
            )),
            "invalid request: a promised amount must be positive"
        );
        assert_eq!(
            msg(s.complete_activity(
                1,
                day("2026-06-21"),
                "alice",
                promise("2026-06-30", "1.005"),
                &p
            )),
            "invalid request: promised amount: amount 1.005 has more decimals than EUR has (2)"
        );
        // The open amount as stored, its scale kept.
        assert_eq!(
            msg(s.complete_activity(
                1,
                day("2026-06-21"),
                "alice",
                promise("2026-06-30", "300.01"),
                &p
            )),
            "invalid request: promised 300.01 exceeds the open amount 300.00 EUR"
        );
        // One closed case among them: none is assigned.
        assert_eq!(
            s.assign_cases(&[1, 4], Some("emma"), day("2026-06-22"), "lead", &p)
                .unwrap_err()
                .to_string(),
            "case 4 is closed"
        );
        assert_eq!(s.case_detail(1).unwrap().assigned_to, None);
        assert_eq!(
            s.add_hold(1, "", None, day("2026-06-22"))
                .unwrap_err()
                .to_string(),
            "invalid request: a hold needs a reason"
        );
        assert_eq!(count(s, "SELECT COUNT(*) FROM promises"), 0);
        assert_eq!(count(s, "SELECT COUNT(*) FROM holds"), 0);
        assert_eq!(
            history(s, 1),
            vec![
                event("2026-06-01", "opened", "run", ""),
                event("2026-06-20", "activity", "alice", "contact/call"),
            ]
        );
        // Only the activity set was a change (besides the customers' creation).
        assert_eq!(count(s, "SELECT COUNT(*) FROM changes"), 3);
        // The store writes on after the refusals.
        s.complete_activity(1, day("2026-06-21"), "alice", None, &p)
            .unwrap();
        assert_eq!(s.case_detail(1).unwrap().nad, day("2026-06-22"));
    });

    crate::on_both!(a_dispute_covers_one_customers_items, |s| {
        s.db().batch(FIXTURE).unwrap();
        assert_eq!(
            s.open_dispute(1, "  ", day("2026-06-20"), "anna")
                .unwrap_err()
                .to_string(),
            "invalid request: a dispute needs a reason"
        );
        assert_eq!(
            s.open_dispute_on(1, &[3], "x", day("2026-06-20"), "anna")
                .unwrap_err()
                .to_string(),
            "invalid request: case 3 belongs to another customer; a dispute covers one customer's items"
        );
        assert_eq!(
            s.open_dispute_on(1, &[4], "x", day("2026-06-20"), "anna")
                .unwrap_err()
                .to_string(),
            "case 4 is closed"
        );
        assert_eq!(count(s, "SELECT COUNT(*) FROM disputes"), 0);
        // Case 1 named twice: its item once.
        let first = s
            .open_dispute_on(1, &[2, 1], "wrong goods", day("2026-06-20"), "anna")
            .unwrap();
        let second = s
            .open_dispute(3, "price", day("2026-06-21"), "carl")
            .unwrap();
        assert_ne!(first, second);
        let disputes: Vec<(i64, i64, i64, String, String)> = rows(
            s,
            "SELECT id, customer_id, case_id, reason, opened_on FROM disputes ORDER BY id",
        )
        .iter()
        .map(|r| {
            (
                r.get(0, "id").unwrap(),
                r.get(1, "customer").unwrap(),
                r.get(2, "case").unwrap(),
                r.get(3, "reason").unwrap(),
                r.get(4, "opened_on").unwrap(),
            )
        })
        .collect();
        assert_eq!(
            disputes,
            vec![
                (first, 1, 1, "wrong goods".into(), "2026-06-20".into()),
                (second, 2, 3, "price".into(), "2026-06-21".into()),
            ]
        );
        let items: Vec<(i64, i64)> = rows(
            s,
            "SELECT dispute_id, item_id FROM dispute_items ORDER BY dispute_id, item_id",
        )
        .iter()
        .map(|r| (r.get(0, "dispute").unwrap(), r.get(1, "item").unwrap()))
        .collect();
        assert_eq!(items, vec![(first, 1), (first, 2), (second, 3)]);
        let dispute = event("2026-06-20", "dispute", "anna", "wrong goods");
        assert_eq!(
            history(s, 1),
            vec![
                event("2026-06-01", "opened", "run", ""),
                dispute.clone(),
                dispute.clone()
            ]
        );
        assert_eq!(history(s, 2), vec![dispute]);
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM changes WHERE customer_id = 1"),
            2,
            "its creation and the dispute"
        );
    });

    crate::on_both!(a_document_finds_its_open_case_first, |s| {
        s.db().batch(FIXTURE).unwrap();
        assert_eq!(s.case_by_document("INV-4").unwrap(), 5);
        assert_eq!(s.case_by_document("INV-1").unwrap(), 1);
        s.db()
            .batch("UPDATE cases SET status = 'closed' WHERE id = 5")
            .unwrap();
        // None open: the latest.
        assert_eq!(s.case_by_document("INV-4").unwrap(), 6);
        assert_eq!(
            s.case_by_document("INV-9").unwrap_err().to_string(),
            "case for document `INV-9` not found"
        );
        let d = s.case_detail(4).unwrap();
        assert_eq!(
            (
                d.status.as_str(),
                d.closed_on,
                d.close_reason.as_deref(),
                d.priority
            ),
            (
                "closed",
                Some(day("2026-06-10")),
                Some("paid"),
                Priority::Medium
            )
        );
    });
}
