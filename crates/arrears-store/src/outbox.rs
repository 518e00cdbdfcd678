//! The outbox: escalation steps become messages; each message is one delivery attempt
//! on one channel, and only a delivery that succeeded marks the step `sent`, records
//! the customer event and charges the level's fees (once per item and level).

use crate::db::Db;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, OptionalExtension};
use rust_decimal::Decimal;
use serde::Serialize;

use super::customer::customer_event;
use super::{date, dec, Result, Store, StoreError};

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

fn queue(tx: &rusqlite::Connection, m: &NewMessage, now: DateTime<Utc>) -> Result<Option<i64>> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO messages(customer_id, escalation_id, channel, template, language, recipient, cc,
            subject, text, html, status, next_attempt, created_at, replaces)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?11, ?12)",
        params![
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
        ],
    )?;
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

/// Returns the audit record to anchor once the caller has committed.
fn record_sent(
    tx: &rusqlite::Connection,
    audit: &super::audit::AuditSetup,
    id: i64,
    now: DateTime<Utc>,
    receipt: &str,
    fees: &[Fee],
    event: Option<(&str, &str)>,
) -> Result<super::audit::Head> {
    let (customer_id, escalation_id, channel, recipient, subject): (
        i64,
        Option<i64>,
        String,
        Option<String>,
        String,
    ) = tx.query_row(
        "SELECT customer_id, escalation_id, channel, recipient, subject FROM messages WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    // What went out to whom is part of the record auditors follow.
    let head = super::audit::append_audit_on(
        &Db::Lite(tx),
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
        params![id, ts(now), receipt],
    )?;
    if let Some(e) = escalation_id {
        tx.execute("UPDATE escalations SET status = 'sent' WHERE id = ?1", [e])?;
    }
    let day = now.date_naive().to_string();
    for f in fees {
        tx.execute(
            "INSERT OR IGNORE INTO fees(item_id, ladder, level, amount, currency, charged_on, message_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                f.item_id,
                f.ladder,
                f.level as i64,
                f.amount.to_string(),
                f.currency,
                day,
                id
            ],
        )?;
    }
    if let Some((kind, detail)) = event {
        customer_event(&Db::Lite(tx), customer_id, now.date_naive(), kind, detail)?;
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

fn message_row(r: &rusqlite::Row) -> rusqlite::Result<MessageView> {
    let cc: String = r.get(8)?;
    Ok(MessageView {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        customer: r.get(2)?,
        escalation_id: r.get(3)?,
        channel: r.get(4)?,
        template: r.get(5)?,
        language: r.get(6)?,
        recipient: r.get(7)?,
        cc: cc
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        subject: r.get(9)?,
        text: r.get(10)?,
        html: r.get(11)?,
        status: r.get(12)?,
        attempts: r.get(13)?,
        next_attempt: r.get(14)?,
        last_error: r.get(15)?,
        defer_reason: r.get(16)?,
        created_at: r.get(17)?,
        sent_at: r.get(18)?,
        receipt: r.get(19)?,
        replaces: r.get(20)?,
        business_date: r.get(21)?,
    })
}

/// Held by an outbox pass for as long as it runs (an exclusive lock on a small file
/// next to the database, which the system releases when the process dies, SIGKILL
/// included). Holding it, a pass knows that a message still `sending` belongs to no
/// live pass.
pub struct OutboxPass {
    _lock: Option<rusqlite::Connection>,
}

impl Store {
    /// Waits (up to [`super::LOCK_WAIT`]) until no other outbox pass runs, in this
    /// process or another, and holds that until dropped.
    pub fn outbox_pass(&self) -> Result<OutboxPass> {
        let Some(path) = self.conn()?.path().filter(|p| !p.is_empty()) else {
            return Ok(OutboxPass { _lock: None });
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
        Ok(OutboxPass { _lock: Some(lock) })
    }

    /// Messages a pass left `sending` when its process died between handing them to
    /// the server and recording the outcome: the server may or may not have
    /// accepted them.
    /// They become `unknown` (never sent again by the outbox: a reminder twice is
    /// worse than an operator checking the mail log) and the customer's history
    /// says so. Only call while holding [`Store::outbox_pass`].
    pub fn messages_interrupted(&mut self, _pass: &OutboxPass, now: DateTime<Utc>) -> Result<u32> {
        let tx = self.write_tx()?;
        // Claimed but never handed over: nothing left the process, so they simply
        // wait again.
        tx.execute(
            "UPDATE messages SET status = 'queued' WHERE status = 'claimed'",
            [],
        )?;
        let stuck: Vec<(i64, i64, String, String)> = {
            let mut st = tx.prepare(
                "SELECT id, customer_id, channel, subject FROM messages WHERE status = 'sending' ORDER BY id",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (id, customer, channel, subject) in &stuck {
            tx.execute(
                "UPDATE messages SET status = 'unknown', last_error = ?2 WHERE id = ?1",
                params![
                    id,
                    "in doubt: the sending process stopped during the delivery; check the server's log before sending it again"
                ],
            )?;
            customer_event(
                &Db::Lite(&tx),
                *customer,
                now.date_naive(),
                "Reminder delivery in doubt",
                &format!("message {id} ({channel}: {subject})"),
            )?;
        }
        tx.commit()?;
        Ok(stuck.len() as u32)
    }

    /// Escalation steps still `pending` with no message made for them.
    pub fn steps_to_send(&self) -> Result<Vec<StepToSend>> {
        self.steps(STEPS_TO_SEND, [])
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
        let mut st = self.conn()?.prepare_cached(
            "SELECT e.id, c.code, e.as_of, e.level, e.level_name, m.channel, m.sent_at, e.items
             FROM escalations e JOIN customers c ON c.id = e.customer_id
             JOIN messages m ON m.id = (SELECT m2.id FROM messages m2
                                        WHERE m2.escalation_id = e.id AND m2.status = 'sent'
                                        ORDER BY m2.id DESC LIMIT 1)
             WHERE e.id > ?2 AND e.status = 'sent'
               AND EXISTS (SELECT 1 FROM items i WHERE i.customer_id = e.customer_id AND i.source = ?1)
             ORDER BY e.id LIMIT ?3",
        )?;
        let mut doc = self
            .conn()?
            .prepare_cached("SELECT document_no FROM items WHERE id = ?1 AND source = ?2")?;
        let mut rows = st.query(params![source, after, limit as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let items: String = r.get(7)?;
            let items: Vec<(i64, usize)> =
                serde_json::from_str(&items).map_err(|_| StoreError::Corrupt {
                    column: "escalations.items",
                    value: items.clone(),
                })?;
            let mut documents = Vec::new();
            for (id, _) in items {
                if let Some(d) = doc
                    .query_row(params![id, source], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    documents.push(d);
                }
            }
            let sent_at: Option<String> = r.get(6)?;
            let sent_at = sent_at.unwrap_or_default();
            out.push(DeliveredStep {
                id: r.get(0)?,
                customer: r.get(1)?,
                as_of: date("escalations.as_of", &r.get::<_, String>(2)?)?,
                level: r.get::<_, i64>(3)? as usize,
                level_name: r.get(4)?,
                channel: r.get(5)?,
                sent_on: date("messages.sent_at", sent_at.get(..10).unwrap_or(&sent_at))?,
                documents,
            });
        }
        let pending = self
            .conn()?
            .prepare_cached(
                "SELECT MIN(e.id) FROM escalations e WHERE e.id > ?2 AND e.status = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.escalation_id = e.id AND m.status = 'unknown')
                   AND EXISTS (SELECT 1 FROM items i WHERE i.customer_id = e.customer_id AND i.source = ?1)",
            )?
            .query_row(params![source, after], |r| r.get(0))?;
        Ok((out, pending))
    }

    /// The open items of `source` on hold for `reason`, by external id: what a
    /// source checks against its own blocks, to lift the ones it no longer has.
    pub fn held_items(&self, source: &str, reason: &str) -> Result<Vec<String>> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT external_id FROM items WHERE source = ?1 AND hold_reason = ?2 AND status = 'open'",
        )?;
        let ids = st
            .query_map((source, reason), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// The newest escalation step's id (0 when there is none): where a write-back
    /// switched on starts, so the ERP is not flooded with the past.
    pub fn last_escalation_id(&self) -> Result<i64> {
        Ok(self
            .conn()?
            .query_row("SELECT COALESCE(MAX(id), 0) FROM escalations", [], |r| {
                r.get(0)
            })?)
    }

    pub fn escalation_step(&self, id: i64) -> Result<StepToSend> {
        self.steps("e.id = ?1", [id])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("escalation {id}")))
    }

    fn steps(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<StepToSend>> {
        let mut st = self.conn()?.prepare_cached(&format!(
            "SELECT e.id, e.customer_id, e.as_of, e.ladder, e.level, e.level_name, e.channel, e.template,
                    e.copy_manager, e.items
             FROM escalations e WHERE {filter} ORDER BY e.id"
        ))?;
        let mut rows = st.query(args)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let items: String = r.get(9)?;
            let items: Vec<(i64, usize)> =
                serde_json::from_str(&items).map_err(|_| StoreError::Corrupt {
                    column: "escalations.items",
                    value: items.clone(),
                })?;
            out.push(StepToSend {
                id: r.get(0)?,
                customer_id: r.get(1)?,
                as_of: date("escalations.as_of", &r.get::<_, String>(2)?)?,
                ladder: r.get(3)?,
                level: r.get::<_, i64>(4)? as usize,
                level_name: r.get(5)?,
                channel: r.get(6)?,
                template: r.get(7)?,
                copy_manager: r.get(8)?,
                items,
            });
        }
        Ok(out)
    }

    pub fn contact_profile(&self, customer_id: i64) -> Result<ContactProfile> {
        self.conn()?
            .query_row(
                "SELECT c.id, c.company, c.code, c.name, c.country, c.language, c.timezone, c.email, c.phone,
                        c.address, c.do_not_contact, c.opt_outs, w.collection_group, c.street, c.postal_code, c.city
                 FROM customers c LEFT JOIN worklist w ON w.customer_id = c.id WHERE c.id = ?1",
                [customer_id],
                |r| {
                    let opt_outs: String = r.get(11)?;
                    Ok(ContactProfile {
                        id: r.get(0)?,
                        company: r.get(1)?,
                        code: r.get(2)?,
                        name: r.get(3)?,
                        country: r.get(4)?,
                        language: r.get(5)?,
                        timezone: r.get(6)?,
                        email: r.get(7)?,
                        phone: r.get(8)?,
                        address: r.get(9)?,
                        street: r.get(13)?,
                        postal_code: r.get(14)?,
                        city: r.get(15)?,
                        do_not_contact: r.get(10)?,
                        opt_outs: opt_outs
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect(),
                        group: r.get(12)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("customer {customer_id}")))
    }

    /// Sets how a customer may be reached (see [`ContactUpdate`]).
    pub fn set_contact_preferences(
        &mut self,
        customer_id: i64,
        change: &ContactUpdate,
    ) -> Result<ContactProfile> {
        let tx = self.write_tx()?;
        // An empty text clears the field (NULL), so "not on file" reads one way.
        fn text(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|s| !s.is_empty())
        }
        let n = tx.execute(
            "UPDATE customers SET
                email = CASE WHEN ?2 THEN ?3 ELSE email END,
                phone = CASE WHEN ?4 THEN ?5 ELSE phone END,
                address = CASE WHEN ?6 THEN ?7 ELSE address END,
                street = CASE WHEN ?8 THEN ?9 ELSE street END,
                postal_code = CASE WHEN ?10 THEN ?11 ELSE postal_code END,
                city = CASE WHEN ?12 THEN ?13 ELSE city END,
                do_not_contact = COALESCE(?14, do_not_contact),
                opt_outs = COALESCE(?15, opt_outs)
             WHERE id = ?1",
            params![
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
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("customer {customer_id}")));
        }
        tx.commit()?;
        self.contact_profile(customer_id)
    }

    /// The items a step lists, with their payments and the fees already charged.
    pub fn letter_items(&self, ids: &[i64]) -> Result<Vec<LetterItem>> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = self
                .conn()?
                .prepare_cached(
                    "SELECT document_no, document_date, due_date, original_amount, open_amount, currency, status,
                        EXISTS(SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                               WHERE di.item_id = items.id AND d.resolved_on IS NULL)
                     FROM items WHERE id = ?1",
                )?
                .query_row(
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, bool>(7)?,
                        ))
                    },
                )
                .optional()?;
            let Some((doc, dd, due, orig, open, cur, status, disputed)) = row else {
                continue;
            };
            let mut payments = Vec::new();
            let mut st = self.conn()?.prepare_cached(PAYMENTS_OF_ITEM)?;
            let mut rows = st.query([id])?;
            while let Some(r) = rows.next()? {
                payments.push((
                    date("payments.value_date", &r.get::<_, String>(0)?)?,
                    dec("payments.amount", &r.get::<_, String>(1)?)?,
                ));
            }
            let mut fees = Vec::new();
            let mut st = self
                .conn()?
                .prepare_cached("SELECT ladder, level, amount FROM fees WHERE item_id = ?1")?;
            let mut rows = st.query([id])?;
            while let Some(r) = rows.next()? {
                fees.push((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as usize,
                    dec("fees.amount", &r.get::<_, String>(2)?)?,
                ));
            }
            out.push(LetterItem {
                id,
                document_no: doc,
                document_date: date("document_date", &dd)?,
                due_date: date("due_date", &due)?,
                original_amount: dec("original_amount", &orig)?,
                open_amount: dec("open_amount", &open)?,
                currency: cur,
                open: status == "open",
                disputed,
                payments,
                fees,
            });
        }
        Ok(out)
    }

    /// Queues a message; `None` when another pass queued the step's first message.
    pub fn queue_message(&mut self, m: &NewMessage, now: DateTime<Utc>) -> Result<Option<i64>> {
        let tx = self.write_tx()?;
        let id = queue(&tx, m, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// A newer step replaces what still waits for the customer: one reminder, the
    /// latest, not a backlog of outdated ones.
    pub fn supersede_waiting(&mut self, customer_id: i64, newer_step: i64) -> Result<u32> {
        let tx = self.write_tx()?;
        let n = tx.execute(
            "UPDATE escalations SET status = 'superseded' WHERE customer_id = ?1 AND id < ?2 AND status = 'pending'",
            params![customer_id, newer_step],
        )?;
        tx.execute(
            "UPDATE messages SET status = 'cancelled', last_error = 'superseded by a newer step'
             WHERE customer_id = ?1 AND status IN ('queued', 'deferred') AND escalation_id < ?2",
            params![customer_id, newer_step],
        )?;
        tx.commit()?;
        Ok(n as u32)
    }

    /// Takes a due message for sending; `false` when another pass took it first.
    /// A message is sent at most once: one left `sending` by a crash is not retried.
    /// Claims a message for this pass: `claimed` until the moment it is handed to a
    /// server (`sending`, [`Store::message_handing_over`]), so that a process killed
    /// while it only checked or composed leaves a message that is safely sent later,
    /// not one in doubt.
    pub fn reserve_message(&mut self, id: i64) -> Result<bool> {
        Ok(self.write_one(
            "UPDATE messages SET status = 'claimed' WHERE id = ?1 AND status IN ('queued', 'deferred')",
            [id],
        )? == 1)
    }

    /// The claimed message goes to the server now: from here until its outcome is
    /// recorded, a death of the process leaves it in doubt.
    pub fn message_handing_over(&mut self, id: i64) -> Result<()> {
        self.write_one(
            "UPDATE messages SET status = 'sending' WHERE id = ?1 AND status = 'claimed'",
            [id],
        )?;
        Ok(())
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
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE messages SET status = 'failed', last_error = ?2, attempts = attempts + ?3 WHERE id = ?1",
            params![id, error, counts_as_attempt as i64],
        )?;
        match next {
            Some(n) => {
                queue(&tx, n, now)?;
            }
            None => {
                let (customer_id, escalation_id): (i64, Option<i64>) = tx.query_row(
                    "SELECT customer_id, escalation_id FROM messages WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if let Some(e) = escalation_id {
                    tx.execute(
                        "UPDATE escalations SET status = 'failed' WHERE id = ?1",
                        [e],
                    )?;
                }
                if let Some((kind, detail)) = give_up_event {
                    customer_event(&Db::Lite(&tx), customer_id, now.date_naive(), kind, detail)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A step whose items were all paid (or left collection) after it was decided.
    pub fn cancel_message(&mut self, id: i64, why: &str) -> Result<()> {
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE messages SET status = 'cancelled', last_error = ?2 WHERE id = ?1",
            params![id, why],
        )?;
        tx.execute(
            "UPDATE escalations SET status = 'cancelled'
             WHERE id = (SELECT escalation_id FROM messages WHERE id = ?1)",
            [id],
        )?;
        tx.commit()?;
        Ok(())
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
        let tx = self.write_tx()?;
        let customer_id: i64 = tx.query_row(
            "SELECT customer_id FROM escalations WHERE id = ?1",
            [escalation_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE escalations SET status = ?2 WHERE id = ?1",
            params![escalation_id, status],
        )?;
        if let Some((kind, detail)) = event {
            customer_event(&Db::Lite(&tx), customer_id, on, kind, detail)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Messages to attempt now: queued or deferred, due by `now`, oldest first.
    pub fn due_messages(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<MessageView>> {
        let mut st = self.conn()?.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN customers cu ON cu.id = m.customer_id
             WHERE m.status IN ('queued', 'deferred') AND m.next_attempt <= ?1 ORDER BY m.next_attempt, m.id LIMIT ?2"
        ))?;
        let rows = st.query_map(params![ts(now), limit as i64], message_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Messages queued or deferred: the outbox's backlog.
    pub fn messages_waiting(&self) -> Result<i64> {
        Ok(self.conn()?.query_row(
            "SELECT COUNT(*) FROM messages WHERE status IN ('queued', 'deferred')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Messages of a customer (or all), newest first.
    pub fn messages(&self, customer_id: Option<i64>, limit: usize) -> Result<Vec<MessageView>> {
        let mut st = self.conn()?.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN customers cu ON cu.id = m.customer_id
             WHERE ?1 IS NULL OR m.customer_id = ?1 ORDER BY m.id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![customer_id, limit as i64], message_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Contacts actually made with a customer since `since`: (channel, when).
    pub fn contact_history(
        &self,
        customer_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT channel, sent_at FROM messages WHERE customer_id = ?1 AND status = 'sent' AND sent_at >= ?2",
        )?;
        let mut rows = st.query(params![customer_id, ts(since)])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let at: String = r.get(1)?;
            let at = DateTime::parse_from_rfc3339(&at)
                .map_err(|_| StoreError::Corrupt {
                    column: "messages.sent_at",
                    value: at.clone(),
                })?
                .with_timezone(&Utc);
            out.push((r.get(0)?, at));
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
        let tx = self.write_tx()?;
        let head = record_sent(&tx, &self.audit, id, now, receipt, fees, event)?;
        tx.commit()?;
        self.anchor_committed(&head);
        Ok(())
    }

    /// Not now: the compliance guard named the next allowed moment and why.
    pub fn message_deferred(&mut self, id: i64, until: DateTime<Utc>, reason: &str) -> Result<()> {
        self.write_one(
            "UPDATE messages SET status = 'deferred', next_attempt = ?2, defer_reason = ?3
             WHERE id = ?1 AND status IN ('queued', 'deferred', 'claimed', 'sending')",
            params![id, ts(until), reason],
        )?;
        Ok(())
    }

    /// A channel that is misconfigured: back in the queue for `next`, without using
    /// up an attempt (the message is not at fault).
    pub fn message_held(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()> {
        self.write_one(
            "UPDATE messages SET status = 'queued', next_attempt = ?2, last_error = ?3 WHERE id = ?1",
            params![id, ts(next), error],
        )?;
        Ok(())
    }

    /// A failed attempt to try again at `next`.
    pub fn message_retry(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()> {
        self.write_one(
            "UPDATE messages SET status = 'queued', attempts = attempts + 1, next_attempt = ?2, last_error = ?3
             WHERE id = ?1",
            params![id, ts(next), error],
        )?;
        Ok(())
    }

    /// Channels already tried for the step a message belongs to (following `replaces`).
    pub fn tried_channels(&self, id: i64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = Some(id);
        while let Some(m) = next {
            let (ch, rep): (String, Option<i64>) = self.conn()?.query_row(
                "SELECT channel, replaces FROM messages WHERE id = ?1",
                [m],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            out.push(ch);
            next = rep;
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
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO documents(customer_id, kind, language, subject, text, html, created_on)
             VALUES (?1, 'letter', ?2, ?3, ?4, ?5, ?6)",
            params![
                customer_id,
                language,
                subject,
                text,
                html,
                now.date_naive().to_string()
            ],
        )?;
        let doc = tx.last_insert_rowid();
        let head = record_sent(
            &tx,
            &self.audit,
            id,
            now,
            &format!("stored for printing as document {doc}"),
            fees,
            event,
        )?;
        tx.commit()?;
        self.anchor_committed(&head);
        Ok(doc)
    }

    /// The customer's oldest open case, where a call task lands.
    pub fn oldest_open_case(&self, customer_id: i64) -> Result<Option<i64>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id
                 WHERE c.customer_id = ?1 AND c.status = 'open' ORDER BY i.due_date, c.id LIMIT 1",
                [customer_id],
                |r| r.get(0),
            )
            .optional()?)
    }
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
    #[test]
    fn a_message_a_killed_pass_left_sending_is_in_doubt_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut s = Store::open(&path).unwrap();
        s.conn().unwrap()
            .execute_batch(
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
        let other = rusqlite::Connection::open(format!("{}.outbox-lock", path.display())).unwrap();
        assert!(
            other.execute_batch("BEGIN EXCLUSIVE").is_err(),
            "a second pass waits while one runs"
        );
        assert_eq!(s.messages_interrupted(&pass, now).unwrap(), 1);
        drop(pass);
        other.execute_batch("BEGIN EXCLUSIVE; COMMIT").unwrap();
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
            .conn()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM customer_events WHERE kind = 'Reminder delivery in doubt'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(events, 1);
        let pass = s.outbox_pass().unwrap();
        assert_eq!(s.messages_interrupted(&pass, now).unwrap(), 0, "once");
    }

    /// Steps delivered to a source's customers come back with the channel that
    /// delivered them and the source's documents; a pending step bounds how far a
    /// writer may mark, since it may be delivered after later ones.
    #[test]
    fn delivered_steps_are_a_sources_sent_steps_with_the_first_pending_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        s.conn().unwrap()
            .execute_batch(
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
        s.conn()
            .unwrap()
            .execute("UPDATE messages SET status = 'unknown' WHERE id = 22", [])
            .unwrap();
        assert_eq!(s.delivered_steps("tryton:erp", 0, 10).unwrap().1, None);
        assert_eq!(s.last_escalation_id().unwrap(), 5);
        assert_eq!(s.delivered_steps("tryton:erp", 0, 1).unwrap().0.len(), 1);
    }
}
