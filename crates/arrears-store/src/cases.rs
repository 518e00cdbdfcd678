//! Case operations a collector performs. Each is one transaction, appends to the
//! case history, re-applies the NAD rule at once and marks the customer for the next run.

use crate::customer::mark_changed;
use crate::db::{Db, RowRef};
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};
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

fn open_case(tx: &Connection, id: i64) -> Result<Open> {
    let row = tx
        .query_row(
            "SELECT c.customer_id, i.document_date, c.activity, c.category, c.subcategory, c.days_to_complete,
                    c.last_edited_on, c.completed_on, c.ptp_date, c.status
             FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
            [id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, read_activity(&RowRef::Lite(r), 2), r.get::<_, String>(9)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
    if row.3 != "open" {
        return Err(StoreError::State(format!("case {id} is closed")));
    }
    Ok(Open {
        customer_id: row.0,
        document_date: date("document_date", &row.1)?,
        activity: row.2?,
    })
}

fn save_activity(tx: &Connection, id: i64, o: &Open, policy: &CasePolicy) -> Result<()> {
    let (kind, cat, sub, days, edited, done, ptp) = match &o.activity {
        Activity::None => ("none", None, None, None, None, None, None),
        Activity::Open {
            category,
            subcategory,
            days_to_complete,
            last_edited_on,
        } => (
            "open",
            Some(category.clone()),
            Some(subcategory.clone()),
            Some(*days_to_complete),
            Some(last_edited_on.to_string()),
            None,
            None,
        ),
        Activity::Completed { on, ptp } => (
            "completed",
            None,
            None,
            None,
            None,
            Some(on.to_string()),
            ptp.map(|p| p.to_string()),
        ),
    };
    let (n, _) = nad(o.document_date, &o.activity, policy);
    tx.execute(
        "UPDATE cases SET activity = ?2, category = COALESCE(?3, category), subcategory = COALESCE(?4, subcategory),
            days_to_complete = COALESCE(?5, days_to_complete), last_edited_on = ?6, completed_on = ?7, ptp_date = ?8, nad = ?9 WHERE id = ?1",
        params![id, kind, cat, sub, days, edited, done, ptp, n.to_string()],
    )?;
    mark_changed(&Db::Lite(tx), o.customer_id)?;
    Ok(())
}

fn event(
    tx: &Connection,
    id: i64,
    on: NaiveDate,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<()> {
    tx.execute("INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)", params![id, on.to_string(), kind, actor, detail])?;
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
        let mut d = self
            .conn()?
            .query_row(
                "SELECT c.id, c.status, cu.code, cu.name, cu.company, i.document_no, c.external_ref, i.document_date, i.due_date,
                        i.original_amount, i.open_amount, i.currency, c.opened_on, c.closed_on, c.close_reason, c.nad, c.priority,
                        c.assigned_to, c.activity, c.category, c.subcategory, c.days_to_complete, c.last_edited_on, c.completed_on, c.ptp_date
                 FROM cases c JOIN items i ON i.id = c.item_id JOIN customers cu ON cu.id = c.customer_id WHERE c.id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        [r.get::<_, String>(7)?, r.get::<_, String>(8)?, r.get::<_, String>(9)?, r.get::<_, String>(10)?, r.get::<_, String>(11)?, r.get::<_, String>(12)?],
                        (r.get::<_, Option<String>>(13)?, r.get::<_, Option<String>>(14)?, r.get::<_, String>(15)?, r.get::<_, i64>(16)?, r.get::<_, Option<String>>(17)?),
                        read_activity(&RowRef::Lite(r), 18),
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
        let s = &d.7;
        let detail = CaseDetail {
            id: d.0,
            status: std::mem::take(&mut d.1),
            customer: std::mem::take(&mut d.2),
            customer_name: std::mem::take(&mut d.3),
            company: std::mem::take(&mut d.4),
            document_no: std::mem::take(&mut d.5),
            external_ref: d.6.take(),
            document_date: date("document_date", &s[0])?,
            due_date: date("due_date", &s[1])?,
            original_amount: dec("original_amount", &s[2])?,
            open_amount: dec("open_amount", &s[3])?,
            currency: s[4].clone(),
            opened_on: date("opened_on", &s[5])?,
            closed_on: d
                .8
                 .0
                .as_deref()
                .map(|x| date("closed_on", x))
                .transpose()?,
            close_reason: d.8 .1.take(),
            nad: date("nad", &d.8 .2)?,
            priority: Priority::from_i64(d.8 .3),
            assigned_to: d.8 .4.take(),
            activity: d.9?,
            history: Vec::new(),
        };
        let mut st = self.conn()?.prepare_cached(
            "SELECT on_date, kind, actor, detail FROM case_events WHERE case_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let mut history = Vec::new();
        for r in rows {
            let (on, kind, actor, detail) = r?;
            history.push(CaseEvent {
                on: date("case_events.on_date", &on)?,
                kind,
                actor,
                detail,
            });
        }
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
        let tx = self.write_tx()?;
        let mut o = open_case(&tx, id)?;
        touch(&mut o, on);
        save_activity(&tx, id, &o, policy)?;
        event(&tx, id, on, "note", actor, text)?;
        tx.commit()?;
        Ok(())
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
        let tx = self.write_tx()?;
        for &id in ids {
            let mut o = open_case(&tx, id)?;
            touch(&mut o, on);
            save_activity(&tx, id, &o, policy)?;
            tx.execute(
                "UPDATE cases SET assigned_to = ?2 WHERE id = ?1",
                params![id, collector],
            )?;
            event(
                &tx,
                id,
                on,
                "assigned",
                actor,
                collector.unwrap_or("(unassigned)"),
            )?;
        }
        tx.commit()?;
        Ok(())
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
        let tx = self.write_tx()?;
        let mut o = open_case(&tx, id)?;
        o.activity = Activity::Open {
            category: category.into(),
            subcategory: sub.name.clone(),
            days_to_complete: sub.days_to_complete,
            last_edited_on: on,
        };
        save_activity(&tx, id, &o, policy)?;
        event(
            &tx,
            id,
            on,
            "activity",
            actor,
            &format!("{category}/{}", sub.name),
        )?;
        tx.commit()?;
        Ok(nad(o.document_date, &o.activity, policy).0)
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
        let tx = self.write_tx()?;
        let mut o = open_case(&tx, id)?;
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
            let (cur, open, item): (String, String, i64) = tx.query_row(
                "SELECT i.currency, i.open_amount, i.id FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
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
                &Db::Lite(&tx),
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
        save_activity(&tx, id, &o, policy)?;
        let detail = match ptp {
            Some((p, a)) => format!("promise to pay {a} by {p}"),
            None => String::new(),
        };
        event(&tx, id, on, "completed", actor, &detail)?;
        tx.commit()?;
        Ok(nad(o.document_date, &o.activity, policy).0)
    }

    /// Puts the customer back on a worklist on `on_date` (and off it until then).
    pub fn resubmit(
        &mut self,
        customer_id: i64,
        on_date: NaiveDate,
        reason: &str,
        actor: &str,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        tx.execute("INSERT INTO resubmissions(customer_id, on_date, reason, actor) VALUES (?1, ?2, ?3, ?4)", params![customer_id, on_date.to_string(), reason, actor])?;
        mark_changed(&Db::Lite(&tx), customer_id)?;
        tx.commit()?;
        Ok(())
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
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO holds(customer_id, reason, until, created_on) VALUES (?1, ?2, ?3, ?4)",
            params![
                customer_id,
                reason,
                until.map(|d| d.to_string()),
                on.to_string()
            ],
        )?;
        mark_changed(&Db::Lite(&tx), customer_id)?;
        tx.commit()?;
        Ok(())
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
        let tx = self.write_tx()?;
        let o = open_case(&tx, case_id)?;
        let mut items: Vec<i64> = Vec::new();
        for &c in std::iter::once(&case_id).chain(more) {
            let other = open_case(&tx, c)?;
            if other.customer_id != o.customer_id {
                return Err(StoreError::Invalid(format!(
                    "case {c} belongs to another customer; a dispute covers one customer's items"
                )));
            }
            let item: i64 =
                tx.query_row("SELECT item_id FROM cases WHERE id = ?1", [c], |r| r.get(0))?;
            if !items.contains(&item) {
                items.push(item);
            }
        }
        tx.execute(
            "INSERT INTO disputes(customer_id, case_id, reason, opened_on) VALUES (?1, ?2, ?3, ?4)",
            params![o.customer_id, case_id, reason, on.to_string()],
        )?;
        let id = tx.last_insert_rowid();
        for item in items {
            tx.execute(
                "INSERT INTO dispute_items(dispute_id, item_id) VALUES (?1, ?2)",
                [id, item],
            )?;
        }
        for &c in std::iter::once(&case_id).chain(more) {
            event(&tx, c, on, "dispute", actor, reason)?;
        }
        mark_changed(&Db::Lite(&tx), o.customer_id)?;
        tx.commit()?;
        Ok(id)
    }

    /// The open case of a document (latest if several), for CLI look-ups by invoice number.
    pub fn case_by_document(&self, document_no: &str) -> Result<i64> {
        self.conn()?
            .query_row(
                "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no = ?1 ORDER BY c.status = 'open' DESC, c.id DESC LIMIT 1",
                [document_no],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("case for document `{document_no}`")))
    }
}
