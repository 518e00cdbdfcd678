//! The customer 360° view, and the life cycle of promises to pay and disputes:
//! recording a promise on a case, judging promises once their date (plus a tolerance)
//! has passed, and resolving disputes. Every mutation is one transaction (a savepoint, so
//! that a caller may wrap it together with its audit record), appends to the case history
//! when there is a case, and marks the customer for the next run.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::db::{args, Arg, Db};
use super::{date, dec, ContactProfile, Result, Store, StoreError};
use arrears_core::domain::{ErpDunning, Priority, PromiseStatus};
use arrears_engine::case::add_days;
use arrears_engine::promise;

/// At most this many payments and contacts are shown in a customer view (newest first).
pub const VIEW_LIMIT: usize = 200;

/// The resolutions `resolve_dispute` accepts, with what each means for collection.
pub const DISPUTE_RESOLUTIONS: &[(&str, &str)] = &[
    ("valid", "credit note expected"),
    ("invalid", "back to collection"),
    ("write_off", "to be written off"),
];

/// Age limits (inclusive, in days) of the dispute ageing buckets.
pub const AGEING_BUCKETS: &[(&str, i64)] = &[
    ("0-30", 30),
    ("31-60", 60),
    ("61-90", 90),
    ("over_90", i64::MAX),
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgeingBucket {
    pub bucket: String,
    pub disputes: u32,
    /// Disputed open amount per currency.
    pub amounts: Vec<(String, Decimal)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisputeAgeing {
    pub buckets: Vec<AgeingBucket>,
    /// The oldest open disputes, oldest first.
    pub oldest: Vec<DisputeView>,
}

/// Everything known about one customer, as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerView {
    pub id: i64,
    pub company: String,
    pub code: String,
    pub name: String,
    pub country: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub credit_limit: Option<Decimal>,
    pub credit_currency: Option<String>,
    /// The date days overdue are counted to.
    pub as_of: NaiveDate,
    /// As-of date of the last run that evaluated the customer; `None` (and so every
    /// field up to `dunning_on`) when no run has evaluated it yet.
    pub last_run_on: Option<NaiveDate>,
    pub strategy: Option<String>,
    pub segment: Option<String>,
    pub profile: Option<String>,
    pub score: Option<Decimal>,
    pub collection_group: Option<String>,
    pub collector: Option<String>,
    pub priority: Option<Priority>,
    pub dunning_level: Option<i64>,
    pub dunning_on: Option<NaiveDate>,
    /// Open items, oldest due date first.
    pub items: Vec<ItemView>,
    /// Newest value date first, at most [`VIEW_LIMIT`].
    pub payments: Vec<PaymentView>,
    /// All promises, newest first.
    pub promises: Vec<PromiseView>,
    /// All disputes, resolved ones included, newest first.
    pub disputes: Vec<DisputeView>,
    /// Case history, customer events and reminders merged, newest first, at most [`VIEW_LIMIT`].
    pub contacts: Vec<ContactView>,
    /// The latest credit bureau answer: (bureau, score, risk class, fetched at);
    /// score and class `None` when the bureau does not know the customer.
    pub bureau: Option<(String, Option<i64>, Option<String>, String)>,
    /// What the ERP says of dunning the customer; `None`: it does not say.
    pub erp_dunning: Option<ErpDunning>,
    /// Where a letter goes (name and postal address); `None`: no letter can be
    /// sent, the address is incomplete.
    pub letter_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemView {
    pub id: i64,
    /// The item's open case, if it has one.
    pub case_id: Option<i64>,
    pub document_no: String,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    pub currency: String,
    pub status: String,
    /// Days past the due date as of the view's date; 0 when not yet due.
    pub days_overdue: i64,
    /// In a dispute that is not resolved yet.
    pub disputed: bool,
    pub hold_reason: Option<String>,
    pub hold_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    pub value_date: NaiveDate,
    pub amount: Decimal,
    pub currency: String,
    pub reference: String,
}

/// One entry of a customer's contact history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactView {
    pub on: NaiveDate,
    pub kind: String,
    pub actor: String,
    pub detail: String,
    /// Set for entries of a case's history.
    pub case_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromiseView {
    pub id: i64,
    /// COMPANY/CODE
    pub customer: String,
    pub case_id: Option<i64>,
    pub amount: Decimal,
    pub currency: String,
    pub promised_on: NaiveDate,
    pub created_on: NaiveDate,
    pub status: PromiseStatus,
    pub judged_on: Option<NaiveDate>,
    pub channel: Option<String>,
    /// The customer's contact person who made the promise.
    pub contact: Option<String>,
    /// Document numbers of the promised items.
    pub documents: Vec<String>,
    /// What the judgement counted, and the day the counted payments reached the
    /// promised amount (kept) or the last of them (partially kept).
    pub paid: Option<Decimal>,
    pub paid_on: Option<NaiveDate>,
}

/// A promise to pay as a collector records it.
#[derive(Debug, Clone)]
pub struct NewPromise {
    pub case_ids: Vec<i64>,
    pub amount: Decimal,
    pub promised_on: NaiveDate,
    /// The day the promise is made.
    pub on: NaiveDate,
    pub channel: Option<String>,
    pub contact: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisputeView {
    pub id: i64,
    /// COMPANY/CODE
    pub customer: String,
    pub case_id: Option<i64>,
    pub reason: String,
    pub opened_on: NaiveDate,
    pub resolved_on: Option<NaiveDate>,
    pub resolution: Option<String>,
    /// Document numbers of the disputed items.
    pub documents: Vec<String>,
}

/// What one `judge_promises` call decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JudgeStats {
    pub judged: u64,
    pub kept: u64,
    pub partial: u64,
    pub broken: u64,
}

fn opt_date(column: &'static str, s: Option<String>) -> Result<Option<NaiveDate>> {
    s.map(|s| date(column, &s)).transpose()
}

fn opt_dec(column: &'static str, s: Option<String>) -> Result<Option<Decimal>> {
    s.map(|s| dec(column, &s)).transpose()
}

fn promise_status(s: &str) -> Result<PromiseStatus> {
    let st = PromiseStatus::parse(s);
    if st.as_str() != s {
        return Err(StoreError::Corrupt {
            column: "promises.status",
            value: s.to_string(),
        });
    }
    Ok(st)
}

fn promises(db: &Db, filter: &str, args: &[&dyn Arg]) -> Result<Vec<PromiseView>> {
    let mut out = Vec::new();
    db.each(
        &format!(
            "SELECT p.id, cu.company || '/' || cu.code, p.case_id, p.amount, p.currency, p.promised_on, p.created_on,
                    p.status, p.judged_on, p.channel, p.contact, p.paid, p.paid_on
             FROM promises p JOIN customers cu ON cu.id = p.customer_id
             WHERE {filter} ORDER BY p.created_on DESC, p.id DESC"
        ),
        args,
        |r| {
            out.push(PromiseView {
                id: r.get(0, "promises.id")?,
                customer: r.get(1, "customers.code")?,
                case_id: r.get(2, "promises.case_id")?,
                amount: r.dec(3, "promises.amount")?,
                currency: r.get(4, "promises.currency")?,
                promised_on: r.date(5, "promised_on")?,
                created_on: r.date(6, "promises.created_on")?,
                status: promise_status(&r.get::<String>(7, "promises.status")?)?,
                judged_on: opt_date("judged_on", r.get(8, "judged_on")?)?,
                channel: r.get(9, "promises.channel")?,
                contact: r.get(10, "promises.contact")?,
                paid: opt_dec("promises.paid", r.get(11, "promises.paid")?)?,
                paid_on: opt_date("promises.paid_on", r.get(12, "promises.paid_on")?)?,
                documents: Vec::new(),
            });
            Ok(())
        },
    )?;
    if out.is_empty() {
        return Ok(out);
    }
    // The promised items' documents of all the promises in one read, joined here:
    // GROUP_CONCAT is SQLite's alone. In item order, as SQLite's GROUP_CONCAT over
    // the (promise, item) key gave them.
    let ids: Vec<i64> = out.iter().map(|p| p.id).collect();
    let mut documents: HashMap<i64, Vec<String>> = HashMap::new();
    db.each(
        &format!(
            "SELECT pi.promise_id, i.document_no FROM promise_items pi JOIN items i ON i.id = pi.item_id
             WHERE pi.promise_id IN {} ORDER BY pi.promise_id, pi.item_id",
            db.in_list("?1", "BIGINT")
        ),
        args![Db::json_list(&ids)],
        |r| {
            documents
                .entry(r.get(0, "promise_items.promise_id")?)
                .or_default()
                .push(r.get(1, "items.document_no")?);
            Ok(())
        },
    )?;
    for p in &mut out {
        p.documents = documents.remove(&p.id).unwrap_or_default();
    }
    Ok(out)
}

fn disputes(db: &Db, filter: &str, args: &[&dyn Arg]) -> Result<Vec<DisputeView>> {
    let mut out = Vec::new();
    db.each(
        &format!(
            "SELECT d.id, cu.company || '/' || cu.code, d.case_id, d.reason, d.opened_on, d.resolved_on, d.resolution
             FROM disputes d JOIN customers cu ON cu.id = d.customer_id
             WHERE {filter} ORDER BY d.opened_on DESC, d.id DESC"
        ),
        args,
        |r| {
            out.push(DisputeView {
                id: r.get(0, "disputes.id")?,
                customer: r.get(1, "customers.code")?,
                case_id: r.get(2, "disputes.case_id")?,
                reason: r.get(3, "disputes.reason")?,
                opened_on: r.date(4, "disputes.opened_on")?,
                resolved_on: opt_date("disputes.resolved_on", r.get(5, "disputes.resolved_on")?)?,
                resolution: r.get(6, "disputes.resolution")?,
                documents: Vec::new(),
            });
            Ok(())
        },
    )?;
    for d in &mut out {
        d.documents = db
            .rows(
                "SELECT i.document_no FROM dispute_items di JOIN items i ON i.id = di.item_id
                 WHERE di.dispute_id = ?1 ORDER BY i.document_no, i.id",
                args![d.id],
            )?
            .iter()
            .map(|r| r.get(0, "items.document_no"))
            .collect::<Result<_>>()?;
    }
    Ok(out)
}

fn require(db: &Db, table: &str, what: &str, id: i64) -> Result<()> {
    db.row(&format!("SELECT 1 FROM {table} WHERE id = ?1"), args![id])?
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("{what} {id}")))
}

fn case_event(
    db: &Db,
    case_id: i64,
    on: NaiveDate,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<()> {
    db.execute(
        "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![case_id, on, kind, actor, detail],
    )?;
    Ok(())
}

/// Records a promise with the items it covers (the first case is the one it was made on).
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_promise(
    db: &Db,
    customer_id: i64,
    case_id: i64,
    items: &[i64],
    amount: Decimal,
    currency: &str,
    promised_on: NaiveDate,
    on: NaiveDate,
    channel: Option<&str>,
    contact: Option<&str>,
) -> Result<i64> {
    let id = db
        .prepare_insert(
            "INSERT INTO promises(customer_id, case_id, amount, currency, promised_on, created_on, channel, contact)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .insert(args![
            customer_id,
            case_id,
            amount,
            currency,
            promised_on,
            on,
            channel,
            contact
        ])?
        .expect("a promise is inserted");
    let mut st = db.prepare("INSERT INTO promise_items(promise_id, item_id) VALUES (?1, ?2)")?;
    for item in items {
        st.execute(args![id, *item])?;
    }
    Ok(id)
}

/// The customer's result may change: the next run evaluates it, and a resident
/// portfolio loads it again whole (the change log's entry; its trigger moves the
/// customer's change counter).
pub(crate) fn mark_changed(db: &Db, customer_id: i64) -> Result<()> {
    log_change(db, customer_id, None)
}

/// An entry in the change log: the customer as a whole (`item` `None`), or only one
/// item of it (its amounts, dates, status or hold), which a resident portfolio then
/// loads again rather than the customer. On either database.
pub(crate) fn log_change(db: &Db, customer_id: i64, item: Option<i64>) -> Result<()> {
    db.execute(
        "INSERT INTO changes(customer_id, item_id) VALUES (?1, ?2)",
        args![customer_id, item],
    )?;
    Ok(())
}

/// An entry in the customer's contact history.
pub(crate) fn customer_event(
    db: &Db,
    customer_id: i64,
    on: NaiveDate,
    kind: &str,
    detail: &str,
) -> Result<()> {
    db.execute(
        "INSERT INTO customer_events(customer_id, on_date, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        args![customer_id, on, kind, detail],
    )?;
    Ok(())
}

/// Contact history of a customer: its cases' events, its customer events and the
/// reminders (escalation steps) decided for it, newest first.
const CONTACTS_SQL: &str = "
    SELECT on_date, kind, actor, detail, case_id FROM (
        SELECT e.on_date, e.kind, e.actor, e.detail, e.case_id, 0 AS src, e.id AS rid
          FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.customer_id = ?1
        UNION ALL
        SELECT on_date, kind, 'system', detail, NULL, 1, id FROM customer_events WHERE customer_id = ?1
        UNION ALL
        SELECT as_of, 'reminder', 'system', 'level ' || level || ' ' || level_name || ' by ' || channel || ' (' || status || ')', NULL, 2, id
          FROM escalations WHERE customer_id = ?1
    ) AS h ORDER BY on_date DESC, src, rid DESC LIMIT ?2";

/// The 360° view of customer `id` on one snapshot of `db`.
fn customer_view(db: &Db, id: i64, as_of: NaiveDate) -> Result<CustomerView> {
    let m = db
        .row(
            "SELECT cu.company, cu.code, cu.name, cu.country, cu.email, cu.phone, cu.language, cu.timezone,
                    cu.credit_limit, cu.credit_currency,
                    s.customer_id IS NOT NULL, s.strategy, s.segment, s.profile, s.score, s.collection_group,
                    s.collector, s.priority, s.dunning_level, s.dunning_on, s.as_of,
                    cu.address, cu.street, cu.postal_code, cu.city, cu.dunning_procedure
             FROM customers cu LEFT JOIN customer_state s ON s.customer_id = cu.id WHERE cu.id = ?1",
            args![id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("customer {id}")))?;
    let run: bool = m.get(10, "customer_state.customer_id")?;
    let (strategy, segment, profile, score, collection_group) = if run {
        (
            Some(m.get(11, "customer_state.strategy")?),
            Some(m.get(12, "customer_state.segment")?),
            Some(m.get(13, "customer_state.profile")?),
            Some(m.dec(14, "customer_state.score")?),
            Some(m.get(15, "customer_state.collection_group")?),
        )
    } else {
        (None, None, None, None, None)
    };
    let (collector, priority, dunning_level, dunning_on, last_run_on) = if run {
        (
            m.get(16, "customer_state.collector")?,
            Some(Priority::from_i64(m.get(17, "customer_state.priority")?)),
            Some(m.get(18, "customer_state.dunning_level")?),
            opt_date("dunning_on", m.get(19, "dunning_on")?)?,
            Some(m.date(20, "customer_state.as_of")?),
        )
    } else {
        (None, None, None, None, None)
    };
    let name: String = m.get(2, "customers.name")?;
    let country: String = m.get(3, "customers.country")?;
    // Where a letter goes, from the same row (what the outbox's contact profile
    // makes of these columns).
    let letter_address = ContactProfile {
        name: name.clone(),
        country: country.clone(),
        address: m.get(21, "customers.address")?,
        street: m.get(22, "customers.street")?,
        postal_code: m.get(23, "customers.postal_code")?,
        city: m.get(24, "customers.city")?,
        ..ContactProfile::default()
    }
    .postal_address();

    let mut items = Vec::new();
    db.each(
        "SELECT i.id, c.id, i.document_no, i.document_date, i.due_date, i.original_amount, i.open_amount,
                i.currency, i.status,
                EXISTS (SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                        WHERE di.item_id = i.id AND d.resolved_on IS NULL),
                i.hold_reason, i.hold_until
         FROM items i LEFT JOIN cases c ON c.item_id = i.id AND c.status = 'open'
         WHERE i.customer_id = ?1 AND i.status = 'open' ORDER BY i.due_date, i.id",
        args![id],
        |r| {
            let due_date = r.date(4, "due_date")?;
            items.push(ItemView {
                id: r.get(0, "items.id")?,
                case_id: r.get(1, "cases.id")?,
                document_no: r.get(2, "items.document_no")?,
                document_date: r.date(3, "document_date")?,
                due_date,
                original_amount: r.dec(5, "original_amount")?,
                open_amount: r.dec(6, "open_amount")?,
                currency: r.get(7, "items.currency")?,
                status: r.get(8, "items.status")?,
                days_overdue: (as_of - due_date).num_days().max(0),
                disputed: r.get(9, "disputed")?,
                hold_reason: r.get(10, "items.hold_reason")?,
                hold_until: opt_date("hold_until", r.get(11, "hold_until")?)?,
            });
            Ok(())
        },
    )?;

    let mut payments = Vec::new();
    db.each(
        "SELECT value_date, amount, currency, reference FROM payments WHERE customer_id = ?1
         ORDER BY value_date DESC, id DESC LIMIT ?2",
        args![id, VIEW_LIMIT as i64],
        |r| {
            payments.push(PaymentView {
                value_date: r.date(0, "value_date")?,
                amount: r.dec(1, "payments.amount")?,
                currency: r.get(2, "payments.currency")?,
                reference: r.get(3, "payments.reference")?,
            });
            Ok(())
        },
    )?;

    let mut contacts = Vec::new();
    db.each(CONTACTS_SQL, args![id, VIEW_LIMIT as i64], |r| {
        contacts.push(ContactView {
            on: r.date(0, "contact date")?,
            kind: r.get(1, "contact kind")?,
            actor: r.get(2, "contact actor")?,
            detail: r.get(3, "contact detail")?,
            case_id: r.get(4, "contact case_id")?,
        });
        Ok(())
    })?;

    let bureau = db
        .row(
            "SELECT bureau, score, risk_class, fetched_at FROM bureau_scores WHERE customer_id = ?1",
            args![id],
        )?
        .map(|r| -> Result<_> {
            Ok((
                r.get(0, "bureau_scores.bureau")?,
                r.get(1, "bureau_scores.score")?,
                r.get(2, "bureau_scores.risk_class")?,
                r.get(3, "bureau_scores.fetched_at")?,
            ))
        })
        .transpose()?;
    Ok(CustomerView {
        erp_dunning: ErpDunning::from_stored(m.get(25, "customers.dunning_procedure")?),
        letter_address,
        id,
        company: m.get(0, "customers.company")?,
        code: m.get(1, "customers.code")?,
        name,
        country,
        email: m.get(4, "customers.email")?,
        phone: m.get(5, "customers.phone")?,
        language: m.get(6, "customers.language")?,
        timezone: m.get(7, "customers.timezone")?,
        credit_limit: opt_dec("credit_limit", m.get(8, "credit_limit")?)?,
        credit_currency: m.get(9, "customers.credit_currency")?,
        as_of,
        last_run_on,
        strategy,
        segment,
        profile,
        score,
        collection_group,
        collector,
        priority,
        dunning_level,
        dunning_on,
        items,
        payments,
        promises: promises(db, "p.customer_id = ?1", args![id])?,
        disputes: disputes(db, "d.customer_id = ?1", args![id])?,
        contacts,
        bureau,
    })
}

/// A promise to pay on the items of one or more open cases of one customer (see
/// [`Store::create_promise`]), inside the write `db` is in.
fn create_promise(db: &Db, p: &NewPromise, actor: &str) -> Result<PromiseView> {
    let mut customer: Option<(i64, String)> = None;
    let mut open_total = Decimal::ZERO;
    let mut items = Vec::with_capacity(p.case_ids.len());
    for &case_id in &p.case_ids {
        let r = db
            .row(
                "SELECT c.customer_id, c.status, i.id, i.open_amount, i.currency
                 FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
                args![case_id],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
        let customer_id: i64 = r.get(0, "cases.customer_id")?;
        let status: String = r.get(1, "cases.status")?;
        let item_id: i64 = r.get(2, "items.id")?;
        let open: String = r.get(3, "open_amount")?;
        let currency: String = r.get(4, "items.currency")?;
        if status != "open" {
            return Err(StoreError::State(format!(
                "case {case_id} is closed; a promise needs open cases"
            )));
        }
        match &customer {
            None => customer = Some((customer_id, currency)),
            Some((c, _)) if *c != customer_id => {
                return Err(StoreError::Invalid(format!(
                    "case {case_id} belongs to another customer; a promise covers one customer's items"
                )))
            }
            Some((_, cur)) if *cur != currency => {
                return Err(StoreError::Invalid(format!(
                    "case {case_id} is in {currency}, the others in {cur}; a promise is in one currency"
                )))
            }
            Some(_) => {}
        }
        if items.contains(&item_id) {
            return Err(StoreError::Invalid(format!(
                "case {case_id} is named twice"
            )));
        }
        items.push(item_id);
        open_total += dec("open_amount", &open)?;
    }
    let Some((customer_id, currency)) = customer else {
        unreachable!("at least one case was read")
    };
    if p.promised_on < p.on {
        return Err(StoreError::Invalid(format!(
            "promised_on {} lies before the day the promise is made ({})",
            p.promised_on, p.on
        )));
    }
    if p.amount <= Decimal::ZERO {
        return Err(StoreError::Invalid(format!(
            "amount must be positive, got {}",
            p.amount
        )));
    }
    if let Ok(cur) = arrears_core::money::Currency::parse(&currency) {
        arrears_core::money::check_amount(p.amount, cur)
            .map_err(|e| StoreError::Invalid(format!("amount: {e}")))?;
    }
    if p.amount > open_total {
        return Err(StoreError::Invalid(format!(
            "amount {} exceeds the open amount {open_total} {currency} of the promised items",
            p.amount
        )));
    }
    let id = insert_promise(
        db,
        customer_id,
        p.case_ids[0],
        &items,
        p.amount,
        &currency,
        p.promised_on,
        p.on,
        p.channel.as_deref(),
        p.contact.as_deref(),
    )?;
    let cases = if p.case_ids.len() > 1 {
        let ids: Vec<String> = p.case_ids.iter().map(|c| c.to_string()).collect();
        format!(" covering cases {}", ids.join(", "))
    } else {
        String::new()
    };
    let by = match (&p.channel, &p.contact) {
        (Some(ch), Some(who)) => format!(" ({who}, by {ch})"),
        (Some(ch), None) => format!(" (by {ch})"),
        (None, Some(who)) => format!(" ({who})"),
        (None, None) => String::new(),
    };
    for &case_id in &p.case_ids {
        case_event(
            db,
            case_id,
            p.on,
            "promise",
            actor,
            &format!(
                "promise to pay {} {currency} by {}{cases}{by}",
                p.amount, p.promised_on
            ),
        )?;
    }
    mark_changed(db, customer_id)?;
    promises(db, "p.id = ?1", args![id])?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("promise {id}")))
}

/// Judges the promises due on `as_of` (see [`Store::judge_promises`]), inside the
/// write `db` is in.
fn judge_promises(db: &Db, as_of: NaiveDate, tolerance: promise::Tolerance) -> Result<JudgeStats> {
    let due = db.rows(
        "SELECT id, customer_id, case_id, amount, currency, promised_on, created_on FROM promises
         WHERE status = 'open' AND promised_on < ?1 ORDER BY promised_on, id",
        args![tolerance.cutoff(as_of)],
    )?;
    let mut stats = JudgeStats::default();
    for r in &due {
        let id: i64 = r.get(0, "promises.id")?;
        let customer_id: i64 = r.get(1, "promises.customer_id")?;
        let case_id: Option<i64> = r.get(2, "promises.case_id")?;
        let currency: String = r.get(4, "promises.currency")?;
        let p = promise::Promise {
            amount: r.dec(3, "promises.amount")?,
            promised_on: r.date(5, "promised_on")?,
            created_on: r.date(6, "promises.created_on")?,
        };
        let (from, to) = p.window(tolerance);
        // Loaded per promise, after the earlier ones recorded what they took.
        let mut payments = Vec::new();
        for r in db.rows(
            "SELECT amount, value_date, id FROM payments WHERE customer_id = ?1 AND currency = ?2
             AND value_date >= ?3 AND value_date <= ?4 ORDER BY value_date, id",
            args![customer_id, currency, from, to],
        )? {
            let payment: i64 = r.get(2, "payments.id")?;
            let mut left = r.dec(0, "payments.amount")?;
            for u in db.rows(
                "SELECT amount FROM promise_payments WHERE payment_id = ?1",
                args![payment],
            )? {
                left -= u.dec(0, "promise_payments.amount")?;
            }
            payments.push(promise::Payment {
                id: payment,
                value_date: r.date(1, "payments.value_date")?,
                left,
            });
        }
        let Some(v) = promise::judge(&p, &payments, as_of, tolerance) else {
            continue;
        };
        for (payment, take) in &v.taken {
            db.execute(
                "INSERT INTO promise_payments(promise_id, payment_id, amount) VALUES (?1, ?2, ?3)",
                args![id, *payment, *take],
            )?;
        }
        match v.status {
            PromiseStatus::Kept => stats.kept += 1,
            PromiseStatus::PartiallyKept => stats.partial += 1,
            PromiseStatus::Broken => stats.broken += 1,
            PromiseStatus::Open => {}
        }
        stats.judged += 1;
        db.execute(
            "UPDATE promises SET status = ?2, judged_on = ?3, paid = ?4, paid_on = ?5 WHERE id = ?1 AND status = 'open'",
            args![id, v.status.as_str(), as_of, v.paid, v.paid_on],
        )?;
        if let Some(case_id) = case_id {
            case_event(
                db,
                case_id,
                as_of,
                "promise_judged",
                "system",
                &format!(
                    "{}: paid {} of {} {currency} promised by {} ({from} to {to})",
                    v.status.as_str(),
                    v.paid,
                    p.amount,
                    p.promised_on
                ),
            )?;
        }
        mark_changed(db, customer_id)?;
    }
    Ok(stats)
}

/// Resolves an open dispute (see [`Store::resolve_dispute`]), inside the write
/// `db` is in.
fn resolve_dispute(
    db: &Db,
    dispute_id: i64,
    resolution: &str,
    meaning: &str,
    on: NaiveDate,
    actor: &str,
) -> Result<DisputeView> {
    let r = db
        .row(
            "SELECT customer_id, case_id, opened_on, resolved_on, resolution FROM disputes WHERE id = ?1",
            args![dispute_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("dispute {dispute_id}")))?;
    let customer_id: i64 = r.get(0, "disputes.customer_id")?;
    let case_id: Option<i64> = r.get(1, "disputes.case_id")?;
    let opened_on: String = r.get(2, "disputes.opened_on")?;
    let resolved_on: Option<String> = r.get(3, "disputes.resolved_on")?;
    let previous: Option<String> = r.get(4, "disputes.resolution")?;
    if let Some(when) = resolved_on {
        return Err(StoreError::State(format!(
            "dispute {dispute_id} is already resolved ({} on {when})",
            previous.unwrap_or_default()
        )));
    }
    let opened_on = date("disputes.opened_on", &opened_on)?;
    if on < opened_on {
        return Err(StoreError::Invalid(format!(
            "resolution date {on} lies before the dispute was opened ({opened_on})"
        )));
    }
    db.execute(
        "UPDATE disputes SET resolved_on = ?2, resolution = ?3 WHERE id = ?1 AND resolved_on IS NULL",
        args![dispute_id, on, resolution],
    )?;
    if let Some(case_id) = case_id {
        case_event(
            db,
            case_id,
            on,
            "dispute_resolved",
            actor,
            &format!("{resolution}: {meaning}"),
        )?;
    }
    mark_changed(db, customer_id)?;
    disputes(db, "d.id = ?1", args![dispute_id])?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("dispute {dispute_id}")))
}

impl Store {
    /// The 360° view of customer `id`; days overdue are counted to `as_of`. Read on
    /// one snapshot, so that its parts agree (an item's dispute flag and the
    /// disputes listed).
    pub fn customer_view(&self, id: i64, as_of: NaiveDate) -> Result<CustomerView> {
        self.db().read(|db| customer_view(db, id, as_of))
    }

    /// All promises of a customer, newest first.
    pub fn list_promises(&self, customer_id: i64) -> Result<Vec<PromiseView>> {
        let db = self.db();
        require(&db, "customers", "customer", customer_id)?;
        promises(&db, "p.customer_id = ?1", args![customer_id])
    }

    /// Disputes of a customer, newest first; resolved ones only with `include_resolved`.
    pub fn list_disputes(
        &self,
        customer_id: i64,
        include_resolved: bool,
    ) -> Result<Vec<DisputeView>> {
        let db = self.db();
        require(&db, "customers", "customer", customer_id)?;
        disputes(
            &db,
            "d.customer_id = ?1 AND (?2 <> 0 OR d.resolved_on IS NULL)",
            args![customer_id, include_resolved],
        )
    }

    /// Open disputes by age on `as_of` (0–30, 31–60, 61–90, over 90 days), with the
    /// disputed open amount per currency, and the oldest ones; only disputes of the
    /// customers `keep` accepts (by id), so a report shows what its reader may see.
    pub fn dispute_ageing(
        &self,
        as_of: NaiveDate,
        oldest: usize,
        keep: &mut dyn FnMut(i64) -> Result<bool>,
    ) -> Result<DisputeAgeing> {
        let db = self.db();
        let mut out = DisputeAgeing {
            buckets: AGEING_BUCKETS
                .iter()
                .map(|(name, _)| AgeingBucket {
                    bucket: (*name).into(),
                    disputes: 0,
                    amounts: Vec::new(),
                })
                .collect(),
            oldest: Vec::new(),
        };
        let mut seen: Vec<(i64, usize)> = Vec::new();
        db.each(
            "SELECT d.id, d.opened_on, i.currency, i.open_amount, d.customer_id FROM disputes d
             JOIN dispute_items di ON di.dispute_id = d.id JOIN items i ON i.id = di.item_id
             WHERE d.resolved_on IS NULL AND i.status = 'open' ORDER BY d.opened_on, d.id",
            args![],
            |r| {
                if !keep(r.get(4, "disputes.customer_id")?)? {
                    return Ok(());
                }
                let id: i64 = r.get(0, "disputes.id")?;
                let opened = r.date(1, "disputes.opened_on")?;
                let age = (as_of - opened).num_days().max(0);
                let k = AGEING_BUCKETS
                    .iter()
                    .position(|(_, max)| age <= *max)
                    .unwrap_or(AGEING_BUCKETS.len() - 1);
                let b = &mut out.buckets[k];
                if !seen.iter().any(|(d, _)| *d == id) {
                    seen.push((id, k));
                    b.disputes += 1;
                }
                let currency: String = r.get(2, "items.currency")?;
                let amount = r.dec(3, "items.open_amount")?;
                match b.amounts.iter_mut().find(|(c, _)| *c == currency) {
                    Some(x) => x.1 += amount,
                    None => b.amounts.push((currency, amount)),
                }
                Ok(())
            },
        )?;
        for (id, _) in seen.iter().take(oldest) {
            out.oldest.extend(disputes(&db, "d.id = ?1", args![*id])?);
        }
        Ok(out)
    }

    /// Promises recorded on a case, newest first.
    pub fn case_promises(&self, case_id: i64) -> Result<Vec<PromiseView>> {
        let db = self.db();
        require(&db, "cases", "case", case_id)?;
        promises(&db, "p.case_id = ?1", args![case_id])
    }

    /// Disputes opened from a case, resolved ones included, newest first.
    pub fn case_disputes(&self, case_id: i64) -> Result<Vec<DisputeView>> {
        let db = self.db();
        require(&db, "cases", "case", case_id)?;
        disputes(&db, "d.case_id = ?1", args![case_id])
    }

    /// Records a promise to pay `amount` (in the item's currency) by `promised_on`, agreed
    /// on `on`, on an open case. The case's activity and NAD are left as they are.
    /// A promise to pay `p.amount` by `p.promised_on` on the items of one or more open
    /// cases of one customer, in one currency; refused when it lies in the past or
    /// exceeds what is open on those items.
    pub fn create_promise(&mut self, p: &NewPromise, actor: &str) -> Result<PromiseView> {
        if p.case_ids.is_empty() {
            return Err(StoreError::Invalid(
                "case_ids: a promise needs at least one case".into(),
            ));
        }
        self.db().write(|db| create_promise(db, p, actor))
    }

    /// Judges every open promise whose date plus `tolerance_days` lies before `as_of`
    /// by `arrears_engine::promise::judge`, and records the verdicts and the payments
    /// they took. Judged promises are never judged again.
    pub fn judge_promises(&mut self, as_of: NaiveDate, tolerance_days: i64) -> Result<JudgeStats> {
        let tolerance = promise::Tolerance::days(tolerance_days)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.db().write(|db| judge_promises(db, as_of, tolerance))
    }

    /// Resolves a dispute as `valid` (credit note expected), `invalid` (back to
    /// collection) or `write_off`; its items count as disputed no longer.
    pub fn resolve_dispute(
        &mut self,
        dispute_id: i64,
        resolution: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<DisputeView> {
        let meaning = DISPUTE_RESOLUTIONS
            .iter()
            .find(|(r, _)| *r == resolution)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "resolution `{resolution}` is unknown; expected one of: {}",
                    DISPUTE_RESOLUTIONS
                        .iter()
                        .map(|(r, _)| *r)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        self.db()
            .write(|db| resolve_dispute(db, dispute_id, resolution, meaning, on, actor))
    }

    /// One dispute, open or resolved.
    pub fn dispute(&self, dispute_id: i64) -> Result<DisputeView> {
        disputes(&self.db(), "d.id = ?1", args![dispute_id])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("dispute {dispute_id}")))
    }

    /// Ends the customer's holds that are active on `on`: each one's last day becomes
    /// the day before, so its items are dunned again from the next run on. The holds
    /// stay on record with their shortened end. Returns how many were lifted.
    pub fn lift_holds(&mut self, customer_id: i64, on: NaiveDate) -> Result<usize> {
        let db = self.db();
        require(&db, "customers", "customer", customer_id)?;
        db.write(|db| {
            let n = db.execute(
                "UPDATE holds SET until = ?2 WHERE customer_id = ?1 AND (until IS NULL OR until >= ?3)",
                args![customer_id, add_days(on, -1), on],
            )?;
            if n == 0 {
                return Err(StoreError::State(format!(
                    "customer {customer_id} has no hold active on {on}"
                )));
            }
            mark_changed(db, customer_id)?;
            Ok(n)
        })
    }

    /// The customer's holds active on `on`: (reason, last day or none).
    pub fn active_holds(
        &self,
        customer_id: i64,
        on: NaiveDate,
    ) -> Result<Vec<(String, Option<NaiveDate>)>> {
        self.db()
            .rows(
                "SELECT reason, until FROM holds WHERE customer_id = ?1 AND (until IS NULL OR until >= ?2) ORDER BY id",
                args![customer_id, on],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.get(0, "holds.reason")?,
                    opt_date("holds.until", r.get(1, "holds.until")?)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaseEvent, Scope};
    use arrears_core::domain::{Batch, CustomerInfo, Hold, ItemInput, PaymentInput};
    use arrears_core::money::Currency;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn item(ext: &str, customer: &str, due: &str, open: Decimal, cur: &str) -> ItemInput {
        ItemInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: "ACME".into(),
            customer: customer.into(),
            document_no: format!("INV-{ext}"),
            document_date: d("2026-09-01"),
            due_date: d(due),
            original_amount: open,
            open_amount: open,
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    fn payment(ext: &str, customer: &str, amount: Decimal, cur: &str, on: &str) -> PaymentInput {
        PaymentInput {
            source: "bank".into(),
            external_id: ext.into(),
            company: "ACME".into(),
            customer: customer.into(),
            amount,
            currency: Currency::parse(cur).unwrap(),
            value_date: d(on),
            reference: format!("REF-{ext}"),
            item_ref: None,
        }
    }

    fn fill(s: &mut Store, batch: Batch) {
        s.ingest(&batch).unwrap();
    }

    fn cust(s: &Store, code: &str) -> i64 {
        s.customer_id(&format!("ACME/{code}")).unwrap()
    }

    /// Opens a case on each item (by external id) as a run on `on` would; returns
    /// their ids in order. In SQL: the run's writer is another module's.
    fn open_cases(s: &mut Store, exts: &[&str], on: &str) -> Vec<i64> {
        let db = s.db();
        exts.iter()
            .map(|e| {
                let r = db
                    .row(
                        "SELECT id, customer_id FROM items WHERE external_id = ?1",
                        args![*e],
                    )
                    .unwrap()
                    .unwrap();
                let (item, customer): (i64, i64) =
                    (r.get(0, "id").unwrap(), r.get(1, "customer_id").unwrap());
                db.prepare_insert(
                    "INSERT INTO cases(item_id, customer_id, status, opened_on, nad, priority)
                     VALUES (?1, ?2, 'open', ?3, ?3, ?4)",
                )
                .unwrap()
                .insert(args![item, customer, d(on), Priority::Low as i64])
                .unwrap()
                .unwrap()
            })
            .collect()
    }

    /// Closes a case as a run on `on` would.
    fn close_case(s: &mut Store, case: i64, on: &str) {
        let db = s.db();
        db.execute(
            "UPDATE cases SET status = 'closed', closed_on = ?2, close_reason = 'cleared' WHERE id = ?1",
            args![case, d(on)],
        )
        .unwrap();
        case_event(&db, case, d(on), "closed", "run", "cleared").unwrap();
    }

    /// A dispute opened from `case` over its item and those of `more`, as the
    /// cases module records one.
    fn dispute(s: &mut Store, case: i64, more: &[i64], reason: &str, on: &str, actor: &str) -> i64 {
        let db = s.db();
        let customer: i64 = db
            .row("SELECT customer_id FROM cases WHERE id = ?1", args![case])
            .unwrap()
            .unwrap()
            .get(0, "customer_id")
            .unwrap();
        let id = db
            .prepare_insert(
                "INSERT INTO disputes(customer_id, case_id, reason, opened_on) VALUES (?1, ?2, ?3, ?4)",
            )
            .unwrap()
            .insert(args![customer, case, reason, d(on)])
            .unwrap()
            .unwrap();
        for &c in std::iter::once(&case).chain(more) {
            db.execute(
                "INSERT INTO dispute_items(dispute_id, item_id) SELECT ?1, item_id FROM cases WHERE id = ?2",
                args![id, c],
            )
            .unwrap();
            case_event(&db, c, d(on), "dispute", actor, reason).unwrap();
        }
        mark_changed(&db, customer).unwrap();
        id
    }

    fn np(case: i64, amount: Decimal, by: NaiveDate, on: NaiveDate) -> NewPromise {
        NewPromise {
            case_ids: vec![case],
            amount,
            promised_on: by,
            on,
            channel: None,
            contact: None,
        }
    }

    /// As a run that evaluated `customers` leaves them: not dirty.
    fn settle(s: &mut Store, customers: &[i64]) {
        for &c in customers {
            s.db()
                .execute("UPDATE customers SET dirty = 0 WHERE id = ?1", args![c])
                .unwrap();
            assert!(!dirty(s, c));
        }
    }

    fn dirty(s: &Store, customer: i64) -> bool {
        let n: i64 = s
            .db()
            .row("SELECT dirty FROM customers WHERE id = ?1", args![customer])
            .unwrap()
            .unwrap()
            .get(0, "dirty")
            .unwrap();
        n != 0
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.db()
            .row(sql, args![])
            .unwrap()
            .unwrap()
            .get(0, "count")
            .unwrap()
    }

    /// A case's history, oldest first (as the case's detail shows it).
    fn history(s: &Store, case: i64) -> Vec<CaseEvent> {
        s.db()
            .rows(
                "SELECT on_date, kind, actor, detail FROM case_events WHERE case_id = ?1 ORDER BY id",
                args![case],
            )
            .unwrap()
            .iter()
            .map(|r| CaseEvent {
                on: d(&r.get::<String>(0, "on_date").unwrap()),
                kind: r.get(1, "kind").unwrap(),
                actor: r.get(2, "actor").unwrap(),
                detail: r.get(3, "detail").unwrap(),
            })
            .collect()
    }

    fn last_event(s: &Store, case: i64) -> CaseEvent {
        history(s, case).pop().unwrap()
    }

    fn invalid_naming(r: Result<impl std::fmt::Debug>, word: &str) {
        match r {
            Err(StoreError::Invalid(m)) => assert!(m.contains(word), "`{m}` should name {word}"),
            other => panic!("expected Invalid naming {word}, got {other:?}"),
        }
    }

    fn state_naming(r: Result<impl std::fmt::Debug>, word: &str) {
        match r {
            Err(StoreError::State(m)) => assert!(m.contains(word), "`{m}` should name {word}"),
            other => panic!("expected State naming {word}, got {other:?}"),
        }
    }

    /// Whether the engine's input has the item as disputed; the customer view must
    /// agree.
    fn item_disputed(s: &Store, customer: i64, doc: &str) -> bool {
        let input = s.load_run_input(Scope::One(customer)).unwrap();
        let engine = input[0]
            .items
            .iter()
            .find(|i| i.document_no == doc)
            .unwrap()
            .disputed;
        let shown = s
            .customer_view(customer, d("2026-11-20"))
            .unwrap()
            .items
            .iter()
            .find(|i| i.document_no == doc)
            .unwrap()
            .disputed;
        assert_eq!(engine, shown, "the engine's input and the view agree");
        engine
    }

    crate::on_both!(
        customer_view_gathers_master_data_state_items_payments_and_contacts,
        |s| {
            let mut held = item("2", "C1", "2026-12-01", dec!(40), "EUR");
            held.original_amount = dec!(50);
            held.hold = Some(Hold {
                reason: "awaiting PO".into(),
                until: Some(d("2026-11-30")),
            });
            fill(
                s,
                Batch {
                    customers: vec![CustomerInfo {
                        company: "ACME".into(),
                        code: "C1".into(),
                        name: "Müller GmbH".into(),
                        country: "DE".into(),
                        email: Some("ap@mueller.example".into()),
                        phone: Some("+49 30 1234".into()),
                        language: Some("de".into()),
                        timezone: Some("Europe/Berlin".into()),
                        credit_limit: Some((dec!(5000), Currency::parse("EUR").unwrap())),
                        street: Some("Hauptstr. 1".into()),
                        postal_code: Some("10115".into()),
                        city: Some("Berlin".into()),
                        dunning: Some(ErpDunning::Excluded),
                    }],
                    items: vec![
                        item("1", "C1", "2026-10-01", dec!(100.00), "EUR"),
                        held,
                        item("3", "C1", "2026-09-15", dec!(0), "EUR"),
                        item("5", "C1", "2026-11-14", dec!(10), "EUR"),
                        item("4", "C2", "2026-10-01", dec!(70), "EUR"),
                    ],
                    payments: vec![
                        payment("p1", "C1", dec!(30), "EUR", "2026-10-20"),
                        payment("p2", "C1", dec!(20.50), "EUR", "2026-11-03"),
                        payment("p3", "C1", dec!(10), "USD", "2026-10-25"),
                        payment("p4", "C2", dec!(5), "EUR", "2026-11-04"),
                    ],
                    ..Batch::default()
                },
            );
            let (c1, c2) = (cust(s, "C1"), cust(s, "C2"));
            let [case1, case2, case4] = open_cases(s, &["1", "2", "4"], "2026-11-01")[..] else {
                unreachable!()
            };
            // What a run on 11-01 decided for C1 (its writer is another module's).
            s.db()
            .execute(
                "INSERT INTO customer_state(customer_id, strategy, segment, profile, score, collection_group,
                                            collector, priority, dunning_level, dunning_on, as_of)
                 VALUES (?1, 'standard', 'B2B', 'slow payer', ?2, 'DE-1', 'anna', ?3, 1, ?4, ?4)",
                args![c1, dec!(42.5), Priority::High as i64, d("2026-11-01")],
            )
            .unwrap();
            s.db()
            .execute(
                "INSERT INTO escalations(customer_id, run_id, as_of, ladder, level, level_name, channel,
                                         template, copy_manager, amount, items, reason)
                 VALUES (?1, 1, ?2, 'standard', 1, 'first reminder', 'email', 'reminder1', 0, ?3, '[]', 'overdue')",
                args![c1, d("2026-11-01"), dec!(100)],
            )
            .unwrap();
            s.db()
                .execute(
                    "INSERT INTO bureau_scores(customer_id, bureau, score, risk_class, fetched_at)
                 VALUES (?1, 'creditreform', 250, 'B', '2026-10-30T08:00:00+00:00')",
                    args![c1],
                )
                .unwrap();
            let d1 = dispute(s, case1, &[], "goods damaged", "2026-11-05", "anna");
            dispute(s, case4, &[], "price difference", "2026-11-06", "carl");
            // A customer event (the outbox's and the ERP's entries) on the day of the
            // reminder: after the cases' events of that day, before the reminder.
            customer_event(&s.db(), c1, d("2026-11-01"), "address_changed", "street").unwrap();
            let promise = s
                .create_promise(
                    &np(case2, dec!(30), d("2026-11-20"), d("2026-11-10")),
                    "ben",
                )
                .unwrap();

            let v = s.customer_view(c1, d("2026-11-15")).unwrap();
            assert_eq!(
                (
                    v.id,
                    v.company.as_str(),
                    v.code.as_str(),
                    v.name.as_str(),
                    v.country.as_str()
                ),
                (c1, "ACME", "C1", "Müller GmbH", "DE")
            );
            assert_eq!(v.email.as_deref(), Some("ap@mueller.example"));
            assert_eq!(v.phone.as_deref(), Some("+49 30 1234"));
            assert_eq!(v.language.as_deref(), Some("de"));
            assert_eq!(v.timezone.as_deref(), Some("Europe/Berlin"));
            assert_eq!(v.credit_limit, Some(dec!(5000)));
            assert_eq!(v.credit_currency.as_deref(), Some("EUR"));
            assert_eq!(v.as_of, d("2026-11-15"));
            assert_eq!(v.last_run_on, Some(d("2026-11-01")));
            assert_eq!(v.strategy.as_deref(), Some("standard"));
            assert_eq!(v.segment.as_deref(), Some("B2B"));
            assert_eq!(v.profile.as_deref(), Some("slow payer"));
            assert_eq!(v.score, Some(dec!(42.5)));
            assert_eq!(v.collection_group.as_deref(), Some("DE-1"));
            assert_eq!(v.collector.as_deref(), Some("anna"));
            assert_eq!(v.priority, Some(Priority::High));
            assert_eq!(v.dunning_level, Some(1));
            assert_eq!(v.dunning_on, Some(d("2026-11-01")));

            // Open items only (INV-3 was cleared at zero), oldest due first; C2's item is not here.
            let rows: Vec<_> = v
                .items
                .iter()
                .map(|i| {
                    (
                        i.document_no.as_str(),
                        i.case_id,
                        i.days_overdue,
                        i.disputed,
                        i.original_amount,
                        i.open_amount,
                        i.status.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                rows,
                vec![
                    // 2026-10-01 → 2026-11-15: 30 days of October + 15 = 45
                    ("INV-1", Some(case1), 45, true, dec!(100), dec!(100), "open"),
                    ("INV-5", None, 1, false, dec!(10), dec!(10), "open"),
                    ("INV-2", Some(case2), 0, false, dec!(50), dec!(40), "open"),
                ]
            );
            let inv2 = &v.items[2];
            assert_eq!(inv2.hold_reason.as_deref(), Some("awaiting PO"));
            assert_eq!(inv2.hold_until, Some(d("2026-11-30")));
            assert_eq!(inv2.document_date, d("2026-09-01"));
            assert_eq!(inv2.due_date, d("2026-12-01"));
            assert_eq!(inv2.currency, "EUR");
            assert_eq!(v.items[0].hold_reason, None);

            let pv = |on: &str, amount: Decimal, cur: &str, r: &str| PaymentView {
                value_date: d(on),
                amount,
                currency: cur.into(),
                reference: r.into(),
            };
            assert_eq!(
                v.payments,
                vec![
                    pv("2026-11-03", dec!(20.50), "EUR", "REF-p2"),
                    pv("2026-10-25", dec!(10), "USD", "REF-p3"),
                    pv("2026-10-20", dec!(30), "EUR", "REF-p1"),
                ]
            );
            assert_eq!(
                v.promises,
                vec![PromiseView {
                    id: promise.id,
                    customer: "ACME/C1".into(),
                    case_id: Some(case2),
                    amount: dec!(30),
                    currency: "EUR".into(),
                    promised_on: d("2026-11-20"),
                    created_on: d("2026-11-10"),
                    status: PromiseStatus::Open,
                    judged_on: None,
                    channel: None,
                    contact: None,
                    documents: vec!["INV-2".into()],
                    paid: None,
                    paid_on: None,
                }]
            );
            assert_eq!(
                v.disputes,
                vec![DisputeView {
                    id: d1,
                    customer: "ACME/C1".into(),
                    case_id: Some(case1),
                    reason: "goods damaged".into(),
                    opened_on: d("2026-11-05"),
                    resolved_on: None,
                    resolution: None,
                    documents: vec!["INV-1".into()],
                }]
            );
            let cv = |on: &str, kind: &str, actor: &str, detail: &str, case_id: Option<i64>| {
                ContactView {
                    on: d(on),
                    kind: kind.into(),
                    actor: actor.into(),
                    detail: detail.into(),
                    case_id,
                }
            };
            assert_eq!(
                v.contacts,
                vec![
                    cv(
                        "2026-11-10",
                        "promise",
                        "ben",
                        "promise to pay 30 EUR by 2026-11-20",
                        Some(case2)
                    ),
                    cv(
                        "2026-11-05",
                        "dispute",
                        "anna",
                        "goods damaged",
                        Some(case1)
                    ),
                    cv("2026-11-01", "address_changed", "system", "street", None),
                    // Decided, not delivered: the step's event comes with the delivery.
                    cv(
                        "2026-11-01",
                        "reminder",
                        "system",
                        "level 1 first reminder by email (pending)",
                        None
                    ),
                ]
            );

            assert_eq!(
                v.bureau,
                Some((
                    "creditreform".into(),
                    Some(250),
                    Some("B".into()),
                    "2026-10-30T08:00:00+00:00".into()
                ))
            );
            // Who may be dunned and where letters go, as the ERP said.
            assert_eq!(v.erp_dunning, Some(ErpDunning::Excluded));
            assert_eq!(
                v.letter_address.as_deref(),
                Some("Müller GmbH\nHauptstr. 1\n10115 Berlin\nDE")
            );

            // C2 was never evaluated by a run: no state, and only its own data.
            let v2 = s.customer_view(c2, d("2026-11-15")).unwrap();
            assert_eq!((v2.erp_dunning, v2.letter_address), (None, None));
            assert_eq!(
                (
                    v2.last_run_on,
                    v2.strategy.as_deref(),
                    v2.score,
                    v2.priority,
                    v2.dunning_level
                ),
                (None, None, None, None, None)
            );
            assert_eq!((v2.credit_limit, v2.bureau), (None, None));
            assert_eq!(v2.items.len(), 1);
            assert_eq!(v2.payments.len(), 1);
            assert!(v2.promises.is_empty());
            assert_eq!(v2.disputes[0].reason, "price difference");
            assert_eq!(v2.contacts.len(), 1);
            assert_eq!(v2.contacts[0].actor, "carl");

            assert!(matches!(
                s.customer_view(9999, d("2026-11-15")),
                Err(StoreError::NotFound(_))
            ));
            // The view serialises (the API and CLI print it as JSON).
            let json = serde_json::to_value(&v).unwrap();
            assert_eq!(json["promises"][0]["status"], "open");
            assert_eq!(json["items"][0]["days_overdue"], 45);
        }
    );

    crate::on_both!(
        customer_view_keeps_the_newest_200_payments_and_contacts,
        |s| {
            let start = d("2026-01-01");
            fill(
                s,
                Batch {
                    items: vec![item("1", "C1", "2025-12-01", dec!(1000), "EUR")],
                    payments: (0..205)
                        .map(|i| {
                            let on = add_days(start, i).to_string();
                            payment(&format!("p{i}"), "C1", Decimal::from(i + 1), "EUR", &on)
                        })
                        .collect(),
                    ..Batch::default()
                },
            );
            let case = open_cases(s, &["1"], "2026-01-01")[0];
            for i in 0..201 {
                let on = add_days(start, i);
                s.create_promise(&np(case, dec!(1), on, on), "ben").unwrap();
            }
            let v = s.customer_view(cust(s, "C1"), d("2026-12-31")).unwrap();
            assert_eq!(v.payments.len(), 200);
            assert_eq!(v.payments[0].value_date, add_days(start, 204));
            assert_eq!(v.payments[0].amount, dec!(205));
            assert_eq!(v.payments[199].value_date, add_days(start, 5));
            assert_eq!(v.contacts.len(), 200);
            assert_eq!(v.contacts[0].on, add_days(start, 200));
            assert_eq!(v.contacts[199].on, add_days(start, 1));
            assert_eq!(v.promises.len(), 201, "promises are not capped");
            assert_eq!(v.promises[0].created_on, add_days(start, 200));
        }
    );

    crate::on_both!(create_promise_refuses_bad_input_and_writes_nothing, |s| {
        fill(
            s,
            Batch {
                items: vec![
                    item("1", "C1", "2026-10-01", dec!(100), "EUR"),
                    item("2", "C1", "2026-10-01", dec!(100), "EUR"),
                ],
                ..Batch::default()
            },
        );
        let cases = open_cases(s, &["1", "2"], "2026-11-01");
        let (case, closed) = (cases[0], cases[1]);
        close_case(s, closed, "2026-11-02");
        let before = count(s, "SELECT COUNT(*) FROM case_events");
        let on = d("2026-11-10");

        invalid_naming(
            s.create_promise(&np(case, dec!(50), d("2026-11-09"), on), "ben"),
            "promised_on",
        );
        invalid_naming(
            s.create_promise(&np(case, dec!(0), d("2026-11-20"), on), "ben"),
            "amount",
        );
        invalid_naming(
            s.create_promise(&np(case, dec!(-5), d("2026-11-20"), on), "ben"),
            "amount",
        );
        invalid_naming(
            s.create_promise(&np(case, dec!(100.01), d("2026-11-20"), on), "ben"),
            "amount",
        );
        state_naming(
            s.create_promise(&np(closed, dec!(10), d("2026-11-20"), on), "ben"),
            "closed",
        );
        assert!(matches!(
            s.create_promise(&np(9999, dec!(10), d("2026-11-20"), on), "ben"),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(count(s, "SELECT COUNT(*) FROM promises"), 0);
        assert_eq!(count(s, "SELECT COUNT(*) FROM case_events"), before);
    });

    crate::on_both!(
        create_promise_records_in_the_item_currency_with_history_and_dirty_flag,
        |s| {
            fill(
                s,
                Batch {
                    items: vec![
                        item("1", "C1", "2026-10-01", dec!(100), "USD"),
                        item("2", "C1", "2026-10-01", dec!(100), "USD"),
                    ],
                    ..Batch::default()
                },
            );
            let c1 = cust(s, "C1");
            let cases = open_cases(s, &["1", "2"], "2026-11-01");
            settle(s, &[c1]);
            // The whole open amount, promised for the same day, is allowed.
            let p = s
                .create_promise(
                    &np(cases[0], dec!(100), d("2026-11-10"), d("2026-11-10")),
                    "ben",
                )
                .unwrap();
            assert_eq!(
                (
                    p.customer.as_str(),
                    p.case_id,
                    p.amount,
                    p.currency.as_str()
                ),
                ("ACME/C1", Some(cases[0]), dec!(100), "USD")
            );
            assert_eq!(
                (p.promised_on, p.created_on),
                (d("2026-11-10"), d("2026-11-10"))
            );
            assert_eq!((p.status, p.judged_on), (PromiseStatus::Open, None));
            assert!(dirty(s, c1));
            let last = last_event(s, cases[0]);
            assert_eq!(
                (
                    last.on,
                    last.kind.as_str(),
                    last.actor.as_str(),
                    last.detail.as_str()
                ),
                (
                    d("2026-11-10"),
                    "promise",
                    "ben",
                    "promise to pay 100 USD by 2026-11-10"
                )
            );
            let q = s
                .create_promise(
                    &np(cases[1], dec!(20), d("2026-11-30"), d("2026-11-12")),
                    "ben",
                )
                .unwrap();
            assert_eq!(s.case_promises(cases[0]).unwrap(), vec![p.clone()]);
            assert_eq!(s.case_promises(cases[1]).unwrap(), vec![q.clone()]);
            assert_eq!(s.list_promises(c1).unwrap(), vec![q, p]);
            assert!(matches!(
                s.list_promises(9999),
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                s.case_promises(9999),
                Err(StoreError::NotFound(_))
            ));
        }
    );

    crate::on_both!(
        a_promise_made_inside_a_callers_transaction_rolls_back_with_it,
        |s| {
            fill(
                s,
                Batch {
                    items: vec![item("1", "C1", "2026-10-01", dec!(100), "EUR")],
                    ..Batch::default()
                },
            );
            let case = open_cases(s, &["1"], "2026-11-01")[0];
            // A caller that records the promise together with its audit record, and
            // then fails: the promise goes with the rest.
            let failed: Result<()> = s.audited("ben", "promise.create", "case", |st| {
                st.create_promise(&np(case, dec!(10), d("2026-11-20"), d("2026-11-10")), "ben")?;
                Err(StoreError::Invalid("the caller gives up".into()))
            });
            assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
            assert_eq!(count(s, "SELECT COUNT(*) FROM promises"), 0);
            assert_eq!(count(s, "SELECT COUNT(*) FROM case_events"), 0);
            assert_eq!(count(s, "SELECT COUNT(*) FROM audit"), 0);
            // And one that succeeds commits both.
            let p = s
                .audited("ben", "promise.create", "case", |st| {
                    let p = st.create_promise(
                        &np(case, dec!(10), d("2026-11-20"), d("2026-11-10")),
                        "ben",
                    )?;
                    Ok::<_, StoreError>((p, serde_json::Value::Null, serde_json::json!("made")))
                })
                .unwrap();
            assert_eq!(s.case_promises(case).unwrap(), vec![p]);
            assert_eq!(count(s, "SELECT COUNT(*) FROM audit"), 1);
        }
    );

    // A payment counts once across a customer's promises: one transfer of 100 keeps
    // the earlier of two promises of 100, and the later one is broken.
    crate::on_both!(one_payment_keeps_one_promise_not_two, |s| {
        fill(
            s,
            Batch {
                items: vec![
                    item("1", "C1", "2026-10-01", dec!(100), "EUR"),
                    item("2", "C1", "2026-10-01", dec!(100), "EUR"),
                ],
                payments: vec![payment("a", "C1", dec!(100), "EUR", "2026-11-05")],
                ..Batch::default()
            },
        );
        let c1 = cust(s, "C1");
        let cases = open_cases(s, &["1", "2"], "2026-11-01");
        s.create_promise(
            &np(cases[0], dec!(100), d("2026-11-06"), d("2026-11-01")),
            "ben",
        )
        .unwrap();
        s.create_promise(
            &np(cases[1], dec!(100), d("2026-11-07"), d("2026-11-01")),
            "ben",
        )
        .unwrap();
        let st = s.judge_promises(d("2026-11-20"), 3).unwrap();
        assert_eq!((st.kept, st.broken), (1, 1), "{st:?}");
        let mut list = s.list_promises(c1).unwrap();
        list.sort_by_key(|p| p.promised_on);
        assert_eq!(
            list.iter().map(|p| p.status).collect::<Vec<_>>(),
            vec![PromiseStatus::Kept, PromiseStatus::Broken]
        );
    });

    crate::on_both!(judge_promises_keeps_partially_keeps_and_breaks_once, |s| {
        fill(
            s,
            Batch {
                items: ["1", "2", "3", "4", "5"]
                    .iter()
                    .map(|n| item(n, &format!("C{n}"), "2026-10-01", dec!(500), "EUR"))
                    .collect(),
                payments: vec![
                    // C1: 60 + 40 (on the last day of the tolerance) = 100 → kept
                    payment("a", "C1", dec!(60), "EUR", "2026-11-05"),
                    payment("b", "C1", dec!(40), "EUR", "2026-11-13"),
                    // C2: only the 50 paid on the day of the promise counts → partially kept
                    payment("c", "C2", dec!(50), "EUR", "2026-11-01"),
                    payment("d", "C2", dec!(500), "EUR", "2026-10-31"),
                    payment("e", "C2", dec!(500), "USD", "2026-11-05"),
                    payment("f", "C2", dec!(500), "EUR", "2026-11-14"),
                    // C3: nothing → broken. C4: paid in full, judged a day later.
                    payment("g", "C4", dec!(70), "EUR", "2026-11-12"),
                ],
                ..Batch::default()
            },
        );
        let ids: Vec<i64> = (1..=5).map(|n| cust(s, &format!("C{n}"))).collect();
        let cases = open_cases(s, &["1", "2", "3", "4"], "2026-11-01");
        let made = d("2026-11-01");
        for (case, amount, by) in [
            (cases[0], dec!(100), "2026-11-10"),
            (cases[1], dec!(200), "2026-11-10"),
            (cases[2], dec!(80), "2026-11-10"),
            (cases[3], dec!(70), "2026-11-11"),
        ] {
            s.create_promise(&np(case, amount, d(by), made), "ben")
                .unwrap();
        }
        // A promise recorded without a case (as the demo generator and older data have).
        s.db()
            .execute(
                "INSERT INTO promises(customer_id, amount, currency, promised_on, created_on)
                 VALUES (?1, '50', 'EUR', '2026-11-02', '2026-11-01')",
                args![ids[4]],
            )
            .unwrap();
        settle(s, &ids);

        // Tolerance 3: the 11-10 promises run to 11-13 and are judged on 11-14; the
        // 11-11 one runs to 11-14 and waits.
        let st = s.judge_promises(d("2026-11-14"), 3).unwrap();
        assert_eq!(
            st,
            JudgeStats {
                judged: 4,
                kept: 1,
                partial: 1,
                broken: 2
            }
        );
        let status = |s: &Store, i: usize| {
            let p = s.list_promises(ids[i]).unwrap().pop().unwrap();
            (p.status, p.judged_on)
        };
        let judged = Some(d("2026-11-14"));
        assert_eq!(status(s, 0), (PromiseStatus::Kept, judged));
        assert_eq!(status(s, 1), (PromiseStatus::PartiallyKept, judged));
        assert_eq!(status(s, 2), (PromiseStatus::Broken, judged));
        assert_eq!(status(s, 3), (PromiseStatus::Open, None));
        assert_eq!(status(s, 4), (PromiseStatus::Broken, judged));
        // What was counted, and the day it reached the promise (C1: 60 on 11-05, the
        // remaining 40 on 11-13) or the last counted payment (C2).
        let paid = |s: &Store, i: usize| {
            let p = s.list_promises(ids[i]).unwrap().pop().unwrap();
            (p.paid, p.paid_on)
        };
        assert_eq!(paid(s, 0), (Some(dec!(100)), Some(d("2026-11-13"))));
        assert_eq!(paid(s, 1), (Some(dec!(50)), Some(d("2026-11-01"))));
        assert_eq!(paid(s, 2), (Some(dec!(0)), None));
        assert_eq!(
            ids.iter().map(|&c| dirty(s, c)).collect::<Vec<_>>(),
            vec![true, true, true, false, true]
        );
        let e = last_event(s, cases[0]);
        assert_eq!(
            (e.on, e.kind.as_str(), e.actor.as_str(), e.detail.as_str()),
            (
                d("2026-11-14"),
                "promise_judged",
                "system",
                "kept: paid 100 of 100 EUR promised by 2026-11-10 (2026-11-01 to 2026-11-13)"
            )
        );
        assert!(last_event(s, cases[1])
            .detail
            .starts_with("partially_kept: paid 50 of 200 EUR"));
        assert!(last_event(s, cases[2])
            .detail
            .starts_with("broken: paid 0 of 80 EUR"));
        assert_eq!(last_event(s, cases[3]).kind, "promise");
        let events = count(s, "SELECT COUNT(*) FROM case_events");

        // Idempotent: judging again the same day changes nothing.
        settle(s, &ids);
        assert_eq!(
            s.judge_promises(d("2026-11-14"), 3).unwrap(),
            JudgeStats::default()
        );
        assert_eq!(count(s, "SELECT COUNT(*) FROM case_events"), events);
        assert!(ids.iter().all(|&c| !dirty(s, c)));

        let st = s.judge_promises(d("2026-11-15"), 3).unwrap();
        assert_eq!(
            st,
            JudgeStats {
                judged: 1,
                kept: 1,
                partial: 0,
                broken: 0
            }
        );
        assert_eq!(status(s, 3), (PromiseStatus::Kept, Some(d("2026-11-15"))));
        assert_eq!(status(s, 0), (PromiseStatus::Kept, judged), "judged once");
        assert_eq!(count(s, "SELECT COUNT(*) FROM case_events"), events + 1);

        invalid_naming(s.judge_promises(d("2026-11-15"), -1), "tolerance_days");
    });

    crate::on_both!(
        dispute_ageing_buckets_open_disputes_by_age_with_amounts,
        |s| {
            fill(
                s,
                Batch {
                    items: vec![
                        item("1", "C1", "2026-08-01", dec!(100), "EUR"),
                        item("2", "C1", "2026-08-01", dec!(50), "EUR"),
                        item("3", "C2", "2026-08-01", dec!(70), "USD"),
                        item("4", "C3", "2026-08-01", dec!(30), "EUR"),
                        item("5", "C4", "2026-08-01", dec!(10), "EUR"),
                    ],
                    ..Batch::default()
                },
            );
            let cases = open_cases(s, &["1", "2", "3", "4", "5"], "2026-08-02");
            // One dispute over two items, 100 days old; 45 and 30 days; one resolved.
            dispute(
                s,
                cases[0],
                &[cases[1]],
                "wrong prices",
                "2026-08-15",
                "anna",
            );
            dispute(s, cases[2], &[], "not delivered", "2026-10-09", "anna");
            dispute(s, cases[3], &[], "damaged", "2026-10-24", "anna");
            let gone = dispute(s, cases[4], &[], "duplicate", "2026-11-01", "anna");
            s.resolve_dispute(gone, "invalid", d("2026-11-02"), "ben")
                .unwrap();
            assert!(
                s.open_dispute_on(cases[0], &[cases[2]], "x", d("2026-11-01"), "anna")
                    .is_err(),
                "one customer per dispute"
            );

            let a = s
                .dispute_ageing(d("2026-11-23"), 2, &mut |_| Ok(true))
                .unwrap();
            let row = |b: &AgeingBucket| (b.bucket.clone(), b.disputes, b.amounts.clone());
            assert_eq!(
                a.buckets.iter().map(row).collect::<Vec<_>>(),
                vec![
                    ("0-30".into(), 1, vec![("EUR".into(), dec!(30))]),
                    ("31-60".into(), 1, vec![("USD".into(), dec!(70))]),
                    ("61-90".into(), 0, vec![]),
                    ("over_90".into(), 1, vec![("EUR".into(), dec!(150))]),
                ]
            );
            assert_eq!(
                a.oldest
                    .iter()
                    .map(|d| d.reason.as_str())
                    .collect::<Vec<_>>(),
                vec!["wrong prices", "not delivered"]
            );
            assert_eq!(a.oldest[0].documents, ["INV-1", "INV-2"]);
            // Only the customers the reader may see.
            let c2 = cust(s, "C2");
            let mine = s
                .dispute_ageing(d("2026-11-23"), 5, &mut |c| Ok(c == c2))
                .unwrap();
            assert_eq!(
                mine.buckets.iter().map(|b| b.disputes).collect::<Vec<_>>(),
                [0, 1, 0, 0]
            );
            assert_eq!(mine.buckets[1].amounts, [("USD".to_string(), dec!(70))]);
            assert_eq!(
                mine.oldest
                    .iter()
                    .map(|d| d.customer.as_str())
                    .collect::<Vec<_>>(),
                ["ACME/C2"]
            );
        }
    );

    crate::on_both!(resolving_a_dispute_returns_its_items_to_collection, |s| {
        fill(
            s,
            Batch {
                items: vec![
                    item("1", "C1", "2026-10-01", dec!(100), "EUR"),
                    item("2", "C1", "2026-10-01", dec!(50), "EUR"),
                ],
                ..Batch::default()
            },
        );
        let c1 = cust(s, "C1");
        let cases = open_cases(s, &["1", "2"], "2026-11-01");
        let d1 = dispute(s, cases[0], &[], "goods damaged", "2026-11-05", "anna");
        let d2 = dispute(s, cases[1], &[], "price difference", "2026-11-06", "anna");
        assert!(item_disputed(s, c1, "INV-1") && item_disputed(s, c1, "INV-2"));
        settle(s, &[c1]);

        invalid_naming(
            s.resolve_dispute(d1, "credit note", d("2026-11-20"), "anna"),
            "resolution",
        );
        invalid_naming(
            s.resolve_dispute(d1, "invalid", d("2026-11-04"), "anna"),
            "2026-11-05",
        );
        assert!(matches!(
            s.resolve_dispute(9999, "valid", d("2026-11-20"), "anna"),
            Err(StoreError::NotFound(_))
        ));
        assert!(!dirty(s, c1), "refusals change nothing");
        assert_eq!(s.list_disputes(c1, false).unwrap().len(), 2);

        let v = s
            .resolve_dispute(d1, "invalid", d("2026-11-20"), "anna")
            .unwrap();
        let resolved = DisputeView {
            id: d1,
            customer: "ACME/C1".into(),
            case_id: Some(cases[0]),
            reason: "goods damaged".into(),
            opened_on: d("2026-11-05"),
            resolved_on: Some(d("2026-11-20")),
            resolution: Some("invalid".into()),
            documents: vec!["INV-1".into()],
        };
        assert_eq!(v, resolved);
        assert!(dirty(s, c1));
        let e = last_event(s, cases[0]);
        assert_eq!(
            (e.on, e.kind.as_str(), e.actor.as_str(), e.detail.as_str()),
            (
                d("2026-11-20"),
                "dispute_resolved",
                "anna",
                "invalid: back to collection"
            )
        );
        // The engine's input and the view agree: INV-1 is back in collection, INV-2 not.
        assert!(!item_disputed(s, c1, "INV-1"));
        assert!(item_disputed(s, c1, "INV-2"));
        let view = s.customer_view(c1, d("2026-11-20")).unwrap();
        assert_eq!(
            view.items
                .iter()
                .map(|i| (i.document_no.as_str(), i.disputed))
                .collect::<Vec<_>>(),
            vec![("INV-1", false), ("INV-2", true)]
        );

        state_naming(
            s.resolve_dispute(d1, "valid", d("2026-11-21"), "anna"),
            "already resolved",
        );
        let open = s.list_disputes(c1, false).unwrap();
        assert_eq!(open.iter().map(|x| x.id).collect::<Vec<_>>(), vec![d2]);
        let all = s.list_disputes(c1, true).unwrap();
        assert_eq!(all.iter().map(|x| x.id).collect::<Vec<_>>(), vec![d2, d1]);
        assert_eq!(s.case_disputes(cases[0]).unwrap(), vec![resolved]);
        assert!(matches!(
            s.list_disputes(9999, true),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.case_disputes(9999),
            Err(StoreError::NotFound(_))
        ));

        let w = s
            .resolve_dispute(d2, "write_off", d("2026-11-21"), "carl")
            .unwrap();
        assert_eq!(w.resolution.as_deref(), Some("write_off"));
        assert!(!item_disputed(s, c1, "INV-2"));
        assert!(s.list_disputes(c1, false).unwrap().is_empty());
    });

    // One promise over several cases: their items' documents (joined in Rust, in
    // item order), an event on each case naming the others, and the refusals of
    // cases that do not belong together.
    crate::on_both!(
        a_promise_covers_the_items_of_several_cases_of_one_customer,
        |s| {
            fill(
                s,
                Batch {
                    items: vec![
                        item("1", "C1", "2026-10-01", dec!(100.50), "EUR"),
                        item("2", "C1", "2026-10-02", dec!(20), "EUR"),
                        item("3", "C1", "2026-10-03", dec!(30), "USD"),
                        item("4", "C2", "2026-10-04", dec!(40), "EUR"),
                    ],
                    ..Batch::default()
                },
            );
            let c1 = cust(s, "C1");
            let cases = open_cases(s, &["2", "1", "3", "4"], "2026-11-01");
            let on = d("2026-11-10");
            let many = |ids: &[i64], amount: Decimal| NewPromise {
                case_ids: ids.to_vec(),
                amount,
                promised_on: d("2026-11-30"),
                on,
                channel: Some("phone".into()),
                contact: Some("Mrs Kim".into()),
            };
            invalid_naming(
                s.create_promise(&many(&[cases[0], cases[3]], dec!(10)), "ben"),
                "another customer",
            );
            invalid_naming(
                s.create_promise(&many(&[cases[0], cases[2]], dec!(10)), "ben"),
                "one currency",
            );
            invalid_naming(
                s.create_promise(&many(&[cases[0], cases[0]], dec!(10)), "ben"),
                "named twice",
            );
            invalid_naming(
                s.create_promise(&many(&[cases[0], cases[1]], dec!(120.51)), "ben"),
                "exceeds the open amount 120.50 EUR",
            );
            invalid_naming(
                s.create_promise(&many(&[], dec!(10)), "ben"),
                "at least one case",
            );
            assert_eq!(count(s, "SELECT COUNT(*) FROM promises"), 0);

            let p = s
                .create_promise(&many(&[cases[0], cases[1]], dec!(120.50)), "ben")
                .unwrap();
            assert_eq!(
                (p.case_id, p.amount, p.currency.as_str()),
                (Some(cases[0]), dec!(120.50), "EUR")
            );
            assert_eq!(p.amount.to_string(), "120.50", "the amount keeps its scale");
            assert_eq!(
                (p.channel.as_deref(), p.contact.as_deref()),
                (Some("phone"), Some("Mrs Kim"))
            );
            // Item 1 was ingested first: its document comes first.
            assert_eq!(p.documents, ["INV-1", "INV-2"]);
            let detail = format!(
                "promise to pay 120.50 EUR by 2026-11-30 covering cases {}, {} (Mrs Kim, by phone)",
                cases[0], cases[1]
            );
            for case in [cases[0], cases[1]] {
                let e = last_event(s, case);
                assert_eq!(
                    (e.on, e.kind.as_str(), e.actor.as_str(), e.detail.as_str()),
                    (on, "promise", "ben", detail.as_str())
                );
            }
            // Listed with its documents wherever it shows, and only on its first case.
            assert_eq!(s.list_promises(c1).unwrap(), vec![p.clone()]);
            assert_eq!(s.case_promises(cases[0]).unwrap(), vec![p.clone()]);
            assert!(s.case_promises(cases[1]).unwrap().is_empty());
            assert_eq!(s.customer_view(c1, on).unwrap().promises, vec![p]);
        }
    );

    // Holds on the whole customer: which are active on a day (no end, or an end
    // on or after it), and lifting them ends each the day before.
    crate::on_both!(holds_active_on_a_day_are_listed_and_lifted, |s| {
        fill(
            s,
            Batch {
                items: vec![
                    item("1", "C1", "2026-10-01", dec!(10), "EUR"),
                    item("2", "C2", "2026-10-01", dec!(10), "EUR"),
                ],
                ..Batch::default()
            },
        );
        let (c1, c2) = (cust(s, "C1"), cust(s, "C2"));
        s.db()
            .batch(&format!(
                "INSERT INTO holds(customer_id, reason, until, created_on) VALUES
                    ({c1}, 'open ended', NULL, '2026-10-01'),
                    ({c1}, 'ends that day', '2026-11-10', '2026-10-01'),
                    ({c1}, 'ended the day before', '2026-11-09', '2026-10-01'),
                    ({c2}, 'another customer', NULL, '2026-10-01');"
            ))
            .unwrap();
        let on = d("2026-11-10");
        assert_eq!(
            s.active_holds(c1, on).unwrap(),
            vec![
                ("open ended".to_string(), None),
                ("ends that day".to_string(), Some(on))
            ]
        );
        settle(s, &[c1, c2]);
        assert_eq!(s.lift_holds(c1, on).unwrap(), 2);
        assert!(s.active_holds(c1, on).unwrap().is_empty());
        assert_eq!(
            s.active_holds(c1, d("2026-11-09")).unwrap(),
            vec![
                ("open ended".to_string(), Some(d("2026-11-09"))),
                ("ends that day".to_string(), Some(d("2026-11-09"))),
                ("ended the day before".to_string(), Some(d("2026-11-09"))),
            ],
            "kept on record, ending the day before"
        );
        assert!(dirty(s, c1) && !dirty(s, c2));
        assert_eq!(s.active_holds(c2, on).unwrap().len(), 1, "untouched");
        settle(s, &[c1]);
        state_naming(s.lift_holds(c1, on), "no hold active on 2026-11-10");
        assert!(!dirty(s, c1), "a refusal changes nothing");
        assert!(matches!(
            s.lift_holds(9999, on),
            Err(StoreError::NotFound(_))
        ));
    });
}
