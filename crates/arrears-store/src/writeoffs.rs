//! Write-offs at the end of the collection process. A proposal names one open item
//! and writes off its whole open amount; within the proposer's `write_off.limits` it
//! is carried out at once, beyond them it waits for someone whose limits cover it —
//! never the proposer (the rule agreements follow). Carried out, the item's status
//! is `written_off` (kept when the ERP sends the item as open again), its history
//! says so, and its case closes. The ladder's last level can propose too
//! ([`Store::propose_ladder_write_offs`]); such a proposal always waits for a person.
//! Carried-out write-offs are reported to the ERP by an export that marks what it
//! carried ([`Store::write_offs_to_report`], [`Store::mark_write_offs_reported`]).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::customer::{customer_event, mark_changed};
use super::db::{args, Db, Row};
use super::{Result, Store, StoreError};
use arrears_core::domain::{ChangeCause, Role};
use arrears_core::money::{Currency, Money, Rates};
use arrears_rules::raw::WriteOffSection;

/// The rules a write-off is decided under.
pub struct WriteOffTerms<'a> {
    pub section: &'a WriteOffSection,
    pub rates: &'a Rates,
}

impl<'a> WriteOffTerms<'a> {
    /// `None` when the rules define no `write_off` section (write-offs are then off).
    pub fn of(rules: &'a arrears_rules::RuleSet) -> Option<WriteOffTerms<'a>> {
        Some(WriteOffTerms {
            section: rules.write_off.as_ref()?,
            rates: &rules.rates,
        })
    }
}

pub const WRITE_OFF_TERMS_MISSING: &str =
    "the rules define no `write_off` section (limits); write-offs are off";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteOffView {
    pub id: i64,
    /// COMPANY/CODE
    pub customer: String,
    pub item_id: i64,
    /// Where the item came from and its id there: what the ERP finds it by.
    pub source: String,
    pub external_id: String,
    pub document_no: String,
    /// The item's latest case, when it has one.
    pub case_id: Option<i64>,
    /// pending, written_off, rejected
    pub status: String,
    /// The item's open amount when proposed: what is written off.
    pub amount: Decimal,
    pub currency: String,
    pub reason: String,
    pub proposed_by: String,
    pub proposed_on: NaiveDate,
    pub needs_approval: Option<String>,
    pub decided_by: Option<String>,
    pub decided_on: Option<NaiveDate>,
    pub decision_note: Option<String>,
    /// When an export for the ERP carried it.
    pub reported_on: Option<NaiveDate>,
}

/// Who proposes: a person with a role, or a ladder's last level (no limits at all,
/// so its proposals always wait for a person).
#[derive(Debug, Clone, Copy)]
pub enum Proposer<'a> {
    Person { name: &'a str, role: Role },
    Ladder { name: &'a str },
}

impl Store {
    /// Proposes writing off the item of case `case_id` for `reason`: carried out at
    /// once when the amount is within `role`'s limits, else pending approval.
    pub fn propose_write_off(
        &mut self,
        case_id: i64,
        reason: &str,
        on: NaiveDate,
        who: &str,
        role: Role,
        terms: &WriteOffTerms,
    ) -> Result<WriteOffView> {
        terms
            .section
            .check_reason(reason)
            .map_err(StoreError::Invalid)?;
        self.db().write(|db| {
            let item_id: i64 = db
                .row("SELECT item_id FROM cases WHERE id = ?1", args![case_id])?
                .ok_or_else(|| StoreError::NotFound(format!("case_id: case {case_id}")))?
                .get(0, "cases.item_id")?;
            let id = propose(
                db,
                item_id,
                reason.trim(),
                on,
                Proposer::Person { name: who, role },
                terms,
            )?;
            write_off(db, id)
        })
    }

    /// Approves a pending write-off and carries it out: refused for the proposer and
    /// for anyone whose limits do not cover the amount. The item is checked to be as
    /// it was proposed.
    pub fn approve_write_off(
        &mut self,
        id: i64,
        who: &str,
        role: Role,
        note: &str,
        on: NaiveDate,
        terms: &WriteOffTerms,
    ) -> Result<WriteOffView> {
        self.db().write(|db| {
            let w = write_off(db, id)?;
            if w.status != "pending" {
                return Err(StoreError::State(format!(
                    "write-off {id} is {}; only a pending one can be approved",
                    w.status
                )));
            }
            if w.proposed_by == who {
                return Err(StoreError::Denied(format!(
                    "write-off {id} was proposed by {who}; someone else must approve it"
                )));
            }
            let base = in_base(terms.rates, w.amount, &w.currency)?;
            if let Some(why) = terms.section.exceeded(role, base) {
                return Err(StoreError::Denied(format!(
                    "{who} ({}) cannot approve write-off {id}: {why}",
                    role.as_str()
                )));
            }
            carry_out(db, id, who, on, note)?;
            write_off(db, id)
        })
    }

    /// Rejects a pending write-off, with the reason; the item stays in collection.
    pub fn reject_write_off(
        &mut self,
        id: i64,
        who: &str,
        reason: &str,
        on: NaiveDate,
    ) -> Result<WriteOffView> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid(
                "reason: say why the write-off is rejected".into(),
            ));
        }
        self.db().write(|db| {
            let w = write_off(db, id)?;
            if w.status != "pending" {
                return Err(StoreError::State(format!(
                    "write-off {id} is {}; only a pending one can be rejected",
                    w.status
                )));
            }
            db.execute(
                "UPDATE write_offs SET status = 'rejected', decided_by = ?2, decided_on = ?3, decision_note = ?4
                 WHERE id = ?1",
                args![id, who, on, reason.trim()],
            )?;
            let customer_id = write_off_customer(db, id)?;
            customer_event(
                db,
                customer_id,
                on,
                "write-off",
                &format!(
                    "write-off {id} of {} rejected by {who}: {}",
                    w.document_no,
                    reason.trim()
                ),
            )?;
            write_off(db, id)
        })
    }

    pub fn write_off(&self, id: i64) -> Result<WriteOffView> {
        write_off(&self.db(), id)
    }

    /// The customer a write-off is for: what checking a caller's reach reads.
    pub fn write_off_customer(&self, id: i64) -> Result<i64> {
        write_off_customer(&self.db(), id)
    }

    /// Write-offs, newest first; of one customer and in one status when given.
    pub fn list_write_offs(
        &self,
        customer_id: Option<i64>,
        status: Option<&str>,
    ) -> Result<Vec<WriteOffView>> {
        if let Some(s) = status {
            if !STATUSES.contains(&s) {
                return Err(StoreError::Invalid(format!(
                    "status: `{s}` is not one of {}",
                    STATUSES.join(", ")
                )));
            }
        }
        let db = self.db();
        let ids: Vec<i64> = db
            .rows(
                "SELECT id FROM write_offs
                 WHERE (CAST(?1 AS BIGINT) IS NULL OR customer_id = ?1)
                   AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
                 ORDER BY id DESC",
                args![customer_id, status],
            )?
            .iter()
            .map(|r| r.get(0, "write_offs.id"))
            .collect::<Result<_>>()?;
        ids.into_iter().map(|id| write_off(&db, id)).collect()
    }

    /// Proposes, for every ladder whose last level has `propose_write_off`, the open
    /// items a step of that ladder has taken to that level by `as_of` and that never
    /// had a write-off proposed (a rejected one is not proposed again). Items disputed,
    /// in an agreement or not open are left alone. Returns how many were proposed.
    pub fn propose_ladder_write_offs(
        &mut self,
        as_of: NaiveDate,
        rules: &arrears_rules::RuleSet,
    ) -> Result<u32> {
        let Some(terms) = WriteOffTerms::of(rules) else {
            return Ok(0);
        };
        let ladders: Vec<(&str, usize, &str)> = rules
            .ladders
            .iter()
            .filter_map(|l| {
                let last = l.levels.last()?;
                Some((
                    l.name.as_str(),
                    l.levels.len(),
                    last.propose_write_off.as_deref()?,
                ))
            })
            .collect();
        if ladders.is_empty() {
            return Ok(0);
        }
        self.db().write(|db| {
            let mut n = 0;
            for (ladder, level, reason) in ladders {
                let items: Vec<i64> = db
                    .rows(
                        "SELECT i.id FROM items i
                         WHERE i.status = 'open' AND i.dun_level >= ?2
                           AND EXISTS (SELECT 1 FROM escalations e WHERE e.customer_id = i.customer_id
                                       AND e.ladder = ?1 AND e.level >= ?2 AND e.as_of <= ?3)
                           AND NOT EXISTS (SELECT 1 FROM write_offs w WHERE w.item_id = i.id)
                         ORDER BY i.id",
                        args![ladder, level as i64, as_of],
                    )?
                    .iter()
                    .map(|r| r.get(0, "items.id"))
                    .collect::<Result<_>>()?;
                for item in items {
                    // What a person would be told (disputed, in an agreement) is here
                    // a reason to leave the item to them.
                    match propose(db, item, reason, as_of, Proposer::Ladder { name: ladder }, &terms) {
                        Ok(_) => n += 1,
                        Err(StoreError::State(why)) => {
                            tracing::debug!(item, %why, "no write-off proposed");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(n)
        })
    }

    /// Carried-out write-offs no export has reported to the ERP yet, oldest first.
    pub fn write_offs_to_report(&self) -> Result<Vec<WriteOffView>> {
        let db = self.db();
        let ids: Vec<i64> = db
            .rows(
                "SELECT id FROM write_offs WHERE status = 'written_off' AND reported_on IS NULL ORDER BY id",
                args![],
            )?
            .iter()
            .map(|r| r.get(0, "write_offs.id"))
            .collect::<Result<_>>()?;
        ids.into_iter().map(|id| write_off(&db, id)).collect()
    }

    /// Marks write-offs as reported to the ERP on `on`; returns how many were not
    /// marked before.
    pub fn mark_write_offs_reported(&mut self, ids: &[i64], on: NaiveDate) -> Result<u32> {
        self.db().write(|db| {
            let mut n = 0;
            let mut st = db.prepare(
                "UPDATE write_offs SET reported_on = ?2
                 WHERE id = ?1 AND status = 'written_off' AND reported_on IS NULL",
            )?;
            for &id in ids {
                n += st.execute(args![id, on])? as u32;
            }
            Ok(n)
        })
    }
}

const STATUSES: [&str; 3] = ["pending", "written_off", "rejected"];

fn in_base(rates: &Rates, amount: Decimal, currency: &str) -> Result<Decimal> {
    let cur = Currency::parse(currency).map_err(|_| StoreError::Corrupt {
        column: "items.currency",
        value: currency.to_string(),
    })?;
    rates
        .to_base(Money::new(amount, cur))
        .map_err(|e| StoreError::State(format!("cannot weigh the amount against limits: {e}")))
}

/// Records the proposal for `item_id` (and carries it out when within the
/// proposer's limits), inside the caller's write; returns its id. Every check comes
/// before the first write.
fn propose(
    db: &Db,
    item_id: i64,
    reason: &str,
    on: NaiveDate,
    by: Proposer,
    terms: &WriteOffTerms,
) -> Result<i64> {
    let r = db
        .row(
            "SELECT customer_id, document_no, open_amount, currency, status FROM items WHERE id = ?1",
            args![item_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("item {item_id}")))?;
    let customer_id: i64 = r.get(0, "items.customer_id")?;
    let doc: String = r.get(1, "items.document_no")?;
    let open = r.dec(2, "items.open_amount")?;
    let currency: String = r.get(3, "items.currency")?;
    let status: String = r.get(4, "items.status")?;
    if status == "agreement" {
        return Err(StoreError::State(format!(
            "{doc} is replaced by a payment agreement; write off the agreement's instalments instead"
        )));
    }
    if status != "open" || open <= Decimal::ZERO {
        return Err(StoreError::State(format!(
            "{doc} is {status} (open {open} {currency}); only an open item can be written off"
        )));
    }
    if let Some(why) = blocked(db, item_id, &doc)? {
        return Err(StoreError::State(why));
    }
    let base = in_base(terms.rates, open, &currency)?;
    let (who, needs) = match by {
        Proposer::Person { name, role } => (name.to_string(), terms.section.exceeded(role, base)),
        Proposer::Ladder { name } => (
            format!("ladder:{name}"),
            Some(format!("proposed by ladder `{name}`'s last level")),
        ),
    };
    let id = db
        .prepare_insert(
            "INSERT INTO write_offs(item_id, customer_id, status, amount, currency, reason, proposed_by,
                proposed_on, needs_approval)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .insert(args![item_id, customer_id, open, currency, reason, who, on, needs])?
        .ok_or_else(|| StoreError::State("the write-off was not recorded".into()))?;
    let event = match &needs {
        None => format!("write-off {id} of {doc} ({open} {currency}) proposed by {who}: {reason}"),
        Some(why) => format!(
            "write-off {id} of {doc} ({open} {currency}) proposed by {who}: {reason}; needs approval ({why})"
        ),
    };
    customer_event(db, customer_id, on, "write-off", &event)?;
    if needs.is_none() {
        carry_out(db, id, &who, on, "within the proposer's limits")?;
    }
    Ok(id)
}

/// Why the item cannot be written off now although it is open: a dispute not
/// resolved, a payment agreement it is proposed for or is an instalment of, a
/// write-off already waiting.
fn blocked(db: &Db, item_id: i64, doc: &str) -> Result<Option<String>> {
    let one = |sql: &str| -> Result<Option<i64>> {
        db.row(sql, args![item_id])?
            .map(|r| r.get::<i64>(0, "id"))
            .transpose()
    };
    if let Some(d) = one(
        "SELECT d.id FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
         WHERE di.item_id = ?1 AND d.resolved_on IS NULL LIMIT 1",
    )? {
        return Ok(Some(format!(
            "{doc} is disputed (dispute {d}); resolve the dispute (its resolution can be a write-off) first"
        )));
    }
    if let Some(a) = one(
        "SELECT a.id FROM agreement_items ai JOIN agreements a ON a.id = ai.agreement_id
         WHERE ai.item_id = ?1 AND a.status = 'pending' LIMIT 1",
    )? {
        return Ok(Some(format!(
            "{doc} is in payment agreement {a}, waiting for approval; decide the agreement first"
        )));
    }
    if let Some(a) = one(
        "SELECT a.id FROM agreement_installments ai JOIN agreements a ON a.id = ai.agreement_id
         WHERE ai.item_id = ?1 AND a.status = 'active' LIMIT 1",
    )? {
        return Ok(Some(format!(
            "{doc} is an instalment of payment agreement {a}, which is in force; an agreement ends by payment or by breaking"
        )));
    }
    if let Some(w) = one("SELECT id FROM write_offs WHERE item_id = ?1 AND status = 'pending'")? {
        return Ok(Some(format!(
            "{doc} already has write-off {w} waiting for approval"
        )));
    }
    Ok(None)
}

/// Carries out write-off `id`: the item leaves collection (status `written_off`, its
/// history noted with the write-off as cause, its case closed) and the decision is
/// recorded. The item must be as it was proposed.
fn carry_out(db: &Db, id: i64, who: &str, on: NaiveDate, note: &str) -> Result<()> {
    let w = write_off(db, id)?;
    let r = db
        .row(
            "SELECT open_amount, status FROM items WHERE id = ?1",
            args![w.item_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("item {}", w.item_id)))?;
    let open = r.dec(0, "items.open_amount")?;
    let status: String = r.get(1, "items.status")?;
    if status != "open" || open != w.amount {
        return Err(StoreError::State(format!(
            "write-off {id}: {} changed since the proposal (open {open}, was {}; {status}); reject it and propose again",
            w.document_no, w.amount
        )));
    }
    if let Some(d) = db
        .row(
            "SELECT d.id FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
             WHERE di.item_id = ?1 AND d.resolved_on IS NULL LIMIT 1",
            args![w.item_id],
        )?
        .map(|r| r.get::<i64>(0, "disputes.id"))
        .transpose()?
    {
        return Err(StoreError::State(format!(
            "write-off {id}: {} was disputed since the proposal (dispute {d}); resolve the dispute first",
            w.document_no
        )));
    }
    db.execute(
        "UPDATE items SET status = 'written_off' WHERE id = ?1",
        args![w.item_id],
    )?;
    crate::history::note(db, on, ChangeCause::WriteOff, &[w.item_id])?;
    let cases: Vec<i64> = db
        .rows(
            "SELECT id FROM cases WHERE item_id = ?1 AND status = 'open'",
            args![w.item_id],
        )?
        .iter()
        .map(|r| r.get(0, "cases.id"))
        .collect::<Result<_>>()?;
    let reason = format!("written off (write-off {id}): {}", w.reason);
    for case_id in cases {
        db.execute(
            "UPDATE cases SET status = 'closed', closed_on = ?2, close_reason = ?3 WHERE id = ?1",
            args![case_id, on, reason],
        )?;
        db.execute(
            "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, 'closed', ?3, ?4)",
            args![case_id, on, who, reason],
        )?;
    }
    db.execute(
        "UPDATE write_offs SET status = 'written_off', decided_by = ?2, decided_on = ?3, decision_note = ?4
         WHERE id = ?1",
        args![id, who, on, note],
    )?;
    let customer_id = write_off_customer(db, id)?;
    customer_event(
        db,
        customer_id,
        on,
        "write-off",
        &format!(
            "{} written off ({} {}), approved by {who}: {}",
            w.document_no, w.amount, w.currency, w.reason
        ),
    )?;
    mark_changed(db, customer_id)
}

fn write_off_customer(db: &Db, id: i64) -> Result<i64> {
    db.row(
        "SELECT customer_id FROM write_offs WHERE id = ?1",
        args![id],
    )?
    .ok_or_else(|| StoreError::NotFound(format!("write-off {id}")))?
    .get(0, "write_offs.customer_id")
}

fn write_off(db: &Db, id: i64) -> Result<WriteOffView> {
    let r = db
        .row(
            "SELECT w.id, cu.company || '/' || cu.code, w.item_id, i.document_no,
                    (SELECT MAX(c.id) FROM cases c WHERE c.item_id = w.item_id),
                    w.status, w.amount, w.currency, w.reason, w.proposed_by, w.proposed_on,
                    w.needs_approval, w.decided_by, w.decided_on, w.decision_note, w.reported_on,
                    i.source, i.external_id
             FROM write_offs w JOIN items i ON i.id = w.item_id JOIN customers cu ON cu.id = w.customer_id
             WHERE w.id = ?1",
            args![id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("write-off {id}")))?;
    view(&r)
}

fn view(r: &Row) -> Result<WriteOffView> {
    let od = |i: usize, col: &'static str| -> Result<Option<NaiveDate>> {
        r.get::<Option<String>>(i, col)?
            .map(|v| super::date(col, &v))
            .transpose()
    };
    Ok(WriteOffView {
        id: r.get(0, "write_offs.id")?,
        customer: r.get(1, "customers.code")?,
        item_id: r.get(2, "write_offs.item_id")?,
        document_no: r.get(3, "items.document_no")?,
        case_id: r.get(4, "cases.id")?,
        status: r.get(5, "write_offs.status")?,
        amount: r.dec(6, "write_offs.amount")?,
        currency: r.get(7, "write_offs.currency")?,
        reason: r.get(8, "write_offs.reason")?,
        proposed_by: r.get(9, "write_offs.proposed_by")?,
        proposed_on: r.date(10, "write_offs.proposed_on")?,
        needs_approval: r.get(11, "write_offs.needs_approval")?,
        decided_by: r.get(12, "write_offs.decided_by")?,
        decided_on: od(13, "write_offs.decided_on")?,
        decision_note: r.get(14, "write_offs.decision_note")?,
        reported_on: od(15, "write_offs.reported_on")?,
        source: r.get(16, "items.source")?,
        external_id: r.get(17, "items.external_id")?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::on_both;
    use arrears_core::domain::{Batch, CustomerInfo, ItemInput};
    use arrears_rules::raw::WriteOffLimit;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn customer(code: &str) -> CustomerInfo {
        CustomerInfo {
            company: "ACME".into(),
            code: code.into(),
            name: format!("Customer {code}"),
            country: "DE".into(),
            email: None,
            phone: None,
            language: Some("en".into()),
            timezone: None,
            credit_limit: None,
            street: None,
            postal_code: None,
            city: None,
            dunning: None,
        }
    }

    fn item(doc: &str, open: Decimal, cur: &str) -> ItemInput {
        ItemInput {
            source: "erp".into(),
            external_id: doc.into(),
            company: "ACME".into(),
            customer: "C1".into(),
            document_no: doc.into(),
            document_date: d("2026-01-01"),
            due_date: d("2026-02-01"),
            original_amount: open,
            open_amount: open,
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    fn batch() -> Batch {
        Batch {
            customers: vec![customer("C1")],
            items: vec![
                item("INV-1", dec!(500.00), "EUR"),
                item("INV-2", dec!(3000.00), "EUR"),
                item("INV-3", dec!(80.00), "USD"),
            ],
            ..Batch::default()
        }
    }

    /// Customer C1 with INV-1 (500 EUR), INV-2 (3000 EUR), INV-3 (80 USD), each with
    /// an open case.
    fn setup(s: &mut Store) {
        s.ingest(&batch()).unwrap();
        s.db()
            .batch(
                "INSERT INTO cases(item_id, customer_id, opened_on, nad, priority)
                 SELECT id, customer_id, '2026-02-05', '2026-02-10', 1 FROM items ORDER BY id",
            )
            .unwrap();
    }

    /// Supervisors up to 2000, admins without limit, collectors none; USD at 0.92.
    fn section(supervisor: Decimal) -> WriteOffSection {
        WriteOffSection {
            limits: BTreeMap::from([
                (
                    Role::Supervisor,
                    WriteOffLimit {
                        amount: Some(supervisor),
                    },
                ),
                (Role::Admin, WriteOffLimit { amount: None }),
            ]),
            reasons: vec!["uncollectible".into(), "insolvency".into()],
        }
    }

    fn rates() -> Rates {
        Rates {
            base: Currency::parse("EUR").unwrap(),
            to_base: BTreeMap::from([(Currency::parse("USD").unwrap(), dec!(0.92))]),
        }
    }

    fn case(s: &Store, doc: &str) -> i64 {
        s.db()
            .row(
                "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no = ?1",
                args![doc],
            )
            .unwrap()
            .unwrap()
            .get(0, "cases.id")
            .unwrap()
    }

    fn text(s: &Store, sql: &str) -> Vec<String> {
        s.db()
            .rows(sql, args![])
            .unwrap()
            .iter()
            .map(|r| r.get(0, "row").unwrap())
            .collect()
    }

    fn status(s: &Store, doc: &str) -> String {
        text(
            s,
            &format!("SELECT status FROM items WHERE document_no = '{doc}'"),
        )
        .remove(0)
    }

    fn count(s: &Store) -> usize {
        text(s, "SELECT CAST(COUNT(*) AS TEXT) FROM write_offs")[0]
            .parse()
            .unwrap()
    }

    const ON: &str = "2026-11-02";

    on_both!(
        within_the_proposers_limit_the_item_leaves_collection_at_once,
        |s| {
            setup(s);
            let sec = section(dec!(2000));
            let t = WriteOffTerms {
                section: &sec,
                rates: &rates(),
            };
            let c = case(s, "INV-1");
            let w = s
                .propose_write_off(c, " uncollectible ", d(ON), "sam", Role::Supervisor, &t)
                .unwrap();
            assert_eq!(w.status, "written_off");
            assert_eq!((w.amount, w.currency.as_str()), (dec!(500.00), "EUR"));
            assert_eq!(w.reason, "uncollectible");
            assert_eq!(w.needs_approval, None);
            assert_eq!(
                (w.decided_by.as_deref(), w.decided_on),
                (Some("sam"), Some(d(ON)))
            );
            assert_eq!(w.case_id, Some(c));
            assert_eq!(status(s, "INV-1"), "written_off");
            // The history says when and why; cleared_on/by follow from it.
            assert_eq!(
            text(s, "SELECT i.cleared_on || ' ' || i.cleared_by || ' ' || h.status || ' ' || h.cause
                     FROM items i JOIN item_history h ON h.item_id = i.id WHERE i.document_no = 'INV-1'"),
            [format!("{ON} write_off written_off write_off")]
        );
            assert_eq!(
            text(s, &format!("SELECT status || ' ' || closed_on || ' ' || close_reason FROM cases WHERE id = {c}")),
            [format!("closed {ON} written off (write-off {}): uncollectible", w.id)]
        );
            // The other items stay in collection.
            assert_eq!(status(s, "INV-2"), "open");
            // Writing it off twice is refused.
            let e = s
                .propose_write_off(c, "uncollectible", d(ON), "sam", Role::Supervisor, &t)
                .unwrap_err();
            assert!(matches!(e, StoreError::State(_)), "{e}");
            assert!(e.to_string().contains("INV-1 is written_off"), "{e}");
        }
    );

    on_both!(
        beyond_the_limit_it_waits_for_someone_whose_limit_covers_it,
        |s| {
            setup(s);
            let sec = section(dec!(2000));
            let t = WriteOffTerms {
                section: &sec,
                rates: &rates(),
            };
            let w = s
                .propose_write_off(
                    case(s, "INV-2"),
                    "insolvency",
                    d(ON),
                    "sam",
                    Role::Supervisor,
                    &t,
                )
                .unwrap();
            assert_eq!(w.status, "pending");
            assert_eq!(
                w.needs_approval.as_deref(),
                Some("amount 3000.00 (base currency) above 2000")
            );
            assert_eq!(status(s, "INV-2"), "open");
            // Not the proposer, not someone whose limit is as low.
            let e = s
                .approve_write_off(w.id, "sam", Role::Admin, "", d(ON), &t)
                .unwrap_err();
            assert!(
                matches!(e, StoreError::Denied(_)) && e.to_string().contains("someone else"),
                "{e}"
            );
            let e = s
                .approve_write_off(w.id, "grace", Role::Supervisor, "", d(ON), &t)
                .unwrap_err();
            assert!(matches!(e, StoreError::Denied(_)), "{e}");
            assert!(e.to_string().contains("above 2000"), "{e}");
            let e = s
                .approve_write_off(w.id, "chen", Role::Collector, "", d(ON), &t)
                .unwrap_err();
            assert!(
                e.to_string()
                    .contains("the collector role has no write-off limits"),
                "{e}"
            );
            assert_eq!(s.write_off(w.id).unwrap().status, "pending");
            assert_eq!(status(s, "INV-2"), "open");
            let done = s
                .approve_write_off(
                    w.id,
                    "ada",
                    Role::Admin,
                    "board decision",
                    d("2026-11-05"),
                    &t,
                )
                .unwrap();
            assert_eq!(done.status, "written_off");
            assert_eq!(done.decided_by.as_deref(), Some("ada"));
            assert_eq!(done.decision_note.as_deref(), Some("board decision"));
            assert_eq!(status(s, "INV-2"), "written_off");
            assert_eq!(
                text(
                    s,
                    "SELECT cleared_on FROM items WHERE document_no = 'INV-2'"
                ),
                ["2026-11-05"]
            );
            let e = s
                .approve_write_off(w.id, "ada", Role::Admin, "", d(ON), &t)
                .unwrap_err();
            assert!(matches!(e, StoreError::State(_)), "{e}");
        }
    );

    on_both!(a_foreign_currency_is_weighed_in_the_base_currency, |s| {
        setup(s);
        // 80 USD at 0.92 is 73.60 EUR: within a limit of 73.60, beyond one of 73.59.
        let base = dec!(80.00) * dec!(0.92);
        let low = section(base - dec!(0.01));
        let t = WriteOffTerms {
            section: &low,
            rates: &rates(),
        };
        let w = s
            .propose_write_off(
                case(s, "INV-3"),
                "uncollectible",
                d(ON),
                "sam",
                Role::Supervisor,
                &t,
            )
            .unwrap();
        assert_eq!(w.status, "pending");
        assert_eq!(
            w.needs_approval,
            Some(format!(
                "amount {base} (base currency) above {}",
                base - dec!(0.01)
            ))
        );
        let exact = section(base);
        let t = WriteOffTerms {
            section: &exact,
            rates: &rates(),
        };
        let w = s
            .approve_write_off(w.id, "grace", Role::Supervisor, "", d(ON), &t)
            .unwrap();
        assert_eq!(
            (w.status.as_str(), w.amount, w.currency.as_str()),
            ("written_off", dec!(80.00), "USD")
        );
    });

    on_both!(
        bad_proposals_are_refused_naming_what_is_wrong_and_write_nothing,
        |s| {
            setup(s);
            let sec = section(dec!(2000));
            let t = WriteOffTerms {
                section: &sec,
                rates: &rates(),
            };
            let e = s
                .propose_write_off(999, "uncollectible", d(ON), "sam", Role::Supervisor, &t)
                .unwrap_err();
            assert!(matches!(e, StoreError::NotFound(_)), "{e}");
            assert_eq!(e.to_string(), "case_id: case 999 not found");
            for (reason, want) in [
            ("", "reason: say why"),
            ("bored", "reason: `bored` is not one of the write-off reasons (uncollectible, insolvency)"),
        ] {
            let e = s
                .propose_write_off(case(s, "INV-1"), reason, d(ON), "sam", Role::Supervisor, &t)
                .unwrap_err();
            assert!(matches!(e, StoreError::Invalid(_)) && e.to_string().contains(want), "{e}");
        }
            // A disputed item.
            s.db()
            .batch(
                "INSERT INTO disputes(id, customer_id, reason, opened_on) VALUES (7, 1, 'wrong price', '2026-10-01');
                 INSERT INTO dispute_items(dispute_id, item_id)
                   SELECT 7, id FROM items WHERE document_no = 'INV-1'",
            )
            .unwrap();
            let e = s
                .propose_write_off(
                    case(s, "INV-1"),
                    "uncollectible",
                    d(ON),
                    "sam",
                    Role::Supervisor,
                    &t,
                )
                .unwrap_err();
            assert!(
                e.to_string().contains("INV-1 is disputed (dispute 7)"),
                "{e}"
            );
            // An item an agreement replaced.
            s.db()
                .execute(
                    "UPDATE items SET status = 'agreement' WHERE document_no = 'INV-2'",
                    args![],
                )
                .unwrap();
            let e = s
                .propose_write_off(
                    case(s, "INV-2"),
                    "uncollectible",
                    d(ON),
                    "sam",
                    Role::Supervisor,
                    &t,
                )
                .unwrap_err();
            assert!(
                e.to_string()
                    .contains("INV-2 is replaced by a payment agreement"),
                "{e}"
            );
            assert_eq!(count(s), 0);
            assert_eq!(
                text(s, "SELECT status FROM items ORDER BY id"),
                ["open", "agreement", "open"]
            );
            // One proposal waiting per item.
            s.propose_write_off(
                case(s, "INV-3"),
                "uncollectible",
                d(ON),
                "chen",
                Role::Collector,
                &t,
            )
            .unwrap();
            let e = s
                .propose_write_off(
                    case(s, "INV-3"),
                    "insolvency",
                    d(ON),
                    "grace",
                    Role::Supervisor,
                    &t,
                )
                .unwrap_err();
            assert!(e.to_string().contains("INV-3 already has write-off"), "{e}");
            assert_eq!(count(s), 1);
            assert!(matches!(
                s.list_write_offs(None, Some("open")).unwrap_err(),
                StoreError::Invalid(m) if m.starts_with("status: `open` is not one of")
            ));
        }
    );

    on_both!(an_item_changed_since_the_proposal_is_not_written_off, |s| {
        setup(s);
        let sec = section(dec!(2000));
        let t = WriteOffTerms {
            section: &sec,
            rates: &rates(),
        };
        let w = s
            .propose_write_off(
                case(s, "INV-1"),
                "uncollectible",
                d(ON),
                "chen",
                Role::Collector,
                &t,
            )
            .unwrap();
        assert_eq!(
            w.needs_approval.as_deref(),
            Some("the collector role has no write-off limits")
        );
        s.db()
            .execute(
                "UPDATE items SET open_amount = '450.00' WHERE document_no = 'INV-1'",
                args![],
            )
            .unwrap();
        let e = s
            .approve_write_off(w.id, "sam", Role::Supervisor, "", d(ON), &t)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("INV-1 changed since the proposal (open 450.00, was 500.00"),
            "{e}"
        );
        assert_eq!(s.write_off(w.id).unwrap().status, "pending");
        assert_eq!(status(s, "INV-1"), "open");
        assert_eq!(
            text(s, "SELECT CAST(COUNT(*) AS TEXT) FROM item_history"),
            ["0"]
        );
        // Rejected, with a reason; the item stays in collection.
        assert!(matches!(
            s.reject_write_off(w.id, "sam", " ", d(ON)).unwrap_err(),
            StoreError::Invalid(m) if m.starts_with("reason:")
        ));
        let r = s
            .reject_write_off(w.id, "sam", "customer paid part", d(ON))
            .unwrap();
        assert_eq!(
            (r.status.as_str(), r.decision_note.as_deref()),
            ("rejected", Some("customer paid part"))
        );
        assert!(s.reject_write_off(w.id, "sam", "again", d(ON)).is_err());
        assert_eq!(status(s, "INV-1"), "open");
    });

    on_both!(
        the_erp_sending_a_written_off_item_as_open_does_not_reopen_it,
        |s| {
            setup(s);
            let sec = section(dec!(2000));
            let t = WriteOffTerms {
                section: &sec,
                rates: &rates(),
            };
            s.propose_write_off(
                case(s, "INV-1"),
                "uncollectible",
                d(ON),
                "ada",
                Role::Admin,
                &t,
            )
            .unwrap();
            let mut again = batch();
            again.items[0].open_amount = dec!(499.00);
            s.ingest(&again).unwrap();
            assert_eq!(status(s, "INV-1"), "written_off");
            assert_eq!(
            text(s, "SELECT open_amount || ' ' || cleared_by FROM items WHERE document_no = 'INV-1'"),
            ["499.00 write_off"]
        );
        }
    );

    on_both!(
        a_ladders_last_level_proposes_once_and_a_person_decides,
        |s| {
            setup(s);
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
            let mut rules = arrears_rules::load(&dir).unwrap_or_else(|e| panic!("{e}"));
            rules.write_off = Some(section(dec!(2000)));
            let top = rules.ladders[0].levels.len();
            let name = rules.ladders[0].name.clone();
            // Nothing proposes while no level says so.
            assert_eq!(s.propose_ladder_write_offs(d(ON), &rules).unwrap(), 0);
            rules.ladders[0]
                .levels
                .last_mut()
                .unwrap()
                .propose_write_off = Some("uncollectible".into());
            // INV-1 reached the last level in a step on 11-01, INV-2 one below it.
            s.db()
            .execute(
                "INSERT INTO escalations(customer_id, run_id, as_of, ladder, level, level_name, channel, template,
                    copy_manager, amount, items, reason)
                 VALUES (1, 1, '2026-11-01', ?1, ?2, 'call', 'call_task', 't', 0, '500', '[]', 'r')",
                args![name, top as i64],
            )
            .unwrap();
            s.db()
                .batch(&format!(
                    "UPDATE items SET dun_level = {} WHERE document_no = 'INV-1';
                 UPDATE items SET dun_level = {} WHERE document_no <> 'INV-1'",
                    top,
                    top - 1
                ))
                .unwrap();
            // Not before the step.
            assert_eq!(
                s.propose_ladder_write_offs(d("2026-10-31"), &rules)
                    .unwrap(),
                0
            );
            assert_eq!(s.propose_ladder_write_offs(d(ON), &rules).unwrap(), 1);
            let all = s.list_write_offs(None, None).unwrap();
            assert_eq!(all.len(), 1);
            let w = &all[0];
            assert_eq!(
                (w.document_no.as_str(), w.status.as_str()),
                ("INV-1", "pending")
            );
            assert_eq!(w.proposed_by, format!("ladder:{name}"));
            assert_eq!(w.reason, "uncollectible");
            // Proposed once: not again on the next day, nor after a rejection.
            assert_eq!(
                s.propose_ladder_write_offs(d("2026-11-03"), &rules)
                    .unwrap(),
                0
            );
            s.reject_write_off(w.id, "sam", "send to the lawyer", d(ON))
                .unwrap();
            assert_eq!(
                s.propose_ladder_write_offs(d("2026-11-04"), &rules)
                    .unwrap(),
                0
            );
            assert_eq!(status(s, "INV-1"), "open");
        }
    );

    on_both!(the_erp_export_carries_each_write_off_once, |s| {
        setup(s);
        let sec = section(dec!(2000));
        let t = WriteOffTerms {
            section: &sec,
            rates: &rates(),
        };
        let a = s
            .propose_write_off(
                case(s, "INV-1"),
                "uncollectible",
                d(ON),
                "ada",
                Role::Admin,
                &t,
            )
            .unwrap();
        // A pending one is not carried out, so not reported.
        s.propose_write_off(
            case(s, "INV-3"),
            "uncollectible",
            d(ON),
            "chen",
            Role::Collector,
            &t,
        )
        .unwrap();
        let todo = s.write_offs_to_report().unwrap();
        assert_eq!(todo.iter().map(|w| w.id).collect::<Vec<_>>(), [a.id]);
        assert_eq!(
            s.mark_write_offs_reported(&[a.id], d("2026-11-03"))
                .unwrap(),
            1
        );
        assert_eq!(
            s.mark_write_offs_reported(&[a.id], d("2026-11-04"))
                .unwrap(),
            0
        );
        assert!(s.write_offs_to_report().unwrap().is_empty());
        assert_eq!(
            s.write_off(a.id).unwrap().reported_on,
            Some(d("2026-11-03"))
        );
    });
}
