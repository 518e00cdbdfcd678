//! The outbox: escalation steps become messages; each message is one delivery attempt
//! on one channel, and only a delivery that succeeded marks the step `sent`, records
//! the customer event and charges the level's fees (once per item and level).

use crate::db::{args, Arg, Db, Row};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::customer::customer_event;
use super::{date, Result, Store, StoreError};

/// An escalation step no message was made for yet.
#[derive(Debug, Clone)]
pub struct StepToSend {
    pub id: i64,
    pub customer_id: i64,
    pub as_of: NaiveDate,
    pub ladder: String,
    pub level: usize,
    pub level_name: String,
    pub channel: String,
    pub template: String,
    pub copy_manager: bool,
    /// (item id, level that item reached)
    pub items: Vec<(i64, usize)>,
}

/// What correspondence needs to know about a customer.
#[derive(Debug, Clone, Default)]
pub struct ContactProfile {
    pub id: i64,
    pub company: String,
    pub code: String,
    pub name: String,
    pub country: String,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Free text printed above the street (a c/o line, a building); not enough for
    /// a letter by itself.
    pub address: Option<String>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub do_not_contact: bool,
    pub opt_outs: Vec<String>,
    /// The collection group the customer's worklist entry is in.
    pub group: Option<String>,
}

impl ContactProfile {
    /// Where a letter goes: the name, then [`ContactProfile::postal_block`]. `None`
    /// unless street, postal code, city and country are all known: a letter to
    /// anything less is not delivered.
    pub fn postal_address(&self) -> Option<String> {
        Some(format!("{}\n{}", self.name.trim(), self.postal_block()?))
    }

    /// The address lines under the name: the free-text line if any, the street, the
    /// postal code and city, the country (what a letter's template prints).
    pub fn postal_block(&self) -> Option<String> {
        fn known(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let (street, code, city) = (
            known(&self.street)?,
            known(&self.postal_code)?,
            known(&self.city)?,
        );
        let country = Some(self.country.trim()).filter(|c| !c.is_empty())?;
        let mut lines: Vec<String> = known(&self.address).map(String::from).into_iter().collect();
        lines.push(street.to_string());
        lines.push(format!("{code} {city}"));
        lines.push(country.to_string());
        Some(lines.join("\n"))
    }
}

/// A change of how a customer may be reached; `None` leaves a field as it is, and
/// an empty text clears it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContactUpdate<'a> {
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub address: Option<&'a str>,
    pub street: Option<&'a str>,
    pub postal_code: Option<&'a str>,
    pub city: Option<&'a str>,
    pub do_not_contact: Option<bool>,
    pub opt_outs: Option<&'a [String]>,
}

#[derive(Debug, Clone)]
pub struct LetterItem {
    pub id: i64,
    pub document_no: String,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    pub currency: String,
    pub open: bool,
    /// Under a dispute not resolved yet: never asked for.
    pub disputed: bool,
    /// Payments recorded against the item: (value date, amount).
    pub payments: Vec<(NaiveDate, Decimal)>,
    /// Fees already charged on it: (ladder, level, amount).
    pub fees: Vec<(String, usize, Decimal)>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub customer_id: i64,
    pub escalation_id: Option<i64>,
    pub channel: String,
    pub template: String,
    pub language: String,
    pub recipient: Option<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub replaces: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageView {
    pub id: i64,
    pub customer_id: i64,
    /// COMPANY/CODE
    pub customer: String,
    pub escalation_id: Option<i64>,
    pub channel: String,
    pub template: String,
    pub language: String,
    pub recipient: Option<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt: String,
    pub last_error: Option<String>,
    pub defer_reason: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub receipt: Option<String>,
    pub replaces: Option<i64>,
    /// The business day of the escalation step the message carries out (`None`: not
    /// from a step); the other times are the sending machine's clock.
    pub business_date: Option<String>,
}

/// An escalation step that reached the customer, as an ERP is told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveredStep {
    pub id: i64,
    /// The customer's code.
    pub customer: String,
    /// The run's business day that took the step.
    pub as_of: NaiveDate,
    pub level: usize,
    pub level_name: String,
    /// The channel that delivered it (a fallback's, if one was used).
    pub channel: String,
    /// When it was delivered (UTC day).
    pub sent_on: NaiveDate,
    /// The step's items of the source asked about, by document number.
    pub documents: Vec<String>,
}

/// A fee to charge when a message goes out.
#[derive(Debug, Clone)]
pub struct Fee {
    pub item_id: i64,
    pub ladder: String,
    pub level: usize,
    pub amount: Decimal,
    pub currency: String,
}

fn queue(tx: &Db, m: &NewMessage, now: DateTime<Utc>) -> Result<Option<i64>> {
    // A step's first message once, whoever queues it (the unique index on a
    // step's first message): a second pass inserts nothing.
    tx.prepare_insert(
        "INSERT INTO messages(customer_id, escalation_id, channel, template, language, recipient, cc,
            subject, text, html, status, next_attempt, created_at, replaces)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?11, ?12)
         ON CONFLICT DO NOTHING",
    )?
    .insert(args![
        m.customer_id,
        m.escalation_id,
        m.channel,
        m.template,
        m.language,
        m.recipient,
        m.cc.join(","),
        m.subject,
        m.text,
        m.html,
        ts(now),
        m.replaces
    ])
}

/// Returns the audit record to anchor once the caller has committed.
fn record_sent(
    tx: &Db,
    audit: &super::audit::AuditSetup,
    id: i64,
    now: DateTime<Utc>,
    receipt: &str,
    fees: &[Fee],
    event: Option<(&str, &str)>,
) -> Result<super::audit::Head> {
    let r = tx
        .row(
            "SELECT customer_id, escalation_id, channel, recipient, subject FROM messages WHERE id = ?1",
            args![id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
    let customer_id: i64 = r.get(0, "messages.customer_id")?;
    let escalation_id: Option<i64> = r.get(1, "messages.escalation_id")?;
    let channel: String = r.get(2, "messages.channel")?;
    let recipient: Option<String> = r.get(3, "messages.recipient")?;
    let subject: String = r.get(4, "messages.subject")?;
    // What went out to whom is part of the record auditors follow.
    let head = super::audit::append_audit_on(
        tx,
        audit,
        now,
        "outbox",
        "message.sent",
        &format!("message {id}"),
        &serde_json::Value::Null,
        &serde_json::json!({
            "customer_id": customer_id, "escalation_id": escalation_id, "channel": channel,
            "recipient": recipient, "subject": subject, "receipt": receipt,
            "fees": fees.iter().map(|f| serde_json::json!({
                "item_id": f.item_id, "level": f.level, "amount": f.amount.to_string(), "currency": f.currency,
            })).collect::<Vec<_>>(),
        }),
    )?;
    tx.execute(
        "UPDATE messages SET status = 'sent', sent_at = ?2, receipt = ?3, attempts = attempts + 1,
            last_error = NULL WHERE id = ?1",
        args![id, ts(now), receipt],
    )?;
    if let Some(e) = escalation_id {
        tx.execute(
            "UPDATE escalations SET status = 'sent' WHERE id = ?1",
            args![e],
        )?;
    }
    let day = now.date_naive();
    for f in fees {
        tx.execute(
            "INSERT INTO fees(item_id, ladder, level, amount, currency, charged_on, message_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            args![f.item_id, f.ladder, f.level, f.amount, f.currency, day, id],
        )?;
    }
    if let Some((kind, detail)) = event {
        customer_event(tx, customer_id, day, kind, detail)?;
    }
    Ok(head)
}

/// Every pass asks this of every pending step: it must find the step's first message
/// by index (`messages_step` covers first messages only; a fallback always follows a
/// first message of the same step), not scan the outbox's whole history per step.
const STEPS_TO_SEND: &str = "e.status = 'pending'
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.escalation_id = e.id AND m.replaces IS NULL)";

/// Asked per item of every reminder: by the `payments_item` index.
const PAYMENTS_OF_ITEM: &str =
    "SELECT value_date, amount FROM payments WHERE item_id = ?1 ORDER BY value_date";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const MESSAGE_COLUMNS: &str = "m.id, m.customer_id, cu.company || '/' || cu.code, m.escalation_id, m.channel, m.template,
    m.language, m.recipient, m.cc, m.subject, m.text, m.html, m.status, m.attempts, m.next_attempt, m.last_error,
    m.defer_reason, m.created_at, m.sent_at, m.receipt, m.replaces,
    (SELECT e.as_of FROM escalations e WHERE e.id = m.escalation_id)";

fn message_row(r: &Row) -> Result<MessageView> {
    let cc: String = r.get(8, "messages.cc")?;
    Ok(MessageView {
        id: r.get(0, "messages.id")?,
        customer_id: r.get(1, "messages.customer_id")?,
        customer: r.get(2, "customer")?,
        escalation_id: r.get(3, "messages.escalation_id")?,
        channel: r.get(4, "messages.channel")?,
        template: r.get(5, "messages.template")?,
        language: r.get(6, "messages.language")?,
        recipient: r.get(7, "messages.recipient")?,
        cc: cc
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        subject: r.get(9, "messages.subject")?,
        text: r.get(10, "messages.text")?,
        html: r.get(11, "messages.html")?,
        status: r.get(12, "messages.status")?,
        attempts: r.get(13, "messages.attempts")?,
        next_attempt: r.get(14, "messages.next_attempt")?,
        last_error: r.get(15, "messages.last_error")?,
        defer_reason: r.get(16, "messages.defer_reason")?,
        created_at: r.get(17, "messages.created_at")?,
        sent_at: r.get(18, "messages.sent_at")?,
        receipt: r.get(19, "messages.receipt")?,
        replaces: r.get(20, "messages.replaces")?,
        business_date: r.get(21, "escalations.as_of")?,
    })
}

/// Held by an outbox pass for as long as it runs, in this process or another, on
/// this machine or another: on SQLite an exclusive lock on a small file next to the
/// database, on PostgreSQL an advisory lock held by a session of its own. The
/// system (the server) releases either when the process dies, SIGKILL included.
/// Holding it, a pass knows that a message still `sending` belongs to no live
/// pass.
pub struct OutboxPass {
    _lock: PassLock,
}

// Never read: held for as long as the pass lives, released when dropped.
#[allow(dead_code)]
enum PassLock {
    /// An in-memory SQLite database: no other process can share it.
    None,
    Lite(rusqlite::Connection),
    Pg(crate::pg::Leadership),
}

impl Store {
    /// Waits (up to [`super::LOCK_WAIT`] on SQLite, the session's lock timeout on
    /// PostgreSQL) until no other outbox pass runs, and holds that until dropped.
    pub fn outbox_pass(&self) -> Result<OutboxPass> {
        if self.is_postgres() {
            return Ok(OutboxPass {
                _lock: PassLock::Pg(crate::pg::Leadership::wait_for(
                    &self.pg_url()?,
                    crate::pg::OUTBOX_LOCK,
                    "arrears-outbox",
                )?),
            });
        }
        let Some(path) = self.conn()?.path().filter(|p| !p.is_empty()) else {
            return Ok(OutboxPass {
                _lock: PassLock::None,
            });
        };
        let lock = rusqlite::Connection::open(format!("{path}.outbox-lock"))?;
        lock.busy_timeout(super::LOCK_WAIT)?;
        lock.execute_batch("BEGIN EXCLUSIVE")
            .map_err(|e| match StoreError::from(e) {
                StoreError::Busy { .. } => StoreError::Busy {
                    waited_secs: super::LOCK_WAIT.as_secs(),
                },
                other => other,
            })?;
        Ok(OutboxPass {
            _lock: PassLock::Lite(lock),
        })
    }

    /// Messages a pass left `sending` when its process died between handing them to
    /// the server and recording the outcome: the server may or may not have
    /// accepted them.
    /// They become `unknown` (never sent again by the outbox: a reminder twice is
    /// worse than an operator checking the mail log) and the customer's history
    /// says so. Only call while holding [`Store::outbox_pass`].
    pub fn messages_interrupted(&mut self, _pass: &OutboxPass, now: DateTime<Utc>) -> Result<u32> {
        self.db().write(|tx| {
            // Claimed but never handed over: nothing left the process, so they simply
            // wait again.
            tx.execute(
                "UPDATE messages SET status = 'queued' WHERE status = 'claimed'",
                args![],
            )?;
            let stuck = tx.rows(
                "SELECT id, customer_id, channel, subject FROM messages WHERE status = 'sending' ORDER BY id",
                args![],
            )?;
            for r in &stuck {
                let id: i64 = r.get(0, "messages.id")?;
                let customer: i64 = r.get(1, "messages.customer_id")?;
                let channel: String = r.get(2, "messages.channel")?;
                let subject: String = r.get(3, "messages.subject")?;
                tx.execute(
                    "UPDATE messages SET status = 'unknown', last_error = ?2 WHERE id = ?1",
                    args![
                        id,
                        "in doubt: the sending process stopped during the delivery; check the server's log before sending it again"
                    ],
                )?;
                customer_event(
                    tx,
                    customer,
                    now.date_naive(),
                    "Reminder delivery in doubt",
                    &format!("message {id} ({channel}: {subject})"),
                )?;
            }
            Ok(stuck.len() as u32)
        })
    }

    /// Escalation steps still `pending` with no message made for them.
    pub fn steps_to_send(&self) -> Result<Vec<StepToSend>> {
        self.steps(STEPS_TO_SEND, args![])
    }

    /// Escalation steps whose message reached customers with items from `source`,
    /// with an id above `after`, oldest first (at most `limit`): what a connector
    /// writes back to its ERP. Call tasks, which send nothing, are not among them.
    /// Also the first step above `after` still on its way (pending, its delivery
    /// not in doubt), since a later step may be delivered before it: a writer keeps
    /// its mark below that one.
    pub fn delivered_steps(
        &self,
        source: &str,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<DeliveredStep>, Option<i64>)> {
        let db = self.db();
        let rows = db.rows(
            "SELECT e.id, c.code, e.as_of, e.level, e.level_name, m.channel, m.sent_at, e.items
             FROM escalations e JOIN customers c ON c.id = e.customer_id
             JOIN messages m ON m.id = (SELECT m2.id FROM messages m2
                                        WHERE m2.escalation_id = e.id AND m2.status = 'sent'
                                        ORDER BY m2.id DESC LIMIT 1)
             WHERE e.id > ?2 AND e.status = 'sent'
               AND EXISTS (SELECT 1 FROM items i WHERE i.customer_id = e.customer_id AND i.source = ?1)
             ORDER BY e.id LIMIT ?3",
            args![source, after, limit],
        )?;
        let mut doc = db.prepare("SELECT document_no FROM items WHERE id = ?1 AND source = ?2")?;
        let mut out = Vec::new();
        for r in &rows {
            let items = step_items(r.get(7, "escalations.items")?)?;
            let mut documents = Vec::new();
            for (id, _) in items {
                if let Some(d) = doc.row(args![id, source])? {
                    documents.push(d.get(0, "items.document_no")?);
                }
            }
            let sent_at: Option<String> = r.get(6, "messages.sent_at")?;
            let sent_at = sent_at.unwrap_or_default();
            out.push(DeliveredStep {
                id: r.get(0, "escalations.id")?,
                customer: r.get(1, "customers.code")?,
                as_of: r.date(2, "escalations.as_of")?,
                level: r.get::<i64>(3, "escalations.level")? as usize,
                level_name: r.get(4, "escalations.level_name")?,
                channel: r.get(5, "messages.channel")?,
                sent_on: date("messages.sent_at", sent_at.get(..10).unwrap_or(&sent_at))?,
                documents,
            });
        }
        let pending = db
            .row(
                "SELECT MIN(e.id) FROM escalations e WHERE e.id > ?2 AND e.status = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.escalation_id = e.id AND m.status = 'unknown')
                   AND EXISTS (SELECT 1 FROM items i WHERE i.customer_id = e.customer_id AND i.source = ?1)",
                args![source, after],
            )?
            .expect("a row")
            .get(0, "escalations.id")?;
        Ok((out, pending))
    }

    /// The open items of `source` on hold for `reason`, by external id: what a
    /// source checks against its own blocks, to lift the ones it no longer has.
    pub fn held_items(&self, source: &str, reason: &str) -> Result<Vec<String>> {
        self.db()
            .rows(
                "SELECT external_id FROM items WHERE source = ?1 AND hold_reason = ?2 AND status = 'open'",
                args![source, reason],
            )?
            .iter()
            .map(|r| r.get(0, "items.external_id"))
            .collect()
    }

    /// The newest escalation step's id (0 when there is none): where a write-back
    /// switched on starts, so the ERP is not flooded with the past.
    pub fn last_escalation_id(&self) -> Result<i64> {
        self.db()
            .row("SELECT COALESCE(MAX(id), 0) FROM escalations", args![])?
            .expect("a row")
            .get(0, "escalations.id")
    }

    pub fn escalation_step(&self, id: i64) -> Result<StepToSend> {
        self.steps("e.id = ?1", args![id])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("escalation {id}")))
    }

    fn steps(&self, filter: &str, args: &[&dyn Arg]) -> Result<Vec<StepToSend>> {
        let mut out = Vec::new();
        self.db().each(
            &format!(
                "SELECT e.id, e.customer_id, e.as_of, e.ladder, e.level, e.level_name, e.channel, e.template,
                        e.copy_manager, e.items
                 FROM escalations e WHERE {filter} ORDER BY e.id"
            ),
            args,
            |r| {
                out.push(StepToSend {
                    id: r.get(0, "escalations.id")?,
                    customer_id: r.get(1, "escalations.customer_id")?,
                    as_of: r.date(2, "escalations.as_of")?,
                    ladder: r.get(3, "escalations.ladder")?,
                    level: r.get::<i64>(4, "escalations.level")? as usize,
                    level_name: r.get(5, "escalations.level_name")?,
                    channel: r.get(6, "escalations.channel")?,
                    template: r.get(7, "escalations.template")?,
                    copy_manager: r.get(8, "escalations.copy_manager")?,
                    items: step_items(r.get(9, "escalations.items")?)?,
                });
                Ok(())
            },
        )?;
        Ok(out)
    }

    pub fn contact_profile(&self, customer_id: i64) -> Result<ContactProfile> {
        let r = self
            .db()
            .row(
                "SELECT c.id, c.company, c.code, c.name, c.country, c.language, c.timezone, c.email, c.phone,
                        c.address, c.do_not_contact, c.opt_outs, w.collection_group, c.street, c.postal_code, c.city
                 FROM customers c LEFT JOIN worklist w ON w.customer_id = c.id WHERE c.id = ?1",
                args![customer_id],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("customer {customer_id}")))?;
        let opt_outs: String = r.get(11, "customers.opt_outs")?;
        Ok(ContactProfile {
            id: r.get(0, "customers.id")?,
            company: r.get(1, "customers.company")?,
            code: r.get(2, "customers.code")?,
            name: r.get(3, "customers.name")?,
            country: r.get(4, "customers.country")?,
            language: r.get(5, "customers.language")?,
            timezone: r.get(6, "customers.timezone")?,
            email: r.get(7, "customers.email")?,
            phone: r.get(8, "customers.phone")?,
            address: r.get(9, "customers.address")?,
            street: r.get(13, "customers.street")?,
            postal_code: r.get(14, "customers.postal_code")?,
            city: r.get(15, "customers.city")?,
            do_not_contact: r.get(10, "customers.do_not_contact")?,
            opt_outs: opt_outs
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            group: r.get(12, "worklist.collection_group")?,
        })
    }

    /// Sets how a customer may be reached (see [`ContactUpdate`]).
    pub fn set_contact_preferences(
        &mut self,
        customer_id: i64,
        change: &ContactUpdate,
    ) -> Result<ContactProfile> {
        // An empty text clears the field (NULL), so "not on file" reads one way.
        fn text(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|s| !s.is_empty())
        }
        let n = self.db().write(|tx| {
            tx.execute(
                "UPDATE customers SET
                    email = CASE WHEN ?2 <> 0 THEN CAST(?3 AS TEXT) ELSE email END,
                    phone = CASE WHEN ?4 <> 0 THEN CAST(?5 AS TEXT) ELSE phone END,
                    address = CASE WHEN ?6 <> 0 THEN CAST(?7 AS TEXT) ELSE address END,
                    street = CASE WHEN ?8 <> 0 THEN CAST(?9 AS TEXT) ELSE street END,
                    postal_code = CASE WHEN ?10 <> 0 THEN CAST(?11 AS TEXT) ELSE postal_code END,
                    city = CASE WHEN ?12 <> 0 THEN CAST(?13 AS TEXT) ELSE city END,
                    do_not_contact = COALESCE(CAST(?14 AS BIGINT), do_not_contact),
                    opt_outs = COALESCE(CAST(?15 AS TEXT), opt_outs)
                 WHERE id = ?1",
                args![
                    customer_id,
                    change.email.is_some(),
                    text(change.email),
                    change.phone.is_some(),
                    text(change.phone),
                    change.address.is_some(),
                    text(change.address),
                    change.street.is_some(),
                    text(change.street),
                    change.postal_code.is_some(),
                    text(change.postal_code),
                    change.city.is_some(),
                    text(change.city),
                    change.do_not_contact,
                    change.opt_outs.map(|o| o.join(","))
                ],
            )
        })?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("customer {customer_id}")));
        }
        self.contact_profile(customer_id)
    }

    /// The items a step lists, with their payments and the fees already charged.
    pub fn letter_items(&self, ids: &[i64]) -> Result<Vec<LetterItem>> {
        let db = self.db();
        let mut item = db.prepare(
            "SELECT document_no, document_date, due_date, original_amount, open_amount, currency, status,
                EXISTS(SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                       WHERE di.item_id = items.id AND d.resolved_on IS NULL)
             FROM items WHERE id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(r) = item.row(args![id])? else {
                continue;
            };
            let mut payments = Vec::new();
            for p in db.rows(PAYMENTS_OF_ITEM, args![id])? {
                payments.push((
                    p.date(0, "payments.value_date")?,
                    p.dec(1, "payments.amount")?,
                ));
            }
            let mut fees = Vec::new();
            for f in db.rows(
                "SELECT ladder, level, amount FROM fees WHERE item_id = ?1",
                args![id],
            )? {
                fees.push((
                    f.get::<String>(0, "fees.ladder")?,
                    f.get::<i64>(1, "fees.level")? as usize,
                    f.dec(2, "fees.amount")?,
                ));
            }
            let status: String = r.get(6, "items.status")?;
            out.push(LetterItem {
                id,
                document_no: r.get(0, "items.document_no")?,
                document_date: r.date(1, "items.document_date")?,
                due_date: r.date(2, "items.due_date")?,
                original_amount: r.dec(3, "items.original_amount")?,
                open_amount: r.dec(4, "items.open_amount")?,
                currency: r.get(5, "items.currency")?,
                open: status == "open",
                disputed: r.get(7, "disputed")?,
                payments,
                fees,
            });
        }
        Ok(out)
    }

    /// Queues a message; `None` when another pass queued the step's first message.
    pub fn queue_message(&mut self, m: &NewMessage, now: DateTime<Utc>) -> Result<Option<i64>> {
        self.db().write(|tx| queue(tx, m, now))
    }

    /// A newer step replaces what still waits for the customer: one reminder, the
    /// latest, not a backlog of outdated ones.
    pub fn supersede_waiting(&mut self, customer_id: i64, newer_step: i64) -> Result<u32> {
        self.db().write(|tx| {
            let n = tx.execute(
                "UPDATE escalations SET status = 'superseded' WHERE customer_id = ?1 AND id < ?2 AND status = 'pending'",
                args![customer_id, newer_step],
            )?;
            tx.execute(
                "UPDATE messages SET status = 'cancelled', last_error = 'superseded by a newer step'
                 WHERE customer_id = ?1 AND status IN ('queued', 'deferred') AND escalation_id < ?2",
                args![customer_id, newer_step],
            )?;
            Ok(n as u32)
        })
    }

    /// Takes a due message for sending; `false` when another pass took it first.
    /// A message is sent at most once: one left `sending` by a crash is not retried.
    /// Claims a message for this pass: `claimed` until the moment it is handed to a
    /// server (`sending`, [`Store::message_handing_over`]), so that a process killed
    /// while it only checked or composed leaves a message that is safely sent later,
    /// not one in doubt.
    pub fn reserve_message(&mut self, id: i64) -> Result<bool> {
        Ok(self.write_stmt(
            "UPDATE messages SET status = 'claimed' WHERE id = ?1 AND status IN ('queued', 'deferred')",
            args![id],
        )? == 1)
    }

    /// The claimed message goes to the server now: from here until its outcome is
    /// recorded, a death of the process leaves it in doubt. `false` when it is no
    /// longer claimed: a pass whose lock went (on PostgreSQL its lock's session can
    /// end while the pass runs) lost it to the next pass, and must not send it.
    /// Only one pass can move a message from claimed to sending.
    pub fn message_handing_over(&mut self, id: i64) -> Result<bool> {
        Ok(self.write_stmt(
            "UPDATE messages SET status = 'sending' WHERE id = ?1 AND status = 'claimed'",
            args![id],
        )? == 1)
    }

    /// Gives up on a message's channel and, in the same transaction, queues the next
    /// channel or closes the step as failed: a step never ends up with nothing waiting.
    pub fn fail_over(
        &mut self,
        id: i64,
        error: &str,
        counts_as_attempt: bool,
        next: Option<&NewMessage>,
        now: DateTime<Utc>,
        give_up_event: Option<(&str, &str)>,
    ) -> Result<()> {
        self.db().write(|tx| {
            tx.execute(
                "UPDATE messages SET status = 'failed', last_error = ?2, attempts = attempts + ?3 WHERE id = ?1",
                args![id, error, counts_as_attempt],
            )?;
            match next {
                Some(n) => {
                    queue(tx, n, now)?;
                }
                None => {
                    let r = tx
                        .row(
                            "SELECT customer_id, escalation_id FROM messages WHERE id = ?1",
                            args![id],
                        )?
                        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
                    let customer_id: i64 = r.get(0, "messages.customer_id")?;
                    if let Some(e) = r.get::<Option<i64>>(1, "messages.escalation_id")? {
                        tx.execute(
                            "UPDATE escalations SET status = 'failed' WHERE id = ?1",
                            args![e],
                        )?;
                    }
                    if let Some((kind, detail)) = give_up_event {
                        customer_event(tx, customer_id, now.date_naive(), kind, detail)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// A step whose items were all paid (or left collection) after it was decided.
    pub fn cancel_message(&mut self, id: i64, why: &str) -> Result<()> {
        self.db().write(|tx| {
            tx.execute(
                "UPDATE messages SET status = 'cancelled', last_error = ?2 WHERE id = ?1",
                args![id, why],
            )?;
            tx.execute(
                "UPDATE escalations SET status = 'cancelled'
                 WHERE id = (SELECT escalation_id FROM messages WHERE id = ?1)",
                args![id],
            )?;
            Ok(())
        })
    }

    /// A step that produced no message (a call task, or no channel left): its
    /// outcome, and the customer event when it counts as done.
    pub fn close_step(
        &mut self,
        escalation_id: i64,
        status: &str,
        on: NaiveDate,
        event: Option<(&str, &str)>,
    ) -> Result<()> {
        self.db().write(|tx| {
            let customer_id: i64 = tx
                .row(
                    "SELECT customer_id FROM escalations WHERE id = ?1",
                    args![escalation_id],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("escalation {escalation_id}")))?
                .get(0, "escalations.customer_id")?;
            tx.execute(
                "UPDATE escalations SET status = ?2 WHERE id = ?1",
                args![escalation_id, status],
            )?;
            if let Some((kind, detail)) = event {
                customer_event(tx, customer_id, on, kind, detail)?;
            }
            Ok(())
        })
    }

    /// Messages to attempt now: queued or deferred, due by `now`, oldest first.
    pub fn due_messages(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<MessageView>> {
        self.db()
            .rows(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN customers cu ON cu.id = m.customer_id
                     WHERE m.status IN ('queued', 'deferred') AND m.next_attempt <= ?1 ORDER BY m.next_attempt, m.id LIMIT ?2"
                ),
                args![ts(now), limit],
            )?
            .iter()
            .map(message_row)
            .collect()
    }

    /// Messages queued or deferred: the outbox's backlog.
    pub fn messages_waiting(&self) -> Result<i64> {
        self.db()
            .row(
                "SELECT COUNT(*) FROM messages WHERE status IN ('queued', 'deferred')",
                args![],
            )?
            .expect("a row")
            .get(0, "count")
    }

    /// Messages of a customer (or all), newest first.
    pub fn messages(&self, customer_id: Option<i64>, limit: usize) -> Result<Vec<MessageView>> {
        self.db()
            .rows(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN customers cu ON cu.id = m.customer_id
                     WHERE CAST(?1 AS BIGINT) IS NULL OR m.customer_id = ?1 ORDER BY m.id DESC LIMIT ?2"
                ),
                args![customer_id, limit],
            )?
            .iter()
            .map(message_row)
            .collect()
    }

    /// Contacts actually made with a customer since `since`: (channel, when).
    pub fn contact_history(
        &self,
        customer_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut out = Vec::new();
        for r in self.db().rows(
            "SELECT channel, sent_at FROM messages WHERE customer_id = ?1 AND status = 'sent' AND sent_at >= ?2",
            args![customer_id, ts(since)],
        )? {
            let at: String = r.get(1, "messages.sent_at")?;
            let at = DateTime::parse_from_rfc3339(&at)
                .map_err(|_| StoreError::Corrupt {
                    column: "messages.sent_at",
                    value: at.clone(),
                })?
                .with_timezone(&Utc);
            out.push((r.get(0, "messages.channel")?, at));
        }
        Ok(out)
    }

    /// Delivered: the message is sent, its step too; the event is recorded and the
    /// fees charged, each (item, ladder, level) once whatever repeats.
    pub fn message_sent(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
        receipt: &str,
        fees: &[Fee],
        event: Option<(&str, &str)>,
    ) -> Result<()> {
        let head = self
            .db()
            .write(|tx| record_sent(tx, &self.audit, id, now, receipt, fees, event))?;
        self.anchor_committed(&head);
        Ok(())
    }

    /// Not now: the compliance guard named the next allowed moment and why.
    pub fn message_deferred(&mut self, id: i64, until: DateTime<Utc>, reason: &str) -> Result<()> {
        self.write_stmt(
            "UPDATE messages SET status = 'deferred', next_attempt = ?2, defer_reason = ?3
             WHERE id = ?1 AND status IN ('queued', 'deferred', 'claimed', 'sending')",
            args![id, ts(until), reason],
        )?;
        Ok(())
    }

    /// A channel that is misconfigured: back in the queue for `next`, without using
    /// up an attempt (the message is not at fault).
    pub fn message_held(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()> {
        self.write_stmt(
            "UPDATE messages SET status = 'queued', next_attempt = ?2, last_error = ?3 WHERE id = ?1",
            args![id, ts(next), error],
        )?;
        Ok(())
    }

    /// A failed attempt to try again at `next`.
    pub fn message_retry(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()> {
        self.write_stmt(
            "UPDATE messages SET status = 'queued', attempts = attempts + 1, next_attempt = ?2, last_error = ?3
             WHERE id = ?1",
            args![id, ts(next), error],
        )?;
        Ok(())
    }

    /// Channels already tried for the step a message belongs to (following `replaces`).
    pub fn tried_channels(&self, id: i64) -> Result<Vec<String>> {
        let db = self.db();
        let mut st = db.prepare("SELECT channel, replaces FROM messages WHERE id = ?1")?;
        let mut out = Vec::new();
        let mut next = Some(id);
        while let Some(m) = next {
            let r = st
                .row(args![m])?
                .ok_or_else(|| StoreError::NotFound(format!("message {m}")))?;
            out.push(r.get(0, "messages.channel")?);
            next = r.get(1, "messages.replaces")?;
        }
        Ok(out)
    }

    /// Stores a letter for printing and marks its message sent, in one transaction,
    /// so a letter is never queued for printing twice.
    #[allow(clippy::too_many_arguments)]
    pub fn letter_sent(
        &mut self,
        id: i64,
        customer_id: i64,
        language: &str,
        subject: &str,
        text: &str,
        html: &str,
        now: DateTime<Utc>,
        fees: &[Fee],
        event: Option<(&str, &str)>,
    ) -> Result<i64> {
        let (doc, head) = self.db().write(|tx| {
            let doc = tx
                .prepare_insert(
                    "INSERT INTO documents(customer_id, kind, language, subject, text, html, created_on)
                     VALUES (?1, 'letter', ?2, ?3, ?4, ?5, ?6)",
                )?
                .insert(args![
                    customer_id,
                    language,
                    subject,
                    text,
                    html,
                    now.date_naive()
                ])?
                .expect("a document is inserted");
            let head = record_sent(
                tx,
                &self.audit,
                id,
                now,
                &format!("stored for printing as document {doc}"),
                fees,
                event,
            )?;
            Ok((doc, head))
        })?;
        self.anchor_committed(&head);
        Ok(doc)
    }

    /// The customer's oldest open case, where a call task lands.
    pub fn oldest_open_case(&self, customer_id: i64) -> Result<Option<i64>> {
        self.db()
            .row(
                "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id
                 WHERE c.customer_id = ?1 AND c.status = 'open' ORDER BY i.due_date, c.id LIMIT 1",
                args![customer_id],
            )?
            .map(|r| r.get(0, "cases.id"))
            .transpose()
    }
}

/// A step's items as stored: `[[item id, level], …]`.
fn step_items(text: String) -> Result<Vec<(i64, usize)>> {
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt {
        column: "escalations.items",
        value: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(s: &Store, sql: &str) -> String {
        let mut st = s
            .conn()
            .unwrap()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = st
            .query_map([1], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        rows.join("\n")
    }

    /// The outbox's per-item and per-step lookups use indexes: at a few hundred
    /// thousand payments and messages a scan per item or step stalls every pass.
    #[test]
    fn the_outbox_lookups_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        let p = plan(&s, PAYMENTS_OF_ITEM);
        assert!(p.contains("USING INDEX payments_item"), "{p}");
        let p = plan(
            &s,
            &format!("SELECT e.id FROM escalations e WHERE {STEPS_TO_SEND} AND e.id >= ?1"),
        );
        assert!(p.contains("INDEX messages_step"), "{p}");
        assert!(!p.contains("SCAN m"), "{p}");
        assert!(!p.contains("SCAN e"), "{p}");
    }

    /// What a killed pass left `sending` is found by the next pass, which holds the
    /// pass lock, and marked in doubt with an event; it is not due again. What it had
    /// only claimed (checked, never handed to a server) waits again.
    /// Whether another process could start a pass now (without waiting).
    fn another_pass_may_start(s: &Store) -> bool {
        if s.is_postgres() {
            let (mut c, _) = crate::pg::connect(&s.pg_url().unwrap(), "test").unwrap();
            c.query_one(
                "SELECT pg_try_advisory_lock($1)",
                &[&crate::pg::OUTBOX_LOCK],
            )
            .unwrap()
            .get(0)
        } else {
            let other =
                rusqlite::Connection::open(format!("{}.outbox-lock", s.location())).unwrap();
            other.execute_batch("BEGIN EXCLUSIVE; COMMIT").is_ok()
        }
    }

    crate::on_both!(
        a_message_a_killed_pass_left_sending_is_in_doubt_not_resent,
        |s| {
            s.db()
            .batch(
                "INSERT INTO customers(id, company, code, name) VALUES (1, 'C', 'X', 'x');
                 INSERT INTO messages(id, customer_id, channel, template, language, subject, text, status, next_attempt, created_at)
                   VALUES (7, 1, 'email', 't', 'en', 'Reminder', 'text', 'queued', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'),
                          (8, 1, 'email', 't', 'en', 'Notice', 'text', 'queued', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
            let now: DateTime<Utc> = "2026-01-02T10:00:00Z".parse().unwrap();
            assert!(s.reserve_message(7).unwrap());
            s.message_handing_over(7).unwrap();
            assert!(s.reserve_message(8).unwrap());
            assert!(!s.reserve_message(8).unwrap(), "claimed once");
            // The process that reserved it is gone; the next pass starts.
            let pass = s.outbox_pass().unwrap();
            assert!(
                !another_pass_may_start(s),
                "a second pass waits while one runs"
            );
            assert_eq!(s.messages_interrupted(&pass, now).unwrap(), 1);
            drop(pass);
            assert!(another_pass_may_start(s), "free once the pass ends");
            let m = s.messages(None, 10).unwrap();
            let seven = m.iter().find(|m| m.id == 7).unwrap();
            assert_eq!(seven.status, "unknown");
            assert!(seven.last_error.as_deref().unwrap().contains("in doubt"));
            let due: Vec<i64> = s
                .due_messages(now, 10)
                .unwrap()
                .iter()
                .map(|m| m.id)
                .collect();
            assert_eq!(
                due,
                [8],
                "the in-doubt one is not sent again, the claimed one is"
            );
            let events: i64 = s
            .db()
            .row(
                "SELECT COUNT(*) FROM customer_events WHERE kind = 'Reminder delivery in doubt'",
                args![],
            )
            .unwrap()
            .unwrap()
            .get(0, "count")
            .unwrap();
            assert_eq!(events, 1);
            let pass = s.outbox_pass().unwrap();
            assert_eq!(s.messages_interrupted(&pass, now).unwrap(), 0, "once");
        }
    );

    // Two passes that both believe they hold a message (the first's lock went
    // while it composed; the next put the message back and claimed it): only one
    // of them can hand it to a server, so it goes out once.
    crate::on_both!(a_message_is_handed_over_by_one_pass_only, |s| {
        s.db()
            .batch(
                "INSERT INTO customers(id, company, code, name) VALUES (1, 'C', 'X', 'x');
                 INSERT INTO messages(id, customer_id, channel, template, language, subject, text, status, next_attempt, created_at)
                   VALUES (7, 1, 'email', 't', 'en', 'Reminder', 'text', 'queued', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        let now: DateTime<Utc> = "2026-01-02T10:00:00Z".parse().unwrap();
        assert!(s.reserve_message(7).unwrap(), "the first pass claims it");
        let pass = s.outbox_pass().unwrap();
        assert_eq!(s.messages_interrupted(&pass, now).unwrap(), 0);
        assert!(
            s.reserve_message(7).unwrap(),
            "the next pass claims it again"
        );
        assert!(s.message_handing_over(7).unwrap(), "one hands it over");
        assert!(!s.message_handing_over(7).unwrap(), "the other may not");
    });

    // Steps delivered to a source's customers come back with the channel that
    // delivered them and the source's documents; a pending step bounds how far a
    // writer may mark, since it may be delivered after later ones.
    crate::on_both!(
        delivered_steps_are_a_sources_sent_steps_with_the_first_pending_one,
        |s| {
            s.db()
            .batch(
                "INSERT INTO customers(id, company, code, name) VALUES (1, 'C', 'A', 'a'), (2, 'C', 'B', 'b'), (3, 'C', 'Z', 'z');
                 INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date,
                                   original_amount, open_amount, currency, status)
                   VALUES (10, 'tryton:erp', '1', 1, 'INV-1', '2026-09-01', '2026-10-01', '5', '5', 'EUR', 'open'),
                          (11, 'tryton:erp', '2', 2, 'INV-2', '2026-09-01', '2026-10-01', '5', '5', 'EUR', 'open'),
                          (12, 'csv', 'x', 3, 'CSV-1', '2026-09-01', '2026-10-01', '5', '5', 'EUR', 'open');
                 INSERT INTO escalations(id, customer_id, run_id, as_of, ladder, level, level_name, channel, template,
                                         copy_manager, amount, items, reason, status)
                   VALUES (1, 1, 1, '2026-11-01', 'standard', 1, 'reminder_1', 'email', 't', 0, '5', '[[10,1]]', 'r', 'sent'),
                          (2, 2, 1, '2026-11-01', 'standard', 1, 'reminder_1', 'email', 't', 0, '5', '[[11,1]]', 'r', 'pending'),
                          (3, 3, 1, '2026-11-01', 'standard', 1, 'reminder_1', 'email', 't', 0, '5', '[[12,1]]', 'r', 'sent'),
                          (4, 1, 2, '2026-11-15', 'standard', 2, 'reminder_2', 'email', 't', 0, '5', '[[10,2]]', 'r', 'sent');
                 INSERT INTO escalations(id, customer_id, run_id, as_of, ladder, level, level_name, channel, template,
                                         copy_manager, amount, items, reason, status)
                   VALUES (5, 1, 3, '2026-11-20', 'standard', 3, 'call', 'call_task', 't', 0, '5', '[[10,3]]', 'r', 'sent');
                 INSERT INTO messages(id, customer_id, escalation_id, channel, template, language, subject, text, status,
                                      next_attempt, created_at, replaces, sent_at)
                   VALUES (19, 1, 1, 'email', 't', 'en', 's', 't', 'sent', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', NULL, '2026-11-02T09:00:00Z'),
                          (20, 1, 4, 'email', 't', 'en', 's', 't', 'failed', '2026-11-15T00:00:00Z', '2026-11-15T00:00:00Z', NULL, NULL),
                          (21, 1, 4, 'letter', 't', 'en', 's', 't', 'sent', '2026-11-15T00:00:00Z', '2026-11-15T00:00:00Z', 20, '2026-11-16T08:00:00Z'),
                          (22, 2, 2, 'email', 't', 'en', 's', 't', 'queued', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', NULL, NULL);",
            )
            .unwrap();
            let (steps, pending) = s.delivered_steps("tryton:erp", 0, 10).unwrap();
            let got: Vec<(i64, &str, &str, String, Vec<String>)> = steps
                .iter()
                .map(|d| {
                    (
                        d.id,
                        d.customer.as_str(),
                        d.channel.as_str(),
                        d.sent_on.to_string(),
                        d.documents.clone(),
                    )
                })
                .collect();
            // Step 3 is another source's customer's, step 5 a call task: neither sent
            // anything to tell the ERP of.
            assert_eq!(
                got,
                vec![
                    (
                        1,
                        "A",
                        "email",
                        "2026-11-02".into(),
                        vec!["INV-1".to_string()]
                    ),
                    (
                        4,
                        "A",
                        "letter",
                        "2026-11-16".into(),
                        vec!["INV-1".to_string()]
                    ),
                ]
            );
            assert_eq!(pending, Some(2));
            let (steps, pending) = s.delivered_steps("tryton:erp", 2, 10).unwrap();
            assert_eq!((steps.len(), pending), (1, None));
            // A step whose delivery is in doubt waits for a person, not for the outbox:
            // it no longer holds a writer back.
            s.db()
                .execute(
                    "UPDATE messages SET status = 'unknown' WHERE id = 22",
                    args![],
                )
                .unwrap();
            assert_eq!(s.delivered_steps("tryton:erp", 0, 10).unwrap().1, None);
            assert_eq!(s.last_escalation_id().unwrap(), 5);
            assert_eq!(s.delivered_steps("tryton:erp", 0, 1).unwrap().0.len(), 1);
        }
    );
}
